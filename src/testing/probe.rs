//! How the launcher asks a member whether it is up: an HTTP GET on its peer port while it
//! boots, and etcd's Status RPC on its client port for who leads.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, ChannelBuilder, EnvBuilder, Environment};

use crate::proto::rpc::StatusRequest;
use crate::proto::rpc_grpc::MaintenanceClient;

/// True if `GET path` on the loopback port answers 200.
pub(crate) fn http_ok(port: u16, path: &str, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// True if something accepts TCP connections on the loopback port.
pub(crate) fn accepts(port: u16, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout).is_ok()
}

/// What a member says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemberStatus {
    pub(crate) member_id: u64,
    pub(crate) leader: u64,
}

/// Status RPCs to every member, over channels of the launcher's own.
pub(crate) struct Prober {
    clients: Vec<MaintenanceClient>,
    _env: Arc<Environment>,
}

impl Prober {
    pub(crate) fn new(client_ports: &[u16]) -> Prober {
        let env = Arc::new(
            EnvBuilder::new()
                .cq_count(1)
                .name_prefix("etcd-test-probe")
                .build(),
        );
        let clients = client_ports
            .iter()
            .map(|port| {
                let channel = ChannelBuilder::new(env.clone())
                    .use_local_subchannel_pool(true)
                    .initial_reconnect_backoff(Duration::from_millis(20))
                    .max_reconnect_backoff(Duration::from_millis(200))
                    .connect(&format!("127.0.0.1:{port}"));
                MaintenanceClient::new(channel)
            })
            .collect();
        Prober { clients, _env: env }
    }

    /// The member's status, or `None` if it does not answer within `timeout`.
    pub(crate) fn status(&self, index: usize, timeout: Duration) -> Option<MemberStatus> {
        let client = self.clients.get(index)?;
        let option = CallOption::default().timeout(timeout).wait_for_ready(true);
        let response = client.status_opt(&StatusRequest::new(), option).ok()?;
        Some(MemberStatus {
            member_id: response.header.as_ref().map_or(0, |h| h.member_id),
            leader: response.leader,
        })
    }
}
