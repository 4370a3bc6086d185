//! Pieces shared by request and response heads: spans, header lists, version, and the scan for
//! the end of a head.

/// The most header fields a head may carry; one more is answered with 431.
pub const MAX_HEADERS: usize = 100;

/// A byte range inside the buffer a head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `buf`, the buffer the head was parsed from.
    #[inline]
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    /// The span of `part` inside `base`. A `part` that is not a sub-slice of `base` (httparse
    /// hands out a static `""` for some empty fields, such as a missing reason phrase) gets an
    /// empty span: pointer arithmetic across buffers must never become an index.
    #[inline]
    pub(crate) fn within(base: &[u8], part: &[u8]) -> Span {
        let (b, p) = (base.as_ptr() as usize, part.as_ptr() as usize);
        if p < b || p + part.len() > b + base.len() {
            return Span::default();
        }
        let start = p - b;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// One header field as spans into the parse buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderSpan {
    /// The field name.
    pub name: Span,
    /// The field value, without surrounding whitespace.
    pub value: Span,
}

/// A fixed-capacity list of header spans; lives inline in a head, never on the heap.
#[derive(Debug, Clone)]
pub struct Headers {
    fields: [HeaderSpan; MAX_HEADERS],
    len: usize,
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            fields: [HeaderSpan::default(); MAX_HEADERS],
            len: 0,
        }
    }
}

impl Headers {
    /// The recorded fields in wire order.
    #[inline]
    pub fn as_slice(&self) -> &[HeaderSpan] {
        &self.fields[..self.len]
    }

    pub(crate) fn fill(&mut self, base: &[u8], parsed: &[httparse::Header<'_>]) {
        for (slot, h) in self.fields.iter_mut().zip(parsed) {
            *slot = HeaderSpan {
                name: Span::within(base, h.name.as_bytes()),
                value: Span::within(base, h.value),
            };
        }
        self.len = parsed.len().min(MAX_HEADERS);
    }

    /// Whether a `Connection` field lists `name`: such a field describes the hop, not the
    /// message, and is not forwarded.
    pub fn connection_lists(&self, buf: &[u8], name: &[u8]) -> bool {
        self.as_slice().iter().any(|h| {
            h.name.of(buf).eq_ignore_ascii_case(b"connection") && has_token(h.value.of(buf), name)
        })
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn find<'a>(&self, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        self.as_slice()
            .iter()
            .find(|h| h.name.of(buf).eq_ignore_ascii_case(name))
            .map(|h| h.value.of(buf))
    }
}

/// The HTTP version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: no chunked coding, close by default.
    Http10,
    /// HTTP/1.1: keep-alive by default.
    Http11,
}

/// Finds where a message head ends in `buf`: the offset just past its blank line.
///
/// A cheap scan the I/O layer runs before handing bytes to the parser, so that a head arriving a
/// byte at a time is parsed once, not once per byte. `from` is how much of `buf` an earlier call
/// already scanned without success. Both CRLF CRLF and LF LF end a head; the parser makes the
/// final decision (and re-serialisation upstream always uses CRLF).
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    let mut i = start;
    while let Some(p) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let lf = i + p;
        match buf.get(lf + 1..) {
            Some([b'\n', ..]) => return Some(lf + 2),
            Some([b'\r', b'\n', ..]) => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Parses a `Content-Length` value strictly: digits only, at most 19 of them.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// What the framing headers of one head say, collected field by field.
#[derive(Debug, Default)]
pub(crate) struct FramingFields {
    pub content_length: Option<u64>,
    pub transfer_encoding: bool,
    pub chunked: bool,
    /// Transfer codings listed, over every Transfer-Encoding field.
    pub codings: u8,
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

/// The ways a set of framing fields can be contradictory.
pub(crate) enum FramingConflict {
    Length,
    BadLength,
    /// Transfer-Encoding is not a well-formed list of codings, or names `chunked` twice.
    BadCoding,
}

impl FramingFields {
    /// Folds one header field into the collected facts.
    pub(crate) fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), FramingConflict> {
        if name.eq_ignore_ascii_case(b"content-length") {
            // A list such as "5, 5" is allowed by RFC 9110 only when every member agrees.
            for part in value.split(|&b| b == b',') {
                let n =
                    parse_content_length(part.trim_ascii()).ok_or(FramingConflict::BadLength)?;
                match self.content_length {
                    Some(old) if old != n => return Err(FramingConflict::Length),
                    _ => self.content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Strict syntax: a list of bare coding names. Empty elements, parameters
            // (`chunked;q=1`) and a repeated `chunked` are malformed, not merely unsupported:
            // each is a known way to make two parsers disagree on where a body ends.
            self.transfer_encoding = true;
            for part in value.split(|&b| b == b',') {
                let coding = part.trim_ascii();
                if coding.is_empty() || !coding.iter().all(|&b| is_tchar(b)) {
                    return Err(FramingConflict::BadCoding);
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    if self.chunked {
                        return Err(FramingConflict::BadCoding);
                    }
                    self.chunked = true;
                }
                self.codings = self.codings.saturating_add(1);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= has_token(value, b"close");
            self.keep_alive |= has_token(value, b"keep-alive");
            self.upgrade |= has_token(value, b"upgrade");
        }
        Ok(())
    }

    /// Whether the transfer codings are exactly one `chunked`, the only one Ringway forwards.
    pub(crate) fn only_chunked(&self) -> bool {
        self.chunked && self.codings == 1
    }
}

/// Whether `b` may appear in a token (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_across_scans() {
        let msg = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let end = msg.len() - 4;
        for cut in 0..msg.len() {
            let first = find_head_end(&msg[..cut], 0);
            let found = first.or_else(|| find_head_end(msg, cut));
            assert_eq!(found, Some(end), "cut at {cut}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
    }

    #[test]
    fn content_length_is_strict() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"1234"), Some(1234));
        assert_eq!(parse_content_length(b"+5"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"0x10"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn tokens_are_case_insensitive() {
        assert!(has_token(b"Keep-Alive, Upgrade", b"upgrade"));
        assert!(!has_token(b"keep-alive-ish", b"keep-alive"));
    }
}
