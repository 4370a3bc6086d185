//! Many clients at once and graceful shutdown: 1,000 simultaneous connections all answered,
//! no connection leaked afterwards; SIGTERM with requests in flight lets them finish (with
//! `Connection: close`), refuses new connections, and exits 0 within the drain timeout.

mod common;

use common::{raise_nofile, Client, Proxy, Upstream};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[test]
fn a_thousand_concurrent_connections_all_get_200() {
    const THREADS: usize = 50;
    const PER_THREAD: usize = 20;
    raise_nofile(8192);
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let addr = proxy.addr;
    // Every connection is opened before any request is sent, so all 1,000 are open at once.
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> Result<usize, String> {
                    let mut conns: Vec<Result<Client, String>> = (0..PER_THREAD)
                        .map(|i| {
                            TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                                .map(Client::from_stream)
                                .map_err(|e| format!("thread {t} connection {i}: connect: {e}"))
                        })
                        .collect();
                    barrier.wait();
                    let req = b"GET /name HTTP/1.1\r\nHost: many.test\r\nConnection: close\r\n\r\n";
                    for c in conns.iter_mut().flatten() {
                        let _ = std::io::Write::write_all(&mut c.stream, req);
                    }
                    let mut ok = 0;
                    for (i, c) in conns.into_iter().enumerate() {
                        let mut c = c?;
                        match c.read_response() {
                            Ok(r) if r.status == 200 && r.body == b"alpha" => ok += 1,
                            Ok(r) => {
                                return Err(format!("thread {t} connection {i}: {}", r.summary()))
                            }
                            Err(e) => return Err(format!("thread {t} connection {i}: {e}")),
                        }
                    }
                    Ok(ok)
                })
                .expect("spawn a client thread")
        })
        .collect();
    let mut ok = 0;
    let mut failures = Vec::new();
    for h in handles {
        match h.join().expect("client thread panicked") {
            Ok(n) => ok += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} threads failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(ok, THREADS * PER_THREAD);

    // Every connection was closed by the client's `Connection: close`: none may stay active.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let active = proxy.metric("ringway_connections_active{worker=\"all\"}");
        if active == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{active} connections still active 5 s after the last response"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let served = proxy.metric("ringway_responses_total{worker=\"all\",class=\"2xx\"}");
    assert_eq!(served, 1000.0, "2xx responses counted");
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    const IN_FLIGHT: usize = 20;
    let up = Upstream::start("alpha");
    let mut proxy = Proxy::start(&[up.addr], &["--drain-timeout", "5s"]);
    let addr = proxy.addr;
    let handles: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            std::thread::spawn(move || -> Result<(common::Response, bool), String> {
                let mut c = Client::connect(addr);
                // Keep-alive requested: the proxy must itself say it closes.
                c.send("GET /slow/1000 HTTP/1.1\r\nHost: drain.test\r\n\r\n");
                let r = c.read_response().map_err(|e| format!("request {i}: {e}"))?;
                let closed = c.closes_within(Duration::from_secs(5));
                Ok((r, closed))
            })
        })
        .collect();
    assert!(
        up.wait_requests(IN_FLIGHT, Duration::from_secs(5)),
        "only {} of {IN_FLIGHT} requests reached the upstream",
        up.requests()
    );
    proxy.signal(libc::SIGTERM);

    // New connections are refused while the in-flight requests are still being served.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut refused_while_draining = None;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused_while_draining = Some(proxy.is_running());
                break;
            }
            // Accepted in the moment before the listener closed (it will be served): try again.
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert_eq!(
        refused_while_draining,
        Some(true),
        "after SIGTERM a new connection should be refused while in-flight requests drain \
         (None: never refused within 3 s; Some(false): only once the process had exited)"
    );

    for (i, h) in handles.into_iter().enumerate() {
        let (r, closed) = h
            .join()
            .expect("client thread panicked")
            .unwrap_or_else(|e| panic!("in-flight request failed during shutdown: {e}"));
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "slow"),
            "request {i}: {}",
            r.summary()
        );
        assert!(
            r.says_close(),
            "request {i}: response during drain lacks Connection: close: {}",
            r.summary()
        );
        assert!(
            closed,
            "request {i}: connection not closed after the drained response"
        );
    }
    let status = proxy.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "ringway still running 10 s after SIGTERM; stderr:\n{}",
            proxy.stderr()
        )
    });
    assert!(
        status.success(),
        "exit status {status:?} after SIGTERM; stderr:\n{}",
        proxy.stderr()
    );
}

#[test]
fn sigterm_with_idle_keep_alive_connections_exits_promptly() {
    let up = Upstream::start("alpha");
    let mut proxy = Proxy::start(
        &[up.addr],
        &["--drain-timeout", "5s", "--idle-timeout", "60s"],
    );
    let mut idle: Vec<Client> = (0..5).map(|_| Client::connect(proxy.addr)).collect();
    for c in &mut idle {
        let r = c.request("GET /name HTTP/1.1\r\nHost: idle.test\r\n\r\n");
        assert_eq!(r.status, 200);
    }
    proxy.signal(libc::SIGINT);
    for (i, c) in idle.iter_mut().enumerate() {
        assert!(
            c.closes_within(Duration::from_secs(5)),
            "idle connection {i} not closed at shutdown"
        );
    }
    let status = proxy.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "ringway still running 10 s after SIGINT; stderr:\n{}",
            proxy.stderr()
        )
    });
    assert!(
        status.success(),
        "exit status {status:?} after SIGINT; stderr:\n{}",
        proxy.stderr()
    );
}
