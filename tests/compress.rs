//! End-to-end tests of response compression: the `ringway` binary in front of the scripted
//! origin of `ringway-test-backend`, with a route that compresses (alone, and together with
//! the cache). Bodies are decoded with the same crates Ringway encodes with and, separately, by
//! curl as an independent client, and compared byte for byte with what the origin sent; the
//! cases where Ringway must leave a response alone are checked field by field. This file owns
//! no shared helpers (those live in `tests/common/origin.rs`).

mod common;

use common::h2::{Body as H2Body, H2};
use common::lb::Backend;
use common::origin::{encode, origin_get, request, start_accel_proxy};
use common::{curl, temp_file, Client, Response};
use http::Method;
use std::io::Read;
use std::time::Duration;

/// The codings Ringway offers, as Accept-Encoding and Content-Encoding tokens.
const CODINGS: [&str; 3] = ["gzip", "br", "zstd"];
/// Compression alone.
const COMPRESS: &str = "compress = {}";
/// Cache and compression together.
const CACHE_AND_COMPRESS: &str =
    "cache = { max_bytes = \"64MiB\", max_object_bytes = \"1MiB\" }\ncompress = {}";

/// Decodes `body` from `coding` with the reference decoder.
fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("a valid gzip stream");
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("a valid brotli stream");
        }
        "zstd" => out = zstd::stream::decode_all(body).expect("a valid zstd frame"),
        other => panic!("no decoder for {other}"),
    }
    out
}

/// Whether the `Vary` of `r` lists `Accept-Encoding`.
fn varies_on_coding(r: &Response) -> bool {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("vary"))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding"))
}

/// Asserts that `r` is `want` encoded with `coding`, with the fields that go with it.
fn assert_encoded(r: &Response, coding: &str, want: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.summary());
    assert_eq!(
        r.header("content-encoding"),
        Some(coding),
        "{what}: {}",
        r.summary()
    );
    assert!(
        varies_on_coding(r),
        "{what}: no Vary: Accept-Encoding: {}",
        r.summary()
    );
    let plain = decode(coding, &r.body);
    assert!(
        plain == want,
        "{what}: decoded {} bytes differ from the origin's {} bytes",
        plain.len(),
        want.len()
    );
    if want.len() > 4096 {
        assert!(
            r.body.len() < want.len() / 2,
            "{what}: {} encoded bytes for {} of repetitive text",
            r.body.len(),
            want.len()
        );
    }
}

/// Asserts that `r` came through unencoded, exactly as the origin sent `want`.
fn assert_identity(r: &Response, want: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.summary());
    assert_eq!(
        r.header("content-encoding"),
        None,
        "{what}: {}",
        r.summary()
    );
    assert!(r.body == want, "{what}: body differs: {}", r.summary());
}

/// Every coding, bodies of 0.5 KiB, 100 KiB and a chunked ~200 KiB, through a compressing
/// route (streamed, chunked) and a caching one (first a MISS, then HITs built from the stored
/// identity body, with Content-Length).
#[test]
fn every_coding_round_trips() {
    let origin = Backend::start("origin");
    let bodies = ["body=512", "body=102400", "body=204800&chunked=1"];
    for (route, cached) in [(COMPRESS, false), (CACHE_AND_COMPRESS, true)] {
        let proxy = start_accel_proxy(&origin, 1, route);
        for (b, body) in bodies.iter().enumerate() {
            let target = format!("/o/rt/{b}?{body}&cc=max-age%3D60&ct=text%2Fhtml&cached={cached}");
            let want = origin_get(&origin, &target, &[]).body;
            let mut first = true;
            for coding in CODINGS {
                for round in 0..2 {
                    let what = format!("{target} ({route}), {coding}, round {round}");
                    let r = request(
                        proxy.addr,
                        "GET",
                        &target,
                        &[("Accept-Encoding", coding)],
                        b"",
                    );
                    assert_encoded(&r, coding, &want, &what);
                    if !cached {
                        assert!(r.chunked, "{what}: compressed responses stream chunked");
                        assert_eq!(r.header("content-length"), None, "{what}");
                        assert_eq!(r.header("x-cache"), None, "{what}");
                    } else if first {
                        assert_eq!(r.header("x-cache"), Some("MISS"), "{what}: {}", r.summary());
                    } else {
                        assert_eq!(r.header("x-cache"), Some("HIT"), "{what}: {}", r.summary());
                        assert!(!r.chunked, "{what}: a stored variant has a known length");
                        assert_eq!(
                            r.header("content-length"),
                            Some(r.body.len().to_string().as_str()),
                            "{what}"
                        );
                    }
                    first = false;
                }
            }
            // The identity body is what a client without Accept-Encoding gets, still saying
            // that the response varies on it.
            let r = request(proxy.addr, "GET", &target, &[], b"");
            assert_identity(&r, &want, &target);
            assert!(varies_on_coding(&r), "{target}: {}", r.summary());
        }
        assert!(
            proxy.metric("ringway_compressed_total{worker=\"all\"}") > 0.0,
            "ringway_compressed_total stays 0 ({route})"
        );
    }
}

/// curl as the client: `--compressed` decodes what Ringway chose, for each coding alone and
/// for curl's own Accept-Encoding (all three offered: the server prefers br).
#[test]
fn curl_decodes_every_coding() {
    let origin = Backend::start("origin");
    for route in [COMPRESS, CACHE_AND_COMPRESS] {
        let proxy = start_accel_proxy(&origin, 1, route);
        let target = format!("/o/curl?body=100000&cc=max-age%3D60&r={}", encode(route));
        let want = origin_get(&origin, &target, &[]).body;
        let url = format!("http://{}{target}", proxy.addr);
        let cases: [(Option<&str>, &str); 4] = [
            (Some("gzip"), "gzip"),
            (Some("br"), "br"),
            (Some("zstd"), "zstd"),
            (None, "br"),
        ];
        for (offer, chosen) in cases {
            let out_file = temp_file("curl-body", "");
            let mut args = vec![
                "-sS".to_owned(),
                "--compressed".to_owned(),
                "-o".to_owned(),
                out_file.to_str().expect("utf-8 path").to_owned(),
                "-w".to_owned(),
                "%{http_code} %header{content-encoding}".to_owned(),
            ];
            if let Some(o) = offer {
                args.push("-H".to_owned());
                args.push(format!("Accept-Encoding: {o}"));
            }
            args.push(url.clone());
            let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = curl(&arg_refs);
            let written = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "curl {args:?}: {written} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                written,
                format!("200 {chosen}"),
                "curl offering {offer:?} ({route})"
            );
            let got = std::fs::read(&out_file).expect("read curl's output");
            let _ = std::fs::remove_file(&out_file);
            assert!(
                got == want,
                "curl offering {offer:?} ({route}): {} decoded bytes, the origin sent {}",
                got.len(),
                want.len()
            );
        }
    }
}

/// Which coding the client's Accept-Encoding chooses (RFC 9110 §12.5.3), or none; the
/// response is compressed exactly when one is chosen.
#[test]
fn accept_encoding_negotiation() {
    let origin = Backend::start("origin");
    let proxy = start_accel_proxy(&origin, 1, COMPRESS);
    let target = "/o/negotiate?body=10000";
    let want = origin_get(&origin, target, &[]).body;
    let cases: [(Option<&str>, Option<&str>); 12] = [
        (None, None),
        (Some("identity"), None),
        (Some("gzip;q=0"), None),
        (Some("gzip;q=0, br;q=0, zstd;q=0"), None),
        (Some("deflate, compress"), None),
        (Some("gzip;q=1, br;q=0.5"), Some("gzip")),
        (Some("br;q=0.5, zstd;q=0.9, gzip;q=0.1"), Some("zstd")),
        (Some("gzip, zstd, br"), Some("br")),
        (Some("gzip, zstd"), Some("zstd")),
        (Some("*"), Some("br")),
        (Some("br;q=0, *;q=0.5"), Some("zstd")),
        (Some("GZIP"), Some("gzip")),
    ];
    for (offer, chosen) in cases {
        let headers: Vec<(&str, &str)> =
            offer.map(|o| ("Accept-Encoding", o)).into_iter().collect();
        let r = request(proxy.addr, "GET", target, &headers, b"");
        let what = format!("Accept-Encoding: {offer:?}");
        match chosen {
            Some(c) => assert_encoded(&r, c, &want, &what),
            None => {
                assert_identity(&r, &want, &what);
                assert!(varies_on_coding(&r), "{what}: {}", r.summary());
            }
        }
    }
    // An HTTP/1.0 client is not sent a compressed body.
    let mut c = Client::connect(proxy.addr);
    let r = c.request(&format!(
        "GET {target} HTTP/1.0\r\nHost: cache.test\r\nAccept-Encoding: gzip\r\n\r\n"
    ));
    assert_identity(&r, &want, "HTTP/1.0 client");
}

/// Responses Ringway must pass on unencoded even though the client accepts gzip.
#[test]
fn responses_left_alone() {
    let origin = Backend::start("origin");
    for route in [COMPRESS, CACHE_AND_COMPRESS] {
        let proxy = start_accel_proxy(&origin, 1, route);
        let r_tag = encode(route);
        let cases = [
            (
                "image/png",
                format!("/o/png?ct=image%2Fpng&body=50000&r={r_tag}"),
            ),
            (
                "already gzip",
                format!("/o/ce?ce=gzip&body=50000&r={r_tag}"),
            ),
            ("below min_bytes", format!("/o/small?body=255&r={r_tag}")),
            (
                "no-transform",
                format!("/o/nt?cc=no-transform&body=50000&r={r_tag}"),
            ),
            (
                "not a 200",
                format!("/o/notfound?status=404&body=50000&r={r_tag}"),
            ),
        ];
        for (name, target) in &cases {
            let want = origin_get(&origin, target, &[]);
            for round in 0..2 {
                let what = format!("{name} ({route}), round {round}");
                let r = request(
                    proxy.addr,
                    "GET",
                    target,
                    &[("Accept-Encoding", "gzip, br, zstd")],
                    b"",
                );
                assert_eq!(r.status, want.status, "{what}: {}", r.summary());
                assert_eq!(
                    r.header("content-encoding"),
                    want.header("content-encoding"),
                    "{what}: {}",
                    r.summary()
                );
                assert!(r.body == want.body, "{what}: body differs: {}", r.summary());
            }
        }
        // At min_bytes exactly, the response is compressed.
        let target = format!("/o/min?body=256&r={r_tag}");
        let want = origin_get(&origin, &target, &[]).body;
        let r = request(
            proxy.addr,
            "GET",
            &target,
            &[("Accept-Encoding", "gzip")],
            b"",
        );
        assert_encoded(&r, "gzip", &want, &format!("body at min_bytes ({route})"));
    }
}

/// A compressed response's ETag becomes weak (it names other bytes than the origin's); its
/// Vary keeps the origin's names and adds Accept-Encoding.
#[test]
fn etag_weakened_and_vary_merged() {
    let origin = Backend::start("origin");
    for route in [COMPRESS, CACHE_AND_COMPRESS] {
        let proxy = start_accel_proxy(&origin, 1, route);
        let target = format!(
            "/o/etag?etag=%22v1%22&vary=Accept-Language&cc=max-age%3D60&body=5000&r={}",
            encode(route)
        );
        let want = origin_get(&origin, &target, &[]).body;
        for round in 0..2 {
            let what = format!("{route}, round {round}");
            let r = request(
                proxy.addr,
                "GET",
                &target,
                &[("Accept-Encoding", "gzip"), ("Accept-Language", "en")],
                b"",
            );
            assert_encoded(&r, "gzip", &want, &what);
            assert_eq!(
                r.header("etag"),
                Some("W/\"v1\""),
                "{what}: {}",
                r.summary()
            );
            let vary: Vec<String> = r
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("vary"))
                .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
                .collect();
            assert!(
                vary.iter().any(|t| t == "accept-language"),
                "{what}: {vary:?}"
            );
        }
        // Uncompressed, the strong ETag stays.
        let r = request(
            proxy.addr,
            "GET",
            &target,
            &[("Accept-Language", "en")],
            b"",
        );
        assert_identity(&r, &want, route);
        assert_eq!(r.header("etag"), Some("\"v1\""), "{route}: {}", r.summary());
    }
}

/// HTTP/2 clients: compressed on the fly (no length, weak ETag, `Vary`), and with the cache
/// on, served compressed variants from the store (`X-Cache: HIT`); every body decodes to the
/// origin's bytes.
#[test]
fn http2_clients_get_compressed_streams_and_cached_variants() {
    let origin = Backend::start("h2-compress");
    for (route, cached) in [("compress = {}", false), (CACHE_AND_COMPRESS, true)] {
        let proxy = start_accel_proxy(&origin, 1, route);
        let target = format!(
            "/o/h2z-{cached}?ct=text/html&body=60000&etag=%22z%22&chunked=1&cc=max-age%3D60"
        );
        let want = origin_get(&origin, &target, &[]).body;
        common::h2::run(Duration::from_secs(20), async {
            let mut h = H2::h2c(proxy.addr, common::origin::CACHE_HOST)
                .await
                .expect("h2c connection");
            for (round, coding) in ["gzip", "br", "zstd", "gzip"].into_iter().enumerate() {
                let req = h
                    .req(Method::GET, &target)
                    .header("accept-encoding", coding)
                    .body(())
                    .expect("request");
                let r = h.exchange(req, H2Body::none()).await.expect("response");
                let what = format!("{route}, {coding}, round {round}");
                assert_eq!(r.status, 200, "{what}");
                assert_eq!(r.header("content-encoding"), Some(coding), "{what}");
                assert_eq!(r.header("etag"), Some("W/\"z\""), "{what}");
                assert!(
                    r.header("vary")
                        .is_some_and(|v| v.eq_ignore_ascii_case("accept-encoding")),
                    "{what}"
                );
                assert_eq!(decode(coding, &r.body), want, "{what}");
                if cached && round > 0 {
                    assert_eq!(r.header("x-cache"), Some("HIT"), "{what}");
                    assert!(r.header("content-length").is_some(), "{what}");
                } else if !cached {
                    assert_eq!(r.header("content-length"), None, "{what}");
                }
            }
            // No Accept-Encoding: the origin's bytes, still saying they vary.
            let r = h.must_get(&target).await;
            assert_eq!(r.header("content-encoding"), None);
            assert_eq!(r.body, want);
        });
    }
}
