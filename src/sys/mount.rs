//! mount(2), umount2(2), a private mount namespace (unshare(2) with CLONE_NEWNS) and detached
//! bind mounts (open_tree(2) with OPEN_TREE_CLONE).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

pub use rustix::mount::MountFlags;
use rustix::mount::{MountPropagationFlags, OpenTreeFlags, UnmountFlags};

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// mount(2) of `source` at `target` as `fstype`, with filesystem-specific options in `data`
/// (passed as given, also when empty).
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> io::Result<()> {
    let data = cstr(data.as_bytes())?;
    rustix::mount::mount(source, target, fstype, flags, Some(data.as_c_str()))?;
    Ok(())
}

/// mount(2) of a kernel filesystem (`proc`, `sysfs`, `devtmpfs`): source and type are its
/// name, no flags, no data.
pub fn mount_kernel_fs(fstype: &str, target: &Path) -> io::Result<()> {
    rustix::mount::mount(fstype, target, fstype, MountFlags::empty(), None)?;
    Ok(())
}

/// umount2(2) without flags.
pub fn unmount(target: &Path) -> io::Result<()> {
    rustix::mount::unmount(target, UnmountFlags::empty())?;
    Ok(())
}

/// umount2(2) with MNT_DETACH: the mount leaves the tree now and goes when no longer busy.
pub fn detach(target: &Path) -> io::Result<()> {
    rustix::mount::unmount(target, UnmountFlags::DETACH)?;
    Ok(())
}

/// Moves the calling thread into a mount namespace of its own (unshare CLONE_NEWNS) and makes
/// every mount in it private (MS_REC | MS_PRIVATE on `/`), so nothing propagates back out.
pub fn private_namespace() -> io::Result<()> {
    // SAFETY: only CLONE_NEWNS is unshared; the file descriptor table (CLONE_FILES, the case
    // `unshare_unsafe` warns about) stays shared with the other threads.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )?;
    Ok(())
}

/// A bind mount of the directory `dir`, not recursive (no mount below it comes along) and
/// detached: it is attached nowhere, exists only as the returned descriptor, and goes when that
/// is closed, on every exit path, a killed process included (open_tree(2), OPEN_TREE_CLONE
/// without AT_RECURSIVE; Linux 5.2). Through it a mount point's own directory, hidden under
/// what is mounted on it, can be looked at. Needs CAP_SYS_ADMIN (EPERM otherwise).
pub fn detached_bind(dir: impl AsFd) -> io::Result<OwnedFd> {
    let flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    Ok(rustix::mount::open_tree(dir, "", flags)?)
}
