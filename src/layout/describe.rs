//! The layout as readable tables, for `osimage info`.

use std::fmt::Write;

use super::record::*;
use super::table::{BIOS_BOOT_GUID, ESP_GUID};

/// Well-known GPT partition types (the Discoverable Partitions Specification and UEFI).
const GPT_TYPES: &[(&str, &str)] = &[
    (ESP_GUID, "EFI System"),
    (BIOS_BOOT_GUID, "BIOS boot"),
    ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem"),
    (
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "Linux root (x86-64)",
    ),
    ("933AC7E1-2EB4-4F13-B844-0E14E2AEF915", "Linux home"),
    ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
    ("E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM"),
    ("A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID"),
    (
        "BC13C2FF-59E6-4262-A352-B275FD6F7172",
        "Linux extended boot",
    ),
    (
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        "Microsoft basic data",
    ),
];

fn gpt_type(guid: &str) -> String {
    GPT_TYPES
        .iter()
        .find(|(g, _)| g.eq_ignore_ascii_case(guid))
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| guid.to_string())
}

fn mbr_type(t: u8) -> String {
    let name = match t {
        0x83 => "Linux",
        0x82 => "Linux swap",
        0xEF => "EFI System",
        0x05 | 0x0F | 0x85 => "Extended",
        0x8E => "Linux LVM",
        0xFD => "Linux RAID",
        0x0B | 0x0C => "W95 FAT32",
        0x06 | 0x0E => "FAT16",
        0x07 => "NTFS/exFAT",
        _ => "",
    };
    if name.is_empty() {
        format!("0x{t:02x}")
    } else {
        format!("{name} (0x{t:02x})")
    }
}

pub use crate::units::human_bytes as size;

/// Left-aligned columns, two spaces apart, each line indented by two.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (c, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < r.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// The readable description of a layout: boot mode, each disk with its partitions, the
/// filesystems, swap, containers, and what stands in the way of a restore.
pub fn describe(l: &DiskLayout) -> String {
    let mut out = String::new();
    if let Some(why) = &l.none {
        let _ = writeln!(out, "Layout: none ({why})");
        let _ = writeln!(
            out,
            "  A restore asks for a target layout or uses the default one."
        );
        notes(&mut out, l);
        return out;
    }
    boot(&mut out, l);
    for d in &l.disks {
        disk(&mut out, d);
    }
    if !l.filesystems.is_empty() {
        let _ = writeln!(out, "Filesystems:");
        let mut rows = vec![
            [
                "MOUNT", "DEVICE", "TYPE", "SIZE", "USED", "UUID", "LABEL", "OPTIONS",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for f in &l.filesystems {
            rows.push(vec![
                f.mount_point.clone(),
                f.device.name.clone(),
                f.fstype.clone(),
                size(f.size_bytes),
                f.used_bytes.map(size).unwrap_or_else(|| "-".into()),
                or_dash(&f.uuid),
                or_dash(&f.label),
                or_dash(&f.mount_options),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    if !l.swaps.is_empty() {
        let _ = writeln!(out, "Swap:");
        let mut rows = vec![
            ["DEVICE", "SIZE", "UUID", "LABEL"]
                .map(String::from)
                .to_vec(),
        ];
        for s in &l.swaps {
            rows.push(vec![
                s.device.name.clone(),
                size(s.size_bytes),
                or_dash(&s.uuid),
                or_dash(&s.label),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    out.push_str(&super::stack::show::tree(l));
    let loose: Vec<&Container> = l
        .containers
        .iter()
        .filter(|c| !l.stack.holds(&c.device.name))
        .collect();
    if !loose.is_empty() {
        let _ = writeln!(
            out,
            "Containers no recorded filesystem uses (not recreated):"
        );
        let rows: Vec<Vec<String>> = loose
            .iter()
            .map(|c| {
                let kind = match &c.kind {
                    ContainerKind::LvmPv => "LVM2 PV".to_string(),
                    ContainerKind::Luks { version } => format!("LUKS{version}"),
                    ContainerKind::MdRaid { version } => format!("MD RAID {version}"),
                };
                vec![c.device.name.clone(), kind, or_dash(&c.uuid)]
            })
            .collect();
        out.push_str(&columns(&rows));
    }
    notes(&mut out, l);
    out
}

fn boot(out: &mut String, l: &DiskLayout) {
    let b = &l.boot;
    let fw = match b.firmware {
        Firmware::Uefi => "UEFI",
        Firmware::Bios => "BIOS",
        Firmware::Unknown => "unknown (offline root)",
    };
    let mut can = Vec::new();
    if b.uefi_capable {
        can.push("UEFI");
    }
    if b.bios_capable {
        can.push("BIOS");
    }
    let _ = writeln!(
        out,
        "Boot: booted by {fw}; bootable by {}",
        if can.is_empty() {
            "nothing recorded".to_string()
        } else {
            can.join(" and ")
        }
    );
    if let Some(e) = &b.esp {
        let _ = writeln!(out, "  ESP: {}", e.name);
    }
    if let Some(p) = &b.bios_boot {
        let _ = writeln!(
            out,
            "  BIOS boot partition: {} ({} kept)",
            or_dash(&p.name),
            size(b.bios_boot_bytes.len() as u64)
        );
    }
    for e in &b.efi_entries {
        let _ = writeln!(
            out,
            "  Boot{:04X}{} {}",
            e.number,
            if b.boot_current == Some(e.number) {
                "*"
            } else {
                " "
            },
            e.description
        );
    }
}

fn disk(out: &mut String, d: &Disk) {
    let ident: Vec<String> = [
        ("model", &d.model),
        ("serial", &d.serial),
        ("wwid", &d.wwid),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k} {v}"))
    .collect();
    let (label, id) = match &d.table {
        Some(PartitionTable::Gpt(t)) => ("gpt", format!(", guid {}", t.disk_guid)),
        Some(PartitionTable::Mbr(t)) => ("dos", format!(", id 0x{:08x}", t.signature)),
        None => ("no partition table", String::new()),
    };
    let _ = writeln!(
        out,
        "Disk {}: {}, sectors {}/{} B, {label}{id}{}{}",
        d.name,
        size(d.size_bytes),
        d.logical_sector,
        d.physical_sector,
        if ident.is_empty() { "" } else { ", " },
        ident.join(", ")
    );
    let sector = u64::from(d.logical_sector);
    let mut rows = vec![
        ["#", "START", "END", "SIZE", "TYPE", "NAME/FLAGS"]
            .map(String::from)
            .to_vec(),
    ];
    match &d.table {
        Some(PartitionTable::Gpt(t)) => {
            for p in &t.partitions {
                rows.push(vec![
                    p.number.to_string(),
                    p.first_lba.to_string(),
                    p.last_lba.to_string(),
                    size((p.last_lba + 1 - p.first_lba.min(p.last_lba + 1)) * sector),
                    gpt_type(&p.type_guid),
                    match (p.name.is_empty(), p.attributes) {
                        (_, 0) => p.name.clone(),
                        (true, a) => format!("attrs 0x{a:x}"),
                        (false, a) => format!("{} attrs 0x{a:x}", p.name),
                    },
                ]);
            }
        }
        Some(PartitionTable::Mbr(t)) => {
            for p in &t.partitions {
                let start = u64::from(p.start_lba);
                let end = (start + u64::from(p.sectors)).saturating_sub(1);
                rows.push(vec![
                    p.number.to_string(),
                    start.to_string(),
                    end.to_string(),
                    size(u64::from(p.sectors) * sector),
                    mbr_type(p.type_byte),
                    if p.bootable {
                        "boot".into()
                    } else {
                        String::new()
                    },
                ]);
            }
        }
        None => return,
    }
    out.push_str(&columns(&rows));
}

fn notes(out: &mut String, l: &DiskLayout) {
    for v in &l.btrfs {
        let list: Vec<String> = v.subvolumes.iter().map(BtrfsSubvolume::shown).collect();
        let _ = writeln!(
            out,
            "btrfs {} subvolumes: {}; default: {}",
            v.uuid,
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            },
            if v.default_path.is_empty() {
                "the top level"
            } else {
                &v.default_path
            }
        );
    }
    if !l.unsupported.is_empty() {
        let _ = writeln!(out, "Not restorable yet:");
        for u in &l.unsupported {
            let _ = writeln!(out, "  - {u}");
        }
    }
    if !l.warnings.is_empty() {
        let _ = writeln!(out, "Notes:");
        for w in &l.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(256 << 20), "256.0 MiB");
        assert_eq!(size(1536), "1.5 KiB");
    }

    #[test]
    fn describes_disks_filesystems_and_reasons() {
        let l = DiskLayout {
            disks: vec![Disk {
                name: "vda".into(),
                size_bytes: 1 << 30,
                logical_sector: 512,
                physical_sector: 512,
                model: "QEMU HARDDISK".into(),
                table: Some(PartitionTable::Gpt(GptTable {
                    disk_guid: "G".into(),
                    partitions: vec![GptPartition {
                        number: 1,
                        first_lba: 2048,
                        last_lba: 67583,
                        type_guid: ESP_GUID.into(),
                        name: "EFI".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
                ..Default::default()
            }],
            filesystems: vec![FsRecord {
                device: PartRef {
                    name: "vda1".into(),
                    partition: Some(1),
                    ..Default::default()
                },
                fstype: "vfat".into(),
                uuid: "1234-ABCD".into(),
                mount_point: "/boot/efi".into(),
                size_bytes: 32 << 20,
                ..Default::default()
            }],
            unsupported: vec!["/ is on dm-0".into()],
            boot: BootInfo {
                firmware: Firmware::Uefi,
                uefi_capable: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let text = describe(&l);
        assert!(
            text.contains("Boot: booted by UEFI; bootable by UEFI"),
            "{text}"
        );
        assert!(
            text.contains("Disk vda: 1.0 GiB, sectors 512/512 B, gpt, guid G, model QEMU HARDDISK")
        );
        assert!(
            text.contains("1  2048   67583  32.0 MiB  EFI System  EFI"),
            "{text}"
        );
        assert!(
            text.contains("/boot/efi  vda1    vfat  32.0 MiB  -     1234-ABCD"),
            "{text}"
        );
        assert!(text.contains("Not restorable yet:\n  - / is on dm-0"));

        let none = DiskLayout {
            none: Some("/x is a plain directory".into()),
            ..Default::default()
        };
        assert!(describe(&none).starts_with("Layout: none (/x is a plain directory)"));
    }
}
