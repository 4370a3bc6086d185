//! Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, §3.4), weighted as Envoy's `MaglevTable` does it. Built once per
//! member-set change, never per pick; lookups and probing live in [`super::ClusterLb`].
//!
//! Table sizes come from a short ladder of primes, 4099, 16411, 65537 and 262147 (the smallest
//! primes at or above 2¹², 2¹⁴, 2¹⁶, 2¹⁸): the smallest rung with at least 100 entries per
//! member (the paper's M ≥ 100 N), the top rung past 2,621 members. The size is a function of
//! the member count alone, so every worker that sees the same members builds the same table and
//! maps a key to the same endpoint, whatever sequence of DNS changes it went through. Moving to
//! another rung (40 → 41, 163 → 164, 655 → 656 members) remaps nearly every key, hence the
//! coarse rungs.
//!
//! Disruption measured when one of N equal members is added or removed (keys moved beyond the
//! share that must move): at most 3.3 points with 1031 slots for N = 3..10, 1.4 points with
//! 4099, 2.4 points with 4099 for N = 30..40, 1.6 points with 16411 for N = 100..110. Bigger
//! tables per member disrupt less, hence 4099 rather than 1031 for small clusters (16 KiB per
//! level per worker).

use super::mix64;

/// Seeds deriving a member's permutation from its name hash.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b; // "maglevsk"

/// Lower bounds of the size ladder; each size is the smallest prime at or above one of them.
const LADDER: [u64; 4] = [1 << 12, 1 << 14, 1 << 16, 1 << 18];

/// Table entries wanted per member (the paper's M ≥ 100 N).
const ENTRIES_PER_MEMBER: u64 = 100;

/// An empty table slot while building.
const EMPTY: u32 = u32::MAX;

/// One member as the table builder sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// Hash of the member's name (its sticky token): seeds the permutation.
    pub(crate) name_hash: u64,
    /// Weight, at least 1.
    pub(crate) weight: u64,
    /// What the table stores for this member (its index in the cluster).
    pub(crate) value: u32,
}

/// The table size for `members` members: the smallest rung with 100 entries per member, the
/// largest past 2,621 members.
pub(crate) fn table_size(members: usize) -> usize {
    let wanted = (members as u64).saturating_mul(ENTRIES_PER_MEMBER);
    let floor = LADDER
        .iter()
        .copied()
        .find(|&floor| floor >= wanted)
        .unwrap_or(1 << 18);
    next_prime(floor) as usize
}

/// Builds a table of `size` slots (a prime) over `entries`, each slot holding an entry's
/// `value`. Every member takes turns in proportion to its weight (a member of the highest
/// weight every round, one of a third of it every third round); in its turn it takes the next
/// free slot of its own permutation `offset, offset + skip, offset + 2·skip, … (mod size)`.
///
/// The result depends only on the entries' names and weights, not on their order, as long as
/// the caller orders them by name hash (it does): every worker builds the same table.
pub(crate) fn build(entries: &[Entry], size: usize) -> Vec<u32> {
    if entries.is_empty() || size < 2 {
        return Vec::new();
    }
    let m = size as u64;
    let max_weight = entries.iter().map(|e| e.weight.max(1)).max().unwrap_or(1);
    // (next position, skip, turns-target) per entry.
    let mut cursors: Vec<(u64, u64, u64)> = entries
        .iter()
        .map(|e| {
            let offset = mix64(e.name_hash ^ OFFSET_SEED) % m;
            let skip = mix64(e.name_hash ^ SKIP_SEED) % (m - 1) + 1;
            (offset, skip, 0)
        })
        .collect();
    let mut table = vec![EMPTY; size];
    let mut filled = 0usize;
    let mut iteration: u64 = 1;
    while filled < size {
        for (entry, cursor) in entries.iter().zip(cursors.iter_mut()) {
            if filled == size {
                break;
            }
            if iteration.saturating_mul(entry.weight.max(1)) < cursor.2 {
                continue;
            }
            cursor.2 = cursor.2.saturating_add(max_weight);
            // `size` is prime and 1 ≤ skip < size, so the permutation visits every slot: a free
            // one is found within `size` steps.
            for _ in 0..size {
                let slot = cursor.0 as usize;
                cursor.0 = (cursor.0 + cursor.1) % m;
                if let Some(s) = table.get_mut(slot) {
                    if *s == EMPTY {
                        *s = entry.value;
                        filled += 1;
                        break;
                    }
                }
            }
        }
        iteration += 1;
    }
    table
}

/// The smallest prime at or above `n` (trial division: build time only).
fn next_prime(n: u64) -> u64 {
    let mut candidate = n.max(2);
    while !is_prime(candidate) {
        candidate += 1;
    }
    candidate
}

/// Whether `n` is prime (trial division).
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_primes_on_the_ladder() {
        assert_eq!(table_size(0), 4099);
        assert_eq!(table_size(1), 4099);
        assert_eq!(table_size(40), 4099);
        assert_eq!(table_size(41), 16411);
        assert_eq!(table_size(163), 16411);
        assert_eq!(table_size(164), 65537);
        assert_eq!(table_size(1000), 262_147);
        assert_eq!(table_size(100_000), 262_147);
        for n in [4099, 16411, 65537, 262_147] {
            assert!(is_prime(n), "{n}");
        }
        assert!(!is_prime(1024) && !is_prime(1) && !is_prime(9) && is_prime(2));
    }

    #[test]
    fn equal_weights_fill_within_one_entry() {
        let entries: Vec<Entry> = (0..7u32)
            .map(|i| Entry {
                name_hash: super::super::hash(format!("10.0.0.{i}:80").as_bytes()),
                weight: 1,
                value: i,
            })
            .collect();
        let table = build(&entries, 4099);
        assert_eq!(table.len(), 4099);
        let mut counts = [0usize; 7];
        for &v in &table {
            counts[v as usize] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(max.unwrap() - min.unwrap() <= 1, "{counts:?}");
    }

    #[test]
    fn weights_fill_in_proportion() {
        let entries: Vec<Entry> = (0..3u32)
            .map(|i| Entry {
                name_hash: super::super::hash(format!("10.0.0.{i}:80").as_bytes()),
                weight: u64::from(i + 1),
                value: i,
            })
            .collect();
        let table = build(&entries, 4099);
        let mut counts = [0f64; 3];
        for &v in &table {
            counts[v as usize] += 1.0;
        }
        for (i, c) in counts.iter().enumerate() {
            let expected = 4099.0 * (i as f64 + 1.0) / 6.0;
            assert!((c - expected).abs() <= 2.0, "{counts:?}");
        }
    }
}
