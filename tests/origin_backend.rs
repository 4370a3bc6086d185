//! Self-tests of the scripted origin of `ringway-test-backend` (paths under `/o/`) and its
//! client helpers (`tests/common/origin.rs`), talking to the origin directly, no proxy: the
//! scripted headers come back, conditional requests get 304s by the RFC 9110 rules, every
//! request is counted and logged per resource, control scripts override and clear, HEAD and
//! chunked framing are right, and script values are percent-decoded.

mod common;

use common::lb::Backend;
use common::origin::{
    body_version, clear_script, encode, origin_get, origin_hits, origin_log, script, LoggedRequest,
};
use common::Client;
use std::time::{Duration, Instant};

const LM: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

#[test]
fn scripted_headers_and_body_come_back() {
    let b = Backend::start("origin");
    let target = format!(
        "/o/page?status=203&cc={}&expires={}&lm={}&etag={}&vary=Accept-Encoding&ct={}&ce=br\
         &setcookie={}&age=42&date={}&hdr={}&hdr={}&body=5000&version=7",
        encode("public, max-age=60"),
        encode("Thu, 01 Jan 2037 00:00:00 GMT"),
        encode(LM),
        encode("W/\"v7\""),
        encode("text/html; charset=utf-8"),
        encode("id=1; Path=/"),
        encode("Mon, 02 Jan 2023 03:04:05 GMT"),
        encode("X-One: 1"),
        encode("X-Two:two words"),
    );
    let r = origin_get(&b, &target, &[]);
    assert_eq!(r.status, 203, "{}", r.summary());
    let expected = [
        ("x-backend", "origin"),
        ("x-origin-hits", "1"),
        ("cache-control", "public, max-age=60"),
        ("expires", "Thu, 01 Jan 2037 00:00:00 GMT"),
        ("last-modified", LM),
        ("etag", "W/\"v7\""),
        ("vary", "Accept-Encoding"),
        ("content-type", "text/html; charset=utf-8"),
        ("content-encoding", "br"),
        ("set-cookie", "id=1; Path=/"),
        ("age", "42"),
        ("date", "Mon, 02 Jan 2023 03:04:05 GMT"),
        ("x-one", "1"),
        ("x-two", "two words"),
        ("content-length", "5000"),
    ];
    for (name, value) in expected {
        assert_eq!(r.header(name), Some(value), "{name}: {}", r.summary());
    }
    assert!(!r.chunked);
    assert_eq!(r.body.len(), 5000);
    assert_eq!(body_version(&r.body).as_deref(), Some("7"));

    // Defaults: 200, text/plain, a short versioned body, a current IMF-fixdate, no caching
    // headers.
    let r = origin_get(&b, "/o/plain", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(body_version(&r.body).as_deref(), Some("1"));
    assert!(r.body.len() > "version=1\n".len() && r.body.ends_with(b"\n"));
    let date = r.header("date").expect("a Date field");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date:?}");
    for absent in [
        "cache-control",
        "etag",
        "last-modified",
        "expires",
        "vary",
        "age",
    ] {
        assert_eq!(r.header(absent), None, "{absent}: {}", r.summary());
    }
    // An empty header value sends nothing.
    let r = origin_get(&b, "/o/plain?ct=", &[]);
    assert_eq!(r.header("content-type"), None, "{}", r.summary());
}

#[test]
fn if_none_match_gets_304_by_weak_comparison() {
    let b = Backend::start("origin");
    let target = format!(
        "/o/etag?etag={}&cc=max-age%3D5&vary=Accept-Encoding&lm={}&expires={}&setcookie=a%3Db",
        encode("W/\"v1\""),
        encode(LM),
        encode("Thu, 01 Jan 2037 00:00:00 GMT"),
    );
    // (If-None-Match, expected status); RFC 9110 §13.1.2 uses the weak comparison.
    let cases = [
        ("\"v1\"", 304),
        ("W/\"v1\"", 304),
        ("\"v2\"", 200),
        ("\"a\", W/\"v1\"", 304),
        ("\"v1x\"", 200),
        ("*", 304),
    ];
    // One keep-alive connection: a 304 with a stray body would corrupt the next response.
    let mut c = Client::connect(b.addr);
    for (i, (inm, want)) in cases.iter().enumerate() {
        let r = c.request(&format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {inm}\r\n\r\n"
        ));
        assert_eq!(r.status, *want, "If-None-Match: {inm}: {}", r.summary());
        assert_eq!(r.header("x-origin-hits"), Some(&*(i + 1).to_string()));
        if r.status == 304 {
            assert_eq!(r.header("etag"), Some("W/\"v1\""));
            assert_eq!(r.header("cache-control"), Some("max-age=5"));
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            assert_eq!(r.header("last-modified"), Some(LM));
            assert!(r.header("expires").is_some() && r.header("date").is_some());
            assert_eq!(r.header("content-length"), None);
            assert_eq!(r.header("set-cookie"), None, "not a 304 field");
        } else {
            assert_eq!(body_version(&r.body).as_deref(), Some("1"));
        }
    }
    assert_eq!(
        origin_hits(&b, &target),
        cases.len() as u64,
        "304s count too"
    );

    // No ETag scripted: only `*` matches.
    let r = origin_get(&b, "/o/no-etag", &[("If-None-Match", "\"v1\"")]);
    assert_eq!(r.status, 200);
    let r = origin_get(&b, "/o/no-etag", &[("If-None-Match", "*")]);
    assert_eq!(r.status, 304);

    // A scripted error is never turned into a 304 (conditionals apply to 2xx only).
    let r = origin_get(
        &b,
        "/o/err?status=503&etag=%22e%22",
        &[("If-None-Match", "\"e\"")],
    );
    assert_eq!(r.status, 503, "{}", r.summary());
}

#[test]
fn if_modified_since_gets_304_when_not_modified() {
    let b = Backend::start("origin");
    let target = format!("/o/lm?lm={}&etag=%22t%22", encode(LM));
    // (If-Modified-Since, expected status).
    let cases = [
        (LM, 304),
        ("Wed, 21 Oct 2015 07:28:01 GMT", 304),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 304),
        ("Wed Oct 21 07:28:00 2015", 304),
        ("Wed, 21 Oct 2015 07:27:59 GMT", 200),
        ("Tue, 20 Oct 2015 07:28:00 GMT", 200),
        ("not a date", 200),
    ];
    for (ims, want) in cases {
        let r = origin_get(&b, &target, &[("If-Modified-Since", ims)]);
        assert_eq!(r.status, want, "If-Modified-Since: {ims}: {}", r.summary());
    }
    // With If-None-Match present, If-Modified-Since is ignored (RFC 9110 §13.1.3).
    let r = origin_get(
        &b,
        &target,
        &[("If-None-Match", "\"other\""), ("If-Modified-Since", LM)],
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    // No Last-Modified scripted: If-Modified-Since never matches.
    let r = origin_get(&b, "/o/no-lm", &[("If-Modified-Since", LM)]);
    assert_eq!(r.status, 200);
}

#[test]
fn hits_and_log_are_per_resource() {
    let b = Backend::start("origin");
    let a = "/o/log?x=1";
    assert_eq!(origin_hits(&b, a), 0);
    assert!(origin_log(&b, a).is_empty());
    origin_get(&b, a, &[("Accept-Encoding", "gzip, br")]);
    origin_get(
        &b,
        a,
        &[("If-None-Match", "\"z\""), ("If-Modified-Since", LM)],
    );
    let r = origin_get(&b, "/o/log?x=2", &[]);
    assert_eq!(
        r.header("x-origin-hits"),
        Some("1"),
        "another query, another resource"
    );

    assert_eq!(origin_hits(&b, a), 2);
    let log = origin_log(&b, a);
    assert_eq!(
        log,
        vec![
            LoggedRequest {
                method: "GET".into(),
                if_none_match: None,
                if_modified_since: None,
                accept_encoding: Some("gzip, br".into()),
            },
            LoggedRequest {
                method: "GET".into(),
                if_none_match: Some("\"z\"".into()),
                if_modified_since: Some(LM.into()),
                accept_encoding: None,
            },
        ]
    );
    assert!(!log[0].is_conditional() && log[1].is_conditional());

    // The log keeps the last 20, newest last; the count keeps going.
    for i in 0..25 {
        let ae = format!("enc{i}");
        origin_get(&b, a, &[("Accept-Encoding", &ae)]);
    }
    assert_eq!(origin_hits(&b, a), 27);
    let log = origin_log(&b, a);
    assert_eq!(log.len(), 20);
    assert_eq!(log[0].accept_encoding.as_deref(), Some("enc5"));
    assert_eq!(log[19].accept_encoding.as_deref(), Some("enc24"));

    // `/o/` requests count in /_stats; the control paths do not.
    assert_eq!(b.stats().requests, 28);
    // Reset forgets counts, logs and scripts.
    script(&b, a, "version=9");
    b.reset();
    assert_eq!(origin_hits(&b, a), 0);
    assert!(origin_log(&b, a).is_empty());
    let r = origin_get(&b, a, &[]);
    assert_eq!(body_version(&r.body).as_deref(), Some("1"));
    assert_eq!(r.header("x-origin-hits"), Some("1"));
}

#[test]
fn control_script_overrides_and_clears() {
    let b = Backend::start("origin");
    let target = "/o/ctl?cc=max-age%3D60&etag=%22v1%22&hdr=X-Q%3Aq";
    let r = origin_get(&b, target, &[]);
    assert_eq!(body_version(&r.body).as_deref(), Some("1"));
    assert_eq!(r.header("x-q"), Some("q"));

    script(
        &b,
        target,
        &format!(
            "version=2&etag={}&hdr={}",
            encode("\"v2\""),
            encode("X-C:c")
        ),
    );
    let r = origin_get(&b, target, &[]);
    assert_eq!(
        body_version(&r.body).as_deref(),
        Some("2"),
        "{}",
        r.summary()
    );
    assert_eq!(r.header("etag"), Some("\"v2\""));
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=60"),
        "kept from the query"
    );
    assert_eq!((r.header("x-c"), r.header("x-q")), (Some("c"), None));
    // The old validator no longer matches; the new one does.
    let r = origin_get(&b, target, &[("If-None-Match", "\"v1\"")]);
    assert_eq!(r.status, 200);
    let r = origin_get(&b, target, &[("If-None-Match", "\"v2\"")]);
    assert_eq!(r.status, 304);

    // A new script replaces the previous one entirely.
    script(&b, target, "status=503");
    let r = origin_get(&b, target, &[("If-None-Match", "\"v1\"")]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(body_version(&r.body).as_deref(), Some("1"));
    assert_eq!(r.header("etag"), Some("\"v1\""));

    clear_script(&b, target);
    let r = origin_get(&b, target, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-q"), Some("q"));
    assert_eq!(
        r.header("x-origin-hits"),
        Some("6"),
        "clearing keeps the count"
    );

    // A script that could never be answered is refused at once.
    let r = origin_get(&b, "/_control/origin?target=%2Fo%2Fctl&status=99", &[]);
    assert_eq!(r.status, 400, "{}", r.summary());
    let r = origin_get(&b, "/_control/origin?status=200", &[]);
    assert_eq!(r.status, 400, "no target: {}", r.summary());
}

#[test]
fn head_has_the_get_head_and_no_body() {
    let b = Backend::start("origin");
    for target in [
        "/o/head?body=3000&etag=%22h%22",
        "/o/head?body=3000&chunked=1",
    ] {
        let get = origin_get(&b, target, &[]);
        let mut c = Client::connect(b.addr);
        let head = c.request(&format!("HEAD {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(head.status, 200);
        for name in [
            "content-length",
            "transfer-encoding",
            "etag",
            "content-type",
        ] {
            assert_eq!(head.header(name), get.header(name), "{name} of {target}");
        }
        // Nothing follows the HEAD answer: the next response on the connection parses cleanly.
        let next = c.request(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!((next.status, next.body.len()), (200, 3000));
        assert_eq!(next.header("x-origin-hits"), Some("3"));
    }
    assert_eq!(
        origin_log(&b, "/o/head?body=3000&chunked=1")
            .iter()
            .map(|l| l.method.as_str())
            .collect::<Vec<_>>(),
        ["GET", "HEAD", "GET"]
    );
}

#[test]
fn chunked_bodies_are_framed_in_chunks_of_at_most_4k() {
    let b = Backend::start("origin");
    let plain = origin_get(&b, "/o/ch?body=10000&version=3", &[]);
    let target = "/o/ch?body=10000&version=3&chunked=1";
    let r = origin_get(&b, target, &[]);
    assert!(
        r.chunked && r.header("content-length").is_none(),
        "{}",
        r.summary()
    );
    assert_eq!(r.body, plain.body, "same bytes, other framing");

    // The raw framing: sizes 1000, 1000, 710 (hex), then the last chunk.
    let mut c = Client::connect(b.addr);
    c.send(format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    ));
    let raw = c
        .read_to_close(Duration::from_secs(10))
        .expect("origin closes");
    let raw = String::from_utf8(raw).expect("text");
    let (_, mut rest) = raw.split_once("\r\n\r\n").expect("a head");
    let mut sizes = Vec::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk-size line");
        let size = usize::from_str_radix(size, 16).expect("hex size");
        sizes.push(size);
        if size == 0 {
            assert_eq!(after, "\r\n", "no trailers, nothing after the last chunk");
            break;
        }
        assert_eq!(&after[size..size + 2], "\r\n");
        rest = &after[size + 2..];
    }
    assert_eq!(sizes, [4096, 4096, 1808, 0]);
}

#[test]
fn unsafe_methods_are_counted_and_answered_per_script() {
    let b = Backend::start("origin");
    let target = "/o/post?cc=no-store";
    let mut c = Client::connect(b.addr);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = c.request(&format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        ));
        assert_eq!(r.status, 200, "{method}: {}", r.summary());
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(body_version(&r.body).as_deref(), Some("1"));
    }
    // A conditional POST is not answered 304.
    let r = c.request(&format!(
        "POST {target} HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(r.status, 200);
    let methods: Vec<String> = origin_log(&b, target)
        .into_iter()
        .map(|l| l.method)
        .collect();
    assert_eq!(methods, ["POST", "PUT", "DELETE", "PATCH", "POST"]);
    assert_eq!(origin_hits(&b, target), 5);
}

#[test]
fn values_are_percent_decoded_and_delay_still_works() {
    let b = Backend::start("origin");
    let r = origin_get(
        &b,
        "/o/pct?cc=public%2C%20max-age%3D60&etag=%22a%2Bb%22&hdr=X-Sym%3A%20%26%3D%25&vary=a+b",
        &[],
    );
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(r.header("etag"), Some("\"a+b\""));
    assert_eq!(r.header("x-sym"), Some("&=%"));
    assert_eq!(r.header("vary"), Some("a+b"), "`+` stays a plus");
    // encode() round-trips through the origin's decoding.
    let odd = "x y&z=%\"#";
    let r = origin_get(
        &b,
        &format!("/o/pct2?hdr={}", encode(&format!("X-Odd:{odd}"))),
        &[],
    );
    assert_eq!(r.header("x-odd"), Some(odd), "{}", r.summary());
    // A script value cannot inject header lines.
    let r = origin_get(&b, "/o/pct3?cc=a%0D%0AX-Evil%3A%201", &[]);
    assert_eq!(r.status, 400, "{}", r.summary());

    let start = Instant::now();
    let r = origin_get(&b, "/o/slow?delay_ms=150", &[]);
    assert_eq!(r.status, 200);
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "delay_ms waited"
    );
}
