//! A capture into a fake store: a small tree written once with the ordinary writer, its tables
//! presented as a store's index, then a second tree sharing files with it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use super::*;
use crate::format::manifest::{
    ChunkHash, ChunkId, DataRun, Entries, EntryKind, EntryRef, Manifest, Runs,
};
use crate::format::records::MAX_PACK_LEN;
use crate::format::sink::{NewChunk, PackSink};
use crate::payload::carry::StoredRun;
use crate::payload::codec::BlockDecompressor;
use crate::payload::writer::{BaseImage, PayloadParams, PayloadTables, write_payload_with_base};
use crate::progress::NoProgress;
use crate::scan::ScanOptions;

/// Keeps every pack in memory, with the record the packer told at its end, and every block
/// placed with its chunks as the sink was told them.
#[derive(Default)]
struct MemSink {
    done: Vec<(PackRecord, Vec<u8>)>,
    open: Vec<u8>,
    placed: Vec<(BlockRecord, Vec<NewChunk>)>,
}

impl PackSink for MemSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        self.open.extend_from_slice(bytes);
        Ok(())
    }
    fn begin_pack(&mut self, _index: u32) -> Result<(), PayloadError> {
        self.open.clear();
        Ok(())
    }
    fn end_pack(&mut self, rec: &PackRecord) -> Result<(), PayloadError> {
        self.done
            .push((rec.clone(), std::mem::take(&mut self.open)));
        Ok(())
    }
    fn block_placed(&mut self, rec: &BlockRecord, chunks: &[NewChunk]) -> Result<(), PayloadError> {
        self.placed.push((rec.clone(), chunks.to_vec()));
        Ok(())
    }
}

/// What `sink` was told of each block as it was placed is what the tables say of the first
/// `n_blocks` blocks (the new ones), chunks and all: a store's index objects are made of it
/// while the capture runs (docs/STORE.md §4.3).
fn assert_placed_as_tables(sink: &MemSink, t: &PayloadTables, n_blocks: usize) {
    // Each new chunk comes with its whole hash, whose first 16 bytes are the record's id (a
    // store's index lists the 32 bytes: docs/STORE.md §2.4).
    let mut told: Vec<(BlockRecord, Vec<ChunkRecord>)> = sink
        .placed
        .iter()
        .map(|(b, chunks)| {
            for c in chunks {
                assert_eq!(c.hash.id(), c.record.id);
            }
            (b.clone(), chunks.iter().map(|c| c.record.clone()).collect())
        })
        .collect();
    told.sort_by_key(|(b, _)| (b.pack, b.offset));
    let mut want: Vec<(BlockRecord, Vec<ChunkRecord>)> = (0..n_blocks)
        .map(|b| {
            let chunks = t.chunks.iter().filter(|c| c.block as usize == b);
            (t.blocks[b].clone(), chunks.cloned().collect())
        })
        .collect();
    want.sort_by_key(|(b, _)| (b.pack, b.offset));
    assert_eq!(told, want);
}

/// `len` pseudo-random (incompressible) bytes from `seed`.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Scans `dir` and writes it (one worker, so the run is repeatable) into `sink`.
fn capture(
    dir: &Path,
    sink: &mut MemSink,
    pack_limit: u64,
    base: Option<&dyn BaseImage>,
) -> (Entries, PayloadTables) {
    let mut entries = crate::scan::scan(dir, &ScanOptions::default())
        .unwrap()
        .entries;
    let params = PayloadParams {
        root: dir.to_path_buf(),
        level: 3,
        threads: 1,
        keep_going: false,
        image_id: [7; 16],
        packs: crate::payload::writer::PackOwner::Image,
        pack_limit,
        to_read: 0,
        scratch: None,
    };
    let tables = write_payload_with_base(&mut entries, sink, &params, base, &NoProgress).unwrap();
    (entries, tables)
}

/// A store's index made from an image's tables: blocks renumbered so each pack's are
/// consecutive and in offset order, as `BasePacks` requires. Its chunks are found by the
/// 16-byte ids of the tables (a real store matches whole hashes: `store::dedup`).
struct FakeStore {
    packs: Vec<PackRecord>,
    blocks: Vec<BlockRecord>,
    chunks: Vec<ChunkRecord>,
    pack_blocks: Vec<Range<BlockIndex>>,
    block_chunks: Vec<Vec<ChunkIndex>>,
    ids: HashMap<ChunkId, ChunkIndex>,
    /// The files cache: the base's runs of the files it vouches for.
    unchanged: HashMap<Vec<u8>, Vec<DataRun>>,
}

impl FakeStore {
    fn new(t: &PayloadTables) -> FakeStore {
        let mut order: Vec<usize> = (0..t.blocks.len()).collect();
        order.sort_by_key(|&b| (t.blocks[b].pack, t.blocks[b].offset));
        let mut renumber = vec![0 as BlockIndex; t.blocks.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old] = new as BlockIndex;
        }
        let blocks: Vec<BlockRecord> = order.iter().map(|&b| t.blocks[b].clone()).collect();
        let mut chunks = t.chunks.clone();
        let mut block_chunks = vec![Vec::new(); blocks.len()];
        for (i, c) in chunks.iter_mut().enumerate() {
            c.block = renumber[c.block as usize];
            block_chunks[c.block as usize].push(i as ChunkIndex);
        }
        let pack_blocks = (0..t.packs.len() as u32)
            .map(|p| {
                let first = blocks.iter().position(|b| b.pack == p).unwrap();
                let n = blocks.iter().filter(|b| b.pack == p).count();
                first as BlockIndex..(first + n) as BlockIndex
            })
            .collect();
        let ids = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i as ChunkIndex))
            .collect();
        FakeStore {
            packs: t.packs.clone(),
            blocks,
            chunks,
            pack_blocks,
            block_chunks,
            ids,
            unchanged: HashMap::new(),
        }
    }
}

impl BaseImage for FakeStore {
    fn unchanged_runs(&self, e: EntryRef) -> Option<Runs> {
        self.unchanged
            .get(e.path)
            .map(|r| r.iter().cloned().collect())
    }
    fn find_chunk(&self, hash: &ChunkHash) -> Option<ChunkIndex> {
        self.ids.get(&hash.id()).copied()
    }
    fn chunk(&self, c: ChunkIndex) -> Option<&ChunkRecord> {
        self.chunks.get(c as usize)
    }
    fn chunks_in_block(&self, b: BlockIndex) -> &[ChunkIndex] {
        self.block_chunks.get(b as usize).map_or(&[], Vec::as_slice)
    }
    fn block_extent(&self, _b: BlockIndex) -> Option<(u32, Range<u64>)> {
        panic!("a referenced block's extent was asked for");
    }
    fn stored_run(&self, _blocks: &[BlockIndex]) -> Result<StoredRun, PayloadError> {
        panic!("a referenced block was to be copied");
    }
    fn copies_unread(&self) -> bool {
        false
    }
    fn references(&self) -> Option<&dyn BasePacks> {
        Some(self)
    }
}

impl BasePacks for FakeStore {
    fn pack_record(&self, p: PackIndex) -> Option<PackRecord> {
        self.packs.get(p as usize).cloned()
    }
    fn blocks_in_pack(&self, p: PackIndex) -> Range<BlockIndex> {
        self.pack_blocks.get(p as usize).cloned().unwrap_or(0..0)
    }
    fn block_record(&self, b: BlockIndex) -> Option<&BlockRecord> {
        self.blocks.get(b as usize)
    }
}

fn runs_of(entries: &Entries, path: &str) -> Runs {
    let e = entries
        .iter()
        .find(|e| *e.path == *path.as_bytes())
        .unwrap();
    match e.row.kind() {
        EntryKind::File { runs, .. } => runs,
        _ => panic!("{path} is not a file"),
    }
}

fn chunks_of(runs: &[DataRun]) -> impl Iterator<Item = ChunkIndex> + '_ {
    runs.iter().flat_map(|r| r.chunks.iter().copied())
}

/// A file's bytes read through `t`, each block checked against its hash, from `packs` (every
/// pack's bytes by its hash).
fn read_back(
    t: &PayloadTables,
    packs: &HashMap<[u8; 32], Vec<u8>>,
    runs: &[DataRun],
    size: u64,
) -> Vec<u8> {
    let mut out = vec![0u8; size as usize];
    let mut raw = Vec::new();
    let mut dec = BlockDecompressor::new().unwrap();
    for r in runs {
        let mut at = r.offset as usize;
        for &c in &r.chunks {
            let chunk = &t.chunks[c as usize];
            let block = &t.blocks[chunk.block as usize];
            let pack = &packs[&t.packs[block.pack as usize].hash];
            let start = block.offset as usize;
            let stored = &pack[start..start + BLOCK_HEADER_LEN + block.stored_len as usize];
            assert_eq!(*blake3::hash(stored).as_bytes(), block.hash);
            dec.decompress(
                block.codec,
                &stored[BLOCK_HEADER_LEN..],
                block.raw_len,
                &mut raw,
            )
            .unwrap();
            let bytes = &raw[chunk.offset as usize..][..chunk.len as usize];
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        }
    }
    out
}

#[test]
fn a_capture_into_a_store_references_the_packs_of_the_chunks_it_shares() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (shared1, shared2) = (noise("shared1", 700 << 10), noise("shared2", 500 << 10));
    let (only_a, new) = (noise("only a", 600 << 10), noise("new", 300 << 10));
    put(a.path(), "only_a.bin", &only_a);
    put(a.path(), "shared1.bin", &shared1);
    put(a.path(), "shared2.bin", &shared2);
    put(b.path(), "dir/shared2.bin", &shared2);
    put(b.path(), "new.bin", &new);
    put(b.path(), "shared1.bin", &shared1);

    // The store: several packs of one or two blocks each.
    let mut store_sink = MemSink::default();
    let (base_entries, base_tables) = capture(a.path(), &mut store_sink, 600 << 10, None);
    assert!(
        base_tables.packs.len() >= 3,
        "{} packs",
        base_tables.packs.len()
    );
    assert_placed_as_tables(&store_sink, &base_tables, base_tables.blocks.len());
    let mut store = FakeStore::new(&base_tables);
    // shared1.bin comes from the files cache unread; dir/shared2.bin is read and deduplicated.
    let cached = runs_of(&base_entries, "shared1.bin").to_vec();
    store.unchanged.insert(b"shared1.bin".to_vec(), cached);

    let mut sink = MemSink::default();
    let (entries, t) = capture(b.path(), &mut sink, MAX_PACK_LEN, Some(&store));

    // New packs first, exactly as written; then the store's packs that hold a shared chunk,
    // in the store's order.
    let n_new = sink.done.len();
    let written: Vec<PackRecord> = sink.done.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(t.packs[..n_new], written[..]);
    let (mut used, mut used_blocks) = (BTreeSet::new(), HashSet::new());
    for f in ["shared1.bin", "shared2.bin"] {
        for c in chunks_of(&runs_of(&base_entries, f)) {
            let b = base_tables.chunks[c as usize].block;
            used_blocks.insert(b);
            used.insert(base_tables.blocks[b as usize].pack);
        }
    }
    let expected: Vec<PackRecord> = used
        .iter()
        .map(|&p| base_tables.packs[p as usize].clone())
        .collect();
    assert_eq!(t.packs[n_new..], expected[..]);
    assert!(
        used.len() < base_tables.packs.len(),
        "a pack holding only only_a.bin's data"
    );

    // Each referenced pack lists all of the store's blocks of it, in order, after the new ones.
    let n_new_blocks = t
        .blocks
        .iter()
        .take_while(|b| (b.pack as usize) < n_new)
        .count();
    let mut at = n_new_blocks;
    for (j, &p) in used.iter().enumerate() {
        for b in store.blocks_in_pack(p) {
            let mut want = store.blocks[b as usize].clone();
            want.pack = (n_new + j) as PackIndex;
            assert_eq!(t.blocks[at], want);
            at += 1;
        }
    }
    assert_eq!(at, t.blocks.len());

    // The shared files' chunks point into referenced packs; new blocks hold only new.bin's.
    for f in ["shared1.bin", "dir/shared2.bin"] {
        for c in chunks_of(&runs_of(&entries, f)) {
            let block = t.chunks[c as usize].block as usize;
            assert!(t.blocks[block].pack as usize >= n_new, "{f}: chunk {c}");
        }
    }
    let new_ids: HashSet<ChunkId> = chunks_of(&runs_of(&entries, "new.bin"))
        .map(|c| t.chunks[c as usize].id)
        .collect();
    for c in &t.chunks {
        let fresh = (c.block as usize) < n_new_blocks;
        assert_eq!(fresh, new_ids.contains(&c.id), "chunk in block {}", c.block);
    }

    // Nothing referenced reached the sink: it holds the new packs only, new.bin's bytes.
    let sent: usize = sink.done.iter().map(|(_, bytes)| bytes.len()).sum();
    let new_len: u64 = t.packs[..n_new].iter().map(|p| p.len).sum();
    assert_eq!(sent as u64, new_len);
    let raw: u64 = t.blocks[..n_new_blocks]
        .iter()
        .map(|b| b.raw_len as u64)
        .sum();
    assert_eq!(raw, new.len() as u64);
    assert_placed_as_tables(&sink, &t, n_new_blocks);

    let r = &t.reuse;
    assert!(r.copied_blocks.is_empty());
    assert_eq!(r.referenced.packs, used.len() as u64);
    assert_eq!(
        r.referenced.bytes,
        expected.iter().map(|p| p.len).sum::<u64>()
    );
    assert_eq!(r.referenced.blocks, used_blocks.len() as u64);
    // Some blocks are listed only to tile their pack.
    assert!(used_blocks.len() < t.blocks.len() - n_new_blocks);
    assert_eq!(r.chunks_new as usize, new_ids.len());
    assert_eq!((r.files_reused, r.files_read), (1, 2));

    // The tables make a valid manifest, and every file reads back through them.
    let m = Manifest {
        packs: t.packs.clone(),
        blocks: t.blocks.clone(),
        chunks: t.chunks.clone(),
        entries: entries.clone(),
        ..Default::default()
    };
    crate::format::validate::validate(&m).unwrap();
    let packs: HashMap<[u8; 32], Vec<u8>> = store_sink
        .done
        .into_iter()
        .chain(sink.done)
        .map(|(r, b)| (r.hash, b))
        .collect();
    for (f, want) in [
        ("shared1.bin", &shared1),
        ("dir/shared2.bin", &shared2),
        ("new.bin", &new),
    ] {
        let got = read_back(&t, &packs, &runs_of(&entries, f), want.len() as u64);
        assert!(got == *want, "{f} reads back different bytes");
    }
}

/// Block records of one pack for `place`, as a store's index would give them.
struct OnePack(Vec<BlockRecord>, u64);

impl BasePacks for OnePack {
    fn pack_record(&self, p: PackIndex) -> Option<PackRecord> {
        (p == 0).then_some(PackRecord {
            len: self.1,
            hash: [1; 32],
        })
    }
    fn blocks_in_pack(&self, p: PackIndex) -> Range<BlockIndex> {
        if p == 0 {
            0..self.0.len() as BlockIndex
        } else {
            0..0
        }
    }
    fn block_record(&self, b: BlockIndex) -> Option<&BlockRecord> {
        self.0.get(b as usize)
    }
}

#[test]
fn a_store_pack_whose_blocks_do_not_tile_it_is_refused() {
    let block = |offset: u64| BlockRecord {
        pack: 0,
        offset,
        stored_len: 100,
        raw_len: 100,
        codec: crate::format::manifest::Codec::Raw,
        hash: [0; 32],
    };
    let step = (BLOCK_HEADER_LEN + 100) as u64;
    let h = RECORD_LEN as u64;
    let run = |base: &OnePack| {
        let mut r = Referenced::default();
        r.claim_block(1);
        let mut chunks = vec![ChunkRecord {
            id: ChunkId([5; 16]),
            block: 1,
            offset: 0,
            len: 10,
        }];
        r.add_chunks(0..1);
        let (mut packs, mut blocks) = (Vec::new(), Vec::new());
        place(base, r, &mut packs, &mut blocks, &mut chunks)
            .map(|p| (p, chunks[0].block, blocks.len()))
    };
    // Tiling: two blocks, the chunk's block is the second of the two listed.
    let good = OnePack(vec![block(h), block(h + step)], h + 2 * step);
    let placed = ReferenceCounts {
        blocks: 1,
        packs: 1,
        bytes: h + 2 * step,
    };
    assert_eq!(run(&good).unwrap(), (placed, 1, 2));
    // A gap, overlapping blocks, or a pack longer than its blocks.
    for bad in [
        OnePack(vec![block(h), block(h + step + 1)], h + 2 * step + 1),
        OnePack(vec![block(h), block(h + step - 1)], h + 2 * step - 1),
        OnePack(vec![block(h), block(h + step)], h + 2 * step + 1),
    ] {
        let err = run(&bad).unwrap_err().to_string();
        assert!(err.contains("pack 0"), "{err}");
    }
}
