//! The Redis [`GrantStore`] (feature `redis`): shared by issuer replicas.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, FromRedisValue};

use super::{
    CODE_TOMBSTONE_TTL, CleanupReport, CodeOutcome, CodeRecord, FamilyRecord, FamilyState,
    GrantStats, GrantStore, NewFamily, RotateOutcome, TokenHash, TokenState, check_code_ttl,
    check_successor,
};
use crate::error::ConfigError;
use crate::http_client::BoxFuture;
use crate::store::StoreError;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The `sid-revoked` marker of a revoked family lives at least this long (seconds), even when
/// the family expires sooner: access tokens minted just before the family's absolute expiry
/// may outlive it by their own lifetime (minutes).
pub(crate) const SID_MARKER_MIN_TTL_SECS: u64 = 3_600;
/// The stats hash and the active-family index live this long after their last write.
const STATS_TTL_SECS: u64 = 400 * 86_400;

/// A Lua script sent by `EVALSHA`, re-sent by `EVAL` when Redis does not know it (after a
/// restart or `SCRIPT FLUSH`).
struct Lua {
    src: &'static str,
    sha: String,
}

impl Lua {
    fn new(src: &'static str) -> Self {
        let d =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, src.as_bytes());
        Self {
            src,
            sha: crate::store::hex_digest(d.as_ref()),
        }
    }
}

/// Creates a family: KEYS fam, used; ARGV: fields..., ttl. 1 when created, 0 when it exists.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[#ARGV])
local fields = {}
for i = 1, #ARGV - 1 do fields[i] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ttl)
return 1
";

/// One rotation, atomically: KEYS fam, used, sid-revoked marker; ARGV presented, client,
/// successor, now, marker floor TTL.
const ROTATE: &str = r"
local f, u = KEYS[1], KEYS[2]
local presented, client, succ, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', f) == 0 then return {'not_found'} end
local h = redis.call('HMGET', f, 'head', 'client', 'state', 'idle_exp', 'abs_exp', 'idle_ttl')
local is_head = (h[1] == presented)
if not is_head and redis.call('SISMEMBER', u, presented) == 0 then return {'not_found'} end
if h[2] ~= client then return {'wrong_client'} end
local idle_exp, abs_exp = tonumber(h[4]), tonumber(h[5])
if now >= idle_exp or now >= abs_exp then return {'expired'} end
if not is_head then
  local newly = '0'
  if h[3] ~= 'revoked' then
    redis.call('HSET', f, 'state', 'revoked')
    newly = '1'
  end
  local mttl = math.max(redis.call('TTL', f), tonumber(ARGV[5]))
  redis.call('SET', KEYS[3], '1', 'EX', mttl)
  local out = {'reused', newly}
  for _, v in ipairs(redis.call('HGETALL', f)) do out[#out + 1] = v end
  return out
end
if h[3] == 'revoked' then return {'revoked'} end
redis.call('SADD', u, presented)
local new_idle = math.min(now + tonumber(h[6]), abs_exp)
redis.call('HSET', f, 'head', succ, 'last_used', tostring(now), 'idle_exp', tostring(new_idle))
redis.call('HINCRBY', f, 'gen', 1)
local ttl = abs_exp - now
redis.call('EXPIRE', f, ttl)
redis.call('EXPIRE', u, ttl)
local out = {'rotated', tostring(new_idle)}
for _, v in ipairs(redis.call('HGETALL', f)) do out[#out + 1] = v end
return out
";

/// KEYS fam, used; ARGV presented. {state, fields...} or nil.
const LOOKUP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local st
if redis.call('HGET', KEYS[1], 'head') == ARGV[1] then st = 'current'
elseif redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then st = 'used'
else return false end
local out = {st}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
return out
";

/// KEYS fam, sid-revoked marker; ARGV marker floor TTL. -1 unknown, 0 already revoked, 1
/// revoked now. The marker is (re)written with the family's remaining TTL (at least the floor)
/// either way, so families revoked before markers existed get one too.
const REVOKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local mttl = math.max(redis.call('TTL', KEYS[1]), tonumber(ARGV[1]))
redis.call('SET', KEYS[2], '1', 'EX', mttl)
if redis.call('HGET', KEYS[1], 'state') == 'revoked' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'revoked')
return 1
";

/// KEYS set; ARGV member, ttl: SADD and extend (never shorten) the TTL.
const INDEX_ADD: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
";

/// KEYS zset; ARGV member, score, ttl: ZADD and extend the TTL.
const ACTIVE_ADD: &str = r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ttl = tonumber(ARGV[3])
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
";

/// KEYS code; ARGV record, ttl. 1 stored, 0 exists.
const PUT_CODE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'consumed', '0')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
";

/// KEYS code; ARGV tombstone ttl.
const TAKE_CODE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local h = redis.call('HMGET', KEYS[1], 'consumed', 'rec', 'fam')
if h[1] == '1' then return {'reused', h[3] or ''} end
redis.call('HSET', KEYS[1], 'consumed', '1')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return {'taken', h[2]}
";

/// KEYS code; ARGV family.
const LINK_CODE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'fam', ARGV[1]) end
return 1
";

/// KEYS jti; ARGV ttl: set, or extend.
const REVOKE_JTI: &str = r"
local ttl = tonumber(ARGV[1])
if redis.call('TTL', KEYS[1]) < ttl then redis.call('SET', KEYS[1], '1', 'EX', ttl) end
return 1
";

struct Scripts {
    create: Lua,
    rotate: Lua,
    lookup: Lua,
    revoke: Lua,
    index_add: Lua,
    active_add: Lua,
    put_code: Lua,
    take_code: Lua,
    link_code: Lua,
    revoke_jti: Lua,
}

impl Scripts {
    fn new() -> Self {
        Self {
            create: Lua::new(CREATE),
            rotate: Lua::new(ROTATE),
            lookup: Lua::new(LOOKUP),
            revoke: Lua::new(REVOKE),
            index_add: Lua::new(INDEX_ADD),
            active_add: Lua::new(ACTIVE_ADD),
            put_code: Lua::new(PUT_CODE),
            take_code: Lua::new(TAKE_CODE),
            link_code: Lua::new(LINK_CODE),
            revoke_jti: Lua::new(REVOKE_JTI),
        }
    }
}

/// The [`GrantStore`] in Redis, for issuer replicas that share grants (feature `redis`,
/// `store: redis`). Cheap to clone.
///
/// Every rotation is one Lua script over the family's two keys (check state, client and
/// lifetimes; mark used; write the successor; move the head; on reuse revoke the family), so
/// two replicas can never both rotate one token. Key layout under the prefix `P` (the `{…}`
/// are Redis Cluster hash tags, so the keys of one family share a slot):
///
/// | key | type | TTL |
/// |-----|------|-----|
/// | `P:{fam}:fam` | hash: client, user, scopes, times, state, head digest, generation | family's absolute expiry |
/// | `P:{fam}:used` | set of used token digests (tombstones) | family's absolute expiry |
/// | `P:user:{uid}` / `P:client:{id}` | set of family ids | longest absolute expiry added |
/// | `P:active` | sorted set family → idle expiry (active count) | 400 days after last write |
/// | `P:stats` | hash of counters | 400 days after last write |
/// | `P:code:{hash}` | hash: code record (JSON), consumed, family | code TTL (≤ 60 s), then 10 min tombstone |
/// | `P:jti:{jti}` | `1` | until the access token's `exp` |
/// | `P:sid-revoked:{fam}` | `1`: the family was revoked (read by resource servers, `RedisRevocations`) | family's absolute expiry, at least 1 h |
///
/// Every key has a TTL: nothing outlives the grant it describes. The family hash is the
/// source of truth; indexes and counters are written right after it (not atomically with it,
/// since they live in other slots) and are pruned when they point at a family that is gone.
///
/// At start ([`connect`](Self::connect)), [`check_persistence`](Self::check_persistence) warns
/// when Redis would lose grants (`appendonly no`, or an evicting `maxmemory-policy`: with a
/// `maxmemory` limit, only `noeviction` is safe since every key here has a TTL and is thus
/// eligible for `volatile-*` eviction). Losing grants logs users out; it never makes the token
/// endpoint fail: a missing family is [`RotateOutcome::NotFound`].
///
/// # Example
///
/// ```no_run
/// use tower_bearer::issuer::store::{GrantStore, RedisGrantStore};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisGrantStore::connect("redis://127.0.0.1:6379", "auth").await?;
/// assert_eq!(store.key_prefix(), "auth");
/// assert!(!store.is_jti_revoked("some-jti", 1_800_000_000).await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisGrantStore {
    conn: ConnectionManager,
    prefix: std::sync::Arc<str>,
    timeout: Duration,
    scripts: std::sync::Arc<Scripts>,
}

impl fmt::Debug for RedisGrantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisGrantStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What [`RedisGrantStore::check_persistence`] found out.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::store::PersistenceReport;
///
/// let r = PersistenceReport::default();
/// assert!(r.warnings.is_empty() && r.appendonly.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PersistenceReport {
    /// `CONFIG GET appendonly`; `None` when `CONFIG` is disabled or refused.
    pub appendonly: Option<bool>,
    /// `CONFIG GET maxmemory-policy`.
    pub maxmemory_policy: Option<String>,
    /// `CONFIG GET maxmemory` (bytes, 0 = no limit).
    pub maxmemory: Option<u64>,
    /// The warnings logged (empty when Redis keeps grants safely, or could not be asked).
    pub warnings: Vec<String>,
}

fn err(op: &str, e: impl fmt::Display) -> StoreError {
    StoreError::new(format!("grant store: redis {op}: {e}"))
}

fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => "<not a URL>".to_owned(),
    }
}

impl RedisGrantStore {
    /// Connects (within a few seconds, or fails), then checks persistence (warnings logged).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_bearer::issuer::store::RedisGrantStore;
    ///
    /// # #[tokio::main] async fn main() {
    /// let err = RedisGrantStore::connect("not a url", "auth").await.unwrap_err();
    /// assert!(err.to_string().contains("redis"));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] or [`ConfigError::Invalid`] (name `redis.url`) when the URL is
    /// not a Redis URL or Redis cannot be reached; `key-prefix` errors as in
    /// [`from_manager`](Self::from_manager).
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, ConfigError> {
        let client = ::redis::Client::open(url).map_err(|_| ConfigError::InvalidUrl {
            url: redact(url),
            reason: "not a redis:// URL",
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let manager = match tokio::time::timeout(
            DEFAULT_TIMEOUT * 3,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                return Err(ConfigError::Invalid {
                    name: "redis.url",
                    reason: format!("cannot connect to {}: {e}", redact(url)),
                });
            }
            Err(_) => {
                return Err(ConfigError::Invalid {
                    name: "redis.url",
                    reason: format!("cannot connect to {}: timed out", redact(url)),
                });
            }
        };
        let store = Self::from_manager(manager, key_prefix)?;
        store.check_persistence().await;
        Ok(store)
    }

    /// A store over a connection you made (no persistence check: call
    /// [`check_persistence`](Self::check_persistence) yourself).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_bearer::issuer::store::RedisGrantStore;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let conn = redis::aio::ConnectionManager::new(client).await?;
    /// let store = RedisGrantStore::from_manager(conn, "auth")?;
    /// assert!(RedisGrantStore::from_manager(store.connection(), "a{b").is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] (name `key-prefix`) for an empty prefix or one with `{`, `}` or
    /// whitespace (they would break the Cluster hash tags).
    pub fn from_manager(conn: ConnectionManager, key_prefix: &str) -> Result<Self, ConfigError> {
        if key_prefix.is_empty()
            || key_prefix
                .chars()
                .any(|c| c == '{' || c == '}' || c.is_whitespace())
        {
            return Err(ConfigError::Invalid {
                name: "key-prefix",
                reason: "must be non-empty, without `{`, `}` or spaces".to_owned(),
            });
        }
        Ok(Self {
            conn,
            prefix: key_prefix.into(),
            timeout: DEFAULT_TIMEOUT,
            scripts: std::sync::Arc::new(Scripts::new()),
        })
    }

    /// The timeout of each Redis call (default 2 s).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_bearer::issuer::store::RedisGrantStore;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisGrantStore::connect("redis://127.0.0.1:6379", "auth").await?
    ///     .with_timeout(Duration::from_millis(500));
    /// assert!(format!("{store:?}").contains("500ms"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix.
    ///
    /// # Example
    ///
    /// See [`RedisGrantStore`].
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection (clone of the manager).
    ///
    /// # Example
    ///
    /// See [`from_manager`](Self::from_manager).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Asks Redis (`CONFIG GET`) whether grants survive a restart and memory pressure, and logs
    /// a warning for each risk: `appendonly no` (a restart loses what happened since the last
    /// RDB snapshot, or everything), an evicting `maxmemory-policy` with a `maxmemory` limit.
    /// When `CONFIG` is disabled (managed Redis often renames it), logs that it could not check
    /// and returns an empty report; never fails.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_bearer::issuer::store::RedisGrantStore;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisGrantStore::connect("redis://127.0.0.1:6379", "auth").await?;
    /// let report = store.check_persistence().await;
    /// if report.appendonly == Some(false) {
    ///     assert!(!report.warnings.is_empty());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check_persistence(&self) -> PersistenceReport {
        let mut report = PersistenceReport::default();
        let get = |name: &'static str| {
            let mut cmd = ::redis::cmd("CONFIG");
            cmd.arg("GET").arg(name);
            self.run::<HashMap<String, String>>("CONFIG GET", cmd)
        };
        match get("appendonly").await {
            Ok(m) => report.appendonly = m.get("appendonly").map(|v| v == "yes"),
            Err(e) => {
                tracing::info!(
                    error = %e,
                    "grant store: cannot read the Redis configuration (CONFIG disabled?); \
                     make sure it persists (appendonly yes) and does not evict (maxmemory-policy noeviction)"
                );
                return report;
            }
        }
        if let Ok(m) = get("maxmemory-policy").await {
            report.maxmemory_policy = m.get("maxmemory-policy").cloned();
        }
        if let Ok(m) = get("maxmemory").await {
            report.maxmemory = m.get("maxmemory").and_then(|v| v.parse().ok());
        }
        if report.appendonly == Some(false) {
            report.warnings.push(
                "Redis runs with `appendonly no`: a restart loses refresh-token families and \
                 logs users out; set `appendonly yes`"
                    .to_owned(),
            );
        }
        if let Some(policy) = &report.maxmemory_policy {
            if policy != "noeviction" && report.maxmemory != Some(0) {
                report.warnings.push(format!(
                    "Redis evicts keys under memory pressure (maxmemory-policy {policy}): \
                     grants may vanish and log users out; use `noeviction`"
                ));
            }
        }
        for w in &report.warnings {
            tracing::warn!("grant store: {w}");
        }
        report
    }

    pub(super) fn fam_key(&self, fam: &str) -> String {
        format!("{}:{{{fam}}}:fam", self.prefix)
    }

    pub(super) fn used_key(&self, fam: &str) -> String {
        format!("{}:{{{fam}}}:used", self.prefix)
    }

    fn user_key(&self, uid: &str) -> String {
        format!("{}:user:{{{uid}}}", self.prefix)
    }

    fn client_key(&self, cid: &str) -> String {
        format!("{}:client:{{{cid}}}", self.prefix)
    }

    fn active_key(&self) -> String {
        format!("{}:active", self.prefix)
    }

    fn stats_key(&self) -> String {
        format!("{}:stats", self.prefix)
    }

    pub(super) fn code_key(&self, hash: &str) -> String {
        format!("{}:code:{{{hash}}}", self.prefix)
    }

    pub(super) fn jti_key(&self, jti: &str) -> String {
        format!("{}:jti:{{{jti}}}", self.prefix)
    }

    /// The marker of a revoked family (same hash slot as the family).
    pub(super) fn sid_revoked_key(&self, fam: &str) -> String {
        format!("{}:sid-revoked:{{{fam}}}", self.prefix)
    }

    async fn run<T: FromRedisValue>(&self, op: &'static str, cmd: Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(err(op, e)),
            Err(_) => Err(err(op, format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Lua,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, StoreError> {
        let build = |by_sha: bool| {
            let mut cmd = ::redis::cmd(if by_sha { "EVALSHA" } else { "EVAL" });
            cmd.arg(if by_sha {
                script.sha.as_str()
            } else {
                script.src
            })
            .arg(keys.len());
            for k in keys {
                cmd.arg(*k);
            }
            for a in args {
                cmd.arg(*a);
            }
            cmd
        };
        let mut conn = self.conn.clone();
        let by_sha = build(true);
        let first = tokio::time::timeout(self.timeout, by_sha.query_async::<T>(&mut conn));
        match first.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.code() == Some("NOSCRIPT") => self.run(op, build(false)).await,
            Ok(Err(e)) => Err(err(op, e)),
            Err(_) => Err(err(op, format!("no answer within {:?}", self.timeout))),
        }
    }

    /// Counters and the active index: best effort after the family write.
    async fn bump(
        &self,
        counters: &[&'static str],
        active: ActiveChange<'_>,
    ) -> Result<(), StoreError> {
        let stats = self.stats_key();
        let mut pipe = ::redis::pipe();
        for c in counters {
            pipe.cmd("HINCRBY").arg(&stats).arg(*c).arg(1).ignore();
        }
        if !counters.is_empty() {
            pipe.cmd("EXPIRE").arg(&stats).arg(STATS_TTL_SECS).ignore();
        }
        match active {
            ActiveChange::None => {}
            ActiveChange::Remove(fam) => {
                pipe.cmd("ZREM").arg(self.active_key()).arg(fam).ignore();
            }
            ActiveChange::Update(fam, idle) => {
                pipe.cmd("ZADD")
                    .arg(self.active_key())
                    .arg("XX")
                    .arg(idle)
                    .arg(fam)
                    .ignore();
            }
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(err("counters", e)),
            Err(_) => Err(err("counters", "timed out")),
        }
    }

    async fn create_inner(
        &self,
        family: NewFamily,
        first: TokenHash,
        now: u64,
    ) -> Result<FamilyRecord, StoreError> {
        family.check(&first)?;
        let rec = FamilyRecord::from_new(&family, now);
        let ttl = rec.absolute_expires.saturating_sub(now).max(1);
        let fields = record_fields(&rec, &first.digest);
        let mut args: Vec<&str> = fields.iter().map(String::as_str).collect();
        let ttl_s = ttl.to_string();
        args.push(&ttl_s);
        let fam = rec.family_id.as_str();
        let created: i64 = self
            .eval(
                "create",
                &self.scripts.create,
                &[&self.fam_key(fam), &self.used_key(fam)],
                &args,
            )
            .await?;
        if created != 1 {
            return Err(StoreError::new("grant store: family id already in use"));
        }
        let idx_ttl = ttl.to_string();
        self.eval::<i64>(
            "index",
            &self.scripts.index_add,
            &[&self.user_key(&rec.user_id)],
            &[fam, &idx_ttl],
        )
        .await?;
        self.eval::<i64>(
            "index",
            &self.scripts.index_add,
            &[&self.client_key(&rec.client_id)],
            &[fam, &idx_ttl],
        )
        .await?;
        // Drop idle-expired entries from the active index while we are here.
        let mut trim = ::redis::cmd("ZREMRANGEBYSCORE");
        trim.arg(self.active_key()).arg("-inf").arg(now);
        self.run::<i64>("active", trim).await?;
        self.eval::<i64>(
            "active",
            &self.scripts.active_add,
            &[&self.active_key()],
            &[
                fam,
                &rec.idle_expires.to_string(),
                &STATS_TTL_SECS.to_string(),
            ],
        )
        .await?;
        self.bump(&["families_created"], ActiveChange::None).await?;
        Ok(rec)
    }

    async fn rotate_inner(
        &self,
        presented: TokenHash,
        client_id: String,
        successor: TokenHash,
        now: u64,
    ) -> Result<RotateOutcome, StoreError> {
        check_successor(&presented, &successor)?;
        let fam = presented.family_id.as_str();
        let reply: Vec<String> = self
            .eval(
                "rotate",
                &self.scripts.rotate,
                &[
                    &self.fam_key(fam),
                    &self.used_key(fam),
                    &self.sid_revoked_key(fam),
                ],
                &[
                    &presented.digest,
                    &client_id,
                    &successor.digest,
                    &now.to_string(),
                    &SID_MARKER_MIN_TTL_SECS.to_string(),
                ],
            )
            .await?;
        let (outcome, newly) = decode_rotate(fam, &reply)?;
        match &outcome {
            RotateOutcome::Rotated(rec) => {
                self.bump(&["rotations"], ActiveChange::Update(fam, rec.idle_expires))
                    .await?;
            }
            RotateOutcome::Reused(_) => {
                let counters: &[&'static str] = if newly {
                    &["reuse_detected", "families_revoked"]
                } else {
                    &["reuse_detected"]
                };
                self.bump(counters, ActiveChange::Remove(fam)).await?;
            }
            _ => {}
        }
        Ok(outcome)
    }

    async fn get_inner(&self, fam: &str) -> Result<Option<FamilyRecord>, StoreError> {
        let mut cmd = ::redis::cmd("HGETALL");
        cmd.arg(self.fam_key(fam));
        let fields: Vec<String> = self.run("get family", cmd).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_record(fam, &fields).map(Some)
    }

    async fn revoke_inner(&self, fam: &str) -> Result<bool, StoreError> {
        let r: i64 = self
            .eval(
                "revoke",
                &self.scripts.revoke,
                &[&self.fam_key(fam), &self.sid_revoked_key(fam)],
                &[&SID_MARKER_MIN_TTL_SECS.to_string()],
            )
            .await?;
        if r == 1 {
            self.bump(&["families_revoked"], ActiveChange::Remove(fam))
                .await?;
        }
        Ok(r == 1)
    }

    async fn list_inner(&self, index_key: String) -> Result<Vec<FamilyRecord>, StoreError> {
        let mut cmd = ::redis::cmd("SMEMBERS");
        cmd.arg(&index_key);
        let ids: Vec<String> = self.run("list", cmd).await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        // One round trip for all the families of the index.
        let mut pipe = ::redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.fam_key(id));
        }
        let mut conn = self.conn.clone();
        let all: Vec<Vec<String>> = if ids.is_empty() {
            Vec::new()
        } else {
            match tokio::time::timeout(self.timeout, pipe.query_async(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(err("list", e)),
                Err(_) => return Err(err("list", "timed out")),
            }
        };
        for (id, fields) in ids.into_iter().zip(all) {
            if fields.is_empty() {
                gone.push(id);
            } else {
                out.push(parse_record(&id, &fields)?);
            }
        }
        if !gone.is_empty() {
            let mut srem = ::redis::cmd("SREM");
            srem.arg(&index_key).arg(&gone);
            self.run::<i64>("list", srem).await?;
        }
        out.sort_by(|a, b| (a.created, &a.family_id).cmp(&(b.created, &b.family_id)));
        Ok(out)
    }

    async fn revoke_all_inner(&self, index_key: String) -> Result<u64, StoreError> {
        let mut n = 0;
        for rec in self.list_inner(index_key).await? {
            if self.revoke_inner(&rec.family_id).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn stats_inner(&self, now: u64) -> Result<GrantStats, StoreError> {
        let mut trim = ::redis::cmd("ZREMRANGEBYSCORE");
        trim.arg(self.active_key()).arg("-inf").arg(now);
        self.run::<i64>("stats", trim).await?;
        let mut card = ::redis::cmd("ZCARD");
        card.arg(self.active_key());
        let active: u64 = self.run("stats", card).await?;
        let mut all = ::redis::cmd("HGETALL");
        all.arg(self.stats_key());
        let m: HashMap<String, u64> = self.run("stats", all).await?;
        let get = |k: &str| m.get(k).copied().unwrap_or(0);
        Ok(GrantStats {
            active_families: active,
            families_created: get("families_created"),
            families_revoked: get("families_revoked"),
            rotations: get("rotations"),
            reuse_detected: get("reuse_detected"),
            code_replays: get("code_replays"),
        })
    }
}

enum ActiveChange<'a> {
    None,
    Remove(&'a str),
    Update(&'a str, u64),
}

fn record_fields(rec: &FamilyRecord, head: &str) -> Vec<String> {
    let mut v = Vec::with_capacity(26);
    let mut put = |k: &str, val: String| {
        v.push(k.to_owned());
        v.push(val);
    };
    put("client", rec.client_id.clone());
    put("user", rec.user_id.clone());
    put("scopes", rec.scopes.join(" "));
    put("auth_time", rec.auth_time.to_string());
    put("created", rec.created.to_string());
    put("last_used", rec.last_used.to_string());
    put("idle_exp", rec.idle_expires.to_string());
    put("abs_exp", rec.absolute_expires.to_string());
    put("idle_ttl", rec.idle_ttl_secs.to_string());
    put("state", rec.state.as_str().to_owned());
    put("gen", rec.generation.to_string());
    put("head", head.to_owned());
    v
}

fn parse_record(fam: &str, flat: &[String]) -> Result<FamilyRecord, StoreError> {
    let m: HashMap<&str, &str> = flat
        .chunks_exact(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let s = |k: &str| {
        m.get(k)
            .map(|v| (*v).to_owned())
            .ok_or_else(|| err("family", format!("field `{k}` missing")))
    };
    let n = |k: &str| -> Result<u64, StoreError> {
        m.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| err("family", format!("field `{k}` missing or not a number")))
    };
    let state = match m.get("state").copied() {
        Some("active") => FamilyState::Active,
        Some("revoked") => FamilyState::Revoked,
        _ => return Err(err("family", "bad state")),
    };
    Ok(FamilyRecord {
        family_id: fam.to_owned(),
        client_id: s("client")?,
        user_id: s("user")?,
        scopes: s("scopes")?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        auth_time: n("auth_time")?,
        created: n("created")?,
        last_used: n("last_used")?,
        idle_expires: n("idle_exp")?,
        absolute_expires: n("abs_exp")?,
        idle_ttl_secs: n("idle_ttl")?,
        state,
        generation: n("gen")?,
    })
}

/// Decodes the `ROTATE` script's reply: the outcome, and for `reused` whether this call
/// revoked the family. A reply of another shape (a hostile or broken Redis) is an error.
fn decode_rotate(fam: &str, reply: &[String]) -> Result<(RotateOutcome, bool), StoreError> {
    let Some(kind) = reply.first() else {
        return Err(err("rotate", "empty reply"));
    };
    let fields = || {
        reply
            .get(2..)
            .filter(|f| !f.is_empty())
            .ok_or_else(|| err("rotate", format!("`{kind}` reply without the family")))
    };
    Ok(match kind.as_str() {
        "rotated" => (RotateOutcome::Rotated(parse_record(fam, fields()?)?), false),
        "reused" => {
            let newly = reply.get(1).is_some_and(|v| v == "1");
            (RotateOutcome::Reused(parse_record(fam, fields()?)?), newly)
        }
        "revoked" => (RotateOutcome::Revoked, false),
        "expired" => (RotateOutcome::Expired, false),
        "wrong_client" => (RotateOutcome::WrongClient, false),
        "not_found" => (RotateOutcome::NotFound, false),
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(err("rotate", format!("unexpected reply `{shown}`")));
        }
    })
}

/// Decodes the `LOOKUP` script's reply (`nil`, or the token's state then the family).
fn decode_lookup(
    fam: &str,
    reply: Option<&[String]>,
) -> Result<Option<(FamilyRecord, TokenState)>, StoreError> {
    let Some((state, fields)) = reply.and_then(<[String]>::split_first) else {
        return Ok(None);
    };
    let state = match state.as_str() {
        "current" => TokenState::Current,
        "used" => TokenState::Used,
        _ => return Err(err("lookup", "unexpected token state")),
    };
    Ok(Some((parse_record(fam, fields)?, state)))
}

/// Decodes the `TAKE_CODE` script's reply.
fn decode_take_code(reply: &[String]) -> Result<CodeOutcome, StoreError> {
    match reply.first().map(String::as_str) {
        Some("taken") => {
            let json = reply.get(1).ok_or_else(|| err("take code", "no record"))?;
            let rec: CodeRecord = serde_json::from_str(json).map_err(|e| err("take code", e))?;
            Ok(CodeOutcome::Taken(rec))
        }
        Some("reused") => {
            let family_id = reply.get(1).filter(|f| !f.is_empty()).cloned();
            Ok(CodeOutcome::Reused { family_id })
        }
        Some("not_found") => Ok(CodeOutcome::NotFound),
        _ => Err(err("take code", "unexpected reply")),
    }
}

impl GrantStore for RedisGrantStore {
    fn create_family(
        &self,
        family: NewFamily,
        first: &TokenHash,
        now: u64,
    ) -> BoxFuture<'static, Result<FamilyRecord, StoreError>> {
        let (this, first) = (self.clone(), first.clone());
        Box::pin(async move { this.create_inner(family, first, now).await })
    }

    fn rotate(
        &self,
        presented: &TokenHash,
        client_id: &str,
        successor: &TokenHash,
        now: u64,
    ) -> BoxFuture<'static, Result<RotateOutcome, StoreError>> {
        let this = self.clone();
        let (p, c, s) = (presented.clone(), client_id.to_owned(), successor.clone());
        Box::pin(async move { this.rotate_inner(p, c, s, now).await })
    }

    fn lookup(
        &self,
        presented: &TokenHash,
        _now: u64,
    ) -> BoxFuture<'static, Result<Option<(FamilyRecord, TokenState)>, StoreError>> {
        let (this, p) = (self.clone(), presented.clone());
        Box::pin(async move {
            let fam = p.family_id.as_str();
            let reply: Option<Vec<String>> = this
                .eval(
                    "lookup",
                    &this.scripts.lookup,
                    &[&this.fam_key(fam), &this.used_key(fam)],
                    &[&p.digest],
                )
                .await?;
            decode_lookup(fam, reply.as_deref())
        })
    }

    fn get_family(
        &self,
        family_id: &str,
        _now: u64,
    ) -> BoxFuture<'static, Result<Option<FamilyRecord>, StoreError>> {
        let (this, fam) = (self.clone(), family_id.to_owned());
        Box::pin(async move { this.get_inner(&fam).await })
    }

    fn revoke_family(
        &self,
        family_id: &str,
        _now: u64,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, fam) = (self.clone(), family_id.to_owned());
        Box::pin(async move { this.revoke_inner(&fam).await })
    }

    fn families_by_user(
        &self,
        user_id: &str,
        _now: u64,
    ) -> BoxFuture<'static, Result<Vec<FamilyRecord>, StoreError>> {
        let (this, key) = (self.clone(), self.user_key(user_id));
        Box::pin(async move { this.list_inner(key).await })
    }

    fn families_by_client(
        &self,
        client_id: &str,
        _now: u64,
    ) -> BoxFuture<'static, Result<Vec<FamilyRecord>, StoreError>> {
        let (this, key) = (self.clone(), self.client_key(client_id));
        Box::pin(async move { this.list_inner(key).await })
    }

    fn revoke_by_user(
        &self,
        user_id: &str,
        _now: u64,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        let (this, key) = (self.clone(), self.user_key(user_id));
        Box::pin(async move { this.revoke_all_inner(key).await })
    }

    fn revoke_by_client(
        &self,
        client_id: &str,
        _now: u64,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        let (this, key) = (self.clone(), self.client_key(client_id));
        Box::pin(async move { this.revoke_all_inner(key).await })
    }

    fn revoke_jti(
        &self,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, key) = (self.clone(), self.jti_key(jti));
        Box::pin(async move {
            if exp <= now {
                return Ok(());
            }
            this.eval::<i64>(
                "revoke jti",
                &this.scripts.revoke_jti,
                &[&key],
                &[&(exp - now).to_string()],
            )
            .await?;
            Ok(())
        })
    }

    fn is_jti_revoked(&self, jti: &str, _now: u64) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, key) = (self.clone(), self.jti_key(jti));
        Box::pin(async move {
            let mut cmd = ::redis::cmd("EXISTS");
            cmd.arg(key);
            let n: i64 = this.run("jti", cmd).await?;
            Ok(n == 1)
        })
    }

    fn put_code(
        &self,
        code_hash: &str,
        record: CodeRecord,
        ttl: Duration,
        _now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, key) = (self.clone(), self.code_key(code_hash));
        Box::pin(async move {
            check_code_ttl(ttl)?;
            let json = serde_json::to_string(&record).map_err(|e| err("put code", e))?;
            let r: i64 = this
                .eval(
                    "put code",
                    &this.scripts.put_code,
                    &[&key],
                    &[&json, &ttl.as_secs().to_string()],
                )
                .await?;
            if r != 1 {
                return Err(StoreError::new(
                    "grant store: authorization code already present",
                ));
            }
            Ok(())
        })
    }

    fn take_code(
        &self,
        code_hash: &str,
        _now: u64,
    ) -> BoxFuture<'static, Result<CodeOutcome, StoreError>> {
        let (this, key) = (self.clone(), self.code_key(code_hash));
        Box::pin(async move {
            let reply: Vec<String> = this
                .eval(
                    "take code",
                    &this.scripts.take_code,
                    &[&key],
                    &[&CODE_TOMBSTONE_TTL.as_secs().to_string()],
                )
                .await?;
            let outcome = decode_take_code(&reply)?;
            if matches!(outcome, CodeOutcome::Reused { .. }) {
                this.bump(&["code_replays"], ActiveChange::None).await?;
            }
            Ok(outcome)
        })
    }

    fn link_code_family(
        &self,
        code_hash: &str,
        family_id: &str,
        _now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, key, fam) = (self.clone(), self.code_key(code_hash), family_id.to_owned());
        Box::pin(async move {
            this.eval::<i64>("link code", &this.scripts.link_code, &[&key], &[&fam])
                .await?;
            Ok(())
        })
    }

    fn stats(&self, now: u64) -> BoxFuture<'static, Result<GrantStats, StoreError>> {
        let this = self.clone();
        Box::pin(async move { this.stats_inner(now).await })
    }

    fn cleanup(&self, _now: u64) -> BoxFuture<'static, Result<CleanupReport, StoreError>> {
        Box::pin(std::future::ready(Ok(CleanupReport {
            store: "redis",
            removed: 0,
            note: Some(
                "redis expires every grant key by its TTL (family, tombstones, codes, jtis, indexes); nothing to remove"
                    .to_owned(),
            ),
        })))
    }
}

// ---------------------------------------------------------------------------------------------
// For `crate::__fuzz` (the `fuzz/` targets) only.

/// A Redis reply from raw items (`\xfe` alone: nil, `\xfd` then digits: an integer, anything
/// else a bulk string), converted as the connection converts it (`FromRedisValue`), then
/// decoded as the store decodes it.
pub(crate) fn fuzz_decode(
    kind: crate::__fuzz::GrantReplyKind,
    fam: &str,
    nil: bool,
    items: &[&[u8]],
) -> Result<crate::__fuzz::GrantReply, StoreError> {
    use crate::__fuzz::{GrantReply, GrantReplyKind};
    use ::redis::Value;
    let value = if nil {
        Value::Nil
    } else {
        Value::Array(
            items
                .iter()
                .map(|b| match b {
                    [0xfe] => Value::Nil,
                    [0xfd, rest @ ..] => std::str::from_utf8(rest)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .map_or(Value::Nil, Value::Int),
                    _ => Value::BulkString(b.to_vec()),
                })
                .collect(),
        )
    };
    let strings = |v: Value| Vec::<String>::from_redis_value(v).map_err(|e| err("reply", e));
    Ok(match kind {
        GrantReplyKind::Family => GrantReply::Family(parse_record(fam, &strings(value)?)?),
        GrantReplyKind::Rotate => {
            let (o, newly) = decode_rotate(fam, &strings(value)?)?;
            GrantReply::Rotate(o, newly)
        }
        GrantReplyKind::Lookup => {
            let reply =
                Option::<Vec<String>>::from_redis_value(value).map_err(|e| err("reply", e))?;
            GrantReply::Lookup(decode_lookup(fam, reply.as_deref())?)
        }
        GrantReplyKind::TakeCode => GrantReply::TakeCode(decode_take_code(&strings(value)?)?),
    })
}

/// The hash fields `create` writes for `rec` (for round trips).
pub(crate) fn fuzz_record_fields(rec: &FamilyRecord, head: &str) -> Vec<String> {
    record_fields(rec, head)
}

/// The `rec` value `put_code` writes.
pub(crate) fn fuzz_code_json(rec: &CodeRecord) -> Result<String, StoreError> {
    serde_json::to_string(rec).map_err(|e| err("put code", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn family_fields() -> Vec<String> {
        let rec = FamilyRecord {
            family_id: "0123456789abcdefABCDEF".into(),
            client_id: "web".into(),
            user_id: "1001".into(),
            scopes: vec!["a".into(), "b".into()],
            auth_time: 5,
            created: 10,
            last_used: 20,
            idle_expires: 30,
            absolute_expires: 40,
            idle_ttl_secs: 10,
            state: FamilyState::Active,
            generation: 2,
        };
        record_fields(&rec, "head")
    }

    // Found while writing the `grant_records` fuzz target (which now drives this decoding): a
    // `rotated`/`reused` reply without the family fields sliced out of bounds (a panic)
    // instead of answering a store error.
    #[test]
    fn short_rotate_replies_are_errors_not_panics() {
        let fam = "0123456789abcdefABCDEF";
        for r in [
            &["rotated"][..],
            &["reused"],
            &["reused", "1"],
            &["rotated", "30"],
        ] {
            let e = decode_rotate(fam, &reply(r)).unwrap_err();
            assert!(e.to_string().contains("without the family"), "{e}");
        }
        assert!(decode_rotate(fam, &[]).is_err());
        let e = decode_rotate(fam, &reply(&["what"])).unwrap_err();
        assert!(e.to_string().contains("unexpected reply `what`"), "{e}");

        let mut full = reply(&["reused", "1"]);
        full.extend(family_fields());
        let (out, newly) = decode_rotate(fam, &full).unwrap();
        assert!(newly);
        assert!(
            matches!(out, RotateOutcome::Reused(ref r) if r.generation == 2 && r.scopes == ["a", "b"])
        );
    }

    #[test]
    fn lookup_replies() {
        let fam = "0123456789abcdefABCDEF";
        assert_eq!(decode_lookup(fam, None).unwrap(), None);
        assert_eq!(decode_lookup(fam, Some(&[])).unwrap(), None);
        let mut r = reply(&["used"]);
        r.extend(family_fields());
        assert_eq!(
            decode_lookup(fam, Some(&r)).unwrap().unwrap().1,
            TokenState::Used
        );
        r[0] = "current".into();
        assert_eq!(
            decode_lookup(fam, Some(&r)).unwrap().unwrap().1,
            TokenState::Current
        );
        // Neither state: an error, not silently "used".
        r[0] = "other".into();
        assert!(decode_lookup(fam, Some(&r)).is_err());
    }

    #[test]
    fn take_code_replies() {
        assert_eq!(
            decode_take_code(&reply(&["not_found"])).unwrap(),
            CodeOutcome::NotFound
        );
        assert_eq!(
            decode_take_code(&reply(&["reused", ""])).unwrap(),
            CodeOutcome::Reused { family_id: None }
        );
        assert!(decode_take_code(&reply(&["taken"])).is_err());
        assert!(decode_take_code(&reply(&["taken", "{}"])).is_err());
        assert!(decode_take_code(&[]).is_err());
    }
}
