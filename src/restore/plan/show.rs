//! The plan as the user reads it before confirming (`Display`): the disks, the partition
//! table, the filesystems and swaps, the boot areas, new identities and notes. The text is
//! pinned by tests (`plan/tests.rs`, `tests/restore_*.rs`, `tests/cli_contract.rs`) and read by
//! the VM tests.

use std::fmt;

use super::{
    FsPlan, PartKind, PartPlan, RestorePlan, StackStep, SwapPlan, TablePlan, VgPlan, size,
};
use crate::layout::BtrfsSubvolume;
use crate::layout::table::{BIOS_BOOT_GUID, ESP_GUID};

impl fmt::Display for RestorePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.show_disks(f)?;
        self.show_partitions(f)?;
        self.show_volume_groups(f)?;
        self.show_filesystems(f)?;
        self.show_boot(f)?;
        self.show_renamed_and_notes(f)
    }
}

impl RestorePlan {
    /// The heading (source disk → target) and the partition table's line.
    fn show_disks(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.target;
        writeln!(
            f,
            "Restore plan: recorded disk {} ({}, {}-byte sectors) → {} ({}, {}-byte sectors)",
            self.source_disk,
            size(self.source_size_bytes),
            self.source_sector,
            t.device,
            size(t.size_bytes),
            t.sector
        )?;
        let starts = if self.shrunk.is_empty() {
            " and starts"
        } else {
            " (not all starts: see the notes)"
        };
        match &self.table {
            TablePlan::None => {
                writeln!(f, "  no partition table: one filesystem on the whole disk")
            }
            TablePlan::Gpt { disk_guid } => writeln!(
                f,
                "  partition table: GPT, disk GUID {disk_guid}; numbers, types, GUIDs{starts} kept"
            ),
            TablePlan::Mbr { signature } => writeln!(
                f,
                "  partition table: MBR (dos), disk signature 0x{signature:08x}; numbers, types{starts} kept"
            ),
        }
    }

    /// One row per partition (with its change in size), or the whole-disk filesystem's change.
    fn show_partitions(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.partitions.is_empty() {
            writeln!(
                f,
                "  {:>3} {:>12} {:>12} {:>11}  {:<20} content",
                "#", "start", "end", "size", "type"
            )?;
        }
        for p in &self.partitions {
            self.show_partition(f, p)?;
        }
        if let (TablePlan::None, Some(r)) = (&self.table, &self.resized) {
            writeln!(
                f,
                "  the filesystem changes size: {} → {}",
                size(r.old_bytes),
                size(r.new_bytes)
            )?;
        }
        Ok(())
    }

    fn show_partition(&self, f: &mut fmt::Formatter<'_>, p: &PartPlan) -> fmt::Result {
        let bytes = (p.last_lba + 1 - p.first_lba) * u64::from(self.target.sector);
        let resized = self.resized.iter().chain(&self.shrunk);
        let resized = match resized.clone().find(|r| r.number == p.number) {
            Some(r) => format!(
                "  [{} {} → {}]",
                if r.new_bytes > r.old_bytes {
                    "grows"
                } else {
                    "shrinks"
                },
                size(r.old_bytes),
                size(r.new_bytes)
            ),
            _ => String::new(),
        };
        writeln!(
            f,
            "  {:>3} {:>12} {:>12} {:>11}  {:<20} {}{resized}",
            p.number,
            p.first_lba,
            p.last_lba,
            size(bytes),
            type_name(&p.kind),
            p.content
        )
    }

    /// The block stack, in the order it is made: arrays, containers, volume groups.
    fn show_volume_groups(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.stack.is_empty() {
            writeln!(f, "  block stack (made before the filesystems, bottom up):")?;
        }
        for step in &self.stack {
            match step {
                StackStep::Md(m) => {
                    let members: Vec<String> = m.members.iter().map(|d| d.to_string()).collect();
                    writeln!(
                        f,
                        "    MD {} {} (UUID {}), about {} on {}: mdadm --create {}",
                        m.path,
                        m.level,
                        m.uuid,
                        size(m.size_bytes),
                        members.join(" + "),
                        m.args.join(" ")
                    )?;
                }
                StackStep::Luks(l) => writeln!(
                    f,
                    "    LUKS {} (UUID {}) on {}, {}: cryptsetup luksFormat {} (a NEW master key, \
                     under the passphrase given to this restore), opened as /dev/mapper/{}",
                    l.mapping,
                    l.uuid,
                    l.on,
                    size(l.size_bytes),
                    l.args.join(" "),
                    l.mapping
                )?,
                StackStep::Vg(vg) => show_vg(f, vg, !self.renamed.is_empty())?,
            }
        }
        Ok(())
    }

    /// The filesystems with their mkfs commands, the data to write, and the swaps.
    fn show_filesystems(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  filesystems (made with their {} label and features):",
            if self.renamed.is_empty() && !self.boot.default_layout {
                "original UUID,"
            } else {
                "NEW UUID, original"
            }
        )?;
        for fs in &self.filesystems {
            show_filesystem(f, fs)?;
        }
        let data: u64 = self.filesystems.iter().map(|f| f.used_bytes).sum();
        writeln!(
            f,
            "    data to write: about {} (what the filesystems used on the source)",
            size(data)
        )?;
        for s in &self.swaps {
            show_swap(f, s)?;
        }
        Ok(())
    }

    /// Boot areas written back verbatim, and whether grub-install runs.
    fn show_boot(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.boot;
        writeln!(f, "  boot loader (verbatim first):")?;
        if b.mbr_boot_code {
            writeln!(f, "    MBR boot code (bytes 0-439) written back")?;
        }
        if b.mbr_gap_bytes > 0 {
            writeln!(
                f,
                "    MBR post-gap ({}) written back",
                size(b.mbr_gap_bytes)
            )?;
        }
        if let Some((n, len)) = b.bios_boot {
            writeln!(f, "    BIOS boot partition {n}: {} written back", size(len))?;
        }
        if let Some((n, mp)) = &b.esp {
            writeln!(
                f,
                "    ESP partition {n} ({mp}): files from the image, removable path EFI/BOOT/BOOTX64.EFI ensured"
            )?;
        }
        match &b.grub_install {
            Some(why) => writeln!(f, "    grub-install runs chrooted: {why}"),
            None if b.default_layout => writeln!(
                f,
                "    default layout: etc/fstab written for the new UUIDs; GRUB installed for BIOS \
                 and UEFI by the tree's own grub-install (chrooted), if the tree has one"
            ),
            None => writeln!(f, "    grub-install not needed"),
        }
    }

    /// The identities `--new-uuids` replaced, then the notes.
    fn show_renamed_and_notes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.renamed.is_empty() {
            writeln!(
                f,
                "  new identities (--new-uuids; references in the restored tree rewritten):"
            )?;
            for r in &self.renamed {
                writeln!(f, "    {:<28} {} → {}", r.what, r.old, r.new)?;
            }
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

/// An LVM volume group recreated from its metadata, with each LV's size; `renewed`: with
/// new UUIDs (`--new-uuids`).
fn show_vg(f: &mut fmt::Formatter<'_>, vg: &VgPlan, renewed: bool) -> fmt::Result {
    let pvs: Vec<String> = vg
        .pvs
        .iter()
        .map(|(uuid, d)| format!("{d} (PV {uuid})"))
        .collect();
    writeln!(
        f,
        "    LVM volume group {} (UUID {}) on {}: pvcreate --restorefile, vgcfgrestore \
         ({})",
        vg.name,
        vg.uuid,
        pvs.join(", "),
        if renewed {
            "same names and segments, NEW UUIDs"
        } else {
            "same names, UUIDs and segments"
        }
    )?;
    for (name, old, new) in &vg.lvs {
        let change = if old == new {
            String::new()
        } else {
            let how = if new > old { "grows" } else { "shrinks" };
            format!(" (was {}: {how})", size(*old))
        };
        writeln!(f, "      LV {name}: {}{change}", size(*new))?;
    }
    Ok(())
}

/// Where a filesystem or swap goes: a partition, the whole disk or a stack volume.
fn place(partition: Option<u32>, volume: &Option<String>) -> String {
    match (volume, partition) {
        (Some(v), _) => v.clone(),
        (None, Some(n)) => format!("partition {n}"),
        (None, None) => "whole disk".into(),
    }
}

/// One filesystem: where it goes, its mkfs command, its btrfs subvolumes.
fn show_filesystem(f: &mut fmt::Formatter<'_>, fs: &FsPlan) -> fmt::Result {
    let place = place(fs.partition, &fs.volume);
    writeln!(
        f,
        "    {:<12} {:<6} UUID={} LABEL={:?} on {place}, {} used{}",
        fs.mount_point,
        fs.fstype,
        fs.uuid,
        fs.label,
        size(fs.used_bytes),
        fs.subvol
            .as_ref()
            .map(|s| format!(", subvolume {s}"))
            .unwrap_or_default()
    )?;
    if let Some(cmd) = &fs.mkfs {
        writeln!(f, "      {} <device>", cmd.join(" "))?;
    }
    if !fs.subvolumes.is_empty() {
        let list: Vec<String> = fs.subvolumes.iter().map(BtrfsSubvolume::shown).collect();
        writeln!(
            f,
            "      subvolumes: {}; default: {}",
            list.join(", "),
            if fs.default_subvol.is_empty() {
                "the top level"
            } else {
                &fs.default_subvol
            }
        )?;
    }
    Ok(())
}

fn show_swap(f: &mut fmt::Formatter<'_>, s: &SwapPlan) -> fmt::Result {
    let place = place(s.partition, &s.volume);
    writeln!(
        f,
        "    swap         UUID={} LABEL={:?} on {place}",
        s.uuid, s.label
    )
}

/// A short name for well-known GPT type GUIDs.
fn type_name(k: &PartKind) -> String {
    match k {
        PartKind::Gpt { type_guid, .. } => {
            let g = type_guid.to_ascii_uppercase();
            match g.as_str() {
                ESP_GUID => "EFI System".into(),
                BIOS_BOOT_GUID => "BIOS boot".into(),
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem".into(),
                "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap".into(),
                "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)".into(),
                "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot".into(),
                _ => g,
            }
        }
        PartKind::Mbr { type_byte, .. } => format!("0x{type_byte:02x}"),
    }
}
