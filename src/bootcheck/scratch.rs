//! The scratch side of `verify --boot`: a temporary directory (removed afterwards unless
//! `--keep`; on failure the console logs stay), a sparse disk image as large as the recorded
//! disk that holds `/`, and the restored filesystems seen from the host: the disk on a loop
//! device (`restore::target::TargetDisk`), each filesystem mounted at its mount point under a
//! staging directory, vfat copied out with mtools where this kernel cannot mount it. A
//! filesystem on an LVM logical volume is reached without device-mapper (and without touching
//! this host's LVM): the restored PVs' labels and metadata say where the LV's extents lie, and
//! a loop device shows that run of the disk image.

use std::path::{Path, PathBuf};

use super::BootCheckError;
use super::files::Fidelity;
use crate::layout::stack::lvm;
use crate::layout::{DiskLayout, FsRecord, LogicalVolume, PartitionTable, StackNode, VolumeGroup};
use crate::restore::blockdev::LoopDevice;
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
    let disk = layout
        .disks
        .get(scratch_disk_index(layout)? as usize)
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
/// (mounts first, then the loop devices).
pub struct Assembled {
    pub root: PathBuf,
    /// Mount points (relative, raw) of FAT filesystems.
    pub fat: Vec<Vec<u8>>,
    mounts: Mounts,
    _copies: Vec<tempfile::TempDir>,
    /// Loop devices showing logical volumes' runs of the disk image.
    _windows: Vec<LoopDevice>,
    _disk: TargetDisk,
    /// The partitions the restore wrote: (number, first byte, bytes).
    parts: Vec<(u32, u64, u64)>,
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

impl Assembled {
    /// The device holding `fs` on the scratch disk: its partition, or a loop device showing
    /// its logical volume.
    fn node(
        &mut self,
        image: &Path,
        layout: &DiskLayout,
        fs: &FsRecord,
    ) -> Result<PathBuf, BootCheckError> {
        match layout.stack.node(&fs.device.name) {
            None => part_node(&self._disk, fs),
            Some(StackNode::Lv(vg, lv)) => {
                let (offset, len) = self.lv_window(layout, vg, lv).map_err(|why| {
                    BootCheckError::Image(format!(
                        "{} on LV {}/{} of the restored disk: {why}",
                        fs.mount_point, vg.name, lv.name
                    ))
                })?;
                let l =
                    LoopDevice::attach_window(image, self._disk.node_dir(), Some((offset, len)))
                        .map_err(|e| BootCheckError::io("attaching a loop device to", image, e))?;
                let path = l.path.clone();
                self._windows.push(l);
                Ok(path)
            }
            Some(other) => Err(BootCheckError::Image(format!(
                "{} is on {}, which verify --boot cannot open from this host",
                fs.mount_point,
                other.path()
            ))),
        }
    }

    /// Where `lv` lies in the disk image, as the restore wrote it: the VG's metadata read from
    /// the restored PVs (a PV outside this disk, or an LV in more than one run, is refused).
    fn lv_window(
        &self,
        layout: &DiskLayout,
        vg: &VolumeGroup,
        lv: &LogicalVolume,
    ) -> Result<(u64, u64), String> {
        let disk = scratch_disk_index(layout).map_err(|e| e.to_string())?;
        let mut pvs: Vec<(String, u64)> = Vec::new();
        let mut meta: Option<String> = None;
        for pv in &vg.pvs {
            let n = pv
                .device
                .partition
                .filter(|_| pv.device.disk == disk)
                .ok_or_else(|| format!("PV {} is not a partition of the disk holding /", pv.key))?;
            let &(_, start, bytes) =
                self.parts.iter().find(|p| p.0 == n).ok_or_else(|| {
                    format!("the restore wrote no partition {n} for PV {}", pv.key)
                })?;
            let node = self
                ._disk
                .partition(n)
                .map_err(|e| format!("partition {n}: {e}"))?;
            let f = std::fs::File::open(&node).map_err(|e| format!("{}: {e}", node.display()))?;
            let info = lvm::read_pv(&f, bytes)
                .map_err(|e| format!("{}: {e}", node.display()))?
                .ok_or_else(|| format!("partition {n} holds no LVM label after the restore"))?;
            pvs.push((info.pv_uuid, start));
            meta = meta.or(info.metadata);
        }
        let text = meta.ok_or("no restored PV holds the VG's metadata")?;
        let restored = lvm::parse_vg(&text).map_err(|e| e.to_string())?;
        let runs = restored.lv_runs(&lv.name).map_err(|e| e.to_string())?;
        let [run] = runs.as_slice() else {
            return Err(format!(
                "it lies in {} runs; verify --boot reads an LV lying in one",
                runs.len()
            ));
        };
        let (_, start) = pvs
            .iter()
            .find(|(id, _)| *id == run.pv_id)
            .ok_or_else(|| format!("its PV {} is not on the disk", run.pv_id))?;
        Ok((start + run.offset, run.len))
    }
}

/// The index of the recorded disk holding `/` (the one the scratch disk stands for).
pub(super) fn scratch_disk_index(layout: &DiskLayout) -> Result<u32, BootCheckError> {
    let root = root_fs(layout)?;
    Ok(match layout.stack.node(&root.device.name) {
        None => root.device.disk,
        Some(_) => layout
            .stack
            .bottom(&root.device)
            .first()
            .map(|p| p.disk)
            .ok_or_else(|| BootCheckError::Image("/ stands on no recorded disk".into()))?,
    })
}

/// Tells the kernel about the partitions the restore wrote (a loop device is attached without
/// partition scanning, and there is no udev); returns them as (number, first byte, bytes).
fn announce(disk: &TargetDisk) -> Result<Vec<(u32, u64, u64)>, BootCheckError> {
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
        .map_err(|e| bad(format!("telling the kernel about its partitions: {e}")))?;
    Ok(parts)
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
    let parts = announce(&disk)?;
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
        _windows: Vec::new(),
        _disk: disk,
        parts,
    };
    let dev = a.node(image, layout, root)?;
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
    let disk = scratch_disk_index(layout)?;
    let on_scratch = |f: &FsRecord| match layout.stack.node(&f.device.name) {
        None => f.device.disk == disk && f.device.partition.is_some(),
        Some(StackNode::Lv(..)) => layout
            .stack
            .bottom(&f.device)
            .iter()
            .all(|p| p.disk == disk && p.partition.is_some()),
        Some(_) => false,
    };
    let mut others: Vec<&FsRecord> = layout
        .filesystems
        .iter()
        .filter(|f| f.mount_point != "/" && on_scratch(f))
        .collect();
    others.sort_by_key(|f| f.mount_point.matches('/').count());
    for fs in others {
        let rel = fs.mount_point.trim_start_matches('/');
        let at = staging.join(rel);
        let dev = a.node(image, layout, fs)?;
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
