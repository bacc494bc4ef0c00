//! The authorization server over real HTTP: serving it on 127.0.0.1 (its issuer URL is that
//! address), raw requests through hyper, and the test-only credentials every issuer test uses.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;
use tower_bearer::issuer::password::PasswordHash;
use tower_bearer::issuer::{AuthorizationServer, AuthorizationServerBuilder};

/// bcrypt (cost 4) of `correct horse`: test-only.
pub const HASH: &str = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";
/// The password of [`HASH`].
pub const PW: &str = "correct horse";
pub const FORM: &str = "application/x-www-form-urlencoded";

pub fn hash() -> PasswordHash {
    PasswordHash::parse(HASH).unwrap()
}

/// Serves `app` (with connect info) on `listener`.
pub fn spawn_serve(listener: TcpListener, app: axum::Router) {
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
}

/// Serves `app` (with connect info) on a free port; returns its base URL.
pub async fn listen(app: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    spawn_serve(listener, app);
    base
}

/// Builds the issuer `builder(base)` returns for a free port's base URL and serves its router
/// there.
pub async fn serve_issuer(
    builder: impl FnOnce(&str) -> AuthorizationServerBuilder,
) -> (AuthorizationServer, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = builder(&base).build().await.unwrap();
    spawn_serve(listener, server.router());
    (server, base)
}

pub use super::Reply;

/// Sends `req` through a real hyper client.
pub async fn send(req: http::Request<Full<Bytes>>) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    Reply::read(client.request(req).await.unwrap()).await
}

/// Sends `method url` with `headers` and `body`.
pub async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

pub async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    call("POST", url, headers, body).await
}

/// RFC 6749 §2.3.1 Basic credentials: id and secret form-urlencoded, then base64.
pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// POSTs the form `body` to `url` as client `id` (secret [`PW`], Basic); no credentials when
/// `id` is empty.
pub async fn post_form(url: &str, id: &str, body: &str) -> Reply {
    let auth = basic(id, PW);
    let mut h = vec![("content-type", FORM)];
    if !id.is_empty() {
        h.push(("authorization", auth.as_str()));
    }
    post(url, &h, body).await
}

/// The token endpoint of `base`, as [`post_form`].
pub async fn token(base: &str, id: &str, body: &str) -> Reply {
    post_form(&format!("{base}/oauth2/token"), id, body).await
}

/// The payload (claims) of a JWT, unverified.
pub fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// The JOSE header of a JWT.
pub fn header_of(jwt: &str) -> Value {
    let p = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// The refresh token of a token response.
pub fn rt_of(r: &Reply) -> String {
    r.json["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token: {r:?}"))
        .to_owned()
}

/// The access token of a token response.
pub fn at_of(r: &Reply) -> String {
    r.json["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {r:?}"))
        .to_owned()
}
