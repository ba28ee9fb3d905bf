//! The manifest frame reader and the structural checks (FORMAT.md §4, §5, §7).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((m, _)) = osimage::format::frame::decode_manifest(data) {
        let _ = osimage::format::validate::validate(&m);
    }
});
