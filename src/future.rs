use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::authn::ResponseForRejection;
use crate::error::AuthError;
use crate::http_client::BoxFuture;

/// An asynchronous check that hands the request back (possibly with extensions added) or refuses.
pub(crate) type Check<ReqBody> = BoxFuture<'static, Result<Request<ReqBody>, AuthError>>;

pin_project! {
    /// Response future of the security layers ([`JwtAuth`](crate::authn::JwtAuth),
    /// [`Authorize`](crate::authz::Authorize), the gateway and policy layers): the inner
    /// service's future, a rejection response, or an asynchronous check (key fetch, policy
    /// lookup) that runs before the inner service is called.
    pub struct ResponseFuture<F, S, ReqBody, ResBody, R> {
        #[pin]
        kind: Kind<F, S, ReqBody, ResBody, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, S, ReqBody, ResBody, R> {
        Future { #[pin] future: F },
        Rejected { response: Option<Response<ResBody>> },
        Checking {
            // Boxed: key fetching and policy lookups are async and `Send + 'static` (they own
            // the request, the token and a handle on shared state).
            check: Check<ReqBody>,
            inner: Option<S>,
            rejection: R,
            grpc: bool,
        },
    }
}

impl<F, S, ReqBody, ResBody, R> fmt::Debug for ResponseFuture<F, S, ReqBody, ResBody, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Future { .. } => "Future",
            Kind::Rejected { .. } => "Rejected",
            Kind::Checking { .. } => "Checking",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, S, ReqBody, ResBody, R> ResponseFuture<F, S, ReqBody, ResBody, R> {
    pub(crate) fn future(future: F) -> Self {
        Self {
            kind: Kind::Future { future },
        }
    }
    pub(crate) fn rejected(response: Response<ResBody>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
    pub(crate) fn checking(check: Check<ReqBody>, inner: S, rejection: R, grpc: bool) -> Self {
        Self {
            kind: Kind::Checking {
                check,
                inner: Some(inner),
                rejection,
                grpc,
            },
        }
    }
}

impl<F, E, S, ReqBody, ResBody, R> Future for ResponseFuture<F, S, ReqBody, ResBody, R>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = E, Future = F>,
    R: ResponseForRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let next = match this.kind.project() {
                KindProj::Future { future } => return future.poll(cx),
                KindProj::Rejected { response } => {
                    let response = response.take().expect("future polled after completion");
                    return Poll::Ready(Ok(response));
                }
                KindProj::Checking {
                    check,
                    inner,
                    rejection,
                    grpc,
                } => match ready!(check.as_mut().poll(cx)) {
                    Ok(req) => {
                        let mut svc = inner.take().expect("future polled after completion");
                        Kind::Future {
                            future: svc.call(req),
                        }
                    }
                    Err(e) => {
                        crate::telemetry::rejection(&e);
                        Kind::Rejected {
                            response: Some(rejection.response(&e, *grpc)),
                        }
                    }
                },
            };
            self.as_mut().project().kind.set(next);
        }
    }
}
