//! The scripted origin of `ringway-test-backend`, for the cache and compression end-to-end
//! tests: paths under `/o/` answer with the caching headers a per-resource *script* asks for,
//! count every request that reaches them, remember the last few, and answer conditional
//! requests (RFC 9110 §13) with 304. It owns that per-resource state (hits, log, scripts, all
//! behind one mutex, never held while sleeping or writing) and the two control paths that
//! read and change it; it must not change how any other path of the backend behaves, and it
//! only builds answers: `main.rs` reads requests and owns the connection.
//!
//! A resource is the full request target (path and query, exactly as sent). Its script is the
//! request's query parameters, each overridden by the same parameter of the script set with
//! `/_control/origin?target=T&…` (a `hdr` there replaces every `hdr` of the query). Values are
//! percent-decoded (`+` stays a plus); unknown parameters are ignored, so a test may add its
//! own (`x=1`) to make distinct resources. Header parameters with an empty value send nothing.
//!
//! | parameter      | effect (default)                                                     |
//! |----------------|----------------------------------------------------------------------|
//! | `status=N`     | the status, 200..=599 (200)                                          |
//! | `cc`, `expires`, `lm`, `etag`, `vary`, `ce`, `setcookie`, `age`, `date` | `Cache-Control`, `Expires`, `Last-Modified`, `ETag`, `Vary`, `Content-Encoding` (the body is not encoded), `Set-Cookie`, `Age`, `Date` (now, as an IMF-fixdate), sent as given |
//! | `ct`           | `Content-Type` (`text/plain`)                                        |
//! | `hdr=Name:Value` | one more header field; may repeat                                  |
//! | `chunked=1`    | `Transfer-Encoding: chunked`, chunks of at most 4 KiB (`Content-Length`) |
//! | `body=N`       | body size in bytes (one short line after the version line)           |
//! | `version=V`    | the body's first line is `version=V\n` (1)                           |
//! | `delay_ms=N`   | wait N ms before answering (plus the backend's global delay)         |
//!
//! The body is deterministic English-like text, so it compresses well and two versions differ
//! in their first line. Every answer carries `X-Backend` and `X-Origin-Hits` (requests this
//! resource has had, this one included). Conditionals apply only to GET and HEAD when the
//! scripted status is 2xx: `If-None-Match` (weak comparison, `*` always matches) against
//! `etag`, else `If-Modified-Since` (any of the three HTTP-date forms) at or after `lm`;
//! either gives a 304 with the `ETag`, `Cache-Control`, `Expires`, `Date`, `Vary` and
//! `Last-Modified` the script sets. Other methods (POST, PUT, …) are counted and logged and
//! answered per script, conditionals ignored.

use super::{parse_status, reason, Request};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Paths under this prefix are origin resources.
pub const PREFIX: &str = "/o/";

/// How many recent requests a resource's log keeps.
const LOG_LEN: usize = 20;
/// Largest chunk of a chunked body.
const CHUNK: usize = 4096;
/// Largest `body=N` accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The lines the body text cycles through after its version line.
const TEXT: [&str; 4] = [
    "The origin wrote this line so that a cache in front of it has something to keep.\n",
    "Every copy of this page stays the same until the script asks for a new version.\n",
    "Repeated plain text like this compresses well, which the encoding tests rely on.\n",
    "A client that reads a different first line knows it was handed another version.\n",
];

/// Every origin resource's hit counter, request log and control script, by target.
#[derive(Default)]
pub struct Origin {
    resources: Mutex<HashMap<String, Resource>>,
}

/// One answer, ready to write: the head, and the body with its framing.
pub struct Reply {
    head: Vec<u8>,
    body: Vec<u8>,
    chunked: bool,
}

impl Origin {
    /// `/_control/origin?target=T&PARAMS`: makes `PARAMS` the control script of `T`
    /// (replacing any earlier one), or removes it with `clear=1`. Hits and log are kept.
    pub fn control(&self, query: &[(String, String)]) -> Result<(), &'static str> {
        let params = decode_all(query)?;
        let target = target_param(&params)?;
        let script: Vec<(String, String)> =
            params.into_iter().filter(|(k, _)| k != "target").collect();
        let clear = script.iter().any(|(k, v)| k == "clear" && v == "1");
        if !clear {
            // Refuse a script that could never be answered now rather than at request time.
            Script::build(&[], Some(&script))?;
        }
        let mut resources = self.lock();
        let resource = resources.entry(target).or_default();
        resource.script = if clear { None } else { Some(script) };
        Ok(())
    }

    /// `/_control/origin-log?target=T`: `hits=N\n`, then one line per logged request of `T`
    /// (at most 20, newest last): `METHOD if-none-match=V if-modified-since=V
    /// accept-encoding=V`, each `V` the field's value or `-`.
    pub fn log(&self, query: &[(String, String)]) -> Result<String, &'static str> {
        let target = target_param(&decode_all(query)?)?;
        let resources = self.lock();
        let mut out = String::new();
        match resources.get(&target) {
            Some(r) => {
                out.push_str(&format!("hits={}\n", r.hits));
                for line in &r.log {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => out.push_str("hits=0\n"),
        }
        Ok(out)
    }

    /// Forgets every resource: hits, logs and scripts.
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Resource>> {
        self.resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Answers one request for an origin resource: counts and logs it, waits the scripted delay
/// plus `global_delay_ms`, and builds the answer (`connection`: the `Connection` value to send,
/// if any). `Err` is a reason for a 400 (a malformed script).
pub fn serve(
    origin: &Origin,
    req: &Request,
    name: &str,
    global_delay_ms: u64,
    connection: Option<&str>,
) -> Result<Reply, &'static str> {
    let (hits, control) = {
        let mut resources = origin.lock();
        let resource = resources.entry(req.target.clone()).or_default();
        resource.hits += 1;
        if resource.log.len() == LOG_LEN {
            resource.log.pop_front();
        }
        resource.log.push_back(format!(
            "{} if-none-match={} if-modified-since={} accept-encoding={}",
            req.method,
            req.if_none_match.as_deref().unwrap_or("-"),
            req.if_modified_since.as_deref().unwrap_or("-"),
            req.accept_encoding.as_deref().unwrap_or("-"),
        ));
        (resource.hits, resource.script.clone())
    };
    let script = Script::build(&decode_all(&req.query)?, control.as_deref())?;
    let delay = script.delay_ms.saturating_add(global_delay_ms);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }

    let date = script.date.clone().unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        http_date(i64::try_from(now).unwrap_or(0))
    });
    let not_modified = is_not_modified(&script, req);
    let status = if not_modified { 304 } else { script.status };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nX-Backend: {name}\r\nX-Origin-Hits: {hits}\r\n",
        reason(status)
    );
    let mut field = |name: &str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    };
    field("Date", Some(&date));
    field("Cache-Control", script.cc.as_deref());
    field("Expires", script.expires.as_deref());
    field("Last-Modified", script.lm.as_deref());
    field("ETag", script.etag.as_deref());
    field("Vary", script.vary.as_deref());
    if !not_modified {
        field("Age", script.age.as_deref());
        field("Content-Type", script.ct.as_deref());
        field("Content-Encoding", script.ce.as_deref());
        field("Set-Cookie", script.setcookie.as_deref());
        for (name, value) in &script.extra {
            field(name, Some(value));
        }
    }
    let bodyless = status == 204 || status == 304;
    let body = if bodyless {
        Vec::new()
    } else {
        body_text(&script.version, script.body)
    };
    let chunked = script.chunked && !bodyless;
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else if !bodyless {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if let Some(c) = connection {
        head.push_str(&format!("Connection: {c}\r\n"));
    }
    head.push_str("\r\n");
    let head_only = req.method == "HEAD" || bodyless;
    Ok(Reply {
        head: head.into_bytes(),
        body: if head_only { Vec::new() } else { body },
        chunked: chunked && !head_only,
    })
}

impl Reply {
    /// Writes the answer; a chunked body goes out one chunk per write.
    pub fn write_to(&self, stream: &mut TcpStream) -> io::Result<()> {
        if !self.chunked {
            let mut out = Vec::with_capacity(self.head.len() + self.body.len());
            out.extend_from_slice(&self.head);
            out.extend_from_slice(&self.body);
            stream.write_all(&out)?;
            return stream.flush();
        }
        stream.write_all(&self.head)?;
        for chunk in self.body.chunks(CHUNK) {
            let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
            stream.write_all(&out)?;
        }
        stream.write_all(b"0\r\n\r\n")?;
        stream.flush()
    }
}

/// What the origin knows about one target.
#[derive(Default)]
struct Resource {
    hits: u64,
    /// The last requests, newest last, as `/_control/origin-log` lines.
    log: VecDeque<String>,
    /// The decoded control script, if one is set.
    script: Option<Vec<(String, String)>>,
}

/// A resource's effective script.
struct Script {
    status: u16,
    cc: Option<String>,
    expires: Option<String>,
    lm: Option<String>,
    etag: Option<String>,
    vary: Option<String>,
    ct: Option<String>,
    ce: Option<String>,
    setcookie: Option<String>,
    age: Option<String>,
    date: Option<String>,
    extra: Vec<(String, String)>,
    chunked: bool,
    body: Option<usize>,
    version: String,
    delay_ms: u64,
}

impl Script {
    /// The request's decoded `query`, each parameter overridden by `control`'s.
    fn build(
        query: &[(String, String)],
        control: Option<&[(String, String)]>,
    ) -> Result<Script, &'static str> {
        let mut script = Script {
            status: 200,
            cc: None,
            expires: None,
            lm: None,
            etag: None,
            vary: None,
            ct: Some("text/plain".to_owned()),
            ce: None,
            setcookie: None,
            age: None,
            date: None,
            extra: Vec::new(),
            chunked: false,
            body: None,
            version: "1".to_owned(),
            delay_ms: 0,
        };
        script.apply(query)?;
        if let Some(control) = control {
            if control.iter().any(|(k, _)| k == "hdr") {
                script.extra.clear();
            }
            script.apply(control)?;
        }
        Ok(script)
    }

    fn apply(&mut self, params: &[(String, String)]) -> Result<(), &'static str> {
        for (key, value) in params {
            let header = || -> Result<Option<String>, &'static str> {
                if value.bytes().any(|b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
                    return Err("control character in an origin script value");
                }
                Ok(Some(value.clone()))
            };
            match key.as_str() {
                "status" => {
                    self.status = parse_status(value).ok_or("origin status must be 200..599")?;
                }
                "cc" => self.cc = header()?,
                "expires" => self.expires = header()?,
                "lm" => self.lm = header()?,
                "etag" => self.etag = header()?,
                "vary" => self.vary = header()?,
                "ct" => self.ct = header()?,
                "ce" => self.ce = header()?,
                "setcookie" => self.setcookie = header()?,
                "age" => self.age = header()?,
                "date" => self.date = header()?,
                "hdr" => {
                    let (name, v) = value
                        .split_once(':')
                        .ok_or("origin hdr must be Name:Value")?;
                    if name.is_empty() || !name.bytes().all(super::is_tchar) {
                        return Err("origin hdr has a malformed name");
                    }
                    header()?;
                    self.extra
                        .push((name.to_owned(), v.trim_matches([' ', '\t']).to_owned()));
                }
                "chunked" => {
                    self.chunked = match value.as_str() {
                        "1" | "true" => true,
                        "" | "0" | "false" => false,
                        _ => return Err("origin chunked must be 1 or 0"),
                    };
                }
                "body" => {
                    let n: usize = value.parse().map_err(|_| "origin body is not a number")?;
                    if n > MAX_BODY {
                        return Err("origin body larger than 64 MiB");
                    }
                    self.body = Some(n);
                }
                "version" => {
                    header()?;
                    self.version = value.clone();
                }
                "delay_ms" => {
                    self.delay_ms = value.parse().map_err(|_| "delay_ms is not a number")?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether a GET or HEAD with a 2xx script gets a 304 (RFC 9110 §13.2.2: `If-None-Match`
/// first; `If-Modified-Since` only without it).
fn is_not_modified(script: &Script, req: &Request) -> bool {
    if !(200..300).contains(&script.status) || !(req.method == "GET" || req.method == "HEAD") {
        return false;
    }
    if let Some(inm) = &req.if_none_match {
        return inm.trim() == "*"
            || script
                .etag
                .as_deref()
                .is_some_and(|etag| weak_match_any(inm, etag));
    }
    match (&req.if_modified_since, &script.lm) {
        (Some(ims), Some(lm)) => match (parse_http_date(ims), parse_http_date(lm)) {
            (Some(ims), Some(lm)) => lm <= ims,
            _ => false,
        },
        _ => false,
    }
}

/// Whether any entity tag of the `If-None-Match` list weakly matches `etag` (RFC 9110
/// §8.8.3.2: the opaque tags are equal, either or both may be weak).
fn weak_match_any(list: &str, etag: &str) -> bool {
    let opaque = etag.strip_prefix("W/").unwrap_or(etag);
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(inner) = tag.strip_prefix('"') else {
            return false;
        };
        let Some(end) = inner.find('"') else {
            return false;
        };
        if tag[..end + 2] == *opaque {
            return true;
        }
        rest = &inner[end + 1..];
    }
}

/// The body: `version=V\n`, then the text lines in turn, cut to exactly `size` bytes (one
/// text line when no size is scripted).
fn body_text(version: &str, size: Option<usize>) -> Vec<u8> {
    let mut body = format!("version={version}\n").into_bytes();
    match size {
        None => body.extend_from_slice(TEXT[0].as_bytes()),
        Some(size) => {
            body.reserve(size.saturating_sub(body.len()));
            for line in TEXT.iter().cycle() {
                if body.len() >= size {
                    break;
                }
                body.extend_from_slice(line.as_bytes());
            }
            body.truncate(size);
        }
    }
    body
}

/// The decoded `target` parameter; it must name an origin resource.
fn target_param(params: &[(String, String)]) -> Result<String, &'static str> {
    params
        .iter()
        .find(|(k, _)| k == "target")
        .map(|(_, v)| v.clone())
        .filter(|t| t.starts_with(PREFIX))
        .ok_or("origin control needs target=/o/…")
}

fn decode_all(query: &[(String, String)]) -> Result<Vec<(String, String)>, &'static str> {
    query
        .iter()
        .map(|(k, v)| Ok((percent_decode(k)?, percent_decode(v)?)))
        .collect()
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "percent-decoded origin parameter is not UTF-8")
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `secs` since the Unix epoch as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS[usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0)];
    format!(
        "{weekday}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        MONTHS[usize::try_from(m - 1).unwrap_or(0)],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch of an HTTP-date in any of its three forms (RFC 9110 §5.6.7):
/// IMF-fixdate, RFC 850 (a two-digit year below 70 is 20yy, else 19yy) or asctime. The day
/// name is not checked.
fn parse_http_date(s: &str) -> Option<i64> {
    let t: Vec<&str> = s.split_ascii_whitespace().collect();
    let (day, month, year, time) = match t.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        [_, d, m, y, time, "GMT"] if y.len() == 4 => (*d, *m, y.parse().ok()?, *time),
        // Sunday, 06-Nov-94 08:49:37 GMT
        [_, dmy, time, "GMT"] => {
            let mut p = dmy.split('-');
            let (d, m, y) = (p.next()?, p.next()?, p.next()?);
            let y: i64 = y.parse().ok().filter(|_| y.len() == 2)?;
            (d, m, if y < 70 { 2000 + y } else { 1900 + y }, *time)
        }
        // Sun Nov  6 08:49:37 1994
        [_, m, d, time, y] if y.len() == 4 => (*d, *m, y.parse().ok()?, *time),
        _ => return None,
    };
    let month = MONTHS.iter().position(|m| *m == month)?;
    let day: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || mi > 59 || sec > 60 || time.len() != 8 {
        return None;
    }
    let days = days_from_civil(year, i64::try_from(month).ok()? + 1, day);
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The `(year, month 1..=12, day)` of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let d = day_of_year - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (year_of_era + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_in_all_three_forms() {
        // RFC 9110 §5.6.7's example, 784111777 s after the epoch, in its three forms.
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(s), Some(784_111_777), "{s}");
        }
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_date_round_trips() {
        for secs in [
            0,
            1,
            86_399,
            86_400,
            951_868_799,
            1_700_000_000,
            4_102_444_800,
        ] {
            assert_eq!(parse_http_date(&http_date(secs)), Some(secs), "{secs}");
        }
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        // RFC 9110 §8.8.3.2's table: W/"1" and W/"1", W/"1" and W/"2", W/"1" and "1", "1" and "1".
        let cases = [
            (r#"W/"1""#, r#"W/"1""#, true),
            (r#"W/"1""#, r#"W/"2""#, false),
            (r#"W/"1""#, r#""1""#, true),
            (r#""1""#, r#""1""#, true),
            (r#""a", "b",W/"c""#, r#""c""#, true),
            (r#""a,b", "c""#, r#""a""#, false),
            (r#""a,b", "c""#, r#""a,b""#, true),
            (r#""x""#, r#""xy""#, false),
            ("", r#""1""#, false),
        ];
        for (list, etag, want) in cases {
            assert_eq!(weak_match_any(list, etag), want, "{list} vs {etag}");
        }
    }

    #[test]
    fn percent_decoding() {
        let cases = [
            ("plain", "plain"),
            ("a%20b", "a b"),
            ("max-age%3D60%2C%20public", "max-age=60, public"),
            ("%2fo%2Fx", "/o/x"),
            ("a+b", "a+b"),
            ("100%", "100%"),
            ("%zz", "%zz"),
            ("%E2%82%AC", "€"),
        ];
        for (raw, want) in cases {
            assert_eq!(percent_decode(raw).as_deref(), Ok(want), "{raw}");
        }
        assert!(percent_decode("%FF").is_err());
    }

    #[test]
    fn body_is_sized_and_versioned() {
        assert_eq!(body_text("7", Some(0)), b"");
        assert_eq!(body_text("7", Some(4)), b"vers");
        let long = body_text("2", Some(10_000));
        assert_eq!(long.len(), 10_000);
        assert!(long.starts_with(b"version=2\nThe origin"));
        assert_eq!(long, body_text("2", Some(10_000)), "deterministic");
        assert_ne!(long, body_text("3", Some(10_000)));
        let short = body_text("1", None);
        assert_eq!(short, format!("version=1\n{}", TEXT[0]).into_bytes());
    }

    #[test]
    fn control_script_overrides_query_per_parameter() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let query = q(&[("cc", "max-age=60"), ("etag", "\"v1\""), ("hdr", "A:1")]);
        let control = q(&[("etag", "\"v2\""), ("version", "2"), ("hdr", "B: 2")]);
        let s = Script::build(&query, Some(&control)).expect("valid script");
        assert_eq!(s.cc.as_deref(), Some("max-age=60"));
        assert_eq!(s.etag.as_deref(), Some("\"v2\""));
        assert_eq!(s.version, "2");
        assert_eq!(s.extra, vec![("B".to_owned(), "2".to_owned())]);
        for bad in [
            q(&[("status", "99")]),
            q(&[("body", "x")]),
            q(&[("hdr", "no colon")]),
            q(&[("cc", "a\r\nInjected: 1")]),
            q(&[("chunked", "maybe")]),
        ] {
            assert!(Script::build(&bad, None).is_err(), "{bad:?}");
        }
    }
}
