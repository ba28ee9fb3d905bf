//! What a restore needs of block devices, on the ioctls of `crate::sys`: size and sector size,
//! cache flush, partition re-read (BLKRRPART, else BLKPG one partition at a time, as `partx`
//! does), loop devices over image files, and partition nodes made from sysfs when no udev or
//! devtmpfs made them.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// Is `f` a block device?
pub fn is_block(f: &File) -> bool {
    f.metadata().is_ok_and(|m| m.file_type().is_block_device())
}

/// Size in bytes of a block device or regular file.
pub fn size_bytes(f: &File) -> io::Result<u64> {
    if !is_block(f) {
        return Ok(f.metadata()?.len());
    }
    sys::block::size_bytes(f)
}

/// Logical sector size (512 for a regular file).
pub fn sector_size(f: &File) -> io::Result<u32> {
    if !is_block(f) {
        return Ok(512);
    }
    sys::block::sector_size(f)
}

/// fsync, then drop the device's page cache: writes through the whole disk and through its
/// partitions go through different caches.
pub fn flush(f: &File) -> io::Result<()> {
    f.sync_all()?;
    if is_block(f) {
        sys::block::flush_buffers(f)?;
    }
    Ok(())
}

/// Makes the kernel see `parts` (number, start byte, length) on disk `f`: BLKRRPART where the
/// driver re-reads tables, else removes partitions 1..=128 and adds each one with BLKPG (loop
/// devices without partition scanning).
pub fn announce_partitions(f: &File, parts: &[(u32, u64, u64)]) -> io::Result<()> {
    if sys::block::reread_partitions(f).is_ok() {
        return Ok(());
    }
    // A partition the kernel still holds from the device's last user (a loop device reused
    // while the filesystem on its old partition is being released) makes the add fail with
    // EBUSY for a moment: forget and add again, for up to 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        forget_partitions(f);
        let added = parts
            .iter()
            .try_for_each(|&(n, start, len)| sys::block::add_partition(f, n, start, len));
        match added {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Removes every partition the kernel knows on `f` (best effort).
pub fn forget_partitions(f: &File) {
    for n in 1..=128 {
        let _ = sys::block::delete_partition(f, n);
    }
}

/// The kernel name of a block device node (`loop3`, `sdb`, `nvme0n1p2`), from sysfs.
pub fn kernel_name(dev: &Path) -> io::Result<String> {
    let rdev = std::fs::metadata(dev)?.rdev();
    let (ma, mi) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let link = std::fs::read_link(format!("/sys/dev/block/{ma}:{mi}"))?;
    link.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| io::Error::other("no sysfs entry"))
}

/// Partition `n` of disk `disk`, as the kernel names it (`sda1`, `loop3p1`, `nvme0n1p1`).
pub fn partition_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// A node for block device `name`: `/dev/NAME` when it is the right device, else one made with
/// mknod in `private` (no udev here or in the rescue environment). Waits up to 5 s for the
/// kernel to publish the device in sysfs.
pub fn node(name: &str, private: &Path) -> io::Result<PathBuf> {
    let sys = PathBuf::from(format!("/sys/class/block/{name}/dev"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        match std::fs::read_to_string(&sys) {
            Ok(t) => break t,
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(e.kind(), format!("{}: {e}", sys.display())));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let (ma, mi) = text
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| io::Error::other(format!("{}: unreadable", sys.display())))?;
    let rdev = rustix::fs::makedev(ma, mi);
    let dev = PathBuf::from(format!("/dev/{name}"));
    // devtmpfs makes the node a moment after sysfs shows the device.
    for _ in 0..20 {
        if let Ok(m) = std::fs::metadata(&dev)
            && m.file_type().is_block_device()
            && m.rdev() == rdev
        {
            return Ok(dev);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let made = private.join(name);
    if !made.exists() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &made,
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rdev,
        )?;
    }
    Ok(made)
}

/// A loop device this process attached to an image file; detached (partitions first) on drop.
pub struct LoopDevice {
    pub path: PathBuf,
    pub name: String,
    file: File,
}

impl LoopDevice {
    /// Attaches `backing` read-write to a free loop device.
    pub fn attach(backing: &Path, private: &Path) -> io::Result<LoopDevice> {
        Self::attach_window(backing, private, None)
    }

    /// Attaches `backing` read-write to a free loop device; with `window` (offset, length in
    /// bytes) the device shows only that part of the file.
    pub fn attach_window(
        backing: &Path,
        private: &Path,
        window: Option<(u64, u64)>,
    ) -> io::Result<LoopDevice> {
        let img = OpenOptions::new().read(true).write(true).open(backing)?;
        let ctl = File::open("/dev/loop-control")?;
        let mut last = None;
        // Another process may take the free device between GET_FREE and SET_FD: retry.
        for _ in 0..10 {
            let n = sys::loopdev::get_free(&ctl)?;
            let name = format!("loop{n}");
            let path = node(&name, private)?;
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            match sys::loopdev::set_fd(&file, &img) {
                Ok(()) => {
                    let l = LoopDevice { path, name, file };
                    // A killed restore (no Drop) must not leave the device attached: with
                    // autoclear it goes when its last user (our descriptors, the mounts of
                    // the restore's private mount namespace) is gone.
                    sys::loopdev::set_autoclear(&l.file)?;
                    if let Some((offset, len)) = window {
                        sys::loopdev::set_window(&l.file, offset, len)?;
                    }
                    return Ok(l);
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free loop device")))
    }
}

/// The loop devices (`loop3`) whose backing file is `path` (compared after resolving links):
/// a restore onto an image file still attached elsewhere would race with whoever uses it.
pub fn loop_devices_backed_by(path: &Path) -> Vec<String> {
    let Ok(want) = std::fs::canonicalize(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim_end_matches('\n')) == want {
            out.push(name);
        }
    }
    out.sort();
    out
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        forget_partitions(&self.file);
        let _ = sys::loopdev::clear_fd(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_follow_the_kernel() {
        assert_eq!(partition_name("sda", 1), "sda1");
        assert_eq!(partition_name("loop3", 2), "loop3p2");
        assert_eq!(partition_name("nvme0n1", 15), "nvme0n1p15");
    }

    #[test]
    fn regular_file_geometry() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(3 << 20).unwrap();
        assert_eq!(size_bytes(&f).unwrap(), 3 << 20);
        assert_eq!(sector_size(&f).unwrap(), 512);
        assert!(!is_block(&f));
    }
}
