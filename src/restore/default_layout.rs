//! The default layout (docs/RESTORE.md "Default layout", issue #4): what a restore puts on a
//! disk for an image that recorded none (a plain directory was captured, layout "none"), when
//! the user asks for it (`--default-layout`, `osimage.default-layout=1`, or yes to the agent's
//! question).
//!
//! GPT, 1 MiB-aligned: partition 1 a 1 MiB BIOS boot partition (GRUB i386-pc's core image),
//! partition 2 a 512 MiB ESP (vfat), partition 3 an ext4 root filling the rest. Every GUID
//! and UUID is fresh. The layout is built as a `DiskLayout` so the one planner and applier
//! serve both cases; `RestorePlan::boot.default_layout` tells `apply` to write the tree's
//! `etc/fstab` for the new UUIDs and to install GRUB with the tree's own `grub-install`.

use super::plan::{Fresh, PlanError, RestorePlan, needed_bytes, size};
use crate::layout::table::{BIOS_BOOT_GUID, ESP_GUID};
use crate::layout::{
    BootInfo, Disk, DiskLayout, FsFeatures, FsRecord, GptPartition, GptTable, PartRef,
    PartitionTable,
};

const MIB: u64 = 1 << 20;
/// GPT type of a generic Linux filesystem (what Debian's installer gives `/`).
pub const LINUX_FS_GUID: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// Where each partition starts and how big the fixed ones are, in MiB.
pub const BIOS_BOOT_START_MIB: u64 = 1;
pub const BIOS_BOOT_MIB: u64 = 1;
pub const ESP_MIB: u64 = 512;
/// The root's mount options and the ESP's, as Debian's installer writes them.
const ROOT_OPTIONS: &str = "errors=remount-ro";
const ESP_OPTIONS: &str = "umask=0077";
/// The name the plan shows for the (synthetic) recorded disk.
pub const DISK_NAME: &str = "default-layout";

/// Fresh identities for one default layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identities {
    pub disk_guid: String,
    pub part_guids: [String; 3],
    /// ext4 UUID of `/`.
    pub root_uuid: String,
    /// FAT volume id of the ESP (`ABCD-1234`).
    pub esp_id: String,
}

impl Identities {
    /// 16 bytes per GUID/UUID (version 4, RFC 9562 §5.4) from `fresh` (the kernel's, or
    /// derived from `--seed`: `plan/draw.rs`), each under a label naming it.
    pub fn draw(fresh: Fresh<'_>) -> Result<Identities, PlanError> {
        let mut uuid = |what: &str| -> Result<String, PlanError> {
            let mut u = fresh(&format!("{DISK_NAME}: {what}"))?;
            u[6] = (u[6] & 0x0F) | 0x40;
            u[8] = (u[8] & 0x3F) | 0x80;
            Ok(crate::layout::probe::uuid_text(&u))
        };
        let disk_guid = uuid("disk GUID")?.to_ascii_uppercase();
        let part_guids = [
            uuid("partition 1 GUID")?.to_ascii_uppercase(),
            uuid("partition 2 GUID")?.to_ascii_uppercase(),
            uuid("partition 3 GUID")?.to_ascii_uppercase(),
        ];
        let root_uuid = uuid("root filesystem UUID")?;
        let id = fresh(&format!("{DISK_NAME}: ESP volume id"))?;
        let esp = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        Ok(Identities {
            disk_guid,
            part_guids,
            root_uuid,
            esp_id: format!("{:04X}-{:04X}", esp >> 16, esp & 0xFFFF),
        })
    }
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), PlanError> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(PlanError(format!("reading random bytes: {e}"))),
        }
    }
    Ok(())
}

/// The default layout for a disk of `size_bytes` with `sector`-byte sectors, holding a tree
/// with `data_bytes` of file data. `captured` is the image's record (its fstab is kept for the
/// display; `None` for an image without a layout record). Refuses, with the numbers, a disk
/// whose root partition could not hold the data.
pub fn layout(
    captured: Option<&DiskLayout>,
    size_bytes: u64,
    sector: u32,
    data_bytes: u64,
    ids: &Identities,
) -> Result<DiskLayout, PlanError> {
    let g = Geometry::new(size_bytes, sector);
    g.check_fits(size_bytes, data_bytes)?;
    let root = FsRecord {
        device: part_ref(3),
        fstype: "ext4".into(),
        uuid: ids.root_uuid.clone(),
        mount_point: "/".into(),
        mount_options: ROOT_OPTIONS.into(),
        pass: 1,
        in_fstab: true,
        features: FsFeatures::None,
        size_bytes: g.root_bytes(),
        used_bytes: Some(data_bytes),
        ..FsRecord::default()
    };
    let esp = FsRecord {
        device: part_ref(2),
        fstype: "vfat".into(),
        uuid: ids.esp_id.clone(),
        mount_point: "/boot/efi".into(),
        mount_options: ESP_OPTIONS.into(),
        pass: 2,
        in_fstab: true,
        features: FsFeatures::None,
        size_bytes: ESP_MIB * MIB,
        used_bytes: Some(0),
        ..FsRecord::default()
    };
    Ok(DiskLayout {
        none: None,
        disks: vec![g.disk(size_bytes, sector, ids)],
        filesystems: vec![root, esp],
        fstab: captured.map(|l| l.fstab.clone()).unwrap_or_default(),
        boot: BootInfo {
            uefi_capable: true,
            bios_capable: true,
            esp: Some(part_ref(2)),
            bios_boot: Some(part_ref(1)),
            ..BootInfo::default()
        },
        ..DiskLayout::default()
    })
}

/// Where the default layout's partitions go on one disk, in its sectors.
struct Geometry {
    /// Sector size in bytes.
    s: u64,
    /// Sectors GPT keeps at each end (128 entries × 128 bytes and a header).
    tail: u64,
    first_usable: u64,
    last_usable: u64,
    bios_first: u64,
    esp_first: u64,
    root_first: u64,
    root_last: u64,
}

impl Geometry {
    fn new(size_bytes: u64, sector: u32) -> Geometry {
        let s = u64::from(sector.max(512));
        let sectors = size_bytes / s;
        // GPT keeps 128 entries × 128 bytes and a header at each end.
        let tail = (128 * 128u64).div_ceil(s) + 1;
        let last_usable = sectors.saturating_sub(tail + 1);
        let mib = MIB / s;
        let bios_first = BIOS_BOOT_START_MIB * mib;
        let esp_first = bios_first + BIOS_BOOT_MIB * mib;
        Geometry {
            s,
            tail,
            first_usable: 1 + tail,
            last_usable,
            bios_first,
            esp_first,
            root_first: esp_first + ESP_MIB * mib,
            root_last: last_usable,
        }
    }

    /// Bytes the root partition gets.
    fn root_bytes(&self) -> u64 {
        (self.root_last + 1).saturating_sub(self.root_first) * self.s
    }

    /// Refuses, with the numbers, a disk whose root could not hold `data_bytes`.
    fn check_fits(&self, size_bytes: u64, data_bytes: u64) -> Result<(), PlanError> {
        let need = needed_bytes(data_bytes);
        let root_bytes = self.root_bytes();
        if self.root_last < self.root_first || root_bytes < need {
            let fixed = self.root_first * self.s + self.tail * self.s + MIB;
            return Err(PlanError(format!(
                "the disk ({}, {size_bytes} bytes) is too small for the default layout: after \
                 the BIOS boot partition and the {ESP_MIB} MiB ESP the root gets {}, but the \
                 image holds {} of data and needs at least {} (a disk of at least {} is needed)",
                size(size_bytes),
                size(root_bytes),
                size(data_bytes),
                size(need),
                size(fixed + need)
            )));
        }
        Ok(())
    }

    /// The disk with its GPT: BIOS boot, ESP, root.
    fn disk(&self, size_bytes: u64, sector: u32, ids: &Identities) -> Disk {
        let part = |n: u32, first: u64, last: u64, type_guid: &str, name: &str| GptPartition {
            number: n,
            first_lba: first,
            last_lba: last,
            type_guid: type_guid.into(),
            part_guid: ids.part_guids[n as usize - 1].clone(),
            name: name.into(),
            attributes: 0,
        };
        Disk {
            name: DISK_NAME.into(),
            size_bytes,
            logical_sector: sector,
            physical_sector: sector,
            table: Some(PartitionTable::Gpt(GptTable {
                disk_guid: ids.disk_guid.clone(),
                first_usable: self.first_usable,
                last_usable: self.last_usable,
                entries: 128,
                partitions: vec![
                    part(
                        1,
                        self.bios_first,
                        self.esp_first - 1,
                        BIOS_BOOT_GUID,
                        "BIOS boot",
                    ),
                    part(
                        2,
                        self.esp_first,
                        self.root_first - 1,
                        ESP_GUID,
                        "EFI System",
                    ),
                    part(3, self.root_first, self.root_last, LINUX_FS_GUID, "root"),
                ],
            })),
            ..Disk::default()
        }
    }
}

/// Partition `n` of the default layout's disk.
fn part_ref(n: u32) -> PartRef {
    PartRef {
        disk: 0,
        partition: Some(n),
        name: format!("{DISK_NAME}{n}"),
        dev: 0,
    }
}

/// The plan for the default layout (see `layout`), marked so `apply` writes fstab and runs the
/// tree's own boot loader installers instead of writing boot areas back.
pub fn plan(
    captured: Option<&DiskLayout>,
    device: &str,
    size_bytes: u64,
    sector: u32,
    data_bytes: u64,
    fresh: Fresh<'_>,
) -> Result<(RestorePlan, DiskLayout), PlanError> {
    let ids = Identities::draw(fresh)?;
    let layout = layout(captured, size_bytes, sector, data_bytes, &ids)?;
    let mut plan = RestorePlan::new(&layout, device, size_bytes, sector)?;
    plan.boot.default_layout = true;
    // Nothing was captured to write back: GRUB comes from the tree (apply, phase 7).
    plan.boot.grub_install = None;
    plan.boot.bios_boot = None;
    for p in &mut plan.partitions {
        if p.number == 1 {
            p.content = "BIOS boot (GRUB from the tree)".into();
        }
    }
    let why = captured
        .and_then(|l| l.none.clone())
        .unwrap_or_else(|| "the image has no layout record".into());
    plan.notes.push(format!(
        "the image recorded no disk layout ({why}): osimage's default layout is used, with \
         fresh UUIDs; etc/fstab is written for them"
    ));
    Ok((plan, layout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::plan::{PartKind, TablePlan, kernel_random};

    fn ids() -> Identities {
        Identities {
            disk_guid: "D15C0000-0000-4000-8000-000000000000".into(),
            part_guids: [
                "11111111-0000-4000-8000-000000000000".into(),
                "22222222-0000-4000-8000-000000000000".into(),
                "33333333-0000-4000-8000-000000000000".into(),
            ],
            root_uuid: "0a0b0c0d-0000-4000-8000-000000000000".into(),
            esp_id: "ABCD-1234".into(),
        }
    }

    #[test]
    fn one_gib_disk_gets_bios_boot_esp_and_root_to_the_end() {
        let l = layout(None, 1 << 30, 512, 100 * MIB, &ids()).unwrap();
        let plan = RestorePlan::new(&l, "t", 1 << 30, 512).unwrap();
        assert_eq!(
            plan.table,
            TablePlan::Gpt {
                disk_guid: ids().disk_guid
            }
        );
        let spans: Vec<(u32, u64, u64)> = plan
            .partitions
            .iter()
            .map(|p| (p.number, p.first_lba, p.last_lba))
            .collect();
        // 1 GiB = 2097152 sectors; GPT's backup takes the last 33.
        assert_eq!(
            spans,
            vec![
                (1, 2048, 4095),
                (2, 4096, 4096 + 512 * 2048 - 1),
                (3, 4096 + 512 * 2048, 2097152 - 34)
            ]
        );
        assert!(matches!(&plan.partitions[0].kind,
            PartKind::Gpt { type_guid, .. } if type_guid == BIOS_BOOT_GUID));
        assert_eq!(plan.resized, None);
        let root = &plan.filesystems[0];
        assert_eq!(
            (root.mount_point.as_str(), root.fstype.as_str()),
            ("/", "ext4")
        );
        assert_eq!(root.uuid, ids().root_uuid);
        assert_eq!(
            plan.filesystems[1].mkfs.as_ref().unwrap().join(" "),
            "mkfs.vfat -i ABCD1234"
        );
    }

    #[test]
    fn too_small_disk_is_refused_with_numbers() {
        let e = layout(None, 600 * MIB, 512, 200 * MIB, &ids()).unwrap_err();
        assert!(e.0.contains("too small for the default layout"), "{e}");
        assert!(e.0.contains("needs at least 220.0 MiB"), "{e}");
        assert!(e.0.contains("629145600 bytes"), "{e}");
        // 800 MiB leaves 285 MiB for the root: 100 MiB of data fits.
        assert!(layout(None, 800 * MIB, 512, 100 * MIB, &ids()).is_ok());
    }

    #[test]
    fn identities_are_fresh_and_well_formed() {
        let a = Identities::draw(&mut kernel_random).unwrap();
        let b = Identities::draw(&mut kernel_random).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.root_uuid.len(), 36);
        assert_eq!(&a.root_uuid[14..15], "4", "version 4: {}", a.root_uuid);
        assert_eq!(a.esp_id.len(), 9);
        assert_eq!(a.disk_guid, a.disk_guid.to_ascii_uppercase());
    }

    #[test]
    fn a_seed_draws_the_same_identities_twice() {
        use crate::restore::plan::{Draws, IdSource};
        let mut one = Draws::new(IdSource::Seed(7));
        let mut two = Draws::new(IdSource::Seed(7));
        let a = Identities::draw(&mut |l: &str| one.next(l)).unwrap();
        let b = Identities::draw(&mut |l: &str| two.next(l)).unwrap();
        assert_eq!(a, b);
        let mut other = Draws::new(IdSource::Seed(8));
        assert_ne!(a, Identities::draw(&mut |l: &str| other.next(l)).unwrap());
        assert_eq!(&a.root_uuid[14..15], "4", "version 4: {}", a.root_uuid);
        let guids = [
            &a.disk_guid,
            &a.part_guids[0],
            &a.part_guids[1],
            &a.part_guids[2],
        ];
        for (i, g) in guids.iter().enumerate() {
            assert!(!guids[i + 1..].contains(g), "{g} drawn twice");
        }
    }

    #[test]
    fn the_plan_says_default_layout_and_installs_no_captured_boot_bytes() {
        let (p, _) = plan(None, "t", 1 << 30, 512, 0, &mut kernel_random).unwrap();
        assert!(p.boot.default_layout);
        assert_eq!(p.boot.bios_boot, None);
        assert_eq!(p.boot.grub_install, None);
        assert!(p.to_string().contains("default layout"), "{p}");
        assert!(p.to_string().contains("NEW UUID"), "{p}");
    }
}
