//! The one error type of this crate: what can go wrong, and what an error means.
//!
//! Nothing but `grpc.rs` looks at status messages: a failed call is read once, at that
//! edge, and every later decision (retry, report) matches on the typed result.

mod code;
mod grpc;
mod server;

pub use code::{ServerCode, StatusCode};
pub use server::{EndpointFailure, ServerError};

pub(crate) use grpc::{closed_early_hint, connect_failure, ConnectFailure};

use std::time::Duration;

use crate::time::Human;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call to etcd.
///
/// Ask an error what it means with [`Error::code`], [`Error::is_unavailable`],
/// [`Error::is_write_outcome_unknown`] and [`Error::endpoint`] rather than reading its text.
///
/// A retry loop of its own should ask [`Error::is_write_outcome_unknown`] first: such a
/// write may have been applied, and neither [`Error::is_unavailable`] nor
/// [`Error::is_deadline_exceeded`] is true for it, so that a generic "retry if unavailable"
/// cannot apply it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The etcd server refused or failed the request and said why.
    #[error(transparent)]
    Server(Box<ServerError>),

    /// The request or a response did not fit the gRPC message size limit of the client or
    /// the server (`detail` is gRPC's own account, which names both sizes).
    #[error("message to or from {endpoint} exceeds the gRPC size limit: {detail}")]
    MessageTooLarge {
        /// The endpoint the call went to.
        endpoint: String,
        /// gRPC's description, with the message size and the limit.
        detail: String,
    },

    /// A call found no connection to its endpoint: the request was never sent. (Not to be
    /// confused with [`Error::ConnectFailed`], which only [`ClientBuilder::connect`]
    /// returns.)
    ///
    /// [`ClientBuilder::connect`]: crate::ClientBuilder::connect
    #[error("could not reach {endpoint}")]
    Unreachable {
        /// The endpoint the call was for.
        endpoint: String,
        /// What gRPC reported.
        #[source]
        source: Box<grpcio::Error>,
    },

    /// The connection to an endpoint broke during the call, or gRPC failed the call locally.
    #[error("transport to {endpoint} failed")]
    Transport {
        /// The endpoint the call went to.
        endpoint: String,
        /// What gRPC reported.
        #[source]
        source: Box<grpcio::Error>,
    },

    /// The call did not complete within its deadline.
    #[error("no answer from {endpoint} within the deadline of {}", Human(*.timeout))]
    DeadlineExceeded {
        /// The endpoint the call went to.
        endpoint: String,
        /// The deadline the call had.
        timeout: Duration,
    },

    /// [`ClientBuilder::connect`] could connect to no endpoint within the dial timeout;
    /// each endpoint is listed with what stopped it (refused, no such host, timed out).
    ///
    /// [`ClientBuilder::connect`]: crate::ClientBuilder::connect
    #[error(
        "could not connect to any endpoint within {}: {}",
        Human(*.timeout),
        .endpoints.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    ConnectFailed {
        /// Every endpoint that was tried, with its cause.
        endpoints: Vec<EndpointFailure>,
        /// The dial timeout.
        timeout: Duration,
    },

    /// [`ClientBuilder::connect`] gave up before the dial timeout because every endpoint
    /// failed the connection's handshake: a certificate not trusted, expired or naming
    /// another host, a client certificate missing where the member asks for one, or TLS
    /// spoken to a plaintext member or the reverse. Each endpoint is listed with what gRPC
    /// said; waiting would not mend it, so the client does not wait.
    ///
    /// [`ClientBuilder::connect`]: crate::ClientBuilder::connect
    #[error(
        "every endpoint refused the connection in its handshake (TLS or plaintext): {}",
        .endpoints.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    HandshakeFailed {
        /// Every endpoint, with gRPC's account of its failed handshake.
        endpoints: Vec<EndpointFailure>,
    },

    /// The member does not know the call: its etcd is older than the API that has it
    /// (`AuthStatus` came with etcd 3.5, for one). `detail` is gRPC's account.
    #[error("{endpoint} does not support this call (its etcd is older than the call): {detail}")]
    NotSupported {
        /// The endpoint the call went to.
        endpoint: String,
        /// gRPC's description.
        detail: String,
    },

    /// A member answered something this client cannot use: a field etcd always sets was
    /// missing.
    #[error("invalid response: {reason}")]
    InvalidResponse {
        /// What was wrong with it.
        reason: String,
    },

    /// A snapshot stream broke before its end, or what came does not match the SHA-256
    /// digest the member sent last: nothing of it may be used.
    #[error("the snapshot from {endpoint} is not valid: {reason}")]
    SnapshotInvalid {
        /// The member that sent it.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },

    /// Reading or writing a file (or another `io::Write`) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },

    /// An endpoint string could not be understood.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An argument or a setting was refused before anything was sent.
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// Which argument or setting.
        argument: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A key or value asked for as text is not UTF-8.
    #[error("the {field} is not UTF-8 text")]
    NotUtf8 {
        /// Which field: `key` or `value`.
        field: &'static str,
        /// Where the text stops being UTF-8.
        #[source]
        source: std::str::Utf8Error,
    },

    /// No endpoint was healthy before the call's deadline; each is listed with its last
    /// failure.
    #[error(
        "no healthy endpoint within {}: {}",
        Human(*.timeout),
        .endpoints.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NoHealthyEndpoint {
        /// The call's deadline.
        timeout: Duration,
        /// Every endpoint, with why it was not used.
        endpoints: Vec<EndpointFailure>,
    },

    /// A write failed in a way that leaves its outcome unknown: it may or may not have been
    /// applied, now or later. It was not retried, since a retry could apply it twice.
    ///
    /// What a caller can conclude: a transaction guarded by compares (on a key's mod
    /// revision, version or value) is safe to resend as it is, since etcd evaluates its
    /// compares when it applies it, so at most one of the two takes effect. A blind put or
    /// delete is not, and reading the key does not tell: a write forwarded by a follower to
    /// a leader that went away can stay pending, invisible to every read, for seconds or
    /// longer (no timeout of etcd's bounds it), and still be applied later, over newer
    /// values (see the crate docs, "Unknown outcomes").
    #[error("the write's outcome on {endpoint} is unknown: it may or may not have been applied")]
    WriteOutcomeUnknown {
        /// The endpoint the write went to.
        endpoint: String,
        /// The failure.
        #[source]
        source: Box<Error>,
    },

    /// The batch a coalesced write went in failed so ([`ClientBuilder::coalesce_writes`]):
    /// the source of [`Error::WriteOutcomeUnknown`] for every write of a batch whose
    /// outcome is unknown, but the one whose thread sent it, which has the failure itself.
    ///
    /// [`ClientBuilder::coalesce_writes`]: crate::ClientBuilder::coalesce_writes
    #[error("its batch of {requests} writes failed: {message}")]
    BatchFailed {
        /// How many writes the batch held.
        requests: usize,
        /// The batch's failure.
        message: String,
    },

    /// The client gave a call up while it waited on `endpoint`: the endpoint was found
    /// unhealthy (hung, or cut off from its quorum), or the leader changed or was lost
    /// while the call waited on a follower that may have forwarded it to the old leader.
    /// A read given up is retried elsewhere and does not return this; a write comes back as
    /// [`Error::WriteOutcomeUnknown`] with this as its source. There is nothing to act on
    /// but that.
    #[error("the call on {endpoint} was given up: {reason}")]
    Abandoned {
        /// The endpoint the call waited on.
        endpoint: String,
        /// Why the client gave up on it.
        reason: String,
    },

    /// A serializable read was answered only by members behind a revision this client had
    /// already seen, until the deadline: returning it would have gone back in time. A
    /// linearizable read (the default) never fails this way; a later try may find the
    /// member caught up.
    #[error("{endpoint} answered at revision {revision}, behind the revision {seen} already seen")]
    StaleRead {
        /// The endpoint that answered last.
        endpoint: String,
        /// The revision it answered at.
        revision: i64,
        /// The highest revision the client had seen.
        seen: i64,
    },

    /// A watch asked for history that compaction has removed: the start revision given,
    /// or the revision a watch moved to another member resumed from. Watch again from
    /// `compact_revision` (or read the current state first) to go on.
    #[error(
        "the watch's start revision is compacted (history begins at revision {compact_revision})"
    )]
    WatchCompacted {
        /// The oldest revision still kept.
        compact_revision: i64,
    },

    /// A watcher's consumer fell `buffer` responses behind, so the watch was ended rather
    /// than slow the others. Every event before revision `resume_from` was delivered;
    /// watch again from it to lose nothing.
    #[error("the watcher fell {buffer} responses behind; resume from revision {resume_from}")]
    WatchLagged {
        /// The revision to watch again from.
        resume_from: i64,
        /// The watcher's buffer, in responses.
        buffer: usize,
    },

    /// The server cancelled a watch and said why (such as a permission lost).
    #[error("the server cancelled the watch: {reason}")]
    WatchCanceled {
        /// The server's reason.
        reason: String,
    },

    /// A recipe gave up waiting at its deadline: a lock another session holds, an
    /// election another candidate leads.
    #[error("gave up waiting for {what} after {}", Human(*.timeout))]
    WaitTimeout {
        /// What it waited for.
        what: String,
        /// How long it waited.
        timeout: Duration,
    },

    /// A blocking recipe call (a lock, a campaign) was cancelled through its
    /// [`Cancel`](crate::concurrency::Cancel) handle, from another thread. Nothing is left
    /// held: the attempt left its queue.
    #[error("cancelled while waiting for {what}")]
    Canceled {
        /// What it waited for.
        what: String,
    },

    /// An election's leadership is not this candidate's (any more): it resigned, or its
    /// session's lease went and another candidate leads.
    #[error("not the leader of the election {election}")]
    NotLeader {
        /// The election's name.
        election: String,
    },

    /// The session's lease is gone (expired, revoked, or lost with no quorum in reach):
    /// nothing it held is held any more.
    #[error("the session's lease {lease:x} is gone: {reason}")]
    SessionLost {
        /// The session's lease.
        lease: i64,
        /// How it went.
        reason: String,
    },

    /// The client was closed.
    #[error("the client is closed")]
    Closed,

    /// Closing the client gave up waiting for its threads or its calls in flight.
    #[error("gave up after {} waiting for the client's threads to stop", Human(*.waited))]
    CloseTimedOut {
        /// How long closing waited.
        waited: Duration,
    },

    /// The operating system refused a thread the client needs (the balancer's worker).
    #[error("could not start the {thread} thread")]
    ThreadSpawn {
        /// Which thread.
        thread: &'static str,
        /// Why the system refused it.
        #[source]
        source: std::io::Error,
    },

    /// A background thread of the client panicked too often in a row and was not
    /// restarted: the client cannot keep its guarantees without it, so every call fails
    /// with this. Close the client and connect a new one.
    #[error("the client's {thread} thread died: {message}")]
    BackgroundThread {
        /// Which thread.
        thread: &'static str,
        /// Its last panic's message.
        message: String,
    },
}

impl Error {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<ServerCode> {
        match self {
            Error::Server(e) => Some(e.code),
            _ => None,
        }
    }

    /// The server's error, if the server answered with one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }

    /// The endpoint the failed call went to, if it got as far as choosing one.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Error::Server(e) => Some(&e.endpoint),
            Error::MessageTooLarge { endpoint, .. }
            | Error::NotSupported { endpoint, .. }
            | Error::Unreachable { endpoint, .. }
            | Error::WriteOutcomeUnknown { endpoint, .. }
            | Error::Abandoned { endpoint, .. }
            | Error::StaleRead { endpoint, .. }
            | Error::SnapshotInvalid { endpoint, .. }
            | Error::Transport { endpoint, .. }
            | Error::DeadlineExceeded { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    /// True when the endpoint could not serve the request for now (no connection, no leader,
    /// a server stopping or timing out internally), and the request did nothing: another
    /// endpoint or a later try may succeed. Never true for [`Error::WriteOutcomeUnknown`],
    /// which a retry could apply twice.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Server(e) => e.status == StatusCode::Unavailable,
            Error::Transport { source, .. } => match source.as_ref() {
                grpcio::Error::RpcFailure(s) => s.code() == grpcio::RpcStatusCode::UNAVAILABLE,
                _ => true,
            },
            Error::ConnectFailed { .. }
            | Error::Unreachable { .. }
            | Error::NoHealthyEndpoint { .. }
            | Error::Abandoned { .. } => true,
            _ => false,
        }
    }

    /// True when a read or a refused request ran out of time. A write that ran out of time
    /// is [`Error::WriteOutcomeUnknown`] instead, for which this is false; its source says
    /// whether the deadline was why.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self, Error::DeadlineExceeded { .. })
    }

    /// True for a write that may or may not have been applied
    /// ([`Error::WriteOutcomeUnknown`]): do not resend it blindly.
    pub fn is_write_outcome_unknown(&self) -> bool {
        matches!(self, Error::WriteOutcomeUnknown { .. })
    }

    /// True when the request was too large, for the server's `--max-request-bytes` or for a
    /// gRPC message size limit.
    pub fn is_request_too_large(&self) -> bool {
        matches!(self, Error::MessageTooLarge { .. })
            || self.code() == Some(ServerCode::RequestTooLarge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: grpcio::RpcStatusCode, message: &str) -> grpcio::Error {
        grpcio::Error::RpcFailure(grpcio::RpcStatus::with_message(code, message.to_owned()))
    }

    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<Error>() <= 56,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn etcd_messages_become_typed_codes() {
        let cases = [
            (
                grpcio::RpcStatusCode::UNAVAILABLE,
                "etcdserver: no leader",
                ServerCode::NoLeader,
            ),
            (
                grpcio::RpcStatusCode::OUT_OF_RANGE,
                "etcdserver: mvcc: required revision has been compacted",
                ServerCode::Compacted,
            ),
            (
                grpcio::RpcStatusCode::INVALID_ARGUMENT,
                "etcdserver: too many operations in txn request",
                ServerCode::TooManyOps,
            ),
            (
                grpcio::RpcStatusCode::UNAUTHENTICATED,
                "etcdserver: invalid auth token",
                ServerCode::InvalidAuthToken,
            ),
            (
                grpcio::RpcStatusCode::UNAVAILABLE,
                "etcdserver: something new",
                ServerCode::Unrecognized,
            ),
        ];
        for (status, message, code) in cases {
            let e = Error::from_grpc(failure(status, message), "a:1", Duration::from_secs(1));
            assert_eq!(e.code(), Some(code), "{message}");
            assert_eq!(e.endpoint(), Some("a:1"));
        }
    }

    #[test]
    fn unavailable_codes_are_unavailable() {
        let e = Error::from_grpc(
            failure(
                grpcio::RpcStatusCode::UNAVAILABLE,
                "etcdserver: leader changed",
            ),
            "a:1",
            Duration::from_secs(1),
        );
        assert!(e.is_unavailable());
        let e = Error::from_grpc(
            failure(
                grpcio::RpcStatusCode::UNAVAILABLE,
                "failed to connect to all addresses",
            ),
            "a:1",
            Duration::from_secs(1),
        );
        assert!(matches!(e, Error::Unreachable { .. }) && e.is_unavailable());
        let e = Error::from_grpc(
            failure(grpcio::RpcStatusCode::UNAVAILABLE, "Socket closed"),
            "a:1",
            Duration::from_secs(1),
        );
        assert!(matches!(e, Error::Transport { .. }) && e.is_unavailable());
        let e = Error::from_grpc(
            failure(
                grpcio::RpcStatusCode::INVALID_ARGUMENT,
                "etcdserver: key is not provided",
            ),
            "a:1",
            Duration::from_secs(1),
        );
        assert!(!e.is_unavailable());
    }

    #[test]
    fn local_failures_keep_their_kind() {
        let e = Error::from_grpc(
            failure(
                grpcio::RpcStatusCode::DEADLINE_EXCEEDED,
                "Deadline Exceeded",
            ),
            "a:1",
            Duration::from_millis(5),
        );
        assert!(matches!(e, Error::DeadlineExceeded { timeout, .. } if timeout.as_millis() == 5));
        let e = Error::from_grpc(
            failure(
                grpcio::RpcStatusCode::RESOURCE_EXHAUSTED,
                "Sent message larger than max (3000000 vs. 2097152)",
            ),
            "a:1",
            Duration::from_secs(1),
        );
        assert!(e.is_request_too_large());
    }

    #[test]
    fn an_unknown_outcome_is_neither_unavailable_nor_timed_out() {
        for cause in [
            failure(
                grpcio::RpcStatusCode::UNAVAILABLE,
                "etcdserver: leader changed",
            ),
            failure(
                grpcio::RpcStatusCode::DEADLINE_EXCEEDED,
                "Deadline Exceeded",
            ),
        ] {
            let source = Error::from_grpc(cause, "a:1", Duration::from_secs(1));
            assert!(source.is_unavailable() || source.is_deadline_exceeded());
            let e = Error::WriteOutcomeUnknown {
                endpoint: "a:1".to_owned(),
                source: Box::new(source),
            };
            assert!(e.is_write_outcome_unknown());
            assert!(!e.is_unavailable() && !e.is_deadline_exceeded(), "{e:?}");
        }
    }

    #[test]
    fn durations_print_in_ms_or_s() {
        let e = Error::DeadlineExceeded {
            endpoint: "a:1".to_owned(),
            timeout: Duration::from_millis(400),
        };
        assert_eq!(
            e.to_string(),
            "no answer from a:1 within the deadline of 400 ms"
        );
        let e = Error::NoHealthyEndpoint {
            timeout: Duration::from_millis(1500),
            endpoints: vec![],
        };
        assert!(
            e.to_string()
                .starts_with("no healthy endpoint within 1.5 s"),
            "{e}"
        );
    }

    #[test]
    fn display_does_not_repeat_the_source() {
        let e = Error::from_grpc(
            failure(grpcio::RpcStatusCode::UNAVAILABLE, "connection refused"),
            "a:1",
            Duration::from_secs(1),
        );
        let text = e.to_string();
        assert_eq!(text, "transport to a:1 failed");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("connection refused")));
    }
}
