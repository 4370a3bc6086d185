use super::*;

fn parse(s: &str) -> Result<Option<RequestHead>, ParseError> {
    parse_request(s.as_bytes())
}

fn ok(s: &str) -> RequestHead {
    parse(s).unwrap().unwrap()
}

#[test]
fn simple_get() {
    let text = "GET /a?b=c HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\n\r\n";
    let h = ok(text);
    let buf = text.as_bytes();
    assert_eq!(h.method, Method::Get);
    assert_eq!(h.path.of(buf), b"/a?b=c");
    assert_eq!(h.host_name(buf), Some(&b"Example.com"[..]));
    assert_eq!(h.head_len, text.len());
    assert_eq!(h.headers.as_slice().len(), 2);
    assert_eq!(h.framing, BodyFraming::None);
    assert!(h.keep_alive);
}

#[test]
fn framing_and_persistence() {
    assert_eq!(
        ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n").framing,
        BodyFraming::Length(10)
    );
    assert_eq!(
        ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").framing,
        BodyFraming::Chunked
    );
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(
        ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .upgrade
    );
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade);
    assert!(
        ok("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
}

#[test]
fn smuggling_shapes_are_refused() {
    let cases = [
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::AmbiguousLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", ParseError::AmbiguousLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", ParseError::AmbiguousLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", ParseError::BadContentLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", ParseError::UnsupportedTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::BadTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", ParseError::BadTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", ParseError::BadTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", ParseError::BadTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", ParseError::BadTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", ParseError::BadTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", ParseError::BadTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ParseError::UnsupportedTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", ParseError::UnsupportedTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", ParseError::UnsupportedTransferCoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::UnsupportedTransferCoding),
        ("GET / HTTP/1.1\nHost: a\n\n", ParseError::BareLineEnding),
        ("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", ParseError::BareLineEnding),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: y\rz\r\n\r\n", ParseError::Malformed),
        // One bare CR and one bare LF: equal counts, but httparse refuses the CR first.
        ("GET / HTTP/1.1\r\nHost: a\r\nX: y\rz\nW: v\r\n\r\n", ParseError::Malformed),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::Malformed),
        ("GET / HTTP/1.1\r\n\r\n", ParseError::BadHost),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ParseError::BadHost),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ParseError::BadHost),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", ParseError::Malformed),
        ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", ParseError::Malformed),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", ParseError::Version),
        ("GET / HTTP/3\r\nHost: a\r\n\r\n", ParseError::Version),
        ("NOT HTTP AT ALL\r\n\r\n", ParseError::Malformed),
        ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", ParseError::MethodNotAllowed),
        ("GET nothing HTTP/1.1\r\nHost: a\r\n\r\n", ParseError::Malformed),
        ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", ParseError::Expectation),
    ];
    for (text, want) in cases {
        assert_eq!(parse(text).unwrap_err(), want, "{text:?}");
    }
}

#[test]
fn transfer_encoding_chunked_in_any_case_is_accepted() {
    for te in ["chunked", "Chunked", "CHUNKED", " chunked ", "chunked\t"] {
        let text = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_eq!(ok(&text).framing, BodyFraming::Chunked, "{te:?}");
    }
}

#[test]
fn absolute_form_takes_authority_as_host() {
    let text = "GET http://Origin.test:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n";
    let h = ok(text);
    let buf = text.as_bytes();
    assert_eq!(h.host_name(buf), Some(&b"Origin.test"[..]));
    assert_eq!(h.path.of(buf), b"/p?q");
    let h = ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.method, Method::Options);
}

#[test]
fn too_many_headers_is_431() {
    let mut text = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..MAX_HEADERS {
        text.push_str(&format!("X-{i}: v\r\n"));
    }
    text.push_str("\r\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e, ParseError::TooManyHeaders);
    assert_eq!(e.status().code(), 431);
}

#[test]
fn ipv6_host_keeps_brackets() {
    let text = "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n";
    assert_eq!(ok(text).host_name(text.as_bytes()), Some(&b"[::1]"[..]));
}
