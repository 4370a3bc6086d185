//! Measuring one run (`measured`, `measured_on`): drive load with wrk or the fixed-rate client,
//! and read what it cost from /proc (CPU time of every thread of the contender, resident
//! memory) and from the backend's `/__stats` (upstream connections opened, forwarding fields
//! seen).

use crate::contenders::{Kind, Running};
use crate::report::Run;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// CPU time used so far by all threads of `pids`, in nanoseconds (from schedstat).
pub fn cpu_ns(pids: &[u32]) -> u64 {
    let mut total = 0;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// A `/proc/PID/status` field in KiB, summed over `pids`.
pub fn status_kib(pids: &[u32], field: &str) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

/// Sockets open in `pids` (listening, client and upstream ones alike).
pub fn sockets(pids: &[u32]) -> usize {
    pids.iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flat_map(|dir| dir.flatten())
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// TCP connections accepted so far on this machine (`PassiveOpens` in /proc/net/snmp).
pub fn passive_opens() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "PassiveOpens")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The backend's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendStats {
    pub accepted: u64,
    pub requests: u64,
    pub missing_forwarding: u64,
}

pub fn backend_stats(port: u16) -> Result<BackendStats, String> {
    let mut s =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("backend stats: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /__stats HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let field = |name: &str| -> u64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Our own stats connection counts as one accepted connection.
    Ok(BackendStats {
        accepted: field("accepted").saturating_sub(1),
        requests: field("requests"),
        missing_forwarding: field("missing_forwarding"),
    })
}

/// The counters of the backends on `ports`, summed (each leaves out its own stats connection).
pub fn backends_stats(ports: &[u16]) -> Result<BackendStats, String> {
    let mut sum = BackendStats::default();
    for port in ports {
        let s = backend_stats(*port)?;
        sum.accepted += s.accepted;
        sum.requests += s.requests;
        sum.missing_forwarding += s.missing_forwarding;
    }
    Ok(sum)
}

/// What wrk reported.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
    pub non2xx: u64,
    pub bytes: u64,
}

/// How a wrk run is shaped.
#[derive(Debug, Clone)]
pub struct Load {
    pub connections: u32,
    pub path: &'static str,
    pub close: bool,
    pub post_bytes: usize,
    /// Over TLS (`https://`) rather than plain HTTP.
    pub tls: bool,
}

/// Runs wrk pinned to `cpus` against 127.0.0.1:`port`.
pub fn wrk(
    cpus: &str,
    port: u16,
    load: &Load,
    duration: Duration,
    dir: &Path,
) -> Result<WrkResult, String> {
    let script = dir.join(format!("wrk-{}-{}.lua", load.close, load.post_bytes));
    let mut lua = String::new();
    if load.close {
        lua.push_str("wrk.headers[\"Connection\"] = \"close\"\n");
    }
    if load.post_bytes > 0 {
        lua.push_str(&format!(
            "wrk.method = \"POST\"\nwrk.body = string.rep(\"u\", {})\n",
            load.post_bytes
        ));
    }
    lua.push_str(
        "done = function(summary, latency, requests)\n  io.write(string.format(\"BYTES %d\\nNON2XX %d\\n\", summary.bytes, summary.errors.status))\nend\n",
    );
    std::fs::write(&script, lua).map_err(|e| e.to_string())?;
    let secs = duration.as_secs_f64().ceil().max(1.0) as u64;
    let out = Command::new("taskset")
        .args(["-c", cpus, "wrk", "-t1", "--latency", "--timeout", "5s"])
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{secs}s"))
        .arg("-s")
        .arg(&script)
        .arg(format!(
            "{}://127.0.0.1:{port}{}",
            if load.tls { "https" } else { "http" },
            load.path
        ))
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk output:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    for line in text.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50_us = duration_us(v)?,
            ["99%", v] => r.p99_us = duration_us(v)?,
            ["Requests/sec:", v] => r.rps = v.parse().ok()?,
            ["BYTES", v] => r.bytes = v.parse().ok()?,
            ["NON2XX", v] => r.non2xx = v.parse().ok()?,
            [n, "requests", "in", ..] => r.requests = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                r.errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    (r.requests > 0 || r.rps > 0.0).then_some(r)
}

/// wrk prints latencies as `512.00us`, `1.20ms` or `2.00s`.
fn duration_us(v: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

/// What the fixed-rate client reported.
#[derive(Debug, Clone, Default)]
pub struct RateResult {
    pub requests: u64,
    pub errors: u64,
    pub non2xx: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub bytes: u64,
}

/// Runs `ringway-bench-rate` pinned to `cpus`, with `warmup` of unrecorded load first.
pub fn rate(
    bin: &Path,
    cpus: &str,
    port: u16,
    rate: u64,
    duration: Duration,
    warmup: Duration,
) -> Result<RateResult, String> {
    let out = Command::new("taskset")
        .args(["-c", cpus])
        .arg(bin)
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--path",
            "/1k",
            "--connections",
            "64",
        ])
        .args([
            "--rate",
            &rate.to_string(),
            "--duration",
            &format!("{}ms", duration.as_millis()),
        ])
        .args(["--warmup", &format!("{}ms", warmup.as_millis())])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let num = |key: &str| -> f64 {
        let pat = format!("\"{key}\":");
        text.find(&pat)
            .map(|i| &text[i + pat.len()..])
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    if !out.status.success() || num("requests").is_nan() {
        return Err(format!(
            "fixed-rate client failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(RateResult {
        requests: num("requests") as u64,
        errors: num("errors") as u64,
        non2xx: num("non2xx") as u64,
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
        p999_us: num("p999_us"),
        bytes: num("bytes") as u64,
    })
}

/// Opens `n` keep-alive connections to `port`, makes one request on each (`batch` at a time),
/// lets them sit idle for `settle`, and returns the connections (still open) with how many
/// requests failed.
pub fn idle_connections(
    port: u16,
    n: usize,
    batch: usize,
    settle: Duration,
) -> (Vec<TcpStream>, usize) {
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while conns.len() < n && Instant::now() < deadline {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => conns.push(c),
            Err(_) => {
                failed += 1;
                if failed > n / 10 + 10 {
                    break;
                }
            }
        }
    }
    for group in conns.chunks_mut(batch.max(1)) {
        for c in group.iter_mut() {
            if c.write_all(b"GET /0 HTTP/1.1\r\nHost: b\r\n\r\n").is_err() {
                failed += 1;
            }
        }
        for c in group.iter_mut() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 1024];
            match c.read(&mut buf) {
                Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200") => {}
                _ => failed += 1,
            }
        }
    }
    std::thread::sleep(settle);
    (conns, failed)
}

/// Fetches `path` once through `port` and returns the response body (Content-Length framed).
pub fn fetch_body(port: u16, path: &str) -> Result<Vec<u8>, String> {
    fetch(port, path).map(|(_, body)| body)
}

/// Fetches `path` once through `port` (the connection closed after it) and returns the
/// response head (status line and fields, as text) and body.
pub fn fetch(port: u16, path: &str) -> Result<(String, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response head")?
        + 4;
    let head = String::from_utf8_lossy(&all[..end - 4]).into_owned();
    Ok((head, all[end..].to_vec()))
}

/// What the backend should see during a measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendLoad {
    /// Every request the client counted reaches the backend (a proxy that answers some
    /// itself did less work than its peers).
    EveryRequest,
    /// A cache answers: at most this many requests reach the backend, whatever the client
    /// counted (more means the contender was measured on misses).
    AtMost(u64),
}

impl BackendLoad {
    /// The problem with a window in which the backend served `served` requests while the
    /// client counted `requests` answers, if any.
    pub fn problem(self, served: u64, requests: u64) -> Option<String> {
        match self {
            BackendLoad::EveryRequest if served < requests => Some(format!(
                "the backend served {served} requests but the client counted {requests} answers"
            )),
            BackendLoad::AtMost(max) if served > max => Some(format!(
                "the backend served {served} of the {requests} requests (at most {max} expected \
                 from a cache): not all were cache hits"
            )),
            _ => None,
        }
    }
}

/// Runs one measured window on `running` with `drive`, returning the run's numbers.
pub fn measured<F>(
    running: &Running,
    body: usize,
    connections: u32,
    drive: F,
) -> Result<Run, String>
where
    F: FnOnce() -> Result<(u64, Run, u64), String>,
{
    measured_on(&[crate::BACKEND_PORT], running, body, connections, drive)
}

/// As `measured`, for a contender that answers from its cache: the backend serving more than
/// `max_upstream` requests during the window is the problem, not serving fewer.
pub fn measured_hits<F>(
    running: &Running,
    body: usize,
    connections: u32,
    max_upstream: u64,
    drive: F,
) -> Result<Run, String>
where
    F: FnOnce() -> Result<(u64, Run, u64), String>,
{
    measured_with(
        &[crate::BACKEND_PORT],
        BackendLoad::AtMost(max_upstream),
        running,
        body,
        connections,
        drive,
    )
}

/// As `measured`, for a contender in front of the backends on `backends` (their counters summed).
pub fn measured_on<F>(
    backends: &[u16],
    running: &Running,
    body: usize,
    connections: u32,
    drive: F,
) -> Result<Run, String>
where
    F: FnOnce() -> Result<(u64, Run, u64), String>,
{
    measured_with(
        backends,
        BackendLoad::EveryRequest,
        running,
        body,
        connections,
        drive,
    )
}

/// One measured window, the backend's count checked against `expect`.
fn measured_with<F>(
    backends: &[u16],
    expect: BackendLoad,
    running: &Running,
    body: usize,
    connections: u32,
    drive: F,
) -> Result<Run, String>
where
    F: FnOnce() -> Result<(u64, Run, u64), String>,
{
    let pids = running.pids();
    // Let the backend finish what the previous run left in flight, so counts are not misattributed.
    let mut before = backends_stats(backends)?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(40));
        let again = backends_stats(backends)?;
        if again.requests == before.requests {
            break;
        }
        before = again;
    }
    let cpu0 = cpu_ns(&pids);
    let t0 = Instant::now();
    let (requests, mut run, bytes) = drive()?;
    let wall = t0.elapsed();
    let cpu = cpu_ns(&pids) - cpu0;
    let after = backends_stats(backends)?;
    run.upstream_conns = after.accepted - before.accepted;
    let served = after.requests - before.requests;
    run.upstream_requests = served;
    run.problems.extend(expect.problem(served, requests));
    if running.kind != Kind::Direct {
        run.cpu_us = cpu as f64 / 1000.0 / requests.max(1) as f64;
        run.util = cpu as f64 / wall.as_nanos() as f64;
        let missing = after.missing_forwarding - before.missing_forwarding;
        if missing > 0 {
            run.problems.push(format!(
                "{missing} requests reached the backend without forwarding fields"
            ));
        }
    } else {
        run.cpu_us = f64::NAN;
        run.util = f64::NAN;
    }
    if run.errors > 0 {
        run.problems
            .push(format!("{} errors or non-2xx responses", run.errors));
    }
    // wrk also counts bytes of responses still in flight when it stops: allow one partial
    // response per connection.
    let per = bytes as f64 / requests.max(1) as f64;
    let slack = 2048.0 + (connections as f64 * (body as f64 + 2048.0)) / requests.max(1) as f64;
    if requests > 0 && (per < body as f64 || per > body as f64 + slack) {
        run.problems.push(format!(
            "{per:.0} bytes per response, expected a {body}-byte body plus a head"
        ));
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 1s test @ http://127.0.0.1:1/1k\n  1 threads and 64 connections\n  Latency Distribution\n     50%  812.00us\n     75%    1.01ms\n     90%    1.20ms\n     99%    2.50ms\n  70000 requests in 1.00s, 80.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or Non-3xx responses: 3\nRequests/sec:  70000.00\nTransfer/sec:     80.00MB\nBYTES 83886080\nNON2XX 3\n";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.requests, 70_000);
        assert_eq!(r.p50_us, 812.0);
        assert_eq!(r.p99_us, 2_500.0);
        assert_eq!(r.errors, 3);
        assert_eq!(r.non2xx, 3);
        assert_eq!(r.bytes, 83_886_080);
    }

    #[test]
    fn backend_counts_are_checked_each_way() {
        // (expectation, served by the backend, counted by the client, flagged)
        let cases = [
            (BackendLoad::EveryRequest, 1000, 1000, false),
            (BackendLoad::EveryRequest, 1001, 1000, false),
            (BackendLoad::EveryRequest, 999, 1000, true),
            (BackendLoad::AtMost(5), 0, 70_000, false),
            (BackendLoad::AtMost(5), 5, 70_000, false),
            (BackendLoad::AtMost(5), 6, 70_000, true),
            (BackendLoad::AtMost(5), 70_000, 70_000, true),
        ];
        for (expect, served, requests, flagged) in cases {
            assert_eq!(
                expect.problem(served, requests).is_some(),
                flagged,
                "{expect:?} served {served} of {requests}"
            );
        }
        assert!(BackendLoad::AtMost(5)
            .problem(9, 100)
            .unwrap()
            .contains("not all were cache hits"));
    }
}
