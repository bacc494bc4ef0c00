//! A target for load runs: the same axum handler served three ways, to measure what the
//! authentication layer costs under real HTTP load (`wrk`, `oha`).
//!
//! Run with `cargo run --release --example load_target -- [SECONDS]`.
//!
//! Prints the three base URLs and a valid bearer token (an ES256 key generated at start,
//! `exp` one hour ahead), then serves until SECONDS (default 3600) have passed:
//! - `plain`: no layer (the baseline);
//! - `auth`: `JwtAuthLayer` with the verified-token cache (the default);
//! - `auth-nocache`: `JwtAuthLayer` with the cache off (every request verifies the signature).
//!
//! ```text
//! wrk -t2 -c32 -d10s -H "authorization: Bearer $TOKEN" http://127.0.0.1:PORT/hello
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tower_bearer::jwks::{Algorithm, KeySet};
use tower_bearer::signing::SigningKey;
use tower_bearer::{CurrentUser, IssuerConfig, JwtAuthLayer, Verifier};

async fn hello(user: Option<CurrentUser>) -> String {
    match user {
        Some(u) => format!("hello {}", u.subject().unwrap_or("?")),
        None => "hello".to_owned(),
    }
}

async fn hello_plain() -> &'static str {
    "hello"
}

fn verifier(key: &SigningKey, cache: usize) -> Result<Verifier, Box<dyn std::error::Error>> {
    let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::ES256])?;
    Ok(Verifier::builder()
        .issuer(IssuerConfig::static_keys("https://auth.load.test", keys))
        .audience("load")
        .token_cache(cache)
        .build()?)
}

async fn serve(name: &str, app: Router) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{name:<13} http://{}/hello", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3600);
    let key = SigningKey::generate(Algorithm::ES256)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let token = key.sign(&json!({
        "iss": "https://auth.load.test", "aud": "load", "sub": "alice", "uid": "1001",
        "scope": "orders.read", "roles": ["user"], "iat": now, "exp": now + 3600,
    }))?;
    serve("plain", Router::new().route("/hello", get(hello_plain))).await?;
    serve(
        "auth",
        Router::new()
            .route("/hello", get(hello))
            .layer(JwtAuthLayer::new(verifier(&key, 100_000)?)),
    )
    .await?;
    serve(
        "auth-nocache",
        Router::new()
            .route("/hello", get(hello))
            .layer(JwtAuthLayer::new(verifier(&key, 0)?)),
    )
    .await?;
    println!("TOKEN={token}");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(())
}
