//! Index consolidation (docs/STORE.md §5.3): when a store has more than 64 index objects, a
//! sweep merges them into as few as hold every pack, each well under an index object's
//! 256 MiB decoded limit, PUTs those, and only then deletes the old ones. A capture that
//! lists both sees a pack twice, which its loader ignores; one that lists only the old ones
//! and finds one deleted passes over it (`index_cache`).

use std::collections::HashSet;

use crate::store::objects::{IndexPack, StoreIndex};
use crate::store::{Store, StoreError, names};

/// More index objects than this are merged.
pub const MAX_INDEX_OBJECTS: usize = 64;

/// The estimated decoded size a merged object may reach: 192 MiB, a quarter below the
/// 256 MiB limit, since the estimate below is an upper bound per record but not exact.
const MERGED_BUDGET: u64 = 192 << 20;

/// An upper bound of a pack's record in bincode's varint encoding: the id, the length and
/// the block count; per block its fixed fields and hash; per chunk its id and two integers.
fn estimated_len(p: &IndexPack) -> u64 {
    let chunks: u64 = p.blocks.iter().map(|b| b.chunks.len() as u64).sum();
    32 + 9 + 9 + p.blocks.len() as u64 * (9 + 5 + 5 + 5 + 32 + 9) + chunks * (32 + 5 + 5)
}

/// The packs of `indexes`, each once (the first copy), in as few objects as keep within
/// `budget` estimated bytes each.
pub fn merge(indexes: Vec<StoreIndex>, budget: u64) -> Vec<StoreIndex> {
    let mut seen = HashSet::new();
    let mut out: Vec<StoreIndex> = Vec::new();
    let mut used = 0u64;
    for p in indexes.into_iter().flat_map(|i| i.packs) {
        if !seen.insert(p.id) {
            continue;
        }
        let len = estimated_len(&p);
        match out.last_mut() {
            Some(last) if used + len <= budget || last.packs.is_empty() => {
                used += len;
                last.packs.push(p);
            }
            _ => {
                used = len;
                out.push(StoreIndex { packs: vec![p] });
            }
        }
    }
    out
}

/// Merges the store's index objects when there are more than [`MAX_INDEX_OBJECTS`]: the
/// merged ones are PUT first, then the old ones deleted. Returns how many were replaced.
pub(super) fn consolidate(store: &Store) -> Result<u64, StoreError> {
    let listed = store.list_index()?;
    if listed.len() <= MAX_INDEX_OBJECTS {
        return Ok(0);
    }
    let mut all = Vec::with_capacity(listed.len());
    for name in &listed {
        all.push(store.get_index(name)?);
    }
    for merged in merge(all, MERGED_BUDGET) {
        store.put_index(&merged)?;
    }
    let old: Vec<String> = listed
        .iter()
        .map(|n| store.root.key(&names::index_key(n)))
        .collect();
    store.client.delete_many(&old)?;
    Ok(listed.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::{IndexBlock, IndexChunk};

    fn pack(id: u8, blocks: usize) -> IndexPack {
        IndexPack {
            id: [id; 32],
            len: 64,
            blocks: (0..blocks)
                .map(|i| IndexBlock {
                    offset: 64 + i as u64,
                    stored_len: 1,
                    raw_len: 1,
                    codec: crate::format::manifest::Codec::Raw,
                    hash: [0; 32],
                    chunks: vec![IndexChunk {
                        id: crate::format::manifest::ChunkHash([i as u8; 32]),
                        offset: 0,
                        len: 1,
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn merging_keeps_each_pack_once_within_the_budget() {
        let one = pack(1, 3);
        let per = estimated_len(&one);
        let indexes = vec![
            StoreIndex {
                packs: vec![pack(1, 3), pack(2, 3)],
            },
            StoreIndex {
                packs: vec![pack(2, 3), pack(3, 3)],
            },
            StoreIndex {
                packs: vec![pack(4, 3)],
            },
        ];
        // Room for two packs per object: four distinct packs in two objects.
        let merged = merge(indexes.clone(), 2 * per);
        let ids: Vec<Vec<u8>> = merged
            .iter()
            .map(|i| i.packs.iter().map(|p| p.id[0]).collect())
            .collect();
        assert_eq!(ids, [vec![1, 2], vec![3, 4]]);
        // A pack larger than the budget still goes, alone.
        let tiny = merge(indexes, per / 2);
        assert_eq!(tiny.len(), 4);
        assert!(tiny.iter().all(|i| i.packs.len() == 1));
        // The estimate bounds the real encoding (the body's, FORMAT.md §5's configuration).
        let real = bincode::serde::encode_to_vec(
            StoreIndex {
                packs: vec![pack(9, 50)],
            },
            bincode::config::standard(),
        )
        .unwrap();
        assert!(real.len() as u64 <= estimated_len(&pack(9, 50)));
        assert!(merge(Vec::new(), per).is_empty());
    }
}
