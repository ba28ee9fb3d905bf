//! Appending an image's bytes to its file with the disk kept busy: every `WRITEBACK_STEP`
//! bytes, writeback of what was written is started (sync_file_range(2)
//! SYNC_FILE_RANGE_WRITE) without waiting for it, so the disk works while the payload is still
//! being compressed or copied, and the one fsync at the end has little left to do. The image
//! is still synced once, at the end, before it is renamed into place.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::format::PayloadError;
use crate::format::sink::BlockSource;

/// Start writeback every this many bytes.
const WRITEBACK_STEP: u64 = 64 << 20;

/// A buffered writer at a known position of an image file.
pub struct WriteBehind {
    out: BufWriter<File>,
    path: PathBuf,
    pos: u64,
    /// Bytes before this offset have had their writeback started.
    writeback_from: u64,
}

impl WriteBehind {
    /// Writes into `file` (named `path` in messages) from byte `at` on.
    pub fn new(mut file: File, path: &Path, at: u64) -> Result<Self, PayloadError> {
        file.seek(SeekFrom::Start(at))
            .map_err(|e| PayloadError::io("cannot write", path, e))?;
        Ok(WriteBehind {
            out: BufWriter::with_capacity(4 << 20, file),
            path: path.to_path_buf(),
            pos: at,
            writeback_from: at,
        })
    }

    /// The offset the next byte goes to.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    fn err(&self, e: std::io::Error) -> PayloadError {
        PayloadError::io("cannot write", &self.path, e)
    }

    /// Appends `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        self.out.write_all(bytes).map_err(|e| self.err(e))?;
        self.advance(bytes.len() as u64)
    }

    /// Appends the `len` bytes `src` holds, copied by the kernel (`kernel_copy`), in pieces of
    /// at most `WRITEBACK_STEP` bytes (writeback starts between them) that end on 4 KiB
    /// boundaries of the source, so every piece after the first starts aligned in both files
    /// when the first did and its extents can be shared (docs/REFRESH.md, "Shared extents").
    pub fn write_copy(&mut self, len: u64, src: &BlockSource) -> Result<(), PayloadError> {
        self.out.flush().map_err(|e| self.err(e))?;
        let mut done = 0;
        while done < len {
            let mut n = (len - done).min(WRITEBACK_STEP);
            let end = src.offset + done + n;
            if done + n < len && end % 4096 < n {
                n -= end % 4096;
            }
            super::kernel_copy::append_copy(self.out.get_ref(), &src.file, src.offset + done, n)
                .map_err(|e| match super::kernel_copy::is_read_error(&e) {
                    true => PayloadError::io("cannot read the blocks to copy from", &src.path, e),
                    false => self.err(e),
                })?;
            self.advance(n)?;
            done += n;
        }
        Ok(())
    }

    /// Overwrites `bytes` at `offset`, before the position (a header whose content is known
    /// only once what follows it is written).
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), PayloadError> {
        if offset + bytes.len() as u64 > self.pos {
            return Err(PayloadError::format("internal: a write back past the end"));
        }
        self.out.flush().map_err(|e| self.err(e))?;
        std::os::unix::fs::FileExt::write_all_at(self.out.get_ref(), bytes, offset)
            .map_err(|e| self.err(e))
    }

    /// Zeros up to the next multiple of `align` bytes.
    pub fn pad_to_multiple(&mut self, align: u64) -> Result<(), PayloadError> {
        let zeros = vec![0u8; (self.pos.next_multiple_of(align) - self.pos) as usize];
        self.write_all(&zeros)
    }

    fn advance(&mut self, n: u64) -> Result<(), PayloadError> {
        self.pos += n;
        if self.pos - self.writeback_from >= WRITEBACK_STEP {
            self.start_writeback()?;
        }
        Ok(())
    }

    /// Hands what was written so far to the kernel's writeback without waiting for it.
    fn start_writeback(&mut self) -> Result<(), PayloadError> {
        self.out.flush().map_err(|e| self.err(e))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.out.get_ref());
        let (from, len) = (self.writeback_from, self.pos - self.writeback_from);
        // SAFETY: a plain syscall on a descriptor we own; failure only loses the head start.
        unsafe {
            libc::sync_file_range(fd, from as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
        self.writeback_from = self.pos;
        Ok(())
    }

    /// Everything written, flushed; the file back.
    pub fn into_file(self) -> Result<File, PayloadError> {
        let path = self.path;
        self.out
            .into_inner()
            .map_err(|e| PayloadError::io("cannot write", &path, e.into_error()))
    }
}
