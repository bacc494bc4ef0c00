//! [`AuthorizeLayer`] and [`InternalOnlyLayer`].

use std::fmt;
use std::task::{Context, Poll};

use http::header::{ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::rules::{AccessRules, InternalOnly};
use crate::authn::{DefaultRejection, ResponseForRejection, is_grpc};
use crate::claims::{Authentication, CurrentUser};
use crate::error::AuthError;
use crate::future::ResponseFuture;

/// The opt-in value of [`INSECURE_DEV_ENV`] (feature `insecure-dev` only).
///
/// # Example
///
/// ```
/// use tower_bearer::authz::{INSECURE_DEV_ENV, INSECURE_DEV_VALUE};
///
/// // Only with the `insecure-dev` feature, and never in production:
/// // export TOWER_BEARER_INSECURE_DEV_PERMIT_ALL=i-understand-this-disables-authorization
/// assert_eq!(INSECURE_DEV_VALUE, "i-understand-this-disables-authorization");
/// assert_eq!(INSECURE_DEV_ENV, "TOWER_BEARER_INSECURE_DEV_PERMIT_ALL");
/// ```
pub const INSECURE_DEV_VALUE: &str = "i-understand-this-disables-authorization";
/// The environment variable that, with feature `insecure-dev`, turns authorization off.
///
/// # Example
///
/// ```
/// use tower_bearer::authz::INSECURE_DEV_ENV;
///
/// assert_eq!(INSECURE_DEV_ENV, "TOWER_BEARER_INSECURE_DEV_PERMIT_ALL");
/// ```
pub const INSECURE_DEV_ENV: &str = "TOWER_BEARER_INSECURE_DEV_PERMIT_ALL";

fn dev_permit_all() -> bool {
    dev_permit_all_from(std::env::var(INSECURE_DEV_ENV).ok().as_deref())
}

/// The dev switch needs the compile-time feature **and** the exact opt-in value.
fn dev_permit_all_from(value: Option<&str>) -> bool {
    cfg!(feature = "insecure-dev") && value == Some(INSECURE_DEV_VALUE)
}

/// The user of a request, as decided by `JwtAuth` (optional mode) in front.
fn user_of<B>(req: &Request<B>) -> Option<&CurrentUser> {
    match req.extensions().get::<Authentication>() {
        Some(Authentication::User(u)) => Some(u),
        Some(Authentication::Anonymous) => None,
        None => {
            tracing::warn!("authorization without JwtAuth in front: request treated as anonymous");
            None
        }
    }
}

fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(ORIGIN)
        && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Applies [`AccessRules`] after authentication. See the [module docs](crate::authz).
///
/// # Example
///
/// ```
/// use tower_bearer::authz::{AccessRules, AuthorizeLayer, Requirement, Rule};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
///
/// let rules = AccessRules::builder().rule(Rule::new("/**", Requirement::PermitAll)).build().unwrap();
/// let svc = AuthorizeLayer::new(rules).layer(ok);
/// let res = svc.oneshot(Request::get("/a").body(()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// # }
/// ```
#[must_use]
#[derive(Clone)]
pub struct AuthorizeLayer<R = DefaultRejection> {
    rules: AccessRules,
    rejection: R,
    preflight: bool,
    dev_permit_all: bool,
}

impl<R> fmt::Debug for AuthorizeLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("rules", &self.rules)
            .field("preflight", &self.preflight)
            .field("dev_permit_all", &self.dev_permit_all)
            .finish_non_exhaustive()
    }
}

impl AuthorizeLayer {
    /// Enforces `rules`.
    ///
    /// With the compile-time feature `insecure-dev` **and** the environment variable
    /// [`INSECURE_DEV_ENV`] set to [`INSECURE_DEV_VALUE`], every request is let through (for
    /// local work only); a warning is logged now and for every request.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::{AccessRules, AuthorizeLayer};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    ///
    /// let svc = AuthorizeLayer::new(AccessRules::builder().build().unwrap()).layer(ok);
    /// let res = svc.oneshot(Request::get("/a").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::UNAUTHORIZED); // default deny, anonymous
    /// # }
    /// ```
    pub fn new(rules: AccessRules) -> Self {
        let dev = dev_permit_all();
        if dev {
            tracing::warn!(
                "INSECURE DEV MODE: authorization is disabled ({INSECURE_DEV_ENV} is set); never use this in production"
            );
        }
        Self {
            rules,
            rejection: DefaultRejection::default(),
            preflight: false,
            dev_permit_all: dev,
        }
    }
}

impl<R> AuthorizeLayer<R> {
    /// Let CORS preflight requests (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) through without authorization, so a CORS layer behind
    /// can answer them. Off by default; a preflight carries no credentials.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::{AccessRules, AuthorizeLayer};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    ///
    /// let layer = AuthorizeLayer::new(AccessRules::builder().build().unwrap()).with_cors_preflight(true);
    /// let req = Request::options("/a")
    ///     .header("origin", "https://app.example")
    ///     .header("access-control-request-method", "POST")
    ///     .body(())
    ///     .unwrap();
    /// assert_eq!(layer.layer(ok).oneshot(req).await.unwrap().status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn with_cors_preflight(mut self, allow: bool) -> Self {
        self.preflight = allow;
        self
    }
    /// Replaces how rejections become responses.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::{AccessRules, AuthorizeLayer};
    /// use tower_bearer::AuthError;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    ///
    /// let teapot = |_e: &AuthError, _grpc: bool| {
    ///     Response::builder().status(StatusCode::IM_A_TEAPOT).body(()).unwrap()
    /// };
    /// let layer = AuthorizeLayer::new(AccessRules::builder().build().unwrap()).with_rejection(teapot);
    /// let res = layer.layer(ok).oneshot(Request::get("/a").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    /// # }
    /// ```
    pub fn with_rejection<R2>(self, rejection: R2) -> AuthorizeLayer<R2> {
        AuthorizeLayer {
            rules: self.rules,
            rejection,
            preflight: self.preflight,
            dev_permit_all: self.dev_permit_all,
        }
    }
    /// The rules.
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, AuthorizeLayer, Requirement, Rule};
    ///
    /// let rules = AccessRules::builder().rule(Rule::new("/**", Requirement::PermitAll)).build().unwrap();
    /// let layer = AuthorizeLayer::new(rules);
    /// assert!(layer.rules().check(&Method::GET, "/a", None).is_ok());
    /// ```
    pub fn rules(&self) -> &AccessRules {
        &self.rules
    }
}

/// The service of [`AuthorizeLayer`].
///
/// # Example
///
/// ```
/// use tower_bearer::authz::{AccessRules, Authorize, Requirement, Rule};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
///
/// let rules = AccessRules::builder().rule(Rule::new("/**", Requirement::Deny)).build().unwrap();
/// let svc = Authorize::new(ok, rules);
/// let res = svc.oneshot(Request::get("/a").body(()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
#[derive(Clone)]
pub struct Authorize<S, R = DefaultRejection> {
    inner: S,
    layer: AuthorizeLayer<R>,
}

crate::macros::layer_with_rejection!(AuthorizeLayer => Authorize);

impl<S> Authorize<S> {
    /// Wraps `inner`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::{AccessRules, Authorize, Requirement, Rule};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    ///
    /// let rules = AccessRules::builder().rule(Rule::new("/**", Requirement::PermitAll)).build().unwrap();
    /// let res = Authorize::new(ok, rules).oneshot(Request::get("/a").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn new(inner: S, rules: AccessRules) -> Self {
        AuthorizeLayer::new(rules).layer(inner)
    }
    /// The layer (same as [`AuthorizeLayer::new`]).
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, Authorize, Requirement, Rule};
    ///
    /// let rules = AccessRules::builder().rule(Rule::new("/**", Requirement::PermitAll)).build().unwrap();
    /// let layer = Authorize::<()>::layer(rules); // the layer does not depend on `S`
    /// assert!(layer.rules().check(&Method::GET, "/x", None).is_ok());
    /// ```
    pub fn layer(rules: AccessRules) -> AuthorizeLayer {
        AuthorizeLayer::new(rules)
    }
}

impl<ReqBody, ResBody, S, R> Service<Request<ReqBody>> for Authorize<S, R>
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let layer = &self.layer;
        if layer.dev_permit_all {
            tracing::warn!(
                path = req.uri().path(),
                "INSECURE DEV MODE: authorization skipped"
            );
            return ResponseFuture::future(self.inner.call(req));
        }
        if layer.preflight && is_preflight(&req) {
            // Preflights skip the rules, not the path check.
            return match super::path::check_canonical(req.uri().path()) {
                Ok(()) => ResponseFuture::future(self.inner.call(req)),
                Err(e) => reject(
                    &layer.rejection,
                    &AuthError::NonCanonicalPath(e.reason()),
                    &req,
                ),
            };
        }
        match layer
            .rules
            .check(req.method(), req.uri().path(), user_of(&req))
        {
            Ok(()) => ResponseFuture::future(self.inner.call(req)),
            Err(e) => reject(&layer.rejection, &e, &req),
        }
    }
}

fn reject<F, S, ReqBody, ResBody, R: ResponseForRejection<ResBody>>(
    rejection: &R,
    e: &AuthError,
    req: &Request<ReqBody>,
) -> ResponseFuture<F, S, ReqBody, ResBody, R> {
    crate::telemetry::rejection(e);
    ResponseFuture::rejected(rejection.response(e, is_grpc(req)))
}

/// A per-route internal-only check (the seeds' `@InternalOnly`), e.g. as an axum
/// `route_layer`: the internal scope **and** a service token.
///
/// # Example
///
/// ```
/// use tower_bearer::authz::InternalOnlyLayer;
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
///
/// let svc = InternalOnlyLayer::new().layer(ok);
/// let res = svc.oneshot(Request::get("/internal/sync").body(()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
#[must_use]
#[derive(Clone)]
pub struct InternalOnlyLayer<R = DefaultRejection> {
    internal: InternalOnly,
    rejection: R,
}

impl<R> fmt::Debug for InternalOnlyLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalOnlyLayer")
            .field("internal", &self.internal)
            .finish_non_exhaustive()
    }
}

impl InternalOnlyLayer {
    /// Requires `internal-service` and a service token (by default `gty: client-credentials`; see
    /// [`ServiceTokenRule`](crate::claims::ServiceTokenRule)).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::InternalOnlyLayer;
    /// use tower_bearer::claims::Authentication;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    ///
    /// let mut req = Request::get("/internal/sync").body(()).unwrap();
    /// req.extensions_mut().insert(Authentication::Anonymous);
    /// let res = InternalOnlyLayer::new().layer(ok).oneshot(req).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// # }
    /// ```
    pub fn new() -> Self {
        Self {
            internal: InternalOnly::default(),
            rejection: DefaultRejection::default(),
        }
    }
    /// Uses this scope and service-token rule (its paths are ignored: the route decides).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::{InternalOnly, InternalOnlyLayer};
    /// use tower_bearer::claims::Authentication;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "ops", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let layer = InternalOnlyLayer::with(InternalOnly::default().scope("ops"));
    /// let mut req = Request::get("/sync").body(()).unwrap();
    /// req.extensions_mut().insert(Authentication::User(user));
    /// assert_eq!(layer.layer(ok).oneshot(req).await.unwrap().status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn with(internal: InternalOnly) -> Self {
        Self {
            internal,
            rejection: DefaultRejection::default(),
        }
    }
}

impl Default for InternalOnlyLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// The service of [`InternalOnlyLayer`].
///
/// # Example
///
/// ```
/// use tower_bearer::authz::{InternalOnlyLayer, InternalOnlyService};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
///
/// let svc: InternalOnlyService<_> = InternalOnlyLayer::new().layer(ok);
/// let res = svc.oneshot(Request::get("/sync").body(()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
#[derive(Clone)]
pub struct InternalOnlyService<S, R = DefaultRejection> {
    inner: S,
    layer: InternalOnlyLayer<R>,
}

crate::macros::layer_with_rejection!(InternalOnlyLayer => InternalOnlyService);

impl<ReqBody, ResBody, S, R> Service<Request<ReqBody>> for InternalOnlyService<S, R>
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.layer.internal.check(user_of(&req)) {
            Ok(()) => ResponseFuture::future(self.inner.call(req)),
            Err(e) => reject(&self.layer.rejection, &e, &req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{Requirement, Rule};
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[test]
    fn dev_switch_needs_feature_and_exact_value() {
        assert!(!dev_permit_all_from(None));
        assert!(!dev_permit_all_from(Some("1")));
        assert!(!dev_permit_all_from(Some("true")));
        assert_eq!(
            dev_permit_all_from(Some(INSECURE_DEV_VALUE)),
            cfg!(feature = "insecure-dev")
        );
    }

    #[tokio::test]
    async fn readiness_is_delegated_and_cors_preflight_opt_in() {
        let rules = AccessRules::builder()
            .rule(Rule::new("/**", Requirement::Authenticated))
            .build()
            .unwrap();
        // Readiness: the inner service's backpressure is visible through the layer.
        let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(
            AuthorizeLayer::new(rules.clone()),
        );
        handle.allow(0);
        tokio_test::assert_pending!(svc.poll_ready());
        handle.allow(1);
        tokio_test::assert_ready_ok!(svc.poll_ready());
        let mut req = Request::get("/x").body(()).unwrap();
        req.extensions_mut().insert(Authentication::Anonymous);
        let res = svc.call(req).await.unwrap();
        assert_eq!(res.status(), 401);

        let preflight = || {
            let mut req = Request::options("/x")
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .body(())
                .unwrap();
            req.extensions_mut().insert(Authentication::Anonymous);
            req
        };
        let inner =
            tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
        let strict = AuthorizeLayer::new(rules.clone()).layer(inner);
        assert_eq!(strict.oneshot(preflight()).await.unwrap().status(), 401);
        let open = AuthorizeLayer::new(rules)
            .with_cors_preflight(true)
            .layer(inner);
        assert_eq!(open.oneshot(preflight()).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn miscased_methods_and_encoded_reserved_answer_400() {
        let rules = AccessRules::builder()
            .rule(
                Rule::new("/admin/**", Requirement::Role("admin".into()))
                    .methods([Method::POST, Method::DELETE]),
            )
            .rule(Rule::new("/**", Requirement::PermitAll))
            .build()
            .unwrap();
        let inner =
            tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
        let svc = AuthorizeLayer::new(rules)
            .with_cors_preflight(true)
            .layer(inner);
        let call = |method: &str, uri: &str| {
            let mut req = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(uri)
                .header("origin", "https://app.example")
                .header("access-control-request-method", "DELETE")
                .body(())
                .unwrap();
            req.extensions_mut().insert(Authentication::Anonymous);
            svc.clone().oneshot(req)
        };
        for m in ["delete", "Delete", "pAtCh", "options"] {
            let res = call(m, "/admin/users/1").await.unwrap();
            assert_eq!(res.status(), 400, "{m}");
            assert_eq!(
                res.extensions().get::<AuthError>(),
                Some(&AuthError::NonCanonicalMethod)
            );
        }
        assert_eq!(
            call("DELETE", "/admin/users/1").await.unwrap().status(),
            401
        );
        assert_eq!(call("PURGE", "/admin/users/1").await.unwrap().status(), 200);
        assert_eq!(
            call("OPTIONS", "/admin/users/1").await.unwrap().status(),
            200
        );
        assert_eq!(call("POST", "/admin%3Ausers").await.unwrap().status(), 400);
    }
}
