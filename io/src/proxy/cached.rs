//! Web acceleration on the HTTP/1 exchange, before any upstream is involved: what the cache and
//! compression do for one request (decided from its head), the lookup of a stored response
//! (and of its compressed variant, made once per worker), and the marks a forwarded response
//! gets (`X-Cache`, `Vary`, `Content-Encoding`). The upstream's side is `cache_fill`, writing
//! a stored response `cache_serve`, compressing on the fly `compressing`. The semantics are
//! `proxy_core::cache::policy`'s; the per-worker stores and coalescing are `crate::cache`'s.

use crate::cache::Entry;
use crate::worker::WorkerCtx;
use bytes::Bytes;
use proxy_core::cache::control::RequestControl;
use proxy_core::cache::date::parse_http_date;
use proxy_core::cache::head::{field, ServedHead};
use proxy_core::cache::key::{primary_key, secondary_key};
use proxy_core::cache::policy::{self, Serve};
use proxy_core::compress::{content_type_matches, negotiate, Encoder, Encoding};
use proxy_core::config::{CompressSettings, Config};
use proxy_core::http1::{has_token, parse_request, BodyFraming, Method, RequestHead, Version};
use proxy_core::route::Route;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the cache reports in its status field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CacheStatus {
    Hit,
    Miss,
    Stale,
    Revalidated,
    Bypass,
}

impl CacheStatus {
    fn text(self) -> &'static [u8] {
        self.text_str().as_bytes()
    }

    fn text_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// Seconds since the epoch, as the cache counts time.
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What web acceleration does for one request.
#[derive(Default)]
pub(super) struct AccelPlan {
    /// The route's cache takes part (lookup done, the response may be stored). Boxed: the
    /// plan lives in the connection's future, and most requests have no cache part.
    pub(super) cache: Option<Box<CacheReq>>,
    /// The route caches but this request goes around it (`BYPASS`), with the status field name.
    pub(super) bypass: Option<Rc<str>>,
    /// A successful unsafe request removes this key from this cache.
    pub(super) invalidate: Option<(usize, Vec<u8>)>,
    /// The route compresses GET responses: the index of its settings.
    pub(super) compress_route: Option<usize>,
    /// The coding the client accepts, when the route compresses.
    pub(super) compress: Option<Encoding>,
}

/// The cache's part in one request.
pub(super) struct CacheReq {
    pub(super) id: usize,
    pub(super) key: Vec<u8>,
    pub(super) control: RequestControl,
    pub(super) method: Method,
    pub(super) authorization: bool,
    /// The client sent its own validators: its conditional request goes upstream as it is, and
    /// a 304 answer is passed on, not stored.
    pub(super) client_conditional: bool,
    /// A copy of the request head, for the `Vary` key of a response that is stored.
    pub(super) req_head: Vec<u8>,
    /// A stored variant that must be revalidated (or may be served on error), with its
    /// secondary key.
    pub(super) stored: Option<(Vec<u8>, Entry)>,
    /// Serve `stored` now (stale-while-revalidate) and refresh it after.
    pub(super) stale_first: bool,
    /// When the request was looked up (seconds).
    pub(super) request_time: u64,
    /// The status field name, if any.
    pub(super) status_field: Option<Rc<str>>,
    /// The route compresses (stored responses served say `Vary: Accept-Encoding` when their
    /// type would be compressed).
    pub(super) vary_coding: bool,
}

/// A stored response to serve.
pub(super) struct Hit {
    pub(super) entry: Entry,
    /// Say `Vary: Accept-Encoding`: the route would compress this response for a client that
    /// asked (so caches downstream keep the variants apart).
    pub(super) vary_coding: bool,
    pub(super) status: CacheStatus,
    pub(super) status_field: Option<Rc<str>>,
    pub(super) head_only: bool,
    pub(super) not_modified: bool,
    pub(super) now: u64,
}

impl Hit {
    /// Writes the response head for `client_version` into `out`.
    pub(super) fn write_head(&self, close: bool, client_version: Version, out: &mut Vec<u8>) {
        let served = ServedHead {
            age: policy::current_age(&self.entry.meta, self.now),
            length: Some(self.entry.body.len() as u64),
            status_field: self
                .status_field
                .as_deref()
                .map(|n| (n.as_bytes(), self.status.text())),
            encoding: self.entry.encoding.map(|e| e.token().as_bytes()),
            close,
            client_version,
        };
        proxy_core::cache::head::write_served_head(
            &self.entry.fields,
            &served,
            self.not_modified,
            out,
        );
        if self.vary_coding && self.entry.encoding.is_none() {
            proxy_core::cache::head::add_vary(out, b"Accept-Encoding");
        }
    }

    /// The body to send after the head (none for HEAD and 304).
    pub(super) fn body(&self) -> Option<Bytes> {
        (!self.head_only && !self.not_modified && !self.entry.body.is_empty())
            .then(|| self.entry.body.clone())
    }

    /// The status the client sees.
    pub(super) fn code(&self) -> u16 {
        if self.not_modified {
            304
        } else {
            proxy_core::cache::head::stored_status(&self.entry.fields)
        }
    }
}

/// The plan, or a stored response to serve at once.
pub(super) enum Planned {
    Hit(Box<Hit>),
    Plan(Box<AccelPlan>),
    /// Answer with this status without going upstream (`only-if-cached` and nothing usable).
    Answer(proxy_core::Status),
}

/// The values of field `name` in a request head.
fn values<'a>(
    head: &'a RequestHead,
    buf: &'a [u8],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.headers
        .as_slice()
        .iter()
        .filter(move |h| h.name.of(buf).eq_ignore_ascii_case(name))
        .map(move |h| h.value.of(buf))
}

/// The secondary key of the request in `buf` for the `Vary` names `names`, plus the coding of
/// a compressed variant.
pub(super) fn variant_key(
    names: &[String],
    head: &RequestHead,
    buf: &[u8],
    enc: Option<Encoding>,
) -> Vec<u8> {
    let mut out = Vec::new();
    secondary_key(names, |n| values(head, buf, n.as_bytes()), &mut out);
    if let Some(e) = enc {
        out.push(1);
        out.extend_from_slice(e.token().as_bytes());
    }
    out
}

/// Decides what the cache and compression do for a request routed by `route`, and serves
/// fresh stored responses at once.
pub(super) fn plan(
    ctx: &WorkerCtx,
    cfg: &Config,
    route: &Route,
    head: &RequestHead,
    buf: &[u8],
    scheme: &[u8],
) -> Planned {
    let mut plan = AccelPlan::default();
    if let Some(ci) = route.compress.filter(|_| head.method == Method::Get) {
        if let Some(c) = cfg.compressions.get(ci) {
            plan.compress_route = Some(ci);
            plan.compress = negotiate(values(head, buf, b"accept-encoding"), &c.encodings);
        }
    }
    let Some((id, settings)) = route
        .cache
        .and_then(|id| cfg.caches.get(id).map(|c| (id, c)))
    else {
        return Planned::Plan(Box::new(plan));
    };
    let status_field: Option<Rc<str>> = settings.status_header.as_deref().map(Rc::from);
    let mut key = Vec::with_capacity(64);
    primary_key(
        scheme,
        head.host_name(buf).unwrap_or_default(),
        head.path.of(buf),
        &mut key,
    );
    if !matches!(head.method, Method::Get | Method::Head) {
        if !matches!(head.method, Method::Options | Method::Trace) {
            plan.invalidate = Some((id, key));
        }
        plan.bypass = status_field;
        ctx.stats.cache_bypass.inc();
        return Planned::Plan(Box::new(plan));
    }
    let control = RequestControl::parse(
        values(head, buf, b"cache-control"),
        values(head, buf, b"pragma").any(|v| has_token(v, b"no-cache")),
    );
    let eligible = head.framing == BodyFraming::None
        && !head.upgrade
        && !control.no_store
        && head.headers.find(buf, b"range").is_none();
    if !eligible {
        plan.bypass = status_field;
        ctx.stats.cache_bypass.inc();
        return Planned::Plan(Box::new(plan));
    }
    let client_conditional = [
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
    ]
    .iter()
    .any(|n| head.headers.find(buf, n.as_bytes()).is_some());
    let now = now_secs();
    let mut req = CacheReq {
        id,
        key,
        control,
        method: head.method,
        authorization: head.headers.find(buf, b"authorization").is_some(),
        client_conditional,
        req_head: Vec::new(),
        stored: None,
        stale_first: false,
        request_time: now,
        status_field: status_field.clone(),
        vary_coding: plan.compress_route.is_some(),
    };
    let compress = compress_of(cfg, plan.compress_route, plan.compress);
    if let Some(found) = lookup(ctx, &req, head, buf) {
        let (variant, entry) = found;
        match policy::evaluate(&entry.meta, &control, now) {
            Serve::Fresh => {
                ctx.stats.cache_hits.inc();
                let entry = served_variant(ctx, &req, head, buf, compress, entry);
                let not_modified = client_conditional && not_modified(head, buf, &entry);
                let settings = plan.compress_route.and_then(|ci| cfg.compressions.get(ci));
                return Planned::Hit(Box::new(Hit {
                    vary_coding: codable(&entry, settings),
                    entry,
                    status: CacheStatus::Hit,
                    status_field,
                    head_only: head.method == Method::Head,
                    not_modified,
                    now,
                }));
            }
            Serve::StaleWhileRevalidate => {
                req.stale_first = true;
                req.stored = Some((variant, entry));
            }
            Serve::Revalidate => req.stored = Some((variant, entry)),
        }
    }
    if control.only_if_cached && (req.stored.is_none() || !req.stale_first) {
        // RFC 9111 §5.2.1.7: nothing stored that may be used without the origin.
        return Planned::Answer(proxy_core::Status::GatewayTimeout);
    }
    req.req_head = buf[..head.head_len].to_vec();
    plan.cache = Some(Box::new(req));
    Planned::Plan(Box::new(plan))
}

/// The compression settings and coding for a stored variant, when the client accepts one.
fn compress_of(
    cfg: &Config,
    route: Option<usize>,
    enc: Option<Encoding>,
) -> Option<(&CompressSettings, Encoding)> {
    Some((cfg.compressions.get(route?)?, enc?))
}

/// Looks `req` up again after waiting for another request's fetch of the same key: a fresh
/// stored response, or `None` (go upstream).
pub(super) fn relookup(
    ctx: &WorkerCtx,
    cfg: &Config,
    req: &CacheReq,
    compress_route: Option<usize>,
    enc: Option<Encoding>,
) -> Option<Hit> {
    let head = parse_request(&req.req_head).ok().flatten()?;
    let compress = compress_of(cfg, compress_route, enc);
    let (_, entry) = lookup(ctx, req, &head, &req.req_head)?;
    let now = now_secs();
    if policy::evaluate(&entry.meta, &req.control, now) != Serve::Fresh {
        return None;
    }
    let entry = served_variant(ctx, req, &head, &req.req_head, compress, entry);
    ctx.stats.cache_hits.inc();
    let settings = compress_route.and_then(|ci| cfg.compressions.get(ci));
    Some(Hit {
        not_modified: req.client_conditional && not_modified(&head, &req.req_head, &entry),
        vary_coding: codable(&entry, settings),
        entry,
        status: CacheStatus::Hit,
        status_field: req.status_field.clone(),
        head_only: req.method == Method::Head,
        now,
    })
}

/// Marks the client's head of a forwarded response: compressed with `enc`, or varying on
/// `Accept-Encoding` when it could have been; and the cache status (`MISS`, `BYPASS`).
pub(super) fn mark_head(
    plan: &AccelPlan,
    enc: Option<Encoding>,
    compressible: bool,
    out: &mut Vec<u8>,
) {
    if let Some(enc) = enc {
        proxy_core::cache::head::encode_head(out, enc.token().as_bytes(), true);
    } else if compressible {
        proxy_core::cache::head::add_vary(out, b"Accept-Encoding");
    }
    let status = match (&plan.cache, &plan.bypass) {
        (Some(c), _) => c.status_field.as_deref().map(|n| (n, CacheStatus::Miss)),
        (None, Some(n)) => Some((&**n, CacheStatus::Bypass)),
        (None, None) => None,
    };
    if let Some((name, status)) = status {
        proxy_core::cache::head::insert_field(out, name.as_bytes(), status.text());
    }
}

/// Whether the route's compression would apply to `entry` (for `Vary: Accept-Encoding`).
fn codable(entry: &Entry, settings: Option<&CompressSettings>) -> bool {
    settings.is_some_and(|c| {
        entry.compressible
            && field(&entry.fields, b"content-type")
                .is_some_and(|t| content_type_matches(t, &c.types))
            && entry.body.len() as u64 >= c.min_bytes
    })
}

/// Adds the cache status (`MISS`, `BYPASS`) to an HTTP/2 response's fields.
pub(crate) fn mark_h2(plan: &AccelPlan, headers: &mut http::HeaderMap) {
    let status = match (&plan.cache, &plan.bypass) {
        (Some(c), _) => c.status_field.as_deref().map(|n| (n, CacheStatus::Miss)),
        (None, Some(n)) => Some((&**n, CacheStatus::Bypass)),
        (None, None) => None,
    };
    if let Some((name, status)) = status {
        if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
            headers.insert(name, http::HeaderValue::from_static(status.text_str()));
        }
    }
}

/// Marks an HTTP/2 response's fields for a body compressed with `enc`: no length, the coding,
/// `Vary: Accept-Encoding`, a weak `ETag`. With `None` (compressible, but not asked for) only
/// the `Vary`.
pub(crate) fn encode_h2(headers: &mut http::HeaderMap, enc: Option<Encoding>) {
    use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, ETAG, VARY};
    let varies = headers.get_all(VARY).iter().any(|v| {
        v.as_bytes() == b"*"
            || v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"))
    });
    if !varies {
        headers.append(VARY, http::HeaderValue::from_static("Accept-Encoding"));
    }
    let Some(enc) = enc else {
        return;
    };
    headers.remove(CONTENT_LENGTH);
    headers.insert(
        CONTENT_ENCODING,
        http::HeaderValue::from_static(enc.token()),
    );
    if let Some(tag) = headers
        .get(ETAG)
        .filter(|t| !t.as_bytes().starts_with(b"W/"))
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(tag.as_bytes());
        if let Ok(v) = http::HeaderValue::from_bytes(&weak) {
            headers.insert(ETAG, v);
        }
    }
}

/// The identity variant stored for this request, with its secondary key.
fn lookup(
    ctx: &WorkerCtx,
    req: &CacheReq,
    head: &RequestHead,
    buf: &[u8],
) -> Option<(Vec<u8>, Entry)> {
    let store = ctx.cache.store(req.id)?;
    let mut store = store.borrow_mut();
    let names = store.any_variant(&req.key)?.vary.clone();
    let plain = variant_key(&names, head, buf, None);
    let entry = store.get(&req.key, &plain)?.clone();
    Some((plain, entry))
}

/// What to serve for a fresh identity `entry`: itself, or for a client that accepts a coding
/// the route would apply, the compressed variant (made from `entry` once per worker, with its
/// freshness; a refresh or a new identity variant drops the compressed ones).
fn served_variant(
    ctx: &WorkerCtx,
    req: &CacheReq,
    head: &RequestHead,
    buf: &[u8],
    compress: Option<(&CompressSettings, Encoding)>,
    entry: Entry,
) -> Entry {
    let Some((settings, enc)) =
        compress.filter(|(c, _)| entry.encoding.is_none() && codable(&entry, Some(c)))
    else {
        return entry;
    };
    let coded = variant_key(&entry.vary, head, buf, Some(enc));
    let Some(store) = ctx.cache.store(req.id) else {
        return entry;
    };
    if let Some(e) = store.borrow_mut().get(&req.key, &coded) {
        return e.clone();
    }
    let mut encoder = Encoder::new(enc, settings.level(enc));
    let mut body = Vec::with_capacity(entry.body.len() / 3 + 64);
    if encoder.write(&entry.body, &mut body).is_err() || encoder.finish(&mut body).is_err() {
        return entry;
    }
    let mut fields = entry.fields.to_vec();
    fields.extend_from_slice(b"\r\n");
    proxy_core::cache::head::add_vary(&mut fields, b"Accept-Encoding");
    fields.truncate(fields.len() - 2);
    let coded_entry = Entry {
        fields: Bytes::from(weaken_etag(fields)),
        body: Bytes::from(body),
        encoding: Some(enc),
        ..entry
    };
    ctx.stats.compressed.inc();
    store
        .borrow_mut()
        .insert(&req.key, &coded, coded_entry.clone());
    coded_entry
}

/// A stored head with its strong `ETag` made weak (a compressed variant's bytes differ).
pub(super) fn weaken_etag(fields: Vec<u8>) -> Vec<u8> {
    const ETAG: &[u8] = b"\r\nETag: \"";
    match fields
        .windows(ETAG.len())
        .position(|w| w.eq_ignore_ascii_case(ETAG))
    {
        Some(at) => {
            let mut out = Vec::with_capacity(fields.len() + 2);
            out.extend_from_slice(&fields[..at + 8]);
            out.extend_from_slice(b"W/");
            out.extend_from_slice(&fields[at + 8..]);
            out
        }
        None => fields,
    }
}

/// Whether the client's own validators match `entry` (RFC 9110 §13.1.2, §13.1.3; If-None-Match
/// takes precedence).
fn not_modified(head: &RequestHead, buf: &[u8], entry: &Entry) -> bool {
    if let Some(inm) = head.headers.find(buf, b"if-none-match") {
        let Some(etag) = &entry.etag else {
            return false;
        };
        let opaque = |t: &[u8]| t.strip_prefix(b"W/").unwrap_or(t).to_vec();
        let mine = opaque(etag);
        return inm
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| t == b"*" || opaque(t) == mine);
    }
    match (
        head.headers.find(buf, b"if-modified-since"),
        &entry.last_modified,
    ) {
        (Some(ims), Some(lm)) => match (parse_http_date(ims), parse_http_date(lm)) {
            (Some(ims), Some(lm)) => lm <= ims,
            _ => false,
        },
        _ => false,
    }
}

/// Appends the validators of `entry` to the upstream request head in `out` (head only, no body).
pub(super) fn add_validators(out: &mut Vec<u8>, entry: &Entry) {
    if let Some(etag) = &entry.etag {
        proxy_core::cache::head::insert_field(out, b"If-None-Match", etag);
    }
    if let Some(lm) = &entry.last_modified {
        proxy_core::cache::head::insert_field(out, b"If-Modified-Since", lm);
    }
}
