//! The management API (seed 004): grant families, revocation by user and by client, cleanup and
//! stats, on a router of its own ([`AuthorizationServer::management_router`]) that you serve on
//! the listener you choose (an internal port, say).
//!
//! **Authentication uses this crate's own layers**: [`JwtAuthLayer`] (optional mode) with a
//! [`Verifier`] of this issuer's tokens, then [`AuthorizeLayer`] with [`AccessRules`]
//! (`/oauth2/manage/**` needs the scope, every other path is denied). A management token must be
//! an access token of this issuer with
//!
//! - the **audience** `management.audience` (default [`DEFAULT_MANAGEMENT_AUDIENCE`],
//!   `auth-management`): another audience is `401 invalid_token`;
//! - the **scope** `management.scope` (default [`DEFAULT_MANAGEMENT_SCOPE`], `admin`): a token
//!   without it is `403 insufficient_scope`; no token is `401`.
//!
//! Such a token comes from the token endpoint like any other, e.g. `client_credentials` for a
//! client registered with `scopes: [admin]` and `audiences: [auth-management]` asking
//! `scope=admin&audience=auth-management`. The verifier reads this issuer's JWKS at
//! `<issuer><jwks path>` (rotated keys are picked up); when the issuer URL is not reachable from
//! the process itself, give another address with
//! [`management_jwks_uri`](AuthorizationServerBuilder::management_jwks_uri).
//!
//! | method | path | answer |
//! |---|---|---|
//! | `GET` | `/oauth2/manage/stats` | counters: tokens issued by grant, families (active, created, revoked, rotations, reuse detections, code replays), revocations, failures by reason |
//! | `GET` | `/oauth2/manage/authorization/{id}` | one grant family: client, user, scopes, created, last used, expiries, state, generation (never a token or a hash); 404 unknown |
//! | `DELETE` | `/oauth2/manage/authorization/{id}` | revokes the family: `{"id","revoked":true\|false,"state":"revoked"}`; 404 unknown |
//! | `GET` | `/oauth2/manage/users/{uid}/authorizations` | the user's families |
//! | `DELETE` | `/oauth2/manage/users/{uid}/authorizations` | revokes them: `{"user_id","revoked":n}` |
//! | `GET` | `/oauth2/manage/clients/{id}/authorizations` | the client's families; 404 unknown client |
//! | `DELETE` | `/oauth2/manage/clients/{id}/authorizations` | revokes them: `{"client_id","revoked":n}`; 404 unknown client |
//! | `POST` | `/oauth2/manage/cleanup` | removes expired records where the store keeps them ([`GrantStore::cleanup`](crate::issuer::store::GrantStore::cleanup)): `{"removed":n,"store":"memory"}` (the memory store also drops them as it is used, so often 0); with Redis `{"removed":0,"store":"redis","note":"…TTL…"}` |
//!
//! Every answer is JSON with `Cache-Control: no-store`; errors are
//! `{"error","error_description"}`: 400 `invalid_request` (malformed id), 404 `not_found`,
//! 405 (wrong method), 503 `temporarily_unavailable` (store down). Stats come from counters kept
//! as events happen, never from a table scan: the families from the grant store (shared by
//! replicas with Redis), the rest from this instance's [audit counters](crate::issuer::audit).
//! Every call is audited (`event = "admin_action"`, the admin's `sub`). A management token
//! revoked at this issuer (its `jti` on the revocation list, or its `sid` family revoked) is
//! refused at once (401 `invalid_token`), not only at its `exp`.
//!
//! # Example
//!
//! ```
//! use tower::ServiceExt;
//! use tower_bearer::issuer::AuthorizationServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = AuthorizationServer::builder("http://127.0.0.1:9000").build().await.unwrap();
//! let manage = server.management_router().unwrap();
//! let res = manage
//!     .oneshot(http::Request::get("/oauth2/manage/stats").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 401); // no token
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! # }
//! ```

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::StatusCode;
use http::header::{self, HeaderValue};
use serde_json::{Value, json};

use crate::authn::JwtAuthLayer;
use crate::authz::{AccessRules, AuthorizeLayer, DefaultAction, Requirement, Rule};
use crate::claims::CurrentUser;
use crate::error::ConfigError;
use crate::http_client::HttpClientConfig;
use crate::issuer::audit::audit;
use crate::issuer::config::{
    AuthorizationServerConfig, DEFAULT_MANAGEMENT_AUDIENCE, DEFAULT_MANAGEMENT_SCOPE,
};
use crate::issuer::store::{FamilyRecord, FamilyState};
use crate::issuer::{AuthorizationServer, AuthorizationServerBuilder, Shared};
use crate::verify::{IssuerConfig, Verifier};

/// The path prefix of the management API.
///
/// # Example
///
/// ```
/// assert_eq!(tower_bearer::issuer::manage::MANAGE_PREFIX, "/oauth2/manage");
/// ```
pub const MANAGE_PREFIX: &str = "/oauth2/manage";

/// Settings of the management API (`management`).
#[derive(Debug, Clone)]
pub(crate) struct ManagementOptions {
    pub(crate) audience: String,
    pub(crate) scope: String,
    pub(crate) jwks_uri: Option<String>,
    pub(crate) allow_insecure_http: bool,
}

impl Default for ManagementOptions {
    fn default() -> Self {
        Self {
            audience: DEFAULT_MANAGEMENT_AUDIENCE.to_owned(),
            scope: DEFAULT_MANAGEMENT_SCOPE.to_owned(),
            jwks_uri: None,
            allow_insecure_http: false,
        }
    }
}

impl ManagementOptions {
    pub(crate) fn from_config(cfg: &AuthorizationServerConfig) -> Self {
        let m = cfg.management.as_ref();
        Self {
            audience: m.and_then(|m| m.audience.clone()).map_or_else(
                || DEFAULT_MANAGEMENT_AUDIENCE.to_owned(),
                |a| a.trim().to_owned(),
            ),
            scope: m
                .and_then(|m| m.scope.clone())
                .unwrap_or_else(|| DEFAULT_MANAGEMENT_SCOPE.to_owned()),
            ..Self::default()
        }
    }
}

impl AuthorizationServerBuilder {
    /// The audience a management token must carry (default `auth-management`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").management_audience("ops-console");
    /// # let _ = b;
    /// ```
    pub fn management_audience(mut self, audience: impl Into<String>) -> Self {
        self.management.audience = audience.into();
        self
    }

    /// The scope a management token must carry (default `admin`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").management_scope("auth.admin");
    /// # let _ = b;
    /// ```
    pub fn management_scope(mut self, scope: impl Into<String>) -> Self {
        self.management.scope = scope.into();
        self
    }

    /// Where the management API's verifier reads this issuer's keys (default
    /// `<issuer><jwks path>`), e.g. an internal address when the public issuer URL is not
    /// reachable from the process.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://auth.example")
    ///     .management_jwks_uri("http://127.0.0.1:9000/oauth2/jwks");
    /// # let _ = b;
    /// ```
    pub fn management_jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.management.jwks_uri = Some(uri.into());
        self
    }
}

impl AuthorizationServer {
    /// The management API's router (see the [module docs](crate::issuer::manage)), protected by
    /// [`JwtAuthLayer`] + [`AuthorizeLayer`]: a token of this issuer with the management
    /// audience and scope.
    ///
    /// # Example
    ///
    /// See the [module docs](crate::issuer::manage).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the verifier cannot be built (a JWKS URI that is not https, or http
    /// beyond loopback without `allow_insecure_http`; an empty audience or scope).
    pub fn management_router(&self) -> Result<axum::Router, ConfigError> {
        let shared = &self.shared;
        let opts = &shared.management;
        if opts.audience.is_empty() {
            return Err(ConfigError::Missing(
                "authorization-server.management.audience",
            ));
        }
        if opts.scope.is_empty() || !opts.scope.chars().all(crate::issuer::config::is_scope_char) {
            return Err(ConfigError::Invalid {
                name: "authorization-server.management.scope",
                reason: format!("`{}` is not a valid scope token", opts.scope),
            });
        }
        let jwks = opts
            .jwks_uri
            .clone()
            .unwrap_or_else(|| shared.endpoint(&shared.jwks_path));
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::jwks_uri(shared.issuer.clone(), jwks))
            .audience(opts.audience.clone())
            .typ(shared.typ.clone())
            .clock(shared.clock.clone())
            .http_client_config(HttpClientConfig {
                allow_insecure_http: opts.allow_insecure_http,
                ..HttpClientConfig::default()
            })
            .build()?;
        let rules = AccessRules::builder()
            .rule(Rule::new(
                format!("{MANAGE_PREFIX}/**"),
                Requirement::Scope(opts.scope.clone()),
            ))
            .default_action(DefaultAction::Deny)
            .build()?;
        let p = MANAGE_PREFIX;
        Ok(Router::new()
            .route(&format!("{p}/stats"), get(stats))
            .route(
                &format!("{p}/authorization/{{id}}"),
                get(get_family).delete(revoke_family),
            )
            .route(
                &format!("{p}/users/{{uid}}/authorizations"),
                owned(Owner::User),
            )
            .route(
                &format!("{p}/clients/{{id}}/authorizations"),
                owned(Owner::Client),
            )
            .route(&format!("{p}/cleanup"), post(cleanup))
            .fallback(not_found_route)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(Arc::clone(shared))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(shared),
                not_revoked,
            ))
            .layer(AuthorizeLayer::new(rules))
            .layer(JwtAuthLayer::new(verifier).optional(true))
            .layer(axum::middleware::map_response(no_store)))
    }

    /// The audit counters of this instance (see [`audit`](crate::issuer::audit)).
    ///
    /// # Example
    ///
    /// See the [module docs](crate::issuer::audit).
    pub fn audit_counts(&self) -> crate::issuer::audit::AuditCounts {
        self.shared.audit.snapshot()
    }
}

/// A management token revoked at this issuer (`POST /oauth2/revoke`, its `jti` listed, or its
/// family revoked) is refused at once, not only at its `exp`.
async fn not_revoked(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(user) = req.extensions().get::<CurrentUser>() else {
        return next.run(req).await;
    };
    let now = s.clock.now_unix();
    let store = &s.user_grants.store;
    let jti = user.claim("jti").and_then(Value::as_str).map(str::to_owned);
    let sid = user.claim("sid").and_then(Value::as_str).map(str::to_owned);
    let revoked = match (jti, sid) {
        (None, _) => Ok(true), // our tokens always carry a `jti`
        (Some(jti), sid) => match store.is_jti_revoked(&jti, now).await {
            Ok(true) => Ok(true),
            Ok(false) => match sid {
                Some(sid) => store
                    .get_family(&sid, now)
                    .await
                    .map(|f| !f.is_some_and(|f| f.state == FamilyState::Active)),
                None => Ok(false),
            },
            Err(e) => Err(e),
        },
    };
    match revoked {
        Ok(false) => next.run(req).await,
        Ok(true) => {
            audit!(Some(&s.audit), info, "admin_action", "refused_revoked"; admin = admin(user), "management: revoked token refused");
            let mut res = error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token was revoked",
            );
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            res
        }
        Err(e) => store_down(&e),
    }
}

async fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

fn reply(status: StatusCode, body: &Value) -> Response {
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    reply(
        status,
        &json!({ "error": code, "error_description": description }),
    )
}

async fn not_found_route() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such management endpoint",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method not allowed on this management endpoint",
    )
}

fn store_down(e: &crate::store::StoreError) -> Response {
    tracing::error!(target: "tower_bearer::issuer", error = %e, "grant store failed (management API)");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the grant store is unavailable; retry later",
    )
}

fn admin(user: &CurrentUser) -> &str {
    user.subject().unwrap_or("-")
}

/// A family as the API shows it: never a token or a hash.
fn family_json(f: &FamilyRecord, now: u64) -> Value {
    let state = match f.state {
        FamilyState::Revoked => "revoked",
        _ if f.is_expired(now) => "expired",
        _ => "active",
    };
    json!({
        "id": f.family_id,
        "client_id": f.client_id,
        "user_id": f.user_id,
        "scopes": f.scopes,
        "auth_time": f.auth_time,
        "created": f.created,
        "last_used": f.last_used,
        "idle_expires": f.idle_expires,
        "absolute_expires": f.absolute_expires,
        "generation": f.generation,
        "state": state,
    })
}

/// A family id: 16..=64 base64url characters (as [`RefreshToken`](crate::issuer::store::RefreshToken) makes them).
fn valid_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A user or client id from the path: 1..=256 characters, no control characters.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

fn bad_id(what: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("malformed {what}"),
    )
}

async fn stats(State(s): State<Arc<Shared>>, Extension(user): Extension<CurrentUser>) -> Response {
    let now = s.clock.now_unix();
    let families = match s.user_grants.store.stats(now).await {
        Ok(f) => f,
        Err(e) => return store_down(&e),
    };
    audit!(Some(&s.audit), info, "admin_action", "stats"; admin = admin(&user), "management: stats read");
    let c = s.audit.snapshot();
    let mut failures = serde_json::Map::new();
    for ev in [
        "client_auth_failed",
        "login_failed",
        "refresh_refused",
        "refresh_reuse",
        "revoke_refused",
        "lockout",
        "rate_limited",
    ] {
        failures.insert(ev.to_owned(), json!(c.event(ev)));
    }
    let introspection = c.event("introspection");
    reply(
        StatusCode::OK,
        &json!({
            "tokens_issued": c.event("token_issued"),
            "families": families,
            "revocations": {
                "families_revoked": families.families_revoked,
                "reuse_detected": families.reuse_detected,
                "by_kind": c.event("revoked"),
                "by_admin": c.event("admin_revoked"),
            },
            "failures": failures,
            "introspection": introspection,
            "scope": "families: the grant store (shared by replicas); the rest: this instance since start",
        }),
    )
}

async fn get_family(
    State(s): State<Arc<Shared>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    if !valid_id(&id) {
        return bad_id("authorization id");
    }
    let now = s.clock.now_unix();
    audit!(Some(&s.audit), info, "admin_action", "get_authorization"; admin = admin(&user), sid = %id, "management: authorization read");
    match s.user_grants.store.get_family(&id, now).await {
        Ok(Some(f)) => reply(StatusCode::OK, &family_json(&f, now)),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such authorization"),
        Err(e) => store_down(&e),
    }
}

async fn revoke_family(
    State(s): State<Arc<Shared>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    if !valid_id(&id) {
        return bad_id("authorization id");
    }
    let now = s.clock.now_unix();
    let store = &s.user_grants.store;
    match store.get_family(&id, now).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such authorization"),
        Err(e) => return store_down(&e),
    }
    match store.revoke_family(&id, now).await {
        Ok(revoked) => {
            audit!(Some(&s.audit), info, "admin_action", "revoke_authorization"; admin = admin(&user), sid = %id, revoked, "management: authorization revoked");
            s.audit
                .add_n("admin_revoked", "authorization", u64::from(revoked));
            reply(
                StatusCode::OK,
                &json!({ "id": id, "revoked": revoked, "state": "revoked" }),
            )
        }
        Err(e) => store_down(&e),
    }
}

fn list(families: Vec<FamilyRecord>, now: u64) -> Value {
    Value::Array(families.iter().map(|f| family_json(f, now)).collect())
}

/// Whose authorizations a list or revoke call is about.
#[derive(Clone, Copy)]
enum Owner {
    User,
    Client,
}

impl Owner {
    /// The id's field in the answer and the audit kind of a revocation.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Owner::User => ("user_id", "user"),
            Owner::Client => ("client_id", "client"),
        }
    }

    /// A well-formed user id, or a registered client.
    async fn check(self, s: &Shared, id: &str) -> Result<(), Response> {
        match self {
            Owner::User if !valid_name(id) => Err(bad_id("user id")),
            Owner::User => Ok(()),
            Owner::Client => known_client(s, id).await,
        }
    }

    fn audit_list(self, s: &Shared, user: &CurrentUser, id: &str) {
        match self {
            Owner::User => {
                audit!(Some(&s.audit), info, "admin_action", "list_user"; admin = admin(user), uid = %id, "management: user's authorizations read");
            }
            Owner::Client => {
                audit!(Some(&s.audit), info, "admin_action", "list_client"; admin = admin(user), client_id = %id, "management: client's authorizations read");
            }
        }
    }

    fn audit_revoke(self, s: &Shared, user: &CurrentUser, id: &str, n: u64) {
        match self {
            Owner::User => {
                audit!(Some(&s.audit), info, "admin_action", "revoke_user"; admin = admin(user), uid = %id, revoked = n, "management: user's authorizations revoked");
            }
            Owner::Client => {
                audit!(Some(&s.audit), info, "admin_action", "revoke_client"; admin = admin(user), client_id = %id, revoked = n, "management: client's authorizations revoked");
            }
        }
        s.audit.add_n("admin_revoked", self.names().1, n);
    }
}

/// `GET /users/{id}/authorizations`, `GET /clients/{id}/authorizations`.
async fn list_owned(s: &Shared, user: &CurrentUser, owner: Owner, id: String) -> Response {
    if let Err(res) = owner.check(s, &id).await {
        return res;
    }
    let now = s.clock.now_unix();
    owner.audit_list(s, user, &id);
    let store = &s.user_grants.store;
    let families = match owner {
        Owner::User => store.families_by_user(&id, now),
        Owner::Client => store.families_by_client(&id, now),
    };
    match families.await {
        Ok(f) => reply(
            StatusCode::OK,
            &json!({ owner.names().0: id, "authorizations": list(f, now) }),
        ),
        Err(e) => store_down(&e),
    }
}

/// `DELETE /users/{id}/authorizations`, `DELETE /clients/{id}/authorizations`.
async fn revoke_owned(s: &Shared, user: &CurrentUser, owner: Owner, id: String) -> Response {
    if let Err(res) = owner.check(s, &id).await {
        return res;
    }
    let now = s.clock.now_unix();
    let store = &s.user_grants.store;
    let revoked = match owner {
        Owner::User => store.revoke_by_user(&id, now),
        Owner::Client => store.revoke_by_client(&id, now),
    };
    match revoked.await {
        Ok(n) => {
            owner.audit_revoke(s, user, &id, n);
            reply(
                StatusCode::OK,
                &json!({ owner.names().0: id, "revoked": n }),
            )
        }
        Err(e) => store_down(&e),
    }
}

/// The list (GET) and revoke (DELETE) handlers of `owner`'s authorizations.
fn owned(owner: Owner) -> axum::routing::MethodRouter<Arc<Shared>> {
    get(
        move |State(s): State<Arc<Shared>>,
              Extension(user): Extension<CurrentUser>,
              Path(id): Path<String>| async move { list_owned(&s, &user, owner, id).await },
    )
    .delete(
        move |State(s): State<Arc<Shared>>,
              Extension(user): Extension<CurrentUser>,
              Path(id): Path<String>| async move { revoke_owned(&s, &user, owner, id).await },
    )
}

async fn known_client(s: &Shared, id: &str) -> Result<(), Response> {
    if !valid_name(id) {
        return Err(bad_id("client id"));
    }
    match s.clients.find(id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, "not_found", "no such client")),
        Err(e) => Err(store_down(&e)),
    }
}

async fn cleanup(
    State(s): State<Arc<Shared>>,
    Extension(user): Extension<CurrentUser>,
) -> Response {
    let now = s.clock.now_unix();
    match s.user_grants.store.cleanup(now).await {
        Ok(r) => {
            audit!(Some(&s.audit), info, "admin_action", "cleanup"; admin = admin(&user), removed = r.removed, "management: cleanup");
            let mut body = json!({ "removed": r.removed, "store": r.store });
            if let Some(note) = r.note {
                body["note"] = Value::String(note);
            }
            reply(StatusCode::OK, &body)
        }
        Err(e) => store_down(&e),
    }
}
