//! Every example runs to its end against a throwaway cluster of its own, so none rots:
//! `cargo test` builds them, this runs the binaries it built.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one example may take (each starts a 3-member cluster; the election example
/// kills a member and waits out the failover).
const LIMIT: Duration = Duration::from_secs(120);

/// The directory cargo put the example binaries in: `target/<profile>/examples`, beside
/// the `deps` directory that holds this test.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
}

/// Runs example `name`; its output, or a panic with it when it fails or overruns.
fn run(name: &str) -> String {
    let binary = examples_dir().join(name);
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples",
        binary.display()
    );
    let mut child = Command::new(&binary)
        .env_remove("ETCD_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} ran past {LIMIT:?}");
        }
        std::thread::park_timeout(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).expect("stdout");
    }
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut err).expect("stderr");
    }
    assert!(
        status.success(),
        "example {name}: {status}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    out
}

#[test]
fn every_example_runs_to_its_end() {
    for (name, last) in [
        ("quickstart", "delete quickstart/"),
        ("watch", "watch example done"),
        ("lease", "lease example done"),
        ("lock", "lock example done"),
        ("election", "election example done"),
        ("stm", "stm example done"),
        ("registry", "registry example done"),
        ("secure", "secure example done"),
        ("members", "members example done"),
        ("backup", "backup example done"),
        ("config_watch", "config_watch example done"),
    ] {
        let out = run(name);
        assert!(out.contains(last), "example {name} ended early:\n{out}");
    }
}
