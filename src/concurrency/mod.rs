//! Recipes on top of the API, with the semantics of the Go client's `concurrency` package:
//! [`Session`], a lease kept alive for as long as it is needed; [`Mutex`], a lock that
//! holders queue for in order of their keys' create revisions, and whose guard fences
//! writes to its holder.

mod mutex;
mod session;

pub use mutex::{Mutex, MutexGuard};
pub use session::Session;
