//! An in-process stand-in for an etcd cluster, for unit tests of the call path and the
//! balancer: faults a real server cannot produce on demand (an answer held back for as
//! long as a test says, a leader change at a chosen moment), in milliseconds and without
//! processes. Each member is a grpcio server on a loopback port that serves KV `Range`
//! and `Put` and Maintenance `Status` from one shared script; behaviour that involves a
//! real server is tested against real etcd (`tests/`).

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use futures_core::Stream;
use futures_sink::Sink;
use grpcio::{
    DuplexSink, Environment, RequestStream, RpcContext, Server, ServerBuilder, UnarySink,
    WriteFlags,
};
use parking_lot::Mutex;

use crate::proto::rpc::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, StatusRequest, StatusResponse,
};
use crate::proto::rpc_grpc::{create_kv, create_lease, create_maintenance, Kv, Lease, Maintenance};

/// What every member answers from: the leader, the term, the store's revision, and how
/// puts are answered.
#[derive(Default)]
struct Script {
    leader: AtomicU64,
    term: AtomicU64,
    revision: AtomicI64,
    /// How long a put is held before it is answered (`None`: never).
    put_delay: Mutex<Option<Duration>>,
    /// Told of every put as it arrives, with the member that took it.
    puts: Mutex<Option<Sender<u64>>>,
    /// Members that have no leader: they refuse reads (probes too) and puts with
    /// `etcdserver: no leader`, as etcd does under require-leader metadata, and their
    /// status names no leader.
    leaderless: Mutex<std::collections::HashSet<u64>>,
    /// The TTL every renewal answers (0: the lease is gone).
    lease_ttl: AtomicI64,
    /// Members that read renewals and answer none (hung, as a paused member is).
    silent: Mutex<std::collections::HashSet<u64>>,
}

/// A fake cluster: members 1 to n, member 1 leading in term 2.
pub(crate) struct FakeCluster {
    script: Arc<Script>,
    /// Each member's server and port.
    members: Vec<(Server, u16)>,
    puts: Receiver<u64>,
}

#[derive(Clone)]
struct Member {
    id: u64,
    script: Arc<Script>,
}

impl Member {
    fn leaderless(&self) -> bool {
        self.script.leaderless.lock().contains(&self.id)
    }

    fn header(&self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: 1,
            member_id: self.id,
            revision: self.script.revision.load(Ordering::Acquire),
            raft_term: self.script.term.load(Ordering::Acquire),
            ..Default::default()
        }
    }
}

impl Kv for Member {
    fn range(&mut self, ctx: RpcContext, _req: RangeRequest, sink: UnarySink<RangeResponse>) {
        if self.leaderless() {
            return no_leader(&ctx, sink);
        }
        let response = RangeResponse {
            header: Some(self.header()).into(),
            ..Default::default()
        };
        answer(&ctx, sink, response);
    }

    fn put(&mut self, ctx: RpcContext, _req: PutRequest, sink: UnarySink<PutResponse>) {
        if self.leaderless() {
            return no_leader(&ctx, sink);
        }
        if let Some(puts) = self.script.puts.lock().as_ref() {
            let _ = puts.send(self.id);
        }
        let delay = *self.script.put_delay.lock();
        let member = self.clone();
        std::thread::spawn(move || {
            let Some(delay) = delay else {
                // Held until the client gives up (the sink is dropped with the server).
                std::thread::park_timeout(Duration::from_secs(60));
                drop(sink);
                return;
            };
            std::thread::sleep(delay);
            member.script.revision.fetch_add(1, Ordering::AcqRel);
            let response = PutResponse {
                header: Some(member.header()).into(),
                ..Default::default()
            };
            // Off the server's thread: wait here for the answer to be sent.
            let mut sent = sink.success(response);
            let deadline = crate::time::deadline(Duration::from_secs(5));
            crate::park::wait(None, deadline, |cx| {
                std::pin::Pin::new(&mut sent).poll(cx).map(drop)
            });
        });
    }
}

impl Lease for Member {
    fn lease_keep_alive(
        &mut self,
        ctx: RpcContext,
        mut stream: RequestStream<LeaseKeepAliveRequest>,
        mut sink: DuplexSink<LeaseKeepAliveResponse>,
    ) {
        let member = self.clone();
        ctx.spawn(async move {
            use std::future::poll_fn;
            use std::pin::Pin;
            while let Some(Ok(request)) = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
                if member.script.silent.lock().contains(&member.id) {
                    continue;
                }
                let response = LeaseKeepAliveResponse {
                    header: Some(member.header()).into(),
                    ID: request.ID,
                    TTL: member.script.lease_ttl.load(Ordering::Acquire),
                    ..Default::default()
                };
                let sent = async {
                    poll_fn(|cx| Pin::new(&mut sink).poll_ready(cx)).await?;
                    Pin::new(&mut sink).start_send((response, WriteFlags::default()))?;
                    poll_fn(|cx| Pin::new(&mut sink).poll_flush(cx)).await
                };
                if sent.await.is_err() {
                    return;
                }
            }
            let _ = poll_fn(|cx| Pin::new(&mut sink).poll_close(cx)).await;
        });
    }
}

impl Maintenance for Member {
    fn status(&mut self, ctx: RpcContext, _req: StatusRequest, sink: UnarySink<StatusResponse>) {
        let response = StatusResponse {
            header: Some(self.header()).into(),
            version: "3.7.3".to_owned(),
            leader: if self.leaderless() {
                0
            } else {
                self.script.leader.load(Ordering::Acquire)
            },
            raftTerm: self.script.term.load(Ordering::Acquire),
            ..Default::default()
        };
        answer(&ctx, sink, response);
    }
}

/// Refuses the call as a member without a leader does.
fn no_leader<T: Send + 'static>(ctx: &RpcContext<'_>, sink: UnarySink<T>) {
    let status = grpcio::RpcStatus::with_message(
        grpcio::RpcStatusCode::UNAVAILABLE,
        "etcdserver: no leader".to_owned(),
    );
    let sent = sink.fail(status);
    ctx.spawn(async move {
        let _ = sent.await;
    });
}

/// Sends `response`, and has the server's poll thread see the send through.
fn answer<T: Send + 'static>(ctx: &RpcContext<'_>, sink: UnarySink<T>, response: T) {
    let sent = sink.success(response);
    ctx.spawn(async move {
        let _ = sent.await;
    });
}

impl FakeCluster {
    /// Starts `n` members on free loopback ports.
    pub(crate) fn start(n: u64) -> FakeCluster {
        let script = Arc::new(Script::default());
        script.leader.store(1, Ordering::Release);
        script.term.store(2, Ordering::Release);
        script.revision.store(1, Ordering::Release);
        script.lease_ttl.store(1, Ordering::Release);
        *script.put_delay.lock() = Some(Duration::ZERO);
        let (sender, puts) = crossbeam_channel::unbounded();
        *script.puts.lock() = Some(sender);
        let env = Arc::new(Environment::new(1));
        let members = (1..=n)
            .map(|id| {
                let member = Member {
                    id,
                    script: script.clone(),
                };
                let mut server = ServerBuilder::new(env.clone())
                    .register_service(create_kv(member.clone()))
                    .register_service(create_lease(member.clone()))
                    .register_service(create_maintenance(member))
                    .build()
                    .expect("a fake member's server");
                let port = server
                    .add_listening_port("127.0.0.1:0", grpcio::ServerCredentials::insecure())
                    .expect("a loopback port");
                server.start();
                (server, port)
            })
            .collect();
        FakeCluster {
            script,
            members,
            puts,
        }
    }

    /// Every member's endpoint, `127.0.0.1:port`.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// From now on, `leader` leads in `term` (every member's status says so).
    pub(crate) fn elect(&self, leader: u64, term: u64) {
        self.script.term.store(term, Ordering::Release);
        self.script.leader.store(leader, Ordering::Release);
    }

    /// Member `id` has no leader from now on (`true`), or has one again.
    pub(crate) fn set_leaderless(&self, id: u64, leaderless: bool) {
        let mut set = self.script.leaderless.lock();
        if leaderless {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// Renewals answer `ttl` seconds from now on (0: the lease is gone).
    pub(crate) fn set_lease_ttl(&self, ttl: i64) {
        self.script.lease_ttl.store(ttl, Ordering::Release);
    }

    /// Member `id` answers no renewal from now on (`true`), or answers again.
    pub(crate) fn set_silent(&self, id: u64, silent: bool) {
        let mut set = self.script.silent.lock();
        if silent {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// Puts are answered after `delay` from now on (`None`: never).
    pub(crate) fn hold_puts(&self, delay: Option<Duration>) {
        *self.script.put_delay.lock() = delay;
    }

    /// The member that took the next put, waiting up to `timeout`.
    pub(crate) fn next_put(&self, timeout: Duration) -> Option<u64> {
        self.puts.recv_timeout(timeout).ok()
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for (server, _) in &mut self.members {
            drop(server.shutdown());
        }
    }
}
