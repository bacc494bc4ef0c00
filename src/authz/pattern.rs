//! Compiled path patterns with a method filter: the first matching rule wins.
//!
//! Grammar of a pattern (checked by [`CompiledPatterns::new`]):
//!
//! - it starts with `/` and is split on `/` into segments; `//` is refused, a single trailing
//!   `/` is an empty last segment (so `/admin/` matches only `/admin/`);
//! - a literal segment matches the same text, case-sensitively (ASCII case-insensitively with
//!   [`CompiledPatterns::with_case`]), on the canonical, still percent-encoded path; hex digits
//!   inside a `%XX` escape always compare case-insensitively. A literal must itself be
//!   canonical (see [`super::path`]), otherwise no request could match, and may not hold
//!   `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|` or `}`, raw or escaped: requests may
//!   spell those both ways;
//! - `*` and `{name}` match exactly one segment, including the empty last segment of a path
//!   ending in `/` (`/users/*` matches `/users/`);
//! - `**` matches zero or more segments, anywhere in the pattern (`/public/**` matches
//!   `/public`, `/public/` and `/public/a/b`; `/a/**/c` matches `/a/c` and `/a/x/y/c`);
//! - one `{name}` or `*` may sit next to literal text in a segment, as in Spring `PathPattern`
//!   and AIP-136 custom methods: `/v1/jobs/{id}:cancel`, `/files/{name}.json`, `/v*`. The
//!   variable matches one or more characters of that segment (never a `/`, never part of a
//!   `%XX` escape); the literal text around it matches as above. A segment with two
//!   wildcards (`{a}{b}`, `a*b*`), `**` next to text (`**x`) and `{*rest}` are refused.
//!
//! Exact `/admin` does not match `/admin/` (like axum); `/admin/**` matches both.
//!
//! Matching does not allocate for paths of up to 32 segments. Each rule keeps the text of its
//! leading literal segments (e.g. `/api/v1/orders`), compared with one `starts_with`, and
//! rules are indexed by their first literal segment; the candidate lists keep rule order, so
//! the first match is the same as a linear scan's.

use std::fmt;

use http::Method;

use super::path::check_canonical;
use crate::error::ConfigError;

/// Every method, standard and extension: the mask for a rule without a method list.
#[doc(hidden)]
pub const ALL_METHODS: u16 = u16::MAX;

/// The bit of `m` in a rule's method mask: `GET`=1, `HEAD`=2, `POST`=4, `PUT`=8, `DELETE`=16,
/// `PATCH`=32, `OPTIONS`=64, `TRACE`=128, `CONNECT`=256, any extension method=512.
#[doc(hidden)]
pub fn method_bit(m: &Method) -> u16 {
    if *m == Method::GET {
        1
    } else if *m == Method::HEAD {
        2
    } else if *m == Method::POST {
        4
    } else if *m == Method::PUT {
        8
    } else if *m == Method::DELETE {
        16
    } else if *m == Method::PATCH {
        32
    } else if *m == Method::OPTIONS {
        64
    } else if *m == Method::TRACE {
        128
    } else if *m == Method::CONNECT {
        256
    } else {
        512
    }
}

/// Whether `m` is a standard method (`GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `CONNECT`,
/// `OPTIONS`, `TRACE`, `PATCH`) spelled in another letter case (`delete`, `Delete`, `pAtCh`):
/// `http` takes it for an extension method, frameworks that compare methods
/// case-insensitively for the standard one.
pub(crate) fn is_miscased_standard_method(m: &Method) -> bool {
    method_bit(m) == 512
        && METHOD_NAMES[..9]
            .iter()
            .any(|name| name.eq_ignore_ascii_case(m.as_str()))
}

/// Method names for [`fmt::Debug`], in bit order.
const METHOD_NAMES: [&str; 10] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "extension",
];

/// Path segments kept on the stack while matching; deeper paths use a `Vec`.
const STACK_SEGMENTS: usize = 32;

/// One compiled pattern segment after the literal prefix.
#[derive(Debug)]
enum Seg {
    /// Literal text without `%`: byte equality.
    Lit(Box<str>),
    /// Literal text with `%XX` escapes: hex digits compare case-insensitively.
    EscapedLit(Box<str>),
    /// `*` or `{name}`: exactly one segment.
    One,
    /// `**`: zero or more segments.
    Any,
    /// One variable (`{name}` or `*`) with literal text before and/or after it in the same
    /// segment (`{id}:cancel`, `{name}.json`, `v*`): the variable matches at least one
    /// character, never part of an escape.
    Affix {
        /// The literal text before the variable (maybe empty).
        prefix: Box<str>,
        /// The literal text after the variable (maybe empty).
        suffix: Box<str>,
    },
}

impl Seg {
    /// Whether this single-segment token matches `seg` (`Any` is handled by the caller);
    /// `ci`: literals compare ASCII case-insensitively.
    fn matches_one(&self, seg: &str, ci: bool) -> bool {
        match self {
            Self::Lit(lit) if !ci => **lit == *seg,
            Self::Lit(lit) | Self::EscapedLit(lit) => lit_eq(seg.as_bytes(), lit.as_bytes(), ci),
            Self::One => true,
            Self::Any => false,
            Self::Affix { prefix, suffix } => {
                let (b, p, s) = (seg.as_bytes(), prefix.as_bytes(), suffix.as_bytes());
                if b.len() < p.len() + s.len() + 1 {
                    return false;
                }
                let cut = b.len() - s.len();
                // The variable (at least one byte) must not end inside a `%XX` escape: in a
                // canonical path every `%` starts one.
                if b[cut - 1] == b'%' || (cut >= 2 && b[cut - 2] == b'%') {
                    return false;
                }
                lit_eq(&b[..p.len()], p, ci) && lit_eq(&b[cut..], s, ci)
            }
        }
    }
}

/// `seg == lit` for a literal: hex digits of escapes always compare case-insensitively, the
/// rest only with `ci`.
fn lit_eq(seg: &[u8], lit: &[u8], ci: bool) -> bool {
    if ci {
        seg.eq_ignore_ascii_case(lit)
    } else {
        eq_escaped(seg, lit)
    }
}

/// `seg == lit`, except that the two hex digits after each `%` of `lit` (validated at compile
/// time) compare case-insensitively.
fn eq_escaped(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if a[i] != b'%' || !a[i + 1..i + 3].eq_ignore_ascii_case(&b[i + 1..i + 3]) {
                return false;
            }
            i += 3;
        } else {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
    }
    true
}

/// One compiled rule.
struct Rule {
    /// The pattern as configured (for `Debug`).
    source: Box<str>,
    /// Method mask.
    methods: u16,
    /// `/` followed by the leading literal segments without escapes joined by `/` (e.g.
    /// `/api/v1`), or empty when the pattern does not start with such a literal.
    prefix: Box<str>,
    /// How many path segments `prefix` covers.
    prefix_segments: usize,
    /// The segments after the prefix.
    rest: Box<[Seg]>,
    /// Whether `rest` contains `**`.
    has_any: bool,
    /// `rest` is exactly `[**]`: anything after the prefix matches.
    tail_any: bool,
    /// The number of path segments `rest` needs at least (its non-`**` segments).
    min_rest: usize,
}

impl Rule {
    /// Whether the pattern matches the path `path`, already split into `segs`.
    #[inline]
    fn matches(&self, path: &str, segs: &[&str], ci: bool) -> bool {
        let p = self.prefix.as_bytes();
        if !p.is_empty() {
            let b = path.as_bytes();
            let head = b.get(..p.len());
            let same = if ci {
                head.is_some_and(|h| h.eq_ignore_ascii_case(p))
            } else {
                head == Some(p)
            };
            if !same || (b.len() != p.len() && b[p.len()] != b'/') {
                return false;
            }
        }
        // The prefix matched whole segments, so `segs` has at least `prefix_segments`.
        let tail = &segs[self.prefix_segments..];
        if self.tail_any {
            return true;
        }
        if !self.has_any {
            return tail.len() == self.rest.len()
                && self
                    .rest
                    .iter()
                    .zip(tail)
                    .all(|(s, t)| s.matches_one(t, ci));
        }
        tail.len() >= self.min_rest && glob(&self.rest, tail, ci)
    }
}

/// Matches `segs` against `pat`, where `Any` matches zero or more segments and every other
/// token exactly one. Greedy, backtracking only to the last `Any` seen: O(len(pat) ×
/// len(segs)) at worst, linear when `Any` is last.
fn glob(pat: &[Seg], segs: &[&str], ci: bool) -> bool {
    let (mut p, mut s) = (0, 0);
    // (pattern index after the last `Any`, path index that `Any` currently stops at)
    let mut star: Option<(usize, usize)> = None;
    while s < segs.len() {
        match pat.get(p) {
            Some(Seg::Any) => {
                star = Some((p + 1, s));
                p += 1;
                continue;
            }
            Some(tok) if tok.matches_one(segs[s], ci) => {
                p += 1;
                s += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, ss)) => {
                p = sp;
                s = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|t| matches!(t, Seg::Any))
}

/// Ordered path patterns, each with a method mask, compiled once; see the
/// [module docs](self) for the grammar.
#[doc(hidden)]
pub struct CompiledPatterns {
    /// Rules in configuration order.
    rules: Box<[Rule]>,
    /// First literal segment → indices of the rules that can match a path starting with it
    /// (that literal, or a pattern not starting with a plain literal), ascending. Sorted by key.
    index: Box<[(Box<str>, Box<[usize]>)]>,
    /// Indices of the rules not starting with a plain literal, ascending: the candidates for
    /// a path whose first segment is no key of `index`.
    unindexed: Box<[usize]>,
    /// Literals compare ASCII case-insensitively (index keys are then lower-case).
    case_insensitive: bool,
}

impl fmt::Debug for CompiledPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// A rule as `pattern [GET, POST]`.
        struct RuleDebug<'a>(&'a Rule);
        impl fmt::Debug for RuleDebug<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} ", self.0.source)?;
                if self.0.methods == ALL_METHODS {
                    return f.write_str("[*]");
                }
                let names = METHOD_NAMES
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| self.0.methods & (1 << i) != 0)
                    .map(|(_, n)| *n);
                f.debug_list().entries(names).finish()
            }
        }
        let mut d = f.debug_struct("CompiledPatterns");
        d.field(
            "rules",
            &self.rules.iter().map(RuleDebug).collect::<Vec<_>>(),
        );
        if self.case_insensitive {
            d.field("case_insensitive", &true);
        }
        d.finish()
    }
}

impl CompiledPatterns {
    /// Compiles ordered `(pattern, method mask)` pairs; the index of each is its rule index.
    ///
    /// Build masks from [`method_bit`], or use [`ALL_METHODS`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] named `path` for the first invalid pattern: empty, not starting
    /// with `/`, `//`, `{` without `}` (or `}` without `{`), `{}`, a segment with more than one
    /// wildcard or with `**` next to literal text, literal text that is not canonical, or an
    /// empty method mask.
    pub fn new<'a>(rules: impl IntoIterator<Item = (&'a str, u16)>) -> Result<Self, ConfigError> {
        Self::with_case(rules, false)
    }

    /// [`Self::new`]; with `case_insensitive`, literal text compares ASCII case-insensitively.
    ///
    /// # Errors
    ///
    /// As [`Self::new`].
    pub fn with_case<'a>(
        rules: impl IntoIterator<Item = (&'a str, u16)>,
        case_insensitive: bool,
    ) -> Result<Self, ConfigError> {
        let mut compiled = Vec::new();
        let mut first_keys: Vec<Option<String>> = Vec::new();
        for (pattern, methods) in rules {
            let (rule, first) =
                compile(pattern, methods).map_err(|reason| ConfigError::Invalid {
                    name: "path",
                    reason: format!("pattern `{pattern}`: {reason}"),
                })?;
            compiled.push(rule);
            first_keys.push(first.map(|k| {
                if case_insensitive {
                    k.to_ascii_lowercase()
                } else {
                    k.to_owned()
                }
            }));
        }
        let unindexed: Box<[usize]> = (0..compiled.len())
            .filter(|&i| first_keys[i].is_none())
            .collect();
        let mut keys: Vec<&str> = first_keys.iter().flatten().map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        let index = keys
            .into_iter()
            .map(|key| {
                let list: Box<[usize]> = (0..compiled.len())
                    .filter(|&i| first_keys[i].as_deref().is_none_or(|k| k == key))
                    .collect();
                (Box::from(key), list)
            })
            .collect();
        Ok(Self {
            rules: compiled.into_boxed_slice(),
            index,
            unindexed,
            case_insensitive,
        })
    }

    /// Index of the first rule whose methods include `method_bit` and whose pattern matches
    /// `path`.
    ///
    /// `path` must have passed [`check_canonical`](super::path::check_canonical); for other
    /// input the answer is unspecified (but this never panics). A path not starting with `/`
    /// matches nothing.
    pub fn first_match(&self, path: &str, method_bit: u16) -> Option<usize> {
        let rest = path.strip_prefix('/')?;
        let mut buf = [""; STACK_SEGMENTS];
        let mut n = 0;
        for seg in rest.split('/') {
            if n == STACK_SEGMENTS {
                let segs: Vec<&str> = rest.split('/').collect();
                return self.first_match_in(path, &segs, method_bit);
            }
            buf[n] = seg;
            n += 1;
        }
        self.first_match_in(path, &buf[..n], method_bit)
    }

    /// [`Self::first_match`] with the path split into its segments (at least one).
    fn first_match_in(&self, path: &str, segs: &[&str], method_bit: u16) -> Option<usize> {
        let ci = self.case_insensitive;
        let first = segs[0].bytes();
        let found = if ci {
            self.index.binary_search_by(|(key, _)| {
                key.bytes()
                    .cmp(first.clone().map(|b| b.to_ascii_lowercase()))
            })
        } else {
            self.index
                .binary_search_by(|(key, _)| key.bytes().cmp(first.clone()))
        };
        let candidates = match found {
            Ok(i) => &self.index[i].1,
            Err(_) => &self.unindexed,
        };
        candidates.iter().copied().find(|&i| {
            let rule = &self.rules[i];
            rule.methods & method_bit != 0 && rule.matches(path, segs, ci)
        })
    }

    /// The number of rules.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rules.len()
    }
}

/// Compiles one pattern; also returns its first segment when that is a plain literal (the
/// index key). Errors are the reason text.
fn compile(pattern: &str, methods: u16) -> Result<(Rule, Option<&str>), String> {
    if pattern.is_empty() {
        return Err("empty pattern".into());
    }
    let Some(body) = pattern.strip_prefix('/') else {
        return Err("must start with `/`".into());
    };
    if methods == 0 {
        return Err("empty method set".into());
    }
    let parts: Vec<&str> = body.split('/').collect();
    let mut segs = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        segs.push(parse_segment(part, i + 1 == parts.len())?);
    }
    let prefix_segments = segs.iter().take_while(|s| matches!(s, Seg::Lit(_))).count();
    let prefix = if prefix_segments == 0 {
        Box::from("")
    } else {
        let end: usize = parts[..prefix_segments].iter().map(|p| p.len() + 1).sum();
        Box::from(&pattern[..end])
    };
    let first = (prefix_segments > 0).then_some(parts[0]);
    let rest: Box<[Seg]> = segs.into_iter().skip(prefix_segments).collect();
    let has_any = rest.iter().any(|s| matches!(s, Seg::Any));
    let min_rest = rest.iter().filter(|s| !matches!(s, Seg::Any)).count();
    let tail_any = matches!(&*rest, [Seg::Any]);
    Ok((
        Rule {
            source: pattern.into(),
            methods,
            prefix,
            prefix_segments,
            rest,
            has_any,
            tail_any,
            min_rest,
        },
        first,
    ))
}

/// Parses one pattern segment.
fn parse_segment(seg: &str, last: bool) -> Result<Seg, String> {
    match seg {
        // A trailing `/`: the empty last segment.
        "" if last => return Ok(Seg::Lit("".into())),
        "" => return Err("empty segment (`//`)".into()),
        "*" => return Ok(Seg::One),
        "**" => return Ok(Seg::Any),
        _ => {}
    }
    let opens = seg.matches('{').count();
    let closes = seg.matches('}').count();
    let stars = seg.matches('*').count();
    if opens > closes {
        return Err(format!("`{{` without matching `}}` in segment `{seg}`"));
    }
    if closes > opens {
        return Err(format!("`}}` without matching `{{` in segment `{seg}`"));
    }
    if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        if name.is_empty() {
            return Err("empty `{}`".into());
        }
        if name.starts_with('*') {
            return Err(format!("`{seg}` is not supported: use `**` for any depth"));
        }
        if !name.contains(['{', '}', '*']) {
            return Ok(Seg::One);
        }
    }
    if opens + stars > 0 {
        return parse_affix(seg, opens, stars);
    }
    check_canonical(&format!("/{seg}")).map_err(|e| {
        format!("segment `{seg}` is not canonical ({e}), so no request path could match it")
    })?;
    check_one_spelling(seg)?;
    Ok(if seg.contains('%') {
        Seg::EscapedLit(seg.into())
    } else {
        Seg::Lit(seg.into())
    })
}

/// Characters a request may send raw or percent-encoded alike (both are canonical): a
/// literal naming one would match only one of the two spellings of the same resource.
const TWO_SPELLINGS: &[u8] = b"\"<>[]^`{|}";

/// Refuses literal text holding a character of [`TWO_SPELLINGS`], raw or escaped.
fn check_one_spelling(lit: &str) -> Result<(), String> {
    let b = lit.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let (c, next) = if b[i] == b'%' && i + 2 < b.len() {
            // The literal is canonical: every `%` starts a `%XX` escape.
            let decoded = percent_encoding::percent_decode(&b[i..i + 3]).next();
            (decoded.unwrap_or(b'%'), i + 3)
        } else {
            (b[i], i + 1)
        };
        if TWO_SPELLINGS.contains(&c) {
            return Err(format!(
                "`{}` in `{lit}` may be sent raw or percent-encoded, and a literal matches only \
                 one spelling: use a wildcard",
                char::from(c)
            ));
        }
        i = next;
    }
    Ok(())
}

/// Parses a segment holding one variable next to literal text (`{id}:cancel`, `v*`).
fn parse_affix(seg: &str, opens: usize, stars: usize) -> Result<Seg, String> {
    let too_many = || {
        format!(
            "segment `{seg}` holds more than one wildcard: a segment may hold one `{{name}}` \
             or `*` with literal text around it, and `**` only alone"
        )
    };
    let (prefix, suffix) = match (opens, stars) {
        (1, 0) => {
            let (prefix, rest) = seg.split_once('{').ok_or_else(too_many)?;
            let (name, suffix) = rest
                .split_once('}')
                .ok_or_else(|| format!("`}}` without matching `{{` in segment `{seg}`"))?;
            if name.is_empty() {
                return Err("empty `{}`".into());
            }
            (prefix, suffix)
        }
        (0, 1) => seg.split_once('*').ok_or_else(too_many)?,
        _ => return Err(too_many()),
    };
    // `x` stands for the variable: the literal parts must be canonical around it.
    check_canonical(&format!("/{prefix}x{suffix}")).map_err(|e| {
        format!("segment `{seg}` is not canonical ({e}), so no request path could match it")
    })?;
    check_one_spelling(prefix)?;
    check_one_spelling(suffix)?;
    Ok(Seg::Affix {
        prefix: prefix.into(),
        suffix: suffix.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: u16 = 1;
    const HEAD: u16 = 2;
    const POST: u16 = 4;
    const DELETE: u16 = 16;

    fn compile_all(rules: &[(&str, u16)]) -> CompiledPatterns {
        CompiledPatterns::new(rules.iter().copied()).unwrap()
    }

    /// Whether a single pattern matches `path` (all methods).
    fn matches(pattern: &str, path: &str) -> bool {
        compile_all(&[(pattern, ALL_METHODS)])
            .first_match(path, GET)
            .is_some()
    }

    #[track_caller]
    fn check(pattern: &str, yes: &[&str], no: &[&str]) {
        for p in yes {
            assert!(matches(pattern, p), "{pattern} should match {p}");
        }
        for p in no {
            assert!(!matches(pattern, p), "{pattern} should not match {p}");
        }
    }

    fn config_err(pattern: &str) -> String {
        match CompiledPatterns::new([(pattern, ALL_METHODS)]) {
            Err(ConfigError::Invalid {
                name: "path",
                reason,
            }) => reason,
            other => panic!("{pattern}: expected an invalid path error, got {other:?}"),
        }
    }

    #[test]
    fn method_bits() {
        let all = [
            (Method::GET, 1),
            (Method::HEAD, 2),
            (Method::POST, 4),
            (Method::PUT, 8),
            (Method::DELETE, 16),
            (Method::PATCH, 32),
            (Method::OPTIONS, 64),
            (Method::TRACE, 128),
            (Method::CONNECT, 256),
            (Method::from_bytes(b"PROPFIND").unwrap(), 512),
            (Method::from_bytes(b"get").unwrap(), 512),
            (
                Method::from_bytes(b"A-VERY-LONG-EXTENSION-METHOD").unwrap(),
                512,
            ),
        ];
        for (m, bit) in all {
            assert_eq!(method_bit(&m), bit, "{m}");
            assert_ne!(ALL_METHODS & bit, 0);
        }
    }

    #[test]
    fn exact_segments() {
        check(
            "/admin",
            &["/admin"],
            &[
                "/", "/admin/", "/admin/x", "/Admin", "/ADMIN", "/admins", "/admi",
            ],
        );
        check(
            "/api/v1/orders",
            &["/api/v1/orders"],
            &[
                "/api/v1/orders/",
                "/api/v1",
                "/api/v1/orders/1",
                "/api/v1/ordersx",
            ],
        );
        check("/", &["/"], &["/a", "//"]);
        check("/admin/", &["/admin/"], &["/admin", "/admin/x"]);
    }

    #[test]
    fn single_segment_wildcards() {
        for pattern in ["/users/*", "/users/{id}"] {
            check(
                pattern,
                &["/users/1", "/users/alice", "/users/%20x", "/users/"],
                &["/users", "/users/1/", "/users/1/posts", "/Users/1"],
            );
        }
        check(
            "/admin/{id}/audit",
            &["/admin/7/audit", "/admin/x/audit"],
            &["/admin/audit", "/admin/7/audit/", "/admin/7/8/audit"],
        );
        check("/*", &["/", "/a"], &["/a/", "/a/b"]);
        check("/*/x/*", &["/a/x/b", "/a/x/"], &["/a/y/b", "/a/x", "/x/b"]);
    }

    #[test]
    fn any_depth_at_the_end() {
        check(
            "/public/**",
            &[
                "/public",
                "/public/",
                "/public/a",
                "/public/a/",
                "/public/a/b/c",
            ],
            &["/publicx", "/Public", "/", "/pub", "/x/public"],
        );
        check("/**", &["/", "/a", "/a/b/c/", "/admin"], &[]);
        check(
            "/api/*/**",
            &["/api/v1", "/api/v1/", "/api/v1/x/y"],
            &["/api", "/apix/v1"],
        );
        check(
            "/api/{ver}/orders/**",
            &["/api/v1/orders", "/api/v2/orders/1/lines"],
            &["/api/v1/order", "/api/orders", "/api/v1/x/orders"],
        );
    }

    #[test]
    fn any_depth_in_the_middle() {
        check(
            "/a/**/c",
            &["/a/c", "/a/b/c", "/a/b/b/c", "/a/c/c", "/a/x/c/y/c"],
            &["/a", "/a/", "/a/c/", "/a/b", "/a/c/d", "/c", "/b/a/c"],
        );
        check(
            "/**/secret",
            &["/secret", "/a/secret", "/a/b/secret"],
            &["/secret/", "/secrets", "/a/secret/b"],
        );
        check(
            "/a/**/b/*/c/**",
            &[
                "/a/b/x/c",
                "/a/1/2/b/x/c/3/4",
                "/a/b/b/b/c/",
                "/a/b/c/b/x/c",
            ],
            &["/a/b/c", "/a/b/x/d", "/a/x/c"],
        );
        check("/a/**/**/c", &["/a/c", "/a/x/c", "/a/x/y/z/c"], &["/a/x/d"]);
        check("/**/x/**", &["/x", "/a/x/", "/a/b/x/c/d"], &["/", "/a/y"]);
    }

    #[test]
    fn trailing_slash_is_an_empty_segment() {
        check("/admin", &["/admin"], &["/admin/"]);
        check("/admin/**", &["/admin", "/admin/"], &["/adminx"]);
        check("/admin/", &["/admin/"], &["/admin"]);
        check(
            "/admin/**/",
            &["/admin/", "/admin/x/"],
            &["/admin", "/admin/x"],
        );
    }

    #[test]
    fn case_sensitive_but_escape_hex_case_insensitive() {
        check("/Admin", &["/Admin"], &["/admin", "/ADMIN"]);
        check(
            "/files/%C3%A9t%C3%A9",
            &[
                "/files/%C3%A9t%C3%A9",
                "/files/%c3%a9t%c3%a9",
                "/files/%C3%a9t%c3%A9",
            ],
            &[
                "/files/%C3%A9T%C3%A9",
                "/files/%C3%A9t",
                "/files/%C3%A9t%C3%A9/",
            ],
        );
        // First segment with an escape: not indexed, still matched.
        check("/%20x/**", &["/%20x", "/%20x/y"], &["/%20y", "/%20X", "/x"]);
    }

    #[test]
    fn first_match_wins_and_methods_filter() {
        let rules = compile_all(&[
            ("/public/**", ALL_METHODS),
            ("/admin/**", POST | DELETE),
            ("/admin/reports/*", GET | HEAD),
            ("/reports/**", GET),
            ("/**", ALL_METHODS),
        ]);
        assert_eq!(rules.len(), 5);
        assert_eq!(rules.first_match("/public/a", POST), Some(0));
        assert_eq!(rules.first_match("/public", GET), Some(0));
        assert_eq!(rules.first_match("/admin/users", POST), Some(1));
        assert_eq!(rules.first_match("/admin/users", DELETE), Some(1));
        assert_eq!(rules.first_match("/admin/users", GET), Some(4));
        assert_eq!(rules.first_match("/admin/reports/1", GET), Some(2));
        assert_eq!(rules.first_match("/admin/reports/1", POST), Some(1));
        assert_eq!(rules.first_match("/admin/reports/1", 512), Some(4));
        assert_eq!(rules.first_match("/reports/x", GET), Some(3));
        assert_eq!(rules.first_match("/reports/x", HEAD), Some(4));
        assert_eq!(rules.first_match("/", GET), Some(4));
        assert_eq!(rules.first_match("/x/y", 0), None);
        assert_eq!(rules.first_match("", GET), None);
        assert_eq!(rules.first_match("x", GET), None);

        let rules = compile_all(&[
            ("/a/{id}", GET),
            ("/**", POST),
            ("/a/*", ALL_METHODS),
            ("/a/b", ALL_METHODS),
        ]);
        assert_eq!(rules.first_match("/a/b", GET), Some(0));
        assert_eq!(rules.first_match("/a/b", POST), Some(1));
        assert_eq!(rules.first_match("/a/b", DELETE), Some(2));
        assert_eq!(rules.first_match("/b", DELETE), None);
        assert_eq!(rules.first_match("/b", POST), Some(1));
    }

    #[test]
    fn no_rules_match_nothing() {
        let rules = CompiledPatterns::new([]).unwrap();
        assert_eq!(rules.first_match("/", GET), None);
    }

    #[test]
    fn deep_paths() {
        let deep: String = (0..100).map(|i| format!("/s{i}")).collect();
        let rules = compile_all(&[
            ("/s0/*", ALL_METHODS),
            ("/s0/**/s99", GET),
            ("/s0/**", ALL_METHODS),
        ]);
        assert_eq!(rules.first_match(&deep, GET), Some(1));
        assert_eq!(rules.first_match(&deep, POST), Some(2));
        let exact: String = (0..40).map(|i| format!("/{i}")).collect();
        let rules = compile_all(&[(&exact, GET)]);
        assert_eq!(rules.first_match(&exact, GET), Some(0));
        assert_eq!(rules.first_match(&format!("{exact}/"), GET), None);
        let wild: String = (0..40).map(|_| "/*").collect();
        let rules = compile_all(&[(&wild, GET)]);
        assert_eq!(rules.first_match(&exact, GET), Some(0));
        assert_eq!(rules.first_match(&exact[2..], GET), None);
    }

    #[test]
    fn compile_errors() {
        for (pattern, needle) in [
            ("", "empty pattern"),
            ("admin/**", "must start with `/`"),
            ("*", "must start with `/`"),
            ("//", "empty segment"),
            ("/a//b", "empty segment"),
            ("/a//", "empty segment"),
            ("/{id", "without matching `}`"),
            ("/x{id", "without matching `}`"),
            ("/id}", "without matching `{`"),
            ("/{}", "empty `{}`"),
            ("/{*rest}", "use `**`"),
            ("/{a{b}}", "more than one wildcard"),
            ("/{a*}", "more than one wildcard"),
            ("/a*b*", "more than one wildcard"),
            ("/***", "more than one wildcard"),
            ("/{a}{b}", "more than one wildcard"),
            ("/{a}*", "more than one wildcard"),
            ("/**x", "more than one wildcard"),
            ("/x}{id", "without matching"),
            ("/x{}.json", "empty `{}`"),
            ("/{id}%3Acancel", "not canonical"),
            ("/a%{id}", "not canonical"),
            ("/a;{id}", "not canonical"),
            ("/a\"b", "may be sent raw or percent-encoded"),
            ("/a%22b", "may be sent raw or percent-encoded"),
            ("/a%7cb", "may be sent raw or percent-encoded"),
            ("/a|b/**", "may be sent raw or percent-encoded"),
            ("/x/[{id}]", "may be sent raw or percent-encoded"),
            ("/x/{id}%5D", "may be sent raw or percent-encoded"),
            ("/a/./b", "not canonical (dot segment)"),
            ("/a/..", "not canonical (dot segment)"),
            ("/a;b", "not canonical (semicolon in path)"),
            ("/%41", "not canonical"),
            ("/%2F", "not canonical"),
            ("/a%", "not canonical"),
            ("/a b", "not canonical"),
            ("/a?b", "not canonical"),
        ] {
            let reason = config_err(pattern);
            assert!(reason.contains(needle), "{pattern}: {reason}");
            assert!(
                reason.starts_with(&format!("pattern `{pattern}`")),
                "{reason}"
            );
        }
        assert!(config_err("/x{").contains("without matching"));
        match CompiledPatterns::new([("/a", 0)]) {
            Err(e) => assert!(e.to_string().contains("empty method set"), "{e}"),
            Ok(_) => panic!("empty method set accepted"),
        }
        let err = CompiledPatterns::new([("/ok/**", GET), ("/bad**", GET)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setting `path`: pattern `/bad**`: segment `bad**` holds more than one \
             wildcard: a segment may hold one `{name}` or `*` with literal text around it, and \
             `**` only alone"
        );
    }

    #[test]
    fn a_variable_next_to_literal_text() {
        check(
            "/v1/jobs/{id}:cancel",
            &[
                "/v1/jobs/7:cancel",
                "/v1/jobs/a:b:cancel",
                "/v1/jobs/%20:cancel",
            ],
            &[
                "/v1/jobs/:cancel",
                "/v1/jobs/7:cancel/",
                "/v1/jobs/7:Cancel",
                "/v1/jobs/7",
                "/v1/jobs/7/x:cancel",
                "/v1/jobs/7:cancelx",
            ],
        );
        check(
            "/files/{name}.json",
            &["/files/a.json", "/files/a.b.json", "/files/%C3%A9.json"],
            &[
                "/files/.json",
                "/files/a.jsonx",
                "/files/a.JSON",
                "/files/a/b.json",
            ],
        );
        check("/v*", &["/v1", "/v2beta"], &["/v", "/x1", "/v1/x"]);
        check("/*.css/x", &["/a.css/x"], &["/.css/x", "/a.css"]);
        check(
            "/pre-{id}-post",
            &["/pre-1-post"],
            &["/pre--post", "/pre-1-pos"],
        );
        check("/{id}:run/**", &["/1:run", "/1:run/a/b"], &["/:run/a"]);
        // The variable never ends inside an escape: `%2` + `0x` is not `x` after the escape.
        check(
            "/{id}20",
            &["/a20", "/%20a20", "/%C3%A920", "/%2020"],
            &["/a%20", "/20"],
        );
        check("/{id}A9", &["/aA9"], &["/%C3%A9"]);
        check("/x%20{id}", &["/x%20a", "/x%20%20"], &["/x%20", "/x%2"]);
        // First match wins across a literal and an affix rule.
        let rules = compile_all(&[
            ("/v1/jobs:batchDelete", POST),
            ("/v1/{name}:batchDelete", GET),
            ("/**", ALL_METHODS),
        ]);
        assert_eq!(rules.first_match("/v1/jobs:batchDelete", POST), Some(0));
        assert_eq!(rules.first_match("/v1/jobs:batchDelete", GET), Some(1));
        assert_eq!(rules.first_match("/v1/x:batchDelete", GET), Some(1));
        assert_eq!(rules.first_match("/v1/:batchDelete", GET), Some(2));
    }

    #[test]
    fn case_insensitive_literals() {
        let rules = CompiledPatterns::with_case(
            [
                ("/Admin/**", POST),
                ("/api/v1/{id}:Cancel", POST),
                ("/files/%c3%a9", GET),
                ("/admin/x", GET),
                ("/**", ALL_METHODS),
            ],
            true,
        )
        .unwrap();
        for p in ["/admin", "/ADMIN/x", "/aDmIn/users/1"] {
            assert_eq!(rules.first_match(p, POST), Some(0), "{p}");
        }
        assert_eq!(rules.first_match("/API/V1/7:cancel", POST), Some(1));
        assert_eq!(rules.first_match("/API/V1/7:cancel", GET), Some(4));
        assert_eq!(rules.first_match("/FILES/%C3%A9", GET), Some(2));
        // ASCII only: `É` (%C3%89) is not `é`.
        assert_eq!(rules.first_match("/files/%C3%89", GET), Some(4));
        assert_eq!(rules.first_match("/ADMIN/X", GET), Some(3));
        // The default stays case-sensitive.
        let rules = compile_all(&[("/Admin/**", POST), ("/**", ALL_METHODS)]);
        assert_eq!(rules.first_match("/admin/x", POST), Some(1));
    }

    #[test]
    fn debug_lists_rules_without_index() {
        let rules = compile_all(&[("/admin/**", POST | DELETE), ("/**", ALL_METHODS)]);
        assert_eq!(
            format!("{rules:?}"),
            r#"CompiledPatterns { rules: [/admin/** ["POST", "DELETE"], /** [*]] }"#
        );
    }

    /// An independent, obviously-correct matcher (recursive, no index, no prefix).
    fn reference_match(pattern: &str, path: &str) -> bool {
        fn go(pat: &[&str], segs: &[&str]) -> bool {
            match pat.split_first() {
                None => segs.is_empty(),
                Some((&"**", rest)) => (0..=segs.len()).any(|k| go(rest, &segs[k..])),
                Some((&p, rest)) => match segs.split_first() {
                    None => false,
                    Some((&s, srest)) => {
                        let one = p == "*"
                            || (p.starts_with('{') && p.ends_with('}'))
                            || p.eq_ignore_ascii_case(s) && {
                                // Case-sensitive outside escapes.
                                let mut ok = true;
                                let (a, b) = (p.as_bytes(), s.as_bytes());
                                let mut i = 0;
                                while i < a.len() {
                                    if a[i] == b'%' {
                                        i += 3;
                                    } else {
                                        ok &= a[i] == b[i];
                                        i += 1;
                                    }
                                }
                                ok
                            };
                        one && go(rest, srest)
                    }
                },
            }
        }
        let pat: Vec<&str> = pattern[1..].split('/').collect();
        let segs: Vec<&str> = path[1..].split('/').collect();
        go(&pat, &segs)
    }

    #[test]
    fn agrees_with_a_linear_reference_scan() {
        let pieces = ["a", "b", "A", "%20", "*", "**", "{id}", ""];
        let path_pieces = ["a", "b", "A", "%20", "c", ""];
        // A small deterministic generator.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut patterns = Vec::new();
        while patterns.len() < 60 {
            let len = 1 + next(5);
            let p: String = (0..len)
                .map(|_| format!("/{}", pieces[next(pieces.len())]))
                .collect();
            // Without a non-empty literal (`/**`, `/*/**`, ...) a pattern matches (nearly)
            // everything, leaving later rules untested.
            let catch_all = p
                .split('/')
                .skip(1)
                .all(|s| s.is_empty() || s.contains(['*', '{']));
            if !catch_all
                && check_canonical(&p.replace(['*', '{', '}'], "x")).is_ok()
                && CompiledPatterns::new([(p.as_str(), GET)]).is_ok()
            {
                patterns.push((p, [GET, POST, GET | POST, ALL_METHODS][next(4)]));
            }
        }
        let rules = CompiledPatterns::new(patterns.iter().map(|(p, m)| (p.as_str(), *m))).unwrap();
        let (mut checked, mut matched, mut not_first) = (0, 0, 0);
        for _ in 0..3000 {
            let len = 1 + next(6);
            let path: String = (0..len)
                .map(|_| format!("/{}", path_pieces[next(path_pieces.len())]))
                .collect();
            if check_canonical(&path).is_err() {
                continue;
            }
            for bit in [GET, POST, DELETE] {
                let want = patterns
                    .iter()
                    .position(|(p, m)| m & bit != 0 && reference_match(p, &path));
                assert_eq!(rules.first_match(&path, bit), want, "{path} {bit}");
                checked += 1;
                matched += usize::from(want.is_some());
                not_first += usize::from(want.is_some_and(|i| i > 5));
            }
        }
        // The generator must exercise both outcomes, and matches beyond the first rules.
        assert!(
            checked > 1000 && matched > checked / 4 && matched < checked * 3 / 4,
            "{checked} {matched}"
        );
        assert!(not_first > 100, "{not_first}");
    }
}
