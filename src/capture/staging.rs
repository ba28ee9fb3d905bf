//! Where a capture writes: the checked root and output, the snapshot it may read from, and the
//! temporary names beside the output (mode 0600): `.osimage-partial-PID-*` for the image and,
//! for an ISO, an `.osimage-work-PID-*` folder for the boot side. The image is renamed into
//! place last, synced, so an interrupted capture leaves nothing that looks like an image
//! (issue #2 "Bad input", issue #7 "Faults").
//!
//! Nor does it leave the temporary names (issue #24 item 2): they go on an error (dropped), on
//! SIGINT, SIGTERM or SIGHUP (`interrupt`), and what a killed capture (SIGKILL, a power cut)
//! left is removed by the next capture into the same folder once it can prove no process owns
//! it: each capture holds an exclusive `flock` on its temporary file and work folder while it
//! runs, and its process id is in their names (a name whose process is alive is never touched,
//! whatever the lock says, so one just created and not yet locked is safe).

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use tempfile::{NamedTempFile, TempDir};

use super::interrupt::{Interrupts, OnInterrupt};
use super::snapshot::{Snapshot, SnapshotError};
use super::{CaptureError, CaptureOptions};
use crate::format::PayloadError;
use crate::progress::Progress;
use crate::scan::{ScanOptions, Skipped};

/// The capture's root, output and temporary names, from the checks until the rename.
pub(super) struct Staging {
    // Fields drop in this order on a failure: the work folder, the temporary image, then the
    // snapshot; the signal handling last.
    /// The boot side's work folder (ISO output only), and its lock (held while alive).
    pub work: Option<TempDir>,
    _work_lock: Option<File>,
    /// The image under its temporary name (its file locked while alive).
    pub tmp: NamedTempFile,
    /// What the scan reads instead of `root` (`--snapshot`).
    pub snap: Option<Snapshot>,
    /// ROOT, canonical.
    pub root: PathBuf,
    /// OUTPUT, absolute.
    pub output: PathBuf,
    /// Stale temporary names of earlier, dead captures that were removed.
    pub removed_stale: Vec<PathBuf>,
    /// Mount points (absolute, under ROOT) of filesystems the scan leaves out whole: the
    /// output's when the system's fstab does not mount it (issue #24).
    pub left_out_fs: Vec<PathBuf>,
    /// The temporary names removed on a signal.
    _on_interrupt: Vec<OnInterrupt>,
    /// Takes SIGINT, SIGTERM and SIGHUP while the capture runs.
    _interrupts: Interrupts,
}

/// The prefixes of a capture's temporary names; the process id and a random part follow.
const PARTIAL: &str = ".osimage-partial-";
const WORK: &str = ".osimage-work-";

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
        let root = checked_root(opts)?;
        let output = check_output(&opts.output, opts.force)?;
        Ok(Checked { root, output })
    }
}

/// ROOT, canonical, when it is a directory.
pub(super) fn checked_root(opts: &CaptureOptions) -> Result<PathBuf, CaptureError> {
    let root = std::fs::canonicalize(&opts.root)
        .map_err(|e| CaptureError::Usage(format!("capture root {}: {e}", opts.root.display())))?;
    if !root.is_dir() {
        return Err(CaptureError::Usage(format!(
            "capture root {} is not a directory",
            root.display()
        )));
    }
    Ok(root)
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
        // Signals first: nothing this capture makes from here on outlives an interrupt.
        let interrupts = Interrupts::start();
        let snap = if opts.snapshot {
            let s = Snapshot::take(&root, &opts.scan, progress, &interrupts)?;
            progress.status(&format!("capturing from {}", s.describe()));
            Some(s)
        } else {
            None
        };
        let dir = parent(&output);
        let removed_stale = remove_stale(dir);
        let pid = std::process::id();
        let mut on_interrupt = Vec::new();
        // Registered before anything is made, so a signal between making a name and
        // registering it (below) leaves nothing either: every temporary name of this process
        // in `dir`, found by its pid. Runs last (newest first), after the named removals.
        let sweep_dir = dir.to_path_buf();
        on_interrupt
            .push(interrupts.on_interrupt(String::new(), move || remove_own(&sweep_dir, pid)));
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{PARTIAL}{pid}-"))
            .tempfile_in(dir)
            .map_err(|e| PayloadError::io("cannot create a temporary file in", dir, e))?;
        let path = tmp.path().to_path_buf();
        on_interrupt.push(
            interrupts.on_interrupt(path.display().to_string(), move || {
                let _ = std::fs::remove_file(&path);
            }),
        );
        lock(tmp.as_file(), tmp.path())?;
        let (work, work_lock) = if iso {
            let w = tempfile::Builder::new()
                .prefix(&format!("{WORK}{pid}-"))
                .tempdir_in(dir)
                .map_err(|e| PayloadError::io("cannot create a work folder in", dir, e))?;
            let path = w.path().to_path_buf();
            on_interrupt.push(
                interrupts.on_interrupt(path.display().to_string(), move || remove_dir(&path)),
            );
            let f =
                File::open(w.path()).map_err(|e| PayloadError::io("cannot open", w.path(), e))?;
            lock(&f, w.path())?;
            (Some(w), Some(f))
        } else {
            (None, None)
        };
        Ok(Staging {
            work,
            _work_lock: work_lock,
            tmp,
            snap,
            root,
            output,
            removed_stale,
            left_out_fs: Vec::new(),
            _on_interrupt: on_interrupt,
            _interrupts: interrupts,
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

    /// `left_out_fs` where the scan meets them: in ROOT, or in the snapshot's view of it.
    pub fn left_out_mounts(&self) -> Vec<PathBuf> {
        let scan_root = self.scan_root();
        self.left_out_fs
            .iter()
            .filter_map(|p| Some(scan_root.join(p.strip_prefix(&self.root).ok()?)))
            .collect()
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

/// Holds an exclusive lock on a temporary name while this capture lives (`remove_stale`).
fn lock(f: &File, path: &Path) -> Result<(), PayloadError> {
    flock(f, FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| PayloadError::io("cannot lock", path, std::io::Error::from(e)))
}

/// Removes a work folder, again while something is still being written into it.
/// Removes this process's temporary names in `dir` (`{PARTIAL}{pid}-*`, `{WORK}{pid}-*`).
fn remove_own(dir: &Path, pid: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let (partial, work) = (format!("{PARTIAL}{pid}-"), format!("{WORK}{pid}-"));
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&partial) {
            let _ = std::fs::remove_file(e.path());
        } else if name.starts_with(&work) {
            remove_dir(&e.path());
        }
    }
}

/// The work folder, removed by an interrupt while the capture's other threads still run: the
/// rescue build may be writing into it (a removal then fails with "directory not empty") or
/// make it again (`create_dir_all` of a folder inside it). So: remove it until it has stayed
/// gone for three looks 5 ms apart, for 2 s at most; the process exits right after.
fn remove_dir(path: &Path) {
    let mut gone = 0;
    for _ in 0..400 {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                gone += 1;
                if gone == 3 {
                    return;
                }
            }
            _ => {
                gone = 0;
                let _ = std::fs::remove_dir_all(path);
                continue;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Removes from `dir` the temporary names earlier captures left and no process owns: the
/// process in the name is gone (or the name has none: an osimage from before issue #24) and
/// no one holds its lock. Returns what was removed; what cannot be proved stale is left.
fn remove_stale(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name
            .strip_prefix(PARTIAL)
            .or_else(|| name.strip_prefix(WORK))
        else {
            continue;
        };
        if owner_alive(rest) {
            continue;
        }
        let path = e.path();
        let Ok(md) = path.symlink_metadata() else {
            continue;
        };
        // Only a plain file or folder of ours; never through a symbolic link.
        if !(md.is_file() || md.is_dir()) {
            continue;
        }
        let Ok(f) = File::open(&path) else { continue };
        if flock(&f, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let gone = if md.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Whether the process whose id starts `rest` (`PID-random`) is alive. A name without one
/// (an older osimage's, `random` only) has no owner to ask: the lock decides.
fn owner_alive(rest: &str) -> bool {
    let Some((pid, _)) = rest.split_once('-') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether OUTPUT names a bootable ISO: a `.iso` suffix in any case (`t.ISO` too, issue #24).
pub(super) fn is_iso(output: &Path) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_the_process_in_the_name() {
        assert!(owner_alive("1-abcdef"), "pid 1 is alive");
        assert!(owner_alive(&format!("{}-x", std::process::id())));
        // above the kernel's largest pid (2^22)
        assert!(!owner_alive("99999999-abcdef"));
        assert!(!owner_alive("abcdef"), "an old name: no owner to ask");
        assert!(!owner_alive("x1-abcdef"));
    }

    #[test]
    fn only_unowned_unlocked_temporary_names_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let dead_file = d.join(".osimage-partial-99999999-aa");
        std::fs::write(&dead_file, b"x").unwrap();
        let dead_dir = d.join(".osimage-work-99999999-bb");
        std::fs::create_dir_all(dead_dir.join("efi/boot")).unwrap();
        std::fs::write(dead_dir.join("efi/boot/x"), b"x").unwrap();
        let old = d.join(".osimage-partial-oldname");
        std::fs::write(&old, b"x").unwrap();
        let alive = d.join(format!(".osimage-partial-{}-cc", std::process::id()));
        std::fs::write(&alive, b"x").unwrap();
        let locked = d.join(".osimage-partial-lockedname");
        std::fs::write(&locked, b"x").unwrap();
        let held = File::open(&locked).unwrap();
        lock(&held, &locked).unwrap();
        let link = d.join(".osimage-partial-99999999-link");
        std::os::unix::fs::symlink(&alive, &link).unwrap();
        let other = d.join("system.iso");
        std::fs::write(&other, b"x").unwrap();

        let mut removed = remove_stale(d);
        removed.sort();
        let mut want = vec![dead_file.clone(), dead_dir.clone(), old.clone()];
        want.sort();
        assert_eq!(removed, want);
        for p in [&dead_file, &dead_dir, &old] {
            assert!(p.symlink_metadata().is_err(), "{} stayed", p.display());
        }
        for p in [&alive, &locked, &link, &other] {
            assert!(p.symlink_metadata().is_ok(), "{} was removed", p.display());
        }
        drop(held);
        assert_eq!(remove_stale(d), vec![locked], "unlocked now: stale");
    }
}
