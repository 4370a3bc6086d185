//! Ringway's sans-IO core.
//!
//! Everything here is protocol and policy logic that works on byte slices handed in by the I/O
//! layer (`proxy-io`): HTTP/1 head parsing into spans, body framing state machines, header
//! rewriting, the HTTP/2 flood guard, routing, load-balancer picks and the typed configuration
//! model. This crate must never depend on a runtime, a socket, TLS, the file system or the
//! clock: time, when needed, is a parameter. That keeps every piece testable in memory, split at
//! every byte boundary.

pub mod cache;
pub mod compress;
pub mod config;
pub mod error;
pub mod h2;
pub mod http1;
pub mod lb;
pub mod rewrite;
pub mod route;

pub use error::Status;
