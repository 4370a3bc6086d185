//! The upstream side of an exchange: get a connection (pooled or new), send the request,
//! stream its body, and read the response head, retrying once on a fresh connection when a
//! reused one turns out to be dead and the request is safe to repeat.

use super::body::{pump, BodyTracker, ClientSide, MinRate, PumpError, PumpTimeouts, Relay};
use super::Client;
use crate::pool::connect;
use crate::stream::Timed;
use crate::worker::WorkerCtx;
use proxy_core::config::{Config, Endpoint};
use proxy_core::http1::{find_head_end, parse_response, ResponseHead, Version};
use proxy_core::Status;
use std::io;
use std::time::Instant;

/// An upstream connection whose response head has arrived.
pub(super) struct Forwarded {
    pub(super) up: Timed,
    /// Holds the response head and whatever body bytes arrived with it.
    pub(super) ubuf: Vec<u8>,
    pub(super) head: ResponseHead,
}

/// Why forwarding failed before any response byte reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ForwardFail {
    /// Answer the client with this status (the connection closes if the request body was not
    /// fully read).
    Answer(Status),
    /// The client went away; nothing to answer.
    ClientGone,
}

/// Why no response head could be read.
pub(super) enum HeadError {
    /// The connection closed (or was reset) before a single byte: typical of a stale pooled
    /// connection, and safe to retry.
    ClosedEmpty,
    Timeout,
    Garbage,
}

/// Opens a new connection to `ep`, with the TLS handshake when its cluster talks TLS; both
/// within the connect timeout.
pub(super) async fn connect_upstream(
    ctx: &WorkerCtx,
    ep: &Endpoint,
    cfg: &Config,
) -> io::Result<Timed> {
    let deadline = Instant::now() + cfg.timeouts.upstream_connect;
    let mut conn = connect(ep.addr, cfg.timeouts.upstream_connect).await?;
    if let Some(tls) = ctx.endpoint_tls.get(ep.id).and_then(Option::as_ref) {
        conn.connect_tls(tls, deadline).await?;
    }
    Ok(conn)
}

/// An upstream connection to `ep`: a pooled one (only if `retryable`, when it may be stale),
/// else a new one. Returns it and whether it was reused, or the status to answer.
pub(super) async fn acquire(
    ctx: &WorkerCtx,
    cfg: &Config,
    ep: &Endpoint,
    retryable: bool,
    conn_id: u64,
) -> Result<(Timed, bool), Status> {
    if let Some(c) = ctx.upstreams.take(ep.id, Instant::now(), !retryable) {
        ctx.stats.upstream_reuses.inc();
        return Ok((c, true));
    }
    // Boxed: connecting (with a TLS handshake) is the rare path, and its future inline would
    // make every exchange's future, pooled connection or not, kilobytes larger.
    match Box::pin(connect_upstream(ctx, ep, cfg)).await {
        Ok(c) => {
            ctx.stats.upstream_connects.inc();
            Ok((c, false))
        }
        Err(e) => {
            ctx.stats.upstream_errors.inc();
            tracing::warn!(conn = conn_id, upstream = %ep.addr, error = %e, "upstream connect failed");
            Err(if e.kind() == io::ErrorKind::TimedOut {
                Status::GatewayTimeout
            } else {
                Status::BadGateway
            })
        }
    }
}

impl Client {
    /// Sends the request in `out` (head plus any body bytes already read) to `ep`, streams the
    /// rest of the body from `cbuf`/the client, and returns the upstream's response head.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        ep: &Endpoint,
        out: &mut Vec<u8>,
        cbuf: &mut Vec<u8>,
        body: &mut BodyTracker,
        retryable: bool,
        client_version: Version,
    ) -> Result<Forwarded, ForwardFail> {
        let stats = &ctx.stats;
        let mut retried = false;
        loop {
            let (mut up, reused) = acquire(ctx, cfg, ep, retryable, self.id)
                .await
                .map_err(ForwardFail::Answer)?;
            let may_retry = reused && retryable && !retried;

            let (res, o) = up
                .write_all(std::mem::take(out), cfg.timeouts.upstream_response)
                .await;
            *out = o;
            if let Err(e) = res {
                if may_retry {
                    retried = true;
                    stats.upstream_retries.inc();
                    continue;
                }
                stats.upstream_errors.inc();
                tracing::warn!(conn = self.id, upstream = %ep.addr, error = %e, "upstream write failed");
                return Err(ForwardFail::Answer(Status::BadGateway));
            }

            if !body.is_done() {
                let timeouts = PumpTimeouts {
                    src: cfg.timeouts.idle,
                    dst: cfg.timeouts.upstream_response,
                    client_rate: cfg
                        .limits
                        .min_client_rate
                        .map(|r| MinRate::new(ClientSide::Src, r, cfg.timeouts.header)),
                };
                ctx.upsize_for(cbuf, body);
                let limit = cfg.limits.max_body_bytes;
                // `out` went out above and serves as the scratch buffer for re-framing.
                let relay = if matches!(body, BodyTracker::Chunked(_)) {
                    Relay::Rechunk(out)
                } else {
                    Relay::Raw
                };
                let res = pump(&mut self.io, &mut up, cbuf, body, timeouts, limit, relay).await;
                ctx.downsize(cbuf);
                match res {
                    Ok(_) => {}
                    Err(PumpError::SrcClosed | PumpError::SrcIo) => {
                        return Err(ForwardFail::ClientGone)
                    }
                    Err(PumpError::SrcTimeout) => {
                        return Err(ForwardFail::Answer(Status::RequestTimeout))
                    }
                    Err(PumpError::Malformed) => {
                        return Err(ForwardFail::Answer(Status::BadRequest))
                    }
                    Err(PumpError::TooLarge) => {
                        return Err(ForwardFail::Answer(Status::PayloadTooLarge))
                    }
                    Err(PumpError::Dst) => {
                        stats.upstream_errors.inc();
                        tracing::warn!(conn = self.id, upstream = %ep.addr, "upstream failed while receiving the request body");
                        return Err(ForwardFail::Answer(Status::BadGateway));
                    }
                }
            }

            let mut ubuf = ctx.buffers.take();
            let interim = (client_version == Version::Http11).then_some(&mut self.io);
            match read_response_head(&mut up, &mut ubuf, cfg, interim).await {
                Ok(head) => return Ok(Forwarded { up, ubuf, head }),
                Err(HeadError::ClosedEmpty) if may_retry => {
                    ctx.buffers.give(ubuf);
                    retried = true;
                    stats.upstream_retries.inc();
                    tracing::debug!(conn = self.id, upstream = %ep.addr, "reused connection was closed; retrying on a new one");
                }
                Err(e) => {
                    ctx.buffers.give(ubuf);
                    stats.upstream_errors.inc();
                    let (status, what) = match e {
                        HeadError::Timeout => {
                            (Status::GatewayTimeout, "upstream response timed out")
                        }
                        HeadError::ClosedEmpty => {
                            (Status::BadGateway, "upstream closed without a response")
                        }
                        HeadError::Garbage => {
                            (Status::BadGateway, "upstream sent an invalid response")
                        }
                    };
                    tracing::warn!(conn = self.id, upstream = %ep.addr, "{what}");
                    return Err(ForwardFail::Answer(status));
                }
            }
        }
    }
}

/// Reads the final response head into `ubuf`. Interim 1xx responses other than 100 (which the
/// proxy answers itself) are passed on to `interim` (an HTTP/1.1 client), or else dropped.
pub(super) async fn read_response_head(
    up: &mut Timed,
    ubuf: &mut Vec<u8>,
    cfg: &Config,
    mut interim: Option<&mut Timed>,
) -> Result<ResponseHead, HeadError> {
    let started = Instant::now();
    let mut scanned = 0;
    loop {
        if find_head_end(ubuf, scanned).is_some() {
            // Only (status, length) of an interim response is kept across the write below,
            // so no parsed head is part of this future.
            let found = match parse_response(ubuf) {
                Ok(Some(head)) if head.is_interim() => (head.status, head.head_len),
                Ok(Some(head)) => return Ok(head),
                Ok(None) => (0, 0),
                Err(_) => return Err(HeadError::Garbage),
            };
            if let (status @ 100..=199, head_len) = found {
                if let (true, Some(client)) = (status != 100, interim.as_deref_mut()) {
                    let copy = ubuf[..head_len].to_vec();
                    let (res, _) = client.write_all(copy, cfg.timeouts.idle).await;
                    if res.is_err() {
                        return Err(HeadError::Garbage);
                    }
                }
                ubuf.drain(..head_len);
                scanned = 0;
                continue;
            }
        }
        scanned = ubuf.len();
        if ubuf.len() == ubuf.capacity() {
            return Err(HeadError::Garbage);
        }
        let left = cfg
            .timeouts
            .upstream_response
            .saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        let (res, b) = up.read_append(std::mem::take(ubuf), left).await;
        *ubuf = b;
        match res {
            Ok(0) if ubuf.is_empty() => return Err(HeadError::ClosedEmpty),
            Ok(0) => return Err(HeadError::Garbage),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(HeadError::Timeout),
            Err(_) if ubuf.is_empty() => return Err(HeadError::ClosedEmpty),
            Err(_) => return Err(HeadError::Garbage),
        }
    }
}
