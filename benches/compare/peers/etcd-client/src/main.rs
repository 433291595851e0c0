//! The `etcd-client` (tokio) driver of etcd-blocking's side-by-side benchmark
//! (benches/compare.rs): runs one workload and prints one JSON line; protocol in
//! benches/peers/README.md. Callers are tokio tasks on the default multi-thread runtime,
//! sharing one client, as that client's users write it.

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LockOptions, ResignOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::Notify;

const KEYS: usize = 1000;

fn flag(args: &[String], name: &str, default: &str) -> String {
    let prefix = format!("--{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| default.to_owned())
}

/// Every request's deadline, the same for every client of the comparison (etcdctl's).
const DEADLINE: Duration = Duration::from_secs(5);

/// This process's CPU clock (user + system, every thread), in seconds.
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Prints one trace line at once (stdout's lock keeps lines whole), so that a driver
/// killed while hung has told everything up to then.
fn trace_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
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

    // TLS as etcd-client's users set it (its `tls` feature: tonic on rustls), with a
    // client certificate when one is given.
    let cacert = flag(&args, "cacert", "");
    let mut options = if cacert.is_empty() {
        None
    } else {
        let mut tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&cacert)?));
        let (cert, key) = (flag(&args, "cert", ""), flag(&args, "key", ""));
        if !cert.is_empty() && !key.is_empty() {
            tls = tls.identity(etcd_client::Identity::from_pem(
                std::fs::read(&cert)?,
                std::fs::read(&key)?,
            ));
        }
        Some(etcd_client::ConnectOptions::new().with_tls(tls))
    };
    let user = flag(&args, "user", "");
    if !user.is_empty() {
        options = Some(
            options
                .unwrap_or_default()
                .with_user(user, flag(&args, "password", ""))
                // Off by default; on, a call refused for an expired token authenticates
                // again and is sent once more: the best a user can set.
                .with_auto_token_refresh(true),
        );
    }
    let client = Client::connect(&endpoints, options).await?;
    match workload.as_str() {
        "watch" => {
            let watchers: usize = flag(&args, "watchers", "1").parse()?;
            let puts: usize = flag(&args, "puts", "300").parse()?;
            let distinct = args.iter().any(|a| a == "--distinct");
            return watch_bench(client, watchers, puts, distinct).await;
        }
        "watch-fault" => return watch_fault(client, Duration::from_millis(duration_ms)).await,
        "keepalive" => {
            let leases: usize = flag(&args, "leases", "10000").parse()?;
            let ttl: i64 = flag(&args, "ttl-s", "10").parse()?;
            return keep_alive_bench(client, leases, ttl).await;
        }
        "lock" => return lock_bench(client, callers, ops).await,
        "election" => return election_bench(client, ops).await,
        "snapshot" => return snapshot_bench(client, &flag(&args, "out", "snapshot.db")).await,
        "mirror" => {
            let prefix = flag(&args, "prefix", "mirror/");
            return mirror_bench(client, &prefix).await;
        }
        "expiry" => {
            let idle = Duration::from_millis(flag(&args, "idle-ms", "0").parse()?);
            let ttl: i64 = flag(&args, "ttl-s", "3").parse()?;
            return expiry_bench(client, Duration::from_millis(duration_ms), idle, ttl).await;
        }
        _ => {}
    }
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
                // etcd-client has no per-request deadline of its own: its users bound the
                // future with tokio's timeout, which cancels the request when it fires.
                let ok = match workload.as_str() {
                    "put" => within(kv.put(key, value.clone(), None)).await,
                    "get" => within(kv.get(key, None)).await,
                    "get-serializable" => {
                        within(kv.get(key, Some(GetOptions::new().with_serializable()))).await
                    }
                    _ => {
                        within(
                            kv.txn(
                                Txn::new()
                                    .when([Compare::version(key.clone(), CompareOp::Greater, -1)])
                                    .and_then([TxnOp::put(key, value.clone(), None)]),
                            ),
                        )
                        .await
                    }
                };
                let took = t.elapsed();
                if trace {
                    trace_line(format_args!("R {at} {} {}", took.as_micros(), u8::from(ok)));
                }
                if ok {
                    latencies.push(took);
                } else {
                    errors += 1;
                }
            }
            if trace {
                trace_line(format_args!("D"));
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::with_capacity(ops);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
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

fn unix_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// Creates `watchers` watches on the prefix wbench/, all at once from tasks of their own
/// (each `watch` opens a gRPC stream of its own and waits for its created response), then
/// times `puts` sequential puts, each until every watch has received its event.
/// Whether `request` succeeded within the deadline.
async fn within<T>(
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> bool {
    matches!(tokio::time::timeout(DEADLINE, request).await, Ok(Ok(_)))
}

async fn watch_bench(
    client: Client,
    watchers: usize,
    puts: usize,
    distinct: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..watchers {
        let mut watch = client.watch_client();
        // With `distinct`, watch i covers [wbench/, wbench/~i): a range of its own that
        // holds every key put.
        let options = if distinct {
            WatchOptions::new().with_range(format!("wbench/~{i}"))
        } else {
            WatchOptions::new().with_prefix()
        };
        creating.spawn(async move {
            let mut stream = watch.watch("wbench/", Some(options)).await?;
            match stream.message().await? {
                Some(r) if r.created() => Ok(stream),
                other => Err(etcd_client::Error::WatchError(format!(
                    "not created: {other:?}"
                ))),
            }
        });
    }
    let mut streams = Vec::with_capacity(watchers);
    while let Some(created) = creating.join_next().await {
        streams.push(created??);
    }
    let create_ms = started.elapsed().as_secs_f64() * 1e3;
    let (rss, threads) = (status("VmRSS"), status("Threads"));
    let pending = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(Notify::new());
    for mut stream in streams {
        let (pending, arrived) = (pending.clone(), arrived.clone());
        tokio::spawn(async move {
            while let Ok(Some(response)) = stream.message().await {
                for _ in response.events() {
                    if pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                        arrived.notify_one();
                    }
                }
            }
        });
    }
    let mut kv = client.kv_client();
    let mut latencies = Vec::with_capacity(puts);
    let cpu_before = cpu_seconds();
    let phase = Instant::now();
    for i in 0..puts {
        pending.store(watchers, Ordering::Release);
        let t = Instant::now();
        kv.put(format!("wbench/{i}"), "v", None).await?;
        tokio::time::timeout(Duration::from_secs(10), arrived.notified()).await?;
        latencies.push(t.elapsed());
    }
    let elapsed = phase.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort();
    let us = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{{\"client\":\"etcd-client\",\"workload\":\"watch\",\"watchers\":{watchers},\
         \"puts\":{puts},\"create_ms\":{create_ms},\"p50_us\":{},\"p99_us\":{},\
         \"p999_us\":{},\"events_per_sec\":{},\"cpu_seconds\":{cpu},\"rss_kib\":{rss},\
         \"threads\":{threads}}}",
        us(0.50),
        us(0.99),
        us(0.999),
        (watchers * puts) as f64 / elapsed.as_secs_f64(),
    );
    Ok(())
}

/// Watches the prefix wfault/, prints READY once created, then a line
/// `E <unix us> <revision of the response's last event>` per response with events, for
/// `duration`. etcd-client does not resume a broken watch: this does, as its users must,
/// from the revision after the last one received.
async fn watch_fault(client: Client, duration: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let until = Instant::now() + duration;
    let mut watch = client.watch_client();
    let mut next = 0i64;
    let mut ready = false;
    while Instant::now() < until {
        let options = WatchOptions::new().with_prefix().with_start_revision(next);
        let left = until.saturating_duration_since(Instant::now());
        let mut stream =
            match tokio::time::timeout(left, watch.watch("wfault/", Some(options))).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(_)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => break,
            };
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.message()).await {
                Ok(Ok(Some(response))) => {
                    if response.created() && !ready {
                        ready = true;
                        println!("READY");
                    }
                    if let Some(last) = response.events().last().and_then(|e| e.kv()) {
                        next = last.mod_revision() + 1;
                        println!("E {} {}", unix_micros(), last.mod_revision());
                    }
                }
                Ok(_) => break,
                Err(_) => return Ok(()),
            }
        }
    }
    Ok(())
}

/// Grants `leases` leases of `ttl` seconds from 8 tasks and keeps each alive the way
/// etcd-client's users must: `keep_alive` opens a stream per lease and renews once per
/// call, so a task per lease renews every third of the TTL, starting as soon as the lease
/// is granted. Reports the CPU over three TTLs.
async fn keep_alive_bench(
    client: Client,
    leases: usize,
    ttl: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let period = Duration::from_millis(u64::try_from(ttl).unwrap_or(1) * 1000 / 3);
    let mut granting = tokio::task::JoinSet::new();
    for w in 0..8 {
        let mut lease = client.lease_client();
        granting.spawn(async move {
            for _ in (w..leases).step_by(8) {
                let id = lease.grant(ttl, None).await?.id();
                let (mut keeper, mut stream) = lease.keep_alive(id).await?;
                // keep_alive took the first renewal's answer: renew, then read each answer.
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(period).await;
                        if let Err(e) = keeper.keep_alive().await {
                            eprintln!("lease {id:x}: {e}");
                            return;
                        }
                        if let Err(e) = stream.message().await {
                            eprintln!("lease {id:x}: {e}");
                            return;
                        }
                    }
                });
            }
            Ok::<_, etcd_client::Error>(())
        });
    }
    while let Some(granted) = granting.join_next().await {
        granted??;
    }
    let setup_ms = started.elapsed().as_secs_f64() * 1e3;
    let cpu_before = cpu_seconds();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(3 * u64::try_from(ttl).unwrap_or(1))).await;
    println!(
        "{{\"client\":\"etcd-client\",\"workload\":\"keepalive\",\"leases\":{leases},\
         \"setup_ms\":{setup_ms},\"cpu_seconds\":{},\"seconds\":{},\"rss_kib\":{},\
         \"threads\":{}}}",
        cpu_seconds() - cpu_before,
        window.elapsed().as_secs_f64(),
        status("VmRSS"),
        status("Threads"),
    );
    Ok(())
}

/// `callers` tasks, each with a lease of its own (60 s, longer than the run), share `ops`
/// lock + unlock pairs on the lock `bench-lock` (etcd's lock service).
async fn lock_bench(
    client: Client,
    callers: usize,
    ops: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..callers {
        let mut client = client.clone();
        tasks.spawn(async move {
            let lease = client.lease_grant(60, None).await?.id();
            let mut latencies = Vec::new();
            for _ in (c..ops).step_by(callers) {
                let t = Instant::now();
                let held = client
                    .lock("bench-lock", Some(LockOptions::new().with_lease(lease)))
                    .await?;
                client.unlock(held.key().to_vec()).await?;
                latencies.push(t.elapsed());
            }
            let _ = client.lease_revoke(lease).await;
            Ok::<_, etcd_client::Error>(latencies)
        });
    }
    let mut all = Vec::with_capacity(ops);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let elapsed = started.elapsed();
    print_run("lock", callers, all, elapsed, cpu_seconds() - cpu_before);
    Ok(())
}

/// `ops` rounds of a handover through etcd's election service: candidate a leads
/// `bench-election`, candidate b campaigns behind it, a's lease is revoked; the latency
/// runs from the revoke sent to b's campaign returning. Each candidate has a lease of its
/// own (60 s), new every round.
async fn election_bench(mut client: Client, ops: usize) -> Result<(), Box<dyn std::error::Error>> {
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut all = Vec::with_capacity(ops);
    for _ in 0..ops {
        let a = client.lease_grant(60, None).await?.id();
        let b = client.lease_grant(60, None).await?.id();
        client.campaign("bench-election", "a", a).await?;
        let mut candidate = client.clone();
        let won = tokio::spawn(async move {
            let mut response = candidate.campaign("bench-election", "b", b).await?;
            Ok::<_, etcd_client::Error>((Instant::now(), response.take_leader()))
        });
        loop {
            let queued = client
                .get(
                    "bench-election/",
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await?
                .count();
            if queued >= 2 {
                break;
            }
        }
        let t = Instant::now();
        client.lease_revoke(a).await?;
        let (at, leader) = won.await??;
        all.push(at.saturating_duration_since(t));
        if let Some(leader) = leader {
            client
                .resign(Some(ResignOptions::new().with_leader(leader)))
                .await?;
        }
        client.lease_revoke(b).await?;
    }
    let elapsed = started.elapsed();
    print_run("election", 1, all, elapsed, cpu_seconds() - cpu_before);
    Ok(())
}

/// Prints a recipe workload's line in the KV protocol.
fn print_run(workload: &str, callers: usize, mut all: Vec<Duration>, elapsed: Duration, cpu: f64) {
    all.sort();
    let us = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{{\"client\":\"etcd-client\",\"workload\":\"{workload}\",\"callers\":{callers},\
         \"value_size\":0,\"ops\":{},\"errors\":0,\"seconds\":{},\"p50_us\":{},\
         \"p99_us\":{},\"p999_us\":{},\"cpu_seconds\":{cpu},\"peak_rss_kib\":{},\
         \"threads\":{}}}",
        all.len(),
        elapsed.as_secs_f64(),
        us(0.50),
        us(0.99),
        us(0.999),
        status("VmHWM"),
        status("Threads"),
    );
}

/// The token expiry load (see peer_expiry/mod.rs): a watch of exp/ and a lease of `ttl`
/// seconds kept alive by a task that renews every third of the TTL and opens a new
/// keepalive stream when one fails, as etcd-client's users must; then cycles of 300 ms of
/// puts of new keys each read back, a new watch of late/<cycle>/ awaited created with a
/// put under it and its event awaited, and an idle time; then counts what the first watch
/// lost or repeated and whether the lease is still there.
async fn expiry_bench(
    client: Client,
    duration: Duration,
    idle: Duration,
    ttl: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut watch = client.watch_client();
    let mut stream = tokio::time::timeout(
        DEADLINE,
        watch.watch("exp/", Some(WatchOptions::new().with_prefix())),
    )
    .await??;
    match tokio::time::timeout(DEADLINE, stream.message()).await?? {
        Some(r) if r.created() && !r.canceled() => {}
        other => return Err(format!("the watch of exp/ not created: {other:?}").into()),
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(response)) => {
                        let mut seen = seen.lock().unwrap();
                        for event in response.events() {
                            if let Some(kv) = event.kv() {
                                seen.push(String::from_utf8_lossy(kv.key()).into_owned());
                            }
                        }
                        if response.canceled() {
                            eprintln!(
                                "expiry: the watch of exp/ canceled: {}",
                                response.cancel_reason()
                            );
                            return;
                        }
                    }
                    Ok(None) => {
                        eprintln!("expiry: the watch of exp/ ended");
                        return;
                    }
                    Err(e) => {
                        eprintln!("expiry: the watch of exp/: {e}");
                        return;
                    }
                }
            }
        });
    }
    let mut lease = client.lease_client();
    let id = tokio::time::timeout(DEADLINE, lease.grant(ttl, None))
        .await??
        .id();
    let period = Duration::from_millis(u64::try_from(ttl).unwrap_or(1) * 1000 / 3);
    {
        let mut lease = client.lease_client();
        tokio::spawn(async move {
            loop {
                match lease.keep_alive(id).await {
                    Ok((mut keeper, mut stream)) => loop {
                        tokio::time::sleep(period).await;
                        if let Err(e) = keeper.keep_alive().await {
                            eprintln!("expiry: keepalive: {e}");
                            break;
                        }
                        match stream.message().await {
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) => {
                                eprintln!("expiry: keepalive: {e}");
                                break;
                            }
                        }
                    },
                    Err(e) => {
                        eprintln!("expiry: keepalive stream: {e}");
                        tokio::time::sleep(period).await;
                    }
                }
            }
        });
    }
    let mut kv = client.kv_client();
    let (mut ops, mut errors, mut watches, mut watch_errors) = (0u64, 0u64, 0u64, 0u64);
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    let mut cycle = 0u64;
    while started.elapsed() < duration {
        let burst = Instant::now() + Duration::from_millis(300);
        while Instant::now() < burst {
            let key = format!("exp/{n:08}");
            n += 1;
            let put = tokio::time::timeout(DEADLINE, kv.put(key.as_str(), "v", None)).await;
            if tally(put, &mut ops, &mut errors) {
                acknowledged.push(key.clone());
            }
            let get = tokio::time::timeout(DEADLINE, kv.get(key.as_str(), None)).await;
            tally(get, &mut ops, &mut errors);
        }
        let prefix = format!("late/{cycle}/");
        cycle += 1;
        watches += 1;
        match late_watch(&client, &prefix).await {
            Ok(()) => ops += 1,
            Err(e) => {
                watch_errors += 1;
                eprintln!("expiry: watch {prefix}: {e}");
            }
        }
        tokio::time::sleep(idle).await;
    }
    let mut until = Instant::now() + DEADLINE;
    let mut before = 0;
    loop {
        let now = seen.lock().unwrap().len();
        if now >= acknowledged.len() || Instant::now() >= until {
            break;
        }
        if now != before {
            before = now;
            until = Instant::now() + DEADLINE;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let mut times = std::collections::HashMap::new();
    let mut repeated = 0;
    let mut last: Option<&str> = None;
    for key in &seen {
        let t = times.entry(key.as_str()).or_insert(0);
        *t += 1;
        if *t > 1 || last.is_some_and(|l| l >= key.as_str()) {
            repeated += 1;
        }
        last = Some(key.as_str());
    }
    let lost = acknowledged
        .iter()
        .filter(|k| !times.contains_key(k.as_str()))
        .count();
    let lapsed = match tokio::time::timeout(DEADLINE, lease.time_to_live(id, None)).await {
        Ok(Ok(r)) if r.ttl() > 0 => 0,
        Ok(Ok(_)) => 1,
        Ok(Err(e)) => {
            eprintln!("expiry: the lease's time to live: {e}");
            1
        }
        Err(_) => 1,
    };
    println!(
        "{{\"client\":\"etcd-client\",\"workload\":\"expiry\",\"ops\":{ops},\"errors\":{errors},\
         \"watches\":{watches},\"watch_errors\":{watch_errors},\"lost\":{lost},\
         \"repeated\":{repeated},\"lapsed\":{lapsed},\"seconds\":{},\"cpu_seconds\":{}}}",
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu_before,
    );
    Ok(())
}

/// A new watch of `prefix`, awaited created; a put under it and its event awaited, each
/// within the deadline. The put counts as a call; a failure of any step is the watch's.
async fn late_watch(client: &Client, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut watch = client.watch_client();
    let mut stream = tokio::time::timeout(
        DEADLINE,
        watch.watch(prefix, Some(WatchOptions::new().with_prefix())),
    )
    .await??;
    // A refusal comes as a created-and-canceled response.
    match tokio::time::timeout(DEADLINE, stream.message()).await?? {
        Some(r) if r.created() && !r.canceled() => {}
        Some(r) => return Err(format!("not created: {}", r.cancel_reason()).into()),
        None => return Err("the watch ended before it was created".into()),
    }
    let mut kv = client.kv_client();
    tokio::time::timeout(DEADLINE, kv.put(format!("{prefix}k"), "x", None)).await??;
    loop {
        match tokio::time::timeout(DEADLINE, stream.message()).await?? {
            Some(r) if r.canceled() => {
                return Err(format!("canceled: {}", r.cancel_reason()).into())
            }
            Some(r) if !r.events().is_empty() => return Ok(()),
            Some(_) => {}
            None => return Err("the watch ended".into()),
        }
    }
}

/// Counts a call of the expiry load that succeeded or failed (its deadline included), and
/// says why a failed one failed; whether it succeeded.
fn tally<T>(
    result: Result<Result<T, etcd_client::Error>, tokio::time::error::Elapsed>,
    ops: &mut u64,
    errors: &mut u64,
) -> bool {
    match result {
        Ok(Ok(_)) => {
            *ops += 1;
            true
        }
        Ok(Err(e)) => {
            *errors += 1;
            eprintln!("expiry: a call failed: {e}");
            false
        }
        Err(_) => {
            *errors += 1;
            eprintln!("expiry: a call timed out");
            false
        }
    }
}

/// Saves a snapshot to `out` from etcd-client's `maintenance_client().snapshot()` stream,
/// each chunk written as it comes, and reports the time, the bytes and the CPU and peak
/// RSS.
async fn snapshot_bench(client: Client, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut stream = client.maintenance_client().snapshot().await?;
    let mut bytes = 0u64;
    while let Some(chunk) = stream.message().await? {
        file.write_all(chunk.blob())?;
        bytes += chunk.blob().len() as u64;
    }
    file.into_inner()?.sync_all()?;
    println!(
        "{{\"client\":\"etcd-client\",\"workload\":\"snapshot\",\"bytes\":{bytes},\
         \"seconds\":{},\"cpu_seconds\":{},\"peak_rss_kib\":{}}}",
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu_before,
        status("VmHWM"),
    );
    Ok(())
}

/// Keeps a local copy of `prefix` the way etcd-client's users must, it having no mirror:
/// the prefix read at one revision a page of 1,000 keys at a time (one get of a large
/// prefix passes tonic's 4 MiB message limit) into a map behind a mutex, then a watch from
/// the revision after whose events a task applies. It prints `READY` once the copy is
/// in; the orchestrator then writes updates under `prefix` + "u/" whose values are the
/// wall-clock time of their sending (Unix nanoseconds), and `prefix` + "done" last. Put to
/// visible is the time from that stamp to the event's application; CPU is counted from
/// ready to done.
async fn mirror_bench(client: Client, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::collections::HashMap;
    let mut kv = client.kv_client();
    let rss_before = status("VmRSS");
    let started = Instant::now();
    let local: Arc<std::sync::Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().ok_or("an empty prefix")? += 1;
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(1000);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = tokio::time::timeout(DEADLINE, kv.get(from.clone(), Some(options))).await??;
        if revision == 0 {
            revision = page.header().map_or(0, |h| h.revision());
        }
        let kvs = page.kvs();
        {
            let mut local = local.lock().map_err(|_| "poisoned")?;
            for kv in kvs {
                local.insert(kv.key().to_vec(), kv.value().to_vec());
            }
        }
        let Some(last) = kvs.last() else { break };
        if !page.more() {
            break;
        }
        from = last.key().to_vec();
        from.push(0);
    }
    let first_copy = started.elapsed().as_secs_f64();
    let keys = local.lock().map_err(|_| "poisoned")?.len();
    let rss_after = status("VmRSS");
    let mut watch = client.watch_client();
    let mut stream = watch
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await?;
    let cpu_before = cpu_seconds();
    println!("READY");
    let (stamped, done_key) = (format!("{prefix}u/"), format!("{prefix}done"));
    let mut latencies = Vec::new();
    let mut done = false;
    while !done {
        let Some(response) =
            tokio::time::timeout(Duration::from_secs(300), stream.message()).await??
        else {
            return Err("the watch ended".into());
        };
        {
            let mut local = local.lock().map_err(|_| "poisoned")?;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    etcd_client::EventType::Delete => {
                        local.remove(kv.key());
                    }
                    etcd_client::EventType::Put => {
                        local.insert(kv.key().to_vec(), kv.value().to_vec());
                    }
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as i64;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            if kv.key() == done_key.as_bytes() {
                done = true;
            } else if kv.key().starts_with(stamped.as_bytes())
                && event.event_type() == etcd_client::EventType::Put
            {
                if let Some(sent) = std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    latencies.push(Duration::from_nanos((now - sent).max(0) as u64));
                }
            }
        }
    }
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{{\"client\":\"etcd-client\",\"workload\":\"mirror\",\"keys\":{keys},\
         \"first_copy_s\":{first_copy},\"rss_delta_kib\":{},\"updates\":{},\
         \"p50_us\":{},\"p99_us\":{},\"cpu_seconds\":{cpu},\"peak_rss_kib\":{}}}",
        rss_after as i64 - rss_before as i64,
        latencies.len(),
        pct(0.50),
        pct(0.99),
        status("VmHWM")
    );
    Ok(())
}
