//! Store packs (docs/STORE.md §2.3, §13 stage 1; FORMAT.md §3 version 3, §14): an image
//! captured by the binary is rebuilt by hand with store-pack headers and the `store`
//! extension, as a capture into a store will lay them out; `verify` and `extract` of the
//! binary accept it and give back the captured files, and refuse it, naming the pack, when
//! its manifest names no store or another one. The rebuilding uses only the public `format`
//! module and the byte tables of FORMAT.md.

use crate::common;

use common::fixture::{MIB, Rng, text};
use common::osimage;
use osimage::format::frame::{decode_manifest, encode_manifest};
use osimage::format::manifest::Manifest;
use osimage::format::records::{PackHeader, RECORD_LEN, Trailer};
use osimage::format::store_ref::StoreRef;
use std::ffi::OsStr;
use std::path::Path;

const STORE_ID: [u8; 16] = [0xA5; 16];

/// The captured `.oimg` at `plain` rewritten to `out` with store packs of STORE_ID (a
/// different salt each), their pack hashes recomputed (FORMAT.md §3: the header and the
/// block hashes), and `extensions` added to the manifest.
fn rebuild_with_store_packs(plain: &Path, out: &Path, extensions: Vec<StoreRef>) {
    let bytes = std::fs::read(plain).expect("read image");
    let mut tail = [0u8; RECORD_LEN];
    tail.copy_from_slice(&bytes[bytes.len() - RECORD_LEN..]);
    let trailer = Trailer::decode(&tail).expect("trailer");
    let frame_at = trailer.manifest_offset as usize;
    let frame = &bytes[frame_at..frame_at + trailer.manifest_len as usize];
    let (mut m, version): (Manifest, u16) = decode_manifest(frame).expect("manifest");
    assert_eq!(version, osimage::format::manifest::MANIFEST_VERSION);

    let mut out_bytes = bytes[..frame_at].to_vec();
    let mut at = RECORD_LEN;
    for (i, pack) in m.packs.iter_mut().enumerate() {
        let header = PackHeader::Store {
            store_id: STORE_ID,
            salt: [i as u8 + 1; 16],
        }
        .encode();
        out_bytes[at..at + RECORD_LEN].copy_from_slice(&header);
        let mut blocks: Vec<_> = m.blocks.iter().filter(|b| b.pack as usize == i).collect();
        blocks.sort_by_key(|b| b.offset);
        let mut h = blake3::Hasher::new();
        h.update(&header);
        for b in blocks {
            h.update(&b.hash);
        }
        pack.hash = *h.finalize().as_bytes();
        at += pack.len as usize;
    }
    assert_eq!(at, frame_at, "packs lie back to back up to the manifest");
    m.extensions.extend(
        extensions
            .iter()
            .map(|r| r.to_extension().expect("store record")),
    );
    let frame = encode_manifest(&m).expect("encode manifest");
    let trailer = Trailer {
        manifest_offset: frame_at as u64,
        manifest_len: frame.len() as u64,
        image_id: trailer.image_id,
    };
    out_bytes.extend_from_slice(&frame);
    out_bytes.extend_from_slice(&trailer.encode());
    std::fs::write(out, out_bytes).expect("write rebuilt image");
}

fn store(store_id: [u8; 16]) -> StoreRef {
    StoreRef {
        store_id,
        series: "web01".into(),
        version: "2026-12-06".into(),
    }
}

fn verify(image: &Path) -> common::Run {
    osimage([OsStr::new("verify"), image.as_os_str()])
}

#[test]
fn a_hand_built_store_pack_image_verifies_and_extracts_and_needs_its_store_record() {
    let dir = common::scratch();
    let root = dir.path().join("src");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    let incompressible = Rng::new(22).bytes(3 * MIB as usize);
    std::fs::write(root.join("data.bin"), &incompressible).expect("write");
    std::fs::write(root.join("etc/words.txt"), text(22, 400_000)).expect("write");
    std::fs::write(root.join("etc/hostname"), b"web01\n").expect("write");
    let plain = dir.path().join("plain.oimg");
    common::capture(&root, &plain, &[]);

    let shared = dir.path().join("store.oimg");
    rebuild_with_store_packs(&plain, &shared, vec![store(STORE_ID)]);
    verify(&shared).ok();
    let out = dir.path().join("out");
    common::extract(&shared, &out, &[]).ok();
    for name in ["data.bin", "etc/words.txt", "etc/hostname"] {
        assert!(
            std::fs::read(out.join(name)).expect("extracted")
                == std::fs::read(root.join(name)).expect("source"),
            "{name} differs after extract"
        );
    }

    // The same packs, but the manifest names no store, or another store: refused on open,
    // naming the image and the pack.
    let unnamed = dir.path().join("unnamed.oimg");
    rebuild_with_store_packs(&plain, &unnamed, vec![]);
    verify(&unnamed)
        .fails()
        .mentions(b"pack 0: is a store pack, but the image names no store");
    let other = dir.path().join("other.oimg");
    rebuild_with_store_packs(&plain, &other, vec![store([0x11; 16])]);
    verify(&other)
        .fails()
        .mentions(b"pack 0: is a pack of another store");
    // The image's own packs under a manifest that names a store.
    let plain_named = dir.path().join("plain-named.oimg");
    let bytes = std::fs::read(&plain).expect("read");
    let mut tail = [0u8; RECORD_LEN];
    tail.copy_from_slice(&bytes[bytes.len() - RECORD_LEN..]);
    let t = Trailer::decode(&tail).expect("trailer");
    let frame = &bytes[t.manifest_offset as usize..(t.manifest_offset + t.manifest_len) as usize];
    let (mut m, _) = decode_manifest(frame).expect("manifest");
    m.extensions
        .push(store(STORE_ID).to_extension().expect("store record"));
    let frame = encode_manifest(&m).expect("encode");
    let mut named = bytes[..t.manifest_offset as usize].to_vec();
    named.extend_from_slice(&frame);
    named.extend_from_slice(
        &Trailer {
            manifest_len: frame.len() as u64,
            ..t
        }
        .encode(),
    );
    std::fs::write(&plain_named, named).expect("write");
    verify(&plain_named)
        .fails()
        .mentions(b"pack 0: is an image's own pack");
}
