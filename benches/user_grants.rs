//! User grants: password-grant logins and refresh-token rotations per core, against the bare
//! password-hash check measured in the same run.
//!
//! - `hash_floor/argon2id` and `hash_floor/bcrypt-10`: `PasswordHash::verify_blocking` alone
//!   (what any server pays per login at that cost);
//! - `login/argon2id` (argon2id at the default cost, `Argon2Params::OWASP`: m = 19456 KiB,
//!   t = 2, p = 1) and `login/bcrypt-10` (a `{bcrypt}` hash at cost 10 in a store that cannot
//!   re-hash, so every login checks bcrypt): one `POST /oauth2/token` `grant_type=password`
//!   through the issuer's axum router in-process (client authentication from the verified-secret
//!   cache, user limiter, hash check on the blocking pool, a new refresh-token family in the
//!   in-memory grant store, claims, RS256 signature, JSON);
//! - `refresh/RS256` and `refresh/ES256`: one `grant_type=refresh_token` (rotation in the
//!   in-memory grant store, user reload, policy version, signature), each iteration presenting
//!   the token the previous one returned.
//!
//! Time is the CPU time of the whole process (every thread, from `/proc/self/stat`; wall time
//! where that is not available), so `1 / time` is the rate per core even on a loaded machine:
//! one request at a time, on a current-thread runtime plus the blocking pool.
//!
//! Run with `cargo bench --features issuer --bench user_grants`.

#![allow(missing_docs)]

use std::cell::LazyCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use tower::{Service, ServiceExt};
use tower_bearer::http_client::BoxFuture;
use tower_bearer::issuer::AuthorizationServer;
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
use tower_bearer::issuer::users::{MemoryUserStore, User, UserStore};
use tower_bearer::jwks::Algorithm;
use tower_bearer::store::StoreError;

/// bcrypt (cost 4) of `correct horse`: the client secret, test-only.
const CLIENT_HASH: &str = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";
/// Test-only user password.
const PASSWORD: &str = "bench-only-password";

/// CPU time of the process (user + system, all threads), in the unit of [`WallTime`].
struct ProcessCpuTime {
    wall: WallTime,
}

/// `utime + stime` of this process in nanoseconds (Linux reports them in 1/100 s).
fn cpu_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: fields 14 and 15 count from after its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

impl Measurement for ProcessCpuTime {
    type Intermediate = (Option<u64>, Instant);
    type Value = Duration;

    fn start(&self) -> Self::Intermediate {
        (cpu_nanos(), Instant::now())
    }
    fn end(&self, (cpu, wall): Self::Intermediate) -> Self::Value {
        match (cpu, cpu_nanos()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
            _ => wall.elapsed(),
        }
    }
    fn add(&self, v1: &Self::Value, v2: &Self::Value) -> Self::Value {
        *v1 + *v2
    }
    fn zero(&self) -> Self::Value {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Self::Value) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

/// A user store that cannot re-hash: every bcrypt login stays a bcrypt check.
#[derive(Debug)]
struct ReadOnly(MemoryUserStore);

impl UserStore for ReadOnly {
    fn find_by_username(&self, name: &str) -> BoxFuture<'static, Result<Option<User>, StoreError>> {
        self.0.find_by_username(name)
    }
    fn find_by_id(&self, id: &str) -> BoxFuture<'static, Result<Option<User>, StoreError>> {
        self.0.find_by_id(id)
    }
}

fn server(rt: &tokio::runtime::Runtime, alg: Algorithm, users: ReadOnly) -> AuthorizationServer {
    rt.block_on(async {
        AuthorizationServer::builder("https://auth.example")
            .algorithm(alg)
            .password_grant(true)
            .with_user_store(Arc::new(users))
            .client(
                RegisteredClient::new("web", AuthMethod::ClientSecretBasic)
                    .with_secret_hash(PasswordHash::parse(CLIENT_HASH).unwrap())
                    .with_grant_types([GrantType::Password, GrantType::RefreshToken])
                    .with_scopes(["orders.read"])
                    .with_audiences(["service-system"]),
            )
            .build()
            .await
            .unwrap()
    })
}

fn token_request(form: &str) -> http::Request<Body> {
    http::Request::post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode("web:correct horse")),
        )
        .body(Body::from(form.to_owned()))
        .unwrap()
}

/// One token request through `router`: the JSON answer.
fn call(rt: &tokio::runtime::Runtime, router: &mut axum::Router, form: &str) -> serde_json::Value {
    rt.block_on(async {
        let svc = ServiceExt::<http::Request<Body>>::ready(router)
            .await
            .unwrap();
        let res = svc.call(token_request(form)).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = axum::body::to_bytes(res.into_body(), 16_384).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    })
}

fn benches(c: &mut Criterion<ProcessCpuTime>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Set up lazily: a run filtered to one benchmark (or the one-shot test run) pays only for
    // what that benchmark needs.
    let hashes = LazyCell::new(|| {
        let argon2 = PasswordHasher::new(1)
            .hash_blocking(PASSWORD.as_bytes())
            .unwrap();
        let bcrypt = format!("{{bcrypt}}{}", bcrypt::hash(PASSWORD, 10).unwrap());
        (
            PasswordHash::parse(&argon2).unwrap(),
            PasswordHash::parse(&bcrypt).unwrap(),
        )
    });
    let users = || {
        let (argon2, bcrypt) = &*hashes;
        ReadOnly(
            MemoryUserStore::from_users([
                User::new("1001", "alice")
                    .with_roles(["user"])
                    .with_password_hash(argon2.clone()),
                User::new("1002", "bob")
                    .with_roles(["user"])
                    .with_password_hash(bcrypt.clone()),
            ])
            .unwrap(),
        )
    };

    let mut group = c.benchmark_group("hash_floor");
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(6));
    for (name, bcrypt) in [("argon2id", false), ("bcrypt-10", true)] {
        group.bench_function(name, |b| {
            let hash = if bcrypt { &hashes.1 } else { &hashes.0 };
            b.iter(|| assert!(black_box(hash).verify_blocking(PASSWORD.as_bytes())));
        });
    }
    group.finish();

    let mut router: Option<axum::Router> = None;
    let mut group = c.benchmark_group("login");
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(6));
    for (name, username) in [("argon2id", "alice"), ("bcrypt-10", "bob")] {
        let form = format!("grant_type=password&username={username}&password={PASSWORD}");
        let mut warm = false;
        group.bench_function(name, |b| {
            let router =
                router.get_or_insert_with(|| server(&rt, Algorithm::RS256, users()).router());
            if !warm {
                // Warm the verified-secret cache (one bcrypt check of the client secret).
                assert!(call(&rt, router, &form)["refresh_token"].is_string());
                warm = true;
            }
            b.iter(|| black_box(call(&rt, router, &form)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("refresh");
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let mut state: Option<(axum::Router, String)> = None;
        group.bench_function(alg.to_string(), |b| {
            let (router, token) = state.get_or_insert_with(|| {
                let mut router = server(&rt, alg, users()).router();
                let login = format!("grant_type=password&username=alice&password={PASSWORD}");
                let token = call(&rt, &mut router, &login)["refresh_token"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (router, token)
            });
            b.iter(|| {
                let form = format!("grant_type=refresh_token&refresh_token={token}");
                let answer = call(&rt, router, &form);
                answer["refresh_token"].as_str().unwrap().clone_into(token);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = user_grants;
    config = Criterion::default()
        .with_measurement(ProcessCpuTime { wall: WallTime })
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = benches
}
criterion_main!(user_grants);
