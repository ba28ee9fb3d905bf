//! Stage 1 of capture: walk a root and describe every entry (docs/DESIGN.md "The module map").
//!
//! `scan()` turns a capture root plus exclude rules into the manifest's `Entries` (every path
//! in one arena, kind, metadata and xattrs in rows beside it: the table the manifest is
//! written from, issue #23); where to read an entry's content is the root joined with its path.
//! Regular files come out as `EntryKind::File { size, runs: vec![] }`; the payload stage fills
//! `runs` while it reads them through `content::SourceFile`.

pub mod accounts;
pub mod content;
mod error;
pub mod exclude;
pub mod filesystems;
mod images;
mod inode;
pub mod mountinfo;
mod swap;
mod walk;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType};

use crate::format::manifest::{CapturedFs, Entries, Meta, Xattr};
use crate::format::mount_dirs::MountDir;

pub use error::ScanError;
use exclude::Excludes;
use filesystems::{FsPlan, PlanInput, is_under, relative};

/// Where the kernel publishes this process's mount table (proc(5)).
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// What to capture and what to leave out.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Stay on the root's own filesystem (default: every local block-backed filesystem
    /// mounted at or under the root).
    pub one_file_system: bool,
    /// rsync-like glob patterns (docs/EXCLUDES.md).
    pub excludes: Vec<String>,
    /// Files holding one pattern a line (`#` comments, blank lines ignored).
    pub exclude_from: Vec<PathBuf>,
    /// Paths never captured (the output file, its temporary names, a refresh's base image).
    /// Besides these, every osimage image found under the root is left out (`images`).
    pub skip_paths: Vec<PathBuf>,
    /// Report unreadable paths and go on instead of failing.
    pub keep_going: bool,
}

/// A path the scan could not read (only with `keep_going`).
#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything the walk found.
#[derive(Clone, Debug, Default)]
pub struct ScanResult {
    /// Where the entries are read from on this machine: the root walked (a `--snapshot`'s
    /// mount, not the ROOT given, when there is one).
    pub root: PathBuf,
    /// Parents before children; the root itself first, with the empty path. Where to read
    /// an entry from on this machine is `root` joined with its path (`source_path`): not
    /// stored, it would be an entry's largest part.
    pub entries: Entries,
    /// The bytes the regular files' data ranges will give: each file's size, or its bytes
    /// allocated on disk (`st_blocks` × 512) when fewer, a sparse file's holes left out (the
    /// capture's progress total, issue #24). Summed by the walk rather than kept with each
    /// entry (8 bytes an entry; issue #23, memory an entry).
    pub to_read: u64,
    pub filesystems: Vec<CapturedFs>,
    pub users: Vec<(u32, String)>,
    pub groups: Vec<(u32, String)>,
    pub skipped: Vec<Skipped>,
    /// Paths left out on purpose (`skip_paths`, osimage images, swap files) or that vanished
    /// during the walk: not errors; a capture reports them. Pattern excludes are not listed.
    pub omitted: Vec<Skipped>,
    /// The directories underneath the mount points of captured filesystems (FORMAT.md §13),
    /// in walk order.
    pub mount_dirs: Vec<MountDir>,
    /// Mount points whose own directory could not be read (no mount privilege): recorded with
    /// the metadata of what is mounted on them instead (a captured filesystem's mount point:
    /// no `mount_dirs` record), and why.
    pub mount_dirs_unread: Vec<Skipped>,
}

/// What a previous image vouches for (a refresh's base, docs/REFRESH.md "Metadata from the
/// base"): the xattrs of a regular file it holds unchanged, so the walk need not read them.
pub trait KnownFiles: Sync {
    /// The xattrs of the regular file at `path` (relative to the root) of `size` bytes whose
    /// `lstat` gave `meta`, when the image holds that very file unchanged.
    fn known_xattrs(&self, path: &[u8], meta: &Meta, size: u64) -> Option<Vec<Xattr>>;
}

/// The path on this machine of the entry `rel` (relative, `/`-separated) of a scan of `root`.
pub fn source_path(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// Walks `root` and describes every entry to capture (docs/EXCLUDES.md says what is left out).
pub fn scan(root: &Path, opts: &ScanOptions) -> Result<ScanResult, ScanError> {
    scan_with(root, opts, &[], None)
}

/// `scan`, taking what `known` vouches for instead of reading it, and leaving out whole the
/// filesystems mounted at `left_out` (absolute mount points: not walked, their mount point
/// recorded as a directory; issue #24: the one the output goes to, when the system's fstab
/// does not mount it). `known` must have been told the filesystems `plan_leaving` gives for
/// the same root, options and `left_out`.
pub fn scan_with(
    root: &Path,
    opts: &ScanOptions,
    left_out: &[PathBuf],
    known: Option<&dyn KnownFiles>,
) -> Result<ScanResult, ScanError> {
    let prepared = Prepared::new(root, opts, left_out)?;
    let prepared_root = prepared.root.clone();
    let setup = walk::WalkSetup {
        known,
        skip: skip_set(&prepared.root, &opts.skip_paths),
        swaps: swap::active_swap_files(),
        root: prepared.root,
        plan: &prepared.plan,
        excludes: &prepared.excludes,
    };
    let etc = Path::new(OsStr::from_bytes(&setup.root)).join("etc");
    let mut result = walk::Walker::new(setup, opts).run()?;
    result.root = PathBuf::from(OsStr::from_bytes(&prepared_root));
    // The entries stay until the manifest is written: no spare capacity (issue #23).
    result.entries.shrink_to_fit();
    result.filesystems = prepared.plan.filesystems;
    result.users = accounts::read_id_names(&etc.join("passwd"));
    result.groups = accounts::read_id_names(&etc.join("group"));
    Ok(result)
}

/// The filesystems a `scan` with these options would capture, to show before it starts:
/// index 0 is the root's own (mount point ""), then each one mounted under it.
pub fn plan_filesystems(root: &Path, opts: &ScanOptions) -> Result<Vec<CapturedFs>, ScanError> {
    plan_leaving(root, opts, &[])
}

/// `plan_filesystems` without the filesystems mounted at `left_out` (as `scan_with`).
pub fn plan_leaving(
    root: &Path,
    opts: &ScanOptions,
    left_out: &[PathBuf],
) -> Result<Vec<CapturedFs>, ScanError> {
    Ok(Prepared::new(root, opts, left_out)?.plan.filesystems)
}

/// What `scan` and `plan_filesystems` decide before walking.
struct Prepared {
    /// The canonical absolute root, as bytes.
    root: Vec<u8>,
    excludes: Excludes,
    plan: FsPlan,
}

impl Prepared {
    fn new(root: &Path, opts: &ScanOptions, left_out: &[PathBuf]) -> Result<Self, ScanError> {
        let io = |op, source| ScanError::Io {
            op,
            path: root.to_path_buf(),
            source,
        };
        let abs = root
            .canonicalize()
            .map_err(|e| io("resolve the capture root", e))?;
        let abs = abs.as_os_str().as_bytes().to_vec();
        let st = rustix::fs::statat(CWD, &abs[..], AtFlags::empty())
            .map_err(|e| io("stat the capture root", e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(ScanError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        let excludes = Excludes::new(&opts.excludes, &opts.exclude_from)?;
        let mounts = mountinfo::read(Path::new(MOUNTINFO))?;
        let left_out: Vec<Vec<u8>> = left_out
            .iter()
            .filter_map(|p| Some(p.canonicalize().ok()?.into_os_string().into_vec()))
            .collect();
        let input = PlanInput {
            root: &abs,
            root_dev: st.st_dev,
            one_file_system: opts.one_file_system,
            excludes: &excludes,
            left_out: &left_out,
        };
        let dev_of = |p: &[u8]| {
            let st = rustix::fs::statat(CWD, p, AtFlags::empty()).ok()?;
            Some(st.st_dev)
        };
        let plan = filesystems::plan(&input, &mounts, dev_of);
        Ok(Prepared {
            root: abs,
            excludes,
            plan,
        })
    }
}

/// `skip_paths` relative to the root: each made absolute through its (canonical) parent
/// directory, since the file itself may not exist yet. Paths outside the root are dropped.
fn skip_set(root: &[u8], paths: &[PathBuf]) -> HashSet<Vec<u8>> {
    let cwd = std::env::current_dir().unwrap_or_default();
    paths
        .iter()
        .filter_map(|p| {
            let p = cwd.join(p);
            let real = match (p.parent(), p.file_name()) {
                (Some(dir), Some(name)) => dir.canonicalize().ok()?.join(name),
                _ => p,
            };
            let real = real.as_os_str().as_bytes();
            (real != root && is_under(real, root)).then(|| relative(real, root))
        })
        .collect()
}
