//! The path of every unary call: pick an endpoint, run the call there, obey the retry
//! decision, within one deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use grpcio::{CallOption, ClientUnaryReceiver, Metadata, MetadataBuilder};

use crate::balancer::{Endpoint, Shared};
use crate::error::{Error, Result};
use crate::proto::rpc;
use crate::retry::{decide, CallKind, Decision};

/// How often a caller blocked on a call looks at its endpoint's health.
const HEALTH_CHECK: Duration = Duration::from_millis(20);

/// The longest pause between two rounds of retries.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// gRPC metadata that makes etcd refuse the call at once when the member has no leader,
/// instead of letting it wait: etcd's "require leader".
pub(crate) fn require_leader() -> Metadata {
    let mut builder = MetadataBuilder::with_capacity(1);
    // A constant ASCII key and value: adding them cannot fail.
    let _ = builder.add_str("hasleader", "true");
    builder.build()
}

/// What kind of unary call is made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) kind: CallKind,
    /// A serializable read, served from the member's local state: it must not return a
    /// revision older than one the client has already seen, and may be served without a
    /// leader.
    pub(crate) serializable: bool,
    /// Send it to the leader when the leader is known and healthy.
    pub(crate) leader: bool,
}

impl Spec {
    pub(crate) const READ: Spec = Spec {
        kind: CallKind::Repeatable,
        serializable: false,
        leader: false,
    };
    pub(crate) const WRITE: Spec = Spec {
        kind: CallKind::Write,
        serializable: false,
        leader: false,
    };
}

/// A response that carries etcd's header.
pub(crate) trait Revisioned {
    /// The store revision in the header (0 if none).
    fn revision(&self) -> i64;
}

macro_rules! revisioned {
    ($($ty:ty),* $(,)?) => {$(
        impl Revisioned for $ty {
            fn revision(&self) -> i64 {
                self.header.as_ref().map_or(0, |h| h.revision)
            }
        }
    )*};
}

revisioned!(
    rpc::RangeResponse,
    rpc::PutResponse,
    rpc::DeleteRangeResponse,
    rpc::TxnResponse,
    rpc::CompactionResponse,
    rpc::LeaseGrantResponse,
    rpc::LeaseRevokeResponse,
    rpc::LeaseTimeToLiveResponse,
);

/// Runs a unary call within `timeout`, on the healthy endpoints, retrying where `spec`
/// allows it.
pub(crate) fn unary<R, F>(shared: &Shared, spec: Spec, timeout: Duration, start: F) -> Result<R>
where
    R: Revisioned + Unpin,
    F: Fn(&Endpoint, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
{
    let deadline = Instant::now() + timeout;
    let mut attempts = 0usize;
    let mut last: Option<Error> = None;
    loop {
        // The first try may go to the leader; a retry goes round-robin, away from it.
        let to_leader = spec.leader && attempts == 0;
        let Some(endpoint) = shared.pick(deadline, to_leader, spec.serializable) else {
            return Err(Error::NoHealthyEndpoint {
                timeout,
                endpoints: shared.failures(),
            });
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(last.unwrap_or(Error::DeadlineExceeded {
                endpoint: endpoint.target.clone(),
                timeout,
            }));
        }
        attempts += 1;
        let mut option = CallOption::default().timeout(remaining);
        if !spec.serializable {
            option = option.headers(require_leader());
        }
        let epoch = shared.leader_epoch();
        let outcome = match start(&endpoint, option) {
            Ok(call) => wait(
                call,
                &endpoint,
                shared,
                (!spec.serializable).then_some(epoch),
            ),
            Err(e) => Outcome::Failed(e),
        };
        let error = match outcome {
            Outcome::Done(response) => {
                let revision = response.revision();
                let seen = shared.max_revision();
                if spec.serializable && revision < seen {
                    // The member is behind what this client has seen: going back in time
                    // is not allowed, so ask another (or this one again, later).
                    last = Some(Error::StaleRead {
                        endpoint: endpoint.target.clone(),
                        revision,
                        seen,
                    });
                    backoff(attempts, shared.table().len(), deadline);
                    continue;
                }
                shared.saw_revision(revision);
                return Ok(response);
            }
            Outcome::Failed(e) => Error::from_grpc(e, &endpoint.target, timeout),
            Outcome::Abandoned(error) => {
                if spec.kind == CallKind::Write {
                    return Err(Error::WriteOutcomeUnknown {
                        endpoint: endpoint.target.clone(),
                        source: Box::new(error),
                    });
                }
                last = Some(error);
                continue;
            }
        };
        match decide(spec.kind, &error) {
            Decision::Fail => return Err(error),
            Decision::OutcomeUnknown(mark) => {
                shared.report(&endpoint, mark, &error.to_string());
                return Err(Error::WriteOutcomeUnknown {
                    endpoint: endpoint.target.clone(),
                    source: Box::new(error),
                });
            }
            Decision::Retry(mark) => {
                shared.report(&endpoint, mark, &error.to_string());
                last = Some(error);
                backoff(attempts, shared.table().len(), deadline);
            }
        }
    }
}

/// How one attempt ended.
enum Outcome<R> {
    Done(R),
    Failed(grpcio::Error),
    /// The call was cancelled while it waited: its endpoint turned unhealthy, or the leader
    /// changed.
    Abandoned(Error),
}

/// Wakes the calling thread when its call completes.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

/// Blocks until the call completes. Meanwhile, if the endpoint is found unhealthy, or the
/// leader changes or is lost (a call on a follower may have been forwarded to a leader that
/// is gone, and would wait out its deadline), a repeatable call is cancelled (to be retried
/// elsewhere) and so is a write (whose outcome is then unknown). A call that waits past
/// half a probe timeout makes the worker probe every endpoint fast for a while, so that a
/// new leader is learnt (and the epoch moves) as soon as one is elected. A serializable read
/// (`epoch` `None`) is served by its member alone: neither the leader nor the member's lack
/// of one ends it, only the member failing to answer.
fn wait<R: Unpin>(
    mut call: ClientUnaryReceiver<R>,
    endpoint: &Endpoint,
    shared: &Shared,
    epoch: Option<u64>,
) -> Outcome<R> {
    let stall_at = Instant::now() + shared.stall();
    let mut hurried = false;
    WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(result) = Pin::new(&mut call).poll(&mut cx) {
                return match result {
                    Ok(response) => Outcome::Done(response),
                    Err(e) => Outcome::Failed(e),
                };
            }
            if endpoint.unusable(epoch.is_none()) {
                call.cancel();
                return Outcome::Abandoned(Error::EndpointUnhealthy {
                    endpoint: endpoint.target.clone(),
                    reason: endpoint.detail().reason,
                });
            }
            if epoch.is_some_and(|epoch| shared.leader_epoch() != epoch) {
                call.cancel();
                return Outcome::Abandoned(Error::LeaderLost {
                    endpoint: endpoint.target.clone(),
                });
            }
            // Waiting longer than a probe may take: the leader may be cut off from its
            // quorum, answering probes yet committing nothing. Ask the worker to look for
            // a new one at once instead of at its next regular probe.
            if epoch.is_some() && !hurried && Instant::now() >= stall_at {
                shared.stalled();
                hurried = true;
            }
            thread::park_timeout(HEALTH_CHECK);
        }
    })
}

/// Fails over at once while there are endpoints left to try; after each full round of
/// them, waits 5 ms, doubling per round up to 100 ms, never past the deadline.
fn backoff(attempts: usize, endpoints: usize, deadline: Instant) {
    let endpoints = endpoints.max(1);
    if !attempts.is_multiple_of(endpoints) {
        return;
    }
    let rounds = (attempts / endpoints).min(8) as u32;
    let delay = Duration::from_millis(5)
        .saturating_mul(1 << (rounds - 1))
        .min(MAX_BACKOFF);
    thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
}
