//! Blocks a capture into an image store references where they lie (docs/STORE.md §2.3, §4
//! step 5): the third kind of block besides new ones and those a refresh copies from its base
//! (`carry`). A chunk the store already holds is neither compressed nor copied: its chunk
//! record points at the store's block, and that block's whole pack enters the new manifest,
//! every one of its blocks listed so they still tile the pack (FORMAT.md §3). Nothing of it is
//! sent to the pack thread or the sink.
//!
//! While the workers run, such a chunk record holds the base's block index; `place` gives it
//! the block's index in the new manifest once the new packs are written, since referenced
//! packs are listed after them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;

use crate::format::PayloadError;
use crate::format::manifest::{
    BlockIndex, BlockRecord, ChunkIndex, ChunkRecord, PackIndex, PackRecord,
};
use crate::format::records::{BLOCK_HEADER_LEN, RECORD_LEN};

/// The packs of a base whose blocks are referenced in place (an image store's index), for
/// `BaseImage::references`. Block and pack numbers are the base's own, as in its chunk records.
pub trait BasePacks: Sync {
    /// The record (length and hash) of the base's pack `p`.
    fn pack_record(&self, p: PackIndex) -> Option<PackRecord>;
    /// The base's blocks in pack `p`. Required of implementors: a pack's blocks are numbered
    /// consecutively, in the order of their offsets in the pack, and they are all of its
    /// blocks (they tile it); the new manifest lists them in this order.
    fn blocks_in_pack(&self, p: PackIndex) -> Range<BlockIndex>;
    /// The base's record of block `b`; its `pack` is the base's pack number.
    fn block_record(&self, b: BlockIndex) -> Option<&BlockRecord>;
}

/// What the workers referenced so far.
#[derive(Debug, Default)]
pub struct Referenced {
    /// Base blocks that hold a chunk of this image.
    blocks: HashSet<BlockIndex>,
    /// This image's chunk records whose `block` is still the base's block index.
    chunks: Vec<ChunkIndex>,
}

impl Referenced {
    /// Notes that the image uses base block `b`; false when it was noted before.
    pub fn claim_block(&mut self, b: BlockIndex) -> bool {
        self.blocks.insert(b)
    }

    /// Notes that this image's chunk records `chunks` point at base blocks.
    pub fn add_chunks(&mut self, chunks: Range<ChunkIndex>) {
        self.chunks.extend(chunks);
    }
}

/// What `place` added to the tables: what the image uses of the store where it lies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReferenceCounts {
    /// Base blocks holding chunks this image uses.
    pub blocks: u64,
    /// Base packs listed (each with all its blocks).
    pub packs: u64,
    /// Their total length: bytes the image uses where they lie, written by no one now.
    pub bytes: u64,
}

fn base_error(msg: String) -> PayloadError {
    PayloadError::format(format!("the store's index is inconsistent: {msg}"))
}

/// Appends to the tables, after the new packs and blocks, every base pack holding a block of
/// `referenced` (in the base's pack order) with all its blocks, and points each referencing
/// chunk record at its block's new index. Fails if the base's records of a pack do not tile
/// it.
pub fn place(
    base: &dyn BasePacks,
    referenced: Referenced,
    packs: &mut Vec<PackRecord>,
    blocks: &mut Vec<BlockRecord>,
    chunks: &mut [ChunkRecord],
) -> Result<ReferenceCounts, PayloadError> {
    let mut used = BTreeSet::new();
    for &b in &referenced.blocks {
        let rec = base
            .block_record(b)
            .ok_or_else(|| base_error(format!("block {b} does not exist")))?;
        used.insert(rec.pack);
    }
    let mut placed = ReferenceCounts {
        blocks: referenced.blocks.len() as u64,
        packs: used.len() as u64,
        bytes: 0,
    };
    let mut new_index = HashMap::with_capacity(referenced.blocks.len());
    for p in used {
        let rec = base
            .pack_record(p)
            .ok_or_else(|| base_error(format!("pack {p} does not exist")))?;
        let to = PackIndex::try_from(packs.len())
            .map_err(|_| PayloadError::format("too many packs for one image"))?;
        let mut end = RECORD_LEN as u64;
        for b in base.blocks_in_pack(p) {
            let mut r = base
                .block_record(b)
                .ok_or_else(|| base_error(format!("block {b} of pack {p} does not exist")))?
                .clone();
            if r.pack != p || r.offset != end {
                return Err(base_error(format!(
                    "block {b} is not the next block of pack {p} (at offset {end})"
                )));
            }
            end += BLOCK_HEADER_LEN as u64 + r.stored_len as u64;
            r.pack = to;
            if referenced.blocks.contains(&b) {
                let i = BlockIndex::try_from(blocks.len())
                    .map_err(|_| PayloadError::format("too many blocks for one image"))?;
                new_index.insert(b, i);
            }
            blocks.push(r);
        }
        if end != rec.len {
            return Err(base_error(format!(
                "pack {p} is {} bytes but its blocks end at {end}",
                rec.len
            )));
        }
        placed.bytes += rec.len;
        packs.push(rec);
    }
    for c in referenced.chunks {
        let rec = chunks
            .get_mut(c as usize)
            .ok_or_else(|| PayloadError::format(format!("internal: chunk {c} was lost")))?;
        rec.block = *new_index.get(&rec.block).ok_or_else(|| {
            base_error(format!(
                "block {} is not among the blocks of its pack",
                rec.block
            ))
        })?;
    }
    Ok(placed)
}

#[cfg(test)]
mod tests;
