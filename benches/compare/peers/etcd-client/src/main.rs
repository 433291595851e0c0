//! The `etcd-client` (tokio) driver of etcd-blocking's side-by-side benchmark
//! (benches/compare.rs): runs one workload and prints one JSON line; protocol in
//! benches/peers/README.md. Callers are tokio tasks on the default multi-thread runtime,
//! sharing one client, as that client's users write it.

use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

const KEYS: usize = 1000;

fn flag(args: &[String], name: &str, default: &str) -> String {
    let prefix = format!("--{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| default.to_owned())
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn status(name: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let endpoints: Vec<String> = flag(&args, "endpoints", "127.0.0.1:2379")
        .split(',')
        .map(str::to_owned)
        .collect();
    let workload = flag(&args, "workload", "put");
    let callers: usize = flag(&args, "callers", "1").parse()?;
    let value_size: usize = flag(&args, "value-size", "64").parse()?;
    let ops: usize = flag(&args, "ops", "2000").parse()?;
    let duration_ms: u64 = flag(&args, "duration-ms", "0").parse()?;
    let trace = args.iter().any(|a| a == "--trace");

    let client = Client::connect(&endpoints, None).await?;
    let value = vec![b'v'; value_size];
    let mut kv = client.kv_client();
    for i in 0..KEYS {
        kv.put(format!("bench/k/{i}"), value.clone(), None).await?;
    }

    let sampler_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = sampler_done.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(status("Threads").saturating_sub(1));
                std::thread::sleep(Duration::from_millis(50));
            }
            most
        })
    };
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    if trace {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        println!("START {now}");
    }
    let mut tasks = Vec::new();
    for c in 0..callers {
        let mut kv = client.kv_client();
        let value = value.clone();
        let workload = workload.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut records = Vec::new();
            let mut errors = 0usize;
            let mut n = c;
            loop {
                let more = if duration_ms > 0 {
                    started.elapsed() < Duration::from_millis(duration_ms)
                } else {
                    n < ops
                };
                if !more {
                    break;
                }
                let key = format!("bench/k/{}", n % KEYS);
                n += callers;
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros());
                let t = Instant::now();
                let ok = match workload.as_str() {
                    "put" => kv.put(key, value.clone(), None).await.is_ok(),
                    "get" => kv.get(key, None).await.is_ok(),
                    "get-serializable" => kv
                        .get(key, Some(GetOptions::new().with_serializable()))
                        .await
                        .is_ok(),
                    _ => kv
                        .txn(
                            Txn::new()
                                .when([Compare::version(key.clone(), CompareOp::Greater, -1)])
                                .and_then([TxnOp::put(key, value.clone(), None)]),
                        )
                        .await
                        .is_ok(),
                };
                let took = t.elapsed();
                if trace {
                    records.push((at, took.as_micros(), ok));
                }
                if ok {
                    latencies.push(took);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors, records)
        }));
    }
    let mut all = Vec::with_capacity(ops);
    let mut errors = 0;
    let mut records = Vec::new();
    for t in tasks {
        let (l, e, r) = t.await?;
        all.extend(l);
        errors += e;
        records.extend(r);
    }
    for (at, took, ok) in records {
        println!("R {at} {took} {}", u8::from(ok));
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    sampler_done.store(true, std::sync::atomic::Ordering::Relaxed);
    let threads = sampler.join().unwrap_or(0);
    all.sort();
    let us = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{{\"client\":\"etcd-client\",\"workload\":\"{workload}\",\"callers\":{callers},\
         \"value_size\":{value_size},\"ops\":{},\"errors\":{errors},\"seconds\":{},\
         \"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"cpu_seconds\":{cpu},\
         \"peak_rss_kib\":{},\"threads\":{threads}}}",
        all.len(),
        elapsed.as_secs_f64(),
        us(0.50),
        us(0.99),
        us(0.999),
        status("VmHWM")
    );
    Ok(())
}
