//! Failure handling as a client sees it: malformed and oversized requests (400, 431), request
//! smuggling shapes (400), upstream refusal, garbage and timeouts (502, 504, with bodies that
//! never leak the upstream address), an upstream dying mid-response (truncation, never a hang),
//! `--check` exit codes, and a listen address already in use.

mod common;

use common::{closed_port, run_to_completion, temp_file, Client, Proxy, Upstream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Asserts that an error body from the proxy names no upstream address.
fn assert_no_address(r: &common::Response, up: std::net::SocketAddr) {
    let body = r.body_text();
    assert!(
        !body.contains(&up.port().to_string()) && !body.contains("127.0.0.1"),
        "error body leaks the upstream address {up}: {body:?}"
    );
}

#[test]
fn malformed_request_gets_400_and_a_close() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET / HTTP/1.1\r\nHost: bad.test\r\nThis line has no colon\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.summary());
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "connection left open after a 400"
    );

    // A TLS ClientHello sent to the plain-HTTP port.
    let mut c = Client::connect(proxy.addr);
    c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n");
    let r = c.read_response().expect("a response to a TLS hello");
    assert_eq!(r.status, 400, "{}", r.summary());
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "connection left open after a 400"
    );
    assert_eq!(up.requests(), 0, "a malformed request reached the upstream");
}

#[test]
fn http11_request_without_host_gets_400() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let r = Client::connect(proxy.addr).request("GET /name HTTP/1.1\r\nAccept: */*\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.summary());
    assert_eq!(
        up.requests(),
        0,
        "a request without Host reached the upstream"
    );
}

#[test]
fn slow_or_silent_clients_are_timed_out() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(
        &[up.addr],
        &["--header-timeout", "1s", "--idle-timeout", "1s"],
    );
    // Half a head, then nothing: 408 and a close.
    let mut c = Client::connect(proxy.addr);
    c.send("GET /name HTTP/1.1\r\nHost: slow");
    let wire = c
        .read_to_close(Duration::from_secs(5))
        .unwrap_or_else(|got| panic!("incomplete head still open after 5 s: {got:?}"));
    let text = String::from_utf8_lossy(&wire);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "after an incomplete head: {text:?}"
    );
    // Connected, silent: closed.
    let mut c = Client::connect(proxy.addr);
    assert!(
        c.read_to_close(Duration::from_secs(5)).is_ok(),
        "silent connection still open 5 s after a 1 s header timeout"
    );
    assert_eq!(up.requests(), 0);
    // Idle between keep-alive requests: closed after the idle timeout.
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /name HTTP/1.1\r\nHost: idle.test\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "idle keep-alive connection still open 5 s after a 1 s idle timeout"
    );
}

#[test]
fn each_idle_connection_keeps_its_own_deadline() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(
        &[up.addr],
        &["--header-timeout", "3s", "--idle-timeout", "1s"],
    );
    let start = Instant::now();
    // Silent from the start: the 3 s header timeout applies.
    let mut silent = Client::connect(proxy.addr);
    // Parks after its request with the earlier 1 s idle deadline.
    let mut idle = Client::connect(proxy.addr);
    assert_eq!(
        idle.request("GET /name HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .status,
        200
    );
    // Comes back before its idle timeout, twice: each request is served, none cut short.
    let mut busy = Client::connect(proxy.addr);
    for _ in 0..3 {
        let r = busy.request("GET /name HTTP/1.1\r\nHost: b.test\r\n\r\n");
        assert_eq!(r.status, 200, "{}", r.summary());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        idle.closes_within(Duration::from_millis(2300).saturating_sub(start.elapsed())),
        "idle connection open 2.3 s after a 1 s idle timeout (behind the silent one's 3 s?)"
    );
    assert!(
        start.elapsed() < Duration::from_millis(2800)
            && !silent.closes_within(Duration::from_millis(100)),
        "the silent connection closed before its 3 s header timeout"
    );
    assert!(
        silent.closes_within(Duration::from_secs(4)),
        "silent connection open 7 s after a 3 s header timeout"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(2900),
        "silent connection closed after {:?}, before its 3 s header timeout",
        start.elapsed()
    );
}

#[test]
fn the_header_timeout_counts_from_accept_not_from_the_first_byte() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--header-timeout", "2s"]);
    let start = Instant::now();
    let mut c = Client::connect(proxy.addr);
    // Silent for most of the allowance, then a head one byte at a time (slowloris).
    std::thread::sleep(Duration::from_millis(1500));
    for b in b"GET /name HTTP/1.1\r\nHost: slowloris.test\r\nX-Pad: aaaaaaaaaaaaaaaa" {
        if c.try_send([*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wire = c
        .read_to_close(Duration::from_secs(5))
        .unwrap_or_else(|open| panic!("slowloris head still open: {open:?}"));
    assert!(String::from_utf8_lossy(&wire).starts_with("HTTP/1.1 408"));
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(2900),
        "408 after {took:?}: the header timeout restarted at the first byte"
    );
    assert_eq!(up.requests(), 0);
}

#[test]
fn a_body_sent_slower_than_the_minimum_rate_gets_408() {
    let up = Upstream::start("alpha");
    let trickle = |extra: &[&str]| {
        let proxy = Proxy::start(&[up.addr], extra);
        let mut c = Client::connect(proxy.addr);
        c.send("POST /echo HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 100000\r\n\r\n");
        // 10 bytes every 100 ms: 100 bytes/s, for at most 3 s.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if c.try_send([b'x'; 10]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (c.read_to_close(Duration::from_secs(3)), start.elapsed())
    };
    let (got, took) = trickle(&["--header-timeout", "1s", "--min-client-rate", "1k"]);
    let wire = got.unwrap_or_else(|open| panic!("slow body still open after {took:?}: {open:?}"));
    assert!(
        String::from_utf8_lossy(&wire).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&wire)
    );
    assert!(
        took < Duration::from_millis(2900),
        "cut off only after {took:?}"
    );
    // With no minimum the same client is merely slow, not refused.
    let (got, _) = trickle(&["--header-timeout", "1s", "--min-client-rate", "0"]);
    assert!(got.is_err(), "a slow body was cut off with no minimum rate");
}

/// A one-connection origin that answers any request with `len` bytes as fast as it can, and
/// returns how many it managed to send.
fn fast_origin(len: usize) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let origin = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
        let mut head = [0u8; 1024];
        let _ = s.read(&mut head);
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
        let block = vec![b'x'; 1 << 20];
        let mut sent = 0;
        while sent < len {
            match s.write(&block[..block.len().min(len - sent)]) {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
        sent
    });
    (addr, origin)
}

#[test]
fn a_client_reading_slower_than_the_minimum_rate_is_disconnected() {
    const LEN: usize = 200 << 20;
    let (origin_addr, origin) = fast_origin(LEN);
    let proxy = Proxy::start(
        &[origin_addr],
        &["--header-timeout", "1s", "--min-client-rate", "10m"],
    );
    // Reads nothing: once the socket buffers are full the proxy waits on this client alone,
    // and after the grace plus what the buffered bytes earned, it gives up.
    let mut slow = Client::connect(proxy.addr);
    slow.send("GET /big HTTP/1.1\r\nHost: slow.test\r\n\r\n");
    std::thread::sleep(Duration::from_secs(4));
    let got = slow.read_to_close(Duration::from_secs(20));
    let read = got.as_ref().map_or_else(Vec::len, Vec::len);
    assert!(
        got.is_ok() && read < LEN,
        "a stalled reader kept its 200 MiB response going ({read} bytes read)"
    );
    assert!(
        origin.join().expect("origin") < LEN,
        "the origin sent everything"
    );
    // A reader that keeps up gets all of it under the same minimum.
    let (origin_addr, origin) = fast_origin(LEN / 10);
    let proxy = Proxy::start(
        &[origin_addr],
        &["--header-timeout", "1s", "--min-client-rate", "10m"],
    );
    let r = Client::connect(proxy.addr).request("GET /big HTTP/1.1\r\nHost: fast.test\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, LEN / 10));
    assert_eq!(origin.join().expect("origin"), LEN / 10);
}

#[test]
fn upstream_response_with_ambiguous_framing_gets_502() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let r =
        Client::connect(proxy.addr).request("GET /bad-framing HTTP/1.1\r\nHost: g.test\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.summary());
}

#[test]
fn garbage_request_line_gets_400_not_505() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    // `AT` is no HTTP-version at all, so this is a malformed request (400), not a request in an
    // unsupported version (505, RFC 9110 section 15.6.6).
    let r = c.request("NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.summary());
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "connection left open after an error"
    );
    // A well-formed but unsupported version is the 505 case.
    let r = Client::connect(proxy.addr).request("GET / HTTP/2.0\r\nHost: v.test\r\n\r\n");
    assert_eq!(r.status, 505, "{}", r.summary());
    assert_eq!(up.requests(), 0, "a malformed request reached the upstream");
}

#[test]
fn oversized_request_head_gets_431() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--max-header-bytes", "16k"]);
    for kib in [64, 20] {
        let big = "a".repeat(kib * 1024);
        let r = Client::connect(proxy.addr).request(&format!(
            "GET /name HTTP/1.1\r\nHost: big.test\r\nX-Big: {big}\r\n\r\n"
        ));
        assert_eq!(r.status, 431, "{kib} KiB head, 16k limit: {}", r.summary());
        assert_eq!(up.requests(), 0, "a {kib} KiB head reached the upstream");
    }
    // Just under the limit is accepted.
    let fits = "a".repeat(15 * 1024);
    let r = Client::connect(proxy.addr).request(&format!(
        "GET /name HTTP/1.1\r\nHost: big.test\r\nX-Fits: {fits}\r\n\r\n"
    ));
    assert_eq!(r.status, 200, "15 KiB head, 16k limit: {}", r.summary());
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    // The classic CL.TE smuggling shape: a second request hidden behind the chunked terminator.
    c.send(
        "POST /echo HTTP/1.1\r\nHost: sm.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /name HTTP/1.1\r\nHost: sm.test\r\n\r\n",
    );
    let r = c
        .read_response()
        .expect("a response to the smuggling request");
    assert_eq!(r.status, 400, "{}", r.summary());
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "connection left open after a 400"
    );
    assert_eq!(
        up.requests(),
        0,
        "the ambiguous request reached the upstream"
    );

    // Two different Content-Length values are just as ambiguous.
    let r = Client::connect(proxy.addr).request(
        "POST /echo HTTP/1.1\r\nHost: sm.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert_eq!(r.status, 400, "{}", r.summary());
    assert_eq!(
        up.requests(),
        0,
        "the ambiguous request reached the upstream"
    );
}

#[test]
fn refused_upstream_gets_502_without_its_address() {
    let dead = closed_port();
    let proxy = Proxy::start(&[dead], &["--upstream-connect-timeout", "1s"]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /name HTTP/1.1\r\nHost: dead.test\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.summary());
    assert_no_address(&r, dead);
    // A GET has no body left unread, so the client connection can stay open.
    let r = c.request("GET /name HTTP/1.1\r\nHost: dead.test\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.summary());
}

#[test]
fn slow_upstream_gets_504() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--upstream-response-timeout", "1s"]);
    let r =
        Client::connect(proxy.addr).request("GET /slow/3000 HTTP/1.1\r\nHost: slow.test\r\n\r\n");
    assert_eq!(r.status, 504, "{}", r.summary());
    assert_no_address(&r, up.addr);
}

#[test]
fn garbage_from_upstream_gets_502() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let r = Client::connect(proxy.addr).request("GET /garbage HTTP/1.1\r\nHost: g.test\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.summary());
    assert_no_address(&r, up.addr);
    assert!(
        !r.body_text().contains("SSH"),
        "upstream garbage passed through: {}",
        r.summary()
    );
}

#[test]
fn unrequested_101_from_upstream_gets_502() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let r = Client::connect(proxy.addr).request("GET /ws-unasked HTTP/1.1\r\nHost: g.test\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.summary());
}

#[test]
fn upstream_dying_mid_response_truncates_and_closes() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    c.send("GET /die HTTP/1.1\r\nHost: die.test\r\n\r\n");
    let wire = c
        .read_to_close(Duration::from_secs(5))
        .unwrap_or_else(|got| {
            panic!(
                "client still waiting 5 s after the upstream died ({} bytes so far)",
                got.len()
            )
        });
    let text = String::from_utf8_lossy(&wire);
    let at = text.find("\r\n\r\n").map_or(0, |i| i + 4);
    assert!(text.starts_with("HTTP/1.1 200"), "head: {:?}", &text[..at]);
    assert!(
        text[..at].contains("1000000"),
        "the Content-Length must announce the full body: {:?}",
        &text[..at]
    );
    let body = wire.len() - at;
    assert!(
        body < 1_000_000,
        "got a complete body from a dead upstream?"
    );
    assert!(body <= 1000, "more body than the upstream sent: {body}");
    // The proxy itself is fine afterwards.
    let r = common::get(proxy.addr, "/name");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
}

const GOOD_CONFIG: &str = r#"
[server]
workers = 2
[timeouts]
header = "2s"
idle = "5s"
[limits]
max_header_bytes = "16k"
max_body_bytes = "1m"
[[listeners]]
name = "main"
bind = "127.0.0.1:18080"
[[clusters]]
name = "app"
endpoints = [{ addr = "127.0.0.1:9000", weight = 2 }, { addr = "127.0.0.1:9001" }]
[[routes]]
path_prefix = "/"
cluster = "app"
"#;

#[test]
fn check_accepts_a_good_config_and_names_the_bad_key() {
    let good = temp_file("good.toml", GOOD_CONFIG);
    let out = run_to_completion(&["--check", "--config", good.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&good);
    assert_eq!(out.status.code(), Some(0), "good config rejected: {out:?}");

    let bad = temp_file(
        "bad.toml",
        &GOOD_CONFIG.replace("header = \"2s\"", "header = \"soon\""),
    );
    let out = run_to_completion(&["--check", "--config", bad.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "bad config: {out:?}");
    assert!(
        stderr.contains("timeouts.header"),
        "message does not name the key: {stderr}"
    );

    let bad = temp_file(
        "bad-route.toml",
        &GOOD_CONFIG.replace("cluster = \"app\"", "cluster = \"nope\""),
    );
    let out = run_to_completion(&["--check", "--config", bad.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "bad route: {out:?}");
    assert!(
        stderr.contains("routes[0].cluster"),
        "message does not name the key: {stderr}"
    );
}

#[test]
fn port_already_in_use_is_refused_at_startup() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("local addr").to_string();
    let up = Upstream::start("alpha");
    let up_addr = up.addr.to_string();
    let out = run_to_completion(&["--listen", &addr, "--upstream", &up_addr, "--workers", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ringway started on a busy port: {out:?}"
    );
    assert!(
        stderr.contains("already listens"),
        "unhelpful message: {stderr}"
    );
    drop(taken);
}

#[test]
fn a_status_line_without_reason_phrase_is_relayed_and_the_worker_survives() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let origin = std::thread::spawn(move || {
        for reply in [
            &b"HTTP/1.1 200\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"[..],
            b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Content-Length, close\r\n\r\nok",
        ] {
            let (mut s, _) = listener.accept().expect("accept");
            let mut head = [0u8; 1024];
            let _ = s.read(&mut head);
            let _ = s.write_all(reply);
        }
    });
    // One worker, so a worker lost to the first answer would fail the later requests.
    let proxy = Proxy::start_args(
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--upstream",
            &addr.to_string(),
        ]
        .map(String::from),
    );
    for _ in 0..3 {
        let r = Client::connect(proxy.addr).request("GET / HTTP/1.1\r\nHost: r.test\r\n\r\n");
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "ok"),
            "{}",
            r.summary()
        );
    }
    origin.join().expect("origin");
}
