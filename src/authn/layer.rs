use std::fmt;
use std::sync::Arc;

use super::rejection::DefaultRejection;
use crate::bearer::BearerOptions;
use crate::verify::Verifier;

/// Applies [`JwtAuth`](super::JwtAuth) to a service. The layer is the builder.
///
/// See the [module docs](crate::authn) for an example.
#[must_use]
#[derive(Clone)]
pub struct JwtAuthLayer<R = DefaultRejection> {
    pub(crate) verifier: Verifier,
    pub(crate) bearer: Arc<BearerOptions>,
    pub(crate) optional: bool,
    pub(crate) rejection: R,
}

impl<R> fmt::Debug for JwtAuthLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("verifier", &self.verifier)
            .field("bearer", &self.bearer)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

impl JwtAuthLayer {
    /// A layer that answers 401 for every request without a valid token.
    pub fn new(verifier: Verifier) -> Self {
        let bearer = BearerOptions {
            max_token_len: verifier.max_token_len(),
            ..BearerOptions::default()
        };
        Self {
            verifier,
            bearer: Arc::new(bearer),
            optional: false,
            rejection: DefaultRejection::default(),
        }
    }

    /// The `realm` of challenges (default `api`; `None` omits it).
    pub fn with_realm(mut self, realm: Option<&str>) -> Self {
        self.rejection = self.rejection.with_realm(realm);
        self
    }

    /// Adds a terse `error_description` to challenges (off by default).
    pub fn with_error_description(mut self, describe: bool) -> Self {
        self.rejection = self.rejection.with_error_description(describe);
        self
    }

    /// Answer 401 `invalid_token` instead of 503 + `Retry-After` while keys are unavailable.
    pub fn with_keys_unavailable_as_401(mut self, yes: bool) -> Self {
        self.rejection = self.rejection.with_keys_unavailable_as_401(yes);
        self
    }
}

impl<R> JwtAuthLayer<R> {
    /// Optional mode: requests without credentials pass as
    /// [`Authentication::Anonymous`](crate::claims::Authentication::Anonymous); a present but
    /// bad token is still refused. Use with an authorization layer behind it.
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    /// Accept `?access_token=` (RFC 6750 §2.3; off by default).
    pub fn with_query_parameter(mut self, allow: bool) -> Self {
        Arc::make_mut(&mut self.bearer).allow_query_parameter = allow;
        self
    }

    /// Replaces how rejections become responses.
    pub fn with_rejection<R2>(self, rejection: R2) -> JwtAuthLayer<R2> {
        JwtAuthLayer {
            verifier: self.verifier,
            bearer: self.bearer,
            optional: self.optional,
            rejection,
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}
