//! `.oimg` output: the packs, then the manifest and the trailer, in one file
//! (`image::oimg`, docs/FORMAT.md).

use std::fs::File;
use std::path::Path;

use super::CaptureError;
use super::container::ContainerWriter;
use super::iso_output::BootFiles;
use crate::envelope::ImageKey;
use crate::format::PayloadError;
use crate::format::manifest::Manifest;
use crate::format::sink::PackSink;
use crate::image::oimg::OimgWriter;

/// A `.oimg` being written.
pub(super) struct OimgOutput {
    writer: OimgWriter,
}

impl OimgOutput {
    /// Starts the image in `file` (named `path` in messages): its header, and an encrypted
    /// image's key record.
    pub fn new(
        file: File,
        path: &Path,
        image_id: [u8; 16],
        seal: Option<(&ImageKey, &[u8])>,
    ) -> Result<Self, PayloadError> {
        Ok(OimgOutput {
            writer: OimgWriter::new(file, path, image_id, seal)?,
        })
    }
}

impl ContainerWriter for OimgOutput {
    fn sink(&mut self) -> &mut dyn PackSink {
        &mut self.writer
    }

    /// Appends the manifest and the trailer; a `.oimg` has no boot side.
    fn finish(self: Box<Self>, m: &Manifest, _: Option<&BootFiles>) -> Result<(), CaptureError> {
        self.writer.finish(m)?;
        Ok(())
    }
}
