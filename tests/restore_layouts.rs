//! `restore` onto loop-device disks beyond the plain GPT + ext4 case of restore_loop.rs
//! (issues #4 and #5): a plain-directory capture (layout "none") onto osimage's default
//! layout. Needs root, losetup, partx, sfdisk, mkfs.ext4, mkfs.vfat, mtools and blkid.

mod common;

use std::path::Path;

use common::compare::{self, Options, Snapshot};
use common::loopdev::{Loop, MIB, Mounted, blkid, require, run, sfdisk_json, sparse};
use osimage::payload::reader::PayloadReader;
use osimage::progress::NoProgress;
use osimage::restore::{self, RestoreOptions};

const BIOS_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

fn opts() -> RestoreOptions {
    RestoreOptions {
        threads: 2,
        ..RestoreOptions::default()
    }
}

/// Without what a restore may change: etc/fstab (rewritten), /var/log (the restore log) and
/// boot/efi's contents (they live on the ESP).
fn comparable(s: &Snapshot) -> Snapshot {
    s.iter()
        .filter(|(p, _)| {
            p.as_slice() != b"etc/fstab"
                && (!compare::is_under(p, b"boot/efi") || p.as_slice() == b"boot/efi")
                && !compare::is_under(p, b"var/log")
        })
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect()
}

fn plain_tree(r: &Path) {
    for d in ["etc", "usr/bin", "var/log", "home/u", "boot/efi/EFI/debian"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(
        r.join("etc/fstab"),
        "# UNCONFIGURED FSTAB FOR BASE SYSTEM\nproc /proc proc defaults 0 0\n\
         UUID=0bad0bad-0000-4000-8000-000000000000 /srv xfs defaults 0 2\n",
    )
    .unwrap();
    std::fs::write(r.join("etc/hostname"), "plain\n").unwrap();
    std::fs::write(r.join("usr/bin/tool"), vec![7u8; 300_000]).unwrap();
    std::fs::write(r.join("home/u/notes"), "hello").unwrap();
    std::fs::write(r.join("boot/efi/EFI/debian/grubx64.efi"), b"MZ grub").unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", r.join("etc/tool")).unwrap();
}

#[test]
fn plain_directory_restores_onto_the_default_layout() {
    require(&[
        "losetup",
        "partx",
        "sfdisk",
        "mkfs.ext4",
        "mkfs.vfat",
        "mcopy",
        "blkid",
        "mount",
    ]);
    let dir = common::scratch();
    let tree = dir.path().join("tree");
    plain_tree(&tree);
    let image = dir.path().join("plain.oimg");
    common::capture(&tree, &image, &[]);
    let source = comparable(&compare::snapshot(&tree).unwrap());
    let target = dir.path().join("disk.img");
    sparse(&target, 1 << 30);

    // Without --default-layout the restore refuses and says how to go on.
    let refused = common::osimage([
        "restore".as_ref(),
        image.as_os_str(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert_eq!(refused.code, 1, "{}", refused.describe());
    assert!(
        refused.stderr.contains("--default-layout"),
        "{}",
        refused.stderr
    );
    let dry = common::osimage([
        "restore".as_ref(),
        image.as_os_str(),
        "--target".as_ref(),
        target.as_os_str(),
        "--default-layout".as_ref(),
        "--dry-run".as_ref(),
    ])
    .ok();
    assert!(
        dry.stdout_str().contains("default layout"),
        "{}",
        dry.stdout_str()
    );

    let r = PayloadReader::open(&image).unwrap();
    let o = RestoreOptions {
        default_layout: true,
        ..opts()
    };
    let (plan, report) = restore::restore_to_disk(&r, &target, &o, &NoProgress)
        .unwrap_or_else(|e| panic!("restore: {e}"));
    eprintln!("{plan}{}", report.summary());

    // GPT: BIOS boot 1 MiB at 1 MiB, ESP 512 MiB, root to the end (before the backup GPT).
    let t = sfdisk_json(&target);
    let pt = &t["partitiontable"];
    assert_eq!(pt["label"], "gpt");
    let parts = pt["partitions"].as_array().unwrap();
    let span: Vec<(u64, u64, String)> = parts
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let sectors = (1u64 << 30) / 512;
    assert_eq!(
        span,
        vec![
            (2048, 2048, BIOS_TYPE.to_string()),
            (4096, 512 * MIB / 512, ESP_TYPE.to_string()),
            (
                4096 + 512 * MIB / 512,
                sectors - 33 - 4096 - 512 * MIB / 512,
                LINUX_TYPE.to_string()
            ),
        ]
    );

    let lo = Loop::attach(&target);
    let (esp, root) = (lo.part(2), lo.part(3));
    assert_eq!(blkid(&root, "TYPE"), "ext4");
    assert_eq!(blkid(&esp, "TYPE"), "vfat");
    let (root_uuid, esp_uuid) = (blkid(&root, "UUID"), blkid(&esp, "UUID"));
    assert_eq!(root_uuid, plan.filesystems[0].uuid);
    let mnt = dir.path().join("restored");
    let m = Mounted::new(&root, &mnt, &[]);
    let got = comparable(&compare::snapshot(&mnt).unwrap());
    compare::assert_no_differences(
        &compare::compare(&source, &got, Options::default()),
        "default layout root vs source tree",
    );
    // fstab names exactly what is on the disk; the device that is not is disabled.
    let fstab = std::fs::read_to_string(mnt.join("etc/fstab")).unwrap();
    assert!(
        fstab.contains(&format!("UUID={root_uuid} / ext4 ")),
        "{fstab}"
    );
    assert!(
        fstab.contains(&format!("UUID={esp_uuid} /boot/efi vfat ")),
        "{fstab}"
    );
    assert!(
        fstab.contains("\nproc /proc proc defaults 0 0\n"),
        "{fstab}"
    );
    assert!(
        fstab.contains("#osimage-default-layout: no such device: UUID=0bad0bad"),
        "{fstab}"
    );
    let live: Vec<&str> = fstab.lines().filter(|l| l.starts_with("UUID=")).collect();
    assert_eq!(live.len(), 2, "{fstab}");
    // The tree has no grub-install: restored, and said not to boot.
    assert!(
        report.boot.iter().any(|b| b.contains("NOT BOOTABLE")),
        "{:?}",
        report.boot
    );
    let log = std::fs::read_to_string(mnt.join("var/log/osimage-restore.log")).unwrap();
    assert!(
        log.contains("NOT BOOTABLE") && log.contains("default layout"),
        "{log}"
    );
    drop(m);

    // The ESP got the tree's boot/efi, and the removable path.
    let out = dir.path().join("esp-out");
    std::fs::create_dir(&out).unwrap();
    run(
        "mcopy",
        &["-i", &esp, "-s", "-n", "::/EFI", out.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(out.join("EFI/debian/grubx64.efi")).unwrap(),
        b"MZ grub"
    );
    assert!(out.join("EFI/BOOT/BOOTX64.EFI").is_file());
    drop(lo);
}
