//! The authorization server end to end on 127.0.0.1: the real router served by axum, raw HTTP
//! for every RFC 6749 §5.2 row, our own `ClientCredentials` / `TokenManager` and the `oauth2`
//! crate as clients, tokens checked by our `Verifier` (discovery) and by `jsonwebtoken`,
//! concurrency, limits, a restart on a key directory, and a key rotation under load.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_bearer::JwtAuthLayer;
use tower_bearer::claims::CurrentUser;
use tower_bearer::clock::{Clock, ManualClock, SystemClock};
use tower_bearer::config::Secret;
use tower_bearer::issuer::AuthorizationServer;
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::keys::KeyOptions;
use tower_bearer::issuer::limiter::LimiterConfig;
use tower_bearer::issuer::password::PasswordHash;
use tower_bearer::jwks::{Algorithm, RemoteOptions};
use tower_bearer::outbound::{ClientAuth, ClientCredentials, TokenClient, TokenManager};
use tower_bearer::verify::{IssuerConfig, Verifier};

use common::issuer::PW as SECRET;
use common::issuer::{FORM, HASH, Reply, basic, header_of, payload, post, send, serve_issuer};

/// A test-only secret with the characters RFC 6749 §2.3.1 encoding must survive.
const ODD_ID: &str = "odd:client+1%";
const ODD_SECRET: &str = "p:a+s%s w";

async fn odd_hash() -> PasswordHash {
    let h = tower_bearer::issuer::password::PasswordHasher::new(1)
        .hash(ODD_SECRET.as_bytes())
        .await
        .unwrap();
    PasswordHash::parse(&h).unwrap()
}

fn basic_client(id: &str, hash: PasswordHash) -> RegisteredClient {
    RegisteredClient::new(id, AuthMethod::ClientSecretBasic)
        .with_secret_hash(hash)
        .with_grant_types([GrantType::ClientCredentials])
        .with_scopes(["internal-service", "orders.read"])
        .with_audiences(["service-system", "https://api.example/orders"])
}

/// Serves the issuer (with connect info) on a reserved port; the issuer URL is that address.
async fn start_with(
    configure: impl FnOnce(
        tower_bearer::issuer::AuthorizationServerBuilder,
    ) -> tower_bearer::issuer::AuthorizationServerBuilder,
) -> (AuthorizationServer, String) {
    let odd = odd_hash().await;
    serve_issuer(|base| {
        let builder = AuthorizationServer::builder(base)
            .audience(["eon-internal"])
            .client(basic_client("orders", PasswordHash::parse(HASH).unwrap()))
            .client(
                RegisteredClient::new("poster", AuthMethod::ClientSecretPost)
                    .with_secret_hash(PasswordHash::parse(HASH).unwrap())
                    .with_grant_types([GrantType::ClientCredentials])
                    .with_scopes(["orders.read"]),
            )
            .client(basic_client(ODD_ID, odd))
            .client(
                RegisteredClient::new("refresher", AuthMethod::ClientSecretBasic)
                    .with_secret_hash(PasswordHash::parse(HASH).unwrap())
                    .with_grant_types([GrantType::RefreshToken]),
            );
        configure(builder)
    })
    .await
}

async fn start() -> (AuthorizationServer, String) {
    start_with(|b| b).await
}

async fn token_basic(base: &str, id: &str, secret: &str, body: &str) -> Reply {
    let auth = basic(id, secret);
    post(
        &format!("{base}/oauth2/token"),
        &[("content-type", FORM), ("authorization", &auth)],
        body,
    )
    .await
}

/// Every RFC 6749 §5.2 row (and RFC 8707 `invalid_target`), as raw HTTP.
#[tokio::test]
async fn rfc6749_5_2_error_table() {
    let (_server, base) = start().await;
    let url = format!("{base}/oauth2/token");
    let ok_basic = basic("orders", SECRET);
    let wrong_basic = basic("orders", "wrong");
    let unknown_basic = basic("nobody", SECRET);
    let post_secret = format!("client_id=poster&client_secret={}", "correct+horse");
    struct Row<'a> {
        name: &'a str,
        method: &'a str,
        url: String,
        headers: Vec<(&'a str, &'a str)>,
        body: String,
        status: u16,
        error: &'a str,
        basic_challenge: bool,
    }
    let row =
        |name, headers: Vec<(&'static str, &'static str)>, body: &str, status, error, challenge| {
            Row {
                name,
                method: "POST",
                url: url.clone(),
                headers,
                body: body.to_owned(),
                status,
                error,
                basic_challenge: challenge,
            }
        };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let ok_b = leak(ok_basic.clone());
    let wrong_b = leak(wrong_basic);
    let unknown_b = leak(unknown_basic);
    let ct = ("content-type", FORM);
    let rows = vec![
        row(
            "missing grant_type",
            vec![ct, ("authorization", ok_b)],
            "scope=orders.read",
            400,
            "invalid_request",
            false,
        ),
        row(
            "empty grant_type is absent",
            vec![ct, ("authorization", ok_b)],
            "grant_type=",
            400,
            "invalid_request",
            false,
        ),
        row(
            "repeated grant_type",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&grant_type=client_credentials",
            400,
            "invalid_request",
            false,
        ),
        row(
            "repeated scope",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&scope=a&scope=b",
            400,
            "invalid_request",
            false,
        ),
        row(
            "not a form",
            vec![
                ("content-type", "application/json"),
                ("authorization", ok_b),
            ],
            "{\"grant_type\":\"client_credentials\"}",
            400,
            "invalid_request",
            false,
        ),
        row(
            "no content type",
            vec![("authorization", ok_b)],
            "grant_type=client_credentials",
            400,
            "invalid_request",
            false,
        ),
        row(
            "two auth methods",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&client_id=orders&client_secret=correct+horse",
            400,
            "invalid_request",
            false,
        ),
        row(
            "body client_id differs from Basic",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&client_id=poster",
            400,
            "invalid_request",
            false,
        ),
        row(
            "malformed Basic",
            vec![ct, ("authorization", "Basic %%%")],
            "grant_type=client_credentials",
            400,
            "invalid_request",
            false,
        ),
        row(
            "no client authentication",
            vec![ct],
            "grant_type=client_credentials",
            401,
            "invalid_client",
            true,
        ),
        row(
            "client_id only, confidential client",
            vec![ct],
            "grant_type=client_credentials&client_id=orders",
            401,
            "invalid_client",
            true,
        ),
        row(
            "wrong secret (basic)",
            vec![ct, ("authorization", wrong_b)],
            "grant_type=client_credentials",
            401,
            "invalid_client",
            true,
        ),
        row(
            "unknown client (basic)",
            vec![ct, ("authorization", unknown_b)],
            "grant_type=client_credentials",
            401,
            "invalid_client",
            true,
        ),
        row(
            "wrong secret (post)",
            vec![ct],
            "grant_type=client_credentials&client_id=poster&client_secret=nope",
            401,
            "invalid_client",
            false,
        ),
        row(
            "registered method enforced (basic client uses post)",
            vec![ct],
            "grant_type=client_credentials&client_id=orders&client_secret=correct+horse",
            401,
            "invalid_client",
            false,
        ),
        row(
            "bearer is not client authentication",
            vec![ct, ("authorization", "Bearer abc")],
            "grant_type=client_credentials",
            401,
            "invalid_client",
            true,
        ),
        row(
            "unsupported grant type",
            vec![ct, ("authorization", ok_b)],
            "grant_type=implicit",
            400,
            "unsupported_grant_type",
            false,
        ),
        row(
            "known but not served grant type",
            vec![ct, ("authorization", ok_b)],
            "grant_type=urn:ietf:params:oauth:grant-type:device_code",
            400,
            "unsupported_grant_type",
            false,
        ),
        row(
            "client not registered for the grant",
            vec![ct, ("authorization", leak(basic("refresher", SECRET)))],
            "grant_type=client_credentials",
            400,
            "unauthorized_client",
            false,
        ),
        row(
            "unregistered scope refused, not dropped",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&scope=orders.read%20admin",
            400,
            "invalid_scope",
            false,
        ),
        row(
            "malformed scope",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&scope=a%22b",
            400,
            "invalid_scope",
            false,
        ),
        row(
            "unregistered audience",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&audience=billing",
            400,
            "invalid_target",
            false,
        ),
        row(
            "unregistered resource",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&resource=https://api.example/billing",
            400,
            "invalid_target",
            false,
        ),
        row(
            "resource not absolute",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&resource=service-system",
            400,
            "invalid_target",
            false,
        ),
        row(
            "repeated audience",
            vec![ct, ("authorization", ok_b)],
            "grant_type=client_credentials&audience=service-system&audience=service-system",
            400,
            "invalid_request",
            false,
        ),
    ];
    let mut rows = rows;
    rows.push(Row {
        name: "credentials in the query",
        method: "POST",
        url: format!("{url}?client_id=poster&client_secret=correct+horse"),
        headers: vec![ct],
        body: "grant_type=client_credentials".into(),
        status: 400,
        error: "invalid_request",
        basic_challenge: false,
    });
    rows.push(Row {
        name: "GET refused",
        method: "GET",
        url: format!("{url}?grant_type=client_credentials"),
        headers: vec![("authorization", ok_b)],
        body: String::new(),
        status: 405,
        error: "invalid_request",
        basic_challenge: false,
    });
    rows.push(Row {
        name: "body too large",
        method: "POST",
        url: url.clone(),
        headers: vec![ct, ("authorization", ok_b)],
        body: format!("grant_type=client_credentials&pad={}", "x".repeat(20_000)),
        status: 413,
        error: "invalid_request",
        basic_challenge: false,
    });
    rows.push(row(
        "post client ok",
        vec![ct],
        &post_secret,
        400,
        "invalid_request",
        false,
    ));

    let mut table = String::new();
    for r in &rows {
        let mut b = http::Request::builder().method(r.method).uri(&r.url);
        for (k, v) in &r.headers {
            b = b.header(*k, *v);
        }
        let reply = send(b.body(Full::new(Bytes::from(r.body.clone()))).unwrap()).await;
        // The "post client ok" row has no grant_type: authenticated, then invalid_request.
        table.push_str(&format!(
            "{:<55} {} {}\n",
            r.name, reply.status, reply.json["error"]
        ));
        assert_eq!(reply.status, r.status, "{}: {:?}", r.name, reply.json);
        assert_eq!(reply.json["error"], r.error, "{}", r.name);
        assert!(
            reply.json["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{}",
            r.name
        );
        assert_eq!(
            reply.header("cache-control"),
            Some("no-store"),
            "{}",
            r.name
        );
        assert_eq!(reply.header("pragma"), Some("no-cache"), "{}", r.name);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{}",
            r.name
        );
        let challenge = reply.header("www-authenticate");
        assert_eq!(
            challenge.is_some_and(|c| c.starts_with("Basic")),
            r.basic_challenge,
            "{}: {challenge:?}",
            r.name
        );
        if r.method == "GET" {
            assert_eq!(reply.header("allow"), Some("POST"));
        }
    }
    println!("{table}");
}

#[tokio::test]
async fn client_credentials_token_has_exactly_the_claims() {
    let (server, base) = start().await;
    // All registered scopes when none is asked; default audience when none is asked.
    let r = token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["expires_in"], 300);
    assert_eq!(r.json["scope"], "internal-service orders.read");
    assert!(r.json.get("refresh_token").is_none());
    let token = r.json["access_token"].as_str().unwrap();
    let h = header_of(token);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["kid"], server.keys().signing_key().kid());
    let p = payload(token);
    let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "aud",
            "client_id",
            "exp",
            "gty",
            "iat",
            "iss",
            "jti",
            "scope",
            "sub"
        ]
    );
    assert_eq!(p["iss"], base);
    assert_eq!(p["sub"], "orders");
    assert_eq!(p["client_id"], "orders");
    assert_eq!(p["gty"], "client-credentials");
    assert_eq!(p["aud"], "eon-internal");
    assert_eq!(p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(), 300);
    assert!(
        URL_SAFE_NO_PAD
            .decode(p["jti"].as_str().unwrap())
            .unwrap()
            .len()
            >= 16
    );

    // Asked scope (same as granted: no `scope` in the answer), asked audience and resources.
    let r = token_basic(
        &base,
        "orders",
        SECRET,
        "grant_type=client_credentials&scope=orders.read&audience=service-system&resource=https%3A%2F%2Fapi.example%2Forders",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert!(r.json.get("scope").is_none(), "{:?}", r.json);
    let p = payload(r.json["access_token"].as_str().unwrap());
    assert_eq!(p["scope"], "orders.read");
    assert_eq!(
        p["aud"],
        json!(["service-system", "https://api.example/orders"])
    );
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_and_post_works() {
    let (_server, base) = start().await;
    // `:`, `+`, `%` and a space in both id and secret survive RFC 6749 §2.3.1 encoding.
    let r = token_basic(&base, ODD_ID, ODD_SECRET, "grant_type=client_credentials").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        payload(r.json["access_token"].as_str().unwrap())["sub"],
        ODD_ID
    );
    // Not encoded (raw `:` in the id): refused.
    let raw = format!(
        "Basic {}",
        STANDARD.encode(format!("{ODD_ID}:{ODD_SECRET}"))
    );
    let r = post(
        &format!("{base}/oauth2/token"),
        &[("content-type", FORM), ("authorization", &raw)],
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, 401, "{:?}", r.json);
    // client_secret_post, with a charset parameter on the content type.
    let r = post(
        &format!("{base}/oauth2/token"),
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )],
        "grant_type=client_credentials&client_id=poster&client_secret=correct+horse",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
}

#[tokio::test]
async fn metadata_jwks_and_discovery() {
    let (server, base) = start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let res = client
            .get(format!("{base}{path}").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let raw = std::str::from_utf8(&body).unwrap();
        // Byte-equal issuer.
        assert!(raw.contains(&format!("\"issuer\":\"{base}\"")), "{raw}");
        let m: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(m["token_endpoint"], format!("{base}/oauth2/token"));
        assert_eq!(m["jwks_uri"], format!("{base}/oauth2/jwks"));
        assert_eq!(m["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
        // internal-service is internal; no openid.
        assert_eq!(m["scopes_supported"], json!(["orders.read"]));
        assert!(m["response_types_supported"].is_array());
    }
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let res = client
        .get(format!("{base}/oauth2/jwks").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let jwks: Value = serde_json::from_slice(&body).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], server.keys().signing_key().kid());
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(key.get(private).is_none(), "{private} published");
    }

    // Our verifier through discovery pointed at the issuer.
    let r = token_basic(
        &base,
        "orders",
        SECRET,
        "grant_type=client_credentials&audience=service-system",
    )
    .await;
    let token = r.json["access_token"].as_str().unwrap();
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::discovery(base.clone()))
        .audience("service-system")
        .typ("at+jwt")
        .build()
        .unwrap();
    let user: CurrentUser = verifier.verify(token).await.unwrap();
    assert_eq!(user.subject(), Some("orders"));
    assert_eq!(user.client_id(), Some("orders"));
    assert!(user.scopes().iter().any(|s| s == "internal-service"));

    // jsonwebtoken as a second implementation.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["service-system"]);
    v.set_issuer(&[base.as_str()]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &dk, &v).unwrap();
    assert_eq!(data.claims["gty"], "client-credentials");
}

#[tokio::test]
async fn every_algorithm_verifies_with_jsonwebtoken() {
    for (alg, jalg) in [
        (Algorithm::RS256, jsonwebtoken::Algorithm::RS256),
        (Algorithm::PS256, jsonwebtoken::Algorithm::PS256),
        (Algorithm::ES256, jsonwebtoken::Algorithm::ES256),
        (Algorithm::EdDSA, jsonwebtoken::Algorithm::EdDSA),
    ] {
        let (server, base) = start_with(|b| b.algorithm(alg).typ("JWT")).await;
        let r = token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
        let token = r.json["access_token"].as_str().unwrap();
        assert_eq!(header_of(token)["typ"], "JWT");
        let jwks: Value = serde_json::from_str(&server.keys().jwks_json()).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
        let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jalg);
        v.set_audience(&["eon-internal"]);
        v.set_issuer(&[base.as_str()]);
        jsonwebtoken::decode::<Value>(token, &dk, &v).unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
}

#[tokio::test]
async fn our_outbound_client_and_token_manager() {
    let (_server, base) = start().await;
    let basic_source = ClientCredentials::builder("orders", SECRET)
        .discovery(base.clone())
        .build()
        .unwrap();
    let post_source = ClientCredentials::builder("poster", SECRET)
        .token_url(format!("{base}/oauth2/token"))
        .client_auth(ClientAuth::SecretPost)
        .build()
        .unwrap();
    let manager = TokenManager::builder()
        .client(TokenClient::new("orders", basic_source))
        .build()
        .unwrap();
    let t1 = manager
        .access_token("service-system", "internal-service")
        .await
        .unwrap();
    let t2 = manager
        .access_token("service-system", "internal-service")
        .await
        .unwrap();
    assert_eq!(t1.value(), t2.value(), "cached");
    let p = payload(t1.value());
    assert_eq!(p["aud"], "service-system");
    assert_eq!(p["scope"], "internal-service");
    let post_manager = TokenManager::builder()
        .client(TokenClient::new("poster", post_source))
        .build()
        .unwrap();
    let t = post_manager.access_token("", "orders.read").await.unwrap();
    assert_eq!(payload(t.value())["sub"], "poster");
}

async fn oauth2_http(req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, std::io::Error> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let (parts, body) = req.into_parts();
    let res = client
        .request(http::Request::from_parts(
            parts,
            Full::new(Bytes::from(body)),
        ))
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes()
        .to_vec();
    Ok(http::Response::from_parts(parts, body))
}

#[tokio::test]
async fn the_oauth2_crate_as_an_independent_client() {
    use oauth2::basic::BasicClient;
    use oauth2::{ClientId, ClientSecret, Scope, TokenResponse as _, TokenUrl};
    let (_server, base) = start().await;
    let token_url = TokenUrl::new(format!("{base}/oauth2/token")).unwrap();
    // Basic, with `:`, `+`, `%` in id and secret (the crate form-urlencodes them).
    let client = BasicClient::new(ClientId::new(ODD_ID.into()))
        .set_client_secret(ClientSecret::new(ODD_SECRET.into()))
        .set_token_uri(token_url.clone());
    let tok = client
        .exchange_client_credentials()
        .add_scope(Scope::new("orders.read".into()))
        .request_async(&oauth2_http)
        .await
        .unwrap();
    assert_eq!(tok.expires_in(), Some(Duration::from_secs(300)));
    assert_eq!(payload(tok.access_token().secret())["sub"], ODD_ID);
    // Request-body auth.
    let client = BasicClient::new(ClientId::new("poster".into()))
        .set_client_secret(ClientSecret::new(SECRET.into()))
        .set_auth_type(oauth2::AuthType::RequestBody)
        .set_token_uri(token_url.clone());
    let tok = client
        .exchange_client_credentials()
        .request_async(&oauth2_http)
        .await
        .unwrap();
    assert_eq!(
        tok.scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        Some(vec!["orders.read".to_owned()])
    );
    // The crate parses our error body.
    let client = BasicClient::new(ClientId::new("orders".into()))
        .set_client_secret(ClientSecret::new("wrong".into()))
        .set_token_uri(token_url);
    let err = client
        .exchange_client_credentials()
        .request_async(&oauth2_http)
        .await
        .unwrap_err();
    match err {
        oauth2::RequestTokenError::ServerResponse(e) => {
            assert_eq!(e.error().as_ref(), "invalid_client");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn concurrent_token_requests() {
    let (_server, base) = start().await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move {
                let r = token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
                assert_eq!(r.status, 200, "{:?}", r.json);
                payload(r.json["access_token"].as_str().unwrap())["jti"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    let mut jtis = std::collections::HashSet::new();
    for t in tasks {
        assert!(jtis.insert(t.await.unwrap()));
    }
    assert_eq!(jtis.len(), 64);
}

#[tokio::test]
async fn failed_client_authentications_are_limited() {
    let clock = ManualClock::new(SystemClock.now_unix());
    let (_server, base) = start_with(|b| {
        b.clock(Arc::new(clock.clone())).client_limits(
            LimiterConfig::default()
                .with_free_failures(3)
                .with_lock_after(5)
                .with_lock_duration(Duration::from_secs(600)),
        )
    })
    .await;
    for _ in 0..3 {
        let r = token_basic(&base, "orders", "wrong", "grant_type=client_credentials").await;
        assert_eq!(r.status, 401);
    }
    let r = token_basic(&base, "orders", "wrong", "grant_type=client_credentials").await;
    assert_eq!(r.status, 401, "the 4th failure is answered, then backoff");
    // Now blocked, even with the right secret.
    let r = token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // Another client is not affected.
    let r = token_basic(&base, ODD_ID, ODD_SECRET, "grant_type=client_credentials").await;
    assert_eq!(r.status, 200);
    clock.advance(Duration::from_secs(1));
    let r = token_basic(&base, "orders", "wrong", "grant_type=client_credentials").await;
    assert_eq!(r.status, 401);
    // 5 failures: locked.
    let r = token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("600"));
    clock.advance(Duration::from_secs(600));
    let r = token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
}

#[tokio::test]
async fn failures_are_limited_per_source_address() {
    let (_server, base) = start_with(|b| {
        b.address_limits(
            LimiterConfig::per_address()
                .with_free_failures(2)
                .with_lock_after(3),
        )
    })
    .await;
    for id in ["a", "b", "c"] {
        let r = token_basic(&base, id, "x", "grant_type=client_credentials").await;
        assert_eq!(r.status, 401);
    }
    // A fourth client id from the same address is refused before any check.
    let r = token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn restart_on_a_key_directory_keeps_the_kid_and_old_tokens_verify() {
    let dir = std::env::temp_dir().join(format!("tower-bearer-issuer-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = || {
        KeyOptions::default()
            .with_algorithm(Algorithm::ES256)
            .with_key_dir(&dir, Secret::new("test-only-key-secret-0123456789"))
    };
    let (first, base) = start_with(|b| b.key_options(opts())).await;
    let kid = first.keys().signing_key().kid().to_owned();
    let r = token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
    let old_token = r.json["access_token"].as_str().unwrap().to_owned();
    drop(first);

    let (second, base2) = start_with(|b| b.key_options(opts())).await;
    assert_eq!(second.keys().signing_key().kid(), kid);
    // The old token (issuer of the first instance) verifies with the second's JWKS.
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(
            base.clone(),
            format!("{base2}/oauth2/jwks"),
        ))
        .audience("eon-internal")
        .build()
        .unwrap();
    let user = verifier.verify(&old_token).await.unwrap();
    assert_eq!(user.subject(), Some("orders"));
    let _ = std::fs::remove_dir_all(&dir);
}

async fn hello(user: CurrentUser) -> String {
    user.subject().unwrap_or("-").to_owned()
}

/// A resource server with `JwtAuthLayer` pointed at the issuer; tokens fetched and used in a
/// loop while the keys rotate: not one request may fail.
#[tokio::test]
async fn rotation_under_load_has_no_failed_request() {
    let clock = ManualClock::new(SystemClock.now_unix());
    let (server, base) = start_with(|b| {
        b.clock(Arc::new(clock.clone())).key_options(
            KeyOptions::default()
                .with_algorithm(Algorithm::EdDSA)
                .with_jwks_max_age(Duration::from_secs(1))
                .with_tick_interval(Duration::from_secs(1))
                .with_publish_lead(Duration::from_secs(2)),
        )
    })
    .await;
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::discovery(base.clone()))
        .audience("eon-internal")
        .clock(Arc::new(clock.clone()))
        .remote_options(RemoteOptions {
            min_refresh_interval: Duration::from_millis(200),
            unknown_kid_cooldown: Duration::from_millis(200),
            ..RemoteOptions::default()
        })
        .token_cache(0)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/hello", get(hello))
        .layer(JwtAuthLayer::new(verifier));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rs = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kids = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (base, rs, ok, failed, stop, kids) = (
                base.clone(),
                rs.clone(),
                ok.clone(),
                failed.clone(),
                stop.clone(),
                kids.clone(),
            );
            tokio::spawn(async move {
                let client: Client<_, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).build_http();
                while !stop.load(Ordering::SeqCst) {
                    let r =
                        token_basic(&base, "orders", SECRET, "grant_type=client_credentials").await;
                    let token = r.json["access_token"].as_str().unwrap().to_owned();
                    kids.lock()
                        .unwrap()
                        .insert(header_of(&token)["kid"].as_str().unwrap().to_owned());
                    for _ in 0..5 {
                        let req = http::Request::get(format!("{rs}/hello"))
                            .header("authorization", format!("Bearer {token}"))
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        let res = client.request(req).await.unwrap();
                        if res.status() == 200 {
                            ok.fetch_add(1, Ordering::SeqCst);
                        } else {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = server.keys().signing_key().kid().to_owned();
    server.rotate_keys().await.unwrap();
    // The new key is published; verifiers refresh (max-age 1 s) while the old key signs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    clock.advance(Duration::from_secs(2));
    server.keys().tick().await.unwrap();
    let second = server.keys().signing_key().kid().to_owned();
    assert_ne!(first, second, "the new key signs after the publish lead");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let kids = kids.lock().unwrap().clone();
    assert!(kids.contains(&first) && kids.contains(&second), "{kids:?}");
    println!(
        "rotation under load: {} ok, {} failed",
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    assert!(ok.load(Ordering::SeqCst) > 20);
    assert_eq!(failed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn from_yaml_with_hashed_and_plain_secrets() {
    let yaml = r#"
security:
  authorization-server:
    issuer: http://127.0.0.1:1
    access-token: { ttl-seconds: 60, audience: "a, b" }
    clients:
      - client-id: plain
        client-secret: "${ISSUER_TEST_SECRET:-test-only-secret}"
        grant-types: [client_credentials]
        scopes: [x]
      - client-id: hashed
        client-secret-hash: "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU."
        auth-method: client_secret_post
        grant-types: [client_credentials]
        access-token-ttl-seconds: 30
"#;
    let cfg = tower_bearer::config::SecurityConfig::from_yaml(yaml).unwrap();
    let server = AuthorizationServer::from_security_config(&cfg)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = server.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let r = token_basic(
        &base,
        "plain",
        "test-only-secret",
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let p = payload(r.json["access_token"].as_str().unwrap());
    assert_eq!(p["aud"], json!(["a", "b"]));
    assert_eq!(p["iss"], "http://127.0.0.1:1");
    let r = post(
        &format!("{base}/oauth2/token"),
        &[("content-type", FORM)],
        "grant_type=client_credentials&client_id=hashed&client_secret=correct+horse",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["expires_in"], 30);
    assert!(
        r.json.get("scope").is_none(),
        "no scope registered, none granted"
    );
}
