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

use std::sync::Arc;

use serde_json::Map;

use crate::http_client::BoxFuture;
use crate::issuer::Shared;
use crate::issuer::clients::RegisteredClient;
use crate::issuer::config::GrantType;
use crate::issuer::grants::{
    ErrorCode, Grant, GrantRequest, Params, TokenError, TokenResponse, parse_scope,
};
use crate::issuer::tokens::{Decision, Draft, FixedPayload};

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

/// What a request asked for (`scope`, `audience`, `resource`, as sent).
struct Asked<'a> {
    scope: Option<&'a str>,
    audience: Option<&'a str>,
    resources: Vec<&'a str>,
}

/// The granted scopes (and whether the response names them: when they differ from the
/// request) and audiences of `asked`, or why not.
fn decide(
    server: &Shared,
    client: &RegisteredClient,
    asked: &Asked<'_>,
) -> Result<(Vec<String>, bool, Vec<String>), TokenError> {
    let requested = parse_scope(asked.scope)?;
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
    let resources = &asked.resources;
    if resources.iter().any(|r| !is_absolute_uri(r)) {
        return Err(TokenError::new(
            ErrorCode::InvalidTarget,
            "`resource` must be an absolute URI without a fragment (RFC 8707)",
        ));
    }
    let audiences = if asked.audience.is_none() && resources.is_empty() {
        if server.default_audience.is_empty() {
            client.audiences().to_vec()
        } else {
            server.default_audience.clone()
        }
    } else {
        let mut out: Vec<String> = Vec::with_capacity(1 + resources.len());
        for &a in asked.audience.iter().chain(resources) {
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
    Ok((scopes, name_scope, audiences))
}

/// A client's last `client_credentials` decision (kept in the client, [`CcSlot`]): a service
/// asks for its token in the same terms every time, and the same server, client registration
/// and request decide the same scopes and audiences, so the next such request reuses them and
/// the token's fixed claims, written and encoded once ([`FixedPayload`]). Everything the
/// decision depends on is compared on reuse: the server ([`Shared::id`]: its issuer and
/// default audience), the client's id, registered scopes and audiences, and the request's
/// `scope`, `audience` and `resource` values exactly as sent. Servers with a
/// [`TokenCustomizer`](crate::issuer::tokens::TokenCustomizer) do not keep decisions.
pub(crate) struct CcDecision {
    server: u64,
    client_id: String,
    client_scopes: Vec<String>,
    client_audiences: Vec<String>,
    scope: Option<Box<str>>,
    audience: Option<Box<str>>,
    resources: Vec<Box<str>>,
    /// The response's `scope`, when it names one.
    response_scope: Option<String>,
    decision: Decision,
}

impl std::fmt::Debug for CcDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CcDecision")
            .field("client_id", &self.client_id)
            .field("scopes", &self.decision.scopes)
            .field("audiences", &self.decision.audiences)
            .finish_non_exhaustive()
    }
}

impl CcDecision {
    /// Whether this decision answers `asked` from `client` on `server`.
    fn answers(&self, server: &Shared, client: &RegisteredClient, asked: &Asked<'_>) -> bool {
        self.server == server.id
            && self.scope.as_deref() == asked.scope
            && self.audience.as_deref() == asked.audience
            && self.resources.len() == asked.resources.len()
            && self
                .resources
                .iter()
                .zip(&asked.resources)
                .all(|(a, b)| **a == **b)
            && self.client_id == client.client_id()
            && self.client_scopes == client.scopes()
            && self.client_audiences == client.audiences()
    }
}

/// Where a [`RegisteredClient`] keeps its last [`CcDecision`]; a clone of the client starts
/// without one.
#[derive(Default)]
pub(crate) struct CcSlot(arc_swap::ArcSwapOption<CcDecision>);

impl Clone for CcSlot {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// The decision for `asked`: the client's last one when it answers it, else decided now (and
/// kept).
fn decision(
    server: &Shared,
    client: &RegisteredClient,
    asked: &Asked<'_>,
) -> Result<Arc<CcDecision>, TokenError> {
    if let Some(d) = client.cc_slot().0.load_full() {
        if d.answers(server, client, asked) {
            return Ok(d);
        }
    }
    let (scopes, name_scope, audiences) = decide(server, client, asked)?;
    let draft = Draft {
        issuer: &server.issuer,
        typ: &server.typ,
        now: 0,
        ttl: 0,
        client,
        grant: GrantType::ClientCredentials,
        subject: client.client_id(),
        scopes: &scopes,
        audiences: &audiences,
        gty: Some(GTY),
        grant_claims: Map::new(),
    };
    let fixed = match FixedPayload::new(&draft) {
        Ok(Some(fixed)) => fixed,
        // No grant claims here: always built.
        Ok(None) | Err(_) => return Err(TokenError::server_error()),
    };
    let d = Arc::new(CcDecision {
        server: server.id,
        client_id: client.client_id().to_owned(),
        client_scopes: client.scopes().to_vec(),
        client_audiences: client.audiences().to_vec(),
        scope: asked.scope.map(Box::from),
        audience: asked.audience.map(Box::from),
        resources: asked.resources.iter().map(|r| Box::from(*r)).collect(),
        response_scope: name_scope.then(|| scopes.join(" ")),
        decision: Decision {
            scopes,
            audiences,
            fixed,
        },
    });
    client.cc_slot().0.store(Some(d.clone()));
    Ok(d)
}

/// What `params` ask for.
fn asked<'a>(params: &'a Params<'_>) -> Result<Asked<'a>, TokenError> {
    Ok(Asked {
        scope: params.single("scope")?,
        audience: params.single("audience")?,
        resources: params.multi("resource"),
    })
}

/// The grant on a server without a [`TokenCustomizer`](crate::issuer::tokens::TokenCustomizer):
/// nothing in it waits, so the token endpoint answers it in place, without the boxed future
/// of [`Grant::handle`]; `None` on a server with one. `now`: the request's time (Unix
/// seconds), the token's `iat`.
pub(crate) fn issue_now(
    server: &Shared,
    client: &RegisteredClient,
    params: &Params<'_>,
    now: u64,
) -> Option<Result<TokenResponse, TokenError>> {
    server
        .customizer
        .is_none()
        .then(|| issue_fixed(server, client, params, now))
}

/// The token of the client's [`decision`] for `params`, its fixed claims encoded once.
fn issue_fixed(
    server: &Shared,
    client: &RegisteredClient,
    params: &Params<'_>,
    now: u64,
) -> Result<TokenResponse, TokenError> {
    let asked = asked(params)?;
    let ttl = client.access_token_ttl().unwrap_or(server.ttl);
    let d = decision(server, client, &asked)?;
    let minted = server.mint_fixed(client, GrantType::ClientCredentials, &d.decision, ttl, now)?;
    let mut res = TokenResponse::bearer(minted.token, ttl.as_secs());
    res.scope.clone_from(&d.response_scope);
    Ok(res)
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
            // The token endpoint answers servers without a customizer in place
            // (`issue_now`); this path mints through the customizer.
            let asked = asked(params)?;
            let ttl = client.access_token_ttl().unwrap_or(server.ttl);
            let (scopes, name_scope, audiences) = decide(server, client, &asked)?;
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
    use crate::issuer::AuthorizationServer;
    use crate::issuer::clients::{ClientRegistry, MemoryClientRegistry};
    use crate::issuer::config::AuthMethod;
    use crate::issuer::password::PasswordHash;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use tower::ServiceExt as _;

    /// bcrypt (cost 4) of `correct horse`: test-only.
    const HASH: &str = "{bcrypt}$2a$04$Sv.pSsbgPir7MvhUGbWdteZ.kU7CjEFaxI2d8jEgZd/mujHHrcaU.";

    fn client(scopes: &[&str]) -> RegisteredClient {
        RegisteredClient::new("orders", AuthMethod::ClientSecretPost)
            .with_secret_hash(PasswordHash::parse(HASH).unwrap())
            .with_grant_types([GrantType::ClientCredentials])
            .with_scopes(scopes.iter().copied())
            .with_audiences(["x", "y"])
    }

    /// Status, body and (on success) the token's claims of one request with `extra` params.
    async fn ask(
        server: &AuthorizationServer,
        extra: &str,
    ) -> (u16, serde_json::Value, serde_json::Value) {
        let body = format!(
            "grant_type=client_credentials&client_id=orders&client_secret=correct+horse{extra}"
        );
        let req = http::Request::post("/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .unwrap();
        let res = server.router().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let claims = body["access_token"]
            .as_str()
            .map_or(serde_json::Value::Null, |t| {
                let p = URL_SAFE_NO_PAD
                    .decode(t.split('.').nth(1).unwrap())
                    .unwrap();
                serde_json::from_slice(&p).unwrap()
            });
        (status, body, claims)
    }

    async fn slot(registry: &MemoryClientRegistry) -> Option<Arc<CcDecision>> {
        let c = registry.find("orders").await.unwrap().unwrap();
        c.cc_slot().0.load_full()
    }

    /// A kept decision answers only the same server, registration and request: each of them
    /// changed gets its own decision, checked afresh.
    #[tokio::test]
    async fn kept_decisions_answer_only_the_same_terms() {
        let registry = Arc::new(MemoryClientRegistry::new());
        registry.insert(client(&["a", "b"]));
        let build = |iss: &'static str| {
            let registry = registry.clone();
            async move {
                AuthorizationServer::builder(iss)
                    .clients(registry)
                    .build()
                    .await
                    .unwrap()
            }
        };
        let (one, two) = (
            build("https://one.example").await,
            build("https://two.example").await,
        );

        let (st, body, c) = ask(&one, "&scope=a&audience=x").await;
        assert_eq!(
            (st, &c["scope"], &c["aud"], &c["iss"]),
            (200, &"a".into(), &"x".into(), &"https://one.example".into())
        );
        assert!(body.get("scope").is_none());
        let kept = slot(&registry).await.unwrap();
        // The same terms again: the same decision, a new token.
        let (st, _, c2) = ask(&one, "&scope=a&audience=x").await;
        assert_eq!(
            (st, &c2["scope"], &c2["aud"]),
            (200, &"a".into(), &"x".into())
        );
        assert_ne!(c["jti"], c2["jti"]);
        assert!(Arc::ptr_eq(&kept, &slot(&registry).await.unwrap()));
        // Other terms: decided afresh.
        let (st, _, c) = ask(&one, "&scope=b&audience=y").await;
        assert_eq!(
            (st, &c["scope"], &c["aud"]),
            (200, &"b".into(), &"y".into())
        );
        assert!(!Arc::ptr_eq(&kept, &slot(&registry).await.unwrap()));
        // Another server over the same registration: its own issuer.
        let (st, _, c) = ask(&two, "&scope=b&audience=y").await;
        assert_eq!((st, &c["iss"]), (200, &"https://two.example".into()));
        let (st, _, c) = ask(&one, "&scope=b&audience=y").await;
        assert_eq!((st, &c["iss"]), (200, &"https://one.example".into()));
        // No scope asked: all registered, named in the response.
        let (st, body, c) = ask(&one, "").await;
        assert_eq!(
            (st, &c["scope"], &body["scope"]),
            (200, &"a b".into(), &"a b".into())
        );
        let (st, body, _) = ask(&one, "").await;
        assert_eq!((st, &body["scope"]), (200, &"a b".into()));
        // Refusals are never kept.
        for _ in 0..2 {
            let (st, body, _) = ask(&one, "&scope=zz").await;
            assert_eq!((st, &body["error"]), (400, &"invalid_scope".into()));
            let (st, body, _) = ask(&one, "&scope=a&audience=z").await;
            assert_eq!((st, &body["error"]), (400, &"invalid_target".into()));
        }
        // The registration changes: the old decision does not answer for it.
        let (st, _, _) = ask(&one, "&scope=b&audience=y").await;
        assert_eq!(st, 200);
        registry.insert(client(&["a"]));
        let (st, body, _) = ask(&one, "&scope=b&audience=y").await;
        assert_eq!((st, &body["error"]), (400, &"invalid_scope".into()));
    }

    /// A server with a customizer mints through it (`Grant::handle`) and keeps no decision.
    #[tokio::test]
    async fn customizer_servers_mint_through_it_and_keep_nothing() {
        use crate::issuer::tokens::{CustomizerError, TokenContext, TokenCustomizer};
        #[derive(Debug)]
        struct Dept;
        impl TokenCustomizer for Dept {
            fn customize<'a>(
                &'a self,
                _: &'a TokenContext<'a>,
                extra: &'a mut Map<String, serde_json::Value>,
            ) -> BoxFuture<'a, Result<(), CustomizerError>> {
                extra.insert("dept".into(), "sales".into());
                Box::pin(async { Ok(()) })
            }
        }
        let registry = Arc::new(MemoryClientRegistry::new());
        registry.insert(client(&["a", "b"]));
        let server = AuthorizationServer::builder("https://one.example")
            .clients(registry.clone())
            .customizer(Dept)
            .build()
            .await
            .unwrap();
        for _ in 0..2 {
            let (st, body, c) = ask(&server, "").await;
            assert_eq!(
                (st, &c["dept"], &c["scope"]),
                (200, &"sales".into(), &"a b".into())
            );
            assert_eq!((&c["gty"], &body["scope"]), (&GTY.into(), &"a b".into()));
        }
        assert!(slot(&registry).await.is_none());
    }

    /// A clone of a client (which may then be changed) starts without its decision, and a
    /// decision for other client terms does not answer.
    #[tokio::test]
    async fn decisions_check_the_registration() {
        let registry = Arc::new(MemoryClientRegistry::new());
        registry.insert(client(&["a", "b"]));
        let server = AuthorizationServer::builder("https://one.example")
            .clients(registry.clone())
            .build()
            .await
            .unwrap();
        assert_eq!(ask(&server, "&scope=b").await.0, 200);
        let kept = registry.find("orders").await.unwrap().unwrap();
        assert!(kept.cc_slot().0.load_full().is_some());
        let copy = (*kept).clone();
        assert!(copy.cc_slot().0.load_full().is_none());
        // A decision built for scopes [a, b] is refused by a registration with [a] only.
        let d = kept.cc_slot().0.load_full().unwrap();
        let narrower = client(&["a"]);
        narrower.cc_slot().0.store(Some(d));
        let shared = &server.shared;
        let asked = Asked {
            scope: Some("b"),
            audience: None,
            resources: Vec::new(),
        };
        assert_eq!(
            decision(shared, &narrower, &asked).unwrap_err().code(),
            ErrorCode::InvalidScope
        );
    }

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
