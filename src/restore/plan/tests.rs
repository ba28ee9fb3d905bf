use super::*;
use crate::layout::table::{BIOS_BOOT_GUID, ESP_GUID};
use crate::layout::{
    BootInfo, Disk, ExtFeatures, FsFeatures, FsRecord, GptPartition, GptTable, MbrPartition,
    MbrTable, PartRef, PartitionTable, SwapRecord,
};

pub(crate) const MIB: u64 = 1 << 20;
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

pub(crate) fn part(n: u32) -> PartRef {
    PartRef {
        disk: 0,
        partition: Some(n),
        name: format!("vda{n}"),
        dev: 0,
    }
}

pub(crate) fn ext4(n: u32, mp: &str, size: u64, used: u64) -> FsRecord {
    FsRecord {
        device: part(n),
        fstype: "ext4".into(),
        uuid: format!("0000000{n}-0000-4000-8000-000000000000"),
        label: format!("l{n}"),
        mount_point: mp.into(),
        size_bytes: size,
        used_bytes: Some(used),
        features: FsFeatures::Ext(ExtFeatures {
            names: vec!["has_journal".into()],
            block_size: 4096,
            inode_size: 256,
            inodes_count: 100,
            blocks_count: size / 4096,
            rev_level: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// 256 MiB GPT disk: 1 ESP 32 MiB at 1 MiB, 2 BIOS boot 1 MiB, 3 root to the end.
pub(crate) fn gpt_layout() -> DiskLayout {
    let sectors = 256 * MIB / 512;
    let last = sectors - 34;
    let p = |n, first: u64, last: u64, t: &str| GptPartition {
        number: n,
        first_lba: first,
        last_lba: last,
        type_guid: t.into(),
        part_guid: format!("1111111{n}-2222-4333-8444-555555555555"),
        name: format!("p{n}"),
        attributes: 0,
    };
    let mut esp = ext4(1, "/boot/efi", 32 * MIB, MIB);
    esp.fstype = "vfat".into();
    esp.uuid = "1234-ABCD".into();
    esp.features = FsFeatures::None;
    DiskLayout {
        disks: vec![Disk {
            name: "vda".into(),
            size_bytes: 256 * MIB,
            logical_sector: 512,
            physical_sector: 512,
            table: Some(PartitionTable::Gpt(GptTable {
                disk_guid: "3C2D1E0F-1A2B-4C3D-8E4F-5A6B7C8D9E0F".into(),
                first_usable: 34,
                last_usable: last,
                entries: 128,
                partitions: vec![
                    p(1, 2048, 67583, ESP_GUID),
                    p(2, 67584, 69631, BIOS_BOOT_GUID),
                    p(3, 69632, last, LINUX),
                ],
            })),
            mbr_boot_code: vec![0xAB; 440],
            ..Default::default()
        }],
        filesystems: vec![ext4(3, "/", (last + 1 - 69632) * 512, 20 * MIB), esp],
        boot: BootInfo {
            esp: Some(part(1)),
            bios_boot: Some(part(2)),
            bios_boot_bytes: vec![0xC3; MIB as usize],
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn larger_disk_grows_the_root_and_keeps_the_rest() {
    let l = gpt_layout();
    let p = RestorePlan::new(&l, "/dev/sdb", 512 * MIB, 512).unwrap();
    assert_eq!(
        p.table,
        TablePlan::Gpt {
            disk_guid: "3C2D1E0F-1A2B-4C3D-8E4F-5A6B7C8D9E0F".into()
        }
    );
    let nums: Vec<_> = p
        .partitions
        .iter()
        .map(|x| (x.number, x.first_lba))
        .collect();
    assert_eq!(nums, [(1, 2048), (2, 67584), (3, 69632)]);
    assert_eq!(p.partitions[0].last_lba, 67583);
    assert_eq!(p.partitions[2].last_lba, 512 * MIB / 512 - 34);
    let r = p.resized.clone().unwrap();
    assert_eq!(r.number, 3);
    assert!(r.new_bytes > r.old_bytes);
    // Root first, then by depth; the root is mkfs'd for its new size.
    assert_eq!(p.filesystems[0].mount_point, "/");
    assert_eq!(p.filesystems[1].mount_point, "/boot/efi");
    assert!(
        p.filesystems[0]
            .mkfs
            .as_ref()
            .unwrap()
            .contains(&"-i".to_string())
    );
    assert_eq!(p.boot.bios_boot, Some((2, MIB)));
    assert!(p.boot.mbr_boot_code);
    assert_eq!(p.boot.esp, Some((1, "/boot/efi".into())));
    assert_eq!(p.boot.grub_install, None);
    let text = p.to_string();
    assert!(text.contains("grows"), "{text}");
    assert!(text.contains("BIOS boot (raw bytes)"), "{text}");
    // Serializes.
    let json = serde_json::to_string(&p).unwrap();
    let back: RestorePlan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn same_size_changes_nothing() {
    let l = gpt_layout();
    let p = RestorePlan::new(&l, "x", 256 * MIB, 512).unwrap();
    assert_eq!(p.resized, None);
    assert!(
        p.filesystems[0]
            .mkfs
            .as_ref()
            .unwrap()
            .contains(&"-N".to_string())
    );
}

#[test]
fn smaller_disk_shrinks_when_the_data_fits_else_refuses_with_numbers() {
    let l = gpt_layout();
    let p = RestorePlan::new(&l, "x", 100 * MIB, 512).unwrap();
    let r = p.resized.unwrap();
    assert!(r.new_bytes < r.old_bytes);
    let e = RestorePlan::new(&l, "small.img", 70 * MIB, 512).unwrap_err();
    assert!(e.0.contains("too small") && e.0.contains("20.0 MiB"), "{e}");
    let e = RestorePlan::new(&l, "tiny.img", 16 * MIB, 512).unwrap_err();
    assert!(e.0.contains("partition 1 ends at byte"), "{e}");
}

#[test]
fn no_layout_and_unsupported_are_refused() {
    let none = DiskLayout {
        none: Some("a plain directory was captured".into()),
        ..Default::default()
    };
    let e = RestorePlan::new(&none, "x", MIB, 512).unwrap_err();
    assert!(e.0.contains("--to DIR"), "{e}");
    let mut l = gpt_layout();
    l.unsupported.push("/ is on LVM".into());
    assert!(
        RestorePlan::new(&l, "x", 512 * MIB, 512)
            .unwrap_err()
            .0
            .contains("LVM")
    );
}

#[test]
fn other_sector_size_needs_grub_install() {
    let l = gpt_layout();
    let p = RestorePlan::new(&l, "x", 512 * MIB, 4096).unwrap();
    assert_eq!(p.partitions[0].first_lba, 256);
    assert!(p.boot.grub_install.is_some());
    assert_eq!(p.boot.bios_boot, None);
}

#[test]
fn mbr_with_logical_last_grows_extended_and_logical() {
    let l = mbr_layout();
    let p = RestorePlan::new(&l, "x", 512 * MIB, 512).unwrap();
    let end = 512 * MIB / 512 - 1;
    assert_eq!(p.resized.as_ref().unwrap().number, 5);
    assert_eq!(p.partitions[1].last_lba, end);
    assert_eq!(p.partitions[2].last_lba, end);
    assert_eq!(p.partitions[0].last_lba, 2048 + 204800 - 1);
    assert!(
        p.notes.iter().any(|n| n.contains("partition 5")),
        "{:?}",
        p.notes
    );
    assert_eq!(p.swaps.len(), 1);
    assert!(p.to_string().contains("0xc0ffee01"));
}

/// 256 MiB MBR disk: 1 root (bootable) 100 MiB, 2 extended to the end holding 5 swap.
pub(super) fn mbr_layout() -> DiskLayout {
    let sectors = (256 * MIB / 512) as u32;
    DiskLayout {
        disks: vec![Disk {
            name: "sda".into(),
            size_bytes: 256 * MIB,
            logical_sector: 512,
            table: Some(PartitionTable::Mbr(MbrTable {
                signature: 0xC0FFEE01,
                partitions: vec![
                    MbrPartition {
                        number: 1,
                        bootable: true,
                        type_byte: 0x83,
                        start_lba: 2048,
                        sectors: 204800,
                        ..Default::default()
                    },
                    MbrPartition {
                        number: 2,
                        type_byte: 0x05,
                        start_lba: 206848,
                        sectors: sectors - 206848,
                        extended: true,
                        ..Default::default()
                    },
                    MbrPartition {
                        number: 5,
                        type_byte: 0x82,
                        start_lba: 208896,
                        sectors: sectors - 208896,
                        logical: true,
                        ..Default::default()
                    },
                ],
            })),
            ..Default::default()
        }],
        filesystems: vec![FsRecord {
            device: PartRef {
                disk: 0,
                partition: Some(1),
                ..Default::default()
            },
            ..ext4(1, "/", 100 * MIB, 10 * MIB)
        }],
        swaps: vec![SwapRecord {
            device: PartRef {
                disk: 0,
                partition: Some(5),
                ..Default::default()
            },
            uuid: "u".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn fs_for_picks_the_deepest_mount() {
    let l = gpt_layout();
    let p = RestorePlan::new(&l, "x", 512 * MIB, 512).unwrap();
    assert_eq!(p.fs_for("/var/log/osimage-restore.log"), Some(0));
    assert_eq!(p.fs_for("/boot/efi/EFI"), Some(1));
    assert!(under("/boot/efi", "/boot/efi") && !under("/boot/efix", "/boot/efi"));
}

/// 1 GiB GPT disk: 1 BIOS boot 1 MiB at 1 MiB, 2 /boot ext4 200 MiB (10 MiB used), 3 root to
/// the end (20 MiB used).
fn boot_and_root_layout() -> DiskLayout {
    let mut l = gpt_layout();
    let sectors = 1024 * MIB / 512;
    let last = sectors - 34;
    let Some(PartitionTable::Gpt(t)) = &mut l.disks[0].table else {
        unreachable!()
    };
    t.last_usable = last;
    t.partitions[0].type_guid = BIOS_BOOT_GUID.into();
    (t.partitions[0].first_lba, t.partitions[0].last_lba) = (2048, 4095);
    t.partitions[1].type_guid = LINUX.into();
    (t.partitions[1].first_lba, t.partitions[1].last_lba) = (4096, 4096 + 200 * 2048 - 1);
    (t.partitions[2].first_lba, t.partitions[2].last_lba) = (202 * 2048, last);
    l.disks[0].size_bytes = 1024 * MIB;
    l.filesystems = vec![
        ext4(3, "/", (last + 1 - 202 * 2048) * 512, 20 * MIB),
        ext4(2, "/boot", 200 * MIB, 10 * MIB),
    ];
    l.boot.esp = None;
    l.boot.bios_boot = Some(part(1));
    l
}

#[test]
fn earlier_partitions_shrink_and_later_ones_move_when_the_last_cannot_absorb_it() {
    let l = boot_and_root_layout();
    let p = RestorePlan::new(&l, "small.img", 200 * MIB, 512).unwrap();
    let spans: Vec<(u32, u64, u64)> = p
        .partitions
        .iter()
        .map(|x| (x.number, x.first_lba, x.last_lba))
        .collect();
    // The root needs 36 MiB (20 + 16 headroom): it would end at 238 MiB on a 200 MiB disk,
    // so /boot gives up 39 MiB (38 MiB + GPT's backup, rounded up to whole MiB).
    assert_eq!(
        spans,
        vec![
            (1, 2048, 4095),
            (2, 4096, 4096 + 161 * 2048 - 1),
            (3, 163 * 2048, 200 * 2048 - 34)
        ]
    );
    assert_eq!(
        p.shrunk,
        vec![Resize {
            number: 2,
            old_bytes: 200 * MIB,
            new_bytes: 161 * MIB
        }]
    );
    let r = p.resized.clone().unwrap();
    assert_eq!(
        (r.number, r.old_bytes),
        (3, (1024 * 2048 - 34 + 1 - 202 * 2048) * 512)
    );
    let text = p.to_string();
    assert!(text.contains("shrinks 200.0 MiB → 161.0 MiB"), "{text}");
    assert!(
        text.contains("partition 3 moves from sector 413696 to 333824"),
        "{text}"
    );
    // /boot is made for its new size.
    let boot = p
        .filesystems
        .iter()
        .find(|f| f.mount_point == "/boot")
        .unwrap();
    assert_eq!(boot.size_bytes, 161 * MIB);
    assert!(boot.mkfs.as_ref().unwrap().contains(&"-i".to_string()));

    // 60 MiB: even /boot at its 26 MiB minimum leaves the root short.
    let e = RestorePlan::new(&l, "tiny.img", 60 * MIB, 512).unwrap_err();
    assert!(e.0.contains("even with partition(s) 2 shrunk"), "{e}");
    assert!(e.0.contains("a disk of at least"), "{e}");
    // Nothing moves in front of the BIOS boot partition: the ESP before it in gpt_layout stays.
    let e = RestorePlan::new(&gpt_layout(), "tiny.img", 16 * MIB, 512).unwrap_err();
    assert!(e.0.contains("partition 1 ends at byte"), "{e}");
}

/// A plan on `gpt_layout` (1 GiB target), for tests elsewhere in `restore`.
pub(crate) fn plan_for_tests() -> RestorePlan {
    RestorePlan::new(&gpt_layout(), "t", 1 << 30, 512).expect("plan")
}

/// Layout records are image data (found by fuzzing: overlapping partitions overflowed the
/// shrink arithmetic): inconsistent ones are refused with what is wrong, never a panic.
#[test]
fn inconsistent_or_impossible_partition_geometry_is_refused() {
    let with = |edit: &dyn Fn(&mut Vec<GptPartition>)| {
        let mut l = gpt_layout();
        if let Some(PartitionTable::Gpt(t)) = &mut l.disks[0].table {
            edit(&mut t.partitions);
        }
        RestorePlan::new(&l, "/dev/vdb", 128 * MIB, 512)
            .unwrap_err()
            .to_string()
    };
    let e = with(&|p| p[1].first_lba = 60000);
    assert!(
        e.contains("the layout record is inconsistent: partitions 1 and 2 overlap"),
        "{e}"
    );
    let e = with(&|p| p[0].last_lba = 1000);
    assert!(
        e.contains("partition 1 ends (sector 1000) before it starts (sector 2048)"),
        "{e}"
    );
    let e = with(&|p| p[2].first_lba = u64::MAX / 2);
    assert!(
        e.contains("a partition starts at an impossible sector"),
        "{e}"
    );
    let e = with(&|p| p[2].last_lba = u64::MAX);
    assert!(
        e.contains("a partition ends at an impossible sector"),
        "{e}"
    );
}

#[test]
fn the_plan_says_how_much_data_it_writes() {
    let p = plan_for_tests();
    let text = p.to_string();
    let want = format!("data to write: about {}", size(21 * MIB));
    assert!(text.contains(&want), "{want} not in:\n{text}");
}
