//! The verifier on tokens signed with a trusted key whose header and payload the fuzzer
//! chooses: claim parsing and the checks after the signature see authentic hostile input.
//!
//! Input: `sel header \xff payload`. `sel` bit 0 picks the verifier (default with cache, or
//! strict), bits 1-2 the signing key (EdDSA `fuzz-ed25519`, ES256 `fuzz-p256`, ES256 under
//! the other issuer's `fuzz-other`; RS256 `fuzz-rsa` when both bits are set). The header and
//! payload bytes are signed as they are (any bytes, not only JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (header, payload) = match rest.iter().position(|b| *b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let keys = common::keys();
    let key = match (sel >> 1) & 3 {
        0 => &keys.ed,
        1 | 2 => &keys.es,
        _ => &keys.rs,
    };
    let token = key.sign_raw(header, payload).expect("signing");
    let verifier = &common::verifiers()[usize::from(sel & 1)];
    match common::verify_checked(verifier, &token) {
        Some(user) => {
            // An accepted token's claims are a JSON object that holds what the user reports.
            let claims = user.claims();
            assert!(claims.contains_key("exp"), "accepted without exp");
            if let Some(sub) = user.subject() {
                assert!(!sub.is_empty() || claims.get("sub").is_some());
            }
            let _ = (user.user_id(), user.tenant(), user.roles(), user.scopes());
            let _ = (
                user.permissions(),
                user.authorities(),
                user.policy_version(),
            );
        }
        None => {
            if let Err(e) = verifier.try_verify(&token) {
                common::error_is_bounded(&e);
            }
        }
    }
});
