//! The client handle and its builder: where the settings become the layers' configs, and
//! the layers are put together.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::balancer::{self, Balancer, EndpointHealth};
use crate::call::{token_sendable, Caller, Route, Tokens};
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::lease::Lease;
use crate::secret::Secret;
use crate::threads::Threads;
use crate::time::clamp;
use crate::transport::{self, ChannelConfig, Connector, Scheme, Tls};
use crate::watch::Watch;

/// The smallest keepalive interval etcd accepts by default: pings more often than this are
/// answered with GOAWAY `too_many_pings`.
const MIN_KEEPALIVE_TIME: Duration = Duration::from_secs(5);

/// How long a failed connect waits for grpcio's poll threads to stop.
const CONNECT_GRACE: Duration = Duration::from_secs(2);

/// Settings for a [`Client`]; start from [`Client::builder`].
///
/// Every duration may be anything from one nanosecond to `Duration::MAX`, which means as
/// long as possible: about 24.8 days (2^31 - 1 ms, the longest interval gRPC takes), as
/// does anything longer. A zero duration is refused by [`ClientBuilder::connect`] with
/// [`Error::InvalidArgument`], and so is a keepalive interval under 5 s.
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
    coalesce_reads: bool,
    coalesce_writes: bool,
    tls: Option<Tls>,
    user: Option<(String, Secret)>,
    token: Option<Secret>,
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
            coalesce_reads: true,
            coalesce_writes: false,
            tls: None,
            user: None,
            token: None,
        }
    }
}

impl ClientBuilder {
    /// The endpoints to use, one per etcd member: `https://host:port` for TLS,
    /// `http://host:port` for plaintext, or `host:port`, which is TLS when [`tls`] settings
    /// are given and plaintext when not. One client is all TLS or all plaintext: mixed
    /// schemes are refused, and so are `http://` endpoints with TLS settings.
    ///
    /// [`tls`]: ClientBuilder::tls
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

    /// Coalesces concurrent reads (default on): while two reads of the same kind
    /// (linearizable or serializable) are in flight, the reads of that kind that other
    /// threads make meanwhile queue, and go together as one read-only transaction when
    /// one returns, each caller getting its own answer. A lone reader never waits. Every read keeps its promise:
    /// it is answered by a call sent after it was made, so it sees every write
    /// acknowledged before it began; a serializable one is held to the revision floor; a
    /// batch that fails hands each read back to be sent alone, so each gets the answer or
    /// the error it would have had alone. Reads at a given revision are never coalesced.
    /// See "Coalesced reads" in the crate docs for what it saves.
    pub fn coalesce_reads(mut self, coalesce: bool) -> Self {
        self.coalesce_reads = coalesce;
        self
    }

    /// Coalesces concurrent puts and deletes of one key (default off): while two writes
    /// are in flight, the puts and single-key deletes that other threads make meanwhile
    /// queue, and go together as one transaction when one returns, each caller getting
    /// its own answer; a lone writer never waits. What changes, which is why it is
    /// opt-in: the writes of one batch are one raft entry and share a revision (writes
    /// from different threads have no order between them anyway), and when a batch's
    /// outcome is unknown every write in it is [`Error::WriteOutcomeUnknown`]. A batch
    /// never holds two writes of one key; a batch the server refuses (a lease not found,
    /// a permission) was applied nowhere, and each of its writes is then sent alone for
    /// its own answer. Range deletes and transactions are never coalesced.
    pub fn coalesce_writes(mut self, coalesce: bool) -> Self {
        self.coalesce_writes = coalesce;
        self
    }

    /// The transport's part of the settings.
    fn channel_config(&self) -> ChannelConfig {
        ChannelConfig {
            send_limit: i32::try_from(self.max_send_message_size).unwrap_or(i32::MAX),
            receive_limit: i32::try_from(self.max_receive_message_size).unwrap_or(i32::MAX),
            keepalive: self.keepalive_time.map(|t| (t, self.keepalive_timeout)),
            ..ChannelConfig::default()
        }
    }

    /// TLS on every connection, with these settings: which certificate authorities to
    /// trust, the client's own certificate for mutual TLS, the server name. `https://`
    /// endpoints without this trust the system's authorities ([`Tls::new`]). A client with
    /// TLS never falls back to plaintext.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Authenticates as this user when connecting, and sends the token etcd answers with
    /// every call and every stream open. When a member refuses a token (expired, issued
    /// before the last change of users and roles, or unknown to it), the client
    /// authenticates again and sends the call once more. The password stays in the client
    /// for that, is never logged, and `Debug` shows it redacted.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((name.into(), Secret(password.into().into_bytes())));
        self
    }

    /// Sends this auth token, got elsewhere, with every call and stream open, as it is:
    /// the client cannot renew it, so once it expires calls fail with
    /// `ServerCode::InvalidAuthToken`. Exclusive with [`ClientBuilder::user`].
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret(token.into().into_bytes()));
        self
    }

    /// Checks the settings, opens a channel per endpoint and waits up to the dial timeout
    /// for one of them to connect. If none does, [`Error::ConnectFailed`] names each
    /// endpoint with its cause.
    pub fn connect(self) -> Result<Client> {
        let (targets, tls) = self.validate()?;
        let (env, stopped) = transport::environment(self.poll_threads, "etcd-grpc");
        let mut connector = Connector::new(self.channel_config(), env.clone());
        if let Some(tls) = tls {
            connector = connector.with_tls(tls);
        }
        let connections: Vec<_> = targets.iter().map(|t| connector.open(t)).collect();
        let first = match transport::dial(&connections, self.dial_timeout, connector.is_tls()) {
            Ok(first) => first,
            Err(failure) => {
                drop((connections, connector, env));
                // Let the poll threads stop before reporting.
                let _ = stopped.recv_timeout(CONNECT_GRACE);
                let endpoints = failure.endpoints;
                return Err(if failure.handshake {
                    Error::HandshakeFailed { endpoints }
                } else {
                    Error::ConnectFailed {
                        endpoints,
                        timeout: clamp(self.dial_timeout),
                    }
                });
            }
        };
        let settings = balancer::Settings {
            interval: clamp(self.probe_interval),
            timeout: clamp(self.probe_timeout),
            backoff: Duration::from_millis(50),
            auto_sync: self.auto_sync_interval.map(clamp),
        };
        let stall = settings.timeout / 2;
        let (balancer, inbox) = Balancer::new(connections, &[first], stall, connector);
        let threads = Threads::default();
        balancer::start(&balancer, inbox, settings, &threads).map_err(|source| {
            Error::ThreadSpawn {
                thread: "etcd-balancer",
                source,
            }
        })?;
        let tokens = match (&self.user, &self.token) {
            (Some((name, password)), _) => {
                Some(Arc::new(Tokens::user(name.clone(), password.clone())))
            }
            (None, Some(token)) => Some(Arc::new(Tokens::given(token.clone()))),
            (None, None) => None,
        };
        let route = Route::new(balancer, self.prefer_leader, tokens, env);
        let client = Client {
            caller: Caller::new(route, threads, stopped),
            request_timeout: self.request_timeout,
            watch_hub: Arc::default(),
            keeper: Arc::default(),
            namespace: Default::default(),
            coalescers: crate::kv::Coalescers::new(self.coalesce_reads, self.coalesce_writes)
                .map(Arc::new),
        };
        if let Err(e) = client.caller.sign_in(self.dial_timeout) {
            let _ = client.caller.close();
            return Err(e);
        }
        Ok(client)
    }

    /// Refuses settings that cannot work, before anything is started; returns the parsed
    /// endpoints, and the TLS settings read and checked when the connections are TLS.
    fn validate(&self) -> Result<(Vec<String>, Option<transport::LoadedTls>)> {
        let invalid = |argument, reason: &str| Error::InvalidArgument {
            argument,
            reason: reason.to_owned(),
        };
        if self.endpoints.is_empty() {
            return Err(invalid("endpoints", "at least one endpoint is needed"));
        }
        let mut targets: Vec<String> = Vec::with_capacity(self.endpoints.len());
        let mut schemes: Vec<Scheme> = Vec::new();
        for given in &self.endpoints {
            let (scheme, target) = transport::parse_endpoint(given)?;
            if targets.contains(&target) {
                return Err(invalid("endpoints", &format!("{given} is listed twice")));
            }
            targets.push(target);
            schemes.push(scheme);
        }
        let https = schemes.contains(&Scheme::Https);
        if https && schemes.contains(&Scheme::Http) {
            return Err(invalid(
                "endpoints",
                "http:// and https:// in one client: it is all TLS or all plaintext",
            ));
        }
        if self.tls.is_some() && schemes.contains(&Scheme::Http) {
            return Err(invalid(
                "endpoints",
                "http:// with TLS settings: write https:// or host:port for TLS",
            ));
        }
        let tls = match (&self.tls, https) {
            (Some(tls), _) => Some(tls.load()?),
            (None, true) => Some(Tls::new().load()?),
            (None, false) => None,
        };
        for (argument, duration) in [
            ("dial timeout", Some(self.dial_timeout)),
            ("request timeout", Some(self.request_timeout)),
            ("probe interval", Some(self.probe_interval)),
            ("probe timeout", Some(self.probe_timeout)),
            ("auto-sync interval", self.auto_sync_interval),
            (
                "keepalive timeout",
                self.keepalive_time.map(|_| self.keepalive_timeout),
            ),
        ] {
            if duration.is_some_and(|d| d.is_zero()) {
                return Err(invalid(argument, "must be more than zero"));
            }
        }
        if self.keepalive_time.is_some_and(|t| t < MIN_KEEPALIVE_TIME) {
            return Err(invalid(
                "keepalive time",
                "etcd answers pings more often than every 5 s with GOAWAY too_many_pings",
            ));
        }
        for (argument, size) in [
            ("max send message size", self.max_send_message_size),
            ("max receive message size", self.max_receive_message_size),
        ] {
            if size == 0 || i32::try_from(size).is_err() {
                return Err(invalid(argument, "must be from 1 byte to 2 GiB - 1"));
            }
        }
        if let Some((name, _)) = &self.user {
            if self.token.is_some() {
                return Err(invalid("user", "a user or a token, not both"));
            }
            if name.is_empty() {
                return Err(invalid("user", "the name is empty"));
            }
        }
        if self.token.as_ref().is_some_and(|t| !token_sendable(&t.0)) {
            return Err(invalid(
                "token",
                "an auth token is printable ASCII, and not empty",
            ));
        }
        if !(1..=64).contains(&self.poll_threads) {
            return Err(invalid("poll threads", "must be from 1 to 64"));
        }
        Ok((targets, tls))
    }
}

/// A blocking etcd v3 client: a cheap handle, `Clone + Send + Sync`, shared by every thread
/// that uses it. Clones and the API handles share the connections; [`Client::close`]
/// closes them for all, and so does dropping the last clone or handle.
#[derive(Clone)]
pub struct Client {
    caller: Caller,
    request_timeout: Duration,
    /// The watch hub, shared by every clone and watch handle; started with the first watch.
    watch_hub: Arc<Mutex<Option<Arc<crate::watch::Hub>>>>,
    /// The lease keeper, shared by every clone and lease handle; started with the first
    /// keepalive.
    keeper: Arc<Mutex<Option<Arc<crate::lease::Keeper>>>>,
    /// The prefix every key of this view lives under (empty: none).
    namespace: crate::kv::Namespace,
    /// The coalescers every KV handle of the client shares; `None` when neither reads
    /// nor writes are coalesced.
    coalescers: Option<Arc<crate::kv::Coalescers>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints())
            .field("closed", &self.caller.is_closed())
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
        Kv::new(
            self.caller.clone(),
            self.request_timeout,
            self.coalescers.clone(),
        )
        .in_namespace(self.namespace.clone())
    }

    /// How much this client's reads were coalesced since it connected (every view and
    /// handle of it counted): zeros with [`ClientBuilder::coalesce_reads`] off.
    pub fn coalesced_reads(&self) -> crate::Coalesced {
        self.coalescers
            .as_ref()
            .map(|c| c.reads())
            .unwrap_or_default()
    }

    /// How much this client's writes were coalesced since it connected: zeros unless
    /// [`ClientBuilder::coalesce_writes`] is on.
    pub fn coalesced_writes(&self) -> crate::Coalesced {
        self.coalescers
            .as_ref()
            .map(|c| c.writes())
            .unwrap_or_default()
    }

    /// A view of this client whose keys all live under `prefix`, with the Go client's
    /// `namespace` semantics: its KV (transactions, their compares and nested ones
    /// included), watches, the keys of a lease's time-to-live, etcd's lock and election
    /// services, and the recipes built on them ([`concurrency`](crate::concurrency)) see
    /// `key` where the cluster has `prefix` + `key`. Keys are prefixed on the way in and
    /// stripped on the way out; a range end stays inside the prefix, and a range to the
    /// end of the keyspace (or over every key) ends at the end of the prefix. Nothing
    /// outside the prefix is read, written or delivered. The view shares the client's
    /// connections and threads; a view of a view nests the prefixes. The membership,
    /// maintenance and auth APIs have no keys, and are the client's.
    ///
    /// ```no_run
    /// # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
    /// let tenant = client.namespaced("tenants/a/");
    /// tenant.kv().put("config", "x")?; // the cluster has tenants/a/config
    /// # Ok::<(), etcd_blocking::Error>(())
    /// ```
    pub fn namespaced(&self, prefix: impl AsRef<[u8]>) -> Client {
        Client {
            namespace: self.namespace.join(prefix.as_ref()),
            ..self.clone()
        }
    }

    /// A live, consistent local copy of the keys under `prefix` (the empty prefix: every
    /// key), with default [`MirrorOptions`](crate::MirrorOptions): see
    /// [`Client::mirror_with`].
    pub fn mirror(&self, prefix: impl AsRef<[u8]>) -> Result<crate::Mirror> {
        self.mirror_with(prefix, crate::MirrorOptions::new())
    }

    /// A live, consistent local copy of the keys under `prefix`: listed at one revision, a
    /// page at a time, then followed by a watch from the revision after, on a thread of
    /// its own (`etcd-mirror`), through every fault the watch survives; listed again, and
    /// the difference applied (deletions included), when the watch is compacted. Reads
    /// (`get`, `len`, `revision`, `snapshot`) never see part of a transaction: the copy
    /// moves a whole watch response, whole revisions, at a time. Returns once the first
    /// listing is in; dropping the mirror stops its thread.
    /// With [`MirrorOptions::decode`](crate::MirrorOptions::decode), the copy keeps what
    /// the decoder makes of each key, parsed once per change.
    pub fn mirror_with<V: Clone + Send + Sync + 'static>(
        &self,
        prefix: impl AsRef<[u8]>,
        options: crate::MirrorOptions<V>,
    ) -> Result<crate::Mirror<V>> {
        crate::Mirror::start(self.kv(), self.watch(), prefix.as_ref(), options)
    }

    /// The prefix of this view's keys ([`Client::namespaced`]); empty for the client
    /// itself.
    pub fn namespace(&self) -> &[u8] {
        self.namespace.prefix()
    }

    /// The watch API: watches of keys and ranges, moved to another member when theirs
    /// fails, without losing, repeating or reordering an event.
    pub fn watch(&self) -> Watch {
        self.caller.note_timeout(self.request_timeout);
        Watch::new(
            self.caller.clone(),
            self.watch_hub.clone(),
            self.request_timeout,
        )
        .in_namespace(self.namespace.clone())
    }

    /// The lease API: grant, revoke, time-to-live, listing, renewals and keepalives.
    pub fn lease(&self) -> Lease {
        Lease::new(
            self.caller.clone(),
            self.keeper.clone(),
            self.request_timeout,
        )
        .in_namespace(self.namespace.clone())
    }

    /// The auth admin API: auth on and off, users, roles, permissions.
    pub fn auth(&self) -> crate::Auth {
        crate::Auth::new(self.caller.clone(), self.request_timeout)
    }

    /// The membership API: list, add (as a voter or a learner), remove, update, promote.
    pub fn cluster(&self) -> crate::Cluster {
        crate::Cluster::new(self.caller.clone(), self.request_timeout)
    }

    /// The maintenance API: each member's status, hash and defragmentation, alarms,
    /// leader moves, downgrades and verified snapshots.
    pub fn maintenance(&self) -> crate::Maintenance {
        crate::Maintenance::new(self.caller.clone(), self.request_timeout)
    }

    /// etcd's lock service (`v3lock`): the server takes and releases locks for the client.
    pub fn lock_service(&self) -> crate::LockService {
        crate::LockService::new(self.caller.clone(), self.request_timeout)
            .in_namespace(self.namespace.clone())
    }

    /// etcd's election service (`v3election`): the server runs campaigns for the client.
    pub fn election_service(&self) -> crate::ElectionService {
        crate::ElectionService::new(self.caller.clone(), self.request_timeout)
            .in_namespace(self.namespace.clone())
    }

    /// Every endpoint's health as the balancer sees it now (empty once closed).
    pub fn endpoint_health(&self) -> Vec<EndpointHealth> {
        self.caller
            .balancer()
            .map(|b| b.health())
            .unwrap_or_default()
    }

    /// The endpoints this client uses, as gRPC targets (`host:port`).
    pub fn endpoints(&self) -> Vec<String> {
        self.caller
            .balancer()
            .map(|b| b.table().iter().map(|e| e.target().to_owned()).collect())
            .unwrap_or_default()
    }

    /// True once the client was closed, through any clone.
    pub fn is_closed(&self) -> bool {
        self.caller.is_closed()
    }

    /// Closes the client for every clone and handle: later calls fail with
    /// [`Error::Closed`], and calls waiting for a healthy endpoint end with it at once, as
    /// do watches and the recipes' blocking calls (a lock or campaign waiting its turn)
    /// on any thread.
    /// Stops and joins every background thread, then waits for the calls still in flight,
    /// each until its own deadline (a handle's [`Kv::with_timeout`] included), and for
    /// grpcio's poll threads. [`Error::CloseTimedOut`] if a thread outlives that.
    pub fn close(self) -> Result<()> {
        self.caller.close()
    }

    /// The call layer, for the crate's own tests of what builds on it.
    #[cfg(test)]
    pub(crate) fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Makes the balancer's worker panic `times` times in a row, to test what a client does
    /// when a background thread dies: up to 5 panics in a row the worker is restarted;
    /// past that every call fails with [`Error::BackgroundThread`]. Not for production.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn inject_balancer_panic(&self, times: u32) -> Result<()> {
        self.caller.inject_worker_panic(times)
    }
}
