//! An injectable clock, so expiry, staleness and refresh timing are testable without sleeping.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(1_700_000_000);
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now_unix(), 1_700_000_090);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, in seconds since the Unix epoch.
///
/// # Example
///
/// ```
/// use tower_bearer::clock::{Clock, ManualClock, SystemClock};
///
/// fn expired(clock: &dyn Clock, exp: u64) -> bool {
///     clock.now_unix() >= exp
/// }
/// assert!(expired(&ManualClock::new(200), 100));
/// assert!(!expired(&SystemClock, u64::MAX));
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new(1_700_000_000);
    /// assert_eq!(clock.now_unix(), 1_700_000_000);
    /// ```
    fn now_unix(&self) -> u64;
}

/// The system clock.
///
/// # Example
///
/// ```
/// use tower_bearer::clock::{Clock, SystemClock};
///
/// // Some time after 2023-11-14.
/// assert!(SystemClock.now_unix() > 1_700_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that only moves when told to; cheap to clone (clones share the time).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.now_unix(), 1_005);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `unix` seconds.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::clock::{Clock, ManualClock};
    ///
    /// assert_eq!(ManualClock::new(42).now_unix(), 42);
    /// ```
    pub fn new(unix: u64) -> Self {
        Self(Arc::new(AtomicU64::new(unix)))
    }
    /// Moves the clock forward.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new(100);
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(clock.now_unix(), 160);
    /// ```
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
    /// Sets the clock.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new(100);
    /// clock.set(50);
    /// assert_eq!(clock.now_unix(), 50);
    /// ```
    pub fn set(&self, unix: u64) {
        self.0.store(unix, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock")
            .field(&self.now_unix())
            .finish()
    }
}

/// A shared clock handle.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::clock::{ManualClock, SharedClock};
///
/// let clock: SharedClock = Arc::new(ManualClock::new(7));
/// assert_eq!(clock.now_unix(), 7);
/// ```
pub type SharedClock = Arc<dyn Clock>;

/// The verifier's clock: the system clock read directly (no virtual call) unless a custom
/// one was configured.
#[derive(Clone, Default)]
pub(crate) enum ClockSource {
    /// [`SystemClock`], inlined.
    #[default]
    System,
    /// A configured clock (tests, simulations).
    Custom(SharedClock),
}

impl ClockSource {
    /// Seconds since the Unix epoch.
    #[inline]
    pub(crate) fn now_unix(&self) -> u64 {
        match self {
            Self::System => SystemClock.now_unix(),
            Self::Custom(clock) => clock.now_unix(),
        }
    }
}

impl fmt::Debug for ClockSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("System"),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}
