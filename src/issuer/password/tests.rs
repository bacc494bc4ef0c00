//! Vectors: `{sha256}` rows written by Spring's `StandardPasswordEncoder` (public, from a Spring
//! application's source); bcrypt and argon2 rows made with python `bcrypt` 5.0 and `argon2-cffi`
//! 25.1 (independent implementations); `{SHA-256}` computed with python `hashlib`.

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Counts hash computations running at once on the blocking pool.
#[derive(Debug, Default)]
pub(super) struct Probe {
    now: AtomicUsize,
    max: AtomicUsize,
}

pub(super) struct InFlight<'a>(&'a Probe);

impl Probe {
    pub(super) fn enter(&self) -> InFlight<'_> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        InFlight(self)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

const PW: &[u8] = b"correct horse";
const BCRYPT_2A: &str = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";
const BCRYPT_2B: &str = "{bcrypt}$2b$04$HDa8jki0VZ9JH0RtxkaN9.JczlXfMnh/ZeS.QCAEKrA7hdveajKyi";
const BCRYPT_2Y: &str = "{bcrypt}$2y$04$h2/W/oHUWNfLcMkwL1oX/udsOe35W00OxP.gnKvj4o430/kuaoYHm";
const BCRYPT_COST8: &str = "{bcrypt}$2b$08$Eh0cXJ.0IMhlg5E2x3ZWweL5wLrW6fFlQ7cH6cuTBBikvTDSJ1eHu";
/// bcrypt of `"x" * 71 + "y"` (exactly 72 bytes).
const BCRYPT_72: &str = "{bcrypt}$2b$04$Crf1kshWxD9b4gOVK.NR9Oyze4bgY/Wx3wJpNc.4KEp9wk8lIdouG";
const ARGON2ID_SPRING: &str = "{argon2}$argon2id$v=19$m=16384,t=2,p=1$K7k3UHgPffmJZTBm2vf5qw$ZSPIK1h+ckbQOS1yp0c50DMP5GWpiCklzOIlpH01CFk";
const ARGON2I: &str = "{argon2}$argon2i$v=19$m=4096,t=2,p=1$hT/g4G2aqLsVhkuBCvlNbQ$/f088ie3QCkMQnm2nWDDZMB4ybG/6CWc0b9fBw0VQ7g";
/// Spring `new StandardPasswordEncoder().encode("sky2013")`, twice (two salts).
const SPRING_SHA256_A: &str =
    "{sha256}627d3eb97bfb9bfd21307d84408b5e199aac37ad5065d81e14d1a60c2c48c4e0b4f51d3d6973b92f";
const SPRING_SHA256_B: &str =
    "{sha256}55a40d14d7088e95f8ee753f23352785447e5a784fd4818dbef85592de9d99c7039dab5dbfc82a56";
/// sha256("correct horse" + "{c2FsdHNhbHQ=}").
const MD_SHA256: &str =
    "{SHA-256}{c2FsdHNhbHQ=}00ef639e3b442889f063412d39930b244cf36db6f050d2c8849985e37271c5bc";
const MD_SHA256_NOSALT: &str =
    "{SHA-256}4104d36f8da2c254349f85836793ebe029e0c957063a34c91c2e9203187b5631";

fn parse(s: &str) -> PasswordHash {
    PasswordHash::parse(s).unwrap()
}

#[test]
fn bcrypt_vectors_all_versions() {
    for s in [BCRYPT_2A, BCRYPT_2B, BCRYPT_2Y, BCRYPT_COST8] {
        let h = parse(s);
        assert_eq!(h.scheme(), PasswordScheme::Bcrypt);
        assert!(h.verify_blocking(PW), "{s}");
        assert!(!h.verify_blocking(b"correct horsE"), "{s}");
        assert!(!h.verify_blocking(b""), "{s}");
        assert!(h.needs_upgrade());
    }
}

#[test]
fn bcrypt_72_bytes_ok_73_refused_never_truncated() {
    let h = parse(BCRYPT_72);
    let mut pw = vec![b'x'; 71];
    pw.push(b'y');
    assert!(h.verify_blocking(&pw));
    // A 73-byte password whose first 72 bytes match: bcrypt would truncate and accept it.
    pw.push(b'z');
    assert!(!h.verify_blocking(&pw));
    // The crate's truncating verify would have said yes: our refusal is what makes it false.
    assert!(bcrypt::verify(&pw, BCRYPT_72.trim_start_matches("{bcrypt}")).unwrap());
}

#[test]
fn argon2_vectors() {
    let h = parse(ARGON2ID_SPRING);
    assert!(h.verify_blocking(PW));
    assert!(!h.verify_blocking(b"correct horse "));
    assert!(h.needs_upgrade());
    assert!(!h.needs_upgrade_for(Argon2Params::SPRING));
    let i = parse(ARGON2I);
    assert!(i.verify_blocking(PW));
    assert!(!i.verify_blocking(b"x"));
    assert!(
        i.needs_upgrade_for(Argon2Params::new(8, 1, 1)),
        "argon2i always upgrades"
    );
    // Padded base64 (Java's default encoder) is accepted too.
    let padded = ARGON2ID_SPRING.replace("$K7k3UHgPffmJZTBm2vf5qw$", "$K7k3UHgPffmJZTBm2vf5qw==$");
    assert!(parse(&padded).verify_blocking(PW));
}

#[test]
fn spring_standard_password_encoder_vectors() {
    for s in [SPRING_SHA256_A, SPRING_SHA256_B] {
        let h = parse(s);
        assert_eq!(h.scheme(), PasswordScheme::Sha256);
        assert!(h.verify_blocking(b"sky2013"));
        assert!(!h.verify_blocking(b"sky2014"));
        assert!(h.needs_upgrade());
    }
    // Upper-case hex is what some tools write; Spring's Hex.decode accepts it.
    assert!(
        parse(
            &SPRING_SHA256_A
                .to_uppercase()
                .replace("{SHA256}", "{sha256}")
        )
        .verify_blocking(b"sky2013")
    );
}

#[test]
fn spring_message_digest_encoder_vectors() {
    let h = parse(MD_SHA256);
    assert_eq!(h.scheme(), PasswordScheme::MessageDigestSha256);
    assert!(h.verify_blocking(PW));
    assert!(!h.verify_blocking(b"correct horse{c2FsdHNhbHQ=}"));
    assert!(parse(MD_SHA256_NOSALT).verify_blocking(PW));
}

#[test]
fn malformed_and_unsupported_refused_by_name() {
    let cases = [
        ("", "missing `{id}`"),
        ("$2a$10$abc", "missing `{id}`"),
        ("{bcrypt", "unterminated"),
        ("{pbkdf2}abcd", "unsupported password encoder id `pbkdf2`"),
        ("{scrypt}abcd", "`scrypt`"),
        (
            "{bcrypt}$2x$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.",
            "2a, 2b or 2y",
        ),
        (
            "{bcrypt}$2a$31$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.",
            "cost 31",
        ),
        (
            "{bcrypt}$2a$03$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.",
            "cost 3",
        ),
        ("{bcrypt}$2a$04$short", "53"),
        (
            "{argon2}$argon2id$v=19$m=16384,t=2$K7k3UHgPffmJZTBm2vf5qw$ZSPIK1h+ckbQOS1yp0c50DMP5GWpiCklzOIlpH01CFk",
            "required",
        ),
        (
            "{argon2}$argon2id$v=19$m=9999999,t=2,p=1$K7k3UHgPffmJZTBm2vf5qw$ZSPIK1h+ckbQOS1yp0c50DMP5GWpiCklzOIlpH01CFk",
            "limits",
        ),
        (
            "{argon2}$argon2x$v=19$m=16384,t=2,p=1$K7k3UHgPffmJZTBm2vf5qw$ZSPIK1h+ckbQOS1yp0c50DMP5GWpiCklzOIlpH01CFk",
            "type",
        ),
        (
            "{argon2}$argon2id$v=19$m=16384,t=2,p=1$!!$ZSPIK1h+ckbQOS1yp0c50DMP5GWpiCklzOIlpH01CFk",
            "salt",
        ),
        ("{sha256}abcd", "80 hex"),
        (
            "{sha256}zz7d3eb97bfb9bfd21307d84408b5e199aac37ad5065d81e14d1a60c2c48c4e0b4f51d3d6973b92f",
            "80 hex",
        ),
        ("{SHA-256}{salt", "unterminated"),
    ];
    for (input, want) in cases {
        let err = PasswordHash::parse(input).unwrap_err().to_string();
        assert!(err.contains(want), "{input:?}: {err}");
        assert!(err.starts_with("invalid setting `password-hash`"), "{err}");
    }
}

#[cfg(not(feature = "insecure-dev"))]
#[test]
fn noop_refused_without_insecure_dev() {
    let err = PasswordHash::parse("{noop}secret").unwrap_err().to_string();
    assert!(err.contains("insecure-dev"), "{err}");
    assert!(!err.contains("secret`"), "{err}");
}

#[cfg(feature = "insecure-dev")]
#[test]
fn noop_accepted_with_insecure_dev() {
    let h = parse("{noop}secret");
    assert_eq!(h.scheme(), PasswordScheme::Noop);
    assert!(h.verify_blocking(b"secret"));
    assert!(!h.verify_blocking(b"secreT"));
    assert!(h.needs_upgrade());
}

#[test]
fn debug_never_shows_hash_material() {
    for s in [BCRYPT_2A, ARGON2ID_SPRING, SPRING_SHA256_A, MD_SHA256] {
        let d = format!("{:?}", parse(s));
        let body = s.split('$').next_back().unwrap();
        assert!(!d.contains(&body[body.len() - 12..]), "{d}");
    }
}

#[test]
fn long_passwords_refused_before_hashing() {
    let h = parse(SPRING_SHA256_A);
    assert!(!h.verify_blocking(&vec![b'a'; MAX_PASSWORD_LEN + 1]));
    let hasher = PasswordHasher::new(1);
    assert!(
        hasher
            .hash_blocking(&vec![b'a'; MAX_PASSWORD_LEN + 1])
            .is_err()
    );
}

#[tokio::test]
async fn hash_round_trip_is_argon2id_owasp() {
    let hasher = PasswordHasher::new(2);
    let s = hasher.hash(PW).await.unwrap();
    assert!(
        s.starts_with("{argon2}$argon2id$v=19$m=19456,t=2,p=1$"),
        "{s}"
    );
    let h = parse(&s);
    assert!(!h.needs_upgrade());
    assert!(!hasher.needs_upgrade(&h));
    assert!(hasher.verify(PW, Some(&h)).await);
    assert!(!hasher.verify(b"correct horsE", Some(&h)).await);
    // Salt 16 bytes, output 32 bytes, standard base64 without padding (PHC, as Spring writes).
    let parts: Vec<&str> = s.split('$').collect();
    assert_eq!(parts[4].len(), 22);
    assert_eq!(parts[5].len(), 43);
    assert!(!parts[4].contains('=') && !parts[5].contains('='));
}

#[tokio::test]
async fn hash_verifies_with_python_argon2_cffi_format_and_params_upgrade() {
    let hasher = PasswordHasher::new(1)
        .with_params(Argon2Params::SPRING)
        .unwrap();
    let spring = parse(ARGON2ID_SPRING);
    assert!(!hasher.needs_upgrade(&spring));
    assert!(hasher.verify(PW, Some(&spring)).await);
    assert!(
        PasswordHasher::new(1)
            .with_params(Argon2Params::new(1, 0, 0))
            .is_err()
    );
}

#[tokio::test]
async fn unknown_id_is_false_and_dummy_has_same_scheme_and_cost() {
    let row = parse(BCRYPT_COST8);
    let hasher = PasswordHasher::new(2).with_dummy_like(&row);
    let dbg = format!("{hasher:?}");
    assert!(dbg.contains("Bcrypt") && dbg.contains("cost: 8"), "{dbg}");
    assert!(!hasher.verify(PW, None).await);
    assert!(!hasher.verify(b"", None).await);

    let argon = parse(ARGON2ID_SPRING);
    let hasher = PasswordHasher::new(2).with_dummy_like(&argon);
    let dbg = format!("{hasher:?}");
    assert!(dbg.contains("m_kib: 16384"), "{dbg}");
    assert!(!hasher.verify(PW, None).await);
}

async fn median_time(hasher: &PasswordHasher, hash: Option<&PasswordHash>) -> Duration {
    let mut v = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        assert!(!hasher.verify(b"wrong", hash).await);
        v.push(t.elapsed());
    }
    v.sort();
    v[2]
}

#[tokio::test]
async fn dummy_costs_as_much_as_a_real_check() {
    for row in [BCRYPT_COST8, ARGON2ID_SPRING] {
        let row = parse(row);
        let hasher = PasswordHasher::new(1).with_dummy_like(&row);
        let real = median_time(&hasher, Some(&row)).await;
        let dummy = median_time(&hasher, None).await;
        // The same work: within a factor of 3 of each other even on a busy machine, while a
        // check that skipped hashing would be orders of magnitude faster.
        assert!(
            dummy * 3 >= real && real * 3 >= dummy,
            "real {real:?} dummy {dummy:?}"
        );
    }
    // Default dummy: argon2id OWASP, the same as hashes made by `hash`.
    let hasher = PasswordHasher::new(1);
    let own = parse(&hasher.hash(PW).await.unwrap());
    let real = median_time(&hasher, Some(&own)).await;
    let dummy = median_time(&hasher, None).await;
    assert!(
        dummy * 3 >= real && real * 3 >= dummy,
        "real {real:?} dummy {dummy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn semaphore_bounds_concurrent_checks() {
    let row = parse(BCRYPT_COST8);
    for bound in [1, 2, 3] {
        let hasher = PasswordHasher::new(bound);
        let mut tasks = Vec::new();
        for i in 0..12 {
            let (h, r) = (hasher.clone(), row.clone());
            let pw: &'static [u8] = if i % 3 == 0 { b"wrong" } else { PW };
            tasks.push(tokio::spawn(async move {
                (h.verify(pw, Some(&r)).await, pw == PW)
            }));
        }
        for task in tasks {
            let (got, want) = task.await.unwrap();
            assert_eq!(got, want);
        }
        // Never more than `bound` at once; with 12 queued checks, parallelism did happen.
        let max = hasher.inner.probe.max.load(Ordering::SeqCst);
        assert!(
            max <= bound && max >= bound.min(2),
            "bound {bound} max {max}"
        );
        assert_eq!(hasher.inner.probe.now.load(Ordering::SeqCst), 0);
        assert_eq!(hasher.inner.permits.available_permits(), bound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_workers_stay_responsive_during_checks() {
    let row = parse(BCRYPT_COST8);
    let hasher = PasswordHasher::new(2);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (h, r) = (hasher.clone(), row.clone());
        tasks.push(tokio::spawn(async move { h.verify(PW, Some(&r)).await }));
    }
    // A timer on the async workers still fires on time while 8 checks are queued.
    let t = Instant::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(t.elapsed() < Duration::from_millis(500));
    for task in tasks {
        assert!(task.await.unwrap());
    }
}
