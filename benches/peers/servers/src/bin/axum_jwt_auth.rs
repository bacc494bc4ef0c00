//! `axum-jwt-auth` 0.7: its `Claims` extractor over a `LocalDecoder` with the JWKS key
//! (`jsonwebtoken` 10 with the `rust_crypto` backend that axum-jwt-auth selects).
use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use axum_jwt_auth::{Decoder, LocalDecoder};
use jwt10::jwk::JwkSet;
use jwt10::{Algorithm, DecodingKey, Validation};
use peer_servers::{Claims, AUD, ISS};

#[derive(Clone, FromRef)]
struct State {
    decoder: Decoder<Claims>,
}

async fn hello(c: axum_jwt_auth::Claims<Claims>) -> String {
    peer_servers::hello(&c.claims.sub)
}

fn main() {
    let set: JwkSet = serde_json::from_str(&peer_servers::jwks()).unwrap();
    let keys = set
        .keys
        .iter()
        .map(|k| DecodingKey::from_jwk(k).unwrap())
        .collect();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    let decoder = LocalDecoder::builder()
        .keys(keys)
        .validation(validation)
        .build()
        .unwrap();
    let state = State {
        decoder: Arc::new(decoder),
    };
    peer_servers::serve(move || {
        Box::pin(async move { Router::new().route("/hello", get(hello)).with_state(state) })
    });
}
