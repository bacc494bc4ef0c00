//! Canonical request paths: accept the path as the router and the upstream will see it, or
//! refuse it (HTTP 400). A path is never rewritten.
//!
//! Authorization rules match on the raw, still percent-encoded path. Anything that a router,
//! a servlet container or a proxy might normalize differently from us (dot segments, `//`,
//! `;` path parameters, `\`, encoded `/` or `.`, double encoding, needless encoding of
//! unreserved characters, invalid UTF-8) is refused, so that the string a rule matched is the
//! one the protected resource is resolved from.
//!
//! # The accepted escapes
//!
//! RFC 3986 §2.2 lets a URI producer escape a reserved character to keep it from acting as a
//! delimiter, but routers (Go `net/http`, grpc-gateway, Spring, ASP.NET Core) decode the path
//! before they route, so `/v1/jobs%3AbatchDelete` reaches the handler of `/v1/jobs:batchDelete`
//! while a rule compared on the raw text would miss it. An escape is therefore accepted only
//! for a byte that may **not** appear raw in a path segment, so that every character has one
//! spelling:
//!
//! | escape | accepted? |
//! |---|---|
//! | `%20` space, `%22` `"`, `%23` `#`, `%3C` `<`, `%3E` `>`, `%3F` `?`, `%5B` `[`, `%5D` `]`, `%5E` `^`, `%60` `` ` ``, `%7B` `{`, `%7C` `\|`, `%7D` `}` | yes |
//! | `%80`-`%FF` forming valid UTF-8 (non-ASCII text, e.g. `%C3%A9`) | yes |
//! | unreserved `ALPHA DIGIT - . _ ~` (`%41`, `%2E`, ...) | no ([`PathError::EncodedUnreserved`]) |
//! | `:` `@` and the sub-delimiters `! $ & ' ( ) * + , =` (`%3A`, `%40`, `%21`, `%24`, `%26`, `%27`, `%28`, `%29`, `%2A`, `%2B`, `%2C`, `%3D`) | no ([`PathError::EncodedReserved`]) |
//! | `;` (`%3B`) | no ([`PathError::EncodedSemicolon`]) |
//! | `/` (`%2F`), `\` (`%5C`), `%` (`%25`) | no (encoded separator, double encoding) |
//! | control characters `%00`-`%1F`, `%7F` | no ([`PathError::EncodedControl`]) |
//!
//! Hex digits may be either case (`%c3%a9` and `%C3%A9`); pattern literals compare their
//! escapes case-insensitively (see [`super::pattern`]).

/// Why a request path is not canonical.
///
/// [`PathError::reason`] is a stable, low-cardinality label for logs and metrics; the
/// `Display` text is a terse description.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty, does not start with `/`, or is the asterisk-form `*`.
    #[error("path does not start with `/`")]
    NotAbsolute,
    /// Two consecutive `/` (an empty segment other than a single trailing `/`).
    #[error("empty path segment")]
    EmptySegment,
    /// A `.` or `..` segment, raw or percent-encoded (`%2e`, `.%2E`, ...).
    #[error("dot segment")]
    DotSegment,
    /// A percent-encoded unreserved character (`ALPHA / DIGIT / - . _ ~`, e.g. `%41`), which
    /// RFC 3986 §2.3 says must be decoded.
    #[error("percent-encoded unreserved character")]
    EncodedUnreserved,
    /// A percent-encoded `/` (`%2F`).
    #[error("percent-encoded slash")]
    EncodedSlash,
    /// A percent-encoded `\` (`%5C`).
    #[error("percent-encoded backslash")]
    EncodedBackslash,
    /// A percent-encoded `%` (`%25`): double encoding.
    #[error("double percent-encoding")]
    DoubleEncoding,
    /// A percent-encoded control character (`%00`-`%1F`, `%7F`).
    #[error("percent-encoded control character")]
    EncodedControl,
    /// A percent-encoded `;` (`%3B`), which some containers decode before stripping path
    /// parameters.
    #[error("percent-encoded semicolon")]
    EncodedSemicolon,
    /// A percent-encoded character that may appear raw in a path segment: `:`, `@` or a
    /// sub-delimiter `! $ & ' ( ) * + , =` (e.g. `%3A`). Routers decode it before matching,
    /// so `/v1/jobs%3AbatchDelete` would step around a rule for `/v1/jobs:batchDelete`.
    #[error("percent-encoded reserved character allowed raw in a path")]
    EncodedReserved,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape")]
    MalformedEscape,
    /// A `;` (matrix / path parameters, stripped by Tomcat and Spring).
    #[error("semicolon in path")]
    Semicolon,
    /// A raw `\`.
    #[error("backslash in path")]
    Backslash,
    /// A byte outside visible ASCII (control characters, space, DEL, non-ASCII), or `?` / `#`.
    #[error("invalid character in path")]
    InvalidChar,
    /// Percent-encoded bytes that do not decode to valid UTF-8 (e.g. `%C0%AF`, `%FF`).
    #[error("percent-encoded bytes are not valid utf-8")]
    InvalidUtf8,
}

impl PathError {
    /// A stable snake_case label for logs and metrics.
    #[doc(hidden)]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotAbsolute => "not_absolute",
            Self::EmptySegment => "empty_segment",
            Self::DotSegment => "dot_segment",
            Self::EncodedUnreserved => "encoded_unreserved",
            Self::EncodedSlash => "encoded_slash",
            Self::EncodedBackslash => "encoded_backslash",
            Self::DoubleEncoding => "double_encoding",
            Self::EncodedControl => "encoded_control",
            Self::EncodedSemicolon => "encoded_semicolon",
            Self::EncodedReserved => "encoded_reserved",
            Self::MalformedEscape => "malformed_escape",
            Self::Semicolon => "semicolon",
            Self::Backslash => "backslash",
            Self::InvalidChar => "invalid_char",
            Self::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// Raw bytes accepted as they are: visible ASCII (`!`-`~`) except `%` (handled as an escape),
/// `;`, `\`, `?`, `#` and `/` (the segment separator, never inside a segment).
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x21;
    while c <= 0x7E {
        t[c] = !matches!(c as u8, b'%' | b';' | b'\\' | b'?' | b'#' | b'/');
        c += 1;
    }
    t
};

/// Checks that `path` (the raw request-target path, as [`http::Uri::path`] returns it: still
/// percent-encoded, without the query) is canonical.
///
/// Canonical means: starts with `/`; no empty segment except a single trailing `/`; no `.` or
/// `..` segment, raw or encoded; only visible ASCII, without `;`, `\`, `?` or `#`; every `%`
/// followed by two hex digits; no escape of an unreserved character, `:`, `@`, a
/// sub-delimiter (`! $ & ' ( ) * + , ; =`), `/`, `\`, `%` or a control character; escaped
/// bytes at or above `0x80` forming valid UTF-8 (see the [module docs](self)).
///
/// The empty path and the asterisk-form `*` are refused as [`PathError::NotAbsolute`].
///
/// # Errors
///
/// The first violation found, scanning from the left.
#[doc(hidden)]
pub fn check_canonical(path: &str) -> Result<(), PathError> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut start = 1;
    loop {
        let end = b[start..]
            .iter()
            .position(|&c| c == b'/')
            .map_or(b.len(), |i| start + i);
        let seg = &b[start..end];
        let last = end == b.len();
        if seg.is_empty() {
            if last {
                return Ok(());
            }
            return Err(PathError::EmptySegment);
        }
        check_segment(seg)?;
        if last {
            return Ok(());
        }
        start = end + 1;
    }
}

/// Checks one non-empty segment (no `/` inside).
fn check_segment(seg: &[u8]) -> Result<(), PathError> {
    if is_dot_segment(seg) {
        return Err(PathError::DotSegment);
    }
    let mut i = 0;
    while i < seg.len() {
        let c = seg[i];
        if PLAIN[usize::from(c)] {
            i += 1;
            continue;
        }
        match c {
            b'%' => {
                let v = escape_at(seg, i)?;
                i += 3;
                match v {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        return Err(PathError::EncodedUnreserved);
                    }
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    b'%' => return Err(PathError::DoubleEncoding),
                    b';' => return Err(PathError::EncodedSemicolon),
                    b':' | b'@' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b','
                    | b'=' => return Err(PathError::EncodedReserved),
                    0x00..=0x1F | 0x7F => return Err(PathError::EncodedControl),
                    0x80..=0xFF => i = check_utf8_sequence(seg, i, v)?,
                    _ => {}
                }
            }
            b';' => return Err(PathError::Semicolon),
            b'\\' => return Err(PathError::Backslash),
            _ => return Err(PathError::InvalidChar),
        }
    }
    Ok(())
}

/// `.` or `..`, each dot raw or as `%2e` / `%2E`.
fn is_dot_segment(seg: &[u8]) -> bool {
    if seg.len() > 6 {
        return false;
    }
    let mut dots = 0;
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'.' {
            i += 1;
        } else if seg.len() - i >= 3
            && seg[i] == b'%'
            && seg[i + 1] == b'2'
            && seg[i + 2].eq_ignore_ascii_case(&b'e')
        {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    (1..=2).contains(&dots)
}

/// The byte encoded by the escape starting at `seg[i] == b'%'`.
fn escape_at(seg: &[u8], i: usize) -> Result<u8, PathError> {
    match (seg.get(i + 1), seg.get(i + 2)) {
        (Some(&h), Some(&l)) => match (hex(h), hex(l)) {
            (Some(h), Some(l)) => Ok((h << 4) | l),
            _ => Err(PathError::MalformedEscape),
        },
        _ => Err(PathError::MalformedEscape),
    }
}

/// The value of one hex digit, either case.
fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Checks the UTF-8 sequence whose lead byte `lead` was just decoded; its continuation bytes
/// must be the escapes starting at `seg[i]`. Returns the index after the sequence.
fn check_utf8_sequence(seg: &[u8], mut i: usize, lead: u8) -> Result<usize, PathError> {
    let len = match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return Err(PathError::InvalidUtf8),
    };
    let mut buf = [lead, 0, 0, 0];
    for slot in &mut buf[1..len] {
        if seg.get(i) != Some(&b'%') {
            return Err(PathError::InvalidUtf8);
        }
        *slot = escape_at(seg, i)?;
        i += 3;
    }
    // `from_utf8` rejects overlong forms, surrogates, values above U+10FFFF and bad
    // continuation bytes.
    match std::str::from_utf8(&buf[..len]) {
        Ok(_) => Ok(i),
        Err(_) => Err(PathError::InvalidUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn refused(path: &str, want: PathError) {
        assert_eq!(check_canonical(path), Err(want), "{path:?}");
    }

    #[track_caller]
    fn accepted(path: &str) {
        assert_eq!(check_canonical(path), Ok(()), "{path:?}");
    }

    #[test]
    fn accepts_canonical_paths() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/admin/",
            "/api/v1/",
            "/api/v1/orders/42",
            "/a/b-c_d.e~f",
            "/.well-known/openid-configuration",
            "/a/.b",
            "/a/b.",
            "/a/...",
            "/a/..b/c",
            "/files/%20name",
            "/x/%C3%A9",
            "/x/%c3%a9",
            "/x/%E2%82%AC",
            "/x/%F0%9F%98%80",
            "/x/%ef%bf%bd",
            "/q/%3F%23%20",
            "/q/%3f%23",
            "/q/%22%3C%3E%5B%5D%7B%7D%7C%5E%60",
            "/q/%22%3c%3e%5b%5d%7b%7d%7c%5e",
            "/a:b@c!$&'()*+,=",
            "/{id}/*/**",
            "/A/B/C",
        ] {
            accepted(p);
        }
    }

    #[test]
    fn refuses_non_absolute() {
        for p in ["", "*", "a", "a/b", "./a", "%2F", "http://x/a", "?a"] {
            refused(p, PathError::NotAbsolute);
        }
    }

    #[test]
    fn refuses_empty_segments() {
        for p in ["//", "//a", "/a//b", "/a//", "/a/b//", "///"] {
            refused(p, PathError::EmptySegment);
        }
    }

    #[test]
    fn refuses_dot_segments() {
        for p in [
            "/.",
            "/..",
            "/./",
            "/../",
            "/a/.",
            "/a/..",
            "/a/./b",
            "/a/../b",
            "/./a",
            "/../a",
            "/a/%2e",
            "/a/%2E",
            "/a/%2e/b",
            "/a/%2E%2E/b",
            "/a/%2e%2e",
            "/a/%2e%2E",
            "/a/%2E%2e/",
            "/a/.%2e",
            "/a/.%2E/b",
            "/a/%2e.",
            "/a/%2E./b",
            "/%2e%2e/etc/passwd",
        ] {
            refused(p, PathError::DotSegment);
        }
    }

    #[test]
    fn refuses_encoded_unreserved() {
        for p in [
            "/%41",
            "/a%61",
            "/%5A",
            "/%5a",
            "/%7A",
            "/%7a",
            "/x%30",
            "/%39",
            "/%2D",
            "/%2d",
            "/%5F",
            "/%5f",
            "/%7E",
            "/%7e",
            "/a%2eb",
            "/a%2Eb",
            "/%2e%2e%2e/x%2E",
            "/.%2e.",
            "/admin%2e",
        ] {
            refused(p, PathError::EncodedUnreserved);
        }
    }

    #[test]
    fn refuses_encoded_separators_and_double_encoding() {
        for p in ["/a%2fb", "/a%2Fb", "/%2f", "/%2F/x"] {
            refused(p, PathError::EncodedSlash);
        }
        for p in ["/a%5cb", "/a%5Cb", "/%5c"] {
            refused(p, PathError::EncodedBackslash);
        }
        for p in ["/%25", "/a%252e", "/a%252E", "/%252f", "/%2541"] {
            refused(p, PathError::DoubleEncoding);
        }
        for p in ["/a%3bb", "/a%3Bb", "/admin%3B"] {
            refused(p, PathError::EncodedSemicolon);
        }
    }

    #[test]
    fn refuses_escapes_of_characters_allowed_raw() {
        for c in [
            b':', b'@', b'!', b'$', b'&', b'\'', b'(', b')', b'*', b'+', b',', b'=',
        ] {
            // Raw: accepted. Escaped, either hex case: refused.
            accepted(&format!("/v1/jobs{}x", char::from(c)));
            refused(&format!("/v1/jobs%{c:02X}x"), PathError::EncodedReserved);
            refused(&format!("/v1/jobs%{c:02x}x"), PathError::EncodedReserved);
        }
        for p in [
            "/v1/jobs%3AbatchDelete",
            "/v1/jobs%3abatchDelete",
            "/users/a%40b",
            "/x%2B",
            "/%2C",
            "/a/b%3Dc/d",
        ] {
            refused(p, PathError::EncodedReserved);
        }
        // Escapes of what must stay escaped keep working.
        for p in ["/a%20b", "/a%3Fb", "/a%23b", "/a%7Bb%7D", "/caf%C3%A9"] {
            accepted(p);
        }
    }

    #[test]
    fn refuses_encoded_controls() {
        for b in (0x00..=0x1F).chain([0x7F]) {
            refused(&format!("/a%{b:02x}"), PathError::EncodedControl);
            refused(&format!("/a%{b:02X}b"), PathError::EncodedControl);
        }
        refused("/%00", PathError::EncodedControl);
        refused("/a%0d%0aX-Evil:1", PathError::EncodedControl);
    }

    #[test]
    fn refuses_malformed_escapes() {
        for p in [
            "/%", "/a%", "/%4", "/a%4", "/%zz", "/%ZZ", "/%g0", "/%0g", "/%-1", "/% 1", "/%4/",
            "/%/a", "/a%%41",
        ] {
            refused(p, PathError::MalformedEscape);
        }
    }

    #[test]
    fn refuses_semicolons_and_backslashes() {
        for p in [
            "/;",
            "/a;b",
            "/admin;jsessionid=1",
            "/a/;/b",
            "/a/..;/b",
            "/a;/",
        ] {
            refused(p, PathError::Semicolon);
        }
        for p in ["/\\", "/a\\b", "/a\\..\\b", "/a/\\"] {
            refused(p, PathError::Backslash);
        }
    }

    #[test]
    fn refuses_invalid_characters() {
        for b in (0x00u8..=0x20).chain([0x7F]) {
            let p = format!("/a{}b", char::from(b));
            refused(&p, PathError::InvalidChar);
        }
        for p in [
            "/a b",
            "/a\tb",
            "/é",
            "/caf\u{e9}",
            "/\u{feff}",
            "/a?b=1",
            "/a#frag",
        ] {
            refused(p, PathError::InvalidChar);
        }
    }

    #[test]
    fn refuses_invalid_utf8() {
        for p in [
            "/%C0%AF",
            "/%c0%af",
            "/%C1%BF",
            "/%FF",
            "/%ff",
            "/%FE",
            "/%80",
            "/%BF",
            "/a%C3",
            "/a%c3/b",
            "/a%C3b",
            "/a%C3%41",
            "/a%C3%28",
            "/%E0%80%AF",
            "/%e0%80%af",
            "/%ED%A0%80",
            "/%ed%a0%80",
            "/%F4%90%80%80",
            "/%F5%80%80%80",
            "/%F8%88%80%80%80",
            "/%E2%82",
            "/%F0%9F%98",
            "/%C3%A9%A9",
        ] {
            refused(p, PathError::InvalidUtf8);
        }
        // A malformed escape inside a sequence is reported as such.
        refused("/%C3%G9", PathError::MalformedEscape);
        refused("/%C3%A", PathError::MalformedEscape);
    }

    #[test]
    fn first_violation_wins() {
        refused("/a;b/..", PathError::Semicolon);
        refused("/../a;b", PathError::DotSegment);
        refused("//;", PathError::EmptySegment);
        refused("/a%41;", PathError::EncodedUnreserved);
    }

    #[test]
    fn reasons_are_distinct_snake_case() {
        let all = [
            PathError::NotAbsolute,
            PathError::EmptySegment,
            PathError::DotSegment,
            PathError::EncodedUnreserved,
            PathError::EncodedSlash,
            PathError::EncodedBackslash,
            PathError::DoubleEncoding,
            PathError::EncodedControl,
            PathError::EncodedSemicolon,
            PathError::EncodedReserved,
            PathError::MalformedEscape,
            PathError::Semicolon,
            PathError::Backslash,
            PathError::InvalidChar,
            PathError::InvalidUtf8,
        ];
        let mut seen = std::collections::HashSet::new();
        for e in all {
            let r = e.reason();
            assert!(seen.insert(r), "{r}");
            assert!(
                r.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
                "{r}"
            );
            let msg = e.to_string();
            assert!(!msg.ends_with('.'), "{msg}");
            assert_eq!(msg, msg.to_lowercase(), "{msg}");
        }
    }

    #[test]
    fn every_uri_path_is_checked_by_bytes() {
        // What `http` lets through still goes through the byte checks.
        for (uri, want) in [
            ("/a/%2e%2e/b", Err(PathError::DotSegment)),
            ("/a/b\"c", Ok(())),
            ("/a/{b}", Ok(())),
            ("/a/b;c", Err(PathError::Semicolon)),
            ("/a//b?x=1", Err(PathError::EmptySegment)),
            ("/a/b?x=/../", Ok(())),
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(check_canonical(uri.path()), want, "{uri}");
        }
        let uri: http::Uri = "*".parse().unwrap();
        assert_eq!(check_canonical(uri.path()), Err(PathError::NotAbsolute));
    }
}
