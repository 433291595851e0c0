//! A bare grpcio connection to one member, with none of the client's logic: no balancer,
//! no retries, no conversions. Benchmarks compare the client's call path against it.

use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, ChannelBuilder, EnvBuilder, Environment};

use crate::proto::rpc::{PutRequest, RangeRequest};
use crate::proto::rpc_grpc::KvClient;

/// Blocking Put and Range on one grpcio channel, exactly as grpcio's generated client makes
/// them.
pub struct BareKv {
    kv: KvClient,
    timeout: Duration,
    _env: Arc<Environment>,
}

impl std::fmt::Debug for BareKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BareKv").finish_non_exhaustive()
    }
}

impl BareKv {
    /// Opens a channel to `endpoint` (`host:port`) on an environment of one poll thread.
    pub fn connect(endpoint: &str) -> BareKv {
        let env = Arc::new(
            EnvBuilder::new()
                .cq_count(1)
                .name_prefix("etcd-bare")
                .build(),
        );
        let channel = ChannelBuilder::new(env.clone())
            .use_local_subchannel_pool(true)
            .connect(endpoint);
        BareKv {
            kv: KvClient::new(channel),
            timeout: Duration::from_secs(5),
            _env: env,
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
        self.kv
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
        self.kv
            .range_opt(&request, option)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
