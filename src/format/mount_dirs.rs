//! Extension `mount-dirs`, version 1 (docs/FORMAT.md §13): the directories underneath the
//! mount points of captured filesystems, whose entries hold the mounted filesystem's root.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::PayloadError;
use super::manifest::{EntryKind, Extension, Manifest, Meta, Xattr};

/// The extension's name in `Manifest::extensions`.
pub const NAME: &str = "mount-dirs";
/// The version this build writes and reads.
pub const VERSION: u16 = 1;
/// Longest `data` a reader accepts.
const MAX_LEN: usize = 64 << 20;

/// The directory underneath the mount point `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountDir {
    /// The path of the mount point's entry (relative to the root, never empty).
    pub path: Vec<u8>,
    pub meta: Meta,
    pub xattrs: Vec<Xattr>,
}

/// The directories underneath, by path, as a restore looks them up.
pub type MountDirs = HashMap<Vec<u8>, MountDir>;

/// Encodes `dirs` as the manifest extension (optional: older readers ignore it).
pub fn to_extension(dirs: &[MountDir]) -> Extension {
    Extension::optional(NAME, VERSION, &dirs, "the mount-dirs record")
}

/// The record of `m`, checked (FORMAT.md §13): empty when the image has none. The data is
/// hostile input: every path must be a directory entry other than the root, listed once, with
/// a valid mode, times and filesystem index. `format::validate` runs it when an image is
/// opened.
pub fn from_manifest(m: &Manifest) -> Result<MountDirs, PayloadError> {
    let what = "the mount-dirs record";
    let Some(dirs) = m.decode_extension::<Vec<MountDir>, MAX_LEN>(NAME, VERSION, what)? else {
        return Ok(MountDirs::new());
    };
    let directories: HashSet<&[u8]> = m
        .entries
        .iter()
        .filter(|e| matches!(e.kind(), EntryKind::Directory) && !e.path.is_empty())
        .map(|e| e.path)
        .collect();
    let mut out = MountDirs::with_capacity(dirs.len());
    for d in dirs {
        let shown = String::from_utf8_lossy(&d.path).into_owned();
        let bad = |why: &str| PayloadError::Format(format!("{what}: {shown}: {why}"));
        if !directories.contains(d.path.as_slice()) {
            return Err(bad("not a directory of the image other than its root"));
        }
        if d.meta.fs as usize >= m.filesystems.len().max(1) {
            return Err(bad("unknown filesystem"));
        }
        if d.meta.mode > 0o7777 {
            return Err(bad("mode out of range"));
        }
        let times = [&d.meta.atime, &d.meta.mtime, &d.meta.ctime];
        if times.iter().any(|t| t.nsec >= 1_000_000_000) {
            return Err(bad("a time with 10^9 or more nanoseconds"));
        }
        if out.insert(d.path.clone(), d).is_some() {
            return Err(bad("listed twice"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::{Entry, Timestamp};

    fn dir(path: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Directory,
            meta: Meta::default(),
            xattrs: Default::default(),
        }
    }

    fn under(path: &[u8], mode: u32) -> MountDir {
        MountDir {
            path: path.to_vec(),
            meta: Meta {
                mode,
                uid: 7,
                mtime: Timestamp { sec: 5, nsec: 9 },
                ..Meta::default()
            },
            xattrs: vec![Xattr {
                name: b"user.k".to_vec(),
                value: b"v".to_vec(),
            }],
        }
    }

    fn manifest(dirs: &[MountDir]) -> Manifest {
        let mut m = Manifest {
            entries: vec![dir(b""), dir(b"boot"), dir(b"home")].into(),
            ..Manifest::default()
        };
        m.entries.push(Entry {
            kind: EntryKind::Fifo,
            ..dir(b"fifo")
        });
        m.extensions.push(to_extension(dirs));
        m
    }

    #[test]
    fn the_record_round_trips() {
        assert!(from_manifest(&Manifest::default()).unwrap().is_empty());
        let dirs = [under(b"boot", 0o700), under(b"home", 0o755)];
        let got = from_manifest(&manifest(&dirs)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[&b"boot"[..]], dirs[0]);
        assert_eq!(got[&b"home"[..]].meta.mode, 0o755);
    }

    #[test]
    fn the_bytes_follow_the_spec() {
        // FORMAT.md §13: a varint count, then the path with a varint length, then Meta.
        let data = to_extension(&[under(b"boot", 0o700)]).data;
        assert_eq!(&data[..6], &[1, 4, b'b', b'o', b'o', b't']);
        // mode 0o700 = 448: varint 251 + u16 little-endian.
        assert_eq!(&data[6..9], &[251, 0xc0, 0x01]);
    }

    #[test]
    fn hostile_records_are_refused() {
        let cases: [(Vec<MountDir>, &str); 5] = [
            (vec![under(b"nope", 0o755)], "not a directory"),
            (vec![under(b"fifo", 0o755)], "not a directory"),
            (vec![under(b"", 0o755)], "not a directory"),
            (vec![under(b"boot", 0o10000)], "mode out of range"),
            (
                vec![under(b"boot", 0o755), under(b"boot", 0o700)],
                "listed twice",
            ),
        ];
        for (dirs, want) in cases {
            let e = from_manifest(&manifest(&dirs)).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let mut late = under(b"boot", 0o755);
        late.meta.atime.nsec = 1_000_000_000;
        let e = from_manifest(&manifest(&[late])).unwrap_err().to_string();
        assert!(e.contains("nanoseconds"), "{e}");
        let mut m = manifest(&[under(b"boot", 0o755)]);
        m.extensions[0].data.push(0);
        let e = from_manifest(&m).unwrap_err().to_string();
        assert!(e.contains("trailing bytes"), "{e}");
        m.extensions[0].version = 2;
        let e = from_manifest(&m).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
    }
}
