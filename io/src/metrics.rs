//! Per-worker counters and their Prometheus rendering.
//!
//! Each worker owns one [`WorkerStats`] and is its only writer: a counter increment is a relaxed
//! load and store (no locked read-modify-write, no cache-line ping-pong). The metrics endpoint
//! reads every worker's counters when scraped and sums them; it may see a value a moment old,
//! never a torn one.

use crate::runtime::DriverInfo;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// A counter or gauge with exactly one writing thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one. Only the owning worker may call this.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`. Only the owning worker may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Subtracts one (gauges). Only the owning worker may call this.
    #[inline]
    pub fn dec(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(1),
            Ordering::Relaxed,
        );
    }

    /// Sets a gauge (or a counter published from elsewhere).
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Responses sent, by status class: index 0 is 1xx … index 4 is 5xx.
    pub responses: [Counter; 5],
    /// Client connections accepted.
    pub connections_accepted: Counter,
    /// Client connections open now (gauge).
    pub connections_active: Counter,
    /// Client connections refused because the worker was at `max_connections`.
    pub connections_refused: Counter,
    /// Upstream connections opened.
    pub upstream_connects: Counter,
    /// Requests sent on a pooled upstream connection.
    pub upstream_reuses: Counter,
    /// Upstream failures: connect errors, resets, timeouts, garbage.
    pub upstream_errors: Counter,
    /// Requests retried on a fresh connection after a reused one failed.
    pub upstream_retries: Counter,
    /// Requests rejected as malformed or over a limit (4xx answered by the proxy itself).
    pub bad_requests: Counter,
    /// TLS handshakes completed.
    pub tls_handshakes: Counter,
    /// TLS handshakes that resumed a session.
    pub tls_resumed: Counter,
    /// TLS handshakes that failed (bad input, timeout, refused certificate, unknown SNI).
    pub tls_handshake_errors: Counter,
    /// HTTP/2 connections served (h2c and TLS).
    pub h2_connections: Counter,
    /// HTTP/2 streams accepted.
    pub h2_streams: Counter,
    /// HTTP/2 connections closed for a flood (GOAWAY ENHANCE_YOUR_CALM).
    pub h2_floods: Counter,
    /// Requests answered from the cache while fresh.
    pub cache_hits: Counter,
    /// Cacheable requests that went upstream (nothing usable stored).
    pub cache_misses: Counter,
    /// Stale stored responses served (stale-while-revalidate, stale-if-error).
    pub cache_stale: Counter,
    /// Stored responses revalidated by a 304.
    pub cache_revalidated: Counter,
    /// Requests on a caching route that went around the cache.
    pub cache_bypass: Counter,
    /// Responses stored.
    pub cache_stored: Counter,
    /// Bytes held by this worker's caches (gauge, refreshed each second).
    pub cache_bytes: Counter,
    /// Responses (variants) held by this worker's caches (gauge, refreshed each second).
    pub cache_entries: Counter,
    /// Stored responses evicted for room (refreshed each second).
    pub cache_evictions: Counter,
    /// Responses compressed (streamed, or a stored variant made).
    pub compressed: Counter,
    /// The driver this worker runs on, set once at start.
    pub driver: OnceLock<DriverInfo>,
    /// The CPU this worker is pinned to, if pinning succeeded.
    pub cpu: OnceLock<usize>,
}

impl WorkerStats {
    /// Counts one response with `status`.
    #[inline]
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].inc();
    }
}

/// Renders all workers' counters in the Prometheus text format, per worker and in total, and
/// the expiry of each TLS certificate in service.
pub fn render_prometheus(
    workers: &[Arc<WorkerStats>],
    certificates: &[crate::tls::CertificateStatus],
) -> String {
    let mut out = String::with_capacity(4096);
    let counter = |out: &mut String,
                   name: &str,
                   help: &str,
                   kind: &str,
                   get: &dyn Fn(&WorkerStats) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let mut total = 0;
        for (i, w) in workers.iter().enumerate() {
            let v = get(w);
            total += v;
            let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {v}");
        }
        let _ = writeln!(out, "{name}{{worker=\"all\"}} {total}");
    };
    let _ = writeln!(
        out,
        "# HELP ringway_responses_total Responses sent to clients, by status class."
    );
    let _ = writeln!(out, "# TYPE ringway_responses_total counter");
    for (c, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        let mut total = 0;
        for (i, w) in workers.iter().enumerate() {
            let v = w.responses[c].get();
            total += v;
            let _ = writeln!(
                out,
                "ringway_responses_total{{worker=\"{i}\",class=\"{class}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "ringway_responses_total{{worker=\"all\",class=\"{class}\"}} {total}"
        );
    }
    counter(
        &mut out,
        "ringway_connections_accepted_total",
        "Client connections accepted.",
        "counter",
        &|w| w.connections_accepted.get(),
    );
    counter(
        &mut out,
        "ringway_cache_bytes",
        "Bytes held by the cache (refreshed each second).",
        "gauge",
        &|w| w.cache_bytes.get(),
    );
    counter(
        &mut out,
        "ringway_cache_entries",
        "Responses (variants) held by the cache (refreshed each second).",
        "gauge",
        &|w| w.cache_entries.get(),
    );
    counter(
        &mut out,
        "ringway_connections_active",
        "Client connections open now.",
        "gauge",
        &|w| w.connections_active.get(),
    );
    counter(
        &mut out,
        "ringway_connections_refused_total",
        "Client connections refused at max_connections.",
        "counter",
        &|w| w.connections_refused.get(),
    );
    counter(
        &mut out,
        "ringway_upstream_connects_total",
        "Upstream connections opened.",
        "counter",
        &|w| w.upstream_connects.get(),
    );
    counter(
        &mut out,
        "ringway_upstream_reuses_total",
        "Requests sent on a pooled upstream connection.",
        "counter",
        &|w| w.upstream_reuses.get(),
    );
    counter(
        &mut out,
        "ringway_upstream_errors_total",
        "Upstream failures.",
        "counter",
        &|w| w.upstream_errors.get(),
    );
    counter(
        &mut out,
        "ringway_upstream_retries_total",
        "Requests retried after a reused upstream connection failed.",
        "counter",
        &|w| w.upstream_retries.get(),
    );
    counter(
        &mut out,
        "ringway_bad_requests_total",
        "Requests the proxy rejected itself.",
        "counter",
        &|w| w.bad_requests.get(),
    );
    for (name, help, get) in [
        (
            "ringway_tls_handshakes_total",
            "TLS handshakes completed.",
            (|w: &WorkerStats| w.tls_handshakes.get()) as fn(&WorkerStats) -> u64,
        ),
        (
            "ringway_tls_resumed_total",
            "TLS handshakes that resumed a session.",
            |w| w.tls_resumed.get(),
        ),
        (
            "ringway_tls_handshake_errors_total",
            "TLS handshakes that failed.",
            |w| w.tls_handshake_errors.get(),
        ),
        (
            "ringway_h2_connections_total",
            "HTTP/2 client connections served (h2c and over TLS).",
            |w| w.h2_connections.get(),
        ),
        (
            "ringway_h2_streams_total",
            "HTTP/2 streams (requests) accepted.",
            |w| w.h2_streams.get(),
        ),
        (
            "ringway_h2_floods_total",
            "HTTP/2 connections closed with GOAWAY(ENHANCE_YOUR_CALM) for a PING, SETTINGS, control-frame or empty-DATA flood.",
            |w| w.h2_floods.get(),
        ),
        (
            "ringway_cache_hits_total",
            "Requests answered from the cache while fresh.",
            |w| w.cache_hits.get(),
        ),
        (
            "ringway_cache_misses_total",
            "Cacheable requests that went upstream.",
            |w| w.cache_misses.get(),
        ),
        (
            "ringway_cache_stale_total",
            "Stale stored responses served (stale-while-revalidate, stale-if-error).",
            |w| w.cache_stale.get(),
        ),
        (
            "ringway_cache_revalidated_total",
            "Stored responses revalidated by a 304 from upstream.",
            |w| w.cache_revalidated.get(),
        ),
        (
            "ringway_cache_bypass_total",
            "Requests on a caching route that went around the cache.",
            |w| w.cache_bypass.get(),
        ),
        (
            "ringway_cache_stored_total",
            "Responses stored in the cache.",
            |w| w.cache_stored.get(),
        ),
        (
            "ringway_cache_evictions_total",
            "Stored responses evicted to make room (refreshed each second).",
            |w| w.cache_evictions.get(),
        ),
        (
            "ringway_compressed_total",
            "Responses compressed (streamed, or a stored variant made).",
            |w| w.compressed.get(),
        ),
    ] {
        counter(&mut out, name, help, "counter", &get);
    }
    let _ = writeln!(
        out,
        "# HELP ringway_worker_info The I/O driver, ring flags and CPU of each worker."
    );
    let _ = writeln!(out, "# TYPE ringway_worker_info gauge");
    for (i, w) in workers.iter().enumerate() {
        let (driver, flags) = w
            .driver
            .get()
            .map_or(("starting", "none"), |d| (d.name(), d.flags()));
        let cpu = w
            .cpu
            .get()
            .map_or_else(|| "none".to_owned(), |c| c.to_string());
        let _ = writeln!(
            out,
            "ringway_worker_info{{worker=\"{i}\",driver=\"{driver}\",ring_flags=\"{flags}\",cpu=\"{cpu}\"}} 1"
        );
    }
    if !certificates.is_empty() {
        let name = "ringway_tls_certificate_expiry_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} When each TLS certificate in service expires (Unix time).\n# TYPE {name} gauge"
        );
        for c in certificates {
            let _ = writeln!(
                out,
                "{name}{{listener=\"{}\",file=\"{}\"}} {}",
                escape_label(&c.listener),
                escape_label(&c.file),
                c.not_after
            );
        }
    }
    out
}

/// A Prometheus label value with `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
