//! One inode's record: `lstat` fields into `Meta`, the type into `EntryKind`, and every
//! extended attribute as raw bytes (listxattr(2) order, links not followed).

use std::io;

use rustix::fs::{FileType, Stat};
use rustix::io::Errno;

use crate::format::manifest::{Meta, Timestamp, Xattr};

/// The metadata of `st`, on the filesystem with index `fs`.
pub fn meta(st: &Stat, fs: u32) -> Meta {
    let ts = |sec: i64, nsec: u64| Timestamp {
        sec,
        nsec: nsec as u32,
    };
    Meta {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        atime: ts(st.st_atime, st.st_atime_nsec),
        mtime: ts(st.st_mtime, st.st_mtime_nsec),
        ctime: ts(st.st_ctime, st.st_ctime_nsec),
        ino: st.st_ino,
        fs,
        nlink: st.st_nlink as u32,
    }
}

/// The file type bits of `st`.
pub fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Reads xattrs with reused buffers: one `llistxattr` call for the common inode that has none.
pub struct XattrReader {
    names: Vec<u8>,
    value: Vec<u8>,
}

impl Default for XattrReader {
    fn default() -> Self {
        XattrReader {
            names: vec![0; 1024],
            value: vec![0; 4096],
        }
    }
}

impl XattrReader {
    /// Every xattr of `path` (not following a final symlink). A filesystem without xattr
    /// support gives none; an attribute removed between list and get is left out.
    pub fn read(&mut self, path: &[u8]) -> io::Result<Vec<Xattr>> {
        let len = loop {
            match rustix::fs::llistxattr(path, &mut self.names[..]) {
                Ok(len) => break len,
                Err(Errno::RANGE) => {
                    let need = rustix::fs::llistxattr_query(path)?;
                    self.names.resize(need.max(self.names.len() * 2), 0);
                }
                Err(Errno::NOTSUP) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            }
        };
        let mut out = Vec::new();
        for name in self.names[..len]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
        {
            if let Some(value) = get(path, name, &mut self.value)? {
                out.push(Xattr {
                    name: name.to_vec(),
                    value,
                });
            }
        }
        Ok(out)
    }
}

/// One attribute's value, growing `buf` as needed; `None` if it vanished.
fn get(path: &[u8], name: &[u8], buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(len) => return Ok(Some(buf[..len].to_vec())),
            Err(Errno::RANGE) => {
                let need = rustix::fs::lgetxattr_query(path, name)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}
