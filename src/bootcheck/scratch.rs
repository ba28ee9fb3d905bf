//! The scratch side of `verify --boot`: a temporary directory (removed afterwards unless
//! `--keep`; on failure the console logs stay), a sparse disk image as large as the recorded
//! disk that holds `/`, and the restored filesystems seen from the host: the disk on a loop
//! device (`restore::target::TargetDisk`), each filesystem mounted at its mount point under a
//! staging directory, vfat copied out with mtools where this kernel cannot mount it.

use std::path::{Path, PathBuf};

use super::BootCheckError;
use super::files::Fidelity;
use crate::layout::{DiskLayout, FsRecord, PartitionTable};
use crate::restore::mounts::{Mounts, run_env};
use crate::restore::target::TargetDisk;
use crate::sys::MountFlags;

/// Filesystems without owners, modes or xattrs (`files::Fidelity::Fat`).
const FAT: &[&str] = &["vfat", "msdos", "exfat"];

/// The recorded filesystem mounted at `/`.
pub fn root_fs(layout: &DiskLayout) -> Result<&FsRecord, BootCheckError> {
    layout
        .filesystems
        .iter()
        .find(|f| f.mount_point == "/")
        .ok_or_else(|| BootCheckError::Image("the recorded layout has no filesystem at /".into()))
}

/// Bytes of the scratch disk: the recorded disk holding `/`, rounded up to a MiB.
pub fn disk_bytes(layout: &DiskLayout) -> Result<u64, BootCheckError> {
    let root = root_fs(layout)?;
    let disk = layout
        .disks
        .get(root.device.disk as usize)
        .filter(|d| d.size_bytes > 0)
        .ok_or_else(|| {
            BootCheckError::Image(
                "the recorded layout does not say how large the disk holding / is".into(),
            )
        })?;
    Ok(disk.size_bytes.div_ceil(1 << 20) << 20)
}

/// A blank sparse file of `bytes`.
pub fn sparse_disk(path: &Path, bytes: u64) -> Result<(), BootCheckError> {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| BootCheckError::io("creating the scratch disk", path, e))
}

/// The restored disk's filesystems mounted under a staging directory; undone on drop
/// (mounts first, then the loop device).
pub struct Assembled {
    pub root: PathBuf,
    /// Mount points (relative, raw) of FAT filesystems.
    pub fat: Vec<Vec<u8>>,
    mounts: Mounts,
    _copies: Vec<tempfile::TempDir>,
    _disk: TargetDisk,
}

impl Assembled {
    /// How the files under `path` (relative) were read.
    pub fn fidelity(&self, path: &[u8]) -> Fidelity {
        let inside = |mp: &Vec<u8>| {
            path == mp.as_slice() || (path.starts_with(mp) && path.get(mp.len()) == Some(&b'/'))
        };
        if self.fat.iter().any(inside) {
            Fidelity::Fat
        } else {
            Fidelity::Full
        }
    }

    /// Unmounts everything (errors reported, unlike drop).
    pub fn close(mut self) -> Result<(), BootCheckError> {
        self.mounts
            .unmount_all()
            .map_err(|e| BootCheckError::Image(format!("unmounting the scratch disk: {e}")))
    }
}

fn part_node(disk: &TargetDisk, fs: &FsRecord) -> Result<PathBuf, BootCheckError> {
    let n = fs.device.partition.ok_or_else(|| {
        BootCheckError::Image(format!("{} is not on a partition", fs.mount_point))
    })?;
    disk.partition(n)
        .map_err(|e| BootCheckError::io("finding partition node", &disk.device, e))
}

/// Tells the kernel about the partitions the restore wrote (a loop device is attached without
/// partition scanning, and there is no udev).
fn announce(disk: &TargetDisk) -> Result<(), BootCheckError> {
    let bad = |why: String| {
        BootCheckError::Image(format!("the scratch disk {}: {why}", disk.given.display()))
    };
    let mut f = &disk.file;
    let table = crate::layout::table::read(&mut f, u64::from(disk.sector))
        .map_err(|e| bad(format!("reading its partition table: {e}")))?
        .ok_or_else(|| bad("no partition table after the restore".into()))?;
    let s = u64::from(disk.sector);
    let parts: Vec<(u32, u64, u64)> = match &table {
        PartitionTable::Gpt(g) => g
            .partitions
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.first_lba * s,
                    (p.last_lba + 1 - p.first_lba) * s,
                )
            })
            .collect(),
        PartitionTable::Mbr(m) => m
            .partitions
            .iter()
            .map(|p| {
                // the kernel shows an extended partition as its first sectors only
                let len = if p.extended {
                    s.max(1024)
                } else {
                    u64::from(p.sectors) * s
                };
                (p.number, u64::from(p.start_lba) * s, len)
            })
            .collect(),
    };
    crate::restore::blockdev::announce_partitions(&disk.file, &parts)
        .map_err(|e| bad(format!("telling the kernel about its partitions: {e}")))
}

/// Mounts the restored root of `image` (a scratch disk file) at `staging`: writable for the
/// first-boot witness, else read-only with every other filesystem of that disk at its mount
/// point.
pub fn assemble(
    image: &Path,
    layout: &DiskLayout,
    staging: &Path,
    writable: bool,
) -> Result<Assembled, BootCheckError> {
    let disk = TargetDisk::open(image)
        .map_err(|e| BootCheckError::Image(format!("attaching the scratch disk: {e}")))?;
    announce(&disk)?;
    std::fs::create_dir_all(staging).map_err(|e| BootCheckError::io("making", staging, e))?;
    let root = root_fs(layout)?;
    let flags = if writable {
        MountFlags::NOATIME
    } else {
        MountFlags::RDONLY | MountFlags::NOATIME
    };
    let mut a = Assembled {
        root: staging.to_path_buf(),
        fat: Vec::new(),
        mounts: Mounts::default(),
        _copies: Vec::new(),
        _disk: disk,
    };
    let dev = part_node(&a._disk, root)?;
    a.mounts
        .mount(&dev, staging, &root.fstype, flags, "")
        .map_err(|e| {
            BootCheckError::io(
                &format!("mounting {} ({}) at", dev.display(), root.fstype),
                staging,
                e,
            )
        })?;
    if writable {
        return Ok(a);
    }
    let mut others: Vec<&FsRecord> = layout
        .filesystems
        .iter()
        .filter(|f| f.mount_point != "/" && f.device.disk == root.device.disk)
        .filter(|f| f.device.partition.is_some())
        .collect();
    others.sort_by_key(|f| f.mount_point.matches('/').count());
    for fs in others {
        let rel = fs.mount_point.trim_start_matches('/');
        let at = staging.join(rel);
        let dev = part_node(&a._disk, fs)?;
        if FAT.contains(&fs.fstype.as_str()) {
            a.fat.push(rel.as_bytes().to_vec());
        }
        match a.mounts.mount(&dev, &at, &fs.fstype, flags, "") {
            Ok(()) => {}
            Err(e)
                if fs.fstype == "vfat"
                    && e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) =>
            {
                let copy = fat_copy(&dev, staging)?;
                a.mounts
                    .mount(copy.path(), &at, "", MountFlags::BIND, "")
                    .map_err(|e| BootCheckError::io("binding the ESP's files at", &at, e))?;
                a._copies.push(copy);
            }
            Err(e) => {
                return Err(BootCheckError::io(
                    &format!("mounting {} ({}) at", dev.display(), fs.fstype),
                    &at,
                    e,
                ));
            }
        }
    }
    Ok(a)
}

/// The files of the FAT on `dev`, copied with mtools (names, bytes, FAT times) into a
/// temporary directory beside `staging`.
fn fat_copy(dev: &Path, staging: &Path) -> Result<tempfile::TempDir, BootCheckError> {
    let parent = staging.parent().unwrap_or(staging);
    let dir = tempfile::Builder::new()
        .prefix("fat-")
        .tempdir_in(parent)
        .map_err(|e| BootCheckError::io("making a directory in", parent, e))?;
    let src = dev.as_os_str();
    let args = [
        std::ffi::OsStr::new("-i"),
        src,
        std::ffi::OsStr::new("-s"),
        std::ffi::OsStr::new("-m"),
        std::ffi::OsStr::new("-n"),
        std::ffi::OsStr::new("-Q"),
        std::ffi::OsStr::new("::*"),
        dir.path().as_os_str(),
    ];
    run_env(
        &["mcopy".to_string()],
        &args,
        dev,
        &[("MTOOLS_SKIP_CHECK", "1")],
    )
    .map_err(|e| BootCheckError::Image(format!("reading the restored ESP with mtools: {e}")))?;
    Ok(dir)
}
