//! Path canonicalization + rule matching: `AccessRules::check` for a fixed rule set on an
//! arbitrary method and path, for several users.
//!
//! Input: `sel method ' ' path`. `sel` picks the user (anonymous, a plain user, an admin, a
//! service token, a reports reader) and whether the path goes through `http::Uri` first (as
//! in the layer) or is passed as it is.
//!
//! Checked on every accepted request: the path is canonical by an independent definition (no
//! dot or empty segments, no encoded separators, dots, controls or `%`, no `;` `\`), and no
//! rule was stepped around (anonymous only on permit-all paths, `/admin/**` writes only for
//! admins, `/internal/**` only for the service token, `/reports/{id}/export` only with the
//! scope).
#![no_main]

use std::sync::OnceLock;

use http::Method;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tower_bearer::authz::{AccessRules, DefaultAction, InternalOnly, Requirement, Rule};
use tower_bearer::claims::{ClaimMapping, CurrentUser};

fn rules() -> &'static AccessRules {
    static R: OnceLock<AccessRules> = OnceLock::new();
    R.get_or_init(|| {
        AccessRules::builder()
            .internal_only(InternalOnly::new(["/internal/**"]))
            .rule(Rule::new("/public/**", Requirement::PermitAll))
            .rule(Rule::new("/health", Requirement::PermitAll).methods([Method::GET]))
            .rule(
                Rule::new("/admin/**", Requirement::AnyRole(vec!["admin".into()]))
                    .methods([Method::POST, Method::DELETE]),
            )
            .rule(Rule::new("/admin/**", Requirement::Authenticated))
            .rule(Rule::new(
                "/reports/{id}/export",
                Requirement::Scope("reports.read".into()),
            ))
            .rule(Rule::new(
                "/orders/*/items/**",
                Requirement::Role("orders".into()),
            ))
            .rule(Rule::new("/**", Requirement::Authenticated).methods([Method::GET, Method::HEAD]))
            .default_action(DefaultAction::Deny)
            .build()
            .expect("rules")
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Who {
    Anonymous,
    Plain,
    Admin,
    Service,
    Reader,
}

fn users() -> &'static [Option<CurrentUser>; 5] {
    static U: OnceLock<[Option<CurrentUser>; 5]> = OnceLock::new();
    U.get_or_init(|| {
        let mapping = ClaimMapping::default().compile();
        let user = |v: serde_json::Value| {
            Some(CurrentUser::from_claims(v.as_object().unwrap().clone(), &mapping).unwrap())
        };
        let base = |extra: serde_json::Value| {
            let mut v =
                json!({"iss": "https://auth.example", "aud": "orders", "exp": 4_000_000_000u64});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            user(v)
        };
        [
            None,
            base(
                json!({"sub": "alice", "uid": "alice", "roles": ["user"], "scope": "orders.read"}),
            ),
            base(json!({"sub": "root", "uid": "root", "roles": ["admin", "orders"]})),
            base(json!({"sub": "svc", "client_id": "svc", "scope": "internal-service"})),
            base(json!({"sub": "bob", "uid": "bob", "scope": "reports.read"})),
        ]
    })
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

fn from_hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// An independent definition of a canonical path (what the rules may match on).
fn assert_canonical(path: &str) {
    let b = path.as_bytes();
    assert_eq!(b.first(), Some(&b'/'), "accepted relative path {path:?}");
    assert!(
        b.iter()
            .all(|c| (0x21..=0x7e).contains(c) && !b";\\?#".contains(c)),
        "accepted raw invalid character in {path:?}"
    );
    let body = &path[1..];
    let segs: Vec<&str> = body.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i == segs.len() - 1;
        // An empty last segment is a trailing slash (or the root).
        assert!(
            !seg.is_empty() || last,
            "accepted empty segment in {path:?}"
        );
        let sb = seg.as_bytes();
        let mut decoded = Vec::new();
        let mut j = 0;
        while j < sb.len() {
            if sb[j] == b'%' {
                let hi = sb.get(j + 1).and_then(|c| from_hex(*c));
                let lo = sb.get(j + 2).and_then(|c| from_hex(*c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    panic!("accepted malformed escape in {path:?}");
                };
                let c = hi << 4 | lo;
                assert!(
                    !(c.is_ascii_alphanumeric() || b"-._~".contains(&c)),
                    "accepted encoded unreserved {c:#x} in {path:?}"
                );
                assert!(
                    !b"/\\%;".contains(&c) && !c.is_ascii_control(),
                    "accepted encoded {c:#x} in {path:?}"
                );
                decoded.push(c);
                j += 3;
            } else {
                decoded.push(sb[j]);
                j += 1;
            }
        }
        assert!(
            std::str::from_utf8(&decoded).is_ok(),
            "accepted invalid utf-8 in {path:?}"
        );
        assert!(
            decoded != b"." && decoded != b"..",
            "accepted dot segment in {path:?}"
        );
    }
}

fn check(method: &Method, path: &str, who: Who) {
    let user = users()[who as usize].as_ref();
    let result = rules().check(method, path, user);
    let Ok(()) = result else {
        return;
    };
    assert_canonical(path);
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    if who == Who::Anonymous {
        assert!(
            under(path, "/public") || (trimmed == "/health" && *method == Method::GET),
            "anonymous {method} {path:?} accepted"
        );
    }
    if who != Who::Admin && (*method == Method::POST || *method == Method::DELETE) {
        assert!(
            !under(path, "/admin"),
            "{method} {path:?} accepted without admin"
        );
    }
    if who != Who::Service {
        assert!(
            !under(path, "/internal"),
            "{path:?} accepted without a service token"
        );
    }
    if who != Who::Reader {
        let segs: Vec<&str> = trimmed.split('/').collect();
        assert!(
            !(segs.len() == 4 && segs[1] == "reports" && segs[3] == "export"),
            "{path:?} accepted without reports.read"
        );
    }
    if who != Who::Admin && who != Who::Anonymous {
        assert!(
            !(under(path, "/orders") && trimmed.split('/').nth(3) == Some("items")),
            "{path:?} accepted without the orders role"
        );
    }
    if *method != Method::GET && *method != Method::HEAD {
        // Only permit-all, internal and `/admin/**` cover other methods; the default denies.
        assert!(
            under(path, "/public")
                || under(path, "/admin")
                || under(path, "/internal")
                || under(path, "/reports")
                || under(path, "/orders"),
            "{method} {path:?} accepted by a GET-only rule"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let who = match sel % 5 {
        0 => Who::Anonymous,
        1 => Who::Plain,
        2 => Who::Admin,
        3 => Who::Service,
        _ => Who::Reader,
    };
    let (method, path) = match rest.iter().position(|b| *b == b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b"GET"[..], rest),
    };
    let Ok(method) = Method::from_bytes(method) else {
        return;
    };
    if sel & 0x80 == 0 {
        if let Ok(path) = std::str::from_utf8(path) {
            check(&method, path, who);
        }
    } else if let Ok(uri) = http::Uri::try_from(path) {
        check(&method, uri.path(), who);
    }
});
