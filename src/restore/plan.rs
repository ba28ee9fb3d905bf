//! The restore plan (STYLE.md rule 2): what a restore will write on one target disk, computed
//! from the image's layout record and the target's size and sector size alone, printable and
//! serializable, before anything is touched.
//!
//! docs/DESIGN.md "Boot loader on restore": every partition keeps its number, type, GUIDs and
//! start; only one partition changes size (the root's when it is the last on the disk, else the
//! last one), so GRUB's core image (which names its partition by number) and the MBR boot code
//! stay valid and are written back verbatim.

use serde::{Deserialize, Serialize};

use super::mkfs;
use crate::layout::{BtrfsSubvolume, Disk, DiskLayout, FsRecord, PartitionTable};
pub use renew::{Renamed, kernel_random};

/// Headroom a shrunk filesystem needs beyond its used bytes: a tenth, at least 16 MiB
/// (metadata, journal, and room to boot and log).
pub fn needed_bytes(used: u64) -> u64 {
    // Saturating: `used` comes from the image's layout record.
    used.saturating_add((used / 10).max(16 << 20))
}

/// The recorded partitions make sense as a disk: each ends after it starts, and none overlaps
/// another (an MBR extended partition holds its logical ones and is left out). The layout
/// record is image data; the plan's arithmetic relies on this.
fn check_geometry(parts: &[PartPlan]) -> Result<(), PlanError> {
    let bad = |msg: String| {
        Err(PlanError(format!(
            "the layout record is inconsistent: {msg}"
        )))
    };
    let mut spans: Vec<&PartPlan> = Vec::new();
    for p in parts {
        if p.last_lba < p.first_lba {
            return bad(format!(
                "partition {} ends (sector {}) before it starts (sector {})",
                p.number, p.last_lba, p.first_lba
            ));
        }
        if !matches!(p.kind, PartKind::Mbr { extended: true, .. }) {
            spans.push(p);
        }
    }
    spans.sort_by_key(|p| p.first_lba);
    for w in spans.windows(2) {
        if w[1].first_lba <= w[0].last_lba {
            return bad(format!(
                "partitions {} and {} overlap",
                w[0].number, w[1].number
            ));
        }
    }
    Ok(())
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
    /// `None`: the whole disk.
    pub partition: Option<u32>,
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

/// Sectors GPT keeps at the end of a disk: the backup entry array (128 × 128 bytes) and header.
fn gpt_tail(sector: u64) -> u64 {
    (128 * 128u64).div_ceil(sector) + 1
}

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
        Self::for_disk(layout, idx, &[idx], device, size_bytes, sector)
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
        let disk = layout
            .disks
            .get(idx as usize)
            .ok_or_else(|| PlanError(format!("the layout has no disk {idx}")))?;
        let mut b = Builder {
            layout,
            disk,
            idx,
            restored: restored.to_vec(),
            ss: u64::from(disk.logical_sector.max(512)),
            ts: u64::from(sector),
            plan: RestorePlan {
                source_disk: disk.name.clone(),
                source_size_bytes: disk.size_bytes,
                source_sector: disk.logical_sector,
                target: TargetGeometry {
                    device: device.to_string(),
                    size_bytes,
                    sector,
                },
                table: TablePlan::None,
                partitions: Vec::new(),
                filesystems: Vec::new(),
                swaps: Vec::new(),
                boot: BootPlan::default(),
                resized: None,
                shrunk: Vec::new(),
                notes: Vec::new(),
                renamed: Vec::new(),
            },
        };
        b.partitions()?;
        b.contents()?;
        b.boot();
        Ok(b.plan)
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

struct Builder<'a> {
    layout: &'a DiskLayout,
    disk: &'a Disk,
    idx: u32,
    /// The recorded disks this restore recreates (this one among them).
    restored: Vec<u32>,
    /// Source and target sector sizes.
    ss: u64,
    ts: u64,
    plan: RestorePlan,
}

impl Builder<'_> {
    /// Source LBA → target LBA (same byte offset).
    fn lba(&self, lba: u64) -> Result<u64, PlanError> {
        let bytes = lba.checked_mul(self.ss).ok_or_else(|| {
            PlanError(format!("a partition starts at an impossible sector {lba}"))
        })?;
        if !bytes.is_multiple_of(self.ts) {
            return err(format!(
                "partition boundary at byte {bytes} is not a multiple of the target's \
                 {}-byte sectors",
                self.ts
            ));
        }
        Ok(bytes / self.ts)
    }

    /// Source last LBA → target last LBA: the same end, rounded down to a whole target sector.
    fn end(&self, last: u64) -> Result<u64, PlanError> {
        let bytes = last
            .checked_add(1)
            .and_then(|n| n.checked_mul(self.ss))
            .ok_or_else(|| PlanError(format!("a partition ends at an impossible sector {last}")))?;
        (bytes / self.ts)
            .checked_sub(1)
            .ok_or_else(|| PlanError("a partition ends before the first target sector".into()))
    }

    fn target_sectors(&self) -> u64 {
        self.plan.target.size_bytes / self.ts
    }

    /// Last LBA a partition may use on the target.
    fn last_usable(&self) -> u64 {
        let n = self.target_sectors();
        match self.plan.table {
            TablePlan::Gpt { .. } => n.saturating_sub(gpt_tail(self.ts) + 1),
            _ => n.min(1 << 32).saturating_sub(1),
        }
    }

    fn partitions(&mut self) -> Result<(), PlanError> {
        let Some(table) = &self.disk.table else {
            return self.whole_disk();
        };
        let mut parts = Vec::new();
        match table {
            PartitionTable::Gpt(t) => {
                self.plan.table = TablePlan::Gpt {
                    disk_guid: t.disk_guid.clone(),
                };
                for p in &t.partitions {
                    parts.push(PartPlan {
                        number: p.number,
                        first_lba: self.lba(p.first_lba)?,
                        last_lba: self.end(p.last_lba)?,
                        kind: PartKind::Gpt {
                            type_guid: p.type_guid.clone(),
                            part_guid: p.part_guid.clone(),
                            name: p.name.clone(),
                            attributes: p.attributes,
                        },
                        content: String::new(),
                    });
                }
            }
            PartitionTable::Mbr(t) => {
                self.plan.table = TablePlan::Mbr {
                    signature: t.signature,
                };
                for p in &t.partitions {
                    let first = u64::from(p.start_lba);
                    parts.push(PartPlan {
                        number: p.number,
                        first_lba: self.lba(first)?,
                        last_lba: self.end(
                            (first + u64::from(p.sectors))
                                .checked_sub(1)
                                .ok_or_else(|| {
                                    PlanError(format!("partition {} has no sectors", p.number))
                                })?,
                        )?,
                        kind: PartKind::Mbr {
                            type_byte: p.type_byte,
                            bootable: p.bootable,
                            extended: p.extended,
                            logical: p.logical,
                        },
                        content: String::new(),
                    });
                }
            }
        }
        parts.sort_by_key(|p| p.number);
        check_geometry(&parts)?;
        self.plan.partitions = parts;
        self.resize()
    }

    /// A filesystem on the whole disk: it takes the whole target.
    fn whole_disk(&mut self) -> Result<(), PlanError> {
        let f = self.fs_on(None).next();
        let used = f.map(used_of).unwrap_or(0);
        let size = self.plan.target.size_bytes;
        if size < needed_bytes(used) {
            return err(format!(
                "{}: {} is too small: the whole-disk filesystem holds {} of data and needs \
                 at least {}",
                self.plan.target.device,
                size_text(size),
                size_text(used),
                size_text(needed_bytes(used))
            ));
        }
        if size != self.disk.size_bytes {
            self.plan.resized = Some(Resize {
                number: 0,
                old_bytes: self.disk.size_bytes,
                new_bytes: size,
            });
        }
        Ok(())
    }

    /// Filesystems recorded on the system disk at partition `n`.
    fn fs_on(&self, n: Option<u32>) -> impl Iterator<Item = &FsRecord> + '_ {
        self.layout
            .filesystems
            .iter()
            .filter(move |f| f.device.disk == self.idx && f.device.partition == n)
    }

    /// Grows or shrinks the root partition when it is the last one, else the last one; every
    /// other partition must fit unchanged.
    fn resize(&mut self) -> Result<(), PlanError> {
        let last_usable = self.last_usable();
        let dev = self.plan.target.device.clone();
        let root_part = self
            .layout
            .filesystems
            .iter()
            .find(|f| f.mount_point == "/" && f.device.disk == self.idx)
            .and_then(|f| f.device.partition);
        // The partition that ends last (an extended one stands for its logical partitions).
        let Some(last) = self
            .plan
            .partitions
            .iter()
            .filter(|p| !is_extended(p))
            .max_by_key(|p| p.last_lba)
            .map(|p| p.number)
        else {
            return Ok(());
        };
        // The issue says "the root (or the last) partition": only the last one can change size
        // without moving another's start, so the root grows when it is last.
        let grow = last;
        self.make_room(grow, last_usable)?;
        for p in &self.plan.partitions {
            if p.number != grow && !is_extended(p) && p.last_lba > last_usable {
                return err(format!(
                    "{dev} is too small: partition {} ends at byte {} but the disk holds {} \
                     ({} usable); only partition {grow} can shrink",
                    p.number,
                    (p.last_lba + 1) * self.ts,
                    size_text(self.plan.target.size_bytes),
                    size_text((last_usable + 1) * self.ts)
                ));
            }
        }
        let p = self
            .plan
            .partitions
            .iter()
            .find(|p| p.number == grow)
            .cloned()
            .ok_or_else(|| PlanError("no partition to resize".into()))?;
        let old_last = p.last_lba;
        if old_last == last_usable {
            return Ok(());
        }
        if p.first_lba >= last_usable {
            return err(format!(
                "{dev} is too small: partition {grow} starts at byte {} but the disk holds \
                 only {}",
                p.first_lba * self.ts,
                size_text(self.plan.target.size_bytes)
            ));
        }
        let old_bytes = (old_last + 1 - p.first_lba) * self.ts;
        let new_bytes = (last_usable + 1 - p.first_lba) * self.ts;
        if new_bytes < old_bytes {
            let used: u64 = self.fs_on(Some(grow)).map(used_of).max().unwrap_or(0);
            let has_fs = self.fs_on(Some(grow)).next().is_some();
            let swap = self
                .layout
                .swaps
                .iter()
                .any(|s| s.device.disk == self.idx && s.device.partition == Some(grow));
            let need = if has_fs {
                needed_bytes(used)
            } else if swap {
                1 << 20
            } else {
                old_bytes
            };
            if new_bytes < need {
                return err(format!(
                    "{dev} is too small: partition {grow} would shrink from {} to {}, but it \
                     holds {} of data and needs at least {} (a disk of at least {} is needed)",
                    size_text(old_bytes),
                    size_text(new_bytes),
                    size_text(used),
                    size_text(need),
                    size_text(self.plan.target.size_bytes + (need - new_bytes))
                ));
            }
        }
        for q in &mut self.plan.partitions {
            // The last partition, and an extended partition holding it.
            if q.number == grow
                || (is_extended(q) && q.first_lba <= p.first_lba && q.last_lba >= old_last)
            {
                q.last_lba = last_usable;
            }
        }
        if let Some(r) = root_part.filter(|&r| r != grow) {
            self.plan.notes.push(format!(
                "the root is on partition {r}, not the last one: partition {grow} takes the \
                 change in size so every other partition keeps its start"
            ));
        }
        self.plan.resized = Some(Resize {
            number: grow,
            old_bytes,
            new_bytes,
        });
        Ok(())
    }

    /// Filesystems and swaps on the system disk, with their mkfs commands; the others noted.
    fn contents(&mut self) -> Result<(), PlanError> {
        let mut made: Vec<Option<u32>> = Vec::new();
        let mut fss: Vec<&FsRecord> = self
            .layout
            .filesystems
            .iter()
            .filter(|f| f.device.disk == self.idx)
            .collect();
        fss.sort_by_key(|f| (depth(&f.mount_point), f.mount_point.clone()));
        for f in fss {
            let n = f.device.partition;
            let size_bytes = self.space(n)?;
            let first = !made.contains(&n);
            made.push(n);
            let mkfs = if first {
                Some(mkfs::command(f, size_bytes != f.size_bytes).map_err(PlanError)?)
            } else {
                None
            };
            let subvol = (f.fstype == "btrfs")
                .then(|| crate::layout::fstab::option(&f.mount_options, "subvol"))
                .flatten()
                .map(|s| s.trim_start_matches('/').to_string())
                .filter(|s| !s.is_empty());
            let vol = self
                .layout
                .btrfs
                .iter()
                .find(|v| f.fstype == "btrfs" && v.uuid == f.uuid && mkfs.is_some());
            if let Some(v) = vol {
                self.unreached_subvolumes(v);
            }
            self.plan.filesystems.push(FsPlan {
                partition: n,
                fstype: f.fstype.clone(),
                uuid: f.uuid.clone(),
                label: f.label.clone(),
                mount_point: f.mount_point.clone(),
                subvol,
                subvolumes: vol.map(|v| v.subvolumes.clone()).unwrap_or_default(),
                default_subvol: vol.map(|v| v.default_path.clone()).unwrap_or_default(),
                mkfs,
                size_bytes,
                used_bytes: used_of(f),
            });
            self.describe(n, format!("{} {}", f.fstype, f.mount_point));
        }
        for s in &self.layout.swaps {
            if s.device.disk != self.idx {
                if self.restored.contains(&s.device.disk) {
                    continue;
                }
                self.plan.notes.push(format!(
                    "swap {} is on another disk ({}): not recreated",
                    s.uuid, s.device.name
                ));
                continue;
            }
            self.plan.swaps.push(SwapPlan {
                partition: s.device.partition,
                uuid: s.uuid.clone(),
                label: s.label.clone(),
                mkswap: mkfs::mkswap(&s.uuid, &s.label),
            });
            self.describe(s.device.partition, "swap".into());
        }
        for f in &self.layout.filesystems {
            if f.device.disk != self.idx && !self.restored.contains(&f.device.disk) {
                self.plan.notes.push(format!(
                    "{} ({} on {}) is on another disk: not recreated; its files go into the \
                     filesystem above it",
                    f.mount_point, f.fstype, f.device.name
                ));
            }
        }
        Ok(())
    }

    /// Notes the subvolumes of `v` that no mount of the captured system showed: they are
    /// created, but the capture saw none of their files.
    fn unreached_subvolumes(&mut self, v: &crate::layout::BtrfsVolume) {
        let roots: Vec<String> = self
            .layout
            .filesystems
            .iter()
            .filter(|f| f.uuid == v.uuid && f.mounted_at.is_some())
            .map(|f| {
                crate::layout::fstab::option(&f.mount_options, "subvol")
                    .map(|s| s.trim_matches('/').to_string())
                    .unwrap_or_else(|| v.default_path.clone())
            })
            .collect();
        for s in &v.subvolumes {
            let seen = roots.iter().any(|r| {
                r.is_empty() || s.path == *r || under(&format!("/{}", s.path), &format!("/{r}"))
            });
            if !seen {
                self.plan.notes.push(format!(
                    "btrfs subvolume {} was not mounted when captured: it is created empty",
                    s.path
                ));
            }
        }
    }

    /// Bytes of partition `n` on the target (the whole disk for `None`).
    fn space(&self, n: Option<u32>) -> Result<u64, PlanError> {
        match n {
            None => Ok(self.plan.target.size_bytes),
            Some(n) => self
                .plan
                .partitions
                .iter()
                .find(|p| p.number == n)
                .map(|p| (p.last_lba + 1 - p.first_lba) * self.ts)
                .ok_or_else(|| {
                    PlanError(format!("the layout names partition {n}, not in its table"))
                }),
        }
    }

    fn describe(&mut self, n: Option<u32>, what: String) {
        if let Some(p) = self
            .plan
            .partitions
            .iter_mut()
            .find(|p| Some(p.number) == n)
        {
            if !p.content.is_empty() {
                p.content.push_str(", ");
            }
            p.content.push_str(&what);
        }
    }

    /// Boot areas: verbatim where the geometry allows, grub-install where it does not.
    fn boot(&mut self) {
        let code = &self.disk.mbr_boot_code;
        let b = &mut self.plan.boot;
        b.mbr_boot_code = code.iter().any(|&c| c != 0);
        b.mbr_gap_bytes = self.disk.mbr_gap.len() as u64;
        let same_sectors = self.ss == self.ts;
        let info = &self.layout.boot;
        let bios = info
            .bios_boot
            .as_ref()
            .filter(|p| p.disk == self.idx)
            .and_then(|p| p.partition);
        if let Some(n) = bios {
            if !info.bios_boot_bytes.is_empty() && same_sectors {
                b.bios_boot = Some((n, info.bios_boot_bytes.len() as u64));
            } else if info.bios_boot_bytes.is_empty() {
                b.grub_install = Some(format!(
                    "the BIOS boot partition {n}'s bytes were not captured"
                ));
            }
        }
        if !same_sectors && (b.mbr_boot_code || bios.is_some()) {
            b.grub_install = Some(format!(
                "the target's sectors are {} bytes, the source's {}: GRUB's core image \
                 addresses sectors",
                self.ts, self.ss
            ));
            b.bios_boot = None;
            b.mbr_gap_bytes = 0;
        }
        if let Some(esp) = info.esp.as_ref().filter(|p| p.disk == self.idx)
            && let Some(n) = esp.partition
        {
            let mp = self
                .layout
                .filesystems
                .iter()
                .find(|f| f.device.disk == self.idx && f.device.partition == Some(n))
                .map(|f| f.mount_point.clone())
                .unwrap_or_default();
            b.esp = Some((n, mp));
        }
        let (esp, bios_n) = (b.esp.clone(), b.bios_boot);
        for p in &mut self.plan.partitions {
            let tag = if Some(p.number) == bios_n.map(|x| x.0) {
                "BIOS boot (raw bytes)"
            } else if esp.as_ref().map(|e| e.0) == Some(p.number) {
                "ESP"
            } else if is_extended(p) {
                "extended"
            } else {
                continue;
            };
            if p.content.is_empty() {
                p.content = tag.into();
            } else {
                p.content = format!("{tag}: {}", p.content);
            }
        }
    }
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

mod only;
mod renew;
pub mod several;
mod show;
mod shrink;
#[cfg(test)]
pub(crate) mod tests;
