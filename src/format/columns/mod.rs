//! Manifest versions 3 and 4: the `Manifest` as delta-coded columns (docs/FORMAT.md §5.7,
//! issue #23); version 4 has 16-byte chunk ids, version 3 the whole 32-byte BLAKE3.
//!
//! The in-memory types are those of `format::manifest`, unchanged; only the bytes inside the
//! frame differ from version 2's bincode. `write` turns a manifest into the 22 columns,
//! `read` turns them back, refusing every count, length and index that does not fit before it
//! allocates for it; `varint` holds the numbers both use. `format::frame` compresses, hashes
//! and frames the result as for every version, and `format::validate` checks the decoded
//! manifest exactly as it checks one of version 2.

mod entries;
mod read;
mod varint;
mod write;

use serde::{Deserialize, Serialize};

use super::manifest::{CaptureStats, CapturedFs, Extension, ImageInfo, PackRecord};

pub use read::{decode, decode_from};
pub use write::encode;

/// The manifest version whose frame body is this encoding with 16-byte chunk ids, the one
/// written (FORMAT.md §8).
pub const VERSION: u16 = 4;
/// The same encoding with 32-byte chunk ids (the whole BLAKE3), still read.
pub const VERSION_32: u16 = 3;

/// The columns in their order (FORMAT.md §5.7's table), named in refusals.
const COLUMNS: [&str; 22] = [
    "1 (counts)",
    "2 (head)",
    "3 (blocks)",
    "4 (block hashes)",
    "5 (chunks)",
    "6 (chunk ids)",
    "7 (kinds)",
    "8 (paths)",
    "9 (sizes)",
    "10 (runs)",
    "11 (links)",
    "12 (modes)",
    "13 (uids)",
    "14 (gids)",
    "15 (time flags)",
    "16 (mtimes)",
    "17 (mtime nanoseconds)",
    "18 (other times)",
    "19 (inodes)",
    "20 (filesystems)",
    "21 (link counts)",
    "22 (xattrs)",
];

/// Time flags (column 15): which of atime and ctime differ from mtime and are stored.
const ATIME_DIFFERS: u8 = 1;
const CTIME_DIFFERS: u8 = 2;

/// Runs (column 10): the `uv` h of a file without runs, and of the short form.
const NO_RUNS: u64 = 0;
const NEXT_CHUNKS: u64 = 1;

/// The most path bytes a decoded manifest holds: what a version-2 manifest could (its
/// decoded length is at most 4 GiB), so prefix sharing cannot make a small body huge.
const MAX_PATH_BYTES: u64 = super::records::MAX_MANIFEST_RAW;

/// Column 2 as written: everything of the manifest that is not a column, borrowed.
#[derive(Serialize)]
struct HeadRef<'a> {
    image: &'a ImageInfo,
    packs: &'a [PackRecord],
    users: &'a [(u32, String)],
    groups: &'a [(u32, String)],
    filesystems: &'a [CapturedFs],
    stats: &'a CaptureStats,
    extensions: &'a [Extension],
}

/// Column 2 as read.
#[derive(Deserialize)]
struct Head {
    image: ImageInfo,
    packs: Vec<PackRecord>,
    users: Vec<(u32, String)>,
    groups: Vec<(u32, String)>,
    filesystems: Vec<CapturedFs>,
    stats: CaptureStats,
    extensions: Vec<Extension>,
}

#[cfg(test)]
mod tests;
