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
//! **Threads.** A [`Client`] starts two kinds of threads and owns both:
//! - grpcio's completion-queue threads (`etcd-grpc-0`, ...; one by default,
//!   [`ClientBuilder::poll_threads`]), which drive every connection of the client;
//! - the balancer's worker (`etcd-balancer`), which keeps the endpoint table true.
//!
//! gRPC's C core runs threads of its own besides (`default-executor`, which takes over
//! transport work when a connection is busy on two threads at once, `resolver-executor`,
//! `timer_manager`): they are process-wide, shared with any other grpcio user in the
//! process, and not the client's to start or stop.
//!
//! Each endpoint has one grpcio channel (one HTTP/2 connection, not shared with other
//! clients), built without gRPC's retry filter (what is safe to retry is decided here) and
//! its idle filter (a connection lives as long as its client): both would cost every call. [`ClientBuilder::connect`] dials them all in parallel and returns once one is
//! ready, or fails after the dial timeout naming every endpoint.
//!
//! **The balancer.** Every endpoint is [`Health::Healthy`], [`Health::Suspect`] or
//! [`Health::Unhealthy`] (with a reason and since when; [`Client::endpoint_health`]). Callers
//! read that from an atomic, never waiting on the worker. The worker probes all endpoints in
//! parallel, each with a linearizable one-key count under etcd's require-leader metadata and
//! a short deadline ([`ClientBuilder::probe_interval`], [`ClientBuilder::probe_timeout`]): it
//! passes only if the member is up, has a leader and reaches its quorum, so members that hang
//! or are cut off from their peers are found too, which HTTP/2 pings cannot do. A failed
//! probe makes the endpoint unhealthy; it is re-probed with backoff from 50 ms and rejoins as
//! soon as a probe passes. Callers that see a call fail report the endpoint suspect, which
//! makes the worker probe it at once. A status call sent with each probe tells the member
//! behind each endpoint and who leads. An endpoint of another cluster (cluster ID) is
//! refused. With [`ClientBuilder::auto_sync_interval`] the worker also reads the member list
//! and replaces the endpoint table: new members are added, departed ones dropped (their
//! connections close when their last call ends).
//!
//! **Ownership.** `Client` is an `Arc` around the shared state; clones and the API handles
//! ([`Kv`], [`Lease`]) share it. The worker holds only the endpoint table, never the client.
//! The connections sit behind a lock that is held only to clone an `Arc` out of it, never
//! across a call. [`Client::close`] (or dropping the last handle) takes them out, so later
//! calls fail with [`Error::Closed`], stops and joins the worker, and waits until grpcio's
//! threads have stopped (calls still in flight finish first, each bounded by its deadline).
//!
//! **A call.** `kv.get(..)` validates its options and builds the protobuf request on the
//! caller's thread, then, within the call's one deadline: picks an endpoint (for a write or
//! a linearizable read, the leader's while it is known and healthy,
//! [`ClientBuilder::prefer_leader`]; otherwise a healthy endpoint round-robin, a suspect one
//! if none is healthy, for a serializable read a member that answers without a leader (so
//! such reads go on through a loss of quorum, stale as serializable reads may be), or else
//! it waits for one to turn healthy, and at the deadline fails with
//! [`Error::NoHealthyEndpoint`] listing every endpoint and its last failure); starts the call there with require-leader metadata (except serializable reads);
//! and blocks, parked, until a poll thread completes it. If the endpoint turns unhealthy
//! meanwhile, or the leader changes or is lost (a follower may have forwarded the call to a
//! leader that is gone), the call is cancelled rather than left to hang; while the leader
//! is lost the worker probes every 25 ms to learn the next one, and so it does for a second
//! whenever a call has waited on the leader past half a probe timeout (a leader cut off from
//! its quorum still answers probes, but commits nothing). A failure goes to one function,
//! `retry::decide`: repeatable calls (reads, lease time-to-live, read-only transactions) are
//! tried on another endpoint, with a growing pause after each full round; writes only when
//! they never reached a server (no connection, or refused for having no leader), and
//! otherwise fail with [`Error::WriteOutcomeUnknown`] so that nothing is applied twice. The
//! client remembers the highest revision it has seen, and a serializable read answered from
//! behind it is asked elsewhere, so a failover never takes the client back in time. The
//! response becomes this crate's types (the generated protobuf types stay private).
//!
//! # Testing against real etcd
//!
//! With the cargo feature `testing`, `testing::Cluster` starts real etcd clusters on
//! loopback for tests, benchmarks and examples, with per-member faults (kill, graceful stop,
//! pause, resume, restart). This crate's own tests use it.
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
