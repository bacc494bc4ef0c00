//! An authorization server serving `security.authorization-server`.
//!
//! Run with `cargo run --example auth_server -- --config examples/auth_server.yaml`.
//!
//! The YAML holds `listen:` plus the `security:` subtree (`authorization-server`, and optionally
//! `http-client`, `resource-server.internal-only`, `redis`). Serves the token endpoint, the JWKS
//! and the RFC 8414 / OpenID metadata on `listen:`; drives key rotation; prints one line per
//! issued token (client id, scopes, audience, `jti`; never the token or a secret); shuts down
//! gracefully on Ctrl-C (SIGINT) or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tower_bearer::config::SecurityConfig;
use tower_bearer::issuer::{AuthorizationServer, AuthorizationServerBuilder, IssuedToken};

/// `listen` and the security settings.
#[derive(Debug)]
struct ServerConfig {
    listen: SocketAddr,
    security: SecurityConfig,
}

fn parse_config(yaml: &str) -> Result<ServerConfig, String> {
    #[derive(serde::Deserialize)]
    struct Top {
        listen: Option<String>,
    }
    let top: Top = serde_yaml_ng::from_str(yaml).map_err(|e| format!("invalid YAML: {e}"))?;
    let listen = top
        .listen
        .ok_or("missing `listen` (e.g. listen: 127.0.0.1:9000)")?;
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("`listen: {listen}` is not an address like 127.0.0.1:9000"))?;
    let security = SecurityConfig::from_yaml(yaml).map_err(|e| format!("security: {e}"))?;
    if security.authorization_server.is_none() {
        return Err("missing `security.authorization-server`".into());
    }
    Ok(ServerConfig { listen, security })
}

fn log_issued(t: &IssuedToken) {
    println!(
        "issued token: client_id={} grant={} scope=\"{}\" aud=\"{}\" jti={} exp={}",
        t.client_id,
        t.grant,
        t.scopes.join(" "),
        t.audiences.join(","),
        t.jti,
        t.exp
    );
}

/// The server of `cfg`, logging each issued token.
async fn build(cfg: &SecurityConfig) -> Result<AuthorizationServer, String> {
    let aus = cfg
        .authorization_server
        .as_ref()
        .ok_or("missing `security.authorization-server`")?;
    // As `from_security_config`, plus the log line.
    let mut b = AuthorizationServerBuilder::from_config(aus).map_err(|e| e.to_string())?;
    if let Some(scope) = cfg
        .resource_server
        .as_ref()
        .and_then(|r| r.internal_only.as_ref())
        .and_then(|i| i.scope.clone())
    {
        b = b.internal_scopes([scope]);
    }
    b.on_issued(log_issued)
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// The router a test can drive.
async fn app(cfg: &SecurityConfig) -> Result<(AuthorizationServer, Router), String> {
    let server = build(cfg).await?;
    let router = server.router();
    Ok((server, router))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn run(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    let cfg = parse_config(&text)?;
    let (server, router) = app(&cfg.security).await?;
    let rotation = server.spawn_key_rotation();
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let meta = server.metadata();
    println!(
        "authorization server {} listening on {}",
        server.issuer(),
        cfg.listen
    );
    println!("  token endpoint: {}", meta["token_endpoint"]);
    println!("  jwks:           {}", meta["jwks_uri"]);
    if let Some(a) = meta["authorization_endpoint"].as_str() {
        println!("  authorize:      {a} (login page, PKCE S256)");
    }
    println!(
        "  signing key:    {} ({})",
        server.keys().signing_key().kid(),
        server.keys().signing_key().algorithm()
    );
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(|e| format!("server error: {e}"))?;
    rotation.abort();
    println!("shut down");
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let usage = "usage: auth_server --config <auth_server.yaml>";
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => path = args.next(),
            "-h" | "--help" => {
                println!("{usage}");
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unknown argument `{other}` ({usage})");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("error: --config <auth_server.yaml> is required");
        return std::process::ExitCode::from(2);
    };
    match run(&path).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_example_config_serves_tokens() {
        let cfg = parse_config(include_str!("auth_server.yaml")).unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        let (_server, router) = app(&cfg.security).await.unwrap();
        let secret = "test-only-internal-client-secret";
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("internal-service-client:{secret}"),
        );
        let req = http::Request::post("/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(axum::body::Body::from(
                "grant_type=client_credentials&audience=service-system",
            ))
            .unwrap();
        let res = router.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn the_example_config_serves_the_code_flow_login_page() {
        let cfg = parse_config(include_str!("auth_server.yaml")).unwrap();
        let (server, router) = app(&cfg.security).await.unwrap();
        let meta = server.metadata();
        assert!(
            meta["authorization_endpoint"]
                .as_str()
                .unwrap()
                .ends_with("/oauth2/authorize")
        );
        // The public mobile client, with PKCE (RFC 7636 appendix B's challenge).
        let req = http::Request::get(
            "/oauth2/authorize?response_type=code&client_id=mobile-app&state=s\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        )
        .body(axum::body::Body::empty())
        .unwrap();
        let res = router.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .contains("HttpOnly")
        );
    }

    #[test]
    fn bad_configs_are_named() {
        assert!(
            parse_config("security: {}\n")
                .unwrap_err()
                .contains("listen")
        );
        assert!(parse_config("listen: x\n").unwrap_err().contains("listen"));
        let err =
            parse_config("listen: 127.0.0.1:1\nsecurity:\n  redis: { url: x }\n").unwrap_err();
        assert!(err.contains("authorization-server"), "{err}");
    }
}
