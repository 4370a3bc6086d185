//! A TCP stream with timed, cancel-safe reads and writes.
//!
//! On io_uring a read whose future is dropped may already have consumed data from the socket,
//! which is then lost. So a timeout never drops an operation: it cancels it through a
//! [`Canceller`] and then awaits its real result, which may still be data. The canceller is kept
//! per stream and only replaced after an actual cancellation, so a timed read allocates nothing.
//!
//! A stream may carry a TLS session ([`TlsSession`]): reads and writes then move ciphertext on
//! the socket and plaintext in the caller's buffers, with the same timeouts and cancellation.

use crate::idle::IdleClock;
use crate::shutdown::DrainEvent;
use crate::tls::session::{tls_error, Plain, TlsSession};
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{CancelableAsyncReadRent, CancelableAsyncWriteRent, Canceller};
use monoio::net::TcpStream;
use monoio::time::Sleep;
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// What ended a wait for readability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The socket has data (or EOF) to read.
    Readable,
    /// The wait timed out.
    Timeout,
    /// The worker started draining.
    Drain,
}

/// A stream plus the canceller and the timer its timed operations use.
///
/// The timer is allocated on a connection's first timed operation and replaced in place for each
/// one after, instead
/// of a fresh `Sleep` (640 bytes in monoio) nested inside every operation's future: that keeps
/// the per-connection future, which is what an idle keep-alive connection costs, small. It is
/// replaced (`Pin::set`), not `reset`: in monoio 0.2 a `reset` to an earlier deadline after
/// `reset`s to later ones can leave the timer never firing (seen here: a 10 ms linger that
/// waited until the peer closed).
pub(crate) struct Timed {
    pub(crate) stream: TcpStream,
    /// Created on first use and dropped by [`Timed::release`], like the timer.
    canceller: Option<Canceller>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The TLS session, when the stream is TLS.
    pub(crate) tls: Option<Box<TlsSession>>,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

impl Timed {
    pub(crate) fn new(stream: TcpStream) -> Timed {
        Timed {
            stream,
            canceller: None,
            timer: None,
            tls: None,
        }
    }

    /// The socket and the TLS session, for a protocol that drives them itself (HTTP/2).
    pub(crate) fn into_parts(self) -> (TcpStream, Option<Box<TlsSession>>) {
        (self.stream, self.tls)
    }

    /// Whether a read would return at once from what is already buffered (TLS only).
    pub(crate) fn has_buffered(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.has_buffered())
    }

    /// Bytes written to the socket that the peer has not acknowledged yet (SIOCOUTQ): what sits
    /// in the kernel's send queue. `None` if the kernel will not say.
    pub(crate) fn unacknowledged(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer, which is valid.
        let rc = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        (rc == 0).then(|| u64::try_from(queued).unwrap_or(0))
    }

    /// Drops the timer and canceller (about 800 bytes) while the stream sits idle; the next
    /// timed operation makes new ones.
    pub(crate) fn release(&mut self) {
        self.timer = None;
        self.canceller = None;
        if let Some(t) = &mut self.tls {
            t.release();
        }
    }

    /// Drops a TLS session's scratch buffers (kept otherwise between exchanges).
    pub(crate) fn release_tls_buffers(&mut self) {
        if let Some(t) = &mut self.tls {
            t.release();
        }
    }

    /// The stream, its canceller and its timer armed for `timeout`.
    fn arm(&mut self, timeout: Duration) -> (&mut TcpStream, &mut Canceller, Pin<&mut Sleep>) {
        let sleep = monoio::time::sleep(timeout);
        let timer = match self.timer.take() {
            Some(mut t) => {
                t.set(sleep);
                self.timer.insert(t)
            }
            None => self.timer.insert(Box::pin(sleep)),
        };
        let canceller = self.canceller.get_or_insert_with(Canceller::new);
        (&mut self.stream, canceller, timer.as_mut())
    }

    /// Reads into the spare capacity of `buf` (appending to its contents), waiting at most
    /// `timeout`. `Ok(0)` means the peer closed; a timeout is `ErrorKind::TimedOut`.
    pub(crate) async fn read_append(
        &mut self,
        buf: Vec<u8>,
        timeout: Duration,
    ) -> (io::Result<usize>, Vec<u8>) {
        self.read_until(buf, timeout, None).await
    }

    /// Like [`Timed::read_append`] but also gives up when `drain` fires (reported as
    /// `ErrorKind::Interrupted`), for reads that wait on an idle client.
    pub(crate) async fn read_append_or_drain(
        &mut self,
        buf: Vec<u8>,
        timeout: Duration,
        drain: &DrainEvent,
    ) -> (io::Result<usize>, Vec<u8>) {
        self.read_until(buf, timeout, Some(drain)).await
    }

    async fn read_until(
        &mut self,
        buf: Vec<u8>,
        timeout: Duration,
        drain: Option<&DrainEvent>,
    ) -> (io::Result<usize>, Vec<u8>) {
        if self.tls.is_some() {
            self.tls_read(buf, timeout, drain).await
        } else {
            self.raw_read(buf, timeout, drain).await
        }
    }

    /// Reads plaintext through the TLS session: what rustls already decrypted first, then
    /// ciphertext from the socket until some plaintext comes out of it.
    async fn tls_read(
        &mut self,
        mut buf: Vec<u8>,
        timeout: Duration,
        drain: Option<&DrainEvent>,
    ) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            return (Err(io::Error::other("read buffer full")), buf);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return (Err(io::Error::other("not a TLS stream")), buf);
            };
            match tls.take_plaintext(&mut buf) {
                Plain::Data(n) => return (Ok(n), buf),
                Plain::Eof => return (Ok(0), buf),
                Plain::Empty => {}
            }
            match tls.feed() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    let _ = self.flush_tls(Duration::from_millis(100)).await;
                    return (Err(tls_error(e)), buf);
                }
            }
            // Handshake messages, tickets, key updates and alerts go out before waiting.
            if let Err(e) = self.flush_tls(timeout).await {
                return (Err(e), buf);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (Err(timed_out()), buf);
            }
            let Some(tls) = self.tls.as_mut() else {
                return (Err(io::Error::other("not a TLS stream")), buf);
            };
            let inbuf = tls.take_inbuf();
            let (res, inbuf) = self.raw_read(inbuf, left, drain).await;
            let Some(tls) = self.tls.as_mut() else {
                return (Err(io::Error::other("not a TLS stream")), buf);
            };
            tls.inbuf = inbuf;
            match res {
                Ok(0) => tls.closed = true,
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Writes whatever the TLS session has queued (handshake messages, encrypted records,
    /// alerts) to the socket.
    pub(crate) async fn flush_tls(&mut self, timeout: Duration) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        if !tls.conn.wants_write() {
            return Ok(());
        }
        let out = tls.take_output()?;
        let (res, out) = self.raw_write_all(out, timeout).await;
        if let Some(tls) = self.tls.as_mut() {
            tls.out = out;
        }
        res
    }

    /// Ends this side's sending: TLS close_notify first, then a TCP half-close.
    pub(crate) async fn shutdown_write(&mut self) {
        if let Some(t) = &mut self.tls {
            t.conn.send_close_notify();
        }
        let _ = self.flush_tls(Duration::from_secs(1)).await;
        let _ = monoio::io::AsyncWriteRent::shutdown(&mut self.stream).await;
    }

    /// Reads raw bytes from the socket (ciphertext on a TLS stream) into the spare capacity of
    /// `buf`.
    pub(crate) async fn read_raw(
        &mut self,
        buf: Vec<u8>,
        timeout: Duration,
    ) -> (io::Result<usize>, Vec<u8>) {
        self.raw_read(buf, timeout, None).await
    }

    /// Reads from the socket into the spare capacity of `buf`.
    async fn raw_read(
        &mut self,
        buf: Vec<u8>,
        timeout: Duration,
        drain: Option<&DrainEvent>,
    ) -> (io::Result<usize>, Vec<u8>) {
        let (len, cap) = (buf.len(), buf.capacity());
        if len == cap {
            return (Err(io::Error::other("read buffer full")), buf);
        }
        let (stream, canceller, mut timer) = self.arm(timeout);
        let read = stream.cancelable_read(buf.slice_mut(len..cap), canceller.handle());
        let mut read = std::pin::pin!(read);
        let draining = async {
            match drain {
                Some(d) => d.wait().await,
                None => std::future::pending().await,
            }
        };
        // Neither the timer nor a drain drops the read: it is cancelled and its real result
        // awaited, which may still be data.
        let (res, slice) = monoio::select! {
            r = &mut read => r,
            _ = timer.as_mut() => {
                *canceller = std::mem::take(canceller).cancel();
                let (res, slice) = read.await;
                (cancelled_to_timeout(res), slice)
            }
            _ = draining => {
                *canceller = std::mem::take(canceller).cancel();
                let (res, slice) = read.await;
                let res = match res {
                    Err(e) if is_cancelled(&e) => Err(io::Error::new(io::ErrorKind::Interrupted, "draining")),
                    other => other,
                };
                (res, slice)
            }
        };
        (res, slice.into_inner())
    }

    /// Writes all of `buf`, allowing each write at most `timeout` to make progress.
    pub(crate) async fn write_all<T: IoBuf>(
        &mut self,
        buf: T,
        timeout: Duration,
    ) -> (io::Result<()>, T) {
        if self.tls.is_none() {
            return self.raw_write_all(buf, timeout).await;
        }
        // SAFETY: an `IoBuf` promises `bytes_init()` initialised bytes at `read_ptr()`, valid
        // while the buffer is alive and not mutated; `buf` is owned here and only read.
        let plain = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let mut done = 0;
        let mut stalled = false;
        while done < plain.len() {
            let taken = match self.tls.as_mut().map(|t| t.encrypt(&plain[done..])) {
                Some(Ok(n)) => n,
                Some(Err(e)) => return (Err(e), buf),
                None => return (Err(io::Error::other("not a TLS stream")), buf),
            };
            done += taken;
            if let Err(e) = self.flush_tls(timeout).await {
                return (Err(e), buf);
            }
            // rustls takes nothing only while its send buffer is full, and the flush above
            // emptied it: twice in a row means it never will.
            if taken == 0 && std::mem::replace(&mut stalled, true) {
                return (Err(io::ErrorKind::WriteZero.into()), buf);
            }
            stalled &= taken == 0;
        }
        (Ok(()), buf)
    }

    /// Writes all of `buf` to the socket as it is.
    async fn raw_write_all<T: IoBuf>(
        &mut self,
        mut buf: T,
        timeout: Duration,
    ) -> (io::Result<()>, T) {
        let total = buf.bytes_init();
        let mut done = 0;
        while done < total {
            let (stream, canceller, mut timer) = self.arm(timeout);
            let write = stream.cancelable_write(buf.slice(done..total), canceller.handle());
            let mut write = std::pin::pin!(write);
            let (res, slice) = monoio::select! {
                r = &mut write => r,
                _ = timer.as_mut() => {
                    *canceller = std::mem::take(canceller).cancel();
                    let (res, slice) = write.await;
                    (cancelled_to_timeout(res), slice)
                }
            };
            buf = slice.into_inner();
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Waits, holding no buffer, until the socket is readable, `deadline` passes (kept by the
    /// worker's shared [`IdleClock`], not a timer of this stream's) or the worker drains. This is
    /// how idle keep-alive connections wait; call [`Timed::release`] first to hold even less.
    pub(crate) async fn wait_readable(
        &self,
        clock: &IdleClock,
        deadline: Instant,
        drain: &DrainEvent,
    ) -> Wake {
        if drain.is_fired() {
            return Wake::Drain;
        }
        if self.has_buffered() {
            return Wake::Readable;
        }
        // A readiness poll holds no data, so dropping it on timeout loses nothing.
        monoio::select! {
            // An error shows up again on the read that follows, so it counts as readable.
            _ = self.stream.readable(false) => Wake::Readable,
            _ = clock.until(deadline) => Wake::Timeout,
            _ = drain.wait() => Wake::Drain,
        }
    }
}

fn is_cancelled(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECANCELED)
}

fn cancelled_to_timeout(res: io::Result<usize>) -> io::Result<usize> {
    match res {
        Err(e) if is_cancelled(&e) => Err(timed_out()),
        other => other,
    }
}
