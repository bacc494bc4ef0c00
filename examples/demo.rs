//! The tower-bearer walkthrough, everything in one process.
//!
//! Run with `cargo run --example demo`.
//!
//! Starts the crate's authorization server in-process (`issuer::AuthorizationServer`: token
//! endpoint, JWKS, metadata) and an axum service protected by the security layers on 127.0.0.1,
//! the service finding the issuer's keys by discovery, then calls the service with a valid
//! token, no token, an expired token, a token for another audience and a forged signature; a
//! role-protected route as a user and as an admin; an internal-only route with a user token that
//! carries the internal scope and with a service token; and the same valid token again after
//! the user's policy version was bumped. Prints each status and `WWW-Authenticate`; exits
//! non-zero if any answer is not the expected one.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};
use tower_bearer::authz::{AccessRules, InternalOnly, Requirement, Rule};
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::password::{PasswordHash, PasswordHasher};
use tower_bearer::issuer::AuthorizationServer;
use tower_bearer::jwks::Algorithm;
use tower_bearer::outbound::{ClientCredentials, InjectBearerLayer, TokenClient, TokenManager};
use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
use tower_bearer::signing::SigningKey;
use tower_bearer::stack::SecurityLayer;
use tower_bearer::{CurrentUser, IssuerConfig, JwtAuthLayer, Verifier};

const AUDIENCE: &str = "service-system";

/// The protected service: `/api/**` needs a token, `/api/admin/**` the `admin` role,
/// `/internal/**` a service token with the `internal-service` scope; policy versions checked.
fn app(verifier: Verifier, versions: Arc<MemoryPolicyVersions>) -> Router {
    let rules = AccessRules::builder()
        .rule(Rule::new(
            "/api/admin/**",
            Requirement::Role("admin".into()),
        ))
        .rule(Rule::new("/api/**", Requirement::Authenticated))
        .internal_only(InternalOnly::new(["/internal/**"]))
        .build()
        .expect("valid rules");
    let security = SecurityLayer::new(verifier.clone(), rules)
        .with_jwt(JwtAuthLayer::new(verifier).with_error_description(true))
        .with_policy(PolicyVersionLayer::new(versions).with_max_staleness(Duration::ZERO));
    Router::new()
        .route("/api/me", get(me))
        .route("/api/admin/reports", get(|| async { "admin reports" }))
        .route("/internal/ping", get(|| async { "pong" }))
        .layer(security)
}

async fn me(user: CurrentUser) -> Json<Value> {
    Json(json!({
        "sub": user.subject(),
        "user_id": user.user_id(),
        "tenant": user.tenant(),
        "roles": user.roles(),
        "scopes": user.scopes(),
    }))
}

/// Demo-only client secret (not a real credential).
const DEMO_CLIENT_SECRET: &str = "demo-only-secret";

/// The authorization server: one client, `service-order`, allowed `client_credentials` for the
/// `internal-service` scope and the service's audience.
async fn authorization_server(
    issuer: String,
) -> Result<AuthorizationServer, Box<dyn std::error::Error>> {
    let hash = PasswordHasher::new(1)
        .hash(DEMO_CLIENT_SECRET.as_bytes())
        .await?;
    let server = AuthorizationServer::builder(issuer)
        .client(
            RegisteredClient::new("service-order", AuthMethod::ClientSecretBasic)
                .with_secret_hash(PasswordHash::parse(&hash)?)
                .with_grant_types([GrantType::ClientCredentials])
                .with_scopes(["internal-service"])
                .with_audiences([AUDIENCE]),
        )
        .on_issued(|t| {
            println!(
                "{:<20} issuer: token for client {} scope \"{}\" aud {} jti {}",
                "",
                t.client_id,
                t.scopes.join(" "),
                t.audiences.join(","),
                t.jti
            );
        })
        .build()
        .await?;
    Ok(server)
}

async fn bind() -> Result<(tokio::net::TcpListener, String), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

fn serve_on(listener: tokio::net::TcpListener, router: Router) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("server error: {e}");
        }
    });
}

async fn serve(router: Router) -> Result<String, Box<dyn std::error::Error>> {
    let (listener, url) = bind().await?;
    serve_on(listener, router);
    Ok(url)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (idp_listener, idp_url) = bind().await?;
    let issuer = idp_url.clone();
    let auth = authorization_server(issuer.clone()).await?;
    serve_on(idp_listener, auth.router());
    // DEMO-ONLY: user tokens are signed by the demo itself with the issuer's active key until the
    // password grant exists (issue 9); every service token comes from the token endpoint.
    let key = auth.keys().signing_key();
    println!(
        "authorization server: {idp_url} (token endpoint, JWKS, metadata; kid {})",
        key.kid()
    );

    let verifier = Verifier::builder()
        .issuer(IssuerConfig::discovery(&issuer))
        .audience(AUDIENCE)
        .build()?;
    let versions = Arc::new(MemoryPolicyVersions::new());
    versions.set("1001", 1);
    let api = serve(app(verifier, versions.clone())).await?;
    println!("protected service: {api}/api/me\n");

    let claims = |aud: &str, exp: u64| {
        json!({
            "iss": issuer, "aud": aud, "sub": "alice", "uid": "1001", "tenant": "acme", "pv": 1,
            "roles": ["user"], "scope": "orders.read", "iat": now(), "exp": exp,
        })
    };
    let mut admin_claims = claims(AUDIENCE, now() + 300);
    admin_claims["roles"] = json!(["admin"]);
    let admin = key.sign(&admin_claims)?;
    let mut scoped_user = claims(AUDIENCE, now() + 300);
    scoped_user["scope"] = json!("internal-service");
    let scoped_user = key.sign(&scoped_user)?;
    // The service token: client_credentials at the issuer's token endpoint.
    let source = ClientCredentials::builder("service-order", DEMO_CLIENT_SECRET)
        .discovery(&issuer)
        .build()?;
    let manager = TokenManager::builder()
        .client(
            TokenClient::new("service-order", source)
                .with_audience(AUDIENCE)
                .with_scope("internal-service")
                .with_destination(&api)?,
        )
        .build()?;
    let service = manager
        .access_token(AUDIENCE, "internal-service")
        .await?
        .value()
        .to_owned();
    let valid = key.sign(&claims(AUDIENCE, now() + 300))?;
    let expired = key.sign(&claims(AUDIENCE, now() - 600))?;
    let other_audience = key.sign(&claims("payments", now() + 300))?;
    let forged = {
        let attacker = SigningKey::generate(Algorithm::RS256)?;
        let t = attacker.sign(&claims(AUDIENCE, now() + 300))?;
        // Keep the attacker's signature but claim the real key's kid.
        let header = json!({"alg": "RS256", "kid": key.kid(), "typ": "JWT"});
        let mut parts = t.splitn(2, '.');
        let _ = parts.next();
        let rest = parts.next().unwrap_or_default();
        let encoded = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            header.to_string(),
        );
        format!("{encoded}.{rest}")
    };

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let cases: [(&str, &str, Option<&str>, u16); 10] = [
        ("valid token", "/api/me", Some(&valid), 200),
        ("missing token", "/api/me", None, 401),
        ("expired token", "/api/me", Some(&expired), 401),
        ("wrong audience", "/api/me", Some(&other_audience), 401),
        ("forged signature", "/api/me", Some(&forged), 401),
        ("user on admin", "/api/admin/reports", Some(&valid), 403),
        ("admin on admin", "/api/admin/reports", Some(&admin), 200),
        (
            "user+scope internal",
            "/internal/ping",
            Some(&scoped_user),
            403,
        ),
        ("service internal", "/internal/ping", Some(&service), 200),
        ("after pv bump", "/api/me", Some(&valid), 401),
    ];
    let mut failures = 0;
    for (name, path, token, expected) in cases {
        if name == "after pv bump" {
            let v = versions.bump("1001");
            println!("-- policy version of user 1001 bumped to {v}: the same token must now fail");
        }
        let mut req = http::Request::get(format!("{api}{path}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = client.request(req.body(Full::new(Bytes::new()))?).await?;
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = res.into_body().collect().await?.to_bytes();
        let mark = if status == expected {
            "ok"
        } else {
            "UNEXPECTED"
        };
        println!("{name:<20} {path:<19} status {status}  www-authenticate: {challenge}  [{mark}]");
        if status == 200 {
            println!("{:<20} body {}", "", String::from_utf8_lossy(&body));
        }
        if status != expected {
            failures += 1;
        }
    }

    // Service A (service-order) calls service B's internal-only route: the TokenManager (its
    // token from the issuer, already cached) and InjectBearerLayer put it on requests to B only.
    println!("\n-- service-order calls {api}/internal/ping with an injected service token");
    let injecting = InjectBearerLayer::new(manager.clone()).layer(client.clone());
    for i in 1..=3 {
        let req =
            http::Request::get(format!("{api}/internal/ping")).body(Full::new(Bytes::new()))?;
        let res = injecting
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let mark = if status == 200 { "ok" } else { "UNEXPECTED" };
        println!("call {i}: status {status}  [{mark}]");
        if status != 200 {
            failures += 1;
        }
    }
    let token_requests = manager.stats().fetches;
    println!("token requests: {token_requests}");
    if token_requests != 1 {
        failures += 1;
    }

    if failures > 0 {
        return Err(format!("{failures} unexpected answers").into());
    }
    println!("\nall answers as expected");
    Ok(())
}
