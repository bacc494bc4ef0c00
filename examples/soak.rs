//! Soak run: the layer stack behind axum under a fixed request rate for a long time, every
//! answer checked against the status known in advance, the server's RSS sampled throughout.
//!
//! ```text
//! cargo run --release --example soak -- [SECONDS] [--rate N] [--users N] [--record docs/reliability.md]
//! ```
//! (`scripts/soak.sh [SECONDS]` does this.)
//!
//! - The **server** is this binary started again as a child process (`soak --server ...`), so
//!   its RSS (`/proc/<pid>/status` VmRSS) is its own: axum with `JwtAuthLayer` (verified-token
//!   cache on) → `PolicyVersionLayer` (in-memory versions for every user, 5 s staleness bound)
//!   → `AuthorizeLayer` (`/api/orders` needs scope `orders.read`, `/api/admin` role `admin`,
//!   everything else denied). Its JWKS comes over HTTP from a real JWKS endpoint in this
//!   process (`Cache-Control: max-age=60`, so the verifier refreshes it during the run).
//! - The **load** is an in-repo hyper client: request *i* is due at `start + i / rate`
//!   (open-loop schedule, 64 connections; a request whose turn comes while every connection is
//!   busy is sent late, and the rate actually held is reported). The first `1.3 × users`
//!   requests walk the users in order (every user's token and policy version enter the caches:
//!   the warm-up), then users are drawn at random. The mix, per request: 75 % valid token
//!   (200), 5 % valid token on the admin route (403), 5 % forged signature (401), 5 % expired
//!   (401), 5 % outdated policy version (401), 5 % no token (401).
//! - **Asserted**: 0 unexpected statuses and 0 transport errors; the RSS at the end within
//!   ±10 % of the first sample after warm-up (the user walk done and a quarter of the run gone) (samples every 10 s; every `SECONDS / 10` s for
//!   runs shorter than 100 s).

#[path = "support/reliability.rs"]
mod reliability;

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use reliability::{
    BoxError, Switch, cpu_ticks, date_utc, http_client, http_get, machine, now_unix, profile,
    quantile_ms, record_section, rss_kib, ticks_per_second,
};
use serde_json::json;
use tower_bearer::authz::{AccessRules, AuthorizeLayer, DefaultAction, Requirement, Rule};
use tower_bearer::jwks::{Algorithm, RemoteOptions};
use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
use tower_bearer::signing::SigningKey;
use tower_bearer::{IssuerConfig, JwtAuthLayer, Verifier};

const AUD: &str = "soak";
const CONNECTIONS: usize = 64;

/// The policy version of user `u` (both processes compute it).
fn version_of(u: usize) -> i64 {
    1 + (u % 3) as i64
}

fn user_id(u: usize) -> String {
    format!("u-{u}")
}

/// SplitMix64: a fixed pseudo-random stream, so a run is reproducible.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

struct Args {
    seconds: u64,
    rate: u64,
    users: usize,
    record: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Args, BoxError> {
    let mut out = Args {
        seconds: 600,
        rate: 5000,
        users: 100_000,
        record: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--rate" => out.rate = value()?.parse()?,
            "--users" => out.users = value()?.parse()?,
            "--record" => out.record = Some(PathBuf::from(value()?)),
            s => out.seconds = s.parse().map_err(|_| format!("unknown argument {s}"))?,
        }
    }
    if out.seconds < 10 || out.rate == 0 || out.users == 0 {
        return Err("SECONDS must be at least 10, --rate and --users positive".into());
    }
    Ok(out)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--server") {
        return server_main(&args[1..]);
    }
    let args = parse_args(&args)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(load_main(args))
}

// ---------------------------------------------------------------------------------------------
// The server process.

fn server_main(args: &[String]) -> Result<(), BoxError> {
    let [issuer, jwks_url, users] = args else {
        return Err("usage: soak --server ISSUER JWKS_URL USERS".into());
    };
    let users: usize = users.parse()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            let versions = Arc::new(MemoryPolicyVersions::new());
            for u in 0..users {
                versions.set(&user_id(u), version_of(u));
            }
            let verifier = Verifier::builder()
                .issuer(IssuerConfig::jwks_uri(issuer.clone(), jwks_url.clone()))
                .audience(AUD)
                .token_cache(2 * users + 10_000)
                .remote_options(RemoteOptions {
                    min_refresh_interval: Duration::from_secs(10),
                    ..RemoteOptions::default()
                })
                .build()?;
            let rules = AccessRules::builder()
                .rule(Rule::new(
                    "/api/orders",
                    Requirement::Scope("orders.read".into()),
                ))
                .rule(Rule::new("/api/admin", Requirement::Role("admin".into())))
                .default_action(DefaultAction::Deny)
                .build()?;
            let app = Router::new()
                .route("/api/orders", get(|| async { "orders" }))
                .route("/api/admin", get(|| async { "admin" }))
                .layer(AuthorizeLayer::new(rules))
                .layer(PolicyVersionLayer::new(versions))
                .layer(JwtAuthLayer::new(verifier));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("LISTEN {}", listener.local_addr()?);
            std::io::stdout().flush()?;
            // Ends when the parent closes our stdin (or dies).
            let eof = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                    line.clear();
                }
            });
            tokio::select! {
                r = axum::serve(listener, app) => r?,
                _ = eof => {}
            }
            Ok(())
        })
}

// ---------------------------------------------------------------------------------------------
// The load generator (and the JWKS endpoint).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Valid,
    Forbidden,
    Forged,
    Expired,
    StalePolicy,
    NoToken,
}

const KINDS: [Kind; 6] = [
    Kind::Valid,
    Kind::Forbidden,
    Kind::Forged,
    Kind::Expired,
    Kind::StalePolicy,
    Kind::NoToken,
];

impl Kind {
    fn of(i: u64) -> Self {
        match mix(i ^ 0x5EED) % 100 {
            0..75 => Self::Valid,
            75..80 => Self::Forbidden,
            80..85 => Self::Forged,
            85..90 => Self::Expired,
            90..95 => Self::StalePolicy,
            _ => Self::NoToken,
        }
    }
    fn expected(self) -> u16 {
        match self {
            Self::Valid => 200,
            Self::Forbidden => 403,
            _ => 401,
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

struct Tokens {
    valid: Vec<String>,
    expired: Vec<String>,
    stale: Vec<String>,
}

impl Tokens {
    fn generate(
        key: &SigningKey,
        issuer: &str,
        users: usize,
        seconds: u64,
    ) -> Result<Self, BoxError> {
        let now = now_unix();
        let claims = |u: usize, pv: i64, exp: u64| {
            json!({
                "iss": issuer, "aud": AUD, "sub": format!("user{u}"), "uid": user_id(u),
                "scope": "orders.read profile", "roles": ["user"], "pv": pv,
                "iat": now - 60, "exp": exp, "jti": format!("j-{u}-{pv}-{exp}"),
            })
        };
        let live = now + seconds + 3600;
        let valid = (0..users)
            .map(|u| key.sign(&claims(u, version_of(u), live)))
            .collect::<Result<Vec<_>, _>>()?;
        let side = (users / 20).clamp(100, 5000);
        let expired = (0..side)
            .map(|u| key.sign(&claims(u, version_of(u), now - 600)))
            .collect::<Result<Vec<_>, _>>()?;
        let stale = (0..side)
            .map(|u| key.sign(&claims(u, version_of(u) - 1, live)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            valid,
            expired,
            stale,
        })
    }
}

/// `a`'s header and payload with `b`'s signature: well-formed, signed by the trusted key, not
/// over this content.
fn forge(a: &str, b: &str) -> String {
    let head = &a[..a.rfind('.').unwrap_or(0)];
    let sig = &b[b.rfind('.').unwrap_or(0)..];
    format!("{head}{sig}")
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    late: AtomicU64,
    unexpected: AtomicU64,
    transport: AtomicU64,
    by_kind: [AtomicU64; 6],
}

struct Sample {
    at_s: u64,
    rss_kib: u64,
    requests: u64,
}

async fn load_main(args: Args) -> Result<(), BoxError> {
    let started_wall = now_unix();
    let machine = machine();
    println!(
        "soak: {} s at {} req/s, {} users; {machine}",
        args.seconds, args.rate, args.users
    );

    // The identity provider's JWKS endpoint (real HTTP).
    let key = SigningKey::generate(Algorithm::ES256)?;
    let jwks = key.jwks().to_string();
    let jwks_hits = Arc::new(AtomicU64::new(0));
    let hits = jwks_hits.clone();
    let idp = Switch::serve(Router::new().route(
        "/jwks",
        get(move || {
            hits.fetch_add(1, Ordering::Relaxed);
            let body = jwks.clone();
            async move {
                let mut h = HeaderMap::new();
                h.insert("cache-control", "max-age=60".parse().expect("static"));
                h.insert("content-type", "application/json".parse().expect("static"));
                (h, body).into_response()
            }
        }),
    ))
    .await?;
    let issuer = "https://auth.soak.test".to_owned();

    let t = Instant::now();
    let tokens = Arc::new(Tokens::generate(&key, &issuer, args.users, args.seconds)?);
    println!(
        "soak: {} tokens signed in {:?}",
        tokens.valid.len() + 2 * tokens.expired.len(),
        t.elapsed()
    );

    // The server process.
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--server", &issuer, &format!("{}/jwks", idp.base())])
        .arg(args.users.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("LISTEN ") {
                    break a.to_owned();
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the server process did not start".into());
            }
        }
    };
    let base = format!("http://{addr}");
    println!("soak: server pid {pid} on {base}");
    let result = drive(&args, pid, &base, tokens, &jwks_hits).await;
    drop(child.stdin.take()); // the server ends on EOF
    let _ = child.kill();
    let _ = child.wait();
    drop(idp);
    let report = result?;
    let text = format!(
        "Run of {}, {machine}; {} build.\n\n{}",
        date_utc(started_wall),
        profile(),
        report.markdown
    );
    println!("\n{text}");
    if let Some(path) = &args.record {
        record_section(path, "soak", &text)?;
        println!("soak: results written to {}", path.display());
    }
    if !report.failures.is_empty() {
        return Err(format!("soak FAILED: {}", report.failures.join("; ")).into());
    }
    println!("soak: PASS");
    Ok(())
}

struct Report {
    markdown: String,
    failures: Vec<String>,
}

async fn drive(
    args: &Args,
    pid: u32,
    base: &str,
    tokens: Arc<Tokens>,
    jwks_hits: &AtomicU64,
) -> Result<Report, BoxError> {
    let client = http_client();
    let orders = format!("{base}/api/orders");
    let admin = format!("{base}/api/admin");
    // The server answers before the load starts (its first JWKS fetch done).
    let probe = http_get(
        &client,
        &orders,
        Some(&tokens.valid[0]),
        Duration::from_secs(10),
    )
    .await?;
    if probe.status != 200 {
        return Err(format!("first request answered {}", probe.status).into());
    }

    let counts = Arc::new(Counts::default());
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let examples = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(args.seconds);
    let period_ns = 1_000_000_000 / args.rate;
    let warm_requests = (args.users as u64) * 13 / 10;
    let users = args.users as u64;

    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, orders, admin, tokens) = (
            client.clone(),
            orders.clone(),
            admin.clone(),
            tokens.clone(),
        );
        let (counts, latencies, examples, next, stop) = (
            counts.clone(),
            latencies.clone(),
            examples.clone(),
            next.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = start + Duration::from_nanos(i * period_ns);
                if due >= end || stop.load(Ordering::Relaxed) {
                    break;
                }
                let now = tokio::time::Instant::now();
                if now < due {
                    tokio::time::sleep_until(due).await;
                } else if now - due > Duration::from_millis(100) {
                    counts.late.fetch_add(1, Ordering::Relaxed);
                }
                let kind = Kind::of(i);
                let u = if i < warm_requests { i % users } else { mix(i) % users } as usize;
                let side = tokens.expired.len();
                let (url, token): (&str, Option<String>) = match kind {
                    Kind::Valid => (&orders, Some(tokens.valid[u].clone())),
                    Kind::Forbidden => (&admin, Some(tokens.valid[u].clone())),
                    Kind::Forged => (
                        &orders,
                        Some(forge(&tokens.valid[u], &tokens.valid[(u + 1) % tokens.valid.len()])),
                    ),
                    Kind::Expired => (&orders, Some(tokens.expired[u % side].clone())),
                    Kind::StalePolicy => (&orders, Some(tokens.stale[u % side].clone())),
                    Kind::NoToken => (&orders, None),
                };
                let sent = Instant::now();
                let res = http_get(&client, url, token.as_deref(), Duration::from_secs(10)).await;
                let took = sent.elapsed();
                counts.sent.fetch_add(1, Ordering::Relaxed);
                counts.by_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
                if i % 16 == 0 {
                    lat.push(took);
                }
                let problem = match res {
                    Err(e) => {
                        counts.transport.fetch_add(1, Ordering::Relaxed);
                        Some(format!("request {i} ({kind:?}): transport error {e}"))
                    }
                    Ok(r) => {
                        let challenge_ok = match (r.status, kind) {
                            (401, Kind::NoToken) => r
                                .www_authenticate
                                .as_deref()
                                .is_some_and(|h| h.starts_with("Bearer")),
                            (401, _) => r
                                .www_authenticate
                                .as_deref()
                                .is_some_and(|h| h.contains("error=\"invalid_token\"")),
                            (403, _) => r
                                .www_authenticate
                                .as_deref()
                                .is_some_and(|h| h.contains("error=\"insufficient_scope\"")),
                            _ => true,
                        };
                        if r.status != kind.expected() || !challenge_ok {
                            counts.unexpected.fetch_add(1, Ordering::Relaxed);
                            Some(format!(
                                "request {i} ({kind:?}, user {u}): {} (expected {}), www-authenticate {:?}",
                                r.status,
                                kind.expected(),
                                r.www_authenticate
                            ))
                        } else {
                            None
                        }
                    }
                };
                if let Some(p) = problem {
                    let mut ex = examples.lock().expect("not poisoned");
                    if ex.len() < 10 {
                        ex.push(p);
                    }
                }
            }
            latencies.lock().expect("not poisoned").extend(lat);
        }));
    }

    // RSS and CPU of the server, sampled on a fixed interval.
    let interval = if args.seconds >= 100 {
        10
    } else {
        (args.seconds / 10).max(1)
    };
    let tck = ticks_per_second();
    let cpu0 = cpu_ticks(pid).unwrap_or(0);
    let mut samples = vec![Sample {
        at_s: 0,
        rss_kib: rss_kib(pid).unwrap_or(0),
        requests: 0,
    }];
    let mut warm_at: Option<usize> = None;
    let mut tick = tokio::time::interval_at(
        start + Duration::from_secs(interval),
        Duration::from_secs(interval),
    );
    loop {
        let at = tick.tick().await;
        let sent = counts.sent.load(Ordering::Relaxed);
        let rss = rss_kib(pid).ok_or("the server process is gone")?;
        let at_s = (at - start).as_secs();
        samples.push(Sample {
            at_s,
            rss_kib: rss,
            requests: sent,
        });
        if warm_at.is_none() && sent >= warm_requests && at_s >= args.seconds / 4 {
            warm_at = Some(samples.len() - 1);
        }
        println!(
            "t={at_s:>4}s rss={:>7} KiB requests={sent:>9} unexpected={} transport={} late={}",
            rss,
            counts.unexpected.load(Ordering::Relaxed),
            counts.transport.load(Ordering::Relaxed),
            counts.late.load(Ordering::Relaxed),
        );
        if at + Duration::from_millis(1) >= end {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let cpu1 = cpu_ticks(pid).unwrap_or(cpu0);
    let elapsed = args.seconds as f64;

    let sent = counts.sent.load(Ordering::Relaxed);
    let unexpected = counts.unexpected.load(Ordering::Relaxed);
    let transport = counts.transport.load(Ordering::Relaxed);
    let late = counts.late.load(Ordering::Relaxed);
    let held = sent as f64 / elapsed;
    let cpu_us = (cpu1 - cpu0) as f64 / tck as f64 * 1e6 / sent.max(1) as f64;
    let mut lat = latencies.lock().expect("not poisoned").clone();
    lat.sort();

    let mut failures = Vec::new();
    if unexpected > 0 || transport > 0 {
        failures.push(format!(
            "{unexpected} unexpected statuses, {transport} transport errors: {:?}",
            examples.lock().expect("not poisoned")
        ));
    }
    let (warm_rss, end_rss, drift) = match warm_at {
        Some(w) if w + 1 < samples.len() => {
            let warm = samples[w].rss_kib as f64;
            let last = samples.last().map_or(0, |s| s.rss_kib) as f64;
            let drift = (last - warm) / warm * 100.0;
            if drift.abs() > 10.0 {
                failures.push(format!(
                    "RSS drifted {drift:+.1} % after warm-up ({warm} KiB at t={} s, {last} KiB at the end)",
                    samples[w].at_s
                ));
            }
            (warm, last, drift)
        }
        _ => {
            failures.push(format!(
                "the warm-up ({warm_requests} requests) did not end before the last RSS sample: \
                 {sent} requests sent; lower --users or run longer"
            ));
            (0.0, 0.0, 0.0)
        }
    };
    if jwks_hits.load(Ordering::Relaxed) == 0 {
        failures.push("the JWKS endpoint was never fetched".to_owned());
    }

    let mut md = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(md, "| setting | value |\n|---|---|");
    let _ = writeln!(md, "| duration | {} s |", args.seconds);
    let _ = writeln!(
        md,
        "| target rate | {} req/s (64 connections, one load generator on the same machine) |",
        args.rate
    );
    let _ = writeln!(
        md,
        "| rate held | {held:.0} req/s ({sent} requests; {late} sent more than 100 ms after their turn) |"
    );
    let _ = writeln!(
        md,
        "| users | {} distinct (tokens and policy versions) |",
        args.users
    );
    let mix = KINDS
        .iter()
        .map(|k| {
            format!(
                "{k:?} {}",
                counts.by_kind[k.index()].load(Ordering::Relaxed)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(md, "| mix (expected 200 / 403 / 401 ×4) | {mix} |");
    let _ = writeln!(
        md,
        "| unexpected statuses | **{unexpected}** (transport errors {transport}) |"
    );
    let _ = writeln!(
        md,
        "| latency p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        quantile_ms(&lat, 0.5),
        quantile_ms(&lat, 0.99),
        quantile_ms(&lat, 1.0)
    );
    let _ = writeln!(
        md,
        "| server CPU per request | {cpu_us:.1} µs (user + system, /proc/<pid>/stat) |"
    );
    let _ = writeln!(
        md,
        "| JWKS fetches by the server | {} |",
        jwks_hits.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        md,
        "| RSS after warm-up → end | {warm_rss:.0} KiB → {end_rss:.0} KiB (**{drift:+.1} %**, bound ±10 %) |"
    );
    let _ = writeln!(
        md,
        "\nRSS of the server process (VmRSS, KiB), sampled every {interval} s (warm-up ends at the first `*`):\n"
    );
    let _ = writeln!(md, "| t (s) | RSS (KiB) | requests |\n|---:|---:|---:|");
    for (n, s) in samples.iter().enumerate() {
        let mark = if Some(n) == warm_at { " *" } else { "" };
        let _ = writeln!(md, "| {}{mark} | {} | {} |", s.at_s, s.rss_kib, s.requests);
    }
    if !failures.is_empty() {
        let _ = writeln!(md, "\n**FAILED**: {}", failures.join("; "));
    }
    Ok(Report {
        markdown: md,
        failures,
    })
}
