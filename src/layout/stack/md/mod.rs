//! MD RAID members (issue #19): the superblock a member device carries, read without mdadm,
//! and the state of a running array from sysfs. What `read` returns is what the capture
//! records so the restore can run `mdadm --create` with the same UUID, name and geometry.
//!
//! Formats: include/uapi/linux/raid/md_p.h (`struct mdp_superblock_1`, `mdp_super_t`) and the
//! kernel's loaders in drivers/md/md.c (`super_1_load`, `super_90_load`); placement and the
//! choice among several superblocks as mdadm's super1.c/util.c make it.

mod sysfs;
mod v090;
mod v1;

use std::fs::File;

pub use sysfs::{MdArrayState, MdSysfsMember, from_sysfs};

use super::{StackError, read_block};

/// The MD superblock magic, both versions (md_p.h `MD_SB_MAGIC`).
const MD_SB_MAGIC: u32 = 0xa92b_4efc;

/// What one member's superblock says about it and its array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdMember {
    /// "1.2", "1.1", "1.0" or "0.90" (where the superblock sits; mdadm's `--metadata`).
    pub metadata: &'static str,
    /// The array UUID as mdadm prints it: `xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`.
    pub uuid: String,
    /// `host:name` as stored (1.x `set_name`); empty for 0.90, which has none.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub ctime: u64,
    /// "linear", "raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "multipath".
    pub level: String,
    /// The level's raw `layout` (md_p.h; raid5/6 algorithm, raid10 near/far/offset copies).
    pub layout: u32,
    /// Chunk size in KiB (0 where the level has none).
    pub chunk_kib: u32,
    pub raid_disks: u32,
    /// This device's slot in the array; `None` for a spare, a faulty or a journal device.
    pub role: Option<u32>,
    /// This device is marked faulty (role 0xfffe; 0.90: disk state bit 0).
    pub faulty: bool,
    /// This device is the array's write journal (role 0xfffd, 1.x only).
    pub journal: bool,
    /// Reads avoid this device (1.x `devflags` WriteMostly1; mdadm's `--write-mostly`).
    pub write_mostly: bool,
    /// The device's number in the superblock's device table (`dev_number`, 0.90 `this_disk.number`).
    pub dev_number: u32,
    /// 1.x `device_uuid` in mdadm's form; empty for 0.90.
    pub dev_uuid: String,
    /// Where the superblock starts, in 512-byte sectors from the device's start.
    pub super_offset_sectors: u64,
    /// Where the array's data starts on this device, in sectors.
    pub data_offset_sectors: u64,
    /// Sectors of this device usable for data (`data_size`).
    pub data_size_sectors: u64,
    /// Sectors of each member the array uses (`size`; 0.90: KiB × 2).
    pub component_size_sectors: u64,
    /// The array's size computed from the component size as the level's personality does;
    /// `None` for linear and raid0, whose size depends on every member's.
    pub array_size_sectors: Option<u64>,
    /// An internal write-intent bitmap.
    pub bitmap: bool,
    /// The bitmap's offset from the superblock in sectors (1.x, signed).
    pub bitmap_offset_sectors: Option<i32>,
    pub events: u64,
    /// Feature bits set beyond the bitmap, by name (`recovery`, `reshape`, `journal`, `ppl`,
    /// `bad-blocks`, `replacement`, `clustered`, `raid0-layout`, …): a reshape or recovery in
    /// progress, or a journal, is something a plain `mdadm --create` does not bring back.
    pub features: Vec<&'static str>,
    /// Roles `0..raid_disks` no device holds according to this superblock: the array is
    /// degraded when this is not empty.
    pub missing_roles: Vec<u32>,
    /// Devices the superblock marks faulty.
    pub faulty_devices: u32,
}

impl MdMember {
    /// The array lacks members (as this member last saw it).
    pub fn degraded(&self) -> bool {
        !self.missing_roles.is_empty()
    }

    /// Options for `mdadm --create` (mdadm(8) "CREATE MODE") that recreate this array with the
    /// same metadata version, UUID, name and geometry. The device list, `--size` and
    /// `--assume-clean` are the caller's: they depend on the target disks.
    pub fn mdadm_create_args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--metadata={}", self.metadata),
            format!("--level={}", self.level),
            format!("--raid-devices={}", self.raid_disks),
            format!("--uuid={}", self.uuid),
        ];
        if !self.name.is_empty() {
            // A name with a ':' is stored as given (mdadm super1.c init_super1), so the
            // homehost part comes back too.
            a.push(format!("--name={}", self.name));
        }
        if matches!(
            self.level.as_str(),
            "raid0" | "raid4" | "raid5" | "raid6" | "raid10"
        ) && self.chunk_kib > 0
        {
            a.push(format!("--chunk={}K", self.chunk_kib));
        }
        if let Some(l) = layout_name(&self.level, self.layout, &self.features) {
            a.push(format!("--layout={l}"));
        }
        if self.level != "raid0" && self.level != "linear" {
            let b = if self.bitmap { "internal" } else { "none" };
            a.push(format!("--bitmap={b}"));
        }
        // mdadm(8) --data-offset: "in Kilobytes unless a suffix … is used"; 1.0 keeps its
        // data at 0 and 0.90 has no offset.
        if matches!(self.metadata, "1.1" | "1.2") {
            a.push(format!("--data-offset={}K", self.data_offset_sectors / 2));
        }
        a
    }
}

/// mdadm's `--layout` name for a raw layout (mdadm(8) --layout: raid5, raid6 and raid10 take
/// one, raid4 none; names from mdadm's maps.c `r5layout`, `r6layout`; raid10
/// as `n`/`f`/`o` + copies per drivers/md/raid10.c `setup_geo`; raid0 only with the
/// RAID0_LAYOUT feature).
fn layout_name(level: &str, layout: u32, features: &[&str]) -> Option<String> {
    const R5: [(u32, &str); 10] = [
        (0, "left-asymmetric"),
        (1, "right-asymmetric"),
        (2, "left-symmetric"),
        (3, "right-symmetric"),
        (4, "parity-first"),
        (5, "parity-last"),
        (8, "ddf-zero-restart"),
        (9, "ddf-N-restart"),
        (10, "ddf-N-continue"),
        (16, "left-asymmetric-6"),
    ];
    const R6: [(u32, &str); 4] = [
        (17, "right-asymmetric-6"),
        (18, "left-symmetric-6"),
        (19, "right-symmetric-6"),
        (20, "parity-first-6"),
    ];
    let find = |l: u32| R5.iter().chain(R6.iter()).find(|(v, _)| *v == l);
    match level {
        "raid5" if layout < 16 => find(layout).map(|(_, n)| n.to_string()),
        "raid6" => find(layout).map(|(_, n)| n.to_string()),
        "raid10" => {
            let (near, far, offset) = (layout & 0xff, (layout >> 8) & 0xff, layout >> 16 & 1);
            match (near, far, offset) {
                (n, 1, 0) => Some(format!("n{n}")),
                (1, f, 0) => Some(format!("f{f}")),
                (1, f, 1) => Some(format!("o{f}")),
                _ => None,
            }
        }
        "raid0" if features.contains(&"raid0-layout") => match layout {
            1 => Some("original".into()),
            2 => Some("alternate".into()),
            _ => None,
        },
        _ => None,
    }
}

/// The level's name (md_p.h / mdadm's maps.c `pers`); an unknown level is an error.
fn level_name(level: i32) -> Result<&'static str, StackError> {
    Ok(match level {
        -4 => "multipath",
        -1 => "linear",
        0 => "raid0",
        1 => "raid1",
        4 => "raid4",
        5 => "raid5",
        6 => "raid6",
        10 => "raid10",
        l => {
            return Err(StackError::Bad(format!(
                "MD superblock: unknown RAID level {l}"
            )));
        }
    })
}

/// Array size from the component size, as the personalities' `*_size` functions compute it
/// (raid1.c, raid5.c, raid10.c); `None` for linear and raid0.
fn array_size(level: &str, component: u64, disks: u64, layout: u32, chunk: u64) -> Option<u64> {
    match level {
        "raid1" | "multipath" => Some(component),
        "raid4" | "raid5" => Some(component.checked_mul(disks.checked_sub(1)?)?),
        "raid6" => Some(component.checked_mul(disks.checked_sub(2)?)?),
        "raid10" => {
            let copies = u64::from(layout & 0xff) * u64::from((layout >> 8) & 0xff);
            let chunk = chunk.max(1);
            let chunks = component / chunk / u64::from((layout >> 8) & 0xff).max(1);
            Some(chunks.checked_mul(disks)? / copies.max(1) * chunk)
        }
        _ => None,
    }
}

/// mdadm's UUID form: 16 bytes as four groups of 8 hex digits joined by ':'.
fn uuid_text(b: &[u8]) -> String {
    let hex: Vec<String> = b
        .chunks(4)
        .map(|w| w.iter().map(|x| format!("{x:02x}")).collect())
        .collect();
    hex.join(":")
}

/// The MD superblock on a device of `size` bytes, or `None` if it carries none.
///
/// Looks where each version keeps it (md_p.h; mdadm super1.c `load_super1`): 1.0 at
/// end − 8 KiB rounded down to 4 KiB, 1.1 at 0, 1.2 at 4 KiB, 0.90 in the last 64 KiB-aligned
/// 64 KiB. Where several are valid (stale ones after a re-create), the newest `ctime` wins, as
/// mdadm decides; a superblock with a bad checksum or impossible fields is an error only when
/// no valid one is found.
pub fn read(dev: &File, size: u64) -> Result<Option<MdMember>, StackError> {
    let sectors = size / 512;
    let mut found: Vec<Result<MdMember, StackError>> = Vec::new();
    let v1_places = [
        ("1.0", sectors.checked_sub(16).map(|s| s & !7)),
        ("1.1", Some(0)),
        ("1.2", Some(8)),
    ];
    for (version, at) in v1_places {
        if let Some(at) = at.filter(|at| (at + 8) <= sectors)
            && let Some(r) = v1::read(dev, at, sectors, version).transpose()
        {
            found.push(r);
        }
    }
    if let Some(at) = (sectors & !127).checked_sub(128)
        && let Some(r) = v090::read(dev, at).transpose()
    {
        found.push(r);
    }
    let mut best: Option<MdMember> = None;
    let mut first_err = None;
    for r in found {
        match r {
            Ok(m) if best.as_ref().is_none_or(|b| m.ctime > b.ctime) => best = Some(m),
            Ok(_) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (best, first_err) {
        (Some(m), _) => Ok(Some(m)),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(None),
    }
}

/// Roles `0..raid_disks` that no entry of `roles` holds.
fn missing(roles: impl Iterator<Item = u32> + Clone, raid_disks: u32) -> Vec<u32> {
    (0..raid_disks)
        .filter(|r| !roles.clone().any(|x| x == *r))
        .collect()
}

#[cfg(test)]
mod tests;
