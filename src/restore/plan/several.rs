//! Several disks (issue #11, docs/RESTORE.md "Several disks"): an image of a machine whose
//! filesystems span more than one disk is restored onto a mapping, recorded disk → target
//! (`--map vdb=/dev/sdc`, `osimage.map=`), one `RestorePlan` per disk, the system disk's
//! first. Without a mapping, the unattended rule pairs recorded disks with empty disks by
//! size (`auto_pairs`).

use super::{PlanError, RestorePlan, system_disk};
use crate::layout::DiskLayout;

/// One recorded disk and the device it is restored onto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskTarget {
    /// The recorded disk's kernel name (`vdb`; `/dev/vdb` is accepted too).
    pub source: String,
    /// The target as the user named it (`/dev/sdc`, `disk2.img`).
    pub device: String,
    pub size_bytes: u64,
    pub sector: u32,
}

/// Parses `SOURCE=DEVICE` (`vdb=/dev/sdc`).
pub fn parse_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
            Ok((a.trim().to_string(), b.trim().to_string()))
        }
        _ => Err(format!(
            "--map {s:?}: expected RECORDED_DISK=DEVICE, e.g. vdb=/dev/sdc (the recorded \
             disks are listed by `osimage info IMAGE`)"
        )),
    }
}

/// The index of the recorded disk named `name` (`vdb` or `/dev/vdb`).
pub fn disk_index(layout: &DiskLayout, name: &str) -> Result<u32, PlanError> {
    let bare = name.strip_prefix("/dev/").unwrap_or(name);
    layout
        .disks
        .iter()
        .position(|d| d.name == bare)
        .map(|i| i as u32)
        .ok_or_else(|| {
            let names: Vec<&str> = layout.disks.iter().map(|d| d.name.as_str()).collect();
            PlanError(format!(
                "the image recorded no disk {name:?} (it recorded: {})",
                names.join(", ")
            ))
        })
}

/// The recorded disks that hold a filesystem or swap the captured system uses, or a part of
/// the block stack under one (both disks of a RAID1), in record order.
pub fn used_disks(layout: &DiskLayout) -> Vec<u32> {
    let mut v: Vec<u32> = layout
        .filesystems
        .iter()
        .map(|f| &f.device)
        .chain(layout.swaps.iter().map(|s| &s.device))
        .flat_map(|r| layout.stack.bottom(r))
        .map(|r| r.disk)
        .filter(|&d| (d as usize) < layout.disks.len())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One plan per mapped disk, the system disk's first. Every mapped disk must be a recorded
/// disk holding something, each at most once, each target named once, and the system disk
/// among them.
pub fn plan_disks(
    layout: &DiskLayout,
    targets: &[DiskTarget],
) -> Result<Vec<RestorePlan>, PlanError> {
    let system = system_disk(layout)?;
    let used = used_disks(layout);
    let mut idx = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let n = disk_index(layout, &t.source)?;
        if idx.contains(&n) {
            return Err(PlanError(format!(
                "recorded disk {} is mapped twice",
                t.source
            )));
        }
        if targets[..i].iter().any(|o| o.device == t.device) {
            return Err(PlanError(format!(
                "{} is the target of two recorded disks",
                t.device
            )));
        }
        if !used.contains(&n) {
            return Err(PlanError(format!(
                "recorded disk {} holds no filesystem or swap of the captured system: \
                 nothing to restore onto {}",
                t.source, t.device
            )));
        }
        idx.push(n);
    }
    if !idx.contains(&system) {
        return Err(PlanError(format!(
            "the system disk {} (it holds /) is not mapped: add --target DEVICE or --map {}=DEVICE",
            layout.disks[system as usize].name, layout.disks[system as usize].name
        )));
    }
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&i| (idx[i] != system, idx[i]));
    let mut plans = order
        .into_iter()
        .map(|i| {
            let t = &targets[i];
            RestorePlan::for_disk(layout, idx[i], &idx, &t.device, t.size_bytes, t.sector)
        })
        .collect::<Result<Vec<_>, _>>()?;
    super::stack::complete(layout, &mut plans)?;
    Ok(plans)
}

/// The unattended rule for an image of several disks: when there are exactly as many empty
/// disks as recorded disks in use, the recorded disks, largest first, go onto the empty disks,
/// largest first (ties: in the order given, which is kernel-name order). `empty`: (size,
/// sector) of each candidate. Returns, per recorded disk in use (record order), the index of
/// its empty disk; `None` when the counts differ or a pair does not fit.
pub fn auto_pairs(layout: &DiskLayout, empty: &[(u64, u32)]) -> Option<Vec<(u32, usize)>> {
    let used = used_disks(layout);
    if used.len() < 2 || used.len() != empty.len() {
        return None;
    }
    let mut rec: Vec<u32> = used.clone();
    rec.sort_by_key(|&d| std::cmp::Reverse(layout.disks[d as usize].size_bytes));
    let mut cand: Vec<usize> = (0..empty.len()).collect();
    cand.sort_by_key(|&i| std::cmp::Reverse(empty[i].0));
    let pairs: Vec<(u32, usize)> = rec.into_iter().zip(cand).collect();
    for &(d, c) in &pairs {
        let (size, sector) = empty[c];
        RestorePlan::for_disk(layout, d, &used, "candidate", size, sector).ok()?;
    }
    let mut pairs = pairs;
    pairs.sort_by_key(|p| p.0);
    Some(pairs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::gpt_layout;
    use super::*;
    use crate::layout::{Disk, FsRecord, GptPartition, GptTable, PartRef, PartitionTable};

    const MIB: u64 = 1 << 20;

    /// `gpt_layout` plus a 128 MiB disk `vdb` with /home on its partition 1.
    pub(crate) fn two_disks() -> DiskLayout {
        let mut l = gpt_layout();
        let sectors = 128 * MIB / 512;
        l.disks.push(Disk {
            name: "vdb".into(),
            size_bytes: 128 * MIB,
            logical_sector: 512,
            physical_sector: 512,
            table: Some(PartitionTable::Gpt(GptTable {
                disk_guid: "99999999-1A2B-4C3D-8E4F-5A6B7C8D9E0F".into(),
                first_usable: 34,
                last_usable: sectors - 34,
                entries: 128,
                partitions: vec![GptPartition {
                    number: 1,
                    first_lba: 2048,
                    last_lba: sectors - 34,
                    type_guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                    part_guid: "88888888-2222-4333-8444-555555555555".into(),
                    name: "home".into(),
                    attributes: 0,
                }],
            })),
            ..Default::default()
        });
        let mut home = l.filesystems[0].clone();
        home.device = PartRef {
            disk: 1,
            partition: Some(1),
            name: "vdb1".into(),
            dev: 0,
        };
        home.uuid = "77777777-0000-4000-8000-000000000000".into();
        home.mount_point = "/home".into();
        home.size_bytes = (sectors - 34 - 2048 + 1) * 512;
        home.used_bytes = Some(MIB);
        l.filesystems.push(FsRecord { ..home });
        l
    }

    fn t(source: &str, device: &str, size: u64) -> DiskTarget {
        DiskTarget {
            source: source.into(),
            device: device.into(),
            size_bytes: size,
            sector: 512,
        }
    }

    #[test]
    fn each_mapped_disk_gets_its_own_plan_system_disk_first() {
        let l = two_disks();
        let plans = plan_disks(
            &l,
            &[
                t("vdb", "/dev/sdc", 256 * MIB),
                t("/dev/vda", "/dev/sdb", GIB),
            ],
        )
        .unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].source_disk, "vda");
        assert_eq!(plans[0].target.device, "/dev/sdb");
        assert_eq!(plans[1].source_disk, "vdb");
        let mps: Vec<&str> = plans[1]
            .filesystems
            .iter()
            .map(|f| f.mount_point.as_str())
            .collect();
        assert_eq!(mps, ["/home"]);
        // /home is restored onto its own disk: not "left out" on the system disk.
        assert!(
            !plans[0].notes.iter().any(|n| n.contains("/home")),
            "{:?}",
            plans[0].notes
        );
        assert!(plans[1].boot.esp.is_none() && plans[1].boot.bios_boot.is_none());
        // the home disk grew to 256 MiB: its only partition grows
        assert_eq!(plans[1].resized.as_ref().map(|r| r.number), Some(1));
    }

    /// GRUB on both disks (a RAID1's): the second disk has GRUB's boot code and a BIOS boot
    /// partition of its own, whose bytes the capture did not keep (it keeps the boot disk's):
    /// its plan has grub-install run on it; without boot code, nothing is installed there.
    #[test]
    fn a_second_disk_with_grub_boot_code_and_a_bios_boot_partition_gets_grub_install() {
        let mut l = two_disks();
        let Some(PartitionTable::Gpt(t1)) = &mut l.disks[1].table else {
            panic!("vdb is GPT");
        };
        t1.partitions[0].first_lba = 4096;
        t1.partitions.insert(
            0,
            GptPartition {
                number: 2,
                first_lba: 2048,
                last_lba: 4095,
                type_guid: crate::layout::table::BIOS_BOOT_GUID.into(),
                part_guid: "88888888-2222-4333-8444-555555555556".into(),
                name: "bios".into(),
                attributes: 0,
            },
        );
        l.filesystems[1].size_bytes -= MIB;
        let targets = [t("vda", "/dev/sdb", GIB), t("vdb", "/dev/sdc", 256 * MIB)];
        let plans = plan_disks(&l, &targets).unwrap();
        assert_eq!(plans[1].boot.grub_install, None, "no boot code on vdb");
        l.disks[1].mbr_boot_code = vec![0xeb, 0x63, 0x90];
        let plans = plan_disks(&l, &targets).unwrap();
        let why = plans[1].boot.grub_install.as_deref().unwrap_or("");
        assert!(
            why.contains("vdb's BIOS boot partition 2") && why.contains("not captured"),
            "{why:?}"
        );
        assert_eq!(plans[1].boot.bios_boot, None);
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_disk_left_out_is_noted_and_bad_mappings_are_refused_with_names() {
        let l = two_disks();
        let one = plan_disks(&l, &[t("vda", "/dev/sdb", GIB)]).unwrap();
        assert!(
            one[0].notes.iter().any(|n| n.contains("/home")),
            "{:?}",
            one[0].notes
        );
        let e = plan_disks(&l, &[t("vdb", "/dev/sdc", GIB)]).unwrap_err();
        assert!(e.0.contains("system disk vda"), "{e}");
        let e =
            plan_disks(&l, &[t("vda", "/dev/sdb", GIB), t("sdz", "/dev/sdc", GIB)]).unwrap_err();
        assert!(e.0.contains("\"sdz\"") && e.0.contains("vda, vdb"), "{e}");
        let e =
            plan_disks(&l, &[t("vda", "/dev/sdb", GIB), t("vdb", "/dev/sdb", GIB)]).unwrap_err();
        assert!(e.0.contains("two recorded disks"), "{e}");
        let e =
            plan_disks(&l, &[t("vda", "/dev/sdb", GIB), t("vda", "/dev/sdc", GIB)]).unwrap_err();
        assert!(e.0.contains("mapped twice"), "{e}");
        assert!(parse_map("vdb=/dev/sdc").is_ok());
        assert!(parse_map("vdb").is_err() && parse_map("=/dev/x").is_err());
    }

    #[test]
    fn unattended_pairs_by_size_and_only_when_counts_match_and_all_fit() {
        let l = two_disks();
        // given in name order: the small disk first
        let p = auto_pairs(&l, &[(200 * MIB, 512), (GIB, 512)]).unwrap();
        assert_eq!(p, vec![(0, 1), (1, 0)]);
        assert!(
            auto_pairs(&l, &[(GIB, 512)]).is_none(),
            "one empty disk for two"
        );
        assert!(auto_pairs(&l, &[(GIB, 512), (GIB, 512), (GIB, 512)]).is_none());
        // the second-largest is too small for /home's partition table to fit
        assert!(auto_pairs(&l, &[(GIB, 512), (MIB, 512)]).is_none());
        assert!(
            auto_pairs(&gpt_layout(), &[(GIB, 512)]).is_none(),
            "one recorded disk"
        );
    }
}
