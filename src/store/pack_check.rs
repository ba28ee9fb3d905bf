//! One pack read through and checked (docs/STORE.md §2.3 "Integrity", FORMAT.md §3): its
//! header must be a store pack of this store, its blocks must tile it, each block must match
//! its recorded hash, and the header with the block hashes must make the pack's hash (its
//! id). `export` copies a version's packs through it (every byte it writes was checked) and
//! `store check --read-data` reads packs through it, keeping nothing.

use crate::format::PayloadError;
use crate::format::manifest::Manifest;
use crate::format::records::{BLOCK_HEADER_LEN, PackHeader, RECORD_LEN as PACK_HEADER_LEN};
use crate::format::source::RangeRead;
use crate::progress::Progress;

/// How much of a pack is read (and handed on) at a time.
pub const STEP: u64 = 4 << 20;

/// Tells `source` that all of its `total` bytes will be read, front to back, in [`STEP`]s:
/// fetched ahead in parallel (docs/STORE.md §7.2.1).
pub fn plan_whole(source: &dyn RangeRead, total: u64) {
    let mut steps = Vec::new();
    let mut at = 0u64;
    while at < total {
        let n = (total - at).min(STEP);
        steps.push((at, n));
        at += n;
    }
    source.plan(steps);
}

/// Where a block lies in its pack and what it hashes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpan {
    pub offset: u64,
    /// The block as stored: its header and its body, what tiles the pack and what its hash
    /// covers (FORMAT.md §3).
    pub len: u64,
    pub hash: [u8; 32],
}

/// Each of `m`'s packs' blocks, in offset order (pack by pack, in manifest order).
pub fn block_spans(m: &Manifest) -> Vec<Vec<BlockSpan>> {
    let mut blocks: Vec<Vec<BlockSpan>> = vec![Vec::new(); m.packs.len()];
    for b in &m.blocks {
        if let Some(list) = blocks.get_mut(b.pack as usize) {
            list.push(BlockSpan {
                offset: b.offset,
                len: BLOCK_HEADER_LEN as u64 + u64::from(b.stored_len),
                hash: b.hash,
            });
        }
    }
    for list in &mut blocks {
        list.sort_by_key(|b| b.offset);
    }
    blocks
}

/// One pack to check: its bytes at `at` in `source`, its length and hash (id), its blocks
/// in offset order, the store whose pack it must be, and its name for messages.
pub struct PackCheck<'a> {
    pub source: &'a dyn RangeRead,
    pub at: u64,
    pub len: u64,
    pub hash: [u8; 32],
    pub blocks: &'a [BlockSpan],
    pub store_id: [u8; 16],
    /// The pack object's address.
    pub name: &'a str,
}

impl PackCheck<'_> {
    fn fail(&self, msg: String) -> PayloadError {
        PayloadError::Image {
            path: self.name.into(),
            msg,
        }
    }

    /// The blocks must tile the pack after its header (FORMAT.md §3): checked before a byte
    /// is read, so a manifest that says otherwise cannot make the hashes below skip bytes.
    fn check_tiling(&self) -> Result<(), PayloadError> {
        let mut end = PACK_HEADER_LEN as u64;
        for b in self.blocks {
            if b.offset != end {
                return Err(self.fail(format!(
                    "its blocks do not tile it (a block at {} where one was to start at {end})",
                    b.offset
                )));
            }
            end = b.offset.saturating_add(b.len);
        }
        if end != self.len {
            return Err(self.fail(format!("its blocks end at {end}, the pack at {}", self.len)));
        }
        Ok(())
    }

    /// The header (the pack's first 64 bytes) must be a store pack of this store.
    fn check_header(&self, bytes: &[u8]) -> Result<(), PayloadError> {
        let Some(b) = bytes.get(..PACK_HEADER_LEN).and_then(|h| h.try_into().ok()) else {
            return Err(self.fail("shorter than a pack header".into()));
        };
        match PackHeader::decode(b) {
            Ok(PackHeader::Store { store_id, .. }) if store_id == self.store_id => Ok(()),
            Ok(PackHeader::Store { .. }) => {
                Err(self.fail("its header names another store (damaged or replaced)".into()))
            }
            Ok(PackHeader::Image { .. }) => Err(self.fail(
                "its header is an image's pack, not a store pack (damaged or replaced)".into(),
            )),
            Err(e) => Err(self.fail(format!("its header: {e}"))),
        }
    }

    /// Reads the pack in steps of [`STEP`], hands each step to `out` once it is hashed, and
    /// checks the header, every block and the pack hash; the first difference stops it,
    /// naming the pack (and the block's offset).
    pub fn run(
        &self,
        out: &mut dyn FnMut(&[u8]) -> Result<(), PayloadError>,
        progress: &dyn Progress,
    ) -> Result<(), PayloadError> {
        self.check_tiling()?;
        let mut pack_hash = blake3::Hasher::new();
        let mut block_hash = blake3::Hasher::new();
        let mut next = 0usize;
        let mut buf = vec![0u8; STEP.min(self.len) as usize];
        let mut pos = 0u64;
        while pos < self.len {
            let n = (self.len - pos).min(STEP) as usize;
            let bytes = &mut buf[..n];
            self.source
                .read_exact_at(bytes, self.at + pos)
                .map_err(|e| self.fail(format!("cannot read it: {e}")))?;
            if pos == 0 {
                self.check_header(bytes)?;
            }
            let mut i = 0usize;
            while i < n {
                let at = pos + i as u64;
                if at < PACK_HEADER_LEN as u64 {
                    let k = ((PACK_HEADER_LEN as u64 - at) as usize).min(n - i);
                    pack_hash.update(&bytes[i..i + k]);
                    i += k;
                    continue;
                }
                let Some(b) = self.blocks.get(next) else {
                    return Err(self.fail("internal: bytes past its last block".into()));
                };
                let k = ((b.offset + b.len - at) as usize).min(n - i);
                block_hash.update(&bytes[i..i + k]);
                i += k;
                if at + k as u64 == b.offset + b.len {
                    let got = *block_hash.finalize().as_bytes();
                    if got != b.hash {
                        return Err(self.fail(format!(
                            "the block at {} does not match its hash (damaged)",
                            b.offset
                        )));
                    }
                    pack_hash.update(&got);
                    block_hash = blake3::Hasher::new();
                    next += 1;
                }
            }
            out(bytes)?;
            progress.advance(n as u64);
            pos += n as u64;
        }
        if *pack_hash.finalize().as_bytes() != self.hash {
            return Err(self.fail(
                "its header and block hashes do not make its recorded hash (damaged)".into(),
            ));
        }
        Ok(())
    }
}
