//! Revocation check (opt-in): refuse tokens the issuer revoked before they expire.
//!
//! A self-contained JWT cannot be recalled; this layer asks the issuer's revocation state
//! instead. A token is refused with 401 `invalid_token` ("token revoked", reason `revoked`)
//! when its `jti` is on the issuer's revocation list (`POST /oauth2/revoke` of an access token),
//! or when its `sid` (the refresh-token family it came from) was revoked (revocation of the
//! refresh token, reuse detection, or revocation of every grant of a user or client).
//!
//! Answers come from a [`RevocationSource`]: [`MemoryRevocations`] (tests, in-process),
//! `GrantStoreRevocations` (feature `issuer`: an in-process issuer's grant store), or
//! `RedisRevocations` (feature `redis`, in [`crate::store`]: the keys the issuer's
//! `RedisGrantStore` writes). They are cached locally for at most `max_staleness` (default
//! 5 s) in a concurrent cache (quick_cache: sharded, bounded; concurrent misses for one token
//! share one source lookup). A "revoked" answer is kept (revocation is final); a "not revoked"
//! answer is asked again once older than the bound, so a revocation takes effect within
//! `max_staleness`. If the source cannot be reached and the cached answer is older than the
//! bound, requests fail closed: 503 with `Retry-After` (reason `revocation_unavailable`).
//!
//! Tokens without `jti` and `sid` pass (nothing to look up), unless
//! [`require_jti`](RevocationLayer::require_jti) is set: then a token without `jti` is refused
//! (401 `invalid_token`, reason `missing_required_claim`). The default is off because tokens of
//! other issuers (partners, service tokens of identity providers) often carry no `jti`; turn it
//! on when every accepted issuer sets one.
//!
//! [`RevocationLayer`] goes after `JwtAuth` (it reads the verified token, so it runs after the
//! verified-token cache: a cached token is still checked); [`SecurityLayer`](crate::stack::SecurityLayer)
//! puts it right before the policy-version check.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tower_bearer::revocation::{MemoryRevocations, RevocationLayer, RevocationSource};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//!
//! let revocations = Arc::new(MemoryRevocations::new());
//! revocations.revoke_jti("t-1");
//! revocations.revoke_sid("fam-9");
//! assert!(revocations.is_revoked(Some("t-1"), None).await.unwrap());
//! assert!(revocations.is_revoked(Some("t-2"), Some("fam-9")).await.unwrap());
//! assert!(!revocations.is_revoked(Some("t-2"), Some("fam-1")).await.unwrap());
//! let layer = RevocationLayer::new(revocations);
//! # let _ = layer;
//! # }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::authn::DefaultRejection;
use crate::cached_check::{self, Core, Prepared, Settings};
use crate::claims::{Authentication, CurrentUser};
use crate::error::{AuthError, TokenError};
use crate::http_client::BoxFuture;
use crate::store::StoreError;

/// Where revocations come from.
///
/// # Example
///
/// ```
/// use tower_bearer::http_client::BoxFuture;
/// use tower_bearer::revocation::RevocationSource;
/// use tower_bearer::store::StoreError;
///
/// /// Every token of session `s-bad` is revoked.
/// #[derive(Debug)]
/// struct OneBadSession;
/// impl RevocationSource for OneBadSession {
///     fn is_revoked(&self, _jti: Option<&str>, sid: Option<&str>) -> BoxFuture<'static, Result<bool, StoreError>> {
///         let bad = sid == Some("s-bad");
///         Box::pin(async move { Ok(bad) })
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert!(OneBadSession.is_revoked(None, Some("s-bad")).await.unwrap());
/// assert!(!OneBadSession.is_revoked(Some("j"), Some("s-ok")).await.unwrap());
/// # }
/// ```
pub trait RevocationSource: Send + Sync + fmt::Debug + 'static {
    /// `true` when the token with this `jti` was revoked, or when the session (grant family)
    /// `sid` was revoked. At least one of them is `Some` when the layer asks.
    fn is_revoked(
        &self,
        jti: Option<&str>,
        sid: Option<&str>,
    ) -> BoxFuture<'static, Result<bool, StoreError>>;
}

/// In-process revocations (tests, single replica, or fed by your own events).
///
/// Entries are kept until [removed](Self::unrevoke_jti); for long-running processes prefer a
/// source with expiry (Redis, the issuer's grant store).
///
/// # Example
///
/// ```
/// use tower_bearer::revocation::{MemoryRevocations, RevocationSource};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
///
/// let revocations = MemoryRevocations::new();
/// revocations.revoke_jti("t-1");
/// assert!(revocations.is_revoked(Some("t-1"), Some("fam-1")).await.unwrap());
/// assert!(!revocations.is_revoked(Some("t-2"), Some("fam-1")).await.unwrap());
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryRevocations {
    jtis: RwLock<HashSet<String>>,
    sids: RwLock<HashSet<String>>,
}

impl MemoryRevocations {
    /// Nothing revoked.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationSource};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// assert!(!MemoryRevocations::new().is_revoked(Some("any"), Some("any")).await.unwrap());
    /// # }
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// Revokes the token with this `jti`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationSource};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// let revocations = MemoryRevocations::new();
    /// revocations.revoke_jti("t-1");
    /// assert!(revocations.is_revoked(Some("t-1"), None).await.unwrap());
    /// # }
    /// ```
    pub fn revoke_jti(&self, jti: &str) {
        write(&self.jtis).insert(jti.to_owned());
    }
    /// Revokes every token of the session (grant family) `sid`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationSource};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// let revocations = MemoryRevocations::new();
    /// revocations.revoke_sid("fam-1");
    /// assert!(revocations.is_revoked(Some("t-1"), Some("fam-1")).await.unwrap());
    /// assert!(!revocations.is_revoked(Some("t-1"), None).await.unwrap());
    /// # }
    /// ```
    pub fn revoke_sid(&self, sid: &str) {
        write(&self.sids).insert(sid.to_owned());
    }
    /// Takes a `jti` off the list. A layer that already refused the token keeps refusing it
    /// (a revocation is final in its cache).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationSource};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// let revocations = MemoryRevocations::new();
    /// revocations.revoke_jti("t-1");
    /// revocations.unrevoke_jti("t-1");
    /// assert!(!revocations.is_revoked(Some("t-1"), None).await.unwrap());
    /// # }
    /// ```
    pub fn unrevoke_jti(&self, jti: &str) {
        write(&self.jtis).remove(jti);
    }
    /// Takes a session off the list (same caveat as [`unrevoke_jti`](Self::unrevoke_jti)).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationSource};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    ///
    /// let revocations = MemoryRevocations::new();
    /// revocations.revoke_sid("fam-1");
    /// revocations.unrevoke_sid("fam-1");
    /// assert!(!revocations.is_revoked(None, Some("fam-1")).await.unwrap());
    /// # }
    /// ```
    pub fn unrevoke_sid(&self, sid: &str) {
        write(&self.sids).remove(sid);
    }
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl RevocationSource for MemoryRevocations {
    fn is_revoked(
        &self,
        jti: Option<&str>,
        sid: Option<&str>,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let revoked = jti.is_some_and(|j| read(&self.jtis).contains(j))
            || sid.is_some_and(|s| read(&self.sids).contains(s));
        Box::pin(async move { Ok(revoked) })
    }
}

/// An in-process issuer's [`GrantStore`](crate::issuer::store::GrantStore) as a
/// [`RevocationSource`] (feature `issuer`): a `jti` is revoked when
/// [`is_jti_revoked`](crate::issuer::store::GrantStore::is_jti_revoked) says so, a `sid` when
/// the family [`get_family`](crate::issuer::store::GrantStore::get_family) returns is revoked
/// (a family that is gone, expired or never existed, does not revoke: the token's own `exp`
/// governs).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::issuer::store::{GrantStore, MemoryGrantStore};
/// use tower_bearer::revocation::{GrantStoreRevocations, RevocationSource};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
///
/// let store: Arc<dyn GrantStore> = Arc::new(MemoryGrantStore::new());
/// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
/// store.revoke_jti("t-1", now + 300, now).await.unwrap();
/// let source = GrantStoreRevocations::new(store);
/// assert!(source.is_revoked(Some("t-1"), None).await.unwrap());
/// assert!(!source.is_revoked(Some("t-2"), Some("no-such-family")).await.unwrap());
/// # }
/// ```
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
#[derive(Clone, Debug)]
pub struct GrantStoreRevocations {
    store: Arc<dyn crate::issuer::store::GrantStore>,
}

#[cfg(feature = "issuer")]
impl GrantStoreRevocations {
    /// Reads `store`.
    ///
    /// # Example
    ///
    /// See [`GrantStoreRevocations`].
    pub fn new(store: Arc<dyn crate::issuer::store::GrantStore>) -> Self {
        Self { store }
    }
}

#[cfg(feature = "issuer")]
impl RevocationSource for GrantStoreRevocations {
    fn is_revoked(
        &self,
        jti: Option<&str>,
        sid: Option<&str>,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let by_jti = jti.map(|j| self.store.is_jti_revoked(j, now));
        let by_sid = sid.map(|s| self.store.get_family(s, now));
        Box::pin(async move {
            if let Some(f) = by_jti {
                if f.await? {
                    return Ok(true);
                }
            }
            if let Some(f) = by_sid {
                if let Some(rec) = f.await? {
                    return Ok(rec.state == crate::issuer::store::FamilyState::Revoked);
                }
            }
            Ok(false)
        })
    }
}

/// The cache key of a token: its `jti` and `sid` (either may be absent), unambiguous.
fn cache_key(jti: Option<&str>, sid: Option<&str>) -> String {
    let mut k = String::with_capacity(4 + jti.map_or(0, str::len) + sid.map_or(0, str::len));
    match jti {
        Some(j) => {
            k.push('j');
            k.push_str(&j.len().to_string());
            k.push(':');
            k.push_str(j);
        }
        None => k.push('-'),
    }
    match sid {
        Some(s) => {
            k.push('s');
            k.push_str(s);
        }
        None => k.push('-'),
    }
    k
}

/// The revocation check's source and its layer-specific setting.
#[derive(Clone)]
struct Source {
    revocations: Arc<dyn RevocationSource>,
    require_jti: bool,
}

impl cached_check::Source for Source {
    /// Whether the token was revoked.
    type Answer = bool;
    /// The token's `jti` and `sid`.
    type Subject = (Option<String>, Option<String>);
    type Error = StoreError;
    const LAYER: &'static str = "RevocationLayer";
    const WHAT: &'static str = "revocation";
    const FAILURES: &'static str = "tower_bearer_revocation_source_failures_total";

    fn unavailable() -> AuthError {
        AuthError::RevocationUnavailable
    }

    /// A revocation is final; a "not revoked" answer holds only within the staleness bound.
    fn is_final(revoked: bool) -> bool {
        revoked
    }

    fn prepare(&self, extensions: &http::Extensions) -> Prepared<Self::Subject> {
        let Some(Authentication::User(user)) = extensions.get::<Authentication>() else {
            return Prepared::Skip;
        };
        let jti = claim_str(user, "jti").map(str::to_owned);
        let sid = claim_str(user, "sid").map(str::to_owned);
        if jti.is_none() && self.require_jti {
            return Prepared::Reject(AuthError::InvalidToken(TokenError::MissingRequiredClaim));
        }
        if jti.is_none() && sid.is_none() {
            return Prepared::Skip;
        }
        Prepared::Check {
            key: cache_key(jti.as_deref(), sid.as_deref()),
            subject: (jti, sid),
        }
    }

    fn lookup(
        &self,
        _key: &str,
        (jti, sid): &Self::Subject,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        self.revocations.is_revoked(jti.as_deref(), sid.as_deref())
    }

    fn decide(_ids: &Self::Subject, revoked: bool) -> Result<(), AuthError> {
        decide(revoked)
    }

    fn fmt_fields(settings: &Settings<Self>, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("source", &settings.source.revocations)
            .field("max_staleness", &settings.max_staleness)
            .field("require_jti", &settings.source.require_jti);
    }
}

fn claim_str<'a>(user: &'a CurrentUser, name: &str) -> Option<&'a str> {
    user.claim(name).and_then(serde_json::Value::as_str)
}

fn decide(revoked: bool) -> Result<(), AuthError> {
    if revoked {
        Err(AuthError::InvalidToken(TokenError::Revoked))
    } else {
        Ok(())
    }
}

/// Refuses tokens whose `jti` or `sid` the issuer revoked. See the
/// [module docs](crate::revocation).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::revocation::{MemoryRevocations, RevocationLayer};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
/// # let req = |jti: &str, sid: &str| {
/// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "jti": jti, "sid": sid, "exp": 2000000000, "aud": "api"});
/// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
/// #     let mut r = Request::get("/").body(()).unwrap();
/// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
/// #     r
/// # };
///
/// let revocations = Arc::new(MemoryRevocations::new());
/// revocations.revoke_jti("t-1");
/// revocations.revoke_sid("fam-2");
/// let svc = RevocationLayer::new(revocations).layer(ok);
/// assert_eq!(svc.clone().oneshot(req("t-1", "fam-1")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(svc.clone().oneshot(req("t-2", "fam-2")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(svc.oneshot(req("t-3", "fam-1")).await.unwrap().status(), StatusCode::OK);
/// # }
/// ```
#[must_use]
#[derive(Clone)]
pub struct RevocationLayer<R = DefaultRejection> {
    core: Core<Source, R>,
}

impl RevocationLayer {
    /// Checks against `source` with a 5 s staleness bound and a 2 s lookup timeout.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationLayer};
    ///
    /// let layer = RevocationLayer::new(Arc::new(MemoryRevocations::new()));
    /// assert!(format!("{layer:?}").contains("max_staleness: 5s"));
    /// ```
    pub fn new(source: Arc<dyn RevocationSource>) -> Self {
        let source = Source {
            revocations: source,
            require_jti: false,
        };
        Self {
            core: Core::new(Settings::new(source), DefaultRejection::default()),
        }
    }

    /// A layer that checks nothing (used where revocation is not configured).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::revocation::RevocationLayer;
    ///
    /// assert_eq!(format!("{:?}", RevocationLayer::disabled()), "RevocationLayer(disabled)");
    /// ```
    pub fn disabled() -> Self {
        Self {
            core: Core::disabled(DefaultRejection::default()),
        }
    }
}

impl<R> RevocationLayer<R> {
    /// Refuses tokens without a `jti` claim (401 `invalid_token`, reason
    /// `missing_required_claim`); off by default (see the [module docs](crate::revocation)).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationLayer};
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let no_jti = || {
    /// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "exp": 2000000000, "aud": "api"});
    /// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    /// #     let mut r = Request::get("/").body(()).unwrap();
    /// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
    /// #     r
    /// # };
    ///
    /// let lax = RevocationLayer::new(Arc::new(MemoryRevocations::new())).layer(ok.clone());
    /// assert_eq!(lax.oneshot(no_jti()).await.unwrap().status(), StatusCode::OK);
    /// let strict = RevocationLayer::new(Arc::new(MemoryRevocations::new())).require_jti(true).layer(ok);
    /// assert_eq!(strict.oneshot(no_jti()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    /// # }
    /// ```
    ///
    /// On a [disabled](RevocationLayer::disabled) layer this does nothing.
    pub fn require_jti(self, require: bool) -> Self {
        self.update(|s| s.source.require_jti = require)
    }
}

/// The service of [`RevocationLayer`].
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_bearer::revocation::{MemoryRevocations, Revocation, RevocationLayer};
/// # use std::convert::Infallible;
/// # use http::{Request, Response, StatusCode};
/// # use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
///
/// let svc: Revocation<_> = RevocationLayer::new(Arc::new(MemoryRevocations::new())).layer(ok);
/// // No verified token (anonymous): nothing to check here, authorization decides.
/// assert_eq!(svc.oneshot(Request::new(())).await.unwrap().status(), StatusCode::OK);
/// # }
/// ```
#[derive(Clone)]
pub struct Revocation<S, R = DefaultRejection> {
    inner: S,
    layer: RevocationLayer<R>,
}

cached_check::cached_check_layer! {
    RevocationLayer => Revocation, Source;
    /// How long a "not revoked" answer is reused before the source is asked again, and how
    /// long one is served when the source is down (default 5 s): a revocation takes effect
    /// within this bound.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationLayer};
    ///
    /// let layer = RevocationLayer::new(Arc::new(MemoryRevocations::new()))
    ///     .with_max_staleness(Duration::from_secs(1));
    /// assert!(format!("{layer:?}").contains("max_staleness: 1s"));
    /// ```
    ///
    /// On a [disabled](RevocationLayer::disabled) layer this does nothing.
    fn with_max_staleness;
    /// The longest a request waits for the source (default 2 s), then 503.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationLayer};
    ///
    /// let layer = RevocationLayer::new(Arc::new(MemoryRevocations::new()))
    ///     .with_lookup_timeout(Duration::from_millis(500));
    /// # let _ = layer;
    /// ```
    ///
    /// On a [disabled](RevocationLayer::disabled) layer this does nothing.
    fn with_lookup_timeout;
    /// Replaces how rejections become responses.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_bearer::revocation::{MemoryRevocations, RevocationLayer};
    /// use tower_bearer::AuthError;
    /// # use std::convert::Infallible;
    /// # use http::{Request, Response, StatusCode};
    /// # use tower::{Layer, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let ok = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    /// # let req = |jti: &str| {
    /// #     let claims = serde_json::json!({"iss": "i", "sub": "alice", "jti": jti, "exp": 2000000000, "aud": "api"});
    /// #     let user = tower_bearer::CurrentUser::from_claims(claims.as_object().unwrap().clone(), &tower_bearer::claims::ClaimMapping::default().compile()).unwrap();
    /// #     let mut r = Request::get("/").body(()).unwrap();
    /// #     r.extensions_mut().insert(tower_bearer::claims::Authentication::User(user));
    /// #     r
    /// # };
    ///
    /// let revocations = Arc::new(MemoryRevocations::new());
    /// revocations.revoke_jti("t-1");
    /// let plain = |_e: &AuthError, _grpc: bool| Response::builder().status(StatusCode::GONE).body(()).unwrap();
    /// let svc = RevocationLayer::new(revocations).with_rejection(plain).layer(ok);
    /// assert_eq!(svc.oneshot(req("t-1")).await.unwrap().status(), StatusCode::GONE);
    /// # }
    /// ```
    fn with_rejection;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimMapping;
    use http::{Request, Response};
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;
    use tower::{Layer, ServiceExt};

    fn request(v: serde_json::Value) -> Request<()> {
        let user = CurrentUser::from_claims(
            v.as_object().unwrap().clone(),
            &ClaimMapping::default().compile(),
        )
        .unwrap();
        let mut r = Request::new(());
        r.extensions_mut().insert(Authentication::User(user));
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

    /// Memory revocations that can be switched off (errors) and count lookups.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: MemoryRevocations,
        down: AtomicBool,
        calls: AtomicUsize,
    }

    impl RevocationSource for Flaky {
        fn is_revoked(
            &self,
            jti: Option<&str>,
            sid: Option<&str>,
        ) -> BoxFuture<'static, Result<bool, StoreError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Box::pin(async { Err(StoreError::new("revocations: down")) });
            }
            let fut = self.inner.is_revoked(jti, sid);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                fut.await
            })
        }
    }

    fn www(res: &Response<()>) -> String {
        res.headers()
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_revoked_jti_is_refused_with_a_precise_reason() {
        let source = Arc::new(MemoryRevocations::new());
        source.revoke_jti("t-1");
        let svc = RevocationLayer::new(source).layer(ok_service());
        let res = svc
            .clone()
            .oneshot(request(serde_json::json!({"sub": "a", "jti": "t-1"})))
            .await
            .unwrap();
        assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
        assert!(www(&res).contains("invalid_token"), "{}", www(&res));
        assert_eq!(
            res.extensions().get::<AuthError>(),
            Some(&AuthError::InvalidToken(TokenError::Revoked))
        );
        assert_eq!(
            res.extensions().get::<AuthError>().unwrap().reason(),
            "revoked"
        );
        // Another token passes; a cached refusal is served without a lookup too.
        let res = svc
            .clone()
            .oneshot(request(serde_json::json!({"sub": "a", "jti": "t-2"})))
            .await
            .unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
        let res = svc
            .oneshot(request(serde_json::json!({"sub": "a", "jti": "t-1"})))
            .await
            .unwrap();
        assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_revoked_session_refuses_every_token_of_it() {
        let source = Arc::new(MemoryRevocations::new());
        let svc = RevocationLayer::new(source.clone())
            .with_max_staleness(Duration::ZERO)
            .layer(ok_service());
        let tok = |jti: &str| request(serde_json::json!({"sub": "a", "jti": jti, "sid": "fam-1"}));
        assert_eq!(
            svc.clone().oneshot(tok("t-1")).await.unwrap().status(),
            http::StatusCode::OK
        );
        source.revoke_sid("fam-1");
        for jti in ["t-1", "t-2"] {
            let res = svc.clone().oneshot(tok(jti)).await.unwrap();
            assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
            assert_eq!(
                res.extensions().get::<AuthError>(),
                Some(&AuthError::InvalidToken(TokenError::Revoked))
            );
        }
        // Only `sid`, no `jti`: still checked.
        let res = svc
            .clone()
            .oneshot(request(serde_json::json!({"sub": "a", "sid": "fam-1"})))
            .await
            .unwrap();
        assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
        let other = request(serde_json::json!({"sub": "a", "jti": "t-1", "sid": "fam-2"}));
        assert_eq!(
            svc.oneshot(other).await.unwrap().status(),
            http::StatusCode::OK
        );
    }

    #[tokio::test]
    async fn an_unavailable_source_is_bridged_within_the_bound_then_fails_closed() {
        let source = Arc::new(Flaky::default());
        let svc = RevocationLayer::new(source.clone())
            .with_max_staleness(Duration::from_millis(300))
            .layer(ok_service());
        let tok = || request(serde_json::json!({"sub": "a", "jti": "t-1", "sid": "fam-1"}));
        assert_eq!(
            svc.clone().oneshot(tok()).await.unwrap().status(),
            http::StatusCode::OK
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        // The source goes down: the cached answer serves within the bound, no lookup.
        source.down.store(true, Ordering::SeqCst);
        assert_eq!(
            svc.clone().oneshot(tok()).await.unwrap().status(),
            http::StatusCode::OK
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        // Past the bound: 503 with Retry-After, no challenge, a precise reason.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let res = svc.clone().oneshot(tok()).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[http::header::RETRY_AFTER], "1");
        assert!(res.headers().get(http::header::WWW_AUTHENTICATE).is_none());
        assert_eq!(
            res.extensions().get::<AuthError>().unwrap().reason(),
            "revocation_unavailable"
        );
        // A failed lookup is not cached: the next request asks again.
        let _ = svc.clone().oneshot(tok()).await.unwrap();
        assert_eq!(source.calls.load(Ordering::SeqCst), 3);
        // Back: passes again; a token without jti and sid never asks.
        source.down.store(false, Ordering::SeqCst);
        assert_eq!(
            svc.clone().oneshot(tok()).await.unwrap().status(),
            http::StatusCode::OK
        );
        source.down.store(true, Ordering::SeqCst);
        let plain = request(serde_json::json!({"sub": "a"}));
        assert_eq!(
            svc.oneshot(plain).await.unwrap().status(),
            http::StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_revocation_is_seen_within_the_bound_and_kept() {
        let source = Arc::new(Flaky::default());
        let svc = RevocationLayer::new(source.clone())
            .with_max_staleness(Duration::from_millis(200))
            .layer(ok_service());
        let tok = || request(serde_json::json!({"sub": "a", "jti": "t-1"}));
        assert_eq!(
            svc.clone().oneshot(tok()).await.unwrap().status(),
            http::StatusCode::OK
        );
        source.inner.revoke_jti("t-1");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            svc.clone().oneshot(tok()).await.unwrap().status(),
            http::StatusCode::UNAUTHORIZED
        );
        // A revocation is final: served from the cache even when stale and the source down.
        source.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            svc.oneshot(tok()).await.unwrap().status(),
            http::StatusCode::UNAUTHORIZED
        );
    }

    /// Regression: a "not revoked" answer's age counted from the end of the lookup, so a slow
    /// source stretched the staleness bound by the lookup's duration. It counts from the start.
    #[tokio::test]
    async fn staleness_counts_from_the_start_of_a_slow_lookup() {
        #[derive(Debug)]
        struct Slow(Arc<AtomicUsize>);
        impl RevocationSource for Slow {
            fn is_revoked(
                &self,
                _: Option<&str>,
                _: Option<&str>,
            ) -> BoxFuture<'static, Result<bool, StoreError>> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(false)
                })
            }
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = RevocationLayer::new(Arc::new(Slow(calls.clone())))
            .with_max_staleness(Duration::from_millis(500))
            .layer(ok_service());
        let tok = || request(serde_json::json!({"sub": "a", "jti": "t-1"}));
        assert_eq!(
            svc.clone().oneshot(tok()).await.unwrap().status(),
            http::StatusCode::OK
        );
        // 300 ms after the answer came, at least 600 ms after it was asked for: past the bound.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            svc.clone().oneshot(tok()).await.unwrap().status(),
            http::StatusCode::OK
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "an answer older than the bound (counted from its lookup's start) is looked up again"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_token_share_one_lookup() {
        let source = Arc::new(Flaky::default());
        let svc = RevocationLayer::new(source.clone()).layer(ok_service());
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    svc.oneshot(request(serde_json::json!({"sub": "a", "jti": "t-1"})))
                        .await
                        .unwrap()
                        .status()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), http::StatusCode::OK);
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn require_jti_refuses_tokens_without_one() {
        let svc = RevocationLayer::new(Arc::new(MemoryRevocations::new()))
            .require_jti(true)
            .layer(ok_service());
        let res = svc
            .clone()
            .oneshot(request(serde_json::json!({"sub": "a", "sid": "fam-1"})))
            .await
            .unwrap();
        assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.extensions().get::<AuthError>().unwrap().reason(),
            "missing_required_claim"
        );
        let res = svc
            .oneshot(request(serde_json::json!({"sub": "a", "jti": "t-1"})))
            .await
            .unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
        // Disabled: settings never panic, nothing checked.
        let off = RevocationLayer::disabled()
            .require_jti(true)
            .with_max_staleness(Duration::ZERO)
            .with_lookup_timeout(Duration::ZERO);
        assert_eq!(format!("{off:?}"), "RevocationLayer(disabled)");
    }

    #[test]
    fn cache_keys_are_unambiguous() {
        assert_ne!(cache_key(Some("a"), Some("b")), cache_key(Some("ab"), None));
        assert_ne!(cache_key(Some("a"), None), cache_key(None, Some("a")));
        assert_ne!(
            cache_key(Some("a:s"), None),
            cache_key(Some("a"), Some(":"))
        );
        assert_eq!(
            cache_key(Some("x"), Some("y")),
            cache_key(Some("x"), Some("y"))
        );
    }

    #[cfg(feature = "issuer")]
    #[tokio::test]
    async fn an_issuer_grant_store_serves_as_a_source() {
        use crate::issuer::store::{GrantStore, MemoryGrantStore, NewFamily, RefreshToken};
        let store: Arc<dyn GrantStore> = Arc::new(MemoryGrantStore::new());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        store.revoke_jti("t-1", now + 60, now).await.unwrap();
        let source = GrantStoreRevocations::new(store.clone());
        assert!(source.is_revoked(Some("t-1"), None).await.unwrap());
        assert!(!source.is_revoked(Some("t-2"), Some("nope")).await.unwrap());
        assert!(!source.is_revoked(None, None).await.unwrap());
        // A live family does not revoke; once revoked, its `sid` does.
        let first = RefreshToken::new_family();
        let fam = NewFamily::new(first.family_id(), "web", "1001")
            .with_lifetimes(Duration::from_secs(100), Duration::from_secs(1000));
        store.create_family(fam, &first.hash(), now).await.unwrap();
        let sid = first.family_id().to_owned();
        assert!(!source.is_revoked(Some("t-2"), Some(&sid)).await.unwrap());
        assert!(store.revoke_family(&sid, now).await.unwrap());
        assert!(source.is_revoked(Some("t-2"), Some(&sid)).await.unwrap());
        assert!(source.is_revoked(None, Some(&sid)).await.unwrap());
    }
}
