//! Coalescing: fewer calls than callers. While two calls of one kind (linearizable reads,
//! serializable reads, or, opted in, writes) are in flight, the requests of that kind that
//! come meanwhile queue; when one of the calls returns, the thread that sent it hands the
//! queue to the first caller in it, which sends them all as one transaction and hands each
//! caller its own answer (a queued caller parks on a [`park::handover`], which does not
//! spin). A caller that finds fewer than two calls in flight sends its request at once,
//! so a lone caller never waits. (Measured in interleaved A/Bs: with one call in flight,
//! 8 callers lost 3-22% of their reads against coalescing off; with three, four or six,
//! they lost reads too, on one member and on three; with two, they are about even, and
//! 64 callers read more than twice as much: `coalesce-compare.md`.)
//!
//! Why a read keeps every promise it has alone:
//! - it is only answered by a call sent after it was issued (it queued while other calls
//!   were in flight, and its batch leaves after one of them returned), so its
//!   linearization point lies inside its own call;
//! - a read-only transaction reads every key at one revision, linearizably unless every
//!   range in it is serializable, and the call path holds a serializable batch to the
//!   revision floor as it does a serializable read;
//! - only reads at the latest revision are queued: a read at an old revision can fail
//!   alone (compacted, future revision), and would fail its batch;
//! - a batch that fails in any way hands every reader back its own request, to be sent
//!   alone with the time it has left, so each gets the answer, or the error, it would
//!   have had alone; a batch refused for having too many operations lowers the limit.
//!
//! What changes for a write (which is why it is opt-in): the writes of a batch are one
//! raft entry at one revision, and when the batch's outcome is unknown, every write in it
//! is of unknown outcome. A batch never holds two writes of one key (etcd refuses that);
//! a batch the server refuses (a lease not found, a permission, `ignore_value` on a
//! missing key) was applied nowhere, and hands every writer back its own request, to be
//! sent alone, so each gets its own answer.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use protobuf::Message;

use crate::call::{Caller, Rpc};
use crate::error::{Error, Result, ServerCode};
use crate::park::{self, Hear, Tell, Unheard};
use crate::proto::rpc;

/// The most operations a batch holds: etcd's default `--max-txn-ops`. A cluster started
/// with less refuses the first full batch, and the limit is halved until it passes.
pub(crate) const MAX_OPS: usize = 128;

/// The most bytes of requests a batch holds, well under etcd's default
/// `--max-request-bytes` (1.5 MiB) and this client's default send limit (2 MiB).
const MAX_BYTES: usize = 1 << 20;

/// How many calls of one kind may be in flight before requests queue behind them: two,
/// so that a batch is on its way while the last one is answered (see the module docs).
const DEPTH: usize = 2;

/// How long a caller taken into a batch waits for its answer past its own deadline: the
/// batch's deadline is the earliest of its callers', so the answer is due by then.
const HANDOVER_GRACE: Duration = Duration::from_secs(1);

/// What the endpoint of a request that timed out in the queue is called in its error.
const QUEUED: &str = "the queue of coalesced requests";

/// How much a client's reads or writes were coalesced, since it connected
/// ([`Client::coalesced_reads`](crate::Client::coalesced_reads),
/// [`Client::coalesced_writes`](crate::Client::coalesced_writes)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coalesced {
    /// Batches answered: transactions that each carried two requests or more.
    pub batches: u64,
    /// Requests answered by those batches.
    pub requests: u64,
    /// The most requests one batch carried.
    pub largest: u64,
    /// Batches that failed, whose requests were then each sent alone (or, for writes of
    /// unknown outcome, each reported of unknown outcome).
    pub failed: u64,
}

impl Coalesced {
    fn add(self, other: Coalesced) -> Coalesced {
        Coalesced {
            batches: self.batches + other.batches,
            requests: self.requests + other.requests,
            largest: self.largest.max(other.largest),
            failed: self.failed + other.failed,
        }
    }
}

/// One request a coalescer takes.
pub(crate) enum Op {
    Range(rpc::RangeRequest),
    Put(rpc::PutRequest),
    Delete(rpc::DeleteRangeRequest),
}

/// Its answer.
pub(crate) enum Answer {
    Range(rpc::RangeResponse),
    Put(rpc::PutResponse),
    Delete(rpc::DeleteRangeResponse),
}

impl Op {
    /// The key a write changes (a read's never matters).
    fn key(&self) -> &[u8] {
        match self {
            Op::Range(r) => &r.key,
            Op::Put(p) => &p.key,
            Op::Delete(d) => &d.key,
        }
    }

    fn size(&self) -> usize {
        let size = match self {
            Op::Range(r) => r.compute_size(),
            Op::Put(p) => p.compute_size(),
            Op::Delete(d) => d.compute_size(),
        };
        usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_add(8)
    }

    fn request_op(&self) -> rpc::RequestOp {
        let mut op = rpc::RequestOp::new();
        match self {
            Op::Range(r) => op.set_request_range(r.clone()),
            Op::Put(p) => op.set_request_put(p.clone()),
            Op::Delete(d) => op.set_request_delete_range(d.clone()),
        }
        op
    }

    /// Its answer in a batch's answer, with the batch's header (as it would have had
    /// alone: one member, one revision).
    fn answer(&self, mut op: rpc::ResponseOp, header: &rpc::ResponseHeader) -> Result<Answer> {
        let wrong = || Error::InvalidResponse {
            reason: "a batch answered a request with the answer of another kind".to_owned(),
        };
        Ok(match self {
            Op::Range(_) if op.has_response_range() => {
                let mut r = op.take_response_range();
                r.set_header(header.clone());
                Answer::Range(r)
            }
            Op::Put(_) if op.has_response_put() => {
                let mut r = op.take_response_put();
                r.set_header(header.clone());
                Answer::Put(r)
            }
            Op::Delete(_) if op.has_response_delete_range() => {
                let mut r = op.take_response_delete_range();
                r.set_header(header.clone());
                Answer::Delete(r)
            }
            _ => return Err(wrong()),
        })
    }
}

/// What a coalescer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Linearizable,
    Serializable,
    Write,
}

/// A client's coalescers: linearizable reads and serializable reads (unless reads are
/// not coalesced), and writes (if they are).
#[derive(Debug)]
pub(crate) struct Coalescers {
    linearizable: Option<Coalescer>,
    serializable: Option<Coalescer>,
    writes: Option<Coalescer>,
}

impl Coalescers {
    /// The coalescers the settings ask for; `None` if neither.
    pub(crate) fn new(reads: bool, writes: bool) -> Option<Coalescers> {
        (reads || writes).then(|| Coalescers {
            linearizable: reads.then(|| Coalescer::new(Kind::Linearizable)),
            serializable: reads.then(|| Coalescer::new(Kind::Serializable)),
            writes: writes.then(|| Coalescer::new(Kind::Write)),
        })
    }

    /// Both kinds of reads' batches, added up.
    pub(crate) fn reads(&self) -> Coalesced {
        let stats = |c: &Option<Coalescer>| c.as_ref().map(Coalescer::stats).unwrap_or_default();
        stats(&self.linearizable).add(stats(&self.serializable))
    }

    /// The writes' batches.
    pub(crate) fn writes(&self) -> Coalesced {
        self.writes
            .as_ref()
            .map(Coalescer::stats)
            .unwrap_or_default()
    }

    /// The coalescer of reads like `request`, if reads are coalesced and it may be: a
    /// read at the latest revision.
    pub(crate) fn read(&self, request: &rpc::RangeRequest) -> Option<&Coalescer> {
        if request.revision != 0 {
            return None;
        }
        if request.serializable {
            self.serializable.as_ref()
        } else {
            self.linearizable.as_ref()
        }
    }

    /// The coalescer of writes, if writes are coalesced.
    pub(crate) fn write(&self) -> Option<&Coalescer> {
        self.writes.as_ref()
    }
}

/// The requests of one kind, queued while [`DEPTH`] calls of that kind are in flight.
pub(crate) struct Coalescer {
    kind: Kind,
    /// The most operations a batch may hold now.
    max_ops: AtomicUsize,
    state: Mutex<State>,
    /// Batches answered, the requests they carried, the most one carried, and those
    /// that failed.
    batches: AtomicU64,
    requests: AtomicU64,
    largest: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("kind", &self.kind)
            .field("max_ops", &self.max_ops.load(Ordering::Relaxed))
            .finish()
    }
}

#[derive(Default)]
struct State {
    /// Calls of this kind in flight: at [`DEPTH`], a new request queues.
    in_flight: usize,
    queue: Vec<Queued>,
    /// Numbers the queued requests, so that one can find itself to leave.
    next: u64,
}

/// A request waiting for its turn.
struct Queued {
    id: u64,
    op: Op,
    deadline: Instant,
    timeout: Duration,
    reply: Tell<Turn>,
}

/// What a queued caller is told.
enum Turn {
    /// Its answer, from a batch.
    Answer(Result<Answer>),
    /// It sends this batch, its own request first.
    Lead(Vec<Queued>),
    /// Its request goes alone after all (the batch failed, or came too late): here it is.
    Alone(Op),
}

impl Coalescer {
    fn new(kind: Kind) -> Coalescer {
        Coalescer {
            kind,
            max_ops: AtomicUsize::new(MAX_OPS),
            state: Mutex::new(State::default()),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    fn stats(&self) -> Coalesced {
        Coalesced {
            batches: self.batches.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Sends `op` within `timeout` (more than zero): at once if fewer than [`DEPTH`]
    /// calls of this kind are in flight, else in a batch that follows one of them.
    pub(crate) fn call(&self, caller: &Caller, op: Op, timeout: Duration) -> Result<Answer> {
        let deadline = crate::time::deadline(timeout);
        let (id, turn) = {
            let mut state = self.state.lock();
            if state.in_flight < DEPTH {
                state.in_flight += 1;
                drop(state);
                let _flight = InFlight(self);
                return self.alone(caller, &op, timeout);
            }
            let (reply, turn) = park::handover();
            let id = state.next;
            state.next += 1;
            state.queue.push(Queued {
                id,
                op,
                deadline,
                timeout,
                reply,
            });
            (id, turn)
        };
        match self.wait(&turn, id, deadline, timeout)? {
            Turn::Answer(answer) => answer,
            Turn::Alone(op) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(queued_too_long(timeout));
                }
                self.alone(caller, &op, left)
            }
            Turn::Lead(batch) => {
                let _flight = InFlight(self);
                self.send(caller, batch)
            }
        }
    }

    /// Waits for a queued caller's turn until its deadline; leaves the queue then, if it
    /// is still in it; if it was taken into a batch, waits for that batch's word.
    fn wait(
        &self,
        turn: &Hear<Turn>,
        id: u64,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Turn> {
        match turn.until(deadline) {
            Ok(turn) => return Ok(turn),
            Err(Unheard::Dropped) => return Err(queued_too_long(timeout)),
            Err(Unheard::Timeout) => {}
        }
        {
            let mut state = self.state.lock();
            if let Some(at) = state.queue.iter().position(|q| q.id == id) {
                state.queue.remove(at);
                return Err(queued_too_long(timeout));
            }
        }
        // Taken: the word is on its way (a lead at once, an answer by the batch's
        // deadline, which is no later than this caller's).
        turn.until(crate::time::deadline(HANDOVER_GRACE))
            .map_err(|_| queued_too_long(timeout))
    }

    /// A request sent alone.
    fn alone(&self, caller: &Caller, op: &Op, timeout: Duration) -> Result<Answer> {
        match op {
            Op::Range(r) => {
                let rpc = if self.kind == Kind::Serializable {
                    Rpc::SerializableRange
                } else {
                    Rpc::Range
                };
                caller
                    .unary(rpc, timeout, |s, opt| s.kv.range_async_opt(r, opt))
                    .map(Answer::Range)
            }
            Op::Put(p) => caller
                .unary(Rpc::Put, timeout, |s, opt| s.kv.put_async_opt(p, opt))
                .map(Answer::Put),
            Op::Delete(d) => caller
                .unary(Rpc::DeleteRange, timeout, |s, opt| {
                    s.kv.delete_range_async_opt(d, opt)
                })
                .map(Answer::Delete),
        }
    }

    /// A call in flight returned: hands the queue (up to a batch of it) to its first
    /// caller whose deadline has not passed, or counts one call fewer in flight. A write
    /// of a key the batch already has waits for the next batch.
    fn done(&self) {
        let max_ops = self.max_ops.load(Ordering::Relaxed).max(1);
        let mut state = self.state.lock();
        let now = Instant::now();
        let mut batch: Vec<Queued> = Vec::new();
        let mut left = Vec::new();
        let mut keys: HashSet<Vec<u8>> = HashSet::new();
        let mut bytes = 0usize;
        for queued in state.queue.drain(..) {
            let size = queued.op.size();
            let full = batch.len() == max_ops
                || (!batch.is_empty() && bytes.saturating_add(size) > MAX_BYTES);
            if full {
                left.push(queued);
            } else if queued.deadline <= now {
                queued
                    .reply
                    .give(Turn::Answer(Err(queued_too_long(queued.timeout))));
            } else if self.kind == Kind::Write && !keys.insert(queued.op.key().to_vec()) {
                left.push(queued);
            } else {
                bytes = bytes.saturating_add(size);
                batch.push(queued);
            }
        }
        state.queue = left;
        if batch.is_empty() {
            state.in_flight -= 1;
            return;
        }
        drop(state);
        let lead = std::mem::replace(&mut batch[0].reply, Tell::nobody());
        // The caller is waiting: it leaves the queue only under the lock, and it was
        // taken.
        lead.give(Turn::Lead(batch));
    }

    /// Sends `batch` (this caller's own request first) as one transaction and hands each
    /// of the others its answer; this caller's own answer.
    fn send(&self, caller: &Caller, mut batch: Vec<Queued>) -> Result<Answer> {
        let own = batch.remove(0);
        let deadline = batch
            .iter()
            .map(|q| q.deadline)
            .fold(own.deadline, Instant::min);
        let left = deadline.saturating_duration_since(Instant::now());
        if batch.is_empty() || left.is_zero() {
            for other in batch {
                other.reply.give(Turn::Alone(other.op));
            }
            return self.own_alone(caller, &own, None);
        }
        let count = batch.len() + 1;
        let txn = rpc::TxnRequest {
            success: std::iter::once(&own)
                .chain(&batch)
                .map(|q| q.op.request_op())
                .collect::<Vec<_>>()
                .into(),
            ..Default::default()
        };
        let rpc = match self.kind {
            Kind::Linearizable => Rpc::ReadOnlyTxn,
            Kind::Serializable => Rpc::SerializableReadOnlyTxn,
            Kind::Write => Rpc::Txn,
        };
        let answered = caller
            .unary(rpc, left, |s, opt| s.kv.txn_async_opt(&txn, opt))
            .and_then(|mut r| {
                let header = r.take_header();
                let ops = r.take_responses();
                if ops.len() != count {
                    return Err(Error::InvalidResponse {
                        reason: format!("{} answers to a batch of {count}", ops.len()),
                    });
                }
                std::iter::once(&own)
                    .chain(&batch)
                    .zip(ops)
                    .map(|(q, op)| q.op.answer(op, &header))
                    .collect::<Result<Vec<Answer>>>()
            });
        match answered {
            Ok(mut answers) => {
                let carried = count as u64;
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.requests.fetch_add(carried, Ordering::Relaxed);
                self.largest.fetch_max(carried, Ordering::Relaxed);
                let first = answers.remove(0);
                for (other, answer) in batch.into_iter().zip(answers) {
                    other.reply.give(Turn::Answer(Ok(answer)));
                }
                Ok(first)
            }
            Err(e) if e.is_write_outcome_unknown() => {
                // Applied or not, all together: every write of the batch is unknown.
                self.failed.fetch_add(1, Ordering::Relaxed);
                let endpoint = e.endpoint().unwrap_or_default().to_owned();
                for other in batch {
                    other
                        .reply
                        .give(Turn::Answer(Err(Error::WriteOutcomeUnknown {
                            endpoint: endpoint.clone(),
                            source: Box::new(Error::BatchFailed {
                                requests: count,
                                message: e.to_string(),
                            }),
                        })));
                }
                Err(e)
            }
            Err(e) => {
                // Applied nowhere: each request goes alone, for its own answer.
                self.failed.fetch_add(1, Ordering::Relaxed);
                if e.code() == Some(ServerCode::TooManyOps) {
                    // A cluster with a lower --max-txn-ops: halve until batches pass.
                    let lower = (count / 2).max(1);
                    self.max_ops.fetch_min(lower, Ordering::Relaxed);
                    log::debug!("etcd: batches of {count} refused; now at most {lower}");
                }
                for other in batch {
                    other.reply.give(Turn::Alone(other.op));
                }
                self.own_alone(caller, &own, Some(e))
            }
        }
    }

    /// The batch's first request sent alone within its own deadline; `failed`, the
    /// batch's failure, if no time is left.
    fn own_alone(&self, caller: &Caller, own: &Queued, failed: Option<Error>) -> Result<Answer> {
        let left = own.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(failed.unwrap_or_else(|| queued_too_long(own.timeout)));
        }
        self.alone(caller, &own.op, left)
    }
}

/// A call of a coalescer in flight: when it ends, even by a panic, the queue goes on.
struct InFlight<'a>(&'a Coalescer);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}

fn queued_too_long(timeout: Duration) -> Error {
    Error::DeadlineExceeded {
        endpoint: QUEUED.to_owned(),
        timeout,
    }
}
