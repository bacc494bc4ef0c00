//! Issue 10, authorization_code + PKCE end to end on 127.0.0.1: the issuer served by axum,
//! a hand-rolled "browser" (raw HTTP with its own cookie jar) walking the authorization
//! endpoint, login and consent pages, then the token endpoint. Every error case of the
//! authorization request and the code exchange, code replay revoking what the first use issued,
//! expired codes, CSRF, lockout shared with the password grant, consent, and the Redis store.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_bearer::clock::ManualClock;
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::limiter::LimiterConfig;
use tower_bearer::issuer::store::{FamilyState, RedisGrantStore};
use tower_bearer::issuer::users::{MemoryUserStore, User};
use tower_bearer::issuer::{AuthorizationServer, AuthorizationServerBuilder};
use tower_bearer::verify::{IssuerConfig, Verifier};

use common::issuer::payload as claims;
use common::issuer::{FORM, PW, Reply, hash, serve_issuer};
use common::redis_server::RedisServer;

/// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const WEB_CB: &str = "https://app.example/cb";
const MOBILE_CB: &str = "com.example.app:/cb";

fn users() -> MemoryUserStore {
    MemoryUserStore::from_users([
        User::new("1001", "alice")
            .with_tenant("acme")
            .with_roles(["user"])
            .with_permissions(["orders.read"])
            .with_password_hash(hash()),
        User::new("1002", "bob").with_password_hash(hash()),
        User::new("1003", "carol")
            .with_enabled(false)
            .with_password_hash(hash()),
    ])
    .unwrap()
}

fn confidential(id: &str, grants: &[GrantType], redirect: &str) -> RegisteredClient {
    RegisteredClient::new(id, AuthMethod::ClientSecretBasic)
        .with_secret_hash(hash())
        .with_grant_types(grants.iter().copied())
        .with_scopes(["orders.read", "orders.write", "internal-service"])
        .with_redirect_uris([redirect])
}

fn builder(base: &str, users: &MemoryUserStore) -> AuthorizationServerBuilder {
    let code = [GrantType::AuthorizationCode, GrantType::RefreshToken];
    AuthorizationServer::builder(base)
        .audience(["eon-internal"])
        .password_grant(true)
        .with_user_store(Arc::new(users.clone()))
        .client(confidential("web", &code, WEB_CB))
        .client(confidential("other", &code, "https://other.example/cb"))
        .client(
            confidential(
                "consent",
                &[GrantType::AuthorizationCode],
                "https://consent.example/cb",
            )
            .with_require_consent(true),
        )
        .client(
            confidential(
                "legacy",
                &[GrantType::AuthorizationCode],
                "https://legacy.example/cb",
            )
            .with_require_pkce(false),
        )
        .client(confidential(
            "nocode",
            &[GrantType::ClientCredentials],
            "https://nocode.example/cb",
        ))
        .client(confidential(
            "pw",
            &[GrantType::Password],
            "https://pw.example/cb",
        ))
        .client(
            confidential(
                "rs",
                &[GrantType::ClientCredentials],
                "https://rs.example/cb",
            )
            .with_introspection(true),
        )
        .client(
            RegisteredClient::new("mobile", AuthMethod::None)
                .with_grant_types(code)
                .with_scopes(["orders.read"])
                .with_redirect_uris([MOBILE_CB, "http://127.0.0.1:1/cb"]),
        )
}

async fn serve(
    configure: impl FnOnce(AuthorizationServerBuilder) -> AuthorizationServerBuilder,
) -> (AuthorizationServer, String) {
    serve_issuer(|base| configure(builder(base, &users()))).await
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Location: {self:?}"))
    }

    /// The query of the redirect, for a Location starting with `prefix`.
    fn redirect_params(&self, prefix: &str) -> HashMap<String, String> {
        assert_eq!(self.status, 303, "{self:?}");
        let loc = self.location();
        let rest = loc
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{loc} is not at {prefix}"));
        let q = rest.strip_prefix('?').unwrap_or_else(|| panic!("{loc}"));
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    /// The value of a hidden input.
    fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let i = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + needle.len();
        let j = self.body[i..].find('"').unwrap() + i;
        self.body[i..j].to_owned()
    }
}

/// A minimal user agent: one cookie jar, raw HTTP.
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    async fn send(&mut self, req: http::request::Builder, body: String) -> Reply {
        let mut req = req;
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", c.join("; "));
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let res = client.request(req).await.unwrap();
        for sc in res.headers().get_all("set-cookie") {
            let pair = sc.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
        Reply::read(res).await
    }

    async fn get(&mut self, url: &str) -> Reply {
        self.send(http::Request::get(url), String::new()).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(http::Request::post(url).header("content-type", FORM), body)
            .await
    }

    /// Signs in on a login page.
    async fn sign_in(&mut self, base: &str, page: &Reply, user: &str, pw: &str) -> Reply {
        assert_eq!(page.status, 200, "{page:?}");
        let (csrf, rid) = (page.hidden("csrf"), page.hidden("rid"));
        self.post(
            &format!("{base}/oauth2/authorize/login"),
            &[
                ("csrf", &csrf),
                ("rid", &rid),
                ("username", user),
                ("password", pw),
            ],
        )
        .await
    }
}

fn q(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn authorize_url(base: &str, pairs: &[(&str, &str)]) -> String {
    format!("{base}/oauth2/authorize?{}", q(pairs))
}

fn web_request(state: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", "web".into()),
        ("redirect_uri", WEB_CB.into()),
        ("scope", "orders.read".into()),
        ("state", state.into()),
        ("code_challenge", CHALLENGE.into()),
        ("code_challenge_method", "S256".into()),
    ]
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The whole front channel for `web` as alice: the code.
async fn web_code(base: &str, b: &mut Browser) -> String {
    let req = web_request("s1");
    let page = b.get(&authorize_url(base, &pairs(&req))).await;
    // Logged in already: the code at once.
    let r = if page.status == 303 {
        page
    } else {
        b.sign_in(base, &page, "alice", PW).await
    };
    let p = r.redirect_params(WEB_CB);
    assert_eq!(p["state"], "s1");
    p["code"].clone()
}

async fn token(base: &str, basic_id: Option<&str>, form: &[(&str, &str)]) -> Reply {
    common::issuer::token(base, basic_id.unwrap_or(""), &q(form)).await
}

async fn exchange_web(base: &str, code: &str) -> Reply {
    token(
        base,
        Some("web"),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEB_CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

fn assert_invalid_grant(r: &Reply) {
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json["error"], "invalid_grant", "{r:?}");
    assert_eq!(r.headers["cache-control"], "no-store");
}

fn assert_page_headers(r: &Reply) {
    let h = &r.headers;
    assert_eq!(h["cache-control"], "no-store", "{r:?}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script allowed: {csp}");
    assert!(!r.body.contains("<script"), "no JavaScript");
}

#[tokio::test]
async fn public_client_code_flow_with_pkce_issues_tokens_our_verifier_accepts() {
    let (server, base) = serve(|b| b).await;
    let meta = server.metadata();
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{base}/oauth2/authorize")
    );
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&"authorization_code".into())
    );

    let mut b = Browser::default();
    let url = authorize_url(
        &base,
        &[
            ("response_type", "code"),
            ("client_id", "mobile"),
            ("redirect_uri", MOBILE_CB),
            ("state", "af0ifjsldkj"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    );
    let page = b.get(&url).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_page_headers(&page);
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("tb-as-session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "loopback http issuer: {cookie}");
    assert!(cookie.contains("Max-Age=600"), "{cookie}");
    let before = b.cookies.clone();

    let r = b.sign_in(&base, &page, "alice", PW).await;
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_ne!(b.cookies, before, "a new session id after login (fixation)");
    let p = r.redirect_params(MOBILE_CB);
    assert_eq!(p["state"], "af0ifjsldkj");
    assert_eq!(p["iss"], base);
    let code = &p["code"];
    assert!(code.len() >= 43, "≥ 256 bits: {code}");

    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "mobile"),
        ("code", code.as_str()),
        ("redirect_uri", MOBILE_CB),
        ("code_verifier", VERIFIER),
    ];
    let t = token(&base, None, &form).await;
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(t.headers["cache-control"], "no-store");
    assert_eq!(t.json["scope"], "orders.read");
    let at = t.json["access_token"].as_str().unwrap();
    let rt = t.json["refresh_token"].as_str().unwrap();
    let c = claims(at);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["uid"], "1001");
    assert_eq!(c["client_id"], "mobile");
    assert_eq!(c["amr"], serde_json::json!(["pwd"]));
    assert_eq!(c["sid"].as_str().unwrap(), rt.split('.').next().unwrap());
    let auth_time = c["auth_time"].as_u64().unwrap();
    assert!(auth_time > 1_700_000_000 && auth_time <= c["iat"].as_u64().unwrap());
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::discovery(base.clone()))
        .audience("eon-internal")
        .typ("at+jwt")
        .build()
        .unwrap();
    let user = verifier.verify(at).await.unwrap();
    assert_eq!(user.user_id(), Some("1001"));

    // The public client refreshes with its client_id only; the token rotates.
    let r = token(
        &base,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "mobile"),
            ("refresh_token", rt),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(r.json["refresh_token"].as_str().unwrap(), rt);
    assert_eq!(
        claims(r.json["access_token"].as_str().unwrap())["auth_time"],
        auth_time
    );

    // Same browser, logged in: the next request gets a code at once, no login page.
    let again = b.get(&url).await;
    let p = again.redirect_params(MOBILE_CB);
    assert!(p.contains_key("code"));
    // prompt=login shows the login page again.
    let forced = b.get(&format!("{url}&prompt=login")).await;
    assert_eq!(forced.status, 200);
    assert!(forced.body.contains("name=\"password\""));
}

#[tokio::test]
async fn bad_client_or_redirect_uri_gets_a_page_never_a_redirect() {
    let (_s, base) = serve(|b| b).await;
    let mut b = Browser::default();
    let good = |client: &'static str, redirect: &'static str| {
        vec![
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", redirect),
            ("state", "s"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
    };
    let cases: Vec<(String, &str)> = vec![
        (
            authorize_url(&base, &good("nobody", WEB_CB)),
            "not registered",
        ),
        (
            authorize_url(&base, &good("web", "https://evil.example/cb")),
            "redirect URI",
        ),
        (
            authorize_url(&base, &good("web", "https://app.example/cb/x")),
            "redirect URI",
        ),
        (
            authorize_url(&base, &good("web", "https://app.example/cb?x=1")),
            "redirect URI",
        ),
        (
            authorize_url(&base, &good("web", "https://APP.example/cb")),
            "redirect URI",
        ),
        (
            authorize_url(&base, &good("web", "https://app.example/cb/")),
            "redirect URI",
        ),
        (
            authorize_url(&base, &good("mobile", "http://127.0.0.1:2/cb")),
            "redirect URI",
        ),
        (
            format!(
                "{}&redirect_uri=https://evil.example/",
                authorize_url(&base, &good("web", WEB_CB))
            ),
            "repeated",
        ),
        (
            format!("{base}/oauth2/authorize?response_type=code&redirect_uri={WEB_CB}"),
            "client_id",
        ),
        (
            // Two redirect URIs registered: it cannot be left out.
            format!(
                "{base}/oauth2/authorize?response_type=code&client_id=mobile&code_challenge={CHALLENGE}&code_challenge_method=S256"
            ),
            "redirect_uri",
        ),
    ];
    for (url, why) in cases {
        let r = b.get(&url).await;
        assert_eq!(r.status, 400, "{url}: {r:?}");
        assert!(r.headers.get("location").is_none(), "{url}");
        assert_page_headers(&r);
        assert!(r.body.contains(why), "{url}: {}", r.body);
        assert!(
            !r.body.contains("evil.example"),
            "nothing echoed unescaped or at all"
        );
    }
}

#[tokio::test]
async fn other_errors_go_to_the_redirect_uri_with_state_and_iss() {
    let (_s, base) = serve(|b| b).await;
    let mut b = Browser::default();
    let base_req = web_request("st-1");
    let with = |k: &'static str, v: Option<&'static str>| {
        let mut r: Vec<(&'static str, String)> =
            base_req.iter().filter(|(n, _)| *n != k).cloned().collect();
        if let Some(v) = v {
            r.push((k, v.to_owned()));
        }
        r
    };
    let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
        (
            with("response_type", Some("token")),
            "unsupported_response_type",
        ),
        (with("response_type", None), "invalid_request"),
        (with("code_challenge", None), "invalid_request"),
        (
            with("code_challenge_method", Some("plain")),
            "invalid_request",
        ),
        (with("code_challenge_method", None), "invalid_request"),
        (with("code_challenge", Some("short")), "invalid_request"),
        (with("scope", Some("orders.read admin")), "invalid_scope"),
        (with("scope", Some("internal-service")), "invalid_scope"),
        (with("scope", Some("orders\"read")), "invalid_scope"),
        (with("prompt", Some("none")), "login_required"),
        (
            with("request", Some("eyJhbGciOiJub25lIn0.e30.")),
            "request_not_supported",
        ),
    ];
    for (req, error) in cases {
        let r = b.get(&authorize_url(&base, &pairs(&req))).await;
        let p = r.redirect_params(WEB_CB);
        assert_eq!(p["error"], error, "{req:?}: {p:?}");
        assert_eq!(p["state"], "st-1");
        assert_eq!(p["iss"], base);
        assert!(!p.contains_key("code"));
        assert_eq!(r.headers["cache-control"], "no-store");
    }
    // A repeated parameter.
    let url = format!(
        "{}&scope=orders.write",
        authorize_url(&base, &pairs(&base_req))
    );
    let p = b.get(&url).await.redirect_params(WEB_CB);
    assert_eq!(p["error"], "invalid_request");
    // A client that may not use the code flow.
    let url = authorize_url(
        &base,
        &[
            ("response_type", "code"),
            ("client_id", "nocode"),
            ("state", "x"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    );
    let p = b
        .get(&url)
        .await
        .redirect_params("https://nocode.example/cb");
    assert_eq!(p["error"], "unauthorized_client");
    // A public client can never skip PKCE.
    let url = authorize_url(
        &base,
        &[
            ("response_type", "code"),
            ("client_id", "mobile"),
            ("redirect_uri", MOBILE_CB),
        ],
    );
    let p = b.get(&url).await.redirect_params(MOBILE_CB);
    assert_eq!(p["error"], "invalid_request");
    assert!(!p.contains_key("state"));
}

#[tokio::test]
async fn code_exchange_refusals() {
    let (_s, base) = serve(|b| b).await;
    let mut b = Browser::default();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "wrong verifier",
            vec![(
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            )],
        ),
        ("no verifier", vec![]),
        ("malformed verifier", vec![("code_verifier", "too-short")]),
        (
            "other redirect",
            vec![
                ("code_verifier", VERIFIER),
                ("redirect_uri", "https://app.example/cb2"),
            ],
        ),
    ];
    for (why, extra) in cases {
        let code = web_code(&base, &mut b).await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ];
        if !extra.iter().any(|(k, _)| *k == "redirect_uri") {
            form.push(("redirect_uri", WEB_CB));
        }
        form.extend(extra);
        let r = token(&base, Some("web"), &form).await;
        assert_invalid_grant(&r);
        // The code is used up by the failed attempt.
        assert_invalid_grant(&exchange_web(&base, &code).await);
        let _ = why;
    }
    // A code issued to `web` presented by another (authenticated) client.
    let code = web_code(&base, &mut b).await;
    let r = token(
        &base,
        Some("other"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", WEB_CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_invalid_grant(&r);
    assert_invalid_grant(&exchange_web(&base, &code).await);
    // Garbage, and a missing code.
    assert_invalid_grant(&exchange_web(&base, "not-a-code").await);
    let r = token(
        &base,
        Some("web"),
        &[
            ("grant_type", "authorization_code"),
            ("redirect_uri", WEB_CB),
        ],
    )
    .await;
    assert_eq!(r.json["error"], "invalid_request", "{r:?}");
    // A public client cannot present a confidential client's code without its secret.
    let code = web_code(&base, &mut b).await;
    let r = token(
        &base,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "web"),
            ("code", &code),
            ("redirect_uri", WEB_CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
    // The right exchange still works for a fresh code; redirect_uri may be left out (one registered).
    let code = web_code(&base, &mut b).await;
    let r = token(
        &base,
        Some("web"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn pkce_can_be_loosened_for_a_confidential_client_but_never_downgraded() {
    let (_s, base) = serve(|b| b).await;
    let mut b = Browser::default();
    let cb = "https://legacy.example/cb";
    let url = authorize_url(
        &base,
        &[
            ("response_type", "code"),
            ("client_id", "legacy"),
            ("state", "l"),
        ],
    );
    let page = b.get(&url).await;
    let code = b
        .sign_in(&base, &page, "alice", PW)
        .await
        .redirect_params(cb)["code"]
        .clone();
    // A verifier for a code issued without a challenge: PKCE downgrade, refused.
    let r = token(
        &base,
        Some("legacy"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", cb),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_invalid_grant(&r);
    let code = b.get(&url).await.redirect_params(cb)["code"].clone();
    let r = token(
        &base,
        Some("legacy"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", cb),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.json.get("refresh_token").is_none(),
        "legacy does not list refresh_token"
    );
}

#[tokio::test]
async fn a_replayed_code_revokes_the_tokens_of_its_first_use() {
    let (server, base) = serve(|b| b).await;
    let mut b = Browser::default();
    let code = web_code(&base, &mut b).await;
    let first = exchange_web(&base, &code).await;
    assert_eq!(first.status, 200, "{first:?}");
    let at = first.json["access_token"].as_str().unwrap();
    let rt = first.json["refresh_token"].as_str().unwrap();
    let c = claims(at);
    let (jti, sid) = (c["jti"].as_str().unwrap(), c["sid"].as_str().unwrap());

    assert_invalid_grant(&exchange_web(&base, &code).await);

    let store = server.grant_store();
    let now = c["iat"].as_u64().unwrap();
    assert!(
        store.is_jti_revoked(jti, now).await.unwrap(),
        "access token's jti revoked"
    );
    let fam = store.get_family(sid, now).await.unwrap().unwrap();
    assert_eq!(fam.state, FamilyState::Revoked);
    assert_eq!(store.stats(now).await.unwrap().code_replays, 1);
    let r = token(
        &base,
        Some("web"),
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_invalid_grant(&r);
    let intro = Browser::default()
        .send(
            http::Request::post(format!("{base}/oauth2/introspect"))
                .header("content-type", FORM)
                .header(
                    "authorization",
                    format!("Basic {}", STANDARD.encode("rs:correct+horse")),
                ),
            q(&[("token", at)]),
        )
        .await;
    assert_eq!(
        intro.json,
        serde_json::json!({"active": false}),
        "{intro:?}"
    );
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let clock = ManualClock::new(1_900_000_000);
    let c2 = clock.clone();
    let (_s, base) = serve(move |b| b.clock(Arc::new(c2))).await;
    let mut b = Browser::default();
    let code = web_code(&base, &mut b).await;
    clock.advance(Duration::from_secs(61));
    assert_invalid_grant(&exchange_web(&base, &code).await);
    let code = web_code(&base, &mut b).await;
    clock.advance(Duration::from_secs(59));
    assert_eq!(exchange_web(&base, &code).await.status, 200);
}

#[tokio::test]
async fn login_form_needs_its_session_and_csrf_token() {
    let (_s, base) = serve(|b| b).await;
    let mut b = Browser::default();
    let page = b
        .get(&authorize_url(&base, &pairs(&web_request("c"))))
        .await;
    let (csrf, rid) = (page.hidden("csrf"), page.hidden("rid"));
    let login = format!("{base}/oauth2/authorize/login");
    // Missing and wrong CSRF tokens.
    let wrong = "A".repeat(43);
    for bad in [None, Some(wrong.as_str())] {
        let mut f = vec![
            ("rid", rid.as_str()),
            ("username", "alice"),
            ("password", PW),
        ];
        if let Some(t) = bad {
            f.push(("csrf", t));
        }
        let r = b.post(&login, &f).await;
        assert_eq!(r.status, 403, "{r:?}");
        assert_page_headers(&r);
        assert!(r.headers.get("location").is_none());
    }
    // The CSRF token of another session.
    let mut other = Browser::default();
    let other_page = other
        .get(&authorize_url(&base, &pairs(&web_request("o"))))
        .await;
    let r = b
        .post(
            &login,
            &[
                ("csrf", &other_page.hidden("csrf")),
                ("rid", &rid),
                ("username", "alice"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    // No session cookie at all.
    let r = Browser::default()
        .post(
            &login,
            &[
                ("csrf", &csrf),
                ("rid", &rid),
                ("username", "alice"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    // A wrong password: the same page again, the name escaped, a generic message.
    let r = b
        .post(
            &login,
            &[
                ("csrf", &csrf),
                ("rid", &rid),
                ("username", "<b>alice\"</b>"),
                ("password", "nope"),
            ],
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.body.contains("&lt;b&gt;alice&quot;&lt;/b&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<b>alice"));
    assert!(r.body.contains("The username or password is not valid."));
    // The right one, with the right token, still works.
    let r = b.sign_in(&base, &page, "alice", PW).await;
    assert!(r.redirect_params(WEB_CB).contains_key("code"));
    // Disabled users cannot log in.
    let mut c = Browser::default();
    let page = c
        .get(&authorize_url(&base, &pairs(&web_request("d"))))
        .await;
    let r = c.sign_in(&base, &page, "carol", PW).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("The username or password is not valid."));
}

#[tokio::test]
async fn lockout_is_shared_with_the_password_grant() {
    // The first failure locks (900 s): a backoff of whole seconds could end between two
    // requests of this test and let the right password through.
    let limits = LimiterConfig::default()
        .with_free_failures(0)
        .with_lock_after(1);
    let (_s, base) = serve(move |b| b.user_limits(limits)).await;
    let mut b = Browser::default();
    let page = b
        .get(&authorize_url(&base, &pairs(&web_request("l"))))
        .await;
    for _ in 0..3 {
        let r = b.sign_in(&base, &page, "bob", "wrong").await;
        assert_eq!(r.status, 401, "{r:?}");
    }
    // Locked: the right password gets the same answer, on the page and at the password grant.
    let r = b.sign_in(&base, &page, "bob", PW).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("The username or password is not valid."));
    let r = token(
        &base,
        Some("pw"),
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", PW),
        ],
    )
    .await;
    assert_invalid_grant(&r);
    // And the other way round: password-grant failures lock the login page.
    for _ in 0..3 {
        let r = token(
            &base,
            Some("pw"),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "x"),
            ],
        )
        .await;
        assert_invalid_grant(&r);
    }
    let r = b.sign_in(&base, &page, "alice", PW).await;
    assert_eq!(r.status, 401, "{r:?}");
}

#[tokio::test]
async fn consent_page_deny_approve_and_remembered() {
    let (_s, base) = serve(|b| b).await;
    let cb = "https://consent.example/cb";
    let req = |scope: &'static str, state: &'static str| {
        authorize_url(
            &base,
            &[
                ("response_type", "code"),
                ("client_id", "consent"),
                ("scope", scope),
                ("state", state),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
        )
    };
    let mut b = Browser::default();
    let page = b.get(&req("orders.read", "deny-me")).await;
    let consent = b.sign_in(&base, &page, "alice", PW).await;
    assert_eq!(consent.status, 200, "{consent:?}");
    assert_page_headers(&consent);
    assert!(consent.body.contains("orders.read"));
    let csp = consent.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' https://consent.example"),
        "{csp}"
    );
    let url = format!("{base}/oauth2/authorize/consent");
    let deny = b
        .post(
            &url,
            &[
                ("csrf", &consent.hidden("csrf")),
                ("rid", &consent.hidden("rid")),
                ("decision", "deny"),
            ],
        )
        .await;
    let p = deny.redirect_params(cb);
    assert_eq!(p["error"], "access_denied");
    assert_eq!(p["state"], "deny-me");
    assert!(!p.contains_key("code"));

    // Logged in already: the consent page straight away; a missing CSRF token is refused.
    let consent = b.get(&req("orders.read", "ok")).await;
    assert_eq!(consent.status, 200);
    let r = b
        .post(
            &url,
            &[("rid", &consent.hidden("rid")), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, 403);
    let ok = b
        .post(
            &url,
            &[
                ("csrf", &consent.hidden("csrf")),
                ("rid", &consent.hidden("rid")),
                ("decision", "approve"),
            ],
        )
        .await;
    let p = ok.redirect_params(cb);
    assert_eq!(p["state"], "ok");
    let code = p["code"].clone();
    let r = token(
        &base,
        Some("consent"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", cb),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // The same request again: remembered, no page. A wider scope asks again.
    let again = b.get(&req("orders.read", "again")).await;
    assert!(again.redirect_params(cb).contains_key("code"));
    let wider = b.get(&req("orders.read orders.write", "wider")).await;
    assert_eq!(wider.status, 200);
    assert!(wider.body.contains("orders.write"));
    // prompt=none with consent missing.
    let none = b
        .get(&format!("{}&prompt=none", req("orders.write", "pn")))
        .await;
    assert_eq!(none.redirect_params(cb)["error"], "consent_required");
}

#[tokio::test]
async fn redis_store_codes_single_use_and_replay_revocation() {
    let redis = RedisServer::start();
    let store = Arc::new(
        RedisGrantStore::connect(&redis.url(), "authcode-test")
            .await
            .unwrap(),
    );
    let s2 = store.clone();
    let (server, base) = serve(move |b| b.with_grant_store(s2)).await;
    // A second issuer on the same Redis: a code from one is exchanged at the other.
    let (_other, base2) = serve(move |b| b.with_grant_store(store)).await;
    let mut b = Browser::default();
    let code = web_code(&base, &mut b).await;
    let first = exchange_web(&base2, &code).await;
    assert_eq!(first.status, 200, "{first:?}");
    let c = claims(first.json["access_token"].as_str().unwrap());
    assert_invalid_grant(&exchange_web(&base, &code).await);
    let now = c["iat"].as_u64().unwrap();
    let st = server.grant_store();
    assert!(
        st.is_jti_revoked(c["jti"].as_str().unwrap(), now)
            .await
            .unwrap()
    );
    assert_eq!(
        st.get_family(c["sid"].as_str().unwrap(), now)
            .await
            .unwrap()
            .unwrap()
            .state,
        FamilyState::Revoked
    );
    // 20 concurrent exchanges of one fresh code: exactly one succeeds.
    let code = web_code(&base, &mut b).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (code, base) = (
            code.clone(),
            if i % 2 == 0 {
                base.clone()
            } else {
                base2.clone()
            },
        );
        tasks.push(tokio::spawn(async move {
            exchange_web(&base, &code).await.status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
}
