//! Building the per-worker monoio runtime on the best I/O driver the kernel allows.
//!
//! The ring is set up for a single owner thread: SINGLE_ISSUER + DEFER_TASKRUN, which on the
//! development machine cut CPU per proxied request from 16.8 µs (monoio's default ring) to
//! 12.2 µs, below epoll's 12.5 µs (DESIGN.md §6). Older kernels refuse those flags, so the
//! builder falls back flag by flag: DEFER_TASKRUN, then COOP_TASKRUN, then a plain ring, then
//! epoll (unless io_uring was demanded), and reports which one runs.

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use proxy_core::config::IoDriver;
use std::future::Future;
use std::io;

/// How an io_uring ring was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSetup {
    /// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN: the fast path.
    DeferTaskrun,
    /// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN (kernels before 6.1).
    CoopTaskrun,
    /// No setup flags (kernels before 5.19).
    Plain,
}

impl RingSetup {
    /// The flags as they appear in logs and metrics.
    pub const fn flags(self) -> &'static str {
        match self {
            RingSetup::DeferTaskrun => "single_issuer|defer_taskrun",
            RingSetup::CoopTaskrun => "single_issuer|coop_taskrun",
            RingSetup::Plain => "none",
        }
    }

    fn builder(self) -> io_uring::Builder {
        let mut b = io_uring::IoUring::builder();
        match self {
            RingSetup::DeferTaskrun => {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            RingSetup::CoopTaskrun => {
                b.setup_single_issuer().setup_coop_taskrun();
            }
            RingSetup::Plain => {}
        }
        b
    }
}

/// The driver a worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverInfo {
    /// io_uring with these setup flags.
    Uring(RingSetup),
    /// epoll (monoio's legacy driver).
    Epoll,
}

impl DriverInfo {
    /// `io_uring` or `epoll`.
    pub const fn name(self) -> &'static str {
        match self {
            DriverInfo::Uring(_) => "io_uring",
            DriverInfo::Epoll => "epoll",
        }
    }

    /// The ring setup flags, or `none` on epoll.
    pub const fn flags(self) -> &'static str {
        match self {
            DriverInfo::Uring(r) => r.flags(),
            DriverInfo::Epoll => "none",
        }
    }
}

/// Builds a runtime on the current thread and runs `make(driver)` to completion on it.
///
/// `Auto` tries io_uring with each setup in turn, then epoll; `Uring` fails instead of falling
/// back to epoll; `Epoll` goes straight to epoll. In `Auto` mode the environment variable
/// `MONOIO_FORCE_LEGACY_DRIVER=1` also selects epoll, as it does for monoio itself.
pub fn run<F, Fut>(choice: IoDriver, entries: u32, make: F) -> io::Result<DriverInfo>
where
    F: FnOnce(DriverInfo) -> Fut,
    Fut: Future<Output = ()>,
{
    let want_uring = match choice {
        IoDriver::Epoll => false,
        IoDriver::Uring => true,
        IoDriver::Auto => monoio::utils::detect_uring(),
    };
    if want_uring {
        let mut last_error = None;
        for setup in [
            RingSetup::DeferTaskrun,
            RingSetup::CoopTaskrun,
            RingSetup::Plain,
        ] {
            let built = RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(entries)
                .uring_builder(setup.builder())
                .enable_timer()
                .build();
            match built {
                Ok(mut rt) => {
                    let info = DriverInfo::Uring(setup);
                    rt.block_on(make(info));
                    return Ok(info);
                }
                Err(e) => {
                    tracing::debug!(flags = setup.flags(), error = %e, "io_uring setup refused, trying the next");
                    last_error = Some(e);
                }
            }
        }
        if choice == IoDriver::Uring {
            let e = last_error.unwrap_or_else(|| io::Error::other("io_uring unavailable"));
            return Err(io::Error::new(
                e.kind(),
                format!("io_uring cannot be used: {e}"),
            ));
        }
        tracing::warn!("io_uring unavailable, falling back to epoll");
    } else if choice == IoDriver::Uring {
        return Err(io::Error::other(
            "io_uring cannot be used: the kernel lacks it or the operations Ringway needs \
             (or MONOIO_FORCE_LEGACY_DRIVER is set)",
        ));
    }
    let mut rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()?;
    rt.block_on(make(DriverInfo::Epoll));
    Ok(DriverInfo::Epoll)
}

/// The CPUs this process may run on (its affinity mask), in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Opts this process out of transparent huge pages.
///
/// mimalloc asks for huge pages on its arena, so on hosts where THP is in `madvise` mode (the
/// usual default) every thread's first small allocations fault in a whole 2 MiB page: 8 MiB of
/// resident memory for an idle single-worker proxy, 12 MiB instead of 4.6 MiB. The proxy's hot
/// data (a few buffers and connection states per core) gains nothing measurable from huge pages
/// (see the idle-connection and keep-alive benchmarks), so it does without them. Call it first
/// thing in `main`: the allocator has by then faulted in two huge pages for its own set-up (4 MiB,
/// which stay), but no worker heap has. Failure (an old kernel) is harmless.
pub fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes an integer argument and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
