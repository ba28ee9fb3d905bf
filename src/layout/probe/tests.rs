//! Each probe against a synthetic buffer laid out at the offsets its format specifies.

use super::*;

const UUID: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];
const UUID_TEXT: &str = "12345678-9abc-def0-0123-456789abcdef";

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

fn ext_image(compat: u32, incompat: u32, ro: u32) -> Vec<u8> {
    let mut b = vec![0u8; HEAD_LEN];
    let sb = 1024;
    put(&mut b, sb, &1000u32.to_le_bytes()); // inodes
    put(&mut b, sb + 0x04, &4096u32.to_le_bytes()); // blocks
    put(&mut b, sb + 0x08, &200u32.to_le_bytes()); // reserved
    put(&mut b, sb + 0x0C, &1000u32.to_le_bytes()); // free
    put(&mut b, sb + 0x18, &2u32.to_le_bytes()); // 4 KiB blocks
    put(&mut b, sb + 0x20, &32768u32.to_le_bytes());
    put(&mut b, sb + 0x38, &0xEF53u16.to_le_bytes());
    put(&mut b, sb + 0x4C, &1u32.to_le_bytes());
    put(&mut b, sb + 0x58, &256u16.to_le_bytes());
    put(&mut b, sb + 0x5C, &compat.to_le_bytes());
    put(&mut b, sb + 0x60, &incompat.to_le_bytes());
    put(&mut b, sb + 0x64, &ro.to_le_bytes());
    put(&mut b, sb + 0x68, &UUID);
    put(&mut b, sb + 0x78, b"rootfs");
    b
}

#[test]
fn ext4_superblock_fields() {
    let b = ext_image(
        0x4 | 0x8 | 0x10 | 0x20,
        0x2 | 0x40 | 0x80 | 0x200,
        0x1 | 0x2,
    );
    let Some(Found::Fs(s)) = probe(&b, &[], 16 << 20) else {
        panic!("not found")
    };
    assert_eq!(s.fstype, "ext4");
    assert_eq!(s.uuid, UUID_TEXT);
    assert_eq!(s.label, "rootfs");
    assert_eq!(s.size_bytes, Some(4096 * 4096));
    assert_eq!(s.used_bytes, Some(3096 * 4096));
    let FsFeatures::Ext(f) = s.features else {
        panic!()
    };
    assert_eq!(f.block_size, 4096);
    assert_eq!(f.inode_size, 256);
    assert_eq!(f.inodes_count, 1000);
    assert_eq!(f.reserved_blocks, 200);
    assert_eq!(
        f.names,
        [
            "has_journal",
            "ext_attr",
            "resize_inode",
            "dir_index",
            "filetype",
            "extent",
            "64bit",
            "flex_bg",
            "sparse_super",
            "large_file"
        ]
    );
}

#[test]
fn ext_flavours_follow_blkid() {
    let kind = |c, i, r| ext(&ext_image(c, i, r)).unwrap().fstype;
    assert_eq!(kind(0x8, 0x2, 0x1), "ext2");
    assert_eq!(kind(0x4 | 0x8, 0x2, 0x1), "ext3");
    assert_eq!(kind(0x4, 0x2 | 0x40, 0x1), "ext4");
    assert_eq!(kind(0x0, 0x2 | 0x40, 0x1), "ext4");
    assert_eq!(kind(0x4, 0x2, 0x1 | 0x400), "ext4");
    // A journal device is no filesystem.
    assert_eq!(ext(&ext_image(0x4, 0x8, 0)), None);
}

#[test]
fn ext_unknown_feature_bits_are_named_like_e2p() {
    assert_eq!(
        ext_feature_names(1 << 31, 1 << 30, 1 << 2),
        ["FEATURE_C31", "FEATURE_I30", "FEATURE_R2"]
    );
}

#[test]
fn vfat_fat32_and_fat16_boot_sectors() {
    // FAT32: 32 MiB, 512-byte sectors, 1 sector per cluster, 32 reserved, 2 FATs.
    let mut b = vec![0u8; 4096];
    b[0] = 0xEB;
    put(&mut b, 3, b"mkfs.fat");
    put(&mut b, 11, &512u16.to_le_bytes());
    b[13] = 1;
    put(&mut b, 14, &32u16.to_le_bytes());
    b[16] = 2;
    b[21] = 0xF8;
    put(&mut b, 32, &65536u32.to_le_bytes());
    put(&mut b, 36, &505u32.to_le_bytes());
    b[66] = 0x29;
    put(&mut b, 67, &0x1234_ABCDu32.to_le_bytes());
    put(&mut b, 71, b"EFI SYSTEM ");
    put(&mut b, 510, &[0x55, 0xAA]);
    let s = vfat(&b).unwrap();
    assert_eq!(
        (s.uuid.as_str(), s.label.as_str()),
        ("1234-ABCD", "EFI SYSTEM")
    );
    let FsFeatures::Vfat(f) = &s.features else {
        panic!()
    };
    assert_eq!(
        (f.fat_bits, f.volume_id, f.sectors_per_fat),
        (32, 0x1234_ABCD, 505)
    );
    assert_eq!(f.oem_name, "mkfs.fat");
    assert_eq!(s.size_bytes, Some(32 << 20));

    // FAT16: 16 MiB, 4 sectors per cluster, 512 root entries, label "NO NAME" means none.
    let mut b = vec![0u8; 4096];
    b[0] = 0xEB;
    put(&mut b, 11, &512u16.to_le_bytes());
    b[13] = 4;
    put(&mut b, 14, &4u16.to_le_bytes());
    b[16] = 2;
    put(&mut b, 17, &512u16.to_le_bytes());
    b[21] = 0xF8;
    put(&mut b, 22, &32u16.to_le_bytes());
    put(&mut b, 32, &32768u32.to_le_bytes());
    b[38] = 0x29;
    put(&mut b, 39, &0xDEAD_BEEFu32.to_le_bytes());
    put(&mut b, 43, b"NO NAME    ");
    put(&mut b, 510, &[0x55, 0xAA]);
    let s = vfat(&b).unwrap();
    assert_eq!((s.uuid.as_str(), s.label.as_str()), ("DEAD-BEEF", ""));
    let FsFeatures::Vfat(f) = &s.features else {
        panic!()
    };
    assert_eq!(f.fat_bits, 16);
}

#[test]
fn vfat_rejects_an_mbr() {
    let mut b = vec![0u8; 512];
    b[0] = 0xFA; // cli: boot code, not a jump
    put(&mut b, 510, &[0x55, 0xAA]);
    assert_eq!(vfat(&b), None);
    b[0] = 0xEB;
    put(&mut b, 11, &500u16.to_le_bytes()); // not a power of two
    assert_eq!(vfat(&b), None);
}

#[test]
fn swap_header_at_each_page_size() {
    for ps in [4096usize, 65536] {
        let mut b = vec![0u8; HEAD_LEN];
        put(&mut b, ps - 10, b"SWAPSPACE2");
        put(&mut b, 1024, &1u32.to_le_bytes());
        put(&mut b, 1024 + 4, &99u32.to_le_bytes());
        put(&mut b, 1024 + 0x0C, &UUID);
        put(&mut b, 1024 + 0x1C, b"swap0");
        let Some(Found::Swap(s)) = probe(&b, &[], 1 << 30) else {
            panic!()
        };
        assert_eq!(s.uuid, UUID_TEXT);
        assert_eq!(s.label, "swap0");
        assert_eq!(s.page_size as usize, ps);
        assert_eq!(s.size_bytes, 100 * ps as u64);
    }
}

#[test]
fn xfs_superblock_fields() {
    let mut b = vec![0u8; HEAD_LEN];
    put(&mut b, 0, b"XFSB");
    put(&mut b, 4, &4096u32.to_be_bytes());
    put(&mut b, 8, &100_000u64.to_be_bytes());
    put(&mut b, 32, &UUID);
    put(&mut b, 88, &4u32.to_be_bytes());
    put(&mut b, 100, &0xB4A5u16.to_be_bytes());
    put(&mut b, 102, &512u16.to_be_bytes());
    put(&mut b, 104, &512u16.to_be_bytes());
    put(&mut b, 108, b"data");
    put(&mut b, 144, &40_000u64.to_be_bytes());
    let s = xfs(&b).unwrap();
    assert_eq!((s.uuid.as_str(), s.label.as_str()), (UUID_TEXT, "data"));
    assert_eq!(s.used_bytes, Some(60_000 * 4096));
    let FsFeatures::Xfs(f) = s.features else {
        panic!()
    };
    assert_eq!((f.version, f.ag_count, f.inode_size), (5, 4, 512));
}

#[test]
fn btrfs_superblock_fields() {
    let mut b = vec![0u8; HEAD_LEN];
    let sb = 0x10000;
    put(&mut b, sb + 0x20, &UUID);
    put(&mut b, sb + 0x40, b"_BHRfS_M");
    put(&mut b, sb + 0x70, &(1u64 << 30).to_le_bytes());
    put(&mut b, sb + 0x78, &(5u64 << 20).to_le_bytes());
    put(&mut b, sb + 0x88, &1u64.to_le_bytes());
    put(&mut b, sb + 0x90, &4096u32.to_le_bytes());
    put(&mut b, sb + 0x94, &16384u32.to_le_bytes());
    put(&mut b, sb + 0x12B, b"pool");
    let Some(Found::Fs(s)) = probe(&b, &[], 1 << 30) else {
        panic!()
    };
    assert_eq!((s.fstype, s.uuid.as_str()), ("btrfs", UUID_TEXT));
    assert_eq!(s.label, "pool");
    assert_eq!(s.used_bytes, Some(5 << 20));
}

#[test]
fn containers_are_recognised() {
    let mut b = vec![0u8; HEAD_LEN];
    put(&mut b, 0, b"LUKS\xba\xbe\x00\x02");
    put(&mut b, 24, b"crypt");
    put(&mut b, 168, UUID_TEXT.as_bytes());
    assert_eq!(
        probe(&b, &[], 1 << 30),
        Some(Found::Container {
            kind: ContainerKind::Luks { version: 2 },
            uuid: UUID_TEXT.into(),
            label: "crypt".into()
        })
    );

    let mut b = vec![0u8; HEAD_LEN];
    put(&mut b, 512, b"LABELONE");
    put(&mut b, 512 + 20, &32u32.to_le_bytes());
    put(&mut b, 512 + 24, b"LVM2 001");
    put(&mut b, 512 + 32, b"abcdefghijklmnopqrstuvwxyz012345");
    let Some(Found::Container { kind, uuid, .. }) = probe(&b, &[], 1 << 30) else {
        panic!()
    };
    assert_eq!(kind, ContainerKind::LvmPv);
    assert_eq!(uuid, "abcdef-ghij-klmn-opqr-stuv-wxyz-012345");
}

#[test]
fn md_members_win_over_the_filesystem_they_carry() {
    // v1.2 at 4 KiB.
    let mut b = vec![0u8; HEAD_LEN];
    put(&mut b, 4096, &MD_MAGIC.to_le_bytes());
    put(&mut b, 4100, &1u32.to_le_bytes());
    put(&mut b, 4096 + 16, &UUID);
    put(&mut b, 4096 + 32, b"host:0");
    let Some(Found::Container { kind, uuid, label }) = probe(&b, &[], 1 << 30) else {
        panic!()
    };
    assert_eq!(
        kind,
        ContainerKind::MdRaid {
            version: "1.2".into()
        }
    );
    assert_eq!((uuid.as_str(), label.as_str()), (UUID_TEXT, "host:0"));

    // v1.0 near the end, with an ext4 superblock at the start (a /boot mirror).
    let size: u64 = 10 << 20;
    let head = ext_image(0x4, 0x40, 0);
    let mut tail = vec![0u8; TAIL_LEN];
    let at = (((size - 8192) & !4095) - (size - TAIL_LEN as u64)) as usize;
    put(&mut tail, at, &MD_MAGIC.to_le_bytes());
    put(&mut tail, at + 4, &1u32.to_le_bytes());
    let Some(Found::Container { kind, .. }) = probe(&head, &tail, size) else {
        panic!()
    };
    assert_eq!(
        kind,
        ContainerKind::MdRaid {
            version: "1.0".into()
        }
    );
}

#[test]
fn short_or_empty_buffers_find_nothing() {
    assert_eq!(probe(&[], &[], 0), None);
    assert_eq!(probe(&[0u8; 100], &[], 100), None);
    assert_eq!(probe(&vec![0u8; HEAD_LEN], &[0u8; 10], 5), None);
}

#[test]
fn zeros_are_blank_and_signatures_are_not() {
    let zero = vec![0u8; HEAD_LEN];
    assert!(!has_signature(&zero));
    for (off, magic) in [
        (510usize, &b"\x55\xAA"[..]),
        (512, b"EFI PART"),
        (0x438, b"\x53\xEF"),
        (0, b"XFSB"),
        (0x10040, b"_BHRfS_M"),
        (0x8001, b"CD001"),
        (4086, b"SWAPSPACE2"),
        (0, b"\xfc\x4e\x2b\xa9"),
        (4096, b"\xfc\x4e\x2b\xa9"),
    ] {
        let mut d = zero.clone();
        d[off..off + magic.len()].copy_from_slice(magic);
        assert!(has_signature(&d), "{magic:?} at {off:#x}");
    }
    // A short read (a tiny disk) is judged on what there is.
    assert!(!has_signature(&zero[..100]));
}

#[test]
fn host_mkfs_ext4_is_seen() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("d.img");
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    let ok = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "mkfs.ext4 failed or is missing (Debian package e2fsprogs)"
    );
    let bytes = std::fs::read(&img).unwrap();
    assert!(has_signature(&bytes[..HEAD_LEN]));
}
