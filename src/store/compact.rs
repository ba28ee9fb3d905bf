//! `osimage export --compact` (docs/STORE.md §8): a store version's blocks written into new
//! per-image packs that hold only the blocks it uses. A store pack shared with other versions
//! may hold blocks this version has no chunk record for; the byte-copy export carries them,
//! this one leaves them out. Each used block is copied as stored, never decompressed: its
//! header and body read from the store's pack, checked against the hash its block record
//! holds, and handed with that hash to the capture's pack thread (`payload::packer`, as a
//! refresh hands it the blocks it carries from its base), which writes image packs
//! (version-2 headers, the image's id and each pack's position) and their records. The
//! manifest is the version's with the new pack and block tables, the chunk records pointed at
//! the new block indices and the `store` extension dropped: a format version 2 image that
//! osimages without stores read too.

use crossbeam_channel::bounded;

use crate::format::PayloadError;
use crate::format::frame::encode_manifest;
use crate::format::manifest::{BlockRecord, Manifest, PackRecord};
use crate::format::records::{BLOCK_HEADER_LEN, BlockHeader, MAX_PACK_LEN};
use crate::format::sink::PackSink;
use crate::format::source::RangeRead;
use crate::payload::packer::{Outgoing, PackOwner, pack_blocks};
use crate::progress::Progress;

use super::export::{CopiedPacks, ExportSource, used_blocks};

/// Blocks in flight between the reader and the pack thread.
const IN_FLIGHT: usize = 16;

/// What a compact copy wrote: the new manifest's frame and the counts.
pub struct Compacted {
    /// The manifest frame of the output (new pack and block tables, no `store` extension).
    pub frame: Vec<u8>,
    /// New packs and their bytes; the blocks left out and their stored bytes.
    pub packs: CopiedPacks,
}

/// Which blocks `m` uses (has a chunk record in), and for each old block index its new one.
fn renumber(m: &Manifest) -> Vec<Option<u32>> {
    let mut next = 0u32;
    used_blocks(m)
        .into_iter()
        .map(|u| {
            u.then(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

/// The manifest of the compact output: `m` with `packs` and `blocks` for its tables, the
/// chunk records moved to the new block indices, and no `store` extension.
fn rewrite(
    m: &Manifest,
    new_index: &[Option<u32>],
    packs: Vec<PackRecord>,
    blocks: Vec<BlockRecord>,
) -> Result<Manifest, PayloadError> {
    let mut out = m.clone();
    out.packs = packs;
    out.blocks = blocks;
    for c in &mut out.chunks {
        c.block = new_index
            .get(c.block as usize)
            .copied()
            .flatten()
            .ok_or_else(|| PayloadError::format("internal: a chunk's block was left out"))?;
    }
    out.extensions
        .retain(|e| e.name != crate::format::store_ref::NAME);
    Ok(out)
}

impl ExportSource {
    /// Writes the used blocks into new image packs through `sink`, in manifest order, each
    /// checked against its record's hash; returns the new manifest's frame.
    pub fn copy_compact(
        &self,
        sink: &mut dyn PackSink,
        progress: &dyn Progress,
    ) -> Result<Compacted, PayloadError> {
        let m = self.manifest();
        let new_index = renumber(m);
        let mut starts = Vec::with_capacity(m.packs.len());
        let mut at = 0u64;
        for p in &m.packs {
            starts.push(at);
            at += p.len;
        }
        let extent = |b: &BlockRecord| {
            let start = starts.get(b.pack as usize).copied().unwrap_or(u64::MAX);
            (
                start.saturating_add(b.offset),
                BLOCK_HEADER_LEN as u64 + u64::from(b.stored_len),
            )
        };
        let mut counts = CopiedPacks::default();
        let mut used = Vec::new();
        for (b, n) in m.blocks.iter().zip(&new_index) {
            match n {
                Some(n) => used.push((*n, b)),
                None => {
                    counts.unused_blocks += 1;
                    counts.unused_bytes += extent(b).1;
                }
            }
        }
        let packs: &dyn RangeRead = self.plain_packs();
        packs.plan(used.iter().map(|(_, b)| extent(b)).collect());
        let total: u64 = used.iter().map(|(_, b)| extent(b).1).sum();
        progress.start("copying the blocks this version uses", total);
        let (tx, rx) = bounded::<Outgoing>(IN_FLIGHT);
        let image_id = m.image.id;
        let (tables, sent) = std::thread::scope(|s| {
            let packer =
                s.spawn(move || pack_blocks(rx, sink, image_id, PackOwner::Image, 0, MAX_PACK_LEN));
            let sent = (|| {
                for (n, b) in &used {
                    let (at, len) = extent(b);
                    let mut bytes = vec![0u8; len as usize];
                    packs
                        .read_exact_at(&mut bytes, at)
                        .map_err(|e| self.pack_error(b.pack, e.to_string()))?;
                    let header = self.checked_header(b, &bytes)?;
                    progress.advance(len);
                    let out = Outgoing {
                        blocks: vec![(*n, header, b.hash)],
                        bytes,
                        source: None,
                        carried: true,
                        chunks: Vec::new(),
                    };
                    if tx.send(out).is_err() {
                        // The pack thread stopped: its error says why.
                        break;
                    }
                }
                Ok(())
            })();
            drop(tx);
            let tables = packer
                .join()
                .unwrap_or_else(|_| Err(PayloadError::format("the pack thread panicked")));
            (tables, sent)
        });
        sent?;
        let (new_packs, new_blocks) = tables?;
        progress.finish();
        counts.packs = new_packs.len() as u64;
        counts.bytes = new_packs.iter().map(|p| p.len).sum();
        let manifest = rewrite(m, &new_index, new_packs, new_blocks)?;
        Ok(Compacted {
            frame: encode_manifest(&manifest)?,
            packs: counts,
        })
    }

    /// The block header at the start of `bytes`, once `bytes` (header and body as stored)
    /// hash to the record's hash and the header agrees with the record.
    fn checked_header(&self, b: &BlockRecord, bytes: &[u8]) -> Result<BlockHeader, PayloadError> {
        if *blake3::hash(bytes).as_bytes() != b.hash {
            return Err(self.pack_error(
                b.pack,
                format!("the block at offset {} does not match its hash", b.offset),
            ));
        }
        let mut head = [0u8; BLOCK_HEADER_LEN];
        head.copy_from_slice(&bytes[..BLOCK_HEADER_LEN]);
        let h = BlockHeader::decode(&head)?;
        if (h.codec, h.raw_len, h.stored_len) != (b.codec, b.raw_len, b.stored_len) {
            return Err(self.pack_error(
                b.pack,
                format!(
                    "the block header at offset {} disagrees with its record",
                    b.offset
                ),
            ));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> BlockRecord {
        BlockRecord {
            pack: 0,
            offset: 0,
            stored_len: 0,
            raw_len: 0,
            codec: crate::format::manifest::Codec::Raw,
            hash: [0; 32],
        }
    }

    #[test]
    fn blocks_without_chunks_are_left_out_and_the_rest_renumbered() {
        let mut m = Manifest {
            blocks: vec![block(); 5],
            ..Manifest::default()
        };
        for block in [1u32, 3, 3, 4] {
            m.chunks.push(crate::format::manifest::ChunkRecord {
                id: crate::format::manifest::ChunkId([0; 16]),
                block,
                offset: 0,
                len: 0,
            });
        }
        let n = renumber(&m);
        assert_eq!(n, [None, Some(0), None, Some(1), Some(2)]);
        m.extensions.push(crate::format::manifest::Extension {
            name: crate::format::store_ref::NAME.into(),
            version: 1,
            required: true,
            data: Vec::new(),
        });
        let out = rewrite(&m, &n, Vec::new(), vec![block(); 3]).expect("rewrite");
        let blocks: Vec<u32> = out.chunks.iter().map(|c| c.block).collect();
        assert_eq!(blocks, [0, 1, 1, 2]);
        assert!(out.extensions.is_empty(), "the store extension is dropped");
        assert_eq!(out.blocks.len(), 3);
    }
}
