//! What the launcher needs around the processes: ports, a machine-wide cap on running
//! clusters, a temporary directory, and reading logs.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::error::LaunchError;

/// Ports are taken below Linux's ephemeral range (32768-60999), so outgoing connections,
/// which the kernel numbers from that range, never hold a port a member is about to bind.
const PORT_RANGE: std::ops::Range<u16> = 20000..32000;

/// A small pseudo-random sequence, seeded per process, for port choice.
fn next_random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);
    let _ = STATE.compare_exchange(0, seed | 1, Ordering::Relaxed, Ordering::Relaxed);
    // xorshift64*
    let mut x = STATE.load(Ordering::Relaxed);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    STATE.store(x, Ordering::Relaxed);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Picks `n` distinct loopback ports that are free now and that this process has not handed
/// out before.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, LaunchError> {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..1000 {
        if ports.len() == n {
            break;
        }
        let port = PORT_RANGE.start + (next_random() % span) as u16;
        if given.lock().contains(&port) || TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        given.lock().insert(port);
        ports.push(port);
    }
    if ports.len() < n {
        return Err(LaunchError::io(
            "finding free loopback ports",
            std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port found"),
        ));
    }
    Ok(ports)
}

/// A machine-wide slot for one running cluster: a lock on one of
/// `ETCD_BLOCKING_MAX_CLUSTERS` files, released when dropped (or when the process dies);
/// or, for a cluster that runs alone, a lock on every one of them.
pub(crate) struct Slot {
    _files: Vec<File>,
}

/// How long a start waits for a slot before it gives up.
const SLOT_WAIT: Duration = Duration::from_secs(600);

impl Slot {
    /// One free slot, or with `all` every slot: all at once or none (a start never waits
    /// while it holds a slot, so a test that starts two clusters cannot wait on one that
    /// waits for it).
    pub(crate) fn acquire(all: bool) -> Result<Slot, LaunchError> {
        let max = std::env::var("ETCD_BLOCKING_MAX_CLUSTERS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(2);
        let dir = std::env::temp_dir().join("etcd-blocking-slots");
        fs::create_dir_all(&dir).map_err(|e| LaunchError::io(format!("creating {dir:?}"), e))?;
        let deadline = crate::time::deadline(SLOT_WAIT);
        // Opened once; each try only asks for the locks.
        let mut files = (0..max)
            .map(|i| {
                let path = dir.join(format!("slot-{i}.lock"));
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| LaunchError::io(format!("opening {path:?}"), e))
            })
            .collect::<Result<Vec<File>, LaunchError>>()?;
        let timeout = || LaunchError::Timeout {
            what: format!(
                "{} of {max} cluster slots in {dir:?}",
                if all { "all" } else { "one" }
            ),
            waited: SLOT_WAIT,
            logs: String::new(),
        };
        loop {
            if all {
                let taken = files.iter().take_while(|f| f.try_lock().is_ok()).count();
                if taken == max {
                    return Ok(Slot { _files: files });
                }
                // All or none: give back what this try took.
                for file in &files[..taken] {
                    let _ = file.unlock();
                }
            } else if let Some(i) = files.iter().position(|f| f.try_lock().is_ok()) {
                return Ok(Slot {
                    _files: vec![files.swap_remove(i)],
                });
            }
            if Instant::now() >= deadline {
                return Err(timeout());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A directory that is removed with everything in it when dropped.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new() -> Result<TempDir, LaunchError> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "etcd-blocking-{}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed),
            next_random() % 1_000_000
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).map_err(|e| LaunchError::io(format!("creating {path:?}"), e))?;
        Ok(TempDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            log::warn!("removing {:?}: {e}", self.path);
        }
    }
}

/// Starts `etcd` with `args`, its output appended to `log`, with none of this process's
/// `ETCD_*` variables: etcd reads every one as a flag (`ETCD_VERSION=3.4` as `--version`,
/// which it then refuses).
pub(crate) fn spawn_etcd(
    etcd: &Path,
    args: &[String],
    log: &Path,
) -> Result<std::process::Child, LaunchError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| LaunchError::io(format!("opening {log:?}"), e))?;
    let err = out
        .try_clone()
        .map_err(|e| LaunchError::io("duplicating the log handle", e))?;
    let mut command = std::process::Command::new(etcd);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCD_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(out))
        .stderr(std::process::Stdio::from(err))
        .spawn()
        .map_err(|e| LaunchError::io(format!("starting {}", etcd.display()), e))
}

/// The last `lines` lines of a file, or a note that it could not be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {path:?}: {e})"),
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
pub(crate) fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = crate::time::deadline(timeout);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let a = free_ports(6).expect("ports");
        let b = free_ports(6).expect("ports");
        let all: HashSet<u16> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 12);
        assert!(all.iter().all(|p| PORT_RANGE.contains(p)));
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = TempDir::new().expect("temp dir");
        let path = dir.path().to_owned();
        fs::write(path.join("f"), b"x").expect("write");
        drop(dir);
        assert!(!path.exists());
    }
}
