//! The stream primitive: a bidirectional gRPC stream opened on a healthy endpoint through
//! the balancer, waited on with the one blocking primitive, given up when its endpoint
//! fails, and reopened elsewhere. Watch and lease keepalive threads build on it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::Stream as _;
use futures_sink::Sink;
use grpcio::{CallOption, ClientDuplexReceiver, ClientDuplexSender, WriteFlags};

use super::caller::Caller;
use super::route::Route;
use crate::balancer::{Endpoint, Mark};
use crate::error::{Error, Result};
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

/// A bidirectional stream on one endpoint.
pub(crate) struct DuplexStream<Req, Resp> {
    sink: ClientDuplexSender<Req>,
    receiver: ClientDuplexReceiver<Resp>,
    endpoint: Arc<Endpoint>,
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
) -> Result<DuplexStream<Req, Resp>> {
    let balancer = &route.balancer;
    let Some(endpoint) = balancer.pick(deadline, false, false) else {
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
    let (mut sink, receiver) = open(endpoint.stubs(), call_options(LONGEST, true))
        .map_err(|e| Error::from_grpc(e, endpoint.target(), LONGEST))?;
    sink.enhance_batch(true);
    Ok(DuplexStream {
        sink,
        receiver,
        endpoint,
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
    /// The endpoint the stream is on.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint.target()
    }

    /// Hands the stream as many messages of `outbox` as it takes now, and flushes them;
    /// true once the outbox is empty and flushed.
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        outbox: &mut VecDeque<Req>,
    ) -> Result<bool> {
        let target = self.endpoint.target();
        let failed = |e: grpcio::Error| Error::from_grpc(e, target, LONGEST);
        while !outbox.is_empty() {
            match Pin::new(&mut self.sink).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(failed(e)),
                Poll::Pending => return Ok(false),
            }
            let Some(message) = outbox.pop_front() else {
                break;
            };
            Pin::new(&mut self.sink)
                .start_send((message, WriteFlags::default()))
                .map_err(failed)?;
        }
        match Pin::new(&mut self.sink).poll_flush(cx) {
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(e)) => Err(failed(e)),
            Poll::Pending => Ok(false),
        }
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
        self.sink.cancel();
    }

    /// One look at the stream: a message, its end, a reason to give it up, or nothing yet.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next<Resp>> {
        match Pin::new(&mut self.receiver).poll_next(cx) {
            Poll::Ready(Some(Ok(message))) => return Poll::Ready(Next::Message(message)),
            Poll::Ready(Some(Err(e))) => {
                let error = Error::from_grpc(e, self.endpoint.target(), LONGEST);
                return Poll::Ready(Next::Ended(Some(error)));
            }
            Poll::Ready(None) => return Poll::Ready(Next::Ended(None)),
            Poll::Pending => {}
        }
        if self.endpoint.unusable(false) {
            self.sink.cancel();
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
