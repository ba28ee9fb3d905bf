//! Golden-image refreshes (issue #6, docs/REFRESH.md): `capture --base OLD` reuses OLD.
//!
//! `Base` opens OLD and answers the payload writer's questions (`payload::writer::BaseImage`):
//! which scanned files are unchanged (the files cache), and where OLD stores a chunk so its
//! block can be copied verbatim. `lineage` records what was reused (FORMAT.md §10), `diff`
//! compares two images.

pub mod diff;
pub mod lineage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::format::PayloadError;
use crate::format::manifest::{
    BlockIndex, BlockRecord, CapturedFs, ChunkHash, ChunkId, ChunkIndex, ChunkRecord, EntryKind,
    EntryRef, Manifest, Meta, Runs, Timestamp, Xattr,
};
use crate::format::records::{BLOCK_HEADER_LEN, BlockHeader};
use crate::format::sink::BlockSource;
use crate::payload::block_chunks::BlockChunks;
use crate::payload::carry::StoredRun;
use crate::payload::reader::PayloadReader;
use crate::payload::writer::BaseImage;
use crate::scan::KnownFiles;

/// Filesystems whose ctime is a true change time, set by the kernel on every content and
/// metadata write and not settable from user space. FAT, exFAT and NTFS drivers map ctime to
/// a creation time or keep it at 2 s: their files are always read.
const TRUSTED_CTIME: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "bcachefs", "zfs", "jfs", "nilfs2",
];

/// A base file whose ctime lies this close to (or after) the base capture's start may have
/// been written again within the same clock tick after it was read ("racily clean", as git
/// calls it): it is read again. Nanosecond filesystems tick with the coarse clock (≤ 10 ms).
const RACY_FINE_NS: i128 = 100_000_000;
/// The same for timestamps with whole seconds (ext2/ext3 with 128-byte inodes).
const RACY_COARSE_NS: i128 = 2_000_000_000;

/// An open base image, indexed for the writer.
pub struct Base {
    reader: PayloadReader,
    /// The path as the user gave it (recorded in the lineage).
    given: PathBuf,
    /// Base chunk index of each stored chunk id.
    ids: HashMap<ChunkId, ChunkIndex>,
    /// The base's chunk indexes grouped by block.
    by_block: BlockChunks,
    /// Files cache: path → base entry index, for files eligible for reuse.
    files: HashMap<Vec<u8>, usize>,
    /// This capture's filesystem index → the base's, where both are the same filesystem.
    fs_map: HashMap<u32, u32>,
}

impl Base {
    /// Whether the base is encrypted (a refresh of it must be too: docs/SECURITY.md).
    pub fn encrypted(&self) -> bool {
        self.reader.encrypted()
    }

    /// Opens and checks the image at `path` and indexes its chunks.
    pub fn open(path: &Path, unlock: &crate::envelope::Unlock) -> Result<Base, PayloadError> {
        Ok(Base::from_reader(
            PayloadReader::open(path, unlock)?,
            path.to_path_buf(),
        ))
    }

    /// The image `reader` has open, named `given` (a store's version: `store::dedup`).
    pub fn from_reader(reader: PayloadReader, given: PathBuf) -> Base {
        let m = reader.manifest();
        let ids = m
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i as ChunkIndex))
            .collect();
        let by_block = BlockChunks::new(&m.chunks, m.blocks.len());
        Base {
            reader,
            given,
            ids,
            by_block,
            files: HashMap::new(),
            fs_map: HashMap::new(),
        }
    }

    /// The base's manifest.
    pub fn manifest(&self) -> &Manifest {
        self.reader.manifest()
    }

    /// The path as given.
    pub fn given_path(&self) -> &Path {
        &self.given
    }

    /// Builds the files cache for a capture whose scan found `filesystems`: a base file is
    /// eligible when its filesystem is the same one now (same device, type and mount point),
    /// that filesystem's ctime can be trusted, and the file was not racily clean.
    pub fn index_files(&mut self, filesystems: &[CapturedFs]) {
        let m = self.reader.manifest();
        self.fs_map = filesystems
            .iter()
            .enumerate()
            .filter(|(_, f)| TRUSTED_CTIME.contains(&f.fstype.as_str()))
            .filter_map(|(i, f)| {
                let j = m.filesystems.iter().position(|g| {
                    g.dev == f.dev && g.fstype == f.fstype && g.mount_point == f.mount_point
                })?;
                Some((i as u32, j as u32))
            })
            .collect();
        let trusted: Vec<u32> = self.fs_map.values().copied().collect();
        let start = capture_start(m);
        self.files = m
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.kind(), EntryKind::File { .. }))
            .filter(|(_, e)| trusted.contains(&e.meta().fs) && !racy(&e.meta(), start))
            .map(|(i, e)| (e.path.to_vec(), i))
            .collect();
    }

    /// How many base files the cache holds.
    pub fn cached_files(&self) -> usize {
        self.files.len()
    }
}

/// When the base capture started, in ns since the epoch: `created` is taken after the payload
/// was written, so `created − duration` is at or before the true start.
fn capture_start(m: &Manifest) -> i128 {
    ns(m.image.created) - m.stats.duration_ms as i128 * 1_000_000
}

fn ns(t: Timestamp) -> i128 {
    t.sec as i128 * 1_000_000_000 + t.nsec as i128
}

/// Whether a write after the base read the file could have left its ctime unchanged.
fn racy(meta: &Meta, start: i128) -> bool {
    let margin = if meta.ctime.nsec == 0 {
        RACY_COARSE_NS
    } else {
        RACY_FINE_NS
    };
    ns(meta.ctime) >= start - margin
}

impl Base {
    /// The files cache's answer: the base's record of the regular file at `path` when it holds
    /// it unchanged (same filesystem, inode, size, mtime and ctime; not racily clean).
    fn unchanged(&self, path: &[u8], a: &Meta, size: u64) -> Option<EntryRef<'_>> {
        let &i = self.files.get(path)?;
        let old = self.manifest().entries.get(i)?;
        let EntryKind::File { size: old_size, .. } = &old.kind() else {
            return None;
        };
        let b = &old.meta();
        let same = *old_size == size
            && self.fs_map.get(&a.fs) == Some(&b.fs)
            && a.ino == b.ino
            && a.mtime == b.mtime
            && a.ctime == b.ctime;
        same.then_some(old)
    }
}

/// The scan takes an unchanged file's xattrs from the base: setting, changing or removing
/// an xattr moves ctime, which the files cache compares (docs/REFRESH.md).
impl KnownFiles for Base {
    fn known_xattrs(&self, path: &[u8], meta: &Meta, size: u64) -> Option<Vec<Xattr>> {
        self.unchanged(path, meta, size)
            .map(|e| e.xattrs().to_vec())
    }
}

impl BaseImage for Base {
    fn unchanged_runs(&self, e: EntryRef) -> Option<Runs> {
        let EntryKind::File { size, .. } = e.kind() else {
            return None;
        };
        let old = self.unchanged(e.path, &e.meta(), size)?;
        match old.row.kind() {
            EntryKind::File { runs, .. } => Some(runs),
            _ => None,
        }
    }

    /// By the 16-byte id: the base's manifest holds no more (FORMAT.md §1; a base of manifest
    /// version 1–3 had its ids cut to 16 bytes when read). Both sides are this machine's.
    fn find_chunk(&self, hash: &ChunkHash) -> Option<ChunkIndex> {
        self.ids.get(&hash.id()).copied()
    }

    fn chunk(&self, c: ChunkIndex) -> Option<&ChunkRecord> {
        self.manifest().chunks.get(c as usize)
    }

    fn chunks_in_block(&self, b: BlockIndex) -> &[ChunkIndex] {
        self.by_block.of(b)
    }

    fn block_extent(&self, b: BlockIndex) -> Option<(u32, std::ops::Range<u64>)> {
        let rec = self.manifest().blocks.get(b as usize)?;
        let end = rec.offset + (BLOCK_HEADER_LEN as u64) + rec.stored_len as u64;
        Some((rec.pack, rec.offset..end))
    }

    fn copies_unread(&self) -> bool {
        self.reader.has_block_hashes() && !self.reader.encrypted()
    }

    fn stored_run(&self, blocks: &[BlockIndex]) -> Result<StoredRun, PayloadError> {
        let damaged = |b: BlockIndex, msg: String| PayloadError::Image {
            path: self.given.clone(),
            msg: format!("block {b}: {msg}"),
        };
        let extents = blocks
            .iter()
            .map(|&b| {
                self.block_extent(b)
                    .ok_or_else(|| damaged(b, "does not exist".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (Some((pack, first)), Some((_, last))) = (extents.first(), extents.last()) else {
            return Ok(StoredRun {
                headers: Vec::new(),
                hashes: Vec::new(),
                bytes: Vec::new(),
                source: None,
            });
        };
        let adjacent = extents
            .windows(2)
            .all(|w| w[0].0 == w[1].0 && w[0].1.end == w[1].1.start);
        if !adjacent {
            return Err(PayloadError::format("internal: a base run is not adjacent"));
        }
        let span = self
            .reader
            .pack_spans()
            .get(*pack as usize)
            .ok_or_else(|| damaged(blocks[0], format!("pack {pack} does not exist")))?;
        let records: Vec<&BlockRecord> = blocks
            .iter()
            .map(|&b| &self.manifest().blocks[b as usize])
            .collect();
        // A plain span's bytes are the file's own: the sink may copy them in the kernel.
        // A base read over the network has no file to copy from: its bytes are read below.
        let source = match (span.sealed.is_none(), span.file()) {
            (true, Some(file)) => Some(BlockSource {
                file: file.clone(),
                offset: span.offset + first.start,
                path: self.given.as_path().into(),
            }),
            _ => None,
        };
        if source.is_some() && self.copies_unread() {
            // Not read at all: the manifest has each block's header fields and hash, and the
            // new image records that hash, so `verify` of the new image checks these bytes.
            return Ok(StoredRun {
                headers: records.iter().map(|r| header_of(r)).collect(),
                hashes: records.iter().map(|r| r.hash).collect(),
                bytes: Vec::new(),
                source,
            });
        }
        // One pread for the whole run: it is copied as stored, never decompressed.
        let mut bytes = vec![0u8; (last.end - first.start) as usize];
        span.read_exact_at(&mut bytes, first.start)
            .map_err(|e| damaged(blocks[0], e.to_string()))?;
        let mut headers = Vec::with_capacity(blocks.len());
        let mut hashes = Vec::with_capacity(blocks.len());
        for ((&b, (_, range)), rec) in blocks.iter().zip(&extents).zip(&records) {
            let at = (range.start - first.start) as usize;
            let stored = &bytes[at..(range.end - first.start) as usize];
            let mut head = [0u8; BLOCK_HEADER_LEN];
            head.copy_from_slice(&stored[..BLOCK_HEADER_LEN]);
            let h = BlockHeader::decode(&head).map_err(|e| damaged(b, e.to_string()))?;
            if h != header_of(rec) {
                return Err(damaged(b, "header disagrees with the manifest".into()));
            }
            let hash = *blake3::hash(stored).as_bytes();
            if self.reader.has_block_hashes() && hash != rec.hash {
                return Err(damaged(b, "damaged (BLAKE3 mismatch)".into()));
            }
            headers.push(h);
            hashes.push(hash);
        }
        Ok(StoredRun {
            headers,
            hashes,
            bytes,
            source,
        })
    }
}

/// The on-disk header a block record describes.
fn header_of(r: &BlockRecord) -> BlockHeader {
    BlockHeader {
        codec: r.codec,
        raw_len: r.raw_len,
        stored_len: r.stored_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sec: i64, nsec: u32) -> Meta {
        Meta {
            ctime: Timestamp { sec, nsec },
            ..Default::default()
        }
    }

    #[test]
    fn files_changed_near_the_base_capture_are_read_again() {
        let start = 1_000 * 1_000_000_000i128;
        assert!(!racy(&at(999, 800_000_000), start));
        assert!(racy(&at(999, 950_000_000), start));
        assert!(racy(&at(1_001, 5), start));
        // Whole-second timestamps: the write may have been up to a second later.
        assert!(racy(&at(999, 0), start));
        assert!(!racy(&at(997, 0), start));
    }
}
