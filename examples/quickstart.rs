//! The quick start: put, get, a prefix get and a transaction.
//!
//! With `ETCD_ENDPOINTS` unset (`scripts/demo`), it starts a throwaway local 3-member
//! cluster with the crate's launcher and removes it at the end; with
//! `ETCD_ENDPOINTS=127.0.0.1:2379,...` it uses that cluster instead, under the key prefix
//! `quickstart/`, which it deletes when done.

use std::error::Error;

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, Compare, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse};

fn main() -> Result<(), Box<dyn Error>> {
    // Keep the cluster alive until the end of main: dropping it stops and removes it.
    let (endpoints, _cluster) = match std::env::var("ETCD_ENDPOINTS") {
        Ok(list) => {
            let endpoints: Vec<String> = list.split(',').map(|e| e.trim().to_owned()).collect();
            println!("using the cluster at {}", endpoints.join(", "));
            (endpoints, None)
        }
        Err(_) => {
            let cluster = Cluster::start(3)?;
            println!(
                "started a throwaway 3-member etcd cluster at {} (data in {})",
                cluster.endpoints().join(", "),
                cluster.dir().display()
            );
            (cluster.endpoints(), Some(cluster))
        }
    };

    let client = Client::connect(&endpoints)?;
    let kv = client.kv();

    let put = kv.put("quickstart/greeting", "hello, etcd")?;
    println!(
        "put    quickstart/greeting = \"hello, etcd\" at revision {}",
        put.header().revision()
    );

    let got = kv.get("quickstart/greeting")?;
    if let Some(item) = got.first() {
        println!(
            "get    quickstart/greeting -> {:?} (version {}, created at revision {})",
            item.value_str()?,
            item.version(),
            item.create_revision()
        );
    }

    for (name, color) in [
        ("apple", "red"),
        ("banana", "yellow"),
        ("cherry", "dark red"),
    ] {
        kv.put(format!("quickstart/fruit/{name}"), color)?;
    }
    let fruit = kv.get_with("quickstart/fruit/", GetOptions::new().prefix())?;
    println!("prefix quickstart/fruit/ -> {} keys:", fruit.count());
    for item in fruit.kvs() {
        println!("         {} = {}", item.key_str()?, item.value_str()?);
    }

    // Compare-and-swap: take the lock only if nobody holds it.
    let take_lock = || {
        Txn::new()
            .when([Compare::version("quickstart/lock").eq(0)])
            .and_then([TxnOp::put("quickstart/lock", "demo")])
            .or_else([TxnOp::get("quickstart/lock")])
    };
    let first = kv.txn(take_lock())?;
    println!(
        "txn    lock is free?  {} -> took it at revision {}",
        first.succeeded(),
        first.header().revision()
    );
    let second = kv.txn(take_lock())?;
    let holder = match second.responses().first() {
        Some(TxnOpResponse::Get(get)) => get.first().map(|kv| kv.value_str().unwrap_or("?")),
        _ => None,
    };
    println!(
        "txn    lock is free?  {} -> held by {:?}",
        second.succeeded(),
        holder.unwrap_or("nobody")
    );

    let deleted = kv.delete_with("quickstart/", DeleteOptions::new().prefix())?;
    println!("delete quickstart/ -> {} keys removed", deleted.deleted());

    client.close()?;
    if _cluster.is_some() {
        println!("stopping the throwaway cluster");
    }
    Ok(())
}
