//! The manifest column decoder alone (FORMAT.md §5.7, versions 4 and 3): a decompressed body
//! of columns, then the structural checks on what it decodes. The `manifest` target reaches
//! it only through a frame whose hash and zstd the fuzzer rarely gets right.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body is the library's, shared with tests/fuzz_regressions.rs.
fuzz_target!(|data: &[u8]| osimage::fuzzing::manifest_columns(data));
