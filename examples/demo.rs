//! The tower-bearer walkthrough, everything in one process.
//!
//! Run with `cargo run --example demo`.
//!
//! Starts an identity provider (a JWKS endpoint serving a freshly generated key) and an axum
//! service protected by `JwtAuthLayer` on 127.0.0.1, then calls the service with a valid token,
//! no token, an expired token, a token for another audience and a forged signature, printing
//! each status and `WWW-Authenticate`. Exits non-zero if any answer is not the expected one.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tower_bearer::jwks::Algorithm;
use tower_bearer::signing::SigningKey;
use tower_bearer::{CurrentUser, IssuerConfig, JwtAuthLayer, Verifier};

const AUDIENCE: &str = "service-system";

/// The protected service.
fn app(verifier: Verifier) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .layer(JwtAuthLayer::new(verifier).with_error_description(true))
}

async fn me(user: CurrentUser) -> Json<Value> {
    Json(json!({
        "sub": user.subject(),
        "user_id": user.user_id(),
        "tenant": user.tenant(),
        "roles": user.roles(),
        "scopes": user.scopes(),
    }))
}

/// The identity provider's JWKS endpoint.
fn idp(jwks: Value) -> Router {
    Router::new().route("/oauth2/jwks", get(move || async move { Json(jwks) }))
}

async fn serve(router: Router) -> Result<String, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("server error: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::generate(Algorithm::RS256)?;
    let idp_url = serve(idp(key.jwks())).await?;
    let issuer = idp_url.clone();
    println!(
        "identity provider: {idp_url}/oauth2/jwks (kid {})",
        key.kid()
    );

    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(
            &issuer,
            format!("{idp_url}/oauth2/jwks"),
        ))
        .audience(AUDIENCE)
        .build()?;
    let api = serve(app(verifier)).await?;
    println!("protected service: {api}/api/me\n");

    let claims = |aud: &str, exp: u64| {
        json!({
            "iss": issuer, "aud": aud, "sub": "alice", "uid": "1001", "tenant": "acme",
            "roles": ["user"], "scope": "orders.read", "iat": now(), "exp": exp,
        })
    };
    let valid = key.sign(&claims(AUDIENCE, now() + 300))?;
    let expired = key.sign(&claims(AUDIENCE, now() - 600))?;
    let other_audience = key.sign(&claims("payments", now() + 300))?;
    let forged = {
        let attacker = SigningKey::generate(Algorithm::RS256)?;
        let t = attacker.sign(&claims(AUDIENCE, now() + 300))?;
        // Keep the attacker's signature but claim the real key's kid.
        let header = json!({"alg": "RS256", "kid": key.kid(), "typ": "JWT"});
        let mut parts = t.splitn(2, '.');
        let _ = parts.next();
        let rest = parts.next().unwrap_or_default();
        let encoded = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            header.to_string(),
        );
        format!("{encoded}.{rest}")
    };

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let cases: [(&str, Option<&str>, u16); 5] = [
        ("valid token", Some(&valid), 200),
        ("missing token", None, 401),
        ("expired token", Some(&expired), 401),
        ("wrong audience", Some(&other_audience), 401),
        ("forged signature", Some(&forged), 401),
    ];
    let mut failures = 0;
    for (name, token, expected) in cases {
        let mut req = http::Request::get(format!("{api}/api/me"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = client.request(req.body(Full::new(Bytes::new()))?).await?;
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = res.into_body().collect().await?.to_bytes();
        let mark = if status == expected {
            "ok"
        } else {
            "UNEXPECTED"
        };
        println!("{name:<17} status {status}  www-authenticate: {challenge}  [{mark}]");
        if status == 200 {
            println!("{:<17} body {}", "", String::from_utf8_lossy(&body));
        }
        if status != expected {
            failures += 1;
        }
    }
    if failures > 0 {
        return Err(format!("{failures} unexpected answers").into());
    }
    println!("\nall answers as expected");
    Ok(())
}
