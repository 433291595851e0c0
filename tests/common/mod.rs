//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own part

use std::time::Duration;

use etcd_blocking::testing::{Cluster, ServerVersion};
use etcd_blocking::{Client, GetResponse, Health};

/// A cluster of `members` members, or a panic that carries the launcher's report.
pub fn cluster(members: usize) -> Cluster {
    Cluster::start(members).unwrap_or_else(|e| panic!("starting a {members}-member cluster: {e}"))
}

/// A cluster of `members` members behind peer proxies, so that a member can be cut off
/// from its peers ([`Cluster::isolate`]).
pub fn cluster_with_peer_proxies(members: usize) -> Cluster {
    Cluster::builder()
        .members(members)
        .peer_proxies()
        .start()
        .unwrap_or_else(|e| panic!("starting a {members}-member cluster with peer proxies: {e}"))
}

/// A client of every member of the cluster.
pub fn client(cluster: &Cluster) -> Client {
    cluster
        .client()
        .unwrap_or_else(|e| panic!("connecting to {:?}: {e}", cluster.endpoints()))
}

/// The keys of a get, as text.
pub fn keys(response: &GetResponse) -> Vec<String> {
    response
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

/// The values of a get, as text.
pub fn values(response: &GetResponse) -> Vec<String> {
    response
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .collect()
}

/// Waits until the client sees every endpoint healthy.
pub fn all_healthy(cluster: &Cluster, client: &Client) {
    cluster
        .wait_until(
            Duration::from_secs(10),
            "every endpoint to be healthy",
            || {
                client
                    .endpoint_health()
                    .iter()
                    .all(|h| h.health() == Health::Healthy)
            },
        )
        .expect("healthy");
}

/// Whether the server revokes leases itself when a leader that was paused or cut off comes
/// back: before the fix of etcd #15247 (3.4.31, 3.5.11), that leader's lessor, still
/// primary in its own eyes, proposes to revoke every lease that was not renewed at it
/// while it was away, and the proposal it forwards once it has stepped down is applied,
/// however well the new leader kept the lease. No client can prevent that.
pub fn old_leader_revokes(version: ServerVersion) -> bool {
    version < ServerVersion::new(3, 4, 31)
        || (ServerVersion::new(3, 5, 0)..ServerVersion::new(3, 5, 11)).contains(&version)
}
