//! An image's chunks grouped by the block that holds them: what a base answers when the
//! writer claims one of its blocks (`BaseImage::chunks_in_block`: a refresh's base image, a
//! store's index).

use crate::format::manifest::{BlockIndex, ChunkIndex, ChunkRecord};

/// Chunk indexes by block: block b's are `by_block[starts[b]..starts[b + 1]]`.
#[derive(Debug, Default)]
pub struct BlockChunks {
    by_block: Vec<ChunkIndex>,
    starts: Vec<usize>,
}

impl BlockChunks {
    /// Groups `chunks` over `blocks` blocks; a chunk naming no such block is left out (a
    /// checked manifest or index has none).
    pub fn new(chunks: &[ChunkRecord], blocks: usize) -> Self {
        let mut starts = vec![0usize; blocks + 1];
        let mut by_block = Vec::with_capacity(chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            if let Some(n) = starts.get_mut(c.block as usize + 1) {
                *n += 1;
                by_block.push(i as ChunkIndex);
            }
        }
        for b in 0..blocks {
            starts[b + 1] += starts[b];
        }
        by_block.sort_by_key(|&c| chunks[c as usize].block);
        BlockChunks { by_block, starts }
    }

    /// The chunks of block `b`; none for a block that does not exist.
    pub fn of(&self, b: BlockIndex) -> &[ChunkIndex] {
        let b = b as usize;
        match (self.starts.get(b), self.starts.get(b + 1)) {
            (Some(&s), Some(&e)) => &self.by_block[s..e],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::ChunkId;

    #[test]
    fn chunks_are_grouped_by_their_block_in_index_order() {
        let c = |n: u8, block| ChunkRecord {
            id: ChunkId([n; 16]),
            block,
            offset: 0,
            len: 1,
        };
        let chunks = [c(0, 2), c(1, 0), c(2, 2), c(3, 9), c(4, 0)];
        let g = BlockChunks::new(&chunks, 3);
        assert_eq!(g.of(0), [1, 4]);
        assert!(g.of(1).is_empty());
        assert_eq!(g.of(2), [0, 2]);
        assert!(g.of(3).is_empty(), "no such block");
    }
}
