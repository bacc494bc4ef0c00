//! The outbound token cache: [`TokenStore`] and its in-memory default.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock::{SharedClock, SystemClock};
use crate::http_client::BoxFuture;
use crate::outbound::AccessToken;

/// A failure of a [`TokenStore`] (for instance, the network store is unreachable).
///
/// The [`TokenManager`](crate::outbound::TokenManager) never fails a call because of it: it
/// logs a warning and carries on with its local cache.
///
/// # Example
///
/// ```
/// use tower_bearer::store::StoreError;
///
/// let err = StoreError::new("connection refused");
/// assert_eq!(err.to_string(), "token store: connection refused");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("token store: {reason}")]
pub struct StoreError {
    reason: String,
}

impl StoreError {
    /// An error with a human-readable reason (never put a token or secret in it).
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// A token as kept in a [`TokenStore`]: the token, when it should be refreshed, and a
/// fingerprint that identifies it without revealing it.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::AccessToken;
/// use tower_bearer::store::StoredToken;
///
/// let stored = StoredToken::new(AccessToken::bearer("abc", 1_900_000_000), 1_899_999_940);
/// assert_eq!(stored.refresh_at_unix(), 1_899_999_940);
/// assert_eq!(stored.fingerprint().len(), 32);
/// assert!(!format!("{stored:?}").contains("abc"));
/// ```
#[derive(Clone)]
pub struct StoredToken {
    token: AccessToken,
    refresh_at_unix: u64,
    fingerprint: Arc<str>,
}

impl StoredToken {
    /// Wraps `token`, due for refresh at `refresh_at_unix` (seconds since the epoch).
    pub fn new(token: AccessToken, refresh_at_unix: u64) -> Self {
        let fingerprint = fingerprint(token.value()).into();
        Self {
            token,
            refresh_at_unix,
            fingerprint,
        }
    }

    /// The token.
    pub fn token(&self) -> &AccessToken {
        &self.token
    }

    /// When the token should be refreshed (seconds since the epoch); before its expiry.
    pub fn refresh_at_unix(&self) -> u64 {
        self.refresh_at_unix
    }

    /// Hex of the first 16 bytes of SHA-256 of the token value: what compare-and-delete
    /// compares, so a store never needs the token itself to decide.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("token", &self.token)
            .field("refresh_at_unix", &self.refresh_at_unix)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Hex of the first 16 bytes of SHA-256 of `value`.
pub(crate) fn fingerprint(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    hex(&digest.as_ref()[..16])
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// A token cache shared by the replicas of a service, so that they fetch a token once per
/// lifetime instead of once each.
///
/// Object-safe and asynchronous: every method returns a [`BoxFuture`] that owns what it needs
/// (`Send + 'static`), so the manager can call a networked store from a spawned task.
///
/// The [`TokenManager`](crate::outbound::TokenManager) uses it on its refresh path only, never
/// on the hit path:
/// 1. [`get`](Self::get): another replica may already have a fresh token;
/// 2. otherwise [`try_lock`](Self::try_lock): the owner fetches, [`put`](Self::put)s the token
///    with a TTL ending at its refresh time, then [`unlock`](Self::unlock)s; the others poll
///    [`get`](Self::get) for a bounded time, then fetch themselves;
/// 3. invalidation is [`delete_if`](Self::delete_if), compare-and-delete on the fingerprint.
///
/// Errors never fail a token call: the manager degrades to its local cache.
///
/// # Example
///
/// See the [module docs](crate::store).
pub trait TokenStore: Send + Sync + fmt::Debug + 'static {
    /// The token under `key`, if one is stored and its TTL has not run out.
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<StoredToken>, StoreError>>;

    /// Stores `token` under `key` for `ttl`.
    fn put(
        &self,
        key: &str,
        token: StoredToken,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Deletes the token under `key` only if its [fingerprint](StoredToken::fingerprint) is
    /// `fingerprint`; `true` when something was deleted.
    fn delete_if(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// Takes the fetch lock of `key` for `owner`, held at most `ttl`; `true` when taken.
    fn try_lock(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// Releases the fetch lock of `key` if `owner` still holds it.
    fn unlock(&self, key: &str, owner: &str) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// The in-memory [`TokenStore`]: one process. Cheap to clone (clones share the entries).
///
/// TTLs run on the injected [`Clock`](crate::clock::Clock) (seconds); locks on the monotonic
/// clock.
///
/// # Example
///
/// See the [module docs](crate::store).
#[derive(Clone)]
pub struct MemoryTokenStore {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    clock: SharedClock,
    entries: Mutex<HashMap<String, (StoredToken, u64)>>,
    locks: Mutex<HashMap<String, (String, Instant)>>,
}

impl fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTokenStore")
            .field("entries", &lock(&self.inner.entries).len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryTokenStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTokenStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store whose TTLs run on `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                clock,
                entries: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn get_now(&self, key: &str) -> Option<StoredToken> {
        let now = self.inner.clock.now_unix();
        let mut entries = lock(&self.inner.entries);
        match entries.get(key) {
            Some((token, until)) if now < *until => Some(token.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put_now(&self, key: &str, token: StoredToken, ttl: Duration) {
        let now = self.inner.clock.now_unix();
        let until = now.saturating_add(ttl.as_secs().max(1));
        let mut entries = lock(&self.inner.entries);
        if entries.len() >= 1024 {
            entries.retain(|_, (_, until)| now < *until);
        }
        entries.insert(key.to_owned(), (token, until));
    }

    fn delete_if_now(&self, key: &str, fingerprint: &str) -> bool {
        let mut entries = lock(&self.inner.entries);
        if entries
            .get(key)
            .is_some_and(|(t, _)| t.fingerprint() == fingerprint)
        {
            entries.remove(key);
            true
        } else {
            false
        }
    }

    fn try_lock_now(&self, key: &str, owner: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut locks = lock(&self.inner.locks);
        match locks.get(key) {
            Some((held_by, until)) if *until > now && held_by != owner => false,
            _ => {
                locks.insert(key.to_owned(), (owner.to_owned(), now + ttl));
                true
            }
        }
    }

    fn unlock_now(&self, key: &str, owner: &str) {
        let mut locks = lock(&self.inner.locks);
        if locks.get(key).is_some_and(|(held_by, _)| held_by == owner) {
            locks.remove(key);
        }
    }
}

impl TokenStore for MemoryTokenStore {
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<StoredToken>, StoreError>> {
        let found = self.get_now(key);
        Box::pin(async move { Ok(found) })
    }

    fn put(
        &self,
        key: &str,
        token: StoredToken,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.put_now(key, token, ttl);
        Box::pin(async { Ok(()) })
    }

    fn delete_if(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let deleted = self.delete_if_now(key, fingerprint);
        Box::pin(async move { Ok(deleted) })
    }

    fn try_lock(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let taken = self.try_lock_now(key, owner, ttl);
        Box::pin(async move { Ok(taken) })
    }

    fn unlock(&self, key: &str, owner: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        self.unlock_now(key, owner);
        Box::pin(async { Ok(()) })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn ttl_runs_on_the_clock() {
        let clock = ManualClock::new(1000);
        let store = MemoryTokenStore::with_clock(Arc::new(clock.clone()));
        let t = StoredToken::new(AccessToken::bearer("v", 2000), 1500);
        store.put_now("k", t, Duration::from_secs(10));
        assert!(store.get_now("k").is_some());
        clock.advance(Duration::from_secs(10));
        assert!(store.get_now("k").is_none());
    }

    #[test]
    fn locks_have_owners() {
        let store = MemoryTokenStore::new();
        assert!(store.try_lock_now("k", "a", Duration::from_secs(5)));
        assert!(!store.try_lock_now("k", "b", Duration::from_secs(5)));
        store.unlock_now("k", "b");
        assert!(!store.try_lock_now("k", "b", Duration::from_secs(5)));
        store.unlock_now("k", "a");
        assert!(store.try_lock_now("k", "b", Duration::from_secs(5)));
        // An expired lock is free.
        assert!(store.try_lock_now("x", "a", Duration::ZERO));
        assert!(store.try_lock_now("x", "b", Duration::from_secs(5)));
    }

    #[test]
    fn fingerprints() {
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea414140de5dae2223");
        assert_eq!(hex(&[0, 0xff]), "00ff");
    }
}
