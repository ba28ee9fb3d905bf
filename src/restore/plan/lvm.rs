//! LVM volume groups on this disk's partitions (issue #19): each is recreated from its
//! recorded metadata by `vgcfgrestore`, so names, UUIDs, tags and segments come back. When
//! a PV's partition changed size, its extent count follows, and one LV takes up the
//! difference: the one holding `/` when it is in this VG, else the VG's last LV (the rule
//! partitions follow). The plan refuses, with numbers, what cannot fit.

use super::build::Builder;
use super::{PlanError, VgPlan, err, needed_bytes, size_text, used_of};
use crate::layout::stack::{StackError, lvm};
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
        let verr = |e: StackError| PlanError(format!("VG {}: {e}", vg.name));
        let meta = lvm::parse_vg(&vg.metadata).map_err(verr)?;
        let extent = vg.extent_bytes.max(512);
        let tails = lvm::pv_tails(&meta);
        let (mut targets, mut pvs, mut delta) = (Vec::new(), Vec::new(), 0i64);
        let mut changed: Option<&lvm::PvTail> = None;
        for p in &vg.pvs {
            let n = p.device.partition.unwrap_or(0);
            let bytes = self.space(Some(n))?;
            let new_pe = bytes.saturating_sub(p.pe_start_bytes) / extent;
            let d = new_pe as i64 - p.pe_count as i64;
            if d != 0 {
                changed = tails.iter().find(|t| t.pv_key == p.key);
            }
            delta += d;
            targets.push(lvm::PvTarget {
                pv_uuid: p.uuid.clone(),
                dev_size_sectors: bytes / 512,
                device: format!("/dev/{}", p.device.name),
            });
            pvs.push((p.uuid.clone(), n));
        }
        // Free extents at the PV's end absorb a shrink first; the rest falls to one LV.
        let free = changed.map_or(0, |t| t.free_at_end as i64);
        let absorb = if delta < 0 {
            (delta + free).min(0)
        } else {
            delta
        };
        let metadata = if absorb == 0 {
            lvm::adapt_for_restore(&vg.metadata, &targets, None).map_err(verr)?
        } else {
            self.resize_one_lv(vg, &targets, changed, absorb)?
        };
        let after = lvm::parse_vg(&metadata).map_err(verr)?;
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

    /// The metadata with one LV grown or shrunk by `delta` extents: the one holding `/` when
    /// it can (it ends last on the PV that changed), else the LV that ends last there.
    fn resize_one_lv(
        &self,
        vg: &VolumeGroup,
        targets: &[lvm::PvTarget],
        changed: Option<&lvm::PvTail>,
        delta: i64,
    ) -> Result<String, PlanError> {
        let mut candidates: Vec<String> = self.root_lv(vg).into_iter().collect();
        if let Some(last) = changed.and_then(|t| t.last_lv.clone())
            && !candidates.contains(&last)
        {
            candidates.push(last);
        }
        let mut why = Vec::new();
        for lv in &candidates {
            if delta < 0
                && let Err(e) = self.lv_shrink_fits(vg, lv, delta)
            {
                why.push(e.0);
                continue;
            }
            let grow = lvm::Grow {
                lv: lv.clone(),
                delta_extents: delta,
            };
            match lvm::adapt_for_restore(&vg.metadata, targets, Some(grow)) {
                Ok(text) => return Ok(text),
                Err(e) => why.push(format!("LV {lv}: {e}")),
            }
        }
        err(format!(
            "VG {}: no LV can take up a change of {delta} extents of {}: {}",
            vg.name,
            size_text(vg.extent_bytes),
            if why.is_empty() {
                "it has no LV".to_string()
            } else {
                why.join("; ")
            }
        ))
    }

    /// The LV of `vg` holding `/`, if any.
    fn root_lv(&self, vg: &VolumeGroup) -> Option<String> {
        let f = self
            .layout
            .filesystems
            .iter()
            .find(|f| f.mount_point == "/")?;
        match self.layout.stack.node(&f.device.name) {
            Some(StackNode::Lv(v, lv)) if v.uuid == vg.uuid => Some(lv.name.clone()),
            _ => None,
        }
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
        let meta = lvm::parse_vg(&vg.metadata).ok()?;
        let last = lvm::pv_tails(&meta)
            .into_iter()
            .find(|t| t.pv_key == pv.key)
            .and_then(|t| t.last_lv);
        let give = last.and_then(|name| {
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
