//! Structural checks of a decoded manifest (docs/FORMAT.md §5, §7), run when an image is
//! opened, before anything trusts an index or a path in it.

use std::hash::BuildHasher as _;

use hashbrown::hash_table::{Entry as Slot, HashTable};

use super::PayloadError;
use super::manifest::{EntryKind, Manifest};
use super::records::{BLOCK_HEADER_LEN, MAX_BLOCK_RAW, MAX_PACK_LEN};

/// Checks every cross-reference and path of `m`.
pub fn validate(m: &Manifest) -> Result<(), PayloadError> {
    check_tables(m)?;
    check_entries(m)?;
    super::store_ref::from_manifest(m)?;
    super::mount_dirs::from_manifest(m).map(drop)
}

fn bad(msg: String) -> PayloadError {
    PayloadError::format(format!("invalid manifest: {msg}"))
}

fn check_tables(m: &Manifest) -> Result<(), PayloadError> {
    for (i, p) in m.packs.iter().enumerate() {
        if p.len > MAX_PACK_LEN || p.len < 64 {
            return Err(bad(format!("pack {i} has an impossible length {}", p.len)));
        }
    }
    for (i, b) in m.blocks.iter().enumerate() {
        let pack = m.packs.get(b.pack as usize).ok_or_else(|| {
            bad(format!(
                "block {i} is in pack {} which does not exist",
                b.pack
            ))
        })?;
        let end = b.offset + BLOCK_HEADER_LEN as u64 + b.stored_len as u64;
        if b.offset < 64 || end > pack.len || b.raw_len == 0 || b.raw_len > MAX_BLOCK_RAW {
            return Err(bad(format!("block {i} lies outside pack {}", b.pack)));
        }
    }
    check_tiling(m)?;
    // Every id seen, as its chunk's index (4 bytes a slot, the id read from the record; a set
    // of the 16-byte ids took 17 and was every reader's peak: issue #23, memory an entry).
    let hasher = std::hash::RandomState::new();
    let id_of = |j: &u32| &m.chunks[*j as usize].id;
    let mut ids: HashTable<u32> = HashTable::with_capacity(m.chunks.len());
    for (i, c) in m.chunks.iter().enumerate() {
        let block = m.blocks.get(c.block as usize).ok_or_else(|| {
            bad(format!(
                "chunk {i} is in block {} which does not exist",
                c.block
            ))
        })?;
        if c.len == 0 || c.offset as u64 + c.len as u64 > block.raw_len as u64 {
            return Err(bad(format!("chunk {i} lies outside block {}", c.block)));
        }
        match ids.entry(
            hasher.hash_one(c.id),
            |j| *id_of(j) == c.id,
            |j| hasher.hash_one(id_of(j)),
        ) {
            Slot::Occupied(_) => return Err(bad(format!("chunk {i} is listed twice"))),
            Slot::Vacant(slot) => {
                slot.insert(i as u32);
            }
        }
    }
    Ok(())
}

/// Each pack is its 64-byte header and its blocks back to back, nothing else (FORMAT.md §3):
/// a pack hash over the header and the blocks' hashes then covers every byte of the pack.
fn check_tiling(m: &Manifest) -> Result<(), PayloadError> {
    let mut by_pack: Vec<Vec<(u64, u64)>> = vec![Vec::new(); m.packs.len()];
    for b in &m.blocks {
        by_pack[b.pack as usize].push((b.offset, BLOCK_HEADER_LEN as u64 + b.stored_len as u64));
    }
    for (i, mut blocks) in by_pack.into_iter().enumerate() {
        blocks.sort_unstable();
        let mut at = 64;
        for (offset, len) in blocks {
            if offset != at {
                return Err(bad(format!(
                    "pack {i} has {} at {at}, where its next block should be",
                    if offset > at {
                        "a gap"
                    } else {
                        "overlapping blocks"
                    }
                )));
            }
            at += len;
        }
        if at != m.packs[i].len {
            return Err(bad(format!(
                "pack {i} is {} bytes but its blocks end at {at}",
                m.packs[i].len
            )));
        }
    }
    Ok(())
}

/// Longest name (path component) Linux filesystems hold (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// A path is acceptable when it is relative and every component is a plain name.
pub fn path_is_safe(path: &[u8]) -> bool {
    path.is_empty()
        || (!path.contains(&0)
            && path
                .split(|b| *b == b'/')
                .all(|c| !c.is_empty() && c != b"." && c != b".."))
}

/// One nanosecond less than a second is the most a `timespec` holds.
const NSEC_MAX: u32 = 999_999_999;

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// The tree's rules (FORMAT.md §5.3, §7): the root first; every other path safe, with names of
/// at most 255 bytes, listed once, after its parent, which is a directory (so no path leads
/// through a symlink); times that are times; symlink targets a link can hold.
fn check_entries(m: &Manifest) -> Result<(), PayloadError> {
    // Every path seen, as its entry's index (4 bytes a slot; a map from the path to whether it
    // is a directory took 24: issue #23, memory an entry). Only directories can be parents.
    let hasher = std::hash::RandomState::new();
    let hash = |p: &[u8]| hasher.hash_one(p);
    let path_of = |j: &u32| m.entries.path(*j as usize);
    let mut paths: HashTable<u32> = HashTable::with_capacity(m.entries.len());
    let n_chunks = m.chunks.len();
    for (i, e) in m.entries.iter().enumerate() {
        if i == 0 {
            if !e.path.is_empty() || e.kind() != EntryKind::Directory {
                return Err(bad("the first entry is not the root directory".into()));
            }
        } else {
            if e.path.is_empty() || !path_is_safe(e.path) {
                return Err(bad(format!("unsafe path {:?}", show(e.path))));
            }
            if e.path.split(|b| *b == b'/').any(|c| c.len() > NAME_MAX) {
                return Err(bad(format!(
                    "{:?}: a name longer than {NAME_MAX} bytes",
                    show(e.path)
                )));
            }
            let parent = match e.path.iter().rposition(|b| *b == b'/') {
                Some(p) => &e.path[..p],
                None => &[][..],
            };
            let parent = paths.find(hash(parent), |j| path_of(j) == parent);
            if !parent.is_some_and(|&j| m.entries[j as usize].kind() == EntryKind::Directory) {
                return Err(bad(format!(
                    "{:?} comes before its parent directory",
                    show(e.path)
                )));
            }
        }
        match paths.entry(
            hash(e.path),
            |j| *path_of(j) == *e.path,
            |j| hash(path_of(j)),
        ) {
            Slot::Occupied(_) => {
                return Err(bad(format!("path {:?} listed twice", show(e.path))));
            }
            Slot::Vacant(slot) => {
                slot.insert(i as u32);
            }
        }
        let t = &e.meta();
        if [t.atime, t.mtime, t.ctime]
            .iter()
            .any(|t| t.nsec > NSEC_MAX)
        {
            return Err(bad(format!(
                "{:?}: a time with 10^9 or more nanoseconds",
                show(e.path)
            )));
        }
        match &e.kind() {
            // symlink(2) makes none of these (ENOENT, ENAMETOOLONG at PATH_MAX with its NUL).
            EntryKind::Symlink { target }
                if target.is_empty() || target.len() >= 4096 || target.contains(&0) =>
            {
                return Err(bad(format!(
                    "{:?}: symlink target empty, of 4096 bytes or more, or holding NUL",
                    show(e.path)
                )));
            }
            EntryKind::File { size, runs } => {
                // Linux files end below 2^63 (off_t); a bigger size is an absurd claim.
                if *size > i64::MAX as u64 {
                    return Err(bad(format!("{:?}: impossible size {size}", show(e.path))));
                }
                let mut end = 0u64;
                for r in runs {
                    if r.offset < end {
                        return Err(bad(format!("{:?}: overlapping data", show(e.path))));
                    }
                    let mut len = 0u64;
                    for &c in &r.chunks {
                        let rec = m.chunks.get(c as usize).ok_or_else(|| {
                            bad(format!(
                                "{:?}: chunk {c} of {n_chunks} does not exist",
                                show(e.path)
                            ))
                        })?;
                        len += rec.len as u64;
                    }
                    end = r.offset.checked_add(len).ok_or_else(|| {
                        bad(format!("{:?}: data runs past 2^64 bytes", show(e.path)))
                    })?;
                    if end > *size {
                        return Err(bad(format!("{:?}: data beyond its size", show(e.path))));
                    }
                }
            }
            EntryKind::HardLink { target } => {
                let t = *target as usize;
                if t >= i || !matches!(m.entries[t].kind(), EntryKind::File { .. }) {
                    return Err(bad(format!(
                        "{:?}: hard link to entry {t}, which is not an earlier file",
                        show(e.path)
                    )));
                }
            }
            _ => {}
        }
        if e.meta().fs as usize >= m.filesystems.len().max(1) {
            return Err(bad(format!("{:?}: unknown filesystem", show(e.path))));
        }
    }
    for x in &m.extensions {
        if x.required && !KNOWN_EXTENSIONS.contains(&(x.name.as_str(), x.version)) {
            return Err(PayloadError::format(format!(
                "the image needs feature {:?} version {} which this osimage does not know \
                 (made by a newer osimage?)",
                x.name, x.version
            )));
        }
    }
    Ok(())
}

/// Required extensions this build understands (FORMAT.md §5.6).
const KNOWN_EXTENSIONS: &[(&str, u16)] = &[(super::store_ref::NAME, super::store_ref::VERSION)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::{Entry, Meta};

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().into(),
            kind,
            meta: Meta::default(),
            xattrs: Default::default(),
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for p in ["/etc", "..", "a/../b", "a//b", "./a", "a/", "a\0b"] {
            assert!(!path_is_safe(p.as_bytes()), "{p}");
        }
        assert!(path_is_safe(b"a/b.c/..d"));
    }

    #[test]
    fn entries_need_their_parents_and_valid_links() {
        let mut m = Manifest::default();
        m.entries.push(entry("", EntryKind::Directory));
        m.entries.push(entry("a/b", EntryKind::Fifo));
        assert!(validate(&m).unwrap_err().to_string().contains("parent"));
        m.entries
            .set(1, entry("a", EntryKind::HardLink { target: 0 }));
        assert!(validate(&m).unwrap_err().to_string().contains("hard link"));
        m.entries.set(1, entry("../x", EntryKind::Fifo));
        assert!(validate(&m).unwrap_err().to_string().contains("unsafe"));
        m.entries.set(1, entry("x", EntryKind::Fifo));
        validate(&m).unwrap();
    }

    fn refusal(entries: Vec<Entry>) -> String {
        let mut m = Manifest::default();
        m.entries.push(entry("", EntryKind::Directory));
        m.entries.extend(entries);
        validate(&m).map_or_else(|e| e.to_string(), |()| "accepted".into())
    }

    /// Issue #20 item 6: one entry per path, whatever the kinds (a directory and a symlink of
    /// the same name would let a later entry land where the symlink points).
    #[test]
    fn every_path_is_listed_once() {
        let dir = || entry("a", EntryKind::Directory);
        let link = || {
            entry(
                "a",
                EntryKind::Symlink {
                    target: b"/outside".to_vec(),
                },
            )
        };
        let file = || {
            entry(
                "a",
                EntryKind::File {
                    size: 0,
                    runs: Default::default(),
                },
            )
        };
        for (case, entries) in [
            (
                "dir then symlink, then a file below",
                vec![dir(), link(), entry("a/x", EntryKind::Fifo)],
            ),
            ("file then dir", vec![file(), dir()]),
            ("dir then symlink", vec![dir(), link()]),
            ("dir twice", vec![dir(), dir()]),
        ] {
            assert!(
                refusal(entries).contains("path \"a\" listed twice"),
                "{case}"
            );
        }
        assert_eq!(
            refusal(vec![dir(), entry("a/a", EntryKind::Fifo)]),
            "accepted"
        );
    }

    /// Issue #20 item 7: what the kernel would refuse half-way through an extract is refused
    /// when the image is opened.
    #[test]
    fn names_times_and_targets_the_kernel_refuses_are_refused_at_open() {
        let long = "x".repeat(256);
        assert!(refusal(vec![entry(&long, EntryKind::Fifo)]).contains("longer than 255 bytes"));
        assert_eq!(
            refusal(vec![entry(&long[1..], EntryKind::Fifo)]),
            "accepted"
        );
        let mut e = entry("t", EntryKind::Fifo);
        e.meta.mtime.nsec = 1_000_000_000;
        assert!(refusal(vec![e]).contains("10^9 or more nanoseconds"));
        let mut e = entry("t", EntryKind::Fifo);
        e.meta.atime.nsec = 999_999_999;
        assert_eq!(refusal(vec![e]), "accepted");
        for target in [vec![], vec![b'x'; 4096], b"a\0b".to_vec()] {
            let e = entry("l", EntryKind::Symlink { target });
            assert!(refusal(vec![e]).contains("symlink target empty"));
        }
        let e = entry(
            "l",
            EntryKind::Symlink {
                target: vec![b'x'; 4095],
            },
        );
        assert_eq!(refusal(vec![e]), "accepted");
    }

    #[test]
    fn blocks_must_tile_their_pack() {
        use crate::format::manifest::{BlockRecord, Codec, PackRecord};
        let block = |offset: u64, stored_len: u32| BlockRecord {
            pack: 0,
            offset,
            stored_len,
            raw_len: stored_len,
            codec: Codec::Raw,
            hash: [0; 32],
        };
        let mut m = Manifest::default();
        m.entries.push(entry("", EntryKind::Directory));
        m.packs.push(PackRecord {
            len: 64 + 16 + 100 + 16 + 50,
            hash: [0; 32],
        });
        // Listed out of order: fine, as long as they tile.
        m.blocks = vec![block(64 + 116, 50), block(64, 100)];
        validate(&m).unwrap();
        m.blocks[0].offset += 1;
        m.packs[0].len += 1;
        assert!(
            validate(&m)
                .unwrap_err()
                .to_string()
                .contains("a gap at 180")
        );
        m.blocks[0].offset -= 2;
        assert!(
            validate(&m)
                .unwrap_err()
                .to_string()
                .contains("overlapping")
        );
        m.blocks[0].offset += 1;
        assert!(
            validate(&m)
                .unwrap_err()
                .to_string()
                .contains("is 247 bytes but its blocks end at 246")
        );
    }

    /// FORMAT.md §5.2: ids are unique within a manifest; among many, the second of two is named.
    #[test]
    fn a_chunk_id_listed_twice_is_refused() {
        use crate::format::manifest::{BlockRecord, ChunkId, ChunkRecord, Codec, PackRecord};
        let mut m = Manifest::default();
        m.entries.push(entry("", EntryKind::Directory));
        m.packs.push(PackRecord {
            len: 64 + 16 + 4000,
            hash: [0; 32],
        });
        m.blocks.push(BlockRecord {
            pack: 0,
            offset: 64,
            stored_len: 4000,
            raw_len: 4000,
            codec: Codec::Raw,
            hash: [0; 32],
        });
        m.chunks = (0..1000u32)
            .map(|n| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&n.to_le_bytes());
                ChunkRecord {
                    id: ChunkId(id),
                    block: 0,
                    offset: n * 4,
                    len: 4,
                }
            })
            .collect();
        validate(&m).unwrap();
        m.chunks[700].id = m.chunks[300].id;
        let e = validate(&m).unwrap_err().to_string();
        assert!(e.contains("chunk 700 is listed twice"), "{e}");
    }

    /// FORMAT.md §5.6, §14: `store` version 1 is a required extension this build knows (and
    /// checks); another version of it, or an unknown required one, is refused.
    #[test]
    fn the_store_extension_is_known_and_checked() {
        use crate::format::manifest::Extension;
        use crate::format::store_ref::StoreRef;
        let mut m = Manifest::default();
        m.entries.push(entry("", EntryKind::Directory));
        let good = StoreRef {
            store_id: [1; 16],
            series: "s".into(),
            version: "v".into(),
        }
        .to_extension()
        .unwrap();
        m.extensions = vec![good.clone()];
        validate(&m).unwrap();
        m.extensions[0].data.push(0);
        let e = validate(&m).unwrap_err().to_string();
        assert!(e.contains("the store record has trailing bytes"), "{e}");
        m.extensions[0] = Extension {
            version: 2,
            ..good.clone()
        };
        let e = validate(&m).unwrap_err().to_string();
        assert!(e.contains("feature \"store\" version 2"), "{e}");
        m.extensions[0] = Extension {
            name: "stores".into(),
            ..good
        };
        let e = validate(&m).unwrap_err().to_string();
        assert!(e.contains("feature \"stores\" version 1"), "{e}");
    }
}
