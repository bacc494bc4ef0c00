//! What every contender shares: the claims type, the handler, the server (axum on one tokio
//! worker thread), the JWKS and token files written by `gen`, and a minimal tower layer for
//! the hand-written contenders (the floor and bare `jsonwebtoken`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::Router;
use http::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

/// The issuer and audience of every token.
pub const ISS: &str = "https://auth.peers.test";
/// The audience.
pub const AUD: &str = "peers";

/// The same claims type for every contender that deserializes claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The answer of every protected route.
pub fn hello(sub: &str) -> String {
    format!("hello {sub}")
}

/// The directory with `jwks.json` and the tokens (argument 2, default `target/peers`).
pub fn data_dir() -> std::path::PathBuf {
    std::env::args()
        .nth(2)
        .unwrap_or_else(|| "target/peers".into())
        .into()
}

/// The JWKS every contender trusts.
pub fn jwks() -> String {
    std::fs::read_to_string(data_dir().join("jwks.json")).expect("jwks.json (run gen first)")
}

/// The JWKS's RSA key, parsed once by aws-lc-rs (the floor's and the ideal cache's key).
pub fn rsa_key() -> aws_lc_rs::signature::ParsedPublicKey {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let jwks: serde_json::Value = serde_json::from_str(&jwks()).unwrap();
    let jwk = &jwks["keys"][0];
    let b = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
    aws_lc_rs::signature::RsaPublicKeyComponents {
        n: b("n"),
        e: b("e"),
    }
    .to_parsed_public_key(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
    .unwrap()
}

/// Serves `app` on 127.0.0.1:PORT (argument 1) with one tokio worker thread.
pub fn serve(build: impl FnOnce() -> Pin<Box<dyn Future<Output = Router>>>) {
    let port: u16 = std::env::args()
        .nth(1)
        .expect("usage: SERVER PORT [DATA_DIR]")
        .parse()
        .expect("port");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let app = build().await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        eprintln!("listening on {}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

/// A minimal bearer layer around a verification function (the hand-written contenders):
/// `Authorization: Bearer <token>` → `check(token)` → its value (the claims) in extensions,
/// else 401.
#[derive(Clone)]
pub struct CheckLayer<F>(pub Arc<F>);

impl<S, F> tower::Layer<S> for CheckLayer<F> {
    type Service = Check<S, F>;
    fn layer(&self, inner: S) -> Self::Service {
        Check {
            inner,
            check: self.0.clone(),
        }
    }
}

/// The service of [`CheckLayer`].
#[derive(Clone)]
pub struct Check<S, F> {
    inner: S,
    check: Arc<F>,
}

impl<S, F, T> tower::Service<Request<Body>> for Check<S, F>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
    F: Fn(&str) -> Option<T>,
    T: Clone + Send + Sync + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_like::Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let claims = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| (self.check)(t));
        match claims {
            Some(c) => {
                req.extensions_mut().insert(c);
                futures_like::Either::Inner {
                    fut: self.inner.call(req),
                }
            }
            None => {
                let mut res = Response::new(Body::empty());
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                res.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                futures_like::Either::Ready { res: Some(res) }
            }
        }
    }
}

/// A two-state future: the inner service's, or a ready rejection.
pub mod futures_like {
    use super::*;

    pin_project_lite::pin_project! {
        /// The inner service's future, or a ready rejection.
        #[project = EitherProj]
        pub enum Either<F> {
            Inner { #[pin] fut: F },
            Ready { res: Option<Response<Body>> },
        }
    }

    impl<F> Future for Either<F>
    where
        F: Future<Output = Result<Response<Body>, Infallible>>,
    {
        type Output = F::Output;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project() {
                EitherProj::Inner { fut } => fut.poll(cx),
                EitherProj::Ready { res } => Poll::Ready(Ok(res.take().expect("polled twice"))),
            }
        }
    }
}

/// tower-bearer's `JwtAuthLayer` over the same route (`cache` entries; `0` turns it off).
pub fn tower_bearer_app(cache: usize) -> Router {
    use axum::routing::get;
    use tower_bearer::jwks::{Algorithm, KeySet};
    use tower_bearer::{CurrentUser, IssuerConfig, JwtAuthLayer, Verifier};
    let keys = KeySet::from_jwks(jwks().as_bytes(), &[Algorithm::RS256]).unwrap();
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::static_keys(ISS, keys))
        .audience(AUD)
        .token_cache(cache)
        .build()
        .unwrap();
    Router::new()
        .route(
            "/hello",
            get(|user: CurrentUser| async move { hello(user.subject().unwrap_or("?")) }),
        )
        .layer(JwtAuthLayer::new(verifier))
}
