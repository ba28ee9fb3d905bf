//! Where packs go (docs/FORMAT.md §3): the interface between the capture pipeline, which
//! produces packs, and the container writer, which puts them in an `.oimg` file, an ISO or an
//! encrypted envelope.

use std::fs::File;
use std::sync::Arc;

use super::PayloadError;
use super::manifest::{BlockRecord, ChunkHash, ChunkRecord, PackRecord};

/// Where packs go: the container writes them (see `image::oimg`).
pub trait PackSink: Send {
    /// Appends bytes to the pack being written.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError>;
    /// Pack `index` starts (called before its first bytes).
    fn begin_pack(&mut self, index: u32) -> Result<(), PayloadError>;
    /// The current pack is complete; `rec` is its length and hash as written (before any
    /// sealing), so a sink that stores packs by name (an image store: docs/STORE.md §2.3) can
    /// name it after `rec.hash`.
    fn end_pack(&mut self, rec: &PackRecord) -> Result<(), PayloadError>;
    /// Block `rec` was placed in the current pack (told after `begin_pack`, before that
    /// pack's `end_pack`), holding the new chunks `chunks` (this image's records with their
    /// whole hashes; none for blocks carried over from a base). A sink that indexes its packs
    /// as they go up (an image store's index objects, which list 32-byte ids: docs/STORE.md
    /// §2.4, §4.3) keeps them; others need not.
    fn block_placed(
        &mut self,
        _rec: &BlockRecord,
        _chunks: &[NewChunk],
    ) -> Result<(), PayloadError> {
        Ok(())
    }
    /// Appends the `len` bytes of `src.file` at `src.offset` (blocks a refresh carries over
    /// from its base). A sink writing to a file has the kernel copy them
    /// (`image::kernel_copy`); this default reads and writes them (an encrypted image's sink
    /// seals them on the way).
    fn write_copy(&mut self, len: u64, src: &BlockSource) -> Result<(), PayloadError> {
        let mut buf = vec![0u8; len.min(4 << 20) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            std::os::unix::fs::FileExt::read_exact_at(&*src.file, &mut buf[..n], src.offset + done)
                .map_err(|e| {
                    PayloadError::io("cannot read the blocks to copy from", &src.path, e)
                })?;
            self.write_all(&buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

/// A chunk this capture read and compressed: its record in the image, whose id is 16 bytes
/// (FORMAT.md §1), and the whole BLAKE3 it was cut from, which a store's index keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewChunk {
    pub record: ChunkRecord,
    pub hash: ChunkHash,
}

/// Where bytes of a base image lie in its file (a plain base only: an encrypted one's bytes
/// on disk are sealed and cannot be copied as they are).
#[derive(Clone, Debug)]
pub struct BlockSource {
    pub file: Arc<File>,
    /// Offset in `file` of the first byte.
    pub offset: u64,
    /// The base image's path, for messages.
    pub path: Arc<std::path::Path>,
}
