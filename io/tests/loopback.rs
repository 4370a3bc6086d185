//! proxy-io over real loopback sockets, on both drivers: the ring flags actually in force,
//! keep-alive with upstream reuse, pipelining, upstream timeouts and refusals, and graceful
//! shutdown with a request in flight.

mod support;

use proxy_core::config::{IoDriver, Quantity};
use proxy_io::{DriverInfo, RingSetup};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::{fixed_response, read_to_close, roundtrip, FixedUpstream, Proxy, BODY};

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";

/// The response the proxy sends for the fixed upstream's answer (same bytes: nothing to strip).
fn proxied_len() -> usize {
    fixed_response().len()
}

fn keep_alive_reuses_one_upstream_connection(driver: IoDriver) {
    let up = FixedUpstream::start();
    let proxy = Proxy::start(driver, 1, &[up.addr], |_| {});
    let mut conn = TcpStream::connect(proxy.addr).expect("connect");
    let mut buf = vec![0u8; 4096];
    for _ in 0..200 {
        roundtrip(&mut conn, GET, &mut buf, proxied_len()).expect("response");
        assert!(buf[..proxied_len()].ends_with(BODY));
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    drop(conn);
    // Counters are bumped after the response is written: read them once the workers stopped.
    let stats = proxy.stats.clone();
    proxy.stop();
    let accepted = up.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(accepted, 1, "one upstream connection for 200 requests");
    assert_eq!(stats[0].upstream_reuses.get(), 199);
    assert_eq!(stats[0].responses[1].get(), 200);
}

fn pipelined_requests_are_answered_in_order(driver: IoDriver) {
    let up = FixedUpstream::start();
    let proxy = Proxy::start(driver, 1, &[up.addr], |_| {});
    let mut conn = TcpStream::connect(proxy.addr).expect("connect");
    let three = [
        GET,
        GET,
        b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".as_slice(),
    ]
    .concat();
    conn.write_all(&three).expect("write");
    let all = read_to_close(&mut conn, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert!(
        text.ends_with(std::str::from_utf8(BODY).unwrap_or_default()),
        "{text}"
    );
    assert!(
        text.contains("Connection: close"),
        "last response announces the close: {text}"
    );
    proxy.stop();
}

fn slow_upstream_gets_504_and_refused_gets_502(driver: IoDriver) {
    let slow = FixedUpstream::start_with(fixed_response(), Duration::from_millis(1500));
    let proxy = Proxy::start(driver, 1, &[slow.addr], |f| {
        f.timeouts.upstream_response = Some(Quantity::Text("300ms".into()));
    });
    let mut conn = TcpStream::connect(proxy.addr).expect("connect");
    conn.write_all(GET).expect("write");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    let n = conn.read(&mut buf).expect("an answer, not a hang");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 504 "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    proxy.stop();

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let proxy = Proxy::start(driver, 1, &[closed], |_| {});
    let mut conn = TcpStream::connect(proxy.addr).expect("connect");
    conn.write_all(GET).expect("write");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = conn.read(&mut buf).expect("an answer");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(
        !text.contains(&closed.port().to_string()),
        "no upstream address leaks: {text}"
    );
    assert_eq!(proxy.total(|s| s.upstream_errors.get()), 1);
    proxy.stop();
}

fn shutdown_finishes_in_flight_requests(driver: IoDriver) {
    let slow = FixedUpstream::start_with(fixed_response(), Duration::from_millis(400));
    let proxy = Proxy::start(driver, 1, &[slow.addr], |_| {});
    let mut conn = TcpStream::connect(proxy.addr).expect("connect");
    conn.write_all(GET).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    let stats = proxy.stats.clone();
    let stopper = std::thread::spawn(move || proxy.stop());
    let all = read_to_close(&mut conn, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n"),
        "in-flight request completes: {text}"
    );
    assert!(
        text.contains("Connection: close\r\n"),
        "and says the connection closes: {text}"
    );
    assert!(text.ends_with(std::str::from_utf8(BODY).unwrap_or_default()));
    stopper.join().expect("workers stop");
    assert_eq!(stats[0].connections_active.get(), 0);
}

#[test]
fn uring_runs_with_single_issuer_and_defer_taskrun() {
    let up = FixedUpstream::start();
    let proxy = Proxy::start(IoDriver::Uring, 2, &[up.addr], |_| {});
    // This machine's kernel (6.x) accepts the fast setup; older kernels fall back flag by flag.
    assert_eq!(
        proxy.drivers,
        vec![DriverInfo::Uring(RingSetup::DeferTaskrun); 2]
    );
    proxy.stop();
    let proxy = Proxy::start(IoDriver::Epoll, 1, &[up.addr], |_| {});
    assert_eq!(proxy.drivers, vec![DriverInfo::Epoll]);
    proxy.stop();
}

macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(#[test] fn $name() { super::$name(proxy_core::config::IoDriver::Uring) })*
        }
        mod epoll {
            $(#[test] fn $name() { super::$name(proxy_core::config::IoDriver::Epoll) })*
        }
    };
}

on_both_drivers!(
    keep_alive_reuses_one_upstream_connection,
    pipelined_requests_are_answered_in_order,
    slow_upstream_gets_504_and_refused_gets_502,
    shutdown_finishes_in_flight_requests,
);
