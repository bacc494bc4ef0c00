//! Access-token minting (RFC 9068) and the claims customizer.
