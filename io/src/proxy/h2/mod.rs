//! HTTP/2 client connections: h2c by prior knowledge on plain listeners (the preface is sniffed
//! where an HTTP/1 request line would be), and `h2` over TLS when ALPN picks it.
//!
//! The `h2` library runs on monoio through its poll-io bridge: the connection's socket leaves
//! the ring's rent I/O for readiness-driven reads and writes (upstream sockets stay on rent I/O).
//! Every byte the client sends passes the flood guard first. One task per connection drives
//! `h2` (all frame I/O happens inside `poll_accept`), and every stream runs in a task of its
//! own: awaiting stream work inside the accept loop would flush each response alone.
//!
//! The connection task ends the connection on: the client closing or erring (h2 has sent the
//! GOAWAY its error calls for), a flood (GOAWAY ENHANCE_YOUR_CALM), the idle timeout with no
//! stream open (GOAWAY NO_ERROR), an unanswered keepalive PING, or a drain, where it sends
//! GOAWAY and lets the open streams finish.

mod answer;
mod caching;
mod h1;
mod io;
mod relay;
mod stream;
mod tls;
mod upstream;

pub(crate) use h1::H1Request;
pub(crate) use upstream::H2Upstream;

use super::{ActiveGuard, ClientTls, IpText};
use crate::stream::Timed;
use bytes::Bytes;
use io::{coalesce, Guarded, Prefixed};
use monoio::io::IntoPollIo;
use monoio::time::Sleep;
use proxy_core::h2::Flood;
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tls::TlsPoll;
use tokio::io::{AsyncRead, AsyncWrite};

/// The client connection preface (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every stream of a connection shares.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) ip: IpText,
    pub(super) tls: Option<Box<ClientTls>>,
    /// Stream tasks alive (including ones whose stream the client already reset).
    live: Cell<usize>,
    /// The connection task, woken when the last stream task ends.
    waker: RefCell<Option<Waker>>,
}

impl Conn {
    fn new(id: u64, ip: IpText, tls: Option<Box<ClientTls>>) -> Rc<Conn> {
        Rc::new(Conn {
            id,
            ip,
            tls,
            live: Cell::new(0),
            waker: RefCell::new(None),
        })
    }
}

/// Counts a stream task as alive for as long as it exists.
pub(super) struct Live(Rc<Conn>);

impl Live {
    fn new(conn: &Rc<Conn>) -> Live {
        conn.live.set(conn.live.get() + 1);
        Live(conn.clone())
    }

    pub(super) fn conn(&self) -> &Conn {
        &self.0
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let n = self.0.live.get() - 1;
        self.0.live.set(n);
        if n == 0 {
            if let Some(w) = self.0.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// Serves an h2c connection whose first bytes (`buf`, at least the preface) were read by the
/// HTTP/1 path.
pub(super) async fn serve_h2c(guard: ActiveGuard, io: Timed, buf: Vec<u8>, id: u64, ip: IpText) {
    let (stream, _) = io.into_parts();
    let Ok(poll) = stream.into_poll_io() else {
        tracing::debug!(conn = id, "cannot switch the socket to readiness I/O");
        return;
    };
    let fd = poll.as_raw_fd();
    drive(guard, Conn::new(id, ip, None), Prefixed::new(buf, poll), fd).await;
}

/// Serves a TLS connection whose handshake chose `h2`.
pub(super) async fn serve_tls(
    guard: ActiveGuard,
    io: Timed,
    id: u64,
    ip: IpText,
    tls: Box<ClientTls>,
) {
    let (stream, session) = io.into_parts();
    let Some(session) = session else { return };
    let Ok(poll) = stream.into_poll_io() else {
        tracing::debug!(conn = id, "cannot switch the socket to readiness I/O");
        return;
    };
    let fd = poll.as_raw_fd();
    drive(
        guard,
        Conn::new(id, ip, Some(tls)),
        TlsPoll::new(poll, *session),
        fd,
    )
    .await;
}

/// How a connection ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed, or every stream finished after GOAWAY.
    Closed,
    /// An HTTP/2 protocol error (h2 sent GOAWAY with its code).
    Error,
    /// A flood: GOAWAY(ENHANCE_YOUR_CALM).
    Flood(Flood),
    /// No stream for the idle timeout, or no PING answer.
    Idle,
}

/// A timer that can be disarmed.
#[derive(Default)]
struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    fn arm(&mut self, after: Duration) {
        self.0 = Some(Box::pin(monoio::time::sleep(after)));
    }

    fn disarm(&mut self) {
        self.0 = None;
    }

    fn is_armed(&self) -> bool {
        self.0.is_some()
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let fired = self
            .0
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready());
        if fired {
            self.0 = None;
        }
        fired
    }
}

/// Runs the HTTP/2 connection over `io` until it ends.
async fn drive<T>(guard: ActiveGuard, conn: Rc<Conn>, io: T, fd: RawFd)
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let ctx = guard.0.clone();
    let cfg = &ctx.config;
    let h = &cfg.http2;
    ctx.stats.h2_connections.inc();
    let flood = Rc::new(Cell::new(None));
    let (io, flusher) = coalesce(io);
    let io = Guarded::new(io, h.floods, flood.clone());
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(h.max_concurrent_streams)
        .max_header_list_size(h.max_header_list_size)
        .initial_window_size(h.initial_stream_window)
        .initial_connection_window_size(h.initial_connection_window)
        .max_send_buffer_size(h.max_send_buffer)
        .max_pending_accept_reset_streams(h.max_pending_resets)
        .max_local_error_reset_streams(Some(h.max_local_error_resets))
        .max_concurrent_reset_streams(h.max_concurrent_streams as usize * 4);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut h2conn = match monoio::time::timeout(cfg.timeouts.header, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(conn = conn.id, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(conn = conn.id, "HTTP/2 handshake timed out");
            return;
        }
    };
    let mut pings = h2conn.ping_pong();
    let mut idle = Timer::default();
    // Until the first stream, the header timeout applies (from the handshake on).
    idle.arm(cfg.timeouts.header.min(h.idle_timeout));
    let mut ping_timer = Timer::default();
    let mut ping_outstanding = false;
    if let Some(every) = h.ping_interval {
        ping_timer.arm(every);
    }
    let mut drain = std::pin::pin!(ctx.drain.wait());
    let mut draining = false;
    let end = poll_fn(|cx| loop {
        if let Some(f) = flood.get() {
            return Poll::Ready(End::Flood(f));
        }
        if !draining && drain.as_mut().poll(cx).is_ready() {
            draining = true;
            h2conn.graceful_shutdown();
        }
        match h2conn.poll_accept(cx) {
            Poll::Ready(Some(Ok((req, respond)))) => {
                idle.disarm();
                ctx.stats.h2_streams.inc();
                let live = Live::new(&conn);
                super::spawn_connection_task(stream::serve(ctx.clone(), live, req, respond));
                continue;
            }
            Poll::Ready(Some(Err(e))) => {
                if flood.get().is_none() {
                    tracing::debug!(conn = conn.id, error = %e, "HTTP/2 connection error");
                    return Poll::Ready(if e.is_io() { End::Closed } else { End::Error });
                }
                continue;
            }
            Poll::Ready(None) => return Poll::Ready(End::Closed),
            Poll::Pending => {}
        }
        if flood.get().is_some() {
            continue;
        }
        if conn.live.get() == 0 {
            if !idle.is_armed() {
                idle.arm(h.idle_timeout);
            }
            if idle.poll_fired(cx) {
                return Poll::Ready(End::Idle);
            }
        } else {
            idle.disarm();
            *conn.waker.borrow_mut() = Some(cx.waker().clone());
        }
        if let (Some(every), Some(pp)) = (h.ping_interval, pings.as_mut()) {
            if ping_outstanding {
                match pp.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        ping_outstanding = false;
                        ping_timer.arm(every);
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(End::Closed),
                    Poll::Pending => {}
                }
            }
            if ping_timer.poll_fired(cx) {
                if ping_outstanding {
                    return Poll::Ready(End::Idle);
                }
                if pp.send_ping(h2::Ping::opaque()).is_ok() {
                    ping_outstanding = true;
                    ping_timer.arm(h.ping_timeout);
                }
                continue;
            }
        }
        // h2 has done what it can: what it wrote during this run leaves in one write.
        if let Poll::Ready(Err(e)) = flusher.poll_flush(cx) {
            tracing::debug!(conn = conn.id, error = %e, "HTTP/2 write failed");
            return Poll::Ready(End::Closed);
        }
        return Poll::Pending;
    })
    .await;
    let reason = match end {
        End::Flood(Flood::NoSettingsFirst) => {
            tracing::debug!(conn = conn.id, "HTTP/2 preface not followed by SETTINGS");
            Some(h2::Reason::PROTOCOL_ERROR)
        }
        End::Flood(f) => {
            ctx.stats.h2_floods.inc();
            tracing::warn!(
                conn = conn.id,
                flood = f.as_str(),
                "HTTP/2 flood: GOAWAY(ENHANCE_YOUR_CALM)"
            );
            Some(h2::Reason::ENHANCE_YOUR_CALM)
        }
        End::Idle => Some(h2::Reason::NO_ERROR),
        End::Error | End::Closed => None,
    };
    if let Some(r) = reason {
        h2conn.abrupt_shutdown(r);
    }
    // Let h2 flush its GOAWAY (bounded), then read and drop what the client still sends for a
    // moment, so that closing with unread bytes does not reset the connection before the
    // client has read the GOAWAY.
    let _ =
        monoio::time::timeout(Duration::from_secs(1), poll_fn(|cx| h2conn.poll_closed(cx))).await;
    // After an error, a flood, an idle close or a drain, the client may still be sending
    // (WINDOW_UPDATEs for the last DATA, say): linger so that the close does not reset away
    // what it has not read yet.
    if end != End::Closed || draining {
        linger_close(fd).await;
    }
    drop(h2conn);
    tracing::trace!(conn = conn.id, end = ?end, "HTTP/2 connection closed");
    drop(guard);
}

/// Shuts down the write side and discards what the client sends for up to 500 ms or until it
/// closes, before the socket is closed.
async fn linger_close(fd: RawFd) {
    // SAFETY: `fd` is the connection's socket, still open (its owner is alive in the caller).
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    let until = Instant::now() + Duration::from_millis(500);
    let mut scratch = [0u8; 4096];
    while Instant::now() < until {
        loop {
            // SAFETY: reads into a valid local buffer of the stated length.
            let n = unsafe {
                libc::recv(
                    fd,
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                return;
            }
            if n < 0 {
                break;
            }
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::WouldBlock {
            return;
        }
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}
