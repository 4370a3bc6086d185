//! Graceful shutdown: a process-wide trigger that wakes every worker, and the worker-local
//! event its connections wait on.
//!
//! The signal thread calls [`Shutdown::trigger`] once; each worker's runtime is woken through its
//! waker (monoio's `sync` feature makes cross-thread wakes work), then fans the news out locally
//! through a [`DrainEvent`] to idle connections, which close, and to in-flight requests, which
//! finish with `Connection: close`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// The process-wide shutdown trigger; clone it into every worker.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    triggered: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Shutdown {
    /// A trigger that has not fired.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Fires the trigger and wakes every waiter. Idempotent.
    pub fn trigger(&self) {
        self.inner.triggered.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(
            &mut *self
                .inner
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for w in wakers {
            w.wake();
        }
    }

    /// Whether the trigger has fired.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// Resolves once the trigger has fired.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_triggered() {
                return Poll::Ready(());
            }
            let mut wakers = self
                .inner
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            drop(wakers);
            // Re-check after registering, so a trigger between the check and the push is seen.
            if self.is_triggered() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// A worker-local, one-shot broadcast: "this worker is draining".
///
/// Waiters register in a slab and deregister when dropped, so a connection that waits on it
/// through many idle periods leaves nothing behind.
#[derive(Debug, Default)]
pub struct DrainEvent {
    fired: Cell<bool>,
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl DrainEvent {
    /// Fires the event and wakes every waiter.
    pub fn fire(&self) {
        self.fired.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        self.free.borrow_mut().clear();
        for w in waiters.into_iter().flatten() {
            w.wake();
        }
    }

    /// Whether the event has fired.
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Resolves once the event has fired.
    pub fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            event: self,
            slot: None,
        }
    }
}

/// The future returned by [`DrainEvent::wait`].
#[derive(Debug)]
pub struct DrainWait<'a> {
    event: &'a DrainEvent,
    slot: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.is_fired() {
            self.slot = None;
            return Poll::Ready(());
        }
        let mut waiters = self.event.waiters.borrow_mut();
        match self.slot {
            Some(i) if i < waiters.len() => waiters[i] = Some(cx.waker().clone()),
            _ => {
                let i = match self.event.free.borrow_mut().pop() {
                    Some(i) => {
                        waiters[i] = Some(cx.waker().clone());
                        i
                    }
                    None => {
                        waiters.push(Some(cx.waker().clone()));
                        waiters.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            if !self.event.is_fired() {
                if let Some(w) = self.event.waiters.borrow_mut().get_mut(i) {
                    *w = None;
                }
                self.event.free.borrow_mut().push(i);
            }
        }
    }
}
