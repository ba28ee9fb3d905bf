//! Refreshes on a filesystem that shares extents (issue #6, docs/REFRESH.md "Shared
//! extents"): on XFS (a loop device, reflink on, as mkfs.xfs makes it), a refresh of an
//! unchanged tree, and one after a few files changed, take little new space: the blocks they
//! carry over from the base land where they were and the kernel shares them instead of
//! copying them. Each image still verifies on its own.

use crate::common;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use common::loopdev::{Xfs, run};

/// docs/REFRESH.md, racily clean files: wait so the tree's files are reusable next time.
const SETTLE: Duration = Duration::from_millis(2100);

/// Bytes in use on the filesystem mounted at `mnt`, after a sync.
fn used(mnt: &Path) -> u64 {
    let mnt = mnt.to_str().expect("utf-8 path");
    run("sync", &["-f", mnt]);
    let n: Vec<u64> = run("stat", &["-f", "-c", "%b %f %S", mnt])
        .split_whitespace()
        .map(|w| w.parse().expect("stat -f numbers"))
        .collect();
    (n[0] - n[1]) * n[2]
}

/// Incompressible bytes (an xorshift stream), so the image is as large as the tree.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    common::fixture::xorshift(seed * 2 + 1, len)
}

fn capture(tree: &Path, out: &Path, base: Option<&Path>) {
    let mut args: Vec<&OsStr> = vec![
        "capture".as_ref(),
        tree.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-q".as_ref(),
    ];
    if let Some(b) = base {
        args.extend(["--base".as_ref(), b.as_os_str()]);
    }
    let r = common::osimage(args);
    assert_eq!(r.code, 0, "{}", r.describe());
    let v = common::osimage(["verify".as_ref(), out.as_os_str(), "-q".as_ref()]);
    assert_eq!(v.code, 0, "{}", v.describe());
}

#[test]
fn refreshes_on_xfs_share_the_blocks_they_carry_over() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    common::need(&[
        ("mkfs.xfs", "xfsprogs"),
        ("losetup", "mount"),
        ("stat", "coreutils"),
    ]);
    let dir = common::scratch();
    let fs = Xfs::new(dir.path());
    let mnt = fs.mnt().to_path_buf();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    for i in 0..24u64 {
        std::fs::write(tree.join(format!("f{i:02}")), noise(i + 1, 2 << 20)).expect("write");
    }
    std::thread::sleep(SETTLE);
    let base = mnt.join("base.oimg");
    capture(&tree, &base, None);
    let image = std::fs::metadata(&base).expect("stat").len();
    assert!(
        image > 48 << 20,
        "the image holds the 48 MiB of noise: {image}"
    );

    let before = used(&mnt);
    let same = mnt.join("same.oimg");
    capture(&tree, &same, Some(&base));
    let grew = used(&mnt) - before;
    assert!(
        grew < image / 20,
        "an unchanged refresh took {grew} new bytes for a {image}-byte image"
    );

    // 64 bytes overwritten in the middle of two files: their new blocks are written after
    // the carried ones, which stay where they were.
    for name in ["f03", "f17"] {
        let p = tree.join(name);
        let mut bytes = std::fs::read(&p).expect("read");
        bytes[1 << 20..(1 << 20) + 64].copy_from_slice(&[0x5a; 64]);
        std::fs::write(&p, bytes).expect("write");
    }
    let before = used(&mnt);
    let changed = mnt.join("changed.oimg");
    capture(&tree, &changed, Some(&same));
    let grew = used(&mnt) - before;
    assert!(
        grew < image / 5,
        "a refresh after two changed files took {grew} new bytes for a {image}-byte image"
    );
}
