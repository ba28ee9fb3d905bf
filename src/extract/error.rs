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
    /// A file could not be written whole (its data failed its hash, the disk was full) and
    /// was removed again, so no cut-off file is left looking complete (issue #24).
    #[error("{cause}; {} was removed, not left incomplete", cause.path().display())]
    Removed { cause: Box<ExtractError> },
}

impl ExtractError {
    /// Says that the file this error names was removed again.
    pub(crate) fn removed(self) -> Self {
        ExtractError::Removed {
            cause: Box::new(self),
        }
    }

    /// The file or entry this error is about.
    fn path(&self) -> PathBuf {
        match self {
            ExtractError::Io { path, .. } | ExtractError::Read { path, .. } => path.clone(),
            ExtractError::Dest { dest, .. } => dest.clone(),
            ExtractError::BadEntry { path, .. } | ExtractError::UnknownPath { path, .. } => {
                PathBuf::from(path)
            }
            ExtractError::Removed { cause } => cause.path(),
        }
    }

    pub(crate) fn io(op: &'static str, path: PathBuf, source: impl Into<io::Error>) -> Self {
        ExtractError::Io {
            op,
            path,
            source: source.into(),
        }
    }
}
