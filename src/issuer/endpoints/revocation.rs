//! `POST /oauth2/revoke` (RFC 7009) and `POST /oauth2/introspect` (RFC 7662).
//!
//! Both take `POST` only, a form body, and authenticate the client exactly as the token
//! endpoint (same methods, same failure limits, same 401 `invalid_client`). Every answer has
//! `Cache-Control: no-store`.
//!
//! Revocation: `token` is required (`invalid_request` otherwise); `token_type_hint` only
//! changes which kind is tried first. 200 with an empty body for unknown, expired or garbage
//! tokens and for another client's token (which is left alone, RFC 7009 §2.1). A refresh
//! token revokes its whole family; an access token (a JWT this server signed, checked with the
//! current and retired keys) goes on the `jti` revocation list until its `exp`.
//!
//! Introspection: only clients registered with `introspection: true`; another authenticated
//! client gets **403** `{"error":"unauthorized_client"}` (it did authenticate, so RFC 7662 §2.3's
//! 401 for bad credentials does not fit; 403 says "known, not allowed"). An inactive token is
//! exactly `{"active":false}`. An access token is active when its signature verifies with one
//! of our keys (active, published or retired), `iss` is ours, it has not expired, its `jti` is
//! not revoked and its family (`sid`), when it has one, exists and is not revoked. A refresh
//! token is active while it is its family's current token and the family is usable.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{authenticate, json_response, no_store, read_form};
use crate::issuer::Shared;
use crate::issuer::audit::audit;
use crate::issuer::clients::RegisteredClient;
use crate::issuer::grants::{ErrorCode, Params, TokenError};
use crate::issuer::store::{FamilyState, RefreshToken, TokenState};
use crate::jwks::{Algorithm, KeySet};

fn post_only() -> Response {
    let mut res = TokenError::new(ErrorCode::InvalidRequest, "this endpoint takes POST only")
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .into_response();
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}

/// Reads the form, authenticates the client, returns it with the `token` parameter.
async fn read(
    shared: &Shared,
    req: Request,
) -> Result<(Arc<RegisteredClient>, Zeroizing<String>, Option<String>), TokenError> {
    let form = read_form(
        shared,
        req,
        &["token", "client_secret", "client_id"],
        "tokens and credentials must not be sent in the URL query",
    )
    .await?;
    let params = Params::parse(&form.body);
    params.check_no_repeats(&[])?;
    let (client, _) = authenticate(
        shared,
        &form.headers,
        &params,
        form.address.as_ref().map(super::AddressKey::as_str),
    )
    .await?;
    let token = params
        .single("token")?
        .ok_or_else(|| TokenError::new(ErrorCode::InvalidRequest, "missing parameter `token`"))?;
    let hint = params.single("token_type_hint")?.map(str::to_owned);
    Ok((client, Zeroizing::new(token.to_owned()), hint))
}

fn store_failed(e: &crate::store::StoreError) -> TokenError {
    tracing::error!(target: "tower_bearer::issuer", error = %e, "grant store failed");
    TokenError::new(
        ErrorCode::TemporarilyUnavailable,
        "the grant store is unavailable",
    )
}

/// The claims of a JWT this server signed (signature with one of our keys, `iss` ours); no
/// time checks.
pub(crate) fn our_jwt(shared: &Shared, token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    let kid = header.get("kid")?.as_str()?;
    let alg: Algorithm = header.get("alg")?.as_str()?.parse().ok()?;
    let key = shared.keys.verification_key(kid)?;
    if key.algorithm() != alg {
        return None;
    }
    let set = KeySet::from_jwks(key.jwks().to_string().as_bytes(), &[alg]).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    let message = &token[..h.len() + 1 + p.len()];
    let ok = set
        .candidates(Some(kid), alg)
        .ok()?
        .iter()
        .any(|k| k.verify(alg, message.as_bytes(), &sig));
    if !ok {
        return None;
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
    (claims.get("iss").and_then(Value::as_str) == Some(shared.issuer.as_str())).then_some(claims)
}

fn access_first(hint: Option<&str>) -> bool {
    hint == Some("access_token")
}

pub(crate) async fn revoke(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if req.method() != Method::POST {
        return post_only();
    }
    match revoke_request(&shared, req).await {
        Ok(()) => {
            let mut res = Response::new(Body::empty());
            no_store(res.headers_mut());
            res
        }
        Err(e) => e.into_response(),
    }
}

async fn revoke_request(shared: &Shared, req: Request) -> Result<(), TokenError> {
    let (client, token, hint) = read(shared, req).await?;
    let cid = client.client_id();
    let now = shared.clock.now_unix();
    let store = &shared.user_grants.store;
    let try_refresh = || async {
        let Some(rt) = RefreshToken::parse(&token) else {
            return Ok::<bool, TokenError>(false);
        };
        let Some((family, _)) = store
            .lookup(&rt.hash(), now)
            .await
            .map_err(|e| store_failed(&e))?
        else {
            return Ok(false);
        };
        if family.client_id != cid {
            audit!(Some(&shared.audit), info, "revoke_refused", "other_client"; client_id = cid, sid = %family.family_id, reason = "other_client", "revocation of another client's refresh token ignored");
            return Ok(true);
        }
        let was_active = store
            .revoke_family(&family.family_id, now)
            .await
            .map_err(|e| store_failed(&e))?;
        audit!(Some(&shared.audit), info, "revoked", "refresh_family"; client_id = cid, sid = %family.family_id, uid = %family.user_id, was_active, "refresh-token family revoked");
        Ok(true)
    };
    let try_access = || async {
        let Some(claims) = our_jwt(shared, &token) else {
            return Ok::<bool, TokenError>(false);
        };
        let (Some(jti), Some(exp)) = (
            claims.get("jti").and_then(Value::as_str),
            claims.get("exp").and_then(Value::as_u64),
        ) else {
            return Ok(true);
        };
        if claims.get("client_id").and_then(Value::as_str) != Some(cid) {
            audit!(Some(&shared.audit), info, "revoke_refused", "other_client"; client_id = cid, jti, reason = "other_client", "revocation of another client's access token ignored");
            return Ok(true);
        }
        if exp > now {
            store
                .revoke_jti(jti, exp, now)
                .await
                .map_err(|e| store_failed(&e))?;
            audit!(Some(&shared.audit), info, "revoked", "access_token"; client_id = cid, jti, exp, "access token revoked");
        }
        Ok(true)
    };
    if access_first(hint.as_deref()) {
        if !try_access().await? {
            try_refresh().await?;
        }
    } else if !try_refresh().await? {
        try_access().await?;
    }
    Ok(())
}

pub(crate) async fn introspect(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if req.method() != Method::POST {
        return post_only();
    }
    match introspect_request(&shared, req).await {
        Ok(v) => {
            let mut res = json_response(StatusCode::OK, v.to_string().into_bytes());
            no_store(res.headers_mut());
            res
        }
        Err(e) => e.into_response(),
    }
}

fn inactive() -> Value {
    serde_json::json!({ "active": false })
}

async fn introspect_request(shared: &Shared, req: Request) -> Result<Value, TokenError> {
    let (client, token, hint) = read(shared, req).await?;
    if !client.introspection() {
        audit!(Some(&shared.audit), info, "introspection", "refused"; client_id = client.client_id(), "client may not introspect");
        return Err(TokenError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the introspection endpoint",
        )
        .with_status(StatusCode::FORBIDDEN));
    }
    let now = shared.clock.now_unix();
    let access = if access_first(hint.as_deref()) || RefreshToken::parse(&token).is_none() {
        introspect_access(shared, &token, now).await?
    } else {
        None
    };
    let answer = match access {
        Some(v) => v,
        None => introspect_refresh(shared, &token, now)
            .await?
            .unwrap_or_else(inactive),
    };
    let active = answer.get("active") == Some(&Value::Bool(true));
    let field = |k: &str| answer.get(k).and_then(Value::as_str).unwrap_or("-");
    let (token_client_id, jti, sid) = (field("client_id"), field("jti"), field("sid"));
    audit!(Some(&shared.audit), info, "introspection", if active { "active" } else { "inactive" };
        client_id = client.client_id(),
        token_client_id,
        jti,
        sid,
        "token introspected"
    );
    Ok(answer)
}

async fn introspect_access(
    shared: &Shared,
    token: &str,
    now: u64,
) -> Result<Option<Value>, TokenError> {
    let Some(claims) = our_jwt(shared, token) else {
        return Ok(None);
    };
    let store = &shared.user_grants.store;
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
        return Ok(Some(inactive()));
    };
    if exp <= now
        || store
            .is_jti_revoked(jti, now)
            .await
            .map_err(|e| store_failed(&e))?
    {
        return Ok(Some(inactive()));
    }
    if let Some(sid) = claims.get("sid").and_then(Value::as_str) {
        let family = store
            .get_family(sid, now)
            .await
            .map_err(|e| store_failed(&e))?;
        if !family.is_some_and(|f| f.state == FamilyState::Active) {
            return Ok(Some(inactive()));
        }
    }
    let mut out = Map::new();
    out.insert("active".into(), Value::Bool(true));
    for k in [
        "scope",
        "client_id",
        "exp",
        "iat",
        "sub",
        "aud",
        "iss",
        "jti",
        "uid",
        "tenant",
        "sid",
    ] {
        if let Some(v) = claims.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if claims.contains_key("uid") {
        if let Some(sub) = claims.get("sub") {
            out.insert("username".into(), sub.clone());
        }
    }
    out.insert("token_type".into(), Value::String("Bearer".into()));
    Ok(Some(Value::Object(out)))
}

async fn introspect_refresh(
    shared: &Shared,
    token: &str,
    now: u64,
) -> Result<Option<Value>, TokenError> {
    let Some(rt) = RefreshToken::parse(token) else {
        return Ok(None);
    };
    let g = &shared.user_grants;
    let Some((family, state)) = g
        .store
        .lookup(&rt.hash(), now)
        .await
        .map_err(|e| store_failed(&e))?
    else {
        return Ok(None);
    };
    if state != TokenState::Current || !family.is_usable(now) {
        return Ok(Some(inactive()));
    }
    let user = match &g.users {
        Some(u) => u
            .find_by_id(&family.user_id)
            .await
            .map_err(|e| store_failed(&e))?,
        None => None,
    };
    let Some(user) = user.filter(|u| u.enabled) else {
        return Ok(Some(inactive()));
    };
    let mut out = serde_json::json!({
        "active": true,
        "client_id": family.client_id,
        "username": user.username,
        "sub": user.username,
        "uid": user.user_id,
        "token_type": "refresh_token",
        "exp": family.idle_expires.min(family.absolute_expires),
        "iat": family.last_used,
        "iss": shared.issuer,
        "sid": family.family_id,
    });
    if !family.scopes.is_empty() {
        out["scope"] = Value::String(family.scopes.join(" "));
    }
    if let Some(t) = user.tenant {
        out["tenant"] = Value::String(t);
    }
    Ok(Some(out))
}
