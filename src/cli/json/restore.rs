//! `restore --json`: one document holding the plan and, after a real restore, its report
//! (issue #24: a real restore printed two documents). docs/JSON.md "restore".

use serde::Serialize;

use osimage::{PartKind, PlanDev, Prepared, RestorePlan, StackStep, TablePlan};

use super::layout::PartEntry;
use super::seconds;

/// The `restore` document: `plan` always, `report` null on a dry run.
#[derive(Serialize)]
pub struct Restore<P: Serialize, R: Serialize> {
    pub image: String,
    /// `disk` (--target/--map/--only) or `directory` (--to).
    pub mode: &'static str,
    pub dry_run: bool,
    pub plan: P,
    pub report: Option<R>,
}

/// The plan of a restore onto disks.
#[derive(Serialize)]
pub struct DiskPlans {
    /// One per target disk, the system disk's first.
    pub disks: Vec<DiskPlan>,
    /// The hostname the restored system gets (null: the recorded one).
    pub hostname: Option<String>,
    /// What generalizing will change, one line each.
    pub generalize: Vec<String>,
    pub overlay: Option<String>,
}

#[derive(Serialize)]
pub struct DiskPlan {
    pub source_disk: String,
    pub source_size_bytes: u64,
    pub source_sector: u32,
    pub target: Target,
    pub table: Table,
    pub partitions: Vec<Partition>,
    pub filesystems: Vec<Filesystem>,
    pub swaps: Vec<Swap>,
    pub stack: Vec<StackLayer>,
    pub boot: Boot,
    pub resized: Option<Resize>,
    pub shrunk: Vec<Resize>,
    pub renamed: Vec<Renamed>,
    pub notes: Vec<String>,
}

#[derive(Serialize)]
pub struct Target {
    pub device: String,
    pub size_bytes: u64,
    pub sector: u32,
}

#[derive(Serialize)]
pub struct Table {
    /// `gpt`, `mbr` or `none` (a filesystem on the whole disk).
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_guid: Option<String>,
    /// MBR: the disk signature, 8 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Serialize)]
pub struct Partition {
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    /// What goes in it, for people (`ext4 /`, `BIOS boot (raw bytes)`).
    pub content: String,
    #[serde(flatten)]
    pub entry: PartEntry,
}

#[derive(Serialize)]
pub struct Filesystem {
    /// Null: the whole disk, or the stack volume `volume`.
    pub partition: Option<u32>,
    pub volume: Option<String>,
    pub fstype: String,
    pub uuid: String,
    pub label: String,
    pub mount_point: String,
    pub subvolume: Option<String>,
    /// The mkfs command without the device (null: another entry makes this filesystem).
    pub mkfs: Option<Vec<String>>,
    pub size_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Serialize)]
pub struct Swap {
    pub partition: Option<u32>,
    pub volume: Option<String>,
    pub uuid: String,
    pub label: String,
}

/// A block device a stack layer is made on.
#[derive(Serialize)]
pub struct Device {
    /// `partition`, `disk` or `volume`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The recorded disk's name (partition, disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// A volume's path (`/dev/md0`, `/dev/mapper/vg-root`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn device(d: &PlanDev) -> Device {
    let (kind, disk, partition, path) = match d {
        PlanDev::Part { disk, partition } => {
            ("partition", Some(disk.clone()), Some(*partition), None)
        }
        PlanDev::Disk { disk } => ("disk", Some(disk.clone()), None, None),
        PlanDev::Volume(v) => ("volume", None, None, Some(v.clone())),
    };
    Device {
        kind,
        disk,
        partition,
        path,
    }
}

/// One layer of the block stack, in the order it is made: `{"type": "md" | "luks" | "vg"}`.
#[derive(Serialize)]
pub struct StackLayer {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// md: the array's path; luks: `/dev/mapper/MAPPING`; vg: the group's name.
    pub name: String,
    pub uuid: String,
    /// What it is made on (md: members in role order; luks: one; vg: the PVs).
    pub on: Vec<Device>,
    /// md: the RAID level; luks, vg: empty.
    pub level: String,
    /// luks, md: the planned size; vg: the sum of its LVs' planned sizes.
    pub size_bytes: u64,
    /// vg: its logical volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lvs: Vec<Lv>,
}

#[derive(Serialize)]
pub struct Lv {
    pub name: String,
    pub recorded_bytes: u64,
    pub planned_bytes: u64,
}

fn layer(s: &StackStep) -> StackLayer {
    match s {
        StackStep::Md(m) => StackLayer {
            kind: "md",
            name: m.path.clone(),
            uuid: m.uuid.clone(),
            on: m.members.iter().map(device).collect(),
            level: m.level.clone(),
            size_bytes: m.size_bytes,
            lvs: Vec::new(),
        },
        StackStep::Luks(l) => StackLayer {
            kind: "luks",
            name: format!("/dev/mapper/{}", l.mapping),
            uuid: l.uuid.clone(),
            on: vec![device(&l.on)],
            level: String::new(),
            size_bytes: l.size_bytes,
            lvs: Vec::new(),
        },
        StackStep::Vg(v) => StackLayer {
            kind: "vg",
            name: v.name.clone(),
            uuid: v.uuid.clone(),
            on: v.pvs.iter().map(|(_, d)| device(d)).collect(),
            level: String::new(),
            size_bytes: v.lvs.iter().map(|(_, _, p)| *p).sum(),
            lvs: v
                .lvs
                .iter()
                .map(|(name, recorded, planned)| Lv {
                    name: name.clone(),
                    recorded_bytes: *recorded,
                    planned_bytes: *planned,
                })
                .collect(),
        },
    }
}

#[derive(Serialize)]
pub struct Boot {
    /// MBR bytes 0–439 are written back (they were not all zero).
    pub mbr_boot_code: bool,
    /// Bytes of the MBR post-gap written back.
    pub mbr_gap_bytes: u64,
    pub bios_boot: Option<BiosBoot>,
    pub esp: Option<Esp>,
    /// Why the restored system's grub-install runs (chrooted), null when it does not.
    pub grub_install: Option<String>,
    pub default_layout: bool,
}

#[derive(Serialize)]
pub struct BiosBoot {
    pub partition: u32,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct Esp {
    pub partition: u32,
    pub mount_point: String,
}

#[derive(Serialize)]
pub struct Resize {
    pub partition: u32,
    pub old_bytes: u64,
    pub new_bytes: u64,
}

#[derive(Serialize)]
pub struct Renamed {
    /// What carries it (`ext4 / UUID`, `partition 3 GUID`, `disk GUID`).
    pub what: String,
    pub old: String,
    pub new: String,
    pub referenced: bool,
}

fn disk_plan(p: &RestorePlan) -> DiskPlan {
    let resize = |r: &osimage::Resize| Resize {
        partition: r.number,
        old_bytes: r.old_bytes,
        new_bytes: r.new_bytes,
    };
    DiskPlan {
        source_disk: p.source_disk.clone(),
        source_size_bytes: p.source_size_bytes,
        source_sector: p.source_sector,
        target: Target {
            device: p.target.device.clone(),
            size_bytes: p.target.size_bytes,
            sector: p.target.sector,
        },
        table: match &p.table {
            TablePlan::None => Table {
                kind: "none",
                disk_guid: None,
                signature: None,
            },
            TablePlan::Gpt { disk_guid } => Table {
                kind: "gpt",
                disk_guid: Some(disk_guid.clone()),
                signature: None,
            },
            TablePlan::Mbr { signature } => Table {
                kind: "mbr",
                disk_guid: None,
                signature: Some(format!("{signature:08x}")),
            },
        },
        partitions: p.partitions.iter().map(partition).collect(),
        filesystems: p
            .filesystems
            .iter()
            .map(|f| Filesystem {
                partition: f.partition,
                volume: f.volume.clone(),
                fstype: f.fstype.clone(),
                uuid: f.uuid.clone(),
                label: f.label.clone(),
                mount_point: f.mount_point.clone(),
                subvolume: f.subvol.clone(),
                mkfs: f.mkfs.clone(),
                size_bytes: f.size_bytes,
                used_bytes: f.used_bytes,
            })
            .collect(),
        swaps: p
            .swaps
            .iter()
            .map(|s| Swap {
                partition: s.partition,
                volume: s.volume.clone(),
                uuid: s.uuid.clone(),
                label: s.label.clone(),
            })
            .collect(),
        stack: p.stack.iter().map(layer).collect(),
        boot: Boot {
            mbr_boot_code: p.boot.mbr_boot_code,
            mbr_gap_bytes: p.boot.mbr_gap_bytes,
            bios_boot: p
                .boot
                .bios_boot
                .map(|(partition, bytes)| BiosBoot { partition, bytes }),
            esp: p.boot.esp.as_ref().map(|(partition, mp)| Esp {
                partition: *partition,
                mount_point: mp.clone(),
            }),
            grub_install: p.boot.grub_install.clone(),
            default_layout: p.boot.default_layout,
        },
        resized: p.resized.as_ref().map(resize),
        shrunk: p.shrunk.iter().map(resize).collect(),
        renamed: p
            .renamed
            .iter()
            .map(|r| Renamed {
                what: r.what.clone(),
                old: r.old.clone(),
                new: r.new.clone(),
                referenced: r.referenced,
            })
            .collect(),
        notes: p.notes.clone(),
    }
}

fn partition(p: &osimage::PartPlan) -> Partition {
    let entry = match &p.kind {
        PartKind::Gpt {
            type_guid,
            part_guid,
            name,
            attributes,
        } => PartEntry::gpt(type_guid, part_guid, name, *attributes),
        PartKind::Mbr {
            type_byte,
            bootable,
            extended,
            logical,
        } => PartEntry::mbr(*type_byte, *bootable, *extended, *logical),
    };
    Partition {
        number: p.number,
        first_lba: p.first_lba,
        last_lba: p.last_lba,
        content: p.content.clone(),
        entry,
    }
}

/// The plan of `prepared` (a restore onto disks).
pub fn disk_plans(prepared: &Prepared) -> DiskPlans {
    DiskPlans {
        disks: prepared.plans.iter().map(disk_plan).collect(),
        hostname: prepared.hostname.clone(),
        generalize: prepared.options.generalize.plan_lines(),
        overlay: prepared
            .options
            .overlay
            .as_ref()
            .map(|p| p.display().to_string()),
    }
}

/// What a restore onto disks did.
#[derive(Serialize)]
pub struct DiskReport {
    pub target: String,
    pub seconds: f64,
    pub filesystems: Vec<FsReport>,
    /// Boot loader steps taken, one line each.
    pub boot: Vec<String>,
    /// The restored disk boots (`unbootable` is empty).
    pub bootable: bool,
    /// Why it will not boot, one reason each.
    pub unbootable: Vec<String>,
    /// Warnings while writing files (owners, xattrs a filesystem refused).
    pub warnings: u64,
    /// Where the restore log was written in the restored system.
    pub log: Option<String>,
}

#[derive(Serialize)]
pub struct FsReport {
    pub mount_point: String,
    pub fstype: String,
    pub device: String,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
}

pub fn disk_report(r: &osimage::RestoreReport) -> DiskReport {
    DiskReport {
        target: r.target.clone(),
        seconds: seconds(r.millis),
        filesystems: r
            .filesystems
            .iter()
            .map(|f| FsReport {
                mount_point: f.mount_point.clone(),
                fstype: f.fstype.clone(),
                device: f.device.clone(),
                entries: f.entries,
                files: f.files,
                bytes: f.bytes,
                seconds: seconds(f.millis),
            })
            .collect(),
        boot: r.boot.clone(),
        bootable: r.unbootable.is_empty(),
        unbootable: r.unbootable.clone(),
        warnings: r.warnings,
        log: r.log.clone(),
    }
}

/// The plan of `restore --to DIR`.
#[derive(Serialize)]
pub struct DirPlan {
    pub dir: String,
    /// Entries the image holds (all are restored).
    pub entries: usize,
    pub hostname: Option<String>,
    pub generalize: Vec<String>,
    pub overlay: Option<String>,
}

/// What `restore --to DIR` did.
#[derive(Serialize)]
pub struct DirReport {
    pub dir: String,
    pub entries: u64,
    pub files: u64,
    pub bytes_written: u64,
    pub warnings: u64,
    pub hostname: Option<String>,
    /// What generalizing, the hostname and the overlay changed, one line each.
    pub changes: Vec<String>,
}

pub fn dir_report(r: &osimage::DirReport) -> DirReport {
    DirReport {
        dir: r.dir.display().to_string(),
        entries: r.entries,
        files: r.files,
        bytes_written: r.bytes_written,
        warnings: r.warnings,
        hostname: r.hostname.clone(),
        changes: r.changes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/JSON.md "restore": `content` after `last_lba`, before the table's own fields.
    #[test]
    fn a_planned_partition_puts_content_before_the_table_fields() {
        let p = Partition {
            number: 2,
            first_lba: 4096,
            last_lba: 8191,
            content: "ext4 /".into(),
            entry: PartEntry::mbr(0x83, false, false, false),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"number":2,"first_lba":4096,"last_lba":8191,"content":"ext4 /","type_byte":131,"bootable":false,"extended":false,"logical":false}"#
        );
    }
}
