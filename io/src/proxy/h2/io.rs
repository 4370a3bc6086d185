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
