//! An image inside an ISO made by osimage: `/osimage/manifest.osm` and
//! `/osimage/packs/pack-NNNNNN.osp`, each one extent read in place (docs/FORMAT.md §6.2).

use std::path::Path;

use super::{Backing, Container, ContainerKind};
use crate::envelope::Unlock;
use crate::format::PayloadError;
use crate::format::source::{RangeRead, read_up_to};
use crate::iso::IsoReader;

/// Where the payload lives inside the ISO.
pub const PAYLOAD_DIR: &str = "osimage";
/// The manifest frame's name inside `PAYLOAD_DIR`.
pub const MANIFEST_NAME: &str = "manifest.osm";

/// The key record's name inside `PAYLOAD_DIR` (FORMAT.md §11.5).
pub const KEYS_NAME: &str = "keys.osk";

/// The folder of the packs inside the ISO.
pub const PACKS_DIR: &str = "osimage/packs";

/// The ISO path of pack `i`.
pub fn pack_path(i: usize) -> String {
    format!("{PACKS_DIR}/{}", pack_name(i))
}

/// The name of pack `i` inside `PACKS_DIR`.
fn pack_name(i: usize) -> String {
    format!("pack-{i:06}.osp")
}

/// Whether `src` looks like ISO 9660 (the first volume descriptor's `CD001` at 32 KiB).
pub fn is_iso(src: &dyn RangeRead) -> bool {
    let mut magic = [0u8; 6];
    matches!(read_up_to(src, &mut magic, 16 * 2048), Ok(6)) && &magic[1..6] == b"CD001"
}

/// Opens the payload inside the ISO at `path`.
pub(super) fn open(path: &Path, b: Backing, unlock: &Unlock) -> Result<Container, PayloadError> {
    let not_ours = |msg: String| PayloadError::Image {
        path: path.to_path_buf(),
        msg,
    };
    // The same open object: what was opened (and perhaps checked against a signature) is
    // what is read, even if `path` is replaced meanwhile.
    let iso = IsoReader::from_source(path, b.source().clone())
        .map_err(|e| not_ours(format!("unreadable ISO: {e}")))?;
    let manifest_path = format!("{PAYLOAD_DIR}/{MANIFEST_NAME}");
    let manifest = iso
        .lookup(&manifest_path)
        .map_err(|e| not_ours(format!("unreadable ISO: {e}")))?
        .ok_or_else(|| {
            not_ours(format!(
                "an ISO, but not one made by osimage (no /{manifest_path})"
            ))
        })?;
    // The packs' folder is read once and each pack found in it by name (issue #20: resolving
    // every pack from the root made an ISO of many packs quadratic).
    let unreadable = |e| not_ours(format!("unreadable ISO: {e}"));
    let mut packs = Vec::new();
    if let Some(dir) = iso.open_dir(PACKS_DIR).map_err(unreadable)? {
        while let Some(ext) = iso
            .lookup_in(&dir, &pack_name(packs.len()))
            .map_err(unreadable)?
        {
            packs.push(b.span(ext.offset, ext.len));
        }
    }
    // FORMAT.md §11.5: an encrypted image has its key record beside the manifest.
    let keys_path = format!("{PAYLOAD_DIR}/{}", KEYS_NAME);
    let key = match iso
        .lookup(&keys_path)
        .map_err(|e| not_ours(format!("unreadable ISO: {e}")))?
    {
        Some(ext) => {
            let span = b.span(ext.offset, ext.len);
            let (key, len) = super::read_key(path, unlock, &|buf, at| span.read_exact_at(buf, at))?;
            if len != ext.len {
                return Err(not_ours(format!(
                    "/{keys_path} has {} bytes, its header says {len} (damaged)",
                    ext.len
                )));
            }
            Some(key)
        }
        None => None,
    };
    Ok(Container {
        path: path.to_path_buf(),
        kind: ContainerKind::Iso,
        manifest: b.span(manifest.offset, manifest.len),
        packs_start: 0,
        iso_packs: packs,
        image_id: key.as_ref().map(|k| *k.data_key().0),
        key,
        frame_hash: None,
        open_pack: None,
        manifest_cipher: None,
    })
}
