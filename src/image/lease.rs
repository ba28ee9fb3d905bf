//! Holding an image file unchanged while it is checked and opened (`restore
//! --require-signature`, docs/SECURITY.md "Signatures"): a read lease (fcntl F_SETLEASE) can
//! only be taken while nobody has the file open for writing, and any later open for writing
//! or truncation breaks it. A lease still held after the signature was checked and the
//! manifest read proves that both saw the same bytes; what is read after that is checked
//! against the manifest's hashes (or the AEAD tags of an encrypted image).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// What a lease answers.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone has the file open for writing now.
    #[error(
        "{0}: open for writing by another process; a signed image must not change while it is checked and restored"
    )]
    Busy(PathBuf),
    /// The lease was broken: the file was opened for writing or truncated meanwhile.
    #[error(
        "{0}: opened for writing while its signature was checked and its manifest read; refusing it (the signature no longer vouches for what was read)"
    )]
    Broken(PathBuf),
    /// This file cannot hold a lease (not a regular file, a filesystem without leases).
    #[error("{path}: cannot hold it unchanged ({source})")]
    Unsupported { path: PathBuf, source: io::Error },
}

/// A read lease on an open file, released on drop.
pub struct ReadLease {
    file: File,
    path: PathBuf,
}

fn lease_of(file: &File) -> io::Result<libc::c_int> {
    // SAFETY: F_GETLEASE takes no argument and returns the lease type.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLEASE) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl ReadLease {
    /// Takes a read lease on `file` (open read-only; `path` names it in messages).
    pub fn take(file: &File, path: &Path) -> Result<ReadLease, LeaseError> {
        let own = file.try_clone().map_err(|e| LeaseError::Unsupported {
            path: path.to_path_buf(),
            source: e,
        })?;
        // A broken lease is told with SIGIO, whose default action ends the process: the
        // break is read back with F_GETLEASE instead.
        // SAFETY: installing SIG_IGN for SIGIO has no preconditions.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        // SAFETY: F_SETLEASE with F_RDLCK on an open descriptor.
        let rc = unsafe { libc::fcntl(own.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EAGAIN) => LeaseError::Busy(path.to_path_buf()),
                _ => LeaseError::Unsupported {
                    path: path.to_path_buf(),
                    source: e,
                },
            });
        }
        Ok(ReadLease {
            file: own,
            path: path.to_path_buf(),
        })
    }

    /// Whether the lease is still whole: nobody opened the file for writing since `take`.
    pub fn still_held(&self) -> Result<(), LeaseError> {
        match lease_of(&self.file) {
            Ok(libc::F_RDLCK) => Ok(()),
            _ => Err(LeaseError::Broken(self.path.clone())),
        }
    }
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        // SAFETY: F_SETLEASE with F_UNLCK on our own descriptor.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn an_open_for_writing_breaks_the_lease_and_a_writer_prevents_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.oimg");
        std::fs::write(&path, b"image").unwrap();
        let file = File::open(&path).unwrap();
        let lease = match ReadLease::take(&file, &path) {
            Ok(l) => l,
            // Not root and not the owner, or a filesystem without leases: nothing to test.
            Err(LeaseError::Unsupported { .. }) => return,
            Err(e) => panic!("{e}"),
        };
        lease.still_held().unwrap();
        // A non-blocking open for writing starts the break and fails at once.
        let w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
        assert!(w.is_err(), "the open waits for the lease holder");
        assert!(matches!(lease.still_held(), Err(LeaseError::Broken(_))));
        drop(lease);
        // While a writer holds the file open, no lease.
        let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let file = File::open(&path).unwrap();
        assert!(matches!(
            ReadLease::take(&file, &path),
            Err(LeaseError::Busy(_))
        ));
        drop(writer);
    }
}
