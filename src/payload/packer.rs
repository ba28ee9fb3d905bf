//! The pack thread of the capture pipeline: appends the blocks the workers send to packs of at
//! most a given length (1 GiB in an image, a store's `pack_size` in a store), and records each block's place and hash and each pack's hash (docs/FORMAT.md
//! §1–3).
//!
//! A message is one freshly compressed block (hashed by the worker that compressed it), or a
//! run of blocks a refresh carries over from its base, adjacent there (docs/REFRESH.md, "Block
//! copies"), with their hashes from the base's manifest. A pack's hash covers its header and
//! its blocks' hashes, so a carried run need not be read here: it is handed to the sink with
//! where it lies in the base, and a sink writing to a file has the kernel copy it
//! (`PackSink::write_copy`).

use crossbeam_channel::Receiver;

use crate::format::PayloadError;
use crate::format::manifest::{BlockIndex, BlockRecord, PackRecord};
use crate::format::records::{BLOCK_HEADER_LEN, BlockHeader, MAX_PACK_LEN, PackHeader, RECORD_LEN};
use crate::format::sink::{BlockSource, NewChunk, PackSink};

/// One block on its way: this image's index for it, its header, and the BLAKE3 of its stored
/// bytes (header and body).
pub type BlockEntry = (BlockIndex, BlockHeader, [u8; 32]);

/// Blocks on their way to the pack thread, written back to back in this order.
pub struct Outgoing {
    pub blocks: Vec<BlockEntry>,
    /// Each block's header and stored body, back to back; empty when the run is copied from
    /// `source` without being read.
    pub bytes: Vec<u8>,
    /// Where the run lies in the base, for blocks carried over from a plain base: the sink
    /// copies them from there.
    pub source: Option<BlockSource>,
    /// Blocks carried over from a base, as stored there (encrypted bases too).
    pub carried: bool,
    /// The new chunks of a freshly compressed block (their records name it), in block order;
    /// empty for carried runs. The sink is told them with the block's place (`PackSink::block_placed`).
    pub chunks: Vec<NewChunk>,
}

impl Outgoing {
    /// One block: `header` and its stored `body`, hashed here, holding `chunks`.
    pub fn block(
        index: BlockIndex,
        header: BlockHeader,
        body: &[u8],
        chunks: Vec<NewChunk>,
    ) -> Self {
        let mut bytes = Vec::with_capacity(BLOCK_HEADER_LEN + body.len());
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(body);
        let hash = *blake3::hash(&bytes).as_bytes();
        Outgoing {
            blocks: vec![(index, header, hash)],
            bytes,
            source: None,
            carried: false,
            chunks,
        }
    }

    /// The run's length as stored.
    fn len(&self) -> usize {
        self.blocks
            .iter()
            .map(|(_, h, _)| BLOCK_HEADER_LEN + h.stored_len as usize)
            .sum()
    }
}

/// Who the packs a capture writes belong to, which decides their headers (FORMAT.md §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PackOwner {
    /// The image being written: version-2 headers with each pack's position and the image
    /// id, as every image without a store has.
    #[default]
    Image,
    /// The store `store_id` (docs/STORE.md §2.3): version-3 store-pack headers, each with a
    /// fresh random salt. The manifest must then carry the `store` extension naming the same
    /// store (`format::store_ref::StoreRef`), or no reader opens the image. Only tests make
    /// it until the capture into a store lands (docs/STORE.md §13, stage 3).
    #[cfg_attr(not(test), allow(dead_code))]
    Store { store_id: [u8; 16] },
}

impl PackOwner {
    /// The header of the pack at `index` of the image `image_id`.
    fn header(&self, index: u32, image_id: [u8; 16]) -> Result<PackHeader, PayloadError> {
        Ok(match *self {
            PackOwner::Image => PackHeader::Image { index, image_id },
            PackOwner::Store { store_id } => PackHeader::Store {
                store_id,
                salt: fresh_salt()?,
            },
        })
    }
}

/// 16 bytes from the kernel's random source: a store pack's salt makes its hash, and so its
/// object name, new (docs/STORE.md §2.3, §5.2), so it must not repeat; without randomness
/// the capture fails rather than risk it.
fn fresh_salt() -> Result<[u8; 16], PayloadError> {
    crate::sys::random_bytes().map_err(|e| {
        PayloadError::format(format!("no random numbers for a store pack's salt: {e}"))
    })
}

/// The packs written so far and the pack being written.
struct Packs<'a> {
    sink: &'a mut dyn PackSink,
    image_id: [u8; 16],
    owner: PackOwner,
    packs: Vec<PackRecord>,
    blocks: Vec<Option<BlockRecord>>,
    /// A pack closes before the block that would take it past this length.
    limit: u64,
    /// The open pack: its length so far, and the hash of its header and its blocks' hashes.
    open: Option<(u64, blake3::Hasher)>,
}

/// A refresh holds its new blocks back, up to this many bytes, and writes them after the
/// blocks it carries over from its base (docs/REFRESH.md, "Shared extents").
pub const HOLD_FRESH_BYTES: usize = 256 << 20;

/// The pack thread: writes every message of `rx` into `sink`; returns the pack and block
/// tables (a block's record at its index). A refresh passes `hold` = HOLD_FRESH_BYTES: the
/// new blocks (compressed by the workers while the base's blocks wait for them to finish) are
/// held back and written after the carried ones, as long as they fit in `hold` bytes; an
/// unchanged part of the base then lands at the offsets it had there, which lets XFS and btrfs
/// share its extents. Past `hold`, or with `hold` 0, blocks are written as they come. The
/// packs' headers are those of `owner`'s packs, for the image `image_id`.
///
/// A pack is closed before the block that would take it past `limit` bytes (header included;
/// at most MAX_PACK_LEN, which a larger `limit` is cut to), so no pack is longer than `limit`
/// unless its one block alone is. (docs/STORE.md §2.3 also allows a store pack to end one block
/// past its `pack_size`; this writer keeps to the stricter rule.)
pub fn pack_blocks(
    rx: Receiver<Outgoing>,
    sink: &mut dyn PackSink,
    image_id: [u8; 16],
    owner: PackOwner,
    hold: usize,
    limit: u64,
) -> Result<(Vec<PackRecord>, Vec<BlockRecord>), PayloadError> {
    let mut p = Packs {
        sink,
        image_id,
        owner,
        packs: Vec::new(),
        blocks: Vec::new(),
        limit: limit.min(MAX_PACK_LEN),
        open: None,
    };
    let mut held: Vec<Outgoing> = Vec::new();
    let mut held_bytes = 0usize;
    let mut holding = hold > 0;
    for out in rx {
        if !holding || out.carried {
            p.append(&out)?;
            continue;
        }
        held_bytes += out.bytes.len();
        held.push(out);
        if held_bytes > hold {
            // Too many changes to keep in memory: written in arrival order, as without a base.
            holding = false;
            for h in held.drain(..) {
                p.append(&h)?;
            }
        }
    }
    for h in &held {
        p.append(h)?;
    }
    p.close()?;
    let blocks = p
        .blocks
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| PayloadError::format("internal: a block index was never written"))?;
    Ok((p.packs, blocks))
}

impl Packs<'_> {
    /// Appends the message's blocks, starting a new pack where the open one would pass
    /// the limit; the bytes between pack boundaries go to the sink in one call.
    fn append(&mut self, out: &Outgoing) -> Result<(), PayloadError> {
        let run = out.len();
        if (out.bytes.len() != run && !out.bytes.is_empty())
            || (out.bytes.is_empty() && out.source.is_none())
        {
            return Err(PayloadError::format("internal: a block run is short"));
        }
        let mut at = 0usize;
        let mut segment = 0usize;
        for &(index, header, hash) in &out.blocks {
            let total = BLOCK_HEADER_LEN + header.stored_len as usize;
            if self
                .open
                .as_ref()
                .is_some_and(|(len, _)| len + total as u64 > self.limit)
            {
                self.emit(out, segment, at)?;
                segment = at;
                self.close()?;
            }
            let len = self.begin()?;
            let i = index as usize;
            if self.blocks.len() <= i {
                self.blocks.resize(i + 1, None);
            }
            let rec = BlockRecord {
                pack: self.packs.len() as u32,
                offset: len,
                stored_len: header.stored_len,
                raw_len: header.raw_len,
                codec: header.codec,
                hash,
            };
            let first = out.chunks.partition_point(|c| c.record.block < index);
            let last = out.chunks.partition_point(|c| c.record.block <= index);
            self.sink.block_placed(&rec, &out.chunks[first..last])?;
            self.blocks[i] = Some(rec);
            if let Some((len, h)) = self.open.as_mut() {
                *len += total as u64;
                h.update(&hash);
            }
            at += total;
        }
        self.emit(out, segment, at)
    }

    /// Writes the run's bytes `from..to`, all of them in the open pack: copied from the base
    /// when the run has a source, else from memory.
    fn emit(&mut self, out: &Outgoing, from: usize, to: usize) -> Result<(), PayloadError> {
        if from == to {
            return Ok(());
        }
        match &out.source {
            Some(s) => self.sink.write_copy(
                (to - from) as u64,
                &BlockSource {
                    file: s.file.clone(),
                    offset: s.offset + from as u64,
                    path: s.path.clone(),
                },
            ),
            None => self.sink.write_all(&out.bytes[from..to]),
        }
    }

    /// The open pack's length so far, starting one (with its header) if none is open.
    fn begin(&mut self) -> Result<u64, PayloadError> {
        if let Some((len, _)) = &self.open {
            return Ok(*len);
        }
        let index = self.packs.len() as u32;
        let header = self.owner.header(index, self.image_id)?.encode();
        self.sink.begin_pack(index)?;
        self.sink.write_all(&header)?;
        let mut h = blake3::Hasher::new();
        h.update(&header);
        self.open = Some((RECORD_LEN as u64, h));
        Ok(RECORD_LEN as u64)
    }

    /// Ends the open pack, if any, and records its length and hash (which the sink is told).
    fn close(&mut self) -> Result<(), PayloadError> {
        if let Some((len, h)) = self.open.take() {
            let rec = PackRecord {
                len,
                hash: *h.finalize().as_bytes(),
            };
            self.sink.end_pack(&rec)?;
            self.packs.push(rec);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::Codec;

    /// Collects what the pack thread writes, and the records it is told at each pack's end.
    #[derive(Default)]
    struct Collect(Vec<u8>, Vec<PackRecord>);

    impl PackSink for Collect {
        fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
        fn begin_pack(&mut self, _index: u32) -> Result<(), PayloadError> {
            Ok(())
        }
        fn end_pack(&mut self, rec: &PackRecord) -> Result<(), PayloadError> {
            self.1.push(rec.clone());
            Ok(())
        }
    }

    /// Block `index` with a body of `len` bytes `fill`, fresh or carried.
    fn message(index: BlockIndex, len: u32, fill: u8, carried: bool) -> Outgoing {
        let header = BlockHeader {
            codec: Codec::Raw,
            raw_len: len,
            stored_len: len,
        };
        let mut out = Outgoing::block(index, header, &vec![fill; len as usize], Vec::new());
        out.carried = carried;
        out
    }

    /// Block offsets in the pack, by index, after sending fresh 0, carried 1, fresh 2,
    /// carried 3 in that order with `hold`.
    fn offsets(hold: usize) -> Vec<u64> {
        let (tx, rx) = crossbeam_channel::unbounded();
        for (i, carried) in [(0, false), (1, true), (2, false), (3, true)] {
            tx.send(message(i, 100, i as u8, carried)).unwrap();
        }
        drop(tx);
        let mut sink = Collect::default();
        let (packs, blocks) =
            pack_blocks(rx, &mut sink, [9; 16], PackOwner::Image, hold, MAX_PACK_LEN).unwrap();
        assert_eq!(packs.len(), 1);
        assert_eq!(packs[0].len, sink.0.len() as u64);
        blocks.iter().map(|b| b.offset).collect()
    }

    #[test]
    fn a_refresh_writes_its_new_blocks_after_the_carried_ones_while_they_fit() {
        let (h, b) = (RECORD_LEN as u64, (BLOCK_HEADER_LEN + 100) as u64);
        // Held: carried 1 and 3 first, then the new 0 and 2 in their order.
        assert_eq!(offsets(1000), [h + 2 * b, h, h + 3 * b, h + b]);
        // Nothing held (a first capture), or too much to hold: as they come.
        assert_eq!(offsets(0), [h, h + b, h + 2 * b, h + 3 * b]);
        assert_eq!(offsets(100), [h, h + b, h + 2 * b, h + 3 * b]);
        // Room for one new block: 0 waits until 2 overflows the hold, then both go, in order.
        assert_eq!(offsets(150), [h + b, h, h + 2 * b, h + 3 * b]);
    }

    #[test]
    fn packs_close_before_the_block_that_would_pass_the_limit() {
        let (h, b) = (RECORD_LEN as u64, (BLOCK_HEADER_LEN + 100) as u64);
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..7 {
            tx.send(message(i, 100, i as u8, false)).unwrap();
        }
        drop(tx);
        let mut sink = Collect::default();
        // Room for exactly three blocks; a fourth would pass the limit by one byte.
        let limit = h + 3 * b;
        let (packs, blocks) =
            pack_blocks(rx, &mut sink, [9; 16], PackOwner::Image, 0, limit).unwrap();
        let lens: Vec<u64> = packs.iter().map(|p| p.len).collect();
        assert_eq!(lens, [h + 3 * b, h + 3 * b, h + b]);
        let placed: Vec<(u32, u64)> = blocks.iter().map(|r| (r.pack, r.offset)).collect();
        assert_eq!(
            placed,
            [
                (0, h),
                (0, h + b),
                (0, h + 2 * b),
                (1, h),
                (1, h + b),
                (1, h + 2 * b),
                (2, h)
            ]
        );
        // The sink learns each pack's record as it ends, the same the tables hold.
        assert_eq!(sink.1, packs);
        assert_eq!(sink.0.len() as u64, lens.iter().sum::<u64>());
        // One byte less: two blocks per pack.
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..3 {
            tx.send(message(i, 100, i as u8, false)).unwrap();
        }
        drop(tx);
        let mut sink = Collect::default();
        let (packs, _) =
            pack_blocks(rx, &mut sink, [9; 16], PackOwner::Image, 0, limit - 1).unwrap();
        let lens: Vec<u64> = packs.iter().map(|p| p.len).collect();
        assert_eq!(lens, [h + 2 * b, h + b]);
    }
}
