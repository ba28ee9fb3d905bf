//! `carry_blocks` on the host (docs/STORE.md §8): an image's blocks carried into store packs
//! make an image that verifies and reads back as the original, its index records naming each
//! chunk by its whole hash; carried again against that index, every block is referenced and
//! nothing is carried; against an index holding part of it, only the rest is carried; a
//! damaged chunk stops the walk naming the image.

use std::path::Path;

use super::*;
use crate::envelope::Unlock;
use crate::format::manifest::{EntryKind, ImageInfo, Manifest};
use crate::format::sink::PackSink;
use crate::format::store_ref::StoreRef;
use crate::image::oimg::OimgWriter;
use crate::payload::reader::BlockCache;
use crate::payload::verify::verify;
use crate::payload::writer::{PayloadParams, write_payload_with_base};
use crate::progress::NoProgress;
use crate::store::objects::{IndexBlock, IndexChunk, IndexPack, StoreIndex};

const STORE_ID: [u8; 16] = [0x5A; 16];
const IMAGE_ID: [u8; 16] = [0x1D; 16];

/// Files of several blocks, some compressible and some not, and small ones.
fn make_tree(root: &Path) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for n in 0..4 {
        let mut noise = Vec::with_capacity(1 << 20);
        while noise.len() < (600 << 10) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(root.join(format!("noise{n}.bin")), &noise).unwrap();
    }
    let text = b"osimage import carries blocks\n".repeat(20_000);
    std::fs::write(root.join("text.txt"), text).unwrap();
    std::fs::write(root.join("small"), b"small file\n").unwrap();
}

/// Captures `root` into the plain `.oimg` `image` with packs of at most `limit` bytes.
fn capture(root: &Path, image: &Path, limit: u64) -> Manifest {
    let scanned = crate::scan::scan(root, &crate::scan::ScanOptions::default()).unwrap();
    let mut entries = scanned.entries;
    let mut w =
        OimgWriter::new(std::fs::File::create(image).unwrap(), image, IMAGE_ID, None).unwrap();
    let params = PayloadParams {
        root: scanned.root.clone(),
        level: 3,
        threads: 2,
        keep_going: false,
        image_id: IMAGE_ID,
        packs: PackOwner::Image,
        pack_limit: limit,
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
        filesystems: scanned.filesystems,
        ..Manifest::default()
    };
    w.finish(&m).unwrap();
    m
}

/// What a store's uploader would keep: each pack's bytes and its index record.
#[derive(Default)]
struct Collect {
    packs: Vec<(PackRecord, Vec<u8>)>,
    index: Vec<IndexPack>,
    current: Vec<u8>,
    blocks: Vec<IndexBlock>,
}

impl PackSink for Collect {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        self.current.extend_from_slice(bytes);
        Ok(())
    }
    fn begin_pack(&mut self, _: u32) -> Result<(), PayloadError> {
        self.current.clear();
        Ok(())
    }
    fn block_placed(&mut self, rec: &BlockRecord, chunks: &[NewChunk]) -> Result<(), PayloadError> {
        self.blocks
            .push(crate::store::upload::index_block(rec, chunks));
        Ok(())
    }
    fn end_pack(&mut self, rec: &PackRecord) -> Result<(), PayloadError> {
        assert_eq!(self.current.len() as u64, rec.len);
        self.packs
            .push((rec.clone(), std::mem::take(&mut self.current)));
        self.index.push(IndexPack {
            id: rec.hash,
            len: rec.len,
            blocks: std::mem::take(&mut self.blocks),
        });
        Ok(())
    }
}

/// `m` with `tables` and a `store` record, written as a `.oimg` at `out` whose packs are the
/// bytes `packs` gives for each pack id.
fn write_store_image(
    m: &Manifest,
    t: &ImportedTables,
    packs: &HashMap<[u8; 32], Vec<u8>>,
    out: &Path,
) {
    let mut m = m.clone();
    m.packs = t.packs.clone();
    m.blocks = t.blocks.clone();
    m.chunks = t.chunks.clone();
    m.extensions.push(
        StoreRef {
            store_id: STORE_ID,
            series: "web01".into(),
            version: "1".into(),
        }
        .to_extension()
        .unwrap(),
    );
    let mut w = OimgWriter::new(std::fs::File::create(out).unwrap(), out, IMAGE_ID, None).unwrap();
    for (i, p) in m.packs.iter().enumerate() {
        w.begin_pack(i as u32).unwrap();
        w.write_all(&packs[&p.hash]).unwrap();
        w.end_pack(p).unwrap();
    }
    w.finish(&m).unwrap();
}

/// Every file of `r` equals the one under `root`.
fn assert_files(r: &PayloadReader, root: &Path) {
    let mut cache = BlockCache::new();
    for e in &r.manifest().entries {
        let EntryKind::File { size, runs } = &e.kind() else {
            continue;
        };
        let mut out = vec![0u8; *size as usize];
        for run in runs {
            let mut at = run.offset as usize;
            for &c in &run.chunks {
                let bytes = r.read_chunk(c, &mut cache).unwrap();
                out[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            }
        }
        let name = String::from_utf8_lossy(e.path).into_owned();
        assert_eq!(out, std::fs::read(root.join(&name)).unwrap(), "{name}");
    }
}

fn carry(r: &PayloadReader, index: Vec<IndexPack>, sink: &mut Collect) -> ImportedTables {
    let base = StoreBase::new(&[("index/x".into(), StoreIndex { packs: index })], None).unwrap();
    carry_blocks(r, &base, sink, STORE_ID, 400 << 10, &NoProgress).unwrap()
}

#[test]
fn carried_blocks_read_back_and_a_second_import_references_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src);
    let image = dir.path().join("plain.oimg");
    let m = capture(&src, &image, 1 << 20);
    let r = PayloadReader::open(&image, &Unlock::default()).unwrap();

    // Into an empty store: every used block carried, unchanged, into packs of ≤ 400 KiB.
    let mut first = Collect::default();
    let t = carry(&r, Vec::new(), &mut first);
    let used = m.blocks.len() as u64 - t.counts.unused_blocks;
    assert_eq!(t.counts.blocks_read, used);
    assert_eq!(t.counts.carried_blocks, used);
    assert_eq!(
        (t.counts.referenced_blocks, t.counts.referenced_packs),
        (0, 0)
    );
    assert!(first.packs.len() >= 3, "{} packs", first.packs.len());
    assert_eq!(t.packs.len(), first.packs.len());
    let mut old: Vec<[u8; 32]> = m.blocks.iter().map(|b| b.hash).collect();
    let mut new: Vec<[u8; 32]> = t.blocks.iter().map(|b| b.hash).collect();
    old.sort();
    new.sort();
    assert_eq!(old, new, "the same blocks, byte for byte");
    // The index names every chunk by its whole BLAKE3, the manifest's id its first 16 bytes.
    let listed: Vec<&IndexChunk> = first
        .index
        .iter()
        .flat_map(|p| &p.blocks)
        .flat_map(|b| &b.chunks)
        .collect();
    assert_eq!(listed.len(), m.chunks.len());
    for c in &t.chunks {
        assert!(listed.iter().any(|l| l.id.id() == c.id), "chunk {:?}", c.id);
    }
    let bytes: HashMap<[u8; 32], Vec<u8>> = first
        .packs
        .iter()
        .map(|(rec, b)| (rec.hash, b.clone()))
        .collect();
    let out = dir.path().join("store.oimg");
    write_store_image(&m, &t, &bytes, &out);
    let back = PayloadReader::open(&out, &Unlock::default()).unwrap();
    let report = verify(&back, 2, &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_files(&back, &src);

    // Against that index: everything referenced, nothing carried, the same packs listed.
    let mut second = Collect::default();
    let again = carry(&r, first.index.clone(), &mut second);
    assert!(second.packs.is_empty(), "no pack written");
    assert_eq!(again.counts.carried_blocks, 0);
    assert_eq!(again.counts.referenced_blocks, used);
    assert_eq!(again.counts.referenced_packs, first.packs.len() as u64);
    let out = dir.path().join("again.oimg");
    write_store_image(&m, &again, &bytes, &out);
    let back = PayloadReader::open(&out, &Unlock::default()).unwrap();
    assert!(verify(&back, 2, &NoProgress).unwrap().ok());
    assert_files(&back, &src);

    // Against an index of the first pack alone: its blocks referenced, the rest carried.
    let mut third = Collect::default();
    let part = carry(&r, first.index[..1].to_vec(), &mut third);
    let in_first = first.index[0].blocks.len() as u64;
    assert_eq!(part.counts.referenced_blocks, in_first);
    assert_eq!(part.counts.referenced_packs, 1);
    assert_eq!(part.counts.carried_blocks, used - in_first);
    let mut all = bytes.clone();
    all.extend(third.packs.iter().map(|(rec, b)| (rec.hash, b.clone())));
    let out = dir.path().join("part.oimg");
    write_store_image(&m, &part, &all, &out);
    let back = PayloadReader::open(&out, &Unlock::default()).unwrap();
    assert!(verify(&back, 2, &NoProgress).unwrap().ok());
    assert_files(&back, &src);
}

#[test]
fn a_chunk_that_is_not_its_id_stops_the_import_naming_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src);
    let image = dir.path().join("plain.oimg");
    let mut m = capture(&src, &image, 1 << 20);
    // The same packs under a manifest whose first chunk claims another id.
    m.chunks[0].id = crate::format::manifest::ChunkId([7; 16]);
    let bytes = std::fs::read(&image).unwrap();
    let mut tail = [0u8; crate::format::records::RECORD_LEN];
    tail.copy_from_slice(&bytes[bytes.len() - crate::format::records::RECORD_LEN..]);
    let end = crate::format::records::Trailer::decode(&tail)
        .unwrap()
        .manifest_offset as usize;
    let forged = dir.path().join("forged.oimg");
    let mut w = OimgWriter::new(
        std::fs::File::create(&forged).unwrap(),
        &forged,
        IMAGE_ID,
        None,
    )
    .unwrap();
    w.write_all(&bytes[crate::format::records::RECORD_LEN..end])
        .unwrap();
    w.finish(&m).unwrap();
    let r = PayloadReader::open(&forged, &Unlock::default()).unwrap();
    let base = StoreBase::new(&[], None).unwrap();
    let e = carry_blocks(
        &r,
        &base,
        &mut Collect::default(),
        STORE_ID,
        400 << 10,
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("forged.oimg") && e.contains("chunk 0 is damaged"),
        "{e}"
    );
}
