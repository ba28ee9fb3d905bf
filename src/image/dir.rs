//! The payload as a folder: `manifest.osm` and `packs/pack-NNNNNN.osp` (docs/FORMAT.md §6.2).
//! Written by `capture` before they go into an ISO's `/osimage/` folder.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::envelope::ImageKey;
use crate::payload::PayloadError;
use crate::payload::frame::encode_manifest;
use crate::payload::manifest::Manifest;
use crate::payload::packer::BlockSource;
use crate::payload::writer::PackSink;

/// The name of pack `i` inside the payload folder.
pub fn pack_name(i: usize) -> String {
    format!("packs/pack-{i:06}.osp")
}

/// The files of a payload folder.
pub struct PayloadFiles {
    pub manifest: PathBuf,
    pub packs: Vec<PathBuf>,
    /// The key record of an encrypted image.
    pub keys: Option<PathBuf>,
}

/// Writes packs as separate files into a folder.
pub struct DirWriter {
    dir: PathBuf,
    current: Option<(BufWriter<File>, PathBuf)>,
    packs: Vec<PathBuf>,
    /// Encrypted image: its key (to seal the manifest) and key record.
    seal: Option<(ImageKey, Vec<u8>)>,
}

/// The key record's name inside the payload folder (FORMAT.md §11.5).
pub const KEYS_NAME: &str = "keys.osk";

impl DirWriter {
    /// Starts writing into `dir` (created, with its `packs/` subfolder); with `seal` the
    /// image is encrypted and the packs must come through a `SealedSink`.
    pub fn new(dir: &Path, seal: Option<(&ImageKey, &[u8])>) -> Result<Self, PayloadError> {
        let packs = dir.join("packs");
        std::fs::create_dir_all(&packs)
            .map_err(|e| PayloadError::io("cannot create", &packs, e))?;
        Ok(DirWriter {
            dir: dir.to_path_buf(),
            current: None,
            packs: Vec::new(),
            seal: seal.map(|(k, r)| (k.clone(), r.to_vec())),
        })
    }

    /// Writes the manifest (and the key record of an encrypted image); returns the manifest's
    /// path, the packs' paths in order and the key record's path.
    pub fn finish(self, m: &Manifest) -> Result<PayloadFiles, PayloadError> {
        let mut frame = encode_manifest(m)?;
        let mut keys = None;
        if let Some((k, record)) = &self.seal {
            frame = k.seal_manifest(&frame);
            let path = self.dir.join(KEYS_NAME);
            std::fs::write(&path, record)
                .map_err(|e| PayloadError::io("cannot write", &path, e))?;
            keys = Some(path);
        }
        let path = self.dir.join(crate::image::iso::MANIFEST_NAME);
        std::fs::write(&path, frame).map_err(|e| PayloadError::io("cannot write", &path, e))?;
        Ok(PayloadFiles {
            manifest: path,
            packs: self.packs,
            keys,
        })
    }
}

impl PackSink for DirWriter {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        let Some((w, path)) = self.current.as_mut() else {
            return Err(PayloadError::format(
                "internal: pack bytes before a pack began",
            ));
        };
        w.write_all(bytes)
            .map_err(|e| PayloadError::io("cannot write", path, e))
    }

    fn begin_pack(&mut self, index: u32) -> Result<(), PayloadError> {
        let path = self.dir.join(pack_name(index as usize));
        let f = File::create(&path).map_err(|e| PayloadError::io("cannot create", &path, e))?;
        self.packs.push(path.clone());
        self.current = Some((BufWriter::with_capacity(4 << 20, f), path));
        Ok(())
    }

    fn end_pack(&mut self) -> Result<(), PayloadError> {
        if let Some((w, path)) = self.current.take() {
            w.into_inner()
                .map_err(|e| PayloadError::io("cannot write", &path, e.into_error()))?;
        }
        Ok(())
    }

    fn write_copy(&mut self, bytes: &[u8], src: &BlockSource) -> Result<(), PayloadError> {
        let Some((w, path)) = self.current.as_mut() else {
            return Err(PayloadError::format(
                "internal: pack bytes before a pack began",
            ));
        };
        w.flush()
            .map_err(|e| PayloadError::io("cannot write", path, e))?;
        super::kernel_copy::append_copy(w.get_ref(), &src.file, src.offset, bytes)
            .map_err(|e| PayloadError::io("cannot write", path, e))?;
        Ok(())
    }
}
