//! Index objects (docs/STORE.md §2.4, frame kind 2, zstd): which blocks and chunks a set of
//! packs holds, block by block, exactly what a manifest needs to reference those packs
//! (FORMAT.md §5.2). An index object's name is the BLAKE3 of the object as stored, so a
//! copy (cached, or listed by `store check`) is checked by its name alone.

use serde::{Deserialize, Serialize};

use super::ObjectError;
use super::frame::{Kind, decode_frame, encode_frame};
use crate::format::manifest::{ChunkHash, Codec};
use crate::format::records::{BLOCK_HEADER_LEN, MAX_BLOCK_RAW, MAX_PACK_LEN, RECORD_LEN};

/// The zstd level of index objects: their bulk is hashes, which do not compress, so a fast
/// level loses nothing.
const INDEX_LEVEL: i32 = 3;

/// The packs an index object describes. Field order is the encoding (normative, §2.4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIndex {
    pub packs: Vec<IndexPack>,
}

/// One pack: its id (the pack hash, FORMAT.md §3), its length, and every block in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: [u8; 32],
    pub len: u64,
    /// In offset order; they tile the pack from offset 64 to `len`.
    pub blocks: Vec<IndexBlock>,
}

/// One block of a pack, as a manifest's `BlockRecord` has it, with the chunks it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlock {
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
    pub hash: [u8; 32],
    pub chunks: Vec<IndexChunk>,
}

/// One chunk inside a block's decoded body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexChunk {
    /// The whole 32-byte BLAKE3 of the chunk, not the 16-byte id of a manifest (docs/STORE.md
    /// §2.4): the key captures deduplicate by.
    pub id: ChunkHash,
    pub offset: u32,
    pub len: u32,
}

impl StoreIndex {
    /// Whether every pack is laid out as FORMAT.md §3 says: at most 1 GiB, blocks tiling
    /// it from its header to its end, each block within the block limits and each chunk
    /// inside its block's decoded body.
    pub fn check(&self) -> Result<(), String> {
        for p in &self.packs {
            let pack = crate::store::names::hex(&p.id);
            if p.len > MAX_PACK_LEN {
                return Err(format!("pack {pack} is {} bytes, more than 1 GiB", p.len));
            }
            let mut at = RECORD_LEN as u64;
            for (i, b) in p.blocks.iter().enumerate() {
                if b.offset != at {
                    return Err(format!(
                        "pack {pack}: block {i} is at {} where the one before ends at {at}",
                        b.offset
                    ));
                }
                if b.raw_len > MAX_BLOCK_RAW {
                    return Err(format!(
                        "pack {pack}: block {i} decodes to {} bytes",
                        b.raw_len
                    ));
                }
                at = b.offset + BLOCK_HEADER_LEN as u64 + u64::from(b.stored_len);
                for c in &b.chunks {
                    if c.len == 0 || u64::from(c.offset) + u64::from(c.len) > u64::from(b.raw_len) {
                        return Err(format!(
                            "pack {pack}: block {i} has a chunk at {} of {} bytes outside its {} \
                             bytes",
                            c.offset, c.len, b.raw_len
                        ));
                    }
                }
            }
            if at != p.len {
                return Err(format!(
                    "pack {pack}: its blocks end at {at}, its length is {}",
                    p.len
                ));
            }
        }
        Ok(())
    }
}

/// `index` as stored (zstd, a random nonce), after [`StoreIndex::check`].
pub fn encode_index(
    index: &StoreIndex,
    keys: Option<&crate::store::crypt::StoreKeys>,
) -> Result<Vec<u8>, ObjectError> {
    let name = "an index object";
    index.check().map_err(|e| ObjectError::new(name, e))?;
    let nonce =
        crate::store::random_bytes::<16>().map_err(|e| ObjectError::new(name, e.to_string()))?;
    encode_frame(name, Kind::Index, nonce, index, Some(INDEX_LEVEL), keys)
}

/// The name of the index object `bytes`: the BLAKE3 of all of it.
pub fn index_object_name(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// The index `bytes` hold, checked as [`StoreIndex::check`] does. `expected`, when given, is
/// the name the object was read under: bytes that do not hash to it are refused.
pub fn decode_index(
    name: &str,
    bytes: &[u8],
    expected: Option<&[u8; 32]>,
    keys: Option<&crate::store::crypt::StoreKeys>,
) -> Result<StoreIndex, ObjectError> {
    if let Some(want) = expected
        && index_object_name(bytes) != *want
    {
        return Err(ObjectError::new(
            name,
            "the object does not hash to its name (damaged or replaced)",
        ));
    }
    let (_, index): (_, StoreIndex) = decode_frame(name, Kind::Index, bytes, keys)?;
    index.check().map_err(|e| ObjectError::new(name, e))?;
    Ok(index)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pack of two blocks, the first holding two chunks.
    pub(crate) fn sample() -> StoreIndex {
        let block = |offset, stored_len, chunks| IndexBlock {
            offset,
            stored_len,
            raw_len: 1000,
            codec: Codec::Zstd,
            hash: [offset as u8; 32],
            chunks,
        };
        let chunk = |n: u8, offset, len| IndexChunk {
            id: ChunkHash([n; 32]),
            offset,
            len,
        };
        StoreIndex {
            packs: vec![IndexPack {
                id: [0xab; 32],
                len: 64 + 16 + 300 + 16 + 500,
                blocks: vec![
                    block(64, 300, vec![chunk(1, 0, 400), chunk(2, 400, 600)]),
                    block(64 + 16 + 300, 500, vec![chunk(3, 0, 1000)]),
                ],
            }],
        }
    }

    #[test]
    fn index_round_trips_and_is_checked_by_its_name() {
        let bytes = encode_index(&sample(), None).unwrap();
        assert_eq!((bytes[10], bytes[11]), (2, 2), "kind 2, zstd");
        let name = index_object_name(&bytes);
        assert_eq!(name, *blake3::hash(&bytes).as_bytes());
        assert_eq!(
            decode_index("i", &bytes, Some(&name), None).unwrap(),
            sample()
        );
        assert_eq!(decode_index("i", &bytes, None, None).unwrap(), sample());
        // Two encodings of one index differ (the nonce), so names never collide.
        assert_ne!(
            index_object_name(&encode_index(&sample(), None).unwrap()),
            name
        );
        let e = decode_index("s3://b/p/index/x", &bytes, Some(&[0; 32]), None).unwrap_err();
        assert!(e.to_string().contains("does not hash to its name"), "{e}");
    }

    #[test]
    fn packs_whose_blocks_do_not_tile_are_refused() {
        let mut gap = sample();
        gap.packs[0].blocks[1].offset += 1;
        gap.packs[0].len += 1;
        let mut short = sample();
        short.packs[0].len -= 1;
        let mut first = sample();
        first.packs[0].blocks[0].offset = 0;
        let mut outside = sample();
        outside.packs[0].blocks[0].chunks[1].len = 601;
        let mut empty = sample();
        empty.packs[0].blocks[0].chunks[0].len = 0;
        let mut huge = sample();
        huge.packs[0].blocks[1].raw_len = MAX_BLOCK_RAW + 1;
        let mut big = sample();
        big.packs[0].len = MAX_PACK_LEN + 1;
        for (index, why) in [
            (gap, "where the one before ends"),
            (short, "its blocks end at"),
            (first, "is at 0"),
            (outside, "outside its 1000 bytes"),
            (empty, "of 0 bytes"),
            (huge, "decodes to 2097153"),
            (big, "more than 1 GiB"),
        ] {
            let e = encode_index(&index, None).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
            let raw = encode_frame("i", Kind::Index, [0; 16], &index, Some(3), None).unwrap();
            let e = decode_index("s3://b/p/index/x", &raw, None, None)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("s3://b/p/index/x: ") && e.contains(why),
                "{e}"
            );
        }
    }
}
