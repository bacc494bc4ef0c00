//! Outbound service tokens: a service calling another service gets a token by
//! `client_credentials`, and every request to the right destinations carries it.
//!
//! - [`TokenSource`]: one attempt at a token. [`ClientCredentials`] implements RFC 6749 §4.4
//!   (`client_secret_basic` or `client_secret_post`, `scope`, `audience` or RFC 8707 `resource`,
//!   token URL or OIDC discovery, RFC 6749 §5.2 errors as [`OAuthError`]).
//! - [`TokenManager`]: `token(audience, scope)` over several named [`TokenClient`]s; a lock-free
//!   hit path, refresh ahead of expiry in the background, single flight, retries with backoff
//!   and jitter, a circuit breaker, invalidation, and a shared [`TokenStore`](crate::store).
//! - [`InjectBearerLayer`]: sets `Authorization: Bearer …` (marked sensitive) on requests to the
//!   origins each client lists, for any `Service<http::Request<B>>`: a hyper-util `Client`, a
//!   tonic `Channel`.
//! - `InjectBearerMiddleware` (feature `reqwest`, module `outbound::reqwest`): the same
//!   rules as a reqwest-middleware `Middleware`.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_bearer::http_client::BoxFuture;
//! use tower_bearer::outbound::{
//!     AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In production: ClientCredentials::builder(id, secret).token_url(..).build()?
//! let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
//!     Box::pin(async { Ok(AccessToken::bearer("eyJ0b2tlbiJ9", u64::MAX / 2)) })
//! };
//! let manager = TokenManager::builder()
//!     .client(
//!         TokenClient::new("orders", source)
//!             .with_audience("service-system")
//!             .with_scope("internal-service")
//!             .with_destination("http://127.0.0.1:9002")
//!             .unwrap(),
//!     )
//!     .build()
//!     .unwrap();
//!
//! // Stands in for a hyper-util client: answers 200 when a token came along.
//! let client = ServiceBuilder::new()
//!     .layer(InjectBearerLayer::new(manager))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let status = match req.headers().get("authorization") {
//!             Some(v) if v.is_sensitive() => StatusCode::OK,
//!             Some(_) => StatusCode::BAD_REQUEST,
//!             None => StatusCode::UNAUTHORIZED,
//!         };
//!         Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
//!     }));
//!
//! let listed = Request::get("http://127.0.0.1:9002/internal/ping").body(()).unwrap();
//! assert_eq!(client.clone().oneshot(listed).await.unwrap().status(), StatusCode::OK);
//! // Any other origin gets nothing.
//! let other = Request::get("https://api.partner.example/v1").body(()).unwrap();
//! assert_eq!(client.oneshot(other).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! # Destinations and redirects
//!
//! Destinations are opt-in: a client's token goes only to the origins (scheme, host, port) it
//! lists ([`TokenClient::with_destination`]). A request to another origin passes untouched, or
//! fails with [`InjectError::UnlistedDestination`] in strict mode
//! ([`InjectBearerLayer::with_strict`]). Requests whose URI has no origin (a tonic `Channel`
//! sees paths only) use [`InjectBearerLayer::with_default_origin`].
//!
//! The layer does not follow redirects, and the token is bound to the origin of the request
//! it is put on. Follow redirects *outside* the layer (each hop then passes through it and is
//! matched on its own origin, so a cross-origin hop gets no token), or with a follower that
//! drops `Authorization` on a cross-origin hop (tower-http's `FollowRedirect` does by default).
//!
//! # Opting out
//!
//! A request with the [`SkipBearer`] extension passes untouched. An outgoing client named with
//! [`InjectBearerLayer::with_client_name`] gets no token from token clients that list it in
//! `skip-clients` ([`TokenClient::with_skip_clients`]). An `Authorization` header already
//! present is kept unless [`InjectBearerLayer::with_override`].
//!
//! # Reactive mode
//!
//! With [`InjectBearerLayer::with_reactive`], a downstream `401` with
//! `WWW-Authenticate: Bearer error="invalid_token"` invalidates the token it refused
//! ([`TokenManager::invalidate_if_current`]: only if still current, at most once per slot per
//! interval). The request is sent again once, with the new token, when it can be replayed:
//! bodies are streams, so the layer does not buffer them; [`with_replay`] takes a
//! [`ReplayRequest`] that copies the request before it is sent ([`CloneBody`] for `Clone`
//! bodies such as `Full<Bytes>`, or a closure). Without one, the 401 goes back to the caller
//! and the next request carries a new token.
//!
//! [`with_replay`]: InjectBearerLayer::with_replay
//!
//! # Failures
//!
//! A request whose token cannot be had fails with [`InjectError::Token`] (the service's error
//! is `BoxError`) before anything is sent; [`OutboundError::CircuitOpen`] comes back at once
//! while the token endpoint is left alone.

mod client_credentials;
pub(crate) mod engine;
mod error;
mod inject;
mod manager;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
mod token;

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
#[doc(inline)]
pub use self::reqwest::InjectBearerMiddleware;
#[doc(inline)]
pub use client_credentials::{
    AudienceParameter, ClientAuth, ClientCredentials, ClientCredentialsBuilder,
};
#[doc(inline)]
pub use error::{FetchError, InjectError, OAuthError, OAuthErrorCode, OutboundError};
#[doc(inline)]
pub use inject::{
    CloneBody, InjectBearer, InjectBearerLayer, NoReplay, ReplayRequest, ResponseFuture, SkipBearer,
};
#[doc(inline)]
pub use manager::{
    CircuitPolicy, RetryPolicy, TokenClient, TokenFuture, TokenManager, TokenManagerBuilder,
    TokenStats,
};
#[doc(inline)]
pub use token::{AccessToken, TokenRequest, TokenSource};
