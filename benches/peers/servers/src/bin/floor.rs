//! The hand-written floor: a pre-parsed aws-lc-rs RSA key, the signature, then `iss`/`aud`/`exp`
//! and nothing else (no header checks: the one key refuses any other signer, `alg: none` has no
//! signature to pass).
use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use peer_servers::{CheckLayer, Claims, AUD, ISS};

fn main() {
    let key = peer_servers::rsa_key();
    let check = move |token: &str| -> Option<Claims> {
        let (msg, sig) = token.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        key.verify_sig(msg.as_bytes(), &sig).ok()?;
        let payload = URL_SAFE_NO_PAD.decode(msg.split_once('.')?.1).ok()?;
        let c: Claims = serde_json::from_slice(&payload).ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        (c.iss == ISS && c.aud == AUD && now < c.exp).then_some(c)
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
