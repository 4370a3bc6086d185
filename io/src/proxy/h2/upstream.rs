//! HTTP/2 towards upstreams (`protocol = "h2"` on a cluster), for HTTP/2 clients' streams: one
//! multiplexed connection per endpoint per worker (h2c by prior knowledge, or ALPN `h2` over
//! TLS), opened on first use and again after it ends. gRPC works through it: fields, bodies and
//! trailers pass both ways, `te: trailers` included.
//!
//! The forwarded request is the HTTP/1.1 head the rest of the pipeline wrote (forwarding fields,
//! Host policy, identity), turned into an HTTP/2 request here. Bodies move as `Bytes` from one
//! HTTP/2 stream to the other without copying; capacity is released to the sender only once the
//! receiver's window took the bytes, so a slow side slows the other instead of filling memory.

use super::relay::trailer_allowed;
use super::stream::{Outcome, Plan, Stream};
use crate::proxy::retry::{Attempts, Failure};
use crate::proxy::upstream::connect_upstream;
use crate::proxy::upstream::retarget;
use crate::worker::WorkerCtx;
use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::{HeaderName, HeaderValue, Request};
use monoio::io::IntoPollIo;
use proxy_core::config::Endpoint;
use proxy_core::h2::RequestBody;
use proxy_core::http1::parse_request;
use proxy_core::Status;
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// The largest HTTP/2 flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// One endpoint's HTTP/2 connection, per worker.
#[derive(Default)]
pub(crate) struct H2Upstream {
    state: RefCell<State>,
}

#[derive(Default)]
enum State {
    #[default]
    None,
    /// A stream is connecting; the others wait for it.
    Connecting(Vec<Waker>),
    /// Connected; the flag turns false when the connection ends.
    Ready(SendRequest<Bytes>, Rc<Cell<bool>>, Probe),
}

/// Puts the state back to `None` (waking the waiters) if a connect attempt is abandoned.
struct Attempt<'a>(&'a H2Upstream);

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.borrow_mut();
        if matches!(&*state, State::Connecting(_)) {
            if let State::Connecting(waiters) = std::mem::take(&mut *state) {
                drop(state);
                waiters.into_iter().for_each(Waker::wake);
            }
        }
    }
}

impl H2Upstream {
    /// A handle to send requests on, connecting first if needed.
    pub(crate) async fn sender(
        &self,
        ctx: &WorkerCtx,
        ep: &Endpoint,
    ) -> Result<SendRequest<Bytes>, Status> {
        loop {
            let should_connect = {
                let mut state = self.state.borrow_mut();
                match &mut *state {
                    State::Ready(send, alive, _) if alive.get() => return Ok(send.clone()),
                    State::Connecting(_) => false,
                    _ => {
                        *state = State::Connecting(Vec::new());
                        true
                    }
                }
            };
            if !should_connect {
                // Wait for the stream that is connecting, then look again.
                let mut registered = false;
                poll_fn(|cx| {
                    let mut state = self.state.borrow_mut();
                    match &mut *state {
                        State::Connecting(waiters) if !registered => {
                            waiters.push(cx.waker().clone());
                            registered = true;
                            Poll::Pending
                        }
                        State::Connecting(_) => Poll::Pending,
                        _ => Poll::Ready(()),
                    }
                })
                .await;
                continue;
            }
            let attempt = Attempt(self);
            let result = connect(ctx, ep).await;
            let mut state = self.state.borrow_mut();
            let waiters = match std::mem::take(&mut *state) {
                State::Connecting(w) => w,
                _ => Vec::new(),
            };
            let out = match result {
                Ok((send, alive, probe)) => {
                    *state = State::Ready(send.clone(), alive, probe);
                    Ok(send)
                }
                Err(status) => Err(status),
            };
            drop(state);
            std::mem::forget(attempt);
            waiters.into_iter().for_each(Waker::wake);
            return out;
        }
    }

    /// Checks the connection after a request timed out on it: a slow application upstream is
    /// no reason to drop a connection every other stream uses, but a connection that died
    /// silently (a NAT that forgot it) answers nothing at all. So it gets a PING; without an
    /// answer within `within`, the next request opens a new connection.
    pub(crate) fn suspect(&self, within: Duration) {
        let state = self.state.borrow();
        let State::Ready(_, alive, probe) = &*state else {
            return;
        };
        // One probe at a time: the PING handle is taken for its duration.
        let Some(mut pings) = probe.borrow_mut().take() else {
            return;
        };
        let (alive, probe) = (alive.clone(), probe.clone());
        crate::proxy::spawn_connection_task(async move {
            match monoio::time::timeout(within, pings.ping(h2::Ping::opaque())).await {
                Ok(Ok(_)) => *probe.borrow_mut() = Some(pings),
                _ => alive.set(false),
            }
        });
    }

    /// Forgets a connection that refused a request, so the next one reconnects.
    pub(crate) fn reset(&self) {
        let mut state = self.state.borrow_mut();
        if matches!(&*state, State::Ready(..)) {
            *state = State::None;
        }
    }
}

/// The PING handle of an upstream connection, while no probe is using it.
type Probe = Rc<RefCell<Option<h2::PingPong>>>;

/// Opens the HTTP/2 connection to `ep` and spawns the task that drives it.
async fn connect(
    ctx: &WorkerCtx,
    ep: &Endpoint,
) -> Result<(SendRequest<Bytes>, Rc<Cell<bool>>, Probe), Status> {
    let cfg = &ctx.config;
    let up = connect_upstream(ctx, ep, cfg).await.map_err(|e| {
        ctx.stats.upstream_errors.inc();
        tracing::warn!(upstream = %ep.addr, error = %e, "upstream connect failed");
        if e.kind() == std::io::ErrorKind::TimedOut {
            Status::GatewayTimeout
        } else {
            Status::BadGateway
        }
    })?;
    ctx.stats.upstream_connects.inc();
    let (stream, session) = up.into_parts();
    let poll = stream.into_poll_io().map_err(|_| Status::BadGateway)?;
    let h = &cfg.http2;
    let mut builder = h2::client::Builder::new();
    // The connection window is shared by every client's streams on this connection, and the
    // bytes of a stream whose client does not read stay counted against it: a connection
    // window of a few stream windows would let one slow client stall everyone's responses.
    // So it is as large as HTTP/2 allows; what the upstream may send ahead stays bounded per
    // stream (the stream window), and a client that stalls is reset after the stall limit.
    builder
        .initial_window_size(h.initial_stream_window)
        .initial_connection_window_size(MAX_WINDOW)
        .max_send_buffer_size(h.max_send_buffer)
        .max_header_list_size(h.max_header_list_size.max(64 * 1024))
        .enable_push(false);
    let alive = Rc::new(Cell::new(true));
    let probe: Probe = Rc::new(RefCell::new(None));
    let timeout = cfg.timeouts.upstream_connect;
    let handshake_failed = |e: String| {
        ctx.stats.upstream_errors.inc();
        tracing::warn!(upstream = %ep.addr, error = %e, "upstream HTTP/2 handshake failed");
        Status::BadGateway
    };
    let send = match session {
        Some(session) => {
            if session.conn.alpn_protocol() != Some(b"h2") {
                return Err(handshake_failed(
                    "the upstream did not choose h2 in ALPN".into(),
                ));
            }
            let io = super::tls::TlsPoll::new(poll, *session);
            let (send, mut conn) = monoio::time::timeout(timeout, builder.handshake(io))
                .await
                .map_err(|_| handshake_failed("timed out".into()))?
                .map_err(|e| handshake_failed(e.to_string()))?;
            *probe.borrow_mut() = conn.ping_pong();
            spawn_driver(conn, alive.clone(), ep);
            send
        }
        None => {
            let (send, mut conn) = monoio::time::timeout(timeout, builder.handshake(poll))
                .await
                .map_err(|_| handshake_failed("timed out".into()))?
                .map_err(|e| handshake_failed(e.to_string()))?;
            *probe.borrow_mut() = conn.ping_pong();
            spawn_driver(conn, alive.clone(), ep);
            send
        }
    };
    Ok((send, alive, probe))
}

fn spawn_driver<T>(conn: h2::client::Connection<T, Bytes>, alive: Rc<Cell<bool>>, ep: &Endpoint)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let addr = ep.addr;
    // Contained like a connection task: a panic in h2 loses this connection, not the worker.
    crate::proxy::spawn_connection_task(async move {
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "upstream HTTP/2 connection ended");
        }
        alive.set(false);
    });
}

/// Field names that are connection-specific and never sent on an HTTP/2 stream.
pub(super) fn connection_specific(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "host"
    )
}

/// The HTTP/2 request for the forwarded HTTP/1.1 head in `head`: Host becomes `:authority`.
pub(super) fn request_from_head(head: &[u8], tls: bool) -> Option<Request<()>> {
    let parsed = parse_request(head).ok()??;
    let host = parsed.host.map(|h| h.of(head))?;
    let uri = http::Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(host)
        .path_and_query(parsed.target.of(head))
        .build()
        .ok()?;
    let mut req = Request::builder()
        .method(parsed.method_span.of(head))
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(())
        .ok()?;
    let headers = req.headers_mut();
    for h in parsed.headers.as_slice() {
        let Ok(name) = HeaderName::from_bytes(h.name.of(head)) else {
            continue;
        };
        let value = h.value.of(head);
        if connection_specific(name.as_str())
            || (name == http::header::TE && !value.eq_ignore_ascii_case(b"trailers"))
        {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    Some(req)
}

/// Moves a body from one HTTP/2 stream to another: DATA as the receiver's window allows,
/// capacity released to the sender after each piece is taken, then the trailers (or an empty
/// END_STREAM). Returns the payload bytes moved. `from_client`: the trailers are a client's,
/// filtered as [`trailer_allowed`] says. `Err(true)`: the sending side failed;
/// `Err(false)`: the receiving side did; `limit` bounds the total.
pub(super) async fn pipe(
    src: &mut RecvStream,
    dst: &mut SendStream<Bytes>,
    idle: Duration,
    limit: Option<u64>,
    from_client: bool,
) -> Result<u64, PipeError> {
    let mut moved: u64 = 0;
    loop {
        // Waiting on the source also watches the destination, so a receiver that resets (or
        // whose connection closes) ends the pipe at once, not when the source next sends.
        let next = poll_fn(|cx| {
            if let Poll::Ready(d) = src.poll_data(cx) {
                return Poll::Ready(Some(d));
            }
            dst.poll_reset(cx).map(|_| None)
        });
        let mut data = match monoio::time::timeout(idle, next).await {
            Ok(None) => return Err(PipeError::Dst),
            Err(_) | Ok(Some(Some(Err(_)))) => return Err(PipeError::Src),
            Ok(Some(None)) => break,
            Ok(Some(Some(Ok(d)))) => d,
        };
        let n = data.len();
        moved += n as u64;
        if limit.is_some_and(|l| moved > l) {
            return Err(PipeError::TooLarge);
        }
        while !data.is_empty() {
            dst.reserve_capacity(data.len());
            let granted = monoio::time::timeout(idle, poll_fn(|cx| dst.poll_capacity(cx))).await;
            let k = match granted {
                Ok(Some(Ok(k))) => k.min(data.len()),
                _ => return Err(PipeError::Dst),
            };
            if k == 0 {
                continue;
            }
            dst.send_data(data.split_to(k), false)
                .map_err(|_| PipeError::Dst)?;
        }
        let _ = src.flow_control().release_capacity(n);
    }
    match poll_fn(|cx| src.poll_trailers(cx)).await {
        Ok(Some(mut trailers)) => {
            if from_client {
                let names: Vec<_> = trailers
                    .keys()
                    .filter(|n| !trailer_allowed(n.as_str()))
                    .cloned()
                    .collect();
                for n in names {
                    trailers.remove(n);
                }
            }
            dst.send_trailers(trailers)
        }
        Ok(None) => dst.send_data(Bytes::new(), true),
        Err(_) => return Err(PipeError::Src),
    }
    .map_err(|_| PipeError::Dst)?;
    Ok(moved)
}

/// Which side of a [`pipe`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PipeError {
    /// The stream bytes come from.
    Src,
    /// The stream bytes go to.
    Dst,
    /// The body passed the size limit.
    TooLarge,
}

impl Stream {
    /// Forwards the stream to an HTTP/2 cluster: the request (head in `out`) as an upstream
    /// stream, its body and the response both ways at once (gRPC streams in both directions).
    pub(super) async fn forward_h2(&mut self, plan: &Plan, mut body: RecvStream, out: Vec<u8>) {
        let ctx = self.ctx.clone();
        let cfg = &*ctx.config;
        // A connect failure moves the stream to another endpoint (nothing was sent yet).
        let mut attempts = Attempts::new(&ctx, plan.cluster, plan.ep, plan.keys.hash);
        let mut out = out;
        let has_body = plan.body != RequestBody::None;
        let mut retried = false;
        let (response, mut up_send) = loop {
            let ep = &attempts.ep;
            let tls = ctx.endpoint_tls.get(ep.id).is_some_and(Option::is_some);
            let upstream = &ctx.h2_upstreams[ep.id];
            let Some(req) = request_from_head(&out, tls) else {
                ctx.buffers.give(out);
                return self.answer(Status::BadGateway, Some(ep));
            };
            let mut sender = match self.unless_reset(upstream.sender(&ctx, ep)).await {
                None => return ctx.buffers.give(out),
                Some(Err(status)) => {
                    let prev = *ep;
                    if let Some(next) = attempts.fail(Failure::Connect, false) {
                        retarget(&ctx, &mut out, &prev, &next);
                        continue;
                    }
                    ctx.buffers.give(out);
                    return self.answer(status, Some(&prev));
                }
                Some(Ok(s)) => s,
            };
            // Waits while the upstream's concurrent-stream limit is reached.
            let ready = self
                .unless_reset(monoio::time::timeout(
                    cfg.timeouts.upstream_response,
                    poll_fn(|cx| sender.poll_ready(cx)),
                ))
                .await;
            let sent = match ready {
                None => return ctx.buffers.give(out),
                Some(Err(_)) => {
                    // No stream free for that long: the connection may be dead.
                    upstream.suspect(cfg.timeouts.upstream_connect);
                    let ep = *ep;
                    let _ = attempts.fail(Failure::Timeout, false);
                    ctx.buffers.give(out);
                    return self.answer(Status::GatewayTimeout, Some(&ep));
                }
                Some(Ok(Ok(()))) => sender.send_request(req, !has_body),
                Some(Ok(Err(e))) => Err(e),
            };
            match sent {
                Ok(pair) => break pair,
                // The connection went away between uses: once more on a new one.
                Err(e) if !retried => {
                    tracing::debug!(upstream = %ep.addr, error = %e, "upstream HTTP/2 connection unusable; reconnecting");
                    upstream.reset();
                    retried = true;
                    ctx.stats.upstream_retries.inc();
                }
                Err(e) => {
                    ctx.stats.upstream_errors.inc();
                    tracing::warn!(upstream = %ep.addr, error = %e, "upstream HTTP/2 request failed");
                    let ep = *ep;
                    let _ = attempts.fail(Failure::Reset, false);
                    ctx.buffers.give(out);
                    return self.answer(Status::BadGateway, Some(&ep));
                }
            }
        };
        let ep = attempts.ep;
        let ep = &ep;
        ctx.buffers.give(out);
        if plan.expect_continue {
            let mut go_on = http::Response::new(());
            *go_on.status_mut() = http::StatusCode::CONTINUE;
            let _ = self.respond.send_informational(go_on);
        }
        let idle = cfg.timeouts.idle;
        let limit = cfg.limits.max_body_bytes;
        let head_sent = Cell::new(false);
        let ended = {
            let request_side = async {
                if has_body {
                    pipe(&mut body, &mut up_send, idle, limit, true)
                        .await
                        .map(|_| ())
                } else {
                    Ok(())
                }
            };
            let mut request_side = pin!(request_side);
            let mut response_side = pin!(self.relay_h2_response(response, &head_sent, ep));
            let mut request_done = false;
            poll_fn(|cx| {
                if !request_done {
                    if let Poll::Ready(r) = request_side.as_mut().poll(cx) {
                        request_done = true;
                        match r {
                            // The client went away, or sent too much: stop the whole exchange.
                            Err(e @ (PipeError::Src | PipeError::TooLarge)) => {
                                return Poll::Ready(Err(e))
                            }
                            // The upstream stopped reading: its response says why.
                            Ok(()) | Err(PipeError::Dst) => {}
                        }
                    }
                }
                response_side.as_mut().poll(cx).map(Ok)
            })
            .await
        };
        match ended {
            Ok(outcome) => {
                attempts.succeed(outcome.status);
                self.log(&outcome, Some(ep));
            }
            Err(PipeError::TooLarge) if !head_sent.get() => {
                self.answer(Status::PayloadTooLarge, Some(ep))
            }
            Err(_) => {
                if !head_sent.get() {
                    self.respond.send_reset(h2::Reason::CANCEL);
                }
            }
        }
    }

    /// Waits for the upstream's response head, sends it on, and pipes the body and trailers.
    async fn relay_h2_response(
        &mut self,
        response: ResponseFuture,
        head_sent: &Cell<bool>,
        ep: &Endpoint,
    ) -> Outcome {
        let ctx = self.ctx.clone();
        let cfg = &*ctx.config;
        let failed = |status: Status| Outcome {
            status: status.code(),
            bytes: 0,
        };
        let waited = self
            .unless_reset(monoio::time::timeout(
                cfg.timeouts.upstream_response,
                response,
            ))
            .await;
        let Some(waited) = waited else {
            // The client reset the stream or went away: dropping the upstream stream resets it.
            // Logged as 499, nginx's "client closed request".
            return Outcome {
                status: 499,
                bytes: 0,
            };
        };
        let resp = match waited {
            Err(_) => {
                ctx.stats.upstream_errors.inc();
                // The connection may be dead, or the application just slow: ask it.
                ctx.h2_upstreams[ep.id].suspect(cfg.timeouts.upstream_connect);
                self.answer_quietly(Status::GatewayTimeout);
                return failed(Status::GatewayTimeout);
            }
            Ok(Err(e)) => {
                ctx.stats.upstream_errors.inc();
                tracing::warn!(upstream = %ep.addr, error = %e, "upstream HTTP/2 stream failed before its response head");
                self.answer_quietly(Status::BadGateway);
                return failed(Status::BadGateway);
            }
            Ok(Ok(r)) => r,
        };
        let (parts, mut upbody) = resp.into_parts();
        let mut headers = http::HeaderMap::with_capacity(parts.headers.len() + 1);
        for (name, value) in &parts.headers {
            if !connection_specific(name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        self.add_hsts(&mut headers);
        let mut head = http::Response::new(());
        *head.status_mut() = parts.status;
        *head.headers_mut() = headers;
        let end = upbody.is_end_stream();
        let Ok(mut send) = self.respond.send_response(head, end) else {
            return failed(Status::BadGateway);
        };
        head_sent.set(true);
        let status = parts.status.as_u16();
        ctx.stats.count_response(status);
        let mut outcome = Outcome { status, bytes: 0 };
        if !end {
            match pipe(
                &mut upbody,
                &mut send,
                cfg.timeouts.upstream_response,
                None,
                false,
            )
            .await
            {
                Ok(n) => outcome.bytes = n,
                Err(PipeError::Src) => {
                    ctx.stats.upstream_errors.inc();
                    tracing::warn!(upstream = %ep.addr, "upstream HTTP/2 stream failed mid-response; resetting the stream");
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                }
                Err(_) => {}
            }
        }
        outcome
    }
}
