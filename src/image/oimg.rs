//! The single-file container `.oimg`: header, packs back to back, manifest frame, trailer
//! (docs/FORMAT.md §6.1).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::write_behind::WriteBehind;
use super::{Backing, Container, ContainerKind};
use crate::envelope::{ImageKey, Unlock};
use crate::format::PayloadError;
use crate::format::frame::{decode_frame_header, encode_manifest, write_manifest};
use crate::format::manifest::{Manifest, PackRecord};
use crate::format::records::{ImageHeader, RECORD_LEN, Trailer};
use crate::format::sink::BlockSource;
use crate::format::sink::PackSink;

/// Opens a `.oimg` whose first 64 bytes are `head`.
pub(super) fn open(
    path: &Path,
    b: Backing,
    len: u64,
    head: &[u8; RECORD_LEN],
    unlock: &Unlock,
) -> Result<Container, PayloadError> {
    let header = ImageHeader::decode(head)?;
    let file = &**b.source();
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
        manifest: b.span(trailer.manifest_offset, trailer.manifest_len),
        packs_start,
        iso_packs: Vec::new(),
        image_id: Some(header.image_id),
        key,
        frame_hash: None,
        open_pack: None,
        manifest_cipher: None,
    })
}

/// Writes a `.oimg`: packs stream in through `PackSink`, `finish` adds manifest and trailer.
pub struct OimgWriter {
    w: WriteBehind,
    path: PathBuf,
    image_id: [u8; 16],
    /// Encrypted image: its key, to seal the manifest.
    key: Option<ImageKey>,
}

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
            w: WriteBehind::new(file, path, 0)?,
            path: path.to_path_buf(),
            image_id,
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

    /// Appends the manifest and the trailer and syncs the file to disk. A plain image's frame
    /// is compressed straight into the file, its header written in front once its body is
    /// (issue #23: the frame is not held whole); an encrypted image's is sealed whole.
    pub fn finish(mut self, m: &Manifest) -> Result<File, PayloadError> {
        if let Some(k) = &self.key {
            let frame = k.seal_manifest(&encode_manifest(m)?);
            return self.finish_frame(&frame);
        }
        let at = self.w.pos();
        self.write_all(&[0u8; RECORD_LEN])?;
        let header = write_manifest(m, &mut Appending(&mut self.w))?;
        self.w.write_at(at, &header.encode())?;
        self.finish_trailer(at)
    }

    /// `finish` with the manifest frame given as it is to be stored (sealed already for an
    /// encrypted image): an export copies a store version's frame byte for byte.
    pub fn finish_frame(mut self, frame: &[u8]) -> Result<File, PayloadError> {
        let at = self.w.pos();
        self.write_all(frame)?;
        self.finish_trailer(at)
    }

    /// Appends the trailer of the frame written from offset `at` to here, and syncs the file.
    fn finish_trailer(mut self, at: u64) -> Result<File, PayloadError> {
        let trailer = Trailer {
            manifest_offset: at,
            manifest_len: self.w.pos() - at,
            image_id: self.image_id,
        };
        self.write_all(&trailer.encode())?;
        let file = self.w.into_file()?;
        file.sync_all()
            .map_err(|e| PayloadError::io("cannot sync", &self.path, e))?;
        Ok(file)
    }
}

/// The image file as an `io::Write`, for the manifest's compressor.
struct Appending<'a>(&'a mut WriteBehind);

impl std::io::Write for Appending<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PackSink for OimgWriter {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        self.w.write_all(bytes)
    }
    fn begin_pack(&mut self, _index: u32) -> Result<(), PayloadError> {
        Ok(())
    }
    fn end_pack(&mut self, _rec: &PackRecord) -> Result<(), PayloadError> {
        Ok(())
    }
    fn write_copy(&mut self, len: u64, src: &BlockSource) -> Result<(), PayloadError> {
        self.w.write_copy(len, src)
    }
}
