//! A tokio `AsyncRead`/`AsyncWrite` over an established rustls session and a poll-io socket:
//! what `h2` runs on after Ringway's own handshake (on rent I/O, with SNI-driven config choice).
//! tokio-rustls cannot adopt a session that is already established, hence this.
//!
//! Reads hand rustls' buffered plaintext out first, then ciphertext left over from the handshake
//! (a client's first HTTP/2 bytes often come with its Finished message), then read the socket
//! straight into rustls through a `Read` shim. Writes encrypt into rustls and push its records
//! out through a `Write` shim; a full socket leaves them queued in rustls for `poll_flush`.

use crate::tls::session::TlsSession;
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use std::io::{self, BufRead, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An established TLS session over a poll-io socket.
pub(crate) struct TlsPoll {
    io: TcpStreamPoll,
    conn: rustls::Connection,
    /// Ciphertext read before the switch that rustls has not taken yet.
    pending: Vec<u8>,
    eof: bool,
}

/// Adapts poll-style socket calls to `std::io`, with `WouldBlock` meaning "pending, waker
/// registered".
struct Shim<'a, 'b> {
    io: &'a mut TcpStreamPoll,
    cx: &'a mut Context<'b>,
}

fn pending_as_would_block<T>(p: Poll<io::Result<T>>) -> io::Result<T> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl Read for Shim<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        pending_as_would_block(Pin::new(&mut *self.io).poll_read(self.cx, &mut rb))?;
        Ok(rb.filled().len())
    }
}

impl Write for Shim<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        pending_as_would_block(Pin::new(&mut *self.io).poll_write(self.cx, buf))
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        pending_as_would_block(Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsPoll {
    /// Continues `session` (handshake done) on `io`, keeping any ciphertext it had read ahead.
    pub(crate) fn new(io: TcpStreamPoll, session: TlsSession) -> TlsPoll {
        let TlsSession {
            conn,
            mut inbuf,
            fed,
            ..
        } = session;
        inbuf.drain(..fed.min(inbuf.len()));
        TlsPoll {
            io,
            conn,
            pending: inbuf,
            eof: false,
        }
    }

    /// Hands plaintext to rustls with `write` once the records it already holds are out (so
    /// what it buffers stays bounded), then pushes the new records out as far as they go.
    fn encrypt(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut rustls::Writer<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        match self.poll_flush_tls(cx) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) => {}
        }
        let n = write(&mut self.conn.writer())?;
        if let Poll::Ready(Err(e)) = self.poll_flush_tls(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    /// Writes queued TLS records until rustls has none or the socket is full.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut w = Shim {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut w) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TlsPoll {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Copied out of rustls' buffer (not `read` into `initialize_unfilled`, which would
            // zero the rest of h2's read buffer on every call).
            let mut reader = this.conn.reader();
            match reader.fill_buf() {
                Ok(plain) => {
                    // Empty: close_notify, a clean end.
                    let n = plain.len().min(buf.remaining());
                    buf.put_slice(&plain[..n]);
                    reader.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket closed without close_notify.
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Alerts and key updates rustls wants to send go out first, as far as they can.
            if let Poll::Ready(Err(e)) = this.poll_flush_tls(cx) {
                return Poll::Ready(Err(e));
            }
            if !this.pending.is_empty() {
                let mut rd = &this.pending[..];
                let n = this.conn.read_tls(&mut rd)?;
                this.pending.drain(..n);
                if this.pending.is_empty() {
                    this.pending = Vec::new();
                }
                this.conn.process_new_packets().map_err(invalid)?;
                continue;
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut shim = Shim {
                io: &mut this.io,
                cx,
            };
            match this.conn.read_tls(&mut shim) {
                Ok(0) => this.eof = true,
                Ok(_) => {
                    this.conn.process_new_packets().map_err(invalid)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsPoll {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.encrypt(cx, |w| w.write(buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.encrypt(cx, |w| w.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_tls(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.send_close_notify();
        match self.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.io).poll_shutdown(cx),
            other => other,
        }
    }
}
