//! The `client_credentials` grant (RFC 6749 §4.4): an access token for the client itself.
//!
//! `sub` = `client_id` = the client; `gty: client-credentials`; `scope` ⊆ the registered scopes
//! (all of them when none is asked; one that is not registered is `invalid_scope`, never
//! dropped); `aud` = the requested `audience` and/or `resource` values (RFC 8707: several
//! `resource`s allowed, each an absolute URI) when every one is registered for the client
//! (`invalid_target` otherwise), else the configured default audience (the client's registered
//! audiences when there is none). No refresh token. The response names `scope` when it differs
//! from the request.
//!
//! # Example
//!
//! ```
//! use tower_bearer::issuer::AuthorizationServer;
//! use tower_bearer::issuer::clients::RegisteredClient;
//! use tower_bearer::issuer::config::{AuthMethod, GrantType};
//! use tower_bearer::issuer::password::PasswordHash;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hash = PasswordHash::parse("{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.").unwrap();
//! let server = AuthorizationServer::builder("https://auth.example")
//!     .client(
//!         RegisteredClient::new("orders", AuthMethod::ClientSecretPost)
//!             .with_secret_hash(hash)
//!             .with_grant_types([GrantType::ClientCredentials])
//!             .with_scopes(["internal-service"])
//!             .with_audiences(["service-system"]),
//!     )
//!     .build()
//!     .await
//!     .unwrap();
//! let req = http::Request::post("/oauth2/token")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(axum::body::Body::from(
//!         "grant_type=client_credentials&client_id=orders&client_secret=correct+horse&audience=service-system",
//!     ))
//!     .unwrap();
//! let res = server.router().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! # }
//! ```

use serde_json::Map;

use crate::http_client::BoxFuture;
use crate::issuer::config::GrantType;
use crate::issuer::grants::{
    ErrorCode, Grant, GrantRequest, TokenError, TokenResponse, parse_scope,
};

/// The `gty` claim of client_credentials tokens.
pub const GTY: &str = "client-credentials";

#[derive(Debug, Default)]
pub(crate) struct ClientCredentialsGrant;

/// RFC 8707 §2: an absolute URI without a fragment.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.contains('#')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Grant for ClientCredentialsGrant {
    fn grant_type(&self) -> GrantType {
        GrantType::ClientCredentials
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
            let requested = parse_scope(params.single("scope")?)?;
            // The response names `scope` when the granted set differs from the request.
            let (scopes, name_scope): (Vec<String>, bool) = match requested {
                None => (client.scopes().to_vec(), !client.scopes().is_empty()),
                Some(asked) => {
                    if let Some(s) = asked.iter().find(|s| !client.scopes().contains(s)) {
                        return Err(TokenError::new(
                            ErrorCode::InvalidScope,
                            format!("scope `{s}` is not registered for this client"),
                        ));
                    }
                    (asked, false)
                }
            };

            // Every requested target checked before any is kept (no owned copies until then).
            let audience = params.single("audience")?;
            let resources = params.multi("resource");
            if resources.iter().any(|r| !is_absolute_uri(r)) {
                return Err(TokenError::new(
                    ErrorCode::InvalidTarget,
                    "`resource` must be an absolute URI without a fragment (RFC 8707)",
                ));
            }
            let audiences = if audience.is_none() && resources.is_empty() {
                if server.default_audience.is_empty() {
                    client.audiences().to_vec()
                } else {
                    server.default_audience.clone()
                }
            } else {
                let mut out: Vec<String> = Vec::with_capacity(1 + resources.len());
                for a in audience.into_iter().chain(resources) {
                    if !client.audiences().iter().any(|r| r == a) {
                        return Err(TokenError::new(
                            ErrorCode::InvalidTarget,
                            format!("audience `{a}` is not registered for this client"),
                        ));
                    }
                    if !out.iter().any(|o| o == a) {
                        out.push(a.to_owned());
                    }
                }
                out
            };

            let ttl = client.access_token_ttl().unwrap_or(server.ttl);
            let minted = server
                .mint(
                    client,
                    GrantType::ClientCredentials,
                    client.client_id(),
                    &scopes,
                    &audiences,
                    ttl,
                    Some(GTY),
                    Map::new(),
                )
                .await?;
            let mut res = TokenResponse::bearer(minted.token, ttl.as_secs());
            if name_scope {
                res.scope = Some(scopes.join(" "));
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris() {
        for ok in [
            "https://api.example/orders",
            "urn:example:billing",
            "http://x",
        ] {
            assert!(is_absolute_uri(ok), "{ok}");
        }
        for bad in [
            "service-system",
            "https://a/#f",
            ":x",
            "1http://x",
            "https://a b",
            "x:",
        ] {
            assert!(!is_absolute_uri(bad), "{bad}");
        }
    }
}
