//! HTTP/2 pieces that sit beside the `h2` library rather than inside it.
//!
//! The I/O layer hands the client's bytes to [`FloodGuard`] before `h2` sees them, so that the
//! floods `h2` does not limit itself (PING, SETTINGS and other control frames, runs of empty
//! DATA frames) end in GOAWAY with ENHANCE_YOUR_CALM rather than unbounded work.

mod flood;

pub use flood::{Flood, FloodGuard, FloodLimits};
