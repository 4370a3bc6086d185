//! Bodies between an HTTP/2 stream and an HTTP/1.1 upstream connection.
//!
//! Request bodies: each DATA payload is written upstream (chunk-framed when the client gave no
//! length) and only then released to the client's flow-control window, so a slow upstream
//! slows the client instead of filling Ringway's memory. Request trailers end a chunked body.
//!
//! Response bodies: read from the upstream, sent as DATA as the client's window and the
//! stream's send buffer allow (`max_send_buffer` bounds what waits per stream); a chunked
//! upstream body is decoded, and its trailers become HTTP/2 trailers.

use super::upstream::connection_specific;
use crate::proxy::{write_hex, BodyTracker};
use crate::stream::Timed;
use crate::worker::WorkerCtx;
use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue};
use proxy_core::compress::Encoder;
use std::future::poll_fn;
use std::io;

/// Why a body relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RelayError {
    /// The client reset the stream, went away, or stopped reading for too long.
    Client,
    /// The upstream failed, timed out or sent a broken body.
    Upstream,
    /// The request body grew past `limits.max_body_bytes`.
    TooLarge,
    /// The client sent its body slower than `limits.min_client_rate`.
    TooSlow,
}

/// Writes `bytes` as a chunk-size line into `out`.
fn chunk_line(out: &mut Vec<u8>, n: usize) {
    write_hex(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Whether a trailer field may be passed on. Fields that frame, route or vouch for the message
/// never travel as trailers: an upstream that merges trailers into the head would otherwise
/// take a client's `X-Forwarded-For`, `Host` or (named like Ringway's identity field, which
/// Ringway strips from heads) a forged certificate subject at face value. Only fields with no
/// such meaning (`grpc-status`, checksums, …) pass.
pub(super) fn trailer_allowed(name: &str) -> bool {
    !(connection_specific(name)
        || matches!(
            name,
            "te" | "trailer" | "content-length" | "forwarded" | "via" | "authorization" | "cookie"
        )
        || name.starts_with("x-client-")
        || name.starts_with("x-ssl-")
        || name.starts_with("x-forwarded-"))
}

/// Appends the last chunk of a chunked body: `0`, the trailer fields, the blank line.
pub(super) fn last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        if !trailer_allowed(name.as_str()) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How long to wait for the next piece of a request body, `total` bytes in since `started`: the
/// idle timeout, shortened so that the client averages at least `min_client_rate` after the
/// grace of `timeouts.header`, as an HTTP/1 upload must. (A slow uploader holds an upstream
/// connection and, for HTTP/2, one of the endpoint's slots.)
fn upload_deadline(
    ctx: &WorkerCtx,
    started: std::time::Instant,
    total: u64,
) -> std::time::Duration {
    let cfg = &ctx.config;
    let Some(rate) = cfg.limits.min_client_rate else {
        return cfg.timeouts.idle;
    };
    let owed =
        cfg.timeouts.header + std::time::Duration::from_secs_f64((total + 1) as f64 / rate as f64);
    owed.saturating_sub(started.elapsed())
        .min(cfg.timeouts.idle)
        .max(std::time::Duration::from_millis(1))
}

/// Relays the request body from `body` to `up`; `scratch` is a buffer to frame into.
pub(super) async fn request_body(
    ctx: &WorkerCtx,
    body: &mut RecvStream,
    up: &mut Timed,
    chunked: bool,
    limit: Option<u64>,
    scratch: &mut Vec<u8>,
) -> Result<(), RelayError> {
    let cfg = &ctx.config;
    let mut total: u64 = 0;
    let started = std::time::Instant::now();
    loop {
        let wait = upload_deadline(ctx, started, total);
        let data = match monoio::time::timeout(wait, body.data()).await {
            Err(_) => return Err(RelayError::TooSlow),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(RelayError::Client),
            Ok(Some(Ok(d))) => d,
        };
        let n = data.len();
        total += n as u64;
        if limit.is_some_and(|l| total > l) {
            return Err(RelayError::TooLarge);
        }
        if n == 0 {
            continue;
        }
        let res = if chunked {
            scratch.clear();
            chunk_line(scratch, n);
            scratch.extend_from_slice(&data);
            scratch.extend_from_slice(b"\r\n");
            let (res, s) = up
                .write_all(std::mem::take(scratch), cfg.timeouts.upstream_response)
                .await;
            *scratch = s;
            res
        } else {
            up.write_all(data, cfg.timeouts.upstream_response).await.0
        };
        if res.is_err() {
            return Err(RelayError::Upstream);
        }
        // Released only now: the client may send more once the upstream took this.
        let _ = body.flow_control().release_capacity(n);
    }
    if chunked {
        scratch.clear();
        let trailers = poll_fn(|cx| body.poll_trailers(cx)).await.ok().flatten();
        last_chunk(scratch, trailers.as_ref());
        let (res, s) = up
            .write_all(std::mem::take(scratch), cfg.timeouts.upstream_response)
            .await;
        *scratch = s;
        res.map_err(|_| RelayError::Upstream)?;
    }
    Ok(())
}

/// How long a stream may wait for the client to open its window while an upstream connection
/// waits on it. With a minimum client rate (the default), the rate's grace period: a reader that
/// takes nothing for that long is under any rate, as over HTTP/1, and is reset so the upstream
/// connection is freed for others. Without one, the idle timeout.
pub(super) fn stall_limit(ctx: &WorkerCtx) -> std::time::Duration {
    let cfg = &ctx.config;
    if cfg.limits.min_client_rate.is_some() {
        cfg.timeouts.header
    } else {
        cfg.timeouts.idle
    }
}

/// Sends `data` on `send` as the receiver's window allows, waiting at most `stall` for it to
/// open; `end` ends the stream with the last byte (or with an empty frame when `data` is empty).
pub(super) async fn send_all(
    stall: std::time::Duration,
    send: &mut SendStream<Bytes>,
    mut data: &[u8],
    end: bool,
) -> Result<(), RelayError> {
    if data.is_empty() {
        return if end {
            send.send_data(Bytes::new(), true)
                .map_err(|_| RelayError::Client)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = monoio::time::timeout(stall, poll_fn(|cx| send.poll_capacity(cx))).await;
        let n = match granted {
            Ok(Some(Ok(n))) => n.min(data.len()),
            _ => return Err(RelayError::Client),
        };
        if n == 0 {
            continue;
        }
        let last = n == data.len();
        send.send_data(Bytes::copy_from_slice(&data[..n]), end && last)
            .map_err(|_| RelayError::Client)?;
        data = &data[n..];
    }
    Ok(())
}

/// Reads more of the upstream's body into `ubuf`; `Ok(0)` is the upstream closing.
async fn fill(ctx: &WorkerCtx, up: &mut Timed, ubuf: &mut Vec<u8>) -> io::Result<usize> {
    if ubuf.capacity() == ubuf.len() {
        ubuf.reserve(16 * 1024);
    }
    let (res, b) = up
        .read_append(std::mem::take(ubuf), ctx.config.timeouts.upstream_response)
        .await;
    *ubuf = b;
    res
}

/// Relays the response body from `up` (whose first bytes are in `ubuf`) to `send`, framed as
/// `tracker` says. Returns the payload bytes sent; on success `ubuf` holds whatever followed
/// the body (nothing, for a connection fit to pool).
pub(super) async fn response_body(
    ctx: &WorkerCtx,
    up: &mut Timed,
    ubuf: &mut Vec<u8>,
    send: &mut SendStream<Bytes>,
    tracker: &mut BodyTracker,
    mut capture: Option<&mut crate::proxy::cache_fill::Capture>,
    mut coder: Option<Encoder>,
) -> Result<u64, RelayError> {
    let mut sent: u64 = 0;
    let mut trailers: Vec<u8> = Vec::new();
    let stall = stall_limit(ctx);
    // Compressed output of the current piece (unallocated without a coder).
    let mut scratch = Vec::new();
    loop {
        if ubuf.is_empty() {
            match fill(ctx, up, ubuf).await {
                Ok(0) if matches!(tracker, BodyTracker::UntilClose) => {
                    emit(stall, send, &mut coder, &mut scratch, &[], true).await?;
                    return Ok(sent);
                }
                Ok(0) | Err(_) => return Err(RelayError::Upstream),
                Ok(_) => {}
            }
        }
        match tracker {
            BodyTracker::Done => return Ok(sent),
            BodyTracker::UntilClose => {
                if let Some(c) = capture.as_deref_mut() {
                    c.feed(ubuf);
                }
                emit(stall, send, &mut coder, &mut scratch, ubuf, false).await?;
                sent += ubuf.len() as u64;
                ubuf.clear();
            }
            BodyTracker::Length(rem) => {
                let n = usize::try_from(*rem).map_or(ubuf.len(), |r| r.min(ubuf.len()));
                *rem -= n as u64;
                let end = *rem == 0;
                if let Some(c) = capture.as_deref_mut() {
                    c.feed(&ubuf[..n]);
                }
                emit(stall, send, &mut coder, &mut scratch, &ubuf[..n], end).await?;
                sent += n as u64;
                ubuf.drain(..n);
                if end {
                    *tracker = BodyTracker::Done;
                    return Ok(sent);
                }
            }
            BodyTracker::Chunked(d) => {
                let mut pos = 0;
                // Decode what is buffered, sending each run of payload as it is found.
                while pos < ubuf.len() && !d.is_done() {
                    let in_trailers = d.in_trailers();
                    let r = d
                        .decode_to_trailers(&ubuf[pos..])
                        .map_err(|_| RelayError::Upstream)?;
                    if in_trailers {
                        trailers.extend_from_slice(&ubuf[pos..pos + r.consumed]);
                    }
                    let data = r.data;
                    let (start, len) = (pos + r.consumed - data.len(), data.len());
                    pos += r.consumed;
                    if len > 0 {
                        emit(
                            stall,
                            send,
                            &mut coder,
                            &mut scratch,
                            &ubuf[start..start + len],
                            false,
                        )
                        .await?;
                        sent += len as u64;
                    }
                }
                let done = d.is_done();
                if let Some(c) = capture.as_deref_mut() {
                    c.feed(&ubuf[..pos]);
                }
                ubuf.drain(..pos);
                if done {
                    *tracker = BodyTracker::Done;
                    match parse_trailers(&trailers) {
                        Some(map) if !map.is_empty() => {
                            if let Some(c) = coder.take() {
                                scratch.clear();
                                c.finish(&mut scratch).map_err(|_| RelayError::Upstream)?;
                                send_all(stall, send, &scratch, false).await?;
                            }
                            send.send_trailers(map).map_err(|_| RelayError::Client)?
                        }
                        _ => emit(stall, send, &mut coder, &mut scratch, &[], true).await?,
                    }
                    return Ok(sent);
                }
            }
        }
    }
}

/// Sends a piece of payload: as it is, or through `coder` (flushed so the client can decode
/// what it has, and finished with `end`).
async fn emit(
    stall: std::time::Duration,
    send: &mut SendStream<Bytes>,
    coder: &mut Option<Encoder>,
    scratch: &mut Vec<u8>,
    data: &[u8],
    end: bool,
) -> Result<(), RelayError> {
    let Some(c) = coder.as_mut() else {
        return send_all(stall, send, data, end).await;
    };
    scratch.clear();
    c.write(data, scratch).map_err(|_| RelayError::Upstream)?;
    let done = match coder.take() {
        Some(c) if end => c.finish(scratch),
        Some(mut c) => {
            let flushed = c.flush(scratch);
            *coder = Some(c);
            flushed
        }
        None => Ok(()),
    };
    done.map_err(|_| RelayError::Upstream)?;
    send_all(stall, send, scratch, end).await
}

/// The trailer fields of a chunked body (the decoder has checked their syntax), minus those
/// that may not appear in HTTP/2 or that [`trailer_allowed`] keeps out.
fn parse_trailers(raw: &[u8]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let value = line[colon + 1..].trim_ascii();
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        if !trailer_allowed(name.as_str()) {
            continue;
        }
        map.append(name, HeaderValue::from_bytes(value).ok()?);
    }
    Some(map)
}
