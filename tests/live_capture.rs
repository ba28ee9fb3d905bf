//! Capturing a live system (issue #24 items 1 and 6, DESIGN.md "Scope of a capture"):
//!
//! - a filesystem mounted under ROOT that ROOT's fstab does not mount, and that the output goes
//!   to (a USB disk at /mnt/usb receiving the image), is neither scanned nor in the layout, and
//!   the capture says so in one line; one that fstab mounts is captured as before, only the
//!   output file left out;
//! - a mount point is recorded as its own directory (mode, owner, times, xattrs of the directory
//!   under the mount), not as the root of what is mounted on it.
//!
//! Needs root, util-linux and e2fsprogs (CI has them).

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common;
use common::loopdev::{Loop, Mounted, run, sparse};
use osimage::{ScanOptions, scan};
use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, XattrFlags};

/// A whole-disk ext4 on a loop device over a sparse file in `dir`, mounted at `at`.
struct Ext4 {
    // Drops in order: the mount, then the loop device.
    mount: Mounted,
    disk: Loop,
}

impl Ext4 {
    fn new(dir: &Path, name: &str, uuid: &str, at: &Path) -> Ext4 {
        let img = dir.join(format!("{name}.img"));
        sparse(&img, 64 << 20);
        let disk = Loop::attach(&img);
        run("mkfs.ext4", &["-q", "-F", "-U", uuid, &disk.dev]);
        let mount = Mounted::new(&disk.dev, at, &[]);
        Ext4 { mount, disk }
    }
}

fn need_tools() {
    common::require_root();
    common::need_disk_tools(&[("mkfs.ext4", "e2fsprogs")]);
}

const USB_UUID: &str = "5b0e7c1a-2d3f-4e5a-8b6c-7d8e9f0a1b2c";

/// The mount points of the image's layout, and the names of its disks.
fn layout_of(image: &Path) -> (Vec<String>, Vec<String>) {
    let info = common::info_json(image);
    let strings = |key: &str, field: &str| -> Vec<String> {
        info["layout"][key]
            .as_array()
            .unwrap_or_else(|| panic!("no layout {key}: {info:#}"))
            .iter()
            .filter_map(|f| f[field].as_str().map(str::to_string))
            .collect()
    };
    (
        strings("filesystems", "mount_point"),
        strings("disks", "name"),
    )
}

fn listing(image: &Path) -> Vec<String> {
    let out = common::osimage([OsStr::new("list"), image.as_os_str()]).ok();
    out.stdout_str().lines().map(str::to_string).collect()
}

/// A system on its own ext4 (fstab mounts it at /) with a second ext4 mounted at /mnt/usb.
struct System {
    root: Ext4,
    usb: Ext4,
    _dir: tempfile::TempDir,
}

impl System {
    fn new(extra_fstab: &str) -> System {
        let dir = common::scratch();
        let root = Ext4::new(
            dir.path(),
            "root",
            "0c0ffee0-1111-4222-8333-444455556666",
            &dir.path().join("sys"),
        );
        let at = root.mount.0.clone();
        std::fs::create_dir_all(at.join("etc")).unwrap();
        std::fs::write(
            at.join("etc/fstab"),
            format!("{} / ext4 defaults 0 1\n{extra_fstab}", root.disk.dev),
        )
        .unwrap();
        std::fs::write(at.join("etc/hostname"), "live\n").unwrap();
        let usb = Ext4::new(dir.path(), "usb", USB_UUID, &at.join("mnt/usb"));
        std::fs::write(usb.mount.0.join("photo.jpg"), b"not the system's\n").unwrap();
        System {
            root,
            usb,
            _dir: dir,
        }
    }

    fn at(&self) -> &Path {
        &self.root.mount.0
    }

    fn usb_at(&self) -> &Path {
        &self.usb.mount.0
    }
}

#[test]
fn the_output_filesystem_that_fstab_does_not_mount_is_left_out_whole() {
    let _disks = common::loop_devices(module_path!());
    need_tools();
    let sys = System::new("");
    let image = sys.usb_at().join("system.oimg");
    let run = common::capture(sys.at(), &image, &[]);
    let line = format!(
        "left out {} (ext4 on {}): the output goes there and fstab does not mount it",
        sys.usb_at().display(),
        sys.usb.disk.dev
    );
    assert!(
        run.stderr.contains(&line),
        "no `{line}`: {}",
        run.describe()
    );
    // the lines shown before the capture starts name only what is taken
    let shown = format!("capturing {} (", sys.usb_at().display());
    assert!(
        !run.stderr.contains(&shown),
        "`{shown}` announced a filesystem that is left out: {}",
        run.describe()
    );
    let (filesystems, disks) = layout_of(&image);
    assert_eq!(filesystems, ["/"]);
    assert_eq!(disks, [sys.root.disk.dev.trim_start_matches("/dev/")]);
    let list = listing(&image);
    assert!(list.contains(&"/etc/hostname".to_string()), "{list:#?}");
    assert!(list.contains(&"/mnt/usb".to_string()), "{list:#?}");
    assert!(
        !list.iter().any(|p| p.starts_with("/mnt/usb/")),
        "the USB disk was walked: {list:#?}"
    );
}

#[test]
fn an_output_filesystem_that_fstab_mounts_stays_in_the_image() {
    let _disks = common::loop_devices(module_path!());
    need_tools();
    // Named by UUID at another mount point: fstab is matched by device, not only by path.
    let sys = System::new(&format!("UUID={USB_UUID} /srv ext4 defaults 0 2\n"));
    let image = sys.usb_at().join("system.oimg");
    let run = common::capture(sys.at(), &image, &[]);
    assert!(
        !run.stderr.contains("fstab does not mount it"),
        "{}",
        run.describe()
    );
    let (filesystems, disks) = layout_of(&image);
    assert_eq!(filesystems, ["/", "/srv"]);
    assert_eq!(disks.len(), 2, "{disks:?}");
    let list = listing(&image);
    assert!(
        list.contains(&"/mnt/usb/photo.jpg".to_string()),
        "{list:#?}"
    );
    assert!(
        !list.iter().any(|p| p.ends_with("system.oimg")),
        "the output captured into itself: {list:#?}"
    );
}

/// Fixed times of the directory under the mount, set last (chown and setxattr change ctime).
const A_ATIME: (i64, i64) = (1_500_000_000, 111);
const A_MTIME: (i64, i64) = (1_600_000_000, 123_456_789);

/// `dir/a`: mode 0701, owner 1234:5678, a user xattr, fixed times; a tmpfs mounted on it with
/// mode 0755, other times and a file.
fn tree_with_a_mount_point(dir: &Path) -> (PathBuf, Mounted) {
    let root = dir.join("tree");
    let a = root.join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(root.join("plain.txt"), b"on the tree's own filesystem\n").unwrap();
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o701)).unwrap();
    std::os::unix::fs::chown(&a, Some(1234), Some(5678)).unwrap();
    rustix::fs::setxattr(
        &a,
        "user.under",
        b"the directory itself",
        XattrFlags::empty(),
    )
    .unwrap();
    let ts = |(sec, nsec): (i64, i64)| Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = Timestamps {
        last_access: ts(A_ATIME),
        last_modification: ts(A_MTIME),
    };
    rustix::fs::utimensat(CWD, &a, &times, AtFlags::empty()).unwrap();
    let tmpfs = Mounted::new("tmpfs", &a, &["-t", "tmpfs", "-o", "mode=0755"]);
    std::fs::write(a.join("in-tmpfs.txt"), b"memory\n").unwrap();
    run("touch", &["-d", "@1700000000", a.to_str().unwrap()]);
    let over = std::fs::metadata(&a).unwrap();
    assert_eq!(
        (over.mode() & 0o7777, over.uid(), over.mtime()),
        (0o755, 0, 1_700_000_000),
        "the tmpfs is on top"
    );
    (root, tmpfs)
}

#[test]
fn a_mount_point_is_recorded_as_its_own_directory() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    let dir = common::scratch();
    let (root, tmpfs) = tree_with_a_mount_point(dir.path());

    let scanned = scan(&root, &ScanOptions::default()).unwrap();
    let paths: Vec<&[u8]> = scanned.entries.iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        [&b""[..], b"a", b"plain.txt"],
        "the tmpfs is not walked"
    );
    let a = &scanned.entries[1];
    assert_eq!(
        (a.meta().mode, a.meta().uid, a.meta().gid),
        (0o701, 1234, 5678),
        "{a:?}"
    );
    assert_eq!(
        (a.meta().mtime.sec, i64::from(a.meta().mtime.nsec)),
        A_MTIME
    );
    assert_eq!(
        (a.meta().atime.sec, i64::from(a.meta().atime.nsec)),
        A_ATIME
    );
    let xattrs: Vec<(&[u8], &[u8])> = a
        .xattrs()
        .iter()
        .map(|x| (&x.name[..], &x.value[..]))
        .collect();
    assert_eq!(xattrs, [(&b"user.under"[..], &b"the directory itself"[..])]);
    assert!(scanned.mount_dirs_unread.is_empty());

    // Captured and extracted, the directory comes back as it is under the mount.
    let image = dir.path().join("tree.oimg");
    common::capture(&root, &image, &[]);
    drop(tmpfs);
    let out = dir.path().join("out");
    common::extract(&image, &out, &[]).ok();
    let got = std::fs::symlink_metadata(out.join("a")).unwrap();
    let want = std::fs::symlink_metadata(root.join("a")).unwrap();
    for (what, g, w) in [
        ("mode", got.mode(), want.mode()),
        ("uid", got.uid(), want.uid()),
        ("gid", got.gid(), want.gid()),
    ] {
        assert_eq!(g, w, "{what}");
    }
    assert_eq!((got.mtime(), got.mtime_nsec()), A_MTIME);
    let mut value = vec![0u8; 64];
    let n = rustix::fs::getxattr(out.join("a"), "user.under", &mut value).unwrap();
    assert_eq!(&value[..n], b"the directory itself");
    assert!(
        common::is_empty_dir(&out.join("a")),
        "tmpfs contents left out"
    );
}

/// `CAP_SYS_ADMIN` (linux/capability.h): what mount(2) and open_tree(2) need.
const CAP_SYS_ADMIN: libc::c_ulong = 21;

#[test]
fn without_mount_privilege_a_mount_point_is_recorded_as_mounted_with_one_warning() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    let dir = common::scratch();
    let (root, tmpfs) = tree_with_a_mount_point(dir.path());
    let image = dir.path().join("tree.oimg");
    let args = [
        OsStr::new("capture"),
        root.as_os_str(),
        OsStr::new("-o"),
        image.as_os_str(),
    ];
    // Root without CAP_SYS_ADMIN: dropped from the bounding set, exec leaves it out of the
    // permitted and effective sets.
    let run = common::osimage_with(args, |cmd| {
        use std::os::unix::process::CommandExt;
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .ok();
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("mount points recorded with the metadata"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.describe());
    assert!(
        warnings[0].starts_with("warning: ")
            && warnings[0].ends_with(&format!(": {}", root.join("a").display())),
        "{}",
        run.describe()
    );
    drop(tmpfs);
    let out = dir.path().join("out");
    common::extract(&image, &out, &[]).ok();
    let got = std::fs::symlink_metadata(out.join("a")).unwrap();
    assert_eq!(
        (got.mode() & 0o7777, got.uid(), got.mtime()),
        (0o755, 0, 1_700_000_000),
        "recorded as the tmpfs on it"
    );
}
