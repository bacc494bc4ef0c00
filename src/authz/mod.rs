//! Authorization: ordered `(methods, path pattern) → requirement` rules, first match wins, an
//! explicit default, and internal-only endpoints.
//!
//! - Paths are matched as the router and the upstream will see them: a path that is not
//!   canonical (`//`, `/./`, `/../`, percent-encoded unreserved characters, an escape of a
//!   character allowed raw in a path such as `%3A` for `:`, encoded `/` `\` `.`, `%25`, `;`, a
//!   raw `\`, control characters, invalid UTF-8) is refused with 400, never rewritten. Only
//!   escapes of what must stay escaped are accepted: space, `"` `#` `<` `>` `?` `[` `]` `^`
//!   `` ` `` `{` `|` `}` and non-ASCII UTF-8.
//! - Methods: a standard method spelled in another letter case (`delete`, `Delete`, `pAtCh`)
//!   is refused with 400 ([`AuthError::NonCanonicalMethod`](crate::AuthError::NonCanonicalMethod)):
//!   `http` sees an extension method that no `DELETE` rule names, while ASP.NET Core, Django
//!   and Flask run their `DELETE` handler. Real extension methods (`PROPFIND`) match by exact
//!   name.
//! - Matching is case-sensitive by default; [`PathCase::Insensitive`]
//!   (`resource-server.path-case: insensitive`) compares literals ASCII case-insensitively, for
//!   upstreams that route that way (ASP.NET Core, Express by default).
//! - Patterns: exact segments, `*` (one segment), `**` (any depth, zero included), `{name}`
//!   (one segment), and one `{name}` or `*` with literal text in the same segment
//!   (`/v1/jobs/{id}:cancel`, `/files/{name}.json`), matching one or more characters.
//! - Requirements ([`Requirement`]): permit-all, authenticated, deny, scope(s), role(s),
//!   authority(ies), permission(s); several in one rule must all hold.
//! - Anonymous where a user is needed → 401; a user lacking what the rule needs → 403
//!   (`insufficient_scope` with `scope="…"` when a scope was required).
//! - Internal-only paths ([`InternalOnly`]) need `SCOPE_<scope>` **and** a service token; they
//!   are checked before the rules, which cannot loosen them.
//! - With rules, put [`JwtAuthLayer`](crate::authn::JwtAuthLayer) in optional mode in front: a
//!   bad token is 401 everywhere, permit-all paths included.
//! - CORS: either put your CORS layer outside the security layers, or let preflights through
//!   with [`AuthorizeLayer::with_cors_preflight`].
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Method, Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::authz::{AccessRules, AuthorizeLayer, Requirement, Rule};
//! use tower_bearer::claims::Authentication;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let rules = AccessRules::builder()
//!     .rule(Rule::new("/public/**", Requirement::PermitAll))
//!     .rule(Rule::new("/admin/**", Requirement::Role("admin".into())).methods([Method::POST]))
//!     .rule(Rule::new("/**", Requirement::Authenticated))
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(AuthorizeLayer::new(rules))
//!     .service(service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
//!
//! let anonymous = |uri: &str| {
//!     let mut req = Request::get(uri).body(()).unwrap();
//!     req.extensions_mut().insert(Authentication::Anonymous);
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(anonymous("/public/a")).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(svc.clone().oneshot(anonymous("/orders")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(svc.oneshot(anonymous("/public/../orders")).await.unwrap().status(), StatusCode::BAD_REQUEST);
//! # }
//! ```

mod layer;
pub(crate) mod path;
pub(crate) mod pattern;
mod rules;

#[doc(inline)]
pub use crate::future::ResponseFuture;
#[doc(inline)]
pub use layer::{
    Authorize, AuthorizeLayer, INSECURE_DEV_ENV, INSECURE_DEV_VALUE, InternalOnlyLayer,
    InternalOnlyService,
};
#[doc(inline)]
pub use rules::{
    AccessRules, AccessRulesBuilder, DefaultAction, InternalOnly, PathCase, Requirement, Rule,
};

/// The pure matching functions, for `benches/authz.rs` only: not a stable API.
#[doc(hidden)]
pub mod __bench {
    pub use super::path::{PathError, check_canonical};
    pub use super::pattern::{ALL_METHODS, CompiledPatterns, method_bit};
}
