//! LVM volume groups (issue #19): each is recreated from its recorded metadata by
//! `vgcfgrestore`, so names, UUIDs, tags and segments come back. When a PV's device changed
//! size, its extent count follows, and one LV takes up the difference: the one holding `/`
//! when it ends last on that PV, else the LV that does (the rule partitions follow). Free
//! extents at the PV's end absorb a shrink first. The plan refuses, with numbers, what
//! cannot fit.

use super::super::build::Builder;
use super::super::{PlanError, VgPlan, err, needed_bytes, size_text, used_of};
use super::{PlanDev, Planner, StackStep};
use crate::layout::stack::{StackError, lvm};
use crate::layout::{DiskLayout, StackNode, VolumeGroup};

impl Planner<'_> {
    /// Plans VG `vg` (once) on its PVs' planned devices, and registers its LVs' volumes.
    pub(super) fn vg(&mut self, vg: &VolumeGroup, depth: u32) -> Result<(), PlanError> {
        let done = self
            .steps
            .iter()
            .any(|s| matches!(s, StackStep::Vg(v) if v.uuid == vg.uuid));
        if done {
            return Ok(());
        }
        let verr = |e: StackError| PlanError(format!("VG {}: {e}", vg.name));
        let meta = lvm::parse_vg(&vg.metadata).map_err(verr)?;
        let extent = vg.extent_bytes.max(512);
        let tails = lvm::pv_tails(&meta);
        let (mut targets, mut pvs, mut delta) = (Vec::new(), Vec::new(), 0i64);
        let mut changed: Option<&lvm::PvTail> = None;
        for p in &vg.pvs {
            let (dev, bytes) = self.device(&p.device, depth + 1)?;
            let new_pe = bytes.saturating_sub(p.pe_start_bytes) / extent;
            let d = new_pe as i64 - p.pe_count as i64;
            if d != 0 {
                changed = tails.iter().find(|t| t.pv_key == p.key);
            }
            delta += d;
            targets.push(lvm::PvTarget {
                pv_uuid: p.uuid.clone(),
                dev_size_sectors: bytes / 512,
                device: match &dev {
                    PlanDev::Volume(v) => v.clone(),
                    _ => format!("/dev/{}", p.device.name),
                },
            });
            pvs.push((p.uuid.clone(), dev));
            self.describe(&p.device, &format!("LVM PV of VG {}", vg.name));
        }
        let free = changed.map_or(0, |t| t.free_at_end as i64);
        let absorb = if delta < 0 {
            (delta + free).min(0)
        } else {
            delta
        };
        let metadata = if absorb == 0 {
            lvm::adapt_for_restore(&vg.metadata, &targets, None).map_err(verr)?
        } else {
            resize_one_lv(self.layout, vg, &targets, changed, absorb)?
        };
        let after = lvm::parse_vg(&metadata).map_err(verr)?;
        let mut lvs = Vec::new();
        for lv in &vg.lvs {
            let new = after
                .lvs
                .iter()
                .find(|x| x.name == lv.name)
                .map(|x| x.extents())
                .unwrap_or(lv.extents);
            lvs.push((lv.name.clone(), lv.extents * extent, new * extent));
            if !lv.kernel_name.is_empty() {
                let path = StackNode::Lv(vg, lv).path();
                self.volumes.insert(
                    lv.kernel_name.clone(),
                    (PlanDev::Volume(path), new * extent),
                );
            }
        }
        self.steps.push(StackStep::Vg(VgPlan {
            name: vg.name.clone(),
            uuid: vg.uuid.clone(),
            pvs,
            metadata,
            lvs,
        }));
        Ok(())
    }
}

/// The metadata with one LV grown or shrunk by `delta` extents: the one holding `/` (in
/// place when it ends last on its PV, else with the LVs on that PV packed anew), else the
/// LV that ends last on the PV that changed.
fn resize_one_lv(
    layout: &DiskLayout,
    vg: &VolumeGroup,
    targets: &[lvm::PvTarget],
    changed: Option<&lvm::PvTail>,
    delta: i64,
) -> Result<String, PlanError> {
    let mut candidates: Vec<String> = root_lv(layout, vg).into_iter().collect();
    if let Some(last) = changed.and_then(|t| t.last_lv.clone())
        && !candidates.contains(&last)
    {
        candidates.push(last);
    }
    let mut why = Vec::new();
    for lv in &candidates {
        if delta < 0
            && let Err(e) = lv_shrink_fits(layout, vg, lv, delta)
        {
            why.push(e.0);
            continue;
        }
        let grow = lvm::Grow {
            lv: lv.clone(),
            delta_extents: delta,
        };
        match lvm::adapt_for_restore(&vg.metadata, targets, Some(grow.clone())) {
            Ok(text) => return Ok(text),
            Err(e) => why.push(format!("LV {lv}: {e}")),
        }
        // The root LV is followed by another (Debian's swap_1): its PV laid out anew, the
        // LVs being empty until the restore fills them.
        if Some(lv) == root_lv(layout, vg).as_ref() {
            match lvm::relayout_for_restore(&vg.metadata, targets, &grow) {
                Ok(text) => return Ok(text),
                Err(e) => why.push(format!("LV {lv} laid out anew: {e}")),
            }
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
fn root_lv(layout: &DiskLayout, vg: &VolumeGroup) -> Option<String> {
    let f = layout.filesystems.iter().find(|f| f.mount_point == "/")?;
    match layout.stack.node(&f.device.name) {
        Some(StackNode::Lv(v, lv)) if v.uuid == vg.uuid => Some(lv.name.clone()),
        _ => None,
    }
}

/// LV `name` may lose `-delta` extents: its filesystem's data plus headroom still fits (a
/// swap needs 1 MiB; an LV with neither keeps its size).
fn lv_shrink_fits(
    layout: &DiskLayout,
    vg: &VolumeGroup,
    name: &str,
    delta: i64,
) -> Result<(), PlanError> {
    let Some(lv) = vg.lvs.iter().find(|l| l.name == name) else {
        return err(format!("VG {}: no LV {name}", vg.name));
    };
    let old = lv.extents.saturating_mul(vg.extent_bytes);
    let new = old.saturating_sub(delta.unsigned_abs().saturating_mul(vg.extent_bytes));
    let on_lv = |n: &str| !lv.kernel_name.is_empty() && n == lv.kernel_name;
    let fs = layout.filesystems.iter().find(|f| on_lv(&f.device.name));
    let swap = layout.swaps.iter().any(|s| on_lv(&s.device.name));
    let (used, need) = match fs {
        Some(f) => (used_of(f), needed_bytes(used_of(f))),
        None if swap => (0, 1 << 20),
        None => (old, old),
    };
    if new < need || delta.unsigned_abs() >= lv.extents {
        return err(format!(
            "the target is too small: LV {}/{name} would shrink from {} to {}, but it holds \
             {} of data and needs at least {}",
            vg.name,
            size_text(old),
            size_text(new),
            size_text(used),
            size_text(need)
        ));
    }
    Ok(())
}

impl Builder<'_> {
    /// Bytes partition `n` needs when it holds a PV: its extents in use, less what an LV
    /// that may take up the change can give back (the one holding `/`, or the last on the PV,
    /// as `resize_one_lv` tries them). `None` when it holds no PV.
    pub(in super::super) fn pv_need(&self, n: u32) -> Option<u64> {
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
        let give = root_lv(self.layout, vg)
            .into_iter()
            .chain(last)
            .map(|name| lv_can_give(self.layout, vg, &name))
            .max()
            .unwrap_or(0);
        Some(pv.pe_start_bytes + allocated.saturating_sub(give))
    }
}

/// Bytes LV `name` can give back, in whole extents: down to its filesystem's data plus
/// headroom, a swap to one extent; nothing for an LV holding neither (`lv_shrink_fits`'s
/// rule).
fn lv_can_give(layout: &DiskLayout, vg: &VolumeGroup, name: &str) -> u64 {
    let Some(lv) = vg.lvs.iter().find(|l| l.name == name) else {
        return 0;
    };
    let e = vg.extent_bytes.max(1);
    let old = lv.extents.saturating_mul(e);
    let on_lv = |n: &str| !lv.kernel_name.is_empty() && n == lv.kernel_name;
    let keep = match layout.filesystems.iter().find(|f| on_lv(&f.device.name)) {
        Some(f) => needed_bytes(used_of(f)),
        None if layout.swaps.iter().any(|s| on_lv(&s.device.name)) => 1 << 20,
        None => old,
    };
    // one extent always stays
    old.saturating_sub(keep.next_multiple_of(e).max(e))
}
