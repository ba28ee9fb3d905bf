//! Writes a `Manifest` as the 22 columns of FORMAT.md §5.7. The small columns are built in
//! memory (a few bytes an entry), the two hash columns (32 bytes a block, 16 a chunk: the bulk)
//! are written straight from the manifest, so the encoding is never held whole.

use std::io::Write;

use super::varint::{put_bytes, put_sv32, put_sv64, put_uv};
use super::{ATIME_DIFFERS, COLUMNS, CTIME_DIFFERS, HeadRef, NEXT_CHUNKS, NO_RUNS};
use crate::format::PayloadError;
use crate::format::manifest::{
    BlockRecord, ChunkRecord, Codec, DataRun, Entries, EntryKind, EntryRef, Manifest, Timestamp,
};
use crate::format::records::BLOCK_HEADER_LEN;

/// Writes the columns of `m` to `out` (the zstd stream of the frame).
pub fn encode(m: &Manifest, out: &mut dyn Write) -> Result<(), PayloadError> {
    let io = |e: std::io::Error| PayloadError::format(format!("writing the manifest: {e}"));
    let mut counts = Vec::new();
    for n in [m.blocks.len(), m.chunks.len(), m.entries.len()] {
        put_uv(&mut counts, n as u64);
    }
    let head = HeadRef {
        image: &m.image,
        packs: &m.packs,
        users: &m.users,
        groups: &m.groups,
        filesystems: &m.filesystems,
        stats: &m.stats,
        extensions: &m.extensions,
    };
    let head = bincode::serde::encode_to_vec(&head, bincode::config::standard())
        .map_err(|e| PayloadError::format(format!("encoding the manifest: {e}")))?;
    let mut column = |bytes: &[u8]| -> Result<(), PayloadError> {
        let mut len = Vec::with_capacity(10);
        put_uv(&mut len, bytes.len() as u64);
        out.write_all(&len).map_err(io)?;
        out.write_all(bytes).map_err(io)
    };
    column(&counts)?;
    column(&head)?;
    column(&blocks(&m.blocks))?;
    column(&m.blocks.iter().flat_map(|b| b.hash).collect::<Vec<u8>>())?;
    column(&chunks(&m.chunks))?;
    column(&m.chunks.iter().flat_map(|c| c.id.0).collect::<Vec<u8>>())?;
    let entries = EntryColumns::of(&m.entries, &m.chunks);
    for c in entries.all() {
        column(c)?;
    }
    debug_assert_eq!(entries.all().len() + 6, COLUMNS.len());
    Ok(())
}

/// Column 3: pack and offset as steps from the block before, which usually follows it.
fn blocks(blocks: &[BlockRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks.len() * 8);
    let (mut pack, mut end) = (0u32, 64u64);
    for b in blocks {
        let base = if b.pack == pack { end } else { 64 };
        put_sv32(&mut out, b.pack, pack);
        put_sv64(&mut out, b.offset, base);
        put_uv(&mut out, b.stored_len as u64);
        put_uv(&mut out, b.raw_len as u64);
        out.push(match b.codec {
            Codec::Raw => 0,
            Codec::Zstd => 1,
        });
        pack = b.pack;
        end = block_end(b);
    }
    out
}

/// Where the next block of the same pack starts when there is no gap (wrapping, as FORMAT.md's
/// `sv` does: any value is written, §7 refuses what is wrong).
pub(super) fn block_end(b: &BlockRecord) -> u64 {
    b.offset
        .wrapping_add(BLOCK_HEADER_LEN as u64)
        .wrapping_add(b.stored_len as u64)
}

/// Column 5: block and offset as steps from the chunk before, which usually precedes it in
/// the same block.
fn chunks(chunks: &[ChunkRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.len() * 4);
    let (mut block, mut end) = (0u32, 0u32);
    for c in chunks {
        let base = if c.block == block { end } else { 0 };
        put_sv32(&mut out, c.block, block);
        put_sv32(&mut out, c.offset, base);
        put_uv(&mut out, c.len as u64);
        block = c.block;
        end = c.offset.wrapping_add(c.len);
    }
    out
}

/// Columns 7 to 22, filled entry by entry.
#[derive(Default)]
struct EntryColumns<'a> {
    /// The chunk table: the short form names only chunks that exist, and a file's size is
    /// written as a step from the end of its data (FORMAT.md §5.7).
    chunks: &'a [ChunkRecord],
    kinds: Vec<u8>,
    paths: Vec<u8>,
    sizes: Vec<u8>,
    runs: Vec<u8>,
    links: Vec<u8>,
    modes: Vec<u8>,
    uids: Vec<u8>,
    gids: Vec<u8>,
    time_flags: Vec<u8>,
    mtimes: Vec<u8>,
    mtime_nsec: Vec<u8>,
    other_times: Vec<u8>,
    inodes: Vec<u8>,
    filesystems: Vec<u8>,
    nlinks: Vec<u8>,
    xattrs: Vec<u8>,
}

impl<'a> EntryColumns<'a> {
    fn of(entries: &Entries, chunks: &'a [ChunkRecord]) -> Self {
        let mut c = EntryColumns {
            chunks,
            ..Default::default()
        };
        let mut prev: Option<EntryRef> = None;
        // One more than the highest chunk index named so far (FORMAT.md §5.7, `next`).
        let mut next = 0u32;
        for e in entries {
            c.kinds.push(kind_index(&e.kind()));
            c.path(prev.map_or(&[][..], |p| p.path), e.path);
            c.kind_data(&e.kind(), &mut next);
            c.meta(e, prev);
            put_uv(&mut c.xattrs, e.xattrs().len() as u64);
            for x in e.xattrs() {
                put_bytes(&mut c.xattrs, &x.name);
                put_bytes(&mut c.xattrs, &x.value);
            }
            prev = Some(e);
        }
        c
    }

    /// In FORMAT.md §5.7's order.
    fn all(&self) -> [&[u8]; 16] {
        [
            &self.kinds,
            &self.paths,
            &self.sizes,
            &self.runs,
            &self.links,
            &self.modes,
            &self.uids,
            &self.gids,
            &self.time_flags,
            &self.mtimes,
            &self.mtime_nsec,
            &self.other_times,
            &self.inodes,
            &self.filesystems,
            &self.nlinks,
            &self.xattrs,
        ]
    }

    /// Column 8: what the path shares with the one before, then the rest.
    fn path(&mut self, prev: &[u8], path: &[u8]) {
        let shared = prev.iter().zip(path).take_while(|(a, b)| a == b).count();
        put_uv(&mut self.paths, shared as u64);
        put_bytes(&mut self.paths, &path[shared..]);
    }

    /// Columns 9, 10 and 11.
    fn kind_data(&mut self, kind: &EntryKind, next: &mut u32) {
        match kind {
            EntryKind::File { size, runs } => {
                put_sv64(&mut self.sizes, *size, data_end(runs, self.chunks));
                self.file_runs(runs, next);
            }
            EntryKind::Symlink { target } => put_bytes(&mut self.links, target),
            EntryKind::HardLink { target } => put_uv(&mut self.links, *target as u64),
            EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => {
                put_uv(&mut self.links, *rdev)
            }
            EntryKind::Directory | EntryKind::Fifo | EntryKind::Socket => {}
        }
    }

    /// Column 10: the short form when the file is one run at 0 of the next new chunks.
    fn file_runs(&mut self, runs: &[DataRun], next: &mut u32) {
        let out = &mut self.runs;
        if let [run] = runs
            && run.offset == 0
            && !run.chunks.is_empty()
            && *next as u64 + run.chunks.len() as u64 <= self.chunks.len() as u64
            && run
                .chunks
                .iter()
                .enumerate()
                .all(|(i, &c)| (c as u64) == *next as u64 + i as u64)
        {
            put_uv(out, NEXT_CHUNKS);
            put_uv(out, run.chunks.len() as u64);
            *next = next.wrapping_add(run.chunks.len() as u32);
            return;
        }
        if runs.is_empty() {
            put_uv(out, NO_RUNS);
            return;
        }
        put_uv(out, runs.len() as u64 + 1);
        let mut offset = 0u64;
        for r in runs {
            put_sv64(out, r.offset, offset);
            offset = r.offset;
            put_uv(out, r.chunks.len() as u64);
            let mut expect = *next;
            for &c in &r.chunks {
                put_sv32(out, c, expect);
                expect = c.wrapping_add(1);
                *next = (*next).max(expect);
            }
        }
    }

    /// Columns 12 to 21: each field against the entry before, the times against mtime.
    fn meta(&mut self, e: EntryRef, prev: Option<EntryRef>) {
        let m = &e.meta();
        let p = prev.map(|p| p.meta()).unwrap_or_default();
        put_uv(&mut self.modes, m.mode as u64);
        put_sv32(&mut self.uids, m.uid, p.uid);
        put_sv32(&mut self.gids, m.gid, p.gid);
        let mut flags = 0;
        for (bit, t) in [(ATIME_DIFFERS, &m.atime), (CTIME_DIFFERS, &m.ctime)] {
            if *t != m.mtime {
                flags |= bit;
                self.other_time(t, &m.mtime);
            }
        }
        self.time_flags.push(flags);
        put_sv64(&mut self.mtimes, m.mtime.sec as u64, p.mtime.sec as u64);
        self.mtime_nsec
            .extend_from_slice(&m.mtime.nsec.to_le_bytes());
        put_sv64(&mut self.inodes, m.ino, p.ino);
        put_uv(&mut self.filesystems, m.fs as u64);
        put_uv(&mut self.nlinks, m.nlink as u64);
    }

    /// Column 18: a time unlike mtime, its seconds from mtime's.
    fn other_time(&mut self, t: &Timestamp, mtime: &Timestamp) {
        put_sv64(&mut self.other_times, t.sec as u64, mtime.sec as u64);
        self.other_times.extend_from_slice(&t.nsec.to_le_bytes());
    }
}

/// Where a file's data ends, the base of its size in column 9 (FORMAT.md §5.7): the last
/// run's offset plus the lengths of its chunks, modulo 2^64; 0 without runs. A chunk index
/// out of range counts 0 here (the reader refuses it before it needs the length).
pub(super) fn data_end(runs: &[DataRun], chunks: &[ChunkRecord]) -> u64 {
    runs.last().map_or(0, |r| {
        r.chunks.iter().fold(r.offset, |end, &c| {
            end.wrapping_add(chunks.get(c as usize).map_or(0, |rec| rec.len as u64))
        })
    })
}

/// The variant index of FORMAT.md §5.3.
fn kind_index(kind: &EntryKind) -> u8 {
    match kind {
        EntryKind::Directory => 0,
        EntryKind::File { .. } => 1,
        EntryKind::Symlink { .. } => 2,
        EntryKind::HardLink { .. } => 3,
        EntryKind::CharDevice { .. } => 4,
        EntryKind::BlockDevice { .. } => 5,
        EntryKind::Fifo => 6,
        EntryKind::Socket => 7,
    }
}
