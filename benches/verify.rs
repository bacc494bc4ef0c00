//! Verification cost, as ratios against baselines measured in the same run.
//!
//! Per algorithm (RS256, ES256, EdDSA):
//! - `floor`: aws-lc-rs signature check with a pre-parsed key (the crypto floor);
//! - `jsonwebtoken_decode`: bare `jsonwebtoken::decode` (re-parses key and claims per call);
//! - `verify_uncached`: `Verifier::try_verify` with the token cache off;
//! - `layer_uncached`: `JwtAuthLayer` + `service_fn`, one request, cache off;
//! - `verify_cached`: `Verifier::try_verify`, cache on (hit).
//!
//! Run with `cargo bench --bench verify`. The target for uncached verification is
//! `verify_uncached - floor` (same key, message and run).
//!
//! Times are the benchmark thread's CPU time (`/proc/thread-self/schedstat`, nanoseconds), not
//! wall time: the machines these run on are shared, and wall time there mostly measures the other
//! jobs. Every path runs on this one thread, so CPU time is its whole cost. On a quiet machine
//! `VERIFY_BENCH_CLOCK=wall` measures wall time instead. Compare within one run.
//!
//! Profiling driver (no criterion): `VERIFY_PROFILE=<alg>:<what>:<n>` with `alg` one of
//! `RS256 ES256 EdDSA`, `what` one of `floor verify layer cached`, runs the setup and a warm-up,
//! then `n` iterations inside `measure`, for `perf record` or instruction counts under
//! callgrind: `VERIFY_PROFILE=RS256:verify:1000 valgrind --tool=callgrind
//! --toggle-collect='verify::measure*' target/release/deps/verify-*`; instructions per call =
//! total / n.

#![allow(missing_docs)]

#[path = "support/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::Timing;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use criterion::Criterion;
use criterion::measurement::Measurement;
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

/// One algorithm's key, token, verifiers and baselines.
struct Fixture {
    token: String,
    /// `b64(header).b64(claims)`: what the signature covers.
    message: String,
    sig: Vec<u8>,
    floor_key: ParsedPublicKey,
    jwt_key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    uncached: Verifier,
    cached: Verifier,
}

fn fixture(alg: Algorithm) -> Fixture {
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
    let (message, sig) = (message.to_owned(), b64d(sig));

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
    Fixture {
        token,
        message,
        sig,
        floor_key,
        jwt_key,
        validation,
        uncached,
        cached,
    }
}

/// The layer over a `service_fn` answering 200, cache off.
fn layer(
    f: &Fixture,
) -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + use<> {
    JwtAuthLayer::new(f.uncached.clone()).layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }))
}

/// One request with the token through the layer; its status.
fn layer_call<S>(svc: &mut S, header: &str) -> u16
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let req = Request::builder()
        .header("authorization", header)
        .body(())
        .unwrap();
    now_or_never(svc.call(req)).unwrap().status().as_u16()
}

fn bench_alg<M: Measurement>(c: &mut Criterion<M>, alg: Algorithm) {
    let f = fixture(alg);
    let mut svc = layer(&f);
    let header = format!("Bearer {}", f.token);

    let mut g = c.benchmark_group(alg.as_str());
    g.bench_function("floor", |b| {
        b.iter(|| {
            f.floor_key
                .verify_sig(black_box(f.message.as_bytes()), black_box(&f.sig))
                .unwrap()
        })
    });
    g.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Value>(black_box(&f.token), &f.jwt_key, &f.validation).unwrap()
        })
    });
    g.bench_function("verify_uncached", |b| {
        b.iter(|| f.uncached.try_verify(black_box(&f.token)).unwrap())
    });
    g.bench_function("layer_uncached", |b| {
        b.iter(|| assert_eq!(layer_call(&mut svc, &header), 200))
    });
    g.bench_function("verify_cached", |b| {
        b.iter(|| f.cached.try_verify(black_box(&f.token)).unwrap())
    });
    g.finish();
}

fn benches<M: Measurement>(c: &mut Criterion<M>) {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        bench_alg(c, alg);
    }
}

/// `VERIFY_PROFILE=<alg>:<floor|verify|layer|cached>:<n>`: see the module docs.
fn profile(spec: &str) {
    let mut parts = spec.split(':');
    let (Some(alg), Some(what), Some(n), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("VERIFY_PROFILE=<alg>:<floor|verify|layer|cached>:<n>, got `{spec}`");
    };
    let alg = match alg {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => panic!("unknown algorithm `{other}`"),
    };
    let n: u64 = n.parse().expect("iteration count");
    let f = fixture(alg);
    let mut svc = layer(&f);
    let header = format!("Bearer {}", f.token);
    // Warm-up: every path once.
    f.floor_key
        .verify_sig(f.message.as_bytes(), &f.sig)
        .unwrap();
    f.uncached.try_verify(&f.token).unwrap();
    f.cached.try_verify(&f.token).unwrap();
    assert_eq!(layer_call(&mut svc, &header), 200);
    match what {
        "floor" => measure(n, || {
            f.floor_key
                .verify_sig(black_box(f.message.as_bytes()), black_box(&f.sig))
                .unwrap()
        }),
        "verify" => measure(n, || {
            black_box(f.uncached.try_verify(black_box(&f.token)).unwrap());
        }),
        "layer" => measure(n, || {
            assert_eq!(layer_call(&mut svc, black_box(&header)), 200)
        }),
        "cached" => measure(n, || {
            black_box(f.cached.try_verify(black_box(&f.token)).unwrap());
        }),
        other => panic!("unknown mode `{other}`"),
    }
}

/// The measured loop of the profiling driver: under callgrind,
/// `--toggle-collect='verify::measure*'` counts only this.
#[inline(never)]
fn measure(n: u64, mut call: impl FnMut()) {
    for _ in 0..n {
        call();
    }
}

fn main() {
    if let Ok(spec) = std::env::var("VERIFY_PROFILE") {
        profile(&spec);
        return;
    }
    thread_cpu::run(
        "VERIFY_BENCH_CLOCK",
        Timing {
            warm_up: Duration::from_secs(1),
            measurement: Duration::from_secs(3),
            samples: 100,
        },
        benches,
        benches,
    );
}
