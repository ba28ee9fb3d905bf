//! The payload of an ISO being built: its packs go straight into the ISO file, from
//! `iso::PLACED_START` on, each on a 4 KiB boundary; `iso::write_iso` then builds the image
//! around them (`IsoSource::Placed`). Nothing is written twice: no pack file of its own is
//! copied into the ISO afterwards (docs/ISO.md, "Layout"). The manifest and an encrypted
//! image's key record, small, are handed over as bytes.

use std::fs::File;
use std::path::Path;

use super::write_behind::WriteBehind;
use crate::envelope::ImageKey;
use crate::format::PayloadError;
use crate::format::frame::encode_manifest;
use crate::format::manifest::{Manifest, PackRecord};
use crate::format::sink::BlockSource;
use crate::format::sink::PackSink;

/// Packs start on this boundary: a refresh's packs then sit alike within a filesystem block in
/// the base ISO and in the new one, so XFS or btrfs can share their extents
/// (docs/REFRESH.md, "Shared extents").
const PACK_ALIGN: u64 = 4096;

/// What goes into the ISO's `/osimage/` folder besides the packs already in place.
pub struct IsoPayload {
    /// The manifest frame (sealed, for an encrypted image).
    pub manifest: Vec<u8>,
    /// Each pack's offset in the ISO file and length, in pack order.
    pub packs: Vec<(u64, u64)>,
    /// The key record of an encrypted image.
    pub keys: Option<Vec<u8>>,
}

/// Writes packs into the ISO file.
pub struct IsoPackWriter {
    w: WriteBehind,
    packs: Vec<(u64, u64)>,
    /// Where the pack being written began.
    current: Option<u64>,
    /// Encrypted image: its key (to seal the manifest) and key record.
    seal: Option<(ImageKey, Vec<u8>)>,
}

impl IsoPackWriter {
    /// Starts writing packs into `file` (the ISO to be, named `path` in messages); with `seal`
    /// the image is encrypted and the packs must come through a `SealedSink`.
    pub fn new(
        file: File,
        path: &Path,
        seal: Option<(&ImageKey, &[u8])>,
    ) -> Result<Self, PayloadError> {
        Ok(IsoPackWriter {
            w: WriteBehind::new(file, path, crate::iso::PLACED_START)?,
            packs: Vec::new(),
            current: None,
            seal: seal.map(|(k, r)| (k.clone(), r.to_vec())),
        })
    }

    /// The packs are complete: flushes them and encodes the manifest.
    pub fn finish(self, m: &Manifest) -> Result<IsoPayload, PayloadError> {
        let mut manifest = encode_manifest(m)?;
        if let Some((k, _)) = &self.seal {
            manifest = k.seal_manifest(&manifest);
        }
        self.finish_frame(manifest)
    }

    /// `finish` with the manifest frame given as it is to be stored (sealed already for an
    /// encrypted image): an export copies a store version's frame byte for byte.
    pub fn finish_frame(self, manifest: Vec<u8>) -> Result<IsoPayload, PayloadError> {
        if self.current.is_some() {
            return Err(PayloadError::format("internal: a pack was left unfinished"));
        }
        self.w.into_file()?;
        Ok(IsoPayload {
            manifest,
            packs: self.packs,
            keys: self.seal.map(|(_, record)| record),
        })
    }

    fn in_pack(&self) -> Result<(), PayloadError> {
        match self.current {
            Some(_) => Ok(()),
            None => Err(PayloadError::format(
                "internal: pack bytes before a pack began",
            )),
        }
    }
}

impl PackSink for IsoPackWriter {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        self.in_pack()?;
        self.w.write_all(bytes)
    }

    fn begin_pack(&mut self, index: u32) -> Result<(), PayloadError> {
        if self.current.is_some() || index as usize != self.packs.len() {
            return Err(PayloadError::format(format!(
                "internal: pack {index} begun out of order"
            )));
        }
        self.w.pad_to_multiple(PACK_ALIGN)?;
        self.current = Some(self.w.pos());
        Ok(())
    }

    fn end_pack(&mut self, _rec: &PackRecord) -> Result<(), PayloadError> {
        if let Some(start) = self.current.take() {
            self.packs.push((start, self.w.pos() - start));
        }
        Ok(())
    }

    fn write_copy(&mut self, len: u64, src: &BlockSource) -> Result<(), PayloadError> {
        self.in_pack()?;
        self.w.write_copy(len, src)
    }
}
