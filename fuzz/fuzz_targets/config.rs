//! The YAML configuration: `SecurityConfig::from_yaml_with_env` on arbitrary text (with a
//! fixed variable lookup, so `${VAR}` expansion is exercised without the process
//! environment), then the builders that need no I/O (rules, claim mapping, service-token
//! rule, HTTP client settings, verifier builder).
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use tower_bearer::config::SecurityConfig;

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("s3cr3t".to_owned()),
        "PORT" => Some("6379".to_owned()),
        "BOOL" => Some("true".to_owned()),
        "NUM" => Some("30".to_owned()),
        "EMPTY" => Some(String::new()),
        "NESTED" => Some("${SECRET}".to_owned()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match SecurityConfig::from_yaml_with_env(yaml, env) {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = format!("{cfg:?}");
    if let Ok(rules) = cfg.access_rules() {
        for path in ["/", "/public/a", "/admin/x", "/internal/sync", "/a/../b"] {
            let _ = rules.check(&Method::GET, path, None);
            let _ = rules.check(&Method::POST, path, None);
        }
    }
    let _ = cfg.claim_mapping().compile();
    let _ = cfg.service_token_rule();
    let _ = cfg.http_client_config();
    let _ = cfg.verifier_builder();
});
