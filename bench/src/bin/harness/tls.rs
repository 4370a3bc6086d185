//! The TLS scenarios: Ringway, nginx and HAProxy terminating TLS with one ECDSA P-256
//! certificate (made by `ringway-testcert`), TLS 1.3 negotiated, in front of the plain-HTTP
//! backend. There is no direct path (the backend does not speak TLS).
//!
//! - `tls-ka-c64`: wrk over https, keep-alive, as `ka-c64`.
//! - `tls-new-conn`: a new connection and a full handshake per request, driven by the rustls
//!   client in `tlsclient` (wrk resumes sessions on reconnect, so it would measure resumption);
//!   the kernel's count of accepted connections confirms one per request.
//! - `tls-idle-10k`: idle TLS connections and the contender's resident memory, as `idle-10k`.

use crate::contenders::{Kind, Running, Setup, TlsFiles};
use crate::measure::{self, Load};
use crate::report::{Row, Run};
use crate::tlsclient::{self, LoadResult};
use crate::{Drive, Options, Scenario};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What a TLS scenario drives.
#[derive(Debug, Clone)]
pub enum Mode {
    /// wrk over https with keep-alive.
    KeepAlive(Load),
    /// A new connection and full handshake per request, this many clients at a time.
    NewConn(u32),
    /// Idle TLS keep-alive connections.
    Idle,
}

/// Who is measured over TLS.
const KINDS: [Kind; 3] = [Kind::Ringway, Kind::Nginx, Kind::Haproxy];

/// How many handshakes the idle client runs at a time.
const IDLE_THREADS: usize = 16;

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "tls-ka-c64",
            title: "HTTPS keep-alive, 1 KiB responses, 64 connections",
            drive: Drive::Tls(Mode::KeepAlive(Load {
                connections: 64,
                path: "/1k",
                close: false,
                post_bytes: 0,
                tls: true,
            })),
            body: 1024,
        },
        Scenario {
            name: "tls-new-conn",
            title:
                "A new TLS connection and full handshake per request, 1 KiB responses, 64 clients",
            drive: Drive::Tls(Mode::NewConn(64)),
            body: 1024,
        },
        Scenario {
            name: "tls-idle-10k",
            title: "Idle TLS keep-alive connections",
            drive: Drive::Tls(Mode::Idle),
            body: 0,
        },
    ]
}

/// Runs one TLS scenario: its rows and how it was measured.
pub fn run(
    o: &Options,
    setup: &Setup,
    sc: &Scenario,
    mode: &Mode,
) -> Result<(Vec<(Kind, Row)>, String), String> {
    let files = certificate(&o.target, &setup.workdir)?;
    match mode {
        Mode::KeepAlive(load) => {
            let (running, negotiated) = start(setup, &files, load.path, sc.body)?;
            let rows = crate::wrk_rounds(o, setup, sc, load, &running)?;
            let how = format!(
                "`wrk -t1 -c{}` on `https://127.0.0.1:PORT{}` (no certificate check; handshakes only when connecting), {} interleaved rounds of {} s, medians. {negotiated}",
                load.connections,
                load.path,
                o.rounds,
                o.duration.as_secs()
            );
            Ok((rows, how))
        }
        Mode::NewConn(connections) => new_conn(o, setup, sc, &files, *connections),
        Mode::Idle => idle(o, setup, &files),
    }
}

/// Makes the certificate once per harness run: ECDSA P-256 for `localhost` and 127.0.0.1,
/// signed by a fresh CA.
pub fn certificate(target: &Path, workdir: &Path) -> Result<TlsFiles, String> {
    let dir = workdir.join("tls");
    let files = TlsFiles {
        cert: dir.join("localhost.pem"),
        key: dir.join("localhost.key"),
        combined: dir.join("localhost-with-key.pem"),
        ca: dir.join("ca.pem"),
    };
    if files.combined.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tool = target.join("ringway-testcert");
    let out = Command::new(&tool)
        .arg(&dir)
        .arg("localhost,127.0.0.1")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            tool.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let both = [read(&files.cert)?, read(&files.key)?].concat();
    std::fs::write(&files.combined, both)
        .map_err(|e| format!("cannot write {}: {e}", files.combined.display()))?;
    Ok(files)
}

/// Starts every contender over TLS and checks one response from each (certificate verified
/// against the CA); returns them and a sentence on what each negotiated.
fn start(
    setup: &Setup,
    files: &TlsFiles,
    path: &str,
    body: usize,
) -> Result<(Vec<Running>, String), String> {
    let probe = tlsclient::config(Some(&files.ca))?;
    let mut running = Vec::new();
    let mut negotiated = Vec::new();
    for kind in KINDS {
        let r = setup.start_tls(kind, files)?;
        let (got, what) = tlsclient::fetch(&probe, r.port, path)
            .map_err(|e| format!("{} over TLS: {e}", kind.name()))?;
        if got != crate::expected_body(body) {
            return Err(format!(
                "{} returned a wrong body for {path} over TLS ({} bytes)",
                kind.name(),
                got.len()
            ));
        }
        negotiated.push(format!("{} {what}", kind.name()));
        running.push(r);
    }
    Ok((
        running,
        format!(
            "ECDSA P-256 certificate; a rustls probe offering what OpenSSL offers negotiated: {}.",
            negotiated.join("; ")
        ),
    ))
}

/// Runs the connection-per-request client pinned to the client CPUs, as a child process.
fn load(
    o: &Options,
    port: u16,
    path: &str,
    connections: u32,
    duration: Duration,
) -> Result<LoadResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the harness: {e}"))?;
    let out = Command::new("taskset")
        .args(["-c", &o.client_cpus])
        .arg(exe)
        .arg("--tls-load")
        .args([
            port.to_string(),
            path.to_owned(),
            connections.to_string(),
            duration.as_millis().to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot run the TLS load client: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match LoadResult::parse(&text) {
        Some(r) if out.status.success() => Ok(r),
        _ => Err(format!(
            "the TLS load client failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn new_conn(
    o: &Options,
    setup: &Setup,
    sc: &Scenario,
    files: &TlsFiles,
    connections: u32,
) -> Result<(Vec<(Kind, Row)>, String), String> {
    let path = "/1k";
    let (running, negotiated) = start(setup, files, path, sc.body)?;
    let mut rows: Vec<(Kind, Row)> = running.iter().map(|r| (r.kind, Row::default())).collect();
    // Per contender, over all rounds: connections the kernel accepted, requests answered.
    let mut accepted = vec![(0u64, 0u64); running.len()];
    for r in &running {
        load(o, r.port, path, connections, o.warmup)?;
    }
    for round in 0..o.rounds {
        for (i, r) in running.iter().enumerate() {
            eprintln!("  round {}/{}: {}", round + 1, o.rounds, r.kind.name());
            let mut counted = (0, 0);
            let run = crate::measure::measured(r, sc.body, connections, || {
                let opens = measure::passive_opens();
                let l = load(o, r.port, path, connections, o.duration)?;
                // Every connection the machine accepted meanwhile: the contender's, plus the
                // few it opened to the backend.
                let opened = measure::passive_opens().saturating_sub(opens);
                counted = (opened, l.requests);
                let mut run = Run {
                    rps: l.requests as f64 / l.seconds.max(1e-9),
                    p50_us: l.p50_us,
                    p99_us: l.p99_us,
                    p999_us: f64::NAN,
                    errors: l.errors + l.non2xx,
                    ..Run::default()
                };
                if l.resumed + l.retried > 0 {
                    run.problems.push(format!(
                        "{} of {} handshakes were not full 1-RTT ones ({} resumed, {} after a HelloRetryRequest)",
                        l.resumed + l.retried,
                        l.requests,
                        l.resumed,
                        l.retried
                    ));
                }
                if opened < l.requests {
                    run.problems.push(format!(
                        "{opened} connections accepted for {} requests: connections were reused",
                        l.requests
                    ));
                }
                Ok((l.requests, run, l.bytes))
            })?;
            accepted[i].0 += counted.0;
            accepted[i].1 += counted.1;
            rows[i].1.runs.push(run);
        }
    }
    for (i, r) in running.iter().enumerate() {
        rows[i].1.peak_rss_kib = measure::status_kib(&r.pids(), "VmHWM:");
    }
    let per_request: Vec<String> = running
        .iter()
        .zip(&accepted)
        .map(|(r, (c, n))| format!("{} {:.3}", r.kind.name(), *c as f64 / (*n).max(1) as f64))
        .collect();
    let how = format!(
        "`ringway-bench-harness --tls-load` (rustls, {connections} client threads pinned like wrk, each in a loop: connect, full TLS handshake with resumption disabled, `GET {path}` with `Connection: close`, read the response, close), {} interleaved rounds of {} s, medians; latency includes connect and handshake. wrk is not used here because it resumes the TLS session on every reconnect. Connections accepted on the machine per request (kernel PassiveOpens, upstream ones included): {}. {negotiated}",
        o.rounds,
        o.duration.as_secs(),
        per_request.join(", ")
    );
    Ok((rows, how))
}

fn idle(
    o: &Options,
    setup: &Setup,
    files: &TlsFiles,
) -> Result<(Vec<(Kind, Row)>, String), String> {
    let cfg = tlsclient::config(Some(&files.ca))?;
    let mut rows = Vec::new();
    let mut base = Vec::new();
    let mut short = Vec::new();
    for kind in KINDS {
        eprintln!("  {}", kind.name());
        let running = setup.start_tls(kind, files)?;
        let before = measure::status_kib(&running.pids(), "VmRSS:");
        let sockets = measure::sockets(&running.pids());
        let (conns, failed) = tlsclient::idle(
            &cfg,
            running.port,
            o.idle,
            IDLE_THREADS,
            Duration::from_secs(2),
        );
        let rss = measure::status_kib(&running.pids(), "VmRSS:");
        // What the contender holds, not what the client believes is open: a proxy at its
        // connection limit may have closed some.
        let held = measure::sockets(&running.pids()).saturating_sub(sockets);
        if held < conns.len() {
            short.push(format!(
                " **{}** held only {held} sockets for the {} connections the client had open (at its connection limit it closed some): its RSS covers fewer connections; compare per held socket.",
                kind.name(),
                conns.len()
            ));
        }
        drop(conns);
        base.push(format!(
            "{} {:.1} MiB before, {held} more sockets held after, {:.1} KiB per held socket",
            kind.name(),
            before as f64 / 1024.0,
            rss.saturating_sub(before) as f64 / held.max(1) as f64
        ));
        rows.push((kind, crate::idle_row(failed, rss)));
    }
    let how = format!(
        "{} TLS keep-alive connections (rustls client, {IDLE_THREADS} handshaking at a time, full handshake each, certificate verified against the test CA, ECDSA P-256, TLS 1.3) each make one request (`GET /0`), then sit idle (2 s); the contender's resident memory (all processes) and its open sockets are read then. Resident memory: {}.{}",
        o.idle,
        base.join("; "),
        short.concat()
    );
    Ok((rows, how))
}
