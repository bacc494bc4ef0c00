//! `report parse-wrk` (wrk output on stdin → one TSV line) and
//! `report write RESULTS GATE OUT CONDITIONS` (the markdown report).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;

const LABELS: [(&str, &str); 8] = [
    ("noauth", "no auth (upper bound)"),
    ("floor", "hand-written floor (aws-lc key, iss/aud/exp)"),
    ("jsonwebtoken", "bare jsonwebtoken 11 (aws-lc)"),
    ("jwt_authorizer", "jwt-authorizer 0.15"),
    (
        "axum_jwt_auth",
        "axum-jwt-auth 0.7 (jsonwebtoken 10, rust_crypto)",
    ),
    ("tower_bearer", "tower-bearer, cache on"),
    ("tower_bearer_nocache", "tower-bearer, cache off"),
    (
        "ideal_cache",
        "(informational) ideal cache: hash map of pre-verified tokens",
    ),
];

fn label(c: &str) -> &str {
    LABELS.iter().find(|(k, _)| *k == c).map_or(c, |(_, l)| l)
}

fn micros(v: &str) -> f64 {
    let split = v
        .find(|ch: char| ch.is_ascii_alphabetic())
        .unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        _ => f64::NAN,
    }
}

fn parse_wrk() {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).unwrap();
    let (mut req, mut secs, mut rps, mut p50, mut p99, mut non2xx, mut errors) =
        (0u64, 0f64, 0f64, f64::NAN, f64::NAN, 0u64, 0u64);
    for line in s.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["50%", v] => p50 = micros(v),
            ["99%", v] => p99 = micros(v),
            [n, "requests", "in", t, ..] => {
                req = n.parse().unwrap_or(0);
                secs = t
                    .trim_end_matches(',')
                    .trim_end_matches('s')
                    .parse()
                    .unwrap_or(0.0);
            }
            ["Requests/sec:", v] => rps = v.parse().unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", n] => non2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                errors = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            _ => {}
        }
    }
    println!("{req}\t{secs}\t{rps}\t{p50}\t{p99}\t{non2xx}\t{errors}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[derive(Default)]
struct Agg {
    rps: Vec<f64>,
    cpu: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    bad: u64,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let cores = cpu.lines().filter(|l| l.starts_with("processor")).count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

fn write(results: &str, gate: &str, out: &str, conditions: &str) {
    let mut agg: BTreeMap<(String, String), Agg> = BTreeMap::new();
    let mut rounds = 0;
    for line in std::fs::read_to_string(results).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 12 {
            continue;
        }
        rounds = rounds.max(f[0].parse().unwrap_or(0));
        let ticks: f64 = f[3].parse().unwrap();
        let hz: f64 = f[4].parse().unwrap();
        let req: f64 = f[5].parse().unwrap();
        let a = agg.entry((f[1].to_owned(), f[2].to_owned())).or_default();
        a.rps.push(f[7].parse().unwrap());
        a.cpu.push(ticks / hz * 1e6 / req);
        a.p50.push(f[8].parse().unwrap());
        a.p99.push(f[9].parse().unwrap());
        a.bad += f[10].parse::<u64>().unwrap_or(0) + f[11].parse::<u64>().unwrap_or(0);
    }
    let med = |s: &str, c: &str| {
        agg.get(&(s.to_owned(), c.to_owned())).map(|a| {
            (
                median(a.rps.clone()),
                median(a.cpu.clone()),
                median(a.p50.clone()),
                median(a.p99.clone()),
                a.bad,
            )
        })
    };
    let mut md = String::new();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    writeln!(md, "# Benchmarks\n").unwrap();
    writeln!(
        md,
        "The last report of `benches/peers/run.sh` (the load benchmark against peers), written by \
         the script itself. Hot-path instruction counts: `benches/peers/callgrind.sh`; \
         criterion: `cargo bench --bench verify` / `--bench outbound`.\n"
    )
    .unwrap();
    writeln!(md, "## Conditions\n").unwrap();
    writeln!(md, "- Run: {date}; machine: {}.", machine()).unwrap();
    writeln!(
        md,
        "- Every server: axum 0.8 on tokio with **one worker thread**, `GET /hello` answering \
         `hello <sub>` from the claims; RS256-2048, one JWKS, the same tokens and (for the \
         contenders that deserialize claims) the same claims type."
    )
    .unwrap();
    writeln!(
        md,
        "- Load: `wrk -t1 -c16 --latency` on loopback; scenarios `one` (one token reused) and \
         `rotating` (1,000 valid tokens in turn, wrk Lua). Contenders run interleaved, in a \
         rotated order each round; the tables give the median over {rounds} rounds. Uncached \
         verification is `tower-bearer, cache off` against the floor (and the peers, none of which caches)."
    )
    .unwrap();
    writeln!(
        md,
        "- `(informational) ideal cache` is no peer and verifies nothing per request: the same \
         minimal layer as the floor, whose check looks the presented token up in a `HashMap` \
         of the valid tokens (verified once at start-up; exact full-token compare, std \
         SipHash) and checks `exp` against the clock, then ONE extension (`Arc<Claims>`) and \
         its extractor. It shows what any axum layer + extension + extractor costs here: the \
         share of tower-bearer's cache-hit cost over no auth that no cache can remove."
    )
    .unwrap();
    writeln!(
        md,
        "- Server CPU µs/request = (utime + stime of the server process from `/proc/<pid>/stat`, \
         over the run) / requests: more robust than req/s on a shared machine, since wrk and \
         other jobs compete for the same cores. With `pinned=1` (the default where `taskset` and \
         two CPUs exist) every server runs on CPU 1 and wrk on CPU 0."
    )
    .unwrap();
    writeln!(
        md,
        "- The machine is shared with other jobs: absolute numbers move from run to run; the \
         ratios within one run are what to compare. `{conditions}`.\n"
    )
    .unwrap();
    writeln!(md, "## Correctness gate (HTTP status per case: the valid token must pass, every other case be refused)\n").unwrap();
    let mut cases: Vec<String> = Vec::new();
    let mut gate_rows: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for line in std::fs::read_to_string(gate).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 3 || f[0] == "noauth" {
            continue;
        }
        if !cases.iter().any(|c| c == f[1]) {
            cases.push(f[1].to_owned());
        }
        gate_rows
            .entry(f[0].to_owned())
            .or_default()
            .insert(f[1].to_owned(), f[2].to_owned());
    }
    writeln!(md, "| contender | {} |", cases.join(" | ")).unwrap();
    writeln!(md, "|---|{}", "---|".repeat(cases.len())).unwrap();
    for (c, _) in LABELS.iter().filter(|(c, _)| gate_rows.contains_key(*c)) {
        let row = &gate_rows[*c];
        let cells: Vec<&str> = cases
            .iter()
            .map(|k| row.get(k).map_or("-", String::as_str))
            .collect();
        writeln!(md, "| {} | {} |", label(c), cells.join(" | ")).unwrap();
    }
    writeln!(md).unwrap();
    for (s, title) in [
        ("one", "One token reused"),
        ("rotating", "1,000 rotating tokens"),
    ] {
        writeln!(md, "## {title}\n").unwrap();
        writeln!(
            md,
            "| contender | req/s | × no auth | × floor | CPU µs/req | + µs over no auth | p50 µs | p99 µs |"
        )
        .unwrap();
        writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|").unwrap();
        let base = med(s, "noauth");
        let floor = med(s, "floor");
        for (c, _) in LABELS {
            let Some((rps, cpu, p50, p99, bad)) = med(s, c) else {
                continue;
            };
            let x = |b: Option<(f64, f64, f64, f64, u64)>| {
                b.map_or("-".to_owned(), |b| format!("{:.2}", rps / b.0))
            };
            let d = base.map_or("-".to_owned(), |b| format!("{:+.1}", cpu - b.1));
            let warn = if bad > 0 {
                format!(" ({bad} non-2xx/errors!)")
            } else {
                String::new()
            };
            writeln!(
                md,
                "| {}{warn} | {rps:.0} | {} | {} | {cpu:.1} | {d} | {p50:.0} | {p99:.0} |",
                label(c),
                x(base),
                x(floor)
            )
            .unwrap();
        }
        writeln!(md).unwrap();
    }
    std::fs::write(out, md).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("parse-wrk") => parse_wrk(),
        Some("write") => write(
            &args[2],
            &args[3],
            &args[4],
            args.get(5).map_or("", String::as_str),
        ),
        _ => {
            eprintln!("usage: report parse-wrk | report write RESULTS GATE OUT [CONDITIONS]");
            std::process::exit(2);
        }
    }
}
