//! A pin (docs/STORE.md §2.7, §9.3, frame kind 7): keep one version of a series until a time,
//! whatever the retention rules say, for machines that boot it by URL and hold no lock. Its
//! name is random (`pins/<32 hex>`); a pin whose `until` has passed is deleted by a prune.

use serde::{Deserialize, Serialize};

use super::ObjectError;
use super::frame::{Kind, decode_frame, encode_frame};
use crate::format::manifest::Timestamp;
use crate::store::crypt::StoreKeys;
use crate::store::names;

/// The longest reason a pin carries.
pub const MAX_WHY: usize = 1024;

/// One pin. Field order is the encoding (normative, §2.7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub series: String,
    pub version: String,
    /// Kept until this time (UTC, by the pinning machine's clock).
    pub until: Timestamp,
    /// Why, for `store ls -l` (may be empty).
    pub why: String,
}

impl Pin {
    /// Whether the values are ones a writer makes: a well-formed series and version string,
    /// a valid time, a reason of at most 1 KiB without control characters.
    pub fn check(&self) -> Result<(), String> {
        names::check_series(&self.series)?;
        if names::parse_version(&self.version).is_none() {
            return Err(format!("{:?} is not a version string", self.version));
        }
        if self.until.nsec >= 1_000_000_000 {
            return Err("the time it keeps the version until is not a valid time".into());
        }
        if self.why.len() > MAX_WHY {
            return Err(format!(
                "a reason of {} bytes (at most {MAX_WHY})",
                self.why.len()
            ));
        }
        if self.why.chars().any(char::is_control) {
            return Err("the reason holds control characters".into());
        }
        Ok(())
    }
}

/// The pin `pin` as stored under `name`, with the frame nonce `nonce`; sealed with `keys` in
/// an encrypted store (STORE.md §6: a pin names its series).
pub fn encode_pin(
    name: &str,
    pin: &Pin,
    nonce: [u8; 16],
    keys: Option<&StoreKeys>,
) -> Result<Vec<u8>, ObjectError> {
    pin.check().map_err(|e| ObjectError::new(name, e))?;
    encode_frame(name, Kind::Pin, nonce, pin, None, keys)
}

/// The pin the object `bytes` named `name` holds, checked as [`Pin::check`] does; an
/// encrypted store's (`keys`) must be sealed, a plain store's must not.
pub fn decode_pin(name: &str, bytes: &[u8], keys: Option<&StoreKeys>) -> Result<Pin, ObjectError> {
    let (_, pin): (_, Pin) = decode_frame(name, Kind::Pin, bytes, keys)?;
    pin.check().map_err(|e| ObjectError::new(name, e))?;
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::damage;
    use crate::store::objects::frame::HEADER_LEN;

    /// The pin of the fuzz seeds (fuzz/seeds/store_pin/seed, nonce 7s; sealed,
    /// fuzz/seeds/store_sealed/pin: tests/fuzz_regressions.rs).
    fn pin() -> Pin {
        Pin {
            series: "web01".into(),
            version: "20261205T195045Z-3fa2c81d09be4471".into(),
            until: Timestamp {
                sec: 1_797_000_000,
                nsec: 0,
            },
            why: "netboot of rack 4".into(),
        }
    }

    #[test]
    fn an_encrypted_stores_pins_are_sealed_and_refused_plain() {
        use crate::envelope::DataKey;
        let k = StoreKeys::new(DataKey([5; 32]), [6; 16]);
        let b = encode_pin("p", &pin(), [9; 16], Some(&k)).unwrap();
        assert_eq!(b[11] & 1, 1, "flag bit 0: sealed");
        assert!(
            !b.windows(5).any(|w| w == b"web01"),
            "no series name in the clear"
        );
        assert_eq!(decode_pin("p", &b, Some(&k)), Ok(pin()));
        assert!(
            decode_pin("p", &b, None).is_err(),
            "sealed, in a plain store"
        );
        let plain = encode_pin("p", &pin(), [9; 16], None).unwrap();
        assert!(
            decode_pin("p", &plain, Some(&k)).is_err(),
            "plain, in an encrypted store"
        );
    }

    #[test]
    fn pins_round_trip_as_kind_7() {
        let b = encode_pin("p", &pin(), [9; 16], None).unwrap();
        assert_eq!((b[10], b[11]), (7, 0));
        assert_eq!(decode_pin("p", &b, None), Ok(pin()));
        let bare = Pin {
            why: String::new(),
            ..pin()
        };
        assert_eq!(
            decode_pin("p", &encode_pin("p", &bare, [0; 16], None).unwrap(), None),
            Ok(bare)
        );
    }

    #[test]
    fn the_fuzz_seed_is_a_valid_pin() {
        let seed = include_bytes!("../../../fuzz/seeds/store_pin/seed");
        assert_eq!(decode_pin("seed", seed, None), Ok(pin()));
        assert_eq!(encode_pin("seed", &pin(), [7; 16], None).unwrap(), seed);
    }

    #[test]
    fn what_a_writer_never_makes_is_not_written() {
        for (p, why) in [
            (
                Pin {
                    series: ".x".into(),
                    ..pin()
                },
                "starts with '.'",
            ),
            (
                Pin {
                    version: "latest".into(),
                    ..pin()
                },
                "not a version string",
            ),
            (
                Pin {
                    until: Timestamp {
                        sec: 1,
                        nsec: 1_000_000_000,
                    },
                    ..pin()
                },
                "not a valid time",
            ),
            (
                Pin {
                    why: "w".repeat(MAX_WHY + 1),
                    ..pin()
                },
                "at most 1024",
            ),
            (
                Pin {
                    why: "a\u{1b}[31m".into(),
                    ..pin()
                },
                "control characters",
            ),
        ] {
            let e = encode_pin("pins/x", &p, [0; 16], None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("pins/x: ") && e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn every_damage_is_refused_naming_the_object() {
        let good = encode_pin("p", &pin(), [1; 16], None).unwrap();
        let rehash = |mut b: Vec<u8>| {
            let h = blake3::hash(&b[HEADER_LEN..]);
            b[48..64].copy_from_slice(&h.as_bytes()[..16]);
            b
        };
        let mut trailing = good.clone();
        trailing.push(0);
        // The series' first byte made '.', the hash made right: decodes, fails the check.
        let dotted = rehash(damage::byte(&good, HEADER_LEN + 1, b'.'));
        // The version's first digit made a letter: not a version string.
        let bad_version = rehash(damage::byte(&good, HEADER_LEN + 7, b'x'));
        for (bytes, why) in [
            (damage::byte(&good, 0, b'x'), "bad magic"),
            (damage::byte(&good, 10, 3), "is a lock, not a pin"),
            (damage::byte(&good, 11, 4), "unknown flags"),
            (damage::byte(&good, 12, 1), "reserved"),
            (damage::u64_at(&good, 40, (1 << 20) + 1), "more than"),
            (good[..10].to_vec(), "shorter than its header"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            (trailing, "trailing bytes"),
            (damage::byte(&good, HEADER_LEN + 3, b'X'), "damaged"),
            (dotted, "starts with '.'"),
            (bad_version, "not a version string"),
        ] {
            let e = decode_pin("s3://b/p/pins/x", &bytes, None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("s3://b/p/pins/x: "), "{e}");
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
