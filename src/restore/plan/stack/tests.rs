//! The plan of an LVM system (issue #19): the VG recreated from its metadata on the planned
//! partition, one LV taking up a change in size, filesystems and swap on /dev/mapper paths.

use super::super::tests::{MIB, ext4, gpt_layout, part};
use super::super::*;
use super::{PlanDev, StackStep};
use crate::layout::stack::lvm;
use crate::layout::{LogicalVolume, PartRef, PhysicalVolume, SwapRecord, VolumeGroup};

/// LVM 2.03.16's metadata of VG `vgsys` (root 10, swap 3, home 1 extents of 4 MiB on one
/// 64 MiB PV), made by `vgcfgbackup` (tests/fixtures/lvm/README.md).
const VGSYS: &str = include_str!("../../../../tests/fixtures/lvm/vgsys.vg");

fn dm(n: u32) -> PartRef {
    PartRef {
        disk: 0,
        partition: None,
        name: format!("dm-{n}"),
        dev: 0,
    }
}

/// `gpt_layout()` with partition 3 a PV of `vgsys` (resized to the partition: home took the
/// rest): / on root (dm-0), swap on swap (dm-1), /home on home (dm-2, 8 MiB used).
pub(crate) fn lvm_layout() -> DiskLayout {
    let mut l = gpt_layout();
    let p3 = l.filesystems[0].size_bytes;
    let pv = lvm::PvTarget {
        pv_uuid: "YLIRXm-gyvO-0lEQ-ZraS-b5TB-weUw-r7M4XQ".into(),
        dev_size_sectors: p3 / 512,
        device: "/dev/vda3".into(),
    };
    let meta0 = lvm::parse_vg(VGSYS).unwrap();
    let grow = lvm::fill_delta(&meta0, "home", std::slice::from_ref(&pv)).unwrap();
    let grown = lvm::Grow {
        lv: "home".into(),
        delta_extents: grow,
    };
    let metadata = lvm::adapt_for_restore(VGSYS, &[pv], Some(grown)).unwrap();
    let meta = lvm::parse_vg(&metadata).unwrap();
    let lvs = meta
        .lvs
        .iter()
        .enumerate()
        .map(|(i, lv)| LogicalVolume {
            name: lv.name.clone(),
            uuid: lv.id.clone(),
            kernel_name: format!("dm-{i}"),
            extents: lv.extents(),
            kind: lv.kind.name().into(),
            recreatable: lv.recreatable(),
            hidden: lv.hidden,
            tags: lv.tags.clone(),
        })
        .collect();
    let pv = &meta.pvs[0];
    l.stack.vgs.push(VolumeGroup {
        name: meta.name.clone(),
        uuid: meta.id.clone(),
        extent_bytes: meta.extent_size * 512,
        pvs: vec![PhysicalVolume {
            key: pv.key.clone(),
            uuid: pv.id.clone(),
            device: part(3),
            pe_start_bytes: pv.pe_start * 512,
            pe_count: pv.pe_count,
            size_bytes: pv.dev_size * 512,
        }],
        lvs,
        tags: meta.tags.clone(),
        metadata,
    });
    let mut root = ext4(3, "/", 40 * MIB, 20 * MIB);
    root.device = dm(0);
    let mut home = ext4(3, "/home", 164 * MIB, 8 * MIB);
    home.device = dm(2);
    home.uuid = "00000009-0000-4000-8000-000000000000".into();
    l.filesystems[0] = root;
    l.filesystems.push(home);
    l.swaps.push(SwapRecord {
        device: dm(1),
        uuid: "00000008-0000-4000-8000-000000000000".into(),
        page_size: 4096,
        size_bytes: 12 * MIB,
        in_fstab: true,
        ..Default::default()
    });
    l
}

pub(crate) fn vg_of(p: &RestorePlan) -> &VgPlan {
    let vgs: Vec<&VgPlan> = p
        .stack
        .iter()
        .filter_map(|s| match s {
            StackStep::Vg(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(vgs.len(), 1, "{:?}", p.stack);
    vgs[0]
}

fn lv_sizes(p: &RestorePlan) -> Vec<(String, u64, u64)> {
    vg_of(p).lvs.clone()
}

#[test]
fn the_same_disk_recreates_the_vg_unchanged_with_everything_on_its_lvs() {
    let l = lvm_layout();
    let vg = &l.stack.vgs[0];
    assert_eq!(
        vg.pvs[0].pe_count, 55,
        "the fixture: 221 MiB of 4 MiB extents"
    );
    let p = RestorePlan::new(&l, "/dev/sdb", 256 * MIB, 512).unwrap();
    let v = vg_of(&p);
    let on = PlanDev::Part {
        disk: "vda".into(),
        partition: 3,
    };
    assert_eq!(
        (v.name.as_str(), v.pvs.clone()),
        ("vgsys", vec![(vg.pvs[0].uuid.clone(), on)])
    );
    // Same size: the metadata goes back as recorded.
    assert_eq!(
        lvm::parse_vg(&v.metadata).unwrap(),
        lvm::parse_vg(&vg.metadata).unwrap()
    );
    assert!(lv_sizes(&p).iter().all(|(_, old, new)| old == new));
    let root = &p.filesystems[0];
    assert_eq!(root.mount_point, "/");
    assert_eq!(root.volume.as_deref(), Some("/dev/mapper/vgsys-root"));
    assert_eq!((root.partition, root.size_bytes), (None, 40 * MIB));
    assert!(root.mkfs.is_some());
    assert_eq!(p.swaps[0].volume.as_deref(), Some("/dev/mapper/vgsys-swap"));
    assert_eq!(p.partitions[2].content, "LVM PV of VG vgsys");
    let text = p.to_string();
    assert!(
        text.contains(
            "LVM volume group vgsys (UUID xA1djd-XRLR-hkh0-PakQ-rHit-ifke-2k5rJW) on partition 3"
        ),
        "{text}"
    );
    assert!(text.contains("on /dev/mapper/vgsys-home"), "{text}");
}

#[test]
fn a_larger_disk_grows_the_root_lv_and_lays_the_pv_out_anew_when_another_lv_follows_it() {
    let l = lvm_layout();
    let p = RestorePlan::new(&l, "/dev/sdb", 512 * MIB, 512).unwrap();
    let sizes = lv_sizes(&p);
    // The PV's partition grew by 256 MiB: 64 more extents, all to root.
    assert_eq!(sizes[0], ("root".into(), 40 * MIB, 296 * MIB));
    assert_eq!(sizes[1], ("swap".into(), 12 * MIB, 12 * MIB));
    assert_eq!(sizes[2], ("home".into(), 168 * MIB, 168 * MIB));
    let meta = lvm::parse_vg(&vg_of(&p).metadata).unwrap();
    assert_eq!(meta.pvs[0].pe_count, 55 + 64);
    // Packed in their old order, each one linear segment: root 0..74, swap 74..77, home
    // 77..119; UUIDs and tags as recorded.
    let placed: Vec<(&str, u64, u64, &str)> = meta
        .lvs
        .iter()
        .map(|lv| {
            let seg = &lv.segments[0];
            (
                lv.name.as_str(),
                seg.stripes[0].1,
                seg.extent_count,
                lv.id.as_str(),
            )
        })
        .collect();
    let before = lvm::parse_vg(&l.stack.vgs[0].metadata).unwrap();
    assert_eq!(
        placed,
        [
            ("root", 0, 74, before.lvs[0].id.as_str()),
            ("swap", 74, 3, before.lvs[1].id.as_str()),
            ("home", 77, 42, before.lvs[2].id.as_str())
        ]
    );
    assert_eq!(meta.lvs[0].tags, ["rootfs"]);
    assert!(meta.lvs.iter().all(|lv| lv.segments.len() == 1));
    let root = &p.filesystems[0];
    assert_eq!(
        (root.mount_point.as_str(), root.size_bytes),
        ("/", 296 * MIB)
    );
    assert!(
        p.to_string()
            .contains("LV root: 296.0 MiB (was 40.0 MiB: grows)"),
        "{p}"
    );
}

#[test]
fn a_smaller_disk_shrinks_the_last_lv_while_its_data_fits_else_refuses_with_numbers() {
    let l = lvm_layout();
    let p = RestorePlan::new(&l, "/dev/sdb", 128 * MIB, 512).unwrap();
    let home = &lv_sizes(&p)[2];
    assert!(home.2 < home.1 && home.2 >= 24 * MIB, "{home:?}");
    let e = RestorePlan::new(&l, "/dev/sdb", 100 * MIB, 512).unwrap_err();
    assert!(e.0.contains("too small"), "{e}");
    assert!(e.0.contains("needs at least"), "{e}");
}

/// Debian's order, root first and another LV after it: when only the root LV's filesystem
/// has room to give, a smaller disk shrinks the PV's partition by what root can give, and the
/// root LV gives it (its PV laid out anew).
#[test]
fn a_smaller_disk_shrinks_the_root_lv_when_another_lv_follows_it() {
    let mut l = lvm_layout();
    l.filesystems[0].used_bytes = Some(4 * MIB); // root: 40 MiB, needs 20 MiB
    let home = l.filesystems.iter_mut().find(|f| f.mount_point == "/home");
    home.unwrap().used_bytes = Some(168 * MIB); // home: full
    let p = RestorePlan::new(&l, "/dev/sdb", 240 * MIB, 512)
        .unwrap_or_else(|e| panic!("a 16 MiB smaller disk: {e}"));
    let sizes = lv_sizes(&p);
    assert_eq!(sizes[0], ("root".into(), 40 * MIB, 24 * MIB), "{sizes:?}");
    assert_eq!(sizes[2], ("home".into(), 168 * MIB, 168 * MIB), "{sizes:?}");
    let meta = lvm::parse_vg(&vg_of(&p).metadata).unwrap();
    assert_eq!(meta.pvs[0].pe_count, 55 - 4);
    // past what root can give: refused with numbers
    let e = RestorePlan::new(&l, "/dev/sdb", 200 * MIB, 512).unwrap_err();
    assert!(e.0.contains("too small"), "{e}");
    // With a partition before the PV that may shrink too (no BIOS boot partition pins the
    // ESP), the PV's own minimum still counts what root gives: the ESP's 15 MiB of slack
    // alone would not make room for 16 MiB.
    l.boot.bios_boot = None;
    let p = RestorePlan::new(&l, "/dev/sdb", 240 * MIB, 512)
        .unwrap_or_else(|e| panic!("a 16 MiB smaller disk, ESP shrinkable: {e}"));
    assert_eq!(lv_sizes(&p)[0].2, 24 * MIB, "{p}");
}

/// `lvm_layout()` with its PV inside LUKS2 container `mapping` on partition 3 (Debian's
/// encrypted LVM).
pub(crate) fn luks_lvm_layout(mapping: &str) -> DiskLayout {
    let mut l = lvm_layout();
    l.stack.luks.push(crate::layout::LuksVolume {
        name: "dm-7".into(),
        mapping: mapping.into(),
        device: part(3),
        version: 2,
        uuid: "0b0b0b0b-0000-4000-8000-000000000000".into(),
        data_offset_bytes: 16 * MIB,
        format_args: vec![
            "--type=luks2".into(),
            "--uuid=0b0b0b0b-0000-4000-8000-000000000000".into(),
            "--offset=32768".into(),
        ],
        ..Default::default()
    });
    l.stack.vgs[0].pvs[0].device = PartRef {
        partition: None,
        ..part(7)
    };
    l.stack.vgs[0].pvs[0].device.name = "dm-7".into();
    l
}

#[test]
fn a_vg_on_luks_is_planned_on_the_opened_mapping_after_the_container() {
    let l = luks_lvm_layout("vda3_crypt");
    let p = RestorePlan::new(&l, "/dev/sdb", 256 * MIB, 512).unwrap();
    let StackStep::Luks(luks) = &p.stack[0] else {
        panic!("{:?}", p.stack)
    };
    assert_eq!(luks.mapping, "vda3_crypt");
    assert_eq!(
        luks.on,
        PlanDev::Part {
            disk: "vda".into(),
            partition: 3
        }
    );
    let v = vg_of(&p);
    assert_eq!(v.pvs[0].1, PlanDev::Volume("/dev/mapper/vda3_crypt".into()));
    // The PV is 16 MiB (4 extents) smaller than the partition: home gives them back.
    let meta = lvm::parse_vg(&v.metadata).unwrap();
    assert_eq!(meta.pvs[0].pe_count, 55 - 4);
    assert_eq!(lv_sizes(&p)[2], ("home".into(), 168 * MIB, 152 * MIB));
    assert_eq!(p.partitions[2].content, "LUKS2 vda3_crypt");
    let text = p.to_string();
    assert!(
        text.contains("LUKS vda3_crypt (UUID 0b0b0b0b-0000-4000-8000-000000000000) on partition 3"),
        "{text}"
    );
    assert!(text.contains("a NEW master key"), "{text}");
}

/// `several::tests::two_disks()` with / on a RAID1 `md0` of vda3 and vdb1 (no /home).
pub(crate) fn raid1_layout() -> DiskLayout {
    let mut l = super::super::several::tests::two_disks();
    let home = l.filesystems.pop().unwrap();
    let md0 = PartRef {
        disk: 0,
        partition: None,
        name: "md0".into(),
        dev: 0,
    };
    l.filesystems[0].device = md0;
    l.stack.md.push(crate::layout::MdArray {
        name: "md0".into(),
        path: "/dev/md0".into(),
        metadata: "1.2".into(),
        uuid: "11111111:22222222:33333333:44444444".into(),
        array_name: "host:0".into(),
        level: "raid1".into(),
        raid_disks: 2,
        bitmap: true,
        data_offset_sectors: 2048,
        members: vec![
            crate::layout::MdMember {
                role: 0,
                device: part(3),
            },
            crate::layout::MdMember {
                role: 1,
                device: home.device.clone(),
            },
        ],
        create_args: vec!["--metadata=1.2".into(), "--level=raid1".into()],
        ..Default::default()
    });
    l
}

#[test]
fn a_raid1_root_is_made_on_both_disks_and_sized_by_the_smaller_member() {
    use super::super::several::{DiskTarget, plan_disks, used_disks};
    let l = raid1_layout();
    assert_eq!(used_disks(&l), [0, 1], "both members' disks are in use");
    let t = |source: &str, device: &str, size| DiskTarget {
        source: source.into(),
        device: device.into(),
        size_bytes: size,
        sector: 512,
    };
    let plans = plan_disks(
        &l,
        &[
            t("vda", "/dev/sdb", 1 << 30),
            t("vdb", "/dev/sdc", 256 * MIB),
        ],
    )
    .unwrap();
    let StackStep::Md(m) = &plans[0].stack[0] else {
        panic!("{:?}", plans[0].stack)
    };
    let member = |disk: &str, partition| PlanDev::Part {
        disk: disk.into(),
        partition,
    };
    assert_eq!(m.members, [member("vda", 3), member("vdb", 1)]);
    // vdb1 grows to the end of 256 MiB (2048 .. last usable): the array is that, less the
    // recorded 1 MiB data offset and mdadm's reserve, in whole MiB.
    let vdb1 = (256 * MIB / 512 - 34 - 2048) * 512;
    assert_eq!(m.size_bytes, (vdb1 - 2 * MIB) / MIB * MIB);
    let root = &plans[0].filesystems[0];
    assert_eq!(
        (root.mount_point.as_str(), root.volume.as_deref()),
        ("/", Some("/dev/md0"))
    );
    assert_eq!(root.size_bytes, m.size_bytes);
    assert!(plans[1].filesystems.is_empty());
    assert_eq!(plans[0].partitions[2].content, "MD /dev/md0 member");
    assert_eq!(plans[1].partitions[0].content, "MD /dev/md0 member");
    assert!(
        plans[0].to_string().contains("MD /dev/md0 raid1"),
        "{}",
        plans[0]
    );
    // Without the second disk, / cannot be made.
    let e = plan_disks(&l, &[t("vda", "/dev/sdb", 1 << 30)]).unwrap_err();
    assert!(e.0.contains("vdb1"), "{e}");
}
