//! JWKS parsing: `KeySet::from_jwks` on arbitrary bytes, with several algorithm allow-lists.
//! Input: `sel json`; `sel` picks the allow-list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bearer::jwks::{Algorithm, KeySet};

const LISTS: [&[Algorithm]; 4] = [
    &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
    &[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ],
    &[Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA],
    &[
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
    ],
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, json)) = data.split_first() else {
        return;
    };
    let allowed = LISTS[usize::from(sel) % LISTS.len()];
    match KeySet::from_jwks(json, allowed) {
        Ok(set) => {
            assert_eq!(set.is_empty(), set.len() == 0);
            assert!(set.kids().count() <= set.len());
            let _ = format!("{set:?}");
        }
        Err(e) => {
            // Linear in the input. (The message may quote the document, escaped: serde_json
            // errors hold the offending value; reported, see fuzz/README.md.)
            let s = e.to_string();
            assert!(
                s.len() <= 8 * json.len() + 256,
                "error message of {} bytes",
                s.len()
            );
        }
    }
});
