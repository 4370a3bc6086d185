//! Self-tests of the load-balancing test infrastructure (`tests/common/lb.rs` and the
//! `ringway-test-backend` binary): a backend counts what it serves and reports it on `/_stats`,
//! a SIGKILLed backend refuses connections and comes back on the same port, its health status
//! and delays can be changed at run time, the load driver honours its time limit, and, through
//! the real proxy, default round robin over two backends splits 1,000 requests evenly.

mod common;

use common::lb::{cluster, drive, get_once, start_lb_proxy, Backend, BackendStats};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn backend_answers_with_its_name_and_counts_requests() {
    let b = Backend::start("alpha");
    assert_ne!(b.addr.port(), 0, "the real port is read back");

    let r = get_once(b.addr, "/anything", &[]).expect("GET /anything");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.header("x-backend"), Some("alpha"));
    assert_eq!(r.body_text(), "alpha\n");

    let r = get_once(b.addr, "/healthz", &[]).expect("GET /healthz");
    assert_eq!((r.status, r.body_text().as_str()), (200, "ok\n"));

    let r = get_once(b.addr, "/echo", &[("X-Forwarded-For", "192.0.2.7")]).expect("GET /echo");
    assert_eq!(r.status, 200, "{}", r.summary());
    let head = r.body_text();
    assert!(
        head.starts_with("GET /echo HTTP/1.1\r\n")
            && head.contains("X-Forwarded-For: 192.0.2.7\r\n"),
        "/echo body: {head:?}"
    );
    let r = get_once(b.addr, "/cookie", &[("Cookie", "session=42")]).expect("GET /cookie");
    assert_eq!(r.body_text(), "session=42");
    let r = get_once(b.addr, "/status/503", &[]).expect("GET /status/503");
    assert_eq!((r.status, r.header("x-backend")), (503, Some("alpha")));

    // Four counted requests and one health check; /_stats and /_control/ are not counted.
    assert_eq!(
        b.stats(),
        BackendStats {
            requests: 4,
            healthz: 1,
            inflight: 0,
            max_inflight: 1
        }
    );

    // The driver, straight at the backend: keep-alive connections, every answer tallied.
    let t = drive(b.addr, 200, 4, "/", &[], Duration::from_secs(30));
    assert_eq!(
        (t.count("alpha"), t.failures(), t.unsent),
        (200, 0, 0),
        "{}",
        t.summary()
    );
    assert!(t
        .responses
        .iter()
        .all(|r| r == &(200, Some("alpha".to_owned()))));
    assert_eq!(b.stats().requests, 204);

    b.reset();
    assert_eq!(b.stats(), BackendStats::default());
}

#[test]
fn killed_backend_refuses_connections_and_restarts_on_the_same_port() {
    let mut b = Backend::start("beta");
    let addr = b.addr;
    // Leave a served keep-alive connection open, so the kill leaves a socket behind on the
    // port that the restart must bind past.
    let t = drive(addr, 3, 1, "/", &[], Duration::from_secs(10));
    assert_eq!(t.count("beta"), 3, "{}", t.summary());
    let mut open = common::Client::connect(addr);
    let r = open.request("GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n");
    assert_eq!(r.status, 200);

    b.kill();
    assert!(!b.is_running());
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect_err("a killed backend must not accept connections");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

    b.restart();
    assert_eq!(b.addr, addr, "same port after the restart");
    assert!(b.is_running());
    let r = get_once(addr, "/", &[]).expect("GET / after the restart");
    assert_eq!((r.status, r.body_text().as_str()), (200, "beta\n"));
    assert_eq!(b.stats().requests, 1, "a restarted backend counts afresh");

    // And again, straight after a restart.
    b.restart();
    assert_eq!(get_once(addr, "/", &[]).expect("GET /").status, 200);
}

#[test]
fn health_status_and_delays_change_at_run_time() {
    let b = Backend::start("gamma");
    b.set_health(503);
    let r = get_once(b.addr, "/healthz", &[]).expect("GET /healthz");
    assert_eq!((r.status, r.body_text().as_str()), (503, "fail\n"));
    b.set_health(200);
    assert_eq!(
        get_once(b.addr, "/healthz", &[]).expect("healthz").status,
        200
    );
    let started = Backend::start_with("delta", &["--health-status", "502"]);
    assert_eq!(
        get_once(started.addr, "/healthz", &[])
            .expect("healthz")
            .status,
        502
    );

    // Per request: ?delay_ms=N.
    let t0 = Instant::now();
    let r = get_once(b.addr, "/?delay_ms=200", &[]).expect("delayed GET");
    assert_eq!(r.status, 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );

    // Global: every counted request, not health checks; requests overlap while they wait.
    b.set_delay(400);
    let t0 = Instant::now();
    assert_eq!(get_once(b.addr, "/", &[]).expect("GET /").status, 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    let t0 = Instant::now();
    assert_eq!(
        get_once(b.addr, "/healthz", &[]).expect("healthz").status,
        200
    );
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    b.reset();
    let t = drive(b.addr, 4, 4, "/", &[], Duration::from_secs(10));
    assert_eq!((t.count("gamma"), t.failures()), (4, 0), "{}", t.summary());
    let stats = b.stats();
    assert!(stats.max_inflight >= 2, "{stats:?}");
    assert_eq!(stats.inflight, 0, "{stats:?}");
    b.set_delay(0);

    // The driver stops at its limit: the rest is unsent, nothing is an error.
    let t0 = Instant::now();
    let t = drive(
        b.addr,
        100,
        2,
        "/?delay_ms=100",
        &[],
        Duration::from_millis(350),
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(t.unsent > 0 && t.count("gamma") > 0, "{}", t.summary());
    assert_eq!(t.errors, 0, "{}", t.summary());
    assert_eq!(t.count("gamma") + t.unsent, 100, "{}", t.summary());
}

#[test]
fn round_robin_through_the_proxy_splits_evenly_between_two_backends() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (proxy, _config) = start_lb_proxy(&cluster("app", &[&a, &b], ""));
    let t = drive(proxy.addr, 1000, 8, "/", &[], Duration::from_secs(60));
    assert_eq!((t.failures(), t.unsent), (0, 0), "{}", t.summary());
    for name in ["a", "b"] {
        let share = t.share(name);
        assert!(
            (0.45..=0.55).contains(&share),
            "{name} got {share:.3} of the requests: {}",
            t.summary()
        );
    }
    assert_eq!(a.stats().requests + b.stats().requests, 1000);
}
