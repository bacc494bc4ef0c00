//! The issuer's token endpoint: the `application/x-www-form-urlencoded` form and HTTP Basic
//! client authentication (RFC 6749 §2.3.1, §3.2, RFC 7617).
//!
//! Input: `sel ...`.
//!
//! `sel` bit 7 clear, **direct**: the rest is `auth \n auth ... \n\n body`: every `auth` line
//! goes through the endpoint's Basic decoder (`__fuzz::issuer_basic`), and all of them, as
//! `Authorization` headers, with `body` through the endpoint's form and credential reading
//! (`__fuzz::issuer_credentials`). Both are compared with an independent model written here
//! from the RFCs (strict token68 after `Basic` and 1*SP, optional SP/HTAB around it, standard
//! padded base64, the id before the first `:`, each part form-urlencoded and UTF-8; form
//! parameters without a value are absent, no parameter repeated but `resource`, one method
//! per request). Bit 6 also round-trips the first two body lines as an `(id, secret)` encoded
//! as RFC 6749 §2.3.1 says a client must.
//!
//! `sel` bit 7 set, **router**: up to four requests separated by `\0`, each
//! `METHOD PATH \n Name: value \n ... \n\n body`, sent in order to one in-process
//! `AuthorizationServer::router()` (memory stores, test-only clients and user, fixed clock;
//! bit 0: with a `ConnectInfo` source address). `@RT@`, `@RT1@` and `@AT@` are replaced by the
//! last and the first refresh token and the last access token issued in this run. Checked on every token-endpoint answer:
//! `Cache-Control: no-store` and `Pragma: no-cache`; never 5xx; 405 with `Allow: POST` for
//! other methods; errors are RFC 6749 §5.2 JSON with a status matching the code and an
//! `error_description` within §5.2's character set (also checked in direct mode); a token is
//! issued only to a request whose credentials (decoded by the model) are a registered
//! client's, in its registered method, and names that client; a refresh token is never
//! accepted twice; an authorization code (two are stored per input: `fuzz-code` for the
//! public client, `fuzz-code-svc` for `svc`, both with the RFC 7636 S256 example challenge)
//! is redeemed at most once, by its own client, with the one matching `code_verifier` and its
//! `redirect_uri`.
#![no_main]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::ServiceExt;
use tower_bearer::__fuzz::{issuer_basic, issuer_credentials};
use tower_bearer::clock::ManualClock;
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
use tower_bearer::issuer::store::{hash_secret, CodeRecord, MemoryGrantStore};
use tower_bearer::issuer::users::{MemoryUserStore, User};
use tower_bearer::issuer::AuthorizationServer;
use tower_bearer::jwks::Algorithm;
use tower_bearer::signing::SigningKey;

const ISSUER: &str = "https://auth.example";
const TOKEN_PATH: &str = "/oauth2/token";
const NOW: u64 = 1_700_000_000;

/// Test-only credentials (the seeds use them), stored as Spring `{SHA-256}` hashes (one
/// SHA-256, salt `{fuzzsalt}`) so that a check costs microseconds, not an argon2 run.
const BASIC_CLIENT: (&str, &str) = ("svc", "fuzz-secret-basic");
const POST_CLIENT: (&str, &str) = ("poster", "fuzz-secret-post");
const PUBLIC_CLIENT: &str = "public";
const USER: (&str, &str) = ("alice", "fuzz-password");
const HASH_BASIC: &str = "57bc43e4a0c9c1ada06ee6980859f385627e8583013fdfead5cd7772c5198056";
const HASH_POST: &str = "0ec5d3ee720c9a38fa96b61f84dd2df867a11ca40dc7804cd5859250145f038d";
const CODES: [(&str, &str); 2] = [("fuzz-code", PUBLIC_CLIENT), ("fuzz-code-svc", BASIC_CLIENT.0)];
const REDIRECT_URI: &str = "https://app.example/cb";
/// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const HASH_USER: &str = "5d7f39a3b6b576d79b7f530d46864764ce2589eba2fdabd11af5b87a5ba518f9";

fn hash(hex: &str) -> PasswordHash {
    PasswordHash::parse(&format!("{{SHA-256}}{{fuzzsalt}}{hex}")).expect("test hash")
}

// ---------------------------------------------------------------------------------------------
// The model (independent of the crate).

/// `application/x-www-form-urlencoded` parsing (WHATWG URL §5.1): `&`-separated, empty
/// sequences skipped, name and value split at the first `=`, `+` is a space, percent-decoded,
/// UTF-8 with replacement.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (n, v) = match s.iter().position(|b| *b == b'=') {
                Some(i) => (&s[..i], &s[i + 1..]),
                None => (s, &b""[..]),
            };
            (
                String::from_utf8_lossy(&percent_decode(n)).into_owned(),
                String::from_utf8_lossy(&percent_decode(v)).into_owned(),
            )
        })
        .collect()
}

/// `+` → space, `%XX` → byte; a `%` not followed by two hex digits stays as is.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (s.get(i + 1).copied().and_then(hex), s.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// One form-urlencoded part of Basic credentials: strict UTF-8.
fn form_decode_strict(s: &[u8]) -> Option<String> {
    String::from_utf8(percent_decode(s)).ok()
}

/// RFC 7617 / RFC 9110 §11.4 with RFC 6749 §2.3.1: `Basic` (any case) 1*SP token68, OWS
/// (SP / HTAB) tolerated around the token68.
fn model_basic(v: &[u8]) -> Result<(String, String), &'static str> {
    let Some(sp) = v.iter().position(|b| *b == b' ') else {
        // No space at all: not a `Basic <token68>` (another scheme, or a bare `Basic`).
        return if std::str::from_utf8(v).is_ok() {
            Err("not_basic")
        } else {
            Err("malformed")
        };
    };
    if std::str::from_utf8(v).is_err() {
        return Err("malformed");
    }
    if !v[..sp].eq_ignore_ascii_case(b"basic") {
        return Err("not_basic");
    }
    let mut t = &v[sp + 1..];
    while let [b' ' | b'\t', rest @ ..] = t {
        t = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = t {
        t = rest;
    }
    let decoded = STANDARD.decode(t).map_err(|_| "malformed")?;
    let colon = decoded.iter().position(|b| *b == b':').ok_or("malformed")?;
    // The decoded credentials must be UTF-8 as a whole (RFC 7617 charset="UTF-8").
    std::str::from_utf8(&decoded).map_err(|_| "malformed")?;
    let id = form_decode_strict(&decoded[..colon]).ok_or("malformed")?;
    let secret = form_decode_strict(&decoded[colon + 1..]).ok_or("malformed")?;
    if id.is_empty() {
        return Err("malformed");
    }
    Ok((id, secret))
}

/// What the endpoint must make of the request's credentials before checking any secret.
#[allow(clippy::type_complexity)]
fn model_credentials(
    auth: &[&[u8]],
    body: &[u8],
) -> Result<(String, Option<String>, &'static str), &'static str> {
    let pairs = form_pairs(body);
    for (i, (k, _)) in pairs.iter().enumerate() {
        if k != "resource" && pairs[..i].iter().any(|(p, _)| p == k) {
            return Err("invalid_request");
        }
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if auth.len() > 1 {
        return Err("invalid_request");
    }
    let basic = match auth.first() {
        None => None,
        Some(v) => match model_basic(v) {
            Ok(c) => Some(c),
            Err("not_basic") => return Err("invalid_client"),
            Err(_) => return Err("invalid_request"),
        },
    };
    let (id, secret) = (get("client_id"), get("client_secret"));
    match (basic, secret) {
        (Some(_), Some(_)) => Err("invalid_request"),
        (Some((bid, bsecret)), None) => {
            if id.is_some_and(|i| i != bid) {
                return Err("invalid_request");
            }
            Ok((bid, Some(bsecret), "basic"))
        }
        (None, Some(s)) => match id {
            Some(i) => Ok((i, Some(s), "post")),
            None => Err("invalid_request"),
        },
        (None, None) => match id {
            Some(i) => Ok((i, None, "id_only")),
            None => Err("invalid_client"),
        },
    }
}

/// RFC 6749 §2.3.1: the client form-urlencodes id and secret, then Basic-encodes them.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn direct(sel: u8, rest: &[u8]) {
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &b""[..]),
    };
    let auth: Vec<&[u8]> = if head.is_empty() {
        Vec::new()
    } else {
        head.split(|b| *b == b'\n').take(4).collect()
    };
    for v in &auth {
        let got = issuer_basic(v);
        assert_eq!(got, model_basic(v), "Basic decoding of {:?}", String::from_utf8_lossy(v));
    }
    if auth.iter().all(|v| http::HeaderValue::from_bytes(v).is_ok()) {
        let got = issuer_credentials(&auth, body);
        let want = model_credentials(&auth, body);
        match (&got, &want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "credentials"),
            (Err((code, desc)), Err(w)) => {
                assert_eq!(code, w, "error code ({desc})");
                check_description(desc);
            }
            _ => panic!("credentials: endpoint {got:?}, model {want:?}"),
        }
    }
    if sel & 0x40 != 0 {
        // Round trip: any id and secret, encoded as a client must, decode back exactly.
        let text = String::from_utf8_lossy(body);
        let mut lines = text.splitn(2, '\n');
        let (id, secret) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        let header = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", form_encode(id), form_encode(secret)))
        );
        let got = issuer_basic(header.as_bytes());
        if id.is_empty() {
            assert_eq!(got, Err("malformed"));
        } else {
            assert_eq!(got, Ok((id.to_owned(), secret.to_owned())), "round trip");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Router mode.

async fn server() -> axum::Router {
    use GrantType::{AuthorizationCode, ClientCredentials, Password, RefreshToken};
    let svc = RegisteredClient::new(BASIC_CLIENT.0, AuthMethod::ClientSecretBasic)
        .with_secret_hash(hash(HASH_BASIC))
        .with_grant_types([ClientCredentials, Password, RefreshToken, AuthorizationCode])
        .with_redirect_uris([REDIRECT_URI])
        .with_scopes(["orders.read", "orders.write"])
        .with_audiences(["orders"]);
    let poster = RegisteredClient::new(POST_CLIENT.0, AuthMethod::ClientSecretPost)
        .with_secret_hash(hash(HASH_POST))
        .with_grant_types([ClientCredentials, Password, RefreshToken])
        .with_scopes(["reports"]);
    let public = RegisteredClient::new(PUBLIC_CLIENT, AuthMethod::None)
        .with_grant_types([Password, RefreshToken, AuthorizationCode])
        .with_redirect_uris([REDIRECT_URI])
        .with_scopes(["profile"]);
    let users = MemoryUserStore::from_users([User::new("1001", USER.0)
        .with_password_hash(hash(HASH_USER))
        .with_roles(["admin"])])
    .expect("users");
    let server = AuthorizationServer::builder(ISSUER)
        .clock(Arc::new(ManualClock::new(NOW)))
        .signing_key(SigningKey::generate(Algorithm::EdDSA).expect("ed25519 key"))
        .client(svc)
        .client(poster)
        .client(public)
        .hasher(PasswordHasher::new(1).with_dummy_like(&hash(HASH_BASIC)))
        .password_grant(true)
        .with_user_store(Arc::new(users))
        .with_grant_store(Arc::new(MemoryGrantStore::new()))
        .refresh_token_lifetimes(Duration::from_secs(3600), Duration::from_secs(86_400))
        .max_body_len(4096)
        .build()
        .await
        .expect("server");
    for (code, client) in CODES {
        let rec = CodeRecord::new(client, "1001", REDIRECT_URI)
            .with_scopes(["profile"])
            .with_pkce(CHALLENGE, "S256")
            .with_auth_time(NOW);
        server
            .grant_store()
            .put_code(&hash_secret(code), rec, Duration::from_secs(60), NOW)
            .await
            .expect("code");
    }
    server.router()
}

fn replace(hay: &[u8], pat: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(pat) {
            out.extend_from_slice(with);
            i += pat.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

struct Parsed {
    req: http::Request<axum::body::Body>,
    token_path: bool,
    post: bool,
    auth: Vec<Vec<u8>>,
    body: Vec<u8>,
}

fn parse_request(raw: &[u8], address: bool) -> Option<Parsed> {
    let (head, body) = match raw.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&raw[..i], &raw[i + 2..]),
        None => (raw, &b""[..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let first = lines.next()?;
    let (method, path) = match first.iter().position(|b| *b == b' ') {
        Some(i) => (&first[..i], &first[i + 1..]),
        None => (&b"POST"[..], first),
    };
    let method = http::Method::from_bytes(method).ok()?;
    let uri: http::Uri = std::str::from_utf8(path).ok()?.parse().ok()?;
    uri.path().starts_with('/').then_some(())?;
    let mut b = http::Request::builder().method(method.clone()).uri(uri.clone());
    let mut auth = Vec::new();
    for line in lines {
        let Some(i) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let mut value = &line[i + 1..];
        while let [b' ', rest @ ..] = value {
            value = rest;
        }
        let name = http::HeaderName::from_bytes(&line[..i]).ok()?;
        let v = http::HeaderValue::from_bytes(value).ok()?;
        if name == http::header::AUTHORIZATION {
            auth.push(value.to_vec());
        }
        b = b.header(name, v);
    }
    let mut req = b.body(axum::body::Body::from(body.to_vec())).ok()?;
    if address {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    }
    Some(Parsed {
        req,
        token_path: uri.path() == TOKEN_PATH,
        post: method == http::Method::POST,
        auth,
        body: body.to_vec(),
    })
}

const ERRORS: [&str; 9] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "server_error",
    "temporarily_unavailable",
];

/// `TOKEN_ENDPOINT_TRACE=1`: print each token-endpoint answer (to check what seeds reach).
fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("TOKEN_ENDPOINT_TRACE").is_some())
}

/// RFC 6749 §5.2: `%x20-21 / %x23-5B / %x5D-7E`, and short.
fn check_description(d: &str) {
    assert!(
        d.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
        "error_description outside RFC 6749 §5.2: {d:?}"
    );
    assert!(d.len() <= 300, "error_description of {} bytes", d.len());
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWS access token");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("JSON claims")
}

#[derive(Default)]
struct Run {
    refresh: Option<String>,
    first_refresh: Option<String>,
    access: Option<String>,
    used_refresh: HashSet<String>,
    used_codes: HashSet<String>,
}

async fn router_mode(sel: u8, rest: &[u8]) {
    let app = server().await;
    let mut run = Run::default();
    for raw in rest.split(|b| *b == 0).take(4) {
        let raw = replace(raw, b"@RT@", run.refresh.as_deref().unwrap_or("").as_bytes());
        let raw = replace(&raw, b"@RT1@", run.first_refresh.as_deref().unwrap_or("").as_bytes());
        let raw = replace(&raw, b"@AT@", run.access.as_deref().unwrap_or("").as_bytes());
        let Some(p) = parse_request(&raw, sel & 1 != 0) else {
            continue;
        };
        let res = app.clone().oneshot(p.req).await.expect("infallible");
        let status = res.status();
        assert!(!status.is_server_error(), "{status} for {:?}", String::from_utf8_lossy(&raw));
        if !p.token_path {
            continue;
        }
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["pragma"], "no-cache");
        if !p.post {
            assert_eq!(status, 405);
            assert_eq!(headers["allow"], "POST");
        }
        let json: Value = serde_json::from_slice(&body).expect("a JSON answer");
        if trace() {
            eprintln!("token_endpoint: {status} {}", json.get("error").unwrap_or(&json["token_type"]));
        }
        if status != 200 {
            let code = json["error"].as_str().expect("error");
            assert!(ERRORS.contains(&code), "unknown error code {code}");
            check_description(json["error_description"].as_str().expect("error_description"));
            match code {
                "invalid_client" => assert_eq!(status, 401),
                "temporarily_unavailable" => {
                    assert_eq!(status, 429);
                    assert!(headers.contains_key("retry-after"));
                }
                _ => assert!(status == 400 || status == 405 || status == 413, "{status} {code}"),
            }
            if status == 401 {
                assert!(headers.contains_key("www-authenticate") || !p.auth.is_empty() || {
                    // client_secret_post failures carry no Basic challenge.
                    form_pairs(&p.body).iter().any(|(k, v)| k == "client_secret" && !v.is_empty())
                });
            }
        } else {
            // Issued: the model must find a registered client's own credentials.
            let auth: Vec<&[u8]> = p.auth.iter().map(Vec::as_slice).collect();
            let creds = model_credentials(&auth, &p.body)
                .unwrap_or_else(|e| panic!("200 where the model says {e}"));
            let client = match (creds.0.as_str(), creds.1.as_deref(), creds.2) {
                (id, Some(s), "basic") if (id, s) == BASIC_CLIENT => BASIC_CLIENT.0,
                (id, Some(s), "post") if (id, s) == POST_CLIENT => POST_CLIENT.0,
                (PUBLIC_CLIENT, None, "id_only") => PUBLIC_CLIENT,
                _ => panic!("a token for unauthenticated credentials {:?}", (creds.0, creds.2)),
            };
            assert_eq!(json["token_type"], "Bearer");
            assert!(json["expires_in"].as_u64().is_some_and(|e| e > 0));
            let access = json["access_token"].as_str().expect("access_token");
            let claims = jwt_claims(access);
            assert_eq!(claims["iss"], ISSUER);
            assert_eq!(claims["client_id"], client);
            let form = form_pairs(&p.body);
            let param = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            if param("grant_type") == Some("refresh_token") {
                let presented = param("refresh_token").expect("refresh_token").to_owned();
                assert!(
                    run.used_refresh.insert(presented),
                    "a refresh token was accepted twice"
                );
            }
            if param("grant_type") == Some("authorization_code") {
                let code = param("code").expect("code");
                let owner = CODES.iter().find(|(c, _)| *c == code).map(|(_, o)| *o);
                assert_eq!(owner, Some(client), "code {code:?} redeemed by {client}");
                assert_eq!(param("code_verifier"), Some(VERIFIER));
                assert!(param("redirect_uri").is_none_or(|r| r.is_empty() || r == REDIRECT_URI));
                assert!(run.used_codes.insert(code.to_owned()), "a code was redeemed twice");
            }
            if param("grant_type") == Some("password") {
                assert_eq!((param("username"), param("password")), (Some(USER.0), Some(USER.1)));
            }
            run.access = Some(access.to_owned());
            if let Some(r) = json["refresh_token"].as_str() {
                run.refresh = Some(r.to_owned());
                run.first_refresh.get_or_insert_with(|| r.to_owned());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel & 0x80 == 0 {
        direct(sel, rest);
        return;
    }
    // A runtime per input: the server spawns background tasks (limiter and cache upkeep) that
    // a shared current-thread runtime would keep forever, one set per input.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(router_mode(sel, rest));
});
