//! Behaviour of every [`GrantStore`], written once over the trait and run against
//! [`MemoryGrantStore`] and (feature `redis`) [`RedisGrantStore`] on a real `redis-server`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn family(t: &RefreshToken, client: &str, user: &str, idle: u64, abs: u64) -> NewFamily {
    NewFamily::new(t.family_id(), client, user)
        .with_scopes(["orders.read", "profile"])
        .with_auth_time(1_700_000_000)
        .with_lifetimes(Duration::from_secs(idle), Duration::from_secs(abs))
}

async fn start(store: &dyn GrantStore, t0: u64) -> RefreshToken {
    let first = RefreshToken::new_family();
    store
        .create_family(family(&first, "web", "1001", 100, 1000), &first.hash(), t0)
        .await
        .unwrap();
    first
}

/// The behavioural suite.
async fn behaviour(store: Arc<dyn GrantStore>) {
    rotation_happy_path(&*store).await;
    reuse_revokes_family(&*store).await;
    wrong_client_changes_nothing(&*store).await;
    lifetimes_enforced(&*store).await;
    unknown_tokens_not_found(&*store).await;
    revocation_and_listing(&*store).await;
    codes_single_use(&*store).await;
    jti_revocation(&*store).await;
    refusals(&*store).await;
    concurrent_rotations(store.clone(), store.clone()).await;
}

async fn rotation_happy_path(store: &dyn GrantStore) {
    let t0 = now();
    let a = start(store, t0).await;
    let rec = store.get_family(a.family_id(), t0).await.unwrap().unwrap();
    assert_eq!(rec.client_id, "web");
    assert_eq!(rec.user_id, "1001");
    assert_eq!(rec.scopes, ["orders.read", "profile"]);
    assert_eq!(rec.auth_time, 1_700_000_000);
    assert_eq!((rec.created, rec.last_used, rec.generation), (t0, t0, 0));
    assert_eq!(
        (rec.idle_expires, rec.absolute_expires),
        (t0 + 100, t0 + 1000)
    );
    assert_eq!(rec.state, FamilyState::Active);
    let (_, st) = store.lookup(&a.hash(), t0).await.unwrap().unwrap();
    assert_eq!(st, TokenState::Current);

    let b = a.successor();
    let out = store
        .rotate(&a.hash(), "web", &b.hash(), t0 + 50)
        .await
        .unwrap();
    let RotateOutcome::Rotated(rec) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (rec.last_used, rec.idle_expires, rec.generation),
        (t0 + 50, t0 + 150, 1)
    );
    assert_eq!(rec.created, t0);
    assert_eq!(
        store.lookup(&a.hash(), t0 + 50).await.unwrap().unwrap().1,
        TokenState::Used
    );
    assert_eq!(
        store.lookup(&b.hash(), t0 + 50).await.unwrap().unwrap().1,
        TokenState::Current
    );
    // The chain goes on.
    let c = b.successor();
    let out = store
        .rotate(&b.hash(), "web", &c.hash(), t0 + 60)
        .await
        .unwrap();
    assert!(
        matches!(out, RotateOutcome::Rotated(ref r) if r.generation == 2),
        "{out:?}"
    );
    assert_eq!(
        store
            .get_family(a.family_id(), t0 + 60)
            .await
            .unwrap()
            .unwrap()
            .last_used,
        t0 + 60
    );
}

async fn reuse_revokes_family(store: &dyn GrantStore) {
    let t0 = now();
    let before = store.stats(t0).await.unwrap();
    let a = start(store, t0).await;
    let b = a.successor();
    assert!(
        store
            .rotate(&a.hash(), "web", &b.hash(), t0 + 1)
            .await
            .unwrap()
            .is_rotated()
    );
    // The used token again (the attacker, or the victim after the attacker): family revoked.
    let x = b.successor();
    let out = store
        .rotate(&a.hash(), "web", &x.hash(), t0 + 2)
        .await
        .unwrap();
    let RotateOutcome::Reused(rec) = out else {
        panic!("{out:?}")
    };
    assert_eq!(rec.state, FamilyState::Revoked);
    assert_eq!(rec.user_id, "1001");
    // The current head is dead too, and the reused one stays reused.
    let out = store
        .rotate(&b.hash(), "web", &x.hash(), t0 + 3)
        .await
        .unwrap();
    assert_eq!(out, RotateOutcome::Revoked);
    let out = store
        .rotate(&a.hash(), "web", &x.hash(), t0 + 4)
        .await
        .unwrap();
    assert!(matches!(out, RotateOutcome::Reused(_)), "{out:?}");
    // The tombstones are kept: the family is still there, revoked.
    let rec = store
        .get_family(a.family_id(), t0 + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, FamilyState::Revoked);
    assert!(!rec.is_usable(t0 + 5));
    let after = store.stats(t0 + 5).await.unwrap();
    assert_eq!(after.families_created - before.families_created, 1);
    assert_eq!(after.rotations - before.rotations, 1);
    assert_eq!(after.reuse_detected - before.reuse_detected, 2);
    assert_eq!(after.families_revoked - before.families_revoked, 1);
}

async fn wrong_client_changes_nothing(store: &dyn GrantStore) {
    let t0 = now();
    let a = start(store, t0).await;
    let b = a.successor();
    let out = store
        .rotate(&a.hash(), "mallory", &b.hash(), t0 + 1)
        .await
        .unwrap();
    assert_eq!(out, RotateOutcome::WrongClient);
    // Nothing changed: the right client rotates.
    let rec = store
        .get_family(a.family_id(), t0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rec.state, rec.generation), (FamilyState::Active, 0));
    assert!(
        store
            .rotate(&a.hash(), "web", &b.hash(), t0 + 2)
            .await
            .unwrap()
            .is_rotated()
    );
    // A used token presented by another client: still WrongClient, family not revoked.
    let c = b.successor();
    let out = store
        .rotate(&a.hash(), "mallory", &c.hash(), t0 + 3)
        .await
        .unwrap();
    assert_eq!(out, RotateOutcome::WrongClient);
    assert!(
        store
            .rotate(&b.hash(), "web", &c.hash(), t0 + 4)
            .await
            .unwrap()
            .is_rotated()
    );
}

async fn lifetimes_enforced(store: &dyn GrantStore) {
    // Idle 10 s, absolute 25 s.
    let t0 = now();
    let a = RefreshToken::new_family();
    store
        .create_family(family(&a, "web", "1002", 10, 25), &a.hash(), t0)
        .await
        .unwrap();
    let b = a.successor();
    assert!(
        store
            .rotate(&a.hash(), "web", &b.hash(), t0 + 9)
            .await
            .unwrap()
            .is_rotated()
    );
    let c = b.successor();
    let out = store
        .rotate(&b.hash(), "web", &c.hash(), t0 + 18)
        .await
        .unwrap();
    // The idle expiry never passes the absolute one.
    assert!(
        matches!(out, RotateOutcome::Rotated(ref r) if r.idle_expires == t0 + 25),
        "{out:?}"
    );
    let d = c.successor();
    assert!(
        store
            .rotate(&c.hash(), "web", &d.hash(), t0 + 24)
            .await
            .unwrap()
            .is_rotated()
    );
    // Past the absolute expiry: Expired, or NotFound once the store has dropped the family.
    let out = store
        .rotate(&d.hash(), "web", &d.successor().hash(), t0 + 25)
        .await
        .unwrap();
    assert!(
        matches!(out, RotateOutcome::Expired | RotateOutcome::NotFound),
        "{out:?}"
    );

    // Idle: not refreshed for 10 s.
    let a = RefreshToken::new_family();
    store
        .create_family(family(&a, "web", "1002", 10, 25), &a.hash(), t0)
        .await
        .unwrap();
    let b = a.successor();
    assert_eq!(
        store
            .rotate(&a.hash(), "web", &b.hash(), t0 + 10)
            .await
            .unwrap(),
        RotateOutcome::Expired
    );
    // An expired family is not revoked by a late reuse either: it is just over.
    let rec = store.get_family(a.family_id(), t0 + 10).await.unwrap();
    if let Some(rec) = rec {
        assert_eq!(rec.state, FamilyState::Active);
        assert!(rec.is_expired(t0 + 10));
    }
}

async fn unknown_tokens_not_found(store: &dyn GrantStore) {
    let t0 = now();
    let a = start(store, t0).await;
    // Right family, never-issued token.
    let forged = a.successor();
    let next = forged.successor();
    assert_eq!(
        store
            .rotate(&forged.hash(), "web", &next.hash(), t0)
            .await
            .unwrap(),
        RotateOutcome::NotFound
    );
    assert!(store.lookup(&forged.hash(), t0).await.unwrap().is_none());
    // Unknown family.
    let other = RefreshToken::new_family();
    assert_eq!(
        store
            .rotate(&other.hash(), "web", &other.successor().hash(), t0)
            .await
            .unwrap(),
        RotateOutcome::NotFound
    );
    assert!(
        store
            .get_family(other.family_id(), t0)
            .await
            .unwrap()
            .is_none()
    );
    // The forged attempt did not harm the family.
    assert!(
        store
            .rotate(&a.hash(), "web", &next.hash(), t0 + 1)
            .await
            .unwrap()
            .is_rotated()
    );
}

async fn revocation_and_listing(store: &dyn GrantStore) {
    let t0 = now();
    let uid = format!("u-{}", RefreshToken::new_family().family_id());
    let cid = format!("c-{}", RefreshToken::new_family().family_id());
    let mut toks = Vec::new();
    for (client, user) in [
        (cid.as_str(), uid.as_str()),
        (cid.as_str(), "other"),
        ("web", uid.as_str()),
    ] {
        let t = RefreshToken::new_family();
        store
            .create_family(family(&t, client, user, 100, 1000), &t.hash(), t0)
            .await
            .unwrap();
        toks.push(t);
    }
    let mine = store.families_by_user(&uid, t0).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|r| r.user_id == uid));
    let theirs = store.families_by_client(&cid, t0).await.unwrap();
    assert_eq!(theirs.len(), 2);

    // Single family.
    assert!(store.revoke_family(toks[0].family_id(), t0).await.unwrap());
    assert!(!store.revoke_family(toks[0].family_id(), t0).await.unwrap());
    assert!(
        !store
            .revoke_family("0123456789abcdefABCDEF", t0)
            .await
            .unwrap()
    );
    let out = store
        .rotate(&toks[0].hash(), &cid, &toks[0].successor().hash(), t0 + 1)
        .await
        .unwrap();
    assert_eq!(out, RotateOutcome::Revoked);

    // By user: the other of the user's families (one already revoked).
    assert_eq!(store.revoke_by_user(&uid, t0 + 1).await.unwrap(), 1);
    assert_eq!(store.revoke_by_user(&uid, t0 + 1).await.unwrap(), 0);
    assert_eq!(
        store
            .rotate(&toks[2].hash(), "web", &toks[2].successor().hash(), t0 + 2)
            .await
            .unwrap(),
        RotateOutcome::Revoked
    );
    // By client: only the remaining active one ("other" user).
    assert_eq!(store.revoke_by_client(&cid, t0 + 2).await.unwrap(), 1);
    let all = store.families_by_client(&cid, t0 + 2).await.unwrap();
    assert!(all.iter().all(|r| r.state == FamilyState::Revoked));
    assert!(
        store
            .families_by_user("nobody-at-all", t0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn codes_single_use(store: &dyn GrantStore) {
    let t0 = now();
    let code = hash_secret(RefreshToken::new_family().as_str());
    let rec = CodeRecord::new("web", "1001", "https://app.example/cb")
        .with_scopes(["openid"])
        .with_pkce("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256")
        .with_auth_time(t0);
    store
        .put_code(&code, rec.clone(), Duration::from_secs(60), t0)
        .await
        .unwrap();
    assert!(
        store
            .put_code(&code, rec.clone(), Duration::from_secs(60), t0)
            .await
            .is_err()
    );
    let before = store.stats(t0).await.unwrap().code_replays;
    assert_eq!(
        store.take_code(&code, t0 + 1).await.unwrap(),
        CodeOutcome::Taken(rec.clone())
    );
    assert_eq!(
        store.take_code(&code, t0 + 2).await.unwrap(),
        CodeOutcome::Reused { family_id: None }
    );
    store
        .link_code_family(&code, "fam-from-first-use", t0 + 2)
        .await
        .unwrap();
    assert_eq!(
        store.take_code(&code, t0 + 3).await.unwrap(),
        CodeOutcome::Reused {
            family_id: Some("fam-from-first-use".to_owned())
        }
    );
    assert_eq!(store.stats(t0 + 3).await.unwrap().code_replays - before, 2);
    // Unknown code; linking an unknown code creates nothing.
    let unknown = hash_secret("never issued");
    store.link_code_family(&unknown, "x", t0).await.unwrap();
    assert_eq!(
        store.take_code(&unknown, t0).await.unwrap(),
        CodeOutcome::NotFound
    );
    // TTL bounds.
    let other = hash_secret("other");
    for ttl in [0, 61, 600] {
        let e = store
            .put_code(&other, rec.clone(), Duration::from_secs(ttl), t0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("ttl"), "{e}");
    }
}

async fn codes_race(store: Arc<dyn GrantStore>, other: Arc<dyn GrantStore>) {
    let t0 = now();
    let code = hash_secret(RefreshToken::new_family().as_str());
    let rec = CodeRecord::new("web", "1001", "https://app.example/cb");
    store
        .put_code(&code, rec, Duration::from_secs(60), t0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            s.take_code(&code, t0).await.unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        match t.await.unwrap() {
            CodeOutcome::Taken(_) => taken += 1,
            CodeOutcome::Reused { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(taken, 1);
}

async fn jti_revocation(store: &dyn GrantStore) {
    let t0 = now();
    let jti = format!("jti-{}", RefreshToken::new_family().family_id());
    assert!(!store.is_jti_revoked(&jti, t0).await.unwrap());
    store.revoke_jti(&jti, t0 + 300, t0).await.unwrap();
    assert!(store.is_jti_revoked(&jti, t0 + 1).await.unwrap());
    // Already expired: nothing to remember.
    let old = format!("old-{jti}");
    store.revoke_jti(&old, t0, t0).await.unwrap();
    assert!(!store.is_jti_revoked(&old, t0).await.unwrap());
}

async fn refusals(store: &dyn GrantStore) {
    let t0 = now();
    let a = start(store, t0).await;
    // The same family id twice.
    let e = store
        .create_family(family(&a, "web", "1001", 100, 1000), &a.hash(), t0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already in use"), "{e}");
    // A first token of another family.
    let other = RefreshToken::new_family();
    let e = store
        .create_family(family(&a, "web", "1001", 100, 1000), &other.hash(), t0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another family"), "{e}");
    // A successor of another family, or the same token.
    let e = store
        .rotate(&a.hash(), "web", &other.hash(), t0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another family"), "{e}");
    let e = store
        .rotate(&a.hash(), "web", &a.hash(), t0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("presented token"), "{e}");
    // Zero lifetimes.
    let z = RefreshToken::new_family();
    let e = store
        .create_family(family(&z, "web", "1001", 0, 10), &z.hash(), t0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("lifetimes"), "{e}");
    // Nothing of it was applied: the family still rotates.
    assert!(
        store
            .rotate(&a.hash(), "web", &a.successor().hash(), t0)
            .await
            .unwrap()
            .is_rotated()
    );
}

/// 50 concurrent rotations of one token, alternating between two store handles: exactly one
/// wins, every other one is Reused or Revoked, and the family ends revoked.
async fn concurrent_rotations(one: Arc<dyn GrantStore>, two: Arc<dyn GrantStore>) {
    let t0 = now();
    let a = start(&*one, t0).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        let (presented, next) = (a.hash(), a.successor().hash());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .rotate(&presented, "web", &next, t0 + 1)
                .await
                .unwrap()
        }));
    }
    let (mut rotated, mut reused, mut revoked) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            RotateOutcome::Rotated(_) => rotated += 1,
            RotateOutcome::Reused(_) => reused += 1,
            RotateOutcome::Revoked => revoked += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rotated, 1, "reused {reused} revoked {revoked}");
    assert_eq!(reused + revoked, 49);
    assert!(reused >= 1);
    let rec = one
        .get_family(a.family_id(), t0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, FamilyState::Revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_behaviour() {
    let store = MemoryGrantStore::new();
    behaviour(Arc::new(store.clone())).await;
    // Two handles on one store (clones share state).
    concurrent_rotations(Arc::new(store.clone()), Arc::new(store.clone())).await;
    codes_race(Arc::new(store.clone()), Arc::new(store.clone())).await;
}

#[tokio::test]
async fn memory_store_forgets_on_time() {
    let store = MemoryGrantStore::new();
    let t0 = 1_800_000_000;
    let a = RefreshToken::new_family();
    store
        .create_family(family(&a, "web", "1001", 10, 20), &a.hash(), t0)
        .await
        .unwrap();
    assert_eq!(store.stats(t0).await.unwrap().active_families, 1);
    // Idle expiry: no longer active, still present (tombstones until the absolute expiry).
    assert_eq!(store.stats(t0 + 10).await.unwrap().active_families, 0);
    assert!(
        store
            .get_family(a.family_id(), t0 + 19)
            .await
            .unwrap()
            .is_some()
    );
    // Absolute expiry: gone, indexes too.
    assert!(
        store
            .get_family(a.family_id(), t0 + 20)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .families_by_user("1001", t0 + 20)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(format!("{store:?}").contains("families: 0"));

    store.revoke_jti("j", t0 + 100, t0).await.unwrap();
    assert!(store.is_jti_revoked("j", t0 + 99).await.unwrap());
    assert!(!store.is_jti_revoked("j", t0 + 100).await.unwrap());

    let rec = CodeRecord::new("web", "1001", "https://app.example/cb");
    store
        .put_code("c", rec.clone(), Duration::from_secs(60), t0)
        .await
        .unwrap();
    assert_eq!(
        store.take_code("c", t0 + 60).await.unwrap(),
        CodeOutcome::NotFound
    );
    store
        .put_code("d", rec, Duration::from_secs(60), t0)
        .await
        .unwrap();
    assert!(matches!(
        store.take_code("d", t0 + 1).await.unwrap(),
        CodeOutcome::Taken(_)
    ));
    let replay_at = t0 + 1 + CODE_TOMBSTONE_TTL.as_secs();
    assert_eq!(
        store.take_code("d", replay_at - 1).await.unwrap(),
        CodeOutcome::Reused { family_id: None }
    );
    assert_eq!(
        store.take_code("d", replay_at).await.unwrap(),
        CodeOutcome::NotFound
    );
}

#[tokio::test]
async fn memory_stats_active_count_follows_rotation_and_revocation() {
    let store = MemoryGrantStore::new();
    let t0 = 1_800_000_000;
    let a = RefreshToken::new_family();
    let b = RefreshToken::new_family();
    for t in [&a, &b] {
        store
            .create_family(family(t, "web", "1001", 10, 100), &t.hash(), t0)
            .await
            .unwrap();
    }
    assert_eq!(store.stats(t0).await.unwrap().active_families, 2);
    // Rotating a at +9 keeps it active past b's idle expiry.
    assert!(
        store
            .rotate(&a.hash(), "web", &a.successor().hash(), t0 + 9)
            .await
            .unwrap()
            .is_rotated()
    );
    assert_eq!(store.stats(t0 + 10).await.unwrap().active_families, 1);
    assert!(store.revoke_family(a.family_id(), t0 + 11).await.unwrap());
    let s = store.stats(t0 + 11).await.unwrap();
    assert_eq!(
        (
            s.active_families,
            s.families_created,
            s.families_revoked,
            s.rotations
        ),
        (0, 2, 1, 1)
    );
}

#[test]
fn refresh_token_shape_and_parse() {
    let t = RefreshToken::new_family();
    let s = t.as_str().to_owned();
    assert_eq!(s.len(), 22 + 1 + 43);
    let p = RefreshToken::parse(&s).unwrap();
    assert_eq!(p.family_id(), t.family_id());
    assert_eq!(p.hash(), t.hash());
    for bad in [
        "",
        ".",
        "nodot",
        &format!("{}.", t.family_id()),
        &format!("{}.{}", t.family_id(), "a".repeat(42)),
        &format!("{}.{}", t.family_id(), "+".repeat(43)),
        &format!("short.{}", "a".repeat(43)),
        &format!("{}x.{}", t.family_id(), &s[23..]).replace('x', "!"),
    ] {
        assert!(RefreshToken::parse(bad).is_none(), "{bad}");
    }
    // Only the hash is stored; it differs from the token and is 256 bits.
    let h = t.hash();
    assert!(!s.contains(h.digest()));
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h.digest())
            .unwrap()
            .len(),
        32
    );
    // The secret half carries 256 random bits.
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&s[23..])
            .unwrap()
            .len(),
        32
    );
}

#[cfg(feature = "redis")]
pub(crate) mod redis_server;
