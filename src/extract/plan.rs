//! Checks a manifest before anything is written and decides what extract creates, in which
//! order (issue #2: a hostile manifest must not write outside the destination).
//!
//! Every entry of the image is checked, selected or not: paths are relative with no `.`, `..`,
//! empty or NUL components; every parent is an earlier `Directory` entry (so a symlink can never
//! be a parent: `a -> /etc` then `a/passwd` is refused here); a hard link names an earlier
//! regular file; data runs are ordered, inside the file and name existing chunks.

use std::collections::HashMap;
use std::hash::BuildHasher as _;

use hashbrown::HashTable;

use super::error::ExtractError;
use crate::format::manifest::{ChunkRecord, Entries, EntryIndex, EntryKind, Manifest};

/// Parent value meaning "the destination directory itself" (the image root's place).
const DEST: EntryIndex = EntryIndex::MAX;

/// What extract works from: a manifest's entries and chunk records, which need not be one
/// `Manifest` (a restored filesystem's part of the tree reads the image's chunk table).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tree<'m> {
    pub entries: &'m Entries,
    pub chunks: &'m [ChunkRecord],
}

impl<'m> From<&'m Manifest> for Tree<'m> {
    fn from(m: &'m Manifest) -> Self {
        Tree {
            entries: &m.entries,
            chunks: &m.chunks,
        }
    }
}

/// What to create, phase by phase, all lists in manifest order. Only entry indexes are kept,
/// 4 bytes a created entry: each entry's parent directory is found again from its path
/// (`target::DirCache`), a file's data from its entry (`data_of`) and its length from its
/// runs (`data_len`), so the plan adds next to nothing to the manifest (issue #23 goal 2).
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The image root entry (empty path), whose metadata goes to the destination itself.
    pub root: Option<EntryIndex>,
    pub dirs: Vec<EntryIndex>,
    /// Regular files to write, each created under its entry's name with the data and metadata
    /// of `data_of` it: itself, or the file a hard link points to when only the link is
    /// selected.
    pub files: Vec<EntryIndex>,
    /// Symlinks, devices, FIFOs and sockets.
    pub others: Vec<EntryIndex>,
    /// (new name, existing first name of the same file).
    pub links: Vec<(EntryIndex, EntryIndex)>,
}

impl Plan {
    /// Checks `manifest` and selects `paths` (empty: everything). Fails before any write.
    pub fn new(manifest: Tree, paths: &[Vec<u8>]) -> Result<Plan, ExtractError> {
        let (root, index) = check_tree(manifest)?;
        check_contents(manifest)?;
        // None: everything (no table of one flag an entry).
        let selected = select(manifest, &index, paths)?;
        drop(index);
        let is_selected = |i: EntryIndex| selected.as_ref().is_none_or(|s| s[i as usize]);
        let mut plan = Plan::sized(manifest, root);
        // Hard-link target → the name its data was written under, when that is a link.
        let mut promoted: HashMap<EntryIndex, EntryIndex> = HashMap::new();
        for (i, entry) in manifest.entries.iter().enumerate() {
            let i = i as EntryIndex;
            if !is_selected(i) || Some(i) == root {
                continue;
            }
            match &entry.kind() {
                EntryKind::Directory => plan.dirs.push(i),
                EntryKind::File { .. } => plan.files.push(i),
                EntryKind::HardLink { target } if is_selected(*target) => {
                    plan.links.push((i, *target))
                }
                // Only the link is selected: its first selected name gets the data.
                EntryKind::HardLink { target } => match promoted.get(target) {
                    Some(&first) => plan.links.push((i, first)),
                    None => {
                        promoted.insert(*target, i);
                        plan.files.push(i);
                    }
                },
                _ => plan.others.push(i),
            }
        }
        Ok(plan)
    }

    /// An empty plan whose lists have room for every entry of their kind, counted first: a
    /// list grown by doubling holds up to twice what it needs.
    fn sized(manifest: Tree, root: Option<EntryIndex>) -> Plan {
        let (mut dirs, mut files, mut links, mut others) = (0, 0, 0, 0);
        for entry in manifest.entries.iter() {
            match &entry.kind() {
                EntryKind::Directory => dirs += 1,
                EntryKind::File { .. } => files += 1,
                // A link may become a file to write (its target not selected).
                EntryKind::HardLink { .. } => links += 1,
                _ => others += 1,
            }
        }
        Plan {
            root,
            dirs: Vec::with_capacity(dirs),
            files: Vec::with_capacity(files),
            others: Vec::with_capacity(others),
            links: Vec::with_capacity(links),
        }
    }

    /// Bytes of file data the plan writes (for progress).
    pub fn data_len(&self, manifest: Tree) -> u64 {
        self.files
            .iter()
            .map(|&i| data_len(manifest, data_of(manifest.entries, i)))
            .sum()
    }

    /// Number of entries the plan creates, the destination's root included.
    pub fn entry_count(&self) -> u64 {
        (self.dirs.len() + self.files.len() + self.others.len() + self.links.len()) as u64
            + u64::from(self.root.is_some())
    }
}

/// Every entry by its path: a table of entry indexes, 4 bytes a slot, the paths read from the
/// manifest (a map from the path took 24: issue #23, memory an entry).
struct PathIndex<'m> {
    entries: &'m Entries,
    table: HashTable<EntryIndex>,
    hasher: std::hash::RandomState,
}

impl<'m> PathIndex<'m> {
    fn new(entries: &'m Entries) -> Self {
        PathIndex {
            entries,
            table: HashTable::with_capacity(entries.len()),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn path(&self, i: EntryIndex) -> &'m [u8] {
        self.entries.path(i as usize)
    }

    /// The directory holding entry `i` (`DEST` for a top-level entry), as `check_tree` found it.
    fn parent(&self, i: EntryIndex) -> EntryIndex {
        let dir = parent_of(self.path(i));
        if dir.is_empty() {
            return DEST;
        }
        self.get(dir).unwrap_or(DEST)
    }

    /// The entry whose path is `path`.
    fn get(&self, path: &[u8]) -> Option<EntryIndex> {
        let hash = self.hasher.hash_one(path);
        self.table.find(hash, |&i| self.path(i) == path).copied()
    }

    /// Adds entry `i`; false when an earlier entry has its path.
    fn insert(&mut self, i: EntryIndex) -> bool {
        let (entries, hasher) = (self.entries, &self.hasher);
        let path_of = |j: &EntryIndex| entries.path(*j as usize);
        let path = path_of(&i);
        match self.table.entry(
            hasher.hash_one(path),
            |j| path_of(j) == path,
            |j| hasher.hash_one(path_of(j)),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(i);
                true
            }
        }
    }
}

fn bad(manifest: Tree, index: usize, reason: impl Into<String>) -> ExtractError {
    ExtractError::BadEntry {
        index: index as u32,
        path: String::from_utf8_lossy(manifest.entries.path(index)).into_owned(),
        reason: reason.into(),
    }
}

/// Longest file name Linux filesystems accept.
const NAME_MAX: usize = 255;

/// Why `path` cannot be a relative path inside the destination, if it cannot.
fn path_problem(path: &[u8]) -> Option<&'static str> {
    if path.first() == Some(&b'/') {
        return Some("path is absolute");
    }
    if path.contains(&0) {
        return Some("path contains a NUL byte");
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" => return Some("path has an empty component"),
            b"." => return Some("path has a '.' component"),
            b".." => return Some("path has a '..' component"),
            c if c.len() > NAME_MAX => return Some("a path component is longer than 255 bytes"),
            _ => {}
        }
    }
    None
}

/// The directory part of a non-empty path ("" for a top-level name).
pub(crate) fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => &path[..slash],
        None => b"",
    }
}

/// The last component of an entry's path.
pub(crate) fn name_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => &path[slash + 1..],
        None => path,
    }
}

/// The entry whose data and metadata a planned file gets: the file itself, or the one a hard
/// link points to (the link written as a file when its target is not selected).
pub(crate) fn data_of(entries: &Entries, file: EntryIndex) -> EntryIndex {
    match entries[file as usize].kind() {
        EntryKind::HardLink { target } => target,
        _ => file,
    }
}

/// Bytes of data (chunks) of regular file entry `i`, holes excluded; 0 for other kinds.
pub(crate) fn data_len(manifest: Tree, i: EntryIndex) -> u64 {
    match &manifest.entries[i as usize].kind() {
        EntryKind::File { runs, .. } => runs
            .iter()
            .flat_map(|r| r.chunks.iter())
            .filter_map(|&c| manifest.chunks.get(c as usize))
            .map(|c| u64::from(c.len))
            .sum(),
        _ => 0,
    }
}

/// Paths, parents, duplicates and the root.
fn check_tree(manifest: Tree<'_>) -> Result<(Option<EntryIndex>, PathIndex<'_>), ExtractError> {
    let entries = manifest.entries;
    if entries.len() >= DEST as usize {
        return Err(bad(manifest, 0, "the image has too many entries"));
    }
    let mut index = PathIndex::new(entries);
    let mut root = None;
    for (i, entry) in entries.iter().enumerate() {
        let path = entry.path;
        if path.is_empty() {
            if entry.kind() != EntryKind::Directory {
                return Err(bad(manifest, i, "the image root is not a directory"));
            }
            root = Some(i as EntryIndex);
        } else if let Some(problem) = path_problem(path) {
            return Err(bad(manifest, i, problem));
        }
        if !index.insert(i as EntryIndex) {
            return Err(bad(manifest, i, "path appears twice in the image"));
        }
        if !path.is_empty() {
            parent_index(manifest, &index, i)?;
        }
    }
    Ok((root, index))
}

/// The entry of the directory holding entry `i`, which must be an earlier directory.
fn parent_index(manifest: Tree, index: &PathIndex, i: usize) -> Result<EntryIndex, ExtractError> {
    let dir = parent_of(manifest.entries.path(i));
    if dir.is_empty() {
        return Ok(DEST);
    }
    match index.get(dir).as_ref() {
        None => Err(bad(
            manifest,
            i,
            "its parent directory is not an earlier entry",
        )),
        Some(&p) if manifest.entries[p as usize].kind() != EntryKind::Directory => Err(bad(
            manifest,
            i,
            format!("its parent (entry {p}) is not a directory"),
        )),
        Some(&p) => Ok(p),
    }
}

/// Kind-specific checks.
fn check_contents(manifest: Tree) -> Result<(), ExtractError> {
    for (i, entry) in manifest.entries.iter().enumerate() {
        // utimensat would refuse these half-way through the extract.
        let meta = entry.meta();
        if meta.atime.nsec >= 1_000_000_000 || meta.mtime.nsec >= 1_000_000_000 {
            return Err(bad(manifest, i, "a timestamp has 1e9 or more nanoseconds"));
        }
        match &entry.kind() {
            EntryKind::File { size, runs } => {
                check_runs(manifest, *size, runs).map_err(|r| bad(manifest, i, r))?
            }
            EntryKind::HardLink { target } => {
                let ok = (*target as usize) < i
                    && matches!(
                        manifest.entries[*target as usize].kind(),
                        EntryKind::File { .. }
                    );
                if !ok {
                    return Err(bad(
                        manifest,
                        i,
                        format!("hard link target {target} is not an earlier regular file"),
                    ));
                }
            }
            EntryKind::Symlink { target } if target.is_empty() || target.contains(&0) => {
                return Err(bad(manifest, i, "symlink target is empty or contains NUL"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs must be ordered, not overlap, stay within `size` and name existing chunks.
fn check_runs(
    manifest: Tree,
    size: u64,
    runs: &[crate::format::manifest::DataRun],
) -> Result<(), String> {
    let mut end = 0u64;
    for run in runs {
        if run.offset < end {
            return Err(format!(
                "data run at {} overlaps the previous one",
                run.offset
            ));
        }
        end = run.offset;
        for &c in &run.chunks {
            let rec = manifest
                .chunks
                .get(c as usize)
                .ok_or_else(|| format!("data refers to chunk {c}, which does not exist"))?;
            end = end
                .checked_add(u64::from(rec.len))
                .filter(|&e| e <= size)
                .ok_or_else(|| format!("data runs extend past the file size {size}"))?;
        }
    }
    Ok(())
}

/// Which entries to create: the given paths, everything below them and their parents; None
/// when that is every entry.
fn select(
    manifest: Tree,
    index: &PathIndex,
    paths: &[Vec<u8>],
) -> Result<Option<Vec<bool>>, ExtractError> {
    let n = manifest.entries.len();
    let mut whole = vec![false; n];
    let mut everything = paths.is_empty();
    for given in paths {
        let path = normalize(given);
        if path.is_empty() {
            everything = true;
            continue;
        }
        let unknown = |reason| ExtractError::UnknownPath {
            path: String::from_utf8_lossy(given).into_owned(),
            reason,
        };
        if path_problem(path).is_some() {
            return Err(unknown(" (only plain relative paths can be selected)"));
        }
        let i = index.get(path).ok_or_else(|| unknown(""))?;
        whole[i as usize] = true;
    }
    if everything {
        return Ok(None);
    }
    let mut selected = vec![false; n];
    for i in 0..n {
        // Parents come earlier, so one forward pass spreads a selection to the subtree.
        let p = index.parent(i as EntryIndex);
        if whole[i] || (p != DEST && whole[p as usize]) {
            whole[i] = true;
            selected[i] = true;
            let mut up = p;
            while up != DEST && !selected[up as usize] {
                selected[up as usize] = true;
                up = index.parent(up);
            }
        }
    }
    if let Some(root) = manifest.entries.iter().position(|e| e.path.is_empty()) {
        selected[root] = true;
    }
    Ok(Some(selected))
}

/// A user-given path relative to the image root: leading and trailing slashes dropped.
fn normalize(path: &[u8]) -> &[u8] {
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    let end = path
        .iter()
        .rposition(|&b| b != b'/')
        .map_or(start, |e| e + 1);
    &path[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_problems() {
        assert_eq!(path_problem(b"a/b"), None);
        assert_eq!(path_problem(b"/abs"), Some("path is absolute"));
        assert_eq!(path_problem(b"../x"), Some("path has a '..' component"));
        assert_eq!(
            path_problem(b"a/../../x"),
            Some("path has a '..' component")
        );
        assert_eq!(path_problem(b"a/./x"), Some("path has a '.' component"));
        assert_eq!(path_problem(b"a//x"), Some("path has an empty component"));
        assert_eq!(path_problem(b"a/"), Some("path has an empty component"));
        assert_eq!(path_problem(b"a\0b"), Some("path contains a NUL byte"));
        assert_eq!(path_problem(&[b'x'; 255]), None);
        let long = [b'x'; 256];
        assert_eq!(
            path_problem(&long),
            Some("a path component is longer than 255 bytes")
        );
    }

    #[test]
    fn normalize_strips_slashes() {
        assert_eq!(normalize(b"/usr/bin/"), b"usr/bin");
        assert_eq!(normalize(b"///"), b"");
        assert_eq!(normalize(b"etc"), b"etc");
    }

    #[test]
    fn names_and_parents() {
        assert_eq!(parent_of(b"a/b/c"), b"a/b");
        assert_eq!(parent_of(b"a"), b"");
        assert_eq!(name_of(b"a/b/c"), b"c");
        assert_eq!(name_of(b"a"), b"a");
    }
}
