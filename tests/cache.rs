//! End-to-end tests of the per-core HTTP cache (RFC 9111): the `ringway` binary in front of
//! the scripted origin of `ringway-test-backend`, seen the way a client sees it (status, body,
//! `X-Cache`, `Age`) and the way the origin sees it (how many requests reached it, and whether
//! they were conditional). Semantic tests run the proxy with one worker, so one cache holds
//! every response; only the coalescing test uses two. This file owns no helpers that other
//! tests need (those live in `tests/common/origin.rs`) and never changes the origin's global
//! behaviour, only per-resource scripts.

mod common;

use common::lb::{drive_requests, Backend, DriveRequest};
use common::origin::{
    body_version, clear_script, encode, http_date, origin_get, origin_hits, origin_log, request,
    request_text, script, start_accel_proxy, CACHE_HOST,
};
use common::{Client, Proxy, Response};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

/// A route cache big enough for every semantic test.
const CACHE: &str = r#"cache = { max_bytes = "64MiB", max_object_bytes = "1MiB" }"#;
/// A Last-Modified date long past.
const LM: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
/// Longer than a one-second freshness lifetime, on a clock that counts whole seconds.
const PAST_ONE_SECOND: Duration = Duration::from_millis(1100);

/// One step of a scripted conversation with one resource.
enum Step {
    /// Send a request and check the answer.
    Req(Req),
    /// Replace the resource's control script on the origin with these parameters.
    Script(&'static str),
    /// Remove the resource's control script.
    Clear,
}

/// A request and what must come back.
struct Req {
    method: &'static str,
    headers: Vec<(&'static str, String)>,
    body: &'static [u8],
    status: u16,
    x_cache: &'static str,
    /// The origin's request count for the resource after this request.
    hits: u64,
    /// The `version=` of the body, when checked.
    version: Option<&'static str>,
    /// The `If-None-Match` of the origin's newest logged request, when checked.
    sent_inm: Option<&'static str>,
    /// The `If-Modified-Since` of the origin's newest logged request, when checked.
    sent_ims: Option<&'static str>,
    /// Header fields the response must carry.
    fields: Vec<(&'static str, String)>,
}

/// A `GET` expected to come back as `200` with `X-Cache: x_cache`, the origin having had
/// `hits` requests for the resource afterwards.
fn get(x_cache: &'static str, hits: u64) -> Req {
    Req {
        method: "GET",
        headers: Vec::new(),
        body: b"",
        status: 200,
        x_cache,
        hits,
        version: None,
        sent_inm: None,
        sent_ims: None,
        fields: Vec::new(),
    }
}

impl Req {
    fn method(mut self, m: &'static str) -> Req {
        self.method = m;
        self
    }
    fn with(mut self, name: &'static str, value: &str) -> Req {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn body(mut self, body: &'static [u8]) -> Req {
        self.body = body;
        self
    }
    fn status(mut self, s: u16) -> Req {
        self.status = s;
        self
    }
    fn version(mut self, v: &'static str) -> Req {
        self.version = Some(v);
        self
    }
    fn sent_inm(mut self, v: &'static str) -> Req {
        self.sent_inm = Some(v);
        self
    }
    fn sent_ims(mut self, v: &'static str) -> Req {
        self.sent_ims = Some(v);
        self
    }
    fn field(mut self, name: &'static str, value: &str) -> Req {
        self.fields.push((name, value.to_owned()));
        self
    }
    fn step(self) -> Step {
        Step::Req(self)
    }
}

/// The RFC 9111 behaviour a client notices, one resource per case, all on one proxy with one
/// worker. The resource's query is its script (see `bench/src/bin/testbackend/origin.rs`).
#[test]
fn rfc9111_table() {
    let origin = Backend::start("origin");
    let proxy = start_accel_proxy(&origin, 1, CACHE);
    let now = SystemTime::now();
    let in_an_hour = encode(&http_date(now + Duration::from_secs(3600)));
    let a_year_ago = encode(&http_date(now - Duration::from_secs(365 * 86_400)));
    let lm = encode(LM);
    let cases: Vec<(&str, String, Vec<Step>)> = vec![
        (
            // §4.2: a fresh stored response is served without contacting the origin.
            "fresh hit",
            "/o/fresh?cc=max-age%3D60".into(),
            vec![
                get("MISS", 1).version("1").step(),
                Step::Script("version=2"),
                get("HIT", 1).version("1").step(),
                get("HIT", 1).version("1").step(),
            ],
        ),
        (
            // §4.3: a stored response that must be revalidated; the origin's 304 confirms
            // it, and the stored body is served even though the origin's own body changed
            // (same validator).
            "revalidation to 304",
            "/o/reval?cc=no-cache&etag=%22r1%22".into(),
            vec![
                get("MISS", 1).version("1").step(),
                Step::Script("version=2"),
                get("REVALIDATED", 2).version("1").sent_inm("\"r1\"").step(),
                get("REVALIDATED", 3).version("1").sent_inm("\"r1\"").step(),
            ],
        ),
        (
            // §4.3.3: a 200 to the conditional request replaces the stored response.
            "changed resource on revalidation",
            "/o/changed?cc=max-age%3D60&etag=%22c1%22".into(),
            vec![
                get("MISS", 1).version("1").step(),
                Step::Script("version=2&etag=%22c2%22"),
                get("MISS", 2)
                    .with("Cache-Control", "no-cache")
                    .version("2")
                    .sent_inm("\"c1\"")
                    .step(),
                get("HIT", 2).version("2").field("etag", "\"c2\"").step(),
            ],
        ),
        (
            // §4.1: one stored variant per Accept-Language value.
            "vary",
            "/o/vary?cc=max-age%3D60&vary=Accept-Language".into(),
            vec![
                get("MISS", 1)
                    .with("Accept-Language", "en")
                    .version("1")
                    .step(),
                Step::Script("version=2"),
                get("MISS", 2)
                    .with("Accept-Language", "fr")
                    .version("2")
                    .step(),
                get("HIT", 2)
                    .with("Accept-Language", "en")
                    .version("1")
                    .step(),
                get("HIT", 2)
                    .with("Accept-Language", "fr")
                    .version("2")
                    .step(),
                Step::Script("version=3"),
                get("MISS", 3).version("3").step(),
                get("HIT", 3).version("3").step(),
                get("HIT", 3)
                    .with("Accept-Language", "en")
                    .version("1")
                    .step(),
            ],
        ),
        (
            // §5.2.2.5: no-store is never stored.
            "no-store",
            "/o/nostore?cc=no-store".into(),
            vec![
                get("MISS", 1).step(),
                get("MISS", 2).step(),
                get("MISS", 3).step(),
            ],
        ),
        (
            // §5.2.2.7: a shared cache does not store private responses.
            "private",
            "/o/private?cc=private%2C%20max-age%3D60".into(),
            vec![get("MISS", 1).step(), get("MISS", 2).step()],
        ),
        (
            // §3.5: a request with Authorization is not stored by a shared cache...
            "authorization",
            "/o/auth?cc=max-age%3D60".into(),
            vec![
                get("MISS", 1).with("Authorization", "Basic YTpi").step(),
                get("MISS", 2).with("Authorization", "Basic YTpi").step(),
                get("MISS", 3).step(),
                get("HIT", 3).step(),
            ],
        ),
        (
            // ...unless the response says public,
            "authorization + public",
            "/o/authpub?cc=public%2C%20max-age%3D60".into(),
            vec![
                get("MISS", 1).with("Authorization", "Basic YTpi").step(),
                get("HIT", 1).with("Authorization", "Basic YTpi").step(),
            ],
        ),
        (
            // ...or s-maxage.
            "authorization + s-maxage",
            "/o/authsmax?cc=s-maxage%3D60".into(),
            vec![
                get("MISS", 1).with("Authorization", "Basic YTpi").step(),
                get("HIT", 1).with("Authorization", "Basic YTpi").step(),
            ],
        ),
        (
            "set-cookie is not stored",
            "/o/cookie?cc=max-age%3D60&setcookie=id%3D1".into(),
            vec![get("MISS", 1).step(), get("MISS", 2).step()],
        ),
        (
            // §5.2.1.4: request no-cache makes the cache revalidate a fresh response.
            "request no-cache",
            "/o/reqnocache?cc=max-age%3D60&etag=%22n1%22".into(),
            vec![
                get("MISS", 1).step(),
                get("REVALIDATED", 2)
                    .with("Cache-Control", "no-cache")
                    .sent_inm("\"n1\"")
                    .version("1")
                    .step(),
                get("HIT", 2).version("1").step(),
            ],
        ),
        (
            // §5.2.1.1: request max-age=0, revalidated with Last-Modified.
            "request max-age=0",
            format!("/o/reqmaxage0?cc=max-age%3D60&lm={lm}"),
            vec![
                get("MISS", 1).step(),
                get("REVALIDATED", 2)
                    .with("Cache-Control", "max-age=0")
                    .sent_ims(LM)
                    .version("1")
                    .step(),
                get("HIT", 2).step(),
            ],
        ),
        (
            // §5.3: Expires in the future gives a freshness lifetime...
            "expires in the future",
            format!("/o/expfuture?expires={in_an_hour}"),
            vec![get("MISS", 1).step(), get("HIT", 1).step()],
        ),
        (
            // ...in the past, none.
            "expires in the past",
            "/o/exppast?expires=Thu%2C%2001%20Jan%202015%2000%3A00%3A00%20GMT".into(),
            vec![get("MISS", 1).step(), get("MISS", 2).step()],
        ),
        (
            // §4.2.2: heuristic freshness for a heuristically cacheable status...
            "heuristic freshness",
            format!("/o/heuristic?lm={a_year_ago}"),
            vec![get("MISS", 1).step(), get("HIT", 1).step()],
        ),
        (
            // ...and none for a status that is not (500).
            "no heuristic freshness for 500",
            format!("/o/heuristic500?status=500&lm={a_year_ago}"),
            vec![
                get("MISS", 1).status(500).step(),
                get("MISS", 2).status(500).step(),
            ],
        ),
        (
            // §4: HEAD is answered from the stored GET response.
            "head from a get",
            "/o/head?cc=max-age%3D60&body=3000".into(),
            vec![
                get("MISS", 1).step(),
                get("HIT", 1)
                    .method("HEAD")
                    .field("content-length", "3000")
                    .step(),
            ],
        ),
        (
            // §4.3.2: the cache answers a client's own conditional request.
            "client conditional answered from the cache",
            format!("/o/clientcond?cc=max-age%3D60&etag=%22k1%22&lm={lm}"),
            vec![
                get("MISS", 1).step(),
                get("HIT", 1)
                    .with("If-None-Match", "\"k1\"")
                    .status(304)
                    .field("etag", "\"k1\"")
                    .step(),
                get("HIT", 1)
                    .with("If-None-Match", "W/\"k1\"")
                    .status(304)
                    .step(),
                get("HIT", 1)
                    .with("If-None-Match", "\"other\"")
                    .version("1")
                    .step(),
                get("HIT", 1)
                    .with("If-Modified-Since", LM)
                    .status(304)
                    .step(),
                get("HIT", 1)
                    .with("If-Modified-Since", "Tue, 20 Oct 2015 07:28:00 GMT")
                    .version("1")
                    .step(),
            ],
        ),
        (
            // Requests that go around the cache: not GET/HEAD, Range, no-store, a body.
            "bypass",
            "/o/bypass?cc=max-age%3D60".into(),
            vec![
                get("BYPASS", 1).method("POST").step(),
                get("MISS", 2).step(),
                get("BYPASS", 3).with("Range", "bytes=0-9").step(),
                get("BYPASS", 4).with("Cache-Control", "no-store").step(),
                get("BYPASS", 5).body(b"abc").step(),
                get("HIT", 5).step(),
            ],
        ),
        (
            // §4.4: a successful unsafe request invalidates the URL; a failed one does not.
            "invalidation",
            "/o/invalidate?cc=max-age%3D60".into(),
            vec![
                get("MISS", 1).step(),
                get("HIT", 1).step(),
                get("BYPASS", 2).method("POST").step(),
                get("MISS", 3).step(),
                get("HIT", 3).step(),
                Step::Script("status=403"),
                get("BYPASS", 4).method("POST").status(403).step(),
                Step::Clear,
                get("HIT", 4).step(),
                get("BYPASS", 5).method("DELETE").step(),
                get("MISS", 6).step(),
                get("BYPASS", 7).method("PUT").step(),
                get("MISS", 8).step(),
            ],
        ),
    ];
    // Every case runs; the failures are reported together.
    let failed: Vec<&str> = cases
        .iter()
        .filter(|(name, target, steps)| {
            let run = || run_case(&proxy, &origin, name, target, steps);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err()
        })
        .map(|(name, _, _)| *name)
        .collect();
    assert!(failed.is_empty(), "failed cases (see above): {failed:?}");
}

/// Runs the steps of one case against `target`, each on a fresh connection.
fn run_case(proxy: &Proxy, origin: &Backend, name: &str, target: &str, steps: &[Step]) {
    for (i, step) in steps.iter().enumerate() {
        let req = match step {
            Step::Script(params) => {
                script(origin, target, params);
                continue;
            }
            Step::Clear => {
                clear_script(origin, target);
                continue;
            }
            Step::Req(req) => req,
        };
        let what = format!("case {name:?}, step {i}: {} {target}", req.method);
        let headers: Vec<(&str, &str)> =
            req.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = request(proxy.addr, req.method, target, &headers, req.body);
        check(&r, req.status, req.x_cache, &what);
        assert_eq!(origin_hits(origin, target), req.hits, "{what}: origin hits");
        if let Some(v) = req.version {
            assert_eq!(
                body_version(&r.body).as_deref(),
                Some(v),
                "{what}: {}",
                r.summary()
            );
        }
        for (field, value) in &req.fields {
            assert_eq!(
                r.header(field),
                Some(value.as_str()),
                "{what}: {}",
                r.summary()
            );
        }
        if req.sent_inm.is_some() || req.sent_ims.is_some() {
            let log = origin_log(origin, target);
            let last = log
                .last()
                .unwrap_or_else(|| panic!("{what}: empty origin log"));
            if let Some(inm) = req.sent_inm {
                assert_eq!(last.if_none_match.as_deref(), Some(inm), "{what}: {last:?}");
            }
            if let Some(ims) = req.sent_ims {
                assert_eq!(
                    last.if_modified_since.as_deref(),
                    Some(ims),
                    "{what}: {last:?}"
                );
            }
        }
    }
}

/// Asserts the status and `X-Cache` of `r`, and that a response served from the cache says
/// how old it is.
fn check(r: &Response, status: u16, x_cache: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.summary());
    assert_eq!(
        r.header("x-cache"),
        Some(x_cache),
        "{what}: {}",
        r.summary()
    );
    if matches!(x_cache, "HIT" | "STALE" | "REVALIDATED") {
        let age = r
            .header("age")
            .unwrap_or_else(|| panic!("{what}: no Age: {}", r.summary()));
        assert!(age.parse::<u64>().is_ok(), "{what}: Age {age:?}");
    }
}

/// One `GET target` through the proxy on a fresh connection.
fn fetch(proxy: &Proxy, target: &str, headers: &[(&str, &str)]) -> Response {
    request(proxy.addr, "GET", target, headers, b"")
}

/// Freshness ends: with a validator the next request is revalidated (304 from the origin),
/// without one it is fetched again.
#[test]
fn expiry_revalidates_or_refetches() {
    let origin = Backend::start("origin");
    let proxy = start_accel_proxy(&origin, 1, CACHE);
    let with_etag = "/o/exp-etag?cc=max-age%3D1&etag=%22x1%22";
    let with_lm = format!("/o/exp-lm?cc=max-age%3D1&lm={}", encode(LM));
    let plain = "/o/exp-plain?cc=max-age%3D1";
    // Fresh for a minute, but a request with max-age=0 refuses it once it is a second old.
    let aged = "/o/exp-aged?cc=max-age%3D60&etag=%22a1%22";
    for t in [with_etag, &with_lm, plain, aged] {
        check(&fetch(&proxy, t, &[]), 200, "MISS", t);
    }
    std::thread::sleep(PAST_ONE_SECOND);
    let r = fetch(&proxy, with_etag, &[]);
    check(&r, 200, "REVALIDATED", with_etag);
    assert_eq!(body_version(&r.body).as_deref(), Some("1"));
    let log = origin_log(&origin, with_etag);
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].if_none_match.as_deref(), Some("\"x1\""), "{log:?}");

    let r = fetch(&proxy, &with_lm, &[]);
    check(&r, 200, "REVALIDATED", &with_lm);
    let log = origin_log(&origin, &with_lm);
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].if_modified_since.as_deref(), Some(LM), "{log:?}");

    let r = fetch(&proxy, plain, &[]);
    check(&r, 200, "MISS", plain);
    let log = origin_log(&origin, plain);
    assert_eq!(log.len(), 2);
    assert!(!log[1].is_conditional(), "{log:?}");

    check(&fetch(&proxy, aged, &[]), 200, "HIT", aged);
    let r = fetch(&proxy, aged, &[("Cache-Control", "max-age=0")]);
    check(&r, 200, "REVALIDATED", "request max-age=0, age 1 s or more");
    let log = origin_log(&origin, aged);
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].if_none_match.as_deref(), Some("\"a1\""), "{log:?}");
}

/// stale-while-revalidate (RFC 5861 §3): the stale response is served at once, then the same
/// connection refreshes the entry before it reads its next request.
#[test]
fn stale_while_revalidate_serves_then_refreshes() {
    let origin = Backend::start("origin");
    let proxy = start_accel_proxy(&origin, 1, CACHE);
    let target = "/o/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D30&etag=%22s1%22";
    check(&fetch(&proxy, target, &[]), 200, "MISS", target);
    // The refresh gets a new version, slowly, fresh for a minute.
    script(
        &origin,
        target,
        "version=2&etag=%22s2%22&cc=max-age%3D60&delay_ms=1500",
    );
    std::thread::sleep(PAST_ONE_SECOND);

    let mut c = Client::connect(proxy.addr);
    let started = Instant::now();
    let r = c.request(&request_text("GET", target, &[]));
    let waited = started.elapsed();
    check(&r, 200, "STALE", "stale request");
    assert_eq!(
        body_version(&r.body).as_deref(),
        Some("1"),
        "{}",
        r.summary()
    );
    assert!(
        waited < Duration::from_millis(1200),
        "the stale response waited {waited:?} for the 1.5 s refresh"
    );
    // The next request on the same connection is read after the refresh: the new version.
    let r = c.request(&request_text("GET", target, &[]));
    check(&r, 200, "HIT", "request after the refresh");
    assert_eq!(
        body_version(&r.body).as_deref(),
        Some("2"),
        "{}",
        r.summary()
    );
    assert_eq!(origin_hits(&origin, target), 2);
    let log = origin_log(&origin, target);
    assert_eq!(log[1].if_none_match.as_deref(), Some("\"s1\""), "{log:?}");

    let r = fetch(&proxy, target, &[]);
    check(&r, 200, "HIT", "another connection");
    assert_eq!(body_version(&r.body).as_deref(), Some("2"));
    assert_eq!(origin_hits(&origin, target), 2);
}

/// stale-if-error (RFC 5861 §4): an origin 5xx is hidden behind the stale response within the
/// window; without the directive the error reaches the client.
#[test]
fn stale_if_error_hides_origin_errors() {
    let origin = Backend::start("origin");
    let proxy = start_accel_proxy(&origin, 1, CACHE);
    let covered = "/o/sie?cc=max-age%3D1%2C%20stale-if-error%3D60";
    let bare = "/o/sie-bare?cc=max-age%3D1";
    for t in [covered, bare] {
        check(&fetch(&proxy, t, &[]), 200, "MISS", t);
        script(&origin, t, "status=503&version=2");
    }
    std::thread::sleep(PAST_ONE_SECOND);

    let r = fetch(&proxy, covered, &[]);
    check(&r, 200, "STALE", covered);
    assert_eq!(
        body_version(&r.body).as_deref(),
        Some("1"),
        "{}",
        r.summary()
    );
    assert_eq!(origin_hits(&origin, covered), 2, "the origin was asked");

    let r = fetch(&proxy, bare, &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(
        body_version(&r.body).as_deref(),
        Some("2"),
        "{}",
        r.summary()
    );
    assert_eq!(origin_hits(&origin, bare), 2);

    // Once the origin recovers, its answer is stored again.
    clear_script(&origin, covered);
    let r = fetch(&proxy, covered, &[]);
    check(&r, 200, "MISS", "after recovery");
    check(&fetch(&proxy, covered, &[]), 200, "HIT", "after recovery");
}

/// The admin purge removes one URL, or every URL under a prefix, keyed by the Host the client
/// sent without its port.
#[test]
fn purge_by_url_and_prefix() {
    let origin = Backend::start("origin");
    let proxy = start_accel_proxy(&origin, 1, CACHE);
    let host = format!("127.0.0.1:{}", proxy.addr.port());
    let h = [("Host", host.as_str())];
    let one = "/o/purge/one?cc=max-age%3D60";
    let dir_a = "/o/purge/dir/a?cc=max-age%3D60";
    let dir_b = "/o/purge/dir/b?cc=max-age%3D60";
    let other = "/o/purge/other?cc=max-age%3D60";
    let all = [one, dir_a, dir_b, other];
    for t in all {
        check(&fetch(&proxy, t, &h), 200, "MISS", t);
        check(&fetch(&proxy, t, &h), 200, "HIT", t);
    }
    let purge = |query: String| {
        let r = proxy.admin_post(&format!("/cache/purge?{query}"));
        assert_eq!(r.status, 200, "purge {query}: {}", r.summary());
    };
    // Another host's URL purges nothing here.
    purge(format!(
        "url={}",
        encode(&format!("http://cache.test{one}"))
    ));
    check(&fetch(&proxy, one, &h), 200, "HIT", "other host purged");

    purge(format!("url={}", encode(&format!("http://127.0.0.1{one}"))));
    check(&fetch(&proxy, one, &h), 200, "MISS", "purged url");
    for t in [dir_a, dir_b, other] {
        check(&fetch(&proxy, t, &h), 200, "HIT", t);
    }

    purge(format!(
        "prefix={}",
        encode("http://127.0.0.1/o/purge/dir/")
    ));
    check(&fetch(&proxy, dir_a, &h), 200, "MISS", "purged prefix a");
    check(&fetch(&proxy, dir_b, &h), 200, "MISS", "purged prefix b");
    check(&fetch(&proxy, other, &h), 200, "HIT", "outside the prefix");
    check(&fetch(&proxy, one, &h), 200, "HIT", "stored again");
    assert_eq!(origin_hits(&origin, other), 1);
    assert_eq!(origin_hits(&origin, dir_a), 2);

    let r = proxy.admin_post("/cache/purge");
    assert_eq!(r.status, 400, "a purge without a URL: {}", r.summary());
}

/// Responses over `max_object_bytes` stream through whole (known length and chunked) and are
/// never served from the cache; one just under the limit is.
#[test]
fn large_objects_stream_through_unstored() {
    let origin = Backend::start("origin");
    let proxy = start_accel_proxy(
        &origin,
        1,
        r#"cache = { max_bytes = "4MiB", max_object_bytes = "64KiB" }"#,
    );
    for target in [
        "/o/large?cc=max-age%3D60&body=200000",
        "/o/large-chunked?cc=max-age%3D60&body=200000&chunked=1",
    ] {
        let want = origin_get(&origin, target, &[]).body;
        assert_eq!(want.len(), 200_000);
        for n in 2..=3 {
            let r = fetch(&proxy, target, &[]);
            check(&r, 200, "MISS", target);
            assert!(r.body == want, "{target}: body differs: {}", r.summary());
            assert_eq!(origin_hits(&origin, target), n);
        }
    }
    let small = "/o/under-limit?cc=max-age%3D60&body=60000";
    check(&fetch(&proxy, small, &[]), 200, "MISS", small);
    let r = fetch(&proxy, small, &[]);
    check(&r, 200, "HIT", small);
    assert_eq!(r.body.len(), 60_000);
}

/// The store stays within its byte budget under many unique keys, evicting the least
/// recently used.
#[test]
fn byte_budget_is_kept() {
    const MAX: f64 = 256.0 * 1024.0;
    const KEYS: usize = 2000;
    let origin = Backend::start("origin");
    let proxy = start_accel_proxy(
        &origin,
        1,
        r#"cache = { max_bytes = "256KiB", max_object_bytes = "16KiB" }"#,
    );
    let target = |i: usize| format!("/o/budget/{i}?cc=max-age%3D600&body=1024");
    let tally = drive_requests(proxy.addr, KEYS, 4, Duration::from_secs(15), |i| {
        DriveRequest {
            path: target(i),
            headers: vec![("Host".to_owned(), CACHE_HOST.to_owned())],
        }
    });
    assert_eq!(
        tally.by_status.get(&200),
        Some(&KEYS),
        "{}",
        tally.summary()
    );

    let m = proxy.metrics_when(Duration::from_secs(3), |m| {
        m.get("ringway_cache_bytes{worker=\"all\"}")
            .is_some_and(|&b| b > 0.0)
    });
    let series = |name: &str| -> f64 {
        *m.get(&format!("{name}{{worker=\"all\"}}"))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    let bytes = series("ringway_cache_bytes");
    let entries = series("ringway_cache_entries");
    assert!(
        bytes > 0.0 && bytes <= MAX,
        "ringway_cache_bytes {bytes} over {MAX}"
    );
    assert!(series("ringway_cache_evictions_total") > 0.0);
    assert!(
        entries > 0.0 && entries < KEYS as f64,
        "entries {entries} of {KEYS} keys of 1 KiB in 256 KiB"
    );
    assert_eq!(series("ringway_cache_stored_total"), KEYS as f64);
    assert_eq!(series("ringway_cache_misses_total"), KEYS as f64);

    // The newest key is still there; the oldest was evicted.
    check(
        &fetch(&proxy, &target(KEYS - 1), &[]),
        200,
        "HIT",
        "newest key",
    );
    check(&fetch(&proxy, &target(0), &[]), 200, "MISS", "oldest key");
}

/// Concurrent misses for one key wait for one upstream fetch per worker; without the cache
/// every request reaches the origin.
#[test]
fn concurrent_misses_coalesce() {
    const CLIENTS: usize = 100;
    const DELAY: Duration = Duration::from_millis(1000);
    common::raise_nofile(4096);
    let origin = Backend::start("origin");
    let cached = start_accel_proxy(&origin, 2, CACHE);
    let uncached = start_accel_proxy(&origin, 2, "");
    for (proxy, target, cache_on) in [
        (
            &cached,
            "/o/coalesce?cc=max-age%3D60&delay_ms=1000&body=5000",
            true,
        ),
        (
            &uncached,
            "/o/no-coalesce?cc=max-age%3D60&delay_ms=1000&body=5000",
            false,
        ),
    ] {
        let started = Instant::now();
        let mut clients: Vec<Client> = (0..CLIENTS)
            .map(|_| {
                let s = TcpStream::connect(proxy.addr).expect("connect to the proxy");
                let mut c = Client::from_stream(s);
                c.send(request_text("GET", target, &[("Connection", "close")]));
                c
            })
            .collect();
        let sent = started.elapsed();
        assert!(
            sent < DELAY,
            "sending {CLIENTS} requests took {sent:?}, longer than the origin's delay"
        );
        let want = origin_get(&origin, "/o/reference?body=5000", &[]).body;
        let mut statuses = std::collections::HashMap::<String, usize>::new();
        for (i, c) in clients.iter_mut().enumerate() {
            let r = c
                .read_response()
                .unwrap_or_else(|e| panic!("{target}: client {i}: {e}"));
            assert_eq!(r.status, 200, "{target}: client {i}: {}", r.summary());
            assert!(r.body == want, "{target}: client {i}: {}", r.summary());
            let x = r.header("x-cache").unwrap_or("none").to_owned();
            *statuses.entry(x).or_default() += 1;
        }
        let hits = origin_hits(&origin, target);
        if cache_on {
            assert!(
                (1..=2).contains(&hits),
                "{hits} origin requests for {CLIENTS} coalesced misses on 2 workers; x-cache {statuses:?}"
            );
            assert_eq!(
                statuses.get("MISS").copied().unwrap_or(0) as u64,
                hits,
                "{statuses:?}"
            );
            assert_eq!(
                statuses.get("HIT").copied().unwrap_or(0) as u64,
                CLIENTS as u64 - hits,
                "{statuses:?}"
            );
        } else {
            assert_eq!(
                hits, CLIENTS as u64,
                "without the cache every request goes upstream"
            );
        }
    }
}

/// HTTP/2 clients: a fresh entry is a HIT; a stale one within stale-while-revalidate is
/// answered at once from the store while the stream goes on to refresh it; and concurrent
/// streams for one URL on one worker reach the origin once.
#[test]
fn http2_clients_hit_get_stale_while_revalidating_and_coalesce() {
    use common::h2::{run, Body as H2Body, H2};
    use http::Method;
    let origin = Backend::start("origin-h2");
    let proxy = start_accel_proxy(&origin, 1, CACHE);
    let swr = "/o/h2swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D30&etag=%22a1%22";
    let slow = "/o/h2coalesce?cc=max-age%3D60&delay_ms=700";
    run(Duration::from_secs(20), async {
        let mut h = H2::h2c(proxy.addr, common::origin::CACHE_HOST)
            .await
            .expect("h2c connection");
        let r = h.must_get(swr).await;
        assert_eq!(r.header("x-cache"), Some("MISS"));
        let r = h.must_get(swr).await;
        assert_eq!(r.header("x-cache"), Some("HIT"));
        assert!(r.header("age").is_some());
        script(
            &origin,
            swr,
            "version=2&etag=%22a2%22&cc=max-age%3D60&delay_ms=1500",
        );
        tokio::time::sleep(PAST_ONE_SECOND).await;
        let started = Instant::now();
        let r = h.must_get(swr).await;
        assert_eq!(r.header("x-cache"), Some("STALE"), "{}", r.summary());
        assert_eq!(body_version(&r.body).as_deref(), Some("1"));
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "the stale answer waited {:?} for the refresh",
            started.elapsed()
        );
        // The refresh goes on after the answer: poll (bounded) until the new version is in.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = h.must_get(swr).await;
            if body_version(&r.body).as_deref() == Some("2") {
                assert_eq!(r.header("x-cache"), Some("HIT"), "{}", r.summary());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never refreshed: {}",
                r.summary()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = origin_log(&origin, swr);
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[1].if_none_match.as_deref(), Some("\"a1\""), "{log:?}");

        // 20 streams at once for a slow URL: one origin request, 20 identical bodies.
        let mut pending = Vec::new();
        for _ in 0..20 {
            let req = h.req(Method::GET, slow).body(()).expect("request");
            pending.push(h.start(req, H2Body::none()).await.expect("stream"));
        }
        let mut bodies = Vec::new();
        for p in pending {
            let resp = p.await.expect("response");
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("body");
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            bodies.push(bytes);
        }
        assert!(bodies.iter().all(|b| b == &bodies[0] && !b.is_empty()));
        assert_eq!(origin_hits(&origin, slow), 1, "coalesced into one fetch");
    });
}

/// Regressions found in review: a HEAD miss must not store an empty body for later GETs; a
/// gzip client's revalidation must not put its compressed bytes where identity clients look;
/// `only-if-cached` with nothing stored is a 504 without asking the origin.
#[test]
fn head_misses_coded_revalidations_and_only_if_cached() {
    let origin = Backend::start("origin-review");
    let both = format!("{CACHE}\ncompress = {{}}");
    let proxy = start_accel_proxy(&origin, 1, &both);

    let head_first = "/o/head-first?cc=max-age%3D60&body=600";
    let r = request(proxy.addr, "HEAD", head_first, &[], b"");
    assert_eq!(r.status, 200);
    let r = fetch(&proxy, head_first, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body.len(),
        600,
        "a GET after a HEAD miss: {}",
        r.summary()
    );
    let r = fetch(&proxy, head_first, &[]);
    assert_eq!((r.header("x-cache"), r.body.len()), (Some("HIT"), 600));

    let coded = "/o/coded-reval?cc=max-age%3D1&etag=%22c1%22&ct=text/html&body=3000";
    let plain = fetch(&proxy, coded, &[]);
    assert_eq!(plain.header("x-cache"), Some("MISS"));
    let gz = fetch(&proxy, coded, &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    std::thread::sleep(PAST_ONE_SECOND);
    let r = fetch(&proxy, coded, &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("x-cache"), Some("REVALIDATED"), "{}", r.summary());
    for headers in [&[][..], &[("Accept-Encoding", "br")][..]] {
        let r = fetch(&proxy, coded, headers);
        let want = headers.first().map(|_| "br");
        assert_eq!(
            r.header("content-encoding"),
            want,
            "{headers:?}: {}",
            r.summary()
        );
        if want.is_none() {
            assert_eq!(
                r.body, plain.body,
                "identity bytes after a gzip revalidation"
            );
        }
    }

    let unknown = "/o/only-if-cached?cc=max-age%3D60";
    let r = fetch(&proxy, unknown, &[("Cache-Control", "only-if-cached")]);
    assert_eq!(r.status, 504, "{}", r.summary());
    assert_eq!(origin_hits(&origin, unknown), 0);
    check(&fetch(&proxy, unknown, &[]), 200, "MISS", unknown);
    let r = fetch(&proxy, unknown, &[("Cache-Control", "only-if-cached")]);
    check(&r, 200, "HIT", "only-if-cached with a fresh entry");
}
