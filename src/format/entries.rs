//! The entry table as it is held in memory by capture and by every reader of an image
//! (docs/PERFORMANCE.md "Memory an entry", issue #23 goal 2): every entry's path in one byte
//! arena, and the rest of it (`EntryRow`: kind, metadata, xattrs) in a table beside it, in the
//! same order. A path boxed in each entry cost 16 bytes in the entry and a heap block of its
//! own (48 bytes for a 30-byte path, with malloc's header and rounding); here it costs its
//! bytes and 4 of an end offset. The encoded form is unchanged: an `Entry` (path, kind, meta,
//! xattrs) is still what is built, encoded and decoded one at a time (`Entry`, `EntryRef`).

use serde::{Deserialize, Serialize};

use super::entry_row::EntryRow;
use super::manifest::{Entry, EntryKind, Meta, Xattr};

/// The paths of a table, each one's bytes after the one before's in `bytes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paths {
    bytes: Vec<u8>,
    /// The low 32 bits of the offset in `bytes` where each path ends.
    ends: Vec<u32>,
    /// For each time the ends pass another 4 GiB, the index of the first path that ends past
    /// it (once per 4 GiB passed): empty but for more than 4 GiB of paths, which a capture
    /// may meet (a reader refuses them, FORMAT.md §5.7).
    wraps: Vec<usize>,
}

impl Paths {
    /// Room for `n` paths of `bytes` bytes in all.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        Paths {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(n),
            wraps: Vec::new(),
        }
    }

    /// How many paths are held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no path is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends a path.
    pub fn push(&mut self, path: &[u8]) {
        let before = self.bytes.len() as u64;
        self.bytes.extend_from_slice(path);
        let end = self.bytes.len() as u64;
        for _ in (before >> 32)..(end >> 32) {
            self.wraps.push(self.ends.len());
        }
        self.ends.push(end as u32);
    }

    /// Where path `i` ends in `bytes`.
    fn end(&self, i: usize) -> usize {
        let high = match self.wraps.is_empty() {
            true => 0,
            false => self.wraps.partition_point(|&w| w <= i) as u64,
        };
        ((high << 32) | self.ends[i] as u64) as usize
    }

    /// Path `i`. Panics when there is none: `i` comes from the table's own length, or from a
    /// manifest `validate` checked.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = match i {
            0 => 0,
            _ => self.end(i - 1),
        };
        &self.bytes[start..self.end(i)]
    }

    /// Keeps the first `n` paths.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len() {
            return;
        }
        let end = match n {
            0 => 0,
            _ => self.end(n - 1),
        };
        self.bytes.truncate(end);
        self.ends.truncate(n);
        self.wraps.retain(|&w| w < n);
    }

    /// Keeps the paths `keep` says to, in order, moving them down in place.
    fn retain(&mut self, keep: &[bool]) {
        let wraps = std::mem::take(&mut self.wraps);
        let end_at = |ends: &[u32], i: usize| {
            let high = wraps.partition_point(|&w| w <= i) as u64;
            ((high << 32) | ends[i] as u64) as usize
        };
        let (mut start, mut to, mut n) = (0usize, 0usize, 0usize);
        for (i, &k) in keep.iter().enumerate().take(self.ends.len()) {
            let end = end_at(&self.ends, i);
            if k {
                self.bytes.copy_within(start..end, to);
                let before = to as u64;
                to += end - start;
                for _ in (before >> 32)..(to as u64 >> 32) {
                    self.wraps.push(n);
                }
                // n <= i: ends[i] was read above, and later ones are past n.
                self.ends[n] = to as u32;
                n += 1;
            }
            start = end;
        }
        self.bytes.truncate(to);
        self.ends.truncate(n);
    }

    /// Drops spare capacity: the paths stay until the manifest is written or read through.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// The entries of a manifest, in capture order (every directory before what it contains):
/// their paths in one arena, the rest in a table of `EntryRow`s. Indexing gives an entry's
/// row; `path(i)` its path; `iter()` both, as `EntryRef`s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entries {
    paths: Paths,
    rows: Vec<EntryRow>,
}

/// One entry of an `Entries`, borrowed: its path, and its row's fields through `Deref`.
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    pub path: &'a [u8],
    pub row: &'a EntryRow,
}

impl std::ops::Deref for EntryRef<'_> {
    type Target = EntryRow;

    fn deref(&self) -> &EntryRow {
        self.row
    }
}

impl EntryRef<'_> {
    /// The entry as an owned `Entry`.
    pub fn to_entry(&self) -> Entry {
        Entry {
            path: self.path.into(),
            kind: self.row.kind(),
            meta: self.row.meta(),
            xattrs: self.row.xattrs().to_vec().into(),
        }
    }
}

/// One entry of an `Entries`, its row writable: its path, and its row's fields through
/// `DerefMut`.
#[derive(Debug)]
pub struct EntryMut<'a> {
    pub path: &'a [u8],
    pub row: &'a mut EntryRow,
}

impl std::ops::Deref for EntryMut<'_> {
    type Target = EntryRow;

    fn deref(&self) -> &EntryRow {
        self.row
    }
}

impl std::ops::DerefMut for EntryMut<'_> {
    fn deref_mut(&mut self) -> &mut EntryRow {
        self.row
    }
}

impl Entries {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table of `paths` and `rows`, which must be as many.
    pub fn from_parts(paths: Paths, rows: Vec<EntryRow>) -> Self {
        assert_eq!(paths.len(), rows.len(), "as many paths as rows");
        Entries { paths, rows }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends `e`.
    pub fn push(&mut self, e: Entry) {
        let (path, row) = e.into_parts();
        self.push_row(&path, row);
    }

    /// Appends an entry of `path` and `row`.
    pub fn push_row(&mut self, path: &[u8], row: EntryRow) {
        self.paths.push(path);
        self.rows.push(row);
    }

    /// Keeps the first `n` entries.
    pub fn truncate(&mut self, n: usize) {
        self.paths.truncate(n);
        self.rows.truncate(n);
    }

    /// Keeps the entries `keep` says to (one flag an entry), in order; the paths move down in
    /// place.
    pub fn retain(&mut self, keep: &[bool]) {
        assert_eq!(keep.len(), self.len(), "one flag an entry");
        self.paths.retain(keep);
        let mut i = 0;
        self.rows.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }

    /// Replaces entry `i` with `e`. The paths after it are copied again: for tests and
    /// tools that edit a manifest, not for a table being built.
    pub fn set(&mut self, i: usize, e: Entry) {
        let mut v = self.to_vec();
        v[i] = e;
        *self = v.into();
    }

    /// Entry `i`'s path. Panics when there is no entry `i`.
    pub fn path(&self, i: usize) -> &[u8] {
        self.paths.get(i)
    }

    /// Entry `i`, or `None`.
    pub fn get(&self, i: usize) -> Option<EntryRef<'_>> {
        let row = self.rows.get(i)?;
        Some(EntryRef {
            path: self.paths.get(i),
            row,
        })
    }

    /// Entry `i`. Panics when there is none.
    pub fn at(&self, i: usize) -> EntryRef<'_> {
        EntryRef {
            path: self.paths.get(i),
            row: &self.rows[i],
        }
    }

    /// The last entry, or `None`.
    pub fn last(&self) -> Option<EntryRef<'_>> {
        self.len().checked_sub(1).map(|i| self.at(i))
    }

    /// Every entry in order.
    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = EntryRef<'_>> + ExactSizeIterator + Clone + '_ {
        (0..self.len()).map(|i| self.at(i))
    }

    /// Every entry in order, its row writable.
    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = EntryMut<'_>> + '_ {
        let paths = &self.paths;
        self.rows.iter_mut().enumerate().map(|(i, row)| EntryMut {
            path: paths.get(i),
            row,
        })
    }

    /// The rows, in order.
    pub fn rows(&self) -> &[EntryRow] {
        &self.rows
    }

    /// The paths, and the rows writable (for workers that each fill a stretch of the rows).
    pub fn split_mut(&mut self) -> (&Paths, &mut [EntryRow]) {
        (&self.paths, &mut self.rows)
    }

    /// The entries as owned `Entry`s (tests, and the bincode of versions 1 and 2).
    pub fn to_vec(&self) -> Vec<Entry> {
        self.iter().map(|e| e.to_entry()).collect()
    }

    /// Drops spare capacity: the entries stay until the manifest is written or read through.
    pub fn shrink_to_fit(&mut self) {
        self.paths.shrink_to_fit();
        self.rows.shrink_to_fit();
    }
}

impl Entry {
    /// The entry's path, and the rest of it.
    pub fn into_parts(self) -> (Box<[u8]>, EntryRow) {
        let row = EntryRow::new(self.kind, self.meta, self.xattrs.into_vec());
        (self.path, row)
    }
}

impl std::ops::Index<usize> for Entries {
    type Output = EntryRow;

    fn index(&self, i: usize) -> &EntryRow {
        &self.rows[i]
    }
}

impl std::ops::IndexMut<usize> for Entries {
    fn index_mut(&mut self, i: usize) -> &mut EntryRow {
        &mut self.rows[i]
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = EntryRef<'a>;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = EntryRef<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl<'a> IntoIterator for &'a mut Entries {
    type Item = EntryMut<'a>;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = EntryMut<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter_mut())
    }
}

impl IntoIterator for Entries {
    type Item = Entry;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = Entry>>;

    fn into_iter(self) -> Self::IntoIter {
        let Entries { paths, rows } = self;
        Box::new(rows.into_iter().enumerate().map(move |(i, row)| {
            let (kind, meta, xattrs) = row.into_parts();
            Entry {
                path: paths.get(i).into(),
                kind,
                meta,
                xattrs,
            }
        }))
    }
}

impl FromIterator<Entry> for Entries {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        let mut out = Entries::new();
        for e in iter {
            out.push(e);
        }
        out
    }
}

impl From<Vec<Entry>> for Entries {
    fn from(v: Vec<Entry>) -> Self {
        v.into_iter().collect()
    }
}

impl Extend<Entry> for Entries {
    fn extend<I: IntoIterator<Item = Entry>>(&mut self, iter: I) {
        for e in iter {
            self.push(e);
        }
    }
}

/// An entry as bincode encodes it (manifest versions 1 and 2): field for field `Entry`.
#[derive(Serialize)]
struct EncodedEntry<'a> {
    path: &'a [u8],
    kind: EntryKind,
    meta: Meta,
    xattrs: &'a [Xattr],
}

impl Serialize for Entries {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(|e| EncodedEntry {
            path: e.path,
            kind: e.row.kind(),
            meta: e.row.meta(),
            xattrs: e.row.xattrs(),
        }))
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Entry>::deserialize(d).map(Entries::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_back_as_pushed() {
        let mut p = Paths::default();
        for s in ["", "etc", "etc/passwd", "", "usr/bin/ls"] {
            p.push(s.as_bytes());
        }
        let got: Vec<&[u8]> = (0..p.len()).map(|i| p.get(i)).collect();
        assert_eq!(
            got,
            [&b""[..], b"etc", b"etc/passwd", b"", b"usr/bin/ls"].to_vec()
        );
    }

    #[test]
    fn retain_keeps_the_paths_asked_for_in_order() {
        let names = ["", "a", "a/b", "c", "a/b/d", "e"];
        let mut t: Entries = names
            .iter()
            .map(|n| Entry {
                path: n.as_bytes().into(),
                kind: EntryKind::Fifo,
                meta: Meta::default(),
                xattrs: Default::default(),
            })
            .collect();
        t.retain(&[true, false, true, false, false, true]);
        let got: Vec<&[u8]> = t.iter().map(|e| e.path).collect();
        assert_eq!(got, [&b""[..], b"a/b", b"e"].to_vec());
        assert_eq!(t.rows().len(), 3);
    }

    #[test]
    fn ends_past_4_gib_are_found_through_the_wraps() {
        // The arithmetic of `end` without 4 GiB of bytes: ends as `push` would record them.
        let p = Paths {
            bytes: Vec::new(),
            ends: vec![10, 20, 5, 7, 3],
            wraps: vec![2, 4],
        };
        let ends: Vec<usize> = (0..5).map(|i| p.end(i)).collect();
        let g = 1usize << 32;
        assert_eq!(ends, [10, 20, g + 5, g + 7, 2 * g + 3]);
    }
}
