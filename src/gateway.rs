//! Gateway mode: identity headers forwarded to upstream services, and never spoofed.
//!
//! - [`StripIdentityHeadersLayer`] runs outermost on every request: hop-by-hop headers are
//!   removed first (400 if `Connection` names an identity header, a trick to have a later proxy
//!   drop the header *after* checks), then every configured identity header, compared
//!   case-insensitively with `_` and `-` alike (`X_User_Id` is `x-user-id`).
//! - [`SetIdentityHeadersLayer`] runs after authorization and sets the headers from the
//!   verified [`CurrentUser`]: `X-User-Id` ([`CurrentUser::user_id`]: user id claim, else `sub`;
//!   `prefix:id` when several issuers are configured), `X-Roles`, `X-Permissions`
//!   (comma-joined), `X-Tenant-Id`, `X-Client-Id`, `X-User-Issuer` (`iss`). An item holding `,`, `%` or
//!   a character outside visible ASCII is percent-encoded (UTF-8), so a role named `a,b` can
//!   never become two roles.
//! - [`TrustedIdentityHeadersLayer`] is for services *behind* the gateway that choose to trust
//!   it (opt-in): it turns the headers back into a [`CurrentUser`]. Only use it where the
//!   network guarantees requests come through the gateway (e.g. mTLS or a private network);
//!   anywhere else it lets any caller claim any identity.
//!
//! # What the upstream must not do
//!
//! The rules decide on the method, the path and the headers. Method-override **headers**
//! (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`) and path-override headers
//! (`X-Original-URL`, `X-Rewrite-URL`) are stripped, but a method-override **parameter**
//! (`_method=DELETE` in a form body or in the query string, honoured by Rails, Laravel,
//! Symfony, Spring's `HiddenHttpMethodFilter` and ASP.NET Core's `UseHttpMethodOverride` with a
//! form field name) is never seen: a `POST` the rules allowed would run a `DELETE` handler.
//! Upstreams behind a gateway must be configured not to honour such parameters.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::gateway::StripIdentityHeadersLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(StripIdentityHeadersLayer::new())
//!     .service(service_fn(|req: Request<()>| async move {
//!         let spoofed = req.headers().contains_key("x-user-id")
//!             || req.headers().contains_key("x_user_id");
//!         Ok::<_, Infallible>(Response::new(spoofed.to_string()))
//!     }));
//! let req = Request::builder()
//!     .header("X-User-Id", "admin")
//!     .header("x_user_id", "admin")
//!     .body(())
//!     .unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().into_body(), "false");
//!
//! let req = Request::builder()
//!     .header("connection", "close, X-User-Id")
//!     .body(())
//!     .unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 400);
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, CONNECTION};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;

use crate::authn::{DefaultRejection, ResponseForRejection, is_grpc};
use crate::claims::{Authentication, ClaimMapping, CurrentUser};
use crate::error::{AuthError, RequestError};
use crate::future::ResponseFuture;

/// The identity header names (defaults: `x-user-id`, `x-roles`, `x-tenant-id`,
/// `x-permissions`, `x-client-id`).
///
/// # Example
///
/// ```
/// use http::HeaderName;
/// use tower_bearer::gateway::IdentityHeaders;
///
/// let mut names = IdentityHeaders::default();
/// names.tenant = HeaderName::from_static("x-org");
/// assert!(names.is_identity("X-Org"));
/// assert!(names.is_identity("x-http-method-override")); // stripped by default
/// ```
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// The user id (user id claim, else `sub`).
    pub user_id: HeaderName,
    /// Roles, comma-joined.
    pub roles: HeaderName,
    /// Tenant.
    pub tenant: HeaderName,
    /// Permissions, comma-joined.
    pub permissions: HeaderName,
    /// OAuth2 client id.
    pub client_id: HeaderName,
    /// The token's issuer (`iss`), so an upstream can tell users of several issuers apart.
    pub issuer: HeaderName,
    /// More headers to strip (never set). Default: the path and method override headers
    /// (`x-original-url`, `x-rewrite-url`, `x-http-method-override`, `x-http-method`,
    /// `x-method-override`) that some upstream frameworks obey after the rules were checked on
    /// the real path and method.
    pub extra: Vec<HeaderName>,
}

/// Path and method override headers: stripped by default.
const OVERRIDE_HEADERS: [&str; 5] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            user_id: HeaderName::from_static("x-user-id"),
            roles: HeaderName::from_static("x-roles"),
            tenant: HeaderName::from_static("x-tenant-id"),
            permissions: HeaderName::from_static("x-permissions"),
            client_id: HeaderName::from_static("x-client-id"),
            issuer: HeaderName::from_static("x-user-issuer"),
            extra: OVERRIDE_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
        }
    }
}

impl IdentityHeaders {
    fn all(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.user_id,
            &self.roles,
            &self.tenant,
            &self.permissions,
            &self.client_id,
            &self.issuer,
        ]
        .into_iter()
        .chain(self.extra.iter())
    }

    /// Whether `name` is an identity header (case-insensitive; `_`, `.` and any other
    /// non-alphanumeric character count as `-`, as CGI-style servers map them).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::gateway::IdentityHeaders;
    ///
    /// let names = IdentityHeaders::default();
    /// assert!(names.is_identity("X_User_Id"));
    /// assert!(names.is_identity("x.roles"));
    /// assert!(!names.is_identity("x-request-id"));
    /// ```
    pub fn is_identity(&self, name: &str) -> bool {
        self.all().any(|h| same_header(h.as_str(), name))
    }
}

/// Case-insensitive comparison with every non-alphanumeric byte alike.
fn same_header(a: &str, b: &str) -> bool {
    let norm = |c: u8| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            b'-'
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the usual legacy ones).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Removes hop-by-hop headers (and the ones `Connection` names), then identity headers.
///
/// # Example
///
/// ```
/// use http::HeaderMap;
/// use tower_bearer::gateway::{strip_identity_headers, IdentityHeaders};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x_user_id", "admin".parse().unwrap());
/// headers.insert("keep-alive", "timeout=5".parse().unwrap());
/// strip_identity_headers(&mut headers, &IdentityHeaders::default(), true).unwrap();
/// assert!(headers.is_empty());
/// headers.insert("connection", "x-roles".parse().unwrap());
/// assert!(strip_identity_headers(&mut headers, &IdentityHeaders::default(), true).is_err());
/// ```
///
/// # Errors
///
/// [`RequestError::HopByHopIdentityHeader`] when `Connection` names an identity header or is
/// not readable.
pub fn strip_identity_headers(
    headers: &mut HeaderMap,
    identity: &IdentityHeaders,
    hop_by_hop: bool,
) -> Result<(), AuthError> {
    let bad = AuthError::InvalidRequest(RequestError::HopByHopIdentityHeader);
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let value = value.to_str().map_err(|_| bad.clone())?;
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if identity.is_identity(token) {
                return Err(bad);
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    if hop_by_hop {
        for name in named {
            headers.remove(name);
        }
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
    }
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| identity.is_identity(k.as_str()))
        .cloned()
        .collect();
    for name in spoofed {
        tracing::debug!(header = %name, "stripped identity header from incoming request");
        crate::telemetry::counter("tower_bearer_identity_headers_stripped_total", &[]);
        headers.remove(name);
    }
    Ok(())
}

/// Strips spoofed identity headers from every request. See the [module docs](crate::gateway).
///
/// # Example
///
/// ```
/// use tower_bearer::gateway::StripIdentityHeadersLayer;
/// # use std::convert::Infallible;
/// # use http::{HeaderMap, Request, Response};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
///
/// let svc = StripIdentityHeadersLayer::new().layer(echo);
/// let req = Request::get("/").header("x-roles", "admin").header("accept", "*/*").body(()).unwrap();
/// let seen: HeaderMap = svc.oneshot(req).await.unwrap().into_body();
/// assert!(!seen.contains_key("x-roles") && seen.contains_key("accept"));
/// # }
/// ```
#[must_use]
#[derive(Clone)]
pub struct StripIdentityHeadersLayer<R = DefaultRejection> {
    identity: Arc<IdentityHeaders>,
    hop_by_hop: bool,
    rejection: R,
}

impl<R> fmt::Debug for StripIdentityHeadersLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripIdentityHeadersLayer")
            .field("identity", &self.identity)
            .field("hop_by_hop", &self.hop_by_hop)
            .finish_non_exhaustive()
    }
}

impl Default for StripIdentityHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl StripIdentityHeadersLayer {
    /// Strips the default identity headers and hop-by-hop headers.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::gateway::StripIdentityHeadersLayer;
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    ///
    /// let svc = StripIdentityHeadersLayer::new().layer(echo);
    /// let req = Request::get("/").header("x-tenant-id", "t1").header("te", "trailers").body(()).unwrap();
    /// assert!(svc.oneshot(req).await.unwrap().into_body().is_empty());
    /// # }
    /// ```
    pub fn new() -> Self {
        Self {
            identity: Arc::new(IdentityHeaders::default()),
            hop_by_hop: true,
            rejection: DefaultRejection::default(),
        }
    }
}

impl<R> StripIdentityHeadersLayer<R> {
    /// Uses these identity header names.
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_bearer::gateway::{IdentityHeaders, StripIdentityHeadersLayer};
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    ///
    /// let mut names = IdentityHeaders::default();
    /// names.user_id = HeaderName::from_static("x-auth-user");
    /// let svc = StripIdentityHeadersLayer::new().with_headers(names).layer(echo);
    /// let req = Request::get("/").header("X-Auth-User", "admin").body(()).unwrap();
    /// assert!(!svc.oneshot(req).await.unwrap().into_body().contains_key("x-auth-user"));
    /// # }
    /// ```
    pub fn with_headers(mut self, identity: IdentityHeaders) -> Self {
        self.identity = Arc::new(identity);
        self
    }
    /// Whether hop-by-hop headers are removed (default `true`; a service that accepts
    /// WebSocket upgrades directly needs `false`, the `Connection` check still applies).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::gateway::StripIdentityHeadersLayer;
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    ///
    /// let svc = StripIdentityHeadersLayer::new().with_hop_by_hop_removal(false).layer(echo);
    /// let req = Request::get("/").header("upgrade", "websocket").body(()).unwrap();
    /// assert!(svc.oneshot(req).await.unwrap().into_body().contains_key("upgrade"));
    /// # }
    /// ```
    pub fn with_hop_by_hop_removal(mut self, remove: bool) -> Self {
        self.hop_by_hop = remove;
        self
    }
    /// Also strips these headers (every spelling).
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_bearer::gateway::StripIdentityHeadersLayer;
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    ///
    /// let layer = StripIdentityHeadersLayer::new().with_extra_headers([HeaderName::from_static("x-debug")]);
    /// let req = Request::get("/").header("X_Debug", "1").body(()).unwrap();
    /// assert!(layer.layer(echo).oneshot(req).await.unwrap().into_body().is_empty());
    /// # }
    /// ```
    pub fn with_extra_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        let identity = Arc::make_mut(&mut self.identity);
        for name in names {
            if !identity.is_identity(name.as_str()) {
                identity.extra.push(name);
            }
        }
        self
    }
    /// Replaces how the 400 for a `Connection` trick is answered.
    ///
    /// # Example
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_bearer::gateway::StripIdentityHeadersLayer;
    /// use tower_bearer::AuthError;
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    ///
    /// let plain = |e: &AuthError, _grpc: bool| Response::builder().status(e.status()).body(HeaderMap::new()).unwrap();
    /// let svc = StripIdentityHeadersLayer::new().with_rejection(plain).layer(echo);
    /// let req = Request::get("/").header("connection", "x-user-id").body(()).unwrap();
    /// assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::BAD_REQUEST);
    /// # }
    /// ```
    pub fn with_rejection<R2>(self, rejection: R2) -> StripIdentityHeadersLayer<R2> {
        StripIdentityHeadersLayer {
            identity: self.identity,
            hop_by_hop: self.hop_by_hop,
            rejection,
        }
    }
}

/// The service of [`StripIdentityHeadersLayer`].
///
/// # Example
///
/// ```
/// use tower_bearer::gateway::StripIdentityHeaders;
/// # use std::convert::Infallible;
/// # use http::{HeaderMap, Request, Response};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
///
/// let svc = StripIdentityHeaders::new(echo);
/// let req = Request::get("/").header("x-client-id", "spoofed").body(()).unwrap();
/// assert!(svc.oneshot(req).await.unwrap().into_body().is_empty());
/// # }
/// ```
#[derive(Clone)]
pub struct StripIdentityHeaders<S, R = DefaultRejection> {
    inner: S,
    layer: StripIdentityHeadersLayer<R>,
}

crate::macros::layer_with_rejection!(StripIdentityHeadersLayer => StripIdentityHeaders);

impl<S> StripIdentityHeaders<S> {
    /// Wraps `inner` with the default settings.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::gateway::StripIdentityHeaders;
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    ///
    /// let svc = StripIdentityHeaders::new(echo);
    /// let req = Request::get("/").header("x-permissions", "all").body(()).unwrap();
    /// assert!(!svc.oneshot(req).await.unwrap().into_body().contains_key("x-permissions"));
    /// # }
    /// ```
    pub fn new(inner: S) -> Self {
        StripIdentityHeadersLayer::new().layer(inner)
    }
    /// The default layer.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::gateway::StripIdentityHeaders;
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    ///
    /// let svc = StripIdentityHeaders::<()>::layer().layer(echo); // the layer does not depend on `S`
    /// let req = Request::get("/").header("x-user-id", "admin").body(()).unwrap();
    /// assert!(svc.oneshot(req).await.unwrap().into_body().is_empty());
    /// # }
    /// ```
    pub fn layer() -> StripIdentityHeadersLayer {
        StripIdentityHeadersLayer::new()
    }
}

impl<ReqBody, ResBody, S, R> Service<Request<ReqBody>> for StripIdentityHeaders<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: ResponseForRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let layer = &self.layer;
        match strip_identity_headers(req.headers_mut(), &layer.identity, layer.hop_by_hop) {
            Ok(()) => ResponseFuture::future(self.inner.call(req)),
            Err(e) => {
                crate::telemetry::rejection(&e);
                let grpc = is_grpc(&req);
                ResponseFuture::rejected(layer.rejection.response(&e, grpc))
            }
        }
    }
}

/// Percent-encodes `,`, `%` and anything outside visible ASCII (as UTF-8 bytes).
///
/// # Example
///
/// ```
/// use tower_bearer::gateway::encode_item;
///
/// assert_eq!(encode_item("a,b"), "a%2Cb");
/// assert_eq!(encode_item("100%"), "100%25");
/// assert_eq!(encode_item("é"), "%C3%A9");
/// assert_eq!(encode_item("admin"), "admin");
/// ```
pub fn encode_item(item: &str) -> String {
    utf8_percent_encode(item, ITEM).to_string()
}

/// What [`encode_item`] escapes besides non-ASCII bytes: controls, space, `,` and `%`.
const ITEM: &AsciiSet = &CONTROLS.add(b' ').add(b',').add(b'%');

/// Decodes one item of an identity header; `None` for a `%` not followed by two hex digits
/// (`%+A`, `%-1`: never produced by [`encode_item`]) or bytes that are not UTF-8.
fn decode_item(item: &str) -> Option<String> {
    let b = item.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(item)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

fn join(items: &[String]) -> String {
    items
        .iter()
        .map(|i| encode_item(i))
        .collect::<Vec<_>>()
        .join(",")
}

/// Sets identity headers from the verified user. See the [module docs](crate::gateway).
///
/// # Example
///
/// ```
/// use tower_bearer::claims::Authentication;
/// use tower_bearer::gateway::SetIdentityHeadersLayer;
/// # use std::convert::Infallible;
/// # use http::{HeaderMap, Request, Response};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
/// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "alice", "uid": "42", "roles": ["admin", "a,b"], "tenant": "t1", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
///
/// let mut req = Request::get("/").body(()).unwrap();
/// req.extensions_mut().insert(Authentication::User(user));
/// let seen = SetIdentityHeadersLayer::new().layer(echo).oneshot(req).await.unwrap().into_body();
/// assert_eq!(seen["x-user-id"], "42");
/// assert_eq!(seen["x-roles"], "a%2Cb,admin"); // sorted, each item encoded
/// # }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct SetIdentityHeadersLayer {
    enabled: bool,
    identity: Arc<IdentityHeaders>,
    strip_authorization: bool,
    claims_header: Option<HeaderName>,
}

impl Default for SetIdentityHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SetIdentityHeadersLayer {
    /// Sets the default headers; the bearer token is forwarded unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_bearer::gateway::SetIdentityHeadersLayer;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "alice", "uid": "42", "roles": ["admin", "a,b"], "tenant": "t1", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let mut headers = HeaderMap::new();
    /// SetIdentityHeadersLayer::new().apply(&mut headers, &user);
    /// assert_eq!(headers["x-tenant-id"], "t1");
    /// ```
    pub fn new() -> Self {
        Self {
            enabled: true,
            identity: Arc::new(IdentityHeaders::default()),
            strip_authorization: false,
            claims_header: None,
        }
    }
    /// A layer that sets nothing (services that are not gateways).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::Authentication;
    /// use tower_bearer::gateway::SetIdentityHeadersLayer;
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "alice", "uid": "42", "roles": ["admin", "a,b"], "tenant": "t1", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let mut req = Request::get("/").body(()).unwrap();
    /// req.extensions_mut().insert(Authentication::User(user));
    /// let seen = SetIdentityHeadersLayer::disabled().layer(echo).oneshot(req).await.unwrap().into_body();
    /// assert!(seen.is_empty());
    /// # }
    /// ```
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }
    /// Uses these identity header names.
    ///
    /// # Example
    ///
    /// ```
    /// use http::{HeaderMap, HeaderName};
    /// use tower_bearer::gateway::{IdentityHeaders, SetIdentityHeadersLayer};
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "alice", "uid": "42", "roles": ["admin", "a,b"], "tenant": "t1", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let mut names = IdentityHeaders::default();
    /// names.user_id = HeaderName::from_static("x-auth-user");
    /// let mut headers = HeaderMap::new();
    /// SetIdentityHeadersLayer::new().with_headers(names).apply(&mut headers, &user);
    /// assert_eq!(headers["x-auth-user"], "42");
    /// ```
    pub fn with_headers(mut self, identity: IdentityHeaders) -> Self {
        self.identity = Arc::new(identity);
        self
    }
    /// Do not forward the bearer token upstream (default: forwarded, so upstream services can
    /// verify it themselves).
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_bearer::gateway::SetIdentityHeadersLayer;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "alice", "uid": "42", "roles": ["admin", "a,b"], "tenant": "t1", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("authorization", "Bearer eyJ...".parse().unwrap());
    /// SetIdentityHeadersLayer::new().with_strip_authorization(true).apply(&mut headers, &user);
    /// assert!(!headers.contains_key("authorization"));
    /// ```
    pub fn with_strip_authorization(mut self, strip: bool) -> Self {
        self.strip_authorization = strip;
        self
    }
    /// Also forward all verified claims as base64url JSON in this header.
    ///
    /// # Example
    ///
    /// ```
    /// use http::{HeaderMap, HeaderName};
    /// use tower_bearer::gateway::SetIdentityHeadersLayer;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "alice", "uid": "42", "roles": ["admin", "a,b"], "tenant": "t1", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let layer = SetIdentityHeadersLayer::new().with_claims_header(HeaderName::from_static("x-claims"));
    /// let mut headers = HeaderMap::new();
    /// layer.apply(&mut headers, &user);
    /// assert!(headers["x-claims"].to_str().unwrap().starts_with("eyJ")); // base64url of `{"`
    /// ```
    pub fn with_claims_header(mut self, name: HeaderName) -> Self {
        self.claims_header = Some(name);
        self
    }

    /// Every header this layer sets (identity headers and the claims header): a strip layer in
    /// front must remove them from incoming requests.
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_bearer::gateway::SetIdentityHeadersLayer;
    ///
    /// let layer = SetIdentityHeadersLayer::new().with_claims_header(HeaderName::from_static("x-claims"));
    /// let managed = layer.managed_headers();
    /// assert!(managed.contains(&HeaderName::from_static("x-user-id")));
    /// assert!(managed.contains(&HeaderName::from_static("x-claims")));
    /// ```
    pub fn managed_headers(&self) -> Vec<HeaderName> {
        self.identity
            .all()
            .cloned()
            .chain(self.claims_header.clone())
            .collect()
    }

    /// Sets the headers on `headers` for `user`, after removing every spelling of them.
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_bearer::gateway::SetIdentityHeadersLayer;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "alice", "uid": "42", "roles": ["admin", "a,b"], "tenant": "t1", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("X_User_Id", "spoofed".parse().unwrap());
    /// SetIdentityHeadersLayer::new().apply(&mut headers, &user);
    /// assert_eq!(headers.get_all("x-user-id").iter().collect::<Vec<_>>(), ["42"]);
    /// ```
    pub fn apply(&self, headers: &mut HeaderMap, user: &CurrentUser) {
        self.remove_managed(headers);
        let id = &self.identity;
        let mut set = |name: &HeaderName, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(name.clone(), v);
                }
            }
        };
        set(&id.user_id, user.user_id().map(encode_item));
        set(&id.roles, Some(join(user.roles())));
        set(&id.permissions, Some(join(user.permissions())));
        set(&id.tenant, user.tenant().map(encode_item));
        set(&id.client_id, user.client_id().map(encode_item));
        set(&id.issuer, Some(encode_item(user.issuer())));
        if let Some(name) = &self.claims_header {
            let json = Value::Object(user.claims().clone()).to_string();
            set(name, Some(URL_SAFE_NO_PAD.encode(json)));
        }
        if self.strip_authorization {
            headers.remove(AUTHORIZATION);
        }
    }

    /// Removes every spelling of every header this layer manages (what an anonymous request
    /// reaches the upstream without).
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_bearer::gateway::SetIdentityHeadersLayer;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("X_User_Id", "spoofed".parse().unwrap());
    /// headers.insert("x-other", "kept".parse().unwrap());
    /// SetIdentityHeadersLayer::new().remove_managed(&mut headers);
    /// assert_eq!(headers.len(), 1);
    /// ```
    pub fn remove_managed(&self, headers: &mut HeaderMap) {
        let id = &self.identity;
        let claims_header = self.claims_header.as_ref();
        let stale: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                id.is_identity(k.as_str())
                    || claims_header.is_some_and(|c| same_header(c.as_str(), k.as_str()))
            })
            .cloned()
            .collect();
        for name in stale {
            headers.remove(name);
        }
    }
}

impl<S> Layer<S> for SetIdentityHeadersLayer {
    type Service = SetIdentityHeaders<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SetIdentityHeaders {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`SetIdentityHeadersLayer`].
///
/// # Example
///
/// ```
/// use tower_bearer::claims::Authentication;
/// use tower_bearer::gateway::SetIdentityHeaders;
/// # use std::convert::Infallible;
/// # use http::{HeaderMap, Request, Response};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
/// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "alice", "uid": "42", "roles": ["admin", "a,b"], "tenant": "t1", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
///
/// let mut req = Request::get("/").body(()).unwrap();
/// req.extensions_mut().insert(Authentication::User(user));
/// let seen = SetIdentityHeaders::new(echo).oneshot(req).await.unwrap().into_body();
/// assert_eq!(seen["x-tenant-id"], "t1");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SetIdentityHeaders<S> {
    inner: S,
    layer: SetIdentityHeadersLayer,
}

crate::macros::define_inner_service_accessors!(SetIdentityHeaders<S>);

impl<S> SetIdentityHeaders<S> {
    /// Wraps `inner` with the default settings.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::Authentication;
    /// use tower_bearer::gateway::SetIdentityHeaders;
    /// # use std::convert::Infallible;
    /// # use http::{HeaderMap, Request, Response};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
    ///
    /// let mut req = Request::get("/").body(()).unwrap();
    /// req.extensions_mut().insert(Authentication::Anonymous);
    /// assert!(SetIdentityHeaders::new(echo).oneshot(req).await.unwrap().into_body().is_empty());
    /// # }
    /// ```
    pub fn new(inner: S) -> Self {
        SetIdentityHeadersLayer::new().layer(inner)
    }
    /// The default layer.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::gateway::SetIdentityHeaders;
    ///
    /// let layer = SetIdentityHeaders::<()>::layer(); // the layer does not depend on `S`
    /// assert_eq!(layer.managed_headers().len(), 11); // 6 identity headers, 5 override headers
    /// ```
    pub fn layer() -> SetIdentityHeadersLayer {
        SetIdentityHeadersLayer::new()
    }
}

impl<B, S: Service<Request<B>>> Service<Request<B>> for SetIdentityHeaders<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if self.layer.enabled {
            let user = match req.extensions().get::<Authentication>() {
                Some(Authentication::User(u)) => Some(u.clone()),
                _ => None,
            };
            match user {
                Some(user) => self.layer.apply(req.headers_mut(), &user),
                // Anonymous (permit-all paths): the upstream must not see any identity,
                // whatever sits in front of this layer.
                None => self.layer.remove_managed(req.headers_mut()),
            }
        }
        self.inner.call(req)
    }
}

/// Trusts identity headers set by a gateway in front (opt-in; see the trust boundary in the
/// [module docs](crate::gateway)).
///
/// Builds a [`CurrentUser`] from the headers (`sub` and user id from `X-User-Id`, roles and
/// permissions split on `,` and percent-decoded) and inserts
/// [`Authentication::User`]; without `X-User-Id` the request is
/// [`Authentication::Anonymous`].
///
/// # Example
///
/// ```
/// use tower_bearer::CurrentUser;
/// use tower_bearer::gateway::TrustedIdentityHeadersLayer;
/// # use std::convert::Infallible;
/// # use http::{HeaderMap, Request, Response};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
/// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.extensions().get::<CurrentUser>().and_then(|u| u.user_id().map(String::from)))) });
///
/// let svc = TrustedIdentityHeadersLayer::new().layer(echo);
/// let req = Request::get("/").header("x-user-id", "42").body(()).unwrap();
/// assert_eq!(svc.oneshot(req).await.unwrap().into_body().as_deref(), Some("42"));
/// # }
/// ```
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct TrustedIdentityHeadersLayer {
    identity: Arc<IdentityHeaders>,
}

impl TrustedIdentityHeadersLayer {
    /// Trusts the default header names.
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_bearer::gateway::TrustedIdentityHeadersLayer;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-user-id", "42".parse().unwrap());
    /// headers.insert("x-roles", "admin,a%2Cb".parse().unwrap());
    /// let user = TrustedIdentityHeadersLayer::new().user_from(&headers).unwrap();
    /// assert!(user.has_role("a,b"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// Trusts these header names.
    ///
    /// # Example
    ///
    /// ```
    /// use http::{HeaderMap, HeaderName};
    /// use tower_bearer::gateway::{IdentityHeaders, TrustedIdentityHeadersLayer};
    ///
    /// let mut names = IdentityHeaders::default();
    /// names.user_id = HeaderName::from_static("x-auth-user");
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-auth-user", "42".parse().unwrap());
    /// let layer = TrustedIdentityHeadersLayer::new().with_headers(names);
    /// assert_eq!(layer.user_from(&headers).unwrap().user_id(), Some("42"));
    /// ```
    pub fn with_headers(mut self, identity: IdentityHeaders) -> Self {
        self.identity = Arc::new(identity);
        self
    }

    /// The user the headers describe, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_bearer::gateway::TrustedIdentityHeadersLayer;
    ///
    /// let layer = TrustedIdentityHeadersLayer::new();
    /// let mut headers = HeaderMap::new();
    /// assert!(layer.user_from(&headers).is_none());
    /// headers.insert("x-user-id", "42".parse().unwrap());
    /// assert_eq!(layer.user_from(&headers).unwrap().subject(), Some("42"));
    /// ```
    pub fn user_from(&self, headers: &HeaderMap) -> Option<CurrentUser> {
        let id = &self.identity;
        let one = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(decode_item)
        };
        let many = |name: &HeaderName| -> Vec<Value> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .filter_map(decode_item)
                        .map(Value::String)
                        .collect()
                })
                .unwrap_or_default()
        };
        let user_id = one(&id.user_id)?;
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(user_id.clone()));
        claims.insert("uid".into(), Value::String(user_id));
        claims.insert("roles".into(), Value::Array(many(&id.roles)));
        claims.insert("permissions".into(), Value::Array(many(&id.permissions)));
        if let Some(t) = one(&id.tenant) {
            claims.insert("tenant".into(), Value::String(t));
        }
        if let Some(c) = one(&id.client_id) {
            claims.insert("client_id".into(), Value::String(c));
        }
        if let Some(iss) = one(&id.issuer) {
            claims.insert("iss".into(), Value::String(iss));
        }
        CurrentUser::from_claims(claims, &ClaimMapping::default().compile()).ok()
    }
}

impl<S> Layer<S> for TrustedIdentityHeadersLayer {
    type Service = TrustedIdentityHeaders<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TrustedIdentityHeaders {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`TrustedIdentityHeadersLayer`].
///
/// # Example
///
/// ```
/// use tower_bearer::claims::Authentication;
/// use tower_bearer::gateway::{TrustedIdentityHeaders, TrustedIdentityHeadersLayer};
/// # use std::convert::Infallible;
/// # use http::{HeaderMap, Request, Response};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.headers().clone())) });
/// # let echo = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(matches!(req.extensions().get::<Authentication>(), Some(Authentication::Anonymous)))) });
///
/// let svc: TrustedIdentityHeaders<_> = TrustedIdentityHeadersLayer::new().layer(echo);
/// let anonymous = svc.oneshot(Request::get("/").body(()).unwrap()).await.unwrap().into_body();
/// assert!(anonymous); // no `X-User-Id`
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TrustedIdentityHeaders<S> {
    inner: S,
    layer: TrustedIdentityHeadersLayer,
}

crate::macros::define_inner_service_accessors!(TrustedIdentityHeaders<S>);

impl<B, S: Service<Request<B>>> Service<Request<B>> for TrustedIdentityHeaders<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.layer.user_from(req.headers()) {
            Some(user) => crate::authn::insert_user(&mut req, user),
            None => {
                req.extensions_mut().insert(Authentication::Anonymous);
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_spelling() {
        let mut h = HeaderMap::new();
        for name in [
            "x-user-id",
            "X_USER_ID",
            "x-Roles",
            "x_tenant-id",
            "x-permissions",
            "x-client_id",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "spoof".parse().unwrap(),
            );
        }
        h.insert("x-other", "keep".parse().unwrap());
        strip_identity_headers(&mut h, &IdentityHeaders::default(), true).unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn connection_tricks() {
        let id = IdentityHeaders::default();
        for v in ["x-user-id", "close, X_Roles", " keep-alive ,x-tenant-id"] {
            let mut h = HeaderMap::new();
            h.insert(CONNECTION, v.parse().unwrap());
            assert!(strip_identity_headers(&mut h, &id, true).is_err(), "{v}");
        }
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "close, x-debug".parse().unwrap());
        h.insert("x-debug", "1".parse().unwrap());
        h.insert("keep-alive", "5".parse().unwrap());
        strip_identity_headers(&mut h, &id, true).unwrap();
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn items_are_encoded_and_round_trip() {
        assert_eq!(encode_item("admin"), "admin");
        assert_eq!(encode_item("a,b"), "a%2Cb");
        assert_eq!(encode_item("50%"), "50%25");
        assert_eq!(encode_item("é x"), "%C3%A9%20x");
        for s in ["a,b", "50%", "é x", "plain"] {
            assert_eq!(decode_item(&encode_item(s)).unwrap(), s);
        }
        // `u8::from_str_radix` took a sign: `%+A` was a newline.
        for bad in ["%+A", "a%+Ab", "%-1", "%2", "%", "%zz", "%C3", "%FF"] {
            assert_eq!(decode_item(bad), None, "{bad}");
        }
        assert_eq!(decode_item("%2c%2C").as_deref(), Some(",,"));
        assert_eq!(encode_item("\u{7f}\n"), "%7F%0A");
    }

    #[tokio::test]
    async fn set_identity_headers_removes_managed_headers_for_anonymous_requests() {
        use tower::ServiceExt;
        let echo = tower::service_fn(|req: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(Response::new(req.headers().clone()))
        });
        let layer =
            SetIdentityHeadersLayer::new().with_claims_header(HeaderName::from_static("x-claims"));
        for auth in [Some(Authentication::Anonymous), None] {
            let mut req = Request::get("/public")
                .header("x-user-id", "admin")
                .header("X_Roles", "admin")
                .header("x-claims", "eyJ9")
                .header("x-http-method-override", "DELETE")
                .header("x-other", "kept")
                .body(())
                .unwrap();
            if let Some(a) = auth.clone() {
                req.extensions_mut().insert(a);
            }
            let seen = layer
                .clone()
                .layer(echo)
                .oneshot(req)
                .await
                .unwrap()
                .into_body();
            let names: Vec<&str> = seen.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, ["x-other"], "{auth:?}");
        }
        // Disabled: the layer touches nothing.
        let req = Request::get("/").header("x-user-id", "a").body(()).unwrap();
        let seen = SetIdentityHeadersLayer::disabled()
            .layer(echo)
            .oneshot(req)
            .await
            .unwrap()
            .into_body();
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn set_then_trust_round_trip() {
        let claims = serde_json::json!({"sub":"s","uid":"u,1","roles":["a,b","c"],"tenant":"t","client_id":"web"});
        let user = CurrentUser::from_claims(
            claims.as_object().unwrap().clone(),
            &ClaimMapping::default().compile(),
        )
        .unwrap();
        let mut h = HeaderMap::new();
        SetIdentityHeadersLayer::new().apply(&mut h, &user);
        assert_eq!(h["x-user-id"], "u%2C1");
        assert_eq!(h["x-roles"], "a%2Cb,c");
        let back = TrustedIdentityHeadersLayer::new().user_from(&h).unwrap();
        assert_eq!(back.user_id(), Some("u,1"));
        assert_eq!(back.roles(), ["a,b", "c"]);
        assert_eq!(back.tenant(), Some("t"));
    }

    #[test]
    fn user_issuer_header_is_set_and_never_spoofed() {
        let id = IdentityHeaders::default();
        let mut h = HeaderMap::new();
        h.insert("X_User_Issuer", "https://evil.example".parse().unwrap());
        strip_identity_headers(&mut h, &id, true).unwrap();
        assert!(h.is_empty(), "{h:?}");
        // A partner user (issuer prefix set by the verifier with several issuers).
        let claims = serde_json::json!({"iss": "https://partner.example", "sub": "42"});
        let binding = crate::claims::IssuerBinding {
            prefix: Some("partner".into()),
            service_tokens: false,
        };
        let user = CurrentUser::from_claims_bound(
            claims.as_object().unwrap().clone(),
            &ClaimMapping::default().compile(),
            &binding,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-user-issuer", "https://evil.example".parse().unwrap());
        SetIdentityHeadersLayer::new().apply(&mut h, &user);
        assert_eq!(h["x-user-id"], "partner:42");
        assert_eq!(h["x-user-issuer"], "https://partner.example");
        let back = TrustedIdentityHeadersLayer::new().user_from(&h).unwrap();
        assert_eq!(back.issuer(), "https://partner.example");
        assert_eq!(back.user_id(), Some("partner:42"));
    }
}
