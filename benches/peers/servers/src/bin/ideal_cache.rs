//! Informational, not a peer: the "ideal cache", what any axum layer + one extension + an
//! extractor costs on this machine. The same `CheckLayer` as the floor, whose check is a
//! look-up of the presented token in a `HashMap<String, Arc<Claims>>` (std `RandomState`,
//! exact full-token compare) of the valid tokens `gen` wrote (`token.txt` and the 1,000 of
//! `tokens.txt`, each verified once at start-up with the floor's checks), then `exp` against
//! the clock; the claims go in as ONE extension (`Arc<Claims>`), the handler extracts them.
//! Every other token is refused (no verification at all: it only knows these tokens).
use std::collections::HashMap;
use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use peer_servers::{CheckLayer, Claims, AUD, ISS};

fn main() {
    let key = peer_servers::rsa_key();
    let dir = peer_servers::data_dir();
    let mut valid: HashMap<String, Arc<Claims>> = HashMap::new();
    for file in ["token.txt", "tokens.txt"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("tokens (run gen first)");
        for token in text.lines().filter(|l| !l.is_empty()) {
            let (msg, sig) = token.rsplit_once('.').unwrap();
            key.verify_sig(msg.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
                .expect("a valid token");
            let payload = URL_SAFE_NO_PAD
                .decode(msg.split_once('.').unwrap().1)
                .unwrap();
            let c: Claims = serde_json::from_slice(&payload).unwrap();
            assert!(c.iss == ISS && c.aud == AUD);
            valid.insert(token.to_owned(), Arc::new(c));
        }
    }
    let check = move |token: &str| -> Option<Arc<Claims>> {
        let c = valid.get(token)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        (now < c.exp).then(|| c.clone())
    };
    peer_servers::serve(move || {
        Box::pin(async move {
            Router::new()
                .route(
                    "/hello",
                    get(|Extension(c): Extension<Arc<Claims>>| async move {
                        peer_servers::hello(&c.sub)
                    }),
                )
                .layer(CheckLayer(Arc::new(check)))
        })
    });
}
