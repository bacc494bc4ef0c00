use std::fmt;
use std::sync::Arc;

use super::rejection::DefaultRejection;
use crate::bearer::BearerOptions;
use crate::verify::Verifier;

/// Applies [`JwtAuth`](super::JwtAuth) to a service. The layer is the builder.
///
/// See the [module docs](crate::authn) for an example.
///
/// # Example
///
/// ```
/// use tower_bearer::JwtAuthLayer;
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
/// let svc = JwtAuthLayer::new(verifier).layer(ok);
/// let req = Request::get("/").header("authorization", format!("Bearer {token}")).body(()).unwrap();
/// assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
/// # }
/// ```
#[must_use]
pub struct JwtAuthLayer<R = DefaultRejection> {
    /// One allocation: axum clones the layered service for every request, so a clone is one
    /// reference count (one cache line), whatever the settings.
    pub(crate) inner: Arc<Settings<R>>,
}

/// What a [`JwtAuthLayer`] holds.
#[derive(Clone)]
pub(crate) struct Settings<R> {
    pub(crate) verifier: Verifier,
    pub(crate) bearer: BearerOptions,
    pub(crate) optional: bool,
    pub(crate) rejection: R,
}

impl<R> Clone for JwtAuthLayer<R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<R> fmt::Debug for JwtAuthLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("verifier", &self.inner.verifier)
            .field("bearer", &self.inner.bearer)
            .field("optional", &self.inner.optional)
            .finish_non_exhaustive()
    }
}

impl<R: Clone> JwtAuthLayer<R> {
    /// The settings to change (a copy if this layer was cloned before).
    fn settings(&mut self) -> &mut Settings<R> {
        Arc::make_mut(&mut self.inner)
    }
}

impl JwtAuthLayer {
    /// A layer that answers 401 for every request without a valid token.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::JwtAuthLayer;
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
    /// let svc = JwtAuthLayer::new(verifier).layer(ok);
    /// let res = svc.oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");
    /// # }
    /// ```
    pub fn new(verifier: Verifier) -> Self {
        let bearer = BearerOptions {
            max_token_len: verifier.max_token_len(),
            ..BearerOptions::default()
        };
        Self {
            inner: Arc::new(Settings {
                verifier,
                bearer,
                optional: false,
                rejection: DefaultRejection::default(),
            }),
        }
    }

    /// The `realm` of challenges (default `api`; `None` omits it).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::JwtAuthLayer;
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
    /// let svc = JwtAuthLayer::new(verifier).with_realm(Some("orders")).layer(ok);
    /// let res = svc.oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"orders\"");
    /// # }
    /// ```
    pub fn with_realm(mut self, realm: Option<&str>) -> Self {
        let r = &mut self.settings().rejection;
        *r = r.clone().with_realm(realm);
        self
    }

    /// Adds a terse `error_description` to challenges (off by default).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::JwtAuthLayer;
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
    /// let svc = JwtAuthLayer::new(verifier).with_error_description(true).layer(ok);
    /// let req = Request::get("/").header("authorization", "Bearer not-a-jwt").body(()).unwrap();
    /// let res = svc.oneshot(req).await.unwrap();
    /// assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("error_description="));
    /// # }
    /// ```
    pub fn with_error_description(mut self, describe: bool) -> Self {
        let r = &mut self.settings().rejection;
        *r = r.clone().with_error_description(describe);
        self
    }

    /// Answer 401 `invalid_token` instead of 503 + `Retry-After` while keys are unavailable.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::JwtAuthLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::jwks::Algorithm;
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// # let token = key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "api", "sub": "alice", "exp": now + 60})).unwrap();
    /// // Nothing listens on port 1: the signing keys cannot be loaded.
    /// let issuer = IssuerConfig::jwks_uri("https://auth.example", "http://127.0.0.1:1/jwks");
    /// let verifier = Verifier::builder().issuer(issuer).audience("api").build().unwrap();
    /// let svc = JwtAuthLayer::new(verifier).with_keys_unavailable_as_401(true).layer(ok);
    /// let req = Request::get("/").header("authorization", format!("Bearer {token}")).body(()).unwrap();
    /// assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED); // not 503
    /// # }
    /// ```
    pub fn with_keys_unavailable_as_401(mut self, yes: bool) -> Self {
        let r = &mut self.settings().rejection;
        *r = r.clone().with_keys_unavailable_as_401(yes);
        self
    }
}

impl<R: Clone> JwtAuthLayer<R> {
    /// Optional mode: requests without credentials pass as
    /// [`Authentication::Anonymous`](crate::claims::Authentication::Anonymous); a present but
    /// bad token is still refused. Use with an authorization layer behind it.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::JwtAuthLayer;
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
    /// let svc = JwtAuthLayer::new(verifier).optional(true).layer(ok);
    /// let res = svc.clone().oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::OK); // anonymous
    /// let bad = Request::get("/").header("authorization", "Bearer bad").body(()).unwrap();
    /// assert_eq!(svc.oneshot(bad).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    /// # }
    /// ```
    pub fn optional(mut self, optional: bool) -> Self {
        self.settings().optional = optional;
        self
    }

    /// Accept `?access_token=` (RFC 6750 §2.3; off by default).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::JwtAuthLayer;
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
    /// let svc = JwtAuthLayer::new(verifier).with_query_parameter(true).layer(ok);
    /// let req = Request::get(format!("/?access_token={token}")).body(()).unwrap();
    /// assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn with_query_parameter(mut self, allow: bool) -> Self {
        self.settings().bearer.allow_query_parameter = allow;
        self
    }
}

impl<R> JwtAuthLayer<R> {
    /// Replaces how rejections become responses.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::{AuthError, JwtAuthLayer};
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
    /// let plain = |e: &AuthError, _grpc: bool| Response::builder().status(e.status()).body(()).unwrap();
    /// let svc = JwtAuthLayer::new(verifier).with_rejection(plain).layer(ok);
    /// let res = svc.oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// assert!(res.headers().get("www-authenticate").is_none());
    /// # }
    /// ```
    pub fn with_rejection<R2>(self, rejection: R2) -> JwtAuthLayer<R2> {
        JwtAuthLayer {
            inner: Arc::new(Settings {
                verifier: self.inner.verifier.clone(),
                bearer: self.inner.bearer.clone(),
                optional: self.inner.optional,
                rejection,
            }),
        }
    }

    /// The verifier.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::JwtAuthLayer;
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    ///
    /// let layer = JwtAuthLayer::new(verifier);
    /// assert!(layer.verifier().max_token_len() > 0);
    /// ```
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }
}
