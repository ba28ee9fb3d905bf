//! Store packs end to end (docs/STORE.md §13 stage 1): a payload written with
//! `PackOwner::Store` into a `.oimg` whose manifest names the store opens, verifies (pack
//! hashes over the salted headers included) and reads back file by file; the same packs under a manifest
//! that names no store, or another store, are refused naming the pack.

use std::path::{Path, PathBuf};

use super::reader::BlockCache;
use super::reader::PayloadReader;
use super::verify::verify;
use super::writer::{PackOwner, PayloadParams, write_payload_with_base};
use crate::envelope::Unlock;
use crate::format::manifest::{EntryKind, ImageInfo, Manifest};
use crate::format::records::{RECORD_LEN, Trailer};
use crate::format::store_ref::StoreRef;
use crate::image::oimg::OimgWriter;
use crate::progress::NoProgress;

const STORE_ID: [u8; 16] = [0x5A; 16];
const IMAGE_ID: [u8; 16] = [0x1D; 16];

/// A small tree: a file of several blocks (some compressible, some not), small files, a
/// directory, a symlink.
fn make_tree(root: &Path) {
    let mut big = Vec::with_capacity(3 << 20);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while big.len() < (2 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    big.extend(std::iter::repeat_n(b"osimage store packs\n", 50_000).flatten());
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::create_dir(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"web01\n").unwrap();
    std::fs::write(root.join("etc/empty"), b"").unwrap();
    std::os::unix::fs::symlink("hostname", root.join("etc/name")).unwrap();
}

/// Captures `root` into `image` with store packs of STORE_ID; the manifest as written, but
/// for its extensions, which are `extensions`.
fn capture_with_store_packs(
    root: &Path,
    image: &Path,
    extensions: Vec<crate::format::manifest::Extension>,
) -> Manifest {
    let scanned = crate::scan::scan(root, &crate::scan::ScanOptions::default()).unwrap();
    let mut entries = scanned.entries;
    let file = std::fs::File::create(image).unwrap();
    let mut w = OimgWriter::new(file, image, IMAGE_ID, None).unwrap();
    let params = PayloadParams {
        root: scanned.root.clone(),
        level: 3,
        threads: 2,
        keep_going: false,
        image_id: IMAGE_ID,
        packs: PackOwner::Store { store_id: STORE_ID },
        pack_limit: crate::format::records::MAX_PACK_LEN,
        to_read: 0,
        scratch: None,
    };
    let tables = write_payload_with_base(&mut entries, &mut w, &params, None, &NoProgress).unwrap();
    let m = Manifest {
        image: ImageInfo {
            id: IMAGE_ID,
            chunking: crate::payload::chunker::PARAMS,
            ..ImageInfo::default()
        },
        packs: tables.packs,
        blocks: tables.blocks,
        chunks: tables.chunks,
        entries,
        users: scanned.users,
        groups: scanned.groups,
        filesystems: scanned.filesystems,
        extensions,
        ..Manifest::default()
    };
    w.finish(&m).unwrap();
    m
}

/// The `.oimg` at `image` with its packs as they are and `m` as its manifest, written to
/// `out`.
fn with_manifest(image: &Path, m: &Manifest, out: &Path) {
    let bytes = std::fs::read(image).unwrap();
    let mut tail = [0u8; RECORD_LEN];
    tail.copy_from_slice(&bytes[bytes.len() - RECORD_LEN..]);
    let packs_end = Trailer::decode(&tail).unwrap().manifest_offset as usize;
    let mut w = OimgWriter::new(std::fs::File::create(out).unwrap(), out, IMAGE_ID, None).unwrap();
    crate::format::sink::PackSink::write_all(&mut w, &bytes[RECORD_LEN..packs_end]).unwrap();
    w.finish(m).unwrap();
}

fn store_ref(store_id: [u8; 16]) -> crate::format::manifest::Extension {
    StoreRef {
        store_id,
        series: "web01".into(),
        version: "1".into(),
    }
    .to_extension()
    .unwrap()
}

/// The content of the file `name` as the image holds it: its runs' chunks, holes as zeros.
fn read_file(r: &PayloadReader, name: &str) -> Vec<u8> {
    let m = r.manifest();
    let e = m
        .entries
        .iter()
        .find(|e| *e.path == *name.as_bytes())
        .unwrap();
    let EntryKind::File { size, runs } = &e.kind() else {
        panic!("{name} is no file in the image");
    };
    let mut out = vec![0u8; *size as usize];
    let mut cache = BlockCache::new();
    for run in runs {
        let mut at = run.offset as usize;
        for &c in &run.chunks {
            let bytes = r.read_chunk(c, &mut cache).unwrap();
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        }
    }
    out
}

fn open_refusal(path: &Path) -> String {
    match PayloadReader::open(path, &Unlock::none()) {
        Ok(_) => "opened".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_image_of_store_packs_opens_verifies_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src);
    let image: PathBuf = dir.path().join("store.oimg");
    let m = capture_with_store_packs(&src, &image, vec![store_ref(STORE_ID)]);

    // The pack on disk is a store pack: version 3, the flag, no index, the store id, a salt.
    let bytes = std::fs::read(&image).unwrap();
    let head = &bytes[RECORD_LEN..2 * RECORD_LEN];
    assert_eq!(&head[0..8], b"OSIMPACK");
    assert_eq!(&head[8..16], &[3, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(&head[16..32], &STORE_ID);
    assert_ne!(&head[32..48], &[0; 16], "the salt is random, not zero");
    assert_eq!(&head[48..64], &[0; 16]);

    let r = PayloadReader::open(&image, &Unlock::none()).unwrap();
    let report = verify(&r, 2, &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.packs, m.packs.len());
    assert!(report.blocks >= 4, "{} blocks", report.blocks);

    // Every file's bytes, read back through the reader as extract reads them (`payload`
    // may not use `extract`: docs/DESIGN.md's layers).
    for name in ["big.bin", "etc/hostname", "etc/empty"] {
        assert_eq!(
            read_file(&r, name),
            std::fs::read(src.join(name)).unwrap(),
            "{name}"
        );
    }
    let link = m.entries.iter().find(|e| *e.path == *b"etc/name").unwrap();
    assert_eq!(
        link.kind(),
        EntryKind::Symlink {
            target: b"hostname".to_vec()
        }
    );

    // The pack hash covers the salt: a salt changed on disk opens (the header is well
    // formed and names the store) but fails `verify`, naming the pack by position and id.
    let mut salted = bytes.clone();
    salted[RECORD_LEN + 40] ^= 1;
    let resalted = dir.path().join("resalted.oimg");
    std::fs::write(&resalted, &salted).unwrap();
    let r = PayloadReader::open(&resalted, &Unlock::none()).unwrap();
    let report = verify(&r, 2, &NoProgress).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("pack 0 (") && p.contains(") is damaged")),
        "{:?}",
        report.problems
    );
}

#[test]
fn store_packs_need_the_manifest_to_name_their_store() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src);
    let image = dir.path().join("store.oimg");
    let m = capture_with_store_packs(&src, &image, vec![store_ref(STORE_ID)]);
    assert_eq!(open_refusal(&image), "opened");

    let no_store = dir.path().join("no-store.oimg");
    with_manifest(
        &image,
        &Manifest {
            extensions: vec![],
            ..m.clone()
        },
        &no_store,
    );
    let e = open_refusal(&no_store);
    assert!(
        e.contains("pack 0: is a store pack, but the image names no store"),
        "{e}"
    );

    let other = dir.path().join("other-store.oimg");
    let m_other = Manifest {
        extensions: vec![store_ref([0x77; 16])],
        ..m.clone()
    };
    with_manifest(&image, &m_other, &other);
    let e = open_refusal(&other);
    assert!(e.contains("pack 0: is a pack of another store"), "{e}");

    // A version of the store record this osimage does not know is refused as required.
    let mut newer = store_ref(STORE_ID);
    newer.version = 2;
    let future = dir.path().join("future.oimg");
    with_manifest(
        &image,
        &Manifest {
            extensions: vec![newer],
            ..m
        },
        &future,
    );
    let e = open_refusal(&future);
    assert!(e.contains("feature \"store\" version 2"), "{e}");
}

#[test]
fn image_packs_under_a_manifest_naming_a_store_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), b"plain image packs").unwrap();
    let image = dir.path().join("plain.oimg");
    let scanned = crate::scan::scan(&src, &crate::scan::ScanOptions::default()).unwrap();
    let mut entries = scanned.entries;
    let mut w = OimgWriter::new(
        std::fs::File::create(&image).unwrap(),
        &image,
        IMAGE_ID,
        None,
    )
    .unwrap();
    let params = PayloadParams {
        root: scanned.root.clone(),
        level: 3,
        threads: 1,
        keep_going: false,
        image_id: IMAGE_ID,
        packs: PackOwner::Image,
        pack_limit: crate::format::records::MAX_PACK_LEN,
        to_read: 0,
        scratch: None,
    };
    let tables = write_payload_with_base(&mut entries, &mut w, &params, None, &NoProgress).unwrap();
    let m = Manifest {
        image: ImageInfo {
            id: IMAGE_ID,
            ..ImageInfo::default()
        },
        packs: tables.packs,
        blocks: tables.blocks,
        chunks: tables.chunks,
        entries,
        filesystems: scanned.filesystems,
        ..Manifest::default()
    };
    w.finish(&m).unwrap();
    // Written as before store packs existed: a version-2 header with index 0 and the image id.
    let bytes = std::fs::read(&image).unwrap();
    assert_eq!(
        &bytes[RECORD_LEN + 8..RECORD_LEN + 16],
        &[2, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(&bytes[RECORD_LEN + 16..RECORD_LEN + 32], &IMAGE_ID);
    assert_eq!(open_refusal(&image), "opened");

    let named = dir.path().join("named.oimg");
    let m = Manifest {
        extensions: vec![store_ref(STORE_ID)],
        ..m
    };
    with_manifest(&image, &m, &named);
    let e = open_refusal(&named);
    assert!(e.contains("pack 0: is an image's own pack"), "{e}");
}
