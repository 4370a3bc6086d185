//! The tries of one request: which endpoint it is on, whether a failure may be retried on
//! another one (the cluster's retry conditions, its retry count, its overall timeout and its
//! retry budget), and the accounting of each try for the balancer. Both the HTTP/1 exchange and
//! HTTP/2 streams towards HTTP/1 clusters drive their loop through this.

use crate::balance::Try;
use crate::worker::WorkerCtx;
use proxy_core::config::{Config, Endpoint};
use proxy_core::lb::Outcome;
use std::time::{Duration, Instant};

/// Why a try failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// No connection could be opened: nothing was sent, any request may go elsewhere.
    Connect,
    /// The connection closed or reset before a response head.
    Reset,
    /// No response head within the try's timeout.
    Timeout,
    /// A response with this status that the cluster retries.
    Status(u16),
}

/// Most ids a request remembers as tried (the retry count is at most 10).
const MAX_TRIES: usize = 11;

/// The tries of one request.
pub(super) struct Attempts<'a> {
    ctx: &'a WorkerCtx,
    cluster: usize,
    /// The endpoint of the current try.
    pub(super) ep: Endpoint,
    tried: [usize; MAX_TRIES],
    tries: usize,
    deadline: Option<Instant>,
    key: Option<u64>,
    current: Option<Try<'a>>,
}

impl<'a> Attempts<'a> {
    /// The first try of a request of `cluster` on `ep` (hash key `key`, for re-picks).
    pub(super) fn new(
        ctx: &'a WorkerCtx,
        cluster: usize,
        ep: Endpoint,
        key: Option<u64>,
    ) -> Attempts<'a> {
        let now = Instant::now();
        ctx.count_request(cluster, now);
        let deadline = ctx.config.clusters[cluster].retry.timeout.map(|t| now + t);
        let mut tried = [usize::MAX; MAX_TRIES];
        tried[0] = ep.id;
        Attempts {
            ctx,
            cluster,
            ep,
            tried,
            tries: 1,
            deadline,
            key,
            current: Some(ctx.start_try(cluster, &ep, now)),
        }
    }

    /// The cluster index.
    pub(super) fn cluster(&self) -> usize {
        self.cluster
    }

    /// How long the current try may wait for its response head.
    pub(super) fn try_timeout(&self, cfg: &Config) -> Duration {
        let per_try = cfg.clusters[self.cluster].retry.per_try_timeout;
        match self.deadline {
            Some(d) => per_try.min(d.saturating_duration_since(Instant::now())),
            None => per_try,
        }
    }

    /// Whether a response with `status` is to be retried (so not forwarded), for a request
    /// that is `retryable`.
    pub(super) fn retries_status(&self, status: u16, retryable: bool) -> bool {
        retryable
            && self.tries <= self.retries()
            && self.ctx.config.clusters[self.cluster]
                .retry
                .on_status
                .contains(&status)
    }

    fn retries(&self) -> usize {
        self.ctx.config.clusters[self.cluster].retry.retries as usize
    }

    /// Ends the current try as failed; returns the endpoint of the next try when the failure
    /// may be retried (`retryable`: the request is idempotent and held in full) and the
    /// policy, the overall timeout and the budget allow it.
    pub(super) fn fail(&mut self, why: Failure, retryable: bool) -> Option<Endpoint> {
        let outcome = match why {
            Failure::Connect => Outcome::ConnectFailure,
            Failure::Reset => Outcome::Reset,
            Failure::Timeout => Outcome::Timeout,
            Failure::Status(_) => Outcome::ServerError,
        };
        if let Some(t) = self.current.take() {
            t.end(outcome);
        }
        let policy = &self.ctx.config.clusters[self.cluster].retry;
        let allowed = match why {
            Failure::Connect => policy.on_connect_failure,
            Failure::Reset => policy.on_reset && retryable,
            Failure::Timeout => policy.on_timeout && retryable,
            Failure::Status(s) => retryable && policy.on_status.contains(&s),
        };
        if !allowed
            || self.tries > self.retries()
            || self.tries >= MAX_TRIES
            || self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            return None;
        }
        let next = self
            .ctx
            .pick(self.cluster, self.key, None, &self.tried[..self.tries])?;
        if !self.ctx.withdraw_retry(self.cluster) {
            return None;
        }
        self.tried[self.tries] = next.id;
        self.tries += 1;
        self.ep = next;
        self.current = Some(self.ctx.start_try(self.cluster, &next, Instant::now()));
        Some(next)
    }

    /// Ends the current try with a response of `status`.
    pub(super) fn succeed(&mut self, status: u16) {
        if let Some(t) = self.current.take() {
            t.end_with_status(status);
        }
    }

    /// Ends the current try without blaming the endpoint (the client went away, a local limit).
    pub(super) fn cancel(&mut self) {
        if let Some(t) = self.current.take() {
            t.end(Outcome::Cancelled);
        }
    }
}
