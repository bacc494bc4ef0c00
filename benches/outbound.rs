//! Outbound hot paths, against baselines measured in the same run:
//! - `token_fast_path`: `TokenManager::token` on a cached token (system clock, the token's
//!   stale timer running on a live multi-thread runtime: no clock read) vs
//!   `baseline_arcswap_clone`: an `ArcSwap::load` plus a clone of a `HeaderValue`, and
//!   `baseline_arcswap_clone_plus_clock`: the same plus reading the system clock;
//! - `inject_layer`: one request through `InjectBearer` over a `service_fn` (token cached) vs
//!   `bare_service_fn`: the same request straight into the `service_fn`.
//!
//! Run with `cargo bench --bench outbound`. Times are the benchmark thread's CPU time
//! (`/proc/thread-self/schedstat`; the machines are shared, wall time counts other processes'
//! turns); `OUTBOUND_BENCH_CLOCK=wall` measures wall time instead. Compare ratios within a run.
//!
//! Profiling driver (no criterion): `OUTBOUND_PROFILE=<what>:<n>` with `what` one of `bare`
//! (the request straight into the `service_fn`), `inject` (through `InjectBearer`) or `token`
//! (`TokenManager::token` hit), runs the setup and a warm-up, then `n` iterations inside
//! `measure`, each building its request as the benches do: `OUTBOUND_PROFILE=inject:1000
//! valgrind --tool=callgrind --toggle-collect='outbound::measure*' target/release/deps/outbound-*`;
//! instructions per call = total / n, and `inject` minus `bare` is what the layer adds.

#![allow(missing_docs)]

#[path = "support/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::Timing;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::Criterion;
use criterion::measurement::Measurement;
use http::header::ACCEPT;
use http::{HeaderValue, Request, Response, Uri};
use tower::{Layer, Service, service_fn};
use tower_bearer::clock::{Clock, SystemClock};
use tower_bearer::http_client::BoxFuture;
use tower_bearer::outbound::{
    AccessToken, FetchError, InjectBearerLayer, TokenClient, TokenManager, TokenRequest,
};

const AUD: &str = "service-system";
const SCOPE: &str = "internal-service";

/// Polls a future that completes without waiting (the fast path) to its end. Inline, as an
/// `.await` is in the caller's state machine: not inlined, the future is built in the
/// measured closure, copied into this function's frame through memory and its output copied
/// back out, two more moves of the `HeaderValue` than the baseline's (each a stalled load
/// right after the clone's stores).
#[inline(always)]
fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("fast path must not wait"),
    }
}

/// The manager, warmed up on a multi-thread runtime that stays alive with it (as in a
/// service): its tokens' stale timers run there, so the hit path skips the clock.
fn manager() -> (TokenManager, tokio::runtime::Runtime) {
    let source = |_: &TokenRequest| -> BoxFuture<'static, Result<AccessToken, FetchError>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
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
                .with_audience(AUD)
                .with_scope(SCOPE)
                .with_destination("http://127.0.0.1:9002")
                .unwrap(),
        )
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(manager.warm_up()).unwrap();
    (manager, rt)
}

/// The inject group's services and request builder (the criterion run and the profiling driver
/// measure the same): a bare `service_fn`, the same behind `InjectBearerLayer`, and a request
/// to a configured destination. Real requests carry headers already (the header map is
/// allocated): so do these. A macro, as the `service_fn` closure's type has no name.
macro_rules! inject_services {
    ($manager:expr) => {{
        let uri: Uri = "http://127.0.0.1:9002/internal/ping".parse().unwrap();
        let inner = service_fn(|req: Request<()>| async move {
            black_box(&req);
            Ok::<_, Infallible>(Response::new(()))
        });
        let injected = InjectBearerLayer::new($manager.clone()).layer(inner);
        let request = move || {
            Request::builder()
                .uri(uri.clone())
                .header(ACCEPT, HeaderValue::from_static("application/json"))
                .body(())
                .unwrap()
        };
        (inner, injected, request)
    }};
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    let (manager, _runtime) = manager();
    let header = now_or_never(manager.token(AUD, SCOPE)).unwrap();

    let mut g = c.benchmark_group("token");
    g.bench_function("token_fast_path", |b| {
        b.iter(|| {
            black_box(now_or_never(
                manager.token(black_box(AUD), black_box(SCOPE)),
            ))
        })
    });
    let swap = ArcSwap::from_pointee(header.clone());
    drop(swap.load().clone());
    g.bench_function("baseline_arcswap_clone", |b| {
        b.iter(|| {
            let guard = swap.load();
            black_box::<HeaderValue>((**guard).clone())
        })
    });
    // What the fast path adds to the baseline that it cannot avoid: reading the clock.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    g.bench_function("baseline_arcswap_clone_plus_clock", |b| {
        b.iter(|| {
            let now = clock.now_unix();
            let guard = swap.load();
            black_box(now);
            black_box::<HeaderValue>((**guard).clone())
        })
    });
    g.finish();

    let (mut bare, mut injected, request) = inject_services!(manager);
    assert!(now_or_never(injected.call(request())).is_ok());

    let mut g = c.benchmark_group("inject");
    g.bench_function("bare_service_fn", |b| {
        b.iter(|| black_box(now_or_never(bare.call(request()))))
    });
    g.bench_function("inject_layer", |b| {
        b.iter(|| black_box(now_or_never(injected.call(request()))))
    });
    g.finish();
    eprintln!("manager stats after the run: {:?}", manager.stats());
}

/// `OUTBOUND_PROFILE=<bare|inject|token>:<n>`: see the module docs.
fn profile(spec: &str) {
    let Some((what, n)) = spec.split_once(':') else {
        panic!("OUTBOUND_PROFILE=<bare|inject|token>:<n>, got `{spec}`");
    };
    let n: u64 = n.parse().expect("iteration count");
    let (manager, _runtime) = manager();
    let (mut bare, mut injected, request) = inject_services!(manager);
    // Warm-up: every path once.
    assert!(now_or_never(bare.call(request())).is_ok());
    assert!(now_or_never(injected.call(request())).is_ok());
    assert!(now_or_never(manager.token(AUD, SCOPE)).is_ok());
    match what {
        "bare" => measure(n, || {
            let _ = black_box(now_or_never(bare.call(request())));
        }),
        "inject" => measure(n, || {
            let _ = black_box(now_or_never(injected.call(request())));
        }),
        "token" => measure(n, || {
            let _ = black_box(now_or_never(
                manager.token(black_box(AUD), black_box(SCOPE)),
            ));
        }),
        other => panic!("unknown mode `{other}`"),
    }
}

/// The measured loop of the profiling driver: under callgrind,
/// `--toggle-collect='outbound::measure*'` counts only this.
#[inline(never)]
fn measure(n: u64, mut call: impl FnMut()) {
    for _ in 0..n {
        call();
    }
}

fn main() {
    if let Ok(spec) = std::env::var("OUTBOUND_PROFILE") {
        profile(&spec);
        return;
    }
    // criterion's defaults.
    thread_cpu::run(
        "OUTBOUND_BENCH_CLOCK",
        Timing {
            warm_up: Duration::from_secs(3),
            measurement: Duration::from_secs(5),
            samples: 100,
        },
        bench,
        bench,
    );
}
