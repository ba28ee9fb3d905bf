//! The store's side of `osimage import IMAGE s3://B/P/NAME` (docs/STORE.md §8): an image
//! file's blocks become a store version's. Every block some chunk of the image uses is read
//! and checked (its hash, and each of its chunks against the manifest's id); a block the
//! store already holds (the same BLAKE3 in its index, in no unswept condemnation) is
//! **referenced** where it lies, its pack entering the manifest with all its blocks
//! (`payload::reference::place`, as a capture's referenced chunks do); any other block is
//! **carried** unchanged (the same header and stored bytes, never recompressed) into new store
//! packs (`payload::packer` with `PackOwner::Store`), which the sink uploads and indexes.
//!
//! The index lists each carried chunk by its whole 32-byte BLAKE3, which the image's manifest
//! does not hold (16 bytes): it comes from the block decompressed here, never from the
//! manifest (§2.4, "No index record is built from a manifest"). Blocks no chunk uses (those
//! an export lists only to tile a store pack) are neither read nor carried.
//!
//! The result is the new pack, block and chunk tables; the caller (`capture::import`) rewrites
//! the manifest with them and commits the version.

use std::collections::HashMap;

use crossbeam_channel::{Sender, bounded};

use crate::format::PayloadError;
use crate::format::manifest::{BlockIndex, BlockRecord, ChunkHash, ChunkRecord, PackRecord};
use crate::format::records::{BLOCK_HEADER_LEN, BlockHeader};
use crate::format::sink::{NewChunk, PackSink};
use crate::payload::block_chunks::BlockChunks;
use crate::payload::codec::BlockDecompressor;
use crate::payload::packer::{BlockEntry, Outgoing, PackOwner, pack_blocks};
use crate::payload::reader::PayloadReader;
use crate::payload::reference::{Referenced, place};
use crate::progress::Progress;
use crate::store::dedup::StoreBase;

/// Carried blocks waiting for the pack thread: bounds the memory ahead of it.
const QUEUE: usize = 8;

/// The image's tables rewritten for the store.
#[derive(Debug)]
pub struct ImportedTables {
    /// The new packs first, then every store pack a referenced block lies in.
    pub packs: Vec<PackRecord>,
    pub blocks: Vec<BlockRecord>,
    /// The image's chunk records in their order, each pointing at its block's new place.
    pub chunks: Vec<ChunkRecord>,
    pub counts: ImportCounts,
}

/// What the import did with the image's blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Blocks read and checked: every block a chunk of the image uses.
    pub blocks_read: u64,
    /// Of those, blocks carried into new packs, and their bytes as stored (headers included).
    pub carried_blocks: u64,
    pub carried_bytes: u64,
    /// Blocks found in the store, and the store packs listed for them.
    pub referenced_blocks: u64,
    pub referenced_packs: u64,
    /// Blocks of the image no chunk uses, left out.
    pub unused_blocks: u64,
}

/// Where a block of the image went.
#[derive(Clone, Copy)]
enum Placed {
    /// The store's block (its index in `base`), referenced.
    Store(BlockIndex),
    /// A new block of this version.
    New(BlockIndex),
}

/// Reads every used block of `reader`'s image, references those `base` holds and carries the
/// rest into new store packs of `store_id`, at most `pack_limit` bytes each, written to `sink`.
pub fn carry_blocks(
    reader: &PayloadReader,
    base: &StoreBase,
    sink: &mut dyn PackSink,
    store_id: [u8; 16],
    pack_limit: u64,
    progress: &dyn Progress,
) -> Result<ImportedTables, PayloadError> {
    let m = reader.manifest();
    let by_block = BlockChunks::new(&m.chunks, m.blocks.len());
    let mut order: Vec<BlockIndex> = (0..m.blocks.len() as BlockIndex)
        .filter(|&b| !by_block.of(b).is_empty())
        .collect();
    order.sort_by_key(|&b| (m.blocks[b as usize].pack, m.blocks[b as usize].offset));
    let mut walk = Walk {
        reader,
        by_block: &by_block,
        in_store: base.blocks_by_hash(),
        chunks: m.chunks.clone(),
        placed: HashMap::new(),
        referenced: Referenced::default(),
        counts: ImportCounts {
            unused_blocks: (m.blocks.len() - order.len()) as u64,
            ..ImportCounts::default()
        },
        next: 0,
    };
    reader.plan_blocks(order.iter().copied());
    let total: u64 = order
        .iter()
        .map(|&b| BLOCK_HEADER_LEN as u64 + u64::from(m.blocks[b as usize].stored_len))
        .sum();
    progress.start("reading the image's blocks", total);
    let (tx, rx) = bounded::<Outgoing>(QUEUE);
    let owner = PackOwner::Store { store_id };
    let (walked, packed) = std::thread::scope(|s| {
        let packer = s.spawn(move || pack_blocks(rx, sink, [0; 16], owner, 0, pack_limit));
        let walked = walk.run(&order, &tx, progress);
        drop(tx);
        let packed = packer
            .join()
            .unwrap_or_else(|_| Err(PayloadError::format("internal: the pack thread panicked")));
        (walked, packed)
    });
    progress.finish();
    walked?;
    let (mut packs, mut blocks) = packed?;
    let counts = place(
        base,
        walk.referenced,
        &mut packs,
        &mut blocks,
        &mut walk.chunks,
    )?;
    walk.counts.referenced_packs = counts.packs;
    Ok(ImportedTables {
        packs,
        blocks,
        chunks: walk.chunks,
        counts: walk.counts,
    })
}

/// The walk over the image's blocks.
struct Walk<'a> {
    reader: &'a PayloadReader,
    by_block: &'a BlockChunks,
    /// The store's blocks by hash.
    in_store: HashMap<[u8; 32], BlockIndex>,
    /// The image's chunk records, repointed as their blocks are placed: at a new block's
    /// index, or (until `place`) at the store's block.
    chunks: Vec<ChunkRecord>,
    /// Where each block hash went, so a block the image holds twice is stored once.
    placed: HashMap<[u8; 32], Placed>,
    referenced: Referenced,
    counts: ImportCounts,
    /// The next new block's index.
    next: BlockIndex,
}

impl Walk<'_> {
    /// Reads and places every block of `order`; carried ones go to `tx`. A closed channel
    /// means the pack thread failed: its error is the one to report, so this stops quietly.
    fn run(
        &mut self,
        order: &[BlockIndex],
        tx: &Sender<Outgoing>,
        progress: &dyn Progress,
    ) -> Result<(), PayloadError> {
        let mut stored = Vec::new();
        let mut raw = Vec::new();
        let mut dec = BlockDecompressor::new()?;
        for &b in order {
            let rec = self.reader.manifest().blocks[b as usize].clone();
            self.reader.read_stored_body(b, &mut stored)?;
            let header = BlockHeader {
                codec: rec.codec,
                raw_len: rec.raw_len,
                stored_len: rec.stored_len,
            };
            let mut h = blake3::Hasher::new();
            h.update(&header.encode());
            h.update(&stored);
            let hash = *h.finalize().as_bytes();
            dec.decompress(rec.codec, &stored, rec.raw_len, &mut raw)
                .map_err(|e| self.damaged(format!("block {b}: {e}")))?;
            let whole = self.hash_chunks(b, &raw)?;
            self.counts.blocks_read += 1;
            let size = BLOCK_HEADER_LEN as u64 + u64::from(rec.stored_len);
            progress.advance(size);
            match self.placed.get(&hash).copied() {
                Some(to) => self.point(b, to),
                None => match self.in_store.get(&hash).copied() {
                    Some(at) => {
                        self.referenced.claim_block(at);
                        self.counts.referenced_blocks += 1;
                        self.placed.insert(hash, Placed::Store(at));
                        self.point(b, Placed::Store(at));
                    }
                    None => {
                        let k = self.next;
                        self.next += 1;
                        self.placed.insert(hash, Placed::New(k));
                        self.point(b, Placed::New(k));
                        let chunks = self
                            .by_block
                            .of(b)
                            .iter()
                            .zip(whole)
                            .map(|(&c, hash)| NewChunk {
                                record: self.chunks[c as usize].clone(),
                                hash,
                            })
                            .collect();
                        let mut bytes = Vec::with_capacity(size as usize);
                        bytes.extend_from_slice(&header.encode());
                        bytes.extend_from_slice(&stored);
                        let entry: BlockEntry = (k, header, hash);
                        let out = Outgoing {
                            blocks: vec![entry],
                            bytes,
                            source: None,
                            carried: false,
                            chunks,
                        };
                        self.counts.carried_blocks += 1;
                        self.counts.carried_bytes += size;
                        if tx.send(out).is_err() {
                            return Ok(());
                        }
                    }
                },
            }
        }
        Ok(())
    }

    /// The whole BLAKE3 of each chunk of block `b` (in `by_block` order), each checked
    /// against the manifest's 16-byte id: the index needs all 32 bytes (§2.4).
    fn hash_chunks(&self, b: BlockIndex, raw: &[u8]) -> Result<Vec<ChunkHash>, PayloadError> {
        self.by_block
            .of(b)
            .iter()
            .map(|&c| {
                let rec = &self.chunks[c as usize];
                let at = rec.offset as usize;
                let data = raw
                    .get(at..at + rec.len as usize)
                    .ok_or_else(|| self.damaged(format!("chunk {c} lies outside its block")))?;
                let hash = ChunkHash::of(data);
                if hash.id() != rec.id {
                    return Err(self.damaged(format!(
                        "chunk {c} is damaged (BLAKE3 mismatch) in block {b}"
                    )));
                }
                Ok(hash)
            })
            .collect()
    }

    /// Points the chunks of the image's block `b` at `to`.
    fn point(&mut self, b: BlockIndex, to: Placed) {
        for &c in self.by_block.of(b) {
            let rec = &mut self.chunks[c as usize];
            match to {
                Placed::New(k) => rec.block = k,
                Placed::Store(at) => {
                    rec.block = at;
                    self.referenced.add_chunks(c..c + 1);
                }
            }
        }
    }

    fn damaged(&self, msg: String) -> PayloadError {
        PayloadError::Image {
            path: self.reader.path().to_path_buf(),
            msg,
        }
    }
}

#[cfg(test)]
mod tests;
