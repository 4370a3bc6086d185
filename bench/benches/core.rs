//! Criterion micro-benchmarks of proxy-core's per-request hot path: request and response head
//! parsing, the request and response header rewrites, route lookup and the load-balancer pick.
//! Measurement time is kept short so `cargo bench -p ringway-bench --bench core` finishes in
//! well under a minute.

use criterion::Criterion;
use proxy_core::config::{Config, FileConfig};
use proxy_core::http1::{parse_request, parse_response, Version};
use proxy_core::lb::{Algorithm, ClusterLb, Member, OutlierPolicy, PickInput};
use proxy_core::rewrite::{
    write_request_head, write_response_head, ForwardContext, ForwardPolicy, ResponsePlan,
};
use std::hint::black_box;
use std::time::Duration;

/// A browser-like GET: eight header fields, about 300 bytes.
const REQUEST: &[u8] = b"GET /api/v1/products/8421?ref=home&sort=price HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: http://shop.example.com/\r\n\
Cookie: session=6f1c2a9e0b7d; theme=dark\r\n\
Connection: keep-alive\r\n\
\r\n";

/// A typical upstream response head.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Tue, 14 Jan 2025 10:21:07 GMT\r\n\
Server: backend/1.4\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Content-Length: 1024\r\n\
Cache-Control: private, max-age=0\r\n\
ETag: \"5e1f-6a2b\"\r\n\
Vary: Accept-Encoding\r\n\
Connection: keep-alive\r\n\
\r\n";

/// Twenty routes mixing exact hosts, `*.suffix` hosts and path prefixes, and no catch-all.
const ROUTES: &str = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:8080"

[[clusters]]
name = "web"
endpoints = [{ addr = "127.0.0.1:9001" }]
[[clusters]]
name = "api"
endpoints = [{ addr = "127.0.0.1:9002", weight = 3 }, { addr = "127.0.0.1:9003" }]
[[clusters]]
name = "static"
endpoints = [{ addr = "127.0.0.1:9004" }]

[[routes]]
host = "www.example.com"
cluster = "web"
[[routes]]
host = "api.example.com"
path_prefix = "/v1/"
cluster = "api"
[[routes]]
host = "api.example.com"
path_prefix = "/v2/"
cluster = "api"
[[routes]]
host = "admin.example.com"
path_prefix = "/dashboard"
cluster = "web"
[[routes]]
host = "shop.example.org"
cluster = "web"
[[routes]]
host = "shop.example.org"
path_prefix = "/checkout/"
cluster = "api"
[[routes]]
host = "blog.example.net"
cluster = "web"
[[routes]]
host = "docs.example.net"
path_prefix = "/reference/"
cluster = "static"
[[routes]]
host = "status.example.io"
cluster = "web"
[[routes]]
host = "auth.example.io"
path_prefix = "/oauth/"
cluster = "api"
[[routes]]
host = "*.example.com"
cluster = "web"
[[routes]]
host = "*.cdn.example.com"
path_prefix = "/assets/"
cluster = "static"
[[routes]]
host = "*.example.org"
path_prefix = "/api/"
cluster = "api"
[[routes]]
host = "*.example.net"
cluster = "web"
[[routes]]
host = "*.internal"
path_prefix = "/metrics"
cluster = "api"
[[routes]]
path_prefix = "/static/"
cluster = "static"
[[routes]]
path_prefix = "/images/"
cluster = "static"
[[routes]]
path_prefix = "/healthz"
cluster = "web"
[[routes]]
path_prefix = "/api/v1/"
cluster = "api"
[[routes]]
path_prefix = "/api/"
cluster = "api"
"#;

fn bench_parse(c: &mut Criterion) {
    assert!(
        matches!(parse_request(REQUEST), Ok(Some(_))),
        "the request sample must parse"
    );
    assert!(
        matches!(parse_response(RESPONSE), Ok(Some(_))),
        "the response sample must parse"
    );
    c.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(REQUEST)))
    });
    c.bench_function("parse_response", |b| {
        b.iter(|| parse_response(black_box(RESPONSE)))
    });
}

fn bench_rewrite(c: &mut Criterion) {
    let Ok(Some(request)) = parse_request(REQUEST) else {
        panic!("the request sample must parse");
    };
    let Ok(Some(response)) = parse_response(RESPONSE) else {
        panic!("the response sample must parse");
    };
    let policy = ForwardPolicy::default();
    let ctx = ForwardContext {
        client_ip: b"192.0.2.1",
        scheme: b"http",
        upstream_authority: b"127.0.0.1:9001",
        identity: None,
    };
    let mut out = Vec::with_capacity(1024);
    c.bench_function("rewrite_request_head", |b| {
        b.iter(|| {
            out.clear();
            write_request_head(
                black_box(REQUEST),
                black_box(&request),
                &policy,
                &ctx,
                &mut out,
            );
            black_box(out.len())
        })
    });
    let plan = ResponsePlan {
        close: false,
        client_version: Version::Http11,
        dechunk: false,
    };
    c.bench_function("rewrite_response_head", |b| {
        b.iter(|| {
            out.clear();
            write_response_head(black_box(RESPONSE), black_box(&response), plan, &mut out);
            black_box(out.len())
        })
    });
}

fn bench_route(c: &mut Criterion) {
    let file: FileConfig = match toml::from_str(ROUTES) {
        Ok(f) => f,
        Err(e) => panic!("the route table must be valid TOML: {e}"),
    };
    let config = match Config::resolve(&file) {
        Ok(c) => c,
        Err(e) => panic!("the route table must resolve: {e}"),
    };
    let router = &config.router;
    // Any host, matched by the last, shortest `/api/` prefix after every host rule failed.
    let (hit_host, hit_path) = (&b"unknown.example.dev"[..], &b"/api/v2/orders/77"[..]);
    // Nothing matches: every route is tried.
    let (miss_host, miss_path) = (&b"nowhere.invalid"[..], &b"/nothing/here"[..]);
    assert!(router.route(Some(hit_host), hit_path).is_some());
    assert!(router.route(Some(miss_host), miss_path).is_none());
    c.bench_function("route_hit_deep", |b| {
        b.iter(|| router.route(Some(black_box(hit_host)), black_box(hit_path)))
    });
    c.bench_function("route_miss", |b| {
        b.iter(|| router.route(Some(black_box(miss_host)), black_box(miss_path)))
    });
}

fn bench_balance(c: &mut Criterion) {
    let members = |n: usize| -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                id: i,
                weight: [5, 1, 1, 3][i % 4],
                priority: 0,
                name: format!("10.0.0.{i}:80"),
            })
            .collect()
    };
    let outlier = OutlierPolicy {
        consecutive_failures: 5,
        base_ejection: Duration::from_secs(10),
        max_ejection: Duration::from_secs(300),
        max_ejected_percent: 50,
    };
    let usable = |_: usize| true;
    let now = std::time::Instant::now();
    for (name, algorithm) in [
        ("round_robin_pick", Algorithm::RoundRobin),
        ("least_conn_pick", Algorithm::LeastConn),
        ("p2c_pick", Algorithm::P2c),
        ("maglev_pick", Algorithm::Maglev),
    ] {
        let mut lb = ClusterLb::new(algorithm, outlier, 1.4, members(4), 7);
        let mut key = 0u64;
        c.bench_function(name, |b| {
            b.iter(|| {
                key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let input = PickInput {
                    now,
                    key: Some(key),
                    exclude: &[],
                    usable: &usable,
                };
                black_box(&mut lb).pick(&input)
            })
        });
    }
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    bench_parse(&mut c);
    bench_rewrite(&mut c);
    bench_route(&mut c);
    bench_balance(&mut c);
    c.final_summary();
}
