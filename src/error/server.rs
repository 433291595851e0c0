//! What a server said, and why an endpoint was not used.

use std::fmt;

use super::code::{ServerCode, StatusCode};

/// An endpoint and why the client did not use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFailure {
    /// The endpoint.
    pub endpoint: String,
    /// Its last failure, as the balancer recorded it.
    pub reason: String,
}

impl fmt::Display for EndpointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.endpoint, self.reason)
    }
}

/// An error answered by an etcd server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub(crate) code: ServerCode,
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) endpoint: String,
}

impl ServerError {
    /// What went wrong, as a typed code.
    pub fn code(&self) -> ServerCode {
        self.code
    }

    /// The gRPC status code the server sent with the error.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The server's message, as sent (for logs; match on [`ServerError::code`]).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The endpoint that answered.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            ServerCode::Unrecognized => write!(
                f,
                "etcd at {} refused the request: {} ({:?})",
                self.endpoint, self.message, self.status
            ),
            code => write!(f, "etcd at {} refused the request: {code}", self.endpoint),
        }
    }
}

impl std::error::Error for ServerError {}
