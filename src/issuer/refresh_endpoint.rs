//! Seed 004's simplified refresh endpoint, `/auth/refresh-token` (off unless
//! `refresh-endpoint.enabled: true`).
//!
//! `POST /auth/refresh-token` with a form body `refresh_token=…` (optionally `scope`) answers
//!
//! - success: `200 {"code":200,"message":"success","data":{…the token response…}}`;
//! - errors: `{"code":400|401|…,"message":"<error code>","data":null}` with the same HTTP status
//!   (and `WWW-Authenticate` / `Retry-After`) as the token endpoint would give, e.g.
//!   `{"code":400,"message":"invalid_grant","data":null}`.
//!
//! It runs **exactly** the token endpoint's code: the same client authentication and the same
//! `refresh_token` grant (rotation, reuse detection revoking the family, user reload, audit), as
//! if `grant_type=refresh_token` had been sent to `/oauth2/token`. So the client must
//! authenticate like at the token endpoint (`client_secret_basic` or `client_secret_post`, as
//! registered); seed 004's bare form (`refresh_token` alone) is `401 invalid_client`, unless it
//! names a public client (`client_id`, `auth-method: none`), whose refresh tokens come only from
//! the PKCE-bound authorization code flow. The client must list `refresh_token` in its
//! `grant-types`. `Cache-Control: no-store` and `Pragma: no-cache` on every answer.
//!
//! **GET is refused by default** (405, `Allow: POST`). A refresh token in a URL is written to
//! access logs, proxy logs and browser history, and OAuth 2.1 forbids credentials in the query.
//! Spring users used to a `@RequestMapping` that takes both can switch it on
//! (`refresh-endpoint.allow-get: true`) for old clients: the parameters then come from the query,
//! `client_secret` is still refused there (send `Authorization: Basic`), and the answer is
//! `no-store` as well.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tower::ServiceExt;
//! use tower_bearer::issuer::clients::RegisteredClient;
//! use tower_bearer::issuer::config::{AuthMethod, GrantType};
//! use tower_bearer::issuer::password::PasswordHash;
//! use tower_bearer::issuer::users::{MemoryUserStore, User};
//! use tower_bearer::issuer::AuthorizationServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hash = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU."; // "correct horse", test only
//! let users = MemoryUserStore::from_users([User::new("1001", "alice")
//!     .with_password_hash(PasswordHash::parse(hash).unwrap())])
//! .unwrap();
//! let server = AuthorizationServer::builder("https://auth.example")
//!     .password_grant(true)
//!     .refresh_endpoint(true)
//!     .with_user_store(Arc::new(users))
//!     .client(
//!         RegisteredClient::new("web", AuthMethod::ClientSecretPost)
//!             .with_secret_hash(PasswordHash::parse(hash).unwrap())
//!             .with_grant_types([GrantType::Password, GrantType::RefreshToken]),
//!     )
//!     .build()
//!     .await
//!     .unwrap();
//! let post = |path: &'static str, body: String| {
//!     let req = http::Request::post(path)
//!         .header("content-type", "application/x-www-form-urlencoded")
//!         .body(axum::body::Body::from(body))
//!         .unwrap();
//!     let app = server.router();
//!     async move {
//!         let res = app.oneshot(req).await.unwrap();
//!         let status = res.status();
//!         let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
//!         (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
//!     }
//! };
//! let creds = "client_id=web&client_secret=correct+horse";
//! let (_, login) = post("/oauth2/token", format!("{creds}&grant_type=password&username=alice&password=correct+horse")).await;
//! let rt = login["refresh_token"].as_str().unwrap().to_owned();
//! let (status, ok) = post("/auth/refresh-token", format!("{creds}&refresh_token={rt}")).await;
//! assert_eq!(status, 200);
//! assert_eq!((ok["code"].as_u64(), ok["message"].as_str()), (Some(200), Some("success")));
//! assert!(ok["data"]["refresh_token"].is_string());
//! // The same token again: reuse (same detection as the token endpoint).
//! let (status, err) = post("/auth/refresh-token", format!("{creds}&refresh_token={rt}")).await;
//! assert_eq!(status, 400);
//! assert_eq!(err, serde_json::json!({"code": 400, "message": "invalid_grant", "data": null}));
//! // No client authentication: invalid_client.
//! let (status, err) = post("/auth/refresh-token", format!("refresh_token={rt}")).await;
//! assert_eq!((status.as_u16(), err["message"].as_str()), (401, Some("invalid_client")));
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use zeroize::Zeroizing;

use crate::issuer::config::{AuthorizationServerConfig, DEFAULT_REFRESH_ENDPOINT_PATH, GrantType};
use crate::issuer::endpoints::{AddressKey, FormRequest, dispatch_form, form_dispatch, no_store};
use crate::issuer::grants::{ErrorCode, TokenError};
use crate::issuer::{AuthorizationServerBuilder, Shared};

/// Settings of the simplified refresh endpoint (`refresh-endpoint`).
#[derive(Debug, Clone)]
pub(crate) struct RefreshEndpointOptions {
    pub(crate) enabled: bool,
    pub(crate) path: String,
    pub(crate) allow_get: bool,
}

impl Default for RefreshEndpointOptions {
    fn default() -> Self {
        Self {
            enabled: false,
            path: DEFAULT_REFRESH_ENDPOINT_PATH.to_owned(),
            allow_get: false,
        }
    }
}

impl RefreshEndpointOptions {
    pub(crate) fn from_config(cfg: &AuthorizationServerConfig) -> Self {
        let s = cfg.refresh_endpoint.as_ref();
        Self {
            enabled: s.and_then(|s| s.enabled).unwrap_or(false),
            path: cfg.refresh_endpoint_path().to_owned(),
            allow_get: s.and_then(|s| s.allow_get).unwrap_or(false),
        }
    }
}

impl AuthorizationServerBuilder {
    /// Serves seed 004's simplified refresh endpoint (`/auth/refresh-token`, see
    /// [`refresh_endpoint`](crate::issuer::refresh_endpoint)). Off by default.
    ///
    /// # Example
    ///
    /// See the [module docs](crate::issuer::refresh_endpoint).
    pub fn refresh_endpoint(mut self, enabled: bool) -> Self {
        self.refresh_endpoint.enabled = enabled;
        self
    }

    /// The simplified refresh endpoint's path (default `/auth/refresh-token`).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = AuthorizationServer::builder("https://a.example").refresh_endpoint_path("no-slash").build().await;
    /// assert!(s.is_err());
    /// # }
    /// ```
    pub fn refresh_endpoint_path(mut self, path: impl Into<String>) -> Self {
        self.refresh_endpoint.path = path.into();
        self
    }

    /// Also answers `GET` on the simplified refresh endpoint (off by default: a refresh token in
    /// a URL leaks into logs; see the [module docs](crate::issuer::refresh_endpoint)).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::AuthorizationServer;
    ///
    /// let b = AuthorizationServer::builder("https://a.example").refresh_endpoint(true).refresh_endpoint_get(true);
    /// # let _ = b;
    /// ```
    pub fn refresh_endpoint_get(mut self, allow: bool) -> Self {
        self.refresh_endpoint.allow_get = allow;
        self
    }
}

/// The route, when enabled.
pub(crate) fn routes(shared: &Shared) -> Router<Arc<Shared>> {
    let opts = &shared.refresh_endpoint;
    if !opts.enabled {
        return Router::new();
    }
    Router::new().route(&opts.path, any(refresh))
}

/// `{"code": status, "message": error, "data": null}`, headers of the token endpoint's error.
fn envelope_error(e: TokenError) -> Response {
    let status = e.status();
    let code = e.code().as_str();
    let res = e.into_response();
    let (mut parts, _) = res.into_parts();
    let body = serde_json::json!({ "code": status.as_u16(), "message": code, "data": null });
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}

async fn refresh(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let get = req.method() == Method::GET && shared.refresh_endpoint.allow_get;
    if req.method() != Method::POST && !get {
        let allow = if shared.refresh_endpoint.allow_get {
            "GET, POST"
        } else {
            "POST"
        };
        let mut res = envelope_error(
            TokenError::new(ErrorCode::InvalidRequest, "method not allowed")
                .with_status(StatusCode::METHOD_NOT_ALLOWED),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return res;
    }
    match refresh_request(&shared, req, get).await {
        Ok(tokens) => {
            let body = serde_json::json!({ "code": 200, "message": "success", "data": tokens });
            let mut res = Response::new(Body::from(body.to_string()));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            no_store(res.headers_mut());
            res
        }
        Err(e) => envelope_error(e),
    }
}

async fn refresh_request(
    shared: &Shared,
    req: Request,
    get: bool,
) -> Result<crate::issuer::grants::TokenResponse, TokenError> {
    if !get {
        return form_dispatch(shared, req, Some(GrantType::RefreshToken)).await;
    }
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| AddressKey::new(c.0.ip()));
    let (parts, _) = req.into_parts();
    let query = parts.uri.query().unwrap_or("");
    if form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "client_secret") {
        return Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "`client_secret` must not be sent in the URL query; use HTTP Basic",
        ));
    }
    let body = Zeroizing::new(query.as_bytes().to_vec());
    let form = FormRequest {
        headers: parts.headers,
        body,
        address,
    };
    dispatch_form(shared, &form, Some(GrantType::RefreshToken)).await
}
