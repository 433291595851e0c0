//! The path of every unary call: pick an endpoint, run the call there, obey the retry
//! decision, all within one deadline.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use grpcio::{CallOption, ClientUnaryReceiver};

use super::floor::Revisioned;
use super::retry::{decide, Decision};
use super::route::Route;
use super::spec::{CallKind, Spec};
use crate::balancer::{Balancer, Endpoint};
use crate::error::{Error, Result};
use crate::park;
use crate::time;
use crate::transport::{call_options, poll_call, Stubs};

/// The longest pause between two rounds of retries.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// How long past its deadline a call may take to come back from gRPC before it is given up
/// here (gRPC ends it at its deadline; this is a bound on the wait, not a second deadline).
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// Runs a unary call until `deadline` (`timeout` from its start), on the healthy endpoints,
/// retrying where `spec` allows it.
pub(crate) fn run<R, F>(
    route: &Route,
    spec: Spec,
    timeout: Duration,
    deadline: Instant,
    start: F,
) -> Result<R>
where
    R: Revisioned + Unpin,
    F: Fn(&Stubs, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
{
    let balancer = &route.balancer;
    let leader = route.prefer_leader && !spec.serializable;
    let mut attempts = 0usize;
    let mut last: Option<Error> = None;
    let mut tried: Option<Arc<Endpoint>> = None;
    loop {
        if let Some(endpoint) = tried.take().filter(|_| Instant::now() >= deadline) {
            // Out of time after a try: the last failure says most.
            return Err(last.unwrap_or_else(|| Error::DeadlineExceeded {
                endpoint: endpoint.target().to_owned(),
                timeout,
            }));
        }
        // The first try may go to the leader; a retry goes round-robin, away from it.
        let to_leader = leader && attempts == 0;
        let Some(endpoint) = balancer.pick(deadline, to_leader, spec.serializable) else {
            return Err(if balancer.is_closed() {
                Error::Closed
            } else {
                Error::NoHealthyEndpoint {
                    timeout,
                    endpoints: balancer.failures(),
                }
            });
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(last.unwrap_or(Error::DeadlineExceeded {
                endpoint: endpoint.target().to_owned(),
                timeout,
            }));
        }
        attempts += 1;
        tried = Some(endpoint.clone());
        let option = call_options(remaining, !spec.serializable);
        let epoch = balancer.leader_epoch();
        let outcome = match start(endpoint.stubs(), option) {
            Ok(call) => wait(
                call,
                &endpoint,
                balancer,
                (!spec.serializable).then_some(epoch),
                deadline,
                timeout,
            ),
            Err(e) => Outcome::Failed(e),
        };
        let error = match outcome {
            Outcome::Done(response) => {
                let revision = response.revision();
                let seen = route.floor.get();
                if spec.serializable && revision < seen {
                    // The member is behind what this client has seen: going back in time
                    // is not allowed, so ask another (or this one again, later).
                    last = Some(Error::StaleRead {
                        endpoint: endpoint.target().to_owned(),
                        revision,
                        seen,
                    });
                    backoff(attempts, balancer.table().len(), deadline);
                    continue;
                }
                route.floor.saw(revision);
                return Ok(response);
            }
            Outcome::Failed(e) => Error::from_grpc(e, endpoint.target(), timeout),
            Outcome::Abandoned(error) => {
                if spec.kind == CallKind::Write {
                    return Err(Error::WriteOutcomeUnknown {
                        endpoint: endpoint.target().to_owned(),
                        source: Box::new(error),
                    });
                }
                // A read given up is tried elsewhere; the reason is no answer to give.
                continue;
            }
        };
        match decide(spec.kind, &error) {
            Decision::Fail => return Err(error),
            Decision::OutcomeUnknown(mark) => {
                balancer.report(&endpoint, mark, &error.to_string());
                return Err(Error::WriteOutcomeUnknown {
                    endpoint: endpoint.target().to_owned(),
                    source: Box::new(error),
                });
            }
            Decision::Retry(mark) => {
                balancer.report(&endpoint, mark, &error.to_string());
                last = Some(error);
                backoff(attempts, balancer.table().len(), deadline);
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

/// Blocks until the call completes, woken by its completion or by the balancer's news.
/// Meanwhile, if the endpoint is found unhealthy, or the leader changes or is lost (a call
/// on a follower may have been forwarded to a leader that is gone, and would wait out its
/// deadline), the call is cancelled: a repeatable call to be retried elsewhere, a write
/// with its outcome unknown. A call that waits past half a probe timeout makes the worker
/// probe every endpoint fast for a while, so that a new leader is learnt (and the epoch
/// moves) as soon as one is elected. A serializable read (`epoch` `None`) is served by its
/// member alone: neither the leader nor the member's lack of one ends it, only the member
/// failing to answer.
fn wait<R: Unpin>(
    mut call: ClientUnaryReceiver<R>,
    endpoint: &Endpoint,
    balancer: &Balancer,
    epoch: Option<u64>,
    deadline: Instant,
    timeout: Duration,
) -> Outcome<R> {
    let news = Some(balancer.news());
    if epoch.is_some() {
        // Waiting longer than a probe may take: the leader may be cut off from its
        // quorum, answering probes yet committing nothing. Ask the worker to look for a
        // new one at once instead of at its next regular probe.
        let stall_at = time::deadline(balancer.stall()).min(deadline);
        let step = |cx: &mut Context<'_>| poll(&mut call, cx, endpoint, balancer, epoch);
        if let Some(outcome) = park::wait(news, stall_at, step) {
            return outcome;
        }
        balancer.stalled();
    }
    let step = |cx: &mut Context<'_>| poll(&mut call, cx, endpoint, balancer, epoch);
    match park::wait(news, time::after(deadline, DEADLINE_GRACE), step) {
        Some(outcome) => outcome,
        None => {
            call.cancel();
            Outcome::Abandoned(Error::DeadlineExceeded {
                endpoint: endpoint.target().to_owned(),
                timeout,
            })
        }
    }
}

/// One look at a call in flight: its result, or a reason to give it up, or neither yet.
fn poll<R: Unpin>(
    call: &mut ClientUnaryReceiver<R>,
    cx: &mut Context<'_>,
    endpoint: &Endpoint,
    balancer: &Balancer,
    epoch: Option<u64>,
) -> Poll<Outcome<R>> {
    if let Poll::Ready(result) = poll_call(call, cx) {
        return Poll::Ready(match result {
            Ok(response) => Outcome::Done(response),
            Err(e) => Outcome::Failed(e),
        });
    }
    let reason = if endpoint.unusable(epoch.is_none()) {
        format!("it became unhealthy: {}", endpoint.detail().reason)
    } else if epoch.is_some_and(|epoch| balancer.leader_epoch() != epoch) {
        "the leader changed or was lost while it waited".to_owned()
    } else {
        return Poll::Pending;
    };
    call.cancel();
    Poll::Ready(Outcome::Abandoned(Error::Abandoned {
        endpoint: endpoint.target().to_owned(),
        reason,
    }))
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
    std::thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
}
