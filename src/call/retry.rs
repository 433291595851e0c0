//! Whether a failed call is tried again, decided in one place.
//!
//! The call loop (`unary.rs`) only obeys [`decide`]: it never looks at an error itself. The
//! rule is etcd's: a repeatable call may be retried whenever its endpoint could not serve it;
//! a write only when the request provably never reached a server, because a retry of a write
//! that was applied would apply it twice.

use super::spec::CallKind;
use crate::balancer::Mark;
use crate::error::{Error, ServerCode};

/// The longest pause between two tries.
pub(crate) const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The pause before try `round + 1` after `round` failed rounds (a stream that would not
/// open, a full round of a call over every endpoint): 5 ms, doubling per round, at most
/// [`MAX_BACKOFF`]. The one backoff of the crate's retry loops.
pub(crate) fn backoff(round: u32) -> std::time::Duration {
    std::time::Duration::from_millis(5)
        .saturating_mul(1 << (round.clamp(1, 8) - 1))
        .min(MAX_BACKOFF)
}

/// What the call loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Hand the error to the caller as it is.
    Fail,
    /// Mark the endpoint (see [`Mark`]) and try the call on another endpoint, within the
    /// call's deadline.
    Retry(Mark),
    /// Mark the endpoint and fail with [`Error::WriteOutcomeUnknown`]: the write may or may
    /// not have been applied.
    OutcomeUnknown(Mark),
}

/// The retry decision for `error`, the failure of a call of `kind`.
pub(crate) fn decide(kind: CallKind, error: &Error) -> Decision {
    use CallKind::{Repeatable, Write};
    use Decision::{Fail, OutcomeUnknown, Retry};
    match error {
        // Nothing reached a server: any call may go elsewhere.
        Error::Unreachable { .. } => Retry(Mark::Unhealthy),
        Error::Server(e) => match (e.code(), kind) {
            // With require-leader metadata the member refuses before doing anything.
            (ServerCode::NoLeader, _) => Retry(Mark::Unhealthy),
            (ServerCode::NotSupportedForLearner, _) => Retry(Mark::Unhealthy),
            // etcd answers "unhealthy cluster" only from the checks it makes before it
            // proposes a membership change or a leader transfer (its links to the other
            // members are younger than 5 s, or too few): nothing was applied, and another
            // member, or the same one a little later, may take it.
            (ServerCode::Unhealthy, _) => Retry(Mark::Suspect),
            (code, Repeatable) if transient(code) => Retry(Mark::Suspect),
            (code, Write) if transient(code) => OutcomeUnknown(Mark::Suspect),
            _ => Fail,
        },
        Error::Transport { .. } | Error::DeadlineExceeded { .. } => match kind {
            Repeatable => Retry(Mark::Suspect),
            Write => OutcomeUnknown(Mark::Suspect),
        },
        // Request-shaped failures: another endpoint would say the same.
        Error::MessageTooLarge { .. }
        | Error::ConnectFailed { .. }
        | Error::HandshakeFailed { .. }
        | Error::NotSupported { .. }
        | Error::InvalidEndpoint { .. }
        | Error::InvalidArgument { .. }
        | Error::NotUtf8 { .. }
        | Error::Closed
        | Error::CloseTimedOut { .. }
        | Error::ThreadSpawn { .. }
        | Error::BackgroundThread { .. }
        | Error::NoHealthyEndpoint { .. }
        | Error::Abandoned { .. }
        | Error::StaleRead { .. }
        | Error::WriteOutcomeUnknown { .. }
        | Error::BatchFailed { .. }
        | Error::WatchCompacted { .. }
        | Error::WatchLagged { .. }
        | Error::WatchCanceled { .. }
        | Error::WaitTimeout { .. }
        | Error::Canceled { .. }
        | Error::SessionLost { .. }
        | Error::NotLeader { .. }
        | Error::InvalidResponse { .. }
        | Error::SnapshotInvalid { .. }
        | Error::Io { .. } => Fail,
    }
}

/// Server codes that say "not now, not here" rather than "never".
fn transient(code: ServerCode) -> bool {
    matches!(
        code,
        ServerCode::LeaderChanged
            | ServerCode::NotLeader
            | ServerCode::NotCapable
            | ServerCode::Stopped
            | ServerCode::RequestTimeout
            | ServerCode::TimeoutDueToLeaderFail
            | ServerCode::TimeoutDueToConnectionLost
            | ServerCode::Unhealthy
            | ServerCode::TooManyRequests
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(code: grpcio::RpcStatusCode, message: &str) -> Error {
        let e = grpcio::Error::RpcFailure(grpcio::RpcStatus::with_message(code, message.into()));
        Error::from_grpc(e, "a:1", Duration::from_secs(1))
    }

    use grpcio::RpcStatusCode as C;
    use CallKind::{Repeatable, Write};
    use Decision::{Fail, OutcomeUnknown, Retry};

    /// (what, error, decision for a repeatable call, decision for a write)
    fn table() -> Vec<(&'static str, Error, Decision, Decision)> {
        let never_sent = status(
            C::UNAVAILABLE,
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: \
             Failed to connect to remote host: Connection refused",
        );
        let reset = status(C::UNAVAILABLE, "Socket closed");
        let deadline = status(C::DEADLINE_EXCEEDED, "Deadline Exceeded");
        let unhealthy = Retry(Mark::Unhealthy);
        let suspect = Retry(Mark::Suspect);
        let unknown = OutcomeUnknown(Mark::Suspect);
        vec![
            ("never connected", never_sent, unhealthy, unhealthy),
            ("connection reset", reset, suspect, unknown),
            ("deadline", deadline, suspect, unknown),
            (
                "no leader",
                status(C::UNAVAILABLE, "etcdserver: no leader"),
                unhealthy,
                unhealthy,
            ),
            (
                "learner",
                status(C::UNAVAILABLE, "etcdserver: rpc not supported for learner"),
                unhealthy,
                unhealthy,
            ),
            (
                "leader changed",
                status(C::UNAVAILABLE, "etcdserver: leader changed"),
                suspect,
                unknown,
            ),
            (
                "server timeout",
                status(C::UNAVAILABLE, "etcdserver: request timed out"),
                suspect,
                unknown,
            ),
            (
                "stopping",
                status(C::UNAVAILABLE, "etcdserver: server stopped"),
                suspect,
                unknown,
            ),
            (
                "overloaded",
                status(C::RESOURCE_EXHAUSTED, "etcdserver: too many requests"),
                suspect,
                unknown,
            ),
            (
                "compacted",
                status(
                    C::OUT_OF_RANGE,
                    "etcdserver: mvcc: required revision has been compacted",
                ),
                Fail,
                Fail,
            ),
            (
                "empty key",
                status(C::INVALID_ARGUMENT, "etcdserver: key is not provided"),
                Fail,
                Fail,
            ),
            (
                "too large",
                status(
                    C::RESOURCE_EXHAUSTED,
                    "Sent message larger than max (9 vs. 4)",
                ),
                Fail,
                Fail,
            ),
            (
                "denied",
                status(C::PERMISSION_DENIED, "etcdserver: permission denied"),
                Fail,
                Fail,
            ),
            (
                "bad token",
                status(C::UNAUTHENTICATED, "etcdserver: invalid auth token"),
                Fail,
                Fail,
            ),
            ("closed", Error::Closed, Fail, Fail),
        ]
    }

    #[test]
    fn retry_table() {
        for (what, error, repeatable, write) in table() {
            assert_eq!(
                decide(Repeatable, &error),
                repeatable,
                "{what}, repeatable: {error:?}"
            );
            assert_eq!(decide(Write, &error), write, "{what}, write: {error:?}");
        }
    }

    #[test]
    fn a_write_is_never_retried_unless_it_never_reached_a_server() {
        for (what, error, _, write) in table() {
            if let Retry(_) = write {
                let never_reached = matches!(error, Error::Unreachable { .. })
                    || error.code() == Some(ServerCode::NoLeader)
                    || error.code() == Some(ServerCode::NotSupportedForLearner);
                assert!(
                    never_reached,
                    "{what}: a write retried after it may have arrived"
                );
            }
        }
    }
}
