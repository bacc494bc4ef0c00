//! Fault runs under load: each fault is injected into real servers on 127.0.0.1 while client
//! tasks keep sending requests, and its expected outcome is asserted and printed as a table row.
//!
//! ```text
//! cargo run --release --features full --example faults -- [SECONDS] [--only NAME] [--record docs/reliability.md]
//! ```
//! (`scripts/faults.sh [SECONDS]` does this; needs features `issuer` and `redis`, and
//! `redis-server` on PATH.) `SECONDS` (default 120) is the length of the longest fault (the JWKS
//! outage); the others scale with it.
//!
//! | fault | asserted |
//! |---|---|
//! | `jwks-down`: JWKS endpoint down (listener and connections closed) for SECONDS | valid tokens 0 failures; after it is back a token of a key published meanwhile verifies, no restart |
//! | `jwks-garbage`: HTML, truncated JSON, `{"keys":[]}`, 500 in turn | valid tokens 0 failures; the refresh kept trying; recovery |
//! | `key-rotation`: published ahead, then abrupt (signing with a key the verifier has not fetched) | 0 failures |
//! | `token-endpoint`: down, then up; slow; flapping | outbound calls 0 failures until the cached token expires; the circuit opens, one probe per cool-down; recovery; slow and flapping 0 failures |
//! | `redis`: `redis-server` killed, restarted | outbound 0 failures; `pv` routes answer 503 once past their staleness bound, never a stale 200, then recover |
//! | `issuer-replica`: two `AuthorizationServer`s on one key directory, one killed mid-rotation | tokens from the survivor verify, its rotation completes, 0 failures for clients that retry against the survivor |
//!
//! The verifiers here run without the verified-token cache (`token_cache(0)`), so every request
//! needs the cached key set (the strictest case); the issuer scenario keeps the default cache.

#[path = "support/reliability.rs"]
mod reliability;

#[cfg(not(all(feature = "issuer", feature = "redis")))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "the faults example needs features `issuer` and `redis`: cargo run --features full --example faults"
    );
    std::process::ExitCode::from(2)
}

#[cfg(all(feature = "issuer", feature = "redis"))]
fn main() -> Result<(), reliability::BoxError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run::main())
}

#[cfg(all(feature = "issuer", feature = "redis"))]
mod run {
    use std::fmt::Write as _;
    use std::future::Future;
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use bytes::Bytes;
    use http_body_util::Full;
    use serde_json::{Value, json};
    use tower::{Layer as _, ServiceExt as _};
    use tower_bearer::config::Secret;
    use tower_bearer::http_client::BoxFuture;
    use tower_bearer::issuer::AuthorizationServer;
    use tower_bearer::issuer::clients::RegisteredClient;
    use tower_bearer::issuer::config::{AuthMethod, GrantType};
    use tower_bearer::issuer::keys::KeyOptions;
    use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
    use tower_bearer::jwks::{Algorithm, KeySet, RemoteOptions};
    use tower_bearer::outbound::{
        CircuitPolicy, ClientCredentials, InjectBearerLayer, RetryPolicy, TokenClient, TokenManager,
    };
    use tower_bearer::policy::{PolicyVersionLayer, PolicyVersions};
    use tower_bearer::signing::SigningKey;
    use tower_bearer::store::{RedisPolicyVersions, RedisTokenStore};
    use tower_bearer::{IssuerConfig, JwtAuthLayer, Verifier};

    use super::reliability::{
        BoxError, HttpClient, Switch, date_utc, http_client, http_get, machine, now_unix, profile,
        quantile_ms, record_section, send,
    };

    const AUD: &str = "faults";

    // -----------------------------------------------------------------------------------------
    // Load: workers calling an async probe at a paced rate, every outcome time-stamped.

    #[derive(Clone, Copy, Debug)]
    struct Event {
        at: Duration,
        took: Duration,
        /// HTTP status, or 0 for a transport / client error.
        code: u16,
        /// Which kind of request (scenario-defined).
        tag: u8,
        /// Scenario-defined detail (e.g. circuit open).
        note: u8,
    }

    struct Load {
        t0: Instant,
        events: Arc<Mutex<Vec<Event>>>,
        stop: Arc<AtomicBool>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Load {
        /// `workers` tasks, each sending one request every `pace` (closed loop, paced).
        fn start<F, Fut>(t0: Instant, workers: usize, pace: Duration, probe: F) -> Self
        where
            F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = (u16, u8, u8)> + Send + 'static,
        {
            let events = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let counter = Arc::new(AtomicU64::new(0));
            let tasks = (0..workers)
                .map(|_| {
                    let (probe, events, stop, counter) =
                        (probe.clone(), events.clone(), stop.clone(), counter.clone());
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(pace);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        while !stop.load(Ordering::Relaxed) {
                            tick.tick().await;
                            let i = counter.fetch_add(1, Ordering::Relaxed);
                            let sent = Instant::now();
                            let (code, tag, note) = probe(i).await;
                            let e = Event {
                                at: sent - t0,
                                took: sent.elapsed(),
                                code,
                                tag,
                                note,
                            };
                            events.lock().expect("not poisoned").push(e);
                        }
                    })
                })
                .collect();
            Self {
                t0,
                events,
                stop,
                tasks,
            }
        }

        fn now(&self) -> Duration {
            self.t0.elapsed()
        }

        async fn finish(self) -> Vec<Event> {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.tasks {
                let _ = t.await;
            }
            let mut v = self.events.lock().expect("not poisoned").clone();
            v.sort_by_key(|e| e.at);
            v
        }
    }

    fn in_window(events: &[Event], from: Duration, to: Duration) -> impl Iterator<Item = &Event> {
        events.iter().filter(move |e| e.at >= from && e.at < to)
    }

    /// Recovery after `up`: the first 200, the moment from which every request succeeded (the
    /// end of the last failed one, `up` when none failed), the failures after `up`, and the 200s
    /// sent after that moment.
    struct Recovery {
        first_ok: Option<Duration>,
        settled: Duration,
        failures: usize,
        ok_after: usize,
    }

    fn recovery<'a>(events: impl Iterator<Item = &'a Event> + Clone, up: Duration) -> Recovery {
        let after = events.filter(move |e| e.at >= up);
        let first_ok = after.clone().find(|e| e.code == 200).map(|e| e.at - up);
        let settled = after
            .clone()
            .filter(|e| e.code != 200)
            .map(|e| e.at + e.took - up)
            .max()
            .unwrap_or_default();
        Recovery {
            first_ok,
            settled,
            failures: after.clone().filter(|e| e.code != 200).count(),
            ok_after: after
                .filter(|e| e.at >= up + settled && e.code == 200)
                .count(),
        }
    }

    impl Recovery {
        fn within(&self, bound: Duration) -> bool {
            self.first_ok.is_some() && self.settled <= bound && self.ok_after > 0
        }
        fn describe(&self) -> String {
            format!(
                "first 200 {}, all answers 200 from {} on ({} failed before)",
                self.first_ok.map_or("never".to_owned(), secs),
                secs(self.settled),
                self.failures
            )
        }
    }

    fn secs(d: Duration) -> String {
        format!("{:.1} s", d.as_secs_f64())
    }

    // -----------------------------------------------------------------------------------------
    // The result table.

    struct Row {
        fault: String,
        expected: String,
        observed: String,
        pass: bool,
    }

    struct Table {
        rows: Vec<Row>,
    }

    /// Named checks: each expression with its source text.
    macro_rules! checks {
        ($($e:expr),+ $(,)?) => { vec![$((stringify!($e), $e)),+] };
    }

    impl Table {
        fn row(
            &mut self,
            fault: &str,
            expected: &str,
            observed: String,
            checks: Vec<(&str, bool)>,
        ) {
            let pass = checks.iter().all(|(_, ok)| *ok);
            let mut observed = observed;
            if !pass {
                let failed: Vec<&str> = checks
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(name, _)| *name)
                    .collect();
                observed.push_str(&format!(" — failed checks: `{}`", failed.join("`, `")));
            }
            println!(
                "| {fault} | {expected} | {observed} | {} |",
                if pass { "PASS" } else { "**FAIL**" }
            );
            self.rows.push(Row {
                fault: fault.to_owned(),
                expected: expected.to_owned(),
                observed,
                pass,
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // An identity provider whose JWKS endpoint can go down or answer garbage.

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Jwks {
        Keys,
        Html,
        Truncated,
        EmptySet,
        Status500,
    }

    struct IdpState {
        keys: Mutex<Value>,
        mode: Mutex<Jwks>,
        hits: AtomicU64,
    }

    async fn jwks(State(s): State<Arc<IdpState>>) -> Response {
        s.hits.fetch_add(1, Ordering::Relaxed);
        let mode = *s.mode.lock().expect("not poisoned");
        let keys = s.keys.lock().expect("not poisoned").to_string();
        let mut h = HeaderMap::new();
        h.insert("cache-control", "max-age=1".parse().expect("static"));
        match mode {
            Jwks::Keys => {
                h.insert("content-type", "application/json".parse().expect("static"));
                (h, keys).into_response()
            }
            Jwks::Html => (
                [("content-type", "text/html")],
                "<html><body>maintenance</body></html>",
            )
                .into_response(),
            Jwks::Truncated => {
                h.insert("content-type", "application/json".parse().expect("static"));
                (h, keys[..keys.len() / 2].to_owned()).into_response()
            }
            Jwks::EmptySet => (h, axum::Json(json!({"keys": []}))).into_response(),
            Jwks::Status500 => (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": "oops"})),
            )
                .into_response(),
        }
    }

    struct Idp {
        server: Switch,
        state: Arc<IdpState>,
    }

    impl Idp {
        async fn start(keys: &[&SigningKey]) -> Result<Self, BoxError> {
            let state = Arc::new(IdpState {
                keys: Mutex::new(jwks_of(keys)),
                mode: Mutex::new(Jwks::Keys),
                hits: AtomicU64::new(0),
            });
            let server = Switch::serve(
                Router::new()
                    .route("/jwks", get(jwks))
                    .with_state(state.clone()),
            )
            .await?;
            Ok(Self { server, state })
        }
        fn url(&self) -> String {
            format!("{}/jwks", self.server.base())
        }
        fn set_keys(&self, keys: &[&SigningKey]) {
            *self.state.keys.lock().expect("not poisoned") = jwks_of(keys);
        }
        fn set_mode(&self, mode: Jwks) {
            *self.state.mode.lock().expect("not poisoned") = mode;
        }
        fn hits(&self) -> u64 {
            self.state.hits.load(Ordering::Relaxed)
        }
    }

    fn jwks_of(keys: &[&SigningKey]) -> Value {
        json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()})
    }

    const ISS: &str = "https://idp.faults.test";

    fn user_token(key: &SigningKey, u: u64, pv: Option<i64>) -> Result<String, BoxError> {
        let now = now_unix();
        let mut c = json!({
            "iss": ISS, "aud": AUD, "sub": format!("user{u}"), "uid": format!("u-{u}"),
            "scope": "orders.read", "roles": ["user"], "iat": now - 10, "exp": now + 3 * 3600,
            "jti": format!("j-{u}-{}", key.kid()),
        });
        if let Some(pv) = pv {
            c["pv"] = json!(pv);
        }
        Ok(key.sign(&c)?)
    }

    /// A resource server verifying against `jwks_url`, without the token cache.
    async fn resource_server(jwks_url: String) -> Result<Switch, BoxError> {
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::jwks_uri(ISS, jwks_url))
            .audience(AUD)
            .token_cache(0)
            .remote_options(fast_remote())
            .build()?;
        let app = Router::new()
            .route("/api", get(|| async { "ok" }))
            .layer(JwtAuthLayer::new(verifier));
        Switch::serve(app).await
    }

    fn fast_remote() -> RemoteOptions {
        RemoteOptions {
            min_refresh_interval: Duration::from_secs(1),
            unknown_kid_cooldown: Duration::from_secs(1),
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(2),
            ..RemoteOptions::default()
        }
    }

    async fn status_of(client: &HttpClient, url: &str, token: &str) -> u16 {
        match http_get(client, url, Some(token), Duration::from_secs(10)).await {
            Ok(r) => r.status,
            Err(_) => 0,
        }
    }

    /// An IdP publishing `keys`, and a resource server verifying against it; the API's URL.
    async fn idp_and_api(keys: &[&SigningKey]) -> Result<(Idp, Switch, String), BoxError> {
        let idp = Idp::start(keys).await?;
        let rs = resource_server(idp.url()).await?;
        let url = format!("{}/api", rs.base());
        Ok((idp, rs, url))
    }

    /// The tokens of users `0..n`, signed by `key`, with policy version `pv`.
    fn user_tokens(
        key: &SigningKey,
        n: u64,
        pv: Option<i64>,
    ) -> Result<Arc<Vec<String>>, BoxError> {
        let tokens = (0..n)
            .map(|u| user_token(key, u, pv))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(tokens))
    }

    /// Load on `url` (4 workers, one request every `pace` each): request `i` carries the token
    /// `pick(i)` chooses, and is recorded with the tag and note it gives.
    fn token_load<P>(t0: Instant, pace: Duration, client: &HttpClient, url: &str, pick: P) -> Load
    where
        P: Fn(u64) -> (String, u8, u8) + Send + Sync + 'static,
    {
        let (client, url, pick) = (client.clone(), url.to_owned(), Arc::new(pick));
        Load::start(t0, 4, pace, move |i| {
            let (token, tag, note) = pick(i);
            let (client, url) = (client.clone(), url.clone());
            async move { (status_of(&client, &url, &token).await, tag, note) }
        })
    }

    // -----------------------------------------------------------------------------------------
    // 1. JWKS endpoint down.

    async fn jwks_down(table: &mut Table, s: u64) -> Result<(), BoxError> {
        let k1 = SigningKey::generate(Algorithm::ES256)?;
        let k2 = SigningKey::generate(Algorithm::ES256)?;
        let (mut idp, _rs, url) = idp_and_api(&[&k1]).await?;
        let t1 = user_tokens(&k1, 50, None)?;
        let t2 = user_tokens(&k2, 50, None)?;
        let new_key_on = Arc::new(AtomicBool::new(false));
        let client = http_client();
        let t0 = Instant::now();
        let on = new_key_on.clone();
        let load = token_load(t0, Duration::from_millis(20), &client, &url, move |i| {
            let second = on.load(Ordering::Relaxed) && i % 2 == 1;
            let tokens = if second { &t2 } else { &t1 };
            (tokens[(i % 50) as usize].clone(), u8::from(second), 0)
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let down_at = load.now();
        let hits_before = idp.hits();
        idp.server.stop();
        tokio::time::sleep(Duration::from_secs(s)).await;
        // Back, with a key published meanwhile.
        idp.set_keys(&[&k1, &k2]);
        idp.server.start().await?;
        let up_at = load.now();
        new_key_on.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let events = load.finish().await;
        let hits_after = idp.hits() - hits_before;

        let old: Vec<&Event> = events.iter().filter(|e| e.tag == 0).collect();
        let old_failed = old.iter().filter(|e| e.code != 200).count();
        let during = in_window(&events, down_at, up_at)
            .filter(|e| e.tag == 0)
            .count();
        let mut during_lat: Vec<Duration> =
            in_window(&events, down_at, up_at).map(|e| e.took).collect();
        during_lat.sort();
        let new: Vec<&Event> = events.iter().filter(|e| e.tag == 1).collect();
        let rec = recovery(new.iter().copied(), up_at);
        let bound = Duration::from_secs(5);
        let pass = checks![
            old_failed == 0,
            during > 0,
            hits_before >= 2,
            hits_after > 0,
            rec.within(bound)
        ];
        table.row(
            &format!("JWKS endpoint down {s} s (listener and connections closed)"),
            "valid tokens: 0 failures; back up: a key published meanwhile verifies within 5 s, no restart",
            format!(
                "{hits_before} JWKS fetches before the outage (max-age 1 s); {} requests with valid tokens, {old_failed} failed ({during} during the outage, p99 {:.1} ms); \
                 a key published meanwhile, after the endpoint came back: {} ({hits_after} JWKS fetches)",
                old.len(),
                quantile_ms(&during_lat, 0.99),
                rec.describe(),
            ),
            pass,
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // 2. JWKS answers garbage.

    async fn jwks_garbage(table: &mut Table, s: u64) -> Result<(), BoxError> {
        let k1 = SigningKey::generate(Algorithm::ES256)?;
        let k2 = SigningKey::generate(Algorithm::ES256)?;
        let (idp, _rs, url) = idp_and_api(&[&k1]).await?;
        let t1 = user_tokens(&k1, 50, None)?;
        let t2 = user_token(&k2, 7, None)?;
        let client = http_client();
        let t0 = Instant::now();
        let load = token_load(t0, Duration::from_millis(20), &client, &url, move |i| {
            (t1[(i % 50) as usize].clone(), 0, 0)
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let modes = [Jwks::Html, Jwks::Truncated, Jwks::EmptySet, Jwks::Status500];
        let each = Duration::from_secs((s / 8).max(3));
        let mut tried = Vec::new();
        for m in modes {
            let before = idp.hits();
            idp.set_mode(m);
            tokio::time::sleep(each).await;
            tried.push(format!("{m:?} {} fetches", idp.hits() - before));
        }
        let kept_trying = tried.iter().all(|t| !t.ends_with(" 0 fetches"));
        idp.set_keys(&[&k1, &k2]);
        idp.set_mode(Jwks::Keys);
        let back = Instant::now();
        let mut recovered = None;
        while back.elapsed() < Duration::from_secs(10) {
            if status_of(&client, &url, &t2).await == 200 {
                recovered = Some(back.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let events = load.finish().await;
        let failed = events.iter().filter(|e| e.code != 200).count();
        table.row(
            &format!("JWKS answers garbage ({} each: HTML, truncated JSON, empty set, 500)", secs(each)),
            "valid tokens: 0 failures; the refresh keeps trying; a new key verifies once the JWKS is sane",
            format!(
                "{} requests, {failed} failed; {}; new key verified {} after",
                events.len(),
                tried.join(", "),
                recovered.map_or("never".to_owned(), secs)
            ),
            checks![failed == 0, kept_trying, recovered.is_some()],
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // 3. Key rotation mid-load.

    async fn key_rotation(table: &mut Table, s: u64) -> Result<(), BoxError> {
        let keys: Vec<SigningKey> = (0..3)
            .map(|_| SigningKey::generate(Algorithm::ES256))
            .collect::<Result<_, _>>()?;
        let (idp, _rs, url) = idp_and_api(&[&keys[0]]).await?;
        let tokens: Vec<Arc<Vec<String>>> = keys
            .iter()
            .map(|k| user_tokens(k, 50, None))
            .collect::<Result<_, _>>()?;
        let signer = Arc::new(AtomicU64::new(0));
        let client = http_client();
        let t0 = Instant::now();
        let key_in_use = signer.clone();
        let load = token_load(t0, Duration::from_millis(20), &client, &url, move |i| {
            let k = key_in_use.load(Ordering::Relaxed) as usize;
            (tokens[k][(i % 50) as usize].clone(), k as u8, 0)
        });
        let phase = Duration::from_secs((s / 16).max(2));
        tokio::time::sleep(phase).await;
        // Graceful: published first, signing after the verifiers' refresh, old key retired later.
        idp.set_keys(&[&keys[0], &keys[1]]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        signer.store(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        idp.set_keys(&[&keys[1]]);
        tokio::time::sleep(phase).await;
        let abrupt_at = load.now();
        // Abrupt: the next key signs the moment it is published.
        idp.set_keys(&[&keys[1], &keys[2]]);
        signer.store(2, Ordering::Relaxed);
        tokio::time::sleep(phase).await;
        let events = load.finish().await;
        let graceful_failed = events
            .iter()
            .filter(|e| e.at < abrupt_at && e.code != 200)
            .count();
        let graceful = events.iter().filter(|e| e.at < abrupt_at).count();
        let by_key: Vec<usize> = (0..3)
            .map(|k| {
                events
                    .iter()
                    .filter(|e| e.tag == k && e.code == 200)
                    .count()
            })
            .collect();
        table.row(
            "Key rotation mid-load, published ahead (publish, sign after 3 s, retire the old key 2 s later)",
            "0 failures",
            format!("{graceful} requests, {graceful_failed} failed; 200s by key: old {}, new {}", by_key[0], by_key[1]),
            checks![graceful_failed == 0, by_key[0] > 0, by_key[1] > 0],
        );
        let abrupt_failed = events
            .iter()
            .filter(|e| e.at >= abrupt_at && e.code != 200)
            .count();
        let abrupt = events.iter().filter(|e| e.at >= abrupt_at).count();
        table.row(
            "Key rotation mid-load, abrupt (a new key signs the moment it is published)",
            "0 failures (unknown `kid` → one on-demand JWKS fetch)",
            format!(
                "{abrupt} requests, {abrupt_failed} failed; 200s with the new key {}",
                by_key[2]
            ),
            checks![abrupt_failed == 0, by_key[2] > 0],
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // 4. Token endpoint faults (outbound).

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Tep {
        Ok,
        Slow(Duration),
        /// 503 and OK in turn, this long each.
        Flap(Duration),
    }

    struct TepState {
        key: SigningKey,
        mode: Mutex<Tep>,
        expires_in: AtomicU64,
        requests: AtomicU64,
        issued: AtomicU64,
        started: Instant,
    }

    async fn token_endpoint(State(s): State<Arc<TepState>>) -> Response {
        s.requests.fetch_add(1, Ordering::Relaxed);
        let mode = *s.mode.lock().expect("not poisoned");
        let fail = match mode {
            Tep::Ok => false,
            Tep::Slow(d) => {
                tokio::time::sleep(d).await;
                false
            }
            Tep::Flap(p) => (s.started.elapsed().as_millis() / p.as_millis().max(1)) % 2 == 0,
        };
        if fail {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "temporarily_unavailable"})),
            )
                .into_response();
        }
        let n = s.issued.fetch_add(1, Ordering::Relaxed);
        let now = now_unix();
        let exp = s.expires_in.load(Ordering::Relaxed);
        let token = match s.key.sign(&json!({
            "iss": "https://token.faults.test", "aud": AUD, "sub": "orders-client",
            "client_id": "orders-client", "gty": "client-credentials", "scope": "internal-service",
            "iat": now, "exp": now + exp, "jti": format!("svc-{n}"),
        })) {
            Ok(t) => t,
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
        axum::Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": exp}))
            .into_response()
    }

    struct Outbound {
        tep: Switch,
        tep_state: Arc<TepState>,
        downstream: Switch,
    }

    impl Outbound {
        async fn start() -> Result<Self, BoxError> {
            let key = SigningKey::generate(Algorithm::ES256)?;
            let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::ES256])?;
            let tep_state = Arc::new(TepState {
                key,
                mode: Mutex::new(Tep::Ok),
                expires_in: AtomicU64::new(3600),
                requests: AtomicU64::new(0),
                issued: AtomicU64::new(0),
                started: Instant::now(),
            });
            let tep = Switch::serve(
                Router::new()
                    .route("/oauth2/token", post(token_endpoint))
                    .with_state(tep_state.clone()),
            )
            .await?;
            let verifier = Verifier::builder()
                .issuer(
                    IssuerConfig::static_keys("https://token.faults.test", keys)
                        .service_tokens(true),
                )
                .audience(AUD)
                .build()?;
            let downstream = Switch::serve(
                Router::new()
                    .route("/internal", get(|| async { "ok" }))
                    .layer(JwtAuthLayer::new(verifier)),
            )
            .await?;
            Ok(Self {
                tep,
                tep_state,
                downstream,
            })
        }

        fn manager(
            &self,
            circuit: CircuitPolicy,
            store: Option<RedisTokenStore>,
        ) -> Result<TokenManager, BoxError> {
            let source = ClientCredentials::builder("orders-client", "test-only-secret")
                .token_url(format!("{}/oauth2/token", self.tep.base()))
                .build()?;
            let mut b = TokenManager::builder()
                .client(
                    TokenClient::new("orders", source)
                        .with_audience(AUD)
                        .with_scope("internal-service")
                        .with_destination(&self.downstream.base())?,
                )
                .refresh_ahead(Duration::from_secs(5))
                .refresh_jitter(0.0)
                .retry(RetryPolicy {
                    max_attempts: 2,
                    attempt_timeout: Duration::from_secs(3),
                    backoff_base: Duration::from_millis(100),
                    backoff_max: Duration::from_millis(400),
                    max_retry_after: Duration::from_secs(1),
                })
                .circuit(circuit);
            if let Some(store) = store {
                b = b.store(Arc::new(store)).store_key_prefix("faults");
            }
            Ok(b.build()?)
        }

        fn set(&self, mode: Tep) {
            *self.tep_state.mode.lock().expect("not poisoned") = mode;
        }

        /// Outbound calls through `InjectBearerLayer` + hyper; tag 0, note 1 when the circuit
        /// was open.
        fn load(&self, t0: Instant, manager: &TokenManager) -> Load {
            let svc = InjectBearerLayer::new(manager.clone()).layer(http_client());
            let url = format!("{}/internal", self.downstream.base());
            Load::start(t0, 4, Duration::from_millis(25), move |_| {
                let (svc, url) = (svc.clone(), url.clone());
                async move {
                    let Ok(req) = http::Request::get(&url).body(Full::new(Bytes::new())) else {
                        return (0, 0, 0);
                    };
                    match tokio::time::timeout(Duration::from_secs(15), svc.oneshot(req)).await {
                        Ok(Ok(res)) => (res.status().as_u16(), 0, 0),
                        Ok(Err(e)) => {
                            let circuit = format!("{e:?}").contains("CircuitOpen");
                            (0, 0, u8::from(circuit))
                        }
                        Err(_) => (0, 0, 0),
                    }
                }
            })
        }
    }

    async fn token_endpoint_faults(table: &mut Table, s: u64) -> Result<(), BoxError> {
        let mut ob = Outbound::start().await?;
        let cool_down = Duration::from_secs(3);
        let manager = ob.manager(
            CircuitPolicy {
                failure_threshold: 3,
                cool_down,
            },
            None,
        )?;
        // Down: the cached token serves until it expires, then the circuit opens.
        let lifetime = (s / 4).max(6);
        ob.tep_state.expires_in.store(lifetime, Ordering::Relaxed);
        let t0 = Instant::now();
        let fetched_at = Instant::now();
        manager.token(AUD, "internal-service").await?;
        let expiry = fetched_at.elapsed() + Duration::from_secs(lifetime) - Duration::from_secs(1);
        let load = ob.load(t0, &manager);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let down_at = load.now();
        ob.tep.stop();
        // Until expiry, and a failing period after it.
        let failing = Duration::from_secs((s / 8).max(4));
        tokio::time::sleep(Duration::from_secs(lifetime) + failing).await;
        let fetches_open_from = manager.stats().fetches;
        let open_from = load.now();
        tokio::time::sleep(Duration::from_secs((s / 8).max(6))).await;
        let open_to = load.now();
        let probes = manager.stats().fetches - fetches_open_from;
        ob.tep.start().await?;
        let up_at = load.now();
        tokio::time::sleep(cool_down + Duration::from_secs(3)).await;
        let events = load.finish().await;
        let expiry_at = expiry.saturating_sub(t0.elapsed().saturating_sub(fetched_at.elapsed()));
        let before_expiry = in_window(&events, Duration::ZERO, expiry_at);
        let (mut n_before, mut failed_before) = (0, 0);
        for e in before_expiry {
            n_before += 1;
            failed_before += usize::from(e.code != 200);
        }
        let after: Vec<&Event> =
            in_window(&events, expiry_at + Duration::from_secs(2), up_at).collect();
        let after_failed = after.iter().filter(|e| e.code != 200).count();
        let circuit_fast = after.iter().filter(|e| e.note == 1).count();
        let window = open_to - open_from;
        let expected_probes = window.as_secs_f64() / cool_down.as_secs_f64();
        let probes_ok =
            (probes as f64) <= expected_probes + 1.0 && (probes as f64) >= expected_probes - 1.5;
        let rec = recovery(events.iter(), up_at);
        let pass = checks![
            failed_before == 0,
            n_before > 0,
            after_failed == after.len(),
            circuit_fast > 0,
            probes_ok,
            rec.within(cool_down + Duration::from_secs(2))
        ];
        table.row(
            &format!("Token endpoint down (token lifetime {lifetime} s, down {} s, circuit 3 failures / {} cool-down)", (up_at - down_at).as_secs(), secs(cool_down)),
            "0 failures until the cached token expires; then refused, circuit open (fast), one probe per cool-down; recovery at the next probe",
            format!(
                "{n_before} calls before expiry, {failed_before} failed; after expiry {} of {} refused ({circuit_fast} by the open circuit); \
                 {probes} probes in {} (≈{expected_probes:.1} cool-downs); after the endpoint came back: {}",
                after_failed,
                after.len(),
                secs(window),
                rec.describe()
            ),
            pass,
        );

        // Slow: every answer takes 1.5 s; short tokens, refreshed ahead in the background.
        ob.tep_state.expires_in.store(10, Ordering::Relaxed);
        ob.set(Tep::Slow(Duration::from_millis(1500)));
        manager.invalidate(AUD, "internal-service");
        manager.token(AUD, "internal-service").await?;
        let issued0 = ob.tep_state.issued.load(Ordering::Relaxed);
        let t1 = Instant::now();
        let load = ob.load(t1, &manager);
        tokio::time::sleep(Duration::from_secs((s / 4).max(8))).await;
        let events = load.finish().await;
        let refreshed = ob.tep_state.issued.load(Ordering::Relaxed) - issued0;
        let failed = events.iter().filter(|e| e.code != 200).count();
        let mut lat: Vec<Duration> = events.iter().map(|e| e.took).collect();
        lat.sort();
        let p99 = quantile_ms(&lat, 0.99);
        table.row(
            &format!("Token endpoint slow (1.5 s per answer, token lifetime 10 s, {} s)", (s / 4).max(8)),
            "0 failures; callers never wait for the slow refresh (p99 < 500 ms); tokens refreshed",
            format!("{} calls, {failed} failed; p99 {p99:.1} ms, max {:.1} ms; {refreshed} tokens issued", events.len(), quantile_ms(&lat, 1.0)),
            checks![failed == 0, p99 < 500.0, refreshed >= 1],
        );

        // Flapping: 503 and OK in turn, 1 s each.
        ob.set(Tep::Flap(Duration::from_secs(1)));
        let issued0 = ob.tep_state.issued.load(Ordering::Relaxed);
        let requests0 = ob.tep_state.requests.load(Ordering::Relaxed);
        let t2 = Instant::now();
        let load = ob.load(t2, &manager);
        tokio::time::sleep(Duration::from_secs((s / 4).max(8))).await;
        let events = load.finish().await;
        let refreshed = ob.tep_state.issued.load(Ordering::Relaxed) - issued0;
        let requests = ob.tep_state.requests.load(Ordering::Relaxed) - requests0;
        let failed = events.iter().filter(|e| e.code != 200).count();
        table.row(
            &format!(
                "Token endpoint flapping (503 / OK every 1 s, token lifetime 10 s, {} s)",
                (s / 4).max(8)
            ),
            "0 failures; tokens still refreshed",
            format!(
                "{} calls, {failed} failed; {requests} token requests, {refreshed} tokens issued",
                events.len()
            ),
            checks![failed == 0, refreshed >= 1],
        );
        ob.set(Tep::Ok);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // 5. Redis killed and restarted.

    struct RedisServer {
        child: Option<Child>,
        port: u16,
    }

    impl RedisServer {
        fn start() -> Result<Self, BoxError> {
            for _ in 0..5 {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                let mut r = Self {
                    child: Some(spawn_redis(port)?),
                    port,
                };
                if r.wait_ready(Duration::from_secs(10)) {
                    return Ok(r);
                }
                r.stop();
            }
            Err("redis-server did not answer PING".into())
        }
        fn restart(&mut self) -> Result<(), BoxError> {
            self.stop();
            self.child = Some(spawn_redis(self.port)?);
            if self.wait_ready(Duration::from_secs(10)) {
                Ok(())
            } else {
                Err(format!("redis-server did not come back on port {}", self.port).into())
            }
        }
        fn wait_ready(&mut self, within: Duration) -> bool {
            let deadline = Instant::now() + within;
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            while Instant::now() < deadline {
                if let Some(c) = self.child.as_mut() {
                    if let Ok(Some(_)) = c.try_wait() {
                        return false;
                    }
                }
                if ping(addr) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        }
        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }
        /// Writes the snapshot the next start loads.
        fn save(&self) -> Result<(), BoxError> {
            if command(
                SocketAddr::from(([127, 0, 0, 1], self.port)),
                "SAVE",
                b"+OK",
            ) {
                Ok(())
            } else {
                Err("redis SAVE failed".into())
            }
        }
        /// Killed by its PID (SIGKILL) and reaped.
        fn stop(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// `redis-server` on `port`, no automatic snapshots (`--save ''`), reading and writing its
    /// snapshot (written only by an explicit `SAVE`) in a directory of this run: a restart after
    /// `SAVE` comes back with the data, as a persisted Redis would.
    fn spawn_redis(port: u16) -> Result<Child, BoxError> {
        let dir =
            std::env::temp_dir().join(format!("tower-bearer-faults-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dbfilename", &format!("dump-{port}.rdb")])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server (is it on PATH?): {e}").into())
    }

    /// A raw RESP command of one word (`PING`, `SAVE`); true when the answer starts with `expect`.
    fn command(addr: SocketAddr, word: &str, expect: &[u8]) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!("*1\r\n${}\r\n{word}\r\n", word.len());
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(expect))
    }

    fn ping(addr: SocketAddr) -> bool {
        command(addr, "PING", b"+PONG")
    }

    const USERS: u64 = 50;

    /// SplitMix64: users drawn in a fixed pseudo-random order, so their cached policy
    /// versions age out at scattered times.
    fn mix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// The Redis source, with every lookup time-stamped (user, succeeded).
    #[derive(Debug, Clone)]
    struct Counted {
        inner: RedisPolicyVersions,
        lookups: Arc<Mutex<Vec<(Instant, String, bool)>>>,
    }

    impl PolicyVersions for Counted {
        fn current(
            &self,
            user_id: &str,
        ) -> BoxFuture<'static, Result<Option<i64>, tower_bearer::error::BoxError>> {
            let (inner, lookups, user) =
                (self.inner.clone(), self.lookups.clone(), user_id.to_owned());
            Box::pin(async move {
                let r = inner.current(&user).await;
                lookups
                    .lock()
                    .expect("not poisoned")
                    .push((Instant::now(), user, r.is_ok()));
                r
            })
        }
    }

    async fn seed(versions: &RedisPolicyVersions) -> Result<(), BoxError> {
        for u in 0..USERS {
            versions.set(&format!("u-{u}"), 2).await?;
        }
        Ok(())
    }

    async fn redis_restart(table: &mut Table, s: u64) -> Result<(), BoxError> {
        let mut redis = RedisServer::start()?;
        // Outbound: token manager sharing tokens through Redis.
        let ob = Outbound::start().await?;
        ob.tep_state.expires_in.store(12, Ordering::Relaxed);
        // Timeouts: generous enough that a loaded machine (a CI box running other builds) does
        // not time out a live Redis before the kill; a killed one refuses connections at once.
        let store = RedisTokenStore::connect(&redis.url(), "faults", "test-only-store-secret")
            .await?
            .with_timeout(Duration::from_millis(800));
        let manager = ob.manager(CircuitPolicy::default(), Some(store))?;
        // Inbound: `pv` checked against Redis.
        let key = SigningKey::generate(Algorithm::ES256)?;
        let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::ES256])?;
        let versions = RedisPolicyVersions::connect(&redis.url(), "faults")
            .await?
            .with_timeout(Duration::from_millis(800));
        seed(&versions).await?;
        let staleness = Duration::from_secs(2);
        let counted = Counted {
            inner: versions.clone(),
            lookups: Arc::default(),
        };
        let lookup_timeout = Duration::from_secs(1);
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::static_keys(ISS, keys))
            .audience(AUD)
            .build()?;
        let rs = Switch::serve(
            Router::new()
                .route("/pv", get(|| async { "ok" }))
                .layer(
                    PolicyVersionLayer::new(Arc::new(counted.clone()))
                        .with_max_staleness(staleness)
                        .with_lookup_timeout(lookup_timeout),
                )
                .layer(JwtAuthLayer::new(verifier)),
        )
        .await?;
        let url = format!("{}/pv", rs.base());
        let current = user_tokens(&key, USERS, Some(2))?;
        let stale = user_tokens(&key, USERS, Some(1))?;
        let client = http_client();
        let t0 = Instant::now();
        let outbound = ob.load(t0, &manager);
        let inbound = token_load(t0, Duration::from_millis(20), &client, &url, move |i| {
            let is_stale = i % 5 == 4;
            let u = (mix(i) % USERS) as usize;
            let tokens = if is_stale { &stale } else { &current };
            (tokens[u].clone(), u8::from(is_stale), u as u8)
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The policy versions (and the shared token) come back with the restart, as from a
        // persisted Redis.
        redis.save()?;
        let kill_at = inbound.now();
        redis.stop();
        let down = Duration::from_secs((s / 2).max(5));
        tokio::time::sleep(down).await;
        let restart_at = inbound.now();
        redis.restart()?;
        let up_at = inbound.now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let out_events = outbound.finish().await;
        let events = inbound.finish().await;

        if std::env::var_os("FAULTS_TRACE").is_some() {
            for e in events.iter().filter(|e| {
                e.at + Duration::from_secs(1) >= kill_at && e.at < kill_at + Duration::from_secs(4)
            }) {
                println!(
                    "trace: {:>8.3} s tag {} code {} took {:.1} ms user {}",
                    (e.at.as_secs_f64() - kill_at.as_secs_f64()),
                    e.tag,
                    e.code,
                    e.took.as_secs_f64() * 1e3,
                    e.note
                );
            }
        }
        if std::env::var_os("FAULTS_TRACE").is_some() {
            for (at, user, ok) in counted.lookups.lock().expect("not poisoned").iter() {
                let at = (*at - t0).as_secs_f64() - kill_at.as_secs_f64();
                if (-3.0..3.0).contains(&at) {
                    println!("lookup: {at:>8.3} s {user} ok {ok}");
                }
            }
        }
        let out_failed = out_events.iter().filter(|e| e.code != 200).count();
        let limit = kill_at + staleness + lookup_timeout + Duration::from_millis(500);
        let valid: Vec<&Event> = events.iter().filter(|e| e.tag == 0).collect();
        // Answered before the kill: a request still waiting on Redis when it dies may be
        // refused (fail closed, nothing cached for that user yet), as after the kill.
        let before: Vec<&&Event> = valid.iter().filter(|e| e.at + e.took < kill_at).collect();
        let before_failed = before.iter().filter(|e| e.code != 200).count();
        let mut before_codes: Vec<u16> = before
            .iter()
            .filter(|e| e.code != 200)
            .map(|e| e.code)
            .collect();
        before_codes.sort_unstable();
        before_codes.dedup();
        let late_200 = valid
            .iter()
            .filter(|e| e.at > limit && e.at < restart_at && e.code == 200)
            .count();
        let refused_503 = valid
            .iter()
            .filter(|e| e.at > limit && e.at < restart_at && e.code == 503)
            .count();
        let refused_total = valid
            .iter()
            .filter(|e| e.at > limit && e.at < restart_at)
            .count();
        let first_503 = valid
            .iter()
            .find(|e| e.at >= kill_at && e.code == 503)
            .map(|e| e.at - kill_at);
        let last_200 = valid
            .iter()
            .filter(|e| e.at >= kill_at && e.at < restart_at && e.code == 200)
            .map(|e| e.at - kill_at)
            .max();
        let rec = recovery(valid.iter().copied(), up_at);
        let stale_200 = events
            .iter()
            .filter(|e| e.tag == 1 && e.code == 200)
            .count();
        let stale_bad = events
            .iter()
            .filter(|e| e.tag == 1 && e.code != 401 && e.code != 503)
            .count();
        let pass = checks![
            out_failed == 0,
            !out_events.is_empty(),
            before_failed == 0,
            late_200 == 0,
            refused_503 == refused_total,
            refused_total > 0,
            rec.within(Duration::from_secs(5)),
            stale_200 == 0,
            stale_bad == 0
        ];
        table.row(
            &format!("Redis killed (SIGKILL) for {} s, restarted (`pv` staleness bound {}, lookup timeout {})", down.as_secs(), secs(staleness), secs(lookup_timeout)),
            "outbound (token store in Redis): 0 failures; `pv` route: 200 until the staleness bound, then 503 (never a stale 200), outdated `pv` never 200; recovery",
            format!(
                "outbound {} calls, {out_failed} failed; `pv` route: {before_failed} of {} failed before the kill{}, last 200 {} and first 503 {} after the kill, {refused_503}/{refused_total} answers 503 past the bound, \
                 {late_200} 200s past it; outdated `pv`: {stale_200} × 200; after the restart: {}",
                out_events.len(),
                before.len(),
                if before_codes.is_empty() {
                    String::new()
                } else {
                    format!(" (statuses {before_codes:?})")
                },
                last_200.map_or("-".to_owned(), secs),
                first_503.map_or("never".to_owned(), secs),
                rec.describe(),
            ),
            pass,
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // 6. Issuer replica killed mid-rotation.

    struct Replica {
        server: Option<AuthorizationServer>,
        http: Switch,
        rotation: tokio::task::JoinHandle<()>,
    }

    impl Replica {
        fn kill(&mut self) {
            self.rotation.abort();
            self.http.stop();
            self.server = None;
        }
    }

    async fn replica(dir: &std::path::Path, hash: &str) -> Result<Replica, BoxError> {
        let server = AuthorizationServer::builder("https://auth.faults.test")
            .audience([AUD])
            .access_token_ttl(Duration::from_secs(300))
            .key_options(
                KeyOptions::default()
                    .with_algorithm(Algorithm::ES256)
                    .with_key_dir(dir, Secret::new("test-only-key-secret-0123456789"))
                    .with_jwks_max_age(Duration::from_secs(1))
                    .with_tick_interval(Duration::from_secs(1))
                    .with_publish_lead(Duration::from_secs(4)),
            )
            .client(
                RegisteredClient::new("orders", AuthMethod::ClientSecretBasic)
                    .with_secret_hash(PasswordHash::parse(hash)?)
                    .with_grant_types([GrantType::ClientCredentials])
                    .with_scopes(["orders.read"])
                    .with_audiences([AUD]),
            )
            .build()
            .await?;
        let rotation = server.spawn_key_rotation();
        let http = Switch::serve(server.router()).await?;
        Ok(Replica {
            server: Some(server),
            http,
            rotation,
        })
    }

    async fn fetch_token(client: &HttpClient, base: &str) -> Result<String, BoxError> {
        use base64::Engine as _;
        let basic =
            base64::engine::general_purpose::STANDARD.encode("orders:test-only-client-secret");
        let req = http::Request::post(format!("{base}/oauth2/token"))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials&scope=orders.read",
            )))?;
        let r = send(client, req, Duration::from_secs(5)).await?;
        if r.status != 200 {
            return Err(format!("token endpoint answered {}", r.status).into());
        }
        let v: Value = serde_json::from_slice(&r.body)?;
        Ok(v["access_token"]
            .as_str()
            .ok_or("no access_token")?
            .to_owned())
    }

    fn kid_of(token: &str) -> String {
        use base64::Engine as _;
        let head = token.split('.').next().unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["kid"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    async fn issuer_replica(table: &mut Table, s: u64) -> Result<(), BoxError> {
        let dir =
            std::env::temp_dir().join(format!("tower-bearer-faults-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hash = PasswordHasher::new(1)
            .hash(b"test-only-client-secret")
            .await?;
        let mut a = replica(&dir, &hash).await?;
        let b = replica(&dir, &hash).await?;
        let bases = [a.http.base(), b.http.base()];
        let first_kid = a
            .server
            .as_ref()
            .ok_or("replica a")?
            .keys()
            .signing_key()
            .kid()
            .to_owned();
        if b.server
            .as_ref()
            .ok_or("replica b")?
            .keys()
            .signing_key()
            .kid()
            != first_kid
        {
            return Err("the replicas do not share their signing key".into());
        }
        // The resource server reads the JWKS from the survivor (behind a load balancer, the
        // JWKS URL would reach whichever replica is up).
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::jwks_uri(
                "https://auth.faults.test",
                format!("{}/oauth2/jwks", bases[1]),
            ))
            .audience(AUD)
            .remote_options(fast_remote())
            .build()?;
        let rs = Switch::serve(
            Router::new()
                .route("/api", get(|| async { "ok" }))
                .layer(JwtAuthLayer::new(verifier)),
        )
        .await?;
        let url = format!("{}/api", rs.base());
        let client = http_client();
        let kids = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
        let retried = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let load = {
            let (bases, url, client, kids, retried) = (
                bases.clone(),
                url.clone(),
                client.clone(),
                kids.clone(),
                retried.clone(),
            );
            Load::start(t0, 4, Duration::from_millis(50), move |i| {
                let (bases, url, client, kids, retried) = (
                    bases.clone(),
                    url.clone(),
                    client.clone(),
                    kids.clone(),
                    retried.clone(),
                );
                async move {
                    let first = (i % 2) as usize;
                    let token = match fetch_token(&client, &bases[first]).await {
                        Ok(t) => t,
                        Err(_) => {
                            retried.fetch_add(1, Ordering::Relaxed);
                            match fetch_token(&client, &bases[1 - first]).await {
                                Ok(t) => t,
                                Err(_) => return (0, 1, 0),
                            }
                        }
                    };
                    *kids
                        .lock()
                        .expect("not poisoned")
                        .entry(kid_of(&token))
                        .or_default() += 1;
                    (status_of(&client, &url, &token).await, 0, 0)
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Mid-rotation: the next key is published (key directory), not signing yet; kill A.
        a.server.as_ref().ok_or("replica a")?.rotate_keys().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let kill_at = load.now();
        a.kill();
        tokio::time::sleep(Duration::from_secs(6 + s / 8)).await;
        let events = load.finish().await;
        let survivor_kid = b
            .server
            .as_ref()
            .ok_or("replica b")?
            .keys()
            .signing_key()
            .kid()
            .to_owned();
        let failed = events.iter().filter(|e| e.code != 200).count();
        let after_kill = events.iter().filter(|e| e.at > kill_at).count();
        let kids = kids.lock().expect("not poisoned").clone();
        let new_kid_tokens = kids.get(&survivor_kid).copied().unwrap_or(0);
        let pass = checks![
            failed == 0,
            after_kill > 0,
            survivor_kid != first_kid,
            new_kid_tokens > 0,
            kids.get(&first_kid).copied().unwrap_or(0) > 0
        ];
        table.row(
            "Issuer replica killed mid-rotation (2 replicas on one key directory; the next key published, then one replica's server dropped)",
            "the survivor completes the rotation; its tokens verify; 0 failures for clients that retry against the survivor",
            format!(
                "{} token+call rounds ({after_kill} after the kill, {} retried on the survivor), {failed} failed; survivor signs with the new key: {}; \
                 tokens by key: old {}, new {new_kid_tokens}",
                events.len(),
                retried.load(Ordering::Relaxed),
                survivor_kid != first_kid,
                kids.get(&first_kid).copied().unwrap_or(0),
            ),
            pass,
        );
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------

    pub(super) async fn main() -> Result<(), BoxError> {
        let mut seconds = 120;
        let mut only: Option<String> = None;
        let mut record: Option<PathBuf> = None;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--only" => only = args.next(),
                "--record" => record = args.next().map(PathBuf::from),
                s => seconds = s.parse().map_err(|_| format!("unknown argument {s}"))?,
            }
        }
        if seconds < 10 {
            return Err("SECONDS must be at least 10".into());
        }
        let machine = machine();
        let started = now_unix();
        println!("faults: SECONDS={seconds}; {machine}\n");
        println!("| fault | expected | observed | result |\n|---|---|---|---|");
        let mut table = Table { rows: Vec::new() };
        let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
        let t = Instant::now();
        if run("jwks-down") {
            jwks_down(&mut table, seconds).await?;
        }
        if run("jwks-garbage") {
            jwks_garbage(&mut table, seconds).await?;
        }
        if run("key-rotation") {
            key_rotation(&mut table, seconds).await?;
        }
        if run("token-endpoint") {
            token_endpoint_faults(&mut table, seconds).await?;
        }
        if run("redis") {
            redis_restart(&mut table, seconds).await?;
        }
        if run("issuer-replica") {
            issuer_replica(&mut table, seconds).await?;
        }
        let failed: Vec<&str> = table
            .rows
            .iter()
            .filter(|r| !r.pass)
            .map(|r| r.fault.as_str())
            .collect();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Run of {}, SECONDS={seconds}, {} in all; {machine}; {} build.\n",
            date_utc(started),
            secs(t.elapsed()),
            profile()
        );
        let _ = writeln!(
            md,
            "| fault | expected | observed | result |\n|---|---|---|---|"
        );
        for r in &table.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.fault,
                r.expected,
                r.observed,
                if r.pass { "PASS" } else { "**FAIL**" }
            );
        }
        if let Some(path) = &record {
            record_section(path, "faults", &md)?;
            println!("faults: results written to {}", path.display());
        }
        let _ = std::io::stdout().flush();
        if table.rows.is_empty() {
            return Err("no fault scenario ran (check --only)".into());
        }
        if !failed.is_empty() {
            return Err(format!("faults FAILED: {}", failed.join("; ")).into());
        }
        println!(
            "\nfaults: PASS ({} rows in {})",
            table.rows.len(),
            secs(t.elapsed())
        );
        Ok(())
    }
}
