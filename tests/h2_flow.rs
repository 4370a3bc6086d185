//! HTTP/2 streams that stop halfway, over h2c: a stream whose reader stalls (its window closed)
//! must not hold up the other streams of its connection, and streams the client cancels
//! (RST_STREAM mid-download, mid-upload) must leave neither the connection nor the upstream pool
//! in a state that shows in later exchanges (an upstream connection with half a body on it
//! must never be reused). The client is the `h2` crate (`common::h2`).

mod common;

use bytes::Bytes;
use common::h2::{fnv1a, run, within, Body, H2};
use common::{pattern, Proxy, Upstream};
use h2::Reason;
use http::Method;
use std::future::poll_fn;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);
const BIG: usize = 8 << 20;

#[test]
fn a_stalled_stream_does_not_hold_up_the_others() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    run(LIMIT, async {
        // A connection window far larger than the stream window: only the stream stalls.
        let mut b = h2::client::Builder::new();
        b.initial_window_size(65_535)
            .initial_connection_window_size(64 << 20);
        let mut h = H2::h2c_with(proxy.addr, "stall.test", &b)
            .await
            .expect("h2c connection");
        let req = h
            .req(Method::GET, &format!("/bytes/{BIG}"))
            .body(())
            .expect("request");
        let stalled = h.start(req, Body::none()).await.expect("stream");
        let stalled = within(
            Duration::from_secs(10),
            "the stalled stream's head",
            stalled,
        )
        .await
        .expect("the stalled stream's head");
        assert_eq!(stalled.status(), 200);
        // Nothing of its body is read (no capacity released) while 20 others run.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..20 {
            let r = within(
                Duration::from_secs(5),
                "a stream beside a stalled one (head-of-line blocking?)",
                h.get("/bytes/200000"),
            )
            .await
            .unwrap_or_else(|e| panic!("stream {i} beside the stalled one: {e}"));
            assert_eq!(r.status, 200, "stream {i}: {}", r.summary());
            assert!(r.body == pattern(200_000), "stream {i}: wrong body");
        }
        // The stalled stream then reads to its end, intact.
        let mut body = stalled.into_body();
        let mut got = Vec::with_capacity(BIG);
        while let Some(c) = within(Duration::from_secs(10), "the stalled body", body.data()).await {
            let c = c.expect("the stalled stream's body");
            let _ = body.flow_control().release_capacity(c.len());
            got.extend_from_slice(&c);
        }
        assert_eq!(got.len(), BIG, "the stalled stream's body length");
        assert!(got == pattern(BIG), "the stalled stream's body differs");
    });
}

#[test]
fn cancelled_streams_leave_connection_and_upstream_pool_clean() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "cancel.test")
            .await
            .expect("h2c connection");
        for round in 0..3 {
            // Mid-download: the first DATA frame, then the body is dropped (RST_STREAM CANCEL).
            let req = h
                .req(Method::GET, &format!("/bytes/{BIG}"))
                .body(())
                .expect("request");
            let resp = h.start(req, Body::none()).await.expect("stream");
            let resp = within(Duration::from_secs(10), "the head", resp)
                .await
                .expect("the head of the download");
            let mut body = resp.into_body();
            let first = within(Duration::from_secs(10), "the first DATA", body.data())
                .await
                .expect("a DATA frame")
                .expect("a DATA frame");
            assert!(first[..] == pattern(first.len())[..], "round {round}");
            drop(body);

            // Mid-upload: 1 MiB of a declared 8 MiB, then RST_STREAM CANCEL.
            let req = h
                .req(Method::POST, "/digest")
                .header("content-length", BIG.to_string())
                .body(())
                .expect("request");
            h.send = within(
                Duration::from_secs(5),
                "a stream slot",
                h.send.clone().ready(),
            )
            .await
            .expect("ready");
            let (resp, mut stream) = h.send.send_request(req, false).expect("upload stream");
            let mut part = Bytes::from(pattern(1 << 20));
            while !part.is_empty() {
                stream.reserve_capacity(part.len());
                let cap = within(
                    Duration::from_secs(10),
                    "upload capacity",
                    poll_fn(|cx| stream.poll_capacity(cx)),
                )
                .await
                .expect("capacity")
                .expect("capacity");
                let n = cap.min(part.len());
                stream
                    .send_data(part.split_to(n), false)
                    .expect("upload data");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.send_reset(Reason::CANCEL);
            drop(resp);

            // Later exchanges on the same connection are whole and in order.
            for i in 0..10 {
                let body = pattern(1000 + i);
                let req = h
                    .req(Method::POST, "/digest")
                    .header("content-length", body.len().to_string())
                    .body(())
                    .expect("request");
                let r = h
                    .exchange(req, Body::data(body.clone()))
                    .await
                    .unwrap_or_else(|e| panic!("round {round}, POST {i} after the cancels: {e}"));
                assert_eq!(
                    (r.status, r.header("x-seen-length"), r.header("x-seen-fnv")),
                    (
                        200,
                        Some((1000 + i).to_string().as_str()),
                        Some(format!("{:016x}", fnv1a(&body)).as_str())
                    ),
                    "round {round}, POST {i} after the cancels: {}",
                    r.summary()
                );
                let r = h.must_get("/name").await;
                assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
            }
        }
        // A fresh connection is served too.
        let mut h2 = H2::h2c(proxy.addr, "cancel.test")
            .await
            .expect("second connection");
        let r = h2.must_get("/bytes/100000").await;
        assert!(r.body == pattern(100_000));
    });
}

#[test]
fn a_head_request_learns_the_length_without_a_body() {
    let up = Upstream::start("head");
    let proxy = Proxy::start(&[up.addr], &[]);
    run(LIMIT, async {
        let mut h = H2::h2c(proxy.addr, "head.test").await.expect("h2c");
        let req = h.req(Method::HEAD, "/bytes/100").body(()).expect("request");
        let r = h.exchange(req, Body::none()).await.expect("HEAD");
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.header("content-length"), Some("100"), "{}", r.summary());
        assert!(r.body.is_empty());
    });
}
