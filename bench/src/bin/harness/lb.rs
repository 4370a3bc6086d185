//! The load-balancing scenarios (issue 7): each contender in front of three instances of
//! `ringway-bench-backend`, one of which holds every response for 20 ms (`--delay-ms 20`)
//! while the two others answer at once. Besides the usual table, every backend's `/__stats` is
//! read around each measured window, so the section also says what share of the requests each
//! contender sent to the slow one.
//!
//! - `lb-slow-c64`: the latency-aware algorithms: Ringway `p2c`, nginx `least_conn`, HAProxy
//!   `leastconn`.
//! - `lb-rr-c64`: the control, round robin everywhere (a third of the requests go to the slow
//!   backend whatever the proxy).
//!
//! The load is HTTP/1.1 keep-alive from `h2load --h1` with `--log-file`, not wrk: the
//! percentiles here come from every request's own time in that log. wrk's are not per-request
//! times with a bimodal backend: straight at one backend, with one request in 2,000 held
//! 20 ms, wrk 4.1 reported p99 9.7 ms at 64 connections (and a 3.6 ms mean at one connection,
//! where 112,000 requests in 2 s allow at most 18 µs); behind Ringway `p2c` it reported p99
//! 15 ms while Ringway's access log and h2load both put p99 near 1 ms with 0.1–0.25 % of the
//! requests at the slow backend.
//!
//! The contenders are configured as for the single-backend scenarios (one worker, pinned, logs
//! off, upstream keep-alive, the same forwarding fields); only the three upstreams and the
//! balancing directive differ. There is no direct path.

use crate::contenders::{Balance, Kind, Running, Setup};
use crate::measure;
use crate::report::{fmt_us, median, Row, Run};
use crate::{Drive, Options, Scenario};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What a load-balancing scenario drives.
#[derive(Debug, Clone)]
pub struct Mode {
    /// How every contender balances.
    pub balance: Balance,
    /// The slow backend's delay per response, in milliseconds.
    pub slow_ms: u64,
    /// Keep-alive connections.
    pub connections: u32,
    /// The path requested.
    pub path: &'static str,
}

/// Who is measured.
const KINDS: [Kind; 3] = [Kind::Ringway, Kind::Nginx, Kind::Haproxy];

/// The second fast backend's port (the first is the harness's shared backend).
const FAST_PORT: u16 = 19010;
/// The slow backend's port.
const SLOW_PORT: u16 = 19011;

/// A scenario's rows, how it was measured, and the section's extra table.
type Section = (Vec<(Kind, Row)>, String, String);

pub fn scenarios() -> Vec<Scenario> {
    let mk = |name, title, balance| Scenario {
        name,
        title,
        drive: Drive::Lb(Mode {
            balance,
            slow_ms: 20,
            connections: 64,
            path: "/1k",
        }),
        body: 1024,
    };
    vec![
        mk(
            "lb-slow-c64",
            "Three backends, one answering 20 ms late; least-loaded balancing (Ringway p2c, nginx least_conn, HAProxy leastconn), keep-alive, 1 KiB responses, 64 connections",
            Balance::LeastLoaded,
        ),
        mk(
            "lb-rr-c64",
            "Three backends, one answering 20 ms late; round robin everywhere (control), keep-alive, 1 KiB responses, 64 connections",
            Balance::RoundRobin,
        ),
    ]
}

/// A backend process started for this scenario, stopped when dropped.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a `ringway-bench-backend` on 127.0.0.1:`port`, pinned with the client, answering
/// `delay_ms` late.
fn start_backend(o: &Options, port: u16, delay_ms: u64) -> Result<Backend, String> {
    // A backend of the previous scenario is reaped but its io_uring teardown (which holds the
    // listening socket) finishes asynchronously: give it a moment before calling the port taken.
    let free_by = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        if std::time::Instant::now() < free_by {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        return Err(format!(
            "port {port} is already taken (a backend left over from an interrupted run?); \
             stop that process first"
        ));
    }
    let bin = o.target.join("ringway-bench-backend");
    let child = Command::new("taskset")
        .args(["-c", &o.client_cpus])
        .arg(&bin)
        .arg(format!("127.0.0.1:{port}"))
        .args(["--delay-ms", &delay_ms.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let backend = Backend(child);
    crate::contenders::wait_for_port(port, Duration::from_secs(10))?;
    Ok(backend)
}

/// Requests served so far by each backend of `ports`.
fn served(ports: &[u16; 3]) -> Result<[u64; 3], String> {
    let mut out = [0; 3];
    for (n, port) in out.iter_mut().zip(ports) {
        *n = measure::backend_stats(*port)?.requests;
    }
    Ok(out)
}

/// Every request's latency in µs from an h2load `--log-file` (tab-separated: start time, status,
/// µs to the end of the response), sorted, and how many had a status other than 2xx.
fn log_latencies(log: &Path) -> Result<(Vec<u32>, u64), String> {
    let text = std::fs::read_to_string(log)
        .map_err(|e| format!("cannot read h2load's log {}: {e}", log.display()))?;
    let mut us = Vec::with_capacity(text.len() / 30);
    let mut non2xx = 0;
    for line in text.lines() {
        let mut cols = line.split('\t').skip(1);
        let (Some(status), Some(t)) = (cols.next(), cols.next()) else {
            return Err(format!("{}: unexpected line {line:?}", log.display()));
        };
        if !status.starts_with('2') {
            non2xx += 1;
        }
        us.push(
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("{}: unexpected line {line:?}", log.display()))?,
        );
    }
    us.sort_unstable();
    Ok((us, non2xx))
}

/// The `q` quantile of sorted `v` (nearest rank), NaN when empty.
fn quantile(v: &[u32], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    f64::from(v[rank - 1])
}

/// Runs one load-balancing scenario.
pub fn run(o: &Options, setup: &Setup, sc: &Scenario, mode: &Mode) -> Result<Section, String> {
    let _fast = start_backend(o, FAST_PORT, 0)?;
    let _slow = start_backend(o, SLOW_PORT, mode.slow_ms)?;
    // The order every contender lists them in; the slow one last.
    let ports = [setup.backend_port, FAST_PORT, SLOW_PORT];
    let running = KINDS
        .iter()
        .map(|k| setup.start_lb(*k, &ports, mode.balance))
        .collect::<Result<Vec<Running>, String>>()?;
    for r in &running {
        crate::verify_body(r, mode.path, sc.body)?;
    }
    let load = crate::h2::Mode {
        tls: false,
        connections: mode.connections,
        streams: 1,
        path: mode.path,
    };
    let log = setup.workdir.join("h2load-requests.log");
    let mut rows: Vec<(Kind, Row)> = running.iter().map(|r| (r.kind, Row::default())).collect();
    // Per contender, per round: requests each backend took during the measured window.
    let mut spread: Vec<Vec<[u64; 3]>> = vec![Vec::new(); running.len()];
    for round in 0..o.rounds {
        for (i, r) in running.iter().enumerate() {
            eprintln!("  round {}/{}: {}", round + 1, o.rounds, r.kind.name());
            let pids = r.pids();
            let mut counts = [0; 3];
            let mut window = None;
            let mut run =
                crate::measure::measured_on(&ports, r, sc.body, mode.connections, || {
                    // h2load appends to its log, and logs the measured duration only.
                    let _ = std::fs::remove_file(&log);
                    let before = served(&ports)?;
                    let extra = ["--h1".to_owned(), format!("--log-file={}", log.display())];
                    let w = crate::h2::h2load(o, &setup.workdir, r.port, &load, &pids, &extra)?;
                    let after = served(&ports)?;
                    for ((c, a), b) in counts.iter_mut().zip(after).zip(before) {
                        *c = a - b;
                    }
                    let (us, non2xx) = log_latencies(&log)?;
                    let h = &w.h2;
                    let run = Run {
                        rps: h.rps,
                        p50_us: quantile(&us, 0.50),
                        p99_us: quantile(&us, 0.99),
                        p999_us: quantile(&us, 0.999),
                        errors: h.failed.max(h.non2xx).max(non2xx),
                        ..Run::default()
                    };
                    let bytes = h.data_bytes.min(h.succeeded * sc.body as u64);
                    let answered = h.succeeded;
                    window = Some(w);
                    Ok((answered, run, bytes))
                })?;
            // As in the HTTP/2 scenarios: CPU over h2load's measured duration only (its
            // warm-up is not in the request count).
            if let Some(w) = window {
                run.cpu_us = w.cpu_ns as f64 / 1000.0 / w.h2.succeeded.max(1) as f64;
                run.util = w.cpu_ns as f64 / w.wall.as_nanos().max(1) as f64;
            }
            spread[i].push(counts);
            rows[i].1.runs.push(run);
        }
    }
    let _ = std::fs::remove_file(&log);
    for (i, r) in running.iter().enumerate() {
        rows[i].1.peak_rss_kib = measure::status_kib(&r.pids(), "VmHWM:");
    }
    let b = mode.balance;
    let how = format!(
        "Three `ringway-bench-backend` instances (pinned with the client) behind each contender: two answer at once, the third (listed last) holds every response for {} ms (`--delay-ms {}`). Balancing: Ringway `--lb {}` (the `[[clusters]]` entry `lb = \"{}\"` with the three endpoints), nginx {}, HAProxy `balance {}`; everything else as in `ka-c64` (one worker, upstream keep-alive). Load: `h2load --h1 -t1 -c{} --warm-up-time {}ms -D {}ms` on `{}` (HTTP/1.1 keep-alive), {} interleaved rounds, medians; no direct path. p50/p99/p99.9 are every request's own time from h2load's `--log-file` (wrk's percentiles are not per-request with a bimodal backend: see `bench/src/bin/harness/lb.rs`). Any request sent to the slow backend takes at least {} ms; the table after the main one counts them at the backends.",
        mode.slow_ms,
        mode.slow_ms,
        b.ringway(),
        b.ringway(),
        if b.nginx().is_empty() {
            "`upstream` with no directive (its default, round robin)".to_owned()
        } else {
            format!("`{}`", b.nginx())
        },
        b.haproxy(),
        mode.connections,
        o.warmup.as_millis().max(1),
        o.duration.as_millis().max(1),
        mode.path,
        o.rounds,
        mode.slow_ms,
    );
    let extra = extra_table(&rows, &spread);
    Ok((rows, how, extra))
}

/// The share each contender sent to the slow backend, and Ringway's req/s and p99 over each
/// peer's.
fn extra_table(rows: &[(Kind, Row)], spread: &[Vec<[u64; 3]>]) -> String {
    let mut out = String::from(
        "\n| contender | to the slow backend, per round | median | requests per backend, all rounds (fast 1 / fast 2 / slow) | p99 per round | p99.9 per round |\n|---|---|---|---|---|---|\n",
    );
    let pct = |c: &[u64; 3]| c[2] as f64 * 100.0 / c.iter().sum::<u64>().max(1) as f64;
    let fmt_pct = |v: f64| {
        if v.is_nan() {
            "—".to_owned()
        } else if v < 1.0 {
            format!("{v:.3}%")
        } else {
            format!("{v:.1}%")
        }
    };
    for ((kind, row), s) in rows.iter().zip(spread) {
        let shares: Vec<f64> = s.iter().map(pct).collect();
        let total = s.iter().fold([0u64; 3], |mut t, c| {
            for (a, b) in t.iter_mut().zip(c) {
                *a += b;
            }
            t
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} / {} / {} | {} | {} |",
            kind.name(),
            shares
                .iter()
                .map(|v| fmt_pct(*v))
                .collect::<Vec<_>>()
                .join(" / "),
            fmt_pct(median(shares.clone())),
            total[0],
            total[1],
            total[2],
            row.runs
                .iter()
                .map(|r| fmt_us(r.p99_us))
                .collect::<Vec<_>>()
                .join(" / "),
            row.runs
                .iter()
                .map(|r| fmt_us(r.p999_us))
                .collect::<Vec<_>>()
                .join(" / "),
        );
    }
    let ringway = rows.iter().find(|(k, _)| *k == Kind::Ringway);
    if let Some((_, rw)) = ringway {
        let mut ratios = Vec::new();
        for (kind, row) in rows.iter().filter(|(k, _)| *k != Kind::Ringway) {
            let q = |f: fn(&Run) -> f64| {
                let v = rw.med(f) / row.med(f);
                if v.is_finite() {
                    format!("{v:.2}×")
                } else {
                    "—".into()
                }
            };
            ratios.push(format!(
                "ringway ÷ {}: req/s {}, p99 {}",
                kind.name(),
                q(|r| r.rps),
                q(|r| r.p99_us)
            ));
        }
        let _ = writeln!(out, "\nMedians: {}.", ratios.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500.0);
        assert_eq!(quantile(&v, 0.99), 990.0);
        assert_eq!(quantile(&v, 0.999), 999.0);
        assert_eq!(quantile(&[7], 0.99), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn h2load_logs_are_read_per_request() {
        let dir = std::env::temp_dir().join(format!("rw-lb-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("requests.log");
        std::fs::write(
            &log,
            "1796695589361670\t200\t3686\n1796695589361664\t503\t17\n1796695589361700\t200\t900\n",
        )
        .unwrap();
        assert_eq!(log_latencies(&log).unwrap(), (vec![17, 900, 3686], 1));
        std::fs::write(&log, "1796695589361670 200\n").unwrap();
        assert!(log_latencies(&log).unwrap_err().contains("unexpected line"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
