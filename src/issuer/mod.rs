//! The authorization server (feature `issuer`): the `service-auth` side of the system, as a
//! library.
//!
//! [`AuthorizationServer`] is built from `security.authorization-server`
//! ([`AuthorizationServer::from_config`]) or in Rust ([`AuthorizationServer::builder`]) and
//! serves an axum [`Router`](axum::Router) ([`AuthorizationServer::router`]):
//!
//! | path (default) | what |
//! |---|---|
//! | `POST /oauth2/token` | token endpoint (RFC 6749 §3.2): `client_credentials`, [`authorization_code`](grants::authorization_code), [`password`](grants::password) (opt-in), [`refresh_token`](grants::refresh) (rotation, reuse detection); client authentication `client_secret_basic` / `client_secret_post` |
//! | `GET /oauth2/authorize` | authorization endpoint (RFC 6749 §4.1, PKCE S256): login and consent pages, codes for the [`authorization_code`](grants::authorization_code) grant ([`authorize`]); served when a client lists `authorization_code` |
//! | `POST /oauth2/revoke` | revocation (RFC 7009): refresh-token families, access-token `jti`s ([`endpoints`]) |
//! | `POST /oauth2/introspect` | introspection (RFC 7662), clients with `introspection: true` ([`endpoints`]) |
//! | `GET /oauth2/jwks` | the public signing keys (RFC 7517), `Cache-Control: max-age` |
//! | `GET /.well-known/oauth-authorization-server` | metadata (RFC 8414) |
//! | `GET /.well-known/openid-configuration` | the same document, for Spring `issuer-uri` users (no `openid` scope) |
//! | `POST /auth/refresh-token` | seed 004's simplified refresh endpoint, when `refresh-endpoint.enabled` ([`refresh_endpoint`]) |
//!
//! The management API (grant families, revocation by user or client, cleanup, stats) is a router
//! of its own, [`AuthorizationServer::management_router`] ([`manage`]); every security-relevant
//! action is an [`audit`] event.
//!
//! Sub-modules by capability: [`keys`] (signing keys, states, rotation), [`clients`] (registry and
//! client authentication), [`grants`] (one file per grant), [`tokens`] (minting, claims
//! customizer), [`endpoints`] (HTTP), [`limiter`] (failed-attempt limits), [`user_grants`]
//! (user store, grant store, policy versions: the builder methods for user grants), [`users`]
//! (`UserStore`), [`password`] (password and client-secret hashes), [`store`] (grant store: memory,
//! Redis), [`config`] (`security.authorization-server`), [`manage`] (management API),
//! [`refresh_endpoint`] (seed 004's refresh endpoint), [`audit`] (audit events and counters).
//!
//! # Example
//!
//! ```
//! use tower::ServiceExt;
//! use tower_bearer::config::SecurityConfig;
//! use tower_bearer::issuer::AuthorizationServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cfg = SecurityConfig::from_yaml(r#"
//! security:
//!   authorization-server:
//!     issuer: https://auth.example
//!     signing: { algorithm: ES256 }
//!     clients:
//!       - { client-id: orders, client-secret: test-only-secret, grant-types: [client_credentials], scopes: [orders.read] }
//! "#).unwrap();
//! let server = AuthorizationServer::from_security_config(&cfg).await.unwrap();
//! let app = server.router();
//! let res = app
//!     .oneshot(http::Request::get("/.well-known/oauth-authorization-server").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 200);
//! let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
//! let meta: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(meta["issuer"], "https://auth.example");
//! assert_eq!(meta["token_endpoint"], "https://auth.example/oauth2/token");
//! assert_eq!(meta["scopes_supported"], serde_json::json!(["orders.read"]));
//! # }
//! ```

pub mod audit;
pub mod authorize;
pub mod clients;
pub mod config;
pub mod endpoints;
pub mod grants;
pub mod keys;
pub mod limiter;
pub mod manage;
pub mod password;
pub mod refresh_endpoint;
pub mod store;
pub mod tokens;
pub mod user_grants;
pub mod users;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Secret, SecurityConfig};
use crate::error::ConfigError;
use crate::jwks::Algorithm;
use crate::signing::SigningKey;

use self::clients::{ClientRegistry, MemoryClientRegistry, RegisteredClient, VerifiedSecrets};
use self::config::{AuthorizationServerConfig, ClientConfig, GrantType, KEY_SECRET_VAR, StoreKind};
use self::grants::{Grant, TokenError};
use self::keys::{KeyManager, KeyOptions};
use self::limiter::{Limiter, LimiterConfig};
use self::password::PasswordHasher;
use self::tokens::{Draft, Minted, TokenCustomizer};

/// The default largest token-request body (16 KiB).
///
/// # Example
///
/// ```
/// assert_eq!(tower_bearer::issuer::DEFAULT_MAX_BODY_LEN, 16 * 1024);
/// ```
pub const DEFAULT_MAX_BODY_LEN: usize = 16 * 1024;

/// The default internal scope (as `resource-server.internal-only.scope`).
const DEFAULT_INTERNAL_SCOPE: &str = "internal-service";

/// What was issued, for logs and audit: never the token or a secret.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::{AuthorizationServer, IssuedToken};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let server = AuthorizationServer::builder("https://auth.example")
///     .on_issued(|t: &IssuedToken| println!("issued {} to {}", t.jti, t.client_id))
///     .build()
///     .await
///     .unwrap();
/// # let _ = server;
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The client.
    pub client_id: String,
    /// The grant.
    pub grant: GrantType,
    /// The subject.
    pub subject: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The `aud` values.
    pub audiences: Vec<String>,
    /// The token id.
    pub jti: String,
    /// Expiry (Unix seconds).
    pub exp: u64,
}

type OnIssued = Arc<dyn Fn(&IssuedToken) + Send + Sync>;

/// State shared by every endpoint.
pub(crate) struct Shared {
    /// This server among the process's (a decision cached in a client, see
    /// [`grants::client_credentials`], is only reused by the server that made it).
    pub(crate) id: u64,
    pub(crate) issuer: String,
    pub(crate) typ: String,
    pub(crate) ttl: Duration,
    pub(crate) default_audience: Vec<String>,
    pub(crate) keys: KeyManager,
    pub(crate) clients: Arc<dyn ClientRegistry>,
    pub(crate) customizer: Option<Arc<dyn TokenCustomizer>>,
    pub(crate) clock: SharedClock,
    pub(crate) hasher: PasswordHasher,
    pub(crate) verified: VerifiedSecrets,
    pub(crate) client_limiter: Limiter,
    pub(crate) address_limiter: Limiter,
    pub(crate) grants: Vec<Arc<dyn Grant>>,
    pub(crate) internal_scopes: Vec<String>,
    pub(crate) token_path: String,
    pub(crate) jwks_path: String,
    pub(crate) max_body_len: usize,
    pub(crate) user_grants: user_grants::UserGrants,
    pub(crate) authorize: Option<authorize::AuthorizeState>,
    pub(crate) audit: audit::AuditCounters,
    pub(crate) refresh_endpoint: refresh_endpoint::RefreshEndpointOptions,
    pub(crate) management: manage::ManagementOptions,
    on_issued: Option<OnIssued>,
}

/// A token could not be minted: logged, `server_error`.
#[cold]
#[inline(never)]
fn not_issued(client: &RegisteredClient, e: &tokens::MintError) -> TokenError {
    tracing::error!(target: "tower_bearer::issuer", client_id = client.client_id(), error = %e, "token not issued");
    TokenError::server_error()
}

impl Shared {
    /// Signs an access token with the active key and reports it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn mint(
        &self,
        client: &RegisteredClient,
        grant: GrantType,
        subject: &str,
        scopes: &[String],
        audiences: &[String],
        ttl: Duration,
        gty: Option<&'static str>,
        grant_claims: Map<String, Value>,
    ) -> Result<Minted, TokenError> {
        let key = self.keys.signing_key();
        let draft = Draft {
            issuer: &self.issuer,
            typ: &self.typ,
            now: self.clock.now_unix(),
            ttl: ttl.as_secs(),
            client,
            grant,
            subject,
            scopes,
            audiences,
            gty,
            grant_claims,
        };
        let minted = tokens::mint(draft, &key, self.customizer.as_deref())
            .await
            .map_err(|e| not_issued(client, &e))?;
        self.issued(client, grant, subject, scopes, audiences, &minted);
        Ok(minted)
    }

    /// Signs the access token of a decision whose fixed claims are `fixed` (built for this
    /// server, with no customizer) with the active key and reports it: [`Shared::mint`]'s
    /// token, its fixed claims written and encoded once; `now`: its `iat` (Unix seconds, from
    /// this server's clock).
    pub(crate) fn mint_fixed(
        &self,
        client: &RegisteredClient,
        grant: GrantType,
        decision: &tokens::Decision,
        ttl: Duration,
        now: u64,
    ) -> Result<Minted, TokenError> {
        let key = self.keys.signing_key();
        let minted = tokens::mint_fixed(&decision.fixed, now, ttl.as_secs(), &key, &self.typ)
            .map_err(|e| not_issued(client, &e))?;
        self.issued(
            client,
            grant,
            client.client_id(),
            &decision.scopes,
            &decision.audiences,
            &minted,
        );
        Ok(minted)
    }

    /// Audits an issued token and hands it to the `on_issued` callback.
    fn issued(
        &self,
        client: &RegisteredClient,
        grant: GrantType,
        subject: &str,
        scopes: &[String],
        audiences: &[String],
        minted: &Minted,
    ) {
        // `audit!` with the counters' lock-free `token_issued` count.
        let kind = grant.as_str();
        tracing::info!(target: audit::TARGET, event = audit::ISSUED, kind,
            client_id = client.client_id(),
            sub = subject,
            scope = %scopes.join(" "),
            aud = %audiences.join(","),
            jti = %minted.jti,
            "access token issued"
        );
        audit::record_issued(&self.audit, grant);
        if let Some(cb) = &self.on_issued {
            cb(&IssuedToken {
                client_id: client.client_id().to_owned(),
                grant,
                subject: subject.to_owned(),
                scopes: scopes.to_vec(),
                audiences: audiences.to_vec(),
                jti: minted.jti.to_string(),
                exp: minted.exp,
            });
        }
    }

    pub(crate) fn grant(&self, g: GrantType) -> Option<&Arc<dyn Grant>> {
        self.grants.iter().find(|h| h.grant_type() == g)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer.trim_end_matches('/'))
    }

    /// The RFC 8414 metadata document.
    pub(crate) fn metadata(&self) -> Value {
        let scopes: Vec<String> = self
            .clients
            .known_scopes()
            .into_iter()
            .filter(|s| !self.internal_scopes.contains(s) && s != "openid")
            .collect();
        let grants: Vec<&str> = self
            .grants
            .iter()
            .map(|g| g.grant_type().as_str())
            .collect();
        let mut meta = serde_json::json!({
            "issuer": self.issuer,
            "token_endpoint": self.endpoint(&self.token_path),
            "jwks_uri": self.endpoint(&self.jwks_path),
            "revocation_endpoint": self.endpoint(&self.user_grants.revoke_path),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint": self.endpoint(&self.user_grants.introspect_path),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": grants,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": scopes,
            "response_types_supported": [],
        });
        authorize::metadata(self, &mut meta);
        meta
    }
}

/// The authorization server: builds the axum [`Router`](axum::Router) of its endpoints. Cheap
/// to clone. See the [module docs](crate::issuer) for an example.
#[derive(Clone)]
pub struct AuthorizationServer {
    shared: Arc<Shared>,
}

impl fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("AuthorizationServer")
            .field("issuer", &s.issuer)
            .field("typ", &s.typ)
            .field("ttl", &s.ttl)
            .field("default_audience", &s.default_audience)
            .field("keys", &s.keys)
            .field("clients", &s.clients)
            .field("customizer", &s.customizer.is_some())
            .field("internal_scopes", &s.internal_scopes)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// A builder for `issuer` (the exact `iss` and metadata `issuer`).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let server = AuthorizationServer::builder("https://auth.example")
    ///     .access_token_ttl(Duration::from_secs(120))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(server.issuer(), "https://auth.example");
    /// # }
    /// ```
    pub fn builder(issuer: impl Into<String>) -> AuthorizationServerBuilder {
        AuthorizationServerBuilder::new(issuer.into())
    }

    /// The server of `security.authorization-server`, with `http://` issuers allowed for
    /// loopback only and no internal scope but `internal-service`; see
    /// [`AuthorizationServer::from_security_config`] to take them from the rest of `security`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cfg = AuthorizationServerConfig::new("http://127.0.0.1:9000");
    /// let server = AuthorizationServer::from_config(&cfg).await.unwrap();
    /// assert_eq!(server.issuer(), "http://127.0.0.1:9000");
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] as [`AuthorizationServerConfig::validate`], or when keys cannot be
    /// opened.
    pub async fn from_config(cfg: &AuthorizationServerConfig) -> Result<Self, ConfigError> {
        AuthorizationServerBuilder::from_config(cfg)?.build().await
    }

    /// The server of `security.authorization-server`, also reading
    /// `http-client.allow-insecure-http` (for an `http://` issuer beyond loopback),
    /// `resource-server.internal-only.scope` (the internal scope left out of
    /// `scopes_supported`; `internal-service` by default) and `redis` (required by
    /// `store: redis`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cfg = SecurityConfig::from_yaml("security:\n  authorization-server: { issuer: http://127.0.0.1:9000, store: redis }\n").unwrap();
    /// let err = AuthorizationServer::from_security_config(&cfg).await.unwrap_err();
    /// assert!(err.to_string().contains("security.redis"), "{err}");
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Missing`] without `authorization-server`, else as
    /// [`AuthorizationServer::from_config`].
    pub async fn from_security_config(cfg: &SecurityConfig) -> Result<Self, ConfigError> {
        let aus = cfg
            .authorization_server
            .as_ref()
            .ok_or(ConfigError::Missing("security.authorization-server"))?;
        if aus.store == Some(StoreKind::Redis) && cfg.redis.is_none() {
            return Err(ConfigError::Missing(
                "security.redis (for authorization-server.store: redis)",
            ));
        }
        let allow_insecure = cfg
            .http_client
            .as_ref()
            .and_then(|h| h.allow_insecure_http)
            .unwrap_or(false);
        let mut b = AuthorizationServerBuilder::from_config_with(aus, allow_insecure)?;
        b.user_grants.redis = cfg.redis.clone();
        if let Some(scope) = cfg
            .resource_server
            .as_ref()
            .and_then(|r| r.internal_only.as_ref())
            .and_then(|i| i.scope.clone())
        {
            b = b.internal_scopes([scope]);
        }
        b.build().await
    }

    /// The `issuer`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").build().await.unwrap();
    /// assert_eq!(s.issuer(), "https://a.example");
    /// # }
    /// ```
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The signing keys.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").build().await.unwrap();
    /// assert!(s.keys().jwks_json().contains(s.keys().signing_key().kid()));
    /// # }
    /// ```
    pub fn keys(&self) -> &KeyManager {
        &self.shared.keys
    }

    /// Starts a key rotation now: a new key is published, signs after the publish lead, and the
    /// current one stays published until its tokens have expired.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").build().await.unwrap();
    /// s.rotate_keys().await.unwrap();
    /// assert_eq!(s.keys().states().len(), 2);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the new key cannot be made or persisted.
    pub async fn rotate_keys(&self) -> Result<(), ConfigError> {
        self.shared.keys.rotate().await
    }

    /// Drives key rotation in the background (see
    /// [`KeyManager::spawn_rotation`]); the task ends when the server is dropped.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").build().await.unwrap();
    /// let task = s.spawn_key_rotation();
    /// task.abort();
    /// # }
    /// ```
    pub fn spawn_key_rotation(&self) -> tokio::task::JoinHandle<()> {
        self.shared.keys.spawn_rotation()
    }

    /// The RFC 8414 metadata document.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").build().await.unwrap();
    /// assert_eq!(s.metadata()["jwks_uri"], "https://a.example/oauth2/jwks");
    /// # }
    /// ```
    pub fn metadata(&self) -> Value {
        self.shared.metadata()
    }

    /// The axum router of the endpoints (token, JWKS, metadata). Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so failed client authentications
    /// are also limited per source address.
    ///
    /// # Example
    ///
    /// ```
    /// use tower::ServiceExt;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").build().await.unwrap();
    /// let res = s.router()
    ///     .oneshot(http::Request::get("/oauth2/jwks").body(axum::body::Body::empty()).unwrap())
    ///     .await
    ///     .unwrap();
    /// assert_eq!(res.status(), 200);
    /// assert!(res.headers()["cache-control"].to_str().unwrap().contains("max-age="));
    /// # }
    /// ```
    pub fn router(&self) -> axum::Router {
        endpoints::router(self.shared.clone())
    }
}

/// Builds an [`AuthorizationServer`]. See [`AuthorizationServer::builder`].
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::clock::ManualClock;
/// use tower_bearer::issuer::AuthorizationServer;
/// use tower_bearer::jwks::Algorithm;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let server = AuthorizationServer::builder("https://auth.example")
///     .algorithm(Algorithm::EdDSA)
///     .audience(["eon-internal"])
///     .clock(Arc::new(ManualClock::new(1_700_000_000)))
///     .build()
///     .await
///     .unwrap();
/// assert_eq!(server.keys().signing_key().algorithm(), Algorithm::EdDSA);
/// # }
/// ```
#[must_use]
pub struct AuthorizationServerBuilder {
    issuer: String,
    allow_insecure_http: bool,
    registry: Option<Arc<dyn ClientRegistry>>,
    memory: Vec<RegisteredClient>,
    client_configs: Vec<ClientConfig>,
    keys: Option<KeyManager>,
    key_options: KeyOptions,
    signing_key: Option<SigningKey>,
    customizer: Option<Arc<dyn TokenCustomizer>>,
    clock: SharedClock,
    ttl: Duration,
    typ: String,
    audience: Vec<String>,
    internal_scopes: Vec<String>,
    token_path: String,
    jwks_path: String,
    on_issued: Option<OnIssued>,
    hasher: Option<PasswordHasher>,
    client_limits: LimiterConfig,
    address_limits: LimiterConfig,
    verified_secret_ttl: Duration,
    max_body_len: usize,
    user_grants: user_grants::UserGrantsBuilder,
    authorize: authorize::AuthorizationCodeSettings,
    refresh_endpoint: refresh_endpoint::RefreshEndpointOptions,
    management: manage::ManagementOptions,
}

impl fmt::Debug for AuthorizationServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServerBuilder")
            .field("issuer", &self.issuer)
            .field("key_options", &self.key_options)
            .field("ttl", &self.ttl)
            .field("typ", &self.typ)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServerBuilder {
    fn new(issuer: String) -> Self {
        Self {
            issuer,
            allow_insecure_http: false,
            registry: None,
            memory: Vec::new(),
            client_configs: Vec::new(),
            keys: None,
            key_options: KeyOptions::default(),
            signing_key: None,
            customizer: None,
            clock: Arc::new(SystemClock),
            ttl: config::DEFAULT_ACCESS_TOKEN_TTL,
            typ: "at+jwt".into(),
            audience: Vec::new(),
            internal_scopes: vec![DEFAULT_INTERNAL_SCOPE.to_owned()],
            token_path: "/oauth2/token".into(),
            jwks_path: "/oauth2/jwks".into(),
            on_issued: None,
            hasher: None,
            client_limits: LimiterConfig::default(),
            address_limits: LimiterConfig::per_address(),
            verified_secret_ttl: Duration::from_secs(300),
            max_body_len: DEFAULT_MAX_BODY_LEN,
            user_grants: user_grants::UserGrantsBuilder::default(),
            authorize: authorize::AuthorizationCodeSettings::new(),
            refresh_endpoint: refresh_endpoint::RefreshEndpointOptions::default(),
            management: manage::ManagementOptions::default(),
        }
    }

    /// A builder holding what `cfg` says (validated now; client secrets are hashed at
    /// [`build`](Self::build)). `ISSUER_KEY_SECRET` is read from the environment.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::config::AuthorizationServerConfig;
    /// use tower_bearer::issuer::AuthorizationServerBuilder;
    ///
    /// let b = AuthorizationServerBuilder::from_config(&AuthorizationServerConfig::new("https://a.example"));
    /// assert!(b.is_ok());
    /// let bad = AuthorizationServerBuilder::from_config(&AuthorizationServerConfig::new("https://a.example#x"));
    /// assert!(bad.is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`AuthorizationServerConfig::validate`].
    pub fn from_config(cfg: &AuthorizationServerConfig) -> Result<Self, ConfigError> {
        Self::from_config_with(cfg, false)
    }

    fn from_config_with(
        cfg: &AuthorizationServerConfig,
        allow_insecure_http: bool,
    ) -> Result<Self, ConfigError> {
        cfg.validate_with(allow_insecure_http, |n| std::env::var(n).ok())?;
        let mut b = Self::new(cfg.issuer.clone());
        b.allow_insecure_http = allow_insecure_http;
        b.ttl = cfg.access_token_ttl();
        cfg.access_token_typ().clone_into(&mut b.typ);
        b.audience = cfg
            .access_token
            .as_ref()
            .map(config::AccessTokenSection::audiences)
            .unwrap_or_default();
        cfg.token_path().clone_into(&mut b.token_path);
        cfg.jwks_path().clone_into(&mut b.jwks_path);
        b.client_configs = cfg.clients.clone();
        if let Some(s) = &cfg.signing {
            b.key_options = b.key_options.with_algorithm(s.algorithm()?);
            if let Some(dir) = &s.key_dir {
                let secret = std::env::var(KEY_SECRET_VAR)
                    .map_err(|_| ConfigError::Missing("ISSUER_KEY_SECRET (for signing.key-dir)"))?;
                b.key_options = b.key_options.with_key_dir(dir, Secret::new(secret));
            }
            if let Some(days) = s.rotate_after_days {
                b.key_options = b
                    .key_options
                    .with_rotate_after(Duration::from_secs(days.saturating_mul(86_400)));
            }
        }
        b.user_grants = user_grants::UserGrantsBuilder::from_config(cfg);
        b.authorize = authorize::AuthorizationCodeSettings::from_config(cfg);
        b.refresh_endpoint = refresh_endpoint::RefreshEndpointOptions::from_config(cfg);
        b.management = manage::ManagementOptions::from_config(cfg);
        Ok(b)
    }

    /// Allows an `http://` issuer beyond loopback (behind a TLS-terminating proxy).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(AuthorizationServer::builder("http://auth.internal").build().await.is_err());
    /// let s = AuthorizationServer::builder("http://auth.internal").allow_insecure_http(true).build().await;
    /// assert!(s.is_ok());
    /// # }
    /// ```
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Uses `registry` for clients (instead of the in-memory one).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::issuer::clients::MemoryClientRegistry;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = Arc::new(MemoryClientRegistry::new());
    /// let s = AuthorizationServer::builder("https://a.example").clients(registry.clone()).build().await;
    /// assert!(s.is_ok());
    /// # }
    /// ```
    pub fn clients(mut self, registry: Arc<dyn ClientRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Adds a client to the in-memory registry (ignored when [`clients`](Self::clients) is set).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::{AuthMethod, GrantType};
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example")
    ///     .client(RegisteredClient::new("a", AuthMethod::ClientSecretBasic).with_scopes(["x"]))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(s.metadata()["scopes_supported"][0], "x");
    /// # }
    /// ```
    pub fn client(mut self, client: RegisteredClient) -> Self {
        self.memory.push(client);
        self
    }

    /// Uses these keys (shared with another server, or imported).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::{KeyManager, KeyOptions};
    /// use tower_bearer::issuer::AuthorizationServer;
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let key = SigningKey::generate(Algorithm::ES256).unwrap();
    /// let kid = key.kid().to_owned();
    /// let keys = KeyManager::from_keys(key, KeyOptions::default());
    /// let s = AuthorizationServer::builder("https://a.example").keys(keys).build().await.unwrap();
    /// assert_eq!(s.keys().signing_key().kid(), kid);
    /// # }
    /// ```
    pub fn keys(mut self, keys: KeyManager) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Options for the keys opened at build (ignored when [`keys`](Self::keys) is set); the
    /// builder's clock is applied to them.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::keys::KeyOptions;
    /// use tower_bearer::issuer::AuthorizationServer;
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example")
    ///     .key_options(KeyOptions::default().with_algorithm(Algorithm::PS256))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(s.keys().signing_key().algorithm(), Algorithm::PS256);
    /// # }
    /// ```
    pub fn key_options(mut self, opts: KeyOptions) -> Self {
        self.key_options = opts;
        self
    }

    /// Shorthand for the algorithm of generated keys.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    /// use tower_bearer::jwks::Algorithm;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").algorithm(Algorithm::ES256).build().await.unwrap();
    /// assert_eq!(s.keys().signing_key().algorithm(), Algorithm::ES256);
    /// # }
    /// ```
    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        self.key_options = self.key_options.with_algorithm(alg);
        self
    }

    /// Signs with this key (kept; e.g. imported from a Spring Authorization Server so its `kid`
    /// stays).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    /// use tower_bearer::jwks::Algorithm;
    /// use tower_bearer::signing::SigningKey;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// let kid = key.kid().to_owned();
    /// let s = AuthorizationServer::builder("https://a.example").signing_key(key).build().await.unwrap();
    /// assert_eq!(s.keys().signing_key().kid(), kid);
    /// # }
    /// ```
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// Adds claims to every token.
    ///
    /// # Example
    ///
    /// ```
    /// use serde_json::{Map, Value};
    /// use tower_bearer::http_client::BoxFuture;
    /// use tower_bearer::issuer::tokens::{CustomizerError, TokenContext, TokenCustomizer};
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// struct Region;
    /// impl TokenCustomizer for Region {
    ///     fn customize<'a>(&'a self, _: &'a TokenContext<'a>, extra: &'a mut Map<String, Value>)
    ///         -> BoxFuture<'a, Result<(), CustomizerError>> {
    ///         extra.insert("region".into(), "eu".into());
    ///         Box::pin(async { Ok(()) })
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").customizer(Region).build().await;
    /// assert!(s.is_ok());
    /// # }
    /// ```
    pub fn customizer(mut self, c: impl TokenCustomizer) -> Self {
        self.customizer = Some(Arc::new(c));
        self
    }

    /// The clock (for `iat`/`exp`, key rotation and limits).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::clock::ManualClock;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example")
    ///     .clock(Arc::new(ManualClock::new(1_700_000_000)))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(s.keys().states()[0].published_at, 1_700_000_000);
    /// # }
    /// ```
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The access-token lifetime (default 5 minutes; clients may override).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").access_token_ttl(Duration::from_secs(60));
    /// # let _ = b;
    /// ```
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The JOSE `typ` of access tokens (`at+jwt` by default, or `JWT`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(AuthorizationServer::builder("https://a.example").typ("JWT").build().await.is_ok());
    /// assert!(AuthorizationServer::builder("https://a.example").typ("jose").build().await.is_err());
    /// # }
    /// ```
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = typ.into();
        self
    }

    /// The default audience (normalised: trimmed, comma-split, de-duplicated, empty dropped).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").audience(["eon-internal"]);
    /// # let _ = b;
    /// ```
    pub fn audience<I: Into<String>>(mut self, aud: impl IntoIterator<Item = I>) -> Self {
        let raw: Vec<String> = aud.into_iter().map(Into::into).collect();
        self.audience = config::normalise_list(&raw);
        self
    }

    /// Scopes left out of the metadata's `scopes_supported` (default `internal-service`, the
    /// default `resource-server.internal-only.scope`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example")
    ///     .client(RegisteredClient::new("a", AuthMethod::ClientSecretBasic).with_scopes(["ops", "read"]))
    ///     .internal_scopes(["ops"])
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(s.metadata()["scopes_supported"], serde_json::json!(["read"]));
    /// # }
    /// ```
    pub fn internal_scopes<I: Into<String>>(mut self, s: impl IntoIterator<Item = I>) -> Self {
        self.internal_scopes = s.into_iter().map(Into::into).collect();
        self
    }

    /// The token endpoint path (default `/oauth2/token`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").token_path("/token").build().await.unwrap();
    /// assert_eq!(s.metadata()["token_endpoint"], "https://a.example/token");
    /// # }
    /// ```
    pub fn token_path(mut self, path: impl Into<String>) -> Self {
        self.token_path = path.into();
        self
    }

    /// The JWKS path (default `/oauth2/jwks`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").jwks_path("/keys").build().await.unwrap();
    /// assert_eq!(s.metadata()["jwks_uri"], "https://a.example/keys");
    /// # }
    /// ```
    pub fn jwks_path(mut self, path: impl Into<String>) -> Self {
        self.jwks_path = path.into();
        self
    }

    /// Called once per issued token (client, scopes, audience, `jti`; never the token).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").on_issued(|t| eprintln!("{}", t.jti));
    /// # let _ = b;
    /// ```
    pub fn on_issued(mut self, f: impl Fn(&IssuedToken) + Send + Sync + 'static) -> Self {
        self.on_issued = Some(Arc::new(f));
        self
    }

    /// The hasher for client secrets (default: as many concurrent checks as CPUs).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordHasher;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").hasher(PasswordHasher::new(2));
    /// # let _ = b;
    /// ```
    pub fn hasher(mut self, hasher: PasswordHasher) -> Self {
        self.hasher = Some(hasher);
        self
    }

    /// Limits of failed client authentications per client id.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example")
    ///     .client_limits(LimiterConfig::default().with_free_failures(3));
    /// # let _ = b;
    /// ```
    pub fn client_limits(mut self, cfg: LimiterConfig) -> Self {
        self.client_limits = cfg;
        self
    }

    /// Limits of failed client authentications per source address.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example")
    ///     .address_limits(LimiterConfig::per_address().with_lock_after(500));
    /// # let _ = b;
    /// ```
    pub fn address_limits(mut self, cfg: LimiterConfig) -> Self {
        self.address_limits = cfg;
        self
    }

    /// How long a successful secret check is remembered (default 5 minutes; zero turns it
    /// off): repeated token requests of one client then skip the argon2/bcrypt check. Only
    /// successes are remembered, keyed by an HMAC (per-process random key) of the client id,
    /// the presented secret and the stored hash, so a wrong or changed secret is always checked.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").verified_secret_ttl(Duration::ZERO);
    /// # let _ = b;
    /// ```
    pub fn verified_secret_ttl(mut self, ttl: Duration) -> Self {
        self.verified_secret_ttl = ttl;
        self
    }

    /// The largest token-request body (default [`DEFAULT_MAX_BODY_LEN`]).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").max_body_len(4096);
    /// # let _ = b;
    /// ```
    pub fn max_body_len(mut self, len: usize) -> Self {
        self.max_body_len = len;
        self
    }

    /// The authorization endpoint, login and consent pages (`authorization_code` grant). By
    /// default served when a client lists `authorization_code`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example")
    ///     .authorization_code(AuthorizationCodeSettings::new().enabled(true))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(s.metadata()["response_types_supported"], serde_json::json!(["code"]));
    /// # }
    /// ```
    pub fn authorization_code(mut self, settings: authorize::AuthorizationCodeSettings) -> Self {
        self.authorize = settings;
        self
    }

    /// Builds the server: checks the settings, hashes configured client secrets, opens (or
    /// generates) the keys.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(AuthorizationServer::builder("not a url").build().await.is_err());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the bad setting, or when keys cannot be opened.
    pub async fn build(self) -> Result<AuthorizationServer, ConfigError> {
        config::check_issuer(&self.issuer, self.allow_insecure_http)?;
        if !matches!(self.typ.as_str(), "at+jwt" | "JWT") {
            return Err(ConfigError::Invalid {
                name: "authorization-server.access-token.typ",
                reason: format!("`{}` is not `at+jwt` or `JWT`", self.typ),
            });
        }
        if self.ttl.is_zero() {
            return Err(ConfigError::Invalid {
                name: "authorization-server.access-token.ttl-seconds",
                reason: "must be at least 1".into(),
            });
        }
        let check = AuthorizationServerConfig {
            paths: Some(config::PathsSection {
                token: Some(self.token_path.clone()),
                jwks: Some(self.jwks_path.clone()),
                revoke: Some(self.user_grants.revoke_path.clone()),
                introspect: Some(self.user_grants.introspect_path.clone()),
                authorize: Some(self.authorize.path().to_owned()),
            }),
            refresh_endpoint: Some(config::RefreshEndpointSection {
                path: Some(self.refresh_endpoint.path.clone()),
                ..Default::default()
            }),
            ..AuthorizationServerConfig::new(self.issuer.clone())
        };
        check.validate_with(self.allow_insecure_http, |_| None)?;

        let code_clients = self
            .client_configs
            .iter()
            .any(|c| c.grant_types.contains(&GrantType::AuthorizationCode))
            || self
                .memory
                .iter()
                .any(|c| c.allows(GrantType::AuthorizationCode));
        authorize::check_clients(&self.memory)?;
        let custom_hasher = self.hasher.is_some();
        let mut hasher = self.hasher.unwrap_or_else(|| {
            PasswordHasher::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
        });
        let registry: Arc<dyn ClientRegistry> = match self.registry {
            Some(r) => r,
            None => {
                let r = MemoryClientRegistry::from_config(&self.client_configs, &hasher).await?;
                for c in self.memory {
                    r.insert(c);
                }
                if let Some(typical) = r.typical_hash().filter(|_| !custom_hasher) {
                    // Unknown clients are checked against a dummy of the same scheme and cost.
                    hasher = hasher.with_dummy_like(&typical);
                }
                Arc::new(r)
            }
        };
        let longest_ttl = self.ttl.max(
            self.client_configs
                .iter()
                .filter_map(|c| c.access_token_ttl_seconds)
                .map(Duration::from_secs)
                .max()
                .unwrap_or_default(),
        );
        let keys = match (self.keys, self.signing_key) {
            (Some(k), _) => k,
            (None, key) => {
                let mut opts = self.key_options.with_clock(self.clock.clone());
                let grace = longest_ttl + Duration::from_secs(60);
                if opts.retire_grace < grace {
                    opts = opts.with_retire_grace(grace);
                }
                match key {
                    Some(key) => KeyManager::from_keys(key, opts),
                    None => KeyManager::open(opts).await?,
                }
            }
        };
        let verified = VerifiedSecrets::new(self.verified_secret_ttl, 10_000)?;
        let mut management = self.management;
        management.allow_insecure_http = self.allow_insecure_http;
        let mut grants: Vec<Arc<dyn Grant>> =
            vec![Arc::new(grants::client_credentials::ClientCredentialsGrant)];
        let user_grants = self.user_grants.build(&self.clock, &mut grants).await?;
        let authorize = self
            .authorize
            .build(&self.issuer, code_clients, &mut grants)?;
        static SERVERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let shared = Shared {
            id: SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            issuer: self.issuer,
            typ: self.typ,
            ttl: self.ttl,
            default_audience: self.audience,
            keys,
            clients: registry,
            customizer: self.customizer,
            client_limiter: Limiter::new(self.client_limits, self.clock.clone()),
            address_limiter: Limiter::new(self.address_limits, self.clock.clone()),
            clock: self.clock,
            hasher,
            verified,
            grants,
            internal_scopes: self.internal_scopes,
            token_path: self.token_path,
            jwks_path: self.jwks_path,
            max_body_len: self.max_body_len,
            user_grants,
            authorize,
            audit: audit::AuditCounters::default(),
            refresh_endpoint: self.refresh_endpoint,
            management,
            on_issued: self.on_issued,
        };
        Ok(AuthorizationServer {
            shared: Arc::new(shared),
        })
    }
}
