//! Failed-attempt limiting (brute force): failures counted per key (a client id, a source
//! address, later a username), a growing backoff after a few failures, then a temporary lock.
//!
//! A key with fewer than `free_failures` recent failures is never slowed down. Each further
//! failure blocks the key for `base_backoff · 2^(n − free_failures)` (capped at
//! `lock_duration`); at `lock_after` failures it is locked for `lock_duration`. Failures older
//! than `window` are forgotten; a success clears the key. The table is bounded
//! (`max_keys`): when full, entries that block nothing are dropped first.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower_bearer::clock::ManualClock;
//! use tower_bearer::issuer::limiter::{Limiter, LimiterConfig};
//!
//! let clock = ManualClock::new(1_000);
//! let cfg = LimiterConfig::default()
//!     .with_free_failures(2)
//!     .with_lock_after(4)
//!     .with_base_backoff(Duration::from_secs(1))
//!     .with_lock_duration(Duration::from_secs(300));
//! let limiter = Limiter::new(cfg, Arc::new(clock.clone()));
//! limiter.record_failure("client-a");
//! limiter.record_failure("client-a");
//! assert!(limiter.check("client-a").is_ok()); // two free failures
//! limiter.record_failure("client-a");
//! assert_eq!(limiter.check("client-a"), Err(Duration::from_secs(1)));
//! clock.advance(Duration::from_secs(1));
//! assert!(limiter.check("client-a").is_ok());
//! limiter.record_failure("client-a"); // the fourth: locked
//! assert_eq!(limiter.check("client-a"), Err(Duration::from_secs(300)));
//! assert!(limiter.check("client-b").is_ok());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::SharedClock;

/// Limits of a [`Limiter`]. See the [module docs](crate::issuer::limiter).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::issuer::limiter::LimiterConfig;
///
/// let cfg = LimiterConfig::default();
/// assert_eq!(cfg.free_failures, 5);
/// assert_eq!(cfg.lock_duration, Duration::from_secs(900));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterConfig {
    /// Failures allowed without any delay (default 5).
    pub free_failures: u32,
    /// Failures that lock the key for `lock_duration` (default 20).
    pub lock_after: u32,
    /// The first backoff (default 1 s), doubled at each further failure.
    pub base_backoff: Duration,
    /// How long a locked key stays locked (default 15 min); also the backoff cap.
    pub lock_duration: Duration,
    /// Failures older than this are forgotten (default 15 min).
    pub window: Duration,
    /// Most keys tracked at once (default 100 000).
    pub max_keys: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            free_failures: 5,
            lock_after: 20,
            base_backoff: Duration::from_secs(1),
            lock_duration: Duration::from_secs(900),
            window: Duration::from_secs(900),
            max_keys: 100_000,
        }
    }
}

impl LimiterConfig {
    /// Limits for source addresses: more lenient than per client or user, since many callers
    /// may share one address (NAT): 50 free failures, lock after 200.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    ///
    /// assert_eq!(LimiterConfig::per_address().lock_after, 200);
    /// ```
    pub fn per_address() -> Self {
        Self {
            free_failures: 50,
            lock_after: 200,
            ..Self::default()
        }
    }

    /// Sets `free_failures`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    ///
    /// assert_eq!(LimiterConfig::default().with_free_failures(3).free_failures, 3);
    /// ```
    #[must_use]
    pub fn with_free_failures(mut self, n: u32) -> Self {
        self.free_failures = n;
        self
    }

    /// Sets `lock_after`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    ///
    /// assert_eq!(LimiterConfig::default().with_lock_after(10).lock_after, 10);
    /// ```
    #[must_use]
    pub fn with_lock_after(mut self, n: u32) -> Self {
        self.lock_after = n;
        self
    }

    /// Sets `base_backoff`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    ///
    /// let cfg = LimiterConfig::default().with_base_backoff(Duration::from_secs(2));
    /// assert_eq!(cfg.base_backoff, Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn with_base_backoff(mut self, d: Duration) -> Self {
        self.base_backoff = d;
        self
    }

    /// Sets `lock_duration`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    ///
    /// let cfg = LimiterConfig::default().with_lock_duration(Duration::from_secs(60));
    /// assert_eq!(cfg.lock_duration, Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn with_lock_duration(mut self, d: Duration) -> Self {
        self.lock_duration = d;
        self
    }

    /// Sets `window`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    ///
    /// let cfg = LimiterConfig::default().with_window(Duration::from_secs(60));
    /// assert_eq!(cfg.window, Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn with_window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }

    /// Sets `max_keys`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    ///
    /// assert_eq!(LimiterConfig::default().with_max_keys(10).max_keys, 10);
    /// ```
    #[must_use]
    pub fn with_max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: u64,
    blocked_until: u64,
}

/// Counts failures per key and says how long a key must wait. Cheap to clone (shared state).
/// See the [module docs](crate::issuer::limiter) for an example.
#[derive(Clone)]
pub struct Limiter {
    cfg: LimiterConfig,
    clock: SharedClock,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("cfg", &self.cfg)
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl Limiter {
    /// A limiter with `cfg`, timed by `clock`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::clock::SystemClock;
    /// use tower_bearer::issuer::limiter::{Limiter, LimiterConfig};
    ///
    /// let limiter = Limiter::new(LimiterConfig::default(), Arc::new(SystemClock));
    /// assert!(limiter.check("anyone").is_ok());
    /// ```
    pub fn new(cfg: LimiterConfig, clock: SharedClock) -> Self {
        Self {
            cfg,
            clock,
            entries: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// `Ok` when `key` may try now, else `Err(retry_after)` (at least one second).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::clock::ManualClock;
    /// use tower_bearer::issuer::limiter::{Limiter, LimiterConfig};
    ///
    /// let limiter = Limiter::new(LimiterConfig::default().with_free_failures(0), Arc::new(ManualClock::new(5)));
    /// limiter.record_failure("k");
    /// assert!(limiter.check("k").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// How long the key must wait.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // The clock is read only for a key with failures (an untracked key, the common case,
        // may always try).
        let Some(e) = (!entries.is_empty()).then(|| entries.get(key)).flatten() else {
            return Ok(());
        };
        let now = self.clock.now_unix();
        if e.blocked_until > now {
            Err(Duration::from_secs(e.blocked_until - now).max(Duration::from_secs(1)))
        } else {
            Ok(())
        }
    }

    /// Counts a failure of `key` and returns how long it is now blocked (zero when not).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower_bearer::clock::ManualClock;
    /// use tower_bearer::issuer::limiter::{Limiter, LimiterConfig};
    ///
    /// let limiter = Limiter::new(LimiterConfig::default().with_free_failures(1), Arc::new(ManualClock::new(5)));
    /// assert_eq!(limiter.record_failure("k"), Duration::ZERO);
    /// assert_eq!(limiter.record_failure("k"), Duration::from_secs(1));
    /// assert_eq!(limiter.record_failure("k"), Duration::from_secs(2));
    /// ```
    pub fn record_failure(&self, key: &str) -> Duration {
        let now = self.clock.now_unix();
        let cfg = &self.cfg;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= cfg.max_keys && !entries.contains_key(key) {
            let window = cfg.window.as_secs();
            entries.retain(|_, e| e.blocked_until > now || now - e.last_failure < window);
            if entries.len() >= cfg.max_keys {
                entries.retain(|_, e| e.blocked_until > now);
            }
            if entries.len() >= cfg.max_keys {
                // Every tracked key is blocked: do not grow further.
                return Duration::ZERO;
            }
        }
        let e = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: 0,
        });
        if now.saturating_sub(e.last_failure) >= cfg.window.as_secs() && e.blocked_until <= now {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        let lock = cfg.lock_duration.as_secs();
        let block = if e.failures >= cfg.lock_after.max(1) {
            lock
        } else if e.failures > cfg.free_failures {
            let exp = (e.failures - cfg.free_failures - 1).min(32);
            cfg.base_backoff
                .as_secs()
                .max(1)
                .saturating_mul(1u64 << exp)
                .min(lock)
        } else {
            0
        };
        e.blocked_until = e.blocked_until.max(now.saturating_add(block));
        Duration::from_secs(block)
    }

    /// Whether a wait returned by [`record_failure`](Self::record_failure) is the lock (the
    /// key reached `lock_after`), not a mere backoff.
    pub(crate) fn is_lock(&self, block: Duration) -> bool {
        !block.is_zero() && block >= self.cfg.lock_duration
    }

    /// A success: forgets `key`'s failures.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::clock::ManualClock;
    /// use tower_bearer::issuer::limiter::{Limiter, LimiterConfig};
    ///
    /// let limiter = Limiter::new(LimiterConfig::default(), Arc::new(ManualClock::new(5)));
    /// limiter.record_failure("k");
    /// limiter.record_success("k");
    /// assert_eq!(limiter.tracked(), 0);
    /// ```
    pub fn record_success(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Nothing tracked (the common case): no hash of the key.
        if !entries.is_empty() {
            entries.remove(key);
        }
    }

    /// How many keys are tracked.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::clock::ManualClock;
    /// use tower_bearer::issuer::limiter::{Limiter, LimiterConfig};
    ///
    /// let limiter = Limiter::new(LimiterConfig::default(), Arc::new(ManualClock::new(5)));
    /// limiter.record_failure("a");
    /// limiter.record_failure("b");
    /// assert_eq!(limiter.tracked(), 2);
    /// ```
    pub fn tracked(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn window_forgets_and_table_is_bounded() {
        let clock = ManualClock::new(1_000);
        let cfg = LimiterConfig::default()
            .with_free_failures(1)
            .with_window(Duration::from_secs(10))
            .with_max_keys(3);
        let l = Limiter::new(cfg, Arc::new(clock.clone()));
        l.record_failure("a");
        clock.advance(Duration::from_secs(11));
        // Old failure forgotten: this is the first again, free.
        assert_eq!(l.record_failure("a"), Duration::ZERO);
        for k in ["b", "c", "d", "e"] {
            l.record_failure(k);
        }
        assert!(l.tracked() <= 3, "{}", l.tracked());
    }

    #[test]
    fn backoff_is_capped_by_the_lock() {
        let clock = ManualClock::new(0);
        let cfg = LimiterConfig::default()
            .with_free_failures(0)
            .with_lock_after(100)
            .with_lock_duration(Duration::from_secs(30));
        let l = Limiter::new(cfg, Arc::new(clock));
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = l.record_failure("k");
        }
        assert_eq!(last, Duration::from_secs(30));
    }
}
