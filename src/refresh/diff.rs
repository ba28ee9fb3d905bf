//! `osimage diff A B`: what changed between two images, from their manifests alone.
//!
//! Content is compared by chunk ids (BLAKE3 of the bytes, FORMAT.md §1), so two captures of
//! the same file compare equal whatever blocks hold them. Metadata compares what `extract`
//! restores: mode, owner, mtime and xattrs. atime (moved by reading) and ctime, inode and
//! filesystem (facts of the source) are ignored.

use std::collections::HashMap;

use serde::Serialize;

use crate::format::manifest::{ChunkId, EntryKind, EntryRef, EntryRow, Manifest};

/// How one path differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// Content differs (file bytes, link target, device number, or the type itself).
    Changed,
    /// Same content, different mode, owner, mtime or xattrs.
    Metadata,
}

/// One differing path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `/`-rooted, lossily UTF-8.
    pub path: String,
    /// The path's exact bytes, as the manifest stores them (relative: no leading `/`).
    #[serde(skip)]
    pub raw_path: Vec<u8>,
    pub kind: ChangeKind,
    /// Apparent size in A (0 when absent or not a file).
    pub old_size: u64,
    /// Apparent size in B.
    pub new_size: u64,
    /// For `Metadata` (and `Changed`): which of mode, owner, mtime, xattrs differ.
    pub fields: Vec<&'static str>,
}

/// Every difference between A and B, by path.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub metadata: u64,
}

/// What an entry holds, for comparing content.
#[derive(PartialEq, Eq)]
enum Content {
    Directory,
    File(u64, Vec<(u64, ChunkId)>),
    Symlink(Vec<u8>),
    Device(char, u64),
    Other(char),
}

/// Compares image A (older) with image B (newer).
pub fn diff(a: &Manifest, b: &Manifest) -> Diff {
    let index = |m: &'_ Manifest| -> HashMap<Vec<u8>, usize> {
        m.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.to_vec(), i))
            .collect()
    };
    let (ia, ib) = (index(a), index(b));
    let mut d = Diff::default();
    for (i, e) in a.entries.iter().enumerate() {
        match ib.get(e.path) {
            None => d.push(change(e, ChangeKind::Removed, size(a, i), 0, vec![])),
            Some(&j) => {
                let fields = meta_fields(&e, &b.entries[j]);
                let (sa, sb) = (size(a, i), size(b, j));
                if content(a, i) != content(b, j) {
                    d.push(change(e, ChangeKind::Changed, sa, sb, fields));
                } else if !fields.is_empty() {
                    d.push(change(e, ChangeKind::Metadata, sa, sb, fields));
                }
            }
        }
    }
    for (j, f) in b.entries.iter().enumerate() {
        if !ia.contains_key(f.path) {
            d.push(change(f, ChangeKind::Added, 0, size(b, j), vec![]));
        }
    }
    d.changes.sort_by(|x, y| x.path.cmp(&y.path));
    d
}

impl Diff {
    fn push(&mut self, c: Change) {
        match c.kind {
            ChangeKind::Added => self.added += 1,
            ChangeKind::Removed => self.removed += 1,
            ChangeKind::Changed => self.changed += 1,
            ChangeKind::Metadata => self.metadata += 1,
        }
        self.changes.push(c);
    }

    /// True when the images hold the same tree.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// One line per change (`+` added, `-` removed, `M` content, `m` metadata only) and a
    /// summary line.
    pub fn text(&self) -> String {
        let mut t = String::new();
        for c in &self.changes {
            let line = match c.kind {
                ChangeKind::Added => format!("+ {} ({} bytes)", c.path, c.new_size),
                ChangeKind::Removed => format!("- {} ({} bytes)", c.path, c.old_size),
                ChangeKind::Changed => {
                    format!("M {} ({} → {} bytes)", c.path, c.old_size, c.new_size)
                }
                ChangeKind::Metadata => format!("m {} ({})", c.path, c.fields.join(", ")),
            };
            t.push_str(&line);
            t.push('\n');
        }
        t.push_str(&format!(
            "{} added, {} removed, {} changed, {} metadata only\n",
            self.added, self.removed, self.changed, self.metadata
        ));
        t
    }
}

fn change(
    e: EntryRef,
    kind: ChangeKind,
    old_size: u64,
    new_size: u64,
    fields: Vec<&'static str>,
) -> Change {
    Change {
        path: format!("/{}", String::from_utf8_lossy(e.path)),
        raw_path: e.path.to_vec(),
        kind,
        old_size,
        new_size,
        fields,
    }
}

/// The regular file entry `i` is, or links to.
fn file_entry(m: &Manifest, i: usize) -> &EntryRow {
    match m.entries[i].kind() {
        EntryKind::HardLink { target } => m
            .entries
            .rows()
            .get(target as usize)
            .unwrap_or(&m.entries[i]),
        _ => &m.entries[i],
    }
}

fn size(m: &Manifest, i: usize) -> u64 {
    match file_entry(m, i).kind() {
        EntryKind::File { size, .. } => size,
        _ => 0,
    }
}

fn content(m: &Manifest, i: usize) -> Content {
    let e = file_entry(m, i);
    match e.kind() {
        EntryKind::Directory => Content::Directory,
        EntryKind::File { size, runs } => {
            let mut ids = Vec::new();
            for r in runs {
                let mut at = r.offset;
                for &c in &r.chunks {
                    let Some(rec) = m.chunks.get(c as usize) else {
                        continue;
                    };
                    ids.push((at, rec.id));
                    at += rec.len as u64;
                }
            }
            Content::File(size, ids)
        }
        EntryKind::Symlink { target } => Content::Symlink(target),
        kind @ (EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev }) => {
            Content::Device(kind.type_char(), rdev)
        }
        other => Content::Other(other.type_char()),
    }
}

/// Which restorable metadata differs.
pub(crate) fn meta_fields(a: &EntryRow, b: &EntryRow) -> Vec<&'static str> {
    let mut f = Vec::new();
    let (a_meta, b_meta) = (a.meta(), b.meta());
    if a_meta.mode != b_meta.mode {
        f.push("mode");
    }
    if (a_meta.uid, a_meta.gid) != (b_meta.uid, b_meta.gid) {
        f.push("owner");
    }
    if a_meta.mtime != b_meta.mtime {
        f.push("mtime");
    }
    if a.xattrs() != b.xattrs() {
        f.push("xattrs");
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::{ChunkRecord, DataRun, Entry, Meta};

    fn entry(path: &str, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.as_bytes().into(),
            kind,
            meta: Meta {
                mode,
                ..Default::default()
            },
            xattrs: Default::default(),
        }
    }

    fn file(path: &str, chunk: u32, size: u64, mode: u32) -> Entry {
        let runs = vec![DataRun {
            offset: 0,
            chunks: smallvec::smallvec![chunk],
        }];
        entry(
            path,
            EntryKind::File {
                size,
                runs: runs.into(),
            },
            mode,
        )
    }

    fn image(entries: Vec<Entry>) -> Manifest {
        let chunk = |b: u8| ChunkRecord {
            id: ChunkId([b; 16]),
            block: 0,
            offset: 0,
            len: 4,
        };
        Manifest {
            chunks: vec![chunk(1), chunk(2)],
            entries: entries.into(),
            ..Default::default()
        }
    }

    #[test]
    fn diff_names_each_kind_of_change_in_path_order() {
        let a = image(vec![
            entry("", EntryKind::Directory, 0o755),
            file("same", 0, 4, 0o644),
            file("gone", 0, 4, 0o644),
            file("edited", 0, 4, 0o644),
            file("chmod", 0, 4, 0o644),
        ]);
        let b = image(vec![
            entry("", EntryKind::Directory, 0o755),
            file("same", 0, 4, 0o644),
            file("edited", 1, 4, 0o644),
            file("chmod", 0, 4, 0o755),
            file("new", 1, 4, 0o644),
        ]);
        let d = diff(&a, &b);
        assert_eq!(
            d.text(),
            "m /chmod (mode)\nM /edited (4 → 4 bytes)\n- /gone (4 bytes)\n+ /new (4 bytes)\n\
             1 added, 1 removed, 1 changed, 1 metadata only\n"
        );
        assert!(diff(&a, &a).is_empty());
    }
}
