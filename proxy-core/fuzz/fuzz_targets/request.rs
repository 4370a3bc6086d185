//! Request heads: parse, forward as the proxy would, re-parse and compare.
//! The property lives in `../checks.rs`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::request(data);
});
