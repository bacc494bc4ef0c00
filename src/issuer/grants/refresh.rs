//! The `refresh_token` grant (RFC 6749 §6) with OAuth 2.1 rotation and reuse detection
//! (RFC 9700 §4.14).
//!
//! - **Opaque tokens**: `<family id>.<base64url of 256 random bits>`; the grant store keeps only
//!   their SHA-256 ([`RefreshToken`], [`GrantStore`](crate::issuer::store::GrantStore)). They
//!   are issued to user grants only (the `password` grant, when the client also lists
//!   `refresh_token`), never to `client_credentials`, and bound to the client that got them.
//! - **Rotation**: every refresh is one atomic
//!   [`GrantStore::rotate`](crate::issuer::store::GrantStore::rotate): the presented token
//!   becomes used (a tombstone kept to the family's absolute expiry) and the answer carries a
//!   new refresh token and a new access token. Two replicas sharing a Redis store can never
//!   both rotate one token.
//! - **Reuse** of a used token (or of a revoked family's) revokes the whole family and is
//!   audited (`tower_bearer::audit`, `event = "refresh_reuse"`): theft detection. Every later
//!   refresh of that family fails.
//! - **Lifetimes**: `refresh-token.idle-ttl-seconds` (no refresh for that long ends the family)
//!   and `absolute-ttl-seconds` (from the login).
//! - **Scopes can only narrow**: `scope` must be a subset of the family's scopes
//!   (`invalid_scope` otherwise, checked before the token is used up); absent = the family's.
//! - **Another client's token** is `invalid_grant` and changes nothing.
//! - **The user is reloaded** ([`UserStore::find_by_id`](crate::issuer::users::UserStore::find_by_id)):
//!   a missing or disabled user is `invalid_grant` and the family is revoked; new roles,
//!   permissions, tenant and `pv` go into the new access token, so a role change takes effect
//!   at the next refresh.
//! - A store that does not answer (Redis down or reconnecting) is 503
//!   `temporarily_unavailable`, never a verdict; a store that lost its state (Redis restarted
//!   without persistence) answers `invalid_grant`, and the user logs in again.
//! - Every failure is the same `invalid_grant` for the client; the reason (`malformed`,
//!   `not_found`, `expired`, `revoked`, `reused`, `wrong_client`, `user_gone`,
//!   `user_disabled`) is in the audit log.
//!
//! **The previous access token is not revoked by a normal rotation.** A self-contained JWT
//! cannot be recalled: it stays valid until its `exp`. Keep access-token lifetimes short
//! (`access-token.ttl-seconds`, default 5 min). Where "the old access token is revoked" is
//! required, revoke it explicitly (`POST /oauth2/revoke` puts its `jti` on the revocation list)
//! and have resource servers consult that list or the introspection endpoint (opt-in); a
//! bumped policy version ([`AuthorizationServer::bump_policy_version`](crate::issuer::AuthorizationServer::bump_policy_version))
//! refuses every older token of the user at once.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tower::ServiceExt;
//! use tower_bearer::issuer::clients::RegisteredClient;
//! use tower_bearer::issuer::config::{AuthMethod, GrantType};
//! use tower_bearer::issuer::password::PasswordHash;
//! use tower_bearer::issuer::users::{MemoryUserStore, User};
//! use tower_bearer::issuer::AuthorizationServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hash = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU."; // "correct horse", test only
//! let users = MemoryUserStore::from_users([User::new("1001", "alice")
//!     .with_password_hash(PasswordHash::parse(hash).unwrap())])
//! .unwrap();
//! let server = AuthorizationServer::builder("https://auth.example")
//!     .password_grant(true)
//!     .with_user_store(Arc::new(users))
//!     .client(
//!         RegisteredClient::new("web", AuthMethod::ClientSecretPost)
//!             .with_secret_hash(PasswordHash::parse(hash).unwrap())
//!             .with_grant_types([GrantType::Password, GrantType::RefreshToken]),
//!     )
//!     .build()
//!     .await
//!     .unwrap();
//! let post = |body: String| {
//!     let req = http::Request::post("/oauth2/token")
//!         .header("content-type", "application/x-www-form-urlencoded")
//!         .body(axum::body::Body::from(format!("client_id=web&client_secret=correct+horse&{body}")))
//!         .unwrap();
//!     let app = server.router();
//!     async move {
//!         let res = app.oneshot(req).await.unwrap();
//!         let status = res.status();
//!         let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
//!         (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
//!     }
//! };
//! let (_, login) = post("grant_type=password&username=alice&password=correct+horse".into()).await;
//! let first = login["refresh_token"].as_str().unwrap().to_owned();
//! let (status, next) = post(format!("grant_type=refresh_token&refresh_token={first}")).await;
//! assert_eq!(status, 200);
//! assert_ne!(next["refresh_token"], login["refresh_token"]);
//! // The first token again: reuse, the family is revoked.
//! let (status, err) = post(format!("grant_type=refresh_token&refresh_token={first}")).await;
//! assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("invalid_grant")));
//! let second = next["refresh_token"].as_str().unwrap();
//! let (status, _) = post(format!("grant_type=refresh_token&refresh_token={second}")).await;
//! assert_eq!(status, 400);
//! # }
//! ```

use crate::http_client::BoxFuture;
use crate::issuer::Shared;
use crate::issuer::audit::audit;
use crate::issuer::config::GrantType;
use crate::issuer::grants::password::{issue_user_token, user_scopes};
use crate::issuer::grants::{
    ErrorCode, Grant, GrantRequest, TokenError, TokenResponse, parse_scope,
};
use crate::issuer::store::{RefreshToken, RotateOutcome};

#[derive(Debug, Default)]
pub(crate) struct RefreshGrant;

fn refused() -> TokenError {
    TokenError::new(
        ErrorCode::InvalidGrant,
        "the refresh token is invalid, expired or revoked",
    )
}

fn audit(server: &Shared, client: &str, family: &str, reason: &'static str) {
    audit!(Some(&server.audit), info, "refresh_refused", reason;
        client_id = client,
        sid = family,
        reason,
        "refresh_token grant refused"
    );
}

/// The grant store (or user store) did not answer: 503 `temporarily_unavailable`, never a
/// verdict on the token (a Redis reconnecting after a restart answers again in a moment).
pub(crate) fn store_failed(e: &crate::store::StoreError) -> TokenError {
    tracing::error!(target: "tower_bearer::issuer", error = %e, "grant store failed");
    TokenError::new(
        ErrorCode::TemporarilyUnavailable,
        "the grant store is unavailable; retry later",
    )
}

impl Grant for RefreshGrant {
    fn grant_type(&self) -> GrantType {
        GrantType::RefreshToken
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
            let raw = params.single("refresh_token")?.ok_or_else(|| {
                TokenError::new(
                    ErrorCode::InvalidRequest,
                    "missing parameter `refresh_token`",
                )
            })?;
            let requested = parse_scope(params.single("scope")?)?;
            let Some(presented) = RefreshToken::parse(raw) else {
                audit(server, cid, "-", "malformed");
                return Err(refused());
            };
            let fam = presented.family_id().to_owned();
            let now = server.clock.now_unix();
            if let Some(asked) = &requested {
                // Checked before the token is used up: a bad scope must not cost the client
                // its refresh token.
                let family = g
                    .store
                    .get_family(&fam, now)
                    .await
                    .map_err(|e| store_failed(&e))?;
                if let Some(f) = family.filter(|f| f.client_id == cid) {
                    if let Some(s) = asked.iter().find(|s| !f.scopes.contains(s)) {
                        return Err(TokenError::new(
                            ErrorCode::InvalidScope,
                            format!("scope `{s}` was not granted to this refresh token"),
                        ));
                    }
                }
            }
            let successor = presented.successor();
            let outcome = g
                .store
                .rotate(&presented.hash(), cid, &successor.hash(), now)
                .await
                .map_err(|e| store_failed(&e))?;
            let record = match outcome {
                RotateOutcome::Rotated(r) => r,
                RotateOutcome::Reused(r) => {
                    audit!(Some(&server.audit), warn, "refresh_reuse", "reused";
                        client_id = cid,
                        sid = %fam,
                        uid = %r.user_id,
                        "refresh token reused: family revoked (possible theft)"
                    );
                    return Err(refused());
                }
                other => {
                    audit(server, cid, &fam, other.reason());
                    return Err(refused());
                }
            };
            let user = match &g.users {
                Some(u) => u
                    .find_by_id(&record.user_id)
                    .await
                    .map_err(|e| store_failed(&e))?,
                None => None,
            };
            let user = match user {
                Some(u) if u.enabled => u,
                gone => {
                    let reason = if gone.is_some() {
                        "user_disabled"
                    } else {
                        "user_gone"
                    };
                    g.store
                        .revoke_family(&fam, now)
                        .await
                        .map_err(|e| store_failed(&e))?;
                    audit(server, cid, &fam, reason);
                    return Err(refused());
                }
            };
            let granted = requested.unwrap_or_else(|| record.scopes.clone());
            // A scope the client lost since the login is not granted again.
            let scopes: Vec<String> = granted
                .into_iter()
                .filter(|s| user_scopes(server, client).any(|c| c == s))
                .collect();
            audit!(Some(&server.audit), info, "refresh_rotated", "rotated";
                client_id = cid,
                sid = %fam,
                uid = %user.user_id,
                generation = record.generation,
                "refresh token rotated"
            );
            issue_user_token(
                server,
                client,
                GrantType::RefreshToken,
                &user,
                &scopes,
                Some(&fam),
                record.auth_time,
                Some(successor),
            )
            .await
        })
    }
}
