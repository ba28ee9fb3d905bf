//! Writes a `Manifest` as the 22 columns of FORMAT.md §5.7, one column after another, none
//! held whole: each is encoded twice, in pieces of a few KiB, once to count its length (which
//! comes first) and once into the stream (issue #23, memory an entry: the columns built side by
//! side took about 40 bytes an entry at the end of a capture, the chunk ids 16 more).

use std::io::Write;

use super::varint::{put_bytes, put_sv32, put_sv64, put_uv};
use super::{ATIME_DIFFERS, COLUMNS, CTIME_DIFFERS, HeadRef, NEXT_CHUNKS, NO_RUNS};
use crate::format::PayloadError;
use crate::format::manifest::{
    BlockRecord, ChunkRecord, Codec, DataRun, EntryKind, EntryRef, Manifest, Meta, Timestamp,
};
use crate::format::records::BLOCK_HEADER_LEN;

/// A column is encoded into a buffer of about this many bytes, then counted or written.
const PIECE: usize = 16 << 10;

/// Writes the columns of `m` to `out` (the zstd stream of the frame).
pub fn encode(m: &Manifest, out: &mut dyn Write) -> Result<(), PayloadError> {
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
    let mut w = ColumnWriter {
        out,
        buf: Vec::with_capacity(PIECE + 64),
    };
    w.column(|| each(std::iter::once(&counts), |c, buf| buf.extend_from_slice(c)))?;
    w.column(|| each(std::iter::once(&head), |h, buf| buf.extend_from_slice(h)))?;
    w.column(|| blocks(&m.blocks))?;
    w.column(|| each(&m.blocks, |b, buf| buf.extend_from_slice(&b.hash)))?;
    w.column(|| chunks(&m.chunks))?;
    w.column(|| each(&m.chunks, |c, buf| buf.extend_from_slice(&c.id.0)))?;
    for column in EntryColumn::ALL {
        w.column(|| {
            let mut c = EntryColumnState::new(column, &m.chunks);
            each(&m.entries, move |e, buf| c.put(e, buf))
        })?;
    }
    debug_assert_eq!(EntryColumn::ALL.len() + 6, COLUMNS.len());
    Ok(())
}

/// Encodes one item of a column into the buffer it is given; `false` once there are none left.
type Encoder<'a> = Box<dyn FnMut(&mut Vec<u8>) -> bool + 'a>;

/// An encoder that puts each of `items` in turn with `put`.
fn each<'a, I, T>(items: I, mut put: impl FnMut(T, &mut Vec<u8>) + 'a) -> Encoder<'a>
where
    I: IntoIterator<Item = T>,
    I::IntoIter: 'a,
{
    let mut items = items.into_iter();
    Box::new(move |buf| match items.next() {
        Some(item) => {
            put(item, buf);
            true
        }
        None => false,
    })
}

/// The stream the columns go to, and the piece a column is encoded into.
struct ColumnWriter<'w> {
    out: &'w mut dyn Write,
    buf: Vec<u8>,
}

impl ColumnWriter<'_> {
    /// Writes one column, its `uv` length then its bytes, from two runs of the encoder `make`
    /// gives: the first counts, the second writes what the first counted.
    fn column<'a>(&mut self, make: impl Fn() -> Encoder<'a>) -> Result<(), PayloadError> {
        let mut len = 0u64;
        pieces(&mut self.buf, make(), |piece| {
            len += piece.len() as u64;
            Ok(())
        })?;
        let mut prefix = Vec::with_capacity(10);
        put_uv(&mut prefix, len);
        self.out.write_all(&prefix).map_err(io)?;
        let out = &mut *self.out;
        let mut written = 0u64;
        pieces(&mut self.buf, make(), |piece| {
            written += piece.len() as u64;
            out.write_all(piece).map_err(io)
        })?;
        if written != len {
            return Err(PayloadError::format(
                "internal: a manifest column changed between its two encodings",
            ));
        }
        Ok(())
    }
}

/// Runs `encoder` to its end in `buf`, handing `f` its bytes a piece at a time.
fn pieces(
    buf: &mut Vec<u8>,
    mut encoder: Encoder,
    mut f: impl FnMut(&[u8]) -> Result<(), PayloadError>,
) -> Result<(), PayloadError> {
    buf.clear();
    loop {
        let more = encoder(buf);
        if buf.len() >= PIECE || !more {
            f(buf)?;
            buf.clear();
        }
        if !more {
            return Ok(());
        }
    }
}

fn io(e: std::io::Error) -> PayloadError {
    PayloadError::format(format!("writing the manifest: {e}"))
}

/// Column 3: pack and offset as steps from the block before, which usually follows it.
fn blocks(blocks: &[BlockRecord]) -> Encoder<'_> {
    let (mut pack, mut end) = (0u32, 64u64);
    each(blocks, move |b, out| {
        let base = if b.pack == pack { end } else { 64 };
        put_sv32(out, b.pack, pack);
        put_sv64(out, b.offset, base);
        put_uv(out, b.stored_len as u64);
        put_uv(out, b.raw_len as u64);
        out.push(match b.codec {
            Codec::Raw => 0,
            Codec::Zstd => 1,
        });
        pack = b.pack;
        end = block_end(b);
    })
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
fn chunks(chunks: &[ChunkRecord]) -> Encoder<'_> {
    let (mut block, mut end) = (0u32, 0u32);
    each(chunks, move |c, out| {
        let base = if c.block == block { end } else { 0 };
        put_sv32(out, c.block, block);
        put_sv32(out, c.offset, base);
        put_uv(out, c.len as u64);
        block = c.block;
        end = c.offset.wrapping_add(c.len);
    })
}

/// Columns 7 to 22, in FORMAT.md §5.7's order: each is encoded by a pass of its own over the
/// entries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EntryColumn {
    Kinds,
    Paths,
    Sizes,
    Runs,
    Links,
    Modes,
    Uids,
    Gids,
    TimeFlags,
    Mtimes,
    MtimeNsec,
    OtherTimes,
    Inodes,
    Filesystems,
    Nlinks,
    Xattrs,
}

impl EntryColumn {
    const ALL: [EntryColumn; 16] = [
        EntryColumn::Kinds,
        EntryColumn::Paths,
        EntryColumn::Sizes,
        EntryColumn::Runs,
        EntryColumn::Links,
        EntryColumn::Modes,
        EntryColumn::Uids,
        EntryColumn::Gids,
        EntryColumn::TimeFlags,
        EntryColumn::Mtimes,
        EntryColumn::MtimeNsec,
        EntryColumn::OtherTimes,
        EntryColumn::Inodes,
        EntryColumn::Filesystems,
        EntryColumn::Nlinks,
        EntryColumn::Xattrs,
    ];
}

/// One entry column being encoded: what it needs of the entry before (the base of most
/// deltas) and, for the runs, the chunk numbering so far.
struct EntryColumnState<'a> {
    column: EntryColumn,
    /// The chunk table: the short form names only chunks that exist, and a file's size is
    /// written as a step from the end of its data (FORMAT.md §5.7).
    chunks: &'a [ChunkRecord],
    prev_path: &'a [u8],
    /// The entry before's metadata (all zero before the first), for columns 12 to 21.
    prev_meta: Meta,
    /// One more than the highest chunk index named so far (FORMAT.md §5.7, `next`).
    next: u32,
}

impl<'a> EntryColumnState<'a> {
    fn new(column: EntryColumn, chunks: &'a [ChunkRecord]) -> Self {
        EntryColumnState {
            column,
            chunks,
            prev_path: &[],
            prev_meta: Meta::default(),
            next: 0,
        }
    }

    /// Appends entry `e`'s value of this column to `out`.
    fn put(&mut self, e: EntryRef<'a>, out: &mut Vec<u8>) {
        match self.column {
            EntryColumn::Kinds => out.push(kind_index(&e.kind())),
            // Column 8: what the path shares with the one before, then the rest.
            EntryColumn::Paths => {
                let prev = self.prev_path;
                let shared = prev.iter().zip(e.path).take_while(|(a, b)| a == b).count();
                put_uv(out, shared as u64);
                put_bytes(out, &e.path[shared..]);
                self.prev_path = e.path;
            }
            EntryColumn::Sizes => {
                if let EntryKind::File { size, runs } = e.kind() {
                    put_sv64(out, size, data_end(&runs, self.chunks));
                }
            }
            EntryColumn::Runs => {
                if let EntryKind::File { runs, .. } = e.kind() {
                    file_runs(&runs, self.chunks, &mut self.next, out);
                }
            }
            EntryColumn::Links => match e.kind() {
                EntryKind::Symlink { target } => put_bytes(out, &target),
                EntryKind::HardLink { target } => put_uv(out, target as u64),
                EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => {
                    put_uv(out, rdev)
                }
                EntryKind::File { .. }
                | EntryKind::Directory
                | EntryKind::Fifo
                | EntryKind::Socket => {}
            },
            EntryColumn::Xattrs => {
                put_uv(out, e.xattrs().len() as u64);
                for x in e.xattrs() {
                    put_bytes(out, &x.name);
                    put_bytes(out, &x.value);
                }
            }
            _ => {
                let m = e.meta();
                self.meta(&m, out);
                self.prev_meta = m;
            }
        }
    }

    /// Columns 12 to 21: each field against the entry before, the times against mtime.
    fn meta(&self, m: &Meta, out: &mut Vec<u8>) {
        let p = &self.prev_meta;
        match self.column {
            EntryColumn::Modes => put_uv(out, m.mode as u64),
            EntryColumn::Uids => put_sv32(out, m.uid, p.uid),
            EntryColumn::Gids => put_sv32(out, m.gid, p.gid),
            EntryColumn::TimeFlags => {
                let mut flags = 0;
                for (bit, t) in [(ATIME_DIFFERS, &m.atime), (CTIME_DIFFERS, &m.ctime)] {
                    if *t != m.mtime {
                        flags |= bit;
                    }
                }
                out.push(flags);
            }
            EntryColumn::Mtimes => put_sv64(out, m.mtime.sec as u64, p.mtime.sec as u64),
            EntryColumn::MtimeNsec => out.extend_from_slice(&m.mtime.nsec.to_le_bytes()),
            EntryColumn::OtherTimes => {
                for t in [&m.atime, &m.ctime] {
                    if *t != m.mtime {
                        other_time(t, &m.mtime, out);
                    }
                }
            }
            EntryColumn::Inodes => put_sv64(out, m.ino, p.ino),
            EntryColumn::Filesystems => put_uv(out, m.fs as u64),
            EntryColumn::Nlinks => put_uv(out, m.nlink as u64),
            EntryColumn::Kinds
            | EntryColumn::Paths
            | EntryColumn::Sizes
            | EntryColumn::Runs
            | EntryColumn::Links
            | EntryColumn::Xattrs => {}
        }
    }
}

/// Column 10: the short form when the file is one run at 0 of the next new chunks.
fn file_runs(runs: &[DataRun], chunks: &[ChunkRecord], next: &mut u32, out: &mut Vec<u8>) {
    if let [run] = runs
        && run.offset == 0
        && !run.chunks.is_empty()
        && *next as u64 + run.chunks.len() as u64 <= chunks.len() as u64
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

/// Column 18: a time unlike mtime, its seconds from mtime's.
fn other_time(t: &Timestamp, mtime: &Timestamp, out: &mut Vec<u8>) {
    put_sv64(out, t.sec as u64, mtime.sec as u64);
    out.extend_from_slice(&t.nsec.to_le_bytes());
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
