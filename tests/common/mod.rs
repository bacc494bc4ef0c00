//! Shared test fixtures: a real identity provider (JWKS + discovery) on 127.0.0.1, token minting,
//! and a small HTTP client. Keys are generated at test time.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[cfg(feature = "issuer")]
pub mod issuer;
pub mod redis_server;

pub const ISSUER_PATH: &str = "";

/// What the JWKS endpoint answers.
#[derive(Clone, Debug)]
pub enum Mode {
    Keys(Value),
    Status(u16),
    Html,
    EmptySet,
}

pub struct IdpState {
    pub mode: Mutex<Mode>,
    pub cache_control: Mutex<Option<String>>,
    pub jwks_hits: AtomicUsize,
    pub discovery_hits: AtomicUsize,
    pub issuer: Mutex<String>,
    pub delay: Mutex<Duration>,
}

/// A real identity provider on 127.0.0.1: `/jwks` and `/.well-known/openid-configuration`.
pub struct Idp {
    pub addr: SocketAddr,
    pub state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks(State(s): State<Arc<IdpState>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mode = s.mode.lock().unwrap().clone();
    let mut headers = HeaderMap::new();
    if let Some(cc) = s.cache_control.lock().unwrap().clone() {
        headers.insert("cache-control", cc.parse().unwrap());
    }
    match mode {
        Mode::Keys(v) => (headers, axum::Json(v)).into_response(),
        Mode::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Mode::Html => (
            [("content-type", "text/html")],
            "<html><body>maintenance</body></html>",
        )
            .into_response(),
        Mode::EmptySet => axum::Json(json!({"keys": []})).into_response(),
    }
}

async fn discovery(State(s): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let host = headers["host"].to_str().unwrap().to_owned();
    let issuer = s.issuer.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("http://{host}/jwks"),
    }))
    .into_response()
}

impl Idp {
    pub async fn start(jwks: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, jwks).await
    }

    /// Starts on a given (previously reserved) address.
    pub async fn start_on(addr: SocketAddr, jwks: Value) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, jwks).await
    }

    async fn serve(listener: TcpListener, jwks_doc: Value) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IdpState {
            mode: Mutex::new(Mode::Keys(jwks_doc)),
            cache_control: Mutex::new(None),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            issuer: Mutex::new(format!("http://{addr}")),
            delay: Mutex::new(Duration::ZERO),
        });
        let app = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    pub fn issuer(&self) -> String {
        self.state.issuer.lock().unwrap().clone()
    }
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }
    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }
    pub fn set_keys(&self, keys: &[&tower_bearer::signing::SigningKey]) {
        self.set(Mode::Keys(jwks_of(keys)));
    }
    pub fn hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

pub fn jwks_of(keys: &[&tower_bearer::signing::SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()})
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn reserve_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard valid claims for `iss`.
pub fn claims(iss: &str, aud: &str) -> Value {
    let now = now();
    json!({
        "iss": iss, "aud": aud, "sub": "alice", "uid": "u-1", "tenant": "t-1",
        "scope": "orders.read", "roles": ["user"], "iat": now, "exp": now + 300, "jti": "j-1"
    })
}

/// Serves `app` on 127.0.0.1; returns its base URL.
pub async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// The body as text (lossy UTF-8).
    pub body: String,
    /// The body as JSON (`Null` when it is not).
    pub json: Value,
}

impl Reply {
    /// Reads a whole response.
    pub async fn read(res: http::Response<hyper::body::Incoming>) -> Self {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a GET with the given headers through a real hyper client.
pub async fn http_get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = client
        .request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    Reply::read(res).await
}

pub async fn get_bearer(url: &str, token: &str) -> Reply {
    let h = format!("Bearer {token}");
    http_get(url, &[("authorization", &h)]).await
}

/// A real OAuth2 token endpoint (client_credentials only) issuing JWTs signed by `key`.
pub struct TokenEndpoint {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn token_endpoint(
    key: Arc<tower_bearer::signing::SigningKey>,
    issuer: String,
    client_id: &str,
    secret: &str,
) -> TokenEndpoint {
    use base64::Engine as _;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let expected = (client_id.to_owned(), secret.to_owned());
    let app = Router::new().route(
        "/oauth2/token",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (key, issuer, expected, h) = (key.clone(), issuer.clone(), expected.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let form: Vec<(String, String)> = body
                    .split('&')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (form_decode(k), form_decode(v)))
                    .collect();
                let get = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                let creds = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.split_once(':').map(|(a, b)| (form_decode(a), form_decode(b))));
                if creds.as_ref() != Some(&expected) {
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
                }
                if get("grant_type").as_deref() != Some("client_credentials") {
                    return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"}))).into_response();
                }
                let now = now();
                let token = key
                    .sign(&json!({
                        "iss": issuer, "sub": expected.0, "client_id": expected.0, "gty": "client-credentials",
                        "aud": get("audience").unwrap_or_default(), "scope": get("scope").unwrap_or_default(),
                        "iat": now, "exp": now + 300, "jti": format!("t-{now}")
                    }))
                    .unwrap();
                axum::Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 300})).into_response()
            }
        }),
    );
    TokenEndpoint {
        url: format!("{}/oauth2/token", serve(app).await),
        hits,
    }
}
