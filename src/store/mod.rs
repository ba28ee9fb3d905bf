//! The image store on object storage (docs/STORE.md): a fleet's images under one
//! `s3://BUCKET/PREFIX/`, sharing their packs. Row 5 of docs/DESIGN.md's layer table.
//!
//! `address` parses store and image addresses (§1), `names` the object keys of §2 and the
//! version strings of §2.5, `objects` encodes and decodes the objects themselves (§2.1, §2.4,
//! §2.5: the Rust definitions there are normative), and `open` is a [`Store`]: the config
//! read, versions listed, heads read, index and version objects written, through
//! `remote::s3::S3Client`. A capture goes into a store through `dedup` (the store as the
//! payload writer's base: its blocks referenced where they lie) and `upload` (packs PUT as
//! they close); `read` opens a version as an image; `rescue` stores and reads the rescue
//! blobs (§2.6); `export` copies a version's manifest frame and packs out, checked (§8).
//! `locks` takes, refreshes, lists and removes the shared locks of §2.7 (their windows in
//! `times`); `stats` counts what `store ls --stats` shows. `retention` decides which versions
//! a prune keeps (§5.4) and `prune` condemns and sweeps (§5.2), and reads what earlier prunes
//! left for captures and readers. `crypt` unlocks an encrypted store (§6): its key objects,
//! the per-object stream keys and the keyed names; every command opens a store through
//! `Store::open_unlocked` (`Store::open` is for callers that take plain stores only, and
//! refuses an encrypted one).

mod address;
pub mod check;
mod check_data;
pub mod checkpoint;
pub mod compact;
pub mod crypt;
pub mod dedup;
pub mod export;
pub mod import;
pub mod index_cache;
pub mod key_objects;
pub mod locks;
pub mod names;
pub mod netboot;
pub mod objects;
mod open;
pub mod pack_check;
pub mod prune;
pub mod read;
pub mod rescue;
pub mod retention;
pub mod source_conf;
mod stats;
mod times;
pub mod upload;
pub mod version_keys;

pub use address::{ImageAddress, StoreRoot};
pub use locks::{HeldLock, ListedLock, StoreTimes};
pub use objects::ObjectError;
pub use open::{HEAD_READ, ListedVersion, Store};
pub use stats::{LockStatus, StoreStats};
pub use times::parse_window;

use crate::remote::s3::S3Error;

/// What went wrong with a store: its address, its objects, or a request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A malformed `s3://` address, series name or version (exit status 2).
    #[error("{0}")]
    Address(String),
    /// `store init` where a store exists already.
    #[error("an osimage store already exists at {0}")]
    Exists(String),
    /// No `config` under the prefix.
    #[error("no osimage store at {0} (osimage store init {0})")]
    NoStore(String),
    /// An object that does not decode, fails its hash, or says something else than its name.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// What this build cannot do with an existing store (an encrypted one, a newer format).
    #[error("{0}")]
    Unsupported(String),
    /// A malformed setting (`OSIMAGE_STORE_TIMES`; exit status 2).
    #[error("{0}")]
    Setting(String),
    /// Refused by the store's state: another prune is running, a version is forgotten or
    /// pinned (§5.1, §5.2, §5.6).
    #[error("{0}")]
    Refused(String),
    /// The holder's lock went too long without a refresh to commit (§4.3 step 4).
    #[error("{0}")]
    LockLapsed(String),
    #[error(transparent)]
    S3(#[from] S3Error),
    /// An encrypted store's key objects: none opens (a wrong or missing passphrase or
    /// identity), or one is damaged (§2.2).
    #[error(transparent)]
    Unlock(Box<crate::format::PayloadError>),
}

impl StoreError {
    /// Whether the error is the user's input rather than the store's state (exit status 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StoreError::Address(_)
                | StoreError::Setting(_)
                | StoreError::S3(S3Error::Address(_) | S3Error::Settings(_))
        )
    }
}

/// `N` random bytes from the kernel (salts and nonces: they need uniqueness, not secrecy, but
/// the kernel's are both).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    crate::sys::random_bytes()
        .map_err(|e| StoreError::Unsupported(format!("no random bytes from the kernel: {e}")))
}
