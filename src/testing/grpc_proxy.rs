//! etcd's own gRPC proxy (`etcd grpc-proxy start`, in every etcd binary) in front of a test
//! cluster: what users put between many clients and a cluster to spread their watches.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use super::error::LaunchError;
use super::support::{free_ports, poll_until, spawn_etcd, tail};

/// A running `etcd grpc-proxy` in front of a [`Cluster`](super::Cluster)'s members, from
/// [`Cluster::grpc_proxy`](super::Cluster::grpc_proxy). It serves KV, Watch, Lease,
/// Cluster, Maintenance, Lock and Election to its clients and assigns watch IDs of its
/// own. Dropping it kills and reaps the process.
pub struct GrpcProxy {
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl std::fmt::Debug for GrpcProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcProxy")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.pid())
            .finish()
    }
}

impl GrpcProxy {
    /// Starts the proxy on a free loopback port, in front of `endpoints`, logging into
    /// `dir`; returns once it is serving (a client's get through it answers), or fails
    /// after `timeout`.
    pub(crate) fn start(
        etcd: &Path,
        endpoints: &[String],
        dir: &Path,
        timeout: Duration,
    ) -> Result<GrpcProxy, LaunchError> {
        let port = free_ports(1)?[0];
        let log = dir.join(format!("grpc-proxy-{port}.log"));
        let args = [
            "grpc-proxy".to_owned(),
            "start".to_owned(),
            format!("--endpoints={}", endpoints.join(",")),
            format!("--listen-addr=127.0.0.1:{port}"),
        ];
        let child = spawn_etcd(etcd, &args, &log)?;
        let proxy = GrpcProxy {
            port,
            log,
            child: Some(child),
        };
        let serving = poll_until(timeout, || {
            let connected = crate::Client::builder()
                .endpoints([proxy.endpoint()])
                .dial_timeout(Duration::from_millis(500))
                .request_timeout(Duration::from_millis(500))
                .connect();
            connected.is_ok_and(|client| {
                let ok = client.kv().get("etcd-blocking/grpc-proxy").is_ok();
                let _ = client.close();
                ok
            })
        });
        if !serving {
            return Err(LaunchError::io(
                format!("starting the grpc-proxy on port {port}"),
                std::io::Error::other(format!(
                    "it did not serve within {timeout:?}; its log:\n{}",
                    tail(&proxy.log, 30)
                )),
            ));
        }
        Ok(proxy)
    }

    /// The proxy's client endpoint, `127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The proxy's process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A client of the proxy alone.
    pub fn client(&self) -> crate::Result<crate::Client> {
        crate::Client::connect([self.endpoint()])
    }

    /// The end of the proxy's log.
    pub fn logs(&self) -> String {
        format!(
            "--- grpc-proxy (client {}) log {:?}:\n{}",
            self.port,
            self.log,
            tail(&self.log, 30)
        )
    }
}

impl Drop for GrpcProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
