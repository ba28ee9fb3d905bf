//! The store's condemnation, wait list and sweep record decoders (docs/STORE.md §2.7).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body is the library's, shared with tests/fuzz_regressions.rs.
fuzz_target!(|data: &[u8]| osimage::fuzzing::store_prune(data));
