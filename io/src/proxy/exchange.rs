//! One request/response exchange on a client connection: route, forward, stream back, decide
//! whether the connection stays open.

use super::body::{
    pump, BodyTracker, ClientSide, MinRate, PumpError, PumpExtra, PumpTimeouts, Relay,
};
use super::cache_fill::{self, OnResponse};
use super::cached::{self, AccelPlan, Hit, Planned};
use super::compressing::{self, Compressing};
use super::h2::H1Request;
use super::retry::Attempts;
use super::upstream::{ForwardFail, Forwarded};
use super::{Client, HeadFail, Next};
use crate::worker::WorkerCtx;
use proxy_core::config::{Config, Endpoint, UpstreamProtocol};
use proxy_core::http1::{BodyFraming, Method, RequestHead, ResponseHead, Version};
use proxy_core::lb::keys::{request_keys, sticky_set_cookie, RequestKeys};
use proxy_core::rewrite::{
    append_response_field, write_request_head, write_response_head, ForwardContext, ResponsePlan,
};
use proxy_core::Status;
use std::time::Instant;

/// The facts about a request that outlive its parsed head.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    pub(super) method: Method,
    pub(super) version: Version,
    pub(super) keep_alive: bool,
    upgrade: bool,
    pub(super) framing: BodyFraming,
    pub(super) head_len: usize,
}

impl Request {
    fn of(head: &RequestHead) -> Request {
        Request {
            method: head.method,
            version: head.version,
            keep_alive: head.keep_alive,
            upgrade: head.upgrade,
            framing: head.framing,
            head_len: head.head_len,
        }
    }
}

/// A request ready to forward: what `prepare` made of its head.
struct Prepared {
    req: Request,
    cluster: usize,
    ep: Endpoint,
    keys: RequestKeys,
    expect_continue: bool,
    /// The rewritten head plus the body bytes that came with it.
    out: Vec<u8>,
    body: BodyTracker,
    /// What the cache and compression do for this request (small: its cache part is boxed).
    accel: AccelPlan,
}

/// The outcome of looking at a request head, before any upstream is involved.
// A return value consumed at once, never stored: boxing `Prepared` would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Decision {
    Forward(Prepared),
    Answer(Request, Status),
    /// A stored response answers the request.
    Hit(Request, Box<Hit>),
}

/// The facts about a response that outlive its parsed head.
struct ResponseFacts {
    status: u16,
    pub(super) framing: BodyFraming,
    upstream_close: bool,
    head_len: usize,
}

/// Derives what the proxy does with a response and writes the head the client gets into `out`
/// (left empty when the response is an upgrade nobody asked for). Returns the response facts,
/// whether the client connection closes afterwards, whether the body is de-chunked, and whether
/// the response is acceptable at all.
fn respond_head(
    rhead: ResponseHead,
    req: &Request,
    ubuf: &[u8],
    draining: bool,
    out: &mut Vec<u8>,
) -> (ResponseFacts, bool, bool, bool) {
    let facts = ResponseFacts {
        status: rhead.status,
        framing: rhead.framing(req.method),
        upstream_close: rhead.close,
        head_len: rhead.head_len,
    };
    let valid_upgrade = facts.status != 101 || req.upgrade;
    let dechunk = req.version == Version::Http10 && facts.framing == BodyFraming::Chunked;
    let close = !req.keep_alive || facts.framing == BodyFraming::UntilClose || dechunk || draining;
    out.clear();
    if valid_upgrade {
        let plan = ResponsePlan {
            close,
            client_version: req.version,
            dechunk,
        };
        write_response_head(ubuf, &rhead, plan, out);
    }
    (facts, close, dechunk, valid_upgrade)
}

impl Client {
    /// Serves one request, start to finish.
    ///
    /// Parsed heads (kilobytes of spans) are consumed by synchronous steps and never held across
    /// an `.await`, which keeps every connection's future small: that is most of what an idle
    /// keep-alive connection costs.
    pub(super) async fn exchange(&mut self, ctx: &WorkerCtx, cfg: &Config) -> Next {
        let started = Instant::now();
        let (decision, mut cbuf) = match self.read_head(ctx, cfg).await {
            Ok((mut head, mut cbuf)) => (self.prepare(ctx, cfg, &mut head, &mut cbuf), cbuf),
            Err(HeadFail::Closed) => return Next::Close,
            Err(HeadFail::H2) => return Next::H2,
            Err(HeadFail::Reject(status)) => {
                self.request_line.clear();
                let sent = self.send_status(ctx, cfg, status, true).await;
                self.log(ctx, status.code(), sent, started, None);
                return Next::Close;
            }
        };
        let Prepared {
            req,
            cluster,
            ep,
            keys,
            expect_continue,
            mut out,
            mut body,
            mut accel,
        } = match decision {
            Decision::Forward(p) => p,
            Decision::Answer(req, status) => {
                return self
                    .answer_early(ctx, cfg, cbuf, &req, status, started)
                    .await
            }
            Decision::Hit(req, hit) => {
                cbuf.drain(..req.head_len);
                self.buf = Some(cbuf);
                return self.serve_hit(ctx, cfg, &req, &hit, started).await;
            }
        };
        if expect_continue {
            let (res, _) = self
                .io
                .write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..], cfg.timeouts.idle)
                .await;
            if res.is_err() {
                ctx.buffers.give(out);
                self.buf = Some(cbuf);
                return Next::Close;
            }
        }
        if cfg.clusters[cluster].protocol == UpstreamProtocol::H2 {
            let facts = H1Request {
                method: req.method,
                version: req.version,
                keep_alive: req.keep_alive,
                chunked: req.framing == BodyFraming::Chunked,
            };
            return self
                .exchange_via_h2(ctx, cfg, (cluster, ep), out, cbuf, body, facts, started)
                .await;
        }
        // Coalescing, stale-while-revalidate and revalidation of a stored response.
        let mut fetch = None;
        let mut refresh_only = false;
        if let Some(creq) = accel.cache.as_mut() {
            if creq.stale_first {
                if let Some((_, entry)) = &creq.stored {
                    let hit = cache_fill::stale(creq, entry.clone(), cached::now_secs());
                    ctx.stats.cache_stale.inc();
                    // The client has its answer; the exchange below only refreshes the entry.
                    let close = !req.keep_alive || ctx.drain.is_fired();
                    let sent = self.write_hit(ctx, cfg, &hit, close, req.version).await;
                    let Some(sent) = sent else {
                        ctx.buffers.give(out);
                        self.buf = Some(cbuf);
                        return Next::Close;
                    };
                    ctx.stats.count_response(hit.code());
                    self.log(ctx, hit.code(), sent, started, None);
                    // One refresh per URL and worker: if one is under way, this one is done.
                    match ctx.cache.begin_fetch(creq.id, &creq.key) {
                        Ok(guard) => fetch = Some(guard),
                        Err(_) => {
                            ctx.buffers.give(out);
                            self.buf = Some(cbuf);
                            return self.after_refresh(&req, ctx);
                        }
                    }
                    refresh_only = true;
                }
            } else if creq.stored.is_none() {
                match ctx.cache.begin_fetch(creq.id, &creq.key) {
                    Ok(guard) => fetch = Some(guard),
                    Err(gate) => {
                        // Another request fetches this key on this worker: wait for it, then
                        // look again (and go upstream if it left nothing usable).
                        let _ = monoio::time::timeout(cfg.timeouts.upstream_response, gate.wait())
                            .await;
                        if let Some(hit) =
                            cached::relookup(ctx, cfg, creq, accel.compress_route, accel.compress)
                        {
                            ctx.buffers.give(out);
                            self.buf = Some(cbuf);
                            return self.serve_hit(ctx, cfg, &req, &hit, started).await;
                        }
                    }
                }
            }
            if let (Some((_, entry)), false) = (&creq.stored, creq.client_conditional) {
                cached::add_validators(&mut out, entry);
            }
        }
        // Safe to send twice: idempotent, and the whole body (if any) is already in `out`.
        let retryable = req.method.is_idempotent() && body.is_done();

        let mut attempts = Attempts::new(ctx, cluster, ep, keys.hash);
        let forwarded = self
            .forward(
                ctx,
                cfg,
                &mut attempts,
                &mut out,
                &mut cbuf,
                &mut body,
                retryable,
                if refresh_only {
                    Version::Http10
                } else {
                    req.version
                },
            )
            .await;
        let ep = attempts.ep;
        drop(attempts);
        let (mut up, mut ubuf, rhead, slot) = match forwarded {
            Ok(Forwarded {
                up,
                ubuf,
                head,
                slot,
            }) => (up, ubuf, head, slot),
            Err(fail) => {
                ctx.buffers.give(out);
                self.buf = Some(cbuf);
                if refresh_only {
                    return self.after_refresh(&req, ctx);
                }
                if let Some(hit) = accel
                    .cache
                    .as_mut()
                    .and_then(|c| cache_fill::stale_on_error(ctx, c))
                {
                    return self.serve_hit(ctx, cfg, &req, &hit, started).await;
                }
                let ForwardFail::Answer(status) = fail else {
                    return Next::Close;
                };
                let close = !body.is_done() || !req.keep_alive || ctx.drain.is_fired();
                let sent = self.send_status(ctx, cfg, status, close).await;
                self.log(ctx, status.code(), sent, started, Some(ep.id));
                return if close { Next::Close } else { Next::KeepAlive };
            }
        };
        if let Some((id, key)) = accel.invalidate.take() {
            if proxy_core::cache::policy::invalidates(req.method, rhead.status) {
                if let Some(store) = ctx.cache.store(id) {
                    store.borrow_mut().remove(&key);
                }
            }
        }
        let mut capture = None;
        if let Some(creq) = accel.cache.as_mut() {
            match cache_fill::on_response(ctx, cfg, creq, &ubuf, &rhead) {
                OnResponse::Serve(hit) => {
                    // A 304 (or an error standing in for one) is not forwarded: the stored
                    // response is. A bodiless 304 leaves the connection reusable.
                    let reusable = rhead.status == 304 && !rhead.close;
                    let head_len = rhead.head_len;
                    ubuf.drain(..head_len.min(ubuf.len()));
                    if reusable && ubuf.is_empty() {
                        ctx.upstreams.put(ep.id, up, Instant::now());
                    }
                    drop(slot);
                    ctx.recycle(ubuf);
                    ctx.buffers.give(out);
                    self.buf = Some(cbuf);
                    if refresh_only {
                        return self.after_refresh(&req, ctx);
                    }
                    return self.serve_hit(ctx, cfg, &req, &hit, started).await;
                }
                OnResponse::Forward(c) => capture = c,
            }
        }
        if capture.is_none() {
            // Nothing will be stored: requests waiting for this URL go on now, not after the
            // whole transfer.
            drop(fetch.take());
        }
        if refresh_only {
            // Nobody waits for these bytes: read the new response into the store.
            let mut rbody = BodyTracker::new(rhead.framing(req.method));
            let until_close = matches!(rbody, BodyTracker::UntilClose);
            let (head_len, close) = (rhead.head_len, rhead.close || until_close);
            ubuf.drain(..head_len);
            let read = cache_fill::read_into(
                &mut up,
                &mut ubuf,
                &mut rbody,
                &mut capture,
                cfg.timeouts.upstream_response,
            )
            .await;
            if let (Some(c), Some(creq)) = (capture, accel.cache.as_ref()) {
                c.finish(ctx, creq);
            }
            if read.is_ok() && !close && ubuf.is_empty() {
                ctx.upstreams.put(ep.id, up, Instant::now());
            }
            drop(slot);
            ctx.recycle(ubuf);
            ctx.buffers.give(out);
            self.buf = Some(cbuf);
            return self.after_refresh(&req, ctx);
        }
        // Compression: the coding and level, when this response gets it.
        let compress_settings = accel.compress_route.and_then(|ci| cfg.compressions.get(ci));
        let compressible = compress_settings
            .is_some_and(|c| compressing::should_compress(c, &ubuf, &rhead, req.method));
        let compress = accel
            .compress
            .zip(compress_settings)
            .filter(|_| compressible && req.version == Version::Http11)
            .map(|(enc, c)| (enc, c.level(enc)));
        // The response head is turned into facts and the client's head synchronously, and moved
        // into that step, so its spans are not part of the connection's future.
        let hsts = self.tls.as_ref().and_then(|t| t.hsts()).filter(|_| {
            rhead
                .headers
                .find(&ubuf, b"strict-transport-security")
                .is_none()
        });
        let (facts, close, dechunk, valid_upgrade) =
            respond_head(rhead, &req, &ubuf, ctx.drain.is_fired(), &mut out);
        if let Some(v) = hsts.filter(|_| valid_upgrade) {
            append_response_field(&mut out, b"Strict-Transport-Security", v.as_bytes());
        }
        if let Some(name) = &cfg.clusters[cluster].balance.sticky_cookie {
            let token = ctx.sticky_token(cluster, ep.id);
            if let (Some(t), true) = (token, valid_upgrade && token != keys.sticky) {
                append_response_field(&mut out, b"Set-Cookie", &sticky_set_cookie(name, t));
            }
        }
        if valid_upgrade {
            cached::mark_head(&accel, compress.map(|(e, _)| e), compressible, &mut out);
        }
        if !valid_upgrade {
            ctx.buffers.give(ubuf);
            ctx.buffers.give(out);
            self.buf = Some(cbuf);
            return self.bad_upstream_answer(ctx, cfg, started, ep.id).await;
        }
        if facts.status == 101 {
            out.extend_from_slice(&ubuf[facts.head_len..]);
            ctx.buffers.give(ubuf);
            let (res, out) = self.io.write_all(out, cfg.timeouts.idle).await;
            let sent = out.len() as u64;
            ctx.buffers.give(out);
            ctx.stats.count_response(101);
            self.log(ctx, 101, sent, started, Some(ep.id));
            self.buf = Some(cbuf);
            return if res.is_ok() {
                Next::Tunnel(up)
            } else {
                Next::Close
            };
        }

        // The response head, plus the body bytes that arrived with it, in one write.
        let mut rbody = BodyTracker::new(facts.framing);
        let mut compressing = compress.map(|(enc, level)| {
            ctx.stats.compressed.inc();
            Compressing::new(enc, level)
        });
        let avail = &ubuf[facts.head_len..];
        let taken = if let Some(c) = compressing.as_mut() {
            c.step(&mut rbody, avail)
                .inspect(|_| out.extend_from_slice(&c.out))
        } else if dechunk {
            rbody.advance_decoding(avail, &mut out)
        } else if avail.len() <= out.capacity() - out.len() {
            rbody
                .advance(avail)
                .inspect(|&n| out.extend_from_slice(&avail[..n]))
        } else {
            Ok(0)
        };
        let Ok(taken) = taken else {
            ctx.buffers.give(ubuf);
            ctx.buffers.give(out);
            self.buf = Some(cbuf);
            return self.bad_upstream_answer(ctx, cfg, started, ep.id).await;
        };
        if let Some(c) = capture.as_mut() {
            c.feed(&avail[..taken]);
        }
        ubuf.drain(..facts.head_len + taken);
        // The minimum rate covers this first write too: a reader with a tiny window blocks it.
        let rate = cfg
            .limits
            .min_client_rate
            .map(|r| MinRate::new(ClientSide::Dst, r, cfg.timeouts.header));
        let write_started = Instant::now();
        let limit = rate.map_or(cfg.timeouts.idle, |r| r.limit(cfg.timeouts.idle));
        let (res, o) = self.io.write_all(out, limit).await;
        out = o;
        let mut sent = out.len() as u64;
        let mut complete = res.is_ok();
        if complete && !rbody.is_done() {
            let timeouts = PumpTimeouts {
                src: cfg.timeouts.upstream_response,
                dst: cfg.timeouts.idle,
                client_rate: rate.map(|r| r.after_writing(sent, write_started.elapsed())),
            };
            ctx.upsize_for(&mut ubuf, &rbody);
            let relay = if let Some(c) = compressing.as_mut() {
                Relay::Compress(c)
            } else if dechunk {
                Relay::Dechunk(&mut out)
            } else {
                Relay::Raw
            };
            let extra = PumpExtra {
                limit: None,
                capture: capture.as_deref_mut(),
            };
            match pump(
                &mut up,
                &mut self.io,
                &mut ubuf,
                &mut rbody,
                timeouts,
                extra,
                relay,
            )
            .await
            {
                Ok(n) => sent += n,
                Err(e) => {
                    complete = false;
                    if e != PumpError::Dst {
                        ctx.stats.upstream_errors.inc();
                        tracing::warn!(conn = self.id, upstream = %ep.addr, error = ?e, "upstream failed mid-response; closing the client connection");
                    }
                }
            }
        }
        if complete {
            if let (Some(c), Some(creq)) = (capture, accel.cache.as_ref()) {
                c.finish(ctx, creq);
            }
        }
        drop(fetch);
        if complete
            && !facts.upstream_close
            && facts.framing != BodyFraming::UntilClose
            && ubuf.is_empty()
        {
            ctx.upstreams.put(ep.id, up, Instant::now());
        }
        drop(slot);
        ctx.recycle(ubuf);
        ctx.buffers.give(out);
        ctx.stats.count_response(facts.status);
        self.log(ctx, facts.status, sent, started, Some(ep.id));
        self.buf = Some(cbuf);
        if close || !complete {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Routes the request, checks its limits, picks an endpoint and writes the upstream request
    /// (head plus the body bytes already read, when they fit) into a pooled buffer. Consumes
    /// what it forwards from `cbuf`.
    fn prepare(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        head: &mut RequestHead,
        cbuf: &mut Vec<u8>,
    ) -> Decision {
        if ctx.access_log.is_some() {
            self.request_line.clear();
            self.request_line
                .extend_from_slice(head.method_span.of(cbuf));
            self.request_line.push(b' ');
            self.request_line.extend_from_slice(head.target.of(cbuf));
            self.request_line.extend_from_slice(match head.version {
                Version::Http10 => b" HTTP/1.0",
                Version::Http11 => b" HTTP/1.1",
            });
        }
        let req = Request::of(head);
        if head.target.len() > cfg.limits.max_uri_bytes {
            return Decision::Answer(req, Status::UriTooLong);
        }
        // From here on (routing, checks, the forwarded request line) only the canonical path.
        if let Err(e) = head.normalize_path(cbuf) {
            tracing::debug!(conn = self.id, reason = e.as_str(), "bad request");
            return Decision::Answer(req, e.status());
        }
        if self.misdirected(head.host_name(cbuf)) {
            return Decision::Answer(req, Status::MisdirectedRequest);
        }
        let Some(route) = cfg.router.matched(head.host_name(cbuf), head.path.of(cbuf)) else {
            return Decision::Answer(req, Status::NotFound);
        };
        let cluster = route.cluster;
        if let (BodyFraming::Length(n), Some(max)) = (req.framing, cfg.limits.max_body_bytes) {
            if n > max {
                return Decision::Answer(req, Status::PayloadTooLarge);
            }
        }
        let accel = if route.cache.is_some() || route.compress.is_some() {
            let scheme: &[u8] = if self.tls.is_some() {
                b"https"
            } else {
                b"http"
            };
            match cached::plan(ctx, cfg, route, head, cbuf, scheme) {
                Planned::Hit(hit) => return Decision::Hit(req, hit),
                Planned::Plan(p) => *p,
                Planned::Answer(status) => return Decision::Answer(req, status),
            }
        } else {
            AccelPlan::default()
        };
        let c = &cfg.clusters[cluster];
        let keys = request_keys(&c.balance, head, cbuf, self.ip.as_bytes());
        let Some(ep) = ctx.pick(cluster, keys.hash, keys.sticky, &[]) else {
            if let Some(c) = ctx.lb.counters.clusters.get(cluster) {
                c.no_endpoint.inc();
            }
            return Decision::Answer(req, Status::ServiceUnavailable);
        };
        let mut out = ctx.buffers.take();
        let tls = self.tls.as_ref();
        let fctx = ForwardContext {
            client_ip: self.ip.as_bytes(),
            scheme: if tls.is_some() { b"https" } else { b"http" },
            upstream_authority: ctx.endpoint_authority(ep.id),
            identity: tls.and_then(|t| t.identity()),
        };
        write_request_head(cbuf, head, &cfg.forward, &fctx, &mut out);
        let mut body = BodyTracker::new(req.framing);
        let avail = &cbuf[req.head_len..];
        let mut consumed = req.head_len;
        if avail.len() <= out.capacity() - out.len() {
            // Chunked bodies are re-framed, never copied as the client framed them.
            match body.advance_reframing(avail, &mut out) {
                Ok(_) if body.over_limit(cfg.limits.max_body_bytes) => {
                    ctx.buffers.give(out);
                    return Decision::Answer(req, Status::PayloadTooLarge);
                }
                Ok(n) => consumed += n,
                Err(_) => {
                    ctx.buffers.give(out);
                    return Decision::Answer(req, Status::BadRequest);
                }
            }
        }
        let expect_continue =
            head.expect_continue && req.framing != BodyFraming::None && cbuf.len() == req.head_len;
        cbuf.drain(..consumed);
        Decision::Forward(Prepared {
            req,
            cluster,
            ep,
            keys,
            expect_continue,
            out,
            body,
            accel,
        })
    }
}
