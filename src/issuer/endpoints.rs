//! HTTP endpoints: token (RFC 6749 §3.2), JWKS (RFC 7517), metadata (RFC 8414), revocation
//! (RFC 7009) and introspection (RFC 7662).
//!
//! Revocation and introspection take `POST` and a form body, and authenticate the client
//! exactly as the token endpoint. `POST /oauth2/revoke`: `token` required, `token_type_hint`
//! a hint only; 200 with an empty body for unknown, expired or garbage tokens and for another
//! client's token (left alone); a refresh token revokes its family, an access token we signed
//! goes on the `jti` revocation list until its `exp`. `POST /oauth2/introspect`: only clients
//! with `introspection: true` (another authenticated client: 403 `unauthorized_client`, since
//! it did authenticate; bad credentials: 401 `invalid_client`); inactive is exactly
//! `{"active":false}`; active answers `scope client_id username token_type exp iat sub aud iss
//! jti` plus `uid`, `tenant`, `sid`, after checking the signature (active, published and retired
//! keys), `iss`, expiry, the `jti` revocation list and the family (`sid`); a refresh token is
//! active while it is its family's current token and the family is usable.
//! `Cache-Control: no-store` on both.
//!
//! The token endpoint takes `POST` only (any other method: 405 with `Allow: POST`), a body of
//! type `application/x-www-form-urlencoded` (else `invalid_request`) of at most
//! [`DEFAULT_MAX_BODY_LEN`](crate::issuer::DEFAULT_MAX_BODY_LEN) bytes (else 413
//! `invalid_request`). Every answer, success or error, has `Cache-Control: no-store` and
//! `Pragma: no-cache`; errors are `{"error", "error_description"}` (RFC 6749 §5.2).
//!
//! Client authentication (RFC 6749 §2.3): `client_secret_basic` (the id and secret are
//! form-urlencoded before Basic encoding) or `client_secret_post`, the registered method
//! enforced. Two methods in one request, credentials in the URL query, or a body `client_id`
//! different from Basic's are `invalid_request`; no client authentication, an unknown client, a
//! wrong secret or the wrong method are `invalid_client` (401, with `WWW-Authenticate: Basic`
//! when Basic was used or nothing was sent). Unknown clients are checked against a dummy hash of
//! the same cost. Failures are counted per client id and per source address (when the router
//! is served with `ConnectInfo<SocketAddr>`): past the limits, 429 with `Retry-After`.
//!
//! # Example
//!
//! ```
//! use tower::ServiceExt;
//! use tower_bearer::issuer::AuthorizationServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = AuthorizationServer::builder("https://auth.example").build().await.unwrap().router();
//! let res = app
//!     .oneshot(http::Request::get("/oauth2/token").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 405);
//! assert_eq!(res.headers()["allow"], "POST");
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! # }
//! ```

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use tower_service::Service;
use zeroize::Zeroizing;

use crate::issuer::Shared;
use crate::issuer::audit::audit;
use crate::issuer::clients::{BasicError, Credentials, Presented, RegisteredClient, parse_basic};
use crate::issuer::config::{AuthMethod, GrantType};
use crate::issuer::grants::{
    ErrorCode, GrantRequest, Params, TokenError, TokenResponse, client_credentials,
};

mod revocation;

/// Parameters that never belong in the URL query of a token request.
pub(crate) const SENSITIVE_QUERY: [&str; 6] = [
    "client_id",
    "client_secret",
    "password",
    "refresh_token",
    "code",
    "code_verifier",
];

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let token_path = shared.token_path.clone();
    let jwks_path = shared.jwks_path.clone();
    let router = Router::new()
        .route_service(
            &token_path,
            TokenEndpoint {
                shared: shared.clone(),
            },
        )
        .route(&jwks_path, get(jwks))
        .route(&shared.user_grants.revoke_path, any(revocation::revoke))
        .route(
            &shared.user_grants.introspect_path,
            any(revocation::introspect),
        )
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .merge(crate::issuer::refresh_endpoint::routes(&shared));
    crate::issuer::authorize::routes(router, &shared).with_state(shared)
}

pub(crate) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code().as_str(),
            "error_description": self.description(),
        });
        let mut res = json_response(self.status(), body.to_string().into_bytes());
        let headers = res.headers_mut();
        no_store(headers);
        if self.basic_challenge() {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth2\", charset=\"UTF-8\""),
            );
        }
        if let Some(after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        res
    }
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut res = json_response(StatusCode::OK, token_response_json(&self));
        no_store(res.headers_mut());
        res
    }
}

/// The token endpoint's success: the same response as [`TokenResponse`]'s `into_response`
/// with its `Content-Length`, from a head built once (status, `Content-Type`, `Cache-Control`,
/// `Pragma`, `Content-Length`, in that order) and cloned, its length then set: no header
/// inserted per request.
fn token_ok(r: &TokenResponse) -> Response {
    static HEAD: std::sync::LazyLock<http::response::Parts> = std::sync::LazyLock::new(|| {
        let (mut head, ()) = Response::new(()).into_parts();
        head.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        no_store(&mut head.headers);
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        head
    });
    let body = token_response_json(r);
    let len = content_length(body.len());
    let mut res = Response::from_parts(HEAD.clone(), Body::from(body));
    if let Some(v) = res.headers_mut().get_mut(header::CONTENT_LENGTH) {
        *v = len;
    }
    res
}

/// A `Content-Length` value: the last one this thread made when the length is the same (the
/// token responses of one client have one length: the same fixed claims, a fixed-size `jti`),
/// a clone of it sharing its bytes, instead of formatting and allocating a new one.
fn content_length(len: usize) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(usize, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((n, v)) if *n == len => v.clone(),
            _ => {
                let v = HeaderValue::from(len);
                *last = Some((len, v.clone()));
                v
            }
        }
    })
}

/// The JSON body of a token response, written member by member into one buffer of exactly its
/// size when no value needs an escape (the usual case: base64url tokens, scope names; a value
/// with escapes grows the buffer), so that `Bytes::from` takes the buffer as it is, with no
/// shared header allocated beside it.
fn token_response_json(r: &TokenResponse) -> Vec<u8> {
    use crate::issuer::tokens::{push_json_str as string, push_u64};
    let quoted = |s: &str| s.len() + 2;
    let digits = r.expires_in.checked_ilog10().map_or(1, |d| d as usize + 1);
    let exact = br#"{"access_token":,"token_type":,"expires_in":}"#.len()
        + quoted(&r.access_token)
        + quoted(r.token_type)
        + digits
        + r.scope
            .as_deref()
            .map_or(0, |s| br#","scope":"#.len() + quoted(s))
        + r.refresh_token
            .as_deref()
            .map_or(0, |s| br#","refresh_token":"#.len() + quoted(s));
    let mut out = Vec::with_capacity(exact);
    out.extend_from_slice(b"{\"access_token\":");
    string(&mut out, &r.access_token);
    out.extend_from_slice(b",\"token_type\":");
    string(&mut out, r.token_type);
    out.extend_from_slice(b",\"expires_in\":");
    push_u64(&mut out, r.expires_in);
    if let Some(scope) = &r.scope {
        out.extend_from_slice(b",\"scope\":");
        string(&mut out, scope);
    }
    if let Some(refresh) = &r.refresh_token {
        out.extend_from_slice(b",\"refresh_token\":");
        string(&mut out, refresh);
    }
    out.push(b'}');
    out
}

/// The token endpoint, a hand-written [`Service`] mounted with `route_service`: one boxed
/// future per request (the one axum's route boxes it in) and no handler machinery (no
/// extractors, no `MethodRouter`), so a token request runs through fewer distinct functions
/// (the issuance's native cost over the signature is mostly instruction-cache misses).
///
/// It answers as the former `any(token)` handler did through axum's `MethodRouter`: any
/// method but `POST` is 405 with `Allow: POST`, `Content-Length` is set from the body, and a
/// `HEAD` request's answer keeps its headers but not its body.
#[derive(Clone)]
pub(crate) struct TokenEndpoint {
    shared: Arc<Shared>,
}

impl Service<Request> for TokenEndpoint {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send + 'static>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.method() != Method::POST {
            return refused(not_post(), req.method() == Method::HEAD);
        }
        let mut head = match form_head(req, &SENSITIVE_QUERY, SENSITIVE_QUERY_ERROR) {
            Ok(head) => head,
            Err(e) => return refused(e.into_response(), false),
        };
        let shared = self.shared.clone();
        Box::pin(async move {
            Ok(match token(&shared, &mut head).await {
                Ok(r) => token_ok(&r),
                Err(e) => with_content_length(error_response(e)),
            })
        })
    }
}

/// The token endpoint past [`form_head`]: the body, then [`dispatch`].
async fn token(shared: &Shared, head: &mut FormHead) -> Result<TokenResponse, TokenError> {
    let body = head.read_body(shared.max_body_len).await?;
    let params = Params::parse(&body);
    dispatch(
        shared,
        &head.headers,
        &params,
        head.address.as_ref().map(AddressKey::as_str),
        None,
    )
    .await
}

/// A [`TokenError`]'s response, out of the success path.
#[cold]
#[inline(never)]
fn error_response(e: TokenError) -> Response {
    e.into_response()
}

/// The token endpoint's answer to any method but `POST`.
#[cold]
#[inline(never)]
fn not_post() -> Response {
    let mut res = TokenError::new(
        ErrorCode::InvalidRequest,
        "the token endpoint takes POST only",
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .into_response();
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}

/// A request the token endpoint answers before reading its body (`head_only`: a `HEAD`
/// request, answered without a body, its `Content-Length` that of the body it would have had).
#[cold]
#[inline(never)]
fn refused(
    res: Response,
    head_only: bool,
) -> Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send + 'static>> {
    let mut res = with_content_length(res);
    if head_only {
        *res.body_mut() = Body::empty();
    }
    Box::pin(std::future::ready(Ok(res)))
}

/// Sets `Content-Length` from the body's exact size, as axum's method router does for a
/// handler's response.
fn with_content_length(mut res: Response) -> Response {
    use http_body::Body as _;
    if let Some(len) = res.body().size_hint().exact() {
        if !res.headers().contains_key(header::CONTENT_LENGTH) {
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    res
}

pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    // The media type: up to the first `;`, without surrounding whitespace (a value `to_str`
    // accepts is visible ASCII, spaces and tabs: ASCII trimming is `str::trim` on it).
    v.to_str().ok().is_some_and(|v| {
        let v = v.as_bytes();
        let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
        v[..end]
            .trim_ascii()
            .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
    })
}

/// The source address as the limiters and audit events key it: `IpAddr`'s `Display`, written
/// without the formatting machinery for IPv4 and kept inline (no allocation per request).
#[derive(Clone, Copy)]
pub(crate) struct AddressKey {
    /// An IPv6 address's text is at most 45 characters.
    buf: [u8; 48],
    len: u8,
}

impl AddressKey {
    pub(crate) fn new(ip: IpAddr) -> Self {
        let mut key = Self {
            buf: [0; 48],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                let mut at = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        key.buf[at] = b'.';
                        at += 1;
                    }
                    if octet >= 100 {
                        key.buf[at] = b'0' + octet / 100;
                        at += 1;
                    }
                    if octet >= 10 {
                        key.buf[at] = b'0' + octet / 10 % 10;
                        at += 1;
                    }
                    key.buf[at] = b'0' + octet % 10;
                    at += 1;
                }
                key.len = at as u8;
            }
            IpAddr::V6(_) => {
                use std::io::Write as _;
                let mut out = &mut key.buf[..];
                // 45 characters at most: always fits.
                let _ = write!(out, "{ip}");
                let left = out.len();
                key.len = (48 - left) as u8;
            }
        }
        key
    }

    pub(crate) fn as_str(&self) -> &str {
        // ASCII digits, dots, hex digits and colons.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// A form POST as read by [`read_form`].
pub(crate) struct FormRequest {
    /// The request headers (the rest of the head is not needed past [`form_head`]).
    pub(crate) headers: HeaderMap,
    /// The body, zeroized on drop.
    pub(crate) body: Zeroizing<Vec<u8>>,
    /// The source address, when the router is served with `ConnectInfo<SocketAddr>`.
    pub(crate) address: Option<AddressKey>,
}

/// A form POST whose head passed [`form_head`], its body not read yet.
pub(crate) struct FormHead {
    headers: HeaderMap,
    body: Body,
    address: Option<AddressKey>,
}

/// The synchronous part of [`read_form`]: none of `forbidden` in the URL query
/// (`invalid_request` with `query_error`), a form content type, the source address.
pub(crate) fn form_head(
    req: Request,
    forbidden: &[&str],
    query_error: &'static str,
) -> Result<FormHead, TokenError> {
    if let Some(q) = req.uri().query() {
        if form_urlencoded::parse(q.as_bytes()).any(|(k, _)| forbidden.contains(&&*k)) {
            return Err(TokenError::new(ErrorCode::InvalidRequest, query_error));
        }
    }
    if !is_form(req.headers()) {
        return Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| AddressKey::new(c.0.ip()));
    let (parts, body) = req.into_parts();
    Ok(FormHead {
        headers: parts.headers,
        body,
        address,
    })
}

impl FormHead {
    /// Reads the body (once: it is taken): at most `max_body_len` bytes (else 413
    /// `invalid_request`).
    async fn read_body(&mut self, max_body_len: usize) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        use http_body::Body as _;
        use http_body_util::BodyExt as _;
        let too_large = || {
            TokenError::new(ErrorCode::InvalidRequest, "the request body is too large")
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        };
        let mut body = std::mem::take(&mut self.body);
        // Frame by frame into one buffer sized by the body's hint (a form is one frame: one
        // allocation, no collecting into a list of buffers first).
        let hint = body.size_hint();
        if usize::try_from(hint.lower()).map_or(true, |n| n > max_body_len) {
            return Err(too_large());
        }
        let mut out = Zeroizing::new(Vec::with_capacity(hint.exact().map_or(0, |n| n as usize)));
        while let Some(frame) = body.frame().await {
            // A body that fails to arrive is answered as the limit's error (as before).
            let Ok(data) = frame.map_err(|_| too_large())?.into_data() else {
                continue;
            };
            if data.len() > max_body_len - out.len() {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// Reads the body: at most `max_body_len` bytes (else 413 `invalid_request`).
    async fn read(mut self, max_body_len: usize) -> Result<FormRequest, TokenError> {
        let body = self.read_body(max_body_len).await?;
        Ok(FormRequest {
            headers: self.headers,
            body,
            address: self.address,
        })
    }
}

/// The preamble of every form endpoint that authenticates a client (token, revocation,
/// introspection, the refresh endpoint's POST): [`form_head`], then the body of at most
/// `max_body_len` bytes (else 413 `invalid_request`).
pub(crate) async fn read_form(
    shared: &Shared,
    req: Request,
    forbidden: &[&str],
    query_error: &'static str,
) -> Result<FormRequest, TokenError> {
    form_head(req, forbidden, query_error)?
        .read(shared.max_body_len)
        .await
}

/// Why a token request's URL query is refused.
const SENSITIVE_QUERY_ERROR: &str = "credentials must not be sent in the URL query";

/// A form POST that authenticates a client and asks for a token, end to end: [`read_form`]
/// (the [`SENSITIVE_QUERY`] parameters refused in the URL query), then [`dispatch_form`]: the
/// refresh endpoint's POST (the token endpoint does the same inline).
pub(crate) async fn form_dispatch(
    shared: &Shared,
    req: Request,
    only: Option<GrantType>,
) -> Result<TokenResponse, TokenError> {
    let form = read_form(shared, req, &SENSITIVE_QUERY, SENSITIVE_QUERY_ERROR).await?;
    dispatch_form(shared, &form, only).await
}

/// Parses the form's parameters and [`dispatch`]es them.
pub(crate) async fn dispatch_form(
    shared: &Shared,
    form: &FormRequest,
    only: Option<GrantType>,
) -> Result<TokenResponse, TokenError> {
    let params = Params::parse(&form.body);
    dispatch(
        shared,
        &form.headers,
        &params,
        form.address.as_ref().map(AddressKey::as_str),
        only,
    )
    .await
}

/// Authenticates the client and runs the grant of `params` (`only`: the one grant this endpoint
/// serves, `grant_type` then optional): the token endpoint and the simplified refresh endpoint
/// share it.
pub(crate) async fn dispatch(
    shared: &Shared,
    headers: &HeaderMap,
    params: &Params<'_>,
    address: Option<&str>,
    only: Option<GrantType>,
) -> Result<TokenResponse, TokenError> {
    params.check_no_repeats(&["resource"])?;

    let (client, now) = authenticate(shared, headers, params, address).await?;

    let grant_type = match (params.single("grant_type")?, only) {
        (Some(g), _) => g,
        (None, Some(g)) => g.as_str(),
        (None, None) => {
            return Err(TokenError::new(
                ErrorCode::InvalidRequest,
                "missing parameter `grant_type`",
            ));
        }
    };
    if only.is_some_and(|g| g.as_str() != grant_type) {
        return Err(TokenError::new(
            ErrorCode::UnsupportedGrantType,
            format!(
                "this endpoint serves `{}` only",
                only.map_or("", GrantType::as_str)
            ),
        ));
    }
    let unsupported = || {
        TokenError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant type `{grant_type}` is not supported"),
        )
    };
    let grant = GrantType::parse(grant_type).ok_or_else(unsupported)?;
    let handler = shared.grant(grant).ok_or_else(unsupported)?;
    if !client.allows(grant) {
        return Err(TokenError::new(
            ErrorCode::UnauthorizedClient,
            format!("the client may not use `{grant_type}`"),
        ));
    }
    // `client_credentials` without a customizer waits for nothing: answered in place.
    if grant == GrantType::ClientCredentials {
        if let Some(answer) = client_credentials::issue_now(shared, &client, params, now) {
            return answer;
        }
    }
    handler
        .handle(GrantRequest {
            server: shared,
            client: &client,
            params,
            address,
        })
        .await
}

/// Reads the presented credentials (no secret check yet).
fn presented(headers: &HeaderMap, params: &Params<'_>) -> Result<Credentials, TokenError> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let first = auth.next();
    if auth.next().is_some() {
        return Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "more than one Authorization header",
        ));
    }
    let basic = match first {
        None => None,
        Some(v) => match parse_basic(v.as_bytes()) {
            Ok(c) => Some(c),
            Err(BasicError::NotBasic) => {
                return Err(TokenError::new(
                    ErrorCode::InvalidClient,
                    "unsupported client authentication method",
                )
                .with_basic_challenge());
            }
            Err(BasicError::Malformed) => {
                return Err(TokenError::new(
                    ErrorCode::InvalidRequest,
                    "malformed Basic credentials",
                ));
            }
        },
    };
    let body_id = params.single("client_id")?;
    let body_secret = params.single("client_secret")?;
    match (basic, body_secret) {
        (Some(_), Some(_)) => Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "more than one client authentication method",
        )),
        (Some((id, secret)), None) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(TokenError::new(
                    ErrorCode::InvalidRequest,
                    "`client_id` differs from the Basic credentials",
                ));
            }
            Ok(Credentials {
                client_id: id,
                secret: Some(secret),
                method: Presented::Basic,
            })
        }
        (None, Some(secret)) => {
            let id = body_id.ok_or_else(|| {
                TokenError::new(
                    ErrorCode::InvalidRequest,
                    "`client_secret` without `client_id`",
                )
            })?;
            Ok(Credentials {
                client_id: id.to_owned(),
                secret: Some(Zeroizing::new(secret.to_owned())),
                method: Presented::Post,
            })
        }
        (None, None) => match body_id {
            Some(id) => Ok(Credentials {
                client_id: id.to_owned(),
                secret: None,
                method: Presented::IdOnly,
            }),
            None => Err(TokenError::new(
                ErrorCode::InvalidClient,
                "no client authentication included",
            )
            .with_basic_challenge()),
        },
    }
}

/// Authenticates the client of a form request: the client, and the time (Unix seconds) read
/// once for the request (secret expiry, the verified-secret cache, then the token's `iat`).
pub(crate) async fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    params: &Params<'_>,
    address: Option<&str>,
) -> Result<(Arc<RegisteredClient>, u64), TokenError> {
    let creds = presented(headers, params)?;
    let id = creds.client_id.as_str();
    if let Err(after) = shared.client_limiter.check(id) {
        return Err(client_backing_off(shared, id, after));
    }
    if let Some(a) = address {
        if let Err(after) = shared.address_limiter.check(a) {
            return Err(address_backing_off(shared, a, after));
        }
    }
    let found = match shared.clients.find_now(id) {
        Some(found) => found,
        None => shared.clients.find(id).await,
    };
    let client = match found {
        Ok(client) => client,
        Err(e) => return Err(registry_failed(&e)),
    };
    let now = shared.clock.now_unix();
    let failure: Option<&'static str> = match (&creds.secret, creds.method) {
        (None, _) => match &client {
            None => Some("unknown_client"),
            Some(c) if c.auth_method() == AuthMethod::None => None,
            Some(_) => Some("no_secret"),
        },
        (Some(secret), method) => {
            let mut verified = false;
            let mut checked_any = false;
            // One cache tag for every stored hash checked.
            let tag = shared.verified.tag(id, secret);
            // The hash checks (cache misses: a bcrypt/argon2 run each) are boxed where they
            // happen, so this future (inside every token request's) does not carry their
            // state (~300 bytes) on the cached path.
            let active = client.as_ref().map(|c| c.active_secrets(now));
            for h in active.into_iter().flatten().flatten() {
                checked_any = true;
                let cached = shared.verified.contains(tag.as_ref(), h, now);
                if cached || Box::pin(shared.hasher.verify(secret.as_bytes(), Some(h))).await {
                    if !cached {
                        shared.verified.insert(tag.as_ref(), h, now);
                    }
                    verified = true;
                    break;
                }
            }
            if !checked_any {
                // Unknown client (or only expired secrets): the same cost as a real check.
                Box::pin(shared.hasher.verify(secret.as_bytes(), None)).await;
            }
            let expected = match method {
                Presented::Basic => AuthMethod::ClientSecretBasic,
                _ => AuthMethod::ClientSecretPost,
            };
            match &client {
                None => Some("unknown_client"),
                Some(c) if !verified => {
                    Some(Box::pin(wrong_secret_reason(shared, c, secret.as_bytes(), now)).await)
                }
                Some(c) if c.auth_method() != expected => Some("wrong_method"),
                Some(_) => None,
            }
        }
    };
    match (client, failure) {
        (Some(c), None) => {
            shared.client_limiter.record_success(id);
            Ok((c, now))
        }
        (_, reason) => Err(auth_failed(
            shared,
            id,
            address,
            reason.unwrap_or("unknown_client"),
            creds.method,
        )),
    }
}

/// The client is backing off (its failures past the limit): audited, 429.
#[cold]
#[inline(never)]
fn client_backing_off(shared: &Shared, id: &str, after: std::time::Duration) -> TokenError {
    audit!(Some(&shared.audit), info, "rate_limited", "client"; client_id = id, retry_after = after.as_secs(), "client authentication refused: backing off");
    TokenError::too_many(after)
}

/// The source address is backing off: audited, 429.
#[cold]
#[inline(never)]
fn address_backing_off(shared: &Shared, a: &str, after: std::time::Duration) -> TokenError {
    audit!(Some(&shared.audit), info, "rate_limited", "address"; address = a, retry_after = after.as_secs(), "client authentication refused: address backing off");
    TokenError::too_many(after)
}

/// The client registry failed: logged, `server_error`.
#[cold]
#[inline(never)]
fn registry_failed(e: &dyn std::fmt::Display) -> TokenError {
    tracing::error!(target: "tower_bearer::issuer", error = %e, "client registry failed");
    TokenError::server_error()
}

/// Only to log the precise reason of a wrong secret: does it match an expired secret?
async fn wrong_secret_reason(
    shared: &Shared,
    client: &RegisteredClient,
    secret: &[u8],
    now: u64,
) -> &'static str {
    for (h, exp) in client.all_secrets() {
        if exp.is_some_and(|e| now >= e) && shared.hasher.verify(secret, Some(h)).await {
            return "secret_expired";
        }
    }
    "wrong_secret"
}

/// A failed client authentication: counted against the client and the address (audited when
/// that locks them), audited, `invalid_client`.
#[cold]
#[inline(never)]
fn auth_failed(
    shared: &Shared,
    id: &str,
    address: Option<&str>,
    reason: &'static str,
    method: Presented,
) -> TokenError {
    let block = shared.client_limiter.record_failure(id);
    if shared.client_limiter.is_lock(block) {
        audit!(Some(&shared.audit), warn, "lockout", "client"; client_id = id, seconds = block.as_secs(), "client locked after repeated authentication failures");
    }
    if let Some(a) = address {
        let block = shared.address_limiter.record_failure(a);
        if shared.address_limiter.is_lock(block) {
            audit!(Some(&shared.audit), warn, "lockout", "address"; address = a, seconds = block.as_secs(), "source address locked after repeated failures");
        }
    }
    audit!(Some(&shared.audit), info, "client_auth_failed", reason; client_id = id, address = address.unwrap_or("-"), reason, "client authentication failed");
    let err = TokenError::new(ErrorCode::InvalidClient, "client authentication failed");
    if method == Presented::Post {
        err
    } else {
        err.with_basic_challenge()
    }
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.keys.jwks_json();
    let mut res = Response::new(Body::from(body.as_bytes().to_vec()));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let max_age = shared.keys.jwks_max_age().as_secs();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    res
}

async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    let mut res = json_response(StatusCode::OK, shared.metadata().to_string().into_bytes());
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

// ---------------------------------------------------------------------------------------------
// For `crate::__fuzz` (the `fuzz/` targets) only.

/// Reads a token request's form and presented client credentials exactly as the token endpoint
/// does before any secret check: `(client id, secret, method)`, or the `(error, description)`.
pub(crate) fn fuzz_credentials(
    authorization: &[&[u8]],
    body: &[u8],
) -> Result<(String, Option<String>, &'static str), (&'static str, String)> {
    let mut headers = HeaderMap::new();
    for v in authorization {
        let v =
            HeaderValue::from_bytes(v).map_err(|_| ("header", "not a header value".to_owned()))?;
        headers.append(header::AUTHORIZATION, v);
    }
    let fail = |e: TokenError| (e.code().as_str(), e.description().to_owned());
    let params = Params::parse(body);
    params.check_no_repeats(&["resource"]).map_err(fail)?;
    let c = presented(&headers, &params).map_err(fail)?;
    let method = match c.method {
        Presented::Basic => "basic",
        Presented::Post => "post",
        Presented::IdOnly => "id_only",
    };
    Ok((c.client_id, c.secret.map(|s| s.as_str().to_owned()), method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys_are_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.99.100",
            "255.255.255.255",
            "1.2.3.4",
            "::1",
            "2001:db8::7",
            "::ffff:1.2.3.4",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "1111:2222:3333:4444:5555:6666:7777:8888",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(AddressKey::new(ip).as_str(), ip.to_string());
        }
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, o / 3, 255 - o, 7]);
            assert_eq!(AddressKey::new(ip).as_str(), ip.to_string());
        }
    }

    /// The prebuilt success head gives the response `into_response` gives, with its length.
    #[test]
    fn token_ok_is_into_response() {
        use http_body::Body as _;
        let mut r = TokenResponse::bearer("eyJh.eyJz-_.c2ln".into(), 300);
        r.scope = Some("a b".into());
        let ours = token_ok(&r);
        let theirs = with_content_length(r.into_response());
        assert_eq!(ours.status(), theirs.status());
        assert_eq!(ours.version(), theirs.version());
        let pairs = |res: &Response| {
            res.headers()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&ours), pairs(&theirs));
        assert_eq!(
            ours.headers()[header::CONTENT_LENGTH],
            ours.body().size_hint().exact().unwrap().to_string()
        );
        assert_eq!(
            ours.body().size_hint().exact(),
            theirs.body().size_hint().exact()
        );
    }

    /// Any method but `POST`: 405 with `Allow: POST` and the error body (none for `HEAD`, its
    /// `Content-Length` that of the body it would have had), as under axum's method router.
    #[tokio::test]
    async fn token_endpoint_methods() {
        use http_body_util::BodyExt as _;
        use tower::ServiceExt as _;
        let app = crate::issuer::AuthorizationServer::builder("https://auth.example")
            .build()
            .await
            .unwrap()
            .router();
        let send = |method: Method| {
            let app = app.clone();
            async move {
                let res = app
                    .oneshot(
                        http::Request::builder()
                            .method(method)
                            .uri("/oauth2/token")
                            .body(Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let (parts, body) = res.into_parts();
                (parts, body.collect().await.unwrap().to_bytes())
            }
        };
        let (get, body) = send(Method::GET).await;
        assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(get.headers["allow"], "POST");
        assert_eq!(get.headers["cache-control"], "no-store");
        assert_eq!(get.headers["pragma"], "no-cache");
        assert_eq!(get.headers["content-type"], "application/json");
        assert_eq!(get.headers["content-length"], body.len().to_string());
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "invalid_request");
        for m in [Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
            let (res, other) = send(m).await;
            assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(res.headers["allow"], "POST");
            assert_eq!(other, body);
        }
        let (head, empty) = send(Method::HEAD).await;
        assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(head.headers["allow"], "POST");
        assert_eq!(head.headers["content-length"], body.len().to_string());
        assert!(empty.is_empty());
        // A POST that is not a form: the error with its length.
        let (post, body) = send(Method::POST).await;
        assert_eq!(post.status, StatusCode::BAD_REQUEST);
        assert_eq!(post.headers["content-length"], body.len().to_string());
        assert_eq!(post.headers["cache-control"], "no-store");
    }

    /// The hand-written token response is the JSON `serde` writes for it, escaping included.
    #[test]
    fn content_lengths_are_the_length() {
        for n in [5, 5, 612, 612, 0, 5, usize::MAX] {
            assert_eq!(content_length(n), n.to_string().as_str());
        }
    }

    #[test]
    fn token_response_json_is_serdes() {
        let mut plain = TokenResponse::bearer("eyJh.eyJz-_.c2ln".into(), 300);
        let mut cases = vec![plain.clone()];
        plain.scope = Some("a b".into());
        cases.push(plain.clone());
        plain.refresh_token = Some("rt_AbC-9".into());
        cases.push(plain.clone());
        let mut odd = TokenResponse::bearer("t\"\\\u{1}é".into(), u64::MAX);
        odd.scope = Some("\"x\"".into());
        odd.refresh_token = Some("r t".into());
        cases.push(odd);
        cases.push(TokenResponse::bearer(String::new(), 0));
        for n in [9, 10, 99, 100, 10_u64.pow(19) - 1, 10_u64.pow(19), u64::MAX] {
            cases.push(TokenResponse::bearer("eyJh.x.y".into(), n));
        }
        for r in cases {
            let ours = token_response_json(&r);
            // Sized exactly when nothing needs an escape.
            let plain = [
                Some(&r.access_token),
                r.scope.as_ref(),
                r.refresh_token.as_ref(),
            ]
            .into_iter()
            .flatten()
            .all(|s| !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
            if plain {
                assert_eq!(ours.capacity(), ours.len(), "{r:?}");
            }
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
        }
    }
}
