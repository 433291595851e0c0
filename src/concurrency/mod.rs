//! Recipes on top of the API, with the semantics of the Go client's `concurrency` package:
//! [`Session`], a lease kept alive for as long as it is needed; [`Mutex`], a lock that
//! holders queue for in order of their keys' create revisions, and whose guard fences
//! writes to its holder; [`Election`], leadership on the same queue, with
//! [`Leadership::proclaim`] and an [`Observer`] of every leader in order; [`Stm`], closures
//! of reads and writes run as transactions, again on conflict, whose unknown outcomes it
//! resolves itself; [`txn_settled`], one transaction whose unknown outcome is settled
//! before the call returns.

mod cancel;
mod election;
mod fence;
mod mutex;
mod queue;
mod session;
mod settle;
mod stm;

pub use cancel::Cancel;
pub use election::{Election, Leadership, Observer};
pub use mutex::{Mutex, MutexGuard};
pub use session::Session;
#[cfg(feature = "testing")]
pub use settle::txn_settled_with_faults;
pub use settle::{txn_settled, Settled};
#[cfg(feature = "testing")]
pub use stm::CommitFault;
pub use stm::{Isolation, Stm, StmStats, StmTxn};
