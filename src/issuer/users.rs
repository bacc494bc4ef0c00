//! Users: the `UserStore` trait and its YAML / in-memory stores.
//!
//! The password grant looks a user up by username ([`UserStore::find_by_username`]); a refresh
//! reloads the user by id ([`UserStore::find_by_id`]) so that new roles, permissions, tenant and
//! policy version (`pv`) reach the next token, and a missing or disabled user ends the grant.
//! After a successful login with a hash in an older format, the grant calls
//! [`UserStore::update_password_hash`] (a store that cannot write answers `Ok(false)`).
//!
//! [`MemoryUserStore`] serves tests, the demo and the YAML `authorization-server.users` list;
//! production implements [`UserStore`] over its own user database.
//!
//! # Example
//!
//! ```
//! use tower_bearer::issuer::password::PasswordHash;
//! use tower_bearer::issuer::users::{MemoryUserStore, User, UserStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let alice = User::new("1001", "alice")
//!     .with_tenant("acme")
//!     .with_roles(["user"])
//!     .with_permissions(["orders.read"])
//!     .with_password_hash(PasswordHash::parse(
//!         "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.",
//!     ).unwrap());
//! let store = MemoryUserStore::from_users([alice]).unwrap();
//!
//! let found = store.find_by_username("alice").await.unwrap().unwrap();
//! assert_eq!(found.user_id, "1001");
//! assert_eq!(found.tenant.as_deref(), Some("acme"));
//!
//! // An admin changes alice's roles: the policy version moves, the next refresh sees both.
//! store.set_roles("1001", ["admin"]);
//! assert_eq!(store.bump_pv("1001"), Some(2));
//! let reloaded = store.find_by_id("1001").await.unwrap().unwrap();
//! assert_eq!((reloaded.roles, reloaded.pv), (vec!["admin".to_owned()], 2));
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::ConfigError;
use crate::http_client::BoxFuture;
use crate::issuer::password::PasswordHash;
use crate::store::StoreError;

/// A user as the issuer sees it: identity, authorization data and the password hash.
///
/// `Debug` shows the password hash's scheme only. See the
/// [module docs](crate::issuer::users) for an example.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::users::User;
///
/// let u = User::new("1001", "alice").with_pv(7).with_enabled(false);
/// assert_eq!((u.pv, u.enabled), (7, false));
/// assert!(u.password_hash.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Stable user id: the token's `uid` claim (and `sub`).
    pub user_id: String,
    /// Login name.
    pub username: String,
    /// Tenant: the token's `tenant` claim.
    pub tenant: Option<String>,
    /// Policy version: the token's `pv` claim (seed 003); bump it when roles change.
    pub pv: i64,
    /// Roles (without `ROLE_`).
    pub roles: Vec<String>,
    /// Permissions.
    pub permissions: Vec<String>,
    /// A disabled user cannot log in, and its refresh-token families end at the next refresh.
    pub enabled: bool,
    /// The stored password hash; `None` for a user that cannot log in with a password.
    pub password_hash: Option<PasswordHash>,
}

impl User {
    /// An enabled user with `pv` 1 and no tenant, roles, permissions or password.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::User;
    ///
    /// let u = User::new("1001", "alice");
    /// assert_eq!((u.user_id.as_str(), u.username.as_str(), u.pv, u.enabled), ("1001", "alice", 1, true));
    /// ```
    pub fn new(user_id: impl Into<String>, username: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            username: username.into(),
            tenant: None,
            pv: 1,
            roles: Vec::new(),
            permissions: Vec::new(),
            enabled: true,
            password_hash: None,
        }
    }

    /// Sets the tenant.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::User;
    ///
    /// assert_eq!(User::new("1", "a").with_tenant("acme").tenant.as_deref(), Some("acme"));
    /// ```
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the policy version.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::User;
    ///
    /// assert_eq!(User::new("1", "a").with_pv(3).pv, 3);
    /// ```
    #[must_use]
    pub fn with_pv(mut self, pv: i64) -> Self {
        self.pv = pv;
        self
    }

    /// Sets the roles.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::User;
    ///
    /// assert_eq!(User::new("1", "a").with_roles(["user", "admin"]).roles, ["user", "admin"]);
    /// ```
    #[must_use]
    pub fn with_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the permissions.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::User;
    ///
    /// assert_eq!(User::new("1", "a").with_permissions(["orders.read"]).permissions, ["orders.read"]);
    /// ```
    #[must_use]
    pub fn with_permissions<I, S>(mut self, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions = permissions.into_iter().map(Into::into).collect();
        self
    }

    /// Enables or disables the user.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::User;
    ///
    /// assert!(!User::new("1", "a").with_enabled(false).enabled);
    /// ```
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the password hash.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::password::PasswordHash;
    /// use tower_bearer::issuer::users::User;
    ///
    /// let h = PasswordHash::parse("{sha256}627d3eb97bfb9bfd21307d84408b5e199aac37ad5065d81e14d1a60c2c48c4e0b4f51d3d6973b92f").unwrap();
    /// assert!(User::new("1", "a").with_password_hash(h).password_hash.is_some());
    /// ```
    #[must_use]
    pub fn with_password_hash(mut self, hash: PasswordHash) -> Self {
        self.password_hash = Some(hash);
        self
    }
}

/// Where the issuer finds users. Object-safe and asynchronous: every method returns a
/// [`BoxFuture`] that owns what it needs (`Send + 'static`), so a database-backed store can
/// clone its pool into the future.
///
/// Errors are genuine failures (the database is down): the token endpoint answers them with
/// `server_error` / 500 rather than `invalid_grant`. An unknown user is `Ok(None)`.
///
/// See the [module docs](crate::issuer::users) for an example.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::issuer::users::{MemoryUserStore, User, UserStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store: Arc<dyn UserStore> = Arc::new(MemoryUserStore::from_users([User::new("1", "bob")]).unwrap());
/// assert!(store.find_by_username("nobody").await.unwrap().is_none());
/// assert_eq!(store.find_by_id("1").await.unwrap().unwrap().username, "bob");
/// # }
/// ```
pub trait UserStore: Send + Sync + fmt::Debug + 'static {
    /// The user who logs in as `username` (exact match), if any.
    fn find_by_username(
        &self,
        username: &str,
    ) -> BoxFuture<'static, Result<Option<User>, StoreError>>;

    /// The user with id `user_id` (exact match), if any: used to reload a user on refresh.
    fn find_by_id(&self, user_id: &str) -> BoxFuture<'static, Result<Option<User>, StoreError>>;

    /// Whether [`update_password_hash`](UserStore::update_password_hash) can store anything.
    /// The issuer re-hashes an outdated password hash on login only when this is `true`, so a
    /// read-only store never pays for a hash it would throw away. The default is `false`;
    /// override it together with `update_password_hash`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, UserStore};
    ///
    /// assert!(MemoryUserStore::default().can_update_password_hash());
    /// ```
    fn can_update_password_hash(&self) -> bool {
        false
    }

    /// Replaces the password hash of `user_id` (re-hash on login after an upgrade); `Ok(true)`
    /// when stored. The default cannot write and answers `Ok(false)`.
    fn update_password_hash(
        &self,
        user_id: &str,
        new: PasswordHash,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let _ = (user_id, new);
        Box::pin(async { Ok(false) })
    }
}

impl<T: UserStore + ?Sized> UserStore for Arc<T> {
    fn find_by_username(
        &self,
        username: &str,
    ) -> BoxFuture<'static, Result<Option<User>, StoreError>> {
        (**self).find_by_username(username)
    }

    fn find_by_id(&self, user_id: &str) -> BoxFuture<'static, Result<Option<User>, StoreError>> {
        (**self).find_by_id(user_id)
    }

    fn can_update_password_hash(&self) -> bool {
        (**self).can_update_password_hash()
    }

    fn update_password_hash(
        &self,
        user_id: &str,
        new: PasswordHash,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        (**self).update_password_hash(user_id, new)
    }
}

/// Users in memory (tests, the demo, the YAML `users:` list). Cheap to clone: clones share the
/// users, so a test or the demo keeps a clone to change roles while the issuer serves.
///
/// Usernames and user ids are matched exactly (case-sensitive) and must be unique.
///
/// # Example
///
/// ```
/// use tower_bearer::issuer::users::{MemoryUserStore, User};
///
/// let store = MemoryUserStore::new();
/// store.insert(User::new("1", "alice")).unwrap();
/// assert!(store.insert(User::new("2", "alice")).is_err()); // username taken
/// assert!(store.set_enabled("1", false));
/// assert!(!store.get("1").unwrap().enabled);
/// assert_eq!(store.len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct MemoryUserStore {
    inner: Arc<RwLock<Users>>,
}

#[derive(Default)]
struct Users {
    by_id: HashMap<String, User>,
    id_by_username: HashMap<String, String>,
}

impl fmt::Debug for MemoryUserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryUserStore")
            .field("users", &self.read().by_id.len())
            .finish()
    }
}

impl MemoryUserStore {
    /// An empty store.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::MemoryUserStore;
    ///
    /// assert!(MemoryUserStore::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `users`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let err = MemoryUserStore::from_users([User::new("1", "a"), User::new("1", "b")]).unwrap_err();
    /// assert!(err.to_string().contains("duplicate user id `1`"));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn from_users(users: impl IntoIterator<Item = User>) -> Result<Self, ConfigError> {
        let store = Self::new();
        for user in users {
            store.insert(user)?;
        }
        Ok(store)
    }

    fn read(&self) -> RwLockReadGuard<'_, Users> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Users> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a user.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::new();
    /// store.insert(User::new("1", "alice")).unwrap();
    /// assert!(store.insert(User::new("", "bob")).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] (name `users`) for an empty id or username, or an id or username
    /// already present.
    pub fn insert(&self, user: User) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError::Invalid {
            name: "users",
            reason,
        };
        if user.user_id.is_empty() {
            return Err(err(format!("user `{}`: empty uid", user.username)));
        }
        if user.username.is_empty() {
            return Err(err(format!("user id `{}`: empty username", user.user_id)));
        }
        let mut users = self.write();
        if users.by_id.contains_key(&user.user_id) {
            return Err(err(format!("duplicate user id `{}`", user.user_id)));
        }
        if users.id_by_username.contains_key(&user.username) {
            return Err(err(format!("duplicate username `{}`", user.username)));
        }
        users
            .id_by_username
            .insert(user.username.clone(), user.user_id.clone());
        users.by_id.insert(user.user_id.clone(), user);
        Ok(())
    }

    /// Removes a user; `true` when it was there.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::from_users([User::new("1", "a")]).unwrap();
    /// assert!(store.remove("1"));
    /// assert!(!store.remove("1"));
    /// ```
    pub fn remove(&self, user_id: &str) -> bool {
        let mut users = self.write();
        match users.by_id.remove(user_id) {
            Some(u) => {
                users.id_by_username.remove(&u.username);
                true
            }
            None => false,
        }
    }

    /// A copy of the user with id `user_id`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::from_users([User::new("1", "a")]).unwrap();
    /// assert_eq!(store.get("1").unwrap().username, "a");
    /// assert!(store.get("2").is_none());
    /// ```
    pub fn get(&self, user_id: &str) -> Option<User> {
        self.read().by_id.get(user_id).cloned()
    }

    /// A copy of the user who logs in as `username`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::from_users([User::new("1", "alice")]).unwrap();
    /// assert_eq!(store.get_by_username("alice").unwrap().user_id, "1");
    /// assert!(store.get_by_username("Alice").is_none());
    /// ```
    pub fn get_by_username(&self, username: &str) -> Option<User> {
        let users = self.read();
        let id = users.id_by_username.get(username)?;
        users.by_id.get(id).cloned()
    }

    fn update(&self, user_id: &str, f: impl FnOnce(&mut User)) -> bool {
        match self.write().by_id.get_mut(user_id) {
            Some(u) => {
                f(u);
                true
            }
            None => false,
        }
    }

    /// Replaces the roles of `user_id`; `false` when there is no such user. Does not bump
    /// `pv` (call [`bump_pv`](Self::bump_pv) too, or tokens with the old roles stay valid).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::from_users([User::new("1", "a")]).unwrap();
    /// assert!(store.set_roles("1", ["admin"]));
    /// assert_eq!(store.get("1").unwrap().roles, ["admin"]);
    /// assert!(!store.set_roles("2", ["admin"]));
    /// ```
    pub fn set_roles<I, S>(&self, user_id: &str, roles: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let roles: Vec<String> = roles.into_iter().map(Into::into).collect();
        self.update(user_id, |u| u.roles = roles)
    }

    /// Replaces the permissions of `user_id`; `false` when there is no such user.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::from_users([User::new("1", "a")]).unwrap();
    /// assert!(store.set_permissions("1", ["orders.write"]));
    /// assert_eq!(store.get("1").unwrap().permissions, ["orders.write"]);
    /// ```
    pub fn set_permissions<I, S>(&self, user_id: &str, permissions: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let permissions: Vec<String> = permissions.into_iter().map(Into::into).collect();
        self.update(user_id, |u| u.permissions = permissions)
    }

    /// Increments the policy version of `user_id` and returns the new one.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::from_users([User::new("1", "a").with_pv(4)]).unwrap();
    /// assert_eq!(store.bump_pv("1"), Some(5));
    /// assert_eq!(store.bump_pv("2"), None);
    /// ```
    pub fn bump_pv(&self, user_id: &str) -> Option<i64> {
        let mut pv = None;
        self.update(user_id, |u| {
            u.pv = u.pv.saturating_add(1);
            pv = Some(u.pv);
        });
        pv
    }

    /// Enables or disables `user_id`; `false` when there is no such user.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::from_users([User::new("1", "a")]).unwrap();
    /// assert!(store.set_enabled("1", false));
    /// assert!(!store.get("1").unwrap().enabled);
    /// ```
    pub fn set_enabled(&self, user_id: &str, enabled: bool) -> bool {
        self.update(user_id, |u| u.enabled = enabled)
    }

    /// Sets the tenant of `user_id` (`None` removes it); `false` when there is no such user.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// let store = MemoryUserStore::from_users([User::new("1", "a")]).unwrap();
    /// assert!(store.set_tenant("1", Some("globex")));
    /// assert_eq!(store.get("1").unwrap().tenant.as_deref(), Some("globex"));
    /// ```
    pub fn set_tenant(&self, user_id: &str, tenant: Option<&str>) -> bool {
        let tenant = tenant.map(str::to_owned);
        self.update(user_id, |u| u.tenant = tenant)
    }

    /// How many users.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::{MemoryUserStore, User};
    ///
    /// assert_eq!(MemoryUserStore::from_users([User::new("1", "a")]).unwrap().len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// `true` when there are no users.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::users::MemoryUserStore;
    ///
    /// assert!(MemoryUserStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.read().by_id.is_empty()
    }
}

impl UserStore for MemoryUserStore {
    fn find_by_username(
        &self,
        username: &str,
    ) -> BoxFuture<'static, Result<Option<User>, StoreError>> {
        let user = self.get_by_username(username);
        Box::pin(async move { Ok(user) })
    }

    fn find_by_id(&self, user_id: &str) -> BoxFuture<'static, Result<Option<User>, StoreError>> {
        let user = self.get(user_id);
        Box::pin(async move { Ok(user) })
    }

    fn can_update_password_hash(&self) -> bool {
        true
    }

    fn update_password_hash(
        &self,
        user_id: &str,
        new: PasswordHash,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let done = self.update(user_id, |u| u.password_hash = Some(new));
        Box::pin(async move { Ok(done) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::password::PasswordHasher;

    const BCRYPT: &str = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";

    #[derive(Debug)]
    struct ReadOnly(MemoryUserStore);

    impl UserStore for ReadOnly {
        fn find_by_username(
            &self,
            username: &str,
        ) -> BoxFuture<'static, Result<Option<User>, StoreError>> {
            self.0.find_by_username(username)
        }

        fn find_by_id(
            &self,
            user_id: &str,
        ) -> BoxFuture<'static, Result<Option<User>, StoreError>> {
            self.0.find_by_id(user_id)
        }
    }

    fn alice() -> User {
        User::new("1001", "alice")
            .with_tenant("acme")
            .with_roles(["user"])
            .with_permissions(["orders.read"])
            .with_password_hash(PasswordHash::parse(BCRYPT).unwrap())
    }

    #[tokio::test]
    async fn login_then_upgrade_hash_on_success() {
        let store = MemoryUserStore::from_users([alice()]).unwrap();
        let dyn_store: Arc<dyn UserStore> = Arc::new(store.clone());
        let hasher = PasswordHasher::new(2);

        let user = dyn_store.find_by_username("alice").await.unwrap().unwrap();
        let hash = user.password_hash.as_ref().unwrap();
        assert!(hasher.verify(b"correct horse", Some(hash)).await);
        assert!(hasher.needs_upgrade(hash));
        let new = PasswordHash::parse(&hasher.hash(b"correct horse").await.unwrap()).unwrap();
        assert!(
            dyn_store
                .update_password_hash("1001", new.clone())
                .await
                .unwrap()
        );

        let again = dyn_store.find_by_id("1001").await.unwrap().unwrap();
        let stored = again.password_hash.unwrap();
        assert_eq!(stored, new);
        assert!(!hasher.needs_upgrade(&stored));
        assert!(hasher.verify(b"correct horse", Some(&stored)).await);
        // Unknown user for update: nothing stored.
        assert!(!dyn_store.update_password_hash("9", new).await.unwrap());
    }

    #[tokio::test]
    async fn default_update_is_unsupported() {
        let ro = ReadOnly(MemoryUserStore::from_users([alice()]).unwrap());
        // The issuer asks before it spends a hash on a store that cannot keep it.
        assert!(!ro.can_update_password_hash());
        let arc: Arc<dyn UserStore> = Arc::new(MemoryUserStore::default());
        assert!(arc.can_update_password_hash());
        let new = PasswordHash::parse(BCRYPT).unwrap();
        assert!(!ro.update_password_hash("1001", new).await.unwrap());
        assert!(ro.find_by_username("alice").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn changes_visible_through_clones_and_lookups_exact() {
        let store = MemoryUserStore::from_users([alice(), User::new("1002", "bob")]).unwrap();
        let served = store.clone();
        assert!(store.set_roles("1001", ["admin"]));
        assert!(store.set_permissions("1001", ["orders.write"]));
        assert_eq!(store.bump_pv("1001"), Some(2));
        assert!(store.set_enabled("1001", false));
        assert!(store.set_tenant("1001", None));
        let u = served.find_by_id("1001").await.unwrap().unwrap();
        assert_eq!(u.roles, ["admin"]);
        assert_eq!(u.permissions, ["orders.write"]);
        assert_eq!(u.pv, 2);
        assert!(!u.enabled);
        assert!(u.tenant.is_none());
        assert!(served.find_by_username("ALICE").await.unwrap().is_none());
        assert!(served.find_by_username("alice ").await.unwrap().is_none());
        assert!(served.find_by_id("100").await.unwrap().is_none());
        assert!(store.remove("1001"));
        assert!(served.find_by_username("alice").await.unwrap().is_none());
        // The username is free again.
        store.insert(User::new("2001", "alice")).unwrap();
        assert_eq!(
            served
                .find_by_username("alice")
                .await
                .unwrap()
                .unwrap()
                .user_id,
            "2001"
        );
    }

    #[test]
    fn insert_refuses_duplicates_and_empty() {
        let store = MemoryUserStore::from_users([alice()]).unwrap();
        for (u, want) in [
            (User::new("1001", "other"), "duplicate user id `1001`"),
            (User::new("1003", "alice"), "duplicate username `alice`"),
            (User::new("", "x"), "empty uid"),
            (User::new("1004", ""), "empty username"),
        ] {
            let err = store.insert(u).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn debug_hides_password_hash() {
        let d = format!("{:?}", alice());
        assert!(d.contains("Bcrypt"), "{d}");
        assert!(!d.contains("mujHHrcaU"), "{d}");
        assert_eq!(
            format!("{:?}", MemoryUserStore::from_users([alice()]).unwrap()),
            "MemoryUserStore { users: 1 }"
        );
    }
}
