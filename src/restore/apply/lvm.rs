//! Phase 3b: the LVM volume groups of the plan, recreated from their recorded metadata
//! (`pvcreate --uuid --restorefile`, `vgcfgrestore`, `vgchange -ay`), so every name, UUID, tag
//! and segment is the source's and the captured system's fstab, initramfs and GRUB find them.
//! The rescue environment has no udev: libdevmapper makes the /dev/mapper nodes itself.

use std::path::{Path, PathBuf};

use crate::restore::RestoreError;
use crate::restore::log::RestoreLog;
use crate::restore::mounts::run_env;
use crate::restore::plan::{RestorePlan, VgPlan};
use crate::restore::target::TargetDisk;

/// No udev here: device-mapper nodes are made by libdevmapper, and LVM waits for no one.
const ENV: &[(&str, &str)] = &[("DM_DISABLE_UDEV", "1"), ("LVM_SUPPRESS_FD_WARNINGS", "1")];
/// No devices file (newer LVM may default to one; the rescue environment has none), no
/// udev; every other setting as LVM builds it.
const CONFIG: &str = "devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 } \
                      activation { udev_sync = 0 udev_rules = 0 }";

/// `lvm SUBCOMMAND ARGS…` with the rescue environment's settings.
fn lvm(sub: &str, args: &[&str], on: &Path) -> Result<String, RestoreError> {
    let mut argv = vec![
        "lvm".to_string(),
        sub.to_string(),
        "--config".into(),
        CONFIG.into(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    run_env(&argv, &[], on, ENV)
}

/// Creates and activates every VG of `plan` on `target`'s partitions, adding each to `made`
/// as soon as it exists (`deactivate` releases them at the end of the restore, or on a
/// failure).
pub(super) fn make_volume_groups(
    plan: &RestorePlan,
    target: &TargetDisk,
    staging: &Path,
    made: &mut Vec<String>,
    log: &RestoreLog,
) -> Result<(), RestoreError> {
    for vg in &plan.volume_groups {
        log.say(&format!(
            "phase 3b: LVM volume group {} from its metadata",
            vg.name
        ));
        refuse_a_namesake(vg, &target.device)?;
        let file = staging.join(format!("vg-{}.conf", vg.uuid));
        std::fs::write(&file, &vg.metadata)
            .map_err(|e| RestoreError::io("writing LVM metadata to", &file, e))?;
        let f = file.to_string_lossy().into_owned();
        for (uuid, n) in &vg.pvs {
            let dev = part(target, *n)?;
            let d = dev.to_string_lossy().into_owned();
            log.say(&format!(
                "  lvm pvcreate --uuid {uuid} --restorefile {f} {d}"
            ));
            lvm(
                "pvcreate",
                &["-ff", "-y", "--uuid", uuid, "--restorefile", &f, &d],
                &dev,
            )?;
        }
        log.say(&format!("  lvm vgcfgrestore -f {f} {}", vg.name));
        lvm("vgcfgrestore", &["-f", &f, &vg.name], &target.device)?;
        made.push(vg.name.clone());
        log.say(&format!("  lvm vgchange -ay {}", vg.name));
        lvm("vgchange", &["-ay", &vg.name], &target.device)?;
        lvm("vgmknodes", &[&vg.name], &target.device)?;
    }
    Ok(())
}

/// A VG of the same name already active here (another disk of this machine) would make the
/// new one's /dev/mapper names ambiguous: refused, naming it.
fn refuse_a_namesake(vg: &VgPlan, on: &Path) -> Result<(), RestoreError> {
    let out = lvm("vgs", &["--noheadings", "-o", "vg_name,vg_uuid"], on)?;
    for line in out.lines() {
        let mut w = line.split_whitespace();
        if let (Some(name), Some(uuid)) = (w.next(), w.next())
            && name == vg.name
        {
            return Err(RestoreError::target(
                on,
                format!(
                    "a volume group named {name} (UUID {uuid}) is already on this machine; \
                     restoring VG {} (UUID {}) beside it would clash: remove or rename it \
                     (vgrename), or restore on a machine without it",
                    vg.name, vg.uuid
                ),
            ));
        }
    }
    Ok(())
}

/// Deactivates the VGs made, so the disk is released before power-off (best effort: each
/// failure is logged).
pub(super) fn deactivate(names: &[String], on: &Path, log: &RestoreLog) {
    for n in names {
        if let Err(e) = lvm("vgchange", &["-an", n], on) {
            log.say(&format!("  note: deactivating VG {n}: {e}"));
        }
    }
}

fn part(target: &TargetDisk, n: u32) -> Result<PathBuf, RestoreError> {
    target
        .partition(n)
        .map_err(|e| RestoreError::io("finding the node of partition", &target.device, e))
}
