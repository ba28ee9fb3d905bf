//! The block stack of a restore (issue #19; docs/RESTORE.md "LVM, MD RAID and LUKS"): after
//! every disk's partitions are planned, the MD arrays, LUKS containers and LVM volume groups
//! under the recorded filesystems are planned bottom up on them, each with its size on the
//! targets, and the filesystems and swaps inside them are added to the system disk's plan.
//! The apply makes them in this order (`restore/apply/stack.rs`) before any mkfs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{PlanError, RestorePlan, VgPlan, depth, err};
use crate::layout::{DiskLayout, FsRecord, PartRef, StackNode};

mod luks;
mod lvm;
mod md;
mod renew;

/// A block device of the plan: a partition of a recorded disk's target (the disk by its
/// recorded name), the whole target, or a volume an earlier step makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanDev {
    Part { disk: String, partition: u32 },
    Disk { disk: String },
    Volume(String),
}

impl std::fmt::Display for PlanDev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanDev::Part { disk, partition } => {
                write!(f, "partition {partition} (recorded disk {disk})")
            }
            PlanDev::Disk { disk } => write!(f, "the whole disk (recorded disk {disk})"),
            PlanDev::Volume(v) => write!(f, "{v}"),
        }
    }
}

/// One step of the stack, in the order they are made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StackStep {
    Md(MdPlan),
    Luks(LuksPlan),
    Vg(VgPlan),
}

/// An MD array made with `mdadm --create` and the recorded UUID, name and parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdPlan {
    /// `/dev/md0`.
    pub path: String,
    pub level: String,
    pub uuid: String,
    /// Members in role order; spares after.
    pub members: Vec<PlanDev>,
    /// Active members (`--raid-devices`); the rest are spares.
    pub raid_devices: u32,
    /// `mdadm --create` options but the device list.
    pub args: Vec<String>,
    /// The array's size on the targets (a lower bound: what the layers above are sized to).
    pub size_bytes: u64,
}

/// A LUKS container made anew (`cryptsetup luksFormat`, new master key) with the recorded
/// UUID, label and parameters, then opened as its recorded mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LuksPlan {
    /// The mapping's name (`/dev/mapper/NAME`).
    pub mapping: String,
    pub uuid: String,
    pub on: PlanDev,
    /// `cryptsetup luksFormat` options but the key and device.
    pub args: Vec<String>,
    /// `cryptsetup open --persistent` options (LUKS2 flags such as allow-discards).
    pub open_args: Vec<String>,
    pub size_bytes: u64,
}

impl StackStep {
    /// The devices this step is built on.
    pub fn below(&self) -> Vec<&PlanDev> {
        match self {
            StackStep::Md(m) => m.members.iter().collect(),
            StackStep::Luks(l) => vec![&l.on],
            StackStep::Vg(v) => v.pvs.iter().map(|(_, d)| d).collect(),
        }
    }
}

/// Plans the stack under every recorded filesystem and swap onto the per-disk `plans` (the
/// system disk's first) and adds the stacked filesystems and swaps to the first plan.
pub(super) fn complete(layout: &DiskLayout, plans: &mut [RestorePlan]) -> Result<(), PlanError> {
    if layout.stack.is_empty() || plans.is_empty() {
        return Ok(());
    }
    let mut p = Planner {
        layout,
        plans,
        volumes: HashMap::new(),
        steps: Vec::new(),
        notes: Vec::new(),
    };
    let tops: Vec<&FsRecord> = layout
        .filesystems
        .iter()
        .filter(|f| layout.stack.node(&f.device.name).is_some())
        .collect();
    let mut fss = Vec::new();
    let mut made: Vec<String> = Vec::new();
    for f in tops {
        let Some((dev, bytes)) = p.reachable(&f.device, &f.mount_point)? else {
            continue;
        };
        let first = !made.contains(&f.device.name);
        made.push(f.device.name.clone());
        let PlanDev::Volume(path) = dev else {
            return err(format!("{}: not a stack volume", f.mount_point));
        };
        let (fs, notes) = super::contents::fs_plan(layout, f, first, bytes, None, Some(path))?;
        p.notes.extend(notes);
        fss.push(fs);
    }
    let mut swaps = Vec::new();
    for s in layout.swaps.iter() {
        if layout.stack.node(&s.device.name).is_none() {
            continue;
        }
        if let Some((PlanDev::Volume(path), _)) = p.reachable(&s.device, "swap")? {
            swaps.push(super::contents::swap_plan(s, None, Some(path)));
        }
    }
    let (steps, notes) = (p.steps, p.notes);
    let first = &mut plans[0];
    first.stack = steps;
    first.notes.extend(notes);
    first.filesystems.extend(fss);
    first
        .filesystems
        .sort_by_key(|f| (depth(&f.mount_point), f.mount_point.clone()));
    first.swaps.extend(swaps);
    Ok(())
}

/// The planning state: what each stack node became, and the steps so far.
struct Planner<'a> {
    layout: &'a DiskLayout,
    plans: &'a mut [RestorePlan],
    /// Source kernel name of a stack node → its device and size on the targets.
    volumes: HashMap<String, (PlanDev, u64)>,
    steps: Vec<StackStep>,
    notes: Vec<String>,
}

impl Planner<'_> {
    /// `r`'s device and size, or `None` (with a note) when it lies on a recorded disk this
    /// restore leaves out; an error for `/` then.
    fn reachable(&mut self, r: &PartRef, what: &str) -> Result<Option<(PlanDev, u64)>, PlanError> {
        let missing: Vec<String> = self
            .layout
            .stack
            .bottom(r)
            .iter()
            .filter(|b| self.plan_of(b.disk).is_none())
            .map(|b| b.name.clone())
            .collect();
        if missing.is_empty() {
            return self.device(r, 0).map(Some);
        }
        if what == "/" {
            return err(format!(
                "/ is on {}, which lies on {} too: map every disk under it",
                r.name,
                missing.join(", ")
            ));
        }
        self.notes.push(format!(
            "{what} ({}) lies on {}, which this restore leaves out: not recreated",
            r.name,
            missing.join(", ")
        ));
        Ok(None)
    }

    /// The plan of recorded disk `idx`, if this restore recreates it.
    fn plan_of(&self, idx: u32) -> Option<usize> {
        let name = &self.layout.disks.get(idx as usize)?.name;
        self.plans.iter().position(|p| p.source_disk == *name)
    }

    /// The planned device of `r` and its size: a partition, a whole disk, or a stack node
    /// (planned on first use, the layers under it first).
    fn device(&mut self, r: &PartRef, depth: u32) -> Result<(PlanDev, u64), PlanError> {
        if depth > 16 {
            return err("the block stack nests too deep (a loop in the image's record?)".into());
        }
        if let Some(v) = self.volumes.get(&r.name) {
            return Ok(v.clone());
        }
        let layout = self.layout;
        match layout.stack.node(&r.name) {
            None => self.partition(r),
            Some(StackNode::Md(m)) => self.md(m, depth),
            Some(StackNode::Luks(l)) => self.luks(l, depth),
            Some(StackNode::Lv(vg, lv)) => {
                self.vg(vg, depth)?;
                self.volumes
                    .get(&lv.kernel_name)
                    .cloned()
                    .ok_or_else(|| PlanError(format!("LV {}/{} was not planned", vg.name, lv.name)))
            }
        }
    }

    /// A partition (or whole disk) of a planned disk, with its planned size.
    fn partition(&self, r: &PartRef) -> Result<(PlanDev, u64), PlanError> {
        let i = self.plan_of(r.disk).ok_or_else(|| {
            PlanError(format!(
                "{} is on a recorded disk this restore leaves out",
                r.name
            ))
        })?;
        let plan = &self.plans[i];
        let disk = plan.source_disk.clone();
        let Some(n) = r.partition else {
            return Ok((PlanDev::Disk { disk }, plan.target.size_bytes));
        };
        let s = u64::from(plan.target.sector);
        plan.partitions
            .iter()
            .find(|p| p.number == n)
            .map(|p| {
                let bytes = (p.last_lba + 1 - p.first_lba) * s;
                (PlanDev::Part { disk, partition: n }, bytes)
            })
            .ok_or_else(|| PlanError(format!("{}: partition {n} is not in the plan", r.name)))
    }

    /// Marks partition `r` (if it is one) as holding `what` in its disk's plan.
    fn describe(&mut self, r: &PartRef, what: &str) {
        if self.layout.stack.node(&r.name).is_some() {
            return;
        }
        let Some(i) = self.plan_of(r.disk) else {
            return;
        };
        if let Some(p) = self.plans[i]
            .partitions
            .iter_mut()
            .find(|p| Some(p.number) == r.partition)
        {
            if !p.content.is_empty() {
                p.content.push_str(", ");
            }
            p.content.push_str(what);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
