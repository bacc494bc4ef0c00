//! Audit events of the authorization server: one `tracing` event on target
//! `tower_bearer::audit` and one counter per security-relevant action, never a secret, a
//! password or a token value.
//!
//! Every audit event has the fields `event` (what happened) and `kind` (the grant, the reason or
//! the action: a short fixed word), plus context (`client_id`, `uid`, `sid`, `jti`, `address`,
//! `admin`, ...). Each one also increments the counter [`METRIC`]
//! (`tower_bearer_audit_events_total{event, kind}`, feature `metrics`) and the in-process
//! counters the management API's `GET /oauth2/manage/stats` answers from
//! ([`AuthorizationServer::audit_counts`](crate::issuer::AuthorizationServer::audit_counts)).
//!
//! | `event` | `kind` | level |
//! |---|---|---|
//! | `token_issued` | the grant (`client_credentials`, `password`, `refresh_token`, `authorization_code`) | info |
//! | `client_auth_failed` | `unknown_client`, `wrong_secret`, `secret_expired`, `wrong_method`, `no_secret` | info |
//! | `login` / `login_failed` | `password` / `unknown_user`, `no_password`, `wrong_password`, `disabled`, `locked`, `address_locked`, `no_user_store` | info |
//! | `lockout` | `client`, `address`, `user`: a key reached the lock threshold | warn |
//! | `rate_limited` | `client`, `address`: a request refused while locked or backing off | info |
//! | `refresh_rotated` | `rotated` | info |
//! | `refresh_refused` | `malformed`, `not_found`, `expired`, `revoked`, `wrong_client`, `user_gone`, `user_disabled` | info |
//! | `refresh_reuse` | `reused`: the whole family revoked (possible theft) | warn |
//! | `revoked` / `revoke_refused` | `refresh_family`, `access_token` / `other_client` | info |
//! | `introspection` | `active`, `inactive`, `refused` (the caller's `client_id` logged) | info |
//! | `key_state` | `published`, `activated`, `removed` (the `kid`) | info |
//! | `admin_action` | `stats`, `get_authorization`, `revoke_authorization`, `revoke_user`, `revoke_client`, `cleanup` (the admin's `sub`) | info |
//! | `policy_version_bumped` | `bumped` | info |
//! | `password_rehashed` | `rehashed` | info |
//!
//! # Example
//!
//! ```
//! use tower_bearer::issuer::audit::{AuditCounts, METRIC, TARGET};
//! use tower_bearer::issuer::AuthorizationServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert_eq!(TARGET, "tower_bearer::audit");
//! assert_eq!(METRIC, "tower_bearer_audit_events_total");
//! let server = AuthorizationServer::builder("https://auth.example").build().await.unwrap();
//! let counts: AuditCounts = server.audit_counts();
//! assert_eq!(counts.get("token_issued", "client_credentials"), 0);
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::issuer::config::GrantType;

/// The `tracing` target of audit events.
///
/// # Example
///
/// ```
/// assert_eq!(tower_bearer::issuer::audit::TARGET, "tower_bearer::audit");
/// ```
pub const TARGET: &str = "tower_bearer::audit";

/// The counter incremented for every audit event (labels `event`, `kind`; feature `metrics`).
///
/// # Example
///
/// ```
/// assert!(tower_bearer::issuer::audit::METRIC.ends_with("_total"));
/// ```
pub const METRIC: &str = "tower_bearer_audit_events_total";

/// In-process audit counters (per server instance; replicas count their own).
#[derive(Debug, Default)]
pub(crate) struct AuditCounters {
    inner: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// `token_issued` per grant type ([`GrantType::ALL`]'s order): one atomic add per token
    /// (the event every successful token request records), no lock, no map search.
    issued: [AtomicU64; GrantType::ALL.len()],
}

impl AuditCounters {
    /// Counts one `token_issued` event of `grant`.
    pub(crate) fn token_issued(&self, grant: GrantType) {
        self.issued[grant as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, event: &'static str, kind: &'static str) {
        self.add_n(event, kind, 1);
    }

    /// Counts `n` events at once (nothing when `n` is 0: no entry is made).
    pub(crate) fn add_n(&self, event: &'static str, kind: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((event, kind)).or_default() += n;
    }

    pub(crate) fn snapshot(&self) -> AuditCounts {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((e, k), n) in m.iter() {
            out.entry((*e).to_owned())
                .or_default()
                .insert((*k).to_owned(), *n);
        }
        for (g, n) in GrantType::ALL.into_iter().zip(&self.issued) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                *out.entry(ISSUED.to_owned())
                    .or_default()
                    .entry(g.as_str().to_owned())
                    .or_default() += n;
            }
        }
        AuditCounts(out)
    }
}

/// A snapshot of the audit counters: event → kind → count.
///
/// # Example
///
/// See the [module docs](crate::issuer::audit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AuditCounts(BTreeMap<String, BTreeMap<String, u64>>);

impl AuditCounts {
    /// The count of `event` with `kind` (0 when never seen).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::audit::AuditCounts;
    ///
    /// assert_eq!(AuditCounts::default().get("lockout", "user"), 0);
    /// ```
    pub fn get(&self, event: &str, kind: &str) -> u64 {
        self.0
            .get(event)
            .and_then(|m| m.get(kind))
            .copied()
            .unwrap_or(0)
    }

    /// Every kind of `event` with its count.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::audit::AuditCounts;
    ///
    /// assert!(AuditCounts::default().event("token_issued").is_empty());
    /// ```
    pub fn event(&self, event: &str) -> BTreeMap<String, u64> {
        self.0.get(event).cloned().unwrap_or_default()
    }

    /// The sum over every kind of `event`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::issuer::audit::AuditCounts;
    ///
    /// assert_eq!(AuditCounts::default().total("revoked"), 0);
    /// ```
    pub fn total(&self, event: &str) -> u64 {
        self.0.get(event).map_or(0, |m| m.values().sum())
    }
}

/// Counts one event: the `metrics` counter and, when given, the server's counters.
pub(crate) fn record(counters: Option<&AuditCounters>, event: &'static str, kind: &'static str) {
    crate::telemetry::counter(METRIC, &[("event", event), ("kind", kind)]);
    if let Some(c) = counters {
        c.add(event, kind);
    }
}

/// The `token_issued` event's name.
pub(crate) const ISSUED: &str = "token_issued";

/// [`record`] for `token_issued` of `grant`: the counters' atomic for it.
pub(crate) fn record_issued(counters: &AuditCounters, grant: GrantType) {
    crate::telemetry::counter(METRIC, &[("event", ISSUED), ("kind", grant.as_str())]);
    counters.token_issued(grant);
}

/// `audit!(counters, level, "event", "kind"; fields..., "message")`: one tracing event on
/// [`TARGET`] with `event` and `kind`, and the counters.
macro_rules! audit {
    ($counters:expr, $level:ident, $event:literal, $kind:expr; $($rest:tt)+) => {{
        let kind: &'static str = $kind;
        ::tracing::$level!(target: "tower_bearer::audit", event = $event, kind, $($rest)+);
        $crate::issuer::audit::record($counters, $event, kind);
    }};
}
pub(crate) use audit;
