//! The tower-bearer walkthrough, everything in one process.
//!
//! Run with `cargo run --example demo`.
//!
//! Starts on 127.0.0.1: the crate's authorization server (`issuer::AuthorizationServer`: token
//! endpoint with the `password`, `refresh_token` and `client_credentials` grants, JWKS,
//! metadata), a gateway (`SecurityLayer` in gateway mode in front of a reverse proxy), the
//! `orders` service behind it (trusting the gateway's identity headers) and the `inventory`
//! service protected by the security layers itself. Every token comes from the token endpoint;
//! the demo signs none itself (only the forged one, with an attacker's key).
//!
//! Part 1 walks issue 9's flow: alice logs in (password grant); the gateway verifies her token
//! and forwards `X-User-Id`, `X-Roles`, `X-Tenant-Id` (the spoofed ones she sent are stripped);
//! `orders` reads `CurrentUser` and calls `inventory`'s internal-only route with a
//! `client_credentials` token injected by `InjectBearerLayer`; an admin changes alice's roles
//! (`bump_policy_version`), so her old token is refused; her refresh gets a token with the new
//! roles; replaying the old refresh token revokes the family, after which every refresh fails.
//!
//! Part 2 asks `inventory` directly: valid, missing, expired, wrong-audience and forged tokens;
//! a role-protected route as a user and as an admin (whose bcrypt hash is upgraded to argon2id
//! at login); an internal-only route with a user token and with a service token; the same token
//! after a policy-version bump. Part 3: three more injected calls, one token request in all.
//!
//! Each step prints its status; the demo exits non-zero if any answer is not the expected one.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};
use tower_bearer::authz::{AccessRules, InternalOnly, Requirement, Rule};
use tower_bearer::clock::Clock;
use tower_bearer::gateway::{SetIdentityHeadersLayer, TrustedIdentityHeadersLayer};
use tower_bearer::issuer::AuthorizationServer;
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::password::{PasswordHash, PasswordHasher, PasswordScheme};
use tower_bearer::issuer::users::{MemoryUserStore, User};
use tower_bearer::jwks::Algorithm;
use tower_bearer::outbound::{
    ClientCredentials, InjectBearer, InjectBearerLayer, TokenClient, TokenManager,
};
use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
use tower_bearer::revocation::{GrantStoreRevocations, RevocationLayer};
use tower_bearer::signing::SigningKey;
use tower_bearer::stack::SecurityLayer;
use tower_bearer::{CurrentUser, IssuerConfig, JwtAuthLayer, Verifier};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

const AUDIENCE: &str = "service-system";

// DEMO-ONLY credentials (not real secrets): two client secrets and two user passwords.
const SERVICE_SECRET: &str = "demo-only-service-secret";
const WEB_SECRET: &str = "demo-only-web-secret";
const ALICE_PASSWORD: &str = "demo-only-alice-password";
const BOB_PASSWORD: &str = "demo-only-bob-password";

/// The `inventory` service: `/api/**` needs a token, `/api/admin/**` the `admin` role,
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

/// What `orders` needs: the client that injects its service token, and where `inventory` is.
#[derive(Clone)]
struct Orders {
    inventory: String,
    http: InjectBearer<HttpClient>,
}

/// The `orders` service, behind the gateway: it trusts the gateway's identity headers
/// (`TrustedIdentityHeadersLayer`, only because nothing else can reach it in this demo) and
/// calls `inventory`'s internal-only route with its own service token.
fn orders_app(state: Orders) -> Router {
    Router::new()
        .route("/orders/summary", get(summary))
        .layer(TrustedIdentityHeadersLayer::new())
        .with_state(state)
}

async fn summary(State(orders): State<Orders>, user: CurrentUser, headers: HeaderMap) -> Response {
    let seen = |name: &str| {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        values.join(" | ")
    };
    let req = http::Request::get(format!("{}/internal/ping", orders.inventory))
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let inventory = match orders.http.oneshot(req).await {
        Ok(res) => {
            let status = res.status().as_u16();
            let body = res
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            json!({"status": status, "body": body})
        }
        Err(e) => json!({"status": 0, "error": e.to_string()}),
    };
    Json(json!({
        "current_user": {
            "user_id": user.user_id(),
            "tenant": user.tenant(),
            "roles": user.roles(),
        },
        "headers": {
            "x-user-id": seen("x-user-id"),
            "x-roles": seen("x-roles"),
            "x-tenant-id": seen("x-tenant-id"),
            "x_roles": seen("x_roles"),
            "authorization": seen("authorization"),
        },
        "inventory": inventory,
    }))
    .into_response()
}

/// The gateway: verifies the token, enforces its rules, checks policy versions and the issuer's
/// revocations, strips identity headers the caller sent and sets them from the verified token,
/// then forwards to `upstream`.
fn gateway_app(
    verifier: Verifier,
    versions: Arc<MemoryPolicyVersions>,
    revocations: GrantStoreRevocations,
    upstream: String,
) -> Router {
    let rules = AccessRules::builder()
        .rule(Rule::new("/orders/**", Requirement::Authenticated))
        .build()
        .expect("valid rules");
    let security = SecurityLayer::new(verifier.clone(), rules)
        .with_jwt(JwtAuthLayer::new(verifier).with_error_description(true))
        .with_policy(PolicyVersionLayer::new(versions).with_max_staleness(Duration::ZERO))
        .with_revocation(
            RevocationLayer::new(Arc::new(revocations)).with_max_staleness(Duration::ZERO),
        )
        .gateway(SetIdentityHeadersLayer::new().with_strip_authorization(true));
    let client: Client<HttpConnector, axum::body::Body> =
        Client::builder(TokioExecutor::new()).build_http();
    Router::new()
        .fallback(move |mut req: Request| {
            let client = client.clone();
            let upstream = upstream.clone();
            async move {
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let Ok(uri) = format!("{upstream}{path}").parse() else {
                    return (http::StatusCode::BAD_GATEWAY, "bad target").into_response();
                };
                *req.uri_mut() = uri;
                req.headers_mut().remove(http::header::HOST);
                match client.request(req).await {
                    Ok(res) => res.map(axum::body::Body::new).into_response(),
                    Err(_) => {
                        (http::StatusCode::BAD_GATEWAY, "upstream unavailable").into_response()
                    }
                }
            }
        })
        .layer(security)
}

/// The issuer's clock: the system clock, which the demo can set back to obtain a token that
/// has already expired (issued 10 minutes ago with a 5-minute lifetime).
#[derive(Debug, Default)]
struct DemoClock {
    behind: AtomicU64,
}

impl Clock for DemoClock {
    fn now_unix(&self) -> u64 {
        now().saturating_sub(self.behind.load(Ordering::SeqCst))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn argon2(secret: &str) -> Result<PasswordHash, BoxError> {
    // Argon2id at the default (OWASP) cost, as the server stores new hashes.
    let hash = PasswordHasher::new(1).hash(secret.as_bytes()).await?;
    Ok(PasswordHash::parse(&hash)?)
}

/// The authorization server: users alice (argon2id) and bob (an admin whose bcrypt hash, as
/// migrated from a Spring service, is upgraded at his first login); clients `service-order`
/// (client_credentials), `web-app` (password + refresh_token) and `payments-web` (password, for
/// another audience).
async fn authorization_server(
    issuer: String,
    users: MemoryUserStore,
    versions: Arc<MemoryPolicyVersions>,
    clock: Arc<DemoClock>,
) -> Result<AuthorizationServer, BoxError> {
    let service_hash = argon2(SERVICE_SECRET).await?;
    let web_hash = argon2(WEB_SECRET).await?;
    let server = AuthorizationServer::builder(issuer)
        .clock(clock)
        .password_grant(true)
        .with_user_store(Arc::new(users))
        .with_policy_versions(versions)
        .client(
            RegisteredClient::new("service-order", AuthMethod::ClientSecretBasic)
                .with_secret_hash(service_hash)
                .with_grant_types([GrantType::ClientCredentials])
                .with_scopes(["internal-service"])
                .with_audiences([AUDIENCE]),
        )
        .client(
            RegisteredClient::new("web-app", AuthMethod::ClientSecretBasic)
                .with_secret_hash(web_hash.clone())
                .with_grant_types([GrantType::Password, GrantType::RefreshToken])
                .with_scopes(["orders.read", "internal-service"])
                .with_audiences([AUDIENCE]),
        )
        .client(
            RegisteredClient::new("payments-web", AuthMethod::ClientSecretBasic)
                .with_secret_hash(web_hash)
                .with_grant_types([GrantType::Password])
                .with_scopes(["payments.read"])
                .with_audiences(["payments"]),
        )
        .on_issued(|t| {
            println!(
                "{:<24} issuer: {} grant, token for {} (client {}) scope \"{}\" aud {} jti {}",
                "",
                t.grant.as_str(),
                t.subject,
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

async fn bind() -> Result<(tokio::net::TcpListener, String), BoxError> {
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

async fn serve(router: Router) -> Result<String, BoxError> {
    let (listener, url) = bind().await?;
    serve_on(listener, router);
    Ok(url)
}

/// Counts the answers that were not the expected ones.
#[derive(Default)]
struct Report {
    failures: u32,
}

impl Report {
    fn check(&mut self, step: &str, detail: impl Display, ok: bool) -> bool {
        let mark = if ok { "ok" } else { "UNEXPECTED" };
        println!("{step:<24} {detail}  [{mark}]");
        if !ok {
            self.failures += 1;
        }
        ok
    }
}

/// One answer: status, `WWW-Authenticate`, body.
struct Answer {
    status: u16,
    challenge: String,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(client: &HttpClient, req: http::request::Builder) -> Result<Answer, BoxError> {
    let res = client.request(req.body(Full::new(Bytes::new()))?).await?;
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = res.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        challenge,
        body,
    })
}

async fn get_with(
    client: &HttpClient,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Answer, BoxError> {
    let mut req = http::Request::get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(client, req).await
}

/// A token request (`client_secret_basic`) at the issuer's token endpoint.
async fn token_request(
    http: &HttpClient,
    issuer: &str,
    client: (&str, &str),
    form: &[(&str, &str)],
) -> Result<(u16, Value), BoxError> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let basic = STANDARD.encode(format!("{}:{}", client.0, client.1));
    let req = http::Request::post(format!("{issuer}/oauth2/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))?;
    let res = http.request(req).await?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A login with the password grant.
async fn login(
    http: &HttpClient,
    issuer: &str,
    client: &str,
    username: &str,
    password: &str,
    scope: Option<&str>,
) -> Result<(u16, Value), BoxError> {
    let mut form = vec![
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    token_request(http, issuer, (client, WEB_SECRET), &form).await
}

async fn refresh(http: &HttpClient, issuer: &str, token: &str) -> Result<(u16, Value), BoxError> {
    let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
    token_request(http, issuer, ("web-app", WEB_SECRET), &form).await
}

/// The claims of a token, decoded for display only (the services verify it).
fn claims_of(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn field(v: &Value, name: &str) -> String {
    v.get(name).and_then(Value::as_str).unwrap_or("").to_owned()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let started = Instant::now();
    let mut report = Report::default();
    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    // ---- the users, the shared policy versions, the issuer -------------------------------
    let bob_bcrypt = bcrypt::hash(BOB_PASSWORD, 10)?;
    let users = MemoryUserStore::from_users([
        User::new("1001", "alice")
            .with_tenant("acme")
            .with_pv(1)
            .with_roles(["user"])
            .with_permissions(["orders.read"])
            .with_password_hash(argon2(ALICE_PASSWORD).await?),
        User::new("1002", "bob")
            .with_tenant("acme")
            .with_pv(1)
            .with_roles(["admin"])
            .with_password_hash(PasswordHash::parse(&format!("{{bcrypt}}{bob_bcrypt}"))?),
    ])?;
    // One policy-version source shared by the issuer and every service.
    let versions = Arc::new(MemoryPolicyVersions::new());
    let clock = Arc::new(DemoClock::default());
    let (idp_listener, idp) = bind().await?;
    let auth =
        authorization_server(idp.clone(), users.clone(), versions.clone(), clock.clone()).await?;
    serve_on(idp_listener, auth.router());

    // ---- inventory (JWT-protected), orders (behind the gateway), the gateway -------------
    let verifier = || {
        Verifier::builder()
            .issuer(IssuerConfig::discovery(&idp))
            .audience(AUDIENCE)
            .build()
    };
    let inventory = serve(app(verifier()?, versions.clone())).await?;
    let source = ClientCredentials::builder("service-order", SERVICE_SECRET)
        .discovery(&idp)
        .build()?;
    let manager = TokenManager::builder()
        .client(
            TokenClient::new("service-order", source)
                .with_audience(AUDIENCE)
                .with_scope("internal-service")
                .with_destination(&inventory)?,
        )
        .build()?;
    let injecting = InjectBearerLayer::new(manager.clone()).layer(http.clone());
    let orders = serve(orders_app(Orders {
        inventory: inventory.clone(),
        http: injecting.clone(),
    }))
    .await?;
    let revocations = GrantStoreRevocations::new(auth.grant_store().clone());
    let gateway = serve(gateway_app(
        verifier()?,
        versions.clone(),
        revocations,
        orders.clone(),
    ))
    .await?;

    println!("== part 1: issue 9's flow\n");
    report.check(
        "1 authorization server",
        format!(
            "{idp} (password, refresh_token, client_credentials; kid {})",
            auth.keys().signing_key().kid()
        ),
        auth.metadata()["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "password")),
    );
    println!(
        "{:<24} gateway {gateway} -> orders {orders}; inventory {inventory}",
        ""
    );

    // 2. alice logs in.
    let (status, tokens) = login(&http, &idp, "web-app", "alice", ALICE_PASSWORD, None).await?;
    let at1 = field(&tokens, "access_token");
    let rt1 = field(&tokens, "refresh_token");
    let c1 = claims_of(&at1);
    report.check(
        "2 alice logs in",
        format!(
            "POST /oauth2/token grant_type=password -> {status}: refresh token (family {}), roles {}, pv {}, amr {}",
            c1["sid"],
            c1["roles"],
            c1["pv"],
            c1["amr"]
        ),
        status == 200 && !rt1.is_empty() && c1["roles"] == json!(["user"]) && c1["pv"] == 1,
    );
    let (status, bad) = login(&http, &idp, "web-app", "alice", "wrong-password", None).await?;
    report.check(
        "  wrong password",
        format!("-> {status} {}", bad["error"]),
        status == 400 && bad["error"] == "invalid_grant",
    );

    // 3. through the gateway, with identity headers of her own making.
    let spoofed = [
        ("x-user-id", "1002"),
        ("x_roles", "admin"),
        ("X-Tenant-Id", "evil-corp"),
    ];
    let summary_url = format!("{gateway}/orders/summary");
    let a = get_with(&http, &summary_url, Some(&at1), &spoofed).await?;
    let seen = a.json();
    report.check(
        "3 gateway",
        format!(
            "GET /orders/summary (sent X-User-Id: 1002, X_Roles: admin, X-Tenant-Id: evil-corp) -> {}",
            a.status
        ),
        a.status == 200,
    );
    let h = &seen["headers"];
    report.check(
        "  orders received",
        format!(
            "X-User-Id: {}, X-Roles: {}, X-Tenant-Id: {} (x_roles: \"{}\", authorization: \"{}\")",
            h["x-user-id"],
            h["x-roles"],
            h["x-tenant-id"],
            h["x_roles"].as_str().unwrap_or(""),
            h["authorization"].as_str().unwrap_or(""),
        ),
        h["x-user-id"] == "1001"
            && h["x-roles"] == "user"
            && h["x-tenant-id"] == "acme"
            && h["x_roles"] == ""
            && h["authorization"] == "",
    );
    // 4. orders reads CurrentUser.
    let u = &seen["current_user"];
    report.check(
        "4 orders: CurrentUser",
        format!(
            "user_id {}, tenant {}, roles {}",
            u["user_id"], u["tenant"], u["roles"]
        ),
        u["user_id"] == "1001" && u["tenant"] == "acme" && u["roles"] == json!(["user"]),
    );
    // 5. orders calls inventory's internal-only route with its injected service token.
    let inv = &seen["inventory"];
    report.check(
        "5 orders -> inventory",
        format!(
            "GET /internal/ping with an injected client_credentials token -> {} {}",
            inv["status"], inv["body"]
        ),
        inv["status"] == 200 && inv["body"] == "pong",
    );

    // 6. an admin changes alice's roles.
    let changed = users.set_roles("1001", ["user", "auditor"]);
    let pv = auth.bump_policy_version("1001").await?;
    report.check(
        "6 admin changes roles",
        format!("alice: roles [user, auditor]; bump_policy_version(\"1001\") -> {pv}"),
        changed && pv == 2,
    );
    // 7. her old token is refused, at the gateway and at inventory.
    let a = get_with(&http, &summary_url, Some(&at1), &[]).await?;
    report.check(
        "7 old token, gateway",
        format!("-> {}  www-authenticate: {}", a.status, a.challenge),
        a.status == 401 && a.challenge.contains("policy version"),
    );
    let a = get_with(&http, &format!("{inventory}/api/me"), Some(&at1), &[]).await?;
    report.check(
        "  old token, inventory",
        format!("-> {}  www-authenticate: {}", a.status, a.challenge),
        a.status == 401,
    );
    // 8. her refresh gets a token with the new roles.
    let (status, tokens) = refresh(&http, &idp, &rt1).await?;
    let at2 = field(&tokens, "access_token");
    let rt2 = field(&tokens, "refresh_token");
    let c2 = claims_of(&at2);
    report.check(
        "8 refresh",
        format!(
            "grant_type=refresh_token -> {status}: rotated (family {}), roles {}, pv {}",
            c2["sid"], c2["roles"], c2["pv"]
        ),
        status == 200
            && !rt2.is_empty()
            && rt2 != rt1
            && c2["roles"] == json!(["user", "auditor"])
            && c2["pv"] == 2
            && c2["sid"] == c1["sid"],
    );
    let a = get_with(&http, &summary_url, Some(&at2), &[]).await?;
    let seen = a.json();
    report.check(
        "  new token, gateway",
        format!(
            "-> {}: X-Roles {}, CurrentUser roles {}",
            a.status, seen["headers"]["x-roles"], seen["current_user"]["roles"]
        ),
        a.status == 200 && seen["headers"]["x-roles"] == "auditor,user",
    );
    // 9. the old refresh token replayed: reuse detected, the family revoked.
    let (status, body) = refresh(&http, &idp, &rt1).await?;
    report.check(
        "9 replay old refresh",
        format!("-> {status} {} (reuse: family revoked)", body["error"]),
        status == 400 && body["error"] == "invalid_grant",
    );
    // 10. every later refresh fails; the family's access token is refused where revocations
    // are checked.
    for attempt in 1..=2 {
        let (status, body) = refresh(&http, &idp, &rt2).await?;
        report.check(
            &format!("10 refresh ({attempt})"),
            format!("newest refresh token -> {status} {}", body["error"]),
            status == 400 && body["error"] == "invalid_grant",
        );
    }
    let a = get_with(&http, &summary_url, Some(&at2), &[]).await?;
    report.check(
        "  family token, gateway",
        format!("-> {}  www-authenticate: {}", a.status, a.challenge),
        a.status == 401 && a.challenge.contains("revoked"),
    );
    // A new login starts a new family.
    let (status, tokens) = login(&http, &idp, "web-app", "alice", ALICE_PASSWORD, None).await?;
    let valid = field(&tokens, "access_token");
    report.check(
        "  alice logs in again",
        format!(
            "-> {status}: roles {}, pv {}",
            claims_of(&valid)["roles"],
            claims_of(&valid)["pv"]
        ),
        status == 200 && claims_of(&valid)["sid"] != c1["sid"],
    );

    // ---- part 2: inventory's answers -----------------------------------------------------
    println!("\n== part 2: inventory's answers (every token from the issuer)\n");
    let (status, admin) = login(&http, &idp, "web-app", "bob", BOB_PASSWORD, None).await?;
    let admin = field(&admin, "access_token");
    let upgraded = users
        .get("1002")
        .and_then(|u| u.password_hash)
        .map(|h| h.scheme());
    report.check(
        "bob (admin) logs in",
        format!(
            "-> {status}; his {{bcrypt}} hash (cost 10) is now {{{}}} (re-hashed at login)",
            upgraded.map_or("?", PasswordScheme::id)
        ),
        status == 200 && upgraded == Some(PasswordScheme::Argon2),
    );
    let (status, scoped) = login(
        &http,
        &idp,
        "web-app",
        "alice",
        ALICE_PASSWORD,
        Some("orders.read internal-service"),
    )
    .await?;
    let scoped_user = field(&scoped, "access_token");
    report.check(
        "user asks internal",
        format!(
            "scope=orders.read internal-service -> {status}, granted \"{}\"",
            scoped["scope"].as_str().unwrap_or("")
        ),
        status == 200 && scoped["scope"] == "orders.read",
    );
    let (status, body) = login(
        &http,
        &idp,
        "web-app",
        "alice",
        ALICE_PASSWORD,
        Some("internal-service"),
    )
    .await?;
    report.check(
        "user asks only internal",
        format!("scope=internal-service -> {status} {}", body["error"]),
        status == 400 && body["error"] == "invalid_scope",
    );
    let (status, other) = login(&http, &idp, "payments-web", "alice", ALICE_PASSWORD, None).await?;
    let other_audience = field(&other, "access_token");
    report.check(
        "login for payments",
        format!("-> {status}, aud {}", claims_of(&other_audience)["aud"]),
        status == 200,
    );
    // A token issued 10 minutes ago (5-minute lifetime): the issuer's clock set back.
    clock.behind.store(600, Ordering::SeqCst);
    let expired = login(&http, &idp, "web-app", "alice", ALICE_PASSWORD, None).await;
    clock.behind.store(0, Ordering::SeqCst);
    let expired = field(&expired?.1, "access_token");
    // The attacker's signature over alice's claims, under the real key's kid.
    let forged = {
        let attacker = SigningKey::generate(Algorithm::RS256)?;
        let t = attacker.sign(&claims_of(&valid))?;
        let header = json!({"alg": "RS256", "kid": auth.keys().signing_key().kid(), "typ": "JWT"});
        let rest = t.split_once('.').map_or("", |(_, rest)| rest);
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
    };
    let service = manager
        .access_token(AUDIENCE, "internal-service")
        .await?
        .value()
        .to_owned();

    let cases: [(&str, &str, Option<&str>, u16); 10] = [
        ("valid token", "/api/me", Some(&valid), 200),
        ("missing token", "/api/me", None, 401),
        ("expired token", "/api/me", Some(&expired), 401),
        ("wrong audience", "/api/me", Some(&other_audience), 401),
        ("forged signature", "/api/me", Some(&forged), 401),
        ("user on admin", "/api/admin/reports", Some(&valid), 403),
        ("admin on admin", "/api/admin/reports", Some(&admin), 200),
        (
            "user on internal",
            "/internal/ping",
            Some(&scoped_user),
            403,
        ),
        ("service internal", "/internal/ping", Some(&service), 200),
        ("after pv bump", "/api/me", Some(&valid), 401),
    ];
    for (name, path, token, expected) in cases {
        if name == "after pv bump" {
            let v = auth.bump_policy_version("1001").await?;
            println!("-- policy version of user 1001 bumped to {v}: the same token must now fail");
        }
        let a = get_with(&http, &format!("{inventory}{path}"), token, &[]).await?;
        let ok = report.check(
            name,
            format!(
                "{path:<19} status {}  www-authenticate: {}",
                a.status, a.challenge
            ),
            a.status == expected,
        );
        if ok && a.status == 200 {
            println!("{:<24} body {}", "", a.text());
        }
    }

    // ---- part 3: service to service --------------------------------------------------------
    // orders (client service-order) calls inventory's internal-only route: the TokenManager
    // (its token from the issuer, cached) and InjectBearerLayer put it on requests to
    // inventory only.
    println!(
        "\n== part 3: orders calls {inventory}/internal/ping with an injected service token\n"
    );
    for i in 1..=3 {
        let req = http::Request::get(format!("{inventory}/internal/ping"))
            .body(Full::new(Bytes::new()))?;
        let res = injecting.clone().oneshot(req).await?;
        let status = res.status().as_u16();
        report.check(
            &format!("call {i}"),
            format!("status {status}"),
            status == 200,
        );
    }
    let fetches = manager.stats().fetches;
    report.check(
        "token requests",
        format!("{fetches} (for every service call of the demo)"),
        fetches == 1,
    );

    if report.failures > 0 {
        return Err(format!("{} unexpected answers", report.failures).into());
    }
    println!(
        "\nall answers as expected ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
