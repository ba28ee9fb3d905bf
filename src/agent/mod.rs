//! The restore agent: what `osimage rescue-agent` runs in the rescue environment, started by
//! `rescue/init` once the modules are loaded. A front-end beside `crate::cli`; the environment
//! it runs in is built by `crate::rescue`. It finds the boot medium by the image id (never
//! by device name: a CD-ROM, a USB stick written with dd, or the ISO file on a disk) or, with
//! `osimage.source=URL`, brings the network up and reads the image over HTTP(S) with Range
//! requests (`network`, docs/NETBOOT.md: `OSIMAGE-NET-UP <if> <addr> via <gw>`), lists the
//! disks it could restore to, and reports on every console. In auto mode it never waits for a
//! key: it ends with a power-off (or reboot) whatever happens.
//!
//! Console contract (tests and automation read it): `OSIMAGE-RESCUE-READY medium=<dev>
//! disks=<list>` when ready, `OSIMAGE-RESTORE-FAILED <reason>` on failure,
//! `OSIMAGE-RESTORE-DONE` after a restore, `OSIMAGE-RESTORE-WAITING <reason>` when it falls back
//! to interactive mode and waits for the keyboard. A restore that leaves a disk that will not
//! boot ends in `OSIMAGE-RESTORE-FAILED not-bootable <reasons>` unless
//! `osimage.allow-unbootable=1` (issue #24).
//!
//! Choosing the disk (issue #5): `osimage.target=` names it (restored over existing data only
//! with `osimage.force=1`); otherwise auto mode takes the only empty disk big enough for the
//! plan, after a 5 s countdown, and falls back to interactive mode when there is none or
//! several. Interactive mode lists the disks with what they hold, asks for one and, if it holds
//! data, for its name typed again. The restore itself is `crate::restore`. A failure never
//! reboots: auto mode powers off, interactive mode leaves the shell.

mod cmdline;
mod console;
mod dialogue;
mod disks;
mod medium;
mod network;
mod source;
mod sys;
pub mod unlock;

use std::path::Path;
use std::time::Duration;

use crate::envelope::Unlock;
use crate::payload::reader::PayloadReader;

use crate::restore::log::LineProgress;
use crate::restore::{self, RestoreOptions, RestoreRequest, Targets};

pub use cmdline::{AfterRestore, AgentOptions};
pub use console::Console;
pub use disks::Disk;
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

/// How this machine booted, for the console (and the tests that read it there): BIOS, or UEFI
/// with Secure Boot on or off (docs/SECUREBOOT.md says what lockdown then restricts).
fn firmware_line(efi: &Path) -> String {
    if !efi.exists() {
        return "osimage: firmware BIOS".into();
    }
    let sb = match crate::layout::secure_boot_state(&efi.join("efivars")) {
        Some(true) => "on (kernel lockdown applies)",
        Some(false) => "off",
        None => "unknown (no SecureBoot variable in efivarfs)",
    };
    format!("osimage: firmware UEFI, Secure Boot {sb}")
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
    con.line(&firmware_line(Path::new("/sys/firmware/efi")));
    let medium = match &opts.source {
        Some(spec) => source::network_medium(opts, spec, con)?,
        None => {
            con.line(&format!(
                "osimage: looking for the boot medium of image {id}"
            ));
            medium::find(&id, Duration::from_secs(opts.wait_secs), con).ok_or_else(|| {
                format!(
                    "medium-not-found (no device holds /osimage/id-{id} after {} s)",
                    opts.wait_secs
                )
            })?
        }
    };
    con.line(&match medium.remote {
        Some(_) => format!("osimage: image {} ({})", medium.device, medium.how),
        None => format!(
            "osimage: boot medium {} ({}), mounted at {}",
            medium.device,
            medium.how,
            medium.mount_point.display()
        ),
    });
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
    let outcome = restore_from(opts, con, &id, &medium, &disks);
    if let Some(o) = &medium.remote {
        con.line(&format!(
            "osimage: read from {}: {}",
            medium.device,
            o.stats()
        ));
    }
    outcome
}

/// `osimage.keyfile=`/`osimage.luks-keyfile=`: a path on the boot medium, an absolute path or
/// `DEVICE:PATH`; with the image read from a URL there is no medium to hold a relative path.
fn keyfile_text(spec: &str, medium: &Medium) -> Result<String, String> {
    if medium.remote.is_some() && !spec.starts_with('/') {
        return Err(format!(
            "keyfile-unreadable {spec}: a path on the boot medium, but the image comes from a \
             URL (give an absolute path in the initramfs or /dev/X:PATH on a second medium)"
        ));
    }
    unlock::read_keyfile(spec, &medium.mount_point)
}

/// Picks the target disk and restores the image on the medium onto it.
fn restore_from(
    opts: &AgentOptions,
    con: &Console,
    id: &str,
    medium: &Medium,
    disks: &[Disk],
) -> Result<Outcome, String> {
    if medium.remote.is_none() && !medium.mount_point.join("osimage/manifest.osm").exists() {
        con.line("osimage: the medium carries no image payload: nothing to restore");
        return Ok(Outcome::Ready);
    }
    let keyfile = opts
        .keyfile
        .as_deref()
        .map(|k| keyfile_text(k, medium))
        .transpose()?;
    let name = Path::new(&medium.device);
    let open = |u: &Unlock| match &medium.remote {
        Some(o) => o.open(name, u),
        None => PayloadReader::open(name, u),
    };
    let reader = unlock::without_echo(|| {
        unlock::open_image(&open, keyfile.as_deref(), con, &mut std::io::stdin().lock())
    })?;
    // A medium is found by the id; an image named by URL must be the one this rescue
    // environment was built for.
    let got: String = reader
        .manifest()
        .image
        .id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != id {
        return Err(format!(
            "wrong-image {} holds image {got}; this rescue environment restores image {id}",
            medium.device
        ));
    }
    let default_layout = match restore::has_no_layout(&reader) {
        Ok(false) => false,
        Ok(true) => use_default_layout(opts, con)?,
        Err(e) => return Err(format!("no-layout {e}")),
    };
    // Why a blank disk is not a candidate, kept for the WAITING line (a plan error names
    // the real reason: a layout the restore cannot recreate, a disk too small by N bytes).
    let why_not = std::cell::RefCell::new(Vec::<String>::new());
    let fits = |d: &Disk| {
        let plan = restore::target::geometry(Path::new(&d.device)).and_then(|(size, sector)| {
            restore::plan_with_layout(&reader, &d.device, size, sector, default_layout)
        });
        plan.map_err(|e| why_not.borrow_mut().push(format!("{}: {e}", d.device)))
            .ok()
    };
    if !default_layout && let Some(targets) = several_disks(opts, con, &reader, disks)? {
        let chosen = Chosen {
            targets,
            force: opts.force,
            default_layout: false,
            interactive: false,
        };
        return restore_onto(opts, con, medium, &reader, &chosen);
    }
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
                    let why = why_not.borrow();
                    let because = match why.is_empty() {
                        true => String::new(),
                        false => format!("; not usable: {}", why.join("; ")),
                    };
                    con.line(&format!(
                        "OSIMAGE-RESTORE-WAITING {} empty disks big enough for the image \
                         (unattended restore needs exactly one){because}: interactive mode",
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
    let chosen = Chosen {
        targets: vec![(None, device)],
        force,
        default_layout,
        interactive,
    };
    restore_onto(opts, con, medium, &reader, &chosen)
}

/// For an image of several recorded disks: the targets from `osimage.map=`, else, in auto
/// mode without `osimage.target=`, from the pairing rule (`plan::several::auto_pairs`: as many
/// empty disks as recorded disks, largest onto largest). `None`: restore the system disk alone
/// (the usual choice of one disk).
fn several_disks(
    opts: &AgentOptions,
    con: &Console,
    reader: &crate::payload::reader::PayloadReader,
    disks: &[Disk],
) -> Result<Option<Vec<Target>>, String> {
    let Ok(layout) = restore::layout_of(reader) else {
        return Ok(None);
    };
    if !opts.map.is_empty() {
        let mut targets = Vec::new();
        for (source, device) in &opts.map {
            let d = disks.iter().find(|d| &d.device == device).ok_or_else(|| {
                format!(
                    "target-not-available {device} (osimage.map: not a disk, or the boot medium)"
                )
            })?;
            if !d.blank && !opts.force {
                return Err(format!(
                    "target-not-empty {device} (it holds data; osimage.force=1 restores over it)"
                ));
            }
            targets.push((Some(source.clone()), device.clone()));
        }
        con.line(&format!(
            "osimage: several disks (osimage.map): {}",
            targets
                .iter()
                .map(|(s, d)| format!("{}={d}", s.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Ok(Some(targets));
    }
    let used = restore::plan::several::used_disks(&layout);
    if used.len() < 2 || !opts.auto || opts.target.is_some() {
        return Ok(None);
    }
    let empty: Vec<&Disk> = disks.iter().filter(|d| d.blank).collect();
    let geometry: Vec<(u64, u32)> = empty
        .iter()
        .map(|d| restore::target::geometry(Path::new(&d.device)).unwrap_or((0, 512)))
        .collect();
    let Some(pairs) = restore::plan::several::auto_pairs(&layout, &geometry) else {
        con.line(&format!(
            "osimage: the image recorded {} disks and {} empty disks are here (the rule pairs              them only when the counts match and each fits): restoring the system disk alone              unless osimage.map= says otherwise",
            used.len(),
            empty.len()
        ));
        return Ok(None);
    };
    let targets: Vec<Target> = pairs
        .iter()
        .map(|&(d, c)| {
            (
                Some(layout.disks[d as usize].name.clone()),
                empty[c].device.clone(),
            )
        })
        .collect();
    for (s, d) in &targets {
        con.line(&format!(
            "osimage: recorded disk {} → empty disk {d} (several disks: largest onto largest)",
            s.as_deref().unwrap_or("?")
        ));
    }
    let shown: Vec<String> = targets.iter().map(|t| t.1.clone()).collect();
    countdown(con, &shown.join(" and "));
    Ok(Some(targets))
}

/// A restore target: (recorded disk, device); no recorded disk: the system disk.
type Target = (Option<String>, String);

/// What the agent chose to restore onto, and how.
struct Chosen {
    /// One `(None, device)` for the system disk alone (or the default layout), else
    /// (recorded disk, device) pairs.
    targets: Vec<Target>,
    /// Over a disk that holds data (`osimage.force=1`, or confirmed at the console).
    force: bool,
    /// The image has no layout: osimage's default one.
    default_layout: bool,
    /// Chosen at the console: the restore asks before it writes and says so at the end.
    interactive: bool,
}

/// The LUKS passphrase, when the image's layout has LUKS containers to make anew.
fn luks_passphrase(
    opts: &AgentOptions,
    con: &Console,
    medium: &Medium,
    reader: &crate::payload::reader::PayloadReader,
) -> Result<Option<String>, String> {
    let needed: Vec<String> = restore::layout_of(reader)
        .map(|l| l.stack.luks.iter().map(|x| x.mapping.clone()).collect())
        .unwrap_or_default();
    let keyfile = opts
        .luks_keyfile
        .as_deref()
        .map(|k| keyfile_text(k, medium))
        .transpose()?;
    unlock::without_echo(|| {
        unlock::luks_passphrase(
            &needed,
            keyfile.as_deref(),
            con,
            &mut std::io::stdin().lock(),
        )
    })
}

/// Restores as `chosen` says.
fn restore_onto(
    opts: &AgentOptions,
    con: &Console,
    medium: &Medium,
    reader: &crate::payload::reader::PayloadReader,
    chosen: &Chosen,
) -> Result<Outcome, String> {
    let Chosen {
        targets,
        force,
        default_layout,
        interactive,
    } = chosen;
    let (targets, force, default_layout, interactive) =
        (targets.as_slice(), *force, *default_layout, *interactive);
    let device = targets
        .iter()
        .map(|t| t.1.clone())
        .collect::<Vec<_>>()
        .join(", ");
    // Per-machine files: `osimage.overlay=DEVICE[:DIR]` (a second medium), else an `overlay/`
    // folder at the top of the boot medium (docs/GENERALIZE.md).
    let overlay = match &opts.overlay {
        Some(spec) => Some(medium::overlay_from(spec)?),
        None => {
            let o = medium.mount_point.join("overlay");
            o.is_dir().then_some(o)
        }
    };
    if let Some(o) = &overlay {
        con.line(&format!(
            "osimage: overlay {} will be copied over the restored tree",
            o.display()
        ));
    }
    let luks = luks_passphrase(opts, con, medium, reader)?;
    let request = RestoreRequest {
        targets: match targets {
            [(None, one)] => Targets::Disk(one.into()),
            _ => Targets::Disks {
                system: None,
                map: targets
                    .iter()
                    .map(|(s, d)| (s.clone().unwrap_or_default(), d.into()))
                    .collect(),
            },
        },
        options: RestoreOptions {
            force,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            nvram: true,
            exclude_disks: medium.disks.clone(),
            default_layout,
            generalize: restore::generalize::GeneralizeOptions {
                identity: opts.generalize,
                hostname: opts.hostname.clone(),
            },
            overlay,
            new_uuids: opts.new_uuids,
            luks_passphrase: luks,
            seed: opts.seed,
            write_bench: opts.write_bench,
            ..RestoreOptions::default()
        },
    };
    // checked before anything is written, not after the unpack; resolved here (and again, to
    // the same name, by `prepare`) so the console shows it, or `bad-hostname`, before the plan
    if let Some(name) = request
        .hostname()
        .map_err(|e| format!("bad-hostname {e}"))?
    {
        con.line(&format!("osimage: hostname of the restored system: {name}"));
    }
    for l in request.options.generalize.plan_lines() {
        con.line(&format!("osimage: generalize: {l}"));
    }
    let progress = LineProgress::new(|l: &str| con.line(l), Duration::from_secs(2));
    let prepared = restore::prepare(reader, &request).map_err(|e| format!("no-plan {e}"))?;
    for plan in &prepared.plans {
        for line in plan.to_string().lines() {
            con.line(line);
        }
    }
    if interactive {
        // the plan was shown; nothing is written before the user says yes to it
        match dialogue::confirm_plan(&mut |l| con.line(l), &mut |p| ask(con, p), &device) {
            Some(true) => {}
            Some(false) => {
                con.line("osimage: nothing was written");
                return Ok(Outcome::Shell);
            }
            None => return Err("no-input (interactive mode needs a keyboard)".into()),
        }
    }
    let report = prepared
        .apply(reader, &progress)
        .map_err(|e| format!("restore {device}: {e}"))?;
    for line in report.summary().lines() {
        con.line(line);
    }
    // issue #24: never DONE (nor a reboot into it) for a disk that cannot boot, unless accepted
    if !report.unbootable.is_empty() && !opts.allow_unbootable {
        return Err(format!(
            "not-bootable {device}: {} (the files are restored; osimage.allow-unbootable=1 \
             accepts such a disk)",
            report.unbootable.join("; ")
        ));
    }
    Ok(Outcome::Restored { interactive })
}

/// For an image that recorded no disk layout: whether to use osimage's default one. Yes with
/// `osimage.default-layout=1`; in auto mode without it the agent says why it waits and asks
/// (interactive mode asks straight away).
fn use_default_layout(opts: &AgentOptions, con: &Console) -> Result<bool, String> {
    if opts.default_layout {
        con.line("osimage: the image recorded no disk layout: using the default layout (osimage.default-layout=1)");
        return Ok(true);
    }
    if opts.auto {
        con.line(
            "OSIMAGE-RESTORE-WAITING the image recorded no disk layout (osimage.default-layout=1 \
             uses the default one unattended): interactive mode",
        );
    }
    match dialogue::default_layout(&mut |l| con.line(l), &mut |p| ask(con, p)) {
        Some(true) => Ok(true),
        Some(false) => Err(
            "no-layout the image recorded no disk layout and the default one \
                            was declined (restore its files with osimage restore --to DIR)"
                .into(),
        ),
        None => Err("no-input (interactive mode needs a keyboard)".into()),
    }
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

/// Interactive choice (`dialogue::choose_disk`) on the console, with what each disk holds read
/// from its first and last MiB.
fn choose(
    con: &Console,
    disks: &[Disk],
    preset: Option<&String>,
) -> Result<Option<(String, bool)>, String> {
    let held = |device: &str| {
        restore::target::contents_of(Path::new(device))
            .map(|c| c.found)
            .map_err(|e| e.to_string())
    };
    dialogue::choose_disk(
        &mut |l| con.line(l),
        &mut |p| ask(con, p),
        disks,
        &held,
        preset,
    )
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
