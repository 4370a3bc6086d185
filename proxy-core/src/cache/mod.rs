//! The HTTP cache, pure: RFC 9111 semantics (`control`, `date`, `key`, `policy`), the stored and
//! served forms of response heads (`head`), and the per-core store (`store`). No clock is read
//! here: time comes in as seconds since the epoch.

pub mod control;
pub mod date;
pub mod head;
pub mod key;
pub mod policy;
pub mod store;
