//! Per-request cost of authorization path matching, over 100 realistic rules.
//!
//! - `check_canonical`: the canonical-path check alone (the baseline);
//! - `check_and_match_last_rule`: `check_canonical` + `first_match` for a path that only the
//!   last rule matches, after scanning every `/api/...` rule;
//! - `check_and_match_none`: the same for a path that no rule matches.
//!
//! Run with `cargo bench --bench authz`.

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use tower_bearer::__authz_bench::{ALL_METHODS, CompiledPatterns, check_canonical, method_bit};

const RESOURCES: [&str; 40] = [
    "accounts",
    "addresses",
    "audits",
    "baskets",
    "billing",
    "campaigns",
    "carts",
    "catalog",
    "categories",
    "comments",
    "contracts",
    "coupons",
    "customers",
    "deliveries",
    "devices",
    "discounts",
    "documents",
    "employees",
    "events",
    "exports",
    "favorites",
    "invoices",
    "items",
    "jobs",
    "ledgers",
    "messages",
    "notifications",
    "orders",
    "partners",
    "payments",
    "prices",
    "products",
    "profiles",
    "refunds",
    "reports",
    "returns",
    "reviews",
    "shipments",
    "subscriptions",
    "warehouses",
];

/// 100 rules in the style of a Spring Security configuration; the last one is
/// `/api/**/export` (GET).
fn rules() -> Vec<(String, u16)> {
    let get = method_bit(&Method::GET) | method_bit(&Method::HEAD);
    let write = method_bit(&Method::POST)
        | method_bit(&Method::PUT)
        | method_bit(&Method::PATCH)
        | method_bit(&Method::DELETE);
    let mut rules: Vec<(String, u16)> = [
        ("/public/**", ALL_METHODS),
        ("/.well-known/**", get),
        ("/favicon.ico", get),
        ("/login", method_bit(&Method::POST)),
        ("/logout", method_bit(&Method::POST)),
        ("/oauth2/callback", get),
        ("/actuator/health", get),
        ("/actuator/info", get),
        ("/actuator/**", ALL_METHODS),
        ("/internal/**", ALL_METHODS),
        ("/admin/users", get),
        ("/admin/users/{id}", get),
        ("/admin/users/{id}", write),
        ("/admin/{id}/audit", get),
        ("/admin/{id}/roles/*", write),
        ("/admin/**", ALL_METHODS),
        ("/static/**", get),
        ("/docs/**", get),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m))
    .collect();
    for res in RESOURCES {
        rules.push((format!("/api/v1/{res}/**"), get));
        rules.push((format!("/api/v1/{res}/**"), write));
    }
    rules.push(("/ws/**".to_owned(), get));
    rules.push(("/api/**/export".to_owned(), get));
    assert_eq!(rules.len(), 100);
    rules
}

fn benches(c: &mut Criterion) {
    let rules = rules();
    let compiled = CompiledPatterns::new(rules.iter().map(|(p, m)| (p.as_str(), *m))).unwrap();
    let get = method_bit(&Method::GET);
    let last = "/api/v1/zebras/4711/export";
    let none = "/api/v1/zebras/4711/details";
    assert_eq!(check_canonical(last), Ok(()));
    assert_eq!(compiled.first_match(last, get), Some(99));
    assert_eq!(compiled.first_match(none, get), None);

    let mut g = c.benchmark_group("authz");
    g.bench_function("check_canonical", |b| {
        b.iter(|| check_canonical(black_box(last)))
    });
    g.bench_function("check_and_match_last_rule", |b| {
        b.iter(|| {
            let path = black_box(last);
            check_canonical(path).ok()?;
            compiled.first_match(path, black_box(get))
        })
    });
    g.bench_function("check_and_match_none", |b| {
        b.iter(|| {
            let path = black_box(none);
            check_canonical(path).ok()?;
            compiled.first_match(path, black_box(get))
        })
    });
    // The public decision, requirement check included: `AccessRules::check` for a user token.
    let mut builder = tower_bearer::authz::AccessRules::builder();
    for (p, m) in &rules {
        let methods: Vec<Method> = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ]
        .into_iter()
        .filter(|x| method_bit(x) & m != 0)
        .collect();
        let mut rule = tower_bearer::authz::Rule::new(
            p.clone(),
            tower_bearer::authz::Requirement::AnyRole(vec!["user".into(), "admin".into()]),
        );
        if *m != ALL_METHODS {
            rule = rule.methods(methods);
        }
        builder = builder.rule(rule);
    }
    let access = builder.build().unwrap();
    let user = tower_bearer::CurrentUser::from_claims(
        serde_json::json!({"sub": "alice", "roles": ["user"], "scope": "a b"})
            .as_object()
            .unwrap()
            .clone(),
        &tower_bearer::claims::ClaimMapping::default().compile(),
    )
    .unwrap();
    assert!(access.check(&Method::GET, last, Some(&user)).is_ok());
    g.bench_function("access_rules_check_last_rule", |b| {
        b.iter(|| access.check(black_box(&Method::GET), black_box(last), Some(&user)))
    });
    g.finish();
}

criterion_group!(authz, benches);
criterion_main!(authz);
