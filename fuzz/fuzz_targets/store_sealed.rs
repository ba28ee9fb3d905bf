//! An encrypted store's sealed objects under a fixed key (docs/STORE.md §6.1).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body is the library's, shared with tests/fuzz_regressions.rs.
fuzz_target!(|data: &[u8]| osimage::fuzzing::store_sealed(data));
