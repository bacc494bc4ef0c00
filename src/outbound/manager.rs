//! [`TokenManager`]: cached, refreshed-ahead service tokens for several named clients.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;

use super::engine::{ClientState, Inner, Options, Origin, Slot, Stats, owner_id, store_key};
use super::error::OutboundError;
use super::token::{AccessToken, TokenRequest, TokenSource};
use crate::clock::{SharedClock, SystemClock};
use crate::error::ConfigError;
use crate::http_client::BoxFuture;
use crate::store::{MemoryTokenStore, TokenStore};

/// Retries of one fetch.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::outbound::RetryPolicy;
///
/// let policy = RetryPolicy { max_attempts: 5, ..RetryPolicy::default() };
/// assert_eq!(policy.attempt_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per fetch, the first included. Default 3. Permanent errors end a fetch at once.
    pub max_attempts: u32,
    /// Timeout of each attempt. Default 5 s.
    pub attempt_timeout: Duration,
    /// Backoff before the second attempt, doubling after (half of it random). Default 200 ms.
    pub backoff_base: Duration,
    /// Longest backoff. Default 5 s.
    pub backoff_max: Duration,
    /// A `Retry-After` up to this long is waited for within the fetch; a longer one ends the
    /// fetch, and the endpoint is not called again before it has passed. Default 30 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// The circuit breaker of each client's token endpoint.
///
/// After `failure_threshold` consecutive failed fetches the endpoint is not called for
/// `cool_down`: callers without a valid token get [`OutboundError::CircuitOpen`] at once.
/// Then one probe (a single attempt) decides: success closes the circuit, failure opens it
/// for another cool-down.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::outbound::CircuitPolicy;
///
/// let policy = CircuitPolicy::default();
/// assert_eq!((policy.failure_threshold, policy.cool_down), (5, Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone)]
pub struct CircuitPolicy {
    /// Consecutive failed fetches that open the circuit. Default 5.
    pub failure_threshold: u32,
    /// How long the endpoint is left alone (whole seconds on the manager's clock). Default 30 s.
    pub cool_down: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// Counters of a [`TokenManager`] since it was built.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::TokenStats;
///
/// let stats = TokenStats::default();
/// assert_eq!(stats.hit_rate(), 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenStats {
    /// Calls answered from the cache (refresh window included).
    pub hits: u64,
    /// Calls that found no valid token and waited for a fetch (or got an error).
    pub misses: u64,
    /// Requests sent to token sources (every attempt).
    pub fetches: u64,
    /// Failed requests to token sources.
    pub failures: u64,
    /// Calls refused at once because the circuit was open.
    pub circuit_rejections: u64,
}

impl TokenStats {
    /// `hits / (hits + misses)`, 0 before the first call.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder().client(TokenClient::new("orders", source())).build().unwrap();
    /// manager.token("system", "").await.unwrap(); // miss
    /// manager.token("system", "").await.unwrap(); // hit
    /// assert_eq!(manager.stats().hit_rate(), 0.5);
    /// # }
    /// ```
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// One named client of a [`TokenManager`]: where its tokens come from, what they are asked
/// for, and which origins receive them (`security.internal-token` or one of its `clients`).
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::{AccessToken, TokenClient, TokenRequest};
///
/// let source = |_: &TokenRequest| -> tower_bearer::http_client::BoxFuture<'static, _> {
///     Box::pin(async { Ok(AccessToken::bearer("t", u64::MAX)) })
/// };
/// let client = TokenClient::new("orders", source)
///     .with_audience("service-system")
///     .with_scope("internal-service")
///     .with_destination("http://127.0.0.1:9002")
///     .unwrap();
/// assert_eq!(client.name(), "orders");
/// assert!(TokenClient::new("x", |_: &TokenRequest| -> tower_bearer::http_client::BoxFuture<'static, _> {
///     Box::pin(async { Ok(AccessToken::bearer("t", u64::MAX)) })
/// })
/// .with_destination("http://127.0.0.1:9002/path")
/// .is_err());
/// ```
#[must_use]
pub struct TokenClient {
    name: Arc<str>,
    source: Arc<dyn TokenSource>,
    audience: Arc<str>,
    scope: Arc<str>,
    pairs: Vec<(Arc<str>, Arc<str>)>,
    destinations: Vec<Origin>,
    skip_callers: Vec<Arc<str>>,
    max_reuse: Option<Duration>,
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("name", &self.name)
            .field("source", &self.source.identity())
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("pairs", &self.pairs)
            .field("destinations", &self.destinations)
            .field("skip_clients", &self.skip_callers)
            .field("max_reuse", &self.max_reuse)
            .finish()
    }
}

impl TokenClient {
    /// A client named `name` whose tokens come from `source`.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    ///
    /// let client = TokenClient::new("orders", source()).with_audience("system");
    /// assert_eq!(client.name(), "orders");
    /// ```
    pub fn new(name: impl Into<Arc<str>>, source: impl TokenSource) -> Self {
        Self::with_shared_source(name, Arc::new(source))
    }

    /// Like [`new`](Self::new), with a source shared with other code.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::TokenSource;
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// let shared: Arc<dyn TokenSource> = Arc::new(source());
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::with_shared_source("orders", shared.clone()).with_audience("orders"))
    ///     .client(TokenClient::with_shared_source("billing", shared).with_audience("billing"))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(manager.client_token("billing").await.unwrap(), "Bearer billing.-");
    /// # }
    /// ```
    pub fn with_shared_source(name: impl Into<Arc<str>>, source: Arc<dyn TokenSource>) -> Self {
        Self {
            name: name.into(),
            source,
            audience: "".into(),
            scope: "".into(),
            pairs: Vec::new(),
            destinations: Vec::new(),
            skip_callers: Vec::new(),
            max_reuse: None,
        }
    }

    /// The audience of this client's tokens (`audience`; empty: not sent).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = TokenClient::new("orders", source()).with_audience("system");
    /// let manager = TokenManager::builder().client(client).build().unwrap();
    /// assert_eq!(manager.client_token("orders").await.unwrap(), "Bearer system.-");
    /// # }
    /// ```
    pub fn with_audience(mut self, audience: impl Into<Arc<str>>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The space-separated scope of this client's tokens (`scope`; empty: not sent).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = TokenClient::new("orders", source()).with_audience("system").with_scope("read");
    /// let manager = TokenManager::builder().client(client).build().unwrap();
    /// assert_eq!(manager.client_token("orders").await.unwrap(), "Bearer system.read");
    /// # }
    /// ```
    pub fn with_scope(mut self, scope: impl Into<Arc<str>>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Another `(audience, scope)` this client serves, with a slot made in advance (so its
    /// [`TokenManager::token`] calls take the lock-free path from the first call on).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = TokenClient::new("orders", source()).with_audience("system").with_pair("system", "write");
    /// let manager = TokenManager::builder().client(client).build().unwrap();
    /// assert_eq!(manager.token("system", "write").await.unwrap(), "Bearer system.write");
    /// # }
    /// ```
    pub fn with_pair(mut self, audience: impl Into<Arc<str>>, scope: impl Into<Arc<str>>) -> Self {
        self.pairs.push((audience.into(), scope.into()));
        self
    }

    /// An origin (`scheme://host[:port]`, nothing after it but `/`) that receives this
    /// client's token from [`InjectBearer`](super::InjectBearer). Nothing else does.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    ///
    /// assert!(TokenClient::new("a", source()).with_destination("https://orders.internal").is_ok());
    /// assert!(TokenClient::new("b", source()).with_destination("ftp://orders.internal").is_err());
    /// assert!(TokenClient::new("c", source()).with_destination("https://orders.internal/api").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] when `origin` is not an http(s) origin.
    pub fn with_destination(mut self, origin: &str) -> Result<Self, ConfigError> {
        self.destinations.push(parse_origin(origin)?);
        Ok(self)
    }

    /// Names of outgoing clients (see
    /// [`InjectBearerLayer::with_client_name`](super::InjectBearerLayer::with_client_name))
    /// that never receive this client's token (`skip-clients`).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    ///
    /// let client = TokenClient::new("orders", source()).with_skip_clients(["public-api"]);
    /// assert!(format!("{client:?}").contains("public-api"));
    /// ```
    pub fn with_skip_clients<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.skip_callers.extend(names.into_iter().map(Into::into));
        self
    }

    /// The client's name.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    ///
    /// assert_eq!(TokenClient::new("orders", source()).name(), "orders");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reuses one fetched token for at most `max` (YAML `cache-expire-seconds`), even when the
    /// token endpoint grants a longer lifetime: the token is treated as expiring at
    /// `min(its expiry, fetched + max)`, and the manager's refresh ahead counts back from that
    /// bound (clamped to half of it, as for any short-lived token).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    ///
    /// let client = TokenClient::new("orders", source()).with_max_reuse(Duration::from_secs(540));
    /// assert!(format!("{client:?}").contains("540s"));
    /// ```
    pub fn with_max_reuse(mut self, max: Duration) -> Self {
        self.max_reuse = Some(max);
        self
    }
}

/// Parses a destination origin.
pub(crate) fn parse_origin(origin: &str) -> Result<Origin, ConfigError> {
    let invalid = |reason| ConfigError::InvalidUrl {
        url: origin.to_owned(),
        reason,
    };
    let uri: http::Uri = origin.parse().map_err(|_| invalid("not a valid URL"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid("user info is not allowed"));
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("a destination is an http or https origin"));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(invalid("a destination is an origin: no path or query"));
    }
    let (scheme, host, port) =
        crate::http_client::origin(&uri).ok_or_else(|| invalid("no host"))?;
    Ok(Origin::new(scheme, host, port))
}

/// Service tokens for several named clients, cached per `(audience, scope)`, refreshed ahead
/// of expiry in the background, fetched once however many callers wait (the seeds'
/// `getServiceToken(audience, scope)`).
///
/// - **Hit path** (≤ 100 ns): a freshness check, a clone of a pre-built `Authorization`
///   value marked sensitive. No lock, no allocation for pairs configured in advance (an
///   unconfigured pair takes a mutex to find its slot). On the system clock, a token fetched
///   on a multi-thread Tokio runtime gets a timer there that marks it stale at its refresh
///   instant: until then the check is one atomic load of the slot's state, no clock read,
///   and the value comes from the calling thread's copy of it (made on the thread's first
///   hit, served only while the slot's state still names that token as fresh). Otherwise
///   (current-thread runtime, runtime gone, a [`Clock`](crate::clock::Clock) given to the
///   builder) the check reads the clock. A token past its expiry is never handed out unless
///   that timer is late by more than the refresh-ahead margin (at least 1 s).
/// - **Refresh ahead**: `refresh_ahead` (default 60 s) before expiry, clamped to half the
///   token's lifetime; jitter only moves the refresh later. While a valid token exists,
///   callers never wait: one background refresh runs.
/// - **Single flight**: with no valid token, all callers wait on one fetch that runs in a
///   spawned task; a caller that gives up cancels nothing.
/// - **Retries** ([`RetryPolicy`]) with exponential backoff, jitter and a timeout per attempt;
///   permanent errors are not retried; `Retry-After` is honoured.
/// - **Circuit breaker** ([`CircuitPolicy`]).
/// - **Shared store** ([`TokenStore`]): read before every fetch; one replica fetches.
/// - [`stats`](Self::stats) gives the hit rate; with feature `metrics`, counters
///   `tower_bearer_outbound_token_{misses,fetches,failures}_total` and
///   `tower_bearer_outbound_circuit_{open,rejections}_total`.
///
/// Fetch tasks are spawned on the Tokio runtime of the caller (or of the builder).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_bearer::clock::ManualClock;
/// use tower_bearer::http_client::BoxFuture;
/// use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let clock = ManualClock::new(1_700_000_000);
/// let now = clock.clone();
/// let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
///     let expires = tower_bearer::clock::Clock::now_unix(&now) + 3600;
///     Box::pin(async move { Ok(AccessToken::bearer("abc", expires)) })
/// };
/// let manager = TokenManager::builder()
///     .client(TokenClient::new("orders", source).with_audience("service-system").with_scope("internal-service"))
///     .clock(Arc::new(clock.clone()))
///     .build()
///     .unwrap();
///
/// let header = manager.token("service-system", "internal-service").await.unwrap();
/// assert_eq!(header, "Bearer abc");
/// assert!(header.is_sensitive());
/// manager.token("service-system", "internal-service").await.unwrap();
/// let stats = manager.stats();
/// assert_eq!((stats.fetches, stats.hits, stats.misses), (1, 1, 1));
/// # }
/// ```
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clients: Vec<(&str, &str)> = self
            .inner
            .clients
            .iter()
            .map(|c| (&*c.name, c.identity.as_str()))
            .collect();
        f.debug_struct("TokenManager")
            .field("clients", &clients)
            .field("slots", &self.inner.slots.len())
            .field("store", &self.inner.store)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// Starts a builder.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder().client(TokenClient::new("orders", source())).build().unwrap();
    /// assert_eq!(manager.client_names().collect::<Vec<_>>(), ["orders"]);
    /// # }
    /// ```
    pub fn builder() -> TokenManagerBuilder {
        TokenManagerBuilder::default()
    }

    /// The `Authorization` value (`Bearer …`, marked sensitive) for `audience` and `scope`
    /// (empty strings: the parameter is not sent).
    ///
    /// The cache is read when `token` is called: on a hit the returned future is ready at
    /// once (nothing allocated); otherwise it waits for the slot's fetch.
    ///
    /// The pair is served by the client configured for it (exactly, or by audience; with a
    /// single client, that client serves every pair).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::OutboundError;
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()).with_audience("orders"))
    ///     .client(TokenClient::new("billing", source()).with_audience("billing"))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(manager.token("billing", "read").await.unwrap(), "Bearer billing.read");
    /// assert!(matches!(manager.token("other", "").await, Err(OutboundError::NoClient { .. })));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`OutboundError::CircuitOpen`] at once while the endpoint is left alone,
    /// [`OutboundError::Fetch`] when fetching failed, [`OutboundError::NoClient`] when no
    /// client serves the audience.
    #[inline(always)]
    pub fn token(&self, audience: &str, scope: &str) -> TokenFuture {
        // The hit on a configured slot, inline in the caller: the ready future it returns is
        // then taken apart right where it is polled (no future moved, no drop glue).
        if let Some(slot) = self.inner.find_slot(audience, scope) {
            if let Some(header) = self.inner.hit(slot) {
                return TokenFuture::hit(header);
            }
        }
        self.token_slow(audience, scope)
    }

    /// [`token`](Self::token) on a configured slot without a valid token, or on any other
    /// pair (a dynamic slot, its hit included).
    #[inline(never)]
    fn token_slow(&self, audience: &str, scope: &str) -> TokenFuture {
        let slot = match self.inner.find_slot(audience, scope) {
            // `hit` said no valid token: wait for the fetch.
            Some(slot) => slot.clone(),
            None => match self.dynamic(audience, scope) {
                Ok(slot) => match self.inner.hit(&slot) {
                    Some(header) => return TokenFuture::hit(header),
                    None => slot,
                },
                Err(e) => return TokenFuture::failed(e),
            },
        };
        let inner = self.inner.clone();
        TokenFuture::waiting(Box::pin(async move {
            inner.slow(&slot).await.map(|c| c.header.clone())
        }))
    }

    /// The token itself for `audience` and `scope` (for callers that build their own header).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder().client(TokenClient::new("orders", source())).build().unwrap();
    /// let token = manager.access_token("system", "read").await.unwrap();
    /// assert_eq!(token.value(), "system.read");
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn access_token(
        &self,
        audience: &str,
        scope: &str,
    ) -> Result<AccessToken, OutboundError> {
        let slot = match self.inner.find_slot(audience, scope) {
            Some(slot) => slot.clone(),
            None => self.dynamic(audience, scope)?,
        };
        // The hit path first, for its bookkeeping (counters, background refresh).
        if self.inner.hit(&slot).is_some() {
            if let Some(cached) = self.inner.current_valid(&slot) {
                return Ok(cached.stored.token().clone());
            }
        }
        let cached = self.inner.slow(&slot).await?;
        Ok(cached.stored.token().clone())
    }

    /// The token of the client named `name`, for its configured audience and scope.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::OutboundError;
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = TokenClient::new("orders", source()).with_audience("system");
    /// let manager = TokenManager::builder().client(client).build().unwrap();
    /// assert_eq!(manager.client_token("orders").await.unwrap(), "Bearer system.-");
    /// assert!(matches!(manager.client_token("nope").await, Err(OutboundError::UnknownClient(_))));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`OutboundError::UnknownClient`], or as [`token`](Self::token).
    pub async fn client_token(&self, name: &str) -> Result<HeaderValue, OutboundError> {
        let handle = self
            .client_handle(name)
            .ok_or_else(|| OutboundError::UnknownClient(name.into()))?;
        match handle.try_now() {
            Some(header) => Ok(header),
            None => handle.fetch().await,
        }
    }

    /// Drops the cached token of `audience` and `scope` (here and in the shared store); the
    /// next call fetches. `true` if there was one.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder().client(TokenClient::new("orders", source())).build().unwrap();
    /// manager.token("system", "").await.unwrap();
    /// assert!(manager.invalidate("system", ""));
    /// assert!(!manager.invalidate("system", "")); // already gone
    /// # }
    /// ```
    pub fn invalidate(&self, audience: &str, scope: &str) -> bool {
        match self.existing_slot(audience, scope) {
            Some(slot) => self.inner.invalidate(&slot),
            None => false,
        }
    }

    /// Drops the cached token of `audience` and `scope` only if it is still `value` (the
    /// `Authorization` value a downstream service refused), and at most once per slot per
    /// invalidation interval (default 10 s). `true` if it was dropped.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let n = Arc::new(AtomicU32::new(0));
    /// let counter = n.clone();
    /// let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    ///     let i = counter.fetch_add(1, Ordering::SeqCst);
    ///     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// };
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source).with_audience("system"))
    ///     .build()
    ///     .unwrap();
    /// let refused = manager.token("system", "").await.unwrap();
    /// assert!(manager.invalidate_if_current("system", "", &refused));
    /// // Already gone: a second report of the same token changes nothing.
    /// assert!(!manager.invalidate_if_current("system", "", &refused));
    /// assert_eq!(manager.token("system", "").await.unwrap(), "Bearer t1");
    /// # }
    /// ```
    pub fn invalidate_if_current(&self, audience: &str, scope: &str, value: &HeaderValue) -> bool {
        match self.existing_slot(audience, scope) {
            Some(slot) => self.inner.invalidate_if_current(&slot, value),
            None => false,
        }
    }

    /// Fetches the token of every configured pair now (e.g. at start-up).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = TokenClient::new("orders", source()).with_audience("system");
    /// let manager = TokenManager::builder().client(client).build().unwrap();
    /// manager.warm_up().await.unwrap();
    /// assert_eq!(manager.stats().fetches, 1);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The first failure.
    pub async fn warm_up(&self) -> Result<(), OutboundError> {
        for slot in self.inner.slots.iter() {
            if self.inner.hit(slot).is_none() {
                self.inner.slow(slot).await?;
            }
        }
        Ok(())
    }

    /// Counters since the manager was built; [`TokenStats::hit_rate`] is the hit rate.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder().client(TokenClient::new("orders", source())).build().unwrap();
    /// manager.token("system", "").await.unwrap();
    /// let stats = manager.stats();
    /// assert_eq!((stats.misses, stats.fetches, stats.failures), (1, 1, 0));
    /// # }
    /// ```
    pub fn stats(&self) -> TokenStats {
        self.inner.stats.snapshot()
    }

    /// The names of the configured clients.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()).with_audience("orders"))
    ///     .client(TokenClient::new("billing", source()).with_audience("billing"))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(manager.client_names().collect::<Vec<_>>(), ["orders", "billing"]);
    /// # }
    /// ```
    pub fn client_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.clients.iter().map(|c| &*c.name)
    }

    /// The shared state, for the engine's tests.
    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    fn dynamic(&self, audience: &str, scope: &str) -> Result<Arc<Slot>, OutboundError> {
        self.inner
            .dynamic_slot(audience, scope, true)?
            .ok_or(OutboundError::TooManySlots)
    }

    fn existing_slot(&self, audience: &str, scope: &str) -> Option<Arc<Slot>> {
        match self.inner.find_slot(audience, scope) {
            Some(slot) => Some(slot.clone()),
            None => self
                .inner
                .dynamic_slot(audience, scope, false)
                .ok()
                .flatten(),
        }
    }

    pub(crate) fn client_handle(&self, name: &str) -> Option<TokenHandle> {
        let index = self.inner.clients.iter().position(|c| &*c.name == name)?;
        Some(self.handle(index))
    }

    pub(crate) fn handle(&self, client: usize) -> TokenHandle {
        let slot = self.inner.slots[self.inner.clients[client].default_slot].clone();
        TokenHandle {
            inner: self.inner.clone(),
            slot,
        }
    }

    /// `(client index, destinations, skip-clients)` of every client.
    pub(crate) fn routes(&self) -> impl Iterator<Item = (usize, &[Origin], &[Arc<str>])> + '_ {
        self.inner
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.destinations.as_slice(), c.skip_callers.as_slice()))
    }
}

/// The future of [`TokenManager::token`]: ready at once on a hit, else waiting for the slot's
/// fetch (boxed: `Send + 'static`, it owns its slot).
///
/// # Example
///
/// ```
/// # use tower_bearer::http_client::BoxFuture;
/// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenFuture, TokenManager, TokenRequest};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
/// #     Box::pin(async { Ok(AccessToken::bearer("abc", u64::MAX / 2)) })
/// # };
/// let manager = TokenManager::builder().client(TokenClient::new("orders", source)).build().unwrap();
/// let future: TokenFuture = manager.token("system", "");
/// let handle = tokio::spawn(future); // `Send + 'static`
/// assert_eq!(handle.await.unwrap().unwrap(), "Bearer abc");
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct TokenFuture {
    state: TokenFutureState,
}

/// The hit is the header alone (the error, rare, boxed): a small future the hit path builds
/// and the caller takes apart with few moves.
enum TokenFutureState {
    Ready(Option<Result<HeaderValue, OutboundError>>),
    Waiting(BoxFuture<'static, Result<HeaderValue, OutboundError>>),
}

impl TokenFuture {
    #[inline(always)]
    fn hit(header: HeaderValue) -> Self {
        Self {
            state: TokenFutureState::Ready(Some(Ok(header))),
        }
    }

    #[cold]
    fn failed(error: OutboundError) -> Self {
        Self {
            state: TokenFutureState::Ready(Some(Err(error))),
        }
    }

    fn waiting(future: BoxFuture<'static, Result<HeaderValue, OutboundError>>) -> Self {
        Self {
            state: TokenFutureState::Waiting(future),
        }
    }
}

impl fmt::Debug for TokenFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            TokenFutureState::Ready(_) => "Ready",
            TokenFutureState::Waiting(_) => "Waiting",
        };
        f.debug_struct("TokenFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for TokenFuture {
    type Output = Result<HeaderValue, OutboundError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            TokenFutureState::Ready(result) => {
                Poll::Ready(result.take().expect("future polled after completion"))
            }
            TokenFutureState::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// A pre-resolved slot (the injection layer's view of one client).
#[derive(Clone)]
pub(crate) struct TokenHandle {
    inner: Arc<Inner>,
    slot: Arc<Slot>,
}

impl fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHandle")
            .field("client", &self.client_name())
            .field("request", &self.slot.request)
            .finish()
    }
}

impl TokenHandle {
    /// The hit path.
    #[inline]
    pub(crate) fn try_now(&self) -> Option<HeaderValue> {
        self.inner.hit(&self.slot)
    }

    /// The slow path, as an owned future.
    pub(crate) fn fetch(&self) -> BoxFuture<'static, Result<HeaderValue, OutboundError>> {
        let this = self.clone();
        Box::pin(async move {
            if let Some(header) = this.try_now() {
                return Ok(header);
            }
            this.inner.slow(&this.slot).await.map(|c| c.header.clone())
        })
    }

    pub(crate) fn invalidate_if_current(&self, value: &HeaderValue) -> bool {
        self.inner.invalidate_if_current(&self.slot, value)
    }

    pub(crate) fn client_name(&self) -> &Arc<str> {
        &self.inner.clients[self.slot.client].name
    }
}

/// Builds a [`TokenManager`]. See [`TokenManager::builder`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::outbound::{CircuitPolicy, RetryPolicy, TokenManager};
///
/// let err = TokenManager::builder()
///     .refresh_ahead(Duration::from_secs(30))
///     .retry(RetryPolicy { max_attempts: 2, ..Default::default() })
///     .circuit(CircuitPolicy { failure_threshold: 3, cool_down: Duration::from_secs(10) })
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "missing setting: internal-token client");
/// ```
#[must_use]
pub struct TokenManagerBuilder {
    clients: Vec<TokenClient>,
    /// `None`: the system clock (the hit path then reads it directly).
    clock: Option<SharedClock>,
    store: Option<Arc<dyn TokenStore>>,
    opts: Options,
}

impl fmt::Debug for TokenManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManagerBuilder")
            .field("clients", &self.clients)
            .field("store", &self.store)
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Default for TokenManagerBuilder {
    fn default() -> Self {
        Self {
            clients: Vec::new(),
            clock: None,
            store: None,
            opts: Options {
                refresh_ahead: Duration::from_secs(60),
                refresh_jitter: 0.1,
                retry: RetryPolicy::default(),
                circuit: CircuitPolicy::default(),
                invalidate_interval: Duration::from_secs(10),
                lock_wait: Duration::from_secs(5),
                lock_poll: Duration::from_millis(100),
                store_timeout: Duration::from_secs(1),
                store_prefix: "tower-bearer".to_owned(),
                max_dynamic_slots: 1024,
            },
        }
    }
}

impl TokenManagerBuilder {
    /// Adds a client.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder().client(TokenClient::new("orders", source())).build().unwrap();
    /// assert_eq!(manager.token("system", "").await.unwrap(), "Bearer system.-");
    /// # }
    /// ```
    pub fn client(mut self, client: TokenClient) -> Self {
        self.clients.push(client);
        self
    }

    /// The clock of expiry, refresh, circuit and invalidation timing (default: system).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::clock::ManualClock;
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let clock = ManualClock::new(1_700_000_000);
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build()
    ///     .unwrap();
    /// assert!(manager.token("system", "").await.is_ok());
    /// # }
    /// ```
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The shared token store (default: a [`MemoryTokenStore`] on the manager's clock).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::store::{MemoryTokenStore, TokenStore};
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store: Arc<dyn TokenStore> = Arc::new(MemoryTokenStore::new());
    /// let build = || TokenManager::builder().client(TokenClient::new("orders", source())).store(store.clone()).build().unwrap();
    /// let (a, b) = (build(), build());
    /// a.token("system", "").await.unwrap();
    /// b.token("system", "").await.unwrap(); // found in the shared store
    /// assert_eq!(a.stats().fetches + b.stats().fetches, 1);
    /// # }
    /// ```
    pub fn store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Refresh this long before expiry (`refresh-ahead-seconds`, default 60 s), clamped to
    /// half of each token's lifetime.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()))
    ///     .refresh_ahead(Duration::from_secs(120))
    ///     .build()
    ///     .unwrap();
    /// assert!(manager.token("system", "").await.is_ok());
    /// # }
    /// ```
    pub fn refresh_ahead(mut self, ahead: Duration) -> Self {
        self.opts.refresh_ahead = ahead;
        self
    }

    /// Up to this fraction of the refresh window is cut at random, so replicas do not refresh
    /// together (default 0.1; `0.0..1.0`). It only moves the refresh later.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let builder = || TokenManager::builder().client(TokenClient::new("orders", source()));
    /// assert!(builder().refresh_jitter(0.0).build().is_ok());
    /// assert!(builder().refresh_jitter(1.5).build().is_err()); // out of range
    /// # }
    /// ```
    pub fn refresh_jitter(mut self, fraction: f64) -> Self {
        self.opts.refresh_jitter = fraction;
        self
    }

    /// Retries of one fetch.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::{OutboundError, RetryPolicy};
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let failing = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     Box::pin(async { Err(FetchError::Timeout(Duration::from_secs(5))) })
    /// # };
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", failing))
    ///     .retry(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() })
    ///     .build()
    ///     .unwrap();
    /// let err = manager.token("system", "").await.unwrap_err();
    /// assert!(matches!(err, OutboundError::Fetch { attempts: 1, .. }));
    /// # }
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.opts.retry = policy;
        self
    }

    /// The circuit breaker.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::{CircuitPolicy, OutboundError, RetryPolicy};
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let failing = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     Box::pin(async { Err(FetchError::Timeout(Duration::from_secs(5))) })
    /// # };
    /// let policy = CircuitPolicy { failure_threshold: 1, cool_down: Duration::from_secs(30) };
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", failing))
    ///     .retry(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() })
    ///     .circuit(policy)
    ///     .build()
    ///     .unwrap();
    /// assert!(manager.token("system", "").await.is_err()); // one failure opens the circuit
    /// let err = manager.token("system", "").await.unwrap_err();
    /// assert!(matches!(err, OutboundError::CircuitOpen { .. }));
    /// # }
    /// ```
    pub fn circuit(mut self, policy: CircuitPolicy) -> Self {
        self.opts.circuit = policy;
        self
    }

    /// [`TokenManager::invalidate_if_current`] acts at most once per slot per this interval
    /// (default 10 s).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()))
    ///     .invalidate_interval(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// let refused = manager.token("system", "").await.unwrap();
    /// assert!(manager.invalidate_if_current("system", "", &refused));
    /// let again = manager.token("system", "").await.unwrap();
    /// assert!(!manager.invalidate_if_current("system", "", &again)); // within the interval
    /// # }
    /// ```
    pub fn invalidate_interval(mut self, interval: Duration) -> Self {
        self.opts.invalidate_interval = interval;
        self
    }

    /// How long a replica waits for another one that holds the store's fetch lock before it
    /// fetches itself (default 5 s), and how often it looks (default 100 ms).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()))
    ///     .lock_wait(Duration::from_secs(2), Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// assert!(manager.token("system", "").await.is_ok());
    /// # }
    /// ```
    pub fn lock_wait(mut self, wait: Duration, poll: Duration) -> Self {
        self.opts.lock_wait = wait;
        self.opts.lock_poll = poll;
        self
    }

    /// Timeout of each store operation (default 1 s); a slow store is skipped.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()))
    ///     .store_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// assert!(manager.token("system", "").await.is_ok());
    /// # }
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.opts.store_timeout = timeout;
        self
    }

    /// The prefix of shared store keys (default `tower-bearer`).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use tower_bearer::store::{MemoryTokenStore, TokenStore};
    ///
    /// let store: Arc<dyn TokenStore> = Arc::new(MemoryTokenStore::new());
    /// let build = |prefix: &str| {
    ///     let client = TokenClient::new("orders", source());
    ///     TokenManager::builder().client(client).store(store.clone()).store_key_prefix(prefix).build().unwrap()
    /// };
    /// let (a, b) = (build("team-a"), build("team-b"));
    /// a.token("system", "").await.unwrap();
    /// b.token("system", "").await.unwrap(); // other keys: not shared
    /// assert_eq!(a.stats().fetches + b.stats().fetches, 2);
    /// # }
    /// ```
    pub fn store_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.opts.store_prefix = prefix.into();
        self
    }

    /// At most this many unconfigured `(audience, scope)` pairs get a slot (default 1024).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::OutboundError;
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let manager = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()))
    ///     .max_dynamic_slots(1)
    ///     .build()
    ///     .unwrap();
    /// assert!(manager.token("a", "").await.is_ok());
    /// assert!(matches!(manager.token("b", "").await, Err(OutboundError::TooManySlots)));
    /// # }
    /// ```
    pub fn max_dynamic_slots(mut self, max: usize) -> Self {
        self.opts.max_dynamic_slots = max;
        self
    }

    /// Checks the settings and builds the manager. No token is fetched yet (see
    /// [`TokenManager::warm_up`]).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenManager, TokenRequest};
    /// # fn source() -> impl Fn(&TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> + Send + Sync + 'static {
    /// #     |req: &TokenRequest| {
    /// #         let value = format!("{}.{}", req.audience().unwrap_or("-"), req.scope().unwrap_or("-"));
    /// #         Box::pin(async move { Ok(AccessToken::bearer(value, u64::MAX / 2)) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert!(TokenManager::builder().build().is_err()); // no client
    /// let twice = TokenManager::builder()
    ///     .client(TokenClient::new("orders", source()))
    ///     .client(TokenClient::new("orders", source()));
    /// assert!(twice.build().is_err()); // two clients share a name
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when no client is configured, two clients share a name, a pair or a
    /// destination, a source refuses a configured pair (an RFC 8707 `resource` that is not an
    /// absolute URI), or a policy value is out of range.
    pub fn build(self) -> Result<TokenManager, ConfigError> {
        let invalid = |name, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        };
        if self.clients.is_empty() {
            return Err(ConfigError::Missing("internal-token client"));
        }
        let o = &self.opts;
        if !(0.0..1.0).contains(&o.refresh_jitter) {
            return Err(invalid("refresh-jitter", "must be in 0.0..1.0"));
        }
        if o.retry.max_attempts == 0 {
            return Err(invalid("max-attempts", "must be at least 1"));
        }
        if o.retry.attempt_timeout.is_zero() {
            return Err(invalid("attempt-timeout", "must be positive"));
        }
        if o.circuit.failure_threshold == 0 {
            return Err(invalid("failure-threshold", "must be at least 1"));
        }
        if self
            .clients
            .iter()
            .any(|c| c.max_reuse.is_some_and(|m| m.as_secs() == 0))
        {
            return Err(invalid("cache-expire-seconds", "must be at least 1 second"));
        }
        if o.lock_poll.is_zero() {
            return Err(invalid("lock-poll", "must be positive"));
        }
        let mut names: HashMap<&str, ()> = HashMap::new();
        let mut pairs: HashMap<(Arc<str>, Arc<str>), &str> = HashMap::new();
        let mut origins: HashMap<String, &str> = HashMap::new();
        let mut clients = Vec::with_capacity(self.clients.len());
        let mut slots = Vec::new();
        for (index, c) in self.clients.iter().enumerate() {
            if c.name.is_empty() {
                return Err(ConfigError::Missing("client name"));
            }
            if names.insert(&c.name, ()).is_some() {
                return Err(ConfigError::Invalid {
                    name: "clients",
                    reason: format!("two clients are named `{}`", c.name),
                });
            }
            for origin in &c.destinations {
                if let Some(other) = origins.insert(origin.to_string(), &c.name) {
                    return Err(ConfigError::Invalid {
                        name: "destinations",
                        reason: format!("{origin} is listed by `{other}` and `{}`", c.name),
                    });
                }
            }
            let default_slot = slots.len();
            let mut audiences: Vec<Arc<str>> = Vec::new();
            let own = std::iter::once((c.audience.clone(), c.scope.clone()));
            for (audience, scope) in own.chain(c.pairs.iter().cloned()) {
                let key = (audience.clone(), scope.clone());
                if let Some(other) = pairs.get(&key) {
                    if *other == &*c.name {
                        continue;
                    }
                    return Err(ConfigError::Invalid {
                        name: "clients",
                        reason: format!(
                            "audience `{audience}` with scope `{scope}` is served by `{other}` and `{}`",
                            c.name
                        ),
                    });
                }
                pairs.insert(key, &c.name);
                let request = TokenRequest::new(audience.clone(), scope);
                c.source.check_request(&request)?;
                if !audience.is_empty() && !audiences.contains(&audience) {
                    audiences.push(audience);
                }
                slots.push((index, request));
            }
            let mut state = ClientState::new(
                c.name.clone(),
                c.source.clone(),
                audiences,
                c.destinations.clone(),
                c.skip_callers.clone(),
                default_slot,
            );
            state.max_reuse = c.max_reuse;
            clients.push(state);
        }
        let slots: Vec<Arc<Slot>> = slots
            .into_iter()
            .map(|(client, request)| {
                let key = store_key(&o.store_prefix, &clients[client].identity, &request);
                Arc::new(Slot::new(client, request, key))
            })
            .collect();
        let system_clock = self.clock.is_none();
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryTokenStore::with_clock(clock.clone())));
        Ok(TokenManager {
            inner: Arc::new(Inner {
                clients: clients.into_boxed_slice(),
                slots: slots.into_boxed_slice(),
                dynamic: Mutex::new(HashMap::new()),
                clock,
                system_clock,
                store,
                opts: self.opts,
                stats: Stats::default(),
                owner: owner_id(),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        })
    }
}
