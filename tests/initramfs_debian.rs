//! The initramfs driver check (src/restore/initramfs.rs) on a real Debian initramfs: the e2e
//! source system's (tests/e2e, built once and cached; the e2e tests share it). Needs root and
//! what the e2e source build needs.

use crate::common;
use crate::common::e2e;

use e2e::disk::{Attached, Mount};
use osimage::initramfs;

#[test]
fn debian_initramfs_lists_its_storage_drivers() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    let s = e2e::source::source();
    let disk = Attached::new(&s.disk, true);
    let dir = common::scratch();
    let root = dir.path().join("root");
    // Partition 3 is the source's ext4 root (tests/e2e/build-source.sh).
    let _m = Mount::ext4_ro(&disk.part(3), &root);
    let boot = root.join("boot");
    let images = initramfs::images(&boot, &root);
    assert_eq!(images.len(), 1, "{images:?}");
    let data = std::fs::read(&images[0].path).unwrap();
    let names = initramfs::list(&data).unwrap();
    // The main archive was decompressed: its init and the kernel modules are listed.
    assert!(names.iter().any(|n| n == "init"), "{} names", names.len());
    let modules = initramfs::modules_in(&data).unwrap();
    for m in [
        "virtio_blk",
        "virtio_scsi",
        "ahci",
        "sd_mod",
        "nvme",
        "ext4",
    ] {
        assert!(modules.contains(m), "{m} not in {modules:?}");
    }
    // What the restore decides: virtio and AHCI are there, a driver it lacks is reported.
    let needed = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let checks = initramfs::check(&boot, &root, &needed(&["virtio_blk", "ahci"]));
    assert_eq!(checks.len(), 1);
    assert!(checks[0].as_ref().unwrap().missing.is_empty(), "{checks:?}");
    let checks = initramfs::check(&boot, &root, &needed(&["ahci", "not_a_driver"]));
    assert_eq!(checks[0].as_ref().unwrap().missing, ["not_a_driver"]);
    // Built into Debian's kernel, so never "missing" though no .ko exists.
    let builtin = initramfs::builtin(&root, &images[0].version);
    assert!(!builtin.is_empty());
}
