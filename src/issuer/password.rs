//! Password and client-secret hashes in Spring `DelegatingPasswordEncoder` format.
//!
//! A stored hash is `{id}encoded`, exactly as Spring Security's `DelegatingPasswordEncoder`
//! writes it, so user and client rows migrate from a Spring Authorization Server unchanged:
//!
//! | id | Spring encoder | encoded form |
//! |----|----------------|--------------|
//! | `{bcrypt}` | `BCryptPasswordEncoder` | `$2a$10$` + 22 chars salt + 31 chars hash (`$2b$`, `$2y$` accepted) |
//! | `{argon2}` | `Argon2PasswordEncoder` | PHC string `$argon2id$v=19$m=16384,t=2,p=1$<salt>$<hash>` (standard base64, no padding; `argon2i`/`argon2d` accepted) |
//! | `{sha256}` | `StandardPasswordEncoder` (deprecated in Spring) | hex of 8-byte salt ‖ digest; digest = SHA-256 applied 1024 times, first to salt ‖ secret ‖ password (UTF-8); the site secret is empty, Spring's default |
//! | `{SHA-256}` | `MessageDigestPasswordEncoder("SHA-256")` (deprecated) | `{salt}` + hex of SHA-256(password + `{salt}`), one iteration |
//! | `{noop}` | `NoOpPasswordEncoder` | the clear text; refused unless feature `insecure-dev` |
//!
//! Any other id (`{pbkdf2}`, `{scrypt}`, …) or a hash without an `{id}` is refused when it is
//! parsed, with a [`ConfigError`] naming the id.
//!
//! New hashes are argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1, 16-byte salt,
//! 32-byte output): [`PasswordHash::needs_upgrade`] is `true` for every other scheme and for
//! argon2 hashes weaker than that (Spring's own defaults, m = 16384, included), so the caller can
//! re-hash after a successful login.
//!
//! Limits: passwords longer than [`MAX_PASSWORD_LEN`] bytes never match; for bcrypt, passwords
//! longer than 72 bytes never match (bcrypt ignores everything after byte 72; we refuse rather
//! than truncate). Hashes whose cost would let a configuration stall the server (bcrypt cost >
//! 16, argon2 memory > 256 MiB, t > 16 or p > 16) are refused at parse time.
//!
//! Every check runs through [`PasswordHasher`] on tokio's blocking pool, at most
//! `max_concurrent` at a time (a semaphore), never on the async workers; an unknown user or
//! client is checked against a dummy hash of the same cost, so the answer time does not tell
//! whether the account exists. Comparisons are constant time.
//!
//! # Example
//!
//! ```
//! use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hasher = PasswordHasher::new(4);
//! let encoded = hasher.hash(b"correct horse").await.unwrap();
//! assert!(encoded.starts_with("{argon2}$argon2id$v=19$m=19456,t=2,p=1$"));
//!
//! let hash = PasswordHash::parse(&encoded).unwrap();
//! assert!(!hash.needs_upgrade());
//! assert!(hasher.verify(b"correct horse", Some(&hash)).await);
//! assert!(!hasher.verify(b"wrong horse", Some(&hash)).await);
//! // Unknown user: a dummy hash of the same cost is checked, the answer is always `false`.
//! assert!(!hasher.verify(b"correct horse", None).await);
//!
//! // A row written by Spring's StandardPasswordEncoder still verifies, and asks for an upgrade.
//! let spring = PasswordHash::parse(
//!     "{sha256}627d3eb97bfb9bfd21307d84408b5e199aac37ad5065d81e14d1a60c2c48c4e0b4f51d3d6973b92f",
//! ).unwrap();
//! assert!(hasher.verify(b"sky2013", Some(&spring)).await);
//! assert!(spring.needs_upgrade());
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::error::ConfigError;

/// Longest password (or client secret) in bytes that can ever match; longer ones are refused
/// before any hashing, so a huge body cannot buy CPU time.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// bcrypt only reads 72 bytes; longer passwords never match (no silent truncation).
pub const BCRYPT_MAX_PASSWORD_LEN: usize = 72;

const MAX_BCRYPT_COST: u32 = 16;
const MAX_ARGON2_M_KIB: u32 = 256 * 1024;
const MAX_ARGON2_T: u32 = 16;
const MAX_ARGON2_P: u32 = 16;
const STANDARD_SALT_LEN: usize = 8;
const STANDARD_ITERATIONS: usize = 1024;
const SHA256_LEN: usize = 32;

/// The argon2id parameters new hashes are made with (OWASP Password Storage Cheat Sheet:
/// m = 19456 KiB, t = 2, p = 1), with a 16-byte salt and a 32-byte output.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::password::Argon2Params;
///
/// let p = Argon2Params::OWASP;
/// assert_eq!((p.m_kib, p.t, p.p), (19456, 2, 1));
/// assert_eq!(Argon2Params::default(), p);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism (lanes).
    pub p: u32,
}

impl Argon2Params {
    /// OWASP's argon2id minimum: m = 19456 KiB, t = 2, p = 1.
    pub const OWASP: Self = Self {
        m_kib: 19456,
        t: 2,
        p: 1,
    };

    /// Spring Security's `Argon2PasswordEncoder.defaultsForSpringSecurity_v5_8()`:
    /// m = 16384 KiB, t = 2, p = 1.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::Argon2Params;
    ///
    /// assert_eq!(Argon2Params::SPRING.m_kib, 16384);
    /// ```
    pub const SPRING: Self = Self {
        m_kib: 16384,
        t: 2,
        p: 1,
    };

    /// Parameters of your own choice (checked when used: m ≥ 8·p KiB, t ≥ 1, 1 ≤ p).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::Argon2Params;
    ///
    /// let p = Argon2Params::new(65536, 3, 1);
    /// assert_eq!(p.m_kib, 65536);
    /// ```
    pub const fn new(m_kib: u32, t: u32, p: u32) -> Self {
        Self { m_kib, t, p }
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::OWASP
    }
}

/// The scheme of a [`PasswordHash`] (its Spring `{id}`).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::password::{PasswordHash, PasswordScheme};
///
/// let h = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
/// assert_eq!(h.scheme(), PasswordScheme::Bcrypt);
/// assert_eq!(PasswordScheme::Bcrypt.id(), "bcrypt");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PasswordScheme {
    /// `{bcrypt}`: Spring's `BCryptPasswordEncoder`.
    Bcrypt,
    /// `{argon2}`: Spring's `Argon2PasswordEncoder` (PHC string).
    Argon2,
    /// `{sha256}`: Spring's `StandardPasswordEncoder` (SHA-256, 1024 iterations, 8-byte salt).
    Sha256,
    /// `{SHA-256}`: Spring's `MessageDigestPasswordEncoder("SHA-256")`.
    MessageDigestSha256,
    /// `{noop}`: clear text (feature `insecure-dev` only).
    Noop,
}

impl PasswordScheme {
    /// The id between the braces, as Spring spells it.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordScheme;
    ///
    /// assert_eq!(PasswordScheme::MessageDigestSha256.id(), "SHA-256");
    /// ```
    pub fn id(self) -> &'static str {
        match self {
            Self::Bcrypt => "bcrypt",
            Self::Argon2 => "argon2",
            Self::Sha256 => "sha256",
            Self::MessageDigestSha256 => "SHA-256",
            Self::Noop => "noop",
        }
    }
}

#[derive(Clone)]
enum Kind {
    Bcrypt {
        cost: u32,
    },
    Argon2 {
        algorithm: argon2::Algorithm,
        version: argon2::Version,
        params: Argon2Params,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha256 {
        salt: [u8; STANDARD_SALT_LEN],
        digest: [u8; SHA256_LEN],
    },
    MessageDigest {
        salt: String,
        digest: [u8; SHA256_LEN],
    },
    #[cfg(feature = "insecure-dev")]
    Noop,
}

/// A parsed password or client-secret hash in Spring `DelegatingPasswordEncoder` format.
///
/// `Debug` shows the scheme and its cost only, never the hash. See the
/// [module docs](crate::issuer::password) for the formats and an example.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::password::{PasswordHash, PasswordScheme};
///
/// let h = PasswordHash::parse(
///     "{argon2}$argon2id$v=19$m=16384,t=2,p=1$K7k3UHgPffmJZTBm2vf5qw$ZSPIK1h+ckbQOS1yp0c50DMP5GWpiCklzOIlpH01CFk",
/// ).unwrap();
/// assert_eq!(h.scheme(), PasswordScheme::Argon2);
/// assert!(h.verify_blocking(b"correct horse"));
/// assert!(h.needs_upgrade()); // Spring's m=16384 is below the OWASP 19456
/// assert!(!format!("{h:?}").contains("ZSPIK"));
/// ```
#[derive(Clone)]
pub struct PasswordHash {
    encoded: Zeroizing<String>,
    kind: Kind,
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PasswordHash");
        d.field("scheme", &self.scheme());
        match &self.kind {
            Kind::Bcrypt { cost } => {
                d.field("cost", cost);
            }
            Kind::Argon2 {
                algorithm, params, ..
            } => {
                d.field("algorithm", &algorithm.as_str())
                    .field("params", params);
            }
            _ => {}
        }
        d.finish_non_exhaustive()
    }
}

impl PartialEq for PasswordHash {
    fn eq(&self, other: &Self) -> bool {
        *self.encoded == *other.encoded
    }
}

impl Eq for PasswordHash {}

fn invalid(reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: "password-hash",
        reason: reason.into(),
    }
}

impl PasswordHash {
    /// Parses `{id}encoded` (see the [module docs](crate::issuer::password) for the formats).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordHash;
    ///
    /// assert!(PasswordHash::parse("{pbkdf2}abc").is_err());
    /// assert!(PasswordHash::parse("$2a$10$no-prefix").is_err());
    /// let err = PasswordHash::parse("{noop}secret");
    /// assert_eq!(err.is_err(), !cfg!(feature = "insecure-dev"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] (name `password-hash`) for a missing or unsupported `{id}`, a
    /// malformed hash, a cost above the limits, or `{noop}` without feature `insecure-dev`. The
    /// message never contains the hash.
    pub fn parse(encoded: &str) -> Result<Self, ConfigError> {
        let encoded = encoded.trim();
        let Some(rest) = encoded.strip_prefix('{') else {
            return Err(invalid(
                "missing `{id}` prefix (expected {bcrypt}, {argon2}, {sha256}, {SHA-256})",
            ));
        };
        let Some((id, body)) = rest.split_once('}') else {
            return Err(invalid("unterminated `{id}` prefix"));
        };
        let kind = match id {
            "bcrypt" => parse_bcrypt(body)?,
            "argon2" => parse_argon2(body)?,
            "sha256" => parse_standard(body)?,
            "SHA-256" => parse_message_digest(body)?,
            "noop" => parse_noop()?,
            other => {
                let shown: String = other.chars().take(16).collect();
                return Err(invalid(format!(
                    "unsupported password encoder id `{shown}`"
                )));
            }
        };
        Ok(Self {
            encoded: Zeroizing::new(encoded.to_owned()),
            kind,
        })
    }

    /// The scheme (Spring `{id}`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{PasswordHash, PasswordScheme};
    ///
    /// let h = PasswordHash::parse("{sha256}627d3eb97bfb9bfd21307d84408b5e199aac37ad5065d81e14d1a60c2c48c4e0b4f51d3d6973b92f").unwrap();
    /// assert_eq!(h.scheme(), PasswordScheme::Sha256);
    /// ```
    pub fn scheme(&self) -> PasswordScheme {
        match &self.kind {
            Kind::Bcrypt { .. } => PasswordScheme::Bcrypt,
            Kind::Argon2 { .. } => PasswordScheme::Argon2,
            Kind::Sha256 { .. } => PasswordScheme::Sha256,
            Kind::MessageDigest { .. } => PasswordScheme::MessageDigestSha256,
            #[cfg(feature = "insecure-dev")]
            Kind::Noop => PasswordScheme::Noop,
        }
    }

    /// The encoded form, `{id}…`, as parsed (what a store keeps).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordHash;
    ///
    /// let s = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";
    /// assert_eq!(PasswordHash::parse(s).unwrap().as_str(), s);
    /// ```
    pub fn as_str(&self) -> &str {
        &self.encoded
    }

    /// `true` when the hash is not argon2id at least as strong as [`Argon2Params::OWASP`]
    /// (version 0x13, 32-byte output): the caller should re-hash after a successful check
    /// (see [`PasswordHasher::hash`]).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordHash;
    ///
    /// let h = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
    /// assert!(h.needs_upgrade());
    /// ```
    pub fn needs_upgrade(&self) -> bool {
        self.needs_upgrade_for(Argon2Params::OWASP)
    }

    /// [`needs_upgrade`](Self::needs_upgrade) against the given target parameters.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{Argon2Params, PasswordHash};
    ///
    /// let h = PasswordHash::parse(
    ///     "{argon2}$argon2id$v=19$m=16384,t=2,p=1$K7k3UHgPffmJZTBm2vf5qw$ZSPIK1h+ckbQOS1yp0c50DMP5GWpiCklzOIlpH01CFk",
    /// ).unwrap();
    /// assert!(!h.needs_upgrade_for(Argon2Params::SPRING));
    /// assert!(h.needs_upgrade_for(Argon2Params::OWASP));
    /// ```
    pub fn needs_upgrade_for(&self, target: Argon2Params) -> bool {
        match &self.kind {
            Kind::Argon2 {
                algorithm,
                version,
                params,
                hash,
                ..
            } => {
                *algorithm != argon2::Algorithm::Argon2id
                    || *version != argon2::Version::V0x13
                    || params.m_kib < target.m_kib
                    || params.t < target.t
                    || hash.len() < SHA256_LEN
            }
            _ => true,
        }
    }

    /// Checks `password` on the calling thread (CPU-heavy: from async code use
    /// [`PasswordHasher::verify`], which runs this on the bounded blocking pool). Constant-time
    /// comparison; `false` for a password longer than [`MAX_PASSWORD_LEN`], or longer than 72
    /// bytes against bcrypt.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordHash;
    ///
    /// let h = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
    /// assert!(h.verify_blocking(b"correct horse"));
    /// assert!(!h.verify_blocking(b"correct horsf"));
    /// ```
    pub fn verify_blocking(&self, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match &self.kind {
            Kind::Bcrypt { .. } => {
                if password.len() > BCRYPT_MAX_PASSWORD_LEN {
                    return false;
                }
                let bcrypt_part = self.encoded.split_once('}').map_or("", |(_, body)| body);
                // `bcrypt::verify` compares in constant time (subtle); passwords of at most 72
                // bytes are never truncated (only the NUL terminator is dropped at exactly 72,
                // as in jBCrypt / Spring).
                bcrypt::verify(password, bcrypt_part).unwrap_or(false)
            }
            Kind::Argon2 {
                algorithm,
                version,
                params,
                salt,
                hash,
            } => {
                let Ok(p) = argon2::Params::new(params.m_kib, params.t, params.p, Some(hash.len()))
                else {
                    return false;
                };
                let ctx = argon2::Argon2::new(*algorithm, *version, p);
                let mut out = Zeroizing::new(vec![0u8; hash.len()]);
                if ctx.hash_password_into(password, salt, &mut out).is_err() {
                    return false;
                }
                ct_eq(&out, hash)
            }
            Kind::Sha256 { salt, digest } => ct_eq(&standard_digest(salt, password), digest),
            Kind::MessageDigest { salt, digest } => {
                let mut input = Zeroizing::new(Vec::with_capacity(password.len() + salt.len()));
                input.extend_from_slice(password);
                input.extend_from_slice(salt.as_bytes());
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
                ct_eq(d.as_ref(), digest)
            }
            #[cfg(feature = "insecure-dev")]
            Kind::Noop => {
                let clear = self
                    .encoded
                    .split_once('}')
                    .map_or("", |(_, body)| body)
                    .as_bytes();
                ct_eq(clear, password)
            }
        }
    }

    /// A hash of the same scheme and cost that no password matches in practice (random salt and
    /// random output): what an unknown user or client is checked against.
    fn dummy_like(&self) -> Self {
        let kind = match &self.kind {
            Kind::Bcrypt { cost } => {
                // A real bcrypt string of the same cost, over a random password nobody knows.
                let mut pw = Zeroizing::new([0u8; 32]);
                fill_random(&mut pw[..]);
                let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&pw[..]);
                match bcrypt::hash(b64.as_bytes(), *cost) {
                    Ok(s) => {
                        return Self {
                            encoded: Zeroizing::new(format!("{{bcrypt}}{s}")),
                            kind: Kind::Bcrypt { cost: *cost },
                        };
                    }
                    Err(_) => return Self::default_dummy(),
                }
            }
            Kind::Argon2 {
                algorithm,
                version,
                params,
                salt,
                hash,
            } => {
                let mut s = vec![0u8; salt.len()];
                fill_random(&mut s);
                let mut h = vec![0u8; hash.len()];
                fill_random(&mut h);
                Kind::Argon2 {
                    algorithm: *algorithm,
                    version: *version,
                    params: *params,
                    salt: s,
                    hash: h,
                }
            }
            Kind::Sha256 { .. } => {
                let mut salt = [0u8; STANDARD_SALT_LEN];
                let mut digest = [0u8; SHA256_LEN];
                fill_random(&mut salt);
                fill_random(&mut digest);
                Kind::Sha256 { salt, digest }
            }
            Kind::MessageDigest { salt, .. } => {
                let mut digest = [0u8; SHA256_LEN];
                fill_random(&mut digest);
                Kind::MessageDigest {
                    salt: salt.clone(),
                    digest,
                }
            }
            #[cfg(feature = "insecure-dev")]
            Kind::Noop => return Self::default_dummy(),
        };
        Self {
            encoded: Zeroizing::new(String::from("{dummy}")),
            kind,
        }
    }

    fn default_dummy() -> Self {
        Self::dummy_argon2(Argon2Params::OWASP)
    }

    fn dummy_argon2(params: Argon2Params) -> Self {
        let mut salt = vec![0u8; 16];
        fill_random(&mut salt);
        let mut hash = vec![0u8; SHA256_LEN];
        fill_random(&mut hash);
        Self {
            encoded: Zeroizing::new(String::from("{dummy}")),
            kind: Kind::Argon2 {
                algorithm: argon2::Algorithm::Argon2id,
                version: argon2::Version::V0x13,
                params,
                salt,
                hash,
            },
        }
    }
}

impl std::str::FromStr for PasswordHash {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn parse_bcrypt(body: &str) -> Result<Kind, ConfigError> {
    // `$2a$10$` + 53 characters of bcrypt base64.
    let mut parts = body.split('$');
    let (Some(""), Some(version), Some(cost), Some(rest), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid("bcrypt: expected $2a$<cost>$<53 characters>"));
    };
    if !matches!(version, "2a" | "2b" | "2y") {
        return Err(invalid("bcrypt: version must be 2a, 2b or 2y"));
    }
    if cost.len() != 2 || !cost.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("bcrypt: cost must be two digits"));
    }
    let cost: u32 = cost.parse().map_err(|_| invalid("bcrypt: bad cost"))?;
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(invalid(format!(
            "bcrypt: cost {cost} outside 4..={MAX_BCRYPT_COST}"
        )));
    }
    if rest.len() != 53
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err(invalid(
            "bcrypt: salt and hash must be 53 bcrypt-base64 characters",
        ));
    }
    Ok(Kind::Bcrypt { cost })
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

fn parse_argon2(body: &str) -> Result<Kind, ConfigError> {
    // $argon2id$v=19$m=16384,t=2,p=1$<salt>$<hash>
    let mut parts = body.split('$');
    let (Some(""), Some(alg), Some(version), Some(params), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid(
            "argon2: expected $argon2id$v=19$m=<kib>,t=<n>,p=<n>$<salt>$<hash>",
        ));
    };
    let algorithm = match alg {
        "argon2id" => argon2::Algorithm::Argon2id,
        "argon2i" => argon2::Algorithm::Argon2i,
        "argon2d" => argon2::Algorithm::Argon2d,
        _ => return Err(invalid("argon2: type must be argon2id, argon2i or argon2d")),
    };
    let version = match version {
        "v=19" => argon2::Version::V0x13,
        "v=16" => argon2::Version::V0x10,
        _ => return Err(invalid("argon2: version must be v=19 or v=16")),
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in params.split(',') {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| invalid("argon2: parameters must be m=..,t=..,p=.."))?;
        let v: u32 = v
            .parse()
            .map_err(|_| invalid(format!("argon2: parameter `{k}` is not a number")))?;
        let slot = match k {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            _ => return Err(invalid("argon2: unknown parameter (expected m, t, p)")),
        };
        if slot.replace(v).is_some() {
            return Err(invalid(format!("argon2: parameter `{k}` repeated")));
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(invalid("argon2: m, t and p are all required"));
    };
    if m > MAX_ARGON2_M_KIB || t > MAX_ARGON2_T || p > MAX_ARGON2_P {
        return Err(invalid(format!(
            "argon2: cost above the limits (m <= {MAX_ARGON2_M_KIB}, t <= {MAX_ARGON2_T}, p <= {MAX_ARGON2_P})"
        )));
    }
    let salt = b64_decode(salt).ok_or_else(|| invalid("argon2: salt is not base64"))?;
    let hash = b64_decode(hash).ok_or_else(|| invalid("argon2: hash is not base64"))?;
    if salt.len() < argon2::MIN_SALT_LEN || salt.len() > 64 {
        return Err(invalid("argon2: salt must be 8 to 64 bytes"));
    }
    if hash.len() < 16 || hash.len() > 64 {
        return Err(invalid("argon2: hash must be 16 to 64 bytes"));
    }
    if argon2::Params::new(m, t, p, Some(hash.len())).is_err() {
        return Err(invalid("argon2: parameters out of range"));
    }
    Ok(Kind::Argon2 {
        algorithm,
        version,
        params: Argon2Params::new(m, t, p),
        salt,
        hash,
    })
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

fn parse_standard(body: &str) -> Result<Kind, ConfigError> {
    let bytes = hex_decode(body)
        .filter(|b| b.len() == STANDARD_SALT_LEN + SHA256_LEN)
        .ok_or_else(|| invalid("sha256: expected 80 hex digits (8-byte salt + SHA-256 digest)"))?;
    let mut salt = [0u8; STANDARD_SALT_LEN];
    salt.copy_from_slice(&bytes[..STANDARD_SALT_LEN]);
    let mut digest = [0u8; SHA256_LEN];
    digest.copy_from_slice(&bytes[STANDARD_SALT_LEN..]);
    Ok(Kind::Sha256 { salt, digest })
}

fn parse_message_digest(body: &str) -> Result<Kind, ConfigError> {
    // `{salt}hex`: Spring's MessageDigestPasswordEncoder keeps the braces in the salt.
    let (salt, hex) = match body.strip_prefix('{') {
        Some(rest) => {
            let (s, h) = rest
                .split_once('}')
                .ok_or_else(|| invalid("SHA-256: unterminated {salt}"))?;
            (format!("{{{s}}}"), h)
        }
        None => (String::new(), body),
    };
    let bytes = hex_decode(hex)
        .filter(|b| b.len() == SHA256_LEN)
        .ok_or_else(|| invalid("SHA-256: expected {salt} + 64 hex digits"))?;
    let mut digest = [0u8; SHA256_LEN];
    digest.copy_from_slice(&bytes);
    Ok(Kind::MessageDigest { salt, digest })
}

#[cfg(feature = "insecure-dev")]
fn parse_noop() -> Result<Kind, ConfigError> {
    tracing::warn!("a {{noop}} (clear text) password hash is in use: feature insecure-dev only");
    Ok(Kind::Noop)
}

#[cfg(not(feature = "insecure-dev"))]
fn parse_noop() -> Result<Kind, ConfigError> {
    Err(invalid(
        "{noop} (clear text) is refused; it needs the insecure-dev feature",
    ))
}

/// Spring `StandardPasswordEncoder` with an empty secret: SHA-256 applied 1024 times, the
/// first time to salt ‖ password.
fn standard_digest(salt: &[u8; STANDARD_SALT_LEN], password: &[u8]) -> [u8; SHA256_LEN] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(salt);
    ctx.update(password);
    let mut cur = [0u8; SHA256_LEN];
    cur.copy_from_slice(ctx.finish().as_ref());
    for _ in 1..STANDARD_ITERATIONS {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cur);
        cur.copy_from_slice(d.as_ref());
    }
    cur
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    #[allow(deprecated)]
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

fn fill_random(buf: &mut [u8]) {
    // The system RNG failing is not recoverable in any meaningful way; aws-lc aborts itself
    // in that case, so the error branch is unreachable in practice. Keep zeros out anyway.
    if aws_lc_rs::rand::fill(buf).is_err() {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
    }
}

/// Checks and makes password hashes on tokio's blocking pool, at most `max_concurrent` at a
/// time (an `Arc<Semaphore>`), so that logins can never starve the async workers. Cheap to
/// clone (clones share the semaphore).
///
/// See the [module docs](crate::issuer::password) for an example.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let spring = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
/// // Unknown users are checked against a bcrypt hash of the same cost as the real rows.
/// let hasher = PasswordHasher::new(2).with_dummy_like(&spring);
/// assert!(hasher.verify(b"correct horse", Some(&spring)).await);
/// assert!(!hasher.verify(b"correct horse", None).await);
/// assert_eq!(hasher.max_concurrent(), 2);
/// # }
/// ```
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    params: Argon2Params,
    dummy: PasswordHash,
    #[cfg(test)]
    probe: Arc<tests::Probe>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("max_concurrent", &self.inner.max_concurrent)
            .field("available", &self.inner.permits.available_permits())
            .field("params", &self.inner.params)
            .field("dummy", &self.inner.dummy)
            .finish()
    }
}

impl PasswordHasher {
    /// At most `max_concurrent` (at least 1) hash computations at a time; new hashes argon2id
    /// with [`Argon2Params::OWASP`]; unknown ids checked against an argon2id dummy of the same
    /// parameters (see [`with_dummy_like`](Self::with_dummy_like) when your rows are bcrypt).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordHasher;
    ///
    /// assert_eq!(PasswordHasher::new(0).max_concurrent(), 1);
    /// ```
    pub fn new(max_concurrent: usize) -> Self {
        Self::build(max_concurrent, Argon2Params::OWASP, None)
    }

    fn build(max_concurrent: usize, params: Argon2Params, dummy: Option<PasswordHash>) -> Self {
        let max_concurrent = max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
                params,
                dummy: dummy.unwrap_or_else(|| PasswordHash::dummy_argon2(params)),
                #[cfg(test)]
                probe: Arc::default(),
            }),
        }
    }

    /// New hashes (and the default dummy) use `params` instead of [`Argon2Params::OWASP`].
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{Argon2Params, PasswordHasher};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hasher = PasswordHasher::new(1).with_params(Argon2Params::new(8192, 1, 1)).unwrap();
    /// assert!(hasher.hash(b"pw").await.unwrap().contains("m=8192,t=1,p=1"));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when argon2 refuses the parameters or they exceed the parse
    /// limits (m ≤ 256 MiB, t ≤ 16, p ≤ 16).
    pub fn with_params(self, params: Argon2Params) -> Result<Self, ConfigError> {
        if argon2::Params::new(params.m_kib, params.t, params.p, Some(SHA256_LEN)).is_err()
            || params.m_kib > MAX_ARGON2_M_KIB
            || params.t > MAX_ARGON2_T
            || params.p > MAX_ARGON2_P
        {
            return Err(invalid("argon2 parameters out of range"));
        }
        let dummy_is_default = matches!(
            &self.inner.dummy.kind,
            Kind::Argon2 { params: p, .. } if *p == self.inner.params
        );
        let dummy = (!dummy_is_default).then(|| self.inner.dummy.clone());
        Ok(Self::build(self.inner.max_concurrent, params, dummy))
    }

    /// Unknown users or clients are checked against a dummy hash of the same scheme and cost
    /// as `like` (a bcrypt row of cost 10 gives a bcrypt dummy of cost 10), so the time of a
    /// failed check does not tell whether the account exists. Pass a typical stored hash.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
    ///
    /// let row = PasswordHash::parse("{sha256}627d3eb97bfb9bfd21307d84408b5e199aac37ad5065d81e14d1a60c2c48c4e0b4f51d3d6973b92f").unwrap();
    /// let hasher = PasswordHasher::new(1).with_dummy_like(&row);
    /// assert!(format!("{hasher:?}").contains("Sha256"));
    /// ```
    #[must_use]
    pub fn with_dummy_like(self, like: &PasswordHash) -> Self {
        Self::build(
            self.inner.max_concurrent,
            self.inner.params,
            Some(like.dummy_like()),
        )
    }

    /// The concurrency bound given to [`new`](Self::new).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordHasher;
    ///
    /// assert_eq!(PasswordHasher::new(3).max_concurrent(), 3);
    /// ```
    pub fn max_concurrent(&self) -> usize {
        self.inner.max_concurrent
    }

    /// The argon2id parameters of new hashes.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{Argon2Params, PasswordHasher};
    ///
    /// assert_eq!(PasswordHasher::new(1).params(), Argon2Params::OWASP);
    /// ```
    pub fn params(&self) -> Argon2Params {
        self.inner.params
    }

    /// `true` when `hash` should be re-hashed with this hasher's parameters.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
    ///
    /// let h = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
    /// assert!(PasswordHasher::new(1).needs_upgrade(&h));
    /// ```
    pub fn needs_upgrade(&self, hash: &PasswordHash) -> bool {
        hash.needs_upgrade_for(self.inner.params)
    }

    /// Checks `password` against `hash` on the blocking pool, under the semaphore. `None` (an
    /// unknown user or client) checks the dummy hash, at the same cost, and answers `false`.
    /// Also `false` when the blocking task fails; never panics.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let h = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
    /// let hasher = PasswordHasher::new(1);
    /// assert!(hasher.verify(b"correct horse", Some(&h)).await);
    /// assert!(!hasher.verify(&[b'a'; 73], Some(&h)).await); // bcrypt: > 72 bytes refused
    /// # }
    /// ```
    pub async fn verify(&self, password: &[u8], hash: Option<&PasswordHash>) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.inner.dummy).clone();
        let password = Zeroizing::new(password.to_vec());
        let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
            return false;
        };
        #[cfg(test)]
        let probe = self.inner.probe.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            #[cfg(test)]
            let _in = probe.enter();
            hash.verify_blocking(&password)
        })
        .await
        .unwrap_or(false);
        ok && known
    }

    /// Hashes `password` as `{argon2}$argon2id$v=19$m=…,t=…,p=…$salt$hash` (16-byte random
    /// salt, 32-byte output), on the blocking pool under the semaphore.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hasher = PasswordHasher::new(1);
    /// let a = hasher.hash(b"s3cret").await.unwrap();
    /// let b = hasher.hash(b"s3cret").await.unwrap();
    /// assert_ne!(a, b); // random salt
    /// assert!(PasswordHash::parse(&a).unwrap().verify_blocking(b"s3cret"));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the password is longer than [`MAX_PASSWORD_LEN`] or the
    /// blocking task failed.
    pub async fn hash(&self, password: &[u8]) -> Result<String, ConfigError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(invalid(format!(
                "password longer than {MAX_PASSWORD_LEN} bytes"
            )));
        }
        let password = Zeroizing::new(password.to_vec());
        let params = self.inner.params;
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| invalid("password hasher closed"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_argon2id(&password, params)
        })
        .await
        .map_err(|_| invalid("password hashing task failed"))?
    }

    /// [`hash`](Self::hash) on the calling thread (for configuration loading outside a runtime).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
    ///
    /// let s = PasswordHasher::new(1).hash_blocking(b"client-secret").unwrap();
    /// assert!(PasswordHash::parse(&s).unwrap().verify_blocking(b"client-secret"));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`hash`](Self::hash).
    pub fn hash_blocking(&self, password: &[u8]) -> Result<String, ConfigError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(invalid(format!(
                "password longer than {MAX_PASSWORD_LEN} bytes"
            )));
        }
        hash_argon2id(password, self.inner.params)
    }
}

impl Default for PasswordHasher {
    /// As many concurrent hash computations as CPUs.
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, usize::from))
    }
}

fn hash_argon2id(password: &[u8], params: Argon2Params) -> Result<String, ConfigError> {
    let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(SHA256_LEN))
        .map_err(|_| invalid("argon2 parameters out of range"))?;
    let ctx = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut salt = [0u8; 16];
    fill_random(&mut salt);
    let mut out = Zeroizing::new([0u8; SHA256_LEN]);
    ctx.hash_password_into(password, &salt, &mut out[..])
        .map_err(|_| invalid("argon2 hashing failed"))?;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    Ok(format!(
        "{{argon2}}$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_kib,
        params.t,
        params.p,
        b64.encode(salt),
        b64.encode(&out[..])
    ))
}

#[cfg(test)]
mod tests;
