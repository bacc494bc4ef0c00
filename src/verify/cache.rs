//! The verified-token cache: token → the result of the signature and registered-claim checks.
//! Bounded, sharded; every hit re-checks `exp`/`nbf` and that the signing key is still
//! published.
//!
//! The slot is a keyed hash (a folded 64×64→128-bit multiply with three 64-bit keys drawn from
//! std [`RandomState`], random per cache) of the token's length and its last [`TAIL`] bytes
//! (the end of the signature, which no one but the issuer chooses). It only spreads tokens
//! over slots: the entry keeps the whole token, compared in full on every lookup, so a hit is an exact
//! match: a token whose bytes differ anywhere is a miss and takes the full verification. Only
//! verified tokens are inserted, so filling a shard or a slot takes legitimately signed tokens,
//! and a lookup that collides with another token's slot neither matches nor evicts it.
//!
//! Memory: at most `max_entries` entries (rounded up to a multiple of the shard count), each
//! holding its token (at most the verifier's maximum token length) and the [`CurrentUser`]
//! built from it (its claims, no larger than the token's payload), plus about 200 bytes.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock, Weak};

use crate::claims::CurrentUser;
use crate::jwks::KeySet;

const SHARDS: usize = 16;
/// How many bytes from the end of the token pick its slot (16 base64url characters of
/// signature: 96 bits no one but the issuer chooses).
const TAIL: usize = 16;

/// A cached verification result. The fields a hit reads come first: with the slot in front
/// of them (see [`Slot`]) they fill exactly one cache line.
#[repr(C)]
pub(crate) struct Entry {
    /// The whole token, compared in full on a lookup.
    pub(crate) token: Box<str>,
    pub(crate) user: CurrentUser,
    pub(crate) exp: u64,
    /// `0` when the token has no `nbf` (a `nbf` of 0 is no constraint either).
    pub(crate) nbf: u64,
    pub(crate) issuer: usize,
    /// [`key_set_generation`](crate::jwks::key_set_generation) read before the keys were looked
    /// up: while it is unchanged, no key set lost a key, so the key is still published.
    pub(crate) generation: u64,
    // Read only when the generation moved since.
    /// The key snapshot the signature was checked against. While it is still the issuer's
    /// current one, the key is still published (no lookup needed). The `Weak` keeps the
    /// allocation, so the address cannot be reused by another snapshot meanwhile.
    pub(crate) snapshot: Weak<KeySet>,
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) fingerprint: [u8; 32],
}

/// A shard's element: the slot (the table's key) and the entry, aligned so that the slot and
/// the fields of a hit share one cache line (the table's buckets are then line-aligned too).
#[repr(C, align(64))]
struct Slot {
    slot: u64,
    entry: Entry,
}

impl std::hash::Hash for Slot {
    /// As the `u64` it is looked up by (see the `Borrow`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.slot.hash(state);
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.slot == other.slot
    }
}

impl Eq for Slot {}

impl std::borrow::Borrow<u64> for Slot {
    fn borrow(&self) -> &u64 {
        &self.slot
    }
}

/// The slots are keyed hash outputs already: used as they are.
#[derive(Default)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashSet<Slot, BuildHasherDefault<SlotHasher>>;

/// A shard's lock and table header on a cache line of their own: a hit's read lock writes the
/// lock word, which then shares its line with no other shard's.
#[repr(align(64))]
struct Padded(RwLock<Shard>);

pub(crate) struct TokenCache {
    shards: Box<[Padded]>,
    per_shard: usize,
    keys: [u64; 3],
}

impl TokenCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        let per_shard = max_entries.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| Padded(RwLock::new(Shard::default())))
                .collect(),
            per_shard,
            keys: {
                let random = RandomState::new();
                [0u8, 1, 2].map(|i| random.hash_one(i))
            },
        }
    }

    /// A few instructions (this is on every authenticated request); the full comparison of
    /// the entry's token makes a hit exact whatever the slot.
    fn slot(&self, bytes: &[u8]) -> u64 {
        let mut tail = [0u8; TAIL];
        let end = &bytes[bytes.len().saturating_sub(TAIL)..];
        tail[TAIL - end.len()..].copy_from_slice(end);
        let (a, b) = tail.split_at(8);
        let a = u64::from_le_bytes(a.try_into().unwrap_or_default()) ^ self.keys[0];
        let b = u64::from_le_bytes(b.try_into().unwrap_or_default())
            ^ self.keys[1]
            ^ (bytes.len() as u64).rotate_left(32);
        let m = u128::from(a) * u128::from(b);
        ((m >> 64) as u64 ^ m as u64).wrapping_add(self.keys[2])
    }

    fn shard(&self, slot: u64) -> &RwLock<Shard> {
        // hashbrown picks buckets with the low bits and tags with the top 7: use the middle.
        &self.shards[(slot >> 32) as usize % SHARDS].0
    }

    /// Runs `f` on the entry for exactly `token` under the shard's read lock (no copy).
    pub(crate) fn with<R>(&self, token: &[u8], f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let slot = self.slot(token);
        let shard = self.shard(slot).read().unwrap_or_else(|p| p.into_inner());
        shard
            .get(&slot)
            .map(|s| &s.entry)
            .filter(|e| e.token.as_bytes() == token)
            .map(f)
    }

    /// Removes the entry for exactly `token` (another token in its slot stays).
    pub(crate) fn remove(&self, token: &[u8]) {
        let slot = self.slot(token);
        let mut shard = self.shard(slot).write().unwrap_or_else(|p| p.into_inner());
        if shard
            .get(&slot)
            .is_some_and(|s| s.entry.token.as_bytes() == token)
        {
            shard.remove(&slot);
        }
    }

    /// Inserts (a verified token only); a full shard first drops expired entries, then an
    /// eighth of the rest. Another token in the same slot is replaced.
    pub(crate) fn insert(&self, entry: Entry, now: u64) {
        let slot = self.slot(entry.token.as_bytes());
        let mut shard = self.shard(slot).write().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard && !shard.contains(&slot) {
            shard.retain(|s| s.entry.exp > now);
            if shard.len() >= self.per_shard {
                let drop_n = (self.per_shard / 8).max(1);
                let victims: Vec<u64> = shard.iter().take(drop_n).map(|s| s.slot).collect();
                for v in victims {
                    shard.remove(&v);
                }
            }
        }
        shard.replace(Slot { slot, entry });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{ClaimMapping, CurrentUser};

    fn entry(token: &str, exp: u64) -> Entry {
        let user = CurrentUser::from_claims(Default::default(), &ClaimMapping::default().compile())
            .unwrap();
        Entry {
            token: token.into(),
            user,
            exp,
            nbf: 0,
            issuer: 0,
            generation: 0,
            kid: None,
            fingerprint: [0; 32],
            snapshot: Weak::new(),
        }
    }

    #[test]
    fn bounded() {
        let cache = TokenCache::new(64);
        for i in 0..10_000u32 {
            cache.insert(entry(&format!("h.p.sig{i}"), 100), 0);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
        // Expired entries go first when a shard is full.
        let cache = TokenCache::new(16);
        for i in 0..1_000u32 {
            cache.insert(entry(&format!("h.p.old{i}"), 5), 0);
        }
        cache.insert(entry("h.p.fresh", 100), 10);
        assert!(cache.with(b"h.p.fresh", |e| e.exp).is_some());
    }

    /// A hit is an exact match: same length and same tail (same slot) but other bytes is a
    /// miss, and neither a lookup nor a `remove` of it evicts the cached token.
    #[test]
    fn exact_match_only() {
        let cache = TokenCache::new(1_000);
        let good = format!("eyJhbGciOi.{}.{}", "A".repeat(600), "s".repeat(342));
        let forged = format!("eyJhbGciOi.{}.{}", "B".repeat(600), "s".repeat(342));
        assert_eq!(cache.slot(good.as_bytes()), cache.slot(forged.as_bytes()));
        cache.insert(entry(&good, 100), 0);
        assert_eq!(cache.with(good.as_bytes(), |e| e.exp), Some(100));
        assert_eq!(cache.with(forged.as_bytes(), |e| e.exp), None);
        cache.remove(forged.as_bytes());
        assert_eq!(cache.with(good.as_bytes(), |e| e.exp), Some(100));
        // A prefix or an extension of the token is no hit either.
        assert_eq!(cache.with(&good.as_bytes()[1..], |e| e.exp), None);
        assert_eq!(cache.with(format!("{good}A").as_bytes(), |e| e.exp), None);
        cache.remove(good.as_bytes());
        assert_eq!(cache.with(good.as_bytes(), |e| e.exp), None);
    }

    /// Legitimate tokens (random signature tails) spread over every shard, with next to no
    /// slot collisions (a collision only costs a cache miss, never a wrong hit).
    #[test]
    fn slots_spread() {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let cache = TokenCache::new(16);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut slots = std::collections::HashSet::new();
        let mut shards = [0usize; SHARDS];
        for _ in 0..10_000 {
            let sig: String = (0..342)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    B64[(x % 64) as usize] as char
                })
                .collect();
            let slot = cache.slot(format!("eyJhbGciOi.eyJzdWIi.{sig}").as_bytes());
            slots.insert(slot);
            shards[(slot >> 32) as usize % SHARDS] += 1;
        }
        assert!(slots.len() >= 9_999, "{}", slots.len());
        assert!(shards.iter().all(|&n| n > 400 && n < 850), "{shards:?}");
    }

    /// The slot and what a hit reads share one cache line.
    #[test]
    fn hit_fields_in_one_line() {
        assert_eq!(std::mem::align_of::<Slot>(), 64);
        assert!(std::mem::offset_of!(Slot, entry) + std::mem::offset_of!(Entry, snapshot) <= 64);
    }

    /// Two caches key their slots differently (random per instance), so slot collisions
    /// cannot be precomputed.
    #[test]
    fn keyed_per_instance() {
        let a = TokenCache::new(16);
        let b = TokenCache::new(16);
        let t = "h.p.0123456789abcdef0123456789abcdef";
        assert_ne!(a.slot(t.as_bytes()), b.slot(t.as_bytes()));
    }
}
