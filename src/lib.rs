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
//! # TLS and mutual TLS
//!
//! With the cargo feature `tls` (on by default; it builds gRPC's C core on the system's
//! OpenSSL, Debian's `libssl-dev`), `https://` endpoints connect with TLS, and
//! [`ClientBuilder::tls`] says what to trust and which certificate to show:
//!
//! ```no_run
//! use etcd_blocking::{Client, Tls};
//!
//! let client = Client::builder()
//!     .endpoints(["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"])
//!     .tls(
//!         Tls::new()
//!             .ca_file("/etc/etcd/pki/ca.crt")
//!             // Mutual TLS, for members started with --client-cert-auth.
//!             .identity_files("/etc/etcd/pki/client.crt", "/etc/etcd/pki/client.key"),
//!     )
//!     .connect()?;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! A client is all TLS or all plaintext (mixed schemes are refused), and a client with TLS
//! settings never falls back to plaintext. A credential the members refuse (a certificate
//! not trusted, expired or naming another host, none where one is asked for, TLS at a
//! plaintext member or the reverse) ends [`ClientBuilder::connect`] at once with
//! [`Error::HandshakeFailed`], each endpoint with gRPC's reason, rather than at the dial
//! timeout. Private keys never appear in `Debug` output or errors.
//!
//! # Users and tokens
//!
//! With [`ClientBuilder::user`] the client authenticates when it connects and sends the
//! token etcd answers with every call and every stream it opens. Tokens expire (a simple
//! token after `--auth-token-ttl` of idleness, a JWT at its expiry, both when users or
//! roles change); when a member refuses one, the client authenticates again, once for all
//! the callers that were refused, and sends each refused call once more: it did nothing,
//! so this is safe for writes too. A watch the member refuses for its stream's token is
//! created again on a new stream with a new token, and the other watches move with it
//! from where they were. [`Client::auth`] is the admin API: users, roles, permissions,
//! and auth on and off.
//!
//! ```no_run
//! use etcd_blocking::{Client, Permission};
//!
//! let root = Client::builder()
//!     .endpoints(["127.0.0.1:2379"])
//!     .user("root", "secret")
//!     .connect()?;
//! let auth = root.auth();
//! auth.role_add("reader")?;
//! auth.role_grant_permission("reader", &Permission::read("app/").prefix())?;
//! auth.user_add("alice", "her password")?;
//! auth.user_grant_role("alice", "reader")?;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! A refusal is typed: [`Error::Server`] with [`ServerCode::AuthFailed`] for a wrong
//! password or user (at connect, at once), [`ServerCode::PermissionDenied`] for a key the
//! user may not touch, `UserNotFound`, `RoleNotFound`, `AuthNotEnabled` and so on for the
//! admin calls. The password stays in the client to authenticate again; `Debug` redacts it.
//!
//! # Errors
//!
//! Every call returns [`Result`] with the one [`Error`] enum. A gRPC status is read once, at
//! the edge (`error/grpc.rs`), and becomes a typed value: a refusal by etcd is
//! [`Error::Server`] with a [`ServerCode`] (`NoLeader`, `Compacted`, `TooManyOps`, ...); a
//! broken connection is [`Error::Transport`] with the endpoint and gRPC's error as its
//! source; a call past its deadline is [`Error::DeadlineExceeded`]; input refused before
//! anything is sent is [`Error::InvalidArgument`] or [`Error::InvalidEndpoint`]. Ask an
//! error with [`Error::code`], [`Error::is_write_outcome_unknown`],
//! [`Error::is_unavailable`] and [`Error::endpoint`]; a write that may have been applied is
//! never "unavailable", so a generic retry cannot apply it twice.
//!
//! # Durations
//!
//! Every duration the API takes may be anything from one nanosecond to `Duration::MAX`;
//! `Duration::MAX`, or anything longer than about 24.8 days (2^31 - 1 ms, the longest
//! interval gRPC's C core takes), means "as long as possible", that is 24.8 days. Zero is
//! refused: by [`ClientBuilder::connect`] for a setting, by the call for a handle's
//! timeout. No duration reaches an `Instant` or gRPC unchecked.
//!
//! # Unknown outcomes
//!
//! A write whose outcome is unknown ([`Error::WriteOutcomeUnknown`]) may still be applied
//! well after the error came back, over values written since. `tests/unknown.rs` shows it:
//! blind puts sent to a follower just as the leader is paused come back unknown; over a
//! thousand linearizable reads a second find none of them for 3 s while newer values are
//! written; when the old leader comes back, all of them are applied over the newer values.
//! So reading the key does not tell whether the write will take effect.
//!
//! How long such a write can stay pending, from etcd's code (3.4 and later):
//! - a proposal held by the member the client sent it to, while that member has no leader,
//!   ends at etcd's request timeout (5 s plus two election timeouts) or when the client
//!   cancels; this client cancels every call it gives up;
//! - a proposal a follower has forwarded to its leader is a raft message, out of the
//!   client's reach: it waits in the sockets of a paused or slow leader, and a member
//!   without a leader holds a forwarded proposal with no deadline until it learns the new
//!   leader, then forwards it there (rafthttp's peer processes proposals under a context
//!   that ends only when the peer is removed);
//! - an entry a leader appended before it lost its quorum is overwritten by the next
//!   leader, unless that member wins the next election again, and then it is committed,
//!   however late.
//!
//! So no wait makes a blind put's outcome known. A transaction guarded by compares on the
//! key's mod revision, version or value is safe: etcd evaluates the compares when it
//! applies the transaction, so a late one that finds the key changed does nothing (the
//! same test shows it), and resending it as it is applies it at most once
//! (`tests/unknown.rs` also resends guarded increments through a leader cut off from its
//! peers and its return, and checks that no increment was applied twice).
//!
//! # Retries
//!
//! Every unary RPC has one retry class, written once in the code (`call/spec.rs`, as Go's
//! `retry.go` does) and here:
//! - **repeatable**: tried again on another member after any failure, an unknown outcome
//!   included, until the call's deadline. A second copy changes nothing a user would
//!   mind: a read; a lease granted twice leaves an orphan lease nobody knows, which
//!   expires by its TTL; a lease revoked twice is revoked (a resent revoke may then
//!   answer [`ServerCode::LeaseNotFound`]).
//! - **at most once**: tried again only when the request provably never reached a server
//!   (no connection, or refused for having no leader, or by a learner); otherwise it fails
//!   [`Error::WriteOutcomeUnknown`], so that nothing is applied twice.
//!
//! | RPC | class |
//! |---|---|
//! | KV `Range` (linearizable) | repeatable |
//! | KV `Range` (serializable) | repeatable |
//! | KV `Txn` that only reads | repeatable |
//! | KV `Txn` of serializable gets only (and coalesced serializable reads) | repeatable |
//! | KV `Put` | at most once |
//! | KV `DeleteRange` | at most once |
//! | KV `Txn` that writes | at most once |
//! | KV `Compact` | at most once |
//! | Lease `LeaseGrant` | repeatable |
//! | Lease `LeaseRevoke` | repeatable |
//! | Lease `LeaseTimeToLive` | repeatable |
//! | Lease `LeaseLeases` | repeatable |
//! | Lock `Lock` | at most once |
//! | Lock `Unlock` | at most once |
//! | Election `Campaign` | at most once |
//! | Election `Proclaim` | at most once |
//! | Election `Leader` | repeatable |
//! | Election `Resign` | at most once |
//! | Auth `Authenticate` | repeatable |
//! | Auth reads (`AuthStatus`, `UserGet`, `UserList`, `RoleGet`, `RoleList`) | repeatable |
//! | Auth changes (enable, disable, users, roles, permissions) | at most once |
//! | Cluster `MemberList` | repeatable |
//! | Cluster `MemberList` (serializable) | repeatable |
//! | Cluster changes (`MemberAdd`, `MemberRemove`, `MemberUpdate`, `MemberPromote`) | at most once |
//! | Maintenance reads (`Status`, `Hash`, `HashKV`, alarm list) | repeatable |
//! | Maintenance `Defragment` | repeatable |
//! | Maintenance alarm disarm | repeatable |
//! | Maintenance `MoveLeader` | at most once |
//! | Maintenance `Downgrade` | at most once |
//! | Maintenance `Snapshot` (until its first chunk is handed on) | repeatable |
//!
//! The streams: a watch moves to another member and resumes from the revision after the
//! last one it delivered (nothing lost or repeated); a keepalive renewal is repeatable.
//! The recipes resolve their own writes of unknown outcome with fence keys (below).
//!
//! For a transaction of your own, [`concurrency::txn_settled`] does the same: it resends a
//! transaction whose outcome is unknown only after it has made sure, with a fence key,
//! that the first try was not applied and never will be; if it was, it says which branch
//! ran:
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! use etcd_blocking::{concurrency, Compare, Txn, TxnOp};
//!
//! let kv = client.kv();
//! let settled = concurrency::txn_settled(
//!     &kv,
//!     Txn::new()
//!         .when([Compare::version("jobs/42").eq(0)])
//!         .and_then([TxnOp::put("jobs/42", "queued")]),
//! )?;
//! if settled.succeeded() {
//!     println!("queued once, in {} tries", settled.tries());
//! }
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! # Handles that end when dropped
//!
//! Some values stand for something held on the server, and give it up when dropped:
//! a [`KeepAlive`] stops renewing, a [`Watcher`] cancels its watch, a
//! [`concurrency::MutexGuard`] unlocks, a [`concurrency::Leadership`] resigns, the last
//! clone of a [`concurrency::Session`] revokes its lease. All are `#[must_use]`, so a
//! value dropped on the line that made it is a warning:
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! # fn f(client: etcd_blocking::Client) -> etcd_blocking::Result<()> {
//! client.lease().keep_alive(1)?; // the lease would stop being renewed here
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! # fn f(session: etcd_blocking::concurrency::Session) -> etcd_blocking::Result<()> {
//! use std::time::Duration;
//! etcd_blocking::concurrency::Mutex::new(&session, "m")?.lock(Duration::from_secs(1))?;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! # fn f(session: etcd_blocking::concurrency::Session) -> etcd_blocking::Result<()> {
//! use std::time::Duration;
//! etcd_blocking::concurrency::Election::new(&session, "e")?.campaign("v", Duration::from_secs(1))?;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! # fn f(client: etcd_blocking::Client) -> etcd_blocking::Result<()> {
//! client.watch().watch("k")?;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! # fn f(client: etcd_blocking::Client) -> etcd_blocking::Result<()> {
//! etcd_blocking::concurrency::Session::new(&client, std::time::Duration::from_secs(5))?;
//! # Ok(()) }
//! ```
//!
//! The same lines compile once the value is kept (`let _guard = ...;`):
//!
//! ```no_run
//! #![deny(unused_must_use)]
//! # fn f(client: etcd_blocking::Client) -> etcd_blocking::Result<()> {
//! use std::time::Duration;
//! use etcd_blocking::concurrency::{Election, Mutex, Session};
//! let _kept = client.lease().keep_alive(1)?;
//! let _watcher = client.watch().watch("k")?;
//! let session = Session::new(&client, Duration::from_secs(5))?;
//! let _guard = Mutex::new(&session, "m")?.lock(Duration::from_secs(1))?;
//! let _leading = Election::new(&session, "e")?.campaign("v", Duration::from_secs(1))?;
//! # Ok(()) }
//! ```
//!
//! # Ending blocking calls from another thread
//!
//! Every call has a deadline. To end calls sooner, from another thread:
//! [`Client::close`] (through any clone) ends every blocked call of the client with
//! [`Error::Closed`], a waiting lock or campaign included; a [`concurrency::Cancel`]
//! handle ends just the calls that wait with it
//! ([`concurrency::Mutex::lock_or_cancel`], [`concurrency::Election::campaign_or_cancel`])
//! with [`Error::Canceled`]. The receivers this crate hands out (`done()`,
//! `receiver()`, `renewals()`) are crossbeam channels, re-exported as [`channel`], so a
//! thread can wait on several at once with [`channel::select!`].
//!
//! # Logging
//!
//! The crate logs through the [`log`](https://docs.rs/log) facade and prints nothing by
//! itself: install a logger (`env_logger`, `simplelog`, ...) to see it, with
//! `RUST_LOG=etcd_blocking=debug` under `env_logger`. What goes at which level:
//! - `error`: a background thread panicked (it is restarted, up to 5 times in a row);
//! - `warn`: what a user must know: a kept lease lost (no renewal within its TTL), a lock
//!   not released, a leadership not resigned or a lease not revoked on drop, a queue key
//!   left by a write that was applied late, an STM commit it could not resolve, threads
//!   still running after close;
//! - `info`: failover of the streams (a watch or keepalive stream given up, and why), and
//!   the endpoint table replaced from the member list;
//! - `debug`: endpoint health changes, every retry and why, streams not opened, writes of
//!   unknown outcome being settled.
//!
//! Nothing secret is logged: no value, no password, no token.
//!
//! # Coalesced reads
//!
//! gRPC's C core costs this client tens of microseconds of CPU per call, whatever the call
//! does (`why.md` beside the comparison's results), so many threads reading at once pay
//! mostly for calls. By default
//! ([`ClientBuilder::coalesce_reads`]), while two reads of the same kind (linearizable,
//! or serializable) are in flight, the reads of that kind that other threads make queue,
//! and when one returns they go together as one read-only transaction (at most 128 reads and 1 MiB of
//! requests; fewer if the cluster's `--max-txn-ops` is lower), each thread getting its
//! own [`GetResponse`]. A lone reader never waits for a batch.
//!
//! What does not change: a read is answered by a call sent after it was made, so it sees
//! every write acknowledged before it began (linearizable reads) and never goes back in
//! time (serializable reads are held to the revision floor, batches too); a read that
//! fails, fails with its own error (a batch that fails hands each of its reads back to be
//! sent alone, within its own deadline). What does: reads of one batch are answered at
//! one revision, by one member. Reads at a given revision
//! ([`GetOptions::revision`]) and reads inside a transaction are never coalesced.
//! [`Client::coalesced_reads`] says how many batches were sent and how many reads they
//! carried.
//!
//! Writes can be coalesced too, opted in ([`ClientBuilder::coalesce_writes`]): puts and
//! deletes of one key from many threads go as one transaction, one raft entry. What
//! changes: the writes of a batch share a revision, and when a batch's outcome is unknown
//! every write in it is [`Error::WriteOutcomeUnknown`]. A batch never writes a key twice;
//! one the server refuses was applied nowhere, and its writes are sent alone, each for
//! its own answer. [`Client::coalesced_writes`] counts them.
//!
//! # Watches
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! use etcd_blocking::WatchOptions;
//!
//! let watcher = client.watch().watch_with("app/", WatchOptions::new().prefix().prev_kv())?;
//! for response in watcher.iter() {
//!     for event in response?.events() {
//!         println!("{:?} {:?} at {}", event.kind(), event.kv().key_str(), event.revision());
//!     }
//! }
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! Starting a watch does not wait for etcd: the create is queued to the hub thread, which
//! pipelines creates on its stream (each with an ID chosen by the client), so a thousand
//! watches cost no thousand round trips; [`Watcher::created_revision`] waits for the
//! creation. Watchers that start from now with the same range, filters and flags share
//! one server watch (etcd's gRPC proxy coalesces its clients' watchers the same way): etcd
//! sends each event once, not once per watcher, and the hub copies it to each; a watcher
//! that joins such a watch late is created at the revision the watch has delivered
//! everything up to. Events after that revision are delivered in order, each revision's
//! events in one response. The hub hands every response to its watcher's channel without waiting
//! (the channel's length bounds it, and memory is taken as responses arrive): a consumer
//! that falls [`WatchOptions::buffer`] responses behind ends with [`Error::WatchLagged`],
//! carrying the revision to resume from, and the other watches go on. When the stream
//! ends, or the balancer finds its member hung, cut off, leaderless or gone (the same news
//! that moves unary calls), the hub opens a stream on a healthy member and creates every
//! watch again from the revision after the last one it delivered; events at or below it
//! are dropped, and fragmented responses are put together before delivery. A resume into
//! compacted history ends the watch with [`Error::WatchCompacted`].
//!
//! The hub does not wait for the balancer's next probe to find a member that hung under
//! its stream. Every 25 ms while watches are open, it compares the highest revision the
//! stream has shown with the highest the client has seen on any call. When the stream
//! stays behind for 25 ms, or the leader changes, or a call on the stream's member stalls
//! while it leads, the hub asks the member for progress. A member answers that from its
//! own store, with no raft round trip. If the member sends nothing for a quarter of the
//! probe timeout (100 ms by default; 25 ms when a call has stalled on it), the hub
//! reports the endpoint suspect and moves the stream. A wrong guess costs one move and loses nothing. A watch whose member is hung
//! while the client makes no calls at all is moved by the probes.
//!
//! # Leases
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! use std::time::Duration;
//! use etcd_blocking::PutOptions;
//!
//! let lease = client.lease();
//! let id = lease.grant(Duration::from_secs(2))?.id();
//! client.kv().put_with("service/me", "10.0.0.7", PutOptions::new().lease(id))?;
//! let kept = lease.keep_alive(id)?.revoke_on_drop(true);
//! // ... while the service runs; `kept.done()` disconnects if the lease is lost.
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! [`Lease::keep_alive`] renews the lease once on the caller's thread (an unknown lease
//! fails there, typed), then hands it to the keeper thread, which renews every kept lease
//! a third of its TTL after its last renewal (up to 250 ms sooner, a twelfth of the TTL at
//! most, so that renewals due close together go out as one batch), over one stream on a
//! healthy member. The
//! keeper moves that stream at once when it ends (etcd ends the whole stream on any renew
//! error but "not found", such as "not a primary lessor" from a deposed leader), when the
//! balancer finds its member unhealthy, or when a renewal goes unanswered for a quarter of
//! the probe timeout, and renews every lease on the new stream at once. A lease whose
//! renewal answers TTL 0 ends [`KeepAliveStatus::Expired`] alone; one for which no renewal
//! has landed before the TTL of the last one ran out ends [`KeepAliveStatus::Lost`] with
//! the last error: the keepalive never stops silently. Renewals go to each handle's
//! bounded channel without waiting; a slow reader misses some.
//!
//! # Locks and sessions
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! use std::time::Duration;
//! use etcd_blocking::concurrency::{Mutex, Session};
//! use etcd_blocking::{Txn, TxnOp};
//!
//! let session = Session::new(&client, Duration::from_secs(10))?;
//! let guard = Mutex::new(&session, "jobs/lock")?.lock(Duration::from_secs(30))?;
//! // Only if this session still holds the lock:
//! let fenced = Txn::new().when([guard.fence()]).and_then([TxnOp::put("jobs/last", "me")]);
//! let wrote = client.kv().txn(fenced)?.succeeded();
//! guard.unlock()?;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! [`concurrency::Session`] is a lease and its keepalive; [`concurrency::Mutex`] queues
//! each lock attempt as a key with the session's lease, in create-revision order, as the
//! Go client's `concurrency` package does (and interoperates with it); a waiter watches
//! the key just before its own, so a release wakes one waiter. An attempt whose put comes
//! back of unknown outcome is fenced off rather than sent again (as the STM's commits are,
//! below), so a copy that etcd applies late can never put back a key its attempt had
//! deleted, under a lease still alive. A lock waited for past its
//! deadline ends with [`Error::WaitTimeout`], a session lost meanwhile with
//! [`Error::SessionLost`]. A holder that may have lost its session (a partition longer
//! than the TTL) can no longer be sure it holds the lock: it writes through
//! [`concurrency::MutexGuard::fence`], which etcd checks when it applies the write.
//! [`concurrency::Election`] stands candidates in the same kind of queue, a key per
//! campaign (so campaigns that share a session contend, as lock attempts do; Go's
//! campaigns on one session share a key and all lead at once):
//! [`concurrency::Election::campaign`] waits to lead (with a deadline),
//! [`concurrency::Leadership::proclaim`] is fenced to the leader (a leader whose session
//! went gets [`Error::NotLeader`]), and [`concurrency::Election::observe`] follows every
//! leader and value in order through one watch, on the caller's thread.
//!
//! # Software transactional memory
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! use etcd_blocking::concurrency::Stm;
//!
//! Stm::new(&client).run(|tx| {
//!     let n: u64 = tx.get("counter")?.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
//!     tx.put("counter", (n + 1).to_string());
//!     Ok::<_, etcd_blocking::Error>(())
//! })?;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! [`concurrency::Stm::run`] runs a closure of reads and writes and commits it as one
//! transaction, guarded as the [`concurrency::Isolation`] level says (the Go client's four),
//! and runs it again when another writer got there first. Unlike the Go client's, it
//! resolves a commit of unknown outcome itself: every commit that writes also requires
//! that a fence key of its own is absent, and writes it; after an unknown outcome the STM
//! writes that fence itself, if it is still absent. Either it finds the commit's fence (the
//! commit was applied) or the commit can never be applied, however late it arrives, and the
//! closure runs again. Nothing is applied twice, at any isolation level.
//!
//! # Cluster membership
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! let cluster = client.cluster();
//! for member in cluster.member_list()?.members {
//!     println!("{:x} {} learner: {}", member.id, member.name, member.is_learner);
//! }
//! // Add a learner, start it (with --initial-cluster-state=existing), promote it later.
//! let added = cluster.member_add_learner(["http://10.0.0.9:2380"])?;
//! # let _ = added;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! [`Cluster`] lists members (linearizable by default; [`Cluster::member_list_serializable`]
//! answers from the member asked), adds voters and learners, removes, updates peer URLs
//! and promotes, with peer URLs checked before anything is sent; every change is sent at
//! most once. A learner serves only `Status` and serializable reads: the client takes its
//! refusal of anything else as "not this member" and sends the call elsewhere, and
//! auto-sync leaves learners out of the endpoints. With auto-sync on, the endpoints follow
//! a change made through this client at once, from the members its answer lists.
//!
//! # Maintenance
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! let maintenance = client.maintenance();
//! let status = maintenance.status("10.0.0.1:2379")?; // that member, not the balancer's pick
//! println!("{} leads: {}, {} bytes", status.version, status.is_leader(), status.db_size);
//! maintenance.defragment("10.0.0.1:2379")?;
//! let info = maintenance.snapshot_to_file("10.0.0.1:2379", "backup.db")?; // verified
//! # let _ = info;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! [`Maintenance`] sends the calls that concern one member (status, defragment, hash,
//! hash_kv, snapshot) to the endpoint named, which may be one the balancer does not use (a
//! learner, a member cut off from its quorum). [`Status`] has every field the member's
//! version has, and `None` for those it has not. Alarms ([`Maintenance::alarms`],
//! [`Maintenance::alarm_disarm_all`]) and downgrades (etcd 3.6+; [`Error::NotSupported`]
//! before) go through the balancer; [`Maintenance::move_leader`] finds the leader itself
//! and refuses a target that is not a voter. A snapshot streams to any `io::Write` with an
//! optional progress callback, and is verified against the SHA-256 the member sends last:
//! a stream that breaks or a digest that does not match fails
//! [`Error::SnapshotInvalid`]. [`Maintenance::snapshot_to_file`] writes a `.part`, syncs
//! it and renames it only once verified, so a failed snapshot never leaves a file that
//! looks complete. The launcher starts a cluster from such a file
//! (`testing::ClusterBuilder::restore_from`, feature `testing`).
//!
//! # Namespaces
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! let tenant = client.namespaced("tenants/a/");
//! tenant.kv().put("config", "x")?; // the cluster has tenants/a/config
//! let all = tenant.kv().get_with("", etcd_blocking::GetOptions::new().prefix())?; // tenants/a/ only
//! # let _ = all;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! [`Client::namespaced`] gives a view of the client whose keys live under a prefix, with
//! the Go client's `namespace` semantics, for the KV (transactions with their compares
//! and nested transactions), watches, a lease's keys, etcd's lock and election services
//! and the recipes built on them. Keys are prefixed on the way in and stripped on the way
//! out; a range to the end of the keyspace, or over every key, ends at the end of the
//! prefix; nothing outside the prefix is read, written or delivered. Views share the
//! client's connections, threads and watch stream: a watch of a view and one of the
//! client over the same range share one server watch.
//!
//! # Mirrors: a live local copy of a prefix
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! use std::time::Duration;
//!
//! let config = client.mirror("config/")?; // listed, then followed
//! let workers = config.get("config/workers"); // local, no call
//! let put = client.kv().put("config/workers", "8")?;
//! let now = config.wait_for_revision(put.header().revision(), Duration::from_secs(5))?;
//! # let _ = (workers, now);
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! [`Client::mirror`] lists a prefix at one revision, a page at a time
//! ([`MirrorOptions::page_size`]), then follows it with a watch from the revision after,
//! on a thread of its own, through every fault the watch survives. When the watch is
//! compacted it lists again and applies the difference, deletions included. Reads
//! ([`Mirror::get`], [`Mirror::len`], [`Mirror::revision`], [`Mirror::snapshot`]) are
//! local and never see part of a transaction: the copy moves by whole revisions. A
//! [`MirrorSnapshot`] is an immutable view at one revision, cheap to take and to hold
//! (while one is held, the next change copies the map once). [`Mirror::wait_for_revision`]
//! gives read-your-writes after a put through any client; [`Mirror::changes`] a bounded
//! stream of batches (each the events of one revision, or a reset after a new listing)
//! from a starting snapshot, a consumer that falls behind being dropped with
//! [`Error::WatchLagged`]; [`Mirror::wait_until`] a condition on the copy.
//!
//! A decoder ([`MirrorOptions::decode`]) makes the copy keep your type instead of the
//! key-value, parsed once per change rather than on every read; a key whose value it
//! refuses is left out and listed, with the reason, by [`MirrorSnapshot::rejected`]:
//!
//! ```no_run
//! # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
//! use etcd_blocking::{KeyValue, MirrorOptions};
//!
//! type Failure = Box<dyn std::error::Error + Send + Sync>;
//! let number = |kv: &KeyValue| -> Result<u64, Failure> { Ok(kv.value_str()?.parse()?) };
//! let limits = client.mirror_with("limits/", MirrorOptions::new().decode(number))?;
//! let per_user: Option<u64> = limits.get("limits/per_user");
//! for (key, why) in limits.snapshot().rejected() {
//!     eprintln!("{}: {why}", String::from_utf8_lossy(key));
//! }
//! # let _ = per_user;
//! # Ok::<(), etcd_blocking::Error>(())
//! ```
//!
//! # The model, and where the internals are
//!
//! Every call blocks its thread until etcd answers or its deadline passes; nothing runs on
//! an async runtime. A [`Client`] keeps one connection per endpoint and a balancer thread
//! that probes every member (a linearizable read that needs a leader and a quorum, so
//! hung and cut-off members are found, not only dead ones) and learns who leads. A call
//! goes to the leader when it is known and healthy (writes, linearizable reads), else to
//! a healthy member; when its member fails or the leader moves, it is retried elsewhere
//! if its retry class allows (see "Retries"), or ends [`Error::WriteOutcomeUnknown`].
//! Watches and kept leases each share one stream, on a thread of their own, that moves
//! to a healthy member when its member fails or falls silent, resuming where it left
//! off. [`Client::close`] stops and joins every thread the client started.
//!
//! How it is built (the layers, the threads, how a call and an event flow through them,
//! and a glossary) is in `ARCHITECTURE.md`, at the root of the crate's repository.
//!
//! # Testing against real etcd
//!
//! With the cargo feature `testing`, `testing::Cluster` starts real etcd clusters on
//! loopback for tests, benchmarks and examples, with per-member faults (kill, graceful stop,
//! pause, resume, restart, cut off from its peers), members added and removed, and
//! clusters started from a snapshot. This crate's own tests use it. It is
//! outside the crate's semver promises: it changes with the tests' needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod balancer;
mod call;
mod client;
mod cluster;
pub mod concurrency;
mod error;
#[cfg(test)]
mod fake;
mod kv;
mod lease;
mod maintenance;
mod mirror;
mod park;
mod proto;
mod secret;
mod services;
mod threads;
mod time;
mod transport;
mod types;
mod watch;

/// The channels this crate's receivers are (`done()`, `receiver()`, `renewals()`), with
/// [`select!`](channel::select) to wait on several at once: crossbeam-channel, re-exported
/// so that the version always matches.
pub use crossbeam_channel as channel;

pub use auth::{Access, Auth, AuthStatus, Permission};
pub use balancer::{EndpointHealth, Health};
pub use client::{Client, ClientBuilder};
pub use cluster::{Cluster, Member, MemberAdded, Members};
pub use error::{EndpointFailure, Error, Result, ServerCode, ServerError, StatusCode};
pub use kv::{
    prefix_end, Coalesced, CompactOptions, CompactResponse, Compare, CompareNumber, CompareValue,
    DeleteOptions, DeleteResponse, GetOptions, GetResponse, Kv, PutOptions, PutResponse, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
pub use lease::{
    KeepAlive, KeepAliveStatus, Lease, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseRenewal, LeaseRevokeResponse, LeaseTimeToLiveResponse,
};
pub use maintenance::{Alarm, AlarmKind, DowngradeInfo, HashKv, Maintenance, SnapshotInfo, Status};
pub use mirror::{Mirror, MirrorChange, MirrorChanges, MirrorOptions, MirrorSnapshot};
pub use services::{ElectionService, LockService, ServiceLeader, ServiceLock};
pub use transport::Tls;
pub use types::{KeyValue, ResponseHeader};
pub use watch::{Event, EventKind, Watch, WatchOptions, WatchResponse, Watcher};

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
