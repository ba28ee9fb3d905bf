//! Filesystems mounted under ROOT (DESIGN.md "Scope of a capture"): every local, block-backed
//! one is captured; `--one-file-system` stays on ROOT's own, still recording the mount point.
//!
//! Needs root, `mkfs.ext4` (Debian package e2fsprogs), `mount` (util-linux) and a free loop
//! device.

use crate::common;

use common::compare::{Options, assert_no_differences, diff_trees};
use common::osimage;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An ext4 filesystem in a file, loop-mounted at `at`; unmounted on drop.
struct Mounted {
    at: PathBuf,
}

impl Mounted {
    fn ext4(image: &Path, at: &Path) -> Mounted {
        common::require_root();
        common::need(&[("mkfs.ext4", "e2fsprogs"), ("mount", "mount")]);
        std::fs::File::create(image)
            .and_then(|f| f.set_len(32 << 20))
            .expect("image file");
        let ok = |what: &str, out: std::io::Result<std::process::Output>, pkg: &str| {
            let out = out.unwrap_or_else(|e| panic!("{what}: {e} (Debian package {pkg})"));
            assert!(
                out.status.success(),
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(image)
            .output();
        ok("mkfs.ext4", mkfs, "e2fsprogs");
        std::fs::create_dir_all(at).expect("mount point");
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(at)
            .output();
        ok("mount -o loop (needs a free loop device)", mount, "mount");
        Mounted {
            at: at.to_path_buf(),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

fn listing(image: &Path) -> Vec<String> {
    let out = osimage([OsStr::new("list"), image.as_os_str()])
        .ok()
        .stdout_str();
    out.lines().map(str::to_string).collect()
}

#[test]
fn filesystems_mounted_under_root_are_captured_unless_one_file_system() {
    let _disks = common::loop_devices(module_path!());
    let dir = common::scratch();
    let root = dir.path().join("src");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/on-root.txt"), b"root fs\n").expect("write");
    let m = Mounted::ext4(&dir.path().join("inner.ext4"), &root.join("mnt/inner"));
    std::fs::write(m.at.join("on-inner.txt"), b"inner fs\n").expect("write");

    let all = dir.path().join("all.oimg");
    common::capture(&root, &all, &[]);
    let list = listing(&all);
    assert!(
        list.contains(&"/mnt/inner/on-inner.txt".to_string()),
        "{list:#?}"
    );
    let out = dir.path().join("out");
    common::extract(&all, &out, &[]).ok();
    let diffs = diff_trees(&root, &out, Options::default());
    assert_no_differences(&diffs, "a tree spanning two filesystems");

    let one = dir.path().join("one.oimg");
    common::capture(&root, &one, &["--one-file-system"]);
    let list = listing(&one);
    assert!(list.contains(&"/etc/on-root.txt".to_string()), "{list:#?}");
    assert!(
        list.contains(&"/mnt/inner".to_string()),
        "mount point recorded: {list:#?}"
    );
    assert!(
        !list.iter().any(|l| l.starts_with("/mnt/inner/")),
        "--one-file-system descended into the mount: {list:#?}"
    );
    drop(m);
}

/// Issue #19 "Bad input and faults": a system whose layout cannot be recreated (here its
/// fstab needs a /data no device of this machine holds) is refused before anything is
/// written, naming why and `--files-only`; with `--files-only` it is captured, with the
/// reason as a warning.
#[test]
fn a_system_that_cannot_come_back_is_refused_unless_files_only() {
    let _disks = common::loop_devices(module_path!());
    let dir = common::scratch();
    let root = dir.path().join("sys");
    let m = Mounted::ext4(&dir.path().join("root.ext4"), &root);
    std::fs::create_dir_all(m.at.join("etc")).expect("mkdir");
    let dev = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(4).map(Path::new) == Some(m.at.as_path()))
        .and_then(|f| {
            let dash = f.iter().position(|w| *w == "-")?;
            f.get(dash + 2).map(|s| s.to_string())
        })
        .expect("the loop device under the root");
    std::fs::write(
        m.at.join("etc/fstab"),
        format!(
            "{dev} / ext4 defaults 0 1\nUUID=0000dead-0000-4000-8000-000000000000 /data ext4 \
             defaults 0 2\n"
        ),
    )
    .expect("fstab");
    let out = dir.path().join("sys.oimg");
    let run = osimage([
        OsStr::new("capture"),
        m.at.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
    .fails();
    assert!(
        run.stderr.contains("cannot be restored to bare metal")
            && run.stderr.contains("/data")
            && run.stderr.contains("matches no block device")
            && run.stderr.contains("--files-only"),
        "{}",
        run.describe()
    );
    assert!(!out.exists(), "nothing is written");
    // A disk mounted under /run (where a backup disk or USB stick is) is no filesystem of
    // the system: not in the layout.
    let usb = Mounted::ext4(&dir.path().join("usb.ext4"), &m.at.join("run/usb"));
    let run = osimage([
        OsStr::new("capture"),
        m.at.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
        OsStr::new("--files-only"),
    ])
    .ok();
    assert!(
        run.stderr.contains("not restorable to bare metal") && run.stderr.contains("/data"),
        "{}",
        run.describe()
    );
    assert!(out.exists());
    let info = osimage([OsStr::new("info"), OsStr::new("--json"), out.as_os_str()]).ok();
    let info: serde_json::Value = serde_json::from_str(&info.stdout_str()).expect("info --json");
    let recorded: Vec<&str> = info["layout"]["filesystems"]
        .as_array()
        .expect("layout filesystems")
        .iter()
        .filter_map(|f| f["mount_point"].as_str())
        .collect();
    assert_eq!(recorded, ["/"], "{:#}", info["layout"]);
    drop(usb);
}
