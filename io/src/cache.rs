//! A worker's HTTP cache: one byte-bounded store per caching route (`proxy_core::cache::store`),
//! the fetches in flight for request coalescing, and the purges the admin address published
//! for every worker. Everything here is owned by one worker thread (`RefCell`, `Rc`); the only
//! thing shared across threads is [`CachePurges`], written by the admin thread and read with one
//! relaxed load per cache lookup. HTTP semantics (what may be stored, freshness) are decided in
//! `proxy_core::cache::policy`; the exchange code in `proxy::cached` drives it.

use bytes::Bytes;
use proxy_core::cache::key::primary_key;
use proxy_core::cache::policy::ResponseMeta;
use proxy_core::cache::store::{Store, StoreStats, Weigh};
use proxy_core::compress::Encoding;
use proxy_core::config::Config;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Purge rules kept for workers that have not applied them yet; a worker that falls further
/// behind empties its caches instead.
const KEPT_PURGES: usize = 1024;

/// One stored response (one variant of a key).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Freshness facts.
    pub(crate) meta: ResponseMeta,
    /// The status line and the response's end-to-end fields, each `Name: value\r\n` (no
    /// framing, hop-by-hop, `Age` or cache-status fields: those are written per response).
    pub(crate) fields: Bytes,
    /// The payload (decoded from any chunked framing; compressed when `encoding` is set).
    pub(crate) body: Bytes,
    /// The `ETag` value, for conditional requests.
    pub(crate) etag: Option<Bytes>,
    /// The `Last-Modified` value, for conditional requests.
    pub(crate) last_modified: Option<Bytes>,
    /// The lowercase field names this key varies on.
    pub(crate) vary: Rc<[String]>,
    /// The content coding Ringway applied to this variant, if any.
    pub(crate) encoding: Option<Encoding>,
    /// Whether the route may compress this response (type and size matched, origin did not
    /// encode it or forbid transformation).
    pub(crate) compressible: bool,
}

impl Weigh for Entry {
    fn weight(&self) -> usize {
        self.fields.len()
            + self.body.len()
            + self.etag.as_ref().map_or(0, Bytes::len)
            + self.last_modified.as_ref().map_or(0, Bytes::len)
            + self.vary.iter().map(String::len).sum::<usize>()
            + std::mem::size_of::<Entry>()
    }
}

/// What an operator asked to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeRule {
    /// One primary key (every variant).
    Key(Vec<u8>),
    /// Every primary key starting with these bytes.
    Prefix(Vec<u8>),
}

impl PurgeRule {
    /// The rule for a URL `scheme://host/target` (exact), or with `prefix`, every URL starting
    /// with it (it must include at least the `/` after the host). `None` for anything else.
    pub fn for_url(url: &str, prefix: bool) -> Option<PurgeRule> {
        let (scheme, rest) = url.split_once("://")?;
        if !matches!(scheme, "http" | "https") {
            return None;
        }
        let slash = rest.find('/')?;
        let (authority, target) = rest.split_at(slash);
        // Requests are keyed by host without the port (as routing sees it): so is a purge.
        let host = match authority.rfind(':') {
            Some(colon) if !authority[colon..].contains(']') => &authority[..colon],
            _ => authority,
        };
        if host.is_empty() {
            return None;
        }
        let mut key = Vec::with_capacity(url.len() + 2);
        primary_key(
            scheme.as_bytes(),
            host.as_bytes(),
            target.as_bytes(),
            &mut key,
        );
        Some(if prefix {
            PurgeRule::Prefix(key)
        } else {
            PurgeRule::Key(key)
        })
    }
}

/// Purges published by the admin thread for every worker.
#[derive(Debug, Default)]
pub struct CachePurges {
    generation: AtomicU64,
    rules: Mutex<VecDeque<(u64, PurgeRule)>>,
}

impl CachePurges {
    /// Publishes `rule`; each worker applies it before its next cache lookup. Returns the
    /// purge's generation number.
    pub fn publish(&self, rule: PurgeRule) -> u64 {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        rules.push_back((generation, rule));
        while rules.len() > KEPT_PURGES {
            rules.pop_front();
        }
        self.generation.store(generation, Ordering::Release);
        generation
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The rules after `seen`, or `None` if some were already dropped.
    fn since(&self, seen: u64) -> Option<Vec<PurgeRule>> {
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if rules.front().is_some_and(|(g, _)| *g > seen + 1) {
            return None;
        }
        Some(
            rules
                .iter()
                .filter(|(g, _)| *g > seen)
                .map(|(_, r)| r.clone())
                .collect(),
        )
    }
}

/// A worker's caches.
pub(crate) struct WorkerCache {
    stores: Vec<RefCell<Store<Entry>>>,
    /// Primary keys (prefixed by the cache index) being fetched from upstream now.
    fetching: RefCell<HashMap<Vec<u8>, Rc<Gate>>>,
    purges: Arc<CachePurges>,
    seen: Cell<u64>,
}

impl WorkerCache {
    /// The caches of worker `index` of `workers`: each route cache's budget split evenly.
    pub(crate) fn new(config: &Config, workers: usize, purges: Arc<CachePurges>) -> WorkerCache {
        let workers = workers.max(1) as u64;
        let stores = config
            .caches
            .iter()
            .map(|c| {
                let share = usize::try_from(c.max_bytes / workers).unwrap_or(usize::MAX);
                RefCell::new(Store::new(share))
            })
            .collect();
        let seen = purges.generation();
        WorkerCache {
            stores,
            fetching: RefCell::new(HashMap::new()),
            purges,
            seen: Cell::new(seen),
        }
    }

    /// The store of cache `id`, after applying any purge published since the last call.
    pub(crate) fn store(&self, id: usize) -> Option<&RefCell<Store<Entry>>> {
        self.apply_purges();
        self.stores.get(id)
    }

    /// Statistics of every store, summed.
    pub(crate) fn stats(&self) -> StoreStats {
        let mut sum = StoreStats::default();
        for s in &self.stores {
            let s = s.borrow().stats();
            sum.bytes += s.bytes;
            sum.entries += s.entries;
            sum.keys += s.keys;
            sum.evictions += s.evictions;
            sum.inserted += s.inserted;
        }
        sum
    }

    /// Registers a fetch of `key` in cache `id`. Returns `Err(gate)` when one is in flight
    /// already (wait on the gate, then look again); otherwise a guard that opens the gate for
    /// the waiters when dropped.
    pub(crate) fn begin_fetch(&self, id: usize, key: &[u8]) -> Result<FetchGuard<'_>, Rc<Gate>> {
        let mut full = Vec::with_capacity(key.len() + 8);
        full.extend_from_slice(&(id as u64).to_le_bytes());
        full.extend_from_slice(key);
        let mut fetching = self.fetching.borrow_mut();
        if let Some(g) = fetching.get(&full) {
            return Err(g.clone());
        }
        let gate = Rc::new(Gate::default());
        fetching.insert(full.clone(), gate.clone());
        Ok(FetchGuard {
            cache: self,
            key: full,
            gate,
        })
    }

    fn apply_purges(&self) {
        let generation = self.purges.generation();
        if generation == self.seen.get() {
            return;
        }
        match self.purges.since(self.seen.get()) {
            Some(rules) => {
                for s in &self.stores {
                    let mut s = s.borrow_mut();
                    for r in &rules {
                        match r {
                            PurgeRule::Key(k) => {
                                s.remove(k);
                            }
                            PurgeRule::Prefix(p) => {
                                s.purge_prefix(p);
                            }
                        }
                    }
                }
            }
            None => {
                for s in &self.stores {
                    s.borrow_mut().purge_prefix(b"");
                }
            }
        }
        self.seen.set(generation);
    }
}

/// A fetch in flight; dropping it wakes the requests that waited for it.
pub(crate) struct FetchGuard<'a> {
    cache: &'a WorkerCache,
    key: Vec<u8>,
    gate: Rc<Gate>,
}

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        self.cache.fetching.borrow_mut().remove(&self.key);
        self.gate.open();
    }
}

/// A one-shot gate on one worker: waiters are woken when it opens.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    open: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once the gate is open.
    pub(crate) fn wait(self: Rc<Self>) -> GateWait {
        GateWait { gate: self }
    }
}

/// The future of [`Gate::wait`].
pub(crate) struct GateWait {
    gate: Rc<Gate>,
}

impl Future for GateWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.open.get() {
            return Poll::Ready(());
        }
        self.gate.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_urls_become_primary_keys() {
        let mut key = Vec::new();
        primary_key(b"http", b"example.com", b"/a?b=1", &mut key);
        assert_eq!(
            PurgeRule::for_url("http://example.com/a?b=1", false),
            Some(PurgeRule::Key(key))
        );
        assert!(matches!(
            PurgeRule::for_url("https://example.com/img/", true),
            Some(PurgeRule::Prefix(_))
        ));
        assert_eq!(PurgeRule::for_url("example.com/a", false), None);
        assert_eq!(PurgeRule::for_url("ftp://example.com/a", false), None);
        assert_eq!(PurgeRule::for_url("http://example.com", true), None);
        assert_eq!(PurgeRule::for_url("http:///a", false), None);
        assert_eq!(
            PurgeRule::for_url("http://Example.com:8080/a?b=1", false),
            PurgeRule::for_url("http://example.com/a?b=1", false),
            "the port goes, the case does not matter"
        );
        assert_eq!(
            PurgeRule::for_url("http://[::1]:8080/a", false),
            PurgeRule::for_url("http://[::1]/a", false)
        );
    }

    #[test]
    fn lagging_workers_see_that_rules_were_dropped() {
        let p = CachePurges::default();
        for i in 0..(KEPT_PURGES + 5) {
            p.publish(PurgeRule::Key(vec![i as u8]));
        }
        assert!(p.since(0).is_none(), "the first rules are gone");
        let recent = p.since(p.generation() - 2).unwrap();
        assert_eq!(recent.len(), 2);
    }
}
