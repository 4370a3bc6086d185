//! The retry budget of one cluster on one worker (Linkerd's and Envoy's idea): retries may add
//! at most a share of the recent original requests, plus a small floor so that a quiet
//! cluster can still retry. It keeps a failing backend from being hit by a retry storm. The
//! window is ten one-second buckets in a ring; nothing allocates after [`RetryBudget::new`] and
//! nothing reads a clock (`now` is passed in).

use std::time::Instant;

/// Seconds in the sliding window.
const WINDOW_SECS: usize = 10;

/// A sliding-window retry budget: over the last 10 s, retries ≤ `percent`/100 × original
/// requests + `min_per_sec` × 10.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    percent: u32,
    min_per_sec: u32,
    /// Original requests per second, ring-indexed by second number.
    requests: [u32; WINDOW_SECS],
    /// Retries per second, ring-indexed by second number.
    retries: [u32; WINDOW_SECS],
    /// The time of the first call: second 0.
    base: Option<Instant>,
    /// The second number of the newest bucket.
    second: u64,
}

impl RetryBudget {
    /// A budget allowing retries of `percent` % of recent requests plus `min_per_sec` per
    /// second.
    pub fn new(percent: u32, min_per_sec: u32) -> RetryBudget {
        RetryBudget {
            percent,
            min_per_sec,
            requests: [0; WINDOW_SECS],
            retries: [0; WINDOW_SECS],
            base: None,
            second: 0,
        }
    }

    /// Records an original request (not a retry) at `now`.
    pub fn on_request(&mut self, now: Instant) {
        let b = self.advance(now);
        if let Some(r) = self.requests.get_mut(b) {
            *r = r.saturating_add(1);
        }
    }

    /// Whether one retry may be made at `now`; if so it is recorded against the budget.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        let b = self.advance(now);
        let requests: u64 = self.requests.iter().map(|&r| u64::from(r)).sum();
        let retries: u64 = self.retries.iter().map(|&r| u64::from(r)).sum();
        // retries + 1 ≤ percent/100 × requests + min_per_sec × window, in hundredths.
        let wanted = (retries + 1).saturating_mul(100);
        let allowed = u64::from(self.percent)
            .saturating_mul(requests)
            .saturating_add(u64::from(self.min_per_sec).saturating_mul(WINDOW_SECS as u64 * 100));
        if wanted > allowed {
            return false;
        }
        if let Some(r) = self.retries.get_mut(b) {
            *r = r.saturating_add(1);
        }
        true
    }

    /// Moves the window to `now`, emptying the buckets of seconds that passed, and returns the
    /// bucket of `now`. Time that goes backwards counts in the newest bucket.
    fn advance(&mut self, now: Instant) -> usize {
        let base = *self.base.get_or_insert(now);
        let second = now.saturating_duration_since(base).as_secs();
        if second > self.second {
            let passed = (second - self.second).min(WINDOW_SECS as u64);
            for k in 1..=passed {
                let b = ((self.second + k) % WINDOW_SECS as u64) as usize;
                if let (Some(q), Some(r)) = (self.requests.get_mut(b), self.retries.get_mut(b)) {
                    *q = 0;
                    *r = 0;
                }
            }
            self.second = second;
        }
        (self.second % WINDOW_SECS as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `secs` seconds of 100 requests per second, each wanting one retry; returns the
    /// retries granted in each second.
    fn steady(budget: &mut RetryBudget, t0: Instant, from_sec: u64, secs: u64) -> Vec<u32> {
        (from_sec..from_sec + secs)
            .map(|s| {
                let mut granted = 0;
                for i in 0..100u64 {
                    let now = t0 + Duration::from_secs(s) + Duration::from_millis(i * 10);
                    budget.on_request(now);
                    if budget.try_withdraw(now) {
                        granted += 1;
                    }
                }
                granted
            })
            .collect()
    }

    #[test]
    fn steady_load_retries_at_the_percent_plus_floor() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(20, 3);
        let per_sec = steady(&mut budget, t0, 0, 80);
        // The first second may spend the floor of the whole window at once.
        assert!(per_sec[0] >= 30, "{per_sec:?}");
        // Long run (after the window has filled): 20 % of 100 plus 3 = 23 per second.
        let long_run: u32 = per_sec[20..].iter().sum();
        let rate = f64::from(long_run) / 60.0;
        assert!((22.5..=23.5).contains(&rate), "{rate} {per_sec:?}");
        // Never more than the budget in any 10-second window.
        for w in per_sec.windows(10) {
            assert!(w.iter().sum::<u32>() <= 230, "{per_sec:?}");
        }
    }

    #[test]
    fn zero_percent_is_the_floor_alone() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(0, 1);
        let per_sec = steady(&mut budget, t0, 0, 60);
        let long_run: u32 = per_sec[20..].iter().sum();
        assert_eq!(long_run, 40, "{per_sec:?}");
    }

    #[test]
    fn after_a_quiet_window_the_floor_allows_min_per_sec_times_ten() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(20, 3);
        // Exhaust the budget under load.
        steady(&mut budget, t0, 0, 15);
        let busy = t0 + Duration::from_secs(15);
        assert!(!budget.try_withdraw(busy));
        // Ten seconds later with no traffic, only the floor is left: 3 × 10.
        let quiet = t0 + Duration::from_secs(26);
        let granted = (0..100).filter(|_| budget.try_withdraw(quiet)).count();
        assert_eq!(granted, 30);
        // A budget never used grants its floor too.
        let mut fresh = RetryBudget::new(50, 2);
        let granted = (0..100).filter(|_| fresh.try_withdraw(t0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn zero_budget_never_retries() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(0, 0);
        assert!(steady(&mut budget, t0, 0, 20).iter().all(|&g| g == 0));
    }
}
