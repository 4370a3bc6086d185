//! Load-balancer picks. Each worker owns its own balancer state (no sharing across cores), so
//! a pick is a few arithmetic operations on plain integers.

/// Smooth weighted round robin, as nginx does it: over any window of `sum(weights)` picks each
/// endpoint is chosen exactly `weight` times, interleaved rather than in bursts. With equal
/// weights it is plain round robin.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl RoundRobin {
    /// A balancer over endpoints with these weights (each at least 1).
    pub fn new(weights: impl IntoIterator<Item = u32>) -> RoundRobin {
        let weights: Vec<i64> = weights.into_iter().map(|w| i64::from(w.max(1))).collect();
        let total = weights.iter().sum();
        RoundRobin {
            current: vec![0; weights.len()],
            weights,
            total,
        }
    }

    /// Picks the next endpoint index, or `None` when there are no endpoints.
    pub fn pick(&mut self) -> Option<usize> {
        if self.weights.is_empty() {
            return None;
        }
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        Some(best)
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_alternate() {
        let mut rr = RoundRobin::new([1, 1, 1]);
        let picks: Vec<_> = (0..6).map(|_| rr.pick().unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        let mut rr = RoundRobin::new([5, 1, 1]);
        let picks: Vec<_> = (0..7).map(|_| rr.pick().unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 5);
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0], "smooth, not 0,0,0,0,0,1,2");
    }

    #[test]
    fn empty_has_no_pick() {
        assert_eq!(RoundRobin::new([]).pick(), None);
    }
}
