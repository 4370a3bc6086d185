//! A cap on the upstream exchanges HTTP/2 streams run at once, per endpoint per worker, with a
//! first-come, first-served queue.
//!
//! HTTP/1 clients bring at most one upstream exchange per connection. An HTTP/2 client brings
//! up to `max_concurrent_streams` each: 16 connections of 100 streams would open 1,600 upstream
//! connections from one core, more than many backends accept (nginx's default
//! `worker_connections` is 1024) and mostly churn. Streams beyond the cap wait for a slot; one
//! that waits longer than the connect timeout is answered 503.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
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

    /// Takes a slot, waiting up to `timeout` behind earlier waiters; `None` on timeout.
    pub(crate) async fn acquire(self: &Rc<Self>, cap: usize, timeout: Duration) -> Option<Slot> {
        if self.in_use.get() < cap && self.waiters.borrow().is_empty() {
            self.in_use.set(self.in_use.get() + 1);
            return Some(Slot(self.clone()));
        }
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        let mut queued = false;
        let wait = poll_fn(|cx| {
            let mut handed = self.handed.borrow_mut();
            if let Some(i) = handed.iter().position(|&t| t == ticket) {
                handed.swap_remove(i);
                return Poll::Ready(());
            }
            drop(handed);
            let mut waiters = self.waiters.borrow_mut();
            match waiters.iter_mut().find(|(t, _)| *t == ticket) {
                Some((_, w)) => w.clone_from(cx.waker()),
                None if !queued => {
                    waiters.push_back((ticket, cx.waker().clone()));
                    queued = true;
                }
                None => {}
            }
            Poll::Pending
        });
        match monoio::time::timeout(timeout, wait).await {
            Ok(()) => Some(Slot(self.clone())),
            Err(_) => {
                // Gave up: leave the queue, or pass on a slot handed over meanwhile.
                self.waiters.borrow_mut().retain(|(t, _)| *t != ticket);
                let mut handed = self.handed.borrow_mut();
                if let Some(i) = handed.iter().position(|&t| t == ticket) {
                    handed.swap_remove(i);
                    drop(handed);
                    self.release();
                }
                None
            }
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
                .acquire(1, Duration::from_secs(1))
                .await
                .expect("free");
            // The cap is reached: a second taker times out and leaves no trace.
            assert!(slots.acquire(1, Duration::from_millis(20)).await.is_none());
            assert!(slots.waiters.borrow().is_empty());
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for i in 0..3 {
                let (s, o) = (slots.clone(), order.clone());
                tasks.push(monoio::spawn(async move {
                    let slot = s.acquire(1, Duration::from_secs(5)).await.expect("handed");
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
}
