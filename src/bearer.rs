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

use http::header::{AUTHORIZATION, Entry};
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
        Some(value) => match well_formed_bearer(value.as_bytes(), opts.max_token_len) {
            Some(token) => Some(token),
            // Anything else takes the long way, which names the precise reason.
            None => {
                let value = value
                    .to_str()
                    .map_err(|_| AuthError::InvalidRequest(RequestError::MalformedHeader))?;
                parse_authorization(value, opts.max_token_len)?
            }
        },
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

/// Marks every `Authorization` value sensitive (kept out of `Debug` output and HPACK tables)
/// and, in the same header lookup, returns the token bytes of the common request shape,
/// checked no further: no query (`has_query` false), exactly one `Authorization` value,
/// `Bearer` (any case) and one space, then 1 to `max_len` bytes. Only for looking up tokens
/// verified before (all `b64token`s, so a hit is what [`extract_bearer`] would have returned);
/// anything else, and every miss, takes [`extract_bearer`].
pub(crate) fn mark_sensitive_bearer_bytes(
    headers: &mut HeaderMap,
    has_query: bool,
    max_len: usize,
) -> Option<&[u8]> {
    // No header name repeated (values == names), so at most one `Authorization`: a plain
    // lookup. Otherwise the entry, to mark every value and to refuse repeated ones.
    if headers.len() == headers.keys_len() {
        let value = headers.get_mut(AUTHORIZATION)?;
        value.set_sensitive(true);
        return bearer_bytes(value.as_bytes(), has_query, max_len);
    }
    mark_sensitive_repeated(headers, has_query, max_len)
}

/// [`mark_sensitive_bearer_bytes`] when some header name is repeated.
#[cold]
#[inline(never)]
fn mark_sensitive_repeated(
    headers: &mut HeaderMap,
    has_query: bool,
    max_len: usize,
) -> Option<&[u8]> {
    let Entry::Occupied(mut e) = headers.entry(AUTHORIZATION) else {
        return None;
    };
    let mut n = 0usize;
    for v in e.iter_mut() {
        v.set_sensitive(true);
        n += 1;
    }
    if n != 1 {
        return None;
    }
    bearer_bytes(e.into_mut().as_bytes(), has_query, max_len)
}

/// The token of `Bearer <token>` (any case, one space), 1 to `max_len` bytes, checked no
/// further; `None` with a query.
#[inline]
fn bearer_bytes(value: &[u8], has_query: bool, max_len: usize) -> Option<&[u8]> {
    if has_query {
        return None;
    }
    let (scheme, token) = value.split_at_checked(7)?;
    let bearer = scheme[..6].eq_ignore_ascii_case(b"bearer") && scheme[6] == b' ';
    (bearer && !token.is_empty() && token.len() <= max_len).then_some(token)
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

/// The common case in one pass over the bytes: `Bearer` (any case), one space, and a
/// `b64token` within `max_len`. Returns exactly what [`parse_authorization`] would for such a
/// value; `None` for anything else (which then takes the long way).
fn well_formed_bearer(value: &[u8], max_len: usize) -> Option<&str> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme[..6].eq_ignore_ascii_case(b"bearer") || scheme[6] != b' ' {
        return None;
    }
    if token.len() > max_len || !is_b64token_bytes(token) {
        return None;
    }
    // Only ASCII is left: this cannot fail.
    std::str::from_utf8(token).ok()
}

/// `B64TOKEN[b]`: `b` is one of `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`.
static B64TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    t
};

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    is_b64token_bytes(s.as_bytes())
}

fn is_b64token_bytes(s: &[u8]) -> bool {
    let pad = s.iter().rev().take_while(|b| **b == b'=').count();
    let body = &s[..s.len() - pad];
    // Branch-free over blocks of the body (vectorized): tokens are long and almost always valid.
    let mut blocks = body.chunks_exact(32);
    let whole = blocks
        .by_ref()
        .all(|block| block.iter().fold(true, |ok, b| ok & b64token_byte(*b)));
    !body.is_empty() && whole && blocks.remainder().iter().all(|b| B64TOKEN[usize::from(*b)])
}

/// The same answer as `B64TOKEN[b]`, in comparisons the compiler vectorizes.
#[inline(always)]
fn b64token_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    // `+` `-` `.` `/` are 0x2B, 0x2D, 0x2E, 0x2F.
    let sign = (b.wrapping_sub(b'+') < 5) & (b != b',');
    letter | digit | sign | (b == b'_') | (b == b'~')
}

/// The `access_token` query parameter; more than one is an error.
///
/// The query is parsed as `application/x-www-form-urlencoded` (`form_urlencoded`, as axum's
/// `Query` and `serde_urlencoded` do), so names are decoded too: `access%5Ftoken` is
/// `access_token`, exactly as the application will read it. A malformed escape (`%+A`, `%-1`)
/// is kept as it is, and a `%` is never part of a `b64token`.
fn query_access_token(uri: &Uri) -> Result<Option<Cow<'_, str>>, AuthError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name != "access_token" {
            continue;
        }
        if found.is_some() {
            return Err(AuthError::InvalidRequest(RequestError::MultipleCredentials));
        }
        found = Some(value);
    }
    Ok(found)
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

    /// The cache-lookup shape only answers for one `Bearer` header and no query: every other
    /// request (two headers, a query, another scheme, too long) takes `extract_bearer`.
    #[test]
    fn bearer_bytes_only_for_the_plain_shape() {
        let get = |headers: &[&str], uri: &str, max: usize| {
            let mut b = http::Request::builder().uri(uri);
            for h in headers {
                b = b.header(AUTHORIZATION, *h);
            }
            let mut req = b.body(()).unwrap();
            let has_query = req.uri().query().is_some();
            let t =
                mark_sensitive_bearer_bytes(req.headers_mut(), has_query, max).map(<[u8]>::to_vec);
            // Every value is marked sensitive, whatever the shape.
            assert!(
                req.headers()
                    .get_all(AUTHORIZATION)
                    .iter()
                    .all(|v| v.is_sensitive())
            );
            t
        };
        assert_eq!(get(&["Bearer a.b.c"], "/x", 16), Some(b"a.b.c".to_vec()));
        assert_eq!(get(&["bEaReR a.b.c"], "/x", 16), Some(b"a.b.c".to_vec()));
        assert_eq!(get(&["Bearer a.b.c"], "/x", 4), None);
        assert_eq!(get(&["Bearer a.b.c"], "/x?access_token=a.b.c", 16), None);
        assert_eq!(get(&["Bearer a.b.c"], "/x?", 16), None);
        assert_eq!(get(&["Bearer a.b.c", "Bearer a.b.c"], "/x", 16), None);
        assert_eq!(get(&["Basic a.b.c"], "/x", 16), None);
        assert_eq!(get(&["Bearer "], "/x", 16), None);
        assert_eq!(get(&["Bearer\ta.b.c"], "/x", 16), None);
        assert_eq!(get(&[], "/x", 16), None);
    }

    /// Whether or not some other header name is repeated (the plain lookup or the entry), the
    /// answer is the same and every `Authorization` value is marked sensitive.
    #[test]
    fn bearer_bytes_with_repeated_headers() {
        for extra in [&[][..], &["1"][..], &["1", "2"][..]] {
            let get = |auth: &[&str]| {
                let mut b = http::Request::builder().uri("/x");
                for v in extra {
                    b = b.header("x-other", *v);
                }
                for h in auth {
                    b = b.header(AUTHORIZATION, *h);
                }
                let mut req = b.body(()).unwrap();
                let t =
                    mark_sensitive_bearer_bytes(req.headers_mut(), false, 16).map(<[u8]>::to_vec);
                let values = req.headers().get_all(AUTHORIZATION);
                assert!(
                    values.iter().all(|v| v.is_sensitive()),
                    "{extra:?} {auth:?}"
                );
                t
            };
            assert_eq!(get(&["Bearer a.b.c"]), Some(b"a.b.c".to_vec()), "{extra:?}");
            assert_eq!(get(&["Bearer a.b.c", "Bearer a.b.c"]), None, "{extra:?}");
            assert_eq!(get(&["Bearer a.b.c", "Basic x"]), None, "{extra:?}");
            assert_eq!(get(&[]), None, "{extra:?}");
        }
    }

    /// The vectorized byte check is the RFC 6750 `b64token` table, for every byte, and the
    /// blocked scan finds a bad byte at any position.
    #[test]
    fn b64token_byte_is_the_table() {
        for b in 0..=255u8 {
            assert_eq!(b64token_byte(b), B64TOKEN[usize::from(b)], "byte {b:#04x}");
        }
        let good = "aZ09-._~+/".repeat(10);
        for len in [1, 31, 32, 33, 64, 95, 100] {
            let body = &good[..len];
            assert!(is_b64token(body));
            assert!(is_b64token(&format!("{body}==")));
            for i in 0..len {
                for bad in [b' ', b',', b'%', b'=', 0x80, b'@', b'[', b'`', b'{'] {
                    if bad == b'=' && i == len - 1 && len > 1 {
                        continue; // trailing padding is allowed
                    }
                    let mut v = body.as_bytes().to_vec();
                    v[i] = bad;
                    assert!(!is_b64token_bytes(&v), "{len} {i} {bad:#04x}");
                }
            }
        }
    }

    /// The one-pass fast path answers exactly as the long way whenever it answers at all.
    #[test]
    fn fast_path_agrees_with_the_long_way() {
        let cases: &[&[u8]] = &[
            b"Bearer a.b.c",
            b"bearer a.b.c",
            b"BEARER a.b.c",
            b"Bearer  a.b.c",
            b"Bearer a.b.c==",
            b"Bearer =",
            b"Bearer a=b",
            b"Bearer ",
            b"Bearer",
            b"Bearerx a",
            b"Basic abc",
            b"Bearer a b",
            b"Bearer a\tb",
            b"Bearer a%b",
            b"Bearer \xffa",
            b"Bearer a\x7f",
            b"Bearer ~+/-._AZaz09",
            b"Bearer a.b.c ",
            b"Bearer\ta",
            b"bEaReR xyz===",
        ];
        for max in [3, 5, 4096] {
            for v in cases {
                let Some(fast) = well_formed_bearer(v, max) else {
                    continue;
                };
                let slow = std::str::from_utf8(v)
                    .ok()
                    .map(|v| parse_authorization(v, max));
                assert_eq!(slow, Some(Ok(Some(fast))), "{v:?} (max {max})");
            }
        }
        // Every byte value, alone and inside a token.
        for b in 0..=255u8 {
            let v = [b"Bearer a".as_slice(), &[b], b"z"].concat();
            if let Some(fast) = well_formed_bearer(&v, 4096) {
                let slow = parse_authorization(std::str::from_utf8(&v).unwrap(), 4096);
                assert_eq!(slow, Ok(Some(fast)), "byte {b}");
            } else if B64TOKEN[usize::from(b)] {
                panic!("byte {b} is a b64token byte but the fast path refused it");
            }
        }
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
    fn query_names_are_decoded_like_the_application_does() {
        let multi = AuthError::InvalidRequest(RequestError::MultipleCredentials);
        let bad = AuthError::InvalidRequest(RequestError::MalformedCredentials);
        for q in [
            "access%5Ftoken",
            "access%5ftoken",
            "%61ccess_token",
            "access_t%6Fken",
        ] {
            // A header and an encoded `access_token`: ambiguous, whether or not the query
            // form is enabled.
            for enabled in [false, true] {
                assert_eq!(
                    run(&["Bearer a"], &format!("/?{q}=b"), enabled),
                    Err(multi.clone()),
                    "{q}"
                );
            }
            assert_eq!(
                run(&[], &format!("/?{q}=a.b.c"), true).unwrap().as_deref(),
                Some("a.b.c"),
                "{q}"
            );
            assert_eq!(run(&[], &format!("/?{q}=a.b.c"), false), Ok(None), "{q}");
            assert_eq!(
                run(&[], &format!("/?access_token=a&{q}=b"), true),
                Err(multi.clone()),
                "{q}"
            );
        }
        // Other names stay other names.
        assert_eq!(
            run(&[], "/?access_tokenx=a&xaccess_token=b", true),
            Ok(None)
        );
        assert_eq!(run(&[], "/?access+token=a", true), Ok(None));
        // Malformed escapes are not escapes (`u8::from_str_radix` took `+A` as 10).
        for v in ["%+A", "a%+Ab", "%-1", "a%-1", "%+0a", "%2", "%", "a%zz"] {
            assert_eq!(
                run(&[], &format!("/?access_token={v}"), true),
                Err(bad.clone()),
                "{v}"
            );
        }
        assert_eq!(
            run(&[], "/?access_token=%2B%2Fa%3D", true)
                .unwrap()
                .as_deref(),
            Some("+/a=")
        );
        assert_eq!(run(&[], "/?access_token=a+b", true), Err(bad.clone()));
        assert_eq!(run(&[], "/?access_token=a%FFb", true), Err(bad));
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
