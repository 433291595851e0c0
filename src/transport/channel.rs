//! Building grpcio channels: the one place that sets their options.

use std::ffi::CString;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use grpcio::{Channel, ChannelBuilder, EnvBuilder, Environment};

use super::connection::Connection;
use super::tls::Loaded;
use crate::time::clamp;

/// How a channel is built: the part of the client's settings the transport needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelConfig {
    /// The largest request sent and response accepted, in bytes.
    pub(crate) send_limit: i32,
    /// See `send_limit`.
    pub(crate) receive_limit: i32,
    /// HTTP/2 keepalive: the ping interval and how long a ping may go unanswered.
    pub(crate) keepalive: Option<(Duration, Duration)>,
    /// The first and the longest pause between two reconnection attempts.
    pub(crate) reconnect: (Duration, Duration),
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            send_limit: i32::MAX,
            receive_limit: i32::MAX,
            keepalive: None,
            reconnect: (Duration::from_millis(50), Duration::from_secs(1)),
        }
    }
}

impl ChannelConfig {
    fn channel(&self, env: &Arc<Environment>, target: &str, tls: Option<&Loaded>) -> Channel {
        let mut builder = ChannelBuilder::new(env.clone())
            // A connection of its own per client: gRPC would otherwise share connections
            // between clients, and closing one client would not close its sockets.
            .use_local_subchannel_pool(true)
            .max_send_message_len(self.send_limit)
            .max_receive_message_len(self.receive_limit)
            .initial_reconnect_backoff(clamp(self.reconnect.0))
            .max_reconnect_backoff(clamp(self.reconnect.1))
            // Two filters every call would pass through and this client has no use for,
            // measured at about a tenth of the client's CPU per call with 64 callers:
            // gRPC's retry filter (retries are decided in the call layer, where it is known
            // what is safe to repeat) and its idle filter (the probes keep every connection
            // busy, and a connection should live as long as its client).
            .enable_retry(false)
            .raw_cfg_int(
                CString::from(c"grpc.client_idle_timeout_ms"),
                i32::MAX, // gRPC's way of saying "never"
            );
        if let Some((interval, timeout)) = self.keepalive {
            let (interval, timeout) = (clamp(interval), clamp(timeout));
            // gRPC's C core otherwise sends at most one ping per 5 minutes while no data
            // flows, which would make the keepalive interval a dead letter.
            builder = builder
                .keepalive_time(interval)
                .keepalive_timeout(timeout)
                .keepalive_permit_without_calls(false)
                .http2_min_sent_ping_interval_without_data(interval)
                // And it stops pinging after two pings without data sent: an idle watch
                // or keepalive stream sends none, so its pings would stop. No limit.
                .http2_max_pings_without_data(0);
        }
        if let Some(tls) = tls {
            builder = secure(builder, tls);
        }
        builder.connect(target)
    }
}

/// The builder with TLS credentials, and the name certificates are checked against.
#[cfg(feature = "tls")]
fn secure(mut builder: ChannelBuilder, tls: &Loaded) -> ChannelBuilder {
    if let Some(name) = tls.server_name() {
        builder = builder.override_ssl_target(name);
    }
    builder.set_credentials(tls.credentials())
}

/// Without the `tls` feature there is no `Loaded` to come here with: `Tls::load` refuses
/// to make one, so TLS asked for is never silently plaintext.
#[cfg(not(feature = "tls"))]
fn secure(builder: ChannelBuilder, _: &Loaded) -> ChannelBuilder {
    builder
}

/// Opens connections to endpoints: a channel config, the TLS settings if any, and the
/// environment they run on.
#[derive(Clone)]
pub(crate) struct Connector {
    config: ChannelConfig,
    tls: Option<Arc<Loaded>>,
    env: Arc<Environment>,
}

impl Connector {
    /// A connector of plaintext connections.
    pub(crate) fn new(config: ChannelConfig, env: Arc<Environment>) -> Connector {
        Connector {
            config,
            tls: None,
            env,
        }
    }

    /// The same connector with TLS on every connection it opens.
    pub(crate) fn with_tls(mut self, tls: Loaded) -> Connector {
        self.tls = Some(Arc::new(tls));
        self
    }

    /// True if the connections are TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A connection to `target` (`host:port`); gRPC connects in the background.
    pub(crate) fn open(&self, target: &str) -> Connection {
        let channel = self.config.channel(&self.env, target, self.tls.as_deref());
        Connection::new(target, channel)
    }
}

/// grpcio's environment with `poll_threads` named poll threads (`<prefix>-0`, ...), and a
/// receiver that disconnects once every one of them has finished.
pub(crate) fn environment(poll_threads: usize, prefix: &str) -> (Arc<Environment>, Receiver<()>) {
    let (alive, stopped) = crossbeam_channel::bounded::<()>(0);
    // Each poll thread drops its copy of this closure as it exits, and `build` drops the
    // builder's copy: when the last one goes, `stopped` disconnects.
    let env = EnvBuilder::new()
        .cq_count(poll_threads)
        .name_prefix(prefix)
        .before_stop(move || {
            let _ = &alive;
        })
        .build();
    (Arc::new(env), stopped)
}
