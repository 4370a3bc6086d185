//! Client-side helpers for the scripted origin of `ringway-test-backend` (paths under `/o/`,
//! see `bench/src/bin/testbackend/origin.rs`), used by the cache and compression tests: set or
//! clear a resource's script ([`script`], [`clear_script`]), read how many requests reached it
//! ([`origin_hits`]) and what they asked for ([`origin_log`]), and build targets whose values
//! survive the trip through a query string ([`encode`]). Built on [`Backend`] and
//! [`get_once`] from `lb.rs`; every call is bounded by `get_once`'s timeouts. For the proxy
//! side it also writes the configuration of a proxy in front of one origin ([`accel_config`],
//! [`start_accel_proxy`], the only place here that starts a process), sends one request of any
//! method through it ([`request`], [`request_text`]) and formats HTTP-dates ([`http_date`]).

use super::lb::{get_once, Backend};
use super::{temp_file, Client, Proxy, Response};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Host` that [`request`] and [`request_text`] send unless told otherwise.
pub const CACHE_HOST: &str = "cache.test";

/// One request the origin logged for a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The `If-None-Match` value the origin received, if any.
    pub if_none_match: Option<String>,
    /// The `If-Modified-Since` value the origin received, if any.
    pub if_modified_since: Option<String>,
    /// The `Accept-Encoding` value the origin received, if any.
    pub accept_encoding: Option<String>,
}

impl LoggedRequest {
    /// Whether the request was conditional (carried `If-None-Match` or `If-Modified-Since`),
    /// i.e. a revalidation.
    pub fn is_conditional(&self) -> bool {
        self.if_none_match.is_some() || self.if_modified_since.is_some()
    }
}

/// Sets (replaces) the control script of `target` (e.g. `/o/page?x=1`, as the proxy will
/// send it) to `params`, a query string whose values are already encoded (use [`encode`] for
/// values with `&`, `=`, `%`, spaces or quotes), e.g. `"version=2&etag=%22v2%22"`. Each
/// parameter overrides the same one in the request's own query. Panics unless the origin
/// answers 200.
pub fn script(b: &Backend, target: &str, params: &str) {
    let sep = if params.is_empty() { "" } else { "&" };
    control(
        b,
        &format!("/_control/origin?target={}{sep}{params}", encode(target)),
    );
}

/// Removes the control script of `target` (its own query applies again); hits and log stay.
pub fn clear_script(b: &Backend, target: &str) {
    control(
        b,
        &format!("/_control/origin?target={}&clear=1", encode(target)),
    );
}

/// How many requests for `target` reached the origin (304s included) since it started or was
/// last reset ([`Backend::reset`]).
pub fn origin_hits(b: &Backend, target: &str) -> u64 {
    let body = control(b, &log_path(target));
    let first = body.lines().next().unwrap_or_default();
    first
        .strip_prefix("hits=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("backend {}: bad origin-log first line {first:?}", b.name))
}

/// The most recent requests for `target` (at most 20, oldest first).
pub fn origin_log(b: &Backend, target: &str) -> Vec<LoggedRequest> {
    let body = control(b, &log_path(target));
    body.lines()
        .skip(1)
        .map(|line| {
            parse_log_line(line)
                .unwrap_or_else(|| panic!("backend {}: bad origin-log line {line:?}", b.name))
        })
        .collect()
}

/// `GET target` straight from the origin (no proxy) with `headers`, on a fresh connection.
pub fn origin_get(b: &Backend, target: &str, headers: &[(&str, &str)]) -> Response {
    get_once(b.addr, target, headers)
        .unwrap_or_else(|e| panic!("backend {}: GET {target}: {e}", b.name))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so `s` arrives as one
/// query value that the origin decodes back to `s`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `V` of an origin body's first line `version=V`, if it has one.
pub fn body_version(body: &[u8]) -> Option<String> {
    let line = body.split(|&b| b == b'\n').next()?;
    let v = std::str::from_utf8(line).ok()?.strip_prefix("version=")?;
    Some(v.to_owned())
}

/// A complete proxy configuration for the cache and compression tests: `workers` workers, one
/// plain listener `main` and the admin endpoint on free ports of 127.0.0.1, and one catch-all
/// route to cluster `app` (the origin `b` alone) with `route_keys` added to the route, e.g.
/// `cache = { max_bytes = "1MiB" }` or `compress = {}` (several keys on separate lines).
pub fn accel_config(b: &Backend, workers: usize, route_keys: &str) -> String {
    format!(
        r#"[server]
workers = {workers}
admin = "127.0.0.1:0"
log_level = "info"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/"
cluster = "app"
{route_keys}

[[clusters]]
name = "app"
endpoints = [{{ addr = "{}" }}]
"#,
        b.addr
    )
}

/// Writes [`accel_config`] to a temporary file and starts the proxy on it.
pub fn start_accel_proxy(b: &Backend, workers: usize, route_keys: &str) -> Proxy {
    let path = temp_file("accel.toml", &accel_config(b, workers, route_keys));
    let args = vec![
        "--config".to_owned(),
        path.to_str().expect("utf-8 temporary path").to_owned(),
    ];
    Proxy::start_args(&args)
}

/// The text of an HTTP/1.1 request `METHOD target` with `headers` (plus `Host: cache.test`
/// unless `headers` has a `Host`), keeping the connection open, without a body.
pub fn request_text(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {CACHE_HOST}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// One `METHOD target` request with `headers` and `body` to `addr` (the proxy) on a fresh
/// connection with `Connection: close` (and `Content-Length` when `body` is not empty or the
/// method usually has one), with 5 s timeouts. Panics on a transport failure.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut fields: Vec<(&str, &str)> = headers.to_vec();
    fields.push(("Connection", "close"));
    let len = body.len().to_string();
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        fields.push(("Content-Length", &len));
    }
    let mut raw = request_text(method, target, &fields).into_bytes();
    raw.extend_from_slice(body);
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut c = Client::from_stream(stream);
    c.send(&raw);
    c.read_response_for(method == "HEAD")
        .unwrap_or_else(|e| panic!("{method} {target} through {addr}: {e}"))
}

/// `t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); times before the epoch are the
/// epoch.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from the day count (Howard Hinnant's algorithm), days since 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn log_path(target: &str) -> String {
    format!("/_control/origin-log?target={}", encode(target))
}

/// `GET path` on the backend; panics unless it answers 200. Returns the body.
fn control(b: &Backend, path: &str) -> String {
    let r = get_once(b.addr, path, &[]).unwrap_or_else(|e| {
        panic!(
            "backend {} ({}): GET {path}: {e}; stderr: {}",
            b.name,
            b.addr,
            b.stderr()
        )
    });
    assert_eq!(
        r.status,
        200,
        "backend {}: GET {path}: {}",
        b.name,
        r.summary()
    );
    r.body_text()
}

/// `METHOD if-none-match=V if-modified-since=V accept-encoding=V` (values may hold spaces;
/// `-` is none).
fn parse_log_line(line: &str) -> Option<LoggedRequest> {
    let (method, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix("if-none-match=")?;
    let (inm, rest) = rest.split_once(" if-modified-since=")?;
    let (ims, ae) = rest.split_once(" accept-encoding=")?;
    let value = |v: &str| (v != "-").then(|| v.to_owned());
    Some(LoggedRequest {
        method: method.to_owned(),
        if_none_match: value(inm),
        if_modified_since: value(ims),
        accept_encoding: value(ae),
    })
}
