//! The one error type of the format and of everything that writes or reads an image with it.

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
