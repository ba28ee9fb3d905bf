//! A prune's three objects (docs/STORE.md §2.7, §5.2): the condemnation `prune/<id>` (kind 4:
//! the versions forgotten, the packs and rescue blobs no remaining version used), its wait
//! list `prune/<id>.wait` (kind 5: the locks present right after the condemnation was
//! written, which a sweep waits for) and its sweep record `prune/<id>.swept` (kind 6: written
//! last by the sweep, so until it exists captures still avoid everything condemned).
//!
//! Names are stored as keys relative to the store (`images/NAME/VERSION`,
//! `rescue/<64 hex>.<16 hex>`, `locks/<32 hex>`), each checked by the parser of `names`, so
//! a damaged or forged object cannot make a sweep delete anything but versions and blobs.

use serde::{Deserialize, Serialize};

use super::ObjectError;
use super::frame::{Kind, decode_frame, encode_frame};
use crate::store::crypt::StoreKeys;
use crate::store::names;

/// The zstd level of a condemnation's body (its pack ids compress little; its keys do).
const ZSTD_LEVEL: i32 = 3;

/// What one prune condemned. Field order is the encoding (normative, §2.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condemnation {
    /// The version objects forgotten: `images/NAME/VERSION`.
    pub versions: Vec<String>,
    /// The packs no remaining version references.
    pub packs: Vec<[u8; 32]>,
    /// The rescue blobs no remaining version references: `rescue/<64 hex>.<16 hex>`.
    pub blobs: Vec<String>,
    /// How many version objects the prune read when it decided (shown by `store ls --stats`).
    pub versions_seen: u64,
}

impl Condemnation {
    /// Whether every name is one a prune writes, none twice.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for v in &self.versions {
            names::parse_version_key(v)?;
            if !seen.insert(v.as_str()) {
                return Err(format!("the version {v:?} is condemned twice"));
            }
        }
        for b in &self.blobs {
            names::parse_rescue_key(b)?;
            if !seen.insert(b.as_str()) {
                return Err(format!("the blob {b:?} is condemned twice"));
            }
        }
        let mut packs = std::collections::HashSet::new();
        for p in &self.packs {
            if !packs.insert(p) {
                return Err(format!("the pack {} is condemned twice", names::hex(p)));
            }
        }
        Ok(())
    }

    /// Whether it condemns nothing at all.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.packs.is_empty() && self.blobs.is_empty()
    }
}

/// The locks a sweep waits for. Field order is the encoding (normative, §2.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    /// `locks/<32 hex>` of every lock listed right after the condemnation was written.
    pub locks: Vec<String>,
}

impl Wait {
    /// Whether every name is a lock's key.
    pub fn check(&self) -> Result<(), String> {
        self.locks
            .iter()
            .try_for_each(|l| names::parse_lock_key(l).map(|_| ()))
    }

    /// The ids of the locks waited for.
    pub fn ids(&self) -> Vec<[u8; 16]> {
        self.locks
            .iter()
            .filter_map(|l| names::parse_lock_key(l).ok())
            .collect()
    }
}

/// What a sweep did. Field order is the encoding (normative, §2.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swept {
    /// Objects deleted: versions, packs, blobs.
    pub deleted: u64,
    /// Condemned objects kept because a version or a pin used them at the sweep.
    pub rescued: u64,
}

/// The condemnation `c` as stored under `name`, with the frame nonce `nonce`; sealed with
/// `keys` in an encrypted store (STORE.md §6).
pub fn encode_condemnation(
    name: &str,
    c: &Condemnation,
    nonce: [u8; 16],
    keys: Option<&StoreKeys>,
) -> Result<Vec<u8>, ObjectError> {
    c.check().map_err(|e| ObjectError::new(name, e))?;
    encode_frame(name, Kind::Condemnation, nonce, c, Some(ZSTD_LEVEL), keys)
}

/// The condemnation the object `bytes` named `name` holds, checked; an encrypted store's
/// (`keys`) must be sealed, a plain store's must not.
pub fn decode_condemnation(
    name: &str,
    bytes: &[u8],
    keys: Option<&StoreKeys>,
) -> Result<Condemnation, ObjectError> {
    let (_, c): (_, Condemnation) = decode_frame(name, Kind::Condemnation, bytes, keys)?;
    c.check().map_err(|e| ObjectError::new(name, e))?;
    Ok(c)
}

/// The wait list `w` as stored under `name`.
pub fn encode_wait(
    name: &str,
    w: &Wait,
    nonce: [u8; 16],
    keys: Option<&StoreKeys>,
) -> Result<Vec<u8>, ObjectError> {
    w.check().map_err(|e| ObjectError::new(name, e))?;
    encode_frame(name, Kind::CondemnationWait, nonce, w, None, keys)
}

/// The wait list the object `bytes` named `name` holds, checked.
pub fn decode_wait(
    name: &str,
    bytes: &[u8],
    keys: Option<&StoreKeys>,
) -> Result<Wait, ObjectError> {
    let (_, w): (_, Wait) = decode_frame(name, Kind::CondemnationWait, bytes, keys)?;
    w.check().map_err(|e| ObjectError::new(name, e))?;
    Ok(w)
}

/// The sweep record `s` as stored under `name`.
pub fn encode_swept(
    name: &str,
    s: &Swept,
    nonce: [u8; 16],
    keys: Option<&StoreKeys>,
) -> Result<Vec<u8>, ObjectError> {
    encode_frame(name, Kind::CondemnationSwept, nonce, s, None, keys)
}

/// The sweep record the object `bytes` named `name` holds.
pub fn decode_swept(
    name: &str,
    bytes: &[u8],
    keys: Option<&StoreKeys>,
) -> Result<Swept, ObjectError> {
    Ok(decode_frame(name, Kind::CondemnationSwept, bytes, keys)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::damage;
    use crate::store::objects::frame::HEADER_LEN;

    const V: &str = "images/web01/20261205T195045Z-3fa2c81d09be4471";

    /// The condemnation of the fuzz seed (fuzz/seeds/store_prune/seed, nonce 7s).
    pub(crate) fn condemnation() -> Condemnation {
        Condemnation {
            versions: vec![V.into()],
            packs: vec![[0xab; 32], [0x01; 32]],
            blobs: vec![format!("rescue/{}.{}", "cd".repeat(32), "0f".repeat(8))],
            versions_seen: 5,
        }
    }

    fn wait() -> Wait {
        Wait {
            locks: vec![format!("locks/{}", "12".repeat(16))],
        }
    }

    fn rehash(mut b: Vec<u8>) -> Vec<u8> {
        let h = blake3::hash(&b[HEADER_LEN..]);
        b[48..64].copy_from_slice(&h.as_bytes()[..16]);
        b
    }

    #[test]
    fn an_encrypted_stores_prune_objects_are_sealed_and_refused_plain() {
        use crate::envelope::DataKey;
        let k = StoreKeys::new(DataKey([5; 32]), [6; 16]);
        let other = StoreKeys::new(DataKey([7; 32]), [6; 16]);
        let c = encode_condemnation("c", &condemnation(), [1; 16], Some(&k)).unwrap();
        assert_eq!(c[11] & 1, 1, "flag bit 0: sealed");
        assert!(!c.windows(5).any(|w| w == b"web01"), "no name in the clear");
        assert_eq!(decode_condemnation("c", &c, Some(&k)), Ok(condemnation()));
        assert!(
            decode_condemnation("c", &c, Some(&other)).is_err(),
            "another key"
        );
        assert!(
            decode_condemnation("c", &c, None).is_err(),
            "sealed, in a plain store"
        );
        let plain = encode_condemnation("c", &condemnation(), [1; 16], None).unwrap();
        let e = decode_condemnation("prune/x", &plain, Some(&k)).unwrap_err();
        assert_eq!(e.object, "prune/x");
        let w = encode_wait("w", &wait(), [2; 16], Some(&k)).unwrap();
        assert_eq!(decode_wait("w", &w, Some(&k)), Ok(wait()));
        assert!(decode_wait("w", &w, None).is_err());
        let s = Swept {
            deleted: 1,
            rescued: 0,
        };
        let b = encode_swept("s", &s, [3; 16], Some(&k)).unwrap();
        assert_eq!(decode_swept("s", &b, Some(&k)), Ok(s));
        assert!(decode_swept("s", &b, None).is_err());
    }

    #[test]
    fn the_three_objects_round_trip_as_kinds_4_5_6() {
        let c = encode_condemnation("c", &condemnation(), [1; 16], None).unwrap();
        assert_eq!((c[10], c[11]), (4, 2), "kind 4, zstd");
        assert_eq!(decode_condemnation("c", &c, None), Ok(condemnation()));
        let w = encode_wait("w", &wait(), [2; 16], None).unwrap();
        assert_eq!((w[10], w[11]), (5, 0));
        assert_eq!(decode_wait("w", &w, None), Ok(wait()));
        assert_eq!(wait().ids(), vec![[0x12; 16]]);
        let empty = encode_wait("w", &Wait::default(), [2; 16], None).unwrap();
        assert_eq!(decode_wait("w", &empty, None), Ok(Wait::default()));
        let s = Swept {
            deleted: 7,
            rescued: 2,
        };
        let b = encode_swept("s", &s, [3; 16], None).unwrap();
        assert_eq!((b[10], b[11]), (6, 0));
        assert_eq!(&b[HEADER_LEN..], &[7, 2], "two varints");
        assert_eq!(decode_swept("s", &b, None), Ok(s));
        assert!(Condemnation::default().is_empty());
        assert!(!condemnation().is_empty());
    }

    #[test]
    fn the_fuzz_seed_is_a_valid_condemnation() {
        let seed = include_bytes!("../../../fuzz/seeds/store_prune/seed");
        assert_eq!(decode_condemnation("seed", seed, None), Ok(condemnation()));
        assert_eq!(
            encode_condemnation("seed", &condemnation(), [7; 16], None).unwrap(),
            seed
        );
    }

    #[test]
    fn names_a_prune_never_writes_are_not_written() {
        let bad_version = Condemnation {
            versions: vec!["images/web01/latest".into()],
            ..condemnation()
        };
        let twice = Condemnation {
            versions: vec![V.into(), V.into()],
            ..condemnation()
        };
        let bad_blob = Condemnation {
            blobs: vec!["packs/ab/cd".into()],
            ..condemnation()
        };
        let pack_twice = Condemnation {
            packs: vec![[9; 32], [9; 32]],
            ..condemnation()
        };
        for (c, why) in [
            (bad_version, "not a version object's key"),
            (twice, "condemned twice"),
            (bad_blob, "not a rescue blob's key"),
            (pack_twice, "condemned twice"),
        ] {
            let e = encode_condemnation("prune/x", &c, [0; 16], None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("prune/x: ") && e.contains(why), "{why}: {e}");
        }
        let w = Wait {
            locks: vec!["locks/xyz".into()],
        };
        let e = encode_wait("prune/x.wait", &w, [0; 16], None).unwrap_err();
        assert!(e.to_string().contains("not a lock's key"), "{e}");
    }

    #[test]
    fn every_damage_is_refused_naming_the_object() {
        let good = encode_condemnation("c", &condemnation(), [1; 16], None).unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        // A valid frame whose version key is not one: decodes, then fails the check.
        let forged = {
            let c = Condemnation {
                versions: vec!["images/../config".into()],
                ..condemnation()
            };
            let raw = crate::store::objects::encode_body(&c).unwrap();
            let mut b = good[..HEADER_LEN].to_vec();
            b[11] = 0; // not compressed
            b.extend_from_slice(&raw);
            let len = raw.len() as u64;
            rehash(damage::u64_at(&damage::u64_at(&b, 32, len), 40, len))
        };
        let refusal = |b: &[u8]| {
            decode_condemnation("s3://b/p/prune/x", b, None)
                .unwrap_err()
                .to_string()
        };
        for (bytes, why) in [
            (damage::byte(&good, 0, b'x'), "bad magic"),
            (damage::byte(&good, 10, 3), "is a lock, not a condemnation"),
            (damage::byte(&good, 10, 5), "is a condemnation's wait list"),
            (damage::u64_at(&good, 40, (1 << 20) + 1), "more than"),
            (good[..HEADER_LEN - 1].to_vec(), "shorter than its header"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            (trailing, "trailing bytes"),
            (damage::byte(&good, HEADER_LEN + 2, 0x55), "damaged"),
            (forged, "not a version object's key"),
        ] {
            let e = refusal(&bytes);
            assert!(e.starts_with("s3://b/p/prune/x: "), "{e}");
            assert!(e.contains(why), "{why}: {e}");
        }
        let w = encode_wait("w", &wait(), [0; 16], None).unwrap();
        let bad_lock = rehash(damage::byte(&w, HEADER_LEN + 2, b'Z'));
        for (bytes, why) in [
            (damage::byte(&w, 10, 6), "is a condemnation's sweep record"),
            (bad_lock, "not a lock's key"),
            (w[..w.len() - 1].to_vec(), "truncated"),
        ] {
            let e = decode_wait("prune/x.wait", &bytes, None)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("prune/x.wait: ") && e.contains(why),
                "{why}: {e}"
            );
        }
        let s = encode_swept("s", &Swept::default(), [0; 16], None).unwrap();
        let mut long = s.clone();
        long.push(1);
        for (bytes, why) in [
            (damage::byte(&s, 10, 4), "is a condemnation, not"),
            (long, "trailing bytes"),
            (damage::byte(&s, 8, 2), "newer"),
        ] {
            let e = decode_swept("prune/x.swept", &bytes, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
