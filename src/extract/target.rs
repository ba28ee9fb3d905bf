//! The destination tree: every system call extract makes, relative to the destination's dirfd.
//!
//! Directories are reopened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or, on
//! kernels before 5.6, one `openat(O_NOFOLLOW | O_DIRECTORY)` per component), and the last
//! component is always created with `*at` calls that do not follow it (`O_EXCL | O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`), so nothing extraction created is ever followed out of the tree.
//! Metadata goes on in wimlib's order (owner → xattrs → mode → times) because chown clears
//! setuid bits and `security.capability`. Setuid, setgid and file capabilities are given only
//! to an entry that got the image's owner (not with `--no-owner`, nor when chown is refused). Modes are always set explicitly, so the process umask
//! does not matter and is left alone.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use super::error::ExtractError;
use super::plan::parent_of;
use crate::format::manifest::{Meta, Timestamp, Xattr};
use crate::progress::Progress;

/// Set once `openat2` reported ENOSYS (kernel < 5.6): walk components instead.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Warnings shown on the progress line; only the first `SHOWN` are printed.
pub(crate) struct Warnings<'p> {
    progress: &'p dyn Progress,
    count: AtomicU64,
}

impl<'p> Warnings<'p> {
    const SHOWN: u64 = 50;

    pub fn new(progress: &'p dyn Progress) -> Self {
        Warnings {
            progress,
            count: AtomicU64::new(0),
        }
    }

    pub fn warn(&self, line: String) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= Self::SHOWN {
            self.progress.note(&format!("warning: {line}"));
        } else if n == Self::SHOWN + 1 {
            self.progress
                .note("warning: further warnings are not shown");
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// How metadata reaches an entry: through an open fd (files, directories) or by name in its
/// parent directory (symlinks and special files, which must not be opened).
#[derive(Clone, Copy)]
pub(crate) enum Handle<'a> {
    Fd(BorrowedFd<'a>),
    At {
        dir: BorrowedFd<'a>,
        name: &'a [u8],
        symlink: bool,
    },
}

/// The destination directory, open.
pub(crate) struct Target {
    dest: OwnedFd,
    dest_path: PathBuf,
    /// Whether to chown (false: leave files owned by the extracting user).
    pub restore_owner: bool,
    /// Existing directories are accepted (restoring into mounted filesystems).
    into_mounts: bool,
    /// Whether `security.capability` is set (on entries that got the image's owner).
    capabilities: bool,
    /// Whether `open` created the destination directory (it did not exist).
    created: bool,
}

/// The xattr holding a file's capabilities (capabilities(7), "File capabilities").
const CAPABILITY: &[u8] = b"security.capability";

impl Target {
    /// Whether existing directories are accepted (see `ExtractOptions::into_mounts`).
    pub fn merges_into_mounts(&self) -> bool {
        self.into_mounts
    }

    /// Creates `dest` if missing, or checks that it is an empty directory; opens it.
    pub fn open(dest: &Path, opts: &super::ExtractOptions) -> Result<Target, ExtractError> {
        let into_mounts = opts.into_mounts;
        let fail = |reason: String| ExtractError::Dest {
            dest: dest.to_path_buf(),
            reason,
        };
        let mut created = false;
        match std::fs::create_dir(dest) {
            Ok(()) => created = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut listing = std::fs::read_dir(dest).map_err(|e| fail(e.to_string()))?;
                if !into_mounts && listing.next().is_some() {
                    return Err(fail("exists and is not empty".into()));
                }
            }
            Err(e) => return Err(fail(format!("cannot create it: {e}"))),
        }
        let dest_fd = rfs::open(
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(io::Error::from(e).to_string()))?;
        Ok(Target {
            dest: dest_fd,
            dest_path: dest.to_path_buf(),
            restore_owner: opts.restore_owner,
            into_mounts,
            capabilities: opts.capabilities,
            created,
        })
    }

    /// Removes everything under the destination (all of it made by this extract: it was
    /// missing or empty) and the destination itself when `open` created it. Nothing is
    /// followed: `remove_dir_all` removes a symlink, never what it points to. Returns what
    /// could not be removed, with why.
    pub fn undo(&self) -> Vec<String> {
        let mut left = Vec::new();
        if self.created {
            if let Err(e) = std::fs::remove_dir_all(&self.dest_path) {
                left.push(format!("{}: {e}", self.dest_path.display()));
            }
            return left;
        }
        let listing = match std::fs::read_dir(&self.dest_path) {
            Ok(l) => l,
            Err(e) => return vec![format!("{}: {e}", self.dest_path.display())],
        };
        for child in listing.flatten() {
            let path = child.path();
            let gone = match child.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            if let Err(e) = gone {
                left.push(format!("{}: {e}", path.display()));
            }
        }
        left
    }

    /// The destination directory itself.
    pub fn dest_fd(&self) -> BorrowedFd<'_> {
        self.dest.as_fd()
    }

    /// Where an entry's path lands, for messages.
    pub fn full_path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.dest_path.clone()
        } else {
            self.dest_path.join(OsStr::from_bytes(rel))
        }
    }

    /// Opens the directory at relative path `rel`, refusing any symlink on the way. Paths
    /// longer than PATH_MAX are opened a segment at a time, each beneath the previous one.
    pub fn open_dir(&self, rel: &[u8]) -> Result<OwnedFd, ExtractError> {
        let err = |e: Errno| ExtractError::io("opening directory", self.full_path(rel), e);
        let mut fd: Option<OwnedFd> = None;
        for segment in segments(rel, SEGMENT_MAX) {
            let base = fd.as_ref().map_or(self.dest.as_fd(), |f| f.as_fd());
            fd = Some(open_beneath(base, segment).map_err(err)?);
        }
        fd.ok_or_else(|| err(Errno::INVAL))
    }

    /// Applies owner, xattrs, mode and times, in that order.
    /// `rel` is the created path, for messages.
    pub fn set_meta(
        &self,
        h: Handle,
        meta: &Meta,
        xattrs: &[Xattr],
        rel: &[u8],
        warn: &Warnings,
    ) -> Result<(), ExtractError> {
        let path = || self.full_path(rel);
        // Whether the entry now has the image's owner: the privileges a file grants whoever
        // runs it (setuid, setgid, file capabilities) are the owner's to give, so without it
        // they are dropped, as GNU tar does with --no-same-owner (issue #20 item 10).
        let owned = self.restore_owner && self.set_owner(h, meta, warn, path)?;
        for x in xattrs {
            if x.name == CAPABILITY && !(owned && self.capabilities) {
                continue;
            }
            let done = match h {
                Handle::Fd(fd) => rfs::fsetxattr(fd, &x.name, &x.value, rfs::XattrFlags::empty()),
                Handle::At { dir, name, .. } => {
                    // No lsetxattrat before Linux 6.13: reach the entry through its parent's fd.
                    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                    p.extend_from_slice(name);
                    rfs::lsetxattr(p.as_slice(), &x.name, &x.value, rfs::XattrFlags::empty())
                }
            };
            match done {
                Ok(()) => {}
                // The filesystem, the kernel's policy or a missing /proc refuses this one
                // attribute (e.g. user.* on a symlink): report it and go on.
                Err(e @ (Errno::PERM | Errno::OPNOTSUPP | Errno::NOENT)) => warn.warn(format!(
                    "{}: cannot set xattr {}: {}",
                    path().display(),
                    String::from_utf8_lossy(&x.name),
                    io::Error::from(e)
                )),
                Err(e) => return Err(ExtractError::io("setting an xattr of", path(), e)),
            }
        }
        let mode = Mode::from_raw_mode(if owned {
            meta.mode & 0o7777
        } else {
            meta.mode & 0o1777
        });
        match h {
            Handle::Fd(fd) => rfs::fchmod(fd, mode),
            Handle::At { symlink: true, .. } => Ok(()),
            Handle::At { dir, name, .. } => rfs::chmodat(dir, name, mode, AtFlags::empty()),
        }
        .map_err(|e| ExtractError::io("setting the mode of", path(), e))?;
        let times = Timestamps {
            last_access: timespec(meta.atime),
            last_modification: timespec(meta.mtime),
        };
        match h {
            Handle::Fd(fd) => rfs::futimens(fd, &times),
            Handle::At { dir, name, .. } => {
                rfs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            }
        }
        .map_err(|e| ExtractError::io("setting the times of", path(), e))
    }

    /// Sets the image's owner; false when the caller may not (a warning is reported).
    fn set_owner(
        &self,
        h: Handle,
        meta: &Meta,
        warn: &Warnings,
        path: impl Fn() -> PathBuf,
    ) -> Result<bool, ExtractError> {
        // -1 means "leave unchanged" to chown; no real file is owned by it.
        let uid = (meta.uid != u32::MAX).then(|| Uid::from_raw(meta.uid));
        let gid = (meta.gid != u32::MAX).then(|| Gid::from_raw(meta.gid));
        let done = match h {
            Handle::Fd(fd) => rfs::fchown(fd, uid, gid),
            Handle::At { dir, name, .. } => {
                rfs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        match done {
            Ok(()) => Ok(true),
            Err(Errno::PERM) => {
                warn.warn(format!(
                    "{}: not permitted to set owner {}:{}",
                    path().display(),
                    meta.uid,
                    meta.gid
                ));
                Ok(false)
            }
            Err(e) => Err(ExtractError::io("setting the owner of", path(), e)),
        }
    }
}

/// Longest path handed to one open (PATH_MAX is 4096 with its NUL).
const SEGMENT_MAX: usize = 4000;

/// Splits a relative path at slashes into pieces of at most `max` bytes (a component is at most
/// NAME_MAX = 255 bytes, so one always fits; a longer one goes alone and fails in the kernel).
fn segments(path: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = path;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            rest[..=max]
                .iter()
                .rposition(|&b| b == b'/')
                .or_else(|| rest.iter().position(|&b| b == b'/'))
                .unwrap_or(rest.len())
        };
        let (head, tail) = rest.split_at(cut);
        rest = tail.strip_prefix(b"/").unwrap_or(tail);
        Some(head)
    })
}

/// Opens directory `rel` (at most PATH_MAX) below `base` without following any symlink:
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, or one `openat(O_NOFOLLOW)` per component
/// on kernels before 5.6.
fn open_beneath(base: BorrowedFd, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match rfs::openat2(base, rel, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            other => return other,
        }
    }
    let mut components = rel.split(|&b| b == b'/');
    let first = components.next().unwrap_or_default();
    let mut fd = rfs::openat(base, first, flags, Mode::empty())?;
    for component in components {
        fd = rfs::openat(&fd, component, flags, Mode::empty())?;
    }
    Ok(fd)
}

fn timespec(t: Timestamp) -> rfs::Timespec {
    rfs::Timespec {
        tv_sec: t.sec,
        tv_nsec: i64::from(t.nsec),
    }
}

/// One open directory kept between consecutive entries of the same directory, known by its
/// path (the plan has checked that every parent is an earlier directory entry).
#[derive(Default)]
pub(crate) struct DirCache {
    cached: Option<(Vec<u8>, OwnedFd)>,
}

impl DirCache {
    /// An fd for the directory holding the entry at `path` (the destination itself for a
    /// top-level entry).
    pub fn parent<'s>(
        &'s mut self,
        target: &'s Target,
        path: &[u8],
    ) -> Result<BorrowedFd<'s>, ExtractError> {
        let dir = parent_of(path);
        if dir.is_empty() {
            return Ok(target.dest_fd());
        }
        if self
            .cached
            .as_ref()
            .is_none_or(|(p, _)| p.as_slice() != dir)
        {
            let fd = target.open_dir(dir)?;
            let mut p = self.cached.take().map(|(p, _)| p).unwrap_or_default();
            p.clear();
            p.extend_from_slice(dir);
            self.cached = Some((p, fd));
        }
        match &self.cached {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => unreachable!("filled above"),
        }
    }
}

/// Creates an empty directory (0700 until its metadata is applied at the end).
pub(crate) fn mkdir(dir: BorrowedFd, name: &[u8]) -> rustix::io::Result<()> {
    rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
}

/// Creates a new regular file for writing; fails if the name exists in any form.
pub(crate) fn create_file(dir: BorrowedFd, name: &[u8]) -> rustix::io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600)).map(File::from)
}

/// Creates a special file (device, FIFO or socket), 0600 until its metadata is applied.
pub(crate) fn mknod(
    dir: BorrowedFd,
    name: &[u8],
    kind: FileType,
    rdev: u64,
) -> rustix::io::Result<()> {
    rfs::mknodat(dir, name, kind, Mode::from_raw_mode(0o600), rdev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_at_slashes_within_the_limit() {
        let all: Vec<&[u8]> = segments(b"aa/bb/cc/dd", 5).collect();
        assert_eq!(all, [&b"aa/bb"[..], b"cc/dd"]);
        let all: Vec<&[u8]> = segments(b"aaaaaaa/b", 5).collect();
        assert_eq!(all, [&b"aaaaaaa"[..], b"b"]);
        let all: Vec<&[u8]> = segments(b"abc", 5).collect();
        assert_eq!(all, [&b"abc"[..]]);
        assert_eq!(segments(b"", 5).count(), 0);
    }
}
