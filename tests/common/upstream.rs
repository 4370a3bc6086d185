//! A mock upstream server: real TCP on `127.0.0.1:0`, one thread per connection, keep-alive and
//! pipelining capable. The behaviour is selected by the request path:
//!
//! | path            | answer                                                                 |
//! |-----------------|------------------------------------------------------------------------|
//! | `/name`         | 200, body = the server's name                                          |
//! | `/echo`         | 200, body = the request body; `X-Seen-Method`, `X-Seen-Framing`       |
//! | `/headers`      | 200, body = the request head exactly as received                       |
//! | `/bytes/N`      | 200, N bytes of [`pattern`], Content-Length                            |
//! | `/chunked-bytes/N` | 200 chunked, N bytes of [`pattern`] in chunks of varying size       |
//! | `/early-hints`  | 103 Early Hints, then 200 `hinted`                                     |
//! | `/chunked`      | 200 chunked `hello chunked world` with trailer `X-Trailer: done`       |
//! | `/slow/MS`      | sleeps MS milliseconds, then 200 `slow`                                |
//! | `/die`          | Content-Length 1000000, 1000 bytes, then closes                        |
//! | `/garbage`      | bytes that are not HTTP, then closes                                   |
//! | `/status/N`     | status N (204 without body; 304 with `Content-Length: 100`, no body)   |
//! | `/name-then-close` | like `/name` (keep-alive not refused), then closes the connection     |
//! | `/until-close`  | 200 without Content-Length: the body (`until close`) ends at the close |
//! | `/bad-framing`  | 200 with both Content-Length and Transfer-Encoding (response smuggling)|
//! | `/ws`           | with `Upgrade`: 101, then echoes every byte until the client closes     |
//! | `/ws-unasked`   | 101 even though the request asked for no upgrade                      |
//! | `/digest`       | 200, body = the request head; `X-Seen-Length`, `X-Seen-Fnv` (FNV-1a 64 of the body, hex), `X-Seen-Framing`, `X-Seen-Trailers`, `X-Seen-Te` |
//! | `/grpc`         | 200 chunked `application/grpc`, body = the request body, trailers `grpc-status: 0`, `grpc-message: ok`; `X-Seen-*` as `/digest` |
//!
//! Every response carries `X-Upstream: <name>`. A HEAD request gets the GET head without a body.

use super::client::{find, parse_fields, read_chunked, read_exact, read_head};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// FNV-1a (64-bit) of `data`: what `/digest` reports as `X-Seen-Fnv` (as 16 hex digits).
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The deterministic body of `/bytes/N`: byte `i` is `i % 251` (a prime, so the pattern does
/// not line up with buffer sizes and a misplaced block shows).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

struct Shared {
    name: String,
    accepted: AtomicUsize,
    requests: AtomicUsize,
    stop: AtomicBool,
}

/// A running mock upstream; stops accepting when dropped.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Starts a mock upstream called `name`.
    pub fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock upstream");
        // A deeper accept queue than std's default, for the concurrency tests. Calling listen(2)
        // again on a listening socket only changes its backlog.
        // SAFETY: listen(2) on a socket we own.
        unsafe { libc::listen(listener.as_raw_fd(), 4096) };
        let addr = listener.local_addr().expect("mock upstream address");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            accepted: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name(format!("mock-{name}"))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn the mock upstream");
        Upstream { addr, shared }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Request heads received so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` until at least `n` request heads have arrived.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.requests() < n {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = serve(conn, &s);
            });
        if spawned.is_err() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A request as the mock saw it.
struct Request {
    method: String,
    path: String,
    version: String,
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: &'static str,
    trailers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn keep_alive(&self) -> bool {
        if self.version == "HTTP/1.0" {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }
}

fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Request> {
    let head = read_head(s, buf)?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let version = parts.next().unwrap_or_default().to_owned();
    let headers = parse_fields(lines);
    let mut req = Request {
        method,
        path,
        version,
        head: head.clone(),
        headers,
        body: Vec::new(),
        framing: "none",
        trailers: Vec::new(),
    };
    let te = req.header("transfer-encoding").map(str::to_ascii_lowercase);
    if te.is_some_and(|t| t.contains("chunked")) {
        (req.body, req.trailers) = read_chunked(s, buf)?;
        req.framing = "chunked";
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.trim().parse().unwrap_or(0);
        req.body = read_exact(s, buf, len)?;
        req.framing = "length";
    }
    Ok(req)
}

fn serve(mut s: TcpStream, shared: &Shared) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let req = read_request(&mut s, &mut buf)?;
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if !answer(&mut s, &req, &mut buf, shared)? {
            return Ok(());
        }
    }
}

/// Writes a response head (+ body unless HEAD). Returns whether the connection stays open.
fn respond(
    s: &mut TcpStream,
    req: &Request,
    shared: &Shared,
    status: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> io::Result<bool> {
    let keep = req.keep_alive();
    let mut head = format!(
        "HTTP/1.1 {status}\r\nX-Upstream: {}\r\nContent-Length: {}\r\n",
        shared.name,
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !keep {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        for piece in body.chunks(64 * 1024) {
            s.write_all(piece)?;
        }
    }
    Ok(keep)
}

fn answer(
    s: &mut TcpStream,
    req: &Request,
    buf: &mut Vec<u8>,
    shared: &Shared,
) -> io::Result<bool> {
    let path = req.path.split('?').next().unwrap_or_default();
    let (first, arg) = match path[1.min(path.len())..].split_once('/') {
        Some((a, b)) => (a, b),
        None => (&path[1.min(path.len())..], ""),
    };
    match first {
        "name" => respond(s, req, shared, "200 OK", &[], shared.name.as_bytes()),
        "name-then-close" => {
            respond(s, req, shared, "200 OK", &[], shared.name.as_bytes())?;
            Ok(false)
        }
        "until-close" => {
            let head = format!("HTTP/1.1 200 OK\r\nX-Upstream: {}\r\n\r\n", shared.name);
            s.write_all(head.as_bytes())?;
            s.write_all(b"body delimited by close")?;
            Ok(false)
        }
        "bad-framing" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Upstream: {}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                shared.name
            );
            s.write_all(head.as_bytes())?;
            Ok(false)
        }
        "echo" => {
            let extra = [
                ("X-Seen-Method", req.method.clone()),
                ("X-Seen-Framing", req.framing.to_owned()),
            ];
            respond(s, req, shared, "200 OK", &extra, &req.body)
        }
        "headers" => respond(s, req, shared, "200 OK", &[], req.head.as_bytes()),
        "digest" => respond(s, req, shared, "200 OK", &seen(req), req.head.as_bytes()),
        "grpc" => {
            let mut head = format!(
                "HTTP/1.1 200 OK\r\nX-Upstream: {}\r\nContent-Type: application/grpc\r\n\
                 Transfer-Encoding: chunked\r\nTrailer: grpc-status, grpc-message\r\n",
                shared.name
            );
            for (k, v) in seen(req) {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            s.write_all(head.as_bytes())?;
            // The echoed body in two chunks (when there is one), then the trailers.
            let (a, b) = req.body.split_at(req.body.len() / 2);
            for piece in [a, b] {
                if !piece.is_empty() {
                    s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                    s.write_all(piece)?;
                    s.write_all(b"\r\n")?;
                }
            }
            s.write_all(b"0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n")?;
            Ok(req.keep_alive())
        }
        "bytes" => {
            let n: usize = arg.parse().unwrap_or(0);
            respond(s, req, shared, "200 OK", &[], &pattern(n))
        }
        "chunked" => {
            let mut wire = format!(
                "HTTP/1.1 200 OK\r\nX-Upstream: {}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\r\n",
                shared.name
            );
            wire.push_str(
                "6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\nX-Trailer: done\r\n\r\n",
            );
            s.write_all(wire.as_bytes())?;
            Ok(true)
        }
        "chunked-bytes" => {
            let n: usize = arg.parse().unwrap_or(0);
            let data = pattern(n);
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Upstream: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                shared.name
            );
            s.write_all(head.as_bytes())?;
            let (mut at, mut size) = (0, 1);
            while at < n {
                let piece = &data[at..n.min(at + size)];
                s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                s.write_all(piece)?;
                s.write_all(b"\r\n")?;
                at += piece.len();
                size = size * 7 % 70_001 + 1;
            }
            s.write_all(b"0\r\n\r\n")?;
            Ok(req.keep_alive())
        }
        "early-hints" => {
            s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")?;
            respond(s, req, shared, "200 OK", &[], b"hinted")
        }
        "slow" => {
            std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(1000)));
            respond(s, req, shared, "200 OK", &[], b"slow")
        }
        "die" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Upstream: {}\r\nContent-Length: 1000000\r\n\r\n",
                shared.name
            );
            s.write_all(head.as_bytes())?;
            s.write_all(&pattern(1000))?;
            s.flush()?;
            std::thread::sleep(Duration::from_millis(50));
            let _ = s.shutdown(std::net::Shutdown::Both);
            Ok(false)
        }
        "garbage" => {
            s.write_all(b"SSH-2.0-mock\r\nthis is \x00not HTTP at all\r\n\r\n")?;
            let _ = s.shutdown(std::net::Shutdown::Both);
            Ok(false)
        }
        "status" => match arg {
            "204" => {
                let head = format!(
                    "HTTP/1.1 204 No Content\r\nX-Upstream: {}\r\n\r\n",
                    shared.name
                );
                s.write_all(head.as_bytes())?;
                Ok(req.keep_alive())
            }
            "304" => {
                let head = format!(
                    "HTTP/1.1 304 Not Modified\r\nX-Upstream: {}\r\nETag: \"v1\"\r\nContent-Length: 100\r\n\r\n",
                    shared.name
                );
                s.write_all(head.as_bytes())?;
                Ok(req.keep_alive())
            }
            code => {
                let status = format!("{code} Mock");
                respond(
                    s,
                    req,
                    shared,
                    &status,
                    &[],
                    format!("status {code}").as_bytes(),
                )
            }
        },
        "ws" | "ws-unasked"
            if first == "ws-unasked"
                || (req.has_token("connection", "upgrade") && req.header("upgrade").is_some()) =>
        {
            let head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
            s.write_all(head.as_bytes())?;
            echo_until_close(s, buf)?;
            Ok(false)
        }
        "ws" => respond(
            s,
            req,
            shared,
            "426 Upgrade Required",
            &[],
            b"upgrade required",
        ),
        _ => respond(s, req, shared, "404 Not Found", &[], b"no such mock path"),
    }
}

/// What `/digest` and `/grpc` report about the request as `X-Seen-*` fields. Trailers are
/// listed as `name=value` joined by `, ` (`-` for none), `te` as received (`-` if absent).
fn seen(req: &Request) -> Vec<(&'static str, String)> {
    let trailers: Vec<String> = req
        .trailers
        .iter()
        .map(|(k, v)| format!("{}={v}", k.to_ascii_lowercase()))
        .collect();
    let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    vec![
        ("X-Seen-Length", req.body.len().to_string()),
        ("X-Seen-Fnv", format!("{:016x}", fnv1a(&req.body))),
        ("X-Seen-Framing", req.framing.to_owned()),
        ("X-Seen-Trailers", or_dash(trailers.join(", "))),
        (
            "X-Seen-Te",
            or_dash(req.header("te").unwrap_or_default().to_owned()),
        ),
    ]
}

/// After a 101: echoes bytes (those already buffered first) until the peer closes.
fn echo_until_close(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    if !buf.is_empty() {
        s.write_all(buf)?;
        buf.clear();
    }
    let mut chunk = [0u8; 16384];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            let _ = s.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
        s.write_all(&chunk[..n])?;
    }
}
