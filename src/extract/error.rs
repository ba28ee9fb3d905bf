//! What can stop an extract. Every message names the entry or file and the problem.

use std::io;
use std::path::PathBuf;

/// Why an extract stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The manifest holds an entry extract refuses to create (checked before anything is
    /// written).
    #[error("image entry {index} {path:?}: {reason}")]
    BadEntry {
        index: u32,
        /// The entry's path as stored (lossy UTF-8).
        path: String,
        reason: String,
    },
    /// A path given to select what to extract is not in the image (or is malformed).
    #[error("{path:?} is not in the image{reason}")]
    UnknownPath { path: String, reason: &'static str },
    /// The destination directory exists and is not empty, or cannot be used.
    #[error("destination {}: {reason}", dest.display())]
    Dest { dest: PathBuf, reason: String },
    /// A system call on a file under the destination failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What extract was doing ("creating", "writing", "setting the owner of", ...).
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Chunk bytes could not be read from the image.
    #[error("reading the data of {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ExtractError {
    pub(crate) fn io(op: &'static str, path: PathBuf, source: impl Into<io::Error>) -> Self {
        ExtractError::Io {
            op,
            path,
            source: source.into(),
        }
    }
}
