//! Chunked bodies: decode, re-encode the payload, decode again and compare.
//! The property lives in `../checks.rs`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::chunked(data);
});
