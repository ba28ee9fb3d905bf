//! The few system calls the agent makes itself (mount, loop devices, power), on top of
//! `crate::sys`: the rescue environment has no `mount` or `losetup` we could rely on.

use std::io;
use std::path::Path;

use crate::sys::{self, MountFlags};

/// Mounts `source` read-only at `target` as the first of the filesystem types a second medium
/// usually has (vfat, ext4, iso9660, xfs, btrfs) that works.
pub fn mount_any_ro(source: &str, target: &Path) -> io::Result<()> {
    let mut mounted = Err(io::Error::other("no filesystem type tried"));
    for fstype in ["vfat", "ext4", "iso9660", "xfs", "btrfs"] {
        mounted = mount_ro(source, target, fstype, "");
        if mounted.is_ok() {
            break;
        }
    }
    mounted
}

/// mount(2), read-only, with filesystem-specific options in `data`.
pub fn mount_ro(source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
    sys::mount::mount(Path::new(source), target, fstype, flags, data)
}

/// umount2(2), detaching lazily if busy.
pub fn umount(target: &Path) {
    if sys::mount::unmount(target).is_err() {
        let _ = sys::mount::detach(target);
    }
}

/// rescue/init mounts these; the agent makes sure when started some other way.
pub fn ensure_kernel_filesystems() {
    for (fstype, dir, probe) in [
        ("proc", "/proc", "/proc/self"),
        ("sysfs", "/sys", "/sys/block"),
        ("devtmpfs", "/dev", "/dev/null"),
    ] {
        if !Path::new(probe).exists() {
            let _ = std::fs::create_dir_all(dir);
            let _ = sys::mount::mount_kernel_fs(fstype, Path::new(dir));
        }
    }
}

/// Attaches `file` read-only to a free loop device; returns its path.
pub fn loop_attach(file: &Path) -> io::Result<String> {
    let ctl = std::fs::File::open("/dev/loop-control")?;
    let n = sys::loopdev::get_free(&ctl)?;
    let dev = format!("/dev/loop{n}");
    // devtmpfs creates the node as the device appears: give it a moment.
    let mut loopdev = None;
    for _ in 0..50 {
        match std::fs::File::open(&dev) {
            Ok(f) => {
                loopdev = Some(f);
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    let loopdev = loopdev.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, dev.clone()))?;
    let backing = std::fs::File::open(file)?;
    sys::loopdev::set_fd(&loopdev, &backing)?;
    Ok(dev)
}

/// Detaches a loop device.
pub fn loop_detach(dev: &str) {
    if let Ok(f) = std::fs::File::open(dev) {
        let _ = sys::loopdev::clear_fd(&f);
    }
}

/// sync(2), then reboot(2) to power off or restart. Falls back to halting in a sleep loop if
/// the kernel refuses (never returns, never waits for a key).
pub fn power(reboot: bool) -> ! {
    let _ = sys::sync_and_reboot(reboot);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
