//! Request heads: parsed by httparse into spans, then checked for everything that decides how
//! the proxy frames, routes and forwards the request (RFC 9112 §6 and the smuggling rules).

use super::head::{FramingConflict, FramingFields, Headers, Span, Version, MAX_HEADERS};
use super::{BodyFraming, ParseError};

/// A request method, with the facts the proxy needs about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// TRACE
    Trace,
    /// PATCH
    Patch,
    /// CONNECT (never forwarded)
    Connect,
    /// Any other token.
    Other,
}

impl Method {
    fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// Whether RFC 9110 calls the method idempotent, which makes a retry on a fresh connection
    /// safe when the first attempt failed before any response byte.
    pub const fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// A parsed request head; every byte field is a [`Span`] into the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The method token as sent.
    pub method_span: Span,
    /// The request target as sent.
    pub target: Span,
    /// The path and query to forward: the target itself in origin form, the part after the
    /// authority in absolute form (empty means "/").
    pub path: Span,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Length of the head including its blank line; the body starts here.
    pub head_len: usize,
    /// The header fields in wire order.
    pub headers: Headers,
    /// The `Host` field, or the authority of an absolute-form target.
    pub host: Option<Span>,
    /// How the request body is delimited.
    pub framing: BodyFraming,
    /// The `Content-Length` the request carried (one value, however many fields said it).
    pub content_length: Option<u64>,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` together with an `Upgrade` field.
    pub upgrade: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(head))` once the whole head is there
/// (`head.head_len` tells where the body starts) and `Err` when the request must be refused.
/// Splitting the same bytes differently across calls never changes the outcome.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, ParseError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(ParseError::Malformed),
    };
    let (Some(method_str), Some(target_str), Some(minor)) = (req.method, req.path, req.version)
    else {
        return Err(ParseError::Malformed);
    };
    // httparse takes a bare LF as a line end (RFC 9112 §2.2 allows that); a proxy that does so
    // while a backend does not is one way to smuggle a request, so every line must end in CRLF.
    // (A bare CR never gets this far: httparse rejects it.)
    if has_bare_lf(&buf[..head_len]) {
        return Err(ParseError::BareLineEnding);
    }
    let version = if minor == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    let method = Method::from_bytes(method_str.as_bytes());
    if method == Method::Connect {
        return Err(ParseError::MethodNotAllowed);
    }

    let target = Span::within(buf, target_str.as_bytes());
    let (authority, path) = split_target(buf, target_str.as_bytes(), method)?;

    let mut head = RequestHead {
        method,
        method_span: Span::within(buf, method_str.as_bytes()),
        target,
        path,
        version,
        head_len,
        headers: Headers::default(),
        host: authority,
        framing: BodyFraming::None,
        content_length: None,
        keep_alive: false,
        upgrade: false,
        expect_continue: false,
    };
    head.headers.fill(buf, req.headers);

    let mut framing = FramingFields::default();
    let mut host_fields = 0;
    let mut has_upgrade_field = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        framing.add(name, h.value).map_err(|c| match c {
            FramingConflict::Length => ParseError::AmbiguousLength,
            FramingConflict::BadLength => ParseError::BadContentLength,
            FramingConflict::BadCoding => ParseError::BadTransferCoding,
        })?;
        if name.eq_ignore_ascii_case(b"host") {
            host_fields += 1;
            if !valid_host(h.value) {
                return Err(ParseError::BadHost);
            }
            // An absolute-form target's authority wins over the Host field (RFC 9112 §3.2.2).
            if authority.is_none() {
                head.host = Some(Span::within(buf, h.value));
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if version == Version::Http11 {
                if !h.value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(ParseError::Expectation);
                }
                head.expect_continue = true;
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            has_upgrade_field = true;
        }
    }
    if host_fields > 1 || (version == Version::Http11 && host_fields == 0) {
        return Err(ParseError::BadHost);
    }
    if framing.transfer_encoding {
        // Both framings at once is the classic smuggling vector: refuse instead of choosing.
        if framing.content_length.is_some() {
            return Err(ParseError::AmbiguousLength);
        }
        // HTTP/1.0 has no chunked coding; a 1.0 request claiming one is not to be trusted.
        if version == Version::Http10 {
            return Err(ParseError::Malformed);
        }
        // Well-formed but not what Ringway can forward (`gzip, chunked`, `identity`): 501.
        if !framing.only_chunked() {
            return Err(ParseError::UnsupportedTransferCoding);
        }
    }
    head.content_length = framing.content_length;
    head.framing = match (framing.chunked, framing.content_length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(0) | None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    head.keep_alive = match version {
        Version::Http11 => !framing.close,
        Version::Http10 => framing.keep_alive && !framing.close,
    };
    head.upgrade = framing.upgrade && has_upgrade_field && version == Version::Http11;
    Ok(Some(head))
}

/// Whether some LF in `head` is not preceded by CR. httparse has already refused any CR not
/// followed by LF, so every CR starts a CRLF and a bare LF shows as more LFs than CRs: two
/// counts the compiler vectorises, instead of a byte-by-byte walk on every request.
fn has_bare_lf(head: &[u8]) -> bool {
    let count = |c: u8| head.iter().filter(|&&b| b == c).count();
    count(b'\n') != count(b'\r')
}

/// httparse reports any unreadable version as a version error; only a request line that really
/// names another HTTP version (`HTTP/2.0`) gets 505, anything else is plain garbage (400).
fn version_error(buf: &[u8]) -> ParseError {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(buf);
    let Some(version) = line.trim_ascii_end().rsplit(|&b| b == b' ').next() else {
        return ParseError::Malformed;
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            ParseError::Version
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => ParseError::Version,
        _ => ParseError::Malformed,
    }
}

/// Splits a request target into (authority, path-and-query) spans.
fn split_target(
    buf: &[u8],
    target: &[u8],
    method: Method,
) -> Result<(Option<Span>, Span), ParseError> {
    if target.first() == Some(&b'/') {
        return Ok((None, Span::within(buf, target)));
    }
    if target == b"*" && method == Method::Options {
        return Ok((None, Span::within(buf, target)));
    }
    let rest = match target.get(..7) {
        Some(s) if s.eq_ignore_ascii_case(b"http://") => &target[7..],
        _ => match target.get(..8) {
            Some(s) if s.eq_ignore_ascii_case(b"https://") => &target[8..],
            _ => return Err(ParseError::Malformed),
        },
    };
    let cut = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() || !valid_host(authority) || authority.contains(&b'@') {
        return Err(ParseError::BadHost);
    }
    Ok((Some(Span::within(buf, authority)), Span::within(buf, path)))
}

/// A Host value the router can match on: host name or IP literal, optional port, nothing else.
fn valid_host(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

impl RequestHead {
    /// Puts the path in its one canonical form, in place in `buf` (the buffer the head was
    /// parsed from), and points [`RequestHead::path`] at it. Routing, policy checks and the
    /// forwarded request line all use that form; see [`super::path`] for the rules.
    pub fn normalize_path(&mut self, buf: &mut [u8]) -> Result<(), ParseError> {
        let (start, end) = (self.path.start as usize, self.path.end as usize);
        let n = super::path::normalize(&mut buf[start..end]).map_err(|_| ParseError::BadPath)?;
        self.path.end = self.path.start + n as u32;
        Ok(())
    }

    /// The host to route on: the Host value (or authority) without its port.
    pub fn host_name<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        let host = self.host?.of(buf);
        if host.first() == Some(&b'[') {
            let end = host.iter().position(|&b| b == b']')?;
            return Some(&host[..=end]);
        }
        Some(match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        })
    }
}

#[cfg(test)]
mod tests;
