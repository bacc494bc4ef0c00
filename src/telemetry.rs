//! Counters through the `metrics` facade (feature `metrics`); no-ops without it.

/// Increments counter `name` with static labels.
#[allow(unused_variables)]
pub(crate) fn counter(name: &'static str, labels: &[(&'static str, &'static str)]) {
    #[cfg(feature = "metrics")]
    {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::new(*k, *v))
            .collect();
        metrics::counter!(name, labels).increment(1);
    }
}

/// Counts and logs one rejection with its precise reason (never the token).
pub(crate) fn rejection(err: &crate::error::AuthError) {
    let reason = err.reason();
    tracing::debug!(reason, status = err.status().as_u16(), "request rejected");
    counter("tower_bearer_rejections_total", &[("reason", reason)]);
}
