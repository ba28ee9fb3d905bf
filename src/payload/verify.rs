//! `verify`: every pack hash, every block (its hash, version 2) and every chunk checked;
//! damage named by file.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::reader::{BlockCache, PayloadReader};
use crate::format::PayloadError;
use crate::format::manifest::{ChunkIndex, EntryKind};
use crate::format::records::RECORD_LEN;
use crate::progress::Progress;

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub packs: usize,
    pub blocks: usize,
    pub chunks: usize,
    /// Bytes of chunk data checked.
    pub bytes: u64,
    /// Problems found, one line each (pack or block level).
    pub problems: Vec<String>,
    /// Paths (relative, raw) of the files whose content is damaged.
    pub damaged_files: Vec<Vec<u8>>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.damaged_files.is_empty()
    }
}

/// Checks everything in `r` with `threads` threads.
pub fn verify(
    r: &PayloadReader,
    threads: usize,
    progress: &dyn Progress,
) -> Result<VerifyReport, PayloadError> {
    let m = r.manifest();
    let mut by_block: Vec<Vec<ChunkIndex>> = vec![Vec::new(); m.blocks.len()];
    for (i, c) in m.chunks.iter().enumerate() {
        by_block[c.block as usize].push(i as ChunkIndex);
    }
    // Version 1 hashes every pack whole besides reading its blocks.
    let pack_bytes: u64 = match r.has_block_hashes() {
        true => 0,
        false => m.packs.iter().map(|p| p.len).sum(),
    };
    let total = pack_bytes + m.chunks.iter().map(|c| c.len as u64).sum::<u64>();
    progress.start("verifying", total);
    let problems = Mutex::new(Vec::new());
    let bad_chunks = Mutex::new(HashSet::new());
    let next = AtomicUsize::new(0);
    let n_packs = m.packs.len();
    let jobs = n_packs + m.blocks.len();
    // Every block, as the packs hold them: the threads take them in block order, which is
    // about that (a capture's compressing threads may write neighbours out of order), and a
    // run holds both neighbours.
    if r.has_block_hashes() {
        let mut order: Vec<u32> = (0..m.blocks.len() as u32).collect();
        order.sort_by_key(|&b| (m.blocks[b as usize].pack, m.blocks[b as usize].offset));
        r.plan_blocks(order);
    }
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut cache = BlockCache::new();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= jobs {
                        break;
                    }
                    if j < n_packs {
                        if let Err(msg) = check_pack(r, j, progress) {
                            lock(&problems).push(msg);
                        }
                        continue;
                    }
                    let b = j - n_packs;
                    let chunks = &by_block[b];
                    if let Err(e) = r.read_block(b as u32, &mut cache) {
                        lock(&problems).push(e.to_string());
                        lock(&bad_chunks).extend(chunks.iter().copied());
                        continue;
                    }
                    for &c in chunks {
                        if r.read_chunk(c, &mut cache).is_err() {
                            lock(&bad_chunks).insert(c);
                        }
                        progress.advance(m.chunks[c as usize].len as u64);
                    }
                }
            });
        }
    });
    progress.finish();
    let bad = bad_chunks.into_inner().unwrap_or_default();
    let mut report = VerifyReport {
        packs: n_packs,
        blocks: m.blocks.len(),
        chunks: m.chunks.len(),
        bytes: m.chunks.iter().map(|c| c.len as u64).sum(),
        problems: problems.into_inner().unwrap_or_default(),
        damaged_files: Vec::new(),
    };
    if !bad.is_empty() {
        let mut damaged = vec![false; m.entries.len()];
        for (i, e) in m.entries.iter().enumerate() {
            damaged[i] = match &e.kind() {
                EntryKind::File { runs, .. } => runs
                    .iter()
                    .any(|run| run.chunks.iter().any(|c| bad.contains(c))),
                EntryKind::HardLink { target } => damaged[*target as usize],
                _ => false,
            };
            if damaged[i] {
                report.damaged_files.push(e.path.to_vec());
            }
        }
        if report.damaged_files.is_empty() {
            report
                .problems
                .push(format!("{} damaged chunks used by no file", bad.len()));
        }
    }
    Ok(report)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks pack `i` against the manifest. Version 2: its header and its blocks' recorded
/// hashes against the pack hash (each block's bytes are checked against its hash when the
/// block is read). Version 1: the whole pack, hashed.
fn check_pack(r: &PayloadReader, i: usize, progress: &dyn Progress) -> Result<(), String> {
    let span = &r.pack_spans()[i];
    if r.has_block_hashes() {
        let mut head = [0u8; RECORD_LEN];
        span.read_exact_at(&mut head, 0)
            .map_err(|e| format!("{}: {}: {e}", r.path().display(), r.pack_label(i as u32)))?;
        let mut blocks: Vec<_> = r
            .manifest()
            .blocks
            .iter()
            .filter(|b| b.pack as usize == i)
            .collect();
        blocks.sort_unstable_by_key(|b| b.offset);
        let mut h = blake3::Hasher::new();
        h.update(&head);
        for b in blocks {
            h.update(&b.hash);
        }
        if h.finalize().as_bytes() != &r.manifest().packs[i].hash {
            return Err(format!(
                "{}: {} is damaged (its header or block list does not match its hash)",
                r.path().display(),
                r.pack_label(i as u32)
            ));
        }
        return Ok(());
    }
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut at = 0u64;
    while at < span.len {
        let n = ((span.len - at) as usize).min(buf.len());
        span.read_exact_at(&mut buf[..n], at)
            .map_err(|e| format!("{}: {}: {e}", r.path().display(), r.pack_label(i as u32)))?;
        h.update(&buf[..n]);
        progress.advance(n as u64);
        at += n as u64;
    }
    if h.finalize().as_bytes() != &r.manifest().packs[i].hash {
        return Err(format!(
            "{}: {} is damaged (BLAKE3 mismatch)",
            r.path().display(),
            r.pack_label(i as u32)
        ));
    }
    Ok(())
}
