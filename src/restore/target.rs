//! The disk a restore writes to, and the checks that keep it from writing anywhere else
//! (docs/DESIGN.md "Safety"): a whole disk (never a partition), not the boot medium, not
//! mounted, used as swap or held by device-mapper/MD, and — unless the user forces it — empty:
//! no partition table and no known signature in its first or last MiB.
//!
//! A regular file works as a target through a loop device attached here and detached on drop.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::RestoreError;
use super::blockdev::{self, LoopDevice};
use crate::layout::probe::{self, Found};
use crate::layout::table;

/// How much of each end of a disk the emptiness check reads.
pub const PROBE_LEN: u64 = 1 << 20;

/// What a disk holds, as far as the probes see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// One line per thing found (`GPT partition table`, `partition 2: ext4 UUID=...`).
    pub found: Vec<String>,
}

impl Contents {
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

fn describe(found: &Found) -> String {
    match found {
        Found::Fs(s) => format!("{} UUID={} LABEL={:?}", s.fstype, s.uuid, s.label),
        Found::Swap(s) => format!("swap UUID={} LABEL={:?}", s.uuid, s.label),
        Found::Container { kind, uuid, .. } => format!("{kind:?} UUID={uuid}"),
    }
}

fn read_at(f: &File, at: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// What disk (or image file) `f` of `size` bytes with `sector`-byte sectors holds: a partition
/// table with its partitions' contents, a whole-disk signature, or nothing.
pub fn inspect(f: &File, size: u64, sector: u32) -> io::Result<Contents> {
    let mut out = Contents::default();
    let head = read_at(f, 0, PROBE_LEN.min(size))?;
    let tail_at = size.saturating_sub(PROBE_LEN);
    let tail = read_at(f, tail_at, size - tail_at)?;
    let mut reader = io::BufReader::new(f.try_clone()?);
    match table::read(&mut reader, u64::from(sector)) {
        Ok(Some(t)) => {
            let parts = match &t {
                crate::layout::PartitionTable::Gpt(g) => g
                    .partitions
                    .iter()
                    .map(|p| (p.number, p.first_lba))
                    .collect::<Vec<_>>(),
                crate::layout::PartitionTable::Mbr(m) => m
                    .partitions
                    .iter()
                    .filter(|p| !p.extended)
                    .map(|p| (p.number, u64::from(p.start_lba)))
                    .collect(),
            };
            out.found.push(format!(
                "{} partition table with {}",
                t.label(),
                crate::units::count(parts.len() as u64, "partition", "partitions")
            ));
            for (n, lba) in parts {
                let at = lba * u64::from(sector);
                let h = read_at(f, at, probe::HEAD_LEN as u64)?;
                let what =
                    probe::probe(&h, &[], 0).map_or("no known signature".into(), |x| describe(&x));
                out.found.push(format!("partition {n}: {what}"));
            }
        }
        Ok(None) => {}
        Err(e) => out.found.push(format!("a damaged partition table ({e})")),
    }
    if out.found.is_empty() {
        if let Some(x) = probe::probe(&head, &tail, size) {
            out.found.push(describe(&x));
        } else if probe::has_signature(&head) {
            out.found.push("a boot sector or volume signature".into());
        }
    }
    let s = u64::from(sector);
    if size >= s && tail.len() as u64 >= s {
        let last = &tail[tail.len() - s as usize..];
        if last.starts_with(b"EFI PART") && out.found.is_empty() {
            out.found.push("a backup GPT header".into());
        }
    }
    Ok(out)
}

/// Refuses a disk that is mounted, used as swap, or held by another device (dm, md), in whole
/// or through a partition: restoring over it would corrupt a live system.
pub fn check_not_in_use(name: &str) -> Result<(), String> {
    in_use(name, true)
}

/// `check_not_in_use`, holders checked only when `holders` (with `--force` they are released
/// first: `holders::check_releasable`).
fn in_use(name: &str, holders: bool) -> Result<(), String> {
    let sys = PathBuf::from(format!("/sys/class/block/{name}"));
    let mut devs = vec![(name.to_string(), read_dev(&sys))];
    if let Ok(rd) = std::fs::read_dir(&sys) {
        for e in rd.flatten() {
            let child = e.file_name().to_string_lossy().into_owned();
            if e.path().join("partition").exists() {
                devs.push((child.clone(), read_dev(&e.path())));
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    for (dev_name, dev) in &devs {
        if let Some(dev) = dev {
            for line in mountinfo.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.get(2) == Some(&dev.as_str()) {
                    return Err(format!(
                        "{dev_name} is mounted at {}",
                        f.get(4).unwrap_or(&"?")
                    ));
                }
            }
        }
        if swaps
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&format!("/dev/{dev_name}")))
        {
            return Err(format!("{dev_name} is in use as swap"));
        }
        let held = sys.parent().map(|p| p.join(dev_name).join("holders"));
        if holders
            && let Some(h) = held
            && let Ok(rd) = std::fs::read_dir(&h)
            && let Some(e) = rd.flatten().next()
        {
            return Err(format!(
                "{dev_name} is held by {} (device-mapper or MD)",
                e.file_name().to_string_lossy()
            ));
        }
    }
    Ok(())
}

fn read_dev(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("dev"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The size and sector size of `path` (a disk or an image file), without attaching anything.
pub fn geometry(path: &Path) -> Result<(u64, u32), RestoreError> {
    let f = File::open(path).map_err(|e| RestoreError::target(path, e.to_string()))?;
    let size = blockdev::size_bytes(&f).map_err(|e| RestoreError::target(path, e.to_string()))?;
    let sector =
        blockdev::sector_size(&f).map_err(|e| RestoreError::target(path, e.to_string()))?;
    Ok((size, sector))
}

/// What is on `path` now (for the emptiness rule and for "what will be destroyed").
pub fn contents_of(path: &Path) -> Result<Contents, RestoreError> {
    let (size, sector) = geometry(path)?;
    let f = File::open(path).map_err(|e| RestoreError::target(path, e.to_string()))?;
    inspect(&f, size, sector).map_err(|e| RestoreError::target(path, e.to_string()))
}

/// What a target is, once its kind is checked.
enum Kind {
    /// A block device, by its kernel name.
    Disk(String),
    /// A regular file no loop device is attached to yet.
    File,
}

/// The target's kind: a whole-disk block device (a partition only when `partition_ok`), or a
/// regular file not yet attached to a loop device.
fn kind(path: &Path, meta: &std::fs::Metadata, partition_ok: bool) -> Result<Kind, RestoreError> {
    let fail = |why: String| RestoreError::target(path, why);
    if meta.file_type().is_block_device() {
        let name = blockdev::kernel_name(path).map_err(|e| fail(e.to_string()))?;
        if !partition_ok && Path::new(&format!("/sys/class/block/{name}/partition")).exists() {
            return Err(fail(format!(
                "{name} is a partition; give the whole disk (osimage writes its own \
                 partition table)"
            )));
        }
        Ok(Kind::Disk(name))
    } else if meta.is_file() {
        if let Some(first) = blockdev::loop_devices_backed_by(path).first() {
            return Err(fail(format!(
                "the file is already attached to /dev/{first} (in use, or an interrupted \
                 restore not yet cleaned up): detach it first (losetup -d /dev/{first})"
            )));
        }
        Ok(Kind::File)
    } else {
        Err(fail("neither a block device nor a regular file".into()))
    }
}

/// The checks `TargetDisk::open_with` makes, in its order, without attaching a loop device
/// or opening a disk for writing: the kind of target, then for a disk nothing on it mounted,
/// used as swap or held, and write access; for a file, that it opens read-write and loop
/// devices can be asked for (a loop device attached at restore holds nothing). `force`: what
/// is held will be released first (`restore::preflight` checks that it can be).
pub fn check_usable(path: &Path, partition_ok: bool, force: bool) -> Result<(), RestoreError> {
    let fail = |why: String| RestoreError::target(path, why);
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    match kind(path, &meta, partition_ok)? {
        Kind::Disk(name) => {
            in_use(&name, !force).map_err(fail)?;
            rustix::fs::access(path, rustix::fs::Access::WRITE_OK).map_err(|e| {
                let e = io::Error::from(e);
                fail(format!("opening {} for writing: {e}", path.display()))
            })
        }
        Kind::File => {
            // What `LoopDevice::attach` opens first; a regular file opened is not changed.
            let opened = OpenOptions::new().read(true).write(true).open(path);
            opened
                .and_then(|_| File::open("/dev/loop-control"))
                .map(drop)
                .map_err(|e| fail(format!("attaching a loop device: {e}")))
        }
    }
}

/// An opened target disk.
pub struct TargetDisk {
    /// What the user named.
    pub given: PathBuf,
    /// The whole-disk block device node written to.
    pub device: PathBuf,
    /// Its kernel name (`sdb`, `loop3`).
    pub name: String,
    pub size_bytes: u64,
    pub sector: u32,
    /// Open read-write.
    pub file: File,
    /// Where partition nodes are made when /dev lacks them. Declared before `_loop_dev` so the
    /// nodes go first.
    private: tempfile::TempDir,
    /// Held for its drop: an image file's loop device is detached with the target.
    _loop_dev: Option<LoopDevice>,
}

impl TargetDisk {
    /// Opens `path`: a whole-disk block device, or a regular file attached to a loop device.
    /// Refuses partitions and disks in use.
    pub fn open(path: &Path) -> Result<TargetDisk, RestoreError> {
        Self::open_with(path, false)
    }

    /// Opens `path` like `open`, a partition included when `partition_ok` (a plan that writes
    /// no partition table: `--only`).
    pub fn open_with(path: &Path, partition_ok: bool) -> Result<TargetDisk, RestoreError> {
        let fail = |why: String| RestoreError::target(path, why);
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        let private = tempfile::Builder::new()
            .prefix("osimage-nodes")
            .tempdir()
            .map_err(|e| fail(format!("a directory for device nodes: {e}")))?;
        let (device, name, loop_dev) = match kind(path, &meta, partition_ok)? {
            Kind::Disk(name) => (path.to_path_buf(), name, None),
            Kind::File => {
                let l = LoopDevice::attach(path, private.path())
                    .map_err(|e| fail(format!("attaching a loop device: {e}")))?;
                (l.path.clone(), l.name.clone(), Some(l))
            }
        };
        check_not_in_use(&name).map_err(fail)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&device)
            .map_err(|e| fail(format!("opening {} for writing: {e}", device.display())))?;
        let size_bytes = blockdev::size_bytes(&file).map_err(|e| fail(e.to_string()))?;
        let sector = blockdev::sector_size(&file).map_err(|e| fail(e.to_string()))?;
        let _ = meta.rdev();
        Ok(TargetDisk {
            given: path.to_path_buf(),
            device,
            name,
            size_bytes,
            sector,
            file,
            private,
            _loop_dev: loop_dev,
        })
    }

    /// The private directory this disk's device nodes are made in.
    pub fn node_dir(&self) -> &Path {
        self.private.path()
    }

    /// The node of partition `n` (made if /dev lacks it).
    pub fn partition(&self, n: u32) -> io::Result<PathBuf> {
        blockdev::node(
            &blockdev::partition_name(&self.name, n),
            self.private.path(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_usable_refuses_what_open_refuses() {
        let t = tempfile::tempdir().unwrap();
        let e = check_usable(t.path(), false, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("neither a block device nor a regular file"),
            "{e}"
        );
        let gone = t.path().join("gone.img");
        let e = check_usable(&gone, false, false).unwrap_err().to_string();
        assert!(e.starts_with(&format!("target {}", gone.display())), "{e}");
    }

    #[test]
    fn blank_file_is_empty_and_mkfs_is_not() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("d.img");
        let f = File::create(&img).unwrap();
        f.set_len(8 << 20).unwrap();
        assert!(contents_of(&img).unwrap().is_empty());
        // A GPT written by gptman.
        let mut rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img)
            .unwrap();
        let mut gpt = gptman::GPT::new_from(&mut rw, 512, [7; 16]).unwrap();
        gpt[1] = gptman::GPTPartitionEntry {
            partition_type_guid: [1; 16],
            unique_partition_guid: [2; 16],
            starting_lba: 2048,
            ending_lba: 4095,
            attribute_bits: 0,
            partition_name: "x".into(),
        };
        gpt.write_into(&mut rw).unwrap();
        let c = contents_of(&img).unwrap();
        assert!(!c.is_empty());
        assert!(c.found[0].contains("gpt"), "{c:?}");
        // Only the backup header left (a half-wiped disk) still counts.
        rw.write_all_at(&[0u8; 4096], 0).unwrap();
        let c = contents_of(&img).unwrap();
        assert!(!c.is_empty(), "{c:?}");
    }
}
