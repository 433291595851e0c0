//! A bare grpcio connection to one member, with none of the client's logic: no balancer,
//! no retries, no conversions. Benchmarks compare the client's call path against it.

use std::time::Duration;

use grpcio::CallOption;

use crate::proto::rpc::{PutRequest, RangeRequest};
use crate::transport::{environment, ChannelConfig, Connection, Connector};

/// Blocking Put and Range on one grpcio channel, exactly as grpcio's generated client makes
/// them.
pub struct BareKv {
    connection: Connection,
    timeout: Duration,
}

impl std::fmt::Debug for BareKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BareKv").finish_non_exhaustive()
    }
}

impl BareKv {
    /// Opens a channel to `endpoint` (`host:port`) on an environment of one poll thread,
    /// built as the client builds its own.
    pub fn connect(endpoint: &str) -> BareKv {
        let (env, _) = environment(1, "etcd-bare");
        BareKv {
            connection: Connector::new(ChannelConfig::default(), env).open(endpoint),
            timeout: Duration::from_secs(5),
        }
    }

    /// A Put, blocking; the error is gRPC's, as text.
    pub fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        let request = PutRequest {
            key,
            value,
            ..Default::default()
        };
        let option = CallOption::default().timeout(self.timeout);
        self.connection
            .stubs()
            .kv
            .put_opt(&request, option)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// A linearizable Range of one key, blocking; the error is gRPC's, as text.
    pub fn get(&self, key: Vec<u8>) -> Result<(), String> {
        let request = RangeRequest {
            key,
            ..Default::default()
        };
        let option = CallOption::default().timeout(self.timeout);
        self.connection
            .stubs()
            .kv
            .range_opt(&request, option)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
