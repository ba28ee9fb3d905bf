//! The version-0.90 superblock, `mdp_super_t` (include/uapi/linux/raid/md_p.h): 1024 32-bit
//! words in the host's byte order (little endian on every machine osimage runs on), in the
//! last 64 KiB-aligned 64 KiB of the device; checked as the kernel's `super_90_load`.

use std::fs::File;

use super::v1::le32;
use super::{MD_SB_MAGIC, MdMember, StackError, array_size, level_name, missing, read_block};

/// Word indexes in `mdp_super_t` (md_p.h; the generic constant words 0–31, the generic state
/// words 32–63 with events low word first on little-endian hosts, the personality words from
/// 64, the 27 disk descriptors of 32 words from 128, `this_disk` at 992).
mod word {
    pub const MAGIC: usize = 0;
    pub const MAJOR: usize = 1;
    pub const MINOR: usize = 2;
    pub const SET_UUID0: usize = 5;
    pub const CTIME: usize = 6;
    pub const LEVEL: usize = 7;
    pub const SIZE: usize = 8;
    pub const RAID_DISKS: usize = 10;
    pub const SET_UUID1: usize = 13;
    pub const STATE: usize = 33;
    pub const SB_CSUM: usize = 38;
    pub const EVENTS_LO: usize = 39;
    pub const EVENTS_HI: usize = 40;
    pub const LAYOUT: usize = 64;
    pub const CHUNK_SIZE: usize = 65;
    pub const DISKS: usize = 128;
    pub const THIS_DISK: usize = 992;
}
/// `MD_SB_DISKS`: the descriptor table's length.
const SB_DISKS: u32 = 27;
/// `mdp_disk_t` words: number 0, major 1, minor 2, raid_disk 3, state 4.
const DISK_NUMBER: usize = 0;
const DISK_RAID_DISK: usize = 3;
const DISK_STATE: usize = 4;
/// `mdp_disk_t.state` bits: faulty 0, active 1, sync 2, removed 3, write-mostly 9.
const FAULTY: u32 = 1;
const SYNC: u32 = 1 << 2;
const WRITE_MOSTLY: u32 = 1 << 9;
/// `mdp_super_t.state` bit 8: `MD_SB_BITMAP_PRESENT`.
const BITMAP_PRESENT: u32 = 1 << 8;

fn w(sb: &[u8], i: usize) -> u32 {
    le32(sb, 4 * i)
}

/// The kernel's `calc_sb_csum`: the 1024 words summed with `sb_csum` as 0, folded once.
pub fn checksum(sb: &[u8]) -> u32 {
    let sum: u64 = (0..1024)
        .filter(|i| *i != word::SB_CSUM)
        .map(|i| u64::from(w(sb, i)))
        .sum();
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// The 0.90 superblock at sector `at` (the caller has checked 4 KiB fit there), or `None` without
/// the magic and version 0.90/0.91.
pub fn read(dev: &File, at: u64) -> Result<Option<MdMember>, StackError> {
    let sb = read_block(dev, at * 512, 4096, "MD 0.90 superblock")?;
    if w(&sb, word::MAGIC) != MD_SB_MAGIC
        || w(&sb, word::MAJOR) != 0
        || !(90..=91).contains(&w(&sb, word::MINOR))
    {
        return Ok(None);
    }
    let bad = |what: String| StackError::Bad(format!("MD 0.90 superblock at sector {at}: {what}"));
    let (stored, computed) = (w(&sb, word::SB_CSUM), checksum(&sb));
    if stored != computed {
        return Err(bad(format!(
            "checksum {stored:#010x} does not match the computed {computed:#010x}"
        )));
    }
    let raid_disks = w(&sb, word::RAID_DISKS);
    if raid_disks == 0 || raid_disks > SB_DISKS {
        return Err(bad(format!("raid_disks {raid_disks} (at most {SB_DISKS})")));
    }
    let component = u64::from(w(&sb, word::SIZE)) * 2;
    if component > at {
        return Err(bad(format!(
            "component size {component} sectors overlaps the superblock"
        )));
    }
    let level = level_name(w(&sb, word::LEVEL) as i32)?;
    let disk = |d: usize, field: usize| w(&sb, word::DISKS + 32 * d + field);
    let this = |field: usize| w(&sb, word::THIS_DISK + field);
    let in_sync = |state: u32| state & SYNC != 0 && state & FAULTY == 0;
    let live_roles = (0..SB_DISKS as usize)
        .filter(|d| in_sync(disk(*d, DISK_STATE)))
        .map(|d| disk(d, DISK_RAID_DISK));
    let role = this(DISK_RAID_DISK);
    let chunk_sectors = u64::from(w(&sb, word::CHUNK_SIZE) / 512);
    let layout = w(&sb, word::LAYOUT);
    let uuid_words = [
        word::SET_UUID0,
        word::SET_UUID1,
        word::SET_UUID1 + 1,
        word::SET_UUID1 + 2,
    ];
    Ok(Some(MdMember {
        metadata: "0.90",
        // mdadm prints 0.90's UUID words as numbers (super0.c, `swapuuid` 0).
        uuid: uuid_words.map(|i| format!("{:08x}", w(&sb, i))).join(":"),
        name: String::new(),
        ctime: w(&sb, word::CTIME).into(),
        level: level.into(),
        layout,
        chunk_kib: w(&sb, word::CHUNK_SIZE) / 1024,
        raid_disks,
        role: (role < raid_disks && in_sync(this(DISK_STATE))).then_some(role),
        faulty: this(DISK_STATE) & FAULTY != 0,
        journal: false,
        write_mostly: this(DISK_STATE) & WRITE_MOSTLY != 0,
        dev_number: this(DISK_NUMBER),
        dev_uuid: String::new(),
        super_offset_sectors: at,
        data_offset_sectors: 0,
        data_size_sectors: at,
        component_size_sectors: component,
        array_size_sectors: array_size(level, component, raid_disks.into(), layout, chunk_sectors),
        bitmap: w(&sb, word::STATE) & BITMAP_PRESENT != 0,
        bitmap_offset_sectors: None,
        events: u64::from(w(&sb, word::EVENTS_HI)) << 32 | u64::from(w(&sb, word::EVENTS_LO)),
        features: Vec::new(),
        missing_roles: missing(live_roles, raid_disks),
        faulty_devices: (0..SB_DISKS as usize)
            .filter(|d| disk(*d, DISK_STATE) & FAULTY != 0)
            .count() as u32,
    }))
}
