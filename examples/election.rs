//! Election: one scheduler leads and runs a job loop; its writes are fenced to its
//! leadership and settled if their outcome is unknown, so the loop goes on through a kill
//! of etcd's leader (done here when the example runs its own throwaway cluster) without
//! losing or doubling a run.
//!
//! `cargo run --example election` (see `examples/common/mod.rs` for the cluster it uses).

mod common;

use std::time::Duration;

use etcd_blocking::concurrency::{self, Election, Leadership, Session};
use etcd_blocking::{Client, Compare, DeleteOptions, Kv, Txn, TxnOp};

const RUNS: u64 = 40;

/// One run of the job: the counter goes up by one, only while `leading` leads.
fn run_once(kv: &Kv, leading: &Leadership) -> Result<u64, Box<dyn std::error::Error>> {
    loop {
        let current = kv.get_one("example-election/runs")?;
        let (n, version) = current.as_ref().map_or(Ok((0, 0)), |kv| {
            kv.value_str()
                .map(|v| (v.parse::<u64>().unwrap_or(0), kv.version()))
        })?;
        let step = Txn::new()
            .when([
                leading.fence(),
                Compare::version("example-election/runs").eq(version),
            ])
            .and_then([TxnOp::put("example-election/runs", (n + 1).to_string())]);
        // A write whose answer is lost in the failover is settled, not guessed.
        if concurrency::txn_settled(kv, step)?.succeeded() {
            return Ok(n + 1);
        }
        if leading.proclaim("still leading").is_err() {
            return Err("lost the leadership".into());
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (endpoints, cluster) = common::cluster()?;
    let client = Client::connect(&endpoints)?;
    let kv = client.kv();
    kv.delete("example-election/runs")?;
    let session = Session::new(&client, Duration::from_secs(5))?;
    let election = Election::new(&session, "example-election/scheduler")?;
    let leading = election.campaign("scheduler-1", Duration::from_secs(30))?;
    println!("leading as {}", String::from_utf8_lossy(leading.key()));
    for run in 1..=RUNS {
        let count = run_once(&kv, &leading)?;
        assert_eq!(count, run, "every run counted once");
        if run == RUNS / 2 {
            if let Some(cluster) = &cluster {
                let leader = cluster.leader()?;
                cluster.kill(leader)?;
                println!("run {run}: killed etcd's leader (member {leader}); the job goes on");
            }
        }
    }
    println!(
        "{RUNS} runs, each counted once; session alive: {}",
        session.is_alive()
    );
    leading.resign()?;
    session.close()?;
    kv.delete_with("example-election/", DeleteOptions::new().prefix())?;
    client.close()?;
    println!("election example done");
    Ok(())
}
