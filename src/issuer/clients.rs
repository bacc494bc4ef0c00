//! Client registry and client authentication (RFC 6749 §2.3).
//!
//! A [`ClientRegistry`] finds a [`RegisteredClient`] by id: [`MemoryClientRegistry`] holds the
//! clients of the YAML `clients:` list (secrets hashed at load) or any you insert; implement the
//! trait for a database.
//!
//! # Example
//!
//! ```
//! use tower_bearer::issuer::clients::{ClientRegistry, MemoryClientRegistry, RegisteredClient};
//! use tower_bearer::issuer::config::{AuthMethod, GrantType};
//! use tower_bearer::issuer::password::PasswordHash;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hash = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
//! let registry = MemoryClientRegistry::new();
//! registry.insert(
//!     RegisteredClient::new("reports", AuthMethod::ClientSecretPost)
//!         .with_secret_hash(hash)
//!         .with_grant_types([GrantType::ClientCredentials])
//!         .with_scopes(["reports.read"]),
//! );
//! let client = registry.find("reports").await.unwrap().unwrap();
//! assert_eq!(client.scopes(), ["reports.read"]);
//! assert!(registry.find("nobody").await.unwrap().is_none());
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::error::ConfigError;
use crate::http_client::BoxFuture;
use crate::issuer::config::{AuthMethod, ClientConfig, GrantType};
use crate::issuer::password::{PasswordHash, PasswordHasher};
use crate::store::StoreError;

/// A client the authorization server knows.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::issuer::clients::RegisteredClient;
/// use tower_bearer::issuer::config::{AuthMethod, GrantType};
///
/// let client = RegisteredClient::new("orders", AuthMethod::ClientSecretBasic)
///     .with_grant_types([GrantType::ClientCredentials])
///     .with_scopes(["internal-service"])
///     .with_audiences(["service-system"])
///     .with_access_token_ttl(Duration::from_secs(60));
/// assert_eq!(client.client_id(), "orders");
/// assert!(client.allows(GrantType::ClientCredentials));
/// assert!(!client.allows(GrantType::Password));
/// assert_eq!(client.access_token_ttl(), Some(Duration::from_secs(60)));
/// ```
#[derive(Clone)]
pub struct RegisteredClient {
    client_id: String,
    auth_method: AuthMethod,
    secret_hash: Option<PasswordHash>,
    /// When `secret_hash` stops being accepted (Unix seconds).
    secret_expires_at: Option<u64>,
    /// A second secret (rotation with no downtime) and its expiry.
    next_secret: Option<(PasswordHash, Option<u64>)>,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
    audiences: Vec<String>,
    access_token_ttl: Option<Duration>,
    redirect_uris: Vec<String>,
    introspection: bool,
    require_consent: bool,
    require_pkce: Option<bool>,
    /// The last `client_credentials` decision for this client (not configuration: a clone
    /// starts without one).
    cc: crate::issuer::grants::client_credentials::CcSlot,
}

impl fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("has_secret", &self.secret_hash.is_some())
            .field("secret_expires_at", &self.secret_expires_at)
            .field("has_second_secret", &self.next_secret.is_some())
            .field(
                "second_secret_expires_at",
                &self.next_secret.as_ref().and_then(|(_, e)| *e),
            )
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("redirect_uris", &self.redirect_uris)
            .field("introspection", &self.introspection)
            .field("require_consent", &self.require_consent)
            .field("require_pkce", &self.require_pkce)
            .finish()
    }
}

impl RegisteredClient {
    /// A client with no grant type, scope or audience yet.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("spa", AuthMethod::None);
    /// assert_eq!(c.auth_method(), AuthMethod::None);
    /// assert!(c.grant_types().is_empty());
    /// ```
    pub fn new(client_id: impl Into<String>, auth_method: AuthMethod) -> Self {
        Self {
            client_id: client_id.into(),
            auth_method,
            secret_hash: None,
            secret_expires_at: None,
            next_secret: None,
            grant_types: Vec::new(),
            scopes: Vec::new(),
            audiences: Vec::new(),
            access_token_ttl: None,
            redirect_uris: Vec::new(),
            introspection: false,
            require_consent: false,
            require_pkce: None,
            cc: Default::default(),
        }
    }

    /// Where the `client_credentials` grant keeps its last decision for this client.
    pub(crate) fn cc_slot(&self) -> &crate::issuer::grants::client_credentials::CcSlot {
        &self.cc
    }

    /// The client from a `clients:` entry; a `client-secret` is hashed (argon2id) by `hasher`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::{Secret, SecurityConfig};
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::password::PasswordHasher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cfg = SecurityConfig::from_yaml(r#"
    /// security:
    ///   authorization-server:
    ///     issuer: https://auth.example
    ///     clients:
    ///       - { client-id: a, client-secret: test-only, grant-types: [client_credentials] }
    /// "#).unwrap();
    /// let entry = &cfg.authorization_server.unwrap().clients[0];
    /// let client = RegisteredClient::from_config(entry, &PasswordHasher::new(1)).await.unwrap();
    /// assert!(client.secret_hash().unwrap().as_str().starts_with("{argon2}"));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the hash cannot be parsed or hashing fails.
    pub async fn from_config(
        c: &ClientConfig,
        hasher: &PasswordHasher,
    ) -> Result<Self, ConfigError> {
        let hash = match (&c.client_secret, &c.client_secret_hash) {
            (_, Some(h)) => Some(PasswordHash::parse(h.expose())?),
            (Some(s), None) => Some(PasswordHash::parse(
                &hasher.hash(s.expose().as_bytes()).await?,
            )?),
            (None, None) => None,
        };
        let mut secrets: Vec<(PasswordHash, Option<u64>)> =
            hash.into_iter().map(|h| (h, None)).collect();
        for e in &c.client_secrets {
            let h = match (&e.value, &e.hash) {
                (_, Some(h)) => PasswordHash::parse(h.expose())?,
                (Some(v), None) => PasswordHash::parse(&hasher.hash(v.expose().as_bytes()).await?)?,
                (None, None) => {
                    return Err(ConfigError::Missing(
                        "authorization-server.clients.client-secrets.value",
                    ));
                }
            };
            let exp = match &e.expires_at {
                None => None,
                Some(at) => Some(crate::issuer::config::parse_rfc3339(at).ok_or_else(|| {
                    ConfigError::Invalid {
                        name: "authorization-server.clients.client-secrets.expires-at",
                        reason: format!("`{at}` is not an RFC 3339 date-time"),
                    }
                })?),
            };
            secrets.push((h, exp));
        }
        if secrets.len() > crate::issuer::config::MAX_CLIENT_SECRETS {
            return Err(ConfigError::Invalid {
                name: "authorization-server.clients",
                reason: format!("client `{}`: more than two secrets", c.client_id),
            });
        }
        let mut secrets = secrets.into_iter();
        let (hash, secret_expires_at) = match secrets.next() {
            Some((h, e)) => (Some(h), e),
            None => (None, None),
        };
        let next_secret = secrets.next();
        let mut client = Self::new(c.client_id.clone(), c.auth_method())
            .with_grant_types(c.grant_types.iter().copied())
            .with_scopes(c.scopes.iter().cloned())
            .with_audiences(crate::issuer::config::normalise_list(&c.audiences))
            .with_redirect_uris(c.redirect_uris.iter().cloned())
            .with_introspection(c.introspection.unwrap_or(false))
            .with_require_consent(c.require_consent.unwrap_or(false));
        client.require_pkce = c.require_pkce;
        client.secret_hash = hash;
        client.secret_expires_at = secret_expires_at;
        client.next_secret = next_secret;
        if let Some(ttl) = c.access_token_ttl_seconds {
            client = client.with_access_token_ttl(Duration::from_secs(ttl));
        }
        Ok(client)
    }

    /// Sets the secret hash (`{bcrypt}`, `{argon2}`, `{sha256}`, ...).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    /// use tower_bearer::issuer::password::PasswordHash;
    ///
    /// let h = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretBasic).with_secret_hash(h);
    /// assert!(c.secret_hash().is_some());
    /// ```
    #[must_use]
    pub fn with_secret_hash(mut self, hash: PasswordHash) -> Self {
        self.secret_hash = Some(hash);
        self
    }

    /// Sets when the secret of [`with_secret_hash`](Self::with_secret_hash) stops being
    /// accepted (Unix seconds; `None`: never).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretBasic).with_secret_expiry(Some(1_900_000_000));
    /// assert_eq!(c.secret_expires_at(), Some(1_900_000_000));
    /// ```
    #[must_use]
    pub fn with_secret_expiry(mut self, expires_at: Option<u64>) -> Self {
        self.secret_expires_at = expires_at;
        self
    }

    /// Adds a second secret (rotation with no downtime: the client may present either until one
    /// expires), valid until `expires_at` (Unix seconds; `None`: never).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    /// use tower_bearer::issuer::password::PasswordHash;
    ///
    /// let h = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretBasic)
    ///     .with_secret_hash(h.clone())
    ///     .with_second_secret(h, Some(1_900_000_000));
    /// assert_eq!(c.secrets(1_800_000_000).len(), 2);
    /// assert_eq!(c.secrets(1_900_000_000).len(), 1);
    /// ```
    #[must_use]
    pub fn with_second_secret(mut self, hash: PasswordHash, expires_at: Option<u64>) -> Self {
        self.next_secret = Some((hash, expires_at));
        self
    }

    /// When the first secret expires (Unix seconds), if it does.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert_eq!(RegisteredClient::new("a", AuthMethod::ClientSecretBasic).secret_expires_at(), None);
    /// ```
    pub fn secret_expires_at(&self) -> Option<u64> {
        self.secret_expires_at
    }

    /// The secrets accepted at `now` (not expired), in order.
    ///
    /// # Example
    ///
    /// See [`with_second_secret`](Self::with_second_secret).
    pub fn secrets(&self, now: u64) -> Vec<&PasswordHash> {
        self.all_secrets()
            .filter(|(_, exp)| exp.is_none_or(|e| now < e))
            .map(|(h, _)| h)
            .collect()
    }

    /// The secrets accepted at `now`, in order, without collecting them (at most two: the
    /// secret and the next one of a rotation).
    pub(crate) fn active_secrets(&self, now: u64) -> [Option<&PasswordHash>; 2] {
        let fresh = |exp: Option<u64>| exp.is_none_or(|e| now < e);
        [
            self.secret_hash
                .as_ref()
                .filter(|_| fresh(self.secret_expires_at)),
            self.next_secret
                .as_ref()
                .filter(|(_, e)| fresh(*e))
                .map(|(h, _)| h),
        ]
    }

    /// Every secret with its expiry, expired ones included.
    pub(crate) fn all_secrets(&self) -> impl Iterator<Item = (&PasswordHash, Option<u64>)> {
        self.secret_hash
            .iter()
            .map(|h| (h, self.secret_expires_at))
            .chain(self.next_secret.iter().map(|(h, e)| (h, *e)))
    }

    /// Sets the grant types.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::{AuthMethod, GrantType};
    ///
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretBasic)
    ///     .with_grant_types([GrantType::ClientCredentials]);
    /// assert_eq!(c.grant_types(), [GrantType::ClientCredentials]);
    /// ```
    #[must_use]
    pub fn with_grant_types(mut self, g: impl IntoIterator<Item = GrantType>) -> Self {
        self.grant_types = g.into_iter().collect();
        self
    }

    /// Sets the scopes the client may ask for.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretBasic).with_scopes(["x", "y"]);
    /// assert_eq!(c.scopes(), ["x", "y"]);
    /// ```
    #[must_use]
    pub fn with_scopes<I: Into<String>>(mut self, s: impl IntoIterator<Item = I>) -> Self {
        self.scopes = s.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the audiences (`audience` / `resource` values) the client may ask for.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretBasic).with_audiences(["billing"]);
    /// assert_eq!(c.audiences(), ["billing"]);
    /// ```
    #[must_use]
    pub fn with_audiences<I: Into<String>>(mut self, a: impl IntoIterator<Item = I>) -> Self {
        self.audiences = a.into_iter().map(Into::into).collect();
        self
    }

    /// Overrides the server's access-token lifetime for this client.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretBasic)
    ///     .with_access_token_ttl(Duration::from_secs(30));
    /// assert_eq!(c.access_token_ttl(), Some(Duration::from_secs(30)));
    /// ```
    #[must_use]
    pub fn with_access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = Some(ttl);
        self
    }

    /// Sets the redirect URIs (authorization_code clients).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("spa", AuthMethod::None).with_redirect_uris(["https://app/cb"]);
    /// assert_eq!(c.redirect_uris(), ["https://app/cb"]);
    /// ```
    #[must_use]
    pub fn with_redirect_uris<I: Into<String>>(mut self, r: impl IntoIterator<Item = I>) -> Self {
        self.redirect_uris = r.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the client may call the introspection endpoint.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("gw", AuthMethod::ClientSecretBasic).with_introspection(true);
    /// assert!(c.introspection());
    /// ```
    #[must_use]
    pub fn with_introspection(mut self, allowed: bool) -> Self {
        self.introspection = allowed;
        self
    }

    /// The client id.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert_eq!(RegisteredClient::new("a", AuthMethod::None).client_id(), "a");
    /// ```
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The registered authentication method.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretPost);
    /// assert_eq!(c.auth_method(), AuthMethod::ClientSecretPost);
    /// ```
    pub fn auth_method(&self) -> AuthMethod {
        self.auth_method
    }

    /// The secret hash, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert!(RegisteredClient::new("a", AuthMethod::None).secret_hash().is_none());
    /// ```
    pub fn secret_hash(&self) -> Option<&PasswordHash> {
        self.secret_hash.as_ref()
    }

    /// The grant types.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert!(RegisteredClient::new("a", AuthMethod::None).grant_types().is_empty());
    /// ```
    pub fn grant_types(&self) -> &[GrantType] {
        &self.grant_types
    }

    /// Whether the client may use `grant`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::{AuthMethod, GrantType};
    ///
    /// let c = RegisteredClient::new("a", AuthMethod::ClientSecretBasic)
    ///     .with_grant_types([GrantType::RefreshToken]);
    /// assert!(c.allows(GrantType::RefreshToken));
    /// ```
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The scopes.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert!(RegisteredClient::new("a", AuthMethod::None).scopes().is_empty());
    /// ```
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The audiences.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert!(RegisteredClient::new("a", AuthMethod::None).audiences().is_empty());
    /// ```
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The per-client access-token lifetime, if set.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert_eq!(RegisteredClient::new("a", AuthMethod::None).access_token_ttl(), None);
    /// ```
    pub fn access_token_ttl(&self) -> Option<Duration> {
        self.access_token_ttl
    }

    /// The redirect URIs.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert!(RegisteredClient::new("a", AuthMethod::None).redirect_uris().is_empty());
    /// ```
    pub fn redirect_uris(&self) -> &[String] {
        &self.redirect_uris
    }

    /// Whether the client may introspect tokens.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert!(!RegisteredClient::new("a", AuthMethod::None).introspection());
    /// ```
    pub fn introspection(&self) -> bool {
        self.introspection
    }

    /// Shows the consent page before a code is issued (`require-consent`; default false).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("web", AuthMethod::ClientSecretBasic).with_require_consent(true);
    /// assert!(c.require_consent());
    /// ```
    #[must_use]
    pub fn with_require_consent(mut self, required: bool) -> Self {
        self.require_consent = required;
        self
    }

    /// Whether the consent page is shown.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert!(!RegisteredClient::new("web", AuthMethod::ClientSecretBasic).require_consent());
    /// ```
    pub fn require_consent(&self) -> bool {
        self.require_consent
    }

    /// Whether this client must use PKCE (`require-pkce`): `Some(false)` loosens it for a
    /// confidential client; ignored for public clients, which always need PKCE.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let c = RegisteredClient::new("legacy", AuthMethod::ClientSecretBasic).with_require_pkce(false);
    /// assert_eq!(c.require_pkce(), Some(false));
    /// ```
    #[must_use]
    pub fn with_require_pkce(mut self, required: bool) -> Self {
        self.require_pkce = Some(required);
        self
    }

    /// The client's own PKCE setting (`None`: the server's default).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::RegisteredClient;
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// assert_eq!(RegisteredClient::new("spa", AuthMethod::None).require_pkce(), None);
    /// ```
    pub fn require_pkce(&self) -> Option<bool> {
        self.require_pkce
    }
}

/// Where the authorization server finds its clients. Implement it for a database; the
/// future is boxed (`Send`, borrowing `self` and the id).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::http_client::BoxFuture;
/// use tower_bearer::issuer::clients::{ClientRegistry, RegisteredClient};
/// use tower_bearer::issuer::config::AuthMethod;
/// use tower_bearer::store::StoreError;
///
/// #[derive(Debug)]
/// struct OneClient;
///
/// impl ClientRegistry for OneClient {
///     fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<RegisteredClient>>, StoreError>> {
///         Box::pin(async move {
///             Ok((id == "only").then(|| Arc::new(RegisteredClient::new("only", AuthMethod::ClientSecretBasic))))
///         })
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert!(OneClient.find("only").await.unwrap().is_some());
/// # }
/// ```
pub trait ClientRegistry: Send + Sync + fmt::Debug + 'static {
    /// The client with this id, `None` when unknown.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the registry cannot answer (the token endpoint answers
    /// `server_error`).
    fn find<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<RegisteredClient>>, StoreError>>;

    /// [`ClientRegistry::find`]'s answer when the registry has it at hand without waiting (an
    /// in-memory registry); `None`, the default, when it must be asked through `find`. The
    /// token endpoint tries it first: a registry that answers here costs no boxed future per
    /// request. It must answer as `find` would.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::{ClientRegistry, MemoryClientRegistry, RegisteredClient};
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let r = MemoryClientRegistry::new();
    /// r.insert(RegisteredClient::new("a", AuthMethod::ClientSecretBasic));
    /// assert!(r.find_now("a").unwrap().unwrap().is_some());
    /// assert!(r.find_now("b").unwrap().unwrap().is_none());
    /// ```
    ///
    /// # Errors
    ///
    /// `Some(Err(_))`: as [`ClientRegistry::find`].
    fn find_now(
        &self,
        client_id: &str,
    ) -> Option<Result<Option<Arc<RegisteredClient>>, StoreError>> {
        let _ = client_id;
        None
    }

    /// Every scope some client may ask for (for the metadata's `scopes_supported`); the default
    /// is none.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::{ClientRegistry, MemoryClientRegistry, RegisteredClient};
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let r = MemoryClientRegistry::new();
    /// r.insert(RegisteredClient::new("a", AuthMethod::ClientSecretBasic).with_scopes(["y", "x"]));
    /// assert_eq!(r.known_scopes(), ["x", "y"]);
    /// ```
    fn known_scopes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Clients in memory (the YAML `clients:` list, tests, the demo).
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::clients::{MemoryClientRegistry, RegisteredClient};
/// use tower_bearer::issuer::config::AuthMethod;
///
/// let r = MemoryClientRegistry::new();
/// r.insert(RegisteredClient::new("a", AuthMethod::ClientSecretBasic));
/// assert_eq!(r.len(), 1);
/// assert!(r.remove("a"));
/// assert!(r.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct MemoryClientRegistry {
    clients: RwLock<HashMap<String, Arc<RegisteredClient>>>,
}

impl MemoryClientRegistry {
    /// An empty registry.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::MemoryClientRegistry;
    ///
    /// assert!(MemoryClientRegistry::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry of a `clients:` list (secrets hashed with `hasher`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    /// use tower_bearer::issuer::clients::MemoryClientRegistry;
    /// use tower_bearer::issuer::password::PasswordHasher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cfg = SecurityConfig::from_yaml(r#"
    /// security:
    ///   authorization-server:
    ///     issuer: https://auth.example
    ///     clients:
    ///       - { client-id: a, client-secret: test-only, grant-types: [client_credentials] }
    /// "#).unwrap();
    /// let clients = &cfg.authorization_server.unwrap().clients;
    /// let r = MemoryClientRegistry::from_config(clients, &PasswordHasher::new(1)).await.unwrap();
    /// assert_eq!(r.len(), 1);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RegisteredClient::from_config`].
    pub async fn from_config(
        clients: &[ClientConfig],
        hasher: &PasswordHasher,
    ) -> Result<Self, ConfigError> {
        let r = Self::new();
        for c in clients {
            r.insert(RegisteredClient::from_config(c, hasher).await?);
        }
        Ok(r)
    }

    /// Adds or replaces a client.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::{MemoryClientRegistry, RegisteredClient};
    /// use tower_bearer::issuer::config::AuthMethod;
    ///
    /// let r = MemoryClientRegistry::new();
    /// r.insert(RegisteredClient::new("a", AuthMethod::ClientSecretBasic));
    /// r.insert(RegisteredClient::new("a", AuthMethod::ClientSecretPost));
    /// assert_eq!(r.len(), 1);
    /// ```
    pub fn insert(&self, client: RegisteredClient) {
        let mut m = self.clients.write().unwrap_or_else(|e| e.into_inner());
        m.insert(client.client_id.clone(), Arc::new(client));
    }

    /// Removes a client; `true` when it was there.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::MemoryClientRegistry;
    ///
    /// assert!(!MemoryClientRegistry::new().remove("a"));
    /// ```
    pub fn remove(&self, client_id: &str) -> bool {
        let mut m = self.clients.write().unwrap_or_else(|e| e.into_inner());
        m.remove(client_id).is_some()
    }

    /// How many clients.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::MemoryClientRegistry;
    ///
    /// assert_eq!(MemoryClientRegistry::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.clients.read().map_or(0, |m| m.len())
    }

    /// Whether there is no client.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::clients::MemoryClientRegistry;
    ///
    /// assert!(MemoryClientRegistry::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client with this id.
    fn get(&self, client_id: &str) -> Option<Arc<RegisteredClient>> {
        self.clients
            .read()
            .ok()
            .and_then(|m| m.get(client_id).cloned())
    }

    /// A hash typical of the stored clients (for a dummy hash of the same cost).
    pub(crate) fn typical_hash(&self) -> Option<PasswordHash> {
        let m = self.clients.read().ok()?;
        m.values().find_map(|c| c.secret_hash.clone())
    }
}

impl ClientRegistry for MemoryClientRegistry {
    fn find<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<RegisteredClient>>, StoreError>> {
        Box::pin(std::future::ready(Ok(self.get(client_id))))
    }

    fn find_now(
        &self,
        client_id: &str,
    ) -> Option<Result<Option<Arc<RegisteredClient>>, StoreError>> {
        Some(Ok(self.get(client_id)))
    }

    fn known_scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .clients
            .read()
            .map(|m| m.values().flat_map(|c| c.scopes.iter().cloned()).collect())
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }
}

impl<T: ClientRegistry> ClientRegistry for Arc<T> {
    fn find<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<RegisteredClient>>, StoreError>> {
        (**self).find(client_id)
    }
    fn find_now(
        &self,
        client_id: &str,
    ) -> Option<Result<Option<Arc<RegisteredClient>>, StoreError>> {
        (**self).find_now(client_id)
    }
    fn known_scopes(&self) -> Vec<String> {
        (**self).known_scopes()
    }
}

/// How a request presented its client credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented {
    Basic,
    Post,
    /// Only a `client_id` (public clients).
    IdOnly,
}

/// Client credentials as presented (the secret zeroized on drop).
pub(crate) struct Credentials {
    pub(crate) client_id: String,
    pub(crate) secret: Option<Zeroizing<String>>,
    pub(crate) method: Presented,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Why a `Basic` header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BasicError {
    /// Another scheme (`Bearer`, ...).
    NotBasic,
    /// Basic, but not `base64(urlencode(id):urlencode(secret))`.
    Malformed,
}

/// Parses `Authorization: Basic` (RFC 6749 §2.3.1: id and secret are form-urlencoded, then
/// joined by `:` and base64-encoded; RFC 7617).
pub(crate) fn parse_basic(value: &[u8]) -> Result<(String, Zeroizing<String>), BasicError> {
    let value = std::str::from_utf8(value).map_err(|_| BasicError::Malformed)?;
    // Byte loops (the separators are ASCII), not `str`'s generic pattern searchers: less code
    // on every token request.
    let space = value
        .bytes()
        .position(|b| b == b' ')
        .ok_or(BasicError::NotBasic)?;
    if !value.as_bytes()[..space].eq_ignore_ascii_case(b"basic") {
        return Err(BasicError::NotBasic);
    }
    let mut encoded = &value.as_bytes()[space + 1..];
    while let [b' ' | b'\t', rest @ ..] = encoded {
        encoded = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = encoded {
        encoded = rest;
    }
    // Decoded on the stack when it fits (any usual id and secret: no allocation); the bytes
    // that may have been written are zeroized after use, whatever the outcome.
    let most = encoded.len().div_ceil(4) * 3;
    let mut small = [0u8; 192];
    if most <= small.len() {
        let out = STANDARD
            .decode_slice(encoded, &mut small[..most])
            .map_err(|_| BasicError::Malformed)
            .and_then(|n| split_basic(&small[..n]));
        zeroize::Zeroize::zeroize(&mut small[..most]);
        out
    } else {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| BasicError::Malformed)?,
        );
        split_basic(&decoded)
    }
}

/// `id:secret` (RFC 7617), each form-decoded (RFC 6749 §2.3.1); the id not empty.
fn split_basic(decoded: &[u8]) -> Result<(String, Zeroizing<String>), BasicError> {
    let text = std::str::from_utf8(decoded).map_err(|_| BasicError::Malformed)?;
    let colon = text
        .bytes()
        .position(|b| b == b':')
        .ok_or(BasicError::Malformed)?;
    let (id, secret) = (&text[..colon], &text[colon + 1..]);
    let id = form_decode(id).ok_or(BasicError::Malformed)?;
    let secret = Zeroizing::new(form_decode(secret).ok_or(BasicError::Malformed)?);
    if id.is_empty() {
        return Err(BasicError::Malformed);
    }
    Ok((id, secret))
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space); `None` when
/// the result is not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    if !s.bytes().any(|b| b == b'+' || b == b'%') {
        return Some(s.to_owned());
    }
    // The intermediate copy may hold a secret: zeroized on drop.
    let plus = Zeroizing::new(s.replace('+', " "));
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// Successful secret checks, remembered for a while so a client asking for a token every few
/// seconds does not pay an argon2/bcrypt check each time. Keys are SHA-256 of a per-process
/// random 256-bit key followed by the length-prefixed client id and presented secret (a keyed
/// hash: the tags never leave the process, so the length extension that rules this out as a
/// public MAC does not apply; one one-shot hash instead of the HMAC API's two finalizations and
/// context copy, ~4k instructions less per request); each entry also holds the stored
/// hash it was checked against (public data, compared on lookup), so a changed secret or hash
/// misses; only successes are remembered. (The stored hash is compared rather than hashed into
/// the key: one SHA-256 block less per request.)
///
/// SHA-256 whatever the signing algorithm: x86-64 CPUs since AMD Zen and Intel Ice Lake, and
/// ARMv8 with its crypto extension, run it in hardware, and on an AMD EPYC host aws-lc ran
/// SHA-512 without SIMD (`sha512_block_data_order_nohw`): the tag took ~0.4 µs of an EdDSA
/// issuance with SHA-512, ~0.13 µs with SHA-256 (`perf`, #8's seventh pass,
/// `benches/peers/callgrind.md`).
pub(crate) struct VerifiedSecrets {
    key: Zeroizing<[u8; 32]>,
    ttl: Duration,
    max: usize,
    /// Tag → (valid until, the stored hash it was checked against).
    seen: Mutex<HashMap<[u8; 32], (u64, Box<str>), BuildTagHasher>>,
}

/// Hashes a tag by folding its bytes 8 at a time: tags are keyed SHA-256 outputs, uniform to anyone
/// without the process's key, so no one can aim entries at one bucket and SipHash's
/// flooding resistance buys nothing here.
type BuildTagHasher = std::hash::BuildHasherDefault<TagHasher>;

/// See [`BuildTagHasher`].
#[derive(Default)]
struct TagHasher(u64);

impl std::hash::Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

impl fmt::Debug for VerifiedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedSecrets")
            .field("ttl", &self.ttl)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl VerifiedSecrets {
    pub(crate) fn new(ttl: Duration, max: usize) -> Result<Self, ConfigError> {
        use aws_lc_rs::rand::SecureRandom as _;
        let mut key = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut key[..])
            .map_err(|_| ConfigError::Crypto("random key for the verified-secret cache"))?;
        Ok(Self {
            key,
            ttl,
            max,
            seen: Mutex::new(HashMap::default()),
        })
    }

    /// The cache key of `(id, secret)`, computed once per request and used for every stored
    /// hash checked (`None` when the cache is off).
    pub(crate) fn tag(&self, id: &str, secret: &str) -> Option<[u8; 32]> {
        use zeroize::Zeroize as _;
        if self.ttl.is_zero() {
            return None;
        }
        // The input holds the secret: on the stack when it fits (any usual id and secret; no
        // allocation), zeroized after use either way (only the bytes written).
        let len = 48 + id.len() + secret.len();
        let mut small = [0u8; 192];
        let mut large = Zeroizing::new(Vec::new());
        let input: &mut [u8] = if len <= small.len() {
            &mut small[..len]
        } else {
            large.resize(len, 0);
            &mut large[..]
        };
        input[..32].copy_from_slice(&self.key[..]);
        let mut at = 32;
        for part in [id.as_bytes(), secret.as_bytes()] {
            input[at..at + 8].copy_from_slice(&(part.len() as u64).to_be_bytes());
            input[at + 8..at + 8 + part.len()].copy_from_slice(part);
            at += 8 + part.len();
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input).as_ref());
        input.zeroize();
        Some(out)
    }

    /// Whether `tag` ([`VerifiedSecrets::tag`]) was verified against `hash` and is still fresh.
    pub(crate) fn contains(&self, tag: Option<&[u8; 32]>, hash: &PasswordHash, now: u64) -> bool {
        let Some(tag) = tag else { return false };
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(tag)
            .is_some_and(|(until, checked)| *until > now && **checked == *hash.as_str())
    }

    /// Remembers that `tag` ([`VerifiedSecrets::tag`]) verified against `hash`.
    pub(crate) fn insert(&self, tag: Option<&[u8; 32]>, hash: &PasswordHash, now: u64) {
        let Some(tag) = tag else { return };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= self.max {
            seen.retain(|_, (until, _)| *until > now);
            if seen.len() >= self.max {
                seen.clear();
            }
        }
        seen.insert(
            *tag,
            (now.saturating_add(self.ttl.as_secs()), hash.as_str().into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let (id, secret) = parse_basic(basic("my%3Aclient:p%2Bw%25d+x%3A").as_bytes()).unwrap();
        assert_eq!(id, "my:client");
        assert_eq!(secret.as_str(), "p+w%d x:");
        let (_, secret) = parse_basic(basic("a:").as_bytes()).unwrap();
        assert_eq!(secret.as_str(), "");
        let (id, _) = parse_basic(format!("bAsIc  {}", STANDARD.encode("a:b")).as_bytes()).unwrap();
        assert_eq!(id, "a");
    }

    /// Credentials decoded on the stack and on the heap (past 192 bytes) parse alike.
    #[test]
    fn long_basic_credentials() {
        for n in [0, 150, 183, 184, 185, 186, 187, 190, 300, 4_000] {
            let secret = "s".repeat(n);
            let (id, got) = parse_basic(basic(&format!("client:{secret}")).as_bytes()).unwrap();
            assert_eq!(
                (id.as_str(), got.as_str()),
                ("client", secret.as_str()),
                "{n}"
            );
            let cut = basic(&format!("client:{secret}"));
            assert_eq!(
                parse_basic(&cut.as_bytes()[..cut.len() - 1]).unwrap_err(),
                BasicError::Malformed,
                "{n}"
            );
        }
    }

    #[test]
    fn bad_basic_headers() {
        assert_eq!(
            parse_basic(b"Bearer abc").unwrap_err(),
            BasicError::NotBasic
        );
        assert_eq!(parse_basic(b"Basic").unwrap_err(), BasicError::NotBasic);
        for bad in [
            "Basic !!!",
            &basic("no-colon"),
            &basic(":secret"),
            &basic("a:%ZZ%FF"),
        ] {
            assert_eq!(
                parse_basic(bad.as_bytes()).unwrap_err(),
                BasicError::Malformed,
                "{bad}"
            );
        }
    }

    // Found while writing the `token_endpoint` fuzz target's RFC model: only SP / HTAB may
    // surround the token68 (RFC 9110 OWS); `str::trim` also dropped Unicode white space
    // (U+00A0, U+0085, U+2028 ... are valid obs-text header bytes once decoded as UTF-8).
    #[test]
    fn only_ows_around_the_token68() {
        let b64 = STANDARD.encode("user:pw");
        let (id, secret) = parse_basic(format!("Basic \t{b64} \t").as_bytes()).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("user", "pw"));
        for ws in ["\u{a0}", "\u{85}", "\u{2028}", "\u{3000}"] {
            for bad in [format!("Basic {b64}{ws}"), format!("Basic {ws}{b64}")] {
                assert_eq!(
                    parse_basic(bad.as_bytes()).unwrap_err(),
                    BasicError::Malformed,
                    "{bad:?}"
                );
            }
        }
    }

    #[test]
    fn verified_secrets_only_match_the_same_triple() {
        let h = PasswordHash::parse(
            "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.",
        )
        .unwrap();
        {
            let v = VerifiedSecrets::new(Duration::from_secs(60), 2).unwrap();
            let tag = |id: &str, secret: &str| v.tag(id, secret);
            v.insert(tag("a", "s").as_ref(), &h, 100);
            assert!(v.contains(tag("a", "s").as_ref(), &h, 159));
            assert!(!v.contains(tag("a", "s").as_ref(), &h, 160));
            assert!(!v.contains(tag("a", "t").as_ref(), &h, 100));
            assert!(!v.contains(tag("b", "s").as_ref(), &h, 100));
            // Another stored hash (the secret was rotated in the registry) misses.
            let other = PasswordHash::parse(
                "{sha256}627d3eb97bfb9bfd21307d84408b5e199aac37ad5065d81e14d1a60c2c48c4e0b4f51d3d6973b92f",
            )
            .unwrap();
            assert!(!v.contains(tag("a", "s").as_ref(), &other, 100));
            // Length-prefixed: ("a", "bs") is not ("ab", "s").
            v.insert(tag("ab", "s").as_ref(), &h, 100);
            assert!(!v.contains(tag("a", "bs").as_ref(), &h, 100));
            // An input past the stack buffer (a long secret) tags the same way, and differs.
            let long = "x".repeat(500);
            assert_eq!(tag("a", &long), tag("a", &long));
            assert_ne!(tag("a", &long), tag("a", &long[1..]));
            v.insert(tag("a", &long).as_ref(), &h, 100);
            assert!(v.contains(tag("a", &long).as_ref(), &h, 100));
        }
        // The cache off: no tag, never a hit.
        let off = VerifiedSecrets::new(Duration::ZERO, 2).unwrap();
        assert_eq!(off.tag("a", "s"), None);
        off.insert(None, &h, 100);
        assert!(!off.contains(None, &h, 100));
    }
}
