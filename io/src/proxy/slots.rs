//! A cap on the upstream exchanges run at once per endpoint per worker, with a bounded
//! first-come, first-served queue: the circuit breaker of a cluster with `max_connections`
//! (beyond `max_pending` waiting requests, a 503 at once), and the cap HTTP/2 streams always
//! have.
//!
//! HTTP/1 clients bring at most one upstream exchange per connection. An HTTP/2 client brings
//! up to `max_concurrent_streams` each: 16 connections of 100 streams would open 1,600 upstream
//! connections from one core, more than many backends accept (nginx's default
//! `worker_connections` is 1024) and mostly churn. Streams beyond the cap wait for a slot; one
//! that waits longer than the upstream response timeout is answered 503. A slot is not held
//! hostage by a client that stops reading: its stream is reset after the stall limit (see
//! `relay::stall_limit`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// The slots of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    in_use: Cell<usize>,
    /// Waiting streams in arrival order; a slot freed goes to the front one.
    waiters: RefCell<VecDeque<(u64, Waker)>>,
    next_ticket: Cell<u64>,
    /// The ticket that was handed the last freed slot and has not taken it yet.
    handed: RefCell<Vec<u64>>,
}

/// A held slot; dropping it frees the slot for the next waiter.
pub(crate) struct Slot(Rc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Slots {
    fn release(&self) {
        let next = self.waiters.borrow_mut().pop_front();
        match next {
            // The slot passes straight to the first waiter: `in_use` stays the same.
            Some((ticket, waker)) => {
                self.handed.borrow_mut().push(ticket);
                waker.wake();
            }
            None => self.in_use.set(self.in_use.get() - 1),
        }
    }

    /// Takes a slot, waiting up to `timeout` behind earlier waiters, of which there may be at
    /// most `max_waiting`. Dropping the future while it waits (the stream was reset) leaves the
    /// queue intact and passes on a slot it was handed meanwhile.
    pub(crate) async fn acquire(
        self: &Rc<Self>,
        cap: usize,
        max_waiting: usize,
        timeout: Duration,
    ) -> Result<Slot, NoSlot> {
        if self.in_use.get() < cap && self.waiters.borrow().is_empty() {
            self.in_use.set(self.in_use.get() + 1);
            return Ok(Slot(self.clone()));
        }
        if self.waiters.borrow().len() >= max_waiting {
            return Err(NoSlot::QueueFull);
        }
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        let waiter = Waiter {
            slots: self.clone(),
            ticket,
            queued: false,
            granted: false,
        };
        monoio::time::timeout(timeout, waiter)
            .await
            .map_err(|_| NoSlot::TimedOut)
    }
}

/// Why no slot was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// `max_waiting` requests were already waiting.
    QueueFull,
    /// None came free in time.
    TimedOut,
}

/// A place in the queue; see [`Slots::acquire`].
struct Waiter {
    slots: Rc<Slots>,
    ticket: u64,
    queued: bool,
    /// The slot was taken (then it belongs to the returned [`Slot`]).
    granted: bool,
}

impl std::future::Future for Waiter {
    type Output = Slot;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Slot> {
        let this = &mut *self;
        let slots = &this.slots;
        let ticket = this.ticket;
        let mut handed = slots.handed.borrow_mut();
        if let Some(i) = handed.iter().position(|&t| t == ticket) {
            handed.swap_remove(i);
            this.granted = true;
            return Poll::Ready(Slot(slots.clone()));
        }
        drop(handed);
        let mut waiters = slots.waiters.borrow_mut();
        match waiters.iter_mut().find(|(t, _)| *t == ticket) {
            Some((_, w)) => w.clone_from(cx.waker()),
            None if !this.queued => {
                waiters.push_back((ticket, cx.waker().clone()));
                this.queued = true;
            }
            None => {}
        }
        Poll::Pending
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let ticket = self.ticket;
        self.slots
            .waiters
            .borrow_mut()
            .retain(|(t, _)| *t != ticket);
        let mut handed = self.slots.handed.borrow_mut();
        if let Some(i) = handed.iter().position(|&t| t == ticket) {
            // Handed a slot it will never use: pass it on.
            handed.swap_remove(i);
            drop(handed);
            self.slots.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
    }

    #[test]
    fn waiters_get_freed_slots_in_order_and_time_out_cleanly() {
        rt().block_on(async {
            let slots = Rc::new(Slots::default());
            let a = slots
                .acquire(1, usize::MAX, Duration::from_secs(1))
                .await
                .expect("free");
            // The cap is reached: a second taker times out and leaves no trace.
            assert_eq!(
                slots
                    .acquire(1, usize::MAX, Duration::from_millis(20))
                    .await
                    .err(),
                Some(NoSlot::TimedOut)
            );
            // With no room to wait, the answer comes at once.
            assert_eq!(
                slots.acquire(1, 0, Duration::from_secs(5)).await.err(),
                Some(NoSlot::QueueFull)
            );
            assert!(slots.waiters.borrow().is_empty());
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for i in 0..3 {
                let (s, o) = (slots.clone(), order.clone());
                tasks.push(monoio::spawn(async move {
                    let slot = s
                        .acquire(1, usize::MAX, Duration::from_secs(5))
                        .await
                        .expect("handed");
                    o.borrow_mut().push(i);
                    monoio::time::sleep(Duration::from_millis(5)).await;
                    drop(slot);
                }));
                monoio::time::sleep(Duration::from_millis(2)).await;
            }
            drop(a);
            for t in tasks {
                t.await;
            }
            assert_eq!(*order.borrow(), [0, 1, 2]);
            assert_eq!(slots.in_use.get(), 0);
        });
    }

    /// Polls `fut` once (so that it queues), without waiting for it.
    async fn poll_once<F: std::future::Future>(mut fut: std::pin::Pin<&mut F>) {
        std::future::poll_fn(|cx| {
            let _ = fut.as_mut().poll(cx);
            Poll::Ready(())
        })
        .await;
    }

    #[test]
    fn a_waiter_dropped_before_or_after_being_handed_a_slot_loses_nothing() {
        rt().block_on(async {
            let slots = Rc::new(Slots::default());
            let held = slots
                .acquire(1, usize::MAX, Duration::from_secs(1))
                .await
                .expect("free");
            // A waiter that goes away while queued (its stream was reset).
            let mut gone = Box::pin(slots.acquire(1, usize::MAX, Duration::from_secs(5)));
            poll_once(gone.as_mut()).await;
            assert_eq!(slots.waiters.borrow().len(), 1);
            drop(gone);
            assert!(slots.waiters.borrow().is_empty());
            // A waiter handed the slot, then dropped before it ran: the slot comes back.
            let mut late = Box::pin(slots.acquire(1, usize::MAX, Duration::from_secs(5)));
            poll_once(late.as_mut()).await;
            drop(held);
            assert_eq!(slots.handed.borrow().len(), 1);
            drop(late);
            assert_eq!(slots.in_use.get(), 0, "the slot leaked");
            assert!(slots
                .acquire(1, usize::MAX, Duration::from_millis(50))
                .await
                .is_ok());
        });
    }
}
