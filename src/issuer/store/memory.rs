//! The in-memory [`GrantStore`]: one process.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{
    CODE_TOMBSTONE_TTL, CleanupReport, CodeOutcome, CodeRecord, FamilyRecord, FamilyState,
    GrantStats, GrantStore, NewFamily, RotateOutcome, TokenHash, TokenState, check_code_ttl,
    check_successor,
};
use crate::http_client::BoxFuture;
use crate::store::StoreError;

/// The in-memory [`GrantStore`]: one process, lost on restart (every refresh token then
/// answers `NotFound`, so users log in again). Cheap to clone: clones share the state.
///
/// All state sits behind one mutex, held for a few map operations (never across an await), so
/// every operation is atomic. Expired entries are dropped as time passes, in order of expiry
/// (no scan).
///
/// See the [module docs](crate::issuer::store) for an example.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::issuer::store::{CodeOutcome, CodeRecord, GrantStore, MemoryGrantStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryGrantStore::new();
/// let rec = CodeRecord::new("web", "1001", "https://app.example/cb");
/// store.put_code("code-hash", rec.clone(), Duration::from_secs(60), 1_000).await.unwrap();
/// assert_eq!(store.take_code("code-hash", 1_001).await.unwrap(), CodeOutcome::Taken(rec));
/// assert_eq!(
///     store.take_code("code-hash", 1_002).await.unwrap(),
///     CodeOutcome::Reused { family_id: None },
/// );
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryGrantStore {
    inner: Arc<Mutex<State>>,
}

impl fmt::Debug for MemoryGrantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("MemoryGrantStore")
            .field("families", &s.families.len())
            .field("codes", &s.codes.len())
            .field("revoked_jtis", &s.jtis.len())
            .finish()
    }
}

struct Family {
    rec: FamilyRecord,
    head: String,
    used: HashSet<String>,
}

struct Code {
    record: CodeRecord,
    until: u64,
    consumed: bool,
    family_id: Option<String>,
}

#[derive(Default)]
struct State {
    families: HashMap<String, Family>,
    by_user: HashMap<String, HashSet<String>>,
    by_client: HashMap<String, HashSet<String>>,
    /// (absolute expiry, family): when a family disappears.
    family_gc: BTreeSet<(u64, String)>,
    /// (idle expiry, family) of active families: its size is the active count.
    active: BTreeSet<(u64, String)>,
    jtis: HashMap<String, u64>,
    jti_gc: BTreeSet<(u64, String)>,
    codes: HashMap<String, Code>,
    code_gc: BTreeSet<(u64, String)>,
    stats: GrantStats,
}

fn pop_due(set: &mut BTreeSet<(u64, String)>, now: u64) -> Vec<(u64, String)> {
    let mut due = Vec::new();
    while let Some(first) = set.first() {
        if first.0 > now {
            break;
        }
        if let Some(e) = set.pop_first() {
            due.push(e);
        }
    }
    due
}

impl State {
    /// Drops what expired at or before `now`, in expiry order; how many records went.
    fn expire(&mut self, now: u64) -> u64 {
        let mut removed = 0;
        for (_, fam) in pop_due(&mut self.family_gc, now) {
            if let Some(f) = self.families.remove(&fam) {
                self.active.remove(&(f.rec.idle_expires, fam.clone()));
                unindex(&mut self.by_user, &f.rec.user_id, &fam);
                unindex(&mut self.by_client, &f.rec.client_id, &fam);
                removed += 1;
            }
        }
        pop_due(&mut self.active, now);
        for (exp, jti) in pop_due(&mut self.jti_gc, now) {
            if self.jtis.get(&jti) == Some(&exp) {
                self.jtis.remove(&jti);
                removed += 1;
            }
        }
        for (until, hash) in pop_due(&mut self.code_gc, now) {
            if self.codes.get(&hash).is_some_and(|c| c.until == until) {
                self.codes.remove(&hash);
                removed += 1;
            }
        }
        removed
    }

    fn revoke(&mut self, fam: &str) -> bool {
        let Some(f) = self.families.get_mut(fam) else {
            return false;
        };
        if f.rec.state == FamilyState::Revoked {
            return false;
        }
        f.rec.state = FamilyState::Revoked;
        self.active.remove(&(f.rec.idle_expires, fam.to_owned()));
        self.stats.families_revoked += 1;
        true
    }

    fn records(&self, ids: Option<&HashSet<String>>) -> Vec<FamilyRecord> {
        let mut out: Vec<FamilyRecord> = ids
            .into_iter()
            .flatten()
            .filter_map(|id| self.families.get(id).map(|f| f.rec.clone()))
            .collect();
        out.sort_by(|a, b| (a.created, &a.family_id).cmp(&(b.created, &b.family_id)));
        out
    }

    fn revoke_all(&mut self, ids: Option<&HashSet<String>>) -> u64 {
        let ids: Vec<String> = ids.into_iter().flatten().cloned().collect();
        ids.iter().filter(|id| self.revoke(id)).count() as u64
    }
}

fn unindex(index: &mut HashMap<String, HashSet<String>>, key: &str, fam: &str) {
    if let Some(set) = index.get_mut(key) {
        set.remove(fam);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(v))
}

impl MemoryGrantStore {
    /// An empty store.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::store::MemoryGrantStore;
    ///
    /// assert!(format!("{:?}", MemoryGrantStore::new()).contains("families: 0"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn at(&self, now: u64) -> MutexGuard<'_, State> {
        let mut s = self.lock();
        s.expire(now);
        s
    }

    fn create_now(
        &self,
        family: NewFamily,
        first: &TokenHash,
        now: u64,
    ) -> Result<FamilyRecord, StoreError> {
        family.check(first)?;
        let mut s = self.at(now);
        if s.families.contains_key(&family.family_id) {
            return Err(StoreError::new("grant store: family id already in use"));
        }
        let rec = FamilyRecord::from_new(&family, now);
        let fam = rec.family_id.clone();
        s.family_gc.insert((rec.absolute_expires, fam.clone()));
        s.active.insert((rec.idle_expires, fam.clone()));
        s.by_user
            .entry(rec.user_id.clone())
            .or_default()
            .insert(fam.clone());
        s.by_client
            .entry(rec.client_id.clone())
            .or_default()
            .insert(fam.clone());
        s.families.insert(
            fam,
            Family {
                rec: rec.clone(),
                head: first.digest.clone(),
                used: HashSet::new(),
            },
        );
        s.stats.families_created += 1;
        Ok(rec)
    }

    fn rotate_now(
        &self,
        presented: &TokenHash,
        client_id: &str,
        successor: &TokenHash,
        now: u64,
    ) -> Result<RotateOutcome, StoreError> {
        check_successor(presented, successor)?;
        let mut s = self.at(now);
        let fam = presented.family_id.as_str();
        let Some(f) = s.families.get_mut(fam) else {
            return Ok(RotateOutcome::NotFound);
        };
        let is_head = f.head == presented.digest;
        if !is_head && !f.used.contains(&presented.digest) {
            return Ok(RotateOutcome::NotFound);
        }
        if f.rec.client_id != client_id {
            return Ok(RotateOutcome::WrongClient);
        }
        if f.rec.is_expired(now) {
            return Ok(RotateOutcome::Expired);
        }
        if !is_head {
            s.stats.reuse_detected += 1;
            s.revoke(fam);
            let rec = s.families.get(fam).map(|f| f.rec.clone());
            return Ok(rec.map_or(RotateOutcome::NotFound, RotateOutcome::Reused));
        }
        if f.rec.state == FamilyState::Revoked {
            return Ok(RotateOutcome::Revoked);
        }
        let old_idle = f.rec.idle_expires;
        let old_head = std::mem::replace(&mut f.head, successor.digest.clone());
        f.used.insert(old_head);
        f.rec.last_used = now;
        f.rec.idle_expires = now
            .saturating_add(f.rec.idle_ttl_secs)
            .min(f.rec.absolute_expires);
        f.rec.generation += 1;
        let rec = f.rec.clone();
        s.active.remove(&(old_idle, fam.to_owned()));
        s.active.insert((rec.idle_expires, fam.to_owned()));
        s.stats.rotations += 1;
        Ok(RotateOutcome::Rotated(rec))
    }

    fn lookup_now(&self, presented: &TokenHash, now: u64) -> Option<(FamilyRecord, TokenState)> {
        let s = self.at(now);
        let f = s.families.get(&presented.family_id)?;
        let state = if f.head == presented.digest {
            TokenState::Current
        } else if f.used.contains(&presented.digest) {
            TokenState::Used
        } else {
            return None;
        };
        Some((f.rec.clone(), state))
    }

    fn put_code_now(
        &self,
        code_hash: &str,
        record: CodeRecord,
        ttl: Duration,
        now: u64,
    ) -> Result<(), StoreError> {
        check_code_ttl(ttl)?;
        let mut s = self.at(now);
        if s.codes.contains_key(code_hash) {
            return Err(StoreError::new(
                "grant store: authorization code already present",
            ));
        }
        let until = now.saturating_add(ttl.as_secs());
        s.code_gc.insert((until, code_hash.to_owned()));
        s.codes.insert(
            code_hash.to_owned(),
            Code {
                record,
                until,
                consumed: false,
                family_id: None,
            },
        );
        Ok(())
    }

    fn take_code_now(&self, code_hash: &str, now: u64) -> CodeOutcome {
        let mut s = self.at(now);
        let Some(code) = s.codes.get_mut(code_hash) else {
            return CodeOutcome::NotFound;
        };
        if code.consumed {
            let family_id = code.family_id.clone();
            s.stats.code_replays += 1;
            return CodeOutcome::Reused { family_id };
        }
        code.consumed = true;
        code.until = now.saturating_add(CODE_TOMBSTONE_TTL.as_secs());
        let (record, until) = (code.record.clone(), code.until);
        s.code_gc.insert((until, code_hash.to_owned()));
        CodeOutcome::Taken(record)
    }
}

impl GrantStore for MemoryGrantStore {
    fn create_family(
        &self,
        family: NewFamily,
        first: &TokenHash,
        now: u64,
    ) -> BoxFuture<'static, Result<FamilyRecord, StoreError>> {
        ready(self.create_now(family, first, now))
    }

    fn rotate(
        &self,
        presented: &TokenHash,
        client_id: &str,
        successor: &TokenHash,
        now: u64,
    ) -> BoxFuture<'static, Result<RotateOutcome, StoreError>> {
        ready(self.rotate_now(presented, client_id, successor, now))
    }

    fn lookup(
        &self,
        presented: &TokenHash,
        now: u64,
    ) -> BoxFuture<'static, Result<Option<(FamilyRecord, TokenState)>, StoreError>> {
        ready(Ok(self.lookup_now(presented, now)))
    }

    fn get_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<Option<FamilyRecord>, StoreError>> {
        let rec = self.at(now).families.get(family_id).map(|f| f.rec.clone());
        ready(Ok(rec))
    }

    fn revoke_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        ready(Ok(self.at(now).revoke(family_id)))
    }

    fn families_by_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<Vec<FamilyRecord>, StoreError>> {
        let s = self.at(now);
        ready(Ok(s.records(s.by_user.get(user_id))))
    }

    fn families_by_client(
        &self,
        client_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<Vec<FamilyRecord>, StoreError>> {
        let s = self.at(now);
        ready(Ok(s.records(s.by_client.get(client_id))))
    }

    fn revoke_by_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        let mut s = self.at(now);
        let ids = s.by_user.get(user_id).cloned();
        ready(Ok(s.revoke_all(ids.as_ref())))
    }

    fn revoke_by_client(
        &self,
        client_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<u64, StoreError>> {
        let mut s = self.at(now);
        let ids = s.by_client.get(client_id).cloned();
        ready(Ok(s.revoke_all(ids.as_ref())))
    }

    fn revoke_jti(
        &self,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        if exp > now {
            let mut s = self.at(now);
            let exp = s.jtis.get(jti).map_or(exp, |e| (*e).max(exp));
            s.jtis.insert(jti.to_owned(), exp);
            s.jti_gc.insert((exp, jti.to_owned()));
        }
        ready(Ok(()))
    }

    fn is_jti_revoked(&self, jti: &str, now: u64) -> BoxFuture<'static, Result<bool, StoreError>> {
        let revoked = self.at(now).jtis.get(jti).is_some_and(|exp| *exp > now);
        ready(Ok(revoked))
    }

    fn put_code(
        &self,
        code_hash: &str,
        record: CodeRecord,
        ttl: Duration,
        now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        ready(self.put_code_now(code_hash, record, ttl, now))
    }

    fn take_code(
        &self,
        code_hash: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<CodeOutcome, StoreError>> {
        ready(Ok(self.take_code_now(code_hash, now)))
    }

    fn link_code_family(
        &self,
        code_hash: &str,
        family_id: &str,
        now: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Some(code) = self.at(now).codes.get_mut(code_hash) {
            code.family_id = Some(family_id.to_owned());
        }
        ready(Ok(()))
    }

    fn stats(&self, now: u64) -> BoxFuture<'static, Result<GrantStats, StoreError>> {
        let s = self.at(now);
        let mut stats = s.stats;
        stats.active_families = s.active.len() as u64;
        ready(Ok(stats))
    }

    fn cleanup(&self, now: u64) -> BoxFuture<'static, Result<CleanupReport, StoreError>> {
        let removed = self.lock().expire(now);
        ready(Ok(CleanupReport {
            store: "memory",
            removed,
            note: None,
        }))
    }
}
