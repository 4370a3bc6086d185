//! HTTP/2 to clients, end to end, over h2c with prior knowledge on a plain listener (the same
//! port also serves HTTP/1.1): each stream is forwarded as an HTTP/1.1 request to the mock
//! upstream, and what the client and the upstream see is checked: the forwarded head (Host from
//! `:authority`, forwarding fields, joined cookies), 8 MiB bodies both ways under the default
//! flow-control windows, trailers both ways (a gRPC-shaped exchange), 500 streams over one
//! connection, an upstream dying under one stream while others go on, a refused upstream, pooled
//! upstream reuse, graceful shutdown with GOAWAY and the header-list limit.
//!
//! The client is the `h2` crate on a current-thread tokio runtime (`common::h2`). Which protocol
//! a client gets (h2c beside HTTP/1.1, ALPN over TLS, `--no-http2`) is in `h2_tls.rs`.

mod common;

use bytes::Bytes;
use common::h2::{fnv1a, head_fields, run, Body, H2};
use common::{closed_port, pattern, temp_file, Proxy, Upstream};
use h2::Reason;
use http::Method;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

#[test]
fn h2c_get_is_forwarded_as_http11_with_host_forwarding_fields_and_joined_cookies() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "h2.test")
            .await
            .expect("h2c connection");

        let r = h.must_get("/name").await;
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "alpha"),
            "{}",
            r.summary()
        );
        assert_eq!(r.header("x-upstream"), Some("alpha"), "{}", r.summary());
        let r = h.must_get("/status/404").await;
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (404, "status 404"),
            "{}",
            r.summary()
        );

        // Cookies as three separate fields (RFC 9113 §8.2.3 lets clients split them).
        let req = request(
            &h,
            Method::GET,
            "/headers?x=1&y=two",
            &[
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("cookie", "c=3"),
                ("x-custom", "kept"),
            ],
        );
        let r = h.exchange(req, Body::none()).await.expect("GET /headers");
        assert_eq!(r.status, 200, "{}", r.summary());
        let head = r.body_text();
        let line = head.lines().next().unwrap_or_default();
        assert_eq!(
            line, "GET /headers?x=1&y=two HTTP/1.1",
            "upstream request line; head:\n{head}"
        );
        assert_eq!(
            head_fields(&head, "host"),
            ["h2.test"],
            "Host from :authority; head:\n{head}"
        );
        assert_eq!(
            head_fields(&head, "cookie"),
            ["a=1; b=2; c=3"],
            "cookies joined; head:\n{head}"
        );
        assert_eq!(
            head_fields(&head, "x-forwarded-proto"),
            ["http"],
            "head:\n{head}"
        );
        assert_eq!(
            head_fields(&head, "x-forwarded-for"),
            ["127.0.0.1"],
            "head:\n{head}"
        );
        assert_eq!(head_fields(&head, "x-custom"), ["kept"], "head:\n{head}");
        let via = head_fields(&head, "via");
        assert!(
            via.len() == 1 && via[0].contains("ringway"),
            "one Via naming ringway; head:\n{head}"
        );
        assert!(
            !head.lines().any(|l| l.starts_with(':')),
            "pseudo-header fields forwarded; head:\n{head}"
        );
        assert!(
            head_fields(&head, "te").is_empty(),
            "te sent unasked; head:\n{head}"
        );
    });
    assert_eq!(up.requests(), 3, "requests that reached the upstream");
}

#[test]
fn eight_mib_bodies_cross_both_ways_under_default_windows() {
    const N: usize = 8 << 20;
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let data = Bytes::from(pattern(N));
    let want_fnv = format!("{:016x}", fnv1a(&data));
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "bodies.test")
            .await
            .expect("h2c connection");
        // Upload with content-length: forwarded with Content-Length.
        let len = N.to_string();
        let req = request(&h, Method::POST, "/digest", &[("content-length", &len)]);
        let r = h
            .exchange(req, Body::data(data.clone()))
            .await
            .expect("upload with length");
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(
            (
                r.header("x-seen-length"),
                r.header("x-seen-fnv"),
                r.header("x-seen-framing")
            ),
            (Some(len.as_str()), Some(want_fnv.as_str()), Some("length")),
            "what the upstream received of an 8 MiB upload with content-length"
        );
        // Upload without content-length: forwarded chunked.
        let req = request(&h, Method::PUT, "/digest", &[]);
        let r = h
            .exchange(req, Body::data(data.clone()))
            .await
            .expect("upload without length");
        assert_eq!(
            (
                r.header("x-seen-length"),
                r.header("x-seen-fnv"),
                r.header("x-seen-framing")
            ),
            (Some(len.as_str()), Some(want_fnv.as_str()), Some("chunked")),
            "what the upstream received of an 8 MiB upload without content-length"
        );
        // Downloads: Content-Length and chunked upstream responses.
        for path in [format!("/bytes/{N}"), format!("/chunked-bytes/{N}")] {
            let r = h.must_get(&path).await;
            assert_eq!(r.status, 200, "{path}: status");
            assert_eq!(r.body.len(), N, "{path}: body length");
            assert!(r.body[..] == data[..], "{path}: the 8 MiB body differs");
        }
    });
}

#[test]
fn trailers_cross_both_ways_and_grpc_shaped_exchange_works() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "trailers.test")
            .await
            .expect("h2c connection");
        // Request trailers: the upstream gets a chunked body with them.
        let req = request(&h, Method::POST, "/digest", &[]);
        let body = Body::with_trailers("hello trailers", &[("x-checksum", "abc123")]);
        let r = h.exchange(req, body).await.expect("POST with trailers");
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(
            r.header("x-seen-framing"),
            Some("chunked"),
            "{}",
            r.summary()
        );
        assert_eq!(r.header("x-seen-length"), Some("14"), "{}", r.summary());
        assert_eq!(
            r.header("x-seen-trailers"),
            Some("x-checksum=abc123"),
            "{}",
            r.summary()
        );
        // Trailers that would route or vouch for the request, were an upstream to merge them
        // into the head, never travel: only the harmless one does.
        let req = request(&h, Method::POST, "/digest", &[]);
        let body = Body::with_trailers(
            "forged",
            &[
                ("x-forwarded-for", "10.0.0.1"),
                ("x-client-subject", "CN=admin"),
                ("authorization", "Bearer stolen"),
                ("x-checksum", "ok"),
            ],
        );
        let r = h
            .exchange(req, body)
            .await
            .expect("POST with forged trailers");
        assert_eq!(
            r.header("x-seen-trailers"),
            Some("x-checksum=ok"),
            "{}",
            r.summary()
        );

        // Response trailers from a chunked upstream response become HTTP/2 trailers.
        let r = h.must_get("/chunked").await;
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "hello chunked world"),
            "{}",
            r.summary()
        );
        assert_eq!(r.trailer("x-trailer"), Some("done"), "{}", r.summary());
        assert!(r.header("transfer-encoding").is_none(), "{}", r.summary());

        // gRPC: te: trailers forwarded, grpc-status arrives as a trailer.
        let mut msg = vec![0u8, 0, 0, 0, 5];
        msg.extend_from_slice(b"hello");
        let req = request(
            &h,
            Method::POST,
            "/grpc",
            &[("content-type", "application/grpc"), ("te", "trailers")],
        );
        let r = h
            .exchange(req, Body::data(msg.clone()))
            .await
            .expect("gRPC call");
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(
            r.header("content-type"),
            Some("application/grpc"),
            "{}",
            r.summary()
        );
        assert_eq!(
            r.header("x-seen-te"),
            Some("trailers"),
            "te forwarded: {}",
            r.summary()
        );
        assert_eq!(r.body, msg, "gRPC message echoed: {}", r.summary());
        assert_eq!(
            (r.trailer("grpc-status"), r.trailer("grpc-message")),
            (Some("0"), Some("ok")),
            "{}",
            r.summary()
        );
    });
}

#[test]
fn five_hundred_streams_on_one_connection_all_succeed() {
    const STREAMS: usize = 500;
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "many.test")
            .await
            .expect("h2c connection");
        h.must_get("/name").await;
        assert_eq!(
            h.send.current_max_send_streams(),
            128,
            "SETTINGS_MAX_CONCURRENT_STREAMS (default 128)"
        );
        // Half the streams wait 100 ms upstream, so all 128 slots fill and the client queues.
        let slow = |i: usize| i % 2 == 0;
        let open = Arc::new(AtomicUsize::new(0));
        let mut most_open = 0;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..STREAMS {
            let path = if slow(i) {
                "/slow/100".to_owned()
            } else {
                format!("/bytes/{}", i * 37 % 20_000)
            };
            let req = request(&h, Method::GET, &path, &[]);
            // Waits for a free slot once 128 streams are open.
            let resp = h
                .start(req, Body::none())
                .await
                .unwrap_or_else(|e| panic!("stream {i}: {e}"));
            most_open = most_open.max(open.fetch_add(1, Ordering::SeqCst) + 1);
            let open = open.clone();
            tasks.spawn(async move {
                let r = common::h2::read_response(resp).await;
                open.fetch_sub(1, Ordering::SeqCst);
                (i, path, r)
            });
        }
        let mut ok = 0;
        while let Some(done) = tasks.join_next().await {
            let (i, path, r) = done.expect("stream task");
            let r = r.unwrap_or_else(|e| panic!("stream {i} ({path}): {e}"));
            let want = if slow(i) {
                b"slow".to_vec()
            } else {
                pattern(i * 37 % 20_000)
            };
            assert_eq!(r.status, 200, "stream {i} ({path}): {}", r.summary());
            assert!(
                r.body == want,
                "stream {i} ({path}): wrong body: {}",
                r.summary()
            );
            ok += 1;
        }
        assert_eq!(ok, STREAMS);
        assert!(
            most_open >= 128,
            "at most {most_open} streams were open at once: the limit was never reached"
        );
    });
    assert_eq!(up.requests(), STREAMS + 1);
}

#[test]
fn upstream_dying_mid_response_resets_only_its_stream() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "die.test")
            .await
            .expect("h2c connection");
        let mut others = Vec::new();
        for path in [
            "/slow/500",
            "/slow/600",
            "/bytes/300000",
            "/chunked-bytes/200000",
            "/slow/700",
        ] {
            let req = request(&h, Method::GET, path, &[]);
            let resp = h.start(req, Body::none()).await.expect("stream");
            others.push((path, tokio::spawn(common::h2::read_response(resp))));
        }
        // Content-Length 1000000, 1000 bytes, then the upstream closes.
        let err = h
            .get("/die")
            .await
            .expect_err("a truncated upstream response must not end cleanly");
        assert_eq!(err.status, Some(200), "the head had been forwarded: {err}");
        assert!(err.partial_body.len() <= 1000, "{err}");
        assert!(
            err.partial_body == pattern(err.partial_body.len()),
            "partial body: {err}"
        );
        assert!(
            err.error.is_reset()
                && err.error.is_remote()
                && err.reason() == Some(Reason::INTERNAL_ERROR),
            "want RST_STREAM(INTERNAL_ERROR) from the proxy, got: {err}"
        );
        for (path, t) in others {
            let r = t
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("{path} beside /die: {e}"));
            let n: usize = path
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let want = if path.starts_with("/slow") {
                b"slow".to_vec()
            } else {
                pattern(n)
            };
            assert_eq!(r.status, 200, "{path}: {}", r.summary());
            assert!(r.body == want, "{path}: wrong body: {}", r.summary());
        }
        assert_eq!(
            h.must_get("/name").await.body_text(),
            "alpha",
            "connection still usable"
        );
    });
}

#[test]
fn refused_or_slow_upstream_gives_502_or_504_on_its_stream_only() {
    let up = Upstream::start("alpha");
    let config = format!(
        "[[clusters]]\nname = \"down\"\nendpoints = [{{ addr = \"{}\" }}]\n\n\
         [[routes]]\npath_prefix = \"/down\"\ncluster = \"down\"\n",
        closed_port()
    );
    let path = temp_file("h2-down.toml", &config);
    let path_arg = path.to_str().expect("utf-8 path").to_owned();
    let flags = ["--config", &path_arg, "--upstream-response-timeout", "1s"];
    let proxy = Proxy::start(&[up.addr], &flags);
    let _ = std::fs::remove_file(&path);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "down.test")
            .await
            .expect("h2c connection");
        let slow = {
            let req = request(&h, Method::GET, "/slow/300", &[]);
            tokio::spawn(common::h2::read_response(
                h.start(req, Body::none()).await.expect("stream"),
            ))
        };
        let r = h
            .get("/down/x")
            .await
            .expect("a refused upstream is a response, not a reset");
        assert_eq!(r.status, 502, "{}", r.summary());
        assert!(r.header("x-upstream").is_none(), "{}", r.summary());
        // No response head within --upstream-response-timeout: 504.
        let r = h
            .get("/slow/3000")
            .await
            .expect("a timeout is a response, not a reset");
        assert_eq!(r.status, 504, "{}", r.summary());
        let s = slow
            .await
            .expect("task")
            .expect("the stream beside the 502");
        assert_eq!(
            (s.status, s.body_text().as_str()),
            (200, "slow"),
            "{}",
            s.summary()
        );
        assert_eq!(
            h.must_get("/name").await.body_text(),
            "alpha",
            "connection still usable"
        );
    });
}

#[test]
fn sequential_streams_reuse_pooled_upstream_connections() {
    const STREAMS: usize = 100;
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "pool.test")
            .await
            .expect("h2c connection");
        for i in 0..STREAMS {
            let r = h.must_get("/name").await;
            assert_eq!(
                (r.status, r.body_text().as_str()),
                (200, "alpha"),
                "stream {i}"
            );
        }
    });
    assert_eq!(up.requests(), STREAMS);
    assert!(
        up.accepted() <= 3,
        "{} upstream connections for {STREAMS} sequential streams: the pool is not reused",
        up.accepted()
    );
    let m = proxy.metrics_when(Duration::from_secs(3), |m| {
        m.get("ringway_h2_streams_total{worker=\"all\"}")
            .copied()
            .unwrap_or(0.0)
            >= STREAMS as f64
    });
    let get = |k: &str| m.get(&format!("{k}{{worker=\"all\"}}")).copied();
    assert!(
        get("ringway_upstream_reuses_total").unwrap_or(0.0) >= (STREAMS - 3) as f64,
        "upstream reuses in /metrics: {:?}",
        get("ringway_upstream_reuses_total")
    );
    assert_eq!(
        get("ringway_h2_connections_total"),
        Some(1.0),
        "h2 connections in /metrics"
    );
    assert_eq!(
        get("ringway_h2_streams_total"),
        Some(STREAMS as f64),
        "h2 streams in /metrics"
    );
}

#[test]
fn sigterm_sends_goaway_and_lets_the_in_flight_stream_finish() {
    let up = Upstream::start("alpha");
    let mut proxy = Proxy::start(&[up.addr], &["--drain-timeout", "5s"]);
    let addr = proxy.addr;
    run(LIMIT, async {
        let mut h = H2::h2c(addr, "drain.test").await.expect("h2c connection");
        h.must_get("/name").await;
        let req = request(&h, Method::GET, "/slow/1200", &[]);
        let slow = tokio::spawn(common::h2::read_response(
            h.start(req, Body::none()).await.expect("stream"),
        ));
        let t = Instant::now();
        while up.requests() < 2 {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the slow stream never reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.signal(libc::SIGTERM);
        // The GOAWAY comes promptly; after it the client opens no new stream.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let err = h
            .get("/name")
            .await
            .expect_err("a new stream after SIGTERM must not be served");
        assert!(
            err.error.is_go_away()
                && err.error.is_remote()
                && err.reason() == Some(Reason::NO_ERROR),
            "want the proxy's GOAWAY(NO_ERROR) within 400 ms of SIGTERM, got: {err}"
        );
        // The listeners are closed while the stream is still in flight.
        let refused = (0..20).any(|_| {
            let r = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            if r.is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
            false
        });
        assert!(
            refused,
            "new TCP connections still accepted during the drain"
        );
        let r = slow
            .await
            .expect("task")
            .expect("the in-flight stream during the drain");
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "slow"),
            "{}",
            r.summary()
        );
        assert!(
            t.elapsed() >= Duration::from_millis(1100),
            "the slow answer came too soon"
        );
        let end = h.closed_within(Duration::from_secs(5)).await;
        assert!(
            end.is_some(),
            "the connection stays open after its last stream finished"
        );
    });
    let status = proxy.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "ringway still running 10 s after SIGTERM; stderr:\n{}",
            proxy.stderr()
        )
    });
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        proxy.stderr()
    );
    assert_eq!(
        up.requests(),
        2,
        "the refused stream must not reach the upstream"
    );
}

/// RFC 9113 §10.5.1: a server may answer a header list over its SETTINGS_MAX_HEADER_LIST_SIZE
/// with 431, or reset the stream. Observed (h2 0.4.20 under Ringway): a list somewhat over the
/// limit gets 431 and the connection goes on; one over four times the limit (h2's abuse bound)
/// ends the connection with GOAWAY(ENHANCE_YOUR_CALM, "header_list_way_too_large"), as HPACK
/// state cannot be skipped and the client is abusive. Either way the request must not reach the
/// upstream and the proxy must go on serving new connections.
#[test]
fn header_list_over_the_limit_is_refused_without_reaching_the_upstream() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--h2-max-header-list-size", "4k"]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "limits.test")
            .await
            .expect("h2c connection");
        h.must_get("/name").await;
        // Just under the limit: served.
        let ok = "v".repeat(3000);
        let req = request(&h, Method::GET, "/name", &[("x-big", &ok)]);
        let r = h
            .exchange(req, Body::none())
            .await
            .expect("a 3000-byte field under a 4k limit");
        assert_eq!(r.status, 200, "{}", r.summary());

        // 6000 bytes: over the limit, decodable.
        let big = "a".repeat(6000);
        let req = request(&h, Method::GET, "/name", &[("x-big", &big)]);
        let got = h.exchange(req, Body::none()).await;
        eprintln!(
            "6 KB header list: {:?}",
            got.as_ref().map(|r| r.status).map_err(|e| e.to_string())
        );
        match got {
            Ok(r) => assert_eq!(r.status, 431, "{}", r.summary()),
            Err(e) => assert!(
                e.error.is_reset() && e.error.is_remote(),
                "want 431 or a stream reset for a 6 KB header list, got: {e}"
            ),
        }
        assert_eq!(
            h.must_get("/name").await.body_text(),
            "alpha",
            "connection usable after the 431"
        );

        // 64 KB (CONTINUATION frames): refused, on this stream or the whole connection.
        let huge: String = (0..65536)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let req = request(&h, Method::GET, "/name", &[("x-huge", &huge)]);
        let got = h.exchange(req, Body::none()).await;
        eprintln!(
            "64 KB header list: {:?}",
            got.as_ref().map(|r| r.status).map_err(|e| e.to_string())
        );
        match got {
            Ok(r) => assert_eq!(r.status, 431, "{}", r.summary()),
            Err(e) => assert!(
                e.error.is_remote(),
                "want 431, a reset or a GOAWAY, got: {e}"
            ),
        }
        let mut h2 = H2::h2c(proxy.addr, "limits.test")
            .await
            .expect("a new connection");
        assert_eq!(h2.must_get("/name").await.body_text(), "alpha");
    });
    assert_eq!(
        up.requests(),
        4,
        "oversized header lists must not reach the upstream"
    );
}
