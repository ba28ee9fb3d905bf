//! Bytes at an offset, wherever they are: the interface under every reader of an image
//! (`image::Span`, the ISO reader). A local file answers with `pread`; an HTTP object
//! (`remote::HttpObject`) with Range GETs. docs/STORE.md §7.1.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes at an offset, wherever they are (a file, an HTTP object).
pub trait RangeRead: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `at`; the object's end is an error, never a short
    /// read.
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()>;
    /// The object's length (a file's size; Content-Range's total for HTTP).
    fn len(&self) -> u64;
    /// What to name in messages: a path, or a URL without its query.
    fn describe(&self) -> String;
    /// Whether the object is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops whatever copy of `len` bytes at `at` the source keeps, so that the next read of
    /// them asks the origin again, and counts one refetch (docs/STORE.md §7.4: bytes damaged
    /// in flight). `false` when there is nothing fresher to ask, as for a local file, whose
    /// second read would give the same bytes: the caller then reads nothing again.
    fn forget(&self, _at: u64, _len: u64) -> bool {
        false
    }
    /// Says which byte ranges `(offset, length)` the caller will read next, in the order it
    /// will read them (docs/STORE.md §7.2.1), replacing any earlier plan. An HTTP object
    /// fetches them ahead, several ranges per request; a local file ignores it (the
    /// default). A plan is advice: reads outside it, or in another order, still work.
    fn plan(&self, _ranges: Vec<(u64, u64)>) {}
}

impl RangeRead for File {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, at)
    }

    /// Seeking to the end sizes block devices too (a CD-ROM, a USB stick), where stat says 0;
    /// a file that cannot be sized reads as empty, so every read of it fails its bounds check.
    fn len(&self) -> u64 {
        std::io::Seek::seek(&mut &*self, std::io::SeekFrom::End(0)).unwrap_or(0)
    }

    /// An open file knows no path: its descriptor, as `/proc/self/fd` names it.
    fn describe(&self) -> String {
        use std::os::fd::AsRawFd;
        let fd = self.as_raw_fd();
        std::fs::read_link(format!("/proc/self/fd/{fd}")).map_or_else(
            |_| format!("file descriptor {fd}"),
            |p| p.display().to_string(),
        )
    }
}

/// Reads as much of `buf` as `src` has at `at` (the object's end cuts it short).
pub fn read_up_to(src: &dyn RangeRead, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let n = src.len().saturating_sub(at).min(buf.len() as u64) as usize;
    src.read_exact_at(&mut buf[..n], at)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_reads_at_offsets_and_refuses_its_end() {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(b"0123456789").expect("write");
        let src: &dyn RangeRead = &f;
        assert_eq!(src.len(), 10);
        let mut b = [0u8; 3];
        src.read_exact_at(&mut b, 4).expect("inside");
        assert_eq!(&b, b"456");
        assert!(src.read_exact_at(&mut b, 8).is_err(), "past the end");
        let mut big = [0u8; 8];
        assert_eq!(read_up_to(src, &mut big, 6).expect("up to"), 4);
        assert_eq!(&big[..4], b"6789");
        assert_eq!(read_up_to(src, &mut big, 20).expect("beyond"), 0);
        assert!(!src.forget(0, 10), "a file has nothing fresher to offer");
    }
}
