//! A service that keeps its configuration from a prefix: a live copy of `config/` in
//! memory (a mirror), read at any time without a call, and each change printed as it
//! comes, the way a user would write it.
//!
//! With `ETCD_ENDPOINTS` unset it starts a throwaway local 3-member cluster and plays an
//! operator changing the configuration; set, it follows `config/` of that cluster for
//! ten seconds.

mod common;

use std::error::Error;
use std::time::{Duration, Instant};

use etcd_blocking::{Client, EventKind, MirrorChange};

fn main() -> Result<(), Box<dyn Error>> {
    let (endpoints, cluster) = common::cluster()?;
    let client = Client::connect(&endpoints)?;
    if cluster.is_some() {
        client.kv().put("config/log_level", "info")?;
        client.kv().put("config/workers", "4")?;
    }
    // The copy: listed once, then followed; reads are local and never half an update.
    let config = client.mirror("config/")?;
    println!(
        "configuration at revision {}: {} keys",
        config.revision(),
        config.len()
    );
    for (_, kv) in config.snapshot().iter() {
        println!("  {} = {}", kv.key_str()?, kv.value_str()?);
    }
    let (_, changes) = config.changes();

    // The operator, in the throwaway cluster: a change, a transaction, a deletion.
    let mut last_write = 0;
    if cluster.is_some() {
        let operator = Client::connect(&endpoints)?;
        operator.kv().put("config/workers", "8")?;
        operator.kv().put("config/feature_x", "on")?;
        last_write = operator
            .kv()
            .delete("config/log_level")?
            .header()
            .revision();
    }

    let until = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while Instant::now() < until {
        match changes.recv_timeout(Duration::from_millis(200))? {
            Some(MirrorChange::Events { revision, events }) => {
                seen = revision;
                for event in events {
                    let key = event.kv().key_str()?;
                    match event.kind() {
                        EventKind::Put => {
                            println!("revision {revision}: {key} = {}", event.kv().value_str()?)
                        }
                        EventKind::Delete => println!("revision {revision}: {key} removed"),
                    }
                }
            }
            Some(MirrorChange::Reset {
                revision,
                put,
                deleted,
            }) => {
                seen = revision;
                println!(
                    "revision {revision}: listed again, {} keys changed, {} removed",
                    put.len(),
                    deleted.len()
                );
            }
            None => {}
        }
        // In the throwaway cluster: done once the operator's last change has come.
        if last_write > 0 && seen >= last_write {
            break;
        }
    }
    let workers = config
        .get("config/workers")
        .map(|kv| kv.value_str().map(str::to_owned))
        .transpose()?;
    println!("workers now: {}", workers.as_deref().unwrap_or("(unset)"));
    drop(config);
    client.close()?;
    println!("config_watch example done");
    Ok(())
}
