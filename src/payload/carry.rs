//! Blocks a refresh carries over from its base (docs/REFRESH.md, "Block copies"): once the
//! workers are done, every base block the new image uses is sent to the pack thread in the
//! base's order, so blocks adjacent there travel as one run: one kernel-side copy
//! (`PackSink::write_copy`) per run, the blocks' hashes taken from the base's manifest. Only a
//! base of format version 1 (no block hashes) or an encrypted one is read: one read per run.

use std::collections::HashMap;

use crossbeam_channel::Sender;

use super::packer::Outgoing;
use super::writer::BaseImage;
use crate::format::PayloadError;
use crate::format::manifest::BlockIndex;
use crate::format::records::BlockHeader;
use crate::format::sink::BlockSource;

/// A run that is read is at most this long: bounds the memory of the runs in flight.
const RUN_BYTES: u64 = 4 << 20;
/// A run copied unread is at most this long: each is one copy (split by the sink for its
/// writeback), and each boundary between runs may cost a 4 KiB block that cannot be shared.
const UNREAD_RUN_BYTES: u64 = 1 << 30;

/// Base blocks as stored, for `BaseImage::stored_run`.
pub struct StoredRun {
    /// Each block's header (checked against the base's manifest when read).
    pub headers: Vec<BlockHeader>,
    /// Each block's BLAKE3 as stored (header and body).
    pub hashes: Vec<[u8; 32]>,
    /// Headers and bodies back to back, as in the base's pack; empty when not read.
    pub bytes: Vec<u8>,
    /// Where `bytes` lie in the base's file (a plain base only).
    pub source: Option<BlockSource>,
}

/// Sends each base block of `carried` (base block → this image's block) to the pack thread,
/// in runs of blocks adjacent in the base.
pub fn send_carried(
    base: &dyn BaseImage,
    carried: &HashMap<BlockIndex, BlockIndex>,
    tx: &Sender<Outgoing>,
) -> Result<(), PayloadError> {
    let mut order = Vec::with_capacity(carried.len());
    for (&from, &to) in carried {
        let (pack, range) = base.block_extent(from).ok_or_else(|| {
            PayloadError::format(format!("internal: base block {from} does not exist"))
        })?;
        order.push((pack, range, from, to));
    }
    order.sort_by_key(|(pack, range, _, _)| (*pack, range.start));
    let limit = match base.copies_unread() {
        true => UNREAD_RUN_BYTES,
        false => RUN_BYTES,
    };
    let mut run: Vec<(BlockIndex, BlockIndex)> = Vec::new();
    let (mut run_pack, mut run_end, mut run_len) = (0u32, 0u64, 0u64);
    for (pack, range, from, to) in order {
        let len = range.end - range.start;
        let joins = pack == run_pack && range.start == run_end && run_len + len <= limit;
        if !joins && !run.is_empty() {
            send_run(base, &std::mem::take(&mut run), tx)?;
            run_len = 0;
        }
        run.push((from, to));
        (run_pack, run_end) = (pack, range.end);
        run_len += len;
    }
    if !run.is_empty() {
        send_run(base, &run, tx)?;
    }
    Ok(())
}

/// Reads one run of adjacent base blocks and sends it.
fn send_run(
    base: &dyn BaseImage,
    run: &[(BlockIndex, BlockIndex)],
    tx: &Sender<Outgoing>,
) -> Result<(), PayloadError> {
    let from: Vec<BlockIndex> = run.iter().map(|&(f, _)| f).collect();
    let stored = base.stored_run(&from)?;
    if stored.headers.len() != run.len() || stored.hashes.len() != run.len() {
        return Err(PayloadError::format("internal: a base run lost blocks"));
    }
    let blocks = run
        .iter()
        .zip(stored.headers)
        .zip(stored.hashes)
        .map(|((&(_, to), h), hash)| (to, h, hash))
        .collect();
    tx.send(Outgoing {
        blocks,
        bytes: stored.bytes,
        source: stored.source,
        carried: true,
        chunks: Vec::new(),
    })
    .map_err(|_| PayloadError::format("the pack writer stopped"))
}
