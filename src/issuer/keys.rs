//! Signing keys of the authorization server: generation, loading, encrypted persistence, rotation
//! states and the published JWK set.
//!
//! A [`KeyManager`] holds a small set of keys, each in one of three [`KeyState`]s:
//!
//! - **published**: in the JWKS, not signing yet. A new key stays here for
//!   [`KeyOptions::publish_lead`], long enough for every verifier to have refreshed its cached
//!   JWKS (at least the JWKS `max-age` plus the verifiers' refresh margin), so the first token it
//!   signs never meets a verifier that does not know its `kid`;
//! - **active**: the one key that signs ([`KeyManager::signing_key`]);
//! - **retired**: replaced by a newer active key, still published for
//!   [`KeyOptions::retire_grace`] (the longest token lifetime plus leeway) so the tokens it signed
//!   keep verifying; after that it is removed.
//!
//! [`KeyOptions::rotate_after`] drives the cycle through [`KeyManager::tick`] (call it
//! periodically, or let [`KeyManager::spawn_rotation`] do it); [`KeyManager::rotate`] starts a
//! rotation now. For a compromised key, [`KeyManager::rotate_now`] and [`KeyManager::remove`]
//! skip the grace periods (which breaks verifiers that have not refreshed yet: that is the point).
//!
//! With [`KeyOptions::key_dir`] every key is one file `key-<thumbprint>.json` in that directory,
//! mode 0600, its PKCS#8 encrypted with AES-256-GCM under a key derived by HKDF-SHA256 from
//! [`KeyOptions::secret`] (`${ISSUER_KEY_SECRET}`) with a random per-file salt; the associated data
//! binds the `kid`, the algorithm and the key's schedule, so no field can be swapped or edited
//! unnoticed. Files are written once (temporary file + rename) and never modified; the states
//! follow from the schedule in the files and the clock alone, so every instance reading the same
//! directory (after a restart, or a second replica) signs with the same key and publishes the
//! same `kid`s. Changes (a new key, a removal) are made under a lock file `.lock` in the
//! directory; other instances see them at their next [`KeyManager::tick`], which is why a new
//! key's publish lead and a retired key's grace both exceed [`KeyOptions::tick_interval`]. With
//! `KeyOptions::with_redis` (feature `redis`) the same records live in a Redis hash instead.
//! A wrong secret or a modified file is a [`ConfigError`] naming the file, never a
//! silently new key. Without a directory keys live in memory and die with the process (a warning
//! says so).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower_bearer::clock::ManualClock;
//! use tower_bearer::issuer::keys::{KeyManager, KeyOptions, KeyState};
//! use tower_bearer::jwks::Algorithm;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let clock = ManualClock::new(1_700_000_000);
//! let keys = KeyManager::open(
//!     KeyOptions::default()
//!         .with_algorithm(Algorithm::EdDSA)
//!         .with_rotate_after(Duration::from_secs(86_400))
//!         .with_clock(Arc::new(clock.clone())),
//! )
//! .await
//! .unwrap();
//! let first = keys.signing_key().kid().to_owned();
//!
//! // A day later minus the publish lead, the next key is published but does not sign yet.
//! clock.advance(Duration::from_secs(86_400) - KeyOptions::default().publish_lead);
//! keys.tick().await.unwrap();
//! assert_eq!(keys.signing_key().kid(), first);
//! assert_eq!(keys.states()[1].state, KeyState::Published);
//!
//! // After the lead it signs; the first key stays published (retired) for the grace period.
//! clock.advance(KeyOptions::default().publish_lead);
//! keys.tick().await.unwrap();
//! assert_ne!(keys.signing_key().kid(), first);
//! assert!(keys.jwks_json().contains(&first));
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Secret;
use crate::error::ConfigError;
use crate::jwks::Algorithm;
use crate::signing::SigningKey;

/// HKDF `info` label of the key-file encryption key (a new format gets a new label).
const HKDF_INFO: &[u8] = b"tower-bearer/issuer/key-file/v1";
/// The `format` member of every key file.
const FILE_FORMAT: &str = "tower-bearer-issuer-key";
/// Shortest accepted `ISSUER_KEY_SECRET`, in bytes.
///
/// # Example
///
/// ```
/// use tower_bearer::config::Secret;
/// use tower_bearer::issuer::keys::{KeyManager, KeyOptions, MIN_SECRET_LEN};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let short = Secret::new("x".repeat(MIN_SECRET_LEN - 1));
/// let opts = KeyOptions::default().with_key_dir("/nonexistent", short);
/// assert!(KeyManager::open(opts).await.is_err());
/// # });
/// ```
pub const MIN_SECRET_LEN: usize = 16;
/// How long a `.lock` file may be held before another instance considers it stale.
const LOCK_STALE: Duration = Duration::from_secs(30);
/// How long to wait for the lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Options of a [`KeyManager`]: algorithm, persistence and rotation timing.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::issuer::keys::KeyOptions;
/// use tower_bearer::jwks::Algorithm;
///
/// let opts = KeyOptions::default()
///     .with_algorithm(Algorithm::ES256)
///     .with_rotate_after(Duration::from_secs(30 * 86_400));
/// assert_eq!(opts.algorithm, Algorithm::ES256);
/// assert!(opts.publish_lead >= opts.jwks_max_age + opts.tick_interval);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct KeyOptions {
    /// Algorithm of generated keys: RS256 (default), PS256, ES256 or EdDSA. Changing it makes the
    /// next [`KeyManager::tick`] start a rotation to a key of the new algorithm.
    pub algorithm: Algorithm,
    /// Directory where keys are persisted, encrypted under [`KeyOptions::secret`]; `None` keeps
    /// them in memory.
    pub key_dir: Option<PathBuf>,
    /// `${ISSUER_KEY_SECRET}`: required with `key_dir`, at least [`MIN_SECRET_LEN`] bytes.
    pub secret: Option<Secret>,
    /// Age of the active key after which a new one takes over (`rotate-after-days`); `None`:
    /// no automatic rotation.
    pub rotate_after: Option<Duration>,
    /// How long a new key is published before it signs: at least `jwks_max_age` plus
    /// `tick_interval` (checked), plus the verifiers' refresh margin. Default 15 minutes.
    pub publish_lead: Duration,
    /// How long a retired key stays published after it stopped signing: the longest token
    /// lifetime plus leeway. Default 1 hour.
    pub retire_grace: Duration,
    /// `Cache-Control: max-age` of the JWKS. Default 5 minutes.
    pub jwks_max_age: Duration,
    /// Period of [`KeyManager::spawn_rotation`]; a retired key is kept this much longer than
    /// `retire_grace`, since the switch to a new key can be this late. Default 30 seconds.
    pub tick_interval: Duration,
    clock: SharedClock,
    #[cfg(feature = "redis")]
    redis: Option<(::redis::aio::ConnectionManager, String)>,
}

impl Default for KeyOptions {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::RS256,
            key_dir: None,
            secret: None,
            rotate_after: None,
            publish_lead: Duration::from_secs(15 * 60),
            retire_grace: Duration::from_secs(3600),
            jwks_max_age: Duration::from_secs(300),
            tick_interval: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl fmt::Debug for KeyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyOptions")
            .field("algorithm", &self.algorithm)
            .field("key_dir", &self.key_dir)
            .field("secret", &self.secret)
            .field("rotate_after", &self.rotate_after)
            .field("publish_lead", &self.publish_lead)
            .field("retire_grace", &self.retire_grace)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("tick_interval", &self.tick_interval)
            .field("redis", &self.uses_redis())
            .finish_non_exhaustive()
    }
}

impl KeyOptions {
    /// Sets [`KeyOptions::algorithm`].
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::KeyOptions;
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// assert_eq!(KeyOptions::default().algorithm, Algorithm::RS256);
    /// assert_eq!(KeyOptions::default().with_algorithm(Algorithm::PS256).algorithm, Algorithm::PS256);
    /// ```
    #[must_use]
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Persists keys in `dir`, encrypted under `secret`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::Secret;
    /// use tower_bearer::issuer::keys::KeyOptions;
    ///
    /// let opts = KeyOptions::default().with_key_dir("/var/lib/auth/keys", Secret::new("0123456789abcdef"));
    /// assert!(opts.key_dir.is_some() && opts.secret.is_some());
    /// ```
    #[must_use]
    pub fn with_key_dir(mut self, dir: impl Into<PathBuf>, secret: Secret) -> Self {
        self.key_dir = Some(dir.into());
        self.secret = Some(secret);
        self
    }

    /// Sets [`KeyOptions::rotate_after`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::keys::KeyOptions;
    ///
    /// let opts = KeyOptions::default().with_rotate_after(Duration::from_secs(86_400));
    /// assert_eq!(opts.rotate_after, Some(Duration::from_secs(86_400)));
    /// ```
    #[must_use]
    pub fn with_rotate_after(mut self, after: Duration) -> Self {
        self.rotate_after = Some(after);
        self
    }

    /// Sets [`KeyOptions::publish_lead`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::keys::KeyOptions;
    ///
    /// let opts = KeyOptions::default().with_publish_lead(Duration::from_secs(600));
    /// assert_eq!(opts.publish_lead, Duration::from_secs(600));
    /// ```
    #[must_use]
    pub fn with_publish_lead(mut self, lead: Duration) -> Self {
        self.publish_lead = lead;
        self
    }

    /// Sets [`KeyOptions::retire_grace`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::keys::KeyOptions;
    ///
    /// let opts = KeyOptions::default().with_retire_grace(Duration::from_secs(360));
    /// assert_eq!(opts.retire_grace, Duration::from_secs(360));
    /// ```
    #[must_use]
    pub fn with_retire_grace(mut self, grace: Duration) -> Self {
        self.retire_grace = grace;
        self
    }

    /// Sets [`KeyOptions::jwks_max_age`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::keys::KeyOptions;
    ///
    /// let opts = KeyOptions::default().with_jwks_max_age(Duration::from_secs(60));
    /// assert_eq!(opts.jwks_max_age, Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn with_jwks_max_age(mut self, max_age: Duration) -> Self {
        self.jwks_max_age = max_age;
        self
    }

    /// Sets [`KeyOptions::tick_interval`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::keys::KeyOptions;
    ///
    /// let opts = KeyOptions::default().with_tick_interval(Duration::from_secs(5));
    /// assert_eq!(opts.tick_interval, Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn with_tick_interval(mut self, interval: Duration) -> Self {
        self.tick_interval = interval;
        self
    }

    /// The clock rotation follows (tests use a [`ManualClock`](crate::clock::ManualClock)).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::clock::ManualClock;
    /// use tower_bearer::issuer::keys::KeyOptions;
    ///
    /// let opts = KeyOptions::default().with_clock(Arc::new(ManualClock::new(1_000)));
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Persists keys in Redis (for `store: redis`), encrypted exactly as in a key directory, in
    /// the hash `{key_prefix}:issuer:signing-keys` (no TTL: keys leave it when removed), with
    /// changes made under the lock `{key_prefix}:issuer:signing-keys:lock`. Every instance on the
    /// same Redis and prefix signs with the same keys. Exclusive with [`KeyOptions::key_dir`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_bearer::config::Secret;
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let conn = redis::aio::ConnectionManager::new(client).await?;
    /// let opts = KeyOptions::default().with_redis(conn, "auth", Secret::new("0123456789abcdef"));
    /// let keys = KeyManager::open(opts).await?;
    /// assert!(!keys.signing_key().kid().is_empty());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[must_use]
    pub fn with_redis(
        mut self,
        conn: ::redis::aio::ConnectionManager,
        key_prefix: &str,
        secret: Secret,
    ) -> Self {
        self.redis = Some((conn, key_prefix.to_owned()));
        self.secret = Some(secret);
        self
    }

    #[cfg_attr(not(feature = "redis"), allow(clippy::unused_self))]
    fn uses_redis(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.redis.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(
            self.algorithm,
            Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(ConfigError::Invalid {
                name: "signing.algorithm",
                reason: format!(
                    "{} is not one of RS256, PS256, ES256, EdDSA",
                    self.algorithm
                ),
            });
        }
        // Another instance publishes a new key at its next tick; verifiers cache its JWKS for
        // max-age: only then may the key sign.
        if self.publish_lead < self.jwks_max_age + self.tick_interval {
            return Err(ConfigError::Invalid {
                name: "publish_lead",
                reason: format!(
                    "{:?} is shorter than the JWKS max-age {:?} plus the tick interval {:?}: verifiers would meet tokens of a key they cannot know yet",
                    self.publish_lead, self.jwks_max_age, self.tick_interval
                ),
            });
        }
        if self.tick_interval.is_zero() {
            return Err(ConfigError::Invalid {
                name: "tick_interval",
                reason: "must be positive".into(),
            });
        }
        if let Some(after) = self.rotate_after {
            if after <= self.publish_lead {
                return Err(ConfigError::Invalid {
                    name: "signing.rotate-after-days",
                    reason: format!(
                        "{after:?} is not longer than the publish lead {:?}",
                        self.publish_lead
                    ),
                });
            }
        }
        if self.key_dir.is_some() && self.uses_redis() {
            return Err(ConfigError::Invalid {
                name: "signing.key-dir",
                reason: "keys are kept in Redis (store: redis) or in a key directory, not both"
                    .into(),
            });
        }
        if self.key_dir.is_some() || self.uses_redis() {
            match &self.secret {
                None => {
                    return Err(ConfigError::Missing(
                        "ISSUER_KEY_SECRET (required with signing.key-dir)",
                    ));
                }
                Some(s) if s.expose().len() < MIN_SECRET_LEN => {
                    return Err(ConfigError::Invalid {
                        name: "ISSUER_KEY_SECRET",
                        reason: format!("shorter than {MIN_SECRET_LEN} bytes"),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// The state of a key (see the [module docs](self)).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::keys::KeyState;
///
/// assert_eq!(KeyState::Active.as_str(), "active");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyState {
    /// In the JWKS, not signing yet.
    Published,
    /// Signing.
    Active,
    /// No longer signing, still in the JWKS until its tokens have expired.
    Retired,
}

impl KeyState {
    /// The lowercase name.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::KeyState;
    ///
    /// assert_eq!(KeyState::Retired.as_str(), "retired");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Published => "published",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// One key's state and schedule (no key material), from [`KeyManager::states`]. Times are Unix
/// seconds.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::keys::{KeyManager, KeyOptions, KeyState};
/// use tower_bearer::jwks::Algorithm;
/// use tower_bearer::signing::SigningKey;
///
/// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// let kid = key.kid().to_owned();
/// let keys = KeyManager::from_keys(key, KeyOptions::default());
/// let info = &keys.states()[0];
/// assert_eq!((info.kid.as_str(), info.state), (kid.as_str(), KeyState::Active));
/// assert_eq!(info.retired_at, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The `kid`.
    pub kid: String,
    /// The algorithm.
    pub alg: Algorithm,
    /// The state now.
    pub state: KeyState,
    /// When it entered the JWKS.
    pub published_at: u64,
    /// When it starts (started) signing.
    pub active_at: u64,
    /// When it stopped signing (a successor is active), if scheduled.
    pub retired_at: Option<u64>,
    /// When it leaves the JWKS, if scheduled.
    pub remove_at: Option<u64>,
}

#[derive(Clone)]
struct Entry {
    key: Arc<SigningKey>,
    /// Creation order (breaks ties of `active_at`: the newer key wins).
    seq: u64,
    published_at: u64,
    active_at: u64,
}

impl Entry {
    fn order(&self) -> (u64, u64, &str) {
        (self.active_at, self.seq, self.key.kid())
    }
}

struct Snapshot {
    active: Arc<SigningKey>,
    jwks: Arc<str>,
    infos: Vec<KeyInfo>,
    by_kid: HashMap<String, Arc<SigningKey>>,
}

enum Backend {
    Memory,
    Dir {
        path: PathBuf,
        secret: Secret,
    },
    #[cfg(feature = "redis")]
    Redis(redis_keys::RedisKeys),
}

struct Inner {
    opts: KeyOptions,
    backend: Backend,
    /// The keys, sorted by [`Entry::order`]; the mutex serializes changes within the process
    /// (the backend lock across processes).
    entries: tokio::sync::Mutex<Vec<Entry>>,
    snapshot: ArcSwap<Snapshot>,
}

/// The authorization server's signing keys: the active key, the published JWKS and rotation.
/// Cheap to clone (an `Arc` inside); reading the active key or the JWKS is one atomic load.
///
/// See the [module docs](self) for states, persistence and an example.
#[derive(Clone)]
pub struct KeyManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.inner.snapshot.load();
        f.debug_struct("KeyManager")
            .field("active", &snap.active.kid())
            .field("keys", &snap.infos.len())
            .field("key_dir", &self.inner.opts.key_dir)
            .finish_non_exhaustive()
    }
}

enum Action {
    Tick,
    Rotate,
    RotateNow,
    Import(Box<SigningKey>),
    Remove(String),
}

impl KeyManager {
    /// Loads the keys from [`KeyOptions::key_dir`] (creating the directory and a first key when
    /// empty), or generates a key in memory (with a warning: tokens die with the process), then
    /// runs one [`KeyManager::tick`].
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let keys = KeyManager::open(KeyOptions::default().with_algorithm(Algorithm::ES256)).await.unwrap();
    /// assert_eq!(keys.signing_key().algorithm(), Algorithm::ES256);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for invalid options (`key_dir` without a secret, a publish lead shorter
    /// than the JWKS max-age, ...), an unreadable directory, or a key file that does not decrypt
    /// (wrong `ISSUER_KEY_SECRET` or a modified file; the error names the file).
    pub async fn open(opts: KeyOptions) -> Result<Self, ConfigError> {
        opts.validate()?;
        let backend = match (&opts.key_dir, &opts.secret) {
            #[cfg(feature = "redis")]
            (None, Some(secret)) if opts.redis.is_some() => {
                let (conn, prefix) = opts.redis.clone().unwrap_or_else(|| unreachable!());
                Backend::Redis(redis_keys::RedisKeys::new(conn, &prefix, secret.clone()))
            }
            (Some(path), Some(secret)) => Backend::Dir {
                path: path.clone(),
                secret: secret.clone(),
            },
            _ => {
                tracing::warn!(
                    "issuer signing keys are kept in memory only (no signing.key-dir): \
                     every token issued dies with this process"
                );
                Backend::Memory
            }
        };
        let inner = Arc::new(Inner {
            opts,
            backend,
            entries: tokio::sync::Mutex::new(Vec::new()),
            snapshot: ArcSwap::from_pointee(Snapshot::placeholder()?),
        });
        let manager = Self { inner };
        manager.run(Action::Tick).await?;
        Ok(manager)
    }

    /// A manager whose active key is `active` (an imported key keeps its `kid`, e.g. one migrated
    /// from Spring Authorization Server with [`SigningKey::with_kid`]). Keys live in memory only:
    /// [`KeyOptions::key_dir`] is not used (to persist an imported key, [`KeyManager::open`] then
    /// [`KeyManager::import`]). Rotation follows `opts` as with [`KeyManager::open`].
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap().with_kid("spring-uuid");
    /// let keys = KeyManager::from_keys(key, KeyOptions::default());
    /// assert_eq!(keys.signing_key().kid(), "spring-uuid");
    /// assert!(keys.jwks_json().contains("\"kid\":\"spring-uuid\""));
    /// ```
    pub fn from_keys(active: SigningKey, opts: KeyOptions) -> Self {
        let now = opts.clock.now_unix();
        let entries = vec![Entry {
            key: Arc::new(active),
            seq: 1,
            published_at: now,
            active_at: now,
        }];
        let snapshot = Snapshot::build(&entries, now);
        Self {
            inner: Arc::new(Inner {
                opts,
                backend: Backend::Memory,
                entries: tokio::sync::Mutex::new(entries),
                snapshot: ArcSwap::from_pointee(snapshot),
            }),
        }
    }

    /// The active signing key (one atomic load).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let keys = KeyManager::from_keys(SigningKey::generate(Algorithm::EdDSA).unwrap(), KeyOptions::default());
    /// let token = keys.signing_key().sign(&serde_json::json!({"sub": "svc"})).unwrap();
    /// assert_eq!(token.split('.').count(), 3);
    /// ```
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.inner.snapshot.load().active.clone()
    }

    /// The JWKS document (`{"keys":[...]}`) of the active, published and retired keys, serialized
    /// once per change. Only public members: never `d p q dp dq qi` (nor `k`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let keys = KeyManager::from_keys(SigningKey::generate(Algorithm::RS256).unwrap(), KeyOptions::default());
    /// let jwks: serde_json::Value = serde_json::from_str(&keys.jwks_json()).unwrap();
    /// assert_eq!(jwks["keys"][0]["kty"], "RSA");
    /// assert!(jwks["keys"][0].get("d").is_none());
    /// ```
    pub fn jwks_json(&self) -> Arc<str> {
        self.inner.snapshot.load().jwks.clone()
    }

    /// The `Cache-Control: max-age` for the JWKS.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let opts = KeyOptions::default().with_jwks_max_age(Duration::from_secs(120));
    /// let keys = KeyManager::from_keys(SigningKey::generate(Algorithm::EdDSA).unwrap(), opts);
    /// assert_eq!(keys.jwks_max_age(), Duration::from_secs(120));
    /// ```
    pub fn jwks_max_age(&self) -> Duration {
        self.inner.opts.jwks_max_age
    }

    /// A published, active or retired key by `kid` (for introspection of tokens).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let keys = KeyManager::from_keys(SigningKey::generate(Algorithm::EdDSA).unwrap(), KeyOptions::default());
    /// let kid = keys.signing_key().kid().to_owned();
    /// assert!(keys.verification_key(&kid).is_some());
    /// assert!(keys.verification_key("unknown").is_none());
    /// ```
    pub fn verification_key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.inner.snapshot.load().by_kid.get(kid).cloned()
    }

    /// Every key with its state and schedule, ordered by activation (no key material).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions, KeyState};
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let keys = KeyManager::from_keys(SigningKey::generate(Algorithm::EdDSA).unwrap(), KeyOptions::default());
    /// assert_eq!(keys.states().len(), 1);
    /// assert_eq!(keys.states()[0].state, KeyState::Active);
    /// ```
    pub fn states(&self) -> Vec<KeyInfo> {
        self.inner.snapshot.load().infos.clone()
    }

    /// Forces a rotation: a new key is published now and becomes active after
    /// [`KeyOptions::publish_lead`] (the current key then retires as usual). Does nothing when a
    /// published key is already waiting to take over. For a compromised key see
    /// [`KeyManager::rotate_now`].
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions, KeyState};
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let keys = KeyManager::open(KeyOptions::default().with_algorithm(Algorithm::EdDSA)).await.unwrap();
    /// keys.rotate().await.unwrap();
    /// keys.rotate().await.unwrap(); // already rotating: no third key
    /// let states: Vec<_> = keys.states().into_iter().map(|k| k.state).collect();
    /// assert_eq!(states, [KeyState::Active, KeyState::Published]);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the key directory cannot be read or written.
    pub async fn rotate(&self) -> Result<(), ConfigError> {
        self.run(Action::Rotate).await
    }

    /// Emergency rotation (key compromise): a new key signs from now on, without publish lead.
    /// Verifiers that have not refreshed their JWKS reject its tokens until they do (ours refetch
    /// on an unknown `kid`, rate-limited). The previous key stays published as retired; take it
    /// out with [`KeyManager::remove`]. Other instances on the same key directory or Redis switch
    /// at their next [`KeyManager::tick`] (within [`KeyOptions::tick_interval`]): remove the old
    /// key only after that, or their tokens of that interval fail too.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let keys = KeyManager::open(KeyOptions::default().with_algorithm(Algorithm::EdDSA)).await.unwrap();
    /// let compromised = keys.signing_key().kid().to_owned();
    /// keys.rotate_now().await.unwrap();
    /// keys.remove(&compromised).await.unwrap();
    /// assert_ne!(keys.signing_key().kid(), compromised);
    /// assert!(!keys.jwks_json().contains(&compromised));
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the key directory cannot be read or written.
    pub async fn rotate_now(&self) -> Result<(), ConfigError> {
        self.run(Action::RotateNow).await
    }

    /// Adds `key` (persisted with a key directory) and makes it the active key now, like
    /// [`KeyManager::rotate_now`] with a given key. Nothing happens if its `kid` is known.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let keys = KeyManager::open(KeyOptions::default().with_algorithm(Algorithm::EdDSA)).await.unwrap();
    /// let legacy = SigningKey::generate(Algorithm::ES256).unwrap();
    /// let kid = legacy.kid().to_owned();
    /// keys.import(legacy).await.unwrap();
    /// assert_eq!(keys.signing_key().kid(), kid);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the key directory cannot be read or written.
    pub async fn import(&self, key: SigningKey) -> Result<(), ConfigError> {
        self.run(Action::Import(Box::new(key))).await
    }

    /// Removes a published or retired key now (key compromise): tokens it signed stop verifying
    /// once verifiers refresh their JWKS. The active key cannot be removed: call
    /// [`KeyManager::rotate_now`] first. Unknown `kid`s are ignored.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let keys = KeyManager::open(KeyOptions::default().with_algorithm(Algorithm::EdDSA)).await.unwrap();
    /// let active = keys.signing_key().kid().to_owned();
    /// assert!(keys.remove(&active).await.is_err());
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for the active key; [`ConfigError`] when the key directory cannot
    /// be read or written.
    pub async fn remove(&self, kid: &str) -> Result<(), ConfigError> {
        self.run(Action::Remove(kid.to_owned())).await
    }

    /// Drives the states on the clock: re-reads the key directory (keys added or removed by
    /// another instance), removes keys past their grace, publishes the next key when
    /// [`KeyOptions::rotate_after`] (or a changed [`KeyOptions::algorithm`]) calls for one, and
    /// switches the active key when its successor's time has come. Idempotent.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let keys = KeyManager::open(KeyOptions::default().with_algorithm(Algorithm::EdDSA)).await.unwrap();
    /// keys.tick().await.unwrap();
    /// keys.tick().await.unwrap();
    /// assert_eq!(keys.states().len(), 1);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the key directory cannot be read or written, or a key file does not
    /// decrypt; the keys in use stay as they were.
    pub async fn tick(&self) -> Result<(), ConfigError> {
        self.run(Action::Tick).await
    }

    /// Spawns a task calling [`KeyManager::tick`] every [`KeyOptions::tick_interval`] (errors are
    /// logged); it ends when every clone of the manager is dropped, or when aborted.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let keys = KeyManager::open(KeyOptions::default().with_algorithm(Algorithm::EdDSA)).await.unwrap();
    /// let driver = keys.spawn_rotation();
    /// drop(keys);
    /// driver.await.unwrap(); // ends once the manager is gone
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_rotation(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = self.inner.opts.tick_interval;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                // Check before sleeping, so a dropped manager ends the task promptly.
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::select! {
                    _ = interval.tick() => {}
                    () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
                let Some(inner) = weak.upgrade() else { return };
                if let Err(error) = (KeyManager { inner }).tick().await {
                    tracing::warn!(%error, "signing key rotation tick failed");
                }
            }
        })
    }

    async fn run(&self, action: Action) -> Result<(), ConfigError> {
        let inner = &self.inner;
        // Serializes changes within the process; the backend lock does it across instances.
        let mut entries = inner.entries.lock().await;
        let lock = inner.backend.lock().await?;
        let result = inner.apply(&mut entries, action).await;
        lock.release().await;
        result
    }
}

impl Snapshot {
    fn placeholder() -> Result<Self, ConfigError> {
        // Replaced before `open` returns; never observable.
        let key = Arc::new(SigningKey::generate(Algorithm::EdDSA)?);
        Ok(Self {
            active: key,
            jwks: Arc::from("{\"keys\":[]}"),
            infos: Vec::new(),
            by_kid: HashMap::new(),
        })
    }

    /// States of the (sorted, non-empty) `entries` at `now`, ignoring removal.
    fn build(entries: &[Entry], now: u64) -> Self {
        let active_idx = entries
            .iter()
            .rposition(|e| e.active_at <= now)
            .unwrap_or(0);
        let mut infos = Vec::with_capacity(entries.len());
        let mut by_kid = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let retired_at = entries.get(i + 1).map(|next| next.active_at);
            let state = match i.cmp(&active_idx) {
                std::cmp::Ordering::Less => KeyState::Retired,
                std::cmp::Ordering::Equal => KeyState::Active,
                std::cmp::Ordering::Greater => KeyState::Published,
            };
            infos.push(KeyInfo {
                kid: e.key.kid().to_owned(),
                alg: e.key.algorithm(),
                state,
                published_at: e.published_at,
                active_at: e.active_at,
                retired_at,
                remove_at: None,
            });
            by_kid.insert(e.key.kid().to_owned(), e.key.clone());
        }
        // Active first, then published (newest last), then retired (newest first).
        let mut keys = vec![entries[active_idx].key.public_jwk()];
        keys.extend(entries[active_idx + 1..].iter().map(|e| e.key.public_jwk()));
        keys.extend(
            entries[..active_idx]
                .iter()
                .rev()
                .map(|e| e.key.public_jwk()),
        );
        let jwks = serde_json::json!({ "keys": keys }).to_string();
        Self {
            active: entries[active_idx].key.clone(),
            jwks: Arc::from(jwks),
            infos,
            by_kid,
        }
    }
}

impl Inner {
    fn remove_at(&self, retired_at: u64) -> u64 {
        retired_at
            .saturating_add(self.opts.retire_grace.as_secs())
            .saturating_add(self.opts.tick_interval.as_secs())
    }

    /// What `action` changes at `now`: indices of keys to remove, and the schedule of a new key
    /// (`Some(key)` for an import, `None` to generate one).
    fn plan(
        &self,
        entries: &[Entry],
        now: u64,
        action: Action,
    ) -> Result<(Vec<usize>, Option<(Option<SigningKey>, u64, u64)>), ConfigError> {
        let lead = self.opts.publish_lead.as_secs();
        // Keys past their grace: a prefix of the sorted list, never the active key (its
        // successor is not active yet).
        let mut expired: Vec<usize> = (0..entries.len().saturating_sub(1))
            .filter(|&i| self.remove_at(entries[i + 1].active_at) <= now)
            .collect();
        let mut new_key = None;
        match action {
            Action::Tick => match entries.last() {
                None => new_key = Some((None, now, now)),
                Some(last) => {
                    let pending = last.active_at > now;
                    let due = self.opts.rotate_after.is_some_and(|after| {
                        now.saturating_add(lead) >= last.active_at.saturating_add(after.as_secs())
                    });
                    let wrong_alg = last.key.algorithm() != self.opts.algorithm;
                    if !pending && (due || wrong_alg) {
                        let at = match self.opts.rotate_after {
                            Some(after) if !wrong_alg => last
                                .active_at
                                .saturating_add(after.as_secs())
                                .max(now + lead),
                            _ => now + lead,
                        };
                        new_key = Some((None, now, at));
                    }
                }
            },
            Action::Rotate => {
                if entries.last().is_none_or(|last| last.active_at <= now) {
                    new_key = Some((None, now, now + lead));
                }
            }
            Action::RotateNow => new_key = Some((None, now, now)),
            Action::Import(key) => {
                if !entries.iter().any(|e| e.key.kid() == key.kid()) {
                    new_key = Some((Some(*key), now, now));
                }
            }
            Action::Remove(kid) => {
                let active_idx = entries.iter().rposition(|e| e.active_at <= now);
                if let Some(i) = entries.iter().position(|e| e.key.kid() == kid) {
                    if Some(i) == active_idx || entries.len() == 1 {
                        return Err(ConfigError::Invalid {
                            name: "kid",
                            reason: format!(
                                "`{kid}` is the active signing key: rotate_now() first"
                            ),
                        });
                    }
                    expired.push(i);
                    expired.sort_unstable();
                    expired.dedup();
                }
            }
        }
        Ok((expired, new_key))
    }

    async fn apply(&self, entries: &mut Vec<Entry>, action: Action) -> Result<(), ConfigError> {
        let now = self.opts.clock.now_unix();
        self.backend.reload(entries).await?;
        let (expired, new_key) = self.plan(entries, now, action)?;
        let new_entry = match new_key {
            None => None,
            Some((key, published_at, active_at)) => {
                let key = match key {
                    Some(key) => key,
                    None => {
                        // RSA generation takes tens of milliseconds: off the async threads.
                        let alg = self.opts.algorithm;
                        tokio::task::spawn_blocking(move || SigningKey::generate(alg))
                            .await
                            .map_err(|e| {
                                ConfigError::InvalidKey(format!("key generation: {e}"))
                            })??
                    }
                };
                Some(Entry {
                    key: Arc::new(key),
                    seq: entries.iter().map(|e| e.seq).max().unwrap_or(0) + 1,
                    published_at,
                    active_at,
                })
            }
        };
        for &i in expired.iter().rev() {
            self.backend.delete(&entries[i]).await?;
            let gone = entries.remove(i);
            crate::issuer::audit::audit!(None, info, "key_state", "removed"; kid = gone.key.kid(), "signing key removed from the JWKS");
        }
        if let Some(entry) = new_entry {
            self.backend.write(&entry).await?;
            crate::issuer::audit::audit!(None, info, "key_state", "published";
                kid = entry.key.kid(),
                alg = %entry.key.algorithm(),
                published_at = entry.published_at,
                active_at = entry.active_at,
                "signing key published"
            );
            entries.push(entry);
            entries.sort_by(|a, b| a.order().cmp(&b.order()));
        }
        let mut snapshot = Snapshot::build(entries, now);
        for info in &mut snapshot.infos {
            info.remove_at = info.retired_at.map(|at| self.remove_at(at));
        }
        let previous = self.snapshot.load();
        if previous.active.kid() != snapshot.active.kid() && !previous.infos.is_empty() {
            crate::issuer::audit::audit!(None, info, "key_state", "activated"; kid = snapshot.active.kid(), "signing key now active");
        }
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }
}

fn join_error(e: tokio::task::JoinError) -> ConfigError {
    ConfigError::InvalidKey(format!("key store task failed: {e}"))
}

/// Held while a change is made; released explicitly (a dropped `Dir` lock removes its file, a
/// lost Redis lock expires).
enum BackendLock {
    None,
    Dir(#[allow(dead_code)] DirLock),
    #[cfg(feature = "redis")]
    Redis(redis_keys::RedisLock),
}

impl BackendLock {
    async fn release(self) {
        match self {
            BackendLock::None | BackendLock::Dir(_) => {}
            #[cfg(feature = "redis")]
            BackendLock::Redis(lock) => lock.release().await,
        }
    }
}

impl Backend {
    async fn lock(&self) -> Result<BackendLock, ConfigError> {
        match self {
            Backend::Memory => Ok(BackendLock::None),
            Backend::Dir { path, .. } => {
                let path = path.clone();
                let lock = tokio::task::spawn_blocking(move || DirLock::acquire(&path))
                    .await
                    .map_err(join_error)??;
                Ok(BackendLock::Dir(lock))
            }
            #[cfg(feature = "redis")]
            Backend::Redis(store) => Ok(BackendLock::Redis(store.lock().await?)),
        }
    }

    /// Syncs `entries` with the stored records: new ones decrypted, vanished ones dropped
    /// (records are immutable, so known ones are not read again).
    async fn reload(&self, entries: &mut Vec<Entry>) -> Result<(), ConfigError> {
        let known: Vec<String> = entries.iter().map(|e| record_name(&e.key)).collect();
        let (names, fresh) = match self {
            Backend::Memory => return Ok(()),
            Backend::Dir { path, secret } => {
                let (path, secret) = (path.clone(), secret.clone());
                tokio::task::spawn_blocking(move || read_dir(&path, &secret, &known))
                    .await
                    .map_err(join_error)??
            }
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.read_all(&known).await?,
        };
        entries.retain(|e| names.contains(&record_name(&e.key)));
        entries.extend(fresh);
        entries.sort_by(|a, b| a.order().cmp(&b.order()));
        Ok(())
    }

    async fn write(&self, entry: &Entry) -> Result<(), ConfigError> {
        match self {
            Backend::Memory => Ok(()),
            Backend::Dir { path, secret } => {
                let record = seal_record(secret, entry)?;
                let target = path.join(record_name(&entry.key));
                let dir = path.clone();
                tokio::task::spawn_blocking(move || write_file(&dir, &target, &record))
                    .await
                    .map_err(join_error)?
            }
            #[cfg(feature = "redis")]
            Backend::Redis(store) => {
                let record = seal_record(&store.secret, entry)?;
                store.write(&record_name(&entry.key), record).await
            }
        }
    }

    async fn delete(&self, entry: &Entry) -> Result<(), ConfigError> {
        match self {
            Backend::Memory => Ok(()),
            Backend::Dir { path, .. } => {
                let file = path.join(record_name(&entry.key));
                tokio::task::spawn_blocking(move || match std::fs::remove_file(&file) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(io_error(&file, source)),
                })
                .await
                .map_err(join_error)?
            }
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.delete(&record_name(&entry.key)).await,
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The file name (key directory) or hash field (Redis) of a key's record.
fn record_name(key: &SigningKey) -> String {
    format!("key-{}.json", key.thumbprint())
}

/// One key record: the schedule in clear, the PKCS#8 encrypted; all of it authenticated.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    version: u32,
    kid: String,
    alg: String,
    seq: u64,
    published_at: u64,
    active_at: u64,
    salt: String,
    nonce: String,
    ciphertext: String,
}

impl KeyFile {
    fn aad(&self) -> Vec<u8> {
        format!(
            "{FILE_FORMAT}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.version, self.kid, self.alg, self.seq, self.published_at, self.active_at
        )
        .into_bytes()
    }
}

fn derive_key(secret: &Secret, salt: &[u8]) -> Result<LessSafeKey, ConfigError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret.expose().as_bytes());
    let okm = prk
        .expand(&[HKDF_INFO], &AES_256_GCM)
        .map_err(|_| ConfigError::Crypto("HKDF expand"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// The encrypted record (JSON) of `entry`.
fn seal_record(secret: &Secret, entry: &Entry) -> Result<Vec<u8>, ConfigError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut nonce))
        .map_err(|_| ConfigError::Crypto("random"))?;
    let mut file = KeyFile {
        format: FILE_FORMAT.into(),
        version: 1,
        kid: entry.key.kid().to_owned(),
        alg: entry.key.algorithm().as_str().to_owned(),
        seq: entry.seq,
        published_at: entry.published_at,
        active_at: entry.active_at,
        salt: URL_SAFE_NO_PAD.encode(salt),
        nonce: URL_SAFE_NO_PAD.encode(nonce),
        ciphertext: String::new(),
    };
    let der = entry.key.to_pkcs8_der()?;
    // Room for the tag up front: sealing in place then never reallocates, so no plaintext copy
    // is left behind in freed memory.
    let mut buf = Zeroizing::new(Vec::with_capacity(der.len() + AES_256_GCM.tag_len()));
    buf.extend_from_slice(&der);
    derive_key(secret, &salt)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(file.aad()),
            &mut *buf,
        )
        .map_err(|_| ConfigError::Crypto("AES-256-GCM seal"))?;
    file.ciphertext = URL_SAFE_NO_PAD.encode(&buf[..]);
    serde_json::to_vec_pretty(&file).map_err(|e| ConfigError::InvalidKey(format!("key file: {e}")))
}

/// Decrypts a record stored as `name`; `shown` names it in errors (the file path, or the Redis
/// key and field).
fn open_record(
    secret: &Secret,
    bytes: &[u8],
    name: &str,
    shown: &str,
) -> Result<Entry, ConfigError> {
    let bad = |why: &str| ConfigError::InvalidKey(format!("key file `{shown}`: {why}"));
    let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
    if file.format != FILE_FORMAT || file.version != 1 {
        return Err(bad("unknown format or version"));
    }
    let alg: Algorithm = file.alg.parse().map_err(|_| bad("unknown algorithm"))?;
    let decode = |v: &str| {
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|_| bad("malformed base64"))
    };
    let salt = decode(&file.salt)?;
    let nonce: [u8; NONCE_LEN] = decode(&file.nonce)?
        .try_into()
        .map_err(|_| bad("malformed nonce"))?;
    let mut buf = Zeroizing::new(decode(&file.ciphertext)?);
    let der = derive_key(secret, &salt)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(file.aad()),
            &mut buf[..],
        )
        .map_err(|_| bad("cannot decrypt: wrong ISSUER_KEY_SECRET, or the file was modified"))?;
    let mut key = SigningKey::from_pkcs8_der(alg, der)?;
    if key.kid() != file.kid {
        key = key.with_kid(file.kid.clone());
    }
    if name != record_name(&key) {
        return Err(bad("name does not match the key's thumbprint"));
    }
    Ok(Entry {
        key: Arc::new(key),
        seq: file.seq,
        published_at: file.published_at,
        active_at: file.active_at,
    })
}

/// Writes `target` atomically (temporary file, mode 0600, then rename).
fn write_file(dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let mut tmp_name = [0u8; 8];
    SystemRandom::new()
        .fill(&mut tmp_name)
        .map_err(|_| ConfigError::Crypto("random"))?;
    let tmp = dir.join(format!(".tmp-{}", URL_SAFE_NO_PAD.encode(tmp_name)));
    write_private(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(target, e)
    })
}

/// Creates `path` (mode 0600 on unix), writes and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The record names in `dir`, and the entries of those not in `known`.
fn read_dir(
    dir: &Path,
    secret: &Secret,
    known: &[String],
) -> Result<(Vec<String>, Vec<Entry>), ConfigError> {
    let mut names = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let item = item.map_err(|e| io_error(dir, e))?;
        if let Some(name) = item.file_name().to_str() {
            if name.starts_with("key-") && name.ends_with(".json") {
                names.push(name.to_owned());
            }
        }
    }
    let mut fresh = Vec::new();
    for name in names.iter().filter(|n| !known.contains(n)) {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "signing key file is readable by group or others: chmod 600");
            }
        }
        fresh.push(open_record(
            secret,
            &bytes,
            name,
            &path.display().to_string(),
        )?);
    }
    Ok((names, fresh))
}

/// An exclusive `.lock` file in the key directory, removed on drop.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self, ConfigError> {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder.create(dir).map_err(|e| io_error(dir, e))?;
        }
        let path = dir.join(".lock");
        let started = std::time::Instant::now();
        loop {
            match write_private(&path, std::process::id().to_string().as_bytes()) {
                Ok(()) => return Ok(Self(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > LOCK_STALE);
                    if stale {
                        tracing::warn!(file = %path.display(), "removing a stale key directory lock");
                        let _ = std::fs::remove_file(&path);
                    } else if started.elapsed() > LOCK_WAIT {
                        return Err(io_error(
                            &path,
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "key directory locked by another instance",
                            ),
                        ));
                    } else {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                Err(e) => return Err(io_error(&path, e)),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(feature = "redis")]
mod redis_keys {
    //! Key records in a Redis hash, changed under a `SET NX PX` lock.

    use std::time::Duration;

    use ::redis::aio::ConnectionManager;
    use ::redis::{Cmd, FromRedisValue};
    use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::{Entry, LOCK_STALE, LOCK_WAIT, open_record};
    use crate::config::Secret;
    use crate::error::ConfigError;

    const TIMEOUT: Duration = Duration::from_secs(5);
    const UNLOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

    pub(super) struct RedisKeys {
        conn: ConnectionManager,
        hash: String,
        pub(super) secret: Secret,
    }

    pub(super) struct RedisLock {
        conn: ConnectionManager,
        key: String,
        token: String,
    }

    async fn run<T: FromRedisValue>(
        conn: &ConnectionManager,
        op: &str,
        cmd: Cmd,
    ) -> Result<T, ConfigError> {
        let mut conn = conn.clone();
        let fail = |reason: String| ConfigError::Invalid {
            name: "authorization-server.store",
            reason: format!("redis {op} of the signing keys: {reason}"),
        };
        match tokio::time::timeout(TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(_) => Err(fail(format!("no answer within {TIMEOUT:?}"))),
        }
    }

    impl RedisKeys {
        pub(super) fn new(conn: ConnectionManager, prefix: &str, secret: Secret) -> Self {
            Self {
                conn,
                hash: format!("{prefix}:issuer:signing-keys"),
                secret,
            }
        }

        pub(super) async fn lock(&self) -> Result<RedisLock, ConfigError> {
            let mut raw = [0u8; 16];
            SystemRandom::new()
                .fill(&mut raw)
                .map_err(|_| ConfigError::Crypto("random"))?;
            let lock = RedisLock {
                conn: self.conn.clone(),
                key: format!("{}:lock", self.hash),
                token: URL_SAFE_NO_PAD.encode(raw),
            };
            let started = tokio::time::Instant::now();
            loop {
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(&lock.key)
                    .arg(&lock.token)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(LOCK_STALE.as_millis()).unwrap_or(u64::MAX));
                let set: Option<String> = run(&self.conn, "SET NX", cmd).await?;
                if set.is_some() {
                    return Ok(lock);
                }
                if started.elapsed() > LOCK_WAIT {
                    return Err(ConfigError::Invalid {
                        name: "authorization-server.store",
                        reason: format!(
                            "`{}` held by another instance for {LOCK_WAIT:?}",
                            lock.key
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// The record names, and the entries of those not in `known`.
        pub(super) async fn read_all(
            &self,
            known: &[String],
        ) -> Result<(Vec<String>, Vec<Entry>), ConfigError> {
            let mut cmd = ::redis::cmd("HGETALL");
            cmd.arg(&self.hash);
            let all: Vec<(String, Vec<u8>)> = run(&self.conn, "HGETALL", cmd).await?;
            let mut names = Vec::with_capacity(all.len());
            let mut fresh = Vec::new();
            for (name, bytes) in all {
                if !known.contains(&name) {
                    let shown = format!("{} {name}", self.hash);
                    fresh.push(open_record(&self.secret, &bytes, &name, &shown)?);
                }
                names.push(name);
            }
            Ok((names, fresh))
        }

        pub(super) async fn write(&self, name: &str, record: Vec<u8>) -> Result<(), ConfigError> {
            let mut cmd = ::redis::cmd("HSET");
            cmd.arg(&self.hash).arg(name).arg(record);
            run::<i64>(&self.conn, "HSET", cmd).await.map(drop)
        }

        pub(super) async fn delete(&self, name: &str) -> Result<(), ConfigError> {
            let mut cmd = ::redis::cmd("HDEL");
            cmd.arg(&self.hash).arg(name);
            run::<i64>(&self.conn, "HDEL", cmd).await.map(drop)
        }
    }

    impl RedisLock {
        pub(super) async fn release(self) {
            let mut cmd = ::redis::cmd("EVAL");
            cmd.arg(UNLOCK).arg(1).arg(&self.key).arg(&self.token);
            if let Err(error) = run::<i64>(&self.conn, "EVAL unlock", cmd).await {
                tracing::warn!(%error, "signing key lock not released; it expires by itself");
            }
        }
    }
}

#[cfg(test)]
mod tests;
