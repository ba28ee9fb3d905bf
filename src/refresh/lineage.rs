//! The `lineage` manifest extension, version 1 (docs/FORMAT.md §10): which image a refresh
//! was based on and what it took from it. Optional: readers that do not know it ignore it.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

use crate::units::count;

use super::Base;
use crate::format::PayloadError;
use crate::format::manifest::{EntryKind, Extension, Manifest};
use crate::payload::writer::ReuseCounters;

/// The extension's name in `Manifest::extensions`.
pub const NAME: &str = "lineage";
/// The version of the record this build writes and reads.
pub const VERSION: u16 = 1;
/// Largest encoded record accepted (a path and a few counters).
pub const MAX_LEN: usize = 64 << 10;

/// What a refresh reused from its base. Field order is part of the format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The base image's id (`ImageInfo::id`).
    pub base_id: [u8; 16],
    /// The base image's path as given to `--base` (raw bytes).
    pub base_path: Vec<u8>,
    /// Files whose data runs came from the base without being read.
    pub files_reused: u64,
    /// Files read from the source.
    pub files_read: u64,
    /// Blocks copied verbatim from the base's packs.
    pub blocks_copied: u64,
    /// Bytes of those blocks as stored, headers included.
    pub bytes_copied: u64,
    /// Chunks compressed by this capture (not found in the base).
    pub chunks_new: u64,
    /// Uncompressed bytes of copied chunks that files reference.
    pub reused_bytes: u64,
    /// Uncompressed bytes of copied chunks no file references (carried along by their block).
    pub carried_bytes: u64,
}

/// `info --json`'s view of a lineage: the id in hex, the path as text.
#[derive(Clone, Debug, Serialize)]
pub struct LineageJson {
    pub base_id: String,
    pub base_path: String,
    pub files_reused: u64,
    pub files_read: u64,
    pub blocks_copied: u64,
    pub bytes_copied: u64,
    pub chunks_new: u64,
    pub reused_bytes: u64,
    pub carried_bytes: u64,
}

impl Lineage {
    /// The form `info --json` prints.
    pub fn to_json(&self) -> LineageJson {
        LineageJson {
            base_id: self.base_id.iter().map(|b| format!("{b:02x}")).collect(),
            base_path: String::from_utf8_lossy(&self.base_path).into_owned(),
            files_reused: self.files_reused,
            files_read: self.files_read,
            blocks_copied: self.blocks_copied,
            bytes_copied: self.bytes_copied,
            chunks_new: self.chunks_new,
            reused_bytes: self.reused_bytes,
            carried_bytes: self.carried_bytes,
        }
    }
}

impl LineageJson {
    /// One line for the `info` table.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}): {} reused, {} read; {} copied ({} bytes), {}",
            self.base_path,
            self.base_id,
            count(self.files_reused, "file", "files"),
            self.files_read,
            count(self.blocks_copied, "block", "blocks"),
            self.bytes_copied,
            count(self.chunks_new, "new chunk", "new chunks")
        )
    }
}

/// The lineage of `m`, a refresh of `base` whose writer reported `reuse`.
pub fn measure(base: &Base, m: &Manifest, reuse: &ReuseCounters) -> Lineage {
    let copied: HashSet<u32> = reuse.copied_blocks.iter().copied().collect();
    let mut referenced = vec![false; m.chunks.len()];
    for e in &m.entries {
        if let EntryKind::File { runs, .. } = &e.kind() {
            for c in runs.iter().flat_map(|r| &r.chunks) {
                if let Some(r) = referenced.get_mut(*c as usize) {
                    *r = true;
                }
            }
        }
    }
    let mut l = Lineage {
        base_id: base.manifest().image.id,
        base_path: base.given_path().as_os_str().as_bytes().to_vec(),
        files_reused: reuse.files_reused,
        files_read: reuse.files_read,
        blocks_copied: copied.len() as u64,
        chunks_new: reuse.chunks_new,
        ..Default::default()
    };
    for &b in &copied {
        if let Some(rec) = m.blocks.get(b as usize) {
            l.bytes_copied +=
                crate::format::records::BLOCK_HEADER_LEN as u64 + rec.stored_len as u64;
        }
    }
    for (c, used) in m.chunks.iter().zip(&referenced) {
        if copied.contains(&c.block) {
            if *used {
                l.reused_bytes += c.len as u64;
            } else {
                l.carried_bytes += c.len as u64;
            }
        }
    }
    l
}

/// Encodes `l` as the manifest extension (optional).
pub fn to_extension(l: &Lineage) -> Extension {
    Extension::optional(NAME, VERSION, l, "the lineage record")
}

/// The lineage recorded in `m`, `None` for an image that is not a refresh. The data is
/// hostile input: version and length are checked, trailing bytes refused.
pub fn from_manifest(m: &Manifest) -> Result<Option<Lineage>, PayloadError> {
    m.decode_extension::<Lineage, MAX_LEN>(NAME, VERSION, "the lineage record")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lineage {
        Lineage {
            base_id: [7; 16],
            base_path: b"/srv/golden.iso".to_vec(),
            files_reused: 300,
            files_read: 2,
            blocks_copied: 40,
            bytes_copied: 1 << 20,
            chunks_new: 3,
            reused_bytes: 5 << 20,
            carried_bytes: 4096,
        }
    }

    #[test]
    fn lineage_round_trips_through_the_manifest() {
        let mut m = Manifest::default();
        assert_eq!(from_manifest(&m).unwrap(), None);
        m.extensions.push(to_extension(&sample()));
        assert_eq!(from_manifest(&m).unwrap(), Some(sample()));
    }

    #[test]
    fn lineage_bytes_follow_the_spec() {
        // FORMAT.md §10: 16 id bytes, then the path with a varint length, then varints.
        let data = to_extension(&sample()).data;
        assert_eq!(&data[..16], &[7; 16]);
        assert_eq!(data[16], 15);
        assert_eq!(&data[17..32], b"/srv/golden.iso");
        assert_eq!(&data[32..35], &[251, 44, 1]); // 300 as 251 + u16
        assert_eq!(data[35], 2);
    }

    #[test]
    fn damaged_or_newer_lineage_is_refused() {
        let mut m = Manifest::default();
        let mut ext = to_extension(&sample());
        ext.data.push(0);
        m.extensions.push(ext.clone());
        assert!(from_manifest(&m).is_err());
        ext.data.pop();
        ext.version = 2;
        m.extensions[0] = ext;
        assert!(from_manifest(&m).is_err());
    }
}
