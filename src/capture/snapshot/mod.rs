//! `capture --snapshot` (issue #6, docs/REFRESH.md "Point-in-time images"): ROOT's own
//! filesystem is captured from a read-only snapshot (btrfs `subvolume snapshot -r`, or LVM
//! `lvcreate -s`), so every file of it is as it was at one instant.
//!
//! The snapshot is presented at a temporary directory that looks like ROOT: the snapshot's
//! view of ROOT is bind-mounted there read-only, and every other filesystem the capture takes
//! (mounted under ROOT: /boot, /boot/efi, …) is bind-mounted read-only at the same relative
//! place (those are read live). The scan then walks that directory as it would walk ROOT.
//! Afterwards, or when the capture fails or is interrupted (SIGINT, SIGTERM, SIGHUP), the
//! mounts go and the snapshot is deleted.

mod btrfs;
mod lvm;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use rustix::mount::{MountFlags, UnmountFlags, mount_bind, mount_remount, unmount};

use super::interrupt::{Interrupts, OnInterrupt};
use crate::format::manifest::CapturedFs;
use crate::progress::Progress;
use crate::scan::ScanOptions;

/// Why a snapshot could not be made, presented or removed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "--snapshot: {root} is on {fstype} ({source_dev}); snapshots need btrfs or an LVM \
         logical volume (capture without --snapshot reads the live files)"
    )]
    Unsupported {
        root: PathBuf,
        fstype: String,
        source_dev: String,
    },
    #[error("--snapshot: {0}")]
    Failed(String),
}

/// A snapshot of ROOT's filesystem, presented at `root()`, removed by `release` (or on drop,
/// or on a signal).
pub struct Snapshot {
    view: PathBuf,
    origin: CapturedFs,
    describe: String,
    cleanup: Arc<Mutex<Option<Cleanup>>>,
    _on_interrupt: OnInterrupt,
}

impl Snapshot {
    /// Snapshots the filesystem holding `root` (canonical) and presents it, with the other
    /// filesystems `scan` would take, at a temporary directory; `interrupts` removes it on a
    /// signal.
    pub(crate) fn take(
        root: &Path,
        scan: &ScanOptions,
        progress: &dyn Progress,
        interrupts: &Interrupts,
    ) -> Result<Snapshot, SnapshotError> {
        let fail = |e: String| SnapshotError::Failed(e);
        let plan = crate::scan::plan_filesystems(root, scan).map_err(|e| fail(e.to_string()))?;
        let origin = plan
            .first()
            .cloned()
            .ok_or_else(|| fail(format!("no filesystem found at {}", root.display())))?;
        let cleanup = Arc::new(Mutex::new(Some(Cleanup::default())));
        // Registered first: from here on an interrupt waits for the snapshot to exist (the
        // lock is held while it is made) and then removes it.
        let on_signal = Arc::clone(&cleanup);
        let guard = interrupts.on_interrupt("the snapshot".into(), move || {
            if let Some(mut c) = on_signal.lock().ok().and_then(|mut g| g.take())
                && let Err(e) = c.run()
            {
                eprintln!("osimage: {e}");
            }
        });
        let mut lock = cleanup
            .lock()
            .map_err(|_| fail("cleanup state poisoned".into()))?;
        let c = lock.as_mut().ok_or_else(|| fail("interrupted".into()))?;
        let result = present(root, &origin, &plan[1..], c, progress);
        drop(lock);
        match result {
            Ok((view, describe)) => Ok(Snapshot {
                view,
                origin,
                describe,
                cleanup,
                _on_interrupt: guard,
            }),
            Err(e) => {
                if let Some(mut c) = cleanup.lock().ok().and_then(|mut g| g.take())
                    && let Err(more) = c.run()
                {
                    progress.note(&format!("warning: {more}"));
                }
                Err(e)
            }
        }
    }

    /// The directory to scan instead of ROOT.
    pub fn root(&self) -> &Path {
        &self.view
    }

    /// What was snapshotted, for the log.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The scan of `root()` sees the snapshot's device; the image records the filesystem it
    /// stands for (same inodes and times), so a later `--base` refresh reuses its files.
    pub fn restore_identity(&self, filesystems: &mut [CapturedFs]) {
        if let Some(fs) = filesystems.first_mut() {
            fs.dev = self.origin.dev;
            fs.source = self.origin.source.clone();
            fs.fstype = self.origin.fstype.clone();
        }
    }

    /// Unmounts and deletes the snapshot; an error names what is left behind.
    pub fn release(self) -> Result<(), SnapshotError> {
        let c = self.cleanup.lock().ok().and_then(|mut g| g.take());
        match c {
            Some(mut c) => c.run().map_err(SnapshotError::Failed),
            None => Ok(()),
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(mut c) = self.cleanup.lock().ok().and_then(|mut g| g.take())
            && let Err(e) = c.run()
        {
            eprintln!("osimage: warning: {e}");
        }
    }
}

/// Makes the snapshot and the directory that presents it; every step is recorded in `c`
/// before the next, so a failure part-way undoes exactly what was done.
fn present(
    root: &Path,
    origin: &CapturedFs,
    others: &[CapturedFs],
    c: &mut Cleanup,
    progress: &dyn Progress,
) -> Result<(PathBuf, String), SnapshotError> {
    let fail = SnapshotError::Failed;
    let (inside, describe) = match origin.fstype.as_str() {
        "btrfs" => btrfs::snapshot(root, &origin.source, c)?,
        _ => match lvm::origin(&origin.source)? {
            Some(lv) => lvm::snapshot(&lv, root, origin, c)?,
            None => {
                return Err(SnapshotError::Unsupported {
                    root: root.to_path_buf(),
                    fstype: origin.fstype.clone(),
                    source_dev: origin.source.clone(),
                });
            }
        },
    };
    let view = c.temp_dir("osimage-snapshot-view-")?;
    c.bind_ro(&inside, &view)?;
    for fs in others {
        let rel = Path::new(std::ffi::OsStr::from_bytes(&fs.mount_point));
        let at = view.join(rel);
        if !at.is_dir() {
            return Err(fail(format!(
                "{} is a mount point now but not a directory in the snapshot",
                root.join(rel).display()
            )));
        }
        c.bind_ro(&root.join(rel), &at)?;
        progress.note(&format!(
            "/{} ({}) is read live: only {}'s own filesystem is in the snapshot",
            rel.display(),
            fs.fstype,
            root.display()
        ));
    }
    Ok((view, describe))
}

/// What to undo, in reverse order of doing.
#[derive(Default)]
pub(crate) struct Cleanup {
    steps: Vec<Undo>,
}

/// One step of the cleanup.
enum Undo {
    Unmount(PathBuf),
    RemoveDir(PathBuf),
    DeleteSubvolume(PathBuf),
    RemoveLv(String),
}

impl Cleanup {
    /// A fresh directory under the temporary directory, removed at the end.
    fn temp_dir(&mut self, prefix: &str) -> Result<PathBuf, SnapshotError> {
        let d = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| SnapshotError::Failed(format!("cannot create a mount point: {e}")))?
            .keep();
        self.steps.push(Undo::RemoveDir(d.clone()));
        Ok(d)
    }

    /// Bind-mounts `from` at `to`, read-only.
    fn bind_ro(&mut self, from: &Path, to: &Path) -> Result<(), SnapshotError> {
        mount_bind(from, to).map_err(|e| {
            SnapshotError::Failed(format!(
                "cannot bind {} at {}: {e}",
                from.display(),
                to.display()
            ))
        })?;
        self.mounted(to);
        mount_remount(to, MountFlags::BIND | MountFlags::RDONLY, "").map_err(|e| {
            SnapshotError::Failed(format!("cannot make {} read-only: {e}", to.display()))
        })
    }

    /// Records a mount made elsewhere.
    fn mounted(&mut self, at: &Path) {
        self.steps.push(Undo::Unmount(at.to_path_buf()));
    }

    /// Records a snapshot made.
    fn snapshot_made(&mut self, undo: Undo) {
        self.steps.push(undo);
    }

    /// Undoes everything, last step first; goes on past failures and reports them all.
    fn run(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        while let Some(step) = self.steps.pop() {
            match step {
                Undo::Unmount(m) => {
                    // Busy (a reader still holds a file, e.g. on an interrupt): detach it
                    // now, the kernel finishes when the last file closes.
                    if unmount(&m, UnmountFlags::empty()).is_err()
                        && let Err(e) = unmount(&m, UnmountFlags::DETACH)
                    {
                        errors.push(format!("cannot unmount {}: {e}", m.display()));
                    }
                }
                Undo::RemoveDir(d) => {
                    let _ = std::fs::remove_dir(&d);
                }
                Undo::DeleteSubvolume(p) => {
                    let r = tool(
                        Command::new("btrfs").args(["subvolume", "delete"]).arg(&p),
                        "btrfs-progs",
                    );
                    if let Err(e) = r {
                        errors.push(format!(
                            "btrfs snapshot {} left behind, delete it by hand: {e}",
                            p.display()
                        ));
                    }
                }
                Undo::RemoveLv(lv) => {
                    if let Err(e) = lvm::remove(&lv) {
                        errors.push(format!(
                            "LVM snapshot {lv} left behind, remove it by hand: {e}"
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// Runs a tool, returning its stdout; a failure says the tool's stderr, or which Debian
/// package provides a missing tool.
fn tool(cmd: &mut Command, package: &str) -> Result<String, String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{name} not found (Debian package {package})"),
        _ => format!("cannot run {name}: {e}"),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Err(format!(
            "{name} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A short random suffix for snapshot names.
fn suffix() -> String {
    let mut b = [0u8; 4];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    b.iter().map(|x| format!("{x:02x}")).collect()
}
