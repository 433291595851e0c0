//! Lock: workers on two sessions take turns with a distributed mutex, and write only while
//! they hold it (fenced: etcd checks the holder when it applies the write).
//!
//! `cargo run --example lock` (see `examples/common/mod.rs` for the cluster it uses).

mod common;

use std::thread;
use std::time::Duration;

use etcd_blocking::concurrency::{Mutex, Session};
use etcd_blocking::{Client, DeleteOptions, Txn, TxnOp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (endpoints, _cluster) = common::cluster()?;
    let client = Client::connect(&endpoints)?;
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let client = client.clone();
            thread::spawn(move || -> etcd_blocking::Result<u32> {
                // A session: a lease kept alive; the lock goes with it if this process dies.
                let session = Session::new(&client, Duration::from_secs(5))?;
                let mutex = Mutex::new(&session, "example-lock/job")?;
                let mut wrote = 0;
                for round in 0..3 {
                    let guard = mutex.lock(Duration::from_secs(30))?;
                    // Only if this session still holds the lock:
                    let write = Txn::new().when([guard.fence()]).and_then([TxnOp::put(
                        "example-lock/last",
                        format!("worker {worker}, round {round}"),
                    )]);
                    if client.kv().txn(write)?.succeeded() {
                        wrote += 1;
                        println!("worker {worker} holds the lock (round {round})");
                    }
                    guard.unlock()?;
                }
                session.close()?;
                Ok(wrote)
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.join().map_err(|_| "a worker panicked")??;
    }
    println!("{total} fenced writes, one holder at a time");
    client
        .kv()
        .delete_with("example-lock/", DeleteOptions::new().prefix())?;
    client.close()?;
    println!("lock example done");
    Ok(())
}
