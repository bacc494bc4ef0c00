//! Signing keys: generation, loading, encrypted persistence, rotation states, JWKS.
