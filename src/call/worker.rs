//! The stream worker: what the watch hub and the lease keeper have in common, once.
//!
//! Each of them is one dedicated thread that drives one bidirectional stream for every
//! watch (every kept lease) of a client. The worker is that thread's loop: it takes the
//! handles' commands from the mailbox, opens the stream on a healthy member (waiting for
//! one, with a growing pause after each failed open), hands the owner each message as it
//! comes, asks the owner at every turn whether the stream still keeps up, and moves the
//! stream to another member when it ends, when its member is found unhealthy, or when
//! the owner finds it silent. The owner (the hub's watches, the keeper's leases) keeps
//! only its own state and messages: what to send on a new stream, what a message means,
//! when it wants to look again. One type, two threads, as the design says.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::thread::Thread;
use std::time::{Duration, Instant};

use grpcio::{CallOption, ClientDuplexReceiver, ClientDuplexSender};
use parking_lot::Mutex;

use super::auth::token_refused;
use super::caller::Caller;
use super::mailbox::Mailbox;
use super::retry::backoff;
use super::route::Route;
use super::stream::{open_stream, DuplexStream, Next};
use crate::error::{Error, Result};
use crate::park;
use crate::secret::Secret;
use crate::time;
use crate::transport::Stubs;

/// How long one attempt to open a stream waits for a healthy endpoint.
pub(crate) const OPEN_WAIT: Duration = Duration::from_millis(500);

/// How often the thread looks around when nothing wakes it.
pub(crate) const IDLE: Duration = Duration::from_secs(1);

/// What the owner's look at the open stream found.
pub(crate) enum Look {
    /// Keeping up: look again by then at the latest.
    Fine(Instant),
    /// Silent when it should not be: give the stream up (its member is reported suspect),
    /// for this reason.
    Silent(String),
}

/// What a stream's owner tells the worker, and how it answers the stream's messages.
pub(crate) trait Owner: Send + 'static {
    /// What a handle asks of the thread.
    type Command: Send;
    /// What goes on the stream.
    type Request: Send + Unpin + 'static;
    /// What comes on it.
    type Response: Send + Unpin + 'static;
    /// The stream's name in logs: "watch", "keepalive".
    const NAME: &'static str;

    /// Opens the stream on an endpoint's stubs.
    #[allow(clippy::type_complexity)]
    fn open(
        stubs: &Stubs,
        option: CallOption,
    ) -> grpcio::Result<(
        ClientDuplexSender<Self::Request>,
        ClientDuplexReceiver<Self::Response>,
    )>;

    /// What waits to be sent on the stream: the owner queues, the worker sends.
    fn outbox(&mut self) -> &mut VecDeque<Self::Request>;

    /// A handle's command.
    fn command(&mut self, command: Self::Command);

    /// True while there is something to keep a stream open for.
    fn wants_stream(&self) -> bool;

    /// At each turn, before anything else: the owner's own timers.
    fn tick(&mut self, _now: Instant) {}

    /// A new stream, its outbox empty: what must go on it first (every watch created
    /// again, every lease renewed at once).
    fn attached(&mut self);

    /// The stream is gone, for `why` (its outbox was emptied).
    fn detached(&mut self, why: Error);

    /// An attempt to open a stream failed, for `error`.
    fn open_failed(&mut self, _error: Error) {}

    /// The latest moment to look again while no stream is open.
    fn latest(&self, now: Instant) -> Instant {
        now + IDLE
    }

    /// One look at the open stream: does it keep up?
    fn look(&mut self, view: &StreamView<'_>, now: Instant) -> Look;

    /// A message from the stream. `Err` gives the stream up, for that reason.
    fn received(
        &mut self,
        view: &StreamView<'_>,
        message: Self::Response,
    ) -> std::result::Result<(), String>;

    /// The client is closing: end everything, its handles say why.
    fn closing(&mut self);
}

/// What an owner may see of the client while it looks at its stream: the narrow view of
/// the call layer, never the balancer itself.
pub(crate) struct StreamView<'a> {
    route: &'a Route,
    endpoint: &'a str,
    doubted: bool,
    /// The token the stream was opened with.
    token: Option<Arc<Secret>>,
}

/// How long renewing a stream's token may take.
const RENEW_TIMEOUT: Duration = Duration::from_secs(5);

impl StreamView<'_> {
    /// The endpoint the stream is on.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint
    }

    /// How long the member may take to answer a question the owner asks on the stream:
    /// half the time a call may wait on the leader before it is thought stalled, and at
    /// least `min`.
    pub(crate) fn answer_time(&self, min: Duration) -> Duration {
        (self.route.balancer.stall() / 2).max(min)
    }

    /// The highest revision the client has seen on any call, or its probes of any member.
    pub(crate) fn floor(&self) -> i64 {
        self.route
            .floor
            .get()
            .max(self.route.balancer.probed_revision())
    }

    /// A revision the stream showed: the client has seen it.
    pub(crate) fn saw(&self, revision: i64) {
        self.route.floor.saw(revision);
    }

    /// The balancer's leader epoch: it moves whenever the leader changes or is lost.
    pub(crate) fn leader_epoch(&self) -> u64 {
        self.route.balancer.leader_epoch()
    }

    /// True while the balancer doubts the stream's member: it leads, and a call on it
    /// stalled.
    pub(crate) fn doubted(&self) -> bool {
        self.doubted
    }

    /// The member refused the stream's token (expired, issued before the last change of
    /// users and roles, or missing): authenticates again, unless a newer token is there
    /// already. True when there is a token to open a new stream with; false when the
    /// client cannot renew (no user, or a token the user gave) or the authentication
    /// failed (logged).
    pub(crate) fn renew_token(&self) -> bool {
        renew_stream_token(self.route, self.token.as_ref())
    }
}

/// Authenticates again for a stream opened with `stale` (see [`StreamView::renew_token`]).
fn renew_stream_token(route: &Route, stale: Option<&Arc<Secret>>) -> bool {
    let Some(tokens) = route.tokens.as_ref() else {
        return false;
    };
    let deadline = time::deadline(RENEW_TIMEOUT);
    match super::unary::renew_token(route, tokens, stale, RENEW_TIMEOUT, deadline) {
        Ok(renewed) => renewed,
        Err(e) => {
            log::warn!("etcd: authenticating again for a stream failed: {e}");
            false
        }
    }
}

/// The thread's side of a worker: the owner and its stream.
struct Side<O: Owner> {
    owner: O,
    stream: Option<DuplexStream<O::Request, O::Response>>,
    /// Failed opens in a row.
    failures: u32,
    /// Streams ended for their token in a row, with no message between.
    token_refusals: u32,
}

/// One stream worker: the mailbox its handles write to, and the thread's state.
pub(crate) struct Worker<O: Owner> {
    mailbox: Mailbox<O::Command>,
    /// Only the thread locks it; kept here so that a restart after a panic goes on with
    /// everything the owner held.
    side: Mutex<Side<O>>,
}

/// What woke the thread.
enum Wake<Resp> {
    Look,
    Next(Next<Resp>),
    Broken(Error),
}

impl<O: Owner> Worker<O> {
    pub(crate) fn new(owner: O) -> Worker<O> {
        Worker {
            mailbox: Mailbox::default(),
            side: Mutex::new(Side {
                owner,
                stream: None,
                failures: 0,
                token_refusals: 0,
            }),
        }
    }

    /// Hands the thread a command; refused once the client is closed.
    pub(crate) fn tell(&self, command: O::Command) -> Result<()> {
        self.mailbox.tell(command)
    }

    /// Makes the thread end everything (the owner's handles say the client closed) and
    /// return.
    pub(crate) fn stop(&self) {
        self.mailbox.stop();
    }

    /// The endpoint the stream is on, if one is open.
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.mailbox.endpoint()
    }

    /// How many streams have been opened so far.
    pub(crate) fn streams_opened(&self) -> u64 {
        self.mailbox.streams_opened()
    }

    /// The thread's body: runs until the worker is stopped.
    pub(crate) fn run(&self, route: &Route) {
        let mut side = self.side.lock();
        let side = &mut *side;
        loop {
            if self.mailbox.stopping() {
                side.owner.closing();
                self.detach(side, Error::Closed);
                // Commands told meanwhile are dropped, not left for nobody.
                self.mailbox.stop();
                return;
            }
            for command in self.mailbox.take() {
                side.owner.command(command);
            }
            let now = Instant::now();
            side.owner.tick(now);
            if side.stream.is_none() && side.owner.wants_stream() {
                match open_stream(route, time::deadline(OPEN_WAIT), &O::open) {
                    Ok(stream) => {
                        self.mailbox.set_endpoint(Some(stream.endpoint()));
                        side.failures = 0;
                        side.owner.outbox().clear();
                        side.stream = Some(stream);
                        side.owner.attached();
                    }
                    // The client is closed.
                    Err(Error::Closed) => {
                        side.owner.closing();
                        self.mailbox.stop();
                        return;
                    }
                    Err(e) => {
                        log::debug!("etcd {} stream not opened: {e}", O::NAME);
                        side.owner.open_failed(e);
                        side.failures += 1;
                        let pause = time::deadline(backoff(side.failures));
                        park::park_until(pause.min(side.owner.latest(now)));
                        continue;
                    }
                }
            }
            let wake_by = match side.stream.as_ref() {
                Some(stream) => {
                    let view = StreamView {
                        route,
                        endpoint: stream.endpoint(),
                        doubted: stream.doubted(route),
                        token: stream.token(),
                    };
                    match side.owner.look(&view, Instant::now()) {
                        Look::Fine(at) => at,
                        Look::Silent(reason) => {
                            stream.report_silent(route, &reason);
                            let why = Error::Abandoned {
                                endpoint: stream.endpoint().to_owned(),
                                reason,
                            };
                            self.detach(side, why);
                            continue;
                        }
                    }
                }
                None => side.owner.latest(now),
            }
            .min(time::deadline(IDLE));
            let news = route.balancer.news();
            let woke = park::wait(Some(news), wake_by, |cx| {
                if self.mailbox.stopping() || self.mailbox.has_mail() {
                    return Poll::Ready(Wake::Look);
                }
                let Some(stream) = side.stream.as_mut() else {
                    return Poll::Pending;
                };
                if let Err(e) = stream.poll_send(cx, side.owner.outbox()) {
                    return Poll::Ready(Wake::Broken(e));
                }
                stream.poll_next(cx).map(Wake::Next)
            });
            match woke {
                None | Some(Wake::Look) => {}
                Some(Wake::Next(Next::Message(message))) => {
                    side.token_refusals = 0;
                    // A reference count, not the mailbox's lock and a copy, per batch.
                    let endpoint = side.stream.as_ref().map(DuplexStream::shared_endpoint);
                    let view = StreamView {
                        route,
                        endpoint: endpoint.as_ref().map_or("", |e| e.target()),
                        doubted: false,
                        token: side.stream.as_ref().and_then(DuplexStream::token),
                    };
                    // Messages come in batches: take every one that is here.
                    let mut next = Some(message);
                    let mut confused = None;
                    while let Some(message) = next {
                        if let Err(why) = side.owner.received(&view, message) {
                            confused.get_or_insert(why);
                        }
                        next = side.stream.as_mut().and_then(DuplexStream::take_ready);
                    }
                    if let Some(why) = confused {
                        log::warn!("etcd {} stream: {why}; moving it", O::NAME);
                        let endpoint = view.endpoint().to_owned();
                        self.detach(
                            side,
                            Error::Abandoned {
                                endpoint,
                                reason: why,
                            },
                        );
                    }
                }
                Some(Wake::Next(Next::Ended(error))) => {
                    let error = error.unwrap_or_else(|| Error::Abandoned {
                        endpoint: self.endpoint().unwrap_or_default(),
                        reason: format!("the server ended the {} stream", O::NAME),
                    });
                    let refused = token_refused(&error);
                    let stale = side.stream.as_ref().and_then(DuplexStream::token);
                    self.detach(side, error);
                    if refused {
                        // Ended for its token (a keepalive stream's member checks it on
                        // every renewal): the next stream goes with a new one, not with
                        // the one just refused; and if new ones are refused too, after a
                        // growing pause.
                        side.token_refusals += 1;
                        let renewed = renew_stream_token(route, stale.as_ref());
                        if !renewed || side.token_refusals > 1 {
                            let pause = time::deadline(backoff(side.token_refusals));
                            park::park_until(pause.min(side.owner.latest(Instant::now())));
                        }
                    }
                }
                Some(Wake::Next(Next::Abandoned(error))) | Some(Wake::Broken(error)) => {
                    self.detach(side, error);
                }
            }
        }
    }

    /// Gives the current stream up (if one is open) for `why`; the next turn opens
    /// another.
    fn detach(&self, side: &mut Side<O>, why: Error) {
        self.mailbox.set_endpoint(None);
        side.owner.outbox().clear();
        if let Some(mut stream) = side.stream.take() {
            log::info!(
                "etcd {} stream on {} given up: {why}",
                O::NAME,
                stream.endpoint()
            );
            stream.cancel();
            side.owner.detached(why);
        }
    }
}

impl<O: Owner> std::fmt::Debug for Worker<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("stream", &O::NAME)
            .field("stopping", &self.mailbox.stopping())
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

/// The worker in `slot`, started with its thread (named `name`) on first use: the lazy
/// start of the hub and the keeper. The thread is registered with the client's thread
/// registry, which restarts it after a panic and stops and joins it on close. `make`
/// builds what holds the worker (the hub, the keeper); `worker` finds the worker in it.
pub(crate) fn start_once<T, O>(
    slot: &Mutex<Option<Arc<T>>>,
    caller: &Caller,
    name: &'static str,
    make: impl FnOnce() -> T,
    worker: fn(&T) -> &Worker<O>,
) -> Result<Arc<T>>
where
    T: Send + Sync + 'static,
    O: Owner,
{
    let mut slot = slot.lock();
    if let Some(running) = slot.as_ref() {
        return Ok(running.clone());
    }
    let route = caller.stream_route()?;
    let made = Arc::new(make());
    let (stopper, runner) = (made.clone(), made.clone());
    let thread: Thread = caller.spawn_thread(
        name,
        move || worker(&stopper).stop(),
        move || worker(&runner).run(&route),
    )?;
    worker(&made).mailbox.set_thread(thread);
    *slot = Some(made.clone());
    Ok(made)
}
