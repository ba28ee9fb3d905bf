//! The fixed-size on-disk records of the payload format (docs/FORMAT.md §2, §3, §4, §6.1).
//!
//! One struct per record, one `encode`/`decode` each; `decode` checks magic, version and
//! reserved bytes and never trusts a length it has not bounded.

use super::PayloadError;
use super::manifest::{Codec, FORMAT_VERSION, MANIFEST_VERSION};

/// Size of the `.oimg` image header and trailer, the pack header and the manifest frame header.
pub const RECORD_LEN: usize = 64;
/// Size of a block header.
pub const BLOCK_HEADER_LEN: usize = 16;
/// Largest pack (FORMAT.md §3).
pub const MAX_PACK_LEN: u64 = 1 << 30;
/// Largest uncompressed block body (FORMAT.md §2).
pub const MAX_BLOCK_RAW: u32 = 2 << 20;
/// Largest stored manifest body (FORMAT.md §4).
pub const MAX_MANIFEST_STORED: u64 = 1 << 30;
/// Largest decoded manifest (FORMAT.md §4).
pub const MAX_MANIFEST_RAW: u64 = 4 << 30;

const IMAGE_MAGIC: &[u8; 8] = b"OSIMAGE\0";
const TRAILER_MAGIC: &[u8; 8] = b"OSIMTRLR";
const PACK_MAGIC: &[u8; 8] = b"OSIMPACK";
const MANIFEST_MAGIC: &[u8; 8] = b"OSIMMANI";
const BLOCK_MAGIC: &[u8; 4] = b"OBLK";

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn array_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// FORMAT.md: reserved bytes are zero; anything else is damage (or a format we do not know).
fn check_reserved(b: &[u8], range: std::ops::Range<usize>, what: &str) -> Result<(), PayloadError> {
    if b[range].iter().any(|x| *x != 0) {
        return Err(PayloadError::format(format!(
            "{what} has non-zero reserved bytes (damaged)"
        )));
    }
    Ok(())
}

fn check_version(version: u16, what: &str) -> Result<(), PayloadError> {
    check_version_up_to(version, FORMAT_VERSION, what)
}

/// FORMAT.md §8: versions are checked per record; a manifest frame reads up to
/// `MANIFEST_VERSION`, the other records up to `FORMAT_VERSION`.
fn check_version_up_to(version: u16, max: u16, what: &str) -> Result<(), PayloadError> {
    if version == 0 || version > max {
        return Err(PayloadError::format(format!(
            "{what} has format version {version}, this osimage reads up to {max} \
             (made by a newer osimage?)"
        )));
    }
    Ok(())
}

/// Whether `bytes` start like a `.oimg` file.
pub fn is_image_header(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..8] == IMAGE_MAGIC
}

/// The first 64 bytes of a `.oimg` file (FORMAT.md §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub image_id: [u8; 16],
    /// Flags bit 0: the packs and manifest are encrypted, a key record follows (§11).
    pub encrypted: bool,
}

/// Image header and manifest frame flag bit 0: the encryption envelope (FORMAT.md §11).
pub const FLAG_ENCRYPTED: u16 = 1;

impl ImageHeader {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..8].copy_from_slice(IMAGE_MAGIC); // 0: magic
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes()); // 8: version
        let flags = if self.encrypted { FLAG_ENCRYPTED } else { 0 };
        b[10..12].copy_from_slice(&flags.to_le_bytes()); // 10: flags; 12: reserved
        b[16..32].copy_from_slice(&self.image_id); // 16: image id
        b
    }

    pub fn decode(b: &[u8; RECORD_LEN]) -> Result<Self, PayloadError> {
        if &b[0..8] != IMAGE_MAGIC {
            return Err(PayloadError::format("not an osimage image (bad magic)"));
        }
        check_version(u16_at(b, 8), "the image")?;
        let flags = u16_at(b, 10);
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(PayloadError::format("image header has unknown flags"));
        }
        check_reserved(b, 12..16, "the image header")?;
        check_reserved(b, 32..64, "the image header")?;
        Ok(ImageHeader {
            image_id: array_at(b, 16),
            encrypted: flags & FLAG_ENCRYPTED != 0,
        })
    }
}

/// The last 64 bytes of a `.oimg` file: where the manifest is (FORMAT.md §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub manifest_offset: u64,
    pub manifest_len: u64,
    pub image_id: [u8; 16],
}

impl Trailer {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..8].copy_from_slice(TRAILER_MAGIC); // 0: magic
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes()); // 8: version
        b[16..24].copy_from_slice(&self.manifest_offset.to_le_bytes()); // 16: manifest offset
        b[24..32].copy_from_slice(&self.manifest_len.to_le_bytes()); // 24: frame length
        b[32..48].copy_from_slice(&self.image_id); // 32: image id
        let sum = blake3::hash(&b[0..48]);
        b[48..64].copy_from_slice(&sum.as_bytes()[..16]); // 48: checksum
        b
    }

    pub fn decode(b: &[u8; RECORD_LEN]) -> Result<Self, PayloadError> {
        if &b[0..8] != TRAILER_MAGIC {
            return Err(PayloadError::format(
                "no image trailer at the end of the file (truncated or not finished)",
            ));
        }
        if blake3::hash(&b[0..48]).as_bytes()[..16] != b[48..64] {
            return Err(PayloadError::format("image trailer checksum mismatch"));
        }
        check_version(u16_at(b, 8), "the image trailer")?;
        check_reserved(b, 10..16, "the image trailer")?;
        Ok(Trailer {
            manifest_offset: u64_at(b, 16),
            manifest_len: u64_at(b, 24),
            image_id: array_at(b, 32),
        })
    }
}

/// Pack header version of a store pack (FORMAT.md §3, §8): only pack headers have it.
pub const STORE_PACK_VERSION: u16 = 3;
/// Pack header flag bit 0 (version 3): the pack belongs to a store.
pub const PACK_FLAG_STORE: u16 = 1;
/// The pack index field of a store pack, which has no position of its own.
pub const STORE_PACK_INDEX: u32 = 0xFFFF_FFFF;

/// The header that starts every pack (FORMAT.md §3): an image's pack at its position, or a
/// store's pack that several images may share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackHeader {
    /// Version 2 (1 in images of version 1): pack `index` of the image `image_id`.
    Image { index: u32, image_id: [u8; 16] },
    /// Version 3, store flag set: a pack of the store `store_id`; `salt` is random, so
    /// that no two packs share a hash (docs/STORE.md §2.3).
    Store { store_id: [u8; 16], salt: [u8; 16] },
}

impl PackHeader {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..8].copy_from_slice(PACK_MAGIC); // 0: magic
        match self {
            PackHeader::Image { index, image_id } => {
                b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes()); // 8: version
                // 10: reserved
                b[12..16].copy_from_slice(&index.to_le_bytes()); // 12: pack index
                b[16..32].copy_from_slice(image_id); // 16: image id; 32: reserved
            }
            PackHeader::Store { store_id, salt } => {
                b[8..10].copy_from_slice(&STORE_PACK_VERSION.to_le_bytes()); // 8: version
                b[10..12].copy_from_slice(&PACK_FLAG_STORE.to_le_bytes()); // 10: flags
                b[12..16].copy_from_slice(&STORE_PACK_INDEX.to_le_bytes()); // 12: no index
                b[16..32].copy_from_slice(store_id); // 16: store id
                b[32..48].copy_from_slice(salt); // 32: salt; 48: reserved
            }
        }
        b
    }

    pub fn decode(b: &[u8; RECORD_LEN]) -> Result<Self, PayloadError> {
        if &b[0..8] != PACK_MAGIC {
            return Err(PayloadError::format("pack header has a bad magic"));
        }
        let version = u16_at(b, 8);
        let flags = u16_at(b, 10);
        match version {
            STORE_PACK_VERSION => return Self::decode_store(b, flags),
            1..=FORMAT_VERSION => {}
            _ => {
                return Err(PayloadError::format(format!(
                    "a pack has format version {version}, this osimage reads pack versions up \
                     to {STORE_PACK_VERSION} (made by a newer osimage?)"
                )));
            }
        }
        if flags != 0 {
            return Err(PayloadError::format(format!(
                "a pack header of version {version} has flags {flags:#06x}, which only \
                 version 3 has (damaged)"
            )));
        }
        check_reserved(b, 32..64, "a pack header")?;
        Ok(PackHeader::Image {
            index: u32_at(b, 12),
            image_id: array_at(b, 16),
        })
    }

    /// The rest of a version-3 header: the store flag and nothing else, no index.
    fn decode_store(b: &[u8; RECORD_LEN], flags: u16) -> Result<Self, PayloadError> {
        if flags & !PACK_FLAG_STORE != 0 {
            return Err(PayloadError::format(format!(
                "a pack header has unknown flags {flags:#06x} (made by a newer osimage?)"
            )));
        }
        if flags & PACK_FLAG_STORE == 0 {
            return Err(PayloadError::format(
                "a pack header of version 3 lacks the store-pack flag (damaged)",
            ));
        }
        let index = u32_at(b, 12);
        if index != STORE_PACK_INDEX {
            return Err(PayloadError::format(format!(
                "a store pack header has pack index {index}, not 0xFFFF_FFFF (damaged)"
            )));
        }
        check_reserved(b, 48..64, "a store pack header")?;
        Ok(PackHeader::Store {
            store_id: array_at(b, 16),
            salt: array_at(b, 32),
        })
    }
}

/// The header before each block's body (FORMAT.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub codec: Codec,
    pub raw_len: u32,
    pub stored_len: u32,
}

impl BlockHeader {
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[0..4].copy_from_slice(BLOCK_MAGIC); // 0: magic
        b[4] = match self.codec {
            Codec::Raw => 0,
            Codec::Zstd => 1,
        }; // 4: codec
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes()); // 8: raw length
        b[12..16].copy_from_slice(&self.stored_len.to_le_bytes()); // 12: stored length
        b
    }

    pub fn decode(b: &[u8; BLOCK_HEADER_LEN]) -> Result<Self, PayloadError> {
        if &b[0..4] != BLOCK_MAGIC {
            return Err(PayloadError::format("block header has a bad magic"));
        }
        let codec = match b[4] {
            0 => Codec::Raw,
            1 => Codec::Zstd,
            n => return Err(PayloadError::format(format!("block has unknown codec {n}"))),
        };
        check_reserved(b, 5..8, "a block header")?;
        Ok(BlockHeader {
            codec,
            raw_len: u32_at(b, 8),
            stored_len: u32_at(b, 12),
        })
    }
}

/// The header of the manifest frame (FORMAT.md §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The format version of the manifest in the body (`MANIFEST_VERSION` when writing).
    pub version: u16,
    /// Flags bit 0: the body is a sealed stream holding the plain frame (FORMAT.md §11.4).
    pub sealed: bool,
    pub stored_len: u64,
    pub raw_len: u64,
    pub hash: [u8; 32],
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..8].copy_from_slice(MANIFEST_MAGIC); // 0: magic
        b[8..10].copy_from_slice(&self.version.to_le_bytes()); // 8: version
        b[10] = 1; // 10: codec zstd
        b[11] = self.sealed as u8; // 11: flags; 12: reserved
        b[16..24].copy_from_slice(&self.stored_len.to_le_bytes()); // 16: stored length
        b[24..32].copy_from_slice(&self.raw_len.to_le_bytes()); // 24: raw length
        b[32..64].copy_from_slice(&self.hash); // 32: BLAKE3 of the body
        b
    }

    pub fn decode(b: &[u8; RECORD_LEN]) -> Result<Self, PayloadError> {
        if &b[0..8] != MANIFEST_MAGIC {
            return Err(PayloadError::format("manifest frame has a bad magic"));
        }
        let version = u16_at(b, 8);
        check_version_up_to(version, MANIFEST_VERSION, "the manifest")?;
        if b[10] != 1 {
            return Err(PayloadError::format(format!(
                "manifest has unknown codec {}",
                b[10]
            )));
        }
        if b[11] & !(FLAG_ENCRYPTED as u8) != 0 {
            return Err(PayloadError::format(
                "manifest uses flags this osimage does not know",
            ));
        }
        check_reserved(b, 12..16, "the manifest frame header")?;
        let h = FrameHeader {
            version,
            sealed: b[11] & FLAG_ENCRYPTED as u8 != 0,
            stored_len: u64_at(b, 16),
            raw_len: u64_at(b, 24),
            hash: array_at(b, 32),
        };
        if h.stored_len > MAX_MANIFEST_STORED || h.raw_len > MAX_MANIFEST_RAW {
            return Err(PayloadError::format(format!(
                "manifest frame claims an absurd size ({} bytes stored, {} decoded; at most \
                 {MAX_MANIFEST_STORED} and {MAX_MANIFEST_RAW})",
                h.stored_len, h.raw_len
            )));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trips_and_detects_damage() {
        let t = Trailer {
            manifest_offset: 1234,
            manifest_len: 99,
            image_id: [7; 16],
        };
        let mut b = t.encode();
        assert_eq!(&b[0..8], b"OSIMTRLR");
        assert_eq!(u64_at(&b, 16), 1234);
        assert_eq!(Trailer::decode(&b).unwrap(), t);
        b[20] ^= 1;
        assert!(Trailer::decode(&b).is_err());
    }

    #[test]
    fn block_header_offsets_follow_the_spec() {
        let h = BlockHeader {
            codec: Codec::Zstd,
            raw_len: 0x0102_0304,
            stored_len: 5,
        };
        let b = h.encode();
        assert_eq!(&b[0..4], b"OBLK");
        assert_eq!(b[4], 1);
        assert_eq!(&b[8..12], &[4, 3, 2, 1]);
        assert_eq!(BlockHeader::decode(&b).unwrap(), h);
    }

    #[test]
    fn newer_versions_are_refused_with_a_clear_reason() {
        let mut b = ImageHeader {
            image_id: [1; 16],
            encrypted: false,
        }
        .encode();
        b[8] = 9;
        let e = ImageHeader::decode(&b).unwrap_err().to_string();
        assert!(e.contains("newer osimage"), "{e}");
    }

    #[test]
    fn pack_and_frame_headers_round_trip() {
        let p = PackHeader::Image {
            index: 3,
            image_id: [9; 16],
        };
        assert_eq!(PackHeader::decode(&p.encode()).unwrap(), p);
        let f = FrameHeader {
            version: MANIFEST_VERSION,
            sealed: false,
            stored_len: 10,
            raw_len: 20,
            hash: [5; 32],
        };
        assert_eq!(FrameHeader::decode(&f.encode()).unwrap(), f);
    }

    fn refusal(b: &[u8; RECORD_LEN]) -> String {
        PackHeader::decode(b).map_or_else(|e| e.to_string(), |h| format!("accepted {h:?}"))
    }

    #[test]
    fn image_pack_header_bytes_lie_where_format_md_puts_them() {
        let b = PackHeader::Image {
            index: 0x0102_0304,
            image_id: [0xAB; 16],
        }
        .encode();
        assert_eq!(&b[0..8], b"OSIMPACK");
        assert_eq!(&b[8..10], &[2, 0]); // version 2, as every image pack ever written
        assert_eq!(&b[10..12], &[0, 0]);
        assert_eq!(&b[12..16], &[4, 3, 2, 1]);
        assert_eq!(&b[16..32], &[0xAB; 16]);
        assert_eq!(&b[32..64], &[0; 32]);
    }

    #[test]
    fn store_pack_header_bytes_lie_where_format_md_puts_them() {
        let h = PackHeader::Store {
            store_id: [0x5A; 16],
            salt: [0xC3; 16],
        };
        let b = h.encode();
        assert_eq!(&b[0..8], b"OSIMPACK");
        assert_eq!(&b[8..10], &[3, 0]);
        assert_eq!(&b[10..12], &[1, 0]); // the store flag
        assert_eq!(&b[12..16], &[0xFF; 4]);
        assert_eq!(&b[16..32], &[0x5A; 16]);
        assert_eq!(&b[32..48], &[0xC3; 16]);
        assert_eq!(&b[48..64], &[0; 16]);
        assert_eq!(PackHeader::decode(&b).unwrap(), h);
    }

    #[test]
    fn malformed_pack_headers_are_refused_with_the_reason() {
        let store = PackHeader::Store {
            store_id: [1; 16],
            salt: [2; 16],
        }
        .encode();
        let image = PackHeader::Image {
            index: 0,
            image_id: [1; 16],
        }
        .encode();
        let cases: [(&[u8; RECORD_LEN], usize, u8, &str); 8] = [
            (&store, 10, 3, "unknown flags 0x0003"),
            (&store, 10, 0, "lacks the store-pack flag"),
            (&store, 12, 0, "pack index 4294967040, not 0xFFFF_FFFF"),
            (
                &store,
                50,
                1,
                "store pack header has non-zero reserved bytes",
            ),
            (&image, 10, 1, "version 2 has flags 0x0001"),
            (&image, 40, 1, "pack header has non-zero reserved bytes"),
            (
                &image,
                8,
                4,
                "reads pack versions up to 3 (made by a newer osimage?)",
            ),
            (&image, 8, 0, "made by a newer osimage?"),
        ];
        for (base, at, value, want) in cases {
            let mut b = *base;
            b[at] = value;
            let got = refusal(&b);
            assert!(got.contains(want), "byte {at} = {value}: {got}");
        }
        // A version-1 header (images of version 1) is still read, as an image pack.
        let mut v1 = image;
        v1[8] = 1;
        assert!(matches!(
            PackHeader::decode(&v1),
            Ok(PackHeader::Image { index: 0, .. })
        ));
    }

    /// FORMAT.md §8: the pack header's version 3 (store packs) and the manifest frame's
    /// version 3 (the column encoding) are separate; image headers and trailers stay at 2.
    #[test]
    fn other_records_stay_at_version_2() {
        let mut b = ImageHeader {
            image_id: [1; 16],
            encrypted: false,
        }
        .encode();
        b[8] = 3;
        assert!(refusal_of(ImageHeader::decode(&b)).contains("reads up to 2"));
        let mut f = FrameHeader {
            version: 3,
            sealed: false,
            stored_len: 1,
            raw_len: 1,
            hash: [0; 32],
        };
        assert_eq!(
            FrameHeader::decode(&f.encode()).unwrap(),
            f,
            "manifest version 3"
        );
        f.version = 4;
        assert_eq!(
            FrameHeader::decode(&f.encode()).unwrap(),
            f,
            "manifest version 4"
        );
        f.version = 5;
        assert!(refusal_of(FrameHeader::decode(&f.encode())).contains("reads up to 4"));
        let mut t = Trailer {
            manifest_offset: 1,
            manifest_len: 1,
            image_id: [0; 16],
        }
        .encode();
        t[8] = 3;
        let sum = blake3::hash(&t[0..48]);
        t[48..64].copy_from_slice(&sum.as_bytes()[..16]);
        assert!(refusal_of(Trailer::decode(&t)).contains("reads up to 2"));
    }

    fn refusal_of<T: std::fmt::Debug>(r: Result<T, PayloadError>) -> String {
        r.map_or_else(|e| e.to_string(), |v| format!("accepted {v:?}"))
    }
}
