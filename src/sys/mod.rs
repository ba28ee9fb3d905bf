//! The system calls osimage makes itself, in one place: mount and umount, loop devices, the
//! block-device and btrfs ioctls, power off, the one PATH lookup and random bytes. Everything here is a thin, safe
//! wrapper over `rustix` (the ioctls rustix has no wrapper for go through `rustix::ioctl` with
//! typed opcodes); the policy (retries, fallbacks, error wording) stays with the callers.

pub mod block;
pub mod btrfs;
pub mod loopdev;
pub mod mount;

use std::path::PathBuf;

pub use mount::MountFlags;

/// `N` random bytes from the kernel (`getrandom`, retried when a signal interrupts it): ids,
/// salts and nonces.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    let mut filled = 0;
    while filled < N {
        match rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(b)
}

/// The first file called `tool` in a directory of `$PATH` (the one PATH lookup of the crate:
/// "tool needed" checks before running one all come here).
pub fn find_on_path(tool: &str) -> Option<PathBuf> {
    find_on(&std::env::var_os("PATH")?, tool)
}

/// The first file called `tool` in a directory of `path` (a `PATH`-style list).
pub fn find_on(path: &std::ffi::OsStr, tool: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join(tool))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
}

/// Is `tool` a file in a directory of `$PATH`?
pub fn on_path(tool: &str) -> bool {
    find_on_path(tool).is_some()
}

/// sync(2), then reboot(2) to power off (`reboot` false) or restart. Returns only if the
/// kernel refused.
pub fn sync_and_reboot(reboot: bool) -> std::io::Result<()> {
    use rustix::system::RebootCommand;
    rustix::fs::sync();
    let cmd = if reboot {
        RebootCommand::Restart
    } else {
        RebootCommand::PowerOff
    };
    rustix::system::reboot(cmd)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_is_on_path() {
        assert!(on_path("sh"));
        assert!(find_on_path("sh").is_some_and(|p| p.ends_with("sh")));
        assert!(!on_path("osimage-no-such-tool"));
    }
}
