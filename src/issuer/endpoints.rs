//! HTTP endpoints: token, JWKS, metadata (RFC 8414), revocation (RFC 7009), introspection (RFC 7662).
