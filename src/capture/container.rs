//! The container a capture writes: a `.oimg` file (`oimg_output`) or a bootable ISO
//! (`iso_output`). Either takes the packs through a `PackSink` while the payload is written, then
//! the manifest, and for an ISO the boot files around it, once they are known.

use super::CaptureError;
use super::iso_output::{BootFiles, IsoOutput};
use super::oimg_output::OimgOutput;
use super::staging::Staging;
use crate::envelope::ImageKey;
use crate::format::manifest::Manifest;
use crate::format::sink::PackSink;

/// One output format, written under the capture's temporary name.
pub(super) trait ContainerWriter {
    /// Where the payload writer puts the packs.
    fn sink(&mut self) -> &mut dyn PackSink;
    /// Writes the manifest and whatever surrounds the payload; `boot` is the rescue side,
    /// built beside the payload (ISO output only).
    fn finish(
        self: Box<Self>,
        manifest: &Manifest,
        boot: Option<&BootFiles>,
    ) -> Result<(), CaptureError>;
}

/// The writer for `staging`'s output: an ISO when it has a work folder for the boot side, a
/// `.oimg` otherwise. With `seal` (the image's key and key record) the image is encrypted.
pub(super) fn open(
    staging: &Staging,
    image_id: [u8; 16],
    seal: Option<(&ImageKey, &[u8])>,
) -> Result<Box<dyn ContainerWriter>, CaptureError> {
    let file = staging.reopen()?;
    let path = staging.tmp.path();
    Ok(match staging.work {
        None => Box::new(OimgOutput::new(file, path, image_id, seal)?),
        Some(_) => Box::new(IsoOutput::new(file, path, &staging.root, image_id, seal)?),
    })
}
