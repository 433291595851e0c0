//! The hub: one thread (`etcd-watch`) that drives every watch of a client over one
//! bidirectional stream, on a healthy member chosen by the balancer.
//!
//! Watchers hand it commands (create, cancel, progress) through its inbox and are woken
//! by their channels; the thread parks between messages, woken by the stream, by a command
//! or by the balancer's news. When the stream ends or its member turns unhealthy (hung, cut
//! off, without a leader, gone), the thread opens a stream on another member and creates
//! every watch again from the revision after the last one it delivered, dropping what it
//! already delivered: nothing is lost, repeated or reordered. It does not wait for the
//! balancer to find a hung member: a stream that stays behind the client's revision floor
//! is checked at once (see `liveness`).
//!
//! Watch IDs are chosen here, per client, and never reused: etcd (3.4 and later) takes a
//! client-chosen ID, so creates are pipelined (no round trip each) and the same ID serves a
//! watch on every stream it moves to. Create replies come back in request order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use super::liveness::{Liveness, Pace, QUIET};
use super::responses::{Event, WatchResponse};
use crate::call::{open_stream, DuplexStream, Next, Opener, Route};
use crate::error::Error;
use crate::park;
use crate::proto::rpc::{
    self, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use crate::time;

/// How long one attempt to open a stream waits for a healthy endpoint.
const OPEN_WAIT: Duration = Duration::from_millis(500);

/// The longest pause between two failed attempts to open a stream.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// How often the thread looks around when nothing wakes it.
const IDLE: Duration = Duration::from_secs(1);

/// Why a watch ended; the watcher turns it into its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    Compacted(i64),
    Lagged { resume_from: i64, buffer: usize },
    Canceled(String),
    Closed,
}

impl End {
    pub(crate) fn error(&self) -> Error {
        match self {
            End::Compacted(compact_revision) => Error::WatchCompacted {
                compact_revision: *compact_revision,
            },
            End::Lagged {
                resume_from,
                buffer,
            } => Error::WatchLagged {
                resume_from: *resume_from,
                buffer: *buffer,
            },
            End::Canceled(reason) => Error::WatchCanceled {
                reason: reason.clone(),
            },
            End::Closed => Error::Closed,
        }
    }
}

/// What a watcher and the hub share: why the watch ended, once it has.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) end: Mutex<Option<End>>,
}

/// A watch to start: its request (with its ID), and where its responses go.
pub(crate) struct Registration {
    pub(crate) request: WatchCreateRequest,
    pub(crate) sender: Sender<WatchResponse>,
    /// Takes the revision the watch was created at, once.
    pub(crate) created: Sender<i64>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) buffer: usize,
}

/// What a watcher asks of the hub.
pub(crate) enum Command {
    Create(Box<Registration>),
    Cancel(i64),
    Progress,
}

/// The hub of one client; shared by its watchers and its thread.
pub(crate) struct Hub {
    inbox: Mutex<Vec<Command>>,
    thread: Mutex<Option<Thread>>,
    stopping: AtomicBool,
    next_id: AtomicI64,
    /// The endpoint of the current stream, for tests that fault it.
    endpoint: Mutex<Option<String>>,
    /// How many streams have been opened, for tests.
    opened: AtomicU64,
    /// The thread's state; only the thread locks it. Kept here so that a restart after a
    /// panic goes on with every watch.
    state: Mutex<State>,
}

impl Hub {
    pub(crate) fn new() -> Arc<Hub> {
        Arc::new(Hub {
            inbox: Mutex::new(Vec::new()),
            thread: Mutex::new(None),
            stopping: AtomicBool::new(false),
            next_id: AtomicI64::new(1),
            endpoint: Mutex::new(None),
            opened: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        })
    }

    /// The thread to wake for a command.
    pub(crate) fn set_thread(&self, thread: Thread) {
        *self.thread.lock() = Some(thread);
    }

    /// A new watch ID, never used before on this client.
    pub(crate) fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The endpoint the stream is on, if one is open.
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.endpoint.lock().clone()
    }

    /// How many streams have been opened so far.
    pub(crate) fn streams_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Hands the thread a command; refused once the client is closed.
    pub(crate) fn tell(&self, command: Command) -> Result<(), Error> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.inbox.lock().push(command);
        self.wake();
        Ok(())
    }

    /// Makes the thread end every watch with [`Error::Closed`] and return.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake();
    }

    /// Gives the current stream up, and forgets its endpoint.
    fn detach(&self, state: &mut State, why: &str) {
        *self.endpoint.lock() = None;
        state.detach(why);
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.lock().as_ref() {
            thread.unpark();
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("stopping", &self.stopping.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One watch as the thread keeps it.
struct Live {
    registration: Box<Registration>,
    /// The revision a new create starts from: the request's own until the watch has been
    /// created or has delivered, then the one after what it has seen.
    next_revision: i64,
    /// The last revision delivered (0: none).
    delivered: i64,
    /// Created on the current stream.
    created: bool,
    /// Told its creation revision.
    told: bool,
    /// Fragments of a response being put together: its header and events so far.
    fragments: Option<(Option<rpc::ResponseHeader>, Vec<Event>)>,
}

impl Live {
    /// The create request for the current stream: from where it left off.
    fn create(&self) -> WatchRequest {
        let mut create = self.registration.request.clone();
        if self.next_revision > 0 {
            create.start_revision = self.next_revision;
        }
        let mut request = WatchRequest::new();
        request.set_create_request(create);
        request
    }
}

#[derive(Default)]
struct State {
    watches: BTreeMap<i64, Live>,
    stream: Option<DuplexStream<WatchRequest, rpc::WatchResponse>>,
    outbox: VecDeque<WatchRequest>,
    /// IDs of the creates sent on the current stream and not yet answered, in order.
    creating: VecDeque<i64>,
    /// Failed opens in a row.
    failures: u32,
    /// Whether the current stream's member is still there.
    liveness: Liveness,
    /// Progress requests of watchers not yet answered.
    asked: usize,
}

/// What woke the thread.
enum Wake {
    Look,
    Next(Next<rpc::WatchResponse>),
    Broken(Error),
}

/// The thread's body: runs until the hub is stopped.
pub(crate) fn run(hub: &Hub, route: &Route) {
    let open: &Opener<WatchRequest, rpc::WatchResponse> = &|s, opt| s.watch.watch_opt(opt);
    let mut state = hub.state.lock();
    let state = &mut *state;
    loop {
        if hub.stopping.load(Ordering::Acquire) {
            state.end_all(End::Closed);
            return;
        }
        let commands = std::mem::take(&mut *hub.inbox.lock());
        for command in commands {
            state.apply(command);
        }
        if state.stream.is_none() && !state.watches.is_empty() {
            match open_stream(route, time::deadline(OPEN_WAIT), open) {
                Ok(stream) => {
                    *hub.endpoint.lock() = Some(stream.endpoint().to_owned());
                    hub.opened.fetch_add(1, Ordering::Relaxed);
                    state.attach(stream);
                }
                Err(Error::Closed) => {
                    state.end_all(End::Closed);
                    return;
                }
                Err(e) => {
                    log::debug!("etcd watch stream not opened: {e}");
                    state.failures += 1;
                    let pause = Duration::from_millis(5)
                        .saturating_mul(1 << state.failures.min(8))
                        .min(MAX_BACKOFF);
                    park::park_until(time::deadline(pause));
                    continue;
                }
            }
        }
        // A member answers a progress request from its own store, with no raft round trip:
        // half the time a call may wait on the leader before it is thought stalled.
        let answer = (route.balancer.stall() / 2).max(QUIET);
        // What the client's calls have seen, or its probes of the other members.
        let floor = route.floor.get().max(route.balancer.probed_revision());
        let look = match state.keep_up(route, floor, answer) {
            Pace::Fine(look) => look,
            Pace::Ask(look) => {
                state.outbox.push_back(progress_request());
                Some(look)
            }
            Pace::Silent => {
                if let Some(stream) = state.stream.as_ref() {
                    let reason = format!(
                        "its watch stream sent nothing for {} ms after a progress request \
                         (the client has seen revision {floor})",
                        answer.as_millis(),
                    );
                    stream.report_silent(route, &reason);
                    hub.detach(state, &reason);
                }
                continue;
            }
        };
        let news = route.balancer.news();
        let wake_by = look.map_or(time::deadline(IDLE), |at| at.min(time::deadline(IDLE)));
        let woke = park::wait(Some(news), wake_by, |cx| {
            if hub.stopping.load(Ordering::Acquire) || !hub.inbox.lock().is_empty() {
                return Poll::Ready(Wake::Look);
            }
            let Some(stream) = state.stream.as_mut() else {
                return Poll::Pending;
            };
            if let Err(e) = stream.poll_send(cx, &mut state.outbox) {
                return Poll::Ready(Wake::Broken(e));
            }
            stream.poll_next(cx).map(Wake::Next)
        });
        match woke {
            None | Some(Wake::Look) => {}
            Some(Wake::Next(Next::Message(response))) => {
                let revision = response.header.as_ref().map_or(0, |h| h.revision);
                route.floor.saw(revision);
                state.liveness.heard(revision, Instant::now());
                state.handle(response);
            }
            Some(Wake::Next(Next::Ended(error))) => {
                let why = error.map_or("the server ended it".to_owned(), |e| e.to_string());
                hub.detach(state, &why);
            }
            Some(Wake::Next(Next::Abandoned(error))) | Some(Wake::Broken(error)) => {
                hub.detach(state, &error.to_string());
            }
        }
    }
}

impl State {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Create(registration) => {
                let id = registration.request.watch_id;
                let live = Live {
                    next_revision: registration.request.start_revision,
                    registration,
                    delivered: 0,
                    created: false,
                    told: false,
                    fragments: None,
                };
                if self.stream.is_some() {
                    self.outbox.push_back(live.create());
                    self.creating.push_back(id);
                }
                self.watches.insert(id, live);
            }
            Command::Cancel(id) => {
                if let Some(live) = self.watches.remove(&id) {
                    self.cancel_on_server(id, live.created);
                }
            }
            Command::Progress => {
                self.asked += 1;
                if self.stream.is_some() {
                    self.outbox.push_back(progress_request());
                }
            }
        }
    }

    /// One look of the liveness check (see [`Liveness`]) at the current stream.
    fn keep_up(&mut self, route: &Route, floor: i64, answer: Duration) -> Pace {
        let Some(stream) = self.stream.as_ref().filter(|_| !self.watches.is_empty()) else {
            return Pace::Fine(None);
        };
        let epoch = route.balancer.leader_epoch();
        let doubts = stream.doubted(route);
        self.liveness
            .look(floor, epoch, doubts, answer, Instant::now())
    }

    /// A new stream: every watch is created on it, from where it left off.
    fn attach(&mut self, stream: DuplexStream<WatchRequest, rpc::WatchResponse>) {
        self.failures = 0;
        self.outbox.clear();
        self.creating.clear();
        for (&id, live) in &mut self.watches {
            live.created = false;
            live.fragments = None;
            self.outbox.push_back(live.create());
            self.creating.push_back(id);
        }
        if self.asked > 0 {
            // Asked on the stream that is gone: one reply on this one answers them all.
            self.asked = 1;
            self.outbox.push_back(progress_request());
        }
        self.liveness.reset();
        self.stream = Some(stream);
    }

    /// The stream is gone: cancel it, and open another at the next turn.
    fn detach(&mut self, why: &str) {
        if let Some(mut stream) = self.stream.take() {
            log::info!("etcd watch stream on {} given up: {why}", stream.endpoint());
            stream.cancel();
        }
        self.outbox.clear();
        self.creating.clear();
    }

    fn cancel_on_server(&mut self, id: i64, created: bool) {
        // A watch not yet created is cancelled once its create is answered (see handle).
        if self.stream.is_some() && created {
            let mut request = WatchRequest::new();
            request.set_cancel_request(WatchCancelRequest {
                watch_id: id,
                ..Default::default()
            });
            self.outbox.push_back(request);
        }
    }

    /// Ends a watch: the watcher reads what it holds, then `end` as its error.
    fn end(&mut self, id: i64, end: End) {
        if let Some(live) = self.watches.remove(&id) {
            *live.registration.shared.end.lock() = Some(end);
            self.cancel_on_server(id, live.created);
        }
    }

    fn end_all(&mut self, end: End) {
        let ids: Vec<i64> = self.watches.keys().copied().collect();
        for id in ids {
            self.end(id, end.clone());
        }
        self.detach("the client is closing");
    }

    fn handle(&mut self, mut response: rpc::WatchResponse) {
        let header = response.header.take();
        let revision = header.as_ref().map_or(0, |h| h.revision);
        if response.created {
            // Create replies come in request order; a failed one may carry no usable ID.
            let id = self.creating.pop_front().unwrap_or(response.watch_id);
            let Some(live) = self.watches.get_mut(&id) else {
                // Cancelled before its create was answered.
                if !response.canceled {
                    self.cancel_on_server(id, true);
                }
                return;
            };
            if response.canceled {
                let end = if response.compact_revision > 0 {
                    End::Compacted(response.compact_revision)
                } else {
                    End::Canceled(response.cancel_reason)
                };
                self.end(id, end);
                return;
            }
            live.created = true;
            if live.next_revision == 0 {
                live.next_revision = revision + 1;
            }
            if !live.told {
                live.told = true;
                let _ = live.registration.created.try_send(revision);
            }
            return;
        }
        let id = response.watch_id;
        if response.compact_revision > 0 {
            self.end(id, End::Compacted(response.compact_revision));
            return;
        }
        if response.canceled {
            let reason = std::mem::take(&mut response.cancel_reason);
            self.end(id, End::Canceled(reason));
            return;
        }
        if id == -1 {
            // A requested progress report, for the whole stream: a watcher's, or the
            // thread's own liveness check (then it has done its work by arriving).
            if self.asked == 0 {
                return;
            }
            self.asked -= 1;
            let ids: Vec<i64> = self.watches.keys().copied().collect();
            for id in ids {
                self.deliver(id, WatchResponse::from_raw(header.as_ref(), Vec::new()));
            }
            return;
        }
        let Some(live) = self.watches.get_mut(&id) else {
            return;
        };
        let mut events: Vec<Event> = response.events.into_iter().map(Event::from).collect();
        if response.fragment {
            let (_, so_far) = live
                .fragments
                .get_or_insert_with(|| (header.clone(), Vec::new()));
            so_far.append(&mut events);
            return;
        }
        let header = match live.fragments.take() {
            Some((first, mut so_far)) => {
                so_far.append(&mut events);
                events = so_far;
                header.or(first)
            }
            None => header,
        };
        let had_events = !events.is_empty();
        // After a move, the new stream replays from the revision after the last delivered:
        // anything at or below it was delivered before.
        events.retain(|e| e.revision() > live.delivered);
        if had_events && events.is_empty() {
            return;
        }
        if let Some(last) = events.last() {
            live.delivered = last.revision();
            live.next_revision = live.delivered + 1;
        }
        self.deliver(id, WatchResponse::from_raw(header.as_ref(), events));
    }

    /// Hands a response to its watcher without ever waiting: a full buffer ends the watch
    /// as lagged, a watcher gone cancels it.
    fn deliver(&mut self, id: i64, response: WatchResponse) {
        let Some(live) = self.watches.get(&id) else {
            return;
        };
        let first = response.events().first().map(Event::revision);
        let sender = &live.registration.sender;
        if sender.len() >= live.registration.buffer {
            let buffer = live.registration.buffer;
            let resume_from = first.unwrap_or(live.next_revision);
            self.end(
                id,
                End::Lagged {
                    resume_from,
                    buffer,
                },
            );
            return;
        }
        // Unbounded: a send never waits; it fails only when the watcher is gone.
        if sender.send(response).is_err() {
            let created = live.created;
            self.watches.remove(&id);
            self.cancel_on_server(id, created);
        }
    }
}

/// A request for the stream's progress (answered with watch ID -1).
fn progress_request() -> WatchRequest {
    let mut request = WatchRequest::new();
    request.set_progress_request(WatchProgressRequest::new());
    request
}
