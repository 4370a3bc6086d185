//! The client connection driver: reads request heads, asks `proxy-core` what they mean,
//! forwards them upstream and streams the answers back, one exchange after another.
//!
//! Per connection the order is fixed: wait for bytes (holding no buffer while idle), read and
//! parse one head, route, forward, stream the response, then either loop (keep-alive, with any
//! pipelined bytes kept) or close. Responses therefore leave in request order. Every failure has
//! an answer: a canned status before the response head has gone out, a close after.

mod answers;
mod body;
mod cache_fill;
mod cache_serve;
mod cached;
mod compressing;

pub(crate) use body::{write_hex, BodyTracker};
pub(crate) use guard::spawn_connection_task;
pub(crate) use h2::H2Upstream;
pub(crate) use slots::Slots;
mod exchange;
mod guard;
mod h2;
mod retry;
mod slots;
mod tunnel;
mod upstream;

use crate::stream::{Timed, Wake};
use crate::tls::{AcceptFail, Handshake, WorkerTls};
use crate::worker::WorkerCtx;
use monoio::net::TcpStream;
use proxy_core::config::Config;
use proxy_core::http1::{find_head_end, parse_request, RequestHead};
use proxy_core::Status;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a connection that just finished an exchange keeps its read buffer while waiting for
/// the next request. Under load the next request arrives within this window and is read with a
/// single operation; past it, the buffer goes back to the pool and the connection waits for
/// readiness holding nothing (so 10,000 idle connections pin no buffers).
const LINGER: Duration = Duration::from_millis(10);

/// What to do after an exchange.
pub(crate) enum Next {
    /// Read the next request on this connection.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Splice the connection to this upstream connection byte for byte (after a 101).
    Tunnel(Timed),
    /// The client sent the HTTP/2 preface (h2c by prior knowledge): serve it as HTTP/2.
    H2,
}

/// A client connection.
pub(crate) struct Client {
    io: Timed,
    /// Bytes read but not yet consumed; `None` while idle.
    buf: Option<Vec<u8>>,
    ip: IpText,
    id: u64,
    served: u64,
    /// `METHOD target HTTP/1.x` of the current request, kept only when the access log is on.
    request_line: Vec<u8>,
    /// When the first request head must be complete: the header timeout counts from accept,
    /// not from the first byte, so a client cannot spend it twice (once silent, once
    /// trickling). Later heads get the header timeout from their first byte.
    first_head_deadline: Option<Instant>,
    /// The listener's TLS state, and once the handshake is done, what it established.
    /// Boxed: a plain connection pays one pointer for it.
    tls: Option<Box<ClientTls>>,
    /// The listener serves HTTP/2 (h2c when plain, ALPN `h2` when TLS).
    http2: bool,
}

/// TLS facts of a client connection.
struct ClientTls {
    listener: Rc<WorkerTls>,
    handshake: Option<Handshake>,
}

/// Keeps a worker's active-connection count right however a connection's task ends
/// (including being dropped with the runtime). It travels with the connection from task to task.
pub(crate) struct ActiveGuard(pub(crate) Rc<WorkerCtx>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Serves a new client connection: parks it until its first bytes arrive. Not itself `async`,
/// so the connection's task is just the small parking future (an `async fn` here would nest it
/// in a state twice its size).
pub(crate) fn serve(
    guard: ActiveGuard,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    tls: Option<Rc<WorkerTls>>,
    http2: bool,
) -> impl std::future::Future<Output = ()> {
    let client = Client {
        io: Timed::new(stream),
        buf: None,
        ip: IpText::new(peer.ip()),
        id,
        served: 0,
        request_line: Vec::new(),
        first_head_deadline: None,
        tls: tls.map(|listener| {
            Box::new(ClientTls {
                listener,
                handshake: None,
            })
        }),
        http2,
    };
    tracing::trace!(conn = id, %peer, "accepted");
    park(guard, client, Duration::ZERO)
}

/// Serves requests on `client` until it closes, goes idle, or becomes a tunnel.
///
/// A connection idle for longer than [`LINGER`] is handed to a small parking task that waits
/// for readiness and then spawns a fresh `run`. The exchange machinery (several kilobytes of
/// future state) therefore exists only while a connection is busy; a parked connection costs
/// about one kilobyte. A hot keep-alive connection never parks, so it never allocates a task.
///
/// `woken`: the connection comes from [`park`] and is readable, so its first head read needs no
/// linger.
async fn run(guard: ActiveGuard, mut client: Client, mut woken: bool) {
    let ctx = &*guard.0;
    let cfg: &Config = &ctx.config;
    loop {
        if std::mem::take(&mut woken) {
            // `exchange` reads the head, with the header timeout.
        } else if client.buf.as_ref().is_none_or(Vec::is_empty) {
            match client.linger(ctx, cfg).await {
                Linger::Request => {}
                Linger::Close => break,
                Linger::Idle => {
                    guard::spawn_connection_task(park(guard, client, LINGER));
                    return;
                }
            }
        }
        match client.exchange(ctx, cfg).await {
            Next::KeepAlive => client.served += 1,
            Next::Close => break,
            Next::H2 => {
                let buf = client.buf.take().unwrap_or_default();
                guard::spawn_connection_task(h2::serve_h2c(
                    guard, client.io, buf, client.id, client.ip,
                ));
                return;
            }
            Next::Tunnel(upstream) => {
                let leftover = client.buf.take().unwrap_or_default();
                if client.io.tls.is_some() || upstream.tls.is_some() {
                    tunnel::run_tls(ctx, client.io, upstream, leftover, cfg.timeouts.idle).await;
                } else {
                    tunnel::run(ctx, client.io, upstream, leftover, cfg.timeouts.idle).await;
                }
                return;
            }
        }
    }
    if let Some(b) = client.buf.take() {
        ctx.buffers.give(b);
    }
    if client.io.tls.is_some() {
        // close_notify tells a TLS client that a body delimited by the close is complete,
        // not cut short.
        client.io.shutdown_write().await;
    }
    tracing::trace!(conn = client.id, "closed");
}

/// Waits, holding no buffer, timer or exchange state, for a connection's next request
/// (`waited` of its idle allowance is already used); then serves it in a new task. Closes the
/// connection on the idle (or, before the first request, header) timeout, or when the worker
/// drains. New connections start here, so one that never sends anything costs only this small
/// task, its socket and a slot in the worker's [`IdleClock`](crate::idle::IdleClock).
async fn park(guard: ActiveGuard, mut client: Client, waited: Duration) {
    let ctx = &*guard.0;
    let deadline = Instant::now() + client.idle_limit(&ctx.config).saturating_sub(waited);
    if client.served == 0 && client.first_head_deadline.is_none() {
        client.first_head_deadline = Some(deadline);
    }
    client.io.release();
    if client
        .io
        .wait_readable(&ctx.idle, deadline, &ctx.drain)
        .await
        != Wake::Readable
    {
        tracing::trace!(conn = client.id, "idle connection closed");
        return;
    }
    if client.tls.as_ref().is_some_and(|t| t.handshake.is_none()) {
        guard::spawn_connection_task(shake_hands(guard, client));
    } else {
        guard::spawn_connection_task(run(guard, client, true));
    }
}

/// Completes a new connection's TLS handshake in a task of its own, then serves it. The
/// exchange machinery is not part of this task's future, so a client that stalls mid-handshake
/// costs the handshake state and little else.
async fn shake_hands(guard: ActiveGuard, mut client: Client) {
    if client.handshake(&guard.0).await {
        let h2 = client
            .tls
            .as_ref()
            .and_then(|t| t.handshake.as_ref())
            .is_some_and(|h| h.h2);
        // Only an HTTP/2 connection gives up its TLS facts (to the HTTP/2 task).
        if h2 {
            if let Some(tls) = client.tls.take() {
                guard::spawn_connection_task(h2::serve_tls(
                    guard, client.io, client.id, client.ip, tls,
                ));
                return;
            }
        }
        // The request may have come with the handshake's last flight, or may be on its way.
        let woken = client.io.has_buffered();
        guard::spawn_connection_task(run(guard, client, woken));
    }
}

/// How the wait for the next request ended.
enum Linger {
    /// Bytes of a request arrived.
    Request,
    /// Nothing yet: park the connection.
    Idle,
    /// The peer closed, the wait timed out, or the worker is draining.
    Close,
}

/// Answers a connection over the worker's limit with 503 and closes it.
pub(crate) async fn refuse(ctx: Rc<WorkerCtx>, stream: TcpStream) {
    let mut io = Timed::new(stream);
    let (_res, _) = io
        .write_all(
            Status::ServiceUnavailable.response(true),
            Duration::from_secs(1),
        )
        .await;
    ctx.stats.count_response(503);
}

/// Why no request head could be read.
enum HeadFail {
    /// The client closed or went quiet before sending anything worth answering.
    Closed,
    /// The client sent something that gets this status, then a close.
    Reject(Status),
    /// The client sent the HTTP/2 connection preface.
    H2,
}

impl Client {
    /// Completes the TLS handshake of a new connection. Returns false when the connection is
    /// done for (the handshake failed, timed out, or the client spoke plain HTTP and was told).
    async fn handshake(&mut self, ctx: &WorkerCtx) -> bool {
        let Some(tls) = &self.tls else { return true };
        let listener = tls.listener.clone();
        let deadline = Instant::now() + listener.shared.settings().handshake_timeout;
        match self.io.accept_tls(&listener, deadline).await {
            Ok(h) => {
                ctx.stats.tls_handshakes.inc();
                if h.resumed {
                    ctx.stats.tls_resumed.inc();
                }
                tracing::trace!(conn = self.id, sni = ?h.sni, resumed = h.resumed, "TLS established");
                if let Some(t) = &mut self.tls {
                    t.handshake = Some(h);
                }
                true
            }
            Err(fail) => {
                ctx.stats.tls_handshake_errors.inc();
                match fail {
                    AcceptFail::PlainHttp => {
                        let bytes = Status::PlainHttpOnTlsPort.response(true);
                        let _ = self.io.write_all(bytes, Duration::from_secs(1)).await;
                        ctx.stats.count_response(400);
                        ctx.stats.bad_requests.inc();
                        tracing::debug!(conn = self.id, "plain HTTP on a TLS port");
                    }
                    AcceptFail::Tls(reason) => {
                        tracing::debug!(conn = self.id, %reason, "TLS handshake failed");
                    }
                    other => {
                        tracing::debug!(conn = self.id, reason = ?other, "TLS handshake failed")
                    }
                }
                false
            }
        }
    }

    /// How long this connection may wait for its next request: the header timeout before the
    /// first request, the idle timeout between requests.
    fn idle_limit(&self, cfg: &Config) -> Duration {
        if self.served == 0 {
            cfg.timeouts.header
        } else {
            cfg.timeouts.idle
        }
    }

    /// Waits up to [`LINGER`] for the next request, holding a read buffer so that a request
    /// arriving soon (the common case under load) costs a single read.
    async fn linger(&mut self, ctx: &WorkerCtx, cfg: &Config) -> Linger {
        let total = self.idle_limit(cfg);
        let linger = total.min(LINGER);
        let buf = self.buf.take().unwrap_or_else(|| ctx.buffers.take());
        let (res, buf) = self.io.read_append_or_drain(buf, linger, &ctx.drain).await;
        match res {
            Ok(n) if n > 0 => {
                self.buf = Some(buf);
                Linger::Request
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut && total > linger => {
                ctx.buffers.give(buf);
                Linger::Idle
            }
            _ => {
                ctx.buffers.give(buf);
                Linger::Close
            }
        }
    }

    /// Reads until a whole request head is buffered and parses it.
    async fn read_head(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
    ) -> Result<(RequestHead, Vec<u8>), HeadFail> {
        let deadline = self
            .first_head_deadline
            .take()
            .unwrap_or_else(|| Instant::now() + cfg.timeouts.header);
        let mut buf = self.buf.take().unwrap_or_else(|| ctx.buffers.take());
        let mut scanned = 0;
        // h2c by prior knowledge: the preface comes where the first request line would. It is
        // checked before the head parser, which would take `PRI * HTTP/2.0` for a head.
        let mut sniff = self.http2 && self.tls.is_none() && self.served == 0;
        loop {
            if sniff {
                let k = buf.len().min(h2::PREFACE.len());
                if buf[..k] != h2::PREFACE[..k] {
                    sniff = false;
                } else if k == h2::PREFACE.len() {
                    self.buf = Some(buf);
                    return Err(HeadFail::H2);
                }
            }
            if !sniff && find_head_end(&buf, scanned).is_some() {
                match parse_request(&buf) {
                    Ok(Some(head)) => return Ok((head, buf)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(conn = self.id, reason = e.as_str(), "bad request");
                        self.buf = Some(buf);
                        return Err(HeadFail::Reject(e.status()));
                    }
                }
            }
            scanned = buf.len();
            if buf.len() >= cfg.limits.max_header_bytes {
                // Not even the request line fits: the target is what is too long.
                let status = if buf.contains(&b'\n') {
                    Status::HeaderFieldsTooLarge
                } else {
                    Status::UriTooLong
                };
                self.buf = Some(buf);
                return Err(HeadFail::Reject(status));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.buf = Some(buf);
                return Err(HeadFail::Reject(Status::RequestTimeout));
            }
            let (res, b) = self.io.read_append(buf, left).await;
            buf = b;
            match res {
                Ok(0) => {
                    self.buf = Some(buf);
                    return Err(HeadFail::Closed);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    self.buf = Some(buf);
                    return Err(HeadFail::Reject(Status::RequestTimeout));
                }
                Err(_) => {
                    self.buf = Some(buf);
                    return Err(HeadFail::Closed);
                }
            }
        }
    }

    /// Sends a canned response for `status`. With `close`, the connection closes afterwards.
    async fn send_status(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        status: Status,
        close: bool,
    ) -> u64 {
        let bytes = status.response(close);
        let (res, _) = self.io.write_all(bytes, cfg.timeouts.idle).await;
        ctx.stats.count_response(status.code());
        if status.code() < 500 {
            ctx.stats.bad_requests.inc();
        }
        if res.is_err() {
            0
        } else {
            bytes.len() as u64
        }
    }
}

/// An IP address in text form, formatted once per connection.
struct IpText {
    bytes: [u8; 46],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> IpText {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let mut bytes = [0u8; 46];
        let mut w = &mut bytes[..];
        let _ = write!(w, "{ip}");
        let len = 46 - w.len();
        IpText { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
