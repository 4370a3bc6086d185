//! Per-core pools: read buffers, and idle upstream connections per endpoint.
//!
//! Both are owned by one worker and never touched by another thread (`RefCell`, not a lock).
//! Buffers are lent to a connection while it has bytes in flight and returned as soon as it goes
//! idle, so idle keep-alive connections pin no memory. Upstream connections are kept LIFO (the
//! most recently used is the most likely to be alive and warm) and bounded per endpoint.

use crate::stream::Timed;
use monoio::net::TcpStream;
use proxy_core::config::PoolSettings;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// A pooled connection idle for longer than this is checked for a close by the upstream before
/// reuse (one non-blocking peek), even for a retryable request. Under load connections come back
/// within microseconds and skip the check.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(500);

/// Free buffers a pool keeps however long they go unused.
const TRIM_FLOOR: usize = 16;

/// Fixed-size read buffers, recycled per worker.
///
/// After a burst the pool would hold as many buffers as the burst had connections in flight,
/// for good. [`BufferPool::trim`], called periodically, frees the ones no request needed during
/// the last period (the lowest the free list fell to), keeping [`TRIM_FLOOR`].
pub(crate) struct BufferPool {
    size: usize,
    keep: usize,
    free: RefCell<Vec<Vec<u8>>>,
    /// The fewest free buffers since the last trim.
    low: std::cell::Cell<usize>,
}

impl BufferPool {
    /// A pool of `size`-byte buffers that keeps at most `keep` free ones.
    pub(crate) fn new(size: usize, keep: usize) -> BufferPool {
        BufferPool {
            size,
            keep,
            free: RefCell::new(Vec::new()),
            low: std::cell::Cell::new(0),
        }
    }

    /// Frees the buffers that sat unused since the last trim, beyond [`TRIM_FLOOR`]; returns
    /// how many.
    pub(crate) fn trim(&self) -> usize {
        let mut free = self.free.borrow_mut();
        let surplus = self.low.get().min(free.len()).saturating_sub(TRIM_FLOOR);
        let keep = free.len() - surplus;
        free.truncate(keep);
        self.low.set(keep);
        surplus
    }

    /// How many free buffers the pool holds.
    #[cfg(test)]
    fn free_count(&self) -> usize {
        self.free.borrow().len()
    }

    /// The size of this pool's buffers.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// An empty buffer with capacity for one full read.
    pub(crate) fn take(&self) -> Vec<u8> {
        let mut free = self.free.borrow_mut();
        let buf = free.pop();
        if free.len() < self.low.get() {
            self.low.set(free.len());
        }
        buf.unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Returns a buffer for reuse.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep && buf.capacity() == self.size {
            buf.clear();
            free.push(buf);
        }
    }
}

struct Idle {
    conn: Timed,
    since: Instant,
}

/// Idle upstream connections, per endpoint id.
pub(crate) struct UpstreamPool {
    settings: PoolSettings,
    idle: RefCell<Vec<VecDeque<Idle>>>,
}

impl UpstreamPool {
    pub(crate) fn new(endpoints: usize, settings: PoolSettings) -> UpstreamPool {
        UpstreamPool {
            settings,
            idle: RefCell::new((0..endpoints).map(|_| VecDeque::new()).collect()),
        }
    }

    /// A live idle connection to endpoint `id`, if the pool has one.
    ///
    /// With `must_be_fresh` (a request that cannot be retried) every candidate is checked for a
    /// close by the upstream first; otherwise only those idle for a while are, and the caller's
    /// retry-once rule covers the rare race.
    pub(crate) fn take(&self, id: usize, now: Instant, must_be_fresh: bool) -> Option<Timed> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(id)?;
        while let Some(entry) = list.pop_back() {
            let age = now.saturating_duration_since(entry.since);
            if age >= self.settings.idle_timeout {
                continue;
            }
            let checked = must_be_fresh || age >= CHECK_AFTER_IDLE;
            if checked && (!still_open(&entry.conn.stream) || entry.conn.has_buffered()) {
                continue;
            }
            return Some(entry.conn);
        }
        None
    }

    /// Keeps `conn` for reuse, dropping the oldest idle connection when the pool is full.
    pub(crate) fn put(&self, id: usize, mut conn: Timed, now: Instant) {
        if self.settings.size == 0 {
            return;
        }
        // A pooled TLS connection keeps its session, not its 16 KiB scratch buffers.
        conn.release_tls_buffers();
        let mut idle = self.idle.borrow_mut();
        let Some(list) = idle.get_mut(id) else { return };
        if list.len() >= self.settings.size {
            list.pop_front();
        }
        list.push_back(Idle { conn, since: now });
    }

    /// Closes connections idle past the idle timeout.
    pub(crate) fn sweep(&self, now: Instant) {
        for list in self.idle.borrow_mut().iter_mut() {
            while list.front().is_some_and(|e| {
                now.saturating_duration_since(e.since) >= self.settings.idle_timeout
            }) {
                list.pop_front();
            }
        }
    }

    /// Closes the idle connections to endpoint `id` (its address changed).
    pub(crate) fn clear_endpoint(&self, id: usize) {
        if let Some(list) = self.idle.borrow_mut().get_mut(id) {
            list.clear();
        }
    }

    /// Closes every idle connection (shutdown).
    pub(crate) fn clear(&self) {
        for list in self.idle.borrow_mut().iter_mut() {
            list.clear();
        }
    }
}

/// Whether an idle connection is still open: a non-blocking peek must find nothing to read.
/// EOF means the upstream closed it; data means it sent something unsolicited; either way the
/// connection is unusable.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: `byte` is a valid one-byte buffer for the duration of the call, and the fd is owned
    // by `stream`, which outlives the call. MSG_PEEK leaves the socket's data untouched.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Opens a new upstream connection with TCP_NODELAY, giving up after `timeout`.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Timed> {
    // Dropping a pending connect on timeout is safe: no data has moved yet, and the socket is
    // closed when the operation is.
    let stream = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    };
    stream.set_nodelay(true)?;
    Ok(Timed::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_frees_only_what_a_whole_period_left_unused() {
        let pool = BufferPool::new(1024, 1024);
        // A burst of 200 connections in flight, then all back.
        let lent: Vec<_> = (0..200).map(|_| pool.take()).collect();
        lent.into_iter().for_each(|b| pool.give(b));
        assert_eq!(pool.free_count(), 200);
        // The burst's period: none sat unused (the pool was empty at the peak).
        pool.trim();
        assert_eq!(pool.free_count(), 200);
        // A quiet period with at most 50 in use: 150 were never needed; the floor stays.
        let lent: Vec<_> = (0..50).map(|_| pool.take()).collect();
        lent.into_iter().for_each(|b| pool.give(b));
        pool.trim();
        assert_eq!(pool.free_count(), 200 - (150 - TRIM_FLOOR));
        // A fully idle period: down to the floor.
        pool.trim();
        assert_eq!(pool.free_count(), TRIM_FLOOR);
        pool.trim();
        assert_eq!(pool.free_count(), TRIM_FLOOR);
    }
}
