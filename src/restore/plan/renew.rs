//! `--new-uuids` (issue #11, docs/GENERALIZE.md "New identities"): the plan's filesystems,
//! swaps, partitions and disk get fresh identities instead of the recorded ones, so restored
//! copies of one golden image are told apart by UUID. Every change is listed in
//! `RestorePlan::renamed`; `apply` then rewrites the restored tree's references to the old
//! values (fstab, crypttab, boot loader configuration, initramfs) and reinstalls what embeds
//! them (GRUB's core image).

use serde::{Deserialize, Serialize};

use super::{FsPlan, PartKind, PlanError, RestorePlan, TablePlan};
use crate::layout::{DiskLayout, FsFeatures};
use crate::restore::mkfs;

/// One identity the restore replaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renamed {
    /// What carries it (`ext4 / UUID`, `partition 3 GUID`, `disk GUID`).
    pub what: String,
    pub old: String,
    pub new: String,
    /// Whether the restored tree may name it (filesystem and swap UUIDs, partition UUIDs);
    /// false for values nothing refers to by text (the GPT disk GUID).
    pub referenced: bool,
    /// Other spellings of the same identity the restored tree may use, old → new, rewritten
    /// like `old` (the block stack's: undashed, MD's as blkid prints it; `stack/renew.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spellings: Vec<(String, String)>,
}

/// Where fresh identities come from: 16 bytes for the value the label names (`draw.rs`: the
/// kernel's random bytes, or derived from `--seed`).
pub type Fresh<'a> = &'a mut dyn FnMut(&str) -> Result<[u8; 16], PlanError>;

/// The kernel's random bytes, whatever the label.
pub fn kernel_random(_label: &str) -> Result<[u8; 16], PlanError> {
    let mut b = [0u8; 16];
    crate::restore::default_layout::fill_random(&mut b)?;
    Ok(b)
}

pub(super) fn uuid_v4(mut u: [u8; 16]) -> String {
    u[6] = (u[6] & 0x0F) | 0x40;
    u[8] = (u[8] & 0x3F) | 0x80;
    crate::layout::probe::uuid_text(&u)
}

impl RestorePlan {
    /// Gives the plan fresh identities (`--new-uuids`). `layout`: the record the plan was made
    /// from (the mkfs commands are rebuilt from it). Idempotent only in that a second call
    /// renames again; call it once.
    pub fn renew_identities(
        &mut self,
        layout: &DiskLayout,
        fresh: Fresh<'_>,
    ) -> Result<(), PlanError> {
        // Every label names the recorded disk: plans of several disks draw apart.
        let disk = self.source_disk.clone();
        let fresh = &mut |what: &str| fresh(&format!("{disk}: {what}"));
        let mut renamed = Vec::new();
        self.renew_table(fresh, &mut renamed)?;
        self.renew_partitions(fresh, &mut renamed)?;
        self.renew_filesystems(layout, fresh, &mut renamed)?;
        self.renew_swaps(fresh, &mut renamed)?;
        self.renew_stack(fresh, &mut renamed)?;
        let b = &mut self.boot;
        if b.grub_install.is_none() && (b.bios_boot.is_some() || b.mbr_boot_code) {
            b.grub_install = Some(
                "the filesystem UUIDs are new and GRUB's core image looks for /boot by its \
                 old one"
                    .into(),
            );
        }
        self.renamed.extend(renamed);
        Ok(())
    }

    /// The GPT disk GUID, or the MBR disk signature (and with it every partition's PARTUUID).
    fn renew_table(
        &mut self,
        fresh: Fresh<'_>,
        renamed: &mut Vec<Renamed>,
    ) -> Result<(), PlanError> {
        match &mut self.table {
            TablePlan::Gpt { disk_guid } => {
                let new = uuid_v4(fresh("disk GUID")?).to_ascii_uppercase();
                renamed.push(Renamed {
                    what: "disk GUID".into(),
                    old: std::mem::replace(disk_guid, new.clone()),
                    new,
                    referenced: false,
                    spellings: Vec::new(),
                });
            }
            TablePlan::Mbr { signature } => {
                let b = fresh("MBR disk signature")?;
                let new = u32::from_le_bytes([b[0], b[1], b[2], b[3]]).max(1);
                let old = std::mem::replace(signature, new);
                // An MBR partition's PARTUUID is SIGNATURE-NN.
                for p in &self.partitions {
                    renamed.push(Renamed {
                        what: format!("partition {} PARTUUID", p.number),
                        old: format!("{old:08x}-{:02x}", p.number),
                        new: format!("{new:08x}-{:02x}", p.number),
                        referenced: true,
                        spellings: Vec::new(),
                    });
                }
                renamed.push(Renamed {
                    what: "MBR disk signature".into(),
                    old: format!("0x{old:08x}"),
                    new: format!("0x{new:08x}"),
                    referenced: false,
                    spellings: Vec::new(),
                });
            }
            TablePlan::None => {}
        }
        Ok(())
    }

    /// Each GPT partition's GUID (its PARTUUID).
    fn renew_partitions(
        &mut self,
        fresh: Fresh<'_>,
        renamed: &mut Vec<Renamed>,
    ) -> Result<(), PlanError> {
        for p in &mut self.partitions {
            if let PartKind::Gpt { part_guid, .. } = &mut p.kind {
                let label = format!("partition {} GUID", p.number);
                let new = uuid_v4(fresh(&label)?).to_ascii_uppercase();
                renamed.push(Renamed {
                    what: format!("partition {} GUID (PARTUUID)", p.number),
                    old: std::mem::replace(part_guid, new.clone()),
                    new,
                    referenced: true,
                    spellings: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// Each filesystem's UUID (a vfat volume id for vfat), with its mkfs command rebuilt.
    fn renew_filesystems(
        &mut self,
        layout: &DiskLayout,
        fresh: Fresh<'_>,
        renamed: &mut Vec<Renamed>,
    ) -> Result<(), PlanError> {
        // A btrfs filesystem mounted twice (two subvolumes) is one filesystem: one new UUID.
        let mut fs_new: Vec<(String, String)> = Vec::new();
        for f in &mut self.filesystems {
            if f.uuid.is_empty() {
                continue;
            }
            let new = match fs_new.iter().find(|(old, _)| *old == f.uuid) {
                Some((_, new)) => new.clone(),
                None => {
                    let new = fs_id(&f.fstype, fresh(&format!("filesystem UUID {}", f.uuid))?);
                    fs_new.push((f.uuid.clone(), new.clone()));
                    renamed.push(Renamed {
                        what: format!("{} {} UUID", f.fstype, f.mount_point),
                        old: f.uuid.clone(),
                        new: new.clone(),
                        referenced: true,
                        spellings: Vec::new(),
                    });
                    new
                }
            };
            if f.mkfs.is_some() {
                f.mkfs = Some(mkfs_with_uuid(layout, f, &new)?);
            }
            f.uuid = new;
        }
        Ok(())
    }

    /// Each swap's UUID, with its mkswap command rebuilt.
    fn renew_swaps(
        &mut self,
        fresh: Fresh<'_>,
        renamed: &mut Vec<Renamed>,
    ) -> Result<(), PlanError> {
        for s in &mut self.swaps {
            if s.uuid.is_empty() {
                continue;
            }
            let new = uuid_v4(fresh(&format!("swap UUID {}", s.uuid))?);
            renamed.push(Renamed {
                what: "swap UUID".into(),
                old: std::mem::replace(&mut s.uuid, new.clone()),
                new: new.clone(),
                referenced: true,
                spellings: Vec::new(),
            });
            s.mkswap = mkfs::mkswap(&new, &s.label);
        }
        Ok(())
    }
}

/// A fresh filesystem identity from 16 random bytes: a vfat volume id (`ABCD-1234`) or a
/// version 4 UUID.
fn fs_id(fstype: &str, b: [u8; 16]) -> String {
    if fstype == "vfat" {
        let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)
    } else {
        uuid_v4(b)
    }
}

/// The mkfs command for `f` made with identity `new`, from its record in `layout`.
fn mkfs_with_uuid(layout: &DiskLayout, f: &FsPlan, new: &str) -> Result<Vec<String>, PlanError> {
    let mut rec = layout
        .filesystems
        .iter()
        .find(|r| r.uuid == f.uuid && r.mount_point == f.mount_point)
        .cloned()
        .ok_or_else(|| {
            PlanError(format!(
                "{}: no filesystem with UUID {} in the layout",
                f.mount_point, f.uuid
            ))
        })?;
    let resized = rec.size_bytes != f.size_bytes;
    rec.uuid = new.to_string();
    if let FsFeatures::Vfat(v) = &mut rec.features {
        v.volume_id = u32::from_str_radix(&new.replace('-', ""), 16)
            .map_err(|e| PlanError(format!("volume id {new}: {e}")))?;
    }
    mkfs::command(&rec, resized).map_err(PlanError)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{gpt_layout, mbr_layout};
    use super::*;

    fn counter() -> impl FnMut(&str) -> Result<[u8; 16], PlanError> {
        let mut n = 0u8;
        move |_: &str| {
            n += 1;
            Ok([n; 16])
        }
    }

    #[test]
    fn gpt_plan_gets_new_guids_uuids_and_mkfs_commands() {
        let l = gpt_layout();
        let mut p = RestorePlan::new(&l, "t", 4 << 30, 512).unwrap();
        let before = p.clone();
        p.renew_identities(&l, &mut counter()).unwrap();
        let TablePlan::Gpt { disk_guid } = &p.table else {
            panic!("not gpt")
        };
        assert_ne!(
            Some(disk_guid),
            match &before.table {
                TablePlan::Gpt { disk_guid } => Some(disk_guid),
                _ => None,
            }
        );
        for (a, b) in p.filesystems.iter().zip(&before.filesystems) {
            assert_ne!(a.uuid, b.uuid, "{}", a.mount_point);
            if let Some(cmd) = &a.mkfs {
                let line = cmd.join(" ");
                assert!(
                    line.contains(&a.uuid) || line.contains(&a.uuid.replace('-', "")),
                    "mkfs does not make the new UUID {}: {line}",
                    a.uuid
                );
                assert!(
                    !line.contains(&b.uuid),
                    "mkfs still names {}: {line}",
                    b.uuid
                );
            }
            assert!(p.renamed.iter().any(|r| r.old == b.uuid && r.new == a.uuid));
        }
        for (a, b) in p.partitions.iter().zip(&before.partitions) {
            assert_ne!(a.kind, b.kind, "partition {} kept its GUID", a.number);
            assert_eq!((a.first_lba, a.last_lba), (b.first_lba, b.last_lba));
        }
        // Nothing else changed: sizes, starts, contents.
        assert_eq!(p.partitions.len(), before.partitions.len());
        assert_eq!(p.target, before.target);
        let text = p.to_string();
        assert!(text.contains("new identities"), "{text}");
    }

    #[test]
    fn fresh_uuids_are_version_4_and_vfat_ids_are_fat_shaped() {
        let l = gpt_layout();
        let mut p = RestorePlan::new(&l, "t", 4 << 30, 512).unwrap();
        p.renew_identities(&l, &mut kernel_random).unwrap();
        for f in &p.filesystems {
            if f.fstype == "vfat" {
                assert_eq!(f.uuid.len(), 9, "{}", f.uuid);
                assert_eq!(&f.uuid[4..5], "-");
            } else {
                assert_eq!(f.uuid.len(), 36, "{}", f.uuid);
                assert_eq!(&f.uuid[14..15], "4", "{}", f.uuid);
            }
        }
    }

    #[test]
    fn mbr_partuuids_follow_the_new_signature_and_grub_is_reinstalled() {
        let mut l = mbr_layout();
        l.disks[0].mbr_boot_code = vec![0xEB; 440];
        let mut p = RestorePlan::new(&l, "t", 4 << 30, 512).unwrap();
        assert!(p.boot.grub_install.is_none());
        p.renew_identities(&l, &mut counter()).unwrap();
        let TablePlan::Mbr { signature } = p.table else {
            panic!("not mbr")
        };
        let first = p.partitions[0].number;
        assert!(
            p.renamed
                .iter()
                .any(|r| r.new == format!("{signature:08x}-{first:02x}") && r.referenced),
            "{:?}",
            p.renamed
        );
        assert!(
            p.boot.grub_install.is_some(),
            "the core image names the old UUID"
        );
    }
}
