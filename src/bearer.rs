//! Extracting the bearer token from a request (RFC 6750 §2.1, strict).
//!
//! - The `Bearer` scheme is matched case-insensitively; any other scheme (e.g. `Basic`) or no
//!   `Authorization` header at all means "no bearer credentials" (a bare 401 challenge).
//! - `Bearer` with no token, a value that is not an RFC 6750 `b64token`, several `Authorization`
//!   headers, or a header plus an `access_token` query parameter are `invalid_request` (400).
//! - The `access_token` query parameter (RFC 6750 §2.3) is off by default.
//!
//! # Example
//!
//! ```
//! use tower_bearer::bearer::{extract_bearer, BearerOptions};
//! use tower_bearer::error::{AuthError, RequestError};
//!
//! let req = http::Request::builder()
//!     .header("authorization", "bEaReR abc.def.ghi")
//!     .body(())
//!     .unwrap();
//! let opts = BearerOptions::default();
//! let token = extract_bearer(req.headers(), req.uri(), &opts).unwrap();
//! assert_eq!(token.as_deref(), Some("abc.def.ghi"));
//!
//! let req = http::Request::builder()
//!     .header("authorization", "Bearer ")
//!     .body(())
//!     .unwrap();
//! assert_eq!(
//!     extract_bearer(req.headers(), req.uri(), &opts),
//!     Err(AuthError::InvalidRequest(RequestError::MalformedCredentials))
//! );
//! ```

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Uri};

use crate::error::{AuthError, RequestError, TokenError};

/// Default maximum token length in bytes (8 KiB).
///
/// # Example
///
/// ```
/// use tower_bearer::bearer::{BearerOptions, DEFAULT_MAX_TOKEN_LEN};
///
/// assert_eq!(DEFAULT_MAX_TOKEN_LEN, 8192);
/// assert_eq!(BearerOptions::default().max_token_len, DEFAULT_MAX_TOKEN_LEN);
/// ```
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// How bearer tokens are read from requests.
///
/// # Example
///
/// ```
/// use tower_bearer::bearer::{extract_bearer, BearerOptions};
///
/// let opts = BearerOptions { allow_query_parameter: true, ..BearerOptions::default() };
/// let uri: http::Uri = "/orders?access_token=abc".parse().unwrap();
/// let headers = http::HeaderMap::new();
/// let token = extract_bearer(&headers, &uri, &opts).unwrap();
/// assert_eq!(token.as_deref(), Some("abc"));
/// ```
#[derive(Debug, Clone)]
pub struct BearerOptions {
    /// Accept `?access_token=` (RFC 6750 §2.3). Off by default: query strings end up in logs.
    pub allow_query_parameter: bool,
    /// Tokens longer than this are refused before any decoding.
    pub max_token_len: usize,
}

impl Default for BearerOptions {
    fn default() -> Self {
        Self {
            allow_query_parameter: false,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }
}

/// Reads the bearer token of a request.
///
/// Returns `Ok(None)` when there are no bearer credentials (no header, or another scheme).
///
/// # Example
///
/// ```
/// use tower_bearer::bearer::{extract_bearer, BearerOptions};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Basic dXNlcjpwdw==".parse().unwrap());
/// let uri = http::Uri::from_static("/");
/// let token = extract_bearer(&headers, &uri, &BearerOptions::default()).unwrap();
/// assert_eq!(token, None);
/// ```
///
/// # Errors
///
/// [`AuthError::InvalidRequest`] for malformed or multiple credentials,
/// [`AuthError::InvalidToken`] with [`TokenError::TooLarge`] for an oversized token.
pub fn extract_bearer<'a>(
    headers: &'a HeaderMap,
    uri: &'a Uri,
    opts: &BearerOptions,
) -> Result<Option<Cow<'a, str>>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let header = values.next();
    if header.is_some() && values.next().is_some() {
        return Err(AuthError::InvalidRequest(RequestError::MultipleCredentials));
    }
    // Spring and RFC 6750 §2: a token in the query and one in the header is ambiguous, whether
    // or not the query form is enabled.
    let query_token = query_access_token(uri)?;
    let from_header = match header {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| AuthError::InvalidRequest(RequestError::MalformedHeader))?;
            parse_authorization(value, opts.max_token_len)?
        }
    };
    match (from_header, query_token) {
        (Some(_), Some(_)) => Err(AuthError::InvalidRequest(RequestError::MultipleCredentials)),
        (Some(t), None) => Ok(Some(Cow::Borrowed(t))),
        (None, Some(q)) if opts.allow_query_parameter => {
            if q.len() > opts.max_token_len {
                return Err(AuthError::InvalidToken(TokenError::TooLarge));
            }
            if q.is_empty() || !is_b64token(&q) {
                return Err(AuthError::InvalidRequest(
                    RequestError::MalformedCredentials,
                ));
            }
            Ok(Some(q))
        }
        (None, _) => Ok(None),
    }
}

/// Parses one `Authorization` value: `Ok(None)` for another scheme.
fn parse_authorization(value: &str, max_len: usize) -> Result<Option<&str>, AuthError> {
    let (scheme, rest) = match value.find(' ') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::InvalidRequest(
            RequestError::MalformedCredentials,
        ));
    }
    if token.len() > max_len {
        return Err(AuthError::InvalidToken(TokenError::TooLarge));
    }
    if !is_b64token(token) {
        return Err(AuthError::InvalidRequest(
            RequestError::MalformedCredentials,
        ));
    }
    Ok(Some(token))
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The `access_token` query parameter, percent-decoded; more than one is an error.
fn query_access_token(uri: &Uri) -> Result<Option<Cow<'_, str>>, AuthError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "access_token" {
            continue;
        }
        if found.is_some() {
            return Err(AuthError::InvalidRequest(RequestError::MultipleCredentials));
        }
        found = Some(percent_decode(value).ok_or(AuthError::InvalidRequest(
            RequestError::MalformedCredentials,
        ))?);
    }
    Ok(found)
}

fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['%', '+']) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                // Form encoding: '+' is a space, which a b64token cannot hold.
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(headers: &[&str], uri: &str, query: bool) -> Result<Option<String>, AuthError> {
        let mut b = http::Request::builder().uri(uri);
        for h in headers {
            b = b.header(AUTHORIZATION, *h);
        }
        let req = b.body(()).unwrap();
        let opts = BearerOptions {
            allow_query_parameter: query,
            ..Default::default()
        };
        extract_bearer(req.headers(), req.uri(), &opts).map(|t| t.map(|t| t.into_owned()))
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for h in [
            "Bearer a.b.c",
            "bearer a.b.c",
            "BEARER a.b.c",
            "Bearer   a.b.c",
        ] {
            assert_eq!(run(&[h], "/", false).unwrap().as_deref(), Some("a.b.c"));
        }
    }

    #[test]
    fn other_schemes_and_absence_are_no_credentials() {
        assert_eq!(run(&[], "/", false), Ok(None));
        assert_eq!(run(&["Basic dXNlcjpwYXNz"], "/", false), Ok(None));
        assert_eq!(run(&["Bearerx a.b.c"], "/", false), Ok(None));
    }

    #[test]
    fn malformed_values_are_invalid_request() {
        let bad = AuthError::InvalidRequest(RequestError::MalformedCredentials);
        for h in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer =",
            "Bearer a\"b",
        ] {
            assert_eq!(run(&[h], "/", false), Err(bad.clone()), "{h:?}");
        }
    }

    #[test]
    fn several_credentials_are_invalid_request() {
        let multi = AuthError::InvalidRequest(RequestError::MultipleCredentials);
        assert_eq!(
            run(&["Bearer a", "Bearer b"], "/", false),
            Err(multi.clone())
        );
        assert_eq!(
            run(&["Bearer a", "Basic b"], "/", false),
            Err(multi.clone())
        );
        assert_eq!(
            run(&["Bearer a"], "/?access_token=b", false),
            Err(multi.clone())
        );
        assert_eq!(
            run(&["Bearer a"], "/?access_token=b", true),
            Err(multi.clone())
        );
        assert_eq!(
            run(&[], "/?access_token=a&access_token=b", true),
            Err(multi)
        );
    }

    #[test]
    fn query_parameter_only_when_enabled() {
        assert_eq!(run(&[], "/?access_token=a.b.c", false), Ok(None));
        assert_eq!(
            run(&[], "/?x=1&access_token=a.b%2Ec", true)
                .unwrap()
                .as_deref(),
            Some("a.b.c")
        );
        assert!(run(&[], "/?access_token=", true).is_err());
    }

    #[test]
    fn size_limit_before_decoding() {
        let long = format!("Bearer {}", "a".repeat(DEFAULT_MAX_TOKEN_LEN + 1));
        assert_eq!(
            run(&[&long], "/", false),
            Err(AuthError::InvalidToken(TokenError::TooLarge))
        );
    }
}
