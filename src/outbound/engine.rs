//! The manager's machinery: slots, the lock-free hit path, single-flight fetch tasks,
//! retries, the circuit breaker and the shared store.
//!
//! Hit path: no clock read while the entry's stale timer vouches that its refresh instant
//! has not come (the slot's state names the entry with a fresh bit the timer clears, see
//! [`Inner::arm`] for why that never hands out an expired token): one load of that state,
//! then this thread's copy of the entry's `HeaderValue` (see [`local`]; the first hit of a
//! thread takes it from the slot's `ArcSwap`). Otherwise one `ArcSwap` load and one read of
//! the clock compared with the slot's refresh time (with the system clock:
//! `SystemTime::now()` against a precomputed `SystemTime`, no conversion to seconds). Either
//! way a clone of a pre-built `HeaderValue` (an atomic increment: the bytes were made shared
//! when the token was installed) and a relaxed increment of a per-thread shard of the hit
//! counter.
//! Everything else (a miss, a refresh) runs through the slot's flight: one spawned task that
//! every waiting caller subscribes to.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::HeaderValue;
use tokio::sync::watch;

use super::error::{FetchError, OutboundError};
use super::manager::{CircuitPolicy, RetryPolicy, TokenStats};
use super::token::{AccessToken, TokenRequest, TokenSource};
use crate::clock::SharedClock;
use crate::store::{StoredToken, TokenStore};
use crate::telemetry::counter;

/// `(scheme, host, port)` of a destination, lower-case, default port filled in.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `scheme` as an `http` scheme value (compared without string comparison).
    scheme_value: Option<http::uri::Scheme>,
    /// `host:port`, the authority of a request URI that names this origin in canonical form.
    authority: Box<str>,
    /// `port` is the scheme's default: a bare `host` authority names this origin too.
    default_port: bool,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Origin {
    /// The origin `scheme://host:port` (`scheme` and `host` lower-case).
    pub(crate) fn new(scheme: String, host: String, port: u16) -> Self {
        let default_port = default_port(&scheme) == Some(port);
        Self {
            scheme_value: http::uri::Scheme::try_from(scheme.as_str()).ok(),
            authority: format!("{host}:{port}").into(),
            default_port,
            scheme,
            host,
            port,
        }
    }

    /// Does a request for `scheme` and `authority` (as written in the URI) go to this origin,
    /// the authority written in canonical form (`host:port` or, for the scheme's default
    /// port, `host`; lower-case, no user info)? Byte comparisons only. `false` proves nothing
    /// (`HOST`, `host:080`, `user@host`): then [`matches_parts`](Self::matches_parts)
    /// decides. Whatever this accepts, it accepts too.
    #[inline]
    pub(crate) fn matches_canonical(&self, scheme: &http::uri::Scheme, authority: &str) -> bool {
        self.scheme_value.as_ref() == Some(scheme)
            && (same_authority(authority, &self.authority)
                || (self.default_port && same_authority(authority, &self.host)))
    }

    /// Does `uri` (absolute) go to this origin? No allocation.
    #[cfg(test)]
    pub(crate) fn matches(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        self.matches_parts(scheme, host, uri.port_u16())
    }

    /// Does `scheme://host[:port]` go to this origin (an absent port is the scheme's
    /// default)? No allocation.
    pub(crate) fn matches_parts(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let port = port.or(default_port(scheme));
        port == Some(self.port)
            && scheme.eq_ignore_ascii_case(&self.scheme)
            && host.eq_ignore_ascii_case(&self.host)
    }
}

/// The default port of `scheme` (`http`, `https`, in any case).
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        s if s.eq_ignore_ascii_case("http") => Some(80),
        s if s.eq_ignore_ascii_case("https") => Some(443),
        _ => None,
    }
}

/// Timing and policy, fixed when the manager is built.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) refresh_ahead: Duration,
    pub(crate) refresh_jitter: f64,
    pub(crate) retry: RetryPolicy,
    pub(crate) circuit: CircuitPolicy,
    pub(crate) invalidate_interval: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) lock_poll: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) store_prefix: String,
    pub(crate) max_dynamic_slots: usize,
}

/// A token ready to hand out.
pub(crate) struct Cached {
    pub(crate) header: HeaderValue,
    pub(crate) stored: StoredToken,
    pub(crate) refresh_at: u64,
    pub(crate) expires_at: u64,
    /// `refresh_at` and `expires_at` as system times (`None`: past what `SystemTime` can hold,
    /// never reached), for the hit path with the system clock: `now < refresh_at` on whole
    /// seconds is `SystemTime::now() < refresh_at_time` exactly.
    refresh_at_time: Option<SystemTime>,
    expires_at_time: Option<SystemTime>,
    /// Unique in the process (from [`next_generation`]): names this entry in its slot's
    /// [`Slot::state`] and in the per-thread copies of [`local`].
    generation: u64,
}

/// The low bit of [`Slot::state`]: a stale timer ([`Inner::arm`]) vouches that the refresh
/// instant of the entry named by the other bits has not come.
const FRESH: u64 = 1;

/// A number never handed out before in this process (64 bits: never wraps).
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How often (in timer time) a stale timer looks at the wall clock again, at most: bounds
/// how late it notices a forward step of the wall clock or a suspend of the machine (the
/// monotonic clock behind Tokio's timers does not count a suspend).
const STALE_RECHECK: Duration = Duration::from_secs(1);

/// Owned by a stale timer task: marks its entry stale when the task ends, however it ends
/// (refresh instant reached, runtime shut down, task dropped before it ran): clears the
/// [`FRESH`] bit of its slot's state if the state still names the entry (a later entry, or
/// none, is left as it is).
struct StaleOnDrop {
    entry: Weak<Cached>,
    state: Arc<AtomicU64>,
    armed: u64,
}

impl Drop for StaleOnDrop {
    fn drop(&mut self) {
        let _ = self.state.compare_exchange(
            self.armed,
            self.armed & !FRESH,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// The stale timer of one entry: sleeps (at most [`STALE_RECHECK`] at a time) until the wall
/// clock reaches `stale_at`, then returns, and its guard marks the entry stale. It returns
/// early, with the same effect, when the entry is gone or when the wall clock did not move
/// with the timer (a paused Tokio clock in tests, a step back of the wall clock): the hit
/// path then reads the clock again.
async fn stale_timer(guard: StaleOnDrop, stale_at: SystemTime) {
    loop {
        let before = SystemTime::now();
        let left = match stale_at.duration_since(before) {
            Ok(left) if !left.is_zero() => left,
            _ => break,
        };
        let step = left.min(STALE_RECHECK);
        tokio::time::sleep(step).await;
        if guard.entry.strong_count() == 0 {
            break;
        }
        let moved = SystemTime::now()
            .duration_since(before)
            .unwrap_or(Duration::ZERO);
        if moved < step / 2 {
            break;
        }
    }
    drop(guard);
}

/// `unix` seconds as a `SystemTime` (`None` when it cannot be represented).
fn system_time(unix: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(unix))
}

/// Is `now` before `at` (`None`: never reached)?
#[inline]
fn before(now: SystemTime, at: Option<SystemTime>) -> bool {
    at.is_none_or(|at| now < at)
}

/// `a == b`, inline for the short strings audiences and scopes are (empty, or 8 to 16 bytes:
/// two overlapping word compares, no `memcmp` call); other lengths compare as slices.
#[inline(always)]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n == 0 {
        return true;
    }
    if !(8..=16).contains(&n) {
        return a == b;
    }
    let word = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
}

/// `a == b` for authorities (`host:port`, mostly 8 to 32 bytes: four overlapping word
/// compares, no `memcmp` call); other lengths compare as slices.
#[inline(always)]
fn same_authority(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if !(8..=32).contains(&n) {
        return a == b;
    }
    let word = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    // Bytes 0..8, 8..16, n-16..n-8 and n-8..n: all of them for n <= 32.
    let (m, k) = (n.min(16) - 8, n.max(16) - 16);
    word(a, 0) == word(b, 0)
        && word(a, m) == word(b, m)
        && word(a, k) == word(b, k)
        && word(a, n - 8) == word(b, n - 8)
}

type FlightResult = Result<Arc<Cached>, OutboundError>;
type FlightRx = watch::Receiver<Option<FlightResult>>;

/// One `(audience, scope)` of one client.
pub(crate) struct Slot {
    pub(crate) client: usize,
    pub(crate) request: TokenRequest,
    store_key: Arc<str>,
    current: ArcSwapOption<Cached>,
    /// What the hit path reads first: `generation << 1 | FRESH` while the entry `current`
    /// holds (of that generation) is vouched for by its stale timer; anything without the
    /// [`FRESH`] bit otherwise (0: no entry). Written with `current`, under `writer`, after
    /// it: the state never names an entry that `current` no longer holds once a write is
    /// done.
    state: Arc<AtomicU64>,
    /// Serializes the writers of `current` and `state` (installs, invalidations: rare).
    writer: Mutex<()>,
    /// This slot's place in the per-thread copies ([`local`]).
    way: usize,
    in_flight: AtomicBool,
    flight: Mutex<Option<FlightRx>>,
    /// No background refresh before this (unix seconds): after a failed one, or while the
    /// circuit is open.
    retry_not_before: AtomicU64,
    bg_failures: AtomicU32,
    last_invalidation: Mutex<Option<u64>>,
    /// Fingerprint of the last invalidated token: never adopted again from the store.
    invalidated: Mutex<Option<Arc<str>>>,
}

impl Slot {
    pub(crate) fn new(client: usize, request: TokenRequest, store_key: String) -> Self {
        Self {
            client,
            request,
            store_key: store_key.into(),
            current: ArcSwapOption::empty(),
            state: Arc::new(AtomicU64::new(0)),
            writer: Mutex::new(()),
            way: local::way(),
            in_flight: AtomicBool::new(false),
            flight: Mutex::new(None),
            retry_not_before: AtomicU64::new(0),
            bg_failures: AtomicU32::new(0),
            last_invalidation: Mutex::new(None),
            invalidated: Mutex::new(None),
        }
    }
}

/// A configured client.
pub(crate) struct ClientState {
    pub(crate) name: Arc<str>,
    pub(crate) source: Arc<dyn TokenSource>,
    pub(crate) identity: String,
    pub(crate) audiences: Vec<Arc<str>>,
    pub(crate) destinations: Vec<Origin>,
    pub(crate) skip_callers: Vec<Arc<str>>,
    pub(crate) default_slot: usize,
    /// Upper bound on how long one fetched token is reused (`cache-expire-seconds`).
    pub(crate) max_reuse: Option<Duration>,
    circuit: Mutex<Circuit>,
}

impl ClientState {
    pub(crate) fn new(
        name: Arc<str>,
        source: Arc<dyn TokenSource>,
        audiences: Vec<Arc<str>>,
        destinations: Vec<Origin>,
        skip_callers: Vec<Arc<str>>,
        default_slot: usize,
    ) -> Self {
        let identity = source.identity();
        let identity = if identity.is_empty() {
            format!("client:{name}")
        } else {
            identity
        };
        Self {
            name,
            source,
            identity,
            audiences,
            destinations,
            skip_callers,
            default_slot,
            max_reuse: None,
            circuit: Mutex::new(Circuit::default()),
        }
    }
}

/// The circuit breaker of one client's token endpoint (unix seconds on the manager's clock).
#[derive(Debug, Default)]
struct Circuit {
    failures: u32,
    open_until: Option<u64>,
    /// A probe runs since this time (a probe that never reports back, because its task
    /// panicked, is replaced after a cool-down).
    probing: Option<u64>,
    /// `Retry-After` from the server: no call before this.
    not_before: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permit {
    Normal,
    Probe,
}

impl Circuit {
    /// May a fetch start now? `Err(seconds to wait)` when not.
    fn acquire(&mut self, now: u64, cool_down: u64) -> Result<Permit, u64> {
        if now < self.not_before {
            return Err(self.not_before - now);
        }
        if let Some(since) = self.probing {
            if now < since.saturating_add(cool_down) {
                return Err(1);
            }
        }
        match self.open_until {
            Some(until) if now < until => Err(until - now),
            Some(_) => {
                self.probing = Some(now);
                Ok(Permit::Probe)
            }
            None => Ok(Permit::Normal),
        }
    }

    fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.probing = None;
    }

    /// Records a failed fetch; `true` when the circuit (re)opens.
    fn failure(&mut self, now: u64, permit: Permit, policy: &CircuitPolicy) -> bool {
        self.failures = self.failures.saturating_add(1);
        if permit == Permit::Probe {
            self.probing = None;
        }
        if permit == Permit::Probe || self.failures >= policy.failure_threshold {
            self.open_until = Some(now.saturating_add(policy.cool_down.as_secs().max(1)));
            true
        } else {
            false
        }
    }

    /// The probe ended without calling the endpoint (the store had a token).
    fn abandon(&mut self, permit: Permit) {
        if permit == Permit::Probe {
            self.probing = None;
        }
    }

    fn defer(&mut self, until: u64) {
        self.not_before = self.not_before.max(until);
    }
}

const SHARDS: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A counter sharded per thread, so the hit path does not bounce one cache line.
#[derive(Default)]
struct ShardedCounter([Padded; SHARDS]);

impl ShardedCounter {
    /// A plain load and store, not a read-modify-write: each thread has a shard of its own
    /// (up to 16 threads), so no count is lost unless threads share one, and then only a few.
    #[inline]
    fn incr(&self) {
        let cell = &self.0[shard()].0;
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }
    fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

#[inline]
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        s.set(v);
        v
    })
}

#[derive(Default)]
pub(crate) struct Stats {
    hits: ShardedCounter,
    misses: AtomicU64,
    fetches: AtomicU64,
    failures: AtomicU64,
    circuit_rejections: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> TokenStats {
        TokenStats {
            hits: self.hits.sum(),
            misses: self.misses.load(Ordering::Relaxed),
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            circuit_rejections: self.circuit_rejections.load(Ordering::Relaxed),
        }
    }
}

/// Everything a manager shares with its handles and fetch tasks.
pub(crate) struct Inner {
    pub(crate) clients: Box<[ClientState]>,
    pub(crate) slots: Box<[Arc<Slot>]>,
    pub(crate) dynamic: Mutex<HashMap<(Arc<str>, Arc<str>), Arc<Slot>>>,
    pub(crate) clock: SharedClock,
    /// `clock` is the system clock: the hit path reads `SystemTime::now()` directly.
    pub(crate) system_clock: bool,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) opts: Options,
    pub(crate) stats: Stats,
    pub(crate) owner: Arc<str>,
    pub(crate) runtime: Option<tokio::runtime::Handle>,
}

/// What a flight still owes the shared store once its waiters have their answer.
#[derive(Default)]
struct StoreWork {
    put: Option<(StoredToken, Duration)>,
    unlock: bool,
}

enum LockState {
    Held,
    Busy,
    Unavailable,
}

impl Inner {
    /// A configured slot: a linear scan of a handful of entries, no allocation.
    #[inline]
    pub(crate) fn find_slot(&self, audience: &str, scope: &str) -> Option<&Arc<Slot>> {
        self.slots.iter().find(|s| {
            same(s.request.audience_str(), audience) && same(s.request.scope_str(), scope)
        })
    }

    /// A slot for an unconfigured pair (created on first use; slower: a mutex and a hash).
    pub(crate) fn dynamic_slot(
        &self,
        audience: &str,
        scope: &str,
        create: bool,
    ) -> Result<Option<Arc<Slot>>, OutboundError> {
        let key: (Arc<str>, Arc<str>) = (audience.into(), scope.into());
        let mut dynamic = lock(&self.dynamic);
        if let Some(slot) = dynamic.get(&key) {
            return Ok(Some(slot.clone()));
        }
        if !create {
            return Ok(None);
        }
        let client = self
            .clients
            .iter()
            .position(|c| c.audiences.iter().any(|a| **a == *audience))
            .or(if self.clients.len() == 1 {
                Some(0)
            } else {
                None
            })
            .ok_or_else(|| OutboundError::NoClient {
                audience: key.0.clone(),
            })?;
        if dynamic.len() >= self.opts.max_dynamic_slots {
            return Err(OutboundError::TooManySlots);
        }
        let request = TokenRequest::new(key.0.clone(), key.1.clone());
        let store_key = store_key(
            &self.opts.store_prefix,
            &self.clients[client].identity,
            &request,
        );
        let slot = Arc::new(Slot::new(client, request, store_key));
        dynamic.insert(key, slot.clone());
        Ok(Some(slot))
    }

    /// The hit path. `None`: no valid token, take [`Inner::slow`].
    ///
    /// While the entry's stale timer vouches for it ([`Inner::arm`]): no clock read, and no
    /// read-modify-write of shared memory but the `HeaderValue`'s reference count: one load
    /// of the slot's state, then this thread's copy of that entry's header ([`local`]), made
    /// on its first hit from the entry itself ([`hit_shared`](Self::hit_shared)). Otherwise
    /// ([`hit_clock`](Self::hit_clock)) one clock read: with the system clock,
    /// `SystemTime::now()` compared with the token's precomputed times (the same decision as
    /// on whole seconds, without the conversion).
    #[inline(always)]
    pub(crate) fn hit(self: &Arc<Self>, slot: &Arc<Slot>) -> Option<HeaderValue> {
        let state = slot.state.load(Ordering::Acquire);
        if state & FRESH != 0 {
            if let Some(header) = local::get(slot.way, state) {
                self.stats.hits.incr();
                return Some(header);
            }
        }
        self.hit_shared(slot, state)
    }

    /// [`hit`](Self::hit) without this thread's copy: the entry from `current` while it is
    /// the one `state` names as fresh (then copied for this thread), else the clock.
    #[inline(never)]
    fn hit_shared(self: &Arc<Self>, slot: &Arc<Slot>, state: u64) -> Option<HeaderValue> {
        if state & FRESH != 0 {
            let guard = slot.current.load();
            // `state` is written after `current`: an entry of its generation in `current`
            // is the one it vouched for when it was read (or `current` moved on: the clock).
            if let Some(cached) = guard.as_ref().filter(|c| c.generation == state >> 1) {
                local::put(slot.way, state, &cached.header);
                self.stats.hits.incr();
                return Some(cached.header.clone());
            }
        }
        self.hit_clock(slot)
    }

    /// [`hit`](Self::hit) for an entry no timer vouches for: read the clock.
    #[inline(never)]
    fn hit_clock(self: &Arc<Self>, slot: &Arc<Slot>) -> Option<HeaderValue> {
        if self.system_clock {
            return self.hit_system(slot);
        }
        let now = self.clock.now_unix();
        let guard = slot.current.load();
        let cached = guard.as_ref()?;
        if now < cached.refresh_at {
            self.stats.hits.incr();
            return Some(cached.header.clone());
        }
        if now < cached.expires_at {
            self.stats.hits.incr();
            let header = cached.header.clone();
            drop(guard);
            self.refresh_in_background(slot, now);
            return Some(header);
        }
        None
    }

    /// [`hit_clock`](Self::hit_clock) on the system clock.
    #[inline(always)]
    fn hit_system(self: &Arc<Self>, slot: &Arc<Slot>) -> Option<HeaderValue> {
        let now = SystemTime::now();
        let guard = slot.current.load();
        let cached = guard.as_ref()?;
        if before(now, cached.refresh_at_time) {
            self.stats.hits.incr();
            return Some(cached.header.clone());
        }
        drop(guard);
        self.hit_system_late(slot, now)
    }

    /// [`hit_system`](Self::hit_system) at or past the refresh time: the token while it
    /// has not expired (and one background refresh), else `None`.
    #[cold]
    #[inline(never)]
    fn hit_system_late(self: &Arc<Self>, slot: &Arc<Slot>, now: SystemTime) -> Option<HeaderValue> {
        let guard = slot.current.load();
        let cached = guard.as_ref()?;
        if before(now, cached.refresh_at_time) {
            // Replaced in between by a fresh token.
            self.stats.hits.incr();
            return Some(cached.header.clone());
        }
        if before(now, cached.expires_at_time) {
            self.stats.hits.incr();
            let header = cached.header.clone();
            drop(guard);
            // As `SystemClock::now_unix` does.
            let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            self.refresh_in_background(slot, now);
            return Some(header);
        }
        None
    }

    /// Installs `cached` as the slot's token, with a stale timer when one can vouch for it.
    fn install(&self, slot: &Slot, cached: &Arc<Cached>) {
        let _writer = lock(&slot.writer);
        slot.current.store(Some(cached.clone()));
        let state = cached.generation << 1;
        match self.arm(cached) {
            Some((runtime, stale_at)) => {
                slot.state.store(state | FRESH, Ordering::Release);
                let guard = StaleOnDrop {
                    entry: Arc::downgrade(cached),
                    state: slot.state.clone(),
                    armed: state | FRESH,
                };
                // Dropped unrun if the runtime is shutting down: the guard clears the bit then.
                drop(runtime.spawn(stale_timer(guard, stale_at)));
            }
            None => slot.state.store(state, Ordering::Release),
        }
    }

    /// May the hit path skip the clock for `cached` until its refresh instant? `Some`: the
    /// runtime of the timer that marks it stale then (see [`stale_timer`]) and that instant.
    ///
    /// # Why this never hands out an expired token
    ///
    /// The hit path serves an entry without reading the clock only while its slot's state
    /// names it with the [`FRESH`] bit (per-thread copies included: a copy is served only
    /// while the state it was made under is the slot's state). [`install`](Self::install)
    /// sets the bit with the entry, and only when
    /// - the manager runs on the system clock (a [`Clock`](crate::clock::Clock) given to the
    ///   builder, e.g. a manual one in tests, is read on every call: a timer knows nothing of
    ///   it);
    /// - the caller runs on a multi-thread Tokio runtime, whose workers drive its timers
    ///   whenever they are idle (a current-thread runtime drives them only while a thread is
    ///   inside its `block_on`: an entry could outlive it undriven, so it keeps the clock
    ///   read; so does a token stored outside any runtime);
    /// - the stale instant, `min(refresh_at, expires_at - 1 s)`, is still ahead.
    ///
    /// It is cleared by the timer task, which owns a [`StaleOnDrop`] guard: when the wall
    /// clock (`SystemTime`, the same clock the expiry is judged on) reaches the stale instant,
    /// checked at least every [`STALE_RECHECK`] of timer time, and whenever the task ends for
    /// any other reason (the runtime shuts down and drops it, the entry is gone, the wall
    /// clock does not move with the timer). Once cleared, every call reads the clock as before
    /// (and starts the background refresh in the refresh window).
    ///
    /// So a token is handed out past its refresh instant without a clock read only while the
    /// timer is late, and past its expiry only if the timer is late by more than
    /// `expires_at - stale_at`: the refresh-ahead margin (`refresh_ahead` clamped to half the
    /// lifetime, less the jitter), and never less than 1 s. A timer is late when every worker
    /// of its runtime is blocked for that long, or for up to [`STALE_RECHECK`] after a suspend
    /// or a forward step of the wall clock.
    fn arm(&self, cached: &Cached) -> Option<(tokio::runtime::Handle, SystemTime)> {
        if !self.system_clock {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return None;
        }
        let stale_at = cached.refresh_at.min(cached.expires_at.saturating_sub(1));
        let stale_at = system_time(stale_at)?;
        if SystemTime::now() >= stale_at {
            return None;
        }
        Some((runtime, stale_at))
    }

    fn cool_down_secs(&self) -> u64 {
        self.opts.circuit.cool_down.as_secs().max(1)
    }

    /// The current token if it has not expired (refresh window included).
    fn valid(slot: &Slot, now: u64) -> Option<Arc<Cached>> {
        slot.current.load_full().filter(|c| now < c.expires_at)
    }

    /// The current token if it has not expired.
    pub(crate) fn current_valid(&self, slot: &Slot) -> Option<Arc<Cached>> {
        Self::valid(slot, self.clock.now_unix())
    }

    /// No valid token: wait for the slot's flight, starting it if needed.
    pub(crate) async fn slow(self: &Arc<Self>, slot: &Arc<Slot>) -> FlightResult {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        counter("tower_bearer_outbound_token_misses_total", &[]);
        let mut rx = {
            let mut flight = lock(&slot.flight);
            let now = self.clock.now_unix();
            if let Some(cached) = Self::valid(slot, now) {
                return Ok(cached);
            }
            match flight.as_ref().filter(|rx| alive(rx)) {
                Some(rx) => rx.clone(),
                None => {
                    let client = &self.clients[slot.client];
                    let permit = lock(&client.circuit)
                        .acquire(now, self.cool_down_secs())
                        .map_err(|secs| {
                            self.stats
                                .circuit_rejections
                                .fetch_add(1, Ordering::Relaxed);
                            counter("tower_bearer_outbound_circuit_rejections_total", &[]);
                            OutboundError::CircuitOpen {
                                client: client.name.clone(),
                                retry_after: Duration::from_secs(secs),
                            }
                        })?;
                    let rx = match self.start_flight(slot, permit) {
                        Ok(rx) => rx,
                        Err(e) => {
                            lock(&client.circuit).abandon(permit);
                            return Err(e);
                        }
                    };
                    *flight = Some(rx.clone());
                    rx
                }
            }
        };
        // Edition 2024: the watch read guard of this tail expression drops before `rx`.
        match rx.wait_for(Option::is_some).await {
            Ok(result) => result
                .clone()
                .unwrap_or(Err(OutboundError::Aborted("no result"))),
            Err(_) => Err(OutboundError::Aborted("fetch task ended without a result")),
        }
    }

    /// In the refresh window: start one background refresh unless one runs or failed lately.
    fn refresh_in_background(self: &Arc<Self>, slot: &Arc<Slot>, now: u64) {
        if slot.in_flight.load(Ordering::Relaxed)
            || now < slot.retry_not_before.load(Ordering::Relaxed)
        {
            return;
        }
        let mut flight = lock(&slot.flight);
        if flight.as_ref().is_some_and(alive) {
            return;
        }
        let client = &self.clients[slot.client];
        let permit = match lock(&client.circuit).acquire(now, self.cool_down_secs()) {
            Ok(permit) => permit,
            Err(secs) => {
                // Keep serving the valid token; look again when the circuit may let us.
                slot.retry_not_before
                    .store(now.saturating_add(secs), Ordering::Relaxed);
                return;
            }
        };
        match self.start_flight(slot, permit) {
            Ok(rx) => *flight = Some(rx),
            Err(_) => lock(&client.circuit).abandon(permit),
        }
    }

    /// Spawns the fetch task of `slot`. Called with the slot's flight lock held.
    fn start_flight(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        permit: Permit,
    ) -> Result<FlightRx, OutboundError> {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone())
            .ok_or(OutboundError::Aborted("no tokio runtime"))?;
        let (tx, rx) = watch::channel(None);
        slot.in_flight.store(true, Ordering::Relaxed);
        let inner = self.clone();
        let slot = slot.clone();
        runtime.spawn(async move {
            let (result, work) = inner.run_flight(&slot, permit).await;
            let now = inner.clock.now_unix();
            if result.is_ok() {
                slot.bg_failures.store(0, Ordering::Relaxed);
                slot.retry_not_before.store(0, Ordering::Relaxed);
            } else {
                let n = slot.bg_failures.fetch_add(1, Ordering::Relaxed).min(6);
                let wait = (1u64 << n).min(60);
                slot.retry_not_before
                    .fetch_max(now.saturating_add(wait), Ordering::Relaxed);
            }
            // Leave the slot first: a caller arriving from now on sees the installed token or
            // starts a new flight; it never joins this finished one.
            {
                let mut flight = lock(&slot.flight);
                *flight = None;
                slot.in_flight.store(false, Ordering::Relaxed);
            }
            let _ = tx.send(Some(result));
            inner.finish_store_work(&slot, work).await;
        });
        Ok(rx)
    }

    /// One flight: the store, the lock, the fetch with retries, the circuit bookkeeping.
    /// Returns the result and the store work left for after the waiters have it.
    async fn run_flight(&self, slot: &Slot, permit: Permit) -> (FlightResult, StoreWork) {
        let client = &self.clients[slot.client];
        let mut work = StoreWork::default();
        if let Some(cached) = self.adopt_from_store(slot).await {
            lock(&client.circuit).abandon(permit);
            return (Ok(cached), work);
        }
        let lock_state = self.try_lock(slot).await;
        work.unlock = matches!(lock_state, LockState::Held);
        if let LockState::Held = lock_state {
            // Another replica may have stored its token and released the lock between the
            // read above and this lock: read again before fetching.
            if let Some(cached) = self.adopt_from_store(slot).await {
                lock(&client.circuit).abandon(permit);
                return (Ok(cached), work);
            }
        }
        if let LockState::Busy = lock_state {
            // Another replica fetches: wait a bounded time for its token, then fetch anyway.
            let deadline = tokio::time::Instant::now() + self.opts.lock_wait;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(self.opts.lock_poll).await;
                if let Some(cached) = self.adopt_from_store(slot).await {
                    lock(&client.circuit).abandon(permit);
                    return (Ok(cached), work);
                }
            }
        }
        let result = self.fetch_with_retries(slot, permit).await;
        let now = self.clock.now_unix();
        let out = match result {
            Ok(cached) => {
                lock(&client.circuit).success();
                let cached = Arc::new(cached);
                self.install(slot, &cached);
                tracing::debug!(
                    client = %client.name,
                    expires_in = cached.expires_at.saturating_sub(now),
                    refresh_in = cached.refresh_at.saturating_sub(now),
                    "service token fetched"
                );
                let ttl = Duration::from_secs(cached.refresh_at.saturating_sub(now).max(1));
                work.put = Some((cached.stored.clone(), ttl));
                Ok(cached)
            }
            Err((source, attempts)) => {
                let mut circuit = lock(&client.circuit);
                if let Some(wait) = source.retry_after() {
                    circuit.defer(now.saturating_add(wait.as_secs()));
                }
                if circuit.failure(now, permit, &self.opts.circuit) {
                    counter("tower_bearer_outbound_circuit_open_total", &[]);
                    tracing::warn!(
                        client = %client.name,
                        cool_down_secs = self.opts.circuit.cool_down.as_secs(),
                        "token endpoint circuit open"
                    );
                }
                drop(circuit);
                Err(OutboundError::Fetch {
                    client: client.name.clone(),
                    attempts,
                    source: Box::new(source),
                })
            }
        };
        (out, work)
    }

    /// Shares a fetched token with the other replicas, then releases the fetch lock.
    async fn finish_store_work(&self, slot: &Slot, work: StoreWork) {
        if let Some((stored, ttl)) = work.put {
            let put = self.store.put(&slot.store_key, stored, ttl);
            if let Err(e) = self.with_store_timeout(put).await {
                tracing::warn!(
                    client = %self.clients[slot.client].name,
                    error = %e,
                    "token store put failed; using the local cache"
                );
            }
        }
        if work.unlock {
            let unlock = self.store.unlock(&slot.store_key, &self.owner);
            if let Err(e) = self.with_store_timeout(unlock).await {
                tracing::warn!(error = %e, "token store unlock failed");
            }
        }
    }

    async fn fetch_with_retries(
        &self,
        slot: &Slot,
        permit: Permit,
    ) -> Result<Cached, (FetchError, u32)> {
        let client = &self.clients[slot.client];
        let policy = &self.opts.retry;
        let attempts = if permit == Permit::Probe {
            1
        } else {
            policy.max_attempts
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.stats.fetches.fetch_add(1, Ordering::Relaxed);
            counter("tower_bearer_outbound_token_fetches_total", &[]);
            let result = match tokio::time::timeout(
                policy.attempt_timeout,
                client.source.fetch(&slot.request),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(FetchError::Timeout(policy.attempt_timeout)),
            };
            let capped = result.map(|token| self.cap(token, client.max_reuse));
            let error = match capped.and_then(|token| self.prepare(token, None)) {
                Ok(cached) => return Ok(cached),
                Err(e) => e,
            };
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            counter(
                "tower_bearer_outbound_token_failures_total",
                &[("kind", error.kind())],
            );
            tracing::warn!(client = %client.name, attempt, error = %error, "service token fetch failed");
            if error.is_permanent() || attempt >= attempts {
                return Err((error, attempt));
            }
            let mut delay = jittered_backoff(policy, attempt);
            if let Some(wait) = error.retry_after() {
                if wait > policy.max_retry_after {
                    return Err((error, attempt));
                }
                delay = delay.max(wait);
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// A fetched token treated as expiring at `min(its expiry, now + max_reuse)`: refresh
    /// ahead then counts back from that bound, and the bound also travels to the store.
    fn cap(&self, token: AccessToken, max_reuse: Option<Duration>) -> AccessToken {
        match max_reuse {
            Some(max) => {
                let bound = self.clock.now_unix().saturating_add(max.as_secs());
                token.expiring_no_later_than(bound)
            }
            None => token,
        }
    }

    /// Checks a token and computes its refresh time (or takes `refresh_at` from the store).
    fn prepare(&self, token: AccessToken, refresh_at: Option<u64>) -> Result<Cached, FetchError> {
        if !token.token_type().eq_ignore_ascii_case("bearer") {
            return Err(FetchError::TokenType(super::error::sanitize(
                token.token_type(),
                32,
            )));
        }
        if !is_b64token(token.value()) {
            return Err(FetchError::InvalidResponse(
                "access_token is not an RFC 6750 b64token".into(),
            ));
        }
        let now = self.clock.now_unix();
        // A token is used for at least the second it arrived in.
        let expires_at = token.expires_at_unix().max(now.saturating_add(1));
        let refresh_at = match refresh_at {
            Some(at) => at.min(expires_at),
            None => refresh_time(
                now,
                expires_at,
                self.opts.refresh_ahead.as_secs(),
                self.opts.refresh_jitter,
                random_unit(),
            ),
        };
        let mut header =
            HeaderValue::from_maybe_shared(Bytes::from(format!("Bearer {}", token.value())))
                .map_err(|_| {
                    FetchError::InvalidResponse("access_token cannot go into a header".into())
                })?;
        header.set_sensitive(true);
        // The first clone of `Bytes` made from a `Vec` allocates its shared header; do it now so
        // that clones on the hit path are a reference-count increment only.
        drop(header.clone());
        Ok(Cached {
            header,
            stored: StoredToken::new(token, refresh_at),
            refresh_at,
            expires_at,
            refresh_at_time: system_time(refresh_at),
            expires_at_time: system_time(expires_at),
            generation: next_generation(),
        })
    }

    async fn adopt_from_store(&self, slot: &Slot) -> Option<Arc<Cached>> {
        let stored = match self
            .with_store_timeout(self.store.get(&slot.store_key))
            .await
        {
            Ok(Some(stored)) => stored,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "token store get failed; using the local cache");
                return None;
            }
        };
        let now = self.clock.now_unix();
        if stored.refresh_at_unix() <= now || stored.token().expires_at_unix() <= now {
            return None;
        }
        if lock(&slot.invalidated).as_deref() == Some(stored.fingerprint()) {
            return None;
        }
        let refresh_at = stored.refresh_at_unix();
        let cached = Arc::new(
            self.prepare(stored.token().clone(), Some(refresh_at))
                .ok()?,
        );
        self.install(slot, &cached);
        tracing::debug!(client = %self.clients[slot.client].name, "service token taken from the shared store");
        Some(cached)
    }

    async fn try_lock(&self, slot: &Slot) -> LockState {
        let policy = &self.opts.retry;
        // Above the worst-case fetch: every attempt timing out, with the longest waits between.
        let ttl = (policy.attempt_timeout + policy.backoff_max.max(policy.max_retry_after))
            * policy.max_attempts
            + Duration::from_secs(1);
        let fut = self.store.try_lock(&slot.store_key, &self.owner, ttl);
        match self.with_store_timeout(fut).await {
            Ok(true) => LockState::Held,
            Ok(false) => LockState::Busy,
            Err(e) => {
                tracing::warn!(error = %e, "token store lock failed; fetching without it");
                LockState::Unavailable
            }
        }
    }

    async fn with_store_timeout<T>(
        &self,
        fut: crate::http_client::BoxFuture<'static, Result<T, crate::store::StoreError>>,
    ) -> Result<T, crate::store::StoreError> {
        match tokio::time::timeout(self.opts.store_timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(crate::store::StoreError::new("timed out")),
        }
    }

    /// Drops the slot's token; `true` if there was one.
    pub(crate) fn invalidate(&self, slot: &Slot) -> bool {
        let writer = lock(&slot.writer);
        let old = slot.current.swap(None);
        slot.state.store(0, Ordering::Release);
        drop(writer);
        match old {
            Some(old) => {
                self.forget(slot, &old);
                true
            }
            None => false,
        }
    }

    /// Drops the slot's token if it is still `value`, at most once per interval.
    pub(crate) fn invalidate_if_current(&self, slot: &Slot, value: &HeaderValue) -> bool {
        let now = self.clock.now_unix();
        let mut last = lock(&slot.last_invalidation);
        if let Some(at) = *last {
            if now < at.saturating_add(self.opts.invalidate_interval.as_secs()) {
                return false;
            }
        }
        let Some(current) = slot.current.load_full() else {
            return false;
        };
        if current.header.as_bytes() != value.as_bytes() {
            return false;
        }
        let current = Some(current);
        let writer = lock(&slot.writer);
        let previous = slot.current.compare_and_swap(&current, None);
        match (&*previous, &current) {
            (Some(p), Some(c)) if Arc::ptr_eq(p, c) => {}
            _ => return false,
        }
        slot.state.store(0, Ordering::Release);
        drop(writer);
        drop(previous);
        *last = Some(now);
        drop(last);
        if let Some(old) = current {
            self.forget(slot, &old);
        }
        tracing::info!(client = %self.clients[slot.client].name, "service token invalidated after a downstream invalid_token");
        true
    }

    fn forget(&self, slot: &Slot, old: &Cached) {
        let fingerprint: Arc<str> = old.stored.fingerprint().into();
        *lock(&slot.invalidated) = Some(fingerprint.clone());
        let delete = self.store.delete_if(&slot.store_key, &fingerprint);
        let timeout = self.opts.store_timeout;
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone());
        if let Some(runtime) = runtime {
            runtime.spawn(async move {
                match tokio::time::timeout(timeout, delete).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "token store delete failed"),
                    Err(_) => tracing::warn!("token store delete timed out"),
                }
            });
        }
    }
}

/// A flight that can still be joined: no result yet, and its task has not gone away.
fn alive(rx: &FlightRx) -> bool {
    rx.borrow().is_none() && rx.has_changed().is_ok()
}

/// `refresh_at` for a token valid from `now` to `expires_at`: `refresh_ahead` before the
/// expiry, clamped to half the lifetime, then shortened by up to `jitter` of itself (the
/// refresh moves later, never earlier than `refresh_ahead` before the expiry).
pub(crate) fn refresh_time(
    now: u64,
    expires_at: u64,
    refresh_ahead: u64,
    jitter: f64,
    unit: f64,
) -> u64 {
    let lifetime = expires_at.saturating_sub(now);
    let window = refresh_ahead.min(lifetime / 2);
    let shave = (window as f64 * jitter * unit) as u64;
    expires_at - (window - shave.min(window))
}

fn jittered_backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let base = policy
        .backoff_base
        .saturating_mul(1 << exp)
        .min(policy.backoff_max);
    // Equal jitter: half fixed, half random.
    base.mul_f64(0.5f64.mul_add(random_unit(), 0.5))
}

/// A uniform number in `[0, 1)` from the system RNG.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// RFC 6750 §2.1 `b64token`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The shared store key: prefix + SHA-256 of the length-prefixed (source identity, audience,
/// sorted scopes).
pub(crate) fn store_key(prefix: &str, identity: &str, request: &TokenRequest) -> String {
    let mut scopes: Vec<&str> = request.scope_str().split_whitespace().collect();
    scopes.sort_unstable();
    scopes.dedup();
    let scopes = scopes.join(" ");
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [identity, request.audience_str(), &scopes] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let digest = ctx.finish();
    format!(
        "{prefix}:token:{}",
        crate::store::hex_digest(digest.as_ref())
    )
}

/// A random id for this manager, the owner of store locks.
pub(crate) fn owner_id() -> Arc<str> {
    let mut bytes = [0u8; 12];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    crate::store::hex_digest(&bytes).into()
}

/// Per-thread copies of fresh tokens' headers, so that a hit on a fresh entry reads no
/// shared memory but its slot's state (no `ArcSwap` load, whose debt slot costs two atomic
/// read-modify-writes per call).
///
/// Each thread keeps [`WAYS`] `(state, header)` pairs; a slot always uses the same one
/// ([`Slot::way`]). A copy is served only while its slot's state is exactly the state it
/// was made under: states with the [`FRESH`] bit carry a generation unique in the process,
/// so a copy never answers for another slot, another manager or a later entry, and an entry
/// replaced, invalidated or gone stale (its timer cleared the bit) is never served from a
/// copy again. A replaced token's bytes stay referenced by a thread's copy until that
/// thread's next hit on a slot of the same way, or its exit (at most [`WAYS`] per thread).
mod local {
    use std::cell::RefCell;

    use http::HeaderValue;

    /// Copies per thread.
    pub(super) const WAYS: usize = 8;

    const EMPTY: (u64, HeaderValue) = (0, HeaderValue::from_static(""));

    thread_local! {
        static COPIES: RefCell<[(u64, HeaderValue); WAYS]> = const { RefCell::new([EMPTY; WAYS]) };
    }

    /// The way of a new slot (round robin: a process's first slots get a way each).
    pub(super) fn way() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % WAYS
    }

    /// This thread's copy in `way` if it was made under `state` (which has the fresh bit).
    #[inline(always)]
    pub(super) fn get(way: usize, state: u64) -> Option<HeaderValue> {
        COPIES
            .try_with(|copies| {
                let copies = copies.try_borrow().ok()?;
                let (at, header) = copies.get(way)?;
                (*at == state).then(|| header.clone())
            })
            .ok()
            .flatten()
    }

    /// Makes `header` this thread's copy in `way`, under `state`.
    pub(super) fn put(way: usize, state: u64, header: &HeaderValue) {
        let _ = COPIES.try_with(|copies| {
            if let Some(copy) = copies
                .try_borrow_mut()
                .ok()
                .as_deref_mut()
                .and_then(|c| c.get_mut(way))
            {
                *copy = (state, header.clone());
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_window_is_clamped_and_jitter_only_shortens_it() {
        // 60 s ahead of a one-hour token.
        assert_eq!(refresh_time(1000, 4600, 60, 0.0, 0.9), 4540);
        // Jitter moves the refresh later, never earlier.
        let at = refresh_time(1000, 4600, 60, 0.2, 0.99);
        assert!((4540..=4552).contains(&at), "{at}");
        // A window longer than the lifetime is clamped to half of it.
        assert_eq!(refresh_time(1000, 1010, 60, 0.0, 0.0), 1005);
        assert_eq!(refresh_time(1000, 1001, 60, 0.0, 0.0), 1001);
    }

    #[test]
    fn circuit_opens_probes_and_closes() {
        let policy = CircuitPolicy {
            failure_threshold: 2,
            cool_down: Duration::from_secs(30),
        };
        let mut c = Circuit::default();
        assert_eq!(c.acquire(0, 30), Ok(Permit::Normal));
        assert!(!c.failure(0, Permit::Normal, &policy));
        assert!(c.failure(1, Permit::Normal, &policy));
        assert_eq!(c.acquire(2, 30), Err(29));
        assert_eq!(c.acquire(31, 30), Ok(Permit::Probe));
        assert_eq!(c.acquire(31, 30), Err(1), "one probe at a time");
        assert_eq!(c.acquire(45, 30), Err(1));
        assert!(c.failure(31, Permit::Probe, &policy));
        assert_eq!(c.acquire(32, 30), Err(29));
        assert_eq!(c.acquire(61, 30), Ok(Permit::Probe));
        c.success();
        assert_eq!(c.acquire(61, 30), Ok(Permit::Normal));
        c.defer(70);
        assert_eq!(c.acquire(65, 30), Err(5));
        // A probe that never reports back is replaced after a cool-down.
        let mut c = Circuit {
            open_until: Some(10),
            ..Circuit::default()
        };
        assert_eq!(c.acquire(10, 30), Ok(Permit::Probe));
        assert_eq!(c.acquire(39, 30), Err(1));
        assert_eq!(c.acquire(40, 30), Ok(Permit::Probe));
    }

    /// The system-clock hit path decides on `SystemTime`s as the general one does on whole
    /// seconds: `now < at` exactly when `floor(now) < at`.
    #[test]
    fn system_time_compare_is_the_whole_second_compare() {
        let base = 1_700_000_000u64;
        for secs in [base - 1, base, base + 1] {
            for nanos in [0, 1, 500_000_000, 999_999_999] {
                let now = UNIX_EPOCH + Duration::new(secs, nanos);
                let unix = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
                for at in [base - 1, base, base + 1, base + 2] {
                    assert_eq!(
                        before(now, system_time(at)),
                        unix < at,
                        "{secs}.{nanos} < {at}"
                    );
                }
            }
        }
        // Past what `SystemTime` holds: never reached.
        assert!(before(SystemTime::now(), system_time(u64::MAX)));
    }

    #[test]
    fn b64tokens() {
        assert!(is_b64token("abc.DEF-_~+/=="));
        assert!(!is_b64token("a b"));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("a=b"));
    }

    #[test]
    fn origins_match_without_allocating() {
        let o = Origin::new("http".into(), "127.0.0.1".into(), 80);
        assert!(o.matches(&"HTTP://127.0.0.1/x".parse().unwrap()));
        assert!(o.matches(&"http://127.0.0.1:80/x".parse().unwrap()));
        assert!(!o.matches(&"http://127.0.0.1:81/x".parse().unwrap()));
        assert!(!o.matches(&"https://127.0.0.1/x".parse().unwrap()));
        assert!(!o.matches(&"/x".parse().unwrap()));
    }

    /// A store where another replica's token lands between the first read and the lock.
    #[derive(Debug)]
    struct LateStore {
        gets: AtomicUsize,
        token: StoredToken,
    }

    impl TokenStore for LateStore {
        fn get(
            &self,
            _: &str,
        ) -> crate::http_client::BoxFuture<
            'static,
            Result<Option<StoredToken>, crate::store::StoreError>,
        > {
            let found = (self.gets.fetch_add(1, Ordering::SeqCst) > 0).then(|| self.token.clone());
            Box::pin(async move { Ok(found) })
        }
        fn put(
            &self,
            _: &str,
            _: StoredToken,
            _: Duration,
        ) -> crate::http_client::BoxFuture<'static, Result<(), crate::store::StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn delete_if(
            &self,
            _: &str,
            _: &str,
        ) -> crate::http_client::BoxFuture<'static, Result<bool, crate::store::StoreError>>
        {
            Box::pin(async { Ok(false) })
        }
        fn try_lock(
            &self,
            _: &str,
            _: &str,
            _: Duration,
        ) -> crate::http_client::BoxFuture<'static, Result<bool, crate::store::StoreError>>
        {
            Box::pin(async { Ok(true) })
        }
        fn unlock(
            &self,
            _: &str,
            _: &str,
        ) -> crate::http_client::BoxFuture<'static, Result<(), crate::store::StoreError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn the_lock_holder_reads_the_store_again_before_fetching() {
        use crate::outbound::{TokenClient, TokenManager};
        let clock = crate::clock::ManualClock::new(1000);
        let fetches = Arc::new(AtomicUsize::new(0));
        let counted = fetches.clone();
        let source = move |_: &TokenRequest| -> crate::http_client::BoxFuture<
            'static,
            Result<AccessToken, FetchError>,
        > {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(AccessToken::bearer("mine", 5000)) })
        };
        let store = Arc::new(LateStore {
            gets: AtomicUsize::new(0),
            token: StoredToken::new(AccessToken::bearer("theirs", 4600), 4540),
        });
        let manager = TokenManager::builder()
            .client(TokenClient::new("c", source))
            .clock(Arc::new(clock))
            .store(store.clone())
            .build()
            .unwrap();
        assert_eq!(manager.token("", "").await.unwrap(), "Bearer theirs");
        assert_eq!(fetches.load(Ordering::SeqCst), 0);
        assert_eq!(store.gets.load(Ordering::SeqCst), 2);
    }

    /// A manager on the system clock whose tokens live `lifetime` seconds (value
    /// `t<n>.<exp>`), refreshed 1 s ahead without jitter; and its fetch count.
    fn short_lived(lifetime: u64) -> (crate::outbound::TokenManager, Arc<AtomicUsize>) {
        let (client, fetches) = counting_client(lifetime, |n, exp| format!("t{n}.{exp}"));
        let manager = crate::outbound::TokenManager::builder()
            .client(client)
            .refresh_ahead(Duration::from_secs(1))
            .refresh_jitter(0.0)
            .build()
            .unwrap();
        (manager, fetches)
    }

    /// A client `c` on a source whose tokens live `lifetime` seconds, valued
    /// `value(n, exp)` (n: fetches before); and its fetch count.
    fn counting_client(
        lifetime: u64,
        value: impl Fn(usize, u64) -> String + Send + Sync + 'static,
    ) -> (crate::outbound::TokenClient, Arc<AtomicUsize>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let counted = fetches.clone();
        let source = move |_: &TokenRequest| -> crate::http_client::BoxFuture<
            'static,
            Result<AccessToken, FetchError>,
        > {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let exp = unix_now() + lifetime;
            let token = AccessToken::bearer(value(n, exp), exp);
            Box::pin(async move { Ok(token) })
        };
        (crate::outbound::TokenClient::new("c", source), fetches)
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn entry(manager: &crate::outbound::TokenManager) -> Arc<Cached> {
        manager
            .inner()
            .find_slot("", "")
            .unwrap()
            .current
            .load_full()
            .unwrap()
    }

    /// Does the slot's state vouch for `cached` (its stale timer has not cleared it)?
    fn fresh(manager: &crate::outbound::TokenManager, cached: &Cached) -> bool {
        let slot = manager.inner().find_slot("", "").unwrap();
        slot.state.load(Ordering::Acquire) == cached.generation << 1 | FRESH
    }

    fn multi_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Polls a future that must complete at once (a hit).
    fn now_or_never<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("not a hit"),
        }
    }

    /// Real time: the stale flag holds until the refresh instant, flips then, and the next
    /// call refreshes in the background.
    #[test]
    fn stale_flag_flips_at_the_refresh_instant() {
        let rt = multi_thread();
        let (manager, fetches) = short_lived(3);
        rt.block_on(manager.warm_up()).unwrap();
        let cached = entry(&manager);
        assert!(fresh(&manager, &cached), "armed on a multi-thread runtime");
        let stale_at = cached.refresh_at_time.unwrap();
        assert_eq!(cached.refresh_at + 1, cached.expires_at);
        // A hit on this thread: it keeps a copy of the header (served while fresh only).
        let copied = now_or_never(manager.token("", "")).unwrap();
        assert!(copied.to_str().unwrap().starts_with("Bearer t0."));
        // Still fresh shortly before the refresh instant (the timer does not fire early).
        if let Ok(left) = stale_at.duration_since(SystemTime::now()) {
            std::thread::sleep(left.saturating_sub(Duration::from_millis(150)));
            if SystemTime::now() < stale_at {
                assert!(fresh(&manager, &cached));
            }
        }
        // Stale soon after it.
        let deadline = stale_at + Duration::from_millis(500);
        while fresh(&manager, &cached) && SystemTime::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!fresh(&manager, &cached), "stale after the refresh instant");
        assert!(SystemTime::now() >= stale_at, "not before it");
        // The clock path serves the old token (not expired) and refreshes in the background.
        let _enter = rt.enter();
        let first = now_or_never(manager.token("", "")).unwrap();
        assert!(first.to_str().unwrap().starts_with("Bearer t0."));
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while fetches.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        let refreshed = entry(&manager);
        assert!(!Arc::ptr_eq(&refreshed, &cached));
        assert!(fresh(&manager, &refreshed));
        // This thread's copy of the old header is not served again: the new token is.
        let next = now_or_never(manager.token("", "")).unwrap();
        assert!(next.to_str().unwrap().starts_with("Bearer t1."));
        assert!(manager.stats().hits >= 3);
    }

    /// A manager on the system clock whose one client's token is `{name}{n}` (n: fetches
    /// before), and its fetch count.
    fn named(name: &'static str) -> (crate::outbound::TokenManager, Arc<AtomicUsize>) {
        let (client, fetches) = counting_client(3600, move |n, _| format!("{name}{n}"));
        let manager = crate::outbound::TokenManager::builder()
            .client(client)
            .build()
            .unwrap();
        (manager, fetches)
    }

    /// More slots than a thread has copies (so some share one): every call on this thread
    /// gets its own slot's token, round after round.
    #[test]
    fn per_thread_copies_never_answer_for_another_slot() {
        const NAMES: [&str; local::WAYS + 3] =
            ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"];
        let rt = multi_thread();
        let managers: Vec<_> = NAMES.iter().map(|name| named(name).0).collect();
        for manager in &managers {
            rt.block_on(manager.warm_up()).unwrap();
            assert!(fresh(manager, &entry(manager)));
        }
        for _ in 0..3 {
            for (manager, name) in managers.iter().zip(NAMES) {
                let header = now_or_never(manager.token("", "")).unwrap();
                assert_eq!(header, format!("Bearer {name}0").as_str());
            }
        }
        for manager in &managers {
            assert_eq!(manager.stats().hits, 3);
        }
    }

    /// A token invalidated (or invalidated while current) is not served from this thread's
    /// copy: the next call waits for a new one.
    #[test]
    fn per_thread_copies_end_with_an_invalidation() {
        let rt = multi_thread();
        let (manager, fetches) = named("x");
        rt.block_on(manager.warm_up()).unwrap();
        for _ in 0..2 {
            assert_eq!(now_or_never(manager.token("", "")).unwrap(), "Bearer x0");
        }
        assert!(manager.invalidate("", ""));
        // `block_on` polls on this thread: a copy would answer here.
        assert_eq!(rt.block_on(manager.token("", "")).unwrap(), "Bearer x1");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(now_or_never(manager.token("", "")).unwrap(), "Bearer x1");
        let used = now_or_never(manager.token("", "")).unwrap();
        assert!(manager.invalidate_if_current("", "", &used));
        assert_eq!(rt.block_on(manager.token("", "")).unwrap(), "Bearer x2");
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
        assert!(fresh(&manager, &entry(&manager)));
    }

    /// The runtime that armed the timer goes away: the entry goes stale with it, and is
    /// still served (through the clock) while valid.
    #[test]
    fn dropping_the_runtime_marks_the_entry_stale() {
        let rt = multi_thread();
        let (manager, _) = short_lived(3600);
        rt.block_on(manager.warm_up()).unwrap();
        let cached = entry(&manager);
        assert!(fresh(&manager, &cached));
        drop(rt);
        assert!(!fresh(&manager, &cached));
        let header = now_or_never(manager.token("", "")).unwrap();
        assert!(header.to_str().unwrap().starts_with("Bearer t0."));
        assert_eq!(manager.stats().hits, 1);
    }

    /// No timer vouches on a current-thread runtime (it may go undriven), nor for a clock the
    /// builder was given.
    #[test]
    fn current_thread_runtimes_and_given_clocks_keep_the_clock_read() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (manager, _) = short_lived(3600);
        rt.block_on(manager.warm_up()).unwrap();
        assert!(!fresh(&manager, &entry(&manager)));

        let rt = multi_thread();
        let source = |_: &TokenRequest| -> crate::http_client::BoxFuture<
            'static,
            Result<AccessToken, FetchError>,
        > { Box::pin(async { Ok(AccessToken::bearer("m", 5000)) }) };
        let manager = crate::outbound::TokenManager::builder()
            .client(crate::outbound::TokenClient::new("c", source))
            .clock(Arc::new(crate::clock::ManualClock::new(1000)))
            .build()
            .unwrap();
        rt.block_on(manager.warm_up()).unwrap();
        assert!(!fresh(&manager, &entry(&manager)));
    }

    /// Real time, 2-second tokens, calls across two expiries: a
    /// token handed out was never expired when the call began.
    #[test]
    fn an_expired_token_is_never_served() {
        let rt = multi_thread();
        let (manager, fetches) = short_lived(2);
        rt.block_on(manager.warm_up()).unwrap();
        let end = std::time::Instant::now() + Duration::from_millis(3500);
        let mut served = 0u64;
        while std::time::Instant::now() < end {
            let began = unix_now();
            let header = rt.block_on(manager.token("", "")).unwrap();
            let exp: u64 = header
                .to_str()
                .unwrap()
                .rsplit('.')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(began < exp, "token expiring at {exp} served at {began}");
            served += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(served > 1000, "{served}");
        assert!(fetches.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn same_is_string_equality() {
        let base: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for eq in [same, same_authority] {
            for n in 0..40 {
                let a = std::str::from_utf8(&base[..n]).unwrap();
                assert!(eq(a, a), "{n}");
                assert!(eq(a, &String::from(a)), "{n}");
                for m in 0..40 {
                    let b = std::str::from_utf8(&base[..m]).unwrap();
                    assert_eq!(eq(a, b), a == b, "{n} {m}");
                }
                // One byte different, anywhere.
                for i in 0..n {
                    let mut other = base[..n].to_vec();
                    other[i] = b'Z';
                    assert!(!eq(a, std::str::from_utf8(&other).unwrap()), "{n} at {i}");
                }
            }
        }
    }

    #[test]
    fn store_keys_sort_scopes() {
        let a = store_key("p", "id", &TokenRequest::new("aud", "b a"));
        let b = store_key("p", "id", &TokenRequest::new("aud", "a  b a"));
        let c = store_key("p", "id", &TokenRequest::new("au", "db a"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("p:token:"));
    }
}
