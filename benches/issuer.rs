//! `client_credentials` issuance against the signing floor, measured in the same run.
//!
//! Per algorithm (RS256, ES256, EdDSA):
//! - `sign_floor`: `SigningKey::sign` of a claims set of the same size (aws-lc-rs signing plus
//!   JSON and base64url: what any issuer pays per token);
//! - `issue`: one `POST /oauth2/token` through the issuer's axum router in-process (form
//!   parsing, `client_secret_basic` with the verified-secret cache, scope/audience checks,
//!   claims, signing, JSON response), on a current-thread runtime.
//!
//! Run with `cargo bench --features issuer --bench issuer`. The issuance rate is
//! `1 / issue`, the ratio `sign_floor / issue`.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use tower::{Service, ServiceExt};
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::password::PasswordHash;
use tower_bearer::issuer::AuthorizationServer;
use tower_bearer::jwks::Algorithm;

/// bcrypt (cost 4) of `correct horse`: test-only.
const HASH: &str = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let auth = format!("Basic {}", STANDARD.encode("orders:correct horse"));
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let server = rt.block_on(async {
            AuthorizationServer::builder("https://auth.example")
                .algorithm(alg)
                .audience(["eon-internal"])
                .client(
                    RegisteredClient::new("orders", AuthMethod::ClientSecretBasic)
                        .with_secret_hash(PasswordHash::parse(HASH).unwrap())
                        .with_grant_types([GrantType::ClientCredentials])
                        .with_scopes(["internal-service"])
                        .with_audiences(["service-system"]),
                )
                .build()
                .await
                .unwrap()
        });
        let key = server.keys().signing_key();
        let claims = json!({
            "iss": "https://auth.example", "sub": "orders", "aud": "service-system",
            "exp": 1_900_000_300u64, "iat": 1_900_000_000u64, "jti": "AAAAAAAAAAAAAAAAAAAAAA",
            "client_id": "orders", "scope": "internal-service", "gty": "client-credentials",
        });
        let mut group = c.benchmark_group(format!("issuer/{alg}"));
        group.bench_function("sign_floor", |b| {
            b.iter(|| black_box(key.sign(black_box(&claims)).unwrap()));
        });
        let mut router = server.router();
        let request = || {
            http::Request::post("/oauth2/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", &auth)
                .body(Body::from(
                    "grant_type=client_credentials&scope=internal-service&audience=service-system",
                ))
                .unwrap()
        };
        // Warm the verified-secret cache (one bcrypt check).
        let first = rt.block_on(router.clone().oneshot(request())).unwrap();
        assert_eq!(first.status(), 200);
        group.bench_function("issue", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let svc = ServiceExt::<http::Request<Body>>::ready(&mut router)
                        .await
                        .unwrap();
                    let res = svc.call(request()).await.unwrap();
                    assert_eq!(res.status(), 200);
                    black_box(axum::body::to_bytes(res.into_body(), 16_384).await.unwrap())
                })
            });
        });
        group.finish();
    }
}

criterion_group! {
    name = issuer;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = benches
}
criterion_main!(issuer);
