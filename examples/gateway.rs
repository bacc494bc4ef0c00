//! A reverse proxy that verifies bearer tokens, enforces the access rules and forwards the
//! verified identity (`X-User-Id`, `X-Roles`, `X-Tenant-Id`, ...) upstream; spoofed identity
//! headers never reach the upstream.
//!
//! Run with `cargo run --example gateway -- --config gateway.yaml`.
//!
//! The YAML holds `listen:` and `upstream:` plus the `security:` subtree (`resource-server`
//! with `issuer`, `jwks-uri` or `discovery`, `audience`, `rules`, `default`, ...). Clients may
//! speak HTTP/1.1 or HTTP/2 (also prior knowledge); the upstream is always called with
//! HTTP/1.1. Bodies stream in both directions; hop-by-hop headers are removed; upstream
//! failures answer 502; SIGINT/SIGTERM stop accepting connections and let in-flight requests
//! finish (10 s at most).
//!
//! The rules see the method, the path and the headers, never the body or the query:
//! method-override *parameters* (`_method=DELETE` in a form body or the query, honoured by
//! Rails, Laravel, Symfony, Spring's `HiddenHttpMethodFilter`, ASP.NET Core's
//! `UseHttpMethodOverride` with a form field) are invisible to them. Configure upstreams not to
//! honour them (the `X-HTTP-Method-Override` style headers are stripped already).
//!
//! With `resource-server.policy-version` or `resource-server.revocation` (`source: redis`), the
//! policy versions and the issuer's revocations are read from `security.redis` (build with the
//! `redis` feature); either configured without Redis stops the gateway at start.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::{Layer, service_fn};
use tower_bearer::config::SecurityConfig;
use tower_bearer::gateway::SetIdentityHeadersLayer;
use tower_bearer::policy::PolicyVersionLayer;
use tower_bearer::revocation::RevocationLayer;
use tower_bearer::stack::SecurityLayer;

type Body = BoxBody<Bytes, hyper::Error>;

/// `listen`, `upstream` and the security settings of the gateway.
#[derive(Debug)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Base URL of the upstream service.
    pub upstream: Uri,
    /// The `security` subtree.
    pub security: SecurityConfig,
}

/// Parses the gateway YAML; every error says what is wrong.
pub fn parse_config(yaml: &str) -> Result<GatewayConfig, String> {
    #[derive(serde::Deserialize)]
    struct Top {
        listen: Option<String>,
        upstream: Option<String>,
        #[serde(rename = "security")]
        _security: Option<serde_yaml_ng::Value>,
    }
    let top: Top = serde_yaml_ng::from_str(yaml).map_err(|e| format!("invalid YAML: {e}"))?;
    let listen = top
        .listen
        .ok_or("missing `listen` (e.g. listen: 127.0.0.1:8080)")?;
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("`listen: {listen}` is not an address like 127.0.0.1:8080"))?;
    let upstream = top
        .upstream
        .ok_or("missing `upstream` (e.g. upstream: http://127.0.0.1:9001)")?;
    let upstream: Uri = upstream
        .parse()
        .ok()
        .filter(|u: &Uri| u.scheme_str() == Some("http") && u.authority().is_some())
        .ok_or_else(|| format!("`upstream: {upstream}` must be an http:// URL with a host"))?;
    let security = SecurityConfig::from_yaml(yaml).map_err(|e| format!("security: {e}"))?;
    Ok(GatewayConfig {
        listen,
        upstream,
        security,
    })
}

/// How long the upstream has to start answering.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

fn bad_gateway(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut res = Response::new(
        Full::new(Bytes::from_static(msg.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res
}

/// Removes the hop-by-hop headers of an upstream response (and those its `Connection` names).
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 needs one (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect();
    if let Ok(v) = http::HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Forwards one request to the upstream (always as HTTP/1.1), streaming both bodies.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: Uri,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let target = format!(
        "{}://{}{}",
        upstream.scheme_str().unwrap_or("http"),
        upstream.authority().map_or("", |a| a.as_str()),
        path
    );
    let Ok(uri) = target.parse::<Uri>() else {
        return Ok(bad_gateway(
            StatusCode::BAD_GATEWAY,
            "bad upstream target\n",
        ));
    };
    *req.uri_mut() = uri;
    // The upstream client speaks HTTP/1.1: an HTTP/2 (or HTTP/1.0) request keeps its version
    // otherwise and the client refuses it, which answered every HTTP/2 caller with 502.
    *req.version_mut() = http::Version::HTTP_11;
    join_cookies(req.headers_mut());
    req.headers_mut().remove(header::HOST);
    match tokio::time::timeout(UPSTREAM_TIMEOUT, client.request(req)).await {
        Ok(Ok(mut res)) => {
            strip_hop_by_hop(res.headers_mut());
            Ok(res.map(BodyExt::boxed))
        }
        Ok(Err(e)) => {
            eprintln!("upstream error: {e}");
            Ok(bad_gateway(
                StatusCode::BAD_GATEWAY,
                "upstream unavailable\n",
            ))
        }
        Err(_) => Ok(bad_gateway(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream did not answer in time\n",
        )),
    }
}

/// The policy-version check: with `resource-server.policy-version`, versions come from
/// `security.redis` (feature `redis`); configured without a source, the gateway refuses to start
/// rather than silently not checking.
async fn policy_layer(security: &SecurityConfig) -> Result<PolicyVersionLayer, String> {
    let wanted = security
        .resource_server
        .as_ref()
        .is_some_and(|r| r.policy_version.is_some());
    if !wanted {
        return Ok(PolicyVersionLayer::disabled());
    }
    #[cfg(feature = "redis")]
    if security.redis.is_some() {
        let versions = security
            .redis_policy_versions()
            .await
            .map_err(|e| format!("security: {e}"))?;
        return Ok(security.policy_layer(std::sync::Arc::new(versions)));
    }
    Err(
        "security: `resource-server.policy-version` needs a policy-version source: add \
         `security.redis` (and build with the `redis` feature), or remove the key"
            .into(),
    )
}

/// The revocation check: with `resource-server.revocation` (`source: redis`), revocations come
/// from the issuer's keys in `security.redis` (feature `redis`); configured without a source,
/// the gateway refuses to start rather than silently not checking.
async fn revocation_layer(security: &SecurityConfig) -> Result<RevocationLayer, String> {
    let wanted = security
        .resource_server
        .as_ref()
        .is_some_and(|r| r.revocation.is_some());
    if !wanted {
        return Ok(RevocationLayer::disabled());
    }
    #[cfg(feature = "redis")]
    if security.redis.is_some() {
        let revocations = security
            .redis_revocations()
            .await
            .map_err(|e| format!("security: {e}"))?;
        return Ok(security.revocation_layer(std::sync::Arc::new(revocations)));
    }
    Err(
        "security: `resource-server.revocation` (source: redis) needs `security.redis` (and \
         the `redis` feature), or remove the key"
            .into(),
    )
}

/// Serves the gateway on `listener` until `shutdown` completes.
pub async fn run(
    cfg: GatewayConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let verifier = cfg
        .security
        .verifier()
        .map_err(|e| format!("security: {e}"))?;
    let rules = cfg
        .security
        .access_rules()
        .map_err(|e| format!("security: {e}"))?;
    let policy = policy_layer(&cfg.security).await?;
    let revocation = revocation_layer(&cfg.security).await?;
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let upstream = cfg.upstream.clone();
    let proxy =
        service_fn(move |req: Request<Incoming>| forward(client.clone(), upstream.clone(), req));
    let svc = SecurityLayer::new(verifier, rules)
        .with_policy(policy)
        .with_revocation(revocation)
        .gateway(SetIdentityHeadersLayer::new())
        .layer(proxy);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("accept failed: {e}");
                        continue;
                    }
                };
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(svc.clone()),
                );
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        eprintln!("connection error: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("in-flight requests did not finish within 10 s");
    }
    Ok(())
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => path = args.next(),
            "-h" | "--help" => {
                println!("usage: gateway --config <gateway.yaml>");
                return;
            }
            other => {
                eprintln!(
                    "error: unknown argument `{other}` (usage: gateway --config <gateway.yaml>)"
                );
                std::process::exit(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("error: --config <gateway.yaml> is required");
        std::process::exit(2);
    };
    let result = async {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let cfg = parse_config(&text)?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        println!("gateway listening on {} -> {}", cfg.listen, cfg.upstream);
        run(cfg, listener, signal()).await
    }
    .await;
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    println!("gateway stopped");
}
