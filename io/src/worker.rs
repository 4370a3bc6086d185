//! Workers: one thread per core, pinned, each running its own runtime, listeners, pools and
//! counters; the accept loop; and the shutdown sequence.
//!
//! Shutdown, once triggered: stop accepting, take every connection already queued in the
//! kernel's accept queue (so none is reset), close idle keep-alive connections, let in-flight
//! requests finish (their responses say `Connection: close`) for up to the drain timeout, then
//! close what is left and return.

use crate::access_log::{AccessLog, AccessLogSink};
use crate::idle::IdleClock;
use crate::metrics::WorkerStats;
use crate::pool::{BufferPool, UpstreamPool};
use crate::proxy;
use crate::runtime::{self, DriverInfo};
use crate::shutdown::{DrainEvent, Shutdown};
use crate::tls::{ServerTls, UpstreamTlsConfig, WorkerTls};
use monoio::io::Canceller;
use monoio::net::{TcpListener, TcpStream};
use proxy_core::config::Config;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Smallest read buffer: request heads and small responses use buffers of this size.
const MIN_BUFFER: usize = 16 * 1024;
/// Buffer for streaming a large body: four times fewer reads and writes per megabyte than the
/// head buffer. Taken only while a large body is in flight.
const BULK_BUFFER: usize = 64 * 1024;

/// Everything one worker needs, built on the main thread.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Worker number, from 0.
    pub index: usize,
    /// The CPU to pin to, if any.
    pub cpu: Option<usize>,
    /// The configuration snapshot.
    pub config: Arc<Config>,
    /// This worker's listening sockets, one per configured listener, in order.
    pub listeners: Vec<std::net::TcpListener>,
    /// This worker's counters.
    pub stats: Arc<WorkerStats>,
    /// The process-wide shutdown trigger.
    pub shutdown: Shutdown,
    /// Where to write the access log, if it is on.
    pub access_log: Option<AccessLogSink>,
    /// TLS state per listener (same order as `listeners`); `None` for plain listeners.
    pub tls: Vec<Option<Arc<ServerTls>>>,
    /// TLS towards each cluster's upstreams (same order as the config's clusters).
    pub upstream_tls: Vec<Option<UpstreamTlsConfig>>,
    /// Called on the worker's thread after it frees pooled buffers it no longer needs, so the
    /// allocator can hand the pages back to the kernel (for mimalloc, `mi_collect`). `None`
    /// leaves that to the allocator's own schedule.
    pub release_memory: Option<fn()>,
    /// Health, drain and addresses of the endpoints, shared by every worker.
    pub upstreams: Arc<crate::upstreams::SharedUpstreams>,
    /// This worker's per-endpoint and per-cluster counters.
    pub upstream_counters: Arc<crate::upstreams::UpstreamCounters>,
    /// Cache purges published by the admin address, shared by every worker.
    pub cache_purges: Arc<crate::cache::CachePurges>,
    /// How many workers the process runs (they split the cache budgets evenly).
    pub workers: usize,
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    /// Worker number.
    pub index: usize,
    /// The driver it runs on.
    pub driver: DriverInfo,
    thread: JoinHandle<()>,
}

impl WorkerHandle {
    /// Waits for the worker to finish its shutdown.
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!(worker = self.index, "worker thread panicked");
        }
    }
}

/// Starts one thread per spec and waits until each has built its runtime.
///
/// Fails (after stopping the workers that did start) when any worker cannot build a runtime, so
/// that `--io-driver uring` on a kernel without io_uring is an error at startup.
pub fn spawn_workers(specs: Vec<WorkerSpec>) -> io::Result<Vec<WorkerHandle>> {
    let shutdown = specs.first().map(|s| s.shutdown.clone());
    let mut pending = Vec::with_capacity(specs.len());
    for spec in specs {
        let (tx, rx) = mpsc::channel();
        let index = spec.index;
        let thread = std::thread::Builder::new()
            .name(format!("ringway-w{index}"))
            .spawn(move || run_worker(spec, tx))?;
        pending.push((index, rx, thread));
    }
    let mut handles = Vec::with_capacity(pending.len());
    let mut failure = None;
    for (index, rx, thread) in pending {
        match rx.recv() {
            Ok(Ok(driver)) => handles.push(WorkerHandle {
                index,
                driver,
                thread,
            }),
            Ok(Err(e)) => {
                failure.get_or_insert(e);
                let _ = thread.join();
            }
            Err(_) => {
                failure.get_or_insert_with(|| {
                    io::Error::other(format!("worker {index} died while starting"))
                });
                let _ = thread.join();
            }
        }
    }
    if let Some(e) = failure {
        if let Some(s) = shutdown {
            s.trigger();
        }
        for h in handles {
            h.join();
        }
        return Err(e);
    }
    Ok(handles)
}

fn run_worker(spec: WorkerSpec, started: mpsc::Sender<io::Result<DriverInfo>>) {
    if let Some(cpu) = spec.cpu {
        if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            let _ = spec.stats.cpu.set(cpu);
        } else {
            tracing::warn!(worker = spec.index, cpu, "could not pin worker to CPU");
        }
    }
    let server = &spec.config.server;
    let (choice, entries) = (server.io_driver, server.io_uring_entries);
    let index = spec.index;
    let tx = started.clone();
    let result = runtime::run(choice, entries, move |driver| async move {
        let _ = spec.stats.driver.set(driver);
        tracing::info!(worker = spec.index, cpu = ?spec.cpu, driver = driver.name(), ring_flags = driver.flags(), "worker started");
        let _ = tx.send(Ok(driver));
        worker_main(spec).await;
    });
    if let Err(e) = result {
        let _ = started.send(Err(e));
    }
    tracing::debug!(worker = index, "worker stopped");
}

/// A worker's state, shared by its tasks through `Rc` (never across threads).
pub(crate) struct WorkerCtx {
    pub(crate) index: usize,
    pub(crate) config: Arc<Config>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) buffers: BufferPool,
    /// Large buffers for bodies that do not fit in one small buffer.
    pub(crate) bulk: BufferPool,
    pub(crate) upstreams: UpstreamPool,
    /// Balancer state, retry budgets and the view of the shared upstream table.
    pub(crate) lb: crate::balance::LbState,
    pub(crate) drain: DrainEvent,
    /// Deadlines of parked (idle) client connections.
    pub(crate) idle: IdleClock,
    pub(crate) access_log: Option<RefCell<AccessLog>>,
    /// TLS per listener index.
    listener_tls: Vec<Option<Rc<WorkerTls>>>,
    /// TLS towards upstreams, per endpoint id.
    pub(crate) endpoint_tls: Vec<Option<Rc<UpstreamTlsConfig>>>,
    release_memory: Option<fn()>,
    /// `ip:port` of every endpoint, by id: the `Host` sent when the client's is not preserved.
    authorities: Vec<Vec<u8>>,
    active: Cell<usize>,
    next_conn: Cell<u64>,
    /// Upstream exchange slots (circuit breaker, HTTP/2 stream cap), per endpoint id.
    pub(crate) slots: Vec<Rc<proxy::Slots>>,
    /// The HTTP/2 connection to each endpoint of an HTTP/2 cluster, per endpoint id.
    pub(crate) h2_upstreams: Vec<proxy::H2Upstream>,
    /// This worker's HTTP caches (one store per caching route).
    pub(crate) cache: crate::cache::WorkerCache,
}

impl WorkerCtx {
    fn new(spec: &WorkerSpec, access_log: Option<AccessLogSink>) -> WorkerCtx {
        let cfg = &spec.config;
        WorkerCtx {
            index: spec.index,
            config: cfg.clone(),
            stats: spec.stats.clone(),
            buffers: BufferPool::new(cfg.limits.max_header_bytes.max(MIN_BUFFER), 1024),
            bulk: BufferPool::new(BULK_BUFFER.max(cfg.limits.max_header_bytes), 64),
            upstreams: UpstreamPool::new(cfg.endpoint_count(), cfg.pool),
            lb: crate::balance::LbState::new(
                cfg,
                spec.upstreams.clone(),
                spec.upstream_counters.clone(),
                spec.index,
            ),
            drain: DrainEvent::default(),
            idle: IdleClock::default(),
            access_log: access_log.map(|s| RefCell::new(AccessLog::new(s))),
            listener_tls: spec
                .tls
                .iter()
                .map(|t| {
                    t.as_ref().map(|shared| {
                        Rc::new(WorkerTls {
                            shared: shared.clone(),
                            configs: shared.worker_configs(),
                        })
                    })
                })
                .collect(),
            endpoint_tls: cfg
                .clusters
                .iter()
                .enumerate()
                .flat_map(|(i, c)| {
                    let tls = spec
                        .upstream_tls
                        .get(i)
                        .and_then(Option::as_ref)
                        .map(|t| Rc::new(t.for_worker()));
                    c.endpoints.iter().map(move |_| tls.clone())
                })
                .collect(),
            release_memory: spec.release_memory,
            cache: crate::cache::WorkerCache::new(cfg, spec.workers, spec.cache_purges.clone()),
            authorities: cfg
                .clusters
                .iter()
                .flat_map(|c| {
                    c.endpoints.iter().map(|e| {
                        match e.dns.and_then(|d| c.dns_names.get(d)) {
                            Some(name) => format!("{}:{}", name.host, name.port),
                            None => e.addr.to_string(),
                        }
                        .into_bytes()
                    })
                })
                .collect(),
            active: Cell::new(0),
            next_conn: Cell::new(0),
            slots: (0..cfg.endpoint_count()).map(|_| Rc::default()).collect(),
            h2_upstreams: (0..cfg.endpoint_count())
                .map(|_| proxy::H2Upstream::default())
                .collect(),
        }
    }

    /// Moves the bytes of `buf` into a bulk buffer when `body` still has more to come than a
    /// small buffer holds, so the body streams in fewer, larger reads and writes.
    pub(crate) fn upsize_for(&self, buf: &mut Vec<u8>, body: &crate::proxy::BodyTracker) {
        if buf.capacity() < self.bulk.size() && body.expects_more_than(buf.capacity()) {
            let mut big = self.bulk.take();
            big.extend_from_slice(buf);
            self.recycle(std::mem::replace(buf, big));
        }
    }

    /// Moves the bytes of a bulk buffer back into a small one when they fit (pipelined bytes
    /// after a large body), returning the bulk buffer to its pool.
    pub(crate) fn downsize(&self, buf: &mut Vec<u8>) {
        if buf.capacity() == self.bulk.size() && buf.len() <= self.buffers.size() {
            let mut small = self.buffers.take();
            small.extend_from_slice(buf);
            self.recycle(std::mem::replace(buf, small));
        }
    }

    /// Returns a buffer to whichever pool it came from.
    pub(crate) fn recycle(&self, buf: Vec<u8>) {
        if buf.capacity() == self.bulk.size() {
            self.bulk.give(buf);
        } else {
            self.buffers.give(buf);
        }
    }

    /// Records that a connection ended.
    pub(crate) fn leave(&self) {
        self.active.set(self.active.get() - 1);
        self.stats.connections_active.dec();
    }

    /// The `ip:port` text of endpoint `id`.
    pub(crate) fn endpoint_authority(&self, id: usize) -> &[u8] {
        self.authorities.get(id).map_or(&[], Vec::as_slice)
    }

    /// Appends an access log line, if the log is on.
    pub(crate) fn log_access(&self, record: &crate::access_log::AccessRecord<'_>) {
        if let Some(log) = &self.access_log {
            log.borrow_mut().record(record, SystemTime::now());
        }
    }
}

async fn worker_main(mut spec: WorkerSpec) {
    let access_log = spec.access_log.take();
    let ctx = Rc::new(WorkerCtx::new(&spec, access_log));
    let mut loops = Vec::new();
    for (i, std_listener) in std::mem::take(&mut spec.listeners).into_iter().enumerate() {
        let backlog = match std_listener.try_clone() {
            Ok(dup) => dup,
            Err(e) => {
                tracing::error!(worker = ctx.index, error = %e, "cannot duplicate listener");
                continue;
            }
        };
        match TcpListener::from_std(std_listener) {
            Ok(l) => loops.push(monoio::spawn(accept_loop(ctx.clone(), l, backlog, i))),
            Err(e) => tracing::error!(worker = ctx.index, error = %e, "cannot register listener"),
        }
    }
    let maintenance = monoio::spawn(maintain(ctx.clone()));
    let ticker = {
        let ctx = ctx.clone();
        monoio::spawn(async move { ctx.idle.run(&ctx.drain).await })
    };

    spec.shutdown.wait().await;
    tracing::debug!(worker = ctx.index, "draining");
    ctx.drain.fire();
    for l in loops {
        l.await;
    }
    let deadline = Instant::now() + ctx.config.server.drain_timeout;
    while ctx.active.get() > 0 && Instant::now() < deadline {
        // Bounded by the drain timeout; a short sleep, not a busy loop.
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if ctx.active.get() > 0 {
        tracing::warn!(
            worker = ctx.index,
            connections = ctx.active.get(),
            "drain timeout: closing remaining connections"
        );
    }
    maintenance.await;
    ticker.await;
    ctx.upstreams.clear();
    if let Some(log) = &ctx.access_log {
        log.borrow_mut().flush();
    }
}

/// Once a second: close expired pooled upstream connections, free buffers no request needed in
/// the last second (and hand freed memory back when that or closed connections left some), and
/// flush the access log.
async fn maintain(ctx: Rc<WorkerCtx>) {
    let mut last_active = ctx.active.get();
    while !ctx.drain.is_fired() {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {}
            _ = ctx.drain.wait() => {}
        }
        ctx.upstreams.sweep(Instant::now());
        ctx.publish_lb_stats();
        let c = ctx.cache.stats();
        ctx.stats.cache_bytes.set(c.bytes as u64);
        ctx.stats.cache_entries.set(c.entries as u64);
        ctx.stats.cache_evictions.set(c.evictions);
        let freed = ctx.buffers.trim() + ctx.bulk.trim();
        // Connections that closed freed what they held themselves (an HTTP/2 connection's
        // codec buffers are about 20 KiB): hand those pages back too.
        let closed = ctx.active.get() < last_active;
        last_active = ctx.active.get();
        if freed > 0 || closed {
            if let Some(release) = ctx.release_memory {
                release();
            }
        }
        if let Some(log) = &ctx.access_log {
            log.borrow_mut().flush();
        }
    }
}

async fn accept_loop(
    ctx: Rc<WorkerCtx>,
    listener: TcpListener,
    backlog: std::net::TcpListener,
    which: usize,
) {
    let mut canceller = Canceller::new();
    loop {
        let accept = listener.cancelable_accept(canceller.handle());
        let mut accept = std::pin::pin!(accept);
        let (res, stop) = monoio::select! {
            r = &mut accept => (r, false),
            _ = ctx.drain.wait() => {
                canceller = std::mem::take(&mut canceller).cancel();
                (accept.await, true)
            }
        };
        match res {
            Ok((stream, peer)) => spawn_connection(&ctx, stream, peer, which),
            Err(e) if stop => tracing::trace!(error = %e, "accept cancelled"),
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!(worker = ctx.index, listener = which, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if stop {
            break;
        }
    }
    // Take every connection the kernel already completed for this socket, so that closing the
    // listener resets none of them.
    let mut drained = 0;
    loop {
        match backlog.accept() {
            Ok((s, peer)) => {
                let _ = s.set_nonblocking(true);
                match TcpStream::from_std(s) {
                    Ok(stream) => {
                        drained += 1;
                        spawn_connection(&ctx, stream, peer, which);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot register drained connection"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    tracing::debug!(
        worker = ctx.index,
        listener = which,
        drained,
        "listener closed"
    );
}

/// How many bytes not yet sent may queue in a client socket before writes wait.
///
/// Without a limit the kernel autotunes the send buffer up to `tcp_wmem`'s maximum (4 MiB here),
/// so a response is "written" the moment it fits there: a slow-read client then costs megabytes
/// of kernel memory and its minimum-rate deadline never sees a blocked write. With this limit a
/// slow reader blocks Ringway's write after 256 KiB and the deadline applies.
const CLIENT_NOTSENT_LOWAT: libc::c_int = 256 * 1024;

fn limit_unsent(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads one int from a valid pointer; a failure changes nothing.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            std::ptr::from_ref(&CLIENT_NOTSENT_LOWAT).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn spawn_connection(ctx: &Rc<WorkerCtx>, stream: TcpStream, peer: SocketAddr, listener: usize) {
    ctx.stats.connections_accepted.inc();
    let _ = stream.set_nodelay(true);
    limit_unsent(&stream);
    let seq = ctx.next_conn.get();
    ctx.next_conn.set(seq + 1);
    let id = ((ctx.index as u64) << 48) | seq;
    let tls = ctx.listener_tls.get(listener).cloned().flatten();
    let http2 = ctx.config.listeners.get(listener).is_some_and(|l| l.http2);
    if ctx.active.get() >= ctx.config.server.max_connections {
        ctx.stats.connections_refused.inc();
        // A TLS client could not read a plain 503; it just sees the close.
        if tls.is_none() {
            monoio::spawn(proxy::refuse(ctx.clone(), stream));
        }
        return;
    }
    ctx.active.set(ctx.active.get() + 1);
    ctx.stats.connections_active.inc();
    proxy::spawn_connection_task(proxy::serve(
        proxy::ActiveGuard(ctx.clone()),
        stream,
        peer,
        id,
        tls,
        http2,
    ));
}
