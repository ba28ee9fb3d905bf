//! Reading one regular file's content safely: opened without following links, checked against
//! the walk's record, holes found with SEEK_DATA/SEEK_HOLE, re-checked after reading
//! (STYLE.md rule 10; issue #2 "files that vanish or change during the scan").

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags, SeekFrom, Stat};

use crate::format::manifest::{Meta, Timestamp};

/// Paths longer than this are opened in steps, relative to a directory descriptor.
const LONG_PATH: usize = 3800;

/// Why a source file could not be opened for reading.
#[derive(Debug)]
pub enum OpenError {
    /// It is gone (removed or renamed since the walk): not an error, the entry is dropped.
    Vanished,
    /// Something else now stands at the path (not a regular file, or another inode).
    Replaced,
    /// The open or the check failed.
    Io(io::Error),
}

/// A regular file opened for capture.
pub struct SourceFile {
    file: File,
    stat: Stat,
}

/// What identifies a version of a file's content: if none of these moved, it did not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub ino: u64,
}

impl SourceFile {
    /// Opens `path` (O_NOFOLLOW, O_NOATIME where permitted) and checks it is still the regular
    /// file with inode `ino` that the walk saw.
    pub fn open(path: &Path, ino: u64) -> Result<SourceFile, OpenError> {
        let fd = open_long(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => OpenError::Vanished,
            Some(libc::ELOOP) => OpenError::Replaced,
            _ => OpenError::Io(e),
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| OpenError::Io(e.into()))?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG || stat.st_ino != ino {
            return Err(OpenError::Replaced);
        }
        Ok(SourceFile {
            file: File::from(fd),
            stat,
        })
    }

    /// The version now (one more fstat): compare with the version at open time after reading.
    pub fn current_version(&self) -> io::Result<Version> {
        Ok(version_of(&rustix::fs::fstat(self.file.as_fd())?))
    }

    /// Updates `meta` from a fresh fstat of the open file (it may be newer than the walk's).
    pub fn refresh_meta(&self, meta: &mut Meta) -> io::Result<()> {
        let s = rustix::fs::fstat(self.file.as_fd())?;
        meta.mode = s.st_mode & 0o7777;
        meta.uid = s.st_uid;
        meta.gid = s.st_gid;
        meta.atime = ts(s.st_atime, s.st_atime_nsec);
        meta.mtime = ts(s.st_mtime, s.st_mtime_nsec);
        meta.ctime = ts(s.st_ctime, s.st_ctime_nsec);
        meta.nlink = s.st_nlink as u32;
        Ok(())
    }

    /// Reads at `offset` until `buf` is full or the file ends; returns the bytes read.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// The ranges `(start, end)` holding data, below `size`. Files without holes (the common
    /// case, told by their block count) cost no extra system call.
    pub fn data_ranges(&self, size: u64) -> io::Result<Vec<(u64, u64)>> {
        let allocated = (self.stat.st_blocks as u64).saturating_mul(512);
        if size == 0 {
            return Ok(Vec::new());
        }
        if allocated >= size {
            return Ok(vec![(0, size)]);
        }
        let mut ranges = Vec::new();
        let mut at = 0u64;
        while at < size {
            let start = match rustix::fs::seek(self.file.as_fd(), SeekFrom::Data(at)) {
                Ok(s) => s,
                Err(rustix::io::Errno::NXIO) => break,
                Err(rustix::io::Errno::INVAL) if at == 0 => return Ok(vec![(0, size)]),
                Err(e) => return Err(e.into()),
            };
            if start >= size {
                break;
            }
            let end = match rustix::fs::seek(self.file.as_fd(), SeekFrom::Hole(start)) {
                Ok(e) => e.min(size),
                Err(e) => return Err(e.into()),
            };
            if end <= start {
                break;
            }
            ranges.push((start, end));
            at = end;
        }
        Ok(ranges)
    }
}

fn ts(sec: i64, nsec: u64) -> Timestamp {
    Timestamp {
        sec,
        nsec: nsec.min(999_999_999) as u32,
    }
}

fn version_of(s: &Stat) -> Version {
    Version {
        size: s.st_size as u64,
        mtime: ts(s.st_mtime, s.st_mtime_nsec),
        ctime: ts(s.st_ctime, s.st_ctime_nsec),
        ino: s.st_ino,
    }
}

/// Opens a regular file for reading without following a final symlink, in steps below
/// PATH_MAX when the path is longer (deep trees are legal; `open(2)` alone refuses them).
pub fn open_long(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() <= LONG_PATH {
        return open_noatime(rustix::fs::CWD, bytes, flags);
    }
    // Walk down directory by directory, each step shorter than LONG_PATH.
    let mut dir: Option<OwnedFd> = None;
    let mut rest = bytes;
    while rest.len() > LONG_PATH {
        let cut = rest[..LONG_PATH]
            .iter()
            .rposition(|b| *b == b'/')
            .filter(|p| *p > 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
        let step = &rest[..cut];
        let dflags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let next = match &dir {
            None => rustix::fs::open(
                Path::new(std::ffi::OsStr::from_bytes(step)),
                dflags,
                Mode::empty(),
            ),
            Some(d) => rustix::fs::openat(
                d,
                Path::new(std::ffi::OsStr::from_bytes(step)),
                dflags,
                Mode::empty(),
            ),
        }?;
        dir = Some(next);
        rest = &rest[cut + 1..];
    }
    match &dir {
        Some(d) => open_noatime(d.as_fd(), rest, flags),
        None => open_noatime(rustix::fs::CWD, rest, flags),
    }
}

fn open_noatime(dir: impl AsFd, name: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let p = Path::new(std::ffi::OsStr::from_bytes(name));
    // O_NOATIME is refused (EPERM) for files the caller does not own unless root.
    match rustix::fs::openat(dir.as_fd(), p, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => Ok(rustix::fs::openat(dir, p, flags, Mode::empty())?),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_file_reports_its_data_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_at(&[7u8; 4096], 32 << 20).unwrap();
        f.sync_all().unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        let s = SourceFile::open(&p, ino).unwrap();
        let r = s.data_ranges(64 << 20).unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].0 <= 32 << 20 && r[0].1 >= (32 << 20) + 4096, "{r:?}");
        assert!(r[0].1 - r[0].0 < 2 << 20, "{r:?}");
    }

    #[test]
    fn symlink_and_replaced_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            SourceFile::open(&link, 1),
            Err(OpenError::Replaced)
        ));
        assert!(matches!(
            SourceFile::open(&target, 1),
            Err(OpenError::Replaced)
        ));
        let gone = dir.path().join("gone");
        assert!(matches!(
            SourceFile::open(&gone, 1),
            Err(OpenError::Vanished)
        ));
    }

    #[test]
    fn long_paths_open_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = dir.path().to_path_buf();
        let name = "d".repeat(200);
        // Build > 4096 bytes of path with relative mkdirs via openat.
        let mut fd =
            rustix::fs::open(&p, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        for _ in 0..25 {
            rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            fd = rustix::fs::openat(
                &fd,
                name.as_str(),
                OFlags::DIRECTORY | OFlags::RDONLY,
                Mode::empty(),
            )
            .unwrap();
            p.push(&name);
        }
        let f = rustix::fs::openat(
            &fd,
            "f",
            OFlags::CREATE | OFlags::WRONLY,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&f, b"deep").unwrap();
        p.push("f");
        assert!(p.as_os_str().len() > 4096);
        let st = rustix::fs::fstat(&f).unwrap();
        let s = SourceFile::open(&p, st.st_ino).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read_at(&mut buf, 0).unwrap(), 4);
        assert_eq!(&buf[..4], b"deep");
    }
}
