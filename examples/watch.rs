//! Watch: the current state of a prefix, then every change after it, with nothing lost
//! between the two (the watch starts at the revision after the get's).
//!
//! `cargo run --example watch` (see `examples/common/mod.rs` for the cluster it uses).

mod common;

use std::thread;
use std::time::Duration;

use etcd_blocking::{Client, DeleteOptions, EventKind, GetOptions, WatchOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (endpoints, _cluster) = common::cluster()?;
    let client = Client::connect(&endpoints)?;
    let kv = client.kv();
    kv.put("example-watch/config/a", "1")?;
    kv.put("example-watch/config/b", "2")?;

    // 1. What is there now, at one revision.
    let now = kv.get_with("example-watch/config/", GetOptions::new().prefix())?;
    for item in now.kvs() {
        println!("now     {} = {}", item.key_str()?, item.value_str()?);
    }
    // 2. Every change after that revision, in order.
    let watcher = client.watch().watch_with(
        "example-watch/config/",
        WatchOptions::new()
            .prefix()
            .prev_kv()
            .start_revision(now.header().revision() + 1),
    )?;

    // Someone else changes the configuration meanwhile.
    let writer = {
        let kv = client.kv();
        thread::spawn(move || -> etcd_blocking::Result<()> {
            kv.put("example-watch/config/a", "10")?;
            kv.put("example-watch/config/c", "3")?;
            kv.delete("example-watch/config/b")?;
            Ok(())
        })
    };
    let mut seen = 0;
    while seen < 3 {
        let Some(response) = watcher.recv_timeout(Duration::from_secs(10))? else {
            return Err("no change within 10 s".into());
        };
        for event in response.events() {
            seen += 1;
            let key = event.kv().key_str()?;
            match event.kind() {
                EventKind::Put => println!(
                    "change  {key} = {} (was {:?}) at revision {}",
                    event.kv().value_str()?,
                    event.prev_kv().map(|kv| kv.value_str().unwrap_or("?")),
                    event.revision()
                ),
                EventKind::Delete => {
                    println!("change  {key} deleted at revision {}", event.revision())
                }
            }
        }
    }
    writer.join().map_err(|_| "the writer panicked")??;
    drop(watcher); // cancels the watch
    kv.delete_with("example-watch/", DeleteOptions::new().prefix())?;
    client.close()?;
    println!("watch example done");
    Ok(())
}
