//! Stage 2 of capture: content-defined chunks, BLAKE3 dedup, zstd blocks, bounded packs and the
//! manifest; and the reader for all of it (docs/FORMAT.md).
//!
//! `writer` runs the capture pipeline (read → cut → hash → dedup → compress → pack), `reader`
//! opens an image wherever it lives and hands out verified chunks, `validate` checks a
//! manifest's structure before anything trusts it, `verify` checks every byte.

pub mod carry;
pub mod chunker;
pub mod codec;
pub mod frame;
pub mod manifest;
pub mod packer;
pub mod reader;
pub mod records;
pub mod validate;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};

/// Everything that can go wrong writing or reading a payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The bytes are not what FORMAT.md allows (no path yet: see `at`).
    #[error("{0}")]
    Format(String),
    /// The image at `path` is damaged, truncated, foreign or from a newer osimage.
    #[error("{path}: {msg}")]
    Image { path: PathBuf, msg: String },
    /// An I/O call failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The image is encrypted and nothing was given to open it.
    #[error("{path} is encrypted: give {what}")]
    NeedKey { path: PathBuf, what: &'static str },
    /// The passphrase or key given does not open the image.
    #[error("wrong passphrase or key for {}", .0.display())]
    WrongKey(PathBuf),
    /// A source file could not be captured.
    #[error("{path}: {msg}")]
    Source { path: PathBuf, msg: String },
}

impl PayloadError {
    pub(crate) fn format(msg: impl Into<String>) -> Self {
        PayloadError::Format(msg.into())
    }

    /// Names the image a format error was found in.
    pub fn at(self, path: &Path) -> Self {
        match self {
            PayloadError::Format(msg) => PayloadError::Image {
                path: path.to_path_buf(),
                msg,
            },
            other => other,
        }
    }

    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        PayloadError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
