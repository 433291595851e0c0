//! What the API handles hold: a [`Caller`], the client's call layer. It owns everything
//! below it (the balancer, the connections, the background threads) and closes it all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use grpcio::{CallOption, ClientUnaryReceiver};
use parking_lot::RwLock;

use super::floor::Revisioned;
use super::route::Route;
use super::spec::Rpc;
use super::unary;
use crate::balancer::Balancer;
use crate::error::{Error, Result};
use crate::threads::Threads;
use crate::time;
use crate::transport::Stubs;

/// How long closing waits for the background and grpcio's poll threads, beyond the
/// deadlines of the calls still in flight.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A client's call layer: cheap to clone, shared by the client and every API handle. The
/// last clone to go closes the client.
#[derive(Clone)]
pub(crate) struct Caller {
    core: Arc<Core>,
}

/// What the clones of a [`Caller`] share.
struct Core {
    /// The open connections; `None` once closed.
    route: RwLock<Option<Arc<Route>>>,
    /// Every background thread of the client.
    threads: Threads,
    /// Disconnects when every grpcio poll thread has stopped.
    stopped: Receiver<()>,
    /// The longest timeout any handle gives its calls, in µs: closing waits for calls in
    /// flight that long at most. Noted when a handle is made, not per call, so that the
    /// call path writes no shared counter.
    longest_timeout: AtomicU64,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("closed", &self.is_closed())
            .field("threads", &self.core.threads)
            .finish()
    }
}

impl Caller {
    /// The call layer over `route`, owning `threads` (which already run) and the poll
    /// threads that `stopped` watches.
    pub(crate) fn new(route: Route, threads: Threads, stopped: Receiver<()>) -> Caller {
        Caller {
            core: Arc::new(Core {
                route: RwLock::new(Some(Arc::new(route))),
                threads,
                stopped,
                longest_timeout: AtomicU64::new(0),
            }),
        }
    }

    /// Runs one unary call through the balancer within `timeout` (`Duration::MAX`: as long
    /// as possible), retrying where the retry table says `rpc` may be (see [`Rpc`]). A zero
    /// timeout is refused.
    pub(crate) fn unary<R, F>(&self, rpc: Rpc, timeout: Duration, start: F) -> Result<R>
    where
        R: Revisioned + Unpin,
        F: Fn(&Stubs, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
    {
        let timeout = call_timeout(timeout)?;
        let deadline = time::deadline(timeout);
        let route = self.route()?;
        unary::run(&route, rpc.spec(), timeout, deadline, start)
    }

    /// Runs one unary call on the member at `target` (`host:port` or a client URL) alone
    /// within `timeout` (see [`unary::run_on`]). A zero timeout is refused.
    pub(crate) fn unary_on<R, F>(
        &self,
        target: &str,
        rpc: Rpc,
        timeout: Duration,
        start: F,
    ) -> Result<R>
    where
        R: Unpin,
        F: Fn(&Stubs, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
    {
        let timeout = call_timeout(timeout)?;
        let (_, target) = crate::transport::parse_endpoint(target)?;
        let route = self.route()?;
        unary::run_on(
            &route,
            &target,
            rpc.spec(),
            timeout,
            time::deadline(timeout),
            start,
        )
    }

    /// The `host:port` of every endpoint the balancer uses now, and the member ID behind
    /// each (0 until a probe has told it).
    pub(crate) fn endpoint_members(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .balancer()?
            .table()
            .iter()
            .map(|e| (e.target().to_owned(), e.member_id()))
            .collect())
    }

    /// The membership changed through this client to `members`: the endpoints follow at
    /// once where auto-sync is on.
    pub(crate) fn membership_changed(&self, members: &[crate::proto::rpc::Member]) {
        if let Ok(balancer) = self.balancer() {
            balancer.follow_members(members.to_vec());
        }
    }

    /// Authenticates the client's user, if it has one, within `timeout`.
    pub(crate) fn sign_in(&self, timeout: Duration) -> Result<()> {
        let route = self.route()?;
        let Some(tokens) = route.tokens.clone() else {
            return Ok(());
        };
        let timeout = time::clamp(timeout);
        unary::renew_token(&route, &tokens, None, timeout, time::deadline(timeout)).map(drop)
    }

    /// The balancer, while the client is open (also after a background thread died, so
    /// that its health can still be read).
    pub(crate) fn balancer(&self) -> Result<Arc<Balancer>> {
        let route = self.core.route.read().clone().ok_or(Error::Closed)?;
        Ok(route.balancer.clone())
    }

    /// The route, or why no call may run: closed, or a background thread died.
    pub(super) fn route(&self) -> Result<Arc<Route>> {
        if let Some(failure) = self.core.threads.failure() {
            return Err(Error::BackgroundThread {
                thread: failure.thread,
                message: failure.message.clone(),
            });
        }
        // Cloned out of the lock: no lock is held across a call.
        self.core.route.read().clone().ok_or(Error::Closed)
    }

    /// Notes that a handle gives its calls `timeout`: [`Caller::close`] waits that long
    /// for calls in flight. Call it when the handle is made, before its first call.
    pub(crate) fn note_timeout(&self, timeout: Duration) {
        let micros = u64::try_from(time::clamp(timeout).as_micros()).unwrap_or(u64::MAX);
        self.core
            .longest_timeout
            .fetch_max(micros, Ordering::AcqRel);
    }

    /// Starts a background thread that [`Caller::close`] stops and joins with the others;
    /// refused once the client is closed.
    pub(crate) fn spawn_thread(
        &self,
        name: &'static str,
        stop: impl FnOnce() + Send + 'static,
        body: impl FnMut() + Send + 'static,
    ) -> Result<std::thread::Thread> {
        // Held while the thread registers, so that a close cannot miss it.
        let route = self.core.route.read();
        if route.is_none() {
            return Err(Error::Closed);
        }
        self.core
            .threads
            .spawn(name, crate::threads::RESTARTS, stop, body)
            .map_err(|source| Error::ThreadSpawn {
                thread: name,
                source,
            })
    }

    /// True once closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.core.route.read().is_none()
    }

    /// Closes the client for every clone; see [`Client::close`](crate::Client::close).
    pub(crate) fn close(&self) -> Result<()> {
        self.core.close()
    }

    /// Makes the balancer's worker panic `times` times in a row.
    #[cfg(feature = "testing")]
    pub(crate) fn inject_worker_panic(&self, times: u32) -> Result<()> {
        self.route()?.balancer.inject_panic(times);
        Ok(())
    }
}

impl Core {
    /// Takes the connections out (later calls fail with [`Error::Closed`]), ends the waits
    /// for an endpoint, stops and joins every background thread, then waits for the calls
    /// still in flight, each until its own deadline, and for grpcio's poll threads.
    fn close(&self) -> Result<()> {
        let Some(route) = self.route.write().take() else {
            return Ok(());
        };
        route.balancer.close();
        let started = Instant::now();
        let running = self.threads.stop_all(time::after(started, CLOSE_GRACE));
        drop(route);
        let longest = Duration::from_micros(self.longest_timeout.load(Ordering::Acquire));
        let until = time::after(time::after(Instant::now(), longest), CLOSE_GRACE);
        // Calls in flight hold the channels (and through them the environment) until they
        // return, at the latest at their deadline.
        let poll_threads = self
            .stopped
            .recv_timeout(until.saturating_duration_since(Instant::now()));
        match poll_threads {
            Err(RecvTimeoutError::Disconnected) if running.is_empty() => Ok(()),
            _ => {
                if !running.is_empty() {
                    log::warn!("etcd client threads still running after close: {running:?}");
                }
                Err(Error::CloseTimedOut {
                    waited: started.elapsed(),
                })
            }
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("closing etcd client: {e}");
        }
    }
}

/// A call's timeout as given by a handle: zero refused, the rest kept within what gRPC
/// takes.
pub(super) fn call_timeout(timeout: Duration) -> Result<Duration> {
    if timeout.is_zero() {
        return Err(Error::InvalidArgument {
            argument: "timeout",
            reason: "must be more than zero".to_owned(),
        });
    }
    Ok(time::clamp(timeout))
}
