//! How the launcher asks a member whether it is up: an HTTP GET on its peer port while it
//! boots, and etcd's Status RPC on its client port for who leads.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::error::LaunchError;
use crate::proto::rpc::StatusRequest;
use crate::transport::{environment, ChannelConfig, Connection, Connector};
use grpcio::CallOption;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberStatus {
    pub(crate) member_id: u64,
    pub(crate) leader: u64,
    pub(crate) version: String,
}

/// Status RPCs to every member, over connections of the launcher's own.
pub(crate) struct Prober {
    connector: Connector,
    connections: parking_lot::Mutex<Vec<Arc<Connection>>>,
}

impl Prober {
    /// Connections to every client port, with `tls` when clients connect with TLS.
    pub(crate) fn new(
        client_ports: &[u16],
        tls: Option<crate::Tls>,
    ) -> Result<Prober, LaunchError> {
        let (env, _) = environment(1, "etcd-test-probe");
        let config = ChannelConfig {
            reconnect: (Duration::from_millis(20), Duration::from_millis(200)),
            ..ChannelConfig::default()
        };
        let mut connector = Connector::new(config, env);
        if let Some(tls) = tls {
            let loaded = tls
                .load()
                .map_err(|e| LaunchError::Certificates(e.to_string()))?;
            connector = connector.with_tls(loaded);
        }
        let connections = client_ports
            .iter()
            .map(|port| Arc::new(connector.open(&format!("127.0.0.1:{port}"))))
            .collect();
        Ok(Prober {
            connector,
            connections: parking_lot::Mutex::new(connections),
        })
    }

    /// A connection to one more member's client port (it gets the next index).
    pub(crate) fn add(&self, client_port: u16) {
        let connection = self.connector.open(&format!("127.0.0.1:{client_port}"));
        self.connections.lock().push(Arc::new(connection));
    }

    /// The member's status, or `None` if it does not answer within `timeout`.
    pub(crate) fn status(&self, index: usize, timeout: Duration) -> Option<MemberStatus> {
        let connection = self.connections.lock().get(index)?.clone();
        let stubs = connection.stubs();
        let option = CallOption::default().timeout(timeout).wait_for_ready(true);
        let response = stubs
            .maintenance
            .status_opt(&StatusRequest::new(), option)
            .ok()?;
        Some(MemberStatus {
            member_id: response.header.as_ref().map_or(0, |h| h.member_id),
            leader: response.leader,
            version: response.version,
        })
    }
}
