//! Failover side by side (`COMPARE_MODE=failover`): every client's driver runs timed, traced
//! put load from 8 callers against a fresh 3-member cluster, the leader first in its
//! endpoint list; one second into the timed phase the leader is faulted. From the trace:
//! time from the fault to the first success, requests failed and stalled (over 1 s) after
//! it, and whether the driver finished at all (or how many requests it had in flight
//! when it was killed as hung).

use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_blocking::testing::{Cluster, Proxy};

use crate::{unix_micros, Peer};

/// How long each driver runs its load: long enough after the fault (at 1 s) to see a
/// client that waits out the whole 5 s deadline of its requests recover after it.
const LOAD_MS: u64 = 10_000;
/// When, into the timed phase, the fault comes.
const FAULT_AFTER: Duration = Duration::from_secs(1);
/// How long past its load a driver may take before it is killed as hung.
const GRACE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Term,
    Kill,
    Stop,
    Isolate,
    Blackhole,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Term => "SIGTERM leader (graceful stop)",
            Fault::Kill => "SIGKILL leader",
            Fault::Stop => "SIGSTOP leader",
            Fault::Isolate => "leader cut off from peers",
            Fault::Blackhole => "leader's client port blackholed",
        }
    }
}

/// What one driver's run through one fault showed.
struct Outcome {
    /// Microseconds from the fault to the end of the first request that succeeded after it.
    first_us: Option<u128>,
    failed: usize,
    stalled: usize,
    /// `None` when the driver ended by itself; else how many of its callers were still in
    /// a request when it was killed as hung.
    killed_in_flight: Option<usize>,
}

/// The callers of every driver's failover load.
const CALLERS: usize = 8;

/// Runs every fault against every peer, `COMPARE_FAILOVER_ROUNDS` times (default 3, the
/// peers' order rotating each round), and writes `failover-compare.md` with every round's
/// figures: single runs of a failover are too noisy to stand alone.
pub fn compare(peers: &[Peer]) -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, out) = crate::rounds_and_out("COMPARE_FAILOVER_ROUNDS");
    let mut table = format!(
        "# Failover side by side\n\n8 callers put to a 3-member cluster (a fresh one per run), \
         leader first in every client's endpoint list; the leader is faulted 1 s into a {} s \
         load. {rounds} rounds, the clients' order rotating; each cell lists the rounds in \
         order. \"first success\" is from the fault to the end of the first request that \
         succeeded after it; \"stalled\" counts requests in flight at or after the fault \
         that took over 1 s (a request still in flight when its driver was killed counts as \
         stalled); a driver still running {} s after its load ended is killed as hung, and \
         \"killed, N in flight\" says how many of its {CALLERS} callers were then inside a \
         request. Every client has the same deadline on every request: 5 s, etcdctl's \
         default; every driver prints each request's line as the request ends.\n\n\
         | fault | client | first success after fault: median, worst | each round | failed after | \
         stalled > 1 s | finished |\n|---|---|---|---|---|---|---|\n",
        LOAD_MS / 1000,
        GRACE.as_secs()
    );
    for fault in [
        Fault::Term,
        Fault::Kill,
        Fault::Stop,
        Fault::Isolate,
        Fault::Blackhole,
    ] {
        let mut outcomes: Vec<Vec<Outcome>> = peers.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..peers.len()).collect();
            order.rotate_left(round % peers.len().max(1));
            for i in order {
                let outcome = run(&peers[i], fault)?;
                eprintln!(
                    "{} / {} / round {}: first success {}, failed {}, stalled {}, {}",
                    fault.name(),
                    peers[i].name,
                    round + 1,
                    ms(outcome.first_us),
                    outcome.failed,
                    outcome.stalled,
                    outcome.ending()
                );
                outcomes[i].push(outcome);
            }
        }
        for (peer, runs) in peers.iter().zip(&outcomes) {
            let mut firsts: Vec<Option<u128>> = runs.iter().map(|o| o.first_us).collect();
            let each = |f: &dyn Fn(&Outcome) -> String| -> String {
                runs.iter().map(f).collect::<Vec<_>>().join(" / ")
            };
            let row = format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                fault.name(),
                peer.name,
                // `None` (never) sorts last, as the slowest.
                {
                    // The worst beside the median, so that one failed round shows here too.
                    firsts.sort_by_key(|f| f.unwrap_or(u128::MAX));
                    format!(
                        "{}, worst {}",
                        ms(firsts[firsts.len() / 2]),
                        ms(firsts[firsts.len() - 1])
                    )
                },
                each(&|o| ms(o.first_us)),
                each(&|o| o.failed.to_string()),
                each(&|o| o.stalled.to_string()),
                each(&|o| o.ending()),
            );
            table.push_str(&row);
        }
    }
    crate::write_table(&out, "failover-compare.md", table, &[])
}

impl Outcome {
    /// How the driver ended, for the table.
    fn ending(&self) -> String {
        match self.killed_in_flight {
            None => "yes".to_owned(),
            Some(n) => format!("killed, {n} in flight"),
        }
    }
}

fn ms(us: Option<u128>) -> String {
    us.map_or("never".to_owned(), |us| format!("{} ms", us / 1000))
}

fn run(peer: &Peer, fault: Fault) -> Result<Outcome, Box<dyn std::error::Error>> {
    // Peer proxies only where the fault needs them, so the other faults run on the plain
    // cluster every other benchmark uses.
    let mut builder = Cluster::builder().members(3);
    if fault == Fault::Isolate {
        builder = builder.peer_proxies();
    }
    let cluster = builder.start()?;
    let leader = cluster.leader()?;
    let proxy = Proxy::start(0, cluster.client_port(leader))?;
    let mut endpoints = vec![if fault == Fault::Blackhole {
        proxy.endpoint()
    } else {
        cluster.endpoint(leader)
    }];
    endpoints.extend((0..3).filter(|&i| i != leader).map(|i| cluster.endpoint(i)));
    let (mut child, lines, reader) = crate::spawn_driver(
        peer,
        &[
            format!("--endpoints={}", endpoints.join(",")),
            "--workload=put".to_owned(),
            "--value-size=64".to_owned(),
            "--trace".to_owned(),
            format!("--callers={CALLERS}"),
            format!("--duration-ms={LOAD_MS}"),
        ],
        Stdio::null(),
    )?;
    let started = lines
        .recv_timeout(Duration::from_secs(60))
        .ok()
        .filter(|l| l.starts_with("START"))
        .ok_or_else(|| format!("{} did not start its load", peer.name))?;
    let _ = started;
    std::thread::sleep(FAULT_AFTER);
    // A graceful stop is in effect from the signal on; the others once they have taken hold.
    let signalled = unix_micros();
    match fault {
        Fault::Term => {
            cluster.terminate(leader)?;
        }
        Fault::Kill => cluster.kill(leader)?,
        Fault::Stop => cluster.pause(leader)?,
        Fault::Isolate => cluster.isolate(leader)?,
        Fault::Blackhole => proxy.blackhole(),
    }
    let fault_at = if fault == Fault::Term {
        signalled
    } else {
        unix_micros()
    };
    let deadline = Instant::now() + Duration::from_millis(LOAD_MS) + GRACE;
    let mut killed = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let a paused member go so its sockets close before the cluster is dropped.
    if fault == Fault::Stop {
        let _ = cluster.resume(leader);
    }
    let _ = reader.join();
    let lines: Vec<String> = lines.try_iter().collect();
    // Each caller prints D as it ends: the others were inside a request when killed.
    let ended = lines.iter().filter(|l| *l == "D").count();
    let killed_in_flight = killed.then(|| CALLERS.saturating_sub(ended));
    let records: Vec<(u128, u128, bool)> = lines
        .iter()
        .filter_map(|l| {
            let mut f = l.strip_prefix("R ")?.split(' ');
            let at = f.next()?.parse().ok()?;
            let took = f.next()?.parse().ok()?;
            let ok = f.next()? == "1";
            Some((at, took, ok))
        })
        .collect();
    let after: Vec<&(u128, u128, bool)> = records.iter().filter(|r| r.0 >= fault_at).collect();
    let first_us = after
        .iter()
        .filter(|r| r.2)
        .map(|r| r.0 + r.1 - fault_at)
        .min();
    let failed = after.iter().filter(|r| !r.2).count();
    let stalled = records
        .iter()
        .filter(|r| r.0 + r.1 >= fault_at && r.1 > 1_000_000)
        .count()
        + killed_in_flight.unwrap_or(0);
    Ok(Outcome {
        first_us,
        failed,
        stalled,
        killed_in_flight,
    })
}
