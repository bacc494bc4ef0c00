use super::*;

use crate::clock::ManualClock;
use crate::jwks::KeySet;
use crate::signing::thumbprint;
use crate::verify::{IssuerConfig, Verifier};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const LEAD: u64 = 900;
const GRACE: u64 = 3600;
const TICK: u64 = 30;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let mut rnd = [0u8; 8];
        SystemRandom::new().fill(&mut rnd).unwrap();
        let path = std::env::temp_dir().join(format!(
            "tower-bearer-keys-{}-{}",
            std::process::id(),
            URL_SAFE_NO_PAD.encode(rnd)
        ));
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn secret() -> Secret {
    Secret::new("test-only-issuer-key-secret")
}

fn opts(alg: Algorithm, clock: &ManualClock) -> KeyOptions {
    KeyOptions::default()
        .with_algorithm(alg)
        .with_rotate_after(Duration::from_secs(DAY))
        .with_publish_lead(Duration::from_secs(LEAD))
        .with_retire_grace(Duration::from_secs(GRACE))
        .with_tick_interval(Duration::from_secs(TICK))
        .with_clock(Arc::new(clock.clone()))
}

fn dir_opts(alg: Algorithm, clock: &ManualClock, dir: &TempDir) -> KeyOptions {
    opts(alg, clock).with_key_dir(&dir.0, secret())
}

fn states(keys: &KeyManager) -> Vec<(String, KeyState)> {
    keys.states()
        .into_iter()
        .map(|k| (k.kid, k.state))
        .collect()
}

fn jwks_kids(keys: &KeyManager) -> Vec<String> {
    let jwks: serde_json::Value = serde_json::from_str(&keys.jwks_json()).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn key_files(dir: &TempDir) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn make_verifier(jwks: &str, alg: Algorithm, clock: &ManualClock) -> Verifier {
    let keys = KeySet::from_jwks(jwks.as_bytes(), &[alg]).unwrap();
    Verifier::builder()
        .issuer(IssuerConfig::static_keys("https://issuer.test", keys))
        .audience("svc")
        .algorithms([alg])
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn token(keys: &KeyManager, clock: &ManualClock) -> String {
    let now = clock.now_unix();
    keys.signing_key()
        .sign(&serde_json::json!({
            "iss": "https://issuer.test", "aud": "svc", "sub": "client",
            "iat": now, "exp": now + 300,
        }))
        .unwrap()
}

use crate::clock::Clock as _;

#[tokio::test]
async fn states_follow_the_clock() {
    let clock = ManualClock::new(T0);
    let keys = KeyManager::open(opts(Algorithm::EdDSA, &clock))
        .await
        .unwrap();
    let first = keys.signing_key().kid().to_owned();
    assert_eq!(states(&keys), [(first.clone(), KeyState::Active)]);

    // One second before the publish point: nothing new.
    clock.set(T0 + DAY - LEAD - 1);
    keys.tick().await.unwrap();
    assert_eq!(keys.states().len(), 1);

    // Published: in the JWKS, not signing.
    clock.set(T0 + DAY - LEAD);
    keys.tick().await.unwrap();
    let second = keys.states()[1].kid.clone();
    assert_eq!(
        states(&keys),
        [
            (first.clone(), KeyState::Active),
            (second.clone(), KeyState::Published)
        ]
    );
    let info = &keys.states()[1];
    assert_eq!(
        (info.published_at, info.active_at),
        (T0 + DAY - LEAD, T0 + DAY)
    );
    assert_eq!(keys.signing_key().kid(), first);
    assert_eq!(jwks_kids(&keys), [first.clone(), second.clone()]);
    assert!(keys.verification_key(&second).is_some());
    keys.tick().await.unwrap(); // idempotent
    assert_eq!(keys.states().len(), 2);

    // Active at exactly rotate_after; the first key retired, still published.
    clock.set(T0 + DAY - 1);
    keys.tick().await.unwrap();
    assert_eq!(keys.signing_key().kid(), first);
    clock.set(T0 + DAY);
    keys.tick().await.unwrap();
    assert_eq!(keys.signing_key().kid(), second);
    assert_eq!(
        states(&keys),
        [
            (first.clone(), KeyState::Retired),
            (second.clone(), KeyState::Active)
        ]
    );
    let remove_at = T0 + DAY + GRACE + TICK;
    assert_eq!(keys.states()[0].retired_at, Some(T0 + DAY));
    assert_eq!(keys.states()[0].remove_at, Some(remove_at));
    assert_eq!(jwks_kids(&keys), [second.clone(), first.clone()]);

    // Removed after the grace (plus one tick interval).
    clock.set(remove_at - 1);
    keys.tick().await.unwrap();
    assert!(jwks_kids(&keys).contains(&first));
    clock.set(remove_at);
    keys.tick().await.unwrap();
    assert_eq!(states(&keys), [(second.clone(), KeyState::Active)]);
    assert_eq!(jwks_kids(&keys), [second]);
    assert!(keys.verification_key(&first).is_none());

    // The next cycle starts from the second key's activation.
    clock.set(T0 + 2 * DAY - LEAD);
    keys.tick().await.unwrap();
    assert_eq!(keys.states().len(), 2);
    assert_eq!(keys.states()[1].active_at, T0 + 2 * DAY);
}

#[tokio::test]
async fn a_late_tick_still_keeps_the_publish_lead() {
    let clock = ManualClock::new(T0);
    let keys = KeyManager::open(opts(Algorithm::EdDSA, &clock))
        .await
        .unwrap();
    // The process was down past the rotation point: the new key still waits the full lead.
    clock.set(T0 + 3 * DAY);
    keys.tick().await.unwrap();
    let info = &keys.states()[1];
    assert_eq!(info.state, KeyState::Published);
    assert_eq!(info.active_at, T0 + 3 * DAY + LEAD);
}

#[tokio::test]
async fn forced_and_emergency_rotation() {
    let clock = ManualClock::new(T0);
    let keys = KeyManager::open(opts(Algorithm::ES256, &clock))
        .await
        .unwrap();
    let first = keys.signing_key().kid().to_owned();

    // rotate(): published now, active after the lead; a second call adds nothing.
    clock.advance(Duration::from_secs(10));
    keys.rotate().await.unwrap();
    keys.rotate().await.unwrap();
    let second = keys.states()[1].kid.clone();
    assert_eq!(keys.states().len(), 2);
    assert_eq!(keys.states()[1].active_at, T0 + 10 + LEAD);
    assert_eq!(keys.signing_key().kid(), first);
    clock.advance(Duration::from_secs(LEAD));
    keys.tick().await.unwrap();
    assert_eq!(keys.signing_key().kid(), second);

    // rotate_now() + remove(): the compromised key leaves the JWKS at once.
    keys.rotate_now().await.unwrap();
    let third = keys.signing_key().kid().to_owned();
    assert_ne!(third, second);
    assert!(jwks_kids(&keys).contains(&second));
    let err = keys.remove(&third).await.unwrap_err();
    assert!(err.to_string().contains("rotate_now"), "{err}");
    keys.remove(&second).await.unwrap();
    keys.remove("no-such-kid").await.unwrap();
    assert_eq!(jwks_kids(&keys), [third.clone(), first.clone()]);
    assert_eq!(keys.signing_key().kid(), third);
}

#[tokio::test]
async fn changing_the_algorithm_rotates_with_the_lead() {
    let clock = ManualClock::new(T0);
    let dir = TempDir::new();
    let keys = KeyManager::open(dir_opts(Algorithm::RS256, &clock, &dir))
        .await
        .unwrap();
    let rsa = keys.signing_key().kid().to_owned();
    drop(keys);
    clock.advance(Duration::from_secs(60));
    let keys = KeyManager::open(dir_opts(Algorithm::EdDSA, &clock, &dir))
        .await
        .unwrap();
    assert_eq!(
        keys.signing_key().kid(),
        rsa,
        "the RSA key keeps signing meanwhile"
    );
    assert_eq!(keys.states()[1].alg, Algorithm::EdDSA);
    assert_eq!(keys.states()[1].active_at, T0 + 60 + LEAD);
    clock.advance(Duration::from_secs(LEAD));
    keys.tick().await.unwrap();
    assert_eq!(keys.signing_key().algorithm(), Algorithm::EdDSA);
}

/// The JWKS has exactly the public members, with `kid` = RFC 7638 thumbprint, for every
/// algorithm and every state, and never a private member.
#[tokio::test]
async fn jwks_members_and_kids() {
    for (alg, kty, members) in [
        (
            Algorithm::RS256,
            "RSA",
            &["alg", "e", "kid", "kty", "n", "use"][..],
        ),
        (
            Algorithm::PS256,
            "RSA",
            &["alg", "e", "kid", "kty", "n", "use"][..],
        ),
        (
            Algorithm::ES256,
            "EC",
            &["alg", "crv", "kid", "kty", "use", "x", "y"][..],
        ),
        (
            Algorithm::EdDSA,
            "OKP",
            &["alg", "crv", "kid", "kty", "use", "x"][..],
        ),
    ] {
        let clock = ManualClock::new(T0);
        let keys = KeyManager::open(opts(alg, &clock)).await.unwrap();
        keys.rotate().await.unwrap();
        clock.advance(Duration::from_secs(LEAD));
        keys.tick().await.unwrap();
        keys.rotate().await.unwrap(); // retired + active + published
        let jwks: serde_json::Value = serde_json::from_str(&keys.jwks_json()).unwrap();
        let list = jwks["keys"].as_array().unwrap();
        assert_eq!(list.len(), 3, "{alg}");
        for jwk in list {
            let obj = jwk.as_object().unwrap();
            let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
            names.sort_unstable();
            assert_eq!(names, members, "{alg}");
            for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
                assert!(!obj.contains_key(private), "{alg}: `{private}` in the JWKS");
            }
            assert_eq!(obj["kty"], kty);
            assert_eq!(obj["alg"], alg.as_str());
            assert_eq!(obj["use"], "sig");
            assert_eq!(obj["kid"].as_str().unwrap(), thumbprint(obj));
        }
        assert_eq!(list[0]["kid"], keys.signing_key().kid());
        // The document a verifier builds its key set from.
        assert_eq!(
            KeySet::from_jwks(keys.jwks_json().as_bytes(), &[alg])
                .unwrap()
                .len(),
            3
        );
    }
}

#[tokio::test]
async fn restart_with_key_dir_keeps_kids_and_old_tokens_verify() {
    let clock = ManualClock::new(T0);
    let dir = TempDir::new();
    let keys = KeyManager::open(dir_opts(Algorithm::RS256, &clock, &dir))
        .await
        .unwrap();
    let kid = keys.signing_key().kid().to_owned();
    let old_token = token(&keys, &clock);
    let jwks_before = keys.jwks_json();
    drop(keys);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let files = key_files(&dir);
        assert_eq!(files.len(), 1);
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&dir.0).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No private key material in clear.
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(!text.contains("PRIVATE") && text.contains(&kid));
    }

    clock.advance(Duration::from_secs(60));
    let keys = KeyManager::open(dir_opts(Algorithm::RS256, &clock, &dir))
        .await
        .unwrap();
    assert_eq!(keys.signing_key().kid(), kid);
    assert_eq!(keys.jwks_json(), jwks_before);
    let verifier = make_verifier(&keys.jwks_json(), Algorithm::RS256, &clock);
    verifier.verify(&old_token).await.unwrap();
    verifier.verify(&token(&keys, &clock)).await.unwrap();

    // Across a rotation and a restart, the old token still verifies while the key is retired.
    keys.rotate().await.unwrap();
    clock.advance(Duration::from_secs(LEAD));
    keys.tick().await.unwrap();
    drop(keys);
    let keys = KeyManager::open(dir_opts(Algorithm::RS256, &clock, &dir))
        .await
        .unwrap();
    assert_ne!(keys.signing_key().kid(), kid);
    let verifier = make_verifier(&keys.jwks_json(), Algorithm::RS256, &clock);
    verifier.verify(&token(&keys, &clock)).await.unwrap();
    let clock2 = ManualClock::new(T0 + 100);
    let old_verifier = make_verifier(&keys.jwks_json(), Algorithm::RS256, &clock2);
    old_verifier.verify(&old_token).await.unwrap();
    assert_eq!(key_files(&dir).len(), 2);
}

#[tokio::test]
async fn two_instances_on_one_dir_converge() {
    let clock = ManualClock::new(T0);
    let dir = TempDir::new();
    // Both start at once on an empty directory: one first key, not two.
    let (a, b) = tokio::join!(
        KeyManager::open(dir_opts(Algorithm::EdDSA, &clock, &dir)),
        KeyManager::open(dir_opts(Algorithm::EdDSA, &clock, &dir)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.signing_key().kid(), b.signing_key().kid());
    assert_eq!(key_files(&dir).len(), 1);

    // A rotation on one is picked up by the other's next tick.
    a.rotate().await.unwrap();
    b.tick().await.unwrap();
    assert_eq!(a.jwks_json(), b.jwks_json());
    assert_eq!(a.states(), b.states());
    clock.advance(Duration::from_secs(LEAD));
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    ra.unwrap();
    rb.unwrap();
    assert_eq!(a.signing_key().kid(), b.signing_key().kid());

    // Both tick at the same due time: one new key, not two.
    clock.set(T0 + DAY);
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    ra.unwrap();
    rb.unwrap();
    a.tick().await.unwrap();
    assert_eq!(a.states(), b.states());
    assert_eq!(
        a.states().iter().map(|k| k.state).collect::<Vec<_>>(),
        [KeyState::Active, KeyState::Published]
    );
    assert_eq!(
        key_files(&dir).len(),
        2,
        "the first key was removed after its grace"
    );
    clock.advance(Duration::from_secs(LEAD));
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    ra.unwrap();
    rb.unwrap();
    assert_eq!(a.signing_key().kid(), b.signing_key().kid());
    assert_eq!(a.jwks_json(), b.jwks_json());

    // Emergency removal on one disappears from the other.
    let old = a.states()[0].kid.clone();
    a.remove(&old).await.unwrap();
    b.tick().await.unwrap();
    assert!(!b.jwks_json().contains(&old));
    assert_eq!(a.states(), b.states());
}

#[tokio::test]
async fn wrong_secret_is_a_config_error_naming_the_file() {
    let clock = ManualClock::new(T0);
    let dir = TempDir::new();
    let keys = KeyManager::open(dir_opts(Algorithm::ES256, &clock, &dir))
        .await
        .unwrap();
    drop(keys);
    let file = key_files(&dir).remove(0);
    let wrong = opts(Algorithm::ES256, &clock)
        .with_key_dir(&dir.0, Secret::new("another-secret-of-enough-length"));
    let err = KeyManager::open(wrong).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains("ISSUER_KEY_SECRET"), "{msg}");
    // No new key was made.
    assert_eq!(key_files(&dir).len(), 1);
}

#[tokio::test]
async fn missing_or_short_secret_is_refused() {
    let clock = ManualClock::new(T0);
    let mut no_secret = opts(Algorithm::EdDSA, &clock);
    no_secret.key_dir = Some(std::env::temp_dir().join("never-created"));
    let err = KeyManager::open(no_secret).await.unwrap_err();
    assert!(matches!(err, ConfigError::Missing(m) if m.contains("ISSUER_KEY_SECRET")));
    let short = opts(Algorithm::EdDSA, &clock).with_key_dir("/nonexistent", Secret::new("short"));
    let err = KeyManager::open(short).await.unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            name: "ISSUER_KEY_SECRET",
            ..
        }
    ));
    let lead = opts(Algorithm::EdDSA, &clock).with_publish_lead(Duration::from_secs(10));
    assert!(matches!(
        KeyManager::open(lead).await.unwrap_err(),
        ConfigError::Invalid {
            name: "publish_lead",
            ..
        }
    ));
    let alg = opts(Algorithm::HS256, &clock);
    assert!(KeyManager::open(alg).await.is_err());
}

#[tokio::test]
async fn tampering_is_detected() {
    let clock = ManualClock::new(T0);
    let dir = TempDir::new();
    drop(
        KeyManager::open(dir_opts(Algorithm::EdDSA, &clock, &dir))
            .await
            .unwrap(),
    );
    let file = key_files(&dir).remove(0);
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();

    let mut edits: Vec<(&str, serde_json::Value)> = Vec::new();
    // One bit of the ciphertext.
    let mut ct = URL_SAFE_NO_PAD
        .decode(original["ciphertext"].as_str().unwrap())
        .unwrap();
    ct[10] ^= 1;
    edits.push(("ciphertext", serde_json::json!(URL_SAFE_NO_PAD.encode(&ct))));
    // The schedule (authenticated as associated data).
    edits.push(("active_at", serde_json::json!(T0 + 1)));
    edits.push(("seq", serde_json::json!(99)));
    // The algorithm label.
    edits.push(("alg", serde_json::json!("ES256")));
    for (member, value) in edits {
        let mut edited = original.clone();
        edited[member] = value;
        std::fs::write(&file, serde_json::to_vec(&edited).unwrap()).unwrap();
        let err = KeyManager::open(dir_opts(Algorithm::EdDSA, &clock, &dir))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&file.display().to_string()), "{member}: {msg}");
        assert!(msg.contains("cannot decrypt"), "{member}: {msg}");
        assert_eq!(key_files(&dir).len(), 1, "{member}: no new key");
    }
    // A raw byte flip that breaks the JSON is an error too, never a new key.
    let mut bytes = serde_json::to_vec(&original).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let err = KeyManager::open(dir_opts(Algorithm::EdDSA, &clock, &dir))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&file.display().to_string()));
    // Restored, it loads again.
    std::fs::write(&file, serde_json::to_vec(&original).unwrap()).unwrap();
    KeyManager::open(dir_opts(Algorithm::EdDSA, &clock, &dir))
        .await
        .unwrap();
}

/// An imported key (PEM or JWK) keeps its thumbprint `kid`, signs at once, and survives a
/// restart; a migrated key keeps its foreign `kid`.
#[tokio::test]
async fn imported_keys() {
    let clock = ManualClock::new(T0);
    let dir = TempDir::new();
    let keys = KeyManager::open(dir_opts(Algorithm::RS256, &clock, &dir))
        .await
        .unwrap();
    let original = SigningKey::generate(Algorithm::ES256).unwrap();
    let from_pem =
        SigningKey::from_pem(Algorithm::ES256, &original.to_pkcs8_pem().unwrap()).unwrap();
    assert_eq!(
        from_pem.kid(),
        thumbprint(original.public_jwk().as_object().unwrap())
    );
    clock.advance(Duration::from_secs(5));
    keys.import(from_pem).await.unwrap();
    assert_eq!(keys.signing_key().kid(), original.kid());

    let migrated = SigningKey::from_jwk(
        &SigningKey::generate(Algorithm::EdDSA)
            .unwrap()
            .to_private_jwk()
            .unwrap(),
    )
    .unwrap()
    .with_kid("5f0c9a4e-spring-uuid");
    clock.advance(Duration::from_secs(5));
    keys.import(migrated).await.unwrap();
    assert_eq!(keys.signing_key().kid(), "5f0c9a4e-spring-uuid");
    drop(keys);
    let keys = KeyManager::open(dir_opts(Algorithm::EdDSA, &clock, &dir))
        .await
        .unwrap();
    assert_eq!(keys.signing_key().kid(), "5f0c9a4e-spring-uuid");
    assert_eq!(jwks_kids(&keys).len(), 3);
    let verifier = make_verifier(&keys.jwks_json(), Algorithm::EdDSA, &clock);
    verifier.verify(&token(&keys, &clock)).await.unwrap();
}

#[tokio::test]
async fn from_keys_keeps_the_key_in_memory_and_rotates() {
    let clock = ManualClock::new(T0);
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let kid = key.kid().to_owned();
    let keys = KeyManager::from_keys(key, opts(Algorithm::EdDSA, &clock));
    assert_eq!(keys.signing_key().kid(), kid);
    clock.set(T0 + DAY);
    keys.tick().await.unwrap();
    clock.set(T0 + DAY + LEAD);
    keys.tick().await.unwrap();
    assert_ne!(keys.signing_key().kid(), kid);
    assert!(jwks_kids(&keys).contains(&kid));
}

#[tokio::test]
async fn spawn_rotation_ticks_in_the_background() {
    let clock = ManualClock::new(T0);
    let keys =
        KeyManager::open(opts(Algorithm::EdDSA, &clock).with_tick_interval(Duration::from_secs(1)))
            .await
            .unwrap();
    let driver = keys.spawn_rotation();
    clock.set(T0 + DAY);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while keys.states().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no tick within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keys.states()[1].state, KeyState::Published);
    drop(keys);
    tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("the driver ends with the manager")
        .unwrap();
}

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use crate::issuer::store::tests::redis_server::RedisServer;

    async fn conn(redis: &RedisServer) -> ::redis::aio::ConnectionManager {
        let client = ::redis::Client::open(redis.url()).unwrap();
        ::redis::aio::ConnectionManager::new(client).await.unwrap()
    }

    async fn redis_opts(redis: &RedisServer, clock: &ManualClock, secret: &str) -> KeyOptions {
        opts(Algorithm::ES256, clock).with_redis(conn(redis).await, "t", Secret::new(secret))
    }

    const HASH: &str = "t:issuer:signing-keys";

    #[tokio::test]
    async fn replicas_share_keys_through_redis() {
        let redis = RedisServer::start(&[]);
        let clock = ManualClock::new(T0);
        let secret = "test-only-redis-key-secret";
        let (a, b) = tokio::join!(
            async { KeyManager::open(redis_opts(&redis, &clock, secret).await).await },
            async { KeyManager::open(redis_opts(&redis, &clock, secret).await).await },
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.signing_key().kid(), b.signing_key().kid());
        let mut raw = conn(&redis).await;
        let fields: Vec<String> = ::redis::cmd("HKEYS")
            .arg(HASH)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(fields.len(), 1);
        let token = token(&a, &clock);

        // Rotation on one, seen by the other; a restart keeps the kids.
        a.rotate().await.unwrap();
        b.tick().await.unwrap();
        assert_eq!(a.jwks_json(), b.jwks_json());
        clock.advance(Duration::from_secs(LEAD));
        drop(b);
        let b = KeyManager::open(redis_opts(&redis, &clock, secret).await)
            .await
            .unwrap();
        a.tick().await.unwrap();
        assert_eq!(a.signing_key().kid(), b.signing_key().kid());
        assert_eq!(a.jwks_json(), b.jwks_json());
        let at_issue = ManualClock::new(T0 + 10);
        make_verifier(&b.jwks_json(), Algorithm::ES256, &at_issue)
            .verify(&token)
            .await
            .unwrap();
        // The lock is released after every change.
        let lock: Option<String> = ::redis::cmd("GET")
            .arg(format!("{HASH}:lock"))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(lock, None);

        // Wrong secret: an error naming the record, no new key.
        let err = KeyManager::open(redis_opts(&redis, &clock, "another-secret-long-enough").await)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(HASH), "{err}");
        assert!(err.to_string().contains("ISSUER_KEY_SECRET"), "{err}");

        // A modified record is refused too.
        let name = fields[0].clone();
        let record: Vec<u8> = ::redis::cmd("HGET")
            .arg(HASH)
            .arg(&name)
            .query_async(&mut raw)
            .await
            .unwrap();
        let mut edited: serde_json::Value = serde_json::from_slice(&record).unwrap();
        edited["published_at"] = serde_json::json!(1);
        let _: i64 = ::redis::cmd("HSET")
            .arg(HASH)
            .arg(&name)
            .arg(serde_json::to_vec(&edited).unwrap())
            .query_async(&mut raw)
            .await
            .unwrap();
        let err = KeyManager::open(redis_opts(&redis, &clock, secret).await)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot decrypt"), "{err}");
        let fields: Vec<String> = ::redis::cmd("HKEYS")
            .arg(HASH)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(fields.len(), 2);
    }

    #[tokio::test]
    async fn redis_and_key_dir_are_exclusive() {
        let redis = RedisServer::start(&[]);
        let clock = ManualClock::new(T0);
        let dir = TempDir::new();
        let both = redis_opts(&redis, &clock, "test-only-redis-key-secret")
            .await
            .with_key_dir(&dir.0, secret());
        assert!(matches!(
            KeyManager::open(both).await.unwrap_err(),
            ConfigError::Invalid {
                name: "signing.key-dir",
                ..
            }
        ));
    }
}
