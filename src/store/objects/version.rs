//! Version objects (docs/STORE.md §2.5): `images/<NAME>/<VERSION>`, one capture's commit in
//! one PUT, a 64-byte prefix, the head (`store ls -l`, prune and netboot read only this,
//! with a Range GET of the object's start) and the manifest frame of FORMAT.md §4.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `OSIMSVER` |
//! | 8 | 2 | store format version (1) |
//! | 10 | 1 | flags: bit 0 sealed |
//! | 11 | 5 | reserved, zero |
//! | 16 | 8 | head_len (≤ 16 MiB) |
//! | 24 | 8 | frame_len (≤ 1 GiB + 64) |
//! | 32 | 32 | BLAKE3 of the stored head |
//! | 64 | head_len | the head: bincode [`VersionHead`] |
//! | 64 + head_len | frame_len | the manifest frame |

use serde::{Deserialize, Serialize};

use super::frame::STORE_FORMAT_VERSION;
use super::{ObjectError, decode_body, encode_body};
use crate::format::manifest::Timestamp;
use crate::format::records::{MAX_MANIFEST_STORED, RECORD_LEN};
use crate::store::crypt::{self, StoreKeys, VERSION_HEAD};
use crate::store::names;

/// The version object's magic.
pub const MAGIC: [u8; 8] = *b"OSIMSVER";
/// Length of the prefix before the head.
pub const PREFIX_LEN: usize = 64;
/// The longest head.
pub const MAX_HEAD: u64 = 16 << 20;
/// The longest manifest frame of a plain store: FORMAT.md §4's header and largest body.
pub const MAX_FRAME: u64 = MAX_MANIFEST_STORED + RECORD_LEN as u64;
/// Flag bit 0: head and frame are sealed (an encrypted store, §6).
const FLAG_SEALED: u8 = 1;

/// What `store ls -l`, prune and netboot know of a version without its manifest. Field
/// order is the encoding (normative, §2.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionHead {
    /// The image id of the manifest (FORMAT.md §5.1).
    pub image_id: [u8; 16],
    pub series: String,
    /// `names::version_name(created, image_id)`: the object's last key component.
    pub version: String,
    pub created: Timestamp,
    pub hostname: String,
    pub os_release: String,
    pub tool_version: String,
    /// The version whose manifest served as the files cache of this capture.
    pub parent: Option<String>,
    /// BLAKE3 of the stored manifest frame.
    pub frame_hash: [u8; 32],
    /// Every pack id the manifest names, in manifest order.
    pub packs: Vec<[u8; 32]>,
    /// The rescue files netboot serves (§2.6); `None` when the version has none stored.
    pub rescue: Option<RescueBlobs>,
    pub summary: VersionSummary,
    pub tags: Vec<String>,
}

/// The rescue blobs a version uses (§2.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescueBlobs {
    /// The kernel image, as the ISO's `vmlinuz`.
    pub kernel: BlobRef,
    /// The initramfs core: the first `core_len` bytes of an ISO's `initrd.img` (FORMAT.md
    /// §12), without the image's own id archive.
    pub initrd_core: BlobRef,
    /// The NIC-driver part of a network restore (§9.2); `None` until netboot makes one
    /// (stage 7). An `Option` from the start of store format version 1's rescue record: no
    /// version object with `rescue: Some` was written before it, so no stored head changes.
    pub net_part: Option<BlobRef>,
    pub kernel_version: String,
}

/// One rescue blob: its BLAKE3 and the key it is stored under (relative to the store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub id: [u8; 32],
    pub object: String,
}

/// A version's sizes, as `store ls -l` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSummary {
    pub entries: u64,
    pub files: u64,
    /// The files' bytes as captured.
    pub file_bytes: u64,
    /// The bytes of every pack the version names.
    pub stored_bytes: u64,
    /// The bytes of the packs this capture uploaded.
    pub new_bytes: u64,
}

impl VersionHead {
    /// Whether the head's names are well formed and its version string is the one of
    /// its creation time and image id (§2.5).
    pub fn check(&self) -> Result<(), String> {
        names::check_series(&self.series)?;
        let (at, id) = names::parse_version(&self.version)
            .ok_or_else(|| format!("{:?} is not a version string", self.version))?;
        let created = chrono::DateTime::from_timestamp(self.created.sec, self.created.nsec)
            .ok_or("the creation time is not a valid time")?;
        if at.timestamp() != created.timestamp() || id != self.image_id[..8] {
            return Err(format!(
                "version {} is not the one of the head's creation time and image id ({})",
                self.version,
                names::version_name(created, &self.image_id)
            ));
        }
        Ok(())
    }
}

/// The first 64 bytes of a version object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionPrefix {
    pub sealed: bool,
    pub head_len: u64,
    pub frame_len: u64,
    pub head_hash: [u8; 32],
}

impl VersionPrefix {
    /// The whole object's length.
    pub fn total_len(&self) -> u64 {
        PREFIX_LEN as u64 + self.head_len + self.frame_len
    }

    fn encode(&self) -> [u8; PREFIX_LEN] {
        let mut b = [0u8; PREFIX_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&STORE_FORMAT_VERSION.to_le_bytes());
        b[10] = if self.sealed { FLAG_SEALED } else { 0 };
        b[16..24].copy_from_slice(&self.head_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.frame_len.to_le_bytes());
        b[32..64].copy_from_slice(&self.head_hash);
        b
    }
}

/// The version object of `head` and the manifest frame `frame`. The head's `frame_hash`
/// must be the frame's BLAKE3 and its version string the one of its time and image id.
pub fn encode_version(head: &VersionHead, frame: &[u8]) -> Result<Vec<u8>, ObjectError> {
    encode_version_with(head, frame, None)
}

/// [`encode_version`], in an encrypted store (`seal`: its keys and the object's random
/// nonce, STORE.md §6 "As built"): the stored head is the nonce followed by the head sealed
/// under the version key of code 0; `frame` must be sealed already, under code 2^32.
pub fn encode_version_with(
    head: &VersionHead,
    frame: &[u8],
    seal: Option<(&StoreKeys, [u8; 16])>,
) -> Result<Vec<u8>, ObjectError> {
    let name = names::version_key(&head.series, &head.version);
    let bad = |p: String| ObjectError::new(&name, p);
    head.check().map_err(bad)?;
    if head.frame_hash != *blake3::hash(frame).as_bytes() {
        return Err(bad("the head's frame_hash is not the frame's BLAKE3".into()));
    }
    if frame.len() as u64 > max_frame(seal.is_some()) {
        return Err(bad(format!("the manifest frame is {} bytes", frame.len())));
    }
    let body = encode_body(head).map_err(bad)?;
    if body.len() as u64 > MAX_HEAD {
        return Err(bad(format!(
            "the head would be {} bytes (at most 16 MiB)",
            body.len()
        )));
    }
    let body = match seal {
        Some((keys, nonce)) => {
            let mut stored = nonce.to_vec();
            stored.extend(crypt::seal(keys.version(&nonce, VERSION_HEAD), &body));
            stored
        }
        None => body,
    };
    let prefix = VersionPrefix {
        sealed: seal.is_some(),
        head_len: body.len() as u64,
        frame_len: frame.len() as u64,
        head_hash: *blake3::hash(&body).as_bytes(),
    };
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len() + frame.len());
    out.extend_from_slice(&prefix.encode());
    out.extend_from_slice(&body);
    out.extend_from_slice(frame);
    Ok(out)
}

/// Reads the prefix at the start of `first` (at least 64 bytes of the object `name`),
/// refusing a wrong magic, a newer format, unknown flags, reserved bytes, lengths over the
/// limits and a sealed object (this build reads plain stores).
pub fn decode_version_prefix(name: &str, first: &[u8]) -> Result<VersionPrefix, ObjectError> {
    let bad = |p: String| ObjectError::new(name, p);
    let b: &[u8; PREFIX_LEN] = first
        .get(..PREFIX_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| {
            bad(format!(
                "truncated: {} bytes, shorter than its prefix",
                first.len()
            ))
        })?;
    if b[0..8] != MAGIC {
        return Err(bad("not an osimage version object (bad magic)".into()));
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version > STORE_FORMAT_VERSION {
        return Err(bad(format!(
            "store format version {version}: made by a newer osimage (this one reads version \
             {STORE_FORMAT_VERSION})"
        )));
    }
    if version == 0 {
        return Err(bad("store format version 0 does not exist".into()));
    }
    if b[10] & !FLAG_SEALED != 0 {
        return Err(bad(format!("unknown flags {:#04x}", b[10])));
    }
    if b[11..16] != [0; 5] {
        return Err(bad("reserved prefix bytes are not zero".into()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let p = VersionPrefix {
        sealed: b[10] & FLAG_SEALED != 0,
        head_len: u64_at(16),
        frame_len: u64_at(24),
        head_hash: b[32..64].try_into().expect("32 bytes"),
    };
    if p.head_len > max_head(p.sealed) {
        return Err(bad(format!(
            "a head of {} bytes (at most 16 MiB)",
            p.head_len
        )));
    }
    if p.frame_len > max_frame(p.sealed) {
        return Err(bad(format!(
            "a manifest frame of {} bytes (at most 1 GiB + 64)",
            p.frame_len
        )));
    }
    Ok(p)
}

/// The head `head` (the `head_len` bytes after the prefix) of the object `name`, checked
/// against the prefix's hash and [`VersionHead::check`].
pub fn decode_head(
    name: &str,
    prefix: &VersionPrefix,
    head: &[u8],
) -> Result<VersionHead, ObjectError> {
    let bad = |p: String| ObjectError::new(name, p);
    if prefix.sealed {
        return Err(bad(
            "sealed (an encrypted store's version), read without the store's key".into(),
        ));
    }
    check_stored_head(name, prefix, head)?;
    let h: VersionHead = decode_body(head).map_err(|e| bad(format!("head: {e}")))?;
    h.check().map_err(bad)?;
    Ok(h)
}

/// The head of a sealed version object (an encrypted store's, STORE.md §6) and the
/// object's nonce, which the manifest frame's key is derived from.
pub fn decode_head_sealed(
    name: &str,
    prefix: &VersionPrefix,
    head: &[u8],
    keys: &StoreKeys,
) -> Result<(VersionHead, [u8; 16]), ObjectError> {
    decode_head_sealed_with(name, prefix, head, &|nonce| {
        Some(keys.version(nonce, VERSION_HEAD))
    })
}

/// [`decode_head_sealed`] with the head's cipher given for its nonce (a netboot key set holds
/// one version's keys only, docs/STORE.md §6.1): none is a head of another version object.
pub fn decode_head_sealed_with(
    name: &str,
    prefix: &VersionPrefix,
    head: &[u8],
    cipher: &dyn Fn(&[u8; 16]) -> Option<std::sync::Arc<crate::envelope::stream::StreamCipher>>,
) -> Result<(VersionHead, [u8; 16]), ObjectError> {
    let bad = |p: String| ObjectError::new(name, p);
    if !prefix.sealed {
        return Err(bad(
            "not sealed, in an encrypted store (altered: refused)".into()
        ));
    }
    check_stored_head(name, prefix, head)?;
    let nonce: [u8; 16] = head
        .get(..16)
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("a sealed head shorter than its nonce".into()))?;
    let cipher = cipher(&nonce)
        .ok_or_else(|| bad("the key set is for another version object (replaced?)".into()))?;
    let plain = crypt::open(&cipher, &head[16..]).map_err(|e| bad(format!("head: {e}")))?;
    let h: VersionHead = decode_body(&plain).map_err(|e| bad(format!("head: {e}")))?;
    h.check().map_err(bad)?;
    Ok((h, nonce))
}

/// The stored head's length and hash against the prefix.
fn check_stored_head(name: &str, prefix: &VersionPrefix, head: &[u8]) -> Result<(), ObjectError> {
    let bad = |p: String| ObjectError::new(name, p);
    if head.len() as u64 != prefix.head_len {
        return Err(bad(format!(
            "a head of {} bytes where the prefix says {}",
            head.len(),
            prefix.head_len
        )));
    }
    if *blake3::hash(head).as_bytes() != prefix.head_hash {
        return Err(bad("the head does not match its hash (damaged)".into()));
    }
    Ok(())
}

/// The longest stored head: sealed, its nonce and the seal's tags besides.
pub fn max_head(sealed: bool) -> u64 {
    match sealed {
        true => 16 + crate::envelope::stream::sealed_len(MAX_HEAD),
        false => MAX_HEAD,
    }
}

/// The longest stored manifest frame: sealed, padded to 64 KiB and with the seal's tags.
pub fn max_frame(sealed: bool) -> u64 {
    use crate::envelope::stream::{SEGMENT, sealed_len};
    match sealed {
        true => RECORD_LEN as u64 + sealed_len(MAX_FRAME.div_ceil(SEGMENT) * SEGMENT),
        false => MAX_FRAME,
    }
}

/// Whether `frame` is the manifest frame `head` names (its BLAKE3 is `frame_hash`): checked
/// before the manifest is decoded.
pub fn check_frame(name: &str, head: &VersionHead, frame: &[u8]) -> Result<(), ObjectError> {
    if *blake3::hash(frame).as_bytes() != head.frame_hash {
        return Err(ObjectError::new(
            name,
            "the manifest frame does not match the head's frame_hash (damaged)",
        ));
    }
    Ok(())
}

/// The head and the manifest frame of the whole version object `bytes`: prefix, exact
/// length, head hash, head, frame hash.
pub fn decode_version<'b>(
    name: &str,
    bytes: &'b [u8],
) -> Result<(VersionHead, &'b [u8]), ObjectError> {
    let prefix = decode_version_prefix(name, bytes)?;
    let total = prefix.total_len();
    if bytes.len() as u64 != total {
        return Err(ObjectError::new(
            name,
            format!(
                "{} bytes where its prefix says {total} ({})",
                bytes.len(),
                if (bytes.len() as u64) < total {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            ),
        ));
    }
    let head_end = PREFIX_LEN + prefix.head_len as usize;
    let head = decode_head(name, &prefix, &bytes[PREFIX_LEN..head_end])?;
    let frame = &bytes[head_end..];
    check_frame(name, &head, frame)?;
    Ok((head, frame))
}

/// The head and the opened manifest frame of the whole sealed version object `bytes` (an
/// encrypted store's, STORE.md §6 "As built"): prefix, exact length, head hash, the head
/// opened with `keys`, the sealed frame's hash, then the frame opened.
pub fn decode_version_sealed(
    name: &str,
    bytes: &[u8],
    keys: &StoreKeys,
) -> Result<(VersionHead, Vec<u8>), ObjectError> {
    let prefix = decode_version_prefix(name, bytes)?;
    if bytes.len() as u64 != prefix.total_len() {
        return Err(ObjectError::new(
            name,
            format!(
                "{} bytes where its prefix says {} (truncated or damaged)",
                bytes.len(),
                prefix.total_len()
            ),
        ));
    }
    let head_end = PREFIX_LEN + prefix.head_len as usize;
    let (head, nonce) = decode_head_sealed(name, &prefix, &bytes[PREFIX_LEN..head_end], keys)?;
    let sealed = &bytes[head_end..];
    check_frame(name, &head, sealed)?;
    let frame =
        crate::envelope::open_manifest_with(&keys.version(&nonce, crypt::VERSION_MANIFEST), sealed)
            .map_err(|e| ObjectError::new(name, format!("its manifest frame: {e}")))?;
    Ok((head, frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: &[u8] = b"a manifest frame stands here";

    fn head() -> VersionHead {
        let id = [0x3f; 16];
        let created = Timestamp {
            sec: 1_796_500_000,
            nsec: 42,
        };
        let at = chrono::DateTime::from_timestamp(created.sec, created.nsec).unwrap();
        VersionHead {
            image_id: id,
            series: "web01".into(),
            version: names::version_name(at, &id),
            created,
            hostname: "web01.example".into(),
            os_release: "Debian GNU/Linux 13 (trixie)".into(),
            tool_version: "0.1.0".into(),
            parent: None,
            frame_hash: *blake3::hash(FRAME).as_bytes(),
            packs: vec![[1; 32], [2; 32]],
            rescue: Some(RescueBlobs {
                kernel: BlobRef {
                    id: [4; 32],
                    object: "rescue/k".into(),
                },
                initrd_core: BlobRef {
                    id: [5; 32],
                    object: "rescue/i".into(),
                },
                net_part: Some(BlobRef {
                    id: [6; 32],
                    object: "rescue/n".into(),
                }),
                kernel_version: "6.12.0".into(),
            }),
            summary: VersionSummary {
                entries: 10,
                files: 8,
                file_bytes: 1000,
                stored_bytes: 600,
                new_bytes: 300,
            },
            tags: vec!["nightly".into()],
        }
    }

    fn refusal(bytes: &[u8]) -> String {
        decode_version("s3://b/p/images/web01/v", bytes)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn prefix_fields_are_at_their_offsets() {
        let b = encode_version(&head(), FRAME).unwrap();
        assert_eq!(&b[0..8], b"OSIMSVER");
        assert_eq!(&b[8..10], &[1, 0]);
        assert_eq!(&b[10..16], &[0; 6]);
        let head_len = u64::from_le_bytes(b[16..24].try_into().unwrap()) as usize;
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            FRAME.len() as u64
        );
        assert_eq!(&b[32..64], blake3::hash(&b[64..64 + head_len]).as_bytes());
        assert_eq!(&b[64 + head_len..], FRAME);
        assert_eq!(b.len(), 64 + head_len + FRAME.len());
        // The head's first field is the image id, bincode's fixed array: 16 bytes as is.
        assert_eq!(&b[64..80], &[0x3f; 16]);
    }

    #[test]
    fn version_objects_round_trip_whole_and_by_their_start() {
        let b = encode_version(&head(), FRAME).unwrap();
        let (h, frame) = decode_version("v", &b).unwrap();
        assert_eq!((h, frame), (head(), FRAME));
        // What `read_head` does: the prefix from the first bytes, then the head alone.
        let p = decode_version_prefix("v", &b[..64]).unwrap();
        assert_eq!(p.total_len(), b.len() as u64);
        let h = decode_head("v", &p, &b[64..64 + p.head_len as usize]).unwrap();
        assert_eq!(h, head());
        check_frame("v", &h, FRAME).unwrap();
        assert!(check_frame("v", &h, b"another frame").is_err());
    }

    #[test]
    fn heads_that_disagree_with_their_frame_or_name_are_not_written() {
        let mut h = head();
        h.frame_hash = [0; 32];
        assert!(
            encode_version(&h, FRAME)
                .unwrap_err()
                .to_string()
                .contains("frame_hash")
        );
        let mut h = head();
        h.image_id[0] = 0;
        let e = encode_version(&h, FRAME).unwrap_err().to_string();
        assert!(e.contains("not the one of the head's creation time"), "{e}");
        let mut h = head();
        h.created.sec += 1;
        assert!(encode_version(&h, FRAME).is_err());
        let mut h = head();
        h.series = ".x".into();
        assert!(encode_version(&h, FRAME).is_err());
    }

    #[test]
    fn every_damage_is_refused_naming_the_object() {
        let good = encode_version(&head(), FRAME).unwrap();
        let head_len = u64::from_le_bytes(good[16..24].try_into().unwrap()) as usize;
        let edit = |at: usize, v: u8| crate::store::objects::damage::byte(&good, at, v);
        let set_u64 = |at: usize, v: u64| crate::store::objects::damage::u64_at(&good, at, v);
        let mut trailing = good.clone();
        trailing.push(0);
        // A head that hashes right but does not decode (its hash fixed up after the edit).
        let mut undecodable = good.clone();
        undecodable[64 + 16] = 0xff;
        let h = *blake3::hash(&undecodable[64..64 + head_len]).as_bytes();
        undecodable[32..64].copy_from_slice(&h);
        for (bytes, why) in [
            (edit(0, b'x'), "bad magic"),
            (edit(8, 2), "newer osimage"),
            (edit(8, 0), "version 0"),
            (edit(10, 2), "unknown flags"),
            (edit(10, 1), "sealed"),
            (edit(12, 1), "reserved"),
            (set_u64(16, MAX_HEAD + 1), "at most 16 MiB"),
            (set_u64(24, MAX_FRAME + 1), "at most 1 GiB + 64"),
            (good[..63].to_vec(), "shorter than its prefix"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            (trailing, "trailing bytes"),
            (edit(70, good[70] ^ 1), "head does not match its hash"),
            (
                edit(good.len() - 1, 0),
                "does not match the head's frame_hash",
            ),
            (undecodable, "head: the body does not decode"),
        ] {
            let e = refusal(&bytes);
            assert!(e.starts_with("s3://b/p/images/web01/v: "), "{e}");
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
