//! The issuer's stored grant records: what the Redis `GrantStore` reads back (family hashes,
//! the rotate / lookup / take-code script replies, authorization-code records) and presented
//! refresh tokens, through `tower_bearer::__fuzz::grant_reply` (the raw items are converted by
//! the `redis` crate exactly as replies from the connection are). The memory store keeps
//! typed records and decodes nothing.
//!
//! Input: `sel` then `\n`-separated items (`\xfe` alone: a nil item, `\xfd` then digits: an
//! integer, anything else a bulk string). `sel % 5`: 0 a family hash (`HGETALL`), 1 a rotate
//! reply, 2 a lookup reply (bit 7: a nil reply), 3 a take-code reply, 4 the whole rest is a
//! presented refresh token.
//!
//! Checked beyond "no panic": a decoded family is exactly what a model of the hash layout
//! reads (last field wins, every field required, numbers `u64`, state `active`/`revoked`,
//! scopes split on spaces) and survives a write → read round trip; replies decode only with
//! their known first item, and `rotated`/`reused` only with the family; a taken code's record
//! survives a round trip; a refresh token parses exactly when it is
//! `<16..=64 base64url>.<43 base64url>`, and its stored hash names its family.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use tower_bearer::__fuzz::{
    grant_code_json, grant_record_fields, grant_reply, GrantReply, GrantReplyKind,
};
use tower_bearer::issuer::store::{
    hash_secret, CodeOutcome, FamilyRecord, RefreshToken, RotateOutcome, TokenHash,
    TokenState,
};

const FAM: &str = "0123456789abcdefABCDEF";

fn check_family(rec: &FamilyRecord, items: Option<&[&str]>) {
    assert_eq!(rec.family_id, FAM);
    assert!(rec.scopes.iter().all(|s| !s.is_empty() && !s.contains(' ')));
    if let Some(items) = items {
        let m: HashMap<&str, &str> = items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
        assert_eq!(rec.client_id, m["client"]);
        assert_eq!(rec.user_id, m["user"]);
        let scopes: Vec<&str> = m["scopes"].split(' ').filter(|s| !s.is_empty()).collect();
        assert_eq!(rec.scopes, scopes);
        assert_eq!(Some(rec.generation), m["gen"].parse().ok());
        assert_eq!(Some(rec.auth_time), m["auth_time"].parse().ok());
        assert_eq!(Some(rec.idle_expires), m["idle_exp"].parse().ok());
        assert_eq!(Some(rec.absolute_expires), m["abs_exp"].parse().ok());
        assert_eq!(rec.state.as_str(), m["state"]);
    }
    // Write → read: the same record.
    let fields = grant_record_fields(rec, "head-digest");
    let raw: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
    match grant_reply(GrantReplyKind::Family, FAM, false, &raw) {
        Ok(GrantReply::Family(back)) => assert_eq!(&back, rec, "round trip"),
        other => panic!("a written family does not read back: {other:?}"),
    }
}

fn utf8_items<'a>(items: &[&'a [u8]]) -> Option<Vec<&'a str>> {
    items.iter().map(|b| std::str::from_utf8(b).ok()).collect()
}

fn model_refresh(text: &str) -> bool {
    let b64u = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    text.split_once('.').is_some_and(|(fam, secret)| {
        (16..=64).contains(&fam.len()) && b64u(fam) && secret.len() == 43 && b64u(secret)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel % 5 == 4 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let parsed = RefreshToken::parse(text);
        assert_eq!(parsed.is_some(), model_refresh(text), "refresh token shape of {text:?}");
        if let Some(t) = parsed {
            assert_eq!(t.as_str(), text);
            assert_eq!(Some(t.family_id()), text.split('.').next());
            let h = t.hash();
            assert_eq!(h.family_id(), t.family_id());
            assert_eq!(h.digest(), hash_secret(text));
            assert_eq!(TokenHash::new(t.family_id(), h.digest()), Some(h));
            // `Debug` shows the family id, never the secret part (unless the id contains it).
            let (fam, secret) = text.split_once('.').unwrap();
            assert!(!format!("{t:?}").contains(secret) || fam.contains(secret));
        }
        return;
    }
    let items: Vec<&[u8]> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|b| *b == b'\n').collect()
    };
    // The items as text when every one is a UTF-8 bulk string (`\xfe`, `\xfd` are not UTF-8).
    let strings = utf8_items(&items);
    match sel % 5 {
        0 => {
            let got = grant_reply(GrantReplyKind::Family, FAM, false, &items);
            if let Some(s) = &strings {
                let m: HashMap<&str, &str> = s.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
                let num = |k: &str| m.get(k).is_some_and(|v| v.parse::<u64>().is_ok());
                let want_ok = ["client", "user", "scopes"].iter().all(|k| m.contains_key(k))
                    && ["auth_time", "created", "last_used", "idle_exp", "abs_exp", "idle_ttl", "gen"]
                        .iter()
                        .all(|k| num(k))
                    && matches!(m.get("state"), Some(&"active" | &"revoked"));
                assert_eq!(got.is_ok(), want_ok, "{got:?}");
            }
            if let Ok(GrantReply::Family(rec)) = &got {
                check_family(rec, strings.as_deref());
            }
        }
        1 => {
            let got = grant_reply(GrantReplyKind::Rotate, FAM, false, &items);
            if let Ok(GrantReply::Rotate(outcome, newly)) = &got {
                let first = items.first().copied();
                let want: &[u8] = match outcome {
                    RotateOutcome::Rotated(_) => b"rotated",
                    RotateOutcome::Reused(_) => b"reused",
                    RotateOutcome::Revoked => b"revoked",
                    RotateOutcome::Expired => b"expired",
                    RotateOutcome::WrongClient => b"wrong_client",
                    RotateOutcome::NotFound => b"not_found",
                    _ => panic!("unknown outcome"),
                };
                assert_eq!(first, Some(want));
                assert!(!newly || want == b"reused");
                if let RotateOutcome::Rotated(rec) | RotateOutcome::Reused(rec) = outcome {
                    assert!(items.len() >= 3);
                    check_family(rec, strings.as_deref().map(|s| &s[2..]));
                }
            } else if let Ok(other) = got {
                panic!("a rotate reply decoded as {other:?}");
            }
        }
        2 => {
            let nil = sel & 0x80 != 0;
            let got = grant_reply(GrantReplyKind::Lookup, FAM, nil, &items);
            match got {
                Ok(GrantReply::Lookup(None)) => {}
                Ok(GrantReply::Lookup(Some((rec, state)))) => {
                    assert!(!nil);
                    let want: &[u8] = match state {
                        TokenState::Current => b"current",
                        TokenState::Used => b"used",
                        _ => panic!("unknown state"),
                    };
                    assert_eq!(items.first().copied(), Some(want));
                    check_family(&rec, strings.as_deref().map(|s| &s[1..]));
                }
                Ok(other) => panic!("a lookup reply decoded as {other:?}"),
                Err(_) => {}
            }
        }
        _ => {
            let got = grant_reply(GrantReplyKind::TakeCode, FAM, false, &items);
            match got {
                Ok(GrantReply::TakeCode(CodeOutcome::Taken(rec))) => {
                    assert_eq!(items.first().copied(), Some(&b"taken"[..]));
                    let json = grant_code_json(&rec).expect("serializable");
                    let raw: [&[u8]; 2] = [b"taken", json.as_bytes()];
                    match grant_reply(GrantReplyKind::TakeCode, FAM, false, &raw) {
                        Ok(GrantReply::TakeCode(CodeOutcome::Taken(back))) => {
                            assert_eq!(back, rec, "round trip")
                        }
                        other => panic!("a written code does not read back: {other:?}"),
                    }
                }
                Ok(GrantReply::TakeCode(CodeOutcome::Reused { family_id })) => {
                    assert_eq!(items.first().copied(), Some(&b"reused"[..]));
                    assert!(family_id.is_none_or(|f| !f.is_empty()));
                }
                Ok(GrantReply::TakeCode(CodeOutcome::NotFound)) => {
                    assert_eq!(items.first().copied(), Some(&b"not_found"[..]));
                }
                Ok(other) => panic!("a take-code reply decoded as {other:?}"),
                Err(_) => {}
            }
        }
    }
});
