//! [`JwtAuthLayer`]: verify the bearer token, put [`CurrentUser`](crate::claims::CurrentUser)
//! into request extensions, or answer the RFC 6750 error.
//!
//! - No credentials: 401 `WWW-Authenticate: Bearer realm="…"` (no error code). In optional mode
//!   (for use with authorization rules) the request passes with
//!   [`Authentication::Anonymous`](crate::claims::Authentication::Anonymous).
//! - Malformed or multiple credentials: 400 `error="invalid_request"`.
//! - A bad token: 401 `error="invalid_token"`, in optional mode too.
//! - Keys not loadable yet: 503 with `Retry-After` (or 401, if configured).
//! - gRPC requests (`content-type: application/grpc*` over HTTP/2, or `application/grpc-web*`)
//!   get a trailers-only gRPC status instead:
//!   `UNAUTHENTICATED` (16), `PERMISSION_DENIED` (7) or `UNAVAILABLE` (14).
//!
//! The [`AuthError`](crate::error::AuthError) goes into the response extensions. The response
//! is pluggable through [`ResponseForRejection`]. The layer is generic over request and response
//! bodies (`ResBody: Default`), so it drops into axum, tonic and plain hyper services unchanged.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::authn::JwtAuthLayer;
//! use tower_bearer::claims::CurrentUser;
//! use tower_bearer::jwks::{Algorithm, KeySet};
//! use tower_bearer::signing::SigningKey;
//! use tower_bearer::verify::{IssuerConfig, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
//! # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
//! let verifier = Verifier::builder()
//!     .issuer(IssuerConfig::static_keys("https://auth.example", keys))
//!     .audience("orders")
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(JwtAuthLayer::new(verifier))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let user = req.extensions().get::<CurrentUser>().unwrap();
//!         Ok::<_, Infallible>(Response::new(user.subject().unwrap_or_default().to_owned()))
//!     }));
//!
//! let res = svc.clone().oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
//!
//! # let now = tower_bearer::clock::Clock::now_unix(&tower_bearer::clock::SystemClock);
//! # let token = key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "orders",
//! #     "sub": "alice", "exp": now + 60})).unwrap();
//! let req = Request::builder()
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.into_body(), "alice");
//! # }
//! ```

mod layer;
mod rejection;
mod service;

#[doc(inline)]
pub use crate::future::ResponseFuture;
#[doc(inline)]
pub use layer::JwtAuthLayer;
#[doc(inline)]
pub use rejection::{DefaultRejection, ResponseForRejection, is_grpc};
#[doc(inline)]
pub use service::JwtAuth;

pub(crate) use service::insert_user;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::CurrentUser;
    use crate::jwks::{Algorithm, KeySet};
    use crate::signing::SigningKey;
    use crate::verify::{IssuerConfig, Verifier};
    use http::{Request, Response};
    use std::convert::Infallible;
    use tower::{Layer, ServiceExt};

    fn setup() -> (SigningKey, Verifier) {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys =
            KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
        let v = Verifier::builder()
            .issuer(IssuerConfig::static_keys("https://auth.example", keys))
            .audience("a")
            .build()
            .unwrap();
        (key, v)
    }

    fn token(key: &SigningKey) -> String {
        let now = crate::clock::Clock::now_unix(&crate::clock::SystemClock);
        key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "a", "sub": "s", "exp": now + 60}))
            .unwrap()
    }

    #[tokio::test]
    async fn readiness_is_delegated_and_request_forwarded_with_user() {
        let (key, verifier) = setup();
        let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(
            JwtAuthLayer::new(verifier),
        );
        handle.allow(0);
        tokio_test::assert_pending!(svc.poll_ready());
        handle.allow(1);
        tokio_test::assert_ready_ok!(svc.poll_ready());
        let req = Request::get("/x")
            .header("authorization", format!("Bearer {}", token(&key)))
            .body(())
            .unwrap();
        let fut = svc.call(req);
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(
            req.extensions().get::<CurrentUser>().unwrap().subject(),
            Some("s")
        );
        assert!(req.headers()["authorization"].is_sensitive());
        send.send_response(Response::new(()));
        assert_eq!(fut.await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn works_behind_a_buffer() {
        let (key, verifier) = setup();
        let inner = tower::service_fn(|req: Request<()>| async move {
            let ok = req.extensions().get::<CurrentUser>().is_some();
            Ok::<_, Infallible>(Response::new(ok))
        });
        let svc = tower::buffer::Buffer::new(JwtAuthLayer::new(verifier).layer(inner), 4);
        let t = token(&key);
        let mut calls = Vec::new();
        for i in 0..16 {
            let svc = svc.clone();
            let t = t.clone();
            calls.push(tokio::spawn(async move {
                let mut b = Request::get("/");
                if i % 2 == 0 {
                    b = b.header("authorization", format!("Bearer {t}"));
                }
                svc.oneshot(b.body(()).unwrap()).await.unwrap()
            }));
        }
        for (i, c) in calls.into_iter().enumerate() {
            let res = c.await.unwrap();
            if i % 2 == 0 {
                assert!(*res.body());
            } else {
                assert_eq!(res.status(), 401);
            }
        }
    }
}
