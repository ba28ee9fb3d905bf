//! btrfs subvolumes recreated on a fresh filesystem (docs/RESTORE.md, layout record §9.2
//! `BtrfsVolume`): each recorded subvolume created at its path, parents first, before any file
//! is extracted (so nested subvolumes receive their files), the default subvolume set, and the
//! read-only flag put back after the files are in. Plain ioctls (linux/btrfs.h) on the top
//! level (`subvolid=5`) mounted for the purpose.

use std::path::Path;

use super::RestoreError;
use super::mounts::Mounts;
use crate::layout::BtrfsSubvolume;
use crate::sys::{self, MountFlags};

/// The objectid of every subvolume's root directory.
const FIRST_FREE_OBJECTID: u64 = 256;

/// The top level of the btrfs on `dev`, mounted under `staging` until dropped.
pub struct TopLevel {
    mounts: Mounts,
    pub dir: std::path::PathBuf,
}

impl TopLevel {
    pub fn mount(dev: &Path, staging: &Path, tag: usize) -> Result<TopLevel, RestoreError> {
        let dir = staging.join(format!("btrfs-top{tag}"));
        std::fs::create_dir_all(&dir).map_err(|e| RestoreError::io("creating", &dir, e))?;
        let mut mounts = Mounts::default();
        mounts
            .mount(dev, &dir, "btrfs", MountFlags::empty(), "subvolid=5")
            .map_err(|e| RestoreError::io("mounting (btrfs top level)", dev, e))?;
        Ok(TopLevel { mounts, dir })
    }

    /// Unmounts and removes the directory.
    pub fn close(mut self) -> Result<(), RestoreError> {
        self.mounts.unmount_all()?;
        let _ = std::fs::remove_dir(&self.dir);
        Ok(())
    }

    /// Creates subvolume `path` (from the top level) unless it exists, with any missing
    /// parent directories.
    pub fn create(&self, path: &str) -> Result<(), RestoreError> {
        let full = self.dir.join(path);
        if full.exists() {
            return Ok(());
        }
        let parent = full.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| RestoreError::io("creating", parent, e))?;
        let name = full.file_name().unwrap_or_default();
        if name.is_empty() || name.len() >= 4088 {
            return Err(RestoreError::target(
                &self.dir,
                format!("unusable btrfs subvolume name {path:?}"),
            ));
        }
        let dir =
            std::fs::File::open(parent).map_err(|e| RestoreError::io("opening", parent, e))?;
        sys::btrfs::create_subvolume(&dir, name)
            .map_err(|e| RestoreError::io("creating btrfs subvolume", &full, e))
    }

    /// The new id of subvolume `path`.
    fn id_of(&self, path: &str) -> Result<u64, RestoreError> {
        let full = self.dir.join(path);
        let f = std::fs::File::open(&full).map_err(|e| RestoreError::io("opening", &full, e))?;
        sys::btrfs::subvolume_id(&f, FIRST_FREE_OBJECTID)
            .map_err(|e| RestoreError::io("looking up the btrfs subvolume id of", &full, e))
    }

    /// Makes subvolume `path` the default (mounted when no `subvol=` is given).
    pub fn set_default(&self, path: &str) -> Result<(), RestoreError> {
        let id = self.id_of(path)?;
        let f = std::fs::File::open(&self.dir)
            .map_err(|e| RestoreError::io("opening", &self.dir, e))?;
        sys::btrfs::set_default_subvolume(&f, id).map_err(|e| {
            RestoreError::io(
                "setting the default btrfs subvolume",
                &self.dir.join(path),
                e,
            )
        })
    }

    /// Marks subvolume `path` read-only.
    pub fn set_readonly(&self, path: &str) -> Result<(), RestoreError> {
        let full = self.dir.join(path);
        let f = std::fs::File::open(&full).map_err(|e| RestoreError::io("opening", &full, e))?;
        sys::btrfs::set_subvolume_flags(&f, sys::btrfs::SUBVOL_RDONLY)
            .map_err(|e| RestoreError::io("making read-only the btrfs subvolume", &full, e))
    }
}

/// Creates every recorded subvolume (parents first: the record's order) and `fstab_subvol`
/// (a `subvol=` of fstab, when the record has no list), then sets the default.
pub fn create_all(
    dev: &Path,
    subvolumes: &[BtrfsSubvolume],
    fstab_subvol: Option<&str>,
    default_path: &str,
    staging: &Path,
    tag: usize,
) -> Result<(), RestoreError> {
    let top = TopLevel::mount(dev, staging, tag)?;
    for s in subvolumes {
        top.create(&s.path)?;
    }
    if let Some(sv) = fstab_subvol {
        top.create(sv)?;
    }
    if !default_path.is_empty() {
        top.set_default(default_path)?;
    }
    top.close()
}

/// Puts back the read-only flag of the recorded read-only subvolumes, after their files.
pub fn finish_readonly(
    dev: &Path,
    subvolumes: &[BtrfsSubvolume],
    staging: &Path,
    tag: usize,
) -> Result<(), RestoreError> {
    if !subvolumes.iter().any(|s| s.readonly) {
        return Ok(());
    }
    let top = TopLevel::mount(dev, staging, tag)?;
    for s in subvolumes.iter().filter(|s| s.readonly) {
        top.set_readonly(&s.path)?;
    }
    top.close()
}
