//! The layout record: what the disks, partition tables, filesystems, swap and boot set-up of a
//! captured system were (docs/FORMAT.md §9, manifest extension `layout`, version 3).
//!
//! Plain data with serde derives, encoded with bincode 2 (standard config) by `layout::codec`.
//! Field order is part of the format: changing it means a new extension version.

use serde::{Deserialize, Serialize};

/// Everything the restore needs to recreate the captured system's storage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskLayout {
    /// Why there is no layout (a plain directory was captured), or `None` when there is one.
    pub none: Option<String>,
    /// The disks holding a filesystem or swap the captured system uses, in sysfs name order.
    pub disks: Vec<Disk>,
    /// Filesystems the captured system mounts (from its fstab, else from the mount table).
    pub filesystems: Vec<FsRecord>,
    pub swaps: Vec<SwapRecord>,
    /// LVM physical volumes, LUKS containers and MD RAID members met on those disks.
    pub containers: Vec<Container>,
    /// The captured root's `etc/fstab`, parsed.
    pub fstab: Vec<FstabEntry>,
    pub boot: BootInfo,
    /// Reasons this system cannot be restored yet; empty when it can.
    pub unsupported: Vec<String>,
    /// Things worth knowing that do not stop a restore (an fstab entry marked `nofail` whose
    /// device is absent, a boot area too large to keep...).
    pub warnings: Vec<String>,
    /// The subvolumes of each recorded btrfs filesystem (version 2; empty in version 1).
    pub btrfs: Vec<BtrfsVolume>,
    /// MD arrays, LUKS containers and LVM volume groups between the disks and the recorded
    /// filesystems and swaps (version 3; empty before).
    pub stack: BlockStack,
}

/// The block stack under the recorded filesystems (docs/FORMAT.md §9.4): every layer a
/// restore recreates, bottom up, before making the filesystems. A `PartRef` whose `name` is
/// the `name` of an entry here means that entry (an array, an open LUKS mapping or an LV);
/// any other `PartRef` is a partition or a whole disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStack {
    pub md: Vec<MdArray>,
    pub luks: Vec<LuksVolume>,
    pub vgs: Vec<VolumeGroup>,
}

/// An MD RAID array the system assembles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdArray {
    /// Kernel name on the source (`md0`, `md127`).
    pub name: String,
    /// The device path the system names it by (`/dev/md0`, `/dev/md/root`).
    pub path: String,
    /// Superblock version: `0.90`, `1.0`, `1.1`, `1.2`.
    pub metadata: String,
    /// Array UUID as mdadm prints it (`xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`).
    pub uuid: String,
    /// The superblock's name (`host:name`; empty for 0.90).
    pub array_name: String,
    /// `raid0`, `raid1`, `raid4`, `raid5`, `raid6`, `raid10`, `linear`.
    pub level: String,
    /// The level's layout number (raid5/6/10), 0 otherwise.
    pub layout: u32,
    pub chunk_kib: u32,
    pub raid_disks: u32,
    /// An internal write-intent bitmap.
    pub bitmap: bool,
    /// Where data starts on each member, in 512-byte sectors (1.x).
    pub data_offset_sectors: u64,
    /// The array's size in bytes.
    pub size_bytes: u64,
    /// Members in role order (spares last, role `u32::MAX`).
    pub members: Vec<MdMember>,
    /// A member was missing or failed at capture.
    pub degraded: bool,
    /// The `mdadm --create` options that recreate it (but `--size` and the members).
    pub create_args: Vec<String>,
}

/// One member of an MD array.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdMember {
    /// Its slot in the array (`u32::MAX`: a spare).
    pub role: u32,
    pub device: PartRef,
}

/// A LUKS container and the mapping the system opens it as.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LuksVolume {
    /// Kernel name of the open mapping on the source (`dm-1`).
    pub name: String,
    /// The mapping's name (`/dev/mapper/NAME`, crypttab's first field).
    pub mapping: String,
    /// Where the LUKS header is.
    pub device: PartRef,
    /// 1 or 2.
    pub version: u16,
    pub uuid: String,
    /// LUKS2 label and subsystem (empty for LUKS1).
    pub label: String,
    pub subsystem: String,
    /// `aes-xts-plain64`.
    pub cipher: String,
    pub key_bits: u32,
    pub sector_size: u32,
    /// `argon2id`, `argon2i`, `pbkdf2`.
    pub pbkdf: String,
    /// Where the encrypted data starts on `device`.
    pub data_offset_bytes: u64,
    /// The `cryptsetup luksFormat` options that recreate the header's parameters.
    pub format_args: Vec<String>,
    /// `cryptsetup open --persistent` options for its LUKS2 flags (allow-discards...).
    pub open_args: Vec<String>,
    /// The captured system's `etc/crypttab` line that opens it, if any.
    pub crypttab: Option<CrypttabLine>,
    /// Size of the opened mapping, bytes.
    pub size_bytes: u64,
}

/// One `etc/crypttab` line, fields unescaped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrypttabLine {
    pub line: u32,
    pub name: String,
    pub device: String,
    pub key: String,
    pub options: String,
}

/// An LVM volume group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeGroup {
    pub name: String,
    /// UUID as LVM prints it (`6-4-4-4-4-4-6`).
    pub uuid: String,
    pub extent_bytes: u64,
    pub pvs: Vec<PhysicalVolume>,
    pub lvs: Vec<LogicalVolume>,
    pub tags: Vec<String>,
    /// The VG's metadata text as its PVs hold it (what `vgcfgbackup` writes): the restore
    /// gives it, resized, to `vgcfgrestore`, which keeps every name, UUID and segment.
    pub metadata: String,
}

/// A physical volume of a VG.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalVolume {
    /// The key in the metadata (`pv0`).
    pub key: String,
    pub uuid: String,
    pub device: PartRef,
    pub pe_start_bytes: u64,
    pub pe_count: u64,
    pub size_bytes: u64,
}

/// A logical volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalVolume {
    pub name: String,
    pub uuid: String,
    /// Kernel name of its device on the source (`dm-0`); empty when it was not active.
    pub kernel_name: String,
    pub extents: u64,
    /// `linear`, `striped`, `thin-pool`, `thin`, `snapshot`, `cache`, `raid`, `mirror`...
    pub kind: String,
    /// A restore can recreate it (linear and striped).
    pub recreatable: bool,
    /// An LVM-internal sub-volume (`_tmeta`, `_rimage_0`...): shown under its owner.
    pub hidden: bool,
    pub tags: Vec<String>,
}

impl BlockStack {
    /// True when nothing is stacked.
    pub fn is_empty(&self) -> bool {
        self.md.is_empty() && self.luks.is_empty() && self.vgs.is_empty()
    }

    /// Whether device `name` (a source kernel name) is built upon by the stack: an MD
    /// member, the device under a LUKS mapping, or a PV.
    pub fn holds(&self, name: &str) -> bool {
        self.md
            .iter()
            .any(|m| m.members.iter().any(|x| x.device.name == name))
            || self.luks.iter().any(|l| l.device.name == name)
            || self
                .vgs
                .iter()
                .any(|v| v.pvs.iter().any(|p| p.device.name == name))
    }

    /// What the stack entry named `name` (a source kernel name) is, if it is one.
    pub fn node(&self, name: &str) -> Option<StackNode<'_>> {
        if name.is_empty() {
            return None;
        }
        if let Some(m) = self.md.iter().find(|m| m.name == name) {
            return Some(StackNode::Md(m));
        }
        if let Some(l) = self.luks.iter().find(|l| l.name == name) {
            return Some(StackNode::Luks(l));
        }
        self.vgs.iter().find_map(|vg| {
            vg.lvs
                .iter()
                .find(|lv| lv.kernel_name == name)
                .map(|lv| StackNode::Lv(vg, lv))
        })
    }

    /// The partitions (or whole disks) at the bottom of `r`, following the stack down.
    pub fn bottom(&self, r: &PartRef) -> Vec<PartRef> {
        let mut out = Vec::new();
        self.bottom_into(r, &mut out, 0);
        out
    }

    fn bottom_into(&self, r: &PartRef, out: &mut Vec<PartRef>, depth: u32) {
        // A record is input: a loop in it must not recurse forever.
        if depth > 16 {
            return;
        }
        let below: Vec<&PartRef> = match self.node(&r.name) {
            None => {
                out.push(r.clone());
                return;
            }
            Some(StackNode::Md(m)) => m.members.iter().map(|x| &x.device).collect(),
            Some(StackNode::Luks(l)) => vec![&l.device],
            Some(StackNode::Lv(vg, _)) => vg.pvs.iter().map(|p| &p.device).collect(),
        };
        for b in below {
            self.bottom_into(b, out, depth + 1);
        }
    }
}

/// One entry of the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackNode<'a> {
    Md(&'a MdArray),
    Luks(&'a LuksVolume),
    Lv(&'a VolumeGroup, &'a LogicalVolume),
}

impl StackNode<'_> {
    /// The path the system names it by (`/dev/md0`, `/dev/mapper/vg-root`).
    pub fn path(&self) -> String {
        match self {
            StackNode::Md(m) => m.path.clone(),
            StackNode::Luks(l) => format!("/dev/mapper/{}", l.mapping),
            StackNode::Lv(vg, lv) => format!("/dev/mapper/{}", dm_name(&vg.name, &lv.name)),
        }
    }
}

/// The device-mapper name LVM gives an LV: VG and LV names with each `-` doubled, joined by
/// `-` (`vg-0`/`root` → `vg--0-root`).
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// The subvolumes of one btrfs filesystem, as `btrfs subvolume list` saw them at capture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BtrfsVolume {
    /// The filesystem's UUID (as in `FsRecord::uuid`).
    pub uuid: String,
    /// Every subvolume but the top level (id 5), parents before children.
    pub subvolumes: Vec<BtrfsSubvolume>,
    /// Path of the default subvolume (`btrfs subvolume get-default`); empty: the top level.
    pub default_path: String,
}

/// One btrfs subvolume (or snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BtrfsSubvolume {
    /// Subvolume id on the source (display only: a restore gets new ids).
    pub id: u64,
    /// Path from the top level, `/`-separated, no leading `/` (`@`, `@/home`).
    pub path: String,
    pub readonly: bool,
}

impl BtrfsSubvolume {
    /// Its path as `info` and the restore plan show it: `@snap (read-only)`.
    pub fn shown(&self) -> String {
        if self.readonly {
            format!("{} (read-only)", self.path)
        } else {
            self.path.clone()
        }
    }
}

/// A whole disk (loop devices count as disks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name, e.g. `vda`, `nvme0n1`, `loop3`.
    pub name: String,
    pub size_bytes: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub model: String,
    pub serial: String,
    pub wwid: String,
    pub table: Option<PartitionTable>,
    /// MBR bytes 0–439 (boot code), restored verbatim when the geometry allows.
    pub mbr_boot_code: Vec<u8>,
    /// On an MBR disk, the bytes from LBA 1 up to the first partition (at most 4 MiB): where
    /// GRUB i386-pc embeds its core image. Empty on GPT disks.
    pub mbr_gap: Vec<u8>,
}

/// A partition table as read from LBA 0/1 of a disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionTable {
    Gpt(GptTable),
    Mbr(MbrTable),
}

/// A GUID partition table (UEFI 2.10 §5.3). GUIDs are in their canonical text form
/// (upper-case `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, mixed-endian decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GptTable {
    pub disk_guid: String,
    pub first_usable: u64,
    pub last_usable: u64,
    /// Entries in the partition entry array (usually 128).
    pub entries: u32,
    pub partitions: Vec<GptPartition>,
}

/// One used GPT entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GptPartition {
    /// 1-based index in the entry array (the `N` of `vdaN`).
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    pub type_guid: String,
    pub part_guid: String,
    pub name: String,
    pub attributes: u64,
}

/// A DOS partition table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MbrTable {
    /// Disk signature (bytes 440–443, little-endian).
    pub signature: u32,
    pub partitions: Vec<MbrPartition>,
}

/// One used MBR entry: primary (1–4) or logical (5…).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MbrPartition {
    pub number: u32,
    pub bootable: bool,
    /// System id (0x83 Linux, 0x82 swap, 0xEF ESP, 0x05/0x0F/0x85 extended...).
    pub type_byte: u8,
    /// Absolute start, in logical sectors.
    pub start_lba: u32,
    pub sectors: u32,
    /// This entry is the extended partition holding the logical ones.
    pub extended: bool,
    /// A logical partition inside the extended one (number ≥ 5).
    pub logical: bool,
}

/// Where a filesystem or container lives: a disk (index into `DiskLayout::disks`) and a
/// partition number, or the whole disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    pub disk: u32,
    /// `None`: the filesystem is on the whole disk (no partition table).
    pub partition: Option<u32>,
    /// Kernel name of the block device on the source, e.g. `vda2` (display only).
    pub name: String,
    /// `makedev(major, minor)` of that block device on the source: `st_dev` of its files.
    pub dev: u64,
}

/// One filesystem the captured system mounts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRecord {
    pub device: PartRef,
    /// `ext2`, `ext3`, `ext4`, `xfs`, `btrfs`, `vfat`.
    pub fstype: String,
    pub uuid: String,
    pub label: String,
    /// Absolute mount point inside the captured system (`/`, `/boot/efi`...).
    pub mount_point: String,
    pub mount_options: String,
    /// fstab's sixth field (fsck order).
    pub pass: u32,
    /// Where the capture host has it mounted, relative to the capture root (`""` for the root
    /// itself); `None` when it is not mounted under the root.
    pub mounted_at: Option<Vec<u8>>,
    /// Came from fstab (true) or only from the mount table (false).
    pub in_fstab: bool,
    pub features: FsFeatures,
    pub size_bytes: u64,
    /// Bytes in use where the superblock says (needed to decide if a smaller disk fits).
    pub used_bytes: Option<u64>,
}

/// What mkfs needs, beyond type, UUID and label, to recreate a filesystem faithfully.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsFeatures {
    #[default]
    None,
    Ext(ExtFeatures),
    Xfs(XfsFeatures),
    Btrfs(BtrfsFeatures),
    Vfat(VfatFeatures),
}

/// ext2/3/4 superblock facts (`mkfs.ext4 -b -I -N -O -E hash_seed=`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtFeatures {
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    /// Feature names as `mkfs.ext4 -O` spells them, in bit order compat, incompat, ro_compat.
    pub names: Vec<String>,
    pub block_size: u32,
    pub inode_size: u16,
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub reserved_blocks: u64,
    pub blocks_per_group: u32,
    pub rev_level: u32,
    pub hash_seed: String,
    pub default_hash: u8,
    pub default_mount_opts: u32,
    /// `s_encoding` (1 = utf8) for casefold filesystems, else 0.
    pub encoding: u16,
}

/// XFS superblock facts (`mkfs.xfs -b size= -i size= -d agcount= -m crc=,finobt=...`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XfsFeatures {
    pub block_size: u32,
    pub sector_size: u16,
    pub inode_size: u16,
    pub ag_count: u32,
    pub ag_blocks: u32,
    pub log_blocks: u32,
    /// `sb_versionnum & 0xF`: 5 = v5 (CRC) superblock.
    pub version: u16,
    pub versionnum: u16,
    pub features2: u32,
    pub features_compat: u32,
    pub features_ro_compat: u32,
    pub features_incompat: u32,
    pub data_blocks: u64,
    pub free_blocks: u64,
}

/// btrfs superblock facts (`mkfs.btrfs -s -n -O`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BtrfsFeatures {
    pub sector_size: u32,
    pub node_size: u32,
    pub compat_flags: u64,
    pub compat_ro_flags: u64,
    pub incompat_flags: u64,
    pub num_devices: u64,
    pub total_bytes: u64,
    pub bytes_used: u64,
    /// `csum_type`: 0 crc32c, 1 xxhash, 2 sha256, 3 blake2.
    pub csum_type: u16,
    /// Subvolume paths known from fstab `subvol=` options (the restore recreates them).
    pub subvolumes: Vec<String>,
}

/// FAT boot-sector facts (`mkfs.vfat -F -S -s -R -f -r -i -n`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfatFeatures {
    /// 12, 16 or 32.
    pub fat_bits: u8,
    pub bytes_per_sector: u16,
    pub sectors_per_cluster: u8,
    pub reserved_sectors: u16,
    pub num_fats: u8,
    pub root_entries: u16,
    pub total_sectors: u32,
    pub sectors_per_fat: u32,
    pub media: u8,
    pub hidden_sectors: u32,
    pub volume_id: u32,
    pub oem_name: String,
}

/// A swap area.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRecord {
    pub device: PartRef,
    pub uuid: String,
    pub label: String,
    pub size_bytes: u64,
    /// Page size the area was made with (where SWAPSPACE2 was found + 10).
    pub page_size: u32,
    pub in_fstab: bool,
    pub options: String,
}

/// Storage stacks osimage records but cannot recreate yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerKind {
    LvmPv,
    Luks { version: u16 },
    MdRaid { version: String },
}

/// An LVM PV, LUKS container or MD member found on a recorded device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub device: PartRef,
    pub kind: ContainerKind,
    pub uuid: String,
    pub label: String,
}

/// One fstab line, fields unescaped (`\040` → space).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FstabEntry {
    /// 1-based line number in the file.
    pub line: u32,
    /// First field: `UUID=…`, `LABEL=…`, `PARTUUID=…`, `PARTLABEL=…`, `/dev/…`, a path...
    pub spec: String,
    pub mount_point: String,
    pub fstype: String,
    pub options: String,
    pub freq: u32,
    pub pass: u32,
}

/// How the running system booted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Firmware {
    /// An offline root was captured: see `BootInfo::{uefi,bios}_capable`.
    #[default]
    Unknown,
    Bios,
    Uefi,
}

/// Boot mode and boot areas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootInfo {
    pub firmware: Firmware,
    /// An ESP exists (or the system booted by UEFI).
    pub uefi_capable: bool,
    /// A BIOS boot partition, GRUB i386-pc files or MBR boot code exist (or it booted by BIOS).
    pub bios_capable: bool,
    pub esp: Option<PartRef>,
    pub bios_boot: Option<PartRef>,
    /// The BIOS boot partition's raw bytes (at most 16 MiB), restored verbatim.
    pub bios_boot_bytes: Vec<u8>,
    /// `ROOT/boot/grub/i386-pc` exists.
    pub grub_i386_pc: bool,
    /// UEFI `Boot####` variables of the running system, best-effort.
    pub efi_entries: Vec<EfiBootEntry>,
    pub boot_order: Vec<u16>,
    pub boot_current: Option<u16>,
}

/// One `Boot####` EFI load option (UEFI 2.10 §3.1.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EfiBootEntry {
    pub number: u16,
    /// `LOAD_OPTION_*` attributes (bit 0: active).
    pub attributes: u32,
    pub description: String,
    /// The raw `FilePathList`.
    pub device_path: Vec<u8>,
    pub optional_data: Vec<u8>,
}

impl PartitionTable {
    /// `"gpt"` or `"dos"` (sfdisk's names).
    pub fn label(&self) -> &'static str {
        match self {
            PartitionTable::Gpt(_) => "gpt",
            PartitionTable::Mbr(_) => "dos",
        }
    }
}

impl DiskLayout {
    /// True when a restore can recreate this layout.
    pub fn restorable(&self) -> bool {
        self.none.is_none() && self.unsupported.is_empty()
    }
}
