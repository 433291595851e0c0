//! The stream primitive: a bidirectional gRPC stream opened on a healthy endpoint through
//! the balancer, waited on with the one blocking primitive, given up when its endpoint
//! fails, and reopened elsewhere. Watch and lease keepalive threads build on it.
// Parts of it are used only by its test until the watch and keepalive threads come.
#![allow(dead_code)]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::Stream as _;
use futures_sink::Sink;
use grpcio::{CallOption, ClientDuplexReceiver, ClientDuplexSender, WriteFlags};

use super::caller::Caller;
use crate::balancer::Endpoint;
use crate::error::{Error, Result};
use crate::park;
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
    /// The deadline passed first.
    TimedOut,
}

/// A bidirectional stream on one endpoint.
pub(crate) struct DuplexStream<Req, Resp> {
    sink: ClientDuplexSender<Req>,
    receiver: ClientDuplexReceiver<Resp>,
    endpoint: Arc<Endpoint>,
}

impl Caller {
    /// Opens a stream with require-leader metadata (etcd refuses it on a member without a
    /// leader, and cancels it once its member has been leaderless for three election
    /// timeouts) on a healthy endpoint, waiting for one until `deadline`.
    pub(crate) fn open_stream<Req, Resp>(
        &self,
        deadline: Instant,
        open: &Opener<Req, Resp>,
    ) -> Result<DuplexStream<Req, Resp>> {
        let route = self.route()?;
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
        let (sink, receiver) = open(endpoint.stubs(), call_options(LONGEST, true))
            .map_err(|e| Error::from_grpc(e, endpoint.target(), LONGEST))?;
        Ok(DuplexStream {
            sink,
            receiver,
            endpoint,
        })
    }

    /// Waits for the stream's next message until `deadline`, woken by the message or by
    /// the balancer's news; gives the stream up when its endpoint turns unhealthy.
    pub(crate) fn next<Req, Resp>(
        &self,
        stream: &mut DuplexStream<Req, Resp>,
        deadline: Instant,
    ) -> Next<Resp> {
        let Ok(route) = self.route() else {
            return Next::Ended(Some(Error::Closed));
        };
        let news = route.balancer.news();
        park::wait(Some(news), deadline, |cx| stream.poll_next(cx)).unwrap_or(Next::TimedOut)
    }

    /// Sends one message, waiting until `deadline` for the stream to take it.
    pub(crate) fn send<Req: Clone, Resp>(
        &self,
        stream: &mut DuplexStream<Req, Resp>,
        message: Req,
        deadline: Instant,
    ) -> Result<()> {
        let target = stream.endpoint.target().to_owned();
        let failed = |e: grpcio::Error| Error::from_grpc(e, &target, LONGEST);
        let mut pending = Some(message);
        let sent = park::wait(None, deadline, |cx| {
            let sink = Pin::new(&mut stream.sink);
            if let Some(message) = pending.take() {
                match sink.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(failed(e))),
                    Poll::Pending => {
                        pending = Some(message);
                        return Poll::Pending;
                    }
                }
                if let Err(e) =
                    Pin::new(&mut stream.sink).start_send((message, WriteFlags::default()))
                {
                    return Poll::Ready(Err(failed(e)));
                }
            }
            Pin::new(&mut stream.sink).poll_flush(cx).map_err(failed)
        });
        sent.unwrap_or_else(|| {
            Err(Error::DeadlineExceeded {
                endpoint: stream.endpoint.target().to_owned(),
                timeout: LONGEST,
            })
        })
    }
}

impl<Req, Resp> DuplexStream<Req, Resp> {
    /// The endpoint the stream is on.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint.target()
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next<Resp>> {
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
        let caller = client.caller();
        let open: &Opener<WatchRequest, WatchResponse> = &|s, opt| s.watch.watch_opt(opt);
        let soon = || crate::time::deadline(Duration::from_secs(10));
        let mut create = WatchRequest::new();
        create.set_create_request(WatchCreateRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        let watch = |stream: &mut DuplexStream<WatchRequest, WatchResponse>| {
            caller.send(stream, create.clone(), soon()).expect("send");
            match caller.next(stream, soon()) {
                Next::Message(r) if r.created => {}
                other => panic!("expected the watch created, got {other:?}"),
            }
            let put = client.kv().put("k", "v").expect("put").header().revision();
            match caller.next(stream, soon()) {
                Next::Message(r) if r.events.len() == 1 => {
                    assert_eq!(r.events[0].kv.as_ref().map(|kv| kv.mod_revision), Some(put));
                }
                other => panic!("expected the put's event, got {other:?}"),
            }
        };
        let mut stream = caller.open_stream(soon(), open).expect("open");
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
        match caller.next(&mut stream, soon()) {
            Next::Abandoned(Error::Abandoned { endpoint, .. }) => assert_eq!(endpoint, hung),
            other => panic!("expected the stream given up, got {other:?}"),
        }
        assert!(
            paused.elapsed() < Duration::from_secs(5),
            "{:?}",
            paused.elapsed()
        );
        let mut moved = caller.open_stream(soon(), open).expect("reopen");
        assert_ne!(moved.endpoint(), hung, "reopened on a healthy endpoint");
        watch(&mut moved);
        cluster.resume(index).expect("resume");
    }
}
