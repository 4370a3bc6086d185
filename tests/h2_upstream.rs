//! HTTP/2 towards upstreams (`--upstream-protocol h2`, `protocol = "h2"` on a cluster), end to
//! end: an HTTP/2 client (h2c with prior knowledge, `common::h2`) talks to Ringway, which talks
//! HTTP/2 to an `h2` server (`common::h2_upstream`) over cleartext h2c or TLS with ALPN `h2`.
//!
//! What is checked: the forwarded request as the upstream saw it (`:authority`, `:scheme`,
//! X-Forwarded-For/-Proto, Via, no connection-specific fields); a gRPC-shaped exchange (te:
//! trailers, trailers both ways, a Trailers-Only answer) and a bidirectional one message by
//! message; 8 MiB bodies both ways; 200 concurrent streams multiplexed over one upstream
//! connection per worker, a cold burst opening only one, the upstream's
//! SETTINGS_MAX_CONCURRENT_STREAMS respected, two endpoints with one connection each; a client
//! that stops reading not stalling the shared connection (nor the upstream sending it all);
//! upstream RST_STREAM after the head (that client stream reset, the others go on) and before it
//! (502); an upstream that is down (502), slow (504, its stream reset), silent after the head
//! (reset), dying mid-stream; client resets and closes reaching the upstream; reconnection after
//! the upstream dies, restarts or sends GOAWAY; HEAD, repeated set-cookie, 103; HTTP/2 over TLS
//! to the upstream (ALPN `h2`, SNI, 502 when the upstream does not offer h2 or does not verify);
//! and the `protocol` key of a config file (`--check`, and a file mixing http1 and h2 clusters).
//!
//! Tests that count upstream connections run Ringway with `--workers 1` (one HTTP/2 connection
//! per endpoint per worker).

mod common;

use bytes::Bytes;
use common::h2::{fnv1a, read_response, run, within, Body, H2Response, H2};
use common::h2_upstream::{h2_proxy, H2Upstream, H2UpstreamOpts};
use common::tls::{localhost_site, start_tls_proxy, Ca, TempDir};
use common::{closed_port, pattern, run_to_completion, temp_file, Proxy, Upstream};
use h2::Reason;
use http::Method;
use std::time::{Duration, Instant};

/// Bound of each test's async part.
const LIMIT: Duration = Duration::from_secs(40);

/// A request for `method path` on `h` with the extra `headers`.
fn request(h: &H2, method: Method, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = h.req(method, path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request")
}

/// Opens a stream for `GET path` and reads its response on a task of its own.
async fn spawn_get(
    h: &mut H2,
    path: &str,
) -> tokio::task::JoinHandle<Result<H2Response, common::h2::StreamError>> {
    let req = request(h, Method::GET, path, &[]);
    let resp = h
        .start(req, Body::none())
        .await
        .unwrap_or_else(|e| panic!("open a stream for {path}: {e}"));
    tokio::spawn(read_response(resp))
}

/// `GET path` that must succeed with 200; returns the response.
async fn ok_get(h: &mut H2, path: &str) -> H2Response {
    let r = h.must_get(path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.summary());
    r
}

/// Fields that RFC 9113 §8.2.2 forbids in HTTP/2 (and that a proxy must not forward).
const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

#[test]
fn mock_h2_upstream_answers_an_h2_client_directly() {
    // The mock itself, without Ringway: a baseline for every other test here.
    let up = H2Upstream::start("direct");
    run(LIMIT, async {
        let mut h = H2::h2c(up.addr, "direct.test")
            .await
            .expect("h2c to the mock");
        let r = ok_get(&mut h, "/name").await;
        assert_eq!(r.body_text(), "direct");
        let req = request(&h, Method::POST, "/grpc", &[("te", "trailers")]);
        let r = h
            .exchange(req, Body::with_trailers("abc", &[("x-t", "1")]))
            .await
            .expect("/grpc");
        assert_eq!(
            (r.body_text().as_str(), r.trailer("grpc-status")),
            ("abc", Some("0"))
        );
        let e = h.get("/reset-after-head").await.expect_err("reset");
        assert_eq!((e.status, e.partial_body.len()), (Some(200), 1000), "{e}");
        let e = h.get("/reset-before-head").await.expect_err("reset");
        assert_eq!(e.reason(), Some(Reason::INTERNAL_ERROR), "{e}");
    });
    let s = up.last("/grpc").expect("recorded");
    assert_eq!(
        (s.authority.as_deref(), s.trailer("x-t"), s.body_len),
        (Some("direct.test"), Some("1"), 3)
    );
    assert_eq!(up.connections(), 1);
}

#[test]
fn get_reaches_the_h2_upstream_with_authority_and_forwarding_fields() {
    let up = H2Upstream::start("h2up");
    let proxy = h2_proxy(&[up.addr], 2, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "h2.test")
            .await
            .expect("h2c connection");
        let r = ok_get(&mut h, "/name").await;
        assert_eq!(r.body_text(), "h2up", "{}", r.summary());
        assert_eq!(r.header("x-upstream"), Some("h2up"), "{}", r.summary());

        let req = request(
            &h,
            Method::GET,
            "/headers?x=1&y=two",
            &[("x-custom", "kept"), ("user-agent", "h2-e2e")],
        );
        let r = h.exchange(req, Body::none()).await.expect("GET /headers");
        assert_eq!(r.status, 200, "{}", r.summary());

        let r = h.must_get("/status/404").await;
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (404, "status 404"),
            "{}",
            r.summary()
        );
        let r = h.must_get("/status/204").await;
        assert_eq!((r.status, r.body.len()), (204, 0), "{}", r.summary());
        let r = h.must_get("/status/503").await;
        assert_eq!(
            (r.status, r.header("x-upstream")),
            (503, Some("h2up")),
            "an upstream's 503 is passed on: {}",
            r.summary()
        );
    });
    let s = up.last("/headers").expect("the upstream saw GET /headers");
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        ("GET", "/headers?x=1&y=two"),
        "{s:?}"
    );
    assert_eq!(
        s.authority.as_deref(),
        Some("h2.test"),
        ":authority = the client's: {s:?}"
    );
    assert_eq!(s.scheme.as_deref(), Some("http"), ":scheme over h2c: {s:?}");
    for host in s.fields("host") {
        assert_eq!(
            host, "h2.test",
            "a host field disagreeing with :authority: {s:?}"
        );
    }
    assert_eq!(s.fields("x-forwarded-for"), ["127.0.0.1"], "{s:?}");
    assert_eq!(s.fields("x-forwarded-proto"), ["http"], "{s:?}");
    let via = s.fields("via");
    assert!(
        via.len() == 1 && via[0].contains("ringway"),
        "one Via naming ringway: {s:?}"
    );
    assert_eq!(s.fields("x-custom"), ["kept"], "{s:?}");
    assert_eq!(s.fields("user-agent"), ["h2-e2e"], "{s:?}");
    assert!(s.fields("te").is_empty(), "te sent unasked: {s:?}");
    for f in CONNECTION_SPECIFIC {
        assert!(
            s.fields(f).is_empty(),
            "connection-specific `{f}` forwarded: {s:?}"
        );
    }
    assert_eq!(up.streams(), 5, "streams that reached the upstream");
}

#[test]
fn grpc_shaped_exchange_carries_te_body_and_trailers_both_ways() {
    let up = H2Upstream::start("grpc");
    let proxy = h2_proxy(&[up.addr], 2, &[]);
    // A gRPC message: flag 0, length 5, "hello".
    let mut msg = vec![0u8, 0, 0, 0, 5];
    msg.extend_from_slice(b"hello");
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "grpc.test")
            .await
            .expect("h2c connection");
        let req = request(
            &h,
            Method::POST,
            "/grpc",
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-timeout", "5S"),
            ],
        );
        let body = Body::with_trailers(msg.clone(), &[("x-request-trailer", "yes")]);
        let r = h.exchange(req, body).await.expect("gRPC call");
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(
            r.header("content-type"),
            Some("application/grpc"),
            "{}",
            r.summary()
        );
        assert_eq!(r.body, msg, "gRPC message echoed: {}", r.summary());
        assert_eq!(
            (r.trailer("grpc-status"), r.trailer("grpc-message")),
            (Some("0"), Some("ok")),
            "response trailers: {}",
            r.summary()
        );

        // /echo copies the request trailers into the response trailers.
        let req = request(&h, Method::POST, "/echo", &[]);
        let body = Body::with_trailers("trailing", &[("x-checksum", "abc123")]);
        let r = h
            .exchange(req, body)
            .await
            .expect("POST /echo with trailers");
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "trailing"),
            "{}",
            r.summary()
        );
        assert_eq!(r.trailer("x-checksum"), Some("abc123"), "{}", r.summary());
    });
    let s = up.last("/grpc").expect("the upstream saw /grpc");
    assert_eq!(s.method, "POST", "{s:?}");
    assert_eq!(
        s.fields("te"),
        ["trailers"],
        "te: trailers forwarded: {s:?}"
    );
    assert_eq!(s.fields("content-type"), ["application/grpc"], "{s:?}");
    assert_eq!(s.fields("grpc-timeout"), ["5S"], "{s:?}");
    assert_eq!(
        (s.body_len, s.body_fnv),
        (msg.len(), fnv1a(&msg)),
        "request body: {s:?}"
    );
    assert_eq!(
        s.trailer("x-request-trailer"),
        Some("yes"),
        "request trailers: {s:?}"
    );
    let s = up.last("/echo").expect("the upstream saw /echo");
    assert_eq!(s.trailer("x-checksum"), Some("abc123"), "{s:?}");
}

#[test]
fn grpc_trailers_only_answer_reaches_the_client() {
    // gRPC errors usually come as "Trailers-Only": a single HEADERS frame with END_STREAM
    // carrying grpc-status.
    let up = H2Upstream::start("grpc");
    let proxy = h2_proxy(&[up.addr], 2, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "grpc.test")
            .await
            .expect("h2c connection");
        let req = request(
            &h,
            Method::POST,
            "/grpc-trailers-only",
            &[("content-type", "application/grpc"), ("te", "trailers")],
        );
        let r = h
            .exchange(req, Body::data(vec![0u8, 0, 0, 0, 0]))
            .await
            .expect("gRPC call answered Trailers-Only");
        let status = r.header("grpc-status").or_else(|| r.trailer("grpc-status"));
        let message = r
            .header("grpc-message")
            .or_else(|| r.trailer("grpc-message"));
        assert_eq!(
            (r.status, status, message, r.body.len()),
            (200, Some("12"), Some("unimplemented"), 0),
            "{}",
            r.summary()
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/grpc"),
            "{}",
            r.summary()
        );
    });
}

#[test]
fn eight_mib_bodies_cross_both_ways_intact() {
    const N: usize = 8 << 20;
    let up = H2Upstream::start("big");
    let proxy = h2_proxy(&[up.addr], 2, &[]);
    let data = Bytes::from(pattern(N));
    let want_fnv = fnv1a(&data);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "big.test")
            .await
            .expect("h2c connection");
        // Upload with content-length, echoed back (no content-length on the answer).
        let len = N.to_string();
        let req = request(&h, Method::POST, "/echo", &[("content-length", &len)]);
        let r = h
            .exchange(req, Body::data(data.clone()))
            .await
            .expect("8 MiB echo with content-length");
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.body.len(), N, "echoed length");
        assert!(r.body[..] == data[..], "the echoed 8 MiB body differs");
        assert_eq!(
            (r.header("x-seen-length"), r.header("x-seen-fnv")),
            (
                Some(len.as_str()),
                Some(format!("{want_fnv:016x}").as_str())
            ),
            "what the upstream received"
        );
        // Upload without content-length.
        let req = request(&h, Method::PUT, "/echo", &[]);
        let r = h
            .exchange(req, Body::data(data.clone()))
            .await
            .expect("8 MiB echo without content-length");
        assert_eq!(r.status, 200, "{}", r.summary());
        assert!(
            r.body.len() == N && r.body[..] == data[..],
            "the echoed 8 MiB body differs ({} bytes)",
            r.body.len()
        );
        // Downloads, with and without content-length.
        for path in [format!("/bytes/{N}"), format!("/bytes-nolen/{N}")] {
            let r = h.must_get(&path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.summary());
            assert_eq!(r.body.len(), N, "{path}: body length");
            assert!(r.body[..] == data[..], "{path}: the 8 MiB body differs");
            if path.starts_with("/bytes/") {
                assert_eq!(r.header("content-length"), Some(len.as_str()), "{path}");
            }
        }
    });
    assert!(
        up.finished().contains(&format!("/bytes/{N}")),
        "the upstream's record of finished responses: {:?}",
        up.finished()
    );
    for s in up.seen() {
        if s.method != "GET" {
            assert_eq!(
                (s.body_len, s.body_fnv),
                (N, want_fnv),
                "{} {}: what the upstream received",
                s.method,
                s.path
            );
        }
    }
}

#[test]
fn two_hundred_concurrent_streams_share_one_upstream_connection() {
    const STREAMS: usize = 200;
    let up = H2Upstream::start("mux");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "mux.test")
            .await
            .expect("h2c connection");
        ok_get(&mut h, "/name").await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..STREAMS {
            let (path, body, want) = match i % 3 {
                0 => ("/slow/300".to_owned(), Body::none(), b"slow".to_vec()),
                1 => {
                    let n = i * 37 % 20_000;
                    (format!("/bytes/{n}"), Body::none(), pattern(n))
                }
                _ => {
                    let b = format!("stream {i} body").into_bytes();
                    ("/echo".to_owned(), Body::data(b.clone()), b)
                }
            };
            let method = if path == "/echo" {
                Method::POST
            } else {
                Method::GET
            };
            let req = request(&h, method, &path, &[]);
            let resp = h
                .start(req, body)
                .await
                .unwrap_or_else(|e| panic!("stream {i}: {e}"));
            tasks.spawn(async move { (i, path, want, read_response(resp).await) });
        }
        let mut ok = 0;
        while let Some(done) = tasks.join_next().await {
            let (i, path, want, r) = done.expect("stream task");
            let r = r.unwrap_or_else(|e| panic!("stream {i} ({path}): {e}"));
            assert_eq!(r.status, 200, "stream {i} ({path}): {}", r.summary());
            assert!(
                r.body == want,
                "stream {i} ({path}): wrong body: {}",
                r.summary()
            );
            ok += 1;
        }
        assert_eq!(ok, STREAMS);
    });
    assert_eq!(
        up.streams(),
        STREAMS + 1,
        "streams that reached the upstream"
    );
    assert_eq!(
        up.connections(),
        1,
        "one worker must multiplex every stream over ONE upstream HTTP/2 connection"
    );
    assert!(
        up.max_in_flight() >= 16,
        "at most {} streams were in flight upstream at once: the streams were not multiplexed",
        up.max_in_flight()
    );
}

#[test]
fn the_upstreams_max_concurrent_streams_is_respected_on_one_connection() {
    const STREAMS: usize = 200;
    const UPSTREAM_LIMIT: u32 = 20;
    let up = H2Upstream::start_with(
        "limited",
        H2UpstreamOpts {
            max_concurrent_streams: Some(UPSTREAM_LIMIT),
            ..H2UpstreamOpts::default()
        },
    );
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "limited.test")
            .await
            .expect("h2c connection");
        ok_get(&mut h, "/name").await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..STREAMS {
            let req = request(&h, Method::GET, "/slow/50", &[]);
            let resp = h
                .start(req, Body::none())
                .await
                .unwrap_or_else(|e| panic!("stream {i}: {e}"));
            tasks.spawn(async move { (i, read_response(resp).await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, r) = done.expect("stream task");
            let r = r.unwrap_or_else(|e| panic!("stream {i}: {e}"));
            assert_eq!(
                (r.status, r.body_text().as_str()),
                (200, "slow"),
                "stream {i} with the upstream at SETTINGS_MAX_CONCURRENT_STREAMS = \
                 {UPSTREAM_LIMIT}: {}",
                r.summary()
            );
        }
    });
    assert_eq!(up.streams(), STREAMS + 1);
    assert!(
        up.max_in_flight() <= UPSTREAM_LIMIT as usize,
        "{} streams in flight upstream at once, over its limit of {UPSTREAM_LIMIT}",
        up.max_in_flight()
    );
    assert_eq!(
        up.connections(),
        1,
        "streams beyond the upstream's limit must wait for the one connection, not open more"
    );
}

#[test]
fn upstream_reset_after_the_head_resets_only_that_client_stream() {
    let up = H2Upstream::start("reset");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "reset.test")
            .await
            .expect("h2c connection");
        let mut others = Vec::new();
        for path in ["/slow/600", "/bytes/300000", "/slow/900"] {
            others.push((path, spawn_get(&mut h, path).await));
        }
        let err = h
            .get("/reset-after-head")
            .await
            .expect_err("an upstream RST_STREAM after the head must not end the stream cleanly");
        assert_eq!(err.status, Some(200), "the head had been forwarded: {err}");
        assert!(err.partial_body.len() <= 1000, "{err}");
        assert!(
            err.partial_body == pattern(err.partial_body.len()),
            "partial body: {err}"
        );
        assert!(
            err.error.is_reset() && err.error.is_remote(),
            "want RST_STREAM from the proxy on that stream, got: {err}"
        );
        assert_eq!(
            err.reason(),
            Some(Reason::INTERNAL_ERROR),
            "reset code: {err}"
        );
        for (path, t) in others {
            let r = t
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("{path} beside the reset stream: {e}"));
            assert_eq!(r.status, 200, "{path}: {}", r.summary());
        }
        assert_eq!(
            ok_get(&mut h, "/name").await.body_text(),
            "reset",
            "client connection still usable"
        );
    });
    assert_eq!(
        up.connections(),
        1,
        "one upstream stream's reset must not cost the shared upstream connection"
    );
}

#[test]
fn upstream_reset_before_the_head_gives_502() {
    let up = H2Upstream::start("refuse");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "refuse.test")
            .await
            .expect("h2c connection");
        let beside = spawn_get(&mut h, "/slow/500").await;
        for path in ["/reset-before-head", "/refuse-stream"] {
            let r = h
                .get(path)
                .await
                .unwrap_or_else(|e| panic!("{path}: want a 502 response, got: {e}"));
            assert_eq!(r.status, 502, "{path}: {}", r.summary());
            assert!(r.header("x-upstream").is_none(), "{path}: {}", r.summary());
        }
        let r = beside
            .await
            .expect("task")
            .expect("the stream beside the 502s");
        assert_eq!((r.status, r.body_text().as_str()), (200, "slow"));
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "refuse");
    });
    assert_eq!(
        up.connections(),
        1,
        "an upstream stream reset must not cost the shared upstream connection"
    );
}

#[test]
fn upstream_down_gives_502() {
    let down = closed_port();
    let proxy = h2_proxy(&[down], 2, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "down.test")
            .await
            .expect("h2c connection");
        for i in 0..3 {
            let t = Instant::now();
            let r = h
                .get("/name")
                .await
                .unwrap_or_else(|e| panic!("request {i}: want a 502 response, got: {e}"));
            assert_eq!(r.status, 502, "request {i}: {}", r.summary());
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "a refused connection took {:?}",
                t.elapsed()
            );
        }
        // A POST with a body too.
        let req = request(&h, Method::POST, "/echo", &[]);
        let r = h
            .exchange(req, Body::data("x".repeat(1000)))
            .await
            .expect("a 502 response to a POST");
        assert_eq!(r.status, 502, "{}", r.summary());
    });
}

#[test]
fn slow_upstream_gives_504_without_disturbing_the_other_streams() {
    let up = H2Upstream::start("slow");
    let proxy = h2_proxy(&[up.addr], 1, &["--upstream-response-timeout", "1s"]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "slow.test")
            .await
            .expect("h2c connection");
        ok_get(&mut h, "/name").await;
        let beside = spawn_get(&mut h, "/slow/300").await;
        let t = Instant::now();
        let r = h
            .get("/slow/3000")
            .await
            .expect("a timeout is a response, not a reset");
        let took = t.elapsed();
        assert_eq!(r.status, 504, "{}", r.summary());
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
            "504 after {took:?} with --upstream-response-timeout 1s"
        );
        let r = beside
            .await
            .expect("task")
            .expect("the stream beside the 504");
        assert_eq!((r.status, r.body_text().as_str()), (200, "slow"));
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "slow");
    });
    assert_eq!(
        up.connections(),
        1,
        "a timed-out stream must not cost the shared upstream connection"
    );
}

#[test]
fn a_timed_out_stream_is_reset_upstream() {
    let up = H2Upstream::start("cancel");
    let proxy = h2_proxy(&[up.addr], 1, &["--upstream-response-timeout", "1s"]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "cancel.test")
            .await
            .expect("h2c connection");
        // The proxy gives up after 1 s: the upstream stream should be reset, not left open.
        let r = h.must_get("/slow/5000").await;
        assert_eq!(r.status, 504, "{}", r.summary());
        let t = Instant::now();
        while up.resets().is_empty() && t.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let resets = up.resets();
        assert!(
            resets.iter().any(|(p, _)| p == "/slow/5000"),
            "no RST_STREAM upstream for the stream that timed out (resets seen: {resets:?}; \
             streams ended by the connection closing: {:?})",
            up.lost()
        );
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "cancel");
    });
    assert_eq!(up.connections(), 1, "upstream connections");
}

/// Waits up to 2 s (far less than the default upstream response timeout) for a RST_STREAM
/// upstream on the stream of `path`; panics naming `what` if none comes.
async fn expect_upstream_reset(up: &H2Upstream, path: &str, what: &str) {
    let t = Instant::now();
    while !up.resets().iter().any(|(p, _)| p == path) && t.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resets = up.resets();
    assert!(
        resets.iter().any(|(p, _)| p == path),
        "{what}: no RST_STREAM reached the upstream's {path} stream within 2 s (resets seen: \
         {resets:?}; streams ended by the connection closing: {:?})",
        up.lost()
    );
}

/// Opens `method path` on `h` (END_STREAM on the HEADERS when `end`), waits until the
/// upstream has the stream, and returns the client's handles.
async fn open_and_wait(
    h: &H2,
    up: &H2Upstream,
    method: Method,
    path: &str,
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let req = request(h, method, path, &[]);
    let mut send = h.send.clone().ready().await.expect("a stream slot");
    let before = up.streams();
    let pair = send.send_request(req, end).expect("open the stream");
    let t = Instant::now();
    while up.streams() == before && t.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(up.streams() > before, "{path} never reached the upstream");
    tokio::time::sleep(Duration::from_millis(100)).await;
    pair
}

#[test]
fn a_client_reset_before_the_response_head_reaches_the_upstream() {
    // A unary call (request ended) cancelled by the client, e.g. at its deadline, while the
    // upstream is still working on it: the upstream must hear of it.
    let up = H2Upstream::start("cancel");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "cancel.test")
            .await
            .expect("h2c connection");
        let (resp, mut stream) = open_and_wait(&h, &up, Method::GET, "/slow/8000", true).await;
        stream.send_reset(Reason::CANCEL);
        drop(resp);
        expect_upstream_reset(
            &up,
            "/slow/8000",
            "client RST_STREAM(CANCEL) before the head",
        )
        .await;
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "cancel");
    });
    assert_eq!(up.connections(), 1, "upstream connections");
}

#[test]
fn a_client_reset_while_the_request_body_is_open_reaches_the_upstream() {
    // A streaming call: request body still open, no response head yet.
    let up = H2Upstream::start("cancel");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "cancel.test")
            .await
            .expect("h2c connection");
        let (resp, mut stream) = open_and_wait(&h, &up, Method::POST, "/slow/8000", false).await;
        stream
            .send_data(Bytes::from_static(b"part"), false)
            .expect("send a piece of the body");
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.send_reset(Reason::CANCEL);
        drop(resp);
        // /slow/MS reads the request body first: the reset shows up as its body's error.
        let t = Instant::now();
        while up.last("/slow/8000").is_none() && t.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = up.last("/slow/8000");
        assert!(
            s.as_ref().is_some_and(|s| s.body_error.is_some()),
            "client RST_STREAM with the request body open: the upstream's stream did not end \
             in an error within 2 s: {s:?}"
        );
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "cancel");
    });
    assert_eq!(up.connections(), 1, "upstream connections");
}

#[test]
fn a_client_reset_after_the_response_head_reaches_the_upstream() {
    // A server-streaming call the client cancels while the upstream is between messages.
    let up = H2Upstream::start("cancel");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "cancel.test")
            .await
            .expect("h2c connection");
        let (resp, mut stream) =
            open_and_wait(&h, &up, Method::GET, "/head-then-wait/8000", true).await;
        let resp = within(Duration::from_secs(5), "the response head", resp)
            .await
            .expect("response head");
        assert_eq!(resp.status(), 200);
        stream.send_reset(Reason::CANCEL);
        drop(resp);
        expect_upstream_reset(
            &up,
            "/head-then-wait/8000",
            "client RST_STREAM(CANCEL) after the head",
        )
        .await;
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "cancel");
    });
    assert_eq!(up.connections(), 1, "upstream connections");
}

#[test]
fn requests_work_again_after_the_upstream_restarts() {
    let mut up = H2Upstream::start("first");
    let addr = up.addr;
    let proxy = h2_proxy(&[addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "restart.test")
            .await
            .expect("h2c connection");
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "first");

        // Killed: the connection is gone and nothing listens.
        up.stop();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = h
            .get("/name")
            .await
            .expect("an upstream that is down gets a 502 response, not a reset");
        assert_eq!(r.status, 502, "upstream down: {}", r.summary());

        // A new server on the same port.
        let second = H2Upstream::start_with(
            "second",
            H2UpstreamOpts {
                addr: Some(addr),
                ..H2UpstreamOpts::default()
            },
        );
        let t = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let r = h.must_get("/name").await;
            if r.status == 200 {
                assert_eq!(r.body_text(), "second", "{}", r.summary());
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "still {} five seconds after the upstream came back: {}",
                r.status,
                r.summary()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "first 200 after the restart: attempt {attempts}, {:?}",
            t.elapsed()
        );
        for i in 0..10 {
            let r = h.must_get("/name").await;
            assert_eq!(
                (r.status, r.body_text().as_str()),
                (200, "second"),
                "request {i} after the restart: {}",
                r.summary()
            );
        }
        assert_eq!(
            second.connections(),
            1,
            "connections to the restarted upstream"
        );
    });
}

#[test]
fn a_dead_upstream_connection_is_replaced_before_the_next_request() {
    // The upstream is killed and back on the same port before any request needs it: the
    // request after that must not be sent on the dead connection.
    let mut up = H2Upstream::start("first");
    let addr = up.addr;
    let proxy = h2_proxy(&[addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "replace.test")
            .await
            .expect("h2c connection");
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "first");
        up.stop();
        let second = H2Upstream::start_with(
            "second",
            H2UpstreamOpts {
                addr: Some(addr),
                ..H2UpstreamOpts::default()
            },
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = h.must_get("/name").await;
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "second"),
            "the first request after the upstream connection died: {}",
            r.summary()
        );
        for _ in 0..5 {
            assert_eq!(ok_get(&mut h, "/name").await.body_text(), "second");
        }
        assert_eq!(second.connections(), 1, "connections to the new upstream");
    });
}

#[test]
fn upstream_goaway_lets_the_stream_finish_and_moves_new_streams_to_a_new_connection() {
    let up = H2Upstream::start("goaway");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "goaway.test")
            .await
            .expect("h2c connection");
        ok_get(&mut h, "/name").await;
        let in_flight = spawn_get(&mut h, "/slow/800").await;
        let t = Instant::now();
        while up.streams() < 2 && t.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        up.goaway_all();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..5 {
            let r = h.must_get("/name").await;
            assert_eq!(
                (r.status, r.body_text().as_str()),
                (200, "goaway"),
                "request {i} after the upstream's GOAWAY: {}",
                r.summary()
            );
        }
        let r = in_flight
            .await
            .expect("task")
            .expect("the stream in flight when the upstream sent GOAWAY");
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "slow"),
            "{}",
            r.summary()
        );
    });
    assert_eq!(
        up.connections(),
        2,
        "after a GOAWAY new streams need one new upstream connection"
    );
}

#[test]
fn tls_upstream_speaks_h2_with_alpn() {
    let dir = TempDir::new("h2-upstream-tls");
    let internal = Ca::new("Internal CA");
    let ca_pem = dir.write("internal-ca.pem", &internal.pem);
    let up = H2Upstream::start_tls(
        "secure",
        internal.server("upstream.test", &["upstream.test"]),
    );
    let proxy = h2_proxy(
        &[up.addr],
        1,
        &[
            "--upstream-tls",
            "--upstream-ca",
            &ca_pem,
            "--upstream-server-name",
            "upstream.test",
        ],
    );
    let mut msg = vec![0u8, 0, 0, 0, 3];
    msg.extend_from_slice(b"tls");
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "tls.test")
            .await
            .expect("h2c connection");
        for i in 0..5 {
            let r = h.must_get(&format!("/name?{i}")).await;
            assert_eq!(
                (r.status, r.body_text().as_str()),
                (200, "secure"),
                "request {i}: {}",
                r.summary()
            );
        }
        let req = request(
            &h,
            Method::POST,
            "/grpc",
            &[("content-type", "application/grpc"), ("te", "trailers")],
        );
        let r = h
            .exchange(req, Body::data(msg.clone()))
            .await
            .expect("gRPC over TLS");
        assert_eq!(
            (r.status, r.body.clone(), r.trailer("grpc-status")),
            (200, msg.clone(), Some("0")),
            "{}",
            r.summary()
        );
        let r = h.must_get("/bytes/1000000").await;
        assert!(
            r.body == pattern(1_000_000),
            "1 MB over TLS: {}",
            r.summary()
        );
    });
    let hs = up.handshakes();
    assert_eq!(hs.len(), 1, "one TLS connection for one worker: {hs:?}");
    assert_eq!(hs[0].alpn.as_deref(), Some("h2"), "ALPN: {hs:?}");
    assert_eq!(hs[0].sni.as_deref(), Some("upstream.test"), "SNI: {hs:?}");
    let s = up.last("/grpc").expect("the upstream saw /grpc");
    assert_eq!(s.authority.as_deref(), Some("tls.test"), "{s:?}");
    assert_eq!(s.fields("te"), ["trailers"], "{s:?}");
    eprintln!(":scheme towards the TLS upstream: {:?}", s.scheme);
    assert!(
        matches!(s.scheme.as_deref(), Some("http" | "https")),
        ":scheme {:?}",
        s.scheme
    );
}

#[test]
fn tls_on_both_sides_with_an_h2_client_and_an_h2_upstream() {
    let dir = TempDir::new("h2-both-tls");
    let (client_ca, site) = localhost_site(&dir);
    let internal = Ca::new("Internal CA");
    let ca_pem = dir.write("internal-ca.pem", &internal.pem);
    let up = H2Upstream::start_tls(
        "secure",
        internal.server("upstream.test", &["upstream.test"]),
    );
    let (_proxy, tls_addr) = start_tls_proxy(
        &[up.addr],
        &[&site],
        &[
            "--upstream-protocol",
            "h2",
            "--upstream-tls",
            "--upstream-ca",
            &ca_pem,
            "--upstream-server-name",
            "upstream.test",
        ],
    );
    run(LIMIT, async {
        let mut h = common::h2::h2_tls(tls_addr, "localhost", &client_ca.pem)
            .await
            .expect("h2 over TLS to the proxy");
        let req = request(
            &h,
            Method::POST,
            "/echo",
            &[("content-type", "application/octet-stream")],
        );
        let r = h
            .exchange(req, Body::with_trailers("both", &[("x-t", "v")]))
            .await
            .expect("POST /echo");
        assert_eq!(
            (r.status, r.body_text().as_str(), r.trailer("x-t")),
            (200, "both", Some("v")),
            "{}",
            r.summary()
        );
    });
    let s = up.last("/echo").expect("the upstream saw /echo");
    assert_eq!(s.fields("x-forwarded-proto"), ["https"], "{s:?}");
    assert_eq!(s.authority.as_deref(), Some("localhost"), "{s:?}");
    assert!(
        up.handshakes()
            .iter()
            .all(|h| h.alpn.as_deref() == Some("h2")),
        "{:?}",
        up.handshakes()
    );
}

#[test]
fn tls_upstream_that_does_not_offer_h2_gives_502() {
    let dir = TempDir::new("h2-upstream-no-alpn");
    let internal = Ca::new("Internal CA");
    let ca_pem = dir.write("internal-ca.pem", &internal.pem);
    let up = H2Upstream::start_with(
        "http1-only",
        H2UpstreamOpts {
            tls: Some(internal.server("upstream.test", &["upstream.test"])),
            alpn: Some(vec!["http/1.1".into()]),
            ..H2UpstreamOpts::default()
        },
    );
    let proxy = h2_proxy(
        &[up.addr],
        1,
        &[
            "--upstream-tls",
            "--upstream-ca",
            &ca_pem,
            "--upstream-server-name",
            "upstream.test",
        ],
    );
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "noalpn.test")
            .await
            .expect("h2c connection");
        let r = h
            .get("/name")
            .await
            .expect("a failed upstream handshake is a response, not a reset");
        assert_eq!(r.status, 502, "{}", r.summary());
    });
    assert_eq!(
        up.streams(),
        0,
        "no request may reach an upstream that refused h2"
    );
}

#[test]
fn config_file_protocol_key_is_checked() {
    let file = |protocol: &str| {
        format!(
            "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n\
             [[routes]]\ncluster = \"grpc\"\n\n\
             [[clusters]]\nname = \"grpc\"\nprotocol = \"{protocol}\"\n\
             endpoints = [{{ addr = \"127.0.0.1:9001\" }}]\n"
        )
    };
    for good in ["h2", "http1"] {
        let path = temp_file("protocol.toml", &file(good));
        let out = run_to_completion(&["--check", "--config", path.to_str().expect("utf-8")]);
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            out.status.code(),
            Some(0),
            "protocol = \"{good}\" rejected: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = temp_file("protocol-h3.toml", &file("h3"));
    let out = run_to_completion(&["--check", "--config", path.to_str().expect("utf-8")]);
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "protocol = \"h3\": {out:?}");
    assert!(
        stderr.contains("clusters[0].protocol"),
        "the message does not name the key: {stderr}"
    );

    // With TLS to the cluster, too.
    let dir = TempDir::new("protocol-tls");
    let ca = Ca::new("Check CA");
    let ca_pem = dir.write("ca.pem", &ca.pem);
    let text = format!(
        "{}\n[clusters.tls]\nca = \"{ca_pem}\"\nserver_name = \"upstream.test\"\n",
        file("h2")
    );
    let path = temp_file("protocol-tls.toml", &text);
    let out = run_to_completion(&["--check", "--config", path.to_str().expect("utf-8")]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "protocol = \"h2\" with [clusters.tls] rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_file_with_an_http1_and_an_h2_cluster_routes_to_both() {
    let h1 = Upstream::start("h1-cluster");
    let h2up = H2Upstream::start("h2-cluster");
    let config = format!(
        "[server]\nworkers = 1\n\n\
         [[clusters]]\nname = \"web\"\nendpoints = [{{ addr = \"{h1}\" }}]\n\n\
         [[clusters]]\nname = \"grpc\"\nprotocol = \"h2\"\nendpoints = [{{ addr = \"{h2}\" }}]\n\n\
         [[routes]]\npath_prefix = \"/svc.\"\ncluster = \"grpc\"\n\n\
         [[routes]]\ncluster = \"web\"\n",
        h1 = h1.addr,
        h2 = h2up.addr
    );
    let path = temp_file("mixed.toml", &config);
    let path_arg = path.to_str().expect("utf-8 path").to_owned();
    let proxy = Proxy::start(&[], &["--config", &path_arg]);
    let _ = std::fs::remove_file(&path);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "mixed.test")
            .await
            .expect("h2c connection");
        let r = ok_get(&mut h, "/name").await;
        assert_eq!(
            r.header("x-upstream"),
            Some("h1-cluster"),
            "{}",
            r.summary()
        );
        let req = request(
            &h,
            Method::POST,
            "/svc.Greeter/SayHello",
            &[("content-type", "application/grpc"), ("te", "trailers")],
        );
        let r = h
            .exchange(req, Body::data(vec![0u8, 0, 0, 0, 0]))
            .await
            .expect("gRPC-shaped call to the h2 cluster");
        assert_eq!(
            (r.status, r.header("x-upstream")),
            (200, Some("h2-cluster")),
            "{}",
            r.summary()
        );
        let mut c = common::Client::connect(proxy.addr);
        let r = c.request("GET /name HTTP/1.1\r\nHost: mixed.test\r\n\r\n");
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "h1-cluster"),
            "{}",
            r.summary()
        );
    });
    let s = h2up.last("/svc.").expect("the h2 cluster saw the call");
    assert_eq!(
        (s.method.as_str(), s.authority.as_deref()),
        ("POST", Some("mixed.test")),
        "{s:?}"
    );
    assert_eq!(h1.requests(), 2, "requests to the http1 cluster");
}

#[test]
fn grpc_bidi_streaming_crosses_the_proxy_message_by_message() {
    // The upstream answers the head at once and echoes each DATA frame as it comes: the client
    // sends a message and waits for its echo before sending the next, as a bidirectional gRPC
    // call does. A proxy that waited for the request's end before forwarding the response
    // (or buffered either direction) would stall here.
    let up = H2Upstream::start("bidi");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let h = H2::h2c(proxy.addr, "bidi.test")
            .await
            .expect("h2c connection");
        let req = request(
            &h,
            Method::POST,
            "/stream-echo",
            &[("content-type", "application/grpc"), ("te", "trailers")],
        );
        let mut send = h.send.clone().ready().await.expect("a stream slot");
        let (resp, mut stream) = send.send_request(req, false).expect("open the stream");
        let resp = within(
            Duration::from_secs(5),
            "the response head while the request body is still open",
            resp,
        )
        .await
        .expect("response head");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        for i in 0..5 {
            let text = format!("ping {i}");
            let mut msg = vec![0u8, 0, 0, 0, text.len() as u8];
            msg.extend_from_slice(text.as_bytes());
            stream
                .send_data(Bytes::from(msg.clone()), false)
                .expect("send a message");
            let mut got = Vec::new();
            while got.len() < msg.len() {
                let chunk = within(
                    Duration::from_secs(5),
                    &format!("the echo of message {i} (request body still open)"),
                    body.data(),
                )
                .await
                .unwrap_or_else(|| panic!("response ended before the echo of message {i}"))
                .unwrap_or_else(|e| panic!("echo of message {i}: {e}"));
                let _ = body.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got, msg, "echo of message {i}");
        }
        stream
            .send_data(Bytes::new(), true)
            .expect("end the request");
        assert!(
            within(Duration::from_secs(5), "the response's end", body.data())
                .await
                .is_none(),
            "no more data after the request ended"
        );
        let trailers = within(Duration::from_secs(5), "trailers", body.trailers())
            .await
            .expect("trailers")
            .expect("a trailer section");
        assert_eq!(
            trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
            Some("0"),
            "{trailers:?}"
        );
    });
    let s = up.last("/stream-echo").expect("the upstream saw the call");
    assert_eq!(
        (s.body_len, s.body_error.as_deref()),
        (5 * 11, None),
        "{s:?}"
    );
}

#[test]
fn a_stalled_client_stream_does_not_stall_the_shared_upstream_connection() {
    // Client A asks for 8 MiB and never reads: its window, Ringway's send buffer and that
    // upstream stream's window fill up. Client B's streams go over the same upstream
    // connection (one worker) and must not wait for A.
    let up = H2Upstream::start("stall");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut a = H2::h2c(proxy.addr, "stall.test").await.expect("client A");
        let req = request(&a, Method::GET, &format!("/bytes/{}", 8 << 20), &[]);
        let resp = a.start(req, Body::none()).await.expect("A's stream");
        let resp = within(Duration::from_secs(5), "A's response head", resp)
            .await
            .expect("A's response head");
        assert_eq!(resp.status(), 200);
        let _unread = resp.into_body();
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut b = H2::h2c(proxy.addr, "stall.test").await.expect("client B");
        for i in 0..3 {
            let r = within(
                Duration::from_secs(5),
                &format!("B's request {i} while A's stream is stalled"),
                b.get("/bytes/300000"),
            )
            .await
            .unwrap_or_else(|e| panic!("B's request {i}: {e}"));
            assert_eq!(r.status, 200, "{}", r.summary());
            assert!(r.body == pattern(300_000), "B's request {i}: body differs");
        }
        // Flow control, not memory, holds A's response: the upstream cannot have sent all of
        // it to a client that reads nothing.
        let big = format!("/bytes/{}", 8 << 20);
        assert!(
            !up.finished().contains(&big),
            "the upstream sent all 8 MiB for a client that read none of it: Ringway buffers \
             upstream responses without bound"
        );
    });
    assert_eq!(up.connections(), 1, "upstream connections (one worker)");
}

/// One client opens many large downloads and reads none of them. Each such stream pins its
/// upstream stream window in the shared upstream connection's window; once enough of them do,
/// nothing more can arrive on that connection for anybody. One client must not be able to stall
/// every other client's traffic to the endpoint.
#[test]
fn many_stalled_streams_of_one_client_do_not_stall_the_shared_upstream_connection() {
    const STALLED: usize = 64;
    let up = H2Upstream::start("stall");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut a = H2::h2c(proxy.addr, "stall.test").await.expect("client A");
        let mut unread = Vec::new();
        for i in 0..STALLED {
            let req = request(&a, Method::GET, "/bytes/1048576", &[]);
            let resp = a
                .start(req, Body::none())
                .await
                .unwrap_or_else(|e| panic!("A's stream {i}: {e}"));
            unread.push(resp);
        }
        let t = Instant::now();
        while up.streams() < STALLED && t.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            up.streams(),
            STALLED,
            "A's streams that reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut b = H2::h2c(proxy.addr, "stall.test").await.expect("client B");
        for i in 0..3 {
            let r = within(
                Duration::from_secs(5),
                &format!(
                    "B's request {i} while client A leaves {STALLED} 1 MiB downloads unread \
                     (same worker, same upstream connection)"
                ),
                b.get("/bytes/100000"),
            )
            .await
            .unwrap_or_else(|e| panic!("B's request {i}: {e}"));
            assert_eq!(r.status, 200, "{}", r.summary());
            assert!(r.body == pattern(100_000), "B's request {i}: body differs");
        }
        drop(unread);
    });
}

#[test]
fn closing_the_client_connection_resets_its_upstream_streams() {
    let up = H2Upstream::start("gone");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "gone.test")
            .await
            .expect("h2c connection");
        let mut pending = Vec::new();
        for _ in 0..3 {
            pending.push(spawn_get(&mut h, "/slow/8000").await);
        }
        let t = Instant::now();
        while up.streams() < 3 && t.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(up.streams(), 3, "streams that reached the upstream");
        drop(h);
        for p in pending {
            p.abort();
        }
        let t = Instant::now();
        while up.resets().len() < 3 && t.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            up.resets().len(),
            3,
            "RST_STREAMs upstream after the client connection closed with 3 streams open \
             (resets {:?}, ended by the connection closing {:?})",
            up.resets(),
            up.lost()
        );
        let mut h = H2::h2c(proxy.addr, "gone.test")
            .await
            .expect("a new connection");
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "gone");
    });
    assert_eq!(up.connections(), 1, "upstream connections (one worker)");
}

#[test]
fn upstream_dying_gives_502_before_the_head_and_a_reset_after_it() {
    let mut up = H2Upstream::start("dying");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "dying.test")
            .await
            .expect("h2c connection");
        let before = spawn_get(&mut h, "/slow/5000").await;
        let after = spawn_get(&mut h, "/head-then-wait/5000").await;
        let t = Instant::now();
        while up.streams() < 2 && t.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(up.streams(), 2, "streams that reached the upstream");
        tokio::time::sleep(Duration::from_millis(200)).await;
        up.stop();
        let r = within(Duration::from_secs(5), "the stream without a head", before)
            .await
            .expect("task")
            .expect("an upstream that died before the head is a 502 response, not a reset");
        assert_eq!(r.status, 502, "{}", r.summary());
        let e = within(Duration::from_secs(5), "the stream with a head", after)
            .await
            .expect("task")
            .expect_err("an upstream that died after the head must not end the stream cleanly");
        assert_eq!(e.status, Some(200), "{e}");
        assert!(
            e.partial_body.len() <= 1000 && e.partial_body == pattern(e.partial_body.len()),
            "{e}"
        );
        assert!(
            e.error.is_reset() && e.error.is_remote(),
            "want RST_STREAM from the proxy, got: {e}"
        );
        eprintln!("reset code after the upstream died: {:?}", e.reason());
    });
}

#[test]
fn an_upstream_silent_after_the_head_beyond_the_response_timeout_resets_the_stream() {
    // --upstream-response-timeout also bounds the wait between reads once the head is in.
    let up = H2Upstream::start("idle");
    let proxy = h2_proxy(&[up.addr], 1, &["--upstream-response-timeout", "1s"]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "idle.test")
            .await
            .expect("h2c connection");
        let t = Instant::now();
        let e = h
            .get("/head-then-wait/6000")
            .await
            .expect_err("a body idle past the response timeout must not end cleanly");
        let took = t.elapsed();
        assert_eq!(e.status, Some(200), "{e}");
        assert!(e.error.is_reset() && e.error.is_remote(), "{e}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(4000),
            "reset after {took:?} with --upstream-response-timeout 1s"
        );
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "idle");
    });
    assert!(
        up.wait_resets(1, Duration::from_secs(3)),
        "the idle upstream stream was not reset (lost: {:?})",
        up.lost()
    );
}

#[test]
fn a_cold_burst_of_streams_opens_one_upstream_connection() {
    const STREAMS: usize = 60;
    let up = H2Upstream::start("burst");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "burst.test")
            .await
            .expect("h2c connection");
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            tasks.push(spawn_get(&mut h, "/slow/100").await);
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let r = t
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("stream {i}: {e}"));
            assert_eq!(r.status, 200, "stream {i}: {}", r.summary());
        }
    });
    assert_eq!(
        up.connections(),
        1,
        "{STREAMS} streams arriving before any upstream connection existed"
    );
}

#[test]
fn two_h2_endpoints_share_the_streams_with_one_connection_each() {
    let a = H2Upstream::start("a");
    let b = H2Upstream::start("b");
    let proxy = h2_proxy(&[a.addr, b.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "two.test")
            .await
            .expect("h2c connection");
        for i in 0..20 {
            let r = ok_get(&mut h, "/name").await;
            assert!(
                matches!(r.body_text().as_str(), "a" | "b"),
                "request {i}: {}",
                r.summary()
            );
        }
    });
    assert_eq!(a.streams() + b.streams(), 20);
    assert!(
        a.streams() >= 5 && b.streams() >= 5,
        "round robin: a {} b {}",
        a.streams(),
        b.streams()
    );
    assert_eq!(
        (a.connections(), b.connections()),
        (1, 1),
        "one connection per endpoint (one worker)"
    );
}

#[test]
fn an_interim_103_from_the_upstream_does_not_break_the_response() {
    let up = H2Upstream::start("hints");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "hints.test")
            .await
            .expect("h2c connection");
        let r = h.must_get("/early-hints").await;
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "hinted"),
            "{}",
            r.summary()
        );
        assert_eq!(ok_get(&mut h, "/name").await.body_text(), "hints");
    });
}

#[test]
fn head_requests_repeated_set_cookie_and_concurrent_uploads() {
    const UPLOADS: usize = 50;
    const SIZE: usize = 200_000;
    let up = H2Upstream::start("misc");
    let proxy = h2_proxy(&[up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "misc.test")
            .await
            .expect("h2c connection");
        let req = request(&h, Method::HEAD, "/bytes/5000", &[]);
        let r = h.exchange(req, Body::none()).await.expect("HEAD");
        assert_eq!(
            (r.status, r.header("content-length"), r.body.len()),
            (200, Some("5000"), 0),
            "{}",
            r.summary()
        );
        let r = ok_get(&mut h, "/cookies").await;
        let cookies: Vec<_> = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            cookies,
            ["a=1; Path=/", "b=2; Path=/"],
            "set-cookie fields kept apart: {}",
            r.summary()
        );

        // Uploads and downloads at once on the one upstream connection.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..UPLOADS {
            let data: Vec<u8> = pattern(SIZE + i).into_iter().rev().collect();
            let req = request(&h, Method::POST, "/echo", &[]);
            let resp = h
                .start(req, Body::data(data.clone()))
                .await
                .unwrap_or_else(|e| panic!("upload {i}: {e}"));
            tasks.spawn(async move { (i, data, read_response(resp).await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, data, r) = done.expect("task");
            let r = r.unwrap_or_else(|e| panic!("upload {i}: {e}"));
            assert_eq!(r.status, 200, "upload {i}: {}", r.summary());
            assert!(r.body == data, "upload {i}: echoed body differs");
        }
    });
    assert_eq!(up.connections(), 1, "upstream connections (one worker)");
}

#[test]
fn a_tls_upstream_whose_certificate_does_not_verify_gets_502() {
    let dir = TempDir::new("h2-upstream-bad-ca");
    let trusted = Ca::new("Trusted CA");
    let other = Ca::new("Other CA");
    let ca_pem = dir.write("trusted-ca.pem", &trusted.pem);
    let up = H2Upstream::start_tls(
        "untrusted",
        other.server("upstream.test", &["upstream.test"]),
    );
    let proxy = h2_proxy(
        &[up.addr],
        1,
        &[
            "--upstream-tls",
            "--upstream-ca",
            &ca_pem,
            "--upstream-server-name",
            "upstream.test",
        ],
    );
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "badca.test")
            .await
            .expect("h2c connection");
        let r = h
            .get("/name")
            .await
            .expect("an unverifiable upstream is a response, not a reset");
        assert_eq!(r.status, 502, "{}", r.summary());
    });
    assert_eq!(
        up.streams(),
        0,
        "no request may reach an unverified upstream"
    );
}

/// An HTTP/2 cluster whose first endpoint refuses connections: every stream is moved to the
/// live endpoint (a connect failure is retried on another endpoint, nothing having been sent),
/// so the client sees no 502, and the refusing endpoint is counted as failing.
#[test]
fn a_refusing_h2_endpoint_is_skipped_by_retrying_elsewhere() {
    let up = H2Upstream::start("alive");
    let dead = closed_port();
    let proxy = h2_proxy(&[dead, up.addr], 1, &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "h2.test").await.expect("connect");
        for i in 0..20 {
            let r = h.must_get(&format!("/r{i}")).await;
            assert_eq!(r.status, 200, "request {i}: {}", r.summary());
        }
    });
    assert_eq!(up.streams(), 20, "every stream reached the live endpoint");
    let failures = proxy.metric(&format!(
        "ringway_upstream_endpoint_failures_total{{cluster=\"default\",endpoint=\"{dead}\"}}"
    ));
    assert!(
        failures >= 1.0,
        "the refusing endpoint's failures are counted"
    );
}
