//! Interoperability with an independent JOSE implementation (`jsonwebtoken`, a dev-dependency
//! only): tokens we sign verify with jsonwebtoken, and tokens jsonwebtoken signs verify with our
//! `Verifier`, for every algorithm both sides support. A tampered token fails on both sides.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tower_bearer::jwks::{Algorithm, KeySet};
use tower_bearer::signing::SigningKey;
use tower_bearer::verify::{IssuerConfig, Verifier};

const ISS: &str = "https://auth.interop.test";
const AUD: &str = "interop-api";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    let now = now();
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 300, "jti": "j-1"})
}

fn install_provider() {
    // jsonwebtoken needs a process-wide provider; "already installed" is fine.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    alg.as_str().parse().unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pem(der: &[u8]) -> Vec<u8> {
    let body = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out.into_bytes()
}

fn tamper(token: &str) -> String {
    // Re-encode the payload with another subject, keeping header and signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("mallory");
    parts[1] = b64(payload.to_string().as_bytes());
    parts.join(".")
}

async fn our_verifier(jwk: Value, alg: Algorithm) -> Verifier {
    let jwks = json!({ "keys": [jwk] });
    let keys = KeySet::from_jwks(jwks.to_string().as_bytes(), &[alg]).unwrap();
    Verifier::builder()
        .issuer(IssuerConfig::static_keys(ISS, keys))
        .audience(AUD)
        .algorithms([alg])
        .build()
        .unwrap()
}

/// Tokens signed by `SigningKey` verify with jsonwebtoken (every algorithm `SigningKey` has).
#[test]
fn jsonwebtoken_verifies_our_tokens() {
    install_provider();
    let algs = [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    for alg in algs {
        let key = SigningKey::generate(alg).unwrap();
        let jwk = key.public_jwk();
        let s = |name: &str| jwk[name].as_str().unwrap().to_owned();
        let decoding = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                jsonwebtoken::DecodingKey::from_rsa_components(&s("n"), &s("e")).unwrap()
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                jsonwebtoken::DecodingKey::from_ec_components(&s("x"), &s("y")).unwrap()
            }
            _ => jsonwebtoken::DecodingKey::from_ed_components(&s("x")).unwrap(),
        };
        let mut validation = jsonwebtoken::Validation::new(jwt_alg(alg));
        validation.set_audience(&[AUD]);
        validation.set_issuer(&[ISS]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let token = key.sign(&claims()).unwrap();
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
            .unwrap_or_else(|e| panic!("{alg}: jsonwebtoken rejected our token: {e}"));
        assert_eq!(data.claims["sub"], "alice", "{alg}");
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()), "{alg}");
        assert!(
            jsonwebtoken::decode::<Value>(&tamper(&token), &decoding, &validation).is_err(),
            "{alg}: jsonwebtoken accepted a tampered token"
        );
    }
}

/// A fresh key pair as jsonwebtoken wants it (PKCS#8 PEM) and its public JWK.
fn jsonwebtoken_key(alg: Algorithm) -> (jsonwebtoken::EncodingKey, Value) {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&pair).unwrap();
            let pk = pair.public_key();
            let jwk = json!({
                "kty": "RSA",
                "n": b64(pk.modulus().big_endian_without_leading_zero()),
                "e": b64(pk.exponent().big_endian_without_leading_zero()),
            });
            (
                jsonwebtoken::EncodingKey::from_rsa_pem(&pem(der.as_ref())).unwrap(),
                jwk,
            )
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let (sig_alg, crv, size) = if alg == Algorithm::ES256 {
                (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
            } else {
                (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
            };
            let pair = EcdsaKeyPair::generate(sig_alg).unwrap();
            let point = pair.public_key().as_ref().to_vec();
            let jwk = json!({
                "kty": "EC", "crv": crv,
                "x": b64(&point[1..=size]), "y": b64(&point[1 + size..]),
            });
            let der = pair.to_pkcs8v1().unwrap();
            (
                jsonwebtoken::EncodingKey::from_ec_pem(&pem(der.as_ref())).unwrap(),
                jwk,
            )
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate().unwrap();
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
            let der = pair.to_pkcs8v1().unwrap();
            (
                jsonwebtoken::EncodingKey::from_ed_pem(&pem(der.as_ref())).unwrap(),
                jwk,
            )
        }
        other => panic!("no asymmetric key for {other}"),
    }
}

/// Tokens signed by jsonwebtoken verify with our `Verifier` (every asymmetric algorithm both
/// support: RS256/384/512, PS256/384/512, ES256, ES384, EdDSA).
#[tokio::test]
async fn our_verifier_accepts_jsonwebtoken_tokens() {
    install_provider();
    let algs = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    for alg in algs {
        let (encoding, jwk) = jsonwebtoken_key(alg);
        let mut header = jsonwebtoken::Header::new(jwt_alg(alg));
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&header, &claims(), &encoding)
            .unwrap_or_else(|e| panic!("{alg}: jsonwebtoken could not sign: {e}"));
        let verifier = our_verifier(jwk, alg).await;
        let user = verifier
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: our verifier rejected jsonwebtoken's token: {e}"));
        assert_eq!(user.subject(), Some("alice"), "{alg}");
        assert!(
            verifier.verify(&tamper(&token)).await.is_err(),
            "{alg}: our verifier accepted a tampered token"
        );
    }
}
