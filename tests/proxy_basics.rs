//! The everyday proxy path, end to end through the real binary: plain GETs with curl and ureq,
//! round robin over two upstreams, the forwarding headers the upstream sees (and the hop-by-hop
//! ones it must not see), Host preservation, HTTP/1.0 clients, bodyless responses (HEAD, 204,
//! 304), keep-alive with upstream connection reuse, pipelining, and both workers serving.

mod common;

use common::{curl, driver_metric_label, get, Client, Proxy, Upstream};
use std::time::Duration;

#[test]
fn get_with_curl_returns_the_upstream_response() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let url = format!("http://{}/name", proxy.addr);
    let out = curl(&["-s", "-i", &url]);
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "curl output:\n{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-upstream: alpha"),
        "curl output:\n{text}"
    );
    assert!(text.ends_with("\r\n\r\nalpha"), "curl output:\n{text}");
}

#[test]
fn get_with_ureq_returns_the_upstream_response() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let resp = ureq::get(&format!("http://{}/bytes/5000", proxy.addr))
        .call()
        .expect("ureq GET through the proxy");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("x-upstream"), Some("alpha"));
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).expect("read ureq body");
    assert_eq!(body, common::pattern(5000));
}

#[test]
fn requests_alternate_between_two_upstreams() {
    let (a, b) = (Upstream::start("A"), Upstream::start("B"));
    let proxy = Proxy::start(&[a.addr, b.addr], &[]);
    // One keep-alive connection is served by one worker, whose round robin then alternates.
    let mut c = Client::connect(proxy.addr);
    let names: Vec<String> = (0..8)
        .map(|_| {
            let r = c.request("GET /name HTTP/1.1\r\nHost: rr.test\r\n\r\n");
            assert_eq!(r.status, 200);
            r.body_text()
        })
        .collect();
    for pair in names.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {names:?}");
    }
    assert_eq!(names.iter().filter(|n| *n == "A").count(), 4, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "B").count(), 4, "{names:?}");
}

#[test]
fn upstream_sees_forwarding_headers_but_not_hop_by_hop_ones() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let r = Client::connect(proxy.addr).request(
        "GET /headers HTTP/1.1\r\nHost: shop.example:8443\r\nConnection: keep-alive, X-Foo\r\n\
         X-Foo: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 10.1.2.3\r\nX-End-To-End: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = r.body_text();
    let fields: Vec<(String, String)> = seen
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("host"), ["shop.example:8443"], "upstream saw:\n{seen}");
    let xff = get("x-forwarded-for").join(", ");
    assert!(
        xff.starts_with("10.1.2.3"),
        "client's XFF not kept first: upstream saw:\n{seen}"
    );
    assert!(
        xff.contains("127.0.0.1"),
        "client IP not appended: upstream saw:\n{seen}"
    );
    assert_eq!(get("x-forwarded-proto"), ["http"], "upstream saw:\n{seen}");
    assert!(
        get("via").iter().any(|v| v.contains("1.1 ringway")),
        "no `Via: 1.1 ringway`: upstream saw:\n{seen}"
    );
    assert!(
        get("x-foo").is_empty(),
        "X-Foo (named in Connection) was forwarded:\n{seen}"
    );
    assert!(
        get("keep-alive").is_empty(),
        "Keep-Alive was forwarded:\n{seen}"
    );
    for c in get("connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-foo"),
            "Connection forwarded as is:\n{seen}"
        );
    }
    assert_eq!(
        get("x-end-to-end"),
        ["yes"],
        "an end-to-end header was dropped:\n{seen}"
    );
}

#[test]
fn http10_client_gets_a_dechunked_body_and_a_close() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    c.send("GET /chunked HTTP/1.0\r\nHost: old.test\r\n\r\n");
    let wire = c
        .read_to_close(Duration::from_secs(5))
        .expect("the proxy must close an HTTP/1.0 connection after the response");
    let text = String::from_utf8_lossy(&wire);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1."), "response:\n{text}");
    assert!(head.contains(" 200 "), "response:\n{text}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "HTTP/1.0 client got Transfer-Encoding:\n{text}"
    );
    assert_eq!(body, "hello chunked world", "response:\n{text}");

    // And a plain Content-Length response to an HTTP/1.0 client.
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /name HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "HTTP/1.0 connection left open"
    );
}

#[test]
fn http10_keep_alive_client_is_kept_alive() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    for i in 0..3 {
        let r = c.request("GET /name HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "alpha"),
            "request {i}"
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "an HTTP/1.0 keep-alive response must say so: {}",
            r.summary()
        );
    }
}

#[test]
fn client_connection_close_is_honoured() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /name HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
    assert!(r.says_close(), "{}", r.summary());
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "connection left open"
    );
}

#[test]
fn absolute_form_target_reaches_the_upstream_in_origin_form() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let r = Client::connect(proxy.addr)
        .request("GET http://abs.test/headers?q=1&r=%20 HTTP/1.1\r\nHost: abs.test\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.summary());
    let seen = r.body_text();
    assert!(
        seen.starts_with("GET /headers?q=1&r=%20 HTTP/1.1\r\n"),
        "upstream saw:\n{seen}"
    );
}

#[test]
fn interim_103_early_hints_are_passed_on() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /early-hints HTTP/1.1\r\nHost: eh.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "hinted"));
    assert_eq!(r.interim, [103], "interim responses");
}

#[test]
fn head_response_has_no_body_and_the_connection_stays_usable() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request("HEAD /bytes/1000 HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    let r = c.request("HEAD /chunked HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!(r.status, 200);
    // Had any body bytes followed the head, they would corrupt the next response.
    let r = c.request("GET /name HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
}

#[test]
fn no_content_and_not_modified_are_bodyless() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /status/204 HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!(r.status, 204);
    // The upstream's 304 carries Content-Length: 100 but (correctly) no body.
    let r = c.request("GET /status/304 HTTP/1.1\r\nHost: h.test\r\nIf-None-Match: \"v1\"\r\n\r\n");
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    let r = c.request("GET /name HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
}

#[test]
fn keep_alive_reuses_upstream_connections() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let n = 20;
    for i in 0..n {
        let r = c.request("GET /name HTTP/1.1\r\nHost: ka.test\r\n\r\n");
        assert_eq!(r.status, 200, "request {i}");
        assert!(
            !r.says_close(),
            "request {i}: proxy closed a keep-alive connection"
        );
    }
    assert!(
        up.accepted() <= 2,
        "{n} requests on one client connection opened {} upstream connections",
        up.accepted()
    );
    let reuses = proxy.metric("ringway_upstream_reuses_total{worker=\"all\"}");
    assert!(
        reuses >= (n - 2) as f64,
        "upstream reuses = {reuses} after {n} requests"
    );
}

#[test]
fn a_pooled_connection_closed_by_the_upstream_is_replaced_transparently() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    // The upstream answers without refusing keep-alive, then closes: the proxy pools a
    // connection that is dead by the time the next request comes.
    let r = c.request("GET /name-then-close HTTP/1.1\r\nHost: ka.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
    std::thread::sleep(Duration::from_millis(200));
    let r = c.request("GET /name HTTP/1.1\r\nHost: ka.test\r\n\r\n");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "alpha"),
        "idempotent request on a stale pooled connection: {}",
        r.summary()
    );
    assert_eq!(up.accepted(), 2, "upstream connections");
}

#[test]
fn post_after_the_upstream_closed_an_idle_pooled_connection_succeeds() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    // As an upstream whose keep-alive timeout expired does: answer, then close while idle.
    let r = c.request("GET /name-then-close HTTP/1.1\r\nHost: ka.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
    // Long after the upstream's FIN arrived, a request that cannot be retried once sent.
    std::thread::sleep(Duration::from_millis(200));
    let r = c.request("POST /echo HTTP/1.1\r\nHost: ka.test\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "abc"),
        "POST after the upstream closed the pooled connection: {}",
        r.summary()
    );
}

#[test]
fn access_log_records_each_request() {
    let up = Upstream::start("alpha");
    let log = common::temp_file("access.log", "");
    let log_arg = log.to_str().expect("utf-8 path").to_owned();
    let proxy = Proxy::start(&[up.addr], &["--access-log", &log_arg]);
    assert_eq!(get(proxy.addr, "/name").status, 200);
    assert_eq!(get(proxy.addr, "/status/404").status, 404);
    // Lines are flushed in batches, at least once a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(proxy);
    let _ = std::fs::remove_file(&log);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "access log:\n{text}");
    let line = lines
        .iter()
        .find(|l| l.contains("\"GET /name HTTP/1.1\""))
        .unwrap_or_else(|| panic!("no line for /name:\n{text}"));
    // `127.0.0.1 - - [26/Nov/2026:19:17:00 +0000] "GET /name HTTP/1.1" 200 <bytes> <s.micros>
    // <upstream> conn=<id>`, field by field.
    let (prefix, rest) = line.split_once(" [").expect("time field");
    assert_eq!(prefix, "127.0.0.1 - -", "{line}");
    let (stamp, rest) = rest.split_once("] ").expect("time field end");
    assert_eq!(stamp.len(), 26, "{line}");
    assert!(
        stamp.ends_with(" +0000") && stamp.as_bytes()[2] == b'/',
        "{line}"
    );
    let rest = rest
        .strip_prefix("\"GET /name HTTP/1.1\" ")
        .expect("request line");
    let fields: Vec<&str> = rest.split(' ').collect();
    assert_eq!(fields.len(), 5, "{line}");
    assert_eq!(fields[0], "200", "{line}");
    let body_and_head: u64 = fields[1].parse().expect("bytes");
    assert!(body_and_head > "alpha".len() as u64, "{line}");
    let (secs, micros) = fields[2].split_once('.').expect("latency");
    assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "{line}");
    assert!(micros.bytes().all(|b| b.is_ascii_digit()), "{line}");
    assert_eq!(fields[3], up.addr.to_string(), "{line}");
    assert!(
        fields[4]
            .strip_prefix("conn=")
            .is_some_and(|n| n.parse::<u64>().is_ok()),
        "{line}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /status/404 HTTP/1.1\" 404 ")),
        "access log:\n{text}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    c.send(
        "GET /bytes/10 HTTP/1.1\r\nHost: p.test\r\n\r\n\
         POST /echo HTTP/1.1\r\nHost: p.test\r\nContent-Length: 6\r\n\r\nsecond\
         GET /name HTTP/1.1\r\nHost: p.test\r\n\r\n",
    );
    let r1 = c.read_response().expect("first pipelined response");
    let r2 = c.read_response().expect("second pipelined response");
    let r3 = c.read_response().expect("third pipelined response");
    assert_eq!((r1.status, r1.body.clone()), (200, common::pattern(10)));
    assert_eq!((r2.status, r2.body_text().as_str()), (200, "second"));
    assert_eq!(r2.header("x-seen-method"), Some("POST"));
    assert_eq!((r3.status, r3.body_text().as_str()), (200, "alpha"));
}

#[test]
fn both_workers_serve_traffic_on_the_selected_driver() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    for i in 0..200 {
        let r = get(proxy.addr, "/name");
        assert_eq!(r.status, 200, "connection {i}");
    }
    let all_2xx = "ringway_responses_total{worker=\"all\",class=\"2xx\"}";
    let m = proxy.metrics_when(Duration::from_secs(2), |m| m.get(all_2xx) == Some(&200.0));
    for w in ["0", "1"] {
        let key = format!("ringway_responses_total{{worker=\"{w}\",class=\"2xx\"}}");
        let v = m.get(&key).copied().unwrap_or(0.0);
        assert!(
            v > 0.0,
            "worker {w} served no 2xx over 200 new connections ({key} = {v})"
        );
    }
    let total = m.get(all_2xx).copied().unwrap_or(0.0);
    assert_eq!(total, 200.0, "2xx total");
    let label = format!("driver=\"{}\"", driver_metric_label());
    let infos: Vec<_> = m
        .keys()
        .filter(|k| k.starts_with("ringway_worker_info"))
        .collect();
    assert_eq!(infos.len(), 2, "worker_info series: {infos:?}");
    for k in infos {
        assert!(k.contains(&label), "worker not on the selected driver: {k}");
    }
}

#[test]
fn admin_healthz_answers_ok() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let r = proxy.admin_get("/healthz");
    assert_eq!((r.status, r.body_text().trim()), (200, "ok"));
}
