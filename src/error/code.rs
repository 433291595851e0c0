//! etcd's error messages as typed codes, and gRPC's status codes.

/// The prefix etcd puts on every error message of its own.
pub(crate) const ETCD_PREFIX: &str = "etcdserver: ";

macro_rules! server_codes {
    ($($(#[$doc:meta])* $name:ident => $message:literal,)*) => {
        /// The errors an etcd server answers with, one per message of etcd's `rpctypes`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ServerCode {
            $($(#[$doc])* $name,)*
            /// An etcd error this version of the client does not know; see
            /// [`ServerError::message`](crate::ServerError::message).
            Unrecognized,
        }

        impl ServerCode {
            /// The code for an etcd status message, if it is one etcd sends.
            pub(crate) fn from_message(message: &str) -> Option<ServerCode> {
                // The auth store's own refusal of a password for a user that has none
                // comes bare too ("auth: authentication failed, password was given for
                // no password user"): a failed authentication all the same.
                if message.starts_with("auth: authentication failed") {
                    return Some(ServerCode::AuthFailed);
                }
                // The election service sends its two errors bare (status UNKNOWN), not as
                // etcd's own prefixed ones.
                let text = message
                    .strip_prefix(ETCD_PREFIX)
                    .or_else(|| message.strip_prefix("election: ").map(|_| message))?;
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
    /// The token was issued before the last change of users, roles or permissions (a JWT
    /// carries the auth store's revision it was made at).
    AuthOldRevision => "revision of auth store is old",
    /// The auth management request is invalid.
    InvalidAuthMgmt => "invalid auth management",
    /// The member has no leader (it may be cut off from its quorum).
    NoLeader => "no leader",
    /// The member is not the leader.
    NotLeader => "not leader",
    /// An election has no leader (the election service's `Leader`).
    ElectionNoLeader => "election: no leader",
    /// The leader key given is not the election's leader (the election service's
    /// `Proclaim`).
    ElectionNotLeader => "election: not leader",
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

impl ServerCode {
    /// True for a refusal of the request's auth token, which a new token may get past:
    /// invalid or expired, issued before the last change of users and roles, or missing
    /// (sent before the first authentication, or while auth was being turned on).
    pub(crate) fn refuses_token(self) -> bool {
        matches!(
            self,
            ServerCode::InvalidAuthToken | ServerCode::AuthOldRevision | ServerCode::UserEmpty
        )
    }
}

impl std::fmt::Display for ServerCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    pub(crate) fn from_grpc(code: grpcio::RpcStatusCode) -> StatusCode {
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
