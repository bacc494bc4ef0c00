//! The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.5–4.6, RFC 9700 §2.1.1): the
//! code from the [authorization endpoint](crate::issuer::authorize) exchanged for an access
//! token and (when the client lists `refresh_token`) a refresh token.
//!
//! - **Client authentication** as for every grant: confidential clients with their secret,
//!   public clients (`auth-method: none`) with `client_id` only.
//! - **The code is consumed first**, atomically (a Lua script in Redis), whatever follows: a
//!   code presented by another client, with the wrong `redirect_uri` or the wrong verifier is
//!   used up too (as Spring Authorization Server does), so a stolen code cannot be tried twice.
//! - **Binding**: the code must have been issued to the authenticated client;
//!   `redirect_uri` must equal the authorization request's (it may be left out only when the
//!   client has exactly one registered URI); the PKCE `code_verifier` (43–128 characters of
//!   `[A-Za-z0-9-._~]`) must hash (S256) to the challenge, and a `code_verifier` sent for a code
//!   issued without a challenge is refused (PKCE downgrade, RFC 9700 §2.1.1).
//! - **Single use, ≤ 60 s.** A second use of a code is `invalid_grant` **and** revokes what
//!   the first use issued (RFC 6749 §4.1.2): the refresh-token family is revoked and the access
//!   token's `jti` goes on the revocation list until its `exp`. Audited as
//!   `event = "code_replay"`.
//! - **Tokens** as the password grant: user claims (`uid`, `tenant`, `pv`, `roles`,
//!   `permissions`, `authorities`), `sid` (the family), `auth_time` (the login), `amr: ["pwd"]`;
//!   refresh tokens rotate with reuse detection ([`refresh`](crate::issuer::grants::refresh)).
//!   The user is reloaded: a user deleted or disabled since the login gets `invalid_grant`.
//! - Every refusal is `invalid_grant` (or `invalid_request` for a missing parameter); the
//!   reason (`not_found`, `wrong_client`, `redirect_uri_mismatch`, `pkce_missing`,
//!   `pkce_mismatch`, `pkce_downgrade`, `replay`, `user_gone`, `user_disabled`) is in the audit
//!   log.
//!
//! # Example
//!
//! See the [authorize module](crate::issuer::authorize) for the request side; the exchange:
//!
//! ```
//! use tower::ServiceExt;
//! use tower_bearer::issuer::clients::RegisteredClient;
//! use tower_bearer::issuer::config::{AuthMethod, GrantType};
//! use tower_bearer::issuer::AuthorizationServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = AuthorizationServer::builder("https://auth.example")
//!     .client(
//!         RegisteredClient::new("mobile", AuthMethod::None)
//!             .with_grant_types([GrantType::AuthorizationCode])
//!             .with_redirect_uris(["com.example.app:/cb"]),
//!     )
//!     .build()
//!     .await
//!     .unwrap();
//! let req = http::Request::post("/oauth2/token")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(axum::body::Body::from(
//!         "grant_type=authorization_code&client_id=mobile&code=unknown&redirect_uri=com.example.app:/cb\
//!          &code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
//!     ))
//!     .unwrap();
//! let res = server.router().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 400);
//! let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
//! let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(err["error"], "invalid_grant");
//! # }
//! ```

use base64::Engine as _;

use crate::http_client::BoxFuture;
use crate::issuer::Shared;
use crate::issuer::config::GrantType;
use crate::issuer::grants::password::{issue_user_token, user_scopes};
use crate::issuer::grants::refresh::store_failed;
use crate::issuer::grants::{ErrorCode, Grant, GrantRequest, TokenError, TokenResponse};
use crate::issuer::store::{CodeOutcome, NewFamily, RefreshToken, hash_secret};

#[derive(Debug, Default)]
pub(crate) struct AuthorizationCodeGrant;

fn refused() -> TokenError {
    TokenError::new(
        ErrorCode::InvalidGrant,
        "the authorization code is invalid, expired or was already used",
    )
}

fn audit(client: &str, reason: &str) {
    tracing::info!(
        target: "tower_bearer::audit",
        event = "code_refused",
        client_id = client,
        reason,
        "authorization_code grant refused"
    );
}

/// RFC 7636 §4.1: 43–128 characters of the unreserved set.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// BASE64URL(SHA256(verifier)) == challenge, in constant time.
fn s256_matches(verifier: &str, challenge: &str) -> bool {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

/// What the first use of a code issued, kept with the consumed code so that a replay can
/// revoke it: `<family id or ->.<jti or ->.<exp>` (family ids and `jti`s are base64url).
fn link_value(family: Option<&str>, jti: Option<&str>, exp: u64) -> String {
    format!("{}.{}.{exp}", family.unwrap_or("-"), jti.unwrap_or("-"))
}

fn parse_link(v: &str) -> (Option<&str>, Option<&str>, u64) {
    let mut it = v.splitn(3, '.');
    let fam = it.next().filter(|f| !f.is_empty() && *f != "-");
    let jti = it.next().filter(|j| !j.is_empty() && *j != "-");
    let exp = it.next().and_then(|e| e.parse().ok()).unwrap_or(0);
    (fam, jti, exp)
}

/// `jti` and `exp` of an access token we just signed.
fn jti_and_exp(token: &str) -> Option<(String, u64)> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((claims["jti"].as_str()?.to_owned(), claims["exp"].as_u64()?))
}

/// A replayed code: revoke what its first use issued.
async fn revoke_replayed(server: &Shared, cid: &str, link: Option<&str>, now: u64) {
    let (fam, jti, exp) = link.map_or((None, None, 0), parse_link);
    let store = &server.user_grants.store;
    if let Some(f) = fam {
        if let Err(e) = store.revoke_family(f, now).await {
            tracing::error!(target: "tower_bearer::issuer", error = %e, "could not revoke the family of a replayed code");
        }
    }
    if let Some(j) = jti {
        if exp > now {
            if let Err(e) = store.revoke_jti(j, exp, now).await {
                tracing::error!(target: "tower_bearer::issuer", error = %e, "could not revoke the access token of a replayed code");
            }
        }
    }
    tracing::warn!(
        target: "tower_bearer::audit",
        event = "code_replay",
        client_id = cid,
        sid = fam.unwrap_or("-"),
        jti = jti.unwrap_or("-"),
        "authorization code used twice: tokens issued from it revoked"
    );
}

impl Grant for AuthorizationCodeGrant {
    fn grant_type(&self) -> GrantType {
        GrantType::AuthorizationCode
    }

    fn handle<'a>(
        &'a self,
        req: GrantRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenResponse, TokenError>> {
        Box::pin(async move {
            let GrantRequest {
                server,
                client,
                params,
                ..
            } = req;
            let g = &server.user_grants;
            let cid = client.client_id();
            let code = params.single("code")?.ok_or_else(|| {
                TokenError::new(ErrorCode::InvalidRequest, "missing parameter `code`")
            })?;
            let redirect_uri = params.single("redirect_uri")?;
            let verifier = params.single("code_verifier")?;
            let now = server.clock.now_unix();
            let code_hash = hash_secret(code);
            let record = match g
                .store
                .take_code(&code_hash, now)
                .await
                .map_err(|e| store_failed(&e))?
            {
                CodeOutcome::Taken(r) => r,
                CodeOutcome::Reused { family_id } => {
                    revoke_replayed(server, cid, family_id.as_deref(), now).await;
                    return Err(refused());
                }
                _ => {
                    audit(cid, "not_found");
                    return Err(refused());
                }
            };
            if record.client_id != cid {
                audit(cid, "wrong_client");
                return Err(refused());
            }
            let redirect_ok = match redirect_uri {
                Some(r) => r == record.redirect_uri,
                None => client.redirect_uris() == [record.redirect_uri.clone()],
            };
            if !redirect_ok {
                audit(cid, "redirect_uri_mismatch");
                return Err(refused());
            }
            match (&record.code_challenge, verifier) {
                (Some(_), None) => {
                    audit(cid, "pkce_missing");
                    return Err(TokenError::new(
                        ErrorCode::InvalidGrant,
                        "missing `code_verifier`",
                    ));
                }
                (Some(c), Some(v)) => {
                    if !valid_verifier(v) || !s256_matches(v, c) {
                        audit(cid, "pkce_mismatch");
                        return Err(TokenError::new(
                            ErrorCode::InvalidGrant,
                            "the code verifier does not match the code challenge",
                        ));
                    }
                }
                (None, Some(_)) => {
                    audit(cid, "pkce_downgrade");
                    return Err(refused());
                }
                (None, None) => {}
            }
            let user = match &g.users {
                Some(u) => u
                    .find_by_id(&record.user_id)
                    .await
                    .map_err(|e| store_failed(&e))?,
                None => None,
            };
            let user = match user {
                Some(u) if u.enabled => u,
                Some(_) => {
                    audit(cid, "user_disabled");
                    return Err(refused());
                }
                None => {
                    audit(cid, "user_gone");
                    return Err(refused());
                }
            };
            // A scope the client lost since the authorization request is not granted.
            let scopes: Vec<String> = record
                .scopes
                .iter()
                .filter(|s| user_scopes(server, client).any(|c| c == *s))
                .cloned()
                .collect();
            let refresh = if client.allows(GrantType::RefreshToken) {
                let first = RefreshToken::new_family();
                let family = NewFamily::new(first.family_id(), cid, user.user_id.clone())
                    .with_scopes(scopes.iter().cloned())
                    .with_auth_time(record.auth_time)
                    .with_lifetimes(g.idle_ttl, g.absolute_ttl);
                g.store
                    .create_family(family, &first.hash(), now)
                    .await
                    .map_err(|e| store_failed(&e))?;
                // Linked before the tokens go out: a replay racing this exchange still finds
                // the family.
                g.store
                    .link_code_family(
                        &code_hash,
                        &link_value(Some(first.family_id()), None, 0),
                        now,
                    )
                    .await
                    .map_err(|e| store_failed(&e))?;
                Some(first)
            } else {
                None
            };
            let family = refresh.as_ref().map(|r| r.family_id().to_owned());
            let res = issue_user_token(
                server,
                client,
                GrantType::AuthorizationCode,
                &user,
                &scopes,
                family.as_deref(),
                record.auth_time,
                refresh,
            )
            .await?;
            if let Some((jti, exp)) = jti_and_exp(&res.access_token) {
                g.store
                    .link_code_family(
                        &code_hash,
                        &link_value(family.as_deref(), Some(&jti), exp),
                        now,
                    )
                    .await
                    .map_err(|e| store_failed(&e))?;
            }
            tracing::info!(
                target: "tower_bearer::audit",
                event = "code_exchanged",
                client_id = cid,
                uid = %user.user_id,
                sid = family.as_deref().unwrap_or("-"),
                "authorization code exchanged"
            );
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        assert!(s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn verifier_syntax() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&"~._-".repeat(32)));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn links_round_trip() {
        let v = link_value(Some("fam_1-x"), Some("jti-2"), 99);
        assert_eq!(parse_link(&v), (Some("fam_1-x"), Some("jti-2"), 99));
        assert_eq!(parse_link(&link_value(None, None, 0)), (None, None, 0));
        assert_eq!(parse_link(""), (None, None, 0));
    }
}
