//! The planner for one recorded disk: `Builder` holds the record, the target's geometry and the
//! plan being filled, and runs the phases in order — the partition table in target sectors
//! (`plan/table.rs`), the one partition that changes size (`plan/resize.rs`,
//! `plan/shrink.rs`), the filesystems and swaps (`plan/contents.rs`), the boot areas
//! (`plan/boot.rs`). Here: the sector arithmetic and lookups the phases share.

use super::{BootPlan, PlanError, RestorePlan, TablePlan, TargetGeometry, err};
use crate::layout::{Disk, DiskLayout, FsRecord};

pub(super) struct Builder<'a> {
    pub(super) layout: &'a DiskLayout,
    pub(super) disk: &'a Disk,
    pub(super) idx: u32,
    /// The recorded disks this restore recreates (this one among them).
    pub(super) restored: Vec<u32>,
    /// Source and target sector sizes.
    pub(super) ss: u64,
    pub(super) ts: u64,
    pub(super) plan: RestorePlan,
}

/// Sectors GPT keeps at the end of a disk: the backup entry array (128 × 128 bytes) and header.
fn gpt_tail(sector: u64) -> u64 {
    (128 * 128u64).div_ceil(sector) + 1
}

impl<'a> Builder<'a> {
    /// An empty plan for recorded disk `idx` of `layout` onto `target`.
    pub(super) fn new(
        layout: &'a DiskLayout,
        idx: u32,
        restored: &[u32],
        target: TargetGeometry,
    ) -> Result<Builder<'a>, PlanError> {
        let disk = layout
            .disks
            .get(idx as usize)
            .ok_or_else(|| PlanError(format!("the layout has no disk {idx}")))?;
        Ok(Builder {
            layout,
            disk,
            idx,
            restored: restored.to_vec(),
            ss: u64::from(disk.logical_sector.max(512)),
            ts: u64::from(target.sector),
            plan: RestorePlan {
                source_disk: disk.name.clone(),
                source_size_bytes: disk.size_bytes,
                source_sector: disk.logical_sector,
                target,
                table: TablePlan::None,
                partitions: Vec::new(),
                filesystems: Vec::new(),
                swaps: Vec::new(),
                boot: BootPlan::default(),
                resized: None,
                shrunk: Vec::new(),
                notes: Vec::new(),
                renamed: Vec::new(),
                stack: Vec::new(),
            },
        })
    }

    /// Runs the phases: partitions (and their resize), contents, boot areas.
    pub(super) fn build(mut self) -> Result<RestorePlan, PlanError> {
        self.partitions()?;
        self.contents()?;
        self.boot();
        Ok(self.plan)
    }
}

impl Builder<'_> {
    /// Source LBA → target LBA (same byte offset).
    pub(super) fn lba(&self, lba: u64) -> Result<u64, PlanError> {
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
    pub(super) fn end(&self, last: u64) -> Result<u64, PlanError> {
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
    pub(super) fn last_usable(&self) -> u64 {
        let n = self.target_sectors();
        match self.plan.table {
            TablePlan::Gpt { .. } => n.saturating_sub(gpt_tail(self.ts) + 1),
            _ => n.min(1 << 32).saturating_sub(1),
        }
    }

    /// Filesystems recorded on the system disk at partition `n` (not inside a stack on it).
    pub(super) fn fs_on(&self, n: Option<u32>) -> impl Iterator<Item = &FsRecord> + '_ {
        self.layout.filesystems.iter().filter(move |f| {
            f.device.disk == self.idx
                && f.device.partition == n
                && self.layout.stack.node(&f.device.name).is_none()
        })
    }

    /// Bytes of partition `n` on the target (the whole disk for `None`).
    pub(super) fn space(&self, n: Option<u32>) -> Result<u64, PlanError> {
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

    /// Adds `what` to partition `n`'s content column.
    pub(super) fn describe(&mut self, n: Option<u32>, what: String) {
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
}
