//! Authorization building blocks: canonical request paths and compiled path patterns.

pub(crate) mod path;
pub(crate) mod pattern;

/// The pure matching functions, for `benches/authz.rs` only: not a stable API.
#[doc(hidden)]
pub mod __bench {
    pub use super::path::{check_canonical, PathError};
    pub use super::pattern::{method_bit, CompiledPatterns, ALL_METHODS};
}
