//! Reading a plain `.oimg` file's own structures in tests (FORMAT.md §6.1): its manifest, and
//! where a block lies in the file (for faults aimed at one block's bytes).

use osimage::format::frame::decode_manifest;
use osimage::format::manifest::Manifest;
use osimage::format::records::{RECORD_LEN, Trailer};

/// The manifest of the `.oimg` whose bytes are `bytes` (its trailer names the frame), with
/// the manifest's version.
pub fn manifest_of(bytes: &[u8]) -> (Manifest, u16) {
    let mut t = [0u8; RECORD_LEN];
    t.copy_from_slice(&bytes[bytes.len() - RECORD_LEN..]);
    let t = Trailer::decode(&t).expect("trailer");
    let frame = &bytes[t.manifest_offset as usize..(t.manifest_offset + t.manifest_len) as usize];
    decode_manifest(frame).expect("manifest")
}

/// Where block `b`'s header starts in the file: the packs lie back to back after the image
/// header.
pub fn block_at(m: &Manifest, b: u32) -> u64 {
    let rec = &m.blocks[b as usize];
    let pack_at: u64 = RECORD_LEN as u64
        + m.packs[..rec.pack as usize]
            .iter()
            .map(|p| p.len)
            .sum::<u64>();
    pack_at + rec.offset
}
