//! The cache-hit scenarios (issue 8): wrk keep-alive load on a cacheable path of the backend
//! (`/cache/1k`, `/cache/64k`: `Cache-Control: public, max-age=3600` and an `ETag`) through
//! Ringway, nginx and HAProxy, each with its own response cache on (see
//! [`crate::contenders::CACHE_MIB`]), and the direct path for reference.
//!
//! The scenario proves the hits are hits. After the warm-up, a probe through each contender
//! must get the right body without reaching the backend, with the contender's hit field
//! saying so (Ringway `X-Cache: HIT`, nginx and HAProxy `X-Cache-Status: HIT`); during every
//! measured window the backend may serve at most [`MAX_UPSTREAM`] requests for a contender
//! (`measure::measured_hits`), or the run is marked invalid. A Ringway that does not start
//! with its cache, or whose probe is not a hit, is left out with a sentence saying why, so the
//! peers are still measured; a peer that fails is an error.
//!
//! This module only drives and reports: how each contender is configured is in `contenders`.

use crate::contenders::{Kind, Running, Setup, CACHE_MIB, HAPROXY_CACHE_MAX_OBJECT};
use crate::measure::{self, Load};
use crate::report::{self, Row, Run};
use crate::{Drive, Options, Scenario};
use std::fmt::Write as _;

/// What a cache-hit scenario drives.
#[derive(Debug, Clone)]
pub struct Mode {
    /// Keep-alive connections.
    pub connections: u32,
    /// The cacheable path requested.
    pub path: &'static str,
}

/// Requests the backend may serve during one measured window of a cache: a handful (a
/// revalidation or a race at the window's edge), far from the tens of thousands of misses.
pub const MAX_UPSTREAM: u64 = 5;

/// A scenario's rows, how it was measured, and the section's extra text.
type Section = (Vec<(Kind, Row)>, String, String);

/// The cache-hit scenarios.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "cache-hit-c64",
            title: "Cache hits, keep-alive, 1 KiB responses, 64 connections",
            drive: Drive::Cache(Mode {
                connections: 64,
                path: "/cache/1k",
            }),
            body: 1024,
        },
        Scenario {
            name: "cache-hit-64k-c64",
            title: "Cache hits, keep-alive, 64 KiB responses, 64 connections",
            drive: Drive::Cache(Mode {
                connections: 64,
                path: "/cache/64k",
            }),
            body: 64 << 10,
        },
    ]
}

/// Runs one cache-hit scenario.
pub fn run(o: &Options, setup: &Setup, sc: &Scenario, mode: &Mode) -> Result<Section, String> {
    let load = Load {
        connections: mode.connections,
        path: mode.path,
        close: false,
        post_bytes: 0,
        tls: false,
    };
    let mut skipped = String::new();
    let mut running = Vec::new();
    for kind in Kind::ALL {
        let started = if kind == Kind::Direct {
            setup.start(kind)
        } else {
            setup.start_cache(kind)
        };
        // The first fetch is the miss that fills the cache.
        match started.and_then(|r| crate::verify_body(&r, mode.path, sc.body).map(|()| r)) {
            Ok(r) => running.push(r),
            Err(e) => leave_out_ringway(kind, &e, &mut skipped)?,
        }
    }
    for r in &running {
        measure::wrk(&o.client_cpus, r.port, &load, o.warmup, &setup.workdir)?;
    }
    let mut markers = Vec::new();
    let mut probed = Vec::new();
    for r in running {
        match probe(&r, mode.path, sc.body) {
            Ok(marker) => {
                markers.push(marker);
                probed.push(r);
            }
            Err(e) => leave_out_ringway(r.kind, &e, &mut skipped)?,
        }
    }
    let running = probed;

    let mut rows: Vec<(Kind, Row)> = running.iter().map(|r| (r.kind, Row::default())).collect();
    for round in 0..o.rounds {
        for (i, r) in running.iter().enumerate() {
            eprintln!("  round {}/{}: {}", round + 1, o.rounds, r.kind.name());
            let drive = || {
                let w = measure::wrk(&o.client_cpus, r.port, &load, o.duration, &setup.workdir)?;
                let run = Run {
                    rps: w.rps,
                    p50_us: w.p50_us,
                    p99_us: w.p99_us,
                    p999_us: f64::NAN,
                    errors: w.errors + w.non2xx,
                    ..Run::default()
                };
                Ok((w.requests, run, w.bytes))
            };
            let run = if r.kind == Kind::Direct {
                measure::measured(r, sc.body, mode.connections, drive)?
            } else {
                measure::measured_hits(r, sc.body, mode.connections, MAX_UPSTREAM, drive)?
            };
            rows[i].1.runs.push(run);
        }
    }
    for (i, r) in running.iter().enumerate() {
        rows[i].1.peak_rss_kib = measure::status_kib(&r.pids(), "VmHWM:");
    }
    let how = format!(
        "`wrk -t1 -c{}` on `{}` (the backend's {} body with `Cache-Control: public, max-age=3600` and an `ETag`), {} interleaved rounds of {} s, medians, after a {} ms wrk warm-up per contender. Every contender is configured as in `ka-c64` (one worker, pinned, logs off, upstream keep-alive, the same forwarding fields) plus its response cache, {CACHE_MIB} MiB for each, lifetimes from the origin's Cache-Control: Ringway `--cache-max-bytes {CACHE_MIB}MiB` (its cache on the catch-all route of `--upstream`, `X-Cache` on answers); nginx `proxy_cache_path <workdir>/nginx-cache levels=1:2 keys_zone=bench:10m max_size={CACHE_MIB}m inactive=60m use_temp_path=off` with `proxy_cache bench`, `proxy_cache_key $scheme$host$request_uri` and `add_header X-Cache-Status $upstream_cache_status` in its location (no `proxy_cache_valid`; entries are files in the harness's work directory under {}, read back through the page cache); HAProxy a `cache bench` section (`total-max-size {CACHE_MIB}` MB, `max-object-size {HAPROXY_CACHE_MAX_OBJECT}`, `max-age 3600`, in memory, allocated whole at startup, which its peak RSS shows) with `http-request cache-use bench` and `http-response cache-store bench` in its backend and `http-response set-header X-Cache-Status HIT if {{ res.cache_hit }}` in its frontend. Proof of hits: after the warm-up a probe through each got the body without reaching the backend and with its hit field (table below), and in every measured window the backend served at most {MAX_UPSTREAM} requests for a contender (else the run is marked invalid). The direct path is the backend alone, no cache.{skipped}",
        mode.connections,
        mode.path,
        size_name(sc.body),
        o.rounds,
        o.duration.as_secs(),
        o.warmup.as_millis(),
        std::env::temp_dir().display(),
    );
    let extra = extra_text(&rows, &markers);
    Ok((rows, how, extra))
}

/// Fetches `path` through `r` once more, after the warm-up, and checks that it was a hit: the
/// right body, the backend not asked, and the contender's hit field (if it has one) saying
/// HIT. Returns what the probe saw, for the report.
fn probe(r: &Running, path: &str, body: usize) -> Result<String, String> {
    let backend = crate::BACKEND_PORT;
    let before = measure::backend_stats(backend)?.requests;
    let (head, got) = measure::fetch(r.port, path)?;
    let after = measure::backend_stats(backend)?.requests;
    if got != crate::expected_body(body) {
        return Err(format!(
            "{} returned a wrong body for {path} ({} bytes)",
            r.kind.name(),
            got.len()
        ));
    }
    let Some(name) = hit_field(r.kind) else {
        return Ok("— (no cache)".into());
    };
    if after > before {
        return Err(format!(
            "a probe of {path} through {} after the warm-up reached the backend: not a hit",
            r.kind.name()
        ));
    }
    match field(&head, name) {
        Some(v) if is_hit(v) => Ok(format!("`{name}: {v}`, backend not asked")),
        other => Err(format!(
            "a probe of {path} through {} after the warm-up answered {name}: {} instead of HIT",
            r.kind.name(),
            other.unwrap_or("(absent)")
        )),
    }
}

/// The response field in which `kind` marks cache hits (none for the direct path).
fn hit_field(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Direct => None,
        Kind::Ringway => Some("X-Cache"),
        Kind::Nginx | Kind::Haproxy => Some("X-Cache-Status"),
    }
}

/// The value of the first field `name` (any case) in a response head, trimmed.
fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Whether a hit field's value says HIT (its first word: `HIT`, `HIT from …`, `hit; fresh`).
fn is_hit(value: &str) -> bool {
    value
        .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("HIT"))
}

/// A Ringway that fails is left out (the reason recorded in `skipped`); a peer that fails is
/// the scenario's error.
fn leave_out_ringway(kind: Kind, error: &str, skipped: &mut String) -> Result<(), String> {
    if kind != Kind::Ringway {
        return Err(format!("{}: {error}", kind.name()));
    }
    eprintln!("  ringway left out: {error}");
    let _ = write!(
        skipped,
        " **ringway was not measured**: with `--cache-max-bytes {CACHE_MIB}MiB` it failed ({error})."
    );
    Ok(())
}

/// `1 KiB`, `64 KiB`.
fn size_name(bytes: usize) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes}-byte")
    }
}

/// The proof-of-hits table (what each contender's probe saw, in `markers`, and the backend's
/// count in each measured window) and Ringway's ratios to each peer.
fn extra_text(rows: &[(Kind, Row)], markers: &[String]) -> String {
    let mut out = String::from(
        "\n| contender | probe after the warm-up | requests the backend served in each measured window |\n|---|---|---|\n",
    );
    for ((kind, row), marker) in rows.iter().zip(markers) {
        let _ = writeln!(
            out,
            "| {} | {marker} | {} |",
            kind.name(),
            row.runs
                .iter()
                .map(|r| r.upstream_requests.to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    out.push_str(&report::ringway_ratios(
        rows,
        &[("req/s", |r| r.rps), ("CPU/request", |r| r.cpu_us)],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_fields_are_found_in_any_case() {
        let head =
            "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nx-cache: HIT\r\nX-Cache-Status: MISS";
        assert_eq!(field(head, "X-Cache"), Some("HIT"));
        assert_eq!(field(head, "x-cache-status"), Some("MISS"));
        assert_eq!(field(head, "ETag"), None);
        // The status line is not a field, even when it has a colon.
        assert_eq!(
            field("HTTP/1.1 200 X-Cache: HIT\r\nA: b", "HTTP/1.1 200 X-Cache"),
            None
        );
    }

    #[test]
    fn only_hits_count_as_hits() {
        // nginx's $upstream_cache_status values, and forms other caches use.
        let cases = [
            ("HIT", true),
            ("hit", true),
            ("HIT from ringway", true),
            ("HIT; age=3", true),
            ("MISS", false),
            ("EXPIRED", false),
            ("STALE", false),
            ("UPDATING", false),
            ("REVALIDATED", false),
            ("BYPASS", false),
            ("HITS", false),
            ("", false),
        ];
        for (value, hit) in cases {
            assert_eq!(is_hit(value), hit, "{value:?}");
        }
    }

    #[test]
    fn every_contender_but_the_direct_path_has_a_hit_field() {
        assert_eq!(hit_field(Kind::Direct), None);
        assert_eq!(hit_field(Kind::Ringway), Some("X-Cache"));
        assert_eq!(hit_field(Kind::Nginx), Some("X-Cache-Status"));
        assert_eq!(hit_field(Kind::Haproxy), Some("X-Cache-Status"));
    }

    #[test]
    fn only_ringway_is_left_out() {
        let mut skipped = String::new();
        leave_out_ringway(Kind::Ringway, "it exited", &mut skipped).unwrap();
        assert!(skipped.contains("**ringway was not measured**"));
        assert!(skipped.contains("(it exited)"));
        let e = leave_out_ringway(Kind::Nginx, "no HIT", &mut skipped).unwrap_err();
        assert_eq!(e, "nginx: no HIT");
        assert!(leave_out_ringway(Kind::Haproxy, "x", &mut skipped).is_err());
    }

    #[test]
    fn scenarios_ask_for_cacheable_paths() {
        for sc in scenarios() {
            let Drive::Cache(mode) = &sc.drive else {
                panic!("{} is not a cache scenario", sc.name);
            };
            assert!(mode.path.starts_with("/cache/"), "{}", sc.name);
            assert_eq!(
                size_name(sc.body),
                format!("{} KiB", &mode.path[7..mode.path.len() - 1])
            );
        }
    }

    #[test]
    fn the_proof_table_lists_backend_counts_per_round() {
        let row = |served: &[u64], rps: f64, cpu_us: f64| Row {
            runs: served
                .iter()
                .map(|&n| Run {
                    upstream_requests: n,
                    rps,
                    cpu_us,
                    ..Run::default()
                })
                .collect(),
            ..Row::default()
        };
        let rows = [
            (Kind::Direct, row(&[1000, 1100], 1000.0, f64::NAN)),
            (Kind::Ringway, row(&[0, 2], 300.0, 4.0)),
            (Kind::Nginx, row(&[0, 0], 200.0, 8.0)),
        ];
        let markers = [
            "— (no cache)".to_owned(),
            "`X-Cache: HIT`".into(),
            "x".into(),
        ];
        let text = extra_text(&rows, &markers);
        assert!(text.contains("\n| direct | — (no cache) | 1000 / 1100 |\n"));
        assert!(text.contains("\n| ringway | `X-Cache: HIT` | 0 / 2 |\n"));
        assert!(text.contains("\n| nginx | x | 0 / 0 |\n"));
        assert!(text.ends_with("Medians: ringway ÷ nginx: req/s 1.50×, CPU/request 0.50×.\n"));
    }
}
