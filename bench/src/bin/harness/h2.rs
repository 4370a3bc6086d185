//! The HTTP/2 scenarios: h2load drives Ringway, nginx and HAProxy speaking HTTP/2 to the
//! client, each in front of the same HTTP/1.1 backend (there is no direct path: the backend
//! does not speak HTTP/2).
//!
//! - `h2c-m10`, `h2c-m100`: h2c with prior knowledge, 16 connections, 10 or 100 streams each.
//! - `h2-tls-m10`, `h2-tls-m100`: the same over TLS (ALPN h2), with the TLS scenarios'
//!   ECDSA P-256 certificate.
//!
//! h2load runs one thread pinned to the client CPUs, for a warm-up then the measured duration
//! (`--warm-up-time`, `-D`). Its requests and req/s cover the measured duration only, so the
//! contender's CPU time is sampled when h2load announces the start and the end of that
//! duration (it prints both as they happen), not around the whole process.

use crate::contenders::{Kind, Running, Setup, TlsFiles};
use crate::report::{median, Row, Run};
use crate::{Drive, Options, Scenario};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What an HTTP/2 scenario drives.
#[derive(Debug, Clone)]
pub struct Mode {
    /// Over TLS (ALPN h2) rather than h2c with prior knowledge.
    pub tls: bool,
    /// h2load's `-c`.
    pub connections: u32,
    /// h2load's `-m`: concurrent streams per connection.
    pub streams: u32,
    pub path: &'static str,
}

/// Who is measured over HTTP/2.
const KINDS: [Kind; 3] = [Kind::Ringway, Kind::Nginx, Kind::Haproxy];

/// The TLS 1.3 suites h2load offers: OpenSSL's default order (what wrk offers in `tls-ka-c64`)
/// instead of h2load's own, which puts AES-128 first. Servers that follow the client's order
/// (nginx, rustls) and servers that follow their own (HAProxy) then all pick AES-256-GCM.
const TLS13_CIPHERS: &str =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";

pub fn scenarios() -> Vec<Scenario> {
    let mk = |name, title, tls, streams| Scenario {
        name,
        title,
        drive: Drive::H2(Mode {
            tls,
            connections: 16,
            streams,
            path: "/1k",
        }),
        body: 1024,
    };
    vec![
        mk(
            "h2c-m10",
            "h2c (prior knowledge), 1 KiB responses, 16 connections × 10 streams",
            false,
            10,
        ),
        mk(
            "h2c-m100",
            "h2c (prior knowledge), 1 KiB responses, 16 connections × 100 streams",
            false,
            100,
        ),
        mk(
            "h2-tls-m10",
            "HTTP/2 over TLS (ALPN h2), 1 KiB responses, 16 connections × 10 streams",
            true,
            10,
        ),
        mk(
            "h2-tls-m100",
            "HTTP/2 over TLS (ALPN h2), 1 KiB responses, 16 connections × 100 streams",
            true,
            100,
        ),
    ]
}

/// What one h2load run reported, over its measured duration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct H2Result {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    pub non2xx: u64,
    pub rps: f64,
    /// Response body bytes; h2load counts the warm-up's in too.
    pub data_bytes: u64,
    /// Mean time per request, in µs.
    pub mean_us: f64,
    /// "h2c", or "h2" with the TLS version and cipher.
    pub negotiated: String,
}

/// One run as measured: h2load's numbers and the contender's CPU time over the measured duration.
pub struct Window {
    /// h2load's report.
    pub h2: H2Result,
    /// The contender's CPU time over the measured duration.
    pub cpu_ns: u64,
    /// The measured duration as the harness saw it (between h2load's announcements).
    pub wall: Duration,
}

/// A scenario's rows, how it was measured, and the section's extra table.
type Section = (Vec<(Kind, Row)>, String, String);

/// Runs one scenario.
pub fn run(o: &Options, setup: &Setup, sc: &Scenario, mode: &Mode) -> Result<Section, String> {
    let files = if mode.tls {
        Some(crate::tls::certificate(&o.target, &setup.workdir)?)
    } else {
        None
    };
    let (running, skipped) = start(setup, files.as_ref(), mode, sc.body)?;
    if running.is_empty() {
        return Err("no contender answered over HTTP/2".into());
    }
    let mut rows: Vec<(Kind, Row)> = running.iter().map(|r| (r.kind, Row::default())).collect();
    let mut details: Vec<Vec<H2Result>> = vec![Vec::new(); running.len()];
    for round in 0..o.rounds {
        for (i, r) in running.iter().enumerate() {
            eprintln!("  round {}/{}: {}", round + 1, o.rounds, r.kind.name());
            let pids = r.pids();
            let mut window = None;
            let mut run = crate::measure::measured(r, sc.body, mode.connections, || {
                let w = h2load(o, &setup.workdir, r.port, mode, &pids, &[])?;
                let h = &w.h2;
                let run = Run {
                    rps: h.rps,
                    p50_us: f64::NAN,
                    p99_us: f64::NAN,
                    p999_us: f64::NAN,
                    // h2load counts answers with a non-2xx/3xx status among the failed ones.
                    errors: h.failed.max(h.non2xx),
                    ..Run::default()
                };
                // h2load's data count includes the warm-up's responses: only "at least one
                // body per answer" can be checked from it (the probe checked the bytes).
                let bytes = h.data_bytes.min(h.succeeded * sc.body as u64);
                let answered = h.succeeded;
                window = Some(w);
                Ok((answered, run, bytes))
            })?;
            // `measured` divided the CPU of h2load's whole life (warm-up included) by the
            // requests of its measured duration: replace with the measured duration's CPU.
            if let Some(w) = window {
                run.cpu_us = w.cpu_ns as f64 / 1000.0 / w.h2.succeeded.max(1) as f64;
                run.util = w.cpu_ns as f64 / w.wall.as_nanos().max(1) as f64;
                if w.h2.total > w.h2.succeeded && w.h2.failed == 0 {
                    run.problems.push(format!(
                        "{} of {} requests neither succeeded nor failed",
                        w.h2.total - w.h2.succeeded,
                        w.h2.total
                    ));
                }
                details[i].push(w.h2);
            }
            rows[i].1.runs.push(run);
        }
    }
    for (i, r) in running.iter().enumerate() {
        rows[i].1.peak_rss_kib = crate::measure::status_kib(&r.pids(), "VmHWM:");
    }
    let negotiated: Vec<String> = running
        .iter()
        .zip(&details)
        .map(|(r, d)| {
            let n = d.first().map_or("?", |h| h.negotiated.as_str());
            format!("{} {n}", r.kind.name())
        })
        .collect();
    let url = format!(
        "{}://127.0.0.1:PORT{}",
        if mode.tls { "https" } else { "http" },
        mode.path
    );
    let how = format!(
        "`h2load -t1 -c{} -m{} --warm-up-time {}ms -D {}ms` on `{url}`{}, {} interleaved rounds, medians. Requests, req/s and the proxy's CPU (all its threads and processes) cover the measured duration only (CPU sampled when h2load announces its start and end). h2load reports no percentiles: p50/p99 are left empty (its mean is in the table below). Upstream: HTTP/1.1 keep-alive to the same backend for all. Negotiated: {}.{}",
        mode.connections,
        mode.streams,
        o.warmup.as_millis(),
        o.duration.as_millis(),
        if mode.tls {
            " with `--tls13-ciphers` in OpenSSL's default order (no certificate check, ALPN h2, ECDSA P-256 certificate)"
        } else {
            " (h2c, prior knowledge)"
        },
        o.rounds,
        negotiated.join("; "),
        skipped
    );
    let extra = extra_table(&rows, &details);
    Ok((rows, how, extra))
}

/// Starts every contender over HTTP/2 and checks one response from each with `nghttp` (h2c
/// with prior knowledge, or TLS with ALPN h2). A Ringway that does not answer over HTTP/2 is
/// left out (a sentence saying so is returned) so the peers can still be measured; a peer
/// that does not is an error.
fn start(
    setup: &Setup,
    files: Option<&TlsFiles>,
    mode: &Mode,
    body: usize,
) -> Result<(Vec<Running>, String), String> {
    let mut running = Vec::new();
    let mut skipped = String::new();
    for kind in KINDS {
        let r = setup.start_h2(kind, files)?;
        match probe(r.port, mode, body) {
            Ok(()) => running.push(r),
            Err(e) if kind == Kind::Ringway => {
                eprintln!("  ringway left out: {e}");
                let _ = write!(
                    skipped,
                    " **ringway was not measured**: it did not answer over HTTP/2 ({e})."
                );
            }
            Err(e) => return Err(format!("{} over HTTP/2: {e}", kind.name())),
        }
    }
    Ok((running, skipped))
}

fn probe(port: u16, mode: &Mode, body: usize) -> Result<(), String> {
    let url = format!(
        "{}://127.0.0.1:{port}{}",
        if mode.tls { "https" } else { "http" },
        mode.path
    );
    let out = Command::new("nghttp")
        .args(["--timeout=5s", &url])
        .output()
        .map_err(|e| format!("cannot run nghttp: {e}"))?;
    if out.stdout != crate::expected_body(body) {
        return Err(format!(
            "nghttp {url} returned {} bytes, not the {body}-byte body{}",
            out.stdout.len(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .map_or(String::new(), |l| format!(": {l}"))
        ));
    }
    Ok(())
}

/// Runs h2load pinned to the client CPUs, reading its output as it comes, and samples the
/// CPU time of `pids` when the measured duration starts and ends. Killed if it overruns.
/// `extra` arguments go before the URL (the load-balancing scenarios pass `--h1` and
/// `--log-file`).
pub fn h2load(
    o: &Options,
    dir: &std::path::Path,
    port: u16,
    mode: &Mode,
    pids: &[u32],
    extra: &[String],
) -> Result<Window, String> {
    let url = format!(
        "{}://127.0.0.1:{port}{}",
        if mode.tls { "https" } else { "http" },
        mode.path
    );
    let err_file = dir.join("h2load.err");
    let stderr = std::fs::File::create(&err_file).map_err(|e| e.to_string())?;
    let mut child = Command::new("taskset")
        .args(["-c", &o.client_cpus, "h2load", "-t1"])
        .arg(format!("-c{}", mode.connections))
        .arg(format!("-m{}", mode.streams))
        .arg(format!("--warm-up-time={}ms", o.warmup.as_millis().max(1)))
        .arg(format!("--duration={}ms", o.duration.as_millis().max(1)))
        .args(mode.tls.then(|| format!("--tls13-ciphers={TLS13_CIPHERS}")))
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run h2load: {e}"))?;
    let stdout = child.stdout.take().ok_or("h2load: no stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + o.warmup + o.duration + Duration::from_secs(20);
    let mut text = String::new();
    let (mut start, mut end) = (None, None);
    let mut overran = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains("Main benchmark duration is started") {
                    start = Some((crate::measure::cpu_ns(pids), Instant::now()));
                } else if line.contains("Main benchmark duration is over") {
                    end = Some((crate::measure::cpu_ns(pids), Instant::now()));
                }
                if !line.starts_with("progress:") {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                overran = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = reader.join();
    let errors = std::fs::read_to_string(&err_file).unwrap_or_default();
    if overran {
        return Err(format!(
            "h2load on {url} overran its time and was killed:\n{text}{errors}"
        ));
    }
    let h2 = parse_h2load(&text)
        .filter(|_| status.success())
        .ok_or_else(|| format!("h2load on {url} failed ({status}):\n{text}{errors}"))?;
    let (Some((c0, t0)), Some((c1, t1))) = (start, end) else {
        return Err(format!(
            "h2load on {url} did not announce its measured duration:\n{text}"
        ));
    };
    Ok(Window {
        h2,
        cpu_ns: c1.saturating_sub(c0),
        wall: t1.duration_since(t0),
    })
}

/// Reads h2load's final report.
pub fn parse_h2load(text: &str) -> Option<H2Result> {
    let mut r = H2Result {
        mean_us: f64::NAN,
        ..H2Result::default()
    };
    let mut tls = Vec::new();
    let mut seen = false;
    // "40614 total, 40614 started, …": the number before each label.
    let counts = |rest: &str| -> Vec<(String, u64)> {
        rest.split(',')
            .filter_map(|part| {
                let mut w = part.split_whitespace();
                let n = w.next()?.parse().ok()?;
                Some((w.next()?.to_owned(), n))
            })
            .collect()
    };
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("requests:") {
            seen = true;
            for (label, n) in counts(rest) {
                match label.as_str() {
                    "total" => r.total = n,
                    "succeeded" => r.succeeded = n,
                    "failed" => r.failed = n,
                    "errored" => r.errored = n,
                    "timeout" => r.timeout = n,
                    _ => {}
                }
            }
        } else if let Some(rest) = t.strip_prefix("status codes:") {
            r.non2xx = counts(rest)
                .iter()
                .filter(|(label, _)| label != "2xx")
                .map(|(_, n)| n)
                .sum();
        } else if let Some(rest) = t.strip_prefix("finished in") {
            r.rps = rest
                .split(',')
                .find_map(|p| p.trim().strip_suffix(" req/s"))
                .and_then(|v| v.trim().parse().ok())?;
        } else if let Some(rest) = t.strip_prefix("traffic:") {
            // "… 48.15MB (50486272) data": the exact count in parentheses before "data".
            let before = rest.trim_end().strip_suffix("data")?;
            r.data_bytes = before.rsplit('(').next()?.split(')').next()?.parse().ok()?;
        } else if let Some(rest) = t.strip_prefix("time for request:") {
            r.mean_us = rest
                .split_whitespace()
                .nth(2)
                .and_then(duration_us)
                .unwrap_or(f64::NAN);
        } else if let Some(p) = t.strip_prefix("Application protocol:") {
            r.negotiated = p.trim().to_owned();
        } else if let Some(v) = t
            .strip_prefix("TLS Protocol:")
            .or_else(|| t.strip_prefix("Cipher:"))
        {
            tls.push(v.trim().to_owned());
        }
    }
    if !tls.is_empty() {
        r.negotiated = format!("{} ({})", r.negotiated, tls.join(", "));
    }
    seen.then_some(r)
}

/// h2load prints times as `812us`, `1.63ms` or `2.01s`.
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

/// The second table of an HTTP/2 section: h2load's failure counts summed over the rounds, its
/// mean request time, each round's CPU per request, and Ringway's CPU per request over each
/// peer's, round by round (rounds are interleaved, so round i of each contender ran under about
/// the same conditions): the median and range of those ratios, over the rounds where neither
/// run was invalid.
fn extra_table(rows: &[(Kind, Row)], details: &[Vec<H2Result>]) -> String {
    let mut out = String::from(
        "\n| contender | h2load failed | errored | timeout | non-2xx | mean request time | CPU/request per round | ringway ÷ this, CPU/request: per-round median (range), valid rounds |\n|---|---|---|---|---|---|---|---|\n",
    );
    let ringway = rows
        .iter()
        .find(|(k, _)| *k == Kind::Ringway)
        .map(|(_, r)| r);
    for ((kind, row), d) in rows.iter().zip(details) {
        let sum = |f: fn(&H2Result) -> u64| d.iter().map(f).sum::<u64>();
        let mean = median(d.iter().map(|h| h.mean_us).collect());
        let per_round: Vec<String> = row
            .runs
            .iter()
            .map(|r| {
                let invalid = if r.problems.is_empty() {
                    ""
                } else {
                    " (invalid)"
                };
                format!("{:.2}{invalid}", r.cpu_us)
            })
            .collect();
        let ratio = match ringway {
            Some(rw) if *kind != Kind::Ringway => {
                let each: Vec<f64> = rw
                    .runs
                    .iter()
                    .zip(&row.runs)
                    .filter(|(a, b)| a.problems.is_empty() && b.problems.is_empty())
                    .map(|(a, b)| a.cpu_us / b.cpu_us)
                    .filter(|v| v.is_finite())
                    .collect();
                let lo = each.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = each.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let (n, of) = (each.len(), row.runs.len().min(rw.runs.len()));
                if each.is_empty() {
                    format!("— (0 of {of})")
                } else {
                    format!("{:.2}× ({lo:.2}–{hi:.2}), {n} of {of}", median(each))
                }
            }
            _ => "—".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} µs | {ratio} |",
            kind.name(),
            sum(|h| h.failed),
            sum(|h| h.errored),
            sum(|h| h.timeout),
            sum(|h| h.non2xx),
            if mean.is_nan() {
                "—".into()
            } else if mean >= 1000.0 {
                format!("{:.2} ms", mean / 1000.0)
            } else {
                format!("{mean:.0} µs")
            },
            per_round.join(" / "),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_h2load_output() {
        let text = "starting benchmark...\nspawning thread #0: 16 total client(s). Timing-based test with 1s of warm-up time and 3s of main duration for measurements.\nWarm-up started for thread #0.\nTLS Protocol: TLSv1.3\nCipher: TLS_AES_256_GCM_SHA384\nServer Temp Key: X25519 253 bits\nApplication protocol: h2\nWarm-up phase is over for thread #0.\nMain benchmark duration is started for thread #0.\nMain benchmark duration is over for thread #0. Stopping all clients.\nStopped all clients for thread #0\n\nfinished in 4.01s, 13538.00 req/s, 14.23MB/s\nrequests: 40614 total, 40614 started, 40612 done, 40610 succeeded, 4 failed, 2 errored, 1 timeout\nstatus codes: 40609 2xx, 0 3xx, 1 4xx, 0 5xx\ntraffic: 42.68MB (44756628) total, 2.82MB (2958180) headers (space savings 47.83%), 48.15MB (50486272) data\n                     min         max         mean         sd        +/- sd\ntime for request:     1.63ms    188.82ms     11.46ms     13.44ms    94.75%\ntime for connect:        0us         0us         0us         0us     0.00%\n";
        let r = parse_h2load(text).unwrap();
        assert_eq!(
            (r.total, r.succeeded, r.failed, r.errored, r.timeout),
            (40614, 40610, 4, 2, 1)
        );
        assert_eq!(r.non2xx, 1);
        assert_eq!(r.rps, 13538.0);
        assert_eq!(r.data_bytes, 50_486_272);
        assert_eq!(r.mean_us, 11_460.0);
        assert_eq!(r.negotiated, "h2 (TLSv1.3, TLS_AES_256_GCM_SHA384)");
        assert!(parse_h2load("no report").is_none());
    }
}
