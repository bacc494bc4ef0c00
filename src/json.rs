//! Strict JSON for JOSE headers and claims: one parse, duplicate member names refused at any
//! depth (RFC 7515 §5.2 and RFC 7519 §7.2 let a parser reject them; a parser that keeps the last
//! one and another that keeps the first would disagree about what a token says).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::TokenError;

const DUPLICATE: &str = "duplicate member";

/// The single key of the map that `serde_json` hands to a visitor in place of a number when any
/// crate in the build enables its `arbitrary_precision` feature (the value is the number's text).
const PRIVATE_NUMBER: &str = "$serde_json::private::Number";

/// Whether `serde_json` runs with `arbitrary_precision` in this build (features are unified
/// across the whole dependency graph, so another crate may turn it on). With it, numbers keep
/// their text: `1e3` stays `1e3` instead of becoming `1000.0`.
fn arbitrary_precision() -> bool {
    struct Probe;
    impl<'de> Visitor<'de> for Probe {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            while map.next_entry::<String, String>()?.is_some() {}
            Ok(true)
        }
    }
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        serde_json::Deserializer::from_str("1.5")
            .deserialize_any(Probe)
            .unwrap_or(false)
    })
}

/// Decodes canonical unpadded base64url (no padding, no stray bits, no other alphabet).
pub(crate) fn b64url(part: &str) -> Result<Vec<u8>, TokenError> {
    let mut out = vec![0; b64url_len(part.len()).ok_or(TokenError::InvalidBase64)?];
    b64url_decode(part.as_bytes(), &mut out)?;
    Ok(out)
}

/// Decodes canonical unpadded base64url holding UTF-8 text (a JSON part of a token); text that
/// is not UTF-8 is not JSON either.
pub(crate) fn b64url_text(part: &str) -> Result<String, TokenError> {
    String::from_utf8(b64url(part)?).map_err(|_| TokenError::InvalidJson)
}

/// The decoded length of `len` characters of unpadded base64url; `None` for a length no
/// canonical encoding has (one character left over).
pub(crate) fn b64url_len(len: usize) -> Option<usize> {
    match len % 4 {
        1 => None,
        r => Some(len / 4 * 3 + r.saturating_sub(1)),
    }
}

/// Base64url alphabet value of each byte; `0xFF` for bytes outside the alphabet (padding too).
const B64URL: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 64 {
        let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i];
        t[c as usize] = i as u8;
        i += 1;
    }
    t
};

/// [`B64URL`] values shifted into place for each position of a 4-character quantum, bit 31
/// set for a byte outside the alphabet: a quantum is the OR of four look-ups, and the OR of
/// every quantum has bit 31 set exactly when some byte was not base64url.
const fn shifted(shift: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match B64URL[i] {
            0xFF => 0x8000_0000,
            v => (v as u32) << shift,
        };
        i += 1;
    }
    t
}
const Q0: [u32; 256] = shifted(18);
const Q1: [u32; 256] = shifted(12);
const Q2: [u32; 256] = shifted(6);
const Q3: [u32; 256] = shifted(0);

/// Decodes canonical unpadded base64url into `out`, which must be exactly
/// [`b64url_len`]`(src.len())` long (the caller sizes it: a stack buffer or a vector).
pub(crate) fn b64url_decode(src: &[u8], out: &mut [u8]) -> Result<(), TokenError> {
    if b64url_len(src.len()) != Some(out.len()) {
        return Err(TokenError::InvalidBase64);
    }
    let v = |c: u8| u32::from(B64URL[c as usize]);
    let q =
        |s: &[u8]| Q0[s[0] as usize] | Q1[s[1] as usize] | Q2[s[2] as usize] | Q3[s[3] as usize];
    // Eight characters (two quanta, six bytes) a step.
    let mut bad32 = 0u32;
    let mut src_chunks = src.chunks_exact(8);
    let mut out_chunks = out.chunks_exact_mut(6);
    for (s, o) in (&mut src_chunks).zip(&mut out_chunks) {
        let (hi, lo) = (q(&s[..4]), q(&s[4..]));
        bad32 |= hi | lo;
        let n = u64::from(hi) << 24 | u64::from(lo);
        o.copy_from_slice(&n.to_be_bytes()[2..]);
    }
    // Every value is < 64, so an alphabet miss (0xFF) is the only way to set bit 7 of `bad`.
    let mut bad = bad32 >> 24;
    let (src, out) = (src_chunks.remainder(), out_chunks.into_remainder());
    let mut src_chunks = src.chunks_exact(4);
    let mut out_chunks = out.chunks_exact_mut(3);
    for (s, o) in (&mut src_chunks).zip(&mut out_chunks) {
        let (a, b, c, d) = (v(s[0]), v(s[1]), v(s[2]), v(s[3]));
        bad |= a | b | c | d;
        let n = (a << 18) | (b << 12) | (c << 6) | d;
        o.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    match (src_chunks.remainder(), out_chunks.into_remainder()) {
        ([], []) => {}
        // Two characters: one byte; the last character's low 4 bits must be zero.
        ([a, b], [o]) => {
            let (a, b) = (v(*a), v(*b));
            bad |= a | b | u32::from(b & 0x0F != 0) << 7;
            *o = (a << 2 | b >> 4) as u8;
        }
        // Three characters: two bytes; the last character's low 2 bits must be zero.
        ([a, b, c], [o1, o2]) => {
            let (a, b, c) = (v(*a), v(*b), v(*c));
            bad |= a | b | c | u32::from(c & 0x03 != 0) << 7;
            let n = (a << 10) | (b << 4) | (c >> 2);
            *o1 = (n >> 8) as u8;
            *o2 = n as u8;
        }
        _ => return Err(TokenError::InvalidBase64),
    }
    if bad & 0x80 != 0 {
        return Err(TokenError::InvalidBase64);
    }
    Ok(())
}

/// Parses a JSON object, refusing duplicate member names anywhere inside it.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, TokenError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| TokenError::InvalidJson)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(TokenError::InvalidJson),
    }
}

/// A JSON value as serde_json's visitor builds it (the reference the scanner is checked
/// against): strings borrow from the text they were parsed from (escaped strings are owned).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tree<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Tree<'a>>),
    Object(Vec<(Cow<'a, str>, Tree<'a>)>),
}

/// What a [`Node`] of the tape is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Null,
    False,
    True,
    /// `n`: the value.
    U64,
    /// `n`: the value's bits.
    I64,
    /// `n`: the value's bits (finite).
    F64,
    /// A number's text (`arbitrary_precision`), `a..n` of the escapes' text.
    NumText,
    /// A string without escapes: `a..n` of the parsed text.
    Str,
    /// A string with escapes, unescaped: `a..n` of the escapes' text.
    Esc,
    /// `a` items follow (their subtrees); `n`: the index just past the last one.
    Array,
    /// `a` members follow, each a name (`Str` or `Esc`) then its value's subtree; `n`: the
    /// index just past the last one.
    Object,
}

/// One value of the tape (a parsed document, in document order): 16 bytes, no drop.
#[derive(Debug, Clone, Copy)]
struct Node {
    tag: Tag,
    a: u32,
    n: u64,
}

impl Node {
    const fn new(tag: Tag, a: u32, n: u64) -> Self {
        Node { tag, a, n }
    }
}

/// A parsed document: the tape and the texts its strings are spans of.
#[derive(Debug, Clone, Copy)]
struct Doc<'c> {
    tape: &'c [Node],
    text: &'c str,
    esc: &'c str,
}

impl<'c> Doc<'c> {
    /// The index just past the value at `i`.
    #[inline]
    fn after(self, i: usize) -> usize {
        match self.tape.get(i) {
            Some(n) if matches!(n.tag, Tag::Array | Tag::Object) => n.n as usize,
            _ => i + 1,
        }
    }

    /// The bytes of the string at `i` (a name or a string value).
    #[inline]
    fn bytes_at(self, i: usize) -> &'c [u8] {
        match self.tape.get(i) {
            Some(&Node {
                tag: Tag::Str,
                a,
                n,
            }) => self.text.as_bytes().get(a as usize..n as usize),
            Some(&Node {
                tag: Tag::Esc,
                a,
                n,
            }) => self.esc.as_bytes().get(a as usize..n as usize),
            _ => None,
        }
        .unwrap_or_default()
    }

    /// The string at `i` (a name or a string value).
    #[inline]
    fn str_at(self, i: usize) -> &'c str {
        match self.tape.get(i) {
            Some(&Node {
                tag: Tag::Str,
                a,
                n,
            }) => self.text.get(a as usize..n as usize),
            Some(&Node {
                tag: Tag::Esc,
                a,
                n,
            }) => self.esc.get(a as usize..n as usize),
            _ => None,
        }
        .unwrap_or_default()
    }
}

/// A JSON value of parsed claims, read off the tape: strings are spans of the parsed text
/// (escaped strings of the unescaped copy).
#[derive(Debug, Clone)]
pub(crate) enum Lite<'c> {
    Null,
    Bool(bool),
    Number(Number),
    String(&'c str),
    Array(Seq<'c>),
    Object(Seq<'c>),
}

/// The items of an array or the members of an object on the tape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seq<'c> {
    claims: &'c Claims<'c>,
    first: u32,
    count: u32,
}

impl<'c> Seq<'c> {
    /// How many items (or members).
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// The items of an array.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Lite<'c>> + 'c {
        let claims = self.claims;
        let mut i = self.first as usize;
        (0..self.count).filter_map(move |_| {
            let v = claims.view(i);
            i = claims.doc().after(i);
            v
        })
    }
}

impl<'c> Lite<'c> {
    pub(crate) fn as_str(&self) -> Option<&'c str> {
        match self {
            Lite::String(s) => Some(s),
            _ => None,
        }
    }
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Lite::Null)
    }
    /// The member `name` of an object.
    pub(crate) fn get(&self, name: &str) -> Option<Lite<'c>> {
        match self {
            Lite::Object(m) => m.claims.member(m.first as usize, m.count, name),
            _ => None,
        }
    }
    /// The value as a [`Tree`] (tests).
    #[cfg(test)]
    pub(crate) fn to_tree(&self) -> Tree<'static> {
        match self {
            Lite::Null => Tree::Null,
            Lite::Bool(b) => Tree::Bool(*b),
            Lite::Number(n) => Tree::Number(n.clone()),
            Lite::String(s) => Tree::String(Cow::Owned((*s).to_owned())),
            Lite::Array(seq) | Lite::Object(seq) => seq.claims.tree(seq.first as usize - 1),
        }
    }
}

/// The members of a JSON object (a token's claims) as a tape, its strings spans of the text it
/// was parsed from.
#[derive(Debug)]
pub(crate) struct Claims<'a> {
    text: &'a str,
    /// Unescaped strings (and, under `arbitrary_precision`, numbers' text).
    esc: String,
    /// The object at index 0.
    tape: Vec<Node>,
    /// Per name of [`KNOWN`], its value's index in `tape` (0: absent).
    slots: [u32; KNOWN.len()],
}

/// The claims the verifier reads (and the default claim mapping's names): found by index.
const KNOWN: [&str; 17] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "pv",
    "client_id",
    "nonce",
    "at_hash",
    "scope",
    "scp",
    "authorities",
    "uid",
    "tenant",
    "roles",
    "permissions",
];

/// The index of `name` in [`KNOWN`], a match on the whole name (the compiler tests the length,
/// then the bytes, no `memcmp` call and no byte loop). Inlined: for a constant `name` (the
/// verifier's look-ups) it folds to the index.
#[inline(always)]
pub(crate) fn known(b: &[u8]) -> Option<usize> {
    Some(match b {
        b"iss" => 0,
        b"sub" => 1,
        b"aud" => 2,
        b"exp" => 3,
        b"nbf" => 4,
        b"iat" => 5,
        b"pv" => 6,
        b"client_id" => 7,
        b"nonce" => 8,
        b"at_hash" => 9,
        b"scope" => 10,
        b"scp" => 11,
        b"authorities" => 12,
        b"uid" => 13,
        b"tenant" => 14,
        b"roles" => 15,
        b"permissions" => 16,
        _ => return None,
    })
}

/// Reading the tape.
impl<'c> Claims<'c> {
    fn view(&'c self, i: usize) -> Option<Lite<'c>> {
        let node = *self.tape.get(i)?;
        Some(match node.tag {
            Tag::Null => Lite::Null,
            Tag::False => Lite::Bool(false),
            Tag::True => Lite::Bool(true),
            Tag::U64 => Lite::Number(node.n.into()),
            Tag::I64 => Lite::Number((node.n as i64).into()),
            Tag::F64 => Lite::Number(Number::from_f64(f64::from_bits(node.n))?),
            Tag::NumText => Lite::Number(
                self.esc
                    .get(node.a as usize..node.n as usize)?
                    .parse()
                    .ok()?,
            ),
            Tag::Str | Tag::Esc => Lite::String(self.doc().str_at(i)),
            Tag::Array => Lite::Array(Seq {
                claims: self,
                first: i as u32 + 1,
                count: node.a,
            }),
            Tag::Object => Lite::Object(Seq {
                claims: self,
                first: i as u32 + 1,
                count: node.a,
            }),
        })
    }

    /// The member `name` of the object whose members start at `first`.
    fn member(&'c self, first: usize, count: u32, name: &str) -> Option<Lite<'c>> {
        let mut i = first;
        for _ in 0..count {
            if self.doc().bytes_at(i) == name.as_bytes() {
                return self.view(i + 1);
            }
            i = self.doc().after(i + 1);
        }
        None
    }

    fn tree(&'c self, i: usize) -> Tree<'static> {
        match self.view(i) {
            None | Some(Lite::Null) => Tree::Null,
            Some(Lite::Bool(b)) => Tree::Bool(b),
            Some(Lite::Number(n)) => Tree::Number(n),
            Some(Lite::String(s)) => Tree::String(Cow::Owned(s.to_owned())),
            Some(Lite::Array(seq)) => {
                let mut out = Vec::new();
                let mut j = seq.first as usize;
                for _ in 0..seq.count {
                    out.push(self.tree(j));
                    j = self.doc().after(j);
                }
                Tree::Array(out)
            }
            Some(Lite::Object(seq)) => {
                Tree::Object(self.members_tree(seq.first as usize, seq.count))
            }
        }
    }

    fn members_tree(&'c self, first: usize, count: u32) -> Vec<(Cow<'static, str>, Tree<'static>)> {
        let mut out = Vec::new();
        let mut j = first;
        for _ in 0..count {
            out.push((
                Cow::Owned(self.doc().str_at(j).to_owned()),
                self.tree(j + 1),
            ));
            j = self.doc().after(j + 1);
        }
        out
    }
}

impl<'a> Claims<'a> {
    /// Finds the [`KNOWN`] names among the members (the scanner does it as it reads them).
    fn with_slots(text: &'a str, esc: String, tape: Vec<Node>) -> Self {
        let mut slots = [0; KNOWN.len()];
        let doc = Doc {
            tape: &tape,
            text,
            esc: &esc,
        };
        let count = tape.first().map_or(0, |n| n.a);
        let mut i = 1;
        for _ in 0..count {
            if let (Some(k), Ok(v)) = (known(doc.bytes_at(i)), u32::try_from(i + 1)) {
                // Names are distinct (duplicates were refused): one member per slot.
                slots[k] = v;
            }
            i = doc.after(i + 1);
        }
        Claims {
            text,
            esc,
            tape,
            slots,
        }
    }

    fn doc(&self) -> Doc<'_> {
        Doc {
            tape: &self.tape,
            text: self.text,
            esc: &self.esc,
        }
    }

    /// The member `name`.
    #[inline(always)]
    pub(crate) fn get(&self, name: &str) -> Option<Lite<'_>> {
        match known(name.as_bytes()) {
            Some(k) => match self.slots[k] {
                0 => None,
                i => self.view(i as usize),
            },
            None => {
                let count = self.tape.first().map_or(0, |n| n.a);
                self.member(1, count, name)
            }
        }
    }

    /// The member with [`known`] index `k` (a claim mapping's name, resolved once).
    pub(crate) fn get_known(&self, k: usize) -> Option<Lite<'_>> {
        match self.slots.get(k).copied()? {
            0 => None,
            i => self.view(i as usize),
        }
    }

    /// The members as [`Tree`]s (what the differential tests compare).
    pub(crate) fn to_tree(&self) -> Vec<(Cow<'static, str>, Tree<'static>)> {
        let count = self.tape.first().map_or(0, |n| n.a);
        self.members_tree(1, count)
    }
}

impl Claims<'static> {
    /// The claims of a `serde_json` object (its strings copied).
    pub(crate) fn from_map(map: &Map<String, Value>) -> Self {
        fn push(v: &Value, tape: &mut Vec<Node>, esc: &mut String) {
            let span = |esc: &mut String, s: &str| {
                let a = esc.len();
                esc.push_str(s);
                (a as u32, esc.len() as u64)
            };
            match v {
                Value::Null => tape.push(Node::new(Tag::Null, 0, 0)),
                Value::Bool(false) => tape.push(Node::new(Tag::False, 0, 0)),
                Value::Bool(true) => tape.push(Node::new(Tag::True, 0, 0)),
                Value::Number(n) => tape.push(if arbitrary_precision() {
                    let (a, e) = span(esc, &n.to_string());
                    Node::new(Tag::NumText, a, e)
                } else if let Some(u) = n.as_u64() {
                    Node::new(Tag::U64, 0, u)
                } else if let Some(i) = n.as_i64() {
                    Node::new(Tag::I64, 0, i as u64)
                } else {
                    Node::new(Tag::F64, 0, n.as_f64().unwrap_or_default().to_bits())
                }),
                Value::String(s) => {
                    let (a, e) = span(esc, s);
                    tape.push(Node::new(Tag::Esc, a, e));
                }
                Value::Array(items) => {
                    let at = tape.len();
                    tape.push(Node::new(Tag::Array, items.len() as u32, 0));
                    for item in items {
                        push(item, tape, esc);
                    }
                    tape[at].n = tape.len() as u64;
                }
                Value::Object(map) => {
                    let at = tape.len();
                    tape.push(Node::new(Tag::Object, map.len() as u32, 0));
                    for (k, v) in map {
                        let (a, e) = span(esc, k);
                        tape.push(Node::new(Tag::Esc, a, e));
                        push(v, tape, esc);
                    }
                    tape[at].n = tape.len() as u64;
                }
            }
        }
        let (mut tape, mut esc) = (Vec::new(), String::new());
        push(&Value::Object(map.clone()), &mut tape, &mut esc);
        Claims::with_slots("", esc, tape)
    }
}

/// Parses a JSON object as [`parse_object`] does (same grammar, same answers, duplicate member
/// names refused at any depth) without building a `Map`: into a tape whose strings are spans
/// of `text`.
///
/// A strict scanner of serde_json's grammar (RFC 8259; its escapes, surrogate pairs, number
/// syntax and values, nesting limit of 127; duplicates refused when the second name is read),
/// checked against [`parse_claims_serde`], serde_json with a visitor, by differential tests
/// and the `claims_json` fuzz target: the same values or the same refusal on every input.
/// Texts of 4 GiB or more (spans are 32-bit) are refused.
pub(crate) fn parse_claims(text: &str) -> Result<Claims<'_>, TokenError> {
    if u32::try_from(text.len()).is_err() {
        return Err(TokenError::InvalidJson);
    }
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
        depth: 128,
        ap: arbitrary_precision(),
        // About one node per 12 bytes of a token's claims.
        tape: take_tape(8 + text.len() / 12),
        esc: String::new(),
        slots: [0; KNOWN.len()],
    };
    s.ws();
    s.value()?;
    s.ws();
    if s.i != s.b.len() {
        return Err(TokenError::InvalidJson);
    }
    match s.tape.first() {
        Some(Node {
            tag: Tag::Object, ..
        }) => Ok(Claims {
            text,
            esc: s.esc,
            tape: s.tape,
            slots: s.slots,
        }),
        // `{"$serde_json::private::Number": ..}` under `arbitrary_precision`: a number.
        _ => Err(TokenError::InvalidJson),
    }
}

thread_local! {
    /// The tape of this thread's last parsed claims, for its next parse: one allocation less
    /// per verification. It holds nodes (spans and numbers), never the claims' text; tapes of
    /// more than [`TAPE_KEEP`] nodes are not kept.
    static TAPE: std::cell::Cell<Vec<Node>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The most nodes a kept tape may have room for (16 KiB).
const TAPE_KEEP: usize = 16 * 1024 / std::mem::size_of::<Node>();

/// An empty tape with room for `want` nodes: this thread's kept one, else a new one.
fn take_tape(want: usize) -> Vec<Node> {
    let mut tape = TAPE.try_with(std::cell::Cell::take).unwrap_or_default();
    tape.clear();
    tape.reserve(want);
    tape
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        let mut tape = std::mem::take(&mut self.tape);
        if tape.capacity() <= TAPE_KEEP {
            tape.clear();
            // During thread teardown the tape is just freed.
            let _ = TAPE.try_with(|kept| kept.set(tape));
        }
    }
}

/// [`parse_claims`] through serde_json and a visitor: the reference the scanner is checked
/// against (tests and the `claims_json` fuzz target).
pub(crate) fn parse_claims_serde(text: &str) -> Result<Vec<(Cow<'_, str>, Tree<'_>)>, TokenError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = de.deserialize_any(LiteVisitor).map_err(classify)?;
    de.end().map_err(|_| TokenError::InvalidJson)?;
    match value {
        Tree::Object(members) => Ok(members),
        _ => Err(TokenError::InvalidJson),
    }
}

/// Both parses of `text`, as `Debug` text of their members (or their error), for the
/// `claims_json` fuzz target: `(scanner, serde_json)`.
pub(crate) fn parse_claims_both(
    text: &str,
) -> (Result<String, TokenError>, Result<String, TokenError>) {
    (
        parse_claims(text).map(|c| format!("{:?}", c.to_tree())),
        parse_claims_serde(text).map(|m| format!("{m:?}")),
    )
}

const BAD: TokenError = TokenError::InvalidJson;

/// Bit 7 of each byte of `x` (little-endian) that is `"`, `\` or below 0x20 (what ends a run
/// of plain string bytes), from the classic zero-byte tests: exact up to the first such byte
/// (only bytes after it may be marked wrongly), so the lowest set bit finds it.
#[inline(always)]
fn special8(x: u64) -> u64 {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(L) & !v & H;
    let quote = zero(x ^ (L * u64::from(b'"')));
    let backslash = zero(x ^ (L * u64::from(b'\\')));
    let control = x.wrapping_sub(L * 0x20) & !x & H;
    quote | backslash | control
}

/// The scanner of [`parse_claims`].
struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    /// serde_json's `remaining_depth`: a container entered at 1 left is refused.
    depth: u8,
    /// serde_json with `arbitrary_precision`: numbers keep their text.
    ap: bool,
    tape: Vec<Node>,
    esc: String,
    /// [`Claims::slots`] of the outermost object.
    slots: [u32; KNOWN.len()],
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// serde_json's whitespace: space, `\n`, `\t`, `\r`.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn push(&mut self, tag: Tag, a: u32, n: u64) {
        self.tape.push(Node::new(tag, a, n));
    }

    /// A value; whitespace before it already skipped.
    fn value(&mut self) -> Result<(), TokenError> {
        match self.peek().ok_or(BAD)? {
            b'"' => {
                self.i += 1;
                self.string()
            }
            b'{' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return Err(BAD);
                }
                self.i += 1;
                let v = self.object();
                self.depth += 1;
                v
            }
            b'[' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return Err(BAD);
                }
                self.i += 1;
                let v = self.array();
                self.depth += 1;
                v
            }
            b'-' | b'0'..=b'9' => self.number(),
            b'n' => self.literal(b"null", Tag::Null),
            b't' => self.literal(b"true", Tag::True),
            b'f' => self.literal(b"false", Tag::False),
            _ => Err(BAD),
        }
    }

    fn literal(&mut self, word: &[u8], tag: Tag) -> Result<(), TokenError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            self.push(tag, 0, 0);
            Ok(())
        } else {
            Err(BAD)
        }
    }

    fn doc(&self) -> Doc<'_> {
        Doc {
            tape: &self.tape,
            text: self.text,
            esc: &self.esc,
        }
    }

    /// The name at `i`, borrowed from the text or copied from the escapes' text.
    fn name(&self, i: usize) -> Cow<'a, str> {
        match self.tape.get(i) {
            Some(&Node {
                tag: Tag::Str,
                a,
                n,
            }) => {
                let text: &'a str = self.text;
                Cow::Borrowed(text.get(a as usize..n as usize).unwrap_or_default())
            }
            _ => Cow::Owned(self.doc().str_at(i).to_owned()),
        }
    }

    /// After `{`.
    fn object(&mut self) -> Result<(), TokenError> {
        let at = self.tape.len();
        self.push(Tag::Object, 0, 0);
        let mut count = 0u32;
        // Duplicates as in `LiteVisitor::visit_map`: one bit per name seen (only a name whose
        // bit is set is compared with the earlier names), and past `LINEAR` members a hash set.
        const LINEAR: u32 = 24;
        let mut seen = 0u64;
        let mut many: Option<HashSet<Cow<'a, str>>> = None;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.tape[at].n = self.tape.len() as u64;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(BAD);
            }
            self.i += 1;
            let key = self.tape.len();
            self.string()?;
            if count == 0 && self.ap && self.doc().str_at(key) == PRIVATE_NUMBER {
                self.tape.truncate(at);
                return self.private_number();
            }
            if let Some(names) = &mut many {
                let name = match self.tape.get(key) {
                    Some(&Node {
                        tag: Tag::Str,
                        a,
                        n,
                    }) => {
                        let text: &'a str = self.text;
                        Cow::Borrowed(text.get(a as usize..n as usize).unwrap_or_default())
                    }
                    _ => Cow::Owned(self.doc().str_at(key).to_owned()),
                };
                if !names.insert(name) {
                    return Err(TokenError::DuplicateMember);
                }
            } else {
                let doc = Doc {
                    tape: &self.tape,
                    text: self.text,
                    esc: &self.esc,
                };
                let name = doc.bytes_at(key);
                if at == 0 {
                    if let Some(k) = known(name) {
                        // Distinct names (a duplicate is refused below): one member per slot.
                        self.slots[k] = key as u32 + 1;
                    }
                }
                let bit = name_bit(name);
                if seen & bit != 0 {
                    let mut j = at + 1;
                    while j < key {
                        if doc.bytes_at(j) == name {
                            return Err(TokenError::DuplicateMember);
                        }
                        j = doc.after(j + 1);
                    }
                }
                seen |= bit;
                if count == LINEAR {
                    let mut names: HashSet<Cow<'a, str>> =
                        HashSet::with_capacity(4 * LINEAR as usize);
                    let mut j = at + 1;
                    while j <= key {
                        names.insert(self.name(j));
                        j = self.doc().after(j + 1);
                    }
                    many = Some(names);
                }
            }
            self.ws();
            if self.peek() != Some(b':') {
                return Err(BAD);
            }
            self.i += 1;
            self.ws();
            self.value()?;
            count += 1;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    let end = self.tape.len() as u64;
                    self.tape[at] = Node::new(Tag::Object, count, end);
                    return Ok(());
                }
                _ => return Err(BAD),
            }
        }
    }

    /// `{"$serde_json::private::Number": "<text>"}` under `arbitrary_precision`, after the
    /// name: serde_json's visitors read it as the number `<text>` (see `LiteVisitor`).
    #[cold]
    fn private_number(&mut self) -> Result<(), TokenError> {
        self.ws();
        if self.peek() != Some(b':') {
            return Err(BAD);
        }
        self.i += 1;
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(BAD);
        }
        self.i += 1;
        let at = self.tape.len();
        self.string()?;
        let text = self.doc().str_at(at).to_owned();
        self.tape.truncate(at);
        self.ws();
        if self.peek() != Some(b'}') {
            return Err(BAD);
        }
        self.i += 1;
        text.parse::<Number>().map_err(|_| BAD)?;
        self.number_text(&text);
        Ok(())
    }

    /// A number kept as its text (`arbitrary_precision`).
    fn number_text(&mut self, text: &str) {
        let a = self.esc.len() as u32;
        self.esc.push_str(text);
        let n = self.esc.len() as u64;
        self.push(Tag::NumText, a, n);
    }

    /// After `[`.
    fn array(&mut self) -> Result<(), TokenError> {
        let at = self.tape.len();
        self.push(Tag::Array, 0, 0);
        let mut count = 0u32;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.tape[at].n = self.tape.len() as u64;
            return Ok(());
        }
        loop {
            self.value()?;
            count += 1;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    let end = self.tape.len() as u64;
                    self.tape[at] = Node::new(Tag::Array, count, end);
                    return Ok(());
                }
                _ => return Err(BAD),
            }
        }
    }

    /// After the opening `"`: the string, a span of the text when it has no escape.
    fn string(&mut self) -> Result<(), TokenError> {
        let start = self.i;
        // Eight bytes a step to the first `"`, `\` or control byte.
        loop {
            let Some(chunk) = self.b.get(self.i..self.i + 8) else {
                while let Some(c) = self.peek() {
                    if c == b'"' || c == b'\\' || c < 0x20 {
                        break;
                    }
                    self.i += 1;
                }
                break;
            };
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            match special8(u64::from_le_bytes(word)) {
                0 => self.i += 8,
                m => {
                    self.i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
            }
        }
        match self.peek().ok_or(BAD)? {
            b'"' => {
                // `"` is never inside a UTF-8 sequence: `start..i` is text.
                self.push(Tag::Str, start as u32, self.i as u64);
                self.i += 1;
                Ok(())
            }
            b'\\' => self.escaped(start),
            _ => Err(BAD),
        }
    }

    /// The rest of a string from its first escape (at `self.i`; the string began at `start`).
    #[cold]
    fn escaped(&mut self, start: usize) -> Result<(), TokenError> {
        let a = self.esc.len();
        let text = self.text;
        self.esc.push_str(text.get(start..self.i).ok_or(BAD)?);
        loop {
            let run = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            self.esc.push_str(text.get(run..self.i).ok_or(BAD)?);
            match self.peek().ok_or(BAD)? {
                b'"' => {
                    self.i += 1;
                    let n = self.esc.len() as u64;
                    self.push(Tag::Esc, a as u32, n);
                    return Ok(());
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1).ok_or(BAD)?;
                    self.i += 2;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(BAD),
                    };
                    self.esc.push(c);
                }
                _ => return Err(BAD),
            }
        }
    }

    /// After `\u`: one character; surrogates only as a pair of escapes (serde_json on text).
    fn unicode_escape(&mut self) -> Result<char, TokenError> {
        let n = self.hex4()?;
        let n = match n {
            0xDC00..=0xDFFF => return Err(BAD),
            0xD800..=0xDBFF => {
                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                    return Err(BAD);
                }
                self.i += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(BAD);
                }
                0x1_0000 + ((n - 0xD800) << 10) + (low - 0xDC00)
            }
            n => n,
        };
        char::from_u32(n).ok_or(BAD)
    }

    fn hex4(&mut self) -> Result<u32, TokenError> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(BAD)?;
        let mut n = 0;
        for &c in digits {
            n = n << 4 | char::from(c).to_digit(16).ok_or(BAD)?;
        }
        self.i += 4;
        Ok(n)
    }

    /// One or more digits.
    fn digits(&mut self) -> Result<(), TokenError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(BAD);
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        Ok(())
    }

    /// A number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, valued as serde_json
    /// values it (short integers here, anything else by serde_json itself).
    fn number(&mut self) -> Result<(), TokenError> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let int = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(BAD),
        }
        let int = &self.b[int..self.i];
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            integer = false;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        if integer && !self.ap {
            let value = || int.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            // No overflow in 19 digits (u64) or 18 (i64); `-0` is serde_json's float -0.0.
            if !negative && int.len() <= 19 {
                self.push(Tag::U64, 0, value());
                return Ok(());
            }
            if negative && int.len() <= 18 && int[0] != b'0' {
                self.push(Tag::I64, 0, (value() as i64).wrapping_neg() as u64);
                return Ok(());
            }
        }
        let text = self.text.get(start..self.i).ok_or(BAD)?;
        let n = text.parse::<Number>().map_err(|_| BAD)?;
        if self.ap {
            self.number_text(text);
        } else if let Some(u) = n.as_u64() {
            self.push(Tag::U64, 0, u);
        } else if let Some(i) = n.as_i64() {
            self.push(Tag::I64, 0, i as u64);
        } else {
            // Finite: serde_json refuses numbers out of `f64`'s range.
            self.push(Tag::F64, 0, n.as_f64().ok_or(BAD)?.to_bits());
        }
        Ok(())
    }
}

struct LiteSeed;

impl<'de> DeserializeSeed<'de> for LiteSeed {
    type Value = Tree<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tree<'de>, D::Error> {
        d.deserialize_any(LiteVisitor)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// A cheap fingerprint of a member name for the duplicate check: one bit of 64.
fn name_bit(b: &[u8]) -> u64 {
    let (first, last) = (b.first().copied(), b.last().copied());
    let h = (b.len() as u64)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(u64::from(first.unwrap_or(0)).wrapping_mul(31))
        .wrapping_add(u64::from(last.unwrap_or(0)).wrapping_mul(7));
    1 << ((h ^ (h >> 6)) & 63)
}

struct LiteVisitor;

impl<'de> Visitor<'de> for LiteVisitor {
    type Value = Tree<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Tree::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Tree::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Tree::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Number::from_f64(v)
            .map(Tree::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Tree::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Tree::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Tree::String(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Tree::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Tree::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(LiteSeed)? {
            out.push(v);
        }
        Ok(Tree::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<(Cow<'de, str>, Tree<'de>)> = Vec::new();
        // One bit per name seen: only a name whose bit is set can be a duplicate, and only those
        // are compared with the earlier names. Past `LINEAR` members (hostile input, as the
        // claims are parsed before the signature is checked) a hash set keeps it linear.
        const LINEAR: usize = 24;
        let mut seen = 0u64;
        let mut many: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if out.is_empty() && key == PRIVATE_NUMBER && arbitrary_precision() {
                // A number under `arbitrary_precision`: its text, then nothing else.
                let text = map.next_value::<String>()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("malformed number"));
                }
                return text
                    .parse::<Number>()
                    .map(Tree::Number)
                    .map_err(|_| de::Error::custom("malformed number"));
            }
            if let Some(names) = &mut many {
                if !names.insert(key.clone()) {
                    return Err(de::Error::custom(DUPLICATE));
                }
            } else {
                let bit = name_bit(key.as_bytes());
                if seen & bit != 0 && out.iter().any(|(k, _)| *k == key) {
                    return Err(de::Error::custom(DUPLICATE));
                }
                seen |= bit;
                if out.len() == LINEAR {
                    let mut names: HashSet<Cow<'de, str>> = HashSet::with_capacity(4 * LINEAR);
                    names.extend(out.iter().map(|(k, _)| k.clone()));
                    names.insert(key.clone());
                    many = Some(names);
                }
            }
            let value = map.next_value_seed(LiteSeed)?;
            if out.capacity() == 0 {
                // A token's claims: about a dozen.
                out.reserve(16);
            }
            out.push((key, value));
        }
        Ok(Tree::Object(out))
    }
}

fn classify(e: serde_json::Error) -> TokenError {
    if e.is_data() && e.to_string().starts_with(DUPLICATE) {
        TokenError::DuplicateMember
    } else {
        TokenError::InvalidJson
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if first && key == PRIVATE_NUMBER && arbitrary_precision() {
                // A number under `arbitrary_precision`: its text, then nothing else.
                let text = map.next_value::<String>()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("malformed number"));
                }
                return text
                    .parse::<serde_json::Number>()
                    .map(Value::Number)
                    .map_err(|_| de::Error::custom("malformed number"));
            }
            first = false;
            let value = map.next_value_seed(StrictSeed)?;
            match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(_) => return Err(de::Error::custom(DUPLICATE)),
            }
        }
        Ok(Value::Object(out))
    }
}

/// A [`Tree`] as a `serde_json` value (tests).
#[cfg(test)]
pub(crate) fn tree_value(t: &Tree<'_>) -> Value {
    match t {
        Tree::Null => Value::Null,
        Tree::Bool(b) => Value::Bool(*b),
        Tree::Number(n) => Value::Number(n.clone()),
        Tree::String(s) => Value::String(s.to_string()),
        Tree::Array(a) => Value::Array(a.iter().map(tree_value).collect()),
        Tree::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_string(), tree_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(TokenError::DuplicateMember)
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":[{"c":1,"c":1}]}}"#),
            Err(TokenError::DuplicateMember)
        );
        // Escaped spelling of the same name is the same member.
        assert_eq!(
            parse_object(br#"{"alg":"RS256","\u0061lg":"none"}"#),
            Err(TokenError::DuplicateMember)
        );
        assert!(parse_object(br#"{"a":{"a":1}}"#).is_ok());
    }

    #[test]
    fn only_objects_and_no_trailing_data() {
        assert_eq!(parse_object(b"[1]"), Err(TokenError::InvalidJson));
        assert_eq!(parse_object(b"{} x"), Err(TokenError::InvalidJson));
        assert_eq!(parse_object(b"{\"a\":1"), Err(TokenError::InvalidJson));
    }

    #[test]
    fn numbers_are_numbers_with_or_without_arbitrary_precision() {
        let map = parse_object(
            br#"{"exp":1700000300,"nbf":-5,"iat":1.7e9,"pv":3,"x":[1,{"y":2.5}],"big":18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(map["exp"].as_u64(), Some(1_700_000_300));
        assert_eq!(map["nbf"].as_i64(), Some(-5));
        assert_eq!(map["iat"].as_f64(), Some(1.7e9));
        assert_eq!(map["pv"].as_i64(), Some(3));
        assert_eq!(map["x"][0].as_u64(), Some(1));
        assert_eq!(map["x"][1]["y"].as_f64(), Some(2.5));
        assert_eq!(map["big"].as_u64(), Some(u64::MAX));
        assert!(
            map.values()
                .all(|v| !v.is_object() || v.get(PRIVATE_NUMBER).is_none())
        );
        // Duplicates are still found inside nested objects holding numbers.
        assert_eq!(
            parse_object(br#"{"a":{"n":1,"n":2}}"#),
            Err(TokenError::DuplicateMember)
        );
    }

    #[test]
    fn private_number_key_is_an_object_without_arbitrary_precision() {
        let map = parse_object(br#"{"exp":{"$serde_json::private::Number":"1"}}"#);
        if arbitrary_precision() {
            // serde_json itself reads this form as a number in that mode.
            assert_eq!(map.unwrap()["exp"].as_u64(), Some(1));
        } else {
            assert!(map.unwrap()["exp"].is_object());
        }
    }

    #[cfg(feature = "__test-arbitrary-precision")]
    #[test]
    fn the_test_feature_turns_arbitrary_precision_on() {
        assert!(arbitrary_precision());
    }

    #[test]
    fn base64url_agrees_with_the_base64_crate() {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Every length up to 70 bytes, varied contents: the same text, and back.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..70 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(b64url(&text).unwrap(), bytes, "{text}");
            // One character of the text replaced by each byte value: decoded alike or refused
            // alike by both decoders.
            for at in [0, text.len() / 2, text.len().saturating_sub(1)] {
                if text.is_empty() {
                    break;
                }
                for c in 0..=255u8 {
                    let mut t = text.clone().into_bytes();
                    t[at] = c;
                    let Ok(t) = String::from_utf8(t) else {
                        continue;
                    };
                    assert_eq!(b64url(&t).ok(), URL_SAFE_NO_PAD.decode(&t).ok(), "{t:?}");
                }
            }
        }
        for bad in [
            "A", "AAAAA", "A=", "AA==", "AAA=", "AB", "AAB", "A A", "AA\n",
        ] {
            assert_eq!(b64url(bad), Err(TokenError::InvalidBase64), "{bad}");
        }
        assert_eq!(b64url_text("_w"), Err(TokenError::InvalidJson));
        assert_eq!(b64url_text("e30").as_deref(), Ok("{}"));
    }

    #[test]
    fn claims_parse_as_the_map_parse_does() {
        let cases: &[&[u8]] = &[
            br#"{"a":1,"a":2}"#,
            br#"{"a":{"b":[{"c":1,"c":1}]}}"#,
            br#"{"alg":"RS256","\u0061lg":"none"}"#,
            br#"{"a":{"a":1}}"#,
            b"[1]",
            b"{} x",
            b"{\"a\":1",
            br#"{"exp":1700000300,"nbf":-5,"iat":1.7e9,"s":"x\ny","u":"\u00e9","n":null,"t":true}"#,
            br#"{"exp":{"$serde_json::private::Number":"1"}}"#,
            br#"{"x":1e400}"#,
            br#"{"x":"\ud800"}"#,
            b"{\"x\":\"\xff\"}",
            b" {\"x\" : [ ] , \"y\":{}} ",
        ];
        for case in cases {
            let map = parse_object(case);
            let lite = std::str::from_utf8(case)
                .map_err(|_| TokenError::InvalidJson)
                .and_then(parse_claims);
            match (&map, &lite) {
                (Ok(map), Ok(claims)) => {
                    let lite = tree_value(&Tree::Object(claims.to_tree()));
                    assert_eq!(
                        lite,
                        Value::Object(map.clone()),
                        "{:?}",
                        case.escape_ascii()
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{:?}", case.escape_ascii()),
                _ => panic!("{:?}: {map:?} vs {lite:?}", case.escape_ascii()),
            }
        }
        // Strings without escapes borrow from the text.
        let text = r#"{"sub":"alice","esc":"a\"b"}"#;
        let claims = parse_claims(text).unwrap();
        let inside = |s: &str| {
            let at = (s.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
            at < text.len()
        };
        assert!(matches!(claims.get("sub"), Some(Lite::String(s)) if s == "alice" && inside(s)));
        assert!(matches!(claims.get("esc"), Some(Lite::String(s)) if s == "a\"b" && !inside(s)));
    }

    /// Edge cases of serde_json's grammar, numbers and strings (the seeds of the differential
    /// test below and of the `claims_json` fuzz target's corpus).
    const GRAMMAR_CASES: &[&str] = &[
        r#"{}"#,
        r#" { } "#,
        "",
        " ",
        "{",
        "}",
        "{}}",
        "{} {}",
        "[]",
        "[{}]",
        "null",
        "1",
        "\"s\"",
        r#"{"a":1}"#,
        r#"{"a":1,}"#,
        r#"{,"a":1}"#,
        r#"{"a" 1}"#,
        r#"{"a":1 "b":2}"#,
        r#"{"a":}"#,
        r#"{a:1}"#,
        r#"{'a':1}"#,
        r#"{"a":1]"#,
        r#"{"a":[1}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":[,1]}"#,
        r#"{"a":[1 2]}"#,
        "{\"a\":1}\n\t\r ",
        "{\"a\":1}\x0c",
        "\x0c{}",
        "{\"a\":\x0b1}",
        r#"{"a":1,"a":2}"#,
        r#"{"a":1,"a""#,
        r#"{"a":1,"a":"#,
        r#"{"a":1,"a":}"#,
        r#"{"a":{"b":1,"b":x}}"#,
        r#"[{"a":1,"a":2}]"#,
        r#"[{"a":1,"a":2}] x"#,
        r#"{"a":1,"\u0061":2}"#,
        r#"{"a":{"a":1},"b":{"a":1}}"#,
        r#"{"n":null,"t":true,"f":false}"#,
        r#"{"n":nul}"#,
        r#"{"n":nulll}"#,
        r#"{"t":tru}"#,
        r#"{"t":truex}"#,
        r#"{"f":False}"#,
        r#"{"n":NaN}"#,
        r#"{"n":Infinity}"#,
        r#"{"n":0}"#,
        r#"{"n":-0}"#,
        r#"{"n":-0.0}"#,
        r#"{"n":0.0}"#,
        r#"{"n":01}"#,
        r#"{"n":-01}"#,
        r#"{"n":-}"#,
        r#"{"n":1.}"#,
        r#"{"n":.5}"#,
        r#"{"n":+1}"#,
        r#"{"n":1e}"#,
        r#"{"n":1e+}"#,
        r#"{"n":1.e5}"#,
        r#"{"n":1.5}"#,
        r#"{"n":1E5}"#,
        r#"{"n":1e-5}"#,
        r#"{"n":0.1e+2}"#,
        r#"{"n":1e400}"#,
        r#"{"n":-1e400}"#,
        r#"{"n":1e-400}"#,
        r#"{"n":123456789012345678901234567890}"#,
        r#"{"n":9999999999999999999}"#,
        r#"{"n":18446744073709551615}"#,
        r#"{"n":18446744073709551616}"#,
        r#"{"n":-999999999999999999}"#,
        r#"{"n":-9999999999999999999}"#,
        r#"{"n":-9223372036854775808}"#,
        r#"{"n":-9223372036854775809}"#,
        r#"{"n":1700000000}"#,
        r#"{"n":1.7e9}"#,
        r#"{"n":2.2250738585072011e-308}"#,
        r#"{"n":0.30000000000000004}"#,
        r#"{"n":1x}"#,
        r#"{"n":0x10}"#,
        r#"{"n":1,2}"#,
        r#"{"n":[-1,-0,0,1.0,1e1]}"#,
        r#"{"s":"a\"b\\c\/d\be\ff\ng\rh\ti"}"#,
        r#"{"s":"\u00e9\u00E9"}"#,
        r#"{"s":"\uD83D\uDE00"}"#,
        r#"{"s":"\ud83d\ude00x"}"#,
        r#"{"s":"\ud83d"}"#,
        r#"{"s":"\ude00"}"#,
        r#"{"s":"\ud83d\u0041"}"#,
        r#"{"s":"\ud83d\n"}"#,
        r#"{"s":"\ud83d\ud83d"}"#,
        r#"{"s":"\ud83dx"}"#,
        r#"{"s":"\u12"}"#,
        r#"{"s":"\u12g4"}"#,
        r#"{"s":"\x"}"#,
        r#"{"s":"\'"}"#,
        r#"{"s":"\"#,
        r#"{"s":"abc"#,
        r#"{"s":"\u0000"}"#,
        "{\"s\":\"\x01\"}",
        "{\"s\":\"\x1f\"}",
        "{\"s\":\" \"}",
        "{\"s\":\"\t\"}",
        "{\"s\":\"\x7f\"}",
        "{\"s\":\"é\",\"é\":1}",
        "{\"s\":\"a\\u00e9\u{1F600}b\"}",
        r#"{"s\u0000":1}"#,
        r#"{"":1}"#,
        r#"{"":1,"":2}"#,
        "{\"\\u0061\":1,\"a\":2}",
        r#"{"exp":{"$serde_json::private::Number":"1"}}"#,
        r#"{"exp":{"$serde_json::private::Number":"x"}}"#,
        r#"{"exp":{"$serde_json::private::Number":1}}"#,
        r#"{"exp":{"$serde_json::private::Number":"1","b":2}}"#,
        r#"{"exp":{"$serde_json::private::Number":"1",}}"#,
        r#"{"exp":{"b":2,"$serde_json::private::Number":"1"}}"#,
        r#"{"$serde_json::private::Number":"1"}"#,
        r#"{"iss":"https://auth.example","aud":["orders","billing"],"sub":"alice","uid":"1001","scope":"a b","roles":["user","admin"],"exp":1700000300,"iat":1.7e9,"x":{"y":[{"z":null}]}}"#,
    ];

    /// The scanner against serde_json with a visitor (the reference): the same members or the
    /// same refusal, on the cases above, nesting around serde_json's limit, and random
    /// mutations of the cases.
    #[test]
    fn scanner_agrees_with_serde_json() {
        let check = |t: &str| {
            let (scanner, serde) = parse_claims_both(t);
            assert_eq!(scanner, serde, "{t:?}");
        };
        for case in GRAMMAR_CASES {
            check(case);
        }
        for depth in [1, 2, 125, 126, 127, 128, 129, 300] {
            for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
                check(&format!(
                    "{{\"x\":{}1{}}}",
                    open.repeat(depth),
                    close.repeat(depth)
                ));
                check(&format!("{}1{}", open.repeat(depth), close.repeat(depth)));
            }
        }
        // Mutations: a byte replaced, inserted or removed, or a slice repeated.
        const BYTES: &[u8] = b"{}[]\\\",:-+.eE019 \t\n\rux/anlsft\x01\x7f";
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for case in GRAMMAR_CASES {
            for _ in 0..200 {
                let mut t = case.as_bytes().to_vec();
                for _ in 0..1 + next(3) {
                    let at = next(t.len() + 1);
                    match next(4) {
                        0 if at < t.len() => t[at] = BYTES[next(BYTES.len())],
                        1 => t.insert(at, BYTES[next(BYTES.len())]),
                        2 if at < t.len() => {
                            t.remove(at);
                        }
                        _ => {
                            let end = (at + next(8)).min(t.len());
                            let slice = t[at..end].to_vec();
                            t.splice(at..at, slice);
                        }
                    }
                }
                if let Ok(t) = std::str::from_utf8(&t) {
                    check(t);
                }
            }
        }
    }

    #[test]
    fn known_names_are_found_by_index_and_others_by_name() {
        for (k, name) in KNOWN.iter().enumerate() {
            assert_eq!(known(name.as_bytes()), Some(k));
            assert_eq!(known(format!("{name}x").as_bytes()), None);
            assert_eq!(known(name.to_uppercase().as_bytes()), None);
        }
        for other in [
            "",
            "i",
            "iis",
            "isss",
            "is",
            "jti",
            "realm_access",
            "ixs",
            "rolls",
        ] {
            assert_eq!(known(other.as_bytes()), None, "{other}");
        }
        let claims = parse_claims(r#"{"jti":"j","iss":"i","x":{"iss":1},"scp":"s"}"#).unwrap();
        assert_eq!(claims.get("iss").and_then(|v| v.as_str()), Some("i"));
        assert_eq!(claims.get("jti").and_then(|v| v.as_str()), Some("j"));
        assert_eq!(claims.get("scp").and_then(|v| v.as_str()), Some("s"));
        assert!(claims.get("x").and_then(|x| x.get("iss")).is_some());
        assert!(claims.get("sub").is_none() && claims.get("y").is_none());
    }

    #[test]
    fn duplicates_among_many_members() {
        // Past the linear check's size, at the start, the middle and the end, and escaped.
        for n in [2usize, 23, 24, 25, 26, 100, 300] {
            let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
            let object = |names: &[String]| {
                let members: Vec<String> = names.iter().map(|k| format!("\"{k}\":0")).collect();
                format!("{{{}}}", members.join(","))
            };
            assert!(parse_claims(&object(&names)).is_ok(), "{n}");
            for dup in [0, n / 2, n - 1] {
                let mut with = names.clone();
                with.push(names[dup].clone());
                assert_eq!(
                    parse_claims(&object(&with)).unwrap_err(),
                    TokenError::DuplicateMember,
                    "{n} {dup}"
                );
                with.pop();
                with.insert(n / 3, names[dup].replacen('m', "\\u006d", 1));
                assert_eq!(
                    parse_claims(&object(&with)).unwrap_err(),
                    TokenError::DuplicateMember,
                    "{n} {dup} escaped"
                );
            }
        }
    }

    #[test]
    fn strict_base64url() {
        assert!(b64url("eyJ9").is_ok());
        assert_eq!(b64url("eyJ9=="), Err(TokenError::InvalidBase64));
        assert_eq!(b64url("ey+/"), Err(TokenError::InvalidBase64));
        // Non-zero trailing bits are not canonical.
        assert_eq!(b64url("QR"), Err(TokenError::InvalidBase64));
        assert!(b64url("QQ").is_ok());
    }
}

/// Checks of the scanner that do not share its code: duplicates against `parse_object`
/// (serde_json's own `Map`), number and string edge cases, deep nesting (review of `unc14`).
#[cfg(test)]
mod independent {
    use super::*;

    fn check(t: &str) {
        let map = parse_object(t.as_bytes());
        let lite = parse_claims(t);
        match (&map, &lite) {
            (Ok(map), Ok(c)) => {
                assert_eq!(c.to_tree().len(), map.len(), "{t:?}");
                let v = tree_value(&Tree::Object(c.to_tree()));
                assert_eq!(v, Value::Object(map.clone()), "{t:?}");
                for (k, v) in map {
                    assert_eq!(
                        c.get(k).map(|l| tree_value(&l.to_tree())).as_ref(),
                        Some(v),
                        "{t:?} {k}"
                    );
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{t:?}"),
            _ => panic!("{t:?}: {map:?} vs {lite:?}"),
        }
    }

    #[test]
    fn independent_duplicate_check() {
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        // Names from a tiny alphabet so that collisions (and name_bit collisions) are common.
        let alphabet = [
            "a",
            "b",
            "\\u0061",
            "\\u0062",
            "é",
            "\\u00e9",
            "exp",
            "\\u0065xp",
            "aa",
            "ab",
            "ba",
            "",
            "\\u0000",
        ];
        for _ in 0..20000 {
            let n = 1 + next(60);
            let mut members = Vec::new();
            for _ in 0..n {
                let len = 1 + next(3);
                let name: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
                let v = match next(4) {
                    0 => "1".to_owned(),
                    1 => format!(
                        "{{\"{}\":2,\"{}\":3}}",
                        alphabet[next(alphabet.len())],
                        alphabet[next(alphabet.len())]
                    ),
                    2 => "[{},{}]".to_owned(),
                    _ => "\"s\"".to_owned(),
                };
                members.push(format!("\"{name}\":{v}"));
            }
            check(&format!("{{{}}}", members.join(",")));
        }
        // Distinct names, many, then one duplicate at random positions.
        for n in [24usize, 25, 26, 64, 65, 200] {
            for _ in 0..200 {
                let mut names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
                let dup = names[next(n)].clone();
                let at = next(n + 1);
                names.insert(at, dup.replacen('k', "\\u006b", next(2)));
                let members: Vec<String> = names.iter().map(|k| format!("\"{k}\":0")).collect();
                check(&format!("{{{}}}", members.join(",")));
                names.remove(at);
                let members: Vec<String> = names.iter().map(|k| format!("\"{k}\":0")).collect();
                check(&format!("{{{}}}", members.join(",")));
            }
        }
    }

    #[test]
    fn numbers_and_strings() {
        let mut cases: Vec<String> = Vec::new();
        for n in [
            "0",
            "-0",
            "00",
            "-00",
            "0e0",
            "-0e-0",
            "0E+999999999999999999999",
            "1e308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "-1e309",
            "4.9e-324",
            "2e-324",
            "1e-99999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "9223372036854775807",
            "9223372036854775808",
            "-1000000000000000000",
            "-999999999999999999",
            "1000000000000000000",
            "9999999999999999999",
            "10000000000000000000",
            "99999999999999999999",
            "0.000000000000000000000000000000000000001",
            "123456789012345678901234567890e-10",
            "1.0",
            "-1.5e+3",
            "1e",
            "1e-",
            "-",
            "--1",
            "1.",
            ".1",
            "+1",
            "1.e1",
            "1e1.5",
            "0x1",
            "1_0",
            "100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ] {
            cases.push(format!("{{\"n\":{n}}}"));
            cases.push(format!("{{\"n\":[{n}]}}"));
            cases.push(format!("{{\"n\":{n} }}"));
        }
        for s in [
            "\\ud800",
            "\\udbff\\udfff",
            "\\ud800\\udc00",
            "\\udc00",
            "\\ud800\\ud800\\udc00",
            "\\ud800\\",
            "\\ud800\\u",
            "\\ud800\\udc0",
            "\\uD800\\uDC00",
            "\\u00",
            "\\uFFFF",
            "\\uFFFE",
            "\\u0000",
            "\\/",
            "\\a",
            "\\U0041",
            "\u{7f}",
            "\u{80}",
            "\u{10FFFF}",
            "\u{FEFF}",
            "a\\u0041\u{1F600}\\n",
            "\\",
            "\\\"",
        ] {
            cases.push(format!("{{\"s\":\"{s}\"}}"));
            cases.push(format!("{{\"{s}\":1}}"));
        }
        for c in 0u8..0x20 {
            cases.push(format!("{{\"s\":\"{}\"}}", c as char));
            cases.push(format!("{{\"s\":\"\\n{}\"}}", c as char));
            cases.push(format!("{}{{}}", c as char));
            cases.push(format!("{{{}}}", c as char));
        }
        cases.push("\u{FEFF}{}".into());
        cases.push("{}\u{FEFF}".into());
        cases.push("{}\u{a0}".into());
        for t in &cases {
            check(t);
            let (a, b) = parse_claims_both(t);
            assert_eq!(a, b, "{t:?}");
        }
        // Deep nesting, stack safety.
        for d in [126, 127, 128, 100_000] {
            let t = format!("{{\"a\":{}{}}}", "[".repeat(d), "]".repeat(d));
            check(&t);
            let t = format!("{{\"a\":{}", "{\"a\":".repeat(d));
            check(&t);
        }
    }
}
