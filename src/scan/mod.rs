//! Stage 1 of capture: walk a root and describe every entry (docs/DESIGN: scan).
//!
//! `scan()` turns a capture root plus exclude rules into `ScannedEntry`s: each one a manifest
//! `Entry` (path, kind, metadata, xattrs) and the absolute path to read its content from.
//! Regular files come out as `EntryKind::File { size, runs: vec![] }`; the payload stage fills
//! `runs` while it reads them through `content::SourceFile`.

pub mod content;

use std::path::PathBuf;

use crate::payload::manifest::{CapturedFs, Entry};

/// What to capture and what to leave out.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Stay on the root's own filesystem (default: every local block-backed filesystem
    /// mounted at or under the root).
    pub one_file_system: bool,
    /// rsync-like glob patterns (docs/EXCLUDES.md).
    pub excludes: Vec<String>,
    /// Files holding one pattern a line (`#` comments, blank lines ignored).
    pub exclude_from: Vec<PathBuf>,
    /// Absolute paths never captured (the output file and its temporary name).
    pub skip_paths: Vec<PathBuf>,
    /// Report unreadable paths and go on instead of failing.
    pub keep_going: bool,
}

/// One entry found by the walk.
#[derive(Clone, Debug)]
pub struct ScannedEntry {
    pub entry: Entry,
    /// Where to read it from on this machine.
    pub source: PathBuf,
}

/// A path the scan could not read (only with `keep_going`).
#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything the walk found.
#[derive(Clone, Debug, Default)]
pub struct ScanResult {
    /// Parents before children; the root itself first, with the empty path.
    pub entries: Vec<ScannedEntry>,
    pub filesystems: Vec<CapturedFs>,
    pub users: Vec<(u32, String)>,
    pub groups: Vec<(u32, String)>,
    pub skipped: Vec<Skipped>,
}
