//! The edge where a failed gRPC call becomes a typed [`Error`]: the only place that reads a
//! status message.

use std::time::Duration;

use super::code::{ServerCode, StatusCode, ETCD_PREFIX};
use super::server::ServerError;
use super::Error;

/// How gRPC's C core fails a call that found no connection to send it on (the channel could
/// not connect): such a call never left the client.
const NOT_CONNECTED: &str = "failed to connect to all addresses";

/// What a failed connection attempt was, from gRPC's account of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    /// The TLS handshake failed and said why: a certificate not trusted, expired or
    /// naming another host. Waiting does not mend it.
    Handshake,
    /// The member accepted the connection and closed it before HTTP/2 began: TLS spoken to
    /// a plaintext member or the reverse, or, after a TLS handshake, a client certificate
    /// refused. Waiting does not mend it either, but a member that is going down can do
    /// the same once, so only a closing that persists counts.
    ClosedEarly,
    /// Anything else (refused, no such host, timed out): it may mend.
    Other,
}

/// Classifies gRPC's account of a failed connection.
pub(crate) fn connect_failure(reason: &str) -> ConnectFailure {
    const HANDSHAKE: [&str; 3] = ["handshake failed", "peer name", "ssl_error"];
    const CLOSED: [&str; 2] = ["socket closed", "endpoint read failed"];
    let lower = reason.to_ascii_lowercase();
    if HANDSHAKE.iter().any(|sign| lower.contains(sign)) {
        ConnectFailure::Handshake
    } else if CLOSED.iter().any(|sign| lower.contains(sign)) {
        ConnectFailure::ClosedEarly
    } else {
        ConnectFailure::Other
    }
}

/// What a connection closed early most likely means, for a client with TLS (`tls`) or
/// without, after gRPC's own words.
pub(crate) fn closed_early_hint(reason: &str, tls: bool) -> String {
    let hint = match (
        tls,
        reason.to_ascii_lowercase().contains("endpoint read failed"),
    ) {
        (true, true) => {
            "the member closed the connection after the TLS handshake: it asks for a client \
             certificate, and was shown none, one it does not trust, or an expired one"
        }
        (true, false) => {
            "the member closed the connection in the TLS handshake: does it serve plaintext \
             (http://)?"
        }
        (false, _) => {
            "the member closed the connection before HTTP/2 began: does it serve TLS \
             (https://)?"
        }
    };
    format!("{reason}: {hint}")
}

impl Error {
    /// Turns a failed gRPC call to `endpoint`, whose deadline was `timeout`, into a typed
    /// error.
    pub(crate) fn from_grpc(error: grpcio::Error, endpoint: &str, timeout: Duration) -> Error {
        let status = match &error {
            grpcio::Error::RpcFailure(status) => status,
            _ => {
                return Error::Transport {
                    endpoint: endpoint.to_owned(),
                    source: Box::new(error),
                }
            }
        };
        let message = status.message();
        let server = |code| {
            Error::Server(Box::new(ServerError {
                code,
                status: StatusCode::from_grpc(status.code()),
                message: message.to_owned(),
                endpoint: endpoint.to_owned(),
            }))
        };
        if let Some(code) = ServerCode::from_message(message) {
            return server(code);
        }
        let code = status.code();
        if code == grpcio::RpcStatusCode::DEADLINE_EXCEEDED {
            return Error::DeadlineExceeded {
                endpoint: endpoint.to_owned(),
                timeout,
            };
        }
        if code == grpcio::RpcStatusCode::UNIMPLEMENTED {
            return Error::NotSupported {
                endpoint: endpoint.to_owned(),
                detail: message.to_owned(),
            };
        }
        if code == grpcio::RpcStatusCode::RESOURCE_EXHAUSTED && message.contains("larger than max")
        {
            return Error::MessageTooLarge {
                endpoint: endpoint.to_owned(),
                detail: message.to_owned(),
            };
        }
        if code == grpcio::RpcStatusCode::UNAVAILABLE && message.starts_with(NOT_CONNECTED) {
            return Error::Unreachable {
                endpoint: endpoint.to_owned(),
                source: Box::new(error),
            };
        }
        if message.starts_with(ETCD_PREFIX) {
            // A server error this client does not know yet: keep it typed as a server error.
            return server(ServerCode::Unrecognized);
        }
        Error::Transport {
            endpoint: endpoint.to_owned(),
            source: Box::new(error),
        }
    }
}
