//! Balancing on one worker: the per-cluster [`ClusterLb`] states and retry budgets of this core,
//! kept in step with the shared upstream table (health, drain, DNS addresses), and the
//! [`Try`] guard that accounts for one request to one endpoint (in-flight, latency, outcome)
//! however the request ends.

use crate::upstreams::{SharedUpstreams, UpstreamCounters};
use crate::worker::WorkerCtx;
use proxy_core::config::{Cluster, Config, Endpoint};
use proxy_core::lb::budget::RetryBudget;
use proxy_core::lb::{ClusterLb, Member, Outcome, PickInput};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// A worker's balancing state.
pub(crate) struct LbState {
    clusters: RefCell<Vec<ClusterLb>>,
    budgets: RefCell<Vec<RetryBudget>>,
    /// The shared table's generation this worker's members were built from.
    generation: Cell<u64>,
    addrs: RefCell<Arc<[Option<SocketAddr>]>>,
    /// Id of each cluster's first endpoint (a cluster's ids are contiguous).
    first_id: Vec<usize>,
    pub(crate) shared: Arc<SharedUpstreams>,
    pub(crate) counters: Arc<UpstreamCounters>,
}

fn members(cluster: &Cluster, addrs: &[Option<SocketAddr>]) -> Vec<Member> {
    cluster
        .endpoints
        .iter()
        .filter_map(|e| {
            let addr = addrs.get(e.id).copied().flatten()?;
            Some(Member {
                id: e.id,
                weight: e.weight,
                priority: e.priority,
                name: addr.to_string(),
            })
        })
        .collect()
}

impl LbState {
    pub(crate) fn new(
        cfg: &Config,
        shared: Arc<SharedUpstreams>,
        counters: Arc<UpstreamCounters>,
        worker: usize,
    ) -> LbState {
        let generation = shared.generation();
        let addrs = shared.addrs();
        let seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (worker as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let clusters = cfg
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                ClusterLb::new(
                    c.balance.algorithm,
                    c.outlier,
                    c.balance.overprovisioning,
                    members(c, &addrs),
                    seed.wrapping_add(i as u64),
                )
            })
            .collect();
        let budgets = cfg
            .clusters
            .iter()
            .map(|c| RetryBudget::new(c.retry.budget_percent, c.retry.budget_min_per_sec))
            .collect();
        let mut first = 0;
        let first_id = cfg
            .clusters
            .iter()
            .map(|c| {
                let f = first;
                first += c.endpoints.len();
                f
            })
            .collect();
        LbState {
            clusters: RefCell::new(clusters),
            budgets: RefCell::new(budgets),
            generation: Cell::new(generation),
            addrs: RefCell::new(addrs),
            first_id,
            shared,
            counters,
        }
    }
}

impl WorkerCtx {
    /// Picks an endpoint of `cluster` for a request with hash key `key`, preferring the sticky
    /// endpoint `sticky` when it is usable, avoiding the ids in `exclude`. `None` when the
    /// cluster has no endpoint left to try.
    pub(crate) fn pick(
        &self,
        cluster: usize,
        key: Option<u64>,
        sticky: Option<u64>,
        exclude: &[usize],
    ) -> Option<Endpoint> {
        self.refresh_members();
        let shared = &*self.lb.shared;
        let usable = |id: usize| shared.usable(id);
        let input = PickInput {
            now: Instant::now(),
            key,
            exclude,
            usable: &usable,
        };
        let id = {
            let mut lbs = self.lb.clusters.borrow_mut();
            let lb = lbs.get_mut(cluster)?;
            match sticky.and_then(|t| lb.sticky_target(t, &input)) {
                Some(id) => id,
                None => lb.pick(&input)?,
            }
        };
        self.endpoint(cluster, id)
    }

    /// Endpoint `id` of `cluster` with its current address.
    pub(crate) fn endpoint(&self, cluster: usize, id: usize) -> Option<Endpoint> {
        let first = *self.lb.first_id.get(cluster)?;
        let mut ep = *self
            .config
            .clusters
            .get(cluster)?
            .endpoints
            .get(id - first)?;
        if ep.dns.is_some() {
            ep.addr = self.lb.addrs.borrow().get(id).copied().flatten()?;
        }
        Some(ep)
    }

    /// The sticky token of endpoint `id`.
    pub(crate) fn sticky_token(&self, cluster: usize, id: usize) -> Option<u64> {
        self.lb.clusters.borrow().get(cluster)?.sticky_token(id)
    }

    /// Records an original request of `cluster`, made at `now`, for its retry budget.
    pub(crate) fn count_request(&self, cluster: usize, now: Instant) {
        if let Some(b) = self.lb.budgets.borrow_mut().get_mut(cluster) {
            b.on_request(now);
        }
    }

    /// Takes one retry from `cluster`'s budget, if it has one left.
    pub(crate) fn withdraw_retry(&self, cluster: usize) -> bool {
        let ok = self
            .lb
            .budgets
            .borrow_mut()
            .get_mut(cluster)
            .is_some_and(|b| b.try_withdraw(Instant::now()));
        if let Some(c) = self.lb.counters.clusters.get(cluster) {
            if ok {
                c.retries.inc();
            } else {
                c.budget_exhausted.inc();
            }
        }
        ok
    }

    /// Starts accounting one request to `ep`, sent from `now` (the clock read once per request:
    /// on a VM each read is a measurable share of a keep-alive request's cost).
    pub(crate) fn start_try(&self, cluster: usize, ep: &Endpoint, now: Instant) -> Try<'_> {
        if let Some(lb) = self.lb.clusters.borrow_mut().get_mut(cluster) {
            lb.on_start(ep.id);
        }
        if let Some(c) = self.lb.counters.endpoints.get(ep.id) {
            c.requests.inc();
            c.in_flight.inc();
        }
        Try {
            ctx: self,
            cluster,
            id: ep.id,
            started: now,
            ended: false,
        }
    }

    fn end_try(&self, cluster: usize, id: usize, started: Instant, outcome: Outcome) {
        let now = Instant::now();
        let mut lbs = self.lb.clusters.borrow_mut();
        let Some(lb) = lbs.get_mut(cluster) else {
            return;
        };
        let ejected = lb.on_end(id, now, now.saturating_duration_since(started), outcome);
        drop(lbs);
        if let Some(c) = self.lb.counters.endpoints.get(id) {
            c.in_flight.dec();
            if !matches!(outcome, Outcome::Success | Outcome::Cancelled) {
                c.failures.inc();
            }
            if ejected {
                c.ejections.inc();
                c.ejected.store(1, Ordering::Relaxed);
                tracing::warn!(
                    worker = self.index,
                    endpoint = id,
                    "endpoint ejected after consecutive failures"
                );
            }
        }
    }

    /// Rebuilds the members of clusters with DNS names when the shared addresses changed, and
    /// closes pooled connections to addresses that went away.
    fn refresh_members(&self) {
        let generation = self.lb.shared.generation();
        if generation == self.lb.generation.get() {
            return;
        }
        self.lb.generation.set(generation);
        let next = self.lb.shared.addrs();
        let prev = std::mem::replace(&mut *self.lb.addrs.borrow_mut(), next.clone());
        let mut lbs = self.lb.clusters.borrow_mut();
        for (i, c) in self.config.clusters.iter().enumerate() {
            if c.dns_names.is_empty() {
                continue;
            }
            for e in &c.endpoints {
                if prev.get(e.id) != next.get(e.id) {
                    self.upstreams.clear_endpoint(e.id);
                    if let Some(h2) = self.h2_upstreams.get(e.id) {
                        h2.reset();
                    }
                }
            }
            if let Some(lb) = lbs.get_mut(i) {
                lb.set_members(members(c, &next));
            }
        }
        tracing::debug!(
            worker = self.index,
            generation,
            "endpoint addresses changed"
        );
    }

    /// Refreshes the exported ejection state and EWMA latency of every endpoint; called once a
    /// second. Ejections end with time, not with an event, and the EWMA decays with time, so
    /// both are published here rather than per request (which cost an `exp` per response).
    pub(crate) fn publish_lb_stats(&self) {
        let now = Instant::now();
        let lbs = self.lb.clusters.borrow();
        for lb in lbs.iter() {
            for m in lb.members() {
                if let Some(c) = self.lb.counters.endpoints.get(m.id) {
                    let s = lb.stats(m.id, now);
                    c.ejected.store(u64::from(s.ejected), Ordering::Relaxed);
                    c.ewma_micros.store(s.ewma_micros, Ordering::Relaxed);
                }
            }
        }
    }
}

/// One request to one endpoint, accounted from the moment it is sent until its response head
/// (or failure). Dropped without [`Try::end`] (the client went away), it ends as `Cancelled`.
pub(crate) struct Try<'a> {
    ctx: &'a WorkerCtx,
    cluster: usize,
    id: usize,
    started: Instant,
    ended: bool,
}

impl Try<'_> {
    /// Ends the try with `outcome`.
    pub(crate) fn end(mut self, outcome: Outcome) {
        self.ended = true;
        self.ctx
            .end_try(self.cluster, self.id, self.started, outcome);
    }

    /// Ends the try with the outcome of a response with `status`.
    pub(crate) fn end_with_status(self, status: u16) {
        self.end(if status >= 500 {
            Outcome::ServerError
        } else {
            Outcome::Success
        });
    }
}

impl Drop for Try<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.ctx
                .end_try(self.cluster, self.id, self.started, Outcome::Cancelled);
        }
    }
}
