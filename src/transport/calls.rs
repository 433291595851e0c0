//! Starting and polling grpcio calls: their options in one place, and polls that survive
//! grpcio's own panics.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use grpcio::{CallOption, RpcStatus, RpcStatusCode};

use super::metadata::headers;
use crate::secret::Secret;
use crate::time;

/// The shortest deadline handed to gRPC: its C core counts in milliseconds, and a deadline
/// already passed at the start has been seen to complete a call with neither a status nor
/// a message.
const SHORTEST: Duration = Duration::from_millis(1);

/// The options of a call with `timeout` (kept within gRPC's range), etcd's
/// require-leader metadata when `require_leader`, and the user's `token` if any.
pub(crate) fn options(
    timeout: Duration,
    require_leader: bool,
    token: Option<&Secret>,
) -> CallOption {
    let option = CallOption::default().timeout(time::clamp(timeout).max(SHORTEST));
    match headers(require_leader, token) {
        Some(headers) => option.headers(headers),
        None => option,
    }
}

/// Polls a grpcio call. grpcio 0.13 panics inside `poll` when a call completes without a
/// message (seen with deadlines of a nanosecond); that becomes a failed call here instead
/// of a panic in the polling thread.
pub(crate) fn poll<F, T>(call: &mut F, cx: &mut Context<'_>) -> Poll<grpcio::Result<T>>
where
    F: Future<Output = grpcio::Result<T>> + Unpin,
{
    match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *call).poll(cx))) {
        Ok(poll) => poll,
        Err(_) => Poll::Ready(Err(grpcio::Error::RpcFailure(RpcStatus::with_message(
            RpcStatusCode::INTERNAL,
            "grpcio failed the call without an answer".to_owned(),
        )))),
    }
}
