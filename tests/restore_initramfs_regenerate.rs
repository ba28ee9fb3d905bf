//! The initramfs regeneration of a restore, for real (issue #5: "regenerate what must change
//! ... initramfs if the disk type changed and the captured initramfs lacks the driver";
//! docs/RESTORE.md phase 7). The e2e Debian tree (tests/e2e/build-source.sh, cached) with its
//! initramfs stripped of the NVMe driver is captured as a plain directory, then restored with
//! `osimage restore --default-layout --initramfs-driver nvme` onto a disk image: the restore
//! must see that the initramfs lacks `nvme`, run the restored system's own
//! `update-initramfs` chrooted, and leave an initramfs that holds it. The stripped tree is an
//! overlay over the shared cache, mounted in a private mount namespace: the cache is never
//! written and no other process sees the change. Needs root.

use crate::common;
use crate::common::e2e;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::loopdev::{Loop, MIB, Mounted, sparse};

/// The NVMe driver's module files in an initramfs listing.
fn nvme_modules(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter(|l| {
            let base = l.rsplit('/').next().unwrap_or("");
            base.starts_with("nvme.ko")
        })
        .collect()
}

/// The decompressor of an initramfs image, by its magic (the Debian tree's is gzip or zstd).
fn decompressor(image: &Path) -> &'static str {
    let bytes = std::fs::read(image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    match bytes.get(..4) {
        Some([0x1F, 0x8B, ..]) => "gzip",
        Some([0x28, 0xB5, 0x2F, 0xFD]) => "zstd",
        other => panic!(
            "{}: an initramfs neither gzip nor zstd (magic {other:02x?}): this test unpacks \
             only those",
            image.display()
        ),
    }
}

/// The paths in an initramfs (one compressed newc archive), listed by the host's cpio.
fn listing(image: &Path) -> String {
    let tool = decompressor(image);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{tool} -dc \"$0\" | cpio -t --quiet"))
        .arg(image)
        .output()
        .expect("running cpio");
    assert!(
        out.status.success(),
        "listing {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `image` without the NVMe driver's files, recompressed the same way, at `out`.
fn strip_nvme(image: &Path, out: &Path, work: &Path) {
    let tool = decompressor(image);
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    let script = format!(
        "set -e; cd \"$1\"; {tool} -dc \"$0\" | cpio -idm --quiet; \
         find . -name 'nvme.ko*' -delete; \
         find . | LC_ALL=C sort | cpio -o -H newc --quiet | {tool} -c > \"$2\""
    );
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(image)
        .arg(&unpacked)
        .arg(out)
        .status()
        .expect("running sh");
    assert!(st.success(), "stripping nvme from {}", image.display());
}

/// The tree's only kernel version (from `boot/vmlinuz-VER`).
fn kernel_version(tree: &Path) -> String {
    let boot = tree.join("boot");
    let versions: Vec<String> = std::fs::read_dir(&boot)
        .unwrap_or_else(|e| panic!("{}: {e}", boot.display()))
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("vmlinuz-").map(str::to_string)
        })
        .collect();
    assert_eq!(versions.len(), 1, "one kernel in {}", boot.display());
    versions[0].clone()
}

/// Captures `tree` with `initrd` in place of its `boot/initrd.img-VER`, through an overlay
/// mounted in a private mount namespace (`unshare -m`): the tree itself is not written.
fn capture_with_initrd(tree: &Path, initrd: &Path, version: &str, work: &Path) -> PathBuf {
    let image = work.join("stripped.oimg");
    for d in ["upper", "ovl-work", "merged"] {
        std::fs::create_dir_all(work.join(d)).expect("mkdir");
    }
    let script = "set -e; \
        mount -t overlay overlay -o \"lowerdir=$1,upperdir=$2/upper,workdir=$2/ovl-work\" \"$2/merged\"; \
        cp \"$3\" \"$2/merged/boot/initrd.img-$4\"; \
        exec \"$5\" capture -q \"$2/merged\" -o \"$6\"";
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(tree)
        .arg(work)
        .arg(initrd)
        .arg(version)
        .arg(env!("CARGO_BIN_EXE_osimage"))
        .arg(&image)
        .output()
        .expect("running unshare");
    assert!(
        out.status.success(),
        "capture of the stripped tree failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

#[test]
fn a_restore_regenerates_an_initramfs_that_lacks_the_boot_disks_driver() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    common::need(&[
        ("unshare", "util-linux"),
        ("cpio", "cpio"),
        ("gzip", "gzip"),
        ("zstd", "zstd"),
        ("mkfs.vfat", "dosfstools"),
        ("mkfs.ext4", "e2fsprogs"),
    ]);
    let tree = e2e::source::debian_tree();
    let version = kernel_version(&tree);
    let original = tree.join(format!("boot/initrd.img-{version}"));
    assert!(
        !nvme_modules(&listing(&original)).is_empty(),
        "the tree's own initramfs has no nvme.ko: nothing to strip"
    );
    let dir = common::scratch();
    let stripped = dir.path().join("initrd-without-nvme");
    strip_nvme(&original, &stripped, dir.path());
    let before = listing(&stripped);
    assert!(
        nvme_modules(&before).is_empty(),
        "nvme.ko still in the stripped initramfs"
    );
    assert!(
        before.lines().count() > 100,
        "the stripped initramfs lost more than nvme: {} paths",
        before.lines().count()
    );
    let image = capture_with_initrd(&tree, &stripped, &version, dir.path());

    let target = dir.path().join("disk.img");
    sparse(&target, 2048 * MIB);
    let started = std::time::Instant::now();
    let run = common::osimage([
        "restore".as_ref(),
        image.as_os_str(),
        "--target".as_ref(),
        target.as_os_str(),
        "--default-layout".as_ref(),
        "--initramfs-driver".as_ref(),
        "nvme".as_ref(),
    ])
    .ok();
    eprintln!(
        "restore with regeneration: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let said = run.stdout_str();
    eprintln!("{said}");
    let name = format!("initrd.img-{version}");
    let want = format!(
        "initramfs {name} lacked nvme: update-initramfs -u -k {version} ran chrooted; it now \
         holds them"
    );
    assert!(said.contains(&want), "`{want}` not in the report:\n{said}");

    // On the restored disk, read independently: the initramfs holds nvme.ko again.
    let lo = Loop::attach(&target);
    let mnt = dir.path().join("restored");
    let m = Mounted::new(&lo.part(3), &mnt, &["-o", "ro,noload"]);
    let after = listing(&mnt.join("boot").join(&name));
    let found = nvme_modules(&after);
    assert!(
        !found.is_empty(),
        "the restored initramfs still lacks nvme.ko ({} paths)",
        after.lines().count()
    );
    eprintln!("restored initramfs: {}", found.join(", "));
    drop(m);
    drop(lo);
}

/// `--initramfs-driver` takes module names only: anything else is a usage error.
#[test]
fn initramfs_driver_takes_a_module_name() {
    let _disks = common::loop_devices(module_path!());
    let dir = common::scratch();
    let image = dir.path().join("none.oimg");
    let target = dir.path().join("disk.img");
    common::osimage([
        "restore".as_ref(),
        image.as_os_str(),
        "--target".as_ref(),
        target.as_os_str(),
        "--initramfs-driver".as_ref(),
        "../nvme".as_ref(),
    ])
    .usage_error()
    .mentions(b"not a kernel module name");
}
