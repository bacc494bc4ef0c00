//! Strict JSON for JOSE headers and claims: one parse, duplicate member names refused at any
//! depth (RFC 7515 §5.2 and RFC 7519 §7.2 let a parser reject them; a parser that keeps the last
//! one and another that keeps the first would disagree about what a token says).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

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
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::InvalidBase64)
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
    fn strict_base64url() {
        assert!(b64url("eyJ9").is_ok());
        assert_eq!(b64url("eyJ9=="), Err(TokenError::InvalidBase64));
        assert_eq!(b64url("ey+/"), Err(TokenError::InvalidBase64));
        // Non-zero trailing bits are not canonical.
        assert_eq!(b64url("QR"), Err(TokenError::InvalidBase64));
        assert!(b64url("QQ").is_ok());
    }
}
