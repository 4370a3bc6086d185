//! TLS towards upstreams (`--upstream-tls`): the upstream's certificate is verified against
//! `--upstream-ca` for `--upstream-server-name` (default: the endpoint's address), a failure is
//! a 502, `--upstream-tls-no-verify` skips the check, pooled upstream TLS connections are reused,
//! and `--upstream-cert`/`--upstream-key` is presented as a client certificate. The upstream is
//! a rustls server on std threads (`common::tls::TlsUpstream`).

mod common;

use common::tls::{
    localhost_site, series, start_tls_proxy, Ca, ClientOpts, TempDir, TlsClient, TlsUpstream,
};
use common::{get, Client, Proxy};
use std::time::Duration;

/// A TLS upstream named `upstream.test`, its certificate issued by a private CA whose
/// certificate is written to `internal-ca.pem` in `dir` (the path is returned).
fn internal_upstream(dir: &TempDir) -> (String, TlsUpstream) {
    let internal = Ca::new("Internal CA");
    let ca_pem = dir.write("internal-ca.pem", &internal.pem);
    let up = TlsUpstream::start(
        "secure",
        &internal.server("upstream.test", &["upstream.test"]),
        None,
    );
    (ca_pem, up)
}

#[test]
fn a_tls_upstream_is_verified_and_its_connection_pooled() {
    let dir = TempDir::new("upstream-tls");
    let (client_ca, site) = localhost_site(&dir);
    let (ca_pem, up) = internal_upstream(&dir);
    let (proxy, tls_addr) = start_tls_proxy(
        &[up.addr],
        &[&site],
        &[
            "--upstream-tls",
            "--upstream-ca",
            &ca_pem,
            "--upstream-server-name",
            "upstream.test",
        ],
    );
    let mut c = Client::connect(proxy.addr);
    for i in 0..5 {
        let r = c.request(&format!("GET /req/{i} HTTP/1.1\r\nHost: app.test\r\n\r\n"));
        assert_eq!(r.status, 200, "request {i}: {}", r.summary());
        assert_eq!(
            r.body_text(),
            format!("secure over TLS: GET /req/{i}; client certificate: no")
        );
    }
    assert_eq!(
        up.handshakes(),
        1,
        "five requests on one client connection should share one pooled upstream TLS connection"
    );
    let reuses = series("ringway_upstream_reuses_total", "all");
    let m = proxy.metrics_when(Duration::from_secs(2), |m| m[&reuses] >= 4.0);
    assert!(m[&reuses] >= 4.0, "{reuses} = {}", m[&reuses]);

    // TLS on both sides.
    let mut c = TlsClient::connect(tls_addr, "localhost", &ClientOpts::trusting(&client_ca))
        .expect("TLS to the proxy");
    for i in 0..3 {
        let r = c.request(&format!(
            "GET /both/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        ));
        assert_eq!(
            (r.status, r.body_text()),
            (
                200,
                format!("secure over TLS: GET /both/{i}; client certificate: no")
            )
        );
    }
}

#[test]
fn an_upstream_certificate_that_does_not_verify_gets_502() {
    let dir = TempDir::new("upstream-verify");
    let internal = Ca::new("Internal CA");
    let ca_pem = dir.write("internal-ca.pem", &internal.pem);
    let other_pem = dir.write("other-ca.pem", &Ca::new("Other CA").pem);
    let by_name = TlsUpstream::start(
        "named",
        &internal.server("upstream.test", &["upstream.test"]),
        None,
    );
    let by_ip = TlsUpstream::start("by-ip", &internal.server("127.0.0.1", &["127.0.0.1"]), None);
    let cases: [(&str, &TlsUpstream, Vec<&str>, u16); 6] = [
        (
            "the right CA and name",
            &by_name,
            vec![
                "--upstream-ca",
                &ca_pem,
                "--upstream-server-name",
                "upstream.test",
            ],
            200,
        ),
        (
            "a CA that did not sign it",
            &by_name,
            vec![
                "--upstream-ca",
                &other_pem,
                "--upstream-server-name",
                "upstream.test",
            ],
            502,
        ),
        (
            "a name it is not for",
            &by_name,
            vec![
                "--upstream-ca",
                &ca_pem,
                "--upstream-server-name",
                "wrong.test",
            ],
            502,
        ),
        (
            "the default name (its address), not in its certificate",
            &by_name,
            vec!["--upstream-ca", &ca_pem],
            502,
        ),
        (
            "the default name (its address), in its certificate",
            &by_ip,
            vec!["--upstream-ca", &ca_pem],
            200,
        ),
        (
            "no verification and the wrong CA",
            &by_name,
            vec![
                "--upstream-ca",
                &other_pem,
                "--upstream-server-name",
                "wrong.test",
                "--upstream-tls-no-verify",
            ],
            200,
        ),
    ];
    for (what, up, flags, status) in cases {
        let mut args = vec!["--upstream-tls"];
        args.extend(flags);
        let proxy = Proxy::start(&[up.addr], &args);
        let served = up.requests();
        let r = get(proxy.addr, "/x");
        assert_eq!(r.status, status, "{what}: {}", r.summary());
        if status == 502 {
            assert_eq!(
                up.requests(),
                served,
                "{what}: the request reached the upstream"
            );
        } else {
            assert!(
                r.body_text()
                    .ends_with("over TLS: GET /x; client certificate: no"),
                "{what}: {}",
                r.summary()
            );
        }
    }
}

#[test]
fn the_proxy_presents_its_client_certificate_to_the_upstream() {
    let dir = TempDir::new("upstream-mtls");
    let internal = Ca::new("Internal CA");
    let ca_pem = dir.write("internal-ca.pem", &internal.pem);
    let proxy_cert = internal.client("ringway");
    let (cert, key) = proxy_cert.write(&dir, "ringway-client");
    let up = TlsUpstream::start(
        "secure",
        &internal.server("upstream.test", &["upstream.test"]),
        Some(&internal),
    );
    let base = [
        "--upstream-tls",
        "--upstream-ca",
        &ca_pem,
        "--upstream-server-name",
        "upstream.test",
    ];
    let proxy = Proxy::start(&[up.addr], &base);
    let r = get(proxy.addr, "/anonymous");
    assert_eq!(
        r.body_text(),
        "secure over TLS: GET /anonymous; client certificate: no"
    );
    drop(proxy);

    let mut args = base.to_vec();
    args.extend(["--upstream-cert", &cert, "--upstream-key", &key]);
    let proxy = Proxy::start(&[up.addr], &args);
    let r = get(proxy.addr, "/identified");
    assert_eq!(
        r.body_text(),
        "secure over TLS: GET /identified; client certificate: yes",
        "{}",
        r.summary()
    );
    assert!(
        up.client_certs() == vec![proxy_cert.der.clone()],
        "the upstream did not get the --upstream-cert certificate"
    );
}

#[test]
fn hsts_is_added_once_and_never_over_the_upstreams_own() {
    let dir = TempDir::new("upstream-hsts");
    let (client_ca, site) = localhost_site(&dir);
    let (ca_pem, up) = internal_upstream(&dir);
    let (_proxy, tls_addr) = start_tls_proxy(
        &[up.addr],
        &[&site],
        &[
            "--hsts",
            "max-age=600",
            "--upstream-tls",
            "--upstream-ca",
            &ca_pem,
            "--upstream-server-name",
            "upstream.test",
        ],
    );
    let mut c = TlsClient::connect(tls_addr, "localhost", &ClientOpts::trusting(&client_ca))
        .expect("TLS to the proxy");
    for (path, want) in [("/plain", "max-age=600"), ("/hsts", "max-age=60; upstream")] {
        let r = c.request(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        assert_eq!(r.status, 200, "{}", r.summary());
        let hsts: Vec<&str> = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("strict-transport-security"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(hsts, [want], "{path}: {}", r.summary());
    }
}
