//! The ISO 9660 reader (volume descriptors, directory records, Rock Ridge, Joliet) and the
//! payload lookup inside an ISO.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body is the library's, shared with tests/fuzz_regressions.rs.
fuzz_target!(|data: &[u8]| osimage::fuzzing::iso(data));
