//! [`RedisGrantStore`] against a real `redis-server` started on a free port of 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// A real `redis-server` on a free port of 127.0.0.1 (also used by the key store's Redis
/// tests), stopped by PID on drop.
pub(crate) struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// `redis-server` with `extra` arguments (e.g. `--appendonly yes`), data in a fresh dir.
    pub(crate) fn start(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-bearer-grants-{}-{}",
            std::process::id(),
            RefreshToken::new_family().family_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut s = Self {
                port,
                dir: dir.clone(),
                extra: extra.clone(),
                child: None,
            };
            s.spawn();
            if s.wait_ping() {
                return s;
            }
        }
        panic!("redis-server did not answer PING on any of 5 ports");
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&self.dir);
        if !self.extra.iter().any(|a| a == "--appendonly") {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}): the Redis tests need a real server \
                 (`apt-get install redis-server`; ./scripts/test.sh installs it)"
            )
        }));
    }

    fn wait_ping(&mut self) -> bool {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if ping(addr) {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill and start again on the same port and dir.
    fn restart(&mut self) {
        self.stop();
        self.spawn();
        assert!(self.wait_ping(), "redis-server did not come back");
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

const PREFIX: &str = "grants-test";

async fn store(redis: &RedisServer) -> RedisGrantStore {
    RedisGrantStore::connect(&redis.url(), PREFIX)
        .await
        .unwrap()
}

async fn raw(redis: &RedisServer) -> ::redis::aio::ConnectionManager {
    let client = ::redis::Client::open(redis.url()).unwrap();
    ::redis::aio::ConnectionManager::new(client).await.unwrap()
}

async fn keys(conn: &mut ::redis::aio::ConnectionManager) -> Vec<String> {
    ::redis::cmd("KEYS")
        .arg(format!("{PREFIX}:*"))
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_behaviour_two_instances() {
    let redis = RedisServer::start(&[]);
    let one: Arc<dyn GrantStore> = Arc::new(store(&redis).await);
    let two: Arc<dyn GrantStore> = Arc::new(store(&redis).await);
    behaviour(one.clone()).await;
    // The acceptance case: 50 concurrent rotations spread over two instances (two connections).
    concurrent_rotations(one.clone(), two.clone()).await;
    codes_race(one.clone(), two.clone()).await;

    // Every key under the prefix has a TTL (TTL -1 = none, -2 = gone meanwhile).
    let mut conn = raw(&redis).await;
    let all = keys(&mut conn).await;
    assert!(all.len() > 20, "{all:?}");
    for k in &all {
        let ttl: i64 = ::redis::cmd("TTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl >= 0 || ttl == -2, "{k} has no TTL ({ttl})");
    }
    // Family keys carry the family as a Cluster hash tag: one slot per family.
    assert!(
        all.iter()
            .any(|k| k.starts_with(&format!("{PREFIX}:{{")) && k.ends_with("}:fam"))
    );
    assert!(all.iter().any(|k| k.ends_with("}:used")));
    assert!(all.contains(&format!("{PREFIX}:stats")));
    assert!(all.contains(&format!("{PREFIX}:active")));
}

#[tokio::test]
async fn redis_stores_only_hashes() {
    let redis = RedisServer::start(&[]);
    let s = store(&redis).await;
    let t0 = now();
    let a = start(&s, t0).await;
    let b = a.successor();
    assert!(
        s.rotate(&a.hash(), "web", &b.hash(), t0 + 1)
            .await
            .unwrap()
            .is_rotated()
    );
    let mut conn = raw(&redis).await;
    let fam = s.fam_key(a.family_id());
    let fields: Vec<String> = ::redis::cmd("HGETALL")
        .arg(&fam)
        .query_async(&mut conn)
        .await
        .unwrap();
    let used: Vec<String> = ::redis::cmd("SMEMBERS")
        .arg(s.used_key(a.family_id()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let dump = format!("{fields:?}{used:?}");
    for t in [&a, &b] {
        let secret = &t.as_str()[23..];
        assert!(!dump.contains(secret), "token stored in clear");
    }
    assert!(dump.contains(b.hash().digest()));
    assert_eq!(used, [a.hash().digest().to_owned()]);
    // Code and jti keys have their TTLs: the code ≤ 60 s, then the 10 min tombstone.
    let code = hash_secret("code");
    s.put_code(
        &code,
        CodeRecord::new("web", "1", "https://x/cb"),
        Duration::from_secs(30),
        t0,
    )
    .await
    .unwrap();
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(s.code_key(&code))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=30).contains(&ttl), "{ttl}");
    assert!(matches!(
        s.take_code(&code, t0).await.unwrap(),
        CodeOutcome::Taken(_)
    ));
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(s.code_key(&code))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 500 && ttl <= 600, "{ttl}");
    s.revoke_jti("j1", t0 + 120, t0).await.unwrap();
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(s.jti_key("j1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((110..=120).contains(&ttl), "{ttl}");
    // A second revocation with an earlier exp never shortens it.
    s.revoke_jti("j1", t0 + 10, t0).await.unwrap();
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(s.jti_key("j1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl >= 110, "{ttl}");
}

#[tokio::test]
async fn redis_ttls_really_expire() {
    let redis = RedisServer::start(&[]);
    let s = store(&redis).await;
    let t0 = now();
    s.revoke_jti("short", t0 + 1, t0).await.unwrap();
    let code = hash_secret("c");
    s.put_code(
        &code,
        CodeRecord::new("web", "1", "https://x/cb"),
        Duration::from_secs(1),
        t0,
    )
    .await
    .unwrap();
    assert!(s.is_jti_revoked("short", t0).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!s.is_jti_revoked("short", t0 + 2).await.unwrap());
    assert_eq!(
        s.take_code(&code, t0 + 2).await.unwrap(),
        CodeOutcome::NotFound
    );
}

#[tokio::test]
async fn redis_restart_with_aof_keeps_grants() {
    let mut redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let s = store(&redis).await;
    let report = s.check_persistence().await;
    assert_eq!(report.appendonly, Some(true));
    let t0 = now();
    let a = start(&s, t0).await;
    let b = a.successor();
    assert!(
        s.rotate(&a.hash(), "web", &b.hash(), t0 + 1)
            .await
            .unwrap()
            .is_rotated()
    );
    redis.restart();
    // The same store object reconnects (ConnectionManager); scripts are re-sent (NOSCRIPT).
    let c = b.successor();
    let mut out = Err(StoreError::new("not tried"));
    for _ in 0..20 {
        out = s.rotate(&b.hash(), "web", &c.hash(), t0 + 2).await;
        if out.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(out.unwrap().is_rotated());
    // The tombstone survived too: replaying `a` is still detected.
    let out = s
        .rotate(&a.hash(), "web", &c.successor().hash(), t0 + 3)
        .await
        .unwrap();
    assert!(matches!(out, RotateOutcome::Reused(_)), "{out:?}");
}

#[tokio::test]
async fn redis_restart_without_persistence_is_not_found_not_error() {
    let mut redis = RedisServer::start(&[]);
    let s = store(&redis).await;
    let report = s.check_persistence().await;
    assert_eq!(report.appendonly, Some(false));
    assert!(
        report.warnings.iter().any(|w| w.contains("appendonly no")),
        "{report:?}"
    );
    let t0 = now();
    let a = start(&s, t0).await;
    redis.restart();
    let b = a.successor();
    let mut out = Err(StoreError::new("not tried"));
    for _ in 0..20 {
        out = s.rotate(&a.hash(), "web", &b.hash(), t0 + 1).await;
        if out.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The grant is gone: NotFound (→ invalid_grant, log in again), never an error (→ 500).
    assert_eq!(out.unwrap(), RotateOutcome::NotFound);
    assert!(s.lookup(&a.hash(), t0 + 1).await.unwrap().is_none());
    assert!(s.families_by_user("1001", t0 + 1).await.unwrap().is_empty());
    assert_eq!(s.stats(t0 + 1).await.unwrap(), GrantStats::default());
}

#[tokio::test]
async fn redis_persistence_check_warns_about_eviction_and_tolerates_disabled_config() {
    // AOF on, a memory limit and an evicting policy.
    let redis = RedisServer::start(&[
        "--appendonly",
        "yes",
        "--maxmemory",
        "100mb",
        "--maxmemory-policy",
        "volatile-lru",
    ]);
    let report = store(&redis).await.check_persistence().await;
    assert_eq!(report.appendonly, Some(true));
    assert_eq!(report.maxmemory_policy.as_deref(), Some("volatile-lru"));
    assert_eq!(report.warnings.len(), 1, "{report:?}");
    assert!(report.warnings[0].contains("volatile-lru"));
    drop(redis);

    // The safe setup: no warning.
    let redis = RedisServer::start(&["--appendonly", "yes", "--maxmemory-policy", "noeviction"]);
    let report = store(&redis).await.check_persistence().await;
    assert!(report.warnings.is_empty(), "{report:?}");
    drop(redis);

    // No limit: nothing is ever evicted, whatever the policy says.
    let redis = RedisServer::start(&["--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"]);
    let report = store(&redis).await.check_persistence().await;
    assert_eq!(report.maxmemory, Some(0));
    assert!(report.warnings.is_empty(), "{report:?}");
    drop(redis);

    // CONFIG renamed away (managed Redis): connect works, the check reports nothing.
    let redis = RedisServer::start(&["--rename-command", "CONFIG", "\"\""]);
    let s = store(&redis).await;
    let report = s.check_persistence().await;
    assert_eq!(report, PersistenceReport::default());
    // And the store works.
    let t0 = now();
    let a = start(&s, t0).await;
    assert!(
        s.rotate(&a.hash(), "web", &a.successor().hash(), t0)
            .await
            .unwrap()
            .is_rotated()
    );
}

#[tokio::test]
async fn redis_scripts_reloaded_after_flush_and_stats_counted() {
    let redis = RedisServer::start(&[]);
    let s = store(&redis).await;
    let t0 = now();
    let a = start(&s, t0).await;
    let mut conn = raw(&redis).await;
    let _: () = ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let b = a.successor();
    assert!(
        s.rotate(&a.hash(), "web", &b.hash(), t0 + 1)
            .await
            .unwrap()
            .is_rotated()
    );
    let st = s.stats(t0 + 1).await.unwrap();
    assert_eq!(
        (st.active_families, st.families_created, st.rotations),
        (1, 1, 1)
    );
    // Idle expiry (100 s) leaves the active count without any scan.
    assert_eq!(s.stats(t0 + 1 + 100).await.unwrap().active_families, 0);
    assert!(RedisGrantStore::from_manager(s.connection(), "bad{prefix").is_err());
    assert!(RedisGrantStore::from_manager(s.connection(), "").is_err());
    assert!(RedisGrantStore::connect("http://nope", "p").await.is_err());
}

#[tokio::test]
async fn redis_unreachable_is_an_error_not_a_verdict() {
    let mut redis = RedisServer::start(&[]);
    let s = store(&redis).await.with_timeout(Duration::from_millis(300));
    let t0 = now();
    let a = start(&s, t0).await;
    redis.stop();
    // Redis down: an error (→ 500 / server_error), never NotFound (which would log users out
    // on a blip) and never Rotated.
    let out = s
        .rotate(&a.hash(), "web", &a.successor().hash(), t0 + 1)
        .await;
    assert!(out.is_err(), "{out:?}");
    assert!(s.is_jti_revoked("x", t0).await.is_err());
}

#[tokio::test]
async fn redis_indexes_pruned_when_a_family_is_gone() {
    let redis = RedisServer::start(&[]);
    let s = store(&redis).await;
    let t0 = now();
    let a = start(&s, t0).await;
    let b = start(&s, t0).await;
    assert_eq!(s.families_by_user("1001", t0).await.unwrap().len(), 2);
    // The family hash vanishes (evicted, expired): the index entry goes at the next listing.
    let mut conn = raw(&redis).await;
    let _: i64 = ::redis::cmd("DEL")
        .arg(s.fam_key(a.family_id()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let left = s.families_by_user("1001", t0).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].family_id, b.family_id());
    let members: Vec<String> = ::redis::cmd("SMEMBERS")
        .arg(format!("{PREFIX}:user:{{1001}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, [b.family_id().to_owned()]);
    assert_eq!(s.revoke_by_user("1001", t0).await.unwrap(), 1);
}
