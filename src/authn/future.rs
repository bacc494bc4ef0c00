use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::rejection::ResponseForRejection;
use super::service::insert_user;
use crate::claims::CurrentUser;
use crate::error::AuthError;
use crate::http_client::BoxFuture;

pin_project! {
    /// Response future of [`JwtAuth`](super::JwtAuth).
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
        Verifying {
            // Boxed: key fetching is async and `Send + 'static` (it owns the token and verifier).
            verify: BoxFuture<'static, Result<CurrentUser, AuthError>>,
            inner: Option<S>,
            request: Option<Request<ReqBody>>,
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
            Kind::Verifying { .. } => "Verifying",
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
    pub(crate) fn verifying(
        verify: BoxFuture<'static, Result<CurrentUser, AuthError>>,
        inner: S,
        request: Request<ReqBody>,
        rejection: R,
        grpc: bool,
    ) -> Self {
        Self {
            kind: Kind::Verifying {
                verify,
                inner: Some(inner),
                request: Some(request),
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
                KindProj::Verifying {
                    verify,
                    inner,
                    request,
                    rejection,
                    grpc,
                } => match ready!(verify.as_mut().poll(cx)) {
                    Ok(user) => {
                        let mut req = request.take().expect("future polled after completion");
                        insert_user(&mut req, user);
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
