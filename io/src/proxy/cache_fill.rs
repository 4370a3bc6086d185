//! The cache's side of an upstream answer: refresh a stored response from a 304, serve a stale
//! one when the origin failed (stale-if-error), or copy a storable response into the worker's
//! store while it streams to the client (`Capture`), and read a refreshed response that no
//! client waits for (stale-while-revalidate). Decisions are `proxy_core::cache::policy`'s.

use super::body::{BodyTracker, PumpError};
use super::cached::{now_secs, variant_key, CacheReq, CacheStatus, Hit};
use crate::cache::Entry;
use crate::stream::Timed;
use crate::worker::WorkerCtx;
use bytes::Bytes;
use proxy_core::cache::control::ResponseControl;
use proxy_core::cache::date::parse_http_date;
use proxy_core::cache::head::{field, merge_304, stored_head};
use proxy_core::cache::key::vary_names;
use proxy_core::cache::policy::{self, RequestFacts, ResponseMeta};
use proxy_core::cache::store::Store;
use proxy_core::compress::Encoding;
use proxy_core::config::{CacheSettings, Config};
use proxy_core::http1::{parse_request, BodyFraming, Method, ResponseHead};
use std::rc::Rc;
use std::time::Duration;

/// What the cache does with an upstream response head.
pub(super) enum OnResponse {
    /// Serve the stored entry (refreshed by a 304, or stale on an error) instead.
    Serve(Box<Hit>),
    /// Forward it; capture the body for storing when given.
    Forward(Option<Box<Capture>>),
}

/// The facts of a response for the cache.
pub(super) fn response_meta(
    buf: &[u8],
    head: &ResponseHead,
    request_time: u64,
    now: u64,
) -> ResponseMeta {
    let all = |name: &'static [u8]| {
        head.headers
            .as_slice()
            .iter()
            .filter(move |h| h.name.of(buf).eq_ignore_ascii_case(name))
            .map(move |h| h.value.of(buf))
    };
    ResponseMeta {
        status: head.status,
        control: ResponseControl::parse(all(b"cache-control")),
        date: head.headers.find(buf, b"date").and_then(parse_http_date),
        expires: head
            .headers
            .find(buf, b"expires")
            .map(|v| parse_http_date(v).unwrap_or(0)),
        last_modified: head
            .headers
            .find(buf, b"last-modified")
            .and_then(parse_http_date),
        age: head
            .headers
            .find(buf, b"age")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        request_time,
        response_time: now,
    }
}

/// Decides what to do with the upstream response `head` (in `ubuf`) for the cache request `req`.
pub(super) fn on_response(
    ctx: &WorkerCtx,
    cfg: &Config,
    req: &mut CacheReq,
    ubuf: &[u8],
    head: &ResponseHead,
) -> OnResponse {
    let now = now_secs();
    let meta = response_meta(ubuf, head, req.request_time, now);
    if let Some((variant, entry)) = req.stored.take() {
        if head.status == 304 && !req.client_conditional {
            let had_cc = head.headers.find(ubuf, b"cache-control").is_some();
            let mut refreshed = entry;
            policy::refresh(&mut refreshed.meta, &meta, had_cc);
            // RFC 9111 §3.2: the 304's fields replace the stored ones of the same name.
            let status_field = req.status_field.as_deref().map(str::as_bytes);
            let mut fields = merge_304(&refreshed.fields, ubuf, head, status_field);
            if refreshed.encoding.is_some() {
                // The origin's validator names the identity bytes, not this coding of them.
                fields = super::cached::weaken_etag(fields);
            }
            refreshed.fields = Bytes::from(fields);
            refreshed.etag = field(&refreshed.fields, b"etag").map(Bytes::copy_from_slice);
            refreshed.last_modified =
                field(&refreshed.fields, b"last-modified").map(Bytes::copy_from_slice);
            if let Some(store) = ctx.cache.store(req.id) {
                let mut store = store.borrow_mut();
                // Inserted again, not changed in place: the fields may have changed size. The
                // compressed variants made from the old identity entry go; they are made again.
                store.insert(&req.key, &variant, refreshed.clone());
                drop_coded(&mut store, &req.key, &variant);
            }
            ctx.stats.cache_revalidated.inc();
            return OnResponse::Serve(Box::new(Hit {
                vary_coding: req.vary_coding && refreshed.compressible,
                entry: refreshed,
                status: CacheStatus::Revalidated,
                status_field: req.status_field.clone(),
                head_only: req.method == Method::Head,
                not_modified: false,
                now,
            }));
        }
        if head.status >= 500 && policy::stale_if_error(&entry.meta, &req.control, now) {
            ctx.stats.cache_stale.inc();
            return OnResponse::Serve(Box::new(stale(req, entry, now)));
        }
    }
    ctx.stats.cache_misses.inc();
    let Some(settings) = cfg.caches.get(req.id) else {
        return OnResponse::Forward(None);
    };
    OnResponse::Forward(capture_for(settings, req, ubuf, head, &meta).map(Box::new))
}

/// The stale entry of `req`, served because the origin failed.
pub(super) fn stale(req: &CacheReq, entry: Entry, now: u64) -> Hit {
    Hit {
        vary_coding: req.vary_coding && entry.compressible,
        entry,
        status: CacheStatus::Stale,
        status_field: req.status_field.clone(),
        head_only: req.method == Method::Head,
        not_modified: false,
        now,
    }
}

/// Whether the request's stale entry may stand in for a failed upstream exchange.
pub(super) fn stale_on_error(ctx: &WorkerCtx, req: &mut CacheReq) -> Option<Hit> {
    let now = now_secs();
    let (_, entry) = req
        .stored
        .take_if(|(_, e)| policy::stale_if_error(&e.meta, &req.control, now))?;
    ctx.stats.cache_stale.inc();
    Some(stale(req, entry, now))
}

/// A response body being copied for the store.
pub(super) struct Capture {
    tracker: BodyTracker,
    body: Vec<u8>,
    max: usize,
    overflow: bool,
    fields: Vec<u8>,
    meta: ResponseMeta,
    vary: Rc<[String]>,
    variant: Vec<u8>,
    etag: Option<Bytes>,
    last_modified: Option<Bytes>,
    compressible: bool,
}

impl Capture {
    /// Takes the wire bytes of the body as they are relayed.
    pub(super) fn feed(&mut self, wire: &[u8]) {
        if self.overflow {
            return;
        }
        if self.tracker.advance_decoding(wire, &mut self.body).is_err()
            || self.body.len() > self.max
        {
            self.overflow = true;
            self.body = Vec::new();
        }
    }

    /// Stores the captured response if the whole body arrived.
    pub(super) fn finish(self: Box<Self>, ctx: &WorkerCtx, req: &CacheReq) {
        if self.overflow || !self.tracker.is_done() {
            return;
        }
        let entry = Entry {
            meta: self.meta,
            fields: Bytes::from(self.fields),
            body: Bytes::from(self.body),
            etag: self.etag,
            last_modified: self.last_modified,
            vary: self.vary,
            encoding: None,
            compressible: self.compressible,
        };
        if let Some(store) = ctx.cache.store(req.id) {
            let mut store = store.borrow_mut();
            // Variants of another Vary set (the origin changed its mind) cannot be matched any
            // more: start the key over.
            if store
                .any_variant(&req.key)
                .is_some_and(|e| e.vary != entry.vary)
            {
                store.remove(&req.key);
            }
            // A new identity variant makes compressed ones made from the old one stale.
            if entry.compressible {
                drop_coded(&mut store, &req.key, &self.variant);
            }
            if store.insert(&req.key, &self.variant, entry) {
                ctx.stats.cache_stored.inc();
            }
        }
    }
}

/// A capture for a storable response, or `None`.
fn capture_for(
    settings: &CacheSettings,
    req: &CacheReq,
    ubuf: &[u8],
    head: &ResponseHead,
    meta: &ResponseMeta,
) -> Option<Capture> {
    let values = |name: &'static [u8]| {
        head.headers
            .as_slice()
            .iter()
            .filter(move |h| h.name.of(ubuf).eq_ignore_ascii_case(name))
            .map(move |h| h.value.of(ubuf))
    };
    let vary = vary_names(values(b"vary"));
    let facts = RequestFacts {
        method: req.method,
        control: req.control,
        authorization: req.authorization,
    };
    let set_cookie = head.headers.find(ubuf, b"set-cookie").is_some();
    // A HEAD response has no body to store: storing it would answer later GETs with none.
    if req.method == Method::Head
        || req.client_conditional
        || policy::storable(&facts, meta, set_cookie, vary.is_err()).is_err()
        || head
            .content_length
            .is_some_and(|n| n > settings.max_object_bytes)
        || head.close && !head.chunked && head.content_length.is_none()
    {
        return None;
    }
    let vary: Rc<[String]> = vary.ok()?.into();
    let rhead = parse_request(&req.req_head).ok().flatten()?;
    let variant = variant_key(&vary, &rhead, &req.req_head, None);
    let mut fields = Vec::with_capacity(head.head_len);
    stored_head(
        ubuf,
        head,
        req.status_field.as_deref().map(str::as_bytes),
        &mut fields,
    );
    let encoded = head.headers.find(ubuf, b"content-encoding").is_some();
    let content_type = head.headers.find(ubuf, b"content-type").unwrap_or_default();
    Some(Capture {
        tracker: BodyTracker::new(framing_of(head, req.method)),
        body: Vec::with_capacity(head.content_length.map_or(4096, |n| n as usize)),
        max: usize::try_from(settings.max_object_bytes).unwrap_or(usize::MAX),
        overflow: false,
        etag: field(&fields, b"etag").map(Bytes::copy_from_slice),
        last_modified: field(&fields, b"last-modified").map(Bytes::copy_from_slice),
        fields,
        meta: *meta,
        vary,
        variant,
        // The route's types and minimum size are checked when a variant is made.
        compressible: !encoded
            && !meta.control.no_transform
            && head.status == 200
            && !content_type.is_empty(),
    })
}

/// The body framing of a response to `method`.
fn framing_of(head: &ResponseHead, method: Method) -> BodyFraming {
    head.framing(method)
}

/// Reads the rest of a response body from `up` into `capture` only (a background refresh: no
/// client waits for these bytes). Bytes already read are in `ubuf`.
pub(super) async fn read_into(
    up: &mut Timed,
    ubuf: &mut Vec<u8>,
    body: &mut BodyTracker,
    capture: &mut Option<Box<Capture>>,
    timeout: Duration,
) -> Result<(), PumpError> {
    loop {
        let n = body.advance(ubuf)?;
        if let Some(c) = capture.as_mut() {
            c.feed(&ubuf[..n]);
        }
        ubuf.drain(..n);
        if body.is_done() {
            return Ok(());
        }
        let (res, b) = up.read_append(std::mem::take(ubuf), timeout).await;
        *ubuf = b;
        match res {
            Ok(0) if matches!(body, BodyTracker::UntilClose) => {
                *body = BodyTracker::Done;
                return Ok(());
            }
            Ok(0) => return Err(PumpError::SrcClosed),
            Ok(_) => {}
            Err(_) => return Err(PumpError::SrcIo),
        }
    }
}

/// Removes the compressed variants made from the identity variant `variant` of `key`.
fn drop_coded(store: &mut Store<Entry>, key: &[u8], variant: &[u8]) {
    for enc in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
        let mut coded = variant.to_vec();
        coded.push(1);
        coded.extend_from_slice(enc.token().as_bytes());
        store.remove_variant(key, &coded);
    }
}
