//! `ringway-test-backend`: a small, controllable HTTP/1.1 upstream for the load-balancing
//! end-to-end tests. It is a real process, so a test can SIGKILL it and start it again on the
//! same port, and it counts what it served so a test can see where the proxy sent traffic.
//! Plain `std` only: one thread per connection, blocking sockets, nothing shared but atomics.
//!
//! ```text
//! ringway-test-backend --listen IP:PORT --name NAME [--delay-ms N] [--health-status N]
//!                      [--exit-with-parent]
//! ```
//!
//! `--exit-with-parent` makes it exit once the process that started it is gone (the test
//! helpers pass it, so a test process that dies unexpectedly leaves no backend behind).
//!
//! Once bound it prints exactly one line, `listening on IP:PORT` (the real port when PORT is 0),
//! to standard output. `std::net::TcpListener::bind` sets `SO_REUSEADDR` on Unix before
//! binding, so a restart right after the previous process was SIGKILLed binds the same port
//! even while its old connections linger in `TIME_WAIT`.
//!
//! Every response carries `X-Backend: NAME` and `Content-Length` (except 204 and 304, which
//! carry neither a body nor a length). Requests are answered by path:
//!
//! | path                         | answer                                                      |
//! |------------------------------|-------------------------------------------------------------|
//! | `/healthz`                   | the health status (default 200), body `ok\n` (2xx) or `fail\n` |
//! | `/_control/health?status=N`  | sets the health status (200..=599); 200 `ok\n`              |
//! | `/_control/delay?ms=N`       | sets the delay added to every counted request; 200 `ok\n`   |
//! | `/_control/reset`            | zeroes `requests`, `healthz` and `max_inflight`, forgets every origin resource; 200 `ok\n` |
//! | `/_control/origin?target=T&…` | sets (or with `clear=1` removes) the origin script of `T`; 200 `ok\n` |
//! | `/_control/origin-log?target=T` | `hits=N`, then the last 20 requests for `T`, one a line    |
//! | `/_stats`                    | `requests=N\nhealthz=M\ninflight=K\nmax_inflight=J\n`       |
//! | `/status/NNN`                | status NNN (200..=599), body `NAME\n`                       |
//! | `/echo`                      | the request head, byte for byte, as the body                |
//! | `/cookie`                    | the request's `Cookie` value(s), joined with `; `           |
//! | `/o/…`                       | the scripted origin (see `origin.rs`): caching headers, conditional requests, hit counts |
//! | anything else                | 200, body `NAME\n`                                          |
//!
//! Any request with a query parameter `delay_ms=N` waits N ms before answering; counted
//! requests also wait the global delay (`--delay-ms`, `/_control/delay`). `/healthz`, the
//! `/_control/` paths and `/_stats` are not counted: they do not move `requests`, `inflight` or
//! `max_inflight` and ignore the global delay (`/healthz` bumps `healthz` instead). A counted
//! request is in flight from the moment its head is parsed until just before its response is
//! written (so strictly sequential requests never overlap, even across connections).
//!
//! Connections are keep-alive (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
//! `Connection: keep-alive`) and pipelining-safe. Request heads may be up to 64 KiB; request
//! bodies (`Content-Length` or `Transfer-Encoding: chunked`) are read and discarded. A
//! connection idle (or stalled) for 60 s is closed. Malformed input never panics the server:
//! it gets a 400 and the connection is closed.
//!
//! The scripted origin for the cache and compression tests lives in `origin.rs`; this file only
//! routes `/o/` and its control paths to it (its per-resource state sits behind one mutex).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod origin;
mod wire;

use wire::{is_tchar, parse_head, Conn, Framing, Request, Stop};

/// Largest request head accepted (400 beyond).
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line, or trailer section, of a chunked request body.
const MAX_CHUNK_LINE: usize = 4096;
/// A connection idle or stalled for this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// Stack size of the per-connection threads (they hold a 64 KiB head buffer on the heap).
const STACK: usize = 256 * 1024;

const USAGE: &str = "usage: ringway-test-backend --listen IP:PORT --name NAME [--delay-ms N] \
                     [--health-status N] [--exit-with-parent]";

/// Counters and settings shared by every connection.
struct State {
    name: String,
    health: AtomicU64,
    delay_ms: AtomicU64,
    requests: AtomicU64,
    healthz: AtomicU64,
    inflight: AtomicU64,
    max_inflight: AtomicU64,
    origin: origin::Origin,
}

/// Marks one counted request in flight until dropped (so an early error return still ends it).
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn begin(state: &'a State) -> Self {
        state.requests.fetch_add(1, Ordering::SeqCst);
        let now = state.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_inflight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Options {
    listen: SocketAddr,
    name: String,
    delay_ms: u64,
    health: u16,
    exit_with_parent: bool,
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringway-test-backend: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let listener = match TcpListener::bind(opts.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ringway-test-backend: cannot bind {}: {e}", opts.listen);
            return ExitCode::from(69);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringway-test-backend: local address: {e}");
            return ExitCode::from(69);
        }
    };
    {
        // If nobody reads standard output, keep serving anyway: the caller may know the port.
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}").and_then(|()| out.flush());
    }
    if opts.exit_with_parent {
        // Reparented (the test process died without killing us): exit instead of holding the
        // port for ever.
        let parent = std::os::unix::process::parent_id();
        let _ = std::thread::Builder::new().spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
        });
    }
    let state = Arc::new(State {
        name: opts.name,
        health: AtomicU64::new(u64::from(opts.health)),
        delay_ms: AtomicU64::new(opts.delay_ms),
        requests: AtomicU64::new(0),
        healthz: AtomicU64::new(0),
        inflight: AtomicU64::new(0),
        max_inflight: AtomicU64::new(0),
        origin: origin::Origin::default(),
    });
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let state = state.clone();
                // If no thread can be made the connection is dropped (closed), not the server.
                let _ = std::thread::Builder::new()
                    .stack_size(STACK)
                    .spawn(move || serve(stream, &state));
            }
            // EMFILE and friends: back off briefly instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let (mut listen, mut name, mut delay_ms, mut health) = (None, None, 0, 200);
    let mut exit_with_parent = false;
    let mut args = args;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                listen = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|e| format!("--listen {v:?}: {e}"))?,
                );
            }
            "--name" => {
                let v = value()?;
                if v.is_empty() || !v.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                    return Err(format!(
                        "--name {v:?}: must be non-empty visible ASCII without spaces"
                    ));
                }
                name = Some(v);
            }
            "--delay-ms" => {
                let v = value()?;
                delay_ms = v
                    .parse()
                    .map_err(|_| format!("--delay-ms {v:?}: not a number"))?;
            }
            "--health-status" => {
                let v = value()?;
                health = parse_status(&v).ok_or_else(|| {
                    format!("--health-status {v:?}: must be a status from 200 to 599")
                })?;
            }
            "--exit-with-parent" => exit_with_parent = true,
            "-h" | "--help" => return Err("help requested".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        listen: listen.ok_or("--listen is required")?,
        name: name.ok_or("--name is required")?,
        delay_ms,
        health,
        exit_with_parent,
    })
}

/// A final status this server is willing to send: 200..=599.
fn parse_status(s: &str) -> Option<u16> {
    if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| (200..=599).contains(n))
}

fn serve(stream: TcpStream, state: &State) {
    if stream.set_read_timeout(Some(IDLE)).is_err() || stream.set_write_timeout(Some(IDLE)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(4096),
    };
    loop {
        match serve_one(&mut conn, state) {
            Ok(true) => {}
            Ok(false) | Err(Stop::Gone) => return,
            Err(Stop::Bad(why)) => {
                let body = format!("bad request: {why}\n");
                let _ = respond(
                    &mut conn.stream,
                    state,
                    400,
                    body.as_bytes(),
                    false,
                    Some("close"),
                );
                linger_close(conn.stream);
                return;
            }
        }
    }
}

/// Half-closes, then reads (and drops) what the client still sends for up to a second before
/// closing (at most a second), so unread input does not turn the close into a reset that could destroy the 400.
fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_err()
    {
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 16 * 1024];
    while std::time::Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Serves one request; `Ok(true)` when the connection stays open.
fn serve_one(conn: &mut Conn, state: &State) -> Result<bool, Stop> {
    let head_len = conn.read_head()?;
    let head: Vec<u8> = conn.buf.drain(..head_len).collect();
    let req = parse_head(&head)?;
    let counted = !(req.path == "/healthz"
        || req.path == "/_stats"
        || req.path == "/_control"
        || req.path.starts_with("/_control/"));
    let inflight = counted.then(|| InFlight::begin(state));
    match req.framing {
        Framing::None => {}
        Framing::Length(n) => conn.skip(n)?,
        Framing::Chunked => conn.skip_chunked()?,
    }
    let connection = match (req.keep_alive, req.http10) {
        (false, _) => Some("close"),
        (true, true) => Some("keep-alive"),
        (true, false) => None,
    };
    if req.path.starts_with(origin::PREFIX) {
        let global_delay = state.delay_ms.load(Ordering::SeqCst);
        let reply = origin::serve(&state.origin, &req, &state.name, global_delay, connection)
            .map_err(Stop::Bad)?;
        // Out of flight before the answer leaves, as below.
        drop(inflight);
        reply.write_to(&mut conn.stream)?;
        return Ok(req.keep_alive);
    }

    let mut delay = 0u64;
    if let Some((_, v)) = req.query.iter().find(|(k, _)| k == "delay_ms") {
        delay = v
            .parse()
            .map_err(|_| Stop::Bad("delay_ms is not a number"))?;
    }
    if counted {
        delay = delay.saturating_add(state.delay_ms.load(Ordering::SeqCst));
    }
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }

    let name_body = format!("{}\n", state.name);
    let param = |key: &str| {
        req.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let (status, body): (u16, Vec<u8>) = match req.path.as_str() {
        "/healthz" => {
            state.healthz.fetch_add(1, Ordering::SeqCst);
            let status = u16::try_from(state.health.load(Ordering::SeqCst)).unwrap_or(500);
            let body = if (200..300).contains(&status) {
                "ok\n"
            } else {
                "fail\n"
            };
            (status, body.into())
        }
        "/_control/health" => {
            let status = param("status")
                .and_then(parse_status)
                .ok_or(Stop::Bad("/_control/health needs status=200..599"))?;
            state.health.store(u64::from(status), Ordering::SeqCst);
            (200, b"ok\n".to_vec())
        }
        "/_control/delay" => {
            let ms: u64 = param("ms")
                .and_then(|v| v.parse().ok())
                .ok_or(Stop::Bad("/_control/delay needs ms=N"))?;
            state.delay_ms.store(ms, Ordering::SeqCst);
            (200, b"ok\n".to_vec())
        }
        "/_control/reset" => {
            state.requests.store(0, Ordering::SeqCst);
            state.healthz.store(0, Ordering::SeqCst);
            // Requests still in flight are the new high-water mark.
            let now = state.inflight.load(Ordering::SeqCst);
            state.max_inflight.store(now, Ordering::SeqCst);
            state.origin.reset();
            (200, b"ok\n".to_vec())
        }
        "/_control/origin" => {
            state.origin.control(&req.query).map_err(Stop::Bad)?;
            (200, b"ok\n".to_vec())
        }
        "/_control/origin-log" => (
            200,
            state
                .origin
                .log(&req.query)
                .map_err(Stop::Bad)?
                .into_bytes(),
        ),
        "/_stats" => {
            let body = format!(
                "requests={}\nhealthz={}\ninflight={}\nmax_inflight={}\n",
                state.requests.load(Ordering::SeqCst),
                state.healthz.load(Ordering::SeqCst),
                state.inflight.load(Ordering::SeqCst),
                state.max_inflight.load(Ordering::SeqCst),
            );
            (200, body.into_bytes())
        }
        "/echo" => (200, head),
        "/cookie" => (200, req.cookies.join("; ").into_bytes()),
        p if p.starts_with("/_control/") => return Err(Stop::Bad("unknown control path")),
        p => match p.strip_prefix("/status/") {
            Some(code) => {
                let status = parse_status(code).ok_or(Stop::Bad("/status/NNN needs 200..599"))?;
                (status, name_body.into_bytes())
            }
            None => (200, name_body.into_bytes()),
        },
    };
    let head_only = req.method == "HEAD";
    // Out of flight before the answer leaves: a client that sees the response and sends its
    // next request at once never finds the previous one still counted.
    drop(inflight);
    respond(
        &mut conn.stream,
        state,
        status,
        &body,
        head_only,
        connection,
    )?;
    Ok(req.keep_alive)
}

/// Writes a response with `X-Backend` and `Content-Length` (none for 204 and 304, which have no
/// body), and a `Connection` field when given (`close` before closing, `keep-alive` for an
/// HTTP/1.0 client whose connection stays open).
fn respond(
    stream: &mut TcpStream,
    state: &State,
    status: u16,
    body: &[u8],
    head_only: bool,
    connection: Option<&str>,
) -> io::Result<()> {
    let bodyless = status == 204 || status == 304;
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nX-Backend: {}\r\nContent-Type: text/plain\r\n",
        reason(status),
        state.name
    );
    if !bodyless {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if let Some(c) = connection {
        out.push_str(&format!("Connection: {c}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !bodyless && !head_only {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
