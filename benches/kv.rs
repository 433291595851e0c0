//! Sequential put and get against a throwaway 1-member cluster: prints ops/s and latency
//! percentiles, for this client and for a bare grpcio call with no client logic, in
//! alternating rounds (runs vary: compare only figures of one run). Run with
//! `cargo bench --bench kv`; `ETCD_BENCH_OPS` sets the count per round (default 2000).

use std::io::Read;
use std::time::{Duration, Instant};

use common::percentile;
use etcd_blocking::testing::Cluster;
use grpcio::{
    CallOption, ChannelBuilder, EnvBuilder, GrpcSlice, Marshaller, MessageReader, Method,
    MethodType,
};

mod common;
use etcd_blocking::{Client, GetOptions};

/// Requests and responses as bytes: the bare calls encode their protobuf by hand and do
/// not decode the answer, so nothing but gRPC stands between them and etcd.
const BYTES: Marshaller<Vec<u8>> = Marshaller {
    ser: |bytes, slice| {
        *slice = GrpcSlice::from(bytes.clone());
        Ok(())
    },
    de: |mut reader: MessageReader| {
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
        Ok(bytes)
    },
};

const PUT: Method<Vec<u8>, Vec<u8>> = Method {
    ty: MethodType::Unary,
    name: "/etcdserverpb.KV/Put",
    req_mar: BYTES,
    resp_mar: BYTES,
};

const RANGE: Method<Vec<u8>, Vec<u8>> = Method {
    ty: MethodType::Unary,
    name: "/etcdserverpb.KV/Range",
    req_mar: BYTES,
    resp_mar: BYTES,
};

/// A bare grpcio channel to one member: blocking unary calls, no balancer, no retries, no
/// conversions.
struct Bare {
    client: grpcio::Client,
}

impl Bare {
    fn connect(endpoint: &str) -> Bare {
        let env = std::sync::Arc::new(
            EnvBuilder::new()
                .cq_count(1)
                .name_prefix("etcd-bare")
                .build(),
        );
        let channel = ChannelBuilder::new(env)
            .use_local_subchannel_pool(true)
            .enable_retry(false)
            .connect(endpoint);
        Bare {
            client: grpcio::Client::new(channel),
        }
    }

    fn call(&self, method: &Method<Vec<u8>, Vec<u8>>, request: Vec<u8>) -> Result<(), String> {
        let option = CallOption::default().timeout(Duration::from_secs(5));
        self.client
            .unary_call(method, &request, option)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// A Put: field 1 the key, field 2 the value.
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        let mut request = field(1, &key);
        request.extend(field(2, &value));
        self.call(&PUT, request)
    }

    /// A linearizable Range of one key: field 1 the key.
    fn get(&self, key: Vec<u8>) -> Result<(), String> {
        self.call(&RANGE, field(1, &key))
    }
}

/// A length-delimited protobuf field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ops: usize = std::env::var("ETCD_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let cluster = Cluster::start(1)?;
    let client = Client::connect(cluster.endpoints())?;
    let kv = client.kv();
    let bare = Bare::connect(&cluster.endpoint(0));
    let value = vec![b'v'; 64];
    let text = |e: etcd_blocking::Error| e.to_string();
    println!(
        "{:<24} {:>8} {:>10} {:>10} {:>10}",
        "workload", "ops", "ops/s", "p50", "p99"
    );
    for round in 1..=3 {
        println!("round {round}");
        report("put 64 B", ops, |i| {
            kv.put(format!("bench/{i}"), value.clone())
                .map(drop)
                .map_err(text)
        })?;
        report("put 64 B, bare grpcio", ops, |i| {
            bare.put(format!("bench/{i}").into_bytes(), value.clone())
        })?;
        report("get linearizable", ops, |i| {
            kv.get(format!("bench/{i}")).map(drop).map_err(text)
        })?;
        report("get, bare grpcio", ops, |i| {
            bare.get(format!("bench/{i}").into_bytes())
        })?;
        report("get serializable", ops, |i| {
            kv.get_with(format!("bench/{i}"), GetOptions::new().serializable())
                .map(drop)
                .map_err(text)
        })?;
    }
    client.close()?;
    Ok(())
}

/// Runs `op` `ops` times in a row and prints throughput and latency percentiles.
fn report(
    name: &str,
    ops: usize,
    mut op: impl FnMut(usize) -> Result<(), String>,
) -> Result<(), String> {
    let mut latencies = Vec::with_capacity(ops);
    let started = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        op(i)?;
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    let pct = |p: f64| percentile(&latencies, p);
    println!(
        "{:<24} {:>8} {:>10.0} {:>10} {:>10}",
        name,
        ops,
        ops as f64 / total.as_secs_f64(),
        micros(pct(0.50)),
        micros(pct(0.99))
    );
    Ok(())
}

fn micros(d: Duration) -> String {
    format!("{} us", d.as_micros())
}
