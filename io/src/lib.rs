//! Ringway's I/O layer: one monoio runtime per core, SO_REUSEPORT listeners, the connection
//! driver that feeds bytes to `proxy-core` and executes what it decides, per-core upstream pools,
//! timers and shutdown.
//!
//! Every buffer and every syscall lives here; no protocol decision does. Nothing on the request
//! path is shared across cores: each worker owns its listener sockets, pools, balancer state,
//! buffers and counters. What crosses threads is either immutable (`Arc<Config>`) or has one
//! writer (the counters in [`metrics`], read by the metrics endpoint). This crate has no
//! application concerns: no CLI, no config files.

pub mod access_log;
pub mod cache;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod resolver;
pub mod runtime;
pub mod shutdown;
pub mod tls;
pub mod upstreams;
pub mod worker;

mod balance;
mod idle;
mod pool;
mod proxy;
mod stream;

pub use runtime::{DriverInfo, RingSetup};
pub use worker::{spawn_workers, WorkerHandle, WorkerSpec};
