//! Loopback fixtures for proxy-io tests: an in-process proxy (real workers, real sockets) and
//! a minimal upstream that allocates nothing per request.

#![allow(dead_code)]

use proxy_core::config::{
    Config, FileCluster, FileConfig, FileEndpoint, FileListener, FileRoute, IoDriver,
};
use proxy_io::listener::bind_reuseport;
use proxy_io::metrics::WorkerStats;
use proxy_io::shutdown::Shutdown;
use proxy_io::{spawn_workers, DriverInfo, WorkerHandle, WorkerSpec};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A proxy running in this process.
pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Vec<Arc<WorkerStats>>,
    pub drivers: Vec<DriverInfo>,
    shutdown: Shutdown,
    handles: Vec<WorkerHandle>,
}

impl Proxy {
    /// Starts `workers` workers on `driver` in front of `upstreams`, tweaking the file config
    /// with `adjust` first.
    pub fn start(
        driver: IoDriver,
        workers: usize,
        upstreams: &[SocketAddr],
        adjust: impl FnOnce(&mut FileConfig),
    ) -> Proxy {
        let mut file = FileConfig {
            listeners: vec![FileListener {
                name: "test".into(),
                bind: "127.0.0.1:0".into(),
                tls: None,
                http2: None,
            }],
            routes: vec![FileRoute {
                host: None,
                path_prefix: None,
                cluster: "up".into(),
                cache: None,
                compress: None,
            }],
            clusters: vec![FileCluster {
                name: "up".into(),
                endpoints: upstreams
                    .iter()
                    .map(|a| FileEndpoint {
                        addr: a.to_string(),
                        ..FileEndpoint::default()
                    })
                    .collect(),
                ..FileCluster::default()
            }],
            ..FileConfig::default()
        };
        file.server.io_driver = Some(
            match driver {
                IoDriver::Uring => "uring",
                IoDriver::Epoll => "epoll",
                IoDriver::Auto => "auto",
            }
            .into(),
        );
        adjust(&mut file);
        let config = Arc::new(Config::resolve(&file).expect("test config is valid"));
        let (addr, socks) = bind_reuseport(config.listeners[0].bind, workers, 1024).expect("bind");
        let shutdown = Shutdown::new();
        let shared = Arc::new(proxy_io::upstreams::SharedUpstreams::new(&config));
        let stats: Vec<_> = (0..workers)
            .map(|_| Arc::new(WorkerStats::default()))
            .collect();
        let specs = socks
            .into_iter()
            .enumerate()
            .map(|(index, s)| WorkerSpec {
                index,
                cpu: None,
                config: config.clone(),
                listeners: vec![s],
                stats: stats[index].clone(),
                shutdown: shutdown.clone(),
                access_log: None,
                tls: vec![None],
                upstream_tls: Vec::new(),
                release_memory: None,
                upstreams: shared.clone(),
                upstream_counters: proxy_io::upstreams::UpstreamCounters::new(&config),
                cache_purges: Arc::new(proxy_io::cache::CachePurges::default()),
                workers,
            })
            .collect();
        let handles = spawn_workers(specs).expect("workers start");
        let drivers = handles.iter().map(|h| h.driver).collect();
        Proxy {
            addr,
            stats,
            drivers,
            shutdown,
            handles,
        }
    }

    /// Sum of a counter over workers.
    pub fn total(&self, f: impl Fn(&WorkerStats) -> u64) -> u64 {
        self.stats.iter().map(|s| f(s)).sum()
    }

    /// Graceful shutdown; waits for the workers.
    pub fn stop(self) {
        self.shutdown.trigger();
        for h in self.handles {
            h.join();
        }
    }
}

/// A keep-alive upstream answering every request head with the same fixed response; it does
/// not allocate per request. Counts accepted connections.
pub struct FixedUpstream {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

pub const BODY: &[u8] = b"hello from the fixed upstream";

pub fn fixed_response() -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    r.extend_from_slice(BODY);
    r
}

impl FixedUpstream {
    pub fn start() -> FixedUpstream {
        Self::start_with(fixed_response(), Duration::ZERO)
    }

    /// An upstream that waits `delay` before each answer.
    pub fn start_with(response: Vec<u8>, delay: Duration) -> FixedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let response: Arc<[u8]> = response.into();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_nodelay(true);
                    let mut buf = [0u8; 8192];
                    let mut len = 0;
                    loop {
                        match conn.read(&mut buf[len..]) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => len += n,
                        }
                        while let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
                            let end = end + 4;
                            buf.copy_within(end..len, 0);
                            len -= end;
                            if !delay.is_zero() {
                                std::thread::sleep(delay);
                            }
                            if conn.write_all(&response).is_err() {
                                return;
                            }
                        }
                        if len == buf.len() {
                            return;
                        }
                    }
                });
            }
        });
        FixedUpstream { addr, accepted }
    }
}

/// Sends `request` on `conn` and reads exactly `expect_len` response bytes into `buf`.
pub fn roundtrip(
    conn: &mut TcpStream,
    request: &[u8],
    buf: &mut [u8],
    expect_len: usize,
) -> std::io::Result<()> {
    conn.write_all(request)?;
    let mut got = 0;
    while got < expect_len {
        let n = conn.read(&mut buf[got..expect_len])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}

/// Reads until the peer closes or `limit` passes; returns what arrived.
pub fn read_to_close(conn: &mut TcpStream, limit: Duration) -> Vec<u8> {
    conn.set_read_timeout(Some(limit)).expect("timeout");
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    out
}
