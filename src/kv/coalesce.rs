//! Read coalescing: fewer calls than callers. While two reads of one kind (linearizable
//! or serializable) are in flight, the reads of that kind that come meanwhile queue; when
//! one of the calls returns, the thread that sent it hands the queue to the first reader
//! in it, which sends them all as one read-only transaction and hands each reader its own
//! answer. A reader that finds fewer than two calls in flight sends its read at once, so
//! a lone reader never waits. (Measured in `coalesce-compare.md`: with one call in flight,
//! 8 callers lost 3-22% against coalescing off; with two, they are even, and 64 callers
//! gain as much.)
//!
//! Why it keeps every promise a read alone keeps:
//! - a read is only answered by a call sent after it was issued (it queued while another
//!   call was in flight, and its batch leaves after that call returned), so its
//!   linearization point lies inside its own call;
//! - a read-only transaction reads every key at one revision, linearizably unless every
//!   range in it is serializable, and the call path holds a serializable batch to the
//!   revision floor as it does a serializable read;
//! - only reads at the latest revision are queued: a read at an old revision can fail
//!   alone (compacted, future revision), and would fail its batch;
//! - a batch that fails in any way hands every reader back its own request, to be sent
//!   alone with the time it has left, so each gets the answer, or the error, it would
//!   have had alone; a batch refused for having too many operations lowers the limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use protobuf::Message;

use crate::call::{Caller, Rpc};
use crate::error::{Error, Result, ServerCode};
use crate::proto::rpc;

/// The most operations a batch holds: etcd's default `--max-txn-ops`. A cluster started
/// with less refuses the first full batch, and the limit is halved until it passes.
pub(crate) const MAX_OPS: usize = 128;

/// The most bytes of requests a batch holds, well under etcd's default
/// `--max-request-bytes` (1.5 MiB) and this client's default send limit (2 MiB).
const MAX_BYTES: usize = 1 << 20;

/// How many calls of one kind may be in flight before reads queue behind them: two, so
/// that a batch is on its way while the last one is answered (see the module docs).
const DEPTH: usize = 2;

/// How long a reader taken into a batch waits for its answer past its own deadline: the
/// batch's deadline is the earliest of its readers', so the answer is due by then.
const HANDOVER_GRACE: Duration = Duration::from_secs(1);

/// What the endpoint of a read that timed out in the queue is called in its error.
const QUEUED: &str = "the queue of coalesced reads";

/// How much a client's reads were coalesced, since it connected
/// ([`Client::coalesced_reads`](crate::Client::coalesced_reads)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalescedReads {
    /// Batches answered: read-only transactions that each carried two reads or more.
    pub batches: u64,
    /// Reads answered by those batches.
    pub reads: u64,
    /// The most reads one batch carried.
    pub largest: u64,
    /// Batches that failed, whose reads were then each sent alone.
    pub failed: u64,
}

/// A client's coalescers: one for linearizable reads, one for serializable ones.
#[derive(Debug)]
pub(crate) struct Reads {
    linearizable: Coalescer,
    serializable: Coalescer,
}

impl Reads {
    pub(crate) fn new() -> Reads {
        Reads {
            linearizable: Coalescer::new(false, DEPTH),
            serializable: Coalescer::new(true, DEPTH),
        }
    }

    /// Both kinds' batches, added up.
    pub(crate) fn stats(&self) -> CoalescedReads {
        let (a, b) = (&self.linearizable, &self.serializable);
        CoalescedReads {
            batches: a.batches.load(Ordering::Relaxed) + b.batches.load(Ordering::Relaxed),
            reads: a.reads.load(Ordering::Relaxed) + b.reads.load(Ordering::Relaxed),
            largest: a
                .largest
                .load(Ordering::Relaxed)
                .max(b.largest.load(Ordering::Relaxed)),
            failed: a.failed.load(Ordering::Relaxed) + b.failed.load(Ordering::Relaxed),
        }
    }

    /// The coalescer of reads like `request`, if it may be coalesced: a read at the
    /// latest revision.
    pub(crate) fn of(&self, request: &rpc::RangeRequest) -> Option<&Coalescer> {
        if request.revision != 0 {
            return None;
        }
        Some(if request.serializable {
            &self.serializable
        } else {
            &self.linearizable
        })
    }
}

/// The reads of one kind, queued while [`DEPTH`] calls of that kind are in flight.
pub(crate) struct Coalescer {
    /// The RPC of a read alone: `Range` or `SerializableRange`.
    single: Rpc,
    /// The RPC of a batch: `ReadOnlyTxn` or `SerializableReadOnlyTxn`.
    batch: Rpc,
    /// How many calls of this kind may be in flight before reads queue.
    depth: usize,
    /// The most operations a batch may hold now.
    max_ops: AtomicUsize,
    state: Mutex<State>,
    /// Batches answered, the reads they carried, and the most one carried.
    batches: AtomicU64,
    reads: AtomicU64,
    largest: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("single", &self.single)
            .field("max_ops", &self.max_ops.load(Ordering::Relaxed))
            .finish()
    }
}

#[derive(Default)]
struct State {
    /// Calls of this kind in flight: at the limit, a new read queues.
    in_flight: usize,
    queue: Vec<Queued>,
    /// Numbers the queued reads, so that one can find itself to leave.
    next: u64,
}

/// A read waiting for its turn.
struct Queued {
    id: u64,
    request: rpc::RangeRequest,
    deadline: Instant,
    timeout: Duration,
    reply: Sender<Turn>,
}

/// What a queued reader is told.
enum Turn {
    /// Its answer, from a batch.
    Answer(Result<rpc::RangeResponse>),
    /// It sends this batch, its own read first.
    Lead(Vec<Queued>),
    /// Its read goes alone after all (the batch failed, or came too late): here it is.
    Alone(rpc::RangeRequest),
}

impl Coalescer {
    /// A coalescer of linearizable reads, or of serializable ones.
    fn new(serializable: bool, depth: usize) -> Coalescer {
        let (single, batch) = if serializable {
            (Rpc::SerializableRange, Rpc::SerializableReadOnlyTxn)
        } else {
            (Rpc::Range, Rpc::ReadOnlyTxn)
        };
        Coalescer {
            single,
            batch,
            depth: depth.max(1),
            max_ops: AtomicUsize::new(MAX_OPS),
            state: Mutex::new(State::default()),
            batches: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Reads `request` within `timeout`: at once if fewer than [`DEPTH`] calls of this kind
    /// are in flight, else in a batch that follows one of them.
    pub(crate) fn read(
        &self,
        caller: &Caller,
        request: rpc::RangeRequest,
        timeout: Duration,
    ) -> Result<rpc::RangeResponse> {
        let deadline = crate::time::deadline(timeout);
        let (id, turn) = {
            let mut state = self.state.lock();
            if state.in_flight < self.depth {
                state.in_flight += 1;
                drop(state);
                let _flight = InFlight(self);
                return self.alone(caller, &request, timeout);
            }
            let (reply, turn) = crossbeam_channel::bounded(1);
            let id = state.next;
            state.next += 1;
            state.queue.push(Queued {
                id,
                request,
                deadline,
                timeout,
                reply,
            });
            (id, turn)
        };
        match self.wait(&turn, id, deadline, timeout)? {
            Turn::Answer(answer) => answer,
            Turn::Alone(request) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(queued_too_long(timeout));
                }
                self.alone(caller, &request, left)
            }
            Turn::Lead(batch) => {
                let _flight = InFlight(self);
                self.send(caller, batch)
            }
        }
    }

    /// Waits for a queued reader's turn until its deadline; leaves the queue then, if it
    /// is still in it; if it was taken into a batch, waits for that batch's word.
    fn wait(
        &self,
        turn: &Receiver<Turn>,
        id: u64,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Turn> {
        match turn.recv_deadline(deadline) {
            Ok(turn) => return Ok(turn),
            Err(RecvTimeoutError::Disconnected) => return Err(queued_too_long(timeout)),
            Err(RecvTimeoutError::Timeout) => {}
        }
        {
            let mut state = self.state.lock();
            if let Some(at) = state.queue.iter().position(|q| q.id == id) {
                state.queue.remove(at);
                return Err(queued_too_long(timeout));
            }
        }
        // Taken: the word is on its way (a lead at once, an answer by the batch's
        // deadline, which is no later than this reader's).
        turn.recv_timeout(HANDOVER_GRACE)
            .map_err(|_| queued_too_long(timeout))
    }

    /// A read sent alone.
    fn alone(
        &self,
        caller: &Caller,
        request: &rpc::RangeRequest,
        timeout: Duration,
    ) -> Result<rpc::RangeResponse> {
        caller.unary(self.single, timeout, |s, opt| {
            s.kv.range_async_opt(request, opt)
        })
    }

    /// The call in flight returned: hands the queue (up to a batch of it) to its first
    /// reader whose deadline has not passed, or marks nothing in flight.
    fn done(&self) {
        let max_ops = self.max_ops.load(Ordering::Relaxed).max(1);
        let mut state = self.state.lock();
        let now = Instant::now();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(first) = state.queue.first() {
            let size = request_size(&first.request);
            if batch.len() == max_ops || (!batch.is_empty() && bytes + size > MAX_BYTES) {
                break;
            }
            let queued = state.queue.remove(0);
            if queued.deadline <= now {
                let _ = queued
                    .reply
                    .send(Turn::Answer(Err(queued_too_long(queued.timeout))));
                continue;
            }
            bytes += size;
            batch.push(queued);
        }
        if batch.is_empty() {
            state.in_flight -= 1;
            return;
        }
        drop(state);
        let lead = batch[0].reply.clone();
        // The reader is waiting: it leaves the queue only under the lock, and it was taken.
        let _ = lead.send(Turn::Lead(batch));
    }

    /// Sends `batch` (this reader's own read first) as one read-only transaction and hands
    /// each of the others its answer; this reader's own answer.
    fn send(&self, caller: &Caller, mut batch: Vec<Queued>) -> Result<rpc::RangeResponse> {
        let own = batch.remove(0);
        let deadline = batch
            .iter()
            .map(|q| q.deadline)
            .fold(own.deadline, Instant::min);
        let left = deadline.saturating_duration_since(Instant::now());
        if batch.is_empty() || left.is_zero() {
            for other in batch {
                let _ = other.reply.send(Turn::Alone(other.request));
            }
            let left = own.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(queued_too_long(own.timeout));
            }
            return self.alone(caller, &own.request, left);
        }
        let ops: Vec<rpc::RequestOp> = std::iter::once(&own)
            .chain(&batch)
            .map(|q| {
                let mut op = rpc::RequestOp::new();
                op.set_request_range(q.request.clone());
                op
            })
            .collect();
        let count = ops.len();
        let txn = rpc::TxnRequest {
            success: ops.into(),
            ..Default::default()
        };
        let answer = caller.unary(self.batch, left, |s, opt| s.kv.txn_async_opt(&txn, opt));
        match answer.and_then(|r| answers(r, count)) {
            Ok(mut answers) => {
                let carried = count as u64;
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.reads.fetch_add(carried, Ordering::Relaxed);
                self.largest.fetch_max(carried, Ordering::Relaxed);
                let first = answers.remove(0);
                for (other, answer) in batch.into_iter().zip(answers) {
                    let _ = other.reply.send(Turn::Answer(Ok(answer)));
                }
                Ok(first)
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if e.code() == Some(ServerCode::TooManyOps) {
                    // A cluster with a lower --max-txn-ops: halve until batches pass.
                    let lower = (count / 2).max(1);
                    self.max_ops.fetch_min(lower, Ordering::Relaxed);
                    log::debug!("etcd: batches of {count} reads refused; now at most {lower}");
                }
                for other in batch {
                    let _ = other.reply.send(Turn::Alone(other.request));
                }
                let left = own.deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                self.alone(caller, &own.request, left)
            }
        }
    }
}

/// A call of a coalescer in flight: when it ends, even by a panic, the queue goes on.
struct InFlight<'a>(&'a Coalescer);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}

/// The answers of a batch of `count` reads, each with the transaction's header (as each
/// read alone would have had: one member, one revision).
fn answers(mut response: rpc::TxnResponse, count: usize) -> Result<Vec<rpc::RangeResponse>> {
    let header = response.take_header();
    let ops = response.take_responses();
    if ops.len() != count {
        return Err(Error::InvalidResponse {
            reason: format!("{} answers to a batch of {count} reads", ops.len()),
        });
    }
    ops.into_iter()
        .map(|mut op| {
            if !op.has_response_range() {
                return Err(Error::InvalidResponse {
                    reason: "a batch of reads answered with something else".to_owned(),
                });
            }
            let mut range = op.take_response_range();
            range.set_header(header.clone());
            Ok(range)
        })
        .collect()
}

/// What a request adds to a batch's size.
fn request_size(request: &rpc::RangeRequest) -> usize {
    usize::try_from(request.compute_size()).unwrap_or(usize::MAX) + 8
}

fn queued_too_long(timeout: Duration) -> Error {
    Error::DeadlineExceeded {
        endpoint: QUEUED.to_owned(),
        timeout,
    }
}
