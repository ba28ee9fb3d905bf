//! `capture --snapshot` (issue #6, docs/REFRESH.md "Point-in-time images"): a btrfs root is
//! captured from a read-only snapshot that is gone afterwards, also when the capture fails;
//! the image records the origin filesystem, so a refresh of it reuses every file; a root on
//! neither btrfs nor LVM is a clear error.
//!
//! btrfs runs on a loop device (root, btrfs-progs). LVM cannot be tested on these machines:
//! their kernel has no device-mapper (docs/REFRESH.md says so).

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::compare::{Options, assert_no_differences, diff_trees};
use common::osimage;

/// docs/REFRESH.md, racily clean files: wait so the tree's files are reusable next time.
const SETTLE: Duration = Duration::from_millis(2100);

fn run(cmd: &str, args: &[&OsStr]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd} (see .ci/apt-packages): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A btrfs filesystem on a loop device, mounted; unmounted and detached on drop.
struct Btrfs {
    dev: String,
    mnt: PathBuf,
}

impl Btrfs {
    fn new(dir: &Path) -> Btrfs {
        common::require_root();
        let img = dir.join("btrfs.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(256 << 20))
            .expect("image file");
        let dev = run(
            "losetup",
            &["-f".as_ref(), "--show".as_ref(), img.as_os_str()],
        )
        .trim()
        .to_string();
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        let fs = Btrfs { dev, mnt };
        run("mkfs.btrfs", &["-q".as_ref(), fs.dev.as_ref()]);
        run("mount", &[fs.dev.as_ref(), fs.mnt.as_os_str()]);
        fs
    }

    /// A new subvolume at the top level.
    fn subvolume(&self, name: &str) -> PathBuf {
        let p = self.mnt.join(name);
        run(
            "btrfs",
            &["subvolume".as_ref(), "create".as_ref(), p.as_os_str()],
        );
        p
    }

    /// The snapshots osimage left on it.
    fn leftover_snapshots(&self) -> Vec<String> {
        run(
            "btrfs",
            &["subvolume".as_ref(), "list".as_ref(), self.mnt.as_os_str()],
        )
        .lines()
        .filter(|l| l.contains("osimage"))
        .map(str::to_string)
        .collect()
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).output();
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
    }
}

/// Mount points osimage made for a snapshot that are still there.
fn leftover_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains("osimage-snapshot-"))
        .map(str::to_string)
        .collect()
}

fn tree(root: &Path) {
    for (p, body) in [
        ("etc/hostname", b"snap\n".to_vec()),
        ("usr/lib/data", common::fixture::text(3, 200_000)),
        ("var/log/x", b"log".to_vec()),
    ] {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }
}

fn snapshot_capture(root: &Path, image: &Path, base: Option<&Path>) -> common::Run {
    let mut a: Vec<&OsStr> = vec![
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
        "--snapshot".as_ref(),
        "-v".as_ref(),
    ];
    if let Some(b) = base {
        a.extend(["--base".as_ref(), b.as_os_str()]);
    }
    osimage(a)
}

#[test]
fn a_btrfs_root_is_captured_from_a_snapshot_that_is_removed_afterwards() {
    let _disks = common::loop_devices(module_path!());
    let scratch = common::scratch();
    let fs = Btrfs::new(scratch.path());
    // ROOT is a subvolume (as / is in most btrfs installs); the snapshot is made beside it,
    // so the live ROOT is not touched at all.
    let root = fs.subvolume("@root");
    tree(&root);
    std::thread::sleep(SETTLE);

    let first = scratch.path().join("first.oimg");
    snapshot_capture(&root, &first, None)
        .ok()
        .mentions(b"capturing from btrfs snapshot");
    assert_eq!(fs.leftover_snapshots(), Vec::<String>::new());
    assert!(leftover_mounts().is_empty(), "{:?}", leftover_mounts());
    let out = scratch.path().join("out");
    common::extract(&first, &out, &[]).ok();
    assert_no_differences(&diff_trees(&root, &out, Options::default()), "snapshot");

    // The image names the origin filesystem, not the snapshot: a refresh from a new snapshot
    // finds every file unchanged.
    let info = common::info_json(&first);
    let text = info.to_string();
    assert!(text.contains(&format!("\"{}\"", fs.dev)), "{info:#}");
    let second = scratch.path().join("second.oimg");
    snapshot_capture(&root, &second, Some(&first)).ok();
    let l = &common::info_json(&second)["lineage"];
    assert_eq!(l["files_read"].as_u64(), Some(0), "{l:#}");
    assert_eq!(l["files_reused"].as_u64(), Some(3), "{l:#}");

    // A capture that fails after the snapshot was made removes it too.
    let bad_kernel = osimage([
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        scratch.path().join("y.iso").as_os_str(),
        "--kernel".as_ref(),
        "/nonexistent/vmlinuz".as_ref(),
        "--snapshot".as_ref(),
    ] as [&OsStr; 7]);
    bad_kernel.fails().mentions(b"/nonexistent/vmlinuz");
    assert_eq!(fs.leftover_snapshots(), Vec::<String>::new());
    assert!(leftover_mounts().is_empty(), "{:?}", leftover_mounts());
}

#[test]
fn a_root_on_neither_btrfs_nor_lvm_cannot_be_snapshotted() {
    let _disks = common::loop_devices(module_path!());
    let scratch = common::scratch();
    let root = scratch.path().join("tree");
    tree(&root);
    snapshot_capture(&root, &scratch.path().join("x.oimg"), None)
        .fails()
        .mentions(b"snapshots need btrfs or an LVM logical volume");
    assert!(!scratch.path().join("x.oimg").exists());
}
