//! # tower-bearer
//!
//! OAuth2 / JWT bearer security for [`tower`](https://docs.rs/tower) services — axum, tonic and
//! hyper — as composable layers.
//!
//! - [`authn::JwtAuthLayer`]: reads `Authorization: Bearer` (RFC 6750, strict), verifies the JWT
//!   (remote JWKS cached lock-free behind `arc-swap`, `iss`, `aud`, `exp`/`nbf`/`iat` with leeway,
//!   algorithm allow-list bound to each key) and inserts [`claims::CurrentUser`], or answers
//!   the RFC 6750 error (gRPC status for gRPC requests).
//! - [`verify::Verifier`]: the verification engine, with a verified-token cache.
//! - [`jwks`]: key sets from a JWKS URL, OIDC / RFC 8414 discovery, or static keys; background
//!   refresh honouring `Cache-Control`, rate-limited refetch for unknown `kid`s, stale keys kept
//!   while the identity provider is down.
//! - [`signing`]: signing keys with RFC 7638 `kid`s, for issuers, demos and tests.
//! - [`outbound`]: service tokens for calls to other services: `client_credentials`
//!   ([`outbound::ClientCredentials`]), a lock-free, refreshed-ahead, single-flight
//!   [`outbound::TokenManager`] with retries and a circuit breaker, and
//!   [`outbound::InjectBearerLayer`] for hyper / tonic clients (opt-in destinations only), the
//!   same rules as a reqwest-middleware `Middleware` (feature `reqwest`).
//! - [`revocation`]: opt-in refusal of tokens the issuer revoked (`jti`, `sid`), with a bounded
//!   local cache and fail-closed behaviour.
//! - [`store`]: state shared by replicas (the outbound token cache, policy versions), in
//!   memory by default, in Redis with feature `redis`.
//!
//! # Example: an axum service
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tower_bearer::{authn::JwtAuthLayer, claims::CurrentUser, verify::{IssuerConfig, Verifier}};
//!
//! async fn me(user: CurrentUser) -> String {
//!     format!("hello {}", user.user_id().unwrap_or("?"))
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder()
//!     .issuer(IssuerConfig::jwks_uri("https://auth.example", "https://auth.example/oauth2/jwks"))
//!     .audience("orders")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(JwtAuthLayer::new(verifier));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Example: a client
//!
//! A service calling another one: tokens by `client_credentials`, cached and refreshed ahead
//! of expiry, injected into requests to the listed destination only.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_bearer::outbound::{ClientCredentials, InjectBearerLayer, TokenClient, TokenManager};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let source = ClientCredentials::builder("internal-service-client", std::env::var("INTERNAL_CLIENT_SECRET")?)
//!     .token_url("https://auth.eon.internal/oauth2/token")
//!     .build()?;
//! let manager = TokenManager::builder()
//!     .client(
//!         TokenClient::new("orders", source)
//!             .with_audience("service-system")
//!             .with_scope("internal-service")
//!             .with_destination("http://127.0.0.1:9002")?,
//!     )
//!     .build()?;
//! let mut client = ServiceBuilder::new()
//!     .layer(InjectBearerLayer::new(manager))
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
//! let req = http::Request::get("http://127.0.0.1:9002/internal/ping").body(Full::default())?;
//! let res = client.ready().await?.call(req).await?;
//! println!("{}", res.status());
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | `CurrentUser` / `Option<CurrentUser>` extractors, `IntoResponse` for `AuthError` |
//! | `metrics` | no | counters through the `metrics` facade |
//! | `reqwest` | no | `outbound::InjectBearerMiddleware`, a reqwest-middleware `Middleware` |
//! | `redis` | no | `RedisTokenStore`, `RedisPolicyVersions` and `RedisRevocations` in [`store`] (Rust 1.88) |
//! | `issuer` | yes | the authorization server (`issuer` module): token endpoint, JWKS, metadata |
//! | `full` | no | everything |
//!
//! # MSRV
//!
//! Rust 1.88.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod authn;
pub mod authz;
pub mod bearer;
pub mod claims;
pub mod clock;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
pub mod error;
pub mod gateway;
pub mod http_client;
pub mod integrations;
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
pub mod issuer;
pub mod jwks;
pub mod outbound;
pub mod policy;
pub mod revocation;
pub mod signing;
pub mod stack;
pub mod store;
pub mod verify;

mod cached_check;
mod future;
mod json;
mod macros;
mod telemetry;

#[doc(inline)]
pub use authn::{JwtAuth, JwtAuthLayer};

#[doc(inline)]
pub use claims::{Authentication, CurrentUser};
#[doc(inline)]
pub use error::AuthError;
#[doc(inline)]
pub use verify::{IssuerConfig, Verifier};

/// Crate internals for `benches/authz.rs` only: not a stable API.
#[doc(hidden)]
pub use authz::__bench as __authz_bench;

/// Thin wrappers over private decoders, for the `fuzz/` targets only: not a stable API.
#[doc(hidden)]
pub mod __fuzz {
    /// A token's claims text parsed by the verifier's scanner and by serde_json (the
    /// reference), each as the `Debug` text of its members or its error: `(scanner, serde)`.
    /// They must be equal for every input.
    #[allow(clippy::type_complexity)]
    pub fn claims_json_both(
        text: &str,
    ) -> (
        Result<String, crate::error::TokenError>,
        Result<String, crate::error::TokenError>,
    ) {
        crate::json::parse_claims_both(text)
    }

    /// Decodes a Redis token-store value as `RedisTokenStore::get` does, with the store
    /// secret `secret` and the full Redis key `rkey`.
    ///
    /// # Errors
    ///
    /// The reason the value is treated as absent.
    #[cfg(feature = "redis")]
    pub fn redis_open(
        secret: &[u8],
        rkey: &str,
        raw: &[u8],
    ) -> Result<crate::store::StoredToken, &'static str> {
        crate::store::redis::fuzz_open(secret, rkey, raw)
    }

    /// A Redis token-store value holding an arbitrary plaintext, sealed under the key
    /// `redis_open` uses with the same `secret` and `rkey`, behind the clear fingerprint
    /// `clear_fp`.
    ///
    /// # Errors
    ///
    /// An empty secret, or a failed encryption.
    #[cfg(feature = "redis")]
    pub fn redis_seal_plain(
        secret: &[u8],
        rkey: &str,
        clear_fp: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        crate::store::redis::fuzz_seal_plain(secret, rkey, clear_fp, plain)
    }

    /// Decodes `Authorization: Basic` as the token endpoint does: `(client id, secret)`.
    ///
    /// # Errors
    ///
    /// `not_basic` (another scheme) or `malformed`.
    #[cfg(feature = "issuer")]
    pub fn issuer_basic(value: &[u8]) -> Result<(String, String), &'static str> {
        match crate::issuer::clients::parse_basic(value) {
            Ok((id, secret)) => Ok((id, secret.as_str().to_owned())),
            Err(crate::issuer::clients::BasicError::NotBasic) => Err("not_basic"),
            Err(crate::issuer::clients::BasicError::Malformed) => Err("malformed"),
        }
    }

    /// Reads a token request's form body and `Authorization` headers as the token endpoint
    /// does before checking any secret: `(client id, secret, method)` with method `basic`,
    /// `post` or `id_only`.
    ///
    /// # Errors
    ///
    /// `(error code, description)` as the endpoint would answer; `("header", _)` when an
    /// `authorization` value is not a valid header value.
    #[cfg(feature = "issuer")]
    #[allow(clippy::type_complexity)]
    pub fn issuer_credentials(
        authorization: &[&[u8]],
        body: &[u8],
    ) -> Result<(String, Option<String>, &'static str), (&'static str, String)> {
        crate::issuer::endpoints::fuzz_credentials(authorization, body)
    }

    /// Which Redis grant-store reply [`grant_reply`] decodes.
    #[cfg(all(feature = "issuer", feature = "redis"))]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum GrantReplyKind {
        /// `HGETALL` of a refresh-token family.
        Family,
        /// The rotation script's reply.
        Rotate,
        /// The lookup script's reply.
        Lookup,
        /// The authorization-code take script's reply.
        TakeCode,
    }

    /// A decoded Redis grant-store reply.
    #[cfg(all(feature = "issuer", feature = "redis"))]
    #[derive(Debug)]
    pub enum GrantReply {
        /// A family record.
        Family(crate::issuer::store::FamilyRecord),
        /// A rotation outcome, and whether this call revoked the family.
        Rotate(crate::issuer::store::RotateOutcome, bool),
        /// A lookup.
        Lookup(
            Option<(
                crate::issuer::store::FamilyRecord,
                crate::issuer::store::TokenState,
            )>,
        ),
        /// An authorization-code take.
        TakeCode(crate::issuer::store::CodeOutcome),
    }

    /// Decodes a reply of the Redis grant store for family `fam` as the store does: `nil`
    /// for a nil reply, else an array of `items` (`\xfe` alone: nil, `\xfd` then digits: an
    /// integer, anything else a bulk string), converted by the `redis` crate.
    ///
    /// # Errors
    ///
    /// The store error the store would return.
    #[cfg(all(feature = "issuer", feature = "redis"))]
    pub fn grant_reply(
        kind: GrantReplyKind,
        fam: &str,
        nil: bool,
        items: &[&[u8]],
    ) -> Result<GrantReply, crate::store::StoreError> {
        crate::issuer::store::redis_fuzz::fuzz_decode(kind, fam, nil, items)
    }

    /// The hash fields the Redis grant store writes for `rec` with head digest `head`.
    #[cfg(all(feature = "issuer", feature = "redis"))]
    pub fn grant_record_fields(
        rec: &crate::issuer::store::FamilyRecord,
        head: &str,
    ) -> Vec<String> {
        crate::issuer::store::redis_fuzz::fuzz_record_fields(rec, head)
    }

    /// The stored form of an authorization code's record in the Redis grant store.
    ///
    /// # Errors
    ///
    /// A serialization failure.
    #[cfg(all(feature = "issuer", feature = "redis"))]
    pub fn grant_code_json(
        rec: &crate::issuer::store::CodeRecord,
    ) -> Result<String, crate::store::StoreError> {
        crate::issuer::store::redis_fuzz::fuzz_code_json(rec)
    }
}
