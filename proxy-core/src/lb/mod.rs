//! Load balancing, sans-IO: the per-core, per-cluster balancer state ([`ClusterLb`]) with its
//! algorithms, priority levels (region failover), passive outlier detection and sticky-session
//! tokens; the active health-check state machine ([`health`]); and the retry budget
//! ([`budget`]).
//!
//! Nothing here reads a clock or draws from the OS: `now` is a parameter and randomness comes
//! from a seed given at construction. One `ClusterLb` belongs to one worker; nothing in it is
//! shared across cores. Endpoints are named by their stable `id` (the config's endpoint id,
//! which indexes every per-worker table in the I/O layer); picks return ids.
//!
//! Call order for one request: [`ClusterLb::pick`] (or [`ClusterLb::sticky_target`] first),
//! then [`ClusterLb::on_start`] when the request is sent to that endpoint, then exactly one
//! [`ClusterLb::on_end`] with the outcome. A retry is a new pick with the failed ids excluded.

mod algorithm;
pub mod budget;
mod cluster;
pub mod health;
pub mod keys;
mod maglev;
mod member_state;

pub use cluster::ClusterLb;

/// The balancing algorithm of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Smooth weighted round robin (nginx's).
    RoundRobin,
    /// Weighted random.
    Random,
    /// Fewest in-flight requests on this core, relative to weight.
    LeastConn,
    /// Power of two choices over peak-EWMA latency × (in-flight + 1), relative to weight.
    P2c,
    /// Maglev consistent hashing on the request's hash key.
    Maglev,
}

/// What a Maglev cluster hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address.
    ClientIp,
    /// The value of a request header (name lowercase).
    Header(String),
    /// The value of a cookie.
    Cookie(String),
    /// The request path (without the query).
    Path,
}

/// Passive outlier detection, per core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Consecutive failures (connect failure, reset, timeout, 5xx) that eject an endpoint;
    /// 0 disables ejection.
    pub consecutive_failures: u32,
    /// Ejection time for a first ejection; the n-th ejection in a row lasts n times this.
    pub base_ejection: std::time::Duration,
    /// Longest ejection.
    pub max_ejection: std::time::Duration,
    /// Most endpoints of a cluster ejected at once, in percent (at least one is always allowed).
    pub max_ejected_percent: u8,
}

/// One endpoint as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The endpoint's stable id.
    pub id: usize,
    /// Relative share, 1 to 1000.
    pub weight: u32,
    /// Priority level: 0 is served first; higher levels take the overflow.
    pub priority: u8,
    /// A stable name (`ip:port`, or `host:port#n` for a DNS slot): seeds Maglev permutations
    /// and sticky tokens, so they do not depend on the order of members.
    pub name: String,
}

/// How a request to an endpoint ended, for latency and outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived (any status below 500, or a 5xx that is not counted as failure).
    Success,
    /// A 5xx response.
    ServerError,
    /// The connection could not be opened.
    ConnectFailure,
    /// The connection was reset or closed before a response.
    Reset,
    /// No response within the timeout.
    Timeout,
    /// The request ended for a reason that says nothing about the endpoint (the client went
    /// away); only in-flight accounting changes.
    Cancelled,
}

/// What a pick must respect beyond the balancer's own state.
pub struct PickInput<'a> {
    /// The current time.
    pub now: std::time::Instant,
    /// The request's hash key (Maglev), already hashed with [`hash`]; `None` when the request
    /// has no such key (Maglev then picks like `Random`).
    pub key: Option<u64>,
    /// Ids already tried for this request: not picked again while another is usable.
    pub exclude: &'a [usize],
    /// Whether an id may take new requests: active health and administrative drain, read from
    /// the shared table by the caller.
    pub usable: &'a dyn Fn(usize) -> bool,
}

/// Per-endpoint statistics of one core, for the admin view.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemberStats {
    /// Requests in flight on this core.
    pub in_flight: u32,
    /// Peak-EWMA latency in microseconds (0 before the first response).
    pub ewma_micros: u64,
    /// Whether the endpoint is ejected right now.
    pub ejected: bool,
    /// Ejections so far.
    pub ejections: u64,
    /// Current run of consecutive failures.
    pub consecutive_failures: u32,
}

/// A stable, seedless 64-bit hash (the same in every worker and every run): hash keys, Maglev
/// permutations and sticky tokens.
///
/// FNV-1a 64 over the bytes, then MurmurHash3's `fmix64` finaliser for avalanche (FNV alone
/// leaves the high bits weakly mixed for short inputs, and Maglev takes the value modulo a
/// prime). The output is part of the wire format (sticky cookies carry it), so it must never
/// change: a test pins known values.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// MurmurHash3's 64-bit finaliser: a bijection in which every input bit affects every output
/// bit. Used to derive independent values from one hash (Maglev offsets and skips, the level
/// draw of a keyed pick).
pub(crate) fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sticky cookies already handed to clients carry these values: they must never change.
    #[test]
    fn hash_values_are_pinned() {
        assert_eq!(hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash(b"a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(hash(b"10.0.0.1:8080"), 0xe8c7_2115_6ed5_2b14);
        assert_eq!(hash(b"/index.html"), 0x43f3_e2a1_af9f_1352);
    }

    /// Flipping any one input bit flips about half of the output bits, on average and never
    /// few: keys that differ in one character land far apart.
    #[test]
    fn hash_avalanches() {
        let inputs: [&[u8]; 4] = [b"10.0.0.1", b"/a", b"x", b"session-0123456789abcdef"];
        for input in inputs {
            let base = hash(input);
            let mut total = 0;
            let mut bits = 0;
            for byte in 0..input.len() {
                for bit in 0..8 {
                    let mut flipped = input.to_vec();
                    flipped[byte] ^= 1 << bit;
                    let d = (hash(&flipped) ^ base).count_ones();
                    assert!(d >= 12, "{input:?} byte {byte} bit {bit}: {d}");
                    total += d;
                    bits += 1;
                }
            }
            let mean = f64::from(total) / f64::from(bits);
            assert!((28.0..=36.0).contains(&mean), "{input:?}: {mean}");
        }
        assert_ne!(hash(b"a"), hash(b"a\0"));
    }
}
