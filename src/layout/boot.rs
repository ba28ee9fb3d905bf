//! How the system boots: firmware mode, and the UEFI boot entries from efivarfs
//! (Documentation/filesystems/efivarfs.rst; UEFI 2.10 §3.1.3 `EFI_LOAD_OPTION`).

use std::path::Path;

use super::record::{EfiBootEntry, Firmware};

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
