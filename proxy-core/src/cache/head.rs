//! Response heads for the cache and for compression, as bytes: the stored form of a response
//! (its status line and end-to-end fields), the head a client gets for a stored response (with
//! `Age`, framing and connection fields written per response), and the rewrite of a head for a
//! body Ringway compresses. Pure byte work on heads Ringway wrote or parsed; no policy here.

use crate::http1::{ResponseHead, Version};
use crate::rewrite::{is_hop_by_hop, write_decimal};

/// Fields never stored with a response: restated per response (framing, `Age`) or describing
/// the hop rather than the message.
const NOT_STORED: [&[u8]; 2] = [b"content-length", b"age"];

/// Appends the stored form of the upstream response `head` (parsed from `buf`): the status
/// line as `HTTP/1.1 CODE REASON\r\n`, then every end-to-end field as `Name: value\r\n`, without
/// `Content-Length`, `Age`, hop-by-hop fields, fields a `Connection` field names, and the
/// cache status field `status_field` (an upstream's own must not pass for Ringway's).
pub fn stored_head(
    buf: &[u8],
    head: &ResponseHead,
    status_field: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(head.reason.of(buf));
    out.extend_from_slice(b"\r\n");
    let has_connection = head.headers.find(buf, b"connection").is_some();
    for h in head.headers.as_slice() {
        let name = h.name.of(buf);
        if is_hop_by_hop(name)
            || NOT_STORED.iter().any(|n| n.eq_ignore_ascii_case(name))
            || status_field.is_some_and(|s| s.eq_ignore_ascii_case(name))
            || (has_connection && head.headers.connection_lists(buf, name))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.of(buf));
        out.extend_from_slice(b"\r\n");
    }
}

/// The stored head `stored` updated by a 304 (`head`, parsed from `buf`): each end-to-end field
/// the 304 carries replaces the stored fields of that name (RFC 9111 §3.2); the status line and
/// the other fields stay. `Content-Length` and the cache status field are never taken over.
pub fn merge_304(
    stored: &[u8],
    buf: &[u8],
    head: &ResponseHead,
    status_field: Option<&[u8]>,
) -> Vec<u8> {
    let mut update = Vec::with_capacity(head.head_len);
    stored_head(buf, head, status_field, &mut update);
    let replaced = |name: &[u8]| fields(&update).any(|(n, _)| n.eq_ignore_ascii_case(name));
    let status_end = status_line_end(stored);
    let mut out = Vec::with_capacity(stored.len() + update.len());
    out.extend_from_slice(&stored[..status_end]);
    for (name, value) in fields(stored).filter(|(n, _)| !replaced(n)) {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in fields(&update) {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Where the status line of a head ends (past its CRLF), or the head's length without one.
fn status_line_end(head: &[u8]) -> usize {
    head.windows(2)
        .position(|w| w == b"\r\n")
        .map_or(head.len(), |p| p + 2)
}

/// The status code of a stored head.
pub fn stored_status(stored: &[u8]) -> u16 {
    stored
        .get(9..12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// The fields of a stored head (or of any head Ringway wrote): `(name, value)` per line, the
/// status line and the blank line left out.
pub fn fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        Some((name, value[1..].trim_ascii()))
    })
}

/// The first value of field `name` (case-insensitive) in a head Ringway wrote.
pub fn field<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    fields(head)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// How the head of a stored response is written for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedHead<'a> {
    /// `Age`, in seconds.
    pub age: u64,
    /// The body length (`Content-Length`), or `None` for a 304 (no length sent).
    pub length: Option<u64>,
    /// The cache status field and its value, if configured.
    pub status_field: Option<(&'a [u8], &'a [u8])>,
    /// `Content-Encoding` Ringway applied to this variant, if any.
    pub encoding: Option<&'a [u8]>,
    /// The connection closes after this response.
    pub close: bool,
    /// The client's version.
    pub client_version: Version,
}

/// Appends the head a client gets for the stored response `stored`. With `not_modified`, the
/// status line says 304 and only the fields RFC 9110 §15.4.5 keeps are sent.
pub fn write_served_head(
    stored: &[u8],
    served: &ServedHead<'_>,
    not_modified: bool,
    out: &mut Vec<u8>,
) {
    let status_end = status_line_end(stored);
    if not_modified {
        out.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\n");
    } else {
        out.extend_from_slice(&stored[..status_end]);
    }
    for (name, value) in fields(stored) {
        if not_modified && !KEPT_BY_304.iter().any(|k| k.eq_ignore_ascii_case(name)) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(enc) = served.encoding {
        out.extend_from_slice(b"Content-Encoding: ");
        out.extend_from_slice(enc);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Age: ");
    write_decimal(out, served.age);
    out.extend_from_slice(b"\r\n");
    if let Some((name, value)) = served.status_field {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let (Some(n), false) = (served.length, not_modified) {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    if served.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if served.client_version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Fields a 304 carries over from the stored response (RFC 9110 §15.4.5).
const KEPT_BY_304: [&[u8]; 6] = [
    b"cache-control",
    b"content-location",
    b"date",
    b"etag",
    b"expires",
    b"vary",
];

/// Rewrites a complete head (status line, fields, blank line) for a body compressed with
/// `token`: drops `Content-Length`, adds `Content-Encoding`, adds `Accept-Encoding` to `Vary`
/// (or a `Vary` field), turns a strong `ETag` weak (the bytes differ from the origin's), and
/// with `chunked` makes sure `Transfer-Encoding: chunked` is there (without it the body is
/// close-delimited, for HTTP/1.0 clients, and any `Transfer-Encoding` goes).
pub fn encode_head(head: &mut Vec<u8>, token: &[u8], chunked: bool) {
    let old = std::mem::take(head);
    let status_end = status_line_end(&old);
    head.extend_from_slice(&old[..status_end]);
    let mut vary_done = false;
    for (name, value) in fields(&old) {
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            continue;
        }
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        if name.eq_ignore_ascii_case(b"etag") && !value.starts_with(b"W/") {
            head.extend_from_slice(b"W/");
            head.extend_from_slice(value);
        } else if name.eq_ignore_ascii_case(b"vary") && !vary_done {
            vary_done = true;
            head.extend_from_slice(value);
            if value != b"*" && !lists(value, b"accept-encoding") {
                head.extend_from_slice(b", Accept-Encoding");
            }
        } else {
            head.extend_from_slice(value);
        }
        head.extend_from_slice(b"\r\n");
    }
    if !vary_done {
        head.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    head.extend_from_slice(b"Content-Encoding: ");
    head.extend_from_slice(token);
    head.extend_from_slice(b"\r\n");
    if chunked {
        head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// Appends `name` to a head's `Vary` field (or adds one), unless it is listed already or the
/// field is `*`. For a head Ringway wrote (it ends with the blank line).
pub fn add_vary(head: &mut Vec<u8>, name: &[u8]) {
    if let Some(v) = field(head, b"vary") {
        if v == b"*" || lists(v, name) {
            return;
        }
    }
    let old = std::mem::take(head);
    let status_end = status_line_end(&old);
    head.extend_from_slice(&old[..status_end]);
    let mut done = false;
    for (n, value) in fields(&old) {
        head.extend_from_slice(n);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        if !done && n.eq_ignore_ascii_case(b"vary") {
            done = true;
            head.extend_from_slice(b", ");
            head.extend_from_slice(name);
        }
        head.extend_from_slice(b"\r\n");
    }
    if !done {
        head.extend_from_slice(b"Vary: ");
        head.extend_from_slice(name);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// Inserts `Name: value\r\n` before the blank line of a complete head.
pub fn insert_field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let at = head.len().saturating_sub(2);
    let mut line = Vec::with_capacity(name.len() + value.len() + 4);
    line.extend_from_slice(name);
    line.extend_from_slice(b": ");
    line.extend_from_slice(value);
    line.extend_from_slice(b"\r\n");
    head.splice(at..at, line);
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
fn lists(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_response;

    const UPSTREAM: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Tue, 08 Dec 2026 01:00:00 GMT\r\n\
Content-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nAge: 7\r\nX-Cache: HIT\r\n\
ETag: \"v1\"\r\nCache-Control: max-age=60\r\nContent-Type: text/html\r\n\r\nhello";

    fn stored() -> Vec<u8> {
        let head = parse_response(UPSTREAM).unwrap().unwrap();
        let mut out = Vec::new();
        stored_head(UPSTREAM, &head, Some(b"x-cache"), &mut out);
        out
    }

    #[test]
    fn stored_heads_keep_end_to_end_fields_only() {
        assert_eq!(
            stored(),
            b"HTTP/1.1 200 OK\r\nDate: Tue, 08 Dec 2026 01:00:00 GMT\r\nETag: \"v1\"\r\n\
Cache-Control: max-age=60\r\nContent-Type: text/html\r\n"
                .to_vec()
        );
        assert_eq!(stored_status(&stored()), 200);
        assert_eq!(field(&stored(), b"etag"), Some(&b"\"v1\""[..]));
        assert_eq!(field(&stored(), b"content-length"), None);
    }

    #[test]
    fn served_heads_restate_age_length_and_connection() {
        let mut out = Vec::new();
        let served = ServedHead {
            age: 12,
            length: Some(5),
            status_field: Some((b"X-Cache", b"HIT")),
            encoding: None,
            close: false,
            client_version: Version::Http10,
        };
        write_served_head(&stored(), &served, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\nAge: 12\r\nX-Cache: HIT\r\nContent-Length: 5\r\n"));
        assert!(text.ends_with("Connection: keep-alive\r\n\r\n"));
        let mut out = Vec::new();
        write_served_head(
            &stored(),
            &ServedHead {
                close: true,
                ..served
            },
            true,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(!text.contains("Content-Type"), "{text}");
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.contains("ETag: \"v1\"\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn encoded_heads_lose_their_length_and_vary_on_accept_encoding() {
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nETag: \"v1\"\r\n\
Vary: Cookie\r\nContent-Type: text/html\r\n\r\n"
            .to_vec();
        encode_head(&mut head, b"br", true);
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nETag: W/\"v1\"\r\nVary: Cookie, Accept-Encoding\r\n\
Content-Type: text/html\r\nContent-Encoding: br\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec()
        );
        let mut head =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: W/\"x\"\r\n\r\n".to_vec();
        encode_head(&mut head, b"gzip", false);
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nETag: W/\"x\"\r\nVary: Accept-Encoding\r\nContent-Encoding: gzip\r\n\r\n"
                .to_vec()
        );
    }

    #[test]
    fn a_304_replaces_the_fields_it_carries() {
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nDate: Tue, 08 Dec 2026 02:00:00 GMT\r\n\
Cache-Control: max-age=120\r\nX-Cache: HIT\r\nConnection: close\r\n\r\n";
        let head = parse_response(not_modified).unwrap().unwrap();
        let merged = merge_304(&stored(), not_modified, &head, Some(b"x-cache"));
        assert_eq!(
            merged,
            b"HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Type: text/html\r\n\
Date: Tue, 08 Dec 2026 02:00:00 GMT\r\nCache-Control: max-age=120\r\n"
                .to_vec()
        );
    }

    #[test]
    fn vary_and_fields_are_added_once() {
        let mut head = b"HTTP/1.1 200 OK\r\nVary: accept-encoding\r\n\r\n".to_vec();
        add_vary(&mut head, b"Accept-Encoding");
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nVary: accept-encoding\r\n\r\n".to_vec()
        );
        let mut head = b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\n".to_vec();
        add_vary(&mut head, b"Accept-Encoding");
        insert_field(&mut head, b"X-Cache", b"MISS");
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nX: 1\r\nVary: Accept-Encoding\r\nX-Cache: MISS\r\n\r\n".to_vec()
        );
    }
}
