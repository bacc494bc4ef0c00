//! Per-request cost of the policy-version check on its hit path: the user's current version is
//! in the local cache, so the request goes straight through (no source lookup).
//!
//! - `hit_one_user`: one user, every request a hit;
//! - `hit_10k_users`: 10 000 users cycled, every request a hit.
//!
//! Run with `cargo bench --bench policy`.

#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower_bearer::claims::{Authentication, ClaimMapping, CurrentUser};
use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
use tower_layer::Layer;
use tower_service::Service;

fn user(uid: &str) -> CurrentUser {
    let claims = serde_json::json!({
        "iss": "https://auth.example", "sub": uid, "uid": uid, "pv": 3,
        "exp": 4_000_000_000u64, "aud": "api"
    });
    CurrentUser::from_claims(
        claims.as_object().unwrap().clone(),
        &ClaimMapping::default().compile(),
    )
    .unwrap()
}

fn request(user: &CurrentUser) -> Request<()> {
    let mut r = Request::new(());
    r.extensions_mut()
        .insert(Authentication::User(user.clone()));
    r
}

/// Polls once: on the hit path the inner service answers at once.
fn run<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("hit path must not wait"),
    }
}

fn bench(c: &mut Criterion) {
    let versions = Arc::new(MemoryPolicyVersions::new());
    let users: Vec<CurrentUser> = (0..10_000).map(|i| user(&format!("u-{i}"))).collect();
    for i in 0..10_000 {
        versions.set(&format!("u-{i}"), 3);
    }
    let inner =
        tower::service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut svc = PolicyVersionLayer::new(versions)
        .with_max_staleness(Duration::from_secs(3600))
        .layer(inner);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // Fill the cache (misses go to the source once).
    for u in &users {
        let resp = rt.block_on(svc.call(request(u))).unwrap();
        assert_eq!(resp.status(), 200);
    }

    let one = request(&users[0]);
    c.bench_function("policy/hit_one_user", |b| {
        b.iter_batched(
            || {
                let mut r = Request::new(());
                r.extensions_mut().clone_from(one.extensions());
                r
            },
            |req| black_box(run(svc.call(req)).unwrap()),
            criterion::BatchSize::SmallInput,
        )
    });
    let reqs: Vec<Request<()>> = users.iter().map(request).collect();
    let mut i = 0usize;
    c.bench_function("policy/hit_10k_users", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % reqs.len();
                let mut r = Request::new(());
                r.extensions_mut().clone_from(reqs[i].extensions());
                r
            },
            |req| black_box(run(svc.call(req)).unwrap()),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
