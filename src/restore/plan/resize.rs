//! The one partition that changes size (docs/DESIGN.md "Boot loader on restore"): the last
//! one, so every other partition keeps its start; on a smaller disk earlier partitions may
//! shrink first (`plan/shrink.rs`). Without a table, the whole-disk filesystem takes the
//! whole target.

use super::build::Builder;
use super::{PlanError, Resize, err, is_extended, needed_bytes, size_text, used_of};

impl Builder<'_> {
    /// A filesystem on the whole disk: it takes the whole target.
    pub(super) fn whole_disk(&mut self) -> Result<(), PlanError> {
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

    /// Grows or shrinks the root partition when it is the last one, else the last one; every
    /// other partition must fit unchanged.
    pub(super) fn resize(&mut self) -> Result<(), PlanError> {
        let last_usable = self.last_usable();
        // The issue says "the root (or the last) partition": only the last one can change size
        // without moving another's start, so the root grows when it is last.
        let Some(grow) = self.last_partition() else {
            return Ok(());
        };
        self.make_room(grow, last_usable)?;
        self.others_fit(grow, last_usable)?;
        let p = self
            .plan
            .partitions
            .iter()
            .find(|p| p.number == grow)
            .cloned()
            .ok_or_else(|| PlanError("no partition to resize".into()))?;
        let (first, old_last) = (p.first_lba, p.last_lba);
        if old_last == last_usable {
            return Ok(());
        }
        if first >= last_usable {
            return err(format!(
                "{} is too small: partition {grow} starts at byte {} but the disk holds \
                 only {}",
                self.plan.target.device,
                first * self.ts,
                size_text(self.plan.target.size_bytes)
            ));
        }
        let old_bytes = (old_last + 1 - first) * self.ts;
        let new_bytes = (last_usable + 1 - first) * self.ts;
        if new_bytes < old_bytes {
            self.shrink_fits(grow, old_bytes, new_bytes)?;
        }
        for q in &mut self.plan.partitions {
            // The last partition, and an extended partition holding it.
            if q.number == grow
                || (is_extended(q) && q.first_lba <= first && q.last_lba >= old_last)
            {
                q.last_lba = last_usable;
            }
        }
        self.note_root_not_last(grow);
        self.plan.resized = Some(Resize {
            number: grow,
            old_bytes,
            new_bytes,
        });
        Ok(())
    }

    /// The partition that ends last (an extended one stands for its logical partitions).
    fn last_partition(&self) -> Option<u32> {
        self.plan
            .partitions
            .iter()
            .filter(|p| !is_extended(p))
            .max_by_key(|p| p.last_lba)
            .map(|p| p.number)
    }

    /// Every partition but `grow` (and extended ones) ends within the target.
    fn others_fit(&self, grow: u32, last_usable: u64) -> Result<(), PlanError> {
        for p in &self.plan.partitions {
            if p.number != grow && !is_extended(p) && p.last_lba > last_usable {
                return err(format!(
                    "{} is too small: partition {} ends at byte {} but the disk holds {} \
                     ({} usable); only partition {grow} can shrink",
                    self.plan.target.device,
                    p.number,
                    (p.last_lba + 1) * self.ts,
                    size_text(self.plan.target.size_bytes),
                    size_text((last_usable + 1) * self.ts)
                ));
            }
        }
        Ok(())
    }

    /// Partition `grow` may shrink from `old_bytes` to `new_bytes`: its filesystem's data plus
    /// headroom still fits (a swap needs 1 MiB, a partition with neither its whole size).
    fn shrink_fits(&self, grow: u32, old_bytes: u64, new_bytes: u64) -> Result<(), PlanError> {
        let used: u64 = self.fs_on(Some(grow)).map(used_of).max().unwrap_or(0);
        let has_fs = self.fs_on(Some(grow)).next().is_some();
        let swap = self
            .layout
            .swaps
            .iter()
            .any(|s| s.device.disk == self.idx && s.device.partition == Some(grow));
        let pv = self.pv_need(grow);
        let need = if has_fs {
            needed_bytes(used)
        } else if let Some(pv) = pv {
            pv
        } else if swap {
            1 << 20
        } else {
            old_bytes
        };
        if new_bytes < need {
            return err(format!(
                "{} is too small: partition {grow} would shrink from {} to {}, but it \
                 holds {} of data and needs at least {} (a disk of at least {} is needed)",
                self.plan.target.device,
                size_text(old_bytes),
                size_text(new_bytes),
                size_text(used),
                size_text(need),
                size_text(self.plan.target.size_bytes + (need - new_bytes))
            ));
        }
        Ok(())
    }

    /// Notes that the root is not the partition that takes the change in size.
    fn note_root_not_last(&mut self, grow: u32) {
        let root_part = self
            .layout
            .filesystems
            .iter()
            .find(|f| f.mount_point == "/" && f.device.disk == self.idx)
            .and_then(|f| f.device.partition);
        if let Some(r) = root_part.filter(|&r| r != grow) {
            self.plan.notes.push(format!(
                "the root is on partition {r}, not the last one: partition {grow} takes the \
                 change in size so every other partition keeps its start"
            ));
        }
    }
}
