//! One HTTP/2 stream, in a task of its own: translate the request into the HTTP/1.1 head the
//! rest of Ringway works with, route it, forward it through the per-core upstream pool, and
//! relay the response back under the client's flow control.
//!
//! Failures stay on their stream: before the response head, the client gets the status (502,
//! 504, …); after it, the stream is reset (INTERNAL_ERROR). A malformed request is reset with
//! PROTOCOL_ERROR (RFC 9113 §8.1.1). A stream the client resets drops its upstream connection
//! unpooled. The connection's other streams never notice.

use super::caching::{refresh_body, Before};
use super::relay::{self, RelayError};
use super::Live;
use crate::proxy::cache_fill::{self, OnResponse};
use crate::proxy::cached::{self, AccelPlan, Hit, Planned};
use crate::proxy::compressing::should_compress;
use crate::proxy::retry::{Attempts, Failure};
use crate::proxy::slots::Slot;
use crate::proxy::upstream::{acquire, read_response_head, retarget, HeadError};
use crate::proxy::BodyTracker;
use crate::worker::WorkerCtx;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use proxy_core::compress::Encoder;
use proxy_core::config::{Endpoint, UpstreamProtocol};
use proxy_core::h2::{response_fields, write_http1_request, PseudoHeaders, RequestBody};
use proxy_core::http1::{parse_request, BodyFraming, Method, ResponseHead};
use proxy_core::lb::keys::{request_keys, sticky_set_cookie, RequestKeys};
use proxy_core::rewrite::{write_request_head, ForwardContext};
use proxy_core::Status;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

/// What a stream needs after its request head is gone.
pub(super) struct Stream {
    pub(super) ctx: Rc<WorkerCtx>,
    pub(super) live: Live,
    pub(super) respond: SendResponse<Bytes>,
    pub(super) started: Instant,
    /// `METHOD path HTTP/2.0`, kept only when the access log is on.
    pub(super) request_line: Vec<u8>,
}

/// Serves one stream to the end.
pub(super) async fn serve(
    ctx: Rc<WorkerCtx>,
    live: Live,
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let mut s = Stream {
        ctx,
        live,
        respond,
        started: Instant::now(),
        request_line: Vec::new(),
    };
    let (parts, body) = req.into_parts();
    let mut out = s.ctx.buffers.take();
    let plan = s.prepare(&parts, &body, &mut out);
    drop(parts);
    match plan {
        Ok(p) => s.forward(p, body, out).await,
        Err(Refusal::Malformed) => {
            s.ctx.buffers.give(out);
            s.ctx.stats.bad_requests.inc();
            s.respond.send_reset(Reason::PROTOCOL_ERROR);
        }
        Err(Refusal::Answer(status)) => {
            s.ctx.buffers.give(out);
            s.answer(status, None);
        }
        Err(Refusal::Cached(hit)) => {
            s.ctx.buffers.give(out);
            s.serve_hit(&hit, None);
        }
    }
}

/// Why a request is not forwarded.
enum Refusal {
    /// Reset the stream with PROTOCOL_ERROR.
    Malformed,
    /// Answer with this status.
    Answer(Status),
    /// Answer with this stored response (not a refusal to serve: a refusal to go upstream).
    Cached(Box<Hit>),
}

/// A request ready to forward.
pub(super) struct Plan {
    pub(super) method: Method,
    pub(super) body: RequestBody,
    /// The client waits for `100 Continue` before sending its body.
    pub(super) expect_continue: bool,
    pub(super) cluster: usize,
    pub(super) ep: Endpoint,
    pub(super) keys: RequestKeys,
    /// What the cache and compression do for this request.
    pub(super) accel: AccelPlan,
}

/// Bytes written so far, and whether the exchange completed (for pooling and logs).
pub(super) struct Outcome {
    pub(super) status: u16,
    pub(super) bytes: u64,
}

impl Stream {
    /// Translates, routes and checks the request; writes the upstream head into `out`.
    fn prepare(
        &mut self,
        parts: &http::request::Parts,
        body: &RecvStream,
        out: &mut Vec<u8>,
    ) -> Result<Plan, Refusal> {
        let ctx = &*self.ctx;
        let cfg = &*ctx.config;
        let conn = self.live.conn();
        let path = parts.uri.path_and_query().map(|p| p.as_str().as_bytes());
        if ctx.access_log.is_some() {
            self.request_line
                .extend_from_slice(parts.method.as_str().as_bytes());
            self.request_line.push(b' ');
            self.request_line.extend_from_slice(path.unwrap_or(b"-"));
            self.request_line.extend_from_slice(b" HTTP/2.0");
        }
        let length = match parts.headers.get(http::header::CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                std::str::from_utf8(v.as_bytes())
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or(Refusal::Malformed)?,
            ),
        };
        let kind = match length {
            _ if body.is_end_stream() => RequestBody::None,
            Some(n) => RequestBody::Length(n),
            None => RequestBody::Chunked,
        };
        if let (Some(n), Some(max)) = (length, cfg.limits.max_body_bytes) {
            if n > max {
                return Err(Refusal::Answer(Status::PayloadTooLarge));
            }
        }
        let pseudo = PseudoHeaders {
            method: parts.method.as_str().as_bytes(),
            authority: parts.uri.authority().map(|a| a.as_str().as_bytes()),
            path,
        };
        let fields = || {
            parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        };
        // The translated head goes into `out` first, is parsed from there, and the forwarded
        // head is then written after it; the translation is dropped before sending.
        match write_http1_request(&pseudo, fields, kind, out) {
            Ok(()) => {}
            Err(Status::BadRequest) => return Err(Refusal::Malformed),
            Err(status) => return Err(Refusal::Answer(status)),
        }
        let mut head = match parse_request(out) {
            Ok(Some(h)) => h,
            Ok(None) => return Err(Refusal::Malformed),
            Err(e) => return Err(Refusal::Answer(e.status())),
        };
        if head.target.len() > cfg.limits.max_uri_bytes {
            return Err(Refusal::Answer(Status::UriTooLong));
        }
        if let Err(e) = head.normalize_path(out) {
            return Err(Refusal::Answer(e.status()));
        }
        if conn
            .tls
            .as_ref()
            .is_some_and(|t| t.misdirected(head.host_name(out)))
        {
            return Err(Refusal::Answer(Status::MisdirectedRequest));
        }
        let Some(route) = cfg.router.matched(head.host_name(out), head.path.of(out)) else {
            return Err(Refusal::Answer(Status::NotFound));
        };
        let cluster = route.cluster;
        let mut accel = AccelPlan::default();
        if route.cache.is_some() || route.compress.is_some() {
            let scheme: &[u8] = if conn.tls.is_some() {
                b"https"
            } else {
                b"http"
            };
            match cached::plan(ctx, cfg, route, &head, out, scheme) {
                Planned::Hit(hit) => return Err(Refusal::Cached(hit)),
                Planned::Plan(p) => accel = *p,
                Planned::Answer(status) => return Err(Refusal::Answer(status)),
            }
        }
        let keys = request_keys(
            &cfg.clusters[cluster].balance,
            &head,
            out,
            conn.ip.as_bytes(),
        );
        let Some(ep) = ctx.pick(cluster, keys.hash, keys.sticky, &[]) else {
            if let Some(c) = ctx.lb.counters.clusters.get(cluster) {
                c.no_endpoint.inc();
            }
            return Err(Refusal::Answer(Status::ServiceUnavailable));
        };
        let fctx = ForwardContext {
            client_ip: conn.ip.as_bytes(),
            scheme: if conn.tls.is_some() {
                b"https"
            } else {
                b"http"
            },
            upstream_authority: ctx.endpoint_authority(ep.id),
            identity: conn.tls.as_ref().and_then(|t| t.identity()),
        };
        let mut forwarded = ctx.buffers.take();
        write_request_head(out, &head, &cfg.forward, &fctx, &mut forwarded);
        std::mem::swap(out, &mut forwarded);
        ctx.buffers.give(forwarded);
        if let Some(creq) = &accel.cache {
            // A stale stored response is revalidated with its validators.
            if let (Some((_, entry)), false) = (&creq.stored, creq.client_conditional) {
                if kind == RequestBody::None {
                    cached::add_validators(out, entry);
                }
            }
        }
        let expect_continue = kind != RequestBody::None
            && parts
                .headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        Ok(Plan {
            method: head.method,
            body: kind,
            expect_continue,
            cluster,
            ep,
            keys,
            accel,
        })
    }

    /// Sends the request upstream and relays the response. Failures the cluster retries move
    /// the request to another endpoint; a reused connection found dead is retried once on a
    /// fresh one.
    async fn forward(&mut self, mut plan: Plan, mut body: RecvStream, mut out: Vec<u8>) {
        let ctx = self.ctx.clone();
        let cfg = &*ctx.config;
        if cfg.clusters[plan.cluster].protocol == UpstreamProtocol::H2 {
            // Boxed: this path's future (two streams piped at once) would otherwise make
            // every stream's task, HTTP/1.1 clusters' included, kilobytes larger.
            return Box::pin(self.forward_h2(&plan, body, out)).await;
        }
        let retryable = plan.method.is_idempotent() && plan.body == RequestBody::None;
        let mut stale_retried = false;
        let conn_id = self.live.conn().id;
        let circuit = cfg.clusters[plan.cluster].circuit;
        let cap = circuit
            .max_connections
            .unwrap_or(cfg.http2.max_upstream_connections);
        let max_waiting = circuit
            .max_connections
            .map_or(usize::MAX, |_| circuit.max_pending);
        let (mut fetch, refresh_only) = match self.cache_before(&ctx, cfg, &mut plan).await {
            Before::Forward {
                fetch,
                refresh_only,
            } => (fetch, refresh_only),
            Before::Answered => return ctx.buffers.give(out),
        };
        let mut attempts = Attempts::new(&ctx, plan.cluster, plan.ep, plan.keys.hash);
        let mut slot: Option<(usize, Slot)> = None;
        let (mut up, mut ubuf, rhead) = loop {
            let ep = attempts.ep;
            if slot.as_ref().is_none_or(|(id, _)| *id != ep.id) {
                // The previous endpoint's slot goes before this one's is waited for.
                drop(slot.take());
                let slots = ctx.slots[ep.id].clone();
                let wait = cfg.timeouts.upstream_response;
                match self
                    .unless_reset(slots.acquire(cap, max_waiting, wait))
                    .await
                {
                    None => return ctx.buffers.give(out),
                    Some(Err(why)) => {
                        tracing::warn!(conn = conn_id, upstream = %ep.addr, cap, ?why, "no upstream slot");
                        if let Some(c) = ctx.lb.counters.clusters.get(plan.cluster) {
                            c.circuit_open.inc();
                        }
                        attempts.cancel();
                        ctx.buffers.give(out);
                        return self.answer(Status::ServiceUnavailable, Some(&ep));
                    }
                    Some(Ok(s)) => slot = Some((ep.id, s)),
                }
            }
            let acquired = self
                .unless_reset(acquire(&ctx, cfg, &ep, retryable, conn_id))
                .await;
            let (mut up, reused) = match acquired {
                None => return ctx.buffers.give(out),
                Some(Err(status)) => match attempts.fail(Failure::Connect, retryable) {
                    Some(next) => {
                        retarget(&ctx, &mut out, &ep, &next);
                        continue;
                    }
                    None => {
                        ctx.buffers.give(out);
                        return self.answer(status, Some(&ep));
                    }
                },
                Some(Ok(c)) => c,
            };
            let may_retry_stale = reused && retryable && !stale_retried;
            if self.unless_reset(std::future::ready(())).await.is_none() {
                // Reset meanwhile: the request is not sent (the connection is still clean).
                ctx.upstreams.put(ep.id, up, Instant::now());
                return ctx.buffers.give(out);
            }
            let (res, o) = up.write_all(out, cfg.timeouts.upstream_response).await;
            out = o;
            if res.is_err() {
                if may_retry_stale {
                    stale_retried = true;
                    ctx.stats.upstream_retries.inc();
                    continue;
                }
                ctx.stats.upstream_errors.inc();
                if let Some(next) = attempts.fail(Failure::Reset, retryable) {
                    retarget(&ctx, &mut out, &ep, &next);
                    continue;
                }
                ctx.buffers.give(out);
                return self.answer(Status::BadGateway, Some(&ep));
            }
            if plan.expect_continue {
                let mut go_on = Response::new(());
                *go_on.status_mut() = http::StatusCode::CONTINUE;
                let _ = self.respond.send_informational(go_on);
            }
            if plan.body != RequestBody::None {
                let chunked = plan.body == RequestBody::Chunked;
                let limit = cfg.limits.max_body_bytes;
                let relayed =
                    relay::request_body(&ctx, &mut body, &mut up, chunked, limit, &mut out).await;
                let status = match relayed {
                    Ok(()) => None,
                    Err(RelayError::Client) => {
                        attempts.cancel();
                        return ctx.buffers.give(out);
                    }
                    Err(RelayError::TooSlow) => Some(Status::RequestTimeout),
                    Err(RelayError::TooLarge) => Some(Status::PayloadTooLarge),
                    Err(RelayError::Upstream) => {
                        ctx.stats.upstream_errors.inc();
                        let _ = attempts.fail(Failure::Reset, false);
                        Some(Status::BadGateway)
                    }
                };
                if let Some(status) = status {
                    attempts.cancel();
                    ctx.buffers.give(out);
                    return self.answer(status, Some(&ep));
                }
            }
            let mut ubuf = ctx.buffers.take();
            let limit = attempts.try_timeout(cfg);
            let head = self
                .unless_reset(read_response_head(&mut up, &mut ubuf, limit, cfg, None))
                .await;
            let failure = match head {
                None => {
                    ctx.buffers.give(ubuf);
                    return ctx.buffers.give(out);
                }
                Some(Ok(h)) if attempts.retries_status(h.status, retryable) => {
                    match attempts.fail(Failure::Status(h.status), retryable) {
                        Some(next) => {
                            ctx.buffers.give(ubuf);
                            retarget(&ctx, &mut out, &ep, &next);
                            continue;
                        }
                        None => break (up, ubuf, h),
                    }
                }
                Some(Ok(h)) => {
                    attempts.succeed(h.status);
                    break (up, ubuf, h);
                }
                Some(Err(HeadError::ClosedEmpty)) if may_retry_stale => {
                    ctx.buffers.give(ubuf);
                    stale_retried = true;
                    ctx.stats.upstream_retries.inc();
                    continue;
                }
                Some(Err(e)) => {
                    ctx.stats.upstream_errors.inc();
                    tracing::warn!(conn = conn_id, upstream = %ep.addr, "upstream failed before its response head");
                    match e {
                        HeadError::Timeout => Failure::Timeout,
                        _ => Failure::Reset,
                    }
                }
            };
            ctx.buffers.give(ubuf);
            if let Some(next) = attempts.fail(failure, retryable) {
                retarget(&ctx, &mut out, &ep, &next);
                continue;
            }
            ctx.buffers.give(out);
            if refresh_only {
                return;
            }
            if let Some(hit) = plan
                .accel
                .cache
                .as_mut()
                .and_then(|c| cache_fill::stale_on_error(&ctx, c))
            {
                return self.serve_hit(&hit, Some(&ep));
            }
            let status = if failure == Failure::Timeout {
                Status::GatewayTimeout
            } else {
                Status::BadGateway
            };
            return self.answer(status, Some(&ep));
        };
        let ep = attempts.ep;
        let ep = &ep;
        drop(attempts);
        ctx.buffers.give(out);
        drop(body);
        if rhead.status == 101 {
            ctx.buffers.give(ubuf);
            ctx.stats.upstream_errors.inc();
            return self.answer(Status::BadGateway, Some(ep));
        }
        let mut capture = None;
        if let Some(creq) = plan.accel.cache.as_mut() {
            match cache_fill::on_response(&ctx, cfg, creq, &ubuf, &rhead) {
                OnResponse::Serve(hit) => {
                    let reusable = rhead.status == 304 && !rhead.close;
                    ubuf.drain(..rhead.head_len.min(ubuf.len()));
                    if reusable && ubuf.is_empty() {
                        ctx.upstreams.put(ep.id, up, Instant::now());
                    }
                    ctx.recycle(ubuf);
                    drop(slot);
                    if refresh_only {
                        return;
                    }
                    return self.serve_hit(&hit, Some(ep));
                }
                OnResponse::Forward(c) => capture = c,
            }
        }
        if capture.is_none() {
            // Nothing will be stored: streams waiting for this URL go on now.
            drop(fetch.take());
        }
        if refresh_only {
            let tracker = BodyTracker::new(rhead.framing(plan.method));
            let close = rhead.close;
            ubuf.drain(..rhead.head_len);
            let clean = refresh_body(&ctx, cfg, &plan, &mut up, &mut ubuf, tracker, capture).await;
            if clean && !close {
                ctx.upstreams.put(ep.id, up, Instant::now());
            }
            ctx.recycle(ubuf);
            drop(slot);
            return;
        }
        if let Some((id, key)) = plan.accel.invalidate.take() {
            if proxy_core::cache::policy::invalidates(plan.method, rhead.status) {
                if let Some(store) = ctx.cache.store(id) {
                    store.borrow_mut().remove(&key);
                }
            }
        }
        // The parsed head (kilobytes of spans) is consumed here, not kept across an await.
        let (framing, upstream_close, head_len, status, mut response, coder) = {
            let r = rhead;
            let framing = r.framing(plan.method);
            let response = self.response(&ubuf, &r, framing, plan.method == Method::Head);
            let settings = plan
                .accel
                .compress_route
                .and_then(|ci| cfg.compressions.get(ci))
                .filter(|c| should_compress(c, &ubuf, &r, plan.method));
            let coder = settings.map(|c| (plan.accel.compress, c.level_for(plan.accel.compress)));
            (framing, r.close, r.head_len, r.status, response, coder)
        };
        let coder = match coder {
            Some((Some(enc), level)) => {
                cached::encode_h2(response.headers_mut(), Some(enc));
                ctx.stats.compressed.inc();
                Some(Encoder::new(enc, level))
            }
            Some((None, _)) => {
                // Compressible, the client did not ask: say it varies.
                cached::encode_h2(response.headers_mut(), None);
                None
            }
            None => None,
        };
        cached::mark_h2(&plan.accel, response.headers_mut());
        if let Some(name) = &cfg.clusters[plan.cluster].balance.sticky_cookie {
            let token = ctx.sticky_token(plan.cluster, ep.id);
            if let Some(t) = token.filter(|_| token != plan.keys.sticky) {
                if let Ok(v) = HeaderValue::from_bytes(&sticky_set_cookie(name, t)) {
                    response.headers_mut().append(http::header::SET_COOKIE, v);
                }
            }
        }
        ubuf.drain(..head_len);
        let end = matches!(framing, BodyFraming::None | BodyFraming::Length(0));
        let mut send = match self.respond.send_response(response, end) {
            Ok(s) => s,
            Err(_) => {
                // The client reset the stream meanwhile.
                ctx.buffers.give(ubuf);
                return;
            }
        };
        ctx.stats.count_response(status);
        let mut outcome = Outcome { status, bytes: 0 };
        let complete = if end {
            true
        } else {
            let mut tracker = BodyTracker::new(framing);
            ctx.upsize_for(&mut ubuf, &tracker);
            let relayed = relay::response_body(
                &ctx,
                &mut up,
                &mut ubuf,
                &mut send,
                &mut tracker,
                capture.as_deref_mut(),
                coder,
            );
            match relayed.await {
                Ok(n) => {
                    outcome.bytes = n;
                    true
                }
                Err(RelayError::Upstream) => {
                    ctx.stats.upstream_errors.inc();
                    tracing::warn!(conn = conn_id, upstream = %ep.addr, "upstream failed mid-response; resetting the stream");
                    send.send_reset(Reason::INTERNAL_ERROR);
                    false
                }
                Err(_) => {
                    // The client stopped reading (or went away): free the upstream connection.
                    send.send_reset(Reason::CANCEL);
                    false
                }
            }
        };
        if let (Some(c), Some(creq), true) = (capture, plan.accel.cache.as_ref(), complete) {
            c.finish(&ctx, creq);
        }
        if complete && !upstream_close && framing != BodyFraming::UntilClose && ubuf.is_empty() {
            ctx.upstreams.put(ep.id, up, Instant::now());
        }
        ctx.recycle(ubuf);
        drop(slot);
        self.log(&outcome, Some(ep));
    }

    /// The HTTP/2 response for an upstream response head.
    pub(super) fn response(
        &self,
        ubuf: &[u8],
        rhead: &ResponseHead,
        framing: BodyFraming,
        head_request: bool,
    ) -> Response<()> {
        let mut headers = HeaderMap::with_capacity(rhead.headers.as_slice().len() + 1);
        for (name, value) in response_fields(ubuf, rhead, framing, head_request) {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                headers.append(n, v);
            }
        }
        self.add_hsts(&mut headers);
        let mut resp = Response::new(());
        *resp.status_mut() =
            http::StatusCode::from_u16(rhead.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        *resp.headers_mut() = headers;
        resp
    }

    /// Adds the listener's `Strict-Transport-Security` to a TLS response that lacks one.
    pub(super) fn add_hsts(&self, headers: &mut HeaderMap) {
        if let Some(hsts) = self.live.conn().tls.as_ref().and_then(|t| t.hsts()) {
            if !headers.contains_key(http::header::STRICT_TRANSPORT_SECURITY) {
                if let Ok(v) = HeaderValue::from_str(hsts) {
                    headers.insert(http::header::STRICT_TRANSPORT_SECURITY, v);
                }
            }
        }
    }

    /// Runs `fut` unless the client resets the stream first (then `None`, and `fut` is
    /// dropped: its upstream connection with it).
    pub(super) async fn unless_reset<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        let respond = &mut self.respond;
        // The reset is looked at first: a stream reset before its work starts (a rapid-reset
        // client's HEADERS + RST_STREAM) must not reach the upstream at all.
        poll_fn(|cx| {
            if respond.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            fut.as_mut().poll(cx).map(Some)
        })
        .await
    }
}
