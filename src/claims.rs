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
use crate::json::{self, Claims, Lite, parse_object};

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
        let split = |s: &str| ClaimPath::new(s);
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
    user_id: ClaimPath,
    roles: ClaimPath,
    permissions: ClaimPath,
    tenant: ClaimPath,
    merge_authorities: bool,
}

/// A mapped claim, resolved when the mapping is compiled: its whole name (and the claims'
/// index of it when it is one the verifier knows), then its dotted segments.
#[derive(Debug)]
struct ClaimPath {
    whole: ClaimName,
    /// The dotted segments when there are two or more (else empty: no path to follow).
    segments: Vec<ClaimName>,
}

/// A claim name and, for the names [`Claims`] keeps an index of, that index.
#[derive(Debug)]
struct ClaimName {
    name: String,
    known: Option<usize>,
}

impl ClaimName {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            known: json::known(name.as_bytes()),
        }
    }

    fn get<'c>(&self, claims: &'c Claims<'_>) -> Option<Lite<'c>> {
        match self.known {
            Some(k) => claims.get_known(k),
            None => claims.get(&self.name),
        }
    }
}

impl ClaimPath {
    fn new(s: &str) -> Self {
        let segments: Vec<ClaimName> = s.split('.').map(ClaimName::new).collect();
        Self {
            whole: ClaimName::new(s),
            segments: if segments.len() < 2 {
                Vec::new()
            } else {
                segments
            },
        }
    }
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

/// Built from a verified token, a user keeps the claims' JSON text (the token's payload) and
/// reads its strings out of it: no `Map` of the claims is built unless [`CurrentUser::claims`]
/// asks for it. The sets (scopes, roles, ...) are validated when the user is built and split,
/// sorted and kept on first use, so a request that never asks for them never pays for them.
struct UserInner {
    /// The claims' JSON text when built from a token (empty when built from a `Map`): every
    /// [`Text::Span`] points into it.
    raw: String,
    parts: UserParts,
    claims: OnceLock<Map<String, Value>>,
    audiences: OnceLock<Vec<String>>,
    scopes: OnceLock<Vec<String>>,
    roles: OnceLock<Vec<String>>,
    permissions: OnceLock<Vec<String>>,
    token_authorities: OnceLock<Vec<String>>,
    all_authorities: OnceLock<Vec<String>>,
}

/// A string of the claims: a span of the claims' JSON text (a string without escapes), or its
/// own copy (escaped strings, numbers as ids, prefixed ids, users built from a `Map`).
#[derive(Debug, Clone)]
enum Text {
    Span(u32, u32),
    Owned(Box<str>),
}

impl Text {
    /// `s`, a span of `raw` when it lies inside it, else a copy.
    fn new(raw: Option<&str>, s: &str) -> Self {
        if let Some(raw) = raw {
            // Strings without escapes are borrowed from the text they were parsed from.
            let start = (s.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
            if start <= raw.len() && s.len() <= raw.len() - start {
                if let (Ok(a), Ok(b)) = (u32::try_from(start), u32::try_from(start + s.len())) {
                    return Text::Span(a, b);
                }
            }
        }
        Text::Owned(s.into())
    }
}

/// Where a set claim's values are: one space-delimited string, or an array of strings.
#[derive(Debug)]
enum SetSource {
    Absent,
    Spaced(Text),
    /// `UserParts::items[start..end]`: every array claim's items share one allocation.
    List(u32, u32),
}

/// What a user is made of, but the claims' text.
#[derive(Debug)]
pub(crate) struct UserParts {
    subject: Option<Text>,
    /// The user id as handlers and headers see it: `prefix:id` when the issuer has a prefix.
    user_id: Option<Text>,
    /// The user id claim (else `sub`) as the issuer wrote it.
    local_user_id: Option<Text>,
    issuer: Option<Text>,
    issuer_prefix: Option<Arc<str>>,
    service_tokens: bool,
    user_id_claim: bool,
    tenant: Option<Text>,
    policy_version: Option<i64>,
    client_id: Option<Text>,
    expires_at: u64,
    audiences: SetSource,
    /// `scope`, else `scp`.
    scopes: SetSource,
    roles: SetSource,
    permissions: SetSource,
    /// `authorities` when merging is configured.
    token_authorities: SetSource,
    /// The items of the set claims that are arrays ([`SetSource::List`] ranges).
    items: Box<[Text]>,
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

/// The claim of `path`: its whole name, else (two or more segments) the dotted path.
fn path<'c>(claims: &'c Claims<'_>, path: &ClaimPath) -> Option<Lite<'c>> {
    if let Some(v) = path.whole.get(claims) {
        return Some(v);
    }
    let (first, rest) = path.segments.split_first()?;
    let mut cur = first.get(claims)?;
    for seg in rest {
        cur = cur.get(&seg.name)?;
    }
    Some(cur)
}

/// A string, or a number rendered as a string (ids are often numeric).
fn string_like(v: Option<Lite<'_>>, raw: Option<&str>) -> Result<Option<Text>, TokenError> {
    match v {
        None | Some(Lite::Null) => Ok(None),
        Some(Lite::String(s)) => Ok(Some(Text::new(raw, s))),
        Some(Lite::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(Some(Text::Owned(n.to_string().into())))
        }
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

/// A set claim: an array of strings (its items appended to `items`), or one space-delimited
/// string.
fn set_source(
    v: Option<Lite<'_>>,
    raw: Option<&str>,
    items: &mut Vec<Text>,
) -> Result<SetSource, TokenError> {
    match v {
        None | Some(Lite::Null) => Ok(SetSource::Absent),
        Some(Lite::String(s)) => Ok(SetSource::Spaced(Text::new(raw, s))),
        Some(Lite::Array(list)) => {
            let start = items.len();
            for item in list.iter() {
                items.push(Text::new(
                    raw,
                    item.as_str().ok_or(TokenError::InvalidClaim)?,
                ));
            }
            match (u32::try_from(start), u32::try_from(items.len())) {
                (Ok(a), Ok(b)) => Ok(SetSource::List(a, b)),
                _ => Err(TokenError::InvalidClaim),
            }
        }
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

/// How many items `v` holds if it is an array (to size the shared list exactly).
fn array_len(v: &Option<Lite<'_>>) -> usize {
    match v {
        Some(Lite::Array(list)) => list.len(),
        _ => 0,
    }
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

impl UserParts {
    /// Reads and type-checks what a user is made of from `claims`; strings without escapes
    /// become spans of `raw`, the text `claims` were parsed from (`None`: copies).
    pub(crate) fn new(
        claims: &Claims<'_>,
        raw: Option<&str>,
        mapping: &CompiledMapping,
        binding: &IssuerBinding,
    ) -> Result<Self, TokenError> {
        let m = &*mapping.0;
        let subject = string_like(claims.get("sub"), raw)?;
        let claimed_user_id = string_like(path(claims, &m.user_id), raw)?;
        let user_id_claim = claimed_user_id.is_some();
        let local_user_id = claimed_user_id.or_else(|| subject.clone());
        let user_id = match (&binding.prefix, &local_user_id) {
            (Some(p), Some(id)) => {
                let id = match id {
                    Text::Span(a, b) => raw.and_then(|r| r.get(*a as usize..*b as usize)),
                    Text::Owned(s) => Some(&**s),
                };
                Some(Text::Owned(
                    format!("{p}:{}", id.unwrap_or_default()).into(),
                ))
            }
            _ => local_user_id.clone(),
        };
        let tenant = string_like(path(claims, &m.tenant), raw)?;
        let policy_version = match claims.get("pv") {
            None | Some(Lite::Null) => None,
            Some(Lite::Number(n)) => Some(n.as_i64().ok_or(TokenError::InvalidClaim)?),
            Some(Lite::String(s)) => Some(s.parse().map_err(|_| TokenError::InvalidClaim)?),
            Some(_) => return Err(TokenError::InvalidClaim),
        };
        let client_id = string_like(claims.get("client_id"), raw)?;
        let issuer = match claims.get("iss") {
            None => None,
            Some(Lite::String(s)) => Some(Text::new(raw, s)),
            Some(_) => return Err(TokenError::InvalidIssuer),
        };
        // The set claims' values first: their arrays' items go to one exactly sized list.
        let sets = [
            claims.get("aud"),
            claims.get("scope"),
            claims.get("scp"),
            path(claims, &m.roles),
            path(claims, &m.permissions),
            if m.merge_authorities {
                claims.get("authorities")
            } else {
                None
            },
        ];
        let mut items = Vec::with_capacity(sets.iter().map(array_len).sum());
        let [aud, scope, scp, roles, permissions, authorities] = sets;
        let audiences =
            set_source(aud, raw, &mut items).map_err(|_| TokenError::InvalidAudience)?;
        let expires_at = match claims.get("exp") {
            Some(Lite::Number(n)) => n.as_f64().map_or(0, |f| f.max(0.0) as u64),
            _ => 0,
        };
        let scope = set_source(scope, raw, &mut items)?;
        let scp = set_source(scp, raw, &mut items)?;
        let roles = set_source(roles, raw, &mut items)?;
        let permissions = set_source(permissions, raw, &mut items)?;
        let token_authorities = set_source(authorities, raw, &mut items)?;
        Ok(Self {
            subject,
            user_id,
            local_user_id,
            issuer,
            issuer_prefix: binding.prefix.clone(),
            service_tokens: binding.service_tokens,
            user_id_claim,
            tenant,
            policy_version,
            client_id,
            expires_at,
            audiences,
            // `scope` wins over `scp` when both are present.
            scopes: match scope {
                SetSource::Absent => scp,
                scope => scope,
            },
            roles,
            permissions,
            token_authorities,
            items: items.into_boxed_slice(),
        })
    }
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
        let parts = UserParts::new(&Claims::from_map(&claims), None, mapping, binding)?;
        Ok(Self::assemble(String::new(), OnceLock::from(claims), parts))
    }

    /// The user of a verified token: `raw` is its claims' JSON text, the one `parts` were read
    /// from ([`UserParts::new`] with `Some(raw)`).
    pub(crate) fn from_token(raw: String, parts: UserParts) -> Self {
        Self::assemble(raw, OnceLock::new(), parts)
    }

    fn assemble(raw: String, claims: OnceLock<Map<String, Value>>, parts: UserParts) -> Self {
        Self(Arc::new(UserInner {
            raw,
            parts,
            claims,
            audiences: OnceLock::new(),
            scopes: OnceLock::new(),
            roles: OnceLock::new(),
            permissions: OnceLock::new(),
            token_authorities: OnceLock::new(),
            all_authorities: OnceLock::new(),
        }))
    }

    fn text<'a>(&'a self, t: &'a Option<Text>) -> Option<&'a str> {
        match t.as_ref()? {
            Text::Span(a, b) => self.0.raw.get(*a as usize..*b as usize),
            Text::Owned(s) => Some(s),
        }
    }

    /// A set claim, validated at construction, kept on first use.
    fn set<'a>(&'a self, cell: &'a OnceLock<Vec<String>>, src: &SetSource) -> &'a [String] {
        cell.get_or_init(|| self.build_set(src))
    }

    /// A set claim's values: split (or listed), sorted, deduplicated.
    fn build_set(&self, src: &SetSource) -> Vec<String> {
        let text = |t: &Text| -> Option<String> {
            match t {
                Text::Span(a, b) => self.0.raw.get(*a as usize..*b as usize).map(str::to_owned),
                Text::Owned(s) => Some(s.to_string()),
            }
        };
        let mut out: Vec<String> = match src {
            SetSource::Absent => Vec::new(),
            SetSource::Spaced(t) => text(t)
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            SetSource::List(a, b) => self
                .0
                .parts
                .items
                .get(*a as usize..*b as usize)
                .unwrap_or_default()
                .iter()
                .filter_map(text)
                .collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
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
        self.text(&self.0.parts.subject)
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
        self.text(&self.0.parts.user_id)
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
        self.text(&self.0.parts.local_user_id)
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
        self.0.parts.issuer_prefix.as_deref()
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
        self.0.parts.service_tokens
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
        self.0.parts.user_id_claim
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
        self.text(&self.0.parts.tenant)
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
        self.0.parts.policy_version
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
        self.text(&self.0.parts.client_id)
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
        self.text(&self.0.parts.issuer).unwrap_or_default()
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
        self.set(&self.0.audiences, &self.0.parts.audiences)
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
        self.0.parts.expires_at
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
        self.set(&self.0.scopes, &self.0.parts.scopes)
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
        self.set(&self.0.roles, &self.0.parts.roles)
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
        self.set(&self.0.permissions, &self.0.parts.permissions)
    }

    /// The token's own `authorities` when merging is configured, without any `SCOPE_`/`ROLE_`
    /// value (a token cannot grant itself scopes or roles that way).
    fn token_authorities(&self) -> &[String] {
        self.0.token_authorities.get_or_init(|| {
            let mut a = self.build_set(&self.0.parts.token_authorities);
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
        // Built from a token, the claims' text parsed once before (same grammar): no error.
        self.0.claims.get_or_init(|| {
            let map = parse_object(self.0.raw.as_bytes());
            debug_assert!(map.is_ok(), "verified claims parse again");
            map.unwrap_or_default()
        })
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
        self.claims().get(name)
    }
}

impl fmt::Debug for CurrentUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentUser")
            .field("subject", &self.subject())
            .field("user_id", &self.user_id())
            .field("tenant", &self.tenant())
            .field("client_id", &self.client_id())
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
        if !user.0.parts.service_tokens {
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
