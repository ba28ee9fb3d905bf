//! LVM: `lvcreate --snapshot` of the logical volume ROOT's filesystem is on, mounted
//! read-only at a temporary directory. The snapshot stays writable at the block level so the
//! kernel can replay the filesystem's journal when mounting it (a clean point-in-time view:
//! dm suspends and freezes the filesystem while the snapshot is made). A classic snapshot gets
//! a copy-on-write area of 20% of the origin from the volume group's free space, or all that
//! space when less is free (said in the capture's note); a thin one needs none.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountFlags, mount};

use super::{Cleanup, SnapshotError, Undo, suffix, tool};
use crate::format::manifest::CapturedFs;

/// A logical volume.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Lv {
    vg: String,
    lv: String,
    thin: bool,
}

/// The logical volume behind a mount source, or `None` when it is not one.
pub(super) fn origin(source: &str) -> Result<Option<Lv>, SnapshotError> {
    if !source.starts_with("/dev/") {
        return Ok(None);
    }
    let out = Command::new("lvs")
        .args([
            "--noheadings",
            "--separator",
            "|",
            "-o",
            "vg_name,lv_name,lv_layout",
            source,
        ])
        .output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if source.starts_with("/dev/mapper/") || source.starts_with("/dev/dm-") {
                Err(SnapshotError::Failed(format!(
                    "{source} looks like a device-mapper volume but lvs is not installed \
                     (Debian package lvm2)"
                )))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(SnapshotError::Failed(format!("cannot run lvs: {e}"))),
        // lvs refuses a device that is not a logical volume.
        Ok(o) if !o.status.success() => Ok(None),
        Ok(o) => Ok(parse_lvs(&String::from_utf8_lossy(&o.stdout))),
    }
}

/// `  vg|lv|linear` (or `thin,sparse` for a thin volume).
fn parse_lvs(text: &str) -> Option<Lv> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut f = line.split('|');
    let (vg, lv, layout) = (f.next()?, f.next()?, f.next().unwrap_or(""));
    if vg.is_empty() || lv.is_empty() {
        return None;
    }
    Some(Lv {
        vg: vg.to_string(),
        lv: lv.to_string(),
        thin: layout.split(',').any(|l| l == "thin"),
    })
}

/// Snapshots `lv`, mounts the snapshot read-only; returns its view of `root`.
pub(super) fn snapshot(
    lv: &Lv,
    root: &Path,
    origin: &CapturedFs,
    c: &mut Cleanup,
) -> Result<(PathBuf, String), SnapshotError> {
    let fail = SnapshotError::Failed;
    let name = format!("osimage-snap-{}", suffix());
    let mut cmd = Command::new("lvcreate");
    cmd.args(["--snapshot", "--yes", "--name", &name]);
    let mut cow_note = String::new();
    if lv.thin {
        // Thin snapshots skip activation by default.
        cmd.args(["--setactivationskip", "n"]);
    } else {
        let space = cow_space(lv)?;
        let cow = space.cow_bytes().ok_or_else(|| {
            fail(format!(
                "volume group {} has no free extents for a snapshot of {}/{} (its copy-on-write \
                 area; 20% of the volume, {} MiB, is plenty): free some space (e.g. shrink or \
                 remove a logical volume, or vgextend) or capture without --snapshot",
                lv.vg,
                lv.vg,
                lv.lv,
                space.origin_bytes / 5 >> 20
            ))
        })?;
        if cow < space.origin_bytes / 5 {
            cow_note = format!(
                "; copy-on-write area {} MiB, all the volume group's free space (a capture of a \
                 busy system that rewrites more than that makes the snapshot invalid and fails)",
                cow >> 20
            );
        }
        cmd.args(["--size", &format!("{cow}b")]);
    }
    cmd.arg(format!("{}/{}", lv.vg, lv.lv));
    tool(&mut cmd, "lvm2").map_err(fail)?;
    let full = format!("{}/{name}", lv.vg);
    c.snapshot_made(Undo::RemoveLv(full.clone()));
    let dev = tool(
        Command::new("lvs").args(["--noheadings", "-o", "lv_dm_path", &full]),
        "lvm2",
    )
    .map_err(fail)?
    .trim()
    .to_string();
    let at = c.temp_dir("osimage-snapshot-lv-")?;
    mount(
        dev.as_str(),
        &at,
        origin.fstype.as_str(),
        MountFlags::RDONLY,
        mount_options(&origin.fstype),
    )
    .map_err(|e| {
        fail(format!(
            "cannot mount snapshot {dev} ({}) at {}: {e}",
            origin.fstype,
            at.display()
        ))
    })?;
    c.mounted(&at);
    // Where ROOT is in the snapshot's filesystem: ROOT's path below its mount point.
    let mount_point = mount_point_of(root);
    let rel = root.strip_prefix(&mount_point).unwrap_or(Path::new(""));
    Ok((
        at.join(rel),
        format!("LVM snapshot {full} of {}/{}{cow_note}", lv.vg, lv.lv),
    ))
}

/// The origin's size and its volume group's free space, in bytes.
struct CowSpace {
    origin_bytes: u64,
    vg_free_bytes: u64,
}

impl CowSpace {
    /// A classic snapshot's copy-on-write area: 20% of the origin (whole extents are LVM's
    /// business: it rounds up), or the volume group's free space when that is less; `None`
    /// when nothing is free.
    fn cow_bytes(&self) -> Option<u64> {
        let want = (self.origin_bytes / 5).max(1);
        Some(want.min(self.vg_free_bytes)).filter(|&b| b > 0)
    }
}

/// Reads `lv`'s size and its volume group's free space (`lvs`, in bytes).
fn cow_space(lv: &Lv) -> Result<CowSpace, SnapshotError> {
    let full = format!("{}/{}", lv.vg, lv.lv);
    let out = tool(
        Command::new("lvs").args([
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "--separator",
            "|",
            "-o",
            "lv_size,vg_free",
            &full,
        ]),
        "lvm2",
    )
    .map_err(SnapshotError::Failed)?;
    parse_sizes(&out).ok_or_else(|| {
        SnapshotError::Failed(format!(
            "lvs printed no size for {full}: {:?}",
            out.trim()
        ))
    })
}

/// `  2684354560|67108864` → origin and free bytes.
fn parse_sizes(text: &str) -> Option<CowSpace> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let (a, b) = line.split_once('|')?;
    Some(CowSpace {
        origin_bytes: a.trim().parse().ok()?,
        vg_free_bytes: b.trim().parse().ok()?,
    })
}

/// xfs refuses a second filesystem with the same UUID mounted at once.
fn mount_options(fstype: &str) -> Option<&'static std::ffi::CStr> {
    match fstype {
        "xfs" => Some(c"nouuid"),
        _ => None,
    }
}

/// The mount point of the filesystem holding `path`: the highest ancestor on the same device.
fn mount_point_of(path: &Path) -> PathBuf {
    let dev = |p: &Path| rustix::fs::stat(p).ok().map(|s| s.st_dev);
    let mine = dev(path);
    let mut at = path;
    while let Some(p) = at.parent() {
        if dev(p) != mine {
            break;
        }
        at = p;
    }
    at.to_path_buf()
}

/// `lvremove` the snapshot.
pub(super) fn remove(full: &str) -> Result<String, String> {
    tool(
        Command::new("lvremove").args(["--force", "--yes", full]),
        "lvm2",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvs_lines_name_the_volume_and_its_kind() {
        assert_eq!(
            parse_lvs("  vg0|root|linear\n"),
            Some(Lv {
                vg: "vg0".into(),
                lv: "root".into(),
                thin: false
            })
        );
        assert!(parse_lvs("  data|srv|thin,sparse\n").is_some_and(|l| l.thin));
        assert_eq!(parse_lvs("\n"), None);
        assert_eq!(parse_lvs("  |x|linear"), None);
        assert_eq!(mount_options("xfs"), Some(c"nouuid"));
        assert_eq!(mount_options("ext4"), None);
    }

    #[test]
    fn the_copy_on_write_area_is_a_fifth_of_the_origin_or_what_is_free() {
        let gib = 1u64 << 30;
        let sizes = parse_sizes(&format!("  {}|{}\n", 10 * gib, 5 * gib)).unwrap();
        assert_eq!(sizes.cow_bytes(), Some(2 * gib));
        let tight = parse_sizes("  2684354560|67108864\n").unwrap();
        assert_eq!(tight.origin_bytes, 2684354560);
        assert_eq!(tight.cow_bytes(), Some(64 << 20));
        assert_eq!(parse_sizes(" 2684354560|0").unwrap().cow_bytes(), None);
        assert!(parse_sizes("2684354560").is_none());
        assert!(parse_sizes(" x|1").is_none());
    }
}
