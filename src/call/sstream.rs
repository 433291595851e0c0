//! Server streams from one member (the maintenance `Snapshot`): opened on the member the
//! caller names, read one message at a time by the calling thread, each wait bounded.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream as _;
use grpcio::{CallOption, ClientSStreamReceiver};

use super::caller::Caller;
use super::spec::Rpc;
use crate::balancer::Endpoint;
use crate::error::{Error, Result};
use crate::park;
use crate::time::{self, LONGEST};
use crate::transport::{call_options, Stubs};

/// A server stream from one member. Dropping it cancels the call.
pub(crate) struct ServerStream<T> {
    receiver: ClientSStreamReceiver<T>,
    /// The first message, read when the stream was opened (to see whether the member
    /// refused the token).
    first: Option<T>,
    /// Held so that a connection of its own (a member outside the balancer's table) lives
    /// as long as the stream.
    endpoint: Arc<Endpoint>,
    /// The longest wait for the next message.
    wait: Duration,
}

impl<T> ServerStream<T> {
    /// The member's `host:port`.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint.target()
    }

    /// The next message; `None` at the stream's end. Waits at most the stream's wait for
    /// it: a member that stops sending fails the stream with
    /// [`Error::DeadlineExceeded`].
    pub(crate) fn next(&mut self) -> Result<Option<T>> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        next_of(&mut self.receiver, &self.endpoint, self.wait)
    }
}

impl<T> Drop for ServerStream<T> {
    fn drop(&mut self) {
        self.receiver.cancel();
    }
}

/// Reads the next message of `receiver`, waiting at most `wait`.
fn next_of<T>(
    receiver: &mut ClientSStreamReceiver<T>,
    endpoint: &Endpoint,
    wait: Duration,
) -> Result<Option<T>> {
    let polled = park::wait(None, time::deadline(wait), |cx| {
        // grpcio may panic inside poll on a call that ends without a status: that is a
        // failed stream, not a panic of the caller's thread.
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *receiver).poll_next(cx))) {
            Ok(poll) => poll,
            Err(_) => Poll::Ready(Some(Err(grpcio::Error::RpcFailure(
                grpcio::RpcStatus::with_message(
                    grpcio::RpcStatusCode::INTERNAL,
                    "grpcio failed the stream without a status".to_owned(),
                ),
            )))),
        }
    });
    match polled {
        None => {
            receiver.cancel();
            Err(Error::DeadlineExceeded {
                endpoint: endpoint.target().to_owned(),
                timeout: wait,
            })
        }
        Some(None) => Ok(None),
        Some(Some(Ok(message))) => Ok(Some(message)),
        Some(Some(Err(e))) => Err(Error::from_grpc(e, endpoint.target(), wait)),
    }
}

impl Caller {
    /// Opens the server stream `start` makes on the member at `target` (`host:port` or a
    /// client URL), and
    /// reads its first message, each message waited for at most `wait`. A member that
    /// refuses the token before the first message gets a new one, once; a member that
    /// cannot be reached is tried again until `wait` has passed.
    pub(crate) fn server_stream_on<T, F>(
        &self,
        target: &str,
        rpc: Rpc,
        wait: Duration,
        start: F,
    ) -> Result<ServerStream<T>>
    where
        F: Fn(&Stubs, CallOption) -> grpcio::Result<ClientSStreamReceiver<T>>,
    {
        let wait = super::caller::call_timeout(wait)?;
        let (_, target) = crate::transport::parse_endpoint(target)?;
        let target = target.as_str();
        let route = self.route()?;
        let endpoint = route.balancer.endpoint_at(target);
        let spec = rpc.spec();
        let mut call_token = super::unary::CallToken::new(&route, spec);
        let deadline = time::deadline(wait);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let token = call_token.current();
            // The stream has no deadline of its own (a snapshot of gigabytes takes long):
            // each wait for a message is bounded instead.
            let option = call_options(LONGEST, !spec.serializable, token.as_deref());
            let error = match start(endpoint.stubs(), option) {
                Ok(mut receiver) => match next_of(&mut receiver, &endpoint, wait) {
                    Ok(first) => {
                        return Ok(ServerStream {
                            receiver,
                            first,
                            endpoint,
                            wait,
                        })
                    }
                    Err(e) => e,
                },
                Err(e) => Error::from_grpc(e, target, wait),
            };
            if call_token.renewed_after(&error, token.as_ref(), wait, deadline)? {
                continue;
            }
            let pause = super::retry::backoff(attempts);
            if !error.is_unavailable() || time::deadline(pause) >= deadline {
                return Err(error);
            }
            std::thread::sleep(pause);
        }
    }
}
