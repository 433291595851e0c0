//! A launcher of real etcd clusters on loopback, for tests, benchmarks and examples (cargo
//! feature `testing`).
//!
//! [`Cluster::start`] runs 1 to 7 `etcd` processes (from `ETCD_BIN`, else `PATH`; the
//! project's scripts set `ETCD_BIN` to the version `ETCD_VERSION` names) on free
//! loopback ports in a temporary directory, one member after another, with flags that make a
//! cluster healthy in well under a second; waits for a leader; and hands out the endpoints.
//! Members can be killed, stopped gracefully (SIGTERM), paused, resumed and restarted with
//! their data. Dropping the cluster kills and reaps every process and removes the data.
//!
//! [`ClusterBuilder::tls`], [`ClusterBuilder::mutual_tls`] and [`ClusterBuilder::peer_tls`]
//! start members that serve TLS on certificates of an [`Authority`] made for the run;
//! [`Cluster::client`] trusts it (and shows a `root` client certificate for mutual TLS),
//! and [`Cluster::authority`] issues more, expired ones included, for tests of bad
//! credentials.
//!
//! Membership changes for real: [`Cluster::add_member`] and [`Cluster::add_learner`] add a
//! member to the running cluster (MemberAdd, then a process that joins it), and
//! [`Cluster::remove_member`] removes one. [`ClusterBuilder::restore_from`] starts every
//! member from a snapshot file, with the restore tool beside the etcd binary.
//!
//! At most `ETCD_BLOCKING_MAX_CLUSTERS` clusters (default 2) run at once on a machine, across
//! processes: a start beyond that waits for a slot, so a parallel test run on two cores does
//! not drown in elections. A cluster started with [`ClusterBuilder::alone`] takes every
//! slot, so that nothing launched runs beside it.
//!
//! ```no_run
//! use etcd_blocking::testing::Cluster;
//!
//! let cluster = Cluster::start(3)?;
//! let client = etcd_blocking::Client::connect(cluster.endpoints())?;
//! client.kv().put("k", "v")?;
//! let leader = cluster.leader()?;
//! cluster.kill(leader)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod certs;
mod cluster;
mod error;
mod grpc_proxy;
mod member;
mod probe;
mod proxy;
mod restore;
mod support;
mod version;

pub use certs::{Authority, Identity, Validity};
pub use cluster::{Cluster, ClusterBuilder, ClusterTls, COALESCE_WRITES};
pub use error::LaunchError;
pub use grpc_proxy::GrpcProxy;
pub use proxy::{Proxy, ProxyMode};
pub use version::ServerVersion;

use std::path::PathBuf;

/// Where the etcd binary is: `ETCD_BIN`, else the first `etcd` on `PATH`.
pub fn etcd_binary() -> Result<PathBuf, LaunchError> {
    if let Some(bin) = std::env::var_os("ETCD_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(LaunchError::EtcdMissing)
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or(LaunchError::EtcdMissing)
}
