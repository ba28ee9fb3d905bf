//! The manifest: everything an image knows besides chunk bytes (docs/FORMAT.md §5).
//!
//! Plain data types with serde derives, encoded as columns (manifest version 4,
//! `format::columns`) or, in images made before, with bincode 2 (standard config), and framed
//! by `format::frame`. Every field here is part of the format: changing one means a new
//! manifest version documented in docs/FORMAT.md. `legacy` holds what versions 1 and 2 differed
//! in (bincode, 32-byte ids), to keep reading them.

use serde::{Deserialize, Serialize};

pub use super::entries::{Entries, EntryMut, EntryRef, Paths};
pub use super::entry_row::EntryRow;

/// Version of the payload format this build writes and the highest it reads in image
/// headers, trailers and image pack headers (docs/FORMAT.md §8).
pub const FORMAT_VERSION: u16 = 2;

/// Version of the manifest encoding this build writes in manifest frames and the highest it
/// reads there: 4, the column encoding with 16-byte chunk ids (docs/FORMAT.md §5.7); 3 is the
/// same with 32-byte ids, 1 and 2 are bincode.
pub const MANIFEST_VERSION: u16 = super::columns::VERSION;

/// A chunk's identity in a manifest: the first 16 bytes of the BLAKE3 of its uncompressed
/// bytes (FORMAT.md §1, manifest version 4; older manifests' 32-byte ids are cut to these).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> Self {
        ChunkHash::of(data).id()
    }

    /// The id a manifest of version 1–3 held as a whole BLAKE3: its first 16 bytes.
    pub fn from_full(full: &[u8; 32]) -> Self {
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        ChunkId(id)
    }
}

/// The whole 32-byte BLAKE3 of a chunk's uncompressed bytes: what a store's index lists and
/// deduplicates by between machines (docs/STORE.md §2.4), and what the writer keeps of the
/// chunks it read to refuse two of them that share a `ChunkId`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkHash(pub [u8; 32]);

impl ChunkHash {
    /// The hash of `data`.
    pub fn of(data: &[u8]) -> Self {
        ChunkHash(*blake3::hash(data).as_bytes())
    }

    /// The manifest's id of the chunk: the first 16 bytes.
    pub fn id(&self) -> ChunkId {
        ChunkId::from_full(&self.0)
    }

    /// The 16 bytes after the id, which the writer keeps to tell chunks with equal ids apart.
    pub fn rest(&self) -> [u8; 16] {
        let mut r = [0u8; 16];
        r.copy_from_slice(&self.0[16..]);
        r
    }
}

impl std::fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Index of a chunk in `Manifest::chunks`.
pub type ChunkIndex = u32;
/// Index of a block in `Manifest::blocks`.
pub type BlockIndex = u32;
/// Index of a pack in `Manifest::packs`.
pub type PackIndex = u32;
/// Index of an entry in `Manifest::entries`.
pub type EntryIndex = u32;

/// A point in time, as `struct timespec`. Packed to 4-byte alignment: 12 bytes, not 16, three
/// in every entry's `Meta` (issue #23, memory an entry). Its fields are read by value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[repr(C, packed(4))]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

/// The whole manifest of an image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub image: ImageInfo,
    pub packs: Vec<PackRecord>,
    pub blocks: Vec<BlockRecord>,
    pub chunks: Vec<ChunkRecord>,
    /// Entries in capture order: every directory comes before what it contains. Their paths
    /// are held in one arena (`Entries`).
    pub entries: Entries,
    /// Numeric id → name, from the captured root's /etc/passwd (display only).
    pub users: Vec<(u32, String)>,
    /// Numeric id → name, from the captured root's /etc/group (display only).
    pub groups: Vec<(u32, String)>,
    /// The filesystems whose files were captured (`Meta::fs` indexes this).
    pub filesystems: Vec<CapturedFs>,
    pub stats: CaptureStats,
    /// Typed, versioned sections added by later features (layout record, boot areas,
    /// lineage, signatures...). A reader that meets a `required` one it does not know rejects
    /// the image (docs/FORMAT.md §5.6).
    pub extensions: Vec<Extension>,
}

/// Who made the image, when, from what.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Random id of this image; packs carry it too so they cannot be mixed up between images.
    pub id: [u8; 16],
    pub created: Timestamp,
    pub tool_version: String,
    pub hostname: String,
    pub os_release: String,
    pub kernel: String,
    pub arch: String,
    /// The capture root as given (absolute path bytes).
    pub source_root: Vec<u8>,
    pub zstd_level: i32,
    pub chunking: ChunkParams,
}

/// Content-defined chunking parameters (FastCDC 2020, normalization level 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// One pack file: a run of blocks (docs/FORMAT.md §3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRecord {
    /// Total length of the pack in bytes, header included.
    pub len: u64,
    /// Version 2: BLAKE3 of the pack's 64-byte header followed by the `hash` of each of its
    /// blocks in offset order (the blocks tile the pack, so this covers every byte of it).
    /// Version 1: BLAKE3 of the whole pack.
    pub hash: [u8; 32],
}

/// How a block's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// Stored as is (incompressible data).
    Raw,
    /// One zstd frame.
    Zstd,
}

/// A compression unit: one or more chunks' bytes concatenated, then compressed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub pack: PackIndex,
    /// Offset of the block's header within its pack.
    pub offset: u64,
    /// Length of the stored (compressed) body, header excluded.
    pub stored_len: u32,
    /// Length of the uncompressed body.
    pub raw_len: u32,
    pub codec: Codec,
    /// BLAKE3 of the block as stored: its 16-byte header and stored body (of the plaintext,
    /// in an encrypted image). Version 2; all zero in an image of version 1, which has none.
    pub hash: [u8; 32],
}

/// Where a unique chunk lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub id: ChunkId,
    pub block: BlockIndex,
    /// Offset within the block's uncompressed body.
    pub offset: u32,
    pub len: u32,
}

/// One path in the captured tree, owned: what is built and encoded one at a time. A table
/// of them is held as `Entries`, which keeps the paths apart from the rest (`EntryRow`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the capture root, components joined by `/`, raw bytes (not always
    /// UTF-8). The root itself is the empty path.
    pub path: Box<[u8]>,
    pub kind: EntryKind,
    pub meta: Meta,
    /// Every extended attribute, raw, in the order listxattr gave them.
    pub xattrs: Xattrs,
}

/// What an entry is, with what is needed to recreate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Directory,
    /// A regular file. Bytes not covered by `runs` are holes (zeros).
    File {
        size: u64,
        runs: Runs,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// Another name of the regular file at `target` (an earlier entry).
    HardLink {
        target: EntryIndex,
    },
    CharDevice {
        rdev: u64,
    },
    BlockDevice {
        rdev: u64,
    },
    Fifo,
    Socket,
}

/// A file's data runs, in offset order. One run is held inline in the entry, more on the heap:
/// most files are one run (issue #23, memory an entry). Encoded as a sequence, as a `Vec` is.
pub type Runs = smallvec::SmallVec<[DataRun; 1]>;

/// A run's chunk indexes. Four are held inline (in the room a pointer and length take), more
/// on the heap.
pub type RunChunks = smallvec::SmallVec<[ChunkIndex; 4]>;

/// Consecutive chunks of file data starting at `offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRun {
    pub offset: u64,
    pub chunks: RunChunks,
}

/// The inode metadata restored for every entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits incl. setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    /// Not restorable; kept for the files cache and `diff`.
    pub ctime: Timestamp,
    /// Inode number on the source (files cache, hard links).
    pub ino: u64,
    /// Index into `Manifest::filesystems`.
    pub fs: u32,
    pub nlink: u32,
}

/// One extended attribute, raw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// An entry's extended attributes: a slice to read, one pointer wide in the entry and no heap
/// block when there are none, as for most files (a `Vec` took 24 bytes of every entry; issue
/// #23, memory an entry). Encoded as a sequence, as a `Vec` is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
// The box is the point: a thin pointer (8 bytes) where a `Vec` or a boxed slice takes 24 or
// 16; the second heap block is paid only by the few entries that have xattrs.
#[allow(clippy::box_collection)]
pub struct Xattrs(Option<Box<Vec<Xattr>>>);

impl Xattrs {
    /// The attributes as a `Vec`.
    pub fn into_vec(self) -> Vec<Xattr> {
        self.0.map_or_else(Vec::new, |v| *v)
    }
}

impl From<Vec<Xattr>> for Xattrs {
    fn from(v: Vec<Xattr>) -> Self {
        Xattrs((!v.is_empty()).then(|| Box::new(v)))
    }
}

impl std::ops::Deref for Xattrs {
    type Target = [Xattr];

    fn deref(&self) -> &[Xattr] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl<'a> IntoIterator for &'a Xattrs {
    type Item = &'a Xattr;
    type IntoIter = std::slice::Iter<'a, Xattr>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Xattrs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Xattrs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Xattr>::deserialize(d).map(Xattrs::from)
    }
}

// Every entry is held in memory by capture and by every reader of an image: these sizes are
// part of what an entry costs (issue #23, goal 2; docs/PERFORMANCE.md "Memory an entry").
const _: () = assert!(std::mem::size_of::<Timestamp>() == 12);
const _: () = assert!(std::mem::size_of::<Meta>() == 64);
const _: () = assert!(std::mem::size_of::<Xattrs>() == 8);

/// A filesystem some of the captured files came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedFs {
    /// Mount point relative to the capture root ("" for the root's own filesystem).
    pub mount_point: Vec<u8>,
    pub fstype: String,
    /// The mount source as mountinfo shows it (e.g. /dev/vda1).
    pub source: String,
    /// `st_dev` of the mounted filesystem on the source machine.
    pub dev: u64,
}

/// Counters reported by `info` (all sizes in bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStats {
    pub entries: u64,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    /// Sum of regular file sizes (apparent).
    pub file_bytes: u64,
    /// Bytes of data actually read and chunked (holes and zero runs excluded).
    pub data_bytes: u64,
    /// Chunk references in files.
    pub chunk_refs: u64,
    /// Unique chunks stored.
    pub unique_chunks: u64,
    /// Bytes of the unique chunks, uncompressed.
    pub unique_bytes: u64,
    /// Bytes of all blocks as stored (compressed), headers excluded.
    pub stored_bytes: u64,
    /// Paths skipped because of errors (with --keep-going).
    pub skipped: u64,
    /// Capture duration in milliseconds.
    pub duration_ms: u64,
}

/// A typed, versioned section of the manifest added by a feature after the core format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// e.g. "layout", "boot-areas", "lineage".
    pub name: String,
    pub version: u16,
    /// When true a reader that does not know `name` must refuse the image.
    pub required: bool,
    pub data: Vec<u8>,
}

impl Extension {
    /// An optional extension (readers that do not know `name` ignore it) holding `value`
    /// encoded with bincode's standard configuration. `what` names it in a failure, which is
    /// a bug: a record of plain integers, strings and bytes always encodes.
    pub fn optional<T: Serialize>(name: &str, version: u16, value: &T, what: &str) -> Extension {
        let data = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .unwrap_or_else(|e| panic!("{what} does not encode: {e}"));
        Extension {
            name: name.into(),
            version,
            required: false,
            data,
        }
    }
}

impl Manifest {
    /// The extension named `name`, if present.
    pub fn extension(&self, name: &str) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.name == name)
    }

    /// Decodes the extension `name` written by `Extension::optional`; `None` when the image
    /// has none. Its data is hostile input: the version must be `version`, the length at most
    /// `MAX` bytes, and every byte used. `what` names the record in the errors ("the lineage
    /// record").
    pub fn decode_extension<T: serde::de::DeserializeOwned, const MAX: usize>(
        &self,
        name: &str,
        version: u16,
        what: &str,
    ) -> Result<Option<T>, super::PayloadError> {
        use super::PayloadError::Format;
        let Some(ext) = self.extension(name) else {
            return Ok(None);
        };
        if ext.version != version {
            return Err(Format(format!(
                "{what} has version {}; this osimage reads version {version}",
                ext.version
            )));
        }
        if ext.data.len() > MAX {
            return Err(Format(format!("{what} is too long")));
        }
        let cfg = bincode::config::standard().with_limit::<MAX>();
        let (value, used): (T, usize) = bincode::serde::decode_from_slice(&ext.data, cfg)
            .map_err(|e| Format(format!("{what} is damaged: {e}")))?;
        if used != ext.data.len() {
            return Err(Format(format!("{what} has trailing bytes")));
        }
        Ok(Some(value))
    }
}

/// Kinds of file type bits for display (`ls -l` style letter).
impl EntryKind {
    pub fn type_char(&self) -> char {
        match self {
            EntryKind::Directory => 'd',
            EntryKind::File { .. } | EntryKind::HardLink { .. } => '-',
            EntryKind::Symlink { .. } => 'l',
            EntryKind::CharDevice { .. } => 'c',
            EntryKind::BlockDevice { .. } => 'b',
            EntryKind::Fifo => 'p',
            EntryKind::Socket => 's',
        }
    }
}

/// Manifest versions 1 and 2, bincode (docs/FORMAT.md §8): the same manifest with 32-byte
/// chunk ids (the whole BLAKE3, cut to the version-4 id when read), and in version 1 without
/// block hashes.
pub mod legacy {
    use super::*;

    /// Versions 1 and 2's `Manifest`: field for field the same, with block records `B`.
    #[derive(Serialize, Deserialize)]
    pub struct Manifest<B> {
        image: ImageInfo,
        packs: Vec<PackRecord>,
        blocks: Vec<B>,
        chunks: Vec<ChunkRecord>,
        entries: Vec<Entry>,
        users: Vec<(u32, String)>,
        groups: Vec<(u32, String)>,
        filesystems: Vec<CapturedFs>,
        stats: CaptureStats,
        extensions: Vec<Extension>,
    }

    /// Version 1.
    pub type V1 = Manifest<BlockRecordV1>;
    /// Version 2: version 4's block records.
    pub type V2 = Manifest<super::BlockRecord>;

    /// Version 1's `BlockRecord`: no hash.
    #[derive(Deserialize)]
    pub struct BlockRecordV1 {
        pack: PackIndex,
        offset: u64,
        stored_len: u32,
        raw_len: u32,
        codec: Codec,
    }

    impl From<BlockRecordV1> for super::BlockRecord {
        fn from(b: BlockRecordV1) -> Self {
            super::BlockRecord {
                pack: b.pack,
                offset: b.offset,
                stored_len: b.stored_len,
                raw_len: b.raw_len,
                codec: b.codec,
                hash: [0; 32],
            }
        }
    }

    /// Versions 1 and 2's `ChunkRecord`: the whole BLAKE3 as id.
    #[derive(Serialize, Deserialize)]
    pub struct ChunkRecord {
        pub id: [u8; 32],
        pub block: BlockIndex,
        pub offset: u32,
        pub len: u32,
    }

    impl V2 {
        /// `m` as version 2 held it, each id followed by `rest` to make the whole hash (for
        /// tests of reading version 2: osimage no longer writes it).
        pub fn of(m: &super::Manifest, rest: [u8; 16]) -> V2 {
            let m = m.clone();
            Manifest {
                image: m.image,
                packs: m.packs,
                blocks: m.blocks,
                chunks: m
                    .chunks
                    .iter()
                    .map(|c| ChunkRecord {
                        id: [c.id.0, rest].concat().try_into().expect("32 bytes"),
                        block: c.block,
                        offset: c.offset,
                        len: c.len,
                    })
                    .collect(),
                entries: m.entries.to_vec(),
                users: m.users,
                groups: m.groups,
                filesystems: m.filesystems,
                stats: m.stats,
                extensions: m.extensions,
            }
        }
    }

    impl<B: Into<super::BlockRecord>> From<Manifest<B>> for super::Manifest {
        fn from(m: Manifest<B>) -> Self {
            super::Manifest {
                image: m.image,
                packs: m.packs,
                blocks: m.blocks.into_iter().map(Into::into).collect(),
                chunks: m
                    .chunks
                    .into_iter()
                    .map(|c| super::ChunkRecord {
                        id: ChunkId::from_full(&c.id),
                        block: c.block,
                        offset: c.offset,
                        len: c.len,
                    })
                    .collect(),
                entries: m.entries.into(),
                users: m.users,
                groups: m.groups,
                filesystems: m.filesystems,
                stats: m.stats,
                extensions: m.extensions,
            }
        }
    }
}
