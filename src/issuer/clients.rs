//! Client registry and client authentication (RFC 6749 §2.3).
