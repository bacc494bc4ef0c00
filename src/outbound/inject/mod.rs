//! `InjectBearerLayer`: see the [module docs](crate::outbound).

pub(crate) mod future;
pub(crate) mod layer;
mod replay;
mod service;

pub use future::ResponseFuture;
pub use layer::{InjectBearerLayer, SkipBearer};
pub use replay::{CloneBody, NoReplay, ReplayRequest};
pub use service::InjectBearer;
