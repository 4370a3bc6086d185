//! Response heads from upstreams: parsed into spans and checked for how their body is framed.

use super::head::{FramingConflict, FramingFields, Headers, Span, Version, MAX_HEADERS};
use super::{BodyFraming, Method, ParseError};

/// A parsed response head; byte fields are [`Span`]s into the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The status code.
    pub status: u16,
    /// The reason phrase as sent (may be empty).
    pub reason: Span,
    /// Length of the head including its blank line.
    pub head_len: usize,
    /// The header fields in wire order.
    pub headers: Headers,
    /// The `Content-Length`, if any.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Whether the upstream will close the connection after this response.
    pub close: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` means more bytes are needed.
///
/// Upstream answers are held to the same framing rules as client requests: a response with both
/// `Content-Length` and `Transfer-Encoding`, conflicting lengths, or a coding other than chunked
/// is refused (the client then gets a 502) rather than forwarded with a guessed length.
pub fn parse_response(buf: &[u8]) -> Result<Option<ResponseHead>, ParseError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut raw);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        // Whatever the upstream got wrong, the client sees a 502.
        Err(_) => return Err(ParseError::Malformed),
    };
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(ParseError::Malformed);
    };
    let version = if minor == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    let reason = res
        .reason
        .map_or(Span::default(), |r| Span::within(buf, r.as_bytes()));
    let mut framing = FramingFields::default();
    for h in res.headers.iter() {
        framing
            .add(h.name.as_bytes(), h.value)
            .map_err(|c| match c {
                FramingConflict::Length => ParseError::AmbiguousLength,
                FramingConflict::BadLength => ParseError::BadContentLength,
                FramingConflict::BadCoding => ParseError::BadTransferCoding,
            })?;
    }
    if framing.transfer_encoding && framing.content_length.is_some() {
        return Err(ParseError::AmbiguousLength);
    }
    // A response may apply codings before chunked, but Ringway relays only a lone `chunked`.
    if framing.transfer_encoding && !framing.only_chunked() {
        return Err(ParseError::UnsupportedTransferCoding);
    }
    let mut headers = Headers::default();
    headers.fill(buf, res.headers);
    Ok(Some(ResponseHead {
        version,
        status,
        reason,
        head_len,
        headers,
        content_length: framing.content_length,
        chunked: framing.chunked,
        close: match version {
            Version::Http11 => framing.close,
            Version::Http10 => !framing.keep_alive || framing.close,
        },
    }))
}

impl ResponseHead {
    /// How this response's body is delimited, given the method of the request it answers
    /// (RFC 9112 §6.3: HEAD, 1xx, 204 and 304 never carry a body).
    pub fn framing(&self, request: Method) -> BodyFraming {
        if request == Method::Head || self.status < 200 || self.status == 204 || self.status == 304
        {
            BodyFraming::None
        } else if self.chunked {
            BodyFraming::Chunked
        } else if let Some(n) = self.content_length {
            if n == 0 {
                BodyFraming::None
            } else {
                BodyFraming::Length(n)
            }
        } else {
            BodyFraming::UntilClose
        }
    }

    /// Whether this is an interim (1xx) response other than 101, which precedes the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ResponseHead {
        parse_response(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn framing_follows_status_and_method() {
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.framing(Method::Get), BodyFraming::Length(5));
        assert_eq!(r.framing(Method::Head), BodyFraming::None);
        let r = parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.framing(Method::Get), BodyFraming::None);
        let r = parse("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(r.framing(Method::Get), BodyFraming::None);
        let r = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.framing(Method::Get), BodyFraming::Chunked);
        let r = parse("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(r.framing(Method::Get), BodyFraming::UntilClose);
        assert!(parse("HTTP/1.1 103 Early Hints\r\n\r\n").is_interim());
        assert!(!parse("HTTP/1.1 101 Switching Protocols\r\n\r\n").is_interim());
    }

    #[test]
    fn persistence_follows_version() {
        assert!(!parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close);
        assert!(parse("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").close);
        assert!(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
        assert!(!parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").close);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let both = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            parse_response(both.as_bytes()).unwrap_err(),
            ParseError::AmbiguousLength
        );
        let two = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(
            parse_response(two.as_bytes()).unwrap_err(),
            ParseError::AmbiguousLength
        );
        let gz = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(
            parse_response(gz.as_bytes()).unwrap_err(),
            ParseError::UnsupportedTransferCoding
        );
        assert_eq!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err(),
            ParseError::Malformed
        );
    }

    #[test]
    fn partial_heads_ask_for_more() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for cut in 0..full.len() - 2 {
            assert!(parse_response(&full[..cut]).unwrap().is_none(), "cut {cut}");
        }
        assert_eq!(
            parse(std::str::from_utf8(full).unwrap()).head_len,
            full.len() - 2
        );
    }
}
