//! A running array as sysfs shows it (Documentation/admin-guide/md.rst, "MD devices in
//! sysfs"): `/sys/class/block/mdN/md/` and one `dev-XXX/` directory per member.

use std::io;
use std::path::Path;

/// The state of a running MD array.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MdArrayState {
    /// `md/level`: "raid1", "raid0", "linear", …
    pub level: String,
    /// `md/metadata_version`: "1.2", "0.90", "external:…", "none".
    pub metadata_version: String,
    /// `md/chunk_size`, in bytes (0 where the level has none).
    pub chunk_size_bytes: u64,
    /// `md/layout`.
    pub layout: Option<u32>,
    /// `md/raid_disks` (during a reshape sysfs shows "new (old)"; this is the new count).
    pub raid_disks: u32,
    /// `md/array_state`: "clean", "active", "readonly", "inactive", …
    pub array_state: String,
    /// `md/degraded`: members missing (0 for levels without redundancy, which lack the file).
    pub degraded: u32,
    /// `md/sync_action`: "idle", "resync", "recover", "check", "reshape", … (redundant levels).
    pub sync_action: Option<String>,
    /// `md/uuid` (kernels since 5.14 have it): `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: Option<String>,
    /// `md/component_size`, in KiB.
    pub component_size_kib: Option<u64>,
    /// `md/bitmap/location`: "none", "file", or the offset from the superblock ("+8").
    pub bitmap_location: Option<String>,
    /// The members, in slot order, spares and faulty devices (no slot) last.
    pub members: Vec<MdSysfsMember>,
}

/// One `md/dev-XXX/` directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MdSysfsMember {
    /// The block device (`block` link's target name; the directory's name without `dev-`
    /// when the link cannot be read).
    pub name: String,
    /// `slot`: the role, `None` for "none" (a spare or a faulty device).
    pub slot: Option<u32>,
    /// `state`, split at commas: "in_sync", "faulty", "spare", "write_mostly", "journal", …
    pub state: Vec<String>,
    /// `offset`: where the data starts on the member, in sectors.
    pub offset_sectors: Option<u64>,
    /// `size`: KiB of the member the array uses.
    pub size_kib: Option<u64>,
}

fn text(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The first whitespace-separated number of a file ("4 (6)" during a reshape reads 4).
fn number<T: std::str::FromStr>(p: &Path) -> Option<T> {
    text(p)?.split_whitespace().next()?.parse().ok()
}

fn required(dir: &Path, name: &str) -> io::Result<String> {
    let p = dir.join(name);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
}

/// The array under `dir` (`/sys/class/block/md0`, or a test tree shaped like it). `md/level`,
/// `md/metadata_version`, `md/raid_disks` and `md/array_state` must be readable; the rest is
/// what the kernel and level provide.
pub fn from_sysfs(dir: &Path) -> io::Result<MdArrayState> {
    let md = dir.join("md");
    let raid_disks = required(&md, "raid_disks")?;
    let raid_disks = raid_disks
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: raid_disks {raid_disks:?}", md.display()),
            )
        })?;
    let mut members = Vec::new();
    for entry in std::fs::read_dir(&md)? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(short) = file_name.strip_prefix("dev-") {
            members.push(member(&entry.path(), short));
        }
    }
    members.sort_by(|a, b| {
        (a.slot.is_none(), a.slot, &a.name).cmp(&(b.slot.is_none(), b.slot, &b.name))
    });
    Ok(MdArrayState {
        level: required(&md, "level")?,
        metadata_version: required(&md, "metadata_version")?,
        chunk_size_bytes: number(&md.join("chunk_size")).unwrap_or(0),
        layout: number(&md.join("layout")),
        raid_disks,
        array_state: required(&md, "array_state")?,
        degraded: number(&md.join("degraded")).unwrap_or(0),
        sync_action: text(&md.join("sync_action")),
        uuid: text(&md.join("uuid")),
        component_size_kib: number(&md.join("component_size")),
        bitmap_location: text(&md.join("bitmap/location")),
        members,
    })
}

fn member(dir: &Path, short: &str) -> MdSysfsMember {
    let name = std::fs::read_link(dir.join("block"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| short.to_string());
    MdSysfsMember {
        name,
        slot: number(&dir.join("slot")),
        state: text(&dir.join("state"))
            .map(|s| {
                s.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        offset_sectors: number(&dir.join("offset")),
        size_kib: number(&dir.join("size")),
    }
}
