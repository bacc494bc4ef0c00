//! [`AccessToken`], [`TokenRequest`] and the [`TokenSource`] trait.

use std::fmt;
use std::sync::Arc;

use super::error::FetchError;
use crate::error::ConfigError;
use crate::http_client::BoxFuture;

/// An access token from a token endpoint.
///
/// The value is a secret: `Debug` shows its length only.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::AccessToken;
///
/// let token = AccessToken::bearer("eyJhbGciOi", 1_900_000_000);
/// assert_eq!(token.value(), "eyJhbGciOi");
/// assert_eq!(token.token_type(), "Bearer");
/// assert_eq!(token.expires_at_unix(), 1_900_000_000);
/// assert!(!format!("{token:?}").contains("eyJ"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    value: Arc<str>,
    token_type: Arc<str>,
    expires_at_unix: u64,
}

impl AccessToken {
    /// A `Bearer` token that expires at `expires_at_unix` (seconds since the epoch).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::AccessToken;
    ///
    /// let token = AccessToken::bearer("abc", 1_900_000_000);
    /// assert_eq!(token.token_type(), "Bearer");
    /// assert_eq!(token.value(), "abc");
    /// ```
    pub fn bearer(value: impl Into<Arc<str>>, expires_at_unix: u64) -> Self {
        Self {
            value: value.into(),
            token_type: Arc::from("Bearer"),
            expires_at_unix,
        }
    }

    /// A token of another type, as the endpoint named it (the manager only accepts `Bearer`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::AccessToken;
    ///
    /// let token = AccessToken::with_type("abc", "DPoP", 1_900_000_000);
    /// assert_eq!(token.token_type(), "DPoP");
    /// assert_eq!(token.expires_at_unix(), 1_900_000_000);
    /// ```
    pub fn with_type(
        value: impl Into<Arc<str>>,
        token_type: impl Into<Arc<str>>,
        expires_at_unix: u64,
    ) -> Self {
        Self {
            value: value.into(),
            token_type: token_type.into(),
            expires_at_unix,
        }
    }

    /// This token, treated as expiring at `at` if that is earlier than its own expiry.
    pub(crate) fn expiring_no_later_than(mut self, at: u64) -> Self {
        self.expires_at_unix = self.expires_at_unix.min(at);
        self
    }

    /// The token itself. Never log it.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::AccessToken;
    ///
    /// assert_eq!(AccessToken::bearer("abc", 0).value(), "abc");
    /// ```
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The `token_type` the endpoint answered (`Bearer`, in any case).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::AccessToken;
    ///
    /// assert_eq!(AccessToken::with_type("abc", "bearer", 0).token_type(), "bearer");
    /// ```
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the token expires, in seconds since the epoch.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::AccessToken;
    ///
    /// assert_eq!(AccessToken::bearer("abc", 42).expires_at_unix(), 42);
    /// ```
    pub fn expires_at_unix(&self) -> u64 {
        self.expires_at_unix
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field(
                "value",
                &format_args!("<redacted, {} bytes>", self.value.len()),
            )
            .field("token_type", &self.token_type)
            .field("expires_at_unix", &self.expires_at_unix)
            .finish()
    }
}

/// What a token is asked for: an audience and a scope (empty: the parameter is not sent).
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::TokenRequest;
///
/// let req = TokenRequest::new("service-system", "internal-service");
/// assert_eq!(req.audience(), Some("service-system"));
/// assert_eq!(TokenRequest::new("", "a b").audience(), None);
/// assert_eq!(TokenRequest::new("", "a b").scope(), Some("a b"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    audience: Arc<str>,
    scope: Arc<str>,
}

impl TokenRequest {
    /// A request for `audience` and `scope` (space-separated; empty strings mean "none").
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::TokenRequest;
    ///
    /// let req = TokenRequest::new("orders", "read write");
    /// assert_eq!(req.scope(), Some("read write"));
    /// ```
    pub fn new(audience: impl Into<Arc<str>>, scope: impl Into<Arc<str>>) -> Self {
        Self {
            audience: audience.into(),
            scope: scope.into(),
        }
    }

    /// The audience (the `audience` or `resource` parameter), if any.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::TokenRequest;
    ///
    /// assert_eq!(TokenRequest::new("orders", "").audience(), Some("orders"));
    /// assert_eq!(TokenRequest::new("", "read").audience(), None);
    /// ```
    pub fn audience(&self) -> Option<&str> {
        Some(&*self.audience).filter(|s| !s.is_empty())
    }

    /// The space-separated scope, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::TokenRequest;
    ///
    /// assert_eq!(TokenRequest::new("orders", "read").scope(), Some("read"));
    /// assert_eq!(TokenRequest::new("orders", "").scope(), None);
    /// ```
    pub fn scope(&self) -> Option<&str> {
        Some(&*self.scope).filter(|s| !s.is_empty())
    }

    #[inline]
    pub(crate) fn audience_str(&self) -> &str {
        &self.audience
    }

    #[inline]
    pub(crate) fn scope_str(&self) -> &str {
        &self.scope
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Fetches access tokens: [`ClientCredentials`](super::ClientCredentials), or anything else
/// (a closure, a test double, a workload identity).
///
/// A source does one attempt per call; the [`TokenManager`](super::TokenManager) caches,
/// retries, times out and breaks the circuit. The returned future is boxed, `Send + 'static`
/// (it owns what it needs), because the manager runs it in a spawned task.
///
/// Closures `Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>>`
/// are token sources.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::{AccessToken, FetchError, TokenRequest, TokenSource};
/// use tower_bearer::http_client::BoxFuture;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let source = |req: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
///     let value = format!("token-for-{}", req.audience().unwrap_or("any"));
///     Box::pin(async move { Ok(AccessToken::bearer(value, 1_900_000_000)) })
/// };
/// let token = source.fetch(&TokenRequest::new("orders", "")).await.unwrap();
/// assert_eq!(token.value(), "token-for-orders");
/// # }
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// One attempt at a token for `request`.
    fn fetch(&self, request: &TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>>;

    /// Checks, when the manager is built, that `request` can be asked of this source (for
    /// instance: an RFC 8707 `resource` must be an absolute URI). The default accepts all.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming what is wrong.
    fn check_request(&self, request: &TokenRequest) -> Result<(), ConfigError> {
        let _ = request;
        Ok(())
    }

    /// What identifies this source across replicas with the same configuration (for
    /// [`ClientCredentials`](super::ClientCredentials): token URL or issuer, client id and
    /// audience parameter). It is hashed into the shared [`TokenStore`](crate::store::TokenStore)
    /// key and shown in `Debug` output, so it must never contain a secret. The default, empty,
    /// makes the manager use the client's name.
    fn identity(&self) -> String {
        String::new()
    }
}

impl<F> TokenSource for F
where
    F: Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>>
        + Send
        + Sync
        + 'static,
{
    fn fetch(&self, request: &TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> {
        self(request)
    }
}

/// A string that must never be printed (a client secret).
#[derive(Clone)]
pub(crate) struct Secret(Arc<str>);

impl Secret {
    pub(crate) fn new(s: impl Into<Arc<str>>) -> Self {
        Self(s.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
