//! The image's tree split per restored filesystem: every entry goes to the filesystem with the
//! longest mount point above it (files of filesystems that are not recreated land in the one
//! above them), paths rebased to that filesystem's root. Each part is a `ChunkSource` that
//! `extract` writes into its own freshly made filesystem, so each gets exactly its own files.
//!
//! A mount point's directory appears twice: as the child filesystem's root (the entry's
//! metadata) and as an empty directory in the parent filesystem, where the child is mounted
//! (the metadata of the directory that was underneath, from the mount-dirs record, FORMAT.md
//! §13; the entry's when the image has none).
//!
//! A part reads the image's chunk table, and the part of a tree restored into one filesystem
//! is the image's entries themselves: only a tree split among several filesystems is copied
//! (issue #23 goal 2: a restore holds the manifest once).

use std::borrow::Cow;

use crate::extract::ChunkSource;
use crate::format::PayloadError;
use crate::format::manifest::{
    ChunkIndex, ChunkRecord, Entries, Entry, EntryIndex, EntryKind, Manifest,
};
use crate::format::mount_dirs;
use crate::payload::reader::{BlockCache, PayloadReader};

/// One filesystem's part of the image, reading chunks from the whole image.
pub struct Part<'r> {
    reader: &'r PayloadReader,
    /// The image's own entries when the part is the whole tree unchanged.
    entries: Cow<'r, Entries>,
}

impl<'r> Part<'r> {
    /// Bytes of file data in this part (holes excluded), for progress and space checks.
    pub fn data_bytes(&self) -> u64 {
        let chunks = self.chunks();
        self.entries
            .iter()
            .map(|e| match &e.kind() {
                EntryKind::File { runs, .. } => runs
                    .iter()
                    .flat_map(|r| &r.chunks)
                    .filter_map(|&c| chunks.get(c as usize))
                    .map(|c| u64::from(c.len))
                    .sum(),
                _ => 0,
            })
            .sum()
    }

    /// Whether the part has an entry at `path` (relative to its filesystem's root).
    pub fn has_path(&self, path: &[u8]) -> bool {
        self.entries.iter().any(|e| *e.path == *path)
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

impl ChunkSource for Part<'_> {
    type Cache = BlockCache;
    type Error = PayloadError;

    fn entries(&self) -> &Entries {
        &self.entries
    }

    fn chunks(&self) -> &[ChunkRecord] {
        &self.reader.manifest().chunks
    }

    fn new_cache(&self) -> BlockCache {
        self.reader.new_cache()
    }

    fn read_chunk<'a>(
        &'a self,
        idx: ChunkIndex,
        cache: &'a mut BlockCache,
    ) -> Result<&'a [u8], PayloadError> {
        self.reader.read_chunk(idx, cache)
    }

    fn plan(&self, chunks: &mut dyn Iterator<Item = ChunkIndex>) {
        self.reader.plan_chunks(chunks)
    }
}

/// `path` relative to mount point `mp` (both relative to the image root, no leading `/`).
fn rebase<'p>(path: &'p [u8], mp: &[u8]) -> Option<&'p [u8]> {
    if mp.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(mp)?;
    match rest {
        [] => Some(rest),
        [b'/', tail @ ..] => Some(tail),
        _ => None,
    }
}

/// Index of the mount point in `mps` with the longest match for `path`, skipping `skip`.
fn owner(path: &[u8], mps: &[Vec<u8>], skip: Option<usize>) -> Option<usize> {
    mps.iter()
        .enumerate()
        .filter(|(i, mp)| Some(*i) != skip && rebase(path, mp).is_some())
        .max_by_key(|(_, mp)| mp.len())
        .map(|(i, _)| i)
}

/// Splits the image's tree among filesystems mounted at `mount_points` (absolute, e.g. `/`,
/// `/boot/efi`; one part per mount point, in the same order). `strip_xattrs[i]`: the
/// filesystem keeps no xattrs (vfat). Fails only on a damaged mount-dirs record.
pub fn split<'r>(
    reader: &'r PayloadReader,
    mount_points: &[String],
    strip_xattrs: &[bool],
) -> Result<Vec<Part<'r>>, PayloadError> {
    let m = reader.manifest();
    if let ([root], [false]) = (mount_points, strip_xattrs)
        && root.trim_matches('/').is_empty()
    {
        // One filesystem keeping xattrs: its part is every entry as it is (`split_entries`
        // would copy each one unchanged; the image was validated when opened, so no hard link
        // points forward). The mount-dirs record is still checked, as `split_entries` does.
        mount_dirs::from_manifest(m)?;
        let entries = Cow::Borrowed(&m.entries);
        return Ok(vec![Part { reader, entries }]);
    }
    Ok(split_entries(m, mount_points, strip_xattrs)?
        .into_iter()
        .map(|entries| Part {
            reader,
            entries: Cow::Owned(entries),
        })
        .collect())
}

/// The entries of each part of `split`, in the same order.
fn split_entries(
    m: &Manifest,
    mount_points: &[String],
    strip_xattrs: &[bool],
) -> Result<Vec<Entries>, PayloadError> {
    let underneath = mount_dirs::from_manifest(m)?;
    let mps: Vec<Vec<u8>> = mount_points
        .iter()
        .map(|p| p.trim_matches('/').as_bytes().to_vec())
        .collect();
    let mut entries: Vec<Entries> = vec![Entries::new(); mps.len()];
    // Old entry index → (part, new index), for hard links.
    let mut moved: Vec<Option<(usize, EntryIndex)>> = vec![None; m.entries.len()];
    for (i, e) in m.entries.iter().enumerate() {
        let Some(o) = owner(e.path, &mps, None) else {
            continue;
        };
        let rel = rebase(e.path, &mps[o]).unwrap_or_default().to_vec();
        if rel.is_empty() && !mps[o].is_empty() {
            // The mount point's directory in the filesystem above it.
            if let Some(p) = owner(e.path, &mps, Some(o))
                && let Some(r) = rebase(e.path, &mps[p])
            {
                let (meta, xattrs) = match underneath.get(e.path) {
                    Some(d) => (&d.meta, &d.xattrs[..]),
                    None => (&e.meta(), e.xattrs()),
                };
                entries[p].push(Entry {
                    path: r.into(),
                    kind: EntryKind::Directory,
                    meta: *meta,
                    xattrs: if strip_xattrs[p] {
                        Default::default()
                    } else {
                        xattrs.to_vec().into()
                    },
                });
            }
        }
        let kind = match &e.kind() {
            EntryKind::HardLink { target } => {
                match moved.get(*target as usize).copied().flatten() {
                    Some((part, idx)) if part == o => EntryKind::HardLink { target: idx },
                    // The first name is in another part (not possible on one real filesystem):
                    // this name gets the data, and later names link to it.
                    _ => {
                        let first = m.entries.get(*target as usize).map(|t| t.kind().clone());
                        let kind = first.unwrap_or(EntryKind::Directory);
                        moved[*target as usize] = Some((o, entries[o].len() as EntryIndex));
                        kind
                    }
                }
            }
            k => k.clone(),
        };
        moved[i] = Some((o, entries[o].len() as EntryIndex));
        entries[o].push(Entry {
            path: rel.into(),
            kind,
            meta: e.meta(),
            xattrs: if strip_xattrs[o] {
                Default::default()
            } else {
                e.xattrs().to_vec().into()
            },
        });
    }
    Ok(entries)
}

/// Splits the tree among `filesystems` as the restore will (`split`, vfat without xattrs) and
/// runs extract's checks on each part, writing nothing (issue #20 item 6): a tree that does not
/// fit the layout (a mount point that is a symlink or a file in the image, a hard link across
/// filesystems...) is refused before the first disk is wiped, and by the dry run.
pub fn check_parts(
    reader: &PayloadReader,
    filesystems: &[super::plan::FsPlan],
) -> Result<(), super::RestoreError> {
    let mps: Vec<String> = filesystems.iter().map(|f| f.mount_point.clone()).collect();
    let strip: Vec<bool> = filesystems.iter().map(|f| f.fstype == "vfat").collect();
    for (mp, part) in mps.iter().zip(split(reader, &mps, &strip)?) {
        crate::extract::check(&part).map_err(|source| super::RestoreError::Tree {
            mount_point: mp.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebase_and_owner() {
        assert_eq!(rebase(b"boot/efi/EFI", b"boot/efi"), Some(&b"EFI"[..]));
        assert_eq!(rebase(b"boot/efi", b"boot/efi"), Some(&b""[..]));
        assert_eq!(rebase(b"boot/efix", b"boot/efi"), None);
        assert_eq!(rebase(b"etc", b""), Some(&b"etc"[..]));
        let mps = vec![b"".to_vec(), b"boot".to_vec(), b"boot/efi".to_vec()];
        assert_eq!(owner(b"boot/efi/x", &mps, None), Some(2));
        assert_eq!(owner(b"boot/grub", &mps, None), Some(1));
        assert_eq!(owner(b"boot/efi", &mps, Some(2)), Some(1));
        assert_eq!(owner(b"etc/fstab", &mps, None), Some(0));
    }

    fn dir(path: &[u8], mode: u32, xattr: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Directory,
            meta: crate::format::manifest::Meta {
                mode,
                ..Default::default()
            },
            xattrs: vec![crate::format::manifest::Xattr {
                name: b"user.who".to_vec(),
                value: xattr.to_vec(),
            }]
            .into(),
        }
    }

    /// `split` lends the image's entries to a tree restored into one filesystem: what
    /// `split_entries` would have copied is the same, hard links and the mount-dirs record
    /// included.
    #[test]
    fn one_filesystem_gets_the_entries_unchanged() {
        let file = Entry {
            path: b"f".as_slice().into(),
            kind: EntryKind::File {
                size: 0,
                runs: Default::default(),
            },
            meta: Default::default(),
            xattrs: Default::default(),
        };
        let link = Entry {
            path: b"boot/l".as_slice().into(),
            kind: EntryKind::HardLink { target: 2 },
            ..file.clone()
        };
        let entries = vec![
            dir(b"", 0o755, b"root"),
            dir(b"boot", 0o700, b"boot fs"),
            file,
            link,
        ];
        let mut m = Manifest {
            entries: entries.into(),
            ..Manifest::default()
        };
        record_underneath_boot(&mut m);
        let parts = split_entries(&m, &["/".to_string()], &[false]).unwrap();
        assert_eq!(parts, [m.entries]);
    }

    /// Adds the mount-dirs record of a directory `boot` (mode 0555) under a mount point.
    fn record_underneath_boot(m: &mut Manifest) {
        let under = dir(b"boot", 0o555, b"underneath");
        m.extensions
            .push(mount_dirs::to_extension(&[mount_dirs::MountDir {
                path: under.path.into(),
                meta: under.meta,
                xattrs: under.xattrs.into_vec(),
            }]));
    }

    /// FORMAT.md §13 (issue #24 item 6): the mount point's directory in the parent filesystem
    /// gets the record of what was underneath; the child's root keeps the entry.
    #[test]
    fn the_directory_under_a_mount_point_gets_its_own_metadata() {
        let mut m = Manifest {
            entries: vec![dir(b"", 0o755, b"root"), dir(b"boot", 0o700, b"boot fs")].into(),
            ..Manifest::default()
        };
        let mps = ["/".to_string(), "/boot".to_string()];
        let plain = split_entries(&m, &mps, &[false, false]).unwrap();
        assert_eq!(plain[0].path(1), b"boot");
        assert_eq!(
            plain[0][1].meta().mode,
            0o700,
            "no record: the entry's, as before"
        );
        record_underneath_boot(&mut m);
        let parts = split_entries(&m, &mps, &[false, false]).unwrap();
        let (in_root, boot_root) = (parts[0].at(1), parts[1].at(0));
        assert_eq!((in_root.path, in_root.meta().mode), (&b"boot"[..], 0o555));
        assert_eq!(in_root.xattrs()[0].value, b"underneath");
        assert_eq!((boot_root.path, boot_root.meta().mode), (&b""[..], 0o700));
        assert_eq!(boot_root.xattrs()[0].value, b"boot fs");
        // A vfat parent keeps no xattrs, the record's neither.
        let parts = split_entries(&m, &mps, &[true, false]).unwrap();
        assert!(parts[0][1].xattrs().is_empty());
        // Restored without a separate /boot, the directory is the entry alone.
        let one = split_entries(&m, &mps[..1], &[false]).unwrap();
        assert_eq!(one[0][1].meta().mode, 0o700);
        m.extensions[0].data.push(0);
        assert!(split_entries(&m, &mps, &[false, false]).is_err());
    }
}
