//! What one worker knows about one endpoint: requests in flight, the peak-EWMA latency
//! (Finagle's), and the passive outlier-detection state (consecutive failures, ejection with a
//! growing backoff). Pure bookkeeping on values handed in: no clock, and no view of the other
//! endpoints (the cluster-wide "how many are ejected" rule lives in [`super::ClusterLb`]).

use super::{MemberStats, Outcome, OutlierPolicy};
use std::time::{Duration, Instant};

/// Decay time constant of the peak EWMA, in nanoseconds (Finagle's default, 10 s).
const TAU_NANOS: f64 = 10e9;

/// The cost of an endpoint that has requests in flight but has never answered on this core
/// (Finagle's penalty): large enough that a fresh endpoint is not flooded while its first
/// responses are outstanding, yet it is tried as soon as it has nothing in flight.
const UNMEASURED_PENALTY: f64 = 1e12;

/// Per-core, per-endpoint balancer state.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberState {
    /// Requests sent and not ended.
    pub(crate) in_flight: u32,
    /// Peak-EWMA latency in nanoseconds as of `ewma_stamp` (0: never measured).
    ewma_nanos: f64,
    /// When `ewma_nanos` was last updated.
    ewma_stamp: Option<Instant>,
    /// Current run of failures.
    consecutive_failures: u32,
    /// End of the current (or last) ejection.
    ejected_until: Option<Instant>,
    /// Ejections in a row: the n-th lasts n × `base_ejection`.
    ejections_in_row: u32,
    /// Ejections so far.
    ejections: u64,
}

impl MemberState {
    /// Whether the endpoint is ejected at `now` (ejections end by themselves).
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// The peak-EWMA latency at `now`, in nanoseconds: the stored value decayed towards zero for
    /// the time since it was last fed, as Finagle reads it. Without the decay an endpoint that
    /// was slow once would never be picked again by P2C, and so never measured again.
    pub(crate) fn ewma_nanos(&self, now: Instant) -> f64 {
        match self.ewma_stamp {
            None => 0.0,
            Some(stamp) => self.ewma_nanos * decay(now.saturating_duration_since(stamp)),
        }
    }

    /// P2C's cost of sending one more request here: latency × (in-flight + 1). An endpoint
    /// never measured costs 0 when idle (so it gets tried) and a large penalty while its first
    /// requests are outstanding.
    pub(crate) fn p2c_cost(&self, now: Instant) -> f64 {
        let ewma = self.ewma_nanos(now);
        if ewma == 0.0 && self.in_flight > 0 {
            UNMEASURED_PENALTY + f64::from(self.in_flight)
        } else {
            ewma * (f64::from(self.in_flight) + 1.0)
        }
    }

    /// Feeds one measured latency (Finagle's peak EWMA). With `current` the value decayed to
    /// `now` (as [`MemberState::ewma_nanos`] reads it) and w = e^(−Δt/τ), Δt the time since the
    /// last update and τ 10 s: a latency above `current` replaces it at once; a lower one is
    /// blended in, `current`·w + rtt·(1 − w).
    ///
    /// Comparing with the decayed value rather than the stored one matches Finagle, whose reads
    /// write the decay back: an endpoint that was slow a minute ago and answers in 10 ms now
    /// costs 10 ms, the same as its peers, not a little more for ever after.
    pub(crate) fn observe_latency(&mut self, now: Instant, latency: Duration) {
        let rtt = latency.as_nanos() as f64;
        let (current, w) = match self.ewma_stamp {
            None => (0.0, 0.0),
            Some(stamp) => {
                let w = decay(now.saturating_duration_since(stamp));
                (self.ewma_nanos * w, w)
            }
        };
        self.ewma_nanos = if rtt > current {
            rtt
        } else {
            current * w + rtt * (1.0 - w)
        };
        self.ewma_stamp = Some(match self.ewma_stamp {
            Some(stamp) if stamp > now => stamp,
            _ => now,
        });
    }

    /// Counts an outcome for outlier detection. Returns whether the failure run has reached
    /// the policy's threshold, i.e. whether the endpoint should be ejected now (the caller
    /// checks the cluster-wide cap and calls [`MemberState::eject`]).
    ///
    /// Failures of requests that end while the endpoint is already ejected (they were in flight
    /// when it was ejected) are not counted: they say nothing new.
    pub(crate) fn count_outcome(
        &mut self,
        now: Instant,
        outcome: Outcome,
        policy: &OutlierPolicy,
    ) -> bool {
        match outcome {
            Outcome::Cancelled => false,
            Outcome::Success => {
                self.consecutive_failures = 0;
                let settled = self
                    .ejected_until
                    .and_then(|until| until.checked_add(policy.max_ejection))
                    .is_some_and(|settled| now >= settled);
                if settled {
                    self.ejections_in_row = 0;
                }
                false
            }
            Outcome::ServerError | Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => {
                if self.is_ejected(now) {
                    return false;
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                policy.consecutive_failures > 0
                    && self.consecutive_failures >= policy.consecutive_failures
            }
        }
    }

    /// Ejects the endpoint from `now` for `base_ejection` × (ejections in a row), at most
    /// `max_ejection`, and starts a new failure run.
    pub(crate) fn eject(&mut self, now: Instant, policy: &OutlierPolicy) {
        self.ejections_in_row = self.ejections_in_row.saturating_add(1);
        let time = policy
            .base_ejection
            .saturating_mul(self.ejections_in_row)
            .min(policy.max_ejection);
        self.ejected_until = Some(now.checked_add(time).unwrap_or(now));
        self.ejections = self.ejections.saturating_add(1);
        self.consecutive_failures = 0;
    }

    /// The state kept when the member set is replaced: in-flight always (those requests will
    /// still end on this id); latency and outlier state only when the id still names the same
    /// endpoint (`same_endpoint`: same name, i.e. same address), since a DNS slot that now
    /// points elsewhere is a different server.
    pub(crate) fn carry_over(&self, same_endpoint: bool) -> MemberState {
        if same_endpoint {
            self.clone()
        } else {
            MemberState {
                in_flight: self.in_flight,
                ..MemberState::default()
            }
        }
    }

    /// The admin view at `now`.
    pub(crate) fn stats(&self, now: Instant) -> MemberStats {
        MemberStats {
            in_flight: self.in_flight,
            ewma_micros: (self.ewma_nanos(now) / 1000.0) as u64,
            ejected: self.is_ejected(now),
            ejections: self.ejections,
            consecutive_failures: self.consecutive_failures,
        }
    }
}

/// e^(−Δt/τ).
fn decay(elapsed: Duration) -> f64 {
    (-(elapsed.as_nanos() as f64) / TAU_NANOS).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let t0 = Instant::now();
        let mut s = MemberState::default();
        assert_eq!(s.ewma_nanos(t0), 0.0);
        s.observe_latency(t0, Duration::from_millis(10));
        assert_eq!(s.ewma_nanos(t0), 10e6);
        // A peak replaces the value at once.
        s.observe_latency(t0, Duration::from_millis(50));
        assert_eq!(s.ewma_nanos(t0), 50e6);
        // τ later the value has decayed to 50/e ms; a lower latency is blended in with weight
        // 1 − 1/e.
        let t1 = t0 + Duration::from_secs(10);
        let w = (-1.0f64).exp();
        assert!((s.ewma_nanos(t1) - 50e6 * w).abs() < 1.0);
        s.observe_latency(t1, Duration::from_millis(10));
        let expected = 50e6 * w * w + 10e6 * (1.0 - w);
        assert!((s.ewma_nanos(t1) - expected).abs() < 1.0);
        // Read later, the value has decayed towards zero...
        let t2 = t1 + Duration::from_secs(60);
        assert!(s.ewma_nanos(t2) < expected / 100.0);
        // ...and a latency above the decayed value is taken as is.
        s.observe_latency(t2, Duration::from_millis(1));
        assert_eq!(s.ewma_nanos(t2), 1e6);
    }

    #[test]
    fn unmeasured_endpoint_is_free_when_idle_and_penalised_when_busy() {
        let t0 = Instant::now();
        let mut s = MemberState::default();
        assert_eq!(s.p2c_cost(t0), 0.0);
        s.in_flight = 1;
        assert!(s.p2c_cost(t0) >= UNMEASURED_PENALTY);
    }
}
