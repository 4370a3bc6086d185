//! A connection task that panics loses its connection, not its worker.
//!
//! monoio does not catch panics in tasks: one would unwind through the worker's event loop and
//! end the thread, and with it every connection and listener the worker owns. Parsing is fuzzed
//! and panics are bugs, but a proxy must survive its own bugs on hostile input.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `fut` as a task whose panic is logged and ends only that task.
pub(crate) fn spawn_connection_task<F: Future<Output = ()> + 'static>(fut: F) {
    monoio::spawn(Contained { fut, done: false });
}

struct Contained<F> {
    fut: F,
    done: bool,
}

impl<F: Future<Output = ()>> Future for Contained<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of `self`, and `done` is
        // a plain flag that needs no pinning.
        let this = unsafe { self.get_unchecked_mut() };
        if this.done {
            return Poll::Ready(());
        }
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(poll) => poll,
            Err(_) => {
                this.done = true;
                tracing::error!("a connection task panicked; that connection was dropped");
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn a_panicking_task_ends_alone() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let survived = Rc::new(Cell::new(false));
        let s = survived.clone();
        rt.block_on(async move {
            spawn_connection_task(async { panic!("boom (expected in this test)") });
            monoio::time::sleep(std::time::Duration::ZERO).await;
            let other = monoio::spawn(async move { s.set(true) });
            other.await;
        });
        assert!(survived.get());
    }
}
