//! The single-file container `.oimg`: header, packs back to back, manifest frame, trailer
//! (docs/FORMAT.md §6.1).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Container, ContainerKind, Span};
use crate::envelope::{ImageKey, Unlock};
use crate::payload::PayloadError;
use crate::payload::frame::{decode_frame_header, encode_manifest};
use crate::payload::manifest::Manifest;
use crate::payload::packer::BlockSource;
use crate::payload::records::{ImageHeader, RECORD_LEN, Trailer};
use crate::payload::writer::PackSink;

/// Opens a `.oimg` whose first 64 bytes are `head`.
pub(super) fn open(
    path: &Path,
    file: Arc<File>,
    len: u64,
    head: &[u8; RECORD_LEN],
    unlock: &Unlock,
) -> Result<Container, PayloadError> {
    let header = ImageHeader::decode(head)?;
    if len < 2 * RECORD_LEN as u64 {
        return Err(PayloadError::format(
            "truncated: too short to hold a trailer",
        ));
    }
    let mut t = [0u8; RECORD_LEN];
    file.read_exact_at(&mut t, len - RECORD_LEN as u64)
        .map_err(|e| PayloadError::io("cannot read", path, e))?;
    let trailer = Trailer::decode(&t)?;
    let end = trailer
        .manifest_offset
        .checked_add(trailer.manifest_len)
        .and_then(|e| e.checked_add(RECORD_LEN as u64));
    if end != Some(len) || trailer.manifest_offset < RECORD_LEN as u64 {
        return Err(PayloadError::format(
            "truncated or damaged: the trailer does not match the file's length",
        ));
    }
    if trailer.image_id != header.image_id {
        return Err(PayloadError::format(
            "header and trailer belong to different images",
        ));
    }
    let mut fh = [0u8; RECORD_LEN];
    file.read_exact_at(&mut fh, trailer.manifest_offset)
        .map_err(|e| PayloadError::io("cannot read", path, e))?;
    let frame = decode_frame_header(&fh)?;
    if frame.stored_len + RECORD_LEN as u64 != trailer.manifest_len {
        return Err(PayloadError::format(
            "manifest length disagrees with the trailer",
        ));
    }
    if frame.sealed != header.encrypted {
        return Err(PayloadError::format(
            "header and manifest disagree about encryption (damaged or altered)",
        ));
    }
    // FORMAT.md §11.5: an encrypted image has its key record right after the header.
    let (key, packs_start) = if header.encrypted {
        let (key, len) = super::read_key(path, unlock, &|buf, at| {
            let at = RECORD_LEN as u64 + at;
            if at + buf.len() as u64 > trailer.manifest_offset {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "key record runs past the packs",
                ));
            }
            file.read_exact_at(buf, at)
        })?;
        if key.data_key().0 != &header.image_id {
            return Err(PayloadError::format("key record belongs to another image"));
        }
        (Some(key), RECORD_LEN as u64 + len)
    } else {
        (None, RECORD_LEN as u64)
    };
    Ok(Container {
        path: path.to_path_buf(),
        kind: ContainerKind::Oimg,
        manifest: Span::plain(file, trailer.manifest_offset, trailer.manifest_len),
        packs_start,
        iso_packs: Vec::new(),
        image_id: Some(header.image_id),
        key,
    })
}

/// Writes a `.oimg`: packs stream in through `PackSink`, `finish` adds manifest and trailer.
pub struct OimgWriter {
    out: BufWriter<File>,
    path: PathBuf,
    pos: u64,
    image_id: [u8; 16],
    /// Bytes before this offset have had their writeback started.
    writeback_from: u64,
    /// Encrypted image: its key, to seal the manifest.
    key: Option<ImageKey>,
}

/// Start writeback every this many bytes, so the one fsync at the end has little left to do
/// (the image is still synced once, at the end, before it is renamed into place).
const WRITEBACK_STEP: u64 = 64 << 20;

impl OimgWriter {
    /// Starts an image in `file` (already created, empty) named `path` for messages. With
    /// `seal` (the image's key and its key record) the image is encrypted: the record follows
    /// the header, and the packs must come through a `SealedSink`.
    pub fn new(
        file: File,
        path: &Path,
        image_id: [u8; 16],
        seal: Option<(&ImageKey, &[u8])>,
    ) -> Result<Self, PayloadError> {
        let mut w = OimgWriter {
            out: BufWriter::with_capacity(4 << 20, file),
            path: path.to_path_buf(),
            pos: 0,
            image_id,
            writeback_from: 0,
            key: seal.map(|(k, _)| k.clone()),
        };
        let header = ImageHeader {
            image_id,
            encrypted: seal.is_some(),
        };
        w.write_all(&header.encode())?;
        if let Some((_, record)) = seal {
            w.write_all(record)?;
        }
        Ok(w)
    }

    /// Appends the manifest and the trailer and syncs the file to disk.
    pub fn finish(mut self, m: &Manifest) -> Result<File, PayloadError> {
        let mut frame = encode_manifest(m)?;
        if let Some(k) = &self.key {
            frame = k.seal_manifest(&frame);
        }
        let trailer = Trailer {
            manifest_offset: self.pos,
            manifest_len: frame.len() as u64,
            image_id: self.image_id,
        };
        self.write_all(&frame)?;
        self.write_all(&trailer.encode())?;
        let path = self.path.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| PayloadError::io("cannot write", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| PayloadError::io("cannot sync", &path, e))?;
        Ok(file)
    }
}

impl OimgWriter {
    /// Hands what was written so far to the kernel's writeback without waiting for it
    /// (sync_file_range(2) SYNC_FILE_RANGE_WRITE): the disk works while we compress.
    fn start_writeback(&mut self) -> Result<(), PayloadError> {
        self.out
            .flush()
            .map_err(|e| PayloadError::io("cannot write", &self.path, e))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.out.get_ref());
        let (from, len) = (self.writeback_from, self.pos - self.writeback_from);
        // SAFETY: a plain syscall on a descriptor we own; failure only loses the head start.
        unsafe {
            libc::sync_file_range(fd, from as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
        self.writeback_from = self.pos;
        Ok(())
    }
}

impl PackSink for OimgWriter {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        self.out
            .write_all(bytes)
            .map_err(|e| PayloadError::io("cannot write", &self.path, e))?;
        self.pos += bytes.len() as u64;
        if self.pos - self.writeback_from >= WRITEBACK_STEP {
            self.start_writeback()?;
        }
        Ok(())
    }
    fn begin_pack(&mut self, _index: u32) -> Result<(), PayloadError> {
        Ok(())
    }
    fn end_pack(&mut self) -> Result<(), PayloadError> {
        Ok(())
    }
    fn write_copy(&mut self, bytes: &[u8], src: &BlockSource) -> Result<(), PayloadError> {
        let io = |e| PayloadError::io("cannot write", &self.path, e);
        self.out.flush().map_err(io)?;
        super::kernel_copy::append_copy(self.out.get_ref(), &src.file, src.offset, bytes)
            .map_err(io)?;
        self.pos += bytes.len() as u64;
        if self.pos - self.writeback_from >= WRITEBACK_STEP {
            self.start_writeback()?;
        }
        Ok(())
    }
}
