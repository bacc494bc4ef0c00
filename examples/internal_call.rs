//! Checks an outbound client configuration against a real authorization server: gets a service
//! token by `client_credentials` and sends GET requests to a URL with it injected.
//!
//! Run with
//! `cargo run --example internal_call -- --config client.yaml --url URL [--requests N] [--concurrency C]`.
//!
//! Reads `security.internal-token` (and `security.http-client`) from the YAML; the origin of
//! `--url` is added to the client's destinations. Sends N GETs (default 1), C at a time
//! (default 1), through a hyper client with `InjectBearerLayer`, and ends its output with one
//! line per HTTP status (`status 200: 498`) and the manager's own count of token requests
//! (`token requests: 1`). Every failure says what is wrong (unreachable token URL,
//! `invalid_client`, a bad YAML key); the exit code is 1 when any request failed to be sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};
use tower_bearer::config::SecurityConfig;
use tower_bearer::http_client::https_connector;
use tower_bearer::outbound::InjectBearerLayer;

/// Command-line options.
#[derive(Debug)]
pub struct Options {
    /// `--config`.
    pub config: String,
    /// `--url`.
    pub url: Uri,
    /// `--requests` (default 1).
    pub requests: usize,
    /// `--concurrency` (default 1).
    pub concurrency: usize,
}

const USAGE: &str =
    "usage: internal_call --config <client.yaml> --url <URL> [--requests N] [--concurrency C]";

/// Parses the command line.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut args = args.into_iter();
    let (mut config, mut url, mut requests, mut concurrency) = (None, None, 1usize, 1usize);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--config" => config = Some(value("--config")?),
            "--url" => url = Some(value("--url")?),
            "--requests" => {
                let v = value("--requests")?;
                requests = v
                    .parse()
                    .map_err(|_| format!("--requests `{v}` is not a number"))?;
            }
            "--concurrency" => {
                let v = value("--concurrency")?;
                concurrency = v
                    .parse()
                    .ok()
                    .filter(|c| *c > 0)
                    .ok_or(format!("--concurrency `{v}` is not a positive number"))?;
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let config = config.ok_or(format!("--config is required\n{USAGE}"))?;
    let url = url.ok_or(format!("--url is required\n{USAGE}"))?;
    let url: Uri = url
        .parse()
        .ok()
        .filter(|u: &Uri| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        .ok_or(format!("--url `{url}` is not an http(s) URL"))?;
    Ok(Options {
        config,
        url,
        requests,
        concurrency,
    })
}

/// What a run produced.
#[derive(Debug, Default)]
pub struct Report {
    /// Count per HTTP status.
    pub statuses: BTreeMap<u16, usize>,
    /// Count per error message (requests that could not be sent).
    pub errors: BTreeMap<String, usize>,
    /// Token requests the manager sent.
    pub token_requests: u64,
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

/// Runs the requests described by `opts` with the client configuration in `yaml`.
pub async fn run(opts: &Options, yaml: &str) -> Result<Report, String> {
    let cfg = SecurityConfig::from_yaml(yaml).map_err(|e| format!("config: {e}"))?;
    let origin = format!(
        "{}://{}",
        opts.url.scheme_str().unwrap_or("http"),
        opts.url.authority().map_or("", |a| a.as_str())
    );
    let mut first = true;
    let manager = cfg
        .token_manager_builder_with(|client| {
            if std::mem::take(&mut first) {
                client.with_destination(&origin)
            } else {
                Ok(client)
            }
        })
        .and_then(|b| b.build())
        .map_err(|e| format!("config: {e}"))?;
    let connector =
        https_connector(&cfg.http_client_config()).map_err(|e| format!("config: {e}"))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let svc = InjectBearerLayer::new(manager.clone()).layer(client);

    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let mut tasks = Vec::with_capacity(opts.requests);
    for _ in 0..opts.requests {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let svc = svc.clone();
        let url = opts.url.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let req = Request::get(url)
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            match svc.oneshot(req).await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    // Drain the body so the connection can be reused.
                    let _ = res.into_body().collect().await;
                    Ok(status)
                }
                Err(e) => Err(error_chain(e.as_ref())),
            }
        }));
    }
    let mut report = Report::default();
    for t in tasks {
        match t.await {
            Ok(Ok(status)) => *report.statuses.entry(status).or_default() += 1,
            Ok(Err(e)) => *report.errors.entry(e).or_default() += 1,
            Err(e) => {
                *report
                    .errors
                    .entry(format!("task failed: {e}"))
                    .or_default() += 1
            }
        }
    }
    report.token_requests = manager.stats().fetches;
    Ok(report)
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let yaml = match std::fs::read_to_string(&opts.config) {
        Ok(y) => y,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", opts.config);
            std::process::exit(2);
        }
    };
    let report = match run(&opts, &yaml).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    for (e, n) in &report.errors {
        println!("error ({n} requests): {e}");
    }
    for (status, n) in &report.statuses {
        println!("status {status}: {n}");
    }
    println!("token requests: {}", report.token_requests);
    if !report.errors.is_empty() {
        std::process::exit(1);
    }
}
