//! The walk itself: depth-first, each directory's names sorted by bytes, every call relative
//! to an open directory fd (`openat`/`fstatat`/`readlinkat`), so paths longer than PATH_MAX
//! and names that are not UTF-8 are no obstacle (STYLE.md #10: scan through descriptors).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RawDir, Stat};
use rustix::io::Errno;

use crate::format::manifest::{EntryIndex, EntryKind, EntryRow, Runs, Xattr};
use crate::format::mount_dirs::MountDir;

use super::exclude::{Excludes, contents_skipped};
use super::filesystems::FsPlan;
use super::images::image_kind;
use super::inode::{XattrReader, file_type, meta};
use super::swap::has_swap_signature;
use super::{ScanError, ScanOptions, ScanResult, Skipped};

/// Why a `skip_paths` entry is not in the image.
pub const SKIP_REASON: &str = "the capture's output, its temporary files or its base image";

/// Longest path the kernel takes in one call, terminating NUL included (limits.h).
const PATH_MAX: usize = 4096;

/// What the walk needs besides the options: decided once before it starts.
pub struct WalkSetup<'a> {
    /// Canonical absolute root.
    pub root: Vec<u8>,
    pub plan: &'a FsPlan,
    pub excludes: &'a Excludes,
    /// `skip_paths`, relative to the root.
    pub skip: HashSet<Vec<u8>>,
    /// `(dev, ino)` of swap files in use.
    pub swaps: HashSet<(u64, u64)>,
    /// A refresh's base: the xattrs of files it holds unchanged.
    pub known: Option<&'a dyn super::KnownFiles>,
}

/// A directory being read: its fd, its path and the names still to visit.
struct Frame {
    dir: OwnedFd,
    rel: Vec<u8>,
    names: Vec<Vec<u8>>,
    next: usize,
    dev: u64,
    fs: u32,
}

/// The outcome of trying to open a directory found by the walk.
enum Opened {
    Frame(Frame),
    Vanished,
    /// Recorded, but its contents were not read (`keep_going`).
    Unread,
}

pub struct Walker<'a> {
    setup: WalkSetup<'a>,
    opts: &'a ScanOptions,
    /// The first entry seen of each multiply-linked regular file.
    hardlinks: HashMap<(u64, u64), EntryIndex>,
    xattrs: XattrReader,
    dirbuf: Vec<MaybeUninit<u8>>,
    /// A detached bind mount of the directory (relative path) whose mount points are being
    /// read as their own directories; it goes with the walker.
    bind: Option<(Vec<u8>, OwnedFd)>,
    /// Why no bind mount can be made at all (no mount privilege): not tried again.
    bind_denied: Option<String>,
    out: ScanResult,
}

impl<'a> Walker<'a> {
    pub fn new(setup: WalkSetup<'a>, opts: &'a ScanOptions) -> Self {
        Walker {
            setup,
            opts,
            hardlinks: HashMap::new(),
            xattrs: XattrReader::default(),
            dirbuf: vec![MaybeUninit::uninit(); 64 * 1024],
            bind: None,
            bind_denied: None,
            out: ScanResult::default(),
        }
    }

    /// Walks the whole tree; `entries`, `skipped` and `omitted` of the result are filled.
    pub fn run(mut self) -> Result<ScanResult, ScanError> {
        let root = self.setup.root.clone();
        let flags = OFlags::DIRECTORY | OFlags::CLOEXEC;
        let io_err = |op, e: Errno| ScanError::Io {
            op,
            path: PathBuf::from(OsStr::from_bytes(&root)),
            source: e.into(),
        };
        let dir =
            open_dir_noatime(CWD, &root, flags).map_err(|e| io_err("open the capture root", e))?;
        let st = rustix::fs::fstat(&dir).map_err(|e| io_err("stat the capture root", e))?;
        let xattrs = self.xattrs.read(&root).map_err(|source| ScanError::Io {
            op: "read the extended attributes of the capture root",
            path: PathBuf::from(OsStr::from_bytes(&root)),
            source,
        })?;
        self.push(Vec::new(), EntryKind::Directory, &st, 0, xattrs);
        let mut stack = Vec::new();
        if let Some(frame) = self.frame(dir, Vec::new(), &st, 0)? {
            stack.push(frame);
        }
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.get_mut(top.next).map(std::mem::take) else {
                stack.pop();
                continue;
            };
            top.next += 1;
            if let Some(child) = self.visit(stack.last().expect("non-empty"), &name)? {
                stack.push(child);
            }
        }
        Ok(self.out)
    }

    /// Records the entry `name` of `parent`; returns its frame when it is a directory to
    /// descend into.
    fn visit(&mut self, parent: &Frame, name: &[u8]) -> Result<Option<Frame>, ScanError> {
        let rel = join(&parent.rel, name);
        if self.setup.skip.contains(&rel) {
            self.omit(&rel, SKIP_REASON);
            return Ok(None);
        }
        let st = match rustix::fs::statat(&parent.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => return self.gone_or_fail("stat", &rel, e).map(|_| None),
        };
        let ftype = file_type(&st);
        if self
            .setup
            .excludes
            .matches(&rel, ftype == FileType::Directory)
        {
            return Ok(None);
        }
        let key = (st.st_dev, st.st_ino);
        let kind = match ftype {
            FileType::Directory => EntryKind::Directory,
            FileType::RegularFile => {
                if self.setup.swaps.contains(&key) || has_swap_signature(&parent.dir, name, &st) {
                    self.omit(&rel, "swap file");
                    return Ok(None);
                }
                if let Some(image) = image_kind(&parent.dir, name, &st) {
                    self.omit(&rel, image.reason());
                    return Ok(None);
                }
                match self.hardlinks.get(&key) {
                    Some(&target) if st.st_nlink > 1 => EntryKind::HardLink { target },
                    _ => EntryKind::File {
                        size: st.st_size as u64,
                        runs: Runs::new(),
                    },
                }
            }
            FileType::Symlink => match rustix::fs::readlinkat(&parent.dir, name, Vec::new()) {
                Ok(target) => EntryKind::Symlink {
                    target: target.into_bytes(),
                },
                Err(e) => return self.gone_or_fail("read the link", &rel, e).map(|_| None),
            },
            FileType::CharacterDevice => EntryKind::CharDevice { rdev: st.st_rdev },
            FileType::BlockDevice => EntryKind::BlockDevice { rdev: st.st_rdev },
            FileType::Fifo => EntryKind::Fifo,
            FileType::Socket => EntryKind::Socket,
            FileType::Unknown => {
                let e = io::Error::other(format!("unknown file type (mode {:o})", st.st_mode));
                self.fail("recognise", &rel, e)?;
                return Ok(None);
            }
        };
        let known = match (&kind, self.setup.known) {
            (EntryKind::File { size, .. }, Some(k)) => {
                k.known_xattrs(&rel, &meta(&st, parent.fs), *size)
            }
            _ => None,
        };
        let xattrs = match known.map_or_else(|| self.read_xattrs(parent, name, &rel), Ok) {
            Ok(x) => x,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.omit(&rel, "vanished during the scan");
                return Ok(None);
            }
            Err(e) => {
                self.fail("read the extended attributes of", &rel, e)?;
                Vec::new()
            }
        };
        let (fs, descend) = match kind {
            EntryKind::Directory => self.crossing(parent, &rel, st.st_dev),
            _ => (parent.fs, false),
        };
        // A mount point whose filesystem is not captured is recorded as its own directory,
        // the one under the mount (issue #24 item 6), not as what is mounted on it.
        let (own, xattrs) = match kind {
            EntryKind::Directory if self.left_out_mount(parent, &rel, &st, descend) => {
                self.own_directory(parent, name, &rel, st, xattrs)
            }
            _ => (st, xattrs),
        };
        // The mount point of a captured filesystem: its entry is the mounted root; the
        // directory underneath goes to the mount-dirs record (FORMAT.md §13).
        if descend && self.setup.plan.mount_points.get(&rel) == Some(&Some(fs)) {
            self.record_underneath(parent, name, &rel);
        }
        let mut frame = None;
        if descend {
            match self.open_dir(parent, name, &rel, &st, fs)? {
                Opened::Frame(f) => frame = Some(f),
                Opened::Vanished => return Ok(None),
                Opened::Unread => {}
            }
        }
        let index = self.push(rel, kind, &own, fs, xattrs);
        let kind = &self.out.entries[index as usize].kind();
        if st.st_nlink > 1 && matches!(kind, EntryKind::File { .. }) {
            self.hardlinks.insert(key, index);
        }
        Ok(frame)
    }

    /// Which filesystem a directory belongs to, and whether the walk goes into it.
    fn crossing(&self, parent: &Frame, rel: &[u8], dev: u64) -> (u32, bool) {
        if contents_skipped(rel) {
            return (parent.fs, false);
        }
        if let Some(point) = self.setup.plan.mount_points.get(rel) {
            return point.map_or((parent.fs, false), |fs| (fs, true));
        }
        if dev == parent.dev {
            return (parent.fs, true);
        }
        // A btrfs subvolume has its own st_dev but is part of the same filesystem (and is not
        // in the mount table); anything else here is a mount that appeared after planning.
        let fstype = &self.setup.plan.filesystems[parent.fs as usize].fstype;
        (parent.fs, fstype == "btrfs" && !self.opts.one_file_system)
    }

    /// Whether the directory `rel` (with `lstat` `st`, the walk going into it or not) is a
    /// mount point whose filesystem the capture leaves out: one the plan does not take, or a
    /// mount that appeared after planning.
    fn left_out_mount(&self, parent: &Frame, rel: &[u8], st: &Stat, descend: bool) -> bool {
        match self.setup.plan.mount_points.get(rel) {
            Some(chosen) => chosen.is_none(),
            None => st.st_dev != parent.dev && !descend,
        }
    }

    /// The mount point `name` of `parent` as its own directory: its `lstat` and xattrs read
    /// through a detached, non-recursive bind mount of `parent`, where nothing is mounted on
    /// it. Without mount privilege (or should it not be a directory there), `mounted` and
    /// `xattrs`, what is mounted on it, and the path is listed in `mount_dirs_unread`.
    fn own_directory(
        &mut self,
        parent: &Frame,
        name: &[u8],
        rel: &[u8],
        mounted: Stat,
        xattrs: Vec<Xattr>,
    ) -> (Stat, Vec<Xattr>) {
        match self.beneath(parent, name) {
            Ok(own) => own,
            Err(reason) => {
                self.mount_dir_unread(rel, reason);
                (mounted, xattrs)
            }
        }
    }

    /// Records the directory underneath the mount point `name` of `parent` (a captured
    /// filesystem is mounted on it) in `mount_dirs`, or, unreadable, in `mount_dirs_unread`.
    fn record_underneath(&mut self, parent: &Frame, name: &[u8], rel: &[u8]) {
        match self.beneath(parent, name) {
            Ok((st, xattrs)) => self.out.mount_dirs.push(MountDir {
                path: rel.to_vec(),
                meta: meta(&st, parent.fs),
                xattrs,
            }),
            Err(reason) => self.mount_dir_unread(rel, reason),
        }
    }

    /// Lists the mount point `rel` as recorded with what is mounted on it, and why.
    fn mount_dir_unread(&mut self, rel: &[u8], reason: String) {
        let path = PathBuf::from(OsStr::from_bytes(&self.abs(rel)));
        self.out.mount_dirs_unread.push(Skipped { path, reason });
    }

    /// `lstat` and xattrs of `name` in the detached bind mount of `parent` (made once per
    /// parent directory, kept until the walk moves on to mount points elsewhere), or why not.
    fn beneath(&mut self, parent: &Frame, name: &[u8]) -> Result<(Stat, Vec<Xattr>), String> {
        if let Some(e) = &self.bind_denied {
            return Err(e.clone());
        }
        let fresh = !matches!(&self.bind, Some((rel, _)) if *rel == parent.rel);
        if fresh {
            self.bind = None;
            match crate::sys::mount::detached_bind(&parent.dir) {
                Ok(fd) => self.bind = Some((parent.rel.clone(), fd)),
                Err(e) => {
                    let why = format!("cannot bind-mount its parent directory: {e}");
                    if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) {
                        self.bind_denied = Some(why.clone());
                    }
                    return Err(why);
                }
            }
        }
        let (_, bind) = self.bind.as_ref().expect("bound above");
        let st = rustix::fs::statat(bind, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| format!("cannot stat its own directory: {e}"))?;
        if file_type(&st) != FileType::Directory {
            return Err("under the mount there is no directory".into());
        }
        let mut path = format!("/proc/self/fd/{}/", bind.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        let xattrs = self
            .xattrs
            .read(&path)
            .map_err(|e| format!("cannot read its own directory's extended attributes: {e}"))?;
        Ok((st, xattrs))
    }

    /// Opens a directory found at `name` in `parent`, checks it is still the inode the walk
    /// stat'ed, and reads its names.
    fn open_dir(
        &mut self,
        parent: &Frame,
        name: &[u8],
        rel: &[u8],
        st: &Stat,
        fs: u32,
    ) -> Result<Opened, ScanError> {
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = match open_dir_noatime(&parent.dir, name, flags) {
            Ok(dir) => dir,
            Err(Errno::NOENT) => {
                return self
                    .gone_or_fail("open", rel, Errno::NOENT)
                    .map(|_| Opened::Vanished);
            }
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(self.changed(rel, "a directory became something else"));
            }
            Err(e) => return self.fail("open", rel, e.into()).map(|_| Opened::Unread),
        };
        match rustix::fs::fstat(&dir) {
            Ok(now) if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => {}
            Ok(_) => return Err(self.changed(rel, "the directory was replaced")),
            Err(e) => return self.fail("stat", rel, e.into()).map(|_| Opened::Unread),
        }
        Ok(match self.frame(dir, rel.to_vec(), st, fs)? {
            Some(frame) => Opened::Frame(frame),
            None => Opened::Unread,
        })
    }

    /// Reads the names of an open directory into a frame; `None` if unreadable (keep_going).
    fn frame(
        &mut self,
        dir: OwnedFd,
        rel: Vec<u8>,
        st: &Stat,
        fs: u32,
    ) -> Result<Option<Frame>, ScanError> {
        match read_names(dir.as_fd(), &mut self.dirbuf) {
            Ok(names) => Ok(Some(Frame {
                dir,
                rel,
                names,
                next: 0,
                dev: st.st_dev,
                fs,
            })),
            Err(e) => self
                .fail("read the directory", &rel, e.into())
                .map(|_| None),
        }
    }

    /// The xattrs of `name` in `parent`: through its absolute path when that fits in
    /// PATH_MAX, else through the parent's fd (`/proc/self/fd/N/name`, still not following
    /// a final symlink).
    fn read_xattrs(&mut self, parent: &Frame, name: &[u8], rel: &[u8]) -> io::Result<Vec<Xattr>> {
        let abs = self.abs(rel);
        if abs.len() < PATH_MAX {
            return self.xattrs.read(&abs);
        }
        let mut path = format!("/proc/self/fd/{}/", parent.dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        self.xattrs.read(&path)
    }

    fn push(
        &mut self,
        path: Vec<u8>,
        kind: EntryKind,
        st: &Stat,
        fs: u32,
        xattrs: Vec<Xattr>,
    ) -> EntryIndex {
        if let EntryKind::File { size, .. } = kind {
            let allocated = (st.st_blocks as u64).saturating_mul(512);
            self.out.to_read = self.out.to_read.saturating_add(size.min(allocated));
        }
        let row = EntryRow::new(kind, meta(st, fs), xattrs);
        self.out.entries.push_row(&path, row);
        self.out.entries.len() as EntryIndex - 1
    }

    /// The absolute path of `rel` on this machine.
    fn abs(&self, rel: &[u8]) -> Vec<u8> {
        let root = &self.setup.root;
        let mut abs = Vec::with_capacity(root.len() + 1 + rel.len());
        abs.extend_from_slice(root);
        if !rel.is_empty() {
            if !root.ends_with(b"/") {
                abs.push(b'/');
            }
            abs.extend_from_slice(rel);
        }
        abs
    }

    /// A path that vanished between readdir and this call is left out quietly; any other
    /// error fails the scan, or with `keep_going` is recorded in `skipped`.
    fn gone_or_fail(&mut self, op: &'static str, rel: &[u8], e: Errno) -> Result<(), ScanError> {
        if e == Errno::NOENT {
            self.omit(rel, "vanished during the scan");
            return Ok(());
        }
        self.fail(op, rel, e.into())
    }

    fn fail(&mut self, op: &'static str, rel: &[u8], source: io::Error) -> Result<(), ScanError> {
        let path = PathBuf::from(OsStr::from_bytes(&self.abs(rel)));
        if !self.opts.keep_going {
            return Err(ScanError::Unreadable { op, path, source });
        }
        let reason = format!("cannot {op}: {source}");
        self.out.skipped.push(Skipped { path, reason });
        Ok(())
    }

    fn omit(&mut self, rel: &[u8], reason: &str) {
        let path = PathBuf::from(OsStr::from_bytes(&self.abs(rel)));
        let reason = reason.to_string();
        self.out.omitted.push(Skipped { path, reason });
    }

    fn changed(&self, rel: &[u8], what: &'static str) -> ScanError {
        let path = PathBuf::from(OsStr::from_bytes(&self.abs(rel)));
        ScanError::Changed { path, what }
    }
}

/// Opens a directory for reading with O_NOATIME, so the walk's own reads do not change the
/// atimes it records; without it where the kernel refuses (EPERM: neither root nor owner).
fn open_dir_noatime(at: impl AsFd, name: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let at = at.as_fd();
    let flags = flags | OFlags::RDONLY;
    match rustix::fs::openat(at, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(at, name, flags, Mode::empty()),
        other => other,
    }
}

/// `parent/name`, or `name` at the root.
fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut rel = Vec::with_capacity(parent.len() + 1 + name.len());
    rel.extend_from_slice(parent);
    if !parent.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    rel
}

/// The names in a directory (not `.` and `..`), sorted by bytes.
fn read_names(dir: impl AsFd, buf: &mut [MaybeUninit<u8>]) -> Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    let mut raw = RawDir::new(dir, buf);
    while let Some(entry) = raw.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort_unstable();
    Ok(names)
}
