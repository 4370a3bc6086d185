use super::*;
use crate::http1::{parse_request, parse_response};

fn forward(req: &str, policy: &ForwardPolicy) -> String {
    let head = parse_request(req.as_bytes()).unwrap().unwrap();
    let ctx = ForwardContext {
        client_ip: b"192.0.2.7",
        scheme: b"http",
        upstream_authority: b"10.0.0.1:80",
        identity: None,
    };
    let mut out = Vec::new();
    write_request_head(req.as_bytes(), &head, policy, &ctx, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn hop_by_hop_fields_are_removed() {
    let out = forward(
        "GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n\
         X-Secret: 1\r\nProxy-Connection: close\r\nTE: trailers, deflate\r\nUpgrade: h2c\r\n\
         Trailer: X-Sum\r\nAccept: */*\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert!(
        out.starts_with("GET /x HTTP/1.1\r\nHost: a.test\r\n"),
        "{out}"
    );
    for gone in [
        "Connection:",
        "Keep-Alive",
        "X-Secret",
        "Proxy-Connection",
        "Upgrade",
        "deflate",
    ] {
        assert!(!out.contains(gone), "{gone} leaked: {out}");
    }
    assert!(out.contains("TE: trailers\r\n"));
    // Request trailers are dropped with the re-framing, so their announcement goes too.
    assert!(!out.contains("Trailer:"), "{out}");
    assert!(out.contains("Accept: */*\r\n"));
    assert!(out.ends_with("\r\n\r\n"));
}

#[test]
fn forwarding_fields_are_added_and_merged() {
    let out = forward(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\
         X-Forwarded-Proto: https\r\nVia: 1.1 edge\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert!(
        out.contains("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 192.0.2.7\r\n"),
        "{out}"
    );
    assert!(
        out.contains("X-Forwarded-Proto: http\r\n") && !out.contains("https"),
        "{out}"
    );
    assert!(out.contains("Via: 1.1 edge, 1.1 ringway\r\n"), "{out}");
    assert_eq!(out.matches("X-Forwarded-For").count(), 1);

    let off = ForwardPolicy {
        x_forwarded_for: false,
        x_forwarded_proto: false,
        via: None,
        preserve_host: false,
    };
    let out = forward(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
        &off,
    );
    assert!(out.contains("Host: 10.0.0.1:80\r\n"), "{out}");
    assert!(
        out.contains("X-Forwarded-For: 1.1.1.1\r\n") && !out.contains("192.0.2.7"),
        "{out}"
    );
    assert!(
        !out.contains("Via") && !out.contains("X-Forwarded-Proto"),
        "{out}"
    );
}

#[test]
fn framing_is_restated() {
    let out = forward(
        "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert_eq!(
        out.matches("Transfer-Encoding: chunked\r\n").count(),
        1,
        "{out}"
    );
    assert!(!out.contains("Expect"), "{out}");
    let out = forward(
        "GET http://a.test/p HTTP/1.1\r\nHost: b\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert!(
        out.starts_with("GET /p HTTP/1.1\r\nHost: a.test\r\n"),
        "{out}"
    );
    let out = forward(
        "GET http://a.test?x=1 HTTP/1.0\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert!(
        out.starts_with("GET /?x=1 HTTP/1.1\r\nHost: a.test\r\n"),
        "{out}"
    );
    assert!(out.contains("Via: 1.0 ringway"), "{out}");
    // Repeated or listed identical lengths go on as one field; an explicit zero stays.
    let out = forward(
        "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert_eq!(out.matches("Content-Length").count(), 1, "{out}");
    assert!(out.contains("\r\nContent-Length: 5\r\n"), "{out}");
    let out = forward(
        "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert!(out.contains("\r\nContent-Length: 0\r\n"), "{out}");
    let out = forward(
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert!(!out.contains("Content-Length"), "{out}");
}

#[test]
fn upgrade_is_kept_when_tunnelling() {
    let out = forward(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        &ForwardPolicy::default(),
    );
    assert!(
        out.contains("Upgrade: websocket\r\n") && out.contains("Connection: Upgrade\r\n"),
        "{out}"
    );
}

fn respond(res: &str, plan: ResponsePlan) -> String {
    let head = parse_response(res.as_bytes()).unwrap().unwrap();
    let mut out = Vec::new();
    write_response_head(res.as_bytes(), &head, plan, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn response_heads_are_cleaned() {
    let keep = ResponsePlan {
        close: false,
        client_version: Version::Http11,
        dechunk: false,
    };
    let out = respond(
        "HTTP/1.1 200 Fine\r\nConnection: keep-alive, X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=5\r\n\
         Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n",
        keep,
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    );
    let close = ResponsePlan {
        close: true,
        client_version: Version::Http10,
        dechunk: true,
    };
    let out = respond(
        "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n",
        close,
    );
    assert_eq!(out, "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
    let ka10 = ResponsePlan {
        close: false,
        client_version: Version::Http10,
        dechunk: false,
    };
    let out = respond("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", ka10);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    );
    let out = respond(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        keep,
    );
    assert_eq!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    );
}

#[test]
fn identity_field_replaces_what_the_client_claimed() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Client-Subject: CN=admin\r\nx-client-subject: CN=root\r\n\r\n";
    let head = crate::http1::parse_request(raw).unwrap().unwrap();
    let policy = ForwardPolicy::default();
    for (value, expect) in [
        (
            Some(&b"CN=alice, O=Example"[..]),
            Some("X-Client-Subject: CN=alice, O=Example\r\n"),
        ),
        (None, None),
    ] {
        let fctx = ForwardContext {
            client_ip: b"10.1.1.1",
            scheme: b"https",
            upstream_authority: b"10.0.0.1:80",
            identity: Some((b"X-Client-Subject", value)),
        };
        let mut out = Vec::new();
        write_request_head(raw, &head, &policy, &fctx, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("admin") && !text.contains("root"), "{text}");
        assert!(text.contains("X-Forwarded-Proto: https\r\n"), "{text}");
        match expect {
            Some(line) => assert!(text.contains(line), "{text}"),
            None => assert!(
                !text.to_ascii_lowercase().contains("x-client-subject"),
                "{text}"
            ),
        }
    }
}

#[test]
fn appended_response_field_lands_before_the_blank_line() {
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
    append_response_field(&mut out, b"Strict-Transport-Security", b"max-age=60");
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nStrict-Transport-Security: max-age=60\r\n\r\n"
    );
}
