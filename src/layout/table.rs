//! Partition tables read from a whole disk: GPT (UEFI 2.10 §5.3, via `gptman`) or MBR with
//! extended/logical partitions (via `mbrman`), plus the raw boot areas around them.

use std::io::{Read, Seek, SeekFrom};

use super::probe;
use super::record::{GptPartition, GptTable, MbrPartition, MbrTable, PartitionTable};

/// GPT partition type of an EFI System Partition.
pub const ESP_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// GPT partition type of a BIOS boot partition (GRUB's core image on GPT disks).
pub const BIOS_BOOT_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
/// MBR system id of an ESP.
pub const MBR_ESP: u8 = 0xEF;
/// The MBR's boot code: bytes 0–439 (the disk signature follows at 440).
pub const BOOT_CODE_LEN: usize = 440;
/// Largest BIOS boot partition whose bytes are kept (GRUB's core image needs < 1 MiB).
pub const MAX_BIOS_BOOT: u64 = 16 << 20;
/// Most bytes of the MBR post-gap kept (GRUB's core image is well under this).
pub const MAX_GAP: u64 = 4 << 20;

/// A GPT GUID as stored (first three fields little-endian) in canonical upper-case text.
pub fn guid_text(g: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10..]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

/// Reads the table of a disk with `sector`-byte logical sectors. `Ok(None)`: no table (blank,
/// or a filesystem on the whole disk).
pub fn read<D: Read + Seek>(disk: &mut D, sector: u64) -> Result<Option<PartitionTable>, String> {
    let mut lba0 = vec![0u8; sector.max(512) as usize];
    disk.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    if disk.read_exact(&mut lba0).is_err() || lba0[510..512] != [0x55, 0xAA] {
        // No MBR signature: GPT still possible (a damaged protective MBR); try it.
        return read_gpt(disk, sector).map(|t| t.map(PartitionTable::Gpt));
    }
    let protective = (0..4).any(|i| lba0[446 + i * 16 + 4] == 0xEE);
    if protective {
        return match read_gpt(disk, sector)? {
            Some(t) => Ok(Some(PartitionTable::Gpt(t))),
            None => Err("protective MBR but no valid GPT header".into()),
        };
    }
    if let Some(t) = read_gpt(disk, sector).ok().flatten() {
        return Ok(Some(PartitionTable::Gpt(t)));
    }
    // A FAT boot sector also ends in 55 AA: a whole-disk filesystem is no table.
    if probe::vfat(&lba0).is_some() {
        return Ok(None);
    }
    read_mbr(disk, sector, &lba0).map(|t| t.map(PartitionTable::Mbr))
}

fn read_gpt<D: Read + Seek>(disk: &mut D, sector: u64) -> Result<Option<GptTable>, String> {
    let gpt = match gptman::GPT::read_from(disk, sector) {
        Ok(g) => g,
        Err(gptman::Error::InvalidSignature) => return Ok(None),
        Err(e) => return Err(format!("GPT: {e}")),
    };
    let partitions = gpt
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p)| GptPartition {
            number: n,
            first_lba: p.starting_lba,
            last_lba: p.ending_lba,
            type_guid: guid_text(&p.partition_type_guid),
            part_guid: guid_text(&p.unique_partition_guid),
            name: p.partition_name.as_str().to_string(),
            attributes: p.attribute_bits,
        })
        .collect();
    Ok(Some(GptTable {
        disk_guid: guid_text(&gpt.header.disk_guid),
        first_usable: gpt.header.first_usable_lba,
        last_usable: gpt.header.last_usable_lba,
        entries: gpt.header.number_of_partition_entries,
        partitions,
    }))
}

fn read_mbr<D: Read + Seek>(
    disk: &mut D,
    sector: u64,
    lba0: &[u8],
) -> Result<Option<MbrTable>, String> {
    // Boot flags other than 0x00/0x80 mean boot code or data, not a partition table.
    if (0..4).any(|i| lba0[446 + i * 16] & 0x7F != 0) {
        return Ok(None);
    }
    let sector = u32::try_from(sector).map_err(|_| "sector size too large")?;
    disk.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mbr = mbrman::MBR::read_from(disk, sector).map_err(|e| format!("MBR: {e}"))?;
    let logical: Vec<MbrPartition> = mbr
        .logical_partitions
        .iter()
        .zip(5..)
        .map(|(l, n)| entry(n, &l.partition, true))
        .collect();
    let primary = mbr
        .header
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p)| entry(n as u32, p, false));
    let partitions: Vec<_> = primary.chain(logical).collect();
    if partitions.is_empty() {
        return Ok(None);
    }
    Ok(Some(MbrTable {
        signature: u32::from_le_bytes(mbr.header.disk_signature),
        partitions,
    }))
}

fn entry(number: u32, p: &mbrman::MBRPartitionEntry, logical: bool) -> MbrPartition {
    MbrPartition {
        number,
        bootable: p.is_active(),
        type_byte: p.sys,
        start_lba: p.starting_lba,
        sectors: p.sectors,
        extended: p.is_extended(),
        logical,
    }
}

/// `PARTUUID` as the kernel and blkid give it: the GPT partition GUID (lower-case), or for
/// MBR `SSSSSSSS-NN` (disk signature, partition number, hex).
pub fn part_uuid(table: &PartitionTable, number: u32) -> Option<String> {
    match table {
        PartitionTable::Gpt(t) => t
            .partitions
            .iter()
            .find(|p| p.number == number)
            .map(|p| p.part_guid.to_lowercase()),
        PartitionTable::Mbr(t) => t
            .partitions
            .iter()
            .any(|p| p.number == number)
            .then(|| format!("{:08x}-{:02x}", t.signature, number)),
    }
}

/// `PARTLABEL`: the GPT partition name (MBR has none).
pub fn part_label(table: &PartitionTable, number: u32) -> Option<&str> {
    match table {
        PartitionTable::Gpt(t) => t
            .partitions
            .iter()
            .find(|p| p.number == number)
            .map(|p| p.name.as_str()),
        PartitionTable::Mbr(_) => None,
    }
}

/// The start of the first partition, in logical sectors (where the MBR gap ends).
pub fn first_start(table: &PartitionTable) -> Option<u64> {
    match table {
        PartitionTable::Gpt(t) => t.partitions.iter().map(|p| p.first_lba).min(),
        PartitionTable::Mbr(t) => t
            .partitions
            .iter()
            .filter(|p| !p.logical)
            .map(|p| u64::from(p.start_lba))
            .min(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn guid_text_is_mixed_endian() {
        // The ESP type GUID as it sits on disk.
        let raw = [
            0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
            0xC9, 0x3B,
        ];
        assert_eq!(guid_text(&raw), ESP_GUID);
    }

    fn mbr_disk(parts: &[(u8, u8, u32, u32)]) -> Vec<u8> {
        let mut d = vec![0u8; 8 << 20];
        d[0] = 0xFA;
        d[440..444].copy_from_slice(&0xC0FF_EE00u32.to_le_bytes());
        for (i, &(boot, sys, start, len)) in parts.iter().enumerate() {
            let e = 446 + i * 16;
            d[e] = boot;
            d[e + 4] = sys;
            d[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            d[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        }
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    #[test]
    fn mbr_primary_and_logical_partitions() {
        let mut d = mbr_disk(&[(0x80, 0x83, 2048, 4096), (0, 0x05, 8192, 8192)]);
        // EBR at 8192: one logical at relative 2048, no next.
        let ebr = 8192 * 512;
        d[ebr + 446 + 4] = 0x82;
        d[ebr + 446 + 8..ebr + 446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        d[ebr + 446 + 12..ebr + 446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        d[ebr + 510] = 0x55;
        d[ebr + 511] = 0xAA;
        let Some(PartitionTable::Mbr(t)) = read(&mut Cursor::new(&d), 512).unwrap() else {
            panic!("no MBR")
        };
        assert_eq!(t.signature, 0xC0FF_EE00);
        assert_eq!(t.partitions.len(), 3);
        let p1 = &t.partitions[0];
        assert_eq!((p1.number, p1.bootable, p1.type_byte), (1, true, 0x83));
        assert_eq!((p1.start_lba, p1.sectors), (2048, 4096));
        assert!(t.partitions[1].extended);
        let l = &t.partitions[2];
        assert_eq!((l.number, l.logical, l.type_byte), (5, true, 0x82));
        assert_eq!(l.start_lba, 8192 + 2048);
        let table = PartitionTable::Mbr(t);
        assert_eq!(part_uuid(&table, 5).as_deref(), Some("c0ffee00-05"));
        assert_eq!(part_uuid(&table, 3), None);
        assert_eq!(first_start(&table), Some(2048));
    }

    #[test]
    fn blank_disk_and_boot_code_only_have_no_table() {
        let blank = vec![0u8; 1 << 20];
        assert_eq!(read(&mut Cursor::new(&blank), 512).unwrap(), None);
        let code = mbr_disk(&[]);
        assert_eq!(read(&mut Cursor::new(&code), 512).unwrap(), None);
        let mut junk = mbr_disk(&[]);
        junk[446] = 0x13;
        assert_eq!(read(&mut Cursor::new(&junk), 512).unwrap(), None);
    }

    #[test]
    fn protective_mbr_without_gpt_is_an_error() {
        let d = mbr_disk(&[(0, 0xEE, 1, 0xFFFF_FFFF)]);
        assert!(read(&mut Cursor::new(&d), 512).is_err());
    }

    #[test]
    fn gpt_written_by_gptman_reads_back() {
        let mut d = Cursor::new(vec![0u8; 8 << 20]);
        let mut gpt = gptman::GPT::new_from(&mut d, 512, [7; 16]).unwrap();
        gpt[1] = gptman::GPTPartitionEntry {
            partition_type_guid: [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B,
            ],
            unique_partition_guid: [9; 16],
            starting_lba: 2048,
            ending_lba: 4095,
            attribute_bits: 1 << 63,
            partition_name: "EFI system".into(),
        };
        gpt.write_into(&mut d).unwrap();
        gptman::GPT::write_protective_mbr_into(&mut d, 512).unwrap();
        let Some(PartitionTable::Gpt(t)) = read(&mut d, 512).unwrap() else {
            panic!("no GPT")
        };
        assert_eq!(t.disk_guid, "07070707-0707-0707-0707-070707070707");
        assert_eq!(t.partitions.len(), 1);
        let p = &t.partitions[0];
        assert_eq!((p.number, p.first_lba, p.last_lba), (1, 2048, 4095));
        assert_eq!(p.type_guid, ESP_GUID);
        assert_eq!(p.name, "EFI system");
        assert_eq!(p.attributes, 1 << 63);
        let table = PartitionTable::Gpt(t);
        assert_eq!(
            part_uuid(&table, 1).as_deref(),
            Some("09090909-0909-0909-0909-090909090909")
        );
        assert_eq!(part_label(&table, 1), Some("EFI system"));
    }
}
