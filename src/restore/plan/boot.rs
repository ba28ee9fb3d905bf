//! The boot areas (docs/DESIGN.md "Boot loader on restore"): the MBR boot code, its post-gap
//! and the BIOS boot partition are written back verbatim where the sector size allows, else
//! the captured system's `grub-install` runs; the ESP's files come from the image.

use super::build::Builder;
use super::is_extended;
use crate::layout::PartitionTable;
use crate::layout::table::BIOS_BOOT_GUID;

impl Builder<'_> {
    /// Boot areas: verbatim where the geometry allows, grub-install where it does not.
    pub(super) fn boot(&mut self) {
        self.verbatim_areas();
        self.esp();
        self.tag_boot_partitions();
    }

    /// The MBR boot code, post-gap and BIOS boot partition, or why grub-install must run.
    fn verbatim_areas(&mut self) {
        let own = self.bios_boot_partition();
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
        // A second disk with GRUB's boot code and a BIOS boot partition of its own (GRUB on
        // both disks of a RAID1): the capture keeps one BIOS boot partition's bytes, the boot
        // disk's, so this one's core image comes from grub-install; its MBR code alone would
        // jump into an empty partition.
        if bios.is_none()
            && b.mbr_boot_code
            && let Some(n) = own
        {
            b.grub_install = Some(format!(
                "{}'s BIOS boot partition {n}: its bytes were not captured (only the boot \
                 disk's are)",
                self.disk.name
            ));
        }
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
    }

    /// The number of this disk's recorded BIOS boot partition (GPT type), if it has one.
    fn bios_boot_partition(&self) -> Option<u32> {
        let Some(PartitionTable::Gpt(t)) = &self.disk.table else {
            return None;
        };
        t.partitions
            .iter()
            .find(|p| p.type_guid.eq_ignore_ascii_case(BIOS_BOOT_GUID))
            .map(|p| p.number)
    }

    /// The ESP's partition number and mount point, when it is on this disk.
    fn esp(&mut self) {
        let info = &self.layout.boot;
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
            self.plan.boot.esp = Some((n, mp));
        }
    }

    /// Names the BIOS boot partition, the ESP and an extended partition in the content column.
    fn tag_boot_partitions(&mut self) {
        let b = &self.plan.boot;
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
