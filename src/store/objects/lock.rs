//! A lock object (docs/STORE.md §2.7, frame kind 3): who holds a shared lock on the store,
//! since when, and for which series. Its name is random (`locks/<32 hex>`); its freshness is
//! not in its bytes but in the server's `LastModified` of its last rewrite (§2.7, `store::locks`).

use serde::{Deserialize, Serialize};

use super::ObjectError;
use super::frame::{Kind, decode_frame, encode_frame};
use crate::format::manifest::Timestamp;
use crate::store::names;

/// The longest host name a lock carries (a Linux host name is at most 64 bytes; a fully
/// qualified one at most 253).
pub const MAX_HOST: usize = 255;

/// What the holder of a lock is doing (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    Capture,
    Import,
    Read,
    Prune,
}

impl LockKind {
    /// How messages and `store ls --stats` name it.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Capture => "capture",
            LockKind::Import => "import",
            LockKind::Read => "read",
            LockKind::Prune => "prune",
        }
    }
}

/// One lock. Field order is the encoding (normative, §2.7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub kind: LockKind,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id on that host.
    pub pid: u32,
    /// When the holder took the lock, by its own clock (shown, never used for staleness).
    pub started: Timestamp,
    /// The series a capture or import writes, or a reader reads.
    pub series: Option<String>,
}

impl Lock {
    /// Whether the values are ones a writer makes: a host name of 1–255 bytes without
    /// control characters, a valid time, a well-formed series.
    pub fn check(&self) -> Result<(), String> {
        if self.host.is_empty() || self.host.len() > MAX_HOST {
            return Err(format!(
                "a host name of {} bytes (1 to {MAX_HOST})",
                self.host.len()
            ));
        }
        if self.host.chars().any(char::is_control) {
            return Err(format!(
                "the host name {:?} holds control characters",
                self.host
            ));
        }
        if self.started.nsec >= 1_000_000_000 {
            return Err("the start time is not a valid time".into());
        }
        if let Some(s) = &self.series {
            names::check_series(s)?;
        }
        Ok(())
    }
}

/// The lock `lock` as stored under `name`, with the frame nonce `nonce` (random: §2.1).
pub fn encode_lock(
    name: &str,
    lock: &Lock,
    nonce: [u8; 16],
    keys: Option<&crate::store::crypt::StoreKeys>,
) -> Result<Vec<u8>, ObjectError> {
    lock.check().map_err(|e| ObjectError::new(name, e))?;
    encode_frame(name, Kind::Lock, nonce, lock, None, keys)
}

/// The lock the object `bytes` named `name` holds, checked as [`Lock::check`] does.
pub fn decode_lock(
    name: &str,
    bytes: &[u8],
    keys: Option<&crate::store::crypt::StoreKeys>,
) -> Result<Lock, ObjectError> {
    let (_, lock): (_, Lock) = decode_frame(name, Kind::Lock, bytes, keys)?;
    lock.check().map_err(|e| ObjectError::new(name, e))?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::damage;
    use crate::store::objects::frame::HEADER_LEN;

    fn lock() -> Lock {
        Lock {
            kind: LockKind::Capture,
            host: "web01".into(),
            pid: 4242,
            started: Timestamp {
                sec: 1_796_500_000,
                nsec: 7,
            },
            series: Some("web01".into()),
        }
    }

    fn refusal(bytes: &[u8]) -> String {
        decode_lock("s3://b/p/locks/x", bytes, None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn locks_round_trip_as_kind_3_with_their_nonce() {
        let b = encode_lock("l", &lock(), [0x5a; 16], None).unwrap();
        assert_eq!(b[10], 3, "kind 3");
        assert_eq!(b[11], 0, "neither sealed nor compressed");
        assert_eq!(&b[16..32], &[0x5a; 16]);
        assert_eq!(decode_lock("l", &b, None).unwrap(), lock());
        for kind in [LockKind::Import, LockKind::Read, LockKind::Prune] {
            let l = Lock {
                kind,
                series: None,
                ..lock()
            };
            assert_eq!(
                decode_lock("l", &encode_lock("l", &l, [0; 16], None).unwrap(), None),
                Ok(l)
            );
        }
    }

    /// The fuzzer's seed (fuzz/seeds/store_lock/seed) is this lock with nonce 7s, so the
    /// fuzzer starts from a valid object (its body is hashed).
    #[test]
    fn the_fuzz_seed_is_a_valid_lock() {
        let seed = include_bytes!("../../../fuzz/seeds/store_lock/seed");
        assert_eq!(decode_lock("seed", seed, None), Ok(lock()));
        assert_eq!(encode_lock("seed", &lock(), [7; 16], None).unwrap(), seed);
    }

    #[test]
    fn the_body_is_the_fields_in_their_order() {
        let b = encode_lock("l", &lock(), [0; 16], None).unwrap();
        // kind: variant 0 (varint); host: length 5 and its bytes; pid 4242: bincode's
        // varint marker 251 then two bytes; started: zigzag varint seconds (marker 252, four
        // bytes), nsec 7; series: Some (1), length 5, bytes.
        let mut want = vec![0u8, 5];
        want.extend_from_slice(b"web01");
        want.extend_from_slice(&[251, 0x92, 0x10]);
        want.push(252);
        want.extend_from_slice(&(1_796_500_000u32 * 2).to_le_bytes());
        want.extend_from_slice(&[7, 1, 5]);
        want.extend_from_slice(b"web01");
        assert_eq!(&b[HEADER_LEN..], &want[..]);
    }

    #[test]
    fn what_a_writer_never_makes_is_not_written() {
        for (l, why) in [
            (
                Lock {
                    host: String::new(),
                    ..lock()
                },
                "host name of 0 bytes",
            ),
            (
                Lock {
                    host: "h".repeat(MAX_HOST + 1),
                    ..lock()
                },
                "1 to 255",
            ),
            (
                Lock {
                    host: "web\n01".into(),
                    ..lock()
                },
                "control characters",
            ),
            (
                Lock {
                    series: Some(".x".into()),
                    ..lock()
                },
                "starts with '.'",
            ),
            (
                Lock {
                    started: Timestamp {
                        sec: 0,
                        nsec: 1_000_000_000,
                    },
                    ..lock()
                },
                "not a valid time",
            ),
        ] {
            let e = encode_lock("locks/x", &l, [0; 16], None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("locks/x: ") && e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn every_damage_is_refused_naming_the_object() {
        let good = encode_lock("l", &lock(), [1; 16], None).unwrap();
        let rehash = |mut b: Vec<u8>| {
            let h = blake3::hash(&b[HEADER_LEN..]);
            b[48..64].copy_from_slice(&h.as_bytes()[..16]);
            b
        };
        let mut trailing = good.clone();
        trailing.push(0);
        // An unknown lock kind (variant 4), its hash made right again.
        let unknown_kind = rehash(damage::byte(&good, HEADER_LEN, 4));
        // A valid frame whose host is empty: decodes, then fails the value check.
        let mut empty_host = good[..HEADER_LEN].to_vec();
        // kind 0, host length 0, pid 1, then the good lock's start time and series.
        let mut body = vec![0u8, 0, 1];
        body.extend_from_slice(&good[HEADER_LEN + 7 + 3..]);
        empty_host.extend_from_slice(&body);
        let len = body.len() as u64;
        let empty_host = rehash(damage::u64_at(
            &damage::u64_at(&empty_host, 32, len),
            40,
            len,
        ));
        for (bytes, why) in [
            (damage::byte(&good, 0, b'x'), "bad magic"),
            (damage::byte(&good, 10, 7), "is a pin, not a lock"),
            (damage::u64_at(&good, 40, (1 << 20) + 1), "more than"),
            (good[..HEADER_LEN - 1].to_vec(), "shorter than its header"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            (trailing, "trailing bytes"),
            (damage::byte(&good, HEADER_LEN + 2, b'X'), "damaged"),
            (unknown_kind, "does not decode"),
            (empty_host, "host name of 0 bytes"),
        ] {
            let e = refusal(&bytes);
            assert!(e.starts_with("s3://b/p/locks/x: "), "{e}");
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
