//! The authorization server (feature `issuer`): the `service-auth` side of the system, as a
//! library. See `../shared/design.md`, "The authorization server".
//!
//! Sub-modules by capability: [`keys`] (signing keys, states, rotation), [`clients`] (registry and
//! client authentication), [`grants`] (one file per grant), [`tokens`] (minting, claims
//! customizer), [`endpoints`] (HTTP: token, jwks, metadata, revoke, introspect), [`users`]
//! (`UserStore`), [`password`] (password and client-secret hashes), [`store`] (grant store: memory,
//! Redis), [`config`] (`security.authorization-server`).

pub mod clients;
pub mod config;
pub mod endpoints;
pub mod grants;
pub mod keys;
pub mod password;
pub mod store;
pub mod tokens;
pub mod users;
