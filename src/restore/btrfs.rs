//! btrfs subvolumes recreated on a fresh filesystem (docs/RESTORE.md, layout record §9.2
//! `BtrfsVolume`): each recorded subvolume created at its path, parents first, before any file
//! is extracted (so nested subvolumes receive their files), the default subvolume set, and the
//! read-only flag put back after the files are in. Plain ioctls (linux/btrfs.h) on the top
//! level (`subvolid=5`) mounted for the purpose.

use std::os::fd::AsRawFd;
use std::path::Path;

use super::RestoreError;
use super::mounts::Mounts;
use crate::layout::BtrfsSubvolume;
use crate::sys::MountFlags;

/// `_IOW(0x94, 14, struct btrfs_ioctl_vol_args)`: create a subvolume in the directory.
const IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940E;
/// `_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)`: with `treeid` 0, the subvolume id
/// of the open file's subvolume.
const IOC_INO_LOOKUP: libc::c_ulong = 0xD000_9412;
/// `_IOW(0x94, 19, __u64)`: set the default subvolume.
const IOC_DEFAULT: libc::c_ulong = 0x4008_9413;
/// `_IOW(0x94, 26, __u64)`: set subvolume flags; `BTRFS_SUBVOL_RDONLY` is bit 1.
const IOC_SUBVOL_SETFLAGS: libc::c_ulong = 0x4008_941A;
const SUBVOL_RDONLY: u64 = 1 << 1;
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
        let name = full
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
            .unwrap_or_default();
        if name.is_empty() || name.len() >= 4088 {
            return Err(RestoreError::target(
                &self.dir,
                format!("unusable btrfs subvolume name {path:?}"),
            ));
        }
        let dir =
            std::fs::File::open(parent).map_err(|e| RestoreError::io("opening", parent, e))?;
        // struct btrfs_ioctl_vol_args { __s64 fd; char name[4088]; }
        let mut args = vec![0u8; 4096];
        args[8..8 + name.len()].copy_from_slice(&name);
        // SAFETY: args is the 4096-byte struct the ioctl reads.
        let rc = unsafe { libc::ioctl(dir.as_raw_fd(), IOC_SUBVOL_CREATE as _, args.as_mut_ptr()) };
        if rc != 0 {
            return Err(RestoreError::io(
                "creating btrfs subvolume",
                &full,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// The new id of subvolume `path`.
    fn id_of(&self, path: &str) -> Result<u64, RestoreError> {
        let full = self.dir.join(path);
        let f = std::fs::File::open(&full).map_err(|e| RestoreError::io("opening", &full, e))?;
        // struct btrfs_ioctl_ino_lookup_args { __u64 treeid; __u64 objectid; char name[4080]; }
        let mut args = vec![0u8; 4096];
        args[8..16].copy_from_slice(&FIRST_FREE_OBJECTID.to_ne_bytes());
        // SAFETY: args is the 4096-byte struct the ioctl reads and fills.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), IOC_INO_LOOKUP as _, args.as_mut_ptr()) };
        if rc != 0 {
            return Err(RestoreError::io(
                "looking up the btrfs subvolume id of",
                &full,
                std::io::Error::last_os_error(),
            ));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&args[..8]);
        Ok(u64::from_ne_bytes(id))
    }

    /// Makes subvolume `path` the default (mounted when no `subvol=` is given).
    pub fn set_default(&self, path: &str) -> Result<(), RestoreError> {
        let id = self.id_of(path)?;
        let f = std::fs::File::open(&self.dir)
            .map_err(|e| RestoreError::io("opening", &self.dir, e))?;
        // SAFETY: the ioctl reads one u64.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), IOC_DEFAULT as _, &id as *const u64) };
        if rc != 0 {
            return Err(RestoreError::io(
                "setting the default btrfs subvolume",
                &self.dir.join(path),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Marks subvolume `path` read-only.
    pub fn set_readonly(&self, path: &str) -> Result<(), RestoreError> {
        let full = self.dir.join(path);
        let f = std::fs::File::open(&full).map_err(|e| RestoreError::io("opening", &full, e))?;
        let flags = SUBVOL_RDONLY;
        // SAFETY: the ioctl reads one u64.
        let rc = unsafe {
            libc::ioctl(
                f.as_raw_fd(),
                IOC_SUBVOL_SETFLAGS as _,
                &flags as *const u64,
            )
        };
        if rc != 0 {
            return Err(RestoreError::io(
                "making read-only the btrfs subvolume",
                &full,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
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
