//! `osimage verify --boot IMAGE` (issue #10): proof that an image restores. The ISO boots in
//! a throw-away QEMU VM with a blank scratch disk as large as the recorded one; its default
//! entry restores unattended and powers off; the restored disk then boots alone until a
//! witness unit added to the scratch copy says the default target is active; then the scratch
//! disk's files are compared with the image's manifest. Each phase is timed and reported
//! (docs/VERIFY-BOOT.md).
//!
//! `verify_boot` is the library entry point (the CLI and a scheduler call it); `vm` is the QEMU
//! runner the end-to-end tests share.

pub mod accel;
pub mod console;
mod cycle;
pub mod files;
pub mod firstboot;
pub mod key;
pub mod network;
pub mod report;
pub mod scratch;
pub mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::image::ContainerKind;
use crate::iso::IsoReader;
use crate::layout::{DiskLayout, Firmware as RecordedFirmware};
use crate::payload::reader::PayloadReader;
pub use accel::{Accel, AccelChoice};
pub use key::ConsoleKey;
pub use network::{NetworkImage, verify_boot_network};
pub use report::BootReport;
pub use vm::Firmware;

/// Why `verify --boot` could not run (a phase that fails is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum BootCheckError {
    #[error("{tool} not found: install the Debian package {package}")]
    MissingTool { tool: String, package: String },
    #[error("{0}")]
    Image(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BootCheckError {
    pub fn io(what: &str, path: &Path, source: std::io::Error) -> BootCheckError {
        BootCheckError::Io {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Which firmware to boot with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareChoice {
    Bios,
    Uefi,
    /// UEFI with Secure Boot on and Microsoft's keys enrolled (docs/SECUREBOOT.md).
    UefiSecureBoot,
    Both,
}

/// How to run the check.
#[derive(Clone, Debug)]
pub struct BootCheckOptions {
    /// `None`: the source's recorded boot mode.
    pub firmware: Option<FirmwareChoice>,
    pub memory_mib: u32,
    /// Keep the temporary directory (scratch disks and logs).
    pub keep: bool,
    /// Size of the scratch disk (default: the recorded disk's, rounded up to a MiB).
    pub disk_bytes: Option<u64>,
    /// Limit of each VM boot.
    pub timeout: Duration,
    /// No new console output for this long ends a rescue-boot or restore phase ("stalled
    /// after <last line>"), issue #21. Sized for TCG on a busy machine (docs/VERIFY-BOOT.md).
    pub stall: Duration,
    pub accel: AccelChoice,
    /// Where the temporary directory is made (default: $TMPDIR or /tmp).
    pub work_dir: Option<PathBuf>,
}

impl Default for BootCheckOptions {
    fn default() -> Self {
        BootCheckOptions {
            firmware: None,
            memory_mib: 1536,
            keep: false,
            disk_bytes: None,
            timeout: Duration::from_secs(900),
            stall: DEFAULT_STALL,
            accel: AccelChoice::Auto,
            work_dir: None,
        }
    }
}

/// The default `stall`: the longest quiet console stretch of a normal TCG rescue boot and
/// restore in the e2e logs was 19 s (guest time; docs/VERIFY-BOOT.md), and a heavily loaded
/// 2-core host ran such phases up to ~9 times slower.
pub const DEFAULT_STALL: Duration = Duration::from_secs(180);

/// Is `tool` an executable on PATH?
pub(crate) fn on_path(tool: &str) -> bool {
    crate::sys::on_path(tool)
}

/// The firmware modes to run and why.
fn firmware_modes(choice: Option<FirmwareChoice>, layout: &DiskLayout) -> (Vec<Firmware>, String) {
    let b = &layout.boot;
    match choice {
        Some(FirmwareChoice::Bios) => (vec![Firmware::Bios], "bios (asked for)".into()),
        Some(FirmwareChoice::Uefi) => (vec![Firmware::Uefi], "uefi (asked for)".into()),
        Some(FirmwareChoice::UefiSecureBoot) => (
            vec![Firmware::UefiSecureBoot],
            "uefi with Secure Boot on (asked for)".into(),
        ),
        Some(FirmwareChoice::Both) => (
            vec![Firmware::Bios, Firmware::Uefi],
            "bios and uefi (asked for)".into(),
        ),
        None => match b.firmware {
            RecordedFirmware::Bios => (vec![Firmware::Bios], "bios (the source booted so)".into()),
            RecordedFirmware::Uefi => (vec![Firmware::Uefi], "uefi (the source booted so)".into()),
            RecordedFirmware::Unknown => {
                let mut v = Vec::new();
                if b.bios_capable {
                    v.push(Firmware::Bios);
                }
                if b.uefi_capable {
                    v.push(Firmware::Uefi);
                }
                if v.is_empty() {
                    v.push(Firmware::Bios);
                }
                let names: Vec<&str> = v.iter().map(|f| f.name()).collect();
                let note = format!(
                    "{} (the source's boot mode was not recorded: every mode its disk layout boots)",
                    names.join(" and ")
                );
                (v, note)
            }
        },
    }
}

/// A payload image (`.oimg`) holds no rescue environment: nothing to boot.
fn check_container(image: &Path, reader: &PayloadReader) -> Result<(), BootCheckError> {
    if reader.container() != ContainerKind::Iso {
        return Err(BootCheckError::Image(format!(
            "{}: a payload image without the rescue environment cannot boot; verify --boot \
             needs the ISO (`osimage capture ROOT -o NAME.iso`)",
            image.display()
        )));
    }
    Ok(())
}

/// The ISO must have an El Torito entry for each firmware mode.
fn check_bootable(image: &Path, modes: &[Firmware]) -> Result<(), BootCheckError> {
    let iso = IsoReader::open(image)
        .map_err(|e| BootCheckError::Image(format!("{}: {e}", image.display())))?;
    let entries = iso
        .boot_entries()
        .map_err(|e| BootCheckError::Image(format!("{}: {e}", image.display())))?;
    for fw in modes {
        // El Torito platform ids: 0 x86 (BIOS), 0xEF EFI
        let platform = match fw {
            Firmware::Bios => 0x00,
            Firmware::Uefi | Firmware::UefiSecureBoot => 0xEF,
        };
        if !entries.iter().any(|(p, ..)| *p == platform) {
            return Err(BootCheckError::Image(format!(
                "{}: no El Torito boot entry for {} ({}): the ISO's rescue environment cannot \
                 boot that way",
                image.display(),
                fw.name(),
                fw.product()
            )));
        }
    }
    Ok(())
}

/// Runs the whole check on `image` and returns the report (`report.passed` says whether every
/// phase passed). `say` receives progress lines (one per phase as it starts).
pub fn verify_boot(
    image: &Path,
    opts: &BootCheckOptions,
    say: &dyn Fn(&str),
) -> Result<BootReport, BootCheckError> {
    verify_boot_unlocked(image, &crate::envelope::Unlock::default(), opts, say)
}

/// [`verify_boot`] of an image that may be encrypted: `unlock` opens it here, and the key that
/// did (`key::ConsoleKey`) is typed at its rescue agent's prompt in the VM. An encrypted image
/// `unlock` cannot open is refused by the open, with the reason.
pub fn verify_boot_unlocked(
    image: &Path,
    unlock: &crate::envelope::Unlock,
    opts: &BootCheckOptions,
    say: &dyn Fn(&str),
) -> Result<BootReport, BootCheckError> {
    let unreadable =
        |e: crate::format::PayloadError| BootCheckError::Image(format!("{}: {e}", image.display()));
    let reader = PayloadReader::open(image, unlock).map_err(unreadable)?;
    let key = if reader.encrypted() {
        let opens = |u: &crate::envelope::Unlock| PayloadReader::open(image, u).is_ok();
        Some(key::ConsoleKey::chosen(unlock, &opens).ok_or_else(|| {
            BootCheckError::Image(format!(
                "{}: no passphrase or single age key to type at its rescue agent's prompt \
                 opens it",
                image.display()
            ))
        })?)
    } else {
        None
    };
    check_container(image, &reader)?;
    let checked = Checked::new(&image.display().to_string(), &reader, key.as_ref(), opts)?;
    check_bootable(image, &checked.modes)?;
    run_checked(checked, &cycle::Medium::Cdrom(image), opts, say)
}

/// What every medium checks before a VM starts: the disk stack this host can read back, the
/// firmware modes and their QEMU and OVMF, mtools.
struct Checked<'a> {
    shown: String,
    manifest: &'a crate::format::manifest::Manifest,
    layout: DiskLayout,
    modes: Vec<Firmware>,
    firmware_note: String,
    /// Typed at the rescue agent's prompt: the image is encrypted.
    key: Option<&'a key::ConsoleKey>,
}

impl<'a> Checked<'a> {
    fn new(
        shown: &str,
        reader: &'a PayloadReader,
        key: Option<&'a key::ConsoleKey>,
        opts: &BootCheckOptions,
    ) -> Result<Checked<'a>, BootCheckError> {
        let layout =
            crate::restore::layout_of(reader).map_err(|e| BootCheckError::Image(e.to_string()))?;
        check_stack(Path::new(shown), &layout)?;
        let (modes, firmware_note) = firmware_modes(opts.firmware, &layout);
        for fw in &modes {
            vm::check_host(*fw)?;
        }
        if !on_path("mcopy") {
            return Err(BootCheckError::MissingTool {
                tool: "mcopy".into(),
                package: "mtools".into(),
            });
        }
        Ok(Checked {
            shown: shown.to_string(),
            manifest: reader.manifest(),
            layout,
            modes,
            firmware_note,
            key,
        })
    }
}

/// The phases, once per firmware mode, from `medium`.
fn run_checked(
    c: Checked,
    medium: &cycle::Medium,
    opts: &BootCheckOptions,
    say: &dyn Fn(&str),
) -> Result<BootReport, BootCheckError> {
    let disk_bytes = match opts.disk_bytes {
        Some(b) => b,
        None => scratch::disk_bytes(&c.layout)?,
    };
    let parent = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("osimage-verify-")
        .tempdir_in(&parent)
        .map_err(|e| BootCheckError::io("making a temporary directory in", &parent, e))?;
    let (accel, accel_note) =
        accel::choose(opts.accel, &work.path().join("probe")).map_err(BootCheckError::Image)?;
    let mut report = BootReport {
        image: c.shown.clone(),
        accel,
        accel_note,
        memory_mib: opts.memory_mib,
        firmware_note: c.firmware_note.clone(),
        runs: Vec::new(),
        kept: None,
        disks: Vec::new(),
        passed: false,
        vm_failed: false,
        verdict: String::new(),
    };
    let medium = medium.prepared(work.path())?;
    let mut ctx = cycle::Context {
        shown: &c.shown,
        medium: &medium,
        manifest: c.manifest,
        layout: &c.layout,
        key: c.key,
        work: work.path(),
        disk_bytes,
        accel,
        opts,
        say,
    };
    let mut disks = Vec::new();
    for fw in c.modes {
        let (mut run, mut disk) = ctx.run(fw)?;
        if ctx.accel == Accel::Kvm
            && opts.accel == AccelChoice::Auto
            && let Some(p) = run.vm_failed()
        {
            // issue #21: KVM that cannot run this guest is the host's problem; TCG for the
            // rest of the run
            let why = format!(
                "KVM could not run the {} {} phase ({})",
                fw.name(),
                p.phase.name(),
                p.detail.lines().next().unwrap_or("")
            );
            say(&format!("[{}] {why}: TCG from now on", fw.name()));
            report.accel = Accel::Tcg;
            report.accel_note = format!(
                "TCG (fell back: {why}; chosen first: {accel_note_0})",
                accel_note_0 = report.accel_note
            );
            ctx.accel = Accel::Tcg;
            (run, disk) = ctx.run(fw)?;
        }
        report.runs.push(run);
        disks.push(disk);
    }
    report.decide();
    finish(work, &mut report, disks, opts.keep)?;
    Ok(report)
}

/// Removes the temporary directory, or keeps it (all of it with `keep`; the logs only when a
/// phase failed).
fn finish(
    work: tempfile::TempDir,
    report: &mut BootReport,
    disks: Vec<PathBuf>,
    keep: bool,
) -> Result<(), BootCheckError> {
    if keep {
        report.disks = disks.iter().map(|d| d.display().to_string()).collect();
        report.kept = Some(work.keep().display().to_string());
    } else if !report.passed {
        for d in &disks {
            let _ = std::fs::remove_file(d);
        }
        report.kept = Some(format!("{} (console logs)", work.keep().display()));
    } else {
        let p = work.path().to_path_buf();
        work.close()
            .map_err(|e| BootCheckError::io("removing", &p, e))?;
    }
    Ok(())
}

/// The witness and the file comparison open the restored disk from this host, without
/// device-mapper or MD: a filesystem on an LVM logical volume whose PVs are partitions of the
/// disk holding / is read through a loop device over the LV's extents (`scratch`); one on
/// MD RAID or LUKS (or an LV on them, or on another disk) would need the stack assembled here,
/// which `verify --boot` does not do: refused up front rather than after the restore, and
/// never as a verdict on the image.
fn check_stack(image: &Path, layout: &crate::layout::DiskLayout) -> Result<(), BootCheckError> {
    use crate::layout::StackNode;
    if !layout
        .filesystems
        .iter()
        .any(|f| layout.stack.node(&f.device.name).is_some())
    {
        return Ok(());
    }
    let disk = scratch::scratch_disk_index(layout)?;
    let unreadable: Vec<String> = layout
        .filesystems
        .iter()
        .filter_map(|f| match layout.stack.node(&f.device.name)? {
            StackNode::Lv(vg, lv) => {
                let bottom = layout.stack.bottom(&f.device);
                let plain = vg.pvs.iter().all(|pv| {
                    pv.device.disk == disk
                        && pv.device.partition.is_some()
                        && layout.stack.node(&pv.device.name).is_none()
                });
                (!plain || bottom.is_empty()).then(|| {
                    format!(
                        "{} (LV {}/{} on a PV that is not a partition of the disk holding /)",
                        f.mount_point, vg.name, lv.name
                    )
                })
            }
            node => Some(format!("{} (on {})", f.mount_point, node.path())),
        })
        .collect();
    if unreadable.is_empty() {
        return Ok(());
    }
    Err(BootCheckError::Image(format!(
        "{}: verify --boot cannot check {} yet: it reads the restored disk from this host, \
         which it can for LVM on partitions of the disk holding /, not through MD RAID or \
         LUKS; prove it by restoring onto a scratch disk in a VM (docs/RESTORE.md \"LVM, MD \
         RAID and LUKS\")",
        image.display(),
        unreadable.join(", ")
    )))
}

#[cfg(test)]
mod stacked_tests {
    use super::*;
    use crate::layout::{
        DiskLayout, FsRecord, LogicalVolume, MdArray, MdMember, PartRef, PhysicalVolume,
        VolumeGroup,
    };

    #[test]
    fn lvm_on_partitions_is_checked_and_md_or_luks_is_refused_up_front() {
        let mut l = DiskLayout::default();
        let on = |name: &str, partition: Option<u32>| PartRef {
            name: name.into(),
            partition,
            ..Default::default()
        };
        l.filesystems.push(FsRecord {
            device: on("vda1", Some(1)),
            mount_point: "/boot".into(),
            ..Default::default()
        });
        assert!(check_stack(Path::new("x.iso"), &l).is_ok());
        l.filesystems.push(FsRecord {
            device: on("dm-0", None),
            mount_point: "/".into(),
            ..Default::default()
        });
        l.stack.vgs.push(VolumeGroup {
            name: "vg".into(),
            pvs: vec![PhysicalVolume {
                device: on("vda2", Some(2)),
                ..Default::default()
            }],
            lvs: vec![LogicalVolume {
                name: "root".into(),
                kernel_name: "dm-0".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(check_stack(Path::new("x.iso"), &l).is_ok());
        // the same VG on an MD array
        l.stack.vgs[0].pvs[0].device = on("md0", None);
        l.stack.md.push(MdArray {
            name: "md0".into(),
            path: "/dev/md0".into(),
            members: vec![MdMember {
                device: on("vda2", Some(2)),
                ..Default::default()
            }],
            ..Default::default()
        });
        let e = check_stack(Path::new("x.iso"), &l).unwrap_err().to_string();
        assert!(
            e.contains("x.iso: verify --boot cannot check / (LV vg/root on a PV that is not")
                && e.contains("not through MD RAID or LUKS"),
            "{e}"
        );
        // a filesystem right on the array
        l.filesystems.push(FsRecord {
            device: on("md0", None),
            mount_point: "/srv".into(),
            ..Default::default()
        });
        let e = check_stack(Path::new("x.iso"), &l).unwrap_err().to_string();
        assert!(e.contains("/srv (on /dev/md0)"), "{e}");
    }
}
