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
    /// The extract stopped and what it had created under the destination was removed again
    /// (or, where that failed, `left` names what is still there), so no half-made tree of
    /// 0700 directories and 0600 files is left looking like an extract (issue #20 item 8).
    #[error("{cause}; {}", undone_note(dest, left))]
    Undone {
        cause: Box<ExtractError>,
        dest: PathBuf,
        /// What could not be removed, with why (empty: the destination is as it was).
        left: Vec<String>,
    },
}

fn undone_note(dest: &std::path::Path, left: &[String]) -> String {
    if left.is_empty() {
        format!(
            "everything this extract had created in {} was removed again",
            dest.display()
        )
    } else {
        format!(
            "what this extract had created in {} was removed again but for (incomplete, \
             remove it by hand): {}",
            dest.display(),
            left.join("; ")
        )
    }
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
            ExtractError::Removed { cause } | ExtractError::Undone { cause, .. } => cause.path(),
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
