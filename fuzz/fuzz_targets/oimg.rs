//! A whole `.oimg` from bytes: open (header, trailer, manifest, packs, validation), then read
//! every chunk the manifest lists, as extract and verify do.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use osimage::Unlock;
use osimage::{BlockCache, PayloadReader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut f) = tempfile::NamedTempFile::new() else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    let Ok(r) = PayloadReader::open(f.path(), &Unlock::none()) else {
        return;
    };
    let mut cache = BlockCache::new();
    for i in 0..r.manifest().chunks.len() {
        let _ = r.read_chunk(i as u32, &mut cache);
    }
});
