//! What can stop a scan: every variant names the path and the problem, and says what to do.

use std::io;
use std::path::PathBuf;

/// Why `scan` or `plan_filesystems` failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A system file the scan needs (the capture root, /proc/self/mountinfo, an exclude file)
    /// could not be read.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A path inside the tree could not be read (without `keep_going`).
    #[error(
        "cannot {op} {}: {source} (fix its permissions, exclude it, or pass --keep-going to skip it)",
        path.display()
    )]
    Unreadable {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory was replaced between the walk's `lstat` and opening it (STYLE.md #10).
    #[error("{} changed while it was being scanned ({what}); run the capture again", path.display())]
    Changed { path: PathBuf, what: &'static str },
    /// A line of the mount table did not have the documented shape (proc(5), mountinfo).
    #[error("{}: line {line}: malformed mount table entry: {reason}", path.display())]
    Mountinfo {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// An exclude pattern could not be compiled (docs/EXCLUDES.md).
    #[error("invalid exclude pattern {pattern:?} (from {origin}): {reason}")]
    Pattern {
        pattern: String,
        origin: String,
        reason: String,
    },
    /// The capture root exists but is not a directory.
    #[error("{}: the capture root must be a directory", path.display())]
    NotADirectory { path: PathBuf },
}

impl ScanError {
    /// Whether this is a usage error (exit 2): a malformed `--exclude` pattern.
    pub fn is_usage(&self) -> bool {
        matches!(self, ScanError::Pattern { .. })
    }
}
