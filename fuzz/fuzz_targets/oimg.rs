//! A whole `.oimg` from bytes: open (header, trailer, manifest, packs, validation), then read
//! every chunk the manifest lists, as extract and verify do.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body is the library's, shared with tests/fuzz_regressions.rs.
fuzz_target!(|data: &[u8]| osimage::fuzzing::oimg(data));
