//! A raw HTTP/1.1 client over a plain `TcpStream`: the tests write exact bytes and see exact
//! responses (framing, interim responses, trailers, closes), which a library client would hide.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default read/write timeout for client sockets: long enough for a loaded machine, short
/// enough that a hang fails the test instead of stalling the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Header or trailer fields, in order.
pub type Fields = Vec<(String, String)>;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// Header fields in order, as received.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Status codes of interim (1xx other than 101) responses that preceded this one.
    pub interim: Vec<u16>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The body as (lossy) text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status, headers and at most 200 bytes of body, for assertion messages.
    pub fn summary(&self) -> String {
        let body = self.body_text();
        let cut: String = body.chars().take(200).collect();
        let more = if cut.len() < body.len() { "…" } else { "" };
        format!(
            "{} {} {:?} body ({} bytes): {cut:?}{more}",
            self.version,
            self.status,
            self.headers,
            self.body.len()
        )
    }

    /// Whether the response announces that the connection closes.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

pub(super) fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A client connection with its read buffer (bytes past one response are kept for the next).
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` with 10 s read and write timeouts.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// Wraps an already connected socket.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set write timeout");
        let _ = stream.set_nodelay(true);
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes all of `data`.
    pub fn send(&mut self, data: impl AsRef<[u8]>) {
        self.stream
            .write_all(data.as_ref())
            .expect("write to the proxy");
    }

    /// Writes all of `data`, reporting failure (the proxy may have closed) instead of panicking.
    pub fn try_send(&mut self, data: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream.write_all(data.as_ref())
    }

    /// Sends `raw` and reads one response (a `HEAD` request is read as bodyless). Panics with
    /// the request on failure.
    pub fn request(&mut self, raw: &str) -> Response {
        self.send(raw.as_bytes());
        let head = raw.starts_with("HEAD ");
        self.read_response_for(head)
            .unwrap_or_else(|e| panic!("no response to {raw:?}: {e}"))
    }

    /// Reads the next response to a request other than HEAD.
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_for(false)
    }

    /// Reads the next final response (or a 101), collecting interim 1xx responses on the way.
    pub fn read_response_for(&mut self, head_request: bool) -> io::Result<Response> {
        let mut interim = Vec::new();
        loop {
            let mut r = self.read_one(head_request)?;
            if (100..200).contains(&r.status) && r.status != 101 {
                interim.push(r.status);
                continue;
            }
            r.interim = interim;
            return Ok(r);
        }
    }

    fn read_one(&mut self, head_request: bool) -> io::Result<Response> {
        let head = read_head(&mut self.stream, &mut self.buf)?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let headers = parse_fields(lines);
        let mut r = Response {
            version,
            status,
            headers,
            body: Vec::new(),
            chunked: false,
            trailers: Vec::new(),
            interim: Vec::new(),
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return Ok(r);
        }
        let te = r.header("transfer-encoding").map(str::to_ascii_lowercase);
        if te.is_some_and(|t| t.contains("chunked")) {
            let (body, trailers) = read_chunked(&mut self.stream, &mut self.buf)?;
            r.body = body;
            r.trailers = trailers;
            r.chunked = true;
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            r.body = read_exact(&mut self.stream, &mut self.buf, len)?;
        } else {
            while fill(&mut self.stream, &mut self.buf)? > 0 {}
            r.body = std::mem::take(&mut self.buf);
        }
        Ok(r)
    }

    /// Reads exactly `n` raw bytes (those already buffered first), e.g. from a tunnel.
    pub fn read_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        read_exact(&mut self.stream, &mut self.buf, n)
    }

    /// Reads until the peer closes (EOF or reset) and returns what arrived; `Err` with the
    /// bytes so far if the connection is still open after `within`.
    pub fn read_to_close(&mut self, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut got = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(got);
            }
            self.stream
                .set_read_timeout(Some(left.min(IO_TIMEOUT)))
                .expect("set read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Ok(got),
            }
        }
    }

    /// Whether the peer closes the connection within `within` without sending anything more.
    pub fn closes_within(&mut self, within: Duration) -> bool {
        matches!(self.read_to_close(within), Ok(rest) if rest.is_empty())
    }
}

/// One request on a new connection with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).request(&format!(
        "GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"
    ))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads more bytes into `buf`; returns how many (0 at EOF).
pub(super) fn fill(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 65536];
    loop {
        match r.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn eof(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed {what}"),
    )
}

/// Reads a message head (up to and including the blank line) and removes it from `buf`.
pub(super) fn read_head(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Ok(head);
        }
        if buf.len() > 1 << 20 {
            return Err(bad("message head over 1 MiB".into()));
        }
        if fill(r, buf)? == 0 {
            return Err(eof(if buf.is_empty() {
                "before a message head"
            } else {
                "in the middle of a message head"
            }));
        }
    }
}

/// Parses `Name: value` lines.
pub(super) fn parse_fields<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// Reads exactly `len` bytes (taking buffered bytes first).
pub(super) fn read_exact(r: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> io::Result<Vec<u8>> {
    while buf.len() < len {
        if fill(r, buf)? == 0 {
            return Err(eof(&format!("after {} of {len} body bytes", buf.len())));
        }
    }
    Ok(buf.drain(..len).collect())
}

fn read_line(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 2);
            return Ok(line);
        }
        if fill(r, buf)? == 0 {
            return Err(eof("in a chunked body"));
        }
    }
}

/// Reads and decodes a chunked body, returning the payload and the trailer fields.
pub(super) fn read_chunked(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<(Vec<u8>, Fields)> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, buf)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let line = read_line(r, buf)?;
                if line.is_empty() {
                    return Ok((body, trailers));
                }
                trailers.extend(parse_fields(std::iter::once(line.as_str())));
            }
        }
        let data = read_exact(r, buf, size + 2)?;
        if &data[size..] != b"\r\n" {
            return Err(bad("chunk data not followed by CRLF".into()));
        }
        body.extend_from_slice(&data[..size]);
    }
}
