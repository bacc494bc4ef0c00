//! Redis implementations of the shared-state traits: [`RedisTokenStore`] ([`TokenStore`]),
//! [`RedisPolicyVersions`] ([`PolicyVersions`]) and [`RedisRevocations`]
//! ([`RevocationSource`](crate::revocation::RevocationSource)).
//!
//! Both run over a [`redis::aio::ConnectionManager`] (one multiplexed connection that
//! reconnects in the background; cheap to clone, so one connection can serve both). Every
//! Redis call has a timeout (default 1 s, [`RedisTokenStore::with_timeout`]); a failure is a
//! [`StoreError`], never a panic. After a connection error or a timeout, calls fail at once
//! for a second (while the connection is re-made in the background), so a dead Redis costs
//! callers no more than one timeout per second.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, FromRedisValue};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Prk, Salt};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Serialize};

use super::token::fingerprint;
use super::{StoreError, StoredToken, TokenStore};
use crate::error::{BoxError, ConfigError};
use crate::http_client::BoxFuture;
use crate::outbound::AccessToken;
use crate::policy::PolicyVersions;

/// Default timeout of one Redis call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// After Redis was found unreachable (a connection error or a timeout), calls fail at once for
/// this long instead of each waiting for the reconnection (which goes on in the background).
const HOLD_OFF: Duration = Duration::from_secs(1);

/// HKDF salt: fixed, so every replica derives the same keys from the same secret.
const HKDF_SALT: &[u8] = b"tower-bearer redis token store";
/// HKDF info label, followed by the Redis key (fixed length, so the encoding is unambiguous).
const HKDF_LABEL: &[u8] = b"tower-bearer/token-store/aes-256-gcm/v1\0";
/// Version of the encrypted payload.
const PAYLOAD_VERSION: u8 = 1;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// `SET NX PX` for a new owner; the same owner takes its own lock again (and extends it), as
/// [`MemoryTokenStore`](super::MemoryTokenStore) does.
const LOCK_SCRIPT: &str = "if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
     return 1 \
   elseif redis.call('get', KEYS[1]) == ARGV[1] then \
     redis.call('pexpire', KEYS[1], ARGV[2]) return 1 \
   else return 0 end";

/// Owner-checked release.
const UNLOCK_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) \
   else return 0 end";

/// Compare-and-delete on the clear fingerprint in front of the ciphertext.
const DELETE_IF_SCRIPT: &str = "local v = redis.call('get', KEYS[1]) \
   if v and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then \
     return redis.call('del', KEYS[1]) \
   else return 0 end";

/// A [`TokenStore`] in Redis, shared by every replica of a service: the
/// [`TokenManager`](crate::outbound::TokenManager)s of N replicas fetch one token per
/// lifetime between them instead of one each.
///
/// - **Values are encrypted** with AES-256-GCM (random 96-bit nonce) under a key derived by
///   HKDF-SHA256 from `encryption_secret`, with the Redis key as HKDF info and as associated
///   data: a value copied to another key does not decrypt. Every replica sharing the store
///   must be given the same secret; the natural choice is the client secret of the
///   `internal-token` client, which every replica already has (with several clients, pick one,
///   or a dedicated shared secret). A value that does not decrypt or parse (another secret, a
///   moved or corrupted value) is treated as absent and logged, never an error.
/// - **The stored value** is `fingerprint:base64(nonce ‖ ciphertext ‖ tag)`. The
///   [fingerprint](StoredToken::fingerprint) (16 bytes of SHA-256 of the token) is in clear so
///   that compare-and-delete runs inside Redis without the key; it reveals nothing usable.
///   The ciphertext holds the token value, its type, expiry, refresh time and fingerprint.
/// - **TTL** with `SET key value PX ttl`; the **fetch lock** with `SET lock owner NX PX ttl`
///   (a Lua script that also lets the same owner take its own lock again), released by an
///   owner-checked Lua script; [`delete_if`](TokenStore::delete_if) is an atomic Lua
///   compare-and-delete.
/// - **Keys**: every key the store touches is under `{key_prefix}:`. A key the
///   [`TokenManager`](crate::outbound::TokenManager) built with the same prefix
///   ([`store_key_prefix`](crate::outbound::TokenManagerBuilder::store_key_prefix), default
///   `tower-bearer`) is used as it is (`tower-bearer:token:<sha-256>`); any other key gets the
///   prefix in front. The fetch lock of a key is `{key}:lock`.
/// - **Failures**: every call has a timeout; errors become [`StoreError`], and the manager
///   carries on with its local cache (a warning), so a dead Redis never fails a token call.
///   After a connection error or a timeout, calls fail at once for a second while the
///   connection is re-made in the background: a dead Redis costs a fetch at most one
///   timeout per second, not one per call.
///
/// Cheap to clone (clones share the connection).
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use tower_bearer::outbound::{ClientCredentials, TokenClient, TokenManager};
/// use tower_bearer::store::RedisTokenStore;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let secret = std::env::var("INTERNAL_CLIENT_SECRET")?;
/// // The client secret doubles as the encryption secret: every replica has it.
/// let store = RedisTokenStore::connect("redis://127.0.0.1:6379", "tower-bearer", &secret).await?;
/// let source = ClientCredentials::builder("internal-service-client", secret)
///     .token_url("https://auth.eon.internal/oauth2/token")
///     .build()?;
/// let manager = TokenManager::builder()
///     .client(TokenClient::new("orders", source).with_audience("service-system"))
///     .store(Arc::new(store))
///     .store_key_prefix("tower-bearer")
///     .build()?;
/// let header = manager.token("service-system", "").await?;
/// # let _ = header;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisTokenStore {
    inner: Arc<StoreInner>,
    conn: Conn,
}

struct StoreInner {
    prefix: Arc<str>,
    prk: Prk,
}

impl fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTokenStore")
            .field("key_prefix", &self.inner.prefix)
            .field("timeout", &self.conn.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisTokenStore {
    /// Connects to `url` (`redis://[[user]:password@]host[:port][/db]`; `rediss://` is not
    /// supported, the Redis client is built without TLS) and checks the connection.
    ///
    /// The connection reconnects in the background afterwards; a Redis that goes away later
    /// only makes calls fail (and the manager use its local cache).
    ///
    /// # Example
    ///
    /// See [`RedisTokenStore`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `url` is not a Redis URL, `encryption_secret` is empty, or Redis
    /// cannot be reached (or refuses the credentials) within the timeout. To start without
    /// Redis, use [`connect_lazy`](Self::connect_lazy).
    pub async fn connect(
        url: &str,
        key_prefix: &str,
        encryption_secret: impl AsRef<[u8]>,
    ) -> Result<Self, ConfigError> {
        let prk = derive_prk(encryption_secret.as_ref())?;
        let conn = connect(url).await?;
        Ok(Self::with_prk(conn, key_prefix, prk))
    }

    /// Like [`connect`](Self::connect), but connects on first use: a service starts even
    /// while Redis is down (its token calls then use the local cache until Redis is back).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::store::RedisTokenStore;
    ///
    /// # #[tokio::main] async fn main() {
    /// let store = RedisTokenStore::connect_lazy("redis://127.0.0.1:6379", "tower-bearer", "s3cret").unwrap();
    /// # let _ = store;
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `url` is not a Redis URL, `encryption_secret` is empty, or no
    /// Tokio runtime is running (the connection needs one).
    pub fn connect_lazy(
        url: &str,
        key_prefix: &str,
        encryption_secret: impl AsRef<[u8]>,
    ) -> Result<Self, ConfigError> {
        let prk = derive_prk(encryption_secret.as_ref())?;
        let conn = connect_lazy(url)?;
        Ok(Self::with_prk(conn, key_prefix, prk))
    }

    /// A store over a connection you made (your own [`ConnectionManagerConfig`], or one shared
    /// with other code).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_bearer::store::RedisTokenStore;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let conn = redis::aio::ConnectionManager::new(client).await?;
    /// let store = RedisTokenStore::from_manager(conn, "tower-bearer", "s3cret")?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `encryption_secret` is empty.
    pub fn from_manager(
        conn: ConnectionManager,
        key_prefix: &str,
        encryption_secret: impl AsRef<[u8]>,
    ) -> Result<Self, ConfigError> {
        let prk = derive_prk(encryption_secret.as_ref())?;
        Ok(Self::with_prk(conn, key_prefix, prk))
    }

    fn with_prk(conn: ConnectionManager, key_prefix: &str, prk: Prk) -> Self {
        Self {
            inner: Arc::new(StoreInner {
                prefix: key_prefix.into(),
                prk,
            }),
            conn: Conn::new(conn),
        }
    }

    /// The timeout of each Redis call (default 1 s).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::store::RedisTokenStore;
    ///
    /// # #[tokio::main] async fn main() {
    /// let store = RedisTokenStore::connect_lazy("redis://127.0.0.1:6379", "tower-bearer", "s3cret")
    ///     .unwrap()
    ///     .with_timeout(Duration::from_millis(250));
    /// # let _ = store;
    /// # }
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.conn.timeout = timeout;
        self
    }

    /// The key prefix.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::store::RedisTokenStore;
    /// # #[tokio::main] async fn main() {
    /// let store = RedisTokenStore::connect_lazy("redis://127.0.0.1:6379", "orders", "s3cret").unwrap();
    /// assert_eq!(store.key_prefix(), "orders");
    /// # }
    /// ```
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The connection (a clone: it is a handle), e.g. for a [`RedisPolicyVersions`] on the
    /// same connection.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use tower_bearer::store::{RedisPolicyVersions, RedisTokenStore};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisTokenStore::connect("redis://127.0.0.1:6379", "tower-bearer", "s3cret").await?;
    /// let versions = RedisPolicyVersions::from_manager(store.connection(), "tower-bearer");
    /// # let _ = versions;
    /// # Ok(()) }
    /// ```
    pub fn connection(&self) -> ConnectionManager {
        self.conn.manager.clone()
    }

    /// The Redis key of `key`: under `{prefix}:`, unchanged when it already is.
    fn redis_key(&self, key: &str) -> String {
        redis_key(&self.inner.prefix, key)
    }

    fn call<T: FromRedisValue + Send + 'static>(
        &self,
        op: &'static str,
        cmd: Cmd,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        Box::pin(self.conn.clone().run(op, cmd))
    }
}

impl TokenStore for RedisTokenStore {
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<StoredToken>, StoreError>> {
        let rkey = self.redis_key(key);
        let fut = self.call::<Option<Vec<u8>>>("GET", get_cmd(&rkey));
        let this = self.clone();
        Box::pin(async move {
            let Some(raw) = fut.await? else {
                return Ok(None);
            };
            match open(&this.inner.prk, &rkey, &raw) {
                Ok(stored) => Ok(Some(stored)),
                Err(reason) => {
                    tracing::warn!(
                        key = %rkey,
                        reason,
                        "token store value cannot be read (another encryption secret, or moved or corrupted); treated as absent"
                    );
                    Ok(None)
                }
            }
        })
    }

    fn put(
        &self,
        key: &str,
        token: StoredToken,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let rkey = self.redis_key(key);
        let value = match seal(&self.inner.prk, &rkey, &token) {
            Ok(value) => value,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(&rkey).arg(value).arg("PX").arg(millis(ttl));
        self.call::<()>("SET", cmd)
    }

    fn delete_if(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        if fingerprint.is_empty() || fingerprint.contains(':') {
            return Box::pin(async { Ok(false) });
        }
        let rkey = self.redis_key(key);
        let cmd = eval(DELETE_IF_SCRIPT, &rkey, &[fingerprint]);
        let fut = self.call::<i64>("EVAL delete-if", cmd);
        Box::pin(async move { Ok(fut.await? > 0) })
    }

    fn try_lock(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let lock_key = format!("{}:lock", self.redis_key(key));
        let cmd = eval(LOCK_SCRIPT, &lock_key, &[owner, &millis(ttl).to_string()]);
        let fut = self.call::<i64>("EVAL lock", cmd);
        Box::pin(async move { Ok(fut.await? == 1) })
    }

    fn unlock(&self, key: &str, owner: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let lock_key = format!("{}:lock", self.redis_key(key));
        let cmd = eval(UNLOCK_SCRIPT, &lock_key, &[owner]);
        let fut = self.call::<i64>("EVAL unlock", cmd);
        Box::pin(async move { fut.await.map(drop) })
    }
}

/// Current policy versions in Redis, for [`PolicyVersionLayer`](crate::policy::PolicyVersionLayer):
/// one integer per user under `{key_prefix}:pv:{user_id}`.
///
/// An administration tool [`bump`](Self::bump)s a user's version (`INCR`) when their roles
/// change, and puts the new version into the user's next tokens (`pv`); every replica then
/// refuses the older tokens within the layer's staleness bound.
///
/// **Keys cannot be injected**: the user id goes into the key as it is, but Redis keys are
/// binary-safe and every command is sent as an array of bulk strings, so no user id (spaces,
/// newlines, `*`, `:` included) can reach another command or argument. The mapping from user
/// id to key is one-to-one because the prefix and `:pv:` are fixed.
///
/// A value that is not an integer is an error (the layer then fails closed, 503).
///
/// Cheap to clone (clones share the connection).
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use tower_bearer::policy::PolicyVersionLayer;
/// use tower_bearer::store::RedisPolicyVersions;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let versions = RedisPolicyVersions::connect("redis://127.0.0.1:6379", "tower-bearer").await?;
/// versions.set("u-1", 3).await?;
/// assert_eq!(versions.bump("u-1").await?, 4); // tokens with pv < 4 are refused from now on
/// let layer = PolicyVersionLayer::new(Arc::new(versions));
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisPolicyVersions {
    conn: Conn,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisPolicyVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPolicyVersions")
            .field("key_prefix", &self.prefix)
            .field("timeout", &self.conn.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisPolicyVersions {
    /// Connects to `url` and checks the connection.
    ///
    /// # Example
    ///
    /// See [`RedisPolicyVersions`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `url` is not a Redis URL or Redis cannot be reached.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_manager(connect(url).await?, key_prefix))
    }

    /// Versions over a connection you made (or [`RedisTokenStore::connection`]).
    ///
    /// # Example
    ///
    /// See [`RedisTokenStore::connection`].
    pub fn from_manager(conn: ConnectionManager, key_prefix: &str) -> Self {
        Self {
            conn: Conn::new(conn),
            prefix: key_prefix.into(),
        }
    }

    /// The timeout of each Redis call (default 1 s; the layer has its own lookup timeout).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_bearer::store::RedisPolicyVersions;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let versions = RedisPolicyVersions::connect("redis://127.0.0.1:6379", "tower-bearer")
    ///     .await?
    ///     .with_timeout(Duration::from_millis(500));
    /// # let _ = versions;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.conn.timeout = timeout;
        self
    }

    /// The Redis key of `user_id`: `{key_prefix}:pv:{user_id}`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use tower_bearer::store::RedisPolicyVersions;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let versions = RedisPolicyVersions::connect("redis://127.0.0.1:6379", "tower-bearer").await?;
    /// assert_eq!(versions.key("u-1"), "tower-bearer:pv:u-1");
    /// # Ok(()) }
    /// ```
    pub fn key(&self, user_id: &str) -> String {
        format!("{}:pv:{user_id}", self.prefix)
    }

    /// Sets `user_id`'s version (`SET`).
    ///
    /// # Example
    ///
    /// See [`RedisPolicyVersions`].
    ///
    /// # Errors
    ///
    /// [`StoreError`] when Redis fails or does not answer in time.
    pub async fn set(&self, user_id: &str, version: i64) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key(user_id)).arg(version);
        self.conn.clone().run("SET", cmd).await
    }

    /// Increments `user_id`'s version (from 0 when unknown) and returns the new one (`INCR`,
    /// atomic across replicas).
    ///
    /// # Example
    ///
    /// See [`RedisPolicyVersions`].
    ///
    /// # Errors
    ///
    /// [`StoreError`] when Redis fails, does not answer in time, or holds something that is
    /// not an integer.
    pub async fn bump(&self, user_id: &str) -> Result<i64, StoreError> {
        let mut cmd = ::redis::cmd("INCR");
        cmd.arg(self.key(user_id));
        self.conn.clone().run("INCR", cmd).await
    }

    /// Forgets `user_id` (`DEL`): their tokens are no longer checked.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use tower_bearer::store::RedisPolicyVersions;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let versions = RedisPolicyVersions::connect("redis://127.0.0.1:6379", "tower-bearer").await?;
    /// versions.remove("u-1").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError`] when Redis fails or does not answer in time.
    pub async fn remove(&self, user_id: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key(user_id));
        self.conn.clone().run::<i64>("DEL", cmd).await.map(drop)
    }
}

impl PolicyVersions for RedisPolicyVersions {
    fn current(&self, user_id: &str) -> BoxFuture<'static, Result<Option<i64>, BoxError>> {
        let cmd = get_cmd(&self.key(user_id));
        let fut = self.conn.clone().run::<Option<i64>>("GET", cmd);
        Box::pin(async move { fut.await.map_err(BoxError::from) })
    }
}

/// Revocations from the Redis an issuer's `RedisGrantStore` writes, for
/// [`RevocationLayer`](crate::revocation::RevocationLayer) (feature `redis`).
///
/// Reads two keys under the issuer's key prefix `P` (it must be the grant store's prefix):
///
/// | claim | revoked when this key exists | written by the issuer |
/// |-------|------------------------------|-----------------------|
/// | `jti` | `P:jti:{jti}` | `POST /oauth2/revoke` of an access token, until its `exp` |
/// | `sid` | `P:sid-revoked:{sid}` | when the grant family `sid` is revoked (revocation, reuse detection, revoke by user or client), until the family's absolute expiry (at least 1 h) |
///
/// Both are one `EXISTS` each (sent together on the multiplexed connection); the `{…}` are the
/// Redis Cluster hash tags of the grant store. Every call has a timeout (default 1 s); a
/// failure is a [`StoreError`] (the layer then serves its cached answer within the staleness
/// bound, or fails closed with 503).
///
/// Cheap to clone (clones share the connection).
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use tower_bearer::revocation::{RevocationLayer, RevocationSource};
/// use tower_bearer::store::RedisRevocations;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let revocations = RedisRevocations::connect("redis://127.0.0.1:6379", "tower-bearer").await?;
/// assert_eq!(revocations.jti_key("t-1"), "tower-bearer:jti:{t-1}");
/// assert!(!revocations.is_revoked(Some("never-issued"), None).await?);
/// let layer = RevocationLayer::new(Arc::new(revocations));
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRevocations {
    conn: Conn,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisRevocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocations")
            .field("key_prefix", &self.prefix)
            .field("timeout", &self.conn.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisRevocations {
    /// Connects to `url` and checks the connection.
    ///
    /// # Example
    ///
    /// See [`RedisRevocations`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `url` is not a Redis URL or Redis cannot be reached.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_manager(connect(url).await?, key_prefix))
    }

    /// Revocations over a connection you made (or [`RedisTokenStore::connection`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use tower_bearer::store::{RedisRevocations, RedisTokenStore};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisTokenStore::connect("redis://127.0.0.1:6379", "tower-bearer", "s3cret").await?;
    /// let revocations = RedisRevocations::from_manager(store.connection(), "tower-bearer");
    /// assert_eq!(revocations.sid_key("fam-1"), "tower-bearer:sid-revoked:{fam-1}");
    /// # Ok(()) }
    /// ```
    pub fn from_manager(conn: ConnectionManager, key_prefix: &str) -> Self {
        Self {
            conn: Conn::new(conn),
            prefix: key_prefix.into(),
        }
    }

    /// The timeout of each Redis call (default 1 s; the layer has its own lookup timeout).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_bearer::store::RedisRevocations;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let revocations = RedisRevocations::connect("redis://127.0.0.1:6379", "tower-bearer")
    ///     .await?
    ///     .with_timeout(Duration::from_millis(500));
    /// assert!(format!("{revocations:?}").contains("500ms"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.conn.timeout = timeout;
        self
    }

    /// The key that marks `jti` revoked: `{key_prefix}:jti:{<jti>}`.
    ///
    /// # Example
    ///
    /// See [`RedisRevocations`].
    pub fn jti_key(&self, jti: &str) -> String {
        format!("{}:jti:{{{jti}}}", self.prefix)
    }

    /// The key that marks session (grant family) `sid` revoked:
    /// `{key_prefix}:sid-revoked:{<sid>}`.
    ///
    /// # Example
    ///
    /// See [`from_manager`](Self::from_manager).
    pub fn sid_key(&self, sid: &str) -> String {
        format!("{}:sid-revoked:{{{sid}}}", self.prefix)
    }

    fn exists(
        &self,
        key: String,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + use<> {
        let mut cmd = ::redis::cmd("EXISTS");
        cmd.arg(key);
        let fut = self.conn.clone().run::<i64>("EXISTS", cmd);
        async move { fut.await.map(|n| n > 0) }
    }
}

impl crate::revocation::RevocationSource for RedisRevocations {
    fn is_revoked(
        &self,
        jti: Option<&str>,
        sid: Option<&str>,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let by_jti = jti.map(|j| self.exists(self.jti_key(j)));
        let by_sid = sid.map(|s| self.exists(self.sid_key(s)));
        Box::pin(async move {
            match (by_jti, by_sid) {
                (Some(j), Some(s)) => {
                    let (j, s) = tokio::try_join!(j, s)?;
                    Ok(j || s)
                }
                (Some(one), None) | (None, Some(one)) => one.await,
                (None, None) => Ok(false),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Connections and commands.

/// Reconnect quickly and give up quickly: callers have their own fallbacks.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(DEFAULT_TIMEOUT))
        .set_response_timeout(Some(DEFAULT_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1))
}

fn client(url: &str) -> Result<::redis::Client, ConfigError> {
    ::redis::Client::open(url).map_err(|_| ConfigError::InvalidUrl {
        url: redact(url),
        reason: "not a redis:// URL",
    })
}

async fn connect(url: &str) -> Result<ConnectionManager, ConfigError> {
    let client = client(url)?;
    let connecting = ConnectionManager::new_with_config(client, manager_config());
    match tokio::time::timeout(DEFAULT_TIMEOUT * 3, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(ConfigError::Invalid {
            name: "redis.url",
            reason: format!("cannot connect to {}: {e}", redact(url)),
        }),
        Err(_) => Err(ConfigError::Invalid {
            name: "redis.url",
            reason: format!("cannot connect to {}: timed out", redact(url)),
        }),
    }
}

fn connect_lazy(url: &str) -> Result<ConnectionManager, ConfigError> {
    let client = client(url)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConfigError::Invalid {
            name: "redis.url",
            reason: "a Redis connection is made inside a Tokio runtime".to_owned(),
        });
    }
    ConnectionManager::new_lazy_with_config(client, manager_config()).map_err(|e| {
        ConfigError::Invalid {
            name: "redis.url",
            reason: format!("{}: {e}", redact(url)),
        }
    })
}

/// The URL without its user info (a password may be there).
fn redact(url: &str) -> String {
    if url.contains("://") {
        crate::http_client::redact_userinfo(url)
    } else {
        "<not a URL>".to_owned()
    }
}

/// A connection with a timeout per call and a short hold-off after Redis was unreachable.
#[derive(Clone)]
struct Conn {
    manager: ConnectionManager,
    timeout: Duration,
    down_until: Arc<Mutex<Option<Instant>>>,
}

impl Conn {
    fn new(manager: ConnectionManager) -> Self {
        Self {
            manager,
            timeout: DEFAULT_TIMEOUT,
            down_until: Arc::new(Mutex::new(None)),
        }
    }

    /// One command; every failure becomes a [`StoreError`].
    async fn run<T: FromRedisValue>(mut self, op: &'static str, cmd: Cmd) -> Result<T, StoreError> {
        if let Some(until) = *lock(&self.down_until) {
            if Instant::now() < until {
                return Err(StoreError::new(format!(
                    "redis {op}: unavailable (unreachable less than {HOLD_OFF:?} ago)"
                )));
            }
        }
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut self.manager)).await {
            Ok(Ok(v)) => {
                let mut down = lock(&self.down_until);
                if down.is_some() {
                    *down = None;
                    tracing::info!("redis reachable again");
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_unrecoverable_error() {
                    self.hold_off();
                }
                Err(StoreError::new(format!("redis {op}: {e}")))
            }
            Err(_) => {
                self.hold_off();
                Err(StoreError::new(format!(
                    "redis {op}: no answer within {timeout:?}"
                )))
            }
        }
    }

    fn hold_off(&self) {
        *lock(&self.down_until) = Some(Instant::now() + HOLD_OFF);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn get_cmd(key: &str) -> Cmd {
    let mut cmd = ::redis::cmd("GET");
    cmd.arg(key);
    cmd
}

fn eval(script: &str, key: &str, args: &[&str]) -> Cmd {
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(script).arg(1).arg(key);
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn redis_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty()
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(':'))
    {
        key.to_owned()
    } else {
        format!("{prefix}:{key}")
    }
}

// ---------------------------------------------------------------------------------------------
// Encryption.

/// What is encrypted.
#[derive(Serialize, Deserialize)]
struct Payload {
    v: u8,
    token: String,
    token_type: String,
    expires_at: u64,
    refresh_at: u64,
    fingerprint: String,
}

fn derive_prk(secret: &[u8]) -> Result<Prk, ConfigError> {
    if secret.is_empty() {
        return Err(ConfigError::Missing("redis token store encryption secret"));
    }
    Ok(Salt::new(HKDF_SHA256, HKDF_SALT).extract(secret))
}

/// The AES-256-GCM key of one Redis key.
fn key_for(prk: &Prk, rkey: &str) -> Result<LessSafeKey, &'static str> {
    let info = [HKDF_LABEL, rkey.as_bytes()];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| "key derivation failed")?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// `fingerprint:base64(nonce ‖ ciphertext ‖ tag)`.
fn seal(prk: &Prk, rkey: &str, token: &StoredToken) -> Result<String, StoreError> {
    let failed = |what: &str| StoreError::new(format!("cannot encrypt the token: {what}"));
    let payload = Payload {
        v: PAYLOAD_VERSION,
        token: token.token().value().to_owned(),
        token_type: token.token().token_type().to_owned(),
        expires_at: token.token().expires_at_unix(),
        refresh_at: token.refresh_at_unix(),
        fingerprint: token.fingerprint().to_owned(),
    };
    let mut buf = serde_json::to_vec(&payload).map_err(|_| failed("serialization"))?;
    let key = key_for(prk, rkey).map_err(failed)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| failed("no randomness"))?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(rkey.as_bytes()),
        &mut buf,
    )
    .map_err(|_| failed("sealing"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(format!(
        "{}:{}",
        token.fingerprint(),
        STANDARD_NO_PAD.encode(&out)
    ))
}

/// The token in a stored value, or why it cannot be read.
fn open(prk: &Prk, rkey: &str, raw: &[u8]) -> Result<StoredToken, &'static str> {
    let raw = std::str::from_utf8(raw).map_err(|_| "not text")?;
    let (clear_fp, sealed) = raw.split_once(':').ok_or("no fingerprint")?;
    let sealed = STANDARD_NO_PAD.decode(sealed).map_err(|_| "not base64")?;
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err("too short");
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| "bad nonce")?;
    let mut buf = ciphertext.to_vec();
    let key = key_for(prk, rkey)?;
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(rkey.as_bytes()),
            &mut buf,
        )
        .map_err(|_| "does not decrypt")?;
    let payload: Payload = serde_json::from_slice(plain).map_err(|_| "does not parse")?;
    if payload.v != PAYLOAD_VERSION {
        return Err("unknown payload version");
    }
    if payload.fingerprint != clear_fp || fingerprint(&payload.token) != payload.fingerprint {
        return Err("fingerprint mismatch");
    }
    let token = AccessToken::with_type(payload.token, payload.token_type, payload.expires_at);
    Ok(StoredToken::new(token, payload.refresh_at))
}

// ---------------------------------------------------------------------------------------------
// For `crate::__fuzz` (the `fuzz/` targets) only.

/// Decodes a stored value exactly as [`RedisTokenStore`]'s `get` does.
pub(crate) fn fuzz_open(
    secret: &[u8],
    rkey: &str,
    raw: &[u8],
) -> Result<StoredToken, &'static str> {
    let prk = derive_prk(secret).map_err(|_| "empty secret")?;
    open(&prk, rkey, raw)
}

/// `clear_fp:base64(nonce ‖ AES-GCM(plain) ‖ tag)` under the key `get` uses: a value only a
/// holder of the secret can write, with an arbitrary plaintext.
pub(crate) fn fuzz_seal_plain(
    secret: &[u8],
    rkey: &str,
    clear_fp: &str,
    plain: &[u8],
) -> Result<Vec<u8>, &'static str> {
    let prk = derive_prk(secret).map_err(|_| "empty secret")?;
    let key = key_for(&prk, rkey)?;
    let mut buf = plain.to_vec();
    let nonce = [7u8; NONCE_LEN];
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(rkey.as_bytes()),
        &mut buf,
    )
    .map_err(|_| "sealing")?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(format!("{clear_fp}:{}", STANDARD_NO_PAD.encode(&out)).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredToken {
        StoredToken::new(AccessToken::bearer("tok-secret-value", 2000), 1940)
    }

    #[test]
    fn sealed_values_open_under_their_key_only() {
        let prk = derive_prk(b"client-secret").unwrap();
        let value = seal(&prk, "p:token:a", &stored()).unwrap();
        assert!(!value.contains("tok-secret-value"));
        let (fp, _) = value.split_once(':').unwrap();
        assert_eq!(fp, stored().fingerprint());

        let back = open(&prk, "p:token:a", value.as_bytes()).unwrap();
        assert_eq!(back.token().value(), "tok-secret-value");
        assert_eq!(back.token().token_type(), "Bearer");
        assert_eq!(back.token().expires_at_unix(), 2000);
        assert_eq!(back.refresh_at_unix(), 1940);
        assert_eq!(back.fingerprint(), stored().fingerprint());

        // Another key, another secret, a tampered value: unreadable.
        assert_eq!(
            open(&prk, "p:token:b", value.as_bytes()).unwrap_err(),
            "does not decrypt"
        );
        let other = derive_prk(b"another-secret").unwrap();
        assert!(open(&other, "p:token:a", value.as_bytes()).is_err());
        let mut tampered = value.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(open(&prk, "p:token:a", &tampered).is_err());
        // The clear fingerprint is checked against the sealed one.
        let swapped = format!("{}{}", "0".repeat(32), &value[32..]);
        assert_eq!(
            open(&prk, "p:token:a", swapped.as_bytes()).unwrap_err(),
            "fingerprint mismatch"
        );
        assert!(open(&prk, "p:token:a", b"garbage").is_err());
        assert!(open(&prk, "p:token:a", b"ab:!!").is_err());

        // A fresh nonce each time.
        assert_ne!(seal(&prk, "p:token:a", &stored()).unwrap(), value);
    }

    #[test]
    fn empty_secret_is_refused() {
        assert!(derive_prk(b"").is_err());
    }

    #[test]
    fn keys_stay_under_the_prefix() {
        assert_eq!(redis_key("tb", "tb:token:x"), "tb:token:x");
        assert_eq!(redis_key("tb", "token:x"), "tb:token:x");
        assert_eq!(redis_key("tb", "tbx:token"), "tb:tbx:token");
        assert_eq!(redis_key("", "k"), "k");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
        assert_eq!(redact("nope"), "<not a URL>");
        assert!(client("http://x").is_err());
        assert!(
            !client("redis://u:pw@h:1/0%")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("pw")
        );
    }

    #[test]
    fn millis_are_at_least_one() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }
}
