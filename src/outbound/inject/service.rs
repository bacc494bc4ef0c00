use std::fmt;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower_service::Service;

use super::future::{Reactive, ResponseFuture};
use super::layer::{Decision, InjectBearerLayer, SkipBearer, Target};
use super::replay::{NoReplay, ReplayRequest};
use crate::error::BoxError;
use crate::outbound::TokenManager;

/// Sets `Authorization: Bearer …` (marked sensitive) on requests to the destinations of a
/// [`TokenManager`]'s clients. See the [module docs](crate::outbound).
///
/// A request passes untouched when it carries [`SkipBearer`], when no client lists its origin
/// (unless strict), or when it has an `Authorization` header already (unless override). A
/// request whose token cannot be had fails with [`InjectError`](crate::outbound::InjectError)
/// (as `BoxError`) before anything is sent.
///
/// The wrapped service must be `Clone` (hyper-util's `Client` and tonic's `Channel` are): a
/// request that waits for a token, or is replayed, takes its own instance.
pub struct InjectBearer<S, R = NoReplay> {
    pub(crate) inner: S,
    pub(crate) layer: InjectBearerLayer<R>,
}

impl<S: Clone, R: Clone> Clone for InjectBearer<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for InjectBearer<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectBearer")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

crate::macros::define_inner_service_accessors!(InjectBearer<S, R>);

impl<S> InjectBearer<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: InjectBearerLayer) -> Self {
        Self { inner, layer }
    }

    /// The layer (same as [`InjectBearerLayer::new`]).
    pub fn layer(manager: TokenManager) -> InjectBearerLayer {
        InjectBearerLayer::new(manager)
    }
}

impl<ReqBody, ResBody, S, R> Service<Request<ReqBody>> for InjectBearer<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    R: ReplayRequest<ReqBody>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let route = match self.layer.decide(
            req.extensions().get::<SkipBearer>().is_some(),
            Target::of_uri(req.uri()),
            req.headers().contains_key(AUTHORIZATION),
        ) {
            Decision::Inject(route) => route,
            Decision::Pass => return ResponseFuture::future(self.inner.call(req), None),
            Decision::Reject(e) => return ResponseFuture::rejected(e.into()),
        };
        let reactive = if self.layer.reactive {
            // The copy is taken before the token goes in; a retry gets the new one.
            let retry = self
                .layer
                .replay
                .replay(&req)
                .map(|copy| (self.inner.clone(), copy));
            Some(Reactive {
                handle: self.layer.routes[route].handle.clone(),
                used: None,
                retry,
            })
        } else {
            None
        };
        let handle = &self.layer.routes[route].handle;
        match handle.try_now() {
            Some(header) => {
                let reactive = reactive.map(|r| Reactive {
                    used: Some(header.clone()),
                    ..r
                });
                req.headers_mut().insert(AUTHORIZATION, header);
                ResponseFuture::future(self.inner.call(req), reactive)
            }
            None => {
                // The instance made ready by `poll_ready` goes into the future; a fresh clone
                // stays here. See tower's "Be careful when cloning inner services":
                // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::fetching(handle.fetch(), handle.clone(), inner, req, reactive)
            }
        }
    }
}
