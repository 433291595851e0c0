//! An in-process stand-in for an etcd cluster, for unit tests of the call path and the
//! balancer: faults a real server cannot produce on demand (an answer held back for as
//! long as a test says, a leader change at a chosen moment), in milliseconds and without
//! processes. Each member is a grpcio server on a loopback port that serves KV `Range`
//! and `Put`, Lease `LeaseKeepAlive`, `Watch` and Maintenance `Status` from one shared
//! script; behaviour that involves a real server is tested against real etcd (`tests/`).
#![cfg(test)]
// Test code only (lib.rs declares it under cfg(test) too): its expects and asserts fail a
// test, never a user's process.

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

use crate::proto::kv::{Event, KeyValue};
use crate::proto::rpc::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, Member, MemberListRequest, MemberListResponse,
    MemberRemoveRequest, MemberRemoveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, StatusRequest, StatusResponse, WatchRequest,
    WatchRequest_oneof_request_union as Union, WatchResponse,
};
use crate::proto::rpc_grpc::{
    create_cluster, create_kv, create_lease, create_maintenance, create_watch, Cluster, Kv, Lease,
    Maintenance, Watch,
};

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
    /// Every put made through [`FakeCluster::emit`]: its revision and key.
    history: Mutex<Vec<(i64, Vec<u8>)>>,
    /// The watch streams waiting for the history to grow.
    feed: Mutex<Vec<std::task::Waker>>,
    /// The next watch response goes out with a watch ID nobody created.
    stray: std::sync::atomic::AtomicBool,
    /// How many members the cluster has (the member list's).
    size: AtomicU64,
    /// Members removed: a removal answers `etcdserver: server stopped`, as the member
    /// removed does when the request reached it, and applies if `apply_removals`.
    removed: Mutex<std::collections::HashSet<u64>>,
    apply_removals: std::sync::atomic::AtomicBool,
}

/// A fake cluster: members 1 to n, member 1 leading in term 2.
pub(crate) struct FakeCluster {
    script: Arc<Script>,
    /// Each member's server and port.
    members: Vec<(Server, u16)>,
    puts: Receiver<u64>,
}

#[derive(Clone)]
struct FakeMember {
    id: u64,
    script: Arc<Script>,
}

impl FakeMember {
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

impl Kv for FakeMember {
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

impl Lease for FakeMember {
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

impl Watch for FakeMember {
    fn watch(
        &mut self,
        ctx: RpcContext,
        stream: RequestStream<WatchRequest>,
        sink: DuplexSink<WatchResponse>,
    ) {
        ctx.spawn(Serve {
            member: self.clone(),
            stream,
            sink,
            watches: Vec::new(),
            out: std::collections::VecDeque::new(),
        });
    }
}

/// One watch on a fake member's stream: its ID, its range, the next revision it gets.
struct FakeWatch {
    id: i64,
    key: Vec<u8>,
    range_end: Vec<u8>,
    next: i64,
}

impl FakeWatch {
    fn covers(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key.as_slice()
        } else {
            key >= self.key.as_slice() && key < self.range_end.as_slice()
        }
    }
}

/// A fake member's watch stream: creates, cancels and progress requests answered in
/// order, then every put of the history from each watch's next revision, one response
/// per revision; a silent member sends nothing.
struct Serve {
    member: FakeMember,
    stream: RequestStream<WatchRequest>,
    sink: DuplexSink<WatchResponse>,
    watches: Vec<FakeWatch>,
    out: std::collections::VecDeque<WatchResponse>,
}

impl Serve {
    fn request(&mut self, request: WatchRequest) {
        let header = Some(self.member.header()).into();
        match request.request_union {
            Some(Union::create_request(create)) => {
                let revision = self.member.script.revision.load(Ordering::Acquire);
                self.watches.push(FakeWatch {
                    id: create.watch_id,
                    key: create.key,
                    range_end: create.range_end,
                    next: if create.start_revision > 0 {
                        create.start_revision
                    } else {
                        revision + 1
                    },
                });
                self.out.push_back(WatchResponse {
                    header,
                    watch_id: create.watch_id,
                    created: true,
                    ..Default::default()
                });
            }
            Some(Union::cancel_request(cancel)) => {
                self.watches.retain(|w| w.id != cancel.watch_id);
                self.out.push_back(WatchResponse {
                    header,
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                });
            }
            Some(Union::progress_request(_)) => self.out.push_back(WatchResponse {
                header,
                watch_id: -1,
                ..Default::default()
            }),
            None => {}
        }
    }

    /// Queues what the history holds for each watch from its next revision on.
    fn catch_up(&mut self) {
        let history = self.member.script.history.lock().clone();
        for watch in &mut self.watches {
            let from = watch.next;
            for (revision, key) in history.iter().filter(|(r, _)| *r >= from) {
                watch.next = revision + 1;
                if !watch.covers(key) {
                    continue;
                }
                let stray = self.member.script.stray.swap(false, Ordering::AcqRel);
                let kv = KeyValue {
                    key: key.clone(),
                    create_revision: *revision,
                    mod_revision: *revision,
                    version: 1,
                    ..Default::default()
                };
                self.out.push_back(WatchResponse {
                    header: Some(ResponseHeader {
                        revision: *revision,
                        ..self.member.header()
                    })
                    .into(),
                    watch_id: if stray { 999_999 } else { watch.id },
                    events: vec![Event {
                        kv: Some(kv).into(),
                        ..Default::default()
                    }]
                    .into(),
                    ..Default::default()
                });
            }
        }
    }
}

impl Future for Serve {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::pin::Pin;
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.stream).poll_next(cx) {
                Poll::Ready(Some(Ok(request))) => this.request(request),
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        this.member.script.feed.lock().push(cx.waker().clone());
        if this.member.script.silent.lock().contains(&this.member.id) {
            this.out.clear();
            return Poll::Pending;
        }
        this.catch_up();
        while !this.out.is_empty() {
            match Pin::new(&mut this.sink).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
            let Some(response) = this.out.pop_front() else {
                break;
            };
            if Pin::new(&mut this.sink)
                .start_send((response, WriteFlags::default()))
                .is_err()
            {
                return Poll::Ready(());
            }
        }
        match Pin::new(&mut this.sink).poll_flush(cx) {
            Poll::Ready(Err(_)) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

impl Maintenance for FakeMember {
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

impl Cluster for FakeMember {
    fn member_remove(
        &mut self,
        ctx: RpcContext,
        req: MemberRemoveRequest,
        sink: UnarySink<MemberRemoveResponse>,
    ) {
        if self.script.apply_removals.load(Ordering::Acquire) {
            self.script.removed.lock().insert(req.ID);
        }
        refuse(&ctx, sink, "etcdserver: server stopped");
    }

    fn member_list(
        &mut self,
        ctx: RpcContext,
        _req: MemberListRequest,
        sink: UnarySink<MemberListResponse>,
    ) {
        let removed = self.script.removed.lock().clone();
        let members = (1..=self.script.size.load(Ordering::Acquire))
            .filter(|id| !removed.contains(id))
            .map(|id| Member {
                ID: id,
                name: format!("m{id}"),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let response = MemberListResponse {
            header: Some(self.header()).into(),
            members: members.into(),
            ..Default::default()
        };
        answer(&ctx, sink, response);
    }
}

/// Refuses the call as a member without a leader does.
fn no_leader<T: Send + 'static>(ctx: &RpcContext<'_>, sink: UnarySink<T>) {
    refuse(ctx, sink, "etcdserver: no leader");
}

/// Refuses the call `UNAVAILABLE` with etcd's `message`, and has the server's poll thread
/// see the refusal through.
fn refuse<T: Send + 'static>(ctx: &RpcContext<'_>, sink: UnarySink<T>, message: &str) {
    let status =
        grpcio::RpcStatus::with_message(grpcio::RpcStatusCode::UNAVAILABLE, message.to_owned());
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
        script.size.store(n, Ordering::Release);
        *script.put_delay.lock() = Some(Duration::ZERO);
        let (sender, puts) = crossbeam_channel::unbounded();
        *script.puts.lock() = Some(sender);
        let env = Arc::new(Environment::new(1));
        let members = (1..=n)
            .map(|id| {
                let member = FakeMember {
                    id,
                    script: script.clone(),
                };
                let mut server = ServerBuilder::new(env.clone())
                    .register_service(create_kv(member.clone()))
                    .register_service(create_lease(member.clone()))
                    .register_service(create_watch(member.clone()))
                    .register_service(create_cluster(member.clone()))
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

    /// A client of every member that probes every 10 ms, so that it learns of what the
    /// script changes within milliseconds.
    pub(crate) fn client(&self, prefer_leader: bool) -> crate::Client {
        crate::Client::builder()
            .endpoints(self.endpoints())
            .probe_interval(Duration::from_millis(10))
            .prefer_leader(prefer_leader)
            .connect()
            .expect("connect to the fake cluster")
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

    /// FakeMember `id` has no leader from now on (`true`), or has one again.
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

    /// FakeMember `id` answers no renewal from now on (`true`), or answers again.
    pub(crate) fn set_silent(&self, id: u64, silent: bool) {
        let mut set = self.script.silent.lock();
        if silent {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// A put of `key` applied by the cluster (not through a client): the store's revision
    /// goes up by one, and every watch that covers the key gets the event. Returns the
    /// revision.
    pub(crate) fn emit(&self, key: &str) -> i64 {
        let revision = self.script.revision.fetch_add(1, Ordering::AcqRel) + 1;
        self.script
            .history
            .lock()
            .push((revision, key.as_bytes().to_vec()));
        for waker in std::mem::take(&mut *self.script.feed.lock()) {
            waker.wake();
        }
        revision
    }

    /// Every removal from now on is applied (`true`) or not before its member answers
    /// `etcdserver: server stopped`.
    pub(crate) fn apply_removals(&self, apply: bool) {
        self.script.apply_removals.store(apply, Ordering::Release);
    }

    /// The next watch response goes out with a watch ID nobody created.
    pub(crate) fn send_stray(&self) {
        self.script.stray.store(true, Ordering::Release);
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

/// Polls `condition` every millisecond until it holds; panics after 5 s naming `what`.
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        crate::park::park_until(crate::time::deadline(Duration::from_millis(1)));
    }
}
