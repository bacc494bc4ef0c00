use std::fmt;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, Entry};
use http::{Request, Response};
use tower_service::Service;

use super::future::{Reactive, ResponseFuture};
use super::layer::{InjectBearerLayer, SkipBearer};
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
        // The rules of `InjectBearerLayer::decide`, in its order: skip, destination, then an
        // `Authorization` already present (kept unless override).
        let skip = req.extensions().get::<SkipBearer>().is_some();
        let route = match self.layer.route_uri(skip, req.uri()) {
            Ok(Some(route)) => route,
            Ok(None) => return ResponseFuture::future(self.inner.call(req), None),
            Err(e) => return ResponseFuture::rejected(e.into()),
        };
        if self.layer.reactive {
            if !self.layer.override_existing && req.headers().contains_key(AUTHORIZATION) {
                return ResponseFuture::future(self.inner.call(req), None);
            }
            return self.call_reactive(route, req);
        }
        // One look-up of `Authorization` for both the check and the insert.
        let send_now = match req.headers_mut().entry(AUTHORIZATION) {
            Entry::Occupied(_) if !self.layer.override_existing => true,
            Entry::Occupied(mut entry) => match self.layer.routes[route].handle.try_now() {
                Some(header) => {
                    entry.insert(header);
                    true
                }
                None => false,
            },
            Entry::Vacant(entry) => match self.layer.routes[route].handle.try_now() {
                Some(header) => {
                    entry.insert(header);
                    true
                }
                None => false,
            },
        };
        if send_now {
            ResponseFuture::future(self.inner.call(req), None)
        } else {
            self.fetch(route, req, None)
        }
    }
}

impl<S, R> InjectBearer<S, R> {
    /// [`call`](Service::call) in the reactive mode, once the token of `routes[route]` is to
    /// go in: a copy of the request is taken first, for a retry with a fresh token.
    fn call_reactive<ReqBody, ResBody>(
        &mut self,
        route: usize,
        mut req: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
        R: ReplayRequest<ReqBody>,
    {
        // The copy is taken before the token goes in; a retry gets the new one.
        let retry = self
            .layer
            .replay
            .replay(&req)
            .map(|copy| Box::new((self.inner.clone(), copy)));
        let handle = &self.layer.routes[route].handle;
        let mut reactive = Box::new(Reactive {
            handle: handle.clone(),
            used: None,
            retry,
        });
        match handle.try_now() {
            Some(header) => {
                reactive.used = Some(header.clone());
                req.headers_mut().insert(AUTHORIZATION, header);
                ResponseFuture::future(self.inner.call(req), Some(reactive))
            }
            None => self.fetch(route, req, Some(reactive)),
        }
    }

    /// No valid token: the request waits in the future for the fetch of `routes[route]`.
    #[cold]
    fn fetch<ReqBody, ResBody>(
        &mut self,
        route: usize,
        req: Request<ReqBody>,
        reactive: Option<Box<Reactive<S, ReqBody>>>,
    ) -> ResponseFuture<S::Future, S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        let handle = &self.layer.routes[route].handle;
        // The instance made ready by `poll_ready` goes into the future; a fresh clone
        // stays here. See tower's "Be careful when cloning inner services":
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::fetching(handle.fetch(), handle.clone(), inner, req, reactive)
    }
}
