//! Mounts made during a restore, undone in reverse order on drop (a failure half way leaves
//! nothing mounted), and the external tools a restore runs, with errors naming tool, device and
//! package.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::RestoreError;
use super::mkfs::package_of;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// mount(2).
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let src = cstr(source.as_os_str().as_bytes())?;
    let tgt = cstr(target.as_os_str().as_bytes())?;
    let fst = cstr(fstype.as_bytes())?;
    let dat = cstr(data.as_bytes())?;
    // SAFETY: every pointer is a valid NUL-terminated string living across the call.
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

/// umount2(2); a busy mount is retried, then detached lazily.
pub fn umount(target: &Path) -> io::Result<()> {
    let t = cstr(target.as_os_str().as_bytes())?;
    for _ in 0..10 {
        // SAFETY: valid NUL-terminated string.
        if unsafe { libc::umount2(t.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: valid NUL-terminated string.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the calling thread (and the threads and tools it starts from now on) into a mount
/// namespace of its own, with nothing propagating back out: every mount a restore makes then
/// disappears with the process, even a killed one (docs/RESTORE.md "Interrupted restores").
pub fn private_namespace() -> io::Result<()> {
    // SAFETY: unshare takes flags only; CLONE_NEWNS affects the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let root = cstr(b"/")?;
    let none = cstr(b"none")?;
    // SAFETY: valid NUL-terminated strings; a null data pointer is allowed for MS_PRIVATE.
    let rc = unsafe {
        libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()> {
        mount(source, target, fstype, flags, data)?;
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
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .any(|d| std::fs::metadata(d.join(tool)).is_ok_and(|m| m.is_file()))
    })
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
