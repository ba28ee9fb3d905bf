//! The capture's index of its chunk table by chunk id: which record holds an id, if any.
//!
//! Each slot holds a record's index (4 bytes) and a tag byte from the id's hash; the id itself
//! is read from the record. Open addressing with linear probing over a table of any length (not
//! a power of two), filled to at most 7/8 and sized once from the scan's estimate: about 6
//! bytes a chunk, where `hashbrown`'s table of 2^k slots took 5.7 to 11.4, and 17 while it grew
//! (issue #23, memory an entry). The ids are hashed with a per-process key (`RandomState`), so
//! files made to collide in the table cannot slow a capture down.

use std::hash::BuildHasher as _;

use crate::format::manifest::{ChunkId, ChunkIndex, ChunkRecord};

/// Slots in use at most, as a fraction of all: 7/8.
const LOAD_NUM: usize = 7;
const LOAD_DEN: usize = 8;

/// Chunk id → the index of its record.
#[derive(Default)]
pub struct IdIndex {
    /// 0: empty; else the low 7 bits of the slot's hash, with the high bit set.
    tags: Vec<u8>,
    /// The record index of each full slot.
    slots: Vec<ChunkIndex>,
    len: usize,
    hasher: std::hash::RandomState,
}

impl IdIndex {
    /// An index with room for `n` ids before it grows.
    pub fn with_capacity(n: usize) -> Self {
        let mut index = IdIndex::default();
        index.resize(slots_for(n));
        index
    }

    /// The index of the record with `id`.
    pub fn get(&self, records: &[ChunkRecord], id: &ChunkId) -> Option<ChunkIndex> {
        if self.tags.is_empty() {
            return None;
        }
        let (mut at, tag) = self.place(self.hasher.hash_one(id));
        loop {
            match self.tags[at] {
                0 => return None,
                t if t == tag => {
                    let i = self.slots[at];
                    if records.get(i as usize).is_some_and(|r| r.id == *id) {
                        return Some(i);
                    }
                }
                _ => {}
            }
            at = self.next(at);
        }
    }

    /// Indexes `records[i]`, whose id is not indexed yet.
    pub fn insert(&mut self, records: &[ChunkRecord], i: ChunkIndex) {
        if (self.len + 1) * LOAD_DEN > self.tags.len() * LOAD_NUM {
            let grown = slots_for((self.len + 1).max(self.len + self.len / 2));
            let old_tags = std::mem::take(&mut self.tags);
            let old_slots = std::mem::take(&mut self.slots);
            self.resize(grown);
            for (tag, j) in old_tags.into_iter().zip(old_slots) {
                if tag != 0 {
                    self.put(self.hasher.hash_one(records[j as usize].id), j);
                }
            }
        }
        self.put(self.hasher.hash_one(records[i as usize].id), i);
        self.len += 1;
    }

    fn put(&mut self, hash: u64, i: ChunkIndex) {
        let (mut at, tag) = self.place(hash);
        while self.tags[at] != 0 {
            at = self.next(at);
        }
        self.tags[at] = tag;
        self.slots[at] = i;
    }

    fn resize(&mut self, slots: usize) {
        self.tags = vec![0; slots];
        self.slots = vec![0; slots];
    }

    /// Where probing for `hash` starts (its high bits scaled to the table's length), and its tag
    /// (its low 7 bits: ids that start near one another differ there, not in their high bits).
    fn place(&self, hash: u64) -> (usize, u8) {
        let at = ((hash as u128 * self.tags.len() as u128) >> 64) as usize;
        (at, (hash & 0x7f) as u8 | 0x80)
    }

    fn next(&self, at: usize) -> usize {
        if at + 1 == self.tags.len() { 0 } else { at + 1 }
    }
}

/// Slots for `n` ids at most 7/8 full, and at least one empty.
fn slots_for(n: usize) -> usize {
    (n.saturating_mul(LOAD_DEN) / LOAD_NUM).max(n + 1).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(k: u32) -> ChunkRecord {
        ChunkRecord {
            id: ChunkId::of(&k.to_le_bytes()),
            block: 0,
            offset: 0,
            len: 1,
        }
    }

    /// Every id indexed is found, with its record's index, through growth from an estimate
    /// too small; ids not indexed are not.
    #[test]
    fn ids_are_found_through_growth() {
        for start in [0, 10, 1000] {
            let records: Vec<ChunkRecord> = (0..5000).map(record).collect();
            let mut index = IdIndex::with_capacity(start);
            for i in 0..records.len() as u32 {
                assert_eq!(index.get(&records, &records[i as usize].id), None);
                index.insert(&records, i);
            }
            for (i, r) in records.iter().enumerate() {
                assert_eq!(index.get(&records, &r.id), Some(i as u32));
            }
            assert_eq!(index.get(&records, &record(5000).id), None);
            assert!(index.tags.len() * 7 >= records.len() * 8);
        }
    }
}
