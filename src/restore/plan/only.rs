//! `--only MOUNTPOINT` (issue #11, docs/RESTORE.md "One filesystem"): one recorded filesystem
//! made again on a device the user names (a partition of an existing layout, a whole disk or
//! an image file) and filled with the files below its mount point. Nothing else is written:
//! no partition table, no boot loader. The filesystem keeps its recorded UUID and label, so
//! the fstab of the system it belongs to still finds it.

use super::{BootPlan, FsPlan, PlanError, RestorePlan, TablePlan, TargetGeometry, needed_bytes};
use crate::layout::DiskLayout;
use crate::restore::mkfs;

impl RestorePlan {
    /// The plan that makes the filesystem recorded at `mount_point` on `device`
    /// (`size_bytes`, `sector`) and restores its files.
    pub fn only(
        layout: &DiskLayout,
        mount_point: &str,
        device: &str,
        size_bytes: u64,
        sector: u32,
    ) -> Result<RestorePlan, PlanError> {
        let mp = if mount_point == "/" {
            "/"
        } else {
            mount_point.trim_end_matches('/')
        };
        let f = layout
            .filesystems
            .iter()
            .find(|f| f.mount_point == mp)
            .ok_or_else(|| {
                let mps: Vec<&str> = layout
                    .filesystems
                    .iter()
                    .map(|f| f.mount_point.as_str())
                    .collect();
                PlanError(format!(
                    "the image recorded no filesystem mounted at {mp} (it recorded: {})",
                    mps.join(", ")
                ))
            })?;
        if f.fstype == "btrfs"
            && layout
                .btrfs
                .iter()
                .any(|v| v.uuid == f.uuid && !v.subvolumes.is_empty())
        {
            return Err(PlanError(format!(
                "{mp} is a btrfs filesystem with subvolumes: --only restores a filesystem \
                 whole; restore the disk instead"
            )));
        }
        let used = f.used_bytes.unwrap_or(0);
        if size_bytes < needed_bytes(used) {
            return Err(PlanError(format!(
                "{device} is too small for {mp}: {} of data needs at least {}, the device holds {}",
                super::size(used),
                super::size(needed_bytes(used)),
                super::size(size_bytes)
            )));
        }
        let disk = layout
            .disks
            .get(f.device.disk as usize)
            .map(|d| d.name.clone())
            .unwrap_or_default();
        let nested: Vec<&str> = layout
            .filesystems
            .iter()
            .filter(|o| o.mount_point != mp && super::under(&o.mount_point, mp))
            .map(|o| o.mount_point.as_str())
            .collect();
        let mut notes = vec![format!(
            "only {mp}: {device} gets its filesystem (UUID and label as recorded, so the \
             system's fstab finds it); no partition table or boot loader is written"
        )];
        if !nested.is_empty() {
            notes.push(format!(
                "filesystems mounted below {mp} ({}) are not restored; their files go into {mp}",
                nested.join(", ")
            ));
        }
        Ok(RestorePlan {
            source_disk: disk,
            source_size_bytes: f.size_bytes,
            source_sector: sector,
            target: TargetGeometry {
                device: device.to_string(),
                size_bytes,
                sector,
            },
            table: TablePlan::None,
            partitions: Vec::new(),
            filesystems: vec![FsPlan {
                partition: None,
                volume: None,
                fstype: f.fstype.clone(),
                uuid: f.uuid.clone(),
                label: f.label.clone(),
                mount_point: mp.to_string(),
                subvol: None,
                subvolumes: Vec::new(),
                default_subvol: String::new(),
                mkfs: Some(mkfs::command(f, size_bytes != f.size_bytes).map_err(PlanError)?),
                size_bytes,
                used_bytes: used,
            }],
            swaps: Vec::new(),
            boot: BootPlan::default(),
            resized: None,
            shrunk: Vec::new(),
            notes,
            renamed: Vec::new(),
            stack: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::gpt_layout;
    use super::*;

    #[test]
    fn one_filesystem_is_planned_alone_with_its_identity() {
        let l = gpt_layout();
        let p = RestorePlan::only(&l, "/boot/efi/", "/dev/sdb1", 64 << 20, 512).unwrap();
        assert_eq!(p.filesystems.len(), 1);
        let f = &p.filesystems[0];
        assert_eq!(
            (f.mount_point.as_str(), f.uuid.as_str()),
            ("/boot/efi", "1234-ABCD")
        );
        assert_eq!(f.partition, None);
        assert_eq!(p.table, TablePlan::None);
        assert!(p.partitions.is_empty() && p.boot == BootPlan::default());
        assert_eq!(p.source_disk, "vda");
        let text = p.to_string();
        assert!(text.contains("only /boot/efi"), "{text}");
    }

    #[test]
    fn unknown_mount_points_and_small_devices_are_refused_with_names_and_numbers() {
        let l = gpt_layout();
        let e = RestorePlan::only(&l, "/srv", "/dev/sdb1", 1 << 30, 512).unwrap_err();
        assert!(e.0.contains("/srv") && e.0.contains("/, /boot/efi"), "{e}");
        let e = RestorePlan::only(&l, "/", "/dev/sdb1", 8 << 20, 512).unwrap_err();
        assert!(
            e.0.contains("too small") && e.0.contains("/dev/sdb1"),
            "{e}"
        );
    }

    #[test]
    fn nested_filesystems_are_named() {
        let l = gpt_layout();
        let p = RestorePlan::only(&l, "/", "/dev/sdb3", 1 << 30, 512).unwrap();
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("/boot/efi") && n.contains("not restored")),
            "{:?}",
            p.notes
        );
    }
}
