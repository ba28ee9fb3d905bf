//! What `apply` changes in the restored system rather than writing back (phase 7): the default
//! layout's etc/fstab and GRUB (docs/RESTORE.md "Default layout"), and the initramfs when it
//! lacks the target disk's drivers.

use std::path::Path;

use super::super::esp::VfatWriter;
use super::super::{RestoreError, blockdev, fstab, grub, initramfs};
use super::{ApplyCtx, Made};

/// The default layout's boot set-up: etc/fstab for the new UUIDs, then GRUB from the tree
/// (docs/RESTORE.md "Default layout").
pub(super) fn default_layout_boot(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    let target = cx.target;
    let Some(root) = made.iter().find(|m| m.plan.mount_point == "/") else {
        return Err(RestoreError::target(
            &target.given,
            "the default layout has no root filesystem".into(),
        ));
    };
    let entries: Vec<fstab::NewEntry> = cx
        .plan
        .filesystems
        .iter()
        .map(|f| fstab::NewEntry {
            uuid: &f.uuid,
            mount_point: &f.mount_point,
            fstype: &f.fstype,
            options: if f.fstype == "vfat" {
                "umask=0077"
            } else {
                "errors=remount-ro"
            },
            pass: if f.mount_point == "/" { 1 } else { 2 },
        })
        .collect();
    let etc = root.dir.join("etc");
    if !etc.exists() {
        std::fs::create_dir(&etc).map_err(|e| RestoreError::io("creating", &etc, e))?;
    }
    let path = etc.join("fstab");
    let old = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(RestoreError::io("reading", &path, e)),
    };
    // Written in place: the file keeps its owner, mode and xattrs.
    std::fs::write(&path, fstab::rewrite(&old, &entries))
        .map_err(|e| RestoreError::io("writing", &path, e))?;
    cx.report
        .boot
        .push("etc/fstab written for the default layout's UUIDs".into());
    let esp = made.iter().find(|m| m.plan.fstype == "vfat");
    let esp_mount = esp.map_or("/boot/efi", |m| m.plan.mount_point.as_str());
    let esp_mountable = esp.is_some_and(|m| matches!(m.vfat, Some(VfatWriter::Mounted(_))));
    // Without an installer, no chroot: nothing (not even /dev, /proc, /sys) is added.
    let done = if grub::has_grub_install(&root.dir) {
        let c = cx.chroot(made)?;
        grub::install_default(&c, &target.device, esp_mount, esp_mountable)?
    } else {
        grub::Installed {
            unbootable: Some(grub::not_bootable()),
            ..grub::Installed::default()
        }
    };
    for l in done.lines.iter().chain(&done.unbootable) {
        cx.log.say(&format!("  {l}"));
    }
    cx.report.boot.extend(done.lines);
    cx.booted.bios_installed |= done.bios;
    if let Some(why) = done.unbootable {
        cx.report.not_bootable(why);
    }
    Ok(())
}

/// Whose drivers the restored initramfs must hold: the target disk's (found in sysfs) and
/// those asked for (`RestoreOptions::initramfs_drivers`).
pub(super) struct Drivers<'a> {
    pub target: &'a Path,
    pub extra: &'a [String],
}

impl Drivers<'_> {
    /// The modules needed, the target's first (none for a loop device), and what they are
    /// for, for the messages.
    fn needed(&self) -> (Vec<String>, String) {
        let disk = blockdev::kernel_name(self.target).ok();
        let mut needed = disk
            .as_deref()
            .map(|d| initramfs::disk_modules(Path::new("/sys"), d))
            .unwrap_or_default();
        let own = needed.len();
        for m in self.extra {
            let m = m.replace('-', "_");
            if !needed.contains(&m) {
                needed.push(m);
            }
        }
        let disk = disk.unwrap_or_else(|| self.target.display().to_string());
        let whose = match (own, needed.len() > own) {
            (_, false) => format!("{disk}'s drivers"),
            (0, true) => "the drivers asked for".to_string(),
            (_, true) => format!("{disk}'s drivers and the ones asked for"),
        };
        (needed, whose)
    }
}

/// The restored initramfs must hold the target disk's drivers (the disk type may have
/// changed: captured on virtio, restored onto AHCI or NVMe) and any asked for; when it lacks
/// one, the restored system's own generator runs chrooted (`initramfs.rs`), and the new image
/// is checked again.
pub(super) fn initramfs_drivers(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    let (target, opts, log) = (cx.target, cx.opts, cx.log);
    let drivers = Drivers {
        target: &target.device,
        extra: &opts.initramfs_drivers,
    };
    let (needed, whose) = drivers.needed();
    let (Some(root), Some(b)) = (
        made.iter().find(|m| m.plan.mount_point == "/"),
        cx.plan.fs_for("/boot/x"),
    ) else {
        return Ok(());
    };
    if needed.is_empty() {
        log.say(&format!(
            "  initramfs: {} has no driver module (a loop device or built-in driver): nothing to check",
            drivers.target.display()
        ));
        return Ok(());
    }
    let bm = &made[b];
    let rel = "/boot"
        .strip_prefix(bm.plan.mount_point.trim_end_matches('/'))
        .unwrap_or("/boot")
        .trim_start_matches('/');
    let boot = bm.dir.join(rel);
    for c in initramfs::check(&boot, &root.dir, &needed) {
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                cx.report.boot.push(format!("initramfs not checked: {e}"));
                continue;
            }
        };
        let name = c
            .image
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        if c.missing.is_empty() {
            cx.report.boot.push(format!(
                "initramfs {name} holds {whose} ({})",
                needed.join(", ")
            ));
            continue;
        }
        log.say(&format!(
            "  initramfs {name} lacks {} ({whose}): regenerating it",
            c.missing.join(", ")
        ));
        let ch = cx.chroot(made)?;
        let line = match initramfs::regenerate(&ch, &c.image.version, drivers.target)? {
            Some(cmd) => match initramfs::recheck(&c.image, &root.dir, &needed) {
                Ok(still) if still.is_empty() => format!(
                    "initramfs {name} lacked {}: {cmd} ran chrooted; it now holds them",
                    c.missing.join(", ")
                ),
                Ok(still) => format!(
                    "initramfs {name} lacked {}: {cmd} ran chrooted, yet it still lacks {} \
                     (kernel {} has no such module?): the restored system may not find its disk",
                    c.missing.join(", "),
                    still.join(", "),
                    c.image.version
                ),
                Err(e) => format!(
                    "initramfs {name} lacked {}: {cmd} ran chrooted; the new image cannot be \
                     read: {e}",
                    c.missing.join(", ")
                ),
            },
            None => format!(
                "initramfs {name} lacks {} and the tree has neither update-initramfs nor \
                 dracut: the restored system may not find its disk",
                c.missing.join(", ")
            ),
        };
        cx.report.boot.push(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_asked_for_are_needed_with_kernel_names() {
        let extra = ["nvme".to_string(), "virtio-blk".into(), "nvme".into()];
        let d = Drivers {
            target: Path::new("/nonexistent/osimage-test-disk.img"),
            extra: &extra,
        };
        let (needed, whose) = d.needed();
        assert_eq!(needed, ["nvme", "virtio_blk"]);
        assert_eq!(whose, "the drivers asked for");
        let none = Drivers {
            target: Path::new("/nonexistent/osimage-test-disk.img"),
            extra: &[],
        };
        assert!(none.needed().0.is_empty());
    }
}
