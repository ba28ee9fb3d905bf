//! LVM volume groups on this disk's partitions (issue #19): each is recreated from its
//! recorded metadata by `vgcfgrestore`, so names, UUIDs, tags and segments come back. When
//! a PV's partition changed size, its extent count follows, and one LV takes up the
//! difference: the one holding `/` when it is in this VG, else the VG's last LV (the rule
//! partitions follow). The plan refuses, with numbers, what cannot fit.

use super::build::Builder;
use super::{PlanError, VgPlan, err, needed_bytes, size_text, used_of};
use crate::layout::stack::lvm;
use crate::layout::{PartRef, StackNode, VolumeGroup};

impl Builder<'_> {
    /// Plans every VG whose PVs are on this disk.
    pub(super) fn volume_groups(&mut self) -> Result<(), PlanError> {
        let vgs: Vec<VolumeGroup> = self.layout.stack.vgs.clone();
        for vg in &vgs {
            let here = vg
                .pvs
                .iter()
                .filter(|p| p.device.disk == self.idx && p.device.partition.is_some())
                .count();
            if here == 0 {
                continue;
            }
            if here != vg.pvs.len()
                || vg
                    .pvs
                    .iter()
                    .any(|p| self.layout.stack.node(&p.device.name).is_some())
            {
                return err(format!(
                    "VG {}: its PVs are on several disks or on MD RAID or LUKS, which this \
                     osimage does not recreate yet",
                    vg.name
                ));
            }
            let plan = self.volume_group(vg)?;
            for (uuid, n) in &plan.pvs {
                let _ = uuid;
                self.describe(Some(*n), format!("LVM PV of VG {}", vg.name));
            }
            self.plan.volume_groups.push(plan);
        }
        Ok(())
    }

    /// One VG: its PVs at their planned sizes, the growing or shrinking LV, the metadata.
    fn volume_group(&self, vg: &VolumeGroup) -> Result<VgPlan, PlanError> {
        let mut targets = Vec::new();
        let mut delta: i64 = 0;
        let mut pvs = Vec::new();
        let extent = vg.extent_bytes.max(512);
        for p in &vg.pvs {
            let n = p.device.partition.unwrap_or(0);
            let bytes = self.space(Some(n))?;
            let new_pe = bytes.saturating_sub(p.pe_start_bytes) / extent;
            delta += new_pe as i64 - p.pe_count as i64;
            targets.push(lvm::PvTarget {
                pv_uuid: p.uuid.clone(),
                dev_size_sectors: bytes / 512,
                device: format!("/dev/{}", p.device.name),
            });
            pvs.push((p.uuid.clone(), n));
        }
        let grow = match delta {
            0 => None,
            d => Some(lvm::Grow {
                lv: self.taker(vg)?,
                delta_extents: d,
            }),
        };
        if let Some(g) = &grow
            && g.delta_extents < 0
        {
            self.lv_shrink_fits(vg, &g.lv, g.delta_extents)?;
        }
        let metadata = lvm::adapt_for_restore(&vg.metadata, &targets, grow.clone())
            .map_err(|e| PlanError(format!("VG {}: {e}", vg.name)))?;
        let after = lvm::parse_vg(&metadata)
            .map_err(|e| PlanError(format!("VG {}: resized metadata: {e}", vg.name)))?;
        let lvs = vg
            .lvs
            .iter()
            .map(|lv| {
                let new = after
                    .lvs
                    .iter()
                    .find(|x| x.name == lv.name)
                    .map(|x| x.extents())
                    .unwrap_or(lv.extents);
                (lv.name.clone(), lv.extents * extent, new * extent)
            })
            .collect();
        Ok(VgPlan {
            name: vg.name.clone(),
            uuid: vg.uuid.clone(),
            pvs,
            metadata,
            lvs,
        })
    }

    /// The LV that takes up a change in size: the one holding `/` if in `vg`, else the last.
    fn taker(&self, vg: &VolumeGroup) -> Result<String, PlanError> {
        let root = self
            .layout
            .filesystems
            .iter()
            .find(|f| f.mount_point == "/")
            .and_then(|f| match self.layout.stack.node(&f.device.name) {
                Some(StackNode::Lv(v, lv)) if v.uuid == vg.uuid => Some(lv.name.clone()),
                _ => None,
            });
        root.or_else(|| {
            vg.lvs
                .iter()
                .rev()
                .find(|l| !l.hidden && l.recreatable)
                .map(|l| l.name.clone())
        })
        .ok_or_else(|| PlanError(format!("VG {} has no LV to resize", vg.name)))
    }

    /// LV `name` may lose `-delta` extents: its filesystem's data plus headroom still fits.
    fn lv_shrink_fits(&self, vg: &VolumeGroup, name: &str, delta: i64) -> Result<(), PlanError> {
        let Some(lv) = vg.lvs.iter().find(|l| l.name == name) else {
            return err(format!("VG {}: no LV {name}", vg.name));
        };
        let old = lv.extents.saturating_mul(vg.extent_bytes);
        let new = old.saturating_sub(delta.unsigned_abs().saturating_mul(vg.extent_bytes));
        let fs = self
            .layout
            .filesystems
            .iter()
            .find(|f| !lv.kernel_name.is_empty() && f.device.name == lv.kernel_name);
        let swap = self
            .layout
            .swaps
            .iter()
            .any(|s| !lv.kernel_name.is_empty() && s.device.name == lv.kernel_name);
        let (used, need) = match fs {
            Some(f) => (used_of(f), needed_bytes(used_of(f))),
            None if swap => (0, 1 << 20),
            None => (old, old),
        };
        if new < need || delta.unsigned_abs() >= lv.extents {
            return err(format!(
                "{} is too small: LV {}/{name} would shrink from {} to {}, but it holds {} \
                 of data and needs at least {}",
                self.plan.target.device,
                vg.name,
                size_text(old),
                size_text(new),
                size_text(used),
                size_text(need)
            ));
        }
        Ok(())
    }

    /// Bytes partition `n` needs when it holds a PV: its extents in use, less what the LV
    /// taking up the change may give back. `None` when it holds no PV.
    pub(super) fn pv_need(&self, n: u32) -> Option<u64> {
        let vg = self.layout.stack.vgs.iter().find(|v| {
            v.pvs
                .iter()
                .any(|p| p.device.disk == self.idx && p.device.partition == Some(n))
        })?;
        let pv = vg.pvs.iter().find(|p| p.device.partition == Some(n))?;
        let e = vg.extent_bytes;
        let allocated: u64 = vg.lvs.iter().map(|l| l.extents.saturating_mul(e)).sum();
        let give = self.taker(vg).ok().and_then(|name| {
            let lv = vg.lvs.iter().find(|l| l.name == name)?;
            let old = lv.extents.saturating_mul(e);
            let f = self
                .layout
                .filesystems
                .iter()
                .find(|f| !lv.kernel_name.is_empty() && f.device.name == lv.kernel_name)?;
            Some(old.saturating_sub(needed_bytes(used_of(f)).next_multiple_of(e.max(1))))
        });
        Some(pv.pe_start_bytes + allocated.saturating_sub(give.unwrap_or(0)))
    }

    /// The stack volume `r` names, with its planned size: `None` for a partition or disk.
    pub(super) fn volume_of(&self, r: &PartRef) -> Result<Option<(String, u64)>, PlanError> {
        match self.layout.stack.node(&r.name) {
            None => Ok(None),
            Some(StackNode::Lv(vg, lv)) => {
                let planned = self
                    .plan
                    .volume_groups
                    .iter()
                    .find(|p| p.uuid == vg.uuid)
                    .and_then(|p| p.lvs.iter().find(|l| l.0 == lv.name))
                    .ok_or_else(|| {
                        PlanError(format!(
                            "LV {}/{} is not on this disk's partitions",
                            vg.name, lv.name
                        ))
                    })?;
                let path = StackNode::Lv(vg, lv).path();
                Ok(Some((path, planned.2)))
            }
            Some(node) => err(format!(
                "{} ({}) is on MD RAID or LUKS, which this osimage records but does not \
                 recreate yet",
                node.path(),
                r.name
            )),
        }
    }
}
