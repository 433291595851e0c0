//! A blocking, synchronous client for etcd v3, built on grpcio (gRPC's C core).
//!
//! For programs that are not async: every call blocks the calling thread until etcd answers
//! or the call's deadline passes. No async runtime is involved.
//!
//! # Quick start
//!
//! ```no_run
//! use etcd_blocking::{Client, Compare, GetOptions, Txn, TxnOp};
//!
//! let client = Client::connect(["127.0.0.1:2379", "127.0.0.1:22379"])?;
//! let kv = client.kv(); // a cheap handle: Clone + Send + Sync
//!
//! kv.put("app/config", "v1")?;
//! let config = kv.get("app/config")?;
//! assert_eq!(config.first().map(|kv| kv.value()), Some(&b"v1"[..]));
//!
//! let page = kv.get_with("app/", GetOptions::new().prefix().limit(100))?;
//! for item in page.kvs() {
//!     println!("{:?} = {:?}", item.key_str(), item.value_str());
//! }
//!
//! // Compare-and-swap: create the key only if it does not exist.
//! let created = kv
//!     .txn(Txn::new().when([Compare::version("app/lock").eq(0)]).and_then([TxnOp::put("app/lock", "me")]))?
//!     .succeeded();
//! # let _ = created;
//! client.close()?;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! Keys and values are bytes: `&str`, `String`, `&[u8]`, `Vec<u8>` and byte-string literals
//! are accepted wherever one goes. Options ([`GetOptions`], [`PutOptions`],
//! [`DeleteOptions`], [`CompactOptions`]) are plain `Clone + Default` values, so the same
//! value serves a direct call and a [`TxnOp`] inside a [`Txn`].
//!
//! # Errors
//!
//! Every call returns [`Result`] with the one [`Error`] enum. A gRPC status is read once, at
//! the edge (`error.rs`), and becomes a typed value: a refusal by etcd is
//! [`Error::Server`] with a [`ServerCode`] (`NoLeader`, `Compacted`, `TooManyOps`, ...); a
//! broken connection is [`Error::Transport`] with the endpoint and gRPC's error as its
//! source; a call past its deadline is [`Error::DeadlineExceeded`]; input refused before
//! anything is sent is [`Error::InvalidArgument`] or [`Error::InvalidEndpoint`]. Ask an
//! error with [`Error::code`], [`Error::is_unavailable`] and [`Error::endpoint`].
//!
//! # Architecture
//!
//! **Threads.** A [`Client`] owns one grpcio `Environment` whose completion-queue threads
//! (named `etcd-grpc-0`, ... ; one by default, [`ClientBuilder::poll_threads`]) drive every
//! connection of that client. These are the only threads the client starts. Each endpoint
//! has one grpcio channel (one HTTP/2 connection, not shared with other clients), created at
//! connect time; [`ClientBuilder::connect`] dials them all in parallel and returns once one
//! is ready, or fails after the dial timeout naming every endpoint.
//!
//! **Ownership.** `Client` is an `Arc` around the shared state; clones and the API handles
//! ([`Kv`], [`Lease`]) share it. The connections sit behind a lock that is held only to
//! clone an `Arc` out of it, never across a call. [`Client::close`] (or dropping the last
//! handle) takes the connections out, so later calls fail with [`Error::Closed`]; the
//! environment shuts down when the last call in flight returns, and `close` waits until its
//! threads have stopped.
//!
//! **A call.** `kv.get(..)` builds the protobuf request on the caller's thread (validating
//! options first), picks an endpoint round-robin (passing over endpoints whose connection
//! failed), and issues a grpcio unary call with the handle's deadline. The caller's thread
//! blocks on the call's completion, which a poll thread delivers; the response is converted
//! into this crate's types (the generated protobuf types stay private) and returned, or the
//! failure is converted into an [`Error`]. Nothing is retried yet: a health-aware balancer
//! with safe retries is the next piece of work.
//!
//! # Testing against real etcd
//!
//! With the cargo feature `testing`, [`testing::Cluster`] starts real etcd clusters on
//! loopback for tests, benchmarks and examples, with per-member faults (kill, pause, resume,
//! restart). This crate's own tests use it.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub(crate) mod balancer;
mod call;
mod client;
mod endpoint;
mod error;
mod kv;
mod lease;
mod options;
mod proto;
mod range;
mod retry;
mod txn;
mod types;
mod wait;

pub use balancer::{EndpointHealth, Health};
pub use client::{Client, ClientBuilder};
pub use error::{EndpointFailure, Error, Result, ServerCode, ServerError, StatusCode};
pub use kv::{CompactResponse, DeleteResponse, GetResponse, Kv, PutResponse};
pub use lease::{Lease, LeaseGrantResponse, LeaseTimeToLiveResponse};
pub use options::{CompactOptions, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
pub use range::prefix_end;
pub use txn::{Compare, CompareNumber, CompareValue, Txn, TxnOp, TxnOpResponse, TxnResponse};
pub use types::{KeyValue, ResponseHeader};

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
