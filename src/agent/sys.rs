//! The few system calls the agent makes itself (mount, loop devices, power), as small safe
//! wrappers: the rescue environment has no `mount` or `losetup` we could rely on.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

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
    let (src, tgt, fst, dat) = (
        cstr(source)?,
        cstr(&target.to_string_lossy())?,
        cstr(fstype)?,
        cstr(data)?,
    );
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: all pointers are valid NUL-terminated strings living across the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fst.as_ptr(),
            flags,
            dat.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// mount(2) of a kernel filesystem (proc, sysfs, devtmpfs), read-write.
fn mount_kernel_fs(fstype: &str, target: &str) -> io::Result<()> {
    let (src, tgt) = (cstr(fstype)?, cstr(target)?);
    // SAFETY: valid NUL-terminated strings; null data is allowed.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// umount2(2), detaching lazily if busy.
pub fn umount(target: &Path) {
    if let Ok(t) = cstr(&target.to_string_lossy()) {
        // SAFETY: valid NUL-terminated string.
        unsafe {
            if libc::umount2(t.as_ptr(), 0) != 0 {
                libc::umount2(t.as_ptr(), libc::MNT_DETACH);
            }
        }
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
            let _ = mount_kernel_fs(fstype, dir);
        }
    }
}

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// Attaches `file` read-only to a free loop device; returns its path.
pub fn loop_attach(file: &Path) -> io::Result<String> {
    let ctl = std::fs::File::open("/dev/loop-control")?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
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
    // SAFETY: both descriptors are open for the duration of the call.
    let rc = unsafe { libc::ioctl(loopdev.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dev)
}

/// Detaches a loop device.
pub fn loop_detach(dev: &str) {
    if let Ok(f) = std::fs::File::open(dev) {
        // SAFETY: the descriptor is open; LOOP_CLR_FD takes no argument.
        unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD as _, 0) };
    }
}

/// sync(2), then reboot(2) to power off or restart. Falls back to halting in a sleep loop if
/// the kernel refuses (never returns, never waits for a key).
pub fn power(reboot: bool) -> ! {
    let cmd = if reboot {
        libc::RB_AUTOBOOT
    } else {
        libc::RB_POWER_OFF
    };
    // SAFETY: sync and reboot take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(cmd);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
