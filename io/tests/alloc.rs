//! Zero allocations per request through proxy-io: 10,000 keep-alive requests after warm-up,
//! counted by a global allocator, on both drivers. The client and upstream threads of this test
//! allocate nothing in their loops, so every allocation counted comes from the proxy worker.

mod support;

use proxy_core::config::IoDriver;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use support::{fixed_response, roundtrip, FixedUpstream, Proxy};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The two drivers' tests must not overlap: the counter is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

const GET: &[u8] =
    b"GET /item?id=7 HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: alloc-test\r\nAccept: */*\r\n\r\n";

fn allocations_per_request(driver: IoDriver) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let up = FixedUpstream::start();
    let proxy = Proxy::start(driver, 1, &[up.addr], |_| {});
    let expect = fixed_response().len();
    let mut conn = TcpStream::connect(proxy.addr).expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 4096];
    for _ in 0..1_000 {
        roundtrip(&mut conn, GET, &mut buf, expect).expect("warm-up response");
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..10_000 {
        roundtrip(&mut conn, GET, &mut buf, expect).expect("response");
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    drop(conn);
    proxy.stop();
    let total = after - before;
    // Zero per request; a handful in total is tolerated for once-a-second maintenance work.
    assert!(
        total <= 10,
        "{total} allocations over 10,000 requests on {driver:?}"
    );
}

#[test]
fn uring_allocates_nothing_per_request() {
    allocations_per_request(IoDriver::Uring);
}

#[test]
fn epoll_allocates_nothing_per_request() {
    allocations_per_request(IoDriver::Epoll);
}
