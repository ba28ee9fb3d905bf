//! The store's `config` object (docs/STORE.md §2.1, frame kind 1): written once by `store
//! init`, read first by everything else. Its frame's nonce is the store id; it is never
//! sealed, since it says whether the store is.

use serde::{Deserialize, Serialize};

use super::ObjectError;
use super::frame::{Kind, decode_frame, encode_frame};
use crate::format::manifest::{ChunkParams, Timestamp};
use crate::format::records::MAX_BLOCK_RAW;

/// The pack size a store gets unless `store init --pack-size` says otherwise (§2.3).
pub const DEFAULT_PACK_SIZE: u32 = 32 << 20;
/// The smallest pack size a store may have.
pub const MIN_PACK_SIZE: u32 = 8 << 20;
/// The largest pack size a store may have.
pub const MAX_PACK_SIZE: u32 = 256 << 20;
/// The smallest chunking parameters FastCDC takes (its own lower bounds).
const MIN_CHUNK: u32 = 64;

/// A store's parameters. Field order is the encoding (normative, §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    pub created: Timestamp,
    pub encrypted: bool,
    /// Packs are closed once they reach this many bytes.
    pub pack_size: u32,
    /// Every capture into the store cuts with these, so identical data cuts identically.
    pub chunking: ChunkParams,
    pub zstd_level: i32,
    /// The osimage that made the store.
    pub tool_version: String,
}

impl StoreConfig {
    /// A plain store's config made now by this osimage, with the chunking every capture
    /// uses (`payload::chunker::PARAMS`).
    pub fn new(created: Timestamp, pack_size: u32, zstd_level: i32) -> StoreConfig {
        StoreConfig {
            created,
            encrypted: false,
            pack_size,
            chunking: crate::payload::chunker::PARAMS,
            zstd_level,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Whether the values are ones a capture can work with; the reason when not.
    pub fn check(&self) -> Result<(), String> {
        if !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&self.pack_size) {
            return Err(format!(
                "pack size {} is outside {} MiB to {} MiB",
                self.pack_size,
                MIN_PACK_SIZE >> 20,
                MAX_PACK_SIZE >> 20
            ));
        }
        let c = self.chunking;
        if !(MIN_CHUNK <= c.min && c.min <= c.avg && c.avg <= c.max && c.max <= MAX_BLOCK_RAW) {
            return Err(format!(
                "chunking {}/{}/{} is not min <= avg <= max within {MIN_CHUNK} to {MAX_BLOCK_RAW} \
                 bytes",
                c.min, c.avg, c.max
            ));
        }
        if !zstd::compression_level_range().contains(&self.zstd_level) {
            return Err(format!("zstd level {} does not exist", self.zstd_level));
        }
        if self.created.nsec >= 1_000_000_000 {
            return Err("the creation time is not a valid time".into());
        }
        Ok(())
    }
}

/// `config` as stored, for the store `store_id`. `name` names it in errors.
pub fn encode_config(
    name: &str,
    config: &StoreConfig,
    store_id: &[u8; 16],
) -> Result<Vec<u8>, ObjectError> {
    config.check().map_err(|e| ObjectError::new(name, e))?;
    encode_frame(name, Kind::Config, *store_id, config, None, None)
}

/// The config and store id `bytes` hold, checked as [`StoreConfig::check`] does.
pub fn decode_config(name: &str, bytes: &[u8]) -> Result<(StoreConfig, [u8; 16]), ObjectError> {
    let (h, config): (_, StoreConfig) = decode_frame(name, Kind::Config, bytes, None)?;
    config.check().map_err(|e| ObjectError::new(name, e))?;
    Ok((config, h.nonce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::frame::HEADER_LEN;

    fn config() -> StoreConfig {
        StoreConfig::new(
            Timestamp {
                sec: 1_796_500_000,
                nsec: 5,
            },
            DEFAULT_PACK_SIZE,
            3,
        )
    }

    #[test]
    fn config_round_trips_with_the_store_id_as_nonce() {
        let b = encode_config("config", &config(), &[0xa5; 16]).unwrap();
        assert_eq!(b[10], 1, "kind 1");
        assert_eq!(b[11], 0, "neither sealed nor compressed");
        assert_eq!(&b[16..32], &[0xa5; 16]);
        assert_eq!(decode_config("config", &b).unwrap(), (config(), [0xa5; 16]));
        // The body's field order: created (varint sec, nsec), encrypted, pack_size...
        let mut want = bincode::serde::encode_to_vec(
            Timestamp {
                sec: 1_796_500_000,
                nsec: 5,
            },
            bincode::config::standard(),
        )
        .unwrap();
        want.push(0);
        assert_eq!(&b[HEADER_LEN..HEADER_LEN + want.len()], &want[..]);
    }

    #[test]
    fn values_a_capture_cannot_use_are_refused_both_ways() {
        let mut bad = Vec::new();
        let mut c = config();
        c.pack_size = MIN_PACK_SIZE - 1;
        bad.push((c, "pack size"));
        let mut c = config();
        c.pack_size = MAX_PACK_SIZE + 1;
        bad.push((c, "pack size"));
        let mut c = config();
        c.chunking.min = c.chunking.avg + 1;
        bad.push((c, "chunking"));
        let mut c = config();
        c.chunking.max = MAX_BLOCK_RAW + 1;
        bad.push((c, "chunking"));
        let mut c = config();
        c.zstd_level = 99;
        bad.push((c, "zstd level"));
        for (c, why) in bad {
            let e = encode_config("s3://b/p/config", &c, &[0; 16]).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
            // A stored config with such values (written by hand) is refused on reading.
            let raw = encode_frame("config", Kind::Config, [0; 16], &c, None, None).unwrap();
            let e = decode_config("s3://b/p/config", &raw)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("s3://b/p/config: ") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn another_kind_is_not_a_config() {
        let pin = encode_frame("x", Kind::Pin, [0; 16], &config(), None, None).unwrap();
        let e = decode_config("config", &pin).unwrap_err().to_string();
        assert!(e.contains("is a pin, not a store config"), "{e}");
    }
}
