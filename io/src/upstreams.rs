//! Upstream state shared across threads, each piece with one writer: active health results
//! (written by the health checker), administrative drain flags (written by the admin thread),
//! the current address of every endpoint slot (written by the resolver, with a generation
//! number workers compare once per pick), and per-worker endpoint counters (each written by its
//! worker, summed by readers). Workers only load from here on the request path; loads are
//! relaxed atomics, never a lock (the address table's lock is taken only when the generation
//! moved, that is after a DNS change).

use crate::metrics::Counter;
use proxy_core::config::Config;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Active health state of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No active check configured (or none finished yet): usable.
    Unchecked,
    /// Passing its checks.
    Up,
    /// Failing its checks: takes no new requests.
    Down,
}

/// The shared table, indexed by endpoint id.
#[derive(Debug)]
pub struct SharedUpstreams {
    health: Box<[AtomicU8]>,
    drain: Box<[AtomicBool]>,
    generation: AtomicU64,
    /// Current address of each slot; `None` for an empty DNS slot.
    addrs: Mutex<Arc<[Option<SocketAddr>]>>,
}

impl SharedUpstreams {
    /// The table for `config`'s endpoints, as they are at start.
    pub fn new(config: &Config) -> SharedUpstreams {
        let n = config.endpoint_count();
        let addrs: Vec<Option<SocketAddr>> = config
            .clusters
            .iter()
            .flat_map(|c| c.endpoints.iter().map(|e| e.present.then_some(e.addr)))
            .collect();
        SharedUpstreams {
            health: (0..n).map(|_| AtomicU8::new(0)).collect(),
            drain: (0..n).map(|_| AtomicBool::new(false)).collect(),
            generation: AtomicU64::new(0),
            addrs: Mutex::new(addrs.into()),
        }
    }

    /// Whether endpoint `id` may take new requests: not down, not drained, holding an address.
    #[inline]
    pub fn usable(&self, id: usize) -> bool {
        self.health(id) != Health::Down
            && !self
                .drain
                .get(id)
                .is_some_and(|d| d.load(Ordering::Relaxed))
    }

    /// The health of endpoint `id`.
    #[inline]
    pub fn health(&self, id: usize) -> Health {
        match self.health.get(id).map(|h| h.load(Ordering::Relaxed)) {
            Some(1) => Health::Up,
            Some(2) => Health::Down,
            _ => Health::Unchecked,
        }
    }

    /// Records a health transition (the health checker is the only writer).
    pub fn set_health(&self, id: usize, health: Health) {
        if let Some(h) = self.health.get(id) {
            let v = match health {
                Health::Unchecked => 0,
                Health::Up => 1,
                Health::Down => 2,
            };
            h.store(v, Ordering::Relaxed);
        }
    }

    /// Whether endpoint `id` is drained.
    pub fn is_drained(&self, id: usize) -> bool {
        self.drain
            .get(id)
            .is_some_and(|d| d.load(Ordering::Relaxed))
    }

    /// Drains (`true`) or re-enables endpoint `id` (the admin thread is the only writer).
    pub fn set_drained(&self, id: usize, drained: bool) {
        if let Some(d) = self.drain.get(id) {
            d.store(drained, Ordering::Relaxed);
        }
    }

    /// The address generation: it moves whenever a slot's address changes.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current addresses of all slots.
    pub fn addrs(&self) -> Arc<[Option<SocketAddr>]> {
        match self.addrs.lock() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sets the addresses of the slots in `slots` (the resolver is the only writer); returns
    /// whether anything changed.
    pub fn set_addrs(&self, slots: std::ops::Range<usize>, found: &[SocketAddr]) -> bool {
        let mut guard = match self.addrs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut next: Vec<Option<SocketAddr>> = guard.to_vec();
        let Some(window) = next.get_mut(slots.clone()) else {
            return false;
        };
        // An address that stays keeps its slot (its pooled connections stay valid); new ones
        // fill the slots that were freed.
        let mut wanted: Vec<SocketAddr> = found.iter().copied().take(window.len()).collect();
        for slot in window.iter_mut() {
            match slot {
                Some(a) if wanted.contains(a) => wanted.retain(|w| w != a),
                _ => *slot = None,
            }
        }
        for slot in window.iter_mut().filter(|s| s.is_none()) {
            if wanted.is_empty() {
                break;
            }
            *slot = Some(wanted.remove(0));
        }
        if next[..] == guard[..] {
            return false;
        }
        *guard = next.into();
        self.generation.fetch_add(1, Ordering::Release);
        true
    }
}

/// One worker's counters for one endpoint.
#[derive(Debug, Default)]
pub struct EndpointCounters {
    /// Requests sent (tries, retries included).
    pub requests: Counter,
    /// Tries that failed: connect failure, reset, timeout, 5xx.
    pub failures: Counter,
    /// Requests in flight now (gauge).
    pub in_flight: Counter,
    /// Peak-EWMA latency in microseconds, as of the last response.
    pub ewma_micros: AtomicU64,
    /// Whether the worker has the endpoint ejected (1) or not (0).
    pub ejected: AtomicU64,
    /// Ejections so far.
    pub ejections: Counter,
}

/// One worker's counters for one cluster.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Retries made (on another endpoint, or on a fresh connection after a stale one).
    pub retries: Counter,
    /// Retries refused because the retry budget was spent.
    pub budget_exhausted: Counter,
    /// Requests answered 503 at once by the circuit breaker.
    pub circuit_open: Counter,
    /// Requests answered 503 because no endpoint could take them.
    pub no_endpoint: Counter,
}

/// Every worker's per-endpoint and per-cluster counters.
#[derive(Debug)]
pub struct UpstreamCounters {
    /// Per endpoint id.
    pub endpoints: Box<[EndpointCounters]>,
    /// Per cluster index.
    pub clusters: Box<[ClusterCounters]>,
}

impl UpstreamCounters {
    /// Zeroed counters for `config`.
    pub fn new(config: &Config) -> Arc<UpstreamCounters> {
        Arc::new(UpstreamCounters {
            endpoints: (0..config.endpoint_count())
                .map(|_| EndpointCounters::default())
                .collect(),
            clusters: (0..config.clusters.len())
                .map(|_| ClusterCounters::default())
                .collect(),
        })
    }
}
