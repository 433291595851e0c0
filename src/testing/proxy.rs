//! A TCP proxy on loopback that can pass bytes, swallow them (a black hole: connections
//! stay open and nothing answers), or refuse peer traffic by sender.
//!
//! In front of a member's client port it makes the fault HTTP/2 pings cannot tell from a
//! slow member; in front of its peer port it cuts raft links. etcd's peer connections each
//! start with an HTTP request whose `X-Server-From` header names the sending member, and
//! each carries traffic of that one sender, so a link is cut by refusing (and closing) the
//! connections a given sender opens.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::error::LaunchError;

/// How often a copying thread looks at the proxy's mode while no bytes flow.
const POLL: Duration = Duration::from_millis(20);

/// The most bytes read while looking for the first request's headers.
const MAX_HEAD: usize = 16 * 1024;

/// What the proxy does with bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards both ways.
    Pass,
    /// Accepts connections and keeps them open, forwards nothing, answers nothing.
    Blackhole,
}

struct State {
    mode: ProxyMode,
    /// Refuse every peer connection.
    isolated: bool,
    /// Refuse peer connections from these senders (`X-Server-From`, lowercase hex).
    refused: HashSet<String>,
    /// Live connections: an ID, the sender (if known) and both sockets, for closing them.
    conns: Vec<Conn>,
    next_id: u64,
}

struct Conn {
    id: u64,
    sender: Option<String>,
    client: TcpStream,
    upstream: TcpStream,
}

/// A proxy from a loopback port of its own to a target port; stops when dropped.
pub struct Proxy {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("port", &self.port).finish()
    }
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:target`, listening on `127.0.0.1:port` (0: any free
    /// port).
    pub fn start(port: u16, target: u16) -> Result<Proxy, LaunchError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map_err(|e| LaunchError::io(format!("binding proxy port {port}"), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| LaunchError::io("reading the proxy's port", e))?
            .port();
        let state = Arc::new(Mutex::new(State {
            mode: ProxyMode::Pass,
            isolated: false,
            refused: HashSet::new(),
            conns: Vec::new(),
            next_id: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target));
        let (s, st) = (state.clone(), stop.clone());
        let acceptor = std::thread::Builder::new()
            .name("etcd-test-proxy".to_owned())
            .spawn(move || accept(&listener, target, &s, &st))
            .map_err(|e| LaunchError::io("starting the proxy thread", e))?;
        Ok(Proxy {
            port,
            state,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The proxy as an endpoint, `127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Swallows everything from now on, on open connections too; they stay open.
    pub fn blackhole(&self) {
        self.state.lock().mode = ProxyMode::Blackhole;
    }

    /// Forwards again. Connections that lost bytes in a black hole are closed, so their
    /// ends reconnect cleanly.
    pub fn pass(&self) {
        let mut state = self.state.lock();
        if state.mode == ProxyMode::Blackhole {
            close_where(&mut state, |_| true);
        }
        state.mode = ProxyMode::Pass;
    }

    /// Refuses, and closes, every connection: the member behind it hears from no peer.
    pub(crate) fn isolate(&self) {
        let mut state = self.state.lock();
        state.isolated = true;
        close_where(&mut state, |_| true);
    }

    /// Refuses, and closes, connections opened by the member `sender` (hex member ID).
    pub(crate) fn refuse(&self, sender: &str) {
        let mut state = self.state.lock();
        state.refused.insert(sender.to_owned());
        close_where(&mut state, |from| from == Some(sender));
    }

    /// Accepts every connection again.
    pub(crate) fn heal(&self) {
        let mut state = self.state.lock();
        state.isolated = false;
        state.refused.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the acceptor from its blocking accept.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        close_where(&mut self.state.lock(), |_| true);
    }
}

fn close_where(state: &mut State, which: impl Fn(Option<&str>) -> bool) {
    state.conns.retain(|c| {
        if which(c.sender.as_deref()) {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.upstream.shutdown(Shutdown::Both);
            false
        } else {
            true
        }
    });
}

fn accept(
    listener: &TcpListener,
    target: SocketAddr,
    state: &Arc<Mutex<State>>,
    stop: &Arc<AtomicBool>,
) {
    for client in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = client else { continue };
        let (state, stop) = (state.clone(), stop.clone());
        let _ = std::thread::Builder::new()
            .name("etcd-test-proxy".to_owned())
            .spawn(move || serve(client, target, &state, &stop));
    }
}

/// Serves one connection: reads the first request head to learn its sender, checks it is
/// let through, connects to the target and copies both ways.
fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    state: &Arc<Mutex<State>>,
    stop: &Arc<AtomicBool>,
) {
    let _ = client.set_nodelay(true);
    let _ = client.set_read_timeout(Some(POLL));
    let head = read_head(&mut client, state, stop);
    let sender = sender_of(&head);
    {
        let s = state.lock();
        if s.isolated || sender.as_ref().is_some_and(|from| s.refused.contains(from)) {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    }
    let Ok(mut upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = upstream.set_read_timeout(Some(POLL));
    if state.lock().mode == ProxyMode::Pass && upstream.write_all(&head).is_err() {
        return;
    }
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    let id = {
        let mut s = state.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.conns.push(Conn {
            id,
            sender,
            client: c3,
            upstream: u3,
        });
        id
    };
    let (s2, st2) = (state.clone(), stop.clone());
    let back = std::thread::Builder::new()
        .name("etcd-test-proxy".to_owned())
        .spawn(move || copy(u2, c2, &s2, &st2));
    copy(client, upstream, state, stop);
    if let Ok(back) = back {
        let _ = back.join();
    }
    state.lock().conns.retain(|c| c.id != id);
}

/// Reads until the end of the first HTTP request's headers, or until the client pauses
/// with something that is not HTTP (gRPC's HTTP/2 preface), or sends nothing at all.
fn read_head(client: &mut TcpStream, state: &Mutex<State>, stop: &AtomicBool) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let mut idle = 0;
    while head.len() < MAX_HEAD && !stop.load(Ordering::Relaxed) {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                idle = 0;
                if head.windows(4).any(|w| w == b"\r\n\r\n") || head.starts_with(b"PRI * HTTP/2") {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                idle += 1;
                // A client that speaks first (every HTTP client) has spoken by now; in a
                // black hole, keep swallowing.
                if idle >= 5 && state.lock().mode == ProxyMode::Pass {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    head
}

/// The `X-Server-From` header of a request head, lowercased.
fn sender_of(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-server-from")
            .then(|| value.trim().to_ascii_lowercase())
    })
}

/// Copies `from` to `to` while the proxy passes bytes; swallows them in a black hole.
fn copy(mut from: TcpStream, mut to: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if state.lock().mode == ProxyMode::Pass && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_is_read_from_the_header() {
        let head = b"GET /raft/stream/msgapp/1 HTTP/1.1\r\nHost: x\r\nX-Server-From: 8E9E05C52164694D\r\n\r\n";
        assert_eq!(sender_of(head).as_deref(), Some("8e9e05c52164694d"));
        assert_eq!(sender_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
    }
}
