//! Requirements and ordered access rules.

use std::fmt;
use std::sync::Arc;

use http::Method;

use super::path::check_canonical;
use super::pattern::{ALL_METHODS, CompiledPatterns, is_miscased_standard_method, method_bit};

/// The one bit all extension methods share in a pattern's method mask.
const EXTENSION: u16 = 512;
/// A bit no request method has: marks a rule that must never match in a compiled set.
const NEVER: u16 = 1 << 15;
use crate::claims::{CurrentUser, ServiceTokenRule};
use crate::error::{AuthError, ConfigError};

/// What a rule needs. Several requirements in one rule must all hold ([`Requirement::AllOf`]).
///
/// # Example
///
/// ```
/// use tower_bearer::authz::Requirement;
/// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
///
/// let both = Requirement::AllOf(vec![Requirement::Authenticated, Requirement::AnyScope(vec!["orders.read".into(), "orders.write".into()])]);
/// assert!(both.check(Some(&user)).is_ok());
/// assert!(Requirement::Authority("SCOPE_orders.read".into()).check(Some(&user)).is_ok());
/// assert!(Requirement::Deny.check(Some(&user)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requirement {
    /// Anyone, with or without a token (a *bad* token is still refused by authentication).
    PermitAll,
    /// Any valid token.
    Authenticated,
    /// Nobody.
    Deny,
    /// This scope (reads scopes only).
    Scope(String),
    /// At least one of these scopes.
    AnyScope(Vec<String>),
    /// All of these scopes.
    AllScopes(Vec<String>),
    /// This role (reads roles only, no `ROLE_` prefix).
    Role(String),
    /// At least one of these roles.
    AnyRole(Vec<String>),
    /// This Spring-style authority (`SCOPE_x`, `ROLE_x`, a permission, or a merged authority).
    Authority(String),
    /// At least one of these authorities.
    AnyAuthority(Vec<String>),
    /// This permission.
    Permission(String),
    /// At least one of these permissions.
    AnyPermission(Vec<String>),
    /// Every one of these.
    AllOf(Vec<Requirement>),
}

impl Requirement {
    /// Checks the requirement for `user` (`None` = anonymous).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::Requirement;
    /// use tower_bearer::AuthError;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// assert!(Requirement::Scope("orders.read".into()).check(Some(&user)).is_ok());
    /// assert!(Requirement::Role("admin".into()).check(Some(&user)).is_err());
    /// assert!(matches!(Requirement::Authenticated.check(None), Err(AuthError::AuthenticationRequired)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthError::AuthenticationRequired`] (401) when anonymous and a user is needed,
    /// [`AuthError::InsufficientScope`] (403 with the scope) or [`AuthError::AccessDenied`] (403).
    pub fn check(&self, user: Option<&CurrentUser>) -> Result<(), AuthError> {
        if matches!(self, Self::PermitAll) {
            return Ok(());
        }
        let Some(user) = user else {
            return Err(AuthError::AuthenticationRequired);
        };
        let scope_err = |scopes: &[String]| AuthError::InsufficientScope {
            scope: Some(Arc::from(scopes.join(" "))),
        };
        let ok = match self {
            Self::PermitAll | Self::Authenticated => true,
            Self::Deny => return Err(AuthError::AccessDenied),
            Self::Scope(s) => {
                return if user.has_scope(s) {
                    Ok(())
                } else {
                    Err(scope_err(std::slice::from_ref(s)))
                };
            }
            Self::AnyScope(v) => {
                return if v.iter().any(|s| user.has_scope(s)) {
                    Ok(())
                } else {
                    Err(scope_err(v))
                };
            }
            Self::AllScopes(v) => {
                return if v.iter().all(|s| user.has_scope(s)) {
                    Ok(())
                } else {
                    Err(scope_err(v))
                };
            }
            Self::Role(r) => user.has_role(r),
            Self::AnyRole(v) => v.iter().any(|r| user.has_role(r)),
            Self::Authority(a) => {
                if user.has_authority(a) {
                    true
                } else if let Some(scope) = a.strip_prefix("SCOPE_") {
                    return Err(scope_err(&[scope.to_owned()]));
                } else {
                    false
                }
            }
            Self::AnyAuthority(v) => v.iter().any(|a| user.has_authority(a)),
            Self::Permission(p) => user.has_permission(p),
            Self::AnyPermission(v) => v.iter().any(|p| user.has_permission(p)),
            Self::AllOf(all) => {
                for r in all {
                    r.check(Some(user))?;
                }
                true
            }
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::AccessDenied)
        }
    }
}

/// One rule: methods (all when none given), a path pattern, a requirement.
///
/// # Example
///
/// ```
/// use http::Method;
/// use tower_bearer::authz::{AccessRules, Requirement, Rule};
///
/// let rules = AccessRules::builder()
///     .rule(Rule::new("/orders/{id}", Requirement::PermitAll).methods([Method::GET]))
///     .build()
///     .unwrap();
/// assert!(rules.check(&Method::GET, "/orders/42", None).is_ok());
/// assert!(rules.check(&Method::DELETE, "/orders/42", None).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    path: String,
    methods: u16,
    /// Extension methods named by the rule (`PROPFIND`, `PURGE`, ...), matched exactly.
    extension_methods: Vec<Method>,
    requirement: Requirement,
}

impl Rule {
    /// A rule for every method on `path` (exact, `*` one segment, `**` any depth, `{name}`).
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, Requirement, Rule};
    ///
    /// let rules = AccessRules::builder().rule(Rule::new("/health", Requirement::PermitAll)).build().unwrap();
    /// assert!(rules.check(&Method::GET, "/health", None).is_ok());
    /// assert!(rules.check(&Method::GET, "/other", None).is_err());
    /// ```
    pub fn new(path: impl Into<String>, requirement: Requirement) -> Self {
        Self {
            path: path.into(),
            methods: ALL_METHODS,
            extension_methods: Vec::new(),
            requirement,
        }
    }
    /// Restricts the rule to these methods. `GET` includes `HEAD` (frameworks answer `HEAD`
    /// with the `GET` handler). Extension methods (`PROPFIND`, ...) match by exact name.
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, Requirement, Rule};
    ///
    /// let rule = Rule::new("/docs/**", Requirement::PermitAll).methods([Method::GET]);
    /// let rules = AccessRules::builder().rule(rule).build().unwrap();
    /// assert!(rules.check(&Method::HEAD, "/docs/a", None).is_ok());
    /// assert!(rules.check(&Method::POST, "/docs/a", None).is_err());
    /// ```
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods: Vec<Method> = methods.into_iter().collect();
        self.methods = methods.iter().fold(0, |m, x| m | method_bit(x));
        self.extension_methods = methods
            .into_iter()
            .filter(|m| method_bit(m) == EXTENSION)
            .collect();
        if self.methods & method_bit(&Method::GET) != 0 {
            self.methods |= method_bit(&Method::HEAD);
        }
        self
    }
}

/// What unmatched requests need (`resource-server.default`: `deny` or `authenticated`).
///
/// # Example
///
/// ```
/// use http::Method;
/// use tower_bearer::authz::{AccessRules, DefaultAction};
/// use tower_bearer::AuthError;
///
/// assert_eq!(DefaultAction::default(), DefaultAction::Deny);
/// let rules = AccessRules::builder().default_action(DefaultAction::Deny).build().unwrap();
/// assert!(matches!(rules.check(&Method::GET, "/x", None), Err(AuthError::AuthenticationRequired)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DefaultAction {
    /// Refused: 403 for a user, 401 when anonymous.
    #[default]
    Deny,
    /// Any valid token.
    Authenticated,
}

/// How literal path text compares (`resource-server.path-case`: `sensitive` or
/// `insensitive`).
///
/// The default, [`PathCase::Sensitive`], is right for upstreams that route case-sensitively
/// (Spring, Go, axum, grpc-gateway). Choose [`PathCase::Insensitive`] when the upstream routes
/// case-insensitively (ASP.NET Core, Express by default): otherwise `/ADMIN/users` steps
/// around a rule for `/admin/**` and still reaches the admin handler. Only ASCII letters fold;
/// escapes (`%C3%A9`) compare byte for byte, with either case of hex digits.
///
/// # Example
///
/// ```
/// use http::Method;
/// use tower_bearer::authz::{AccessRules, PathCase, Requirement, Rule};
///
/// assert_eq!(PathCase::default(), PathCase::Sensitive);
/// let rules = AccessRules::builder()
///     .rule(Rule::new("/admin/**", Requirement::Deny))
///     .rule(Rule::new("/**", Requirement::PermitAll))
///     .path_case(PathCase::Insensitive)
///     .build()
///     .unwrap();
/// assert!(rules.check(&Method::GET, "/ADMIN/users", None).is_err());
/// assert!(rules.check(&Method::GET, "/home", None).is_ok());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PathCase {
    /// Literals compare byte for byte (hex digits of escapes excepted).
    #[default]
    Sensitive,
    /// Literals compare ASCII case-insensitively.
    Insensitive,
}

/// Internal-only endpoints: `SCOPE_<scope>` **and** a service token, before any rule.
///
/// # Example
///
/// ```
/// use http::Method;
/// use tower_bearer::authz::{AccessRules, InternalOnly, Requirement, Rule};
/// use tower_bearer::AuthError;
/// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
///
/// let rules = AccessRules::builder()
///     .internal_only(InternalOnly::new(["/internal/**"]).scope("orders.write"))
///     .rule(Rule::new("/**", Requirement::PermitAll)) // cannot loosen the internal-only check
///     .build()
///     .unwrap();
/// let err = rules.check(&Method::GET, "/internal/sync", Some(&user)).unwrap_err();
/// assert!(matches!(err, AuthError::InsufficientScope { .. }));
/// ```
#[derive(Debug, Clone)]
pub struct InternalOnly {
    scope: String,
    paths: Vec<String>,
    service_token: ServiceTokenRule,
}

impl Default for InternalOnly {
    fn default() -> Self {
        Self {
            scope: "internal-service".into(),
            paths: Vec::new(),
            service_token: ServiceTokenRule::default(),
        }
    }
}

impl InternalOnly {
    /// Internal-only `paths` needing the `internal-service` scope and a service token.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::InternalOnly;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let internal = InternalOnly::new(["/internal/**"]);
    /// assert!(internal.check(Some(&user)).is_ok());
    /// assert!(internal.check(None).is_err());
    /// ```
    pub fn new<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
    /// The scope (default `internal-service`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::InternalOnly;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// assert!(InternalOnly::new(["/internal/**"]).scope("orders.read").check(Some(&user)).is_ok());
    /// assert!(InternalOnly::new(["/internal/**"]).scope("ops").check(Some(&user)).is_err());
    /// ```
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }
    /// What makes a service token.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::InternalOnly;
    /// use tower_bearer::claims::ServiceTokenRule;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// // The older rule, by name: `sub == client_id` and no user id claim.
    /// let internal = InternalOnly::new(["/internal/**"]).service_token(ServiceTokenRule::SubjectIsClient);
    /// assert!(internal.check(Some(&user)).is_ok());
    /// let rule = ServiceTokenRule::Claim { name: "gty".into(), value: "other".into() };
    /// let internal = InternalOnly::new(["/internal/**"]).service_token(rule);
    /// assert!(internal.check(Some(&user)).is_err()); // `gty` has another value
    /// ```
    #[must_use]
    pub fn service_token(mut self, rule: ServiceTokenRule) -> Self {
        self.service_token = rule;
        self
    }

    /// Checks `user` against the internal-only requirement.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::InternalOnly;
    /// use tower_bearer::AuthError;
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let internal = InternalOnly::new(["/internal/**"]);
    /// assert!(internal.check(Some(&user)).is_ok());
    /// assert!(matches!(internal.check(None), Err(AuthError::AuthenticationRequired)));
    /// ```
    ///
    /// # Errors
    ///
    /// 401 when anonymous, 403 `insufficient_scope` without the scope, 403 for a user token.
    pub fn check(&self, user: Option<&CurrentUser>) -> Result<(), AuthError> {
        let user = user.ok_or(AuthError::AuthenticationRequired)?;
        if !user.has_scope(&self.scope) {
            return Err(AuthError::InsufficientScope {
                scope: Some(Arc::from(self.scope.as_str())),
            });
        }
        if !self.service_token.matches(user) {
            tracing::debug!("user token with the internal scope refused on an internal-only path");
            return Err(AuthError::AccessDenied);
        }
        Ok(())
    }
}

/// Ordered rules compiled once: canonical path check, internal-only paths, first matching rule,
/// then the default. Cheap to clone.
///
/// # Example
///
/// ```
/// use http::Method;
/// use tower_bearer::authz::{AccessRules, Requirement, Rule};
/// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
///
/// let rules = AccessRules::builder()
///     .rule(Rule::new("/orders/**", Requirement::Scope("orders.read".into())))
///     .build()
///     .unwrap();
/// assert!(rules.clone().check(&Method::GET, "/orders/1", Some(&user)).is_ok());
/// assert!(rules.check(&Method::GET, "/orders/1", None).is_err());
/// ```
#[derive(Clone)]
pub struct AccessRules(Arc<Compiled>);

struct Compiled {
    patterns: CompiledPatterns,
    /// For requests with an extension method: one set per method some rule names, and one for
    /// every other extension method (rules that name extension methods only match those).
    by_extension: Vec<(Method, CompiledPatterns)>,
    other_extensions: CompiledPatterns,
    requirements: Vec<Requirement>,
    default: DefaultAction,
    internal: Option<(InternalOnly, CompiledPatterns)>,
}

impl fmt::Debug for AccessRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessRules")
            .field("rules", &self.0.requirements.len())
            .field("default", &self.0.default)
            .field("internal", &self.0.internal.as_ref().map(|(i, _)| i))
            .finish()
    }
}

/// Builds [`AccessRules`].
///
/// # Example
///
/// ```
/// use http::Method;
/// use tower_bearer::authz::{AccessRules, DefaultAction, Requirement, Rule};
///
/// let rules = AccessRules::builder()
///     .rule(Rule::new("/admin/**", Requirement::Deny)) // first match wins
///     .rule(Rule::new("/**", Requirement::PermitAll))
///     .default_action(DefaultAction::Authenticated)
///     .build()
///     .unwrap();
/// assert!(rules.check(&Method::GET, "/admin/x", None).is_err());
/// assert!(rules.check(&Method::GET, "/home", None).is_ok());
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct AccessRulesBuilder {
    rules: Vec<Rule>,
    default: DefaultAction,
    internal: Option<InternalOnly>,
    path_case: PathCase,
}

impl AccessRulesBuilder {
    /// Appends a rule (first match wins).
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, Requirement, Rule};
    ///
    /// let rules = AccessRules::builder()
    ///     .rule(Rule::new("/a/**", Requirement::PermitAll))
    ///     .rule(Rule::new("/**", Requirement::Deny))
    ///     .build()
    ///     .unwrap();
    /// assert!(rules.check(&Method::GET, "/a/b", None).is_ok());
    /// ```
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
    /// What unmatched requests need (default [`DefaultAction::Deny`]).
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, DefaultAction};
    /// use tower_bearer::AuthError;
    ///
    /// let rules = AccessRules::builder().default_action(DefaultAction::Authenticated).build().unwrap();
    /// let err = rules.check(&Method::GET, "/anything", None).unwrap_err();
    /// assert!(matches!(err, AuthError::AuthenticationRequired));
    /// ```
    pub fn default_action(mut self, default: DefaultAction) -> Self {
        self.default = default;
        self
    }
    /// Internal-only endpoints, checked before the rules and not overridable by them.
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, InternalOnly, Requirement, Rule};
    /// # let user = tower_bearer::CurrentUser::from_claims(serde_json::json!({"iss": "i", "sub": "svc", "client_id": "svc", "gty": "client-credentials", "scope": "internal-service orders.read", "exp": 2000000000, "aud": "api"}).as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    ///
    /// let rules = AccessRules::builder()
    ///     .internal_only(InternalOnly::new(["/internal/**"]))
    ///     .rule(Rule::new("/**", Requirement::PermitAll))
    ///     .build()
    ///     .unwrap();
    /// assert!(rules.check(&Method::GET, "/internal/x", None).is_err());
    /// assert!(rules.check(&Method::GET, "/internal/x", Some(&user)).is_ok());
    /// ```
    pub fn internal_only(mut self, internal: InternalOnly) -> Self {
        self.internal = Some(internal);
        self
    }
    /// How literal path text compares, for rules and internal-only paths (default
    /// [`PathCase::Sensitive`]; see [`PathCase`]).
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, PathCase, Requirement, Rule};
    ///
    /// let rules = AccessRules::builder()
    ///     .rule(Rule::new("/public/**", Requirement::PermitAll))
    ///     .path_case(PathCase::Insensitive)
    ///     .build()
    ///     .unwrap();
    /// assert!(rules.check(&Method::GET, "/Public/logo.png", None).is_ok());
    /// ```
    pub fn path_case(mut self, case: PathCase) -> Self {
        self.path_case = case;
        self
    }
    /// Compiles the patterns.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::{AccessRules, Requirement, Rule};
    ///
    /// assert!(AccessRules::builder().rule(Rule::new("/ok/**", Requirement::PermitAll)).build().is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the bad pattern, or a requirement with an empty list
    /// (`AllScopes(vec![])`, `AnyRole(vec![])`, `AllOf(vec![])`, ...), which would let every
    /// user through or nobody.
    pub fn build(self) -> Result<AccessRules, ConfigError> {
        for r in &self.rules {
            let miscased = r
                .extension_methods
                .iter()
                .find(|m| is_miscased_standard_method(m))
                .map(|m| {
                    Err(format!(
                        "method `{m}` must be spelled upper-case (requests spelled so are refused)"
                    ))
                });
            miscased
                .unwrap_or_else(|| check_requirement(&r.requirement))
                .map_err(|reason| ConfigError::Invalid {
                    name: "rules",
                    reason: format!("rule `{}`: {reason}", r.path),
                })?;
        }
        let ci = self.path_case == PathCase::Insensitive;
        let patterns = CompiledPatterns::with_case(
            self.rules.iter().map(|r| (r.path.as_str(), r.methods)),
            ci,
        )?;
        // The extension bit of a rule naming extension methods applies to those names only.
        let for_extension = |m: Option<&Method>| {
            CompiledPatterns::with_case(
                self.rules.iter().map(|r| {
                    let applies = if r.methods & EXTENSION == 0 {
                        false
                    } else if r.extension_methods.is_empty() {
                        true
                    } else {
                        m.is_some_and(|m| r.extension_methods.contains(m))
                    };
                    (r.path.as_str(), if applies { EXTENSION } else { NEVER })
                }),
                ci,
            )
        };
        let mut named: Vec<Method> = self
            .rules
            .iter()
            .flat_map(|r| r.extension_methods.iter().cloned())
            .collect();
        named.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        named.dedup();
        let by_extension = named
            .into_iter()
            .map(|m| for_extension(Some(&m)).map(|p| (m, p)))
            .collect::<Result<Vec<_>, _>>()?;
        let other_extensions = for_extension(None)?;
        let internal = match self.internal {
            Some(i) if !i.paths.is_empty() => {
                let p = CompiledPatterns::with_case(
                    i.paths.iter().map(|p| (p.as_str(), ALL_METHODS)),
                    ci,
                )?;
                Some((i, p))
            }
            _ => None,
        };
        Ok(AccessRules(Arc::new(Compiled {
            patterns,
            by_extension,
            other_extensions,
            requirements: self.rules.into_iter().map(|r| r.requirement).collect(),
            default: self.default,
            internal,
        })))
    }
}

/// Refuses a requirement holding an empty list: `AllScopes(vec![])` and `AllOf(vec![])` let
/// any authenticated user through, `AnyRole(vec![])` and the other any-of lists nobody, and
/// neither is ever what was meant. An empty name (`Role("")`) is refused too.
fn check_requirement(r: &Requirement) -> Result<(), String> {
    let empty = |kind: &str| Err(format!("`{kind}` with an empty list"));
    let names: &[String] = match r {
        Requirement::Scope(n)
        | Requirement::Role(n)
        | Requirement::Authority(n)
        | Requirement::Permission(n) => std::slice::from_ref(n),
        Requirement::AnyScope(v)
        | Requirement::AllScopes(v)
        | Requirement::AnyRole(v)
        | Requirement::AnyAuthority(v)
        | Requirement::AnyPermission(v) => v,
        _ => &[],
    };
    if names.iter().any(String::is_empty) {
        return Err("an empty scope, role, authority or permission name".into());
    }
    match r {
        Requirement::AnyScope(v) if v.is_empty() => empty("AnyScope"),
        Requirement::AllScopes(v) if v.is_empty() => empty("AllScopes"),
        Requirement::AnyRole(v) if v.is_empty() => empty("AnyRole"),
        Requirement::AnyAuthority(v) if v.is_empty() => empty("AnyAuthority"),
        Requirement::AnyPermission(v) if v.is_empty() => empty("AnyPermission"),
        Requirement::AllOf(v) if v.is_empty() => empty("AllOf"),
        Requirement::AllOf(v) => v.iter().try_for_each(check_requirement),
        _ => Ok(()),
    }
}

impl AccessRules {
    /// A builder.
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::AccessRules;
    ///
    /// let rules = AccessRules::builder().build().unwrap();
    /// assert!(rules.check(&Method::GET, "/", None).is_err()); // default: deny
    /// ```
    pub fn builder() -> AccessRulesBuilder {
        AccessRulesBuilder::default()
    }

    /// Decides a request: `path` is the raw (still percent-encoded) request path.
    ///
    /// # Example
    ///
    /// ```
    /// use http::Method;
    /// use tower_bearer::authz::{AccessRules, Requirement, Rule};
    /// use tower_bearer::AuthError;
    ///
    /// let rules = AccessRules::builder().rule(Rule::new("/**", Requirement::PermitAll)).build().unwrap();
    /// assert!(rules.check(&Method::GET, "/a", None).is_ok());
    /// let err = rules.check(&Method::GET, "/a//b", None).unwrap_err();
    /// assert!(matches!(err, AuthError::NonCanonicalPath(_)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthError::NonCanonicalPath`] (400), [`AuthError::NonCanonicalMethod`] (400) for a
    /// standard method not spelled upper-case (`delete`), or the requirement's error.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        user: Option<&CurrentUser>,
    ) -> Result<(), AuthError> {
        check_canonical(path).map_err(|e| AuthError::NonCanonicalPath(e.reason()))?;
        if is_miscased_standard_method(method) {
            return Err(AuthError::NonCanonicalMethod);
        }
        let c = &*self.0;
        let bit = method_bit(method);
        // Many upstreams serve `/x/` like `/x`: a trailing slash must not step around a rule,
        // so the path is matched with and without it and the earlier rule wins.
        let trimmed = (path.len() > 1 && path.ends_with('/')).then(|| &path[..path.len() - 1]);
        let first = |p: &CompiledPatterns, bit: u16| {
            let a = p.first_match(path, bit);
            let b = trimmed.and_then(|t| p.first_match(t, bit));
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let mut internal_passed = false;
        if let Some((internal, paths)) = &c.internal {
            if first(paths, ALL_METHODS).is_some() {
                internal.check(user)?;
                internal_passed = true;
            }
        }
        let rules = if bit == EXTENSION {
            c.by_extension
                .iter()
                .find(|(m, _)| m == method)
                .map_or(&c.other_extensions, |(_, p)| p)
        } else {
            &c.patterns
        };
        match first(rules, bit) {
            Some(i) => c.requirements[i].check(user),
            // An internal-only path that no rule names is decided by the internal check alone.
            None if internal_passed => Ok(()),
            None => match c.default {
                DefaultAction::Deny => Requirement::Deny.check(user),
                DefaultAction::Authenticated => Requirement::Authenticated.check(user),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimMapping;
    use serde_json::json;

    fn user(v: serde_json::Value) -> CurrentUser {
        CurrentUser::from_claims(
            v.as_object().unwrap().clone(),
            &ClaimMapping::default().compile(),
        )
        .unwrap()
    }

    fn rules() -> AccessRules {
        AccessRules::builder()
            .rule(Rule::new("/public/**", Requirement::PermitAll))
            .rule(
                Rule::new("/admin/**", Requirement::AnyRole(vec!["admin".into()]))
                    .methods([Method::POST, Method::DELETE]),
            )
            .rule(Rule::new(
                "/reports/**",
                Requirement::Scope("reports.read".into()),
            ))
            .rule(Rule::new(
                "/orders/{id}",
                Requirement::Authority("order:read".into()),
            ))
            .rule(Rule::new("/api/**", Requirement::Authenticated))
            .internal_only(InternalOnly::new(["/internal/**"]))
            .build()
            .unwrap()
    }

    #[test]
    fn first_match_wins_and_defaults() {
        let r = rules();
        let alice =
            user(json!({"sub": "alice", "uid": "1", "roles": ["user"], "scope": "reports.read"}));
        let admin = user(json!({"sub": "bob", "uid": "2", "roles": ["admin"]}));
        assert!(r.check(&Method::GET, "/public/x", None).is_ok());
        assert_eq!(
            r.check(&Method::GET, "/api/x", None),
            Err(AuthError::AuthenticationRequired)
        );
        assert!(r.check(&Method::GET, "/api/x", Some(&alice)).is_ok());
        assert_eq!(
            r.check(&Method::POST, "/admin/x", Some(&alice)),
            Err(AuthError::AccessDenied)
        );
        assert!(r.check(&Method::POST, "/admin/x", Some(&admin)).is_ok());
        // GET /admin/x matches no rule: default deny.
        assert_eq!(
            r.check(&Method::GET, "/admin/x", Some(&admin)),
            Err(AuthError::AccessDenied)
        );
        assert_eq!(
            r.check(&Method::GET, "/admin/x", None),
            Err(AuthError::AuthenticationRequired)
        );
        assert!(r.check(&Method::GET, "/reports/1", Some(&alice)).is_ok());
        assert_eq!(
            r.check(&Method::GET, "/reports/1", Some(&admin)),
            Err(AuthError::InsufficientScope {
                scope: Some("reports.read".into())
            })
        );
    }

    #[test]
    fn escalation_through_authorities_and_permissions_fails() {
        let r = rules();
        let m = ClaimMapping {
            merge_authorities_claim: true,
            ..Default::default()
        }
        .compile();
        let sneaky = CurrentUser::from_claims(
            json!({"sub": "eve", "uid": "9", "authorities": ["SCOPE_reports.read", "ROLE_admin", "SCOPE_internal-service"],
                   "permissions": ["SCOPE_reports.read", "ROLE_admin"]})
                .as_object().unwrap().clone(),
            &m,
        )
        .unwrap();
        assert!(r.check(&Method::GET, "/reports/1", Some(&sneaky)).is_err());
        assert!(r.check(&Method::POST, "/admin/1", Some(&sneaky)).is_err());
        assert!(
            r.check(&Method::GET, "/internal/ping", Some(&sneaky))
                .is_err()
        );
    }

    #[test]
    fn internal_only_needs_scope_and_service_token() {
        let r = rules();
        // The default rule is the claim rule `gty: client-credentials`.
        let service = user(
            json!({"sub": "orders", "client_id": "orders", "gty": "client-credentials", "scope": "internal-service"}),
        );
        let user_with_scope = user(
            json!({"sub": "alice", "uid": "1", "client_id": "web", "scope": "internal-service"}),
        );
        let service_no_scope =
            user(json!({"sub": "orders", "client_id": "orders", "gty": "client-credentials"}));
        // `sub == client_id` alone is no longer a service token by default.
        let sub_is_client =
            user(json!({"sub": "orders", "client_id": "orders", "scope": "internal-service"}));
        assert_eq!(
            r.check(&Method::GET, "/internal/ping", Some(&sub_is_client)),
            Err(AuthError::AccessDenied)
        );
        assert!(
            r.check(&Method::GET, "/internal/ping", Some(&service))
                .is_ok()
        );
        assert_eq!(
            r.check(&Method::GET, "/internal/ping", Some(&user_with_scope)),
            Err(AuthError::AccessDenied)
        );
        assert!(matches!(
            r.check(&Method::GET, "/internal/ping", Some(&service_no_scope)),
            Err(AuthError::InsufficientScope { .. })
        ));
        assert_eq!(
            r.check(&Method::GET, "/internal/ping", None),
            Err(AuthError::AuthenticationRequired)
        );
        // The named older rule.
        let legacy =
            InternalOnly::new(["/internal/**"]).service_token(ServiceTokenRule::SubjectIsClient);
        let r = AccessRules::builder()
            .internal_only(legacy)
            .build()
            .unwrap();
        assert!(
            r.check(&Method::GET, "/internal/ping", Some(&sub_is_client))
                .is_ok()
        );
        let cc = user(
            json!({"sub": "x", "uid": "1", "gty": "client-credentials", "scope": "internal-service"}),
        );
        assert!(r.check(&Method::GET, "/internal/ping", Some(&cc)).is_err());
    }

    #[test]
    fn trailing_slash_and_head_do_not_step_around_rules() {
        let r = AccessRules::builder()
            .rule(
                Rule::new("/reports/{id}", Requirement::Scope("reports.read".into()))
                    .methods([Method::GET]),
            )
            .rule(Rule::new("/**", Requirement::Authenticated))
            .internal_only(InternalOnly::new(["/internal/ping"]))
            .build()
            .unwrap();
        let alice = user(
            json!({"sub": "alice", "uid": "1", "client_id": "web", "scope": "internal-service"}),
        );
        assert!(r.check(&Method::GET, "/reports/1/", Some(&alice)).is_err());
        assert!(r.check(&Method::HEAD, "/reports/1", Some(&alice)).is_err());
        assert!(
            r.check(&Method::GET, "/internal/ping/", Some(&alice))
                .is_err()
        );
        assert!(r.check(&Method::GET, "/other/", Some(&alice)).is_ok());
    }

    #[test]
    fn extension_methods_match_exactly() {
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let mkcol = Method::from_bytes(b"MKCOL").unwrap();
        let r = AccessRules::builder()
            .rule(Rule::new("/dav/**", Requirement::PermitAll).methods([propfind.clone()]))
            .rule(Rule::new("/dav/**", Requirement::Deny).methods([purge.clone()]))
            .rule(Rule::new("/**", Requirement::Authenticated))
            .build()
            .unwrap();
        assert!(r.check(&propfind, "/dav/x", None).is_ok());
        assert_eq!(
            r.check(&purge, "/dav/x", None),
            Err(AuthError::AuthenticationRequired)
        );
        assert_eq!(
            r.check(&mkcol, "/dav/x", None),
            Err(AuthError::AuthenticationRequired)
        );
        let alice = user(json!({"sub": "alice"}));
        assert_eq!(
            r.check(&purge, "/dav/x", Some(&alice)),
            Err(AuthError::AccessDenied)
        );
        assert!(r.check(&mkcol, "/dav/x", Some(&alice)).is_ok());
        assert!(r.check(&Method::GET, "/dav/x", Some(&alice)).is_ok());
    }

    #[test]
    fn miscased_standard_methods_are_refused() {
        let r = rules();
        let admin = user(json!({"sub": "bob", "uid": "2", "roles": ["admin"]}));
        for m in [
            "delete", "Delete", "dELETE", "post", "Post", "pAtCh", "get", "Get", "head", "put",
            "options", "trace", "connect",
        ] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                r.check(&m, "/admin/users/1", Some(&admin)),
                Err(AuthError::NonCanonicalMethod),
                "{m}"
            );
            assert_eq!(
                r.check(&m, "/public/x", None),
                Err(AuthError::NonCanonicalMethod),
                "{m}"
            );
        }
        assert_eq!(
            AuthError::NonCanonicalMethod.status(),
            http::StatusCode::BAD_REQUEST
        );
        assert_eq!(AuthError::NonCanonicalMethod.reason(), "miscased_method");
        // Real extension methods still work, matched by exact name.
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        let lower = Method::from_bytes(b"propfind").unwrap();
        let r = AccessRules::builder()
            .rule(Rule::new("/dav/**", Requirement::PermitAll).methods([propfind.clone()]))
            .rule(Rule::new("/**", Requirement::Authenticated))
            .build()
            .unwrap();
        assert!(r.check(&propfind, "/dav/x", None).is_ok());
        assert_eq!(
            r.check(&lower, "/dav/x", None),
            Err(AuthError::AuthenticationRequired)
        );
        assert!(
            r.check(
                &Method::from_bytes(b"DELETEX").unwrap(),
                "/dav/x",
                Some(&admin)
            )
            .is_ok()
        );
        // A rule naming a miscased standard method could never apply: refused at build.
        let err = AccessRules::builder()
            .rule(
                Rule::new("/admin/**", Requirement::Deny)
                    .methods([Method::from_bytes(b"delete").unwrap()]),
            )
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("method `delete` must be spelled upper-case"),
            "{err}"
        );
    }

    #[test]
    fn encoded_reserved_characters_do_not_step_around_a_rule() {
        let r = AccessRules::builder()
            .rule(
                Rule::new("/v1/jobs:batchDelete", Requirement::Role("admin".into()))
                    .methods([Method::POST]),
            )
            .rule(Rule::new("/**", Requirement::Authenticated))
            .build()
            .unwrap();
        let alice = user(json!({"sub": "alice", "uid": "1"}));
        assert_eq!(
            r.check(&Method::POST, "/v1/jobs:batchDelete", Some(&alice)),
            Err(AuthError::AccessDenied)
        );
        for p in ["/v1/jobs%3AbatchDelete", "/v1/jobs%3abatchDelete"] {
            assert_eq!(
                r.check(&Method::POST, p, Some(&alice)),
                Err(AuthError::NonCanonicalPath("encoded_reserved")),
                "{p}"
            );
        }
    }

    #[test]
    fn affix_patterns_and_path_case() {
        let r = AccessRules::builder()
            .rule(
                Rule::new("/v1/jobs/{id}:cancel", Requirement::Role("admin".into()))
                    .methods([Method::POST]),
            )
            .rule(Rule::new("/files/{name}.json", Requirement::PermitAll))
            .rule(Rule::new("/**", Requirement::Authenticated))
            .path_case(PathCase::Insensitive)
            .build()
            .unwrap();
        let alice = user(json!({"sub": "alice", "uid": "1"}));
        assert_eq!(
            r.check(&Method::POST, "/v1/jobs/7:cancel", Some(&alice)),
            Err(AuthError::AccessDenied)
        );
        assert_eq!(
            r.check(&Method::POST, "/V1/Jobs/7:CANCEL", Some(&alice)),
            Err(AuthError::AccessDenied)
        );
        assert!(r.check(&Method::GET, "/files/a.json", None).is_ok());
        assert!(r.check(&Method::GET, "/FILES/a.JSON", None).is_ok());
        assert!(r.check(&Method::GET, "/files/.json", None).is_err());
        assert!(
            r.check(&Method::POST, "/v1/jobs/7:pause", Some(&alice))
                .is_ok()
        );
        let sensitive = AccessRules::builder()
            .rule(Rule::new("/admin/**", Requirement::Deny))
            .rule(Rule::new("/**", Requirement::PermitAll))
            .internal_only(InternalOnly::new(["/internal/**"]))
            .build()
            .unwrap();
        assert!(sensitive.check(&Method::GET, "/ADMIN/x", None).is_ok());
        let insensitive = AccessRules::builder()
            .rule(Rule::new("/admin/**", Requirement::Deny))
            .rule(Rule::new("/**", Requirement::PermitAll))
            .internal_only(InternalOnly::new(["/internal/**"]))
            .path_case(PathCase::Insensitive)
            .build()
            .unwrap();
        assert!(insensitive.check(&Method::GET, "/ADMIN/x", None).is_err());
        assert_eq!(
            insensitive.check(&Method::GET, "/Internal/x", Some(&alice)),
            Err(AuthError::InsufficientScope {
                scope: Some("internal-service".into())
            })
        );
    }

    #[test]
    fn empty_requirement_lists_are_refused_at_build() {
        for req in [
            Requirement::AllScopes(vec![]),
            Requirement::AnyScope(vec![]),
            Requirement::AnyRole(vec![]),
            Requirement::AnyAuthority(vec![]),
            Requirement::AnyPermission(vec![]),
            Requirement::AllOf(vec![]),
            Requirement::AllOf(vec![
                Requirement::Authenticated,
                Requirement::AllScopes(vec![]),
            ]),
            Requirement::AllOf(vec![Requirement::AllOf(vec![])]),
        ] {
            let err = AccessRules::builder()
                .rule(Rule::new("/ok/**", Requirement::PermitAll))
                .rule(Rule::new("/admin/**", req.clone()))
                .build()
                .unwrap_err();
            match err {
                ConfigError::Invalid { name, reason } => {
                    assert_eq!(name, "rules");
                    assert!(reason.starts_with("rule `/admin/**`: `"), "{reason}");
                    assert!(reason.ends_with("with an empty list"), "{reason}");
                }
                other => panic!("{req:?}: {other:?}"),
            }
        }
        for req in [
            Requirement::Role(String::new()),
            Requirement::AnyScope(vec!["a".into(), String::new()]),
            Requirement::AllOf(vec![Requirement::Permission(String::new())]),
        ] {
            let err = AccessRules::builder()
                .rule(Rule::new("/x", req.clone()))
                .build()
                .unwrap_err();
            assert!(
                err.to_string().contains("empty scope, role"),
                "{req:?}: {err}"
            );
        }
        assert!(
            AccessRules::builder()
                .rule(Rule::new(
                    "/a",
                    Requirement::AllOf(vec![Requirement::AllScopes(vec!["x".into()])])
                ))
                .build()
                .is_ok()
        );
    }

    #[test]
    fn non_canonical_paths_are_refused_before_matching() {
        let r = rules();
        for p in [
            "/public/../admin/x",
            "//admin/x",
            "/admin/%2e%2e/x",
            "/public/..%2fadmin",
            "/admin;x=1/y",
            "/ADMIN/%61",
        ] {
            assert!(
                matches!(
                    r.check(&Method::POST, p, None),
                    Err(AuthError::NonCanonicalPath(_))
                ),
                "{p}"
            );
        }
    }
}
