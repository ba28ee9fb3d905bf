//! Mounts made during a restore, undone in reverse order on drop (a failure half way leaves
//! nothing mounted), and the external tools a restore runs, with errors naming tool, device and
//! package.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::RestoreError;
use super::mkfs::package_of;
use crate::sys::{self, MountFlags};

/// umount2(2); a busy mount is retried, then detached lazily.
pub fn umount(target: &Path) -> io::Result<()> {
    for _ in 0..10 {
        match sys::mount::unmount(target) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
    sys::mount::detach(target)
}

/// Moves the calling thread (and the threads and tools it starts from now on) into a mount
/// namespace of its own, with nothing propagating back out: every mount a restore makes then
/// disappears with the process, even a killed one (docs/RESTORE.md "Faults and interrupted restores").
pub fn private_namespace() -> io::Result<()> {
    sys::mount::private_namespace()
}

/// Enters a private mount namespace (`private_namespace`; without one, `note` is told that
/// mounts may outlive a killed restore) and makes the staging directory the restore mounts
/// under. The directory is kept, to be removed only when empty: a mount that failed to go
/// away must never let a recursive removal reach the restored tree or the running system.
pub fn private_staging(note: &dyn Fn(&str)) -> Result<PathBuf, RestoreError> {
    if let Err(e) = private_namespace() {
        note(&format!(
            "note: no private mount namespace ({e}): if this restore is killed, its mounts \
             under {} stay behind",
            std::env::temp_dir().display()
        ));
    }
    Ok(tempfile::Builder::new()
        .prefix("osimage-restore")
        .tempdir()
        .map_err(|e| RestoreError::io("creating a staging directory in", &std::env::temp_dir(), e))?
        .keep())
}

/// Mounts in the order made; `unmount_all` (or drop) undoes them last first.
#[derive(Default)]
pub struct Mounts {
    list: Vec<PathBuf>,
}

impl Mounts {
    /// Mounts and remembers.
    pub fn mount(
        &mut self,
        source: &Path,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        sys::mount::mount(source, target, fstype, flags, data)?;
        self.list.push(target.to_path_buf());
        Ok(())
    }

    /// Syncs and unmounts everything, last first; the first failure is returned after trying
    /// them all.
    pub fn unmount_all(&mut self) -> Result<(), RestoreError> {
        let mut first = None;
        while let Some(t) = self.list.pop() {
            if let Err(e) = umount(&t) {
                first.get_or_insert(RestoreError::io("unmounting", &t, e));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.unmount_all();
    }
}

/// Is `tool` on PATH?
pub fn have(tool: &str) -> bool {
    sys::on_path(tool)
}

/// Runs `argv` (plus `extra` arguments), capturing output; fails naming the tool, what it
/// worked on and, when it is missing, the package that provides it.
pub fn run(argv: &[String], extra: &[&std::ffi::OsStr], on: &Path) -> Result<String, RestoreError> {
    run_env(argv, extra, on, &[])
}

/// `run` with environment variables.
pub fn run_env(
    argv: &[String],
    extra: &[&std::ffi::OsStr],
    on: &Path,
    env: &[(&str, &str)],
) -> Result<String, RestoreError> {
    let tool = argv.first().cloned().unwrap_or_default();
    let fail = |msg: String| RestoreError::Tool {
        tool: tool.clone(),
        device: on.to_path_buf(),
        msg,
    };
    let out = Command::new(&tool)
        .args(&argv[1..])
        .args(extra)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                fail(format!(
                    "not found on PATH (install {} in the captured system)",
                    package_of(&tool)
                ))
            } else {
                fail(e.to_string())
            }
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let outs = String::from_utf8_lossy(&out.stdout);
        let text = if err.trim().is_empty() { outs } else { err };
        return Err(fail(format!(
            "{} ({}): {}",
            out.status,
            argv.join(" "),
            text.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
