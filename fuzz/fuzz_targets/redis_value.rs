//! The Redis token store's value decoding (`RedisTokenStore::get`), through the hidden
//! `tower_bearer::__fuzz` wrappers.
//!
//! Input: `sel ...`. `sel` bit 0 clear: the rest is a raw stored value (as an attacker who can
//! write to Redis but lacks the secret would store); it must never decode. Bit 0 set: the rest
//! is `clear_fingerprint \n plaintext`, sealed here under the store key (as a replica with the
//! secret, but a hostile or buggy payload, would store), then decoded: a decoded token must
//! be consistent with both fingerprints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bearer::__fuzz::{redis_open, redis_seal_plain};

const SECRET: &[u8] = b"fuzz-test-only-secret";
const RKEY: &str = "tower-bearer:token:fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        if let Ok(t) = redis_open(SECRET, RKEY, rest) {
            panic!("a value sealed by nobody decoded: {t:?}");
        }
        return;
    }
    let (fp, plain) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let Ok(fp) = std::str::from_utf8(fp) else {
        return;
    };
    let raw = redis_seal_plain(SECRET, RKEY, fp, plain).expect("sealing");
    if let Ok(stored) = redis_open(SECRET, RKEY, &raw) {
        assert_eq!(
            stored.fingerprint(),
            fp,
            "decoded under another clear fingerprint"
        );
        assert_eq!(stored.fingerprint().len(), 32);
    }
    // The same value under another Redis key must not decode (the key is bound).
    assert!(redis_open(SECRET, "tower-bearer:token:other", &raw).is_err());
});
