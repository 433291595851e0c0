//! A test cluster: its members, how it starts, and the faults a test can inject.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::certs::{Authority, Identity, Validity};
use super::error::LaunchError;
use super::etcd_binary;
use super::grpc_proxy::GrpcProxy;
use super::member::{Member, State};
use super::probe::{self, Prober};
use super::proxy::Proxy;
use super::support::{free_ports, poll_until, Slot, TempDir};
use super::version::ServerVersion;

/// With this environment variable at `1`, [`Cluster::client_builder`] (and so
/// [`Cluster::client`]) coalesces writes: how CI runs the fault tests with writes
/// coalesced too.
pub const COALESCE_WRITES: &str = "ETCD_BLOCKING_TEST_COALESCE_WRITES";

/// How long one member's status call may take while the launcher polls.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// How many times a start is tried with new ports when another process took one.
const START_ATTEMPTS: usize = 3;

/// Settings for a [`Cluster`]; start from [`Cluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    members: usize,
    extra_args: Vec<String>,
    timeout: Duration,
    etcd: Option<PathBuf>,
    peer_proxies: bool,
    alone: bool,
    tls: ClusterTls,
    root_password: Option<String>,
    jwt_ttl: Option<Duration>,
    snapshot: Option<PathBuf>,
}

/// Which of a test cluster's connections are TLS, with certificates the launcher makes
/// for the run (see [`Cluster::authority`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterTls {
    /// Clients connect with TLS (`https://` endpoints).
    pub client: bool,
    /// Members ask clients for a certificate of the cluster's authority
    /// (`--client-cert-auth`): mutual TLS.
    pub client_certificates: bool,
    /// Members talk to each other with mutual TLS.
    pub peer: bool,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            members: 1,
            extra_args: Vec::new(),
            timeout: Duration::from_secs(30),
            etcd: None,
            peer_proxies: false,
            alone: false,
            tls: ClusterTls::default(),
            root_password: None,
            jwt_ttl: None,
            snapshot: None,
        }
    }
}

impl ClusterBuilder {
    /// How many members (1 to 7; default 1).
    pub fn members(mut self, members: usize) -> Self {
        self.members = members;
        self
    }

    /// An extra `etcd` flag for every member, such as `--max-txn-ops=16`.
    pub fn arg(mut self, flag: impl Into<String>) -> Self {
        self.extra_args.push(flag.into());
        self
    }

    /// How long starting, restarting and waiting for a leader may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Puts a proxy in front of every member's peer port, so that [`Cluster::isolate`] can
    /// cut a member off from its peers while clients still reach it.
    pub fn peer_proxies(mut self) -> Self {
        self.peer_proxies = true;
        self
    }

    /// Runs the cluster alone: it takes every one of the machine's cluster slots (see the
    /// module docs), so no other launched cluster runs beside it while it lives. For tests
    /// whose timing bounds assume the machine's cores to themselves and this cluster.
    pub fn alone(mut self) -> Self {
        self.alone = true;
        self
    }

    /// Clients connect with TLS: the members serve a certificate of the cluster's own
    /// authority, and [`Cluster::client`] trusts it.
    pub fn tls(mut self) -> Self {
        self.tls.client = true;
        self
    }

    /// [`ClusterBuilder::tls`], and the members accept only clients that show a
    /// certificate of the cluster's authority (`--client-cert-auth`); [`Cluster::client`]
    /// shows one whose common name is `root`.
    pub fn mutual_tls(mut self) -> Self {
        self.tls.client = true;
        self.tls.client_certificates = true;
        self
    }

    /// The members talk to each other with mutual TLS.
    pub fn peer_tls(mut self) -> Self {
        self.tls.peer = true;
        self
    }

    /// Auth on from the start: a `root` user with this password and the `root` role;
    /// [`Cluster::client`] connects as root.
    pub fn auth(mut self, root_password: impl Into<String>) -> Self {
        self.root_password = Some(root_password.into());
        self
    }

    /// JWT auth tokens (ES256, on a key the launcher makes) that expire `ttl` after they
    /// are issued (whole seconds, at least one), instead of etcd's simple tokens.
    pub fn jwt_tokens(mut self, ttl: Duration) -> Self {
        self.jwt_ttl = Some(ttl);
        self
    }

    /// Starts every member from the snapshot at `path` (a file `Maintenance::snapshot_to_file`
    /// wrote, or `etcdctl snapshot save`): each member's data is restored from it first
    /// with the restore tool beside the etcd binary (see [`LaunchError::RestoreToolMissing`]),
    /// which checks the snapshot's digest. The cluster gets new member IDs, as a restore
    /// does.
    pub fn restore_from(mut self, path: impl Into<PathBuf>) -> Self {
        self.snapshot = Some(path.into());
        self
    }

    /// The etcd binary to run, instead of `ETCD_BIN` or the first `etcd` on `PATH`.
    pub fn etcd_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.etcd = Some(path.into());
        self
    }

    /// Starts the members one after another and waits until they agree on a leader.
    pub fn start(self) -> Result<Cluster, LaunchError> {
        if !(1..=7).contains(&self.members) {
            return Err(LaunchError::Size(self.members));
        }
        let etcd = match &self.etcd {
            Some(path) if path.is_file() => path.clone(),
            Some(_) => return Err(LaunchError::EtcdMissing),
            None => etcd_binary()?,
        };
        let certificates = Certificates::make(self.tls)?;
        let slot = Slot::acquire(self.alone)?;
        let mut attempt = 1;
        loop {
            match self.try_start(&etcd, certificates.as_ref()) {
                Ok((members, proxies, dir, extra)) => {
                    let mut cluster = Cluster::new(
                        members,
                        proxies,
                        dir,
                        etcd,
                        slot,
                        self.timeout,
                        certificates,
                    )?;
                    cluster.joining = Joining {
                        extra,
                        schemes: (self.tls.client, self.tls.peer),
                    };
                    cluster.root_password = self.root_password.clone();
                    cluster.wait_healthy()?;
                    cluster.enable_auth()?;
                    log::info!(
                        "test cluster of {} members runs etcd {} ({})",
                        cluster.size(),
                        cluster.server_version(),
                        cluster.etcd.display()
                    );
                    return Ok(cluster);
                }
                Err((e, port_taken)) if port_taken && attempt < START_ATTEMPTS => {
                    log::info!("test cluster start attempt {attempt} lost a port: {e}");
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One start on fresh ports; on failure also says whether a port was taken meanwhile.
    #[allow(clippy::type_complexity)]
    fn try_start(
        &self,
        etcd: &std::path::Path,
        certificates: Option<&Certificates>,
    ) -> Result<(Vec<Member>, Vec<Proxy>, TempDir, Vec<String>), (LaunchError, bool)> {
        let dir = TempDir::new().map_err(|e| (e, false))?;
        let tls_args = match certificates {
            Some(c) => c.member_args(dir.path()).map_err(|e| (e, false))?,
            None => Vec::new(),
        };
        let jwt_args = match self.jwt_ttl {
            Some(ttl) => super::certs::jwt_args(dir.path(), ttl).map_err(|e| (e, false))?,
            None => Vec::new(),
        };
        let extra: Vec<String> = tls_args
            .into_iter()
            .chain(jwt_args)
            .chain(self.extra_args.iter().cloned())
            .collect();
        let schemes = (self.tls.client, self.tls.peer);
        let per_member = if self.peer_proxies { 3 } else { 2 };
        let ports = free_ports(per_member * self.members).map_err(|e| (e, false))?;
        let triples: Vec<(u16, u16, u16)> = ports
            .chunks(per_member)
            .map(|p| (p[0], p[1], p[per_member - 1]))
            .collect();
        let proxies = if self.peer_proxies {
            triples
                .iter()
                .map(|&(_, peer, proxy)| Proxy::start(proxy, peer))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (e, true))?
        } else {
            Vec::new()
        };
        let token = dir
            .path()
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut members: Vec<Member> = (0..self.members)
            .map(|i| Member::new(i, &triples, dir.path(), &token, &extra, schemes))
            .collect();
        if let Some(snapshot) = &self.snapshot {
            let peer = super::member::scheme(self.tls.peer);
            let initial_cluster = triples
                .iter()
                .enumerate()
                .map(|(i, (_, _, port))| format!("m{i}={peer}://127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(",");
            for (i, (_, _, port)) in triples.iter().enumerate() {
                super::restore::restore(
                    etcd,
                    snapshot,
                    &dir.path().join(&members[i].name),
                    &members[i].name,
                    &format!("{peer}://127.0.0.1:{port}"),
                    &initial_cluster,
                )
                .map_err(|e| (e, false))?;
            }
        }
        let deadline = crate::time::deadline(self.timeout);
        for i in 0..members.len() {
            members[i].spawn(etcd).map_err(|e| (e, false))?;
            // Staggered: the next member starts once this one's peer port serves.
            let peer = members[i].peer_port;
            let mut exited = None;
            let up = poll_until(deadline.saturating_duration_since(Instant::now()), || {
                exited = members[i].exited();
                // A TLS peer port is only seen to accept: the launcher speaks no TLS
                // outside gRPC.
                exited.is_some()
                    || if self.tls.peer {
                        probe::accepts(peer, PROBE_TIMEOUT)
                    } else {
                        probe::http_ok(peer, "/members", PROBE_TIMEOUT)
                    }
            });
            if let Some(status) = exited.or_else(|| members[i].exited()) {
                let logs = all_logs(&members);
                let port_taken = logs.contains("address already in use");
                let reason = format!("etcd member {} exited during start: {status}", i);
                return Err((LaunchError::StartFailed { reason, logs }, port_taken));
            }
            if !up {
                return Err((
                    LaunchError::Timeout {
                        what: format!("member {i} to serve its peer port {peer}"),
                        waited: self.timeout,
                        logs: all_logs(&members),
                    },
                    false,
                ));
            }
        }
        Ok((members, proxies, dir, extra))
    }
}

/// What a member that joins the running cluster is started with, besides its ports: the
/// flags every member has (TLS, JWT, the user's), and whether clients and peers speak TLS.
#[derive(Default)]
struct Joining {
    extra: Vec<String>,
    schemes: (bool, bool),
}

/// A running etcd cluster on loopback; dropping it kills every member and removes the data.
pub struct Cluster {
    // Field order is drop order: processes first, then their directory, then the slot.
    members: Mutex<Vec<Member>>,
    peer_proxies: Vec<Proxy>,
    prober: Prober,
    member_ids: Mutex<Vec<u64>>,
    version: Mutex<Option<ServerVersion>>,
    client_ports: Mutex<Vec<u16>>,
    joining: Joining,
    etcd: PathBuf,
    timeout: Duration,
    certificates: Option<Certificates>,
    root_password: Option<String>,
    dir: TempDir,
    _slot: Slot,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

impl Cluster {
    /// Starts a cluster of `members` members (1 or 3 in most tests) with default settings.
    pub fn start(members: usize) -> Result<Cluster, LaunchError> {
        Cluster::builder().members(members).start()
    }

    /// Settings for a new cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    fn new(
        members: Vec<Member>,
        peer_proxies: Vec<Proxy>,
        dir: TempDir,
        etcd: PathBuf,
        slot: Slot,
        timeout: Duration,
        certificates: Option<Certificates>,
    ) -> Result<Cluster, LaunchError> {
        let client_ports: Vec<u16> = members.iter().map(|m| m.client_port).collect();
        let tls = certificates.as_ref().and_then(Certificates::client_tls);
        Ok(Cluster {
            prober: Prober::new(&client_ports, tls)?,
            member_ids: Mutex::new(vec![0; members.len()]),
            version: Mutex::new(None),
            members: Mutex::new(members),
            peer_proxies,
            client_ports: Mutex::new(client_ports),
            joining: Joining::default(),
            etcd,
            timeout,
            certificates,
            root_password: None,
            dir,
            _slot: slot,
        })
    }

    /// With [`ClusterBuilder::auth`]: the root user and role, and auth on.
    fn enable_auth(&self) -> Result<(), LaunchError> {
        let Some(password) = &self.root_password else {
            return Ok(());
        };
        let failed = |e: crate::Error| LaunchError::StartFailed {
            reason: format!("turning auth on failed: {e}"),
            logs: self.logs(),
        };
        // As the launcher, not as root: auth is still off.
        let mut builder = crate::Client::builder().endpoints(self.endpoints());
        if let Some(tls) = self.client_tls() {
            builder = builder.tls(tls);
        }
        let admin = builder.connect().map_err(failed)?;
        let auth = admin.auth();
        auth.user_add("root", password.as_str()).map_err(failed)?;
        auth.role_add("root").map_err(failed)?;
        auth.user_grant_role("root", "root").map_err(failed)?;
        auth.enable().map_err(failed)?;
        admin.close().map_err(failed)
    }

    /// The etcd version the members report in their status (the first that answered).
    /// Known once the cluster has started, since the start waits for every member's status.
    pub fn server_version(&self) -> ServerVersion {
        self.version.lock().unwrap_or(ServerVersion::new(0, 0, 0))
    }

    /// The etcd binary the members run.
    pub fn etcd_binary(&self) -> &std::path::Path {
        &self.etcd
    }

    /// How many members the cluster has had: those it started with, and every one added
    /// since (removed ones included; their indexes stay theirs).
    pub fn size(&self) -> usize {
        self.client_ports.lock().len()
    }

    /// Every member's client endpoint, `127.0.0.1:port` (`https://127.0.0.1:port` when
    /// clients connect with TLS), in member order; members removed with
    /// [`Cluster::remove_member`] left out.
    pub fn endpoints(&self) -> Vec<String> {
        let removed: Vec<bool> = self.members.lock().iter().map(|m| m.removed).collect();
        (0..self.size())
            .filter(|&i| !removed[i])
            .map(|i| self.endpoint(i))
            .collect()
    }

    /// Member `index`'s client endpoint.
    ///
    /// # Panics
    /// If there is no such member.
    pub fn endpoint(&self, index: usize) -> String {
        let scheme = if self.client_tls().is_some() {
            "https://"
        } else {
            ""
        };
        format!("{scheme}127.0.0.1:{}", self.client_ports.lock()[index])
    }

    /// The authority that made the TLS certificates of this cluster, if it has TLS: for
    /// client certificates of other users, or expired ones.
    pub fn authority(&self) -> Option<&Authority> {
        self.certificates.as_ref().map(|c| &c.authority)
    }

    /// The TLS settings a client of this cluster needs, if clients connect with TLS: its
    /// authority, and with [`ClusterBuilder::mutual_tls`] a client certificate whose
    /// common name is `root`.
    pub fn client_tls(&self) -> Option<crate::Tls> {
        self.certificates
            .as_ref()
            .and_then(Certificates::client_tls)
    }

    /// Member `index`'s client port.
    ///
    /// # Panics
    /// If there is no such member.
    pub fn client_port(&self, index: usize) -> u16 {
        self.client_ports.lock()[index]
    }

    /// A client of every member, with default settings (and [`Cluster::client_tls`], and
    /// the root user with [`ClusterBuilder::auth`]).
    pub fn client(&self) -> crate::Result<crate::Client> {
        self.client_builder().connect()
    }

    /// A client builder with every member's endpoint (and [`Cluster::client_tls`], and
    /// the root user with [`ClusterBuilder::auth`]).
    pub fn client_builder(&self) -> crate::ClientBuilder {
        let mut builder = crate::Client::builder().endpoints(self.endpoints());
        // How CI runs the fault tests a second time with writes coalesced.
        if std::env::var_os(COALESCE_WRITES).is_some_and(|v| v == "1") {
            builder = builder.coalesce_writes(true);
        }
        if let Some(tls) = self.client_tls() {
            builder = builder.tls(tls);
        }
        if let Some(password) = &self.root_password {
            builder = builder.user("root", password.as_str());
        }
        builder
    }

    /// The index of the member that leads, waiting for an election if there is none.
    pub fn leader(&self) -> Result<usize, LaunchError> {
        let mut found = None;
        self.wait_until(self.timeout, "a leader among the running members", || {
            found = self.current_leader();
            found.is_some()
        })?;
        found.ok_or(LaunchError::Member {
            index: 0,
            reason: "no leader",
        })
    }

    /// The etcd member ID of member `index` (known once it has answered a status call).
    pub fn member_id(&self, index: usize) -> Option<u64> {
        self.member_ids
            .lock()
            .get(index)
            .copied()
            .filter(|&id| id != 0)
    }

    /// The process ID of member `index`, if it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.members.lock().get(index).and_then(Member::pid)
    }

    /// SIGKILLs member `index` and reaps it. Its data stays for [`Cluster::restart`].
    pub fn kill(&self, index: usize) -> Result<(), LaunchError> {
        self.with_member(index, |m| m.kill())
    }

    /// Stops member `index` the way an operator does: SIGTERM, after which etcd hands its
    /// leadership over, if it has it, and closes its connections with a GOAWAY. Waits up to
    /// 10 s for it to exit, then SIGKILLs it; says whether it stopped on its own. Its data
    /// stays for [`Cluster::restart`].
    pub fn terminate(&self, index: usize) -> Result<bool, LaunchError> {
        self.with_member(index, |m| m.terminate(Duration::from_secs(10)))
    }

    /// SIGSTOPs member `index`: it keeps its sockets but answers nothing.
    pub fn pause(&self, index: usize) -> Result<(), LaunchError> {
        self.with_member(index, |m| match m.state() {
            State::Running => m.signal_stop(true),
            _ => Err(not_state(index, "is not running")),
        })
    }

    /// SIGCONTs a paused member `index`.
    pub fn resume(&self, index: usize) -> Result<(), LaunchError> {
        self.with_member(index, |m| match m.state() {
            State::Paused => m.signal_stop(false),
            _ => Err(not_state(index, "is not paused")),
        })
    }

    /// Starts a killed member `index` again with its data, and waits until it serves clients
    /// (not for a leader: with quorum lost there may be none; see [`Cluster::wait_healthy`]).
    pub fn restart(&self, index: usize) -> Result<(), LaunchError> {
        let port = self.with_member(index, |m| match m.state() {
            State::Killed => m.spawn(&self.etcd).map(|()| m.client_port),
            _ => Err(not_state(index, "is not killed")),
        })?;
        self.wait_until(self.timeout, &format!("member {index} to serve"), || {
            probe::accepts(port, PROBE_TIMEOUT)
        })
    }

    /// Cuts member `index` off from its peers while clients still reach it: the partition
    /// HTTP/2 pings cannot see. Needs [`ClusterBuilder::peer_proxies`].
    pub fn isolate(&self, index: usize) -> Result<(), LaunchError> {
        let proxies = self.proxies(index)?;
        let id = self.member_id(index).ok_or(LaunchError::Member {
            index,
            reason: "its member ID is not known yet",
        })?;
        let sender = format!("{id:x}");
        for (i, proxy) in proxies.iter().enumerate() {
            if i == index {
                proxy.isolate();
            } else {
                proxy.refuse(&sender);
            }
        }
        Ok(())
    }

    /// Lets every peer link through again after [`Cluster::isolate`].
    pub fn heal(&self) -> Result<(), LaunchError> {
        for proxy in self.proxies(0)? {
            proxy.heal();
        }
        Ok(())
    }

    fn proxies(&self, index: usize) -> Result<&[Proxy], LaunchError> {
        if self.peer_proxies.is_empty() {
            return Err(LaunchError::Member {
                index,
                reason: "the cluster was started without peer proxies",
            });
        }
        if index >= self.peer_proxies.len() {
            return Err(LaunchError::Member {
                index,
                reason: "no such member",
            });
        }
        Ok(&self.peer_proxies)
    }

    /// Waits until every running member answers and all name the same running leader.
    pub fn wait_healthy(&self) -> Result<(), LaunchError> {
        self.wait_until(
            self.timeout,
            "every running member to agree on a leader",
            || self.agreed_leader().is_some(),
        )
    }

    /// Polls `condition` until it holds; after `timeout` fails with what it waited for and
    /// the end of every member's log.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        condition: impl FnMut() -> bool,
    ) -> Result<(), LaunchError> {
        if poll_until(timeout, condition) {
            return Ok(());
        }
        Err(LaunchError::Timeout {
            what: what.to_owned(),
            waited: timeout,
            logs: self.logs(),
        })
    }

    /// The directory that holds every member's data and log; removed on drop.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts etcd's gRPC proxy (`etcd grpc-proxy start`, from the same binary) in front
    /// of every member, on a free loopback port; it logs into the cluster's directory and
    /// stops when dropped (drop it before the cluster).
    pub fn grpc_proxy(&self) -> Result<GrpcProxy, LaunchError> {
        if self.certificates.is_some() {
            return Err(LaunchError::StartFailed {
                reason: "the launcher starts etcd's gRPC proxy for plaintext clusters only"
                    .to_owned(),
                logs: String::new(),
            });
        }
        GrpcProxy::start(&self.etcd, &self.endpoints(), self.dir(), self.timeout)
    }

    /// The last lines of every member's log.
    pub fn logs(&self) -> String {
        all_logs(&self.members.lock())
    }

    /// Adds a voting member to the running cluster: asks the cluster to add it
    /// (MemberAdd), starts it with `--initial-cluster-state=existing` on fresh ports, and
    /// waits until it answers on its client port. Returns its index. Until it has caught
    /// up it counts in the quorum without voting: add one at a time.
    pub fn add_member(&self) -> Result<usize, LaunchError> {
        self.join(false)
    }

    /// Adds a learner, as [`Cluster::add_member`] does a voter: it receives the log
    /// without voting, serves only `Status` and serializable reads, and waits to be
    /// promoted (`client.cluster().member_promote`).
    pub fn add_learner(&self) -> Result<usize, LaunchError> {
        self.join(true)
    }

    fn join(&self, learner: bool) -> Result<usize, LaunchError> {
        let failed = |what: &str, e: crate::Error| LaunchError::StartFailed {
            reason: format!("{what}: {e}"),
            logs: self.logs(),
        };
        let ports = free_ports(2)?;
        let (client_port, peer_port) = (ports[0], ports[1]);
        let (_, peer_tls) = self.joining.schemes;
        let peer_url = format!(
            "{}://127.0.0.1:{peer_port}",
            super::member::scheme(peer_tls)
        );
        let client = self
            .client()
            .map_err(|e| failed("a client to add a member", e))?;
        let cluster = client.cluster().with_timeout(self.timeout);
        let added = if learner {
            cluster.member_add_learner([peer_url.as_str()])
        } else {
            cluster.member_add([peer_url.as_str()])
        }
        .map_err(|e| failed("adding a member", e))?;
        let index = self.size();
        let name = format!("m{index}");
        let initial_cluster = added
            .members
            .iter()
            .flat_map(|m| {
                let name = if m.id == added.member.id {
                    name.clone()
                } else {
                    m.name.clone()
                };
                m.peer_urls.iter().map(move |u| format!("{name}={u}"))
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut member = Member::joining(
            index,
            (client_port, peer_port),
            self.dir(),
            &initial_cluster,
            &self.joining.extra,
            self.joining.schemes,
        );
        member.spawn(&self.etcd)?;
        {
            let mut members = self.members.lock();
            members.push(member);
            self.client_ports.lock().push(client_port);
            self.member_ids.lock().push(added.member.id);
            self.prober.add(client_port);
        }
        self.wait_until(
            self.timeout,
            &format!("the new member {name} to answer"),
            || self.prober.status(index, PROBE_TIMEOUT).is_some(),
        )?;
        client
            .close()
            .map_err(|e| failed("closing the client", e))?;
        Ok(index)
    }

    /// Removes member `index` from the cluster (MemberRemove, through a client of the
    /// others) and stops its process, which etcd ends by itself once removed. Its index
    /// stays its own; [`Cluster::endpoints`] leaves it out from then on.
    pub fn remove_member(&self, index: usize) -> Result<(), LaunchError> {
        let id = self.member_id(index).ok_or(LaunchError::Member {
            index,
            reason: "its member ID is not known yet",
        })?;
        let failed = |what: &str, e: crate::Error| LaunchError::StartFailed {
            reason: format!("{what}: {e}"),
            logs: self.logs(),
        };
        let client = self
            .client()
            .map_err(|e| failed("a client to remove a member", e))?;
        let cluster = client.cluster().with_timeout(self.timeout);
        match cluster.member_remove(id) {
            Ok(_) => {}
            // A leader that removes itself steps down as it applies the change, and its
            // answer may be lost: the member list says whether it happened.
            Err(e) if e.is_write_outcome_unknown() => {
                let mut gone = false;
                self.wait_until(self.timeout, "the member list to settle", || match cluster
                    .member_list()
                {
                    Ok(list) => {
                        gone = list.members.iter().all(|m| m.id != id);
                        true
                    }
                    Err(_) => false,
                })?;
                if !gone {
                    return Err(failed("removing a member", e));
                }
            }
            Err(e) => return Err(failed("removing a member", e)),
        }
        client
            .close()
            .map_err(|e| failed("closing the client", e))?;
        self.with_member(index, |m| {
            m.removed = true;
            m.terminate(Duration::from_secs(10)).map(drop)
        })
    }

    /// The whole log of member `index` (etcd's JSON lines, stderr included), for a test
    /// that counts what the member said: `logs` gives only the last lines of each.
    pub fn log(&self, index: usize) -> Result<String, LaunchError> {
        self.with_member(index, |member| {
            std::fs::read(&member.log)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .map_err(|e| LaunchError::io(format!("reading {:?}", member.log), e))
        })
    }

    fn with_member<T>(
        &self,
        index: usize,
        f: impl FnOnce(&mut Member) -> Result<T, LaunchError>,
    ) -> Result<T, LaunchError> {
        let mut members = self.members.lock();
        let member = members.get_mut(index).ok_or(LaunchError::Member {
            index,
            reason: "no such member",
        })?;
        f(member)
    }

    fn running(&self) -> Vec<usize> {
        let members = self.members.lock();
        (0..members.len())
            .filter(|&i| members[i].state() == State::Running)
            .collect()
    }

    /// Asks the running members who leads; records their IDs on the way.
    fn statuses(&self) -> Vec<(usize, Option<u64>)> {
        self.running()
            .into_iter()
            .map(|i| {
                let status = self.prober.status(i, PROBE_TIMEOUT);
                if let Some(s) = &status {
                    self.member_ids.lock()[i] = s.member_id;
                    let mut version = self.version.lock();
                    if version.is_none() {
                        *version = ServerVersion::parse(&s.version);
                    }
                }
                (i, status.map(|s| s.leader).filter(|&l| l != 0))
            })
            .collect()
    }

    /// The leader's index, when some running member names a running leader.
    fn current_leader(&self) -> Option<usize> {
        let statuses = self.statuses();
        let ids = self.member_ids.lock().clone();
        statuses.iter().find_map(|(_, leader)| {
            let leader = (*leader)?;
            let index = ids.iter().position(|&id| id == leader)?;
            statuses.iter().any(|(i, _)| *i == index).then_some(index)
        })
    }

    /// The leader's index, when every running member answers and names the same running
    /// leader.
    fn agreed_leader(&self) -> Option<usize> {
        let statuses = self.statuses();
        let first = statuses.first()?.1?;
        if !statuses.iter().all(|(_, l)| *l == Some(first)) {
            return None;
        }
        let index = self.member_ids.lock().iter().position(|&id| id == first)?;
        statuses.iter().any(|(i, _)| *i == index).then_some(index)
    }
}

fn not_state(index: usize, reason: &'static str) -> LaunchError {
    LaunchError::Member { index, reason }
}

fn all_logs(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| m.log_tail(30))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A TLS cluster's certificates: its authority, the one certificate every member serves
/// and dials with, and the `root` client certificate when members check clients'.
struct Certificates {
    tls: ClusterTls,
    authority: Authority,
    member: Identity,
    root: Option<Identity>,
}

impl Certificates {
    /// The certificates `tls` needs, or none for a plaintext cluster.
    fn make(tls: ClusterTls) -> Result<Option<Certificates>, LaunchError> {
        if !(tls.client || tls.peer) {
            return Ok(None);
        }
        let authority = Authority::new("etcd-blocking test authority")?;
        let member = authority.member()?;
        let root = if tls.client_certificates {
            Some(authority.client("root", Validity::Current)?)
        } else {
            None
        };
        Ok(Some(Certificates {
            tls,
            authority,
            member,
            root,
        }))
    }

    /// Writes the files into `dir`; the flags that make a member use them.
    fn member_args(&self, dir: &std::path::Path) -> Result<Vec<String>, LaunchError> {
        let write = |name: &str, content: &str| {
            let path = dir.join(name);
            std::fs::write(&path, content)
                .map_err(|e| LaunchError::io(format!("writing {}", path.display()), e))?;
            Ok::<_, LaunchError>(path.display().to_string())
        };
        let ca = write("ca.pem", &self.authority.certificate())?;
        let cert = write("member.pem", &self.member.certificate)?;
        let key = write("member-key.pem", &self.member.key)?;
        let mut args = Vec::new();
        if self.tls.client {
            args.push(format!("--cert-file={cert}"));
            args.push(format!("--key-file={key}"));
            if self.tls.client_certificates {
                args.push("--client-cert-auth".to_owned());
                args.push(format!("--trusted-ca-file={ca}"));
            }
        }
        if self.tls.peer {
            args.push(format!("--peer-cert-file={cert}"));
            args.push(format!("--peer-key-file={key}"));
            args.push("--peer-client-cert-auth".to_owned());
            args.push(format!("--peer-trusted-ca-file={ca}"));
        }
        Ok(args)
    }

    /// What a client needs, when clients connect with TLS.
    fn client_tls(&self) -> Option<crate::Tls> {
        self.tls
            .client
            .then(|| self.authority.tls(self.root.as_ref()))
    }
}
