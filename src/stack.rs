//! The one layer order, built by one helper:
//!
//! ```text
//! SetSensitiveHeaders(Authorization) → Trace → StripIdentityHeaders → JwtAuth (optional mode)
//!   → Revocation → PolicyVersion → Authorize → SetIdentityHeaders → service
//! ```
//!
//! - `Authorization` is marked sensitive before anything logs the request.
//! - Identity headers are stripped on every request before anything else looks at them, and
//!   set (gateway mode) only after authorization.
//! - `JwtAuth` runs in optional mode: a request without a token reaches `Authorize` as
//!   anonymous (401 where a rule needs a user); a present but bad token is 401 everywhere.
//! - The revocation and policy-version checks (both off unless configured) read the verified
//!   token, so they run after the verified-token cache: a cached token is still checked. A
//!   revoked token is refused before its policy version is looked at.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_bearer::authz::{AccessRules, Requirement, Rule};
//! use tower_bearer::jwks::{Algorithm, KeySet};
//! use tower_bearer::signing::SigningKey;
//! use tower_bearer::stack::SecurityLayer;
//! use tower_bearer::{IssuerConfig, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
//! # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
//! let verifier = Verifier::builder()
//!     .issuer(IssuerConfig::static_keys("https://auth.example", keys))
//!     .audience("orders")
//!     .build()
//!     .unwrap();
//! let rules = AccessRules::builder()
//!     .rule(Rule::new("/public/**", Requirement::PermitAll))
//!     .rule(Rule::new("/**", Requirement::Authenticated))
//!     .build()
//!     .unwrap();
//! let svc = SecurityLayer::new(verifier, rules).layer(service_fn(|_req: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(String::new()))
//! }));
//! let res = svc.clone().oneshot(Request::get("/public/x").body(String::new()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! let res = svc.oneshot(Request::get("/orders").body(String::new()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

use std::iter;

use http::HeaderName;
use http::header::AUTHORIZATION;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::sensitive_headers::{SetSensitiveRequestHeaders, SetSensitiveRequestHeadersLayer};
use tower_http::trace::{MakeSpan, Trace, TraceLayer};
use tower_layer::Layer;

use crate::authn::{DefaultRejection, JwtAuth, JwtAuthLayer};
use crate::authz::{AccessRules, Authorize, AuthorizeLayer};
use crate::gateway::{
    SetIdentityHeaders, SetIdentityHeadersLayer, StripIdentityHeaders, StripIdentityHeadersLayer,
};
use crate::policy::{PolicyVersion, PolicyVersionLayer};
use crate::revocation::{Revocation, RevocationLayer};
use crate::verify::Verifier;

/// All security layers in the one documented order. The layer is the builder.
///
/// # Example
///
/// ```
/// use tower_bearer::stack::SecurityLayer;
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|req: Request<String>| async move {
/// #     let id = req.headers().get("x-user-id").cloned().unwrap_or_else(|| "none".parse().unwrap());
/// #     Ok::<_, Infallible>(Response::builder().header("seen-user-id", id).body(String::new()).unwrap())
/// # });
/// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
/// # use tower_bearer::jwks::{Algorithm, KeySet};
/// # use tower_bearer::signing::SigningKey;
/// # use tower_bearer::{IssuerConfig, Verifier};
/// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
/// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
/// # let rules = AccessRules::builder().rule(Rule::new("/public/**", Requirement::PermitAll)).rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
///
/// let svc = SecurityLayer::new(verifier, rules).layer(ok);
/// assert_eq!(svc.clone().oneshot(get("/public/a")).await.unwrap().status(), StatusCode::OK);
/// assert_eq!(svc.oneshot(get("/orders")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct SecurityLayer {
    /// How every layer of the stack answers (realm, descriptions): the authentication
    /// layer's, so one setting covers 400, 401, 403 and 503 alike.
    rejection: DefaultRejection,
    strip: StripIdentityHeadersLayer,
    /// The headers the set layer manages (gateway mode), kept apart from `strip` so that a
    /// later [`SecurityLayer::with_strip`] cannot drop them; merged into the strip layer when
    /// the stack is built.
    managed: Vec<HeaderName>,
    jwt: JwtAuthLayer,
    revocation: RevocationLayer,
    policy: PolicyVersionLayer,
    authorize: AuthorizeLayer,
    set: SetIdentityHeadersLayer,
}

impl SecurityLayer {
    /// Verification with `verifier`, authorization with `rules`; identity headers stripped;
    /// no revocation or policy check; identity headers not set (see [`SecurityLayer::gateway`]).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::stack::SecurityLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|req: Request<String>| async move {
    /// #     let id = req.headers().get("x-user-id").cloned().unwrap_or_else(|| "none".parse().unwrap());
    /// #     Ok::<_, Infallible>(Response::builder().header("seen-user-id", id).body(String::new()).unwrap())
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    /// # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// # let token = key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "api", "sub": "alice", "exp": now + 60})).unwrap();
    /// # let rules = AccessRules::builder().rule(Rule::new("/public/**", Requirement::PermitAll)).rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
    ///
    /// let svc = SecurityLayer::new(verifier, rules).layer(ok);
    /// let mut req = get("/orders");
    /// req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    /// assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn new(verifier: Verifier, rules: AccessRules) -> Self {
        Self {
            rejection: DefaultRejection::default(),
            strip: StripIdentityHeadersLayer::new(),
            managed: Vec::new(),
            jwt: JwtAuthLayer::new(verifier).optional(true),
            revocation: RevocationLayer::disabled(),
            policy: PolicyVersionLayer::disabled(),
            authorize: AuthorizeLayer::new(rules),
            set: SetIdentityHeadersLayer::disabled(),
        }
    }
    /// Replaces the authentication layer (it is put in optional mode).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::stack::SecurityLayer;
    /// use tower_bearer::JwtAuthLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|req: Request<String>| async move {
    /// #     let id = req.headers().get("x-user-id").cloned().unwrap_or_else(|| "none".parse().unwrap());
    /// #     Ok::<_, Infallible>(Response::builder().header("seen-user-id", id).body(String::new()).unwrap())
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    /// # let rules = AccessRules::builder().rule(Rule::new("/public/**", Requirement::PermitAll)).rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
    ///
    /// let jwt = JwtAuthLayer::new(verifier.clone()).with_realm(Some("orders"));
    /// let svc = SecurityLayer::new(verifier, rules).with_jwt(jwt).layer(ok);
    /// let mut req = get("/orders");
    /// req.headers_mut().insert("authorization", "Bearer not-a-jwt".parse().unwrap());
    /// let res = svc.clone().oneshot(req).await.unwrap();
    /// assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"orders\", error=\"invalid_token\"");
    /// // The realm covers the whole stack: here the 401 comes from the authorization layer.
    /// let res = svc.oneshot(get("/orders")).await.unwrap();
    /// assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"orders\"");
    /// # }
    /// ```
    pub fn with_jwt(mut self, jwt: JwtAuthLayer) -> Self {
        self.rejection = jwt.inner.rejection.clone();
        self.jwt = jwt.optional(true);
        self
    }
    /// Replaces the strip layer (header names, hop-by-hop removal). In gateway mode the
    /// headers the set layer manages are still stripped, whichever order the two calls come in.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::gateway::StripIdentityHeadersLayer;
    /// use tower_bearer::stack::SecurityLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|req: Request<String>| async move {
    /// #     let id = req.headers().get("x-user-id").cloned().unwrap_or_else(|| "none".parse().unwrap());
    /// #     Ok::<_, Infallible>(Response::builder().header("seen-user-id", id).body(String::new()).unwrap())
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    /// # let rules = AccessRules::builder().rule(Rule::new("/public/**", Requirement::PermitAll)).rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
    ///
    /// let strip = StripIdentityHeadersLayer::new().with_hop_by_hop_removal(false);
    /// let svc = SecurityLayer::new(verifier, rules).with_strip(strip).layer(ok);
    /// let mut req = get("/public/a");
    /// req.headers_mut().insert("x-user-id", "admin".parse().unwrap());
    /// assert_eq!(svc.oneshot(req).await.unwrap().headers()["seen-user-id"], "none"); // still stripped
    /// # }
    /// ```
    pub fn with_strip(mut self, strip: StripIdentityHeadersLayer) -> Self {
        self.strip = strip;
        self
    }
    /// Adds the policy-version check.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
    /// use tower_bearer::stack::SecurityLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|req: Request<String>| async move {
    /// #     let id = req.headers().get("x-user-id").cloned().unwrap_or_else(|| "none".parse().unwrap());
    /// #     Ok::<_, Infallible>(Response::builder().header("seen-user-id", id).body(String::new()).unwrap())
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    /// # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// # let token = key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "api", "sub": "alice", "exp": now + 60})).unwrap();
    /// # let rules = AccessRules::builder().rule(Rule::new("/public/**", Requirement::PermitAll)).rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
    ///
    /// let versions = Arc::new(MemoryPolicyVersions::new());
    /// versions.set("alice", 1); // `alice` is known, the token has no `pv`: refused
    /// let svc = SecurityLayer::new(verifier, rules).with_policy(PolicyVersionLayer::new(versions)).layer(ok);
    /// let mut req = get("/orders");
    /// req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    /// assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    /// # }
    /// ```
    pub fn with_policy(mut self, policy: PolicyVersionLayer) -> Self {
        self.policy = policy;
        self
    }
    /// Adds the revocation check (right after authentication, before the policy-version check).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationLayer};
    /// use tower_bearer::stack::SecurityLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<String>| async move { Ok::<_, Infallible>(Response::new(String::new())) });
    /// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    /// # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// # let token = key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "api", "sub": "alice", "jti": "t-1", "exp": now + 60})).unwrap();
    /// # let rules = AccessRules::builder().rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
    ///
    /// let revocations = Arc::new(MemoryRevocations::new());
    /// revocations.revoke_jti("t-1"); // the token's `jti`
    /// let svc = SecurityLayer::new(verifier, rules)
    ///     .with_revocation(RevocationLayer::new(revocations))
    ///     .layer(ok);
    /// let mut req = get("/orders");
    /// req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    /// assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    /// # }
    /// ```
    pub fn with_revocation(mut self, revocation: RevocationLayer) -> Self {
        self.revocation = revocation;
        self
    }
    /// Replaces the authorization layer.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::authz::AuthorizeLayer;
    /// use tower_bearer::stack::SecurityLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|req: Request<String>| async move {
    /// #     let id = req.headers().get("x-user-id").cloned().unwrap_or_else(|| "none".parse().unwrap());
    /// #     Ok::<_, Infallible>(Response::builder().header("seen-user-id", id).body(String::new()).unwrap())
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    /// # let rules = AccessRules::builder().rule(Rule::new("/public/**", Requirement::PermitAll)).rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
    ///
    /// let open = AccessRules::builder().rule(Rule::new("/**", Requirement::PermitAll)).build().unwrap();
    /// let svc = SecurityLayer::new(verifier, rules).with_authorize(AuthorizeLayer::new(open)).layer(ok);
    /// assert_eq!(svc.oneshot(get("/orders")).await.unwrap().status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn with_authorize(mut self, authorize: AuthorizeLayer) -> Self {
        self.authorize = authorize;
        self
    }
    /// Gateway mode: set identity headers from the verified user for the upstream. Every
    /// header the set layer manages is added to the strip layer, so none can be spoofed.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::gateway::SetIdentityHeadersLayer;
    /// use tower_bearer::stack::SecurityLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|req: Request<String>| async move {
    /// #     let id = req.headers().get("x-user-id").cloned().unwrap_or_else(|| "none".parse().unwrap());
    /// #     Ok::<_, Infallible>(Response::builder().header("seen-user-id", id).body(String::new()).unwrap())
    /// # });
    /// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    /// # use tower_bearer::jwks::{Algorithm, KeySet};
    /// # use tower_bearer::signing::SigningKey;
    /// # use tower_bearer::{IssuerConfig, Verifier};
    /// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    /// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    /// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
    /// # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// # let token = key.sign(&serde_json::json!({"iss": "https://auth.example", "aud": "api", "sub": "alice", "exp": now + 60})).unwrap();
    /// # let rules = AccessRules::builder().rule(Rule::new("/public/**", Requirement::PermitAll)).rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
    ///
    /// let svc = SecurityLayer::new(verifier, rules).gateway(SetIdentityHeadersLayer::new()).layer(ok);
    /// let mut req = get("/orders");
    /// req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    /// req.headers_mut().insert("x-user-id", "admin".parse().unwrap());
    /// assert_eq!(svc.oneshot(req).await.unwrap().headers()["seen-user-id"], "alice"); // from the token
    /// # }
    /// ```
    pub fn gateway(mut self, set: SetIdentityHeadersLayer) -> Self {
        self.managed = set.managed_headers();
        self.set = set;
        self
    }
}

/// The request span: method and path only, never the query (it may hold `access_token`).
///
/// # Example
///
/// ```
/// use http::Request;
/// use tower_bearer::stack::PathOnlySpan;
/// use tower_http::trace::MakeSpan;
///
/// let req = Request::get("/orders?access_token=secret").body(()).unwrap();
/// let span = PathOnlySpan.make_span(&req);
/// assert!(!format!("{span:?}").contains("secret"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PathOnlySpan;

impl<B> MakeSpan<B> for PathOnlySpan {
    fn make_span(&mut self, req: &http::Request<B>) -> tracing::Span {
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), version = ?req.version())
    }
}

/// The service [`SecurityLayer`] builds.
///
/// # Example
///
/// ```
/// use tower_bearer::stack::{SecurityLayer, SecurityService};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # use tower_bearer::authz::{AccessRules, Requirement, Rule};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|req: Request<String>| async move {
/// #     let id = req.headers().get("x-user-id").map(|v| v.to_str().unwrap().to_owned());
/// #     Ok::<_, Infallible>(Response::new(id.unwrap_or_default()))
/// # });
/// # let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
/// # use tower_bearer::jwks::{Algorithm, KeySet};
/// # use tower_bearer::signing::SigningKey;
/// # use tower_bearer::{IssuerConfig, Verifier};
/// # let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// # let keys = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
/// # let verifier = Verifier::builder().issuer(IssuerConfig::static_keys("https://auth.example", keys)).audience("api").build().unwrap();
/// # let rules = AccessRules::builder().rule(Rule::new("/public/**", Requirement::PermitAll)).rule(Rule::new("/**", Requirement::Authenticated)).build().unwrap();
///
/// let svc: SecurityService<_> = SecurityLayer::new(verifier, rules).layer(ok);
/// assert_eq!(svc.oneshot(get("/public/a")).await.unwrap().status(), StatusCode::OK);
/// # }
/// ```
pub type SecurityService<S> = SetSensitiveRequestHeaders<
    Trace<
        StripIdentityHeaders<JwtAuth<Revocation<PolicyVersion<Authorize<SetIdentityHeaders<S>>>>>>,
        SharedClassifier<ServerErrorsAsFailures>,
        PathOnlySpan,
    >,
>;

impl<S> Layer<S> for SecurityLayer {
    type Service = SecurityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let r = &self.rejection;
        let svc = self.set.layer(inner);
        let svc = self.authorize.clone().with_rejection(r.clone()).layer(svc);
        let svc = self.policy.clone().with_rejection(r.clone()).layer(svc);
        let svc = self.revocation.clone().with_rejection(r.clone()).layer(svc);
        let svc = self.jwt.layer(svc);
        let svc = self
            .strip
            .clone()
            .with_extra_headers(self.managed.iter().cloned())
            .with_rejection(r.clone())
            .layer(svc);
        let svc = TraceLayer::new_for_http()
            .make_span_with(PathOnlySpan)
            .layer(svc);
        SetSensitiveRequestHeadersLayer::new(iter::once(AUTHORIZATION)).layer(svc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{Requirement, Rule};
    use crate::gateway::IdentityHeaders;
    use crate::jwks::{Algorithm, KeySet};
    use crate::signing::SigningKey;
    use crate::verify::IssuerConfig;
    use http::{HeaderName, Request, Response};
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[tokio::test]
    async fn gateway_mode_strips_every_header_the_set_layer_manages() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys =
            KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::static_keys("https://a", keys))
            .audience("x")
            .build()
            .unwrap();
        let rules = AccessRules::builder()
            .rule(Rule::new("/**", Requirement::PermitAll))
            .build()
            .unwrap();
        let custom = IdentityHeaders {
            user_id: HeaderName::from_static("x-auth-user"),
            ..IdentityHeaders::default()
        };
        let set = SetIdentityHeadersLayer::new()
            .with_headers(custom)
            .with_claims_header(HeaderName::from_static("x-verified-claims"));
        let svc = SecurityLayer::new(verifier, rules)
            .gateway(set)
            .layer(tower::service_fn(|req: Request<String>| async move {
                let seen: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
                let mut res = Response::new(String::new());
                res.headers_mut()
                    .insert("x-seen", seen.join(",").parse().unwrap());
                Ok::<_, Infallible>(res)
            }));
        let req = Request::get("/public")
            .header("X_Auth_User", "admin")
            .header("x-verified-claims", "eyJzdWIiOiJhZG1pbiJ9")
            .header("x.verified.claims", "eyJzdWIiOiJhZG1pbiJ9")
            .header("x-other", "kept")
            .body(String::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-seen"], "x-other");
    }

    #[tokio::test]
    async fn with_strip_after_gateway_keeps_the_managed_headers() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys =
            KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::static_keys("https://a", keys))
            .audience("x")
            .build()
            .unwrap();
        let rules = AccessRules::builder()
            .rule(Rule::new("/**", Requirement::PermitAll))
            .build()
            .unwrap();
        let custom = IdentityHeaders {
            user_id: HeaderName::from_static("x-auth-user"),
            ..IdentityHeaders::default()
        };
        let set = || {
            SetIdentityHeadersLayer::new()
                .with_headers(custom.clone())
                .with_claims_header(HeaderName::from_static("x-verified-claims"))
        };
        let strip = || StripIdentityHeadersLayer::new();
        let echo = || {
            tower::service_fn(|req: Request<String>| async move {
                let mut seen: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
                seen.sort();
                let mut res = Response::new(String::new());
                res.headers_mut()
                    .insert("x-seen", seen.join(",").parse().unwrap());
                Ok::<_, Infallible>(res)
            })
        };
        let base = SecurityLayer::new(verifier, rules);
        for layer in [
            base.clone().gateway(set()).with_strip(strip()),
            base.clone().with_strip(strip()).gateway(set()),
            base.gateway(set()),
        ] {
            let req = Request::get("/public")
                .header("x-auth-user", "admin")
                .header("X_Verified_Claims", "eyJzdWIiOiJhZG1pbiJ9")
                .header("x-user-id", "admin")
                .header("x-other", "kept")
                .body(String::new())
                .unwrap();
            let res = layer.layer(echo()).oneshot(req).await.unwrap();
            assert_eq!(res.headers()["x-seen"], "x-other", "{layer:?}");
            // The strip layer knows the custom names: `Connection` may not name them.
            for name in ["x-auth-user", "x-verified-claims"] {
                let req = Request::get("/public")
                    .header("connection", name)
                    .body(String::new())
                    .unwrap();
                let res = layer.layer(echo()).oneshot(req).await.unwrap();
                assert_eq!(res.status(), 400, "{name} {layer:?}");
            }
        }
    }

    #[tokio::test]
    async fn revocation_answers_with_the_stack_realm_and_sees_cached_tokens() {
        use crate::revocation::MemoryRevocations;
        use std::sync::Arc;
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys =
            KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::static_keys("https://a", keys))
            .audience("x")
            .build()
            .unwrap();
        let rules = AccessRules::builder()
            .rule(Rule::new("/**", Requirement::Authenticated))
            .build()
            .unwrap();
        let revocations = Arc::new(MemoryRevocations::new());
        let jwt = JwtAuthLayer::new(verifier.clone())
            .with_realm(Some("orders"))
            .with_error_description(true);
        let svc = SecurityLayer::new(verifier, rules)
            .with_jwt(jwt)
            .with_revocation(
                RevocationLayer::new(revocations.clone())
                    .with_max_staleness(std::time::Duration::ZERO),
            )
            .layer(tower::service_fn(|_req: Request<String>| async move {
                Ok::<_, Infallible>(Response::new(String::new()))
            }));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = key
            .sign(
                &serde_json::json!({"iss": "https://a", "aud": "x", "sub": "alice",
                                      "jti": "t-1", "sid": "fam-1", "exp": now + 60}),
            )
            .unwrap();
        let req = || {
            Request::get("/orders")
                .header("authorization", format!("Bearer {token}"))
                .body(String::new())
                .unwrap()
        };
        // Verified (and now in the verified-token cache).
        assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), 200);
        revocations.revoke_sid("fam-1");
        let res = svc.oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer realm=\"orders\", error=\"invalid_token\", error_description=\"token revoked\""
        );
    }
}
