//! Grants: one module per grant type, behind one dispatch.
//!
//! The token endpoint authenticates the client, then hands the request to the grant named by
//! `grant_type`: each grant is a `Grant` (crate-private trait: `grant_type()` and an async
//! `handle`) registered with the server, so `refresh_token`, `password` and
//! `authorization_code` plug in next to [`client_credentials`] without touching the endpoint.
//! Errors are [`TokenError`]s, rendered exactly per RFC 6749 §5.2.
//!
//! # Example
//!
//! ```
//! use tower_bearer::issuer::grants::{ErrorCode, TokenError};
//!
//! let err = TokenError::new(ErrorCode::InvalidScope, "scope `admin` is not registered for this client");
//! assert_eq!(err.code().as_str(), "invalid_scope");
//! assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
//! ```

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh;

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use http::StatusCode;
use serde::Serialize;

use crate::http_client::BoxFuture;
use crate::issuer::Shared;
use crate::issuer::clients::RegisteredClient;
use crate::issuer::config::GrantType;

/// An RFC 6749 §5.2 (and RFC 8707) error code.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::grants::ErrorCode;
///
/// assert_eq!(ErrorCode::InvalidTarget.as_str(), "invalid_target");
/// assert_eq!(ErrorCode::InvalidClient.status(), http::StatusCode::UNAUTHORIZED);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request` (400).
    InvalidRequest,
    /// `invalid_client` (401).
    InvalidClient,
    /// `invalid_grant` (400).
    InvalidGrant,
    /// `unauthorized_client` (400).
    UnauthorizedClient,
    /// `unsupported_grant_type` (400).
    UnsupportedGrantType,
    /// `invalid_scope` (400).
    InvalidScope,
    /// `invalid_target` (400, RFC 8707).
    InvalidTarget,
    /// `server_error` (500).
    ServerError,
    /// `temporarily_unavailable` (429 when rate limited, else 503).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The `error` value.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::grants::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::UnsupportedGrantType.as_str(), "unsupported_grant_type");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The default HTTP status.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::grants::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::ServerError.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    /// ```
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A token-endpoint error: `{"error", "error_description"}` with its status and headers.
/// See the [module docs](crate::issuer::grants) for an example.
#[derive(Debug, Clone)]
pub struct TokenError {
    code: ErrorCode,
    description: Cow<'static, str>,
    status: StatusCode,
    basic_challenge: bool,
    retry_after: Option<Duration>,
}

impl TokenError {
    /// An error with the code's default status.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::grants::{ErrorCode, TokenError};
    ///
    /// let err = TokenError::new(ErrorCode::InvalidRequest, "missing `grant_type`");
    /// assert_eq!(err.description(), "missing `grant_type`");
    /// ```
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: clean_description(description.into()),
            status: code.status(),
            basic_challenge: false,
            retry_after: None,
        }
    }

    pub(crate) fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    pub(crate) fn too_many(retry_after: Duration) -> Self {
        let mut e = Self::new(
            ErrorCode::TemporarilyUnavailable,
            "too many failed client authentications; retry later",
        );
        e.status = StatusCode::TOO_MANY_REQUESTS;
        e.retry_after = Some(retry_after);
        e
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn server_error() -> Self {
        Self::new(ErrorCode::ServerError, "the server could not issue a token")
    }

    /// The code.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::grants::{ErrorCode, TokenError};
    ///
    /// assert_eq!(TokenError::new(ErrorCode::InvalidGrant, "x").code(), ErrorCode::InvalidGrant);
    /// ```
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The description.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::grants::{ErrorCode, TokenError};
    ///
    /// assert_eq!(TokenError::new(ErrorCode::InvalidGrant, "x").description(), "x");
    /// ```
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The HTTP status.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::grants::{ErrorCode, TokenError};
    ///
    /// assert_eq!(TokenError::new(ErrorCode::InvalidClient, "x").status(), 401);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether the answer carries `WWW-Authenticate: Basic`.
    pub(crate) fn basic_challenge(&self) -> bool {
        self.basic_challenge
    }

    /// `Retry-After`, when rate limited.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Longest `error_description` sent; longer ones (a quoted request value) are cut.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// RFC 6749 §5.2: `error_description` is limited to `%x20-21 / %x23-5B / %x5D-7E`. Values
/// quoted from the request (a parameter name, a `grant_type`, an audience) may hold anything:
/// other characters become `?` and the text is cut to [`MAX_DESCRIPTION_CHARS`].
fn clean_description(d: Cow<'static, str>) -> Cow<'static, str> {
    let ok = |c: char| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e');
    if d.len() <= MAX_DESCRIPTION_CHARS && d.chars().all(ok) {
        return d;
    }
    let mut out: String = d
        .chars()
        .take(MAX_DESCRIPTION_CHARS)
        .map(|c| if ok(c) { c } else { '?' })
        .collect();
    if d.chars().nth(MAX_DESCRIPTION_CHARS).is_some() {
        out.push_str("...");
    }
    Cow::Owned(out)
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for TokenError {}

/// A successful token response (RFC 6749 §5.1).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::grants::TokenResponse;
///
/// let r = TokenResponse::bearer("eyJ...".into(), 300);
/// let json = serde_json::to_value(&r).unwrap();
/// assert_eq!(json["token_type"], "Bearer");
/// assert!(json.get("scope").is_none());
/// assert!(!format!("{r:?}").contains("eyJ"));
/// ```
#[derive(Clone, Serialize)]
#[non_exhaustive]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The granted scope, when it differs from the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A refresh token (user grants only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    /// A bearer token response without scope or refresh token.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::grants::TokenResponse;
    ///
    /// assert_eq!(TokenResponse::bearer("t".into(), 60).expires_in, 60);
    /// ```
    pub fn bearer(access_token: String, expires_in: u64) -> Self {
        Self {
            access_token,
            token_type: "Bearer",
            expires_in,
            scope: None,
            refresh_token: None,
        }
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// The form parameters of a token request, in order; the first value of a name decides.
/// Names and values borrow from the body (which the endpoints zeroize) unless they had to be
/// decoded (`%xx`, `+`); decoded values are zeroized when the parameters are dropped.
#[derive(Debug, Default)]
pub(crate) struct Params<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl Drop for Params<'_> {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for (_, v) in &mut self.pairs {
            if let Cow::Owned(v) = v {
                v.zeroize();
            }
        }
    }
}

impl<'a> Params<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Self {
        // The common body (`grant_type=client_credentials&scope=a+b` without `+` or `%`, valid
        // UTF-8) decodes to itself: split it in place, exactly as `form_urlencoded` splits
        // (empty pairs skipped, a name without `=` has an empty value), without decoding each
        // name and value, in one pass over the bytes (`&`, `=`, `+` and `%` are ASCII: every
        // cut is a char boundary). Anything else goes through `form_urlencoded`.
        if let Ok(text) = std::str::from_utf8(body) {
            let mut pairs = Vec::with_capacity(4);
            let mut push = |start: usize, eq: Option<usize>, end: usize| {
                if start < end {
                    let (k, v) = match eq {
                        Some(e) => (&text[start..e], &text[e + 1..end]),
                        None => (&text[start..end], ""),
                    };
                    pairs.push((Cow::Borrowed(k), Cow::Borrowed(v)));
                }
            };
            let (mut start, mut eq, mut plain) = (0, None, true);
            for (i, &b) in text.as_bytes().iter().enumerate() {
                match b {
                    b'&' => {
                        push(start, eq, i);
                        (start, eq) = (i + 1, None);
                    }
                    b'=' if eq.is_none() => eq = Some(i),
                    b'+' | b'%' => {
                        plain = false;
                        break;
                    }
                    _ => {}
                }
            }
            if plain {
                push(start, eq, text.len());
                return Self { pairs };
            }
        }
        Self {
            pairs: form_urlencoded::parse(body).collect(),
        }
    }

    /// The same parameters, owning their names and values.
    pub(crate) fn into_owned(mut self) -> Params<'static> {
        Params {
            pairs: std::mem::take(&mut self.pairs)
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        }
    }

    /// One value: absent or empty → `None`; given twice → `invalid_request`.
    pub(crate) fn single(&self, name: &str) -> Result<Option<&str>, TokenError> {
        let mut it = self.pairs.iter().filter(|(k, _)| k == name);
        let first = it.next();
        if it.next().is_some() {
            return Err(TokenError::new(
                ErrorCode::InvalidRequest,
                format!("parameter `{name}` is repeated"),
            ));
        }
        Ok(first.map(|(_, v)| &**v).filter(|v| !v.is_empty()))
    }

    /// Every non-empty value of a repeatable parameter (`resource`).
    pub(crate) fn multi(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| &**v)
            .collect()
    }

    /// Every parameter name appears at most once, except those in `repeatable`.
    pub(crate) fn check_no_repeats(&self, repeatable: &[&str]) -> Result<(), TokenError> {
        for (i, (k, _)) in self.pairs.iter().enumerate() {
            if !repeatable.contains(&&**k) && self.pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(TokenError::new(
                    ErrorCode::InvalidRequest,
                    format!("parameter `{k}` is repeated"),
                ));
            }
        }
        Ok(())
    }
}

/// What a grant needs to answer one request.
pub(crate) struct GrantRequest<'a> {
    pub(crate) server: &'a Shared,
    pub(crate) client: &'a RegisteredClient,
    pub(crate) params: &'a Params<'a>,
    /// The source address, when the router is served with `ConnectInfo<SocketAddr>`.
    pub(crate) address: Option<&'a str>,
}

/// One grant type (crate-private: grants live in this module).
pub(crate) trait Grant: Send + Sync + fmt::Debug + 'static {
    /// The `grant_type` it answers.
    fn grant_type(&self) -> GrantType;
    /// Answers an authenticated client's request.
    fn handle<'a>(
        &'a self,
        req: GrantRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenResponse, TokenError>>;
}

/// Parses `scope` (space-delimited, RFC 6749 §3.3); `None` when absent.
pub(crate) fn parse_scope(raw: Option<&str>) -> Result<Option<Vec<String>>, TokenError> {
    let Some(raw) = raw else { return Ok(None) };
    let mut out: Vec<String> = Vec::new();
    for s in raw.split(' ').filter(|s| !s.is_empty()) {
        if !s.chars().all(crate::issuer::config::is_scope_char) {
            return Err(TokenError::new(
                ErrorCode::InvalidScope,
                "the scope contains invalid characters",
            ));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-place split of plain bodies is `form_urlencoded`'s parse.
    #[test]
    fn params_split_as_form_urlencoded_does() {
        for body in [
            &b""[..],
            b"&",
            b"&&a=1&&",
            b"a",
            b"a=",
            b"=v",
            b"=",
            b"a==b&c=d=e",
            b"grant_type=client_credentials&scope=x y&audience=s",
            b"a=%41&b=+",
            b"k=\xff\xfe&x=1",
            "é=ü&ü".as_bytes(),
        ] {
            let ours: Vec<(String, String)> = Params::parse(body)
                .pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
            assert_eq!(ours, theirs, "{body:?}");
        }
        let p = Params::parse(b"a=1&b=2");
        assert!(
            p.pairs
                .iter()
                .all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_))))
        );
    }

    #[test]
    fn params_repeats_and_empties() {
        let p = Params::parse(b"a=1&b=&c=x&c=y&resource=r1&resource=r2&resource=");
        assert_eq!(p.single("a").unwrap(), Some("1"));
        assert_eq!(p.single("b").unwrap(), None);
        assert_eq!(p.single("zz").unwrap(), None);
        assert_eq!(p.single("c").unwrap_err().code(), ErrorCode::InvalidRequest);
        assert_eq!(p.multi("resource"), ["r1", "r2"]);
        assert!(p.check_no_repeats(&["resource", "c"]).is_ok());
        assert!(p.check_no_repeats(&["resource"]).is_err());
    }

    // Found while writing the `token_endpoint` fuzz target: descriptions quoting a request value
    // (here a repeated parameter name, a `grant_type`) carried `"`, `\\`, control and non-ASCII
    // characters and any length, outside RFC 6749 §5.2's character set.
    #[test]
    fn descriptions_stay_in_the_rfc_6749_set() {
        let p = Params::parse("%22%5C%0A%C3%A9=1&%22%5C%0A%C3%A9=2".as_bytes());
        let e = p.check_no_repeats(&[]).unwrap_err();
        assert_eq!(e.description(), "parameter `????` is repeated");
        let long = "x".repeat(5000);
        let e = TokenError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant type `{long}`"),
        );
        assert_eq!(e.description().len(), MAX_DESCRIPTION_CHARS + 3);
        assert!(e.description().ends_with("xxx..."));
        let plain = TokenError::new(ErrorCode::InvalidRequest, "missing `grant_type`");
        assert!(matches!(plain.description, Cow::Borrowed(_)));
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(parse_scope(None).unwrap(), None);
        assert_eq!(parse_scope(Some("  ")).unwrap(), None);
        assert_eq!(
            parse_scope(Some("a b  a")).unwrap(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            parse_scope(Some("a\"b")).unwrap_err().code(),
            ErrorCode::InvalidScope
        );
    }
}
