//! Protocol upgrades (WebSocket style): after the upstream answers `101 Switching Protocols`
//! the proxy tunnels bytes both ways, including bytes the client sent right behind the upgrade
//! request, and closes the tunnel cleanly when either side finishes.

mod common;

use common::{Client, Proxy, Upstream};
use std::io::Write;
use std::time::Duration;

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Reads exactly `n` bytes from the tunnel (including any that came with the 101).
fn read_n(c: &mut Client, n: usize) -> Vec<u8> {
    c.read_bytes(n)
        .unwrap_or_else(|e| panic!("reading {n} echoed bytes through the tunnel: {e}"))
}

#[test]
fn upgraded_connection_echoes_bytes_both_ways() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request(UPGRADE);
    assert_eq!(r.status, 101, "{}", r.summary());
    assert!(
        r.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "101 without Upgrade: {}",
        r.summary()
    );
    assert!(
        r.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
        "101 without Connection: upgrade: {}",
        r.summary()
    );
    for msg in [
        &b"ping-1"[..],
        b"a somewhat longer second message",
        b"\x00\x01\x02\xff binary",
    ] {
        c.send(msg);
        assert_eq!(read_n(&mut c, msg.len()), msg, "echo through the tunnel");
    }
    // A larger burst, written while reading, to exercise both directions at once.
    let big = common::pattern(1 << 20);
    let writer = common::write_in_background(&c.stream, big.clone());
    let echoed = read_n(&mut c, big.len());
    writer
        .join()
        .expect("writer thread")
        .expect("write 1 MiB into the tunnel");
    assert!(echoed == big, "1 MiB echoed through the tunnel differs");
    // Client finishes: the upstream sees EOF, closes its side, and the tunnel ends.
    c.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close the tunnel");
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "tunnel not closed after both sides finished"
    );
}

#[test]
fn bytes_sent_right_after_the_upgrade_request_reach_the_upstream() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    // The first frame travels in the same write as the request head.
    c.stream
        .write_all(format!("{UPGRADE}early-bytes").as_bytes())
        .expect("write the upgrade request");
    let r = c.read_response().expect("the 101");
    assert_eq!(r.status, 101, "{}", r.summary());
    assert_eq!(read_n(&mut c, 11), b"early-bytes");
    c.send("later");
    assert_eq!(read_n(&mut c, 5), b"later");
}

#[test]
fn upgrade_refused_by_the_upstream_is_an_ordinary_response() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    // `/name` ignores the Upgrade request and answers 200: no tunnel, keep-alive as usual.
    let r = c.request(&UPGRADE.replace("/ws", "/name"));
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "alpha"),
        "{}",
        r.summary()
    );
    let r = c.request("GET /name HTTP/1.1\r\nHost: ws.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
}
