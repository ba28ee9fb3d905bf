//! The layout record reader (FORMAT.md §9) and what the restore derives from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body is the library's, shared with tests/fuzz_regressions.rs.
fuzz_target!(|data: &[u8]| osimage::fuzzing::layout(data));
