//! Phase 3b: the block stack of the plan, bottom up, after every disk is partitioned and
//! before any mkfs (issue #19; docs/RESTORE.md "LVM, MD RAID and LUKS"):
//! - MD arrays: `mdadm --create PATH --run ARGS MEMBERS` (the recorded UUID, name, level,
//!   chunk, layout, bitmap and data offset);
//! - LUKS: `cryptsetup luksFormat` with the recorded UUID, label and parameters under the
//!   passphrase given to the restore (a new master key), then `cryptsetup open` as the
//!   recorded mapping;
//! - LVM: `pvcreate --uuid --restorefile` per PV, `vgcfgrestore`, `vgchange -ay`, so every
//!   name, UUID, tag and segment is the source's.
//!
//! The rescue environment has no udev: device-mapper nodes are made by libdevmapper and
//! LVM waits for no one. `Teardown` undoes the activation (never the data) at the end of
//! the restore and on any failure: VGs deactivated, LUKS mappings closed, arrays stopped.

use std::path::{Path, PathBuf};

use super::DiskJob;
use crate::restore::RestoreError;
use crate::restore::log::RestoreLog;
use crate::restore::mounts::run_env;
use crate::restore::plan::{LuksPlan, MdPlan, PlanDev, StackStep, VgPlan};

/// No udev: libdevmapper makes the nodes, LVM and mdadm wait for no one.
const ENV: &[(&str, &str)] = &[
    ("DM_DISABLE_UDEV", "1"),
    ("LVM_SUPPRESS_FD_WARNINGS", "1"),
    ("MDADM_NO_UDEV", "1"),
];
/// No devices file (newer LVM may default to one; the rescue environment has none), no
/// udev; every other setting as LVM builds it.
const LVM_CONFIG: &str = "devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 } \
                          activation { udev_sync = 0 udev_rules = 0 }";

/// What was activated, to release in reverse order.
#[derive(Default)]
pub(super) struct Teardown {
    done: Vec<StackStep>,
}

fn tool(argv: &[&str], on: &Path) -> Result<String, RestoreError> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    run_env(&argv, &[], on, ENV)
}

fn lvm(sub: &str, args: &[&str], on: &Path) -> Result<String, RestoreError> {
    let mut argv = vec!["lvm", sub, "--config", LVM_CONFIG];
    argv.extend_from_slice(args);
    tool(&argv, on)
}

/// Makes every step of the system disk's plan, adding each to `teardown` once it exists.
pub(super) fn make(
    jobs: &[DiskJob],
    staging: &Path,
    passphrase: Option<&str>,
    teardown: &mut Teardown,
    log: &RestoreLog,
) -> Result<(), RestoreError> {
    let Some(first) = jobs.first() else {
        return Ok(());
    };
    for step in &first.plan.stack {
        let dev = |d: &PlanDev| device(jobs, d);
        match step {
            StackStep::Md(m) => md(m, &dev, log)?,
            StackStep::Luks(l) => luks(l, &dev, staging, passphrase, log)?,
            StackStep::Vg(v) => vg(v, &dev, staging, log)?,
        }
        teardown.done.push(step.clone());
    }
    Ok(())
}

/// The node of a planned device: a target's partition or whole disk, or a volume made by
/// an earlier step.
fn device(jobs: &[DiskJob], d: &PlanDev) -> Result<PathBuf, RestoreError> {
    let job = |disk: &str| {
        jobs.iter()
            .find(|j| j.plan.source_disk == disk)
            .ok_or_else(|| {
                RestoreError::target(
                    Path::new(disk),
                    "the block stack names a recorded disk no target was given for".into(),
                )
            })
    };
    match d {
        PlanDev::Volume(v) => Ok(PathBuf::from(v)),
        PlanDev::Disk { disk } => Ok(job(disk)?.target.device.clone()),
        PlanDev::Part { disk, partition } => {
            let t = &job(disk)?.target;
            t.partition(*partition)
                .map_err(|e| RestoreError::io("finding the node of partition", &t.device, e))
        }
    }
}

type DevOf<'a> = dyn Fn(&PlanDev) -> Result<PathBuf, RestoreError> + 'a;

fn md(m: &MdPlan, dev: &DevOf, log: &RestoreLog) -> Result<(), RestoreError> {
    let members: Vec<String> = m
        .members
        .iter()
        .map(|d| dev(d).map(|p| p.to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    let mut argv = vec!["mdadm", "--create", &m.path, "--run"];
    argv.extend(m.args.iter().map(String::as_str));
    argv.extend(members.iter().map(String::as_str));
    log.say(&format!("phase 3b: {}", argv.join(" ")));
    tool(&argv, Path::new(&m.path))?;
    Ok(())
}

/// Why a LUKS container cannot be made without a passphrase (also `restore::preflight`'s).
pub(in crate::restore) fn needs_passphrase(l: &LuksPlan) -> String {
    format!(
        "LUKS container {} ({}) needs a passphrase for its new key: give \
         --luks-passphrase-file FILE (osimage.luks-keyfile=PATH in the rescue environment)",
        l.mapping, l.uuid
    )
}

fn luks(
    l: &LuksPlan,
    dev: &DevOf,
    staging: &Path,
    passphrase: Option<&str>,
    log: &RestoreLog,
) -> Result<(), RestoreError> {
    let on = dev(&l.on)?;
    let Some(pass) = passphrase else {
        return Err(RestoreError::target(&on, needs_passphrase(l)));
    };
    // The key file lives in the staging directory (a tmpfs in the rescue environment) only
    // while cryptsetup runs.
    let key = staging.join(format!("luks-{}.key", l.uuid));
    write_private(&key, pass.as_bytes())?;
    let k = key.to_string_lossy().into_owned();
    let o = on.to_string_lossy().into_owned();
    let result = (|| {
        let mut argv = vec!["cryptsetup", "luksFormat", "--batch-mode", "--key-file", &k];
        argv.extend(l.args.iter().map(String::as_str));
        argv.push(&o);
        log.say(&format!(
            "phase 3b: cryptsetup luksFormat {} {o} (a new master key; the passphrase given \
             to this restore)",
            l.args.join(" ")
        ));
        tool(&argv, &on)?;
        let mut argv = vec!["cryptsetup", "open", "--key-file", &k];
        if !l.open_args.is_empty() {
            argv.push("--persistent");
            argv.extend(l.open_args.iter().map(String::as_str));
        }
        argv.extend([o.as_str(), l.mapping.as_str()]);
        tool(&argv, &on).map(drop)
    })();
    let _ = std::fs::remove_file(&key);
    result
}

/// Writes `bytes` to a new file only root can read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| RestoreError::io("writing the LUKS key file", path, e))
}

fn vg(v: &VgPlan, dev: &DevOf, staging: &Path, log: &RestoreLog) -> Result<(), RestoreError> {
    let on = dev(&v
        .pvs
        .first()
        .map(|p| p.1.clone())
        .unwrap_or(PlanDev::Volume("?".into())))?;
    refuse_a_namesake(v, &on)?;
    let file = staging.join(format!("vg-{}.conf", v.uuid));
    std::fs::write(&file, &v.metadata)
        .map_err(|e| RestoreError::io("writing LVM metadata to", &file, e))?;
    let f = file.to_string_lossy().into_owned();
    log.say(&format!(
        "phase 3b: LVM volume group {} from its metadata",
        v.name
    ));
    for (uuid, d) in &v.pvs {
        let pv = dev(d)?;
        let p = pv.to_string_lossy().into_owned();
        log.say(&format!(
            "  lvm pvcreate --uuid {uuid} --restorefile {f} {p}"
        ));
        lvm(
            "pvcreate",
            &["-ff", "-y", "--uuid", uuid, "--restorefile", &f, &p],
            &pv,
        )?;
    }
    log.say(&format!("  lvm vgcfgrestore -f {f} {}", v.name));
    lvm("vgcfgrestore", &["-f", &f, &v.name], &on)?;
    log.say(&format!("  lvm vgchange -ay {}", v.name));
    lvm("vgchange", &["-ay", &v.name], &on)?;
    lvm("vgmknodes", &[&v.name], &on).map(drop)
}

/// A VG of the same name already on this machine would make the new one's /dev/mapper names
/// ambiguous: refused, naming it.
fn refuse_a_namesake(v: &VgPlan, on: &Path) -> Result<(), RestoreError> {
    let out = lvm("vgs", &["--noheadings", "-o", "vg_name,vg_uuid"], on)?;
    for line in out.lines() {
        let mut w = line.split_whitespace();
        if let (Some(name), Some(uuid)) = (w.next(), w.next())
            && name == v.name
        {
            return Err(RestoreError::target(
                on,
                format!(
                    "a volume group named {name} (UUID {uuid}) is already on this machine; \
                     restoring VG {} (UUID {}) beside it would clash: remove or rename it \
                     (vgrename), or restore on a machine without it",
                    v.name, v.uuid
                ),
            ));
        }
    }
    Ok(())
}

impl Teardown {
    /// Releases what was activated, top down (best effort: each failure is logged).
    pub(super) fn release(&mut self, log: &RestoreLog) {
        while let Some(step) = self.done.pop() {
            let r = match &step {
                StackStep::Vg(v) => lvm("vgchange", &["-an", &v.name], Path::new(&v.name)),
                StackStep::Luks(l) => {
                    tool(&["cryptsetup", "close", &l.mapping], Path::new(&l.mapping))
                }
                StackStep::Md(m) => tool(&["mdadm", "--stop", &m.path], Path::new(&m.path)),
            };
            if let Err(e) = r {
                log.say(&format!("  note: releasing the block stack: {e}"));
            }
        }
    }
}
