//! Lease: a key that lives as long as its owner, kept alive in the background; revoked at
//! the end, which deletes the key at once.
//!
//! `cargo run --example lease` (see `examples/common/mod.rs` for the cluster it uses).

mod common;

use std::time::Duration;

use etcd_blocking::{Client, PutOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (endpoints, _cluster) = common::cluster()?;
    let client = Client::connect(&endpoints)?;
    let lease = client.lease();

    let granted = lease.grant(Duration::from_secs(2))?;
    println!("granted lease {:x} for {:?}", granted.id(), granted.ttl());
    client.kv().put_with(
        "example-lease/worker-1",
        "alive",
        PutOptions::new().lease(granted.id()),
    )?;
    // The client's keepalive thread renews it every third of its TTL; `kept` must be kept:
    // dropping it stops the renewals.
    let kept = lease.keep_alive(granted.id())?;
    for _ in 0..3 {
        let renewal = kept.renewals().recv_timeout(Duration::from_secs(5))?;
        println!(
            "renewed: {:?} more, status {}",
            renewal.ttl(),
            kept.status()
        );
    }
    // Longer than the TTL, and the key is still there.
    let left = lease.time_to_live_with_keys(granted.id())?;
    println!("time to live {:?}, keys {}", left.ttl(), left.keys().len());
    assert_eq!(client.kv().get("example-lease/worker-1")?.kvs().len(), 1);

    // Revoking ends the keepalive at once and deletes the key.
    let done = kept.done();
    kept.revoke()?;
    assert!(done.recv_timeout(Duration::from_secs(1)).is_err());
    assert_eq!(client.kv().get("example-lease/worker-1")?.kvs().len(), 0);
    println!("revoked: the key is gone");
    client.close()?;
    println!("lease example done");
    Ok(())
}
