//! Recipes on top of the API, with the semantics of the Go client's `concurrency` package:
//! [`Session`], a lease kept alive for as long as it is needed; [`Mutex`], a lock that
//! holders queue for in order of their keys' create revisions, and whose guard fences
//! writes to its holder; [`Election`], leadership on the same queue, with
//! [`Leadership::proclaim`] and an [`Observer`] of every leader in order.

mod election;
mod mutex;
mod queue;
mod session;

pub use election::{Election, Leadership, Observer};
pub use mutex::{Mutex, MutexGuard};
pub use session::Session;
