//! Signing keys (RS256, PS256, ES256, ES384, EdDSA) with RFC 7638 thumbprint `kid`s: what an
//! issuer, a demo or a test needs to mint tokens a [`Verifier`](crate::verify::Verifier) accepts.
//!
//! Keys are generated in memory by aws-lc-rs; nothing here reads or writes key files.
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
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::error::ConfigError;
use crate::jwks::Algorithm;

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
        let (pair, public) = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| fail(&e))?;
                let pk = pair.public_key();
                let public = json!({
                    "kty": "RSA",
                    "n": b64(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64(pk.exponent().big_endian_without_leading_zero()),
                });
                (Pair::Rsa(pair), public)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let (sig_alg, crv, size) = if alg == Algorithm::ES256 {
                    (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
                } else {
                    (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
                };
                let pair = EcdsaKeyPair::generate(sig_alg).map_err(|e| fail(&e))?;
                let point = pair.public_key().as_ref().to_vec();
                let public = json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": b64(&point[1..=size]),
                    "y": b64(&point[1 + size..]),
                });
                (Pair::Ec(pair), public)
            }
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::generate().map_err(|e| fail(&e))?;
                let public = json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": b64(pair.public_key().as_ref()),
                });
                (Pair::Ed(pair), public)
            }
            other => {
                return Err(ConfigError::InvalidKey(format!(
                    "cannot generate a signing key for {other}"
                )))
            }
        };
        let Value::Object(mut public) = public else {
            unreachable!("json! object")
        };
        let kid = thumbprint(&public);
        public.insert("kid".into(), Value::String(kid.clone()));
        public.insert("use".into(), Value::String("sig".into()));
        public.insert("alg".into(), Value::String(alg.as_str().into()));
        Ok(Self {
            alg,
            pair,
            public,
            kid,
        })
    }

    /// The RFC 7638 thumbprint, used as `kid`.
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
        let mut out = format!("{}.{}", b64(header), b64(payload));
        let sig = self.sign_bytes(out.as_bytes())?;
        out.push('.');
        out.push_str(&b64(&sig));
        Ok(out)
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
}
