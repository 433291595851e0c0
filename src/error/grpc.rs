//! The edge where a failed gRPC call becomes a typed [`Error`]: the only place that reads a
//! status message.

use std::time::Duration;

use super::code::{ServerCode, StatusCode, ETCD_PREFIX};
use super::server::ServerError;
use super::Error;

/// How gRPC's C core fails a call that found no connection to send it on (the channel could
/// not connect): such a call never left the client.
const NOT_CONNECTED: &str = "failed to connect to all addresses";

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
