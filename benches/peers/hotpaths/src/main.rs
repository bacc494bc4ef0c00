//! Instruction counts of the hot paths under `valgrind --tool=callgrind`, repeatable on a noisy
//! machine. Each scenario runs inside `measure_*` (warmed up first); callgrind collects only
//! there (`--toggle-collect='hotpaths::measure_*'`), so the total divided by `N` is the cost of one call.
//!
//! ```text
//! hotpaths SCENARIO N     # SCENARIO: see `main`; prints what it measured
//! ```
//! `../callgrind.sh` runs every scenario and prints a table.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use arc_swap::ArcSwap;

use aws_lc_rs::signature::{self, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderValue, Request, Response, Uri};
use serde_json::json;
use tower::{service_fn, Layer, Service};
use tower_bearer::http_client::BoxFuture;
use tower_bearer::jwks::{Algorithm, KeySet};
use tower_bearer::outbound::{
    AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest,
};
use tower_bearer::signing::SigningKey;
use tower_bearer::{IssuerConfig, JwtAuthLayer, Verifier};

const ISS: &str = "https://auth.bench.test";
const AUD: &str = "bench";

fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("fast path must not wait"),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Tokens {
    key: SigningKey,
    tokens: Vec<String>,
}

fn tokens(n: usize) -> Tokens {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let now = unix_now();
    let tokens = (0..n)
        .map(|i| {
            key.sign(&json!({
                "iss": ISS, "aud": AUD, "sub": format!("user-{i}"), "uid": format!("{}", 1000 + i),
                "scope": "orders.read orders.write", "roles": ["user"], "client_id": "web",
                "iat": now, "exp": now + 3600, "jti": format!("jti-{i}"),
            }))
            .unwrap()
        })
        .collect();
    Tokens { key, tokens }
}

fn verifier(t: &Tokens, cache: usize) -> Verifier {
    let keys = KeySet::from_jwks(t.key.jwks().to_string().as_bytes(), &[Algorithm::RS256]).unwrap();
    Verifier::builder()
        .issuer(IssuerConfig::static_keys(ISS, keys))
        .audience(AUD)
        .token_cache(cache)
        .build()
        .unwrap()
}

fn headers(t: &Tokens) -> Vec<Bytes> {
    t.tokens
        .iter()
        .map(|tok| Bytes::from(format!("Bearer {tok}")))
        .collect()
}

fn request(h: &Bytes) -> Request<()> {
    let mut req = Request::get("/orders").body(()).unwrap();
    req.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_maybe_shared(h.clone()).unwrap(),
    );
    req.headers_mut()
        .insert(ACCEPT, HeaderValue::from_static("application/json"));
    req
}

type Svc = Box<dyn FnMut(Request<()>) -> u16>;

fn service<S>(mut svc: S) -> Svc
where
    S: Service<Request<()>, Response = Response<()>> + 'static,
    S::Error: std::fmt::Debug,
{
    Box::new(move |req| now_or_never(svc.call(req)).unwrap().status().as_u16())
}

fn ok_fn() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|req: Request<()>| async move {
        black_box(&req);
        Ok::<_, Infallible>(Response::new(()))
    })
}

fn run_requests(svc: &mut Svc, hs: &[Bytes], n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        ok += usize::from(svc(request(&hs[i % hs.len()])) == 200);
    }
    ok
}

fn run_verify(v: &Verifier, toks: &[String], n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        ok += usize::from(v.try_verify(black_box(&toks[i % toks.len()])).is_ok());
    }
    ok
}

fn run_floor(key: &signature::ParsedPublicKey, msg: &[u8], sig: &[u8], n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(key.verify_sig(black_box(msg), black_box(sig)).is_ok());
    }
    ok
}

fn run_token(m: &TokenManager, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(
            now_or_never(m.token(black_box("service-system"), black_box("internal"))).is_ok(),
        );
    }
    ok
}

/// The floor of a token hit: an `ArcSwap` load and a clone of the `HeaderValue` in it.
fn run_arcswap(swap: &ArcSwap<HeaderValue>, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let guard = black_box(swap).load();
        ok += usize::from(!black_box((**guard).clone()).is_empty());
    }
    ok
}

/// [`run_arcswap`] plus one read of the system clock (what a token hit cannot avoid).
fn run_arcswap_clock(swap: &ArcSwap<HeaderValue>, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let now = std::time::SystemTime::now();
        let guard = black_box(swap).load();
        black_box(now);
        ok += usize::from(!black_box((**guard).clone()).is_empty());
    }
    ok
}

fn run_outbound(svc: &mut Svc, uri: &Uri, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let req = Request::builder()
            .uri(uri.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .body(())
            .unwrap();
        ok += usize::from(svc(req) == 200);
    }
    ok
}

/// The measured calls (callgrind collects inside `measure_*` only); warm-ups call `run_*`.
#[inline(never)]
fn measure_requests(svc: &mut Svc, hs: &[Bytes], n: usize) -> usize {
    run_requests(svc, hs, n)
}

#[inline(never)]
fn measure_verify(v: &Verifier, toks: &[String], n: usize) -> usize {
    run_verify(v, toks, n)
}

#[inline(never)]
fn measure_floor(key: &signature::ParsedPublicKey, msg: &[u8], sig: &[u8], n: usize) -> usize {
    run_floor(key, msg, sig, n)
}

#[inline(never)]
fn measure_token(m: &TokenManager, n: usize) -> usize {
    run_token(m, n)
}

#[inline(never)]
fn measure_arcswap(swap: &ArcSwap<HeaderValue>, n: usize) -> usize {
    run_arcswap(swap, n)
}

#[inline(never)]
fn measure_arcswap_clock(swap: &ArcSwap<HeaderValue>, n: usize) -> usize {
    run_arcswap_clock(swap, n)
}

#[inline(never)]
fn measure_outbound(svc: &mut Svc, uri: &Uri, n: usize) -> usize {
    run_outbound(svc, uri, n)
}

fn manager() -> TokenManager {
    let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
        let now = unix_now();
        Box::pin(async move {
            Ok(AccessToken::bearer(
                "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJvcmRlcnMifQ.c2lnbmF0dXJl",
                now + 86_400,
            ))
        })
    };
    let manager = TokenManager::builder()
        .client(
            TokenClient::new("orders", source)
                .with_audience("service-system")
                .with_scope("internal")
                .with_destination("http://127.0.0.1:9002")
                .unwrap(),
        )
        .build()
        .unwrap();
    // A multi-thread runtime that lives on (as in a service): the token's stale timer runs
    // there, so the hit path skips the clock.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(manager.warm_up()).unwrap();
    Box::leak(Box::new(rt));
    manager
}

/// CPU time of this thread in ns (`/proc/thread-self/schedstat`, first field).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "hit1".into());
    let n: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(10_000);
    let started = cpu_ns();
    let ok = match scenario.as_str() {
        // Requests through a bare service_fn / JwtAuthLayer over it.
        "noauth" | "hit1" | "hit1000" | "miss" => {
            let count = if scenario == "hit1000" { 1000 } else { 1 };
            let t = tokens(count);
            let hs = headers(&t);
            let mut svc = match scenario.as_str() {
                "noauth" => service(ok_fn()),
                "miss" => service(JwtAuthLayer::new(verifier(&t, 0)).layer(ok_fn())),
                _ => service(JwtAuthLayer::new(verifier(&t, 100_000)).layer(ok_fn())),
            };
            // Warm up (fills the cache with every token).
            assert_eq!(run_requests(&mut svc, &hs, 2 * hs.len()), 2 * hs.len());
            measure_requests(&mut svc, &hs, n)
        }
        // Verifier::try_verify alone, and the aws-lc floor it is compared with.
        "verify_hit" | "verify_miss" | "floor" => {
            let t = tokens(1);
            let v = verifier(&t, if scenario == "verify_hit" { 1000 } else { 0 });
            if scenario == "floor" {
                let jwk = t.key.public_jwk();
                let b = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
                let key = RsaPublicKeyComponents {
                    n: b("n"),
                    e: b("e"),
                }
                .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
                .unwrap();
                let (msg, sig) = t.tokens[0].rsplit_once('.').unwrap();
                let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
                run_floor(&key, msg.as_bytes(), &sig, 2);
                measure_floor(&key, msg.as_bytes(), &sig, n)
            } else {
                run_verify(&v, &t.tokens, 2);
                measure_verify(&v, &t.tokens, n)
            }
        }
        "token" => {
            let m = manager();
            run_token(&m, 2);
            measure_token(&m, n)
        }
        // The floor of a token hit (`ArcSwap` load + clone), without and with the clock.
        "arcswap" | "arcswap_clock" => {
            let m = manager();
            let header = now_or_never(m.token("service-system", "internal")).unwrap();
            let swap = ArcSwap::from_pointee(header);
            if scenario == "arcswap" {
                run_arcswap(&swap, 2);
                measure_arcswap(&swap, n)
            } else {
                run_arcswap_clock(&swap, 2);
                measure_arcswap_clock(&swap, n)
            }
        }
        "bare_fn" | "inject" => {
            let uri: Uri = "http://127.0.0.1:9002/internal/ping".parse().unwrap();
            let mut svc = if scenario == "bare_fn" {
                service(ok_fn())
            } else {
                service(InjectBearerLayer::new(manager()).layer(ok_fn()))
            };
            run_outbound(&mut svc, &uri, 2);
            measure_outbound(&mut svc, &uri, n)
        }
        other => panic!("unknown scenario {other}"),
    };
    assert_eq!(ok, n, "every call must succeed");
    // Natively (not under valgrind), with a large N the set-up is negligible: a rough ns/call
    // of this thread's CPU time (not wall time: the machine is shared).
    let ns = (cpu_ns() - started) as f64 / n as f64;
    println!("{scenario} {n} ok ({ns:.1} ns of CPU per call, set-up included)");
}
