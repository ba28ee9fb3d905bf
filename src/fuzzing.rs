//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`, docs/SECURITY.md): one function
//! per reader of hostile input, called by the fuzzer with its bytes and, on the inputs it
//! once found, by `tests/fuzz_regressions.rs` — the same code, so a regression test cannot
//! drift from what was fuzzed. Each ignores the result: the fuzzer looks for panics, hangs
//! and runaway allocations, not for a verdict.

use std::io::Write;

use crate::envelope::Unlock;
use crate::iso::IsoReader;
use crate::payload::reader::{BlockCache, PayloadReader};

/// The manifest frame reader and the structural checks (FORMAT.md §4, §5, §7).
pub fn manifest(data: &[u8]) {
    if let Ok((m, _)) = crate::format::frame::decode_manifest(data) {
        let _ = crate::format::validate::validate(&m);
    }
}

/// The column decoder alone (FORMAT.md §5.7), on a decompressed body, as version 4 and as
/// version 3 (16- and 32-byte chunk ids): no hash or zstd in front of it, so the fuzzer's
/// bytes reach every column; then the structural checks on what it decodes.
pub fn manifest_columns(data: &[u8]) {
    use crate::format::columns::{VERSION, VERSION_32, decode};
    for version in [VERSION, VERSION_32] {
        if let Ok(m) = decode(data, version) {
            let _ = crate::format::validate::validate(&m);
        }
    }
}

/// The layout record reader (FORMAT.md §9) and what the restore derives from it: every size
/// and sector in the record is hostile input to the planner.
pub fn layout(data: &[u8]) {
    if let Ok(layout) = crate::layout::decode(data) {
        let _ = crate::layout::describe(&layout);
        for size in [1 << 20, 8 << 30, u64::MAX] {
            let _ = crate::restore::RestorePlan::new(&layout, "/dev/vda", size, 512);
        }
    }
}

/// A whole `.oimg` from bytes: open (header, trailer, manifest, packs, validation), then read
/// every chunk the manifest lists, as extract and verify do.
pub fn oimg(data: &[u8]) {
    let Some(f) = to_file(data) else { return };
    let Ok(r) = PayloadReader::open(f.path(), &Unlock::none()) else {
        return;
    };
    let mut cache = BlockCache::new();
    for i in 0..r.manifest().chunks.len() {
        let _ = r.read_chunk(i as u32, &mut cache);
    }
}

/// The ISO 9660 reader (volume descriptors, directory records, Rock Ridge, Joliet) and the
/// payload lookup inside an ISO.
pub fn iso(data: &[u8]) {
    let Some(f) = to_file(data) else { return };
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
}

/// A store's `config` object (docs/STORE.md §2.1): frame, bounded body, value checks.
pub fn store_config(data: &[u8]) {
    let _ = crate::store::objects::decode_config("config", data);
}

/// An index object (STORE.md §2.4): frame, bounded zstd body, the packs' tiling.
pub fn store_index(data: &[u8]) {
    let _ = crate::store::objects::decode_index("index", data, None, None);
}

/// A lock object (STORE.md §2.7): frame, bounded body, value checks.
pub fn store_lock(data: &[u8]) {
    let _ = crate::store::objects::decode_lock("lock", data, None);
}

/// A prune's objects (STORE.md §2.7): a condemnation, its wait list, its sweep record (the
/// kind byte picks which decoder gets past the header).
pub fn store_prune(data: &[u8]) {
    let _ = crate::store::objects::decode_condemnation("prune", data, None);
    let _ = crate::store::objects::decode_wait("prune.wait", data, None);
    let _ = crate::store::objects::decode_swept("prune.swept", data, None);
}

/// A pin (STORE.md §2.7): frame, bounded body, value checks.
pub fn store_pin(data: &[u8]) {
    let _ = crate::store::objects::decode_pin("pin", data, None);
}

/// A version object (STORE.md §2.5): prefix, head, frame hash, then the manifest it holds,
/// as `store ls -l` and the readers take it.
pub fn store_version(data: &[u8]) {
    if let Ok((_, frame)) = crate::store::objects::decode_version("version", data) {
        manifest(frame);
    }
}

/// The key every sealed fuzz input is made with (`fuzz/seeds/store_sealed/`): a fuzzer
/// cannot forge a tag, so inputs sealed under it are what reach the decoders behind the
/// seal.
pub fn fuzz_store_keys() -> crate::store::crypt::StoreKeys {
    crate::store::crypt::StoreKeys::new(crate::envelope::DataKey([0x5e; 32]), [0x1d; 16])
}

/// An encrypted store's sealed objects (docs/STORE.md §6.1) under [`fuzz_store_keys`]: every
/// small object's frame opened then decoded by its kind, a sealed version object's head and
/// frame opened and its manifest read, and the header of a key object (`store key list`).
pub fn store_sealed(data: &[u8]) {
    use crate::store::objects as o;
    let k = fuzz_store_keys();
    let _ = o::decode_index("index", data, None, Some(&k));
    let _ = o::decode_lock("lock", data, Some(&k));
    let _ = o::decode_condemnation("prune", data, Some(&k));
    let _ = o::decode_wait("prune.wait", data, Some(&k));
    let _ = o::decode_swept("prune.swept", data, Some(&k));
    let _ = o::decode_pin("pin", data, Some(&k));
    if let Ok((_, frame)) = o::version::decode_version_sealed("version", data, &k) {
        manifest(&frame);
    }
    let _ = crate::envelope::keys::opens_with_passphrase(data);
}

/// The readers open files: `data` in a temporary one.
fn to_file(data: &[u8]) -> Option<tempfile::NamedTempFile> {
    let mut f = tempfile::NamedTempFile::new().ok()?;
    f.write_all(data).ok()?;
    Some(f)
}
