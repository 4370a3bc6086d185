//! Message bodies through the proxy: large uploads and downloads compared byte for byte,
//! chunked request bodies (re-framed: forwarded chunked, without the client's extensions and
//! trailers), chunked responses with trailers,
//! `Expect: 100-continue` answered by the proxy, and the request body size limit (413).

mod common;

use common::{curl, pattern, temp_file, write_in_background, Client, Proxy, Upstream};
use std::time::Duration;

const TEN_MB: usize = 10 * 1024 * 1024;

#[test]
fn ten_megabyte_upload_is_echoed_byte_for_byte() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let body = pattern(TEN_MB);
    let mut c = Client::connect(proxy.addr);
    c.send(format!(
        "POST /echo HTTP/1.1\r\nHost: up.test\r\nContent-Type: application/octet-stream\r\nContent-Length: {TEN_MB}\r\n\r\n"
    ));
    let writer = write_in_background(&c.stream, body.clone());
    let r = c.read_response().expect("response to a 10 MB upload");
    writer
        .join()
        .expect("writer thread")
        .expect("write the 10 MB body");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-seen-framing"), Some("length"));
    assert_eq!(r.body.len(), TEN_MB, "echoed length");
    assert!(r.body == body, "echoed body differs from the upload");
}

#[test]
fn ten_megabyte_download_is_intact() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request(&format!(
        "GET /bytes/{TEN_MB} HTTP/1.1\r\nHost: dl.test\r\n\r\n"
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(TEN_MB.to_string().as_str())
    );
    assert_eq!(r.body.len(), TEN_MB);
    assert!(
        r.body == pattern(TEN_MB),
        "downloaded body differs from the pattern"
    );
    // The connection is still good afterwards.
    let r = c.request("GET /name HTTP/1.1\r\nHost: dl.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
}

#[test]
fn large_chunked_response_is_passed_through_and_dechunked_for_http10() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let n = 3_000_000;
    let mut c = Client::connect(proxy.addr);
    let r = c.request(&format!(
        "GET /chunked-bytes/{n} HTTP/1.1\r\nHost: cb.test\r\n\r\n"
    ));
    assert_eq!(r.status, 200);
    assert!(
        r.chunked,
        "HTTP/1.1 client should get the chunked body: {}",
        r.summary()
    );
    assert!(
        r.body == pattern(n),
        "chunked body differs ({} bytes)",
        r.body.len()
    );

    let mut c = Client::connect(proxy.addr);
    c.send(format!("GET /chunked-bytes/{n} HTTP/1.0\r\n\r\n"));
    let wire = c
        .read_to_close(Duration::from_secs(10))
        .expect("the proxy must close after a de-chunked response");
    let at = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&wire[..at]).to_ascii_lowercase();
    assert!(head.contains(" 200 "), "{head}");
    assert!(
        !head.contains("transfer-encoding"),
        "HTTP/1.0 client got chunked: {head}"
    );
    assert!(
        wire[at..] == pattern(n)[..],
        "de-chunked body differs ({} bytes)",
        wire.len() - at
    );
}

#[test]
fn response_delimited_by_close_arrives_whole_and_the_connection_closes() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    c.send("GET /until-close HTTP/1.1\r\nHost: uc.test\r\n\r\n");
    let r = c.read_response().expect("response delimited by close");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.body_text(), "body delimited by close", "{}", r.summary());
    assert!(
        r.says_close() || r.header("content-length").is_none(),
        "{}",
        r.summary()
    );
}

#[test]
fn chunked_upload_with_curl_is_forwarded_chunked_and_echoed() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let data = pattern(300_000);
    let path = temp_file("chunked-upload.bin", "");
    std::fs::write(&path, &data).expect("write the upload file");
    let url = format!("http://{}/echo", proxy.addr);
    let file_arg = format!("@{}", path.display());
    let out_path = temp_file("chunked-echo.bin", "");
    let out_arg = out_path.display().to_string();
    let out = curl(&[
        "-s",
        "-D",
        "-",
        "-o",
        &out_arg,
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &file_arg,
        &url,
    ]);
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let echoed = std::fs::read(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&out_path);
    assert!(out.status.success(), "curl failed: {out:?}");
    assert!(headers.contains(" 200 "), "response head:\n{headers}");
    assert!(
        headers.contains("x-seen-framing: chunked"),
        "upstream did not get it chunked:\n{headers}"
    );
    assert_eq!(echoed.len(), data.len(), "echoed length");
    assert!(echoed == data, "echoed body differs from the upload");
}

#[test]
fn chunked_upload_on_a_raw_socket_keeps_the_connection_usable() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    // Odd chunk sizes, an extension and a trailer; then a second request on the same connection.
    c.send(
        "POST /echo HTTP/1.1\r\nHost: ch.test\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n1;ext=1\r\n \r\nb\r\nchunked wor\r\n2\r\nld\r\n0\r\nX-Sum: 1\r\n\r\n",
    );
    let r = c.read_response().expect("response to a chunked upload");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-seen-framing"), Some("chunked"));
    assert_eq!(r.body_text(), "hello chunked world");
    let r = c.request("GET /name HTTP/1.1\r\nHost: ch.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
}

#[test]
fn chunked_response_with_trailers_reaches_the_client_intact() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let url = format!("http://{}/chunked", proxy.addr);
    let out = curl(&["-s", "-i", "--raw", &url]);
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "response:\n{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "response:\n{text}"
    );
    // Re-frame the raw body to check framing and trailers precisely.
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /chunked HTTP/1.1\r\nHost: tr.test\r\n\r\n");
    assert!(r.chunked, "response not chunked");
    assert_eq!(r.body_text(), "hello chunked world");
    assert_eq!(
        r.trailers,
        vec![("X-Trailer".to_owned(), "done".to_owned())],
        "curl --raw body was:\n{body}"
    );
    let r = c.request("GET /name HTTP/1.1\r\nHost: tr.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alpha"));
}

#[test]
fn expect_100_continue_upload_with_curl_does_not_stall() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let data = pattern(2 * 1024 * 1024);
    let path = temp_file("expect-upload.bin", "");
    std::fs::write(&path, &data).expect("write the upload file");
    let out_path = temp_file("expect-echo.bin", "");
    let (file_arg, out_arg) = (
        format!("@{}", path.display()),
        out_path.display().to_string(),
    );
    let url = format!("http://{}/echo", proxy.addr);
    // curl waits --expect100-timeout for the 100 before sending anyway: make that wait far
    // longer than --max-time, so a proxy that never sends 100 fails the transfer.
    let out = curl(&[
        "-s",
        "-D",
        "-",
        "-o",
        &out_arg,
        "--max-time",
        "10",
        "--expect100-timeout",
        "60",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &file_arg,
        &url,
    ]);
    let headers = String::from_utf8_lossy(&out.stdout).into_owned();
    let echoed = std::fs::read(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&out_path);
    assert!(
        out.status.success(),
        "curl failed or timed out waiting for 100: {out:?}"
    );
    assert!(
        headers.contains("HTTP/1.1 100 Continue"),
        "no interim 100:\n{headers}"
    );
    assert!(headers.contains("HTTP/1.1 200"), "no final 200:\n{headers}");
    assert!(
        echoed == data,
        "echoed body differs ({} of {} bytes)",
        echoed.len(),
        data.len()
    );
}

#[test]
fn expect_100_continue_on_a_raw_socket_gets_100_before_the_body_is_sent() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &[]);
    let mut c = Client::connect(proxy.addr);
    c.send(
        "POST /echo HTTP/1.1\r\nHost: ex.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    // Nothing of the body has been sent: the proxy itself must answer 100 now.
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
        text.starts_with("HTTP/1.1 100"),
        "expected 100 Continue, got:\n{text}"
    );
    c.send("ping");
    let r = c.read_response().expect("final response");
    assert_eq!((r.status, r.body_text().as_str()), (200, "ping"));
}

#[test]
fn content_length_over_the_limit_gets_413() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--max-body-bytes", "1k"]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request("POST /echo HTTP/1.1\r\nHost: big.test\r\nContent-Length: 2000\r\n\r\n");
    assert_eq!(r.status, 413, "{}", r.summary());
    assert_eq!(
        up.requests(),
        0,
        "an over-limit request reached the upstream"
    );
    // Exactly at the limit is fine.
    let body = "x".repeat(1024);
    let r = Client::connect(proxy.addr).request(&format!(
        "POST /echo HTTP/1.1\r\nHost: big.test\r\nContent-Length: 1024\r\n\r\n{body}"
    ));
    assert_eq!((r.status, r.body.len()), (200, 1024));
}

#[test]
fn chunked_body_over_the_limit_gets_413() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--max-body-bytes", "1k"]);
    let mut c = Client::connect(proxy.addr);
    let chunk = "y".repeat(1000);
    c.send(format!(
        "POST /echo HTTP/1.1\r\nHost: big.test\r\nTransfer-Encoding: chunked\r\n\r\n\
         3e8\r\n{chunk}\r\n3e8\r\n{chunk}\r\n0\r\n\r\n"
    ));
    let r = c
        .read_response()
        .expect("response to an over-limit chunked body");
    assert_eq!(
        r.status,
        413,
        "2000-byte chunked body, 1k limit: {}",
        r.summary()
    );
    assert_eq!(
        up.requests(),
        0,
        "the over-limit body was delivered upstream"
    );
}

#[test]
fn large_streamed_chunked_body_over_the_limit_gets_413() {
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--max-body-bytes", "64k"]);
    let mut c = Client::connect(proxy.addr);
    c.send("POST /echo HTTP/1.1\r\nHost: big.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(format!("1000\r\n{}\r\n", "z".repeat(4096)).as_bytes());
    }
    body.extend_from_slice(b"0\r\n\r\n");
    // The proxy may answer and close before taking it all; a failed write is expected then.
    let writer = write_in_background(&c.stream, body);
    let r = c
        .read_response()
        .expect("response to a 256 KiB chunked body");
    let _ = writer.join();
    assert_eq!(
        r.status,
        413,
        "256 KiB chunked body, 64k limit: {}",
        r.summary()
    );
}

/// Reads what a one-shot upstream receives until the end of a chunked body, answers 200, and
/// returns the bytes.
fn capture_one_chunked_request(listener: std::net::TcpListener) -> Vec<u8> {
    use std::io::{Read, Write};
    let (mut s, _) = listener.accept().expect("accept");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(b"\r\n0\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    got
}

#[test]
fn chunked_request_bodies_are_reframed_without_extensions_or_trailers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let origin = std::thread::spawn(move || capture_one_chunked_request(listener));
    let proxy = Proxy::start(&[addr], &[]);
    let mut c = Client::connect(proxy.addr);
    let r = c.request(
        "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n\
         3;ext=\"x;y\"\r\nabc\r\n0005;a=b\r\nhello\r\n0\r\nContent-Length: 99\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    let wire = origin.join().expect("origin thread");
    let text = String::from_utf8_lossy(&wire);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        text.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "forwarded head: {text:?}"
    );
    assert_eq!(
        body, "3\r\nabc\r\n5\r\nhello\r\n0\r\n\r\n",
        "the origin got the client's chunk lines or trailers: {text:?}"
    );
}

#[test]
fn an_upstream_100_continue_during_the_body_is_not_taken_for_the_response() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let origin = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        // An origin may send 100 Continue on its own (RFC 9110 §15.2: clients must cope).
        let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        while !got.ends_with(b"hello") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let proxy = Proxy::start(&[addr], &[]);
    let mut c = Client::connect(proxy.addr);
    c.send("POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    c.send("hello");
    let r = c.read_response().expect("final response");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "ok"),
        "{}",
        r.summary()
    );
    // The proxy's own 100 (it answers Expect itself); the origin's is not relayed twice.
    assert_eq!(r.interim, vec![100], "{}", r.summary());
    origin.join().expect("origin");
}
