//! HTTP over TLS connections, where the proxy's TLS layer sits between socket and parser:
//! large and chunked bodies both ways, pipelined requests in one TLS record, a close-delimited
//! response ended with close_notify, HTTP/1.0 clients, and a WebSocket tunnel (the tunnel has
//! its own TLS path) including bytes behind the upgrade request and the close at the end.

mod common;

use common::tls::{curl_https, localhost_site, start_tls_proxy, ClientOpts, TempDir, TlsClient};
use common::{pattern, Upstream};
use std::time::Duration;

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[test]
fn bodies_and_pipelined_requests_cross_tls_intact() {
    let dir = TempDir::new("tls-bodies");
    let (ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (_proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    let mut c = TlsClient::connect(addr, "localhost", &ClientOpts::trusting(&ca)).expect("TLS");

    let body = pattern(1 << 20);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .expect("request head");
    c.send(&body).expect("1 MiB request body");
    let r = c.read_response().expect("echo response");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(r.body == body, "the 1 MiB body echoed over TLS differs");

    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body[..300_000].chunks(70_001) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.send(&chunked).expect("chunked request");
    let r = c.read_response().expect("echo response");
    assert_eq!(
        r.header("x-seen-framing"),
        Some("chunked"),
        "{}",
        r.summary()
    );
    assert!(
        r.body[..] == body[..300_000],
        "the chunked body echoed over TLS differs"
    );

    for path in ["/bytes/3000000", "/chunked-bytes/500000"] {
        let r = c.request(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        let n: usize = path
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("size");
        assert_eq!(r.status, 200, "{path}: {}", r.summary());
        assert!(r.body == pattern(n), "{path}: the body over TLS differs");
    }

    // Three requests in one write (so in one TLS record): three responses, in order.
    let one = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    c.send(format!("{}{}{}", one("/name"), one("/bytes/5"), one("/status/404")).as_bytes())
        .expect("pipelined requests");
    let statuses: Vec<(u16, usize)> = (0..3)
        .map(|_| {
            let r = c.read_response().expect("pipelined response");
            (r.status, r.body.len())
        })
        .collect();
    assert_eq!(statuses, [(200, 5), (200, 5), (404, 10)]);

    // A body delimited by the close: the proxy ends the TLS session properly, so the client
    // can tell the whole body from a truncated one.
    c.send(b"GET /until-close HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let rest = c
        .read_to_close_notify(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("close-delimited response over TLS: {e}"));
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\nbody delimited by close"),
        "{text:?}"
    );
}

#[test]
fn http10_clients_are_served_over_tls() {
    let dir = TempDir::new("tls-http10");
    let (ca, site) = localhost_site(&dir);
    let ca_pem = dir.write("ca.pem", &ca.pem);
    let up = Upstream::start("alpha");
    let (_proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    let out = curl_https(addr, "localhost", "/name", &ca_pem, &["--http1.0"]);
    assert!(out.ok, "curl --http1.0 failed: {}", out.stderr);
    assert_eq!(out.stdout, "alpha");
}

#[test]
fn a_websocket_upgrade_tunnels_over_tls() {
    let dir = TempDir::new("websocket");
    let (ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (_proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    let mut c = TlsClient::connect(addr, "localhost", &ClientOpts::trusting(&ca)).expect("TLS");
    // The first frame travels in the same TLS record as the request head.
    c.send(format!("{UPGRADE}early-bytes").as_bytes())
        .expect("upgrade request");
    let r = c.read_response().expect("the 101");
    assert_eq!(r.status, 101, "{}", r.summary());
    assert_eq!(c.read_bytes(11).expect("echo"), b"early-bytes");
    c.send(b"hello over tls").expect("send");
    assert_eq!(c.read_bytes(14).expect("echo"), b"hello over tls");
    // Larger than one TLS record and one read buffer, both ways.
    for round in 0..4 {
        let data = pattern(64 * 1024 + round * 1000);
        c.send(&data).expect("send");
        let back = c.read_bytes(data.len()).expect("echo");
        assert!(back == data, "round {round}: the echo differs");
    }
    // The client finishes (close_notify): the upstream sees EOF and closes its side, and the
    // proxy ends the client's TLS session too.
    c.stream.conn.send_close_notify();
    c.stream
        .conn
        .complete_io(&mut c.stream.sock)
        .expect("send close_notify");
    let rest = c
        .read_to_close_notify(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("tunnel after the client's close_notify: {e}"));
    assert!(rest.is_empty(), "unexpected bytes at the end: {rest:?}");
}
