//! Grants: one module per grant type.
