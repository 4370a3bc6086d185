//! Turning an HTTP/2 request into the HTTP/1.1 request head the existing pipeline understands
//! (RFC 9113 §8.3.1 and §8.2), and an HTTP/1.1 response head into HTTP/2 fields.
//!
//! The I/O layer decodes HPACK (the `h2` library) and passes the pseudo-header values and
//! fields here as byte slices. The HTTP/1.1 head written here is then parsed by the same parser
//! as a client's, so routing, path normalisation, limits and the forwarding rewrite apply to
//! both protocols alike, and a field that could not be said in HTTP/1.1 cannot slip through.

use crate::http1::{has_token, BodyFraming, ResponseHead};
use crate::Status;

/// The request line parts of an HTTP/2 request, from its pseudo-header fields.
#[derive(Debug, Clone, Copy)]
pub struct PseudoHeaders<'a> {
    /// `:method`.
    pub method: &'a [u8],
    /// `:authority`, if sent.
    pub authority: Option<&'a [u8]>,
    /// `:path` (path and query), if sent.
    pub path: Option<&'a [u8]>,
}

/// How the request body reaches the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// The HEADERS frame ended the stream: no body.
    None,
    /// The client declared the length.
    Length(u64),
    /// Length unknown: the upstream request is chunked (which also carries trailers).
    Chunked,
}

/// Field names that are connection-specific in HTTP/1.1 and have no place in an HTTP/2
/// request (RFC 9113 §8.2.2). `te` is allowed with the value `trailers` only.
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether a field value may be written into an HTTP/1.1 head: no CR, LF or NUL, and no
/// leading or trailing whitespace (RFC 9113 §8.2.1).
fn value_ok(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
        && !v.first().is_some_and(|&b| b == b' ' || b == b'\t')
        && !v.last().is_some_and(|&b| b == b' ' || b == b'\t')
}

/// Whether a field name is a lowercase token (uppercase is malformed in HTTP/2, §8.2).
fn name_ok(n: &[u8]) -> bool {
    !n.is_empty()
        && n.iter()
            .all(|&b| crate::http1::is_tchar(b) && !b.is_ascii_uppercase())
}

/// Writes the HTTP/1.1 request head for an HTTP/2 request into `out`: the request line, `Host`
/// from `:authority` (or the `host` field), the fields with cookies joined into one (§8.2.3),
/// and the body framing. Returns the status to answer instead when the request is malformed
/// or cannot be forwarded; the caller resets the stream or answers with it. `fields` yields
/// the (decoded) fields afresh on each call: they are looked at more than once.
pub fn write_http1_request<'a, I>(
    pseudo: &PseudoHeaders<'_>,
    fields: impl Fn() -> I,
    body: RequestBody,
    out: &mut Vec<u8>,
) -> Result<(), Status>
where
    I: Iterator<Item = (&'a [u8], &'a [u8])>,
{
    if pseudo.method == b"CONNECT" {
        // Tunnels over HTTP/2 streams (RFC 8441 and plain CONNECT) are not offered.
        return Err(Status::MethodNotAllowed);
    }
    let path = pseudo
        .path
        .filter(|p| !p.is_empty())
        .ok_or(Status::BadRequest)?;
    if !(path[0] == b'/' || path == b"*") || !value_ok(path) || path.contains(&b' ') {
        return Err(Status::BadRequest);
    }
    let mut host_field = None;
    for (name, value) in fields() {
        if !name_ok(name) || !value_ok(value) {
            return Err(Status::BadRequest);
        }
        if CONNECTION_SPECIFIC.iter().any(|c| eq(c, name))
            || (eq(name, b"te") && !eq(value, b"trailers"))
        {
            return Err(Status::BadRequest);
        }
        if eq(name, b"host") {
            if host_field.is_some() {
                return Err(Status::BadRequest);
            }
            host_field = Some(value);
        }
    }
    let host = match (pseudo.authority, host_field) {
        (Some(a), Some(h)) if !eq(a, h) => return Err(Status::BadRequest),
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) => return Err(Status::BadRequest),
    };
    if host.is_empty() || !value_ok(host) || host.contains(&b'@') || host.contains(&b' ') {
        return Err(Status::BadRequest);
    }
    out.extend_from_slice(pseudo.method);
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    let mut cookies = 0;
    for (name, value) in fields() {
        if eq(name, b"host") || eq(name, b"content-length") {
            continue;
        }
        if eq(name, b"cookie") {
            cookies += 1;
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if cookies > 0 {
        out.extend_from_slice(b"cookie: ");
        let mut first = true;
        for (_, value) in fields().filter(|(n, _)| eq(n, b"cookie")) {
            if !first {
                out.extend_from_slice(b"; ");
            }
            first = false;
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n");
    }
    match body {
        RequestBody::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestBody::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        RequestBody::None => {
            // HTTP/1.1 servers expect a length on requests whose method usually has a body.
            if [&b"POST"[..], b"PUT", b"PATCH"].contains(&pseudo.method) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The fields of an upstream HTTP/1.1 response that go on to an HTTP/2 client: everything but
/// the connection-specific fields and those `Connection` names (§8.2.2), and `Content-Length`
/// unless it frames the body or `head_request` (a HEAD response states the length a GET would
/// get). Yields `(name, value)` slices of `buf`.
pub fn response_fields<'a>(
    buf: &'a [u8],
    head: &'a ResponseHead,
    framing: BodyFraming,
    head_request: bool,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    let keep_length = head_request || matches!(framing, BodyFraming::Length(_));
    let connection = head.headers.find(buf, b"connection");
    head.headers.as_slice().iter().filter_map(move |h| {
        let name = h.name.of(buf);
        let value = h.value.of(buf);
        let drop = CONNECTION_SPECIFIC.iter().any(|c| eq(c, name))
            || eq(name, b"te")
            || (eq(name, b"content-length") && !keep_length)
            || connection.is_some_and(|c| has_token(c, name));
        (!drop).then_some((name, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        method: &str,
        authority: Option<&str>,
        path: Option<&str>,
        fields: &[(&str, &str)],
        body: RequestBody,
    ) -> Result<String, Status> {
        let pseudo = PseudoHeaders {
            method: method.as_bytes(),
            authority: authority.map(str::as_bytes),
            path: path.map(str::as_bytes),
        };
        let mut out = Vec::new();
        let it = || fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        write_http1_request(&pseudo, it, body, &mut out)?;
        Ok(String::from_utf8(out).expect("ascii"))
    }

    #[test]
    fn authority_becomes_host_and_cookies_are_joined() {
        let head = req(
            "GET",
            Some("example.com"),
            Some("/a?b=1"),
            &[("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")],
            RequestBody::None,
        )
        .expect("valid");
        assert_eq!(
            head,
            "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\ncookie: a=1; b=2\r\n\r\n"
        );
        let parsed = crate::http1::parse_request(head.as_bytes())
            .expect("parses")
            .expect("complete");
        assert_eq!(parsed.host_name(head.as_bytes()), Some(&b"example.com"[..]));
    }

    #[test]
    fn body_framing_is_stated() {
        let h = req("POST", Some("h"), Some("/"), &[], RequestBody::None).expect("valid");
        assert!(h.contains("content-length: 0\r\n"));
        let h = req("GET", Some("h"), Some("/"), &[], RequestBody::None).expect("valid");
        assert!(!h.contains("content-length"));
        let h = req(
            "PUT",
            Some("h"),
            Some("/"),
            &[("content-length", "5")],
            RequestBody::Length(5),
        )
        .expect("valid");
        assert_eq!(h.matches("content-length").count(), 1);
        let h = req("POST", Some("h"), Some("/"), &[], RequestBody::Chunked).expect("valid");
        assert!(h.contains("transfer-encoding: chunked\r\n"));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let none = RequestBody::None;
        let bad = |m, a, p, f: &[(&str, &str)]| req(m, a, p, f, none).expect_err("malformed");
        assert_eq!(bad("GET", Some("h"), None, &[]), Status::BadRequest);
        assert_eq!(bad("GET", Some("h"), Some(""), &[]), Status::BadRequest);
        assert_eq!(
            bad("GET", Some("h"), Some("noslash"), &[]),
            Status::BadRequest
        );
        assert_eq!(bad("GET", None, Some("/"), &[]), Status::BadRequest);
        assert_eq!(
            bad("GET", Some("a"), Some("/"), &[("host", "b")]),
            Status::BadRequest
        );
        assert_eq!(
            bad("GET", Some("h"), Some("/"), &[("connection", "close")]),
            Status::BadRequest
        );
        assert_eq!(
            bad("GET", Some("h"), Some("/"), &[("te", "gzip")]),
            Status::BadRequest
        );
        assert_eq!(
            bad("GET", Some("h"), Some("/"), &[("X-Upper", "v")]),
            Status::BadRequest
        );
        assert_eq!(
            bad("GET", Some("h"), Some("/"), &[("x", "a\r\nb: c")]),
            Status::BadRequest
        );
        assert_eq!(
            bad("GET", Some("h"), Some("/"), &[("x", " padded")]),
            Status::BadRequest
        );
        assert_eq!(
            bad("CONNECT", Some("h:443"), None, &[]),
            Status::MethodNotAllowed
        );
        // A host field alone names the target; `te: trailers` is fine.
        let ok = req(
            "GET",
            None,
            Some("/"),
            &[("host", "h"), ("te", "trailers")],
            none,
        );
        assert!(ok.expect("valid").contains("te: trailers\r\n"));
    }

    #[test]
    fn response_fields_drop_connection_specific_ones() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: 5\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\nTrailer: grpc-status\r\n\r\n";
        let head = crate::http1::parse_response(raw)
            .expect("parses")
            .expect("complete");
        let names: Vec<String> = response_fields(raw, &head, BodyFraming::Chunked, false)
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(names, ["Content-Type", "Trailer"]);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let head = crate::http1::parse_response(raw)
            .expect("parses")
            .expect("complete");
        assert_eq!(
            response_fields(raw, &head, BodyFraming::Length(3), false).count(),
            1
        );
        // A HEAD response keeps the length a GET would get, though no body follows.
        assert_eq!(
            response_fields(raw, &head, BodyFraming::None, true).count(),
            1
        );
        assert_eq!(
            response_fields(raw, &head, BodyFraming::None, false).count(),
            0
        );
    }
}
