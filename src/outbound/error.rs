//! Errors of the outbound half: one fetch ([`FetchError`]), a token call on the manager
//! ([`OutboundError`]) and the injection layer ([`InjectError`]).

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::error::HttpError;

/// An RFC 6749 §5.2 error code.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::OAuthErrorCode;
///
/// let code = OAuthErrorCode::parse("invalid_client");
/// assert_eq!(code, OAuthErrorCode::InvalidClient);
/// assert!(code.is_permanent());
/// assert_eq!(code.as_str(), "invalid_client");
/// assert!(!OAuthErrorCode::parse("temporarily_unavailable").is_permanent());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client`: client authentication failed (permanent).
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`: this client may not use this grant (permanent).
    UnauthorizedClient,
    /// `unsupported_grant_type` (permanent).
    UnsupportedGrantType,
    /// `invalid_scope` (permanent).
    InvalidScope,
    /// `invalid_target` (RFC 8707; permanent).
    InvalidTarget,
    /// Any other code, as sent (at most 64 characters).
    Other(Arc<str>),
}

impl OAuthErrorCode {
    /// Maps the `error` member of the response.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::OAuthErrorCode;
    ///
    /// assert_eq!(OAuthErrorCode::parse("invalid_grant"), OAuthErrorCode::InvalidGrant);
    /// assert_eq!(OAuthErrorCode::parse("slow_down").as_str(), "slow_down");
    /// ```
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "invalid_target" => Self::InvalidTarget,
            other => Self::Other(sanitize(other, 64).into()),
        }
    }

    /// The code as sent.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::OAuthErrorCode;
    ///
    /// assert_eq!(OAuthErrorCode::InvalidTarget.as_str(), "invalid_target");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::Other(s) => s,
        }
    }

    /// Retrying cannot help: `invalid_client`, `unauthorized_client`, `unsupported_grant_type`,
    /// `invalid_scope`, `invalid_target`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::OAuthErrorCode;
    ///
    /// assert!(OAuthErrorCode::InvalidScope.is_permanent());
    /// assert!(!OAuthErrorCode::InvalidGrant.is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::InvalidClient
                | Self::UnauthorizedClient
                | Self::UnsupportedGrantType
                | Self::InvalidScope
                | Self::InvalidTarget
        )
    }
}

/// An RFC 6749 §5.2 error response from the token endpoint.
///
/// # Example
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::outbound::{OAuthError, OAuthErrorCode};
///
/// let err = OAuthError::new(StatusCode::BAD_REQUEST, OAuthErrorCode::InvalidScope);
/// assert_eq!(err.to_string(), "token endpoint answered 400 Bad Request invalid_scope");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token endpoint answered {status} {}{}", code.as_str(), description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
#[non_exhaustive]
pub struct OAuthError {
    /// The HTTP status (400 or 401, usually).
    pub status: StatusCode,
    /// The `error` code.
    pub code: OAuthErrorCode,
    /// The `error_description`, filtered to printable ASCII and cut to 200 characters.
    pub description: Option<String>,
    /// `Retry-After` in seconds, when sent.
    pub retry_after: Option<Duration>,
}

impl OAuthError {
    /// An error with `status` and `code`.
    ///
    /// # Example
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_bearer::outbound::{OAuthError, OAuthErrorCode};
    ///
    /// let err = OAuthError::new(StatusCode::UNAUTHORIZED, OAuthErrorCode::InvalidClient);
    /// assert_eq!(err.status, StatusCode::UNAUTHORIZED);
    /// assert!(err.description.is_none() && err.retry_after.is_none());
    /// ```
    pub fn new(status: StatusCode, code: OAuthErrorCode) -> Self {
        Self {
            status,
            code,
            description: None,
            retry_after: None,
        }
    }
}

/// Why one attempt at fetching a token failed.
///
/// [`FetchError::is_permanent`] tells the manager not to retry;
/// [`FetchError::retry_after`] when the server asked to wait.
///
/// # Example
///
/// ```
/// use http::StatusCode;
/// use std::time::Duration;
/// use tower_bearer::outbound::FetchError;
///
/// let err = FetchError::Status { status: StatusCode::SERVICE_UNAVAILABLE, retry_after: Some(Duration::from_secs(2)) };
/// assert!(!err.is_permanent());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(err.kind(), "status");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Sending the request failed (connect, TLS, body too large, ...).
    #[error("token request failed: {0}")]
    Http(HttpError),
    /// The attempt took longer than the per-attempt timeout.
    #[error("token request timed out after {0:?}")]
    Timeout(Duration),
    /// An RFC 6749 §5.2 error.
    #[error(transparent)]
    OAuth(OAuthError),
    /// A non-success status without an RFC 6749 error body.
    #[error("token endpoint answered {status}")]
    Status {
        /// The status.
        status: StatusCode,
        /// `Retry-After` in seconds, when sent.
        retry_after: Option<Duration>,
    },
    /// The success answer is not a usable token response (bad JSON, no `access_token`, a
    /// token that cannot go into a header).
    #[error("invalid token response: {0}")]
    InvalidResponse(String),
    /// The `token_type` is not `Bearer`.
    #[error("unsupported token_type `{0}`")]
    TokenType(String),
    /// The token endpoint could not be discovered (transient).
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The request or the discovered configuration cannot work (an RFC 8707 `resource` that is
    /// not an absolute URI, a discovery document naming another issuer, a refused URL).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl FetchError {
    /// Retrying cannot help (RFC 6749 permanent codes, a wrong `token_type`, a bad
    /// configuration, a 4xx other than 408 / 429).
    ///
    /// # Example
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_bearer::outbound::FetchError;
    ///
    /// assert!(FetchError::TokenType("mac".into()).is_permanent());
    /// let busy = FetchError::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after: None };
    /// assert!(!busy.is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::OAuth(e) => e.code.is_permanent(),
            Self::TokenType(_) | Self::Config(_) => true,
            Self::Http(HttpError::Refused(_)) => true,
            Self::Status { status, .. } => {
                status.is_client_error()
                    && *status != StatusCode::REQUEST_TIMEOUT
                    && *status != StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    /// How long the server asked to wait (`Retry-After`, seconds).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::StatusCode;
    /// use tower_bearer::outbound::{FetchError, OAuthError, OAuthErrorCode};
    ///
    /// let mut oauth = OAuthError::new(StatusCode::BAD_REQUEST, OAuthErrorCode::InvalidRequest);
    /// oauth.retry_after = Some(Duration::from_secs(5));
    /// assert_eq!(FetchError::OAuth(oauth).retry_after(), Some(Duration::from_secs(5)));
    /// assert_eq!(FetchError::Timeout(Duration::from_secs(1)).retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::OAuth(e) => e.retry_after,
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable snake_case label for logs and metrics.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::outbound::FetchError;
    ///
    /// assert_eq!(FetchError::Timeout(Duration::from_secs(1)).kind(), "timeout");
    /// assert_eq!(FetchError::InvalidResponse("no access_token".into()).kind(), "invalid_response");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Timeout(_) => "timeout",
            Self::OAuth(_) => "oauth_error",
            Self::Status { .. } => "status",
            Self::InvalidResponse(_) => "invalid_response",
            Self::TokenType(_) => "token_type",
            Self::Discovery(_) => "discovery",
            Self::Config(_) => "config",
        }
    }
}

/// Why [`TokenManager::token`](super::TokenManager::token) gave no token.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::outbound::OutboundError;
///
/// let err = OutboundError::CircuitOpen { client: "orders".into(), retry_after: Duration::from_secs(30) };
/// assert_eq!(err.to_string(), "token endpoint of client `orders` is not called for 30s (circuit open)");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The client's token endpoint is not being called: too many consecutive failed fetches
    /// (circuit open), or the server asked to wait (`Retry-After`). Returned at once.
    #[error("token endpoint of client `{client}` is not called for {}s (circuit open)", retry_after.as_secs())]
    CircuitOpen {
        /// The client's name.
        client: Arc<str>,
        /// When a call may be made again.
        retry_after: Duration,
    },
    /// Fetching failed (after the retries, if the error was not permanent).
    #[error("fetching a token for client `{client}` failed after {attempts} attempt(s): {source}")]
    Fetch {
        /// The client's name.
        client: Arc<str>,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: Box<FetchError>,
    },
    /// No configured client serves this audience.
    #[error("no client configured for audience `{audience}`")]
    NoClient {
        /// The audience asked for.
        audience: Arc<str>,
    },
    /// No configured client has this name.
    #[error("no client named `{0}`")]
    UnknownClient(Arc<str>),
    /// Too many distinct unconfigured (audience, scope) pairs.
    #[error("too many distinct (audience, scope) pairs")]
    TooManySlots,
    /// The fetch task ended without an answer (the runtime is shutting down), or there is no
    /// Tokio runtime to run it in.
    #[error("token fetch aborted: {0}")]
    Aborted(&'static str),
}

impl OutboundError {
    /// A stable snake_case label for logs and metrics.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::OutboundError;
    ///
    /// assert_eq!(OutboundError::TooManySlots.kind(), "too_many_slots");
    /// assert_eq!(OutboundError::UnknownClient("orders".into()).kind(), "unknown_client");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Fetch { source, .. } => source.kind(),
            Self::NoClient { .. } => "no_client",
            Self::UnknownClient(_) => "unknown_client",
            Self::TooManySlots => "too_many_slots",
            Self::Aborted(_) => "aborted",
        }
    }
}

/// Why [`InjectBearer`](super::InjectBearer) refused a request before sending it.
///
/// Returned as the service's `BoxError`; downcast to read it.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::InjectError;
///
/// let err = InjectError::UnlistedDestination { origin: "https://elsewhere.example:443".into() };
/// assert_eq!(err.to_string(), "no client lists destination https://elsewhere.example:443 (strict mode)");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InjectError {
    /// The destination's token could not be had; nothing was sent.
    #[error("no token for client `{client}`: {source}")]
    Token {
        /// The client whose token was needed.
        client: Arc<str>,
        /// Why there is none.
        #[source]
        source: OutboundError,
    },
    /// Strict mode: the request goes to an origin no client lists.
    #[error("no client lists destination {origin} (strict mode)")]
    UnlistedDestination {
        /// `scheme://host:port`, or `?` when the request has no absolute URI.
        origin: String,
    },
}

/// Printable ASCII only, at most `max` characters.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect()
}
