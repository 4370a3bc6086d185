//! `ringway-bench-rate`: a fixed-rate HTTP/1.1 load client that corrects for coordinated
//! omission. Each of `--connections` keep-alive connections is driven by its own thread on a fixed
//! schedule (connection `i` of `C` sends its `k`-th request at `start + (k*C + i) / rate`), and
//! every latency is measured from the request's *intended* send time, so a server stall shows up
//! in the latencies of every request that should have been sent during it, not just the one that
//! was in flight. Only blocking std sockets and threads; no async runtime.
//!
//! Usage: `ringway-bench-rate --addr 127.0.0.1:8080 --rate 30000 [--path /1k] [--duration 10s]
//! [--connections 64] [--warmup 0s] [--host NAME]`. Prints one line of JSON on stdout:
//! `{"requests":N,"errors":E,"non2xx":M,"achieved_rate":R,"p50_us":..,"p90_us":..,"p99_us":..,
//! "p999_us":..,"max_us":..,"bytes":B}`, counting only requests scheduled after the warm-up.

use proxy_core::config::parse_duration;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: ringway-bench-rate --addr HOST:PORT --rate N [options]

Sends GET requests at a fixed aggregate rate over keep-alive connections and prints one line of
JSON with latency percentiles measured from each request's intended send time.

Options:
  --addr HOST:PORT     server to connect to (required)
  --rate N             requests per second, all connections together (required)
  --path PATH          request target (default /)
  --duration D         measured period, e.g. 10s, 500ms, 1m (default 10s)
  --warmup D           period before it whose requests are sent but not recorded (default 0s)
  --connections N      keep-alive connections, one thread each (default 64)
  --host NAME          Host header (default: the --addr value)
  -h, --help           print this help
";

/// How long one request may take, from the moment it is sent (or its connection opened).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past the end of the schedule a connection that fell behind may still send.
const CATCH_UP_GRACE: Duration = Duration::from_secs(1);
/// Time between starting the threads and the first intended send, for the connects.
const START_DELAY: Duration = Duration::from_millis(100);
/// Read buffer per connection; also the largest response head accepted.
const READ_BUFFER: usize = 64 * 1024;

/// A validated command line.
#[derive(Debug, Clone)]
struct Settings {
    addr: SocketAddr,
    host: String,
    path: String,
    rate: u64,
    duration: Duration,
    warmup: Duration,
    connections: u64,
}

fn main() -> ExitCode {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(Some(s)) => s,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("ringway-bench-rate: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(report) => {
            println!("{}", report.to_json());
            if report.errors > 0 {
                eprintln!("ringway-bench-rate: {}", report.error_summary());
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("ringway-bench-rate: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the arguments (without the program name); `Ok(None)` means help was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Settings>, String> {
    let mut addr = None;
    let mut host = None;
    let mut path = "/".to_owned();
    let mut rate = None;
    let mut duration = Duration::from_secs(10);
    let mut warmup = Duration::ZERO;
    let mut connections = 64u64;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let value = match inline {
            Some(v) => v,
            None if flag.starts_with("--") => {
                args.next().ok_or_else(|| format!("{flag} needs a value"))?
            }
            None => return Err(format!("unexpected argument `{flag}`")),
        };
        match flag.as_str() {
            "--addr" => addr = Some(value),
            "--host" => host = Some(value),
            "--path" => path = value,
            "--rate" => rate = Some(parse_count(&flag, &value)?),
            "--connections" => connections = parse_count(&flag, &value)?,
            "--duration" => {
                duration = parse_duration(&value).map_err(|m| format!("--duration: {m}"))?
            }
            "--warmup" => warmup = parse_duration(&value).map_err(|m| format!("--warmup: {m}"))?,
            _ => return Err(format!("unknown option `{flag}`")),
        }
    }

    let addr_text = addr.ok_or("--addr is required")?;
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|e| format!("--addr: cannot resolve `{addr_text}`: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr: `{addr_text}` resolves to no address"))?;
    let rate = rate.ok_or("--rate is required")?;
    if !(1..=10_000_000).contains(&rate) {
        return Err("--rate must be from 1 to 10000000".into());
    }
    if !(1..=4096).contains(&connections) {
        return Err("--connections must be from 1 to 4096".into());
    }
    if duration.is_zero() {
        return Err("--duration must be greater than zero".into());
    }
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("--path must start with / and contain no spaces or control characters".into());
    }
    let host = host.unwrap_or(addr_text);
    if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("--host must be non-empty without spaces or control characters".into());
    }
    Ok(Some(Settings {
        addr,
        host,
        path,
        rate,
        duration,
        warmup,
        connections,
    }))
}

fn parse_count(flag: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{flag}: `{value}` is not a whole number"))
}

/// When connection `conn` of `conns` should send its `k`-th request, relative to the start.
fn intended_offset(k: u64, conn: u64, conns: u64, rate: u64) -> Duration {
    let slot = u128::from(k) * u128::from(conns) + u128::from(conn);
    let nanos = slot * 1_000_000_000 / u128::from(rate);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The value below which `per_mille`/1000 of the sorted samples lie (nearest rank); 0 if none.
fn percentile(sorted: &[u64], per_mille: u64) -> u64 {
    let n = sorted.len() as u64;
    if n == 0 {
        return 0;
    }
    let rank = (per_mille * n).div_ceil(1000).clamp(1, n);
    sorted[(rank - 1) as usize]
}

/// Why one request failed.
#[derive(Debug)]
enum Failure {
    /// The connection could not be opened.
    Connect(io::Error),
    /// The response did not complete within [`RESPONSE_TIMEOUT`].
    Timeout,
    /// A read or write failed (reset, broken pipe, ...).
    Io(io::Error),
    /// The server closed the connection before the response was complete.
    Eof,
    /// The response could not be parsed, or its framing is not supported.
    Parse(&'static str),
    /// The connection was too far behind schedule to send the request at all.
    Unsent,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect failed: {e}"),
            Failure::Timeout => write!(f, "no complete response within {RESPONSE_TIMEOUT:?}"),
            Failure::Io(e) => write!(f, "I/O error: {e}"),
            Failure::Eof => write!(f, "connection closed before the response was complete"),
            Failure::Parse(m) => write!(f, "bad response: {m}"),
            Failure::Unsent => write!(f, "not sent: still behind schedule when the run ended"),
        }
    }
}

fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        io::ErrorKind::UnexpectedEof => Failure::Eof,
        _ => Failure::Io(e),
    }
}

/// Error counts by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ErrorCounts {
    connect: u64,
    timeout: u64,
    io: u64,
    eof: u64,
    parse: u64,
    unsent: u64,
}

impl ErrorCounts {
    fn count(&mut self, f: &Failure) {
        let slot = match f {
            Failure::Connect(_) => &mut self.connect,
            Failure::Timeout => &mut self.timeout,
            Failure::Io(_) => &mut self.io,
            Failure::Eof => &mut self.eof,
            Failure::Parse(_) => &mut self.parse,
            Failure::Unsent => &mut self.unsent,
        };
        *slot += 1;
    }

    fn total(&self) -> u64 {
        self.connect + self.timeout + self.io + self.eof + self.parse + self.unsent
    }

    fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.io += o.io;
        self.eof += o.eof;
        self.parse += o.parse;
        self.unsent += o.unsent;
    }
}

/// What one connection thread recorded.
#[derive(Debug, Default)]
struct ConnStats {
    latencies_us: Vec<u64>,
    errors: ErrorCounts,
    non2xx: u64,
    bytes: u64,
    first_error: Option<String>,
}

impl ConnStats {
    fn fail(&mut self, f: &Failure) {
        self.errors.count(f);
        if self.first_error.is_none() {
            self.first_error = Some(f.to_string());
        }
    }
}

/// The merged result of a run.
#[derive(Debug)]
struct Report {
    /// Every recorded latency in microseconds, sorted ascending.
    latencies_us: Vec<u64>,
    errors: u64,
    error_kinds: ErrorCounts,
    non2xx: u64,
    bytes: u64,
    duration: Duration,
    first_error: Option<String>,
}

impl Report {
    fn requests(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    fn to_json(&self) -> String {
        let l = &self.latencies_us;
        format!(
            "{{\"requests\":{},\"errors\":{},\"non2xx\":{},\"achieved_rate\":{:.1},\
             \"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"bytes\":{}}}",
            self.requests(),
            self.errors,
            self.non2xx,
            self.requests() as f64 / self.duration.as_secs_f64(),
            percentile(l, 500),
            percentile(l, 900),
            percentile(l, 990),
            percentile(l, 999),
            l.last().copied().unwrap_or(0),
            self.bytes,
        )
    }

    fn error_summary(&self) -> String {
        let k = &self.error_kinds;
        let mut s = format!(
            "{} errors (connect {}, timeout {}, io {}, eof {}, parse {}, unsent {})",
            self.errors, k.connect, k.timeout, k.io, k.eof, k.parse, k.unsent
        );
        if let Some(first) = &self.first_error {
            s.push_str("; first: ");
            s.push_str(first);
        }
        s
    }
}

/// Runs the whole schedule on all connections and merges what they recorded.
fn run(s: &Settings) -> Result<Report, String> {
    let start = Instant::now() + START_DELAY;
    let stats = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(s.connections as usize);
        for i in 0..s.connections {
            let handle = thread::Builder::new()
                .name(format!("rate-conn-{i}"))
                .stack_size(256 * 1024)
                .spawn_scoped(scope, move || drive(s, i, start))
                .map_err(|e| format!("cannot start connection thread {i}: {e}"))?;
            handles.push(handle);
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a connection thread panicked".to_owned())
            })
            .collect::<Result<Vec<_>, String>>()
    })?;

    let total = stats.iter().map(|c| c.latencies_us.len()).sum();
    let mut report = Report {
        latencies_us: Vec::with_capacity(total),
        errors: 0,
        error_kinds: ErrorCounts::default(),
        non2xx: 0,
        bytes: 0,
        duration: s.duration,
        first_error: None,
    };
    for c in stats {
        report.latencies_us.extend_from_slice(&c.latencies_us);
        report.error_kinds.add(&c.errors);
        report.non2xx += c.non2xx;
        report.bytes += c.bytes;
        if report.first_error.is_none() {
            report.first_error = c.first_error;
        }
    }
    report.errors = report.error_kinds.total();
    report.latencies_us.sort_unstable();
    Ok(report)
}

/// Drives connection `conn` through its share of the schedule.
fn drive(s: &Settings, conn: u64, start: Instant) -> ConnStats {
    let window_end = s.warmup + s.duration;
    let send_cutoff = start + window_end + CATCH_UP_GRACE;
    let expected = s.rate as f64 * s.duration.as_secs_f64() / s.connections as f64;
    let mut stats = ConnStats {
        latencies_us: Vec::with_capacity((expected.ceil() as usize).min(1 << 26) + 64),
        ..ConnStats::default()
    };
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", s.path, s.host).into_bytes();
    let mut client = Client::new(s.addr, request);
    // Open the connection before the schedule starts, so the first request does not pay for it.
    // A failure here is not counted: the first request retries and counts its own failure.
    client.connect_early(start + RESPONSE_TIMEOUT);

    for k in 0.. {
        let offset = intended_offset(k, conn, s.connections, s.rate);
        if offset >= window_end {
            break;
        }
        let recorded = offset >= s.warmup;
        let intended = start + offset;
        let now = Instant::now();
        if now < intended {
            thread::sleep(intended - now);
        } else if now >= send_cutoff {
            if recorded {
                stats.fail(&Failure::Unsent);
            }
            continue;
        }
        match client.exchange(Instant::now() + RESPONSE_TIMEOUT) {
            Ok(resp) if recorded => {
                let done = Instant::now();
                let latency = done.saturating_duration_since(intended);
                stats
                    .latencies_us
                    .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                stats.bytes += resp.bytes;
                if !(200..300).contains(&resp.status) {
                    stats.non2xx += 1;
                }
            }
            Ok(_) => {}
            Err(f) => {
                if recorded {
                    stats.fail(&f);
                }
            }
        }
    }
    stats
}

mod client;
use client::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn percentiles_use_nearest_rank() {
        assert_eq!(percentile(&[], 500), 0);
        assert_eq!(percentile(&[7], 999), 7);
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 500), 500);
        assert_eq!(percentile(&v, 900), 900);
        assert_eq!(percentile(&v, 990), 990);
        assert_eq!(percentile(&v, 999), 999);
        assert_eq!(percentile(&v, 1000), 1000);
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 500), 5);
        assert_eq!(percentile(&v, 900), 9);
        assert_eq!(percentile(&v, 990), 10);
        assert_eq!(percentile(&[3, 9], 500), 3);
    }

    #[test]
    fn schedule_spreads_connections_evenly() {
        let (conns, rate) = (4, 1000);
        assert_eq!(intended_offset(0, 0, conns, rate), Duration::ZERO);
        assert_eq!(intended_offset(0, 1, conns, rate), Duration::from_millis(1));
        assert_eq!(intended_offset(1, 0, conns, rate), Duration::from_millis(4));
        assert_eq!(
            intended_offset(2, 3, conns, rate),
            Duration::from_millis(11)
        );
        // All connections together send exactly every 1/rate, with no gaps or duplicates.
        let mut all: Vec<Duration> = (0..conns)
            .flat_map(|c| (0..50).map(move |k| intended_offset(k, c, conns, rate)))
            .collect();
        all.sort();
        for (n, d) in all.iter().enumerate() {
            assert_eq!(*d, Duration::from_millis(n as u64));
        }
        // Rates that do not divide a second stay exact over long runs (no drift).
        assert_eq!(
            intended_offset(3_000_000, 2, 3, 30_000),
            Duration::from_nanos(300_000_066_666)
        );
    }

    #[test]
    fn heads_are_parsed_strictly() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX: y\r\n\r\n").unwrap();
        assert_eq!(
            (h.status, h.body_len, h.close, h.head_len),
            (200, 12, false, 45)
        );
        let h = parse_head(b"HTTP/1.1 503 Busy\r\nconnection: Close\r\ncontent-length:0\r\n\r\n")
            .unwrap();
        assert_eq!((h.status, h.body_len, h.close), (503, 0, true));
        let h = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").unwrap();
        assert!(h.close, "HTTP/1.0 closes by default");
        let h = parse_head(b"HTTP/1.1 304 Not Modified\r\n\r\n").unwrap();
        assert_eq!(h.body_len, 0);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "no length");
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err(),
            "chunked"
        );
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .is_err()
        );
        assert!(parse_head(b"HTTP/2 200 OK\r\nContent-Length: 1\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 20 OK\r\nContent-Length: 1\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody", 0), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r", 0), None);
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\n", 18), Some(19));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let parse = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
        let s = parse(&["--addr=127.0.0.1:1", "--rate", "10", "--duration", "500ms"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.rate, s.connections, s.host.as_str()),
            (10, 64, "127.0.0.1:1")
        );
        assert_eq!(s.duration, Duration::from_millis(500));
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--rate", "10"]).is_err(), "no --addr");
        assert!(parse(&["--addr", "127.0.0.1:1"]).is_err(), "no --rate");
        assert!(parse(&["--addr", "127.0.0.1:1", "--rate", "0"]).is_err());
        assert!(parse(&["--addr", "127.0.0.1:1", "--rate", "1", "--path", "x"]).is_err());
        assert!(parse(&["--addr", "127.0.0.1:1", "--rate", "1", "--bogus", "1"]).is_err());
        assert!(parse(&["--addr", "127.0.0.1:1", "--rate"]).is_err());
    }

    /// What the test server answers one request with.
    #[derive(Clone, Copy)]
    struct Reply {
        status: u16,
        body: usize,
        delay: Duration,
        chunked: bool,
    }

    impl Reply {
        fn ok(body: usize) -> Reply {
            Reply {
                status: 200,
                body,
                delay: Duration::ZERO,
                chunked: false,
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut r = if self.chunked {
                format!(
                    "HTTP/1.1 {} X\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                    self.status, self.body
                )
                .into_bytes()
            } else {
                format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\n\r\n",
                    self.status, self.body
                )
                .into_bytes()
            };
            r.resize(r.len() + self.body, b'z');
            if self.chunked {
                r.extend_from_slice(b"\r\n0\r\n\r\n");
            }
            r
        }
    }

    /// A tiny threaded keep-alive server: `reply(global_index, index_on_connection)`.
    fn serve(reply: impl Fn(u64, u64) -> Reply + Send + Sync + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(reply);
        let counter = Arc::new(AtomicU64::new(0));
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (reply, counter) = (reply.clone(), counter.clone());
                thread::spawn(move || {
                    conn.set_nodelay(true).unwrap();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    for on_conn in 0.. {
                        let end = loop {
                            if let Some(end) = find_head_end(&buf, 0) {
                                break end;
                            }
                            match conn.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        buf.drain(..end);
                        let global = counter.fetch_add(1, Ordering::SeqCst);
                        let r = reply(global, on_conn);
                        thread::sleep(r.delay);
                        if conn.write_all(&r.bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn settings(addr: SocketAddr, rate: u64, conns: u64, warmup_ms: u64, dur_ms: u64) -> Settings {
        Settings {
            addr,
            host: "test.local".into(),
            path: "/x".into(),
            rate,
            duration: Duration::from_millis(dur_ms),
            warmup: Duration::from_millis(warmup_ms),
            connections: conns,
        }
    }

    #[test]
    fn loopback_records_latencies_bytes_and_non_2xx() {
        // Every 10th request on each connection is a 503.
        let addr = serve(|_, k| Reply {
            status: if k % 10 == 9 { 503 } else { 200 },
            ..Reply::ok(100)
        });
        // 400/s over 4 connections: 20 warm-up and 50 recorded requests per connection.
        let report = run(&settings(addr, 400, 4, 200, 500)).unwrap();
        assert_eq!(report.errors, 0, "{}", report.error_summary());
        assert_eq!(report.requests(), 200);
        assert_eq!(
            report.non2xx, 20,
            "k = 29, 39, 49, 59, 69 on each connection"
        );
        let ok = Reply::ok(100).bytes().len() as u64;
        let busy = Reply {
            status: 503,
            ..Reply::ok(100)
        }
        .bytes()
        .len() as u64;
        assert_eq!(report.bytes, 180 * ok + 20 * busy);
        assert!(report.latencies_us.windows(2).all(|w| w[0] <= w[1]));
        assert!(report.latencies_us[0] > 0);
        assert!(percentile(&report.latencies_us, 500) < 100_000);
        let json = report.to_json();
        assert!(json.starts_with("{\"requests\":200,\"errors\":0,\"non2xx\":20,"));
        assert!(json.contains("\"achieved_rate\":400.0,"), "{json}");
        assert!(
            json.ends_with(&format!("\"bytes\":{}}}", report.bytes)),
            "{json}"
        );
    }

    #[test]
    fn stall_is_charged_to_every_request_scheduled_during_it() {
        // The 400th request (at about 400 ms, inside the measured window) stalls for 200 ms.
        let addr = serve(|n, _| Reply {
            delay: if n == 400 {
                Duration::from_millis(200)
            } else {
                Duration::ZERO
            },
            ..Reply::ok(10)
        });
        let report = run(&settings(addr, 1000, 2, 200, 800)).unwrap();
        assert_eq!(report.errors, 0, "{}", report.error_summary());
        assert_eq!(report.requests(), 800);
        // The stalled connection's requests are 2 ms apart: the ones scheduled in the first
        // ~50 ms of the stall waited at least 150 ms counted from when they should have gone out.
        // Measured from the actual send, only the stalled request itself would show that.
        let slow = report
            .latencies_us
            .iter()
            .filter(|&&l| l >= 150_000)
            .count();
        assert!(slow >= 10, "only {slow} samples >= 150 ms");
        assert!(*report.latencies_us.last().unwrap() >= 200_000);
    }

    #[test]
    fn errors_are_counted_and_the_client_reconnects() {
        // Every second response on a connection is chunked: an error, so the client reconnects
        // and the new connection's first response is fine again.
        let addr = serve(|_, k| Reply {
            chunked: k % 2 == 1,
            ..Reply::ok(5)
        });
        let report = run(&settings(addr, 100, 2, 0, 400)).unwrap();
        assert_eq!(report.requests(), 20);
        assert_eq!(report.errors, 20);
        assert_eq!(report.error_kinds.parse, 20);

        // Nothing listens: every request is a connect error, and the run still ends on time.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let report = run(&settings(addr, 100, 2, 100, 300)).unwrap();
        assert_eq!(report.requests(), 0);
        assert_eq!(report.error_kinds.connect, 30);
    }

    #[test]
    fn a_hung_server_times_out_and_the_run_still_ends() {
        let addr = serve(|_, _| Reply {
            delay: Duration::from_secs(30),
            ..Reply::ok(0)
        });
        let began = Instant::now();
        let report = run(&settings(addr, 20, 1, 0, 200)).unwrap();
        let took = began.elapsed();
        assert!(took < Duration::from_millis(6500), "took {took:?}");
        assert_eq!(report.requests(), 0);
        // The first request times out after 5 s; by then the other three are too late to send.
        assert_eq!(report.error_kinds.timeout, 1);
        assert_eq!(report.error_kinds.unsent, 3);
    }
}
