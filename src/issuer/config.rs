//! `security.authorization-server`: the issuer configuration (YAML).
//!
//! Keys are spelled as in the design's contract; an unknown key is an error that names it;
//! `${VAR}` (and `${VAR:-default}`) is expanded as in the rest of `security`. The structs only
//! hold what the file says: [`AuthorizationServerConfig::validate`] (called by
//! [`AuthorizationServer::from_config`](crate::issuer::AuthorizationServer::from_config)) checks
//! that it makes sense.
//!
//! # Example
//!
//! ```
//! use tower_bearer::config::SecurityConfig;
//! use tower_bearer::issuer::config::{AuthMethod, GrantType};
//!
//! let cfg = SecurityConfig::from_yaml_with_env(r#"
//! security:
//!   authorization-server:
//!     issuer: http://127.0.0.1:9000
//!     access-token: { ttl-seconds: 300, audience: [eon-internal] }
//!     clients:
//!       - client-id: internal-service-client
//!         client-secret: ${INTERNAL_CLIENT_SECRET}
//!         grant-types: [client_credentials]
//!         scopes: [internal-service]
//!         audiences: [service-system]
//! "#, |name| (name == "INTERNAL_CLIENT_SECRET").then(|| "test-only-secret".to_owned())).unwrap();
//! let aus = cfg.authorization_server.unwrap();
//! aus.validate().unwrap();
//! assert_eq!(aus.clients[0].auth_method(), AuthMethod::ClientSecretBasic);
//! assert_eq!(aus.clients[0].grant_types, [GrantType::ClientCredentials]);
//!
//! let err = SecurityConfig::from_yaml("security:\n  authorization-server:\n    issuer: x\n    clientz: []\n")
//!     .unwrap_err();
//! assert!(err.to_string().contains("clientz"), "{err}");
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Secret, one_or_many, opt_bool, opt_u64};
use crate::error::ConfigError;

/// `security.authorization-server`.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::config::AuthorizationServerConfig;
///
/// let cfg = AuthorizationServerConfig::new("https://auth.example");
/// assert_eq!(cfg.issuer, "https://auth.example");
/// assert_eq!(cfg.token_path(), "/oauth2/token");
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthorizationServerConfig {
    /// `issuer` (required): the `iss` of every token and of the metadata, byte for byte.
    pub issuer: String,
    /// `paths`: endpoint paths (defaults as Spring Authorization Server).
    pub paths: Option<PathsSection>,
    /// `signing`: algorithm, key directory, rotation.
    pub signing: Option<SigningSection>,
    /// `access-token`: lifetime, `typ`, default audience.
    pub access_token: Option<AccessTokenSection>,
    /// `refresh-token`: lifetimes of refresh-token families (refresh_token grant).
    pub refresh_token: Option<RefreshTokenSection>,
    /// `password-grant`: the resource-owner password grant (off by default).
    pub password_grant: Option<PasswordGrantSection>,
    /// `store`: where grants, revocations and key states live (`memory`, the default, or `redis`).
    pub store: Option<StoreKind>,
    /// `authorization-code`: the authorization endpoint, login and consent pages, codes
    /// ([`crate::issuer::authorize`]).
    pub authorization_code: Option<AuthorizationCodeSection>,
    /// `refresh-endpoint`: seed 004's simplified `/auth/refresh-token` (off by default).
    pub refresh_endpoint: Option<RefreshEndpointSection>,
    /// `management`: who may call the management API (audience and scope).
    pub management: Option<ManagementSection>,
    /// `clients`: the registered clients.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// `users`: dev/test users (production implements a user store).
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

/// `authorization-server.paths`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     paths: { token: /oauth/token }
/// "#).unwrap();
/// let aus = cfg.authorization_server.unwrap();
/// assert_eq!(aus.token_path(), "/oauth/token");
/// assert_eq!(aus.jwks_path(), "/oauth2/jwks");
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct PathsSection {
    /// `token` (default `/oauth2/token`).
    pub token: Option<String>,
    /// `jwks` (default `/oauth2/jwks`).
    pub jwks: Option<String>,
    /// `revoke` (default `/oauth2/revoke`).
    pub revoke: Option<String>,
    /// `introspect` (default `/oauth2/introspect`).
    pub introspect: Option<String>,
    /// `authorize` (default `/oauth2/authorize`): the authorization endpoint; the login and
    /// consent forms post to `<authorize>/login` and `<authorize>/consent`.
    pub authorize: Option<String>,
}

/// `authorization-server.signing`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
/// use tower_bearer::jwks::Algorithm;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     signing: { algorithm: ES256, rotate-after-days: 30 }
/// "#).unwrap();
/// let signing = cfg.authorization_server.unwrap().signing.unwrap();
/// assert_eq!(signing.algorithm().unwrap(), Algorithm::ES256);
/// assert_eq!(signing.rotate_after_days, Some(30));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct SigningSection {
    /// `algorithm`: `RS256` (default), `PS256`, `ES256` or `EdDSA`.
    pub algorithm: Option<String>,
    /// `key-dir`: keys persisted there, encrypted under `${ISSUER_KEY_SECRET}` (which must then
    /// be set); absent, keys are generated in memory and die with the process.
    pub key_dir: Option<PathBuf>,
    /// `rotate-after-days`: a new key is published, then signs; the old one stays published
    /// until its tokens have expired.
    #[serde(default, deserialize_with = "opt_u64")]
    pub rotate_after_days: Option<u64>,
}

impl SigningSection {
    /// The configured algorithm (RS256 when absent).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::SigningSection;
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// assert_eq!(SigningSection::default().algorithm().unwrap(), Algorithm::RS256);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `signing.algorithm` for anything but RS256, PS256, ES256
    /// and EdDSA.
    pub fn algorithm(&self) -> Result<crate::jwks::Algorithm, ConfigError> {
        use crate::jwks::Algorithm;
        let Some(name) = self.algorithm.as_deref() else {
            return Ok(Algorithm::RS256);
        };
        match name.parse::<Algorithm>() {
            Ok(
                alg @ (Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA),
            ) => Ok(alg),
            _ => Err(ConfigError::Invalid {
                name: "authorization-server.signing.algorithm",
                reason: format!("`{name}` is not one of RS256, PS256, ES256, EdDSA"),
            }),
        }
    }
}

/// `authorization-server.access-token`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     access-token: { ttl-seconds: 600, typ: JWT, audience: " a, b,a ,," }
/// "#).unwrap();
/// let at = cfg.authorization_server.unwrap().access_token.unwrap();
/// assert_eq!(at.ttl_seconds, Some(600));
/// assert_eq!(at.audiences(), ["a", "b"]);
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessTokenSection {
    /// `ttl-seconds` (default 300).
    #[serde(default, deserialize_with = "opt_u64")]
    pub ttl_seconds: Option<u64>,
    /// `typ`: the JOSE header `typ` (`at+jwt`, the default, or `JWT`).
    pub typ: Option<String>,
    /// `audience`: the default `aud` when a client asks for none.
    #[serde(default, deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
}

impl AccessTokenSection {
    /// `audience` normalised: trimmed, comma-split, de-duplicated (first wins), empty dropped.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AccessTokenSection;
    ///
    /// let mut at = AccessTokenSection::default();
    /// at.audience = vec!["x, y".into(), " x ".into(), "".into()];
    /// assert_eq!(at.audiences(), ["x", "y"]);
    /// ```
    pub fn audiences(&self) -> Vec<String> {
        normalise_list(&self.audience)
    }
}

/// Trims, splits on commas, drops empty entries and duplicates (keeping the first).
pub(crate) fn normalise_list(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        for part in item.split(',') {
            let part = part.trim();
            if !part.is_empty() && !out.iter().any(|o| o == part) {
                out.push(part.to_owned());
            }
        }
    }
    out
}

/// `authorization-server.refresh-token` (refresh_token grant).
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     refresh-token: { idle-ttl-seconds: 3600, absolute-ttl-seconds: 86400 }
/// "#).unwrap();
/// let rt = cfg.authorization_server.unwrap().refresh_token.unwrap();
/// assert_eq!(rt.idle_ttl_seconds, Some(3600));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct RefreshTokenSection {
    /// `idle-ttl-seconds` (default 2592000, 30 days): unused this long, a family ends.
    #[serde(default, deserialize_with = "opt_u64")]
    pub idle_ttl_seconds: Option<u64>,
    /// `absolute-ttl-seconds` (default 7776000, 90 days): a family never lives longer.
    #[serde(default, deserialize_with = "opt_u64")]
    pub absolute_ttl_seconds: Option<u64>,
}

/// `authorization-server.password-grant`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     password-grant: { enabled: true }
/// "#).unwrap();
/// assert_eq!(cfg.authorization_server.unwrap().password_grant.unwrap().enabled, Some(true));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct PasswordGrantSection {
    /// `enabled` (default false): ROPC is off unless switched on here and per client.
    #[serde(default, deserialize_with = "opt_bool")]
    pub enabled: Option<bool>,
}

/// `authorization-server.authorization-code`: the authorization endpoint (RFC 6749 §4.1) with
/// its login and consent pages. See [`crate::issuer::authorize`].
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     authorization-code: { code-ttl-seconds: 30, session-ttl-seconds: 300 }
/// "#).unwrap();
/// let aus = cfg.authorization_server.unwrap();
/// assert_eq!(aus.authorization_code.as_ref().unwrap().code_ttl_seconds, Some(30));
/// assert!(aus.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthorizationCodeSection {
    /// `enabled` (default: true when a client lists `authorization_code`).
    #[serde(default, deserialize_with = "opt_bool")]
    pub enabled: Option<bool>,
    /// `code-ttl-seconds` (default 60, at most 60): how long a code may be exchanged.
    #[serde(default, deserialize_with = "opt_u64")]
    pub code_ttl_seconds: Option<u64>,
    /// `session-ttl-seconds` (default 600): the login session (cookie and server-side state).
    #[serde(default, deserialize_with = "opt_u64")]
    pub session_ttl_seconds: Option<u64>,
    /// `require-pkce` (default true): PKCE for confidential clients too (public clients always
    /// need it); a client's own `require-pkce` wins.
    #[serde(default, deserialize_with = "opt_bool")]
    pub require_pkce: Option<bool>,
}

/// `authorization-server.refresh-endpoint`: seed 004's simplified refresh endpoint, answering
/// `{"code","message","data"}` over the same refresh logic as the token endpoint (see
/// [`refresh_endpoint`](crate::issuer::refresh_endpoint)).
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     refresh-endpoint: { enabled: true, allow-get: false }
/// "#).unwrap();
/// let re = cfg.authorization_server.unwrap().refresh_endpoint.unwrap();
/// assert_eq!(re.enabled, Some(true));
/// assert_eq!(re.path, None); // `/auth/refresh-token`
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct RefreshEndpointSection {
    /// `enabled` (default false).
    #[serde(default, deserialize_with = "opt_bool")]
    pub enabled: Option<bool>,
    /// `path` (default `/auth/refresh-token`).
    pub path: Option<String>,
    /// `allow-get` (default false): also answer `GET` with the parameters in the query. A
    /// refresh token in a URL ends up in access logs, proxies and browser history: leave it off
    /// unless old clients need it.
    #[serde(default, deserialize_with = "opt_bool")]
    pub allow_get: Option<bool>,
}

/// The default path of the simplified refresh endpoint.
pub const DEFAULT_REFRESH_ENDPOINT_PATH: &str = "/auth/refresh-token";
/// The default audience a management token must carry.
pub const DEFAULT_MANAGEMENT_AUDIENCE: &str = "auth-management";
/// The default scope a management token must carry.
pub const DEFAULT_MANAGEMENT_SCOPE: &str = "admin";

/// `authorization-server.management`: the management API
/// ([`AuthorizationServer::management_router`](crate::issuer::AuthorizationServer::management_router))
/// requires a token of this issuer with this audience **and** this scope.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     management: { audience: ops-console, scope: auth.admin }
/// "#).unwrap();
/// let m = cfg.authorization_server.unwrap().management.unwrap();
/// assert_eq!(m.audience.as_deref(), Some("ops-console"));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct ManagementSection {
    /// `audience` (default `auth-management`): the `aud` a management token must have.
    pub audience: Option<String>,
    /// `scope` (default `admin`): the scope a management token must have.
    pub scope: Option<String>,
}

/// One entry of a client's `client-secrets`: a secret (`value`, hashed at load) or its hash
/// (`hash`), valid until `expires-at` (RFC 3339, optional). Two entries let a client switch
/// secrets with no downtime.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     clients:
///       - client-id: orders
///         client-secrets:
///           - { value: test-only-new }
///           - { value: test-only-old, expires-at: "2030-01-31T00:00:00Z" }
///         grant-types: [client_credentials]
/// "#).unwrap();
/// let c = &cfg.authorization_server.unwrap().clients[0];
/// assert_eq!(c.client_secrets[1].expires_at.as_deref(), Some("2030-01-31T00:00:00Z"));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientSecretConfig {
    /// `value`: the secret itself (use `${VAR}`), hashed at load.
    pub value: Option<Secret>,
    /// `hash`: the secret's hash, `{bcrypt}…`, `{argon2}…` or `{sha256}…`.
    pub hash: Option<Secret>,
    /// `expires-at`: RFC 3339 date-time after which the secret is refused.
    pub expires_at: Option<String>,
}

/// The most secrets one client may have (the current one and the next).
pub const MAX_CLIENT_SECRETS: usize = 2;

/// Parses an RFC 3339 date-time (`2030-01-31T00:00:00Z`, `2030-01-31T01:00:00.5+01:00`) to
/// Unix seconds.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::config::parse_rfc3339;
///
/// assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
/// assert_eq!(parse_rfc3339("2030-01-31T01:00:00+01:00"), Some(1_896_048_000));
/// assert_eq!(parse_rfc3339("2030-01-31"), None);
/// assert_eq!(parse_rfc3339("2030-02-30T00:00:00Z"), None);
/// ```
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if rb[0] == b'+' { o } else { -o }
        }
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > days_in[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset;
    u64::try_from(t).ok()
}

/// `authorization-server.store`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
/// use tower_bearer::issuer::config::StoreKind;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server: { issuer: "https://auth.example", store: redis }
///   redis: { url: "redis://127.0.0.1:6379" }
/// "#).unwrap();
/// assert_eq!(cfg.authorization_server.unwrap().store, Some(StoreKind::Redis));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In memory (one process).
    #[default]
    Memory,
    /// Redis (`security.redis`), shared by replicas.
    Redis,
}

/// A grant type a client may use (`grant-types`).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::config::GrantType;
///
/// assert_eq!(GrantType::parse("client_credentials"), Some(GrantType::ClientCredentials));
/// assert_eq!(GrantType::RefreshToken.as_str(), "refresh_token");
/// assert_eq!(GrantType::parse("implicit"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GrantType {
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
    /// `password` (RFC 6749 §4.3; deprecated by RFC 9700).
    Password,
    /// `authorization_code` (RFC 6749 §4.1, with PKCE).
    AuthorizationCode,
}

impl GrantType {
    /// Every grant type, in a stable order.
    pub const ALL: [GrantType; 4] = [
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::Password,
        GrantType::AuthorizationCode,
    ];

    /// The `grant_type` value.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::GrantType;
    ///
    /// assert_eq!(GrantType::AuthorizationCode.as_str(), "authorization_code");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Password => "password",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }

    /// Parses a `grant_type` value (exact spelling).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::GrantType;
    ///
    /// assert_eq!(GrantType::parse("password"), Some(GrantType::Password));
    /// assert_eq!(GrantType::parse("Password"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a client authenticates at the token endpoint (`auth-method`).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::config::AuthMethod;
///
/// assert_eq!(AuthMethod::default(), AuthMethod::ClientSecretBasic);
/// assert_eq!(AuthMethod::ClientSecretPost.as_str(), "client_secret_post");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_secret_basic` (RFC 6749 §2.3.1, the default).
    #[default]
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `none`: a public client (PKCE only).
    None,
}

impl AuthMethod {
    /// The RFC 8414 / RFC 7591 name.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert_eq!(AuthMethod::None.as_str(), "none");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `authorization-server.clients`.
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     clients:
///       - client-id: reports
///         client-secret-hash: "{bcrypt}$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
///         auth-method: client_secret_post
///         grant-types: [client_credentials]
///         scopes: [reports.read]
///         access-token-ttl-seconds: 60
/// "#).unwrap();
/// let client = &cfg.authorization_server.unwrap().clients[0];
/// assert_eq!(client.client_id, "reports");
/// assert_eq!(client.access_token_ttl_seconds, Some(60));
/// assert!(client.client_secret.is_none());
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `client-id` (required, unique).
    pub client_id: String,
    /// `client-secret`: the secret itself (use `${VAR}`), hashed at load.
    pub client_secret: Option<Secret>,
    /// `client-secret-hash`: `{bcrypt}…`, `{argon2}…` or `{sha256}…` as Spring's
    /// `DelegatingPasswordEncoder` writes them.
    pub client_secret_hash: Option<Secret>,
    /// `client-secrets`: up to two secrets with optional `expires-at`, alongside or instead of
    /// `client-secret` / `client-secret-hash` (at most two in all): rotation with no downtime.
    #[serde(default)]
    pub client_secrets: Vec<ClientSecretConfig>,
    /// `auth-method` (default `client_secret_basic`).
    pub auth_method: Option<AuthMethod>,
    /// `grant-types` (required, not empty).
    #[serde(default)]
    pub grant_types: Vec<GrantType>,
    /// `scopes`: what the client may ask for.
    #[serde(default, deserialize_with = "one_or_many")]
    pub scopes: Vec<String>,
    /// `audiences`: what `audience` / `resource` (RFC 8707) may ask for.
    #[serde(default, deserialize_with = "one_or_many")]
    pub audiences: Vec<String>,
    /// `access-token-ttl-seconds`: overrides `access-token.ttl-seconds`.
    #[serde(default, deserialize_with = "opt_u64")]
    pub access_token_ttl_seconds: Option<u64>,
    /// `redirect-uris` (authorization_code clients).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `introspection` (default false): may call the introspection endpoint.
    #[serde(default, deserialize_with = "opt_bool")]
    pub introspection: Option<bool>,
    /// `require-consent` (default false): the consent page is shown before a code is issued
    /// (remembered for the login session per user, client and scopes).
    #[serde(default, deserialize_with = "opt_bool")]
    pub require_consent: Option<bool>,
    /// `require-pkce` (default: `authorization-code.require-pkce`, true): `false` lets a
    /// *confidential* client use the code flow without PKCE; public clients always need it.
    #[serde(default, deserialize_with = "opt_bool")]
    pub require_pkce: Option<bool>,
}

impl ClientConfig {
    /// The configured authentication method (`client_secret_basic` when absent).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::{AuthMethod, ClientConfig};
    ///
    /// assert_eq!(ClientConfig::default().auth_method(), AuthMethod::ClientSecretBasic);
    /// ```
    pub fn auth_method(&self) -> AuthMethod {
        self.auth_method.unwrap_or_default()
    }
}

/// One entry of `authorization-server.users` (dev and tests).
///
/// # Example
///
/// ```
/// use tower_bearer::config::SecurityConfig;
///
/// let cfg = SecurityConfig::from_yaml(r#"
/// security:
///   authorization-server:
///     issuer: https://auth.example
///     users:
///       - { username: alice, password-hash: "{bcrypt}$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", uid: "1001", tenant: acme, roles: [user], permissions: [orders.read] }
/// "#).unwrap();
/// let alice = &cfg.authorization_server.unwrap().users[0];
/// assert_eq!(alice.uid.as_deref(), Some("1001"));
/// assert_eq!(alice.roles, ["user"]);
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct UserConfig {
    /// `username` (required, unique).
    pub username: String,
    /// `password-hash`: Spring `{id}` format.
    pub password_hash: Option<Secret>,
    /// `uid` (default: the username).
    pub uid: Option<String>,
    /// `tenant`.
    pub tenant: Option<String>,
    /// `pv`: the policy version (default 0).
    #[serde(default, deserialize_with = "opt_u64")]
    pub pv: Option<u64>,
    /// `roles`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `permissions`.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// `enabled` (default true).
    #[serde(default, deserialize_with = "opt_bool")]
    pub enabled: Option<bool>,
}

/// The default access-token lifetime (5 minutes).
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(300);
/// The default refresh-token idle lifetime (30 days).
pub const DEFAULT_REFRESH_IDLE_TTL: Duration = Duration::from_secs(2_592_000);
/// The default refresh-token absolute lifetime (90 days).
pub const DEFAULT_REFRESH_ABSOLUTE_TTL: Duration = Duration::from_secs(7_776_000);
/// The environment variable holding the key-encryption secret for `signing.key-dir`.
pub const KEY_SECRET_VAR: &str = "ISSUER_KEY_SECRET";

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// Checks a configured endpoint path: absolute, no query, no fragment, no `..`.
fn check_path(which: &'static str, p: &str) -> Result<(), ConfigError> {
    if !p.starts_with('/')
        || p.contains(['?', '#', ' '])
        || p.split('/').any(|s| s == "..")
        || p.len() > 1 && p.ends_with('/')
    {
        return Err(invalid(
            which,
            format!("`{p}` must be an absolute path without query, fragment, `..` or trailing `/`"),
        ));
    }
    Ok(())
}

impl AuthorizationServerConfig {
    /// A configuration with only `issuer` set (no clients).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert!(AuthorizationServerConfig::new("https://auth.example").clients.is_empty());
    /// ```
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            ..Self::default()
        }
    }

    /// The token endpoint path.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert_eq!(AuthorizationServerConfig::new("https://a").token_path(), "/oauth2/token");
    /// ```
    pub fn token_path(&self) -> &str {
        self.paths
            .as_ref()
            .and_then(|p| p.token.as_deref())
            .unwrap_or("/oauth2/token")
    }

    /// The JWKS path.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert_eq!(AuthorizationServerConfig::new("https://a").jwks_path(), "/oauth2/jwks");
    /// ```
    pub fn jwks_path(&self) -> &str {
        self.paths
            .as_ref()
            .and_then(|p| p.jwks.as_deref())
            .unwrap_or("/oauth2/jwks")
    }

    /// The revocation endpoint path.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert_eq!(AuthorizationServerConfig::new("https://a").revoke_path(), "/oauth2/revoke");
    /// ```
    pub fn revoke_path(&self) -> &str {
        self.paths
            .as_ref()
            .and_then(|p| p.revoke.as_deref())
            .unwrap_or("/oauth2/revoke")
    }

    /// `paths.authorize`, or `/oauth2/authorize`: the authorization endpoint.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert_eq!(AuthorizationServerConfig::new("https://a").authorize_path(), "/oauth2/authorize");
    /// ```
    pub fn authorize_path(&self) -> &str {
        self.paths
            .as_ref()
            .and_then(|p| p.authorize.as_deref())
            .unwrap_or("/oauth2/authorize")
    }

    /// `paths.introspect`, or `/oauth2/introspect`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert_eq!(AuthorizationServerConfig::new("https://a.example").introspect_path(), "/oauth2/introspect");
    /// ```
    pub fn introspect_path(&self) -> &str {
        self.paths
            .as_ref()
            .and_then(|p| p.introspect.as_deref())
            .unwrap_or("/oauth2/introspect")
    }

    /// The access-token lifetime (`access-token.ttl-seconds`, default 300).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert_eq!(AuthorizationServerConfig::new("https://a").access_token_ttl(), Duration::from_secs(300));
    /// ```
    pub fn access_token_ttl(&self) -> Duration {
        self.access_token
            .as_ref()
            .and_then(|a| a.ttl_seconds)
            .map_or(DEFAULT_ACCESS_TOKEN_TTL, Duration::from_secs)
    }

    /// The JOSE `typ` of access tokens (`access-token.typ`, default `at+jwt`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert_eq!(AuthorizationServerConfig::new("https://a").access_token_typ(), "at+jwt");
    /// ```
    pub fn access_token_typ(&self) -> &str {
        self.access_token
            .as_ref()
            .and_then(|a| a.typ.as_deref())
            .unwrap_or("at+jwt")
    }

    /// The simplified refresh endpoint's path (`refresh-endpoint.path`, default
    /// `/auth/refresh-token`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert_eq!(AuthorizationServerConfig::new("https://a").refresh_endpoint_path(), "/auth/refresh-token");
    /// ```
    pub fn refresh_endpoint_path(&self) -> &str {
        self.refresh_endpoint
            .as_ref()
            .and_then(|r| r.path.as_deref())
            .unwrap_or(DEFAULT_REFRESH_ENDPOINT_PATH)
    }

    /// Whether the password grant is switched on (`password-grant.enabled`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert!(!AuthorizationServerConfig::new("https://a").password_grant_enabled());
    /// ```
    pub fn password_grant_enabled(&self) -> bool {
        self.password_grant
            .as_ref()
            .and_then(|p| p.enabled)
            .unwrap_or(false)
    }

    /// Checks the configuration with the process environment (for `ISSUER_KEY_SECRET`) and
    /// `http://` allowed for loopback issuers only.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    ///
    /// assert!(AuthorizationServerConfig::new("https://auth.example").validate().is_ok());
    /// let err = AuthorizationServerConfig::new("https://auth.example/?x=1").validate().unwrap_err();
    /// assert!(err.to_string().contains("query"), "{err}");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`AuthorizationServerConfig::validate_with`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(false, |n| std::env::var(n).ok())
    }

    /// Checks the configuration: the issuer is an absolute `https` URL (`http` for loopback or
    /// with `allow_insecure_http`) without query or fragment; paths are absolute and distinct;
    /// the algorithm is supported; `key-dir` comes with `ISSUER_KEY_SECRET` (looked up with
    /// `env`); lifetimes are positive; `typ` is `at+jwt` or `JWT`; client ids are unique and
    /// every client has grant types, a consistent authentication method (a secret or a hash,
    /// not both, for confidential clients; none for public clients, which need
    /// `authorization_code`, the only PKCE grant, and may not use `client_credentials` or
    /// `password`), `redirect-uris` when it uses `authorization_code`; hashes are not `{noop}`
    /// (outside feature `insecure-dev`); usernames are unique.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    ///
    /// let cfg = SecurityConfig::from_yaml(r#"
    /// security:
    ///   authorization-server:
    ///     issuer: https://auth.example
    ///     signing: { key-dir: /var/lib/auth/keys }
    /// "#).unwrap();
    /// let aus = cfg.authorization_server.unwrap();
    /// let err = aus.validate_with(false, |_| None).unwrap_err();
    /// assert!(err.to_string().contains("ISSUER_KEY_SECRET"), "{err}");
    /// assert!(aus.validate_with(false, |_| Some("test-only".into())).is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting and what is wrong with it.
    pub fn validate_with(
        &self,
        allow_insecure_http: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        check_issuer(&self.issuer, allow_insecure_http)?;
        let paths = [
            (
                "authorization-server.refresh-endpoint.path",
                self.refresh_endpoint_path(),
            ),
            ("authorization-server.paths.token", self.token_path()),
            ("authorization-server.paths.jwks", self.jwks_path()),
            ("authorization-server.paths.revoke", self.revoke_path()),
            (
                "authorization-server.paths.introspect",
                self.introspect_path(),
            ),
            (
                "authorization-server.paths.authorize",
                self.authorize_path(),
            ),
        ];
        for (i, (name, p)) in paths.iter().enumerate() {
            check_path(name, p)?;
            if p.starts_with("/.well-known/") {
                return Err(invalid(name, format!("`{p}` is reserved for metadata")));
            }
            if paths[..i].iter().any(|(_, q)| q == p) {
                return Err(invalid(name, format!("`{p}` is used twice")));
            }
        }
        if let Some(m) = &self.management {
            if m.audience.as_deref().is_some_and(|a| a.trim().is_empty()) {
                return Err(invalid(
                    "authorization-server.management.audience",
                    "is empty",
                ));
            }
            if let Some(sc) = &m.scope {
                if sc.is_empty() || !sc.chars().all(is_scope_char) {
                    return Err(invalid(
                        "authorization-server.management.scope",
                        format!("`{sc}` is not a valid scope token (RFC 6749 §3.3)"),
                    ));
                }
            }
        }
        if let Some(s) = &self.signing {
            s.algorithm()?;
            if s.key_dir.is_some() && env(KEY_SECRET_VAR).is_none_or(|v| v.is_empty()) {
                return Err(invalid(
                    "authorization-server.signing.key-dir",
                    format!(
                        "`key-dir` needs the environment variable {KEY_SECRET_VAR} (the key-encryption secret)"
                    ),
                ));
            }
            if s.rotate_after_days == Some(0) {
                return Err(invalid(
                    "authorization-server.signing.rotate-after-days",
                    "must be at least 1",
                ));
            }
        }
        if let Some(at) = &self.access_token {
            if at.ttl_seconds == Some(0) {
                return Err(invalid(
                    "authorization-server.access-token.ttl-seconds",
                    "must be at least 1",
                ));
            }
            if let Some(typ) = &at.typ {
                if !matches!(typ.as_str(), "at+jwt" | "JWT") {
                    return Err(invalid(
                        "authorization-server.access-token.typ",
                        format!("`{typ}` is not `at+jwt` or `JWT`"),
                    ));
                }
            }
        }
        if let Some(rt) = &self.refresh_token {
            let idle = rt
                .idle_ttl_seconds
                .unwrap_or(DEFAULT_REFRESH_IDLE_TTL.as_secs());
            let abs = rt
                .absolute_ttl_seconds
                .unwrap_or(DEFAULT_REFRESH_ABSOLUTE_TTL.as_secs());
            if idle == 0 || abs == 0 || idle > abs {
                return Err(invalid(
                    "authorization-server.refresh-token",
                    "lifetimes must be positive and `idle-ttl-seconds` <= `absolute-ttl-seconds`",
                ));
            }
        }
        if let Some(ac) = &self.authorization_code {
            if ac.code_ttl_seconds.is_some_and(|t| t == 0 || t > 60) {
                return Err(invalid(
                    "authorization-server.authorization-code.code-ttl-seconds",
                    "must be 1..=60 (RFC 9700: short-lived codes)",
                ));
            }
            if ac.session_ttl_seconds == Some(0) {
                return Err(invalid(
                    "authorization-server.authorization-code.session-ttl-seconds",
                    "must be at least 1",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.clients {
            validate_client(c)?;
            if !seen.insert(c.client_id.as_str()) {
                return Err(invalid(
                    "authorization-server.clients",
                    format!("client `{}` is listed twice", c.client_id),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for u in &self.users {
            if u.username.is_empty() {
                return Err(ConfigError::Missing("authorization-server.users.username"));
            }
            if let Some(h) = &u.password_hash {
                check_hash_prefix("authorization-server.users.password-hash", h.expose())?;
            }
            if !seen.insert(u.username.as_str()) {
                return Err(invalid(
                    "authorization-server.users",
                    format!("user `{}` is listed twice", u.username),
                ));
            }
        }
        Ok(())
    }
}

/// The issuer: absolute, https (http for loopback or when allowed), no query or fragment.
pub(crate) fn check_issuer(issuer: &str, allow_insecure_http: bool) -> Result<(), ConfigError> {
    const N: &str = "authorization-server.issuer";
    if issuer.is_empty() {
        return Err(ConfigError::Missing(N));
    }
    if issuer.contains(['?', '#']) {
        return Err(invalid(
            N,
            format!("`{issuer}` must not have a query or fragment (RFC 8414 §2)"),
        ));
    }
    if issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(N, format!("`{issuer}` contains white space")));
    }
    let uri = crate::http_client::parse_url(issuer, allow_insecure_http).map_err(|e| {
        invalid(
            N,
            format!("`{issuer}` is not an absolute https URL (http for loopback): {e}"),
        )
    })?;
    if uri.scheme().is_none() {
        return Err(invalid(N, format!("`{issuer}` is not an absolute URL")));
    }
    Ok(())
}

/// The hash must parse (Spring `{id}` format, a supported id); `{noop}` only with
/// `insecure-dev`.
fn check_hash_prefix(name: &'static str, hash: &str) -> Result<(), ConfigError> {
    if !hash.starts_with('{') || !hash.contains('}') {
        return Err(invalid(
            name,
            "expected Spring's `{id}hash` format ({bcrypt}, {argon2}, {sha256})",
        ));
    }
    crate::issuer::password::PasswordHash::parse(hash)
        .map(|_| ())
        .map_err(|e| invalid(name, strip_invalid_prefix(&e)))
}

fn validate_client(c: &ClientConfig) -> Result<(), ConfigError> {
    const N: &str = "authorization-server.clients";
    let id = &c.client_id;
    let err = |reason: String| invalid(N, format!("client `{id}`: {reason}"));
    if id.is_empty() {
        return Err(ConfigError::Missing(
            "authorization-server.clients.client-id",
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(err("`client-id` contains control characters".into()));
    }
    if c.grant_types.is_empty() {
        return Err(err("`grant-types` is empty".into()));
    }
    let has = |g| c.grant_types.contains(&g);
    match c.auth_method() {
        AuthMethod::None => {
            if c.client_secret.is_some()
                || c.client_secret_hash.is_some()
                || !c.client_secrets.is_empty()
            {
                return Err(err(
                    "a public client (`auth-method: none`) has no secret".into()
                ));
            }
            if !has(GrantType::AuthorizationCode) {
                return Err(err(
                    "a public client (`auth-method: none`) needs `authorization_code` (with PKCE)"
                        .into(),
                ));
            }
            for g in [GrantType::ClientCredentials, GrantType::Password] {
                if has(g) {
                    return Err(err(format!(
                        "a public client (`auth-method: none`) cannot use `{g}`"
                    )));
                }
            }
        }
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => {
            match (&c.client_secret, &c.client_secret_hash) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        "set either `client-secret` or `client-secret-hash`, not both".into(),
                    ));
                }
                (None, None) if c.client_secrets.is_empty() => {
                    return Err(err(format!(
                        "`{}` needs `client-secret`, `client-secret-hash` or `client-secrets`",
                        c.auth_method()
                    )));
                }
                (Some(s), None) if s.expose().is_empty() => {
                    return Err(err("`client-secret` is empty".into()));
                }
                (None, Some(h)) => check_hash_prefix(N, h.expose()).map_err(|e| {
                    err(format!(
                        "`client-secret-hash`: {}",
                        strip_invalid_prefix(&e)
                    ))
                })?,
                _ => {}
            }
        }
    }
    validate_client_secrets(c).map_err(err)?;
    if has(GrantType::AuthorizationCode) && c.redirect_uris.is_empty() {
        return Err(err("`authorization_code` needs `redirect-uris`".into()));
    }
    if c.auth_method() == AuthMethod::None && c.require_pkce == Some(false) {
        return Err(err(
            "a public client (`auth-method: none`) cannot turn off `require-pkce`".into(),
        ));
    }
    for r in &c.redirect_uris {
        if let Err(reason) = crate::issuer::authorize::check_redirect_uri(r) {
            return Err(err(format!("redirect URI `{r}`: {reason}")));
        }
    }
    for (i, g) in c.grant_types.iter().enumerate() {
        if c.grant_types[..i].contains(g) {
            return Err(err(format!("grant type `{g}` is listed twice")));
        }
    }
    for s in &c.scopes {
        if s.is_empty() || !s.chars().all(is_scope_char) {
            return Err(err(format!(
                "scope `{s}` is not a valid scope token (RFC 6749 §3.3)"
            )));
        }
    }
    if c.access_token_ttl_seconds == Some(0) {
        return Err(err("`access-token-ttl-seconds` must be at least 1".into()));
    }
    Ok(())
}

/// `client-secrets`: at most two secrets in all, each a `value` or a `hash`, `expires-at` RFC 3339.
fn validate_client_secrets(c: &ClientConfig) -> Result<(), String> {
    let primary = usize::from(c.client_secret.is_some() || c.client_secret_hash.is_some());
    if primary + c.client_secrets.len() > MAX_CLIENT_SECRETS {
        return Err(format!(
            "at most {MAX_CLIENT_SECRETS} secrets (`client-secret`/`client-secret-hash` and `client-secrets` together)"
        ));
    }
    for (i, e) in c.client_secrets.iter().enumerate() {
        match (&e.value, &e.hash) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(format!(
                    "`client-secrets[{i}]` needs exactly one of `value` and `hash`"
                ));
            }
            (Some(v), None) if v.expose().is_empty() => {
                return Err(format!("`client-secrets[{i}].value` is empty"));
            }
            (None, Some(h)) => check_hash_prefix("authorization-server.clients", h.expose())
                .map_err(|e| format!("`client-secrets[{i}].hash`: {}", strip_invalid_prefix(&e)))?,
            _ => {}
        }
        if let Some(at) = &e.expires_at {
            if parse_rfc3339(at).is_none() {
                return Err(format!(
                    "`client-secrets[{i}].expires-at` `{at}` is not an RFC 3339 date-time (e.g. 2030-01-31T00:00:00Z)"
                ));
            }
        }
    }
    Ok(())
}

fn strip_invalid_prefix(e: &ConfigError) -> String {
    match e {
        ConfigError::Invalid { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// RFC 6749 §3.3: `NQCHAR = %x21 / %x23-5B / %x5D-7E`.
pub(crate) fn is_scope_char(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecurityConfig;

    const FULL: &str = r#"
listen: 127.0.0.1:9000
security:
  authorization-server:
    issuer: http://127.0.0.1:9000
    paths:
      token: /oauth2/token
      jwks: /oauth2/jwks
      revoke: /oauth2/revoke
      introspect: /oauth2/introspect
    signing:
      algorithm: RS256
      key-dir: /var/lib/auth/keys
      rotate-after-days: 30
    access-token:
      ttl-seconds: 300
      typ: at+jwt
      audience: [eon-internal]
    refresh-token:
      idle-ttl-seconds: 2592000
      absolute-ttl-seconds: 7776000
    password-grant: { enabled: false }
    store: memory
    clients:
      - client-id: internal-service-client
        client-secret: ${INTERNAL_CLIENT_SECRET}
        auth-method: client_secret_basic
        grant-types: [client_credentials]
        scopes: [internal-service]
        audiences: [service-system]
        access-token-ttl-seconds: 300
        redirect-uris: []
        introspection: false
    users:
      - { username: alice, password-hash: "{bcrypt}$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", uid: "1001", tenant: acme, roles: [user], permissions: [orders.read] }
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "INTERNAL_CLIENT_SECRET" => Some("test-only-secret".into()),
            KEY_SECRET_VAR => Some("test-only-key-secret".into()),
            _ => None,
        }
    }

    fn parse(yaml: &str) -> Result<AuthorizationServerConfig, ConfigError> {
        Ok(SecurityConfig::from_yaml_with_env(yaml, env)?
            .authorization_server
            .expect("section"))
    }

    #[test]
    fn the_design_yaml_parses_with_every_key() {
        let aus = parse(FULL).unwrap();
        aus.validate_with(false, env).unwrap();
        assert_eq!(aus.issuer, "http://127.0.0.1:9000");
        assert_eq!(aus.signing.as_ref().unwrap().rotate_after_days, Some(30));
        assert_eq!(aus.store, Some(StoreKind::Memory));
        assert_eq!(aus.users[0].tenant.as_deref(), Some("acme"));
        let c = &aus.clients[0];
        assert_eq!(
            c.client_secret.as_ref().unwrap().expose(),
            "test-only-secret"
        );
        assert_eq!(c.introspection, Some(false));
        assert!(!format!("{aus:?}").contains("test-only-secret"));
        assert!(!format!("{aus:?}").contains("N9qo8uLOickgx2"));
    }

    #[test]
    fn unknown_keys_are_named_at_every_level() {
        for (from, to, key) in [
            ("    paths:\n", "    pathz: {}\n    paths:\n", "pathz"),
            ("      token: /oauth2/token\n", "      tokn: /t\n", "tokn"),
            ("      algorithm: RS256\n", "      algo: RS256\n", "algo"),
            ("      ttl-seconds: 300\n", "      ttl: 300\n", "ttl"),
            ("      idle-ttl-seconds", "      idle-ttl", "idle-ttl"),
            ("{ enabled: false }", "{ enable: false }", "enable"),
            (
                "        introspection: false\n",
                "        introspect: false\n",
                "introspect",
            ),
            ("uid: \"1001\"", "userid: \"1001\"", "userid"),
        ] {
            let yaml = FULL.replace(from, to);
            assert_ne!(yaml, FULL, "{from}");
            let err = parse(&yaml).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn unknown_enum_values_are_named() {
        for (from, to, needle) in [
            // The value itself is redacted (errors never repeat a scalar, which may be a
            // misplaced secret); the accepted values are named.
            ("[client_credentials]", "[implicit]", "`authorization_code`"),
            (
                "auth-method: client_secret_basic",
                "auth-method: private_key_jwt",
                "`client_secret_post`",
            ),
            ("store: memory", "store: etcd", "`redis`"),
        ] {
            let err = parse(&FULL.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn invalid_configurations_are_refused_with_a_reason() {
        for (from, to, needle) in [
            (
                "issuer: http://127.0.0.1:9000",
                "issuer: http://127.0.0.1:9000/?a=b",
                "query",
            ),
            (
                "issuer: http://127.0.0.1:9000",
                "issuer: http://127.0.0.1:9000/#f",
                "fragment",
            ),
            (
                "issuer: http://127.0.0.1:9000",
                "issuer: /relative",
                "absolute",
            ),
            (
                "issuer: http://127.0.0.1:9000",
                "issuer: http://auth.example",
                "absolute https",
            ),
            (
                "issuer: http://127.0.0.1:9000",
                "issuer: ftp://auth.example",
                "issuer",
            ),
            ("algorithm: RS256", "algorithm: HS256", "HS256"),
            (
                "rotate-after-days: 30",
                "rotate-after-days: 0",
                "rotate-after-days",
            ),
            (
                "      ttl-seconds: 300",
                "      ttl-seconds: 0",
                "ttl-seconds",
            ),
            ("typ: at+jwt", "typ: jwt+at", "jwt+at"),
            (
                "token: /oauth2/token",
                "token: oauth2/token",
                "absolute path",
            ),
            ("token: /oauth2/token", "token: /oauth2/jwks", "twice"),
            ("token: /oauth2/token", "token: /.well-known/x", "reserved"),
            (
                "idle-ttl-seconds: 2592000",
                "idle-ttl-seconds: 99999999",
                "idle-ttl-seconds",
            ),
            ("[client_credentials]", "[]", "grant-types"),
            (
                "[client_credentials]",
                "[client_credentials, client_credentials]",
                "twice",
            ),
            (
                "client-secret: ${INTERNAL_CLIENT_SECRET}",
                "client-secret-hash: \"{noop}secret\"",
                "noop",
            ),
            (
                "client-secret: ${INTERNAL_CLIENT_SECRET}",
                "client-secret-hash: \"plain\"",
                "{id}",
            ),
            (
                "        client-secret: ${INTERNAL_CLIENT_SECRET}\n",
                "",
                "client-secret-hash",
            ),
            (
                "client-secret: ${INTERNAL_CLIENT_SECRET}",
                "client-secret: ${INTERNAL_CLIENT_SECRET}\n        client-secret-hash: \"{bcrypt}x\"",
                "not both",
            ),
            (
                "auth-method: client_secret_basic",
                "auth-method: none",
                "no secret",
            ),
            ("scopes: [internal-service]", "scopes: [\"a b\"]", "scope"),
            (
                "access-token-ttl-seconds: 300",
                "access-token-ttl-seconds: 0",
                "access-token-ttl",
            ),
            (
                "[client_credentials]",
                "[authorization_code]",
                "redirect-uris",
            ),
            (
                "password-hash: \"{bcrypt}",
                "password-hash: \"{noop}",
                "noop",
            ),
        ] {
            if needle == "noop" && cfg!(feature = "insecure-dev") {
                // Allowed there: covered by `noop_only_with_insecure_dev`.
                continue;
            }
            let yaml = FULL.replace(from, to);
            assert_ne!(yaml, FULL, "{from}");
            let err = match parse(&yaml) {
                Err(e) => e,
                Ok(aus) => aus.validate_with(false, env).expect_err(to),
            }
            .to_string();
            assert!(err.contains(needle), "{to}: {err}");
        }
    }

    #[test]
    fn public_clients_need_pkce_and_no_secret_grant() {
        let base = "security:\n  authorization-server:\n    issuer: https://a.example\n    clients:\n      - { client-id: spa, auth-method: none, redirect-uris: [\"https://app/cb\"], grant-types: GRANTS }\n";
        for (grants, needle) in [
            ("[refresh_token]", "authorization_code"),
            (
                "[authorization_code, client_credentials]",
                "client_credentials",
            ),
            ("[authorization_code, password]", "password"),
        ] {
            let aus = parse(&base.replace("GRANTS", grants)).unwrap();
            let err = aus.validate_with(false, env).unwrap_err().to_string();
            assert!(err.contains(needle), "{grants}: {err}");
        }
        let ok = parse(&base.replace("GRANTS", "[authorization_code, refresh_token]")).unwrap();
        ok.validate_with(false, env).unwrap();
    }

    #[test]
    fn noop_only_with_insecure_dev() {
        let yaml = FULL.replace(
            "client-secret: ${INTERNAL_CLIENT_SECRET}",
            "client-secret-hash: \"{noop}secret\"",
        );
        let res = parse(&yaml).unwrap().validate_with(false, env);
        assert_eq!(res.is_ok(), cfg!(feature = "insecure-dev"), "{res:?}");
    }

    #[test]
    fn key_dir_needs_the_secret_variable() {
        let aus = parse(FULL).unwrap();
        let err = aus.validate_with(false, |_| None).unwrap_err().to_string();
        assert!(err.contains("ISSUER_KEY_SECRET"), "{err}");
    }

    #[test]
    fn insecure_http_issuer_only_when_allowed() {
        let aus = AuthorizationServerConfig::new("http://auth.internal");
        assert!(aus.validate_with(false, env).is_err());
        aus.validate_with(true, env).unwrap();
    }

    #[test]
    fn audience_normalisation() {
        let at = AccessTokenSection {
            audience: vec![" a ,b".into(), "a".into(), ",".into(), "c".into()],
            ..Default::default()
        };
        assert_eq!(at.audiences(), ["a", "b", "c"]);
    }

    #[test]
    fn variables_with_defaults_expand() {
        let yaml = "security:\n  authorization-server:\n    issuer: \"${ISSUER:-http://127.0.0.1:9000}\"\n    access-token: { ttl-seconds: \"${TTL:-60}\" }\n";
        let aus = SecurityConfig::from_yaml_with_env(yaml, |_| None)
            .unwrap()
            .authorization_server
            .unwrap();
        assert_eq!(aus.issuer, "http://127.0.0.1:9000");
        assert_eq!(aus.access_token_ttl(), Duration::from_secs(60));
    }
}
