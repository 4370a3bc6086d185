//! Which protocol a client gets. A plain listener serves HTTP/1.1 and h2c with prior knowledge
//! on one port (the preface is sniffed). A TLS listener offers ALPN `h2` and `http/1.1`: a
//! client that picks h2 gets HTTP/2 (forwarded upstream with `X-Forwarded-Proto: https`), a
//! client offering only `http/1.1` gets HTTP/1.1. `--no-http2` turns both off. The client is the
//! `h2` crate, over tokio-rustls for TLS (`common::h2`); the rest of HTTP/2 is in `h2_e2e.rs`.

mod common;

use common::h2::{fnv1a, h2_tls, head_fields, run, tls_connect, Body, H2, PREFACE};
use common::tls::{localhost_site, start_tls_proxy, TempDir};
use common::{pattern, Client, Proxy, Upstream};
use http::Method;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);

/// Two HTTP/1.1 requests on one connection (`path`, then `/name` with `Connection: close`);
/// returns the first response.
fn http1_pair(addr: std::net::SocketAddr, path: &str) -> common::Response {
    let mut c = Client::connect(addr);
    let a = c.request(&format!("GET {path} HTTP/1.1\r\nHost: one.test\r\n\r\n"));
    let b = c.request("GET /name HTTP/1.1\r\nHost: one.test\r\nConnection: close\r\n\r\n");
    for r in [&a, &b] {
        assert_eq!(
            (r.version.as_str(), r.status),
            ("HTTP/1.1", 200),
            "{}",
            r.summary()
        );
    }
    assert_eq!(b.body_text(), "alpha");
    a
}

#[test]
fn plain_listener_serves_http11_beside_h2c() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let addr = proxy.addr;
    http1_pair(addr, "/name");
    run(LIMIT, async {
        let mut h = H2::h2c(addr, "two.test").await.expect("h2c connection");
        assert_eq!(h.must_get("/name").await.body_text(), "alpha");
        // HTTP/1.1 on another connection while the h2c one stays open.
        let r = tokio::task::spawn_blocking(move || http1_pair(addr, "/bytes/10"))
            .await
            .expect("HTTP/1.1 client");
        assert_eq!(r.body, pattern(10));
        assert_eq!(h.must_get("/bytes/20").await.body, pattern(20));
        let mut h2 = H2::h2c(addr, "three.test")
            .await
            .expect("second h2c connection");
        assert_eq!(h2.must_get("/name").await.body_text(), "alpha");
    });
    http1_pair(addr, "/name");
    assert_eq!(up.requests(), 9);
}

/// Sends one HTTP/1.1 request with `Connection: close` over `tls` and reads until the close.
async fn http1_over(mut tls: common::h2::Tls, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .expect("write the request");
    let mut got = Vec::new();
    // A peer that ends without close_notify is an error to rustls; what came before counts.
    let _ = tls.read_to_end(&mut got).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn h2_over_tls_is_negotiated_by_alpn_and_forwarded_as_https() {
    let dir = TempDir::new("h2-tls");
    let (ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (proxy, tls_addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    run(LIMIT, async {
        let mut h = h2_tls(tls_addr, "localhost", &ca.pem)
            .await
            .expect("h2 over TLS");
        let r = h.must_get("/headers").await;
        assert_eq!(r.status, 200, "{}", r.summary());
        let head = r.body_text();
        assert!(
            head.starts_with("GET /headers HTTP/1.1\r\n"),
            "head:\n{head}"
        );
        assert_eq!(head_fields(&head, "host"), ["localhost"], "head:\n{head}");
        assert_eq!(
            head_fields(&head, "x-forwarded-proto"),
            ["https"],
            "head:\n{head}"
        );

        // Bodies both ways and trailers over TLS.
        let data = pattern(1 << 20);
        let req = h.req(Method::POST, "/digest").body(()).expect("request");
        let r = h
            .exchange(req, Body::data(data.clone()))
            .await
            .expect("1 MiB upload");
        assert_eq!(
            (r.header("x-seen-length"), r.header("x-seen-fnv")),
            (
                Some("1048576"),
                Some(format!("{:016x}", fnv1a(&data)).as_str())
            ),
            "{}",
            r.summary()
        );
        let r = h.must_get("/bytes/3000000").await;
        assert!(
            r.body == pattern(3_000_000),
            "3 MB download over TLS differs"
        );
        let r = h.must_get("/chunked").await;
        assert_eq!(r.trailer("x-trailer"), Some("done"), "{}", r.summary());

        // The plain listener of the same proxy speaks h2c, forwarded as http.
        let mut c = H2::h2c(proxy.addr, "plain.test").await.expect("h2c");
        let head = c.must_get("/headers").await.body_text();
        assert_eq!(
            head_fields(&head, "x-forwarded-proto"),
            ["http"],
            "head:\n{head}"
        );
    });
}

#[test]
fn a_client_offering_only_http11_gets_http11_on_the_tls_listener() {
    let dir = TempDir::new("h2-tls-h1");
    let (ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (_proxy, tls_addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    run(LIMIT, async {
        let (tls, proto) = tls_connect(tls_addr, "localhost", &ca.pem, &["http/1.1"])
            .await
            .expect("TLS with ALPN http/1.1");
        assert_eq!(proto.as_deref(), Some("http/1.1"));
        let got = http1_over(tls, "/name").await;
        assert!(got.starts_with("HTTP/1.1 200"), "response: {got:?}");
        assert!(got.ends_with("alpha"), "response: {got:?}");

        // No ALPN at all: HTTP/1.1 too.
        let (tls, proto) = tls_connect(tls_addr, "localhost", &ca.pem, &[])
            .await
            .expect("TLS without ALPN");
        assert_eq!(proto, None);
        let got = http1_over(tls, "/name").await;
        assert!(got.starts_with("HTTP/1.1 200"), "response: {got:?}");
    });
}

#[test]
fn no_http2_leaves_h2_out_of_alpn() {
    let dir = TempDir::new("h2-tls-off");
    let (ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (_proxy, tls_addr) = start_tls_proxy(&[up.addr], &[&site], &["--no-http2"]);
    run(LIMIT, async {
        let (tls, proto) = tls_connect(tls_addr, "localhost", &ca.pem, &["h2", "http/1.1"])
            .await
            .expect("TLS offering h2 and http/1.1");
        assert_eq!(
            proto.as_deref(),
            Some("http/1.1"),
            "--no-http2 must not select h2"
        );
        let got = http1_over(tls, "/name").await;
        assert!(got.starts_with("HTTP/1.1 200"), "response: {got:?}");

        // Offering h2 alone: no shared protocol, the handshake fails (or at least no h2).
        match tls_connect(tls_addr, "localhost", &ca.pem, &["h2"]).await {
            Err(e) => eprintln!("offering only h2 with --no-http2: {e}"),
            Ok((_, proto)) => assert_ne!(proto.as_deref(), Some("h2"), "--no-http2 selected h2"),
        }
    });
    assert_eq!(up.requests(), 1);
}

#[test]
fn no_http2_answers_the_h2c_preface_as_a_bad_http1_request() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--no-http2"]);
    let mut c = Client::connect(proxy.addr);
    c.send(PREFACE);
    let r = c.read_response().expect("an HTTP/1 answer to the preface");
    eprintln!("the preface with --no-http2: {}", r.summary());
    // `PRI * HTTP/2.0` is a request line with an unsupported version: 400 or 505 both say no.
    assert!(
        r.version == "HTTP/1.1" && (r.status == 400 || r.status == 505),
        "want an HTTP/1.1 400 or 505 for the preface with --no-http2: {}",
        r.summary()
    );
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "closed after the error"
    );
    // The h2 client cannot get a response either.
    run(LIMIT, async {
        if let Ok(mut h) = H2::h2c(proxy.addr, "no.test").await {
            let r = h.get("/name").await;
            assert!(
                r.is_err(),
                "an HTTP/2 response with --no-http2: {:?}",
                r.map(|r| r.summary())
            );
        }
    });
    // HTTP/1.1 is still served.
    assert_eq!(common::get(proxy.addr, "/name").body_text(), "alpha");
    assert_eq!(up.requests(), 1);
}
