//! Token expiry side by side (`COMPARE_MODE=expiry`), and this client's driver for it.
//!
//! Every client that has auth (this one, the Go client, jetcd, etcd-client) runs the same
//! mixed load as user `root` on a 1-member cluster whose tokens expire after 2 s, and
//! counts what the expiries cost it:
//!
//! `--workload=expiry --user=U --password=P --duration-ms=D --idle-ms=I --ttl-s=T`: the
//! driver watches the prefix `exp/` and keeps a lease of TTL T s alive, then repeats until D ms
//! have passed: 300 ms of sequential puts of `exp/<n>`, each read back; a new watch of
//! `late/<cycle>/` awaited created, a put under it and its event awaited (5 s each); then
//! I ms idle. Then it waits (5 s at most) until its `exp/` watch has delivered every put
//! it was told succeeded, and asks the lease's time to live. It prints one JSON line:
//! `ops` (calls that succeeded), `errors` (calls that failed), `watches` and
//! `watch_errors` (late watches, and those not created or whose event never came), `lost`
//! (acknowledged puts the first watch never delivered), `repeated` (events delivered
//! twice or out of order), `lapsed` (1 if the kept lease is gone), `seconds`,
//! `cpu_seconds`.
//!
//! Two clusters, one run of every client on each per round:
//! - **Simple tokens**, `--auth-token-ttl=2`: they expire 2 s after their last use (the
//!   member looks once a second), and every use renews them, a lease's renewal included
//!   (etcd 3.6 and later check the token of every keepalive). So the driver idles 4 s in
//!   every cycle and keeps a lease of TTL 12 s, which its client renews every 4 s or so:
//!   calls after an idle and renewals both meet expired tokens. 16 s a run.
//! - **JWT**, 2 s: they expire 2 s after they are issued, used or not, and any change of
//!   users or roles makes every token issued before it old; this process adds a role every
//!   2.5 s while the driver runs, which idles never and keeps a lease of TTL 3 s. 12 s a run.
//!
//! The member's own log counts the tokens it refused as invalid (its warning `invalid auth
//! token`) during each run, to show that the run did meet expired tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, DeleteOptions, WatchOptions, Watcher};

use crate::{cpu_seconds, flag, json_number, Peer};

/// The root password of the comparison's clusters.
const PASSWORD: &str = "expiry-bench";

/// Every wait of the driver: a call's deadline, an event awaited.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// This client's driver.

/// What the driver counted.
#[derive(Default)]
struct Counts {
    ops: u64,
    errors: u64,
    watches: u64,
    watch_errors: u64,
}

impl Counts {
    fn count<T>(&mut self, result: etcd_blocking::Result<T>) -> Option<T> {
        match result {
            Ok(t) => {
                self.ops += 1;
                Some(t)
            }
            Err(e) => {
                self.errors += 1;
                eprintln!("expiry: a call failed: {e}");
                None
            }
        }
    }
}

/// Runs this client's side of `expiry`.
pub fn drive(args: &[String], client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let run = Duration::from_millis(flag(args, "duration-ms").map_or(Ok(12_000), |v| v.parse())?);
    let idle = Duration::from_millis(flag(args, "idle-ms").map_or(Ok(0), |v| v.parse())?);
    let ttl = Duration::from_secs(flag(args, "ttl-s").map_or(Ok(3), |v| v.parse())?);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let watcher = client
        .watch()
        .watch_with("exp/", WatchOptions::new().prefix().buffer(1 << 20))?;
    watcher.created_revision()?;
    let lease = client.lease();
    let granted = lease.grant(ttl)?;
    let _kept = lease.keep_alive(granted.id())?;
    let kv = client.kv();
    let mut counts = Counts::default();
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    let mut cycle = 0u64;
    while started.elapsed() < run {
        let burst = Instant::now() + Duration::from_millis(300);
        while Instant::now() < burst {
            let key = format!("exp/{n:08}");
            n += 1;
            if counts.count(kv.put(key.as_str(), "v")).is_some() {
                acknowledged.push(key.clone());
            }
            counts.count(kv.get(key.as_str()));
        }
        let prefix = format!("late/{cycle}/");
        cycle += 1;
        counts.watches += 1;
        if !late_watch(client, &prefix, &mut counts) {
            counts.watch_errors += 1;
        }
        let until = Instant::now() + idle;
        while Instant::now() < until {
            thread::park_timeout(until.saturating_duration_since(Instant::now()));
        }
    }
    let seen = delivered(&watcher, acknowledged.len());
    let (lost, repeated) = lost_and_repeated(&acknowledged, &seen);
    let lapsed = match lease.time_to_live(granted.id()) {
        Ok(ttl) => u8::from(ttl.ttl().is_none()),
        Err(e) => {
            eprintln!("expiry: the lease's time to live: {e}");
            1
        }
    };
    println!(
        "{{\"client\":\"{}\",\"workload\":\"expiry\",\"ops\":{},\"errors\":{},\
         \"watches\":{},\"watch_errors\":{},\"lost\":{lost},\"repeated\":{repeated},\
         \"lapsed\":{lapsed},\"seconds\":{},\"cpu_seconds\":{}}}",
        crate::OURS,
        counts.ops,
        counts.errors,
        counts.watches,
        counts.watch_errors,
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
    Ok(())
}

/// A new watch of `prefix`, awaited created; a put under it and its event awaited. Whether
/// all of it worked.
fn late_watch(client: &Client, prefix: &str, counts: &mut Counts) -> bool {
    let watcher = match client
        .watch()
        .watch_with(prefix, WatchOptions::new().prefix())
        .and_then(|w| w.created_revision().map(|_| w))
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("expiry: watch {prefix} not created: {e}");
            return false;
        }
    };
    if counts
        .count(client.kv().put(format!("{prefix}k"), "x"))
        .is_none()
    {
        return false;
    }
    let until = Instant::now() + WAIT;
    loop {
        match watcher.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Some(response)) if !response.events().is_empty() => return true,
            Ok(Some(_)) => {}
            Ok(None) => {
                eprintln!("expiry: no event on watch {prefix} in {WAIT:?}");
                return false;
            }
            Err(e) => {
                eprintln!("expiry: watch {prefix} ended: {e}");
                return false;
            }
        }
    }
}

/// The keys `watcher` delivers, in order, until it has delivered `expected` of them or
/// nothing comes for [`WAIT`].
fn delivered(watcher: &Watcher, expected: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < expected {
        match watcher.recv_timeout(WAIT) {
            Ok(Some(response)) => seen.extend(
                response
                    .events()
                    .iter()
                    .map(|e| String::from_utf8_lossy(e.kv().key()).into_owned()),
            ),
            Ok(None) => break,
            Err(e) => {
                eprintln!("expiry: the watch of exp/ ended: {e}");
                break;
            }
        }
    }
    seen
}

/// Acknowledged keys never delivered, and deliveries that repeat a key or come out of
/// order (keys are written in increasing order by one caller).
fn lost_and_repeated(acknowledged: &[String], seen: &[String]) -> (usize, usize) {
    let mut times: HashMap<&str, usize> = HashMap::new();
    let mut repeated = 0;
    let mut last: Option<&str> = None;
    for key in seen {
        let count = times.entry(key.as_str()).or_default();
        *count += 1;
        if *count > 1 || last.is_some_and(|l| l >= key.as_str()) {
            repeated += 1;
        }
        last = Some(key.as_str());
    }
    let lost = acknowledged
        .iter()
        .filter(|k| !times.contains_key(k.as_str()))
        .count();
    (lost, repeated)
}

// ---------------------------------------------------------------------------------------
// The orchestrator.

/// One driver's answer to `expiry`.
#[derive(Debug, Clone, Default)]
struct Expiry {
    ops: f64,
    errors: f64,
    watches: f64,
    watch_errors: f64,
    lost: f64,
    repeated: f64,
    lapsed: f64,
    /// Tokens the member refused as invalid during the run (its log).
    refused: f64,
    /// What the driver said of its failures (its `expiry:` lines on stderr).
    said: Vec<String>,
}

impl Expiry {
    fn parse(line: &str) -> Option<Expiry> {
        let number = |name: &str| json_number(line, name);
        Some(Expiry {
            ops: number("ops")?,
            errors: number("errors")?,
            watches: number("watches")?,
            watch_errors: number("watch_errors")?,
            lost: number("lost")?,
            repeated: number("repeated")?,
            lapsed: number("lapsed")?,
            refused: 0.0,
            said: Vec::new(),
        })
    }
}

/// A cell: its name, how long a run lasts, the driver's idle time per cycle, its lease's
/// TTL, and whether the cluster has JWT tokens and roles change during the run (else simple
/// tokens).
struct Cell {
    name: &'static str,
    run_ms: u64,
    idle_ms: u64,
    ttl_s: u64,
    jwt: bool,
}

const CELLS: [Cell; 2] = [
    Cell {
        name: "Simple tokens, TTL 2 s; 4 s idle per cycle, a lease of TTL 12 s",
        run_ms: 16_000,
        idle_ms: 4000,
        ttl_s: 12,
        jwt: false,
    },
    Cell {
        name: "JWT, 2 s, a role added every 2.5 s; no idle, a lease of TTL 3 s",
        run_ms: 12_000,
        idle_ms: 0,
        ttl_s: 3,
        jwt: true,
    },
];

/// The member's count of tokens it refused as invalid, from its log.
fn refused_so_far(cluster: &Cluster) -> usize {
    cluster
        .log(0)
        .map_or(0, |log| log.matches("invalid auth token").count())
}

/// Runs every peer with auth through both cells, `COMPARE_EXPIRY_ROUNDS` rounds (default
/// 3, the order rotating), and writes `expiry-compare.md`.
pub fn compare(peers: &[Peer]) -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, out) = crate::rounds_and_out("COMPARE_EXPIRY_ROUNDS");
    let peers: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.name != crate::FLOOR && p.name != "python-etcd3")
        .collect();
    let mut lost_runs = Vec::new();
    let mut runs: Vec<Vec<Vec<Expiry>>> = peers
        .iter()
        .map(|_| CELLS.iter().map(|_| Vec::new()).collect())
        .collect();
    for (c, cell) in CELLS.iter().enumerate() {
        let builder = Cluster::builder().auth(PASSWORD);
        let cluster = if cell.jwt {
            builder.jwt_tokens(Duration::from_secs(2)).start()?
        } else {
            builder.arg("--auth-token-ttl=2").start()?
        };
        let endpoints = cluster.endpoints().join(",");
        let admin = cluster.client()?;
        let mut roles = 0;
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..peers.len()).collect();
            order.rotate_left(round % peers.len().max(1));
            for &i in &order {
                let before = refused_so_far(&cluster);
                let done = AtomicBool::new(false);
                let result = thread::scope(|s| {
                    if cell.jwt {
                        s.spawn(|| {
                            while !done.load(Ordering::Relaxed) {
                                let next = Instant::now() + Duration::from_millis(2500);
                                while !done.load(Ordering::Relaxed) && Instant::now() < next {
                                    thread::park_timeout(Duration::from_millis(50));
                                }
                                if !done.load(Ordering::Relaxed) {
                                    roles += 1;
                                    if let Err(e) = admin.auth().role_add(format!("bench-{roles}"))
                                    {
                                        eprintln!("expiry: adding a role: {e}");
                                    }
                                }
                            }
                        });
                    }
                    let result = crate::run_peer_telling(
                        peers[i],
                        &[
                            format!("--endpoints={endpoints}"),
                            "--workload=expiry".to_owned(),
                            "--user=root".to_owned(),
                            format!("--password={PASSWORD}"),
                            format!("--duration-ms={}", cell.run_ms),
                            format!("--idle-ms={}", cell.idle_ms),
                            format!("--ttl-s={}", cell.ttl_s),
                        ],
                        Expiry::parse,
                    );
                    done.store(true, Ordering::Relaxed);
                    result
                });
                for prefix in ["exp/", "late/"] {
                    admin
                        .kv()
                        .delete_with(prefix, DeleteOptions::new().prefix())?;
                }
                match result {
                    Ok((mut run, stderr)) => {
                        run.said = stderr
                            .lines()
                            .filter_map(|l| l.strip_prefix("expiry: "))
                            .map(str::to_owned)
                            .collect();
                        run.refused = refused_so_far(&cluster).saturating_sub(before) as f64;
                        eprintln!(
                            "expiry, {}: {:<15} {} failed of {}, {} of {} watches failed, \
                             {} lost, {} repeated, lapsed {}, {} refused tokens",
                            cell.name,
                            peers[i].name,
                            run.errors,
                            run.ops + run.errors,
                            run.watch_errors,
                            run.watches,
                            run.lost,
                            run.repeated,
                            run.lapsed,
                            run.refused
                        );
                        runs[i][c].push(run);
                    }
                    Err(e) => lost_runs.push(format!(
                        "- {}, {}: {}",
                        cell.name,
                        peers[i].name,
                        e.to_string().lines().next().unwrap_or("")
                    )),
                }
            }
        }
    }
    let mut table = format!(
        "# Token expiry side by side\n\n\
         Made by `scripts/compare` (`COMPARE_MODE=expiry`, \
         `benches/compare/benches/peer_expiry/mod.rs`): every client with auth its own \
         process, as user `root`, on a 1-member cluster with auth on, {rounds} alternating \
         round(s); the figures are sums over the rounds. The load, in cycles: \
         300 ms of puts of new keys under a watched prefix, each read back; a new watch \
         created, a put under it and its event awaited; an idle time; a lease kept alive \
         throughout. At the end every put acknowledged must have come on the first watch \
         once, in order, and the lease must still be there. \"Refused tokens\" counts the \
         member's own warnings `invalid auth token` during the runs: the expired tokens \
         each client met.\n"
    );
    for (c, cell) in CELLS.iter().enumerate() {
        table.push_str(&format!(
            "\n## {}; {} s a run\n\n| client | calls failed | late watches failed | events lost | \
             events repeated or reordered | leases lapsed | refused tokens |\n\
             |---|---|---|---|---|---|---|\n",
            cell.name,
            cell.run_ms / 1000
        ));
        for (i, peer) in peers.iter().enumerate() {
            let runs = &runs[i][c];
            if runs.is_empty() {
                continue;
            }
            let sum = |f: &dyn Fn(&Expiry) -> f64| runs.iter().map(f).sum::<f64>();
            table.push_str(&format!(
                "| {} | {:.0} of {:.0} | {:.0} of {:.0} | {:.0} | {:.0} | {:.0} of {} | {:.0} |\n",
                peer.name,
                sum(&|r| r.errors),
                sum(&|r| r.ops + r.errors),
                sum(&|r| r.watch_errors),
                sum(&|r| r.watches),
                sum(&|r| r.lost),
                sum(&|r| r.repeated),
                sum(&|r| r.lapsed),
                runs.len(),
                sum(&|r| r.refused),
            ));
        }
    }
    let mut said = String::new();
    for (c, cell) in CELLS.iter().enumerate() {
        for (i, peer) in peers.iter().enumerate() {
            let all: Vec<&String> = runs[i][c].iter().flat_map(|r| &r.said).collect();
            if all.is_empty() {
                continue;
            }
            said.push_str(&format!(
                "- {}, {} ({} lines), the first: {}\n",
                peer.name,
                cell.name,
                all.len(),
                shortened(all[0])
            ));
            if let Some(other) = all.iter().find(|l| kind(l) != kind(all[0])) {
                said.push_str(&format!("  and another kind: {}\n", shortened(other)));
            }
        }
    }
    if !said.is_empty() {
        table.push_str(&format!(
            "\n## What the failures said\n\nEach driver's own words (its stderr):\n\n{said}"
        ));
    }
    crate::write_table(&out, "expiry-compare.md", table, &lost_runs)
}

/// A failure line cut to a table's width.
fn shortened(line: &str) -> String {
    let line: String = line.chars().take(200).collect();
    format!("`{}`", line.replace('`', "'"))
}

/// What kind of failure a line tells: its words before the first colon, numbers and
/// watched prefixes left out.
fn kind(line: &str) -> String {
    line.split(':')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect()
}
