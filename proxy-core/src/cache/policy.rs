//! RFC 9111 rules for a shared cache, as pure functions of a response's meta, a request's
//! facts and `now`: whether a response may be stored (§3), its freshness lifetime (§4.2.1,
//! §4.2.2) and age (§4.2.3), whether a stored response may be served, served stale or must be
//! revalidated (§4.2, §5.2, RFC 5861), which responses invalidate a URI (§4.4), and how a 304
//! refreshes a stored response (§4.3.4).
//!
//! Times are u64 seconds since the Unix epoch, passed in; every subtraction saturates, so a
//! clock that steps backwards or a Date from the future never panics. This file reads no
//! header and touches no store: the caller parses heads into [`ResponseMeta`] and
//! [`RequestFacts`] (with `control` and `date`) and acts on the answers.

use super::control::{RequestControl, ResponseControl};
use crate::http1::Method;

/// What the cache knows about a response (from its head and when it arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMeta {
    /// The status code.
    pub status: u16,
    /// Its Cache-Control directives.
    pub control: ResponseControl,
    /// Date: None if absent or invalid.
    pub date: Option<u64>,
    /// Expires: None if absent; Some(0) if present but invalid (§5.3: already expired).
    pub expires: Option<u64>,
    /// Last-Modified: None if absent or invalid.
    pub last_modified: Option<u64>,
    /// The Age field's value (0 when absent or invalid).
    pub age: u64,
    /// When the request was sent upstream.
    pub request_time: u64,
    /// When the response head arrived.
    pub response_time: u64,
}

/// The request facts that matter for storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts {
    /// The request method.
    pub method: Method,
    /// The request's Cache-Control directives.
    pub control: RequestControl,
    /// Whether the request carried an Authorization field.
    pub authorization: bool,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// The method is not GET or HEAD.
    Method,
    /// The status is not one this cache stores.
    Status,
    /// 206 Partial Content: Ringway does not store partial responses.
    Partial,
    /// The request said `no-store`.
    RequestNoStore,
    /// The response said `no-store`.
    NoStore,
    /// The response said `private` (a shared cache must not store it).
    Private,
    /// The request carried Authorization and the response did not allow sharing it (§3.5).
    Authorization,
    /// The response sets a cookie.
    SetCookie,
    /// The response varies on `*`.
    VaryStar,
    /// Nothing gives the response a freshness lifetime.
    NoFreshness,
}

/// RFC 9111 §3 for a shared cache.
///
/// Checked in this order, the first failure is returned:
/// - method: GET and HEAD only;
/// - status: 206 is [`NotStorable::Partial`]; otherwise the status must be one Ringway
///   understands: the heuristically cacheable ones of RFC 9110 §15.1 (200, 203, 204, 300,
///   301, 308, 404, 405, 410, 414, 501) or a redirect that is storable with explicit
///   freshness only (302, 303, 307). Every other status (1xx, other 2xx, 304, other 4xx, and
///   5xx other than 501) is [`NotStorable::Status`];
/// - request `no-store`, response `no-store`, `private` (qualified or not);
/// - Authorization on the request, unless the response has `public`, `s-maxage` or
///   `must-revalidate` (§3.5);
/// - `set_cookie` (the response has a Set-Cookie field): a deliberate Ringway choice, as in
///   nginx and Varnish: a shared cache never replays one user's cookie to others, even where
///   RFC 9111 would allow it;
/// - `vary_star` (Vary lists `*`, §4.1);
/// - explicit freshness (`max-age`, `s-maxage` or Expires), a heuristically cacheable status,
///   or `public`; otherwise [`NotStorable::NoFreshness`].
///
/// A response with `no-cache` is storable: [`evaluate`] always revalidates it.
pub fn storable(
    req: &RequestFacts,
    resp: &ResponseMeta,
    set_cookie: bool,
    vary_star: bool,
) -> Result<(), NotStorable> {
    let c = &resp.control;
    if !matches!(req.method, Method::Get | Method::Head) {
        return Err(NotStorable::Method);
    }
    if resp.status == 206 {
        return Err(NotStorable::Partial);
    }
    let heuristic = heuristically_cacheable(resp.status);
    if !heuristic && !matches!(resp.status, 302 | 303 | 307) {
        return Err(NotStorable::Status);
    }
    if req.control.no_store {
        return Err(NotStorable::RequestNoStore);
    }
    if c.no_store {
        return Err(NotStorable::NoStore);
    }
    if c.private {
        return Err(NotStorable::Private);
    }
    if req.authorization && !(c.public || c.s_maxage.is_some() || c.must_revalidate) {
        return Err(NotStorable::Authorization);
    }
    if set_cookie {
        return Err(NotStorable::SetCookie);
    }
    if vary_star {
        return Err(NotStorable::VaryStar);
    }
    let explicit = c.max_age.is_some() || c.s_maxage.is_some() || resp.expires.is_some();
    if !(explicit || heuristic || c.public) {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// §4.2.1: s-maxage, else max-age, else Expires − Date (Date absent: response_time), else
/// heuristic: 10% of (Date − Last-Modified), at most 86,400 s, only when allowed (§4.2.2:
/// heuristically cacheable status or `public`), else 0.
pub fn freshness_lifetime(resp: &ResponseMeta) -> u64 {
    let c = &resp.control;
    if let Some(secs) = c.s_maxage.or(c.max_age) {
        return secs;
    }
    let date = resp.date.unwrap_or(resp.response_time);
    if let Some(expires) = resp.expires {
        return expires.saturating_sub(date);
    }
    match resp.last_modified {
        Some(modified) if heuristically_cacheable(resp.status) || c.public => {
            (date.saturating_sub(modified) / 10).min(HEURISTIC_MAX)
        }
        _ => 0,
    }
}

/// The cap on a heuristic freshness lifetime: one day (§4.2.2 suggests at most 10% of the
/// time since Last-Modified; the cap keeps an old file from being trusted for months).
pub const HEURISTIC_MAX: u64 = 86_400;

/// §4.2.3 current_age at `now`: the larger of the apparent age (response_time − Date) and the
/// Age value plus the response delay (response_time − request_time), plus the time resident in
/// the cache (now − response_time). A missing Date gives an apparent age of 0.
pub fn current_age(resp: &ResponseMeta, now: u64) -> u64 {
    let apparent_age = resp
        .date
        .map_or(0, |date| resp.response_time.saturating_sub(date));
    let response_delay = resp.response_time.saturating_sub(resp.request_time);
    let corrected_age_value = resp.age.saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now.saturating_sub(resp.response_time);
    corrected_initial_age.saturating_add(resident_time)
}

/// What to do with a stored response for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Fresh enough for this request (or stale within the request's `max-stale`): serve it.
    Fresh,
    /// Stale, but within stale-while-revalidate: serve it and refresh in the background.
    StaleWhileRevalidate,
    /// Must be validated with the origin first (conditional request).
    Revalidate,
}

/// §4.2 + §5.2: what to do with a stored response for a request at `now`.
///
/// In order:
/// 1. response `no-cache` or request `no-cache`: [`Serve::Revalidate`];
/// 2. request `max-age`: a current age above it is [`Serve::Revalidate`];
/// 3. fresh (lifetime > age): [`Serve::Fresh`], unless request `min-fresh` wants more
///    remaining freshness than there is ([`Serve::Revalidate`]);
/// 4. stale: a stale response is never used when the response has `must-revalidate`,
///    `proxy-revalidate` or `s-maxage` (§4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10), nor when the
///    request has `min-fresh`; otherwise it is [`Serve::Fresh`] if the staleness
///    (age − lifetime) is within the request's `max-stale`, [`Serve::StaleWhileRevalidate`]
///    if within the response's `stale-while-revalidate`, else [`Serve::Revalidate`].
///
/// `only-if-cached` is the caller's: when this answers `Revalidate` it replies 504 instead of
/// contacting the origin (§5.2.1.7).
pub fn evaluate(resp: &ResponseMeta, req: &RequestControl, now: u64) -> Serve {
    if resp.control.no_cache || req.no_cache {
        return Serve::Revalidate;
    }
    let age = current_age(resp, now);
    // Ages are whole seconds, so `age > 0` would let `max-age=0` take a response stored less
    // than a second ago: a browser's reload sends it to mean "validate", so it does.
    if req
        .max_age
        .is_some_and(|max_age| max_age == 0 || age > max_age)
    {
        return Serve::Revalidate;
    }
    let lifetime = freshness_lifetime(resp);
    if lifetime > age {
        let fresh_enough = req.min_fresh.is_none_or(|min| lifetime - age >= min);
        return if fresh_enough {
            Serve::Fresh
        } else {
            Serve::Revalidate
        };
    }
    if stale_use_forbidden(&resp.control) || req.min_fresh.is_some() {
        return Serve::Revalidate;
    }
    let staleness = age - lifetime;
    if req.max_stale.is_some_and(|max| staleness <= max) {
        Serve::Fresh
    } else if resp
        .control
        .stale_while_revalidate
        .is_some_and(|window| staleness <= window)
    {
        Serve::StaleWhileRevalidate
    } else {
        Serve::Revalidate
    }
}

/// Whether a stale response may be served because the origin failed (error or 5xx): response
/// or request stale-if-error window covers the staleness, and no must-revalidate /
/// proxy-revalidate / s-maxage forbids it.
///
/// Response `no-cache` also forbids it (§4.2.4 names it among the directives that prohibit
/// generating a stale response). A request with `no-cache` accepts only its own
/// `stale-if-error` window, not the response's: it asked for a validated answer. A response
/// that is not yet stale (revalidated only because of request or `no-cache` rules) counts as
/// 0 seconds stale.
pub fn stale_if_error(resp: &ResponseMeta, req: &RequestControl, now: u64) -> bool {
    let c = &resp.control;
    if stale_use_forbidden(c) || c.no_cache {
        return false;
    }
    let staleness = current_age(resp, now).saturating_sub(freshness_lifetime(resp));
    let covers = |window: Option<u64>| window.is_some_and(|w| staleness <= w);
    covers(req.stale_if_error) || (!req.no_cache && covers(c.stale_if_error))
}

/// §4.4: whether a response with `status` to a request with `method` invalidates the target
/// URI: unsafe method (not GET/HEAD/OPTIONS/TRACE) and a non-error status (2xx or 3xx).
pub fn invalidates(method: Method, status: u16) -> bool {
    let safe = matches!(
        method,
        Method::Get | Method::Head | Method::Options | Method::Trace
    );
    !safe && (200..400).contains(&status)
}

/// §4.3.4: refreshes a stored response's meta from a 304 (its Date, Expires, Cache-Control, Age,
/// Last-Modified if present, and the new request/response times). The caller passes the 304's
/// meta with fields absent as None; present fields replace the stored ones; `control` replaces
/// the stored one only if the 304 had a Cache-Control field (`had_cache_control`).
///
/// Two fields are always replaced, present or not: Age (the stored value described the old
/// response; absent means 0) and Date. Keeping the old Date with the new response time would
/// make the refreshed response look as old as the first one; a 304 without Date is taken as
/// generated when it arrived (RFC 9110 §6.6.1), which `None` means here. The status is kept.
pub fn refresh(stored: &mut ResponseMeta, from_304: &ResponseMeta, had_cache_control: bool) {
    stored.date = from_304.date;
    stored.age = from_304.age;
    if from_304.expires.is_some() {
        stored.expires = from_304.expires;
    }
    if from_304.last_modified.is_some() {
        stored.last_modified = from_304.last_modified;
    }
    if had_cache_control {
        stored.control = from_304.control;
    }
    stored.request_time = from_304.request_time;
    stored.response_time = from_304.response_time;
}

/// RFC 9110 §15.1: statuses a cache may give a heuristic freshness lifetime (206 included,
/// though Ringway never stores it).
pub fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Directives that forbid any stale use in a shared cache.
fn stale_use_forbidden(c: &ResponseControl) -> bool {
    c.must_revalidate || c.proxy_revalidate || c.s_maxage.is_some()
}

#[cfg(test)]
mod tests;
