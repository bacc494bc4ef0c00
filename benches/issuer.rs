//! `client_credentials` issuance against the signing floor, measured in the same run.
//!
//! Per algorithm (RS256, ES256, EdDSA):
//! - `sign_floor`: the aws-lc-rs signature alone (`SigningKey::sign_bytes` with the issuer's
//!   own key) of a JWS signing input of the same size as an issued token's (the header and
//!   claims below, base64url-encoded once, outside the loop): the floor of the issue's target;
//! - `sign_jws`: for information, `SigningKey::sign` of the same claims as a `serde_json`
//!   value (JSON, base64url and the signature: a minimal hand-rolled JWT issuer);
//! - `issue`: one `POST /oauth2/token` through the issuer's axum router in-process (form
//!   parsing, `client_secret_basic` with the verified-secret cache, the per-client and
//!   per-address limiters (the request carries `ConnectInfo`, as under
//!   `into_make_service_with_connect_info`), scope/audience checks, claims, signing, audit,
//!   JSON response), on a current-thread runtime. It measures the server as it sees a request
//!   once hyper has parsed it: from a built `http::Request` (headers, `ConnectInfo`, a
//!   `Full` body) to the finished response, its status checked and its body's one data frame
//!   taken and dropped inside the timed part (as a server drops it once written; until #8's
//!   seventh pass the bodies were kept until criterion's batch ended). The requests are built
//!   outside the timed region (criterion's `iter_batched`, a fresh request per iteration), as
//!   hyper builds them outside the server: until #8's
//!   fifth pass (iss15) `issue` also timed building the request with
//!   `http::request::Builder` and collecting the body with `to_bytes` (~3.7k instructions per
//!   issuance, none of it the server's; natively within the run-to-run noise, under 0.5 µs).
//!   Since #8's sixth pass (iss17) the runtime is entered once for the whole run and each
//!   request's future is polled in place with a no-op waker (`Waker::noop`), as hyper's
//!   connection task polls the service future when a request arrives; were it pending (it
//!   never is once the verified-secret cache is warm: nothing on that path waits), it would be
//!   driven to completion by `block_on`, and the profile driver asserts that no issuance took
//!   that fallback. Before, every request paid `block_on`'s own entry into the runtime (its
//!   context, its park/unpark bookkeeping: ~1k instructions and ~90 I1 misses per EdDSA
//!   issuance under callgrind, none of them the server's).
//!   The end-to-end number over HTTP/1.1 (hyper's parsing and writing, the socket) is
//!   `scripts/issuer_load.sh`'s.
//!
//! Run with `cargo bench --features issuer --bench issuer`. The issuance rate is
//! `1 / issue`, the ratio `sign_floor / issue`.
//!
//! Times are the benchmark thread's CPU time (`/proc/thread-self/schedstat`, nanoseconds), not
//! wall time: the machines these run on are shared, and wall time there mostly measures the
//! other jobs (time slices lost to them land in whichever function happens to be running).
//! Both paths run on this one thread (a current-thread runtime, no spawned work once the
//! verified-secret cache is warm), so CPU time is the whole cost per issuance. On a quiet
//! machine `ISSUER_BENCH_CLOCK=wall` measures wall time instead.
//!
//! Interleaved ratio (no criterion): `ISSUER_PROFILE=<alg>:ratio:<rounds>` times `rounds`
//! rounds of 200 floor signatures and 200 issuances back to back (thread CPU time, the order
//! alternating) and prints the medians and the median of the rounds' `floor / issue`: on a
//! virtual machine whose speed drifts by several percent from second to second (other guests
//! on the host), both sides of a round run under the same conditions, where criterion times
//! `sign_floor` and `issue` seconds apart. `ISSUER_PROFILE=EdDSA:ratio:1000` takes ~6 s.
//!
//! Profiling driver (no criterion): `ISSUER_PROFILE=<alg>:<what>:<n>` with `alg` one of
//! `RS256 ES256 EdDSA`, `what` one of `issue floor jws`, runs the setup and one warm-up, then `n`
//! iterations, for instruction counts under callgrind:
//! `ISSUER_PROFILE=ES256:issue:1000 valgrind --tool=callgrind target/release/deps/issuer-*`;
//! instructions per issuance = (total(n) - total(0)) / n. For `issue` the `n` requests are
//! built before the loop; that building is in the total all the same (~5k instructions per
//! request) unless only the server is collected: add `--collect-atstart=no
//! --toggle-collect='issuer::serve*'` (`serve` is the timed part of `issue`).

#![allow(missing_docs)]

#[path = "support/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::Timing;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::measurement::Measurement;
use criterion::{BatchSize, Criterion};
use http_body_util::BodyExt as _;
use serde_json::json;
use tower::{Service, ServiceExt};
use tower_bearer::issuer::AuthorizationServer;
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::password::PasswordHash;
use tower_bearer::jwks::Algorithm;
use tower_bearer::signing::SigningKey;

/// bcrypt (cost 4) of `correct horse`: test-only.
const HASH: &str = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";

/// One issuer with one `client_secret_basic` client, its router and the request it answers.
struct Fixture {
    server: AuthorizationServer,
    /// Claims the size of an issued token's.
    claims: serde_json::Value,
    /// `b64(header).b64(claims)`: a signing input the size of an issued token's.
    input: Vec<u8>,
}

fn fixture(rt: &tokio::runtime::Runtime, alg: Algorithm) -> Fixture {
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
    let claims = json!({
        "iss": "https://auth.example", "sub": "orders", "aud": "service-system",
        "exp": 1_900_000_300u64, "iat": 1_900_000_000u64, "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        "client_id": "orders", "scope": "internal-service", "gty": "client-credentials",
    });
    let key = server.keys().signing_key();
    let jws = key.sign(&claims).unwrap();
    let input = jws.as_bytes()[..jws.rfind('.').unwrap()].to_vec();
    Fixture {
        server,
        claims,
        input,
    }
}

/// The floor: the aws-lc-rs signature of a same-size signing input.
fn floor(key: &SigningKey, input: &[u8]) -> Vec<u8> {
    key.sign_bytes(black_box(input)).unwrap()
}

fn request(auth: &str) -> http::Request<Body> {
    http::Request::post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth)
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))))
        .body(Body::from(
            "grant_type=client_credentials&scope=internal-service&audience=service-system",
        ))
        .unwrap()
}

fn basic() -> String {
    format!("Basic {}", STANDARD.encode("orders:correct horse"))
}

/// One `POST /oauth2/token` request through the router; the response body (a `Full` body:
/// its one data frame).
async fn issue(router: &mut axum::Router, req: http::Request<Body>) -> axum::body::Bytes {
    let svc = ServiceExt::<http::Request<Body>>::ready(router)
        .await
        .unwrap();
    let res = svc.call(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(http_body::Body::is_end_stream(&body));
    data
}

/// How many `serve` calls found the service future pending on its first poll and fell back to
/// `block_on` (0 on the cached path: nothing in it waits; the profile driver asserts it).
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// The timed part of `issue`: one built request answered (a named function, so callgrind can
/// collect it alone: see the module docs). The caller has entered `rt` (its handle is current
/// for the whole run); the request's future is polled once with a no-op waker, as a server's
/// connection task polls it when the request arrives, and only if it is pending is it driven
/// to completion by `block_on` (counted in [`FALLBACKS`]).
#[inline(never)]
fn serve(
    rt: &tokio::runtime::Runtime,
    router: &mut axum::Router,
    req: http::Request<Body>,
) -> axum::body::Bytes {
    let mut fut = std::pin::pin!(issue(router, req));
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(data) => data,
        Poll::Pending => {
            FALLBACKS.fetch_add(1, Ordering::Relaxed);
            rt.block_on(fut)
        }
    }
}

fn benches<M: Measurement>(c: &mut Criterion<M>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Entered once for the whole run: `serve` polls on this thread with the handle current.
    let _entered = rt.enter();
    let auth = basic();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let Fixture {
            server,
            claims,
            input,
        } = fixture(&rt, alg);
        let key = server.keys().signing_key();
        let mut group = c.benchmark_group(format!("issuer/{alg}"));
        group.bench_function("sign_floor", |b| {
            b.iter(|| black_box(floor(&key, &input)));
        });
        group.bench_function("sign_jws", |b| {
            b.iter(|| black_box(key.sign(black_box(&claims)).unwrap()));
        });
        let mut router = server.router();
        // Warm the verified-secret cache (one bcrypt check).
        serve(&rt, &mut router, request(&auth));
        group.bench_function("issue", |b| {
            b.iter_batched(
                || request(&auth),
                |req| serve(&rt, &mut router, req).len(),
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

/// The `ratio` mode: `rounds` rounds, each timing a block of [`BLOCK`] floor signatures and a
/// block of [`BLOCK`] issuances back to back (thread CPU time; the order alternates from round
/// to round; each block's requests built before it, untimed), then the medians per operation
/// and the median of the rounds' `floor / issue` ratios. On a machine whose speed drifts
/// (other virtual machines on the host), both sides of one round see the same conditions,
/// where criterion times them seconds apart.
fn ratio(
    rt: &tokio::runtime::Runtime,
    router: &mut axum::Router,
    auth: &str,
    key: &SigningKey,
    input: &[u8],
    rounds: u64,
) {
    const BLOCK: usize = 200;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut floors, mut issues, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        let requests: Vec<_> = (0..BLOCK).map(|_| request(auth)).collect();
        let time_floor = || {
            let start = thread_cpu::thread_cpu_ns();
            for _ in 0..BLOCK {
                black_box(floor(key, input));
            }
            (thread_cpu::thread_cpu_ns() - start) as f64 / BLOCK as f64 / 1000.0
        };
        let (f, i) = if round % 2 == 0 {
            let f = time_floor();
            let start = thread_cpu::thread_cpu_ns();
            for req in requests {
                black_box(serve(rt, router, req));
            }
            (
                f,
                (thread_cpu::thread_cpu_ns() - start) as f64 / BLOCK as f64 / 1000.0,
            )
        } else {
            let start = thread_cpu::thread_cpu_ns();
            for req in requests {
                black_box(serve(rt, router, req));
            }
            let i = (thread_cpu::thread_cpu_ns() - start) as f64 / BLOCK as f64 / 1000.0;
            (time_floor(), i)
        };
        floors.push(f);
        issues.push(i);
        ratios.push(f / i);
    }
    println!(
        "floor {:.3} µs, issue {:.3} µs (medians of {} rounds of {BLOCK}), floor / issue {:.3} (median of the rounds' ratios)",
        median(&mut floors),
        median(&mut issues),
        ratios.len(),
        median(&mut ratios),
    );
}

/// `ISSUER_PROFILE=<alg>:<issue|floor|jws|ratio>:<n>`: see the module docs.
fn profile(spec: &str) {
    let mut parts = spec.split(':');
    let (Some(alg), Some(what), Some(n), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("ISSUER_PROFILE=<alg>:<issue|floor|jws>:<n>, got `{spec}`");
    };
    let alg = match alg {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => panic!("unknown algorithm `{other}`"),
    };
    let n: u64 = n.parse().expect("iteration count");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = rt.enter();
    let Fixture {
        server,
        claims,
        input,
    } = fixture(&rt, alg);
    let auth = basic();
    let mut router = server.router();
    let key = server.keys().signing_key();
    serve(&rt, &mut router, request(&auth));
    black_box(key.sign(&claims).unwrap());
    black_box(floor(&key, &input));
    match what {
        "issue" => {
            let requests: Vec<_> = (0..n).map(|_| request(&auth)).collect();
            // The warm-up (a bcrypt check on the blocking pool) may have fallen back.
            FALLBACKS.store(0, Ordering::Relaxed);
            for req in requests {
                black_box(serve(&rt, &mut router, req));
            }
            let fallbacks = FALLBACKS.load(Ordering::Relaxed);
            assert_eq!(fallbacks, 0, "{fallbacks} issuances fell back to block_on");
        }
        "ratio" => ratio(&rt, &mut router, &auth, &key, &input, n),
        "floor" => {
            for _ in 0..n {
                black_box(floor(&key, &input));
            }
        }
        "jws" => {
            for _ in 0..n {
                black_box(key.sign(black_box(&claims)).unwrap());
            }
        }
        other => panic!("unknown mode `{other}`"),
    }
}

fn main() {
    if let Ok(spec) = std::env::var("ISSUER_PROFILE") {
        profile(&spec);
        return;
    }
    thread_cpu::run(
        "ISSUER_BENCH_CLOCK",
        Timing {
            warm_up: Duration::from_millis(500),
            measurement: Duration::from_secs(2),
            samples: 20,
        },
        benches,
        benches,
    );
}
