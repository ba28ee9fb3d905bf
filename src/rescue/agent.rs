//! The restore agent: what `osimage rescue-agent` runs in the rescue environment, started by
//! `rescue/init` once the modules are loaded. It finds the boot medium by the image id (never
//! by device name: a CD-ROM, a USB stick written with dd, or the ISO file on a disk), lists the
//! disks it could restore to, and reports on every console. In auto mode it never waits for a
//! key: it ends with a power-off (or reboot) whatever happens.
//!
//! Console contract (tests and automation read it): `OSIMAGE-RESCUE-READY medium=<dev>
//! disks=<list>` when ready, `OSIMAGE-RESTORE-FAILED <reason>` on failure,
//! `OSIMAGE-RESTORE-DONE` after a restore, `OSIMAGE-RESTORE-WAITING <reason>` when it falls back
//! to interactive mode and waits for the keyboard.
//!
//! Choosing the disk (issue #5): `osimage.target=` names it (restored over existing data only
//! with `osimage.force=1`); otherwise auto mode takes the only empty disk big enough for the
//! plan, after a 5 s countdown, and falls back to interactive mode when there is none or
//! several. Interactive mode lists the disks with what they hold, asks for one and, if it holds
//! data, for its name typed again. The restore itself is `crate::restore`. A failure never
//! reboots: auto mode powers off, interactive mode leaves the shell.

mod cmdline;
mod console;
mod disks;
mod medium;
mod sys;
pub mod unlock;

use std::path::Path;
use std::time::Duration;

use crate::restore::log::LineProgress;
use crate::restore::plan::size;
use crate::restore::{self, RestoreOptions, RestorePlan};

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
        Ok(Outcome::Ready) => {
            if opts.auto {
                finish(opts.after, &con);
            }
            0
        }
        Ok(Outcome::Shell) => {
            if opts.auto {
                // rescue/init powers off when the agent returns in auto mode: the shell is ours.
                let _ = std::process::Command::new("sh").arg("-l").status();
                finish(AfterRestore::PowerOff, &con);
            }
            0
        }
        Ok(Outcome::Restored { interactive }) => {
            con.line("OSIMAGE-RESTORE-DONE");
            if opts.auto && !interactive {
                finish(opts.after, &con);
            }
            after_interactive(&con)
        }
        Err(reason) => {
            let reason = reason.replace(['\n', '\r'], " ");
            con.line(&format!("OSIMAGE-RESTORE-FAILED {reason}"));
            if opts.auto {
                // Never reboot into a half-restored disk.
                finish(AfterRestore::PowerOff, &con);
            }
            con.line("osimage: the restore stopped; here is a shell");
            1
        }
    }
}

/// How `run` ended.
enum Outcome {
    /// Ready, with nothing to restore (the medium carries no image payload).
    Ready,
    /// The user chose the shell instead of a disk.
    Shell,
    /// A restore completed; `interactive`: the user chose the disk (so they choose the end).
    Restored { interactive: bool },
}

fn run(opts: &AgentOptions, con: &Console) -> Result<Outcome, String> {
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
    restore_from(opts, con, &medium, &disks)
}

/// Picks the target disk and restores the image on the medium onto it.
fn restore_from(
    opts: &AgentOptions,
    con: &Console,
    medium: &Medium,
    disks: &[Disk],
) -> Result<Outcome, String> {
    if !medium.mount_point.join("osimage/manifest.osm").exists() {
        con.line("osimage: the medium carries no image payload: nothing to restore");
        return Ok(Outcome::Ready);
    }
    let keyfile = opts
        .keyfile
        .as_deref()
        .map(|k| unlock::read_keyfile(k, &medium.mount_point))
        .transpose()?;
    let reader = unlock::without_echo(|| {
        unlock::open_image(
            Path::new(&medium.device),
            keyfile.as_deref(),
            con,
            &mut std::io::stdin().lock(),
        )
    })?;
    let layout = restore::layout_of(&reader).map_err(|e| format!("no-layout {e}"))?;
    let fits = |d: &Disk| {
        let (size, sector) = restore::target::geometry(Path::new(&d.device)).ok()?;
        RestorePlan::new(&layout, &d.device, size, sector).ok()
    };
    let (device, force, interactive) = match &opts.target {
        Some(t) => {
            let d = disks
                .iter()
                .find(|d| &d.device == t)
                .ok_or_else(|| format!("target-not-available {t}"))?;
            if d.blank || opts.force {
                (t.clone(), opts.force, false)
            } else if opts.auto {
                return Err(format!(
                    "target-not-empty {t} (it holds data; osimage.force=1 restores over it)"
                ));
            } else {
                con.line(&format!(
                    "OSIMAGE-RESTORE-WAITING {t} holds data: confirm interactively"
                ));
                match choose(con, disks, Some(t))? {
                    Some(c) => (c.0, c.1, true),
                    None => return Ok(Outcome::Shell),
                }
            }
        }
        None => {
            let empty: Vec<&Disk> = disks
                .iter()
                .filter(|d| d.blank && fits(d).is_some())
                .collect();
            if opts.auto && empty.len() == 1 {
                let d = empty[0].device.clone();
                countdown(con, &d);
                (d, false, false)
            } else {
                if opts.auto {
                    con.line(&format!(
                        "OSIMAGE-RESTORE-WAITING {} empty disks big enough for the image \
                         (unattended restore needs exactly one): interactive mode",
                        empty.len()
                    ));
                }
                match choose(con, disks, None)? {
                    Some(c) => (c.0, c.1, true),
                    None => return Ok(Outcome::Shell),
                }
            }
        }
    };
    let ropts = RestoreOptions {
        force,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        nvram: true,
        exclude_disks: medium.disks.clone(),
        ..RestoreOptions::default()
    };
    let progress = LineProgress::new(|l: &str| con.line(l), Duration::from_secs(2));
    let target = Path::new(&device);
    let plan = restore::plan_for(&reader, target).map_err(|e| format!("no-plan {e}"))?;
    for line in plan.to_string().lines() {
        con.line(line);
    }
    let (_, report) = restore::restore_to_disk(&reader, target, &ropts, &progress)
        .map_err(|e| format!("restore {device}: {e}"))?;
    for line in report.summary().lines() {
        con.line(line);
    }
    Ok(Outcome::Restored { interactive })
}

/// A visible countdown before an unattended restore (never waits for a key).
fn countdown(con: &Console, device: &str) {
    for s in (1..=COUNTDOWN_SECS).rev() {
        con.line(&format!(
            "osimage: restoring onto the empty disk {device} in {s} s"
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Seconds of the unattended countdown (docs/DESIGN.md: at most 5).
const COUNTDOWN_SECS: u64 = 5;

/// A line from the console, `None` at end of input.
fn ask(con: &Console, prompt: &str) -> Option<String> {
    con.line(prompt);
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

/// Interactive choice: lists the disks with what they hold, asks for one, and for a disk that
/// holds data, asks for its name again. `None`: the user wants the shell.
fn choose(
    con: &Console,
    disks: &[Disk],
    preset: Option<&String>,
) -> Result<Option<(String, bool)>, String> {
    con.line("osimage: disks (the boot medium is not listed):");
    for d in disks {
        let held = restore::target::contents_of(Path::new(&d.device))
            .map(|c| {
                if c.is_empty() {
                    "empty".to_string()
                } else {
                    c.found.join("; ")
                }
            })
            .unwrap_or_else(|e| format!("unreadable: {e}"));
        con.line(&format!(
            "  {}  {}  {:?}  {held}",
            d.device,
            size(d.size_bytes),
            d.model
        ));
    }
    loop {
        let pick = match preset {
            Some(p) => p.clone(),
            None => {
                let Some(a) = ask(
                    con,
                    "osimage: restore onto which disk? (e.g. /dev/vda; 'shell' to stop)",
                ) else {
                    return Err("no-input (interactive mode needs a keyboard)".into());
                };
                a
            }
        };
        if pick == "shell" || pick.is_empty() {
            return Ok(None);
        }
        let pick = if pick.starts_with("/dev/") {
            pick
        } else {
            format!("/dev/{pick}")
        };
        let Some(d) = disks.iter().find(|d| d.device == pick) else {
            con.line(&format!("osimage: {pick} is not one of the disks listed"));
            continue;
        };
        let held = restore::target::contents_of(Path::new(&d.device)).map_err(|e| e.to_string())?;
        if held.is_empty() {
            return Ok(Some((pick, false)));
        }
        con.line(&format!(
            "osimage: the restore DESTROYS everything on {pick}:"
        ));
        for f in &held.found {
            con.line(&format!("  {f}"));
        }
        match ask(
            con,
            &format!("osimage: type {pick} to confirm, anything else to stop"),
        ) {
            Some(a) if a == pick => return Ok(Some((pick, true))),
            Some(_) => return Ok(None),
            None => return Err("no-input (interactive mode needs a keyboard)".into()),
        }
    }
}

/// After an interactive restore: the user chooses reboot, power off or a shell.
fn after_interactive(con: &Console) -> i32 {
    match ask(
        con,
        "osimage: restore done. [r]eboot, [p]ower off, or [s]hell?",
    )
    .as_deref()
    {
        Some("r") | Some("reboot") => finish(AfterRestore::Reboot, con),
        Some("p") | Some("poweroff") => finish(AfterRestore::PowerOff, con),
        _ => 0,
    }
}

/// Auto mode's end: sync, then power off or reboot as asked. Never waits for a key.
fn finish(after: AfterRestore, con: &Console) -> ! {
    let reboot = after == AfterRestore::Reboot;
    con.line(if reboot {
        "osimage: rebooting"
    } else {
        "osimage: powering off"
    });
    sys::power(reboot)
}
