//! End-to-end: the gateway example (real hyper reverse proxy) in front of a real upstream, a real
//! JWKS server, the one layer order, path canonicalization, escalation, internal-only paths and
//! policy-version freshness — all over 127.0.0.1.

mod common;
#[path = "../examples/gateway.rs"]
#[allow(dead_code, unreachable_pub)]
mod gateway_example;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request as AxumRequest;
use axum::routing::any;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_bearer::jwks::Algorithm;
use tower_bearer::signing::SigningKey;

const AUD: &str = "eon-internal";

struct Upstream {
    url: String,
    hits: Arc<AtomicUsize>,
}

/// An upstream that answers with the path, the headers it received and the body length.
async fn upstream() -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().fallback(any(move |req: AxumRequest| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or("?"))))
                .collect();
            let path = req.uri().path().to_owned();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            axum::Json(json!({"path": path, "headers": headers, "len": body.len()}))
        }
    }));
    Upstream {
        url: serve(app).await,
        hits,
    }
}

fn yaml(idp: &Idp, upstream: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
upstream: {upstream}
security:
  resource-server:
    issuer: {iss}
    jwks-uri: {jwks}
    audience: [{AUD}]
    internal-only:
      paths: ["/internal/**"]
    rules:
      - {{ path: "/public/**", permit-all: true }}
      - {{ path: "/admin/**", methods: [POST, DELETE], any-role: [admin] }}
      - {{ path: "/reports/**", scope: reports.read }}
      - {{ path: "/api/**", authenticated: true }}
    default: deny
"#,
        iss = idp.issuer(),
        jwks = idp.jwks_url()
    )
}

struct Gateway {
    url: String,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

async fn gateway(yaml: &str) -> Gateway {
    let cfg = gateway_example::parse_config(yaml).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway_example::run(cfg, listener, async move {
        let _ = rx.await;
    }));
    Gateway {
        url: format!("http://{addr}"),
        addr,
        stop: Some(tx),
        task,
    }
}

fn user_claims(iss: &str) -> Value {
    let now = now();
    json!({"iss": iss, "aud": AUD, "sub": "alice", "uid": "u-1", "tenant": "t-1",
           "roles": ["user"], "scope": "orders.read", "client_id": "web", "exp": now + 300})
}

/// Sends raw request bytes and returns the status code (for paths a client library would fix).
async fn raw_status(addr: std::net::SocketAddr, target: &[u8], token: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(
            " HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    s.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn gateway_forwards_verified_identity_and_strips_spoofed_headers() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let up = upstream().await;
    let gw = gateway(&yaml(&idp, &up.url)).await;
    let token = key.sign(&user_claims(&idp.issuer())).unwrap();
    let bearer = format!("Bearer {token}");

    let r = http_get(
        &format!("{}/api/orders?x=1", gw.url),
        &[
            ("authorization", &bearer),
            ("x-user-id", "admin"),
            ("X_User_Id", "admin"),
            ("x-roles", "admin"),
            ("x_roles", "admin"),
            ("X-Tenant_Id", "other"),
            ("x-permissions", "all"),
            ("x-client-id", "evil"),
            ("x.user.id", "admin"),
            ("x-http-method-override", "DELETE"),
            ("x-original-url", "/admin/users"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: Value = serde_json::from_str(&r.body).unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-user-id"], "u-1");
    assert_eq!(h["x-roles"], "user");
    assert_eq!(h["x-tenant-id"], "t-1");
    assert_eq!(h["x-client-id"], "web");
    assert!(h.get("x-permissions").is_none(), "{h}");
    for k in h.as_object().unwrap().keys() {
        assert!(
            !k.contains('_') && !k.contains('.'),
            "spoofed variant reached upstream: {k}"
        );
    }
    assert!(h.get("x-http-method-override").is_none() && h.get("x-original-url").is_none());

    // Anonymous on a permit-all path: passes, and spoofed headers are still stripped.
    let r = http_get(
        &format!("{}/public/info", gw.url),
        &[("x-user-id", "admin")],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen: Value = serde_json::from_str(&r.body).unwrap();
    assert!(seen["headers"].get("x-user-id").is_none());

    // A bad token is 401 on a permit-all path too; anonymous on a protected path is 401.
    let hits = up.hits.load(Ordering::SeqCst);
    assert_eq!(
        http_get(
            &format!("{}/public/info", gw.url),
            &[("authorization", "Bearer a.b.c")]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        http_get(&format!("{}/api/orders", gw.url), &[])
            .await
            .status,
        401
    );
    // Unmatched path: default deny.
    assert_eq!(
        http_get(&format!("{}/other", gw.url), &[("authorization", &bearer)])
            .await
            .status,
        403
    );
    // Connection naming an identity header: 400.
    let r = http_get(
        &format!("{}/api/orders", gw.url),
        &[
            ("authorization", &bearer),
            ("connection", "keep-alive, X-User-Id"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        hits,
        "refused requests never reach upstream"
    );
}

#[tokio::test]
async fn rules_scopes_roles_and_internal_only_through_the_gateway() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let up = upstream().await;
    let gw = gateway(&yaml(&idp, &up.url)).await;
    let iss = idp.issuer();
    let sign = |c: Value| key.sign(&c).unwrap();

    let user = sign(user_claims(&iss));
    let r = http_get(
        &format!("{}/reports/q1", gw.url),
        &[("authorization", &format!("Bearer {user}"))],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="reports.read""#)
    );

    // Escalation: authorities/permissions holding SCOPE_/ROLE_ names grant nothing.
    let mut sneaky = user_claims(&iss);
    sneaky["authorities"] = json!(["SCOPE_reports.read", "ROLE_admin", "SCOPE_internal-service"]);
    sneaky["permissions"] = json!(["SCOPE_reports.read", "ROLE_admin", "SCOPE_internal-service"]);
    let sneaky = format!("Bearer {}", sign(sneaky));
    assert_eq!(
        http_get(
            &format!("{}/reports/q1", gw.url),
            &[("authorization", &sneaky)]
        )
        .await
        .status,
        403
    );
    assert_eq!(
        http_get(
            &format!("{}/internal/ping", gw.url),
            &[("authorization", &sneaky)]
        )
        .await
        .status,
        403
    );

    // A user token that carries the internal scope is still refused on internal-only paths.
    let mut scoped_user = user_claims(&iss);
    scoped_user["scope"] = json!("internal-service");
    let scoped_user = format!("Bearer {}", sign(scoped_user));
    assert_eq!(
        http_get(
            &format!("{}/internal/ping", gw.url),
            &[("authorization", &scoped_user)]
        )
        .await
        .status,
        403
    );

    // `sub == client_id` and no uid is no service token by default (a user may choose its `sub`).
    let posing = json!({"iss": iss, "aud": AUD, "sub": "service-order", "client_id": "service-order",
                        "scope": "internal-service", "exp": now() + 300});
    let posing = format!("Bearer {}", sign(posing));
    assert_eq!(
        http_get(
            &format!("{}/internal/ping", gw.url),
            &[("authorization", &posing)]
        )
        .await
        .status,
        403
    );

    // A service token (`gty: client-credentials`) with the scope passes.
    let service = json!({"iss": iss, "aud": AUD, "sub": "service-order", "client_id": "service-order",
                         "gty": "client-credentials", "scope": "internal-service", "exp": now() + 300});
    let service = format!("Bearer {}", sign(service));
    assert_eq!(
        http_get(
            &format!("{}/internal/ping", gw.url),
            &[("authorization", &service)]
        )
        .await
        .status,
        200
    );

    // Roles: POST /admin needs admin.
    let mut admin = user_claims(&iss);
    admin["roles"] = json!(["admin"]);
    let admin = sign(admin);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for (token, expected) in [(&user, 403), (&admin, 200)] {
        let req = http::Request::post(format!("{}/admin/users", gw.url))
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'x';
                1 << 20
            ])))
            .unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), expected);
        if expected == 200 {
            use http_body_util::BodyExt;
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let seen: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(seen["len"], 1 << 20, "1 MiB body streamed through");
        }
    }
}

#[tokio::test]
async fn non_canonical_paths_never_reach_the_upstream() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let up = upstream().await;
    let gw = gateway(&yaml(&idp, &up.url)).await;
    // A user without the admin role, and a permit-all prefix to climb out of.
    let token = key.sign(&user_claims(&idp.issuer())).unwrap();
    let refused: &[&[u8]] = &[
        b"/public/../admin/users",
        b"/public/./x",
        b"//admin/users",
        b"/public//x",
        b"/public/%2e%2e/admin/users",
        b"/public/%2E%2E/admin/users",
        b"/public/.%2e/admin/users",
        b"/public/..%2fadmin/users",
        b"/public%2f..%2fadmin/users",
        b"/public/..%5cadmin",
        b"/public/..\\admin",
        b"/%61dmin/users",
        b"/public/%2561",
        b"/admin;jsessionid=1/users",
        b"/public/x;y",
        b"/public/%00",
        b"/public/%C0%AE%C0%AE/admin",
        b"/public/%FF",
        b"/public/%zz",
        b"/public/..",
    ];
    let before = up.hits.load(Ordering::SeqCst);
    for path in refused {
        let status = raw_status(gw.addr, path, &token).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(path));
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), before);
    // Case matters: /Public is not /public (default deny applies).
    assert_eq!(raw_status(gw.addr, b"/Public/x", &token).await, 403);
    assert_eq!(raw_status(gw.addr, b"/public/ok%20name", &token).await, 200);
}

/// Sends one raw request and returns the status code.
async fn raw_method_status(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    token: &str,
) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn miscased_methods_and_encoded_reserved_characters_never_reach_the_upstream() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let up = upstream().await;
    let yaml = yaml(&idp, &up.url).replace(
        "    rules:\n",
        "    rules:\n      - { path: \"/v1/jobs:batchDelete\", methods: [POST], any-role: [admin] }\n      - { path: \"/v1/jobs/{id}:cancel\", methods: [POST], any-role: [admin] }\n      - { path: \"/v1/**\", authenticated: true }\n",
    );
    let gw = gateway(&yaml).await;
    // A user without the admin role.
    let token = key.sign(&user_claims(&idp.issuer())).unwrap();
    let before = up.hits.load(Ordering::SeqCst);
    for (method, target) in [
        ("delete", "/admin/users/1"),
        ("Delete", "/admin/users/1"),
        ("dElEtE", "/admin/users/1"),
        ("post", "/admin/users"),
        ("pAtCh", "/api/x"),
        ("get", "/public/x"),
        ("POST", "/v1/jobs%3AbatchDelete"),
        ("POST", "/v1/jobs%3abatchDelete"),
        ("POST", "/v1/jobs/7%3Acancel"),
        ("POST", "/admin%40x/users"),
    ] {
        assert_eq!(
            raw_method_status(gw.addr, method, target, &token).await,
            400,
            "{method} {target}"
        );
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), before);
    // The rules themselves: admin only, the same for the affix pattern.
    assert_eq!(
        raw_method_status(gw.addr, "DELETE", "/admin/users/1", &token).await,
        403
    );
    assert_eq!(
        raw_method_status(gw.addr, "POST", "/v1/jobs:batchDelete", &token).await,
        403
    );
    assert_eq!(
        raw_method_status(gw.addr, "POST", "/v1/jobs/7:cancel", &token).await,
        403
    );
    assert_eq!(
        raw_method_status(gw.addr, "POST", "/v1/jobs/7:pause", &token).await,
        200
    );
    // A real extension method is not a miscased standard one.
    assert_eq!(
        raw_method_status(gw.addr, "PROPFIND", "/api/x", &token).await,
        200
    );
}

#[tokio::test]
async fn http2_clients_are_forwarded_to_the_http1_upstream() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let up = upstream().await;
    let gw = gateway(&yaml(&idp, &up.url)).await;
    let token = key.sign(&user_claims(&idp.issuer())).unwrap();
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    for (method, path, auth, body, want) in [
        ("GET", "/public/x", false, "", 200),
        ("GET", "/api/orders?x=1", true, "", 200),
        ("POST", "/api/orders", true, "hello", 200),
        ("GET", "/api/orders", false, "", 401),
    ] {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", gw.url))
            .header("x-user-id", "admin")
            .header("cookie", "a=1")
            .header("cookie", "b=2");
        if auth {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(bytes::Bytes::from(body))).unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.status(), want, "{method} {path}");
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        if want == 200 {
            let seen: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(seen["len"], body.len(), "{seen}");
            assert_eq!(seen["headers"]["cookie"], "a=1; b=2", "{seen}");
            let user = if auth { json!("u-1") } else { Value::Null };
            assert_eq!(seen["headers"]["x-user-id"], user, "{seen}");
        }
    }
}

#[tokio::test]
async fn upstream_failure_is_502_and_shutdown_is_graceful() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let dead = format!("http://{}", reserve_addr());
    let mut gw = gateway(&yaml(&idp, &dead)).await;
    let r = http_get(&format!("{}/public/x", gw.url), &[]).await;
    assert_eq!(r.status, 502);
    gw.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
}

#[test]
fn the_sample_gateway_yaml_builds() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gateway.yaml"
    ))
    .unwrap();
    let cfg = gateway_example::parse_config(&text).unwrap();
    let rules = cfg.security.access_rules().unwrap();
    assert!(rules.check(&http::Method::GET, "/public/x", None).is_ok());
    assert!(
        rules
            .check(&http::Method::POST, "/v1/jobs/7:cancel", None)
            .is_err()
    );
}

#[tokio::test]
async fn config_errors_are_clear() {
    for (yaml, needle) in [
        ("upstream: http://127.0.0.1:1\nsecurity: {}\n", "listen"),
        (
            "listen: nope\nupstream: http://127.0.0.1:1\n",
            "listen: nope",
        ),
        ("listen: 127.0.0.1:0\nupstream: ftp://x\n", "upstream"),
        (
            "listen: 127.0.0.1:0\nupstream: http://127.0.0.1:1\nsecurity:\n  resource-server:\n    issuer: x\n    bogus: 1\n",
            "bogus",
        ),
    ] {
        let err = gateway_example::parse_config(yaml).unwrap_err();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // policy-version without a source: the gateway refuses to start.
    let yaml = "listen: 127.0.0.1:0\nupstream: http://127.0.0.1:1\nsecurity:\n  resource-server:\n    issuer: http://127.0.0.1:1\n    jwks-uri: http://127.0.0.1:1/jwks\n    audience: a\n    policy-version: { max-staleness-seconds: 5 }\n";
    let cfg = gateway_example::parse_config(yaml).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = gateway_example::run(cfg, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.contains("policy-version"), "{err}");
}

#[tokio::test]
async fn policy_version_bump_refuses_the_same_token() {
    use tower::{Layer, ServiceExt};
    use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
    use tower_bearer::{IssuerConfig, JwtAuthLayer, Verifier};

    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(idp.issuer(), idp.jwks_url()))
        .audience(AUD)
        .build()
        .unwrap();
    let versions = Arc::new(MemoryPolicyVersions::new());
    versions.set("u-1", 1);
    let svc = JwtAuthLayer::new(verifier)
        .with_error_description(true)
        .layer(
            PolicyVersionLayer::new(versions.clone())
                .with_max_staleness(Duration::ZERO)
                .layer(tower::service_fn(|_req: http::Request<String>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
                })),
        );
    let mut c = user_claims(&idp.issuer());
    c["pv"] = json!(1);
    let token = key.sign(&c).unwrap();
    let call = |token: String| {
        let svc = svc.clone();
        async move {
            let req = http::Request::get("/api")
                .header("authorization", format!("Bearer {token}"))
                .body(String::new())
                .unwrap();
            svc.oneshot(req).await.unwrap()
        }
    };
    assert_eq!(call(token.clone()).await.status(), 200);
    versions.bump("u-1");
    let res = call(token.clone()).await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        res.extensions().get::<tower_bearer::AuthError>(),
        Some(&tower_bearer::AuthError::InvalidToken(
            tower_bearer::error::TokenError::PolicyVersionStale
        ))
    );
    // A token without pv for a known user is refused; an unknown user is not checked.
    let mut no_pv = user_claims(&idp.issuer());
    no_pv.as_object_mut().unwrap().remove("pv");
    assert_eq!(call(key.sign(&no_pv).unwrap()).await.status(), 401);
    versions.remove("u-1");
    assert_eq!(call(key.sign(&no_pv).unwrap()).await.status(), 200);
}

#[tokio::test]
async fn partner_issuer_users_are_told_apart_and_never_mint_service_tokens() {
    let main_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let partner_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let main = Idp::start(jwks_of(&[&main_key])).await;
    let partner = Idp::start(jwks_of(&[&partner_key])).await;
    let up = upstream().await;
    let yaml = yaml(&main, &up.url).replace(
        "    internal-only:\n",
        &format!(
            "    additional-issuers:\n      - {{ issuer: \"{}\", jwks-uri: \"{}\", prefix: partner }}\n    internal-only:\n",
            partner.issuer(),
            partner.jwks_url()
        ),
    );
    let gw = gateway(&yaml).await;
    let get = |path: &str, token: String| {
        let url = format!("{}{path}", gw.url);
        async move {
            http_get(
                &url,
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("x-user-issuer", "https://spoofed.example"),
                ],
            )
            .await
        }
    };

    // The same `uid` from both issuers: two users upstream.
    let r = get(
        "/api/me",
        main_key.sign(&user_claims(&main.issuer())).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen["headers"]["x-user-id"], "u-1");
    assert_eq!(seen["headers"]["x-user-issuer"], json!(main.issuer()));
    let r = get(
        "/api/me",
        partner_key.sign(&user_claims(&partner.issuer())).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen["headers"]["x-user-id"], "partner:u-1");
    assert_eq!(seen["headers"]["x-user-issuer"], json!(partner.issuer()));

    // Service tokens: the primary issuer's pass internal-only paths, the partner's never.
    let service = |iss: String| {
        json!({"iss": iss, "aud": AUD, "sub": "service-order", "client_id": "service-order",
               "gty": "client-credentials", "scope": "internal-service", "exp": now() + 300})
    };
    let r = get(
        "/internal/ping",
        main_key.sign(&service(main.issuer())).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(
        "/internal/ping",
        partner_key.sign(&service(partner.issuer())).unwrap(),
    )
    .await;
    assert_eq!(r.status, 403);

    // An ID token of the primary issuer whose `aud` matches is no access token.
    let mut id_token = user_claims(&main.issuer());
    id_token["nonce"] = json!("n-0S6_WzA2Mj");
    let r = get("/api/me", main_key.sign(&id_token).unwrap()).await;
    assert_eq!(r.status, 401);
}
