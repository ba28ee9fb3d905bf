//! Where a capture writes: the checked root and output, the snapshot it may read from, and the
//! temporary names beside the output (mode 0600): `.osimage-partial-*` for the image and, for
//! an ISO, an `.osimage-work-*` folder for the boot side. The image is renamed into place last,
//! synced, so an interrupted capture leaves nothing that looks like an image (issue #2 "Bad
//! input", issue #7 "Faults").

use std::fs::File;
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempDir};

use super::snapshot::{Snapshot, SnapshotError};
use super::{CaptureError, CaptureOptions};
use crate::format::PayloadError;
use crate::progress::Progress;
use crate::scan::{ScanOptions, Skipped};

/// The capture's root, output and temporary names, from the checks until the rename.
pub(super) struct Staging {
    // Fields drop in this order on a failure: the work folder, the temporary image, then the
    // snapshot.
    /// The boot side's work folder (ISO output only).
    pub work: Option<TempDir>,
    /// The image under its temporary name.
    pub tmp: NamedTempFile,
    /// What the scan reads instead of `root` (`--snapshot`).
    pub snap: Option<Snapshot>,
    /// ROOT, canonical.
    pub root: PathBuf,
    /// OUTPUT, absolute.
    pub output: PathBuf,
}

/// ROOT and OUTPUT, checked; nothing made yet.
pub(super) struct Checked {
    /// ROOT, canonical.
    pub root: PathBuf,
    /// OUTPUT, absolute.
    pub output: PathBuf,
}

impl Checked {
    /// Checks ROOT (a directory) and OUTPUT (writable, not in the way unless --force).
    pub fn new(opts: &CaptureOptions) -> Result<Self, CaptureError> {
        let root = std::fs::canonicalize(&opts.root).map_err(|e| {
            CaptureError::Usage(format!("capture root {}: {e}", opts.root.display()))
        })?;
        if !root.is_dir() {
            return Err(CaptureError::Usage(format!(
                "capture root {} is not a directory",
                root.display()
            )));
        }
        let output = check_output(&opts.output, opts.force)?;
        Ok(Checked { root, output })
    }
}

impl Staging {
    /// Takes the snapshot, then creates the temporary names (after the snapshot, so it holds
    /// none of them).
    pub fn prepare(
        checked: Checked,
        opts: &CaptureOptions,
        progress: &dyn Progress,
    ) -> Result<Self, CaptureError> {
        let Checked { root, output } = checked;
        let iso = is_iso(&output);
        let snap = if opts.snapshot {
            let s = Snapshot::take(&root, &opts.scan, progress)?;
            progress.status(&format!("capturing from {}", s.describe()));
            Some(s)
        } else {
            None
        };
        let dir = parent(&output);
        let tmp = tempfile::Builder::new()
            .prefix(".osimage-partial-")
            .tempfile_in(dir)
            .map_err(|e| PayloadError::io("cannot create a temporary file in", dir, e))?;
        let work = if iso {
            Some(
                tempfile::Builder::new()
                    .prefix(".osimage-work-")
                    .tempdir_in(dir)
                    .map_err(|e| PayloadError::io("cannot create a work folder in", dir, e))?,
            )
        } else {
            None
        };
        Ok(Staging {
            work,
            tmp,
            snap,
            root,
            output,
        })
    }

    /// What the scan walks: the snapshot's view of ROOT, or ROOT itself.
    pub fn scan_root(&self) -> &Path {
        self.snap.as_ref().map_or(self.root.as_path(), |s| s.root())
    }

    /// `scan` with the output, the temporary names and a refresh's `base` left out, in ROOT
    /// and in the snapshot's view of it alike (issue #24: images never nest; the scan also
    /// leaves out any other osimage image it finds).
    pub fn scan_options(&self, scan: &ScanOptions, base: Option<&Path>) -> ScanOptions {
        let mut opts = scan.clone();
        opts.skip_paths.push(self.output.clone());
        if let Some(b) = base.and_then(|b| std::fs::canonicalize(b).ok()) {
            opts.skip_paths.push(b);
        }
        opts.skip_paths.push(self.tmp.path().to_path_buf());
        if let Some(w) = &self.work {
            opts.skip_paths.push(w.path().to_path_buf());
        }
        let scan_root = self.scan_root();
        if scan_root != self.root {
            // What is left out of ROOT is left out of its snapshot's view too.
            let inside: Vec<PathBuf> = opts
                .skip_paths
                .iter()
                .filter_map(|p| Some(scan_root.join(p.strip_prefix(&self.root).ok()?)))
                .collect();
            opts.skip_paths.extend(inside);
        }
        opts
    }

    /// What the scan left out that a user should hear of: all but the capture's own
    /// temporary names.
    pub fn left_out(&self, omitted: Vec<Skipped>) -> Vec<Skipped> {
        let tmp = self.tmp.path().file_name();
        let work = self.work.as_ref().and_then(|w| w.path().file_name());
        omitted
            .into_iter()
            .filter(|s| {
                let name = s.path.file_name();
                name != tmp && (work.is_none() || name != work)
            })
            .collect()
    }

    /// The temporary image's file, opened again for a writer.
    pub fn reopen(&self) -> Result<File, PayloadError> {
        self.tmp
            .as_file()
            .try_clone()
            .map_err(|e| PayloadError::io("cannot write", self.tmp.path(), e))
    }

    /// The container is written: the snapshot is no longer needed.
    pub fn release_snapshot(&mut self) -> Result<(), SnapshotError> {
        match self.snap.take() {
            Some(s) => s.release(),
            None => Ok(()),
        }
    }

    /// Syncs the temporary image to disk; returns its file, for its size.
    pub fn sync(&self) -> Result<File, PayloadError> {
        let file = self
            .tmp
            .as_file()
            .try_clone()
            .map_err(|e| PayloadError::io("cannot open", self.tmp.path(), e))?;
        file.sync_all()
            .map_err(|e| PayloadError::io("cannot sync", self.tmp.path(), e))?;
        Ok(file)
    }

    /// Renames the finished image (`file`, synced) into place and syncs its folder; returns
    /// the output's path and size. The work folder goes with `self`.
    pub fn persist(self, file: &File) -> Result<(PathBuf, u64), PayloadError> {
        let size = file
            .metadata()
            .map_err(|e| PayloadError::io("cannot stat", self.tmp.path(), e))?
            .len();
        self.tmp
            .persist(&self.output)
            .map_err(|e| PayloadError::io("cannot rename into place", &self.output, e.error))?;
        sync_dir(parent(&self.output));
        Ok((self.output, size))
    }
}

/// Whether OUTPUT names a bootable ISO: a `.iso` suffix in any case (`t.ISO` too, issue #24).
fn is_iso(output: &Path) -> bool {
    output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("iso"))
}

/// OUTPUT, absolute, once it is known to be something a capture can write (issue #24 item 11):
/// not `-` (an image is never written to standard output: it is renamed into place), not an
/// existing directory (even with --force, a directory is never replaced), and not an existing
/// file unless --force.
fn check_output(given: &Path, force: bool) -> Result<PathBuf, CaptureError> {
    if given.as_os_str() == "-" {
        return Err(CaptureError::Argument(
            "-o -: an image cannot be written to standard output (it is written under a \
             temporary name and renamed into place); name a file, e.g. -o system.iso"
                .into(),
        ));
    }
    let output = absolute(given)?;
    match output.symlink_metadata() {
        Ok(m) if m.is_dir() => Err(CaptureError::Usage(format!(
            "{} is a directory: name the image file to write, e.g. -o {}",
            output.display(),
            output.join("system.iso").display()
        ))),
        Ok(_) if !force => Err(CaptureError::Usage(format!(
            "{} already exists (use --force to replace it)",
            output.display()
        ))),
        _ => Ok(output),
    }
}

/// The folder the output and its temporary names are in.
fn parent(output: &Path) -> &Path {
    output.parent().unwrap_or(Path::new("/"))
}

fn absolute(p: &Path) -> Result<PathBuf, CaptureError> {
    std::path::absolute(p).map_err(|e| CaptureError::Usage(format!("output {}: {e}", p.display())))
}

/// fsync a directory so a rename in it survives a crash (best effort).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
