//! `info --json`'s `layout`: the recorded disk layout (docs/FORMAT.md §9) as documented
//! output structs (docs/JSON.md "info"): partition tables as `{"type": "gpt", …}`, boot code
//! and other byte blobs as their length and BLAKE3 (`Blob`), never the record's own serde.

use serde::Serialize;

use osimage::hex;
use osimage::layout::{
    self as rec, ContainerKind, DiskLayout, FsFeatures, PartRef, PartitionTable,
};

use super::Blob;

#[derive(Serialize)]
pub struct Layout {
    /// A restore can recreate it (no `none`, no `unsupported`).
    pub restorable: bool,
    /// Why there is no layout (a plain directory was captured), else null.
    pub none: Option<String>,
    pub disks: Vec<Disk>,
    pub filesystems: Vec<Filesystem>,
    pub swaps: Vec<Swap>,
    pub containers: Vec<Container>,
    pub stack: Stack,
    pub btrfs: Vec<Btrfs>,
    pub fstab: Vec<Fstab>,
    pub boot: Boot,
    pub unsupported: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub model: String,
    pub serial: String,
    pub wwid: String,
    /// Null: a filesystem on the whole disk.
    pub table: Option<Table>,
    /// MBR bytes 0–439.
    pub mbr_boot_code: Blob,
    /// LBA 1 up to the first partition (GRUB's core image on an MBR disk).
    pub mbr_gap: Blob,
}

#[derive(Serialize)]
pub struct Table {
    /// `gpt` or `mbr`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// GPT only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_guid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_usable_lba: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_usable_lba: Option<u64>,
    /// MBR only: the disk signature as 8 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    pub partitions: Vec<Partition>,
}

#[derive(Serialize)]
pub struct Partition {
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    #[serde(flatten)]
    pub entry: PartEntry,
}

/// A partition's table-specific fields (docs/JSON.md: "GPT: `type_guid`…; MBR: `type_byte`…"),
/// shared by `info --json`'s layout and `restore --json`'s plan; the other table's are left out.
#[derive(Serialize)]
pub struct PartEntry {
    /// GPT only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_guid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_guid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<u64>,
    /// MBR only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_byte: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical: Option<bool>,
}

impl PartEntry {
    /// A GPT entry's fields.
    pub fn gpt(type_guid: &str, part_guid: &str, name: &str, attributes: u64) -> PartEntry {
        PartEntry {
            type_guid: Some(type_guid.to_string()),
            part_guid: Some(part_guid.to_string()),
            name: Some(name.to_string()),
            attributes: Some(attributes),
            type_byte: None,
            bootable: None,
            extended: None,
            logical: None,
        }
    }

    /// An MBR entry's fields.
    pub fn mbr(type_byte: u8, bootable: bool, extended: bool, logical: bool) -> PartEntry {
        PartEntry {
            type_guid: None,
            part_guid: None,
            name: None,
            attributes: None,
            type_byte: Some(type_byte),
            bootable: Some(bootable),
            extended: Some(extended),
            logical: Some(logical),
        }
    }
}

/// Where something lives: a recorded disk's partition, the whole disk, or a stack volume.
#[derive(Serialize)]
pub struct Device {
    /// The kernel name on the source (`sda2`, `dm-1`, `md0`).
    pub name: String,
    /// Index into `disks` (null for a stack volume).
    pub disk: Option<u32>,
    /// Partition number; null: the whole disk (or a stack volume).
    pub partition: Option<u32>,
}

fn device(r: &PartRef, l: &DiskLayout) -> Device {
    let volume = l.stack.node(&r.name).is_some();
    Device {
        name: r.name.clone(),
        disk: (!volume).then_some(r.disk),
        partition: if volume { None } else { r.partition },
    }
}

#[derive(Serialize)]
pub struct Filesystem {
    pub device: Device,
    pub fstype: String,
    pub uuid: String,
    pub label: String,
    pub mount_point: String,
    pub mount_options: String,
    pub in_fstab: bool,
    pub size_bytes: u64,
    /// Null when it was not mounted at capture.
    pub used_bytes: Option<u64>,
    /// ext2/3/4 feature names (`has_journal`, `extent`…); empty for other types.
    pub features: Vec<String>,
    /// The filesystem's block (or sector/cluster) size in bytes, 0 when not recorded.
    pub block_size: u32,
}

#[derive(Serialize)]
pub struct Swap {
    pub device: Device,
    pub uuid: String,
    pub label: String,
    pub size_bytes: u64,
    pub in_fstab: bool,
}

#[derive(Serialize)]
pub struct Container {
    pub device: Device,
    /// `lvm_pv`, `luks` or `md_raid`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// LUKS: `1`/`2`; MD: the superblock version; LVM: empty.
    pub version: String,
    pub uuid: String,
    pub label: String,
}

#[derive(Serialize)]
pub struct Stack {
    pub md: Vec<Md>,
    pub luks: Vec<Luks>,
    pub vgs: Vec<Vg>,
}

#[derive(Serialize)]
pub struct Md {
    pub name: String,
    pub path: String,
    pub metadata: String,
    pub uuid: String,
    /// The superblock's name (`host:name`; empty for 0.90).
    pub array_name: String,
    pub level: String,
    pub raid_disks: u32,
    pub size_bytes: u64,
    pub degraded: bool,
    /// Members in role order (spares last, `role` null).
    pub members: Vec<MdMember>,
}

#[derive(Serialize)]
pub struct MdMember {
    pub role: Option<u32>,
    pub device: Device,
}

#[derive(Serialize)]
pub struct Luks {
    pub name: String,
    pub mapping: String,
    pub device: Device,
    pub version: u16,
    pub uuid: String,
    pub label: String,
    pub cipher: String,
    pub key_bits: u32,
    pub size_bytes: u64,
    /// The captured system's `etc/crypttab` line that opens it, if any.
    pub crypttab: Option<Crypttab>,
}

#[derive(Serialize)]
pub struct Crypttab {
    pub line: u32,
    pub name: String,
    pub device: String,
    pub key: String,
    pub options: String,
}

#[derive(Serialize)]
pub struct Vg {
    pub name: String,
    pub uuid: String,
    pub extent_bytes: u64,
    pub pvs: Vec<Pv>,
    pub lvs: Vec<Lv>,
    pub tags: Vec<String>,
    /// The VG's metadata text as its PVs hold it (what `vgcfgbackup` writes).
    pub metadata: String,
}

#[derive(Serialize)]
pub struct Pv {
    pub uuid: String,
    pub device: Device,
    pub size_bytes: u64,
}

#[derive(Serialize)]
pub struct Lv {
    pub name: String,
    pub uuid: String,
    /// LVM's segment type (`linear`, `striped`, `thin-pool`…).
    pub kind: String,
    pub size_bytes: u64,
}

#[derive(Serialize)]
pub struct Btrfs {
    pub uuid: String,
    pub default_subvolume: String,
    pub subvolumes: Vec<Subvolume>,
}

#[derive(Serialize)]
pub struct Subvolume {
    pub id: u64,
    pub path: String,
    pub readonly: bool,
}

#[derive(Serialize)]
pub struct Fstab {
    pub line: u32,
    pub spec: String,
    pub mount_point: String,
    pub fstype: String,
    pub options: String,
    pub pass: u32,
}

#[derive(Serialize)]
pub struct Boot {
    /// How the source booted: `bios`, `uefi` or `unknown`.
    pub firmware: &'static str,
    pub uefi_capable: bool,
    pub bios_capable: bool,
    pub esp: Option<Device>,
    pub bios_boot: Option<Device>,
    /// The BIOS boot partition's contents.
    pub bios_boot_code: Blob,
    pub grub_i386_pc: bool,
    pub efi_entries: Vec<EfiEntry>,
    pub boot_order: Vec<u16>,
    pub boot_current: Option<u16>,
}

#[derive(Serialize)]
pub struct EfiEntry {
    pub number: u16,
    pub attributes: u32,
    pub description: String,
    /// The UEFI device path, hex.
    pub device_path: String,
    pub optional_data: Blob,
}

fn table(t: &PartitionTable) -> Table {
    match t {
        PartitionTable::Gpt(g) => Table {
            kind: "gpt",
            disk_guid: Some(g.disk_guid.clone()),
            first_usable_lba: Some(g.first_usable),
            last_usable_lba: Some(g.last_usable),
            signature: None,
            partitions: g
                .partitions
                .iter()
                .map(|p| Partition {
                    number: p.number,
                    first_lba: p.first_lba,
                    last_lba: p.last_lba,
                    entry: PartEntry::gpt(&p.type_guid, &p.part_guid, &p.name, p.attributes),
                })
                .collect(),
        },
        PartitionTable::Mbr(m) => Table {
            kind: "mbr",
            disk_guid: None,
            first_usable_lba: None,
            last_usable_lba: None,
            signature: Some(format!("{:08x}", m.signature)),
            partitions: m
                .partitions
                .iter()
                .map(|p| Partition {
                    number: p.number,
                    first_lba: u64::from(p.start_lba),
                    last_lba: (u64::from(p.start_lba) + u64::from(p.sectors)).saturating_sub(1),
                    entry: PartEntry::mbr(p.type_byte, p.bootable, p.extended, p.logical),
                })
                .collect(),
        },
    }
}

fn features(f: &FsFeatures) -> (Vec<String>, u32) {
    match f {
        FsFeatures::None => (Vec::new(), 0),
        FsFeatures::Ext(e) => (e.names.clone(), e.block_size),
        FsFeatures::Xfs(x) => (Vec::new(), x.block_size),
        FsFeatures::Btrfs(b) => (Vec::new(), b.sector_size),
        FsFeatures::Vfat(v) => (
            Vec::new(),
            u32::from(v.bytes_per_sector) * u32::from(v.sectors_per_cluster),
        ),
    }
}

fn stack(l: &DiskLayout) -> Stack {
    let s = &l.stack;
    Stack {
        md: s
            .md
            .iter()
            .map(|m| Md {
                name: m.name.clone(),
                path: m.path.clone(),
                metadata: m.metadata.clone(),
                uuid: m.uuid.clone(),
                array_name: m.array_name.clone(),
                level: m.level.clone(),
                raid_disks: m.raid_disks,
                size_bytes: m.size_bytes,
                degraded: m.degraded,
                members: m
                    .members
                    .iter()
                    .map(|x| MdMember {
                        role: (x.role != u32::MAX).then_some(x.role),
                        device: device(&x.device, l),
                    })
                    .collect(),
            })
            .collect(),
        luks: s
            .luks
            .iter()
            .map(|x| Luks {
                name: x.name.clone(),
                mapping: x.mapping.clone(),
                device: device(&x.device, l),
                version: x.version,
                uuid: x.uuid.clone(),
                label: x.label.clone(),
                cipher: x.cipher.clone(),
                key_bits: x.key_bits,
                size_bytes: x.size_bytes,
                crypttab: x.crypttab.as_ref().map(|c| Crypttab {
                    line: c.line,
                    name: c.name.clone(),
                    device: c.device.clone(),
                    key: c.key.clone(),
                    options: c.options.clone(),
                }),
            })
            .collect(),
        vgs: s
            .vgs
            .iter()
            .map(|v| Vg {
                name: v.name.clone(),
                uuid: v.uuid.clone(),
                extent_bytes: v.extent_bytes,
                pvs: v
                    .pvs
                    .iter()
                    .map(|p| Pv {
                        uuid: p.uuid.clone(),
                        device: device(&p.device, l),
                        size_bytes: p.size_bytes,
                    })
                    .collect(),
                lvs: v
                    .lvs
                    .iter()
                    .map(|x| Lv {
                        name: x.name.clone(),
                        uuid: x.uuid.clone(),
                        kind: x.kind.clone(),
                        size_bytes: x.extents.saturating_mul(v.extent_bytes),
                    })
                    .collect(),
                tags: v.tags.clone(),
                metadata: v.metadata.clone(),
            })
            .collect(),
    }
}

fn boot(l: &DiskLayout) -> Boot {
    let b = &l.boot;
    Boot {
        firmware: match b.firmware {
            rec::Firmware::Bios => "bios",
            rec::Firmware::Uefi => "uefi",
            rec::Firmware::Unknown => "unknown",
        },
        uefi_capable: b.uefi_capable,
        bios_capable: b.bios_capable,
        esp: b.esp.as_ref().map(|r| device(r, l)),
        bios_boot: b.bios_boot.as_ref().map(|r| device(r, l)),
        bios_boot_code: Blob::of(&b.bios_boot_bytes),
        grub_i386_pc: b.grub_i386_pc,
        efi_entries: b
            .efi_entries
            .iter()
            .map(|e| EfiEntry {
                number: e.number,
                attributes: e.attributes,
                description: e.description.clone(),
                device_path: hex(&e.device_path),
                optional_data: Blob::of(&e.optional_data),
            })
            .collect(),
        boot_order: b.boot_order.clone(),
        boot_current: b.boot_current,
    }
}

/// The `layout` object of `info --json`.
pub fn layout(l: &DiskLayout) -> Layout {
    Layout {
        restorable: l.restorable(),
        none: l.none.clone(),
        disks: l
            .disks
            .iter()
            .map(|d| Disk {
                name: d.name.clone(),
                size_bytes: d.size_bytes,
                logical_sector: d.logical_sector,
                physical_sector: d.physical_sector,
                model: d.model.clone(),
                serial: d.serial.clone(),
                wwid: d.wwid.clone(),
                table: d.table.as_ref().map(table),
                mbr_boot_code: Blob::of(&d.mbr_boot_code),
                mbr_gap: Blob::of(&d.mbr_gap),
            })
            .collect(),
        filesystems: l
            .filesystems
            .iter()
            .map(|f| {
                let (features, block_size) = features(&f.features);
                Filesystem {
                    device: device(&f.device, l),
                    fstype: f.fstype.clone(),
                    uuid: f.uuid.clone(),
                    label: f.label.clone(),
                    mount_point: f.mount_point.clone(),
                    mount_options: f.mount_options.clone(),
                    in_fstab: f.in_fstab,
                    size_bytes: f.size_bytes,
                    used_bytes: f.used_bytes,
                    features,
                    block_size,
                }
            })
            .collect(),
        swaps: l
            .swaps
            .iter()
            .map(|s| Swap {
                device: device(&s.device, l),
                uuid: s.uuid.clone(),
                label: s.label.clone(),
                size_bytes: s.size_bytes,
                in_fstab: s.in_fstab,
            })
            .collect(),
        containers: l
            .containers
            .iter()
            .map(|c| {
                let (kind, version) = match &c.kind {
                    ContainerKind::LvmPv => ("lvm_pv", String::new()),
                    ContainerKind::Luks { version } => ("luks", version.to_string()),
                    ContainerKind::MdRaid { version } => ("md_raid", version.clone()),
                };
                Container {
                    device: device(&c.device, l),
                    kind,
                    version,
                    uuid: c.uuid.clone(),
                    label: c.label.clone(),
                }
            })
            .collect(),
        stack: stack(l),
        btrfs: l
            .btrfs
            .iter()
            .map(|b| Btrfs {
                uuid: b.uuid.clone(),
                default_subvolume: b.default_path.clone(),
                subvolumes: b
                    .subvolumes
                    .iter()
                    .map(|s| Subvolume {
                        id: s.id,
                        path: s.path.clone(),
                        readonly: s.readonly,
                    })
                    .collect(),
            })
            .collect(),
        fstab: l
            .fstab
            .iter()
            .map(|f| Fstab {
                line: f.line,
                spec: f.spec.clone(),
                mount_point: f.mount_point.clone(),
                fstype: f.fstype.clone(),
                options: f.options.clone(),
                pass: f.pass,
            })
            .collect(),
        boot: boot(l),
        unsupported: l.unsupported.clone(),
        warnings: l.warnings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/JSON.md "info": `number`, `first_lba`, `last_lba`, then the table's own fields in
    /// their documented order, the other table's left out.
    #[test]
    fn partition_fields_keep_the_documented_order() {
        let gpt = Partition {
            number: 1,
            first_lba: 2048,
            last_lba: 4095,
            entry: PartEntry::gpt("T", "P", "bios", 4),
        };
        assert_eq!(
            serde_json::to_string(&gpt).unwrap(),
            r#"{"number":1,"first_lba":2048,"last_lba":4095,"type_guid":"T","part_guid":"P","name":"bios","attributes":4}"#
        );
        let mbr = Partition {
            number: 5,
            first_lba: 63,
            last_lba: 99,
            entry: PartEntry::mbr(0x83, true, false, true),
        };
        assert_eq!(
            serde_json::to_string(&mbr).unwrap(),
            r#"{"number":5,"first_lba":63,"last_lba":99,"type_byte":131,"bootable":true,"extended":false,"logical":true}"#
        );
    }
}
