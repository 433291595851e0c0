//! STM: transfers between accounts from several threads, each a closure of reads and
//! writes that the STM commits atomically and runs again on conflict. The total never
//! changes.
//!
//! `cargo run --example stm` (see `examples/common/mod.rs` for the cluster it uses).

mod common;

use std::thread;

use etcd_blocking::concurrency::{Stm, StmTxn};
use etcd_blocking::{Client, DeleteOptions, Error};

const ACCOUNTS: [&str; 3] = ["example-stm/alice", "example-stm/bob", "example-stm/carol"];

fn balance(tx: &mut StmTxn<'_>, account: &str) -> Result<i64, Error> {
    Ok(tx
        .get(account)?
        .map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (endpoints, _cluster) = common::cluster()?;
    let client = Client::connect(&endpoints)?;
    for account in ACCOUNTS {
        client.kv().put(account, "100")?;
    }
    let stm = Stm::new(&client);
    let movers: Vec<_> = (0..3)
        .map(|t| {
            let stm = stm.clone();
            thread::spawn(move || -> Result<(), Error> {
                for i in 0..10 {
                    let (from, to) = (ACCOUNTS[(t + i) % 3], ACCOUNTS[(t + i + 1) % 3]);
                    stm.run(|tx| {
                        let (a, b) = (balance(tx, from)?, balance(tx, to)?);
                        let amount = 7.min(a);
                        tx.put(from, (a - amount).to_string());
                        tx.put(to, (b + amount).to_string());
                        Ok(())
                    })?;
                }
                Ok(())
            })
        })
        .collect();
    for mover in movers {
        mover.join().map_err(|_| "a mover panicked")??;
    }
    let mut total = 0;
    for account in ACCOUNTS {
        let value = client.kv().get_one(account)?.ok_or("an account is gone")?;
        println!("{} = {}", value.key_str()?, value.value_str()?);
        total += value.value_str()?.parse::<i64>()?;
    }
    assert_eq!(total, 300, "money was made or lost");
    let stats = stm.stats();
    println!(
        "total {total}: {} commits, {} conflicts run again",
        stats.attempts, stats.conflicts
    );
    client
        .kv()
        .delete_with("example-stm/", DeleteOptions::new().prefix())?;
    drop(stm);
    client.close()?;
    println!("stm example done");
    Ok(())
}
