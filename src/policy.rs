//! Policy-version freshness: refuse tokens minted before the user's permissions changed.
//!
//! Each user has a current policy version (the `pv` the issuer puts into new tokens). When an
//! administrator changes a user's roles, the version is bumped, and every token carrying an older
//! `pv` is refused with 401 `invalid_token` ("policy version outdated, refresh the token") even
//! though it has not expired. A token without `pv` for a user the source knows is refused; an
//! unknown user is not checked, nor a service token under a claim rule (the default
//! `gty: client-credentials`, see [`ServiceTokenRule`]); under
//! [`ServiceTokenRule::SubjectIsClient`] every token is checked, since a user token can meet
//! that rule. The user is [`CurrentUser::user_id`], which carries the issuer prefix when several
//! issuers are configured.
//!
//! Versions come from a [`PolicyVersions`] source (in memory here; Redis with the `redis`
//! feature), cached locally for at most `max_staleness` (default 5 s) in a concurrent cache
//! (quick_cache: sharded, bounded, no global lock; concurrent misses for one user share one
//! source lookup). If the source cannot be
//! reached and the cached answer is older than that bound, requests fail closed (503).
//! [`PolicyVersionLayer`] goes after `JwtAuth` (it reads the verified user, so it runs after the
//! verified-token cache).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
//!
//! let versions = Arc::new(MemoryPolicyVersions::new());
//! versions.set("u-1", 3);
//! assert_eq!(versions.bump("u-1"), 4);
//! let layer = PolicyVersionLayer::new(versions.clone());
//! # let _ = layer;
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::authn::DefaultRejection;
use crate::cached_check::{self, Core, Prepared, Settings};
use crate::claims::{Authentication, CurrentUser, ServiceTokenRule};
use crate::error::{AuthError, BoxError, TokenError};
use crate::http_client::BoxFuture;

/// Where current policy versions come from.
///
/// # Example
///
/// ```
/// use tower_bearer::error::BoxError;
/// use tower_bearer::http_client::BoxFuture;
/// use tower_bearer::policy::PolicyVersions;
///
/// #[derive(Debug)]
/// struct Everyone(i64);
/// impl PolicyVersions for Everyone {
///     fn current(&self, _user_id: &str) -> BoxFuture<'static, Result<Option<i64>, BoxError>> {
///         let v = self.0;
///         Box::pin(async move { Ok(Some(v)) })
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(Everyone(7).current("u-1").await.unwrap(), Some(7));
/// # }
/// ```
pub trait PolicyVersions: Send + Sync + fmt::Debug + 'static {
    /// The current version for `user_id`, or `None` when the user is unknown.
    fn current(&self, user_id: &str) -> BoxFuture<'static, Result<Option<i64>, BoxError>>;
}

/// In-process policy versions (tests, single replica, or fed by your own admin events).
///
/// # Example
///
/// ```
/// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersions};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
///
/// let versions = MemoryPolicyVersions::new();
/// versions.set("u-1", 2);
/// assert_eq!(versions.current("u-1").await.unwrap(), Some(2));
/// assert_eq!(versions.current("u-2").await.unwrap(), None);
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryPolicyVersions {
    map: RwLock<HashMap<String, i64>>,
}

impl MemoryPolicyVersions {
    /// An empty source: every user unknown.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// assert_eq!(MemoryPolicyVersions::new().current("anyone").await.unwrap(), None);
    /// # }
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets a user's version.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// let versions = MemoryPolicyVersions::new();
    /// versions.set("u-1", 5);
    /// assert_eq!(versions.current("u-1").await.unwrap(), Some(5));
    /// # }
    /// ```
    pub fn set(&self, user_id: &str, version: i64) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user_id.to_owned(), version);
    }
    /// Increments a user's version (from 0 when unknown) and returns the new one.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::policy::MemoryPolicyVersions;
    ///
    /// let versions = MemoryPolicyVersions::new();
    /// assert_eq!(versions.bump("u-1"), 1);
    /// versions.set("u-1", 9);
    /// assert_eq!(versions.bump("u-1"), 10);
    /// ```
    pub fn bump(&self, user_id: &str) -> i64 {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let v = map.entry(user_id.to_owned()).or_insert(0);
        *v += 1;
        *v
    }
    /// Forgets a user.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// let versions = MemoryPolicyVersions::new();
    /// versions.set("u-1", 5);
    /// versions.remove("u-1");
    /// assert_eq!(versions.current("u-1").await.unwrap(), None);
    /// # }
    /// ```
    pub fn remove(&self, user_id: &str) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user_id);
    }
}

impl PolicyVersions for MemoryPolicyVersions {
    fn current(&self, user_id: &str) -> BoxFuture<'static, Result<Option<i64>, BoxError>> {
        let v = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
            .copied();
        Box::pin(async move { Ok(v) })
    }
}

/// The policy check's source and its layer-specific setting.
#[derive(Clone)]
struct Source {
    versions: Arc<dyn PolicyVersions>,
    service_token: ServiceTokenRule,
}

impl Source {
    /// Whether a token is not checked: a service token under a claim rule. The
    /// `sub == client_id` rule is met by user tokens wherever users choose their `sub`, so
    /// under it every token is checked (a client id the source does not know passes).
    fn skips(&self, user: &CurrentUser) -> bool {
        let rule = &self.service_token;
        !matches!(rule, ServiceTokenRule::SubjectIsClient) && rule.matches(user)
    }
}

impl cached_check::Source for Source {
    /// The current version (`None`: unknown user).
    type Answer = Option<i64>;
    type Subject = CurrentUser;
    type Error = BoxError;
    const LAYER: &'static str = "PolicyVersionLayer";
    const WHAT: &'static str = "policy version";
    const FAILURES: &'static str = "tower_bearer_policy_source_failures_total";

    fn unavailable() -> AuthError {
        AuthError::PolicyUnavailable
    }

    fn prepare(&self, extensions: &http::Extensions) -> Prepared<CurrentUser> {
        match extensions.get::<Authentication>() {
            Some(Authentication::User(u)) if !self.skips(u) => match u.user_id() {
                Some(key) => Prepared::Check {
                    key: key.to_owned(),
                    subject: u.clone(),
                },
                None => Prepared::Skip,
            },
            _ => Prepared::Skip,
        }
    }

    fn lookup(
        &self,
        key: &str,
        _user: &CurrentUser,
    ) -> BoxFuture<'static, Result<Option<i64>, BoxError>> {
        self.versions.current(key)
    }

    fn decide(user: &CurrentUser, current: Option<i64>) -> Result<(), AuthError> {
        decide(user, current)
    }

    fn fmt_fields(settings: &Settings<Self>, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("source", &settings.source.versions)
            .field("max_staleness", &settings.max_staleness);
    }
}

/// Compares the token's `pv` with the current version.
fn decide(user: &CurrentUser, current: Option<i64>) -> Result<(), AuthError> {
    match (current, user.policy_version()) {
        (None, _) => Ok(()),
        (Some(cur), Some(pv)) if pv >= cur => Ok(()),
        _ => Err(AuthError::InvalidToken(TokenError::PolicyVersionStale)),
    }
}

/// Refuses tokens with an outdated `pv`. See the [module docs](crate::policy).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
/// # let req = |pv: i64| {
/// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "uid": "u-1", "pv": pv, "exp": 2000000000, "aud": "api"});
/// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
/// #     let mut r = Request::get("/").body(()).unwrap();
/// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
/// #     r
/// # };
///
/// let versions = Arc::new(MemoryPolicyVersions::new());
/// versions.set("u-1", 3);
/// let svc = PolicyVersionLayer::new(versions).layer(ok);
/// assert_eq!(svc.clone().oneshot(req(3)).await.unwrap().status(), StatusCode::OK);
/// assert_eq!(svc.oneshot(req(2)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
#[must_use]
#[derive(Clone)]
pub struct PolicyVersionLayer<R = DefaultRejection> {
    core: Core<Source, R>,
}

impl PolicyVersionLayer {
    /// Checks against `source` with a 5 s staleness bound.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let req = |pv: i64| {
    /// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "uid": "u-1", "pv": pv, "exp": 2000000000, "aud": "api"});
    /// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    /// #     let mut r = Request::get("/").body(()).unwrap();
    /// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
    /// #     r
    /// # };
    ///
    /// let versions = Arc::new(MemoryPolicyVersions::new());
    /// versions.set("u-1", 4);
    /// let svc = PolicyVersionLayer::new(versions).layer(ok);
    /// assert_eq!(svc.oneshot(req(3)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    /// # }
    /// ```
    pub fn new(source: Arc<dyn PolicyVersions>) -> Self {
        let source = Source {
            versions: source,
            service_token: ServiceTokenRule::default(),
        };
        Self {
            core: Core::new(Settings::new(source), DefaultRejection::default()),
        }
    }

    /// A layer that checks nothing (used where the policy check is not configured).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::policy::PolicyVersionLayer;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let req = |pv: i64| {
    /// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "uid": "u-1", "pv": pv, "exp": 2000000000, "aud": "api"});
    /// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    /// #     let mut r = Request::get("/").body(()).unwrap();
    /// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
    /// #     r
    /// # };
    ///
    /// let svc = PolicyVersionLayer::disabled().layer(ok);
    /// assert_eq!(svc.oneshot(req(0)).await.unwrap().status(), StatusCode::OK);
    /// # }
    /// ```
    pub fn disabled() -> Self {
        Self {
            core: Core::disabled(DefaultRejection::default()),
        }
    }
}

impl<R> PolicyVersionLayer<R> {
    /// Which tokens are service tokens (never checked).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::claims::ServiceTokenRule;
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let req = |pv: i64| {
    /// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "uid": "u-1", "pv": pv, "exp": 2000000000, "aud": "api"});
    /// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    /// #     let mut r = Request::get("/").body(()).unwrap();
    /// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
    /// #     r
    /// # };
    ///
    /// let versions = Arc::new(MemoryPolicyVersions::new());
    /// versions.set("u-1", 9);
    /// let rule = ServiceTokenRule::Claim { name: "sub".into(), value: "alice".into() };
    /// let svc = PolicyVersionLayer::new(versions).with_service_token_rule(rule).layer(ok);
    /// assert_eq!(svc.oneshot(req(1)).await.unwrap().status(), StatusCode::OK); // a service token: not checked
    /// # }
    /// ```
    ///
    /// On a [disabled](PolicyVersionLayer::disabled) layer this does nothing.
    pub fn with_service_token_rule(self, rule: ServiceTokenRule) -> Self {
        self.update(|s| s.source.service_token = rule)
    }
}

/// The service of [`PolicyVersionLayer`].
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersion, PolicyVersionLayer};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
/// # let req = |pv: i64| {
/// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "uid": "u-1", "pv": pv, "exp": 2000000000, "aud": "api"});
/// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
/// #     let mut r = Request::get("/").body(()).unwrap();
/// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
/// #     r
/// # };
///
/// let versions = Arc::new(MemoryPolicyVersions::new());
/// versions.set("u-1", 1);
/// let svc: PolicyVersion<_> = PolicyVersionLayer::new(versions).layer(ok);
/// assert_eq!(svc.oneshot(req(1)).await.unwrap().status(), StatusCode::OK);
/// # }
/// ```
#[derive(Clone)]
pub struct PolicyVersion<S, R = DefaultRejection> {
    inner: S,
    layer: PolicyVersionLayer<R>,
}

cached_check::cached_check_layer! {
    PolicyVersionLayer => PolicyVersion, Source;
    /// How long a looked-up version may be used (`policy-version.max-staleness-seconds`).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let req = |pv: i64| {
    /// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "uid": "u-1", "pv": pv, "exp": 2000000000, "aud": "api"});
    /// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    /// #     let mut r = Request::get("/").body(()).unwrap();
    /// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
    /// #     r
    /// # };
    ///
    /// let versions = Arc::new(MemoryPolicyVersions::new());
    /// versions.set("u-1", 1);
    /// let svc = PolicyVersionLayer::new(versions.clone()).with_max_staleness(Duration::ZERO).layer(ok);
    /// assert_eq!(svc.clone().oneshot(req(1)).await.unwrap().status(), StatusCode::OK);
    /// versions.bump("u-1"); // seen at once: nothing is cached
    /// assert_eq!(svc.oneshot(req(1)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    /// # }
    /// ```
    ///
    /// On a [disabled](PolicyVersionLayer::disabled) layer this does nothing.
    fn with_max_staleness;
    /// Timeout of one lookup (default 2 s).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let req = |pv: i64| {
    /// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "uid": "u-1", "pv": pv, "exp": 2000000000, "aud": "api"});
    /// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    /// #     let mut r = Request::get("/").body(()).unwrap();
    /// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
    /// #     r
    /// # };
    ///
    /// let versions = Arc::new(MemoryPolicyVersions::new());
    /// let layer = PolicyVersionLayer::new(versions).with_lookup_timeout(Duration::from_millis(500));
    /// assert_eq!(layer.layer(ok).oneshot(req(1)).await.unwrap().status(), StatusCode::OK); // unknown user
    /// # }
    /// ```
    ///
    /// On a [disabled](PolicyVersionLayer::disabled) layer this does nothing.
    fn with_lookup_timeout;
    /// Replaces how rejections become responses.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersionLayer};
    /// use tower_bearer::AuthError;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let req = |pv: i64| {
    /// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "uid": "u-1", "pv": pv, "exp": 2000000000, "aud": "api"});
    /// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    /// #     let mut r = Request::get("/").body(()).unwrap();
    /// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
    /// #     r
    /// # };
    ///
    /// let versions = Arc::new(MemoryPolicyVersions::new());
    /// versions.set("u-1", 2);
    /// let plain = |_e: &AuthError, _grpc: bool| Response::builder().status(StatusCode::CONFLICT).body(()).unwrap();
    /// let svc = PolicyVersionLayer::new(versions).with_rejection(plain).layer(ok);
    /// assert_eq!(svc.oneshot(req(1)).await.unwrap().status(), StatusCode::CONFLICT);
    /// # }
    /// ```
    fn with_rejection;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimMapping;
    use http::{Request, Response};
    use std::time::Duration;

    fn user(v: serde_json::Value) -> CurrentUser {
        CurrentUser::from_claims(
            v.as_object().unwrap().clone(),
            &ClaimMapping::default().compile(),
        )
        .unwrap()
    }

    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, ServiceExt};

    /// Counts lookups; each takes 50 ms.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        version: i64,
    }

    impl PolicyVersions for Counting {
        fn current(&self, _user_id: &str) -> BoxFuture<'static, Result<Option<i64>, BoxError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let v = self.version;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Some(v))
            })
        }
    }

    fn request(u: &CurrentUser) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(Authentication::User(u.clone()));
        r
    }

    fn ok_service() -> impl tower_service::Service<
        Request<()>,
        Response = Response<()>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_user_share_one_lookup() {
        let calls = Arc::new(AtomicUsize::new(0));
        let source = Arc::new(Counting {
            calls: calls.clone(),
            version: 3,
        });
        let svc = PolicyVersionLayer::new(source).layer(ok_service());
        let alice = user(serde_json::json!({"sub": "alice", "uid": "u-1", "pv": 3}));
        let stale = user(serde_json::json!({"sub": "alice", "uid": "u-1", "pv": 2}));
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let svc = svc.clone();
                let u = if i % 10 == 0 {
                    stale.clone()
                } else {
                    alice.clone()
                };
                tokio::spawn(async move { svc.oneshot(request(&u)).await.unwrap().status() })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap() == http::StatusCode::OK {
                ok += 1;
            }
        }
        assert_eq!(ok, 90, "the 10 stale tokens are refused, the rest pass");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one source lookup for one user"
        );
        // Another user: one more lookup.
        let bob = user(serde_json::json!({"sub": "bob", "uid": "u-2", "pv": 3}));
        assert_eq!(
            svc.clone().oneshot(request(&bob)).await.unwrap().status(),
            http::StatusCode::OK
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// Regression: the cached answer's age counted from the end of the lookup, so a slow
    /// source stretched the staleness bound by the lookup's duration (up to the lookup
    /// timeout). It counts from the start now.
    #[tokio::test]
    async fn staleness_counts_from_the_start_of_a_slow_lookup() {
        #[derive(Debug)]
        struct Slow(Arc<AtomicUsize>);
        impl PolicyVersions for Slow {
            fn current(&self, _: &str) -> BoxFuture<'static, Result<Option<i64>, BoxError>> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(Some(3))
                })
            }
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = PolicyVersionLayer::new(Arc::new(Slow(calls.clone())))
            .with_max_staleness(Duration::from_millis(500))
            .layer(ok_service());
        let alice = user(serde_json::json!({"sub": "alice", "uid": "u-1", "pv": 3}));
        assert_eq!(
            svc.clone().oneshot(request(&alice)).await.unwrap().status(),
            http::StatusCode::OK
        );
        // 300 ms after the answer came, at least 600 ms after it was asked for: past the bound.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            svc.clone().oneshot(request(&alice)).await.unwrap().status(),
            http::StatusCode::OK
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "an answer older than the bound (counted from its lookup's start) is looked up again"
        );
    }

    #[tokio::test]
    async fn a_failed_lookup_is_not_cached_and_fails_closed() {
        #[derive(Debug)]
        struct Down(Arc<AtomicUsize>);
        impl PolicyVersions for Down {
            fn current(&self, _: &str) -> BoxFuture<'static, Result<Option<i64>, BoxError>> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Err("down".into()) })
            }
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = PolicyVersionLayer::new(Arc::new(Down(calls.clone()))).layer(ok_service());
        let alice = user(serde_json::json!({"sub": "alice", "uid": "u-1", "pv": 3}));
        for _ in 0..2 {
            assert_eq!(
                svc.clone().oneshot(request(&alice)).await.unwrap().status(),
                http::StatusCode::SERVICE_UNAVAILABLE
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn settings_on_a_disabled_or_cloned_layer_never_panic() {
        let disabled = PolicyVersionLayer::disabled()
            .with_max_staleness(Duration::from_secs(1))
            .with_lookup_timeout(Duration::from_secs(1))
            .with_service_token_rule(ServiceTokenRule::SubjectIsClient);
        assert_eq!(format!("{disabled:?}"), "PolicyVersionLayer(disabled)");
        let versions = Arc::new(MemoryPolicyVersions::new());
        versions.set("u-1", 5);
        let layer = PolicyVersionLayer::new(versions.clone());
        let _kept = layer.clone();
        // Configured after a clone: this copy gets its own checker.
        let svc = layer.with_max_staleness(Duration::ZERO).layer(ok_service());
        let alice = user(serde_json::json!({"sub": "alice", "uid": "u-1", "pv": 5}));
        assert_eq!(
            svc.clone().oneshot(request(&alice)).await.unwrap().status(),
            http::StatusCode::OK
        );
        versions.bump("u-1");
        assert_eq!(
            svc.oneshot(request(&alice)).await.unwrap().status(),
            http::StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn the_sub_equals_client_id_rule_never_skips_the_check() {
        let versions = Arc::new(MemoryPolicyVersions::new());
        // A user whose `sub` equals a client id (user-chosen on some identity providers).
        versions.set("web", 4);
        let posing = user(serde_json::json!({"sub": "web", "client_id": "web", "pv": 1}));
        let legacy = PolicyVersionLayer::new(versions.clone())
            .with_service_token_rule(ServiceTokenRule::SubjectIsClient)
            .layer(ok_service());
        assert_eq!(
            legacy.oneshot(request(&posing)).await.unwrap().status(),
            http::StatusCode::UNAUTHORIZED
        );
        // Under the default claim rule a real service token is not checked.
        let svc = user(serde_json::json!({"sub": "web", "client_id": "web",
                                          "gty": "client-credentials"}));
        let default = PolicyVersionLayer::new(versions).layer(ok_service());
        assert_eq!(
            default
                .clone()
                .oneshot(request(&svc))
                .await
                .unwrap()
                .status(),
            http::StatusCode::OK
        );
        assert_eq!(
            default.oneshot(request(&posing)).await.unwrap().status(),
            http::StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn partner_users_have_their_own_policy_version() {
        use crate::jwks::{Algorithm, KeySet};
        use crate::signing::SigningKey;
        use crate::verify::{IssuerConfig, Verifier};
        let main = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let partner = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = |k: &SigningKey| {
            KeySet::from_jwks(k.jwks().to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap()
        };
        let verifier = Verifier::builder()
            .issuer(IssuerConfig::static_keys(
                "https://auth.example",
                keys(&main),
            ))
            .issuer(
                IssuerConfig::static_keys("https://partner.example", keys(&partner))
                    .prefix("partner"),
            )
            .audience("orders")
            .build()
            .unwrap();
        let tok = |k: &SigningKey, iss: &str, pv: i64| {
            let c = serde_json::json!({"iss": iss, "aud": "orders", "sub": "42", "pv": pv,
                                       "exp": 4_000_000_000u64});
            verifier.try_verify(&k.sign(&c).unwrap()).unwrap()
        };
        let versions = Arc::new(MemoryPolicyVersions::new());
        versions.set("42", 7); // the main issuer's user 42
        let svc = PolicyVersionLayer::new(versions.clone())
            .with_max_staleness(Duration::ZERO)
            .layer(ok_service());
        // Partner user 42 is not held to main user 42's version, nor main user 42 to theirs.
        let p = tok(&partner, "https://partner.example", 1);
        assert_eq!(
            svc.clone().oneshot(request(&p)).await.unwrap().status(),
            http::StatusCode::OK
        );
        let m = tok(&main, "https://auth.example", 6);
        assert_eq!(
            svc.clone().oneshot(request(&m)).await.unwrap().status(),
            http::StatusCode::UNAUTHORIZED
        );
        versions.set("partner:42", 2);
        assert_eq!(
            svc.oneshot(request(&p)).await.unwrap().status(),
            http::StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn decisions() {
        let with_pv = user(serde_json::json!({"sub": "a", "pv": 3}));
        let without = user(serde_json::json!({"sub": "a"}));
        assert!(decide(&with_pv, None).is_ok());
        assert!(decide(&with_pv, Some(3)).is_ok());
        assert!(decide(&with_pv, Some(2)).is_ok());
        assert!(decide(&with_pv, Some(4)).is_err());
        assert!(decide(&without, Some(1)).is_err());
        assert!(decide(&without, None).is_ok());
    }
}
