//! Superblock probes: which filesystem, swap area or container a block device holds, read from
//! its first bytes (and its last ones, for MD superblocks kept at the end).
//!
//! Offsets follow each format's own header definition (cited per probe). No udev and no
//! libblkid: the rescue environment and the test machines have neither.

use super::record::{
    BtrfsFeatures, ContainerKind, ExtFeatures, FsFeatures, VfatFeatures, XfsFeatures,
};

/// Bytes a probe reads from the start of a device: btrfs' superblock at 64 KiB ends before.
pub const HEAD_LEN: usize = 68 * 1024;
/// Bytes a probe reads from the end of a device (MD 0.90 keeps its superblock in the last
/// 64 KiB-aligned 64 KiB block; 1.0 at 8 KiB from the end).
pub const TAIL_LEN: usize = 128 * 1024;

/// What a device holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Fs(FsSignature),
    Swap(SwapSignature),
    Container {
        kind: ContainerKind,
        uuid: String,
        label: String,
    },
}

/// A filesystem's identity and mkfs facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsSignature {
    pub fstype: &'static str,
    pub uuid: String,
    pub label: String,
    pub size_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub features: FsFeatures,
}

/// A swap area's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapSignature {
    pub uuid: String,
    pub label: String,
    pub page_size: u32,
    pub size_bytes: u64,
}

/// Probes a device of `size` bytes from its first bytes `head` (up to `HEAD_LEN`) and its last
/// bytes `tail` (up to `TAIL_LEN`, ending at `size`). Containers win over filesystems: an MD
/// 1.0 member also shows its filesystem's superblock at the start.
pub fn probe(head: &[u8], tail: &[u8], size: u64) -> Option<Found> {
    luks(head)
        .or_else(|| lvm(head))
        .or_else(|| md(head, tail, size))
        .or_else(|| swap(head).map(Found::Swap))
        .or_else(|| btrfs(head).map(Found::Fs))
        .or_else(|| xfs(head).map(Found::Fs))
        .or_else(|| ext(head).map(Found::Fs))
        .or_else(|| vfat(head).map(Found::Fs))
}

/// Does the start of a disk carry a partition table or a filesystem/volume signature? Cruder
/// than `probe`, on purpose: any known magic at all makes a disk not blank (the agent's auto
/// mode restores only onto a blank disk; docs/DESIGN.md).
pub fn has_signature(head: &[u8]) -> bool {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    at(510, &[0x55, 0xAA])             // MBR (and protective MBR of GPT, FAT boot sector)
        || at(512, b"EFI PART")        // GPT header, 512-byte sectors
        || at(4096, b"EFI PART")       // GPT header, 4 KiB sectors
        || at(512 + 0x18, b"LVM2 001") // LVM2 label (sector 1)
        || at(0x438, &[0x53, 0xEF])    // ext2/3/4 superblock s_magic
        || at(0, b"XFSB")              // XFS
        || at(0x10040, b"_BHRfS_M")    // btrfs
        || at(0, b"LUKS\xba\xbe")      // LUKS
        || at(0x8001, b"CD001")        // ISO 9660
        || at(0, &[0xfc, 0x4e, 0x2b, 0xa9])    // MD RAID superblock 1.1
        || at(4096, &[0xfc, 0x4e, 0x2b, 0xa9]) // MD RAID superblock 1.2
        || at(4096 - 10, b"SWAPSPACE2") // swap, 4 KiB pages
        || at(4096 - 10, b"SWAP-SPACE")
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A NUL-padded (and, for FAT, space-padded) label.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim_end().to_string()
}

/// A 16-byte UUID as stored big-endian (ext, xfs, btrfs, swap): `8-4-4-4-12` lower-case hex.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn uuid_at(b: &[u8], at: usize) -> Option<String> {
    let u: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(if u == [0; 16] {
        String::new()
    } else {
        uuid_text(&u)
    })
}

/// ext2/3/4: `struct ext4_super_block` at byte 1024 (Linux fs/ext4/ext4.h).
pub fn ext(head: &[u8]) -> Option<FsSignature> {
    let sb = head.get(1024..2048)?;
    if le16(sb, 0x38)? != 0xEF53 {
        return None;
    }
    let compat = le32(sb, 0x5C)?;
    let incompat = le32(sb, 0x60)?;
    let ro_compat = le32(sb, 0x64)?;
    if incompat & 0x8 != 0 {
        return None; // an external journal device, not a filesystem
    }
    let log = le32(sb, 0x18)?;
    if log > 6 {
        return None;
    }
    let block_size = 1024u32 << log;
    let wide = incompat & 0x80 != 0; // 64bit: the _hi halves count
    let hi = |at| {
        if wide {
            le32(sb, at).map(u64::from)
        } else {
            Some(0)
        }
    };
    let blocks = u64::from(le32(sb, 0x04)?) | hi(0x150)? << 32;
    let reserved = u64::from(le32(sb, 0x08)?) | hi(0x154)? << 32;
    let free = u64::from(le32(sb, 0x0C)?) | hi(0x158)? << 32;
    let rev_level = le32(sb, 0x4C)?;
    let seed: [u8; 16] = sb.get(0xEC..0xFC)?.try_into().ok()?;
    let features = ExtFeatures {
        compat,
        incompat,
        ro_compat,
        names: ext_feature_names(compat, incompat, ro_compat),
        block_size,
        inode_size: if rev_level == 0 { 128 } else { le16(sb, 0x58)? },
        inodes_count: le32(sb, 0x00)?,
        blocks_count: blocks,
        reserved_blocks: reserved,
        blocks_per_group: le32(sb, 0x20)?,
        rev_level,
        hash_seed: uuid_text(&seed),
        default_hash: *sb.get(0xFC)?,
        default_mount_opts: le32(sb, 0x100)?,
        encoding: le16(sb, 0x27C)?,
    };
    Some(FsSignature {
        fstype: ext_flavour(compat, incompat, ro_compat),
        uuid: uuid_at(sb, 0x68)?,
        label: text(sb.get(0x78..0x88)?),
        size_bytes: blocks.checked_mul(u64::from(block_size)),
        used_bytes: blocks
            .checked_sub(free)
            .and_then(|u| u.checked_mul(u64::from(block_size))),
        features: FsFeatures::Ext(features),
    })
}

/// blkid's rule: a journal makes ext3 unless features beyond ext3's are on (then ext4); no
/// journal and only ext2 features is ext2.
fn ext_flavour(compat: u32, incompat: u32, ro_compat: u32) -> &'static str {
    const EXT2_INCOMPAT: u32 = 0x2 | 0x10; // filetype, meta_bg
    const EXT3_INCOMPAT: u32 = EXT2_INCOMPAT | 0x4; // + needs_recovery
    const EXT23_RO: u32 = 0x1 | 0x2 | 0x4; // sparse_super, large_file, btree_dir
    let old_ro = ro_compat & !EXT23_RO == 0;
    if compat & 0x4 != 0 {
        if incompat & !EXT3_INCOMPAT == 0 && old_ro {
            "ext3"
        } else {
            "ext4"
        }
    } else if incompat & !EXT2_INCOMPAT == 0 && old_ro {
        "ext2"
    } else {
        "ext4"
    }
}

/// e2fsprogs lib/e2p/feature.c names, as `mkfs.ext4 -O` and `tune2fs -l` spell them.
const EXT_COMPAT: [&str; 13] = [
    "dir_prealloc",
    "imagic_inodes",
    "has_journal",
    "ext_attr",
    "resize_inode",
    "dir_index",
    "lazy_bg",
    "",
    "snapshot_bitmap",
    "sparse_super2",
    "fast_commit",
    "stable_inodes",
    "orphan_file",
];
const EXT_INCOMPAT: [&str; 18] = [
    "compression",
    "filetype",
    "needs_recovery",
    "journal_dev",
    "meta_bg",
    "",
    "extent",
    "64bit",
    "mmp",
    "flex_bg",
    "ea_inode",
    "",
    "dirdata",
    "metadata_csum_seed",
    "large_dir",
    "inline_data",
    "encrypt",
    "casefold",
];
const EXT_RO_COMPAT: [&str; 17] = [
    "sparse_super",
    "large_file",
    "",
    "huge_file",
    "uninit_bg",
    "dir_nlink",
    "extra_isize",
    "snapshot",
    "quota",
    "bigalloc",
    "metadata_csum",
    "replica",
    "read-only",
    "project",
    "shared_blocks",
    "verity",
    "orphan_present",
];

/// Feature names for the set bits; unknown bits as e2p spells them (`FEATURE_I31`).
pub fn ext_feature_names(compat: u32, incompat: u32, ro_compat: u32) -> Vec<String> {
    let mut out = Vec::new();
    for (bits, names, letter) in [
        (compat, &EXT_COMPAT[..], 'C'),
        (incompat, &EXT_INCOMPAT[..], 'I'),
        (ro_compat, &EXT_RO_COMPAT[..], 'R'),
    ] {
        for bit in 0..32 {
            if bits & (1 << bit) != 0 {
                match names.get(bit).filter(|n| !n.is_empty()) {
                    Some(n) => out.push((*n).to_string()),
                    None => out.push(format!("FEATURE_{letter}{bit}")),
                }
            }
        }
    }
    out
}

/// XFS: `struct xfs_dsb` at byte 0, big-endian (fs/xfs/libxfs/xfs_format.h).
pub fn xfs(head: &[u8]) -> Option<FsSignature> {
    if head.get(0..4)? != b"XFSB" {
        return None;
    }
    let block_size = be32(head, 4)?;
    let data_blocks = be64(head, 8)?;
    let free_blocks = be64(head, 144)?;
    let versionnum = be16(head, 100)?;
    let features = XfsFeatures {
        block_size,
        sector_size: be16(head, 102)?,
        inode_size: be16(head, 104)?,
        ag_count: be32(head, 88)?,
        ag_blocks: be32(head, 84)?,
        log_blocks: be32(head, 96)?,
        version: versionnum & 0xF,
        versionnum,
        features2: be32(head, 200)?,
        features_compat: be32(head, 208)?,
        features_ro_compat: be32(head, 212)?,
        features_incompat: be32(head, 216)?,
        data_blocks,
        free_blocks,
    };
    Some(FsSignature {
        fstype: "xfs",
        uuid: uuid_at(head, 32)?,
        label: text(head.get(108..120)?),
        size_bytes: data_blocks.checked_mul(u64::from(block_size)),
        used_bytes: data_blocks
            .checked_sub(free_blocks)
            .and_then(|u| u.checked_mul(u64::from(block_size))),
        features: FsFeatures::Xfs(features),
    })
}

/// btrfs: `struct btrfs_super_block` at 64 KiB (fs/btrfs/accessors.h, uapi btrfs_tree.h).
pub fn btrfs(head: &[u8]) -> Option<FsSignature> {
    let sb = head.get(0x10000..0x10000 + 0x22B)?;
    if sb.get(0x40..0x48)? != b"_BHRfS_M" {
        return None;
    }
    let total = le64(sb, 0x70)?;
    let used = le64(sb, 0x78)?;
    let features = BtrfsFeatures {
        sector_size: le32(sb, 0x90)?,
        node_size: le32(sb, 0x94)?,
        compat_flags: le64(sb, 0xAC)?,
        compat_ro_flags: le64(sb, 0xB4)?,
        incompat_flags: le64(sb, 0xBC)?,
        num_devices: le64(sb, 0x88)?,
        total_bytes: total,
        bytes_used: used,
        csum_type: le16(sb, 0xC4)?,
        subvolumes: Vec::new(),
    };
    Some(FsSignature {
        fstype: "btrfs",
        uuid: uuid_at(sb, 0x20)?,
        label: text(sb.get(0x12B..0x22B)?),
        size_bytes: Some(total),
        used_bytes: Some(used),
        features: FsFeatures::Btrfs(features),
    })
}

/// FAT12/16/32 boot sector (Microsoft FAT specification 1.03, §3).
pub fn vfat(head: &[u8]) -> Option<FsSignature> {
    let bs = head.get(0..512)?;
    if bs[510..512] != [0x55, 0xAA] || !(bs[0] == 0xEB || bs[0] == 0xE9) {
        return None;
    }
    let bps = le16(bs, 11)?;
    let spc = bs[13];
    let reserved = le16(bs, 14)?;
    let fats = bs[16];
    let root_entries = le16(bs, 17)?;
    let media = bs[21];
    let sane = bps.is_power_of_two()
        && (512..=4096).contains(&bps)
        && spc.is_power_of_two()
        && reserved >= 1
        && (1..=4).contains(&fats)
        && (media == 0xF0 || media >= 0xF8);
    if !sane {
        return None;
    }
    let fat16 = le16(bs, 22)?;
    let fat_size = if fat16 != 0 {
        u32::from(fat16)
    } else {
        le32(bs, 36)?
    };
    let total16 = le16(bs, 19)?;
    let total = if total16 != 0 {
        u32::from(total16)
    } else {
        le32(bs, 32)?
    };
    let root_sectors = (u32::from(root_entries) * 32).div_ceil(u32::from(bps));
    let meta = u32::from(reserved) + u32::from(fats) * fat_size + root_sectors;
    let clusters = total.checked_sub(meta)? / u32::from(spc);
    // Linux (fs/fat/inode.c) and blkid call a volume FAT32 when the 16-bit FAT size is zero,
    // whatever its cluster count (mkfs.fat makes small FAT32 ESPs); else count clusters.
    let fat_bits: u8 = match (fat16, clusters) {
        (0, _) => 32,
        (_, 0..4085) => 12,
        _ => 16,
    };
    // The extended BPB sits at 36 (FAT12/16) or 64 (FAT32); 0x29 marks id and label valid.
    let ebpb = if fat_bits == 32 { 64 } else { 36 };
    let (volume_id, label) = if bs[ebpb + 2] == 0x29 {
        let label = text(&bs[ebpb + 7..ebpb + 18]);
        let label = if label == "NO NAME" {
            String::new()
        } else {
            label
        };
        (le32(bs, ebpb + 3)?, label)
    } else {
        (0, String::new())
    };
    let features = VfatFeatures {
        fat_bits,
        bytes_per_sector: bps,
        sectors_per_cluster: spc,
        reserved_sectors: reserved,
        num_fats: fats,
        root_entries,
        total_sectors: total,
        sectors_per_fat: fat_size,
        media,
        hidden_sectors: le32(bs, 28)?,
        volume_id,
        oem_name: text(&bs[3..11]),
    };
    Some(FsSignature {
        fstype: "vfat",
        uuid: vfat_uuid(volume_id),
        label,
        size_bytes: Some(u64::from(total) * u64::from(bps)),
        used_bytes: None,
        features: FsFeatures::Vfat(features),
    })
}

/// A FAT volume id as blkid prints it: `ABCD-1234`.
pub fn vfat_uuid(id: u32) -> String {
    format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)
}

/// Linux swap v1: `SWAPSPACE2` in the last 10 bytes of the first page, `union swap_header`
/// at 1024 (include/linux/swap.h). The page size is where the magic is.
pub fn swap(head: &[u8]) -> Option<SwapSignature> {
    let page_size = [4096u32, 8192, 16384, 32768, 65536]
        .into_iter()
        .find(|&ps| {
            let at = ps as usize - 10;
            head.get(at..at + 10)
                .is_some_and(|m| m == b"SWAPSPACE2" || m.starts_with(b"S1SUSPEND"))
        })?;
    let last_page = le32(head, 1024 + 4)?;
    Some(SwapSignature {
        uuid: uuid_at(head, 1024 + 0x0C)?,
        label: text(head.get(1024 + 0x1C..1024 + 0x2C)?),
        page_size,
        size_bytes: (u64::from(last_page) + 1) * u64::from(page_size),
    })
}

/// LUKS1/2 header at byte 0 (cryptsetup docs/on-disk-format*.pdf): magic, BE version, label
/// (LUKS2 only) at 24, UUID text at 168.
fn luks(head: &[u8]) -> Option<Found> {
    if head.get(0..6)? != b"LUKS\xba\xbe" {
        return None;
    }
    let version = be16(head, 6)?;
    let label = if version == 2 {
        text(head.get(24..72)?)
    } else {
        String::new()
    };
    Some(Found::Container {
        kind: ContainerKind::Luks { version },
        uuid: text(head.get(168..208)?),
        label,
    })
}

/// LVM2 PV: a `LABELONE` label in one of the first four sectors, `LVM2 001` at +24, the PV
/// header at the offset stored at +20, whose first 32 bytes are the PV UUID.
fn lvm(head: &[u8]) -> Option<Found> {
    (0..4).find_map(|s| {
        let l = head.get(s * 512..s * 512 + 512)?;
        if &l[0..8] != b"LABELONE" || &l[24..32] != b"LVM2 001" {
            return None;
        }
        let at = le32(l, 20)? as usize;
        let id = l.get(at..at + 32)?;
        let id = String::from_utf8_lossy(id);
        // LVM prints it 6-4-4-4-4-4-6.
        let mut uuid = String::new();
        let mut pos = 0;
        for n in [6, 4, 4, 4, 4, 4, 6] {
            if !uuid.is_empty() {
                uuid.push('-');
            }
            uuid.push_str(id.get(pos..pos + n)?);
            pos += n;
        }
        Some(Found::Container {
            kind: ContainerKind::LvmPv,
            uuid,
            label: String::new(),
        })
    })
}

const MD_MAGIC: u32 = 0xa92b_4efc;

/// MD RAID member: v1.1 at 0, v1.2 at 4 KiB, v1.0 at 8 KiB before the end (4 KiB aligned),
/// v0.90 in the last 64 KiB-aligned 64 KiB (drivers/md/md.h, include/uapi/linux/raid/md_p.h).
fn md(head: &[u8], tail: &[u8], size: u64) -> Option<Found> {
    let v1 = |sb: &[u8], minor: &str| -> Option<Found> {
        if le32(sb, 0)? != MD_MAGIC || le32(sb, 4)? != 1 {
            return None;
        }
        Some(Found::Container {
            kind: ContainerKind::MdRaid {
                version: format!("1.{minor}"),
            },
            uuid: uuid_at(sb, 16)?,
            label: text(sb.get(32..64)?),
        })
    };
    let tail_start = size.checked_sub(tail.len() as u64)?;
    let in_tail = |abs: u64| -> Option<&[u8]> { tail.get(abs.checked_sub(tail_start)? as usize..) };
    let end_v10 = size.checked_sub(8192).map(|x| x & !4095);
    let end_v090 = (size & !65535).checked_sub(65536);
    head.get(4096..)
        .and_then(|sb| v1(sb, "2"))
        .or_else(|| v1(head, "1"))
        .or_else(|| v1(in_tail(end_v10?)?, "0"))
        .or_else(|| {
            let sb = in_tail(end_v090?)?;
            if le32(sb, 0)? != MD_MAGIC {
                return None;
            }
            let mut u = [0u8; 16];
            u[0..4].copy_from_slice(sb.get(20..24)?);
            u[4..16].copy_from_slice(sb.get(52..64)?);
            Some(Found::Container {
                kind: ContainerKind::MdRaid {
                    version: "0.90".into(),
                },
                uuid: uuid_text(&u),
                label: String::new(),
            })
        })
}

#[cfg(test)]
mod tests;
