//! Layout capture of loop-device disks made here (GPT and MBR; ext4, vfat, swap, a BIOS boot
//! partition, boot code) reads back exactly what was made: every field is checked against the
//! values given to sfdisk and mkfs, against `sfdisk -J`, and against `dumpe2fs -h`.
//!
//! Needs root and util-linux, e2fsprogs and dosfstools (CI has them).

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::common;
use common::fixture::pattern;

use common::loopdev::{Loop, run, run_stdin};
use osimage::format::manifest::Manifest;
use osimage::layout::{
    self, DiskLayout, Firmware, FsFeatures, PartitionTable, capture_layout, from_manifest,
    to_extension,
};

/// Fails the test unless it runs as root with the loop-device tools.
fn need_tools() {
    common::require_root();
    common::need_disk_tools(&[
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mkswap", "util-linux"),
        ("dumpe2fs", "e2fsprogs"),
    ]);
}

/// A sparse image file of `mib` MiB in a scratch dir.
fn image(dir: &Path, mib: u64) -> PathBuf {
    let p = dir.join("disk.img");
    std::fs::File::create(&p)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    p
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

/// `sfdisk -J` of the disk, the independent view of its table.
fn sfdisk_json(dev: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&run("sfdisk", &["-J", dev])).unwrap();
    v["partitiontable"].clone()
}

/// `dumpe2fs -h` as key → value.
fn dumpe2fs(dev: &str) -> HashMap<String, String> {
    run("dumpe2fs", &["-h", dev])
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A capture root with only `etc/fstab`.
fn root_with_fstab(dir: &Path, fstab: &str) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/fstab"), fstab).unwrap();
    root
}

fn fs<'a>(l: &'a DiskLayout, mount_point: &str) -> &'a layout::FsRecord {
    l.filesystems
        .iter()
        .find(|f| f.mount_point == mount_point)
        .unwrap_or_else(|| panic!("no filesystem at {mount_point}: {l:#?}"))
}

/// Checks the ext4 record against dumpe2fs and the mkfs arguments.
fn check_ext4(f: &layout::FsRecord, node: &str, uuid: &str, label: &str) {
    assert_eq!(
        (f.fstype.as_str(), f.uuid.as_str(), f.label.as_str()),
        ("ext4", uuid, label)
    );
    let d = dumpe2fs(node);
    let FsFeatures::Ext(x) = &f.features else {
        panic!("no ext features: {f:?}")
    };
    let want: Vec<&str> = d["Filesystem features"].split_whitespace().collect();
    assert_eq!(x.names, want);
    let num = |k: &str| d[k].parse::<u64>().unwrap();
    assert_eq!(u64::from(x.block_size), num("Block size"));
    assert_eq!(u64::from(x.inode_size), num("Inode size"));
    assert_eq!(u64::from(x.inodes_count), num("Inode count"));
    assert_eq!(x.blocks_count, num("Block count"));
    assert_eq!(x.reserved_blocks, num("Reserved block count"));
    assert_eq!(x.hash_seed, d["Directory Hash Seed"]);
    assert_eq!(f.size_bytes, num("Block count") * num("Block size"));
    assert_eq!(
        f.used_bytes,
        Some((num("Block count") - num("Free blocks")) * num("Block size"))
    );
}

/// The record survives the manifest extension unchanged.
fn check_round_trip(l: &DiskLayout) {
    let mut m = Manifest::default();
    m.extensions.push(to_extension(l));
    assert_eq!(from_manifest(&m).unwrap().as_ref(), Some(l));
}

const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const BIOS_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const SWAP_TYPE: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";

#[test]
fn gpt_disk_with_esp_bios_boot_ext4_and_swap_reads_back() {
    let _disks = common::loop_devices(module_path!());
    need_tools();
    let dir = tempfile::Builder::new()
        .prefix("osimage-layout")
        .tempdir()
        .unwrap();
    let img = image(dir.path(), 256);
    let disk_guid = "3C2D1E0F-1A2B-4C3D-8E4F-5A6B7C8D9E0F";
    let esp_guid = "11111111-2222-4333-8444-555555555555";
    run_stdin(
        "sfdisk",
        &["--no-reread", "--no-tell-kernel", img.to_str().unwrap()],
        &format!(
            "label: gpt\nlabel-id: {disk_guid}\n\
             start=2048, size=65536, type={ESP_TYPE}, uuid={esp_guid}, name=\"EFI System\"\n\
             size=2048, type={BIOS_TYPE}, name=bios\n\
             size=327680, type={LINUX_TYPE}, name=root, attrs=\"LegacyBIOSBootable\"\n\
             type={SWAP_TYPE}, name=swap\n"
        ),
    );
    // Boot code and a BIOS boot partition with recognisable bytes, as grub-install leaves them.
    let boot_code = pattern(440, 0x5A);
    let core_img = pattern(1 << 20, 0xC3);
    write_at(&img, 0, &boot_code);
    write_at(&img, 67584 * 512, &core_img);

    let lo = Loop::attach(&img);
    let (esp, root, swap) = (lo.part(1), lo.part(3), lo.part(4));
    let root_uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let swap_uuid = "99999999-8888-4777-8666-555555555555";
    run(
        "mkfs.vfat",
        &["-F", "32", "-i", "1234ABCD", "-n", "ESP", &esp],
    );
    run(
        "mkfs.ext4",
        &[
            "-q", "-F", "-U", root_uuid, "-L", "rootfs", "-I", "256", &root,
        ],
    );
    run("mkswap", &["-U", swap_uuid, "-L", "swap0", &swap]);

    let root_dir = root_with_fstab(
        dir.path(),
        &format!(
            "# made by the test\n\
             UUID={root_uuid} / ext4 errors=remount-ro 0 1\n\
             PARTUUID={} /boot/efi vfat umask=0077 0 1\n\
             LABEL=swap0 none swap sw 0 0\n\
             LABEL=absent /mnt/usb ext4 defaults,nofail 0 2\n\
             proc /proc proc defaults 0 0\n",
            esp_guid.to_lowercase()
        ),
    );
    std::fs::create_dir_all(root_dir.join("boot/grub/i386-pc")).unwrap();
    let l = capture_layout(&root_dir).unwrap();

    assert_eq!(l.none, None);
    assert!(l.unsupported.is_empty(), "{:?}", l.unsupported);
    assert!(l.restorable());
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("LABEL=absent"));
    assert_eq!(l.fstab.len(), 5);

    // The disk and its table, against sfdisk -J.
    assert_eq!(l.disks.len(), 1);
    let d = &l.disks[0];
    let sf = sfdisk_json(&lo.dev);
    assert_eq!(d.name, lo.name());
    assert_eq!(d.size_bytes, 256 << 20);
    assert_eq!(
        u64::from(d.logical_sector),
        sf["sectorsize"].as_u64().unwrap()
    );
    assert_eq!(d.mbr_boot_code, boot_code);
    assert!(d.mbr_gap.is_empty());
    let Some(PartitionTable::Gpt(t)) = &d.table else {
        panic!("no GPT: {d:?}")
    };
    assert_eq!(t.disk_guid, disk_guid);
    assert_eq!(t.disk_guid, sf["id"].as_str().unwrap());
    assert_eq!(t.first_usable, sf["firstlba"].as_u64().unwrap());
    assert_eq!(t.last_usable, sf["lastlba"].as_u64().unwrap());
    let parts = sf["partitions"].as_array().unwrap();
    assert_eq!(t.partitions.len(), parts.len());
    for (p, s) in t.partitions.iter().zip(parts) {
        assert_eq!(
            s["node"].as_str().unwrap(),
            format!("{}p{}", lo.dev, p.number)
        );
        assert_eq!(p.first_lba, s["start"].as_u64().unwrap());
        assert_eq!(p.last_lba - p.first_lba + 1, s["size"].as_u64().unwrap());
        assert_eq!(p.type_guid, s["type"].as_str().unwrap());
        assert_eq!(p.part_guid, s["uuid"].as_str().unwrap());
        assert_eq!(p.name, s["name"].as_str().unwrap());
    }
    assert_eq!(t.partitions[0].part_guid, esp_guid);
    assert_eq!(t.partitions[2].attributes, 1 << 2); // LegacyBIOSBootable
    assert_eq!(parts[2]["attrs"].as_str(), Some("LegacyBIOSBootable"));

    // Filesystems.
    let r = fs(&l, "/");
    assert_eq!(r.device.partition, Some(3));
    assert_eq!(r.device.name, format!("{}p3", lo.name()));
    assert_eq!((r.pass, r.mount_options.as_str()), (1, "errors=remount-ro"));
    assert!(r.in_fstab && r.mounted_at.is_none());
    check_ext4(r, &root, root_uuid, "rootfs");

    let e = fs(&l, "/boot/efi");
    assert_eq!(e.device.partition, Some(1));
    assert_eq!(
        (e.fstype.as_str(), e.uuid.as_str(), e.label.as_str()),
        ("vfat", "1234-ABCD", "ESP")
    );
    let FsFeatures::Vfat(v) = &e.features else {
        panic!()
    };
    assert_eq!(
        (v.fat_bits, v.volume_id, v.bytes_per_sector),
        (32, 0x1234_ABCD, 512)
    );
    assert_eq!(e.size_bytes, 65536 * 512);
    assert_eq!(l.filesystems.len(), 2);

    // Swap.
    assert_eq!(l.swaps.len(), 1);
    let s = &l.swaps[0];
    assert_eq!((s.uuid.as_str(), s.label.as_str()), (swap_uuid, "swap0"));
    assert_eq!(s.device.partition, Some(4));
    let swap_sectors = parts[3]["size"].as_u64().unwrap();
    assert_eq!(s.size_bytes, swap_sectors * 512 / 4096 * 4096);

    // Boot: the ESP and BIOS boot partition, their bytes, and what the offline root can boot by.
    let b = &l.boot;
    assert_eq!(b.firmware, Firmware::Unknown);
    assert_eq!(b.esp.as_ref().map(|p| p.partition), Some(Some(1)));
    assert_eq!(b.bios_boot.as_ref().map(|p| p.partition), Some(Some(2)));
    assert_eq!(b.bios_boot_bytes, core_img);
    assert!(b.grub_i386_pc && b.uefi_capable && b.bios_capable);

    check_round_trip(&l);
    let text = layout::describe(&l);
    assert!(text.contains("EFI System"), "{text}");
    assert!(text.contains(root_uuid), "{text}");
}

#[test]
fn mbr_disk_with_logical_partitions_reads_back() {
    let _disks = common::loop_devices(module_path!());
    need_tools();
    let dir = tempfile::Builder::new()
        .prefix("osimage-layout")
        .tempdir()
        .unwrap();
    let img = image(dir.path(), 256);
    run_stdin(
        "sfdisk",
        &["--no-reread", "--no-tell-kernel", img.to_str().unwrap()],
        "label: dos\nlabel-id: 0xc0ffee01\n\
         start=2048, size=204800, type=83, bootable\n\
         type=5\n\
         size=65536, type=c\n\
         type=82\n",
    );
    let boot_code = pattern(440, 0x11);
    let gap = pattern(2047 * 512, 0x22);
    write_at(&img, 0, &boot_code);
    write_at(&img, 512, &gap);

    let lo = Loop::attach(&img);
    let (root, data, swap) = (lo.part(1), lo.part(5), lo.part(6));
    let root_uuid = "12345678-1234-4234-8234-123456789abc";
    run(
        "mkfs.ext4",
        &["-q", "-F", "-U", root_uuid, "-L", "mbrroot", &root],
    );
    run(
        "mkfs.vfat",
        &["-F", "16", "-i", "DEADBEEF", "-n", "DATA", &data],
    );
    run("mkswap", &["-L", "mbrswap", &swap]);

    let root_dir = root_with_fstab(
        dir.path(),
        &format!(
            "UUID={root_uuid}\t/\text4\tdefaults\t0\t1\n\
             PARTUUID=c0ffee01-05 /srv/my\\040data vfat defaults 0 2\n\
             {swap} none swap sw 0 0\n"
        ),
    );
    let l = capture_layout(&root_dir).unwrap();
    assert!(l.restorable(), "{l:#?}");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);

    let d = &l.disks[0];
    assert_eq!(d.mbr_boot_code, boot_code);
    assert_eq!(d.mbr_gap, gap);
    let sf = sfdisk_json(&lo.dev);
    let Some(PartitionTable::Mbr(t)) = &d.table else {
        panic!("no MBR: {d:?}")
    };
    assert_eq!(t.signature, 0xc0ff_ee01);
    assert_eq!(sf["id"].as_str(), Some("0xc0ffee01"));
    let parts = sf["partitions"].as_array().unwrap();
    assert_eq!(t.partitions.len(), parts.len());
    for (p, s) in t.partitions.iter().zip(parts) {
        assert_eq!(
            s["node"].as_str().unwrap(),
            format!("{}p{}", lo.dev, p.number)
        );
        assert_eq!(u64::from(p.start_lba), s["start"].as_u64().unwrap());
        assert_eq!(u64::from(p.sectors), s["size"].as_u64().unwrap());
        assert_eq!(format!("{:x}", p.type_byte), s["type"].as_str().unwrap());
        assert_eq!(p.bootable, s["bootable"].as_bool().unwrap_or(false));
    }
    let numbers: Vec<_> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.extended, p.logical))
        .collect();
    assert_eq!(
        numbers,
        [
            (1, false, false),
            (2, true, false),
            (5, false, true),
            (6, false, true)
        ]
    );

    check_ext4(fs(&l, "/"), &root, root_uuid, "mbrroot");
    let v = fs(&l, "/srv/my data");
    assert_eq!(v.device.partition, Some(5));
    assert_eq!((v.uuid.as_str(), v.label.as_str()), ("DEAD-BEEF", "DATA"));
    let FsFeatures::Vfat(x) = &v.features else {
        panic!()
    };
    assert_eq!(x.fat_bits, 16);
    assert_eq!(l.swaps[0].label, "mbrswap");
    assert_eq!(l.swaps[0].device.partition, Some(6));
    assert_eq!(
        l.swaps[0].uuid,
        run("blkid", &["-p", "-s", "UUID", "-o", "value", &swap]).trim()
    );

    assert_eq!(l.boot.esp, None);
    assert_eq!(l.boot.bios_boot, None);
    assert!(l.boot.bios_capable && !l.boot.uefi_capable); // boot code on the / disk
    check_round_trip(&l);
}

#[test]
fn a_plain_directory_has_no_layout() {
    let _disks = common::loop_devices(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let l = capture_layout(dir.path()).unwrap();
    assert!(
        l.none.as_deref().unwrap().contains("plain directory"),
        "{l:?}"
    );
    assert!(l.disks.is_empty() && l.filesystems.is_empty());
    assert!(!l.restorable());
    assert!(layout::describe(&l).starts_with("Layout: none"));

    // An fstab naming devices this machine lacks (a chroot made elsewhere) is no layout either.
    let root = root_with_fstab(
        dir.path(),
        "UUID=00000000-0000-4000-8000-00000000dead / ext4 defaults 0 1\n",
    );
    let l = capture_layout(&root).unwrap();
    assert!(l.none.is_some());
    assert!(l.unsupported.is_empty());
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("matches no block device"))
    );
}

#[test]
fn capturing_this_machine_never_fails() {
    let _disks = common::loop_devices(module_path!());
    // Whatever this host is (a container on overlay, a VM on a disk), capture answers with a
    // layout or a reason, and the answer survives the manifest.
    let l = capture_layout(Path::new("/")).unwrap();
    match &l.none {
        // No layout: then a reason a person can read, and nothing half-recorded.
        Some(why) => {
            assert!(!why.trim().is_empty(), "{l:#?}");
            assert!(l.filesystems.is_empty(), "{l:#?}");
        }
        // A layout: its filesystems, each with a type and a mount point.
        None => {
            assert!(!l.filesystems.is_empty(), "{l:#?}");
            for f in &l.filesystems {
                assert!(
                    !f.fstype.is_empty() && f.mount_point.starts_with('/'),
                    "{f:#?}"
                );
            }
        }
    }
    check_round_trip(&l);
    assert!(!layout::describe(&l).is_empty());
}

/// Writes a sysfs-like entry `dir` with `dev`, `size` and extra files.
fn fake_block(dir: &Path, dev: &str, size: &str, extra: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("dev"), dev).unwrap();
    std::fs::write(dir.join("size"), size).unwrap();
    for (name, value) in extra {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, value).unwrap();
    }
}

/// A GPT disk image of `mib` MiB whose partition 1 (`p1_sectors` long) gets `pv` at its
/// start and whose partition 2 gets an ext4 labelled `lvroot`; on a loop device, with a fake
/// sysfs beside the real one presenting a device-mapper "dm-9" named `dm_name` with the
/// attributes `dm_attrs`, whose device number is partition 2's, built on partition 1 — as
/// LVM would make it (this kernel has no device-mapper). Returns the capture of a root whose
/// fstab mounts `/dev/mapper/<dm_name>` at /.
fn capture_on_fake_dm(
    mib: u64,
    p1_sectors: u64,
    pv: &[u8],
    dm_name: &str,
    dm_attrs: &[(&str, &str)],
) -> layout::DiskLayout {
    let dir = tempfile::Builder::new()
        .prefix("osimage-layout")
        .tempdir()
        .unwrap();
    let img = image(dir.path(), mib);
    run_stdin(
        "sfdisk",
        &["--no-reread", "--no-tell-kernel", img.to_str().unwrap()],
        &format!(
            "label: gpt\nsize={p1_sectors}, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n\
             type=linux\n"
        ),
    );
    write_at(&img, 2048 * 512, pv);
    let lo = Loop::attach(&img);
    let lv = lo.part(2);
    run("mkfs.ext4", &["-q", "-F", "-L", "lvroot", &lv]);

    let real = |name: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/class/block/{name}/{file}")).unwrap()
    };
    let sys = dir.path().join("sys");
    let disk = lo.name().to_string();
    let disk_dir = sys.join("devices/virtual/block").join(&disk);
    fake_block(&disk_dir, &real(&disk, "dev"), &real(&disk, "size"), &[]);
    for n in [1, 2] {
        let p = format!("{disk}p{n}");
        let partition = n.to_string();
        fake_block(
            &disk_dir.join(&p),
            &real(&p, "dev"),
            &real(&p, "size"),
            &[("partition", partition.as_str())],
        );
    }
    let dm_dir = sys.join("devices/virtual/block/dm-9");
    let p1 = format!("{disk}p1");
    let p2 = format!("{disk}p2");
    let slave = format!("slaves/{p1}");
    let mut attrs = vec![("dm/name", dm_name), (slave.as_str(), "")];
    attrs.extend_from_slice(dm_attrs);
    fake_block(&dm_dir, &real(&p2, "dev"), &real(&p2, "size"), &attrs);
    let class = sys.join("class/block");
    std::fs::create_dir_all(&class).unwrap();
    std::os::unix::fs::symlink(&disk_dir, class.join(&disk)).unwrap();
    for n in [1, 2] {
        let p = format!("{disk}p{n}");
        std::os::unix::fs::symlink(disk_dir.join(&p), class.join(&p)).unwrap();
    }
    std::os::unix::fs::symlink(&dm_dir, class.join("dm-9")).unwrap();

    let fstab = format!("/dev/mapper/{dm_name} / ext4 defaults 0 1\n");
    let root = root_with_fstab(dir.path(), &fstab);
    let src = layout::Sources {
        sys,
        dev: "/dev".into(),
        mountinfo: dir.path().join("no-mountinfo"),
    };
    layout::capture_with(&root, &src).unwrap()
}

#[test]
fn a_root_on_an_unknown_device_mapper_target_is_recorded_and_said_not_restorable() {
    let _disks = common::loop_devices(module_path!());
    need_tools();
    // An LVM2 label in the PV's second sector: LABELONE, PV header at +32, "LVM2 001"; the
    // dm device has no dm/uuid, so what it is cannot be told.
    let mut label = vec![0u8; 1024];
    label[512..520].copy_from_slice(b"LABELONE");
    label[532..536].copy_from_slice(&32u32.to_le_bytes());
    label[536..544].copy_from_slice(b"LVM2 001");
    label[544..576].copy_from_slice(b"AAAAAABBBBCCCCDDDDEEEEFFFFGGGGGG");
    let l = capture_on_fake_dm(64, 16384, &label, "vg-root", &[]);
    let r = fs(&l, "/");
    assert_eq!(
        (r.device.name.as_str(), r.label.as_str()),
        ("dm-9", "lvroot")
    );
    assert_eq!(r.device.partition, None);
    assert!(!l.restorable());
    assert!(
        l.unsupported
            .iter()
            .any(|u| u.contains("dm-9 (/dev/mapper/vg-root)") && u.contains("cannot recreate")),
        "{:?}",
        l.unsupported
    );
    assert_eq!(l.disks.len(), 1);
    assert_eq!(l.containers.len(), 1);
    let c = &l.containers[0];
    assert_eq!(c.kind, layout::ContainerKind::LvmPv);
    assert_eq!(c.uuid, "AAAAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGGGG");
    assert_eq!(c.device.partition, Some(1));
    assert!(layout::describe(&l).contains("Not restorable yet:"));
    check_round_trip(&l);
}

#[test]
fn a_root_on_an_lvm_lv_records_its_volume_group_from_the_pv() {
    let _disks = common::loop_devices(module_path!());
    need_tools();
    // The first MiB of a real 64 MiB PV made by LVM 2.03.16 (tests/fixtures/lvm/README.md):
    // VG vgsys with LVs root (10 extents), swap (3), home (1).
    let pv = zstd::decode_all(&include_bytes!("fixtures/lvm/pv1.head.zst")[..]).unwrap();
    let l = capture_on_fake_dm(
        160,
        131072,
        &pv,
        "vgsys-root",
        &[(
            "dm/uuid",
            "LVM-xA1djdXRLRhkh0PakQrHitifke2k5rJWpYeyPGi6TTrjIohNdsHPxNflRHDLUH1b",
        )],
    );
    assert!(l.restorable(), "{:?}", l.unsupported);
    let vg = &l.stack.vgs[0];
    assert_eq!(
        (vg.name.as_str(), vg.uuid.as_str(), vg.extent_bytes),
        ("vgsys", "xA1djd-XRLR-hkh0-PakQ-rHit-ifke-2k5rJW", 4 << 20)
    );
    assert_eq!(vg.tags, ["site_a", "backup"]);
    let names: Vec<(&str, u64, &str)> = vg
        .lvs
        .iter()
        .map(|lv| (lv.name.as_str(), lv.extents, lv.kernel_name.as_str()))
        .collect();
    assert_eq!(
        names,
        [("root", 10, "dm-9"), ("swap", 3, ""), ("home", 1, "")]
    );
    assert_eq!(vg.pvs.len(), 1);
    let pv = &vg.pvs[0];
    assert_eq!(pv.uuid, "YLIRXm-gyvO-0lEQ-ZraS-b5TB-weUw-r7M4XQ");
    assert_eq!(
        (pv.device.partition, pv.pe_count, pv.pe_start_bytes),
        (Some(1), 15, 1 << 20)
    );
    assert!(vg.metadata.contains("vgsys {"), "{}", vg.metadata);
    let text = layout::describe(&l);
    assert!(
        text.contains("Block stack:\n  / (ext4) on /dev/mapper/vgsys-root\n"),
        "{text}"
    );
    assert!(
        text.contains("└─ LV vgsys/root: linear, 40.0 MiB (10 extents)"),
        "{text}"
    );
    assert!(
        !text.contains("Containers no recorded filesystem uses"),
        "{text}"
    );
    check_round_trip(&l);
}
