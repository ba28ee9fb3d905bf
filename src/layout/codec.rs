//! The layout record as a manifest extension (docs/FORMAT.md §9): name `layout`, version 3
//! (versions 1, without `btrfs` and `stack`, and 2, without `stack`, are still read), optional, bincode 2 standard configuration
//! through serde, decoded with a byte limit.

use super::LayoutError;
use super::record::DiskLayout;
use crate::format::manifest::{Extension, Manifest};

/// The extension's name in `Manifest::extensions`.
pub const NAME: &str = "layout";
/// The version of the record this build writes; it reads this one and `OLDEST`.
pub const VERSION: u16 = 3;
/// Version 2: `DiskLayout` without its last field, `stack`.
pub const V2: u16 = 2;
/// Version 1: `DiskLayout` without its last two fields, `btrfs` and `stack`.
pub const OLDEST: u16 = 1;
/// Largest encoded record accepted (the BIOS boot partition and MBR gap dominate it: at most
/// 16 MiB and 4 MiB per disk).
pub const MAX_LEN: usize = 64 << 20;

/// Encodes `layout` as the manifest extension. Optional: an image without a usable layout
/// still extracts.
pub fn to_extension(layout: &DiskLayout) -> Extension {
    let data = bincode::serde::encode_to_vec(layout, bincode::config::standard())
        // Plain structs, strings, vectors and enums always encode; a failure is a bug.
        .expect("the layout record encodes");
    Extension {
        name: NAME.into(),
        version: VERSION,
        required: false,
        data,
    }
}

/// The layout recorded in `m`, `None` when the image has none. The data is hostile input: the
/// version, length and every allocation are bounded, and trailing bytes are refused.
pub fn from_manifest(m: &Manifest) -> Result<Option<DiskLayout>, LayoutError> {
    let Some(ext) = m.extension(NAME) else {
        return Ok(None);
    };
    match ext.version {
        VERSION => decode(&ext.data).map(Some),
        V2 => decode_v2(&ext.data).map(Some),
        OLDEST => decode_v1(&ext.data).map(Some),
        v => Err(LayoutError::Version(v)),
    }
}

/// Decodes a version 1 record: version 2 without its last field, `btrfs` (so fstab's
/// `subvol=` are the only subvolumes), whose empty encoding is one byte, 0.
pub fn decode_v1(data: &[u8]) -> Result<DiskLayout, LayoutError> {
    decode_v2(&[data, &[0]].concat())
}

/// Decodes a version 2 record: version 3 without its last field, `stack` (its capture
/// refused LVM, LUKS and MD), whose empty encoding is three empty vectors, `00 00 00`.
pub fn decode_v2(data: &[u8]) -> Result<DiskLayout, LayoutError> {
    decode(&[data, &[0, 0, 0]].concat())
}

/// Decodes an encoded record (the extension's `data`, current version).
pub fn decode(data: &[u8]) -> Result<DiskLayout, LayoutError> {
    decode_bounded(data)
}

fn decode_bounded<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, LayoutError> {
    if data.len() > MAX_LEN {
        return Err(LayoutError::Decode(format!(
            "record of {} bytes exceeds the {} MiB limit",
            data.len(),
            MAX_LEN >> 20
        )));
    }
    let cfg = bincode::config::standard().with_limit::<MAX_LEN>();
    let (layout, used): (T, usize) = bincode::serde::decode_from_slice(data, cfg)
        .map_err(|e| LayoutError::Decode(e.to_string()))?;
    if used != data.len() {
        return Err(LayoutError::Decode(format!(
            "{} trailing bytes",
            data.len() - used
        )));
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::record::*;

    pub(crate) fn sample() -> DiskLayout {
        DiskLayout {
            disks: vec![Disk {
                name: "vda".into(),
                size_bytes: 1 << 30,
                logical_sector: 512,
                physical_sector: 4096,
                table: Some(PartitionTable::Mbr(MbrTable {
                    signature: 0xC0FFEE,
                    partitions: vec![MbrPartition {
                        number: 1,
                        bootable: true,
                        type_byte: 0x83,
                        start_lba: 2048,
                        sectors: 1000,
                        ..Default::default()
                    }],
                })),
                mbr_boot_code: vec![0xFA; 440],
                ..Default::default()
            }],
            filesystems: vec![FsRecord {
                fstype: "ext4".into(),
                mount_point: "/".into(),
                features: FsFeatures::Ext(ExtFeatures {
                    block_size: 4096,
                    names: vec!["has_journal".into()],
                    ..Default::default()
                }),
                used_bytes: Some(12345),
                ..Default::default()
            }],
            boot: BootInfo {
                firmware: Firmware::Bios,
                bios_capable: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_through_a_manifest() {
        let l = sample();
        let ext = to_extension(&l);
        assert_eq!(
            (ext.name.as_str(), ext.version, ext.required),
            ("layout", 3, false)
        );
        let mut m = Manifest::default();
        assert_eq!(from_manifest(&m).unwrap(), None);
        m.extensions.push(ext);
        assert_eq!(from_manifest(&m).unwrap(), Some(l));
    }

    #[test]
    fn hostile_records_are_refused() {
        let mut ext = to_extension(&sample());
        let good = ext.data.clone();
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "truncated at {n}");
        }
        // Trailing bytes.
        ext.data.push(0);
        assert!(decode(&ext.data).is_err());
        // A huge vector length (varint 253 + u64) must not allocate.
        assert!(decode(&[0, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        // A newer version.
        let mut m = Manifest::default();
        ext.data = good;
        ext.version = 4;
        m.extensions.push(ext);
        assert!(matches!(from_manifest(&m), Err(LayoutError::Version(4))));
    }

    /// `sample()` with a block stack: an LV on a PV on a partition.
    fn with_stack() -> DiskLayout {
        let mut l = sample();
        let part = |name: &str, partition| PartRef {
            disk: 0,
            partition,
            name: name.into(),
            dev: 0,
        };
        l.filesystems[0].device = part("dm-0", None);
        l.stack.vgs.push(VolumeGroup {
            name: "vg".into(),
            uuid: "u".into(),
            extent_bytes: 4 << 20,
            pvs: vec![PhysicalVolume {
                key: "pv0".into(),
                uuid: "p".into(),
                device: part("vda1", Some(1)),
                pe_start_bytes: 1 << 20,
                pe_count: 100,
                size_bytes: 401 << 20,
            }],
            lvs: vec![LogicalVolume {
                name: "root".into(),
                kernel_name: "dm-0".into(),
                extents: 100,
                kind: "linear".into(),
                recreatable: true,
                ..Default::default()
            }],
            metadata: "vg {\n}\n".into(),
            ..Default::default()
        });
        l
    }

    #[test]
    fn version_1_and_2_records_are_read_without_what_they_lack() {
        let mut l = sample();
        l.btrfs = vec![BtrfsVolume {
            uuid: "u".into(),
            subvolumes: vec![BtrfsSubvolume {
                id: 256,
                path: "@".into(),
                readonly: false,
            }],
            default_path: "@".into(),
        }];
        let v3 = to_extension(&l).data;
        // Version 2 is version 3 without its last field (an empty stack is three empty
        // vectors: 0, 0, 0); version 1 also lacks `btrfs` (empty: one byte, 0).
        let v2 = &v3[..v3.len() - 3];
        assert_eq!(&v3[v3.len() - 3..], [0, 0, 0]);
        let without = to_extension(&sample()).data;
        let v1 = &without[..without.len() - 4];
        assert_eq!(&without[without.len() - 4..], [0, 0, 0, 0]);
        let read = |version, data: &[u8]| {
            let mut m = Manifest::default();
            m.extensions.push(Extension {
                name: NAME.into(),
                version,
                required: false,
                data: data.to_vec(),
            });
            from_manifest(&m).unwrap()
        };
        assert_eq!(read(1, v1), Some(sample()));
        assert_eq!(read(2, v2), Some(l.clone()));
        // A newer record read as an older one has trailing bytes: refused, not misread.
        assert!(decode_v1(v2).is_err());
        assert!(decode_v2(&v3).is_err());
        assert_eq!(decode(&v3).unwrap(), l);
        let s = with_stack();
        assert_eq!(decode(&to_extension(&s).data).unwrap(), s);
    }

    #[test]
    fn a_stacked_filesystem_leads_down_to_its_partition() {
        let s = with_stack();
        let root = &s.filesystems[0].device;
        assert!(matches!(s.stack.node("dm-0"), Some(StackNode::Lv(_, lv)) if lv.name == "root"));
        assert_eq!(s.stack.node("dm-0").unwrap().path(), "/dev/mapper/vg-root");
        let bottom = s.stack.bottom(root);
        assert_eq!(bottom.len(), 1);
        assert_eq!(
            (bottom[0].name.as_str(), bottom[0].partition),
            ("vda1", Some(1))
        );
        assert_eq!(dm_name("vg-0", "my-root"), "vg--0-my--root");
    }
}
