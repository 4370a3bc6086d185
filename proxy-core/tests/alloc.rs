//! The request path through proxy-core allocates nothing in steady state: parsing a request
//! head, routing it, rewriting it for the upstream, parsing the response head and rewriting it
//! for the client, all into buffers that are reused. Proven with a counting global allocator.

use proxy_core::config::{Config, FileConfig};
use proxy_core::http1::{parse_request, parse_response, BodyFraming, ChunkedDecoder, Version};
use proxy_core::lb::budget::RetryBudget;
use proxy_core::lb::keys::request_keys;
use proxy_core::lb::{Algorithm, ClusterLb, Member, Outcome, PickInput};
use proxy_core::rewrite::{write_request_head, write_response_head, ForwardContext, ResponsePlan};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    /// Allocations made by the current thread (other test threads do not disturb the count).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with` so that allocations during thread teardown are simply not counted.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CONFIG: &str = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:8080"
[[routes]]
host = "api.example.com"
path_prefix = "/v1"
cluster = "api"
[[routes]]
host = "*.example.com"
cluster = "web"
[[routes]]
cluster = "web"
[[clusters]]
name = "api"
endpoints = [{ addr = "127.0.0.1:9001" }, { addr = "127.0.0.1:9002" }]
[[clusters]]
name = "web"
endpoints = [{ addr = "127.0.0.1:9003" }]
"#;

const REQUEST: &[u8] =
    b"GET /v1/users?id=42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: wrk\r\n\
Accept: */*\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: upstream\r\nContent-Type: application/json\r\n\
Content-Length: 13\r\nKeep-Alive: timeout=5\r\n\r\n{\"id\": \"42\"}\n";
const CHUNKED: &[u8] = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

#[test]
fn steady_state_request_path_allocates_nothing() {
    let file: FileConfig = toml::from_str(CONFIG).expect("test config parses");
    let config = Config::resolve(&file).expect("test config is valid");
    // The costliest algorithm (P2C: two draws, peak-EWMA decay) with the full per-request
    // accounting a worker does: keys, pick, start, end, retry budget.
    let mut balancers: Vec<_> = config
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let members = c
                .endpoints
                .iter()
                .map(|e| Member {
                    id: e.id,
                    weight: e.weight,
                    priority: e.priority,
                    name: e.addr.to_string(),
                })
                .collect();
            ClusterLb::new(Algorithm::P2c, c.outlier, 1.4, members, i as u64)
        })
        .collect();
    let mut budget = RetryBudget::new(20, 3);
    let start = Instant::now();
    let mut tick = 0u64;
    let mut upstream_head = Vec::with_capacity(32 * 1024);
    let mut client_head = Vec::with_capacity(32 * 1024);
    let ctx = ForwardContext {
        client_ip: b"192.0.2.1",
        scheme: b"http",
        upstream_authority: b"127.0.0.1:9001",
        identity: None,
    };

    let mut one_exchange = |upstream_head: &mut Vec<u8>, client_head: &mut Vec<u8>| {
        let req = parse_request(REQUEST).expect("valid").expect("complete");
        let cluster = config
            .router
            .route(req.host_name(REQUEST), req.path.of(REQUEST))
            .expect("routed");
        let keys = request_keys(
            &config.clusters[cluster].balance,
            &req,
            REQUEST,
            b"192.0.2.1",
        );
        tick += 1;
        let now = start + Duration::from_micros(tick);
        let usable = |_: usize| true;
        let input = PickInput {
            now,
            key: keys.hash,
            exclude: &[],
            usable: &usable,
        };
        let endpoint = balancers[cluster].pick(&input).expect("endpoint");
        balancers[cluster].on_start(endpoint);
        budget.on_request(now);
        upstream_head.clear();
        write_request_head(REQUEST, &req, &config.forward, &ctx, upstream_head);
        let res = parse_response(RESPONSE).expect("valid").expect("complete");
        assert_eq!(res.framing(req.method), BodyFraming::Length(13));
        client_head.clear();
        let plan = ResponsePlan {
            close: false,
            client_version: Version::Http11,
            dechunk: false,
        };
        write_response_head(RESPONSE, &res, plan, client_head);
        let mut chunked = ChunkedDecoder::new();
        let done = chunked.decode(CHUNKED).expect("valid").consumed;
        balancers[cluster].on_end(endpoint, now, Duration::from_micros(50), Outcome::Success);
        endpoint + done + 1
    };
    // Warm up: buffers reach their steady capacity.
    for _ in 0..10 {
        one_exchange(&mut upstream_head, &mut client_head);
    }
    let before = ALLOCATIONS.with(Cell::get);
    let mut sink = 0;
    for _ in 0..10_000 {
        sink += one_exchange(&mut upstream_head, &mut client_head);
    }
    let after = ALLOCATIONS.with(Cell::get);
    assert!(sink > 0);
    assert_eq!(after - before, 0, "allocations over 10,000 exchanges");
    let text = String::from_utf8_lossy(&upstream_head);
    assert!(
        text.contains("X-Forwarded-For: 10.1.1.1, 192.0.2.1\r\n"),
        "{text}"
    );
    assert!(!String::from_utf8_lossy(&client_head).contains("Keep-Alive"));
}
