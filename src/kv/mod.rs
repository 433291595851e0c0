//! The key-value API: the [`Kv`] handle, its options, transactions, and what they answer.

mod coalesce;
mod compare;
mod handle;
mod namespace;
mod options;
pub(crate) mod range;
mod responses;
mod txn;

pub use coalesce::Coalesced;
pub(crate) use coalesce::Coalescers;
pub use compare::{Compare, CompareNumber, CompareValue};
pub use handle::Kv;
pub(crate) use namespace::Namespace;
pub use options::{CompactOptions, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
pub use range::prefix_end;
pub use responses::{CompactResponse, DeleteResponse, GetResponse, PutResponse};
pub use txn::{Txn, TxnOp, TxnOpResponse, TxnResponse};
