//! The independent comparator: two trees, walked without following symlinks, compared per
//! relative path on everything DESIGN.md's fidelity contract names.
//!
//! Uses only std, libc, the `xattr` crate and `blake3` (as a plain hash of file bytes): never
//! osimage's own code, so a bug shared by capture and extract cannot hide here.

use super::sys::{Dir, bstr, shorten};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// Everything compared about one path.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// `ls -l` style type letter: `d - l c b p s`.
    pub kind: char,
    /// Permission bits incl. setuid, setgid, sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    /// BLAKE3 of a regular file's bytes.
    pub content: Option<[u8; 32]>,
    pub target: Option<Vec<u8>>,
    /// Device number of a character or block device.
    pub rdev: Option<u64>,
    /// Every xattr, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// (st_dev, st_ino): hard-link grouping only, never compared across trees.
    pub inode: (u64, u64),
    pub nlink: u64,
    /// Bytes allocated on disk (`st_blocks * 512`).
    pub allocated: u64,
}

/// A tree: relative path (raw bytes, `/`-joined, root = empty) → node.
pub type Snapshot = BTreeMap<Vec<u8>, Node>;

/// One way two trees differ.
#[derive(Clone, Debug)]
pub struct Difference {
    pub path: Vec<u8>,
    /// "missing", "extra", "type", "mode", "uid", "gid", "mtime", "size", "content",
    /// "symlink target", "rdev", "xattr", "hard links", "nlink", "sparseness".
    pub what: &'static str,
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = if self.path.is_empty() {
            ".".to_string()
        } else {
            bstr(&self.path)
        };
        write!(f, "{}: {}: {}", shorten(&p), self.what, self.detail)
    }
}

fn type_char(mode: u32) -> char {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFREG => '-',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '?',
    }
}

fn hash_file(dir: &Dir, name: &[u8]) -> io::Result<[u8; 32]> {
    let mut f = dir.open_file(name)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

fn node(dir: &Dir, name: Option<&[u8]>) -> io::Result<Node> {
    let st = dir.lstat(name)?;
    let kind = type_char(st.st_mode);
    let content = match (kind, name) {
        ('-', Some(n)) => Some(hash_file(dir, n)?),
        _ => None,
    };
    let target = match (kind, name) {
        ('l', Some(n)) => Some(dir.readlink(n)?),
        _ => None,
    };
    Ok(Node {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        size: st.st_size as u64,
        content,
        target,
        rdev: matches!(kind, 'c' | 'b').then_some(st.st_rdev),
        xattrs: dir.xattrs(name)?,
        inode: (st.st_dev, st.st_ino),
        nlink: st.st_nlink,
        allocated: st.st_blocks as u64 * 512,
    })
}

/// Walks `root` (never following symlinks, through fds so paths past PATH_MAX work).
pub fn snapshot(root: &Path) -> io::Result<Snapshot> {
    fn walk(dir: &Dir, rel: &mut Vec<u8>, out: &mut Snapshot) -> io::Result<()> {
        for name in dir.names()? {
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            let n = node(dir, Some(&name))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", bstr(rel))))?;
            let is_dir = n.kind == 'd';
            out.insert(rel.clone(), n);
            if is_dir {
                walk(&dir.sub(&name)?, rel, out)?;
            }
            rel.truncate(len);
        }
        Ok(())
    }
    let d = Dir::open(root)?;
    let mut out = Snapshot::new();
    out.insert(Vec::new(), node(&d, None)?);
    walk(&d, &mut Vec::new(), &mut out)?;
    Ok(out)
}

/// Keeps only `prefixes` themselves and what lies below them.
pub fn restrict(snap: &Snapshot, prefixes: &[&[u8]]) -> Snapshot {
    snap.iter()
        .filter(|(p, _)| prefixes.iter().any(|pre| is_under(p, pre)))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect()
}

/// Whether `path` is `prefix` or lies below it.
pub fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
}

/// How strictly to compare.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Compare link counts (off when only part of a tree was extracted).
    pub nlink: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { nlink: true }
    }
}

/// A sparse source file may come back with at most this many more allocated bytes.
pub const SPARSE_SLACK: u64 = 1 << 20;

/// Every difference between `src` and `dst`, in path order.
pub fn compare(src: &Snapshot, dst: &Snapshot, opts: Options) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut d = |path: &[u8], what, detail: String| {
        out.push(Difference {
            path: path.to_vec(),
            what,
            detail,
        })
    };
    let src_links = link_sets(src);
    let dst_links = link_sets(dst);
    for (path, a) in src {
        let Some(b) = dst.get(path) else {
            d(path, "missing", format!("{} only in source", a.kind));
            continue;
        };
        if a.kind != b.kind {
            d(path, "type", format!("{} != {}", a.kind, b.kind));
            continue;
        }
        if a.mode != b.mode {
            d(path, "mode", format!("{:04o} != {:04o}", a.mode, b.mode));
        }
        if a.uid != b.uid {
            d(path, "uid", format!("{} != {}", a.uid, b.uid));
        }
        if a.gid != b.gid {
            d(path, "gid", format!("{} != {}", a.gid, b.gid));
        }
        if a.mtime != b.mtime {
            let (x, y) = (a.mtime, b.mtime);
            d(
                path,
                "mtime",
                format!("{}.{:09} != {}.{:09}", x.0, x.1, y.0, y.1),
            );
        }
        if a.kind == '-' && a.size != b.size {
            d(path, "size", format!("{} != {}", a.size, b.size));
        }
        if a.content != b.content {
            d(path, "content", "bytes differ".to_string());
        }
        if a.target != b.target {
            let t = |t: &Option<Vec<u8>>| t.as_deref().map(bstr).unwrap_or_default();
            d(
                path,
                "symlink target",
                format!("{:?} != {:?}", t(&a.target), t(&b.target)),
            );
        }
        if a.rdev != b.rdev {
            d(path, "rdev", format!("{:?} != {:?}", a.rdev, b.rdev));
        }
        for detail in xattr_differences(&a.xattrs, &b.xattrs) {
            d(path, "xattr", detail);
        }
        if a.kind != 'd' && src_links.get(path) != dst_links.get(path) {
            let names = |s: Option<&BTreeSet<Vec<u8>>>| {
                s.map(|s| s.iter().map(|p| bstr(p)).collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            let detail = format!(
                "same inode as {:?} != {:?}",
                names(src_links.get(path)),
                names(dst_links.get(path))
            );
            d(path, "hard links", detail);
        }
        if opts.nlink && a.kind != 'd' && a.nlink != b.nlink {
            d(path, "nlink", format!("{} != {}", a.nlink, b.nlink));
        }
        let sparse = a.kind == '-' && a.allocated < a.size;
        if sparse && b.allocated > a.allocated + SPARSE_SLACK {
            let detail = format!(
                "source allocates {} of {} bytes, copy allocates {}",
                a.allocated, a.size, b.allocated
            );
            d(path, "sparseness", detail);
        }
    }
    for (path, b) in dst {
        if !src.contains_key(path) {
            d(path, "extra", format!("{} only in copy", b.kind));
        }
    }
    out
}

/// For every non-directory sharing its inode with another path: the other paths.
fn link_sets(snap: &Snapshot) -> BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> {
    let mut by_inode: BTreeMap<(u64, u64), BTreeSet<Vec<u8>>> = BTreeMap::new();
    for (p, n) in snap {
        if n.kind != 'd' {
            by_inode.entry(n.inode).or_default().insert(p.clone());
        }
    }
    let mut out = BTreeMap::new();
    for group in by_inode.values().filter(|g| g.len() > 1) {
        for p in group {
            let mut others = group.clone();
            others.remove(p);
            out.insert(p.clone(), others);
        }
    }
    out
}

fn xattr_differences(a: &[(Vec<u8>, Vec<u8>)], b: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    let a: BTreeMap<_, _> = a.iter().cloned().collect();
    let b: BTreeMap<_, _> = b.iter().cloned().collect();
    let hex = |v: &[u8]| {
        let s: String = v.iter().take(48).map(|x| format!("{x:02x}")).collect();
        if v.len() > 48 {
            format!("{s}... ({} bytes)", v.len())
        } else {
            s
        }
    };
    let mut out = Vec::new();
    for (k, va) in &a {
        match b.get(k) {
            None => out.push(format!("{} missing (0x{})", bstr(k), hex(va))),
            Some(vb) if vb != va => {
                out.push(format!("{}: 0x{} != 0x{}", bstr(k), hex(va), hex(vb)))
            }
            Some(_) => {}
        }
    }
    for (k, vb) in &b {
        if !a.contains_key(k) {
            out.push(format!("{} extra (0x{})", bstr(k), hex(vb)));
        }
    }
    out
}

/// Snapshots both trees and compares them.
pub fn diff_trees(src: &Path, dst: &Path, opts: Options) -> Vec<Difference> {
    let a = snapshot(src).unwrap_or_else(|e| panic!("walking {}: {e}", src.display()));
    let b = snapshot(dst).unwrap_or_else(|e| panic!("walking {}: {e}", dst.display()));
    compare(&a, &b, opts)
}

/// Panics with every difference listed, one a line.
pub fn assert_no_differences(diffs: &[Difference], context: &str) {
    if !diffs.is_empty() {
        let list: Vec<String> = diffs.iter().map(|d| format!("  {d}")).collect();
        panic!(
            "{context}: {} difference(s):\n{}",
            diffs.len(),
            list.join("\n")
        );
    }
}
