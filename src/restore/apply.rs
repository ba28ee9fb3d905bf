//! Applying a `RestorePlan` to a disk, in phases (STYLE.md rule 9): wipe → partition table →
//! raw boot areas → mkfs → mount → extract per filesystem → ESP → boot loader → log → sync and
//! unmount. Every phase is logged; the first failure stops the restore with its reason, and
//! whatever was mounted is unmounted on the way out.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::esp::{self, VfatWriter};
use super::log::{LOG_PATH, RestoreLog};
use super::mounts::{Mounts, have, run};
use super::plan::{FsPlan, PartKind, RestorePlan, size};
use super::target::TargetDisk;
use super::{RestoreError, RestoreOptions, blockdev, btrfs, disk, generalize, grub, overlay, tree};
use crate::extract::{ExtractOptions, extract};
use crate::layout::{Disk, DiskLayout};
use crate::payload::reader::PayloadReader;
use crate::progress::Progress;
use crate::sys::MountFlags;
use rustix::io::Errno;

/// What one filesystem received.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsReport {
    pub mount_point: String,
    pub fstype: String,
    pub device: String,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub millis: u64,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    pub target: String,
    pub filesystems: Vec<FsReport>,
    /// Boot loader steps taken, one line each.
    pub boot: Vec<String>,
    /// Warnings from extraction (owners, xattrs a filesystem refused).
    pub warnings: u64,
    pub millis: u64,
    /// Where the log was written in the restored system, if it was.
    pub log: Option<String>,
    /// Why the restored disk will not boot, one reason each (each is also a `boot` line);
    /// empty when a boot path was written and, for UEFI, read back (issue #24). The front-ends
    /// fail such a restore unless the user accepts it (`--allow-unbootable`).
    pub unbootable: Vec<String>,
}

impl RestoreReport {
    /// The closing summary printed on the console.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "restored {} in {:.1} s:\n",
            self.target,
            self.millis as f64 / 1000.0
        );
        for f in &self.filesystems {
            let secs = (f.millis as f64 / 1000.0).max(0.001);
            s.push_str(&format!(
                "  {:<12} {:<6} on {}: {}, {}, {} ({}/s)\n",
                f.mount_point,
                f.fstype,
                f.device,
                crate::units::count(f.entries, "entry", "entries"),
                crate::units::count(f.files, "file", "files"),
                size(f.bytes),
                size((f.bytes as f64 / secs) as u64)
            ));
        }
        for b in &self.boot {
            s.push_str(&format!("  boot: {b}\n"));
        }
        if self.warnings > 0 {
            s.push_str(&format!("  {} warnings (see the log)\n", self.warnings));
        }
        if let Some(l) = &self.log {
            s.push_str(&format!("  log: {l}\n"));
        }
        s
    }

    /// Records that the disk will not boot: a `boot` line and a reason.
    fn not_bootable(&mut self, line: String) {
        self.boot.push(line.clone());
        self.unbootable.push(line);
    }
}

mod identities;
mod regenerate;
mod stack;

pub(super) use stack::needs_passphrase as luks_needs_passphrase;

/// A filesystem made and mounted for extraction.
struct Made {
    plan: FsPlan,
    device: PathBuf,
    /// Where extract writes (a mount, or an mtools staging directory for vfat).
    dir: PathBuf,
    vfat: Option<VfatWriter>,
}

/// What the phases after partitioning share, built once per restore and passed by reference
/// (wimlib's `unix_apply_ctx`): the plan of all the disks together, where the files come
/// from, the system disk, the options, the log, the staging directory, every mount made so far
/// (undone by `apply_all` whatever happens) and the report being filled in.
struct ApplyCtx<'a> {
    plan: RestorePlan,
    reader: &'a PayloadReader,
    /// The system disk (the first job's): boot loader and NVRAM go there.
    target: &'a TargetDisk,
    /// The other disks whose plan says grub-install must run on them (GRUB on both disks
    /// of a RAID1): device and why.
    more_grub: Vec<(PathBuf, String)>,
    opts: &'a RestoreOptions,
    log: &'a RestoreLog<'a>,
    staging: PathBuf,
    mounts: Mounts,
    report: RestoreReport,
    /// What phase 7 did for booting, checked once the ESP is written (`check_boot`).
    booted: BootDone,
}

/// What phase 7 wrote for booting, before it is checked.
#[derive(Default)]
struct BootDone {
    /// GRUB's i386-pc core image was installed (grub-install ran chrooted).
    bios_installed: bool,
    /// The ESP (index into `made`), where its report line goes in `report.boot`, and what
    /// `ensure_removable` copied into EFI/BOOT.
    esp: Option<(usize, usize, Vec<String>)>,
}

impl ApplyCtx<'_> {
    /// The restored tree assembled for chrooting (once; later calls find it assembled).
    fn chroot(&mut self, made: &[Made]) -> Result<grub::Chroot, RestoreError> {
        grub::assemble(&chroot_parts(made), &self.staging, &mut self.mounts)
    }
}

/// Applies `plan` to `target`, reading files from `reader`. The layout is the image's record
/// (for the raw boot bytes the plan only sizes).
pub fn apply(
    plan: &RestorePlan,
    layout: &DiskLayout,
    reader: &PayloadReader,
    target: &mut TargetDisk,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    apply_all(
        &mut [DiskJob { plan, target }],
        layout,
        reader,
        opts,
        progress,
    )
}

/// One disk of a restore: its plan and the opened target.
pub struct DiskJob<'a> {
    pub plan: &'a RestorePlan,
    pub target: &'a mut TargetDisk,
}

/// Applies one plan per disk (`plan::several`), the system disk's first: each disk is
/// partitioned and gets its filesystems, then the tree is unpacked across all of them, and
/// the boot loader goes onto the system disk.
pub fn apply_all(
    jobs: &mut [DiskJob],
    layout: &DiskLayout,
    reader: &PayloadReader,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let log = RestoreLog::new(progress);
    if jobs.is_empty() {
        return Err(RestoreError::target(
            Path::new("(none)"),
            "no disk to restore onto".into(),
        ));
    }
    let disks = source_disks(jobs, layout)?;
    // Every check that can refuse the image's tree, before the first disk is wiped.
    let filesystems: Vec<_> = jobs
        .iter()
        .flat_map(|j| j.plan.filesystems.clone())
        .collect();
    super::tree::check_parts(reader, &filesystems)?;
    announce(jobs, reader, &log);
    let report = RestoreReport {
        target: jobs
            .iter()
            .map(|j| j.target.given.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        ..Default::default()
    };
    let staging = super::mounts::private_staging(&|m| log.say(m))?;
    let mut teardown = stack::Teardown::default();
    let laid = lay_out(jobs, layout, &disks, &staging, opts, &mut teardown, &log);
    let made_fs = match laid {
        Ok(m) => m,
        Err(e) => {
            teardown.release(&log);
            remove_staging(&staging);
            return Err(e);
        }
    };
    let (all, devices) = one_tree(jobs, made_fs);
    let more_grub = jobs[1..]
        .iter()
        .filter_map(|j| {
            let why = j.plan.boot.grub_install.clone()?;
            Some((j.target.device.clone(), why))
        })
        .collect();
    let mut cx = ApplyCtx {
        plan: all,
        reader,
        target: jobs[0].target,
        more_grub,
        opts,
        log: &log,
        staging,
        mounts: Mounts::default(),
        report,
        booted: BootDone::default(),
    };
    let result = fill(&mut cx, devices);
    // Unmount whatever happened; a failure above wins over one here.
    log.say("phase 9/9: syncing and unmounting");
    let unmounted = cx.mounts.unmount_all();
    teardown.release(&log);
    remove_staging(&cx.staging);
    result?;
    unmounted?;
    let mut report = cx.report;
    for j in jobs.iter() {
        blockdev::flush(&j.target.file)
            .map_err(|e| RestoreError::io("syncing", &j.target.device, e))?;
    }
    report.millis = started.elapsed().as_millis() as u64;
    log.say(&format!("restore finished in {:.1} s", log.elapsed_secs()));
    Ok(report)
}

/// Phases 1–4: every disk's table and boot areas, then the block stack across them, then
/// every disk's filesystems and swap. What the stack activates is added to `teardown` as it
/// is, so a failure can release it.
fn lay_out(
    jobs: &mut [DiskJob],
    layout: &DiskLayout,
    disks: &[&Disk],
    staging: &Path,
    opts: &RestoreOptions,
    teardown: &mut stack::Teardown,
    log: &RestoreLog,
) -> Result<Vec<(FsPlan, PathBuf)>, RestoreError> {
    for (j, disk) in jobs.iter_mut().zip(disks) {
        write_disk(j.plan, layout, disk, j.target, log)?;
    }
    stack::make(
        jobs,
        staging,
        opts.luks_passphrase.as_deref(),
        teardown,
        log,
    )?;
    let mut made_fs = Vec::new();
    for j in jobs.iter() {
        let devices = make_filesystems(j.plan, j.target, log)?;
        made_fs.extend(j.plan.filesystems.iter().cloned().zip(devices));
    }
    Ok(made_fs)
}

/// The recorded disk of each job, after checking that each plan was made for its disk.
fn source_disks<'l>(
    jobs: &[DiskJob],
    layout: &'l DiskLayout,
) -> Result<Vec<&'l Disk>, RestoreError> {
    let mut disks = Vec::new();
    for j in jobs {
        let (plan, target) = (j.plan, &j.target);
        if plan.target.size_bytes != target.size_bytes || plan.target.sector != target.sector {
            return Err(RestoreError::target(
                &target.given,
                format!(
                    "the plan was made for {} bytes / {}-byte sectors, the disk has {} / {}",
                    plan.target.size_bytes, plan.target.sector, target.size_bytes, target.sector
                ),
            ));
        }
        let disk = layout
            .disks
            .iter()
            .find(|d| d.name == plan.source_disk)
            .ok_or_else(|| {
                RestoreError::target(
                    &target.given,
                    "the plan's source disk is not in the layout".into(),
                )
            })?;
        disks.push(disk);
    }
    Ok(disks)
}

/// The restore log's first lines: what is restored onto what, then each disk's plan.
fn announce(jobs: &[DiskJob], reader: &PayloadReader, log: &RestoreLog) {
    let names: Vec<String> = jobs
        .iter()
        .map(|j| {
            format!(
                "{} ({})",
                j.target.given.display(),
                j.target.device.display()
            )
        })
        .collect();
    log.say(&format!(
        "osimage restore of {} onto {}",
        reader.path().display(),
        names.join(" and ")
    ));
    for j in jobs {
        for line in j.plan.to_string().lines() {
            log.say(line);
        }
    }
}

/// One tree across the disks: the system disk's plan with every disk's filesystems (root
/// first, then by mount-point depth, as they are mounted and filled), swaps, renamed
/// identities and notes; and the device of each filesystem, in the same order.
fn one_tree(jobs: &[DiskJob], mut made_fs: Vec<(FsPlan, PathBuf)>) -> (RestorePlan, Vec<PathBuf>) {
    made_fs.sort_by_key(|(f, _)| (super::plan::depth(&f.mount_point), f.mount_point.clone()));
    let mut all = jobs[0].plan.clone();
    for j in &jobs[1..] {
        all.swaps.extend(j.plan.swaps.iter().cloned());
        all.renamed.extend(j.plan.renamed.iter().cloned());
        all.notes.extend(j.plan.notes.iter().cloned());
    }
    let (filesystems, devices): (Vec<FsPlan>, Vec<PathBuf>) = made_fs.into_iter().unzip();
    all.filesystems = filesystems;
    (all, devices)
}

/// Phases 1–3: signatures wiped, table written, raw boot areas written back, partitions seen.
fn write_disk(
    plan: &RestorePlan,
    layout: &DiskLayout,
    disk: &Disk,
    target: &mut TargetDisk,
    log: &RestoreLog,
) -> Result<(), RestoreError> {
    let dev = target.device.clone();
    log.say(&format!(
        "phase 1/9: wiping old signatures on {}",
        dev.display()
    ));
    disk::wipe(&target.file, plan).map_err(|e| RestoreError::io("wiping", &dev, e))?;
    log.say(&format!(
        "phase 2/9: writing the {} partition table",
        match plan.table {
            super::plan::TablePlan::Gpt { .. } => "GPT",
            super::plan::TablePlan::Mbr { .. } => "MBR",
            super::plan::TablePlan::None => "(no)",
        }
    ));
    disk::write_table(&mut target.file, plan, disk)
        .map_err(|e| RestoreError::target(&target.given, e))?;
    log.say("phase 3/9: writing the boot areas back verbatim");
    disk::write_boot_areas(&target.file, plan, layout, disk)
        .map_err(|e| RestoreError::io("writing boot areas to", &dev, e))?;
    blockdev::flush(&target.file).map_err(|e| RestoreError::io("flushing", &dev, e))?;
    let s = u64::from(plan.target.sector);
    let parts: Vec<(u32, u64, u64)> = plan
        .partitions
        .iter()
        .map(|p| {
            let len = match p.kind {
                // The kernel shows an extended partition as its first sectors only.
                PartKind::Mbr { extended: true, .. } => s.max(1024),
                _ => (p.last_lba + 1 - p.first_lba) * s,
            };
            (p.number, p.first_lba * s, len)
        })
        .collect();
    if !parts.is_empty() {
        blockdev::announce_partitions(&target.file, &parts)
            .map_err(|e| RestoreError::io("telling the kernel about the partitions of", &dev, e))?;
    }
    Ok(())
}

/// Phase 4: mkfs and mkswap with the original identities. Returns each planned filesystem's
/// device.
fn make_filesystems(
    plan: &RestorePlan,
    target: &TargetDisk,
    log: &RestoreLog,
) -> Result<Vec<PathBuf>, RestoreError> {
    let node = |n: Option<u32>, volume: &Option<String>| -> Result<PathBuf, RestoreError> {
        match (volume, n) {
            (Some(v), _) => Ok(PathBuf::from(v)),
            (None, None) => Ok(target.device.clone()),
            (None, Some(n)) => target
                .partition(n)
                .map_err(|e| RestoreError::io("finding the node of partition", &target.device, e)),
        }
    };
    log.say("phase 4/9: making filesystems and swap");
    let mut devices = Vec::new();
    for f in &plan.filesystems {
        let dev = node(f.partition, &f.volume)?;
        if let Some(cmd) = &f.mkfs {
            log.say(&format!("  {} {}", cmd.join(" "), dev.display()));
            run(cmd, &[dev.as_os_str()], &dev)?;
        }
        devices.push(dev);
    }
    for s in &plan.swaps {
        let dev = node(s.partition, &s.volume)?;
        log.say(&format!("  {} {}", s.mkswap.join(" "), dev.display()));
        run(&s.mkswap, &[dev.as_os_str()], &dev)?;
    }
    Ok(devices)
}

/// Phases 5–8, with everything they mount recorded in `cx.mounts`.
fn fill(cx: &mut ApplyCtx, devices: Vec<PathBuf>) -> Result<(), RestoreError> {
    cx.log.say("phase 5/9: mounting the new filesystems");
    let mut made = Vec::new();
    let filesystems = cx.plan.filesystems.clone();
    for (i, (f, dev)) in filesystems.iter().zip(devices).enumerate() {
        made.push(mount_one(cx, i, f, dev)?);
    }
    cx.log
        .say("phase 6/9: unpacking the image (chunks verified as they are read)");
    let started = Instant::now();
    let cpu_before = super::write_bench::Cpu::now();
    unpack(cx, &made)?;
    // Written data reaches the disk now, so a write that fails there (the disk, or an image
    // file's filesystem, is full) stops the restore here, before the log could claim success.
    sync_all(&made, cx.target)?;
    if cx.opts.write_bench {
        let cpu = cpu_before
            .zip(super::write_bench::Cpu::now())
            .map(|(b, a)| b.until(a));
        write_bench(cx, &made, started.elapsed(), cpu)?;
    }
    for (i, m) in made.iter().enumerate() {
        btrfs::finish_readonly(&m.device, &m.plan.subvolumes, &cx.staging, i)?;
    }
    cx.log.say("phase 7/9: boot loader");
    boot_loader(cx, &made)?;
    per_machine(cx, &made)?;
    for m in &made {
        if let Some(w) = &m.vfat {
            if matches!(w, VfatWriter::Mtools { .. }) {
                cx.log.say(&format!(
                    "  {}: copying the files with mtools",
                    m.plan.mount_point
                ));
            }
            w.finish()?;
        }
    }
    sync_all(&made, cx.target)?;
    check_boot(cx, &made)?;
    cx.log.say("phase 8/9: writing the restore log");
    cx.report.log = write_log(cx, &made)?;
    sync_all(&made, cx.target)
}

/// `osimage.bench=dd`: dd writes the unpack's bytes into the filesystem that took the most.
fn write_bench(
    cx: &ApplyCtx,
    made: &[Made],
    unpack: Duration,
    unpack_cpu: Option<super::write_bench::Cpu>,
) -> Result<(), RestoreError> {
    let bytes: u64 = cx.report.filesystems.iter().map(|f| f.bytes).sum();
    let largest = made
        .iter()
        .zip(&cx.report.filesystems)
        .filter(|(m, _)| m.vfat.is_none())
        .max_by_key(|(_, f)| f.bytes);
    let Some((m, _)) = largest else {
        cx.log
            .say("osimage.bench=dd: no filesystem dd could write to (all vfat)");
        return Ok(());
    };
    cx.log.say(&format!(
        "osimage.bench=dd: writing {} with dd into {}",
        size(bytes),
        m.plan.mount_point
    ));
    let children = super::write_bench::Cpu::children_now();
    let mut line = super::write_bench::dd_beside(&m.dir, bytes, unpack)?;
    let dd_cpu = children
        .zip(super::write_bench::Cpu::children_now())
        .map(|(b, a)| b.until(a));
    line.push_str(&super::write_bench::cpu_split(
        cx.reader,
        cx.opts.threads.max(1),
        unpack_cpu,
        dd_cpu,
    )?);
    cx.log.say(&line);
    Ok(())
}

/// syncfs on every mounted filesystem; a failure names the mount point, its device and the
/// target (the staging directory means nothing to the user).
fn sync_all(made: &[Made], target: &TargetDisk) -> Result<(), RestoreError> {
    for m in made {
        if m.vfat
            .as_ref()
            .is_none_or(|w| matches!(w, VfatWriter::Mounted(_)))
        {
            let synced = std::fs::File::open(&m.dir)
                .and_then(|f| rustix::fs::syncfs(&f).map_err(std::io::Error::from));
            if let Err(e) = synced {
                return Err(RestoreError::target(
                    &target.given,
                    format!(
                        "writing {} ({} on {}) failed: {e}",
                        m.plan.mount_point,
                        m.plan.fstype,
                        m.device.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Mounts planned filesystem `i` at its own directory under `staging` (not nested: each is
/// filled on its own, so extract always starts from an empty directory).
fn mount_one(cx: &mut ApplyCtx, i: usize, f: &FsPlan, dev: PathBuf) -> Result<Made, RestoreError> {
    let dir = cx.staging.join(format!("fs{i}"));
    std::fs::create_dir(&dir).map_err(|e| RestoreError::io("creating", &dir, e))?;
    if f.fstype == "vfat" {
        let try_mount = if cx.opts.mtools {
            Err(std::io::Error::from(Errno::NODEV))
        } else {
            cx.mounts
                .mount(&dev, &dir, "vfat", MountFlags::empty(), "quiet")
        };
        let writer = match try_mount {
            Ok(()) => VfatWriter::Mounted(dir.clone()),
            Err(e) if e.raw_os_error() == Some(Errno::NODEV.raw_os_error()) && have("mcopy") => {
                cx.log.say(&format!(
                    "  {}: this kernel cannot mount vfat; filling it with mtools",
                    f.mount_point
                ));
                let staging = tempfile::Builder::new()
                    .prefix("osimage-vfat")
                    .tempdir()
                    .map_err(|e| {
                        RestoreError::io(
                            "creating a staging directory in",
                            &std::env::temp_dir(),
                            e,
                        )
                    })?;
                VfatWriter::Mtools {
                    device: dev.clone(),
                    staging,
                }
            }
            Err(e) => return Err(RestoreError::io("mounting (vfat)", &dev, e)),
        };
        let dir = writer.dir().to_path_buf();
        return Ok(Made {
            plan: f.clone(),
            device: dev,
            dir,
            vfat: Some(writer),
        });
    }
    if f.fstype == "btrfs" && (f.subvol.is_some() || !f.subvolumes.is_empty()) {
        btrfs::create_all(
            &dev,
            &f.subvolumes,
            f.subvol.as_deref(),
            &f.default_subvol,
            &cx.staging,
            i,
        )?;
    }
    let data = f
        .subvol
        .as_ref()
        .map(|s| format!("subvol={s}"))
        .unwrap_or_default();
    cx.mounts
        .mount(&dev, &dir, &f.fstype, MountFlags::empty(), &data)
        .map_err(|e| RestoreError::io("mounting", &dev, e))?;
    cx.log.say(&format!(
        "  {} ({}) mounted from {}",
        f.mount_point,
        f.fstype,
        dev.display()
    ));
    Ok(Made {
        plan: f.clone(),
        device: dev,
        dir,
        vfat: None,
    })
}

/// Phase 6: each filesystem gets its part of the tree.
fn unpack(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    let (log, report) = (cx.log, &mut cx.report);
    let mps: Vec<String> = made.iter().map(|m| m.plan.mount_point.clone()).collect();
    let strip: Vec<bool> = made.iter().map(|m| m.plan.fstype == "vfat").collect();
    let parts = tree::split(cx.reader, &mps, &strip)?;
    for (m, part) in made.iter().zip(parts) {
        let t = Instant::now();
        log.say(&format!(
            "  {}: {}, {} of file data",
            m.plan.mount_point,
            crate::units::count(part.entry_count() as u64, "entry", "entries"),
            size(part.data_bytes())
        ));
        // mke2fs made lost+found (with preallocated blocks): kept when the image has one,
        // removed when it has not, so the tree is the image's.
        let lf = m.dir.join("lost+found");
        if m.vfat.is_none() && lf.is_dir() && !part.has_path(b"lost+found") {
            std::fs::remove_dir(&lf).map_err(|e| RestoreError::io("removing", &lf, e))?;
        }
        log.set_prefix(&m.plan.mount_point);
        let eo = ExtractOptions {
            paths: Vec::new(),
            threads: cx.opts.threads.max(1),
            // FAT has no owners; the image's are kept everywhere else.
            restore_owner: m.plan.fstype != "vfat",
            sync: false,
            // A fresh filesystem already has lost+found (and nested mount points).
            into_mounts: true,
            ..ExtractOptions::default()
        };
        let r = extract(&part, &m.dir, &eo, log);
        log.set_prefix("");
        let r = r?;
        report.warnings += r.warnings;
        report.filesystems.push(FsReport {
            mount_point: m.plan.mount_point.clone(),
            fstype: m.plan.fstype.clone(),
            device: m.device.display().to_string(),
            entries: r.entries,
            files: r.files,
            bytes: r.bytes_written,
            millis: t.elapsed().as_millis() as u64,
        });
        log.say(&format!(
            "  {}: {}, {} written in {:.1} s",
            m.plan.mount_point,
            crate::units::count(r.files, "file", "files"),
            size(r.bytes_written),
            t.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// Phase 7: the ESP's removable path and NVRAM entry; grub-install only when the plan says
/// the geometry forces it.
fn boot_loader(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    identities::new_identities(cx, made)?;
    if cx.plan.boot.default_layout {
        regenerate::default_layout_boot(cx, made)?;
    }
    let b = &cx.plan.boot;
    if b.mbr_boot_code {
        cx.report
            .boot
            .push("MBR boot code written back verbatim".into());
    }
    if let Some((n, len)) = b.bios_boot {
        cx.report.boot.push(format!(
            "BIOS boot partition {n}: {} written back verbatim",
            size(len)
        ));
    }
    esp_boot(cx, made)?;
    grub_install(cx, made)?;
    regenerate::initramfs_drivers(cx, made)?;
    for line in &cx.report.boot {
        cx.log.say(&format!("  {line}"));
    }
    Ok(())
}

/// grub-install for BIOS, chrooted, onto each disk whose plan says it must run (the
/// geometry forces it, or a second disk's BIOS boot partition was not captured).
fn grub_install(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    let mut disks: Vec<(PathBuf, String)> = cx
        .plan
        .boot
        .grub_install
        .clone()
        .map(|why| (cx.target.device.clone(), why))
        .into_iter()
        .collect();
    disks.extend(cx.more_grub.iter().cloned());
    for (device, why) in disks {
        grub_install_onto(cx, made, &device, &why)?;
    }
    Ok(())
}

fn grub_install_onto(
    cx: &mut ApplyCtx,
    made: &[Made],
    device: &Path,
    why: &str,
) -> Result<(), RestoreError> {
    let root_dir = made
        .iter()
        .find(|m| m.plan.mount_point == "/")
        .map(|m| &m.dir);
    let no_installer = root_dir.is_some_and(|d| !grub::has_grub_install(d));
    if !cx.plan.renamed.is_empty() && no_installer {
        // --new-uuids on a tree that cannot reinstall GRUB: the files are right, the old core
        // image is not; said in the summary rather than failing a finished restore.
        cx.report
            .not_bootable(format!("{}: {why}", grub::not_bootable()));
    } else {
        cx.log.say(&format!(
            "  grub-install must run on {}: {why}",
            device.display()
        ));
        let c = cx.chroot(made)?;
        grub::install_bios(&c, device)?;
        cx.booted.bios_installed = true;
        cx.report.boot.push(format!(
            "grub-install --target=i386-pc {} ran chrooted ({why})",
            device.display()
        ));
    }
    Ok(())
}

/// The ESP's removable path (EFI/BOOT/BOOTX64.EFI) and, when asked for, its NVRAM entry. What
/// the ESP holds is said only after it is written and read back (`check_boot`).
fn esp_boot(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    let (target, opts) = (cx.target, cx.opts);
    let Some((n, _)) = &cx.plan.boot.esp else {
        return Ok(());
    };
    let Some(i) = made.iter().position(|m| m.plan.partition == Some(*n)) else {
        return Ok(());
    };
    let l = esp::ensure_removable(&made[i].dir)?;
    cx.booted.esp = Some((i, cx.report.boot.len(), l.copied.clone()));
    if opts.nvram
        && let Some(loader) = &l.loader
    {
        let label = opts
            .efi_label
            .clone()
            .or(l.vendor.clone())
            .unwrap_or_else(|| "Linux".into());
        if let Some(done) = esp::nvram_entry(&target.device, *n, loader, &label)? {
            cx.report.boot.push(done);
        }
    }
    Ok(())
}

/// After the ESP is written: its removable path read back (the report says only what was
/// found there), then whether the disk has a boot path at all (issue #24). A plan that writes
/// no boot loader (`--only`, an image that recorded none) is not judged.
fn check_boot(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    let mut uefi = false;
    if let Some((i, at, copied)) = cx.booted.esp.take() {
        let m = &made[i];
        let found = match &m.vfat {
            Some(w) => w.read_back_loader()?,
            None => esp::VfatWriter::Mounted(m.dir.clone()).read_back_loader()?,
        };
        let mp = &m.plan.mount_point;
        let added = if copied.is_empty() {
            String::new()
        } else {
            format!("; added {}", copied.join(", "))
        };
        let line = match found {
            esp::ReadBack::Loader { bytes } => {
                uefi = true;
                format!(
                    "ESP {mp}: files verbatim{added}; EFI/BOOT/BOOTX64.EFI read back from the \
                     written ESP ({bytes} bytes)"
                )
            }
            esp::ReadBack::Missing => format!(
                "ESP {mp}: files verbatim{added}; no EFI/BOOT/BOOTX64.EFI on the written ESP \
                 (the image's ESP holds no EFI loader to put there): UEFI firmware will not \
                 boot this disk"
            ),
            esp::ReadBack::NotPe { bytes } => format!(
                "ESP {mp}: files verbatim{added}; EFI/BOOT/BOOTX64.EFI on the written ESP is \
                 no EFI program ({bytes} bytes, no MZ header): UEFI firmware will not boot it"
            ),
        };
        cx.log.say(&format!("  {line}"));
        let at = at.min(cx.report.boot.len());
        cx.report.boot.insert(at, line);
    }
    let b = &cx.plan.boot;
    let expects_boot = b.esp.is_some()
        || b.mbr_boot_code
        || b.bios_boot.is_some()
        || b.grub_install.is_some()
        || b.default_layout;
    let bios = b.mbr_boot_code || b.bios_boot.is_some() || cx.booted.bios_installed;
    if expects_boot && !bios && !uefi && cx.report.unbootable.is_empty() {
        let line = grub::no_boot_path();
        cx.log.say(&format!("  {line}"));
        cx.report.not_bootable(line);
    }
    Ok(())
}

/// Generalize and overlay (docs/GENERALIZE.md), on the assembled tree, each change logged (the
/// log is copied into the restored system next).
fn per_machine(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    let (opts, log, target) = (cx.opts, cx.log, cx.target);
    if opts.generalize.is_empty() && opts.overlay.is_none() {
        return Ok(());
    }
    let c = cx.chroot(made)?;
    if !opts.generalize.is_empty() {
        log.say("  generalizing (docs/GENERALIZE.md):");
        let run_in_tree = |args: &[&std::ffi::OsStr]| c.run(args, &target.device);
        let done = generalize::generalize(
            &c.root,
            &opts.generalize,
            &run_in_tree,
            Path::new("/sys/class/net"),
        )?;
        for line in done {
            log.say(&format!("    {line}"));
        }
    }
    if let Some(dir) = &opts.overlay {
        let written = overlay::apply_overlay(dir, &c.root)?;
        log.say(&format!(
            "  overlay {}: {} paths written:",
            dir.display(),
            written.len()
        ));
        for p in written {
            log.say(&format!("    {p}"));
        }
    }
    Ok(())
}

/// The restored filesystems for a chroot. An mtools-filled ESP is its staging directory: what
/// grub-install writes there is copied onto the ESP afterwards.
fn chroot_parts(made: &[Made]) -> Vec<grub::Part<'_>> {
    made.iter()
        .map(|m| grub::Part {
            mount_point: &m.plan.mount_point,
            dir: &m.dir,
        })
        .collect()
}

/// Phase 8: the log into the filesystem that holds /var/log.
fn write_log(cx: &ApplyCtx, made: &[Made]) -> Result<Option<String>, RestoreError> {
    let Some(i) = cx.plan.fs_for(LOG_PATH) else {
        return Ok(None);
    };
    let m = &made[i];
    let mp = m.plan.mount_point.trim_end_matches('/');
    let rel = LOG_PATH
        .strip_prefix(mp)
        .unwrap_or(LOG_PATH)
        .trim_start_matches('/');
    let path = m.dir.join(rel);
    if let Some(parent) = path.parent()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|e| RestoreError::io("creating", parent, e))?;
    }
    let mut text = cx.log.text();
    text.push_str(&cx.report.summary());
    std::fs::write(&path, text).map_err(|e| RestoreError::io("writing", &path, e))?;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640));
    Ok(Some(LOG_PATH.to_string()))
}

/// Removes the (now unmounted, empty) staging directories; never recursively, so a mount
/// that failed to go away cannot lose the restored files.
fn remove_staging(staging: &Path) {
    if let Ok(rd) = std::fs::read_dir(staging) {
        for e in rd.flatten() {
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let _ = std::fs::remove_dir(staging);
}
