//! Shrinking partitions before the last one (issue #5: "on a smaller one partitions shrink if
//! the used data fits"). Used only when the last partition alone cannot absorb the smaller
//! disk: earlier partitions holding a filesystem give up space down to their data plus
//! headroom (`needed_bytes`), from the last one backwards, in whole MiB so alignment is kept,
//! and every partition after a shrunk one moves down by what was freed before it.
//!
//! Never moved: the BIOS boot partition and everything before it (the MBR boot code and GRUB's
//! core image address its sectors), and tables with an MBR extended partition (the EBR chain
//! addresses its own sectors). Swap and partitions without a recorded filesystem or LVM PV
//! keep their size. Numbers, types and GUIDs never change; the plan lists each shrink and move.

use super::{Builder, PlanError, Resize, err, is_extended, needed_bytes, size_text, used_of};

impl Builder<'_> {
    /// Sectors partition `n` needs at least: its filesystem's data plus headroom, or for an
    /// LVM PV what its LVs cannot give back (`pv_need`), in whole MiB; `None` when it cannot
    /// shrink (neither recorded on it).
    fn min_sectors(&self, n: u32, mib: u64) -> Option<u64> {
        let need = match self.fs_on(Some(n)).map(used_of).max() {
            Some(used) => needed_bytes(used),
            None => self.pv_need(n)?,
        };
        let unit = self.ts * mib;
        let bytes = need.div_ceil(unit).saturating_mul(unit);
        Some(bytes / self.ts)
    }

    /// Frees room before partition `last` so that it gets at least its own minimum, shrinking
    /// and moving earlier partitions (see the module comment). Does nothing when the last
    /// partition fits as is, or when nothing before it may shrink.
    pub(super) fn make_room(&mut self, last: u32, last_usable: u64) -> Result<(), PlanError> {
        if self.plan.partitions.iter().any(is_extended) {
            return Ok(());
        }
        let mib = (1u64 << 20) / self.ts;
        let Some(lp) = self.plan.partitions.iter().find(|p| p.number == last) else {
            return Ok(());
        };
        let last_min = self
            .min_sectors(last, mib)
            .unwrap_or(lp.last_lba + 1 - lp.first_lba);
        // The last partition's end if it kept its start and got only its minimum.
        let end = lp.first_lba.saturating_add(last_min) - 1;
        if end <= last_usable {
            return Ok(());
        }
        let deficit = (end - last_usable).div_ceil(mib) * mib;
        let bios = self.plan.boot_partition_end(self.layout, self.idx);
        let mut order: Vec<usize> = (0..self.plan.partitions.len()).collect();
        order.sort_by_key(|&i| self.plan.partitions[i].first_lba);
        // Shrinkable partitions before the last, from the last one backwards.
        let mut cuts: Vec<(usize, u64)> = Vec::new();
        let mut left = deficit;
        for &i in order.iter().rev() {
            let p = &self.plan.partitions[i];
            if p.number == last || bios.is_some_and(|b| p.first_lba <= b) || left == 0 {
                continue;
            }
            let Some(min) = self.min_sectors(p.number, mib) else {
                continue;
            };
            let len = p.last_lba + 1 - p.first_lba;
            let slack = len.saturating_sub(min) / mib * mib;
            let cut = slack.min(left);
            if cut > 0 {
                cuts.push((i, cut));
                left -= cut;
            }
        }
        if cuts.is_empty() {
            return Ok(());
        }
        if left > 0 {
            let names: Vec<String> = cuts
                .iter()
                .map(|&(i, _)| self.plan.partitions[i].number.to_string())
                .collect();
            return err(format!(
                "{} is too small: even with partition(s) {} shrunk to their data plus headroom, \
                 partition {last} (which needs {}) lacks {}; a disk of at least {} is needed",
                self.plan.target.device,
                names.join(", "),
                size_text(last_min * self.ts),
                size_text(left * self.ts),
                size_text(self.plan.target.size_bytes + left * self.ts)
            ));
        }
        // Apply: each partition moves down by the cuts of those before it.
        let mut shift = 0u64;
        for &i in &order {
            let cut = cuts.iter().find(|c| c.0 == i).map_or(0, |c| c.1);
            let p = &mut self.plan.partitions[i];
            let old = (p.first_lba, p.last_lba);
            p.first_lba -= shift;
            p.last_lba -= shift + cut;
            if cut > 0 {
                self.plan.shrunk.push(Resize {
                    number: p.number,
                    old_bytes: (old.1 + 1 - old.0) * self.ts,
                    new_bytes: (p.last_lba + 1 - p.first_lba) * self.ts,
                });
            }
            if shift > 0 {
                self.plan.notes.push(format!(
                    "partition {} moves from sector {} to {} (earlier partitions shrank)",
                    p.number, old.0, p.first_lba
                ));
            }
            shift += cut;
        }
        Ok(())
    }
}

impl super::RestorePlan {
    /// The last sector of the system disk's BIOS boot partition, if it has one.
    fn boot_partition_end(&self, layout: &crate::layout::DiskLayout, idx: u32) -> Option<u64> {
        let n = layout
            .boot
            .bios_boot
            .as_ref()
            .filter(|p| p.disk == idx)?
            .partition?;
        self.partitions
            .iter()
            .find(|p| p.number == n)
            .map(|p| p.last_lba)
    }
}
