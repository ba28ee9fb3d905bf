//! The restore agent: what `osimage rescue-agent` runs in the rescue environment, started by
//! `rescue/init` once the modules are loaded. It finds the boot medium by the image id (never
//! by device name: a CD-ROM, a USB stick written with dd, or the ISO file on a disk), lists the
//! disks it could restore to, and reports on every console. In auto mode it never waits for a
//! key: it ends with a power-off (or reboot) whatever happens.
//!
//! Console contract (tests and automation read it): `OSIMAGE-RESCUE-READY medium=<dev>
//! disks=<list>` when ready, `OSIMAGE-RESTORE-FAILED <reason>` on failure,
//! `OSIMAGE-RESTORE-DONE` after a restore (a later issue).

mod cmdline;
mod console;
mod disks;
mod medium;
mod sys;

use std::time::Duration;

pub use cmdline::{AfterRestore, AgentOptions};
pub use console::Console;
pub use disks::{Disk, has_signature};
pub use medium::Medium;

/// Where the initramfs keeps the image id it was built for.
pub const IMAGE_ID_FILE: &str = "/osimage/image-id";

/// Runs the agent with the kernel command line read from `/proc/cmdline`.
pub fn agent_main_from_proc() -> i32 {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    agent_main(&cmdline)
}

/// Runs the agent for a kernel command line; returns the exit status (0 ready, 1 failed).
/// In auto mode it does not return: it powers off or reboots.
pub fn agent_main(cmdline: &str) -> i32 {
    let opts = AgentOptions::parse(cmdline);
    let con = Console::open();
    con.line(&format!(
        "osimage {} rescue agent: mode={}",
        env!("CARGO_PKG_VERSION"),
        if opts.auto { "auto" } else { "interactive" }
    ));
    match run(&opts, &con) {
        Ok(()) => {
            if opts.auto {
                finish(&opts, &con);
            }
            con.line("osimage: interactive restore is not implemented yet; leaving you a shell");
            0
        }
        Err(reason) => {
            let reason = reason.replace(['\n', '\r'], " ");
            con.line(&format!("OSIMAGE-RESTORE-FAILED {reason}"));
            if opts.auto {
                finish(&opts, &con);
            }
            1
        }
    }
}

fn run(opts: &AgentOptions, con: &Console) -> Result<(), String> {
    sys::ensure_kernel_filesystems();
    let id = match &opts.image_id {
        Some(id) => id.clone(),
        None => std::fs::read_to_string(IMAGE_ID_FILE)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("no-image-id ({IMAGE_ID_FILE}: {e})"))?,
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("bad-image-id {id:?}"));
    }
    con.line(&format!(
        "osimage: looking for the boot medium of image {id}"
    ));
    let medium = medium::find(&id, Duration::from_secs(opts.wait_secs), con).ok_or_else(|| {
        format!(
            "medium-not-found (no device holds /osimage/id-{id} after {} s)",
            opts.wait_secs
        )
    })?;
    con.line(&format!(
        "osimage: boot medium {} ({}), mounted at {}",
        medium.device,
        medium.how,
        medium.mount_point.display()
    ));
    let disks = disks::candidates(&medium.disks);
    for d in &disks {
        con.line(&format!("osimage: disk {}", d.describe()));
    }
    if let Some(t) = &opts.target {
        if !disks.iter().any(|d| &d.device == t) {
            return Err(format!(
                "target-not-available {t} (not a disk, or the boot medium)"
            ));
        }
        con.line(&format!("osimage: target {t} (osimage.target)"));
    }
    let list: Vec<String> = disks.iter().map(Disk::short).collect();
    let list = if list.is_empty() {
        "none".to_string()
    } else {
        list.join(",")
    };
    con.line(&format!(
        "OSIMAGE-RESCUE-READY medium={} disks={list}",
        medium.device
    ));
    Ok(())
}

/// Auto mode's end: sync, then power off or reboot as asked. Never waits for a key.
fn finish(opts: &AgentOptions, con: &Console) -> ! {
    let reboot = opts.after == AfterRestore::Reboot;
    con.line(if reboot {
        "osimage: rebooting"
    } else {
        "osimage: powering off"
    });
    sys::power(reboot)
}
