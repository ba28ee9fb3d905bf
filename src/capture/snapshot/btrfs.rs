//! btrfs: `btrfs subvolume snapshot -r` of the subvolume holding ROOT. The snapshot is made in
//! the filesystem's top-level subvolume (mounted with `subvolid=5` at a temporary directory),
//! not inside ROOT, so the live tree is not touched (unless ROOT is the top level itself: its
//! directory then gains and loses the snapshot's entry). Inode numbers and times in the
//! snapshot are the origin's, so the files cache of a refresh still matches.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountFlags, mount};

use super::{Cleanup, SnapshotError, Undo, suffix, tool};

/// Every btrfs subvolume's root directory has this inode number (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOLUME_ROOT_INO: u64 = 256;

/// Snapshots the subvolume holding `root` (on device `source`); returns the snapshot's view
/// of `root`.
pub(super) fn snapshot(
    root: &Path,
    source: &str,
    c: &mut Cleanup,
) -> Result<(PathBuf, String), SnapshotError> {
    let sub = subvolume_of(root)?;
    let top = c.temp_dir("osimage-snapshot-top-")?;
    mount(
        source,
        &top,
        "btrfs",
        MountFlags::empty(),
        Some(c"subvolid=5"),
    )
    .map_err(|e| {
        SnapshotError::Failed(format!(
            "cannot mount the top level of btrfs {source} at {}: {e}",
            top.display()
        ))
    })?;
    c.mounted(&top);
    let snap = top.join(format!(".osimage-snapshot-{}", suffix()));
    tool(
        Command::new("btrfs")
            .args(["subvolume", "snapshot", "-r"])
            .arg(&sub)
            .arg(&snap),
        "btrfs-progs",
    )
    .map_err(SnapshotError::Failed)?;
    c.snapshot_made(Undo::DeleteSubvolume(snap.clone()));
    let rel = root.strip_prefix(&sub).unwrap_or(Path::new(""));
    Ok((
        snap.join(rel),
        format!(
            "btrfs snapshot {} of subvolume {}",
            snap.display(),
            sub.display()
        ),
    ))
}

/// The root directory of the subvolume `path` is in: the nearest ancestor (or itself) with
/// inode 256 on the same device (each subvolume has a device number of its own).
fn subvolume_of(path: &Path) -> Result<PathBuf, SnapshotError> {
    let stat = |p: &Path| {
        rustix::fs::stat(p)
            .map_err(|e| SnapshotError::Failed(format!("cannot stat {}: {e}", p.display())))
    };
    let dev = stat(path)?.st_dev;
    let mut at = path.to_path_buf();
    loop {
        if stat(&at)?.st_ino == SUBVOLUME_ROOT_INO {
            return Ok(at);
        }
        match at.parent() {
            Some(p) if stat(p)?.st_dev == dev => at = p.to_path_buf(),
            _ => {
                return Err(SnapshotError::Failed(format!(
                    "cannot find the btrfs subvolume holding {}",
                    path.display()
                )));
            }
        }
    }
}
