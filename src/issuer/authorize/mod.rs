//! The authorization endpoint (RFC 6749 §4.1, RFC 7636, RFC 9700 §2.1): `GET /oauth2/authorize`,
//! a server-rendered login page, an optional consent page, and authorization codes exchanged
//! at the token endpoint by the [`authorization_code`](crate::issuer::grants::authorization_code)
//! grant.
//!
//! **Requests.** `response_type=code` only. `client_id` must name a registered client and
//! `redirect_uri` must equal one of its registered URIs byte for byte (no prefix, wildcard or
//! normalisation; it may be left out when exactly one is registered). A bad `client_id` or
//! `redirect_uri` gets a 400 HTML page and is **never** redirected (no open redirect); every
//! other error is redirected to the redirect URI per RFC 6749 §4.1.2.1 with `error`,
//! `error_description`, `state` and `iss` (RFC 9207): `invalid_request` (a repeated parameter,
//! missing or malformed PKCE), `unsupported_response_type`, `unauthorized_client` (the client
//! does not list `authorization_code`), `invalid_scope` (a scope the client may not give its
//! users), `access_denied` (consent denied), `login_required` / `consent_required`
//! (`prompt=none`), `temporarily_unavailable` (store down).
//!
//! **PKCE** (RFC 7636) with `S256` only (`plain`, or a challenge without method, is refused);
//! the challenge must be 43 base64url characters. Required for public clients (`auth-method:
//! none`) always and for confidential clients by default
//! ([`AuthorizationCodeSettings::require_pkce`], per client
//! [`RegisteredClient::with_require_pkce`](crate::issuer::clients::RegisteredClient::with_require_pkce)).
//!
//! **Login.** An HTML form (no JavaScript) posted to `<authorize path>/login` with a CSRF token
//! bound to the server-side session. Users are checked against the
//! [`UserStore`](crate::issuer::users::UserStore) with the same brute-force rules as the
//! `password` grant: failures per username ([`user_limits`](crate::issuer::AuthorizationServerBuilder::user_limits),
//! the same counters: a lockout by either counts for both) and per source address; every
//! failure shows the same message and the reason goes to the audit log
//! (`tower_bearer::audit`, `event = "login_failed"`). A successful login gives the session a new
//! id (session fixation). **Consent** (per client, `require-consent: true`) is remembered for
//! the login session per user, client and scopes.
//!
//! **Session cookie**: random 256-bit id, server-side state in memory, `HttpOnly; Secure;
//! SameSite=Lax`, path = the authorize path, `Max-Age` = the session lifetime (default 10
//! minutes). `Secure` is left out only when the issuer is `http://` on a loopback host.
//! Sessions live in the memory of one process (also with `store: redis`): behind several
//! replicas, send the few requests of one login (authorize → login → consent, within the session
//! lifetime) to the same replica (sticky sessions); the codes themselves are in the grant store
//! and can be exchanged at any replica. A full session table (100 000) drops anonymous sessions
//! first, never a logged-in one.
//! Every page: `Cache-Control: no-store`, `X-Frame-Options: DENY`, CSP `default-src 'none';
//! frame-ancestors 'none'`, `Referrer-Policy: no-referrer`; everything echoed is HTML-escaped.
//!
//! **Codes**: 256 random bits, stored as their SHA-256 in the
//! [`GrantStore`](crate::issuer::store::GrantStore) (atomic consume in Redis) for at most 60 s
//! ([`AuthorizationCodeSettings::code_ttl`]), bound to the client, redirect URI, PKCE
//! challenge, user, scopes and `auth_time`.
//!
//! # Example
//!
//! ```
//! use tower::ServiceExt;
//! use tower_bearer::issuer::clients::RegisteredClient;
//! use tower_bearer::issuer::config::{AuthMethod, GrantType};
//! use tower_bearer::issuer::AuthorizationServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = AuthorizationServer::builder("https://auth.example")
//!     .client(
//!         RegisteredClient::new("mobile", AuthMethod::None)
//!             .with_grant_types([GrantType::AuthorizationCode])
//!             .with_redirect_uris(["com.example.app:/callback"]),
//!     )
//!     .build()
//!     .await
//!     .unwrap();
//! let get = |q: &str| {
//!     let req = http::Request::get(format!("/oauth2/authorize?{q}")).body(axum::body::Body::empty()).unwrap();
//!     server.router().oneshot(req)
//! };
//! // An unregistered redirect URI: a 400 page, never a redirect.
//! let res = get("response_type=code&client_id=mobile&redirect_uri=https://evil.example/").await.unwrap();
//! assert_eq!(res.status(), 400);
//! // No PKCE: redirected with `invalid_request`.
//! let res = get("response_type=code&client_id=mobile&state=xyz").await.unwrap();
//! assert_eq!(res.status(), 303);
//! let to = res.headers()["location"].to_str().unwrap();
//! assert!(to.starts_with("com.example.app:/callback?error=invalid_request&"), "{to}");
//! assert!(to.contains("state=xyz"), "{to}");
//! // A good request: the login page and a session cookie.
//! let res = get("response_type=code&client_id=mobile&code_challenge_method=S256\
//!     &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM").await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["x-frame-options"], "DENY");
//! let cookie = res.headers()["set-cookie"].to_str().unwrap();
//! assert!(cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Lax"));
//! # }
//! ```

mod pages;
mod session;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};
use zeroize::Zeroizing;

use crate::error::ConfigError;
use crate::issuer::Shared;
use crate::issuer::clients::RegisteredClient;
use crate::issuer::config::{AuthMethod, AuthorizationServerConfig, GrantType};
use crate::issuer::grants::password::user_scopes;
use crate::issuer::grants::{Grant, Params, parse_scope};
use crate::issuer::password::PasswordHash;
use crate::issuer::store::{CodeRecord, MAX_CODE_TTL, hash_secret};

use self::session::{LoggedIn, Pending, Session, Sessions};

/// The default login-session lifetime (10 minutes).
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(600);
/// Most login sessions held at once.
const MAX_SESSIONS: usize = 100_000;

/// Settings of the authorization endpoint (`authorization-server.authorization-code` and
/// `paths.authorize`). See the [module docs](crate::issuer::authorize) for an example.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
/// use tower_bearer::issuer::AuthorizationServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let settings = AuthorizationCodeSettings::new()
///     .enabled(true)
///     .code_ttl(Duration::from_secs(30))
///     .authorize_path("/authorize");
/// let s = AuthorizationServer::builder("https://a.example").authorization_code(settings).build().await.unwrap();
/// assert_eq!(s.metadata()["authorization_endpoint"], "https://a.example/authorize");
/// assert_eq!(s.metadata()["code_challenge_methods_supported"], serde_json::json!(["S256"]));
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AuthorizationCodeSettings {
    enabled: Option<bool>,
    code_ttl: Duration,
    session_ttl: Duration,
    require_pkce: bool,
    path: String,
}

impl Default for AuthorizationCodeSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthorizationCodeSettings {
    /// The defaults: on when a client lists `authorization_code`, codes valid 60 s, sessions
    /// 10 minutes, PKCE required for every client, path `/oauth2/authorize`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    ///
    /// let s = AuthorizationCodeSettings::new();
    /// assert_eq!(s.path(), "/oauth2/authorize");
    /// ```
    pub fn new() -> Self {
        Self {
            enabled: None,
            code_ttl: MAX_CODE_TTL,
            session_ttl: DEFAULT_SESSION_TTL,
            require_pkce: true,
            path: "/oauth2/authorize".into(),
        }
    }

    /// What `authorization-server` says (already validated).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::config::SecurityConfig;
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    ///
    /// let cfg = SecurityConfig::from_yaml("security:\n  authorization-server:\n    issuer: https://a.example\n    paths: { authorize: /auth }\n").unwrap();
    /// let s = AuthorizationCodeSettings::from_config(cfg.authorization_server.as_ref().unwrap());
    /// assert_eq!(s.path(), "/auth");
    /// ```
    pub fn from_config(cfg: &AuthorizationServerConfig) -> Self {
        let mut s = Self::new().authorize_path(cfg.authorize_path());
        if let Some(ac) = &cfg.authorization_code {
            s.enabled = ac.enabled;
            if let Some(t) = ac.code_ttl_seconds {
                s.code_ttl = Duration::from_secs(t);
            }
            if let Some(t) = ac.session_ttl_seconds {
                s.session_ttl = Duration::from_secs(t);
            }
            if let Some(p) = ac.require_pkce {
                s.require_pkce = p;
            }
        }
        s
    }

    /// Serves the endpoint (or not) whatever the clients say.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    ///
    /// let s = AuthorizationCodeSettings::new().enabled(false);
    /// # let _ = s;
    /// ```
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = Some(on);
        self
    }

    /// How long a code may be exchanged (default and most: 60 s; more is refused at build).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationCodeSettings::new().enabled(true).code_ttl(Duration::from_secs(120));
    /// assert!(AuthorizationServer::builder("https://a.example").authorization_code(s).build().await.is_err());
    /// # }
    /// ```
    pub fn code_ttl(mut self, ttl: Duration) -> Self {
        self.code_ttl = ttl;
        self
    }

    /// The login-session lifetime (default 10 minutes).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    ///
    /// let s = AuthorizationCodeSettings::new().session_ttl(Duration::from_secs(300));
    /// # let _ = s;
    /// ```
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Whether confidential clients need PKCE (default true; public clients always do). A
    /// client's own setting wins.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    ///
    /// let s = AuthorizationCodeSettings::new().require_pkce(false);
    /// # let _ = s;
    /// ```
    pub fn require_pkce(mut self, required: bool) -> Self {
        self.require_pkce = required;
        self
    }

    /// The endpoint path (default `/oauth2/authorize`); the forms post to `<path>/login` and
    /// `<path>/consent`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    ///
    /// assert_eq!(AuthorizationCodeSettings::new().authorize_path("/authorize").path(), "/authorize");
    /// ```
    pub fn authorize_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The endpoint path.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::authorize::AuthorizationCodeSettings;
    ///
    /// assert_eq!(AuthorizationCodeSettings::new().path(), "/oauth2/authorize");
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The runtime state, when served; `grants` gets the `authorization_code` grant (and
    /// `refresh_token`, if not there yet).
    pub(crate) fn build(
        self,
        issuer: &str,
        code_clients: bool,
        grants: &mut Vec<Arc<dyn Grant>>,
    ) -> Result<Option<AuthorizeState>, ConfigError> {
        if !self.enabled.unwrap_or(code_clients) {
            return Ok(None);
        }
        if self.code_ttl.is_zero() || self.code_ttl > MAX_CODE_TTL {
            return Err(ConfigError::Invalid {
                name: "authorization-server.authorization-code.code-ttl-seconds",
                reason: "must be 1..=60".into(),
            });
        }
        if self.session_ttl.is_zero() {
            return Err(ConfigError::Invalid {
                name: "authorization-server.authorization-code.session-ttl-seconds",
                reason: "must be at least 1".into(),
            });
        }
        let check = AuthorizationServerConfig {
            paths: Some(crate::issuer::config::PathsSection {
                authorize: Some(self.path.clone()),
                ..Default::default()
            }),
            ..AuthorizationServerConfig::new(issuer)
        };
        check.validate_with(true, |_| None)?;
        let secure = !is_loopback_http(issuer);
        grants.push(Arc::new(
            crate::issuer::grants::authorization_code::AuthorizationCodeGrant,
        ));
        if !grants
            .iter()
            .any(|g| g.grant_type() == GrantType::RefreshToken)
        {
            grants.push(Arc::new(crate::issuer::grants::refresh::RefreshGrant));
        }
        Ok(Some(AuthorizeState {
            login_path: format!("{}/login", self.path),
            consent_path: format!("{}/consent", self.path),
            path: self.path,
            code_ttl: self.code_ttl,
            require_pkce: self.require_pkce,
            sessions: Sessions::new(self.session_ttl, MAX_SESSIONS),
            cookie_name: if secure {
                "__Secure-tb-as-session"
            } else {
                "tb-as-session"
            },
            secure,
        }))
    }
}

/// Checks clients registered in Rust as configuration checks `clients:` entries: their
/// redirect URIs, and that no public client turns PKCE off.
pub(crate) fn check_clients(clients: &[RegisteredClient]) -> Result<(), ConfigError> {
    for c in clients {
        for r in c.redirect_uris() {
            check_redirect_uri(r).map_err(|reason| ConfigError::Invalid {
                name: "authorization-server.clients",
                reason: format!("client `{}`: redirect URI `{r}`: {reason}", c.client_id()),
            })?;
        }
        if c.auth_method() == AuthMethod::None && c.require_pkce() == Some(false) {
            return Err(ConfigError::Invalid {
                name: "authorization-server.clients",
                reason: format!(
                    "client `{}`: a public client cannot turn off `require-pkce`",
                    c.client_id()
                ),
            });
        }
    }
    Ok(())
}

/// `http://` on a loopback host (the only case where the session cookie is not `Secure`).
fn is_loopback_http(issuer: &str) -> bool {
    let Ok(uri) = issuer.parse::<http::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a registered redirect URI (RFC 6749 §3.1.2, RFC 8252, RFC 9700 §2.1): absolute, no
/// fragment, no white space or control characters; `http` only for a loopback host; custom
/// schemes (native apps) allowed.
///
/// # Errors
///
/// What is wrong with it.
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.is_empty() {
        return Err("is empty");
    }
    if uri.contains('#') {
        return Err("must not have a fragment");
    }
    if uri.chars().any(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, ';' | ',' | '\'' | '"' | '<' | '>' | '\\')
    }) {
        return Err("contains white space or characters not allowed in a URI");
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err("is not an absolute URI");
    };
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err("is not an absolute URI");
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "http" => {
            let parsed: http::Uri = uri.parse().map_err(|_| "is not a valid URL")?;
            if parsed.host().is_none_or(str::is_empty) || !rest.starts_with("//") {
                return Err("has no host");
            }
            if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
                return Err("must not carry user information");
            }
            if scheme.eq_ignore_ascii_case("http") && !is_loopback_http(uri) {
                return Err("`http` is allowed for loopback hosts only");
            }
            Ok(())
        }
        "javascript" | "data" | "file" | "vbscript" => Err("this scheme is not allowed"),
        _ => Ok(()),
    }
}

/// The runtime side, held by the server.
pub(crate) struct AuthorizeState {
    pub(crate) path: String,
    login_path: String,
    consent_path: String,
    code_ttl: Duration,
    require_pkce: bool,
    sessions: Sessions,
    cookie_name: &'static str,
    secure: bool,
}

impl fmt::Debug for AuthorizeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeState")
            .field("path", &self.path)
            .field("code_ttl", &self.code_ttl)
            .field("require_pkce", &self.require_pkce)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl AuthorizeState {
    fn cookie(&self, id: &str) -> HeaderValue {
        let mut c = format!(
            "{}={id}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax",
            self.cookie_name,
            self.path,
            self.sessions.ttl().as_secs()
        );
        if self.secure {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
    }

    /// The first cookie of ours naming a live session.
    fn session(&self, headers: &HeaderMap, now: u64) -> Option<(String, Session)> {
        for v in headers.get_all(header::COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            for pair in v.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name == self.cookie_name && value.len() == 43 {
                    if let Some(s) = self.sessions.get(value, now) {
                        return Some((value.to_owned(), s));
                    }
                }
            }
        }
        None
    }
}

/// The routes of the endpoint (when served).
pub(crate) fn routes(router: Router<Arc<Shared>>, shared: &Shared) -> Router<Arc<Shared>> {
    let Some(az) = &shared.authorize else {
        return router;
    };
    router
        .route(&az.path, get(authorize))
        .route(&az.login_path, post(login))
        .route(&az.consent_path, post(consent))
}

/// The metadata fields of the endpoint.
pub(crate) fn metadata(shared: &Shared, meta: &mut serde_json::Value) {
    let Some(az) = &shared.authorize else { return };
    meta["authorization_endpoint"] = shared.endpoint(&az.path).into();
    meta["response_types_supported"] = serde_json::json!(["code"]);
    meta["response_modes_supported"] = serde_json::json!(["query"]);
    meta["code_challenge_methods_supported"] = serde_json::json!(["S256"]);
    meta["authorization_response_iss_parameter_supported"] = true.into();
    meta["token_endpoint_auth_methods_supported"] =
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"]);
}

fn bad_request(description: &str) -> Response {
    pages::error_page(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn with_cookie(mut res: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// A 303 to `uri` with `params` added to its query.
fn redirect(uri: &str, params: &[(&str, &str)]) -> Response {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{sep}{}", q.finish());
    let mut res = Response::new(axum::body::Body::empty());
    *res.status_mut() = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return bad_request("the redirect URI cannot be used"),
    }
    pages::secure_headers(res.headers_mut());
    res
}

/// An error for the client, at its redirect URI (RFC 6749 §4.1.2.1, RFC 9207 `iss`).
fn redirect_error(
    shared: &Shared,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    tracing::info!(
        target: "tower_bearer::audit",
        event = "authorize_refused",
        error,
        reason = description,
        "authorization request refused"
    );
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", &shared.issuer));
    redirect(redirect_uri, &params)
}

/// The `form-action` source for a redirect URI: its origin, or its scheme for custom schemes.
fn form_target(redirect_uri: &str) -> Option<String> {
    let (scheme, _) = redirect_uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        let uri: http::Uri = redirect_uri.parse().ok()?;
        Some(format!("{}://{}", scheme, uri.authority()?.as_str()))
    } else {
        Some(format!("{scheme}:"))
    }
}

/// A 43-character base64url value (an S256 challenge).
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn address_of(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

async fn authorize(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let Some(az) = shared.authorize.as_ref() else {
        return pages::error_page(StatusCode::NOT_FOUND, "not_found", "not served");
    };
    let params = Params::parse(req.uri().query().unwrap_or("").as_bytes());
    let cid = match params.single("client_id") {
        Ok(Some(c)) => c,
        Ok(None) => return bad_request("missing parameter `client_id`"),
        Err(_) => return bad_request("parameter `client_id` is repeated"),
    };
    let client = match shared.clients.find(cid).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            tracing::info!(target: "tower_bearer::audit", event = "authorize_refused", client_id = cid, reason = "unknown_client", "authorization request refused");
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "the client is not registered",
            );
        }
        Err(e) => {
            tracing::error!(target: "tower_bearer::issuer", error = %e, "client registry failed");
            return pages::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again later",
            );
        }
    };
    let redirect_uri = match params.single("redirect_uri") {
        Err(_) => return bad_request("parameter `redirect_uri` is repeated"),
        Ok(Some(r)) if client.redirect_uris().iter().any(|x| x == r) => r.to_owned(),
        Ok(Some(_)) => {
            tracing::info!(target: "tower_bearer::audit", event = "authorize_refused", client_id = cid, reason = "redirect_uri_mismatch", "authorization request refused");
            return bad_request("the redirect URI is not registered for this client");
        }
        Ok(None) => match client.redirect_uris() {
            [one] => one.clone(),
            _ => return bad_request("missing parameter `redirect_uri`"),
        },
    };
    // From here on, errors go to the client's redirect URI.
    let state = params.single("state").ok().flatten();
    let fail = |error: &str, description: &str| {
        redirect_error(&shared, &redirect_uri, state, error, description)
    };
    if let Err(e) = params.check_no_repeats(&[]) {
        return fail("invalid_request", e.description());
    }
    match params.single("response_type") {
        Ok(Some("code")) => {}
        Ok(None) => return fail("invalid_request", "missing parameter `response_type`"),
        _ => {
            return fail(
                "unsupported_response_type",
                "only `response_type=code` is supported",
            );
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return fail(
            "unauthorized_client",
            "the client may not use `authorization_code`",
        );
    }
    if params.single("request").ok().flatten().is_some() {
        return fail("request_not_supported", "request objects are not supported");
    }
    if params.single("request_uri").ok().flatten().is_some() {
        return fail(
            "request_uri_not_supported",
            "`request_uri` is not supported",
        );
    }
    let challenge = params.single("code_challenge").ok().flatten();
    let method = params.single("code_challenge_method").ok().flatten();
    let pkce_required = client.auth_method() == AuthMethod::None
        || client.require_pkce().unwrap_or(az.require_pkce);
    match (challenge, method) {
        (None, Some(_)) => {
            return fail(
                "invalid_request",
                "`code_challenge_method` without `code_challenge`",
            );
        }
        (Some(_), m) if m != Some("S256") => {
            return fail(
                "invalid_request",
                "transform algorithm not supported: `code_challenge_method` must be S256",
            );
        }
        (Some(c), _) if !is_s256_challenge(c) => {
            return fail(
                "invalid_request",
                "malformed `code_challenge` (43 base64url characters)",
            );
        }
        (None, None) if pkce_required => {
            return fail(
                "invalid_request",
                "code challenge required (PKCE with S256)",
            );
        }
        _ => {}
    }
    let requested = match params.single("scope").map(|s| parse_scope(s)) {
        Ok(Ok(r)) => r,
        _ => return fail("invalid_scope", "the scope is malformed"),
    };
    let scopes: Vec<String> = match requested {
        None => user_scopes(&shared, &client).cloned().collect(),
        Some(asked) => {
            if let Some(s) = asked
                .iter()
                .find(|a| !user_scopes(&shared, &client).any(|c| c == *a))
            {
                return fail(
                    "invalid_scope",
                    &format!("scope `{s}` may not be granted to this client's users"),
                );
            }
            asked
        }
    };
    let prompt = params.single("prompt").ok().flatten().unwrap_or("");
    let prompt_none = prompt.split(' ').any(|p| p == "none");
    let force_login = prompt.split(' ').any(|p| p == "login");
    if prompt_none && prompt.split(' ').filter(|p| !p.is_empty()).count() > 1 {
        return fail(
            "invalid_request",
            "`prompt=none` cannot be combined with other values",
        );
    }
    let pending = Pending {
        client_id: client.client_id().to_owned(),
        redirect_uri: redirect_uri.clone(),
        scopes,
        state: state.map(str::to_owned),
        code_challenge: challenge.map(str::to_owned),
    };
    let now = shared.clock.now_unix();
    let existing = az.session(req.headers(), now);
    let logged_in = existing.as_ref().is_some_and(|(_, s)| s.user.is_some()) && !force_login;
    if prompt_none && !logged_in {
        return fail("login_required", "the user is not logged in");
    }
    let (sid, session, cookie) = match existing {
        Some((id, s)) => (id, s, None),
        None => match az.sessions.create(now) {
            Ok((id, s)) => {
                let c = az.cookie(&id);
                (id, s, Some(c))
            }
            Err(_) => return fail("temporarily_unavailable", "too many login sessions"),
        },
    };
    let Some(rid) = az.sessions.add_pending(&sid, pending.clone(), now) else {
        return fail("temporarily_unavailable", "the login session was lost");
    };
    let target = form_target(&redirect_uri);
    if !logged_in {
        let res = pages::login(&pages::LoginPage {
            action: &az.login_path,
            csrf: &session.csrf,
            rid: &rid,
            client_id: client.client_id(),
            username: "",
            error: None,
            form_target: target.as_deref(),
        });
        return with_cookie(res, cookie);
    }
    let res = proceed(&shared, az, &client, &sid, &session, &rid, prompt_none).await;
    with_cookie(res, cookie)
}

/// After login: the consent page when needed, else the code.
async fn proceed(
    shared: &Shared,
    az: &AuthorizeState,
    client: &RegisteredClient,
    sid: &str,
    session: &Session,
    rid: &str,
    prompt_none: bool,
) -> Response {
    let now = shared.clock.now_unix();
    let Some(user) = session.user.as_ref() else {
        return bad_request("not logged in");
    };
    let Some(pending) = session
        .pending(rid)
        .cloned()
        .or_else(|| az.sessions.get(sid, now)?.pending(rid).cloned())
    else {
        return bad_request("the authorization request expired; start again");
    };
    if client.require_consent() && !session.has_consent(client.client_id(), &pending.scopes) {
        if prompt_none {
            az.sessions.take_pending(sid, rid, now);
            return redirect_error(
                shared,
                &pending.redirect_uri,
                pending.state.as_deref(),
                "consent_required",
                "the user has not consented",
            );
        }
        let target = form_target(&pending.redirect_uri);
        return pages::consent(&pages::ConsentPage {
            action: &az.consent_path,
            csrf: &session.csrf,
            rid,
            client_id: client.client_id(),
            username: &user.username,
            scopes: &pending.scopes,
            form_target: target.as_deref(),
        });
    }
    let Some(pending) = az.sessions.take_pending(sid, rid, now) else {
        return bad_request("the authorization request was already answered");
    };
    issue_code(shared, az, &pending, user).await
}

async fn issue_code(
    shared: &Shared,
    az: &AuthorizeState,
    pending: &Pending,
    user: &LoggedIn,
) -> Response {
    let now = shared.clock.now_unix();
    let code = Zeroizing::new(session::random_token(32));
    let mut rec = CodeRecord::new(&pending.client_id, &user.user_id, &pending.redirect_uri)
        .with_scopes(pending.scopes.iter().cloned())
        .with_auth_time(user.auth_time);
    if let Some(c) = &pending.code_challenge {
        rec = rec.with_pkce(c.clone(), "S256");
    }
    let stored = shared
        .user_grants
        .store
        .put_code(&hash_secret(&code), rec, az.code_ttl, now)
        .await;
    if let Err(e) = stored {
        tracing::error!(target: "tower_bearer::issuer", error = %e, "grant store failed");
        return redirect_error(
            shared,
            &pending.redirect_uri,
            pending.state.as_deref(),
            "temporarily_unavailable",
            "the grant store is unavailable; retry later",
        );
    }
    tracing::info!(
        target: "tower_bearer::audit",
        event = "code_issued",
        client_id = %pending.client_id,
        uid = %user.user_id,
        scope = %pending.scopes.join(" "),
        "authorization code issued"
    );
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &pending.state {
        params.push(("state", s));
    }
    params.push(("iss", &shared.issuer));
    redirect(&pending.redirect_uri, &params)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The session and form of a POST from one of our pages, CSRF checked.
async fn form_post(
    shared: &Shared,
    az: &AuthorizeState,
    req: Request,
) -> Result<(String, Session, Params<'static>), Response> {
    let now = shared.clock.now_unix();
    let Some((sid, session)) = az.session(req.headers(), now) else {
        return Err(bad_request(
            "the login session expired or cookies are disabled; start again from the application",
        ));
    };
    if !is_form(req.headers()) {
        return Err(bad_request(
            "the form must be application/x-www-form-urlencoded",
        ));
    }
    let body = match axum::body::to_bytes(req.into_body(), shared.max_body_len).await {
        Ok(b) => Zeroizing::new(b.to_vec()),
        Err(_) => return Err(bad_request("the form is too large")),
    };
    let params = Params::parse(&body);
    let csrf = params.single("csrf").ok().flatten().unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(csrf.as_bytes(), session.csrf.as_bytes())
        .is_err()
    {
        tracing::info!(target: "tower_bearer::audit", event = "csrf_refused", "login or consent form with a missing or wrong CSRF token");
        return Err(pages::error_page(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "the form is stale or forged (CSRF check failed); start again from the application",
        ));
    }
    Ok((sid, session, params.into_owned()))
}

fn audit_login_failure(client: &str, username: &str, address: Option<&str>, reason: &str) {
    tracing::info!(
        target: "tower_bearer::audit",
        event = "login_failed",
        client_id = client,
        username,
        address = address.unwrap_or("-"),
        reason,
        "login page refused"
    );
}

const LOGIN_FAILED: &str = "The username or password is not valid.";

async fn login(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let Some(az) = shared.authorize.as_ref() else {
        return pages::error_page(StatusCode::NOT_FOUND, "not_found", "not served");
    };
    let address = address_of(&req);
    let address = address.as_deref();
    let (sid, session, params) = match form_post(&shared, az, req).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let rid = params.single("rid").ok().flatten().unwrap_or("");
    let Some(pending) = session.pending(rid).cloned() else {
        return bad_request("the authorization request expired; start again from the application");
    };
    let client = match shared.clients.find(&pending.client_id).await {
        Ok(Some(c)) => c,
        _ => return bad_request("the client is no longer registered"),
    };
    let username = params.single("username").ok().flatten().unwrap_or("");
    let password = params.single("password").ok().flatten().unwrap_or("");
    let target = form_target(&pending.redirect_uri);
    let page = |error: &str| {
        pages::login(&pages::LoginPage {
            action: &az.login_path,
            csrf: &session.csrf,
            rid,
            client_id: client.client_id(),
            username,
            error: Some(error),
            form_target: target.as_deref(),
        })
    };
    if username.is_empty() || password.is_empty() {
        return page("Enter your username and password.");
    }
    let cid = client.client_id();
    if let Some(a) = address {
        if let Err(after) = shared.address_limiter.check(a) {
            audit_login_failure(cid, username, address, "address_locked");
            let mut res = pages::error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many failed logins from this address; try again later",
            );
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
            return res;
        }
    }
    let g = &shared.user_grants;
    if g.user_limiter.check(username).is_err() {
        audit_login_failure(cid, username, address, "locked");
        return page(LOGIN_FAILED);
    }
    let Some(users) = &g.users else {
        audit_login_failure(cid, username, address, "no_user_store");
        return page(LOGIN_FAILED);
    };
    let user = match users.find_by_username(username).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(target: "tower_bearer::issuer", error = %e, "user store failed");
            return pages::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again later",
            );
        }
    };
    let hash: Option<&PasswordHash> = user.as_ref().and_then(|u| u.password_hash.as_ref());
    let verified = shared.hasher.verify(password.as_bytes(), hash).await;
    let reason = match &user {
        None => Some("unknown_user"),
        Some(u) if u.password_hash.is_none() => Some("no_password"),
        Some(_) if !verified => Some("wrong_password"),
        Some(u) if !u.enabled => Some("disabled"),
        Some(_) => None,
    };
    let (Some(user), None) = (user, reason) else {
        g.user_limiter.record_failure(username);
        if let Some(a) = address {
            shared.address_limiter.record_failure(a);
        }
        audit_login_failure(cid, username, address, reason.unwrap_or("unknown_user"));
        return page(LOGIN_FAILED);
    };
    g.user_limiter.record_success(username);
    if let Some(h) = &user.password_hash {
        if shared.hasher.needs_upgrade(h) {
            crate::issuer::grants::password::rehash(&shared, &user, password).await;
        }
    }
    let now = shared.clock.now_unix();
    let logged = LoggedIn {
        user_id: user.user_id.clone(),
        username: user.username.clone(),
        auth_time: now,
    };
    let Some((new_sid, session)) = az.sessions.login(&sid, logged, now) else {
        return bad_request("the login session expired; start again from the application");
    };
    tracing::info!(
        target: "tower_bearer::audit",
        event = "login",
        client_id = cid,
        username,
        uid = %user.user_id,
        address = address.unwrap_or("-"),
        "login page"
    );
    let res = proceed(&shared, az, &client, &new_sid, &session, rid, false).await;
    with_cookie(res, Some(az.cookie(&new_sid)))
}

async fn consent(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let Some(az) = shared.authorize.as_ref() else {
        return pages::error_page(StatusCode::NOT_FOUND, "not_found", "not served");
    };
    let (sid, session, params) = match form_post(&shared, az, req).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let Some(user) = session.user.clone() else {
        return bad_request("not logged in; start again from the application");
    };
    let now = shared.clock.now_unix();
    let rid = params.single("rid").ok().flatten().unwrap_or("");
    let decision = params.single("decision").ok().flatten();
    if !matches!(decision, Some("approve" | "deny")) {
        return bad_request("missing decision");
    }
    let Some(pending) = az.sessions.take_pending(&sid, rid, now) else {
        return bad_request("the authorization request expired; start again from the application");
    };
    if decision == Some("deny") {
        tracing::info!(target: "tower_bearer::audit", event = "consent_denied", client_id = %pending.client_id, uid = %user.user_id, "consent denied");
        return redirect_error(
            &shared,
            &pending.redirect_uri,
            pending.state.as_deref(),
            "access_denied",
            "the user denied the request",
        );
    }
    match shared.clients.find(&pending.client_id).await {
        Ok(Some(c)) if c.redirect_uris().contains(&pending.redirect_uri) => {}
        _ => return bad_request("the client is no longer registered"),
    }
    az.sessions
        .consent(&sid, &pending.client_id, &pending.scopes, now);
    tracing::info!(target: "tower_bearer::audit", event = "consent_given", client_id = %pending.client_id, uid = %user.user_id, scope = %pending.scopes.join(" "), "consent given");
    issue_code(&shared, az, &pending, &user).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris() {
        for ok in [
            "https://app.example/cb",
            "https://app.example/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "http://localhost/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/cb",
            "https://app.example/cb#frag",
            "http://app.example/cb",
            "https://user@app.example/cb",
            "javascript:alert(1)",
            "https://app.example/c b",
            "https:///cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_and_targets() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(!is_loopback_http("https://127.0.0.1:9000"));
        assert!(!is_loopback_http("http://auth.example"));
        assert_eq!(
            form_target("https://app.example:8443/cb?x").as_deref(),
            Some("https://app.example:8443")
        );
        assert_eq!(
            form_target("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
    }
}
