//! End-to-end against a real `redis-server` that each test starts on a free port of 127.0.0.1
//! (and kills when done), a real token endpoint and real `TokenManager`s ("replicas").
//! Expiry and refresh run on a `ManualClock`.
//!
//! `redis-server` must be on PATH (`./scripts/test.sh` installs it when missing): without it
//! these tests fail, they are never skipped.

mod common;
#[path = "../examples/gateway.rs"]
#[allow(dead_code, unreachable_pub)]
mod gateway_example;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::redis_server::RedisServer;
use common::{Idp, claims, get_bearer, jwks_of, serve};
use serde_json::json;
use tower_bearer::clock::{Clock, ManualClock};
use tower_bearer::http_client::{HttpClient, HttpClientConfig, HyperClient};
use tower_bearer::jwks::Algorithm;
use tower_bearer::outbound::{
    AccessToken, ClientCredentials, RetryPolicy, TokenClient, TokenManager, TokenManagerBuilder,
};
use tower_bearer::policy::{PolicyVersionLayer, PolicyVersions};
use tower_bearer::signing::SigningKey;
use tower_bearer::store::{RedisPolicyVersions, RedisTokenStore, StoredToken, TokenStore};
use tower_bearer::{IssuerConfig, JwtAuthLayer, Verifier};

const AUD: &str = "service-system";
const SCOPE: &str = "internal-service";
const ID: &str = "orders-client";
const SECRET: &str = "orders-client-secret";
const PREFIX: &str = "tb-test";
const T0: u64 = 1_700_000_000;

/// A plain client, to look at what the store wrote.
async fn raw(url: &str) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(url).unwrap();
    redis::aio::ConnectionManager::new(client).await.unwrap()
}

async fn raw_get(conn: &mut redis::aio::ConnectionManager, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// A real token endpoint (counts requests, records the manager clock at each).

struct TokenServer {
    url: String,
    state: Arc<TokenState>,
}

struct TokenState {
    requests: AtomicUsize,
    delay: Mutex<Duration>,
    expires_in: u64,
    clock: ManualClock,
    at: Mutex<Vec<u64>>,
}

async fn token_endpoint(State(s): State<Arc<TokenState>>) -> Response {
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    s.at.lock().unwrap().push(s.clock.now_unix());
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    axum::Json(json!({
        "access_token": format!("tok-{n}"),
        "token_type": "Bearer",
        "expires_in": s.expires_in,
    }))
    .into_response()
}

impl TokenServer {
    async fn start(clock: &ManualClock, expires_in: u64) -> Self {
        let state = Arc::new(TokenState {
            requests: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
            expires_in,
            clock: clock.clone(),
            at: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/oauth2/token", post(token_endpoint))
            .with_state(state.clone());
        let base = serve(app).await;
        Self {
            url: format!("{base}/oauth2/token"),
            state,
        }
    }
    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
    fn delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }
}

fn http() -> Arc<dyn HttpClient> {
    Arc::new(
        HyperClient::new(HttpClientConfig {
            timeout: Duration::from_secs(5),
            ..Default::default()
        })
        .unwrap(),
    )
}

/// A replica's manager on `store`.
fn replica(
    server: &TokenServer,
    clock: &ManualClock,
    store: RedisTokenStore,
) -> TokenManagerBuilder {
    let source = ClientCredentials::builder(ID, SECRET)
        .token_url(server.url.clone())
        .http_client(http())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    TokenManager::builder()
        .client(
            TokenClient::new("orders", source)
                .with_audience(AUD)
                .with_scope(SCOPE),
        )
        .clock(Arc::new(clock.clone()))
        .store(Arc::new(store))
        .store_key_prefix(PREFIX)
        .refresh_jitter(0.0)
        .lock_wait(Duration::from_secs(3), Duration::from_millis(10))
        .retry(RetryPolicy {
            max_attempts: 2,
            attempt_timeout: Duration::from_secs(2),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(1),
        })
}

async fn store(redis: &RedisServer) -> RedisTokenStore {
    RedisTokenStore::connect(&redis.url(), PREFIX, SECRET)
        .await
        .unwrap()
}

/// Waits (real time, bounded) until `f` holds.
async fn eventually<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The store.

#[tokio::test]
async fn values_round_trip_encrypted_and_bound_to_their_key() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let mut conn = raw(&redis.url()).await;
    let token = StoredToken::new(AccessToken::bearer("tok-very-secret", T0 + 3600), T0 + 3540);

    // Round trip.
    store
        .put("tb-test:token:a", token.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    let back = store.get("tb-test:token:a").await.unwrap().unwrap();
    assert_eq!(back.token(), token.token());
    assert_eq!(back.refresh_at_unix(), T0 + 3540);
    assert_eq!(back.fingerprint(), token.fingerprint());
    assert!(store.get("tb-test:token:none").await.unwrap().is_none());

    // What Redis holds: the fingerprint in clear, then ciphertext; never the token.
    let value = raw_get(&mut conn, "tb-test:token:a").await.unwrap();
    let text = String::from_utf8(value.clone()).unwrap();
    assert!(!text.contains("tok-very-secret"), "{text}");
    assert!(
        text.starts_with(&format!("{}:", token.fingerprint())),
        "{text}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("tb-test:token:a")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=60_000).contains(&ttl), "PX ttl: {ttl}");

    // A key without the prefix is put under it.
    store
        .put("token:b", token.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(raw_get(&mut conn, "tb-test:token:b").await.is_some());
    assert!(store.get("token:b").await.unwrap().is_some());

    // Copied to another key: does not decrypt (the key is HKDF info and associated data).
    let _: () = redis::cmd("SET")
        .arg("tb-test:token:moved")
        .arg(&value)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(store.get("tb-test:token:moved").await.unwrap().is_none());

    // Another secret: absent, not an error. Garbage: absent.
    let other = RedisTokenStore::connect(&redis.url(), PREFIX, "another-secret")
        .await
        .unwrap();
    assert!(other.get("tb-test:token:a").await.unwrap().is_none());
    let _: () = redis::cmd("SET")
        .arg("tb-test:token:junk")
        .arg("not:a-value")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(store.get("tb-test:token:junk").await.unwrap().is_none());

    // The TTL runs out in Redis.
    store
        .put(
            "tb-test:token:short",
            token.clone(),
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert!(store.get("tb-test:token:short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(store.get("tb-test:token:short").await.unwrap().is_none());

    // Debug output names no secret.
    let debug = format!("{store:?}");
    assert!(!debug.contains(SECRET) && debug.contains(PREFIX), "{debug}");
}

#[tokio::test]
async fn delete_if_only_deletes_the_current_token() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let old = StoredToken::new(AccessToken::bearer("tok-old", T0 + 3600), T0 + 3540);
    let new = StoredToken::new(AccessToken::bearer("tok-new", T0 + 7200), T0 + 7140);
    let key = "tb-test:token:k";
    store
        .put(key, new.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    // A replica reporting the old token does not delete the new one.
    assert!(!store.delete_if(key, old.fingerprint()).await.unwrap());
    assert!(!store.delete_if(key, "").await.unwrap());
    assert!(!store.delete_if(key, &new.fingerprint()[..8]).await.unwrap());
    assert_eq!(
        store.get(key).await.unwrap().unwrap().token().value(),
        "tok-new"
    );
    assert!(store.delete_if(key, new.fingerprint()).await.unwrap());
    assert!(store.get(key).await.unwrap().is_none());
    assert!(!store.delete_if(key, new.fingerprint()).await.unwrap());
}

#[tokio::test]
async fn locks_have_owners_and_expire() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let mut conn = raw(&redis.url()).await;
    let key = "tb-test:token:l";
    let long = Duration::from_secs(30);

    assert!(store.try_lock(key, "a", long).await.unwrap());
    assert!(!store.try_lock(key, "b", long).await.unwrap());
    // The owner takes its own lock again.
    assert!(store.try_lock(key, "a", long).await.unwrap());
    let holder = raw_get(&mut conn, "tb-test:token:l:lock").await.unwrap();
    assert_eq!(holder, b"a");
    // Only the owner releases it.
    store.unlock(key, "b").await.unwrap();
    assert!(!store.try_lock(key, "b", long).await.unwrap());
    store.unlock(key, "a").await.unwrap();
    assert!(store.try_lock(key, "b", long).await.unwrap());
    store.unlock(key, "b").await.unwrap();

    // An owner that never releases: the lock expires with its TTL.
    assert!(
        store
            .try_lock(key, "crashed", Duration::from_millis(150))
            .await
            .unwrap()
    );
    assert!(!store.try_lock(key, "c", long).await.unwrap());
    let ttl: i64 = redis::cmd("PTTL")
        .arg("tb-test:token:l:lock")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=150).contains(&ttl), "PX ttl: {ttl}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.try_lock(key, "c", long).await.unwrap());
    // The late release of the expired owner leaves the new owner's lock alone.
    store.unlock(key, "crashed").await.unwrap();
    assert!(!store.try_lock(key, "d", long).await.unwrap());
}

#[tokio::test]
async fn connection_errors_are_config_errors() {
    let err = RedisTokenStore::connect("http://127.0.0.1:1", PREFIX, SECRET)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
    let free = common::reserve_addr();
    let started = Instant::now();
    let err = RedisTokenStore::connect(&format!("redis://:pw-x@{free}"), PREFIX, SECRET)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(!err.to_string().contains("pw-x"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(RedisTokenStore::connect_lazy("redis://127.0.0.1:1", PREFIX, "").is_err());

    // Lazy: builds without Redis; calls fail in time, as errors.
    let lazy = RedisTokenStore::connect_lazy(&format!("redis://{free}"), PREFIX, SECRET)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    assert!(lazy.get("k").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// Replicas.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fetch_once_per_token_lifetime() {
    const LIFETIME: u64 = 120; // expires_in
    const REFRESH_AHEAD: u64 = 60; // a token serves 60 s, then it is replaced
    const RUN: u64 = 600; // simulated seconds: crosses 9 refreshes
    const CALLS: usize = 10; // per replica per simulated second

    let redis = RedisServer::start();
    let clock = ManualClock::new(T0);
    let server = TokenServer::start(&clock, LIFETIME).await;
    let a = replica(&server, &clock, store(&redis).await)
        .refresh_ahead(Duration::from_secs(REFRESH_AHEAD))
        .build()
        .unwrap();
    let b = replica(&server, &clock, store(&redis).await)
        .refresh_ahead(Duration::from_secs(REFRESH_AHEAD))
        .build()
        .unwrap();

    let mut seen: [BTreeSet<String>; 2] = Default::default();
    let mut max_wait = Duration::ZERO;
    for second in 0..RUN {
        for (i, m) in [&a, &b].into_iter().enumerate() {
            for _ in 0..CALLS {
                let started = Instant::now();
                let header = m.token(AUD, SCOPE).await.unwrap();
                if second > 0 {
                    max_wait = max_wait.max(started.elapsed());
                }
                seen[i].insert(header.to_str().unwrap().to_owned());
            }
        }
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let requests = server.requests();
    let at = server.state.at.lock().unwrap().clone();
    let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    let (sa, sb) = (a.stats(), b.stats());
    let hits = sa.hits + sb.hits;
    let misses = sa.misses + sb.misses;
    let hit_rate = hits as f64 / (hits + misses) as f64;
    let periods = RUN.div_ceil(LIFETIME - REFRESH_AHEAD);
    println!(
        "replicas: 2 managers, {} calls over {RUN} s (token lifetime {LIFETIME} s, refreshed \
         {REFRESH_AHEAD} s ahead, so replaced every {} s): {requests} token requests for {periods} \
         token periods (one per period; two independent replicas would make {}), fetched at +{:?} s; \
         replica a {:?}, replica b {:?}; combined hit rate {hit_rate:.4}; slowest call after the \
         cold start {max_wait:?}",
        RUN as usize * CALLS * 2,
        LIFETIME - REFRESH_AHEAD,
        2 * periods,
        at.iter().map(|t| t - T0).collect::<Vec<_>>(),
        sa,
        sb,
    );
    // One request per token period, not one per replica: never two within a period, and
    // each refresh soon after the period ends (real time moves on while it runs).
    let period = LIFETIME - REFRESH_AHEAD;
    assert!(requests as u64 <= periods, "{requests} token requests");
    assert!(
        gaps.iter().all(|g| (period..=period + 30).contains(g)),
        "token requests at {at:?}"
    );
    assert!(requests >= 5, "{requests} token requests");
    // Both replicas used the same tokens: each one fetched once, by one of them.
    let union: BTreeSet<_> = seen[0].union(&seen[1]).collect();
    assert_eq!(union.len(), requests, "a: {:?}, b: {:?}", seen[0], seen[1]);
    assert_eq!(sa.fetches + sb.fetches, requests as u64);
    assert!(hit_rate >= 0.9, "hit rate {hit_rate}");
    assert_eq!(misses, 2, "each replica missed once, at the cold start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_fetch_once() {
    const N: usize = 5;
    let redis = RedisServer::start();
    let clock = ManualClock::new(T0);
    let server = TokenServer::start(&clock, 3600).await;
    server.delay(Duration::from_millis(300));
    let mut managers = Vec::new();
    for _ in 0..N {
        managers.push(
            replica(&server, &clock, store(&redis).await)
                .build()
                .unwrap(),
        );
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for m in &managers {
        for _ in 0..20 {
            let m = m.clone();
            tasks.spawn(async move { m.token(AUD, SCOPE).await });
        }
    }
    let mut values = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        values.insert(r.unwrap().unwrap().to_str().unwrap().to_owned());
    }
    println!(
        "{N} replicas starting together, 20 callers each: {} token request(s), {:?}",
        server.requests(),
        started.elapsed()
    );
    assert_eq!(
        server.requests(),
        1,
        "the store's lock: one replica fetches"
    );
    assert_eq!(values.len(), 1, "{values:?}");
    let fetches: u64 = managers.iter().map(|m| m.stats().fetches).sum();
    assert_eq!(fetches, 1);
}

/// Records WARN and ERROR events of the current thread.
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// Current-thread runtime: every task (manager flights, the Redis connection) runs on this
// thread, under the test's subscriber.
#[tokio::test]
async fn redis_stopped_mid_run_never_fails_a_token_call() {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(Warnings(warnings.clone()));
    let mut redis = RedisServer::start();
    let clock = ManualClock::new(T0);
    let server = TokenServer::start(&clock, 3600).await;
    let store = store(&redis).await;
    let manager = replica(&server, &clock, store.clone()).build().unwrap();
    let conn = raw(&redis.url()).await;

    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    eventually("the token in Redis, the lock released", || {
        let mut conn = conn.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("tb-test:token:*")
                .query_async(&mut conn)
                .await
                .unwrap();
            // The token is there and the fetch lock released.
            keys.len() == 1 && !keys[0].ends_with(":lock")
        }
    })
    .await;

    redis.stop();

    // The local cache answers at once.
    let started = Instant::now();
    for _ in 0..100 {
        assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    }
    let cached = started.elapsed();

    // Past the expiry: the store fails (a warning), the manager fetches directly.
    clock.advance(Duration::from_secs(3600));
    let started = Instant::now();
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-2");
    let direct = started.elapsed();
    // Invalidation with Redis down: the delete fails (a warning), the next call fetches.
    assert!(manager.invalidate(AUD, SCOPE));
    let started = Instant::now();
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-3");
    let again = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logged = warnings.lock().unwrap().clone();
    println!(
        "redis down: 100 cached calls in {cached:?}, direct fetch in {direct:?} then {again:?}; \
         warnings: {logged:#?}"
    );
    assert!(cached < Duration::from_millis(100), "{cached:?}");
    assert!(direct < Duration::from_secs(3), "{direct:?}");
    assert!(again < Duration::from_secs(3), "{again:?}");
    assert_eq!(server.requests(), 3);
    for needle in ["token store get failed", "token store lock failed"] {
        assert!(
            logged.iter().any(|w| w.contains(needle)),
            "no `{needle}` warning in {logged:#?}"
        );
    }
    assert!(
        logged.iter().all(|w| !w.contains("tok-")),
        "a warning shows a token: {logged:#?}"
    );

    // Redis comes back (empty): the store is used again.
    redis.restart();
    eventually("the store to reconnect", || {
        let store = store.clone();
        async move { store.get("probe").await.is_ok() }
    })
    .await;
    manager.invalidate(AUD, SCOPE);
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-4");
    let conn = raw(&redis.url()).await;
    eventually("tok-4 shared through Redis", || {
        let (store, mut conn) = (store.clone(), conn.clone());
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("tb-test:token:*")
                .query_async(&mut conn)
                .await
                .unwrap();
            for key in keys.iter().filter(|k| !k.ends_with(":lock")) {
                if let Ok(Some(t)) = store.get(key).await {
                    return t.token().value() == "tok-4";
                }
            }
            false
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Policy versions.

#[tokio::test]
async fn policy_versions_set_bump_get() {
    let redis = RedisServer::start();
    let versions = RedisPolicyVersions::connect(&redis.url(), PREFIX)
        .await
        .unwrap();
    let mut conn = raw(&redis.url()).await;
    assert_eq!(versions.current("u-1").await.unwrap(), None);
    versions.set("u-1", 3).await.unwrap();
    assert_eq!(versions.current("u-1").await.unwrap(), Some(3));
    assert_eq!(versions.bump("u-1").await.unwrap(), 4);
    assert_eq!(versions.current("u-1").await.unwrap(), Some(4));
    assert_eq!(versions.bump("new-user").await.unwrap(), 1);
    assert_eq!(
        raw_get(&mut conn, "tb-test:pv:u-1").await.as_deref(),
        Some(&b"4"[..])
    );
    versions.remove("u-1").await.unwrap();
    assert_eq!(versions.current("u-1").await.unwrap(), None);

    // A user id cannot reach another command or key: Redis keys are binary-safe.
    let evil = "u\r\n*1\r\n$8\r\nFLUSHALL\r\n x:pv:other *";
    versions.set(evil, 7).await.unwrap();
    assert_eq!(versions.current(evil).await.unwrap(), Some(7));
    assert_eq!(versions.current("new-user").await.unwrap(), Some(1));
    assert_eq!(
        raw_get(&mut conn, &format!("tb-test:pv:{evil}"))
            .await
            .as_deref(),
        Some(&b"7"[..])
    );

    // Not an integer: an error (the layer fails closed).
    let _: () = redis::cmd("SET")
        .arg("tb-test:pv:broken")
        .arg("seven")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(versions.current("broken").await.is_err());
    assert!(versions.bump("broken").await.is_err());
}

#[tokio::test]
async fn policy_version_layer_refuses_a_bumped_token_through_redis() {
    let redis = RedisServer::start();
    let versions = Arc::new(
        RedisPolicyVersions::connect(&redis.url(), PREFIX)
            .await
            .unwrap(),
    );
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(idp.issuer(), idp.jwks_url()))
        .audience("orders")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/api", get(|| async { "ok" }))
        .layer(PolicyVersionLayer::new(versions.clone()).with_max_staleness(Duration::ZERO))
        .layer(JwtAuthLayer::new(verifier));
    let url = format!("{}/api", serve(app).await);

    versions.set("u-1", 1).await.unwrap();
    let mut c = claims(&idp.issuer(), "orders");
    c["pv"] = json!(1);
    let token = key.sign(&c).unwrap();
    assert_eq!(get_bearer(&url, &token).await.status, 200);

    // Another replica (another connection) bumps the version: the same token is refused.
    let admin = RedisPolicyVersions::connect(&redis.url(), PREFIX)
        .await
        .unwrap();
    assert_eq!(admin.bump("u-1").await.unwrap(), 2);
    let res = get_bearer(&url, &token).await;
    assert_eq!(res.status, 401);
    assert!(
        res.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    c["pv"] = json!(2);
    assert_eq!(get_bearer(&url, &key.sign(&c).unwrap()).await.status, 200);

    // Redis gone: fail closed.
    drop(redis);
    assert_eq!(get_bearer(&url, &key.sign(&c).unwrap()).await.status, 503);
}

/// `security.redis` in the YAML makes managers built from the same file share their token.
#[tokio::test]
async fn managers_from_the_same_yaml_share_tokens_through_redis() {
    let redis = RedisServer::start();
    let clock = ManualClock::new(1_700_000_000);
    let server = TokenServer::start(&clock, 300).await;
    let yaml = format!(
        "security:\n  internal-token:\n    client-id: svc\n    client-secret: s3cret\n    token-url: {}\n    audience: service-system\n    scope: internal-service\n  redis:\n    url: redis://127.0.0.1:{}\n    key-prefix: cfg-test\n",
        server.url, redis.port
    );
    let cfg = tower_bearer::config::SecurityConfig::from_yaml(&yaml).unwrap();
    let a = cfg.token_manager().unwrap();
    let b = cfg.token_manager().unwrap();
    let ta = a.token("service-system", "internal-service").await.unwrap();
    let tb = b.token("service-system", "internal-service").await.unwrap();
    assert_eq!(
        ta, tb,
        "the second replica used the token the first one stored"
    );
    assert_eq!(server.requests(), 1);
}

/// The gateway example with `policy-version` and `redis`: a bump in Redis refuses the same token.
#[tokio::test]
async fn gateway_checks_policy_versions_in_redis() {
    let redis = RedisServer::start();
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let upstream = serve(Router::new().route("/api/x", get(|| async { "ok" }))).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nupstream: {upstream}\nsecurity:\n  resource-server:\n    issuer: {}\n    jwks-uri: {}\n    audience: [orders]\n    policy-version: {{ max-staleness-seconds: 0 }}\n    rules:\n      - {{ path: \"/api/**\", authenticated: true }}\n  redis:\n    url: redis://127.0.0.1:{}\n    key-prefix: gw\n",
        idp.issuer(),
        idp.jwks_url(),
        redis.port
    );
    let cfg = gateway_example::parse_config(&yaml).unwrap();
    let versions = cfg.security.redis_policy_versions().await.unwrap();
    versions.set("u-1", 1).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/x", listener.local_addr().unwrap());
    tokio::spawn(gateway_example::run(cfg, listener, std::future::pending()));
    let mut c = claims(&idp.issuer(), "orders");
    c["pv"] = json!(1);
    let token = key.sign(&c).unwrap();
    assert_eq!(get_bearer(&url, &token).await.status, 200);
    versions.bump("u-1").await.unwrap();
    let r = get_bearer(&url, &token).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
}

// ---------------------------------------------------------------------------------------------
// Revocation: the issuer's RedisGrantStore writes, resource servers read (RedisRevocations).

#[cfg(feature = "issuer")]
mod revocation {
    use super::*;
    use tower_bearer::issuer::store::{
        GrantStore, NewFamily, RedisGrantStore, RefreshToken, RotateOutcome,
    };
    use tower_bearer::revocation::{RevocationLayer, RevocationSource};
    use tower_bearer::store::RedisRevocations;

    const BOUND: Duration = Duration::from_secs(1);

    async fn family(grants: &RedisGrantStore, user: &str, now: u64) -> RefreshToken {
        let first = RefreshToken::new_family();
        let fam = NewFamily::new(first.family_id(), "web", user)
            .with_lifetimes(Duration::from_secs(600), Duration::from_secs(7_200));
        grants.create_family(fam, &first.hash(), now).await.unwrap();
        first
    }

    /// Polls until `token` gets `status`; returns how long that took.
    async fn until_status(url: &str, token: &str, status: u16) -> Duration {
        let start = Instant::now();
        loop {
            let got = get_bearer(url, token).await.status;
            if got == status {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < BOUND * 3,
                "still {got} after {:?}, wanted {status}",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A JwtAuth + RevocationLayer axum app on 127.0.0.1, revocations from the issuer's Redis.
    #[tokio::test]
    async fn issuer_revocations_refuse_the_same_token_within_the_bound() {
        let redis = RedisServer::start();
        let grants = RedisGrantStore::connect(&redis.url(), PREFIX)
            .await
            .unwrap();
        let revocations = RedisRevocations::connect(&redis.url(), PREFIX)
            .await
            .unwrap();
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let idp = Idp::start(jwks_of(&[&key])).await;
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::jwks_uri(idp.issuer(), idp.jwks_url()))
            .audience("orders")
            .build()
            .unwrap();
        let app = Router::new()
            .route("/api", get(|| async { "ok" }))
            .layer(RevocationLayer::new(Arc::new(revocations.clone())).with_max_staleness(BOUND))
            .layer(JwtAuthLayer::new(verifier));
        let url = format!("{}/api", serve(app).await);
        let now = common::now();
        let fam_a = family(&grants, "u-1", now).await;
        let fam_b = family(&grants, "u-2", now).await;
        let fam_c = family(&grants, "u-3", now).await;
        let tok = |jti: &str, sid: &str| {
            let mut c = claims(&idp.issuer(), "orders");
            c["jti"] = json!(jti);
            c["sid"] = json!(sid);
            key.sign(&c).unwrap()
        };
        let t1 = tok("j-1", fam_a.family_id());
        let t2 = tok("j-2", fam_a.family_id());
        let t3 = tok("j-3", fam_b.family_id());
        let t4 = tok("j-4", fam_c.family_id());
        let untouched = tok("j-5", "some-other-family");
        for t in [&t1, &t2, &t3, &t4, &untouched] {
            assert_eq!(get_bearer(&url, t).await.status, 200);
        }

        // An access token revoked (jti list): refused within the bound, with a precise reason.
        grants.revoke_jti("j-1", now + 300, now).await.unwrap();
        let took = until_status(&url, &t1, 401).await;
        assert!(took <= BOUND + Duration::from_millis(500), "{took:?}");
        let res = get_bearer(&url, &t1).await;
        assert!(
            res.header("www-authenticate")
                .unwrap()
                .contains("invalid_token")
        );
        assert_eq!(
            get_bearer(&url, &t2).await.status,
            200,
            "same family, other jti"
        );

        // The family revoked: every token of it refused.
        assert!(grants.revoke_family(fam_a.family_id(), now).await.unwrap());
        let took = until_status(&url, &t2, 401).await;
        assert!(took <= BOUND + Duration::from_millis(500), "{took:?}");
        let mut raw = raw(&redis.url()).await;
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{PREFIX}:sid-revoked:{{{}}}", fam_a.family_id()))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(
            (7_100..=7_200).contains(&ttl),
            "marker TTL = family's: {ttl}"
        );

        // Reuse detection in the rotation script revokes family B.
        let next = fam_b.successor();
        let out = grants
            .rotate(&fam_b.hash(), "web", &next.hash(), now + 1)
            .await
            .unwrap();
        assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
        assert_eq!(get_bearer(&url, &t3).await.status, 200);
        let replay = grants
            .rotate(&fam_b.hash(), "web", &next.successor().hash(), now + 2)
            .await
            .unwrap();
        assert!(matches!(replay, RotateOutcome::Reused(_)), "{replay:?}");
        until_status(&url, &t3, 401).await;

        // Revoking every grant of a user.
        assert_eq!(grants.revoke_by_user("u-3", now).await.unwrap(), 1);
        until_status(&url, &t4, 401).await;

        // The untouched token still passes; the source agrees with the layer.
        assert_eq!(get_bearer(&url, &untouched).await.status, 200);
        assert!(
            revocations
                .is_revoked(None, Some(fam_b.family_id()))
                .await
                .unwrap()
        );
        assert!(
            !revocations
                .is_revoked(Some("j-5"), Some("some-other-family"))
                .await
                .unwrap()
        );

        // Redis gone: once the cached answer is older than the bound, fail closed (503).
        drop(redis);
        until_status(&url, &untouched, 503).await;
    }

    /// The gateway example with `revocation: { source: redis }`: a revocation at the issuer
    /// refuses the same token.
    #[tokio::test]
    async fn gateway_checks_revocations_in_redis() {
        let redis = RedisServer::start();
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let idp = Idp::start(jwks_of(&[&key])).await;
        let upstream = serve(Router::new().route("/api/x", get(|| async { "ok" }))).await;
        let yaml = format!(
            "listen: 127.0.0.1:0\nupstream: {upstream}\nsecurity:\n  resource-server:\n    issuer: {}\n    jwks-uri: {}\n    audience: [orders]\n    revocation: {{ source: redis, max-staleness-seconds: 1 }}\n    rules:\n      - {{ path: \"/api/**\", authenticated: true }}\n  redis:\n    url: redis://127.0.0.1:{}\n    key-prefix: gw\n",
            idp.issuer(),
            idp.jwks_url(),
            redis.port
        );
        let cfg = gateway_example::parse_config(&yaml).unwrap();
        let grants = RedisGrantStore::connect(&redis.url(), "gw").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/x", listener.local_addr().unwrap());
        tokio::spawn(gateway_example::run(cfg, listener, std::future::pending()));
        let mut c = claims(&idp.issuer(), "orders");
        c["jti"] = json!("gw-1");
        let token = key.sign(&c).unwrap();
        c["jti"] = json!("gw-2");
        let other = key.sign(&c).unwrap();
        assert_eq!(get_bearer(&url, &token).await.status, 200);
        let now = common::now();
        grants.revoke_jti("gw-1", now + 300, now).await.unwrap();
        let took = until_status(&url, &token, 401).await;
        assert!(took <= BOUND + Duration::from_millis(500), "{took:?}");
        assert_eq!(get_bearer(&url, &other).await.status, 200);
    }

    /// Configured without Redis, the gateway refuses to start.
    #[tokio::test]
    async fn gateway_without_redis_refuses_revocation() {
        let yaml = "listen: 127.0.0.1:0\nupstream: http://127.0.0.1:9\nsecurity:\n  resource-server:\n    issuer: https://auth.example\n    jwks-uri: https://auth.example/jwks\n    audience: [orders]\n    revocation: { source: redis }\n    rules:\n      - { path: \"/**\", authenticated: true }\n";
        let cfg = gateway_example::parse_config(yaml).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = gateway_example::run(cfg, listener, std::future::pending())
            .await
            .unwrap_err();
        assert!(err.contains("revocation"), "{err}");
    }
}
