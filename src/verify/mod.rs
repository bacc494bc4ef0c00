//! [`Verifier`]: token → [`CurrentUser`].
//!
//! The header and claims checks are our own, on an injectable [`Clock`], with one parse of each
//! part (jsonwebtoken's `Validation` accepts tokens without `iss`/`aud`, ignores `nbf` by
//! default, never checks `iat`, `typ`, `crit` or `b64`, and reads the system clock). Signatures
//! are checked with keys parsed once when the key set loads; the algorithm is bound to the key.
//!
//! Checks, in order: size; compact form (JWE and JSON serialization refused); the verified-token
//! cache; header (`alg` allow-list, `none` in any casing, `b64`, `crit`, embedded keys in strict
//! mode, `typ`); claims parsed with duplicate members refused; `iss` picks the issuer (and its
//! keys) before any crypto; the signature; `aud`, `exp`, `nbf`, `iat`, required claims.
//!
//! # Example
//!
//! ```
//! use tower_bearer::jwks::{Algorithm, KeySet};
//! use tower_bearer::signing::SigningKey;
//! use tower_bearer::verify::{IssuerConfig, Verifier};
//! use tower_bearer::error::{AuthError, TokenError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let key = SigningKey::generate(Algorithm::ES256).unwrap();
//! let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::ES256]).unwrap();
//! let verifier = Verifier::builder()
//!     .issuer(IssuerConfig::static_keys("https://auth.example", keys))
//!     .audience("orders")
//!     .build()
//!     .unwrap();
//!
//! let now = tower_bearer::clock::Clock::now_unix(&tower_bearer::clock::SystemClock);
//! let token = key
//!     .sign(&serde_json::json!({
//!         "iss": "https://auth.example", "aud": "orders", "sub": "alice", "exp": now + 60
//!     }))
//!     .unwrap();
//! let user = verifier.verify(&token).await.unwrap();
//! assert_eq!(user.subject(), Some("alice"));
//!
//! let expired = key
//!     .sign(&serde_json::json!({
//!         "iss": "https://auth.example", "aud": "orders", "sub": "alice", "exp": now - 600
//!     }))
//!     .unwrap();
//! assert_eq!(
//!     verifier.verify(&expired).await.unwrap_err(),
//!     AuthError::InvalidToken(TokenError::Expired)
//! );
//! # }
//! ```

mod cache;
mod dots;
#[cfg(test)]
mod vectors_tests;

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Map, Value};

use crate::bearer::DEFAULT_MAX_TOKEN_LEN;
use crate::claims::{ClaimMapping, CompiledMapping, CurrentUser, IssuerBinding, UserParts};
use crate::clock::{Clock, ClockSource};
use crate::error::{AuthError, ConfigError, TokenError};
use crate::http_client::{HttpClient, HttpClientConfig, HyperClient};
use crate::json::{
    Claims, Lite, b64url, b64url_decode, b64url_len, b64url_text, parse_claims, parse_object,
};
use crate::jwks::key_set_generation;
use crate::jwks::{
    AlgSet, Algorithm, KeyProvider, KeySet, KeySource, Lookup, RemoteOptions, RemoteSource,
};
use cache::{Entry, TokenCache};

/// Default leeway for `exp`, `nbf` and `iat`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::verify::DEFAULT_LEEWAY;
///
/// assert_eq!(DEFAULT_LEEWAY, Duration::from_secs(60));
/// ```
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Default size of the verified-token cache.
///
/// # Example
///
/// ```
/// use tower_bearer::verify::DEFAULT_TOKEN_CACHE_ENTRIES;
///
/// assert_eq!(DEFAULT_TOKEN_CACHE_ENTRIES, 100_000);
/// ```
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 100_000;
/// Latest accepted NumericDate (9999-12-31T23:59:59Z): anything later is absurd.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// One trusted issuer and where its keys come from.
///
/// # Example
///
/// ```
/// # use tower_bearer::jwks::{Algorithm, KeySet};
/// # use tower_bearer::signing::SigningKey;
/// # use tower_bearer::verify::{IssuerConfig, Verifier};
/// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// # let jwks = key.jwks().to_string();
/// # let issuer = || IssuerConfig::static_keys("https://auth.example",
/// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
/// # let token = |extra: serde_json::Value| {
/// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
/// #         "sub": "alice", "exp": 4_000_000_000u64});
/// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
/// #     key.sign(&c).unwrap()
/// # };
/// let verifier = Verifier::builder()
///     .issuer(issuer())
///     .issuer(IssuerConfig::discovery("https://login.partner.example").prefix("partner"))
///     .audience("orders")
///     .build()
///     .unwrap();
/// assert!(verifier.try_verify(&token(serde_json::json!({}))).is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    issuer: String,
    source: KeySource,
    audiences: Vec<String>,
    algorithms: Option<Vec<Algorithm>>,
    service_tokens: Option<bool>,
    prefix: Option<String>,
}

impl IssuerConfig {
    /// An issuer with an explicit key source.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::KeySource;
    /// use tower_bearer::verify::{IssuerConfig, Verifier};
    ///
    /// let source = KeySource::DiscoveryAt("https://idp.internal".into());
    /// let issuer = IssuerConfig::new("https://auth.example", source);
    /// assert!(Verifier::builder().issuer(issuer).audience("orders").build().is_ok());
    /// ```
    pub fn new(issuer: impl Into<String>, source: KeySource) -> Self {
        Self {
            issuer: issuer.into(),
            source,
            audiences: Vec::new(),
            algorithms: None,
            service_tokens: None,
            prefix: None,
        }
    }
    /// Accepts this audience for this issuer's tokens (call again for more). An issuer with
    /// its own audiences ignores [`VerifierBuilder::audience`]; one without uses it.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let keys = || KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let token = |aud: &str| key.sign(&serde_json::json!({"iss": "https://auth.example",
    /// #     "aud": aud, "sub": "alice", "exp": 4_000_000_000u64})).unwrap();
    /// let verifier = Verifier::builder()
    ///     .issuer(IssuerConfig::static_keys("https://auth.example", keys()).audience("partner-api"))
    ///     .audience("orders")
    ///     .build()
    ///     .unwrap();
    /// assert!(verifier.try_verify(&token("partner-api")).is_ok());
    /// assert!(verifier.try_verify(&token("orders")).is_err());
    /// ```
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }
    /// The algorithm allow-list for this issuer (default: [`VerifierBuilder::algorithms`]).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let keys = || KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let token = key.sign(&serde_json::json!({"iss": "https://auth.example",
    /// #     "aud": "orders", "sub": "alice", "exp": 4_000_000_000u64})).unwrap();
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let issuer = IssuerConfig::static_keys("https://auth.example", keys()).algorithms([Algorithm::ES256]);
    /// let verifier = Verifier::builder().issuer(issuer).audience("orders").build().unwrap();
    /// assert_eq!(
    ///     verifier.try_verify(&token).unwrap_err(),
    ///     AuthError::InvalidToken(TokenError::AlgorithmNotAllowed)
    /// );
    /// ```
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algs.into_iter().collect());
        self
    }
    /// Whether this issuer may mint service tokens, the tokens a
    /// [`ServiceTokenRule`](crate::claims::ServiceTokenRule) accepts for internal-only paths
    /// (default: only the first configured issuer).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let keys = || KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let token = key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #     "sub": "svc", "gty": "client-credentials", "exp": 4_000_000_000u64})).unwrap();
    /// use tower_bearer::claims::ServiceTokenRule;
    ///
    /// let issuer = IssuerConfig::static_keys("https://auth.example", keys()).service_tokens(false);
    /// let verifier = Verifier::builder().issuer(issuer).audience("orders").build().unwrap();
    /// let user = verifier.try_verify(&token).unwrap();
    /// assert!(!ServiceTokenRule::default().matches(&user));
    /// ```
    pub fn service_tokens(mut self, allowed: bool) -> Self {
        self.service_tokens = Some(allowed);
        self
    }
    /// The prefix of this issuer's users when several issuers are configured:
    /// [`CurrentUser::user_id`] (so the policy-version key and `X-User-Id`) becomes
    /// `prefix:id`. ASCII letters, digits, `.`, `_` and `-`. With several issuers every issuer
    /// but the first needs one (the first may have one); with one issuer it is not applied.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let keys = || KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let token = key.sign(&serde_json::json!({"iss": "https://partner.example", "aud": "orders",
    /// #     "sub": "42", "exp": 4_000_000_000u64})).unwrap();
    /// let verifier = Verifier::builder()
    ///     .issuer(IssuerConfig::discovery("https://auth.example"))
    ///     .issuer(IssuerConfig::static_keys("https://partner.example", keys()).prefix("partner"))
    ///     .audience("orders")
    ///     .build()
    ///     .unwrap();
    /// let user = verifier.try_verify(&token).unwrap();
    /// assert_eq!(user.user_id(), Some("partner:42"));
    /// assert_eq!(user.local_user_id(), Some("42"));
    /// assert_eq!(user.issuer(), "https://partner.example");
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }
    /// Keys from a JWKS URL.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::verify::{IssuerConfig, Verifier};
    ///
    /// let ok = IssuerConfig::jwks_uri("https://auth.example", "https://auth.example/jwks");
    /// assert!(Verifier::builder().issuer(ok).audience("orders").build().is_ok());
    /// // Plain http:// is refused for a non-loopback host.
    /// let bad = IssuerConfig::jwks_uri("https://auth.example", "http://auth.example/jwks");
    /// assert!(Verifier::builder().issuer(bad).audience("orders").build().is_err());
    /// ```
    pub fn jwks_uri(issuer: impl Into<String>, url: impl Into<String>) -> Self {
        Self::new(issuer, KeySource::JwksUri(url.into()))
    }
    /// Keys found through OIDC / RFC 8414 discovery of the issuer URL.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::verify::{IssuerConfig, Verifier};
    ///
    /// let issuer = IssuerConfig::discovery("https://auth.example");
    /// let verifier = Verifier::builder().issuer(issuer).audience("orders").build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn discovery(issuer: impl Into<String>) -> Self {
        Self::new(issuer, KeySource::Discovery)
    }
    /// Fixed keys.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// let verifier = Verifier::builder()
    ///     .issuer(IssuerConfig::static_keys("https://auth.example",
    ///         KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap()))
    ///     .audience("orders")
    ///     .build()
    ///     .unwrap();
    /// assert!(verifier.try_verify(&token(serde_json::json!({}))).is_ok());
    /// ```
    pub fn static_keys(issuer: impl Into<String>, keys: KeySet) -> Self {
        Self::new(issuer, KeySource::Static(Arc::new(keys)))
    }
}

/// Builds a [`Verifier`]. See the [module docs](crate::verify) for a fuller example.
///
/// # Example
///
/// ```
/// # use tower_bearer::jwks::{Algorithm, KeySet};
/// # use tower_bearer::signing::SigningKey;
/// # use tower_bearer::verify::{IssuerConfig, Verifier};
/// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// # let jwks = key.jwks().to_string();
/// # let issuer = || IssuerConfig::static_keys("https://auth.example",
/// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
/// # let token = |extra: serde_json::Value| {
/// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
/// #         "sub": "alice", "exp": 4_000_000_000u64});
/// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
/// #     key.sign(&c).unwrap()
/// # };
/// let builder = Verifier::builder().issuer(issuer()).audience("orders");
/// let verifier = builder.build().unwrap();
/// assert_eq!(verifier.try_verify(&token(serde_json::json!({}))).unwrap().subject(), Some("alice"));
/// ```
#[must_use]
pub struct VerifierBuilder {
    issuers: Vec<IssuerConfig>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    typ: Option<String>,
    required_claims: Vec<String>,
    mapping: ClaimMapping,
    cache_entries: usize,
    http_client: Option<Arc<dyn HttpClient>>,
    http_config: HttpClientConfig,
    remote: RemoteOptions,
    clock: ClockSource,
    reject_embedded_keys: bool,
    reject_id_tokens: bool,
    any_rsa_alg: bool,
    max_token_len: usize,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl Default for VerifierBuilder {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: Algorithm::ASYMMETRIC.to_vec(),
            leeway: DEFAULT_LEEWAY,
            typ: None,
            required_claims: Vec::new(),
            mapping: ClaimMapping::default(),
            cache_entries: DEFAULT_TOKEN_CACHE_ENTRIES,
            http_client: None,
            http_config: HttpClientConfig::default(),
            remote: RemoteOptions::default(),
            clock: ClockSource::System,
            reject_embedded_keys: false,
            reject_id_tokens: true,
            any_rsa_alg: false,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }
}

impl VerifierBuilder {
    /// Trusts an issuer (call once per issuer; the token's `iss` picks one).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let verifier = Verifier::builder().issuer(issuer()).audience("orders").build().unwrap();
    /// let other = token(serde_json::json!({"iss": "https://evil.example"}));
    /// assert_eq!(
    ///     verifier.try_verify(&other).unwrap_err(),
    ///     AuthError::InvalidToken(TokenError::UntrustedIssuer)
    /// );
    /// ```
    pub fn issuer(mut self, issuer: IssuerConfig) -> Self {
        self.issuers.push(issuer);
        self
    }
    /// Accepts tokens whose `aud` contains this audience (call again for more).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// let verifier = Verifier::builder()
    ///     .issuer(issuer())
    ///     .audience("orders")
    ///     .audience("billing")
    ///     .build()
    ///     .unwrap();
    /// assert!(verifier.try_verify(&token(serde_json::json!({"aud": ["billing"]}))).is_ok());
    /// assert!(verifier.try_verify(&token(serde_json::json!({"aud": "shipping"}))).is_err());
    /// ```
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }
    /// The algorithm allow-list (default: every asymmetric algorithm).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// let verifier = Verifier::builder()
    ///     .issuer(issuer())
    ///     .audience("orders")
    ///     .algorithms([Algorithm::ES256])
    ///     .build()
    ///     .unwrap();
    /// // The token is EdDSA-signed: refused.
    /// assert!(verifier.try_verify(&token(serde_json::json!({}))).is_err());
    /// ```
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algs.into_iter().collect();
        self
    }
    /// Clock skew tolerated for `exp`, `nbf` and `iat` (default 60 s).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use std::{sync::Arc, time::Duration};
    /// use tower_bearer::clock::ManualClock;
    ///
    /// let clock = Arc::new(ManualClock::new(1_000_030)); // 30 s after `exp`
    /// let build = |leeway| Verifier::builder().issuer(issuer()).audience("orders")
    ///     .clock(clock.clone()).leeway(leeway).build().unwrap();
    /// let t = token(serde_json::json!({"exp": 1_000_000}));
    /// assert!(build(Duration::from_secs(60)).try_verify(&t).is_ok());
    /// assert!(build(Duration::ZERO).try_verify(&t).is_err());
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
    /// Requires the JOSE `typ` header (e.g. `at+jwt`; `application/` prefix and case ignored).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let verifier =
    ///     Verifier::builder().issuer(issuer()).audience("orders").typ("at+jwt").build().unwrap();
    /// // `SigningKey::sign` writes `typ: JWT`.
    /// assert_eq!(
    ///     verifier.try_verify(&token(serde_json::json!({}))).unwrap_err(),
    ///     AuthError::InvalidToken(TokenError::WrongType)
    /// );
    /// ```
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(normalize_typ(&typ.into()));
        self
    }
    /// Claims that must be present, beyond `iss`, `aud` and `exp`.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let verifier = Verifier::builder()
    ///     .issuer(issuer())
    ///     .audience("orders")
    ///     .required_claims(["tenant"])
    ///     .build()
    ///     .unwrap();
    /// assert!(verifier.try_verify(&token(serde_json::json!({"tenant": "acme"}))).is_ok());
    /// assert_eq!(
    ///     verifier.try_verify(&token(serde_json::json!({}))).unwrap_err(),
    ///     AuthError::InvalidToken(TokenError::MissingRequiredClaim)
    /// );
    /// ```
    pub fn required_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.required_claims = names.into_iter().map(Into::into).collect();
        self
    }
    /// Where the user id, roles, permissions and tenant are read from.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::claims::ClaimMapping;
    ///
    /// let mapping = ClaimMapping { user_id: "email".into(), ..ClaimMapping::default() };
    /// let verifier =
    ///     Verifier::builder().issuer(issuer()).audience("orders").claim_mapping(mapping).build().unwrap();
    /// let user = verifier.try_verify(&token(serde_json::json!({"email": "a@example.com"}))).unwrap();
    /// assert_eq!(user.user_id(), Some("a@example.com"));
    /// ```
    pub fn claim_mapping(mut self, mapping: ClaimMapping) -> Self {
        self.mapping = mapping;
        self
    }
    /// Size of the verified-token cache; `0` turns it off.
    ///
    /// A hit is exactly the bytes of a token verified before (compared in full; the slot is a
    /// keyed hash, random per process), and re-checks `exp`/`nbf` and that the signing key is
    /// still published. Only verified tokens are inserted; a full shard drops expired entries,
    /// then an eighth of the rest. Memory: at most `max_entries` (rounded up to a multiple of
    /// 16) entries, each holding its token (at most [`max_token_len`](Self::max_token_len)
    /// bytes), the user built from its claims, and about 200 bytes more.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// let verifier =
    ///     Verifier::builder().issuer(issuer()).audience("orders").token_cache(0).build().unwrap();
    /// let t = token(serde_json::json!({}));
    /// // Without a cache every call checks the signature again; the answer is the same.
    /// assert!(verifier.try_verify(&t).is_ok());
    /// assert!(verifier.try_verify(&t).is_ok());
    /// ```
    pub fn token_cache(mut self, max_entries: usize) -> Self {
        self.cache_entries = max_entries;
        self
    }
    /// Replaces the HTTP client used for JWKS and discovery.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::http_client::{HttpClientConfig, HyperClient};
    /// use tower_bearer::verify::{IssuerConfig, Verifier};
    ///
    /// let client = HyperClient::new(HttpClientConfig::default()).unwrap();
    /// let verifier = Verifier::builder()
    ///     .issuer(IssuerConfig::jwks_uri("https://auth.example", "https://auth.example/jwks"))
    ///     .audience("orders")
    ///     .http_client(Arc::new(client))
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn http_client(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.http_client = Some(client);
        self
    }
    /// Settings for the default HTTP client.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::http_client::HttpClientConfig;
    /// use tower_bearer::verify::{IssuerConfig, Verifier};
    ///
    /// let issuer = || IssuerConfig::jwks_uri("https://idp.internal", "http://idp.internal/jwks");
    /// let insecure = HttpClientConfig { allow_insecure_http: true, ..Default::default() };
    /// let builder = || Verifier::builder().issuer(issuer()).audience("orders");
    /// assert!(builder().build().is_err());
    /// assert!(builder().http_client_config(insecure).build().is_ok());
    /// ```
    pub fn http_client_config(mut self, config: HttpClientConfig) -> Self {
        self.http_config = config;
        self
    }
    /// Refresh, cooldown and staleness timing of remote keys.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::jwks::RemoteOptions;
    /// use tower_bearer::verify::{IssuerConfig, Verifier};
    ///
    /// let opts = RemoteOptions { refresh_interval: Duration::from_secs(60), ..Default::default() };
    /// let verifier = Verifier::builder()
    ///     .issuer(IssuerConfig::jwks_uri("https://auth.example", "https://auth.example/jwks"))
    ///     .audience("orders")
    ///     .remote_options(opts)
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn remote_options(mut self, opts: RemoteOptions) -> Self {
        self.remote = opts;
        self
    }
    /// The clock for `exp`/`nbf`/`iat` (default: system clock).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use std::sync::Arc;
    /// use tower_bearer::clock::ManualClock;
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let clock = Arc::new(ManualClock::new(4_100_000_000)); // after the token's `exp`
    /// let verifier =
    ///     Verifier::builder().issuer(issuer()).audience("orders").clock(clock).build().unwrap();
    /// assert_eq!(
    ///     verifier.try_verify(&token(serde_json::json!({}))).unwrap_err(),
    ///     AuthError::InvalidToken(TokenError::Expired)
    /// );
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = ClockSource::Custom(clock);
        self
    }
    /// Refuse tokens whose header carries `jwk`, `jku`, `x5u` or `x5c` (they are never used
    /// either way).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let header = serde_json::json!({"alg": "EdDSA", "kid": key.kid(), "x5u": "https://x.example"});
    /// let claims = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    ///     "sub": "alice", "exp": 4_000_000_000u64});
    /// let t = key.sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes()).unwrap();
    /// let strict = Verifier::builder().issuer(issuer()).audience("orders")
    ///     .reject_embedded_keys(true).build().unwrap();
    /// assert_eq!(strict.try_verify(&t).unwrap_err(), AuthError::InvalidToken(TokenError::EmbeddedKey));
    /// ```
    pub fn reject_embedded_keys(mut self, reject: bool) -> Self {
        self.reject_embedded_keys = reject;
        self
    }
    /// Refuse OpenID Connect ID tokens presented as access tokens (default `true`; YAML
    /// `reject-id-tokens`): a header `typ` of `id_token+jwt`, or a `nonce` or `at_hash` claim
    /// (claims of ID tokens only), is refused with [`TokenError::IdToken`]. RFC 9068 §4 wants
    /// `typ: at+jwt` for this; this check also holds where `typ` is not required.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let id_token = token(serde_json::json!({"nonce": "n-0S6_WzA2Mj"}));
    /// let strict = Verifier::builder().issuer(issuer()).audience("orders").build().unwrap();
    /// assert_eq!(strict.try_verify(&id_token).unwrap_err(), AuthError::InvalidToken(TokenError::IdToken));
    /// let lax = Verifier::builder().issuer(issuer()).audience("orders")
    ///     .reject_id_tokens(false).build().unwrap();
    /// assert!(lax.try_verify(&id_token).is_ok());
    /// ```
    pub fn reject_id_tokens(mut self, reject: bool) -> Self {
        self.reject_id_tokens = reject;
        self
    }
    /// Let an RSA key without `alg` in a fetched JWKS serve every allowed RS/PS algorithm
    /// (default `false`; YAML `allow-any-rsa-alg-for-keys-without-alg`). By default such a key
    /// serves only the first RSA algorithm of the allow-list, in its order (RFC 8725 §3.1: one
    /// algorithm per key). Static key sets are bound when parsed (see
    /// [`KeySet::from_jwks_any_rsa_alg`]).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::verify::{IssuerConfig, Verifier};
    ///
    /// let verifier = Verifier::builder()
    ///     .issuer(IssuerConfig::jwks_uri("https://auth.example", "https://auth.example/jwks"))
    ///     .audience("orders")
    ///     .algorithms([Algorithm::PS256, Algorithm::RS256]) // a key without `alg` serves PS256
    ///     .allow_any_rsa_alg_for_keys_without_alg(false)
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn allow_any_rsa_alg_for_keys_without_alg(mut self, allow: bool) -> Self {
        self.any_rsa_alg = allow;
        self
    }
    /// Longest accepted token (default 8 KiB).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let verifier =
    ///     Verifier::builder().issuer(issuer()).audience("orders").max_token_len(64).build().unwrap();
    /// assert_eq!(
    ///     verifier.try_verify(&token(serde_json::json!({}))).unwrap_err(),
    ///     AuthError::InvalidToken(TokenError::TooLarge)
    /// );
    /// ```
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Builds the verifier; remote key fetching starts now when a Tokio runtime is running,
    /// else at the first verification.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::ConfigError;
    /// use tower_bearer::verify::{IssuerConfig, Verifier};
    ///
    /// let issuer = IssuerConfig::discovery("https://auth.example");
    /// assert!(Verifier::builder().issuer(issuer.clone()).audience("orders").build().is_ok());
    /// let err = Verifier::builder().issuer(issuer).build().unwrap_err();
    /// assert!(matches!(err, ConfigError::Missing("audience")));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when no issuer or audience is configured, a URL is refused, or the crypto
    /// backend fails its known-answer self test.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        self_test()?;
        self.remote.validate()?;
        if self.issuers.is_empty() {
            return Err(ConfigError::Missing("issuer"));
        }
        if self.audiences.is_empty() && self.issuers.iter().any(|i| i.audiences.is_empty()) {
            return Err(ConfigError::Missing("audience"));
        }
        if self.algorithms.is_empty()
            || self
                .issuers
                .iter()
                .any(|i| i.algorithms.as_ref().is_some_and(Vec::is_empty))
        {
            return Err(ConfigError::Missing("algorithms"));
        }
        let several = self.issuers.len() > 1;
        let mut prefixes: Vec<Arc<str>> = Vec::new();
        for (i, cfg) in self.issuers.iter().enumerate() {
            match &cfg.prefix {
                Some(p) => {
                    if p.is_empty()
                        || !p
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                    {
                        return Err(ConfigError::Invalid {
                            name: "prefix",
                            reason: format!(
                                "`{p}` of issuer `{}`: use ASCII letters, digits, `.`, `_`, `-`",
                                cfg.issuer
                            ),
                        });
                    }
                    if prefixes.iter().any(|q| **q == **p) {
                        return Err(ConfigError::Invalid {
                            name: "prefix",
                            reason: format!("`{p}` used by two issuers"),
                        });
                    }
                    prefixes.push(p.as_str().into());
                }
                None if several && i > 0 => {
                    return Err(ConfigError::Invalid {
                        name: "prefix",
                        reason: format!(
                            "issuer `{}` needs a prefix: with several issuers, user ids are unique only per issuer",
                            cfg.issuer
                        ),
                    });
                }
                None => {}
            }
        }
        let global = AlgSet::from_slice(&self.algorithms).with_any_rsa_alg(self.any_rsa_alg);
        let mut allowed = AlgSet::default();
        let mut client = self.http_client.clone();
        let mut issuers = Vec::new();
        let mut policies = Vec::new();
        let mut names: Vec<Box<str>> = Vec::new();
        for (i, cfg) in self.issuers.into_iter().enumerate() {
            if cfg.issuer.is_empty() {
                return Err(ConfigError::Missing("issuer"));
            }
            if names.iter().any(|n| **n == *cfg.issuer) {
                return Err(ConfigError::Invalid {
                    name: "issuer",
                    reason: format!("`{}` configured twice", cfg.issuer),
                });
            }
            let issuer_allowed = match &cfg.algorithms {
                Some(algs) => AlgSet::from_slice(algs).with_any_rsa_alg(self.any_rsa_alg),
                None => global,
            };
            allowed = allowed.union(issuer_allowed);
            policies.push(IssuerPolicy {
                audiences: if cfg.audiences.is_empty() {
                    self.audiences.clone()
                } else {
                    cfg.audiences.clone()
                },
                allowed: issuer_allowed,
                binding: IssuerBinding {
                    prefix: if several {
                        cfg.prefix.as_deref().map(Into::into)
                    } else {
                        None
                    },
                    service_tokens: cfg.service_tokens.unwrap_or(i == 0),
                },
            });
            let name: Arc<str> = cfg.issuer.as_str().into();
            let provider = match cfg.source {
                KeySource::Static(keys) => KeyProvider::fixed(name, keys),
                remote => {
                    let client = match &client {
                        Some(c) => c.clone(),
                        None => {
                            let c: Arc<dyn HttpClient> =
                                Arc::new(HyperClient::new(self.http_config.clone())?);
                            client = Some(c.clone());
                            c
                        }
                    };
                    let source = match remote {
                        KeySource::JwksUri(url) => RemoteSource::Jwks(client.check_url(&url)?),
                        KeySource::DiscoveryAt(base) => {
                            client.check_url(&base)?;
                            RemoteSource::Discovery(base)
                        }
                        _ => {
                            client.check_url(&cfg.issuer)?;
                            RemoteSource::Discovery(cfg.issuer.clone())
                        }
                    };
                    KeyProvider::remote(name, source, client, self.remote.clone(), issuer_allowed)
                }
            };
            names.push(cfg.issuer.into());
            issuers.push(provider);
        }
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuers,
                policies,
                prefixes: if several { prefixes } else { Vec::new() },
                names,
                audiences: self.audiences,
                allowed,
                leeway: self.leeway.as_secs(),
                typ: self.typ,
                required_claims: self.required_claims,
                mapping: self.mapping.compile(),
                cache: (self.cache_entries > 0).then(|| TokenCache::new(self.cache_entries)),
                clock: self.clock,
                reject_embedded_keys: self.reject_embedded_keys,
                reject_id_tokens: self.reject_id_tokens,
                max_token_len: self.max_token_len,
                headers: ArcSwap::default(),
            }),
        })
    }
}

/// Verifies bearer tokens. Cheap to clone (shared state behind `Arc`).
///
/// See the [module docs](crate::verify) for a fuller example.
///
/// # Example
///
/// ```
/// # use tower_bearer::jwks::{Algorithm, KeySet};
/// # use tower_bearer::signing::SigningKey;
/// # use tower_bearer::verify::{IssuerConfig, Verifier};
/// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// # let jwks = key.jwks().to_string();
/// # let issuer = || IssuerConfig::static_keys("https://auth.example",
/// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
/// # let token = |extra: serde_json::Value| {
/// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
/// #         "sub": "alice", "exp": 4_000_000_000u64});
/// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
/// #     key.sign(&c).unwrap()
/// # };
/// let verifier = Verifier::builder().issuer(issuer()).audience("orders").build().unwrap();
/// let shared = verifier.clone(); // e.g. one per worker; the key cache is shared
/// assert!(shared.try_verify(&token(serde_json::json!({}))).is_ok());
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: Vec<KeyProvider>,
    /// Per issuer, same index as `issuers`.
    policies: Vec<IssuerPolicy>,
    /// Every issuer prefix, when several issuers are configured (else empty).
    prefixes: Vec<Arc<str>>,
    /// Issuer names, same index as `issuers` (a few: a scan beats hashing).
    names: Vec<Box<str>>,
    audiences: Vec<String>,
    allowed: AlgSet,
    leeway: u64,
    typ: Option<String>,
    required_claims: Vec<String>,
    mapping: CompiledMapping,
    cache: Option<TokenCache>,
    /// The system clock read directly unless a custom one was configured.
    clock: ClockSource,
    reject_embedded_keys: bool,
    reject_id_tokens: bool,
    max_token_len: usize,
    /// Headers (their exact base64url text) that passed [`Verifier::check_header`] on a token
    /// whose signature then verified: an issuer signs all its tokens with a handful of distinct
    /// headers, and the checks depend on nothing else, so these skip the decode and parse.
    headers: ArcSwap<Vec<KnownHeader>>,
}

/// At most this many remembered headers (only ever ones the issuers signed).
const KNOWN_HEADERS: usize = 16;

/// A header that passed the header checks, as its checks left it.
struct KnownHeader {
    raw: Box<str>,
    alg: Algorithm,
    kid: Option<Box<str>>,
}

/// What applies to one issuer's tokens.
struct IssuerPolicy {
    audiences: Vec<String>,
    allowed: AlgSet,
    binding: IssuerBinding,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.inner.issuers)
            .field("audiences", &self.inner.audiences)
            .field("leeway", &self.inner.leeway)
            .field("cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// The result of the synchronous part of verification.
pub(crate) enum Step {
    Done(Result<CurrentUser, AuthError>),
    /// The issuer's keys are not loaded (or too stale).
    NeedKeys {
        issuer: usize,
        first_pending: bool,
    },
    /// The `kid` (or, without `kid`, any key for the algorithm) is unknown: refetch may help.
    UnknownKey {
        issuer: usize,
    },
}

struct Header<'a> {
    alg: Algorithm,
    kid: Option<&'a str>,
}

impl Verifier {
    /// A builder with strict defaults.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::error::ConfigError;
    /// use tower_bearer::verify::Verifier;
    ///
    /// // No issuer and no audience by default: nothing is trusted implicitly.
    /// assert!(matches!(Verifier::builder().build(), Err(ConfigError::Missing("issuer"))));
    /// ```
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// The longest token this verifier accepts.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::bearer::DEFAULT_MAX_TOKEN_LEN;
    ///
    /// let verifier = Verifier::builder().issuer(issuer()).audience("orders").build().unwrap();
    /// assert_eq!(verifier.max_token_len(), DEFAULT_MAX_TOKEN_LEN);
    /// ```
    pub fn max_token_len(&self) -> usize {
        self.inner.max_token_len
    }

    /// Verifies a token; may wait for the first key fetch or one rate-limited refetch.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// let verifier = Verifier::builder().issuer(issuer()).audience("orders").build().unwrap();
    /// let user = verifier.verify(&token(serde_json::json!({"roles": ["admin"]}))).await.unwrap();
    /// assert!(user.has_role("admin"));
    /// assert!(verifier.verify("not-a-jwt").await.is_err());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidToken`] with the precise [`TokenError`], or
    /// [`AuthError::KeysUnavailable`] when the issuer's keys cannot be had.
    pub async fn verify(&self, token: &str) -> Result<CurrentUser, AuthError> {
        match self.verify_now(token) {
            Step::Done(r) => r,
            step => self.finish(token, step).await,
        }
    }

    /// Verifies with the keys already loaded, without any I/O: where [`Verifier::verify`]
    /// would wait for a fetch, this answers [`AuthError::KeysUnavailable`] or
    /// [`TokenError::UnknownKey`] instead. The layer's fast path is exactly this.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::verify::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let jwks = key.jwks().to_string();
    /// # let issuer = || IssuerConfig::static_keys("https://auth.example",
    /// #     KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA]).unwrap());
    /// # let token = |extra: serde_json::Value| {
    /// #     let mut c = serde_json::json!({"iss": "https://auth.example", "aud": "orders",
    /// #         "sub": "alice", "exp": 4_000_000_000u64});
    /// #     c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    /// #     key.sign(&c).unwrap()
    /// # };
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let verifier = Verifier::builder().issuer(issuer()).audience("orders").build().unwrap();
    /// assert_eq!(verifier.try_verify(&token(serde_json::json!({}))).unwrap().subject(), Some("alice"));
    /// let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// let claims = serde_json::json!({"iss": "https://auth.example", "aud": "orders", "exp": 4_000_000_000u64});
    /// let err = verifier.try_verify(&stranger.sign(&claims).unwrap()).unwrap_err();
    /// assert_eq!(err, AuthError::InvalidToken(TokenError::UnknownKey));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Verifier::verify`].
    pub fn try_verify(&self, token: &str) -> Result<CurrentUser, AuthError> {
        match self.verify_now(token) {
            Step::Done(r) => r,
            Step::NeedKeys { issuer, .. } => Err(AuthError::KeysUnavailable {
                retry_after: self.inner.issuers[issuer].retry_after(),
            }),
            Step::UnknownKey { .. } => Err(AuthError::InvalidToken(TokenError::UnknownKey)),
        }
    }

    /// Completes a verification that needs key I/O: waits for the first fetch or an on-demand
    /// refetch, then verifies again without further I/O.
    pub(crate) async fn finish(&self, token: &str, step: Step) -> Result<CurrentUser, AuthError> {
        match step {
            Step::Done(r) => return r,
            Step::NeedKeys {
                issuer,
                first_pending,
            } => {
                if first_pending {
                    self.inner.issuers[issuer].wait_first().await;
                }
            }
            Step::UnknownKey { issuer } => {
                self.inner.issuers[issuer].refetch().await;
            }
        }
        match self.verify_now(token) {
            Step::Done(r) => r,
            Step::NeedKeys { issuer, .. } => Err(AuthError::KeysUnavailable {
                retry_after: self.inner.issuers[issuer].retry_after(),
            }),
            Step::UnknownKey { .. } => Err(AuthError::InvalidToken(TokenError::UnknownKey)),
        }
    }

    /// A verified-token cache hit for exactly these bytes, `exp`/`nbf` and the key re-checked
    /// as in [`Verifier::verify_now`]; `None` when not cached (or its key is gone): take the
    /// full way. Cached tokens were verified, so they are compact JWS (base64url and dots, a
    /// `b64token`) within the maximum length: the caller may skip the form checks for a hit.
    pub(crate) fn cached(&self, token: &[u8]) -> Option<Result<CurrentUser, AuthError>> {
        let cache = self.inner.cache.as_ref()?;
        let now = self.inner.clock.now_unix();
        match cache.with(token, |hit| self.check_hit(hit, now))? {
            Ok(Some(user)) => Some(Ok(user)),
            Err(Fail::Token(t)) => Some(Err(AuthError::InvalidToken(t))),
            // The key is gone: the full way drops the entry and answers.
            Ok(None) | Err(_) => None,
        }
    }

    /// Everything that needs no I/O: on the fast path this is the whole verification.
    pub(crate) fn verify_now(&self, token: &str) -> Step {
        match self.verify_inner(token) {
            Ok(user) => Step::Done(Ok(user)),
            Err(Fail::Token(t)) => Step::Done(Err(AuthError::InvalidToken(t))),
            Err(Fail::NeedKeys(issuer, first_pending)) => Step::NeedKeys {
                issuer,
                first_pending,
            },
            Err(Fail::UnknownKey(issuer)) => Step::UnknownKey { issuer },
        }
    }

    fn verify_inner(&self, token: &str) -> Result<CurrentUser, Fail> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_len {
            return Err(TokenError::TooLarge.into());
        }
        let now = inner.clock.now_unix();
        // A hit is these exact bytes, verified before: the form checks below passed for them.
        if let Some(cache) = &inner.cache {
            if let Some(hit) = cache.with(token.as_bytes(), |hit| self.check_hit(hit, now)) {
                if let Some(user) = hit? {
                    return Ok(user);
                }
                cache.remove(token.as_bytes());
            }
        }
        if token.starts_with('{') {
            return Err(TokenError::JsonSerialization.into());
        }
        // The signature is not searched for dots: one there fails its base64url decoding, and
        // any failure of a token with one is the form's (`split_compact`'s) answer.
        let (h64, p64, s64) = split_head(token)?;
        match self.verify_parts(token, h64, p64, s64, now) {
            Err(_) if s64.contains('.') => Err(match split_compact(token) {
                Err(e) => e.into(),
                Ok(_) => TokenError::Malformed.into(),
            }),
            r => r,
        }
    }

    /// [`Verifier::verify_inner`] past the cache and the form checks.
    fn verify_parts(
        &self,
        token: &str,
        h64: &str,
        p64: &str,
        s64: &str,
        now: u64,
    ) -> Result<CurrentUser, Fail> {
        let inner = &*self.inner;

        let known = inner.headers.load();
        let remembered = known.iter().find(|k| *k.raw == *h64);
        let header_map;
        let header = match remembered {
            Some(k) => Header {
                alg: k.alg,
                kid: k.kid.as_deref(),
            },
            None => {
                header_map = parse_object(&b64url(h64)?)?;
                self.check_header(&header_map)?
            }
        };
        // The claims' text is kept by the user (its strings are read out of it, no copies).
        let payload = b64url_text(p64)?;
        let claims = parse_claims(&payload)?;
        let issuer = match claims.get("iss") {
            Some(Lite::String(iss)) => inner
                .names
                .iter()
                .position(|n| **n == *iss)
                .ok_or(TokenError::UntrustedIssuer)?,
            Some(_) => return Err(TokenError::InvalidIssuer.into()),
            None => return Err(TokenError::MissingIssuer.into()),
        };
        let policy = &inner.policies[issuer];
        if !policy.allowed.contains(header.alg) {
            return Err(TokenError::AlgorithmNotAllowed.into());
        }
        // Into a stack buffer (room for RSA-8192 and the decoder's estimate); longer ones, which
        // no supported key can have made, take the general path (same answers).
        let mut sig_buf = [0u8; 1040];
        let sig_vec;
        let signature: &[u8] = match b64url_len(s64.len()) {
            Some(n) if n <= sig_buf.len() => {
                b64url_decode(s64.as_bytes(), &mut sig_buf[..n])?;
                &sig_buf[..n]
            }
            _ => {
                sig_vec = b64url(s64)?;
                &sig_vec
            }
        };
        if signature.is_empty() {
            return Err(TokenError::InvalidSignature.into());
        }
        // Before the lookup: a cache hit trusts the key while this has not changed since.
        let generation = key_set_generation();
        let keys = match inner.issuers[issuer].lookup() {
            Lookup::Ready(keys) => keys,
            Lookup::Unavailable { first_pending } => {
                return Err(Fail::NeedKeys(issuer, first_pending));
            }
        };
        let mut candidates = match keys.candidate_keys(header.kid, header.alg) {
            Ok(c) => c,
            Err(TokenError::UnknownKey) => return Err(Fail::UnknownKey(issuer)),
            Err(e) => return Err(e.into()),
        };
        let message = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        let key = candidates
            .find(|k| k.verify(header.alg, message, signature))
            .ok_or(TokenError::InvalidSignature)?;
        if remembered.is_none() {
            self.remember_header(h64, &header);
        }
        let fingerprint = key.fingerprint;
        // Only a cache entry needs its own copy of the kid and a handle on the snapshot.
        let (kid, snapshot): (Option<Arc<str>>, Weak<KeySet>) = if inner.cache.is_some() {
            (key.kid.as_deref().map(Into::into), Arc::downgrade(&*keys))
        } else {
            (None, Weak::new())
        };
        drop(keys);

        let (exp, nbf) = self.check_claims(&claims, policy, now)?;
        let parts = UserParts::new(&claims, Some(&payload), &inner.mapping, &policy.binding)?;
        drop(claims);
        let user = CurrentUser::from_token(payload, parts);
        if policy.binding.prefix.is_none() && !inner.prefixes.is_empty() {
            // An unprefixed id that reads as `prefix:id` would be another issuer's user.
            if let Some(id) = user.local_user_id() {
                let clash = inner.prefixes.iter().any(|p| {
                    id.strip_prefix(&**p)
                        .is_some_and(|rest| rest.starts_with(':'))
                });
                if clash {
                    return Err(TokenError::UserIdPrefixClash.into());
                }
            }
        }
        if let Some(cache) = &inner.cache {
            let entry = Entry {
                token: token.into(),
                user: user.clone(),
                exp,
                nbf: nbf.unwrap_or(0),
                issuer,
                generation,
                kid,
                fingerprint,
                snapshot,
            };
            cache.insert(entry, now.saturating_sub(inner.leeway));
        }
        Ok(user)
    }

    /// Remembers a header whose token's signature verified (see `Inner::headers`).
    #[cold]
    fn remember_header(&self, raw: &str, header: &Header<'_>) {
        let known = &self.inner.headers;
        if known.load().len() >= KNOWN_HEADERS {
            return;
        }
        known.rcu(|cur| {
            let mut next = Vec::with_capacity(cur.len() + 1);
            next.extend(cur.iter().map(|k| KnownHeader {
                raw: k.raw.clone(),
                alg: k.alg,
                kid: k.kid.clone(),
            }));
            if next.len() < KNOWN_HEADERS && !next.iter().any(|k| *k.raw == *raw) {
                next.push(KnownHeader {
                    raw: raw.into(),
                    alg: header.alg,
                    kid: header.kid.map(Into::into),
                });
            }
            next
        });
    }

    /// A cache hit is good while `exp`/`nbf` hold and its key is still published.
    fn check_hit(&self, hit: &Entry, now: u64) -> Result<Option<CurrentUser>, Fail> {
        let leeway = self.inner.leeway;
        if now >= hit.exp.saturating_add(leeway) {
            return Err(TokenError::Expired.into());
        }
        if now.saturating_add(leeway) < hit.nbf {
            return Err(TokenError::NotYetValid.into());
        }
        // No key set lost a key since the signature was checked: the key is still published.
        if self.inner.issuers[hit.issuer].unchanged_since(hit.generation) {
            return Ok(Some(hit.user.clone()));
        }
        self.check_hit_key(hit)
    }

    /// A key set lost a key since the hit's signature was checked (or remote keys grew stale):
    /// is this hit's key still there?
    #[inline(never)]
    fn check_hit_key(&self, hit: &Entry) -> Result<Option<CurrentUser>, Fail> {
        match self.inner.issuers[hit.issuer].lookup() {
            // The same snapshot as when the signature was checked: the key is there.
            Lookup::Ready(keys) if std::ptr::eq(hit.snapshot.as_ptr(), Arc::as_ptr(&*keys)) => {
                Ok(Some(hit.user.clone()))
            }
            Lookup::Ready(keys) if keys.contains(hit.kid.as_deref(), &hit.fingerprint) => {
                Ok(Some(hit.user.clone()))
            }
            _ => Ok(None),
        }
    }

    fn check_header<'a>(&self, h: &'a Map<String, Value>) -> Result<Header<'a>, TokenError> {
        let alg = match h.get("alg") {
            Some(Value::String(s)) if s.eq_ignore_ascii_case("none") => {
                return Err(TokenError::AlgNone);
            }
            Some(Value::String(s)) => s
                .parse::<Algorithm>()
                .map_err(|_| TokenError::UnsupportedAlgorithm)?,
            _ => return Err(TokenError::UnsupportedAlgorithm),
        };
        if !self.inner.allowed.contains(alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        match h.get("b64") {
            None | Some(Value::Bool(true)) => {}
            Some(_) => return Err(TokenError::UnencodedPayload),
        }
        if let Some(crit) = h.get("crit") {
            check_crit(crit, h)?;
        }
        if self.inner.reject_embedded_keys
            && ["jwk", "jku", "x5u", "x5c"]
                .iter()
                .any(|k| h.contains_key(*k))
        {
            return Err(TokenError::EmbeddedKey);
        }
        if self.inner.reject_id_tokens {
            if let Some(Value::String(t)) = h.get("typ") {
                if normalize_typ(t) == "id_token+jwt" {
                    return Err(TokenError::IdToken);
                }
            }
        }
        if let Some(want) = &self.inner.typ {
            match h.get("typ") {
                Some(Value::String(t)) if normalize_typ(t) == *want => {}
                _ => return Err(TokenError::WrongType),
            }
        }
        let kid = match h.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(TokenError::InvalidKid),
        };
        Ok(Header { alg, kid })
    }

    /// `aud`, `exp`, `nbf`, `iat` and required claims. Returns `(exp, nbf)`.
    fn check_claims(
        &self,
        c: &Claims<'_>,
        policy: &IssuerPolicy,
        now: u64,
    ) -> Result<(u64, Option<u64>), TokenError> {
        let inner = &*self.inner;
        // `nonce` and `at_hash` belong to ID tokens (OIDC Core §2, §3.1.3.6), never to access
        // tokens (RFC 9068 §2.2).
        if inner.reject_id_tokens && (c.get("nonce").is_some() || c.get("at_hash").is_some()) {
            return Err(TokenError::IdToken);
        }
        let accepted = |a: &str| policy.audiences.iter().any(|x| x == a);
        match c.get("aud") {
            None => return Err(TokenError::MissingAudience),
            Some(Lite::String(a)) => {
                if !accepted(a) {
                    return Err(TokenError::AudienceMismatch);
                }
            }
            Some(Lite::Array(items)) => {
                let mut any = false;
                for item in items.iter() {
                    let a = item.as_str().ok_or(TokenError::InvalidAudience)?;
                    any |= accepted(a);
                }
                if !any {
                    return Err(TokenError::AudienceMismatch);
                }
            }
            Some(_) => return Err(TokenError::InvalidAudience),
        }
        let exp = numeric_date(c.get("exp"))?.ok_or(TokenError::MissingExpiry)?;
        let nbf = numeric_date_ceil(c.get("nbf"))?;
        let iat = numeric_date_ceil(c.get("iat"))?;
        let leeway = inner.leeway;
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if iat.is_some_and(|iat| now.saturating_add(leeway) < iat) {
            return Err(TokenError::IssuedInFuture);
        }
        for name in &inner.required_claims {
            if c.get(name).is_none_or(|v| v.is_null()) {
                tracing::debug!(claim = %name, "required claim missing");
                return Err(TokenError::MissingRequiredClaim);
            }
        }
        Ok((exp, nbf))
    }
}

enum Fail {
    Token(TokenError),
    NeedKeys(usize, bool),
    UnknownKey(usize),
}

impl From<TokenError> for Fail {
    fn from(e: TokenError) -> Self {
        Fail::Token(e)
    }
}

/// The header and the payload of a compact JWS, and the rest (the signature, if the form is
/// right: the caller refuses one holding a dot with [`split_compact`]'s answer).
fn split_head(token: &str) -> Result<(&str, &str, &str), TokenError> {
    let b = token.as_bytes();
    let split = dots::find_dot(b, 0).and_then(|d1| Some((d1, dots::find_dot(b, d1 + 1)?)));
    // Dots are ASCII: the indices are char boundaries.
    let parts = split.and_then(|(d1, d2)| {
        Some((
            token.get(..d1)?,
            token.get(d1 + 1..d2)?,
            token.get(d2 + 1..)?,
        ))
    });
    match parts {
        Some((h, p, s)) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => match split_compact(token) {
            Err(e) => Err(e),
            Ok(_) => Err(TokenError::Malformed),
        },
    }
}

fn split_compact(token: &str) -> Result<(&str, &str, &str), TokenError> {
    let mut parts = token.splitn(6, '.');
    let (h, p, s) = (parts.next(), parts.next(), parts.next());
    match (h, p, s, parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None, None, None) if !h.is_empty() && !p.is_empty() => {
            Ok((h, p, s))
        }
        (Some(_), Some(_), Some(_), Some(_), Some(_), None) => Err(TokenError::Encrypted),
        _ => Err(TokenError::Malformed),
    }
}

/// RFC 7515 §4.1.11: `crit` must be a non-empty array of distinct names of extension header
/// parameters present in the header. We implement no extension, so a well-formed `crit` is
/// still refused, as "unsupported".
fn check_crit(crit: &Value, h: &Map<String, Value>) -> Result<(), TokenError> {
    const REGISTERED: [&str; 11] = [
        "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
    ];
    let Value::Array(items) = crit else {
        return Err(TokenError::MalformedCrit);
    };
    if items.is_empty() {
        return Err(TokenError::MalformedCrit);
    }
    let mut seen: Vec<&str> = Vec::with_capacity(items.len());
    for item in items {
        let name = item.as_str().ok_or(TokenError::MalformedCrit)?;
        if REGISTERED.contains(&name) || !h.contains_key(name) || seen.contains(&name) {
            return Err(TokenError::MalformedCrit);
        }
        seen.push(name);
    }
    if seen.contains(&"b64") {
        return Err(TokenError::UnencodedPayload);
    }
    Err(TokenError::UnsupportedCrit)
}

/// A NumericDate: a non-negative JSON number (fractions floored) not beyond year 9999.
fn numeric_date(v: Option<Lite<'_>>) -> Result<Option<u64>, TokenError> {
    numeric_date_rounded(v, false)
}

/// A NumericDate rounded up (for `nbf` and `iat`: a fraction must not make a token valid early).
fn numeric_date_ceil(v: Option<Lite<'_>>) -> Result<Option<u64>, TokenError> {
    numeric_date_rounded(v, true)
}

fn numeric_date_rounded(v: Option<Lite<'_>>, up: bool) -> Result<Option<u64>, TokenError> {
    match v {
        None => Ok(None),
        Some(Lite::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return if u as f64 <= MAX_NUMERIC_DATE {
                    Ok(Some(u))
                } else {
                    Err(TokenError::InvalidTimeClaim)
                };
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&f) => {
                    Ok(Some(if up { f.ceil() } else { f.floor() } as u64))
                }
                _ => Err(TokenError::InvalidTimeClaim),
            }
        }
        Some(_) => Err(TokenError::InvalidTimeClaim),
    }
}

fn normalize_typ(t: &str) -> String {
    let t = t.to_ascii_lowercase();
    match t.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => t,
    }
}

/// Known-answer self-test of the crypto backend, run once per process before the first verifier
/// is built: fixed public signatures (RFC 8037 §A.4 Ed25519, RFC 7515 §A.2 RS256, §A.3 ES256)
/// must verify with aws-lc-rs directly, the same signatures with one bit flipped must not, and
/// the Ed25519 one must also verify through our JWK parsing and key selection.
fn self_test() -> Result<(), ConfigError> {
    static RESULT: OnceLock<Result<(), &'static str>> = OnceLock::new();
    RESULT
        .get_or_init(known_answers)
        .map_err(ConfigError::Crypto)
}

fn known_answers() -> Result<(), &'static str> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
        UnparsedPublicKey,
    };
    // RFC 8037 §A.4.
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const ED_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    // RFC 7515 §A.2.
    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const RSA_JWS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    // RFC 7515 §A.3.
    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const EC_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

    fn split(jws: &str) -> Result<(&[u8], Vec<u8>), &'static str> {
        let (input, sig) = jws.rsplit_once('.').ok_or("bad vector")?;
        Ok((input.as_bytes(), b64url(sig).map_err(|_| "bad vector")?))
    }
    fn both_ways(
        name: &'static str,
        verify: impl Fn(&[u8], &[u8]) -> bool,
        jws: &str,
    ) -> Result<(), &'static str> {
        let (input, mut sig) = split(jws)?;
        if !verify(input, &sig) {
            return Err(name);
        }
        sig[7] ^= 0x10;
        if verify(input, &sig) {
            return Err("aws-lc-rs accepted a corrupted known-answer signature");
        }
        Ok(())
    }
    let b = |s: &str| b64url(s).map_err(|_| "bad vector");

    let ed_x = b(ED_X)?;
    both_ways(
        "aws-lc-rs rejected the RFC 8037 Ed25519 signature",
        |m, s| UnparsedPublicKey::new(&ED25519, &ed_x).verify(m, s).is_ok(),
        ED_JWS,
    )?;
    let rsa = RsaPublicKeyComponents {
        n: b(RSA_N)?,
        e: vec![1, 0, 1],
    };
    both_ways(
        "aws-lc-rs rejected the RFC 7515 RS256 signature",
        |m, s| rsa.verify(&RSA_PKCS1_2048_8192_SHA256, m, s).is_ok(),
        RSA_JWS,
    )?;
    let mut point = vec![4u8];
    point.extend(b(EC_X)?);
    point.extend(b(EC_Y)?);
    both_ways(
        "aws-lc-rs rejected the RFC 7515 ES256 signature",
        |m, s| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                .verify(m, s)
                .is_ok()
        },
        EC_JWS,
    )?;

    // The same Ed25519 vector through our own JWK parsing and key selection.
    let jwks = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}"}}]}}"#);
    let set = KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::EdDSA])
        .map_err(|_| "Ed25519 key rejected")?;
    let key = set
        .candidates(None, Algorithm::EdDSA)
        .map_err(|_| "no key")?
        .remove(0);
    let (input, sig) = split(ED_JWS)?;
    if !key.verify(Algorithm::EdDSA, input, &sig) {
        return Err("our key rejected the RFC 8037 signature");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_passes() {
        self_test().unwrap();
        known_answers().unwrap();
    }

    #[test]
    fn compact_form() {
        assert!(split_compact("a.b.c").is_ok());
        assert!(split_compact("a.b.").is_ok());
        assert_eq!(split_compact("a.b"), Err(TokenError::Malformed));
        assert_eq!(split_compact(".b.c"), Err(TokenError::Malformed));
        assert_eq!(split_compact("a.b.c.d"), Err(TokenError::Malformed));
        assert_eq!(split_compact("a.b.c.d.e"), Err(TokenError::Encrypted));
        assert_eq!(split_compact("a.b.c.d.e.f"), Err(TokenError::Malformed));
    }

    #[test]
    fn numeric_dates() {
        use serde_json::json;
        let one = |v: serde_json::Value| Claims::from_map(json!({ "v": v }).as_object().unwrap());
        let d = |v: serde_json::Value| numeric_date(one(v).get("v"));
        let ceil = |v: serde_json::Value| numeric_date_ceil(one(v).get("v"));
        assert_eq!(d(json!(10)), Ok(Some(10)));
        assert_eq!(d(json!(10.9)), Ok(Some(10)));
        assert_eq!(ceil(json!(10.1)), Ok(Some(11)));
        assert!(d(json!(-1)).is_err());
        assert!(d(json!("10")).is_err());
        assert!(d(json!(1e300)).is_err());
        assert!(d(json!(u64::MAX)).is_err());
    }

    #[test]
    fn crit_rules() {
        use serde_json::json;
        let h = |v: Value| v.as_object().unwrap().clone();
        let hdr = h(json!({"alg":"RS256","exp":1,"crit":["exp"]}));
        assert_eq!(
            check_crit(&hdr["crit"], &hdr),
            Err(TokenError::UnsupportedCrit)
        );
        let hdr = h(json!({"alg":"RS256","crit":[]}));
        assert_eq!(
            check_crit(&hdr["crit"], &hdr),
            Err(TokenError::MalformedCrit)
        );
        let hdr = h(json!({"alg":"RS256","crit":["alg"]}));
        assert_eq!(
            check_crit(&hdr["crit"], &hdr),
            Err(TokenError::MalformedCrit)
        );
        let hdr = h(json!({"alg":"RS256","crit":["x"]}));
        assert_eq!(
            check_crit(&hdr["crit"], &hdr),
            Err(TokenError::MalformedCrit)
        );
        let hdr = h(json!({"alg":"RS256","crit":"x","x":1}));
        assert_eq!(
            check_crit(&hdr["crit"], &hdr),
            Err(TokenError::MalformedCrit)
        );
    }

    use crate::claims::ServiceTokenRule;
    use crate::signing::SigningKey;
    use serde_json::json;

    const MAIN: &str = "https://auth.example";
    const PARTNER: &str = "https://login.partner.example";

    fn keys(k: &SigningKey) -> KeySet {
        KeySet::from_jwks(k.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap()
    }

    fn token(k: &SigningKey, iss: &str, extra: Value) -> String {
        let mut c = json!({"iss": iss, "aud": "orders", "exp": 4_000_000_000u64});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        k.sign(&c).unwrap()
    }

    struct Two {
        main: SigningKey,
        partner: SigningKey,
    }

    impl Two {
        fn new() -> Self {
            Self {
                main: SigningKey::generate(Algorithm::EdDSA).unwrap(),
                partner: SigningKey::generate(Algorithm::EdDSA).unwrap(),
            }
        }
        fn verifier(&self, partner: impl FnOnce(IssuerConfig) -> IssuerConfig) -> Verifier {
            Verifier::builder()
                .issuer(IssuerConfig::static_keys(MAIN, keys(&self.main)))
                .issuer(partner(IssuerConfig::static_keys(
                    PARTNER,
                    keys(&self.partner),
                )))
                .audience("orders")
                .build()
                .unwrap()
        }
    }

    /// The signature part is not searched for dots, yet a token with more than three parts
    /// gets the form's answer whatever else is wrong with it, as `split_compact` gives it.
    #[test]
    fn extra_parts_are_the_forms_answer() {
        let two = Two::new();
        let v = two.verifier(|p| p.prefix("partner"));
        let good = token(&two.main, MAIN, json!({"sub": "alice"}));
        assert!(v.try_verify(&good).is_ok());
        let (head, sig) = good.rsplit_once('.').unwrap();
        let stranger = token(&two.partner, "https://nobody.example", json!({}));
        let (other_head, _) = stranger.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
        for (t, want) in [
            (format!("{good}.x"), TokenError::Malformed),
            (format!("{good}.x.y"), TokenError::Encrypted),
            (format!("{good}.x.y.z"), TokenError::Malformed),
            (format!("{head}.{sig}.."), TokenError::Encrypted),
            (format!("{head}..{sig}"), TokenError::Malformed),
            // Untrusted issuer, unknown key: still the form's answer.
            (format!("{other_head}.a.b.c"), TokenError::Encrypted),
            (format!("{other_head}.a.b"), TokenError::Malformed),
            (
                format!("{head}.{flipped}{}", &sig[1..]),
                TokenError::InvalidSignature,
            ),
        ] {
            let err = v.try_verify(&t).unwrap_err();
            assert_eq!(err, AuthError::InvalidToken(want), "{t}");
        }
        for t in ["a.b", "a", ".b.c", "a..c", "a.b.c.d.e", "..", "...."] {
            let want = split_compact(t).unwrap_err();
            assert_eq!(
                v.try_verify(t).unwrap_err(),
                AuthError::InvalidToken(want),
                "{t}"
            );
        }
    }

    /// Only headers of tokens whose signature verified are remembered, at most
    /// `KNOWN_HEADERS`, and a remembered header never stands in for the signature or the claims.
    #[test]
    fn remembered_headers_skip_nothing_but_the_parse() {
        let k = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let v = Verifier::builder()
            .issuer(IssuerConfig::static_keys(MAIN, keys(&k)))
            .audience("orders")
            .token_cache(0)
            .build()
            .unwrap();
        let known = |v: &Verifier| v.inner.headers.load().len();
        let good = token(&k, MAIN, json!({}));
        let (msg, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{msg}.{}", "A".repeat(86));
        assert_eq!(
            v.try_verify(&forged).unwrap_err(),
            AuthError::InvalidToken(TokenError::InvalidSignature)
        );
        assert_eq!(known(&v), 0, "unsigned headers are not remembered");
        assert!(v.try_verify(&good).is_ok());
        assert_eq!(known(&v), 1);
        // Same header: the signature and the claims are still checked.
        assert_eq!(
            v.try_verify(&forged).unwrap_err(),
            AuthError::InvalidToken(TokenError::InvalidSignature)
        );
        let other_aud = token(&k, MAIN, json!({"aud": "billing"}));
        assert_eq!(
            v.try_verify(&other_aud).unwrap_err(),
            AuthError::InvalidToken(TokenError::AudienceMismatch)
        );
        assert!(v.try_verify(&good).is_ok());
        assert_eq!(known(&v), 1);
        // Distinct signed headers (a `typ` each) up to the bound, then no more.
        for i in 0..KNOWN_HEADERS + 4 {
            let header =
                json!({"alg": "EdDSA", "kid": k.public_jwk()["kid"], "typ": format!("t{i}+jwt")});
            let claims = json!({"iss": MAIN, "aud": "orders", "exp": 4_000_000_000u64});
            let t = k
                .sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
                .unwrap();
            assert!(v.try_verify(&t).is_ok());
        }
        assert_eq!(known(&v), KNOWN_HEADERS);
    }

    #[test]
    fn partner_users_never_collide_with_main_users() {
        let two = Two::new();
        let v = two.verifier(|p| p.prefix("partner"));
        let main = v
            .try_verify(&token(&two.main, MAIN, json!({"sub": "42"})))
            .unwrap();
        let partner = v
            .try_verify(&token(&two.partner, PARTNER, json!({"sub": "42"})))
            .unwrap();
        assert_eq!(main.user_id(), Some("42"));
        assert_eq!(partner.user_id(), Some("partner:42"));
        assert_ne!(main.user_id(), partner.user_id());
        assert_eq!(partner.local_user_id(), Some("42"));
        assert_eq!(partner.issuer_prefix(), Some("partner"));
        assert_eq!(partner.issuer(), PARTNER);
        // A main-issuer id that reads as a partner id is refused, not confused.
        assert_eq!(
            v.try_verify(&token(&two.main, MAIN, json!({"sub": "partner:42"})))
                .unwrap_err(),
            AuthError::InvalidToken(TokenError::UserIdPrefixClash)
        );
        assert_eq!(
            v.try_verify(&token(
                &two.main,
                MAIN,
                json!({"sub": "a", "uid": "partner:42"})
            ))
            .unwrap_err(),
            AuthError::InvalidToken(TokenError::UserIdPrefixClash)
        );
        // `partnerx:42` is no clash.
        assert!(
            v.try_verify(&token(&two.main, MAIN, json!({"sub": "partnerx:42"})))
                .is_ok()
        );
    }

    #[test]
    fn several_issuers_need_distinct_valid_prefixes() {
        let two = Two::new();
        let build = |p: Option<&str>, main: Option<&str>| {
            let mut m = IssuerConfig::static_keys(MAIN, keys(&two.main));
            if let Some(x) = main {
                m = m.prefix(x);
            }
            let mut q = IssuerConfig::static_keys(PARTNER, keys(&two.partner));
            if let Some(x) = p {
                q = q.prefix(x);
            }
            Verifier::builder()
                .issuer(m)
                .issuer(q)
                .audience("orders")
                .build()
        };
        for (p, main) in [
            (None, None),
            (Some(""), None),
            (Some("a:b"), None),
            (Some("p"), Some("p")),
        ] {
            assert!(
                matches!(
                    build(p, main),
                    Err(ConfigError::Invalid { name: "prefix", .. })
                ),
                "{p:?} {main:?}"
            );
        }
        assert!(build(Some("p"), Some("m")).is_ok());
        // One issuer: its prefix is not applied.
        let one = Verifier::builder()
            .issuer(IssuerConfig::static_keys(MAIN, keys(&two.main)).prefix("m"))
            .audience("orders")
            .build()
            .unwrap();
        let u = one
            .try_verify(&token(&two.main, MAIN, json!({"sub": "42"})))
            .unwrap();
        assert_eq!(u.user_id(), Some("42"));
    }

    #[test]
    fn audiences_are_per_issuer() {
        let two = Two::new();
        let v = two.verifier(|p| p.prefix("partner").audience("partner-orders"));
        assert!(
            v.try_verify(&token(
                &two.partner,
                PARTNER,
                json!({"sub": "1", "aud": "partner-orders"})
            ))
            .is_ok()
        );
        assert_eq!(
            v.try_verify(&token(&two.partner, PARTNER, json!({"sub": "1"})))
                .unwrap_err(),
            AuthError::InvalidToken(TokenError::AudienceMismatch)
        );
        assert_eq!(
            v.try_verify(&token(
                &two.main,
                MAIN,
                json!({"sub": "1", "aud": "partner-orders"})
            ))
            .unwrap_err(),
            AuthError::InvalidToken(TokenError::AudienceMismatch)
        );
        assert!(
            v.try_verify(&token(&two.main, MAIN, json!({"sub": "1"})))
                .is_ok()
        );
        // No verifier-wide audience: every issuer needs its own.
        let err = Verifier::builder()
            .issuer(IssuerConfig::static_keys(MAIN, keys(&two.main)))
            .issuer(
                IssuerConfig::static_keys(PARTNER, keys(&two.partner))
                    .prefix("p")
                    .audience("x"),
            )
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Missing("audience")));
    }

    #[test]
    fn only_the_first_issuer_mints_service_tokens_by_default() {
        let two = Two::new();
        let svc = json!({"sub": "svc", "client_id": "svc", "gty": "client-credentials",
                         "scope": "internal-service"});
        let rule = ServiceTokenRule::default();
        let legacy = ServiceTokenRule::SubjectIsClient;
        let v = two.verifier(|p| p.prefix("partner"));
        let main = v.try_verify(&token(&two.main, MAIN, svc.clone())).unwrap();
        let partner = v
            .try_verify(&token(&two.partner, PARTNER, svc.clone()))
            .unwrap();
        assert!(rule.matches(&main) && legacy.matches(&main));
        assert!(!partner.issuer_may_mint_service_tokens());
        assert!(!rule.matches(&partner) && !legacy.matches(&partner));
        // Marked `service-tokens: true`.
        let v = two.verifier(|p| p.prefix("partner").service_tokens(true));
        let partner = v
            .try_verify(&token(&two.partner, PARTNER, svc.clone()))
            .unwrap();
        assert!(rule.matches(&partner));
        // The first issuer may be switched off too.
        let v = Verifier::builder()
            .issuer(IssuerConfig::static_keys(MAIN, keys(&two.main)).service_tokens(false))
            .audience("orders")
            .build()
            .unwrap();
        assert!(!rule.matches(&v.try_verify(&token(&two.main, MAIN, svc)).unwrap()));
    }

    #[test]
    fn algorithms_are_per_issuer() {
        let two = Two::new();
        let v = two.verifier(|p| p.prefix("partner").algorithms([Algorithm::ES256]));
        assert_eq!(
            v.try_verify(&token(&two.partner, PARTNER, json!({"sub": "1"})))
                .unwrap_err(),
            AuthError::InvalidToken(TokenError::AlgorithmNotAllowed)
        );
        assert!(
            v.try_verify(&token(&two.main, MAIN, json!({"sub": "1"})))
                .is_ok()
        );
    }

    #[test]
    fn id_tokens_are_refused_as_access_tokens() {
        let k = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let build = |reject: Option<bool>| {
            let mut b = Verifier::builder()
                .issuer(IssuerConfig::static_keys(MAIN, keys(&k)))
                .audience("orders");
            if let Some(r) = reject {
                b = b.reject_id_tokens(r);
            }
            b.build().unwrap()
        };
        let strict = build(None);
        let lax = build(Some(false));
        let id_err = AuthError::InvalidToken(TokenError::IdToken);
        for extra in [
            json!({"sub": "a", "nonce": "n-0S6_WzA2Mj"}),
            json!({"sub": "a", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}),
        ] {
            let t = token(&k, MAIN, extra);
            assert_eq!(strict.try_verify(&t).unwrap_err(), id_err);
            assert!(lax.try_verify(&t).is_ok());
        }
        let claims = json!({"iss": MAIN, "aud": "orders", "sub": "a", "exp": 4_000_000_000u64});
        for typ in ["id_token+jwt", "application/ID_TOKEN+JWT"] {
            let header = json!({"alg": "EdDSA", "kid": k.kid(), "typ": typ});
            let t = k
                .sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
                .unwrap();
            assert_eq!(strict.try_verify(&t).unwrap_err(), id_err, "{typ}");
            assert!(lax.try_verify(&t).is_ok());
        }
        // Even where `typ` is required, the reason is precise.
        let at = Verifier::builder()
            .issuer(IssuerConfig::static_keys(MAIN, keys(&k)))
            .audience("orders")
            .typ("at+jwt")
            .build()
            .unwrap();
        let header = json!({"alg": "EdDSA", "kid": k.kid(), "typ": "id_token+jwt"});
        let t = k
            .sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
            .unwrap();
        assert_eq!(at.try_verify(&t).unwrap_err(), id_err);
        // An ordinary access token passes.
        assert!(
            strict
                .try_verify(&token(&k, MAIN, json!({"sub": "a"})))
                .is_ok()
        );
    }

    #[test]
    fn typ_normalization() {
        assert_eq!(normalize_typ("Application/AT+JWT"), "at+jwt");
        assert_eq!(normalize_typ("at+jwt"), "at+jwt");
    }
}
