//! End-to-end: a real token endpoint with fault injection, real destinations recording the
//! `Authorization` they receive, a hyper-util client with `InjectBearerLayer`; all on 127.0.0.1.
//! Expiry, refresh and circuit timing run on a `ManualClock`.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::serve;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::clock::ManualClock;
use tower_bearer::error::BoxError;
use tower_bearer::http_client::{HttpClient, HttpClientConfig, HyperClient};
use tower_bearer::outbound::{
    AudienceParameter, CircuitPolicy, ClientAuth, ClientCredentials, CloneBody, FetchError,
    InjectBearerLayer, InjectError, OAuthErrorCode, OutboundError, RetryPolicy, SkipBearer,
    TokenClient, TokenManager, TokenManagerBuilder,
};
use tower_bearer::store::{MemoryTokenStore, TokenStore};

const AUD: &str = "service-system";
const SCOPE: &str = "internal-service";
const ID: &str = "svc:a b";
const SECRET: &str = "a:b%c";
const T0: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// The token endpoint.

/// What the token endpoint does with one request.
#[derive(Clone, Debug)]
enum Fault {
    Ok,
    Status(u16),
    Hang,
    Slow(Duration),
    BadJson,
    OAuth(u16, &'static str),
    WrongType,
    RetryAfter(u16, u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    Basic,
    Post,
}

struct TokenState {
    requests: AtomicUsize,
    issued: AtomicUsize,
    script: Mutex<VecDeque<Fault>>,
    default: Mutex<Fault>,
    delay: Mutex<Duration>,
    expires_in: Mutex<Option<u64>>,
    auth: Mutex<Auth>,
    times: Mutex<Vec<Instant>>,
    forms: Mutex<Vec<Vec<(String, String)>>>,
    issuer: Mutex<String>,
}

struct TokenServer {
    base: String,
    state: Arc<TokenState>,
}

impl TokenServer {
    async fn start() -> Self {
        let state = Arc::new(TokenState {
            requests: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Fault::Ok),
            delay: Mutex::new(Duration::ZERO),
            expires_in: Mutex::new(Some(3600)),
            auth: Mutex::new(Auth::Basic),
            times: Mutex::new(Vec::new()),
            forms: Mutex::new(Vec::new()),
            issuer: Mutex::new(String::new()),
        });
        let app = Router::new()
            .route("/oauth2/token", post(token_endpoint))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(state.clone());
        let base = serve(app).await;
        *state.issuer.lock().unwrap() = base.clone();
        Self { base, state }
    }
    fn url(&self) -> String {
        format!("{}/oauth2/token", self.base)
    }
    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
    fn set(&self, fault: Fault) {
        *self.state.default.lock().unwrap() = fault;
    }
    fn script(&self, faults: &[Fault]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(faults.iter().cloned());
    }
    fn delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }
    fn expires_in(&self, e: Option<u64>) {
        *self.state.expires_in.lock().unwrap() = e;
    }
    fn auth(&self, a: Auth) {
        *self.state.auth.lock().unwrap() = a;
    }
    fn last_form(&self) -> Vec<(String, String)> {
        self.state.forms.lock().unwrap().last().cloned().unwrap()
    }
}

fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_get<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn oauth_error(status: u16, code: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": code, "error_description": "rejected by test"})),
    )
        .into_response()
}

async fn token_endpoint(
    State(s): State<Arc<TokenState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    s.times.lock().unwrap().push(Instant::now());
    let form = parse_form(std::str::from_utf8(&body).unwrap());
    s.forms.lock().unwrap().push(form.clone());
    assert_eq!(
        headers["content-type"], "application/x-www-form-urlencoded",
        "token requests are form posts"
    );
    assert_eq!(form_get(&form, "grant_type"), Some("client_credentials"));
    // Client authentication, RFC 6749 §2.3.1.
    let auth_ok = match *s.auth.lock().unwrap() {
        Auth::Basic => {
            let decoded = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            form_get(&form, "client_secret").is_none()
                && decoded.is_some_and(|d| {
                    let (id, secret) = d.split_once(':').unwrap();
                    // Form-urlencoded before Base64: a raw ':' or '%' would break this.
                    !id.contains(':')
                        && !secret.contains(':')
                        && form_decode(id) == ID
                        && form_decode(secret) == SECRET
                })
        }
        Auth::Post => {
            headers.get("authorization").is_none()
                && form_get(&form, "client_id") == Some(ID)
                && form_get(&form, "client_secret") == Some(SECRET)
        }
    };
    if !auth_ok {
        return oauth_error(401, "invalid_client");
    }
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fault = s
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| s.default.lock().unwrap().clone());
    let expires_in = *s.expires_in.lock().unwrap();
    let issue = |token_type: &str| {
        let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut body = json!({"access_token": format!("tok-{n}"), "token_type": token_type});
        if let Some(e) = expires_in {
            body["expires_in"] = json!(e);
        }
        axum::Json(body).into_response()
    };
    match fault {
        Fault::Ok => issue("bearer"),
        Fault::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            issue("Bearer")
        }
        Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            issue("Bearer")
        }
        Fault::BadJson => (
            [("content-type", "application/json")],
            "{\"access_token\": \"tok",
        )
            .into_response(),
        Fault::OAuth(status, code) => oauth_error(status, code),
        Fault::WrongType => issue("mac"),
        Fault::RetryAfter(status, secs) => (
            StatusCode::from_u16(status).unwrap(),
            [("retry-after", secs.to_string())],
            "busy",
        )
            .into_response(),
    }
}

async fn discovery(State(s): State<Arc<TokenState>>, headers: HeaderMap) -> Response {
    let host = headers["host"].to_str().unwrap().to_owned();
    axum::Json(json!({
        "issuer": *s.issuer.lock().unwrap(),
        "token_endpoint": format!("http://{host}/oauth2/token"),
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn http() -> Arc<dyn HttpClient> {
    Arc::new(
        HyperClient::new(HttpClientConfig {
            timeout: Duration::from_secs(5),
            ..Default::default()
        })
        .unwrap(),
    )
}

fn source(server: &TokenServer, clock: &ManualClock) -> ClientCredentials {
    ClientCredentials::builder(ID, SECRET)
        .token_url(server.url())
        .http_client(http())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        attempt_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    }
}

fn builder(source: ClientCredentials, clock: &ManualClock) -> TokenManagerBuilder {
    TokenManager::builder()
        .client(
            TokenClient::new("orders", source)
                .with_audience(AUD)
                .with_scope(SCOPE),
        )
        .clock(Arc::new(clock.clone()))
        .refresh_jitter(0.0)
        .retry(fast_retry())
}

async fn setup() -> (TokenServer, ManualClock, TokenManager) {
    let server = TokenServer::start().await;
    let clock = ManualClock::new(T0);
    let manager = builder(source(&server, &clock), &clock).build().unwrap();
    (server, clock, manager)
}

fn fetch_error(err: OutboundError) -> (u32, FetchError) {
    match err {
        OutboundError::Fetch {
            attempts, source, ..
        } => (attempts, *source),
        other => panic!("expected a fetch error, got {other:?}"),
    }
}

/// Waits (real time, bounded) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Token source.

#[tokio::test]
async fn basic_auth_form_urlencodes_id_and_secret_before_base64() {
    let (server, _clock, manager) = setup().await;
    let header = manager.token(AUD, SCOPE).await.unwrap();
    assert_eq!(header, "Bearer tok-1");
    assert!(header.is_sensitive());
    let form = server.last_form();
    assert_eq!(form_get(&form, "scope"), Some(SCOPE));
    assert_eq!(form_get(&form, "audience"), Some(AUD));
    assert_eq!(form_get(&form, "resource"), None);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn post_auth_and_rfc8707_resource() {
    let server = TokenServer::start().await;
    server.auth(Auth::Post);
    let clock = ManualClock::new(T0);
    let resource = "https://system.example/api";
    let src = ClientCredentials::builder(ID, SECRET)
        .token_url(server.url())
        .client_auth(ClientAuth::SecretPost)
        .audience_parameter(AudienceParameter::Resource)
        .http_client(http())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let manager = TokenManager::builder()
        .client(TokenClient::new("orders", src.clone()).with_audience(resource))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert_eq!(manager.token(resource, "").await.unwrap(), "Bearer tok-1");
    let form = server.last_form();
    assert_eq!(form_get(&form, "resource"), Some(resource));
    assert_eq!(form_get(&form, "audience"), None);
    assert_eq!(form_get(&form, "scope"), None);

    // RFC 8707: a resource that is not an absolute URI is refused when the config is built.
    let err = TokenManager::builder()
        .client(TokenClient::new("orders", src).with_audience("service-system"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("absolute URI"), "{err}");
}

#[tokio::test]
async fn wrong_client_auth_is_invalid_client_and_not_retried() {
    let server = TokenServer::start().await;
    server.auth(Auth::Post); // the client sends Basic
    let clock = ManualClock::new(T0);
    let manager = builder(source(&server, &clock), &clock).build().unwrap();
    let (attempts, err) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
    assert_eq!(attempts, 1);
    assert!(matches!(err, FetchError::OAuth(ref e) if e.code == OAuthErrorCode::InvalidClient));
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    for code in [
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "invalid_target",
        "unsupported_grant_type",
    ] {
        let (server, _clock, manager) = setup().await;
        server.set(Fault::OAuth(400, code));
        let (attempts, err) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
        assert_eq!(attempts, 1, "{code}");
        match err {
            FetchError::OAuth(e) => {
                assert_eq!(e.code.as_str(), code);
                assert_eq!(e.description.as_deref(), Some("rejected by test"));
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(server.requests(), 1, "{code} must not be retried");
    }
    // A wrong token_type is permanent too.
    let (server, _clock, manager) = setup().await;
    server.set(Fault::WrongType);
    let (attempts, err) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
    assert_eq!(attempts, 1);
    assert!(matches!(err, FetchError::TokenType(ref t) if t == "mac"));
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn transient_faults_are_retried_within_bounds() {
    // 500s: three attempts, then the error.
    let (server, _clock, manager) = setup().await;
    server.set(Fault::Status(500));
    let (attempts, err) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
    assert_eq!(attempts, 3);
    assert!(matches!(err, FetchError::Status { status, .. } if status == 500));
    assert_eq!(server.requests(), 3);

    // Bad JSON: retried, then an invalid response.
    let (server, _clock, manager) = setup().await;
    server.set(Fault::BadJson);
    let (attempts, err) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
    assert_eq!((attempts, server.requests()), (3, 3));
    assert!(matches!(err, FetchError::InvalidResponse(_)), "{err:?}");

    // A hanging endpoint: each attempt times out.
    let (server, _clock, manager) = setup().await;
    server.set(Fault::Hang);
    let started = Instant::now();
    let (attempts, err) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
    assert_eq!((attempts, server.requests()), (3, 3));
    assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // One 500 then a slow success: two requests, a token.
    let (server, _clock, manager) = setup().await;
    server.script(&[Fault::Status(500), Fault::Slow(Duration::from_millis(200))]);
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn retry_after_is_respected() {
    // Within a fetch: the second attempt waits for Retry-After, not the 10 ms backoff.
    let (server, clock, manager) = setup().await;
    server.script(&[Fault::RetryAfter(503, 1)]);
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    assert_eq!(server.requests(), 2);
    let times = server.state.times.lock().unwrap().clone();
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(990), "waited {gap:?}");

    // Longer than `max_retry_after`: the fetch ends, and nobody calls before it has passed.
    manager.invalidate(AUD, SCOPE);
    server.script(&[Fault::RetryAfter(429, 100)]);
    let (attempts, _) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
    assert_eq!((attempts, server.requests()), (1, 3));
    match manager.token(AUD, SCOPE).await.unwrap_err() {
        OutboundError::CircuitOpen { retry_after, .. } => {
            assert_eq!(retry_after, Duration::from_secs(100))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests(), 3);
    clock.advance(Duration::from_secs(100));
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-2");
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn discovery_finds_the_token_endpoint_and_checks_the_issuer() {
    let server = TokenServer::start().await;
    let clock = ManualClock::new(T0);
    let src = ClientCredentials::builder(ID, SECRET)
        .discovery(server.base.clone())
        .http_client(http())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let manager = builder(src.clone(), &clock).build().unwrap();
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");

    *server.state.issuer.lock().unwrap() = "https://impostor.example".into();
    let src = ClientCredentials::builder(ID, SECRET)
        .discovery(server.base.clone())
        .http_client(http())
        .build()
        .unwrap();
    let manager = builder(src, &clock).build().unwrap();
    let (attempts, err) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
    assert_eq!(attempts, 1);
    assert!(matches!(err, FetchError::Config(ref m) if m.contains("another issuer")));
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn expires_in_absent_uses_the_default_lifetime() {
    let server = TokenServer::start().await;
    server.expires_in(None);
    let clock = ManualClock::new(T0);
    let src = ClientCredentials::builder(ID, SECRET)
        .token_url(server.url())
        .default_lifetime(Duration::from_secs(120))
        .http_client(http())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let manager = builder(src, &clock).build().unwrap();
    let token = manager.access_token(AUD, SCOPE).await.unwrap();
    assert_eq!(token.expires_at_unix(), T0 + 120);
    assert!(!format!("{token:?}").contains("tok-1"));
    assert!(!format!("{manager:?}").contains(SECRET));
}

// ---------------------------------------------------------------------------------------------
// TokenManager.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_1000_callers_one_request() {
    let (server, _clock, manager) = setup().await;
    server.delay(Duration::from_millis(200));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let m = manager.clone();
        tasks.spawn(async move { m.token(AUD, SCOPE).await });
    }
    let mut n = 0;
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), "Bearer tok-1");
        n += 1;
    }
    assert_eq!(n, 1000);
    assert_eq!(server.requests(), 1);
    let stats = manager.stats();
    assert_eq!(stats.fetches, 1);
    assert_eq!(stats.hits + stats.misses, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_survives_the_first_caller_being_cancelled() {
    let (server, _clock, manager) = setup().await;
    server.delay(Duration::from_millis(300));
    // The first caller starts the fetch, then gives up.
    let first = tokio::time::timeout(Duration::from_millis(50), manager.token(AUD, SCOPE)).await;
    assert!(first.is_err(), "the first caller was cancelled");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..999 {
        let m = manager.clone();
        tasks.spawn(async move { m.token(AUD, SCOPE).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), "Bearer tok-1");
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_never_makes_callers_wait() {
    let (server, clock, manager) = setup().await;
    server.expires_in(Some(120)); // refresh 60 s before expiry
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    server.delay(Duration::from_millis(300));

    let mut max = Duration::ZERO;
    let mut calls = 0u32;
    for round in 2..=4 {
        clock.advance(Duration::from_secs(61)); // inside the refresh window
        let deadline = Instant::now() + Duration::from_millis(600);
        let mut seen_new = false;
        while Instant::now() < deadline {
            let started = Instant::now();
            let header = manager.token(AUD, SCOPE).await.unwrap();
            max = max.max(started.elapsed());
            calls += 1;
            seen_new |= header == format!("Bearer tok-{round}").as_str();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(seen_new, "round {round}: the refreshed token is in use");
        assert_eq!(server.requests(), round, "one refresh per window");
    }
    let stats = manager.stats();
    println!(
        "refresh-ahead: {calls} calls over 3 refreshes, max latency {max:?}, hit rate {:.4}, token requests {}",
        stats.hit_rate(),
        server.requests()
    );
    assert!(
        max < Duration::from_millis(50),
        "a caller waited {max:?} on a 300 ms endpoint"
    );
    assert_eq!(stats.misses, 1, "only the cold start missed");
    assert!(stats.hit_rate() >= 0.9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_expires_in_clamps_the_refresh_window() {
    let (server, clock, manager) = setup().await;
    server.expires_in(Some(10)); // shorter than the 60 s refresh-ahead: window clamped to 5 s
    manager.token(AUD, SCOPE).await.unwrap();
    for _ in 0..100 {
        manager.token(AUD, SCOPE).await.unwrap();
    }
    clock.advance(Duration::from_secs(4));
    for _ in 0..100 {
        manager.token(AUD, SCOPE).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.requests(), 1, "no refresh loop before the window");
    clock.advance(Duration::from_secs(1));
    manager.token(AUD, SCOPE).await.unwrap();
    eventually("the background refresh", || server.requests() == 2).await;
    for _ in 0..100 {
        manager.token(AUD, SCOPE).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.requests(), 2);
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-2");
    // Past the expiry without a refresh: callers wait for one fetch.
    clock.advance(Duration::from_secs(60));
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_opens_and_probes_once_per_cool_down() {
    let server = TokenServer::start().await;
    let clock = ManualClock::new(T0);
    let manager = builder(source(&server, &clock), &clock)
        .circuit(CircuitPolicy {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    server.set(Fault::Status(503));
    for i in 0..5 {
        let (attempts, _) = fetch_error(manager.token(AUD, SCOPE).await.unwrap_err());
        assert_eq!(attempts, 3, "fetch {i}");
    }
    assert_eq!(server.requests(), 15);

    for cool_down in 0..3 {
        // Open: refused at once, the endpoint is left alone.
        for _ in 0..100 {
            let started = Instant::now();
            let err = manager.token(AUD, SCOPE).await.unwrap_err();
            assert!(matches!(err, OutboundError::CircuitOpen { .. }), "{err:?}");
            assert!(started.elapsed() < Duration::from_millis(20));
        }
        assert_eq!(server.requests(), 15 + cool_down);
        clock.advance(Duration::from_secs(30));
        // After the cool-down: 50 concurrent callers, one probe with a single attempt.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let m = manager.clone();
            tasks.spawn(async move { m.token(AUD, SCOPE).await });
        }
        while let Some(r) = tasks.join_next().await {
            match r.unwrap().unwrap_err() {
                OutboundError::CircuitOpen { .. } => {}
                OutboundError::Fetch { attempts, .. } => assert_eq!(attempts, 1),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            server.requests(),
            15 + cool_down + 1,
            "one probe per cool-down"
        );
    }
    println!(
        "circuit: {} token requests for 5 failed fetches and 3 cool-downs; stats {:?}",
        server.requests(),
        manager.stats()
    );
    // The endpoint recovers: the next probe closes the circuit.
    server.set(Fault::Ok);
    clock.advance(Duration::from_secs(30));
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    assert_eq!(server.requests(), 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_outlives_an_outage() {
    let (server, clock, manager) = setup().await;
    server.expires_in(Some(120));
    manager.token(AUD, SCOPE).await.unwrap();
    server.set(Fault::Status(500));
    clock.advance(Duration::from_secs(61));
    for _ in 0..50 {
        assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    }
    eventually("the failed background refresh", || server.requests() == 4).await;
    for _ in 0..50 {
        assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-1");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.requests(), 4, "a failed refresh backs off");
}

#[tokio::test]
async fn invalidate_if_current_acts_once_per_interval() {
    let (server, clock, manager) = setup().await;
    let first = manager.token(AUD, SCOPE).await.unwrap();
    assert!(manager.invalidate_if_current(AUD, SCOPE, &first));
    let second = manager.token(AUD, SCOPE).await.unwrap();
    assert_eq!(second, "Bearer tok-2");
    // The old token again: not current, nothing happens.
    assert!(!manager.invalidate_if_current(AUD, SCOPE, &first));
    // The current one, too soon: rate-limited.
    assert!(!manager.invalidate_if_current(AUD, SCOPE, &second));
    clock.advance(Duration::from_secs(10));
    assert!(manager.invalidate_if_current(AUD, SCOPE, &second));
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-3");
    assert!(manager.invalidate(AUD, SCOPE));
    assert_eq!(manager.token(AUD, SCOPE).await.unwrap(), "Bearer tok-4");
    assert_eq!(server.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_sharing_a_store_fetch_once() {
    let server = TokenServer::start().await;
    server.delay(Duration::from_millis(200));
    let clock = ManualClock::new(T0);
    let store: Arc<dyn TokenStore> =
        Arc::new(MemoryTokenStore::with_clock(Arc::new(clock.clone())));
    let replica = || {
        builder(source(&server, &clock), &clock)
            .store(store.clone())
            .lock_wait(Duration::from_secs(2), Duration::from_millis(10))
            .build()
            .unwrap()
    };
    let (a, b) = (replica(), replica());
    let (ta, tb) = tokio::join!(a.token(AUD, SCOPE), b.token(AUD, SCOPE));
    assert_eq!(ta.unwrap(), tb.unwrap());
    assert_eq!(server.requests(), 1);
    // Invalidation reaches the store: the other replica does not adopt the dead token.
    let stale = a.token(AUD, SCOPE).await.unwrap();
    assert!(a.invalidate_if_current(AUD, SCOPE, &stale));
    assert_eq!(a.token(AUD, SCOPE).await.unwrap(), "Bearer tok-2");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn unconfigured_pairs_and_clients() {
    let (server, _clock, manager) = setup().await;
    // One client: it serves any pair (a slower first lookup).
    assert_eq!(manager.token("reports", "").await.unwrap(), "Bearer tok-1");
    assert_eq!(manager.token("reports", "").await.unwrap(), "Bearer tok-1");
    assert_eq!(
        manager.client_token("orders").await.unwrap(),
        "Bearer tok-2"
    );
    assert!(matches!(
        manager.client_token("nope").await.unwrap_err(),
        OutboundError::UnknownClient(_)
    ));
    assert_eq!(server.requests(), 2);
}

// ---------------------------------------------------------------------------------------------
// Injection.

/// A destination that records the `Authorization` of every request.
struct Destination {
    base: String,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    /// Answer 401 `invalid_token` to this `Authorization` value.
    refuse: Arc<Mutex<Option<String>>>,
}

impl Destination {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let refuse: Arc<Mutex<Option<String>>> = Arc::default();
        let (s, r) = (seen.clone(), refuse.clone());
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                s.lock().unwrap().push(auth.clone());
                if auth.is_some() && *r.lock().unwrap() == auth {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(
                            "www-authenticate",
                            r#"Bearer realm="api", error="invalid_token""#,
                        )],
                        "",
                    )
                        .into_response();
                }
                (StatusCode::OK, body).into_response()
            }
        });
        Self {
            base: serve(app).await,
            seen,
            refuse,
        }
    }
    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

struct Fixture {
    server: TokenServer,
    listed: Destination,
    other: Destination,
    clock: ManualClock,
    layer: InjectBearerLayer,
}

async fn injection_setup(layer: impl FnOnce(InjectBearerLayer) -> InjectBearerLayer) -> Fixture {
    let server = TokenServer::start().await;
    let (listed, other) = (Destination::start().await, Destination::start().await);
    let clock = ManualClock::new(T0);
    let manager = TokenManager::builder()
        .client(
            TokenClient::new("orders", source(&server, &clock))
                .with_audience(AUD)
                .with_scope(SCOPE)
                .with_destination(&listed.base)
                .unwrap()
                .with_skip_clients(["payments-gateway"]),
        )
        .clock(Arc::new(clock.clone()))
        .retry(fast_retry())
        .build()
        .unwrap();
    let layer = layer(InjectBearerLayer::new(manager));
    Fixture {
        server,
        listed,
        other,
        clock,
        layer,
    }
}

fn get_req(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn tokens_go_only_to_listed_destinations() {
    let Fixture {
        server,
        listed,
        other,
        layer,
        ..
    } = injection_setup(|l| l).await;
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    for _ in 0..3 {
        let res = client
            .clone()
            .oneshot(get_req(&format!("{}/internal/ping", listed.base)))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let res = client
            .clone()
            .oneshot(get_req(&format!("{}/public", other.base)))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(listed.seen(), vec![Some("Bearer tok-1".to_owned()); 3]);
    assert_eq!(other.seen(), vec![None; 3], "the token leaked");

    // SkipBearer skips one request; an existing Authorization is left alone.
    let mut skipped = get_req(&format!("{}/x", listed.base));
    skipped.extensions_mut().insert(SkipBearer);
    client.clone().oneshot(skipped).await.unwrap();
    let mut own = get_req(&format!("{}/x", listed.base));
    own.headers_mut()
        .insert("authorization", "Bearer mine".parse().unwrap());
    client.clone().oneshot(own).await.unwrap();
    let seen = listed.seen();
    assert_eq!(seen[3], None);
    assert_eq!(seen[4].as_deref(), Some("Bearer mine"));

    // ... unless told to override it.
    let overriding = ServiceBuilder::new()
        .layer(layer.clone().with_override(true))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let mut own = get_req(&format!("{}/x", listed.base));
    own.headers_mut()
        .insert("authorization", "Bearer mine".parse().unwrap());
    overriding.oneshot(own).await.unwrap();
    assert_eq!(listed.seen()[5].as_deref(), Some("Bearer tok-1"));

    // A client named in skip-clients gets nothing.
    let payments = ServiceBuilder::new()
        .layer(layer.clone().with_client_name("payments-gateway"))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    payments
        .oneshot(get_req(&format!("{}/x", listed.base)))
        .await
        .unwrap();
    assert_eq!(listed.seen()[6], None);

    // Strict mode: an unlisted origin fails before anything is sent.
    let strict = ServiceBuilder::new()
        .layer(layer.with_strict(true))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let err: BoxError = strict
        .oneshot(get_req(&format!("{}/public", other.base)))
        .await
        .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<InjectError>(),
        Some(InjectError::UnlistedDestination { .. })
    ));
    assert_eq!(other.seen().len(), 3);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn no_token_no_request() {
    let Fixture {
        server,
        listed,
        layer,
        ..
    } = injection_setup(|l| l).await;
    server.set(Fault::OAuth(401, "invalid_client"));
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let err = client
        .oneshot(get_req(&format!("{}/internal/ping", listed.base)))
        .await
        .unwrap_err();
    match err.downcast_ref::<InjectError>() {
        Some(InjectError::Token { client, source }) => {
            assert_eq!(&**client, "orders");
            assert!(matches!(source, OutboundError::Fetch { attempts: 1, .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(listed.seen().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn reactive_mode_refreshes_a_refused_token_and_replays_once() {
    let Fixture {
        server,
        listed,
        clock,
        layer,
        ..
    } = injection_setup(|l| l.with_reactive(true)).await;
    *listed.refuse.lock().unwrap() = Some("Bearer tok-1".into());
    let client = ServiceBuilder::new()
        .layer(layer.clone().with_replay(CloneBody))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let req = http::Request::post(format!("{}/internal/orders", listed.base))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let res = client.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"payload", "the replay carried the body");
    assert_eq!(
        listed.seen(),
        vec![Some("Bearer tok-1".into()), Some("Bearer tok-2".into())]
    );
    assert_eq!(server.requests(), 2);

    // Without a replayable copy: the 401 comes back, the next request has the new token.
    clock.advance(Duration::from_secs(10)); // one invalidation per slot per 10 s
    *listed.refuse.lock().unwrap() = Some("Bearer tok-2".into());
    let plain = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let res = plain
        .clone()
        .oneshot(get_req(&format!("{}/x", listed.base)))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = plain
        .oneshot(get_req(&format!("{}/x", listed.base)))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(listed.seen()[3].as_deref(), Some("Bearer tok-3"));
}
