//! [`ReplayRequest`]: how the reactive mode gets a second copy of a request.

use http::Request;

/// Makes a copy of a request before it is sent, so that [`InjectBearer`](super::InjectBearer)
/// can send it again (once) with a fresh token after a downstream
/// `401 WWW-Authenticate: Bearer error="invalid_token"`.
///
/// Bodies are generally streams that can be sent once; the layer does not buffer them. Choose
/// [`CloneBody`] when the body type is `Clone` (`Full<Bytes>`, `String`, `()`), a closure for
/// anything else, or keep [`NoReplay`] (the default): the stale token is still invalidated,
/// and the 401 goes back to the caller.
///
/// Closures `FnMut(&Request<B>) -> Option<Request<B>>` implement it.
///
/// # Example
///
/// ```
/// use http::Request;
/// use tower_bearer::outbound::{CloneBody, NoReplay, ReplayRequest};
///
/// let req = Request::new("body".to_owned());
/// assert!(CloneBody.replay(&req).is_some());
/// assert!(NoReplay.replay(&req).is_none());
/// // Only small bodies, say:
/// let mut small = |r: &Request<String>| (r.body().len() < 1024).then(|| r.clone());
/// assert!(small.replay(&req).is_some());
/// ```
pub trait ReplayRequest<B> {
    /// A copy of `request` to send if the first answer says the token is stale, or `None`.
    fn replay(&mut self, request: &Request<B>) -> Option<Request<B>>;
}

/// Never replays (the default).
///
/// # Example
///
/// See [`ReplayRequest`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplay;

impl<B> ReplayRequest<B> for NoReplay {
    fn replay(&mut self, _: &Request<B>) -> Option<Request<B>> {
        None
    }
}

/// Replays by cloning the request (method, URI, version, headers, extensions, body); for body
/// types that are `Clone`.
///
/// # Example
///
/// See [`ReplayRequest`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneBody;

impl<B: Clone> ReplayRequest<B> for CloneBody {
    fn replay(&mut self, request: &Request<B>) -> Option<Request<B>> {
        Some(request.clone())
    }
}

impl<B, F> ReplayRequest<B> for F
where
    F: FnMut(&Request<B>) -> Option<Request<B>>,
{
    fn replay(&mut self, request: &Request<B>) -> Option<Request<B>> {
        self(request)
    }
}
