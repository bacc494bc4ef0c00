//! Crate-private plumbing shared by the policy-version and revocation layers: a check of each
//! request against a remote source, cached locally with a staleness bound, that fails closed.
//!
//! A [`Source`] says what is looked up (the key and subject of a request, the lookup itself,
//! the decision). [`Core`] is what both public layers hold: the shared [`Checker`] (settings
//! plus a concurrent quick_cache: sharded, bounded; concurrent misses for one key share one
//! source lookup) or nothing when disabled, and the rejection. Its `call` is the service's
//! whole logic: skip, refuse at once, decide from the cache, or look up before forwarding.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Extensions, Request, Response};
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use tower_service::Service;

use crate::authn::{ResponseForRejection, is_grpc};
use crate::error::AuthError;
use crate::future::ResponseFuture;
use crate::http_client::BoxFuture;

/// How many keys a checker caches.
const MAX_CACHED: usize = 100_000;

/// What a request asks of the check.
pub(crate) enum Prepared<T> {
    /// Nothing to check: forwarded.
    Skip,
    /// Refused before any lookup.
    Reject(AuthError),
    /// Checked: the cache key and what the decision needs.
    Check { key: String, subject: T },
}

/// One kind of cached check (its source and layer-specific settings).
pub(crate) trait Source: Clone + Send + Sync + 'static {
    /// The looked-up answer, cached.
    type Answer: Copy + Send + Sync + 'static;
    /// What the decision needs of the request (the user, the token's ids).
    type Subject: Send + Sync + 'static;
    /// The source's error (logged, never shown).
    type Error: fmt::Display + Send + 'static;
    /// The public layer's name (its `Debug`).
    const LAYER: &'static str;
    /// What is looked up, for logs ("policy version", "revocation").
    const WHAT: &'static str;
    /// The counter of failed or timed-out lookups.
    const FAILURES: &'static str;
    /// The rejection when the source cannot answer in time.
    fn unavailable() -> AuthError;
    /// Whether a cached answer is kept past the staleness bound (a revocation is final).
    fn is_final(_answer: Self::Answer) -> bool {
        false
    }
    /// What the request asks (from its extensions: the verified token).
    fn prepare(&self, extensions: &Extensions) -> Prepared<Self::Subject>;
    /// One source lookup.
    fn lookup(
        &self,
        key: &str,
        subject: &Self::Subject,
    ) -> BoxFuture<'static, Result<Self::Answer, Self::Error>>;
    /// Refuses or admits the request from the answer.
    fn decide(subject: &Self::Subject, answer: Self::Answer) -> Result<(), AuthError>;
    /// The `Debug` fields of the layer (the bounds included).
    fn fmt_fields(settings: &Settings<Self>, d: &mut fmt::DebugStruct<'_, '_>);
}

/// The settings of a [`Checker`], kept apart from its cache.
#[derive(Clone)]
pub(crate) struct Settings<S> {
    pub(crate) source: S,
    pub(crate) max_staleness: Duration,
    pub(crate) lookup_timeout: Duration,
}

impl<S> Settings<S> {
    /// The defaults: 5 s staleness bound, 2 s lookup timeout.
    pub(crate) fn new(source: S) -> Self {
        Self {
            source,
            max_staleness: Duration::from_secs(5),
            lookup_timeout: Duration::from_secs(2),
        }
    }
}

/// Settings plus a concurrent (sharded, CLOCK-Pro evicting) cache of `(answer, asked at)`.
/// A hit takes one shard read lock; concurrent misses for one key wait for a single source
/// lookup (quick_cache placeholders).
pub(crate) struct Checker<S: Source> {
    pub(crate) settings: Settings<S>,
    cache: Cache<String, (S::Answer, Instant)>,
}

/// Whether a cached answer may still be used.
fn usable<S: Source>(answer: S::Answer, at: Instant, max: Duration) -> bool {
    S::is_final(answer) || at.elapsed() <= max
}

impl<S: Source> Checker<S> {
    fn new(settings: Settings<S>) -> Self {
        Self {
            settings,
            cache: Cache::new(MAX_CACHED),
        }
    }

    fn cached(&self, key: &str) -> Option<S::Answer> {
        match self.cache.get(key) {
            Some((answer, at)) if usable::<S>(answer, at, self.settings.max_staleness) => {
                Some(answer)
            }
            _ => None,
        }
    }

    /// The answer: fresh from the cache, or one source lookup shared by every concurrent
    /// request for this key. The whole wait (queueing behind another lookup included) is
    /// bounded by the lookup timeout.
    async fn fetch(&self, key: &str, subject: &S::Subject) -> Result<S::Answer, AuthError> {
        let bound = self.settings.lookup_timeout;
        match tokio::time::timeout(bound, self.fetch_shared(key, subject)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "{} source failed; failing closed", S::WHAT);
                crate::telemetry::counter(S::FAILURES, &[]);
                Err(S::unavailable())
            }
            Err(_) => {
                tracing::warn!("{} lookup timed out; failing closed", S::WHAT);
                crate::telemetry::counter(S::FAILURES, &[]);
                Err(S::unavailable())
            }
        }
    }

    async fn fetch_shared(&self, key: &str, subject: &S::Subject) -> Result<S::Answer, S::Error> {
        let max = self.settings.max_staleness;
        let entry = self
            .cache
            .entry_async(key, |_, (answer, at)| {
                if usable::<S>(*answer, *at, max) {
                    EntryAction::Retain(*answer)
                } else {
                    EntryAction::ReplaceWithGuard
                }
            })
            .await;
        let guard = match entry {
            // Filled by the lookup we waited for.
            EntryResult::Retained(v) => return Ok(v),
            EntryResult::Replaced(guard, _) | EntryResult::Vacant(guard) => Some(guard),
            _ => None,
        };
        // On an error the guard is dropped unfilled: the next waiter looks up itself.
        // The answer is as old as the question: the source may have read it at any time after
        // the lookup started, so its age counts from then (a slow lookup must not stretch the
        // staleness bound).
        let asked = Instant::now();
        let v = self.settings.source.lookup(key, subject).await?;
        if let Some(guard) = guard {
            let _ = guard.insert((v, asked));
        }
        Ok(v)
    }
}

/// What a public layer holds: the shared checker (`None`: disabled) and the rejection.
#[derive(Clone)]
pub(crate) struct Core<S: Source, R> {
    checker: Option<Arc<Checker<S>>>,
    pub(crate) rejection: R,
}

impl<S: Source, R> Core<S, R> {
    /// Checks against `settings`.
    pub(crate) fn new(settings: Settings<S>, rejection: R) -> Self {
        Self {
            checker: Some(Arc::new(Checker::new(settings))),
            rejection,
        }
    }

    /// Checks nothing.
    pub(crate) fn disabled(rejection: R) -> Self {
        Self {
            checker: None,
            rejection,
        }
    }

    /// Changes a setting: nothing on a disabled layer; on a layer already cloned, this copy
    /// gets its own checker (and an empty cache).
    pub(crate) fn update(mut self, f: impl FnOnce(&mut Settings<S>)) -> Self {
        if let Some(checker) = &mut self.checker {
            match Arc::get_mut(checker) {
                Some(c) => f(&mut c.settings),
                None => {
                    let mut settings = checker.settings.clone();
                    f(&mut settings);
                    *checker = Arc::new(Checker::new(settings));
                }
            }
        }
        self
    }

    /// The same checker with another rejection.
    pub(crate) fn with_rejection<R2>(self, rejection: R2) -> Core<S, R2> {
        Core {
            checker: self.checker,
            rejection,
        }
    }

    /// The service's `call`: forward, refuse, or look up first.
    pub(crate) fn call<Svc, ReqBody, ResBody>(
        &self,
        inner: &mut Svc,
        req: Request<ReqBody>,
    ) -> ResponseFuture<Svc::Future, Svc, ReqBody, ResBody, R>
    where
        Svc: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        ReqBody: Send + 'static,
        R: ResponseForRejection<ResBody>,
    {
        let Some(checker) = &self.checker else {
            return ResponseFuture::future(inner.call(req));
        };
        let grpc = is_grpc(&req);
        let (key, subject) = match checker.settings.source.prepare(req.extensions()) {
            Prepared::Skip => return ResponseFuture::future(inner.call(req)),
            Prepared::Reject(e) => {
                crate::telemetry::rejection(&e);
                return ResponseFuture::rejected(self.rejection.response(&e, grpc));
            }
            Prepared::Check { key, subject } => (key, subject),
        };
        match checker.cached(&key) {
            Some(answer) => match S::decide(&subject, answer) {
                Ok(()) => ResponseFuture::future(inner.call(req)),
                Err(e) => {
                    crate::telemetry::rejection(&e);
                    ResponseFuture::rejected(self.rejection.response(&e, grpc))
                }
            },
            None => {
                let checker = checker.clone();
                let check = Box::pin(async move {
                    let answer = checker.fetch(&key, &subject).await?;
                    S::decide(&subject, answer)?;
                    Ok(req)
                });
                // See tower's "Be careful when cloning inner services".
                let clone = inner.clone();
                let inner = std::mem::replace(inner, clone);
                ResponseFuture::checking(check, inner, self.rejection.clone(), grpc)
            }
        }
    }
}

impl<S: Source, R> fmt::Debug for Core<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.checker {
            Some(c) => {
                let mut d = f.debug_struct(S::LAYER);
                S::fmt_fields(&c.settings, &mut d);
                d.finish_non_exhaustive()
            }
            None => write!(f, "{}(disabled)", S::LAYER),
        }
    }
}

/// The public plumbing of a cached-check layer `$layer<R>` (one field, `core: Core<$source, R>`)
/// and its service `$svc<S, R>` (`inner`, `layer`): `Debug`, the two bounds, `with_rejection`
/// (each with the documentation given), a private `update` for the layer's own settings,
/// `Layer`, the accessors, and the `Service`.
macro_rules! cached_check_layer {
    (
        $layer:ident => $svc:ident, $source:ty;
        $(#[$staleness:meta])* fn with_max_staleness;
        $(#[$timeout:meta])* fn with_lookup_timeout;
        $(#[$rejection:meta])* fn with_rejection;
    ) => {
        impl<R> std::fmt::Debug for $layer<R> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.core.fmt(f)
            }
        }

        impl<R> $layer<R> {
            /// Changes a setting: nothing on a disabled layer; on a layer already cloned, this
            /// copy gets its own checker (and an empty cache).
            fn update(
                self,
                f: impl FnOnce(&mut crate::cached_check::Settings<$source>),
            ) -> Self {
                Self {
                    core: self.core.update(f),
                }
            }

            $(#[$staleness])*
            pub fn with_max_staleness(self, max: std::time::Duration) -> Self {
                self.update(|s| s.max_staleness = max)
            }

            $(#[$timeout])*
            pub fn with_lookup_timeout(self, timeout: std::time::Duration) -> Self {
                self.update(|s| s.lookup_timeout = timeout)
            }

            $(#[$rejection])*
            pub fn with_rejection<R2>(self, rejection: R2) -> $layer<R2> {
                $layer {
                    core: self.core.with_rejection(rejection),
                }
            }
        }

        crate::macros::layer_with_rejection!($layer => $svc);

        impl<ReqBody, ResBody, S, R> tower_service::Service<http::Request<ReqBody>> for $svc<S, R>
        where
            S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
                + Clone
                + Send
                + 'static,
            ReqBody: Send + 'static,
            R: crate::authn::ResponseForRejection<ResBody>,
        {
            type Response = http::Response<ResBody>;
            type Error = S::Error;
            type Future = crate::future::ResponseFuture<S::Future, S, ReqBody, ResBody, R>;

            fn poll_ready(
                &mut self,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                self.inner.poll_ready(cx)
            }

            fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
                self.layer.core.call(&mut self.inner, req)
            }
        }
    };
}

pub(crate) use cached_check_layer;
