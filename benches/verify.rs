//! Verification cost, as ratios against baselines measured in the same run.
//!
//! Per algorithm (RS256, ES256, EdDSA):
//! - `floor`: aws-lc-rs signature check with a pre-parsed key (the crypto floor);
//! - `jsonwebtoken_decode`: bare `jsonwebtoken::decode` (re-parses key and claims per call);
//! - `verify_uncached`: `Verifier::try_verify` with the token cache off;
//! - `layer_uncached`: `JwtAuthLayer` + `service_fn`, one request, cache off;
//! - `verify_cached`: `Verifier::try_verify`, cache on (hit).
//!
//! Run with `cargo bench --bench verify`.

#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use serde_json::{Value, json};
use tower::{Layer, Service, service_fn};
use tower_bearer::jwks::{Algorithm, KeySet};
use tower_bearer::signing::SigningKey;
use tower_bearer::{IssuerConfig, JwtAuthLayer, Verifier};

const ISS: &str = "https://auth.example";
const AUD: &str = "orders";

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// Polls a future that completes without waiting (the fast path) to its end.
fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("fast path must not wait"),
    }
}

fn bench_alg(c: &mut Criterion, alg: Algorithm) {
    let key = SigningKey::generate(alg).unwrap();
    let jwk = key.public_jwk();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "uid": "1001", "tenant": "acme",
        "scope": "orders.read orders.write", "roles": ["user", "admin"],
        "permissions": ["order:read"], "client_id": "web", "iat": now, "exp": now + 3600,
        "jti": "d3b07384"
    });
    let token = key.sign(&claims).unwrap();
    let (message, sig) = token.rsplit_once('.').unwrap();
    let sig = b64d(sig);

    let floor_key = match alg {
        Algorithm::RS256 => RsaPublicKeyComponents {
            n: b64d(jwk["n"].as_str().unwrap()),
            e: b64d(jwk["e"].as_str().unwrap()),
        }
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .unwrap(),
        Algorithm::ES256 => {
            let mut p = vec![4u8];
            p.extend(b64d(jwk["x"].as_str().unwrap()));
            p.extend(b64d(jwk["y"].as_str().unwrap()));
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p).unwrap()
        }
        _ => ParsedPublicKey::new(&signature::ED25519, b64d(jwk["x"].as_str().unwrap())).unwrap(),
    };
    let jwt_key = match alg {
        Algorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap(),
        Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap(),
        )
        .unwrap(),
        _ => jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap(),
    };
    let jwt_alg: jsonwebtoken::Algorithm = alg.as_str().parse().unwrap();
    let mut validation = jsonwebtoken::Validation::new(jwt_alg);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[ISS]);

    let keys = || KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[alg]).unwrap();
    let verifier = |cache: usize| {
        Verifier::builder()
            .issuer(IssuerConfig::static_keys(ISS, keys()))
            .audience(AUD)
            .token_cache(cache)
            .build()
            .unwrap()
    };
    let uncached = verifier(0);
    let cached = verifier(1000);
    assert!(uncached.try_verify(&token).is_ok());
    assert!(cached.try_verify(&token).is_ok());
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    jsonwebtoken::decode::<Value>(&token, &jwt_key, &validation).unwrap();

    let mut svc =
        JwtAuthLayer::new(uncached.clone()).layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
    let header = format!("Bearer {token}");

    let mut g = c.benchmark_group(alg.as_str());
    g.bench_function("floor", |b| {
        b.iter(|| {
            floor_key
                .verify_sig(black_box(message.as_bytes()), black_box(&sig))
                .unwrap()
        })
    });
    g.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| jsonwebtoken::decode::<Value>(black_box(&token), &jwt_key, &validation).unwrap())
    });
    g.bench_function("verify_uncached", |b| {
        b.iter(|| uncached.try_verify(black_box(&token)).unwrap())
    });
    g.bench_function("layer_uncached", |b| {
        b.iter(|| {
            let req = Request::builder()
                .header("authorization", header.as_str())
                .body(())
                .unwrap();
            let res = now_or_never(svc.call(req)).unwrap();
            assert_eq!(res.status(), 200);
        })
    });
    g.bench_function("verify_cached", |b| {
        b.iter(|| cached.try_verify(black_box(&token)).unwrap())
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        bench_alg(c, alg);
    }
}

criterion_group!(verify, benches);
criterion_main!(verify);
