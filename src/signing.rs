//! Signing keys (RS256, PS256, ES256, ES384, EdDSA) with RFC 7638 thumbprint `kid`s: what an
//! issuer, a demo or a test needs to mint tokens a [`Verifier`](crate::verify::Verifier) accepts.
//!
//! Keys are generated in memory by aws-lc-rs, or (feature `issuer`) loaded from PKCS#8 DER, PEM
//! or a private JWK and exported as PKCS#8 in zeroized buffers; nothing here reads or writes
//! files (the issuer's `issuer::keys::KeyManager` persists keys).
//!
//! # Example
//!
//! ```
//! use tower_bearer::jwks::Algorithm;
//! use tower_bearer::signing::SigningKey;
//!
//! let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
//! let token = key.sign(&serde_json::json!({"sub": "alice"})).unwrap();
//! assert_eq!(token.split('.').count(), 3);
//! assert_eq!(key.jwks()["keys"][0]["kid"], key.kid());
//! ```

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::error::ConfigError;
use crate::jwks::Algorithm;

/// The JWS header given to `SigningKey::sign_parts`: JSON bytes, or already base64url.
#[derive(Clone, Copy)]
enum Header<'a> {
    Raw(&'a [u8]),
    #[cfg_attr(not(feature = "issuer"), allow(dead_code))]
    Encoded(&'a str),
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key with its public JWK.
///
/// # Example
///
/// ```
/// use tower_bearer::jwks::Algorithm;
/// use tower_bearer::signing::SigningKey;
///
/// let key = SigningKey::generate(Algorithm::ES256).unwrap();
/// assert_eq!(key.public_jwk()["kty"], "EC");
/// ```
pub struct SigningKey {
    alg: Algorithm,
    pair: Pair,
    public: Map<String, Value>,
    kid: String,
    /// `(typ, b64url(header))` of the access tokens the issuer signs with this key: the same
    /// bytes for every token, encoded once (the first `typ` asked; another one is encoded
    /// each time).
    #[cfg_attr(not(feature = "issuer"), allow(dead_code))]
    header: std::sync::OnceLock<(Box<str>, Box<str>)>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_alg(alg: Algorithm) -> &'static signature::EcdsaSigningAlgorithm {
    if alg == Algorithm::ES256 {
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING
    } else {
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING
    }
}

impl SigningKey {
    /// Generates a fresh key for `alg` (RSA keys are 2048 bits).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// assert_eq!(key.algorithm(), Algorithm::EdDSA);
    /// assert!(SigningKey::generate(Algorithm::HS256).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] for algorithms that cannot be generated here (HMAC, RS384/512,
    /// PS384/512).
    pub fn generate(alg: Algorithm) -> Result<Self, ConfigError> {
        let fail = |e: &dyn fmt::Display| ConfigError::InvalidKey(format!("key generation: {e}"));
        let pair = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| fail(&e))?)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                Pair::Ec(EcdsaKeyPair::generate(ec_alg(alg)).map_err(|e| fail(&e))?)
            }
            Algorithm::EdDSA => Pair::Ed(Ed25519KeyPair::generate().map_err(|e| fail(&e))?),
            other => {
                return Err(ConfigError::InvalidKey(format!(
                    "cannot generate a signing key for {other}"
                )));
            }
        };
        Ok(Self::from_pair(alg, pair))
    }

    fn from_pair(alg: Algorithm, pair: Pair) -> Self {
        let public = match &pair {
            Pair::Rsa(pair) => {
                let pk = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64(pk.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec(pair) => {
                let (crv, size) = if alg == Algorithm::ES256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": b64(&point[1..=size]),
                    "y": b64(&point[1 + size..]),
                })
            }
            Pair::Ed(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            }),
        };
        let Value::Object(mut public) = public else {
            unreachable!("json! object")
        };
        let kid = thumbprint(&public);
        public.insert("kid".into(), Value::String(kid.clone()));
        public.insert("use".into(), Value::String("sig".into()));
        public.insert("alg".into(), Value::String(alg.as_str().into()));
        Self {
            alg,
            pair,
            public,
            kid,
            header: std::sync::OnceLock::new(),
        }
    }

    /// The `kid`: the RFC 7638 thumbprint, unless replaced (feature `issuer`,
    /// `SigningKey::with_kid`) for a key migrated with its old `kid`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::{thumbprint, SigningKey};
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// assert_eq!(key.kid(), thumbprint(key.public_jwk().as_object().unwrap()));
    /// ```
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::ES384).unwrap();
    /// assert_eq!(key.algorithm(), Algorithm::ES384);
    /// ```
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (with `kid`, `use` and `alg`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let jwk = SigningKey::generate(Algorithm::EdDSA).unwrap().public_jwk();
    /// assert_eq!(jwk["crv"], "Ed25519");
    /// assert_eq!(jwk["use"], "sig");
    /// assert_eq!(jwk["alg"], "EdDSA");
    /// ```
    pub fn public_jwk(&self) -> Value {
        Value::Object(self.public.clone())
    }

    /// A JWK set holding only this key.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// let jwks = key.jwks();
    /// assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    /// assert_eq!(jwks["keys"][0], key.public_jwk());
    /// ```
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk()] })
    }

    /// Signs `claims` with header `{"alg", "kid", "typ": "JWT"}`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// let token = key.sign(&serde_json::json!({"sub": "alice"})).unwrap();
    /// assert_eq!(token.split('.').count(), 3);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if signing fails.
    pub fn sign(&self, claims: &Value) -> Result<String, ConfigError> {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": "JWT"});
        self.sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// Signs arbitrary header and payload bytes (tests of malformed tokens use this).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// let token = key.sign_raw(b"{\"alg\":\"none\"}", b"not json").unwrap();
    /// assert!(token.starts_with("eyJhbGciOiJub25lIn0."));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if signing fails.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> Result<String, ConfigError> {
        self.sign_parts(Header::Raw(header), "", payload)
    }

    /// `b64url(header)` for access tokens of type `typ`, `header` building the JSON: built and
    /// encoded once per key (for the first `typ`; another `typ` is built each time).
    #[cfg(feature = "issuer")]
    pub(crate) fn encoded_header(
        &self,
        typ: &str,
        header: impl Fn() -> Vec<u8>,
    ) -> std::borrow::Cow<'_, str> {
        if let Some((t, h)) = self.header.get() {
            if **t == *typ {
                return std::borrow::Cow::Borrowed(h);
            }
            return std::borrow::Cow::Owned(URL_SAFE_NO_PAD.encode(header()));
        }
        let h = self
            .header
            .get_or_init(|| (typ.into(), URL_SAFE_NO_PAD.encode(header()).into()));
        if *h.0 == *typ {
            std::borrow::Cow::Borrowed(&h.1)
        } else {
            std::borrow::Cow::Owned(URL_SAFE_NO_PAD.encode(header()))
        }
    }

    /// Signs `payload` under a header already base64url-encoded (by
    /// [`SigningKey::encoded_header`]).
    #[cfg(feature = "issuer")]
    pub(crate) fn sign_encoded(
        &self,
        encoded_header: &str,
        payload: &[u8],
    ) -> Result<String, ConfigError> {
        self.sign_parts(Header::Encoded(encoded_header), "", payload)
    }

    /// Signs the payload `p || rest` under a header already base64url-encoded, `p`'s
    /// base64url (`encoded_prefix`) given: the encoding of a prefix whose length is a multiple
    /// of 3 bytes (no padding, a multiple of 4 characters) is the prefix of the whole
    /// payload's, so a payload part that is the same from token to token is encoded once.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if signing fails or `encoded_prefix`'s length is not a
    /// multiple of 4 (its characters are the caller's encoder's: checked in debug builds).
    #[cfg(feature = "issuer")]
    pub(crate) fn sign_encoded_split(
        &self,
        encoded_header: &str,
        encoded_prefix: &str,
        rest: &[u8],
    ) -> Result<String, ConfigError> {
        debug_assert!(
            encoded_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        if !encoded_prefix.len().is_multiple_of(4) {
            return Err(ConfigError::InvalidKey(
                "payload prefix is not whole base64url groups".into(),
            ));
        }
        self.sign_parts(Header::Encoded(encoded_header), encoded_prefix, rest)
    }

    /// `header.b64(payload).b64(signature)`, the payload's encoding being `encoded_prefix`
    /// (whole base64url groups, checked by the callers that pass one) followed by that of
    /// `payload`.
    fn sign_parts(
        &self,
        header: Header<'_>,
        encoded_prefix: &str,
        payload: &[u8],
    ) -> Result<String, ConfigError> {
        // One buffer for the whole token sized exactly (header, payload and signature, each
        // encoded in place): no reallocation, and no large-bin `malloc` for EC/EdDSA tokens.
        fn append_b64(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
            let start = out.len();
            out.resize(start + base64::encoded_len(bytes.len(), false)?, 0);
            URL_SAFE_NO_PAD
                .encode_slice(bytes, &mut out[start..])
                .ok()
                .map(drop)
        }
        let fail = || ConfigError::InvalidKey("signing failed".into());
        let b64 = |n: usize| base64::encoded_len(n, false).ok_or_else(fail);
        let header_len = match header {
            Header::Raw(h) => b64(h.len())?,
            Header::Encoded(h) => h.len(),
        };
        let len = header_len
            + encoded_prefix.len()
            + b64(payload.len())?
            + b64(self.signature_len())?
            + 2;
        let mut out = Vec::with_capacity(len);
        match header {
            Header::Raw(h) => append_b64(&mut out, h).ok_or_else(fail)?,
            Header::Encoded(h) => out.extend_from_slice(h.as_bytes()),
        }
        out.push(b'.');
        out.extend_from_slice(encoded_prefix.as_bytes());
        append_b64(&mut out, payload).ok_or_else(fail)?;
        // The signature is encoded where aws-lc-rs returns it: its `Signature` is a fixed
        // 4.6 KB array (sized for ML-DSA), and each move of it (into an enum, a `Result`, out of
        // a helper) is a 4.6 KB `memcpy` per token.
        let sig_fail = |_| fail();
        match &self.pair {
            Pair::Rsa(_) => {
                let sig = self.sign_bytes(&out)?;
                out.push(b'.');
                append_b64(&mut out, &sig).ok_or_else(fail)?;
            }
            Pair::Ec(pair) => {
                let sig = pair.sign(&SystemRandom::new(), &out).map_err(sig_fail)?;
                out.push(b'.');
                append_b64(&mut out, sig.as_ref()).ok_or_else(fail)?;
            }
            Pair::Ed(pair) => {
                let sig = pair.sign(&out);
                out.push(b'.');
                append_b64(&mut out, sig.as_ref()).ok_or_else(fail)?;
            }
        }
        String::from_utf8(out).map_err(|_| fail())
    }

    /// The length of this key's JWS signatures in bytes.
    fn signature_len(&self) -> usize {
        match &self.pair {
            Pair::Rsa(pair) => pair.public_modulus_len(),
            // `r || s`: P-256 64, P-384 96 bytes.
            Pair::Ec(_) => match self.alg {
                Algorithm::ES384 => 96,
                _ => 64,
            },
            Pair::Ed(_) => 64,
        }
    }

    /// The raw JWS signature of `message`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::ES256).unwrap();
    /// // ES256 signatures are the fixed-size `r || s` pair.
    /// assert_eq!(key.sign_bytes(b"message").unwrap().len(), 64);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if signing fails.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, ConfigError> {
        let rng = SystemRandom::new();
        let fail = |_| ConfigError::InvalidKey("signing failed".into());
        Ok(match &self.pair {
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = if self.alg == Algorithm::PS256 {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut sig).map_err(fail)?;
                sig
            }
            Pair::Ec(pair) => pair.sign(&rng, message).map_err(fail)?.as_ref().to_vec(),
            Pair::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        })
    }
}

/// Loading and exporting private keys (feature `issuer`): PKCS#8 DER, PEM (PKCS#8, PKCS#1 RSA,
/// SEC1 EC) and private JWKs. Every intermediate buffer holding private key material is zeroized.
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
impl SigningKey {
    /// Loads an unencrypted PKCS#8 (RFC 5208/5958) private key for `alg`; the key type must fit
    /// the algorithm (RSA for RS256/PS256, P-256 for ES256, P-384 for ES384, Ed25519 for EdDSA).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::ES256).unwrap();
    /// let der = key.to_pkcs8_der().unwrap();
    /// let again = SigningKey::from_pkcs8_der(Algorithm::ES256, &der).unwrap();
    /// assert_eq!(again.kid(), key.kid());
    /// // A P-256 key is not an Ed25519 key.
    /// assert!(SigningKey::from_pkcs8_der(Algorithm::EdDSA, &der).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the bytes are not such a key or the algorithm does not fit.
    pub fn from_pkcs8_der(alg: Algorithm, der: &[u8]) -> Result<Self, ConfigError> {
        let reject = |e: &dyn fmt::Display| {
            ConfigError::InvalidKey(format!("not a PKCS#8 private key for {alg}: {e}"))
        };
        let pair = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                Pair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| reject(&e))?)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                Pair::Ec(EcdsaKeyPair::from_pkcs8(ec_alg(alg), der).map_err(|e| reject(&e))?)
            }
            Algorithm::EdDSA => {
                Pair::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| reject(&e))?)
            }
            other => return Err(unsupported(other)),
        };
        Ok(Self::from_pair(alg, pair))
    }

    /// Loads a PEM private key for `alg`: `BEGIN PRIVATE KEY` (PKCS#8), `BEGIN RSA PRIVATE KEY`
    /// (PKCS#1) or `BEGIN EC PRIVATE KEY` (SEC1 / RFC 5915). Encrypted PEM is refused.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// let pem = key.to_pkcs8_pem().unwrap();
    /// assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    /// assert_eq!(SigningKey::from_pem(Algorithm::EdDSA, &pem).unwrap().kid(), key.kid());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the text holds no usable private key for `alg`.
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<Self, ConfigError> {
        let (label, der) = pem_decode(pem)?;
        let reject = |e: &dyn fmt::Display| {
            ConfigError::InvalidKey(format!("`{label}` PEM is not a private key for {alg}: {e}"))
        };
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_der(alg, &der),
            "RSA PRIVATE KEY" if matches!(alg, Algorithm::RS256 | Algorithm::PS256) => {
                let pair = RsaKeyPair::from_der(&der).map_err(|e| reject(&e))?;
                Ok(Self::from_pair(alg, Pair::Rsa(pair)))
            }
            "EC PRIVATE KEY" if matches!(alg, Algorithm::ES256 | Algorithm::ES384) => {
                let pair = EcdsaKeyPair::from_private_key_der(ec_alg(alg), &der)
                    .map_err(|e| reject(&e))?;
                Ok(Self::from_pair(alg, Pair::Ec(pair)))
            }
            "ENCRYPTED PRIVATE KEY" => Err(ConfigError::InvalidKey(
                "encrypted PEM private keys are not supported: decrypt it first".into(),
            )),
            other => Err(ConfigError::InvalidKey(format!(
                "PEM `{other}` is not a private key for {alg}"
            ))),
        }
    }

    /// Loads a private JWK (RFC 7517/7518/8037): `RSA` with `n e d p q dp dq qi`, `EC` (P-256,
    /// P-384) with `x y d`, `OKP` (Ed25519) with `x d`. The algorithm is the JWK's `alg` member,
    /// else RS256 / ES256 / ES384 / EdDSA by key type. The `kid` is the RFC 7638 thumbprint (a
    /// `kid` member is ignored; keep one with [`SigningKey::with_kid`]).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::ES256).unwrap();
    /// let jwk = key.to_private_jwk().unwrap();
    /// let again = SigningKey::from_jwk(&jwk).unwrap();
    /// assert_eq!(again.kid(), key.kid());
    /// assert_eq!(again.algorithm(), Algorithm::ES256);
    /// // A public JWK cannot sign.
    /// assert!(SigningKey::from_jwk(&key.public_jwk()).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when members are missing, malformed or inconsistent.
    pub fn from_jwk(jwk: &Value) -> Result<Self, ConfigError> {
        let obj = jwk
            .as_object()
            .ok_or_else(|| ConfigError::InvalidKey("a JWK is a JSON object".into()))?;
        let text = |name: &str| obj.get(name).and_then(Value::as_str);
        let member = |name: &str| -> Result<zeroize::Zeroizing<Vec<u8>>, ConfigError> {
            let v = text(name).ok_or_else(|| {
                ConfigError::InvalidKey(format!("private JWK lacks member `{name}`"))
            })?;
            URL_SAFE_NO_PAD
                .decode(v)
                .map(zeroize::Zeroizing::new)
                .map_err(|_| {
                    ConfigError::InvalidKey(format!("JWK member `{name}` is not base64url"))
                })
        };
        let declared = match text("alg") {
            Some(a) => Some(a.parse::<Algorithm>()?),
            None => None,
        };
        let reject = |e: &dyn fmt::Display| ConfigError::InvalidKey(format!("private JWK: {e}"));
        let (alg, pair) = match (text("kty"), text("crv")) {
            (Some("RSA"), _) => {
                let alg = declared.unwrap_or(Algorithm::RS256);
                if !matches!(alg, Algorithm::RS256 | Algorithm::PS256) {
                    return Err(unsupported(alg));
                }
                let mut ints = Vec::new();
                for name in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
                    ints.push(member(name)?);
                }
                let der = rsa_private_key_der(&ints);
                let pair = RsaKeyPair::from_der(&der).map_err(|e| reject(&e))?;
                (alg, Pair::Rsa(pair))
            }
            (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
                let (alg, size) = if crv == "P-256" {
                    (Algorithm::ES256, 32)
                } else {
                    (Algorithm::ES384, 48)
                };
                if declared.is_some_and(|d| d != alg) {
                    return Err(reject(&format!("curve {crv} does not fit {declared:?}")));
                }
                let (x, y, d) = (member("x")?, member("y")?, member("d")?);
                if x.len() != size || y.len() != size || d.len() != size {
                    return Err(reject(&format!("{crv} members must be {size} bytes")));
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(ec_alg(alg), &d, &point)
                    .map_err(|e| reject(&e))?;
                (alg, Pair::Ec(pair))
            }
            (Some("OKP"), Some("Ed25519")) => {
                if declared.is_some_and(|d| d != Algorithm::EdDSA) {
                    return Err(reject(&"Ed25519 keys sign EdDSA only"));
                }
                let (x, d) = (member("x")?, member("d")?);
                let pair =
                    Ed25519KeyPair::from_seed_and_public_key(&d, &x).map_err(|e| reject(&e))?;
                (Algorithm::EdDSA, Pair::Ed(pair))
            }
            (kty, crv) => {
                return Err(reject(&format!(
                    "unsupported key type {kty:?} / curve {crv:?}"
                )));
            }
        };
        Ok(Self::from_pair(alg, pair))
    }

    /// The private key as PKCS#8 v1 DER, in a buffer zeroized on drop (to persist a generated
    /// key; [`SigningKey::from_pkcs8_der`] reads it back).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::RS256).unwrap();
    /// let der = key.to_pkcs8_der().unwrap();
    /// assert_eq!(der[0], 0x30); // a DER SEQUENCE
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if the backend cannot serialize the key.
    pub fn to_pkcs8_der(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, ConfigError> {
        use aws_lc_rs::encoding::AsDer as _;
        let fail = |_| ConfigError::InvalidKey("cannot export the private key".into());
        let bytes = match &self.pair {
            Pair::Rsa(pair) => pair.as_der().map_err(fail)?.as_ref().to_vec(),
            Pair::Ec(pair) => pair.to_pkcs8v1().map_err(fail)?.as_ref().to_vec(),
            Pair::Ed(pair) => pair.to_pkcs8v1().map_err(fail)?.as_ref().to_vec(),
        };
        Ok(zeroize::Zeroizing::new(bytes))
    }

    /// The private key as a `BEGIN PRIVATE KEY` PEM (PKCS#8), zeroized on drop.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let pem = SigningKey::generate(Algorithm::ES256).unwrap().to_pkcs8_pem().unwrap();
    /// assert!(pem.trim_end().ends_with("-----END PRIVATE KEY-----"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if the backend cannot serialize the key.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, ConfigError> {
        use base64::engine::general_purpose::STANDARD;
        let der = self.to_pkcs8_der()?;
        let body = zeroize::Zeroizing::new(STANDARD.encode(&der[..]));
        let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
        pem.push_str("-----BEGIN PRIVATE KEY-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(zeroize::Zeroizing::new(pem))
    }

    /// The private JWK (public members plus `d`, and for RSA `p q dp dq qi`), for tests and key
    /// migration. Treat the result as a secret; it is not zeroized.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let jwk = SigningKey::generate(Algorithm::EdDSA).unwrap().to_private_jwk().unwrap();
    /// assert!(jwk["d"].is_string());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if the key cannot be exported.
    pub fn to_private_jwk(&self) -> Result<Value, ConfigError> {
        let der = self.to_pkcs8_der()?;
        let bad = || ConfigError::InvalidKey("unexpected PKCS#8 structure".into());
        let mut jwk = self.public.clone();
        match &self.pair {
            Pair::Rsa(_) => {
                // PrivateKeyInfo { version, algorithm, privateKey OCTET STRING { RSAPrivateKey } }
                let outer = der_children(&der).ok_or_else(bad)?;
                let inner = outer.get(2).ok_or_else(bad)?;
                let ints = der_children(inner.1).ok_or_else(bad)?;
                let names = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
                for (i, name) in names.iter().enumerate() {
                    let (_, v) = ints.get(i + 1).ok_or_else(bad)?;
                    let v = v.iter().position(|b| *b != 0).map_or(&v[..0], |p| &v[p..]);
                    jwk.insert((*name).into(), Value::String(b64(v)));
                }
            }
            Pair::Ec(_) => {
                // PrivateKeyInfo { .., privateKey OCTET STRING { ECPrivateKey { 1, d, .. } } }
                let outer = der_children(&der).ok_or_else(bad)?;
                let inner = der_children(outer.get(2).ok_or_else(bad)?.1).ok_or_else(bad)?;
                let d = inner.get(1).ok_or_else(bad)?.1;
                jwk.insert("d".into(), Value::String(b64(d)));
            }
            Pair::Ed(_) => {
                // PrivateKeyInfo { .., privateKey OCTET STRING { OCTET STRING seed } }
                let outer = der_children(&der).ok_or_else(bad)?;
                let (tag, seed) = der_read(outer.get(2).ok_or_else(bad)?.1).ok_or_else(bad)?.0;
                if tag != 0x04 || seed.len() != 32 {
                    return Err(bad());
                }
                jwk.insert("d".into(), Value::String(b64(seed)));
            }
        }
        Ok(Value::Object(jwk))
    }

    /// Replaces the `kid` (and the JWK's `kid` member): for keys migrated from another server
    /// whose tokens carry a non-thumbprint `kid` (Spring Authorization Server uses UUIDs).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap().with_kid("legacy-1");
    /// assert_eq!(key.kid(), "legacy-1");
    /// assert_eq!(key.public_jwk()["kid"], "legacy-1");
    /// ```
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = kid.into();
        self.header = std::sync::OnceLock::new();
        self.public
            .insert("kid".into(), Value::String(self.kid.clone()));
        self
    }

    /// The RFC 7638 thumbprint of the public key (equal to [`SigningKey::kid`] unless
    /// [`SigningKey::with_kid`] replaced it).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// let thumb = key.thumbprint();
    /// assert_eq!(key.with_kid("other").thumbprint(), thumb);
    /// ```
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.public)
    }
}

#[cfg(feature = "issuer")]
fn unsupported(alg: Algorithm) -> ConfigError {
    ConfigError::InvalidKey(format!("{alg} is not a supported signing algorithm"))
}

/// Decodes one PEM block: its label and DER bytes (zeroized on drop).
#[cfg(feature = "issuer")]
fn pem_decode(pem: &str) -> Result<(String, zeroize::Zeroizing<Vec<u8>>), ConfigError> {
    use base64::engine::general_purpose::STANDARD;
    let bad = |why: &str| ConfigError::InvalidKey(format!("not a PEM private key: {why}"));
    let start = pem
        .find("-----BEGIN ")
        .ok_or_else(|| bad("no BEGIN line"))?;
    let rest = &pem[start + 11..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| bad("malformed BEGIN line"))?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body
        .find(&end_marker)
        .ok_or_else(|| bad("no matching END line"))?;
    let body = &body[..end];
    if body.contains(':') {
        return Err(bad("encrypted (Proc-Type) PEM is not supported"));
    }
    let b64: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
    let der = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| bad("body is not base64"))?;
    Ok((label.to_owned(), zeroize::Zeroizing::new(der)))
}

#[cfg(feature = "issuer")]
fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// PKCS#1 `RSAPrivateKey` (RFC 8017 A.1.2) from big-endian `n e d p q dp dq qi`.
#[cfg(feature = "issuer")]
fn rsa_private_key_der(ints: &[zeroize::Zeroizing<Vec<u8>>]) -> zeroize::Zeroizing<Vec<u8>> {
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(1300));
    let mut push_int = |v: &[u8]| {
        let v = v
            .iter()
            .position(|b| *b != 0)
            .map_or(&[0u8][..], |p| &v[p..]);
        let pad = v[0] & 0x80 != 0;
        body.push(0x02);
        der_len(&mut body, v.len() + usize::from(pad));
        if pad {
            body.push(0);
        }
        body.extend_from_slice(v);
    };
    push_int(&[0]);
    for v in ints {
        push_int(v);
    }
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(body.len() + 4));
    out.push(0x30);
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Reads one DER TLV: `((tag, value), rest)`.
#[cfg(feature = "issuer")]
fn der_read(input: &[u8]) -> Option<((u8, &[u8]), &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| ((tag, &rest[..len]), &rest[len..]))
}

/// The children of a DER SEQUENCE or the content of an OCTET STRING holding a SEQUENCE.
#[cfg(feature = "issuer")]
fn der_children(input: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let ((tag, mut body), _) = der_read(input)?;
    if tag != 0x30 {
        return None;
    }
    let mut out = Vec::new();
    while !body.is_empty() {
        let (tlv, rest) = der_read(body)?;
        out.push(tlv);
        body = rest;
    }
    Some(out)
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members in lexicographic order.
///
/// # Example
///
/// ```
/// use tower_bearer::signing::thumbprint;
///
/// // RFC 8037 §A.3.
/// let jwk = serde_json::json!({
///     "kty": "OKP", "crv": "Ed25519",
///     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
/// });
/// assert_eq!(
///     thumbprint(jwk.as_object().unwrap()),
///     "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
/// );
/// ```
pub fn thumbprint(jwk: &Map<String, Value>) -> String {
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => &["k", "kty"],
    };
    let mut canonical = String::from("{");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        let v = jwk.get(*m).and_then(Value::as_str).unwrap_or_default();
        canonical.push_str(&format!("\"{m}\":\"{v}\""));
    }
    canonical.push('}');
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[cfg(feature = "issuer")]
    fn cookbook(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/vectors/jose-cookbook/jws")
            .join(name);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// JOSE cookbook §4.1: the private RSA JWK, imported, signs RS256 byte-for-byte as published
    /// (PKCS#1 v1.5 is deterministic), so the PKCS#1 DER built from the JWK members is right.
    #[cfg(feature = "issuer")]
    #[test]
    fn private_rsa_jwk_known_answer() {
        let v = cookbook("4_1.rsa_v15_signature.json");
        let key = SigningKey::from_jwk(&v["input"]["key"]).unwrap();
        assert_eq!(key.algorithm(), Algorithm::RS256);
        assert_eq!(
            key.kid(),
            thumbprint(v["input"]["key"].as_object().unwrap()),
            "kid is the thumbprint, not the JWK's kid member"
        );
        let input = v["signing"]["sig-input"].as_str().unwrap();
        let sig = key.sign_bytes(input.as_bytes()).unwrap();
        assert_eq!(b64(&sig), v["signing"]["sig"].as_str().unwrap());
        // The exported private JWK has the same members as the cookbook's.
        let back = key.to_private_jwk().unwrap();
        for m in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
            assert_eq!(back[m], v["input"]["key"][m], "member {m}");
        }
    }

    /// RFC 8037 §A.1/A.4: the Ed25519 private JWK signs the published signature.
    #[cfg(feature = "issuer")]
    #[test]
    fn private_okp_jwk_known_answer() {
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519",
            "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        });
        let key = SigningKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        let token = key
            .sign_raw(b"{\"alg\":\"EdDSA\"}", b"Example of Ed25519 signing")
            .unwrap();
        assert_eq!(
            token,
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        assert_eq!(key.to_private_jwk().unwrap()["d"], jwk["d"]);
        // A `d` that does not belong to `x` is refused.
        let mut wrong = jwk.clone();
        wrong["x"] = json!(b64(&[7u8; 32]));
        assert!(SigningKey::from_jwk(&wrong).is_err());
    }

    /// Every algorithm: PKCS#8 DER, PEM and private JWK round trips keep the key (same kid =
    /// thumbprint of the public JWK; deterministic algorithms sign identically).
    #[cfg(feature = "issuer")]
    #[test]
    fn import_export_round_trips() {
        for alg in [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let key = SigningKey::generate(alg).unwrap();
            let kid = thumbprint(key.public_jwk().as_object().unwrap());
            assert_eq!(key.kid(), kid);
            let der = key.to_pkcs8_der().unwrap();
            let pem = key.to_pkcs8_pem().unwrap();
            let mut jwk = key.to_private_jwk().unwrap();
            jwk.as_object_mut()
                .unwrap()
                .insert("alg".into(), json!(alg.as_str()));
            for again in [
                SigningKey::from_pkcs8_der(alg, &der).unwrap(),
                SigningKey::from_pem(alg, &pem).unwrap(),
                SigningKey::from_jwk(&jwk).unwrap(),
            ] {
                assert_eq!(again.kid(), kid, "{alg}");
                assert_eq!(again.algorithm(), alg);
                assert_eq!(again.public_jwk(), key.public_jwk());
                if matches!(alg, Algorithm::RS256 | Algorithm::EdDSA) {
                    assert_eq!(
                        again.sign_bytes(b"m").unwrap(),
                        key.sign_bytes(b"m").unwrap()
                    );
                }
            }
        }
    }

    /// `BEGIN RSA PRIVATE KEY` (PKCS#1) and `BEGIN EC PRIVATE KEY` (SEC1), cut out of the PKCS#8.
    #[cfg(feature = "issuer")]
    #[test]
    fn pkcs1_and_sec1_pem() {
        use base64::engine::general_purpose::STANDARD;
        for (alg, label) in [
            (Algorithm::RS256, "RSA PRIVATE KEY"),
            (Algorithm::ES256, "EC PRIVATE KEY"),
        ] {
            let key = SigningKey::generate(alg).unwrap();
            let der = key.to_pkcs8_der().unwrap();
            let inner = der_children(&der).unwrap()[2].1.to_vec();
            let pem = format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                STANDARD.encode(&inner)
            );
            assert_eq!(SigningKey::from_pem(alg, &pem).unwrap().kid(), key.kid());
            // The label must fit the algorithm.
            assert!(SigningKey::from_pem(Algorithm::EdDSA, &pem).is_err());
        }
        let err = SigningKey::from_pem(
            Algorithm::RS256,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
        assert!(SigningKey::from_pem(Algorithm::RS256, "no pem here").is_err());
    }

    #[cfg(feature = "issuer")]
    #[test]
    fn wrong_key_type_and_public_only_refused() {
        let ec = SigningKey::generate(Algorithm::ES256).unwrap();
        let der = ec.to_pkcs8_der().unwrap();
        assert!(SigningKey::from_pkcs8_der(Algorithm::RS256, &der).is_err());
        assert!(SigningKey::from_pkcs8_der(Algorithm::ES384, &der).is_err());
        assert!(SigningKey::from_pkcs8_der(Algorithm::HS256, &der).is_err());
        let mut jwk = ec.to_private_jwk().unwrap();
        jwk["alg"] = json!("EdDSA");
        assert!(SigningKey::from_jwk(&jwk).is_err());
        assert!(SigningKey::from_jwk(&ec.public_jwk()).is_err());
        let rsa = SigningKey::generate(Algorithm::RS256).unwrap();
        let mut jwk = rsa.to_private_jwk().unwrap();
        jwk.as_object_mut().unwrap().remove("qi");
        let err = SigningKey::from_jwk(&jwk).unwrap_err();
        assert!(err.to_string().contains("`qi`"), "{err}");
    }
}
