//! Thin, fd-relative wrappers over libc for the fixture builder and the comparator.
//!
//! Everything goes through directory file descriptors (`openat`, `fstatat`, `mkdirat`...) so
//! that paths longer than PATH_MAX (4096 bytes) can be built and walked, and so that no symlink
//! is ever followed. Deliberately independent of osimage's own code.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A name inside a directory, as a C string (no `/`, no NUL).
pub fn cname(name: &[u8]) -> CString {
    assert!(
        !name.contains(&b'/'),
        "a single component, got {:?}",
        bstr(name)
    );
    CString::new(name).expect("no NUL in a file name")
}

/// Lossy, escaped rendering of raw path bytes for messages.
pub fn bstr(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn check(ret: libc::c_int, what: impl FnOnce() -> String) -> io::Result<libc::c_int> {
    if ret < 0 {
        let err = io::Error::last_os_error();
        Err(io::Error::new(err.kind(), format!("{}: {err}", what())))
    } else {
        Ok(ret)
    }
}

/// Long lines (paths past PATH_MAX) cut in the middle, so failures stay readable.
pub fn shorten(text: &str) -> String {
    let line = |l: &str| {
        let chars: Vec<char> = l.chars().collect();
        if chars.len() <= 300 {
            return l.to_string();
        }
        let head: String = chars[..150].iter().collect();
        let tail: String = chars[chars.len() - 150..].iter().collect();
        format!("{head}[...{} chars...]{tail}", chars.len() - 300)
    };
    text.lines().map(line).collect::<Vec<_>>().join("\n")
}

/// An open directory, the anchor of every fd-relative operation.
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Opens the directory at `path` (the last component must not be a symlink).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = check(unsafe { libc::open(c.as_ptr(), flags) }, || {
            format!("open {}", path.display())
        })?;
        Ok(Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens the subdirectory `name` without following symlinks.
    pub fn sub(&self, name: &[u8]) -> io::Result<Dir> {
        let c = cname(name);
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = check(
            unsafe { libc::openat(self.raw(), c.as_ptr(), flags) },
            || format!("openat {}", bstr(name)),
        )?;
        Ok(Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The directory holding `rel` (a `/`-joined relative path) and its last component.
    pub fn parent_of(&self, rel: &[u8]) -> io::Result<(Dir, Vec<u8>)> {
        let mut parts: Vec<&[u8]> = rel.split(|&c| c == b'/').collect();
        let last = parts
            .pop()
            .expect("split yields at least one part")
            .to_vec();
        let mut cur = self.sub(b".")?;
        for p in parts {
            cur = cur.sub(p)?;
        }
        Ok((cur, last))
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A short path naming `name` in this directory through /proc, usable by path-based
    /// calls (xattrs) however long the real path is. The final component is not followed by
    /// the `l*xattr` family.
    pub fn proc_path(&self, name: Option<&[u8]>) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", self.raw()));
        if let Some(n) = name {
            p.push(OsStr::from_bytes(n));
        }
        p
    }

    /// Names in this directory, sorted, without `.` and `..`.
    pub fn names(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.proc_path(None))? {
            out.push(e?.file_name().as_bytes().to_vec());
        }
        out.sort();
        Ok(out)
    }

    /// `fstatat(AT_SYMLINK_NOFOLLOW)`; `None` stats the directory itself.
    pub fn lstat(&self, name: Option<&[u8]>) -> io::Result<libc::stat> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        match name {
            None => {
                check(unsafe { libc::fstat(self.raw(), &mut st) }, || {
                    "fstat".to_string()
                })?;
            }
            Some(n) => {
                let c = cname(n);
                check(
                    unsafe {
                        libc::fstatat(self.raw(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW)
                    },
                    || format!("fstatat {}", bstr(n)),
                )?;
            }
        }
        Ok(st)
    }

    /// Opens a regular file for reading, refusing symlinks.
    pub fn open_file(&self, name: &[u8]) -> io::Result<File> {
        let c = cname(name);
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = check(
            unsafe { libc::openat(self.raw(), c.as_ptr(), flags) },
            || format!("openat {}", bstr(name)),
        )?;
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Opens an existing file for writing (no truncation).
    pub fn open_write(&self, name: &[u8]) -> io::Result<File> {
        let c = cname(name);
        let flags = libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = check(
            unsafe { libc::openat(self.raw(), c.as_ptr(), flags) },
            || format!("openat(w) {}", bstr(name)),
        )?;
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Creates (exclusively) a regular file for writing.
    pub fn create_file(&self, name: &[u8]) -> io::Result<File> {
        let c = cname(name);
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = check(
            unsafe { libc::openat(self.raw(), c.as_ptr(), flags, 0o644 as libc::c_uint) },
            || format!("create {}", bstr(name)),
        )?;
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    pub fn mkdir(&self, name: &[u8]) -> io::Result<Dir> {
        let c = cname(name);
        check(
            unsafe { libc::mkdirat(self.raw(), c.as_ptr(), 0o755) },
            || format!("mkdirat {}", bstr(name)),
        )?;
        self.sub(name)
    }

    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        let t = CString::new(target).expect("no NUL in target");
        let c = cname(name);
        check(
            unsafe { libc::symlinkat(t.as_ptr(), self.raw(), c.as_ptr()) },
            || format!("symlinkat {}", bstr(name)),
        )?;
        Ok(())
    }

    pub fn readlink(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        let c = cname(name);
        let mut buf = vec![0u8; 8192];
        let n =
            unsafe { libc::readlinkat(self.raw(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("readlinkat {}: {err}", bstr(name)),
            ));
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// A hard link `name` here to `old` in `old_dir`.
    pub fn link_from(&self, old_dir: &Dir, old: &[u8], name: &[u8]) -> io::Result<()> {
        let o = cname(old);
        let c = cname(name);
        check(
            unsafe { libc::linkat(old_dir.raw(), o.as_ptr(), self.raw(), c.as_ptr(), 0) },
            || format!("linkat {} -> {}", bstr(name), bstr(old)),
        )?;
        Ok(())
    }

    pub fn mknod(&self, name: &[u8], mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
        let c = cname(name);
        check(
            unsafe { libc::mknodat(self.raw(), c.as_ptr(), mode, dev) },
            || format!("mknodat {}", bstr(name)),
        )?;
        Ok(())
    }

    pub fn unlink(&self, name: &[u8]) -> io::Result<()> {
        let c = cname(name);
        check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), 0) }, || {
            format!("unlinkat {}", bstr(name))
        })?;
        Ok(())
    }

    /// `lchown`-like: never follows a final symlink. `None` changes the directory itself.
    pub fn chown(&self, name: Option<&[u8]>, uid: u32, gid: u32) -> io::Result<()> {
        match name {
            None => check(unsafe { libc::fchown(self.raw(), uid, gid) }, || {
                "fchown".to_string()
            })?,
            Some(n) => {
                let c = cname(n);
                check(
                    unsafe {
                        libc::fchownat(self.raw(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
                    },
                    || format!("fchownat {}", bstr(n)),
                )?
            }
        };
        Ok(())
    }

    /// chmod (not for symlinks). `None` changes the directory itself.
    pub fn chmod(&self, name: Option<&[u8]>, mode: u32) -> io::Result<()> {
        match name {
            None => check(unsafe { libc::fchmod(self.raw(), mode) }, || {
                "fchmod".to_string()
            })?,
            Some(n) => {
                let c = cname(n);
                check(
                    unsafe { libc::fchmodat(self.raw(), c.as_ptr(), mode, 0) },
                    || format!("fchmodat {}", bstr(n)),
                )?
            }
        };
        Ok(())
    }

    /// Sets atime and mtime without following symlinks. `None` changes the directory itself.
    pub fn set_times(
        &self,
        name: Option<&[u8]>,
        atime: (i64, i64),
        mtime: (i64, i64),
    ) -> io::Result<()> {
        let ts = [
            libc::timespec {
                tv_sec: atime.0,
                tv_nsec: atime.1,
            },
            libc::timespec {
                tv_sec: mtime.0,
                tv_nsec: mtime.1,
            },
        ];
        match name {
            None => check(unsafe { libc::futimens(self.raw(), ts.as_ptr()) }, || {
                "futimens".to_string()
            })?,
            Some(n) => {
                let c = cname(n);
                check(
                    unsafe {
                        libc::utimensat(
                            self.raw(),
                            c.as_ptr(),
                            ts.as_ptr(),
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    },
                    || format!("utimensat {}", bstr(n)),
                )?
            }
        };
        Ok(())
    }

    /// The path the `l*xattr` calls get: `/proc/self/fd/N/.` for the directory itself (the
    /// bare `/proc/self/fd/N` would name procfs's own link, not the directory).
    pub fn xattr_path(&self, name: Option<&[u8]>) -> PathBuf {
        self.proc_path(Some(name.unwrap_or(b".")))
    }

    /// Sets an xattr without following a final symlink.
    pub fn set_xattr(&self, name: Option<&[u8]>, key: &str, value: &[u8]) -> io::Result<()> {
        xattr::set(self.xattr_path(name), key, value).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("setxattr {key} on {}: {e}", bstr(name.unwrap_or(b"."))),
            )
        })
    }

    /// Every xattr name and value, sorted by name, without following a final symlink.
    pub fn xattrs(&self, name: Option<&[u8]>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let p = self.xattr_path(name);
        let mut out = Vec::new();
        for key in xattr::list(&p)? {
            let value = xattr::get(&p, &key)?.unwrap_or_default();
            out.push((key.as_bytes().to_vec(), value));
        }
        out.sort();
        Ok(out)
    }
}

/// `makedev` as glibc encodes it (the kernel's "new" 32-bit major/minor encoding).
pub fn makedev(major: u32, minor: u32) -> libc::dev_t {
    libc::makedev(major, minor)
}
