//! The transport: endpoint strings, grpcio channels and the service stubs on them, and the
//! metadata calls carry. Nothing here knows of health, leaders or retries.

mod calls;
mod channel;
mod connection;
mod metadata;
mod target;
mod tls;

pub(crate) use calls::{options as call_options, poll as poll_call};
pub(crate) use channel::{environment, ChannelConfig, Connector};
pub(crate) use connection::{dial, Connection, Stubs};
pub(crate) use target::{parse as parse_endpoint, Scheme};
pub(crate) use tls::Loaded as LoadedTls;
pub use tls::Tls;
