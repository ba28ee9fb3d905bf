//! Writing the whole disk: old signatures wiped, the partition table (GPT via `gptman`, MBR
//! with logical partitions via `mbrman`; docs/DESIGN.md: osimage partitions by itself), and the
//! raw boot areas written back verbatim (MBR boot code, MBR post-gap, BIOS boot partition).

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::plan::{PartKind, PartPlan, RestorePlan, TablePlan};
use crate::layout::{Disk, DiskLayout};

const MIB: u64 = 1 << 20;

/// A GUID in canonical text → its on-disk bytes (first three fields little-endian).
pub fn guid_bytes(text: &str) -> Result<[u8; 16], String> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return Err(format!("malformed GUID {text:?}"));
    }
    let mut raw = [0u8; 16];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16)
            .map_err(|_| format!("malformed GUID {text:?}"))?;
    }
    raw[0..4].reverse();
    raw[4..6].reverse();
    raw[6..8].reverse();
    Ok(raw)
}

fn zero(f: &File, at: u64, len: u64) -> std::io::Result<()> {
    let buf = vec![0u8; MIB as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(MIB);
        f.write_all_at(&buf[..n as usize], at + done)?;
        done += n;
    }
    Ok(())
}

/// Zeroes the first and last MiB of the disk and the first MiB of every planned partition:
/// no stale table, RAID or filesystem signature survives to confuse the kernel or mkfs.
pub fn wipe(f: &File, plan: &RestorePlan) -> std::io::Result<()> {
    let size = plan.target.size_bytes;
    let s = u64::from(plan.target.sector);
    zero(f, 0, MIB.min(size))?;
    zero(f, size.saturating_sub(MIB), MIB.min(size))?;
    for p in &plan.partitions {
        let len = ((p.last_lba + 1 - p.first_lba) * s).min(MIB);
        zero(f, p.first_lba * s, len)?;
    }
    Ok(())
}

/// Writes the planned partition table.
pub fn write_table(f: &mut File, plan: &RestorePlan, disk: &Disk) -> Result<(), String> {
    let s = u64::from(plan.target.sector);
    match &plan.table {
        TablePlan::None => Ok(()),
        TablePlan::Gpt { disk_guid } => write_gpt(f, s, disk_guid, &plan.partitions),
        TablePlan::Mbr { signature } => write_mbr(f, s, *signature, &plan.partitions, disk),
    }
}

fn write_gpt(f: &mut File, s: u64, disk_guid: &str, parts: &[PartPlan]) -> Result<(), String> {
    let e = |e: gptman::Error| format!("writing the GPT: {e}");
    let mut gpt = gptman::GPT::new_from(f, s, guid_bytes(disk_guid)?).map_err(e)?;
    for p in parts {
        let PartKind::Gpt {
            type_guid,
            part_guid,
            name,
            attributes,
        } = &p.kind
        else {
            return Err("an MBR partition in a GPT plan".into());
        };
        if p.number == 0 || p.number > gpt.header.number_of_partition_entries {
            return Err(format!("partition number {} outside the GPT", p.number));
        }
        gpt[p.number] = gptman::GPTPartitionEntry {
            partition_type_guid: guid_bytes(type_guid)?,
            unique_partition_guid: guid_bytes(part_guid)?,
            starting_lba: p.first_lba,
            ending_lba: p.last_lba,
            attribute_bits: *attributes,
            partition_name: name.as_str().into(),
        };
    }
    gpt.write_into(f).map_err(e)?;
    gptman::GPT::write_protective_mbr_into(f, s).map_err(e)?;
    Ok(())
}

fn write_mbr(
    f: &mut File,
    s: u64,
    signature: u32,
    parts: &[PartPlan],
    disk: &Disk,
) -> Result<(), String> {
    let e = |e: mbrman::Error| format!("writing the MBR: {e}");
    let sector = u32::try_from(s).map_err(|_| "sector size too large")?;
    let mut mbr = mbrman::MBR::new_from(f, sector, signature.to_le_bytes()).map_err(e)?;
    let lba32 = |v: u64| u32::try_from(v).map_err(|_| format!("LBA {v} beyond MBR's 2 TiB"));
    let mut prev_end: Option<u64> = None;
    for p in parts {
        let PartKind::Mbr {
            type_byte,
            bootable,
            logical,
            ..
        } = &p.kind
        else {
            return Err("a GPT partition in an MBR plan".into());
        };
        let entry = mbrman::MBRPartitionEntry {
            boot: if *bootable { 0x80 } else { 0 },
            first_chs: mbrman::CHS::empty(),
            sys: *type_byte,
            last_chs: mbrman::CHS::empty(),
            starting_lba: lba32(p.first_lba)?,
            sectors: lba32(p.last_lba + 1 - p.first_lba)?,
        };
        if !logical {
            if !(1..=4).contains(&p.number) {
                return Err(format!("primary partition number {}", p.number));
            }
            mbr[p.number as usize] = entry;
            continue;
        }
        // The EBR sits in the gap before its logical partition (the first one at the start of
        // the extended partition, which mbrman sets itself).
        let ebr = match prev_end {
            None => p.first_lba.saturating_sub(1),
            Some(end) => (end + 1).max(p.first_lba.saturating_sub(2048)),
        };
        if ebr >= p.first_lba {
            return Err(format!("no room for the EBR of partition {}", p.number));
        }
        let first = prev_end.is_none();
        mbr.logical_partitions.push(mbrman::LogicalPartition {
            partition: entry,
            absolute_ebr_lba: lba32(ebr)?,
            ebr_sectors: (!first).then(|| lba32(p.last_lba + 1 - ebr)).transpose()?,
            ebr_first_chs: mbrman::CHS::empty(),
            ebr_last_chs: (!first).then(mbrman::CHS::empty),
            bootstrap_code: [0; 446],
        });
        prev_end = Some(p.last_lba);
    }
    if let Ok(code) = <[u8; 440]>::try_from(disk.mbr_boot_code.as_slice()) {
        mbr.header.bootstrap_code = code;
    }
    mbr.write_into(f).map_err(e)
}

/// Writes the boot areas the plan keeps verbatim: MBR bytes 0–439, the MBR post-gap, the BIOS
/// boot partition's bytes.
pub fn write_boot_areas(
    f: &File,
    plan: &RestorePlan,
    layout: &DiskLayout,
    disk: &Disk,
) -> std::io::Result<()> {
    let b = &plan.boot;
    if b.mbr_boot_code && disk.mbr_boot_code.len() <= 440 {
        f.write_all_at(&disk.mbr_boot_code, 0)?;
    }
    let s = u64::from(plan.target.sector);
    if b.mbr_gap_bytes > 0 {
        let first = plan
            .partitions
            .iter()
            .map(|p| p.first_lba)
            .min()
            .unwrap_or(0);
        let room = (first * s).saturating_sub(s) as usize;
        let gap = &disk.mbr_gap[..disk.mbr_gap.len().min(room)];
        f.write_all_at(gap, s)?;
    }
    if let Some((n, _)) = b.bios_boot
        && let Some(p) = plan.partitions.iter().find(|p| p.number == n)
    {
        let room = ((p.last_lba + 1 - p.first_lba) * s) as usize;
        let bytes = &layout.boot.bios_boot_bytes;
        f.write_all_at(&bytes[..bytes.len().min(room)], p.first_lba * s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::table::{ESP_GUID, guid_text};

    #[test]
    fn guid_round_trip() {
        let raw = guid_bytes(ESP_GUID).unwrap();
        assert_eq!(raw[0], 0x28);
        assert_eq!(guid_text(&raw), ESP_GUID);
        assert!(guid_bytes("nope").is_err());
    }
}
