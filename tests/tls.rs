//! TLS termination as clients see it: curl and `openssl s_client` over TLS 1.2 and 1.3 (1.0
//! and 1.1 refused, ALPN `http/1.1`), certificate choice by SNI (exact, wildcard, default,
//! strict), session resumption on either worker, certificate reload (SIGHUP and `POST /reload`)
//! with open connections unaffected, client certificates (required, optional, the subject
//! passed upstream, 421 across hosts of different policy), HSTS and X-Forwarded-Proto. Bodies,
//! pipelining and a WebSocket tunnel over TLS are in `tls_traffic.rs`, bad input in
//! `tls_errors.rs`, TLS towards upstreams in `tls_upstream.rs`.
//!
//! Certificates are made at test time (`common::tls`), each test in its own directory.

mod common;

use common::tls::{
    curl_https, field_lines, localhost_site, s_client, s_client_subject, series, start_tls_proxy,
    tls_get, Ca, ClientOpts, TempDir, TlsClient,
};
use common::{Client, Proxy, Upstream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[test]
fn tls12_and_tls13_work_older_versions_are_refused_and_alpn_prefers_h2() {
    let dir = TempDir::new("versions");
    let (ca, site) = localhost_site(&dir);
    let ca_pem = dir.write("ca.pem", &ca.pem);
    let up = Upstream::start("alpha");
    let (proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);

    for (flags, version) in [
        (&["--tlsv1.2", "--tls-max", "1.2"][..], "TLSv1.2"),
        (&["--tlsv1.3"][..], "TLSv1.3"),
    ] {
        let mut extra = vec!["-v"];
        extra.extend_from_slice(flags);
        let out = curl_https(addr, "localhost", "/name", &ca_pem, &extra);
        assert!(out.ok, "curl {flags:?} failed: {}", out.stderr);
        assert_eq!(out.stdout, "alpha", "curl {flags:?}: wrong body");
        assert!(
            out.stderr
                .contains(&format!("SSL connection using {version}")),
            "curl {flags:?} did not negotiate {version}:\n{}",
            out.stderr
        );
    }

    let errors = series("ringway_tls_handshake_errors_total", "all");
    let before = proxy.metric(&errors);
    for v in ["-tls1", "-tls1_1"] {
        // SECLEVEL=0 so that OpenSSL itself is willing to offer the old version: the refusal
        // must come from the proxy.
        let out = s_client(addr, &[v, "-cipher", "DEFAULT:@SECLEVEL=0"], b"");
        assert!(
            out.contains("Cipher is (NONE)") && !out.contains("BEGIN CERTIFICATE"),
            "openssl s_client {v} established a session:\n{out}"
        );
        assert!(
            out.contains("alert"),
            "the proxy did not refuse {v} with an alert:\n{out}"
        );
    }
    let m = proxy.metrics_when(Duration::from_secs(2), |m| m[&errors] >= before + 2.0);
    assert!(
        m[&errors] >= before + 2.0,
        "handshake errors {} -> {}: the refused TLS 1.0/1.1 handshakes were not counted",
        before,
        m[&errors]
    );

    for (offer, want) in [
        ("h2,http/1.1", "h2"),
        ("http/1.1,h2", "h2"),
        ("http/1.1", "http/1.1"),
        ("h2", "h2"),
    ] {
        let out = s_client(addr, &["-alpn", offer], b"");
        assert!(
            out.contains(&format!("ALPN protocol: {want}\n")),
            "ALPN {offer} did not settle on {want}:\n{out}"
        );
    }
}

#[test]
fn sni_picks_the_exact_name_then_a_wildcard_then_the_first_certificate() {
    let dir = TempDir::new("sni");
    let (ca, default) = localhost_site(&dir);
    let ca_pem = dir.write("ca.pem", &ca.pem);
    let a = ca.server("a.test", &["a.test"]).write(&dir, "a");
    let wild = ca.server("*.b.test", &["*.b.test"]).write(&dir, "wild-b");
    // Listed after the wildcard that also covers it: the exact name must still win.
    let xb = ca.server("x.b.test", &["x.b.test"]).write(&dir, "x-b");
    let up = Upstream::start("alpha");
    let (_proxy, addr) = start_tls_proxy(&[up.addr], &[&default, &a, &wild, &xb], &[]);

    let cases: [(Option<&str>, &str); 7] = [
        (Some("a.test"), "a.test"),
        (Some("y.b.test"), "*.b.test"),
        (Some("x.b.test"), "x.b.test"),
        // A wildcard covers one label only.
        (Some("z.y.b.test"), "localhost"),
        (Some("b.test"), "localhost"),
        (Some("unknown.test"), "localhost"),
        (None, "localhost"),
    ];
    for (sni, cn) in cases {
        let args = match sni {
            Some(n) => vec!["-servername", n],
            None => vec!["-noservername"],
        };
        let out = s_client(addr, &args, b"");
        let want = format!("CN={cn}, O=Ringway tests");
        assert_eq!(
            s_client_subject(&out),
            Some(want),
            "SNI {sni:?} got the wrong certificate:\n{out}"
        );
    }
    // What a browser would do: verify the chosen certificate for the name it asked for.
    for name in ["a.test", "y.b.test", "x.b.test", "localhost"] {
        let out = curl_https(addr, name, "/name", &ca_pem, &[]);
        assert!(out.ok, "curl https://{name}/ failed: {}", out.stderr);
        assert_eq!(out.stdout, "alpha", "https://{name}/");
    }

    let (_strict, addr) = start_tls_proxy(&[up.addr], &[&a, &wild], &["--tls-strict-sni"]);
    let out = s_client(addr, &["-servername", "a.test"], b"");
    assert_eq!(
        s_client_subject(&out),
        Some("CN=a.test, O=Ringway tests".to_owned()),
        "strict SNI refused a known name:\n{out}"
    );
    for args in [&["-servername", "unknown.test"][..], &["-noservername"][..]] {
        let out = s_client(addr, args, b"");
        assert!(
            s_client_subject(&out).is_none() && out.contains("Cipher is (NONE)"),
            "strict SNI served a certificate for {args:?}:\n{out}"
        );
        assert!(
            out.contains("unrecognized name"),
            "strict SNI: {args:?} should get an unrecognized_name alert:\n{out}"
        );
    }
}

#[test]
fn every_tls_listener_serves_and_reports_its_certificates() {
    let dir = TempDir::new("two-listeners");
    let (ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (proxy, first) = start_tls_proxy(&[up.addr], &[&site], &["--listen-tls", "127.0.0.1:0"]);
    let second = proxy.listener("cli-tls-2");
    assert_ne!(first, second);
    for addr in [first, second] {
        let r = tls_get(addr, "localhost", &ClientOpts::trusting(&ca), "/name");
        let r = r.unwrap_or_else(|e| panic!("TLS listener {addr}: {e}"));
        assert_eq!(r.body_text(), "alpha", "{addr}: {}", r.summary());
    }
    let m = proxy.metrics();
    for listener in ["cli-tls", "cli-tls-2"] {
        let series = format!(
            "ringway_tls_certificate_expiry_seconds{{listener=\"{listener}\",file=\"{}\"}}",
            site.0
        );
        assert!(m.contains_key(&series), "no {series} on /metrics");
    }
    let handshakes = series("ringway_tls_handshakes_total", "all");
    let m = proxy.metrics_when(Duration::from_secs(2), |m| m[&handshakes] >= 2.0);
    assert!(m[&handshakes] >= 2.0, "{handshakes} = {}", m[&handshakes]);
}

#[test]
fn sessions_resume_on_either_worker() {
    let dir = TempDir::new("resume");
    let (_ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    let request = b"GET /name HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let resumed = |w: &str| series("ringway_tls_resumed_total", w);

    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let sess = dir.file(&format!("{version}.session"));
        // A request, read to the end, so that the TLS 1.3 ticket sent after the handshake
        // is received before the session is saved.
        let out = s_client(addr, &[flag, "-sess_out", &sess, "-ign_eof"], request);
        assert!(
            out.contains(&format!("New, {version}")) && out.contains("alpha"),
            "first {version} connection failed:\n{out}"
        );
        let m = proxy.metrics();
        let before = [m[&resumed("0")], m[&resumed("1")], m[&resumed("all")]];
        let mut n = 0.0;
        loop {
            let out = s_client(addr, &[flag, "-sess_in", &sess], b"");
            assert!(
                out.contains(&format!("Reused, {version}")),
                "{version} connection {n} with the saved session was not resumed:\n{out}"
            );
            n += 1.0;
            let m = proxy.metrics_when(Duration::from_secs(2), |m| {
                m[&resumed("all")] >= before[2] + n
            });
            assert_eq!(
                m[&resumed("all")],
                before[2] + n,
                "ringway_tls_resumed_total does not count {version} resumptions"
            );
            if n >= 4.0 && m[&resumed("0")] > before[0] && m[&resumed("1")] > before[1] {
                break;
            }
            assert!(
                n < 40.0,
                "40 resumed {version} connections never reached both workers: {:?} -> {:?}",
                before,
                [m[&resumed("0")], m[&resumed("1")]]
            );
        }
    }

    // TLS 1.2 without tickets resumes by session ID, remembered by the worker that made it: a
    // reconnect lands there about half the time.
    let sess = dir.file("session-id.session");
    let out = s_client(
        addr,
        &["-tls1_2", "-no_ticket", "-sess_out", &sess, "-ign_eof"],
        request,
    );
    assert!(out.contains("New, TLSv1.2"), "{out}");
    let reused = (0..30).any(|_| {
        s_client(addr, &["-tls1_2", "-no_ticket", "-sess_in", &sess], b"")
            .contains("Reused, TLSv1.2")
    });
    assert!(
        reused,
        "30 reconnects never resumed a TLS 1.2 session by ID"
    );
}

/// Connects until the server presents `want` (a reload is asynchronous after SIGHUP).
fn wait_for_certificate(addr: SocketAddr, opts: &ClientOpts<'_>, want: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = TlsClient::connect(addr, "localhost", opts).expect("TLS connection");
        if c.peer_cert().as_ref() == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_serves_new_certificates_to_new_connections_and_keeps_the_old_ones_open() {
    let dir = TempDir::new("reload");
    let ca = Ca::new("Ringway Test CA");
    let names = ["localhost", "127.0.0.1"];
    let first = ca.server("first", &names);
    let site = first.write(&dir, "site");
    let up = Upstream::start("alpha");
    let (proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    let opts = ClientOpts::trusting(&ca);
    let keep_alive = "GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut old = TlsClient::connect(addr, "localhost", &opts).expect("TLS connection");
    assert_eq!(old.request(keep_alive).status, 200);
    assert!(old.peer_cert() == first.der, "not the first certificate");

    let second = ca.server("second", &names);
    second.write(&dir, "site");
    proxy.signal(libc::SIGHUP);
    assert!(
        wait_for_certificate(addr, &opts, &second.der),
        "5 s after SIGHUP new connections still get the old certificate; stderr:\n{}",
        proxy.stderr()
    );
    let r = old.request(keep_alive);
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "alpha"),
        "the connection opened before the reload broke: {}",
        r.summary()
    );

    let third = ca.server("third", &names);
    third.write(&dir, "site");
    let r = proxy.admin_post("/reload");
    assert_eq!(r.status, 200, "POST /reload: {}", r.summary());
    let c = TlsClient::connect(addr, "localhost", &opts).expect("TLS connection");
    assert!(
        c.peer_cert() == third.der,
        "after POST /reload answered, a new connection got an old certificate"
    );

    // A broken file: reported, and the last good certificate stays in service.
    dir.write("site.pem", "this is not a certificate\n");
    let r = proxy.admin_post("/reload");
    assert_eq!(
        r.status,
        500,
        "POST /reload of a broken file: {}",
        r.summary()
    );
    assert!(
        r.body_text().contains(&site.0),
        "the reload error does not name {}: {}",
        site.0,
        r.summary()
    );
    proxy.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.stderr().matches("certificate reload failed").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP with a broken certificate file logged no error:\n{}",
            proxy.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = TlsClient::connect(addr, "localhost", &opts).expect("TLS connection");
    assert!(
        c.peer_cert() == third.der,
        "a failed reload took the last good certificate out of service"
    );
    let r = old.request(keep_alive);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(old.peer_cert() == first.der);
    let expiry = format!(
        "ringway_tls_certificate_expiry_seconds{{listener=\"cli-tls\",file=\"{}\"}}",
        site.0
    );
    assert_eq!(proxy.metric(&expiry), third.not_after as f64);

    // A new certificate next to the old key: refused, naming the key.
    let fourth = ca.server("fourth", &names);
    dir.write("site.pem", &fourth.chain_pem);
    let r = proxy.admin_post("/reload");
    assert_eq!(
        r.status,
        500,
        "reload with a mismatched key: {}",
        r.summary()
    );
    assert!(
        r.body_text().contains(&site.1),
        "the reload error does not name the key {}: {}",
        site.1,
        r.summary()
    );
    let c = TlsClient::connect(addr, "localhost", &opts).expect("TLS connection");
    assert!(
        c.peer_cert() == third.der,
        "a mismatched pair went into service"
    );
}

/// Asserts that the proxy refused a TLS client with an alert (under TLS 1.3 a refused client
/// certificate shows when the response is read; under TLS 1.2 in the handshake).
fn assert_refused(r: Result<common::Response, String>, what: &str) {
    match r {
        Ok(r) => panic!("{what}: the request got {}", r.summary()),
        Err(e) => assert!(
            e.contains("alert"),
            "{what}: failed without a TLS alert: {e}"
        ),
    }
}

const FORGED: &str = "GET /headers HTTP/1.1\r\nHost: localhost\r\nX-Client-Subject: CN=admin, O=forged\r\nx-client-subject: CN=root\r\nConnection: close\r\n\r\n";

/// Asserts that `head` (as the upstream saw it) carries no forged subject and exactly the
/// `expected` X-Client-Subject lines.
fn assert_subject(head: &str, expected: &[&str]) {
    assert_eq!(
        field_lines(head, "x-client-subject"),
        expected,
        "upstream saw:\n{head}"
    );
    assert!(
        !head.contains("forged") && !head.contains("CN=root"),
        "a client-sent X-Client-Subject reached the upstream:\n{head}"
    );
}

#[test]
fn required_client_certificates_are_verified_and_their_subject_goes_upstream() {
    let dir = TempDir::new("mtls");
    let (ca, site) = localhost_site(&dir);
    let client_ca = dir.write("clients-ca.pem", &ca.pem);
    let (alice, mallory) = (ca.client("alice"), Ca::new("Foreign CA").client("mallory"));
    let up = Upstream::start("alpha");
    let (_proxy, addr) = start_tls_proxy(
        &[up.addr],
        &[&site],
        &[
            "--tls-client-auth",
            "required",
            "--tls-client-ca",
            &client_ca,
            "--tls-client-subject-header",
            "X-Client-Subject",
        ],
    );
    let tls12 = ClientOpts {
        tls12_only: true,
        ..ClientOpts::trusting(&ca)
    };
    for (who, opts) in [
        ("no client certificate", ClientOpts::trusting(&ca)),
        ("no client certificate, TLS 1.2", tls12),
        (
            "a certificate from a foreign CA",
            ClientOpts::trusting(&ca).with_cert(&mallory),
        ),
    ] {
        let r =
            TlsClient::connect(addr, "localhost", &opts).and_then(|mut c| c.try_request(FORGED));
        assert_refused(r, who);
    }
    assert_eq!(
        up.requests(),
        0,
        "a request without a valid certificate got through"
    );

    let mut c = TlsClient::connect(
        addr,
        "localhost",
        &ClientOpts::trusting(&ca).with_cert(&alice),
    )
    .expect("handshake with a good client certificate");
    let r = c.request(FORGED);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_subject(
        &r.body_text(),
        &["X-Client-Subject: CN=alice, O=Ringway tests"],
    );
}

#[test]
fn optional_client_certificates_pass_a_subject_only_when_presented() {
    let dir = TempDir::new("mtls-optional");
    let (ca, site) = localhost_site(&dir);
    let client_ca = dir.write("clients-ca.pem", &ca.pem);
    let alice = ca.client("alice");
    let mallory = Ca::new("Foreign CA").client("mallory");
    let up = Upstream::start("alpha");
    let (_proxy, addr) = start_tls_proxy(
        &[up.addr],
        &[&site],
        &[
            "--tls-client-auth",
            "optional",
            "--tls-client-ca",
            &client_ca,
            "--tls-client-subject-header",
            "X-Client-Subject",
        ],
    );
    let anonymous = ClientOpts::trusting(&ca);
    let r = TlsClient::connect(addr, "localhost", &anonymous)
        .expect("handshake without a client certificate")
        .request(FORGED);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_subject(&r.body_text(), &[]);

    let r = TlsClient::connect(
        addr,
        "localhost",
        &ClientOpts::trusting(&ca).with_cert(&alice),
    )
    .expect("handshake with a good client certificate")
    .request(FORGED);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_subject(
        &r.body_text(),
        &["X-Client-Subject: CN=alice, O=Ringway tests"],
    );

    // Optional still means verified when presented.
    let r = TlsClient::connect(
        addr,
        "localhost",
        &ClientOpts::trusting(&ca).with_cert(&mallory),
    )
    .and_then(|mut c| c.try_request(FORGED));
    assert_refused(r, "optional client certificates, one from a foreign CA");
}

#[test]
fn a_host_under_another_client_certificate_policy_gets_421() {
    let dir = TempDir::new("misdirected");
    let ca = Ca::new("Ringway Test CA");
    let open = ca
        .server("open.test", &["open.test", "127.0.0.1"])
        .write(&dir, "open");
    let secure = ca
        .server("secure.test", &["secure.test"])
        .write(&dir, "secure");
    let client_ca = dir.write("clients-ca.pem", &ca.pem);
    let alice = ca.client("alice");
    let config = dir.write(
        "ringway.toml",
        &format!(
            r#"
[[listeners]]
name = "tls"
bind = "127.0.0.1:0"

[listeners.tls]
client_subject_header = "X-Client-Subject"

[[listeners.tls.certificates]]
cert = "{}"
key = "{}"

[[listeners.tls.certificates]]
cert = "{}"
key = "{}"
client_auth = "required"
client_ca = "{client_ca}"
"#,
            open.0, open.1, secure.0, secure.1
        ),
    );
    let up = Upstream::start("alpha");
    let proxy = Proxy::start(&[up.addr], &["--config", &config]);
    let addr = proxy.listener("tls");
    let port = addr.port();
    let anonymous = ClientOpts::trusting(&ca);
    let with_cert = ClientOpts::trusting(&ca).with_cert(&alice);
    let get = |sni: &str, opts: &ClientOpts<'_>, host: &str| {
        let mut c = TlsClient::connect(addr, sni, opts)
            .unwrap_or_else(|e| panic!("SNI {sni}: handshake failed: {e}"));
        c.request(&format!(
            "GET /headers HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        ))
    };

    let r = get("open.test", &anonymous, "open.test");
    assert_eq!(
        r.status,
        200,
        "open host on its own connection: {}",
        r.summary()
    );
    let r = get("secure.test", &with_cert, "secure.test");
    assert_eq!(
        r.status,
        200,
        "secure host with a certificate: {}",
        r.summary()
    );
    assert_subject(
        &r.body_text(),
        &["X-Client-Subject: CN=alice, O=Ringway tests"],
    );
    let served = up.requests();
    for (sni, opts, host) in [
        // A connection made without a client certificate must not reach the host requiring one.
        ("open.test", &anonymous, "secure.test"),
        // No SNI: the default (open) certificate's policy, not the secure host's.
        ("127.0.0.1", &anonymous, "secure.test"),
        // Nor the other way round.
        ("secure.test", &with_cert, "open.test"),
    ] {
        let r = get(sni, opts, host);
        assert_eq!(r.status, 421, "SNI {sni}, Host {host}: {}", r.summary());
    }
    assert_eq!(
        up.requests(),
        served,
        "a misdirected request reached the upstream"
    );
    let r = TlsClient::connect(addr, "secure.test", &anonymous).and_then(|mut c| {
        c.try_request("GET / HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
    });
    assert_refused(r, "SNI secure.test without a client certificate");
}

#[test]
fn https_requests_carry_x_forwarded_proto_https_and_get_hsts() {
    let dir = TempDir::new("hsts");
    let (ca, site) = localhost_site(&dir);
    let ca_pem = dir.write("ca.pem", &ca.pem);
    let up = Upstream::start("alpha");
    let hsts = "max-age=600; includeSubDomains";
    let (proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &["--hsts", hsts]);
    // Over HTTP/1.1 and over HTTP/2 (ALPN) alike.
    for (protocol, status_line) in [("--http1.1", "HTTP/1.1 200"), ("--http2", "HTTP/2 200")] {
        let out = curl_https(
            addr,
            "localhost",
            "/headers",
            &ca_pem,
            &["-D", "-", "-H", "X-Forwarded-Proto: http", protocol],
        );
        assert!(out.ok, "curl failed (exit {:?}): {}", out.code, out.stderr);
        let (head, body) = out.stdout.split_once("\r\n\r\n").expect("a response head");
        assert!(head.starts_with(status_line), "{protocol}: {head}");
        let hsts_lines = field_lines(head, "strict-transport-security");
        assert_eq!(hsts_lines.len(), 1, "want exactly one HSTS field:\n{head}");
        assert!(
            hsts_lines[0].ends_with(&format!(": {hsts}")),
            "HSTS field {:?}, want {hsts:?}",
            hsts_lines[0]
        );
        assert_eq!(
            field_lines(body, "x-forwarded-proto"),
            ["X-Forwarded-Proto: https"],
            "{protocol}: upstream saw:\n{body}"
        );
    }

    // The plain listener: no HSTS, and the scheme is http.
    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /headers HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "{}",
        r.summary()
    );
    assert_eq!(
        field_lines(&r.body_text(), "x-forwarded-proto"),
        ["X-Forwarded-Proto: http"]
    );
}
