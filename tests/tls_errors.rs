//! TLS listeners and bad input: plain HTTP on the TLS port (400 and a close), a handshake that
//! stalls (closed at the handshake timeout while others are served), bytes that are not TLS
//! (closed), a TLS client over the connection limit (closed, never sent a plain 503),
//! certificate files that are unreadable, corrupt or mismatched (exit 64 naming the file, with
//! and without `--check`), and an expired certificate (served, logged, on /metrics).

mod common;

use common::tls::{
    client_hello, curl_https, localhost_site, series, start_tls_proxy, tls_get, Ca, ClientOpts,
    TempDir, TlsClient,
};
use common::{closed_port, run_to_completion, Client, Proxy, Upstream};
use std::time::{Duration, Instant};

#[test]
fn plain_http_on_the_tls_port_gets_400_and_a_close() {
    let dir = TempDir::new("plain-http");
    let (_ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (_proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    let mut c = Client::connect(addr);
    let r = c.request("GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.summary());
    assert!(
        r.body_text()
            .contains("this port speaks TLS: send the request as https"),
        "{}",
        r.summary()
    );
    assert!(
        c.closes_within(Duration::from_secs(5)),
        "connection left open after the 400"
    );
    assert_eq!(up.requests(), 0);
}

#[test]
fn a_stalled_handshake_is_closed_at_the_handshake_timeout_and_others_are_served() {
    let dir = TempDir::new("stalled");
    let (ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &["--tls-handshake-timeout", "1s"]);
    let hello = client_hello("localhost");
    // Each stalled connection waits for its close on its own thread, timing it.
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut c = Client::connect(addr);
            let at = Instant::now();
            c.send(&hello[..20]);
            std::thread::spawn(move || (c.read_to_close(Duration::from_secs(5)), at.elapsed()))
        })
        .collect();
    // Both workers hold a stalled handshake (most likely); every new client is still served.
    let opts = ClientOpts::trusting(&ca);
    for _ in 0..6 {
        let r = tls_get(addr, "localhost", &opts, "/name").expect("a TLS request");
        assert_eq!(r.body_text(), "alpha", "{}", r.summary());
    }
    for waiter in stalled {
        let (closed, waited) = waiter.join().expect("waiter thread");
        assert!(
            closed.is_ok(),
            "a stalled handshake is still open after 5 s"
        );
        assert!(
            waited >= Duration::from_millis(900),
            "a stalled handshake was closed after {waited:?}, before the 1 s timeout"
        );
    }
    let errors = series("ringway_tls_handshake_errors_total", "all");
    let m = proxy.metrics_when(Duration::from_secs(2), |m| m[&errors] >= 4.0);
    assert!(
        m[&errors] >= 4.0,
        "timed-out handshakes not counted: {}",
        m[&errors]
    );
}

#[test]
fn bytes_that_are_not_tls_get_the_connection_closed() {
    let dir = TempDir::new("not-tls");
    let (ca, site) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let (_proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    let binary: Vec<u8> = (0..200u32).map(|i| (i * 97 + 13) as u8).collect();
    let mut c = Client::connect(addr);
    c.send(&binary);
    assert!(
        c.closes_within(Duration::from_secs(3)),
        "binary noise on the TLS port: not closed (silently) within 3 s"
    );
    // A handshake record header followed by garbage: an alert at most, then a close.
    let mut c = Client::connect(addr);
    c.send(b"\x16\x03\x01\x00\x10garbage garbage!");
    assert!(
        c.read_to_close(Duration::from_secs(3)).is_ok(),
        "a garbage handshake record: not closed within 3 s"
    );
    let r = tls_get(addr, "localhost", &ClientOpts::trusting(&ca), "/name").expect("TLS request");
    assert_eq!(r.body_text(), "alpha");
}

#[test]
fn a_tls_client_over_the_connection_limit_sees_a_close_not_a_plain_503() {
    let dir = TempDir::new("tls-limit");
    let (ca, (cert, key)) = localhost_site(&dir);
    let up = Upstream::start("alpha");
    let upstream = up.addr.to_string();
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--listen-tls",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--max-connections",
        "1",
        "--upstream",
        &upstream,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]
    .map(String::from)
    .to_vec();
    let proxy = Proxy::start_args(&args);
    let addr = proxy.listener("cli-tls");
    // The start-up probe's connection must be gone before the one slot is taken.
    let active = series("ringway_connections_active", "all");
    let m = proxy.metrics_when(Duration::from_secs(5), |m| m[&active] == 0.0);
    assert_eq!(m[&active], 0.0, "{active}");
    let opts = ClientOpts::trusting(&ca);
    let mut held = TlsClient::connect(addr, "localhost", &opts).expect("the first connection");
    let keep_alive = "GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(held.request(keep_alive).body_text(), "alpha");

    let mut c = Client::connect(addr);
    let _ = c.try_send(client_hello("localhost"));
    match c.read_to_close(Duration::from_secs(5)) {
        Ok(got) => assert!(
            !got.starts_with(b"HTTP/"),
            "a TLS client over the limit got plain HTTP: {:?}",
            String::from_utf8_lossy(&got)
        ),
        Err(_) => panic!("a connection over the limit is still open after 5 s"),
    }
    let refused = series("ringway_connections_refused_total", "all");
    let m = proxy.metrics_when(Duration::from_secs(2), |m| m[&refused] >= 1.0);
    assert!(m[&refused] >= 1.0, "{refused} = {}", m[&refused]);
    assert_eq!(held.request(keep_alive).body_text(), "alpha");
}

#[test]
fn bad_certificate_files_stop_the_start_with_status_64_naming_the_file() {
    let dir = TempDir::new("bad-files");
    let ca = Ca::new("Ringway Test CA");
    let (cert, key) = ca.server("localhost", &["localhost"]).write(&dir, "good");
    let (_, other_key) = ca.server("other", &["other.test"]).write(&dir, "other");
    let garbage = dir.write("garbage.pem", "this is not a certificate\n");
    let corrupt = dir.write(
        "corrupt.pem",
        "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
    );
    let missing = dir.file("missing.pem");
    let upstream = closed_port().to_string();
    let cases: [(&str, [&str; 4], &str); 6] = [
        (
            "unparseable certificate",
            ["--tls-cert", &garbage, "--tls-key", &key],
            &garbage,
        ),
        (
            "corrupt certificate",
            ["--tls-cert", &corrupt, "--tls-key", &key],
            &corrupt,
        ),
        (
            "key of another certificate",
            ["--tls-cert", &cert, "--tls-key", &other_key],
            &other_key,
        ),
        (
            "missing certificate",
            ["--tls-cert", &missing, "--tls-key", &key],
            &missing,
        ),
        (
            "missing key",
            ["--tls-cert", &cert, "--tls-key", &missing],
            &missing,
        ),
        (
            "missing client CA",
            ["--tls-client-auth", "required", "--tls-client-ca", &missing],
            &missing,
        ),
    ];
    for (what, files, named) in cases {
        let mut args = vec!["--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"];
        args.extend(["--upstream", &upstream]);
        args.extend(files);
        if !files.contains(&"--tls-cert") {
            args.extend(["--tls-cert", &cert, "--tls-key", &key]);
        }
        for check in [true, false] {
            let mut args = args.clone();
            if check {
                args.push("--check");
            }
            let out = run_to_completion(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(64),
                "{what} (--check: {check}): exit {:?}, stderr:\n{stderr}",
                out.status
            );
            assert!(
                stderr.contains(named),
                "{what} (--check: {check}): stderr does not name {named}:\n{stderr}"
            );
        }
    }
}

#[test]
fn an_expired_certificate_is_served_but_reported() {
    let dir = TempDir::new("expired");
    let ca = Ca::new("Ringway Test CA");
    let ca_pem = dir.write("ca.pem", &ca.pem);
    let expired = ca.expired_server("localhost", &["localhost", "127.0.0.1"]);
    let site = expired.write(&dir, "expired");
    let up = Upstream::start("alpha");
    let (proxy, addr) = start_tls_proxy(&[up.addr], &[&site], &[]);
    assert!(
        proxy.stderr().contains("EXPIRED"),
        "no EXPIRED error logged:\n{}",
        proxy.stderr()
    );
    let series = format!(
        "ringway_tls_certificate_expiry_seconds{{listener=\"cli-tls\",file=\"{}\"}}",
        site.0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as f64;
    let expiry = proxy.metric(&series);
    assert_eq!(expiry, expired.not_after as f64, "{series}");
    assert!(expiry < now, "{series} = {expiry}, not in the past");

    let out = curl_https(addr, "localhost", "/name", &ca_pem, &[]);
    assert!(
        !out.ok,
        "curl accepted an expired certificate: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("expired"),
        "curl's complaint is not about expiry: {}",
        out.stderr
    );
    let out = curl_https(addr, "localhost", "/name", &ca_pem, &["-k"]);
    assert!(out.ok, "curl -k failed: {}", out.stderr);
    assert_eq!(out.stdout, "alpha");
}
