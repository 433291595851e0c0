//! The watch API: [`Watch`], the handle that starts watches; [`Watcher`], one watch's
//! receiving end; its options and responses; and the hub, the one thread that drives
//! every watch of a client over one bidirectional stream and moves them all to another
//! member when that stream's member fails.

mod group;
mod handle;
mod hub;
mod ids;
mod liveness;
mod options;
mod registration;
mod responses;
mod watcher;

pub use handle::Watch;
pub(crate) use hub::Hub;
pub use options::WatchOptions;
pub use responses::{Event, EventKind, WatchResponse};
pub use watcher::Watcher;
