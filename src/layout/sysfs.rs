//! Block devices as sysfs describes them (Documentation/ABI/stable/sysfs-block), and their
//! device nodes, made with mknod when /dev lacks them (no udev here or in the initramfs).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};

/// One entry of /sys/class/block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockDev {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// Size in bytes (sysfs `size` is always in 512-byte units).
    pub size_bytes: u64,
    /// Partition number, for a partition.
    pub partition: Option<u32>,
    /// The whole disk a partition belongs to.
    pub parent: Option<String>,
    /// Devices this one is built on (`slaves/`): dm and md devices have them.
    pub slaves: Vec<String>,
    /// A device-mapper device's name (`dm/name`: `vg-root`, `luks-…`).
    pub dm_name: Option<String>,
    /// A device-mapper device's UUID (`dm/uuid`: `LVM-<vg uuid><lv uuid>`,
    /// `CRYPT-LUKS2-<uuid>-<name>`, `mpath-…`): which kind of target it is.
    pub dm_uuid: Option<String>,
}

impl BlockDev {
    /// `makedev(major, minor)` as `st_dev`/`st_rdev` report it.
    pub fn dev(&self) -> u64 {
        rustix::fs::makedev(self.major, self.minor)
    }

    /// A device-mapper or MD device: a stack osimage cannot recreate yet.
    pub fn is_virtual_stack(&self) -> bool {
        !self.slaves.is_empty()
    }
}

/// Identity and geometry of a whole disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskFacts {
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub model: String,
    pub serial: String,
    pub wwid: String,
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_num<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_text(path)?.parse().ok()
}

/// Every block device under `class` (normally /sys/class/block), sorted by name. Entries that
/// cannot be read (a device going away) are skipped.
pub fn list(class: &Path) -> io::Result<Vec<BlockDev>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(class)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(d) = read_one(&entry.path(), name) {
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read_one(dir: &Path, name: String) -> Option<BlockDev> {
    let dev = read_text(&dir.join("dev"))?;
    let (major, minor) = dev.split_once(':')?;
    let partition: Option<u32> = read_num(&dir.join("partition"));
    // A partition's directory sits inside its disk's: /sys/devices/…/block/vda/vda1.
    let parent = partition.and_then(|_| {
        let real = std::fs::canonicalize(dir).ok()?;
        Some(real.parent()?.file_name()?.to_string_lossy().into_owned())
    });
    let slaves = std::fs::read_dir(dir.join("slaves"))
        .map(|rd| {
            let mut v: Vec<String> = rd
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    Some(BlockDev {
        name,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        size_bytes: read_num::<u64>(&dir.join("size"))?.saturating_mul(512),
        partition,
        parent,
        slaves,
        dm_name: read_text(&dir.join("dm/name")),
        dm_uuid: read_text(&dir.join("dm/uuid")),
    })
}

/// Geometry and identity of disk `name` (empty strings where sysfs has nothing).
pub fn disk_facts(class: &Path, name: &str) -> DiskFacts {
    let dir = class.join(name);
    let first = |paths: &[&str]| {
        paths
            .iter()
            .find_map(|p| read_text(&dir.join(p)).filter(|s| !s.is_empty()))
            .unwrap_or_default()
    };
    DiskFacts {
        logical_sector: read_num(&dir.join("queue/logical_block_size")).unwrap_or(512),
        physical_sector: read_num(&dir.join("queue/physical_block_size")).unwrap_or(512),
        model: first(&["device/model"]),
        serial: first(&["serial", "device/serial", "device/vpd_pg80"]),
        wwid: first(&["wwid", "device/wwid"]),
    }
}

/// Opens block devices read-only by name: /dev/NAME when it is the right node, else a node
/// made with mknod in a private temporary directory.
pub struct Nodes {
    dev_dir: PathBuf,
    made: Option<tempfile::TempDir>,
}

impl Nodes {
    pub fn new(dev_dir: impl Into<PathBuf>) -> Self {
        Nodes {
            dev_dir: dev_dir.into(),
            made: None,
        }
    }

    /// Opens `d` for reading.
    pub fn open(&mut self, d: &BlockDev) -> io::Result<File> {
        let path = self.dev_dir.join(&d.name);
        if let Ok(st) = rustix::fs::stat(&path)
            && FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice
            && st.st_rdev == d.dev()
        {
            return File::open(&path);
        }
        if self.made.is_none() {
            self.made = Some(tempfile::Builder::new().prefix("osimage-dev").tempdir()?);
        }
        let dir = self
            .made
            .as_ref()
            .map(|t| t.path())
            .unwrap_or(Path::new("/"));
        let node = dir.join(&d.name);
        if !node.exists() {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &node,
                FileType::BlockDevice,
                Mode::from_raw_mode(0o600),
                d.dev(),
            )?;
        }
        File::open(&node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake /sys: devices/…/block/vda{,/vda1}, linked from class/block like the kernel does.
    #[test]
    fn lists_disks_partitions_and_stacks() {
        let t = tempfile::tempdir().unwrap();
        let devs = t.path().join("devices/pci/block/vda");
        std::fs::create_dir_all(devs.join("vda1")).unwrap();
        std::fs::create_dir_all(devs.join("queue")).unwrap();
        std::fs::write(devs.join("dev"), "254:0\n").unwrap();
        std::fs::write(devs.join("size"), "2097152\n").unwrap();
        std::fs::write(devs.join("queue/logical_block_size"), "512\n").unwrap();
        std::fs::write(devs.join("queue/physical_block_size"), "4096\n").unwrap();
        std::fs::write(devs.join("serial"), "disk-serial\n").unwrap();
        std::fs::write(devs.join("vda1/dev"), "254:1\n").unwrap();
        std::fs::write(devs.join("vda1/size"), "2048\n").unwrap();
        std::fs::write(devs.join("vda1/partition"), "1\n").unwrap();
        let dm = t.path().join("devices/virtual/block/dm-0");
        std::fs::create_dir_all(dm.join("slaves/vda1")).unwrap();
        std::fs::write(dm.join("dev"), "253:0\n").unwrap();
        std::fs::write(dm.join("size"), "1024\n").unwrap();
        std::fs::create_dir_all(dm.join("dm")).unwrap();
        std::fs::write(dm.join("dm/name"), "vg-root\n").unwrap();
        let class = t.path().join("class/block");
        std::fs::create_dir_all(&class).unwrap();
        symlink(&devs, class.join("vda")).unwrap();
        symlink(devs.join("vda1"), class.join("vda1")).unwrap();
        symlink(&dm, class.join("dm-0")).unwrap();
        symlink(t.path().join("nowhere"), class.join("gone")).unwrap();

        let l = list(&class).unwrap();
        let names: Vec<_> = l.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["dm-0", "vda", "vda1"]);
        assert_eq!(l[0].slaves, ["vda1"]);
        assert!(l[0].is_virtual_stack());
        assert_eq!(l[0].dm_name.as_deref(), Some("vg-root"));
        assert_eq!((l[1].size_bytes, l[1].partition), (1 << 30, None));
        assert_eq!(l[2].parent.as_deref(), Some("vda"));
        assert_eq!(l[2].partition, Some(1));
        assert_eq!(l[2].dev(), rustix::fs::makedev(254, 1));
        let f = disk_facts(&class, "vda");
        assert_eq!((f.logical_sector, f.physical_sector), (512, 4096));
        assert_eq!(f.serial, "disk-serial");
        assert_eq!(f.model, "");
    }
}
