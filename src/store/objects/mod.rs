//! The store's objects as bytes (docs/STORE.md §2): the small-object frame every `config`,
//! index, lock, condemnation and pin shares (§2.1), the locks, condemnations and pins of §2.7,
//! and the version object (§2.5). The Rust
//! definitions here are normative for field order, as `format::manifest` is for the
//! manifest; bodies are bincode 2 `config::standard()` as the manifest's (FORMAT.md §5).
//!
//! Every decoder takes the object's name for its messages, bounds every length before it
//! allocates, and checks the stored hash before it decodes: objects come from a server.

pub mod config;
pub mod frame;
pub mod index;
pub mod lock;
pub mod pin;
pub mod prune;
pub mod version;

pub use config::{
    DEFAULT_PACK_SIZE, MAX_PACK_SIZE, MIN_PACK_SIZE, StoreConfig, decode_config, encode_config,
};
pub use frame::{FrameHeader, Kind, STORE_FORMAT_VERSION};
pub use index::{
    IndexBlock, IndexChunk, IndexPack, StoreIndex, decode_index, encode_index, index_object_name,
};
pub use lock::{Lock, LockKind, decode_lock, encode_lock};
pub use pin::{Pin, decode_pin, encode_pin};
pub use prune::{
    Condemnation, Swept, Wait, decode_condemnation, decode_swept, decode_wait, encode_condemnation,
    encode_swept, encode_wait,
};
pub use version::{
    BlobRef, RescueBlobs, VersionHead, VersionPrefix, VersionSummary, check_frame, decode_head,
    decode_head_sealed, decode_version, decode_version_prefix, encode_version, encode_version_with,
};

/// An object that is not what its name says: it names the object and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {problem}")]
pub struct ObjectError {
    /// The object, as messages show it (its `s3://` address, or its key).
    pub object: String,
    pub problem: String,
}

impl ObjectError {
    pub fn new(object: &str, problem: impl Into<String>) -> ObjectError {
        ObjectError {
            object: object.to_string(),
            problem: problem.into(),
        }
    }
}

/// The bincode configuration of every body (FORMAT.md §5), with a decode limit: no hostile
/// length inside a body makes the decoder claim more than the largest body allowed.
fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// `value`'s bincode encoding.
fn encode_body<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, bincode_config()).map_err(|e| format!("encoding: {e}"))
}

/// Decodes `bytes`, which must hold exactly one `T`.
fn decode_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let cfg = bincode_config().with_limit::<{ frame::MAX_INDEX_RAW as usize }>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, cfg)
        .map_err(|e| format!("the body does not decode: {e}"))?;
    if used != bytes.len() {
        return Err(format!(
            "the body has {} trailing bytes after what it encodes",
            bytes.len() - used
        ));
    }
    Ok(value)
}

/// Damaged copies of a good object, for the decoders' tests.
#[cfg(test)]
pub(crate) mod damage {
    /// `good` with byte `at` set to `v`.
    pub fn byte(good: &[u8], at: usize, v: u8) -> Vec<u8> {
        let mut b = good.to_vec();
        b[at] = v;
        b
    }

    /// `good` with the little-endian u64 at `at` set to `v`.
    pub fn u64_at(good: &[u8], at: usize, v: u64) -> Vec<u8> {
        let mut b = good.to_vec();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        b
    }
}
