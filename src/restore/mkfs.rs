//! mkfs command lines that recreate a recorded filesystem with its original UUID, label and
//! features (docs/DESIGN.md: filesystems are made with the captured system's own `mkfs.*`).
//!
//! Each builder returns the argument vector without the device, which `apply` appends. Size
//! dependent parameters (inode count, allocation groups, FAT cluster size) are kept only when
//! the filesystem keeps its size; a grown or shrunk one keeps densities instead.

use crate::layout::{ExtFeatures, FsFeatures, FsRecord, VfatFeatures, XfsFeatures};

/// ext feature names that describe a state, not a choice made at mkfs time.
const EXT_STATE: &[&str] = &[
    "needs_recovery",
    "orphan_present",
    "journal_dev",
    "snapshot_bitmap",
];

fn s(v: &str) -> String {
    v.to_string()
}

/// The mkfs command for `f`; `resized`: it gets a different size than on the source.
pub fn command(f: &FsRecord, resized: bool) -> Result<Vec<String>, String> {
    let mut a = match f.fstype.as_str() {
        "ext2" | "ext3" | "ext4" => ext(f, resized),
        "vfat" => vfat(f, resized)?,
        "xfs" => xfs(f, resized),
        "btrfs" => btrfs(f),
        other => {
            return Err(format!(
                "{} is {other:?}, which osimage cannot make (supported: ext2/3/4, xfs, btrfs, vfat)",
                f.mount_point
            ));
        }
    };
    a.shrink_to_fit();
    Ok(a)
}

fn ext(f: &FsRecord, resized: bool) -> Vec<String> {
    let mut a = vec![s("mke2fs"), s("-t"), f.fstype.clone(), s("-F"), s("-q")];
    if !f.uuid.is_empty() {
        a.extend([s("-U"), f.uuid.clone()]);
    }
    if !f.label.is_empty() {
        a.extend([s("-L"), f.label.clone()]);
    }
    if let FsFeatures::Ext(x) = &f.features {
        ext_features(&mut a, x, resized);
    }
    a
}

fn ext_features(a: &mut Vec<String>, x: &ExtFeatures, resized: bool) {
    let feats: Vec<&str> = x
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| !EXT_STATE.contains(n) && !n.starts_with("FEATURE_"))
        .collect();
    // `none` first: exactly the recorded set, whatever mke2fs.conf would add.
    a.extend([s("-O"), format!("none,{}", feats.join(","))]);
    a.extend([s("-b"), x.block_size.to_string()]);
    if x.rev_level > 0 {
        a.extend([s("-I"), x.inode_size.to_string()]);
    }
    if x.blocks_count > 0 && x.inodes_count > 0 {
        if resized {
            let ratio = x.blocks_count * u64::from(x.block_size) / u64::from(x.inodes_count);
            a.extend([s("-i"), ratio.max(1024).to_string()]);
        } else {
            a.extend([s("-N"), x.inodes_count.to_string()]);
        }
        let pct = x.reserved_blocks as f64 * 100.0 / x.blocks_count as f64;
        a.extend([s("-m"), format!("{pct:.2}")]);
    }
    let mut ext_opts = Vec::new();
    if !x.hash_seed.is_empty() && x.hash_seed != "00000000-0000-0000-0000-000000000000" {
        ext_opts.push(format!("hash_seed={}", x.hash_seed));
    }
    if x.encoding == 1 {
        ext_opts.push(s("encoding=utf8"));
    }
    if !ext_opts.is_empty() {
        a.extend([s("-E"), ext_opts.join(",")]);
    }
}

/// The FAT volume id: recorded, else from the `XXXX-XXXX` UUID.
fn volume_id(f: &FsRecord) -> Option<u32> {
    if let FsFeatures::Vfat(v) = &f.features
        && v.volume_id != 0
    {
        return Some(v.volume_id);
    }
    u32::from_str_radix(&f.uuid.replace('-', ""), 16).ok()
}

fn vfat(f: &FsRecord, resized: bool) -> Result<Vec<String>, String> {
    let mut a = vec![s("mkfs.vfat")];
    if let Some(id) = volume_id(f) {
        a.extend([s("-i"), format!("{id:08X}")]);
    }
    if !f.label.is_empty() {
        a.extend([s("-n"), f.label.clone()]);
    }
    if let FsFeatures::Vfat(v) = &f.features {
        vfat_features(&mut a, v, resized);
    }
    Ok(a)
}

fn vfat_features(a: &mut Vec<String>, v: &VfatFeatures, resized: bool) {
    a.extend([s("-F"), v.fat_bits.to_string()]);
    a.extend([s("-S"), v.bytes_per_sector.to_string()]);
    a.extend([s("-f"), v.num_fats.to_string()]);
    if !resized {
        a.extend([s("-s"), v.sectors_per_cluster.to_string()]);
        a.extend([s("-R"), v.reserved_sectors.to_string()]);
        if v.fat_bits != 32 && v.root_entries > 0 {
            a.extend([s("-r"), v.root_entries.to_string()]);
        }
    }
    if v.media != 0xF8 && v.media != 0 {
        a.extend([s("-M"), format!("0x{:02X}", v.media)]);
    }
}

fn xfs(f: &FsRecord, resized: bool) -> Vec<String> {
    let mut a = vec![s("mkfs.xfs"), s("-f"), s("-q")];
    if !f.label.is_empty() {
        a.extend([s("-L"), f.label.clone()]);
    }
    let mut m = Vec::new();
    if !f.uuid.is_empty() {
        m.push(format!("uuid={}", f.uuid));
    }
    if let FsFeatures::Xfs(x) = &f.features {
        xfs_features(&mut a, &mut m, x, resized);
    }
    if !m.is_empty() {
        a.extend([s("-m"), m.join(",")]);
    }
    a
}

fn xfs_features(a: &mut Vec<String>, m: &mut Vec<String>, x: &XfsFeatures, resized: bool) {
    let on = |b: bool| u8::from(b);
    let v5 = x.version == 5;
    m.push(format!("crc={}", on(v5)));
    if v5 {
        let ro = x.features_ro_compat;
        let inc = x.features_incompat;
        m.push(format!("finobt={}", on(ro & 1 != 0)));
        m.push(format!("rmapbt={}", on(ro & 2 != 0)));
        m.push(format!("reflink={}", on(ro & 4 != 0)));
        if ro & 8 != 0 {
            m.push(s("inobtcount=1"));
        }
        if inc & 8 != 0 {
            m.push(s("bigtime=1"));
        }
    } else if x.features2 & 0x200 != 0 {
        a.extend([s("-n"), s("ftype=1")]);
    }
    a.extend([s("-b"), format!("size={}", x.block_size)]);
    a.extend([s("-s"), format!("size={}", x.sector_size)]);
    a.extend([s("-i"), format!("size={}", x.inode_size)]);
    if !resized && x.ag_count > 0 {
        a.extend([s("-d"), format!("agcount={}", x.ag_count)]);
    }
}

fn btrfs(f: &FsRecord) -> Vec<String> {
    let mut a = vec![s("mkfs.btrfs"), s("-f"), s("-q")];
    if !f.uuid.is_empty() {
        a.extend([s("-U"), f.uuid.clone()]);
    }
    if !f.label.is_empty() {
        a.extend([s("-L"), f.label.clone()]);
    }
    if let FsFeatures::Btrfs(b) = &f.features {
        a.extend([s("-s"), b.sector_size.to_string()]);
        a.extend([s("-n"), b.node_size.to_string()]);
        let csum = match b.csum_type {
            1 => "xxhash",
            2 => "sha256",
            3 => "blake2",
            _ => "crc32c",
        };
        a.extend([s("--csum"), s(csum)]);
    }
    a
}

/// `mkswap` with the original UUID and label.
pub fn mkswap(uuid: &str, label: &str) -> Vec<String> {
    let mut a = vec![s("mkswap"), s("-f")];
    if !uuid.is_empty() {
        a.extend([s("-U"), s(uuid)]);
    }
    if !label.is_empty() {
        a.extend([s("-L"), s(label)]);
    }
    a
}

/// The Debian package that provides `tool` (for "missing tool" messages).
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        "mke2fs" | "mkfs.ext4" | "tune2fs" => "e2fsprogs",
        "mkfs.xfs" => "xfsprogs",
        "mkfs.btrfs" | "btrfs" => "btrfs-progs",
        "mkfs.vfat" | "fatlabel" => "dosfstools",
        "mkswap" => "util-linux",
        "mcopy" | "mmd" => "mtools",
        "efibootmgr" => "efibootmgr",
        "grub-install" => "grub-pc or grub-efi-amd64",
        "lvm" => "lvm2",
        "mdadm" => "mdadm",
        "cryptsetup" => "cryptsetup",
        _ => "the package providing it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ExtFeatures;

    fn ext4() -> FsRecord {
        FsRecord {
            fstype: "ext4".into(),
            uuid: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".into(),
            label: "rootfs".into(),
            mount_point: "/".into(),
            features: FsFeatures::Ext(ExtFeatures {
                names: [
                    "has_journal",
                    "ext_attr",
                    "needs_recovery",
                    "extent",
                    "FEATURE_I31",
                ]
                .map(String::from)
                .to_vec(),
                block_size: 4096,
                inode_size: 256,
                inodes_count: 1000,
                blocks_count: 4000,
                reserved_blocks: 200,
                rev_level: 1,
                hash_seed: "11111111-2222-3333-4444-555555555555".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ext4_keeps_identity_and_features() {
        let a = command(&ext4(), false).unwrap();
        let text = a.join(" ");
        assert!(
            text.starts_with("mke2fs -t ext4 -F -q -U 0a1b2c3d"),
            "{text}"
        );
        assert!(text.contains("-L rootfs"));
        assert!(
            text.contains("-O none,has_journal,ext_attr,extent "),
            "{text}"
        );
        assert!(
            text.contains("-N 1000") && text.contains("-m 5.00"),
            "{text}"
        );
        assert!(text.contains("-E hash_seed=11111111-2222"));
        let grown = command(&ext4(), true).unwrap().join(" ");
        assert!(
            grown.contains("-i 16384") && !grown.contains("-N "),
            "{grown}"
        );
    }

    #[test]
    fn vfat_keeps_volume_id_and_label() {
        let f = FsRecord {
            fstype: "vfat".into(),
            uuid: "1234-ABCD".into(),
            label: "ESP".into(),
            features: FsFeatures::Vfat(VfatFeatures {
                fat_bits: 32,
                bytes_per_sector: 512,
                sectors_per_cluster: 1,
                reserved_sectors: 32,
                num_fats: 2,
                media: 0xF8,
                volume_id: 0x1234_ABCD,
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = command(&f, false).unwrap().join(" ");
        assert_eq!(
            a,
            "mkfs.vfat -i 1234ABCD -n ESP -F 32 -S 512 -f 2 -s 1 -R 32"
        );
        let bare = FsRecord {
            features: FsFeatures::None,
            ..f
        };
        assert_eq!(
            command(&bare, true).unwrap().join(" "),
            "mkfs.vfat -i 1234ABCD -n ESP"
        );
    }

    #[test]
    fn unknown_filesystems_are_refused_by_name() {
        let f = FsRecord {
            fstype: "zfs".into(),
            mount_point: "/tank".into(),
            ..Default::default()
        };
        assert!(command(&f, false).unwrap_err().contains("/tank"));
        assert_eq!(mkswap("u", "").join(" "), "mkswap -f -U u");
    }
}
