use std::fmt;
use std::sync::Arc;

use http::Uri;
use tower_layer::Layer;

use super::replay::NoReplay;
use super::service::InjectBearer;
use crate::error::ConfigError;
use crate::outbound::TokenManager;
use crate::outbound::engine::Origin;
use crate::outbound::error::InjectError;
use crate::outbound::manager::{TokenHandle, parse_origin};

/// A request extension: [`InjectBearer`] passes this one request untouched.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::SkipBearer;
///
/// let mut req = http::Request::get("http://127.0.0.1:9002/health").body(()).unwrap();
/// req.extensions_mut().insert(SkipBearer);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SkipBearer;

#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) origin: Origin,
    pub(crate) handle: TokenHandle,
}

/// Applies [`InjectBearer`] to a client service (a hyper-util `Client`, a tonic `Channel`,
/// anything that is a `Service<http::Request<B>>`). The layer is the builder.
///
/// See the [module docs](crate::outbound) for an example.
///
/// # Example
///
/// ```
/// # use std::convert::Infallible;
/// # use std::sync::Arc;
/// # use std::sync::atomic::{AtomicU32, Ordering};
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # use tower_bearer::http_client::BoxFuture;
/// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let n = Arc::new(AtomicU32::new(0));
/// # let counter = n.clone();
/// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
/// #     let i = counter.fetch_add(1, Ordering::SeqCst);
/// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
/// # };
/// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
/// # let manager = TokenManager::builder().client(client).build().unwrap();
/// # // Answers with the `Authorization` it got.
/// # let echo = service_fn(|req: Request<()>| async move {
/// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
/// #     Ok::<_, Infallible>(Response::new(auth))
/// # });
/// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
/// let client = InjectBearerLayer::new(manager).layer(echo);
/// let res = client.oneshot(get("http://127.0.0.1:9002/orders")).await.unwrap();
/// assert_eq!(res.into_body(), "Bearer t0");
/// # }
/// ```
#[must_use]
pub struct InjectBearerLayer<R = NoReplay> {
    pub(crate) manager: TokenManager,
    pub(crate) routes: Arc<[Route]>,
    pub(crate) client_name: Option<Arc<str>>,
    pub(crate) default_origin: Option<Origin>,
    pub(crate) override_existing: bool,
    pub(crate) strict: bool,
    pub(crate) reactive: bool,
    pub(crate) replay: R,
}

impl<R: Clone> Clone for InjectBearerLayer<R> {
    fn clone(&self) -> Self {
        Self {
            manager: self.manager.clone(),
            routes: self.routes.clone(),
            client_name: self.client_name.clone(),
            default_origin: self.default_origin.clone(),
            override_existing: self.override_existing,
            strict: self.strict,
            reactive: self.reactive,
            replay: self.replay.clone(),
        }
    }
}

impl<R> fmt::Debug for InjectBearerLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<(String, &str)> = self
            .routes
            .iter()
            .map(|r| (r.origin.to_string(), &**r.handle.client_name()))
            .collect();
        f.debug_struct("InjectBearerLayer")
            .field("routes", &routes)
            .field("client_name", &self.client_name)
            .field("default_origin", &self.default_origin)
            .field("override_existing", &self.override_existing)
            .field("strict", &self.strict)
            .field("reactive", &self.reactive)
            .finish_non_exhaustive()
    }
}

impl InjectBearerLayer {
    /// Injects the token of each of `manager`'s clients into requests to that client's
    /// destinations (and nowhere else).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let n = Arc::new(AtomicU32::new(0));
    /// # let counter = n.clone();
    /// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     let i = counter.fetch_add(1, Ordering::SeqCst);
    /// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// # };
    /// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
    /// # let manager = TokenManager::builder().client(client).build().unwrap();
    /// # // Answers with the `Authorization` it got.
    /// # let echo = service_fn(|req: Request<()>| async move {
    /// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
    /// #     Ok::<_, Infallible>(Response::new(auth))
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
    /// let client = InjectBearerLayer::new(manager).layer(echo);
    /// let listed = client.clone().oneshot(get("http://127.0.0.1:9002/a")).await.unwrap();
    /// assert_eq!(listed.into_body(), "Bearer t0");
    /// let other = client.oneshot(get("http://127.0.0.1:9003/a")).await.unwrap();
    /// assert_eq!(other.into_body(), "none");
    /// # }
    /// ```
    pub fn new(manager: TokenManager) -> Self {
        let routes = routes(&manager, None);
        Self {
            manager,
            routes,
            client_name: None,
            default_origin: None,
            override_existing: false,
            strict: false,
            reactive: false,
            replay: NoReplay,
        }
    }
}

impl<R> InjectBearerLayer<R> {
    /// The name of the outgoing client this layer wraps: token clients that list it in
    /// `skip-clients` inject nothing through it.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let n = Arc::new(AtomicU32::new(0));
    /// # let counter = n.clone();
    /// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     let i = counter.fetch_add(1, Ordering::SeqCst);
    /// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// # };
    /// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
    /// # let manager = TokenManager::builder().client(client).build().unwrap();
    /// # // Answers with the `Authorization` it got.
    /// # let echo = service_fn(|req: Request<()>| async move {
    /// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
    /// #     Ok::<_, Infallible>(Response::new(auth))
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
    /// # let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> { Box::pin(async { Ok(AccessToken::bearer("t", u64::MAX / 2)) }) };
    /// let client = TokenClient::new("orders", source)
    ///     .with_destination("http://127.0.0.1:9002")
    ///     .unwrap()
    ///     .with_skip_clients(["public-api"]);
    /// let manager = TokenManager::builder().client(client).build().unwrap();
    /// let svc = InjectBearerLayer::new(manager).with_client_name("public-api").layer(echo);
    /// assert_eq!(svc.oneshot(get("http://127.0.0.1:9002/a")).await.unwrap().into_body(), "none");
    /// # }
    /// ```
    pub fn with_client_name(mut self, name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        self.routes = routes(&self.manager, Some(&name));
        self.client_name = Some(name);
        self
    }

    /// The origin of requests whose URI has none (path only), as a tonic `Channel` bound to
    /// one endpoint sees them. Without it such requests match no destination.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let n = Arc::new(AtomicU32::new(0));
    /// # let counter = n.clone();
    /// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     let i = counter.fetch_add(1, Ordering::SeqCst);
    /// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// # };
    /// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
    /// # let manager = TokenManager::builder().client(client).build().unwrap();
    /// # // Answers with the `Authorization` it got.
    /// # let echo = service_fn(|req: Request<()>| async move {
    /// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
    /// #     Ok::<_, Infallible>(Response::new(auth))
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
    /// let layer = InjectBearerLayer::new(manager).with_default_origin("http://127.0.0.1:9002").unwrap();
    /// let res = layer.layer(echo).oneshot(get("/orders.Orders/Get")).await.unwrap(); // path only
    /// assert_eq!(res.into_body(), "Bearer t0");
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] when `origin` is not an http(s) origin.
    pub fn with_default_origin(mut self, origin: &str) -> Result<Self, ConfigError> {
        self.default_origin = Some(parse_origin(origin)?);
        Ok(self)
    }

    /// Replace an `Authorization` header the request already has (default: leave it alone).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let n = Arc::new(AtomicU32::new(0));
    /// # let counter = n.clone();
    /// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     let i = counter.fetch_add(1, Ordering::SeqCst);
    /// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// # };
    /// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
    /// # let manager = TokenManager::builder().client(client).build().unwrap();
    /// # // Answers with the `Authorization` it got.
    /// # let echo = service_fn(|req: Request<()>| async move {
    /// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
    /// #     Ok::<_, Infallible>(Response::new(auth))
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
    /// let client = InjectBearerLayer::new(manager).with_override(true).layer(echo);
    /// let mut req = get("http://127.0.0.1:9002/a");
    /// req.headers_mut().insert("authorization", "Bearer user-token".parse().unwrap());
    /// assert_eq!(client.oneshot(req).await.unwrap().into_body(), "Bearer t0");
    /// # }
    /// ```
    pub fn with_override(mut self, override_existing: bool) -> Self {
        self.override_existing = override_existing;
        self
    }

    /// Strict mode: a request to an origin no client lists fails with
    /// [`InjectError::UnlistedDestination`] instead of passing untouched.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::InjectError;
    /// # use std::convert::Infallible;
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let n = Arc::new(AtomicU32::new(0));
    /// # let counter = n.clone();
    /// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     let i = counter.fetch_add(1, Ordering::SeqCst);
    /// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// # };
    /// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
    /// # let manager = TokenManager::builder().client(client).build().unwrap();
    /// # // Answers with the `Authorization` it got.
    /// # let echo = service_fn(|req: Request<()>| async move {
    /// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
    /// #     Ok::<_, Infallible>(Response::new(auth))
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
    /// let client = InjectBearerLayer::new(manager).with_strict(true).layer(echo);
    /// let err = client.oneshot(get("https://elsewhere.example/a")).await.unwrap_err();
    /// let err = err.downcast_ref::<InjectError>().unwrap();
    /// assert!(matches!(err, InjectError::UnlistedDestination { .. }));
    /// # }
    /// ```
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Reactive mode: a downstream `401` with `WWW-Authenticate: Bearer error="invalid_token"`
    /// invalidates the token it refused (if still current, at most once per interval, see
    /// [`TokenManager::invalidate_if_current`]); the request is sent again once, with the new
    /// token, when [`with_replay`](Self::with_replay) can copy it.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::CloneBody;
    /// # use std::convert::Infallible;
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let n = Arc::new(AtomicU32::new(0));
    /// # let counter = n.clone();
    /// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     let i = counter.fetch_add(1, Ordering::SeqCst);
    /// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// # };
    /// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
    /// # let manager = TokenManager::builder().client(client).build().unwrap();
    /// # // Answers with the `Authorization` it got.
    /// # let echo = service_fn(|req: Request<()>| async move {
    /// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
    /// #     Ok::<_, Infallible>(Response::new(auth))
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
    /// // Refuses the first token as stale.
    /// let downstream = service_fn(|req: Request<()>| async move {
    ///     let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
    ///     let mut res = Response::new(auth.clone());
    ///     if auth == "Bearer t0" {
    ///         *res.status_mut() = StatusCode::UNAUTHORIZED;
    ///         res.headers_mut().insert("www-authenticate", "Bearer error=\"invalid_token\"".parse().unwrap());
    ///     }
    ///     Ok::<_, Infallible>(res)
    /// });
    /// let client = InjectBearerLayer::new(manager).with_reactive(true).with_replay(CloneBody).layer(downstream);
    /// let res = client.oneshot(get("http://127.0.0.1:9002/a")).await.unwrap();
    /// assert_eq!((res.status(), res.into_body()), (StatusCode::OK, "Bearer t1".to_owned()));
    /// # }
    /// ```
    pub fn with_reactive(mut self, reactive: bool) -> Self {
        self.reactive = reactive;
        self
    }

    /// How the reactive mode copies a request to send it again (default [`NoReplay`]).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let n = Arc::new(AtomicU32::new(0));
    /// # let counter = n.clone();
    /// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     let i = counter.fetch_add(1, Ordering::SeqCst);
    /// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// # };
    /// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
    /// # let manager = TokenManager::builder().client(client).build().unwrap();
    /// # // Answers with the `Authorization` it got.
    /// # let echo = service_fn(|req: Request<()>| async move {
    /// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
    /// #     Ok::<_, Infallible>(Response::new(auth))
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
    /// // Replays through a closure: copies the request without its body.
    /// let replay = |req: &Request<()>| {
    ///     let mut copy = Request::new(());
    ///     *copy.uri_mut() = req.uri().clone();
    ///     Some(copy)
    /// };
    /// let client = InjectBearerLayer::new(manager).with_reactive(true).with_replay(replay).layer(echo);
    /// assert_eq!(client.oneshot(get("http://127.0.0.1:9002/a")).await.unwrap().into_body(), "Bearer t0");
    /// # }
    /// ```
    pub fn with_replay<R2>(self, replay: R2) -> InjectBearerLayer<R2> {
        InjectBearerLayer {
            manager: self.manager,
            routes: self.routes,
            client_name: self.client_name,
            default_origin: self.default_origin,
            override_existing: self.override_existing,
            strict: self.strict,
            reactive: self.reactive,
            replay,
        }
    }

    /// The manager.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::http_client::BoxFuture;
    /// # use tower_bearer::outbound::{AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let n = Arc::new(AtomicU32::new(0));
    /// # let counter = n.clone();
    /// # let source = move |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
    /// #     let i = counter.fetch_add(1, Ordering::SeqCst);
    /// #     Box::pin(async move { Ok(AccessToken::bearer(format!("t{i}"), u64::MAX / 2)) })
    /// # };
    /// # let client = TokenClient::new("orders", source).with_destination("http://127.0.0.1:9002").unwrap();
    /// # let manager = TokenManager::builder().client(client).build().unwrap();
    /// # // Answers with the `Authorization` it got.
    /// # let echo = service_fn(|req: Request<()>| async move {
    /// #     let auth = req.headers().get("authorization").map_or("none", |v| v.to_str().unwrap()).to_owned();
    /// #     Ok::<_, Infallible>(Response::new(auth))
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(()).unwrap();
    /// let layer = InjectBearerLayer::new(manager);
    /// assert_eq!(layer.manager().client_names().collect::<Vec<_>>(), ["orders"]);
    /// # }
    /// ```
    pub fn manager(&self) -> &TokenManager {
        &self.manager
    }

    /// The rules of the module docs, in their order: [`SkipBearer`], then the destination
    /// (strict mode refuses an unlisted one), then an `Authorization` already present (kept
    /// unless override). The reqwest middleware's; [`InjectBearer`] applies the same rules
    /// through [`route_uri`](Self::route_uri).
    #[cfg(feature = "reqwest")]
    #[inline]
    pub(crate) fn decide(
        &self,
        skip: bool,
        target: Option<Target<'_>>,
        has_authorization: bool,
    ) -> Decision {
        if skip {
            return Decision::Pass;
        }
        match self.route(target) {
            Err(e) => Decision::Reject(e),
            Ok(None) => Decision::Pass,
            Ok(Some(_)) if has_authorization && !self.override_existing => Decision::Pass,
            Ok(Some(route)) => Decision::Inject(route),
        }
    }

    /// [`decide`](Self::decide) for a request to `uri`, up to the `Authorization` check:
    /// `Ok(None)` passes it untouched, `Ok(Some(i))` injects the token of `routes[i]` (unless
    /// an `Authorization` is there and not overridden).
    ///
    /// An authority written in canonical form (`host:port`, or `host` for the default port)
    /// is found by byte comparisons; any other form (case, user info, a port with leading
    /// zeros) takes the general parse of [`Target::of_uri`], with the same result.
    #[inline]
    pub(crate) fn route_uri(&self, skip: bool, uri: &Uri) -> Result<Option<usize>, InjectError> {
        if skip {
            return Ok(None);
        }
        if let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) {
            let authority = authority.as_str();
            if let Some(route) = self
                .routes
                .iter()
                .position(|r| r.origin.matches_canonical(scheme, authority))
            {
                return Ok(Some(route));
            }
        }
        self.route(Target::of_uri(uri))
    }

    /// The index of the route of a request in `routes`: `Ok(None)` passes it untouched.
    #[inline]
    fn route(&self, target: Option<Target<'_>>) -> Result<Option<usize>, InjectError> {
        let found = match target {
            Some(t) => self
                .routes
                .iter()
                .position(|r| r.origin.matches_parts(t.scheme, t.host, t.port)),
            None => self
                .default_origin
                .as_ref()
                .and_then(|o| self.routes.iter().position(|r| r.origin == *o)),
        };
        match found {
            Some(route) => Ok(Some(route)),
            None if self.strict => Err(InjectError::UnlistedDestination {
                origin: describe_origin(target, self.default_origin.as_ref()),
            }),
            None => Ok(None),
        }
    }
}

/// Where a request goes: the parts of an absolute URL the destinations are matched on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) scheme: &'a str,
    pub(crate) host: &'a str,
    /// `None`: the scheme's default.
    pub(crate) port: Option<u16>,
}

impl<'a> Target<'a> {
    /// `None` for a URI without an origin (path only).
    #[inline]
    pub(crate) fn of_uri(uri: &'a Uri) -> Option<Self> {
        match (uri.scheme_str(), uri.authority(), uri.host()) {
            (Some(scheme), Some(_), Some(host)) => Some(Self {
                scheme,
                host,
                port: uri.port_u16(),
            }),
            _ => None,
        }
    }
}

/// What the rules say about one request.
#[cfg(feature = "reqwest")]
#[derive(Debug)]
pub(crate) enum Decision {
    /// Send it untouched.
    Pass,
    /// Put in the token of `routes[i]`.
    Inject(usize),
    /// Do not send it.
    Reject(InjectError),
}

fn describe_origin(target: Option<Target<'_>>, default: Option<&Origin>) -> String {
    match target {
        Some(Target {
            scheme,
            host,
            port: Some(port),
        }) => format!("{scheme}://{host}:{port}"),
        Some(Target { scheme, host, .. }) => format!("{scheme}://{host}"),
        None => default.map_or_else(|| "?".to_owned(), ToString::to_string),
    }
}

fn routes(manager: &TokenManager, client_name: Option<&str>) -> Arc<[Route]> {
    manager
        .routes()
        .filter(|(_, _, skip)| !client_name.is_some_and(|n| skip.iter().any(|s| &**s == n)))
        .flat_map(|(client, origins, _)| {
            let handle = manager.handle(client);
            origins.iter().map(move |origin| Route {
                origin: origin.clone(),
                handle: handle.clone(),
            })
        })
        .collect()
}

impl<S, R: Clone> Layer<S> for InjectBearerLayer<R> {
    type Service = InjectBearer<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        InjectBearer {
            inner,
            layer: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_client::BoxFuture;
    use crate::outbound::{AccessToken, FetchError, TokenClient, TokenRequest};

    fn layer(strict: bool) -> InjectBearerLayer {
        let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
            Box::pin(async { Ok(AccessToken::bearer("t", u64::MAX / 2)) })
        };
        let a = TokenClient::new("a", source)
            .with_audience("a")
            .with_destination("http://127.0.0.1:9002")
            .unwrap()
            .with_destination("https://orders.internal")
            .unwrap();
        let b = TokenClient::new("b", source)
            .with_audience("b")
            .with_destination("http://[::1]:8080")
            .unwrap()
            .with_destination("http://billing.internal")
            .unwrap();
        let manager = TokenManager::builder().client(a).client(b).build().unwrap();
        InjectBearerLayer::new(manager).with_strict(strict)
    }

    /// The byte-comparison shortcut of `route_uri` finds what the general parse finds, for
    /// canonical and non-canonical ways of writing the same (or another) origin.
    #[test]
    fn route_uri_agrees_with_the_general_parse() {
        let cases = [
            ("http://127.0.0.1:9002/x", Some(0)),
            ("HTTP://127.0.0.1:9002/x", Some(0)),
            ("http://127.0.0.1:09002/x", Some(0)),
            ("http://user@127.0.0.1:9002/x", Some(0)),
            ("http://127.0.0.1:9003/x", None),
            ("http://127.0.0.1/x", None),
            ("https://127.0.0.1:9002/x", None),
            ("https://orders.internal/x", Some(1)),
            ("https://orders.internal:443/x", Some(1)),
            ("https://ORDERS.internal/x", Some(1)),
            ("http://orders.internal/x", None),
            ("https://orders.internal:80/x", None),
            ("https://orders.internal.evil/x", None),
            ("https://evil@orders.internal/x", Some(1)),
            ("http://[::1]:8080/x", Some(2)),
            ("http://[::1]/x", None),
            ("http://billing.internal/x", Some(3)),
            ("http://billing.internal:80/x", Some(3)),
            ("http://billing.internal:8080/x", None),
            ("/relative", None),
        ];
        for strict in [false, true] {
            let layer = layer(strict);
            for (uri, want) in cases {
                let uri: Uri = uri.parse().unwrap();
                let general = layer.route(Target::of_uri(&uri)).map_err(|e| e.to_string());
                let fast = layer.route_uri(false, &uri).map_err(|e| e.to_string());
                assert_eq!(fast, general, "{uri}");
                match want {
                    Some(i) => assert_eq!(fast, Ok(Some(i)), "{uri}"),
                    None if strict => assert!(fast.is_err(), "{uri}"),
                    None => assert_eq!(fast, Ok(None), "{uri}"),
                }
                assert!(
                    matches!(layer.route_uri(true, &uri), Ok(None)),
                    "skip: {uri}"
                );
            }
        }
    }
}
