//! Kernel-side copies of the blocks a refresh carries over from its base (docs/REFRESH.md,
//! "Block copies"): `copy_file_range(2)` moves them from the base's file into the new image
//! without passing through user space (sharing extents, a reflink, only where the filesystem
//! can and both offsets are block-aligned alike: docs/REFRESH.md, "Shared extents"). The new image
//! holds the bytes themselves: nothing points into the base.

use std::fs::File;
use std::io::Write;

use rustix::io::Errno;

/// How `append_copy` put the bytes in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCount {
    /// Bytes the kernel copied.
    pub kernel: u64,
    /// Bytes written from memory (the kernel could not copy them).
    pub written: u64,
}

/// A failed read of the source in `append_copy` (inside the `io::Error` it returns), so a
/// caller can name the source rather than the destination.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Read(std::io::Error),
}

/// Whether `e` (from `append_copy`) is a failed read of the source.
pub fn is_read_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<CopyError>())
}

/// Filesystems share extents (XFS, btrfs: a reflink) only for ranges that begin on a block
/// boundary in both files; 4 KiB is their block on x86-64.
const SHARE_ALIGN: u64 = 4096;

/// Appends the `len` bytes `src` holds at `src_offset` at `dst`'s file position: the kernel
/// copies them where it can; where it cannot (another filesystem, no support), the rest is read
/// and written, so the result is the same either way. A source that ends before `len` bytes is
/// an error (`UnexpectedEof`). When both offsets fall at the same place within a block (an
/// unchanged pack carried whole lands where it was), the bytes up to the next block boundary
/// go first, so the rest starts aligned in both files and a filesystem that can shares it
/// instead of copying it.
pub fn append_copy(
    dst: &File,
    src: &File,
    src_offset: u64,
    len: u64,
) -> std::io::Result<CopyCount> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let within = src_offset % SHARE_ALIGN;
    let head = match rustix::fs::seek(dst, rustix::fs::SeekFrom::Current(0)) {
        Ok(at) if within != 0 && at % SHARE_ALIGN == within => {
            ((SHARE_ALIGN - within) as usize).min(len)
        }
        _ => 0,
    };
    let mut off_in = src_offset;
    let mut done = 0usize;
    let mut kernel_can = true;
    for end in [head, len] {
        while kernel_can && done < end {
            match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, None, end - done) {
                Ok(0) => kernel_can = false,
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                // Not possible between these files (EXDEV before Linux 5.3 and across some
                // filesystems, ENOSYS/EOPNOTSUPP without support, EINVAL for files it cannot
                // handle): read and write instead.
                Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) => {
                    kernel_can = false
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let kernel = done as u64;
    let mut buf = vec![0u8; (len - done).min(1 << 20)];
    let mut out = dst;
    while done < len {
        let n = (len - done).min(buf.len());
        std::os::unix::fs::FileExt::read_exact_at(src, &mut buf[..n], src_offset + done as u64)
            .map_err(|e| std::io::Error::new(e.kind(), CopyError::Read(e)))?;
        out.write_all(&buf[..n])?;
        done += n;
    }
    Ok(CopyCount {
        kernel,
        written: (len as u64) - kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    #[test]
    fn copies_a_range_after_what_is_already_written() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        let mut dst = tempfile::tempfile_in(dir.path()).unwrap();
        dst.write_all(b"head").unwrap();
        let n = append_copy(&dst, &src, 1000, 200_000).unwrap();
        assert_eq!(n.kernel + n.written, 200_000);
        dst.write_all(b"tail").unwrap();
        let mut got = Vec::new();
        dst.seek(SeekFrom::Start(0)).unwrap();
        dst.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..200_004], &data[1000..201_000]);
        assert_eq!(&got[200_004..], b"tail");
    }

    #[test]
    fn a_copy_split_at_the_block_boundary_is_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 13 % 253) as u8).collect();
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        let mut dst = tempfile::tempfile_in(dir.path()).unwrap();
        // The destination at 100 past a boundary, the source too: a head of 3996 bytes first.
        dst.write_all(&data[..4196]).unwrap();
        let n = append_copy(&dst, &src, 4196, 30_000 - 4196).unwrap();
        assert_eq!(n.kernel + n.written, 30_000 - 4196);
        // A copy shorter than the head.
        let n = append_copy(&dst, &src, 30_000, 10).unwrap();
        assert_eq!(n.kernel + n.written, 10);
        let mut got = Vec::new();
        dst.seek(SeekFrom::Start(0)).unwrap();
        dst.read_to_end(&mut got).unwrap();
        assert_eq!(got, &data[..30_010]);
    }

    #[test]
    fn a_source_shorter_than_expected_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, b"abcdef").unwrap();
        let src = File::open(&src_path).unwrap();
        let dst = tempfile::tempfile_in(dir.path()).unwrap();
        let e = append_copy(&dst, &src, 2, 6).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(is_read_error(&e), "the source is to blame: {e}");
    }

    #[test]
    fn without_kernel_copies_the_bytes_are_read_and_written() {
        // A pipe cannot be a copy_file_range destination: every byte goes the slow way.
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        let dst = File::from(std::os::fd::OwnedFd::from(w));
        let n = append_copy(&dst, &src, 7, 2_500_000).unwrap();
        drop(dst);
        assert_eq!((n.kernel, n.written), (0, 2_500_000));
        assert_eq!(reader.join().unwrap(), &data[7..2_500_007]);
    }
}
