//! The per-core cache store: cached values under a primary key (scheme + host + target), with
//! one or more variants per key told apart by a secondary key (the `Vary` request headers, the
//! content encoding), bounded by a byte budget and evicting least-recently-used keys, all their
//! variants at once. One worker owns one `Store`: it is single-threaded on purpose, with no
//! locks. This file knows nothing of HTTP semantics (freshness, `Vary` names, what may be stored:
//! that is `policy`) nor of what a value holds (the I/O layer picks `V`); it must not read a
//! clock, allocate on lookups, or let its accounted bytes pass the budget.

use lru::LruCache;

/// Something the store can hold: its weight in bytes counts against the budget.
pub trait Weigh {
    /// The bytes this value occupies (body, headers, metadata): read once, when it is inserted.
    fn weight(&self) -> usize;
}

/// Counters a worker exports (monotonic, except `bytes` and `entries`; `keys` follows the store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes charged against the budget: for every variant, its weight + the primary key length
    /// + the secondary key length + [`VARIANT_OVERHEAD`].
    pub bytes: usize,
    /// Variants held (over all keys).
    pub entries: usize,
    /// Primary keys held.
    pub keys: usize,
    /// Variants evicted to make room for an insert (removals asked for are not counted).
    pub evictions: u64,
    /// Successful inserts, replacements included.
    pub inserted: u64,
}

/// Fixed bytes charged per variant on top of its weight and keys, so that a flood of tiny
/// objects is bounded by the budget too (it stands for the map node, list links and `Vec`s).
pub const VARIANT_OVERHEAD: usize = 64;

/// A per-core cache bounded by a byte budget; least-recently-used keys are evicted first.
///
/// A key is "used" when it is inserted into or read through [`Store::get`], [`Store::get_mut`]
/// or [`Store::any_variant`]. The weight of a value is read once, by [`Store::insert`], and
/// remembered: code that changes a value through [`Store::get_mut`] must not change its weight
/// (refreshing headers after a 304 in place is fine); to store a value of another size, insert
/// it again, which re-weighs it.
pub struct Store<V: Weigh> {
    /// Primary key → its variants, in the order they were first stored.
    keys: LruCache<Vec<u8>, Vec<Variant<V>>>,
    max_bytes: usize,
    stats: StoreStats,
}

impl<V: Weigh> Store<V> {
    /// A store holding at most `max_bytes` (sum of weights + per-variant key overhead:
    /// count primary key length + secondary key length + a fixed overhead of 64 bytes per
    /// variant, so a flood of tiny objects is bounded too). `max_bytes == 0` stores nothing.
    pub fn new(max_bytes: usize) -> Store<V> {
        Store {
            keys: LruCache::unbounded(),
            max_bytes,
            stats: StoreStats::default(),
        }
    }

    /// The variant of `key` whose secondary key equals `variant`, marking the key recently used.
    /// Does not allocate.
    pub fn get(&mut self, key: &[u8], variant: &[u8]) -> Option<&V> {
        self.keys
            .get(key)?
            .iter()
            .find(|stored| stored.secondary == variant)
            .map(|stored| &stored.value)
    }

    /// Mutable access to the same (e.g. to refresh metadata after a 304); also marks it used.
    /// The change must not alter the value's weight (see [`Store`]).
    pub fn get_mut(&mut self, key: &[u8], variant: &[u8]) -> Option<&mut V> {
        self.keys
            .get_mut(key)?
            .iter_mut()
            .find(|stored| stored.secondary == variant)
            .map(|stored| &mut stored.value)
    }

    /// Any variant of `key` (first stored) — used to learn the Vary names of a key. Marks the
    /// key used.
    pub fn any_variant(&mut self, key: &[u8]) -> Option<&V> {
        self.keys.get(key)?.first().map(|stored| &stored.value)
    }

    /// Inserts or replaces the variant; evicts LRU keys (never the one being inserted) until the
    /// budget holds. Returns false (and stores nothing) when the item alone exceeds the budget;
    /// then nothing else changes either (an older variant under the same keys stays).
    ///
    /// If the key being inserted is the only one left and its variants together still exceed
    /// the budget, its other variants are evicted, oldest first; the new one always stays.
    /// A replaced variant keeps its place in the order of [`Store::any_variant`].
    pub fn insert(&mut self, key: &[u8], variant: &[u8], value: V) -> bool {
        let charge = value
            .weight()
            .saturating_add(key.len())
            .saturating_add(variant.len())
            .saturating_add(VARIANT_OVERHEAD);
        if charge > self.max_bytes {
            return false;
        }
        if let Some(variants) = self.keys.get_mut(key) {
            if let Some(stored) = variants.iter_mut().find(|s| s.secondary == variant) {
                self.stats.bytes -= stored.charge;
                stored.value = value;
                stored.charge = charge;
            } else {
                variants.push(Variant::new(variant, value, charge));
                self.stats.entries += 1;
            }
        } else {
            self.keys
                .put(key.to_vec(), vec![Variant::new(variant, value, charge)]);
            self.stats.entries += 1;
            self.stats.keys += 1;
        }
        self.stats.bytes += charge;
        self.stats.inserted += 1;
        self.evict_until_within_budget(key, variant);
        true
    }

    /// Removes every variant of `key`; returns how many were removed.
    pub fn remove(&mut self, key: &[u8]) -> usize {
        match self.keys.pop(key) {
            Some(variants) => self.forget_key(&variants),
            None => 0,
        }
    }

    /// Removes one variant (and the key with it when it was the last); false if it was absent.
    pub fn remove_variant(&mut self, key: &[u8], variant: &[u8]) -> bool {
        let Some(variants) = self.keys.peek_mut(key) else {
            return false;
        };
        let Some(index) = variants.iter().position(|s| s.secondary == variant) else {
            return false;
        };
        let removed = variants.remove(index);
        let now_empty = variants.is_empty();
        self.stats.bytes -= removed.charge;
        self.stats.entries -= 1;
        if now_empty {
            self.keys.pop(key);
            self.stats.keys -= 1;
        }
        true
    }

    /// Removes every key starting with `prefix`; returns the variants removed (O(n), admin only).
    pub fn purge_prefix(&mut self, prefix: &[u8]) -> usize {
        let doomed: Vec<Vec<u8>> = self
            .keys
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect();
        doomed.iter().map(|key| self.remove(key)).sum()
    }

    /// Current statistics.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// The budget.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Evicts least-recently-used keys other than `key` (just inserted, so most recently used)
    /// until the budget holds; if `key` is the last one left, evicts its variants other than
    /// `variant`, oldest first. Ends within budget because the new variant alone fits.
    fn evict_until_within_budget(&mut self, key: &[u8], variant: &[u8]) {
        while self.stats.bytes > self.max_bytes {
            let lru_is_inserted = match self.keys.peek_lru() {
                Some((lru_key, _)) => lru_key.as_slice() == key,
                None => return,
            };
            if !lru_is_inserted {
                if let Some((_, variants)) = self.keys.pop_lru() {
                    let count = self.forget_key(&variants);
                    self.stats.evictions += count as u64;
                }
                continue;
            }
            let Some(variants) = self.keys.peek_mut(key) else {
                return;
            };
            let Some(index) = variants.iter().position(|s| s.secondary != variant) else {
                return;
            };
            let evicted = variants.remove(index);
            self.stats.bytes -= evicted.charge;
            self.stats.entries -= 1;
            self.stats.evictions += 1;
        }
    }

    /// Takes a removed key's variants off the counters; returns how many there were.
    fn forget_key(&mut self, variants: &[Variant<V>]) -> usize {
        let charged: usize = variants.iter().map(|s| s.charge).sum();
        self.stats.bytes -= charged;
        self.stats.entries -= variants.len();
        self.stats.keys -= 1;
        variants.len()
    }
}

/// One stored variant: its secondary key, the value, and what it was charged at insert.
struct Variant<V> {
    secondary: Vec<u8>,
    value: V,
    charge: usize,
}

impl<V> Variant<V> {
    fn new(secondary: &[u8], value: V, charge: usize) -> Variant<V> {
        Variant {
            secondary: secondary.to_vec(),
            value,
            charge,
        }
    }
}

#[cfg(test)]
mod tests;
