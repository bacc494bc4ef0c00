//! Grant store: refresh-token families, authorization codes, revoked access-token ids.
//!
//! # Refresh-token families (RFC 9700 §4.14, OAuth 2.1 rotation)
//!
//! A login creates a *family* ([`GrantStore::create_family`]); its refresh tokens are
//! `<family id>.<base64url of 256 random bits>` ([`RefreshToken`]). Only the SHA-256 of a
//! token is stored ([`TokenHash`]), never the token. Every refresh is one atomic
//! [`GrantStore::rotate`]:
//!
//! | presented token | family | outcome | effect |
//! |-----------------|--------|---------|--------|
//! | unknown / family gone | — | [`RotateOutcome::NotFound`] | none |
//! | any token of the family, other client | — | [`RotateOutcome::WrongClient`] | none |
//! | any token of the family | idle or absolute lifetime over | [`RotateOutcome::Expired`] | none |
//! | current head | active | [`RotateOutcome::Rotated`] | head marked used (tombstone kept to the family's absolute expiry), successor becomes head, `last_used` and idle expiry move |
//! | current head | revoked | [`RotateOutcome::Revoked`] | none |
//! | an already used token | any | [`RotateOutcome::Reused`] | whole family revoked (theft detection), counted |
//!
//! **WrongClient does not revoke.** RFC 6749 §6 requires the server to check that the refresh
//! token was issued to the authenticated client, and RFC 7009 §2.1 forbids one client to
//! revoke another client's tokens; letting a mismatched (but authenticated) client end a
//! family would give every registered client a way to log other clients' users out. The
//! caller answers `invalid_grant` and audits it; the family stays as it was.
//!
//! The caller maps every outcome but `Rotated` to `invalid_grant`. A store that lost its state
//! (Redis restarted without persistence) answers `NotFound`, never an error.
//!
//! # Authorization codes (RFC 6749 §4.1.2)
//!
//! [`GrantStore::put_code`] keeps a code (its hash) at most 60 s; [`GrantStore::take_code`]
//! consumes it atomically: the first take gets the [`CodeRecord`], every later take gets
//! [`CodeOutcome::Reused`] with the family that the first use created (linked by
//! [`GrantStore::link_code_family`]) so that the caller can revoke it (§4.1.2: "SHOULD revoke
//! all tokens previously issued based on that authorization code"). The consumed code is kept
//! as a tombstone for [`CODE_TOMBSTONE_TTL`].
//!
//! # Access-token revocation list
//!
//! [`GrantStore::revoke_jti`] remembers a `jti` until the token's `exp`; after that the token
//! is expired anyway and the entry is gone.
//!
//! # Stats
//!
//! [`GrantStore::stats`]: active families, families created and revoked, rotations, reuse
//! detections, code replays: counters kept as they happen, no table scan.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::issuer::store::{
//!     GrantStore, MemoryGrantStore, NewFamily, RefreshToken, RotateOutcome,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryGrantStore::new();
//! let now = 1_800_000_000;
//! let first = RefreshToken::new_family();
//! let family = NewFamily::new(first.family_id(), "web", "1001")
//!     .with_scopes(["orders.read"])
//!     .with_auth_time(now)
//!     .with_lifetimes(Duration::from_secs(3600), Duration::from_secs(86_400));
//! store.create_family(family, &first.hash(), now).await.unwrap();
//!
//! // The client refreshes: the first token is used up, the second is the new head.
//! let second = first.successor();
//! let out = store.rotate(&first.hash(), "web", &second.hash(), now + 10).await.unwrap();
//! assert!(matches!(out, RotateOutcome::Rotated(ref r) if r.last_used == now + 10));
//!
//! // The first token shows up again: stolen. The whole family is revoked.
//! let third = second.successor();
//! let out = store.rotate(&first.hash(), "web", &third.hash(), now + 20).await.unwrap();
//! assert!(matches!(out, RotateOutcome::Reused(_)));
//! let out = store.rotate(&second.hash(), "web", &third.hash(), now + 30).await.unwrap();
//! assert_eq!(out, RotateOutcome::Revoked);
//! assert_eq!(store.stats(now + 30).await.unwrap().reuse_detected, 1);
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::http_client::BoxFuture;
use crate::store::StoreError;

mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod redis;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use self::redis::{PersistenceReport, RedisGrantStore};
/// For `crate::__fuzz` only.
#[cfg(feature = "redis")]
pub(crate) mod redis_fuzz {
    pub(crate) use super::redis::{fuzz_code_json, fuzz_decode, fuzz_record_fields};
}
#[doc(inline)]
pub use memory::MemoryGrantStore;

/// The longest an authorization code may live (RFC 6749 §4.1.2 recommends at most 10 minutes;
/// we allow 60 s).
pub const MAX_CODE_TTL: Duration = Duration::from_secs(60);

/// How long a consumed authorization code is remembered so that a replay is recognised.
pub const CODE_TOMBSTONE_TTL: Duration = Duration::from_secs(600);

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn random_b64(bytes: usize) -> String {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    // aws-lc's RNG aborts the process rather than return weak bytes; an error here would mean
    // it was not initialised at all, which `aws_lc_rs` never lets happen.
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        tracing::error!("system random number generator failed");
    }
    b64().encode(&*buf)
}

/// SHA-256 of `secret`, base64url without padding (43 characters): how codes and refresh
/// tokens are stored.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::hash_secret;
///
/// assert_eq!(hash_secret("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
/// ```
pub fn hash_secret(secret: &str) -> String {
    b64().encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        secret.as_bytes(),
    ))
}

fn valid_family_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An opaque refresh token, `<family id>.<base64url of 256 random bits>`. `Debug` never shows
/// the value; the memory is zeroized on drop.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::RefreshToken;
///
/// let t = RefreshToken::new_family();
/// let (fam, secret) = t.as_str().split_once('.').unwrap();
/// assert_eq!((fam.len(), secret.len()), (22, 43));
/// assert_eq!(t.family_id(), fam);
/// let parsed = RefreshToken::parse(t.as_str()).unwrap();
/// assert_eq!(parsed.hash(), t.hash());
/// assert!(!format!("{t:?}").contains(secret));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    value: Zeroizing<String>,
    dot: usize,
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("family_id", &self.family_id())
            .finish_non_exhaustive()
    }
}

impl RefreshToken {
    /// The first token of a new family (128-bit random family id).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RefreshToken;
    ///
    /// assert_ne!(RefreshToken::new_family().family_id(), RefreshToken::new_family().family_id());
    /// ```
    pub fn new_family() -> Self {
        Self::in_family(&random_b64(16))
    }

    fn in_family(family_id: &str) -> Self {
        let secret = random_b64(32);
        Self {
            dot: family_id.len(),
            value: Zeroizing::new(format!("{family_id}.{secret}")),
        }
    }

    /// The next token of the same family (for [`GrantStore::rotate`]).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RefreshToken;
    ///
    /// let a = RefreshToken::new_family();
    /// let b = a.successor();
    /// assert_eq!(a.family_id(), b.family_id());
    /// assert_ne!(a, b);
    /// ```
    #[must_use]
    pub fn successor(&self) -> Self {
        Self::in_family(self.family_id())
    }

    /// Parses a presented token; `None` when it does not have the shape
    /// `<16..64 base64url chars>.<43 base64url chars>` (answer `invalid_grant`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RefreshToken;
    ///
    /// assert!(RefreshToken::parse("garbage").is_none());
    /// assert!(RefreshToken::parse("short.x").is_none());
    /// ```
    pub fn parse(token: &str) -> Option<Self> {
        let (fam, secret) = token.split_once('.')?;
        if !valid_family_id(fam)
            || secret.len() != 43
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        Some(Self {
            dot: fam.len(),
            value: Zeroizing::new(token.to_owned()),
        })
    }

    /// The token, to hand to the client (never log it).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RefreshToken;
    ///
    /// assert!(RefreshToken::new_family().as_str().contains('.'));
    /// ```
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The family id (the part before the dot): also the `sid` of the access tokens.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RefreshToken;
    ///
    /// let t = RefreshToken::new_family();
    /// assert!(t.as_str().starts_with(t.family_id()));
    /// ```
    pub fn family_id(&self) -> &str {
        &self.value[..self.dot]
    }

    /// What the store keeps: the family id and the SHA-256 of the whole token.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::{hash_secret, RefreshToken};
    ///
    /// let t = RefreshToken::new_family();
    /// assert_eq!(t.hash().digest(), hash_secret(t.as_str()));
    /// ```
    pub fn hash(&self) -> TokenHash {
        TokenHash {
            family_id: self.family_id().to_owned(),
            digest: hash_secret(&self.value),
        }
    }
}

/// A refresh token as the store sees it: family id and SHA-256 (base64url) of the token.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::RefreshToken;
///
/// let h = RefreshToken::new_family().hash();
/// assert_eq!(h.digest().len(), 43);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenHash {
    family_id: String,
    digest: String,
}

impl TokenHash {
    /// From parts (a store migrating rows); `None` for a malformed family id or digest.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::{hash_secret, TokenHash};
    ///
    /// assert!(TokenHash::new("0123456789abcdefABCDEF", hash_secret("x")).is_some());
    /// assert!(TokenHash::new("bad id!", hash_secret("x")).is_none());
    /// ```
    pub fn new(family_id: impl Into<String>, digest: impl Into<String>) -> Option<Self> {
        let (family_id, digest) = (family_id.into(), digest.into());
        let ok_digest = digest.len() == 43
            && digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (valid_family_id(&family_id) && ok_digest).then_some(Self { family_id, digest })
    }

    /// The family id.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RefreshToken;
    ///
    /// let t = RefreshToken::new_family();
    /// assert_eq!(t.hash().family_id(), t.family_id());
    /// ```
    pub fn family_id(&self) -> &str {
        &self.family_id
    }

    /// The SHA-256 of the token, base64url.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RefreshToken;
    ///
    /// assert_eq!(RefreshToken::new_family().hash().digest().len(), 43);
    /// ```
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// What a new family records (see [`GrantStore::create_family`]).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::issuer::store::NewFamily;
///
/// let f = NewFamily::new("0123456789abcdefABCDEF", "web", "1001")
///     .with_lifetimes(Duration::from_secs(60), Duration::from_secs(600));
/// assert_eq!(f.idle_ttl, Duration::from_secs(60));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFamily {
    /// The family id ([`RefreshToken::family_id`]).
    pub family_id: String,
    /// The client the tokens are bound to.
    pub client_id: String,
    /// The user (`uid`).
    pub user_id: String,
    /// Granted scopes (a refresh may only narrow them).
    pub scopes: Vec<String>,
    /// When the user authenticated (unix seconds): `auth_time` of every token of the family.
    pub auth_time: u64,
    /// Idle lifetime: the family ends when not refreshed for this long.
    pub idle_ttl: Duration,
    /// Absolute lifetime: the family ends this long after its creation, refreshed or not.
    pub absolute_ttl: Duration,
}

impl NewFamily {
    /// A family with no scopes, `auth_time` 0, idle 30 days and absolute 90 days (the YAML
    /// defaults).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::store::NewFamily;
    ///
    /// let f = NewFamily::new("0123456789abcdefABCDEF", "web", "1001");
    /// assert_eq!(f.absolute_ttl, Duration::from_secs(7_776_000));
    /// ```
    pub fn new(
        family_id: impl Into<String>,
        client_id: impl Into<String>,
        user_id: impl Into<String>,
    ) -> Self {
        Self {
            family_id: family_id.into(),
            client_id: client_id.into(),
            user_id: user_id.into(),
            scopes: Vec::new(),
            auth_time: 0,
            idle_ttl: Duration::from_secs(2_592_000),
            absolute_ttl: Duration::from_secs(7_776_000),
        }
    }

    /// Sets the scopes.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::NewFamily;
    ///
    /// let f = NewFamily::new("0123456789abcdefABCDEF", "web", "1").with_scopes(["a", "b"]);
    /// assert_eq!(f.scopes, ["a", "b"]);
    /// ```
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `auth_time`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::NewFamily;
    ///
    /// assert_eq!(NewFamily::new("0123456789abcdefABCDEF", "web", "1").with_auth_time(5).auth_time, 5);
    /// ```
    #[must_use]
    pub fn with_auth_time(mut self, auth_time: u64) -> Self {
        self.auth_time = auth_time;
        self
    }

    /// Sets the idle and absolute lifetimes.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::store::NewFamily;
    ///
    /// let f = NewFamily::new("0123456789abcdefABCDEF", "web", "1")
    ///     .with_lifetimes(Duration::from_secs(10), Duration::from_secs(20));
    /// assert_eq!((f.idle_ttl.as_secs(), f.absolute_ttl.as_secs()), (10, 20));
    /// ```
    #[must_use]
    pub fn with_lifetimes(mut self, idle: Duration, absolute: Duration) -> Self {
        self.idle_ttl = idle;
        self.absolute_ttl = absolute;
        self
    }

    fn check(&self, first: &TokenHash) -> Result<(), StoreError> {
        if !valid_family_id(&self.family_id) {
            return Err(StoreError::new("grant store: malformed family id"));
        }
        if first.family_id != self.family_id {
            return Err(StoreError::new(
                "grant store: the first token belongs to another family",
            ));
        }
        if self.client_id.is_empty() || self.user_id.is_empty() {
            return Err(StoreError::new("grant store: empty client or user id"));
        }
        if self.idle_ttl.as_secs() == 0 || self.absolute_ttl.as_secs() == 0 {
            return Err(StoreError::new(
                "grant store: lifetimes must be at least 1 s",
            ));
        }
        Ok(())
    }
}

/// Whether a family can still be refreshed.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::FamilyState;
///
/// assert_eq!(FamilyState::Active.as_str(), "active");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FamilyState {
    /// Can be refreshed (lifetimes permitting).
    Active,
    /// Revoked (logout, revocation, reuse detection, admin): every token of it fails.
    Revoked,
}

impl FamilyState {
    /// `active` or `revoked`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::FamilyState;
    ///
    /// assert_eq!(FamilyState::Revoked.as_str(), "revoked");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }
}

/// A refresh-token family as stored (no token, no hash).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::{GrantStore, MemoryGrantStore, NewFamily, RefreshToken};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryGrantStore::new();
/// let t = RefreshToken::new_family();
/// let rec = store
///     .create_family(NewFamily::new(t.family_id(), "web", "1001"), &t.hash(), 1_000)
///     .await
///     .unwrap();
/// assert_eq!((rec.created, rec.last_used, rec.generation), (1_000, 1_000, 0));
/// assert!(rec.is_usable(1_001));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FamilyRecord {
    /// The family id (`sid`).
    pub family_id: String,
    /// The client the tokens are bound to.
    pub client_id: String,
    /// The user.
    pub user_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When the user authenticated.
    pub auth_time: u64,
    /// When the family was created (unix seconds).
    pub created: u64,
    /// Last successful rotation (or `created`).
    pub last_used: u64,
    /// The family ends at this time unless refreshed before.
    pub idle_expires: u64,
    /// The family ends at this time whatever happens.
    pub absolute_expires: u64,
    /// Idle lifetime in seconds (what a rotation extends by).
    pub idle_ttl_secs: u64,
    /// Active or revoked.
    pub state: FamilyState,
    /// How many rotations so far.
    pub generation: u64,
}

impl FamilyRecord {
    /// Active and neither lifetime over at `now`.
    ///
    /// # Example
    ///
    /// See [`FamilyRecord`].
    pub fn is_usable(&self, now: u64) -> bool {
        self.state == FamilyState::Active && !self.is_expired(now)
    }

    /// One of the lifetimes is over at `now`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::{GrantStore, MemoryGrantStore, NewFamily, RefreshToken};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = MemoryGrantStore::new();
    /// let t = RefreshToken::new_family();
    /// let fam = NewFamily::new(t.family_id(), "web", "1")
    ///     .with_lifetimes(Duration::from_secs(10), Duration::from_secs(100));
    /// let rec = store.create_family(fam, &t.hash(), 1_000).await.unwrap();
    /// assert!(!rec.is_expired(1_009));
    /// assert!(rec.is_expired(1_010));
    /// # }
    /// ```
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.idle_expires || now >= self.absolute_expires
    }

    fn from_new(f: &NewFamily, now: u64) -> Self {
        let absolute_expires = now.saturating_add(f.absolute_ttl.as_secs());
        let idle_ttl_secs = f.idle_ttl.as_secs();
        Self {
            family_id: f.family_id.clone(),
            client_id: f.client_id.clone(),
            user_id: f.user_id.clone(),
            scopes: f.scopes.clone(),
            auth_time: f.auth_time,
            created: now,
            last_used: now,
            idle_expires: now.saturating_add(idle_ttl_secs).min(absolute_expires),
            absolute_expires,
            idle_ttl_secs,
            state: FamilyState::Active,
            generation: 0,
        }
    }
}

/// The result of one [`GrantStore::rotate`]. Everything but `Rotated` is `invalid_grant` for
/// the client; the variants tell the audit log why.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::RotateOutcome;
///
/// assert!(!RotateOutcome::NotFound.is_rotated());
/// assert_eq!(RotateOutcome::WrongClient.reason(), "wrong_client");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateOutcome {
    /// The presented token was the head: it is now used, the successor is the head.
    Rotated(FamilyRecord),
    /// The presented token had been used before: the family is now revoked (theft detection).
    Reused(FamilyRecord),
    /// The presented token is the head of a revoked family.
    Revoked,
    /// The family's idle or absolute lifetime is over.
    Expired,
    /// The token was issued to another client; nothing changed.
    WrongClient,
    /// Unknown token or family (never issued, expired and removed, or state lost).
    NotFound,
}

impl RotateOutcome {
    /// `true` for [`Rotated`](Self::Rotated).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RotateOutcome;
    ///
    /// assert!(!RotateOutcome::Expired.is_rotated());
    /// ```
    pub fn is_rotated(&self) -> bool {
        matches!(self, Self::Rotated(_))
    }

    /// A short reason for logs: `rotated`, `reused`, `revoked`, `expired`, `wrong_client`,
    /// `not_found`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::RotateOutcome;
    ///
    /// assert_eq!(RotateOutcome::Revoked.reason(), "revoked");
    /// ```
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rotated(_) => "rotated",
            Self::Reused(_) => "reused",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::WrongClient => "wrong_client",
            Self::NotFound => "not_found",
        }
    }
}

/// Where a presented refresh token stands (for introspection and revocation).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::TokenState;
///
/// assert_ne!(TokenState::Current, TokenState::Used);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenState {
    /// The family's head: the one token that can be refreshed.
    Current,
    /// Already rotated away (a tombstone).
    Used,
}

/// An authorization code's grant (issue 10), stored under the code's hash.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::CodeRecord;
///
/// let c = CodeRecord::new("web", "1001", "https://app.example/cb");
/// assert_eq!(c.redirect_uri, "https://app.example/cb");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CodeRecord {
    /// The client the code was issued to.
    pub client_id: String,
    /// The user who authorized.
    pub user_id: String,
    /// The `redirect_uri` of the authorization request (must match at the token endpoint).
    pub redirect_uri: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// PKCE `code_challenge`.
    pub code_challenge: Option<String>,
    /// PKCE `code_challenge_method` (`S256`).
    pub code_challenge_method: Option<String>,
    /// OpenID `nonce`, if any.
    pub nonce: Option<String>,
    /// When the user authenticated.
    pub auth_time: u64,
}

impl CodeRecord {
    /// A record with no scopes, PKCE or nonce.
    ///
    /// # Example
    ///
    /// See [`CodeRecord`].
    pub fn new(
        client_id: impl Into<String>,
        user_id: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            user_id: user_id.into(),
            redirect_uri: redirect_uri.into(),
            scopes: Vec::new(),
            code_challenge: None,
            code_challenge_method: None,
            nonce: None,
            auth_time: 0,
        }
    }

    /// Sets the scopes.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::CodeRecord;
    ///
    /// assert_eq!(CodeRecord::new("c", "u", "r").with_scopes(["a"]).scopes, ["a"]);
    /// ```
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the PKCE challenge and method.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::CodeRecord;
    ///
    /// let c = CodeRecord::new("c", "u", "r").with_pkce("abc", "S256");
    /// assert_eq!(c.code_challenge_method.as_deref(), Some("S256"));
    /// ```
    #[must_use]
    pub fn with_pkce(mut self, challenge: impl Into<String>, method: impl Into<String>) -> Self {
        self.code_challenge = Some(challenge.into());
        self.code_challenge_method = Some(method.into());
        self
    }

    /// Sets `auth_time`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::CodeRecord;
    ///
    /// assert_eq!(CodeRecord::new("c", "u", "r").with_auth_time(9).auth_time, 9);
    /// ```
    #[must_use]
    pub fn with_auth_time(mut self, auth_time: u64) -> Self {
        self.auth_time = auth_time;
        self
    }
}

/// The result of [`GrantStore::take_code`].
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::CodeOutcome;
///
/// let o = CodeOutcome::Reused { family_id: None };
/// assert!(matches!(o, CodeOutcome::Reused { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeOutcome {
    /// First use: the grant, now consumed.
    Taken(CodeRecord),
    /// The code was used before; `family_id` is what the first use created (if linked yet):
    /// revoke it.
    Reused {
        /// The family issued from the first use.
        family_id: Option<String>,
    },
    /// Unknown or expired code.
    NotFound,
}

/// Counters for the stats endpoint, kept as events happen (no table scan).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::GrantStats;
///
/// assert_eq!(GrantStats::default().active_families, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GrantStats {
    /// Families neither revoked nor past their idle expiry.
    pub active_families: u64,
    /// Families created.
    pub families_created: u64,
    /// Families revoked (any reason, reuse included).
    pub families_revoked: u64,
    /// Successful rotations.
    pub rotations: u64,
    /// Reuse detections (a used refresh token presented again).
    pub reuse_detected: u64,
    /// Authorization codes presented a second time.
    pub code_replays: u64,
}

/// Grant state of the authorization server: refresh-token families, authorization codes and
/// revoked access-token ids. Object-safe and asynchronous (every method returns a
/// [`BoxFuture`] that owns what it needs); `now` is unix seconds from the issuer's clock.
///
/// Implementations: [`MemoryGrantStore`] (one process) and, with feature `redis`,
/// `RedisGrantStore` (shared by replicas; every rotation one Lua script). Errors are genuine
/// failures (Redis unreachable): answer them with 500/`server_error`, never `invalid_grant`.
///
/// See the [module docs](crate::issuer::store) for semantics and an example.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::issuer::store::{GrantStore, MemoryGrantStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store: Arc<dyn GrantStore> = Arc::new(MemoryGrantStore::new());
/// store.revoke_jti("jti-1", 2_000, 1_000).await.unwrap();
/// assert!(store.is_jti_revoked("jti-1", 1_500).await.unwrap());
/// assert!(!store.is_jti_revoked("jti-1", 2_000).await.unwrap());
/// # }
/// ```
pub trait GrantStore: Send + Sync + fmt::Debug + 'static {
    /// Creates a family whose first refresh token is `first`.
    ///
    /// # Errors
    ///
    /// A malformed family, a family id already in use, or a store failure.
    fn create_family(
        &self,
        family: NewFamily,
        first: &TokenHash,
        now: u64,
    ) -> BoxFuture<'static, Result<FamilyRecord, StoreError>>;

    /// Rotates `presented` to `successor` for `client_id`, as one atomic step (see the
    /// [module docs](crate::issuer::store) for the table of outcomes).
    ///
    /// # Errors
    ///
    /// `successor` of another family than `presented`, or a store failure.
    fn rotate(
        &self,
        presented: &TokenHash,
        client_id: &str,
        successor: &TokenHash,
        now: u64,
    ) -> BoxFuture<'static, Result<RotateOutcome, StoreError>>;

    /// Where `presented` stands: its family and whether it is the head or used. `None` when
    /// unknown.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn lookup(
        &self,
        presented: &TokenHash,
        now: u64,
    ) -> BoxFuture<'static, Result<Option<(FamilyRecord, TokenState)>, StoreError>>;

    /// The family, if it still exists (revoked ones included, until their absolute expiry).
    ///
    /// # Errors
    ///
    /// A store failure.
    fn get_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<Option<FamilyRecord>, StoreError>>;

    /// Revokes a family; `true` when it was active.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn revoke_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// The user's families that still exist.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn families_by_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<Vec<FamilyRecord>, StoreError>>;

    /// The client's families that still exist.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn families_by_client(
        &self,
        client_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<Vec<FamilyRecord>, StoreError>>;

    /// Revokes every active family of the user; how many were revoked.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn revoke_by_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// Revokes every active family of the client; how many were revoked.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn revoke_by_client(
        &self,
        client_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// Puts an access token's `jti` on the revocation list until `exp` (nothing when `exp` is
    /// already past).
    ///
    /// # Errors
    ///
    /// A store failure.
    fn revoke_jti(
        &self,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// `true` when `jti` is on the revocation list at `now`.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn is_jti_revoked(&self, jti: &str, now: u64) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// Keeps an authorization code (its [hash](hash_secret)) for `ttl` (at most
    /// [`MAX_CODE_TTL`]).
    ///
    /// # Errors
    ///
    /// `ttl` of 0 or above [`MAX_CODE_TTL`], a code hash already present, or a store failure.
    fn put_code(
        &self,
        code_hash: &str,
        record: CodeRecord,
        ttl: Duration,
        now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Consumes a code atomically: the first call gets it, later calls get
    /// [`CodeOutcome::Reused`].
    ///
    /// # Errors
    ///
    /// A store failure.
    fn take_code(
        &self,
        code_hash: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<CodeOutcome, StoreError>>;

    /// Records that the (consumed) code produced `family_id`, so a replay can revoke it.
    /// Nothing happens when the code is gone.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn link_code_family(
        &self,
        code_hash: &str,
        family_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// The counters.
    ///
    /// # Errors
    ///
    /// A store failure.
    fn stats(&self, now: u64) -> BoxFuture<'static, Result<GrantStats, StoreError>>;

    /// Removes the records that expired at or before `now` (families past their absolute
    /// expiry, revoked `jti`s past their `exp`, codes and their tombstones) where the store does
    /// not expire them by itself. The default does nothing and says so: a store whose records
    /// carry a TTL (Redis) or are removed as they expire needs no cleanup.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::{GrantStore, MemoryGrantStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let report = MemoryGrantStore::new().cleanup(1_000).await.unwrap();
    /// assert_eq!(report.removed, 0);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A store failure.
    fn cleanup(&self, now: u64) -> BoxFuture<'static, Result<CleanupReport, StoreError>> {
        let _ = now;
        Box::pin(std::future::ready(Ok(CleanupReport {
            store: "custom",
            removed: 0,
            note: Some("this store does not implement cleanup".to_owned()),
        })))
    }
}

/// What [`GrantStore::cleanup`] did.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::CleanupReport;
///
/// assert_eq!(CleanupReport::default().removed, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CleanupReport {
    /// The kind of store: `memory`, `redis` or `custom`.
    pub store: &'static str,
    /// Records removed.
    pub removed: u64,
    /// Why nothing was (or could be) removed, when that needs saying.
    pub note: Option<String>,
}

fn check_code_ttl(ttl: Duration) -> Result<(), StoreError> {
    if ttl.as_secs() == 0 || ttl > MAX_CODE_TTL {
        return Err(StoreError::new(format!(
            "grant store: authorization code ttl must be 1..={} s",
            MAX_CODE_TTL.as_secs()
        )));
    }
    Ok(())
}

fn check_successor(presented: &TokenHash, successor: &TokenHash) -> Result<(), StoreError> {
    if presented.family_id != successor.family_id {
        return Err(StoreError::new(
            "grant store: the successor belongs to another family",
        ));
    }
    if presented.digest == successor.digest {
        return Err(StoreError::new(
            "grant store: the successor is the presented token",
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
