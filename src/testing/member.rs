//! One etcd process of a test cluster: how it is started, signalled and stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::error::LaunchError;
use super::support::{spawn_etcd, tail};

/// The flags that make a loopback cluster fast: 10 ms heartbeats, 100 ms elections, no fsync,
/// warnings only in the log.
const FAST_FLAGS: &[&str] = &[
    "--heartbeat-interval=10",
    "--election-timeout=100",
    "--pre-vote=true",
    "--unsafe-no-fsync",
    "--snapshot-count=10000",
    "--logger=zap",
    "--log-outputs=stderr",
    "--log-level=warn",
];

/// A URL scheme: `https` with TLS, `http` without.
pub(crate) fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// What state a member's process is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Running,
    Paused,
    Killed,
}

pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) client_port: u16,
    pub(crate) peer_port: u16,
    pub(crate) log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    /// Removed from the cluster: it will not serve again.
    pub(crate) removed: bool,
}

impl Member {
    /// Describes member `index` of a cluster whose members listen on `ports` (client,
    /// peer, and the peer port the others dial: a proxy's, or the peer port itself) and
    /// keep their data under `dir`.
    pub(crate) fn new(
        index: usize,
        ports: &[(u16, u16, u16)],
        dir: &Path,
        token: &str,
        extra: &[String],
        (client_tls, peer_tls): (bool, bool),
    ) -> Member {
        let peer = scheme(peer_tls);
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, _, port))| format!("m{i}={peer}://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        Member::with_cluster(
            index,
            ports[index],
            dir,
            (&initial_cluster, "new", token),
            extra,
            (client_tls, peer_tls),
        )
    }

    /// Describes member `index`, which joins a running cluster: `initial_cluster` names
    /// every member as the cluster knows them after its MemberAdd, this one included.
    pub(crate) fn joining(
        index: usize,
        (client_port, peer_port): (u16, u16),
        dir: &Path,
        initial_cluster: &str,
        extra: &[String],
        schemes: (bool, bool),
    ) -> Member {
        Member::with_cluster(
            index,
            (client_port, peer_port, peer_port),
            dir,
            (initial_cluster, "existing", ""),
            extra,
            schemes,
        )
    }

    fn with_cluster(
        index: usize,
        (client_port, peer_port, advertised): (u16, u16, u16),
        dir: &Path,
        (initial_cluster, state, token): (&str, &str, &str),
        extra: &[String],
        (client_tls, peer_tls): (bool, bool),
    ) -> Member {
        let (client, peer) = (scheme(client_tls), scheme(peer_tls));
        let name = format!("m{index}");
        let client_url = format!("{client}://127.0.0.1:{client_port}");
        let listen_peer_url = format!("{peer}://127.0.0.1:{peer_port}");
        let peer_url = format!("{peer}://127.0.0.1:{advertised}");
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", dir.join(&name).display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={listen_peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
        ];
        if !token.is_empty() {
            args.push(format!("--initial-cluster-token={token}"));
        }
        args.extend(FAST_FLAGS.iter().map(|f| (*f).to_owned()));
        args.extend(extra.iter().cloned());
        Member {
            log: dir.join(format!("{name}.log")),
            name,
            client_port,
            peer_port,
            args,
            child: None,
            paused: false,
            removed: false,
        }
    }

    /// Starts the process (again, with the same data, after a kill).
    pub(crate) fn spawn(&mut self, etcd: &Path) -> Result<(), LaunchError> {
        let child = spawn_etcd(etcd, &self.args, &self.log)?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    pub(crate) fn state(&self) -> State {
        match (&self.child, self.paused) {
            (None, _) => State::Killed,
            (Some(_), true) => State::Paused,
            (Some(_), false) => State::Running,
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status, if the process has ended on its own.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) -> Result<(), LaunchError> {
        if let Some(mut child) = self.child.take() {
            // An already-exited child makes kill fail; wait still reaps it.
            let _ = child.kill();
            child
                .wait()
                .map_err(|e| LaunchError::io(format!("reaping {}", self.name), e))?;
        }
        self.paused = false;
        Ok(())
    }

    /// SIGTERM, then up to `grace` for etcd to stop on its own (a leader hands its
    /// leadership over first); SIGKILL after that. Reaps it either way, and says whether it
    /// stopped on its own.
    pub(crate) fn terminate(&mut self, grace: std::time::Duration) -> Result<bool, LaunchError> {
        let Some(pid) = self.pid() else {
            return Ok(true);
        };
        if self.paused {
            self.signal_stop(false)?;
        }
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| LaunchError::io("running kill (from procps)", e))?;
        let on_its_own =
            status.success() && super::support::poll_until(grace, || self.exited().is_some());
        self.kill()?;
        Ok(on_its_own)
    }

    /// SIGSTOP (`pause == true`) or SIGCONT.
    pub(crate) fn signal_stop(&mut self, pause: bool) -> Result<(), LaunchError> {
        let pid = self.pid().ok_or_else(|| {
            LaunchError::io(
                format!("signalling {}", self.name),
                std::io::Error::other("not running"),
            )
        })?;
        let signal = if pause { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .map_err(|e| LaunchError::io("running kill (from procps)", e))?;
        if !status.success() {
            return Err(LaunchError::io(
                format!("kill {signal} {pid}"),
                std::io::Error::other(status.to_string()),
            ));
        }
        // The signal is delivered asynchronously: return once every thread of the process
        // has stopped (or is running again), so the caller's next step sees the new state.
        let settled = super::support::poll_until(std::time::Duration::from_secs(5), || {
            all_threads_stopped(pid) == Some(pause)
        });
        if !settled {
            return Err(LaunchError::io(
                format!("kill {signal} {pid}"),
                std::io::Error::other("the process did not change state within 5 s"),
            ));
        }
        self.paused = pause;
        Ok(())
    }

    /// The end of the member's log, headed by its name.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- {} (client {}, peer {}) log {:?}:\n{}",
            self.name,
            self.client_port,
            self.peer_port,
            self.log,
            tail(&self.log, lines)
        )
    }
}

/// Whether every thread of process `pid` is stopped (state `T`), from `/proc`; `None` if
/// that cannot be read.
fn all_threads_stopped(pid: u32) -> Option<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut all = true;
    for task in tasks {
        let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
        // The state follows the parenthesised command name, which may contain spaces.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        all &= state == "T";
    }
    Some(all)
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            log::warn!("{e}");
        }
    }
}
