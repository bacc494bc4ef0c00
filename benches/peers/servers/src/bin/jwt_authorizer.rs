//! `jwt-authorizer` 0.15 from the same JWKS (text), `iss`/`aud` validation.
//!
//! jwt-authorizer 0.15 is written against axum 0.7: its rejection converts into an axum 0.7
//! `Response` only. The layer itself is generic over the body, so it runs in front of our axum
//! 0.8 router through a response newtype that gets the 401 from `AuthError` here.
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use jwt_authorizer::{Authorizer, IntoLayer, JwtAuthorizer, Validation};
use peer_servers::{Claims, AUD, ISS};
use tower::{Layer, ServiceExt};

/// Our response, so that `From<AuthError>` may be implemented for it.
struct Res(Response);

impl From<jwt_authorizer::AuthError> for Res {
    fn from(_: jwt_authorizer::AuthError) -> Self {
        Res((StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")]).into_response())
    }
}

async fn hello(req: Request<Body>) -> String {
    let data = req
        .extensions()
        .get::<jwt9::TokenData<Claims>>()
        .expect("claims");
    peer_servers::hello(&data.claims.sub)
}

fn main() {
    peer_servers::serve(|| {
        Box::pin(async {
            let auth: Authorizer<Claims> = JwtAuthorizer::from_jwks_text(&peer_servers::jwks())
                .validation(Validation::new().iss(&[ISS]).aud(&[AUD]))
                .build()
                .await
                .unwrap();
            let routes = Router::new().route("/hello", get(hello));
            let wrapped = ServiceExt::<Request<Body>>::map_response(routes, Res);
            let svc = ServiceExt::<Request<Body>>::map_response(
                auth.into_layer().layer(wrapped),
                |r: Res| r.0,
            );
            Router::new().fallback_service(svc)
        })
    });
}
