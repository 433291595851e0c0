//! The stream primitive: a bidirectional gRPC stream opened on a healthy endpoint through
//! the balancer, waited on with the one blocking primitive, given up when its endpoint
//! fails, and reopened elsewhere. Watch and lease keepalive threads build on it.
//!
//! Each stream's messages are moved by a pump, a task on the gRPC poll thread of the
//! stream's channel: the owner queues what to send and takes what came, in batches,
//! without a thread switch per message (see [`DuplexStream`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_core::Stream as _;
use futures_sink::Sink;
use grpcio::{CallOption, ClientDuplexReceiver, ClientDuplexSender, WriteFlags};
use parking_lot::Mutex;

use super::caller::Caller;
use super::route::Route;
use crate::balancer::{Endpoint, Mark, Need};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::time::LONGEST;
use crate::transport::{call_options, Stubs};

/// How a stream is opened on an endpoint's stubs.
pub(crate) type Opener<Req, Resp> =
    dyn Fn(
        &Stubs,
        CallOption,
    ) -> grpcio::Result<(ClientDuplexSender<Req>, ClientDuplexReceiver<Resp>)>;

/// What waiting on a stream brought.
#[derive(Debug)]
pub(crate) enum Next<Resp> {
    /// A message.
    Message(Resp),
    /// The server ended the stream: cleanly (`None`) or with an error.
    Ended(Option<Error>),
    /// Its endpoint was found unhealthy (hung, cut off, without a leader, gone): the
    /// stream was cancelled and should be reopened elsewhere.
    Abandoned(Error),
}

/// A bidirectional stream on one endpoint, whose messages a pump carries.
///
/// The pump is a task on gRPC's poll thread, the one that completes the stream's sends
/// and receives: it hands the C core each message as soon as the last one is taken, and
/// reads the next as soon as one arrives, with no thread between two messages. The owner
/// (the watch hub, the lease keeper) hands it messages and takes what came, in batches,
/// and is woken once per batch rather than once per message.
pub(crate) struct DuplexStream<Req, Resp> {
    pipe: Arc<Mutex<Pipe<Req, Resp>>>,
    endpoint: Arc<Endpoint>,
    /// The user's token the stream was opened with: a member checks it on every watch
    /// created on the stream, for as long as the stream lives.
    token: Option<Arc<Secret>>,
}

/// How many received messages the pump holds for its owner before it stops reading (and
/// HTTP/2 flow control holds the server back).
const INBOX: usize = 4096;

/// What a stream's owner and its pump hand each other.
struct Pipe<Req, Resp> {
    /// To send, in order.
    outbox: VecDeque<Req>,
    /// Received, in order.
    inbox: VecDeque<Resp>,
    /// True when the pump has sent and flushed all it was given.
    flushed: bool,
    /// Why sending failed.
    send_failed: Option<Error>,
    /// How the server ended the stream: cleanly (`Some(None)`) or with an error.
    ended: Option<Option<Error>>,
    /// The pump stopped reading because the inbox was full.
    full: bool,
    cancelled: bool,
    pump: Option<Waker>,
    owner: Option<Waker>,
}

impl<Req, Resp> Pipe<Req, Resp> {
    fn wake_pump(&mut self) -> Option<Waker> {
        self.pump.take()
    }

    /// The oldest message received, and the pump to wake when the inbox has room again.
    fn pop(&mut self) -> (Option<Resp>, Option<Waker>) {
        let message = self.inbox.pop_front();
        let pump = if self.full && self.inbox.len() <= INBOX / 2 {
            self.full = false;
            self.wake_pump()
        } else {
            None
        };
        (message, pump)
    }

    /// Remembers the owner's waker for the pump's next news.
    fn wait_owner(&mut self, cx: &Context<'_>) {
        if !self.owner.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.owner = Some(cx.waker().clone());
        }
    }
}

/// The task on gRPC's poll thread that moves one stream's messages.
struct Pump<Req, Resp> {
    sink: ClientDuplexSender<Req>,
    receiver: ClientDuplexReceiver<Resp>,
    pipe: Arc<Mutex<Pipe<Req, Resp>>>,
    target: String,
    /// Taken from the outbox, not yet handed to gRPC.
    sending: VecDeque<Req>,
    /// False once a send failed.
    can_send: bool,
    /// True while what was handed to gRPC may not be flushed.
    unflushed: bool,
}

impl<Req, Resp> Pump<Req, Resp> {
    /// Hands gRPC what it takes now; true once all of it is sent and flushed.
    fn push(&mut self, cx: &mut Context<'_>) -> grpcio::Result<bool> {
        while !self.sending.is_empty() {
            match Pin::new(&mut self.sink).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(false),
            }
            let Some(message) = self.sending.pop_front() else {
                break;
            };
            Pin::new(&mut self.sink).start_send((message, WriteFlags::default()))?;
            self.unflushed = true;
        }
        if self.unflushed {
            match Pin::new(&mut self.sink).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(false),
            }
        }
        Ok(true)
    }
}

impl<Req: Unpin, Resp: Unpin> Future for Pump<Req, Resp> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let room = {
            let mut pipe = this.pipe.lock();
            if pipe.cancelled {
                drop(pipe);
                this.sink.cancel();
                return Poll::Ready(());
            }
            this.sending.extend(pipe.outbox.drain(..));
            if !pipe.pump.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                pipe.pump = Some(cx.waker().clone());
            }
            INBOX.saturating_sub(pipe.inbox.len())
        };
        let mut failed = None;
        let mut flushed = false;
        if this.can_send {
            match this.push(cx) {
                Ok(done) => flushed = done,
                Err(e) => {
                    this.can_send = false;
                    this.sending.clear();
                    failed = Some(Error::from_grpc(e, &this.target, LONGEST));
                }
            }
        }
        let mut received = Vec::new();
        let mut ended = None;
        while received.len() < room {
            match Pin::new(&mut this.receiver).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => received.push(message),
                Poll::Ready(Some(Err(e))) => {
                    ended = Some(Some(Error::from_grpc(e, &this.target, LONGEST)));
                    break;
                }
                Poll::Ready(None) => {
                    ended = Some(None);
                    break;
                }
                Poll::Pending => break,
            }
        }
        let full = ended.is_none() && received.len() >= room;
        let done = ended.is_some();
        let news = !received.is_empty() || failed.is_some() || done;
        let owner = {
            let mut pipe = this.pipe.lock();
            pipe.inbox.extend(received);
            if failed.is_some() {
                pipe.send_failed = failed;
            }
            if ended.is_some() {
                pipe.ended = ended;
            }
            pipe.full = full;
            let was_flushed = pipe.flushed;
            pipe.flushed = flushed && pipe.outbox.is_empty();
            if news || (pipe.flushed && !was_flushed) {
                pipe.owner.take()
            } else {
                None
            }
        };
        if let Some(owner) = owner {
            owner.wake();
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<Req, Resp> Drop for DuplexStream<Req, Resp> {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl Caller {
    /// The route a stream thread holds: the connections, without the client's ownership,
    /// so that a thread holding it does not keep the client open.
    pub(crate) fn stream_route(&self) -> Result<Arc<Route>> {
        self.route()
    }
}

/// Opens a stream with require-leader metadata (etcd refuses it on a member without a
/// leader, and cancels it once its member has been leaderless for three election
/// timeouts) on a healthy endpoint, waiting for one until `deadline`.
pub(crate) fn open_stream<Req, Resp>(
    route: &Route,
    deadline: Instant,
    open: &Opener<Req, Resp>,
) -> Result<DuplexStream<Req, Resp>>
where
    Req: Send + Unpin + 'static,
    Resp: Send + Unpin + 'static,
{
    let balancer = &route.balancer;
    let Some(endpoint) = balancer.pick(deadline, Need::Healthy) else {
        return Err(if balancer.is_closed() {
            Error::Closed
        } else {
            Error::NoHealthyEndpoint {
                timeout: deadline.saturating_duration_since(Instant::now()),
                endpoints: balancer.failures(),
            }
        });
    };
    // A stream lives as long as it is needed: its deadline is the longest there is.
    // The user's token as it is now: a stream is authorised once, when it opens.
    let token = route.tokens.as_ref().and_then(|t| t.current());
    let (mut sink, receiver) = open(
        endpoint.stubs(),
        call_options(LONGEST, true, token.as_deref()),
    )
    .map_err(|e| Error::from_grpc(e, endpoint.target(), LONGEST))?;
    sink.enhance_batch(true);
    let pipe = Arc::new(Mutex::new(Pipe {
        outbox: VecDeque::new(),
        inbox: VecDeque::new(),
        flushed: true,
        send_failed: None,
        ended: None,
        full: false,
        cancelled: false,
        pump: None,
        owner: None,
    }));
    endpoint.stubs().kv.spawn(Pump {
        sink,
        receiver,
        pipe: pipe.clone(),
        target: endpoint.target().to_owned(),
        sending: VecDeque::new(),
        can_send: true,
        unflushed: false,
    });
    Ok(DuplexStream {
        pipe,
        endpoint,
        token,
    })
}

/// Waits for the stream's next message until `deadline` (`None` after it), woken by the
/// message or by the balancer's news; gives the stream up when its endpoint turns
/// unhealthy. A thread that also sends, as the watch hub, polls the stream itself.
pub(crate) fn next<Req, Resp>(
    route: &Route,
    stream: &mut DuplexStream<Req, Resp>,
    deadline: Instant,
) -> Option<Next<Resp>> {
    let news = route.balancer.news();
    crate::park::wait(Some(news), deadline, |cx| stream.poll_next(cx))
}

/// Sends one message, waiting until `deadline` for the stream to take it.
pub(crate) fn send<Req, Resp>(
    stream: &mut DuplexStream<Req, Resp>,
    message: Req,
    deadline: Instant,
) -> Result<()> {
    let mut outbox = VecDeque::from([message]);
    let sent = crate::park::wait(None, deadline, |cx| {
        match stream.poll_send(cx, &mut outbox) {
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    });
    sent.unwrap_or_else(|| {
        Err(Error::DeadlineExceeded {
            endpoint: stream.endpoint.target().to_owned(),
            timeout: LONGEST,
        })
    })
}

impl<Req, Resp> DuplexStream<Req, Resp> {
    /// The token the stream was opened with.
    pub(crate) fn token(&self) -> Option<Arc<Secret>> {
        self.token.clone()
    }

    /// The endpoint the stream is on.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint.target()
    }

    /// The endpoint itself, to hold while the stream is borrowed for something else.
    pub(crate) fn shared_endpoint(&self) -> Arc<Endpoint> {
        self.endpoint.clone()
    }

    /// Hands the stream's pump every message of `outbox`; true once the pump has sent
    /// and flushed all it was given.
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        outbox: &mut VecDeque<Req>,
    ) -> Result<bool> {
        let mut pipe = self.pipe.lock();
        if let Some(e) = pipe.send_failed.take() {
            return Err(e);
        }
        if outbox.is_empty() {
            if pipe.flushed {
                return Ok(true);
            }
            pipe.wait_owner(cx);
            return Ok(false);
        }
        pipe.outbox.append(outbox);
        pipe.flushed = false;
        pipe.wait_owner(cx);
        let pump = pipe.wake_pump();
        drop(pipe);
        if let Some(pump) = pump {
            pump.wake();
        }
        Ok(false)
    }

    /// Tells the balancer that the stream's member went silent while it had something to
    /// send: the endpoint turns suspect (probed at once, passed over while others are
    /// healthy), so the stream's next pick goes elsewhere.
    pub(crate) fn report_silent(&self, route: &Route, reason: &str) {
        route.balancer.report(&self.endpoint, Mark::Suspect, reason);
    }

    /// True while the balancer doubts the stream's member: it leads, and a call on the
    /// leader has stalled.
    pub(crate) fn doubted(&self, route: &Route) -> bool {
        route.balancer.doubts(&self.endpoint)
    }

    /// Cancels the stream on the server.
    pub(crate) fn cancel(&mut self) {
        let pump = {
            let mut pipe = self.pipe.lock();
            pipe.cancelled = true;
            pipe.wake_pump()
        };
        if let Some(pump) = pump {
            pump.wake();
        }
    }

    /// A message that has come already, without waiting.
    pub(crate) fn take_ready(&mut self) -> Option<Resp> {
        let (message, pump) = self.pipe.lock().pop();
        if let Some(pump) = pump {
            pump.wake();
        }
        message
    }

    /// One look at the stream: a message, its end, a reason to give it up, or nothing yet.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next<Resp>> {
        {
            // Under one lock: a message the pump brings is seen here, or the pump finds
            // this waker and wakes it.
            let mut pipe = self.pipe.lock();
            if let (Some(message), pump) = pipe.pop() {
                drop(pipe);
                if let Some(pump) = pump {
                    pump.wake();
                }
                return Poll::Ready(Next::Message(message));
            }
            if let Some(ended) = pipe.ended.take() {
                return Poll::Ready(Next::Ended(ended));
            }
            pipe.wait_owner(cx);
        }
        if self.endpoint.unusable(Need::Healthy) {
            self.cancel();
            return Poll::Ready(Next::Abandoned(Error::Abandoned {
                endpoint: self.endpoint.target().to_owned(),
                reason: format!("it became unhealthy: {}", self.endpoint.detail().reason),
            }));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "testing")]
    #[test]
    fn a_stream_is_given_up_with_its_endpoint_and_reopens_elsewhere() {
        use super::*;
        use crate::proto::rpc::{WatchCreateRequest, WatchRequest, WatchResponse};
        use std::time::Duration;

        let cluster = crate::testing::Cluster::start(3).expect("cluster");
        let client = crate::Client::connect(cluster.endpoints()).expect("connect");
        let route = client.caller().stream_route().expect("route");
        let open: &Opener<WatchRequest, WatchResponse> = &|s, opt| s.watch.watch_opt(opt);
        let soon = || crate::time::deadline(Duration::from_secs(10));
        let mut create = WatchRequest::new();
        create.set_create_request(WatchCreateRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        let watch = |stream: &mut DuplexStream<WatchRequest, WatchResponse>| {
            send(stream, create.clone(), soon()).expect("send");
            match next(&route, stream, soon()) {
                Some(Next::Message(r)) if r.created => {}
                other => panic!("expected the watch created, got {other:?}"),
            }
            let put = client.kv().put("k", "v").expect("put").header().revision();
            match next(&route, stream, soon()) {
                Some(Next::Message(r)) if r.events.len() == 1 => {
                    assert_eq!(r.events[0].kv.as_ref().map(|kv| kv.mod_revision), Some(put));
                }
                other => panic!("expected the put's event, got {other:?}"),
            }
        };
        let mut stream = open_stream(&route, soon(), open).expect("open");
        watch(&mut stream);
        // A hung member keeps its connection open and sends nothing: only the balancer's
        // probes can tell, and the stream must follow them.
        let hung = stream.endpoint().to_owned();
        let index = cluster
            .endpoints()
            .iter()
            .position(|e| *e == hung)
            .expect("member");
        cluster.pause(index).expect("pause");
        let paused = Instant::now();
        match next(&route, &mut stream, soon()) {
            Some(Next::Abandoned(Error::Abandoned { endpoint, .. })) => {
                assert_eq!(endpoint, hung)
            }
            other => panic!("expected the stream given up, got {other:?}"),
        }
        assert!(
            paused.elapsed() < Duration::from_secs(5),
            "{:?}",
            paused.elapsed()
        );
        let mut moved = open_stream(&route, soon(), open).expect("reopen");
        assert_ne!(moved.endpoint(), hung, "reopened on a healthy endpoint");
        watch(&mut moved);
        cluster.resume(index).expect("resume");
    }
}
