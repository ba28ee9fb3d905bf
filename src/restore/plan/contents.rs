//! What goes into the partitions: the filesystems on the recorded disk (root first, then by
//! mount-point depth) with their mkfs commands and btrfs subvolumes, its swaps, and notes for
//! what lies on recorded disks this restore leaves out.

use super::build::Builder;
use super::{FsPlan, PlanError, SwapPlan, depth, under, used_of};
use crate::layout::{BtrfsVolume, DiskLayout, FsRecord, PartRef, SwapRecord};
use crate::restore::mkfs;

impl Builder<'_> {
    /// Filesystems and swaps on the system disk, with their mkfs commands; the others noted.
    pub(super) fn contents(&mut self) -> Result<(), PlanError> {
        self.filesystems()?;
        self.swaps();
        self.note_filesystems_left_out();
        Ok(())
    }

    /// The disk's filesystems (those in a block stack are planned by `plan/stack/`); the
    /// first entry on a partition makes its filesystem, later ones (more btrfs subvolumes)
    /// only mount it.
    fn filesystems(&mut self) -> Result<(), PlanError> {
        let mut made: Vec<Option<u32>> = Vec::new();
        let mut fss: Vec<&FsRecord> = self
            .layout
            .filesystems
            .iter()
            .filter(|f| f.device.disk == self.idx && !self.stacked(&f.device))
            .collect();
        fss.sort_by_key(|f| (depth(&f.mount_point), f.mount_point.clone()));
        for f in fss {
            let n = f.device.partition;
            let first = !made.contains(&n);
            made.push(n);
            let size = self.space(n)?;
            let (fs, notes) = fs_plan(self.layout, f, first, size, n, None)?;
            self.plan.notes.extend(notes);
            self.plan.filesystems.push(fs);
            self.describe(n, format!("{} {}", f.fstype, f.mount_point));
        }
        Ok(())
    }

    /// `r` is a volume of the block stack (not a partition or disk).
    pub(super) fn stacked(&self, r: &PartRef) -> bool {
        self.layout.stack.node(&r.name).is_some()
    }

    /// The disk's swaps; a swap on a recorded disk this restore leaves out is noted.
    fn swaps(&mut self) {
        for s in &self.layout.swaps {
            if self.stacked(&s.device) {
                continue;
            }
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
            self.plan.swaps.push(swap_plan(s, s.device.partition, None));
            self.describe(s.device.partition, "swap".into());
        }
    }

    /// Notes the filesystems on recorded disks this restore leaves out.
    fn note_filesystems_left_out(&mut self) {
        for f in &self.layout.filesystems {
            if f.device.disk != self.idx
                && !self.restored.contains(&f.device.disk)
                && !self.stacked(&f.device)
            {
                self.plan.notes.push(format!(
                    "{} ({} on {}) is on another disk: not recreated; its files go into the \
                     filesystem above it",
                    f.mount_point, f.fstype, f.device.name
                ));
            }
        }
    }
}

/// Notes the subvolumes of `v` that no mount of the captured system showed: they are
/// created, but the capture saw none of their files.
fn unreached_subvolumes(layout: &DiskLayout, v: &BtrfsVolume, notes: &mut Vec<String>) {
    {
        let roots: Vec<String> = layout
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
                notes.push(format!(
                    "btrfs subvolume {} was not mounted when captured: it is created empty",
                    s.path
                ));
            }
        }
    }
}

/// The plan for recorded filesystem `f` on `size_bytes` of partition `partition` or stack
/// volume `volume`; `first`: this entry makes the filesystem (later ones are more btrfs
/// subvolumes of it). Returns notes for the plan beside it.
pub(super) fn fs_plan(
    layout: &DiskLayout,
    f: &FsRecord,
    first: bool,
    size_bytes: u64,
    partition: Option<u32>,
    volume: Option<String>,
) -> Result<(FsPlan, Vec<String>), PlanError> {
    let mut notes = Vec::new();
    let mkfs = if first {
        Some(mkfs::command(f, size_bytes != f.size_bytes).map_err(PlanError)?)
    } else {
        None
    };
    let vol = layout
        .btrfs
        .iter()
        .find(|v| f.fstype == "btrfs" && v.uuid == f.uuid && mkfs.is_some());
    if let Some(v) = vol {
        unreached_subvolumes(layout, v, &mut notes);
    }
    let plan = FsPlan {
        partition,
        volume,
        fstype: f.fstype.clone(),
        uuid: f.uuid.clone(),
        label: f.label.clone(),
        mount_point: f.mount_point.clone(),
        subvol: subvol_of(f),
        subvolumes: vol.map(|v| v.subvolumes.clone()).unwrap_or_default(),
        default_subvol: vol.map(|v| v.default_path.clone()).unwrap_or_default(),
        mkfs,
        size_bytes,
        used_bytes: used_of(f),
    };
    Ok((plan, notes))
}

/// The plan for swap `s` on `partition` or stack volume `volume`.
pub(super) fn swap_plan(
    s: &SwapRecord,
    partition: Option<u32>,
    volume: Option<String>,
) -> SwapPlan {
    SwapPlan {
        partition,
        volume,
        uuid: s.uuid.clone(),
        label: s.label.clone(),
        mkswap: mkfs::mkswap(&s.uuid, &s.label),
    }
}

/// The btrfs `subvol=` a mount uses, without its leading slash (`None`: the default one).
fn subvol_of(f: &FsRecord) -> Option<String> {
    (f.fstype == "btrfs")
        .then(|| crate::layout::fstab::option(&f.mount_options, "subvol"))
        .flatten()
        .map(|s| s.trim_start_matches('/').to_string())
        .filter(|s| !s.is_empty())
}
