//! The byte streams `h2` reads and writes: tokio `AsyncRead`/`AsyncWrite` adapters over monoio's
//! poll-io sockets.
//!
//! [`Prefixed`] replays bytes the HTTP/1 path already read (the sniffed h2c preface and whatever
//! came with it) before reading the socket. [`Guarded`] shows every byte the client sends to the
//! [`FloodGuard`] before `h2` sees it: on a flood it withholds the bytes, flags the connection
//! and wakes its task once, so the task can answer GOAWAY(ENHANCE_YOUR_CALM).

use proxy_core::h2::{Flood, FloodGuard, FloodLimits};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Forwards the write half of `AsyncWrite` to a field.
macro_rules! delegate_write {
    ($field:ident) => {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.$field).poll_write(cx, buf)
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.$field).poll_write_vectored(cx, bufs)
        }
        fn is_write_vectored(&self) -> bool {
            self.$field.is_write_vectored()
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.$field).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.$field).poll_shutdown(cx)
        }
    };
}

/// A stream that first yields `head[pos..]`, then reads `inner`.
pub(crate) struct Prefixed<T> {
    head: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Prefixed<T> {
    pub(crate) fn new(head: Vec<u8>, inner: T) -> Prefixed<T> {
        Prefixed {
            head,
            pos: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.head.len() {
            let n = (this.head.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                // Replayed: the buffer is freed rather than held for the connection's life.
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    delegate_write!(inner);
}

/// A stream whose incoming bytes pass the flood guard.
pub(crate) struct Guarded<T> {
    inner: T,
    guard: FloodGuard<Instant>,
    flagged: Rc<Cell<Option<Flood>>>,
}

impl<T> Guarded<T> {
    /// Guards `inner` with `limits`; a flood is reported through `flagged`.
    pub(crate) fn new(inner: T, limits: FloodLimits, flagged: Rc<Cell<Option<Flood>>>) -> Self {
        Guarded {
            inner,
            guard: FloodGuard::new(limits),
            flagged,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.flagged.get().is_some() {
            // Nothing more is read from a flooding client; h2 can still write its GOAWAY.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Err(flood) = this
                    .guard
                    .handle_bytes(&buf.filled()[before..], Instant::now())
                {
                    buf.set_filled(before);
                    this.flagged.set(Some(flood));
                    // Once: the connection task's next poll sees the flag. A wake loop here
                    // would spin the core.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    delegate_write!(inner);
}

/// Bytes queued before a write goes to the socket without waiting for the connection task's
/// flush.
const COALESCE_HIGH: usize = 64 * 1024;

/// The write side shared by [`Coalesced`] (inside h2) and [`Flusher`] (the connection task).
struct Shared<T> {
    io: T,
    out: Vec<u8>,
    /// `out[..sent]` is already written.
    sent: usize,
}

impl<T: AsyncWrite + Unpin> Shared<T> {
    /// Writes the queue out; `Pending` (with the waker registered) if the socket is full.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // A busy connection keeps its queue's memory; a burst's worth is handed back.
        if self.out.capacity() > COALESCE_HIGH * 2 {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

/// Gathers what h2 writes during one run of the connection task into one socket write.
///
/// h2 flushes after every DATA frame of 256 bytes or more (it chains such payloads instead of
/// copying them, and must flush a chained frame before buffering the next one): with 1 KiB
/// responses that was one `writev` per response. Here writes are queued and h2's flushes are
/// no-ops below [`COALESCE_HIGH`]; the connection task writes the queue out ([`Flusher`]) once
/// h2 has nothing more to do, so the responses finished in one scheduler round leave together.
pub(crate) struct Coalesced<T>(Rc<std::cell::RefCell<Shared<T>>>);

/// The connection task's handle on a [`Coalesced`] stream's queue.
pub(crate) struct Flusher<T>(Rc<std::cell::RefCell<Shared<T>>>);

/// Wraps `io`; the flusher goes to the task that drives the connection.
pub(crate) fn coalesce<T>(io: T) -> (Coalesced<T>, Flusher<T>) {
    let shared = Rc::new(std::cell::RefCell::new(Shared {
        io,
        out: Vec::new(),
        sent: 0,
    }));
    (Coalesced(shared.clone()), Flusher(shared))
}

impl<T: AsyncWrite + Unpin> Flusher<T> {
    /// Writes everything queued; `Pending` if the socket is full (the task is woken when it
    /// drains).
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().drain(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.borrow_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        if s.out.len() >= COALESCE_HIGH {
            if let Poll::Ready(Err(e)) = s.drain(cx) {
                return Poll::Ready(Err(e));
            }
            if s.out.len() >= COALESCE_HIGH {
                return Poll::Pending;
            }
        }
        s.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        if s.out.len() >= COALESCE_HIGH {
            if let Poll::Ready(Err(e)) = s.drain(cx) {
                return Poll::Ready(Err(e));
            }
            if s.out.len() >= COALESCE_HIGH {
                return Poll::Pending;
            }
        }
        let mut n = 0;
        for b in bufs {
            s.out.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        if s.out.len() >= COALESCE_HIGH {
            return s.drain(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        match s.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut s.io).poll_shutdown(cx),
            other => other,
        }
    }
}
