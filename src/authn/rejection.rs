//! Building the response for a rejection.

use std::fmt;
use std::sync::Arc;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response};

use crate::error::AuthError;

/// Turns a rejection into a response. Implemented by [`DefaultRejection`] and by any
/// `Fn(&AuthError, bool) -> Response<B>` closure (the `bool` says the request is gRPC).
///
/// # Example
///
/// ```
/// use http::{Response, StatusCode};
/// use tower_bearer::authn::{DefaultRejection, ResponseForRejection};
/// use tower_bearer::AuthError;
///
/// fn status<R: ResponseForRejection<()>>(r: &R) -> StatusCode {
///     r.response(&AuthError::AccessDenied, false).status()
/// }
/// let closure = |e: &AuthError, _grpc: bool| Response::builder().status(e.status()).body(()).unwrap();
/// assert_eq!(status(&closure), StatusCode::FORBIDDEN);
/// assert_eq!(status(&DefaultRejection::default()), StatusCode::FORBIDDEN);
/// ```
pub trait ResponseForRejection<B>: Clone + Send + Sync + 'static {
    /// The response for `error`; `grpc` is true for `content-type: application/grpc*` requests.
    fn response(&self, error: &AuthError, grpc: bool) -> Response<B>;
}

impl<B, F> ResponseForRejection<B> for F
where
    F: Fn(&AuthError, bool) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn response(&self, error: &AuthError, grpc: bool) -> Response<B> {
        self(error, grpc)
    }
}

/// The RFC 6750 response: status, `WWW-Authenticate`, `Retry-After` for 503,
/// `Cache-Control: no-store`; for gRPC a trailers-only status. The [`AuthError`] is put into the
/// response extensions.
///
/// # Example
///
/// ```
/// use http::Response;
/// use tower_bearer::authn::DefaultRejection;
/// use tower_bearer::AuthError;
///
/// let res: Response<()> = DefaultRejection::default().build(&AuthError::MissingCredentials, false);
/// assert_eq!(res.status(), 401);
/// assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");
/// assert_eq!(res.headers()["cache-control"], "no-store");
/// ```
#[derive(Clone)]
pub struct DefaultRejection {
    realm: Option<Arc<str>>,
    describe: bool,
    keys_unavailable_401: bool,
}

impl Default for DefaultRejection {
    fn default() -> Self {
        Self {
            realm: Some("api".into()),
            describe: false,
            keys_unavailable_401: false,
        }
    }
}

impl fmt::Debug for DefaultRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultRejection")
            .field("realm", &self.realm)
            .field("describe", &self.describe)
            .field("keys_unavailable_401", &self.keys_unavailable_401)
            .finish()
    }
}

impl DefaultRejection {
    /// The `realm` of challenges (default `api`; `None` omits it).
    ///
    /// # Example
    ///
    /// ```
    /// use http::Response;
    /// use tower_bearer::authn::DefaultRejection;
    /// use tower_bearer::AuthError;
    ///
    /// let res: Response<()> = DefaultRejection::default().with_realm(None).build(&AuthError::MissingCredentials, false);
    /// assert_eq!(res.headers()["www-authenticate"], "Bearer");
    /// ```
    #[must_use]
    pub fn with_realm(mut self, realm: Option<&str>) -> Self {
        self.realm = realm.map(Into::into);
        self
    }
    /// Add a terse `error_description` (off by default).
    ///
    /// # Example
    ///
    /// ```
    /// use http::Response;
    /// use tower_bearer::authn::DefaultRejection;
    /// use tower_bearer::error::{AuthError, TokenError};
    ///
    /// let rejection = DefaultRejection::default().with_error_description(true);
    /// let res: Response<()> = rejection.build(&AuthError::InvalidToken(TokenError::Expired), false);
    /// assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("error_description="));
    /// ```
    #[must_use]
    pub fn with_error_description(mut self, describe: bool) -> Self {
        self.describe = describe;
        self
    }
    /// Answer 401 `invalid_token` instead of 503 when keys are unavailable.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::Response;
    /// use tower_bearer::authn::DefaultRejection;
    /// use tower_bearer::AuthError;
    ///
    /// let err = AuthError::KeysUnavailable { retry_after: Duration::from_secs(5) };
    /// let res: Response<()> = DefaultRejection::default().build(&err, false);
    /// assert_eq!(res.status(), 503);
    /// let res: Response<()> = DefaultRejection::default().with_keys_unavailable_as_401(true).build(&err, false);
    /// assert_eq!(res.status(), 401);
    /// ```
    #[must_use]
    pub fn with_keys_unavailable_as_401(mut self, yes: bool) -> Self {
        self.keys_unavailable_401 = yes;
        self
    }

    /// Builds the response for `error`.
    ///
    /// # Example
    ///
    /// ```
    /// use http::Response;
    /// use tower_bearer::authn::DefaultRejection;
    /// use tower_bearer::AuthError;
    ///
    /// let res: Response<()> = DefaultRejection::default().build(&AuthError::AccessDenied, false);
    /// assert_eq!(res.status(), 403);
    /// assert!(res.extensions().get::<AuthError>().is_some());
    /// let grpc: Response<()> = DefaultRejection::default().build(&AuthError::AccessDenied, true);
    /// assert_eq!(grpc.status(), 200); // gRPC: trailers-only status
    /// ```
    pub fn build<B: Default>(&self, error: &AuthError, grpc: bool) -> Response<B> {
        let shown = match error {
            AuthError::KeysUnavailable { .. } if self.keys_unavailable_401 => {
                AuthError::InvalidToken(crate::error::TokenError::UnknownKey)
            }
            other => other.clone(),
        };
        let mut res = Response::new(B::default());
        let headers = res.headers_mut();
        if let Some(challenge) = shown.www_authenticate(self.realm.as_deref(), self.describe) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        match &shown {
            AuthError::KeysUnavailable { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            AuthError::PolicyUnavailable | AuthError::RevocationUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from(1u64));
            }
            _ => {}
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if grpc {
            grpc_status(headers, &shown);
        } else {
            *res.status_mut() = shown.status();
        }
        res.extensions_mut().insert(error.clone());
        res
    }
}

impl<B: Default> ResponseForRejection<B> for DefaultRejection {
    fn response(&self, error: &AuthError, grpc: bool) -> Response<B> {
        self.build(error, grpc)
    }
}

/// Whether the request is gRPC: `content-type: application/grpc-web*` (any HTTP version), or
/// `application/grpc*` over HTTP/2 (gRPC proper never runs over HTTP/1.1, so an HTTP/1.1 request
/// claiming it gets the plain HTTP answer).
///
/// # Example
///
/// ```
/// use http::{Request, Version};
/// use tower_bearer::authn::is_grpc;
///
/// let grpc = Request::post("/svc/M").version(Version::HTTP_2).header("content-type", "application/grpc").body(()).unwrap();
/// assert!(is_grpc(&grpc));
/// let http11 = Request::post("/svc/M").header("content-type", "application/grpc").body(()).unwrap();
/// assert!(!is_grpc(&http11));
/// ```
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    let Some(ct) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let starts = |p: &str| ct.get(..p.len()).is_some_and(|x| x.eq_ignore_ascii_case(p));
    starts("application/grpc-web")
        || (starts("application/grpc") && req.version() == http::Version::HTTP_2)
}

/// Trailers-only gRPC answer: HTTP 200, `grpc-status`, `grpc-message` (percent-encoded).
fn grpc_status(headers: &mut HeaderMap, error: &AuthError) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(error.grpc_code().as_i32()));
    let msg: String = error
        .description()
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&msg) {
        headers.insert("grpc-message", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenError;
    use http::StatusCode;

    #[test]
    fn grpc_detection() {
        let req = |ct: &str, v: http::Version| {
            http::Request::builder()
                .header(CONTENT_TYPE, ct)
                .version(v)
                .body(())
                .unwrap()
        };
        assert!(is_grpc(&req("application/grpc", http::Version::HTTP_2)));
        assert!(is_grpc(&req(
            "application/grpc+proto",
            http::Version::HTTP_2
        )));
        assert!(!is_grpc(&req("application/grpc", http::Version::HTTP_11)));
        assert!(is_grpc(&req(
            "application/grpc-web+proto",
            http::Version::HTTP_11
        )));
        assert!(!is_grpc(&req("application/json", http::Version::HTTP_2)));
    }

    #[test]
    fn grpc_and_http() {
        let r = DefaultRejection::default();
        let err = AuthError::InvalidToken(TokenError::Expired);
        let res: Response<()> = r.build(&err, true);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(res.headers()["grpc-message"], "expired");
        let res: Response<()> = r.build(&err, false);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.extensions().get::<AuthError>(), Some(&err));
        let unavailable = AuthError::KeysUnavailable {
            retry_after: std::time::Duration::from_secs(3),
        };
        let res: Response<()> = r.build(&unavailable, false);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[RETRY_AFTER], "3");
        let res: Response<()> = r
            .clone()
            .with_keys_unavailable_as_401(true)
            .build(&unavailable, false);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res: Response<()> = r.build(&unavailable, true);
        assert_eq!(res.headers()["grpc-status"], "14");
    }
}
