//! Idle deadlines of a worker's parked connections, served by one timer.
//!
//! A parked keep-alive connection needs a deadline (the idle or header timeout), but a monoio
//! `Sleep` is 640 bytes and registers in the runtime's timer wheel: with 10,000 idle connections
//! that is most of what they cost. Instead each parked connection holds a slot here (about 40
//! bytes) and one ticker task per worker sleeps until the earliest deadline, wakes whoever is
//! due, and sleeps again. A new deadline earlier than the one the ticker sleeps towards kicks it.
//!
//! Slots are reused through a free list; the heap keeps `(deadline, slot, generation)` and
//! entries of released slots are skipped when they surface, or swept out in one pass when they
//! outnumber live ones, so churn (connections parking and waking constantly) cannot grow it.

use crate::shutdown::DrainEvent;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

/// The idle deadlines of one worker. Not `Send`: each worker has its own.
#[derive(Default)]
pub(crate) struct IdleClock {
    inner: RefCell<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    live: usize,
    /// The deadline the ticker sleeps towards (`None`: it waits for a kick).
    armed: Option<Instant>,
    kicked: bool,
    ticker: Option<Waker>,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    used: bool,
    expired: bool,
    waker: Option<Waker>,
}

impl IdleClock {
    /// A future that resolves at `deadline` (give or take the runtime's timer resolution).
    pub(crate) fn until(&self, deadline: Instant) -> IdleDeadline<'_> {
        IdleDeadline {
            clock: self,
            deadline,
            slot: None,
        }
    }

    /// How many deadlines are pending.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.inner.borrow().live
    }

    /// The ticker: wakes due connections until `drain` fires (parked connections watch the drain
    /// themselves, so none is left waiting).
    pub(crate) async fn run(&self, drain: &DrainEvent) {
        while !drain.is_fired() {
            let next = self.expire(Instant::now());
            let sleep = next.map(|d| d.saturating_duration_since(Instant::now()));
            monoio::select! {
                _ = async {
                    match sleep {
                        Some(d) => monoio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = Kick { clock: self } => {}
                _ = drain.wait() => {}
            }
        }
    }

    /// Marks every deadline at or before `now` expired and wakes its owner; returns the next
    /// deadline and arms the ticker for it.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut wake = Vec::new();
        let next = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let next = loop {
                let Some(&Reverse((deadline, slot, generation))) = inner.heap.peek() else {
                    break None;
                };
                let s = &mut inner.slots[slot as usize];
                if !s.used || s.generation != generation {
                    inner.heap.pop();
                    continue;
                }
                if deadline > now {
                    break Some(deadline);
                }
                inner.heap.pop();
                s.expired = true;
                if let Some(w) = s.waker.take() {
                    wake.push(w);
                }
            };
            inner.armed = next;
            inner.kicked = false;
            next
        };
        // Woken outside the borrow: a woken task may park another connection.
        for w in wake {
            w.wake();
        }
        next
    }
}

/// The future returned by [`IdleClock::until`].
pub(crate) struct IdleDeadline<'a> {
    clock: &'a IdleClock,
    deadline: Instant,
    /// `(index, generation)` once registered.
    slot: Option<(u32, u32)>,
}

impl Future for IdleDeadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.clock.inner.borrow_mut();
        if let Some((i, _)) = self.slot {
            let s = &mut inner.slots[i as usize];
            if s.expired {
                return Poll::Ready(());
            }
            match &mut s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        if self.deadline <= Instant::now() {
            return Poll::Ready(());
        }
        let i = match inner.free.pop() {
            Some(i) => i,
            None => {
                inner.slots.push(Slot::default());
                (inner.slots.len() - 1) as u32
            }
        };
        let s = &mut inner.slots[i as usize];
        s.used = true;
        s.expired = false;
        s.waker = Some(cx.waker().clone());
        let generation = s.generation;
        inner.heap.push(Reverse((self.deadline, i, generation)));
        inner.live += 1;
        let kick = inner.armed.is_none_or(|a| self.deadline < a);
        let ticker = if kick {
            inner.armed = Some(self.deadline);
            inner.kicked = true;
            inner.ticker.take()
        } else {
            None
        };
        drop(inner);
        self.slot = Some((i, generation));
        if let Some(t) = ticker {
            t.wake();
        }
        Poll::Pending
    }
}

impl Drop for IdleDeadline<'_> {
    fn drop(&mut self) {
        let Some((i, _)) = self.slot else { return };
        let mut inner = self.clock.inner.borrow_mut();
        let s = &mut inner.slots[i as usize];
        s.used = false;
        s.expired = false;
        s.waker = None;
        s.generation = s.generation.wrapping_add(1);
        inner.free.push(i);
        inner.live -= 1;
        // Released slots leave their heap entries behind; sweep them once they dominate.
        if inner.heap.len() > 2 * inner.live + 64 {
            let Inner { heap, slots, .. } = &mut *inner;
            heap.retain(|Reverse((_, slot, generation))| {
                let s = &slots[*slot as usize];
                s.used && s.generation == *generation
            });
        }
    }
}

/// Resolves when a new deadline earlier than the armed one arrives.
struct Kick<'a> {
    clock: &'a IdleClock,
}

impl Future for Kick<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.clock.inner.borrow_mut();
        if inner.kicked {
            inner.kicked = false;
            return Poll::Ready(());
        }
        inner.ticker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn block_on<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn deadlines_fire_in_order_and_not_early() {
        block_on(async {
            let clock = Rc::new(IdleClock::default());
            let drain = Rc::new(DrainEvent::default());
            let ticker = {
                let (c, d) = (clock.clone(), drain.clone());
                monoio::spawn(async move { c.run(&d).await })
            };
            let start = Instant::now();
            let fired = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            // Registered latest first, so each new one must kick the ticker earlier.
            for ms in [120u64, 80, 40] {
                let (c, f) = (clock.clone(), fired.clone());
                tasks.push(monoio::spawn(async move {
                    c.until(start + Duration::from_millis(ms)).await;
                    assert!(start.elapsed() >= Duration::from_millis(ms));
                    f.borrow_mut().push(ms);
                }));
            }
            for t in tasks {
                t.await;
            }
            assert_eq!(*fired.borrow(), vec![40, 80, 120]);
            assert_eq!(clock.pending(), 0);
            drain.fire();
            ticker.await;
        });
    }

    #[test]
    fn dropped_deadlines_do_not_accumulate() {
        block_on(async {
            let clock = IdleClock::default();
            let far = Instant::now() + Duration::from_secs(3600);
            for _ in 0..10_000 {
                let mut d = std::pin::pin!(clock.until(far));
                let waker = futures_noop_waker();
                let mut cx = Context::from_waker(&waker);
                assert!(d.as_mut().poll(&mut cx).is_pending());
            }
            let inner = clock.inner.borrow();
            assert_eq!(inner.live, 0);
            assert!(
                inner.heap.len() <= 64 + 1,
                "heap kept {} stale entries",
                inner.heap.len()
            );
            assert!(inner.slots.len() <= 1);
        });
    }

    fn futures_noop_waker() -> Waker {
        Waker::noop().clone()
    }
}
