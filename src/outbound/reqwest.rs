//! [`InjectBearerMiddleware`]: the rules of [`InjectBearerLayer`] as a
//! [`reqwest_middleware::Middleware`].
//!
//! The same decision runs for both (one function): only the origins a client lists get its
//! token; [`SkipBearer`] in the request's extensions (reqwest-middleware's
//! [`RequestBuilder::with_extension`](reqwest_middleware::RequestBuilder::with_extension))
//! skips one request; `skip-clients` by [`with_client_name`]; an `Authorization` already
//! present is kept unless [`with_override`]; [`with_strict`] refuses unlisted origins. The
//! value set is marked sensitive. A request whose token cannot be had is not sent: the
//! middleware returns [`reqwest_middleware::Error::Middleware`] holding an [`InjectError`]
//! (`downcast_ref::<InjectError>()` on it).
//!
//! [`with_client_name`]: InjectBearerMiddleware::with_client_name
//! [`with_override`]: InjectBearerMiddleware::with_override
//! [`with_strict`]: InjectBearerMiddleware::with_strict
//!
//! # Example
//!
//! ```
//! use axum::{http::HeaderMap, Router};
//! use reqwest_middleware::ClientBuilder;
//! use tower_bearer::http_client::BoxFuture;
//! use tower_bearer::outbound::{
//!     AccessToken, FetchError, InjectBearerMiddleware, TokenClient, TokenManager, TokenRequest,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # // A destination answering with the `Authorization` it received.
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let destination = format!("http://{}", listener.local_addr().unwrap());
//! # let echo = Router::new().fallback(|h: HeaderMap| async move {
//! #     h.get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
//! # });
//! # tokio::spawn(async move { axum::serve(listener, echo).await.unwrap() });
//! // In production: ClientCredentials::builder(id, secret).token_url(..).build()?
//! let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
//!     Box::pin(async { Ok(AccessToken::bearer("eyJ0b2tlbiJ9", u64::MAX / 2)) })
//! };
//! let manager = TokenManager::builder()
//!     .client(
//!         TokenClient::new("orders", source)
//!             .with_audience("service-system")
//!             .with_scope("internal-service")
//!             .with_destination(&destination) // e.g. "http://127.0.0.1:9002"
//!             .unwrap(),
//!     )
//!     .build()
//!     .unwrap();
//!
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(InjectBearerMiddleware::new(manager))
//!     .build();
//! let seen = client.get(format!("{destination}/internal/ping")).send().await.unwrap();
//! assert_eq!(seen.text().await.unwrap(), "Bearer eyJ0b2tlbiJ9");
//! # }
//! ```
//!
//! # Redirects
//!
//! reqwest follows redirects inside the client, below the middleware: the middleware sees
//! (and matches) only the first URL. reqwest removes `Authorization` (with `Cookie` and
//! `Proxy-Authorization`) when a redirect changes the scheme, host or port, whatever redirect
//! policy is set, so a listed destination that redirects elsewhere does not hand the token on;
//! a same-origin redirect keeps it. A redirect *to* a listed origin gets no token either (the
//! middleware did not see that hop). Turn redirects off (`redirect::Policy::none()`) to route
//! each hop through the middleware yourself.
//!
//! # Reactive mode
//!
//! With [`InjectBearerMiddleware::with_reactive`], a `401` with
//! `WWW-Authenticate: Bearer error="invalid_token"` from the origin the token went to
//! invalidates that token ([`TokenManager::invalidate_if_current`]: only if still current, at
//! most once per slot per interval) and the request is sent again once, with the new token,
//! when [`reqwest::Request::try_clone`] can copy it (any body but a stream). Otherwise the
//! `401` goes back to the caller and the next request carries a new token.
//!
//! # TLS
//!
//! This crate turns on no reqwest feature. Plain `http://` works as is; for `https://`
//! destinations enable a TLS feature (`rustls`) on your own `reqwest` dependency.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ::reqwest::{Request, Response, Url};
use http::Extensions;
use http::header::AUTHORIZATION;
use reqwest_middleware::{Error, Middleware, Next, Result};

use super::inject::future::{refuses_token_parts, replace_refused};
use super::inject::layer::{Decision, Target};
use super::{InjectBearerLayer, InjectError, SkipBearer, TokenManager};

/// A [`reqwest_middleware::Middleware`] that sets `Authorization: Bearer …` (marked
/// sensitive) on requests to the destinations of a [`TokenManager`]'s clients, with the rules
/// of [`InjectBearerLayer`]. It is the builder: `new`, then by-value `with_*` methods.
///
/// See the [module docs](crate::outbound::reqwest) for an example.
///
/// # Example
///
/// ```
/// use reqwest_middleware::ClientBuilder;
/// use tower_bearer::http_client::BoxFuture;
/// use tower_bearer::outbound::{
///     AccessToken, FetchError, InjectBearerMiddleware, TokenClient, TokenManager, TokenRequest,
/// };
///
/// let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
///     Box::pin(async { Ok(AccessToken::bearer("eyJ0b2tlbiJ9", u64::MAX / 2)) })
/// };
/// let manager = TokenManager::builder()
///     .client(
///         TokenClient::new("orders", source)
///             .with_audience("service-system")
///             .with_destination("http://127.0.0.1:9002")
///             .unwrap()
///             .with_skip_clients(["payments-gateway"]),
///     )
///     .build()
///     .unwrap();
/// let middleware = InjectBearerMiddleware::new(manager)
///     .with_client_name("orders-api")
///     .with_strict(true)
///     .with_reactive(true);
/// let client = ClientBuilder::new(reqwest::Client::new()).with(middleware).build();
/// ```
#[must_use]
pub struct InjectBearerMiddleware {
    rules: InjectBearerLayer,
}

impl Clone for InjectBearerMiddleware {
    fn clone(&self) -> Self {
        Self {
            rules: self.rules.clone(),
        }
    }
}

impl fmt::Debug for InjectBearerMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectBearerMiddleware")
            .field("rules", &self.rules)
            .finish()
    }
}

impl InjectBearerMiddleware {
    /// Injects the token of each of `manager`'s clients into requests to that client's
    /// destinations (and nowhere else).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::{InjectBearerMiddleware, TokenManager};
    ///
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenRequest};
    /// # fn manager() -> TokenManager {
    /// #     let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #         Box::pin(async { Ok(AccessToken::bearer("eyJ0b2tlbiJ9", u64::MAX / 2)) })
    /// #     };
    /// #     let client = TokenClient::new("orders", source).with_audience("service-system");
    /// #     TokenManager::builder().client(client).build().unwrap()
    /// # }
    /// let middleware = InjectBearerMiddleware::new(manager());
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(middleware)
    ///     .build();
    /// ```
    pub fn new(manager: TokenManager) -> Self {
        Self {
            rules: InjectBearerLayer::new(manager),
        }
    }

    /// The name of the outgoing client this middleware serves: token clients that list it in
    /// `skip-clients` ([`TokenClient::with_skip_clients`](super::TokenClient::with_skip_clients))
    /// inject nothing through it.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::{InjectBearerMiddleware, TokenManager};
    ///
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenRequest};
    /// # fn manager() -> TokenManager {
    /// #     let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #         Box::pin(async { Ok(AccessToken::bearer("eyJ0b2tlbiJ9", u64::MAX / 2)) })
    /// #     };
    /// #     let client = TokenClient::new("orders", source).with_audience("service-system");
    /// #     TokenManager::builder().client(client).build().unwrap()
    /// # }
    /// let middleware = InjectBearerMiddleware::new(manager()).with_client_name("payments-gateway");
    /// ```
    pub fn with_client_name(self, name: impl Into<Arc<str>>) -> Self {
        Self {
            rules: self.rules.with_client_name(name),
        }
    }

    /// Replace an `Authorization` header the request already has (default: leave it alone).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::{InjectBearerMiddleware, TokenManager};
    ///
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenRequest};
    /// # fn manager() -> TokenManager {
    /// #     let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #         Box::pin(async { Ok(AccessToken::bearer("eyJ0b2tlbiJ9", u64::MAX / 2)) })
    /// #     };
    /// #     let client = TokenClient::new("orders", source).with_audience("service-system");
    /// #     TokenManager::builder().client(client).build().unwrap()
    /// # }
    /// let middleware = InjectBearerMiddleware::new(manager()).with_override(true);
    /// ```
    pub fn with_override(self, override_existing: bool) -> Self {
        Self {
            rules: self.rules.with_override(override_existing),
        }
    }

    /// Strict mode: a request to an origin no client lists is not sent; the middleware
    /// returns [`InjectError::UnlistedDestination`] (in
    /// [`reqwest_middleware::Error::Middleware`]) instead of letting it pass untouched.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use reqwest_middleware::{ClientBuilder, Error};
    /// use tower_bearer::outbound::{InjectBearerMiddleware, InjectError, TokenManager};
    ///
    /// # async fn f(manager: TokenManager) {
    /// let client = ClientBuilder::new(reqwest::Client::new())
    ///     .with(InjectBearerMiddleware::new(manager).with_strict(true))
    ///     .build();
    /// match client.get("https://api.partner.example/v1").send().await {
    ///     Err(Error::Middleware(e)) => {
    ///         let e = e.downcast_ref::<InjectError>();
    ///         assert!(matches!(e, Some(InjectError::UnlistedDestination { .. })));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub fn with_strict(self, strict: bool) -> Self {
        Self {
            rules: self.rules.with_strict(strict),
        }
    }

    /// Reactive mode: a `401` with `WWW-Authenticate: Bearer error="invalid_token"` from the
    /// origin the token went to invalidates that token (if still current, at most once per
    /// interval, see [`TokenManager::invalidate_if_current`]); the request is sent again
    /// once, with the new token, when [`reqwest::Request::try_clone`] can copy it.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::{InjectBearerMiddleware, TokenManager};
    ///
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenRequest};
    /// # fn manager() -> TokenManager {
    /// #     let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #         Box::pin(async { Ok(AccessToken::bearer("eyJ0b2tlbiJ9", u64::MAX / 2)) })
    /// #     };
    /// #     let client = TokenClient::new("orders", source).with_audience("service-system");
    /// #     TokenManager::builder().client(client).build().unwrap()
    /// # }
    /// let middleware = InjectBearerMiddleware::new(manager()).with_reactive(true);
    /// ```
    pub fn with_reactive(self, reactive: bool) -> Self {
        Self {
            rules: self.rules.with_reactive(reactive),
        }
    }

    /// The manager.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::{InjectBearerMiddleware, TokenManager};
    ///
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, TokenClient, TokenRequest};
    /// # fn manager() -> TokenManager {
    /// #     let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #         Box::pin(async { Ok(AccessToken::bearer("eyJ0b2tlbiJ9", u64::MAX / 2)) })
    /// #     };
    /// #     let client = TokenClient::new("orders", source).with_audience("service-system");
    /// #     TokenManager::builder().client(client).build().unwrap()
    /// # }
    /// let middleware = InjectBearerMiddleware::new(manager());
    /// println!("hit rate {}", middleware.manager().stats().hit_rate());
    /// ```
    pub fn manager(&self) -> &TokenManager {
        self.rules.manager()
    }

    async fn inject(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let decision = self.rules.decide(
            extensions.get::<SkipBearer>().is_some(),
            target(req.url()),
            req.headers().contains_key(AUTHORIZATION),
        );
        let route = match decision {
            Decision::Pass => return next.run(req, extensions).await,
            Decision::Reject(e) => return Err(Error::middleware(e)),
            Decision::Inject(route) => &self.rules.routes[route],
        };
        let handle = &route.handle;
        let header = match handle.try_now() {
            Some(header) => header,
            None => handle.fetch().await.map_err(|source| {
                let error = InjectError::Token {
                    client: handle.client_name().clone(),
                    source,
                };
                tracing::warn!(error = %error, "request not sent");
                Error::middleware(error)
            })?,
        };
        if !self.rules.reactive {
            req.headers_mut().insert(AUTHORIZATION, header);
            return next.run(req, extensions).await;
        }
        // The copy is taken before the token goes in; a retry gets the new one.
        let retry = req.try_clone();
        req.headers_mut().insert(AUTHORIZATION, header.clone());
        let response = next.clone().run(req, extensions).await?;
        // A 401 from another origin (after a redirect) never saw this token.
        let refused = refuses_token_parts(response.status(), response.headers())
            && target(response.url())
                .is_some_and(|t| route.origin.matches_parts(t.scheme, t.host, t.port));
        if !refused {
            return Ok(response);
        }
        match (replace_refused(handle.clone(), header).await, retry) {
            (Some(fresh), Some(mut retry)) => {
                drop(response);
                retry.headers_mut().insert(AUTHORIZATION, fresh);
                next.run(retry, extensions).await
            }
            _ => Ok(response),
        }
    }
}

/// The origin parts of a URL (`None` without a host).
fn target(url: &Url) -> Option<Target<'_>> {
    url.host_str().map(|host| Target {
        scheme: url.scheme(),
        host,
        // `None` when it is the scheme's default.
        port: url.port(),
    })
}

// What `#[async_trait]` expands to: the trait is declared with it.
impl Middleware for InjectBearerMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Pin<Box<dyn Future<Output = Result<Response>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inject(req, extensions, next))
    }
}
