//! `restore` onto loop-device disks beyond the plain GPT + ext4 case of restore_loop.rs
//! (issues #4 and #5): a plain-directory capture (layout "none") onto osimage's default
//! layout. Needs root, losetup, partx, sfdisk, mkfs.ext4, mkfs.vfat, mtools and blkid.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::compare::{self, Options, Snapshot};
use common::loopdev::{Loop, MIB, Mounted, blkid, run, sfdisk_json, sparse};
use osimage::NoProgress;
use osimage::PayloadReader;
use osimage::RestoreOptions;

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
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    common::need_disk_tools(&[
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
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

    let r = PayloadReader::open(&image, &osimage::Unlock::none()).unwrap();
    let o = RestoreOptions {
        default_layout: true,
        ..opts()
    };
    let (plan, report) = osimage::restore_to_disk(&r, &target, &o, &NoProgress)
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

/// A one-partition GPT disk image of `mib` MiB; returns its loop device, the partition node.
fn one_partition_disk(img: &Path, mib: u64) -> (Loop, String) {
    sparse(img, mib * MIB);
    common::loopdev::run_stdin(
        "sfdisk",
        &[
            "--no-reread",
            "--no-tell-kernel",
            "-q",
            img.to_str().unwrap(),
        ],
        &format!("label: gpt\nstart=2048, type={LINUX_TYPE}, name=root\n"),
    );
    let lo = Loop::attach(img);
    let p = lo.part(1);
    (lo, p)
}

/// Files every restored root gets (content, a hard link, a symlink, an xattr).
fn fill_files(r: &Path, fstab: &str) {
    for d in ["etc", "usr/bin", "var/log", "srv"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/fstab"), fstab).unwrap();
    let tool = r.join("usr/bin/tool");
    std::fs::write(&tool, vec![0x5Au8; 200_000]).unwrap();
    xattr::set(&tool, "user.kind", b"tool").unwrap();
    std::fs::hard_link(&tool, r.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("tool", r.join("usr/bin/t")).unwrap();
}

/// The root of a restored system compared with the source's, /var/log aside.
fn assert_same_tree(source: &Snapshot, restored: &Path, what: &str) {
    let strip = |s: &Snapshot| -> Snapshot {
        s.iter()
            .filter(|(p, _)| !compare::is_under(p, b"var/log"))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect()
    };
    let got = strip(&compare::snapshot(restored).unwrap());
    compare::assert_no_differences(
        &compare::compare(&strip(source), &got, Options::default()),
        what,
    );
}

const BTRFS_UUID: &str = "b7f50000-0000-4000-8000-00000000b7f5";
const XFS_UUID: &str = "0f500000-0000-4000-8000-0000000000f5";

/// `btrfs subvolume list -a` paths (from the top level) of the filesystem at `dir`.
fn subvolume_paths(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["subvolume", "list", "-a"];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    let mut v: Vec<String> = run("btrfs", &args)
        .lines()
        .filter_map(|l| l.split_once(" path ").map(|(_, p)| p))
        .map(|p| p.trim_start_matches("<FS_TREE>/").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn btrfs_subvolumes_default_and_identity_come_back() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    common::need_disk_tools(&[("mkfs.btrfs", "btrfs-progs"), ("btrfs", "btrfs-progs")]);
    let dir = common::scratch();
    let src = dir.path().join("src.img");
    let (lo, part) = one_partition_disk(&src, 256);
    run(
        "mkfs.btrfs",
        &["-q", "-f", "-U", BTRFS_UUID, "-L", "bsys", &part],
    );
    let top = dir.path().join("top");
    let m = Mounted::new(&part, &top, &[]);
    let sub = |p: &str| {
        run(
            "btrfs",
            &["subvolume", "create", top.join(p).to_str().unwrap()],
        )
    };
    sub("@");
    std::fs::create_dir_all(top.join("@/srv")).unwrap();
    sub("@/srv/data");
    sub("@/srv/data/inner");
    fill_files(
        &top.join("@"),
        &format!("UUID={BTRFS_UUID} / btrfs subvol=@,noatime 0 0\n"),
    );
    std::fs::write(top.join("@/srv/data/a"), b"in data").unwrap();
    std::fs::write(top.join("@/srv/data/inner/b"), vec![1u8; 70_000]).unwrap();
    run(
        "btrfs",
        &["subvolume", "set-default", top.join("@").to_str().unwrap()],
    );
    run(
        "btrfs",
        &[
            "subvolume",
            "snapshot",
            "-r",
            top.join("@").to_str().unwrap(),
            top.join("snap").to_str().unwrap(),
        ],
    );
    drop(m);
    let root = dir.path().join("root");
    let m = Mounted::new(&part, &root, &["-o", "subvol=@"]);
    let image = dir.path().join("btrfs.oimg");
    common::capture(&root, &image, &[]);
    let source = compare::snapshot(&root).unwrap();
    drop(m);
    drop(lo);

    let info = common::osimage(["info".as_ref(), image.as_os_str()]).ok();
    let r = PayloadReader::open(&image, &osimage::Unlock::none()).unwrap();
    let layout = osimage::layout::from_manifest(r.manifest())
        .unwrap()
        .unwrap();
    let paths: Vec<(&str, bool)> = layout.btrfs[0]
        .subvolumes
        .iter()
        .map(|s| (s.path.as_str(), s.readonly))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("@", false),
            ("snap", true),
            ("@/srv/data", false),
            ("@/srv/data/inner", false)
        ],
        "{}",
        info.stdout_str()
    );
    assert_eq!(layout.btrfs[0].default_path, "@");

    let target = dir.path().join("target.img");
    sparse(&target, 384 * MIB);
    let (plan, report) = osimage::restore_to_disk(&r, &target, &opts(), &NoProgress)
        .unwrap_or_else(|e| panic!("restore: {e}"));
    eprintln!("{plan}{}", report.summary());
    assert!(
        plan.to_string().contains("subvolume snap was not mounted"),
        "{plan}"
    );

    let lo = Loop::attach(&target);
    let part = lo.part(1);
    assert_eq!(blkid(&part, "UUID"), BTRFS_UUID);
    assert_eq!(blkid(&part, "LABEL"), "bsys");
    let top = dir.path().join("rtop");
    let m = Mounted::new(&part, &top, &["-o", "subvolid=5"]);
    assert_eq!(
        subvolume_paths(&top, &[]),
        ["@", "@/srv/data", "@/srv/data/inner", "snap"]
    );
    assert_eq!(subvolume_paths(&top, &["-r"]), ["snap"]);
    let def = run(
        "btrfs",
        &["subvolume", "get-default", top.to_str().unwrap()],
    );
    assert!(def.trim_end().ends_with("path @"), "{def}");
    drop(m);
    // Mounted without options: the default subvolume, which holds the system.
    let restored = dir.path().join("restored");
    let m = Mounted::new(&part, &restored, &[]);
    assert_same_tree(&source, &restored, "btrfs root vs source");
    for nested in ["srv/data", "srv/data/inner"] {
        // A subvolume's root directory is inode 256.
        assert_eq!(
            std::fs::metadata(restored.join(nested)).unwrap().ino(),
            256,
            "{nested}"
        );
    }
    drop(m);
    drop(lo);
}

#[test]
fn xfs_root_comes_back_with_uuid_label_and_files() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    common::need_disk_tools(&[("mkfs.xfs", "xfsprogs")]);
    let dir = common::scratch();
    let src = dir.path().join("src.img");
    let (lo, part) = one_partition_disk(&src, 320);
    run(
        "mkfs.xfs",
        &[
            "-q",
            "-f",
            "-m",
            &format!("uuid={XFS_UUID}"),
            "-L",
            "xsys",
            &part,
        ],
    );
    let root = dir.path().join("root");
    let m = Mounted::new(&part, &root, &[]);
    fill_files(&root, &format!("UUID={XFS_UUID} / xfs defaults 0 0\n"));
    let image = dir.path().join("xfs.oimg");
    common::capture(&root, &image, &[]);
    let source = compare::snapshot(&root).unwrap();
    drop(m);
    drop(lo);

    let target = dir.path().join("target.img");
    sparse(&target, 512 * MIB);
    let r = PayloadReader::open(&image, &osimage::Unlock::none()).unwrap();
    let (plan, report) = osimage::restore_to_disk(&r, &target, &opts(), &NoProgress)
        .unwrap_or_else(|e| panic!("restore: {e}"));
    eprintln!("{plan}{}", report.summary());
    let lo = Loop::attach(&target);
    let part = lo.part(1);
    assert_eq!(blkid(&part, "TYPE"), "xfs");
    assert_eq!(blkid(&part, "UUID"), XFS_UUID);
    assert_eq!(blkid(&part, "LABEL"), "xsys");
    let restored = dir.path().join("restored");
    let m = Mounted::new(&part, &restored, &[]);
    assert_same_tree(&source, &restored, "xfs root vs source");
    drop(m);
    drop(lo);
}

/// The directory `boot` of the root filesystem, under the mount: mode 0701, owner 1234:5678,
/// a user xattr and fixed times, unlike the root of the /boot filesystem mounted on it.
fn mark_the_directory_under(boot: &Path) {
    std::fs::create_dir_all(boot).unwrap();
    std::fs::set_permissions(boot, std::fs::Permissions::from_mode(0o701)).unwrap();
    std::os::unix::fs::chown(boot, Some(1234), Some(5678)).unwrap();
    xattr::set(boot, "user.under", b"the root's own directory").unwrap();
    run("touch", &["-d", "@1600000000.5", boot.to_str().unwrap()]);
}

/// Issue #24 item 6, FORMAT.md §13: the restored root's `boot` directory is the one that was
/// under the mount on the source, not a copy of the /boot filesystem's root.
fn assert_the_directory_under(boot: &Path) {
    let m = std::fs::symlink_metadata(boot).unwrap();
    assert_eq!(
        (
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec()
        ),
        (0o701, 1234, 5678, 1_600_000_000, 500_000_000),
        "{}",
        boot.display()
    );
    assert_eq!(
        xattr::get(boot, "user.under").unwrap().as_deref(),
        Some(&b"the root's own directory"[..])
    );
    assert!(common::is_empty_dir(boot));
}

/// Also issue #24 item 6: each side of the /boot mount point comes back as it was.
#[test]
fn smaller_disk_shrinks_an_earlier_partition_and_moves_the_next() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    common::need_disk_tools(&[("mkfs.ext4", "e2fsprogs")]);
    const BOOT_UUID: &str = "b0070000-0000-4000-8000-00000000b007";
    const ROOT_UUID: &str = "5007e000-0000-4000-8000-00000005007e";
    let dir = common::scratch();
    let src = dir.path().join("src.img");
    sparse(&src, 512 * MIB);
    common::loopdev::run_stdin(
        "sfdisk",
        &[
            "--no-reread",
            "--no-tell-kernel",
            "-q",
            src.to_str().unwrap(),
        ],
        &format!(
            "label: gpt\nstart=2048, size={}, type={LINUX_TYPE}, name=boot\ntype={LINUX_TYPE}, name=root\n",
            256 * MIB / 512
        ),
    );
    let before = sfdisk_json(&src);
    let lo = Loop::attach(&src);
    let (boot, root) = (lo.part(1), lo.part(2));
    run(
        "mkfs.ext4",
        &["-q", "-F", "-U", BOOT_UUID, "-L", "boot", &boot],
    );
    run(
        "mkfs.ext4",
        &["-q", "-F", "-U", ROOT_UUID, "-L", "root", &root],
    );
    let mnt = dir.path().join("root");
    let m = Mounted::new(&root, &mnt, &[]);
    fill_files(
        &mnt,
        &format!(
            "UUID={ROOT_UUID} / ext4 defaults 0 1\nUUID={BOOT_UUID} /boot ext4 defaults 0 2\n"
        ),
    );
    mark_the_directory_under(&mnt.join("boot"));
    let mb = Mounted::new(&boot, &mnt.join("boot"), &[]);
    std::fs::write(mnt.join("boot/vmlinuz"), vec![0xEEu8; 3 * MIB as usize]).unwrap();
    std::fs::set_permissions(mnt.join("boot"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let image = dir.path().join("two.oimg");
    common::capture(&mnt, &image, &[]);
    let source = compare::snapshot(&mnt).unwrap();
    drop(mb);
    drop(m);
    drop(lo);

    // 200 MiB: the root (last) alone cannot give up enough; /boot shrinks, the root moves.
    let target = dir.path().join("small.img");
    sparse(&target, 200 * MIB);
    let r = PayloadReader::open(&image, &osimage::Unlock::none()).unwrap();
    let (plan, report) = osimage::restore_to_disk(&r, &target, &opts(), &NoProgress)
        .unwrap_or_else(|e| panic!("restore: {e}"));
    eprintln!("{plan}{}", report.summary());
    let text = plan.to_string();
    assert!(text.contains("shrinks 256.0 MiB →"), "{text}");
    assert!(
        text.contains("partition 2 moves from sector 526336 to"),
        "{text}"
    );
    assert_eq!(plan.shrunk.len(), 1);
    let t = sfdisk_json(&target);
    let (pa, pb) = (
        before["partitiontable"]["partitions"].as_array().unwrap(),
        t["partitiontable"]["partitions"].as_array().unwrap(),
    );
    assert_eq!(pb[0]["start"], 2048);
    assert_eq!(
        pb[0]["size"].as_u64().unwrap() * 512,
        plan.shrunk[0].new_bytes
    );
    assert!(pb[0]["size"].as_u64() < pa[0]["size"].as_u64());
    let p2 = &plan.partitions[1];
    assert_eq!(pb[1]["start"].as_u64().unwrap(), p2.first_lba);
    assert_eq!(p2.first_lba, 2048 + pb[0]["size"].as_u64().unwrap());
    for k in ["uuid", "name", "type"] {
        assert_eq!(pa[0][k], pb[0][k]);
        assert_eq!(pa[1][k], pb[1][k]);
    }

    let lo = Loop::attach(&target);
    let (boot, root) = (lo.part(1), lo.part(2));
    assert_eq!(blkid(&boot, "UUID"), BOOT_UUID);
    assert_eq!(blkid(&root, "UUID"), ROOT_UUID);
    let restored = dir.path().join("restored");
    let m = Mounted::new(&root, &restored, &[]);
    assert_the_directory_under(&restored.join("boot"));
    let mb = Mounted::new(&boot, &restored.join("boot"), &[]);
    assert_same_tree(&source, &restored, "shrunk disk vs source");
    let over = std::fs::symlink_metadata(restored.join("boot")).unwrap();
    assert_eq!(over.mode() & 0o7777, 0o750, "the /boot filesystem's root");
    drop(mb);
    drop(m);
    drop(lo);
}

/// Issue #24 item 5: a GPT disk whose ESP is empty and which has no BIOS boot code restores
/// its files, but the report says what the written ESP holds (no removable loader, read
/// back), never "BOOTX64.EFI present", and the restore exits 1 as NOT BOOTABLE unless
/// `--allow-unbootable` accepts it.
#[test]
fn an_empty_esp_restores_as_not_bootable_and_fails_unless_accepted() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    common::need_disk_tools(&[
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mtype", "mtools"),
    ]);
    let dir = common::scratch();
    let img = dir.path().join("source.img");
    sparse(&img, 96 * MIB);
    common::loopdev::run_stdin(
        "sfdisk",
        &[
            "--no-reread",
            "--no-tell-kernel",
            "-q",
            img.to_str().unwrap(),
        ],
        &format!(
            "label: gpt\nstart=2048, size=65536, type={ESP_TYPE}, name=esp\n\
             type={LINUX_TYPE}, name=root\n"
        ),
    );
    let lo = Loop::attach(&img);
    let (esp, root) = (lo.part(1), lo.part(2));
    run("mkfs.vfat", &["-F", "16", "-i", "E5E5E5E5", &esp]);
    let root_uuid = "e5e5e5e5-0000-4000-8000-000000000001";
    run("mkfs.ext4", &["-q", "-F", "-U", root_uuid, &root]);
    let mnt = dir.path().join("root");
    let m = Mounted::new(&root, &mnt, &[]);
    fill_files(
        &mnt,
        &format!(
            "UUID={root_uuid} / ext4 errors=remount-ro 0 1\n\
             UUID=E5E5-E5E5 /boot/efi vfat umask=0077 0 1\n"
        ),
    );
    std::fs::create_dir_all(mnt.join("boot/efi")).unwrap();
    let image = dir.path().join("empty-esp.oimg");
    common::capture(&mnt, &image, &[]);
    drop(m);
    drop(lo);

    let target = dir.path().join("target.img");
    sparse(&target, 128 * MIB);
    let restore = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "restore".as_ref(),
            image.as_os_str(),
            "--target".as_ref(),
            target.as_os_str(),
            "--force".as_ref(),
            "--json".as_ref(),
        ];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        common::osimage(args)
    };
    let refused = restore(&[]).fails();
    assert!(
        refused.stderr.contains("will not boot") && refused.stderr.contains("--allow-unbootable"),
        "{}",
        refused.describe()
    );
    // stdout: one JSON document holding the plan and the report
    let out = refused.stdout_str();
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(docs.len(), 1, "{out}");
    let report = &docs[0]["report"];
    assert_eq!(report["bootable"], false, "{report}");
    let boot: Vec<&str> = report["boot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        boot.iter()
            .any(|l| l.contains("no EFI/BOOT/BOOTX64.EFI on the written ESP")),
        "{boot:?}"
    );
    assert!(!boot.iter().any(|l| l.contains("present")), "{boot:?}");
    let unbootable = report["unbootable"].as_array().unwrap();
    assert_eq!(unbootable.len(), 1, "{report}");
    assert!(
        unbootable[0].as_str().unwrap().starts_with("NOT BOOTABLE"),
        "{report}"
    );
    // the files are there all the same
    let lo = Loop::attach(&target);
    let mnt2 = dir.path().join("restored");
    let m = Mounted::new(&lo.part(2), &mnt2, &[]);
    assert_eq!(
        std::fs::read(mnt2.join("usr/bin/tool")).unwrap(),
        vec![0x5Au8; 200_000]
    );
    drop(m);
    drop(lo);

    let accepted = restore(&["--allow-unbootable"]).ok();
    assert!(
        accepted.stdout_str().contains("NOT BOOTABLE"),
        "{}",
        accepted.describe()
    );
}
