//! User grants: the user store, the grant store, refresh-token lifetimes, login limits and the
//! shared policy-version source (issue 9). The builder methods live here
//! ([`AuthorizationServerBuilder::with_user_store`], [`with_grant_store`],
//! [`with_policy_versions`], [`refresh_token_lifetimes`], [`password_grant`], [`user_limits`])
//! as do [`AuthorizationServer::bump_policy_version`] and
//! [`AuthorizationServer::grant_store`].
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower_bearer::issuer::store::MemoryGrantStore;
//! use tower_bearer::issuer::users::{MemoryUserStore, User};
//! use tower_bearer::issuer::AuthorizationServer;
//! use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let users = MemoryUserStore::from_users([User::new("1001", "alice").with_pv(2)]).unwrap();
//! let versions = Arc::new(MemoryPolicyVersions::new());
//! let server = AuthorizationServer::builder("https://auth.example")
//!     .password_grant(true)
//!     .with_user_store(Arc::new(users))
//!     .with_grant_store(Arc::new(MemoryGrantStore::new()))
//!     .with_policy_versions(versions.clone())
//!     .refresh_token_lifetimes(Duration::from_secs(3600), Duration::from_secs(86_400))
//!     .build()
//!     .await
//!     .unwrap();
//! // An admin changed alice's roles: her older tokens (pv 2) are refused by the services.
//! assert_eq!(server.bump_policy_version("1001").await.unwrap(), 3);
//! assert_eq!(versions.current("1001").await.unwrap(), Some(3));
//! # }
//! ```
//!
//! [`with_grant_store`]: AuthorizationServerBuilder::with_grant_store
//! [`with_policy_versions`]: AuthorizationServerBuilder::with_policy_versions
//! [`refresh_token_lifetimes`]: AuthorizationServerBuilder::refresh_token_lifetimes
//! [`password_grant`]: AuthorizationServerBuilder::password_grant
//! [`user_limits`]: AuthorizationServerBuilder::user_limits

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::RedisConfig;
use crate::error::BoxError;
use crate::error::ConfigError;
use crate::http_client::BoxFuture;
use crate::issuer::config::{self, AuthorizationServerConfig, StoreKind, UserConfig};
use crate::issuer::grants::Grant;
use crate::issuer::limiter::{Limiter, LimiterConfig};
use crate::issuer::password::PasswordHash;
use crate::issuer::store::{GrantStore, MemoryGrantStore};
use crate::issuer::users::{MemoryUserStore, User, UserStore};
use crate::issuer::{AuthorizationServer, AuthorizationServerBuilder};
use crate::policy::{MemoryPolicyVersions, PolicyVersions};

/// A [`PolicyVersions`] source the issuer can also write: what
/// [`AuthorizationServer::bump_policy_version`] moves and what `PolicyVersionLayer` reads.
/// Implemented for [`MemoryPolicyVersions`] and (feature `redis`)
/// [`RedisPolicyVersions`](crate::store::RedisPolicyVersions).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::issuer::user_grants::PolicyVersionSink;
/// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let versions = Arc::new(MemoryPolicyVersions::new());
/// let sink: Arc<dyn PolicyVersionSink> = versions.clone();
/// sink.set_version("1001", 4).await.unwrap();
/// assert_eq!(versions.current("1001").await.unwrap(), Some(4));
/// # }
/// ```
pub trait PolicyVersionSink: PolicyVersions {
    /// Sets the version of `user_id`.
    ///
    /// # Errors
    ///
    /// The source could not be written.
    fn set_version(&self, user_id: &str, version: i64) -> BoxFuture<'static, Result<(), BoxError>>;
}

impl PolicyVersionSink for MemoryPolicyVersions {
    fn set_version(&self, user_id: &str, version: i64) -> BoxFuture<'static, Result<(), BoxError>> {
        self.set(user_id, version);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(feature = "redis")]
impl PolicyVersionSink for crate::store::RedisPolicyVersions {
    fn set_version(&self, user_id: &str, version: i64) -> BoxFuture<'static, Result<(), BoxError>> {
        let this = self.clone();
        let uid = user_id.to_owned();
        Box::pin(async move {
            this.set(&uid, version)
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    }
}

/// What the builder collects for user grants.
pub(crate) struct UserGrantsBuilder {
    pub(crate) users: Option<Arc<dyn UserStore>>,
    pub(crate) user_configs: Vec<UserConfig>,
    pub(crate) store: Option<Arc<dyn GrantStore>>,
    pub(crate) store_kind: StoreKind,
    pub(crate) redis: Option<RedisConfig>,
    pub(crate) policy: Option<Arc<dyn PolicyVersionSink>>,
    pub(crate) idle_ttl: Duration,
    pub(crate) absolute_ttl: Duration,
    pub(crate) password_enabled: bool,
    pub(crate) user_limits: LimiterConfig,
    pub(crate) revoke_path: String,
    pub(crate) introspect_path: String,
}

impl Default for UserGrantsBuilder {
    fn default() -> Self {
        Self {
            users: None,
            user_configs: Vec::new(),
            store: None,
            store_kind: StoreKind::Memory,
            redis: None,
            policy: None,
            idle_ttl: config::DEFAULT_REFRESH_IDLE_TTL,
            absolute_ttl: config::DEFAULT_REFRESH_ABSOLUTE_TTL,
            password_enabled: false,
            user_limits: LimiterConfig::default(),
            revoke_path: "/oauth2/revoke".into(),
            introspect_path: "/oauth2/introspect".into(),
        }
    }
}

impl UserGrantsBuilder {
    /// What `authorization-server` says (already validated).
    pub(crate) fn from_config(cfg: &AuthorizationServerConfig) -> Self {
        let mut b = Self {
            user_configs: cfg.users.clone(),
            store_kind: cfg.store.unwrap_or_default(),
            password_enabled: cfg.password_grant_enabled(),
            ..Self::default()
        };
        if let Some(rt) = &cfg.refresh_token {
            if let Some(s) = rt.idle_ttl_seconds {
                b.idle_ttl = Duration::from_secs(s);
            }
            if let Some(s) = rt.absolute_ttl_seconds {
                b.absolute_ttl = Duration::from_secs(s);
            }
        }
        cfg.revoke_path().clone_into(&mut b.revoke_path);
        cfg.introspect_path().clone_into(&mut b.introspect_path);
        b
    }

    /// Opens the stores; `grants` gets the user grants to register.
    pub(crate) async fn build(
        self,
        clock: &SharedClock,
        grants: &mut Vec<Arc<dyn Grant>>,
    ) -> Result<UserGrants, ConfigError> {
        if self.idle_ttl.is_zero() || self.idle_ttl > self.absolute_ttl {
            return Err(ConfigError::Invalid {
                name: "authorization-server.refresh-token",
                reason:
                    "lifetimes must be positive and `idle-ttl-seconds` <= `absolute-ttl-seconds`"
                        .into(),
            });
        }
        let users: Option<Arc<dyn UserStore>> = match self.users {
            Some(u) => Some(u),
            None if self.user_configs.is_empty() => None,
            None => Some(Arc::new(users_from_config(&self.user_configs)?)),
        };
        let store: Arc<dyn GrantStore> = match self.store {
            Some(s) => s,
            None => open_store(self.store_kind, self.redis.as_ref()).await?,
        };
        #[cfg(feature = "redis")]
        let policy = match (self.policy, self.store_kind, &self.redis) {
            (Some(p), _, _) => p,
            // `store: redis`: the policy versions the services' `PolicyVersionLayer` reads
            // from the same `security.redis` (same key prefix).
            (None, StoreKind::Redis, Some(redis)) => {
                let prefix = redis
                    .key_prefix
                    .as_deref()
                    .unwrap_or(crate::config::DEFAULT_REDIS_PREFIX);
                Arc::new(crate::store::RedisPolicyVersions::connect(&redis.url, prefix).await?)
            }
            (None, _, _) => Arc::new(MemoryPolicyVersions::new()),
        };
        #[cfg(not(feature = "redis"))]
        let policy: Arc<dyn PolicyVersionSink> = self
            .policy
            .unwrap_or_else(|| Arc::new(MemoryPolicyVersions::new()));
        if self.password_enabled {
            tracing::warn!(
                target: "tower_bearer::issuer",
                "password-grant.enabled: the resource-owner password credentials grant is deprecated \
                 (RFC 9700 §2.4); it is served only to confidential clients that list `password`"
            );
            grants.push(Arc::new(crate::issuer::grants::password::PasswordGrant));
            // Refresh tokens come from user grants only: served (and advertised) with them.
            grants.push(Arc::new(crate::issuer::grants::refresh::RefreshGrant));
        }
        Ok(UserGrants {
            users,
            store,
            policy,
            idle_ttl: self.idle_ttl,
            absolute_ttl: self.absolute_ttl,
            user_limiter: Limiter::new(self.user_limits, clock.clone()),
            revoke_path: self.revoke_path,
            introspect_path: self.introspect_path,
        })
    }
}

/// `authorization-server.users` as a [`MemoryUserStore`]: `uid` defaults to the username, `pv`
/// to 0, `enabled` to true; a user without `password-hash` cannot log in.
pub(crate) fn users_from_config(list: &[UserConfig]) -> Result<MemoryUserStore, ConfigError> {
    let mut users = Vec::with_capacity(list.len());
    for u in list {
        let uid = u.uid.clone().unwrap_or_else(|| u.username.clone());
        let mut user = User::new(uid, u.username.clone())
            .with_pv(i64::try_from(u.pv.unwrap_or(0)).unwrap_or(i64::MAX))
            .with_roles(u.roles.iter().cloned())
            .with_permissions(u.permissions.iter().cloned())
            .with_enabled(u.enabled.unwrap_or(true));
        if let Some(t) = &u.tenant {
            user = user.with_tenant(t.clone());
        }
        if let Some(h) = &u.password_hash {
            user = user.with_password_hash(PasswordHash::parse(h.expose())?);
        }
        users.push(user);
    }
    MemoryUserStore::from_users(users)
}

#[cfg_attr(not(feature = "redis"), allow(clippy::unused_async))]
async fn open_store(
    kind: StoreKind,
    redis: Option<&RedisConfig>,
) -> Result<Arc<dyn GrantStore>, ConfigError> {
    match kind {
        StoreKind::Memory => Ok(Arc::new(MemoryGrantStore::new())),
        StoreKind::Redis => {
            #[cfg(feature = "redis")]
            {
                let redis = redis.ok_or(ConfigError::Missing(
                    "security.redis (for authorization-server.store: redis)",
                ))?;
                let prefix = format!(
                    "{}:as",
                    redis
                        .key_prefix
                        .as_deref()
                        .unwrap_or(crate::config::DEFAULT_REDIS_PREFIX)
                );
                let store =
                    crate::issuer::store::RedisGrantStore::connect(&redis.url, &prefix).await?;
                let report = store.check_persistence().await;
                tracing::info!(target: "tower_bearer::issuer", ?report, "authorization-server.store: redis");
                Ok(Arc::new(store))
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = redis;
                Err(ConfigError::Invalid {
                    name: "authorization-server.store",
                    reason: "`redis` needs tower-bearer's `redis` feature".into(),
                })
            }
        }
    }
}

/// The runtime side, held by the server.
pub(crate) struct UserGrants {
    pub(crate) users: Option<Arc<dyn UserStore>>,
    pub(crate) store: Arc<dyn GrantStore>,
    pub(crate) policy: Arc<dyn PolicyVersionSink>,
    pub(crate) idle_ttl: Duration,
    pub(crate) absolute_ttl: Duration,
    pub(crate) user_limiter: Limiter,
    pub(crate) revoke_path: String,
    pub(crate) introspect_path: String,
}

impl fmt::Debug for UserGrants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserGrants")
            .field("users", &self.users)
            .field("store", &self.store)
            .field("idle_ttl", &self.idle_ttl)
            .field("absolute_ttl", &self.absolute_ttl)
            .finish_non_exhaustive()
    }
}

impl UserGrants {
    /// The `pv` a new token of `user` carries: the larger of the user store's `pv` and the
    /// shared policy source's (a source failure keeps the store's value and is logged).
    pub(crate) async fn current_pv(&self, user: &User) -> i64 {
        match self.policy.current(&user.user_id).await {
            Ok(Some(v)) => v.max(user.pv),
            Ok(None) => user.pv,
            Err(e) => {
                tracing::warn!(target: "tower_bearer::issuer", uid = %user.user_id, error = %e, "policy-version source failed; using the user store's pv");
                user.pv
            }
        }
    }
}

impl AuthorizationServerBuilder {
    /// Uses `users` for the password grant and refresh (instead of `authorization-server.users`).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let users = MemoryUserStore::from_users([User::new("1001", "alice")]).unwrap();
    /// let server = AuthorizationServer::builder("https://auth.example")
    ///     .with_user_store(Arc::new(users))
    ///     .build()
    ///     .await;
    /// assert!(server.is_ok());
    /// # }
    /// ```
    pub fn with_user_store(mut self, users: Arc<dyn UserStore>) -> Self {
        self.user_grants.users = Some(users);
        self
    }

    /// Uses `store` for refresh-token families, revoked `jti`s and codes (instead of
    /// `authorization-server.store`). Two servers sharing one store (e.g. one
    /// [`RedisGrantStore`](crate::issuer::store::RedisGrantStore)) share grants.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::issuer::store::MemoryGrantStore;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let server = AuthorizationServer::builder("https://auth.example")
    ///     .with_grant_store(Arc::new(MemoryGrantStore::new()))
    ///     .build()
    ///     .await;
    /// assert!(server.is_ok());
    /// # }
    /// ```
    pub fn with_grant_store(mut self, store: Arc<dyn GrantStore>) -> Self {
        self.user_grants.store = Some(store);
        self
    }

    /// The policy-version source shared with the services' `PolicyVersionLayer`:
    /// [`AuthorizationServer::bump_policy_version`] writes it, and every user token carries
    /// the larger of it and the user store's `pv`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::issuer::AuthorizationServer;
    /// use tower_bearer::policy::MemoryPolicyVersions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let versions = Arc::new(MemoryPolicyVersions::new());
    /// let server = AuthorizationServer::builder("https://auth.example")
    ///     .with_policy_versions(versions.clone())
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(server.bump_policy_version("1001").await.unwrap(), 1);
    /// # }
    /// ```
    pub fn with_policy_versions(mut self, source: Arc<dyn PolicyVersionSink>) -> Self {
        self.user_grants.policy = Some(source);
        self
    }

    /// Refresh-token family lifetimes: `idle` (no refresh for that long ends the family) and
    /// `absolute` (from the login). Defaults: 30 and 90 days.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let bad = AuthorizationServer::builder("https://auth.example")
    ///     .refresh_token_lifetimes(Duration::from_secs(100), Duration::from_secs(10))
    ///     .build()
    ///     .await;
    /// assert!(bad.is_err());
    /// # }
    /// ```
    pub fn refresh_token_lifetimes(mut self, idle: Duration, absolute: Duration) -> Self {
        self.user_grants.idle_ttl = idle;
        self.user_grants.absolute_ttl = absolute;
        self
    }

    /// Serves the (deprecated, RFC 9700 §2.4) `password` grant to the clients that list it.
    /// Off by default.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://auth.example").password_grant(true).build().await.unwrap();
    /// assert!(s.metadata()["grant_types_supported"].as_array().unwrap().iter().any(|g| g == "password"));
    /// # }
    /// ```
    pub fn password_grant(mut self, enabled: bool) -> Self {
        self.user_grants.password_enabled = enabled;
        self
    }

    /// Failed-login limits per username (the per-address limits are
    /// [`address_limits`](Self::address_limits)).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::limiter::LimiterConfig;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example")
    ///     .user_limits(LimiterConfig::default().with_free_failures(3));
    /// # let _ = b;
    /// ```
    pub fn user_limits(mut self, cfg: LimiterConfig) -> Self {
        self.user_grants.user_limits = cfg;
        self
    }

    /// The revocation endpoint path (default `/oauth2/revoke`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").revoke_path("/revoke").build().await.unwrap();
    /// assert_eq!(s.metadata()["revocation_endpoint"], "https://a.example/revoke");
    /// # }
    /// ```
    pub fn revoke_path(mut self, path: impl Into<String>) -> Self {
        self.user_grants.revoke_path = path.into();
        self
    }

    /// The introspection endpoint path (default `/oauth2/introspect`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").introspect_path("/introspect").build().await.unwrap();
    /// assert_eq!(s.metadata()["introspection_endpoint"], "https://a.example/introspect");
    /// # }
    /// ```
    pub fn introspect_path(mut self, path: impl Into<String>) -> Self {
        self.user_grants.introspect_path = path.into();
        self
    }
}

impl AuthorizationServer {
    /// A role or permission change for `user_id`: moves its policy version in the shared
    /// source ([`with_policy_versions`](AuthorizationServerBuilder::with_policy_versions)), so
    /// `PolicyVersionLayer` refuses the user's older tokens at once, and the next refresh
    /// issues a token with the new `pv` (the larger of this source and the user store's `pv`).
    /// Returns the new version: one more than the larger of the source's and the user store's.
    /// With `store: redis` (from configuration) the source is the
    /// [`RedisPolicyVersions`](crate::store::RedisPolicyVersions) of `security.redis`, which
    /// services configured with the same `security.redis` read. Without a shared source, the
    /// version is kept in memory by this server only (its tokens
    /// carry it; services see it only through a shared source). The user store's own `pv` is
    /// the store's business (e.g. [`MemoryUserStore::bump_pv`]): tokens carry the larger of
    /// the two.
    ///
    /// # Example
    ///
    /// See [`AuthorizationServerBuilder::with_policy_versions`].
    ///
    /// # Errors
    ///
    /// The source could not be written.
    pub async fn bump_policy_version(&self, user_id: &str) -> Result<i64, BoxError> {
        let g = &self.shared.user_grants;
        let store_pv = match &g.users {
            Some(u) => u.find_by_id(user_id).await?.map_or(0, |u| u.pv),
            None => 0,
        };
        let current = g.policy.current(user_id).await?.unwrap_or(0);
        let next = current.max(store_pv).saturating_add(1);
        g.policy.set_version(user_id, next).await?;
        crate::issuer::audit::audit!(Some(&self.shared.audit), info, "policy_version_bumped", "bumped"; uid = user_id, pv = next, "policy version bumped");
        Ok(next)
    }

    /// The grant store (refresh-token families, revoked `jti`s).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").build().await.unwrap();
    /// assert_eq!(s.grant_store().stats(0).await.unwrap().active_families, 0);
    /// # }
    /// ```
    pub fn grant_store(&self) -> &Arc<dyn GrantStore> {
        &self.shared.user_grants.store
    }
}
