//! The one error type of this crate, and the edge where a gRPC status becomes a typed code.
//!
//! Nothing else in the crate looks at status messages: [`Error::from_grpc`] reads a failed
//! call once and every later decision (retry, report) matches on the typed result.

use std::fmt;
use std::time::Duration;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call to etcd.
///
/// Ask an error what it means with [`Error::code`], [`Error::is_unavailable`] and
/// [`Error::endpoint`] rather than reading its text.
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

    /// The endpoint could not be reached: the request was never sent.
    #[error("could not reach {endpoint}")]
    Connection {
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
    #[error("no answer from {endpoint} within the deadline of {timeout:?}")]
    DeadlineExceeded {
        /// The endpoint the call went to.
        endpoint: String,
        /// The deadline the call had.
        timeout: Duration,
    },

    /// No endpoint could be connected to within the dial timeout.
    #[error("could not connect to any of [{}] within {timeout:?}", .endpoints.join(", "))]
    Connect {
        /// Every endpoint that was tried.
        endpoints: Vec<String>,
        /// The dial timeout.
        timeout: Duration,
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

    /// No endpoint was healthy before the call's deadline; each is listed with its last
    /// failure.
    #[error(
        "no healthy endpoint within {timeout:?}: {}",
        .endpoints.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NoHealthyEndpoint {
        /// The call's deadline.
        timeout: Duration,
        /// Every endpoint, with why it was not used.
        endpoints: Vec<EndpointFailure>,
    },

    /// A write failed in a way that leaves its outcome unknown: it may or may not have been
    /// applied. It was not retried, since a retry could apply it twice; read the key to find
    /// out.
    #[error("the write's outcome on {endpoint} is unknown: it may or may not have been applied")]
    WriteOutcomeUnknown {
        /// The endpoint the write went to.
        endpoint: String,
        /// The failure.
        #[source]
        source: Box<Error>,
    },

    /// The endpoint was found unhealthy (hung, or cut off from its quorum) while the call
    /// waited on it.
    #[error("{endpoint} became unhealthy during the call: {reason}")]
    EndpointUnhealthy {
        /// The endpoint.
        endpoint: String,
        /// Why the balancer judged it unhealthy.
        reason: String,
    },

    /// The leader changed or was lost while the call waited on a member, which may have
    /// forwarded it to the old leader, where it would have waited out its deadline.
    #[error("the leader changed while the call waited on {endpoint}")]
    LeaderLost {
        /// The endpoint the call waited on.
        endpoint: String,
    },

    /// A serializable read was answered only by members behind a revision this client had
    /// already seen, until the deadline: returning it would have gone back in time.
    #[error("{endpoint} answered at revision {revision}, behind the revision {seen} already seen")]
    StaleRead {
        /// The endpoint that answered last.
        endpoint: String,
        /// The revision it answered at.
        revision: i64,
        /// The highest revision the client had seen.
        seen: i64,
    },

    /// The client was closed.
    #[error("the client is closed")]
    Closed,

    /// Closing the client gave up waiting for its threads: a call was still running.
    #[error("gave up after {waited:?} waiting for the client's threads to stop")]
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
            | Error::Connection { endpoint, .. }
            | Error::WriteOutcomeUnknown { endpoint, .. }
            | Error::EndpointUnhealthy { endpoint, .. }
            | Error::LeaderLost { endpoint }
            | Error::StaleRead { endpoint, .. }
            | Error::Transport { endpoint, .. }
            | Error::DeadlineExceeded { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    /// True when the endpoint could not serve the request for now (no connection, no leader,
    /// a server stopping or timing out internally): another endpoint or a later try may
    /// succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Server(e) => e.status == StatusCode::Unavailable,
            Error::Transport { source, .. } => match source.as_ref() {
                grpcio::Error::RpcFailure(s) => s.code() == grpcio::RpcStatusCode::UNAVAILABLE,
                _ => true,
            },
            Error::Connect { .. }
            | Error::Connection { .. }
            | Error::NoHealthyEndpoint { .. }
            | Error::EndpointUnhealthy { .. }
            | Error::LeaderLost { .. } => true,
            Error::WriteOutcomeUnknown { source, .. } => source.is_unavailable(),
            _ => false,
        }
    }

    /// True when a call ran out of time: its own deadline passed, or, for a write whose
    /// outcome is unknown, that was why.
    pub fn is_deadline_exceeded(&self) -> bool {
        match self {
            Error::DeadlineExceeded { .. } => true,
            Error::WriteOutcomeUnknown { source, .. } => source.is_deadline_exceeded(),
            _ => false,
        }
    }

    /// True when the request was too large, for the server's `--max-request-bytes` or for a
    /// gRPC message size limit.
    pub fn is_request_too_large(&self) -> bool {
        matches!(self, Error::MessageTooLarge { .. })
            || self.code() == Some(ServerCode::RequestTooLarge)
    }

    /// Turns a failed gRPC call into a typed error. This is the only place that reads a
    /// status message.
    pub(crate) fn from_grpc(error: grpcio::Error, endpoint: &str, timeout: Duration) -> Error {
        let status = match &error {
            grpcio::Error::RpcFailure(status) => status,
            _ => {
                return Error::Transport {
                    endpoint: endpoint.to_owned(),
                    source: Box::new(error),
                }
            }
        };
        let message = status.message();
        if let Some(code) = ServerCode::from_message(message) {
            return Error::Server(Box::new(ServerError {
                code,
                status: StatusCode::from_grpc(status.code()),
                message: message.to_owned(),
                endpoint: endpoint.to_owned(),
            }));
        }
        let code = status.code();
        if code == grpcio::RpcStatusCode::DEADLINE_EXCEEDED {
            return Error::DeadlineExceeded {
                endpoint: endpoint.to_owned(),
                timeout,
            };
        }
        if code == grpcio::RpcStatusCode::RESOURCE_EXHAUSTED && message.contains("larger than max")
        {
            return Error::MessageTooLarge {
                endpoint: endpoint.to_owned(),
                detail: message.to_owned(),
            };
        }
        if code == grpcio::RpcStatusCode::UNAVAILABLE && message.starts_with(NOT_CONNECTED) {
            return Error::Connection {
                endpoint: endpoint.to_owned(),
                source: Box::new(error),
            };
        }
        if message.starts_with(ETCD_PREFIX) {
            // A server error this client does not know yet: keep it typed as a server error.
            return Error::Server(Box::new(ServerError {
                code: ServerCode::Unrecognized,
                status: StatusCode::from_grpc(code),
                message: message.to_owned(),
                endpoint: endpoint.to_owned(),
            }));
        }
        Error::Transport {
            endpoint: endpoint.to_owned(),
            source: Box::new(error),
        }
    }
}

/// How gRPC's C core fails a call that found no connection to send it on (the channel could
/// not connect): such a call never left the client.
const NOT_CONNECTED: &str = "failed to connect to all addresses";

/// The prefix etcd puts on every error message of its own.
const ETCD_PREFIX: &str = "etcdserver: ";

/// An endpoint and why the client did not use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFailure {
    /// The endpoint.
    pub endpoint: String,
    /// Its last failure, as the balancer recorded it.
    pub reason: String,
}

impl fmt::Display for EndpointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.endpoint, self.reason)
    }
}

/// An error answered by an etcd server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    code: ServerCode,
    status: StatusCode,
    message: String,
    endpoint: String,
}

impl ServerError {
    /// What went wrong, as a typed code.
    pub fn code(&self) -> ServerCode {
        self.code
    }

    /// The gRPC status code the server sent with the error.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The server's message, as sent (for logs; match on [`ServerError::code`]).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The endpoint that answered.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            ServerCode::Unrecognized => write!(
                f,
                "etcd at {} refused the request: {} ({:?})",
                self.endpoint, self.message, self.status
            ),
            code => write!(f, "etcd at {} refused the request: {code}", self.endpoint),
        }
    }
}

impl std::error::Error for ServerError {}

macro_rules! server_codes {
    ($($(#[$doc:meta])* $name:ident => $message:literal,)*) => {
        /// The errors an etcd server answers with, one per message of etcd's `rpctypes`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ServerCode {
            $($(#[$doc])* $name,)*
            /// An etcd error this version of the client does not know; see
            /// [`ServerError::message`].
            Unrecognized,
        }

        impl ServerCode {
            /// The code for an etcd status message, if it is one etcd sends.
            fn from_message(message: &str) -> Option<ServerCode> {
                let text = message.strip_prefix(ETCD_PREFIX)?;
                match text {
                    $($message => Some(ServerCode::$name),)*
                    _ => None,
                }
            }

            /// What the code means, in etcd's own words.
            pub fn description(self) -> &'static str {
                match self {
                    $(ServerCode::$name => $message,)*
                    ServerCode::Unrecognized => "unrecognized etcd error",
                }
            }
        }
    };
}

server_codes! {
    /// The request has no key.
    KeyNotProvided => "key is not provided",
    /// The key does not exist (e.g. a put with `ignore_value` on a missing key).
    KeyNotFound => "key not found",
    /// A value was given together with `ignore_value`.
    ValueProvided => "value is provided",
    /// A lease was given together with `ignore_lease`.
    LeaseProvided => "lease is provided",
    /// A lease TTL of zero.
    TtlZero => "ttl is 0",
    /// The transaction has more operations than the server's `--max-txn-ops`.
    TooManyOps => "too many operations in txn request",
    /// The transaction writes one key twice.
    DuplicateKey => "duplicate key given in txn request",
    /// The requested revision has been compacted away.
    Compacted => "mvcc: required revision has been compacted",
    /// The requested revision is newer than the store's.
    FutureRevision => "mvcc: required revision is a future revision",
    /// The backend database is over its space quota.
    NoSpace => "mvcc: database space exceeded",
    /// The lease does not exist (expired or revoked).
    LeaseNotFound => "requested lease not found",
    /// A lease with that ID exists already.
    LeaseExists => "lease already exists",
    /// The lease TTL is larger than the server allows.
    LeaseTtlTooLarge => "too large lease TTL",
    /// A member with that ID exists already.
    MemberExists => "member ID already exist",
    /// A member with those peer URLs exists already.
    PeerUrlExists => "Peer URLs already exists",
    /// Too few members are started for a membership change.
    MemberNotEnoughStarted => "re-configuration failed due to not enough started members",
    /// The member URLs are invalid.
    MemberBadUrls => "given member URLs are invalid",
    /// No member has that ID.
    MemberNotFound => "member not found",
    /// Only a learner can be promoted.
    MemberNotLearner => "can only promote a learner member",
    /// The learner is not yet in sync with the leader.
    LearnerNotReady => "can only promote a learner member which is in sync with leader",
    /// The cluster has too many learners.
    TooManyLearners => "too many learner members in cluster",
    /// The request is larger than the server's `--max-request-bytes`.
    RequestTooLarge => "request is too large",
    /// The server is overloaded.
    TooManyRequests => "too many requests",
    /// Authentication needs a root user.
    RootUserNotExist => "root user does not exist",
    /// The root user lacks the root role.
    RootRoleNotExist => "root user does not have root role",
    /// The user exists already.
    UserAlreadyExists => "user name already exists",
    /// The user name is empty.
    UserEmpty => "user name is empty",
    /// No user has that name.
    UserNotFound => "user name not found",
    /// The role exists already.
    RoleAlreadyExists => "role name already exists",
    /// No role has that name.
    RoleNotFound => "role name not found",
    /// The role name is empty.
    RoleEmpty => "role name is empty",
    /// Wrong user name or password.
    AuthFailed => "authentication failed, invalid user ID or password",
    /// The user may not do this.
    PermissionDenied => "permission denied",
    /// The role is not granted to the user.
    RoleNotGranted => "role is not granted to the user",
    /// The permission is not granted to the role.
    PermissionNotGranted => "permission is not granted to the role",
    /// Authentication is not enabled.
    AuthNotEnabled => "authentication is not enabled",
    /// The auth token is invalid or expired.
    InvalidAuthToken => "invalid auth token",
    /// The auth management request is invalid.
    InvalidAuthMgmt => "invalid auth management",
    /// The member has no leader (it may be cut off from its quorum).
    NoLeader => "no leader",
    /// The member is not the leader.
    NotLeader => "not leader",
    /// The leader changed while the request was in flight.
    LeaderChanged => "leader changed",
    /// The cluster cannot serve this request yet (version mismatch).
    NotCapable => "not capable",
    /// The server is stopping.
    Stopped => "server stopped",
    /// The request timed out inside the server.
    RequestTimeout => "request timed out",
    /// The request timed out inside the server after a leader failure.
    TimeoutDueToLeaderFail => "request timed out, possibly due to previous leader failure",
    /// The request timed out inside the server after a lost connection.
    TimeoutDueToConnectionLost => "request timed out, possibly due to connection lost",
    /// The cluster is unhealthy.
    Unhealthy => "unhealthy cluster",
    /// The cluster's data is corrupt.
    Corrupt => "corrupt cluster",
    /// A learner cannot serve this request.
    NotSupportedForLearner => "rpc not supported for learner",
    /// The leader transferee is not valid.
    BadLeaderTransferee => "bad leader transferee",
    /// The cluster version is unknown during a downgrade.
    ClusterVersionUnavailable => "cluster version not found during downgrade",
    /// The downgrade version is malformed.
    WrongDowngradeVersionFormat => "wrong downgrade target version format",
    /// The downgrade target version is not valid.
    InvalidDowngradeTargetVersion => "invalid downgrade target version",
    /// A downgrade is in progress.
    DowngradeInProcess => "cluster has a downgrade job in progress",
    /// No downgrade is in progress.
    NoInflightDowngrade => "no inflight downgrade job",
}

impl fmt::Display for ServerCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// gRPC's status codes, as sent with a server error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // gRPC's own names, documented by gRPC
pub enum StatusCode {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl StatusCode {
    fn from_grpc(code: grpcio::RpcStatusCode) -> StatusCode {
        use grpcio::RpcStatusCode as C;
        const TABLE: [(grpcio::RpcStatusCode, StatusCode); 17] = [
            (C::OK, StatusCode::Ok),
            (C::CANCELLED, StatusCode::Cancelled),
            (C::UNKNOWN, StatusCode::Unknown),
            (C::INVALID_ARGUMENT, StatusCode::InvalidArgument),
            (C::DEADLINE_EXCEEDED, StatusCode::DeadlineExceeded),
            (C::NOT_FOUND, StatusCode::NotFound),
            (C::ALREADY_EXISTS, StatusCode::AlreadyExists),
            (C::PERMISSION_DENIED, StatusCode::PermissionDenied),
            (C::RESOURCE_EXHAUSTED, StatusCode::ResourceExhausted),
            (C::FAILED_PRECONDITION, StatusCode::FailedPrecondition),
            (C::ABORTED, StatusCode::Aborted),
            (C::OUT_OF_RANGE, StatusCode::OutOfRange),
            (C::UNIMPLEMENTED, StatusCode::Unimplemented),
            (C::INTERNAL, StatusCode::Internal),
            (C::UNAVAILABLE, StatusCode::Unavailable),
            (C::DATA_LOSS, StatusCode::DataLoss),
            (C::UNAUTHENTICATED, StatusCode::Unauthenticated),
        ];
        TABLE
            .iter()
            .find(|(grpc, _)| *grpc == code)
            .map_or(StatusCode::Unknown, |(_, ours)| *ours)
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
        assert!(matches!(e, Error::Connection { .. }) && e.is_unavailable());
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
