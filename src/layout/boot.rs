//! How the system boots: firmware mode, ESP, BIOS boot partition and its bytes, and the UEFI
//! boot entries from efivarfs
//! (Documentation/filesystems/efivarfs.rst; UEFI 2.10 §3.1.3 `EFI_LOAD_OPTION`).

use std::path::Path;

use super::devices::Devices;
use super::record::{
    BootInfo, DiskLayout, EfiBootEntry, Firmware, FsRecord, PartRef, PartitionTable,
};
use super::table::{BIOS_BOOT_GUID, ESP_GUID, MAX_BIOS_BOOT, MBR_ESP};

/// The EFI global variable vendor GUID, suffix of `Boot####` and `BootOrder` in efivarfs.
const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// UEFI if the firmware published /sys/firmware/efi (the running system booted by UEFI).
pub fn running_firmware(sys: &Path) -> Firmware {
    if sys.join("firmware/efi").exists() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    }
}

/// Whether the firmware runs with Secure Boot on, from the `SecureBoot` global variable
/// (UEFI 2.10 §3.3: one byte after efivarfs' 4 attribute bytes, 1 = on). `None`: not UEFI, or
/// efivarfs not mounted or the variable unreadable.
pub fn secure_boot_state(efivars: &Path) -> Option<bool> {
    let v = std::fs::read(efivars.join(format!("SecureBoot-{GLOBAL}"))).ok()?;
    match v.as_slice() {
        [_, _, _, _, state] => Some(*state == 1),
        _ => None,
    }
}

/// Boot entries, `BootOrder` and `BootCurrent`, best-effort: unreadable or malformed variables
/// are left out.
pub fn efi_entries(efivars: &Path) -> (Vec<EfiBootEntry>, Vec<u16>, Option<u16>) {
    let mut entries = Vec::new();
    let Ok(dir) = std::fs::read_dir(efivars) else {
        return (entries, Vec::new(), None);
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(hex) = name
            .strip_suffix(GLOBAL)
            .and_then(|n| n.strip_suffix('-'))
            .and_then(|n| n.strip_prefix("Boot"))
            .filter(|h| h.len() == 4)
        else {
            continue;
        };
        let (Ok(number), Ok(bytes)) = (u16::from_str_radix(hex, 16), std::fs::read(e.path()))
        else {
            continue;
        };
        if let Some(entry) = bytes.get(4..).and_then(|b| load_option(number, b)) {
            entries.push(entry);
        }
    }
    entries.sort_by_key(|e| e.number);
    let var = |n: &str| std::fs::read(efivars.join(format!("{n}-{GLOBAL}"))).ok();
    let order = var("BootOrder")
        .map(|b| u16s(b.get(4..).unwrap_or_default()))
        .unwrap_or_default();
    let current = var("BootCurrent").and_then(|b| u16s(b.get(4..)?).first().copied());
    (entries, order, current)
}

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Decodes an `EFI_LOAD_OPTION`: attributes (u32), FilePathListLength (u16), a NUL-terminated
/// UCS-2 description, the device path, then optional data.
pub fn load_option(number: u16, b: &[u8]) -> Option<EfiBootEntry> {
    let attributes = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
    let path_len = usize::from(u16::from_le_bytes(b.get(4..6)?.try_into().ok()?));
    let units = u16s(b.get(6..)?);
    let chars = units.iter().position(|&c| c == 0)?;
    let description = String::from_utf16_lossy(&units[..chars]);
    let path_at = 6 + (chars + 1) * 2;
    let device_path = b.get(path_at..path_at + path_len)?.to_vec();
    Some(EfiBootEntry {
        number,
        attributes,
        description,
        device_path,
        optional_data: b[path_at + path_len..].to_vec(),
    })
}

/// Firmware mode, ESP, BIOS boot partition and its bytes, UEFI entries of the layout `l`
/// captured from `root`; problems go to `warnings`.
pub fn capture(
    root: &Path,
    sys: &Path,
    l: &DiskLayout,
    devices: &mut Devices,
    warnings: &mut Vec<String>,
) -> BootInfo {
    let running = root == Path::new("/");
    let mut info = BootInfo {
        firmware: if running {
            running_firmware(sys)
        } else {
            Firmware::Unknown
        },
        grub_i386_pc: root.join("boot/grub/i386-pc").is_dir(),
        ..Default::default()
    };
    info.esp = find_esp(l);
    bios_boot(l, devices, &mut info, warnings);
    if info.firmware == Firmware::Uefi {
        let (entries, order, current) = efi_entries(&sys.join("firmware/efi/efivars"));
        (info.efi_entries, info.boot_order, info.boot_current) = (entries, order, current);
    }
    let boot_disk_code = l
        .filesystems
        .iter()
        .filter(|f| f.mount_point == "/" || f.mount_point == "/boot")
        .filter_map(|f| l.disks.get(f.device.disk as usize))
        .any(|d| {
            matches!(d.table, Some(PartitionTable::Mbr(_)))
                && d.mbr_boot_code.iter().any(|&b| b != 0)
        });
    info.uefi_capable = info.esp.is_some() || info.firmware == Firmware::Uefi;
    info.bios_capable = info.bios_boot.is_some()
        || info.grub_i386_pc
        || boot_disk_code
        || info.firmware == Firmware::Bios;
    info
}

/// The vfat filesystem on a partition typed as an ESP, else a vfat one mounted where ESPs
/// are mounted.
fn find_esp(l: &DiskLayout) -> Option<PartRef> {
    let typed = |f: &&FsRecord| {
        let Some(n) = f.device.partition else {
            return false;
        };
        let Some(disk) = l.disks.get(f.device.disk as usize) else {
            return false;
        };
        match &disk.table {
            Some(PartitionTable::Gpt(t)) => t
                .partitions
                .iter()
                .any(|p| p.number == n && p.type_guid.eq_ignore_ascii_case(ESP_GUID)),
            Some(PartitionTable::Mbr(t)) => t
                .partitions
                .iter()
                .any(|p| p.number == n && p.type_byte == MBR_ESP),
            None => false,
        }
    };
    let vfat = l.filesystems.iter().filter(|f| f.fstype == "vfat");
    vfat.clone()
        .find(|f| typed(f))
        .or_else(|| {
            vfat.clone()
                .find(|f| ["/boot/efi", "/efi", "/boot"].contains(&f.mount_point.as_str()))
        })
        .map(|f| f.device.clone())
}

/// The first BIOS boot partition on a recorded disk, and its bytes read from the disk.
fn bios_boot(
    l: &DiskLayout,
    devices: &mut Devices,
    info: &mut BootInfo,
    warnings: &mut Vec<String>,
) {
    for (i, disk) in l.disks.iter().enumerate() {
        let Some(PartitionTable::Gpt(t)) = &disk.table else {
            continue;
        };
        let Some(p) = t
            .partitions
            .iter()
            .find(|p| p.type_guid.eq_ignore_ascii_case(BIOS_BOOT_GUID))
        else {
            continue;
        };
        let part = devices
            .list
            .iter()
            .find(|d| d.parent.as_deref() == Some(&disk.name) && d.partition == Some(p.number));
        info.bios_boot = Some(PartRef {
            disk: i as u32,
            partition: Some(p.number),
            name: part.map(|d| d.name.clone()).unwrap_or_default(),
            dev: part.map(|d| d.dev()).unwrap_or(0),
        });
        let sector = u64::from(disk.logical_sector);
        let len = (p.last_lba + 1)
            .saturating_sub(p.first_lba)
            .saturating_mul(sector);
        if len > MAX_BIOS_BOOT {
            warnings.push(format!(
                "{}: BIOS boot partition {} is {len} bytes, over 16 MiB: its bytes are not \
                 kept",
                disk.name, p.number
            ));
        } else if let Some(dev) = devices.get(&disk.name).cloned() {
            match devices.read(&dev, p.first_lba * sector, len as usize) {
                Ok(b) => info.bios_boot_bytes = b,
                Err(e) => warnings.push(format!(
                    "{}: BIOS boot partition {}: {e}",
                    disk.name, p.number
                )),
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option_bytes(desc: &str, path: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut b = 1u32.to_le_bytes().to_vec();
        b.extend_from_slice(&(path.len() as u16).to_le_bytes());
        for u in desc.encode_utf16().chain([0]) {
            b.extend_from_slice(&u.to_le_bytes());
        }
        b.extend_from_slice(path);
        b.extend_from_slice(extra);
        b
    }

    #[test]
    fn load_option_fields() {
        let b = option_bytes("debian", &[4, 1, 42, 0, 0x7f, 0xff, 4, 0], b"x");
        let e = load_option(3, &b).unwrap();
        assert_eq!(
            (e.number, e.attributes, e.description.as_str()),
            (3, 1, "debian")
        );
        assert_eq!(e.device_path, [4, 1, 42, 0, 0x7f, 0xff, 4, 0]);
        assert_eq!(e.optional_data, b"x");
        assert_eq!(load_option(3, &b[..b.len() - 3]), None);
        assert_eq!(load_option(3, &[1, 0]), None);
    }

    #[test]
    fn secure_boot_state_is_the_variables_fifth_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let var = dir.path().join(format!("SecureBoot-{GLOBAL}"));
        assert_eq!(secure_boot_state(dir.path()), None);
        std::fs::write(&var, [6, 0, 0, 0, 1]).expect("write");
        assert_eq!(secure_boot_state(dir.path()), Some(true));
        std::fs::write(&var, [6, 0, 0, 0, 0]).expect("write");
        assert_eq!(secure_boot_state(dir.path()), Some(false));
        std::fs::write(&var, [6, 0, 0, 0]).expect("write");
        assert_eq!(secure_boot_state(dir.path()), None);
    }

    #[test]
    fn reads_an_efivarfs_directory() {
        let t = tempfile::tempdir().unwrap();
        let put = |name: &str, data: &[u8]| {
            let mut b = 7u32.to_le_bytes().to_vec();
            b.extend_from_slice(data);
            std::fs::write(t.path().join(format!("{name}-{GLOBAL}")), b).unwrap();
        };
        put(
            "Boot0001",
            &option_bytes("UEFI shell", &[0x7f, 0xff, 4, 0], &[]),
        );
        put(
            "Boot000A",
            &option_bytes("debian", &[0x7f, 0xff, 4, 0], &[]),
        );
        put("BootOrder", &[0x0A, 0, 0x01, 0]);
        put("BootCurrent", &[0x0A, 0]);
        put("Boot0002", &[1]); // malformed: skipped
        std::fs::write(t.path().join("Timeout-other"), b"x").unwrap();
        let (e, order, current) = efi_entries(t.path());
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].number, e[1].number), (1, 10));
        assert_eq!(e[1].description, "debian");
        assert_eq!(order, [10, 1]);
        assert_eq!(current, Some(10));
    }
}
