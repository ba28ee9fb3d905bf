//! El Torito Bootable CD-ROM Format Specification 1.0: the boot record volume descriptor (2.0),
//! the boot catalog (2.1-2.5: validation entry, default entry = BIOS, one section for UEFI)
//! and the boot info table that `mkisofs -boot-info-table` patches into a BIOS image.

use super::records::{Lba, SECTOR};

/// Platform ids (El Torito 2.1 + UEFI 2.x 13.3.2.1).
pub const PLATFORM_X86: u8 = 0x00;
pub const PLATFORM_EFI: u8 = 0xEF;

/// El Torito 2.0 boot record volume descriptor (sector 17).
pub fn encode_boot_record(catalog: Lba) -> [u8; SECTOR] {
    let mut s = [0u8; SECTOR];
    // [0] type 0, [1..6] "CD001", [6] version 1
    s[1..6].copy_from_slice(b"CD001");
    s[6] = 1;
    // [7..39] boot system identifier, zero padded
    s[7..30].copy_from_slice(b"EL TORITO SPECIFICATION");
    // [71..75] absolute pointer to the boot catalog (little-endian)
    s[71..75].copy_from_slice(&catalog.0.to_le_bytes());
    s
}

/// One bootable image in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEntry {
    pub platform: u8,
    /// Virtual 512-byte sectors the BIOS loads (El Torito 2.2 offset 6).
    pub sector_count: u16,
    pub load_rba: Lba,
}

/// Sector count for an EFI image: its size in 512-byte units. Images of 32 MiB or more do not
/// fit the 16-bit field; like xorriso we store 0 then, which UEFI firmware (EDK2's
/// `PartitionInstallElToritoChildHandles`) reads as "to the end of the medium": the FAT inside
/// knows its own size.
pub fn efi_sector_count(image_len: u64) -> u16 {
    u16::try_from(image_len.div_ceil(512)).unwrap_or(0)
}

/// Encodes the 2048-byte boot catalog: entry 1 (default) for `first`, and an optional final
/// section with one entry for `second`.
pub fn encode_catalog(first: BootEntry, second: Option<BootEntry>) -> [u8; SECTOR] {
    let mut s = [0u8; SECTOR];
    // 2.1 validation entry: [0] header id 1, [1] platform, [4..28] id string,
    // [28..30] checksum, [30] 0x55, [31] 0xAA
    s[0] = 1;
    s[1] = first.platform;
    s[4..11].copy_from_slice(b"OSIMAGE");
    s[30] = 0x55;
    s[31] = 0xAA;
    let sum = s[..32].chunks_exact(2).fold(0u16, |a, w| {
        a.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    s[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    encode_entry(&mut s[32..64], first);
    if let Some(second) = second {
        // 2.4 section header: [0] 0x91 final header, [1] platform, [2..4] entries in section
        s[64] = 0x91;
        s[65] = second.platform;
        s[66..68].copy_from_slice(&1u16.to_le_bytes());
        encode_entry(&mut s[96..128], second);
    }
    s
}

/// 2.2 / 2.5 boot entry: [0] 0x88 bootable, [1] media 0 = no emulation, [2..4] load segment
/// (0 = 0x7C0), [4] system type, [6..8] sector count, [8..12] load RBA.
fn encode_entry(e: &mut [u8], b: BootEntry) {
    e[0] = 0x88;
    e[6..8].copy_from_slice(&b.sector_count.to_le_bytes());
    e[8..12].copy_from_slice(&b.load_rba.0.to_le_bytes());
}

/// Decodes the catalog's entries (platform, sector count, RBA), for tests and `info`.
pub fn decode_catalog(s: &[u8]) -> Option<Vec<BootEntry>> {
    if s.len() < 64 || s[0] != 1 || s[30] != 0x55 || s[31] != 0xAA {
        return None;
    }
    let entry = |e: &[u8], platform| BootEntry {
        platform,
        sector_count: u16::from_le_bytes([e[6], e[7]]),
        load_rba: Lba(u32::from_le_bytes([e[8], e[9], e[10], e[11]])),
    };
    let mut out = vec![entry(&s[32..64], s[1])];
    let mut at = 64;
    while at + 32 <= s.len() && matches!(s[at], 0x90 | 0x91) {
        let (last, platform) = (s[at] == 0x91, s[at + 1]);
        let n = usize::from(u16::from_le_bytes([s[at + 2], s[at + 3]]));
        at += 32;
        for _ in 0..n {
            let e = s.get(at..at + 32)?;
            out.push(entry(e, platform));
            at += 32;
        }
        if last {
            break;
        }
    }
    Some(out)
}

/// Patches the boot info table (mkisofs `-boot-info-table`) into a BIOS image that will sit at
/// `lba`: [8..12] LBA of the PVD, [12..16] LBA of the image, [16..20] its length,
/// [20..24] 32-bit sum of its little-endian words from byte 64 on.
pub fn patch_boot_info_table(image: &mut [u8], lba: Lba) -> Result<(), &'static str> {
    if image.len() < 64 {
        return Err("shorter than 64 bytes: no room for a boot info table");
    }
    let sum = image[64..].chunks(4).fold(0u32, |a, w| {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        a.wrapping_add(u32::from_le_bytes(b))
    });
    image[8..12].copy_from_slice(&super::records::FIRST_VD_SECTOR.to_le_bytes());
    image[12..16].copy_from_slice(&lba.0.to_le_bytes());
    let len = image.len() as u32;
    image[16..20].copy_from_slice(&len.to_le_bytes());
    image[20..24].copy_from_slice(&sum.to_le_bytes());
    image[24..64].fill(0);
    Ok(())
}

/// xorriso `--grub2-boot-info`: GRUB's `i386-pc-eltorito` image is cdboot.img (2048 bytes)
/// followed by diskboot.img, whose block list start (offset 500) must hold the image's
/// 512-byte block + 5 for booting from a hard disk via `boot_hybrid.img`.
pub fn patch_grub2_boot_info(image: &mut [u8], lba: Lba) -> Result<(), &'static str> {
    let at = 2048 + 500;
    let slot = image
        .get_mut(at..at + 8)
        .ok_or("shorter than 2556 bytes: not a GRUB i386-pc-eltorito image")?;
    slot.copy_from_slice(&(u64::from(lba.0) * 4 + 5).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_layout_and_checksum() {
        let bios = BootEntry {
            platform: PLATFORM_X86,
            sector_count: 4,
            load_rba: Lba(40),
        };
        let efi = BootEntry {
            platform: PLATFORM_EFI,
            sector_count: 5760,
            load_rba: Lba(50),
        };
        let s = encode_catalog(bios, Some(efi));
        let sum = s[..32].chunks_exact(2).fold(0u16, |a, w| {
            a.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!(&s[32..34], &[0x88, 0]);
        assert_eq!(&s[38..44], &[4, 0, 40, 0, 0, 0]);
        assert_eq!(&s[64..68], &[0x91, 0xEF, 1, 0]);
        assert_eq!(s[96], 0x88);
        assert_eq!(decode_catalog(&s), Some(vec![bios, efi]));
        assert_eq!(decode_catalog(&[0; 10]), None);
        let rec = encode_boot_record(Lba(33));
        assert_eq!(&rec[0..7], b"\0CD001\x01");
        assert_eq!(&rec[71..75], &[33, 0, 0, 0]);
    }

    #[test]
    fn efi_sector_count_saturates_to_zero() {
        assert_eq!(efi_sector_count(2880 * 1024), 5760);
        assert_eq!(efi_sector_count(65_535 * 512), 65_535);
        assert_eq!(efi_sector_count(64 << 20), 0);
    }

    #[test]
    fn boot_info_table_fields() {
        let mut img = vec![0u8; 4096];
        img[64] = 1;
        img[4095] = 2;
        patch_boot_info_table(&mut img, Lba(77)).expect("fits");
        assert_eq!(
            &img[8..24],
            &[16, 0, 0, 0, 77, 0, 0, 0, 0, 16, 0, 0, 1, 0, 0, 2]
        );
        patch_grub2_boot_info(&mut img, Lba(77)).expect("fits");
        assert_eq!(&img[2548..2556], &(77u64 * 4 + 5).to_le_bytes());
        assert!(patch_boot_info_table(&mut [0u8; 10], Lba(1)).is_err());
    }
}
