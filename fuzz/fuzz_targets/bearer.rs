//! Bearer extraction (RFC 6750 §2.1): `extract_bearer` on an `http::Request` built from
//! arbitrary `Authorization` header bytes and URI.
//!
//! Input: `sel uri \n header1 \n header2 ...`. `sel` bit 0 enables the `access_token` query
//! parameter, bits 1-2 choose a small token-size limit. Header values that `http` refuses are
//! dropped, as a server would never deliver them.
//!
//! Checked on every extracted token: non-empty, within the size limit, an RFC 6750
//! `b64token`, and taken verbatim from the single header or the single query parameter.
#![no_main]

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use tower_bearer::bearer::{extract_bearer, BearerOptions, DEFAULT_MAX_TOKEN_LEN};

fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.split(|b| *b == b'\n');
    let uri = lines.next().unwrap_or_default();
    let Ok(uri) = http::Uri::try_from(if uri.is_empty() { &b"/"[..] } else { uri }) else {
        return;
    };
    let mut builder = Request::builder().uri(uri);
    let mut values = Vec::new();
    for line in lines.take(4) {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            values.push(v.clone());
            builder = builder.header(AUTHORIZATION, v);
        }
    }
    let Ok(req) = builder.body(()) else {
        return;
    };
    let opts = BearerOptions {
        allow_query_parameter: sel & 1 == 1,
        max_token_len: match (sel >> 1) & 3 {
            0 => DEFAULT_MAX_TOKEN_LEN,
            1 => 16,
            2 => 1,
            _ => 0,
        },
    };
    match extract_bearer(req.headers(), req.uri(), &opts) {
        Ok(Some(token)) => {
            assert!(!token.is_empty(), "empty token");
            assert!(token.len() <= opts.max_token_len, "token over the limit");
            assert!(is_b64token(&token), "not a b64token: {token:?}");
            assert!(
                values.len() <= 1,
                "token with {} Authorization headers",
                values.len()
            );
            // The token came from the one `Authorization: Bearer` header, or else from the
            // query (another scheme in the header, e.g. `Basic`, is no bearer credential).
            let bearer_header = values.first().and_then(|v| v.to_str().ok()).filter(|v| {
                let scheme = v.split(' ').next().unwrap_or_default();
                scheme.eq_ignore_ascii_case("bearer")
            });
            match bearer_header {
                Some(v) => {
                    assert!(v.ends_with(&*token), "token not from the header");
                }
                None => {
                    assert!(opts.allow_query_parameter, "query token while disabled");
                    let query = req.uri().query().expect("a query");
                    assert_eq!(
                        query
                            .split('&')
                            .filter(|p| p.split('=').next() == Some("access_token"))
                            .count(),
                        1,
                        "query token with several access_token parameters"
                    );
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
