//! End-to-end resilience of Ringway's load balancing, against real backend processes that are
//! SIGKILLed and restarted: passive outlier detection and retries hide a backend killed under
//! load (no failed idempotent request), and it takes traffic again after its ejection; active
//! health checks take a killed backend out of rotation (and bring it back) with retries off;
//! the circuit breaker answers 503 at once beyond `max_connections` with no queue, and queues
//! with `max_pending`; the retry budget caps retries of a failing endpoint (503 or refused
//! connections) while an uncapped budget retries them all; an admin drain lets in-flight
//! requests finish and sends new ones elsewhere (and `enable` undoes it); and an endpoint
//! given by name is re-resolved through `server.hosts_file`, following the name to a new
//! address, to two addresses, and keeping its last addresses when the name stops resolving,
//! without a failed request on the way.
//!
//! The proxy runs two workers; balancer state (round robin, ejection, retry budget, circuit
//! breaker) is per worker, and the tolerances below say how each assertion allows for that.

mod common;

use common::lb::{
    cluster, drive, drive_requests, get_once, lb_config, start_lb_proxy, Backend, DriveRequest,
    Tally,
};
use common::{temp_file, Client, Proxy};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers: bounded polling, the `/upstreams` JSON (read with a small string search: no JSON
// library among the dev-dependencies) and the upstream series of `/metrics`.
// ---------------------------------------------------------------------------------------------

/// Polls `ok` every 20 ms until it holds; panics (saying `what`) if it does not within
/// `timeout`. Returns how long it took.
fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if ok() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `GET /upstreams` JSON.
fn upstreams(proxy: &Proxy) -> String {
    let r = proxy.admin_get("/upstreams");
    assert_eq!(r.status, 200, "GET /upstreams: {}", r.summary());
    r.body_text()
}

/// The JSON object of the endpoint whose current address is `addr` in `GET /upstreams`.
/// Endpoint objects hold no nested objects, so the object is the text between the `{` before
/// the address and the next `}`.
fn endpoint_view(proxy: &Proxy, addr: SocketAddr) -> String {
    let json = upstreams(proxy);
    let needle = format!("\"addr\":\"{addr}\"");
    let at = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no endpoint {addr} in /upstreams: {json}"));
    let start = json[..at].rfind('{').expect("endpoint object start");
    let end = at + json[at..].find('}').expect("endpoint object end");
    json[start..=end].to_owned()
}

/// The raw value of `key` in a flat JSON object (strings without their quotes). Values in
/// `/upstreams` endpoint objects hold no commas.
fn json_field<'a>(obj: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\":");
    let at = obj
        .find(&needle)
        .unwrap_or_else(|| panic!("no `{key}` in {obj}"))
        + needle.len();
    let rest = &obj[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim_matches('"')
}

/// A numeric field of a flat JSON object.
fn json_u64(obj: &str, key: &str) -> u64 {
    json_field(obj, key)
        .parse()
        .unwrap_or_else(|_| panic!("`{key}` is not a number in {obj}"))
}

/// The `health` of endpoint `addr` in `/upstreams`: `unchecked`, `up` or `down`.
fn health_of(proxy: &Proxy, addr: SocketAddr) -> String {
    json_field(&endpoint_view(proxy, addr), "health").to_owned()
}

/// `ringway_upstream_endpoint_<name>{cluster="app",endpoint="<addr>"}`.
fn endpoint_metric(proxy: &Proxy, name: &str, addr: SocketAddr) -> f64 {
    proxy.metric(&format!(
        "ringway_upstream_endpoint_{name}{{cluster=\"app\",endpoint=\"{addr}\"}}"
    ))
}

/// `ringway_upstream_<name>{cluster="app"}`.
fn cluster_metric(proxy: &Proxy, name: &str) -> f64 {
    proxy.metric(&format!("ringway_upstream_{name}{{cluster=\"app\"}}"))
}

/// `POST path` on the admin endpoint; returns the status and body.
fn admin_post(proxy: &Proxy, path: &str) -> (u16, String) {
    let r = proxy.admin_post(path);
    (r.status, r.body_text())
}

// ---------------------------------------------------------------------------------------------
// 1. A backend killed under load.
// ---------------------------------------------------------------------------------------------

/// Passive detection: with default retries (connect failure, reset) and outlier ejection after
/// 3 consecutive failures, a backend SIGKILLed in the middle of a 3,000-request load costs the
/// clients nothing — requests in flight on it are retried elsewhere, and new ones stop going
/// to it once each worker has ejected it. `/upstreams` and `/metrics` show the ejection and the
/// failures; restarted, the backend takes traffic again once its (1 s) ejection ends.
#[test]
fn killed_backend_costs_no_request_and_returns_after_its_ejection() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut c = Backend::start("c");
    let (proxy, _config) = start_lb_proxy(&cluster(
        "app",
        &[&a, &b, &c],
        r#"outlier = { consecutive_failures = 3, base_ejection = "1s" }"#,
    ));
    let dead = c.addr;

    let addr = proxy.addr;
    let load = std::thread::spawn(move || drive(addr, 3000, 8, "/", &[], Duration::from_secs(30)));
    // Kill once the load is under way: `c` has served 100 requests (about a tenth of its third).
    wait_until(
        "c to serve 100 requests of the load",
        Duration::from_secs(10),
        || c.stats().requests >= 100,
    );
    c.kill();
    let t = load.join().expect("load thread");

    // Every request was answered 200. The kill can only hit requests before their response
    // started: the backend writes each response (head and body, a few dozen bytes) with one
    // write, so a request in flight there sees its connection close with no response byte.
    // That is a reset of an idempotent GET (retried on another endpoint; on a reused pooled
    // connection, first on a fresh connection to the same endpoint, which is refused, which is
    // a connect failure, retried elsewhere); later picks of the dead backend are connect
    // failures, retried too, until the worker ejects it after 3 in a row. The retry budget
    // (20 % of the requests plus 30 per worker) is far above the handful of retries needed.
    assert_eq!(
        (t.failures(), t.unsent, t.answered()),
        (0, 0, 3000),
        "{}",
        t.summary()
    );
    // The kill happened during the load: `c` answered far less than its third (1,000).
    assert!(
        (100..900).contains(&t.count("c")),
        "c should have answered from 100 requests up to well below its third: {}",
        t.summary()
    );

    // Ejection is per worker; `ejections` sums both workers' ejections (at least the first
    // one that saw 3 failures in a row; both, usually). The failures are the tries that died
    // on `c`: resets at the kill and refused connects before the ejection.
    let view = endpoint_view(&proxy, dead);
    assert!(json_u64(&view, "ejections") >= 1, "{view}");
    assert!(json_u64(&view, "failures") > 0, "{view}");
    assert!(endpoint_metric(&proxy, "ejections_total", dead) >= 1.0);
    assert!(endpoint_metric(&proxy, "failures_total", dead) > 0.0);
    assert!(
        cluster_metric(&proxy, "retries_total") > 0.0,
        "the failed tries were retried"
    );
    for live in [a.addr, b.addr] {
        let v = endpoint_view(&proxy, live);
        assert_eq!(json_u64(&v, "ejections"), 0, "{v}");
    }

    // Back on the same port: once the ejection ends (1 s base; n × 1 s after the n-th ejection
    // in a row, and the load after the kill is too short for more than two or three), round
    // robin sends it its share again. Small batches, bounded: 8 s covers three ejections in a
    // row and a slow machine.
    c.restart();
    let mut seen = Tally::default();
    let took = wait_until(
        "the restarted backend to take traffic again",
        Duration::from_secs(8),
        || {
            let t = drive(proxy.addr, 30, 2, "/", &[], Duration::from_secs(10));
            assert_eq!(t.failures(), 0, "after the restart: {}", t.summary());
            seen = t;
            c.stats().requests > 0
        },
    );
    assert!(seen.count("c") > 0, "{} after {took:?}", seen.summary());
    let t = drive(proxy.addr, 300, 4, "/", &[], Duration::from_secs(30));
    assert_eq!(t.failures(), 0, "{}", t.summary());
    assert!(t.count("c") > 0, "{}", t.summary());
}

/// Active detection: with an HTTP health check every 200 ms (down after 2 failures, up after
/// 1 success) and retries off, a killed backend is marked down within fall × interval plus
/// slack, after which no request goes to it (with retries off, any that did would fail);
/// restarted, it is up again within a few intervals and takes traffic.
#[test]
fn health_checks_take_a_killed_backend_out_and_bring_it_back() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut c = Backend::start("c");
    let (proxy, _config) = start_lb_proxy(&cluster(
        "app",
        &[&a, &b, &c],
        "health = { path = \"/healthz\", interval = \"200ms\", timeout = \"300ms\", rise = 1, fall = 2 }\n\
         retry = { retries = 0 }",
    ));
    for be in [&a, &b, &c] {
        wait_until(
            &format!("{} to be up", be.name),
            Duration::from_secs(3),
            || health_of(&proxy, be.addr) == "up",
        );
    }
    let t = drive(proxy.addr, 300, 4, "/", &[], Duration::from_secs(30));
    assert_eq!(t.failures(), 0, "{}", t.summary());
    assert!(t.count("c") > 0, "{}", t.summary());

    // Down after 2 failed checks 200 ms apart: ~400 ms; 3 s leaves room for a busy machine.
    let dead = c.addr;
    c.kill();
    wait_until(
        "the killed backend to be down",
        Duration::from_secs(3),
        || health_of(&proxy, dead) == "down",
    );
    assert_eq!(
        endpoint_metric(&proxy, "healthy", dead),
        0.0,
        "/metrics agrees"
    );

    // Down means never picked: with retries off, a request sent to it would come back 502.
    let before = endpoint_metric(&proxy, "requests_total", dead);
    let t = drive(proxy.addr, 500, 4, "/", &[], Duration::from_secs(30));
    assert_eq!(
        (t.failures(), t.unsent, t.count("a") + t.count("b")),
        (0, 0, 500),
        "{}",
        t.summary()
    );
    assert_eq!(
        endpoint_metric(&proxy, "requests_total", dead),
        before,
        "no try went to the down endpoint"
    );

    // Up after 1 passing check: the next check, 200 ms away; 3 s of slack again.
    c.restart();
    wait_until(
        "the restarted backend to be up",
        Duration::from_secs(3),
        || health_of(&proxy, dead) == "up",
    );
    let t = drive(proxy.addr, 300, 4, "/", &[], Duration::from_secs(30));
    assert_eq!(t.failures(), 0, "{}", t.summary());
    // Round robin gives each of the three a third (exactly, per worker); > 0 is what matters.
    assert!(t.count("c") > 0, "{}", t.summary());
    assert_eq!(c.stats().requests as usize, t.count("c"));
}

// ---------------------------------------------------------------------------------------------
// 2. Circuit breaking.
// ---------------------------------------------------------------------------------------------

/// One request's outcome in [`concurrent_requests`]: status, `X-Backend`, completion time.
struct Done {
    status: u16,
    backend: Option<String>,
    at: Instant,
}

/// Opens `n` connections to the proxy first (so each is already on its worker), then sends a
/// `GET /` on all of them at once and reads the answers; returns them with their completion
/// times. Transport errors panic (the circuit breaker answers, it does not drop).
fn concurrent_requests(addr: SocketAddr, n: usize) -> Vec<Done> {
    let streams: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(addr).expect("connect to the proxy"))
        .collect();
    let go = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .into_iter()
            .map(|stream| {
                let go = &go;
                s.spawn(move || {
                    let mut c = Client::from_stream(stream);
                    go.wait();
                    c.try_send(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
                        .expect("send");
                    let r = c.read_response().expect("a response");
                    Done {
                        status: r.status,
                        backend: r.header("x-backend").map(str::to_owned),
                        at: Instant::now(),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

/// `max_connections = 1` and `max_pending = 0`: each worker lets one request at a time reach
/// the (1 s slow) backend and refuses the others at once with 503, long before the admitted
/// requests' 200s. With `max_pending = 10` the same burst is queued instead, and every request
/// gets its 200 from the backend.
#[test]
fn circuit_breaker_refuses_at_once_without_a_queue_and_queues_with_one() {
    let slow = Backend::start_with("slow", &["--delay-ms", "1000"]);
    let (proxy, _config) = start_lb_proxy(&cluster(
        "app",
        &[&slow],
        "max_connections = 1\nmax_pending = 0",
    ));
    let done = concurrent_requests(proxy.addr, 6);
    let ok: Vec<&Done> = done.iter().filter(|d| d.status == 200).collect();
    let refused: Vec<&Done> = done.iter().filter(|d| d.status == 503).collect();
    let summary: Vec<_> = done.iter().map(|d| (d.status, &d.backend)).collect();
    assert_eq!(
        ok.len() + refused.len(),
        6,
        "only 200s and 503s: {summary:?}"
    );
    // One slot per worker, two workers: at most 2 requests reach the backend (1 if all six
    // connections landed on one worker); at least one does.
    assert!((1..=2).contains(&ok.len()), "{summary:?}");
    assert!(ok.iter().all(|d| d.backend.as_deref() == Some("slow")));
    // The refusals are the proxy's own (no backend answered them)...
    assert!(refused.iter().all(|d| d.backend.is_none()), "{summary:?}");
    // ...and came at once: every 503 arrived before the first 200, which the backend held
    // back for 1 s (ordering, not a time threshold).
    let first_ok = ok.iter().map(|d| d.at).min().expect("a 200");
    let last_refused = refused.iter().map(|d| d.at).max().expect("a 503");
    assert!(
        last_refused < first_ok,
        "a 503 came {:?} after the first 200",
        last_refused - first_ok
    );
    assert_eq!(
        cluster_metric(&proxy, "circuit_open_total"),
        refused.len() as f64
    );
    let stats = slow.stats();
    assert_eq!(stats.requests as usize, ok.len(), "{stats:?}");
    assert!(stats.max_inflight <= 2, "{stats:?}");
    drop(proxy);

    // With a queue of 10 per endpoint per worker, nothing is refused. A queued request waits
    // at most `timeouts.upstream_connect` (3 s by default) for its slot; if all six connections
    // landed on one worker the last would wait 5 s, so the limit is raised to 10 s here.
    slow.reset();
    let (proxy, _config) = start_lb_proxy(&format!(
        "{}\n[timeouts]\nupstream_connect = \"10s\"\n",
        cluster("app", &[&slow], "max_connections = 1\nmax_pending = 10")
    ));
    let done = concurrent_requests(proxy.addr, 6);
    let summary: Vec<_> = done.iter().map(|d| (d.status, &d.backend)).collect();
    assert!(
        done.iter()
            .all(|d| d.status == 200 && d.backend.as_deref() == Some("slow")),
        "{summary:?}"
    );
    assert_eq!(cluster_metric(&proxy, "circuit_open_total"), 0.0);
    // Still one at a time per worker: queued, not let through.
    let stats = slow.stats();
    assert_eq!(stats.requests, 6, "{stats:?}");
    assert!(stats.max_inflight <= 2, "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// 3. The retry budget.
// ---------------------------------------------------------------------------------------------

/// How the failing endpoint of a retry-budget run fails.
#[derive(Clone, Copy, Debug)]
enum Failing {
    /// It answers 503. The backend's `/healthz` answers its health status on any backend, so
    /// the load asks for `/healthz` with the failing backend started `--health-status 503`
    /// and the good one at the default 200 (the cluster has no health check of its own).
    Status503,
    /// It is killed: every connection to it is refused.
    Refused,
}

/// What a retry-budget run saw: the client's tally, the tries of the failing endpoint, the
/// retries made and the retries refused by the budget.
struct BudgetRun {
    tally: Tally,
    bad_tries: u64,
    retries: u64,
    exhausted: u64,
}

/// Number of requests of a retry-budget run.
const BUDGET_REQUESTS: usize = 2000;

/// Runs [`BUDGET_REQUESTS`] GETs over 8 connections against two endpoints of which one fails,
/// with one retry on connect failure and 503, outlier ejection off (the failing endpoint stays
/// in rotation) and the budget `budget_percent` + `budget_min_per_sec`.
fn budget_run(failing: Failing, budget_percent: u32, budget_min_per_sec: u32) -> BudgetRun {
    let good = Backend::start("good");
    let mut bad = match failing {
        Failing::Status503 => Backend::start_with("bad", &["--health-status", "503"]),
        Failing::Refused => Backend::start("bad"),
    };
    let path = match failing {
        Failing::Status503 => "/healthz",
        Failing::Refused => "/",
    };
    let (proxy, _config) = start_lb_proxy(&cluster(
        "app",
        &[&good, &bad],
        &format!(
            "retry = {{ retries = 1, on = [\"connect-failure\", \"503\"], budget_percent = \
             {budget_percent}, budget_min_per_sec = {budget_min_per_sec} }}\n\
             outlier = {{ consecutive_failures = 0 }}"
        ),
    ));
    if let Failing::Refused = failing {
        bad.kill();
    }
    // 9 s: the whole run must fit in one 10 s budget window for the bound asserted on it
    // (2,000 small requests take well under a second).
    let tally = drive(
        proxy.addr,
        BUDGET_REQUESTS,
        8,
        path,
        &[],
        Duration::from_secs(9),
    );
    assert_eq!(
        tally.unsent,
        0,
        "the run must fit the window: {}",
        tally.summary()
    );
    assert_eq!(tally.errors, 0, "{}", tally.summary());
    BudgetRun {
        bad_tries: endpoint_metric(&proxy, "requests_total", bad.addr) as u64,
        retries: cluster_metric(&proxy, "retries_total") as u64,
        exhausted: cluster_metric(&proxy, "retry_budget_exhausted_total") as u64,
        tally,
    }
}

/// Checks a run with the budget at 10 % + 1/s: retries are capped, the refused ones reach the
/// client as failures. `failure_status` is what a client sees for a try that was not retried.
fn assert_budget_caps(run: &BudgetRun, failure_status: u16) {
    let n = BUDGET_REQUESTS as u64;
    let t = &run.tally;
    let failures = t.failures() as u64;
    let summary = format!(
        "{} bad_tries={} retries={} exhausted={}",
        t.summary(),
        run.bad_tries,
        run.retries,
        run.exhausted
    );
    // Round robin alternates exactly on each worker, and a retry (a pick with the failing
    // endpoint excluded) does not move it, so the failing endpoint gets the first try of half
    // the requests: within 1 per worker of n/2 (a retry never goes back to it).
    assert!(
        run.bad_tries.abs_diff(n / 2) <= 2,
        "the failing endpoint should get half the first tries: {summary}"
    );
    // Per worker, over its 10 s window: retries + 1 ≤ 10 % × requests + 1/s × 10 s. Summed over
    // the two workers: at most 10 % of all requests + 20, exactly (no slack is needed: the
    // budget is integer arithmetic on counts, and the run fits one window).
    let cap = n / 10 + 2 * 10;
    assert!(
        run.retries <= cap,
        "retries above the budget {cap}: {summary}"
    );
    // The budget was the limit, and it was used: it kept granting retries as requests came in.
    assert!(run.retries >= n / 20, "{summary}");
    assert!(run.exhausted > 0, "{summary}");
    // Each try on the failing endpoint asked for exactly one retry (to the good endpoint):
    // granted or refused by the budget.
    assert_eq!(run.retries + run.exhausted, run.bad_tries, "{summary}");
    // A refused retry is a failure the client sees; everything else is a 200 from `good`.
    assert_eq!(failures, run.exhausted, "{summary}");
    assert_eq!(
        t.by_status.get(&failure_status).copied().unwrap_or(0) as u64,
        failures,
        "{summary}"
    );
    assert_eq!(t.count("good") as u64, n - failures, "{summary}");
    // The failures are many: about half the requests failed first, and at most ~11 % were
    // retried.
    assert!(failures >= n / 2 - 2 - cap, "{summary}");
}

/// A backend answering 503 to everything, one retry on 503, budget 10 % + 1/s: the retries stay
/// within the budget and the 503s beyond it reach the client (from the failing backend).
#[test]
fn retry_budget_caps_retries_of_503s() {
    let run = budget_run(Failing::Status503, 10, 1);
    assert_budget_caps(&run, 503);
    assert_eq!(
        run.tally.count("bad") as u64,
        run.exhausted,
        "the unretried 503s are the failing backend's own answers: {}",
        run.tally.summary()
    );
}

/// A killed backend (connections refused), one retry on connect failure, budget 10 % + 1/s:
/// the retries stay within the budget and the refused ones are answered 502.
#[test]
fn retry_budget_caps_retries_of_connect_failures() {
    let run = budget_run(Failing::Refused, 10, 1);
    assert_budget_caps(&run, 502);
}

/// The control for the two tests above: with the budget wide open (100 % + 1000/s) every
/// failed try is retried on the good endpoint and no request fails, for both kinds of
/// failure — so the failures above are the budget's doing.
#[test]
fn uncapped_retry_budget_retries_every_failure() {
    for failing in [Failing::Status503, Failing::Refused] {
        let run = budget_run(failing, 100, 1000);
        let t = &run.tally;
        let summary = format!(
            "{failing:?}: {} bad_tries={} retries={} exhausted={}",
            t.summary(),
            run.bad_tries,
            run.retries,
            run.exhausted
        );
        assert_eq!(t.failures(), 0, "{summary}");
        assert_eq!(t.count("good"), BUDGET_REQUESTS, "{summary}");
        assert_eq!(run.exhausted, 0, "{summary}");
        assert_eq!(run.retries, run.bad_tries, "{summary}");
        assert!(
            run.bad_tries.abs_diff(BUDGET_REQUESTS as u64 / 2) <= 2,
            "{summary}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Drain.
// ---------------------------------------------------------------------------------------------

/// `POST /upstreams/app/<addr>/drain` sends no new request to the endpoint but lets the ones in
/// flight there finish; `/enable` puts it back in rotation. Unknown clusters and endpoints
/// are 404.
#[test]
fn drain_lets_in_flight_requests_finish_and_enable_restores_traffic() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let (proxy, _config) = start_lb_proxy(&cluster("app", &[&a, &b], ""));
    let t = drive(proxy.addr, 20, 2, "/", &[], Duration::from_secs(10));
    assert_eq!((t.failures(), t.count("a") + t.count("b")), (0, 20));

    // Drain `b` first so the slow requests all land on `a`, the endpoint to drain under them.
    let (status, body) = admin_post(&proxy, &format!("/upstreams/app/{}/drain", b.addr));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_field(&endpoint_view(&proxy, b.addr), "draining"),
        "true"
    );

    let slow_addr = proxy.addr;
    let slow: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get_once(slow_addr, "/?delay_ms=1500", &[])))
        .collect();
    wait_until(
        "4 slow requests in flight on a",
        Duration::from_secs(5),
        || a.stats().inflight == 4,
    );
    let (status, body) = admin_post(&proxy, &format!("/upstreams/app/{}/enable", b.addr));
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin_post(&proxy, &format!("/upstreams/app/{}/drain", a.addr));
    assert_eq!(status, 200, "{body}");
    let view = endpoint_view(&proxy, a.addr);
    assert_eq!(json_field(&view, "draining"), "true", "{view}");
    assert_eq!(
        endpoint_metric(&proxy, "draining", a.addr),
        1.0,
        "/metrics agrees"
    );
    // The drain came while they were in flight (they take 1.5 s; this is milliseconds later).
    assert!(
        slow.iter().all(|h| !h.is_finished()),
        "a slow request ended before the drain"
    );

    // New requests: all to `b`, while `a` still works on the drained-under requests.
    let before = a.stats().requests;
    let t = drive(proxy.addr, 200, 4, "/", &[], Duration::from_secs(30));
    assert_eq!((t.failures(), t.count("b")), (0, 200), "{}", t.summary());
    assert_eq!(a.stats().requests, before, "nothing new reached a");

    // The in-flight ones finish normally, from `a`.
    for h in slow {
        let r = h
            .join()
            .expect("slow request thread")
            .expect("slow request");
        assert_eq!(
            (r.status, r.header("x-backend")),
            (200, Some("a")),
            "{}",
            r.summary()
        );
    }
    assert_eq!(a.stats().inflight, 0);

    // Enabled again: round robin gives `a` its half again (exactly half per worker; 40–60 %
    // overall allows for the two workers' separate rotations).
    let (status, body) = admin_post(&proxy, &format!("/upstreams/app/{}/enable", a.addr));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_field(&endpoint_view(&proxy, a.addr), "draining"),
        "false"
    );
    let t = drive(proxy.addr, 200, 4, "/", &[], Duration::from_secs(30));
    assert_eq!(t.failures(), 0, "{}", t.summary());
    assert!((0.4..=0.6).contains(&t.share("a")), "{}", t.summary());

    // Unknown cluster, unknown endpoint, unknown action: 404, and nothing changes.
    for path in [
        format!("/upstreams/nope/{}/drain", a.addr),
        "/upstreams/app/127.0.0.1:1/drain".to_owned(),
        format!("/upstreams/app/{}/pause", a.addr),
    ] {
        let (status, body) = admin_post(&proxy, &path);
        assert_eq!(status, 404, "POST {path}: {body}");
    }
    assert!(!upstreams(&proxy).contains("\"draining\":true"));
}

// ---------------------------------------------------------------------------------------------
// 5. DNS re-resolution through the hosts file.
// ---------------------------------------------------------------------------------------------

/// Replaces the hosts file's contents in one step (write a sibling, rename it over), so the
/// resolver never reads a half-written file.
fn write_hosts(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).expect("write the new hosts file");
    std::fs::rename(&tmp, path).expect("replace the hosts file");
}

/// Paced load for `limit`: 4 connections, each sending a GET every ~5 ms, so that it spans a
/// DNS change without hogging the two CPUs.
fn paced_load(addr: SocketAddr, limit: Duration) -> Tally {
    drive_requests(addr, 100_000, 4, limit, |_| {
        std::thread::sleep(Duration::from_millis(5));
        DriveRequest {
            path: "/".to_owned(),
            headers: Vec::new(),
        }
    })
}

/// An endpoint named `svc.test:PORT`, resolved through `server.hosts_file` every 200 ms,
/// follows the name to another address within ~2 s with no failed request under load, spreads
/// over both addresses when the name has two, and keeps its last addresses (and serving) when
/// the name stops resolving.
#[test]
fn endpoint_names_are_re_resolved_through_the_hosts_file() {
    let a = Backend::start("a");
    let port = a.addr.port();
    // The whole of 127.0.0.0/8 is loopback on Linux: same port, another address.
    let b = Backend::start_on("b", SocketAddr::from(([127, 0, 0, 2], port)));
    let hosts = temp_file("hosts", "127.0.0.1 svc.test\n");
    let config = lb_config(&format!(
        "[[clusters]]\nname = \"app\"\nendpoints = [{{ addr = \"svc.test:{port}\" }}]\n\
         resolve_interval = \"200ms\"\n"
    ))
    .replacen(
        "[server]\n",
        &format!("[server]\nhosts_file = \"{}\"\n", hosts.display()),
        1,
    );
    let config_path = temp_file("dns.toml", &config);
    let proxy = Proxy::start_args(&[
        "--config".to_owned(),
        config_path.to_str().expect("utf-8 path").to_owned(),
    ]);

    let t = drive(proxy.addr, 50, 2, "/", &[], Duration::from_secs(10));
    assert_eq!((t.failures(), t.count("a")), (0, 50), "{}", t.summary());
    assert!(upstreams(&proxy).contains(&format!("\"addr\":\"{}\"", a.addr)));

    // Under a paced load, point the name at 127.0.0.2.
    let addr = proxy.addr;
    let load = std::thread::spawn(move || paced_load(addr, Duration::from_millis(3500)));
    std::thread::sleep(Duration::from_millis(300));
    write_hosts(&hosts, "127.0.0.2 svc.test\n");
    // Re-resolved every 200 ms (the resolver wakes every 100 ms); 3 s is generous slack.
    let took = wait_until(
        "requests to follow the name to 127.0.0.2",
        Duration::from_secs(3),
        || {
            let r = get_once(proxy.addr, "/", &[]).expect("GET / during the switch");
            assert_eq!(r.status, 200, "{}", r.summary());
            r.header("x-backend") == Some("b")
        },
    );
    let t = load.join().expect("load thread");
    // No request failed across the switch: requests in flight on `a` finished there (their
    // connections stay), new ones went to `b`.
    assert_eq!((t.failures(), t.errors), (0, 0), "{}", t.summary());
    assert!(t.count("a") > 0 && t.count("b") > 0, "{}", t.summary());
    // The switch took under a second of a 3.5 s load started 0.3 s before it; the last
    // quarter of the answered requests (by start order) all came from `b`.
    let answered: Vec<&Option<String>> = t
        .responses
        .iter()
        .filter(|(s, _)| *s != 0)
        .map(|(_, b)| b)
        .collect();
    let tail = &answered[answered.len() * 3 / 4..];
    assert!(
        tail.iter().all(|b| b.as_deref() == Some("b")),
        "switch took {took:?}; an `a` answer in the last quarter: {}",
        t.summary()
    );
    let json = upstreams(&proxy);
    assert!(json.contains(&format!("\"addr\":\"{}\"", b.addr)), "{json}");
    assert!(
        !json.contains(&format!("\"addr\":\"{}\"", a.addr)),
        "{json}"
    );

    // Two addresses: both serve (round robin, half each per worker; 40–60 % overall).
    write_hosts(&hosts, "127.0.0.1 svc.test\n127.0.0.2 svc.test\n");
    wait_until("both addresses to serve", Duration::from_secs(3), || {
        let t = drive(proxy.addr, 20, 2, "/", &[], Duration::from_secs(10));
        assert_eq!(t.failures(), 0, "{}", t.summary());
        t.count("a") > 0 && t.count("b") > 0
    });
    let t = drive(proxy.addr, 200, 4, "/", &[], Duration::from_secs(30));
    assert_eq!(t.failures(), 0, "{}", t.summary());
    assert!((0.4..=0.6).contains(&t.share("a")), "{}", t.summary());

    // The name disappears from the file and the system resolver does not know `svc.test` (a
    // reserved name): resolution fails, and the last addresses stay in service.
    write_hosts(&hosts, "# svc.test is gone\n");
    wait_until(
        "a failed re-resolution in the proxy's log",
        Duration::from_secs(5),
        || proxy.stderr().contains("keeping the last addresses"),
    );
    let t = drive(proxy.addr, 200, 4, "/", &[], Duration::from_secs(30));
    assert_eq!(t.failures(), 0, "{}", t.summary());
    assert!(t.count("a") > 0 && t.count("b") > 0, "{}", t.summary());
    let json = upstreams(&proxy);
    assert!(
        json.contains(&format!("\"addr\":\"{}\"", a.addr))
            && json.contains(&format!("\"addr\":\"{}\"", b.addr)),
        "{json}"
    );
}
