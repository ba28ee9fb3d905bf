//! The hybrid system area (ECMA-119 6.2.1 leaves the first 32 KiB to the system): a protective
//! MBR carrying GRUB's `boot_hybrid.img` code and a GPT (UEFI 2.10 chapter 5) whose one
//! partition is the EFI system partition image inside the ISO, so that the same file written
//! to a USB stick boots in BIOS mode (MBR code) and UEFI mode (GPT ESP). Same scheme as
//! `grub-mkrescue` (xorriso `--grub2-mbr --protective-msdos-label -efi-boot-part`).

/// 512-byte sectors the backup GPT needs at the end of the image: 32 of entries + header.
pub const GPT_TAIL_BYTES: u64 = 33 * 512;
const ENTRIES: usize = 128;
const ENTRY_LEN: usize = 128;
const ENTRY_SECTORS: u64 = (ENTRIES * ENTRY_LEN / 512) as u64;
/// C12A7328-F81F-11D2-BA4B-00A0C93EC93B in GPT's mixed-endian byte order.
pub const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
];

/// IEEE 802.3 CRC-32 (the one GPT uses), bitwise: GPT tables are 16 KiB, speed is moot.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

/// A GUID (RFC 4122 version 4 layout) derived from `seed` and a salt, for reproducible images.
fn guid(seed: &[u8; 32], salt: u8) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(seed);
    h.update(&[salt]);
    let mut g = [0u8; 16];
    g.copy_from_slice(&h.finalize().as_bytes()[..16]);
    g[7] = (g[7] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

/// What the system area describes.
#[derive(Debug, Clone)]
pub struct HybridInput<'a> {
    /// Size of the whole image in bytes (a multiple of 2048, backup GPT included).
    pub image_len: u64,
    /// The ESP image: byte offset and length inside the ISO.
    pub esp: Option<(u64, u64)>,
    /// MBR boot code (GRUB `boot_hybrid.img`); bytes 0..432 are used.
    pub mbr_code: Option<&'a [u8]>,
    /// Byte offset of the BIOS El Torito image, patched into the MBR for GRUB.
    pub bios_image: Option<u64>,
    pub seed: [u8; 32],
}

/// The first 32 KiB of the image and the last [`GPT_TAIL_BYTES`] bytes.
pub fn system_area(input: &HybridInput) -> (Vec<u8>, Vec<u8>) {
    let disk_sectors = input.image_len / 512;
    let mut head = vec![0u8; 32 * 1024];
    encode_mbr(&mut head[..512], input, disk_sectors);
    let entries = encode_entries(input);
    let backup_entries_lba = disk_sectors - 1 - ENTRY_SECTORS;
    let primary = GptHeader {
        my_lba: 1,
        alternate_lba: disk_sectors - 1,
        first_usable: 2 + ENTRY_SECTORS,
        last_usable: backup_entries_lba - 1,
        disk_guid: guid(&input.seed, 0),
        entries_lba: 2,
        entries_crc: crc32(&entries),
    };
    head[512..1024].copy_from_slice(&primary.encode());
    head[1024..1024 + entries.len()].copy_from_slice(&entries);
    let backup = GptHeader {
        my_lba: disk_sectors - 1,
        alternate_lba: 1,
        entries_lba: backup_entries_lba,
        ..primary
    };
    let mut tail = entries;
    tail.extend_from_slice(&backup.encode());
    (head, tail)
}

/// MBR: [0..432] boot code, [432..440] GRUB's core location (the BIOS image's 512-byte block
/// plus 4, skipping cdboot.img), [440..444] disk signature, [446..462] the protective
/// partition (type 0xEE from LBA 1 to the end), [510..512] 0x55 0xAA.
fn encode_mbr(m: &mut [u8], input: &HybridInput, disk_sectors: u64) {
    if let Some(code) = input.mbr_code {
        let n = code.len().min(432);
        m[..n].copy_from_slice(&code[..n]);
    }
    if let (Some(_), Some(off)) = (input.mbr_code, input.bios_image) {
        m[432..440].copy_from_slice(&(off / 512 + 4).to_le_bytes());
    }
    m[440..444].copy_from_slice(&guid(&input.seed, 1)[..4]);
    m[444..446].fill(0);
    let p = &mut m[446..462];
    p[0] = 0x00; // not active (as grub-mkrescue; UEFI 5.2.3 wants 0 on a protective MBR)
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    p[4] = 0xEE;
    p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(disk_sectors - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
}

/// The partition entry array: entry 1 is the ESP when there is one.
/// Entry: [0..16] type GUID, [16..32] unique GUID, [32..40] first LBA, [40..48] last LBA
/// (inclusive), [48..56] attributes, [56..128] name (UTF-16LE).
fn encode_entries(input: &HybridInput) -> Vec<u8> {
    let mut a = vec![0u8; ENTRIES * ENTRY_LEN];
    if let Some((off, len)) = input.esp {
        let e = &mut a[..ENTRY_LEN];
        e[0..16].copy_from_slice(&ESP_TYPE);
        e[16..32].copy_from_slice(&guid(&input.seed, 2));
        let first = off / 512;
        let last = first + len.div_ceil(512).max(1) - 1;
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        let name: Vec<u8> = "EFI system partition"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        e[56..56 + name.len()].copy_from_slice(&name);
    }
    a
}

/// GPT header (UEFI 2.10 table 5.5).
#[derive(Debug, Clone, Copy)]
struct GptHeader {
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: [u8; 16],
    entries_lba: u64,
    entries_crc: u32,
}

impl GptHeader {
    /// [0..8] "EFI PART", [8..12] revision 1.0, [12..16] header size 92, [16..20] header CRC,
    /// [24..32] my LBA, [32..40] alternate LBA, [40..48] first usable, [48..56] last usable,
    /// [56..72] disk GUID, [72..80] entries LBA, [80..84] entry count, [84..88] entry size,
    /// [88..92] entries CRC.
    fn encode(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&self.my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&self.alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid);
        h[72..80].copy_from_slice(&self.entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_LEN as u32).to_le_bytes());
        h[88..92].copy_from_slice(&self.entries_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn mbr_and_gpt_fields() {
        let code = [0xAAu8; 512];
        let input = HybridInput {
            image_len: 10 * 1024 * 1024,
            esp: Some((200 * 2048, 3 * 1024 * 1024)),
            mbr_code: Some(&code),
            bios_image: Some(100 * 2048),
            seed: [7; 32],
        };
        let (head, tail) = system_area(&input);
        assert_eq!(&head[..432], &code[..432]);
        assert_eq!(&head[432..440], &(100u64 * 4 + 4).to_le_bytes());
        assert_eq!(&head[446..462][4..5], &[0xEE]);
        assert_eq!(&head[454..458], &1u32.to_le_bytes());
        assert_eq!(&head[458..462], &(20479u32).to_le_bytes());
        assert_eq!(&head[510..512], &[0x55, 0xAA]);
        assert_eq!(&head[512..520], b"EFI PART");
        let h = &head[512..1024];
        let mut z = h[..92].to_vec();
        z[16..20].fill(0);
        assert_eq!(crc32(&z).to_le_bytes(), h[16..20]);
        assert_eq!(&h[32..40], &20479u64.to_le_bytes());
        assert_eq!(&h[48..56], &(20479u64 - 33).to_le_bytes());
        let e = &head[1024..1152];
        assert_eq!(&e[..16], &ESP_TYPE);
        assert_eq!(&e[32..40], &800u64.to_le_bytes());
        assert_eq!(&e[40..48], &(800u64 + 6144 - 1).to_le_bytes());
        assert_eq!(tail.len() as u64, GPT_TAIL_BYTES);
        assert_eq!(&tail[16384..16392], b"EFI PART");
        assert_eq!(&tail[..128], e);
    }
}
