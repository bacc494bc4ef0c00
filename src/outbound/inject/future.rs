use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::BoxError;
use crate::http_client::BoxFuture;
use crate::outbound::error::{InjectError, OutboundError};
use crate::outbound::manager::TokenHandle;

/// What the reactive mode needs after the first answer.
pub(crate) struct Reactive<S, ReqBody> {
    pub(crate) handle: TokenHandle,
    /// The `Authorization` value sent.
    pub(crate) used: Option<HeaderValue>,
    /// A ready-to-poll clone of the service and a copy of the request, when replayable
    /// (boxed, like every state off the hit path, so that the future stays small to move).
    pub(crate) retry: Option<Box<(S, Request<ReqBody>)>>,
}

/// A request waiting for its token, with the service instance that will send it.
struct Parked<S, ReqBody> {
    handle: TokenHandle,
    inner: S,
    request: Request<ReqBody>,
    reactive: Option<Box<Reactive<S, ReqBody>>>,
}

pin_project! {
    /// Response future of [`InjectBearer`](super::InjectBearer).
    pub struct ResponseFuture<F, S, ReqBody, ResBody> {
        #[pin]
        kind: Kind<F, S, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, S, ReqBody, ResBody> {
        Future {
            #[pin]
            future: F,
            // Boxed: reactive mode is opt-in, and inline its state would make every future
            // larger (more bytes moved per request).
            reactive: Option<Box<Reactive<S, ReqBody>>>,
        },
        Rejected { error: Option<BoxError> },
        Fetching {
            // Boxed: the token fetch is async and `Send + 'static` (it owns its slot handle).
            fetch: BoxFuture<'static, Result<HeaderValue, OutboundError>>,
            parked: Option<Box<Parked<S, ReqBody>>>,
        },
        Reacting {
            // Invalidate the refused token, then get the current one (`None`: no retry).
            check: BoxFuture<'static, Option<HeaderValue>>,
            response: Option<Box<Response<ResBody>>>,
            retry: Option<Box<(S, Request<ReqBody>)>>,
        },
        RetryReady {
            retry: Option<Box<(S, Request<ReqBody>)>>,
        },
        Retry { #[pin] future: F },
    }
}

impl<F, S, ReqBody, ResBody> fmt::Debug for ResponseFuture<F, S, ReqBody, ResBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Future { .. } => "Future",
            Kind::Rejected { .. } => "Rejected",
            Kind::Fetching { .. } => "Fetching",
            Kind::Reacting { .. } => "Reacting",
            Kind::RetryReady { .. } => "RetryReady",
            Kind::Retry { .. } => "Retry",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, S, ReqBody, ResBody> ResponseFuture<F, S, ReqBody, ResBody> {
    pub(crate) fn future(future: F, reactive: Option<Box<Reactive<S, ReqBody>>>) -> Self {
        Self {
            kind: Kind::Future { future, reactive },
        }
    }

    pub(crate) fn rejected(error: BoxError) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }

    pub(crate) fn fetching(
        fetch: BoxFuture<'static, Result<HeaderValue, OutboundError>>,
        handle: TokenHandle,
        inner: S,
        request: Request<ReqBody>,
        reactive: Option<Box<Reactive<S, ReqBody>>>,
    ) -> Self {
        Self {
            kind: Kind::Fetching {
                fetch,
                parked: Some(Box::new(Parked {
                    handle,
                    inner,
                    request,
                    reactive,
                })),
            },
        }
    }
}

impl<F, E, S, ReqBody, ResBody> Future for ResponseFuture<F, S, ReqBody, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = E, Future = F>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The common state (the token was at hand, no reactive check): the inner future's
        // answer as it is.
        if let KindProj::Future {
            future,
            reactive: None,
        } = self.as_mut().project().kind.project()
        {
            return future.poll(cx).map_err(Into::into);
        }
        self.poll_states(cx)
    }
}

impl<F, E, S, ReqBody, ResBody> ResponseFuture<F, S, ReqBody, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = E, Future = F>,
{
    /// [`poll`](Future::poll) in any state.
    fn poll_states(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<ResBody>, BoxError>> {
        loop {
            let this = self.as_mut().project();
            let next = match this.kind.project() {
                KindProj::Future { future, reactive } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    match reactive.take() {
                        Some(reactive) if refuses_token(&response) => {
                            let Reactive {
                                handle,
                                used,
                                retry,
                            } = *reactive;
                            let Some(used) = used else {
                                return Poll::Ready(Ok(response));
                            };
                            let check = Box::pin(replace_refused(handle, used));
                            Kind::Reacting {
                                check,
                                response: Some(Box::new(response)),
                                retry,
                            }
                        }
                        _ => return Poll::Ready(Ok(response)),
                    }
                }
                KindProj::Rejected { error } => {
                    let error = error.take().expect("future polled after completion");
                    return Poll::Ready(Err(error));
                }
                KindProj::Fetching { fetch, parked } => match ready!(fetch.as_mut().poll(cx)) {
                    Ok(header) => {
                        let Parked {
                            inner: mut svc,
                            mut request,
                            reactive,
                            ..
                        } = *parked.take().expect("future polled after completion");
                        let reactive = reactive.map(|mut r| {
                            r.used = Some(header.clone());
                            r
                        });
                        request.headers_mut().insert(AUTHORIZATION, header);
                        Kind::Future {
                            future: svc.call(request),
                            reactive,
                        }
                    }
                    Err(source) => {
                        let parked = parked.as_ref().expect("future polled after completion");
                        let error = InjectError::Token {
                            client: parked.handle.client_name().clone(),
                            source,
                        };
                        tracing::warn!(error = %error, "request not sent");
                        return Poll::Ready(Err(error.into()));
                    }
                },
                KindProj::Reacting {
                    check,
                    response,
                    retry,
                } => {
                    let fresh = ready!(check.as_mut().poll(cx));
                    match (fresh, retry.take()) {
                        (Some(fresh), Some(mut retry)) => {
                            retry.1.headers_mut().insert(AUTHORIZATION, fresh);
                            Kind::RetryReady { retry: Some(retry) }
                        }
                        _ => {
                            let response = response.take().expect("future polled after completion");
                            return Poll::Ready(Ok(*response));
                        }
                    }
                }
                KindProj::RetryReady { retry } => {
                    let (svc, _) = &mut **retry.as_mut().expect("future polled after completion");
                    ready!(svc.poll_ready(cx)).map_err(Into::into)?;
                    let (mut svc, request) = *retry.take().expect("future polled after completion");
                    Kind::Retry {
                        future: svc.call(request),
                    }
                }
                KindProj::Retry { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}

/// The reactive mode after a refusal of `used`: invalidate it (if still current, at most once
/// per interval), then the token to retry with, if there is a different one.
pub(crate) async fn replace_refused(handle: TokenHandle, used: HeaderValue) -> Option<HeaderValue> {
    handle.invalidate_if_current(&used);
    match handle.fetch().await {
        Ok(fresh) if fresh != used => Some(fresh),
        _ => None,
    }
}

/// `401` with a `Bearer` challenge whose `error` is `invalid_token`.
fn refuses_token<B>(response: &Response<B>) -> bool {
    refuses_token_parts(response.status(), response.headers())
}

/// [`refuses_token`] on the parts of a response.
pub(crate) fn refuses_token_parts(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        && headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(bearer_invalid_token)
}

/// Scans RFC 9110 §11.6.1 challenges for `Bearer … error="invalid_token"`.
fn bearer_invalid_token(value: &str) -> bool {
    let b = value.as_bytes();
    let mut i = 0;
    let mut bearer = false;
    let is_sep = |c: u8| c == b',' || c == b' ' || c == b'\t';
    while i < b.len() {
        while i < b.len() && is_sep(b[i]) {
            i += 1;
        }
        let start = i;
        while i < b.len() && !is_sep(b[i]) && b[i] != b'=' {
            i += 1;
        }
        let name = &value[start..i];
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !name.is_empty() {
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let param_value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    v.push(b[i] as char);
                    i += 1;
                }
                i += 1;
                v
            } else {
                let s = i;
                while i < b.len() && !is_sep(b[i]) {
                    i += 1;
                }
                value[s..i].to_owned()
            };
            if bearer && name.eq_ignore_ascii_case("error") && param_value == "invalid_token" {
                return true;
            }
        } else if !name.is_empty() {
            bearer = name.eq_ignore_ascii_case("bearer");
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::bearer_invalid_token as f;

    #[test]
    fn challenges() {
        assert!(f(r#"Bearer error="invalid_token""#));
        assert!(f(
            r#"bearer realm="api", error="invalid_token", error_description="x""#
        ));
        assert!(f(r#"Basic realm="a,b", Bearer error=invalid_token"#));
        assert!(!f(r#"Bearer error="insufficient_scope""#));
        assert!(!f(r#"Bearer realm="api""#));
        assert!(!f(r#"Basic error="invalid_token""#));
        assert!(!f(r#"Bearer realm="error=\"invalid_token\"""#));
        assert!(!f(""));
        assert!(!f("=,=\""));
    }
}
