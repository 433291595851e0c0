//! A service registry: each instance puts its address under a prefix with a lease it keeps
//! alive; a client keeps a local map of the live instances (a get of the prefix, then a
//! watch from the revision after). An instance that stops (its session closes, or its
//! lease runs out when the process dies) disappears from every map.
//!
//! `cargo run --example registry` (see `examples/common/mod.rs` for the cluster it uses).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_blocking::concurrency::Session;
use etcd_blocking::{Client, EventKind, GetOptions, PutOptions, WatchOptions, Watcher};

const PREFIX: &str = "example-registry/services/api/";

/// An instance of the service: registered while its session lives.
fn register(client: &Client, name: &str, address: &str) -> etcd_blocking::Result<Session> {
    let session = Session::new(client, Duration::from_secs(3))?;
    client.kv().put_with(
        format!("{PREFIX}{name}"),
        address,
        PutOptions::new().lease(session.lease_id()),
    )?;
    Ok(session)
}

/// A local copy of the registry: the live instances by name.
struct Instances {
    map: BTreeMap<String, String>,
    watcher: Watcher,
}

impl Instances {
    fn follow(client: &Client) -> etcd_blocking::Result<Instances> {
        let now = client.kv().get_with(PREFIX, GetOptions::new().prefix())?;
        let mut map = BTreeMap::new();
        for kv in now.kvs() {
            map.insert(kv.key_str()?.to_owned(), kv.value_str()?.to_owned());
        }
        let watcher = client.watch().watch_with(
            PREFIX,
            WatchOptions::new()
                .prefix()
                .start_revision(now.header().revision() + 1),
        )?;
        Ok(Instances { map, watcher })
    }

    /// Applies what changed, waiting up to `wait` for a change.
    fn update(&mut self, wait: Duration) -> etcd_blocking::Result<()> {
        if let Some(response) = self.watcher.recv_timeout(wait)? {
            for event in response.events() {
                let key = event.kv().key_str()?.to_owned();
                match event.kind() {
                    EventKind::Put => {
                        self.map.insert(key, event.kv().value_str()?.to_owned());
                    }
                    EventKind::Delete => {
                        self.map.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits (up to 10 s) until the map holds `count` instances.
    fn wait_for(&mut self, count: usize) -> Result<(), Box<dyn std::error::Error>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.map.len() != count {
            if std::time::Instant::now() > deadline {
                return Err(format!("{count} instances expected: {:?}", self.map).into());
            }
            self.update(Duration::from_millis(200))?;
        }
        println!("instances: {:?}", self.map.values().collect::<Vec<_>>());
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (endpoints, _cluster) = common::cluster()?;
    let client = Client::connect(&endpoints)?;
    let first = register(&client, "a", "10.0.0.1:8080")?;
    let mut instances = Instances::follow(&client)?;
    instances.wait_for(1)?;
    let second = register(&client, "b", "10.0.0.2:8080")?;
    instances.wait_for(2)?;
    // Instance a stops: its lease is revoked, its key goes, every copy hears it.
    first.close()?;
    instances.wait_for(1)?;
    second.close()?;
    instances.wait_for(0)?;
    client.close()?;
    println!("registry example done");
    Ok(())
}
