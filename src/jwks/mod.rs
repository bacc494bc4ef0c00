//! Signing keys: [`KeySet`] snapshots of parsed public keys, and where they come from.
//!
//! A [`KeySet`] holds keys parsed once (aws-lc-rs public keys) when it loads; the verifier reads
//! the current snapshot with one `ArcSwap` load and takes no lock. Sources ([`KeySource`]): a
//! remote JWKS URL, OIDC / RFC 8414 discovery from the issuer URL, or static keys (a JWK set,
//! PEM public keys, HMAC secrets).
//!
//! Each key is filtered on its own: `kty` RSA, EC or OKP (`oct` only from static config), `use`
//! absent or `sig`, `key_ops` absent or containing `verify`, algorithms from `alg` or else from
//! `kty`/`crv` intersected with the allow-list, RSA of at least 2048 bits. An RSA key without
//! `alg` serves only the first RSA algorithm of the allow-list (RFC 8725 §3.1: one algorithm per
//! key) unless `allow-any-rsa-alg-for-keys-without-alg` is set. A bad key is skipped
//! and logged; a set with no usable key is an error.
//!
//! # Example
//!
//! ```
//! use tower_bearer::jwks::{Algorithm, KeySet};
//!
//! // An Ed25519 key from RFC 8037 §A.2 (public test vector).
//! let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1",
//!     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
//! let set = KeySet::from_jwks(jwks, &[Algorithm::EdDSA]).unwrap();
//! assert_eq!(set.len(), 1);
//! assert!(KeySet::from_jwks(br#"{"keys":[]}"#, &[Algorithm::EdDSA]).is_err());
//! ```

mod provider;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use crate::error::{ConfigError, TokenError};
use crate::json::b64url;

#[doc(inline)]
pub use provider::RemoteOptions;
pub(crate) use provider::{KeyProvider, Lookup, RemoteSource, key_set_generation};

/// A JWS signature algorithm this crate verifies.
///
/// ES512 and Ed448 are not supported: keys for them are skipped, tokens refused.
///
/// # Example
///
/// ```
/// use tower_bearer::jwks::Algorithm;
///
/// let alg: Algorithm = "ES256".parse().unwrap();
/// assert_eq!(alg, Algorithm::ES256);
/// assert_eq!(alg.to_string(), "ES256");
/// assert!("ES512".parse::<Algorithm>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
    /// HMAC with SHA-256 (shared secret from static config only).
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

impl Algorithm {
    /// Every algorithm, in declaration order.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// assert_eq!(Algorithm::ALL.len(), 12);
    /// assert_eq!(Algorithm::ALL.iter().filter(|a| a.is_hmac()).count(), 3);
    /// ```
    pub const ALL: [Algorithm; 12] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
        Self::HS256,
        Self::HS384,
        Self::HS512,
    ];
    /// The default allow-list: every asymmetric algorithm (each key still binds its own).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// assert!(Algorithm::ASYMMETRIC.contains(&Algorithm::EdDSA));
    /// assert!(!Algorithm::ASYMMETRIC.iter().any(|a| a.is_hmac()));
    /// ```
    pub const ASYMMETRIC: [Algorithm; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The JWA name (`"RS256"`, ...).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// assert_eq!(Algorithm::PS256.as_str(), "PS256");
    /// assert_eq!(Algorithm::EdDSA.as_str(), "EdDSA");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
        }
    }

    /// HMAC (shared secret) algorithms.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// assert!(Algorithm::HS256.is_hmac());
    /// assert!(!Algorithm::RS256.is_hmac());
    /// ```
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    fn family(self) -> Family {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                Family::Rsa
            }
            Self::ES256 => Family::Ec("P-256"),
            Self::ES384 => Family::Ec("P-384"),
            Self::EdDSA => Family::Okp,
            Self::HS256 | Self::HS384 | Self::HS512 => Family::Oct,
        }
    }

    fn rsa_params(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Self::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    fn hmac_params(self) -> Option<(hmac::Algorithm, usize)> {
        match self {
            Self::HS256 => Some((hmac::HMAC_SHA256, 32)),
            Self::HS384 => Some((hmac::HMAC_SHA384, 48)),
            Self::HS512 => Some((hmac::HMAC_SHA512, 64)),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ConfigError;
    /// Exact JWA names (case-sensitive, as RFC 7518 registers them).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ConfigError::Invalid {
                name: "algorithms",
                reason: format!("unsupported algorithm `{s}`"),
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec(&'static str),
    Okp,
    Oct,
}

/// A set of algorithms as a bit mask, plus what an RSA key without `alg` is bound to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlgSet {
    bits: u16,
    /// The first RSA algorithm of the allow-list (in its order): what an RSA key without `alg`
    /// serves (RFC 8725 §3.1: one algorithm per key).
    rsa_default: Option<Algorithm>,
    /// An RSA key without `alg` serves every allowed RS/PS algorithm instead.
    any_rsa: bool,
}

impl AlgSet {
    pub(crate) fn from_slice(algs: &[Algorithm]) -> Self {
        Self {
            bits: algs.iter().fold(0, |m, a| m | a.bit()),
            rsa_default: algs.iter().copied().find(|a| a.family() == Family::Rsa),
            any_rsa: false,
        }
    }
    /// Lets an RSA key without `alg` serve every allowed RS/PS algorithm
    /// (`allow-any-rsa-alg-for-keys-without-alg`).
    pub(crate) fn with_any_rsa_alg(mut self, any: bool) -> Self {
        self.any_rsa = any;
        self
    }
    /// The union of two sets (the RSA binding of `self`).
    pub(crate) fn union(self, other: Self) -> Self {
        Self {
            bits: self.bits | other.bits,
            ..self
        }
    }
    pub(crate) fn contains(self, a: Algorithm) -> bool {
        self.bits & a.bit() != 0
    }
    fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

enum KeyMaterial {
    Public(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

/// One usable verification key: its `kid`, and a parsed key per allowed algorithm.
pub(crate) struct KeyEntry {
    pub(crate) kid: Option<Box<str>>,
    verifiers: Vec<(Algorithm, KeyMaterial)>,
    /// SHA-256 over the key material: identifies the key across snapshots.
    pub(crate) fingerprint: [u8; 32],
}

impl KeyEntry {
    fn supports(&self, alg: Algorithm) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    /// Verifies `sig` over `message` with the key parsed for `alg`.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, m)| match m {
                KeyMaterial::Public(k) => k.verify_sig(message, sig).is_ok(),
                KeyMaterial::Hmac(k) => hmac::verify(k, message, sig).is_ok(),
            })
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field(
                "algorithms",
                &self.verifiers.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The keys that could have signed a token (see [`KeySet::candidate_keys`]).
#[derive(Debug)]
pub(crate) enum Candidates<'a> {
    One(Option<&'a KeyEntry>),
    Kid {
        keys: &'a [KeyEntry],
        idx: std::slice::Iter<'a, usize>,
        alg: Algorithm,
    },
    /// A small set's keys with the token's `kid`: bit `i` for `keys[i]`, in key order (the
    /// order of the `by_kid` lists).
    Scan {
        keys: &'a [KeyEntry],
        mask: u8,
        alg: Algorithm,
    },
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a KeyEntry;
    fn next(&mut self) -> Option<&'a KeyEntry> {
        match self {
            Candidates::One(k) => k.take(),
            Candidates::Kid { keys, idx, alg } => {
                idx.by_ref().map(|i| &keys[*i]).find(|k| k.supports(*alg))
            }
            Candidates::Scan { keys, mask, alg } => {
                while *mask != 0 {
                    let i = mask.trailing_zeros() as usize;
                    *mask &= *mask - 1;
                    match keys.get(i) {
                        Some(k) if k.supports(*alg) => return Some(k),
                        _ => {}
                    }
                }
                None
            }
        }
    }
}

/// Up to this many keys, a `kid` is found by comparing it with each key's (no hashing); the
/// keys' positions fit the bits of [`Candidates::Scan`]'s `u8`.
const SCAN_KEYS: usize = 8;

/// An immutable snapshot of verification keys.
///
/// # Example
///
/// ```
/// use tower_bearer::jwks::{Algorithm, KeySet};
/// use tower_bearer::signing::SigningKey;
///
/// let key = SigningKey::generate(Algorithm::ES256).unwrap();
/// let set = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::ES256]).unwrap();
/// assert_eq!(set.kids().collect::<Vec<_>>(), [key.kid()]);
/// ```
#[derive(Default)]
pub struct KeySet {
    keys: Vec<KeyEntry>,
    by_kid: HashMap<Box<str>, Vec<usize>>,
    pub(crate) generation: u64,
    /// Keys that were skipped while loading (logged).
    skipped: usize,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys)
            .field("generation", &self.generation)
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// A JWK as found in a JWKS document; unknown members are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// An empty set (no token verifies against it).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::KeySet;
    ///
    /// let set = KeySet::empty();
    /// assert!(set.is_empty());
    /// assert_eq!(set.len(), 0);
    /// ```
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses a JWKS document (`{"keys":[...]}`), keeping the keys usable with `allowed`.
    /// `oct` keys are skipped: shared secrets come only from [`KeySet::with_hmac_secret`].
    ///
    /// An RSA key without `alg` serves one algorithm (RFC 8725 §3.1): the first RSA algorithm
    /// of `allowed`, in its order. [`KeySet::from_jwks_any_rsa_alg`] lets it serve all of them.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::{Algorithm, KeySet};
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let jwks = SigningKey::generate(Algorithm::EdDSA).unwrap().jwks().to_string();
    /// assert_eq!(KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap().len(), 1);
    /// // The key is Ed25519: with an RSA-only allow-list nothing is usable.
    /// assert!(KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::RS256]).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the document is not a JWKS or holds no usable key.
    pub fn from_jwks(json: &[u8], allowed: &[Algorithm]) -> Result<Self, ConfigError> {
        Self::parse_jwks(json, AlgSet::from_slice(allowed), false)
    }

    /// As [`KeySet::from_jwks`], but an RSA key without `alg` serves every allowed RS/PS
    /// algorithm (`allow-any-rsa-alg-for-keys-without-alg`). Prefer publishing `alg` per key.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::{Algorithm, KeySet};
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let jwks = SigningKey::generate(Algorithm::EdDSA).unwrap().jwks().to_string();
    /// let set = KeySet::from_jwks_any_rsa_alg(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// assert_eq!(set.len(), 1);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`KeySet::from_jwks`].
    pub fn from_jwks_any_rsa_alg(json: &[u8], allowed: &[Algorithm]) -> Result<Self, ConfigError> {
        Self::parse_jwks(
            json,
            AlgSet::from_slice(allowed).with_any_rsa_alg(true),
            false,
        )
    }

    pub(crate) fn parse_jwks(
        json: &[u8],
        allowed: AlgSet,
        allow_oct: bool,
    ) -> Result<Self, ConfigError> {
        let raw: RawJwks = serde_json::from_slice(json)
            .map_err(|e| ConfigError::InvalidKey(format!("not a JWK set: {}", serde_reason(&e))))?;
        let mut set = KeySet::default();
        for (i, value) in raw.keys.into_iter().enumerate() {
            let parsed = serde_json::from_value::<RawJwk>(value)
                .map_err(|e| format!("not a JWK: {}", serde_reason(&e)))
                .and_then(|jwk| parse_jwk(&jwk, allowed, allow_oct));
            match parsed {
                Ok(entry) => set.push(entry),
                Err(reason) => {
                    tracing::warn!(index = i, %reason, "skipping unusable key in JWK set");
                    set.skipped += 1;
                }
            }
        }
        if set.keys.is_empty() {
            return Err(ConfigError::InvalidKey(format!(
                "no usable key in JWK set ({} skipped)",
                set.skipped
            )));
        }
        Ok(set)
    }

    /// Adds a PEM public key (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo) for `alg`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::{Algorithm, KeySet};
    ///
    /// // The Ed25519 public key of RFC 8037 §A.2.
    /// let pem = b"-----BEGIN PUBLIC KEY-----
    /// MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
    /// -----END PUBLIC KEY-----";
    /// let set = KeySet::empty().with_pem(pem, Algorithm::EdDSA, Some("ed1")).unwrap();
    /// assert_eq!(set.kids().collect::<Vec<_>>(), ["ed1"]);
    /// assert!(KeySet::empty().with_pem(pem, Algorithm::HS256, None).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the PEM does not hold a key usable with `alg`.
    pub fn with_pem(
        mut self,
        pem: &[u8],
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| ConfigError::InvalidKey(format!("PEM public key: {e}")))?;
        let bytes: &[u8] = der.as_ref();
        let key = match alg.family() {
            Family::Rsa => {
                let k = ParsedPublicKey::new(alg.rsa_params().expect("rsa"), bytes)
                    .map_err(|e| ConfigError::InvalidKey(e.to_string()))?;
                // ParsedPublicKey defers the size check to verification: check it now.
                let size = aws_lc_rs::rsa::PublicEncryptingKey::from_der(bytes)
                    .map_err(|e| ConfigError::InvalidKey(e.to_string()))?
                    .key_size_bits();
                if size < 2048 {
                    return Err(ConfigError::InvalidKey(format!(
                        "RSA key of {size} bits (< 2048)"
                    )));
                }
                k
            }
            Family::Ec(_) | Family::Okp => ParsedPublicKey::new(verification_alg(alg), bytes)
                .map_err(|e| ConfigError::InvalidKey(e.to_string()))?,
            Family::Oct => {
                return Err(ConfigError::InvalidKey(
                    "HMAC algorithms take a secret, not a PEM key".into(),
                ));
            }
        };
        self.push(KeyEntry {
            kid: kid.map(Into::into),
            verifiers: vec![(alg, KeyMaterial::Public(key))],
            fingerprint: sha256(&[b"spki", bytes]),
        });
        Ok(self)
    }

    /// Adds a shared HMAC secret for `alg` (HS256/384/512).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::{Algorithm, KeySet};
    ///
    /// let set = KeySet::empty().with_hmac_secret(&[7u8; 32], Algorithm::HS256, Some("s1")).unwrap();
    /// assert_eq!(set.len(), 1);
    /// // Shorter than the SHA-256 output: refused.
    /// assert!(KeySet::empty().with_hmac_secret(b"short", Algorithm::HS256, None).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when `alg` is not HMAC or the secret is shorter than the
    /// hash output (32, 48 or 64 bytes; RFC 7518 §3.2).
    pub fn with_hmac_secret(
        mut self,
        secret: &[u8],
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let (h, min) = alg
            .hmac_params()
            .ok_or_else(|| ConfigError::InvalidKey(format!("{alg} is not an HMAC algorithm")))?;
        if secret.len() < min {
            return Err(ConfigError::InvalidKey(format!(
                "{alg} secret must be at least {min} bytes"
            )));
        }
        self.push(KeyEntry {
            kid: kid.map(Into::into),
            verifiers: vec![(alg, KeyMaterial::Hmac(Box::new(hmac::Key::new(h, secret))))],
            fingerprint: sha256(&[b"oct", secret]),
        });
        Ok(self)
    }

    fn push(&mut self, entry: KeyEntry) {
        if let Some(kid) = &entry.kid {
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(self.keys.len());
        }
        self.keys.push(entry);
    }

    /// Number of usable keys.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::{Algorithm, KeySet};
    ///
    /// let set = KeySet::empty()
    ///     .with_hmac_secret(&[1u8; 32], Algorithm::HS256, Some("a"))
    ///     .and_then(|s| s.with_hmac_secret(&[2u8; 32], Algorithm::HS256, Some("b")))
    ///     .unwrap();
    /// assert_eq!(set.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// `true` when no key is usable.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::{Algorithm, KeySet};
    ///
    /// assert!(KeySet::empty().is_empty());
    /// let set = KeySet::empty().with_hmac_secret(&[1u8; 32], Algorithm::HS256, None).unwrap();
    /// assert!(!set.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids in this set.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::{Algorithm, KeySet};
    ///
    /// // A key without `kid` is usable but not listed.
    /// let set = KeySet::empty()
    ///     .with_hmac_secret(&[1u8; 32], Algorithm::HS256, Some("k1"))
    ///     .and_then(|s| s.with_hmac_secret(&[2u8; 32], Algorithm::HS256, None))
    ///     .unwrap();
    /// assert_eq!(set.kids().collect::<Vec<_>>(), ["k1"]);
    /// ```
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// The keys that could have signed a token with this `kid` and `alg`.
    pub(crate) fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<&KeyEntry>, TokenError> {
        Ok(self.candidate_keys(kid, alg)?.collect())
    }

    /// [`KeySet::candidates`] without collecting them (no allocation on the verify path).
    pub(crate) fn candidate_keys(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Candidates<'_>, TokenError> {
        match kid {
            // A few keys (the usual JWKS): comparing the kids beats hashing the token's.
            Some(kid) if self.keys.len() <= SCAN_KEYS => {
                let (mut mask, mut fits) = (0u8, false);
                for (i, k) in self.keys.iter().enumerate() {
                    if k.kid.as_deref() == Some(kid) {
                        mask |= 1 << i;
                        fits |= k.supports(alg);
                    }
                }
                match (mask, fits) {
                    (0, _) => self.keyless(alg),
                    (_, true) => Ok(Candidates::Scan {
                        keys: &self.keys,
                        mask,
                        alg,
                    }),
                    (_, false) => Err(TokenError::KeyAlgorithmMismatch),
                }
            }
            Some(kid) => {
                let Some(idx) = self.by_kid.get(kid) else {
                    return self.keyless(alg);
                };
                if idx.iter().any(|i| self.keys[*i].supports(alg)) {
                    Ok(Candidates::Kid {
                        keys: &self.keys,
                        idx: idx.iter(),
                        alg,
                    })
                } else {
                    Err(TokenError::KeyAlgorithmMismatch)
                }
            }
            None => {
                let mut found = self.keys.iter().filter(|k| k.supports(alg));
                match (found.next(), found.next()) {
                    (None, _) if self.keys.is_empty() => Err(TokenError::UnknownKey),
                    (None, _) => Err(TokenError::KeyAlgorithmMismatch),
                    (Some(k), None) => Ok(Candidates::One(Some(k))),
                    (Some(_), Some(_)) => Err(TokenError::AmbiguousKey),
                }
            }
        }
    }

    /// A token's `kid` names no key: a key configured without `kid` (e.g. one static PEM key)
    /// serves tokens that carry a `kid`, as long as it is the only key-less candidate.
    fn keyless(&self, alg: Algorithm) -> Result<Candidates<'_>, TokenError> {
        let mut keyless = self
            .keys
            .iter()
            .filter(|k| k.kid.is_none() && k.supports(alg));
        match (keyless.next(), keyless.next()) {
            (Some(k), None) => Ok(Candidates::One(Some(k))),
            _ => Err(TokenError::UnknownKey),
        }
    }

    /// Whether the key identified by `kid` and `fingerprint` is still in this set.
    pub(crate) fn contains(&self, kid: Option<&str>, fingerprint: &[u8; 32]) -> bool {
        match kid {
            Some(kid) => self.by_kid.get(kid).is_some_and(|idx| {
                idx.iter()
                    .any(|i| &self.keys[*i].fingerprint == fingerprint)
            }),
            None => self.keys.iter().any(|k| &k.fingerprint == fingerprint),
        }
    }
}

fn verification_alg(alg: Algorithm) -> &'static dyn signature::VerificationAlgorithm {
    match alg {
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        other => other
            .rsa_params()
            .expect("only called for asymmetric algorithms"),
    }
}

pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The bit length of an RSA modulus given big-endian bytes.
fn bits(n: &[u8]) -> usize {
    let n = strip_zeros(n);
    match n.first() {
        None => 0,
        Some(b) => (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
    }
}

/// What a JSON error says without quoting the remote document (serde_json's messages echo the
/// offending value, which a JWKS endpoint controls): the error class and its position.
fn serde_reason(e: &serde_json::Error) -> String {
    let class = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected shape or type",
        serde_json::error::Category::Eof => "unexpected end of input",
    };
    if e.line() == 0 {
        class.to_owned()
    } else {
        format!("{class} at line {} column {}", e.line(), e.column())
    }
}

/// A value from a remote JWK set, shown in a log line or an error: escaped and cut to 32
/// characters, so garbage from the endpoint never reaches logs verbatim or at length.
fn shown(v: &str) -> String {
    const MAX: usize = 32;
    let cut: String = v.chars().take(MAX).collect();
    let more = if v.chars().count() > MAX { "…" } else { "" };
    format!("{:?}{more}", cut)
}

fn shown_opt(v: Option<&str>) -> String {
    v.map_or_else(|| "(none)".to_owned(), shown)
}

fn strip_zeros(n: &[u8]) -> &[u8] {
    let start = n.iter().position(|b| *b != 0).unwrap_or(n.len());
    &n[start..]
}

fn decode_field(name: &str, v: &Option<String>) -> Result<Vec<u8>, String> {
    let v = v.as_deref().ok_or_else(|| format!("missing `{name}`"))?;
    b64url(v).map_err(|_| format!("`{name}` is not base64url"))
}

fn parse_jwk(jwk: &RawJwk, allowed: AlgSet, allow_oct: bool) -> Result<KeyEntry, String> {
    if let Some(u) = &jwk.use_ {
        if u != "sig" {
            return Err(format!("use {} is not sig", shown(u)));
        }
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|o| o == "verify") {
            return Err("key_ops does not include verify".into());
        }
    }
    let kty = jwk.kty.as_deref().ok_or("missing kty")?;
    let family = match kty {
        "RSA" => Family::Rsa,
        "EC" => Family::Ec(match jwk.crv.as_deref() {
            Some("P-256") => "P-256",
            Some("P-384") => "P-384",
            other => return Err(format!("unsupported EC curve {}", shown_opt(other))),
        }),
        "OKP" => match jwk.crv.as_deref() {
            Some("Ed25519") => Family::Okp,
            other => return Err(format!("unsupported OKP curve {}", shown_opt(other))),
        },
        "oct" if allow_oct => Family::Oct,
        other => return Err(format!("unsupported kty {}", shown(other))),
    };
    // Algorithms: the key's own `alg`; without one, an RSA key is bound to the first allowed RSA
    // algorithm of the allow-list (RFC 8725 §3.1) unless any is allowed; other families have
    // one algorithm per curve.
    let algs: Vec<Algorithm> = match jwk.alg.as_deref() {
        Some(name) => {
            let alg = match name {
                // RFC 9864 fully-specified name for the same algorithm.
                "Ed25519" => Algorithm::EdDSA,
                _ => Algorithm::from_str(name)
                    .map_err(|_| format!("unsupported alg {}", shown(name)))?,
            };
            if alg.family() != family {
                return Err(format!("alg `{name}` does not match kty/crv"));
            }
            if !allowed.contains(alg) {
                return Err(format!("alg `{name}` is not in the allow-list"));
            }
            vec![alg]
        }
        None if family == Family::Rsa && !allowed.any_rsa => {
            allowed.rsa_default.into_iter().collect()
        }
        None => allowed.iter().filter(|a| a.family() == family).collect(),
    };
    if algs.is_empty() {
        return Err("no allowed algorithm for this key type".into());
    }
    let (verifiers, fingerprint) = match family {
        Family::Rsa => {
            let n = decode_field("n", &jwk.n)?;
            let e = decode_field("e", &jwk.e)?;
            if bits(&n) < 2048 {
                return Err(format!("RSA key of {} bits (< 2048)", bits(&n)));
            }
            // Exponents must be odd and at least 3 (Wycheproof JWK tcId 9 uses e = 1).
            let e_stripped = strip_zeros(&e);
            if e_stripped.last().is_none_or(|b| b % 2 == 0) || e_stripped == [1] {
                return Err("RSA public exponent must be odd and at least 3".into());
            }
            let comps = RsaPublicKeyComponents {
                n: strip_zeros(&n),
                e: strip_zeros(&e),
            };
            let mut v = Vec::with_capacity(algs.len());
            for alg in &algs {
                let key = comps
                    .to_parsed_public_key(alg.rsa_params().expect("rsa"))
                    .map_err(|e| format!("invalid RSA key: {e}"))?;
                v.push((*alg, KeyMaterial::Public(key)));
            }
            (v, sha256(&[b"RSA", strip_zeros(&n), strip_zeros(&e)]))
        }
        Family::Ec(crv) => {
            let size = if crv == "P-256" { 32 } else { 48 };
            // RFC 7518 §6.2.1.2 wants full-length coordinates; some issuers drop leading zero
            // bytes, so shorter values are left-padded (longer ones are refused).
            let pad = |v: Vec<u8>| -> Result<Vec<u8>, String> {
                if v.len() > size || v.is_empty() {
                    return Err("EC coordinates have the wrong length".into());
                }
                let mut out = vec![0u8; size - v.len()];
                out.extend_from_slice(&v);
                Ok(out)
            };
            let x = pad(decode_field("x", &jwk.x)?)?;
            let y = pad(decode_field("y", &jwk.y)?)?;
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let alg = algs[0];
            let key = ParsedPublicKey::new(verification_alg(alg), &point)
                .map_err(|e| format!("invalid EC key: {e}"))?;
            (
                vec![(alg, KeyMaterial::Public(key))],
                sha256(&[b"EC", crv.as_bytes(), &x, &y]),
            )
        }
        Family::Okp => {
            let x = decode_field("x", &jwk.x)?;
            if x.len() != 32 {
                return Err("Ed25519 key must be 32 bytes".into());
            }
            let key = ParsedPublicKey::new(&signature::ED25519, &x)
                .map_err(|e| format!("invalid Ed25519 key: {e}"))?;
            (
                vec![(Algorithm::EdDSA, KeyMaterial::Public(key))],
                sha256(&[b"OKP", &x]),
            )
        }
        Family::Oct => {
            let k = decode_field("k", &jwk.k)?;
            let mut v = Vec::new();
            for alg in &algs {
                let (h, min) = alg.hmac_params().expect("hmac");
                if k.len() >= min {
                    v.push((*alg, KeyMaterial::Hmac(Box::new(hmac::Key::new(h, &k)))));
                }
            }
            if v.is_empty() {
                return Err("HMAC secret shorter than the hash output".into());
            }
            (v, sha256(&[b"oct", &k]))
        }
    };
    Ok(KeyEntry {
        kid: jwk.kid.as_deref().map(Into::into),
        verifiers,
        fingerprint,
    })
}

/// Where an issuer's keys come from.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::jwks::{Algorithm, KeySet, KeySource};
/// use tower_bearer::verify::IssuerConfig;
///
/// let keys = KeySet::empty().with_hmac_secret(&[1u8; 32], Algorithm::HS256, None).unwrap();
/// let source = KeySource::Static(Arc::new(keys));
/// assert_eq!(format!("{source:?}"), "Static(1)");
/// let _issuer = IssuerConfig::new("https://auth.example", source);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum KeySource {
    /// A JWKS document at this URL.
    JwksUri(String),
    /// OIDC discovery (`/.well-known/openid-configuration`, then RFC 8414
    /// `/.well-known/oauth-authorization-server`) from the issuer URL itself.
    Discovery,
    /// Discovery documents fetched under another base URL (e.g. an internal address of the
    /// identity provider); the metadata `issuer` must still equal the configured issuer.
    DiscoveryAt(String),
    /// Fixed keys; never refreshed.
    Static(std::sync::Arc<KeySet>),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JwksUri(u) => f.debug_tuple("JwksUri").field(u).finish(),
            Self::Discovery => f.write_str("Discovery"),
            Self::DiscoveryAt(u) => f.debug_tuple("DiscoveryAt").field(u).finish(),
            Self::Static(s) => f.debug_tuple("Static").field(&s.len()).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RSA JWKS without `alg`, and a token of its key for `alg`'s message.
    fn rsa_without_alg() -> (crate::signing::SigningKey, Vec<u8>) {
        let key = crate::signing::SigningKey::generate(Algorithm::RS256).unwrap();
        let mut jwks = key.jwks();
        jwks["keys"][0].as_object_mut().unwrap().remove("alg");
        (key, jwks.to_string().into_bytes())
    }

    #[test]
    fn rsa_key_without_alg_serves_the_first_allowed_rsa_alg() {
        let (key, jwks) = rsa_without_alg();
        let kid = Some(key.kid());
        // Allow-list order decides: PS256 first, so the key serves PS256 only.
        let set = KeySet::from_jwks(
            &jwks,
            &[Algorithm::ES256, Algorithm::PS256, Algorithm::RS256],
        )
        .unwrap();
        assert!(set.candidates(kid, Algorithm::PS256).is_ok());
        for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::PS384] {
            assert_eq!(
                set.candidates(kid, alg).err(),
                Some(TokenError::KeyAlgorithmMismatch),
                "{alg}"
            );
        }
        // RS256 first: the key serves RS256, and an RS256 signature verifies.
        let set = KeySet::from_jwks(&jwks, &[Algorithm::RS256, Algorithm::PS256]).unwrap();
        let msg = b"header.payload";
        let token = key.sign_raw(br#"{"alg":"RS256"}"#, msg).unwrap();
        let sig = crate::json::b64url(token.rsplit('.').next().unwrap()).unwrap();
        let signed = token.rsplit_once('.').unwrap().0.as_bytes().to_vec();
        let k = set.candidates(kid, Algorithm::RS256).unwrap().remove(0);
        assert!(k.verify(Algorithm::RS256, &signed, &sig));
        assert_eq!(
            set.candidates(kid, Algorithm::PS256).err(),
            Some(TokenError::KeyAlgorithmMismatch)
        );
    }

    #[test]
    fn rsa_key_without_alg_serves_every_rsa_alg_only_when_allowed() {
        let (key, jwks) = rsa_without_alg();
        let kid = Some(key.kid());
        let set = KeySet::from_jwks_any_rsa_alg(&jwks, &Algorithm::ALL).unwrap();
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            assert!(set.candidates(kid, alg).is_ok(), "{alg}");
        }
        let bound = KeySet::from_jwks(&jwks, &Algorithm::ALL).unwrap();
        assert_eq!(
            bound.candidates(kid, Algorithm::PS512).err(),
            Some(TokenError::KeyAlgorithmMismatch)
        );
        // A key with its own `alg` is bound to it either way.
        let with_alg = key.jwks().to_string();
        let set = KeySet::from_jwks_any_rsa_alg(with_alg.as_bytes(), &Algorithm::ALL).unwrap();
        assert_eq!(
            set.candidates(kid, Algorithm::PS256).err(),
            Some(TokenError::KeyAlgorithmMismatch)
        );
    }

    #[test]
    fn rfc8037_and_filters() {
        let ok = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed448","kid":"b","x":"AAAA"},
            {"kty":"oct","kid":"c","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty":"EC","crv":"P-521","kid":"d","x":"AA","y":"AA"},
            {"kty":"OKP","crv":"Ed25519","kid":"e","alg":"RS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            "not an object"
        ]}"#;
        let set = KeySet::from_jwks(ok, &Algorithm::ALL).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.skipped, 6);
        assert_eq!(set.kids().collect::<Vec<_>>(), ["a"]);
        // EdDSA not allowed → nothing usable.
        assert!(KeySet::from_jwks(ok, &[Algorithm::RS256]).is_err());
        assert!(KeySet::from_jwks(b"<html>", &[Algorithm::RS256]).is_err());
    }

    #[test]
    fn ec_coordinates_without_leading_zero_bytes_are_padded() {
        use crate::signing::SigningKey;
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Find a key whose x or y starts with a zero byte (about 1 in 128), then drop that byte.
        for _ in 0..4000 {
            let key = SigningKey::generate(Algorithm::ES256).unwrap();
            let mut jwk = key.public_jwk();
            let mut trimmed = false;
            for c in ["x", "y"] {
                let bytes = URL_SAFE_NO_PAD.decode(jwk[c].as_str().unwrap()).unwrap();
                if bytes[0] == 0 {
                    jwk[c] = URL_SAFE_NO_PAD.encode(&bytes[1..]).into();
                    trimmed = true;
                }
            }
            if !trimmed {
                continue;
            }
            let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
            let set = KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::ES256]).unwrap();
            let msg = b"header.payload";
            let sig = key.sign_bytes(msg).unwrap();
            let k = set.candidates(Some(key.kid()), Algorithm::ES256).unwrap();
            assert!(k[0].verify(Algorithm::ES256, msg, &sig));
            return;
        }
        panic!("no key with a leading zero coordinate in 4000 tries");
    }

    #[test]
    fn hmac_secret_length() {
        assert!(
            KeySet::empty()
                .with_hmac_secret(&[0u8; 31], Algorithm::HS256, None)
                .is_err()
        );
        assert!(
            KeySet::empty()
                .with_hmac_secret(&[0u8; 32], Algorithm::HS256, None)
                .is_ok()
        );
        assert!(
            KeySet::empty()
                .with_hmac_secret(&[0u8; 48], Algorithm::RS256, None)
                .is_err()
        );
    }

    #[test]
    fn small_and_large_sets_select_alike() {
        // A shared kid across algorithms, a key without kid: scanned (<= 8 keys) and hashed.
        let small = |extra: usize| {
            let mut set = KeySet::empty()
                .with_hmac_secret(&[1u8; 32], Algorithm::HS256, Some("a"))
                .unwrap()
                .with_hmac_secret(&[2u8; 48], Algorithm::HS384, Some("a"))
                .unwrap()
                .with_hmac_secret(&[3u8; 32], Algorithm::HS256, Some("a"))
                .unwrap()
                .with_hmac_secret(&[4u8; 64], Algorithm::HS512, None)
                .unwrap();
            for i in 0..extra {
                let kid = format!("x{i}");
                set = set
                    .with_hmac_secret(&[9u8; 48], Algorithm::HS384, Some(&kid))
                    .unwrap();
            }
            set
        };
        let (scanned, hashed) = (small(4), small(5));
        assert!(scanned.len() <= SCAN_KEYS && hashed.len() > SCAN_KEYS);
        for set in [&scanned, &hashed] {
            let fps = |kid, alg| {
                set.candidates(Some(kid), alg)
                    .map(|c| c.iter().map(|k| k.fingerprint).collect::<Vec<_>>())
            };
            let hs256 = fps("a", Algorithm::HS256).unwrap();
            assert_eq!(hs256.len(), 2);
            assert_eq!(hs256[0], set.keys[0].fingerprint);
            assert_eq!(hs256[1], set.keys[2].fingerprint);
            assert_eq!(fps("a", Algorithm::HS384).unwrap().len(), 1);
            assert_eq!(
                fps("a", Algorithm::HS512).unwrap_err(),
                TokenError::KeyAlgorithmMismatch
            );
            // An unknown kid falls back to the one key without kid.
            assert_eq!(
                fps("zz", Algorithm::HS512).unwrap(),
                [set.keys[3].fingerprint]
            );
            assert_eq!(
                fps("zz", Algorithm::HS256).unwrap_err(),
                TokenError::UnknownKey
            );
            assert_eq!(fps("x3", Algorithm::HS384).unwrap().len(), 1);
        }
    }

    #[test]
    fn selection() {
        let set = KeySet::empty()
            .with_hmac_secret(&[1u8; 32], Algorithm::HS256, Some("h1"))
            .unwrap()
            .with_hmac_secret(&[2u8; 32], Algorithm::HS256, Some("h2"))
            .unwrap();
        assert_eq!(
            set.candidates(None, Algorithm::HS256).unwrap_err(),
            TokenError::AmbiguousKey
        );
        assert_eq!(
            set.candidates(Some("x"), Algorithm::HS256).unwrap_err(),
            TokenError::UnknownKey
        );
        assert_eq!(
            set.candidates(Some("h1"), Algorithm::RS256).unwrap_err(),
            TokenError::KeyAlgorithmMismatch
        );
        assert_eq!(
            set.candidates(Some("h1"), Algorithm::HS256).unwrap().len(),
            1
        );
    }
}
