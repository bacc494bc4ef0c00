//! Every rejection reason, and how each maps to RFC 6750 and gRPC.
//!
//! Authentication failures are values, not panics: the layers turn an [`AuthError`] into a
//! response (see [`crate::authn`]) and put the error itself into the response's extensions so
//! outer layers and tests can read the precise reason.
//!
//! # Example
//!
//! ```
//! use tower_bearer::error::{AuthError, TokenError};
//! use http::StatusCode;
//!
//! let err = AuthError::InvalidToken(TokenError::Expired);
//! assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(err.reason(), "expired");
//! assert_eq!(
//!     err.www_authenticate(Some("api"), false).unwrap(),
//!     r#"Bearer realm="api", error="invalid_token""#
//! );
//! ```

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};

/// Why a bearer token was refused.
///
/// [`TokenError::reason`] is a stable, low-cardinality label (logs, metrics); the `Display` text
/// is the terse human description.
///
/// # Example
///
/// ```
/// use tower_bearer::error::TokenError;
///
/// let err = TokenError::UnknownKey;
/// assert_eq!(err.reason(), "unknown_key");
/// assert_eq!(err.to_string(), "unknown signing key");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than the configured limit; nothing was decoded.
    #[error("token too large")]
    TooLarge,
    /// Not three dot-separated base64url parts.
    #[error("malformed token")]
    Malformed,
    /// A JWS in JSON serialization; only the compact form is accepted.
    #[error("json serialization not supported")]
    JsonSerialization,
    /// An encrypted token (JWE, five parts).
    #[error("encrypted tokens not supported")]
    Encrypted,
    /// A part is not canonical unpadded base64url.
    #[error("invalid base64url")]
    InvalidBase64,
    /// The header or claims are not a JSON object.
    #[error("invalid json")]
    InvalidJson,
    /// A JSON member name appears twice in the header or claims (at any depth).
    #[error("duplicate json member")]
    DuplicateMember,
    /// `alg` is `none` (in any casing).
    #[error("unsigned token")]
    AlgNone,
    /// `alg` is missing, not a string, or not an algorithm this crate implements.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// `alg` is implemented but not in the configured allow-list.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// `crit` is present but not a non-empty array of distinct header names present in the header.
    #[error("malformed crit header")]
    MalformedCrit,
    /// `crit` names an extension this verifier does not implement.
    #[error("unsupported critical header")]
    UnsupportedCrit,
    /// `b64` is `false` (RFC 7797 unencoded payload) or not a boolean.
    #[error("unencoded payload not supported")]
    UnencodedPayload,
    /// The header embeds `jwk`, `jku`, `x5u` or `x5c` and strict mode rejects them.
    #[error("embedded key reference not allowed")]
    EmbeddedKey,
    /// The header `typ` does not match the required type (RFC 9068).
    #[error("wrong token type")]
    WrongType,
    /// `kid` is not a string.
    #[error("invalid key id")]
    InvalidKid,
    /// No key in the issuer's key set has the token's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// No `kid`, and more than one key could have signed the token.
    #[error("ambiguous signing key")]
    AmbiguousKey,
    /// The selected key is not usable with the token's algorithm (e.g. HMAC with a public key).
    #[error("key not usable with algorithm")]
    KeyAlgorithmMismatch,
    /// The signature has the wrong size, an out-of-range value, or does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// No `iss` claim.
    #[error("missing issuer")]
    MissingIssuer,
    /// `iss` is not a single string.
    #[error("invalid issuer")]
    InvalidIssuer,
    /// `iss` is not a configured issuer.
    #[error("untrusted issuer")]
    UntrustedIssuer,
    /// No `aud` claim.
    #[error("missing audience")]
    MissingAudience,
    /// `aud` is not a string or an array of strings.
    #[error("invalid audience")]
    InvalidAudience,
    /// `aud` names none of the configured audiences.
    #[error("audience not accepted")]
    AudienceMismatch,
    /// No `exp` claim.
    #[error("missing expiry")]
    MissingExpiry,
    /// `exp`, `nbf` or `iat` is not a number or out of any sensible range.
    #[error("invalid time claim")]
    InvalidTimeClaim,
    /// `exp` is in the past (beyond the leeway).
    #[error("expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("issued in the future")]
    IssuedInFuture,
    /// A configured required claim is absent.
    #[error("missing required claim")]
    MissingRequiredClaim,
    /// A well-known claim (`sub`, `scope`, `roles`, ...) has the wrong JSON type.
    #[error("invalid claim")]
    InvalidClaim,
    /// The token's policy version is older than the current one: get a new token.
    #[error("policy version outdated, refresh the token")]
    PolicyVersionStale,
    /// The issuer revoked the token: its `jti` is on the revocation list, or its `sid` (the
    /// refresh-token family it came from) was revoked ([`RevocationLayer`](crate::revocation::RevocationLayer)).
    #[error("token revoked")]
    Revoked,
    /// An OpenID Connect ID token presented as an access token: header `typ` `id_token+jwt`, or
    /// a `nonce` or `at_hash` claim (RFC 9068 §4; `reject-id-tokens`, on by default).
    #[error("id token presented as an access token")]
    IdToken,
    /// With several issuers, a token of an issuer without a prefix carries a user id that starts
    /// with another issuer's prefix (`prefix:`), so it would read as that issuer's user.
    #[error("user id uses another issuer's prefix")]
    UserIdPrefixClash,
}

impl TokenError {
    /// A stable snake_case label for logs and metrics.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::TokenError;
    ///
    /// assert_eq!(TokenError::InvalidSignature.reason(), "invalid_signature");
    /// assert_eq!(TokenError::AlgNone.reason(), "alg_none");
    /// ```
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::JsonSerialization => "json_serialization",
            Self::Encrypted => "encrypted",
            Self::InvalidBase64 => "invalid_base64",
            Self::InvalidJson => "invalid_json",
            Self::DuplicateMember => "duplicate_member",
            Self::AlgNone => "alg_none",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::MalformedCrit => "malformed_crit",
            Self::UnsupportedCrit => "unsupported_crit",
            Self::UnencodedPayload => "unencoded_payload",
            Self::EmbeddedKey => "embedded_key",
            Self::WrongType => "wrong_type",
            Self::InvalidKid => "invalid_kid",
            Self::UnknownKey => "unknown_key",
            Self::AmbiguousKey => "ambiguous_key",
            Self::KeyAlgorithmMismatch => "key_algorithm_mismatch",
            Self::InvalidSignature => "invalid_signature",
            Self::MissingIssuer => "missing_issuer",
            Self::InvalidIssuer => "invalid_issuer",
            Self::UntrustedIssuer => "untrusted_issuer",
            Self::MissingAudience => "missing_audience",
            Self::InvalidAudience => "invalid_audience",
            Self::AudienceMismatch => "audience_mismatch",
            Self::MissingExpiry => "missing_exp",
            Self::InvalidTimeClaim => "invalid_time_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::MissingRequiredClaim => "missing_required_claim",
            Self::InvalidClaim => "invalid_claim",
            Self::PolicyVersionStale => "policy_version_stale",
            Self::Revoked => "revoked",
            Self::IdToken => "id_token",
            Self::UserIdPrefixClash => "user_id_prefix_clash",
        }
    }
}

/// Why the request itself is malformed (RFC 6750 `invalid_request`, HTTP 400).
///
/// # Example
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::error::{AuthError, RequestError};
///
/// let err = AuthError::InvalidRequest(RequestError::MalformedCredentials);
/// assert_eq!(err.status(), StatusCode::BAD_REQUEST);
/// assert_eq!(err.reason(), "malformed_credentials");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// More than one `Authorization` header, or a header and an `access_token` query parameter.
    #[error("more than one credential")]
    MultipleCredentials,
    /// `Bearer` with no token, or a value that is not an RFC 6750 `b64token`.
    #[error("malformed bearer credentials")]
    MalformedCredentials,
    /// The `Authorization` header is not visible ASCII.
    #[error("malformed authorization header")]
    MalformedHeader,
    /// `Connection` names an identity header (a trick to make a proxy drop it after checks), or
    /// is not readable.
    #[error("connection header names an identity header")]
    HopByHopIdentityHeader,
}

impl RequestError {
    /// A stable snake_case label for logs and metrics.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::RequestError;
    ///
    /// assert_eq!(RequestError::MultipleCredentials.reason(), "multiple_credentials");
    /// ```
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MultipleCredentials => "multiple_credentials",
            Self::MalformedCredentials => "malformed_credentials",
            Self::MalformedHeader => "malformed_header",
            Self::HopByHopIdentityHeader => "hop_by_hop_identity_header",
        }
    }
}

/// Every way a request can fail authentication or authorization.
///
/// See [`AuthError::status`] for the HTTP mapping and [`AuthError::grpc_code`] for gRPC.
///
/// # Example
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::error::{AuthError, GrpcCode};
///
/// let err = AuthError::AccessDenied;
/// assert_eq!(err.status(), StatusCode::FORBIDDEN);
/// assert_eq!(err.grpc_code(), GrpcCode::PermissionDenied);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No bearer credentials at all (or another scheme, such as `Basic`): 401 with a bare challenge.
    #[error("no bearer credentials")]
    MissingCredentials,
    /// The request carries credentials in a malformed or ambiguous way: 400 `invalid_request`.
    #[error("invalid request: {0}")]
    InvalidRequest(RequestError),
    /// The token was refused: 401 `invalid_token`.
    #[error("invalid token: {0}")]
    InvalidToken(TokenError),
    /// The issuer's signing keys could not be loaded (yet): 503 with `Retry-After`.
    #[error("signing keys unavailable")]
    KeysUnavailable {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The request needs an authenticated user and has none: 401 with a bare challenge.
    #[error("authentication required")]
    AuthenticationRequired,
    /// The token lacks a required scope: 403 `insufficient_scope` with the scope.
    #[error("insufficient scope")]
    InsufficientScope {
        /// The space-separated scopes the resource needs, when a scope rule refused.
        scope: Option<Arc<str>>,
    },
    /// The user lacks a role, authority or permission the rule needs, or the rule denies: 403.
    #[error("access denied")]
    AccessDenied,
    /// The request path is not canonical (`//`, dot segments, encoded `/`, `;`, ...): 400,
    /// refused rather than rewritten behind the router's back.
    #[error("non-canonical path: {0}")]
    NonCanonicalPath(&'static str),
    /// The method is a standard method spelled in another letter case (`delete`, `Delete`,
    /// `pAtCh`): 400. To `http` it is an extension method that no `DELETE` rule names, while
    /// ASP.NET Core, Django and Flask run their `DELETE` handler for it.
    #[error("standard method not spelled upper-case")]
    NonCanonicalMethod,
    /// The policy-version source cannot be reached beyond the staleness bound: 503.
    #[error("policy version source unavailable")]
    PolicyUnavailable,
    /// The revocation source cannot be reached beyond the staleness bound: 503.
    #[error("revocation source unavailable")]
    RevocationUnavailable,
}

/// The gRPC status codes the layers answer with.
///
/// # Example
///
/// ```
/// use tower_bearer::error::{AuthError, GrpcCode};
///
/// assert_eq!(AuthError::MissingCredentials.grpc_code(), GrpcCode::Unauthenticated);
/// assert_eq!(GrpcCode::Unauthenticated.as_i32(), 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 16: no or bad credentials.
    Unauthenticated,
    /// 7: authenticated but not allowed.
    PermissionDenied,
    /// 14: keys unavailable.
    Unavailable,
    /// 3: malformed credentials.
    InvalidArgument,
}

impl GrpcCode {
    /// The numeric code sent in `grpc-status`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::GrpcCode;
    ///
    /// assert_eq!(GrpcCode::PermissionDenied.as_i32(), 7);
    /// assert_eq!(GrpcCode::Unavailable.as_i32(), 14);
    /// ```
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Unauthenticated => 16,
            Self::PermissionDenied => 7,
            Self::Unavailable => 14,
            Self::InvalidArgument => 3,
        }
    }
}

impl AuthError {
    /// The HTTP status this error answers with by default.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::StatusCode;
    /// use tower_bearer::error::AuthError;
    ///
    /// let err = AuthError::KeysUnavailable { retry_after: Duration::from_secs(5) };
    /// assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(AuthError::MissingCredentials.status(), StatusCode::UNAUTHORIZED);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken(_) | Self::AuthenticationRequired => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::KeysUnavailable { .. }
            | Self::PolicyUnavailable
            | Self::RevocationUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientScope { .. } | Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::NonCanonicalPath(_) | Self::NonCanonicalMethod => StatusCode::BAD_REQUEST,
        }
    }

    /// The gRPC status code for this error.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::{AuthError, GrpcCode, TokenError};
    ///
    /// let err = AuthError::InvalidToken(TokenError::Expired);
    /// assert_eq!(err.grpc_code(), GrpcCode::Unauthenticated);
    /// assert_eq!(AuthError::NonCanonicalPath("dot_segment").grpc_code(), GrpcCode::InvalidArgument);
    /// ```
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken(_) | Self::AuthenticationRequired => {
                GrpcCode::Unauthenticated
            }
            Self::InvalidRequest(_) => GrpcCode::Unauthenticated,
            Self::KeysUnavailable { .. }
            | Self::PolicyUnavailable
            | Self::RevocationUnavailable => GrpcCode::Unavailable,
            Self::InsufficientScope { .. } | Self::AccessDenied => GrpcCode::PermissionDenied,
            Self::NonCanonicalPath(_) | Self::NonCanonicalMethod => GrpcCode::InvalidArgument,
        }
    }

    /// The RFC 6750 error code, if any (`invalid_request`, `invalid_token`, `insufficient_scope`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// assert_eq!(AuthError::InvalidToken(TokenError::Expired).error_code(), Some("invalid_token"));
    /// assert_eq!(AuthError::AccessDenied.error_code(), Some("insufficient_scope"));
    /// assert_eq!(AuthError::MissingCredentials.error_code(), None);
    /// ```
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials
            | Self::AuthenticationRequired
            | Self::KeysUnavailable { .. }
            | Self::PolicyUnavailable
            | Self::RevocationUnavailable
            | Self::NonCanonicalPath(_)
            | Self::NonCanonicalMethod => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InsufficientScope { .. } | Self::AccessDenied => Some("insufficient_scope"),
        }
    }

    /// A stable snake_case label for logs and metrics (`missing_credentials`, `expired`, ...).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// assert_eq!(AuthError::MissingCredentials.reason(), "missing_credentials");
    /// assert_eq!(AuthError::InvalidToken(TokenError::Expired).reason(), "expired");
    /// ```
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidRequest(r) => r.reason(),
            Self::InvalidToken(t) => t.reason(),
            Self::KeysUnavailable { .. } => "keys_unavailable",
            Self::AuthenticationRequired => "authentication_required",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::AccessDenied => "access_denied",
            Self::NonCanonicalPath(reason) => reason,
            Self::NonCanonicalMethod => "miscased_method",
            Self::PolicyUnavailable => "policy_unavailable",
            Self::RevocationUnavailable => "revocation_unavailable",
        }
    }

    /// The `WWW-Authenticate` challenge for this error (RFC 6750 §3), or `None` when the
    /// response carries none (503).
    ///
    /// `realm` is quoted as given (characters outside RFC 6750's set are dropped);
    /// `describe` adds an `error_description` with the terse reason.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::error::AuthError;
    ///
    /// let err = AuthError::InsufficientScope { scope: Some(Arc::from("orders:write")) };
    /// assert_eq!(
    ///     err.www_authenticate(None, true).unwrap(),
    ///     r#"Bearer error="insufficient_scope", error_description="insufficient scope", scope="orders:write""#
    /// );
    /// assert_eq!(AuthError::MissingCredentials.www_authenticate(None, false).unwrap(), "Bearer");
    /// assert!(AuthError::PolicyUnavailable.www_authenticate(None, false).is_none());
    /// ```
    pub fn www_authenticate(&self, realm: Option<&str>, describe: bool) -> Option<HeaderValue> {
        if matches!(
            self,
            Self::KeysUnavailable { .. }
                | Self::PolicyUnavailable
                | Self::RevocationUnavailable
                | Self::NonCanonicalPath(_)
                | Self::NonCanonicalMethod
        ) {
            return None;
        }
        let mut out = String::from("Bearer");
        let mut sep = " ";
        if let Some(realm) = realm {
            out.push_str(sep);
            out.push_str("realm=\"");
            push_quoted(&mut out, realm);
            out.push('"');
            sep = ", ";
        }
        if let Some(code) = self.error_code() {
            out.push_str(sep);
            out.push_str("error=\"");
            out.push_str(code);
            out.push('"');
            sep = ", ";
            if describe {
                out.push_str(sep);
                out.push_str("error_description=\"");
                push_quoted(&mut out, &self.description());
                out.push('"');
            }
            if let Self::InsufficientScope { scope: Some(scope) } = self {
                out.push_str(sep);
                out.push_str("scope=\"");
                push_quoted(&mut out, scope);
                out.push('"');
            }
        }
        HeaderValue::from_str(&out).ok()
    }

    /// The terse human description (the `Display` text of the inner reason).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let err = AuthError::InvalidToken(TokenError::InvalidSignature);
    /// assert_eq!(err.description(), "invalid signature");
    /// assert_eq!(err.to_string(), "invalid token: invalid signature");
    /// ```
    pub fn description(&self) -> String {
        match self {
            Self::InvalidRequest(r) => r.to_string(),
            Self::InvalidToken(t) => t.to_string(),
            other => other.to_string(),
        }
    }
}

/// Appends `s`, keeping only RFC 6750 `error_description` / quoted-string-safe characters
/// (%x20-21 / %x23-5B / %x5D-7E).
fn push_quoted(out: &mut String, s: &str) {
    out.extend(
        s.chars()
            .filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
    );
}

/// A configuration mistake found while building a verifier, layer or client.
///
/// Built once at start-up, never inside `call`.
///
/// # Example
///
/// ```
/// use tower_bearer::error::ConfigError;
///
/// let err = ConfigError::Missing("issuer-uri");
/// assert_eq!(err.to_string(), "missing setting: issuer-uri");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL could not be parsed or has the wrong shape.
    #[error("invalid url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `http://` to a non-loopback host without `allow-insecure-http`.
    #[error(
        "insecure url `{0}`: http:// is only allowed for loopback addresses unless allow-insecure-http is set"
    )]
    InsecureUrl(String),
    /// A key could not be used.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A required setting is missing.
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A setting has an invalid value.
    #[error("invalid setting `{name}`: {reason}")]
    Invalid {
        /// The setting's name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The crypto backend failed its known-answer self test.
    #[error("crypto backend self test failed: {0}")]
    Crypto(&'static str),
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A failure of the crate's HTTP client (JWKS, discovery, token endpoint).
///
/// # Example
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::error::HttpError;
///
/// let err = HttpError::Status(StatusCode::BAD_GATEWAY);
/// assert_eq!(err.to_string(), "unexpected status 502 Bad Gateway");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Connecting or sending failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No answer within the configured timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The body is larger than the configured cap.
    #[error("response body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// An unexpected HTTP status.
    #[error("unexpected status {0}")]
    Status(StatusCode),
    /// A redirect to another origin (never followed) or too many redirects.
    #[error("redirect refused: {0}")]
    Redirect(&'static str),
    /// The answer could not be parsed.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The URL is refused by policy (e.g. insecure http).
    #[error("url refused: {0}")]
    Refused(String),
}

/// The error type that carries arbitrary failures.
///
/// # Example
///
/// ```
/// use tower_bearer::error::{BoxError, ConfigError};
///
/// let err: BoxError = Box::new(ConfigError::InvalidKey("too short".into()));
/// assert_eq!(err.to_string(), "invalid key: too short");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            AuthError::MissingCredentials
                .www_authenticate(Some("api"), true)
                .unwrap(),
            r#"Bearer realm="api""#
        );
        assert_eq!(
            AuthError::MissingCredentials
                .www_authenticate(None, false)
                .unwrap(),
            "Bearer"
        );
        assert_eq!(
            AuthError::InvalidRequest(RequestError::MultipleCredentials)
                .www_authenticate(None, false)
                .unwrap(),
            r#"Bearer error="invalid_request""#
        );
        assert_eq!(
            AuthError::InvalidToken(TokenError::Expired)
                .www_authenticate(Some("a\"b\\c"), true)
                .unwrap(),
            r#"Bearer realm="abc", error="invalid_token", error_description="expired""#
        );
        assert_eq!(
            AuthError::InsufficientScope {
                scope: Some("reports.read".into())
            }
            .www_authenticate(None, false)
            .unwrap(),
            r#"Bearer error="insufficient_scope", scope="reports.read""#
        );
        assert!(
            AuthError::KeysUnavailable {
                retry_after: Duration::from_secs(1)
            }
            .www_authenticate(None, false)
            .is_none()
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(
            AuthError::InvalidRequest(RequestError::MalformedCredentials).status(),
            400
        );
        assert_eq!(AuthError::AccessDenied.grpc_code().as_i32(), 7);
        assert_eq!(
            AuthError::InvalidToken(TokenError::AlgNone)
                .grpc_code()
                .as_i32(),
            16
        );
    }
}
