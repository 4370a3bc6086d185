//! HTTP/2 pieces that sit beside the `h2` library rather than inside it: the translation
//! between HTTP/2 requests and the HTTP/1.1 heads the rest of Ringway works with, and the
//! flood guard.
//!
//! The I/O layer hands the client's bytes to [`FloodGuard`] before `h2` sees them, so that the
//! floods `h2` does not limit itself (PING, SETTINGS and other control frames, runs of empty
//! DATA frames) end in GOAWAY with ENHANCE_YOUR_CALM rather than unbounded work.

mod flood;
mod request;

pub use flood::{Flood, FloodGuard, FloodLimits};
pub use request::{response_fields, write_http1_request, PseudoHeaders, RequestBody};
