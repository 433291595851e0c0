//! The floor (`compare --driver --floor`, `COMPARE_FLOOR=1`): what a blocking etcd client
//! could cost per request if it spoke HTTP/2 itself instead of going through gRPC's C core.
//! An experiment behind `benches/compare/results/why.md`, not a client: it leaves out what a client
//! needs and the measurement does not (deadlines sent to the server, per-stream send
//! windows, reconnection, failover: one connection to the first endpoint), and it neither
//! builds nor decodes protobuf messages, it writes them by hand.
//!
//! It keeps what a blocking client cannot leave out: the caller's own thread parks until the
//! connection's reader thread wakes it, stream ids are taken in wire order, writes from
//! concurrent callers are combined into one `write`, the connection's send window is
//! obeyed, and every response's headers and trailers are decoded (`hpack`, checked on RFC
//! 7541's examples at every start): a request succeeds only on `grpc-status: 0`. Its driver checks, through this crate's client, that the store's revision moved
//! by exactly the writes it counted, so a floor that only seemed fast would fail its run.
//! That client (which also fills the keys) idles alongside during the timed phase, and its
//! probes, a few a second, are counted in the floor's CPU.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::KEYS;

mod hpack;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The receive window this side advertises, for the connection and for each stream.
const WINDOW: u32 = 16 << 20;

type Reply = Result<Vec<u8>, &'static str>;

/// Where the reader leaves a caller's reply, and the caller to wake.
struct Slot {
    caller: Thread,
    reply: Mutex<Option<Reply>>,
}

impl Slot {
    fn fill(&self, reply: Reply) {
        *self.reply.lock() = Some(reply);
        self.caller.unpark();
    }
}

/// Open streams by id: whom to answer, and the response bytes so far.
type Streams = HashMap<u32, (Arc<Slot>, Vec<u8>)>;

/// Writes waiting to go out, and whether a caller is writing them already.
struct Out {
    next_id: u32,
    buf: Vec<u8>,
    flushing: bool,
}

struct Conn {
    out: Mutex<Out>,
    sock: TcpStream,
    /// The connection-level send window the server granted, and its wait.
    send_window: Mutex<i64>,
    window_grown: Condvar,
    streams: Mutex<Streams>,
    dead: AtomicBool,
}

fn frame(buf: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_be_bytes()[1..]);
    buf.extend_from_slice(&[kind, flags]);
    buf.extend_from_slice(&stream.to_be_bytes());
    buf.extend_from_slice(payload);
}

/// A DATA or HEADERS payload without its padding (flag PADDED: a length byte up front,
/// that many bytes at the end).
fn unpadded(payload: &[u8], flags: u8) -> &[u8] {
    if flags & PADDED == 0 {
        return payload;
    }
    let pad = payload.first().copied().unwrap_or(0) as usize;
    payload
        .get(1..payload.len().saturating_sub(pad))
        .unwrap_or(&[])
}

/// An HPACK string literal, not Huffman-coded (lengths here stay under 127).
fn literal(block: &mut Vec<u8>, s: &str) {
    block.push(s.len() as u8);
    block.extend_from_slice(s.as_bytes());
}

/// The request header block for one method: constant, so encoded once. Static-table
/// indexes from RFC 7541 Appendix A; literals are "without indexing", so no state.
fn header_block(authority: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.push(0x04); // :path, name index 4
    literal(&mut block, path);
    block.push(0x01); // :authority, name index 1
    literal(&mut block, authority);
    block.extend_from_slice(&[0x0f, 0x10]); // content-type, name index 31
    literal(&mut block, "application/grpc");
    block.push(0x00); // te: a new name
    literal(&mut block, "te");
    literal(&mut block, "trailers");
    block
}

impl Conn {
    fn open(endpoint: &str) -> std::io::Result<Arc<Conn>> {
        let sock = TcpStream::connect(endpoint)?;
        sock.set_nodelay(true)?;
        let mut hello = PREFACE.to_vec();
        // SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE.
        let mut settings = vec![0, 2, 0, 0, 0, 0, 0, 4];
        settings.extend_from_slice(&WINDOW.to_be_bytes());
        frame(&mut hello, SETTINGS, 0, 0, &settings);
        frame(
            &mut hello,
            WINDOW_UPDATE,
            0,
            0,
            &(WINDOW - 65_535).to_be_bytes(),
        );
        (&sock).write_all(&hello)?;
        let conn = Arc::new(Conn {
            out: Mutex::new(Out {
                next_id: 1,
                buf: Vec::new(),
                flushing: false,
            }),
            sock,
            send_window: Mutex::new(65_535),
            window_grown: Condvar::new(),
            streams: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
        });
        let reader = conn.clone();
        thread::Builder::new()
            .name("floor-reader".into())
            .spawn(move || reader.read_loop())?;
        Ok(conn)
    }

    /// Queues bytes built by `build` (given a new stream id if `new_stream`) and writes
    /// them, unless another caller is writing already: it takes these along.
    fn send(&self, new_stream: bool, build: impl FnOnce(&mut Vec<u8>, u32)) {
        let mut out = self.out.lock();
        let id = out.next_id;
        if new_stream {
            out.next_id += 2;
        }
        build(&mut out.buf, id);
        if out.flushing {
            return;
        }
        out.flushing = true;
        let mut spare = Vec::new();
        while !out.buf.is_empty() {
            std::mem::swap(&mut out.buf, &mut spare);
            drop(out);
            if (&self.sock).write_all(&spare).is_err() {
                self.dead.store(true, Ordering::Relaxed);
            }
            spare.clear();
            out = self.out.lock();
        }
        out.flushing = false;
    }

    fn call(&self, header_block: &[u8], message: &[u8]) -> Reply {
        let mut body = Vec::with_capacity(message.len() + 5);
        body.push(0);
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        {
            let mut window = self.send_window.lock();
            while *window < body.len() as i64 {
                if self.dead.load(Ordering::Relaxed) {
                    return Err("connection lost");
                }
                self.window_grown
                    .wait_for(&mut window, Duration::from_millis(100));
            }
            *window -= body.len() as i64;
        }
        // The reader answers every open stream when the connection dies; a stream opened
        // after that would only wait out its timeout.
        if self.dead.load(Ordering::Relaxed) {
            return Err("connection lost");
        }
        let slot = Arc::new(Slot {
            caller: thread::current(),
            reply: Mutex::new(None),
        });
        self.send(true, |buf, id| {
            self.streams.lock().insert(id, (slot.clone(), Vec::new()));
            frame(buf, HEADERS, END_HEADERS, id, header_block);
            frame(buf, DATA, END_STREAM, id, &body);
        });
        // The id is taken inside `send`, under the same lock as the write order.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(reply) = slot.reply.lock().take() {
                return reply;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out");
            }
            thread::park_timeout(left);
        }
    }

    /// Reads one whole header block of `stream` (every block, so that the dynamic table
    /// keeps step with the server's) and, if the stream ends with it, answers the caller:
    /// its message, if the server said `grpc-status: 0`. An undecodable block is an error
    /// of the whole connection.
    fn headers(
        &self,
        decoder: &mut hpack::Decoder,
        stream: u32,
        ends: bool,
        block: &[u8],
    ) -> Result<(), hpack::HpackError> {
        let mut ok = false;
        decoder.decode(block, |name, value| {
            if name == b"grpc-status" {
                ok = value == b"0";
            }
        })?;
        if ends {
            if let Some((slot, body)) = self.streams.lock().remove(&stream) {
                slot.fill(match (ok, body.len() > 5) {
                    (true, true) => Ok(body),
                    (true, false) => Err("no message"),
                    (false, _) => Err("grpc-status not 0"),
                });
            }
        }
        Ok(())
    }

    fn read_loop(&self) {
        let mut buf = vec![0u8; 256 << 10];
        let (mut start, mut end) = (0usize, 0usize);
        let mut unacked = 0u32;
        let mut decoder = hpack::Decoder::new();
        // A header block still arriving in CONTINUATION frames: stream, END_STREAM, bytes.
        let mut partial: Option<(u32, bool, Vec<u8>)> = None;
        'read: loop {
            if start == end {
                (start, end) = (0, 0);
            } else if end == buf.len() {
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            }
            match (&self.sock).read(&mut buf[end..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => end += n,
            }
            while end - start >= 9 {
                let mut h = [0u8; 9];
                h.copy_from_slice(&buf[start..start + 9]);
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                if 9 + len > buf.len() {
                    buf.resize(9 + len, 0);
                }
                if end - start < 9 + len {
                    break;
                }
                let (kind, flags) = (h[3], h[4]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                let payload = &buf[start + 9..start + 9 + len];
                start += 9 + len;
                match kind {
                    DATA => {
                        if let Some((_, body)) = self.streams.lock().get_mut(&stream) {
                            body.extend_from_slice(unpadded(payload, flags));
                        }
                        unacked += len as u32;
                        if unacked > WINDOW / 2 {
                            let increment = unacked.to_be_bytes();
                            self.send(false, |b, _| frame(b, WINDOW_UPDATE, 0, 0, &increment));
                            unacked = 0;
                        }
                    }
                    HEADERS => {
                        let mut block = unpadded(payload, flags);
                        if flags & PRIORITY != 0 {
                            block = block.get(5..).unwrap_or(&[]);
                        }
                        let ends = flags & END_STREAM != 0;
                        if flags & END_HEADERS == 0 {
                            partial = Some((stream, ends, block.to_vec()));
                        } else if self.headers(&mut decoder, stream, ends, block).is_err() {
                            break 'read;
                        }
                    }
                    CONTINUATION => {
                        let Some((id, ends, mut block)) = partial.take() else {
                            break 'read;
                        };
                        block.extend_from_slice(payload);
                        if flags & END_HEADERS == 0 {
                            partial = Some((id, ends, block));
                        } else if self.headers(&mut decoder, id, ends, &block).is_err() {
                            break 'read;
                        }
                    }
                    RST_STREAM => {
                        if let Some((slot, _)) = self.streams.lock().remove(&stream) {
                            slot.fill(Err("reset"));
                        }
                    }
                    SETTINGS if flags & ACK == 0 => {
                        self.send(false, |b, _| frame(b, SETTINGS, ACK, 0, &[]));
                    }
                    PING if flags & ACK == 0 => {
                        let data = payload.to_vec();
                        self.send(false, |b, _| frame(b, PING, ACK, 0, &data));
                    }
                    WINDOW_UPDATE if stream == 0 && len == 4 => {
                        let inc =
                            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                        *self.send_window.lock() += i64::from(inc & 0x7fff_ffff);
                        self.window_grown.notify_all();
                    }
                    GOAWAY => self.dead.store(true, Ordering::Relaxed),
                    _ => {}
                }
            }
        }
        self.dead.store(true, Ordering::Relaxed);
        for (_, (slot, _)) in self.streams.lock().drain() {
            slot.fill(Err("connection lost"));
        }
    }
}

/// A protobuf length-delimited field.
fn field(msg: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    msg.push(tag);
    let mut n = bytes.len();
    while n >= 0x80 {
        msg.push((n as u8) | 0x80);
        n >>= 7;
    }
    msg.push(n as u8);
    msg.extend_from_slice(bytes);
}

/// One workload over one connection: `op` is what a caller does per request.
pub struct Floor {
    conn: Arc<Conn>,
    block: Vec<u8>,
    workload: String,
    value: Vec<u8>,
}

impl Floor {
    /// Connects to `endpoint` (host:port) for `workload` (put, get, get-serializable, txn).
    pub fn open(endpoint: &str, workload: &str, value: Vec<u8>) -> Result<Floor, String> {
        let path = match workload {
            "put" => "/etcdserverpb.KV/Put",
            "get" | "get-serializable" => "/etcdserverpb.KV/Range",
            "txn" => "/etcdserverpb.KV/Txn",
            other => return Err(format!("unknown workload {other}")),
        };
        // One DATA frame per request, and the smallest frame a server may insist on.
        if value.len() > 16_000 {
            return Err("the floor sends values of up to 16,000 bytes".to_owned());
        }
        hpack::self_check()?;
        let conn = Conn::open(endpoint).map_err(|e| format!("{endpoint}: {e}"))?;
        Ok(Floor {
            conn,
            block: header_block(endpoint, path),
            workload: workload.to_owned(),
            value,
        })
    }

    /// The `n`th request, as `compare`'s driver numbers them; whether it succeeded.
    pub fn op(&self, n: usize) -> bool {
        let key = format!("bench/k/{}", n % KEYS);
        let mut msg = Vec::with_capacity(self.value.len() + 32);
        match self.workload.as_str() {
            "put" => {
                field(&mut msg, 0x0a, key.as_bytes());
                field(&mut msg, 0x12, &self.value);
            }
            "get" => field(&mut msg, 0x0a, key.as_bytes()),
            "get-serializable" => {
                field(&mut msg, 0x0a, key.as_bytes());
                msg.extend_from_slice(&[0x38, 0x01]); // serializable = true
            }
            _ => {
                // compare: version(key) > -1; success: put(key, value).
                let mut compare = vec![0x08, 0x01]; // result GREATER; target VERSION (0)
                field(&mut compare, 0x1a, key.as_bytes());
                compare.push(0x20); // version = -1, a ten-byte varint
                compare.extend_from_slice(&[0xff; 9]);
                compare.push(0x01);
                let mut put = Vec::new();
                field(&mut put, 0x0a, key.as_bytes());
                field(&mut put, 0x12, &self.value);
                let mut request_op = Vec::new();
                field(&mut request_op, 0x12, &put);
                field(&mut msg, 0x0a, &compare);
                field(&mut msg, 0x12, &request_op);
            }
        }
        self.conn.call(&self.block, &msg).is_ok()
    }
}
