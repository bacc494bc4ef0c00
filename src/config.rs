//! The `security` configuration subtree (YAML), in the shape operators already have.
//!
//! Every key is part of the public contract; optional keys may be omitted; an unknown key is an
//! error that names it. `${VAR}` is expanded in each scalar after parsing; an unset variable is
//! an error that names it. `${VAR:-default}` takes `default` when `VAR` is unset or empty, and
//! `$${` is a literal `${`. Error messages never repeat a whole scalar value (it may be a secret
//! taken from the environment). Programs keep their own top-level keys (`listen`, `upstream`).
//!
//! # Example
//!
//! ```
//! use tower_bearer::config::SecurityConfig;
//!
//! let yaml = r#"
//! listen: 127.0.0.1:8080
//! security:
//!   resource-server:
//!     issuer: https://auth.eon.internal
//!     jwks-uri: http://127.0.0.1:9000/oauth2/jwks
//!     audience: [eon-internal]
//!     leeway-seconds: 30
//!     rules:
//!       - { path: "/public/**", permit-all: true }
//!       - { path: "/**", authenticated: true }
//!     default: deny
//! "#;
//! let cfg = SecurityConfig::from_yaml(yaml).unwrap();
//! let rs = cfg.resource_server.as_ref().unwrap();
//! assert_eq!(rs.leeway_seconds, Some(30));
//!
//! let err = SecurityConfig::from_yaml("security:\n  resource-server:\n    isuer: x\n").unwrap_err();
//! assert!(err.to_string().contains("isuer"), "{err}");
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_yaml_ng::Value;

use crate::authz::{AccessRules, InternalOnly, Requirement, Rule};
use crate::claims::{ClaimMapping, ServiceTokenRule};
use crate::error::ConfigError;
use crate::http_client::HttpClientConfig;
use crate::jwks::{Algorithm, KeySource};
use crate::outbound::{
    AudienceParameter, ClientAuth, ClientCredentials, TokenClient, TokenManager,
    TokenManagerBuilder,
};
use crate::policy::{PolicyVersionLayer, PolicyVersions};
use crate::verify::{IssuerConfig, Verifier, VerifierBuilder};

/// The `security` subtree.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   http-client: { timeout-seconds: 2 }
///   redis: { url: "redis://127.0.0.1:6379" }
/// "#).unwrap();
/// assert!(cfg.resource_server.is_none());
/// assert_eq!(cfg.redis.unwrap().url, "redis://127.0.0.1:6379");
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct SecurityConfig {
    /// `http-client`: JWKS, discovery and token endpoint calls.
    pub http_client: Option<HttpClientSection>,
    /// `resource-server`: inbound verification and rules.
    pub resource_server: Option<ResourceServerConfig>,
    /// `internal-token`: outbound service tokens.
    pub internal_token: Option<InternalTokenConfig>,
    /// `redis`: shared state.
    pub redis: Option<RedisConfig>,
    /// `authorization-server`: the issuer (feature `issuer`).
    #[cfg(feature = "issuer")]
    #[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
    pub authorization_server: Option<crate::issuer::config::AuthorizationServerConfig>,
    /// Without feature `issuer`, an `authorization-server` key is an error naming the feature.
    #[cfg(not(feature = "issuer"))]
    #[serde(default, deserialize_with = "issuer_feature_missing")]
    #[allow(dead_code)]
    authorization_server: Option<()>,
}

/// `authorization-server` without feature `issuer`: refused with a reason naming the feature.
#[cfg(not(feature = "issuer"))]
fn issuer_feature_missing<'de, D: Deserializer<'de>>(_: D) -> Result<Option<()>, D::Error> {
    Err(de::Error::custom(
        "`authorization-server` needs the `issuer` feature of tower-bearer",
    ))
}

/// `security.http-client`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml_with_env(r#"
/// security:
///   http-client:
///     timeout-seconds: "${TIMEOUT:-3}"
///     allow-insecure-http: true
/// "#, |_| None).unwrap();
/// let http = cfg.http_client.unwrap();
/// assert_eq!(http.timeout_seconds, Some(3));
/// assert_eq!(http.allow_insecure_http, Some(true));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpClientSection {
    /// `ca-file`: PEM CA certificates added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// `timeout-seconds` (default 5).
    #[serde(default, deserialize_with = "opt_u64")]
    pub timeout_seconds: Option<u64>,
    /// `allow-insecure-http` (default false): `http://` beyond loopback.
    #[serde(default, deserialize_with = "opt_bool")]
    pub allow_insecure_http: Option<bool>,
}

/// `security.resource-server`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     discovery: https://auth.example
///     audience: [orders, billing]
///     algorithms: [ES256]
/// "#).unwrap();
/// let rs = cfg.resource_server.unwrap();
/// assert_eq!(rs.audience, ["orders", "billing"]);
/// assert_eq!(rs.algorithms, Some(vec!["ES256".to_owned()]));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct ResourceServerConfig {
    /// `issuer` (required): the exact `iss` of accepted tokens.
    pub issuer: String,
    /// `jwks-uri`: where the keys are.
    pub jwks_uri: Option<String>,
    /// `discovery`: base URL for OIDC / RFC 8414 discovery (instead of `jwks-uri`).
    pub discovery: Option<String>,
    /// `audience` (required): one or more accepted audiences.
    #[serde(default, deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// `algorithms`: the allow-list (default: every asymmetric algorithm).
    pub algorithms: Option<Vec<String>>,
    /// `leeway-seconds` (default 60).
    #[serde(default, deserialize_with = "opt_u64")]
    pub leeway_seconds: Option<u64>,
    /// `typ`: required JOSE type, e.g. `at+jwt`.
    pub typ: Option<String>,
    /// `required-claims`: beyond `iss`, `aud`, `exp`.
    pub required_claims: Option<Vec<String>>,
    /// `claims`: claim mapping.
    pub claims: Option<ClaimsSection>,
    /// `token-cache`: verified-token cache.
    pub token_cache: Option<TokenCacheSection>,
    /// `internal-only`: paths only service tokens with the internal scope may call.
    pub internal_only: Option<InternalOnlySection>,
    /// `policy-version`: `pv` freshness check.
    pub policy_version: Option<PolicyVersionSection>,
    /// `revocation`: refuse tokens whose `jti` or `sid` the issuer revoked (opt-in).
    pub revocation: Option<RevocationSection>,
    /// `rules`: first match wins.
    pub rules: Option<Vec<RuleConfig>>,
    /// `default`: what unmatched requests need (`deny` or `authenticated`).
    pub default: Option<crate::authz::DefaultAction>,
    /// `path-case`: `sensitive` (default) or `insensitive`, for upstreams that route
    /// case-insensitively (see [`crate::authz::PathCase`]).
    pub path_case: Option<crate::authz::PathCase>,
    /// `service-tokens`: whether this (the primary) issuer may mint service tokens for
    /// internal-only paths (default true).
    #[serde(default, deserialize_with = "opt_bool")]
    pub service_tokens: Option<bool>,
    /// `prefix`: the primary issuer's user-id prefix when several issuers are configured
    /// (optional; see [`IssuerConfig::prefix`]).
    pub prefix: Option<String>,
    /// `reject-id-tokens` (default true): refuse OpenID Connect ID tokens (`typ: id_token+jwt`,
    /// or a `nonce` or `at_hash` claim).
    #[serde(default, deserialize_with = "opt_bool")]
    pub reject_id_tokens: Option<bool>,
    /// `allow-any-rsa-alg-for-keys-without-alg` (default false): an RSA key without `alg`
    /// serves every allowed RS/PS algorithm instead of the first RSA one of `algorithms`.
    #[serde(default, deserialize_with = "opt_bool")]
    pub allow_any_rsa_alg_for_keys_without_alg: Option<bool>,
    /// `additional-issuers`: further trusted issuers (partner identity providers).
    pub additional_issuers: Option<Vec<AdditionalIssuerSection>>,
}

/// One entry of `resource-server.additional-issuers`: a further trusted issuer, like an Envoy
/// `jwt_authn` provider or a Spring trusted issuer. Its users are told apart from the primary
/// issuer's by `prefix` (required): [`CurrentUser::user_id`](crate::CurrentUser::user_id), the
/// policy-version key and `X-User-Id` read `prefix:id`, and `X-User-Issuer` carries `iss`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     jwks-uri: https://auth.example/oauth2/jwks
///     audience: orders
///     additional-issuers:
///       - issuer: https://login.partner.example
///         discovery: https://login.partner.example
///         audience: [partner-orders]
///         algorithms: [RS256]
///         prefix: partner
/// "#).unwrap();
/// let extra = &cfg.resource_server.as_ref().unwrap().additional_issuers.as_ref().unwrap()[0];
/// assert_eq!(extra.prefix.as_deref(), Some("partner"));
/// assert_eq!(extra.service_tokens, None); // not the first issuer: may not mint service tokens
/// assert!(cfg.verifier().is_ok());
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct AdditionalIssuerSection {
    /// `issuer` (required): the exact `iss` of its tokens.
    pub issuer: String,
    /// `jwks-uri`: where its keys are.
    pub jwks_uri: Option<String>,
    /// `discovery`: base URL for OIDC / RFC 8414 discovery (instead of `jwks-uri`).
    pub discovery: Option<String>,
    /// `audience`: accepted audiences for its tokens (default: `resource-server.audience`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// `algorithms`: its allow-list (default: `resource-server.algorithms`).
    pub algorithms: Option<Vec<String>>,
    /// `service-tokens` (default false): it may mint service tokens for internal-only paths.
    #[serde(default, deserialize_with = "opt_bool")]
    pub service_tokens: Option<bool>,
    /// `prefix` (required): its users' id prefix.
    pub prefix: Option<String>,
}

/// `resource-server.claims`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     audience: orders
///     claims: { roles: realm_access.roles, merge-authorities-claim: true }
/// "#).unwrap();
/// let claims = cfg.resource_server.unwrap().claims.unwrap();
/// assert_eq!(claims.roles.as_deref(), Some("realm_access.roles"));
/// assert_eq!(claims.merge_authorities_claim, Some(true));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct ClaimsSection {
    /// `user-id` (default `uid`; falls back to `sub`).
    pub user_id: Option<String>,
    /// `roles` (default `roles`; dotted paths like `realm_access.roles`).
    pub roles: Option<String>,
    /// `permissions` (default `permissions`).
    pub permissions: Option<String>,
    /// `tenant` (default `tenant`).
    pub tenant: Option<String>,
    /// `merge-authorities-claim` (default false).
    #[serde(default, deserialize_with = "opt_bool")]
    pub merge_authorities_claim: Option<bool>,
}

/// `resource-server.token-cache`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     audience: orders
///     token-cache: { max-entries: 0 }
/// "#).unwrap();
/// let cache = cfg.resource_server.unwrap().token_cache.unwrap();
/// assert_eq!(cache.max_entries, Some(0));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenCacheSection {
    /// `max-entries` (default 100000; 0 turns the cache off).
    #[serde(default, deserialize_with = "opt_u64")]
    pub max_entries: Option<u64>,
}

/// `resource-server.internal-only`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     audience: orders
///     internal-only: { paths: ["/internal/**"] }
/// "#).unwrap();
/// let internal = cfg.resource_server.unwrap().internal_only.unwrap();
/// assert_eq!(internal.paths, ["/internal/**"]);
/// assert_eq!(internal.scope, None);
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct InternalOnlySection {
    /// `scope` (default `internal-service`).
    pub scope: Option<String>,
    /// `paths`: patterns (same grammar as rules).
    #[serde(default)]
    pub paths: Vec<String>,
    /// `service-token`: what makes a service token (default: the claim rule
    /// `gty: client-credentials`; `sub-equals-client-id` names the older, weaker rule).
    pub service_token: Option<ServiceTokenSection>,
}

/// `internal-only.service-token`: `{ claim: <name>, value: <string> }` (the claim rule; the
/// default is `{ claim: gty, value: client-credentials }`), or `sub-equals-client-id` (also
/// written `{ rule: sub-equals-client-id }`): `sub == client_id` and no user id claim, for
/// issuers that emit no such claim. A user token meets the latter wherever users choose their
/// `sub`; see [`ServiceTokenRule`].
///
/// # Example
///
/// ```
/// use tower_bearer::claims::ServiceTokenRule;
/// use tower_bearer::config::SecurityConfig;
///
/// let yaml = |rule: &str| format!("security:\n  resource-server:\n    issuer: https://auth.example\n    audience: orders\n    internal-only:\n      paths: [\"/internal/**\"]\n      service-token: {rule}\n");
/// let named = SecurityConfig::from_yaml(&yaml("sub-equals-client-id")).unwrap();
/// assert_eq!(named.service_token_rule(), ServiceTokenRule::SubjectIsClient);
/// let err = SecurityConfig::from_yaml(&yaml("sub-is-anything")).unwrap_err();
/// assert!(err.to_string().contains("sub-is-anything"));
/// let err = SecurityConfig::from_yaml(&yaml("{ claim: gty }")).unwrap_err();
/// assert!(err.to_string().contains("value"));
///
/// // The claim rule:
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     audience: orders
///     internal-only:
///       paths: ["/internal/**"]
///       service-token: { claim: gty, value: client-credentials }
/// "#).unwrap();
/// let internal = cfg.resource_server.unwrap().internal_only.unwrap();
/// assert_eq!(internal.service_token.unwrap().claim.as_deref(), Some("gty"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServiceTokenSection {
    /// `rule`: `claim` (implied by `claim`) or `sub-equals-client-id`.
    pub rule: Option<String>,
    /// `claim`: claim name.
    pub claim: Option<String>,
    /// `value`: required string value.
    pub value: Option<String>,
}

/// The rule names of `service-token`.
const SUB_EQUALS_CLIENT_ID: &str = "sub-equals-client-id";

impl ServiceTokenSection {
    fn validated(self) -> Result<Self, String> {
        match (self.rule.as_deref(), &self.claim, &self.value) {
            (Some(SUB_EQUALS_CLIENT_ID), None, None) => Ok(self),
            (Some(SUB_EQUALS_CLIENT_ID), _, _) => Err(format!(
                "`{SUB_EQUALS_CLIENT_ID}` takes no `claim` or `value`"
            )),
            (None | Some("claim"), Some(_), Some(_)) => Ok(self),
            (None | Some("claim"), Some(_), None) => Err("`claim` needs a `value`".into()),
            (None | Some("claim"), None, _) => {
                Err("the claim rule needs `claim` and `value`".into())
            }
            (Some(other), _, _) => Err(format!(
                "unknown service-token rule `{other}` (expected `{SUB_EQUALS_CLIENT_ID}` or `claim`)"
            )),
        }
    }

    /// The rule this section describes.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::ServiceTokenRule;
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// let cfg = SecurityConfig::from_yaml(r#"
    /// security:
    ///   resource-server:
    ///     issuer: https://auth.example
    ///     audience: orders
    ///     internal-only: { paths: ["/internal/**"], service-token: { rule: sub-equals-client-id } }
    /// "#).unwrap();
    /// let section = cfg.resource_server.unwrap().internal_only.unwrap().service_token.unwrap();
    /// assert_eq!(section.to_rule(), ServiceTokenRule::SubjectIsClient);
    /// ```
    pub fn to_rule(&self) -> ServiceTokenRule {
        match (self.rule.as_deref(), &self.claim, &self.value) {
            (Some(SUB_EQUALS_CLIENT_ID), _, _) => ServiceTokenRule::SubjectIsClient,
            (_, Some(name), Some(value)) => ServiceTokenRule::Claim {
                name: name.clone(),
                value: value.clone(),
            },
            _ => ServiceTokenRule::default(),
        }
    }
}

impl<'de> Deserialize<'de> for ServiceTokenSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        struct Raw {
            rule: Option<String>,
            claim: Option<String>,
            value: Option<String>,
        }
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = ServiceTokenSection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "`{SUB_EQUALS_CLIENT_ID}` or `{{ claim: <name>, value: <string> }}`"
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ServiceTokenSection {
                    rule: Some(v.to_owned()),
                    ..Default::default()
                }
                .validated()
                .map_err(E::custom)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let raw = Raw::deserialize(de::value::MapAccessDeserializer::new(map))?;
                ServiceTokenSection {
                    rule: raw.rule,
                    claim: raw.claim,
                    value: raw.value,
                }
                .validated()
                .map_err(de::Error::custom)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `resource-server.policy-version`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     audience: orders
///     policy-version: { max-staleness-seconds: 10 }
/// "#).unwrap();
/// let pv = cfg.resource_server.unwrap().policy_version.unwrap();
/// assert_eq!(pv.max_staleness_seconds, Some(10));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyVersionSection {
    /// `max-staleness-seconds` (default 5).
    #[serde(default, deserialize_with = "opt_u64")]
    pub max_staleness_seconds: Option<u64>,
}

/// `resource-server.revocation`: the opt-in revocation check
/// ([`RevocationLayer`](crate::revocation::RevocationLayer)).
///
/// `source: redis` reads the keys the issuer's Redis grant store writes, in `security.redis`
/// (its `key-prefix` must be the issuer's grant-store prefix); other sources (in memory, an
/// in-process issuer's grant store) are given from Rust to
/// [`SecurityConfig::revocation_layer`].
///
/// # Example
///
/// ```
/// use tower_bearer::config::{RevocationSourceKind, SecurityConfig};
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     audience: orders
///     revocation: { source: redis, max-staleness-seconds: 2, require-jti: true }
/// "#).unwrap();
/// let r = cfg.resource_server.unwrap().revocation.unwrap();
/// assert_eq!(r.source, RevocationSourceKind::Redis);
/// assert_eq!(r.max_staleness_seconds, Some(2));
/// assert_eq!(r.require_jti, Some(true));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct RevocationSection {
    /// `source` (required): where revocations are read (`redis`).
    pub source: RevocationSourceKind,
    /// `max-staleness-seconds` (default 5): how long a "not revoked" answer is reused, and
    /// how long the source may be down before requests fail closed (503).
    #[serde(default, deserialize_with = "opt_u64")]
    pub max_staleness_seconds: Option<u64>,
    /// `require-jti` (default false): refuse tokens without a `jti` claim.
    #[serde(default, deserialize_with = "opt_bool")]
    pub require_jti: Option<bool>,
}

/// `resource-server.revocation.source`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let err = SecurityConfig::from_yaml(r#"
/// security:
///   resource-server:
///     issuer: https://auth.example
///     audience: orders
///     revocation: { source: memory }
/// "#).unwrap_err();
/// // Only `redis` from YAML (the value itself is not echoed: it might be a secret).
/// assert!(err.to_string().contains("expected `redis`"), "{err}");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RevocationSourceKind {
    /// The issuer's Redis (`security.redis`, feature `redis`).
    #[default]
    Redis,
}

/// One entry of `resource-server.rules`.
///
/// # Example
///
/// ```
/// # use tower_bearer::config::SecurityConfig;
/// # let yaml = r#"
/// # security:
/// #   resource-server:
/// #     issuer: https://auth.example
/// #     jwks-uri: https://auth.example/oauth2/jwks
/// #     audience: orders
/// #     rules:
/// #       - { path: "/public/**", permit-all: true }
/// #       - { path: "/admin/**", role: admin }
/// #     default: authenticated
/// # "#;
/// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
/// let rules = cfg.resource_server.unwrap().rules.unwrap();
/// assert_eq!(rules[1].path, "/admin/**");
/// assert_eq!(rules[1].role.as_deref(), Some("admin"));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleConfig {
    /// `path` (required): exact, `*`, `**`, `{name}`.
    pub path: String,
    /// `methods`: all when absent.
    pub methods: Option<Vec<String>>,
    /// `permit-all: true`.
    #[serde(default, deserialize_with = "opt_bool")]
    pub permit_all: Option<bool>,
    /// `authenticated: true`.
    #[serde(default, deserialize_with = "opt_bool")]
    pub authenticated: Option<bool>,
    /// `deny: true`.
    #[serde(default, deserialize_with = "opt_bool")]
    pub deny: Option<bool>,
    /// `scope`.
    pub scope: Option<String>,
    /// `any-scope`.
    pub any_scope: Option<Vec<String>>,
    /// `all-scopes`.
    pub all_scopes: Option<Vec<String>>,
    /// `role`.
    pub role: Option<String>,
    /// `any-role`.
    pub any_role: Option<Vec<String>>,
    /// `authority`.
    pub authority: Option<String>,
    /// `any-authority`.
    pub any_authority: Option<Vec<String>>,
    /// `permission`.
    pub permission: Option<String>,
    /// `any-permission`.
    pub any_permission: Option<Vec<String>>,
}

impl RuleConfig {
    /// The rule this entry describes.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::config::SecurityConfig;
    /// # let yaml = r#"
    /// # security:
    /// #   resource-server:
    /// #     issuer: https://auth.example
    /// #     jwks-uri: https://auth.example/oauth2/jwks
    /// #     audience: orders
    /// #     rules:
    /// #       - { path: "/public/**", permit-all: true }
    /// #       - { path: "/admin/**", role: admin }
    /// #     default: authenticated
    /// # "#;
    /// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
    /// use tower_bearer::authz::AccessRules;
    ///
    /// let entry = &cfg.resource_server.as_ref().unwrap().rules.as_ref().unwrap()[0];
    /// let rules = AccessRules::builder().rule(entry.to_rule().unwrap()).build().unwrap();
    /// assert!(rules.check(&http::Method::GET, "/public/logo.png", None).is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the path when the entry is inconsistent.
    pub fn to_rule(&self) -> Result<Rule, ConfigError> {
        let err = |reason: String| ConfigError::Invalid {
            name: "rules",
            reason: format!("rule `{}`: {reason}", self.path),
        };
        let mut reqs = Vec::new();
        let permit = self.permit_all == Some(true);
        let deny = self.deny == Some(true);
        if self.authenticated == Some(true) {
            reqs.push(Requirement::Authenticated);
        }
        if let Some(s) = &self.scope {
            reqs.push(Requirement::Scope(s.clone()));
        }
        if let Some(v) = &self.any_scope {
            reqs.push(Requirement::AnyScope(v.clone()));
        }
        if let Some(v) = &self.all_scopes {
            reqs.push(Requirement::AllScopes(v.clone()));
        }
        if let Some(s) = &self.role {
            reqs.push(Requirement::Role(s.clone()));
        }
        if let Some(v) = &self.any_role {
            reqs.push(Requirement::AnyRole(v.clone()));
        }
        if let Some(s) = &self.authority {
            reqs.push(Requirement::Authority(s.clone()));
        }
        if let Some(v) = &self.any_authority {
            reqs.push(Requirement::AnyAuthority(v.clone()));
        }
        if let Some(s) = &self.permission {
            reqs.push(Requirement::Permission(s.clone()));
        }
        if let Some(v) = &self.any_permission {
            reqs.push(Requirement::AnyPermission(v.clone()));
        }
        if [
            &self.any_scope,
            &self.all_scopes,
            &self.any_role,
            &self.any_authority,
            &self.any_permission,
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(Vec::is_empty))
        {
            return Err(err("an empty list can never be satisfied".into()));
        }
        let requirement = match (permit, deny, reqs.len()) {
            (true, true, _) => return Err(err("`permit-all` and `deny` together".into())),
            (true, false, 0) => Requirement::PermitAll,
            (false, true, 0) => Requirement::Deny,
            (true, _, _) | (_, true, _) => {
                return Err(err(
                    "`permit-all`/`deny` cannot be combined with other requirements".into(),
                ));
            }
            (false, false, 0) => {
                return Err(err(
                    "no requirement (permit-all, authenticated, deny, scope, role, ...)".into(),
                ));
            }
            (false, false, 1) => reqs.remove(0),
            _ => Requirement::AllOf(reqs),
        };
        let mut rule = Rule::new(self.path.clone(), requirement);
        if let Some(methods) = &self.methods {
            let methods = methods
                .iter()
                .map(|m| {
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| err(format!("invalid method `{m}`")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if methods.is_empty() {
                return Err(err("empty `methods`".into()));
            }
            rule = rule.methods(methods);
        }
        Ok(rule)
    }
}

/// `security.internal-token`: one outbound client, or several under `clients`.
///
/// # Example
///
/// ```
/// # use tower_bearer::config::SecurityConfig;
/// # let yaml = r#"
/// # security:
/// #   internal-token:
/// #     client-id: orders
/// #     client-secret: s3cr3t
/// #     token-url: https://auth.example/oauth2/token
/// #     destinations: [https://billing.internal]
/// # "#;
/// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
/// let it = cfg.internal_token.unwrap();
/// assert_eq!(it.client.client_id.as_deref(), Some("orders"));
/// assert!(it.clients.is_empty());
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct InternalTokenConfig {
    /// `enabled` (default true when the section is present).
    #[serde(default, deserialize_with = "opt_bool")]
    pub enabled: Option<bool>,
    /// The single client, flattened (`client-id`, `client-secret`, `token-url`, ...).
    #[serde(flatten)]
    pub client: ClientSection,
    /// `skip-clients`: client names whose requests never get a token.
    #[serde(default)]
    pub skip_clients: Vec<String>,
    /// `clients`: several named clients.
    #[serde(default)]
    pub clients: Vec<NamedClientSection>,
}

/// The settings of one outbound client.
///
/// # Example
///
/// ```
/// # use tower_bearer::config::SecurityConfig;
/// # let yaml = r#"
/// # security:
/// #   internal-token:
/// #     client-id: orders
/// #     client-secret: s3cr3t
/// #     token-url: https://auth.example/oauth2/token
/// #     destinations: [https://billing.internal]
/// # "#;
/// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
/// let client = cfg.internal_token.unwrap().client;
/// assert_eq!(client.token_url.as_deref(), Some("https://auth.example/oauth2/token"));
/// assert_eq!(client.client_secret.unwrap().expose(), "s3cr3t");
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ClientSection {
    /// `client-id`.
    pub client_id: Option<String>,
    /// `client-secret` (use `${VAR}`).
    pub client_secret: Option<Secret>,
    /// `token-url`.
    pub token_url: Option<String>,
    /// `discovery`: issuer URL whose metadata names the token endpoint.
    pub discovery: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `audience`.
    pub audience: Option<String>,
    /// `audience-parameter`: `audience` (default) or `resource` (RFC 8707).
    pub audience_parameter: Option<String>,
    /// `client-auth`: `client_secret_basic` (default) or `client_secret_post`.
    pub client_auth: Option<String>,
    /// `refresh-ahead-seconds` (default 60).
    #[serde(default, deserialize_with = "opt_u64")]
    pub refresh_ahead_seconds: Option<u64>,
    /// `cache-expire-seconds`: reuse one fetched token for at most this long, even when the
    /// token endpoint grants a longer lifetime (see [`TokenClient::with_max_reuse`]). Refresh
    /// ahead counts back from this bound: with `540` and `refresh-ahead-seconds: 60`, a token
    /// is refreshed 480 s after it was fetched, however long it would stay valid.
    #[serde(default, deserialize_with = "opt_u64")]
    pub cache_expire_seconds: Option<u64>,
    /// `grant-type`: only `client_credentials` (the default) is supported; any other value is
    /// refused by name when the clients are built.
    pub grant_type: Option<String>,
    /// `destinations`: origins that receive this token; nothing else does.
    #[serde(default)]
    pub destinations: Vec<String>,
}

/// One entry of `internal-token.clients`: a `name` and the keys of one client.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   internal-token:
///     clients:
///       - name: billing
///         client-id: orders
///         client-secret: s3cr3t
///         token-url: https://auth.example/oauth2/token
/// "#).unwrap();
/// let clients = cfg.internal_token.unwrap().clients;
/// assert_eq!(clients[0].name, "billing");
/// assert_eq!(clients[0].client.client_id.as_deref(), Some("orders"));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct NamedClientSection {
    /// `name`.
    pub name: String,
    /// `client-id`, `client-secret`, `token-url`, ... as for the single client.
    #[serde(flatten)]
    pub client: ClientSection,
}

/// `security.redis`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   redis: { url: "redis://127.0.0.1:6379" }
/// "#).unwrap();
/// let redis = cfg.redis.unwrap();
/// assert_eq!(redis.url, "redis://127.0.0.1:6379");
/// assert_eq!(redis.key_prefix, None);
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `url`, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// `key-prefix` (default `tower-bearer`).
    pub key_prefix: Option<String>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &crate::http_client::redact_userinfo(&self.url))
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// The default `redis.key-prefix`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::DEFAULT_REDIS_PREFIX;
///
/// assert_eq!(DEFAULT_REDIS_PREFIX, "tower-bearer");
/// ```
pub const DEFAULT_REDIS_PREFIX: &str = "tower-bearer";

/// A secret string: never printed by `Debug`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::Secret;
///
/// let secret = Secret::new("hunter2");
/// assert!(!format!("{secret:?}").contains("hunter2"));
/// ```
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::Secret;
    ///
    /// assert_eq!(Secret::new(String::from("s3cr3t")).expose(), "s3cr3t");
    /// ```
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::Secret;
    ///
    /// let secret = Secret::new("s3cr3t");
    /// assert_eq!(secret.expose().len(), 6);
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl SecurityConfig {
    /// Parses a YAML document and takes its `security` subtree (other top-level keys are the
    /// program's own), expanding `${VAR}` from the environment.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    /// use tower_bearer::error::ConfigError;
    ///
    /// let cfg = SecurityConfig::from_yaml("security:\n  redis: { url: redis://localhost }\n").unwrap();
    /// assert_eq!(cfg.redis.unwrap().url, "redis://localhost");
    /// let err = SecurityConfig::from_yaml("listen: 0.0.0.0:80\n").unwrap_err();
    /// assert!(matches!(err, ConfigError::Missing("security")));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the bad key, the unset variable, or the YAML syntax error.
    pub fn from_yaml(yaml: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_with_env(yaml, |name| std::env::var(name).ok())
    }

    /// Like [`SecurityConfig::from_yaml`] with an explicit variable lookup.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// let yaml = "security:\n  redis: { url: \"redis://${REDIS_HOST}:6379\" }\n";
    /// let cfg = SecurityConfig::from_yaml_with_env(yaml, |name| {
    ///     (name == "REDIS_HOST").then(|| "cache.internal".to_owned())
    /// })
    /// .unwrap();
    /// assert_eq!(cfg.redis.unwrap().url, "redis://cache.internal:6379");
    /// assert!(SecurityConfig::from_yaml_with_env(yaml, |_| None).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SecurityConfig::from_yaml`].
    pub fn from_yaml_with_env(
        yaml: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Invalid {
            name: "yaml",
            reason: e.to_string(),
        })?;
        let mut security = match doc {
            Value::Mapping(mut m) => m.remove("security").unwrap_or(Value::Null),
            Value::Null => Value::Null,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "yaml",
                    reason: "the document is not a mapping".into(),
                });
            }
        };
        if security.is_null() {
            return Err(ConfigError::Missing("security"));
        }
        expand(&mut security, &env)?;
        SecurityConfig::deserialize(security).map_err(|e| ConfigError::Invalid {
            name: "security",
            reason: scrub_serde(&e.to_string()),
        })
    }

    /// Reads and parses a YAML file.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    /// use tower_bearer::error::ConfigError;
    ///
    /// let path = std::env::temp_dir().join("tower-bearer-doc-config.yaml");
    /// std::fs::write(&path, "security:\n  redis: { url: redis://localhost }\n").unwrap();
    /// assert!(SecurityConfig::from_yaml_file(&path).unwrap().redis.is_some());
    /// # std::fs::remove_file(&path).unwrap();
    /// let err = SecurityConfig::from_yaml_file("/nonexistent/security.yaml").unwrap_err();
    /// assert!(matches!(err, ConfigError::Io { .. }));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] or as [`SecurityConfig::from_yaml`].
    pub fn from_yaml_file(path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// The HTTP client settings.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// let cfg = SecurityConfig::from_yaml(r#"
    /// security:
    ///   http-client: { timeout-seconds: 2 }
    /// "#).unwrap();
    /// use std::time::Duration;
    ///
    /// let http = cfg.http_client_config();
    /// assert_eq!(http.timeout, Duration::from_secs(2));
    /// assert!(!http.allow_insecure_http);
    /// ```
    pub fn http_client_config(&self) -> HttpClientConfig {
        let mut cfg = HttpClientConfig::default();
        if let Some(h) = &self.http_client {
            if let Some(t) = h.timeout_seconds {
                cfg.timeout = Duration::from_secs(t);
            }
            cfg.ca_file.clone_from(&h.ca_file);
            cfg.allow_insecure_http = h.allow_insecure_http.unwrap_or(false);
        }
        cfg
    }

    /// A verifier builder from `resource-server` (add more settings, then `build()`).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::config::SecurityConfig;
    /// # let yaml = r#"
    /// # security:
    /// #   resource-server:
    /// #     issuer: https://auth.example
    /// #     jwks-uri: https://auth.example/oauth2/jwks
    /// #     audience: orders
    /// #     rules:
    /// #       - { path: "/public/**", permit-all: true }
    /// #       - { path: "/admin/**", role: admin }
    /// #     default: authenticated
    /// # "#;
    /// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
    /// let verifier = cfg.verifier_builder().unwrap().max_token_len(4096).build().unwrap();
    /// assert_eq!(verifier.max_token_len(), 4096);
    /// assert!(SecurityConfig::default().verifier_builder().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `resource-server` is missing or inconsistent.
    pub fn verifier_builder(&self) -> Result<VerifierBuilder, ConfigError> {
        let rs = self
            .resource_server
            .as_ref()
            .ok_or(ConfigError::Missing("security.resource-server"))?;
        if rs.issuer.is_empty() {
            return Err(ConfigError::Missing("resource-server.issuer"));
        }
        let source = key_source("resource-server", &rs.issuer, &rs.jwks_uri, &rs.discovery)?
            .ok_or(ConfigError::Missing(
                "resource-server.jwks-uri (or resource-server.discovery)",
            ))?;
        if rs.audience.is_empty() {
            return Err(ConfigError::Missing("resource-server.audience"));
        }
        let mut primary = IssuerConfig::new(rs.issuer.clone(), source);
        if let Some(allowed) = rs.service_tokens {
            primary = primary.service_tokens(allowed);
        }
        if let Some(p) = &rs.prefix {
            primary = primary.prefix(p.clone());
        }
        let mut b = Verifier::builder()
            .issuer(primary)
            .http_client_config(self.http_client_config());
        for extra in rs.additional_issuers.iter().flatten() {
            if extra.issuer.is_empty() {
                return Err(ConfigError::Missing(
                    "resource-server.additional-issuers.issuer",
                ));
            }
            let source = key_source(
                "resource-server.additional-issuers",
                &extra.issuer,
                &extra.jwks_uri,
                &extra.discovery,
            )?
            .ok_or(ConfigError::Missing(
                "resource-server.additional-issuers.jwks-uri (or discovery)",
            ))?;
            let mut issuer = IssuerConfig::new(extra.issuer.clone(), source);
            for aud in &extra.audience {
                issuer = issuer.audience(aud.clone());
            }
            if let Some(algs) = &extra.algorithms {
                issuer = issuer.algorithms(parse_algorithms(algs)?);
            }
            if let Some(allowed) = extra.service_tokens {
                issuer = issuer.service_tokens(allowed);
            }
            match &extra.prefix {
                Some(p) => issuer = issuer.prefix(p.clone()),
                None => {
                    return Err(ConfigError::Missing(
                        "resource-server.additional-issuers.prefix",
                    ));
                }
            }
            b = b.issuer(issuer);
        }
        if let Some(r) = rs.reject_id_tokens {
            b = b.reject_id_tokens(r);
        }
        if let Some(a) = rs.allow_any_rsa_alg_for_keys_without_alg {
            b = b.allow_any_rsa_alg_for_keys_without_alg(a);
        }
        for aud in &rs.audience {
            b = b.audience(aud.clone());
        }
        if let Some(algs) = &rs.algorithms {
            b = b.algorithms(parse_algorithms(algs)?);
        }
        if let Some(l) = rs.leeway_seconds {
            b = b.leeway(Duration::from_secs(l));
        }
        if let Some(t) = &rs.typ {
            b = b.typ(t.clone());
        }
        if let Some(r) = &rs.required_claims {
            b = b.required_claims(r.clone());
        }
        b = b.claim_mapping(self.claim_mapping());
        if let Some(tc) = &rs.token_cache {
            if let Some(n) = tc.max_entries {
                b = b.token_cache(usize::try_from(n).unwrap_or(usize::MAX));
            }
        }
        Ok(b)
    }

    /// The verifier from `resource-server`.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::config::SecurityConfig;
    /// # let yaml = r#"
    /// # security:
    /// #   resource-server:
    /// #     issuer: https://auth.example
    /// #     jwks-uri: https://auth.example/oauth2/jwks
    /// #     audience: orders
    /// #     rules:
    /// #       - { path: "/public/**", permit-all: true }
    /// #       - { path: "/admin/**", role: admin }
    /// #     default: authenticated
    /// # "#;
    /// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
    /// use tower_bearer::bearer::DEFAULT_MAX_TOKEN_LEN;
    ///
    /// let verifier = cfg.verifier().unwrap();
    /// assert_eq!(verifier.max_token_len(), DEFAULT_MAX_TOKEN_LEN);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SecurityConfig::verifier_builder`] and [`VerifierBuilder::build`].
    pub fn verifier(&self) -> Result<Verifier, ConfigError> {
        self.verifier_builder()?.build()
    }

    /// The claim mapping from `resource-server.claims`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// let cfg = SecurityConfig::from_yaml(r#"
    /// security:
    ///   resource-server:
    ///     issuer: https://auth.example
    ///     audience: orders
    ///     claims: { user-id: email }
    /// "#).unwrap();
    /// let mapping = cfg.claim_mapping();
    /// assert_eq!(mapping.user_id, "email");
    /// assert_eq!(mapping.roles, "roles");
    /// ```
    pub fn claim_mapping(&self) -> ClaimMapping {
        let mut m = ClaimMapping::default();
        if let Some(c) = self
            .resource_server
            .as_ref()
            .and_then(|r| r.claims.as_ref())
        {
            if let Some(v) = &c.user_id {
                m.user_id.clone_from(v);
            }
            if let Some(v) = &c.roles {
                m.roles.clone_from(v);
            }
            if let Some(v) = &c.permissions {
                m.permissions.clone_from(v);
            }
            if let Some(v) = &c.tenant {
                m.tenant.clone_from(v);
            }
            m.merge_authorities_claim = c.merge_authorities_claim.unwrap_or(false);
        }
        m
    }

    /// The access rules from `resource-server.rules`, `default` and `internal-only`.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::config::SecurityConfig;
    /// # let yaml = r#"
    /// # security:
    /// #   resource-server:
    /// #     issuer: https://auth.example
    /// #     jwks-uri: https://auth.example/oauth2/jwks
    /// #     audience: orders
    /// #     rules:
    /// #       - { path: "/public/**", permit-all: true }
    /// #       - { path: "/admin/**", role: admin }
    /// #     default: authenticated
    /// # "#;
    /// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
    /// let rules = cfg.access_rules().unwrap();
    /// assert!(rules.check(&http::Method::GET, "/public/index.html", None).is_ok());
    /// let refused = rules.check(&http::Method::GET, "/admin/users", None);
    /// assert!(refused.is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the rule: a bad pattern or method, no requirement, or
    /// `permit-all`/`deny` mixed with other requirements.
    pub fn access_rules(&self) -> Result<AccessRules, ConfigError> {
        let rs = self
            .resource_server
            .as_ref()
            .ok_or(ConfigError::Missing("security.resource-server"))?;
        let mut b = AccessRules::builder()
            .default_action(rs.default.unwrap_or_default())
            .path_case(rs.path_case.unwrap_or_default());
        for rule in rs.rules.iter().flatten() {
            b = b.rule(rule.to_rule()?);
        }
        if let Some(io) = &rs.internal_only {
            let mut internal = InternalOnly::new(io.paths.iter().cloned())
                .service_token(self.service_token_rule());
            if let Some(scope) = &io.scope {
                internal = internal.scope(scope.clone());
            }
            b = b.internal_only(internal);
        }
        b.build()
    }

    /// The policy-version layer from `resource-server.policy-version` over `source`, or a
    /// disabled layer when the section is absent.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// let cfg = SecurityConfig::from_yaml(r#"
    /// security:
    ///   resource-server:
    ///     issuer: https://auth.example
    ///     audience: orders
    /// "#).unwrap();
    /// use std::sync::Arc;
    /// use tower_bearer::policy::MemoryPolicyVersions;
    ///
    /// let layer = cfg.policy_layer(Arc::new(MemoryPolicyVersions::new()));
    /// // No `policy-version` section: the layer lets everything through.
    /// assert_eq!(format!("{layer:?}"), "PolicyVersionLayer(disabled)");
    /// ```
    pub fn policy_layer(&self, source: std::sync::Arc<dyn PolicyVersions>) -> PolicyVersionLayer {
        match self
            .resource_server
            .as_ref()
            .and_then(|r| r.policy_version.as_ref())
        {
            Some(pv) => PolicyVersionLayer::new(source)
                .with_max_staleness(Duration::from_secs(pv.max_staleness_seconds.unwrap_or(5)))
                .with_service_token_rule(self.service_token_rule()),
            None => PolicyVersionLayer::disabled(),
        }
    }

    /// The revocation layer from `resource-server.revocation` over `source`, or a disabled
    /// layer when the section is absent. With `source: redis`, pass
    /// [`redis_revocations`](Self::redis_revocations) (feature `redis`).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::config::SecurityConfig;
    /// use tower_bearer::revocation::MemoryRevocations;
    ///
    /// let yaml = |extra: &str| format!("security:\n  resource-server:\n    issuer: https://auth.example\n    audience: orders\n{extra}");
    /// let off = SecurityConfig::from_yaml(&yaml("")).unwrap();
    /// let layer = off.revocation_layer(Arc::new(MemoryRevocations::new()));
    /// assert_eq!(format!("{layer:?}"), "RevocationLayer(disabled)");
    ///
    /// let on = SecurityConfig::from_yaml(&yaml("    revocation: { source: redis, max-staleness-seconds: 1 }\n")).unwrap();
    /// let layer = on.revocation_layer(Arc::new(MemoryRevocations::new()));
    /// assert!(format!("{layer:?}").contains("max_staleness: 1s"));
    /// ```
    pub fn revocation_layer(
        &self,
        source: std::sync::Arc<dyn crate::revocation::RevocationSource>,
    ) -> crate::revocation::RevocationLayer {
        match self
            .resource_server
            .as_ref()
            .and_then(|r| r.revocation.as_ref())
        {
            Some(r) => crate::revocation::RevocationLayer::new(source)
                .with_max_staleness(Duration::from_secs(r.max_staleness_seconds.unwrap_or(5)))
                .require_jti(r.require_jti.unwrap_or(false)),
            None => crate::revocation::RevocationLayer::disabled(),
        }
    }

    /// The outbound clients of `internal-token` (the flattened single client, named
    /// `default`, or every entry of `clients`).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::config::SecurityConfig;
    /// # let yaml = r#"
    /// # security:
    /// #   internal-token:
    /// #     client-id: orders
    /// #     client-secret: s3cr3t
    /// #     token-url: https://auth.example/oauth2/token
    /// #     destinations: [https://billing.internal]
    /// # "#;
    /// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
    /// let clients = cfg.token_clients().unwrap();
    /// assert_eq!(clients.len(), 1);
    /// assert_eq!(clients[0].name(), "default");
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the missing or bad key (`client-id`, `client-secret`,
    /// `token-url`/`discovery`, `client-auth`, `audience-parameter`, a destination).
    pub fn token_clients(&self) -> Result<Vec<TokenClient>, ConfigError> {
        let it = self.internal_token_section()?;
        let http = self.http_client_config();
        let mut out = Vec::new();
        if it.clients.is_empty() {
            out.push(client_from("default", &it.client, &it.skip_clients, &http)?);
        } else {
            if it.client.client_id.is_some() || it.client.token_url.is_some() {
                return Err(ConfigError::Invalid {
                    name: "internal-token",
                    reason: "set either the single client keys or `clients`, not both".into(),
                });
            }
            for c in &it.clients {
                out.push(client_from(&c.name, &c.client, &it.skip_clients, &http)?);
            }
        }
        Ok(out)
    }

    /// A token manager builder with every `internal-token` client and its
    /// `refresh-ahead-seconds` (add a clock, a store or more, then `build()`).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use tower_bearer::config::SecurityConfig;
    /// # let yaml = r#"
    /// # security:
    /// #   internal-token:
    /// #     client-id: orders
    /// #     client-secret: s3cr3t
    /// #     token-url: https://auth.example/oauth2/token
    /// #     destinations: [https://billing.internal]
    /// # "#;
    /// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
    /// let manager = cfg.token_manager_builder().unwrap().build().unwrap();
    /// assert_eq!(manager.client_names().collect::<Vec<_>>(), ["default"]);
    /// assert!(SecurityConfig::default().token_manager_builder().is_err());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SecurityConfig::token_clients`].
    pub fn token_manager_builder(&self) -> Result<TokenManagerBuilder, ConfigError> {
        self.token_manager_builder_with(Ok)
    }

    /// Like [`SecurityConfig::token_manager_builder`], letting `adjust` change each client
    /// first (e.g. add a destination).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::config::SecurityConfig;
    /// # let yaml = r#"
    /// # security:
    /// #   internal-token:
    /// #     client-id: orders
    /// #     client-secret: s3cr3t
    /// #     token-url: https://auth.example/oauth2/token
    /// #     destinations: [https://billing.internal]
    /// # "#;
    /// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
    /// let builder = cfg.token_manager_builder_with(|client| {
    ///     client.with_destination("https://shipping.internal")
    /// });
    /// assert!(builder.is_ok());
    /// let refused = cfg.token_manager_builder_with(|client| client.with_destination("not a url"));
    /// assert!(refused.is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SecurityConfig::token_clients`], or what `adjust` returns.
    pub fn token_manager_builder_with(
        &self,
        mut adjust: impl FnMut(TokenClient) -> Result<TokenClient, ConfigError>,
    ) -> Result<TokenManagerBuilder, ConfigError> {
        let it = self.internal_token_section()?;
        let ahead = it
            .clients
            .iter()
            .filter_map(|c| c.client.refresh_ahead_seconds)
            .chain(it.client.refresh_ahead_seconds)
            .max()
            .unwrap_or(60);
        let mut b = TokenManager::builder().refresh_ahead(Duration::from_secs(ahead));
        for client in self.token_clients()? {
            b = b.client(adjust(client)?);
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            // Every replica has the same client secret: it keys the value encryption.
            let secret = it
                .client
                .client_secret
                .as_ref()
                .or_else(|| {
                    it.clients
                        .iter()
                        .find_map(|c| c.client.client_secret.as_ref())
                })
                .ok_or(ConfigError::Missing("internal-token.client-secret"))?;
            let prefix = redis.key_prefix.as_deref().unwrap_or(DEFAULT_REDIS_PREFIX);
            let store =
                crate::store::RedisTokenStore::connect_lazy(&redis.url, prefix, secret.expose())?;
            b = b.store(std::sync::Arc::new(store)).store_key_prefix(prefix);
        }
        #[cfg(not(feature = "redis"))]
        if self.redis.is_some() {
            tracing::warn!(
                "security.redis is set, but tower-bearer was built without the `redis` feature: \
                 tokens are cached per process only"
            );
        }
        Ok(b)
    }

    /// Policy versions from `security.redis` (`{key-prefix}:pv:{user}`), connected lazily.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cfg = SecurityConfig::from_yaml("security:\n  redis: { url: redis://127.0.0.1:6379 }\n")
    ///     .unwrap();
    /// let versions = cfg.redis_policy_versions().await;
    /// assert!(versions.is_ok());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `redis` is missing or its URL is invalid, or outside a Tokio
    /// runtime.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis_policy_versions(
        &self,
    ) -> Result<crate::store::RedisPolicyVersions, ConfigError> {
        let redis = self
            .redis
            .as_ref()
            .ok_or(ConfigError::Missing("security.redis"))?;
        let prefix = redis.key_prefix.as_deref().unwrap_or(DEFAULT_REDIS_PREFIX);
        crate::store::RedisPolicyVersions::connect(&redis.url, prefix).await
    }

    /// Revocations from `security.redis` (the issuer's `{key-prefix}:jti:{…}` and
    /// `{key-prefix}:sid-revoked:{…}` keys), connected at once.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cfg = SecurityConfig::from_yaml("security:\n  redis: { url: redis://127.0.0.1:6379, key-prefix: auth }\n")
    ///     .unwrap();
    /// let revocations = cfg.redis_revocations().await.unwrap();
    /// assert_eq!(revocations.jti_key("t-1"), "auth:jti:{t-1}");
    /// let layer = cfg.revocation_layer(Arc::new(revocations));
    /// # let _ = layer;
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `redis` is missing, its URL is invalid or Redis cannot be reached.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis_revocations(&self) -> Result<crate::store::RedisRevocations, ConfigError> {
        let redis = self
            .redis
            .as_ref()
            .ok_or(ConfigError::Missing("security.redis"))?;
        let prefix = redis.key_prefix.as_deref().unwrap_or(DEFAULT_REDIS_PREFIX);
        crate::store::RedisRevocations::connect(&redis.url, prefix).await
    }

    /// The token manager of `internal-token`; with feature `redis` and a `redis` section, its
    /// token cache is shared through Redis (connected lazily: call inside a Tokio runtime).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use tower_bearer::config::SecurityConfig;
    /// # let yaml = r#"
    /// # security:
    /// #   internal-token:
    /// #     client-id: orders
    /// #     client-secret: s3cr3t
    /// #     token-url: https://auth.example/oauth2/token
    /// #     destinations: [https://billing.internal]
    /// # "#;
    /// # let cfg = SecurityConfig::from_yaml(yaml).unwrap();
    /// let manager = cfg.token_manager().unwrap();
    /// assert_eq!(manager.client_names().count(), 1);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SecurityConfig::token_manager_builder`] and `TokenManagerBuilder::build`.
    pub fn token_manager(&self) -> Result<TokenManager, ConfigError> {
        self.token_manager_builder()?.build()
    }

    fn internal_token_section(&self) -> Result<&InternalTokenConfig, ConfigError> {
        let it = self
            .internal_token
            .as_ref()
            .ok_or(ConfigError::Missing("security.internal-token"))?;
        if it.enabled == Some(false) {
            return Err(ConfigError::Invalid {
                name: "internal-token",
                reason: "`enabled: false`".into(),
            });
        }
        Ok(it)
    }

    /// The service-token rule from `internal-only.service-token`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::ServiceTokenRule;
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// // Default: the claim rule `gty: client-credentials`.
    /// assert_eq!(SecurityConfig::default().service_token_rule(), ServiceTokenRule::default());
    /// ```
    pub fn service_token_rule(&self) -> ServiceTokenRule {
        self.resource_server
            .as_ref()
            .and_then(|r| r.internal_only.as_ref())
            .and_then(|i| i.service_token.as_ref())
            .map_or(ServiceTokenRule::default(), ServiceTokenSection::to_rule)
    }
}

fn parse_algorithms(algs: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
    algs.iter().map(|a| a.parse::<Algorithm>()).collect()
}

/// The key source of an issuer: `jwks-uri` or `discovery` (not both); `None` when neither.
fn key_source(
    section: &'static str,
    issuer: &str,
    jwks_uri: &Option<String>,
    discovery: &Option<String>,
) -> Result<Option<KeySource>, ConfigError> {
    Ok(match (jwks_uri, discovery) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                name: section,
                reason: "set either `jwks-uri` or `discovery`, not both".into(),
            });
        }
        (Some(uri), None) => Some(KeySource::JwksUri(uri.clone())),
        (None, Some(d)) if d.trim_end_matches('/') == issuer.trim_end_matches('/') => {
            Some(KeySource::Discovery)
        }
        (None, Some(d)) => Some(KeySource::DiscoveryAt(d.clone())),
        (None, None) => None,
    })
}

fn client_from(
    name: &str,
    c: &ClientSection,
    skip: &[String],
    http: &HttpClientConfig,
) -> Result<TokenClient, ConfigError> {
    let id = c
        .client_id
        .clone()
        .ok_or(ConfigError::Missing("internal-token.client-id"))?;
    let secret = c
        .client_secret
        .as_ref()
        .ok_or(ConfigError::Missing("internal-token.client-secret"))?;
    if let Some(grant) = c.grant_type.as_deref() {
        if grant != "client_credentials" {
            return Err(ConfigError::Invalid {
                name: "internal-token.grant-type",
                reason: format!(
                    "`{}` is not supported: only `client_credentials`",
                    redact_value(grant)
                ),
            });
        }
    }
    let mut cc = ClientCredentials::builder(id, secret.expose())
        .http_client_config(http.clone())
        .client_auth(ClientAuth::parse(
            c.client_auth.as_deref().unwrap_or("client_secret_basic"),
        )?)
        .audience_parameter(AudienceParameter::parse(
            c.audience_parameter.as_deref().unwrap_or("audience"),
        )?);
    cc = match (&c.token_url, &c.discovery) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                name: "internal-token",
                reason: "set either `token-url` or `discovery`, not both".into(),
            });
        }
        (Some(url), None) => cc.token_url(url.clone()),
        (None, Some(issuer)) => cc.discovery(issuer.clone()),
        (None, None) => {
            return Err(ConfigError::Missing(
                "internal-token.token-url (or discovery)",
            ));
        }
    };
    let mut client =
        TokenClient::new(name.to_owned(), cc.build()?).with_skip_clients(skip.iter().cloned());
    if let Some(aud) = &c.audience {
        client = client.with_audience(aud.clone());
    }
    if let Some(scope) = &c.scope {
        client = client.with_scope(scope.clone());
    }
    for d in &c.destinations {
        client = client.with_destination(d)?;
    }
    if let Some(secs) = c.cache_expire_seconds {
        if secs == 0 {
            return Err(ConfigError::Invalid {
                name: "internal-token.cache-expire-seconds",
                reason: "must be at least 1".into(),
            });
        }
        client = client.with_max_reuse(Duration::from_secs(secs));
    }
    Ok(client)
}

/// Expands `${VAR}` and `${VAR:-default}` in every string scalar; `$${` is a literal `${`.
fn expand(v: &mut Value, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    match v {
        Value::String(s) if s.contains("${") => {
            *s = expand_str(s, env)?;
        }
        Value::Sequence(items) => {
            for i in items {
                expand(i, env)?;
            }
        }
        Value::Mapping(m) => {
            for (_, val) in m.iter_mut() {
                expand(val, env)?;
            }
        }
        Value::Tagged(t) => expand(&mut t.value, env)?,
        _ => {}
    }
    Ok(())
}

/// One scalar: `${NAME}` (must be set), `${NAME:-default}` (the default when `NAME` is unset
/// or empty, as in POSIX shells), `$${` (a literal `${`, not expanded). The expanded values are
/// never scanned again. Errors name the variable, never the scalar (it may hold a secret).
fn expand_str(s: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${`: the escape, a literal `${`.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| ConfigError::Invalid {
            name: "security",
            reason: "unterminated `${` in a value (write `$${` for a literal `${`)".into(),
        })?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        if !is_var_name(name) {
            return Err(ConfigError::Invalid {
                name: "security",
                reason: format!(
                    "`${{{}}}`: not a variable name (letters, digits and `_`)",
                    redact_value(name)
                ),
            });
        }
        let value = match (env(name), default) {
            (Some(v), Some(d)) if v.is_empty() => d.to_owned(),
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                return Err(ConfigError::Invalid {
                    name: "security",
                    reason: format!("environment variable `{name}` is not set"),
                });
            }
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A scalar value for an error message: never the whole of it (it may be a secret expanded from
/// the environment), only a short prefix and its length.
fn redact_value(s: &str) -> String {
    let count = s.chars().count();
    let shown = (count / 4).min(4);
    let prefix: String = s.chars().take(shown).collect();
    format!("{prefix}… ({count} chars)")
}

/// A deserializer message with the scalar values it quotes redacted (`string "…"`,
/// `unknown variant `…``); key names it quotes (`unknown field`) stay.
fn scrub_serde(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    loop {
        let string_at = rest.find("string \"").map(|i| (i, "string \"", '"'));
        let variant_at = rest
            .find("unknown variant `")
            .map(|i| (i, "unknown variant `", '`'));
        let next = match (string_at, variant_at) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let Some((at, lead, close)) = next else {
            out.push_str(rest);
            return out;
        };
        let body = &rest[at + lead.len()..];
        let Some(end) = body.find(close) else {
            out.push_str(&rest[..at + lead.len()]);
            out.push_str(&redact_value(body));
            return out;
        };
        out.push_str(&rest[..at + lead.len()]);
        out.push_str(&redact_value(&body[..end]));
        out.push(close);
        rest = &body[end + 1..];
    }
}

/// A number, or a string holding one (after `${VAR}` expansion).
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("expected a non-negative integer, got {n}"))),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            de::Error::custom(format!(
                "expected a non-negative integer, got `{}`",
                redact_value(&s)
            ))
        }),
        Some(other) => Err(de::Error::custom(format!(
            "expected a non-negative integer, got {other:?}"
        ))),
    }
}

/// A boolean, or a string `true`/`false`.
pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) => match s.trim() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(de::Error::custom(format!(
                "expected true or false, got `{}`",
                redact_value(&s)
            ))),
        },
        Some(other) => Err(de::Error::custom(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}

/// A string or a list of strings.
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
listen: 127.0.0.1:8080
upstream: http://127.0.0.1:9001
security:
  http-client:
    ca-file: /etc/ssl/internal-ca.pem
    timeout-seconds: 5
    allow-insecure-http: false
  resource-server:
    issuer: https://auth.eon.internal
    jwks-uri: http://127.0.0.1:9000/oauth2/jwks
    audience: [eon-internal]
    algorithms: [RS256, ES256, EdDSA]
    leeway-seconds: 30
    typ: at+jwt
    required-claims: [sub, client_id, jti]
    claims:
      user-id: uid
      roles: roles
      permissions: permissions
      tenant: tenant
      merge-authorities-claim: false
    token-cache: { max-entries: 100000 }
    internal-only:
      scope: internal-service
      paths: ["/internal/**"]
      service-token: { claim: gty, value: client-credentials }
    policy-version: { max-staleness-seconds: 5 }
    revocation: { source: redis, max-staleness-seconds: 5 }
    rules:
      - { path: "/public/**", permit-all: true }
      - { path: "/admin/**", methods: [POST, DELETE], any-role: [admin] }
      - { path: "/reports/**", scope: reports.read }
      - { path: "/**", authenticated: true }
    default: deny
  internal-token:
    enabled: true
    client-id: internal-service-client
    client-secret: ${INTERNAL_CLIENT_SECRET}
    token-url: http://127.0.0.1:9000/oauth2/token
    scope: internal-service
    audience: service-system
    audience-parameter: audience
    client-auth: client_secret_basic
    refresh-ahead-seconds: 60
    destinations: ["http://127.0.0.1:9002"]
    skip-clients: [payments-gateway]
  redis:
    url: redis://127.0.0.1:6379
    key-prefix: tower-bearer
"#;

    fn env(name: &str) -> Option<String> {
        (name == "INTERNAL_CLIENT_SECRET").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn the_documented_file_parses_with_every_key() {
        let cfg = SecurityConfig::from_yaml_with_env(FULL, env).unwrap();
        let rs = cfg.resource_server.as_ref().unwrap();
        assert_eq!(rs.audience, ["eon-internal"]);
        assert_eq!(rs.rules.as_ref().unwrap().len(), 4);
        assert_eq!(rs.default, Some(crate::authz::DefaultAction::Deny));
        let rev = rs.revocation.as_ref().unwrap();
        assert_eq!(
            (rev.source, rev.max_staleness_seconds, rev.require_jti),
            (RevocationSourceKind::Redis, Some(5), None)
        );
        assert!(cfg.access_rules().is_ok());
        let it = cfg.internal_token.as_ref().unwrap();
        assert_eq!(it.client.client_secret.as_ref().unwrap().expose(), "s3cr3t");
        assert!(
            !format!("{cfg:?}").contains("s3cr3t"),
            "secrets are redacted"
        );
        assert_eq!(it.skip_clients, ["payments-gateway"]);
        assert_eq!(
            cfg.redis.as_ref().unwrap().key_prefix.as_deref(),
            Some("tower-bearer")
        );
        assert_eq!(cfg.http_client_config().timeout, Duration::from_secs(5));
        assert_eq!(
            cfg.service_token_rule(),
            ServiceTokenRule::Claim {
                name: "gty".into(),
                value: "client-credentials".into()
            }
        );
    }

    #[test]
    fn several_named_clients() {
        let yaml = "security:\n  internal-token:\n    clients:\n      - { name: orders, client-id: a, client-secret: b, token-url: 'http://127.0.0.1:1/t', audience: x, destinations: ['http://127.0.0.1:2'] }\n      - { name: pay, client-id: c, client-secret: d, token-url: 'http://127.0.0.1:1/t', refresh-ahead-seconds: 30 }\n";
        let cfg = SecurityConfig::from_yaml(yaml).unwrap();
        let names: Vec<String> = cfg
            .token_clients()
            .unwrap()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(names, ["orders", "pay"]);
        let bad = yaml.replace("name: pay,", "name: pay, bogus: 1,");
        let err = SecurityConfig::from_yaml(&bad).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[tokio::test]
    async fn token_manager_from_config() {
        let no_ca = FULL.replace("    ca-file: /etc/ssl/internal-ca.pem\n", "");
        let cfg = SecurityConfig::from_yaml_with_env(&no_ca, env).unwrap();
        let clients = cfg.token_clients().unwrap();
        assert_eq!(clients.len(), 1);
        assert!(cfg.token_manager().is_ok());
        for (from, to, needle) in [
            ("    client-id: internal-service-client\n", "", "client-id"),
            (
                "client-auth: client_secret_basic",
                "client-auth: private_key_jwt",
                "client-auth",
            ),
            (
                "audience-parameter: audience",
                "audience-parameter: resource",
                "absolute",
            ),
            (
                "destinations: [\"http://127.0.0.1:9002\"]",
                "destinations: [\"not a url\"]",
                "not a url",
            ),
        ] {
            let yaml = no_ca.replace(from, to);
            let err = SecurityConfig::from_yaml_with_env(&yaml, env)
                .unwrap()
                .token_manager()
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn authorization_server_needs_the_issuer_feature() {
        let yaml = "security:\n  authorization-server:\n    issuer: https://auth.example\n";
        let parsed = SecurityConfig::from_yaml(yaml);
        #[cfg(feature = "issuer")]
        assert_eq!(
            parsed.unwrap().authorization_server.unwrap().issuer,
            "https://auth.example"
        );
        #[cfg(not(feature = "issuer"))]
        {
            let err = parsed.unwrap_err().to_string();
            assert!(err.contains("`issuer` feature"), "{err}");
        }
    }

    #[test]
    fn variable_defaults() {
        let yaml = "security:\n  redis: { url: \"redis://${H:-localhost}:${P:-6379}\" }\n";
        let cfg = SecurityConfig::from_yaml_with_env(yaml, |n| (n == "P").then(|| "7000".into()));
        assert_eq!(cfg.unwrap().redis.unwrap().url, "redis://localhost:7000");
        let cfg = SecurityConfig::from_yaml_with_env(yaml, |_| Some(String::new()));
        assert_eq!(cfg.unwrap().redis.unwrap().url, "redis://localhost:6379");
    }

    #[test]
    fn unset_variable_is_named() {
        let err = SecurityConfig::from_yaml_with_env(FULL, |_| None).unwrap_err();
        assert!(err.to_string().contains("INTERNAL_CLIENT_SECRET"), "{err}");
    }

    #[test]
    fn variable_defaults_and_escape() {
        let env = |name: &str| match name {
            "SET" => Some("7".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let x = |s: &str| expand_str(s, &env);
        assert_eq!(x("${TIMEOUT:-3}").unwrap(), "3");
        assert_eq!(x("${SET:-3}").unwrap(), "7");
        assert_eq!(x("${EMPTY:-3}").unwrap(), "3");
        assert_eq!(x("${EMPTY}").unwrap(), "");
        assert_eq!(x("a${UNSET:-}b").unwrap(), "ab");
        assert_eq!(x("${UNSET:-http://h:1/x}").unwrap(), "http://h:1/x");
        assert_eq!(x("$${SET}").unwrap(), "${SET}");
        assert_eq!(x("p$${SET}-${SET}").unwrap(), "p${SET}-7");
        assert_eq!(x("$$").unwrap(), "$$");
        let err = x("${TIMEOUT:3}").unwrap_err().to_string();
        assert!(err.contains("not a variable name"), "{err}");
        assert!(x("${SET").is_err());
        // Through the whole loader, as the docs of `HttpClientSection` show it.
        let cfg = SecurityConfig::from_yaml_with_env(
            "security:\n  http-client:\n    timeout-seconds: \"${TIMEOUT:-3}\"\n",
            env,
        )
        .unwrap();
        assert_eq!(cfg.http_client.unwrap().timeout_seconds, Some(3));
    }

    #[test]
    fn errors_never_echo_a_secret_value() {
        const SECRET: &str = "hunter2-very-secret-value";
        let env = |name: &str| (name == "S").then(|| SECRET.to_owned());
        let cases = [
            "security:\n  http-client:\n    timeout-seconds: ${S}\n",
            "security:\n  http-client:\n    allow-insecure-http: ${S}\n",
            "security:\n  http-client:\n    timeout-seconds: [${S}]\n",
            "security:\n  internal-token:\n    client-id: a\n    client-secret: x\n    token-url: http://127.0.0.1:1/t\n    grant-type: ${S}\n",
            "security:\n  internal-token:\n    client-id: a\n    client-secret: x\n    token-url: http://127.0.0.1:1/t\n    cache-expire-seconds: ${S}\n",
            "security:\n  redis: { url: \"${S}${S}\" }\n  internal-token:\n    enabled: { a: ${S} }\n",
            "security:\n  internal-token:\n    client-secret: \"${S}${\"\n",
        ];
        for yaml in cases {
            let err = SecurityConfig::from_yaml_with_env(yaml, env)
                .and_then(|c| c.token_clients().map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(!err.contains(SECRET), "{yaml}: {err}");
            assert!(!err.contains("hunter2-very"), "{yaml}: {err}");
        }
    }

    #[test]
    fn redis_userinfo_is_redacted() {
        let cfg = SecurityConfig::from_yaml(
            "security:\n  redis: { url: \"redis://user:hunter2@cache.internal:6379/0\" }\n",
        )
        .unwrap();
        let debug = format!("{:?}", cfg.redis.as_ref().unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("redis://***@cache.internal:6379/0"),
            "{debug}"
        );
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(
            crate::http_client::redact_userinfo("redis://:pass@host"),
            "redis://***@host"
        );
        let err = crate::http_client::parse_url("https://u:hunter2@h/x", false)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn seed_internal_token_block_loads() {
        let env = |name: &str| (name == "INTERNAL_CLIENT_SECRET").then(|| "s".to_owned());
        let cfg = SecurityConfig::from_yaml_with_env(SEED_INTERNAL_TOKEN, env).unwrap();
        let it = cfg.internal_token.as_ref().unwrap();
        assert_eq!(it.client.cache_expire_seconds, Some(540));
        assert_eq!(it.client.grant_type.as_deref(), Some("client_credentials"));
        let clients = cfg.token_clients().unwrap();
        assert!(format!("{:?}", clients[0]).contains("540s"));
        // The same keys in an entry of `clients:`.
        let yaml = "security:\n  internal-token:\n    clients:\n      - { name: a, client-id: a, client-secret: b, token-url: 'http://127.0.0.1:1/t', cache-expire-seconds: 30, grant-type: client_credentials }\n";
        let clients = SecurityConfig::from_yaml(yaml)
            .unwrap()
            .token_clients()
            .unwrap();
        assert!(format!("{:?}", clients[0]).contains("30s"));
        for (good, bad, key) in [
            (
                "grant-type: client_credentials",
                "grant-type: password",
                "internal-token.grant-type",
            ),
            (
                "grant-type: client_credentials",
                "grant-type: authorization_code",
                "internal-token.grant-type",
            ),
            (
                "cache-expire-seconds: 540",
                "cache-expire-seconds: 0",
                "internal-token.cache-expire-seconds",
            ),
        ] {
            let yaml = SEED_INTERNAL_TOKEN.replace(good, bad);
            let err = SecurityConfig::from_yaml_with_env(&yaml, env)
                .unwrap()
                .token_clients()
                .unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name, .. } if *name == key),
                "{bad}: {err}"
            );
        }
    }

    const SEED_INTERNAL_TOKEN: &str = r#"
security:
  internal-token:
    enabled: true
    client-id: internal-service-client
    client-secret: ${INTERNAL_CLIENT_SECRET}
    token-url: http://127.0.0.1:9000/oauth2/token
    scope: internal-service
    cache-expire-seconds: 540
    refresh-ahead-seconds: 60
    audience: service-system
    grant-type: client_credentials
"#;

    #[test]
    fn unknown_keys_are_named_at_any_depth() {
        for (yaml, key) in [
            ("security:\n  resource-servers: {}\n", "resource-servers"),
            (
                "security:\n  resource-server:\n    issuer: x\n    audiences: [a]\n",
                "audiences",
            ),
            (
                "security:\n  resource-server:\n    issuer: x\n    rules:\n      - { path: /a, permitall: true }\n",
                "permitall",
            ),
            (
                "security:\n  internal-token:\n    client-idd: x\n",
                "client-idd",
            ),
            (
                "security:\n  resource-server:\n    issuer: x\n    revocation: { source: redis, max-stale-seconds: 1 }\n",
                "max-stale-seconds",
            ),
            (
                "security:\n  resource-server:\n    issuer: x\n    revocation: { source: memory }\n",
                "expected `redis`",
            ),
            (
                "security:\n  resource-server:\n    issuer: x\n    revocation: { max-staleness-seconds: 1 }\n",
                "source",
            ),
        ] {
            let err = SecurityConfig::from_yaml_with_env(yaml, env).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn bad_rules_are_named() {
        for (rule, needle) in [
            ("{ path: /a }", "no requirement"),
            (
                "{ path: /a, permit-all: true, scope: x }",
                "cannot be combined",
            ),
            ("{ path: a, authenticated: true }", "`a`"),
            (
                "{ path: /a, methods: [\"G T\"], authenticated: true }",
                "invalid method",
            ),
            ("{ path: /a, any-role: [] }", "empty list"),
            ("{ path: /a, all-scopes: [] }", "empty list"),
            (
                "{ path: /a, authenticated: true, all-scopes: [] }",
                "empty list",
            ),
            (
                "{ path: \"/a{b}{c}\", authenticated: true }",
                "more than one wildcard",
            ),
        ] {
            let yaml = format!(
                "security:\n  resource-server:\n    issuer: x\n    rules:\n      - {rule}\n"
            );
            let cfg = SecurityConfig::from_yaml(&yaml).unwrap();
            let err = cfg.access_rules().unwrap_err().to_string();
            assert!(err.contains(needle), "{rule}: {err}");
        }
    }

    #[test]
    fn path_case_and_affix_patterns_from_yaml() {
        let yaml = |case: &str| {
            format!(
                "security:\n  resource-server:\n    issuer: x\n{case}    rules:\n      - {{ path: \"/v1/jobs/{{id}}:cancel\", methods: [post], role: admin }}\n      - {{ path: /admin/**, deny: true }}\n      - {{ path: /**, permit-all: true }}\n"
            )
        };
        let rules = |case: &str| {
            SecurityConfig::from_yaml(&yaml(case))
                .unwrap()
                .access_rules()
                .unwrap()
        };
        let get = http::Method::GET;
        let post = http::Method::POST;
        for case in ["", "    path-case: sensitive\n"] {
            let r = rules(case);
            assert!(r.check(&get, "/ADMIN/x", None).is_ok(), "{case}");
            assert!(r.check(&post, "/v1/jobs/7:cancel", None).is_err());
            assert!(r.check(&post, "/v1/jobs/7:CANCEL", None).is_ok());
        }
        let r = rules("    path-case: insensitive\n");
        assert!(r.check(&get, "/ADMIN/x", None).is_err());
        assert!(r.check(&get, "/Admin", None).is_err());
        assert!(r.check(&post, "/V1/JOBS/7:CANCEL", None).is_err());
        assert!(r.check(&get, "/home", None).is_ok());
        let err = SecurityConfig::from_yaml(&yaml("    path-case: lower\n")).unwrap_err();
        // The value itself is redacted (errors never repeat a scalar); the expected set is named.
        assert!(
            err.to_string().contains("`sensitive` or `insensitive`"),
            "{err}"
        );
    }

    #[test]
    fn numbers_and_bools_from_variables() {
        let yaml =
            "security:\n  http-client:\n    timeout-seconds: ${T}\n    allow-insecure-http: ${B}\n";
        let cfg = SecurityConfig::from_yaml_with_env(yaml, |n| match n {
            "T" => Some("7".into()),
            "B" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        let h = cfg.http_client_config();
        assert_eq!(h.timeout, Duration::from_secs(7));
        assert!(h.allow_insecure_http);
    }

    #[test]
    fn verifier_from_config() {
        let cfg = SecurityConfig::from_yaml_with_env(FULL, env).unwrap();
        // The CA file of the documented example does not exist here: a clear error naming it.
        let err = cfg.verifier().unwrap_err();
        assert!(
            err.to_string().contains("/etc/ssl/internal-ca.pem"),
            "{err}"
        );
        let no_ca = FULL.replace("    ca-file: /etc/ssl/internal-ca.pem\n", "");
        let cfg = SecurityConfig::from_yaml_with_env(&no_ca, env).unwrap();
        assert!(cfg.verifier().is_ok());
        let bad = "security:\n  resource-server:\n    issuer: https://a\n    jwks-uri: http://10.1.1.1/jwks\n    audience: x\n";
        let err = SecurityConfig::from_yaml(bad)
            .unwrap()
            .verifier()
            .unwrap_err();
        assert!(err.to_string().contains("insecure"), "{err}");
    }

    const ISSUERS: &str = "security:
  resource-server:
    issuer: https://auth.example
    jwks-uri: https://auth.example/oauth2/jwks
    audience: orders
    service-tokens: true
    prefix: main
    reject-id-tokens: false
    allow-any-rsa-alg-for-keys-without-alg: true
    internal-only:
      paths: [\"/internal/**\"]
      service-token: sub-equals-client-id
    additional-issuers:
      - issuer: https://login.partner.example
        discovery: https://login.partner.example
        audience: [partner-orders]
        algorithms: [RS256]
        service-tokens: false
        prefix: partner
";

    #[test]
    fn additional_issuers_and_identity_keys() {
        let cfg = SecurityConfig::from_yaml(ISSUERS).unwrap();
        let rs = cfg.resource_server.as_ref().unwrap();
        assert_eq!(rs.service_tokens, Some(true));
        assert_eq!(rs.prefix.as_deref(), Some("main"));
        assert_eq!(rs.reject_id_tokens, Some(false));
        assert_eq!(rs.allow_any_rsa_alg_for_keys_without_alg, Some(true));
        let extra = &rs.additional_issuers.as_ref().unwrap()[0];
        assert_eq!(extra.issuer, "https://login.partner.example");
        assert_eq!(extra.audience, ["partner-orders"]);
        assert_eq!(extra.service_tokens, Some(false));
        assert_eq!(cfg.service_token_rule(), ServiceTokenRule::SubjectIsClient);
        assert!(cfg.verifier().is_ok());
        assert!(cfg.access_rules().is_ok());

        // Unknown keys inside an entry are refused by name.
        let bad = ISSUERS.replace(
            "        prefix: partner\n",
            "        prefix: partner\n        jwks-url: x\n",
        );
        let err = SecurityConfig::from_yaml(&bad).unwrap_err();
        assert!(err.to_string().contains("jwks-url"), "{err}");
        // A further issuer without a prefix is refused, by name.
        let bad = ISSUERS.replace("        prefix: partner\n", "");
        let err = SecurityConfig::from_yaml(&bad)
            .unwrap()
            .verifier()
            .unwrap_err();
        assert!(
            err.to_string().contains("additional-issuers.prefix"),
            "{err}"
        );
        // Neither `jwks-uri` nor `discovery`.
        let bad = ISSUERS.replace("        discovery: https://login.partner.example\n", "");
        let err = SecurityConfig::from_yaml(&bad)
            .unwrap()
            .verifier()
            .unwrap_err();
        assert!(
            err.to_string().contains("additional-issuers.jwks-uri"),
            "{err}"
        );
        // A bad algorithm name.
        let bad = ISSUERS.replace("[RS256]", "[RS257]");
        assert!(SecurityConfig::from_yaml(&bad).unwrap().verifier().is_err());
    }

    #[test]
    fn service_token_rule_forms() {
        let yaml = |rule: &str| {
            format!(
                "security:\n  resource-server:\n    issuer: https://a.example\n    audience: x\n    internal-only:\n      paths: [\"/internal/**\"]\n      service-token: {rule}\n"
            )
        };
        let rule = |r: &str| SecurityConfig::from_yaml(&yaml(r)).map(|c| c.service_token_rule());
        assert_eq!(
            rule("sub-equals-client-id").unwrap(),
            ServiceTokenRule::SubjectIsClient
        );
        assert_eq!(
            rule("{ rule: sub-equals-client-id }").unwrap(),
            ServiceTokenRule::SubjectIsClient
        );
        assert_eq!(
            rule("{ claim: gty, value: client-credentials }").unwrap(),
            ServiceTokenRule::default()
        );
        assert_eq!(
            rule("{ rule: claim, claim: typ, value: svc }").unwrap(),
            ServiceTokenRule::Claim {
                name: "typ".into(),
                value: "svc".into()
            }
        );
        for bad in [
            "subject-is-client",
            "{ rule: sub-equals-client-id, claim: gty }",
            "{ claim: gty }",
            "{ value: x }",
            "{ claim: gty, value: x, extra: 1 }",
        ] {
            assert!(rule(bad).is_err(), "{bad}");
        }
        let err = rule("{ claim: gty, value: x, extra: 1 }").unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
        // Absent: the claim rule `gty: client-credentials`.
        let cfg = SecurityConfig::from_yaml(
            "security:\n  resource-server:\n    issuer: https://a.example\n    audience: x\n",
        )
        .unwrap();
        assert_eq!(
            cfg.service_token_rule(),
            ServiceTokenRule::Claim {
                name: "gty".into(),
                value: "client-credentials".into()
            }
        );
    }
}
