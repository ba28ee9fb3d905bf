//! The restore plan (STYLE.md rule 2): what a restore will write on one target disk, computed
//! from the image's layout record and the target's size and sector size alone, printable and
//! serializable, before anything is touched.
//!
//! docs/DESIGN.md "Boot loader on restore": every partition keeps its number, type, GUIDs and
//! start; only one partition changes size (the root's when it is the last on the disk, else the
//! last one), so GRUB's core image (which names its partition by number) and the MBR boot code
//! stay valid and are written back verbatim.
//!
//! Here: the plan's types and its entry points. `RestorePlan::for_disk` runs the planner
//! (`plan/build.rs`) over one recorded disk in phases: the partition table in target sectors
//! (`table.rs`), the one partition that changes size (`resize.rs`, earlier ones shrinking in
//! `shrink.rs`), the filesystems and swaps (`contents.rs`), the boot areas (`boot.rs`).
//! `show.rs` prints the plan; `only.rs` (`--only`), `several.rs` (several disks) and
//! `renew.rs` (`--new-uuids`) plan the variants.

use serde::{Deserialize, Serialize};

use crate::layout::{BtrfsSubvolume, DiskLayout, FsRecord};
use build::Builder;
pub use draw::{Draws, IdSource};
pub use renew::{Fresh, Renamed, kernel_random};
pub use stack::{LuksPlan, MdPlan, PlanDev, StackStep};

/// Headroom a shrunk filesystem needs beyond its used bytes: a tenth, at least 16 MiB
/// (metadata, journal, and room to boot and log).
pub fn needed_bytes(used: u64) -> u64 {
    // Saturating: `used` comes from the image's layout record.
    used.saturating_add((used / 10).max(16 << 20))
}

/// Everything a restore will do to one disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The recorded disk being recreated (its kernel name on the source, e.g. `vda`).
    pub source_disk: String,
    pub source_size_bytes: u64,
    pub source_sector: u32,
    pub target: TargetGeometry,
    pub table: TablePlan,
    /// Partitions in table order (number order).
    pub partitions: Vec<PartPlan>,
    /// Filesystems to make and fill, root first, then by mount-point depth.
    pub filesystems: Vec<FsPlan>,
    pub swaps: Vec<SwapPlan>,
    pub boot: BootPlan,
    /// The last partition's change in size, if any.
    pub resized: Option<Resize>,
    /// Earlier partitions shrunk to make room on a smaller disk (`plan/shrink.rs`); the
    /// partitions after them move down (the notes say where).
    pub shrunk: Vec<Resize>,
    /// Things the user should know (filesystems on other disks left out...).
    pub notes: Vec<String>,
    /// Identities replaced by fresh ones (`--new-uuids`, `plan/renew.rs`); empty: every
    /// UUID, GUID and label is the recorded one.
    #[serde(default)]
    pub renamed: Vec<Renamed>,
    /// The block stack (MD arrays, LUKS containers, LVM volume groups) made on the planned
    /// partitions before any filesystem, in order (`plan/stack/`); on the system disk's plan.
    #[serde(default)]
    pub stack: Vec<StackStep>,
}

/// A volume group to recreate with `pvcreate --restorefile` and `vgcfgrestore` from its
/// recorded metadata, resized to the planned partitions: same names, UUIDs (new ones with
/// `--new-uuids`), tags, segments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgPlan {
    pub name: String,
    pub uuid: String,
    /// Each PV: its UUID and the device that holds it.
    pub pvs: Vec<(String, PlanDev)>,
    /// The metadata `vgcfgrestore` is given.
    pub metadata: String,
    /// Each LV: name, recorded size and planned size, in bytes.
    pub lvs: Vec<(String, u64, u64)>,
}

/// The disk the plan was computed for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGeometry {
    /// What the user named (`/dev/sdb`, `disk.img`).
    pub device: String,
    pub size_bytes: u64,
    /// Logical sector size.
    pub sector: u32,
}

/// The partition table to write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TablePlan {
    /// A filesystem on the whole disk.
    None,
    Gpt {
        disk_guid: String,
    },
    Mbr {
        signature: u32,
    },
}

/// One partition, in target sectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartPlan {
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    pub kind: PartKind,
    /// What goes in it, for display (`ext4 /`, `BIOS boot (raw bytes)`, `swap`).
    pub content: String,
}

/// Table-specific fields, copied from the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartKind {
    Gpt {
        type_guid: String,
        part_guid: String,
        name: String,
        attributes: u64,
    },
    Mbr {
        type_byte: u8,
        bootable: bool,
        extended: bool,
        logical: bool,
    },
}

/// A filesystem to make (with its original UUID, label and features) and fill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsPlan {
    /// `None`: the whole disk, or the stack volume `volume`.
    pub partition: Option<u32>,
    /// The stack volume it is made on (`/dev/mapper/vg-root`), made by an earlier phase.
    #[serde(default)]
    pub volume: Option<String>,
    pub fstype: String,
    pub uuid: String,
    pub label: String,
    /// Absolute mount point in the restored system (`/`, `/boot/efi`).
    pub mount_point: String,
    /// btrfs `subvol=` this mount uses, created after mkfs.
    pub subvol: Option<String>,
    /// btrfs: every recorded subvolume, created after mkfs (only on the entry that makes the
    /// filesystem), parents first.
    pub subvolumes: Vec<BtrfsSubvolume>,
    /// btrfs: the default subvolume's path (empty: the top level).
    pub default_subvol: String,
    /// The mkfs command without the device (`None`: another entry of the plan already makes
    /// this filesystem, e.g. a second btrfs subvolume).
    pub mkfs: Option<Vec<String>>,
    /// Size of the space it gets, bytes.
    pub size_bytes: u64,
    /// Bytes in use on the source.
    pub used_bytes: u64,
}

/// A swap area to make with its original UUID and label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapPlan {
    pub partition: Option<u32>,
    /// The stack volume it is made on (`/dev/mapper/vg-swap`).
    #[serde(default)]
    pub volume: Option<String>,
    pub uuid: String,
    pub label: String,
    pub mkswap: Vec<String>,
}

/// Boot areas written back verbatim, and what must be regenerated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPlan {
    /// MBR bytes 0–439 are written back (they were not all zero).
    pub mbr_boot_code: bool,
    /// Bytes of the MBR post-gap (LBA 1 up to the first partition) written back.
    pub mbr_gap_bytes: u64,
    /// The BIOS boot partition's number and the bytes written into it.
    pub bios_boot: Option<(u32, u64)>,
    /// The ESP's partition number and mount point.
    pub esp: Option<(u32, String)>,
    /// Why the captured system's `grub-install` must run (chrooted), when it must.
    pub grub_install: Option<String>,
    /// The image recorded no layout and osimage's default one is used (`default_layout`):
    /// etc/fstab is written for the fresh UUIDs, and GRUB installed (BIOS and UEFI) by the
    /// tree's own `grub-install`, chrooted, where the tree has one.
    pub default_layout: bool,
}

/// The partition that grows or shrinks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    pub number: u32,
    pub old_bytes: u64,
    pub new_bytes: u64,
}

/// Why no plan fits (the message carries the numbers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

fn err<T>(msg: String) -> Result<T, PlanError> {
    Err(PlanError(msg))
}

pub use crate::units::human_bytes as size;

/// Refuses a layout that records no disks or that cannot be recreated.
fn restorable(layout: &DiskLayout) -> Result<(), PlanError> {
    if let Some(why) = &layout.none {
        return err(format!(
            "this image has no disk layout ({why}); restore it onto osimage's default \
             layout with --default-layout (osimage.default-layout=1), or its files with \
             --to DIR"
        ));
    }
    if !layout.unsupported.is_empty() {
        return err(format!(
            "this image's layout cannot be recreated: {}",
            layout.unsupported.join("; ")
        ));
    }
    Ok(())
}

/// The recorded disk that holds `/` (or the first with a filesystem).
pub fn system_disk(l: &DiskLayout) -> Result<u32, PlanError> {
    let root = l.filesystems.iter().find(|f| f.mount_point == "/");
    match root.or(l.filesystems.first()) {
        Some(f) if (f.device.disk as usize) < l.disks.len() => Ok(f.device.disk),
        _ => err("the image's layout names no disk holding /".into()),
    }
}

impl RestorePlan {
    /// The plan for restoring `layout` onto a disk of `size_bytes` with `sector`-byte logical
    /// sectors, named `device` (for display).
    pub fn new(
        layout: &DiskLayout,
        device: &str,
        size_bytes: u64,
        sector: u32,
    ) -> Result<RestorePlan, PlanError> {
        restorable(layout)?;
        let idx = system_disk(layout)?;
        let mut plans = [Self::for_disk(
            layout,
            idx,
            &[idx],
            device,
            size_bytes,
            sector,
        )?];
        stack::complete(layout, &mut plans)?;
        let [plan] = plans;
        Ok(plan)
    }

    /// The plan for recorded disk `idx` of `layout` (several disks: `plan/several.rs`).
    /// `restored`: every recorded disk this restore recreates; filesystems on a recorded disk
    /// that is not among them are noted as left out.
    pub fn for_disk(
        layout: &DiskLayout,
        idx: u32,
        restored: &[u32],
        device: &str,
        size_bytes: u64,
        sector: u32,
    ) -> Result<RestorePlan, PlanError> {
        restorable(layout)?;
        if !(512..=65536).contains(&sector) || !sector.is_power_of_two() {
            return err(format!("{device}: unusable sector size {sector}"));
        }
        let target = TargetGeometry {
            device: device.to_string(),
            size_bytes,
            sector,
        };
        Builder::new(layout, idx, restored, target)?.build()
    }

    /// The filesystem mounted at the longest mount point that is a prefix of `path`
    /// (absolute, `/var/log`).
    pub fn fs_for(&self, path: &str) -> Option<usize> {
        self.filesystems
            .iter()
            .enumerate()
            .filter(|(_, f)| under(path, &f.mount_point))
            .max_by_key(|(_, f)| f.mount_point.len())
            .map(|(i, _)| i)
    }
}

/// `path` is `mp` or below it (both absolute).
pub fn under(path: &str, mp: &str) -> bool {
    let mp = mp.trim_end_matches('/');
    mp.is_empty()
        || path == mp
        || (path.starts_with(mp) && path.as_bytes().get(mp.len()) == Some(&b'/'))
}

fn is_extended(p: &PartPlan) -> bool {
    matches!(p.kind, PartKind::Mbr { extended: true, .. })
}

fn used_of(f: &FsRecord) -> u64 {
    f.used_bytes.unwrap_or(f.size_bytes)
}

pub(crate) fn depth(mp: &str) -> usize {
    mp.split('/').filter(|c| !c.is_empty()).count()
}

fn size_text(n: u64) -> String {
    format!("{} ({n} bytes)", size(n))
}

mod boot;
mod build;
mod contents;
mod draw;
mod only;
mod renew;
mod resize;
pub mod several;
mod show;
mod shrink;
pub mod stack;
mod table;
#[cfg(test)]
pub(crate) mod tests;
