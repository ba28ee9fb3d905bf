//! The default layout with a real boot loader: the e2e Debian tree (debootstrapped by
//! tests/e2e/build-source.sh and cached; it has grub-pc-bin, grub-efi-amd64-bin and
//! initramfs-tools) captured as a plain directory and restored with `--default-layout`. The
//! restore must run the tree's own `grub-install --target=i386-pc` and `grub-mkconfig` in a
//! chroot: GRUB's boot code lands in the MBR and its core image in the BIOS boot partition,
//! and grub.cfg names the new root UUID. Needs root and what the e2e source build needs.

use crate::common;
use crate::common::e2e;

use std::os::unix::fs::FileExt;

use common::loopdev::{Loop, MIB, Mounted, blkid, sparse};
use e2e::source::debian_tree;
use osimage::NoProgress;
use osimage::PayloadReader;
use osimage::RestoreOptions;

#[test]
fn debian_tree_onto_the_default_layout_gets_grub_installed_chrooted() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    let tree = debian_tree();
    let dir = common::scratch();
    let image = dir.path().join("debian.oimg");
    common::capture(&tree, &image, &[]);
    let target = dir.path().join("disk.img");
    sparse(&target, 2048 * MIB);
    let r = PayloadReader::open(&image, &osimage::Unlock::none()).unwrap();
    let o = RestoreOptions {
        threads: 2,
        default_layout: true,
        ..RestoreOptions::default()
    };
    let (plan, report) = osimage::restore_to_disk(&r, &target, &o, &NoProgress)
        .unwrap_or_else(|e| panic!("restore: {e}"));
    eprintln!("{plan}{}", report.summary());
    let said = report.boot.join("\n");
    assert!(
        said.contains("grub-install --target=i386-pc ran chrooted"),
        "{said}"
    );
    assert!(
        said.contains("grub-mkconfig wrote /boot/grub/grub.cfg"),
        "{said}"
    );

    // GRUB's boot.img in the MBR (it says "GRUB" in its error strings) and core.img in the
    // BIOS boot partition (1 MiB at sector 2048), which the test did not write.
    let f = std::fs::File::open(&target).unwrap();
    let mut mbr = vec![0u8; 440];
    f.read_exact_at(&mut mbr, 0).unwrap();
    assert!(
        mbr.windows(4).any(|w| w == b"GRUB"),
        "no GRUB boot code in the MBR"
    );
    let mut core = vec![0u8; 512];
    f.read_exact_at(&mut core, 2048 * 512).unwrap();
    assert!(
        core.iter().any(|&b| b != 0),
        "the BIOS boot partition is empty"
    );

    let lo = Loop::attach(&target);
    let root = lo.part(3);
    let uuid = blkid(&root, "UUID");
    assert_eq!(uuid, plan.filesystems[0].uuid);
    let mnt = dir.path().join("restored");
    let m = Mounted::new(&root, &mnt, &[]);
    let cfg = std::fs::read_to_string(mnt.join("boot/grub/grub.cfg")).unwrap();
    assert!(
        cfg.contains(&uuid),
        "grub.cfg does not name the new root {uuid}"
    );
    let fstab = std::fs::read_to_string(mnt.join("etc/fstab")).unwrap();
    assert!(fstab.contains(&format!("UUID={uuid} / ext4")), "{fstab}");
    drop(m);
    drop(lo);
}
