//! [`ClusterLb`]: one worker's balancer for one cluster. It owns the per-core endpoint state
//! (in-flight, peak EWMA, outlier ejection), splits traffic over priority levels by their
//! health (Envoy's overprovisioning rule), and picks within a level with the cluster's
//! algorithm. It reads no clock and draws no OS randomness: `now` comes in with each call and
//! the PRNG is seeded at construction. A pick allocates nothing; only
//! [`ClusterLb::set_members`] (a DNS change) rebuilds tables.

use super::algorithm::{
    least_conn, maglev_lookup, power_of_two, smooth_round_robin, unit, weighted_random, Candidates,
    SplitMix64, EXCLUDED, HEALTHY,
};
use super::maglev;
use super::member_state::MemberState;
use super::{hash, mix64, Algorithm, Member, MemberStats, Outcome, OutlierPolicy, PickInput};
use std::time::{Duration, Instant};

/// Salt deriving a keyed pick's level draw from its key (independent of `key % table size`).
const LEVEL_SALT: u64 = 0x6c65_7665_6c64_7261; // "leveldra"

/// The balancer of one cluster on one worker.
///
/// Call order for one request: [`ClusterLb::pick`] (or [`ClusterLb::sticky_target`] first),
/// [`ClusterLb::on_start`] when the request goes out, then exactly one [`ClusterLb::on_end`].
#[derive(Debug)]
pub struct ClusterLb {
    algorithm: Algorithm,
    outlier: OutlierPolicy,
    overprovisioning: f64,
    members: Vec<Member>,
    /// Per member, in the order of `members`.
    slots: Vec<Slot>,
    /// Scratch: per-member flags of the pick in progress (allocated with the members).
    flags: Vec<u8>,
    /// Priority levels, lowest priority number first.
    levels: Vec<Level>,
    ids: IdIndex,
    rng: SplitMix64,
}

/// What the balancer keeps per member besides the [`Member`] itself.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// Weight, at least 1.
    pub(super) weight: u64,
    /// Sticky token: hash of the name.
    pub(super) token: u64,
    /// Smooth round robin's current weight.
    pub(super) rr_current: i64,
    /// In-flight, latency and outlier state.
    pub(super) state: MemberState,
}

/// One priority level.
#[derive(Debug)]
struct Level {
    /// Indexes into `members`, ordered by sticky token (then name): the order is the same on
    /// every worker whatever order the members came in.
    members: Vec<u32>,
    total_weight: u64,
    /// Scratch of the pick in progress: weight of the healthy members.
    healthy_weight: u64,
    /// Scratch of the pick in progress: share of traffic.
    load: f64,
    /// Maglev lookup table of member indexes (empty for other algorithms).
    table: Vec<u32>,
}

impl ClusterLb {
    /// A balancer over `members` picking with `algorithm`, ejecting outliers by `outlier`,
    /// spilling between priority levels with Envoy's `overprovisioning` factor (1.4 by default
    /// in the config; a value that is not a positive number counts as 1). `seed` seeds the
    /// internal PRNG (give each worker a different one).
    pub fn new(
        algorithm: Algorithm,
        outlier: OutlierPolicy,
        overprovisioning: f64,
        members: Vec<Member>,
        seed: u64,
    ) -> ClusterLb {
        let overprovisioning = if overprovisioning.is_finite() && overprovisioning > 0.0 {
            overprovisioning
        } else {
            1.0
        };
        let mut lb = ClusterLb {
            algorithm,
            outlier,
            overprovisioning,
            members: Vec::new(),
            slots: Vec::new(),
            flags: Vec::new(),
            levels: Vec::new(),
            ids: IdIndex::Dense {
                min: 0,
                index: Vec::new(),
            },
            rng: SplitMix64(seed),
        };
        lb.set_members(members);
        lb
    }

    /// Replaces the member set (a DNS change). In-flight counts of ids still present are kept;
    /// their latency and ejection state too, unless the id now has another name (a DNS slot
    /// pointing at another address is another server). Maglev tables and round-robin state are
    /// rebuilt (a Maglev table's size depends on the member count alone, so that every worker
    /// builds the same one; see `maglev.rs` for what a change moves).
    pub fn set_members(&mut self, members: Vec<Member>) {
        let slots = members
            .iter()
            .map(|m| {
                let token = hash(m.name.as_bytes());
                let state = match self.ids.get(m.id) {
                    Some(old) => self.slots.get(old).map_or_else(MemberState::default, |s| {
                        let same = self.members.get(old).is_some_and(|o| o.name == m.name);
                        s.state.carry_over(same)
                    }),
                    None => MemberState::default(),
                };
                Slot {
                    weight: u64::from(m.weight.max(1)),
                    token,
                    rr_current: 0,
                    state,
                }
            })
            .collect();
        self.slots = slots;
        self.members = members;
        self.flags = vec![0; self.members.len()];
        self.ids = IdIndex::new(&self.members);
        self.levels = self.build_levels();
    }

    /// The current members, in the order given.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Picks an endpoint id for a request.
    ///
    /// A member is *available* when `input.usable` says so, it is not ejected at `input.now`,
    /// and its id is not in `input.exclude`. Traffic is split over priority levels by their
    /// health (usable and not ejected, ignoring `exclude`, so a retry does not shift the split):
    /// level 0 takes min(1, overprovisioning × its healthy weight share), each next level
    /// min(what is left, its own overprovisioned share); when the overprovisioned shares add
    /// up to less than 1 they are scaled to sum to 1 (Envoy). The level is drawn at random by
    /// these loads (for a Maglev pick with a key, from the key, so a key keeps its level), then
    /// the algorithm picks among the level's available members; a level without one (all
    /// excluded) passes the pick to the others in priority order.
    ///
    /// Panic routing: when no member at all is healthy (unusable or ejected, whatever
    /// `exclude` says), the pick ignores health and ejection and takes a non-excluded member
    /// of the first level that has one (Envoy's panic mode: better a try at a server thought
    /// down than a certain 503). The closure cannot tell drain from failed health checks, so
    /// drained members are candidates too in panic mode.
    ///
    /// `None` when there are no members, when every member is excluded, or when healthy
    /// members exist but all of them are excluded (a retry then finds nothing new to try: the
    /// remaining members are down, and panic routing is for a cluster with no healthy member).
    pub fn pick(&mut self, input: &PickInput<'_>) -> Option<usize> {
        match self.members.as_slice() {
            [] => return None,
            // One member: healthy or not (panic routing), it is the pick unless excluded. The
            // common single-upstream cluster pays no level or algorithm work.
            [only] => return (!input.exclude.contains(&only.id)).then_some(only.id),
            _ => {}
        }
        let any_healthy = self.classify(input);
        let need = if any_healthy { HEALTHY } else { 0 };
        let first = if any_healthy && self.levels.len() == 1 {
            Some(0)
        } else if any_healthy {
            let draw = match (self.algorithm, input.key) {
                (Algorithm::Maglev, Some(key)) => unit(mix64(key ^ LEVEL_SALT)),
                _ => unit(self.rng.next()),
            };
            self.choose_level(draw)
        } else {
            None
        };
        if let Some(level) = first {
            if let Some(i) = self.pick_in_level(level, need, input) {
                return self.members.get(i).map(|m| m.id);
            }
        }
        for level in 0..self.levels.len() {
            if Some(level) == first {
                continue;
            }
            if let Some(i) = self.pick_in_level(level, need, input) {
                return self.members.get(i).map(|m| m.id);
            }
        }
        None
    }

    /// The sticky token of member `id` (the hash of its name: the same on every worker and
    /// across member-set changes), or `None` if `id` is not a member.
    pub fn sticky_token(&self, id: usize) -> Option<u64> {
        self.ids
            .get(id)
            .and_then(|i| self.slots.get(i))
            .map(|s| s.token)
    }

    /// The member whose sticky token is `token`, if it is available: usable, not ejected at
    /// `input.now`, not excluded. Priority levels do not apply: a pinned client stays on its
    /// endpoint as long as that endpoint can serve.
    pub fn sticky_target(&self, token: u64, input: &PickInput<'_>) -> Option<usize> {
        let i = self.slots.iter().position(|s| s.token == token)?;
        let id = self.members.get(i)?.id;
        let ejected = self.slots.get(i)?.state.is_ejected(input.now);
        ((input.usable)(id) && !ejected && !input.exclude.contains(&id)).then_some(id)
    }

    /// A request was sent to `id`: one more in flight.
    pub fn on_start(&mut self, id: usize) {
        if let Some(slot) = self.slot_mut(id) {
            slot.state.in_flight = slot.state.in_flight.saturating_add(1);
        }
    }

    /// The request to `id` ended with `outcome` after `latency`: one fewer in flight
    /// (saturating), the peak EWMA fed on `Success` and `ServerError`, and the outcome counted
    /// for outlier detection. Returns true when this outcome ejected the endpoint.
    ///
    /// An endpoint is ejected when its run of failures (5xx, connect failure, reset, timeout;
    /// a success ends the run, a cancellation does not count) reaches the policy's threshold,
    /// unless that would put more than `max_ejected_percent` of the members in ejection at
    /// once (one member may always be ejected). The n-th ejection in a row lasts n ×
    /// `base_ejection`, at most `max_ejection`; the count starts over with a success more than
    /// `max_ejection` after the last ejection ended.
    pub fn on_end(&mut self, id: usize, now: Instant, latency: Duration, outcome: Outcome) -> bool {
        let policy = self.outlier;
        let Some(i) = self.ids.get(id) else {
            return false;
        };
        let wants_ejection = match self.slots.get_mut(i) {
            None => return false,
            Some(slot) => {
                let state = &mut slot.state;
                state.in_flight = state.in_flight.saturating_sub(1);
                if matches!(outcome, Outcome::Success | Outcome::ServerError) {
                    state.observe_latency(now, latency);
                }
                state.count_outcome(now, outcome, &policy)
            }
        };
        if !wants_ejection {
            return false;
        }
        let ejected = self
            .slots
            .iter()
            .filter(|s| s.state.is_ejected(now))
            .count();
        let percent = usize::from(policy.max_ejected_percent.min(100));
        let allowed = (self.members.len() * percent / 100).max(1);
        if ejected >= allowed {
            return false;
        }
        match self.slots.get_mut(i) {
            Some(slot) => {
                slot.state.eject(now, &policy);
                true
            }
            None => false,
        }
    }

    /// The statistics of `id` on this worker at `now` (all zero if `id` is not a member).
    pub fn stats(&self, id: usize, now: Instant) -> MemberStats {
        self.ids
            .get(id)
            .and_then(|i| self.slots.get(i))
            .map(|s| s.state.stats(now))
            .unwrap_or_default()
    }

    fn slot_mut(&mut self, id: usize) -> Option<&mut Slot> {
        let i = self.ids.get(id)?;
        self.slots.get_mut(i)
    }

    /// Groups the members by priority, ordered by token within a level, and builds the Maglev
    /// tables.
    fn build_levels(&self) -> Vec<Level> {
        let mut priorities: Vec<u8> = self.members.iter().map(|m| m.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        priorities
            .into_iter()
            .map(|priority| {
                let mut members: Vec<u32> = (0..self.members.len())
                    .filter(|&i| self.members.get(i).is_some_and(|m| m.priority == priority))
                    .map(|i| i as u32)
                    .collect();
                members.sort_by(|&a, &b| {
                    let key = |i: u32| {
                        let i = i as usize;
                        let token = self.slots.get(i).map_or(0, |s| s.token);
                        (token, self.members.get(i).map(|m| m.name.as_str()))
                    };
                    key(a).cmp(&key(b))
                });
                let total_weight = members
                    .iter()
                    .filter_map(|&i| self.slots.get(i as usize))
                    .map(|s| s.weight)
                    .sum();
                let table = if self.algorithm == Algorithm::Maglev {
                    let size = maglev::table_size(members.len());
                    let entries: Vec<maglev::Entry> = members
                        .iter()
                        .filter_map(|&i| {
                            let slot = self.slots.get(i as usize)?;
                            Some(maglev::Entry {
                                name_hash: slot.token,
                                weight: slot.weight,
                                value: i,
                            })
                        })
                        .collect();
                    maglev::build(&entries, size)
                } else {
                    Vec::new()
                };
                Level {
                    members,
                    total_weight,
                    healthy_weight: 0,
                    load: 0.0,
                    table,
                }
            })
            .collect()
    }

    /// Fills the per-member flags and each level's healthy weight for this pick. Returns
    /// whether any member is healthy.
    fn classify(&mut self, input: &PickInput<'_>) -> bool {
        let mut any_healthy = false;
        for level in &mut self.levels {
            level.healthy_weight = 0;
            for &i in &level.members {
                let i = i as usize;
                let (Some(member), Some(slot)) = (self.members.get(i), self.slots.get(i)) else {
                    continue;
                };
                let mut flags = 0;
                if (input.usable)(member.id) && !slot.state.is_ejected(input.now) {
                    flags |= HEALTHY;
                    level.healthy_weight += slot.weight;
                    any_healthy = true;
                }
                if input.exclude.contains(&member.id) {
                    flags |= EXCLUDED;
                }
                if let Some(f) = self.flags.get_mut(i) {
                    *f = flags;
                }
            }
        }
        any_healthy
    }

    /// Computes the level loads from the healthy weights and returns the level that `draw`
    /// (uniform in [0, 1)) falls in; `None` when no level has a healthy member.
    fn choose_level(&mut self, draw: f64) -> Option<usize> {
        let mut sum = 0.0;
        for level in &mut self.levels {
            level.load = if level.healthy_weight == 0 || level.total_weight == 0 {
                0.0
            } else {
                let health = level.healthy_weight as f64 / level.total_weight as f64;
                (self.overprovisioning * health).min(1.0)
            };
            sum += level.load;
        }
        if sum <= 0.0 {
            return None;
        }
        if sum >= 1.0 {
            let mut remaining = 1.0f64;
            for level in &mut self.levels {
                level.load = level.load.min(remaining);
                remaining -= level.load;
            }
        } else {
            for level in &mut self.levels {
                level.load /= sum;
            }
        }
        let mut cumulative = 0.0;
        let mut last = None;
        for (k, level) in self.levels.iter().enumerate() {
            if level.load > 0.0 {
                cumulative += level.load;
                last = Some(k);
                if draw < cumulative {
                    return last;
                }
            }
        }
        last
    }

    /// Picks a member index of level `level` among those whose flags are exactly `need` once
    /// `EXCLUDED` is masked in (available: not excluded, and healthy when `need` says so).
    fn pick_in_level(&mut self, level: usize, need: u8, input: &PickInput<'_>) -> Option<usize> {
        let level = self.levels.get(level)?;
        let candidates = Candidates {
            members: &level.members,
            flags: &self.flags,
            need,
        };
        let slots = &mut self.slots;
        let rng = &mut self.rng;
        match self.algorithm {
            Algorithm::RoundRobin => smooth_round_robin(&candidates, slots),
            Algorithm::Random => weighted_random(&candidates, slots, rng),
            Algorithm::LeastConn => least_conn(&candidates, slots, rng),
            Algorithm::P2c => power_of_two(&candidates, slots, rng, input.now),
            Algorithm::Maglev => match input.key {
                Some(key) => maglev_lookup(&level.table, key, &candidates),
                None => weighted_random(&candidates, slots, rng),
            },
        }
    }
}

/// Id → member index.
#[derive(Debug)]
enum IdIndex {
    /// Ids close together (the usual case: a cluster's endpoint ids are contiguous): a table
    /// indexed by `id - min`, `u32::MAX` for a gap.
    Dense { min: usize, index: Vec<u32> },
    /// Ids far apart: (id, index) sorted by id.
    Sparse(Vec<(usize, u32)>),
}

impl IdIndex {
    fn new(members: &[Member]) -> IdIndex {
        let min = members.iter().map(|m| m.id).min().unwrap_or(0);
        let max = members.iter().map(|m| m.id).max().unwrap_or(0);
        let span = max - min;
        if span <= 4 * members.len() + 64 {
            let mut index = vec![u32::MAX; span + 1];
            for (i, m) in members.iter().enumerate() {
                if let Some(slot) = index.get_mut(m.id - min) {
                    *slot = i as u32;
                }
            }
            IdIndex::Dense { min, index }
        } else {
            let mut sparse: Vec<(usize, u32)> = members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.id, i as u32))
                .collect();
            sparse.sort_unstable();
            IdIndex::Sparse(sparse)
        }
    }

    fn get(&self, id: usize) -> Option<usize> {
        match self {
            IdIndex::Dense { min, index } => {
                let slot = *index.get(id.checked_sub(*min)?)?;
                (slot != u32::MAX).then_some(slot as usize)
            }
            IdIndex::Sparse(sorted) => {
                let k = sorted.binary_search_by_key(&id, |&(id, _)| id).ok()?;
                sorted.get(k).map(|&(_, i)| i as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests;
