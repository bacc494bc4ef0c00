//! Bare `jsonwebtoken` 11 (aws-lc-rs backend) in a minimal middleware: the key by `kid` from
//! the JWKS, `jsonwebtoken::decode` with `iss`/`aud`/`exp` validation.
use std::collections::HashMap;
use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use peer_servers::{CheckLayer, Claims, AUD, ISS};

fn main() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let set: JwkSet = serde_json::from_str(&peer_servers::jwks()).unwrap();
    let keys: HashMap<String, DecodingKey> = set
        .keys
        .iter()
        .map(|k| {
            (
                k.common.key_id.clone().unwrap(),
                DecodingKey::from_jwk(k).unwrap(),
            )
        })
        .collect();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    let check = move |token: &str| -> Option<Claims> {
        let header = decode_header(token).ok()?;
        let key = keys.get(header.kid.as_deref()?)?;
        decode::<Claims>(token, key, &validation)
            .ok()
            .map(|d| d.claims)
    };
    peer_servers::serve(move || {
        Box::pin(async move {
            Router::new()
                .route(
                    "/hello",
                    get(|Extension(c): Extension<Claims>| async move { peer_servers::hello(&c.sub) }),
                )
                .layer(CheckLayer(Arc::new(check)))
        })
    });
}
