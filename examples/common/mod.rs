//! What every example shares: the cluster it talks to.
//!
//! With `ETCD_ENDPOINTS=127.0.0.1:2379,...` set, the example uses that cluster; unset, it
//! starts a throwaway local 3-member cluster with the crate's launcher (feature `testing`;
//! etcd from `ETCD_BIN` or `PATH`), which is stopped and removed when the example ends.

use etcd_blocking::testing::Cluster;

/// The endpoints to use, and the throwaway cluster behind them, if one was started: keep
/// it alive until the end of `main`.
pub fn cluster() -> Result<(Vec<String>, Option<Cluster>), Box<dyn std::error::Error>> {
    match std::env::var("ETCD_ENDPOINTS") {
        Ok(list) => {
            let endpoints: Vec<String> = list.split(',').map(|e| e.trim().to_owned()).collect();
            println!("using the cluster at {}", endpoints.join(", "));
            Ok((endpoints, None))
        }
        Err(_) => {
            let cluster = Cluster::start(3)?;
            println!(
                "started a throwaway 3-member etcd cluster at {}",
                cluster.endpoints().join(", ")
            );
            Ok((cluster.endpoints(), Some(cluster)))
        }
    }
}
