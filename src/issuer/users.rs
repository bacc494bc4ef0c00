//! Users: the `UserStore` trait and its YAML / in-memory stores.
