//! The `password` grant (RFC 6749 §4.3; deprecated by RFC 9700 §2.4): a first-party user
//! login with username and password.
//!
//! - **Off by default.** Served only when `password-grant.enabled: true`
//!   ([`password_grant`](crate::issuer::AuthorizationServerBuilder::password_grant)) *and* the
//!   client lists `password` (confidential clients only: a public client with it is a
//!   configuration error). A warning at start says the grant is deprecated.
//! - **Credentials from the body only** (`username`, `password`; in the URL query the request
//!   is refused before any check).
//! - **One answer for every failure**: unknown user, user without password, wrong password,
//!   disabled user and a locked username all answer the same `invalid_grant` ("the username or
//!   password is not valid"). The real reason goes to the audit log only (target
//!   `tower_bearer::audit`, field `reason`: `unknown_user`, `no_password`, `wrong_password`,
//!   `disabled`, `locked`), never the password. Unknown users are checked against a dummy hash
//!   of the same cost ([`PasswordHasher::verify`](crate::issuer::password::PasswordHasher::verify)
//!   with `None`), so timing does not tell them apart.
//! - **Brute force**: failures are counted per username
//!   ([`user_limits`](crate::issuer::AuthorizationServerBuilder::user_limits): 5 free failures,
//!   then a doubling backoff from 1 s, locked 15 min at 20) and per source address (the token
//!   endpoint's [`address_limits`](crate::issuer::AuthorizationServerBuilder::address_limits),
//!   shared with client authentication). A username in backoff or locked answers
//!   `invalid_grant` without checking the password (a lock on a name says nothing about
//!   whether the user exists: unknown names are counted too). An address in backoff or locked
//!   answers 429 `temporarily_unavailable` with `Retry-After`, as for client authentication.
//!   A successful login clears the username's failures.
//! - **Re-hash on login**: after a successful check of a hash in an older format or at lower
//!   argon2 parameters, the password is re-hashed (argon2id) and stored through
//!   [`UserStore::update_password_hash`](crate::issuer::users::UserStore::update_password_hash)
//!   (a store that cannot write keeps the old hash).
//! - **Scopes** = requested ∩ the client's scopes (all of the client's when none is asked), the
//!   internal scopes (`resource-server.internal-only.scope`) never included; a request none of
//!   whose scopes remain is `invalid_scope`.
//! - **The access token** (RFC 9068) has `sub` = username and the user claims: `uid`, `tenant`
//!   (when set), `pv` (the larger of the user store's and the shared policy source's), `roles`,
//!   `permissions`, `authorities` (`ROLE_` + each role, then the permissions; values already
//!   starting with `SCOPE_` or `ROLE_` dropped), `aud` = `access-token.audience` (else the
//!   client's audiences), `sid` (the refresh-token family), `auth_time`, `amr: ["pwd"]`.
//! - **A refresh token** (`<family>.<256 random bits>`) when the client also lists
//!   `refresh_token`; see [`refresh`](crate::issuer::grants::refresh).
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
//! // bcrypt cost 4 of "correct horse" (test only).
//! let hash = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";
//! let users = MemoryUserStore::from_users([User::new("1001", "alice")
//!     .with_roles(["user"])
//!     .with_password_hash(PasswordHash::parse(hash).unwrap())])
//! .unwrap();
//! let server = AuthorizationServer::builder("https://auth.example")
//!     .password_grant(true)
//!     .with_user_store(Arc::new(users))
//!     .client(
//!         RegisteredClient::new("web", AuthMethod::ClientSecretPost)
//!             .with_secret_hash(PasswordHash::parse(hash).unwrap())
//!             .with_grant_types([GrantType::Password, GrantType::RefreshToken])
//!             .with_scopes(["orders.read"]),
//!     )
//!     .build()
//!     .await
//!     .unwrap();
//! let login = |password: &str| {
//!     http::Request::post("/oauth2/token")
//!         .header("content-type", "application/x-www-form-urlencoded")
//!         .body(axum::body::Body::from(format!(
//!             "grant_type=password&client_id=web&client_secret=correct+horse&username=alice&password={password}"
//!         )))
//!         .unwrap()
//! };
//! let ok = server.router().oneshot(login("correct+horse")).await.unwrap();
//! assert_eq!(ok.status(), 200);
//! let bad = server.router().oneshot(login("wrong")).await.unwrap();
//! assert_eq!(bad.status(), 400);
//! let body = axum::body::to_bytes(bad.into_body(), 1000).await.unwrap();
//! assert!(std::str::from_utf8(&body).unwrap().contains("invalid_grant"));
//! # }
//! ```

use serde_json::{Map, Value};

use crate::http_client::BoxFuture;
use crate::issuer::Shared;
use crate::issuer::audit::audit;
use crate::issuer::clients::RegisteredClient;
use crate::issuer::config::{AuthMethod, GrantType};
use crate::issuer::grants::{
    ErrorCode, Grant, GrantRequest, TokenError, TokenResponse, parse_scope,
};
use crate::issuer::password::PasswordHash;
use crate::issuer::store::{NewFamily, RefreshToken};
use crate::issuer::users::User;

/// The one answer to every failed login.
pub(crate) fn login_failed() -> TokenError {
    TokenError::new(
        ErrorCode::InvalidGrant,
        "the username or password is not valid",
    )
}

#[derive(Debug, Default)]
pub(crate) struct PasswordGrant;

/// `authorities`: `ROLE_` + roles, then permissions; values already starting with `SCOPE_` or
/// `ROLE_` dropped (they would forge a scope or role authority).
pub(crate) fn authorities(roles: &[String], permissions: &[String]) -> Vec<String> {
    let forged = |v: &str| v.starts_with("SCOPE_") || v.starts_with("ROLE_");
    let mut out: Vec<String> = Vec::with_capacity(roles.len() + permissions.len());
    for r in roles.iter().filter(|r| !forged(r) && !r.is_empty()) {
        let a = format!("ROLE_{r}");
        if !out.contains(&a) {
            out.push(a);
        }
    }
    for p in permissions.iter().filter(|p| !forged(p) && !p.is_empty()) {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// The scopes a user token may carry for `client`: its scopes minus the internal ones.
pub(crate) fn user_scopes<'a>(
    server: &'a Shared,
    client: &'a RegisteredClient,
) -> impl Iterator<Item = &'a String> + 'a {
    client
        .scopes()
        .iter()
        .filter(move |s| !server.internal_scopes.contains(s))
}

/// Mints a user access token (and answers with `refresh`, when given).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn issue_user_token(
    server: &Shared,
    client: &RegisteredClient,
    grant: GrantType,
    user: &User,
    scopes: &[String],
    family_id: Option<&str>,
    auth_time: u64,
    refresh: Option<RefreshToken>,
) -> Result<TokenResponse, TokenError> {
    let pv = server.user_grants.current_pv(user).await;
    let mut claims = Map::new();
    claims.insert("uid".into(), Value::String(user.user_id.clone()));
    if let Some(t) = &user.tenant {
        claims.insert("tenant".into(), Value::String(t.clone()));
    }
    claims.insert("pv".into(), Value::from(pv));
    claims.insert("roles".into(), Value::from(user.roles.clone()));
    claims.insert("permissions".into(), Value::from(user.permissions.clone()));
    claims.insert(
        "authorities".into(),
        Value::from(authorities(&user.roles, &user.permissions)),
    );
    if let Some(sid) = family_id {
        claims.insert("sid".into(), Value::String(sid.to_owned()));
    }
    claims.insert("auth_time".into(), Value::from(auth_time));
    claims.insert("amr".into(), serde_json::json!(["pwd"]));
    let audiences = if server.default_audience.is_empty() {
        client.audiences().to_vec()
    } else {
        server.default_audience.clone()
    };
    let ttl = client.access_token_ttl().unwrap_or(server.ttl);
    let minted = server
        .mint(
            client,
            grant,
            &user.username,
            scopes,
            &audiences,
            ttl,
            None,
            claims,
        )
        .await?;
    let mut res = TokenResponse::bearer(minted.token, ttl.as_secs());
    if !scopes.is_empty() {
        res.scope = Some(scopes.join(" "));
    }
    res.refresh_token = refresh.map(|r| r.as_str().to_owned());
    Ok(res)
}

fn audit_failure(
    server: &Shared,
    client: &str,
    username: &str,
    address: Option<&str>,
    reason: &'static str,
) {
    audit!(Some(&server.audit), info, "login_failed", reason;
        client_id = client,
        username,
        address = address.unwrap_or("-"),
        reason,
        "password grant refused"
    );
}

impl Grant for PasswordGrant {
    fn grant_type(&self) -> GrantType {
        GrantType::Password
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
                address,
            } = req;
            let g = &server.user_grants;
            if client.auth_method() == AuthMethod::None {
                // Configuration refuses this; a client registered in Rust is checked here.
                return Err(TokenError::new(
                    ErrorCode::UnauthorizedClient,
                    "the password grant is for confidential clients only",
                ));
            }
            let username = params.single("username")?.ok_or_else(|| {
                TokenError::new(ErrorCode::InvalidRequest, "missing parameter `username`")
            })?;
            let password = params.single("password")?.ok_or_else(|| {
                TokenError::new(ErrorCode::InvalidRequest, "missing parameter `password`")
            })?;
            let requested = parse_scope(params.single("scope")?)?;
            let scopes: Vec<String> = match &requested {
                None => user_scopes(server, client).cloned().collect(),
                Some(asked) => {
                    let s: Vec<String> = asked
                        .iter()
                        .filter(|a| user_scopes(server, client).any(|c| c == *a))
                        .cloned()
                        .collect();
                    if s.is_empty() {
                        return Err(TokenError::new(
                            ErrorCode::InvalidScope,
                            "none of the requested scopes may be granted to this client's users",
                        ));
                    }
                    s
                }
            };
            let cid = client.client_id();
            if let Some(a) = address {
                if let Err(after) = server.address_limiter.check(a) {
                    audit_failure(server, cid, username, address, "address_locked");
                    return Err(TokenError::too_many(after));
                }
            }
            if g.user_limiter.check(username).is_err() {
                audit_failure(server, cid, username, address, "locked");
                return Err(login_failed());
            }
            let Some(users) = &g.users else {
                audit_failure(server, cid, username, address, "no_user_store");
                return Err(login_failed());
            };
            let user = users
                .find_by_username(username)
                .await
                .map_err(|e| crate::issuer::grants::refresh::store_failed(&e))?;
            let hash: Option<&PasswordHash> = user.as_ref().and_then(|u| u.password_hash.as_ref());
            let verified = server.hasher.verify(password.as_bytes(), hash).await;
            let reason = match &user {
                None => Some("unknown_user"),
                Some(u) if u.password_hash.is_none() => Some("no_password"),
                Some(_) if !verified => Some("wrong_password"),
                Some(u) if !u.enabled => Some("disabled"),
                Some(_) => None,
            };
            let (Some(user), None) = (user, reason) else {
                let block = g.user_limiter.record_failure(username);
                if g.user_limiter.is_lock(block) {
                    audit!(Some(&server.audit), warn, "lockout", "user"; client_id = cid, username, seconds = block.as_secs(), "username locked after repeated login failures");
                }
                if let Some(a) = address {
                    let block = server.address_limiter.record_failure(a);
                    if server.address_limiter.is_lock(block) {
                        audit!(Some(&server.audit), warn, "lockout", "address"; address = a, seconds = block.as_secs(), "source address locked after repeated failures");
                    }
                }
                audit_failure(
                    server,
                    cid,
                    username,
                    address,
                    reason.unwrap_or("unknown_user"),
                );
                return Err(login_failed());
            };
            g.user_limiter.record_success(username);
            if let Some(h) = &user.password_hash {
                if server.hasher.needs_upgrade(h) {
                    rehash(server, &user, password).await;
                }
            }

            let now = server.clock.now_unix();
            let refresh = if client.allows(GrantType::RefreshToken) {
                let first = RefreshToken::new_family();
                let family = NewFamily::new(first.family_id(), cid, user.user_id.clone())
                    .with_scopes(scopes.iter().cloned())
                    .with_auth_time(now)
                    .with_lifetimes(g.idle_ttl, g.absolute_ttl);
                g.store
                    .create_family(family, &first.hash(), now)
                    .await
                    .map_err(|e| crate::issuer::grants::refresh::store_failed(&e))?;
                Some(first)
            } else {
                None
            };
            audit!(Some(&server.audit), info, "login", "password";
                client_id = cid,
                username,
                uid = %user.user_id,
                address = address.unwrap_or("-"),
                sid = refresh.as_ref().map_or("-", |r| r.family_id()),
                "password grant"
            );
            let family = refresh.as_ref().map(|r| r.family_id().to_owned());
            issue_user_token(
                server,
                client,
                GrantType::Password,
                &user,
                &scopes,
                family.as_deref(),
                now,
                refresh,
            )
            .await
        })
    }
}

/// Re-hashes `password` (argon2id, current parameters) and stores it; failures are logged.
pub(crate) async fn rehash(server: &Shared, user: &User, password: &str) {
    let Some(users) = &server.user_grants.users else {
        return;
    };
    if !users.can_update_password_hash() {
        // Hashing costs as much as the login itself: never compute one the store would drop.
        tracing::debug!(target: "tower_bearer::issuer", uid = %user.user_id, "user store cannot upgrade password hashes");
        return;
    }
    let started = std::time::Instant::now();
    let stored = match server.hasher.hash(password.as_bytes()).await {
        Ok(encoded) => match PasswordHash::parse(&encoded) {
            Ok(h) => users.update_password_hash(&user.user_id, h).await,
            Err(e) => Err(crate::store::StoreError::new(e.to_string())),
        },
        Err(e) => Err(crate::store::StoreError::new(e.to_string())),
    };
    match stored {
        Ok(true) => {
            audit!(Some(&server.audit), info, "password_rehashed", "rehashed"; uid = %user.user_id, took_ms = started.elapsed().as_millis() as u64, "password hash upgraded")
        }
        Ok(false) => {
            tracing::debug!(target: "tower_bearer::issuer", uid = %user.user_id, "user store cannot upgrade password hashes")
        }
        Err(e) => {
            tracing::warn!(target: "tower_bearer::issuer", uid = %user.user_id, error = %e, "password re-hash failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_prefix_roles_and_drop_forged_values() {
        let roles = vec![
            "user".to_owned(),
            "ROLE_admin".to_owned(),
            "user".to_owned(),
        ];
        let perms = vec![
            "orders.read".to_owned(),
            "SCOPE_admin".to_owned(),
            "ROLE_x".to_owned(),
        ];
        assert_eq!(authorities(&roles, &perms), ["ROLE_user", "orders.read"]);
    }
}
