//! What a capture into a store deduplicates against (docs/STORE.md §4 steps 4–5, §4.1): every
//! block and chunk the store's index objects list, presented to the payload writer as a base
//! whose blocks are **referenced** where they lie, never copied; and the previous version of
//! the series as the files cache, so unchanged files are not read.
//!
//! Numbering: the store's packs and blocks in index order (a pack's blocks consecutive, in
//! offset order, as `BaseImage::blocks_in_pack` requires); the chunks are the previous
//! version's first, at the indexes its manifest gives them (so the files cache's runs need no
//! translation), then every other chunk of the index.
//!
//! Chunks are found by their whole 32-byte BLAKE3, as the index lists them, never by the
//! 16-byte id of a manifest (docs/STORE.md §2.4): the previous version's chunks take theirs
//! from the index chunk at the same place.

use std::collections::HashMap;

use crate::format::PayloadError;
use crate::format::manifest::{
    BlockIndex, BlockRecord, ChunkHash, ChunkIndex, ChunkRecord, EntryRef, Meta, PackIndex,
    PackRecord, Runs, Xattr,
};
use crate::format::records::BLOCK_HEADER_LEN;
use crate::payload::block_chunks::BlockChunks;
use crate::payload::carry::StoredRun;
use crate::payload::reference::BasePacks;
use crate::payload::writer::BaseImage;
use crate::refresh::Base;
use crate::scan::KnownFiles;
use crate::store::objects::index::StoreIndex;

/// The store as a capture's base.
pub struct StoreBase {
    /// The previous version of the series: the files cache. `None` when there is none, or
    /// when one of its packs is missing from the index.
    prev: Option<Base>,
    packs: Vec<PackRecord>,
    /// Pack p's blocks are `first_block[p]..first_block[p + 1]`.
    first_block: Vec<BlockIndex>,
    blocks: Vec<BlockRecord>,
    chunks: Vec<ChunkRecord>,
    /// The whole BLAKE3 of each of `chunks`.
    hashes: Vec<ChunkHash>,
    ids: HashMap<ChunkHash, ChunkIndex>,
    /// The chunks grouped by block.
    by_block: BlockChunks,
    /// Why the previous version's files cache was dropped, to tell the user.
    pub dropped_cache: Option<String>,
}

impl StoreBase {
    /// The store's `indexes` (each named by `names[i]` in messages), with `prev` as the files
    /// cache. An index object whose blocks do not tile their packs is refused: the store is
    /// damaged and a capture must not reference it.
    pub fn new(
        indexes: &[(String, StoreIndex)],
        prev: Option<Base>,
    ) -> Result<StoreBase, PayloadError> {
        let mut s = StoreBase {
            prev: None,
            packs: Vec::new(),
            first_block: vec![0],
            blocks: Vec::new(),
            chunks: Vec::new(),
            hashes: Vec::new(),
            ids: HashMap::new(),
            by_block: BlockChunks::default(),
            dropped_cache: None,
        };
        let mut at: HashMap<([u8; 32], u64), BlockIndex> = HashMap::new();
        let mut index_chunks = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, index) in indexes {
            // The layout a manifest relies on: blocks tiling each pack, chunks inside blocks.
            index.check().map_err(|e| damaged(name, &e))?;
            for p in &index.packs {
                if !seen.insert(p.id) {
                    continue; // listed by an earlier index object too
                }
                let pack = s.packs.len() as u32;
                s.packs.push(PackRecord {
                    len: p.len,
                    hash: p.id,
                });
                for b in &p.blocks {
                    let block = s.blocks.len() as BlockIndex;
                    s.blocks.push(BlockRecord {
                        pack,
                        offset: b.offset,
                        stored_len: b.stored_len,
                        raw_len: b.raw_len,
                        codec: b.codec,
                        hash: b.hash,
                    });
                    at.insert((p.id, b.offset), block);
                    for c in &b.chunks {
                        index_chunks.push((
                            ChunkRecord {
                                id: c.id.id(),
                                block,
                                offset: c.offset,
                                len: c.len,
                            },
                            c.id,
                        ));
                    }
                }
                s.first_block.push(s.blocks.len() as BlockIndex);
            }
        }
        if let Some(prev) = prev {
            match prev_chunks(&prev, &at, &index_chunks) {
                Ok(chunks) => {
                    for (i, (_, hash)) in chunks.iter().enumerate() {
                        s.ids.entry(*hash).or_insert(i as ChunkIndex);
                    }
                    (s.chunks, s.hashes) = chunks.into_iter().unzip();
                    s.prev = Some(prev);
                }
                Err(why) => s.dropped_cache = Some(why),
            }
        }
        for (c, hash) in index_chunks {
            if let std::collections::hash_map::Entry::Vacant(v) = s.ids.entry(hash) {
                v.insert(s.chunks.len() as ChunkIndex);
                s.chunks.push(c);
                s.hashes.push(hash);
            }
        }
        s.by_block = BlockChunks::new(&s.chunks, s.blocks.len());
        Ok(s)
    }

    /// The previous version, when it serves as the files cache.
    pub fn previous(&self) -> Option<&Base> {
        self.prev.as_ref()
    }

    /// Every block the index lists, by its hash (the BLAKE3 of its header and stored bytes):
    /// what an import references instead of carrying its own copy (docs/STORE.md §8). Of two
    /// blocks with one hash, the first in index order.
    pub fn blocks_by_hash(&self) -> HashMap<[u8; 32], BlockIndex> {
        let mut out = HashMap::with_capacity(self.blocks.len());
        for (i, b) in self.blocks.iter().enumerate() {
            out.entry(b.hash).or_insert(i as BlockIndex);
        }
        out
    }

    /// Packs and blocks the index lists.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.packs.len(), self.blocks.len(), self.chunks.len())
    }
}

/// The previous version's chunk records, pointing at the store's blocks, with their whole
/// hashes from the index chunk at the same block, offset and length whose first 16 bytes are
/// the record's id (docs/STORE.md §2.4); why not, when one of its blocks is not in the index
/// (its pack was never indexed, or is being pruned) or the index does not list one of its
/// chunks there.
fn prev_chunks(
    prev: &Base,
    at: &HashMap<([u8; 32], u64), BlockIndex>,
    index_chunks: &[(ChunkRecord, ChunkHash)],
) -> Result<Vec<(ChunkRecord, ChunkHash)>, String> {
    let placed: HashMap<(BlockIndex, u32, u32), &(ChunkRecord, ChunkHash)> = index_chunks
        .iter()
        .map(|ic| ((ic.0.block, ic.0.offset, ic.0.len), ic))
        .collect();
    let m = prev.manifest();
    m.chunks
        .iter()
        .map(|c| {
            let b = &m.blocks[c.block as usize];
            let pack = &m.packs[b.pack as usize];
            let pack_hex = || crate::store::names::hex(&pack.hash);
            let block = *at.get(&(pack.hash, b.offset)).ok_or_else(|| {
                format!(
                    "the previous version's pack {} is not in the store's index",
                    pack_hex()
                )
            })?;
            let rec = ChunkRecord { block, ..c.clone() };
            match placed.get(&(block, c.offset, c.len)) {
                Some((listed, hash)) if listed.id == c.id => Ok((rec, *hash)),
                _ => Err(format!(
                    "the store's index does not list the previous version's chunk at {} of \
                     a block of pack {}",
                    c.offset,
                    pack_hex()
                )),
            }
        })
        .collect()
}

fn damaged(name: &str, msg: &str) -> PayloadError {
    PayloadError::Image {
        path: name.into(),
        msg: format!("{msg} (damaged index object)"),
    }
}

impl KnownFiles for StoreBase {
    fn known_xattrs(&self, path: &[u8], meta: &Meta, size: u64) -> Option<Vec<Xattr>> {
        self.prev.as_ref()?.known_xattrs(path, meta, size)
    }
}

impl BaseImage for StoreBase {
    fn unchanged_runs(&self, e: EntryRef) -> Option<Runs> {
        self.prev.as_ref()?.unchanged_runs(e)
    }

    fn find_chunk(&self, hash: &ChunkHash) -> Option<ChunkIndex> {
        self.ids.get(hash).copied()
    }

    fn chunk(&self, c: ChunkIndex) -> Option<&ChunkRecord> {
        self.chunks.get(c as usize)
    }

    fn chunk_hash(&self, c: ChunkIndex) -> Option<ChunkHash> {
        self.hashes.get(c as usize).copied()
    }

    fn chunks_in_block(&self, b: BlockIndex) -> &[ChunkIndex] {
        self.by_block.of(b)
    }

    fn block_extent(&self, b: BlockIndex) -> Option<(u32, std::ops::Range<u64>)> {
        let r = self.blocks.get(b as usize)?;
        let end = r.offset + BLOCK_HEADER_LEN as u64 + r.stored_len as u64;
        Some((r.pack, r.offset..end))
    }

    fn stored_run(&self, _: &[BlockIndex]) -> Result<StoredRun, PayloadError> {
        Err(PayloadError::format(
            "internal: a store's blocks are referenced, never copied",
        ))
    }

    fn copies_unread(&self) -> bool {
        false
    }

    fn references(&self) -> Option<&dyn BasePacks> {
        Some(self)
    }
}

impl BasePacks for StoreBase {
    fn pack_record(&self, p: PackIndex) -> Option<PackRecord> {
        self.packs.get(p as usize).cloned()
    }

    fn blocks_in_pack(&self, p: PackIndex) -> std::ops::Range<BlockIndex> {
        let p = p as usize;
        match (self.first_block.get(p), self.first_block.get(p + 1)) {
            (Some(&s), Some(&e)) => s..e,
            _ => 0..0,
        }
    }

    fn block_record(&self, b: BlockIndex) -> Option<&BlockRecord> {
        self.blocks.get(b as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::ChunkId;

    /// docs/STORE.md §2.4: the index's chunks are found by all 32 bytes of their hash; one
    /// that shares only the manifest's 16-byte id is another chunk, not a match.
    #[test]
    fn index_chunks_are_found_by_their_whole_hash() {
        let index = crate::store::objects::index::tests::sample();
        let s = StoreBase::new(&[("index/x".into(), index)], None).unwrap();
        assert_eq!(s.counts(), (1, 2, 3));
        let whole = ChunkHash([2; 32]);
        let c = s.find_chunk(&whole).expect("listed");
        assert_eq!(s.chunk_hash(c), Some(whole));
        assert_eq!(s.chunk(c).unwrap().id, ChunkId([2; 16]));
        let mut same_id = [2; 32];
        same_id[31] = 3;
        assert_eq!(s.find_chunk(&ChunkHash(same_id)), None);
    }
}
