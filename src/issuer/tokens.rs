//! Access-token minting (RFC 9068) and the claims customizer.
//!
//! Every access token is a JWS signed by the active key of the
//! [`KeyManager`](crate::issuer::keys::KeyManager): header `alg`, `typ` (`at+jwt` by default)
//! and `kid`; claims `iss`, `sub`, `aud`, `exp`, `iat`, `jti` (128 random bits, base64url),
//! `client_id`, `scope` (space-separated; absent when empty), plus what the grant adds
//! (`gty: client-credentials` for `client_credentials`) and what a [`TokenCustomizer`] adds.
//! A customizer can never set a reserved claim ([`RESERVED_CLAIMS`]); a token longer than
//! [`MAX_TOKEN_LEN`] (the verifier's default limit) is an error, never sent.
//!
//! # Example
//!
//! ```
//! use serde_json::{json, Map, Value};
//! use tower_bearer::http_client::BoxFuture;
//! use tower_bearer::issuer::tokens::{CustomizerError, TokenContext, TokenCustomizer};
//!
//! /// Adds the caller's department to service tokens.
//! #[derive(Debug)]
//! struct Department;
//!
//! impl TokenCustomizer for Department {
//!     fn customize<'a>(
//!         &'a self,
//!         ctx: &'a TokenContext<'a>,
//!         extra: &'a mut Map<String, Value>,
//!     ) -> BoxFuture<'a, Result<(), CustomizerError>> {
//!         Box::pin(async move {
//!             if ctx.client.client_id() == "orders" {
//!                 extra.insert("dept".into(), json!("sales"));
//!             }
//!             Ok(())
//!         })
//!     }
//! }
//! # let _ = Department;
//! ```

use std::fmt;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::http_client::BoxFuture;
use crate::issuer::clients::RegisteredClient;
use crate::issuer::config::GrantType;
use crate::signing::SigningKey;

/// Claims a [`TokenCustomizer`] can never set.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::tokens::RESERVED_CLAIMS;
///
/// assert!(RESERVED_CLAIMS.contains(&"sub"));
/// assert!(RESERVED_CLAIMS.contains(&"cnf"));
/// ```
pub const RESERVED_CLAIMS: [&str; 13] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "typ",
    "kid",
    "cnf",
    "gty",
];

/// The longest token minted: the verifier's default limit
/// ([`DEFAULT_MAX_TOKEN_LEN`](crate::bearer::DEFAULT_MAX_TOKEN_LEN), 8 KiB).
///
/// # Example
///
/// ```
/// assert_eq!(tower_bearer::issuer::tokens::MAX_TOKEN_LEN, 8192);
/// ```
pub const MAX_TOKEN_LEN: usize = crate::bearer::DEFAULT_MAX_TOKEN_LEN;

/// What a [`TokenCustomizer`] knows about the token being minted.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::clients::RegisteredClient;
/// use tower_bearer::issuer::config::{AuthMethod, GrantType};
/// use tower_bearer::issuer::tokens::TokenContext;
///
/// let client = RegisteredClient::new("orders", AuthMethod::ClientSecretBasic);
/// let scopes = vec!["internal-service".to_owned()];
/// let ctx = TokenContext::new(&client, GrantType::ClientCredentials, "orders", &scopes, &[]);
/// assert_eq!(ctx.subject, "orders");
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct TokenContext<'a> {
    /// The authenticated client.
    pub client: &'a RegisteredClient,
    /// The grant.
    pub grant: GrantType,
    /// The `sub` (the client id for `client_credentials`, the user otherwise).
    pub subject: &'a str,
    /// The granted scopes.
    pub scopes: &'a [String],
    /// The `aud` values.
    pub audiences: &'a [String],
}

impl<'a> TokenContext<'a> {
    /// A context.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::{AuthMethod, GrantType};
    /// use tower_bearer::issuer::tokens::TokenContext;
    ///
    /// let client = RegisteredClient::new("a", AuthMethod::ClientSecretBasic);
    /// let ctx = TokenContext::new(&client, GrantType::ClientCredentials, "a", &[], &[]);
    /// assert_eq!(ctx.grant, GrantType::ClientCredentials);
    /// ```
    pub fn new(
        client: &'a RegisteredClient,
        grant: GrantType,
        subject: &'a str,
        scopes: &'a [String],
        audiences: &'a [String],
    ) -> Self {
        Self {
            client,
            grant,
            subject,
            scopes,
            audiences,
        }
    }
}

/// A customizer failure: the token endpoint answers `server_error` (the reason is logged, not
/// sent).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::tokens::CustomizerError;
///
/// let err = CustomizerError::new("directory unavailable");
/// assert_eq!(err.to_string(), "token customizer failed: directory unavailable");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("token customizer failed: {reason}")]
pub struct CustomizerError {
    reason: String,
}

impl CustomizerError {
    /// An error with a reason (never put a secret in it).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::tokens::CustomizerError;
    ///
    /// assert!(CustomizerError::new("x").to_string().ends_with("x"));
    /// ```
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Adds claims to each access token. Claims go into `extra` (empty when called); a reserved
/// claim there ([`RESERVED_CLAIMS`]) makes the request fail with `server_error` rather than
/// override what the server decided. See the [module docs](crate::issuer::tokens) for an
/// example.
pub trait TokenCustomizer: Send + Sync + 'static {
    /// Adds claims for the token described by `ctx`.
    ///
    /// # Errors
    ///
    /// [`CustomizerError`]: the token endpoint answers `server_error`.
    fn customize<'a>(
        &'a self,
        ctx: &'a TokenContext<'a>,
        extra: &'a mut Map<String, Value>,
    ) -> BoxFuture<'a, Result<(), CustomizerError>>;
}

/// Bytes of the system CSPRNG (aws-lc's `RAND_bytes`) drawn per thread at a time for `jti`s.
const JTI_POOL_LEN: usize = 512;

/// Random bytes for `jti`s: [`JTI_POOL_LEN`] bytes drawn from the system CSPRNG at once per
/// thread and handed out 16 at a time, each byte once. Each draw pays aws-lc's per-call DRBG
/// checks (fork and entropy-source detection, ~2.5k instructions), which a draw of 16 bytes per
/// token paid every time. A `jti` must be unique and unguessable, not secret; the bytes not
/// handed out yet are zeroized all the same when the thread ends. (A process forked while a
/// thread holds a pool shares that thread's remaining bytes with its child: servers do not
/// fork without `exec`, and a child that `exec`s starts afresh.)
struct JtiPool {
    bytes: zeroize::Zeroizing<[u8; JTI_POOL_LEN]>,
    /// Bytes handed out (or never filled: starts full).
    used: usize,
}

thread_local! {
    static JTI_POOL: std::cell::RefCell<JtiPool> = std::cell::RefCell::new(JtiPool {
        bytes: zeroize::Zeroizing::new([0; JTI_POOL_LEN]),
        used: JTI_POOL_LEN,
    });
}

/// 16 fresh CSPRNG bytes from this thread's [`JtiPool`] (refilled when spent).
fn jti_bytes() -> Result<[u8; 16], MintError> {
    use zeroize::Zeroize as _;
    JTI_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.used + 16 > JTI_POOL_LEN {
            SystemRandom::new()
                .fill(&mut pool.bytes[..])
                .map_err(|_| MintError::Random)?;
            pool.used = 0;
        }
        let at = pool.used;
        let mut out = [0u8; 16];
        out.copy_from_slice(&pool.bytes[at..at + 16]);
        // Handed out: not kept.
        pool.bytes[at..at + 16].zeroize();
        pool.used = at + 16;
        Ok(out)
    })
}

/// A `jti`: 128 random bits, base64url, its 22 characters kept inline (no allocation per
/// token).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Jti([u8; 22]);

impl Jti {
    /// The 22 base64url characters.
    pub(crate) fn as_str(&self) -> &str {
        // base64url output: ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A 128-bit random `jti`, base64url (22 characters).
pub(crate) fn new_jti() -> Result<Jti, MintError> {
    let bytes = jti_bytes()?;
    let mut out = [0u8; 22];
    match URL_SAFE_NO_PAD.encode_slice(bytes, &mut out) {
        Ok(22) => Ok(Jti(out)),
        _ => Err(MintError::Random),
    }
}

/// Why a token could not be minted (all answered as `server_error`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The random generator failed.
    #[error("random generator failed")]
    Random,
    /// The customizer failed.
    #[error(transparent)]
    Customizer(#[from] CustomizerError),
    /// The customizer tried to set a reserved claim.
    #[error("token customizer set the reserved claim `{0}`")]
    Reserved(String),
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token of {0} bytes exceeds the {MAX_TOKEN_LEN}-byte limit")]
    TooLong(usize),
    /// Signing failed.
    #[error("signing failed")]
    Signing,
}

/// What the server decided about one access token.
pub(crate) struct Draft<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) typ: &'a str,
    pub(crate) now: u64,
    pub(crate) ttl: u64,
    pub(crate) client: &'a RegisteredClient,
    pub(crate) grant: GrantType,
    pub(crate) subject: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) audiences: &'a [String],
    /// The `gty` claim, when the grant sets one (`client-credentials`): a field of its own,
    /// not an entry of `grant_claims`, so the common grant builds no map per token.
    pub(crate) gty: Option<&'static str>,
    /// Grant-specific claims (`uid`, `roles`, ...).
    pub(crate) grant_claims: Map<String, Value>,
}

/// Appends `s` as a JSON string, exactly as `serde_json` writes it: most values here (base64url
/// ids, URLs, scopes, claim names) need no escape and are copied as they are; the others go
/// through `serde_json`.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a `str` into a `Vec` cannot fail; keep the JSON valid regardless.
        out.extend_from_slice(b"\"\"");
    }
}

/// Whether `s` needs an escape in a JSON string (a control character, `"` or `\\`).
fn needs_escape(s: &str) -> bool {
    // No early exit, a byte accumulator: the compiler vectorizes the scan (~0.5k instructions
    // for a 360-byte token instead of ~5k byte by byte).
    let mut special = 0u8;
    for &b in s.as_bytes() {
        special |= u8::from((b < 0x20) | (b == b'"') | (b == b'\\'));
    }
    special != 0
}

/// Appends `v` in decimal (what `serde_json` writes for a `u64`).
pub(crate) fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(&mut digits, v));
}

/// A JSON object written member by member (keys are unique by construction of the caller).
struct Json(Vec<u8>);

impl Json {
    fn with_capacity(n: usize) -> Self {
        let mut v = Vec::with_capacity(n);
        v.push(b'{');
        Self(v)
    }

    fn key(&mut self, key: &str) -> Result<(), MintError> {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        push_json_str(&mut self.0, key);
        self.0.push(b':');
        Ok(())
    }

    fn member<T: serde::Serialize + ?Sized>(&mut self, key: &str, v: &T) -> Result<(), MintError> {
        self.key(key)?;
        serde_json::to_writer(&mut self.0, v).map_err(|_| MintError::Signing)
    }

    /// A claim name of the server's own (`iss`, `jti`, ...: no escape needed), copied as it is.
    fn own_key(&mut self, key: &'static str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn str_member(&mut self, key: &'static str, v: &str) -> Result<(), MintError> {
        self.own_key(key);
        push_json_str(&mut self.0, v);
        Ok(())
    }

    /// A number member with one of the server's claim names.
    fn u64_member(&mut self, key: &'static str, v: u64) {
        self.own_key(key);
        push_u64(&mut self.0, v);
    }

    /// `values` joined by a space as one JSON string (the `scope` claim), without building the
    /// joined string first when no value needs an escape.
    fn joined_member(&mut self, key: &'static str, values: &[String]) {
        self.own_key(key);
        if values.iter().any(|v| needs_escape(v)) {
            push_json_str(&mut self.0, &values.join(" "));
            return;
        }
        self.0.push(b'"');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.0.push(b' ');
            }
            self.0.extend_from_slice(v.as_bytes());
        }
        self.0.push(b'"');
    }

    fn push_str_member(&mut self, key: &str, v: &str) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        push_json_str(&mut self.0, key);
        self.0.push(b':');
        push_json_str(&mut self.0, v);
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.push(b'}');
        self.0
    }
}

/// A minted token.
pub(crate) struct Minted {
    pub(crate) token: String,
    pub(crate) jti: Jti,
    pub(crate) exp: u64,
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted")
            .field("jti", &self.jti)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

impl Draft<'_> {
    /// Whether the grant's own claims set `k` (it wins over the server's claim of that name).
    fn overridden(&self, k: &str) -> bool {
        (self.gty.is_some() && k == "gty")
            || (!self.grant_claims.is_empty() && self.grant_claims.contains_key(k))
    }
}

/// The members of a token's payload that are the same for every token of one decision (who,
/// for whom, what): `{`, then `iss`, `sub`, `aud`, `client_id`, `scope` and `gty`, each unless
/// the grant's claims set it. They come first, before `exp`, `iat` and `jti`, so a grant that
/// mints tokens of one decision again and again writes and encodes them once
/// ([`FixedPayload`]).
fn fixed_members(payload: &mut Json, draft: &Draft<'_>) -> Result<(), MintError> {
    if !draft.overridden("iss") {
        payload.str_member("iss", draft.issuer)?;
    }
    if !draft.overridden("sub") {
        payload.str_member("sub", draft.subject)?;
    }
    if !draft.overridden("aud") {
        match draft.audiences {
            [] => {}
            [one] => payload.str_member("aud", one)?,
            many => payload.member("aud", many)?,
        }
    }
    if !draft.overridden("client_id") {
        payload.str_member("client_id", draft.client.client_id())?;
    }
    if !draft.scopes.is_empty() && !draft.overridden("scope") {
        payload.joined_member("scope", draft.scopes);
    }
    if let Some(gty) = draft.gty {
        payload.str_member("gty", gty)?;
    }
    Ok(())
}

/// The header of tokens of type `typ` signed by `key`, base64url (encoded once per key).
fn header<'k>(key: &'k SigningKey, typ: &str) -> std::borrow::Cow<'k, str> {
    key.encoded_header(typ, || {
        let mut header = Json::with_capacity(128);
        header.push_str_member("alg", key.algorithm().as_str());
        header.push_str_member("typ", typ);
        header.push_str_member("kid", key.kid());
        header.finish()
    })
}

pub(crate) async fn mint(
    draft: Draft<'_>,
    key: &SigningKey,
    customizer: Option<&dyn TokenCustomizer>,
) -> Result<Minted, MintError> {
    let mut extra = Map::new();
    if let Some(c) = customizer {
        let ctx = TokenContext::new(
            draft.client,
            draft.grant,
            draft.subject,
            draft.scopes,
            draft.audiences,
        );
        c.customize(&ctx, &mut extra).await?;
        if let Some(k) = extra.keys().find(|k| RESERVED_CLAIMS.contains(&k.as_str())) {
            return Err(MintError::Reserved(k.clone()));
        }
    }
    let jti = new_jti()?;
    let exp = draft.now.saturating_add(draft.ttl);
    // The claims are written straight to JSON (no `Value` tree per token): the server's
    // claims, then the grant's (which win over a server claim of the same name), then the
    // customizer's (which never override either).
    let mut payload = Json::with_capacity(256);
    fixed_members(&mut payload, &draft)?;
    if !draft.overridden("exp") {
        payload.u64_member("exp", exp);
    }
    if !draft.overridden("iat") {
        payload.u64_member("iat", draft.now);
    }
    if !draft.overridden("jti") {
        payload.str_member("jti", jti.as_str())?;
    }
    for (k, v) in &draft.grant_claims {
        if !(draft.gty.is_some() && k == "gty") {
            payload.member(k, v)?;
        }
    }
    for (k, v) in &extra {
        if !draft.overridden(k) {
            payload.member(k, v)?;
        }
    }
    let payload = payload.finish();
    // The header (`alg`, `typ`, `kid`) is the same for every token of this key: encoded once.
    let header = header(key, draft.typ);
    // base64url length of header and payload, plus the signature: check before signing.
    let estimate = header.len() + 1 + payload.len().div_ceil(3) * 4;
    if estimate > MAX_TOKEN_LEN {
        return Err(MintError::TooLong(estimate));
    }
    let token = key
        .sign_encoded(&header, &payload)
        .map_err(|_| MintError::Signing)?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(MintError::TooLong(token.len()));
    }
    Ok(Minted { token, jti, exp })
}

/// The fixed members ([`fixed_members`]) of the tokens of one decision with no grant claims
/// and no customizer, ready to be followed by `exp`, `iat` and `jti`: its first `3k` bytes
/// base64url-encoded once (whole base64 groups: the encoding of the whole payload starts with
/// them), the 0-2 bytes after them kept as they are. [`mint_fixed`] then writes and encodes
/// only the ~80 bytes that change per token.
pub(crate) struct FixedPayload {
    /// base64url of the first `3k` bytes.
    encoded: String,
    /// The bytes after them (fewer than 3).
    tail: Vec<u8>,
}

impl fmt::Debug for FixedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedPayload")
            .field("encoded_len", &self.encoded.len())
            .finish_non_exhaustive()
    }
}

impl FixedPayload {
    /// The fixed part of `draft`'s tokens (its `now`, `ttl` and customizer are not used);
    /// `None` when the draft carries grant claims (they come after `jti`).
    pub(crate) fn new(draft: &Draft<'_>) -> Result<Option<Self>, MintError> {
        if !draft.grant_claims.is_empty() {
            return Ok(None);
        }
        let mut json = Json::with_capacity(256);
        fixed_members(&mut json, draft)?;
        let bytes = json.0;
        let cut = bytes.len() - bytes.len() % 3;
        Ok(Some(Self {
            encoded: URL_SAFE_NO_PAD.encode(&bytes[..cut]),
            tail: bytes[cut..].to_vec(),
        }))
    }
}

/// What the server decided for tokens asked for again and again in the same terms: the
/// granted scopes and audiences and the payload members they fix.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) scopes: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) fixed: FixedPayload,
}

/// Mints the token of `fixed`'s decision issued at `now` for `ttl` seconds: the same bytes as
/// [`mint`] writes for that draft without a customizer (and the same `jti` draw), its fixed
/// members encoded once.
pub(crate) fn mint_fixed(
    fixed: &FixedPayload,
    now: u64,
    ttl: u64,
    key: &SigningKey,
    typ: &str,
) -> Result<Minted, MintError> {
    let jti = new_jti()?;
    let exp = now.saturating_add(ttl);
    let mut rest = [0u8; TIMED_MAX];
    let rest = timed_members(&mut rest, &fixed.tail, exp, now, &jti);
    let header = header(key, typ);
    let estimate = header.len() + 1 + fixed.encoded.len() + rest.len().div_ceil(3) * 4;
    if estimate > MAX_TOKEN_LEN {
        return Err(MintError::TooLong(estimate));
    }
    let token = key
        .sign_encoded_split(&header, &fixed.encoded, rest)
        .map_err(|_| MintError::Signing)?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(MintError::TooLong(token.len()));
    }
    Ok(Minted { token, jti, exp })
}

/// The longest [`timed_members`]: a 2-byte tail, `,"exp":` and `,"iat":` with 20 digits
/// each, `,"jti":"`, 22 characters and `"}`.
const TIMED_MAX: usize = 2 + 2 * (7 + 20) + 8 + 22 + 2;

/// `tail` (the fixed members' last bytes, after a member: a comma follows), then `exp`,
/// `iat`, `jti` and the closing brace, as [`mint`] writes them, into `buf` (on the stack: no
/// allocation per token); the bytes written.
fn timed_members<'b>(
    buf: &'b mut [u8; TIMED_MAX],
    tail: &[u8],
    exp: u64,
    iat: u64,
    jti: &Jti,
) -> &'b [u8] {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    let mut digits = [0u8; 20];
    put(tail);
    put(b",\"exp\":");
    put(decimal(&mut digits, exp));
    put(b",\"iat\":");
    put(decimal(&mut digits, iat));
    put(b",\"jti\":\"");
    put(&jti.0);
    put(b"\"}");
    &buf[..at]
}

/// `v` in decimal, written at the end of `digits` (what [`push_u64`] appends).
fn decimal(digits: &mut [u8; 20], mut v: u64) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &digits[at..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::config::AuthMethod;
    use crate::jwks::Algorithm;
    use serde_json::json;

    #[derive(Debug)]
    struct Adds(Map<String, Value>);
    impl TokenCustomizer for Adds {
        fn customize<'a>(
            &'a self,
            _: &'a TokenContext<'a>,
            extra: &'a mut Map<String, Value>,
        ) -> BoxFuture<'a, Result<(), CustomizerError>> {
            extra.extend(self.0.clone());
            Box::pin(async { Ok(()) })
        }
    }

    fn draft<'a>(
        client: &'a RegisteredClient,
        scopes: &'a [String],
        aud: &'a [String],
    ) -> Draft<'a> {
        Draft {
            issuer: "https://auth.example",
            typ: "at+jwt",
            now: 1_000,
            ttl: 300,
            client,
            grant: GrantType::ClientCredentials,
            subject: client.client_id(),
            scopes,
            audiences: aud,
            gty: None,
            grant_claims: Map::new(),
        }
    }

    fn payload(token: &str) -> Value {
        let p = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    /// The raw payload bytes of a token.
    fn payload_bytes(token: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap()
    }

    /// `mint_fixed` writes the bytes `mint` writes for the same draft (but the `jti`), for
    /// every length of the fixed part modulo 3 (the bytes left out of its encoding), one
    /// audience or several, scopes or none.
    #[tokio::test]
    async fn fixed_payload_tokens_are_mint_tokens() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let header = header(&key, "at+jwt");
        let mut tails = std::collections::BTreeSet::new();
        for id in ["c", "cl", "cli", "client-é"] {
            let client = RegisteredClient::new(id, AuthMethod::ClientSecretBasic);
            for (scopes, aud) in [
                (vec!["a".to_owned()], vec!["x".to_owned()]),
                (vec![], vec!["x".to_owned(), "y\"z".to_owned()]),
                (vec!["a".to_owned(), "b".to_owned()], vec![]),
            ] {
                let mut d = draft(&client, &scopes, &aud);
                d.gty = Some("client-credentials");
                let (now, ttl) = (d.now, d.ttl);
                let general = mint(d, &key, None).await.unwrap();
                let mut d = draft(&client, &scopes, &aud);
                d.gty = Some("client-credentials");
                let fixed = FixedPayload::new(&d).unwrap().unwrap();
                assert!(fixed.encoded.len().is_multiple_of(4));
                assert!(fixed.tail.len() < 3);
                tails.insert(fixed.tail.len());
                let quick = mint_fixed(&fixed, now, ttl, &key, "at+jwt").unwrap();
                assert_eq!((quick.exp, general.exp), (now + ttl, now + ttl));
                assert!(
                    quick
                        .token
                        .starts_with(&format!("{header}.{}", fixed.encoded))
                );
                let want = String::from_utf8(payload_bytes(&general.token))
                    .unwrap()
                    .replace(general.jti.as_str(), quick.jti.as_str());
                assert_eq!(
                    String::from_utf8(payload_bytes(&quick.token)).unwrap(),
                    want
                );
                // Signed over what it says.
                let (input, sig) = quick.token.rsplit_once('.').unwrap();
                let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
                let public = key.public_jwk();
                let x = URL_SAFE_NO_PAD
                    .decode(public["x"].as_str().unwrap())
                    .unwrap();
                aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, x)
                    .verify(input.as_bytes(), &sig)
                    .unwrap();
            }
        }
        assert_eq!(tails.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
        // Grant claims come after `jti`: no fixed payload for them.
        let client = RegisteredClient::new("c", AuthMethod::ClientSecretBasic);
        let mut d = draft(&client, &[], &[]);
        d.grant_claims.insert("uid".into(), json!(1));
        assert!(FixedPayload::new(&d).unwrap().is_none());
    }

    #[tokio::test]
    async fn reserved_claims_cannot_be_overridden_and_size_is_bounded() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let client = RegisteredClient::new("c", AuthMethod::ClientSecretBasic);
        let scopes = vec!["a".to_owned()];
        let aud = vec!["x".to_owned(), "y".to_owned()];
        let ok = Adds(json!({"dept": "sales"}).as_object().unwrap().clone());
        let m = mint(draft(&client, &scopes, &aud), &key, Some(&ok))
            .await
            .unwrap();
        let p = payload(&m.token);
        assert_eq!(p["dept"], "sales");
        assert_eq!(p["aud"], json!(["x", "y"]));
        assert_eq!(p["exp"], 1_300);
        assert_eq!(p["jti"].as_str().unwrap().len(), 22);
        for reserved in RESERVED_CLAIMS {
            let bad = Adds(json!({ reserved: "evil" }).as_object().unwrap().clone());
            let err = mint(draft(&client, &scopes, &aud), &key, Some(&bad))
                .await
                .unwrap_err();
            assert!(
                matches!(err, MintError::Reserved(ref c) if c == reserved),
                "{err}"
            );
        }
        let big = Adds(
            json!({"blob": "x".repeat(7000)})
                .as_object()
                .unwrap()
                .clone(),
        );
        let err = mint(draft(&client, &scopes, &aud), &key, Some(&big))
            .await
            .unwrap_err();
        assert!(matches!(err, MintError::TooLong(_)), "{err}");
    }

    #[tokio::test]
    async fn claims_are_written_once_grant_claims_win_over_the_customizer() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let client = RegisteredClient::new("c\"1", AuthMethod::ClientSecretBasic);
        let scopes = vec!["a".to_owned(), "b".to_owned()];
        let aud = vec!["x".to_owned()];
        let mut d = draft(&client, &scopes, &aud);
        d.grant_claims
            .insert("gty".into(), json!("client-credentials"));
        d.grant_claims.insert("uid".into(), json!("u-1"));
        let extra = Adds(
            json!({"uid": "evil", "dept": "sales"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let m = mint(d, &key, Some(&extra)).await.unwrap();
        let raw = URL_SAFE_NO_PAD
            .decode(m.token.split('.').nth(1).unwrap())
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        for k in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "jti",
            "client_id",
            "scope",
            "gty",
            "uid",
            "dept",
        ] {
            assert_eq!(raw.matches(&format!("\"{k}\":")).count(), 1, "{k} in {raw}");
        }
        let p = payload(&m.token);
        assert_eq!(p["sub"], "c\"1");
        assert_eq!(p["client_id"], "c\"1");
        assert_eq!(p["aud"], "x");
        assert_eq!(p["scope"], "a b");
        assert_eq!(p["uid"], "u-1");
        assert_eq!(p["dept"], "sales");
        assert_eq!(p["jti"], m.jti.as_str());
        let header = URL_SAFE_NO_PAD
            .decode(m.token.split('.').next().unwrap())
            .unwrap();
        let header: Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(
            header,
            json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid()})
        );
    }

    #[test]
    fn json_strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "plain",
            "https://auth.example/a?b=c",
            "é ü ✓",
            "q\"uote",
            "back\\slash",
            "ctl\u{1}\u{1f}\n\t",
            "\u{7f}\u{2028}",
        ] {
            let mut out = b"x".to_vec();
            push_json_str(&mut out, s);
            assert_eq!(out[1..], serde_json::to_vec(s).unwrap()[..], "{s:?}");
        }
    }

    /// The hand-written numbers and joined strings are what `serde_json` writes.
    #[test]
    fn numbers_and_joined_strings_are_serdes() {
        for v in [
            0,
            1,
            9,
            10,
            99,
            100,
            1_900_000_000,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = b"x".to_vec();
            push_u64(&mut out, v);
            assert_eq!(out[1..], serde_json::to_vec(&v).unwrap()[..], "{v}");
        }
        let cases: [&[&str]; 5] = [
            &[],
            &["a"],
            &["internal-service", "orders:read"],
            &["q\"uote", "b"],
            &["x", "ctl\u{1}"],
        ];
        for values in cases {
            let values: Vec<String> = values.iter().map(|&v| v.to_owned()).collect();
            let mut json = Json::with_capacity(8);
            json.joined_member("scope", &values);
            let expected = serde_json::json!({ "scope": values.join(" ") });
            assert_eq!(json.finish(), serde_json::to_vec(&expected).unwrap());
        }
    }

    #[test]
    fn jtis_are_unique() {
        let a = new_jti().unwrap();
        let b = new_jti().unwrap();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(a.as_str()).unwrap().len(), 16);
        assert_eq!(format!("{a}"), a.as_str());
        assert_eq!(format!("{a:?}"), format!("{:?}", a.as_str()));
    }

    /// Across several pool refills and threads: every `jti` distinct, 22 base64url characters,
    /// and the bytes look random (each of the 128 bit positions set in a quarter to three
    /// quarters of the draws: ten standard deviations from half, so only a broken source
    /// fails, e.g. one handing out zeroized bytes).
    #[test]
    fn pooled_jtis_are_unique_across_refills_and_threads() {
        let per_thread = 4 * JTI_POOL_LEN / 16 + 3;
        let draws: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        (0..per_thread)
                            .map(|_| new_jti().unwrap().as_str().to_owned())
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Vec<&String> = draws.iter().flatten().collect();
        let unique: std::collections::HashSet<&String> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len());
        let mut ones = [0u32; 128];
        for j in &all {
            assert_eq!(j.len(), 22);
            let bytes = URL_SAFE_NO_PAD.decode(j).unwrap();
            for (i, one) in ones.iter_mut().enumerate() {
                *one += u32::from(bytes[i / 8] >> (i % 8) & 1);
            }
        }
        let n = all.len() as u32;
        for (i, one) in ones.iter().enumerate() {
            assert!(
                (n / 4..=n * 3 / 4).contains(one),
                "bit {i} set in {one} of {n} jtis"
            );
        }
    }
}
