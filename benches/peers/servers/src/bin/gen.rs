//! Writes the shared JWKS and tokens (RS256-2048) into DATA_DIR (argument 1):
//! `jwks.json`, `token.txt` (one valid token), `tokens.txt` (1,000 valid tokens, one a line),
//! and `gate-*.txt`: tokens every contender must refuse.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use peer_servers::{AUD, ISS};
use serde_json::{json, Value};
use tower_bearer::jwks::Algorithm;
use tower_bearer::signing::SigningKey;

fn claims(now: u64, i: usize) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": format!("user-{i}"), "iat": now, "exp": now + 86_400,
        "scope": "orders.read orders.write", "roles": ["user"],
    })
}

fn main() {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/peers".into()),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let stranger = SigningKey::generate(Algorithm::RS256).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(dir.join("jwks.json"), key.jwks().to_string()).unwrap();
    let tokens: Vec<String> = (0..1000)
        .map(|i| key.sign(&claims(now, i)).unwrap())
        .collect();
    std::fs::write(dir.join("token.txt"), &tokens[0]).unwrap();
    std::fs::write(dir.join("tokens.txt"), tokens.join("\n") + "\n").unwrap();

    let with = |patch: Value| {
        let mut c = claims(now, 0);
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        key.sign(&c).unwrap()
    };
    let mut gate: Vec<(&str, String)> = vec![
        ("wrong-iss", with(json!({"iss": "https://evil.peers.test"}))),
        ("wrong-aud", with(json!({"aud": "other"}))),
        (
            "expired",
            with(json!({"iat": now - 7200, "exp": now - 3600})),
        ),
        ("unknown-kid", stranger.sign(&claims(now, 0)).unwrap()),
    ];
    // Bad signature: one byte of the signature flipped.
    let (msg, sig) = tokens[0].rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[100] ^= 1;
    gate.push((
        "bad-signature",
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(raw)),
    ));
    // alg none: the valid payload, an unsecured header, no signature.
    let payload = msg.split_once('.').unwrap().1;
    let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    gate.push(("alg-none", format!("{none}.{payload}.")));
    for (name, token) in gate {
        std::fs::write(dir.join(format!("gate-{name}.txt")), token).unwrap();
    }
    eprintln!("wrote {}", dir.display());
}
