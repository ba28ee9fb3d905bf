//! The small-object frame (docs/STORE.md §2.1): one 64-byte header in front of the bincode
//! body of `config`, index objects, locks, condemnations and pins.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `OSIMSOBJ` |
//! | 8 | 2 | store format version (1) |
//! | 10 | 1 | kind ([`Kind`]) |
//! | 11 | 1 | flags: bit 0 sealed, bit 1 zstd |
//! | 12 | 4 | reserved, zero |
//! | 16 | 16 | nonce (the store id in `config`) |
//! | 32 | 8 | stored_len |
//! | 40 | 8 | raw_len |
//! | 48 | 16 | first 16 bytes of BLAKE3 of the stored body |

use std::io::Read as _;

use super::{ObjectError, decode_body, encode_body};
use crate::store::crypt::{self, StoreKeys};

/// The frame's magic.
pub const MAGIC: [u8; 8] = *b"OSIMSOBJ";
/// The store format this build writes and the highest it reads.
pub const STORE_FORMAT_VERSION: u16 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = 64;
/// Flag bit 0: the body is sealed (an encrypted store, §6).
pub const FLAG_SEALED: u8 = 1;
/// Flag bit 1: the body is one zstd frame.
pub const FLAG_ZSTD: u8 = 2;
/// The largest decoded body of an index object.
pub const MAX_INDEX_RAW: u64 = 256 << 20;
/// The largest decoded body of every other kind.
pub const MAX_SMALL_RAW: u64 = 1 << 20;

/// What a framed object holds (byte 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Config = 1,
    Index = 2,
    Lock = 3,
    Condemnation = 4,
    CondemnationWait = 5,
    CondemnationSwept = 6,
    Pin = 7,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Config,
            2 => Kind::Index,
            3 => Kind::Lock,
            4 => Kind::Condemnation,
            5 => Kind::CondemnationWait,
            6 => Kind::CondemnationSwept,
            7 => Kind::Pin,
            _ => return None,
        })
    }

    /// The largest decoded body of this kind (§2.1).
    pub fn max_raw(self) -> u64 {
        match self {
            Kind::Index => MAX_INDEX_RAW,
            _ => MAX_SMALL_RAW,
        }
    }

    /// The largest stored body: the decoded bound plus what zstd adds to data it cannot
    /// compress (a few bytes per 128 KiB block, and the frame's own header).
    pub fn max_stored(self) -> u64 {
        let compressed = self.max_raw() + self.max_raw() / 1024 + 1024;
        crate::envelope::stream::sealed_len(compressed)
    }

    /// How messages name the kind.
    fn name(self) -> &'static str {
        match self {
            Kind::Config => "a store config",
            Kind::Index => "an index object",
            Kind::Lock => "a lock",
            Kind::Condemnation => "a condemnation",
            Kind::CondemnationWait => "a condemnation's wait list",
            Kind::CondemnationSwept => "a condemnation's sweep record",
            Kind::Pin => "a pin",
        }
    }
}

/// The header of a framed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: Kind,
    pub sealed: bool,
    pub zstd: bool,
    pub nonce: [u8; 16],
    pub stored_len: u64,
    pub raw_len: u64,
    pub hash: [u8; 16],
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&STORE_FORMAT_VERSION.to_le_bytes());
        b[10] = self.kind as u8;
        b[11] =
            (if self.sealed { FLAG_SEALED } else { 0 }) | (if self.zstd { FLAG_ZSTD } else { 0 });
        b[16..32].copy_from_slice(&self.nonce);
        b[32..40].copy_from_slice(&self.stored_len.to_le_bytes());
        b[40..48].copy_from_slice(&self.raw_len.to_le_bytes());
        b[48..64].copy_from_slice(&self.hash);
        b
    }

    /// Reads a header, refusing a wrong magic, a newer format, an unknown kind or flag,
    /// non-zero reserved bytes, and lengths over the kind's limits.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<FrameHeader, String> {
        if b[0..8] != MAGIC {
            return Err("not an osimage store object (bad magic)".into());
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version > STORE_FORMAT_VERSION {
            return Err(format!(
                "store format version {version}: made by a newer osimage (this one reads \
                 version {STORE_FORMAT_VERSION})"
            ));
        }
        if version == 0 {
            return Err("store format version 0 does not exist".into());
        }
        let kind =
            Kind::from_byte(b[10]).ok_or_else(|| format!("unknown object kind {}", b[10]))?;
        let flags = b[11];
        if flags & !(FLAG_SEALED | FLAG_ZSTD) != 0 {
            return Err(format!("unknown flags {flags:#04x}"));
        }
        if b[12..16] != [0; 4] {
            return Err("reserved header bytes are not zero".into());
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let h = FrameHeader {
            kind,
            sealed: flags & FLAG_SEALED != 0,
            zstd: flags & FLAG_ZSTD != 0,
            nonce: b[16..32].try_into().expect("16 bytes"),
            stored_len: u64_at(32),
            raw_len: u64_at(40),
            hash: b[48..64].try_into().expect("16 bytes"),
        };
        if h.raw_len > kind.max_raw() {
            return Err(format!(
                "the body decodes to {} bytes, more than {} of {} allows",
                h.raw_len,
                kind.max_raw(),
                kind.name()
            ));
        }
        if h.stored_len > kind.max_stored() {
            return Err(format!(
                "the stored body of {} bytes is too large",
                h.stored_len
            ));
        }
        if !h.zstd && !h.sealed && h.stored_len != h.raw_len {
            return Err(format!(
                "an uncompressed body of {} bytes says it decodes to {}",
                h.stored_len, h.raw_len
            ));
        }
        Ok(h)
    }
}

/// The first 16 bytes of the BLAKE3 of `body`.
fn short_hash(body: &[u8]) -> [u8; 16] {
    blake3::hash(body).as_bytes()[..16]
        .try_into()
        .expect("16 bytes")
}

/// `value` framed as an object of `kind` with `nonce`, compressed at `zstd_level` when
/// given, and sealed with `keys` (an encrypted store, STORE.md §6: one stream under the
/// object key of `nonce`) when given. `name` names the object in errors (a body over the
/// kind's limit).
pub fn encode_frame<T: serde::Serialize>(
    name: &str,
    kind: Kind,
    nonce: [u8; 16],
    value: &T,
    zstd_level: Option<i32>,
    keys: Option<&StoreKeys>,
) -> Result<Vec<u8>, ObjectError> {
    let raw = encode_body(value).map_err(|e| ObjectError::new(name, e))?;
    if raw.len() as u64 > kind.max_raw() {
        return Err(ObjectError::new(
            name,
            format!(
                "{} would be {} bytes, more than the {} allowed",
                kind.name(),
                raw.len(),
                kind.max_raw()
            ),
        ));
    }
    let stored = match zstd_level {
        Some(level) => zstd::bulk::compress(&raw, level)
            .map_err(|e| ObjectError::new(name, format!("compressing: {e}")))?,
        None => raw.clone(),
    };
    let stored = match keys {
        Some(k) => crypt::seal(k.object(&nonce), &stored),
        None => stored,
    };
    let header = FrameHeader {
        kind,
        sealed: keys.is_some(),
        zstd: zstd_level.is_some(),
        nonce,
        stored_len: stored.len() as u64,
        raw_len: raw.len() as u64,
        hash: short_hash(&stored),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + stored.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&stored);
    Ok(out)
}

/// Decodes the whole object `bytes` named `name`, which must be an object of `kind`:
/// header, exact length, stored hash, then (sealed, with `keys`) the opened stream, bounded
/// decompression, then the body. An encrypted store's object must be sealed and a plain
/// store's must not: `keys` says which store it is.
pub fn decode_frame<T: serde::de::DeserializeOwned>(
    name: &str,
    kind: Kind,
    bytes: &[u8],
    keys: Option<&StoreKeys>,
) -> Result<(FrameHeader, T), ObjectError> {
    let bad = |p: String| ObjectError::new(name, p);
    let head: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| {
            bad(format!(
                "truncated: {} bytes, shorter than its header",
                bytes.len()
            ))
        })?;
    let h = FrameHeader::decode(head).map_err(bad)?;
    if h.kind != kind {
        return Err(bad(format!("is {}, not {}", h.kind.name(), kind.name())));
    }
    match (h.sealed, keys.is_some()) {
        (true, false) => {
            return Err(bad(
                "sealed (an encrypted store's object), read without the store's key".into(),
            ));
        }
        (false, true) => {
            return Err(bad(
                "not sealed, in an encrypted store (altered: refused)".into()
            ));
        }
        _ => {}
    }
    let body = &bytes[HEADER_LEN..];
    match (body.len() as u64).cmp(&h.stored_len) {
        std::cmp::Ordering::Less => {
            return Err(bad(format!(
                "truncated: {} of its {} body bytes",
                body.len(),
                h.stored_len
            )));
        }
        std::cmp::Ordering::Greater => {
            return Err(bad(format!(
                "{} trailing bytes after its body",
                body.len() as u64 - h.stored_len
            )));
        }
        std::cmp::Ordering::Equal => {}
    }
    if short_hash(body) != h.hash {
        return Err(bad("the body does not match its hash (damaged)".into()));
    }
    let opened;
    let body = match keys {
        Some(k) => {
            opened = crypt::open(&k.object(&h.nonce), body).map_err(bad)?;
            if !h.zstd && opened.len() as u64 != h.raw_len {
                return Err(bad(format!(
                    "an uncompressed body of {} bytes says it decodes to {}",
                    opened.len(),
                    h.raw_len
                )));
            }
            &opened[..]
        }
        None => body,
    };
    let value = if h.zstd {
        let raw = decompress(body, h.raw_len).map_err(bad)?;
        decode_body(&raw)
    } else {
        decode_body(body)
    }
    .map_err(bad)?;
    Ok((h, value))
}

/// `body` decompressed, which must give exactly `raw_len` bytes; memory grows with what
/// zstd produces, never with what a header claims, and stops one byte past `raw_len`.
fn decompress(body: &[u8], raw_len: u64) -> Result<Vec<u8>, String> {
    let dec = zstd::stream::read::Decoder::new(body)
        .map_err(|e| format!("the body does not decompress: {e}"))?;
    let mut raw = Vec::new();
    dec.take(raw_len + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("the body does not decompress: {e}"))?;
    if raw.len() as u64 != raw_len {
        return Err(format!(
            "the body decompresses to {}{} bytes, not the {raw_len} its header says",
            raw.len().min(raw_len as usize),
            if raw.len() as u64 > raw_len { "+" } else { "" }
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(zstd: Option<i32>) -> Vec<u8> {
        encode_frame(
            "k",
            Kind::Pin,
            [9; 16],
            &(7u32, "text".to_string()),
            zstd,
            None,
        )
        .unwrap()
    }

    fn refusal(bytes: &[u8]) -> String {
        decode_frame::<(u32, String)>("s3://b/p/pins/x", Kind::Pin, bytes, None)
            .unwrap_err()
            .to_string()
    }

    /// `bytes` with its header's stored hash made right again after an edit of the body.
    fn rehash(mut bytes: Vec<u8>) -> Vec<u8> {
        let h = short_hash(&bytes[HEADER_LEN..]);
        bytes[48..64].copy_from_slice(&h);
        bytes
    }

    #[test]
    fn header_fields_are_at_their_offsets() {
        let b = framed(Some(3));
        assert_eq!(&b[0..8], b"OSIMSOBJ");
        assert_eq!(&b[8..10], &[1, 0]);
        assert_eq!(b[10], 7);
        assert_eq!(b[11], FLAG_ZSTD);
        assert_eq!(&b[12..16], &[0; 4]);
        assert_eq!(&b[16..32], &[9; 16]);
        let stored = u64::from_le_bytes(b[32..40].try_into().unwrap());
        assert_eq!(stored as usize, b.len() - 64);
        let raw = u64::from_le_bytes(b[40..48].try_into().unwrap());
        assert_eq!(raw, 6); // bincode: varint 7, length 4, "text"
        assert_eq!(&b[48..64], &blake3::hash(&b[64..]).as_bytes()[..16]);
        let plain = framed(None);
        assert_eq!(plain[11], 0);
        assert_eq!(&plain[64..], &[7, 4, b't', b'e', b'x', b't']);
    }

    #[test]
    fn frames_round_trip_plain_and_compressed() {
        for zstd in [None, Some(3)] {
            let (h, v) =
                decode_frame::<(u32, String)>("k", Kind::Pin, &framed(zstd), None).unwrap();
            assert_eq!(v, (7, "text".to_string()));
            assert_eq!(
                (h.kind, h.zstd, h.nonce),
                (Kind::Pin, zstd.is_some(), [9; 16])
            );
        }
    }

    #[test]
    fn every_damage_is_refused_naming_the_object() {
        let good = framed(None);
        let edit = |at: usize, v: u8| crate::store::objects::damage::byte(&good, at, v);
        let set_u64 = |at: usize, v: u64| crate::store::objects::damage::u64_at(&good, at, v);
        let mut trailing = good.clone();
        trailing.push(0);
        for (bytes, why) in [
            (edit(0, b'X'), "bad magic"),
            (edit(8, 2), "newer osimage"),
            (edit(8, 0), "version 0"),
            (edit(10, 9), "unknown object kind 9"),
            (edit(10, 2), "is an index object, not a pin"),
            (edit(11, 4), "unknown flags"),
            (edit(11, FLAG_SEALED), "sealed"),
            (edit(13, 1), "reserved"),
            (set_u64(40, MAX_SMALL_RAW + 1), "more than 1048576"),
            (set_u64(32, u64::MAX), "too large"),
            (set_u64(40, 5), "says it decodes to 5"),
            (good[..20].to_vec(), "shorter than its header"),
            (good[..good.len() - 1].to_vec(), "truncated: 5 of its 6"),
            (trailing, "1 trailing bytes after its body"),
            (edit(65, 5), "does not match its hash"),
            (rehash(edit(65, 200)), "does not decode"),
        ] {
            let e = refusal(&bytes);
            assert!(e.starts_with("s3://b/p/pins/x: "), "{e}");
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn compressed_bodies_must_decompress_to_their_length() {
        let good = framed(Some(3));
        let mut short = good.clone();
        short[40..48].copy_from_slice(&5u64.to_le_bytes());
        assert!(refusal(&short).contains("decompresses to 5+ bytes, not the 5"));
        let mut long = good.clone();
        long[40..48].copy_from_slice(&7u64.to_le_bytes());
        assert!(refusal(&long).contains("decompresses to 6 bytes, not the 7"));
        let mut junk = good.clone();
        for b in &mut junk[64..] {
            *b = 0x55;
        }
        assert!(refusal(&rehash(junk)).contains("does not decompress"));
        // An extra value after the body's one: decoded, then refused.
        let two = encode_frame(
            "k",
            Kind::Pin,
            [0; 16],
            &((7u32, "text".to_string()), 1u8),
            None,
            None,
        )
        .unwrap();
        assert!(refusal(&two).contains("1 trailing bytes after what it encodes"));
    }

    #[test]
    fn a_sealed_body_opens_with_its_store_key_only() {
        use crate::envelope::DataKey;
        let keys = StoreKeys::new(DataKey([1; 32]), [2; 16]);
        let value = (7u32, "web01 /etc/passwd".to_string());
        for zstd in [None, Some(3)] {
            let b = encode_frame("k", Kind::Pin, [9; 16], &value, zstd, Some(&keys)).unwrap();
            assert_eq!(b[11] & FLAG_SEALED, FLAG_SEALED);
            assert!(!b.windows(5).any(|w| w == b"web01"));
            let (_, v) = decode_frame::<(u32, String)>("k", Kind::Pin, &b, Some(&keys)).unwrap();
            assert_eq!(v, value);
            // Without the key, with another store's, or a plain object in an encrypted store.
            assert!(refusal(&b).contains("without the store's key"));
            let other = StoreKeys::new(DataKey([1; 32]), [3; 16]);
            let e = decode_frame::<(u32, String)>("k", Kind::Pin, &b, Some(&other)).unwrap_err();
            assert!(e.problem.contains("authentication"), "{e}");
            let plain = framed(zstd);
            let e = decode_frame::<(u32, String)>("k", Kind::Pin, &plain, Some(&keys));
            assert!(e.unwrap_err().problem.contains("not sealed"));
        }
    }

    #[test]
    fn too_large_a_body_is_not_written() {
        let big = vec![0u8; MAX_SMALL_RAW as usize];
        let e = encode_frame("s3://b/p/pins/x", Kind::Pin, [0; 16], &big, None, None).unwrap_err();
        assert!(
            e.to_string().contains("more than the 1048576 allowed"),
            "{e}"
        );
    }
}
