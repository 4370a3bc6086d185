//! Runtime behaviour an operator sees: workers follow the process's CPU affinity, the
//! per-worker connection limit answers 503, and a large upload streams through bounded buffers
//! (the proxy's memory does not grow with the body).

mod common;

use common::Client;
use common::Upstream;
use common::{binary, driver, Proxy};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A proxy with a single worker in front of `upstream`, plus `extra` flags.
fn one_worker(upstream: SocketAddr, extra: &[&str]) -> Proxy {
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--upstream".to_string(), upstream.to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Proxy::start_args(&args)
}

/// The "worker started" log lines of a proxy started under `taskset -c 1`.
#[test]
fn workers_follow_the_affinity_mask() {
    if Command::new("taskset").arg("-V").output().is_err() {
        panic!("taskset (util-linux) is required for this test");
    }
    let up = Upstream::start("a");
    let mut child = Command::new("taskset")
        .args([
            "-c",
            "1",
            binary(),
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up.addr.to_string(),
        ])
        .args(["--io-driver", &driver(), "--log-level", "info"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn taskset ringway");
    let stderr = child.stderr.take().expect("stderr");
    let mut started = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("log line");
        if line.contains("worker started") {
            started.push(line.clone());
        }
        if line.contains("listening") && line.contains("listener=") || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        started.len(),
        1,
        "one worker for a one-CPU mask: {started:?}"
    );
    assert!(
        started[0].contains("cpu=Some(1)"),
        "pinned to CPU 1: {started:?}"
    );
}

#[test]
fn cpu_list_pins_workers_in_order() {
    let up = Upstream::start("a");
    let proxy = Proxy::start(&[up.addr], &["--cpu-list", "1,0"]);
    let m = proxy.admin_get("/metrics").body_text();
    assert!(
        m.contains("ringway_worker_info{worker=\"0\",") && m.contains("cpu=\"1\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ringway_worker_info{worker=\"1\",") && m.contains("cpu=\"0\"} 1"),
        "{m}"
    );
}

#[test]
fn connections_over_the_worker_limit_get_503() {
    let up = Upstream::start("a");
    let proxy = one_worker(up.addr, &["--max-connections", "1"]);
    // The start-up probe's connection must have been accepted and closed before the limit of
    // one is tested.
    let idle = |m: &std::collections::HashMap<String, f64>| {
        m.get("ringway_connections_accepted_total{worker=\"all\"}") >= Some(&1.0)
            && m.get("ringway_connections_active{worker=\"all\"}") == Some(&0.0)
    };
    assert!(
        idle(&proxy.metrics_when(Duration::from_secs(5), idle)),
        "probe connection closed"
    );
    let mut first = Client::connect(proxy.addr);
    let r = first.request("GET /name HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.summary());
    // The first connection stays open (keep-alive), so the worker is at its limit.
    let mut second = Client::connect(proxy.addr);
    second.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = second.read_response().expect("a 503, not a hang");
    assert_eq!(r.status, 503, "{}", r.summary());
    assert!(r.says_close());
    let refused = |m: &std::collections::HashMap<String, f64>| {
        m.get("ringway_connections_refused_total{worker=\"all\"}") == Some(&1.0)
    };
    assert!(refused(
        &proxy.metrics_when(Duration::from_secs(5), refused)
    ));
    drop(first);
}

/// A sink upstream: reads one request with a Content-Length body, discards it while counting,
/// and answers with the count.
fn sink() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let want: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut got = 0u64;
                let mut buf = vec![0u8; 256 * 1024];
                while got < want {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n as u64,
                    }
                }
                let body = got.to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_large_upload_streams_without_growing_memory() {
    const SIZE: u64 = 512 << 20;
    let proxy = one_worker(sink(), &[]);
    let before = rss_kib(proxy.pid());
    let mut conn = TcpStream::connect(proxy.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        conn,
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n"
    )
    .expect("head");
    let chunk = vec![b'x'; 1 << 20];
    let mut peak = before;
    for i in 0..(SIZE >> 20) {
        conn.write_all(&chunk).expect("body chunk");
        if i % 64 == 0 {
            peak = peak.max(rss_kib(proxy.pid()));
        }
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&reply).ends_with(&SIZE.to_string()) {
        let n = conn.read(&mut buf).expect("reply");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(
        reply.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    peak = peak.max(rss_kib(proxy.pid()));
    // 512 MiB went through; the proxy may hold a few buffers, not the body.
    assert!(
        peak - before < 32 * 1024,
        "RSS grew from {before} KiB to {peak} KiB during the upload"
    );
}
