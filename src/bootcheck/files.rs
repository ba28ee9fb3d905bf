//! The restored files against the image's manifest: every entry's type, content (each chunk's
//! bytes on disk hashed with BLAKE3 and compared with its chunk id, FORMAT.md §1; bytes
//! outside the recorded runs must be zeros), symlink target, device number, hard links, and
//! the metadata a restore sets (mode, owner, mtime, xattrs; compared as `osimage diff` does).
//! Paths on disk that the image does not hold are differences too. The fidelity contract's
//! exceptions (DESIGN.md "Fidelity": /var/log, /var/tmp, /tmp, /boot/grub/grubenv) are not
//! counted. On FAT (the ESP; read with mtools where the host kernel has no vfat) only type,
//! content and files' mtimes (FAT keeps 2 s) are compared: FAT has no owners, modes or xattrs,
//! and what a mount shows of them comes from mount options.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use serde::Serialize;

use crate::format::manifest::{
    ChunkId, EntryKind, EntryRef, EntryRow, Manifest, Meta, Timestamp, Xattr,
};
use crate::refresh::diff::meta_fields;
use crate::scan::exclude::CONTENTS_SKIPPED;

/// Paths that may differ after a restore (DESIGN.md "Fidelity"), themselves and all below.
pub const MAY_DIFFER: &[&[u8]] = &[b"var/log", b"var/tmp", b"tmp", b"boot/grub/grubenv"];
/// At most this many differences are listed (all are counted).
const LISTED: usize = 50;

/// One path that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `/`-rooted, lossily UTF-8.
    pub path: String,
    /// `missing`, `extra`, `type`, `content`, `size`, `link target`, `device`, `hard link`,
    /// `mode`, `owner`, `mtime`, `xattrs`, `unreadable`.
    pub what: Vec<String>,
}

/// The comparison's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FilesReport {
    /// Manifest entries checked on disk.
    pub compared: u64,
    /// File bytes hashed.
    pub bytes: u64,
    /// Paths that differ (missing, extra or changed).
    pub differences: u64,
    /// The first differences.
    pub listed: Vec<Difference>,
    /// Entries on FAT filesystems, compared by type, content and files' mtimes only.
    pub relaxed: u64,
}

/// How the files of one captured filesystem can be seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fidelity {
    /// Mounted: everything is compared.
    Full,
    /// FAT: type, content, files' mtimes to 2 s.
    Fat,
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

fn may_differ(path: &[u8]) -> bool {
    MAY_DIFFER.iter().any(|d| under(path, d))
}

fn shown(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

fn on_disk(root: &Path, path: &[u8]) -> std::path::PathBuf {
    if path.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(path))
    }
}

/// Compares the tree at `root` (the restored filesystems assembled at their mount points)
/// with `m`. `fidelity(i)` says how entry `i`'s filesystem was read.
pub fn compare(m: &Manifest, root: &Path, fidelity: &dyn Fn(EntryRef) -> Fidelity) -> FilesReport {
    let mut r = FilesReport::default();
    let push = |r: &mut FilesReport, path: &[u8], what: Vec<String>| {
        r.differences += 1;
        if r.listed.len() < LISTED {
            r.listed.push(Difference {
                path: shown(path),
                what,
            });
        }
    };
    let mut inodes: HashMap<usize, (u64, u64)> = HashMap::new();
    for (i, e) in m.entries.iter().enumerate() {
        if may_differ(e.path) {
            continue;
        }
        r.compared += 1;
        let fid = fidelity(e);
        if fid == Fidelity::Fat {
            r.relaxed += 1;
        }
        let p = on_disk(root, e.path);
        let md = match std::fs::symlink_metadata(&p) {
            Ok(md) => md,
            Err(_) => {
                push(&mut r, e.path, vec!["missing".into()]);
                continue;
            }
        };
        inodes.insert(i, (md.dev(), md.ino()));
        let mut what = Vec::new();
        check_kind(m, e, &p, &md, &inodes, fid, &mut what, &mut r.bytes);
        if what.iter().all(|w| w != "type") {
            check_meta(e, &p, &md, fid, &mut what);
        }
        if !what.is_empty() {
            push(&mut r, e.path, what);
        }
    }
    let known: HashSet<&[u8]> = m.entries.iter().map(|e| e.path).collect();
    let mut extras = Vec::new();
    find_extras(root, Vec::new(), &known, &mut extras);
    for x in extras {
        push(&mut r, &x, vec!["extra".into()]);
    }
    r
}

/// Paths below `root` that the manifest does not hold (not descending into what the image
/// never captures the contents of, nor into what may differ).
fn find_extras(root: &Path, rel: Vec<u8>, known: &HashSet<&[u8]>, out: &mut Vec<Vec<u8>>) {
    if CONTENTS_SKIPPED.contains(&rel.as_slice()) || may_differ(&rel) {
        return;
    }
    let Ok(dir) = std::fs::read_dir(on_disk(root, &rel)) else {
        return;
    };
    let mut names: Vec<_> = dir.flatten().collect();
    names.sort_by_key(|d| d.file_name());
    for d in names {
        let mut p = rel.clone();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(d.file_name().as_bytes());
        if may_differ(&p) {
            continue;
        }
        if !known.contains(p.as_slice()) {
            out.push(p);
        } else if d.file_type().is_ok_and(|t| t.is_dir()) {
            find_extras(root, p, known, out);
        }
    }
}

fn type_char(md: &std::fs::Metadata) -> char {
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    match () {
        _ if t.is_dir() => 'd',
        _ if t.is_file() => '-',
        _ if t.is_symlink() => 'l',
        _ if t.is_char_device() => 'c',
        _ if t.is_block_device() => 'b',
        _ if t.is_fifo() => 'p',
        _ => 's',
    }
}

#[allow(clippy::too_many_arguments)]
fn check_kind(
    m: &Manifest,
    e: EntryRef,
    p: &Path,
    md: &std::fs::Metadata,
    inodes: &HashMap<usize, (u64, u64)>,
    fid: Fidelity,
    what: &mut Vec<String>,
    bytes: &mut u64,
) {
    let want = match &e.kind() {
        EntryKind::HardLink { target } => match m.entries.get(*target as usize) {
            Some(t) => t.kind().type_char(),
            None => '?',
        },
        k => k.type_char(),
    };
    if type_char(md) != want {
        what.push("type".into());
        return;
    }
    match &e.kind() {
        EntryKind::File { size, runs } => {
            if md.len() != *size {
                what.push("size".into());
            } else if let Err(w) = check_content(m, p, *size, runs, bytes) {
                what.push(w);
            }
        }
        EntryKind::Symlink { target } => {
            let t = std::fs::read_link(p).ok();
            if t.as_deref().map(|t| t.as_os_str().as_bytes()) != Some(target.as_slice()) {
                what.push("link target".into());
            }
        }
        EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } if md.rdev() != *rdev => {
            what.push("device".into());
        }
        // a hard link is the same inode as its target (mtools copies have no links)
        EntryKind::HardLink { target }
            if fid == Fidelity::Full
                && inodes.get(&(*target as usize)) != Some(&(md.dev(), md.ino())) =>
        {
            what.push("hard link".into());
        }
        _ => {}
    }
}

/// Each recorded chunk's bytes hash to its id; the bytes between runs (holes) are zeros.
fn check_content(
    m: &Manifest,
    p: &Path,
    size: u64,
    runs: &[crate::format::manifest::DataRun],
    bytes: &mut u64,
) -> Result<(), String> {
    let f = File::open(p).map_err(|_| "unreadable".to_string())?;
    let mut buf = Vec::new();
    let mut at = 0u64;
    for run in runs {
        zeros(&f, at, run.offset, bytes)?;
        at = run.offset;
        for &c in &run.chunks {
            let rec = m.chunks.get(c as usize).ok_or("content")?;
            buf.resize(rec.len as usize, 0);
            f.read_exact_at(&mut buf, at).map_err(|_| "content")?;
            if ChunkId::of(&buf) != rec.id {
                return Err("content".into());
            }
            *bytes += u64::from(rec.len);
            at += u64::from(rec.len);
        }
    }
    zeros(&f, at, size, bytes)
}

fn zeros(f: &File, from: u64, to: u64, bytes: &mut u64) -> Result<(), String> {
    if to < from {
        return Err("content".into());
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..n], at).map_err(|_| "content")?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Err("content".into());
        }
        at += n as u64;
        *bytes += n as u64;
    }
    Ok(())
}

fn sorted(x: &[Xattr]) -> Vec<Xattr> {
    let mut v = x.to_vec();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn xattrs_of(p: &Path) -> Vec<Xattr> {
    let mut v = Vec::new();
    if let Ok(names) = xattr::list(p) {
        for n in names {
            if let Ok(Some(value)) = xattr::get(p, &n) {
                v.push(Xattr {
                    name: n.as_bytes().to_vec(),
                    value,
                });
            }
        }
    }
    sorted(&v)
}

fn check_meta(
    e: EntryRef,
    p: &Path,
    md: &std::fs::Metadata,
    fid: Fidelity,
    what: &mut Vec<String>,
) {
    let mtime = Timestamp {
        sec: md.mtime(),
        nsec: md.mtime_nsec() as u32,
    };
    if fid == Fidelity::Fat {
        // FAT keeps no owner, mode or xattrs, and no times for its root directory; mtools
        // gives the directories it makes the time of the copy: files' times only, to 2 s.
        if md.is_file() && (mtime.sec - e.meta().mtime.sec).abs() > 2 {
            what.push("mtime".into());
        }
        return;
    }
    // a hard link's metadata is its target's (same inode), checked there
    if matches!(e.kind(), EntryKind::HardLink { .. }) {
        return;
    }
    let disk = EntryRow::new(
        EntryKind::Fifo,
        Meta {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime,
            ..Meta::default()
        },
        xattrs_of(p),
    );
    let image = EntryRow::new(EntryKind::Fifo, e.meta(), sorted(e.xattrs()));
    let mut fields = meta_fields(&image, &disk);
    // symlinks have no mode of their own on Linux (always 0777)
    if matches!(e.kind(), EntryKind::Symlink { .. }) {
        fields.retain(|f| *f != "mode");
    }
    what.extend(fields.into_iter().map(String::from));
}
