//! HTTP/1.x clients in front of an HTTP/2 cluster: the request the HTTP/1 path prepared is sent
//! as a stream on the endpoint's HTTP/2 connection, and the response comes back as HTTP/1.1
//! (with its length when the upstream gave one, else chunked, else delimited by the close for
//! HTTP/1.0 clients). Response trailers travel in the chunked coding's trailer section.
//!
//! Unlike HTTP/2 clients, an HTTP/1 exchange is sequential: the request body is sent whole
//! before the response is read, as the HTTP/1 path does for HTTP/1.1 upstreams.

use super::relay::{last_chunk, send_all};
use super::upstream::{connection_specific, request_from_head};
use crate::proxy::{write_hex, BodyTracker, Client, Next};
use crate::worker::WorkerCtx;
use bytes::Bytes;
use h2::SendStream;
use proxy_core::config::{Config, Endpoint};
use proxy_core::http1::{find_head_end, ChunkedDecoder, Method, Version};
use proxy_core::lb::Outcome;
use proxy_core::Status;
use std::future::poll_fn;
use std::io::Write as _;
use std::time::Instant;

/// The facts about the client's request the bridge needs.
pub(crate) struct H1Request {
    /// The method (HEAD responses have no body).
    pub(crate) method: Method,
    /// The client's HTTP version.
    pub(crate) version: Version,
    /// The client wants the connection kept open.
    pub(crate) keep_alive: bool,
    /// The body is chunked (the bytes in `out` after the head are Ringway's own chunks).
    pub(crate) chunked: bool,
}

/// How an exchange through the bridge failed before the response head.
enum Fail {
    /// Answer with this status; the connection closes when the request body was not all read.
    Answer(Status),
    /// The client went away.
    Gone,
}

impl Client {
    /// Serves one HTTP/1 request (head and first body bytes in `out`, the rest of the body
    /// to come from the client as `body` says) through `ep`'s HTTP/2 connection.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn exchange_via_h2(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        (cluster, ep): (usize, Endpoint),
        out: Vec<u8>,
        mut cbuf: Vec<u8>,
        mut body: BodyTracker,
        req: H1Request,
        started: Instant,
    ) -> Next {
        let ep = &ep;
        let attempt = ctx.start_try(cluster, ep, Instant::now());
        let sent = self
            .send_via_h2(ctx, cfg, ep, &out, &mut cbuf, &mut body, req.chunked)
            .await;
        ctx.buffers.give(out);
        let response = match sent {
            Ok(r) => r,
            Err(Fail::Gone) => {
                self.buf = Some(cbuf);
                return Next::Close;
            }
            Err(Fail::Answer(status)) => {
                attempt.end(match status {
                    Status::GatewayTimeout => Outcome::Timeout,
                    Status::BadGateway | Status::ServiceUnavailable => Outcome::ConnectFailure,
                    _ => Outcome::Cancelled,
                });
                self.buf = Some(cbuf);
                let close = !body.is_done() || !req.keep_alive || ctx.drain.is_fired();
                let sent = self.send_status(ctx, cfg, status, close).await;
                self.log(ctx, status.code(), sent, started, Some(ep.id));
                return if close { Next::Close } else { Next::KeepAlive };
            }
        };
        self.buf = Some(cbuf);
        let resp = match monoio::time::timeout(cfg.timeouts.upstream_response, response).await {
            Ok(Ok(r)) => r,
            failed => {
                ctx.stats.upstream_errors.inc();
                let (status, outcome) = if failed.is_err() {
                    (Status::GatewayTimeout, Outcome::Timeout)
                } else {
                    (Status::BadGateway, Outcome::Reset)
                };
                attempt.end(outcome);
                tracing::warn!(conn = self.id, upstream = %ep.addr, ?status, "upstream HTTP/2 stream failed before its response head");
                let close = !req.keep_alive || ctx.drain.is_fired();
                let sent = self.send_status(ctx, cfg, status, close).await;
                self.log(ctx, status.code(), sent, started, Some(ep.id));
                return if close { Next::Close } else { Next::KeepAlive };
            }
        };
        let (parts, mut upbody) = resp.into_parts();
        let status = parts.status.as_u16();
        attempt.end_with_status(status);
        let no_body = req.method == Method::Head || status == 204 || status == 304;
        let length = parts.headers.contains_key(http::header::CONTENT_LENGTH);
        let empty = upbody.is_end_stream();
        let chunked = !no_body && !length && !empty && req.version == Version::Http11;
        let until_close = !no_body && !length && !empty && !chunked;
        // A body the upstream stopped taking (it answered early) was not all read.
        let close = !req.keep_alive || until_close || !body.is_done() || ctx.drain.is_fired();
        let mut head = ctx.buffers.take();
        let reason = parts.status.canonical_reason().unwrap_or("");
        let _ = write!(head, "HTTP/1.1 {status} {reason}\r\n");
        for (name, value) in &parts.headers {
            if !connection_specific(name.as_str()) {
                head.extend_from_slice(name.as_str().as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(value.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
        }
        if chunked {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else if !no_body && !length && empty {
            head.extend_from_slice(b"Content-Length: 0\r\n");
        }
        if let Some(v) = self.tls.as_ref().and_then(|t| t.hsts()) {
            if !parts
                .headers
                .contains_key(http::header::STRICT_TRANSPORT_SECURITY)
            {
                let _ = write!(head, "Strict-Transport-Security: {v}\r\n");
            }
        }
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        ctx.stats.count_response(status);
        let (res, mut buf) = self.io.write_all(head, cfg.timeouts.idle).await;
        let mut sent = buf.len() as u64;
        let mut complete = res.is_ok();
        if complete && !no_body && !upbody.is_end_stream() {
            // The body, then (chunked) the last chunk with the trailers.
            loop {
                let data = match monoio::time::timeout(
                    cfg.timeouts.upstream_response,
                    upbody.data(),
                )
                .await
                {
                    Ok(None) => break,
                    Ok(Some(Ok(d))) => d,
                    _ => {
                        ctx.stats.upstream_errors.inc();
                        tracing::warn!(conn = self.id, upstream = %ep.addr, "upstream HTTP/2 stream failed mid-response; closing the client connection");
                        complete = false;
                        break;
                    }
                };
                let n = data.len();
                buf.clear();
                if chunked && n > 0 {
                    write_hex(&mut buf, n);
                    buf.extend_from_slice(b"\r\n");
                }
                buf.extend_from_slice(&data);
                if chunked && n > 0 {
                    buf.extend_from_slice(b"\r\n");
                }
                let (res, b) = self.io.write_all(buf, cfg.timeouts.idle).await;
                buf = b;
                let _ = upbody.flow_control().release_capacity(n);
                if res.is_err() {
                    complete = false;
                    break;
                }
                sent += n as u64;
            }
            if complete && chunked {
                buf.clear();
                let trailers = poll_fn(|cx| upbody.poll_trailers(cx)).await.ok().flatten();
                last_chunk(&mut buf, trailers.as_ref());
                let (res, b) = self.io.write_all(buf, cfg.timeouts.idle).await;
                buf = b;
                complete = res.is_ok();
            }
        }
        ctx.buffers.give(buf);
        self.log(ctx, status, sent, started, Some(ep.id));
        if close || !complete {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Opens the upstream stream and sends the request and its body. The body stops early
    /// (and `body` stays unfinished) when the upstream stops taking it: it has answered.
    #[allow(clippy::too_many_arguments)]
    async fn send_via_h2(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        ep: &Endpoint,
        out: &[u8],
        cbuf: &mut Vec<u8>,
        body: &mut BodyTracker,
        chunked: bool,
    ) -> Result<h2::client::ResponseFuture, Fail> {
        let head_end = find_head_end(out, 0).ok_or(Fail::Answer(Status::BadGateway))?;
        // The body bytes that came with the head, as the HTTP/1 path framed them.
        let first: Vec<u8> = if out[head_end..].is_empty() {
            Vec::new()
        } else if chunked {
            let mut d = ChunkedDecoder::new();
            let mut data = Vec::new();
            let mut rest = &out[head_end..];
            while !rest.is_empty() && !d.is_done() {
                let r = d
                    .decode(rest)
                    .map_err(|_| Fail::Answer(Status::BadRequest))?;
                data.extend_from_slice(r.data);
                rest = &rest[r.consumed..];
            }
            data
        } else {
            out[head_end..].to_vec()
        };
        let tls = ctx.endpoint_tls.get(ep.id).is_some_and(Option::is_some);
        let upstream = &ctx.h2_upstreams[ep.id];
        let whole = body.is_done();
        let mut retried = false;
        let (response, mut up_send) = loop {
            let req =
                request_from_head(&out[..head_end], tls).ok_or(Fail::Answer(Status::BadGateway))?;
            let mut sender = upstream.sender(ctx, ep).await.map_err(Fail::Answer)?;
            let ready = monoio::time::timeout(
                cfg.timeouts.upstream_response,
                poll_fn(|cx| sender.poll_ready(cx)),
            )
            .await
            .map_err(|_| Fail::Answer(Status::GatewayTimeout))?;
            let sent = ready.and_then(|()| sender.send_request(req, whole && first.is_empty()));
            match sent {
                Ok(pair) => break pair,
                Err(_) if !retried => {
                    upstream.reset();
                    retried = true;
                    ctx.stats.upstream_retries.inc();
                }
                Err(e) => {
                    ctx.stats.upstream_errors.inc();
                    tracing::warn!(conn = self.id, upstream = %ep.addr, error = %e, "upstream HTTP/2 request failed");
                    return Err(Fail::Answer(Status::BadGateway));
                }
            }
        };
        let stall = cfg.timeouts.upstream_response;
        if !first.is_empty() && send_all(stall, &mut up_send, &first, whole).await.is_err() {
            return Ok(response);
        }
        self.send_rest(cfg, cbuf, body, &mut up_send).await?;
        Ok(response)
    }

    /// Streams the rest of the client's body to the upstream stream.
    async fn send_rest(
        &mut self,
        cfg: &Config,
        cbuf: &mut Vec<u8>,
        body: &mut BodyTracker,
        up: &mut SendStream<Bytes>,
    ) -> Result<(), Fail> {
        let mut payload = Vec::new();
        while !body.is_done() {
            if cbuf.is_empty() {
                let (res, b) = self
                    .io
                    .read_append(std::mem::take(cbuf), cfg.timeouts.idle)
                    .await;
                *cbuf = b;
                match res {
                    Ok(0) | Err(_) => {
                        up.send_reset(h2::Reason::CANCEL);
                        return Err(Fail::Gone);
                    }
                    Ok(_) => {}
                }
            }
            payload.clear();
            let n = body
                .advance_decoding(cbuf, &mut payload)
                .map_err(|_| Fail::Answer(Status::BadRequest))?;
            cbuf.drain(..n);
            if body.over_limit(cfg.limits.max_body_bytes) {
                up.send_reset(h2::Reason::CANCEL);
                return Err(Fail::Answer(Status::PayloadTooLarge));
            }
            let end = body.is_done();
            let stall = cfg.timeouts.upstream_response;
            if (!payload.is_empty() || end) && send_all(stall, up, &payload, end).await.is_err() {
                // The upstream stopped taking the body: its response says why.
                return Ok(());
            }
        }
        Ok(())
    }
}
