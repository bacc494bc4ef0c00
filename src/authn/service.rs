use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::JwtAuthLayer;
use super::rejection::{DefaultRejection, ResponseForRejection, is_grpc};
use crate::bearer::{extract_bearer, mark_sensitive_bearer_bytes};
use crate::claims::{Authentication, CurrentUser};
use crate::error::AuthError;
use crate::future::ResponseFuture;
use crate::verify::Step;

/// Verifies the bearer token of every request. See the [module docs](crate::authn).
///
/// # Example
///
/// ```
/// use tower_bearer::{CurrentUser, JwtAuth, JwtAuthLayer};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
/// # use tower_bearer::jwks::{Algorithm, KeySet};
/// # use tower_bearer::signing::SigningKey;
/// # use tower_bearer::{IssuerConfig, Verifier};
/// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
/// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
/// # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
/// # let token = key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "api", "sub": "alice", "exp": now + 60})).unwrap();
///
/// let echo = service_fn(|req: Request<()>| async move {
///     let sub = req.extensions().get::<CurrentUser>().and_then(|u| u.subject().map(String::from));
///     Ok::<_, Infallible>(Response::new(sub))
/// });
/// let svc = JwtAuth::new(echo, JwtAuthLayer::new(verifier));
/// let req = Request::get("/").header("authorization", format!("Bearer {token}")).body(()).unwrap();
/// assert_eq!(svc.oneshot(req).await.unwrap().into_body().as_deref(), Some("alice"));
/// # }
/// ```
#[derive(Clone)]
pub struct JwtAuth<S, R = DefaultRejection> {
    pub(crate) inner: S,
    pub(crate) layer: JwtAuthLayer<R>,
}

crate::macros::layer_with_rejection!(JwtAuthLayer => JwtAuth);

impl<S> JwtAuth<S> {
    /// Wraps `inner`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::{JwtAuth, JwtAuthLayer};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    ///
    /// let svc = JwtAuth::new(ok, JwtAuthLayer::new(verifier).optional(true));
    /// let res = svc.oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn new(inner: S, layer: JwtAuthLayer) -> Self {
        Self { inner, layer }
    }

    /// The layer (same as [`JwtAuthLayer::new`]).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::JwtAuth;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    ///
    /// let svc = JwtAuth::<()>::layer(verifier).layer(ok); // the layer does not depend on `S`
    /// let res = svc.oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// # }
    /// ```
    pub fn layer(verifier: crate::verify::Verifier) -> JwtAuthLayer {
        JwtAuthLayer::new(verifier)
    }
}

enum Outcome {
    Reject(AuthError),
    Anonymous,
    User(CurrentUser),
    Pending(String, Step),
}

pub(crate) fn insert_user<B>(req: &mut Request<B>, user: CurrentUser) {
    req.extensions_mut()
        .insert(Authentication::User(user.clone()));
    req.extensions_mut().insert(user);
}

impl<ReqBody, ResBody, S, R> Service<Request<ReqBody>> for JwtAuth<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    R: ResponseForRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Every `Authorization` value marked sensitive; a token verified before, in the common
        // request shape: one header lookup, one cache lookup, no parsing. This path is kept
        // small (everything else is out of line): on a busy server each distinct cache line
        // of code it runs is likely a cache miss.
        let settings = &*self.layer.inner;
        let has_query = req.uri().query().is_some();
        let hit = mark_sensitive_bearer_bytes(
            req.headers_mut(),
            has_query,
            settings.bearer.max_token_len,
        )
        .and_then(|token| settings.verifier.cached(token));
        match hit {
            Some(Ok(user)) => {
                insert_user(&mut req, user);
                ResponseFuture::future(self.inner.call(req))
            }
            Some(Err(e)) => self.reject(&e, &req),
            None => self.call_uncached(req),
        }
    }
}

impl<S, R> JwtAuth<S, R> {
    /// A rejection: counted, logged, answered.
    #[cold]
    #[inline(never)]
    fn reject<ReqBody, ResBody>(
        &self,
        e: &AuthError,
        req: &Request<ReqBody>,
    ) -> ResponseFuture<S::Future, S, ReqBody, ResBody, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        R: ResponseForRejection<ResBody>,
    {
        crate::telemetry::rejection(e);
        ResponseFuture::rejected(self.layer.inner.rejection.response(e, is_grpc(req)))
    }

    /// No cache hit: the strict extraction and the full verification (or anonymous).
    #[inline(never)]
    fn call_uncached<ReqBody, ResBody>(
        &mut self,
        mut req: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, S, ReqBody, ResBody, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        ReqBody: Send + 'static,
        R: ResponseForRejection<ResBody>,
    {
        let settings = &*self.layer.inner;
        let outcome = match extract_bearer(req.headers(), req.uri(), &settings.bearer) {
            Err(e) => Outcome::Reject(e),
            Ok(None) if settings.optional => Outcome::Anonymous,
            Ok(None) => Outcome::Reject(AuthError::MissingCredentials),
            Ok(Some(token)) => match settings.verifier.verify_now(&token) {
                Step::Done(Ok(user)) => Outcome::User(user),
                Step::Done(Err(e)) => Outcome::Reject(e),
                step => Outcome::Pending(token.into_owned(), step),
            },
        };
        match outcome {
            Outcome::Reject(e) => self.reject(&e, &req),
            Outcome::Anonymous => {
                req.extensions_mut().insert(Authentication::Anonymous);
                ResponseFuture::future(self.inner.call(req))
            }
            Outcome::User(user) => {
                insert_user(&mut req, user);
                ResponseFuture::future(self.inner.call(req))
            }
            Outcome::Pending(token, step) => {
                let grpc = is_grpc(&req);
                let verifier = settings.verifier.clone();
                let check = Box::pin(async move {
                    let user = verifier.finish(&token, step).await?;
                    insert_user(&mut req, user);
                    Ok(req)
                });
                let rejection = settings.rejection.clone();
                // The instance made ready by `poll_ready` goes into the future; a fresh clone
                // stays here. See tower's "Be careful when cloning inner services":
                // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, inner, rejection, grpc)
            }
        }
    }
}
