//! Finding the boot medium by the image id: every block device (CD-ROMs first, then disks,
//! then partitions) is mounted read-only as ISO 9660 and checked for `/osimage/id-<hex>`; a
//! device holding another filesystem is searched for `*.iso` files (top level and one level
//! down), each tried through a read-only loop device. Devices appear asynchronously (USB), so
//! the search repeats until the deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::console::Console;
use super::sys;

/// The medium found, or the URL the image is read from.
#[derive(Clone)]
pub struct Medium {
    /// The device mounted (`/dev/sr0`, `/dev/loop0`), or the URL without its query.
    pub device: String,
    /// How it was found (`iso9660 on sr0`, `file /images/x.iso on sdb1`, `osimage.source`).
    pub how: String,
    /// Where the medium is mounted; for a URL a directory that does not exist (so a keyfile
    /// or overlay "on the medium" is not found there).
    pub mount_point: PathBuf,
    /// Whole-disk names the medium lives on: never restore targets.
    pub disks: Vec<String>,
    /// The image over the network (`osimage.source=`).
    pub remote: Option<Arc<super::source::RemoteImage>>,
}

/// Where a URL medium "is mounted": nothing is there.
pub const NO_MEDIUM_DIR: &str = "/run/osimage/no-medium";

const MEDIUM_DIR: &str = "/run/osimage/medium";
const HOST_DIR: &str = "/run/osimage/host";

/// Looks for the medium of image `id` until `wait` has passed.
pub fn find(id: &str, wait: Duration, con: &Console) -> Option<Medium> {
    let start = Instant::now();
    let mut told = false;
    loop {
        if let Some(m) = scan(id) {
            return Some(m);
        }
        if start.elapsed() >= wait {
            return None;
        }
        if !told {
            con.line("osimage: boot medium not seen yet, waiting for devices...");
            told = true;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn scan(id: &str) -> Option<Medium> {
    let marker = format!("osimage/id-{id}");
    let medium_dir = Path::new(MEDIUM_DIR);
    std::fs::create_dir_all(medium_dir).ok()?;
    let names = block_devices();
    for name in &names {
        let dev = format!("/dev/{name}");
        if sys::mount_ro(&dev, medium_dir, "iso9660", "").is_ok() {
            if medium_dir.join(&marker).exists() {
                return Some(Medium {
                    device: dev,
                    how: format!("iso9660 on {name}"),
                    mount_point: medium_dir.to_path_buf(),
                    disks: vec![whole_disk(name)],
                    remote: None,
                });
            }
            sys::umount(medium_dir);
        }
    }
    // The ISO as a file on a disk.
    for name in names.iter().filter(|n| !n.starts_with("sr")) {
        if let Some(m) = iso_file_on(name, &marker) {
            return Some(m);
        }
    }
    None
}

/// Mounts `name` read-only with any disk filesystem and tries its ISO files.
fn iso_file_on(name: &str, marker: &str) -> Option<Medium> {
    let host_dir = Path::new(HOST_DIR).join(name);
    std::fs::create_dir_all(&host_dir).ok()?;
    let dev = format!("/dev/{name}");
    // Options that keep a read-only mount from writing (no journal replay).
    let mounted = [
        ("ext4", "noload"),
        ("vfat", ""),
        ("exfat", ""),
        ("xfs", "norecovery"),
        ("btrfs", "nologreplay"),
        ("ntfs3", ""),
    ]
    .iter()
    .any(|(fs, opts)| sys::mount_ro(&dev, &host_dir, fs, opts).is_ok());
    if !mounted {
        return None;
    }
    let medium_dir = Path::new(MEDIUM_DIR);
    for iso in iso_files(&host_dir) {
        let Ok(loopdev) = sys::loop_attach(&iso) else {
            continue;
        };
        if sys::mount_ro(&loopdev, medium_dir, "iso9660", "").is_ok() {
            if medium_dir.join(marker).exists() {
                let rel = iso
                    .strip_prefix(&host_dir)
                    .unwrap_or(&iso)
                    .display()
                    .to_string();
                return Some(Medium {
                    device: loopdev,
                    how: format!("file /{rel} on {name}"),
                    mount_point: medium_dir.to_path_buf(),
                    disks: vec![whole_disk(name)],
                    remote: None,
                });
            }
            sys::umount(medium_dir);
        }
        sys::loop_detach(&loopdev);
    }
    sys::umount(&host_dir);
    None
}

/// `*.iso` files at the top of `dir` and one level down.
fn iso_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let list = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let is_iso = |p: &Path| {
        p.extension().is_some_and(|e| e.eq_ignore_ascii_case("iso"))
            && std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
    };
    for p in list(dir) {
        if is_iso(&p) {
            out.push(p);
        } else if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            out.extend(list(&p).into_iter().filter(|q| is_iso(q)));
        }
    }
    out
}

/// Block devices from `/proc/partitions`: CD-ROMs, then whole disks, then partitions;
/// RAM disks and loop devices left out.
pub fn block_devices() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/partitions").unwrap_or_default();
    let mut names: Vec<String> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter(|n| !["ram", "zram", "loop"].iter().any(|p| n.starts_with(p)))
        .map(str::to_string)
        .collect();
    let rank = |n: &String| {
        if n.starts_with("sr") {
            0
        } else if Path::new(&format!("/sys/block/{n}")).exists() {
            1
        } else {
            2
        }
    };
    names.sort_by_key(|n| (rank(n), n.clone()));
    names
}

/// The whole disk a block device belongs to (`sdb1` → `sdb`, `nvme0n1p2` → `nvme0n1`).
pub fn whole_disk(name: &str) -> String {
    let sys = PathBuf::from(format!("/sys/class/block/{name}"));
    let parent = sys
        .join("partition")
        .exists()
        .then(|| std::fs::canonicalize(&sys).ok())
        .flatten()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    parent
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .unwrap_or_else(|| name.to_string())
}

/// `osimage.overlay=DEVICE[:DIR]`: DEVICE (a USB stick, a second disk) mounted read-only at
/// `/run/osimage-overlay`, and DIR on it (default `overlay`), which must be a directory. It
/// stays mounted: the restore copies it last, then the machine powers off.
pub fn overlay_from(spec: &str) -> Result<PathBuf, String> {
    let (dev, dir) = spec.split_once(':').unwrap_or((spec, "overlay"));
    if !dev.starts_with("/dev/") {
        return Err(format!(
            "overlay-unreadable {spec}: expected DEVICE[:DIR], e.g. /dev/sdc1:/site-a"
        ));
    }
    let mnt = PathBuf::from("/run/osimage-overlay");
    std::fs::create_dir_all(&mnt).map_err(|e| format!("overlay-unreadable {spec}: {e}"))?;
    super::sys::mount_any_ro(dev, &mnt)
        .map_err(|e| format!("overlay-unreadable cannot mount {dev}: {e}"))?;
    let path = mnt.join(dir.trim_start_matches('/'));
    if !path.is_dir() {
        super::sys::umount(&mnt);
        return Err(format!(
            "overlay-unreadable {spec}: {dir} is not a directory on {dev}"
        ));
    }
    Ok(path)
}
