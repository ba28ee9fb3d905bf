//! `restore --to DIR` (issue #18: every restore option applies to it or is refused there): the
//! image's files into a directory, no disk touched, then the per-machine changes a disk
//! restore makes on the assembled tree, made on DIR: generalize and the hostname
//! (`generalize`), the overlay (`overlay`). Options about disks (new UUIDs, NVRAM, initramfs
//! drivers, the default layout, force) mean nothing here; the command line refuses them.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::generalize::{self, GeneralizeOptions};
use super::mounts::{self, Mounts};
use super::prepare::{SYS_CLASS_NET, check_overlay, resolve_hostname, write_per_machine};
use super::{RestoreError, grub, overlay, restore_to_dir};
use crate::payload::reader::PayloadReader;
use crate::progress::Progress;

/// What to do besides the files.
#[derive(Clone, Debug, Default)]
pub struct DirRequest {
    /// Threads writing file data.
    pub threads: usize,
    /// Generalize the tree (`--generalize`, `--hostname`; docs/GENERALIZE.md).
    pub generalize: GeneralizeOptions,
    /// Per-machine files copied over the tree last (`--overlay DIR`).
    pub overlay: Option<PathBuf>,
}

impl DirRequest {
    /// The checks made before anything is written: the hostname rule resolved on this
    /// machine (returned), the overlay a directory.
    pub fn check(&self) -> Result<Option<String>, RestoreError> {
        let hostname = resolve_hostname(&self.generalize)?;
        check_overlay(self.overlay.as_deref())?;
        Ok(hostname)
    }
}

/// The per-machine part of the plan (as `osimage restore` prints it for a disk); empty when
/// there is none.
impl fmt::Display for DirRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_per_machine(f, &self.generalize, self.overlay.as_deref())
    }
}

/// What a restore into a directory did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirReport {
    pub dir: PathBuf,
    /// Entries created or (the root) applied to DIR.
    pub entries: u64,
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Bytes of file data written.
    pub bytes_written: u64,
    /// Problems that did not stop the restore (each reported with `Progress::note`).
    pub warnings: u64,
    /// The hostname the tree got (`--hostname`, its rule resolved on this machine).
    pub hostname: Option<String>,
    /// One line per per-machine change (generalize, overlay), as a disk restore logs them.
    pub changes: Vec<String>,
}

/// Restores the image's files into `dir` (missing or empty), then generalizes the tree and
/// copies the overlay over it. The checks run first: nothing is written when they fail.
pub fn restore_into_dir(
    reader: &PayloadReader,
    dir: &Path,
    request: &DirRequest,
    progress: &dyn Progress,
) -> Result<DirReport, RestoreError> {
    let hostname = request.check()?;
    let r = restore_to_dir(reader, dir, request.threads, progress)?;
    let changes = per_machine(dir, request, progress)?;
    if !changes.is_empty() {
        let f = std::fs::File::open(dir).map_err(|e| RestoreError::io("opening", dir, e))?;
        rustix::fs::syncfs(&f).map_err(|e| RestoreError::io("syncing", dir, e.into()))?;
    }
    Ok(DirReport {
        dir: dir.to_path_buf(),
        entries: r.entries,
        files: r.files,
        bytes_written: r.bytes_written,
        warnings: r.warnings,
        hostname,
        changes,
    })
}

/// Generalize, then the overlay, on the tree at `dir`; one line per change.
fn per_machine(
    dir: &Path,
    request: &DirRequest,
    progress: &dyn Progress,
) -> Result<Vec<String>, RestoreError> {
    let mut changes = Vec::new();
    if !request.generalize.is_empty() {
        let run_in_tree = |args: &[&OsStr]| run_chrooted(dir, args, progress);
        changes.extend(generalize::generalize(
            dir,
            &request.generalize,
            &run_in_tree,
            Path::new(SYS_CLASS_NET),
        )?);
    }
    if let Some(o) = &request.overlay {
        for p in overlay::apply_overlay(o, dir)? {
            changes.push(format!("overlay {}: {p}", o.display()));
        }
    }
    Ok(changes)
}

/// Runs a program of the tree at `dir` chrooted into it, with the running system's `/dev`,
/// `/proc` and `/sys` (`grub::assemble`, as a disk restore does; `ssh-keygen -A` for
/// generalize), in a private mount namespace where the kernel allows one.
fn run_chrooted(
    dir: &Path,
    args: &[&OsStr],
    progress: &dyn Progress,
) -> Result<String, RestoreError> {
    let staging = mounts::private_staging(&|m| progress.note(m))?;
    let mut mounts = Mounts::default();
    let part = grub::Part {
        mount_point: "/",
        dir,
    };
    let ran = grub::assemble(&[part], &staging, &mut mounts).and_then(|c| c.run(args, dir));
    let unmounted = mounts.unmount_all();
    let _ = std::fs::remove_dir(staging.join("tree"));
    let _ = std::fs::remove_dir(&staging);
    let out = ran?;
    unmounted?;
    Ok(out)
}
