//! Shared by the verifier targets: fixed test keys (generated once per process, test-only),
//! published under fixed `kid`s so that seed tokens name them, and verifiers on a fixed clock.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use tower_bearer::claims::{ClaimMapping, CurrentUser};
use tower_bearer::clock::ManualClock;
use tower_bearer::jwks::{Algorithm, KeySet};
use tower_bearer::signing::SigningKey;
use tower_bearer::verify::{IssuerConfig, Verifier};
use tower_bearer::AuthError;

pub const ISSUER: &str = "https://auth.example";
pub const OTHER_ISSUER: &str = "https://other.example";
pub const AUDIENCE: &str = "orders";
/// The verifiers' clock: seeds use `exp` 4000000000 (valid) and 1600000000 (expired).
pub const NOW: u64 = 1_700_000_000;
/// Leeway of the verifiers.
pub const LEEWAY: u64 = 30;

/// `kid`s the seeds use (the keys are random per process; only their `kid`s are fixed).
pub const KID_ED: &str = "fuzz-ed25519";
pub const KID_ES: &str = "fuzz-p256";
pub const KID_RS: &str = "fuzz-rsa";
pub const KID_OTHER: &str = "fuzz-other";

pub struct Keys {
    pub ed: SigningKey,
    pub es: SigningKey,
    pub rs: SigningKey,
}

/// Test-only keys, generated once per process.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        ed: SigningKey::generate(Algorithm::EdDSA).expect("ed25519 key"),
        es: SigningKey::generate(Algorithm::ES256).expect("p-256 key"),
        rs: SigningKey::generate(Algorithm::RS256).expect("rsa key"),
    })
}

fn jwk(key: &SigningKey, kid: &str) -> Value {
    let mut j = key.public_jwk();
    j["kid"] = Value::from(kid);
    j
}

fn key_set(keys: &[(&SigningKey, &str)], algs: &[Algorithm]) -> KeySet {
    let doc = json!({ "keys": keys.iter().map(|(k, kid)| jwk(k, kid)).collect::<Vec<_>>() });
    KeySet::from_jwks(doc.to_string().as_bytes(), algs).expect("key set")
}

/// The verifiers under test: `[0]` default options with the verified-token cache, `[1]` strict
/// (no cache, `typ` at+jwt, required claims, embedded keys refused, Keycloak-style nested role
/// mapping). Both trust `ISSUER` (EdDSA, ES256, RS256 keys) and `OTHER_ISSUER` (the ES256 key
/// under another `kid`).
pub fn verifiers() -> &'static [Verifier; 2] {
    static V: OnceLock<[Verifier; 2]> = OnceLock::new();
    V.get_or_init(|| {
        let k = keys();
        let algs = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];
        let issuers = || {
            [
                IssuerConfig::static_keys(
                    ISSUER,
                    key_set(&[(&k.ed, KID_ED), (&k.es, KID_ES), (&k.rs, KID_RS)], &algs),
                ),
                // A further issuer needs a user-id prefix (ids are unique only per issuer).
                IssuerConfig::static_keys(OTHER_ISSUER, key_set(&[(&k.es, KID_OTHER)], &algs))
                    .prefix("other"),
            ]
        };
        let clock = Arc::new(ManualClock::new(NOW));
        let [a, b] = issuers();
        let default = Verifier::builder()
            .issuer(a)
            .issuer(b)
            .audience(AUDIENCE)
            .algorithms(algs)
            .leeway(std::time::Duration::from_secs(LEEWAY))
            .clock(clock.clone())
            .build()
            .expect("default verifier");
        let [a, b] = issuers();
        let strict = Verifier::builder()
            .issuer(a)
            .issuer(b)
            .audience(AUDIENCE)
            .audience("billing")
            .algorithms(algs)
            .leeway(std::time::Duration::from_secs(LEEWAY))
            .clock(clock)
            .token_cache(0)
            .typ("at+jwt")
            .required_claims(["sub", "jti"])
            .reject_embedded_keys(true)
            .claim_mapping(ClaimMapping {
                roles: "realm_access.roles".into(),
                tenant: "org.id".into(),
                merge_authorities_claim: true,
                ..ClaimMapping::default()
            })
            .build()
            .expect("strict verifier");
        [default, strict]
    })
}

/// One current-thread runtime per process, for `Verifier::verify`.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
    .block_on(f)
}

/// Verifies `token` with `verifier` (async and sync entry points) and checks what every
/// accepted token must satisfy. Returns the user.
pub fn verify_checked(verifier: &Verifier, token: &str) -> Option<CurrentUser> {
    let result = block_on(verifier.verify(token));
    // Static keys: the I/O-free path must give the same answer (a second verification is a
    // cache hit on the default verifier).
    let again = verifier.try_verify(token);
    match (&result, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a.claims(), b.claims(), "cache hit differs from miss"),
        (Err(a), Err(b)) => assert_eq!(a, b, "second verification differs"),
        _ => panic!("verify {result:?} but try_verify {again:?}"),
    }
    if debug() {
        eprintln!(
            "{token}\n  -> {:?}",
            result.as_ref().map(CurrentUser::claims)
        );
    }
    let user = result.ok()?;
    assert!(
        user.issuer() == ISSUER || user.issuer() == OTHER_ISSUER,
        "accepted issuer {:?}",
        user.issuer()
    );
    assert!(
        user.audiences()
            .iter()
            .any(|a| a == AUDIENCE || a == "billing"),
        "accepted audiences {:?}",
        user.audiences()
    );
    assert!(
        user.expires_at() + LEEWAY >= NOW,
        "accepted exp {}",
        user.expires_at()
    );
    Some(user)
}

/// `FUZZ_DEBUG=1`: print each token and its verification result (to check the seeds).
fn debug() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

/// Errors are values, never panics; the display of an error never echoes input verbatim.
pub fn error_is_bounded(err: &AuthError) {
    let s = err.to_string();
    assert!(s.len() < 512, "error message of {} bytes", s.len());
}
