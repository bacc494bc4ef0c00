//! What handlers read: [`CurrentUser`], built once from verified claims, and the
//! [`Authentication`] marker the layers put into request extensions.
//!
//! Scopes, roles, permissions and the token's own `authorities` are separate typed sets: a
//! scope check reads only scopes, a role check only roles. [`CurrentUser::has_authority`] sees
//! Spring-style names: `SCOPE_<scope>`, `ROLE_<role>`, permissions, and the `authorities` claim
//! when merging is configured (never a value of it starting with `SCOPE_` or `ROLE_`).
//!
//! # Example
//!
//! ```
//! use tower_bearer::claims::{ClaimMapping, CurrentUser};
//!
//! let claims = serde_json::json!({
//!     "iss": "https://auth.example", "sub": "alice", "uid": 42, "tenant": "t1", "pv": 3,
//!     "scope": "orders.read orders.write", "roles": ["admin"],
//!     "permissions": ["order:delete"], "exp": 2000000000, "aud": "api"
//! });
//! let user = CurrentUser::from_claims(
//!     claims.as_object().unwrap().clone(),
//!     &ClaimMapping::default().compile(),
//! )
//! .unwrap();
//! assert_eq!(user.user_id(), Some("42"));
//! assert!(user.has_scope("orders.read"));
//! assert!(user.has_authority("SCOPE_orders.write"));
//! assert!(user.has_authority("ROLE_admin"));
//! assert!(user.has_authority("order:delete"));
//! assert!(!user.has_role("orders.read"));
//! assert_eq!(user.policy_version(), Some(3));
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::error::TokenError;

/// Which claims hold the user id, roles, permissions and tenant (`security.resource-server.claims`).
///
/// Names may be dotted paths into nested objects, e.g. Keycloak's `realm_access.roles`.
///
/// # Example
///
/// ```
/// use tower_bearer::claims::{ClaimMapping, CurrentUser};
///
/// let mapping = ClaimMapping { roles: "realm_access.roles".into(), ..ClaimMapping::default() };
/// let claims = serde_json::json!({"sub": "alice", "realm_access": {"roles": ["admin"]}});
/// let user = CurrentUser::from_claims(claims.as_object().unwrap().clone(), &mapping.compile())
///     .unwrap();
/// assert!(user.has_role("admin"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// The user id claim; falls back to `sub`. Default `uid`.
    pub user_id: String,
    /// The roles claim. Default `roles`.
    pub roles: String,
    /// The permissions claim. Default `permissions`.
    pub permissions: String,
    /// The tenant claim. Default `tenant`.
    pub tenant: String,
    /// Merge the token's `authorities` claim into [`CurrentUser::has_authority`]. Default `false`.
    pub merge_authorities_claim: bool,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            user_id: "uid".into(),
            roles: "roles".into(),
            permissions: "permissions".into(),
            tenant: "tenant".into(),
            merge_authorities_claim: false,
        }
    }
}

impl ClaimMapping {
    /// Splits the dotted paths once.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::{ClaimMapping, CurrentUser};
    ///
    /// let compiled = ClaimMapping { tenant: "org.id".into(), ..ClaimMapping::default() }.compile();
    /// let claims = serde_json::json!({"sub": "bob", "org": {"id": "acme"}});
    /// let user = CurrentUser::from_claims(claims.as_object().unwrap().clone(), &compiled).unwrap();
    /// assert_eq!(user.tenant(), Some("acme"));
    /// ```
    pub fn compile(&self) -> CompiledMapping {
        CompiledMapping(Arc::new(self.compile_inner()))
    }

    fn compile_inner(&self) -> MappingInner {
        // The whole name first (Auth0 namespaced claims hold dots), then the dotted path.
        let split = |s: &str| {
            std::iter::once(s.to_owned())
                .chain(s.split('.').map(str::to_owned))
                .collect::<Vec<_>>()
        };
        MappingInner {
            user_id: split(&self.user_id),
            roles: split(&self.roles),
            permissions: split(&self.permissions),
            tenant: split(&self.tenant),
            merge_authorities: self.merge_authorities_claim,
        }
    }
}

/// A [`ClaimMapping`] with its paths split, ready for every request. Cheap to clone.
///
/// # Example
///
/// ```
/// use tower_bearer::claims::{ClaimMapping, CompiledMapping, CurrentUser};
///
/// let compiled: CompiledMapping = ClaimMapping::default().compile();
/// let claims = serde_json::json!({"sub": "alice", "uid": "u-1"});
/// let user = CurrentUser::from_claims(claims.as_object().unwrap().clone(), &compiled.clone())
///     .unwrap();
/// assert_eq!(user.user_id(), Some("u-1"));
/// ```
#[derive(Debug, Clone)]
pub struct CompiledMapping(Arc<MappingInner>);

#[derive(Debug)]
struct MappingInner {
    user_id: Vec<String>,
    roles: Vec<String>,
    permissions: Vec<String>,
    tenant: Vec<String>,
    merge_authorities: bool,
}

/// The authenticated caller, built from verified claims. Cheap to clone.
///
/// See the [module docs](crate::claims) for a fuller example.
///
/// # Example
///
/// ```
/// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
/// # let claims = serde_json::json!({"sub": "alice", "roles": ["admin"]});
/// # let user = CurrentUser::from_claims(
/// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
/// let copy = user.clone(); // cheap: shares the claims
/// assert_eq!(copy.subject(), Some("alice"));
/// assert!(copy.has_role("admin"));
/// ```
#[derive(Clone)]
pub struct CurrentUser(Arc<UserInner>);

/// The sets (scopes, roles, ...) are validated when the user is built and split, sorted and
/// kept on first use, so a request that never asks for them never pays for them.
struct UserInner {
    subject: Option<String>,
    /// The user id as handlers and headers see it: `prefix:id` when the issuer has a prefix.
    user_id: Option<String>,
    /// The user id claim (else `sub`) as the issuer wrote it.
    local_user_id: Option<String>,
    issuer_prefix: Option<Arc<str>>,
    service_tokens: bool,
    user_id_claim: bool,
    tenant: Option<String>,
    policy_version: Option<i64>,
    client_id: Option<String>,
    expires_at: u64,
    claims: Map<String, Value>,
    mapping: CompiledMapping,
    audiences: OnceLock<Vec<String>>,
    scopes: OnceLock<Vec<String>>,
    roles: OnceLock<Vec<String>>,
    permissions: OnceLock<Vec<String>>,
    token_authorities: OnceLock<Vec<String>>,
    all_authorities: OnceLock<Vec<String>>,
}

/// What the authentication layer decided for a request (in request extensions).
///
/// # Example
///
/// ```
/// use tower_bearer::claims::Authentication;
///
/// let auth = Authentication::Anonymous;
/// assert!(auth.user().is_none());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Authentication {
    /// A verified token.
    User(CurrentUser),
    /// No credentials (optional mode only).
    Anonymous,
}

impl Authentication {
    /// The user, if authenticated.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// use tower_bearer::claims::Authentication;
    ///
    /// let auth = Authentication::User(user);
    /// assert_eq!(auth.user().and_then(|u| u.subject()), Some("alice"));
    /// ```
    pub fn user(&self) -> Option<&CurrentUser> {
        match self {
            Self::User(u) => Some(u),
            Self::Anonymous => None,
        }
    }
}

/// `path[0]` is the whole claim name, `path[1..]` its dotted segments.
fn path<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (whole, segments) = path.split_first()?;
    if let Some(v) = claims.get(whole) {
        return Some(v);
    }
    if segments.len() < 2 {
        return None;
    }
    let (first, rest) = segments.split_first()?;
    let mut cur = claims.get(first)?;
    for seg in rest {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

/// A string, or a number rendered as a string (ids are often numeric).
fn string_like(v: Option<&Value>) -> Result<Option<String>, TokenError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

/// Checks that `v` can be read by [`string_set`], without building it.
fn check_set(v: Option<&Value>) -> Result<(), TokenError> {
    match v {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

/// An array of strings, or one space-delimited string; sorted and deduplicated.
fn string_set(v: Option<&Value>) -> Result<Vec<String>, TokenError> {
    let mut out: Vec<String> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or(TokenError::InvalidClaim)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(TokenError::InvalidClaim),
    };
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// What the verifier knows about the issuer of a token: its identity prefix and whether it may
/// mint service tokens.
#[derive(Debug, Clone)]
pub(crate) struct IssuerBinding {
    pub(crate) prefix: Option<Arc<str>>,
    pub(crate) service_tokens: bool,
}

impl Default for IssuerBinding {
    fn default() -> Self {
        Self {
            prefix: None,
            service_tokens: true,
        }
    }
}

fn contains(set: &[String], item: &str) -> bool {
    set.binary_search_by(|s| s.as_str().cmp(item)).is_ok()
}

impl CurrentUser {
    /// Builds the user from verified claims.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// use tower_bearer::error::TokenError;
    ///
    /// let mapping = ClaimMapping::default().compile();
    /// let ok = serde_json::json!({"sub": "alice", "scope": "read"});
    /// assert!(CurrentUser::from_claims(ok.as_object().unwrap().clone(), &mapping).is_ok());
    /// let bad = serde_json::json!({"sub": "alice", "roles": 7});
    /// let err = CurrentUser::from_claims(bad.as_object().unwrap().clone(), &mapping).unwrap_err();
    /// assert_eq!(err, TokenError::InvalidClaim);
    /// ```
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidClaim`] when a well-known claim has the wrong JSON type,
    /// [`TokenError::InvalidIssuer`] when `iss` is not a string.
    pub fn from_claims(
        claims: Map<String, Value>,
        mapping: &CompiledMapping,
    ) -> Result<Self, TokenError> {
        Self::from_claims_bound(claims, mapping, &IssuerBinding::default())
    }

    /// As [`CurrentUser::from_claims`], for a token of an issuer with this binding.
    pub(crate) fn from_claims_bound(
        claims: Map<String, Value>,
        mapping: &CompiledMapping,
        binding: &IssuerBinding,
    ) -> Result<Self, TokenError> {
        let subject = string_like(claims.get("sub"))?;
        let claimed_user_id = string_like(path(&claims, &mapping.0.user_id))?;
        let user_id_claim = claimed_user_id.is_some();
        let local_user_id = claimed_user_id.or_else(|| subject.clone());
        let user_id = match (&binding.prefix, &local_user_id) {
            (Some(p), Some(id)) => Some(format!("{p}:{id}")),
            _ => local_user_id.clone(),
        };
        let tenant = string_like(path(&claims, &mapping.0.tenant))?;
        let policy_version = match claims.get("pv") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_i64().ok_or(TokenError::InvalidClaim)?),
            Some(Value::String(s)) => Some(s.parse().map_err(|_| TokenError::InvalidClaim)?),
            Some(_) => return Err(TokenError::InvalidClaim),
        };
        let client_id = string_like(claims.get("client_id"))?;
        if !matches!(claims.get("iss"), None | Some(Value::String(_))) {
            return Err(TokenError::InvalidIssuer);
        }
        check_set(claims.get("aud")).map_err(|_| TokenError::InvalidAudience)?;
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map_or(0, |f| f.max(0.0) as u64);
        check_set(claims.get("scope"))?;
        check_set(claims.get("scp"))?;
        check_set(path(&claims, &mapping.0.roles))?;
        check_set(path(&claims, &mapping.0.permissions))?;
        if mapping.0.merge_authorities {
            check_set(claims.get("authorities"))?;
        }
        Ok(Self(Arc::new(UserInner {
            subject,
            user_id,
            local_user_id,
            issuer_prefix: binding.prefix.clone(),
            service_tokens: binding.service_tokens,
            user_id_claim,
            tenant,
            policy_version,
            client_id,
            expires_at,
            claims,
            mapping: mapping.clone(),
            audiences: OnceLock::new(),
            scopes: OnceLock::new(),
            roles: OnceLock::new(),
            permissions: OnceLock::new(),
            token_authorities: OnceLock::new(),
            all_authorities: OnceLock::new(),
        })))
    }

    /// A set claim, already validated at construction.
    fn set<'a>(
        &'a self,
        cell: &'a OnceLock<Vec<String>>,
        v: impl FnOnce(&Map<String, Value>) -> Option<&Value>,
    ) -> &'a [String] {
        cell.get_or_init(|| string_set(v(&self.0.claims)).unwrap_or_default())
    }

    /// The `sub` claim.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.subject(), Some("alice"));
    /// ```
    pub fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }
    /// The user id claim (default `uid`), else `sub`; with several issuers configured and a
    /// prefix for the token's issuer, `prefix:id` (RFC 7519 §4.1.2: `sub` is unique only within
    /// its issuer). This is the id of the policy-version check and of the `X-User-Id` header.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "uid": 42});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.user_id(), Some("42"));
    /// ```
    pub fn user_id(&self) -> Option<&str> {
        self.0.user_id.as_deref()
    }
    /// The user id as the issuer wrote it (user id claim, else `sub`), without the issuer
    /// prefix. Unique only together with [`CurrentUser::issuer`].
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "uid": 42});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.local_user_id(), Some("42"));
    /// assert_eq!(user.issuer_prefix(), None);
    /// ```
    pub fn local_user_id(&self) -> Option<&str> {
        self.0.local_user_id.as_deref()
    }
    /// The prefix of the token's issuer in [`CurrentUser::user_id`] (set by the verifier when
    /// several issuers are configured and the issuer has one).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// // Built directly (not by a verifier): no issuer prefix.
    /// assert_eq!(user.issuer_prefix(), None);
    /// ```
    pub fn issuer_prefix(&self) -> Option<&str> {
        self.0.issuer_prefix.as_deref()
    }
    /// Whether the token's issuer may mint service tokens (per issuer `service-tokens`; by
    /// default only the first configured issuer). A [`ServiceTokenRule`] never matches a token
    /// of an issuer that may not.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// // Built directly (not by a verifier): allowed.
    /// assert!(user.issuer_may_mint_service_tokens());
    /// ```
    pub fn issuer_may_mint_service_tokens(&self) -> bool {
        self.0.service_tokens
    }
    /// Whether the token carries the user id claim itself (not only `sub`).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.user_id(), Some("alice"));
    /// assert!(!user.has_user_id_claim());
    /// ```
    pub fn has_user_id_claim(&self) -> bool {
        self.0.user_id_claim
    }
    /// The tenant claim.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "tenant": "acme"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.tenant(), Some("acme"));
    /// ```
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }
    /// The policy version claim `pv`.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "pv": 3});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.policy_version(), Some(3));
    /// ```
    pub fn policy_version(&self) -> Option<i64> {
        self.0.policy_version
    }
    /// The `client_id` claim.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "svc", "client_id": "billing"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.client_id(), Some("billing"));
    /// ```
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }
    /// The `iss` claim.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"iss": "https://auth.example", "sub": "alice"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.issuer(), "https://auth.example");
    /// ```
    pub fn issuer(&self) -> &str {
        self.0
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    /// The `aud` claim as a list.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "aud": "orders"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.audiences(), ["orders"]);
    /// ```
    pub fn audiences(&self) -> &[String] {
        self.set(&self.0.audiences, |c| c.get("aud"))
    }
    /// The `exp` claim (Unix seconds).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "exp": 2000000000});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.expires_at(), 2_000_000_000);
    /// ```
    pub fn expires_at(&self) -> u64 {
        self.0.expires_at
    }
    /// Scopes from `scope` (or `scp`), sorted.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "scope": "write read"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.scopes(), ["read", "write"]);
    /// ```
    pub fn scopes(&self) -> &[String] {
        // `scope` wins over `scp` when both are present.
        self.set(&self.0.scopes, |c| match c.get("scope") {
            Some(v) if !v.is_null() => Some(v),
            _ => c.get("scp"),
        })
    }
    /// Roles, sorted.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "roles": ["user", "admin"]});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.roles(), ["admin", "user"]);
    /// ```
    pub fn roles(&self) -> &[String] {
        let mapping = self.0.mapping.clone();
        self.set(&self.0.roles, move |c| path(c, &mapping.0.roles))
    }
    /// Permissions, sorted.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "permissions": ["order:read"]});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.permissions(), ["order:read"]);
    /// ```
    pub fn permissions(&self) -> &[String] {
        let mapping = self.0.mapping.clone();
        self.set(&self.0.permissions, move |c| {
            path(c, &mapping.0.permissions)
        })
    }

    /// The token's own `authorities` when merging is configured, without any `SCOPE_`/`ROLE_`
    /// value (a token cannot grant itself scopes or roles that way).
    fn token_authorities(&self) -> &[String] {
        self.0.token_authorities.get_or_init(|| {
            if !self.0.mapping.0.merge_authorities {
                return Vec::new();
            }
            let mut a = string_set(self.0.claims.get("authorities")).unwrap_or_default();
            a.retain(|s| !s.starts_with("SCOPE_") && !s.starts_with("ROLE_"));
            a
        })
    }
    /// Whether the token has this scope (reads scopes only).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "scope": "orders.read", "roles": ["admin"]});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert!(user.has_scope("orders.read"));
    /// assert!(!user.has_scope("admin"));
    /// ```
    pub fn has_scope(&self, scope: &str) -> bool {
        contains(self.scopes(), scope)
    }
    /// Whether the user has this role (reads roles only; no `ROLE_` prefix).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "roles": ["admin"]});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert!(user.has_role("admin"));
    /// assert!(!user.has_role("ROLE_admin"));
    /// ```
    pub fn has_role(&self, role: &str) -> bool {
        contains(self.roles(), role)
    }
    /// Whether the user has this permission (reads permissions only).
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "permissions": ["order:delete"]});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert!(user.has_permission("order:delete"));
    /// assert!(!user.has_permission("order:create"));
    /// ```
    pub fn has_permission(&self, permission: &str) -> bool {
        contains(self.permissions(), permission)
    }
    /// Spring-style authority check: `SCOPE_x` reads scopes, `ROLE_x` reads roles, anything
    /// else reads permissions and the merged `authorities` claim.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "scope": "read", "roles": ["admin"]});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert!(user.has_authority("SCOPE_read"));
    /// assert!(user.has_authority("ROLE_admin"));
    /// assert!(!user.has_authority("admin"));
    /// ```
    pub fn has_authority(&self, authority: &str) -> bool {
        if let Some(scope) = authority.strip_prefix("SCOPE_") {
            return self.has_scope(scope);
        }
        if let Some(role) = authority.strip_prefix("ROLE_") {
            return self.has_role(role);
        }
        contains(self.permissions(), authority) || contains(self.token_authorities(), authority)
    }
    /// Every authority, Spring-style (`SCOPE_…`, `ROLE_…`, permissions, merged authorities),
    /// built on first use.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "scope": "read", "roles": ["admin"], "permissions": ["p"]});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.authorities(), ["ROLE_admin", "SCOPE_read", "p"]);
    /// ```
    pub fn authorities(&self) -> &[String] {
        self.0.all_authorities.get_or_init(|| {
            let mut all: Vec<String> = self
                .scopes()
                .iter()
                .map(|s| format!("SCOPE_{s}"))
                .chain(self.roles().iter().map(|r| format!("ROLE_{r}")))
                .chain(
                    self.permissions()
                        .iter()
                        .filter(|p| !p.starts_with("SCOPE_") && !p.starts_with("ROLE_"))
                        .cloned(),
                )
                .chain(self.token_authorities().iter().cloned())
                .collect();
            all.sort_unstable();
            all.dedup();
            all
        })
    }
    /// All verified claims, as sent.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "custom": true});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.claims().len(), 2);
    /// assert_eq!(user.claims()["custom"], true);
    /// ```
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }
    /// One verified claim.
    ///
    /// # Example
    ///
    /// ```
    /// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
    /// # let claims = serde_json::json!({"sub": "alice", "email": "a@example.com"});
    /// # let user = CurrentUser::from_claims(
    /// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// assert_eq!(user.claim("email").and_then(|v| v.as_str()), Some("a@example.com"));
    /// assert!(user.claim("missing").is_none());
    /// ```
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.0.claims.get(name)
    }
}

impl fmt::Debug for CurrentUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentUser")
            .field("subject", &self.0.subject)
            .field("user_id", &self.0.user_id)
            .field("tenant", &self.0.tenant)
            .field("client_id", &self.0.client_id)
            .field("scopes", &self.scopes())
            .field("roles", &self.roles())
            .finish_non_exhaustive()
    }
}

/// What makes a token a *service* token (client credentials, no end user).
///
/// Default: the claim rule `gty: client-credentials` (what this crate's issuer puts into
/// client-credentials tokens; Auth0 does the same). [`ServiceTokenRule::SubjectIsClient`]
/// (`sub` equals `client_id` and no user id claim; YAML `service-token: sub-equals-client-id`)
/// is kept for issuers that emit no such claim, but a user token meets it wherever users may
/// choose their `sub`: prefer a claim only the token endpoint sets.
///
/// A rule never matches a token whose issuer may not mint service tokens
/// ([`CurrentUser::issuer_may_mint_service_tokens`]).
///
/// # Example
///
/// ```
/// # use tower_bearer::claims::{ClaimMapping, CurrentUser};
/// # let claims = serde_json::json!({"sub": "svc", "gty": "client-credentials"});
/// # let user = CurrentUser::from_claims(
/// #     claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
/// use tower_bearer::claims::ServiceTokenRule;
///
/// let rule = ServiceTokenRule::Claim { name: "gty".into(), value: "client-credentials".into() };
/// assert!(rule.matches(&user));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceTokenRule {
    /// `sub == client_id` and no user id claim (YAML `sub-equals-client-id`; the former
    /// default, weaker: see the type docs).
    SubjectIsClient,
    /// This claim holds this string value.
    Claim {
        /// Claim name.
        name: String,
        /// Required value.
        value: String,
    },
}

impl Default for ServiceTokenRule {
    /// `gty: client-credentials`.
    fn default() -> Self {
        Self::Claim {
            name: "gty".into(),
            value: "client-credentials".into(),
        }
    }
}

impl ServiceTokenRule {
    /// Whether `user` is a service token under this rule (never when its issuer may not mint
    /// service tokens).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::{ClaimMapping, CurrentUser, ServiceTokenRule};
    ///
    /// let mapping = ClaimMapping::default().compile();
    /// let svc = serde_json::json!({"sub": "billing", "client_id": "billing"});
    /// let svc = CurrentUser::from_claims(svc.as_object().unwrap().clone(), &mapping).unwrap();
    /// let human = serde_json::json!({"sub": "alice", "client_id": "web", "uid": 42});
    /// let human = CurrentUser::from_claims(human.as_object().unwrap().clone(), &mapping).unwrap();
    /// assert!(ServiceTokenRule::SubjectIsClient.matches(&svc));
    /// assert!(!ServiceTokenRule::SubjectIsClient.matches(&human));
    /// // The default rule wants `gty: client-credentials`.
    /// assert!(!ServiceTokenRule::default().matches(&svc));
    /// ```
    pub fn matches(&self, user: &CurrentUser) -> bool {
        if !user.0.service_tokens {
            return false;
        }
        match self {
            Self::SubjectIsClient => {
                !user.has_user_id_claim()
                    && user.subject().is_some()
                    && user.subject() == user.client_id()
            }
            Self::Claim { name, value } => {
                user.claim(name).and_then(Value::as_str) == Some(value.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(v: Value, m: &ClaimMapping) -> Result<CurrentUser, TokenError> {
        CurrentUser::from_claims(v.as_object().unwrap().clone(), &m.compile())
    }

    #[test]
    fn scope_wins_over_scp_and_sets_are_separate() {
        let u = user(
            json!({"sub":"s","scope":"a b","scp":["c"],"roles":"r1 r2",
                   "authorities":["SCOPE_internal-service","ROLE_admin","x:y"]}),
            &ClaimMapping::default(),
        )
        .unwrap();
        assert_eq!(u.scopes(), ["a", "b"]);
        assert!(!u.has_scope("c"));
        assert_eq!(u.roles(), ["r1", "r2"]);
        assert!(!u.has_authority("SCOPE_internal-service"));
        assert!(!u.has_authority("ROLE_admin"));
        assert!(!u.has_authority("x:y"), "authorities not merged by default");
        assert_eq!(u.user_id(), Some("s"));
    }

    #[test]
    fn merged_authorities_never_grant_scopes_or_roles() {
        let m = ClaimMapping {
            merge_authorities_claim: true,
            ..Default::default()
        };
        let u = user(
            json!({"sub":"s","authorities":["SCOPE_internal-service","ROLE_admin","x:y"]}),
            &m,
        )
        .unwrap();
        assert!(!u.has_authority("SCOPE_internal-service"));
        assert!(!u.has_authority("ROLE_admin"));
        assert!(u.has_authority("x:y"));
        assert_eq!(u.authorities(), ["x:y"]);
    }

    #[test]
    fn keycloak_roles_path() {
        let m = ClaimMapping {
            roles: "realm_access.roles".into(),
            ..Default::default()
        };
        let u = user(json!({"sub":"s","realm_access":{"roles":["admin"]}}), &m).unwrap();
        assert!(u.has_role("admin"));
        assert_eq!(u.authorities(), ["ROLE_admin"]);
    }

    #[test]
    fn namespaced_claim_names_with_dots() {
        let m = ClaimMapping {
            roles: "https://example.com/roles".into(),
            ..Default::default()
        };
        let u = user(json!({"sub":"s","https://example.com/roles":["admin"]}), &m).unwrap();
        assert!(u.has_role("admin"));
        let u = user(
            json!({"sub":"s","permissions":["ROLE_admin","x"]}),
            &ClaimMapping::default(),
        )
        .unwrap();
        assert_eq!(u.authorities(), ["x"]);
    }

    #[test]
    fn wrong_types_are_refused() {
        let m = ClaimMapping::default();
        assert_eq!(
            user(json!({"roles": 5}), &m).unwrap_err(),
            TokenError::InvalidClaim
        );
        assert_eq!(
            user(json!({"scope": {"a":1}}), &m).unwrap_err(),
            TokenError::InvalidClaim
        );
        assert_eq!(
            user(json!({"pv": "x"}), &m).unwrap_err(),
            TokenError::InvalidClaim
        );
        assert_eq!(
            user(json!({"sub": true}), &m).unwrap_err(),
            TokenError::InvalidClaim
        );
    }
}
