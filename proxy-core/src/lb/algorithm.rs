//! The algorithms that pick one member within a priority level of a [`super::ClusterLb`]:
//! smooth weighted round robin, weighted random, least connections, power of two choices over
//! peak EWMA, and the Maglev lookup; and the seeded PRNG they draw from. Each takes the
//! level's candidates and the per-member slots, walks them at most a few times, and allocates
//! nothing.

use super::cluster::Slot;
use std::time::Instant;

/// Member flag during a pick: usable and not ejected.
pub(super) const HEALTHY: u8 = 1;
/// Member flag during a pick: listed in `PickInput::exclude`.
pub(super) const EXCLUDED: u8 = 2;

/// The members of a level that a pick may take.
pub(super) struct Candidates<'a> {
    /// The level's member indexes.
    pub(super) members: &'a [u32],
    /// The flags of every member of the cluster.
    pub(super) flags: &'a [u8],
    /// The flags a candidate must have once `EXCLUDED` is masked in: `HEALTHY`, or 0 in panic
    /// mode.
    pub(super) need: u8,
}

impl Candidates<'_> {
    fn contains(&self, i: usize) -> bool {
        self.flags
            .get(i)
            .is_some_and(|&f| f & (self.need | EXCLUDED) == self.need)
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.members
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| self.contains(i))
    }
}

/// nginx's smooth weighted round robin: every candidate gains its weight, the highest is
/// picked and loses the candidates' total weight.
pub(super) fn smooth_round_robin(c: &Candidates<'_>, slots: &mut [Slot]) -> Option<usize> {
    let mut total: i64 = 0;
    let mut best: Option<(usize, i64)> = None;
    for i in c.iter() {
        let Some(slot) = slots.get_mut(i) else {
            continue;
        };
        let weight = slot.weight as i64;
        slot.rr_current = slot.rr_current.saturating_add(weight);
        total = total.saturating_add(weight);
        if best.is_none_or(|(_, current)| slot.rr_current > current) {
            best = Some((i, slot.rr_current));
        }
    }
    let (i, _) = best?;
    if let Some(slot) = slots.get_mut(i) {
        slot.rr_current = slot.rr_current.saturating_sub(total);
    }
    Some(i)
}

/// A candidate drawn with probability proportional to its weight, `skip` left out.
fn weighted_draw(
    c: &Candidates<'_>,
    slots: &[Slot],
    rng: &mut SplitMix64,
    skip: Option<usize>,
) -> Option<usize> {
    let weight = |i: usize| slots.get(i).map_or(0, |s| s.weight);
    let total: u64 = c.iter().filter(|&i| Some(i) != skip).map(weight).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.below(total);
    for i in c.iter().filter(|&i| Some(i) != skip) {
        let w = weight(i);
        if ticket < w {
            return Some(i);
        }
        ticket -= w;
    }
    None
}

/// Weighted random.
pub(super) fn weighted_random(
    c: &Candidates<'_>,
    slots: &[Slot],
    rng: &mut SplitMix64,
) -> Option<usize> {
    weighted_draw(c, slots, rng, None)
}

/// Fewest in-flight requests per unit of weight; ties are broken at random in proportion to
/// weight (so idle members share a serial load by weight).
pub(super) fn least_conn(
    c: &Candidates<'_>,
    slots: &[Slot],
    rng: &mut SplitMix64,
) -> Option<usize> {
    let mut best: Option<(usize, u64, u64)> = None;
    let mut tie_weight = 0u64;
    for i in c.iter() {
        let Some(slot) = slots.get(i) else {
            continue;
        };
        let (load, weight) = (u64::from(slot.state.in_flight), slot.weight);
        match best {
            None => {
                best = Some((i, load, weight));
                tie_weight = weight;
            }
            Some((_, best_load, best_weight)) => {
                let (mine, theirs) = (load * best_weight, best_load * weight);
                if mine < theirs {
                    best = Some((i, load, weight));
                    tie_weight = weight;
                } else if mine == theirs {
                    tie_weight = tie_weight.saturating_add(weight);
                    if rng.below(tie_weight) < weight {
                        best = Some((i, load, weight));
                    }
                }
            }
        }
    }
    best.map(|(i, _, _)| i)
}

/// Power of two choices: two distinct candidates drawn by weight, the one with the lower
/// peak-EWMA × (in-flight + 1) / weight wins.
pub(super) fn power_of_two(
    c: &Candidates<'_>,
    slots: &[Slot],
    rng: &mut SplitMix64,
    now: Instant,
) -> Option<usize> {
    let a = weighted_draw(c, slots, rng, None)?;
    let Some(b) = weighted_draw(c, slots, rng, Some(a)) else {
        return Some(a);
    };
    let cost = |i: usize| {
        slots
            .get(i)
            .map_or(f64::INFINITY, |s| s.state.p2c_cost(now) / s.weight as f64)
    };
    Some(if cost(b) < cost(a) { b } else { a })
}

/// Maglev lookup: the member in slot `key % size`, or the first available one after it.
pub(super) fn maglev_lookup(table: &[u32], key: u64, c: &Candidates<'_>) -> Option<usize> {
    // Probing a level with nothing to find would walk the whole table.
    c.iter().next()?;
    let size = table.len();
    if size == 0 {
        return None;
    }
    let start = (key % size as u64) as usize;
    table[start..]
        .iter()
        .chain(&table[..start])
        .map(|&i| i as usize)
        .find(|&i| c.contains(i))
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed PRNG; seeded, never from the OS.
#[derive(Debug, Clone)]
pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-high; the bias is below 2⁻³² for our `n`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// The top 53 bits of `x` as a float in [0, 1).
pub(super) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
