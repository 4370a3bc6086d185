//! Tests of the per-core store: byte budget, LRU order, variants, replacement, purge.

use super::*;

/// A test value: a tag to tell values apart and a declared weight.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blob {
    tag: u32,
    weight: usize,
}

impl Weigh for Blob {
    fn weight(&self) -> usize {
        self.weight
    }
}

fn blob(tag: u32, weight: usize) -> Blob {
    Blob { tag, weight }
}

/// What one variant is charged: weight + keys + overhead.
fn charge(key: &[u8], variant: &[u8], weight: usize) -> usize {
    weight + key.len() + variant.len() + VARIANT_OVERHEAD
}

/// Recounts bytes, variants and keys from what the store holds, independently of its counters.
fn recount(store: &Store<Blob>) -> (usize, usize, usize) {
    let mut bytes = 0;
    let mut entries = 0;
    for (key, variants) in store.keys.iter() {
        for stored in variants {
            bytes += charge(key, &stored.secondary, stored.value.weight);
            entries += 1;
        }
    }
    (bytes, entries, store.keys.len())
}

fn assert_counters_match(store: &Store<Blob>) {
    let stats = store.stats();
    assert_eq!(
        (stats.bytes, stats.entries, stats.keys),
        recount(store),
        "counters drifted from contents"
    );
    assert!(
        stats.bytes <= store.max_bytes(),
        "budget exceeded: {stats:?}"
    );
}

/// xorshift64: deterministic pseudo-random numbers without a dependency.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> usize {
        (self.next() % bound) as usize
    }
}

#[test]
fn budget_holds_under_ten_thousand_random_inserts() {
    let max = 64 * 1024;
    let mut store = Store::new(max);
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0u64;
    for i in 0..10_000u32 {
        let key = format!("https://h/{i}").into_bytes();
        let variant = vec![b'v'; rng.below(16)];
        // Sizes from 0 to 1.25 × max, so some are rejected as too large.
        let weight = rng.below((max + max / 4) as u64);
        let fits = charge(&key, &variant, weight) <= max;
        assert_eq!(
            store.insert(&key, &variant, blob(i, weight)),
            fits,
            "insert {i}"
        );
        if fits {
            accepted += 1;
            assert_eq!(store.get(&key, &variant), Some(&blob(i, weight)));
        }
        assert_counters_match(&store);
    }
    let stats = store.stats();
    assert_eq!(stats.inserted, accepted);
    assert!(stats.evictions > 0);
    assert_eq!(stats.evictions, accepted - stats.entries as u64);
}

#[test]
fn budget_holds_under_random_mixed_operations() {
    let max = 8 * 1024;
    let mut store = Store::new(max);
    let mut rng = Xorshift(42);
    for i in 0..10_000u32 {
        let key = format!("k{}", rng.below(50)).into_bytes();
        let variant = format!("v{}", rng.below(4)).into_bytes();
        match rng.below(10) {
            0 => {
                store.remove(&key);
            }
            1 => {
                store.remove_variant(&key, &variant);
            }
            2 => {
                store.purge_prefix(b"k1");
            }
            3 | 4 => {
                store.get(&key, &variant);
            }
            _ => {
                let weight = rng.below(3000);
                assert!(store.insert(&key, &variant, blob(i, weight)));
            }
        }
        assert_counters_match(&store);
    }
}

#[test]
fn least_recently_used_key_is_evicted_and_a_read_one_survives() {
    // Room for exactly three variants of weight 100 under 1-byte keys and empty variants.
    let one = charge(b"a", b"", 100);
    let mut store = Store::new(3 * one);
    assert!(store.insert(b"a", b"", blob(1, 100)));
    assert!(store.insert(b"b", b"", blob(2, 100)));
    assert!(store.insert(b"c", b"", blob(3, 100)));
    assert_eq!(store.stats().evictions, 0);

    // Reading "a" makes "b" the oldest.
    assert_eq!(store.get(b"a", b""), Some(&blob(1, 100)));
    assert!(store.insert(b"d", b"", blob(4, 100)));
    assert_eq!(store.get(b"b", b""), None);
    assert!(store.get(b"a", b"").is_some());
    assert!(store.get(b"c", b"").is_some());
    assert!(store.get(b"d", b"").is_some());
    assert_eq!(store.stats().evictions, 1);

    // The gets above left the order a, c, d (oldest first). get_mut and any_variant count as
    // use too: touching "a" and "c" makes "d" the oldest.
    assert!(store.get_mut(b"a", b"").is_some());
    assert!(store.any_variant(b"c").is_some());
    assert!(store.insert(b"e", b"", blob(5, 100)));
    assert_eq!(store.get(b"d", b""), None);
    assert_eq!(store.stats().keys, 3);
    assert_counters_match(&store);
}

#[test]
fn insert_evicts_as_many_old_keys_as_needed() {
    let small = charge(b"a", b"", 100);
    let mut store = Store::new(4 * small);
    for (tag, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
        assert!(store.insert(*key, b"", blob(tag as u32, 100)));
    }
    // Needs the room of three small ones: a, b, c go; d stays.
    let big_weight = 3 * small - 1 - VARIANT_OVERHEAD;
    assert!(store.insert(b"z", b"", blob(9, big_weight)));
    assert_eq!(store.stats().keys, 2);
    assert!(store.get(b"d", b"").is_some());
    assert!(store.get(b"z", b"").is_some());
    assert_eq!(store.stats().evictions, 3);
    assert_counters_match(&store);
}

#[test]
fn variants_under_one_key() {
    let mut store = Store::new(10_000);
    let key = b"https://example.com/logo.png";
    assert!(store.insert(key, b"gzip", blob(1, 10)));
    assert!(store.insert(key, b"br", blob(2, 20)));
    assert!(store.insert(key, b"", blob(3, 30)));
    assert_eq!(store.stats().keys, 1);
    assert_eq!(store.stats().entries, 3);
    assert_eq!(store.get(key, b"gzip"), Some(&blob(1, 10)));
    assert_eq!(store.get(key, b"br"), Some(&blob(2, 20)));
    assert_eq!(store.get(key, b""), Some(&blob(3, 30)));
    assert_eq!(store.get(key, b"zstd"), None);
    assert_eq!(store.get(b"https://example.com/other", b""), None);

    // Replacing keeps the first-stored order that any_variant reports.
    assert!(store.insert(key, b"gzip", blob(4, 10)));
    assert_eq!(store.any_variant(key), Some(&blob(4, 10)));
    assert_eq!(store.stats().entries, 3);

    // get_mut changes the stored value in place.
    if let Some(value) = store.get_mut(key, b"br") {
        value.tag = 22;
    }
    assert_eq!(store.get(key, b"br"), Some(&blob(22, 20)));

    // Removing the first variant makes the next one the answer of any_variant.
    assert!(store.remove_variant(key, b"gzip"));
    assert!(!store.remove_variant(key, b"gzip"));
    assert!(!store.remove_variant(b"absent", b"gzip"));
    assert_eq!(store.get(key, b"gzip"), None);
    assert_eq!(store.any_variant(key), Some(&blob(22, 20)));
    assert_eq!(store.stats().entries, 2);
    assert_counters_match(&store);

    // Removing the last variant removes the key.
    assert!(store.remove_variant(key, b"br"));
    assert!(store.remove_variant(key, b""));
    assert_eq!(store.any_variant(key), None);
    assert_eq!(
        store.stats(),
        StoreStats {
            inserted: 4,
            ..StoreStats::default()
        }
    );
}

#[test]
fn eviction_removes_every_variant_of_a_key() {
    let per = charge(b"a", b"x", 100);
    let mut store = Store::new(4 * per);
    assert!(store.insert(b"a", b"x", blob(1, 100)));
    assert!(store.insert(b"a", b"y", blob(2, 100)));
    assert!(store.insert(b"a", b"z", blob(3, 100)));
    assert!(store.insert(b"b", b"x", blob(4, 100)));
    assert_eq!(store.stats().entries, 4);
    // One more variant does not fit: the LRU key "a" goes with its three variants.
    assert!(store.insert(b"c", b"x", blob(5, 100)));
    assert_eq!(store.any_variant(b"a"), None);
    assert_eq!(store.stats().entries, 2);
    assert_eq!(store.stats().keys, 2);
    assert_eq!(store.stats().evictions, 3);
    assert_counters_match(&store);
}

#[test]
fn a_lone_key_over_budget_sheds_its_oldest_other_variants() {
    let per = charge(b"a", b"x", 100);
    let mut store = Store::new(2 * per);
    assert!(store.insert(b"a", b"x", blob(1, 100)));
    assert!(store.insert(b"a", b"y", blob(2, 100)));
    assert!(store.insert(b"a", b"z", blob(3, 100)));
    assert_eq!(store.get(b"a", b"x"), None);
    assert_eq!(store.get(b"a", b"y"), Some(&blob(2, 100)));
    assert_eq!(store.get(b"a", b"z"), Some(&blob(3, 100)));
    assert_eq!(store.stats().evictions, 1);
    assert_counters_match(&store);

    // Growing the oldest variant in place sheds the other one, not itself.
    assert!(store.insert(b"a", b"y", blob(4, 150)));
    assert_eq!(store.get(b"a", b"z"), None);
    assert_eq!(store.get(b"a", b"y"), Some(&blob(4, 150)));
    assert_eq!(store.stats().evictions, 2);
    assert_counters_match(&store);
}

#[test]
fn replacing_a_variant_adjusts_bytes() {
    let mut store = Store::new(100_000);
    assert!(store.insert(b"key", b"v", blob(1, 1_000)));
    assert_eq!(store.stats().bytes, charge(b"key", b"v", 1_000));
    assert!(store.insert(b"key", b"v", blob(2, 5_000)));
    assert_eq!(store.stats().bytes, charge(b"key", b"v", 5_000));
    assert!(store.insert(b"key", b"v", blob(3, 10)));
    assert_eq!(store.stats().bytes, charge(b"key", b"v", 10));
    assert_eq!(store.stats().entries, 1);
    assert_eq!(store.stats().inserted, 3);
    assert_eq!(store.get(b"key", b"v"), Some(&blob(3, 10)));

    // A replacement that grows evicts other keys, never its own.
    let mut store = Store::new(2 * charge(b"a", b"", 100));
    assert!(store.insert(b"a", b"", blob(1, 100)));
    assert!(store.insert(b"b", b"", blob(2, 100)));
    assert!(store.insert(b"a", b"", blob(3, 150)));
    assert_eq!(store.get(b"b", b""), None);
    assert_eq!(store.get(b"a", b""), Some(&blob(3, 150)));
    assert_counters_match(&store);
}

#[test]
fn too_large_item_is_rejected_and_nothing_is_evicted() {
    let max = 1_000;
    let mut store = Store::new(max);
    assert!(store.insert(b"a", b"", blob(1, 100)));
    assert!(store.insert(b"b", b"", blob(2, 100)));
    let before = store.stats();

    // Exactly at the budget fits on its own; one byte more does not.
    let limit = max - b"c".len() - VARIANT_OVERHEAD;
    assert!(!store.insert(b"c", b"", blob(3, limit + 1)));
    assert!(!store.insert(b"c", b"", blob(3, usize::MAX)));
    assert_eq!(store.stats(), before);
    assert!(store.get(b"a", b"").is_some());
    assert!(store.get(b"b", b"").is_some());

    // A too-large replacement leaves the old variant in place.
    assert!(!store.insert(b"a", b"", blob(4, max)));
    assert_eq!(store.get(b"a", b""), Some(&blob(1, 100)));
    assert_eq!(store.stats(), before);

    assert!(store.insert(b"c", b"", blob(5, limit)));
    assert_eq!(store.stats().bytes, max);
    assert_eq!(store.stats().keys, 1);
    assert_counters_match(&store);
}

#[test]
fn purge_prefix_counts_exactly() {
    let mut store = Store::new(1 << 20);
    for (key, variants) in [
        (&b"https://a.example/img/1"[..], 3),
        (b"https://a.example/img/2", 1),
        (b"https://a.example/imgs", 2),
        (b"https://a.example/css/x", 4),
        (b"https://b.example/img/1", 5),
    ] {
        for v in 0..variants {
            assert!(store.insert(key, &[v], blob(u32::from(v), 10)));
        }
    }
    assert_eq!(store.stats().entries, 15);
    assert_eq!(store.purge_prefix(b"https://a.example/img/"), 4);
    assert_eq!(store.purge_prefix(b"https://a.example/img/"), 0);
    assert_eq!(store.purge_prefix(b"https://a.example/img"), 2);
    assert_eq!(store.purge_prefix(b"https://c.example/"), 0);
    assert_eq!(store.stats().entries, 9);
    assert_eq!(store.stats().keys, 2);
    assert!(store.get(b"https://a.example/css/x", &[3]).is_some());
    assert_eq!(store.purge_prefix(b""), 9);
    assert_eq!(store.stats().bytes, 0);
    assert_eq!(store.stats().evictions, 0);
    assert_counters_match(&store);
}

#[test]
fn remove_returns_the_variant_count() {
    let mut store = Store::new(1 << 20);
    assert!(store.insert(b"k", b"1", blob(1, 1)));
    assert!(store.insert(b"k", b"2", blob(2, 1)));
    assert!(store.insert(b"other", b"", blob(3, 1)));
    assert_eq!(store.remove(b"k"), 2);
    assert_eq!(store.remove(b"k"), 0);
    assert_eq!(store.stats().keys, 1);
    assert_eq!(store.stats().bytes, charge(b"other", b"", 1));
    assert_counters_match(&store);
}

#[test]
fn zero_budget_stores_nothing() {
    let mut store = Store::new(0);
    assert_eq!(store.max_bytes(), 0);
    assert!(!store.insert(b"", b"", blob(1, 0)));
    assert!(!store.insert(b"k", b"v", blob(2, 10)));
    assert_eq!(store.get(b"", b""), None);
    assert_eq!(store.any_variant(b"k"), None);
    assert_eq!(store.stats(), StoreStats::default());
}
