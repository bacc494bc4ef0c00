//! The `internal_call` example against a real token endpoint and a real protected service.

mod common;
#[path = "../examples/internal_call.rs"]
#[allow(dead_code, unreachable_pub)]
mod internal_call;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use common::*;
use tower_bearer::authz::{AccessRules, InternalOnly};
use tower_bearer::jwks::{Algorithm, KeySet};
use tower_bearer::signing::SigningKey;
use tower_bearer::stack::SecurityLayer;
use tower_bearer::{IssuerConfig, Verifier};

const ISS: &str = "https://auth.test";

/// service-system: `/internal/**` needs the internal scope and a service token.
async fn service_system(key: &SigningKey) -> String {
    let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::ES256]).unwrap();
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::static_keys(ISS, keys))
        .audience("service-system")
        .build()
        .unwrap();
    let rules = AccessRules::builder()
        .internal_only(InternalOnly::new(["/internal/**"]))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/internal/ping", get(|| async { "pong" }))
        .layer(SecurityLayer::new(verifier, rules));
    serve(app).await
}

fn yaml(token_url: &str, secret: &str, extra: &str) -> String {
    format!(
        r#"
security:
  internal-token:
    enabled: true
    client-id: service-order
    client-secret: "{secret}"
    token-url: {token_url}
    scope: internal-service
    audience: service-system
    refresh-ahead-seconds: 60
{extra}"#
    )
}

fn opts(url: &str, requests: usize, concurrency: usize) -> internal_call::Options {
    internal_call::parse_args(
        [
            "--config",
            "unused.yaml",
            "--url",
            url,
            "--requests",
            &requests.to_string(),
            "--concurrency",
            &concurrency.to_string(),
        ]
        .map(String::from),
    )
    .unwrap()
}

#[tokio::test]
async fn many_requests_one_token() {
    let key = Arc::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let te = token_endpoint(key.clone(), ISS.into(), "service-order", "s3cret:%&").await;
    let svc = service_system(&key).await;
    let report = internal_call::run(
        &opts(&format!("{svc}/internal/ping"), 200, 16),
        &yaml(&te.url, "s3cret:%&", ""),
    )
    .await
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.statuses.get(&200),
        Some(&200),
        "{:?}",
        report.statuses
    );
    assert_eq!(report.token_requests, 1);
    assert_eq!(te.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_failure_says_what_is_wrong() {
    let key = Arc::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let te = token_endpoint(key.clone(), ISS.into(), "service-order", "right").await;
    let svc = service_system(&key).await;
    let url = format!("{svc}/internal/ping");

    // Wrong secret: invalid_client, not retried.
    let report = internal_call::run(&opts(&url, 3, 1), &yaml(&te.url, "wrong", ""))
        .await
        .unwrap();
    let errors: Vec<_> = report.errors.keys().collect();
    assert!(
        errors.iter().any(|e| e.contains("invalid_client")),
        "{errors:?}"
    );
    assert!(report.statuses.is_empty());
    // invalid_client is permanent: each of the 3 calls made exactly one attempt, no retries.
    assert_eq!(report.token_requests, 3);

    // Unreachable token URL.
    let dead = format!("http://{}/oauth2/token", reserve_addr());
    let report = internal_call::run(&opts(&url, 1, 1), &yaml(&dead, "right", ""))
        .await
        .unwrap();
    let errors: Vec<_> = report.errors.keys().collect();
    assert!(
        errors.iter().any(|e| e.to_lowercase().contains("connect")),
        "{errors:?}"
    );

    // A bad YAML key is named.
    let err = internal_call::run(
        &opts(&url, 1, 1),
        &yaml(&te.url, "right", "    scopes: x\n"),
    )
    .await
    .unwrap_err();
    assert!(err.contains("scopes"), "{err}");

    // Bad arguments.
    assert!(internal_call::parse_args(["--url".to_owned()]).is_err());
    assert!(
        internal_call::parse_args(["--config", "a", "--url", "ftp://x"].map(String::from)).is_err()
    );
}

/// The seeds' `internal-token` block, verbatim (only the port is this test's).
const SEED_BLOCK: &str = r#"
security:
  internal-token:
    enabled: true
    client-id: internal-service-client
    client-secret: ${INTERNAL_CLIENT_SECRET}
    token-url: http://127.0.0.1:9000/oauth2/token
    scope: internal-service
    cache-expire-seconds: 540
    refresh-ahead-seconds: 60
    audience: service-system
    grant-type: client_credentials
"#;

#[tokio::test]
async fn seed_internal_token_block_builds_a_working_manager() {
    let key = Arc::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let te = token_endpoint(
        key.clone(),
        ISS.into(),
        "internal-service-client",
        "seed-s3cret",
    )
    .await;
    let yaml = SEED_BLOCK.replace("http://127.0.0.1:9000/oauth2/token", &te.url);
    let env = |name: &str| (name == "INTERNAL_CLIENT_SECRET").then(|| "seed-s3cret".to_owned());
    let cfg = tower_bearer::config::SecurityConfig::from_yaml_with_env(&yaml, env).unwrap();
    let manager = cfg.token_manager().unwrap();
    let header = manager.client_token("default").await.unwrap();
    assert_eq!(te.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The token opens the internal-only path of service-system.
    let target = service_system(&key).await;
    let token = header.to_str().unwrap().strip_prefix("Bearer ").unwrap();
    let reply = get_bearer(&format!("{target}/internal/ping"), token).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "pong"));
}

/// `cache-expire-seconds` bounds reuse below the token's real lifetime (300 s here), and
/// refresh ahead counts back from that bound.
#[tokio::test]
async fn cache_expire_seconds_forces_a_refetch() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;
    use tower_bearer::clock::ManualClock;

    let key = Arc::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let te = token_endpoint(
        key.clone(),
        ISS.into(),
        "internal-service-client",
        "seed-s3cret",
    )
    .await;
    let yaml = SEED_BLOCK
        .replace("http://127.0.0.1:9000/oauth2/token", &te.url)
        .replace("cache-expire-seconds: 540", "cache-expire-seconds: 100");
    let env = |name: &str| (name == "INTERNAL_CLIENT_SECRET").then(|| "seed-s3cret".to_owned());
    let cfg = tower_bearer::config::SecurityConfig::from_yaml_with_env(&yaml, env).unwrap();
    let clock = ManualClock::new(now());
    let manager = cfg
        .token_manager_builder()
        .unwrap()
        .clock(Arc::new(clock.clone()))
        .refresh_jitter(0.0)
        .build()
        .unwrap();
    let first = manager.client_token("default").await.unwrap();
    assert_eq!(te.hits.load(SeqCst), 1);
    // Refresh ahead: min(60, 100 / 2) = 50 s before the bound, so nothing before +50 s.
    clock.advance(Duration::from_secs(45));
    assert_eq!(manager.client_token("default").await.unwrap(), first);
    assert_eq!(te.hits.load(SeqCst), 1);
    // Past +50 s: the cached token is served while one background refresh runs.
    clock.advance(Duration::from_secs(6));
    manager.client_token("default").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while te.hits.load(SeqCst) < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(te.hits.load(SeqCst), 2);
    // The endpoint has answered; wait until the manager has installed that answer (its bound
    // is computed from the clock when the answer arrives: advancing the clock before that
    // would move the bound too).
    while manager.client_token("default").await.unwrap() == first
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(manager.client_token("default").await.unwrap(), first);
    // The refreshed token (fetched at +51 s) is bounded at +151 s, far below its real
    // 300 s lifetime: at +152 s it is not used any more and the manager fetches again.
    clock.advance(Duration::from_secs(101));
    manager.client_token("default").await.unwrap();
    assert_eq!(te.hits.load(SeqCst), 3);
}
