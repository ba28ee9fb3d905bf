//! One entry without its path, as the entry table holds it in memory (`EntryRow`, 72 bytes;
//! issue #23 goal 2, docs/PERFORMANCE.md "Memory an entry"). The owned forms a stage builds
//! and reads, `EntryKind` and `Meta`, are 56 and 64 bytes; a row keeps the same values in
//! fewer bytes for what nearly every entry is, and the rest on the heap:
//!
//! - its kind in 16 bytes: a directory, a device, a hard link, a file of no data or of one
//!   chunk from offset 0 (most small files) inline; a file of other runs, and a symlink's
//!   target, behind one pointer;
//! - its metadata in 48 bytes: the three times as nanoseconds since the epoch in an `i64`
//!   each (1677 to 2262), mode and filesystem index in 16 bits each; an entry whose values do
//!   not fit (a time outside those years, nanoseconds past a second, a mode or filesystem
//!   index past 65,535: a hostile or odd image) keeps its whole `Meta` on the heap;
//! - its extended attributes, and that whole `Meta` when there is one, behind one pointer
//!   that is empty for most entries.
//!
//! Nothing is lost: `kind()` and `meta()` give back exactly what was set. The encoded form is
//! not this (docs/FORMAT.md §5.7): rows are built from and turned into `EntryKind`, `Meta` and
//! `Xattr`s.

use super::manifest::{
    ChunkIndex, DataRun, EntryIndex, EntryKind, Meta, RunChunks, Runs, Timestamp, Xattr, Xattrs,
};

/// An entry without its path: kind, metadata and extended attributes, compact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRow {
    kind: KindCell,
    meta: PackedMeta,
    extra: Option<Box<Extra>>,
}

/// An `EntryKind` in 16 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KindCell {
    Directory,
    Fifo,
    Socket,
    /// A regular file of no data runs: empty, or holes only.
    NoRuns {
        size: u64,
    },
    /// A regular file whose data is one chunk at offset 0, holes after it if `size` says so.
    OneChunk {
        size: u64,
        chunk: ChunkIndex,
    },
    /// Any other regular file.
    File(Box<FileRuns>),
    // A thin pointer: a boxed slice would make every cell 24 bytes.
    #[allow(clippy::box_collection)]
    Symlink(Box<Vec<u8>>),
    HardLink {
        target: EntryIndex,
    },
    CharDevice {
        rdev: u64,
    },
    BlockDevice {
        rdev: u64,
    },
}

/// A regular file's size and runs, for the files a `KindCell` cannot hold inline.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileRuns {
    size: u64,
    runs: Runs,
}

/// A `Meta` in 48 bytes: times in nanoseconds since the epoch, mode and filesystem in 16 bits.
/// Meaningless when the row's `Extra` holds a whole `Meta`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PackedMeta {
    atime: i64,
    mtime: i64,
    ctime: i64,
    ino: u64,
    uid: u32,
    gid: u32,
    nlink: u32,
    mode: u16,
    fs: u16,
}

/// What few entries have: extended attributes, and a `Meta` that does not pack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Extra {
    xattrs: Vec<Xattr>,
    meta: Option<Box<Meta>>,
}

// These sizes are what every entry costs in capture and in every reader of an image.
const _: () = assert!(std::mem::size_of::<KindCell>() == 16);
const _: () = assert!(std::mem::size_of::<PackedMeta>() == 48);
const _: () = assert!(std::mem::size_of::<EntryRow>() == 72);

const NANOS: i64 = 1_000_000_000;

/// `t` in nanoseconds since the epoch, when an `i64` holds it and its nanoseconds are less
/// than a second (so `unpack_time` gives `t` back).
fn pack_time(t: Timestamp) -> Option<i64> {
    let (sec, nsec) = (t.sec, t.nsec);
    if nsec >= NANOS as u32 {
        return None;
    }
    sec.checked_mul(NANOS)?.checked_add(nsec as i64)
}

fn unpack_time(ns: i64) -> Timestamp {
    Timestamp {
        sec: ns.div_euclid(NANOS),
        nsec: ns.rem_euclid(NANOS) as u32,
    }
}

impl PackedMeta {
    /// `m` packed, when every field fits.
    fn pack(m: &Meta) -> Option<PackedMeta> {
        Some(PackedMeta {
            atime: pack_time(m.atime)?,
            mtime: pack_time(m.mtime)?,
            ctime: pack_time(m.ctime)?,
            ino: m.ino,
            uid: m.uid,
            gid: m.gid,
            nlink: m.nlink,
            mode: u16::try_from(m.mode).ok()?,
            fs: u16::try_from(m.fs).ok()?,
        })
    }

    fn unpack(&self) -> Meta {
        Meta {
            mode: self.mode as u32,
            uid: self.uid,
            gid: self.gid,
            atime: unpack_time(self.atime),
            mtime: unpack_time(self.mtime),
            ctime: unpack_time(self.ctime),
            ino: self.ino,
            fs: self.fs as u32,
            nlink: self.nlink,
        }
    }
}

impl KindCell {
    fn from_kind(kind: EntryKind) -> KindCell {
        match kind {
            EntryKind::Directory => KindCell::Directory,
            EntryKind::Fifo => KindCell::Fifo,
            EntryKind::Socket => KindCell::Socket,
            EntryKind::File { size, runs } => match runs.as_slice() {
                [] => KindCell::NoRuns { size },
                [DataRun { offset: 0, chunks }] if chunks.len() == 1 => KindCell::OneChunk {
                    size,
                    chunk: chunks[0],
                },
                _ => KindCell::File(Box::new(FileRuns { size, runs })),
            },
            EntryKind::Symlink { target } => KindCell::Symlink(Box::new(target)),
            EntryKind::HardLink { target } => KindCell::HardLink { target },
            EntryKind::CharDevice { rdev } => KindCell::CharDevice { rdev },
            EntryKind::BlockDevice { rdev } => KindCell::BlockDevice { rdev },
        }
    }

    fn to_kind(&self) -> EntryKind {
        match self {
            KindCell::Directory => EntryKind::Directory,
            KindCell::Fifo => EntryKind::Fifo,
            KindCell::Socket => EntryKind::Socket,
            KindCell::NoRuns { size } => EntryKind::File {
                size: *size,
                runs: Runs::new(),
            },
            KindCell::OneChunk { size, chunk } => EntryKind::File {
                size: *size,
                runs: smallvec::smallvec![DataRun {
                    offset: 0,
                    chunks: RunChunks::from_slice(&[*chunk]),
                }],
            },
            KindCell::File(f) => EntryKind::File {
                size: f.size,
                runs: f.runs.clone(),
            },
            KindCell::Symlink(target) => EntryKind::Symlink {
                target: target.to_vec(),
            },
            KindCell::HardLink { target } => EntryKind::HardLink { target: *target },
            KindCell::CharDevice { rdev } => EntryKind::CharDevice { rdev: *rdev },
            KindCell::BlockDevice { rdev } => EntryKind::BlockDevice { rdev: *rdev },
        }
    }
}

impl EntryRow {
    /// The row of an entry of `kind`, `meta` and `xattrs`.
    pub fn new(kind: EntryKind, meta: Meta, xattrs: impl Into<Vec<Xattr>>) -> EntryRow {
        let mut row = EntryRow {
            kind: KindCell::from_kind(kind),
            meta: PackedMeta::default(),
            extra: None,
        };
        row.set_meta(meta);
        row.set_xattrs(xattrs.into());
        row
    }

    /// What the entry is, with what is needed to recreate it.
    pub fn kind(&self) -> EntryKind {
        self.kind.to_kind()
    }

    /// Makes the entry `kind`.
    pub fn set_kind(&mut self, kind: EntryKind) {
        self.kind = KindCell::from_kind(kind);
    }

    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, KindCell::Directory)
    }

    /// A regular file's size (not a hard link's), or `None`.
    pub fn file_size(&self) -> Option<u64> {
        match &self.kind {
            KindCell::NoRuns { size } | KindCell::OneChunk { size, .. } => Some(*size),
            KindCell::File(f) => Some(f.size),
            _ => None,
        }
    }

    /// A symlink's target, borrowed, or `None`.
    pub fn symlink_target(&self) -> Option<&[u8]> {
        match &self.kind {
            KindCell::Symlink(target) => Some(target),
            _ => None,
        }
    }

    /// The inode metadata.
    pub fn meta(&self) -> Meta {
        match self.extra.as_ref().and_then(|x| x.meta.as_deref()) {
            Some(m) => *m,
            None => self.meta.unpack(),
        }
    }

    /// Sets the inode metadata.
    pub fn set_meta(&mut self, meta: Meta) {
        match PackedMeta::pack(&meta) {
            Some(p) => {
                self.meta = p;
                self.edit_extra(|x| x.meta = None);
            }
            None => {
                self.meta = PackedMeta::default();
                self.edit_extra(|x| x.meta = Some(Box::new(meta)));
            }
        }
    }

    /// Changes the inode metadata with `f`.
    pub fn update_meta(&mut self, f: impl FnOnce(&mut Meta)) {
        let mut m = self.meta();
        f(&mut m);
        self.set_meta(m);
    }

    /// Every extended attribute, raw, in the order listxattr gave them.
    pub fn xattrs(&self) -> &[Xattr] {
        self.extra.as_ref().map_or(&[], |x| x.xattrs.as_slice())
    }

    /// Sets the extended attributes.
    pub fn set_xattrs(&mut self, xattrs: Vec<Xattr>) {
        self.edit_extra(|x| x.xattrs = xattrs);
    }

    /// The kind, metadata and extended attributes, owned.
    pub fn into_parts(self) -> (EntryKind, Meta, Xattrs) {
        let (kind, meta) = (self.kind(), self.meta());
        let xattrs = self.extra.map_or_else(Vec::new, |x| x.xattrs);
        (kind, meta, xattrs.into())
    }

    /// Applies `f` to the extra part, made if there is none, and drops it again if it is left
    /// empty, so that equal rows are equal field for field.
    fn edit_extra(&mut self, f: impl FnOnce(&mut Extra)) {
        let mut x = self.extra.take().unwrap_or_default();
        f(&mut x);
        if !x.xattrs.is_empty() || x.meta.is_some() {
            self.extra = Some(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sec: i64, nsec: u32) -> Timestamp {
        Timestamp { sec, nsec }
    }

    fn meta_with(atime: Timestamp, mode: u32, fs: u32) -> Meta {
        Meta {
            mode,
            uid: 1000,
            gid: u32::MAX,
            atime,
            mtime: t(1_700_000_000, 123_456_789),
            ctime: t(-1, 999_999_999),
            ino: u64::MAX,
            fs,
            nlink: 3,
        }
    }

    #[test]
    fn metadata_comes_back_exactly_packed_or_not() {
        let packed = [
            meta_with(t(0, 0), 0o7777, 0),
            meta_with(t(-9_223_372_036, 854_775_808), 0o644, 65_535),
            meta_with(t(9_223_372_036, 854_775_807), 0o755, 2),
        ];
        let wide = [
            meta_with(t(i64::MAX, 0), 0o644, 0),
            meta_with(t(i64::MIN, 1), 0o644, 0),
            meta_with(t(-9_223_372_037, 145_224_192), 0o644, 0),
            meta_with(t(9_223_372_036, 854_775_808), 0o644, 0),
            meta_with(t(5, 1_000_000_000), 0o644, 0),
            meta_with(t(5, u32::MAX), 0o644, 0),
            meta_with(t(5, 0), 0o200_000, 0),
            meta_with(t(5, 0), 0o644, 65_536),
        ];
        for m in packed.iter().chain(&wide) {
            let row = EntryRow::new(EntryKind::Fifo, *m, Vec::new());
            assert_eq!(row.meta(), *m);
            assert_eq!(row.extra.is_some(), wide.contains(m), "{m:?}");
        }
    }

    #[test]
    fn a_meta_that_packs_again_leaves_the_heap() {
        let mut row = EntryRow::new(EntryKind::Fifo, meta_with(t(5, 0), 0o200_000, 0), vec![]);
        assert!(row.extra.is_some());
        row.update_meta(|m| m.mode = 0o644);
        assert!(row.extra.is_none());
        assert_eq!(row, EntryRow::new(EntryKind::Fifo, row.meta(), vec![]));
    }

    #[test]
    fn kinds_come_back_exactly_inline_or_boxed() {
        let run = |offset, chunks: &[u32]| DataRun {
            offset,
            chunks: RunChunks::from_slice(chunks),
        };
        let kinds = [
            EntryKind::Directory,
            EntryKind::Fifo,
            EntryKind::Socket,
            EntryKind::File {
                size: 0,
                runs: Runs::new(),
            },
            EntryKind::File {
                size: u64::MAX,
                runs: Runs::new(),
            },
            EntryKind::File {
                size: 10,
                runs: smallvec::smallvec![run(0, &[u32::MAX])],
            },
            EntryKind::File {
                size: 1 << 40,
                runs: smallvec::smallvec![run(4096, &[7])],
            },
            EntryKind::File {
                size: 300,
                runs: smallvec::smallvec![run(0, &[1, 2, 3, 4, 5])],
            },
            EntryKind::File {
                size: 300,
                runs: smallvec::smallvec![run(0, &[1]), run(8192, &[9, 1])],
            },
            EntryKind::Symlink { target: vec![] },
            EntryKind::Symlink {
                target: b"../lib/x".to_vec(),
            },
            EntryKind::HardLink { target: u32::MAX },
            EntryKind::CharDevice { rdev: u64::MAX },
            EntryKind::BlockDevice { rdev: 0x0801 },
        ];
        for k in kinds {
            let mut row = EntryRow::new(EntryKind::Directory, Meta::default(), vec![]);
            row.set_kind(k.clone());
            assert_eq!(row.kind(), k);
            let size = match &k {
                EntryKind::File { size, .. } => Some(*size),
                _ => None,
            };
            assert_eq!(row.file_size(), size);
            assert_eq!(row.is_dir(), k == EntryKind::Directory);
            let target = match &k {
                EntryKind::Symlink { target } => Some(target.as_slice()),
                _ => None,
            };
            assert_eq!(row.symlink_target(), target);
        }
    }

    #[test]
    fn xattrs_are_kept_beside_any_meta() {
        let x = vec![Xattr {
            name: b"security.capability".to_vec(),
            value: vec![1, 2, 3],
        }];
        let wide = meta_with(t(i64::MAX, 0), 0o644, 0);
        let mut row = EntryRow::new(EntryKind::Fifo, wide, x.clone());
        assert_eq!((row.xattrs(), row.meta()), (x.as_slice(), wide));
        row.set_meta(Meta::default());
        assert_eq!(row.xattrs(), x.as_slice());
        row.set_xattrs(Vec::new());
        assert!(row.extra.is_none());
        let (kind, meta, xattrs) = row.into_parts();
        assert_eq!(
            (kind, meta, xattrs.len()),
            (EntryKind::Fifo, Meta::default(), 0)
        );
    }
}
