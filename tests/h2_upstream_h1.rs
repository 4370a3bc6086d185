//! HTTP/1.x clients in front of an HTTP/2 cluster (`--upstream-protocol h2`): each request is
//! forwarded as an HTTP/2 stream (`:authority` from Host, connection-specific fields and those
//! named in Connection dropped, forwarding fields added), over one multiplexed upstream
//! connection per worker shared by every client. Bodies with Content-Length and chunked (2 MiB),
//! request trailers (dropped, as towards HTTP/1.1 upstreams, the body intact), `Expect:
//! 100-continue`, pipelining. The response keeps the upstream's content-length, else is chunked
//! (else ends with the close for HTTP/1.0); response trailers become chunked trailers for a client
//! that sent `TE: trailers`; HEAD, 204, 304 and set-cookie keep the connection in step.
//! Failures: 502 when the upstream is down or resets the stream before the head, a truncated
//! response (and a close) when it resets after the head, 504 when it is too slow, and a client
//! that goes away resets its upstream stream.
//!
//! The client is the raw HTTP/1.1 client of `common::client` (exact framing visible); the
//! upstream is `common::h2_upstream`.

mod common;

use common::h2::fnv1a;
use common::h2_upstream::{h2_proxy, H2Upstream};
use common::{closed_port, pattern, write_in_background, Client};
use std::time::{Duration, Instant};

/// `data` as one chunked body: pieces of varying size, then the last chunk with `trailers`.
fn chunked(data: &[u8], trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut size = 1usize;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        size = size * 7 % 65_521 + 1;
    }
    out.extend_from_slice(b"0\r\n");
    for (k, v) in trailers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Fields that RFC 9113 §8.2.2 forbids in HTTP/2.
const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

#[test]
fn http11_get_is_forwarded_as_an_h2_stream_with_authority_from_host() {
    let up = H2Upstream::start("h2up");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request(
        "GET /headers?q=1 HTTP/1.1\r\nHost: h1.test\r\nX-Custom: kept\r\n\
         Connection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: dropped\r\n\
         Proxy-Connection: keep-alive\r\nUser-Agent: raw-h1\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.header("x-upstream"), Some("h2up"), "{}", r.summary());
    assert!(!r.says_close(), "keep-alive refused: {}", r.summary());
    let s = up.last("/headers").expect("the upstream saw GET /headers");
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        ("GET", "/headers?q=1"),
        "{s:?}"
    );
    assert_eq!(
        s.authority.as_deref(),
        Some("h1.test"),
        ":authority from Host: {s:?}"
    );
    assert_eq!(s.scheme.as_deref(), Some("http"), "{s:?}");
    for host in s.fields("host") {
        assert_eq!(host, "h1.test", "host disagreeing with :authority: {s:?}");
    }
    assert_eq!(s.fields("x-forwarded-for"), ["127.0.0.1"], "{s:?}");
    assert_eq!(s.fields("x-forwarded-proto"), ["http"], "{s:?}");
    let via = s.fields("via");
    assert!(
        via.len() == 1 && via[0].contains("ringway"),
        "one Via naming ringway: {s:?}"
    );
    assert_eq!(s.fields("x-custom"), ["kept"], "{s:?}");
    assert_eq!(s.fields("user-agent"), ["raw-h1"], "{s:?}");
    assert!(
        s.fields("x-hop").is_empty(),
        "a field named in Connection forwarded: {s:?}"
    );
    for f in CONNECTION_SPECIFIC {
        assert!(
            s.fields(f).is_empty(),
            "connection-specific `{f}` forwarded: {s:?}"
        );
    }
    assert!(s.fields("te").is_empty(), "te sent unasked: {s:?}");

    // Content-Length from the upstream is kept; without one the body is chunked.
    let r = c.request("GET /bytes/5000 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(
        (r.status, r.header("content-length"), r.chunked),
        (200, Some("5000"), false),
        "{}",
        r.summary()
    );
    assert!(r.body == pattern(5000), "{}", r.summary());
    let r = c.request("GET /bytes-nolen/70000 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(
        (r.status, r.chunked, r.header("content-length")),
        (200, true, None),
        "{}",
        r.summary()
    );
    assert!(r.body == pattern(70000), "{}", r.summary());
    let r = c.request("GET /status/404 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (404, "status 404"),
        "{}",
        r.summary()
    );
    let r = c.request("GET /status/204 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (204, 0), "{}", r.summary());
    let r = c.request("GET /name HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "h2up"),
        "the connection is still in step after a 204: {}",
        r.summary()
    );
    assert_eq!(up.streams(), 6, "streams that reached the upstream");
    assert_eq!(
        up.connections(),
        1,
        "upstream HTTP/2 connections (one worker)"
    );
}

#[test]
fn http11_request_bodies_reach_the_h2_upstream_with_length_and_chunked() {
    const BIG: usize = 2 << 20;
    let up = H2Upstream::start("bodies");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let mut c = Client::connect(proxy.addr);

    // Content-Length.
    let data = pattern(BIG);
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {BIG}\r\n\r\n"
    );
    c.send(head.as_bytes());
    let writer = write_in_background(&c.stream, data.clone());
    let r = c.read_response().expect("response to a 2 MiB POST");
    writer.join().expect("writer").expect("write the body");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(
        r.body.len() == BIG && r.body == data,
        "echoed body differs ({} bytes)",
        r.body.len()
    );
    let s = up.last("/echo").expect("the upstream saw the POST");
    assert_eq!(
        (s.method.as_str(), s.body_len, s.body_fnv),
        ("POST", BIG, fnv1a(&data)),
        "what the upstream received with Content-Length"
    );
    assert!(s.fields("transfer-encoding").is_empty(), "{s:?}");
    for cl in s.fields("content-length") {
        assert_eq!(cl, BIG.to_string(), "{s:?}");
    }

    // Chunked, many chunks of varying size.
    let head = "PUT /echo HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    c.send(head.as_bytes());
    let writer = write_in_background(&c.stream, chunked(&data, &[]));
    let r = c.read_response().expect("response to a chunked PUT");
    writer.join().expect("writer").expect("write the body");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(
        r.body == data,
        "echoed chunked body differs ({} bytes)",
        r.body.len()
    );
    let s = up.last("/echo").expect("the upstream saw the PUT");
    assert_eq!(
        (s.method.as_str(), s.body_len, s.body_fnv),
        ("PUT", BIG, fnv1a(&data)),
        "what the upstream received of a chunked body"
    );
    assert!(
        s.fields("transfer-encoding").is_empty(),
        "transfer-encoding forwarded: {s:?}"
    );

    // An empty body.
    let r = c.request("POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.summary());
    let r = c.request("GET /name HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(r.body_text(), "bodies", "connection still in step");
    assert_eq!(
        up.connections(),
        1,
        "upstream HTTP/2 connections (one worker)"
    );
}

/// Ringway re-frames HTTP/1.1 request bodies and drops their trailers (RFC 9112 §7.1.2 allows
/// it; `tests/vtc/06-chunked-trailer-dropped.vtc`). Towards an HTTP/2 upstream the body must
/// still arrive whole and the stream end cleanly; trailers, if some day forwarded, must not
/// carry framing or hop-by-hop fields.
#[test]
fn http11_chunked_request_with_trailers_reaches_the_h2_upstream_whole() {
    let up = H2Upstream::start("trailers");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let mut c = Client::connect(proxy.addr);
    let mut raw =
        b"POST /echo HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend(chunked(
        b"hello trailers",
        &[("X-Checksum", "abc123"), ("Keep-Alive", "timeout=5")],
    ));
    c.send(&raw);
    let r = c.read_response().expect("response");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "hello trailers"),
        "{}",
        r.summary()
    );
    let s = up.last("/echo").expect("the upstream saw the POST");
    assert_eq!(
        (s.body_len, s.body_fnv, s.body_error.as_deref()),
        (14, fnv1a(b"hello trailers"), None),
        "{s:?}"
    );
    eprintln!("request trailers towards the h2 upstream: {:?}", s.trailers);
    for (k, _) in s.trailers.iter().flatten() {
        assert!(
            k == "x-checksum",
            "trailer field `{k}` forwarded: {:?}",
            s.trailers
        );
    }
    let r = c.request("GET /name HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "trailers"),
        "connection still in step: {}",
        r.summary()
    );
}

#[test]
fn response_trailers_become_chunked_trailers_for_a_client_that_accepts_them() {
    let up = H2Upstream::start("grpc");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let msg = b"\0\0\0\0\x05hello";
    let mut c = Client::connect(proxy.addr);
    let mut raw = format!(
        "POST /grpc HTTP/1.1\r\nHost: grpc.test\r\nContent-Type: application/grpc\r\n\
         TE: trailers\r\nContent-Length: {}\r\n\r\n",
        msg.len()
    )
    .into_bytes();
    raw.extend_from_slice(msg);
    c.send(&raw);
    let r = c.read_response().expect("response to the gRPC-shaped POST");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(
        r.header("content-type"),
        Some("application/grpc"),
        "{}",
        r.summary()
    );
    assert_eq!(r.body, msg, "{}", r.summary());
    assert!(
        r.chunked,
        "trailers need a chunked response: {}",
        r.summary()
    );
    let trailer = |n: &str| {
        r.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        (trailer("grpc-status"), trailer("grpc-message")),
        (Some("0"), Some("ok")),
        "chunked trailers: {:?}",
        r.trailers
    );
    let s = up.last("/grpc").expect("the upstream saw the POST");
    eprintln!(
        "te towards the upstream for an HTTP/1.1 client's TE: trailers: {:?}",
        s.fields("te")
    );
    assert_eq!(
        (s.body_len, s.field("content-type")),
        (msg.len(), Some("application/grpc")),
        "{s:?}"
    );

    // A gRPC Trailers-Only answer: the fields of its single HEADERS frame, no body.
    let r = c.request(
        "POST /grpc-trailers-only HTTP/1.1\r\nHost: grpc.test\r\nTE: trailers\r\n\
         Content-Type: application/grpc\r\nContent-Length: 0\r\n\r\n",
    );
    let status = r.header("grpc-status").map(str::to_owned).or_else(|| {
        r.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("grpc-status"))
            .map(|(_, v)| v.clone())
    });
    assert_eq!(
        (r.status, status.as_deref(), r.body.len()),
        (200, Some("12"), 0),
        "{}",
        r.summary()
    );

    // Without TE: trailers the body still arrives whole.
    let mut raw = format!(
        "POST /grpc HTTP/1.1\r\nHost: grpc.test\r\nContent-Type: application/grpc\r\n\
         Content-Length: {}\r\n\r\n",
        msg.len()
    )
    .into_bytes();
    raw.extend_from_slice(msg);
    c.send(&raw);
    let r = c.read_response().expect("response without TE: trailers");
    assert_eq!((r.status, &r.body[..]), (200, &msg[..]), "{}", r.summary());
    let r = c.request("GET /name HTTP/1.1\r\nHost: grpc.test\r\n\r\n");
    assert_eq!(r.body_text(), "grpc", "connection still in step");
}

#[test]
fn many_http11_clients_share_one_upstream_connection() {
    const CLIENTS: usize = 40;
    const EACH: usize = 5;
    let up = H2Upstream::start("shared");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let addr = proxy.addr;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for j in 0..EACH {
                    let path = if j % 2 == 0 {
                        "/slow/100".to_owned()
                    } else {
                        format!("/bytes/{}", (i * 131 + j) % 9000)
                    };
                    let r = c.request(&format!("GET {path} HTTP/1.1\r\nHost: many.test\r\n\r\n"));
                    assert_eq!(r.status, 200, "client {i} {path}: {}", r.summary());
                    let want = if j % 2 == 0 {
                        b"slow".to_vec()
                    } else {
                        pattern((i * 131 + j) % 9000)
                    };
                    assert!(r.body == want, "client {i} {path}: {}", r.summary());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    assert_eq!(up.streams(), CLIENTS * EACH);
    assert_eq!(
        up.connections(),
        1,
        "one worker must multiplex every client's requests over ONE upstream connection"
    );
    assert!(
        up.max_in_flight() >= 4,
        "at most {} streams in flight upstream at once: not multiplexed",
        up.max_in_flight()
    );
}

#[test]
fn http11_client_gets_502_when_the_h2_upstream_is_down_or_refuses_the_stream() {
    let proxy = h2_proxy(&[closed_port()], 1, &[]);
    let mut c = Client::connect(proxy.addr);
    let t = Instant::now();
    let r = c.request("GET /name HTTP/1.1\r\nHost: down.test\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.summary());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    if !r.says_close() {
        let r =
            c.request("POST /echo HTTP/1.1\r\nHost: down.test\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(r.status, 502, "{}", r.summary());
    }

    let up = H2Upstream::start("refuse");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    for path in ["/reset-before-head", "/refuse-stream"] {
        let mut c = Client::connect(proxy.addr);
        let r = c.request(&format!("GET {path} HTTP/1.1\r\nHost: down.test\r\n\r\n"));
        assert_eq!(r.status, 502, "{path}: {}", r.summary());
    }
    let r = common::get(proxy.addr, "/name");
    assert_eq!((r.status, r.body_text().as_str()), (200, "refuse"));
    assert_eq!(up.connections(), 1, "upstream connections");
}

#[test]
fn upstream_reset_after_the_head_truncates_the_http11_response() {
    let up = H2Upstream::start("reset");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let mut c = Client::connect(proxy.addr);
    c.send("GET /reset-after-head HTTP/1.1\r\nHost: reset.test\r\n\r\n");
    match c.read_response() {
        Ok(r) => panic!(
            "an upstream reset after the head must not look like a complete response: {}",
            r.summary()
        ),
        Err(e) => eprintln!("reset after the head: {e}"),
    }
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "the client connection must be closed after a truncated response"
    );
    let r = common::get(proxy.addr, "/name");
    assert_eq!((r.status, r.body_text().as_str()), (200, "reset"));
}

#[test]
fn slow_h2_upstream_gives_504_to_an_http11_client() {
    let up = H2Upstream::start("slow");
    let proxy = h2_proxy(&[up.addr], 1, &["--upstream-response-timeout", "1s"]);
    let mut c = Client::connect(proxy.addr);
    let t = Instant::now();
    let r = c.request("GET /slow/3000 HTTP/1.1\r\nHost: slow.test\r\n\r\n");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.summary());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "504 after {took:?} with --upstream-response-timeout 1s"
    );
    let r = common::get(proxy.addr, "/slow/200");
    assert_eq!((r.status, r.body_text().as_str()), (200, "slow"));
    assert_eq!(up.connections(), 1, "upstream connections");
}

#[test]
fn expect_100_continue_and_pipelined_requests_work_towards_an_h2_cluster() {
    let up = H2Upstream::start("cont");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let mut c = Client::connect(proxy.addr);
    c.send(
        "POST /echo HTTP/1.1\r\nHost: h1.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    // Nothing of the body has been sent: a 100 must come first (read raw: the client's
    // response reader skips interim responses).
    let t = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set read timeout");
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = std::io::Read::read(&mut c.stream, &mut chunk)
            .expect("the proxy should send 100 Continue before the body arrives");
        assert!(n > 0, "connection closed instead of 100 Continue");
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 100") && text.ends_with("\r\n\r\n"),
        "expected 100 Continue alone, got:\n{text}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    c.send("hello");
    let r = c.read_response().expect("the final response");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "hello"),
        "{}",
        r.summary()
    );

    // Three requests in one write: three answers, in order.
    c.send(
        "GET /bytes/10 HTTP/1.1\r\nHost: h1.test\r\n\r\n\
         POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 3\r\n\r\nabc\
         GET /status/404 HTTP/1.1\r\nHost: h1.test\r\n\r\n",
    );
    let r = c.read_response().expect("first pipelined response");
    assert_eq!(
        (r.status, r.body.clone()),
        (200, pattern(10)),
        "{}",
        r.summary()
    );
    let r = c.read_response().expect("second pipelined response");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "abc"),
        "{}",
        r.summary()
    );
    let r = c.read_response().expect("third pipelined response");
    assert_eq!(r.status, 404, "{}", r.summary());
    assert_eq!(up.connections(), 1, "upstream connections (one worker)");
}

#[test]
fn an_http10_client_gets_a_body_ended_by_the_close_when_the_upstream_gave_no_length() {
    let up = H2Upstream::start("old");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let r =
        Client::connect(proxy.addr).request("GET /bytes/5000 HTTP/1.0\r\nHost: h1.test\r\n\r\n");
    assert_eq!(
        (r.status, r.header("content-length"), r.chunked),
        (200, Some("5000"), false),
        "{}",
        r.summary()
    );
    assert!(r.body == pattern(5000), "{}", r.summary());

    let mut c = Client::connect(proxy.addr);
    c.send("GET /bytes-nolen/70000 HTTP/1.0\r\nHost: h1.test\r\n\r\n");
    let r = c.read_response().expect("response to HTTP/1.0");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(
        !r.chunked && r.header("transfer-encoding").is_none(),
        "chunked to an HTTP/1.0 client: {}",
        r.summary()
    );
    assert!(
        r.body == pattern(70000),
        "body ended by the close: {}",
        r.summary()
    );
    let s = up
        .last("/bytes-nolen/")
        .expect("the upstream saw the request");
    assert_eq!(s.authority.as_deref(), Some("h1.test"), "{s:?}");
}

#[test]
fn http11_head_304_and_set_cookie_keep_the_connection_in_step() {
    let up = H2Upstream::start("step");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    let mut c = Client::connect(proxy.addr);
    // HEAD: the GET head (Content-Length of the GET body), no body, no chunk terminator.
    let r = c.request("HEAD /bytes/5000 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.header("content-length"), Some("5000"), "{}", r.summary());
    let r = c.request("HEAD /bytes-nolen/5000 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.summary());
    // 304 without a body.
    let r = c.request("GET /status/304 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(r.status, 304, "{}", r.summary());
    // Two Set-Cookie lines, not one joined.
    let r = c.request("GET /cookies HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    let cookies: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"], "{}", r.summary());
    // Whatever came before, the next answer must be exactly this one.
    let r = c.request("GET /name HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "step"),
        "connection out of step after HEAD/304: {}",
        r.summary()
    );
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("set read timeout");
    let mut extra = [0u8; 64];
    match std::io::Read::read(&mut c.stream, &mut extra) {
        Ok(n) if n > 0 => panic!(
            "stray bytes after the last response: {:?}",
            String::from_utf8_lossy(&extra[..n])
        ),
        _ => {}
    }
}
