//! The upstream side of an exchange: get a connection (pooled or new), send the request,
//! stream its body, and read the response head, retrying once on a fresh connection when a
//! reused one turns out to be dead and the request is safe to repeat.

use super::body::{
    pump, BodyTracker, ClientSide, MinRate, PumpError, PumpExtra, PumpTimeouts, Relay,
};
use super::retry::{Attempts, Failure};
use super::slots::Slot;
use super::Client;
use crate::pool::connect;
use crate::stream::Timed;
use crate::worker::WorkerCtx;
use proxy_core::config::{Config, Endpoint};
use proxy_core::http1::{find_head_end, parse_response, ResponseHead, Version};
use proxy_core::rewrite::replace_host;
use proxy_core::Status;
use std::io;
use std::time::Instant;

/// An upstream connection whose response head has arrived.
pub(super) struct Forwarded {
    pub(super) up: Timed,
    /// Holds the response head and whatever body bytes arrived with it.
    pub(super) ubuf: Vec<u8>,
    pub(super) head: ResponseHead,
    /// The circuit-breaker slot the exchange holds until its response is relayed.
    pub(super) slot: Option<Slot>,
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

/// Takes a slot of the circuit breaker of `ep`'s cluster, when it has one; the 503 to answer
/// when the endpoint is at its limit and its queue is full (or the wait timed out).
pub(super) async fn circuit_slot(
    ctx: &WorkerCtx,
    cfg: &Config,
    cluster: usize,
    ep: &Endpoint,
) -> Result<Option<Slot>, Status> {
    let circuit = cfg.clusters[cluster].circuit;
    let Some(cap) = circuit.max_connections else {
        return Ok(None);
    };
    let slots = ctx.slots[ep.id].clone();
    match slots
        .acquire(cap, circuit.max_pending, cfg.timeouts.upstream_connect)
        .await
    {
        Ok(slot) => Ok(Some(slot)),
        Err(why) => {
            if let Some(c) = ctx.lb.counters.clusters.get(cluster) {
                c.circuit_open.inc();
            }
            tracing::debug!(upstream = %ep.addr, ?why, "circuit breaker: no upstream slot");
            Err(Status::ServiceUnavailable)
        }
    }
}

/// Points the request head in `out` at `next` after a try on `prev` failed: its `Host` names
/// the endpoint when the client's is not preserved.
pub(super) fn retarget(ctx: &WorkerCtx, out: &mut Vec<u8>, prev: &Endpoint, next: &Endpoint) {
    if prev.id != next.id {
        replace_host(
            out,
            ctx.endpoint_authority(prev.id),
            ctx.endpoint_authority(next.id),
        );
    }
}

impl Client {
    /// Sends the request in `out` (head plus any body bytes already read) to the endpoint of
    /// `attempts`, streams the rest of the body from `cbuf`/the client, and returns the
    /// upstream's response head. Failures the cluster retries move the request to another
    /// endpoint (see [`Attempts::fail`]); a reused pooled connection found dead is retried once
    /// on a fresh connection to the same endpoint.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        attempts: &mut Attempts<'_>,
        out: &mut Vec<u8>,
        cbuf: &mut Vec<u8>,
        body: &mut BodyTracker,
        retryable: bool,
        client_version: Version,
    ) -> Result<Forwarded, ForwardFail> {
        let stats = &ctx.stats;
        let cluster = attempts.cluster();
        let mut stale_retried = false;
        let mut slot: Option<(usize, Option<Slot>)> = None;
        loop {
            let ep = attempts.ep;
            if slot.as_ref().is_none_or(|(id, _)| *id != ep.id) {
                // The previous endpoint's slot goes before this one's is waited for.
                drop(slot.take());
                match circuit_slot(ctx, cfg, cluster, &ep).await {
                    Ok(s) => slot = Some((ep.id, s)),
                    Err(status) => {
                        attempts.cancel();
                        return Err(ForwardFail::Answer(status));
                    }
                }
            }
            let (mut up, reused) = match acquire(ctx, cfg, &ep, retryable, self.id).await {
                Ok(c) => c,
                Err(status) => match attempts.fail(Failure::Connect, retryable) {
                    Some(next) => {
                        retarget(ctx, out, &ep, &next);
                        continue;
                    }
                    None => return Err(ForwardFail::Answer(status)),
                },
            };
            let may_retry_stale = reused && retryable && !stale_retried;

            let (res, o) = up
                .write_all(std::mem::take(out), cfg.timeouts.upstream_response)
                .await;
            *out = o;
            if let Err(e) = res {
                if may_retry_stale {
                    stale_retried = true;
                    stats.upstream_retries.inc();
                    continue;
                }
                stats.upstream_errors.inc();
                tracing::warn!(conn = self.id, upstream = %ep.addr, error = %e, "upstream write failed");
                if let Some(next) = attempts.fail(Failure::Reset, retryable) {
                    retarget(ctx, out, &ep, &next);
                    continue;
                }
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
                let extra = PumpExtra {
                    limit,
                    capture: None,
                };
                let res = pump(&mut self.io, &mut up, cbuf, body, timeouts, extra, relay).await;
                ctx.downsize(cbuf);
                let fail = match res {
                    Ok(_) => None,
                    Err(PumpError::SrcClosed | PumpError::SrcIo) => Some(ForwardFail::ClientGone),
                    Err(PumpError::SrcTimeout) => Some(ForwardFail::Answer(Status::RequestTimeout)),
                    Err(PumpError::Malformed) => Some(ForwardFail::Answer(Status::BadRequest)),
                    Err(PumpError::TooLarge) => Some(ForwardFail::Answer(Status::PayloadTooLarge)),
                    Err(PumpError::Dst) => {
                        stats.upstream_errors.inc();
                        tracing::warn!(conn = self.id, upstream = %ep.addr, "upstream failed while receiving the request body");
                        let _ = attempts.fail(Failure::Reset, false);
                        return Err(ForwardFail::Answer(Status::BadGateway));
                    }
                };
                if let Some(fail) = fail {
                    attempts.cancel();
                    return Err(fail);
                }
            }

            let mut ubuf = ctx.buffers.take();
            let interim = (client_version == Version::Http11).then_some(&mut self.io);
            let limit = attempts.try_timeout(cfg);
            let failure = match read_response_head(&mut up, &mut ubuf, limit, cfg, interim).await {
                Ok(head) if attempts.retries_status(head.status, retryable) => {
                    match attempts.fail(Failure::Status(head.status), retryable) {
                        Some(next) => {
                            // This response is dropped with its connection.
                            tracing::debug!(conn = self.id, upstream = %ep.addr, status = head.status, "retrying on another endpoint");
                            ctx.buffers.give(ubuf);
                            retarget(ctx, out, &ep, &next);
                            continue;
                        }
                        // No retry left: the client gets this response.
                        None => {
                            let slot = slot.and_then(|(_, s)| s);
                            return Ok(Forwarded {
                                up,
                                ubuf,
                                head,
                                slot,
                            });
                        }
                    }
                }
                Ok(head) => {
                    attempts.succeed(head.status);
                    let slot = slot.and_then(|(_, s)| s);
                    return Ok(Forwarded {
                        up,
                        ubuf,
                        head,
                        slot,
                    });
                }
                Err(HeadError::ClosedEmpty) if may_retry_stale => {
                    ctx.buffers.give(ubuf);
                    stale_retried = true;
                    stats.upstream_retries.inc();
                    tracing::debug!(conn = self.id, upstream = %ep.addr, "reused connection was closed; retrying on a new one");
                    continue;
                }
                Err(e) => {
                    stats.upstream_errors.inc();
                    let (failure, what) = match e {
                        HeadError::Timeout => (Failure::Timeout, "upstream response timed out"),
                        HeadError::ClosedEmpty => {
                            (Failure::Reset, "upstream closed without a response")
                        }
                        HeadError::Garbage => (Failure::Reset, "upstream sent an invalid response"),
                    };
                    tracing::warn!(conn = self.id, upstream = %ep.addr, "{what}");
                    failure
                }
            };
            ctx.buffers.give(ubuf);
            if let Some(next) = attempts.fail(failure, retryable) {
                retarget(ctx, out, &ep, &next);
                continue;
            }
            return Err(ForwardFail::Answer(if failure == Failure::Timeout {
                Status::GatewayTimeout
            } else {
                Status::BadGateway
            }));
        }
    }
}

/// Reads the final response head into `ubuf`. Interim 1xx responses other than 100 (which the
/// proxy answers itself) are passed on to `interim` (an HTTP/1.1 client), or else dropped.
pub(super) async fn read_response_head(
    up: &mut Timed,
    ubuf: &mut Vec<u8>,
    limit: std::time::Duration,
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
        let left = limit.saturating_sub(started.elapsed());
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
