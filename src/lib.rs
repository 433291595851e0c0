//! A blocking, synchronous client for etcd v3, built on grpcio.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod endpoint;
mod error;
mod kv;
mod lease;
mod options;
mod proto;
mod range;
mod txn;
mod types;
mod wait;

pub use client::{Client, ClientBuilder};
pub use error::{Error, Result, ServerCode, ServerError, StatusCode};
pub use kv::{CompactResponse, DeleteResponse, GetResponse, Kv, PutResponse};
pub use lease::{Lease, LeaseGrantResponse, LeaseTimeToLiveResponse};
pub use options::{CompactOptions, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
pub use range::prefix_end;
pub use txn::{Compare, CompareNumber, CompareValue, Txn, TxnOp, TxnOpResponse, TxnResponse};
pub use types::{KeyValue, ResponseHeader};

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
