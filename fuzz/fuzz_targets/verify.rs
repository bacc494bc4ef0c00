//! The full verifier on arbitrary tokens. The keys are random per process, so no input can be
//! a valid token: every token must be refused, with an error, never a panic.
//!
//! Input: first byte selects the verifier (bit 0) and the form (bit 1): raw token text, or
//! `header \xff payload \xff signature` raw bytes, each base64url-encoded here so the fuzzer
//! reaches the JSON parsing of header and claims.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let verifier = &common::verifiers()[usize::from(sel & 1)];
    let token = if sel & 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(s) => s.to_owned(),
            Err(_) => return,
        }
    } else {
        rest.split(|b| *b == 0xff)
            .map(|part| URL_SAFE_NO_PAD.encode(part))
            .collect::<Vec<_>>()
            .join(".")
    };
    if let Some(user) = common::verify_checked(verifier, &token) {
        panic!("forged token accepted: {:?}", user.claims());
    }
    if let Err(e) = verifier.try_verify(&token) {
        common::error_is_bounded(&e);
    }
});
