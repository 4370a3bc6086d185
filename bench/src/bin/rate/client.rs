//! The client side of one keep-alive connection: connecting, sending, reading and strictly
//! parsing responses (status line, CRLF headers, Content-Length bodies), within deadlines.

use super::*;

/// A complete response as the client saw it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Response {
    pub(super) status: u16,
    /// Bytes read for it: heads (interim ones too) and body.
    pub(super) bytes: u64,
}

/// One keep-alive connection and its read buffer, reopened after any failure.
pub(super) struct Client {
    pub(super) addr: SocketAddr,
    pub(super) request: Vec<u8>,
    pub(super) stream: Option<TcpStream>,
    pub(super) buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[lo..hi]`.
    pub(super) lo: usize,
    pub(super) hi: usize,
}

impl Client {
    pub(super) fn new(addr: SocketAddr, request: Vec<u8>) -> Client {
        Client {
            addr,
            request,
            stream: None,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            lo: 0,
            hi: 0,
        }
    }

    pub(super) fn connect_early(&mut self, deadline: Instant) {
        self.stream = connect(self.addr, deadline).ok();
    }

    /// Sends the request and reads the whole response, both by `deadline`. On failure, or when
    /// the server closes after the response, the connection is dropped and reopened next time.
    pub(super) fn exchange(&mut self, deadline: Instant) -> Result<Response, Failure> {
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => {
                self.lo = 0;
                self.hi = 0;
                connect(self.addr, deadline)?
            }
        };
        match self.exchange_on(&mut stream, deadline) {
            Ok((resp, close)) => {
                if !close {
                    self.stream = Some(stream);
                }
                Ok(resp)
            }
            Err(f) => {
                self.lo = 0;
                self.hi = 0;
                Err(f)
            }
        }
    }

    pub(super) fn exchange_on(
        &mut self,
        stream: &mut TcpStream,
        deadline: Instant,
    ) -> Result<(Response, bool), Failure> {
        if self.hi > self.lo {
            return Err(Failure::Parse("bytes arrived before the request was sent"));
        }
        self.lo = 0;
        self.hi = 0;
        stream.write_all(&self.request).map_err(io_failure)?;

        let mut bytes = 0u64;
        // Each pass consumes at least one head, so this ends by the deadline.
        let head = loop {
            let head = self.read_head(stream, deadline)?;
            self.lo += head.head_len;
            bytes += head.head_len as u64;
            match head.status {
                101 => return Err(Failure::Parse("unexpected 101 Switching Protocols")),
                100..=199 => continue,
                _ => break head,
            }
        };

        let mut remaining = head.body_len;
        let buffered = (self.hi - self.lo).min(usize::try_from(remaining).unwrap_or(usize::MAX));
        self.lo += buffered;
        remaining -= buffered as u64;
        while remaining > 0 {
            let n = read_some(stream, &mut self.buf, deadline)?;
            let used = n.min(usize::try_from(remaining).unwrap_or(usize::MAX));
            remaining -= used as u64;
            self.lo = used;
            self.hi = n;
        }
        if self.lo == self.hi {
            self.lo = 0;
            self.hi = 0;
        }
        bytes += head.body_len;
        Ok((
            Response {
                status: head.status,
                bytes,
            },
            head.close,
        ))
    }

    /// Reads until `buf[lo..]` starts with a complete head, and parses it.
    pub(super) fn read_head(
        &mut self,
        stream: &mut TcpStream,
        deadline: Instant,
    ) -> Result<Head, Failure> {
        let mut scanned = 0;
        loop {
            let pending = &self.buf[self.lo..self.hi];
            if let Some(end) = find_head_end(pending, scanned) {
                return parse_head(&pending[..end]).map_err(Failure::Parse);
            }
            scanned = pending.len();
            if self.hi == self.buf.len() {
                if self.lo == 0 {
                    return Err(Failure::Parse("response head larger than 64 KiB"));
                }
                self.buf.copy_within(self.lo..self.hi, 0);
                self.hi -= self.lo;
                self.lo = 0;
            }
            let n = read_some(stream, &mut self.buf[self.hi..], deadline)?;
            self.hi += n;
        }
    }
}

pub(super) fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, Failure> {
    let left = time_left(deadline)?;
    let stream = TcpStream::connect_timeout(&addr, left).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Connect(e),
    })?;
    stream.set_nodelay(true).map_err(Failure::Connect)?;
    stream
        .set_write_timeout(Some(RESPONSE_TIMEOUT))
        .map_err(Failure::Connect)?;
    Ok(stream)
}

pub(super) fn time_left(deadline: Instant) -> Result<Duration, Failure> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or(Failure::Timeout)
}

/// Reads at least one byte into `buf`, blocking no later than `deadline`.
pub(super) fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, Failure> {
    loop {
        stream
            .set_read_timeout(Some(time_left(deadline)?))
            .map_err(Failure::Io)?;
        match stream.read(buf) {
            Ok(0) => return Err(Failure::Eof),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure(e)),
        }
    }
}

/// What the client needs from a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) head_len: usize,
    pub(super) body_len: u64,
    /// The server closes the connection after this response.
    pub(super) close: bool,
}

/// The length of the head at the start of `buf` (through its blank line), if it is complete.
/// `from` bytes were already scanned without success.
pub(super) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf.get(start..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

/// Parses a complete response head (ending in CRLF CRLF).
pub(super) fn parse_head(head: &[u8]) -> Result<Head, &'static str> {
    // Keep the last line's CR so that every line ends in CR once split at LF.
    let text = head
        .strip_suffix(b"\n\r\n")
        .filter(|t| t.ends_with(b"\r"))
        .ok_or("head does not end in a blank line")?;
    let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r"));
    let status_line = lines.next().flatten().ok_or("bare LF in the status line")?;
    let http10 = match status_line.get(..9) {
        Some(b"HTTP/1.1 ") => false,
        Some(b"HTTP/1.0 ") => true,
        _ => return Err("status line is not HTTP/1.0 or HTTP/1.1"),
    };
    let code = match status_line.get(9..12) {
        Some(c) if c.iter().all(u8::is_ascii_digit) => c,
        _ => return Err("status code is not three digits"),
    };
    if status_line.len() > 12 && status_line[12] != b' ' {
        return Err("status code is not followed by a space");
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));

    let mut content_length: Option<u64> = None;
    let mut close = false;
    let mut keep_alive = false;
    for line in lines {
        let line = line.ok_or("bare LF in a header line")?;
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err("obsolete header line folding");
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or("header line without a colon")?;
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err("invalid header name");
        }
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err("invalid Content-Length");
            }
            let n = value
                .iter()
                .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            if content_length.is_some_and(|prev| prev != n) {
                return Err("conflicting Content-Length values");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err("Transfer-Encoding (chunked) is not supported; Content-Length is required");
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let bodyless = matches!(status, 100..=199 | 204 | 304);
    let body_len = match (bodyless, content_length) {
        (true, _) => 0,
        (false, Some(n)) => n,
        (false, None) => return Err("no Content-Length"),
    };
    Ok(Head {
        status,
        head_len: head.len(),
        body_len,
        close: close || (http10 && !keep_alive),
    })
}
