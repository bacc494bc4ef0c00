//! The verifier's claims parser (a strict scanner of serde_json's grammar) against serde_json
//! with a visitor, the reference, via the hidden `tower_bearer::__fuzz`. Input: the claims text
//! (UTF-8; a token's payload that is not UTF-8 is refused before any parse).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (scanner, serde) = tower_bearer::__fuzz::claims_json_both(text);
    // The same members (names, values, order, number kinds) or the same refusal.
    assert_eq!(scanner, serde, "{text:?}");
});
