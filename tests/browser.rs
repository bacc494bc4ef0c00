//! A real browser walks the authorization_code + PKCE flow: headless Chromium (Debian
//! `chromium`) driven by `playwright-core` (`tests/browser/flow.mjs`). This test starts the
//! issuer and an app (the redirect URI and a route protected by `JwtAuthLayer`) on 127.0.0.1,
//! then runs the script, which acts as a PUBLIC client with PKCE: authorize → login page →
//! consent page → redirect URI with the code → token exchange → protected route → 200.
//!
//! It FAILS (never skips) when chromium, node or playwright-core are missing;
//! `scripts/test.sh` installs them (`apt-get install -y chromium chromium-driver`, `npm ci` in
//! `tests/browser`). Screenshots of the login and consent pages go to
//! `target/tmp/browser-screenshots/` (printed below; not committed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_bearer::issuer::AuthorizationServer;
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::password::PasswordHash;
use tower_bearer::issuer::users::{MemoryUserStore, User};
use tower_bearer::{CurrentUser, IssuerConfig, JwtAuthLayer, Verifier};

/// bcrypt (cost 4) of `correct horse`: test-only.
const HASH: &str = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";
const PW: &str = "correct horse";

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// The tools, or a failure saying how to get them.
fn require_tools(root: &Path) {
    let chromium = chromium();
    assert!(
        chromium.exists(),
        "{} not found: apt-get install -y chromium chromium-driver (scripts/test.sh does it)",
        chromium.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node not found: install Node.js 20 (scripts/test.sh needs it)"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core not installed: run `npm ci` in tests/browser (scripts/test.sh does it)"
    );
}

async fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    (l, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_walks_the_code_flow_of_a_public_pkce_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_tools(root);

    let (app_listener, app_base) = listen().await;
    let (issuer_listener, issuer) = listen().await;
    let redirect_uri = format!("{app_base}/cb");
    let users = MemoryUserStore::from_users([User::new("1001", "alice")
        .with_tenant("acme")
        .with_roles(["user"])
        .with_password_hash(PasswordHash::parse(HASH).unwrap())])
    .unwrap();
    let server = AuthorizationServer::builder(&issuer)
        .audience(["orders-api"])
        .with_user_store(Arc::new(users))
        .client(
            RegisteredClient::new("mobile-app", AuthMethod::None)
                .with_grant_types([GrantType::AuthorizationCode, GrantType::RefreshToken])
                .with_scopes(["orders.read"])
                .with_redirect_uris([redirect_uri.as_str()])
                .with_require_consent(true),
        )
        .build()
        .await
        .unwrap();
    let issuer_app = server.router();
    tokio::spawn(async move {
        axum::serve(
            issuer_listener,
            issuer_app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let verifier = Verifier::builder()
        .issuer(IssuerConfig::discovery(issuer.clone()))
        .audience("orders-api")
        .typ("at+jwt")
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/api/orders",
            get(|user: CurrentUser| async move {
                Json(serde_json::json!({
                    "uid": user.user_id(),
                    "tenant": user.tenant(),
                    "orders": [],
                }))
            })
            .route_layer(JwtAuthLayer::new(verifier)),
        )
        .route(
            "/cb",
            get(|| async {
                Html("<!DOCTYPE html><html><head><title>callback</title></head><body><p>callback received</p></body></html>")
            }),
        );
    tokio::spawn(async move { axum::serve(app_listener, app).await.unwrap() });

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let run = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/flow.mjs"))
        .arg(&issuer)
        .arg("mobile-app")
        .arg(&redirect_uri)
        .arg(format!("{app_base}/api/orders"))
        .arg(&shots)
        .env("FLOW_PASSWORD", PW)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser flow took more than 120 s")
        .expect("node could not be started");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- flow.mjs stdout ---\n{stdout}--- flow.mjs stderr ---\n{stderr}");
    assert!(out.status.success(), "the browser flow failed: {stderr}");
    assert!(stdout.contains("FLOW OK"), "{stdout}");
    assert!(stdout.contains("PROTECTED 200"), "{stdout}");
    assert!(stdout.contains("\"uid\":\"1001\""), "{stdout}");
    for name in ["login.png", "consent.png"] {
        let p = shots.join(name);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {} missing or empty", p.display());
        println!("screenshot: {}", p.display());
    }
    // The issuer really issued a refresh-token family for the browser's login.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stats = server.grant_store().stats(now).await.unwrap();
    assert_eq!(stats.families_created, 1, "{stats:?}");
    assert_eq!(
        stats.code_replays, 1,
        "the script's replay was seen: {stats:?}"
    );
}
