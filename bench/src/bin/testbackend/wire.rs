//! Reading requests off a test-backend connection: the socket with its read-ahead buffer, head
//! parsing into the few parts the backend looks at, and body framing (length, chunked) so a
//! request's body is read and discarded exactly. Plain `std`, blocking; no responses here.

use std::io::{self, Read};
use std::net::TcpStream;

use super::{MAX_CHUNK_LINE, MAX_HEAD};

/// A connection's socket with the bytes read past the current request.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
}

/// Why a connection ends.
pub(crate) enum Stop {
    /// The client closed, timed out or the socket failed: just close.
    Gone,
    /// The request was malformed: answer 400 with this reason, then close.
    Bad(&'static str),
}

impl From<io::Error> for Stop {
    fn from(_: io::Error) -> Self {
        Stop::Gone
    }
}

impl Conn {
    /// Reads more bytes into the buffer; EOF, timeout and errors end the connection.
    pub(crate) fn fill(&mut self) -> Result<(), Stop> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => Err(Stop::Gone),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// Reads until the buffer holds a complete head; returns the head's length (through the
    /// blank line). Empty lines before a request are skipped.
    pub(crate) fn read_head(&mut self) -> Result<usize, Stop> {
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                let len = at + 4;
                return if len > MAX_HEAD {
                    Err(Stop::Bad("request head too large"))
                } else {
                    Ok(len)
                };
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Stop::Bad("request head too large"));
            }
            self.fill()?;
        }
    }

    /// Discards `n` body bytes.
    pub(crate) fn skip(&mut self, mut n: u64) -> Result<(), Stop> {
        loop {
            let have = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
            self.buf.drain(..have);
            n -= have as u64;
            if n == 0 {
                return Ok(());
            }
            self.fill()?;
        }
    }

    /// Takes one CRLF-terminated line (without the CRLF) off the buffer.
    pub(crate) fn line(&mut self, what: &'static str) -> Result<Vec<u8>, Stop> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line = self.buf[..at].to_vec();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_CHUNK_LINE {
                return Err(Stop::Bad(what));
            }
            self.fill()?;
        }
    }

    /// Discards a chunked body, trailers included.
    pub(crate) fn skip_chunked(&mut self) -> Result<(), Stop> {
        loop {
            let line = self.line("chunk-size line too long")?;
            let size = line.split(|&b| b == b';').next().unwrap_or_default();
            let size = trim(size);
            if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
                return Err(Stop::Bad("bad chunk size"));
            }
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or(Stop::Bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            self.skip(size)?;
            if !self.line("chunk data overruns its size")?.is_empty() {
                return Err(Stop::Bad("chunk data overruns its size"));
            }
        }
        let mut trailers = 0;
        loop {
            let line = self.line("trailer line too long")?;
            if line.is_empty() {
                return Ok(());
            }
            trailers += line.len() + 2;
            if trailers > MAX_HEAD {
                return Err(Stop::Bad("trailers too large"));
            }
        }
    }
}

/// How a request's body is framed.
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// The parts of a request head this server looks at.
pub(crate) struct Request {
    pub(crate) method: String,
    /// The request target as sent (origin form; the path and query of an absolute form).
    pub(crate) target: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) keep_alive: bool,
    pub(crate) http10: bool,
    pub(crate) framing: Framing,
    pub(crate) cookies: Vec<String>,
    /// `If-None-Match`, several fields joined with `, `.
    pub(crate) if_none_match: Option<String>,
    /// `If-Modified-Since`, several fields joined with `, ` (then no valid date).
    pub(crate) if_modified_since: Option<String>,
    /// `Accept-Encoding`, several fields joined with `, `.
    pub(crate) accept_encoding: Option<String>,
}

pub(crate) fn parse_head(head: &[u8]) -> Result<Request, Stop> {
    let text = std::str::from_utf8(head).map_err(|_| Stop::Bad("request head is not UTF-8"))?;
    let text = text.strip_suffix("\r\n\r\n").unwrap_or(text);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Stop::Bad("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(Stop::Bad("malformed method"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(Stop::Bad("unsupported HTTP version")),
    };
    if target.is_empty() || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(Stop::Bad("malformed request target"));
    }
    // Absolute form (`http://host/path`): keep the path.
    let target = match target.split_once("://") {
        Some((_, rest)) if !target.starts_with('/') => rest.find('/').map_or("/", |at| &rest[at..]),
        _ => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();

    let (mut length, mut chunked, mut te_seen) = (None::<u64>, false, false);
    let (mut close, mut keep_alive) = (false, false);
    let mut cookies = Vec::new();
    let (mut if_none_match, mut if_modified_since, mut accept_encoding) = (None, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Stop::Bad("header line without a colon"));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(Stop::Bad("malformed header name"));
        }
        if value.bytes().any(|b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
            return Err(Stop::Bad("control character in a header value"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Stop::Bad("bad Content-Length"));
            }
            let n: u64 = value.parse().map_err(|_| Stop::Bad("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Stop::Bad("conflicting Content-Length fields"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te_seen = true;
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            chunked = last.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            cookies.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("if-none-match") {
            append_field(&mut if_none_match, value);
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            append_field(&mut if_modified_since, value);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            append_field(&mut accept_encoding, value);
        }
    }
    let framing = match (te_seen, length) {
        (true, Some(_)) => return Err(Stop::Bad("both Content-Length and Transfer-Encoding")),
        (true, None) if http10 => return Err(Stop::Bad("Transfer-Encoding in HTTP/1.0")),
        (true, None) if !chunked => return Err(Stop::Bad("unsupported Transfer-Encoding")),
        (true, None) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        path: path.to_owned(),
        query,
        keep_alive: !close && (!http10 || keep_alive),
        http10,
        framing,
        cookies,
        if_none_match,
        if_modified_since,
        accept_encoding,
    })
}

/// Adds one more field line's value to a list-valued field (`a, b`).
pub(crate) fn append_field(field: &mut Option<String>, value: &str) {
    match field {
        Some(v) => {
            v.push_str(", ");
            v.push_str(value);
        }
        None => *field = Some(value.to_owned()),
    }
}

/// RFC 9110 `tchar`: what a method or field name may consist of.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(a), Some(b)) => &s[a..=b],
        _ => &[],
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
