//! One issuer's keys: the `ArcSwap` snapshot and the single fetch task that refreshes it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{AlgSet, KeySet};
use crate::http_client::HttpClient;
use crate::telemetry;

/// Timing of remote key sets (JWKS URL or discovery).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::jwks::RemoteOptions;
/// use tower_bearer::verify::{IssuerConfig, Verifier};
///
/// let opts = RemoteOptions { max_staleness: Duration::from_secs(3600), ..RemoteOptions::default() };
/// assert_eq!(opts.refresh_interval, Duration::from_secs(300));
/// let builder = Verifier::builder()
///     .issuer(IssuerConfig::jwks_uri("https://auth.example", "https://auth.example/jwks"))
///     .remote_options(opts);
/// # let _ = builder;
/// ```
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Refresh interval when the JWKS answer has no `Cache-Control: max-age`. Default 5 min.
    pub refresh_interval: Duration,
    /// Lower bound applied to `max-age`. Default 30 s.
    pub min_refresh_interval: Duration,
    /// Upper bound applied to `max-age`. Default 1 h.
    pub max_refresh_interval: Duration,
    /// At most one on-demand fetch (unknown `kid`) per cooldown. Default 30 s.
    pub unknown_kid_cooldown: Duration,
    /// The last good keys serve for at most this long while fetches fail. Default 24 h.
    pub max_staleness: Duration,
    /// First retry delay after a failed fetch (doubling). Default 1 s.
    pub retry_min: Duration,
    /// Longest retry delay after failed fetches. Default 60 s.
    pub retry_max: Duration,
    /// How long a request waits for the very first fetch before answering 503. Default 5 s.
    pub first_fetch_wait: Duration,
}

impl RemoteOptions {
    /// Checks that the bounds are consistent: `min-refresh-interval <= max-refresh-interval`,
    /// `retry-min <= retry-max`, and `min-refresh-interval` and `retry-min` positive (a zero
    /// would let a failing or `max-age=0` endpoint be fetched back to back).
    /// [`VerifierBuilder::build`](crate::verify::VerifierBuilder::build) calls it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::error::ConfigError;
    /// use tower_bearer::jwks::RemoteOptions;
    ///
    /// assert!(RemoteOptions::default().validate().is_ok());
    /// let bad = RemoteOptions {
    ///     min_refresh_interval: Duration::from_secs(600),
    ///     max_refresh_interval: Duration::from_secs(60),
    ///     ..RemoteOptions::default()
    /// };
    /// assert!(matches!(
    ///     bad.validate(),
    ///     Err(ConfigError::Invalid { name: "min-refresh-interval", .. })
    /// ));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`](crate::error::ConfigError::Invalid) naming the offending setting.
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        let invalid =
            |name, reason: String| Err(crate::error::ConfigError::Invalid { name, reason });
        if self.min_refresh_interval.is_zero() {
            return invalid("min-refresh-interval", "must be positive".into());
        }
        if self.min_refresh_interval > self.max_refresh_interval {
            return invalid(
                "min-refresh-interval",
                format!(
                    "{:?} is above max-refresh-interval {:?}",
                    self.min_refresh_interval, self.max_refresh_interval
                ),
            );
        }
        if self.retry_min.is_zero() {
            return invalid("retry-min", "must be positive".into());
        }
        if self.retry_min > self.retry_max {
            return invalid(
                "retry-min",
                format!(
                    "{:?} is above retry-max {:?}",
                    self.retry_min, self.retry_max
                ),
            );
        }
        Ok(())
    }
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(30),
            max_refresh_interval: Duration::from_secs(3600),
            unknown_kid_cooldown: Duration::from_secs(30),
            max_staleness: Duration::from_secs(24 * 3600),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            first_fetch_wait: Duration::from_secs(5),
        }
    }
}

/// Where a remote key set is fetched from.
#[derive(Debug, Clone)]
pub(crate) enum RemoteSource {
    Jwks(Uri),
    /// Discovery documents under this base URL (normally the issuer itself).
    Discovery(String),
}

/// Bumped whenever any issuer's key set is replaced by one that lacks a key of the old one,
/// process-wide (see [`key_set_generation`]).
static KEY_SET_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The process-wide key-set generation: it changes whenever any issuer's key set is replaced
/// (a refresh, on schedule or on demand) by one without every key (`kid` and key material) of
/// the set it replaces. Read it BEFORE looking the keys up: while it still has that value,
/// every key found then is still published. Fixed key sets are never replaced. One atomic load.
pub(crate) fn key_set_generation() -> u64 {
    KEY_SET_GENERATION.load(Ordering::Acquire)
}

/// Whether `new` still has every key of `old` (same `kid`, same key material): the test a cache
/// hit applies to a replaced set (`KeySet::contains`), for all keys at once.
fn keeps_every_key(old: &KeySet, new: &KeySet) -> bool {
    old.keys
        .iter()
        .all(|k| new.contains(k.kid.as_deref(), &k.fingerprint))
}

/// What the verifier finds when it looks for keys.
pub(crate) enum Lookup {
    /// Keys loaded and not older than the staleness bound.
    Ready(Guard<Arc<KeySet>>),
    /// No usable keys (never loaded, or too stale): answer 503 after `retry_after`.
    Unavailable { first_pending: bool },
}

/// The keys of one issuer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct KeyProvider {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: Arc<str>,
    snapshot: ArcSwap<KeySet>,
    loaded_at: ArcSwap<Option<Instant>>,
    remote: Option<Remote>,
}

struct Remote {
    source: RemoteSource,
    client: Arc<dyn HttpClient>,
    opts: RemoteOptions,
    allowed: AlgSet,
    ctl: Mutex<Control>,
    /// Wakes the fetch task; replaced when the task has to be restarted.
    trigger: ArcSwap<mpsc::Sender<()>>,
    /// The receiver waiting for its task to be spawned.
    trigger_rx: Mutex<Option<mpsc::Receiver<()>>>,
    started: AtomicBool,
    /// Number of the last completed fetch attempt (successful or not).
    completed: watch::Sender<u64>,
    /// JWKS URL found by discovery.
    discovered: Mutex<Option<Uri>>,
    next_attempt: Mutex<Instant>,
}

#[derive(Default)]
struct Control {
    started: u64,
    on_demand_target: Option<u64>,
    last_on_demand: Option<Instant>,
}

impl fmt::Debug for KeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyProvider")
            .field("issuer", &self.inner.issuer)
            .field("keys", &self.inner.snapshot.load().len())
            .field("source", &self.inner.remote.as_ref().map(|r| &r.source))
            .finish()
    }
}

impl KeyProvider {
    /// Fixed keys, never refreshed.
    pub(crate) fn fixed(issuer: Arc<str>, keys: Arc<KeySet>) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer,
                snapshot: ArcSwap::new(keys),
                loaded_at: ArcSwap::from_pointee(None),
                remote: None,
            }),
        }
    }

    /// Keys fetched from `source`; the fetch task starts now if a Tokio runtime is running,
    /// else at the first lookup.
    pub(crate) fn remote(
        issuer: Arc<str>,
        source: RemoteSource,
        client: Arc<dyn HttpClient>,
        opts: RemoteOptions,
        allowed: AlgSet,
    ) -> Self {
        let (trigger, rx) = mpsc::channel(1);
        let this = Self {
            inner: Arc::new(Inner {
                issuer,
                snapshot: ArcSwap::from_pointee(KeySet::empty()),
                loaded_at: ArcSwap::from_pointee(None),
                remote: Some(Remote {
                    source,
                    client,
                    opts,
                    allowed,
                    ctl: Mutex::new(Control::default()),
                    trigger: ArcSwap::from_pointee(trigger),
                    trigger_rx: Mutex::new(Some(rx)),
                    started: AtomicBool::new(false),
                    completed: watch::Sender::new(0),
                    discovered: Mutex::new(None),
                    next_attempt: Mutex::new(Instant::now()),
                }),
            }),
        };
        this.ensure_started();
        this
    }

    /// Spawns the fetch task on the current runtime if it is not running: at first use, or
    /// again when the runtime that ran it has shut down (its receiver is then gone).
    fn ensure_started(&self) {
        let Some(remote) = &self.inner.remote else {
            return;
        };
        let running =
            || remote.started.load(Ordering::Acquire) && !remote.trigger.load().is_closed();
        if running() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut pending = lock(&remote.trigger_rx);
        if running() {
            return;
        }
        let rx = match pending.take() {
            Some(rx) => rx,
            None => {
                tracing::warn!(issuer = %self.inner.issuer, "signing key fetch task had stopped (its runtime ended); restarting it");
                let (tx, rx) = mpsc::channel(1);
                remote.trigger.store(Arc::new(tx));
                lock(&remote.ctl).on_demand_target = None;
                rx
            }
        };
        remote.started.store(true, Ordering::Release);
        handle.spawn(run(Arc::downgrade(&self.inner), rx));
    }

    /// The current keys: one `ArcSwap` load, no lock.
    pub(crate) fn lookup(&self) -> Lookup {
        let keys = self.inner.snapshot.load();
        let Some(remote) = &self.inner.remote else {
            return Lookup::Ready(keys);
        };
        self.ensure_started();
        let fresh = match **self.inner.loaded_at.load() {
            Some(at) => at.elapsed() <= remote.opts.max_staleness,
            None => false,
        };
        if fresh && !keys.is_empty() {
            Lookup::Ready(keys)
        } else {
            Lookup::Unavailable {
                first_pending: *remote.completed.borrow() == 0,
            }
        }
    }

    /// Whether the keys still hold every key they held when [`key_set_generation`] returned
    /// `generation` (read before that lookup), and are still usable: then a key found in them
    /// then is still published, as [`KeyProvider::lookup`] would find. Fixed keys: one atomic
    /// load, no snapshot load; remote keys are also checked for staleness by a lookup, as
    /// before.
    #[inline]
    pub(crate) fn unchanged_since(&self, generation: u64) -> bool {
        if key_set_generation() != generation {
            return false;
        }
        self.inner.remote.is_none() || self.unchanged_remote()
    }

    #[inline(never)]
    fn unchanged_remote(&self) -> bool {
        matches!(self.lookup(), Lookup::Ready(_))
    }

    /// How long until the next fetch attempt (for `Retry-After`), at least one second.
    pub(crate) fn retry_after(&self) -> Duration {
        let Some(remote) = &self.inner.remote else {
            return Duration::from_secs(1);
        };
        let next = *lock(&remote.next_attempt);
        let secs = next
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
            .ceil()
            .max(1.0);
        Duration::from_secs(secs as u64)
    }

    /// Waits (bounded) for the first fetch attempt to complete.
    pub(crate) async fn wait_first(&self) {
        let Some(remote) = &self.inner.remote else {
            return;
        };
        self.ensure_started();
        let mut rx = remote.completed.subscribe();
        let _ = tokio::time::timeout(remote.opts.first_fetch_wait, rx.wait_for(|v| *v >= 1)).await;
    }

    /// Asks for an on-demand fetch because a `kid` is unknown, and waits for it.
    ///
    /// At most one fetch is in flight (every caller waits on the same one) and at most one
    /// starts per cooldown; within the cooldown this returns `false` at once.
    pub(crate) async fn refetch(&self) -> bool {
        let Some(remote) = &self.inner.remote else {
            return false;
        };
        self.ensure_started();
        let mut rx = remote.completed.subscribe();
        let target = {
            let mut c = lock(&remote.ctl);
            if let Some(t) = c.on_demand_target {
                t
            } else if c
                .last_on_demand
                .is_some_and(|t| t.elapsed() < remote.opts.unknown_kid_cooldown)
            {
                telemetry::counter("tower_bearer_jwks_refetch_suppressed_total", &[]);
                return false;
            } else {
                c.last_on_demand = Some(Instant::now());
                let t = c.started + 1;
                c.on_demand_target = Some(t);
                let _ = remote.trigger.load().try_send(());
                t
            }
        };
        let wait = remote.client_timeout_hint();
        tokio::time::timeout(wait, rx.wait_for(|v| *v >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Remote {
    fn client_timeout_hint(&self) -> Duration {
        // Discovery plus JWKS, each bounded by the client's own timeout.
        self.opts
            .first_fetch_wait
            .max(Duration::from_secs(1))
            .saturating_mul(2)
    }

    async fn fetch(&self, issuer: &str) -> Result<(KeySet, Option<Duration>), String> {
        let uri = match &self.source {
            RemoteSource::Jwks(uri) => uri.clone(),
            RemoteSource::Discovery(base) => self.discover(base, issuer).await?,
        };
        let resp = self.get(&uri).await?;
        if resp.status() != StatusCode::OK {
            if matches!(self.source, RemoteSource::Discovery(_)) {
                *lock(&self.discovered) = None;
            }
            return Err(format!("JWKS answered {}", resp.status()));
        }
        let max_age = cache_max_age(resp.headers());
        let set =
            KeySet::parse_jwks(resp.body(), self.allowed, false).map_err(|e| e.to_string())?;
        Ok((set, max_age))
    }

    async fn get(&self, uri: &Uri) -> Result<http::Response<Bytes>, String> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri.clone())
            .header(header::ACCEPT, "application/json, application/jwk-set+json")
            .body(Bytes::new())
            .map_err(|e| e.to_string())?;
        self.client.send(req).await.map_err(|e| e.to_string())
    }

    async fn discover(&self, base_url: &str, issuer: &str) -> Result<Uri, String> {
        if let Some(uri) = lock(&self.discovered).clone() {
            return Ok(uri);
        }
        let base = base_url.trim_end_matches('/');
        let oidc = format!("{base}/.well-known/openid-configuration");
        let oidc_uri = self.client.check_url(&oidc).map_err(|e| e.to_string())?;
        let mut resp = self.get(&oidc_uri).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            // RFC 8414 §3: the well-known segment goes between the host and the path.
            let issuer_uri: Uri = base_url
                .parse()
                .map_err(|_| "discovery base is not a URL")?;
            let path = issuer_uri.path().trim_end_matches('/');
            let url = format!(
                "{}://{}/.well-known/oauth-authorization-server{}",
                issuer_uri.scheme_str().unwrap_or("https"),
                issuer_uri.authority().map_or("", |a| a.as_str()),
                path
            );
            let uri = self.client.check_url(&url).map_err(|e| e.to_string())?;
            resp = self.get(&uri).await?;
        }
        if resp.status() != StatusCode::OK {
            return Err(format!("discovery answered {}", resp.status()));
        }
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let meta: Metadata =
            serde_json::from_slice(resp.body()).map_err(|e| format!("discovery document: {e}"))?;
        if meta.issuer != issuer {
            return Err("discovery document names another issuer".into());
        }
        let uri = self
            .client
            .check_url(&meta.jwks_uri)
            .map_err(|e| format!("discovered jwks_uri refused: {e}"))?;
        *lock(&self.discovered) = Some(uri.clone());
        Ok(uri)
    }

    fn backoff(&self, failures: u32) -> Duration {
        backoff(&self.opts, failures)
    }
}

/// `retry_min * 2^(failures - 1)`, saturating, at most `retry_max`.
fn backoff(opts: &RemoteOptions, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    opts.retry_min
        .checked_mul(1u32 << exp)
        .unwrap_or(Duration::MAX)
        .min(opts.retry_max)
}

/// The delay after a good fetch: `max-age` (or the default interval) within the bounds. Never
/// panics, even on bounds that `validate` would refuse (the lower bound wins).
fn refresh_delay(opts: &RemoteOptions, max_age: Option<Duration>) -> Duration {
    max_age
        .unwrap_or(opts.refresh_interval)
        .min(opts.max_refresh_interval)
        .max(opts.min_refresh_interval)
}

/// The fetch task: scheduled refreshes and on-demand refetches, one at a time.
async fn run(weak: Weak<Inner>, mut rx: mpsc::Receiver<()>) {
    let mut delay = Duration::ZERO;
    let mut failures = 0u32;
    loop {
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                msg = rx.recv() => if msg.is_none() { return },
            }
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let Some(remote) = &inner.remote else {
            return;
        };
        let attempt = {
            let mut c = lock(&remote.ctl);
            // Triggers are sent under this lock: whatever is queued is served by this attempt.
            while rx.try_recv().is_ok() {}
            c.started += 1;
            c.started
        };
        telemetry::counter("tower_bearer_jwks_fetches_total", &[]);
        match remote.fetch(&inner.issuer).await {
            Ok((mut set, max_age)) => {
                failures = 0;
                set.generation = attempt;
                let keys = set.len();
                let skipped = set.skipped;
                let new = Arc::new(set);
                // A newer answer is never overwritten by an older one.
                let prev = inner.snapshot.rcu(|cur| {
                    if cur.generation < attempt {
                        new.clone()
                    } else {
                        cur.clone()
                    }
                });
                // A set that dropped (or changed) a key moves the generation, after the store:
                // whoever still reads the old one looked the keys up before this set was
                // published. A refresh that keeps every key (the usual one) does not, so
                // cached tokens keep their fast hit.
                if prev.generation < attempt && !keeps_every_key(&prev, &new) {
                    KEY_SET_GENERATION.fetch_add(1, Ordering::AcqRel);
                }
                inner.loaded_at.store(Arc::new(Some(Instant::now())));
                delay = refresh_delay(&remote.opts, max_age);
                tracing::debug!(issuer = %inner.issuer, keys, skipped, next_in = ?delay, "signing keys loaded");
            }
            Err(reason) => {
                failures += 1;
                delay = remote.backoff(failures);
                telemetry::counter("tower_bearer_jwks_fetch_failures_total", &[]);
                tracing::warn!(
                    issuer = %inner.issuer,
                    %reason,
                    consecutive = failures,
                    retry_in = ?delay,
                    kept_keys = inner.snapshot.load().len(),
                    "signing key fetch failed; keeping the last good keys"
                );
            }
        }
        let now = Instant::now();
        // Saturate far in the future instead of overflowing `Instant`.
        *lock(&remote.next_attempt) = now
            .checked_add(delay)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        {
            let mut c = lock(&remote.ctl);
            if c.on_demand_target.is_some_and(|t| attempt >= t) {
                c.on_demand_target = None;
            }
        }
        remote.completed.send_replace(attempt);
    }
}

/// `Cache-Control: max-age=N`; `no-cache`/`no-store` count as zero (clamped to the minimum).
fn cache_max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut out = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(v) = value.to_str() else { continue };
        for directive in v.split(',') {
            let d = directive.trim();
            if d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store") {
                return Some(Duration::ZERO);
            }
            if let Some((name, val)) = d.split_once('=') {
                if name.trim().eq_ignore_ascii_case("max-age") {
                    if let Ok(secs) = val.trim().trim_matches('"').parse::<u64>() {
                        out = Some(Duration::from_secs(secs));
                    }
                }
            }
        }
    }
    out
}

/// Locks a mutex, recovering from poisoning (the guarded data stays consistent: plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generation moves only for a set that lost a key (or whose `kid` now names other
    /// key material): exactly when a cached token's key check could fail.
    #[test]
    fn keeps_every_key_is_the_hit_check_for_all_keys() {
        use crate::jwks::Algorithm;
        use crate::signing::SigningKey;
        let a = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let b = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let set = |keys: &[&SigningKey]| {
            let jwks = serde_json::json!({
                "keys": keys.iter().map(|k| k.jwks()["keys"][0].clone()).collect::<Vec<_>>()
            });
            KeySet::from_jwks(jwks.to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap()
        };
        let (sa, sab, sb, empty) = (set(&[&a]), set(&[&a, &b]), set(&[&b]), KeySet::empty());
        assert!(keeps_every_key(&sa, &set(&[&a])));
        assert!(keeps_every_key(&sa, &sab));
        assert!(keeps_every_key(&empty, &sa));
        assert!(!keeps_every_key(&sab, &sa));
        assert!(!keeps_every_key(&sa, &sb));
        assert!(!keeps_every_key(&sa, &empty));
        // Same `kid`, other key material.
        let mut other = b.jwks()["keys"][0].clone();
        other["kid"] = a.jwks()["keys"][0]["kid"].clone();
        let swapped = serde_json::json!({ "keys": [other] }).to_string();
        let swapped = KeySet::from_jwks(swapped.as_bytes(), &[Algorithm::EdDSA]).unwrap();
        assert!(!keeps_every_key(&sa, &swapped));
    }

    #[test]
    fn cache_control() {
        let mut h = http::HeaderMap::new();
        assert_eq!(cache_max_age(&h), None);
        h.insert(
            header::CACHE_CONTROL,
            "public, max-age=600".parse().unwrap(),
        );
        assert_eq!(cache_max_age(&h), Some(Duration::from_secs(600)));
        h.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(cache_max_age(&h), Some(Duration::ZERO));
    }

    #[test]
    fn backoff_saturates() {
        let opts = RemoteOptions {
            retry_min: Duration::MAX / 2,
            retry_max: Duration::MAX,
            ..RemoteOptions::default()
        };
        // `retry_min * 2^16` overflows `Duration`: saturate instead of panicking.
        assert_eq!(backoff(&opts, 1), Duration::MAX / 2);
        assert_eq!(backoff(&opts, 17), Duration::MAX);
        assert_eq!(backoff(&opts, u32::MAX), Duration::MAX);
        let d = RemoteOptions::default();
        assert_eq!(backoff(&d, 1), Duration::from_secs(1));
        assert_eq!(backoff(&d, 3), Duration::from_secs(4));
        assert_eq!(backoff(&d, 40), Duration::from_secs(60));
    }

    #[test]
    fn refresh_delay_never_panics() {
        let inverted = RemoteOptions {
            min_refresh_interval: Duration::from_secs(600),
            max_refresh_interval: Duration::from_secs(60),
            ..RemoteOptions::default()
        };
        assert!(inverted.validate().is_err());
        assert_eq!(refresh_delay(&inverted, None), Duration::from_secs(600));
        let d = RemoteOptions::default();
        assert_eq!(
            refresh_delay(&d, Some(Duration::ZERO)),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_delay(&d, Some(Duration::MAX)),
            Duration::from_secs(3600)
        );
        assert_eq!(refresh_delay(&d, None), Duration::from_secs(300));
    }

    #[test]
    fn inconsistent_options_are_refused_at_build() {
        use crate::error::ConfigError;
        use crate::verify::{IssuerConfig, Verifier};
        let build = |opts: RemoteOptions| {
            Verifier::builder()
                .issuer(IssuerConfig::jwks_uri(
                    "https://auth.example",
                    "https://auth.example/jwks",
                ))
                .audience("api")
                .remote_options(opts)
                .build()
        };
        let cases = [
            (
                RemoteOptions {
                    min_refresh_interval: Duration::from_secs(7200),
                    ..RemoteOptions::default()
                },
                "min-refresh-interval",
            ),
            (
                RemoteOptions {
                    min_refresh_interval: Duration::ZERO,
                    ..RemoteOptions::default()
                },
                "min-refresh-interval",
            ),
            (
                RemoteOptions {
                    retry_min: Duration::from_secs(120),
                    ..RemoteOptions::default()
                },
                "retry-min",
            ),
            (
                RemoteOptions {
                    retry_min: Duration::ZERO,
                    ..RemoteOptions::default()
                },
                "retry-min",
            ),
        ];
        for (opts, key) in cases {
            let err = build(opts).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name, .. } if *name == key),
                "{key}: {err}"
            );
        }
        assert!(build(RemoteOptions::default()).is_ok());
    }
}
