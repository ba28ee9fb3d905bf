//! The version-1 superblock, `struct mdp_superblock_1` (include/uapi/linux/raid/md_p.h): 256
//! bytes of little-endian fields followed by `max_dev` 16-bit roles; checked as the kernel's
//! `super_1_load` (drivers/md/md.c) checks it.

use std::fs::File;

use super::{
    MD_SB_MAGIC, MdMember, StackError, array_size, level_name, missing, read_block, uuid_text,
};

/// Byte offsets in `struct mdp_superblock_1`.
mod off {
    pub const MAGIC: usize = 0;
    pub const MAJOR_VERSION: usize = 4;
    pub const FEATURE_MAP: usize = 8;
    pub const SET_UUID: usize = 16;
    pub const SET_NAME: usize = 32;
    pub const CTIME: usize = 64;
    pub const LEVEL: usize = 72;
    pub const LAYOUT: usize = 76;
    pub const SIZE: usize = 80;
    pub const CHUNKSIZE: usize = 88;
    pub const RAID_DISKS: usize = 92;
    pub const BITMAP_OFFSET: usize = 96;
    pub const DATA_OFFSET: usize = 128;
    pub const DATA_SIZE: usize = 136;
    pub const SUPER_OFFSET: usize = 144;
    pub const DEV_NUMBER: usize = 160;
    pub const DEVICE_UUID: usize = 168;
    pub const DEVFLAGS: usize = 184;
    pub const EVENTS: usize = 200;
    pub const SB_CSUM: usize = 216;
    pub const MAX_DEV: usize = 220;
    pub const DEV_ROLES: usize = 256;
}

/// The kernel reads at most 4 KiB of superblock: `max_dev` ≤ (4096 − 256) / 2
/// (drivers/md/md.c `super_1_load`).
pub const MAX_DEV: u32 = (4096 - 256) / 2;
/// Role values (md_p.h `MD_DISK_ROLE_*`; 0xffff, a spare or an unused entry, is any value
/// not below `raid_disks`).
const ROLE_FAULTY: u16 = 0xfffe;
const ROLE_JOURNAL: u16 = 0xfffd;
/// `feature_map` bits (md_p.h `MD_FEATURE_*`) beyond BITMAP_OFFSET (1), by name.
const FEATURES: [(u32, &str); 11] = [
    (2, "recovery"),
    (4, "reshape"),
    (8, "bad-blocks"),
    (16, "replacement"),
    (32, "reshape-backwards"),
    (64, "new-offset"),
    (128, "recovery-bitmap"),
    (256, "clustered"),
    (512, "journal"),
    (1024, "ppl"),
    (4096, "raid0-layout"),
];

pub(super) fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub(super) fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from(le32(b, o)) | u64::from(le32(b, o + 4)) << 32
}

/// The kernel's `calc_sb_1_csum`: the 32-bit little-endian words of the first
/// 256 + 2 × max_dev bytes summed with `sb_csum` taken as 0 (a trailing 16-bit half-word
/// added alone), the 64-bit sum folded once.
pub fn checksum(sb: &[u8]) -> u32 {
    let len = 256 + 2 * le32(sb, off::MAX_DEV).min(MAX_DEV) as usize;
    let mut sum: u64 = 0;
    let mut o = 0;
    while o + 4 <= len {
        if o != off::SB_CSUM {
            sum += u64::from(le32(sb, o));
        }
        o += 4;
    }
    if len - o == 2 {
        sum += u64::from(le16(sb, o));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// The 1.x superblock of version `version` at sector `at` of a device of `sectors` sectors
/// (the caller has checked 4 KiB fit there); `None` without the magic and major version 1.
pub fn read(
    dev: &File,
    at: u64,
    sectors: u64,
    version: &'static str,
) -> Result<Option<MdMember>, StackError> {
    let sb = read_block(dev, at * 512, 4096, "MD 1.x superblock")?;
    if le32(&sb, off::MAGIC) != MD_SB_MAGIC || le32(&sb, off::MAJOR_VERSION) != 1 {
        return Ok(None);
    }
    let bad =
        |what: String| StackError::Bad(format!("MD {version} superblock at sector {at}: {what}"));
    let max_dev = le32(&sb, off::MAX_DEV);
    if max_dev > MAX_DEV {
        return Err(bad(format!("max_dev {max_dev} is over {MAX_DEV}")));
    }
    let (stored, computed) = (le32(&sb, off::SB_CSUM), checksum(&sb));
    if stored != computed {
        return Err(bad(format!(
            "checksum {stored:#010x} does not match the computed {computed:#010x}"
        )));
    }
    if le64(&sb, off::SUPER_OFFSET) != at {
        return Err(bad(format!(
            "it says it sits at sector {}",
            le64(&sb, off::SUPER_OFFSET)
        )));
    }
    decode(&sb, at, sectors, version).map(Some).map_err(bad)
}

/// The fields, checked against the device (`super_1_load`'s checks: data inside the device,
/// the device's number inside the role table, the bitmap inside the device).
fn decode(sb: &[u8], at: u64, sectors: u64, version: &'static str) -> Result<MdMember, String> {
    let level = level_name(le32(sb, off::LEVEL) as i32).map_err(|e| e.to_string())?;
    let (data_offset, data_size) = (le64(sb, off::DATA_OFFSET), le64(sb, off::DATA_SIZE));
    if data_offset
        .checked_add(data_size)
        .is_none_or(|end| end > sectors)
    {
        return Err(format!(
            "data at sector {data_offset}, {data_size} sectors long, ends past the device's {sectors} sectors"
        ));
    }
    let feature_map = le32(sb, off::FEATURE_MAP);
    let bitmap_offset = le32(sb, off::BITMAP_OFFSET) as i32;
    let bitmap = feature_map & 1 != 0;
    if bitmap && (at as i64 + i64::from(bitmap_offset)) as u64 >= sectors {
        return Err(format!(
            "bitmap offset {bitmap_offset} points outside the device"
        ));
    }
    let max_dev = le32(sb, off::MAX_DEV);
    let dev_number = le32(sb, off::DEV_NUMBER);
    if dev_number >= max_dev {
        return Err(format!(
            "dev_number {dev_number} is outside the {max_dev} roles"
        ));
    }
    let raid_disks = le32(sb, off::RAID_DISKS);
    if raid_disks == 0 || raid_disks > MAX_DEV {
        return Err(format!("raid_disks {raid_disks}"));
    }
    let roles = (0..max_dev as usize).map(|i| le16(sb, off::DEV_ROLES + 2 * i));
    let role = le16(sb, off::DEV_ROLES + 2 * dev_number as usize);
    let chunk = u64::from(le32(sb, off::CHUNKSIZE));
    let component = le64(sb, off::SIZE);
    let layout = le32(sb, off::LAYOUT);
    Ok(MdMember {
        metadata: version,
        uuid: uuid_text(&sb[off::SET_UUID..off::SET_UUID + 16]),
        name: c_string(&sb[off::SET_NAME..off::SET_NAME + 32]),
        ctime: le64(sb, off::CTIME) & 0xff_ffff_ffff,
        level: level.into(),
        layout,
        chunk_kib: (chunk / 2) as u32,
        raid_disks,
        role: (u32::from(role) < raid_disks).then_some(u32::from(role)),
        faulty: role == ROLE_FAULTY,
        journal: role == ROLE_JOURNAL,
        write_mostly: sb[off::DEVFLAGS] & 1 != 0,
        dev_number,
        dev_uuid: uuid_text(&sb[off::DEVICE_UUID..off::DEVICE_UUID + 16]),
        super_offset_sectors: at,
        data_offset_sectors: data_offset,
        data_size_sectors: data_size,
        component_size_sectors: component,
        array_size_sectors: array_size(level, component, raid_disks.into(), layout, chunk),
        bitmap,
        bitmap_offset_sectors: bitmap.then_some(bitmap_offset),
        events: le64(sb, off::EVENTS),
        features: FEATURES
            .iter()
            .filter(|(b, _)| feature_map & b != 0)
            .map(|(_, n)| *n)
            .collect(),
        missing_roles: missing(roles.clone().map(u32::from), raid_disks),
        faulty_devices: roles.filter(|r| *r == ROLE_FAULTY).count() as u32,
    })
}

/// A NUL-padded text field.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
