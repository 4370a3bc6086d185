//! Byte-for-byte tunnelling after `101 Switching Protocols` (WebSocket and other upgrades).
//!
//! Each direction copies through its own buffer. When one side finishes sending, the other
//! side's write half is shut down and the opposite direction carries on until it ends too. The
//! tunnel closes after `idle` with no traffic in either direction.

use crate::stream::Timed;
use crate::worker::WorkerCtx;
use monoio::io::{
    AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller, OwnedReadHalf,
    OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Runs the tunnel until both directions have ended. `leftover` holds client bytes that arrived
/// after the upgrade request and are sent upstream first.
pub(super) async fn run(
    ctx: &WorkerCtx,
    client: Timed,
    mut upstream: Timed,
    leftover: Vec<u8>,
    idle: Duration,
) {
    if !leftover.is_empty() {
        let (res, b) = upstream.write_all(leftover, idle).await;
        ctx.buffers.give(b);
        if res.is_err() {
            return;
        }
    } else {
        ctx.buffers.give(leftover);
    }
    let (cr, cw) = client.stream.into_split();
    let (ur, uw) = upstream.stream.into_split();
    let last = Cell::new(Instant::now());
    let (b1, b2) = monoio::join!(
        copy_half(cr, uw, ctx.buffers.take(), &last, idle),
        copy_half(ur, cw, ctx.buffers.take(), &last, idle)
    );
    ctx.buffers.give(b1);
    ctx.buffers.give(b2);
}

async fn copy_half(
    mut from: OwnedReadHalf<TcpStream>,
    mut to: OwnedWriteHalf<TcpStream>,
    mut buf: Vec<u8>,
    last: &Cell<Instant>,
    idle: Duration,
) -> Vec<u8> {
    let mut canceller = Canceller::new();
    loop {
        buf.clear();
        let read = from.cancelable_read(buf, canceller.handle());
        let mut read = std::pin::pin!(read);
        let (res, b) = monoio::select! {
            r = &mut read => r,
            _ = monoio::time::sleep(idle) => {
                canceller = canceller.cancel();
                read.await
            }
        };
        buf = b;
        match res {
            Ok(0) => break,
            Ok(_) => {}
            // Cancelled by the idle timer: keep going while the other direction is active.
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) && last.get().elapsed() < idle => {
                continue
            }
            Err(_) => break,
        }
        last.set(Instant::now());
        let (res, b) = to.write_all(buf).await;
        buf = b;
        if res.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    buf
}

/// The tunnel when either side is TLS: one task alternates between the two directions, moving
/// whatever the side that became readable has (a TLS stream cannot be split into halves).
pub(super) async fn run_tls(
    ctx: &WorkerCtx,
    mut client: Timed,
    mut upstream: Timed,
    leftover: Vec<u8>,
    idle: Duration,
) {
    let mut buf = leftover;
    if !buf.is_empty() {
        let (res, b) = upstream.write_all(buf, idle).await;
        buf = b;
        if res.is_err() {
            ctx.buffers.give(buf);
            return;
        }
    }
    ctx.buffers.give(buf);
    let mut buf = ctx.buffers.take();
    // Whether each side may still send: [client, upstream].
    let mut open = [true, true];
    while open[0] || open[1] {
        let from_client = monoio::select! {
            _ = readable(&client, open[0]) => true,
            _ = readable(&upstream, open[1]) => false,
            _ = monoio::time::sleep(idle) => break,
        };
        let (src, dst, side) = if from_client {
            (&mut client, &mut upstream, 0)
        } else {
            (&mut upstream, &mut client, 1)
        };
        buf.clear();
        let (res, b) = src.read_append(buf, idle).await;
        buf = b;
        match res {
            Ok(n) if n > 0 => {
                let (res, b) = dst.write_all(buf, idle).await;
                buf = b;
                if res.is_err() {
                    break;
                }
            }
            Ok(_) => {
                open[side] = false;
                dst.shutdown_write().await;
            }
            Err(_) => break,
        }
    }
    ctx.buffers.give(buf);
}

/// Resolves when `side` has something to read; never, if it has finished sending.
async fn readable(side: &Timed, open: bool) {
    if !open {
        return std::future::pending().await;
    }
    if side.has_buffered() {
        return;
    }
    let _ = side.stream.readable(false).await;
}
