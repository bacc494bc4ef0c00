//! The verified-token cache: SHA-256 of the whole token → the result of the signature and
//! registered-claim checks. Bounded, sharded; every hit re-checks `exp`/`nbf` and that the
//! signing key is still published.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock, Weak};

use crate::claims::CurrentUser;
use crate::jwks::KeySet;

const SHARDS: usize = 16;

/// A cached verification result.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) user: CurrentUser,
    pub(crate) exp: u64,
    pub(crate) nbf: Option<u64>,
    pub(crate) issuer: usize,
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) fingerprint: [u8; 32],
    /// The key snapshot the signature was checked against. While it is still the issuer's
    /// current one, the key is still published (no lookup needed). The `Weak` keeps the
    /// allocation, so the address cannot be reused by another snapshot meanwhile.
    pub(crate) snapshot: Weak<KeySet>,
}

/// SHA-256 digests are uniformly distributed: their first 8 bytes are a good hash already.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (i * 8);
        }
    }
}

type Shard = HashMap<[u8; 32], Entry, BuildHasherDefault<DigestHasher>>;

pub(crate) struct TokenCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
}

impl TokenCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        let per_shard = max_entries.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &RwLock<Shard> {
        &self.shards[usize::from(key[31]) % SHARDS]
    }

    /// Runs `f` on the entry for `key` under the shard's read lock (no copy of the entry).
    pub(crate) fn with<R>(&self, key: &[u8; 32], f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let shard = self.shard(key).read().unwrap_or_else(|p| p.into_inner());
        shard.get(key).map(f)
    }

    pub(crate) fn remove(&self, key: &[u8; 32]) {
        self.shard(key)
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Inserts; a full shard first drops expired entries, then an eighth of the rest.
    pub(crate) fn insert(&self, key: [u8; 32], entry: Entry, now: u64) {
        let mut shard = self.shard(&key).write().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.exp > now);
            if shard.len() >= self.per_shard {
                let drop_n = (self.per_shard / 8).max(1);
                let victims: Vec<[u8; 32]> = shard.keys().take(drop_n).copied().collect();
                for v in victims {
                    shard.remove(&v);
                }
            }
        }
        shard.insert(key, entry);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{ClaimMapping, CurrentUser};

    #[test]
    fn bounded() {
        let cache = TokenCache::new(64);
        let user = CurrentUser::from_claims(Default::default(), &ClaimMapping::default().compile())
            .unwrap();
        for i in 0..10_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key[31] = (i % 251) as u8;
            let entry = Entry {
                user: user.clone(),
                exp: 100,
                nbf: None,
                issuer: 0,
                kid: None,
                fingerprint: [0; 32],
                snapshot: Weak::new(),
            };
            cache.insert(key, entry, 0);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
    }
}
