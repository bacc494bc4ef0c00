//! End-to-end: an axum Router behind `JwtAuthLayer`, a real JWKS server, real HTTP on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};
use tower_bearer::JwtAuthLayer;
use tower_bearer::claims::CurrentUser;
use tower_bearer::jwks::{Algorithm, KeySet, RemoteOptions};
use tower_bearer::signing::SigningKey;
use tower_bearer::verify::{IssuerConfig, Verifier, VerifierBuilder};

const AUD: &str = "orders";

async fn me(user: CurrentUser) -> Json<Value> {
    Json(json!({
        "sub": user.subject(), "uid": user.user_id(), "tenant": user.tenant(),
        "scopes": user.scopes(), "roles": user.roles(),
    }))
}

async fn maybe(user: Option<CurrentUser>) -> String {
    match user {
        Some(u) => format!("user {}", u.subject().unwrap_or("?")),
        None => "anonymous".into(),
    }
}

fn fast() -> RemoteOptions {
    RemoteOptions {
        min_refresh_interval: Duration::from_millis(50),
        unknown_kid_cooldown: Duration::from_millis(800),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(200),
        first_fetch_wait: Duration::from_secs(2),
        ..RemoteOptions::default()
    }
}

fn builder(idp: &Idp) -> VerifierBuilder {
    Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(idp.issuer(), idp.jwks_url()))
        .audience(AUD)
        .remote_options(fast())
}

async fn app_url(verifier: Verifier) -> String {
    let app = Router::new()
        .route("/me", get(me))
        .layer(JwtAuthLayer::new(verifier).with_error_description(true));
    serve(app).await
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// header.payload.signature from raw parts.
fn raw(header: &str, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(sig)
    )
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_current_user() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let url = app_url(builder(&idp).build().unwrap()).await;
    let token = key.sign(&claims(&idp.issuer(), AUD)).unwrap();
    let r = get_bearer(&format!("{url}/me"), &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["uid"], "u-1");
    assert_eq!(body["tenant"], "t-1");
    assert_eq!(body["scopes"], json!(["orders.read"]));
}

#[tokio::test]
async fn every_algorithm_family_verifies() {
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let key = SigningKey::generate(alg).unwrap();
        let idp = Idp::start(jwks_of(&[&key])).await;
        let url = app_url(builder(&idp).build().unwrap()).await;
        let token = key.sign(&claims(&idp.issuer(), AUD)).unwrap();
        assert_eq!(
            get_bearer(&format!("{url}/me"), &token).await.status,
            200,
            "{alg}"
        );
    }
}

/// Each rejection: status, RFC 6750 error code and the precise description.
#[tokio::test]
async fn every_rejection_has_its_status_and_reason() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let other = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let iss = idp.issuer();
    let verifier = builder(&idp)
        .typ("at+jwt")
        .required_claims(["jti"])
        .reject_embedded_keys(true)
        .build()
        .unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    let kid = key.kid().to_owned();
    let hdr = |extra: Value| {
        let mut h = json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h.to_string()
    };
    let good = claims(&iss, AUD);
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.to_string()
    };
    let sign = |h: String, p: String| key.sign_raw(h.as_bytes(), p.as_bytes()).unwrap();
    let now = now();

    let valid = sign(hdr(json!({})), good.to_string());
    assert_eq!(get_bearer(&url, &valid).await.status, 200);

    let (h64, p64) = {
        let mut it = valid.split('.');
        (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
    };
    let forged_sig = {
        let mut parts = valid.rsplitn(2, '.');
        let _ = parts.next();
        let msg = parts.next().unwrap();
        format!("{msg}.{}", b64(&other.sign_bytes(msg.as_bytes()).unwrap()))
    };

    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        (
            "alg none",
            raw(&hdr(json!({"alg": "none"})), &good.to_string(), b""),
            401,
            "invalid_token",
            "unsigned token",
        ),
        (
            "alg None",
            raw(&hdr(json!({"alg": "None"})), &good.to_string(), b""),
            401,
            "invalid_token",
            "unsigned token",
        ),
        (
            "alg nOnE signed",
            sign(hdr(json!({"alg": "nOnE"})), good.to_string()),
            401,
            "invalid_token",
            "unsigned token",
        ),
        (
            "unknown alg",
            sign(hdr(json!({"alg": "XS256"})), good.to_string()),
            401,
            "invalid_token",
            "unsupported algorithm",
        ),
        (
            "alg lowercase",
            sign(hdr(json!({"alg": "es256"})), good.to_string()),
            401,
            "invalid_token",
            "unsupported algorithm",
        ),
        (
            "hmac not allowed",
            sign(hdr(json!({"alg": "HS256"})), good.to_string()),
            401,
            "invalid_token",
            "algorithm not allowed",
        ),
        (
            "ES512 unsupported",
            sign(hdr(json!({"alg": "ES512"})), good.to_string()),
            401,
            "invalid_token",
            "unsupported algorithm",
        ),
        (
            "alg of another family",
            sign(hdr(json!({"alg": "RS256"})), good.to_string()),
            401,
            "invalid_token",
            "key not usable with algorithm",
        ),
        (
            "crit unknown",
            sign(hdr(json!({"crit": ["exp"], "exp": 1})), good.to_string()),
            401,
            "invalid_token",
            "unsupported critical header",
        ),
        (
            "crit malformed",
            sign(hdr(json!({"crit": "exp"})), good.to_string()),
            401,
            "invalid_token",
            "malformed crit header",
        ),
        (
            "crit empty",
            sign(hdr(json!({"crit": []})), good.to_string()),
            401,
            "invalid_token",
            "malformed crit header",
        ),
        (
            "b64 false",
            sign(
                hdr(json!({"b64": false, "crit": ["b64"]})),
                good.to_string(),
            ),
            401,
            "invalid_token",
            "unencoded payload not supported",
        ),
        (
            "embedded jwk",
            sign(hdr(json!({"jwk": other.public_jwk()})), good.to_string()),
            401,
            "invalid_token",
            "embedded key reference not allowed",
        ),
        (
            "jku",
            sign(
                hdr(json!({"jku": "http://127.0.0.1:1/evil"})),
                good.to_string(),
            ),
            401,
            "invalid_token",
            "embedded key reference not allowed",
        ),
        (
            "wrong typ",
            sign(hdr(json!({"typ": "JWT"})), good.to_string()),
            401,
            "invalid_token",
            "wrong token type",
        ),
        (
            "kid not a string",
            sign(hdr(json!({"kid": 7})), good.to_string()),
            401,
            "invalid_token",
            "invalid key id",
        ),
        (
            "unknown kid",
            sign(hdr(json!({"kid": "nope"})), good.to_string()),
            401,
            "invalid_token",
            "unknown signing key",
        ),
        (
            "forged signature",
            forged_sig,
            401,
            "invalid_token",
            "invalid signature",
        ),
        (
            "empty signature",
            format!("{h64}.{p64}."),
            401,
            "invalid_token",
            "invalid signature",
        ),
        (
            "short signature",
            format!("{h64}.{p64}.{}", b64(&[1u8; 63])),
            401,
            "invalid_token",
            "invalid signature",
        ),
        (
            "r=s=0",
            format!("{h64}.{p64}.{}", b64(&[0u8; 64])),
            401,
            "invalid_token",
            "invalid signature",
        ),
        (
            "r,s = n",
            format!("{h64}.{p64}.{}", b64(&[0xFFu8; 64])),
            401,
            "invalid_token",
            "invalid signature",
        ),
        (
            "jwe",
            "a.b.c.d.e".into(),
            401,
            "invalid_token",
            "encrypted tokens not supported",
        ),
        (
            "two parts",
            "abc.def".into(),
            401,
            "invalid_token",
            "malformed token",
        ),
        (
            "padding",
            format!("{h64}.{p64}.AAAA=="),
            401,
            "invalid_token",
            "invalid base64url",
        ),
        (
            "std alphabet",
            format!("{h64}.{p64}+/.AAAA"),
            401,
            "invalid_token",
            "invalid base64url",
        ),
        (
            "header not json",
            format!("{}.{p64}.AAAA", b64(b"nope")),
            401,
            "invalid_token",
            "invalid json",
        ),
        (
            "duplicate header member",
            sign(
                format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"at+jwt","alg":"ES256"}}"#),
                good.to_string(),
            ),
            401,
            "invalid_token",
            "duplicate json member",
        ),
        (
            "duplicate nested claim",
            sign(
                hdr(json!({})),
                format!(
                    r#"{{"iss":"{iss}","aud":"{AUD}","exp":{},"jti":"x","x":{{"a":1,"a":2}}}}"#,
                    now + 60
                ),
            ),
            401,
            "invalid_token",
            "duplicate json member",
        ),
        (
            "exp string",
            sign(hdr(json!({})), with(json!({"exp": "9999999999"}))),
            401,
            "invalid_token",
            "invalid time claim",
        ),
        (
            "exp absurd",
            sign(hdr(json!({})), with(json!({"exp": 1e20}))),
            401,
            "invalid_token",
            "invalid time claim",
        ),
        (
            "exp negative",
            sign(hdr(json!({})), with(json!({"exp": -5}))),
            401,
            "invalid_token",
            "invalid time claim",
        ),
        (
            "exp missing",
            sign(hdr(json!({})), with(json!({"exp": null}))),
            401,
            "invalid_token",
            "missing expiry",
        ),
        (
            "expired",
            sign(hdr(json!({})), with(json!({"exp": now - 120}))),
            401,
            "invalid_token",
            "expired",
        ),
        (
            "nbf future",
            sign(hdr(json!({})), with(json!({"nbf": now + 600}))),
            401,
            "invalid_token",
            "not yet valid",
        ),
        (
            "iat future",
            sign(hdr(json!({})), with(json!({"iat": now + 600}))),
            401,
            "invalid_token",
            "issued in the future",
        ),
        (
            "wrong issuer",
            sign(hdr(json!({})), with(json!({"iss": "https://evil.example"}))),
            401,
            "invalid_token",
            "untrusted issuer",
        ),
        (
            "issuer array",
            sign(hdr(json!({})), with(json!({"iss": [iss]}))),
            401,
            "invalid_token",
            "invalid issuer",
        ),
        (
            "issuer missing",
            sign(hdr(json!({})), with(json!({"iss": null}))),
            401,
            "invalid_token",
            "missing issuer",
        ),
        (
            "wrong audience",
            sign(hdr(json!({})), with(json!({"aud": "payments"}))),
            401,
            "invalid_token",
            "audience not accepted",
        ),
        (
            "audience missing",
            sign(hdr(json!({})), with(json!({"aud": null}))),
            401,
            "invalid_token",
            "missing audience",
        ),
        (
            "audience number",
            sign(hdr(json!({})), with(json!({"aud": 5}))),
            401,
            "invalid_token",
            "invalid audience",
        ),
        (
            "required claim",
            sign(hdr(json!({})), with(json!({"jti": null}))),
            401,
            "invalid_token",
            "missing required claim",
        ),
        (
            "roles wrong type",
            sign(hdr(json!({})), with(json!({"roles": {"a": 1}}))),
            401,
            "invalid_token",
            "invalid claim",
        ),
        (
            "too large",
            format!("{h64}.{}.AAAA", "A".repeat(9000)),
            401,
            "invalid_token",
            "token too large",
        ),
    ];
    for (name, token, status, code, desc) in &cases {
        let r = get_bearer(&url, token).await;
        assert_eq!(r.status, *status, "{name}: {}", r.body);
        let challenge = r.header("www-authenticate").unwrap_or_default().to_owned();
        assert!(
            challenge.contains(&format!("error=\"{code}\"")),
            "{name}: {challenge}"
        );
        assert!(
            challenge.contains(&format!("error_description=\"{desc}\"")),
            "{name}: {challenge}"
        );
    }

    // JSON serialization cannot travel in a header: check it at the verifier.
    let v = builder(&idp).build().unwrap();
    let json_jws = format!(r#"{{"payload":"{p64}","protected":"{h64}","signature":"AAAA"}}"#);
    assert_eq!(
        v.verify(&json_jws).await.unwrap_err().to_string(),
        "invalid token: json serialization not supported"
    );
    // Audience given as an array containing ours is accepted.
    let ok = sign(hdr(json!({})), with(json!({"aud": ["x", AUD]})));
    assert_eq!(get_bearer(&url, &ok).await.status, 200);
}

#[tokio::test]
async fn request_level_errors() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let url = format!("{}/me", app_url(builder(&idp).build().unwrap()).await);
    let token = key.sign(&claims(&idp.issuer(), AUD)).unwrap();

    let r = http_get(&url, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));

    let r = http_get(&url, &[("authorization", "Basic dXNlcjpwYXNz")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));

    for bad in ["Bearer", "Bearer ", "Bearer a b"] {
        let r = http_get(&url, &[("authorization", bad)]).await;
        assert_eq!(r.status, 400, "{bad:?}");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("invalid_request")
        );
    }
    let h = format!("Bearer {token}");
    let r = http_get(&url, &[("authorization", &h), ("authorization", &h)]).await;
    assert_eq!(r.status, 400);
    let r = http_get(
        &format!("{url}?access_token={token}"),
        &[("authorization", &h)],
    )
    .await;
    assert_eq!(r.status, 400);
    // Query tokens are off by default.
    let r = http_get(&format!("{url}?access_token={token}"), &[]).await;
    assert_eq!(r.status, 401);
    // Scheme is case-insensitive.
    let h = format!("bEARER {token}");
    assert_eq!(http_get(&url, &[("authorization", &h)]).await.status, 200);
}

#[tokio::test]
async fn optional_mode_lets_anonymous_through_but_not_bad_tokens() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let verifier = builder(&idp).build().unwrap();
    let app = Router::new()
        .route("/maybe", get(maybe))
        .route("/me", get(me))
        .layer(JwtAuthLayer::new(verifier).optional(true));
    let url = serve(app).await;
    assert_eq!(
        http_get(&format!("{url}/maybe"), &[]).await.body,
        "anonymous"
    );
    assert_eq!(http_get(&format!("{url}/me"), &[]).await.status, 401);
    let token = key.sign(&claims(&idp.issuer(), AUD)).unwrap();
    assert_eq!(
        get_bearer(&format!("{url}/maybe"), &token).await.body,
        "user alice"
    );
    assert_eq!(
        get_bearer(&format!("{url}/maybe"), "a.b.c").await.status,
        401
    );
}

#[tokio::test]
async fn extractor_without_layer_is_a_500_naming_the_layer() {
    let app = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe));
    let url = serve(app).await;
    for path in ["/me", "/maybe"] {
        let r = http_get(&format!("{url}{path}"), &[]).await;
        assert_eq!(r.status, 500);
        assert!(r.body.contains("JwtAuthLayer"), "{}", r.body);
    }
}

#[tokio::test]
async fn key_rotation_is_picked_up_without_restart() {
    let a = SigningKey::generate(Algorithm::RS256).unwrap();
    let b = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = Idp::start(jwks_of(&[&a])).await;
    // Scheduled refresh every 50 ms (max-age=0, clamped to the configured minimum).
    *idp.state.cache_control.lock().unwrap() = Some("max-age=0".into());
    let url = format!("{}/me", app_url(builder(&idp).build().unwrap()).await);
    let ta = a.sign(&claims(&idp.issuer(), AUD)).unwrap();
    let tb = b.sign(&claims(&idp.issuer(), AUD)).unwrap();
    assert_eq!(get_bearer(&url, &ta).await.status, 200);
    // The identity provider publishes b next to a: the unknown kid triggers a refetch.
    idp.set_keys(&[&a, &b]);
    assert_eq!(get_bearer(&url, &tb).await.status, 200);
    assert_eq!(
        get_bearer(&url, &ta).await.status,
        200,
        "old key still published"
    );
    // a is withdrawn: after the next refresh, a's (cached) token is refused.
    idp.set_keys(&[&b]);
    tokio::time::sleep(Duration::from_millis(300)).await; // a few scheduled refreshes
    let r = get_bearer(&url, &ta).await;
    assert_eq!(r.status, 401, "withdrawn key must not verify");
    assert_eq!(get_bearer(&url, &tb).await.status, 200);
}

#[tokio::test]
async fn jwks_outage_keeps_the_last_good_keys_and_recovers() {
    let a = SigningKey::generate(Algorithm::ES256).unwrap();
    let b = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = Idp::start(jwks_of(&[&a])).await;
    *idp.state.cache_control.lock().unwrap() = Some("max-age=0".into());
    let verifier = builder(&idp).token_cache(0).build().unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    let ta = a.sign(&claims(&idp.issuer(), AUD)).unwrap();
    assert_eq!(get_bearer(&url, &ta).await.status, 200);
    for mode in [Mode::Status(500), Mode::Html, Mode::EmptySet] {
        idp.set(mode.clone());
        let before = idp.hits();
        // Refreshes every 50 ms while failing (backoff 100–200 ms): several failed fetches.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(idp.hits() > before, "{mode:?}: refresh kept trying");
        assert_eq!(
            get_bearer(&url, &ta).await.status,
            200,
            "{mode:?}: keys kept"
        );
    }
    // Recovery: a new key is picked up.
    idp.set_keys(&[&a, &b]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let tb = b.sign(&claims(&idp.issuer(), AUD)).unwrap();
    assert_eq!(get_bearer(&url, &tb).await.status, 200);
}

#[tokio::test]
async fn identity_provider_down_at_start_gives_503_then_200() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let addr = reserve_addr();
    let issuer = format!("http://{addr}");
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(
            &issuer,
            format!("http://{addr}/jwks"),
        ))
        .audience(AUD)
        .remote_options(fast())
        .build()
        .unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    let token = key.sign(&claims(&issuer, AUD)).unwrap();
    let r = get_bearer(&url, &token).await;
    assert_eq!(r.status, 503, "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(r.header("www-authenticate").is_none());

    let _idp = Idp::start_on(addr, jwks_of(&[&key])).await;
    let mut status = 0;
    for _ in 0..50 {
        status = get_bearer(&url, &token).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 200,
        "keys arrived once the identity provider came up"
    );
}

#[tokio::test]
async fn unknown_kid_storm_causes_at_most_one_fetch_per_cooldown() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let opts = RemoteOptions {
        unknown_kid_cooldown: Duration::from_secs(30),
        ..fast()
    };
    let verifier = builder(&idp).remote_options(opts).build().unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    let ok = key.sign(&claims(&idp.issuer(), AUD)).unwrap();
    assert_eq!(get_bearer(&url, &ok).await.status, 200);
    let before = idp.hits();
    let iss = idp.issuer();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let header = json!({"alg": "EdDSA", "kid": format!("random-{i}-{}", now())});
        let token = key
            .sign_raw(
                header.to_string().as_bytes(),
                claims(&iss, AUD).to_string().as_bytes(),
            )
            .unwrap();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            get_bearer(&url, &token).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let fetches = idp.hits() - before;
    assert!(fetches <= 1, "{fetches} JWKS fetches for 1000 unknown kids");
    assert_eq!(get_bearer(&url, &ok).await.status, 200);
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_checks_the_issuer() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::discovery(idp.issuer()))
        .audience(AUD)
        .remote_options(fast())
        .build()
        .unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    let token = key.sign(&claims(&idp.issuer(), AUD)).unwrap();
    assert_eq!(get_bearer(&url, &token).await.status, 200);

    // Metadata naming another issuer is refused: no keys, 503.
    let idp2 = Idp::start(jwks_of(&[&key])).await;
    *idp2.state.issuer.lock().unwrap() = "https://somebody-else.example".into();
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::discovery(format!("http://{}", idp2.addr)))
        .audience(AUD)
        .remote_options(fast())
        .build()
        .unwrap();
    let token = key
        .sign(&claims(&format!("http://{}", idp2.addr), AUD))
        .unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(tower_bearer::AuthError::KeysUnavailable { .. })
    ));
    assert_eq!(
        idp2.hits(),
        0,
        "the JWKS of a mismatched issuer is never fetched"
    );
}

#[tokio::test]
async fn several_issuers_each_with_their_keys() {
    let ka = SigningKey::generate(Algorithm::ES256).unwrap();
    let kb = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let a = Idp::start(jwks_of(&[&ka])).await;
    let b = Idp::start(jwks_of(&[&kb])).await;
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(a.issuer(), a.jwks_url()))
        .issuer(IssuerConfig::jwks_uri(b.issuer(), b.jwks_url()).prefix("b"))
        .audience(AUD)
        .remote_options(fast())
        .build()
        .unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    assert_eq!(
        get_bearer(&url, &ka.sign(&claims(&a.issuer(), AUD)).unwrap())
            .await
            .status,
        200
    );
    assert_eq!(
        get_bearer(&url, &kb.sign(&claims(&b.issuer(), AUD)).unwrap())
            .await
            .status,
        200
    );
    // A's key claiming B's issuer: B's keys are used, the signature fails.
    let r = get_bearer(&url, &ka.sign(&claims(&b.issuer(), AUD)).unwrap()).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn hmac_needs_a_configured_secret_and_never_a_public_key() {
    let rsa = SigningKey::generate(Algorithm::RS256).unwrap();
    let secret = [7u8; 32];
    let keys = KeySet::from_jwks(jwks_of(&[&rsa]).to_string().as_bytes(), &[Algorithm::RS256])
        .unwrap()
        .with_hmac_secret(&secret, Algorithm::HS256, Some("shared"))
        .unwrap();
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::static_keys("https://auth.example", keys))
        .audience(AUD)
        .algorithms([Algorithm::RS256, Algorithm::HS256])
        .build()
        .unwrap();
    let hs = |kid: &str, secret: &[u8]| {
        let header = json!({"alg": "HS256", "kid": kid}).to_string();
        let msg = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(claims("https://auth.example", AUD).to_string().as_bytes())
        );
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
            msg.as_bytes(),
        );
        format!("{msg}.{}", b64(tag.as_ref()))
    };
    assert!(verifier.verify(&hs("shared", &secret)).await.is_ok());
    // HMAC keyed with the RSA public key (the classic confusion attack).
    let n = rsa.public_jwk()["n"].as_str().unwrap().to_owned();
    let err = verifier
        .verify(&hs(rsa.kid(), n.as_bytes()))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "key_algorithm_mismatch");
    assert!(verifier.verify(&hs("shared", &[8u8; 32])).await.is_err());
}

#[tokio::test]
async fn cache_hits_recheck_expiry_on_the_injected_clock() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let keys =
        KeySet::from_jwks(jwks_of(&[&key]).to_string().as_bytes(), &[Algorithm::ES256]).unwrap();
    let clock = tower_bearer::clock::ManualClock::new(now());
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::static_keys("https://auth.example", keys))
        .audience(AUD)
        .leeway(Duration::from_secs(5))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let mut c = claims("https://auth.example", AUD);
    c["exp"] = json!(now() + 60);
    let token = key.sign(&c).unwrap();
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok(), "cache hit");
    clock.advance(Duration::from_secs(70));
    assert_eq!(
        verifier.verify(&token).await.unwrap_err().reason(),
        "expired"
    );
}

#[test]
fn fetch_task_restarts_when_its_runtime_ended() {
    let idp_rt = tokio::runtime::Runtime::new().unwrap();
    let a = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let b = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = idp_rt.block_on(Idp::start(jwks_of(&[&a])));
    let ta = a.sign(&claims(&idp.issuer(), AUD)).unwrap();
    let tb = b.sign(&claims(&idp.issuer(), AUD)).unwrap();

    // Built and first used on a runtime that then shuts down (e.g. a test's runtime).
    let first = tokio::runtime::Runtime::new().unwrap();
    let verifier = first.block_on(async {
        let v = builder(&idp).build().unwrap();
        assert!(v.verify(&ta).await.is_ok());
        v
    });
    drop(first);

    // On a new runtime, a rotation still gets fetched: the task was restarted.
    idp.set_keys(&[&a, &b]);
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        tokio::time::sleep(Duration::from_millis(900)).await; // past the refetch cooldown
        assert!(verifier.verify(&tb).await.is_ok());
    });
    drop(idp);
}

#[tokio::test]
async fn rsa_key_without_alg_in_a_fetched_jwks_serves_one_algorithm() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let mut jwks = jwks_of(&[&key]);
    jwks["keys"][0].as_object_mut().unwrap().remove("alg");
    let idp = Idp::start(jwks).await;
    let token = key.sign(&claims(&idp.issuer(), AUD)).unwrap();
    let verifier = |any: Option<bool>| {
        let mut b = builder(&idp).algorithms([Algorithm::PS256, Algorithm::RS256]);
        if let Some(any) = any {
            b = b.allow_any_rsa_alg_for_keys_without_alg(any);
        }
        b.build().unwrap()
    };
    // The key is bound to PS256 (first RSA algorithm of the allow-list): an RS256 token fails.
    let url = format!("{}/me", app_url(verifier(None)).await);
    assert_eq!(get_bearer(&url, &token).await.status, 401);
    let strict = verifier(Some(false));
    assert_eq!(
        strict.verify(&token).await.unwrap_err(),
        tower_bearer::AuthError::InvalidToken(
            tower_bearer::error::TokenError::KeyAlgorithmMismatch
        )
    );
    // Opted in: the key serves every allowed RSA algorithm.
    let url = format!("{}/me", app_url(verifier(Some(true))).await);
    assert_eq!(get_bearer(&url, &token).await.status, 200);
}

#[tokio::test]
async fn id_token_with_matching_audience_is_refused() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let url = format!("{}/me", app_url(builder(&idp).build().unwrap()).await);
    let mut id_token = claims(&idp.issuer(), AUD);
    id_token["nonce"] = json!("n-0S6_WzA2Mj");
    id_token["at_hash"] = json!("77QmUPtjPfzWtF2AnpK9RQ");
    let r = get_bearer(&url, &key.sign(&id_token).unwrap()).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        get_bearer(&url, &key.sign(&claims(&idp.issuer(), AUD)).unwrap())
            .await
            .status,
        200
    );
}

/// Waits until the identity provider has served `n` more JWKS fetches than `from` (fetches are
/// one at a time: all but the last of them completed).
async fn wait_fetches(idp: &Idp, from: usize, n: usize) {
    for _ in 0..200 {
        if idp.hits() >= from + n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no JWKS refresh");
}

#[tokio::test]
async fn a_refresh_that_removes_the_key_refuses_its_cached_token_at_once() {
    let a = SigningKey::generate(Algorithm::ES256).unwrap();
    let b = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = Idp::start(jwks_of(&[&a, &b])).await;
    *idp.state.cache_control.lock().unwrap() = Some("max-age=0".into());
    // Another issuer with fixed keys, in the same process: its cached tokens are unaffected.
    let s = SigningKey::generate(Algorithm::ES256).unwrap();
    let fixed =
        KeySet::from_jwks(jwks_of(&[&s]).to_string().as_bytes(), &[Algorithm::ES256]).unwrap();
    let verifier = builder(&idp)
        .issuer(IssuerConfig::static_keys("https://fixed.example", fixed).prefix("fixed"))
        .build()
        .unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    let ta = a.sign(&claims(&idp.issuer(), AUD)).unwrap();
    let tb = b.sign(&claims(&idp.issuer(), AUD)).unwrap();
    let ts = s.sign(&claims("https://fixed.example", AUD)).unwrap();
    for t in [&ta, &tb, &ts] {
        assert_eq!(get_bearer(&url, t).await.status, 200, "verified");
        assert_eq!(get_bearer(&url, t).await.status, 200, "cached");
    }
    // A refresh with the same keys replaces the set: the cached tokens still pass.
    let before = idp.hits();
    wait_fetches(&idp, before, 3).await;
    for t in [&ta, &tb, &ts] {
        assert_eq!(get_bearer(&url, t).await.status, 200, "key still published");
    }
    // a is withdrawn: as soon as a refresh has brought the new set, a's cached token is refused.
    idp.set_keys(&[&b]);
    let before = idp.hits();
    wait_fetches(&idp, before, 3).await;
    let r = get_bearer(&url, &ta).await;
    assert_eq!(r.status, 401, "withdrawn key must not verify");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(get_bearer(&url, &tb).await.status, 200);
    assert_eq!(get_bearer(&url, &ts).await.status, 200);
    // And again, from the cache: still refused, the others still pass.
    assert_eq!(get_bearer(&url, &ta).await.status, 401);
    assert_eq!(get_bearer(&url, &tb).await.status, 200);
}

#[tokio::test]
async fn cached_tokens_stop_passing_when_the_keys_grow_too_stale() {
    let a = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&a])).await;
    *idp.state.cache_control.lock().unwrap() = Some("max-age=0".into());
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(idp.issuer(), idp.jwks_url()))
        .audience(AUD)
        .remote_options(RemoteOptions {
            max_staleness: Duration::from_millis(300),
            ..fast()
        })
        .build()
        .unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    let ta = a.sign(&claims(&idp.issuer(), AUD)).unwrap();
    assert_eq!(get_bearer(&url, &ta).await.status, 200);
    assert_eq!(get_bearer(&url, &ta).await.status, 200, "cached");
    // Every fetch fails from now on: no key set is replaced, but the last good one ages out.
    idp.set(Mode::Status(500));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(get_bearer(&url, &ta).await.status, 503, "stale keys");
}

#[tokio::test]
async fn repeated_authorization_is_refused_even_when_the_token_is_cached() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let keys =
        KeySet::from_jwks(jwks_of(&[&key]).to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::static_keys("https://auth.example", keys))
        .audience(AUD)
        .build()
        .unwrap();
    let url = format!("{}/me", app_url(verifier).await);
    let token = key.sign(&claims("https://auth.example", AUD)).unwrap();
    let h = format!("Bearer {token}");
    assert_eq!(get_bearer(&url, &token).await.status, 200);
    assert_eq!(get_bearer(&url, &token).await.status, 200, "cached");
    let r = http_get(&url, &[("authorization", &h), ("authorization", &h)]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_request")
    );
    let r = http_get(
        &url,
        &[
            ("authorization", &h),
            ("authorization", "Basic dXNlcjpwYXNz"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    // Another header repeated: the cached token still passes; a query token next to it does not.
    let other = [("x-trace", "1"), ("x-trace", "2"), ("authorization", &h)];
    assert_eq!(http_get(&url, &other).await.status, 200);
    let r = http_get(&format!("{url}?access_token={token}"), &other).await;
    assert_eq!(r.status, 400);
    let r = http_get(
        &format!("{url}?access_token={token}"),
        &[("authorization", &h)],
    )
    .await;
    assert_eq!(r.status, 400);
}
