//! The client handle, its builder, and the path every unary call takes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use grpcio::{CallOption, ClientUnaryReceiver, EnvBuilder, Environment};
use parking_lot::RwLock;

use crate::balancer::{Balancer, Endpoint, Opener, Settings, Shared};
use crate::call::{Revisioned, Spec};
use crate::endpoint;
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::lease::Lease;

/// The smallest keepalive interval etcd accepts by default: pings more often than this are
/// answered with GOAWAY `too_many_pings`.
const MIN_KEEPALIVE_TIME: Duration = Duration::from_secs(5);

/// How long closing waits for grpcio's poll threads beyond the calls still in flight.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Settings for a [`Client`]; start from [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    dial_timeout: Duration,
    request_timeout: Duration,
    keepalive_time: Option<Duration>,
    keepalive_timeout: Duration,
    max_send_message_size: usize,
    max_receive_message_size: usize,
    poll_threads: usize,
    probe_interval: Duration,
    probe_timeout: Duration,
    auto_sync_interval: Option<Duration>,
    prefer_leader: bool,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: Vec::new(),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            keepalive_time: Some(Duration::from_secs(10)),
            keepalive_timeout: Duration::from_secs(10),
            max_send_message_size: 2 * 1024 * 1024,
            max_receive_message_size: i32::MAX as usize,
            poll_threads: 1,
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(400),
            auto_sync_interval: None,
            prefer_leader: true,
        }
    }
}

impl ClientBuilder {
    /// The endpoints to use: `host:port` or `http://host:port`, one per etcd member.
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.endpoints = endpoints
            .into_iter()
            .map(|e| e.as_ref().to_owned())
            .collect();
        self
    }

    /// How long [`ClientBuilder::connect`] waits for the first endpoint to connect
    /// (default 5 s).
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// The deadline of each call, unless a handle sets its own (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sends HTTP/2 keepalive pings at this interval, only while calls are active (default
    /// 10 s): a connection whose ping goes unanswered is closed and its endpoint probed. etcd
    /// refuses pings more often than every 5 s, or without an active call, unless started
    /// with other `--grpc-keepalive-*` settings, so shorter intervals are refused here.
    /// Health does not wait for pings: the balancer's probes find a hung member sooner.
    pub fn keepalive_time(mut self, interval: Duration) -> Self {
        self.keepalive_time = Some(interval);
        self
    }

    /// Sends no keepalive pings.
    pub fn no_keepalive(mut self) -> Self {
        self.keepalive_time = None;
        self
    }

    /// How long a keepalive ping may go unanswered before the connection is closed
    /// (default 10 s).
    pub fn keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.keepalive_timeout = timeout;
        self
    }

    /// The largest request the client sends, in bytes (default 2 MiB; etcd's own limit is
    /// its `--max-request-bytes`, 1.5 MiB by default).
    pub fn max_send_message_size(mut self, bytes: usize) -> Self {
        self.max_send_message_size = bytes;
        self
    }

    /// The largest response the client accepts, in bytes (default 2 GiB - 1).
    pub fn max_receive_message_size(mut self, bytes: usize) -> Self {
        self.max_receive_message_size = bytes;
        self
    }

    /// How many grpcio completion-queue threads the client runs (default 1).
    pub fn poll_threads(mut self, threads: usize) -> Self {
        self.poll_threads = threads;
        self
    }

    /// How often the balancer probes a healthy endpoint (default 500 ms). A probe is a
    /// linearizable read that needs the member to have a leader and reach its quorum, so it
    /// finds members that hang or are cut off, which HTTP/2 pings cannot.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// How long a probe may take before its endpoint counts as unhealthy (default 400 ms).
    /// A member that hangs is found within about the probe interval plus this.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Syncs the endpoints from the cluster's member list at this interval (default: never):
    /// members added to the cluster are used, removed ones dropped and their connections
    /// closed. Endpoints of another cluster are refused either way.
    pub fn auto_sync_interval(mut self, interval: Duration) -> Self {
        self.auto_sync_interval = Some(interval);
        self
    }

    /// Sends writes and linearizable reads to the leader while it is known and healthy,
    /// instead of round-robin over every healthy member (default on: on a 3-member
    /// cluster it gave 17-45% more operations per second at lower latency, see
    /// `benches/leader.rs`). Serializable reads and retries still go round-robin.
    pub fn prefer_leader(mut self, prefer: bool) -> Self {
        self.prefer_leader = prefer;
        self
    }

    /// The send and receive limits as grpcio takes them (checked to fit by `validate`).
    pub(crate) fn message_limits(&self) -> (i32, i32) {
        (
            i32::try_from(self.max_send_message_size).unwrap_or(i32::MAX),
            i32::try_from(self.max_receive_message_size).unwrap_or(i32::MAX),
        )
    }

    /// The keepalive interval and timeout, when keepalive is on.
    pub(crate) fn keepalive(&self) -> Option<(Duration, Duration)> {
        self.keepalive_time.map(|t| (t, self.keepalive_timeout))
    }

    /// Checks the settings, opens a channel per endpoint and waits up to the dial timeout
    /// for one of them to connect.
    pub fn connect(self) -> Result<Client> {
        let targets = self.validate()?;
        let (env, stopped) = self.environment();
        let endpoints: Vec<Endpoint> = targets
            .iter()
            .map(|target| Endpoint::open(&self, &env, target))
            .collect();
        let dialed = {
            let waits = endpoints
                .iter()
                .map(|e| Box::pin(e.channel().wait_for_connected(self.dial_timeout)) as _)
                .collect();
            crate::wait::first_yes(waits, Instant::now() + self.dial_timeout)
        };
        let Some(first) = dialed else {
            drop(endpoints);
            // Let the poll threads stop before reporting.
            drop(env);
            let _ = stopped.recv_timeout(CLOSE_GRACE);
            return Err(Error::Connect {
                endpoints: targets,
                timeout: self.dial_timeout,
            });
        };
        let settings = Settings {
            interval: self.probe_interval,
            timeout: self.probe_timeout,
            backoff: Duration::from_millis(50),
            auto_sync: self.auto_sync_interval,
        };
        let opener = Opener {
            config: self.clone(),
            env: env.clone(),
        };
        let balancer =
            Balancer::start(endpoints, &[first], settings, opener).map_err(|source| {
                Error::ThreadSpawn {
                    thread: "etcd-balancer",
                    source,
                }
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                conns: RwLock::new(Some(Arc::new(Conns {
                    balancer,
                    _env: env,
                }))),
                stopped,
                request_timeout: self.request_timeout,
                prefer_leader: self.prefer_leader,
            }),
        })
    }

    /// Refuses settings that cannot work, before anything is started; returns the parsed
    /// endpoints.
    fn validate(&self) -> Result<Vec<String>> {
        let invalid = |argument, reason: &str| Error::InvalidArgument {
            argument,
            reason: reason.to_owned(),
        };
        if self.endpoints.is_empty() {
            return Err(invalid("endpoints", "at least one endpoint is needed"));
        }
        let mut targets: Vec<String> = Vec::with_capacity(self.endpoints.len());
        for given in &self.endpoints {
            let target = endpoint::parse(given)?;
            if targets.contains(&target) {
                return Err(invalid("endpoints", &format!("{given} is listed twice")));
            }
            targets.push(target);
        }
        if self.dial_timeout.is_zero() {
            return Err(invalid("dial timeout", "must be more than zero"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request timeout", "must be more than zero"));
        }
        if let Some(interval) = self.keepalive_time {
            if interval < MIN_KEEPALIVE_TIME {
                return Err(invalid(
                    "keepalive time",
                    "etcd answers pings more often than every 5 s with GOAWAY too_many_pings",
                ));
            }
            if self.keepalive_timeout.is_zero() {
                return Err(invalid("keepalive timeout", "must be more than zero"));
            }
        }
        for (argument, size) in [
            ("max send message size", self.max_send_message_size),
            ("max receive message size", self.max_receive_message_size),
        ] {
            if size == 0 || i32::try_from(size).is_err() {
                return Err(invalid(argument, "must be from 1 byte to 2 GiB - 1"));
            }
        }
        if self.auto_sync_interval.is_some_and(|i| i.is_zero()) {
            return Err(invalid("auto-sync interval", "must be more than zero"));
        }
        if self.probe_interval.is_zero() || self.probe_timeout.is_zero() {
            return Err(invalid(
                "probe interval and timeout",
                "must be more than zero",
            ));
        }
        if !(1..=64).contains(&self.poll_threads) {
            return Err(invalid("poll threads", "must be from 1 to 64"));
        }
        Ok(targets)
    }

    /// grpcio's environment with named poll threads, and a receiver that disconnects once
    /// every one of them has finished.
    fn environment(&self) -> (Arc<Environment>, Receiver<()>) {
        let (alive, stopped) = crossbeam_channel::bounded::<()>(0);
        // Each poll thread drops its copy of this closure as it exits, and `build` drops the
        // builder's copy: when the last one goes, `stopped` disconnects.
        let env = EnvBuilder::new()
            .cq_count(self.poll_threads)
            .name_prefix("etcd-grpc")
            .before_stop(move || {
                let _ = &alive;
            })
            .build();
        (Arc::new(env), stopped)
    }
}

/// A blocking etcd v3 client: a cheap handle, `Clone + Send + Sync`, shared by every thread
/// that uses it. Clones share the connections; [`Client::close`] closes them for all clones.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let closed = self.inner.conns.read().is_none();
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints())
            .field("closed", &closed)
            .finish()
    }
}

impl Client {
    /// Connects to the given endpoints with default settings.
    ///
    /// ```no_run
    /// let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
    /// # Ok::<(), etcd_blocking::Error>(())
    /// ```
    pub fn connect<I, S>(endpoints: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::builder().endpoints(endpoints).connect()
    }

    /// Settings for a new client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The key-value API: get, put, delete, txn and compact.
    pub fn kv(&self) -> Kv {
        Kv::new(self.clone(), self.inner.request_timeout)
    }

    /// The lease API: grant, revoke, time-to-live.
    pub fn lease(&self) -> Lease {
        Lease::new(self.clone(), self.inner.request_timeout)
    }

    /// Every endpoint's health as the balancer sees it now (empty once closed).
    pub fn endpoint_health(&self) -> Vec<crate::EndpointHealth> {
        self.shared().map(|s| s.health()).unwrap_or_default()
    }

    /// The endpoints this client uses, as gRPC targets (`host:port`).
    pub fn endpoints(&self) -> Vec<String> {
        match self.inner.conns.read().as_ref() {
            Some(c) => c
                .shared()
                .table()
                .iter()
                .map(|e| e.target.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Closes the client for every clone: later calls fail with [`Error::Closed`]. Waits for
    /// calls still in flight (each bounded by its deadline) and for grpcio's poll threads to
    /// stop.
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }

    /// Runs one unary call through the balancer (see `call.rs`), with the given deadline.
    pub(crate) fn unary<R, F>(&self, spec: Spec, timeout: Duration, start: F) -> Result<R>
    where
        R: Revisioned + Unpin,
        F: Fn(&Endpoint, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
    {
        if timeout.is_zero() {
            return Err(Error::InvalidArgument {
                argument: "timeout",
                reason: "must be more than zero".to_owned(),
            });
        }
        let spec = Spec {
            leader: self.inner.prefer_leader && !spec.serializable,
            ..spec
        };
        // Clone the shared table out of the lock: no lock is held across the call.
        let shared = self.shared()?;
        crate::call::unary(&shared, spec, timeout, start)
    }

    fn shared(&self) -> Result<Arc<Shared>> {
        let conns = self.inner.conns.read();
        conns
            .as_ref()
            .map(|c| c.shared().clone())
            .ok_or(Error::Closed)
    }
}

/// What a client shares between its clones.
struct Inner {
    /// The open connections; `None` once closed.
    conns: RwLock<Option<Arc<Conns>>>,
    /// Disconnects when every grpcio poll thread has stopped.
    stopped: Receiver<()>,
    request_timeout: Duration,
    prefer_leader: bool,
}

impl Inner {
    /// Drops the connections and waits for the poll threads to stop.
    fn shutdown(&self) -> Result<()> {
        let conns = self.conns.write().take();
        drop(conns);
        // Calls in flight hold the channels (and through them the environment) until they
        // return, at the latest at their deadline.
        match self
            .stopped
            .recv_timeout(self.request_timeout + CLOSE_GRACE)
        {
            Err(RecvTimeoutError::Disconnected) => Ok(()),
            Ok(()) | Err(RecvTimeoutError::Timeout) => Err(Error::CloseTimedOut {
                waited: self.request_timeout + CLOSE_GRACE,
            }),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.conns.get_mut().is_some() {
            if let Err(e) = self.shutdown() {
                log::warn!("closing etcd client: {e}");
            }
        }
    }
}

/// The connections of a client: the balancer with its endpoints, on one grpcio
/// environment.
struct Conns {
    /// Dropped first: stops and joins the balancer's worker.
    balancer: Balancer,
    /// Kept so the poll threads live as long as the channels.
    _env: Arc<Environment>,
}

impl Conns {
    fn shared(&self) -> &Arc<Shared> {
        self.balancer.shared()
    }
}
