//! The ISO 9660 reader (volume descriptors, directory records, Rock Ridge, Joliet) and the
//! payload lookup inside an ISO.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use osimage::iso::IsoReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut f) = tempfile::NamedTempFile::new() else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    let Ok(iso) = IsoReader::open(f.path()) else {
        return;
    };
    if let Ok(entries) = iso.read_dir("/") {
        for e in entries.iter().take(64) {
            let _ = iso.read_dir(&e.name);
            let _ = iso.lookup(&e.name);
        }
    }
    let _ = iso.lookup("osimage/manifest.osm");
    let _ = iso.lookup("osimage/packs/pack-000000.osp");
});
