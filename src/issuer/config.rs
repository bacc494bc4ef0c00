//! `security.authorization-server`: the issuer configuration.
