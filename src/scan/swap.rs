//! Swap files are never captured: the ones the kernel uses (/proc/swaps) and any regular file
//! carrying the swap signature (mkswap(8): "SWAPSPACE2" in the last 10 bytes of page 0).

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use rustix::fs::{AtFlags, CWD, Mode, OFlags, Stat};

use super::mountinfo::unescape;

/// Page size the signature check assumes (x86-64, the only target).
const PAGE: u64 = 4096;
const SIGNATURE: &[u8; 10] = b"SWAPSPACE2";

/// `(st_dev, st_ino)` of every swap file in use, from `/proc/swaps`.
pub fn active_swap_files() -> HashSet<(u64, u64)> {
    let Ok(text) = std::fs::read("/proc/swaps") else {
        return HashSet::new();
    };
    parse_swaps(&text)
        .iter()
        .filter_map(|path| rustix::fs::statat(CWD, &path[..], AtFlags::empty()).ok())
        .map(|st| (st.st_dev, st.st_ino))
        .collect()
}

/// The file names of `type == file` lines of /proc/swaps, unescaped.
pub fn parse_swaps(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let mut fields = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|f| !f.is_empty());
            let name = fields.next()?;
            (fields.next()? == b"file").then(|| unescape(name))
        })
        .collect()
}

/// Whether the regular file `name` in `dir`, with `lstat` `st`, looks like a swap area. Only
/// files that could be one are opened: at least 10 pages, whole pages, no holes.
pub fn has_swap_signature(dir: impl AsFd, name: &[u8], st: &Stat) -> bool {
    let size = st.st_size as u64;
    if size < 10 * PAGE || !size.is_multiple_of(PAGE) || (st.st_blocks as u64) * 512 < size {
        return false;
    }
    // O_NOATIME: looking must not change the atime the capture records (EPERM when we are
    // neither root nor the owner; then open without it).
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let dir = dir.as_fd();
    let fd = rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty())
        .or_else(|_| rustix::fs::openat(dir, name, flags, Mode::empty()));
    let Ok(fd) = fd else {
        return false;
    };
    let mut sig = [0u8; 10];
    File::from(fd).read_exact_at(&mut sig, PAGE - 10).is_ok() && &sig == SIGNATURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_swaps_file_entries() {
        let text = b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                     /dev/vda3                               partition\t1048572\t0\t-2\n\
                     /swap\\040file                          file\t\t524284\t\t0\t\t-3\n";
        assert_eq!(parse_swaps(text), vec![b"/swap file".to_vec()]);
        assert!(parse_swaps(b"Filename Type Size Used Priority\n").is_empty());
    }

    #[test]
    fn signature_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 10 * PAGE as usize];
        std::fs::write(dir.path().join("plain"), &data).unwrap();
        data[PAGE as usize - 10..PAGE as usize].copy_from_slice(SIGNATURE);
        std::fs::write(dir.path().join("swap"), &data).unwrap();
        std::fs::write(dir.path().join("small"), &data[..PAGE as usize]).unwrap();
        let d = File::open(dir.path()).unwrap();
        let check = |name: &str| {
            let st = rustix::fs::statat(&d, name, AtFlags::SYMLINK_NOFOLLOW).unwrap();
            has_swap_signature(&d, name.as_bytes(), &st)
        };
        assert!(check("swap"));
        assert!(!check("plain"));
        assert!(!check("small"));
    }
}
