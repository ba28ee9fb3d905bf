//! Superblocks built field by field from md_p.h's layout (this machine has no MD driver, so
//! `mdadm --create` cannot make real ones), written where each version keeps them.

use super::*;
use std::io::Write;
use std::os::unix::fs::FileExt;

/// The fields a test sets in a 1.x superblock.
struct Sb1 {
    level: i32,
    layout: u32,
    chunk: u32,
    raid_disks: u32,
    size: u64,
    data_offset: u64,
    data_size: u64,
    super_offset: u64,
    dev_number: u32,
    roles: Vec<u16>,
    features: u32,
    bitmap_offset: i32,
    ctime: u64,
    events: u64,
    name: &'static str,
    devflags: u8,
}

impl Default for Sb1 {
    fn default() -> Self {
        Sb1 {
            level: 1,
            layout: 0,
            chunk: 0,
            raid_disks: 2,
            size: 100_000,
            data_offset: 2048,
            data_size: 100_000,
            super_offset: 8,
            dev_number: 1,
            roles: vec![0, 1],
            features: 1,
            bitmap_offset: 8,
            ctime: 1_700_000_000 | (123_456 << 40),
            events: 42,
            name: "host:root",
            devflags: 0,
        }
    }
}

fn put(b: &mut [u8], o: usize, v: &[u8]) {
    b[o..o + v.len()].copy_from_slice(v);
}

/// `struct mdp_superblock_1` with a correct `sb_csum`.
fn sb1(s: &Sb1) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    put(&mut b, 0, &MD_SB_MAGIC.to_le_bytes());
    put(&mut b, 4, &1u32.to_le_bytes());
    put(&mut b, 8, &s.features.to_le_bytes());
    put(&mut b, 16, &(0u8..16).collect::<Vec<_>>());
    put(&mut b, 32, s.name.as_bytes());
    put(&mut b, 64, &s.ctime.to_le_bytes());
    put(&mut b, 72, &s.level.to_le_bytes());
    put(&mut b, 76, &s.layout.to_le_bytes());
    put(&mut b, 80, &s.size.to_le_bytes());
    put(&mut b, 88, &s.chunk.to_le_bytes());
    put(&mut b, 92, &s.raid_disks.to_le_bytes());
    put(&mut b, 96, &s.bitmap_offset.to_le_bytes());
    put(&mut b, 128, &s.data_offset.to_le_bytes());
    put(&mut b, 136, &s.data_size.to_le_bytes());
    put(&mut b, 144, &s.super_offset.to_le_bytes());
    put(&mut b, 160, &s.dev_number.to_le_bytes());
    put(&mut b, 168, &[0xa5; 16]);
    b[184] = s.devflags;
    put(&mut b, 200, &s.events.to_le_bytes());
    put(&mut b, 220, &(s.roles.len() as u32).to_le_bytes());
    // An absurd max_dev keeps only the roles that fit in the 4 KiB block.
    for (i, r) in s.roles.iter().enumerate().take((4096 - 256) / 2) {
        put(&mut b, 256 + 2 * i, &r.to_le_bytes());
    }
    let c = v1::checksum(&b);
    put(&mut b, 216, &c.to_le_bytes());
    b
}

/// A device of `size` bytes with `blocks` written at their byte offsets.
fn device(size: u64, blocks: &[(u64, &[u8])]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.set_len(size).unwrap();
    for (at, b) in blocks {
        f.write_all_at(b, *at).unwrap();
    }
    f.flush().unwrap();
    f
}

const MIB: u64 = 1 << 20;

#[test]
fn reads_a_raid1_member_with_metadata_1_2() {
    let d = device(64 * MIB, &[(4096, &sb1(&Sb1::default()))]);
    let m = read(&d, 64 * MIB).unwrap().unwrap();
    assert_eq!(m.metadata, "1.2");
    assert_eq!(m.uuid, "00010203:04050607:08090a0b:0c0d0e0f");
    assert_eq!(m.dev_uuid, "a5a5a5a5:a5a5a5a5:a5a5a5a5:a5a5a5a5");
    assert_eq!((m.name.as_str(), m.ctime), ("host:root", 1_700_000_000));
    assert_eq!(
        (m.level.as_str(), m.raid_disks, m.role),
        ("raid1", 2, Some(1))
    );
    assert_eq!(
        (m.data_offset_sectors, m.data_size_sectors),
        (2048, 100_000)
    );
    assert_eq!((m.array_size_sectors, m.events), (Some(100_000), 42));
    assert_eq!((m.bitmap, m.bitmap_offset_sectors), (true, Some(8)));
    assert!(!m.degraded() && m.features.is_empty() && !m.faulty && !m.write_mostly);
    assert_eq!(
        m.mdadm_create_args(),
        [
            "--metadata=1.2",
            "--level=raid1",
            "--raid-devices=2",
            "--uuid=00010203:04050607:08090a0b:0c0d0e0f",
            "--name=host:root",
            "--bitmap=internal",
            "--data-offset=1024K",
        ]
    );
}

#[test]
fn finds_1_0_at_the_end_rounded_down_to_4_kib() {
    // 20486 sectors: 20486 − 16 = 20470, rounded down to a multiple of 8 = 20464.
    let size = 20486 * 512;
    let s = Sb1 {
        super_offset: 20464,
        data_offset: 0,
        data_size: 20464,
        ..Default::default()
    };
    let d = device(size, &[(20464 * 512, &sb1(&s))]);
    let m = read(&d, size).unwrap().unwrap();
    assert_eq!((m.metadata, m.super_offset_sectors), ("1.0", 20464));
    assert!(
        !m.mdadm_create_args()
            .iter()
            .any(|a| a.starts_with("--data-offset"))
    );
}

#[test]
fn a_degraded_raid5_names_its_missing_roles() {
    let s = Sb1 {
        level: 5,
        layout: 2,
        chunk: 1024,
        raid_disks: 3,
        dev_number: 2,
        roles: vec![0, 0xffff, 2, 0xfffe],
        features: 2,
        ..Default::default()
    };
    let d = device(
        64 * MIB,
        &[(
            0,
            &sb1(&Sb1 {
                super_offset: 0,
                ..s
            }),
        )],
    );
    let m = read(&d, 64 * MIB).unwrap().unwrap();
    assert_eq!((m.metadata, m.role, m.chunk_kib), ("1.1", Some(2), 512));
    assert_eq!((m.missing_roles.clone(), m.faulty_devices), (vec![1], 1));
    assert!(m.degraded());
    assert_eq!(m.features, ["recovery"]);
    assert_eq!(m.array_size_sectors, Some(200_000));
    let args = m.mdadm_create_args();
    assert!(args.contains(&"--chunk=512K".to_string()), "{args:?}");
    assert!(
        args.contains(&"--layout=left-symmetric".to_string()),
        "{args:?}"
    );
    assert!(args.contains(&"--bitmap=none".to_string()), "{args:?}");
}

#[test]
fn raid10_layouts_and_size() {
    let s = Sb1 {
        level: 10,
        layout: 0x102,
        chunk: 128,
        raid_disks: 4,
        roles: vec![0, 1, 2, 3],
        size: 64_000,
        ..Default::default()
    };
    let d = device(64 * MIB, &[(4096, &sb1(&s))]);
    let m = read(&d, 64 * MIB).unwrap().unwrap();
    assert_eq!(m.array_size_sectors, Some(128_000));
    assert!(m.mdadm_create_args().contains(&"--layout=n2".to_string()));
    assert_eq!(layout_name("raid10", 0x201, &[]).as_deref(), Some("f2"));
    assert_eq!(layout_name("raid10", 0x10201, &[]).as_deref(), Some("o2"));
    assert_eq!(
        layout_name("raid6", 18, &[]).as_deref(),
        Some("left-symmetric-6")
    );
    assert_eq!(layout_name("raid5", 18, &[]), None);
    assert_eq!(layout_name("raid4", 5, &[]), None);
    assert_eq!(
        layout_name("raid0", 2, &["raid0-layout"]).as_deref(),
        Some("alternate")
    );
    assert_eq!(layout_name("raid0", 2, &[]), None);
}

#[test]
fn a_spare_and_a_faulty_member_have_no_role() {
    let spare = Sb1 {
        dev_number: 2,
        devflags: 1,
        roles: vec![0, 1, 0xffff],
        ..Default::default()
    };
    let d = device(64 * MIB, &[(4096, &sb1(&spare))]);
    let m = read(&d, 64 * MIB).unwrap().unwrap();
    assert_eq!((m.role, m.faulty, m.write_mostly), (None, false, true));
    let faulty = Sb1 {
        dev_number: 1,
        roles: vec![0, 0xfffe],
        ..Default::default()
    };
    let d = device(64 * MIB, &[(4096, &sb1(&faulty))]);
    let m = read(&d, 64 * MIB).unwrap().unwrap();
    assert_eq!(
        (m.role, m.faulty, m.missing_roles.clone()),
        (None, true, vec![1])
    );
}

#[test]
fn a_bad_checksum_is_an_error_naming_it() {
    let mut b = sb1(&Sb1::default());
    b[40] ^= 1;
    let d = device(64 * MIB, &[(4096, &b)]);
    let e = read(&d, 64 * MIB).unwrap_err().to_string();
    assert!(e.contains("MD 1.2 superblock at sector 8: checksum"), "{e}");
}

#[test]
fn the_newest_superblock_wins_and_a_stale_bad_one_is_ignored() {
    let size = 64 * MIB;
    let end = (size / 512 - 16) & !7;
    let old = sb1(&Sb1 {
        ctime: 100,
        ..Default::default()
    });
    let new = sb1(&Sb1 {
        ctime: 200,
        super_offset: end,
        data_offset: 0,
        ..Default::default()
    });
    let d = device(size, &[(4096, &old), (end * 512, &new)]);
    assert_eq!(read(&d, size).unwrap().unwrap().metadata, "1.0");
    let mut broken = old.clone();
    broken[100] ^= 0xff;
    let d = device(size, &[(4096, &broken), (end * 512, &new)]);
    assert_eq!(read(&d, size).unwrap().unwrap().ctime, 200);
}

#[test]
fn impossible_fields_are_errors() {
    let cases: [(Sb1, &str); 5] = [
        (
            Sb1 {
                roles: vec![0; 2000],
                ..Default::default()
            },
            "max_dev 2000",
        ),
        (
            Sb1 {
                dev_number: 7,
                ..Default::default()
            },
            "dev_number 7",
        ),
        (
            Sb1 {
                super_offset: 0,
                ..Default::default()
            },
            "sits at sector 0",
        ),
        (
            Sb1 {
                bitmap_offset: -100,
                ..Default::default()
            },
            "bitmap offset -100",
        ),
        (
            Sb1 {
                level: 3,
                ..Default::default()
            },
            "unknown RAID level 3",
        ),
    ];
    for (s, want) in cases {
        let d = device(64 * MIB, &[(4096, &sb1(&s))]);
        let e = read(&d, 64 * MIB).unwrap_err().to_string();
        assert!(e.contains(want), "{e} lacks {want}");
    }
}

#[test]
fn truncated_devices_are_errors_or_nothing_never_panics() {
    // The data area says 100 000 sectors; the device has 20 000.
    let d = device(20_000 * 512, &[(4096, &sb1(&Sb1::default()))]);
    let e = read(&d, 20_000 * 512).unwrap_err().to_string();
    assert!(e.contains("ends past the device's 20000 sectors"), "{e}");
    // The caller's size is larger than the file: the read fails, naming what it read.
    let d = device(6000, &[(4096, &sb1(&Sb1::default())[..1904])]);
    assert!(read(&d, 64 * MIB).is_err());
    for size in [0, 511, 4096, 8191] {
        let d = device(size, &[]);
        assert_eq!(read(&d, size).unwrap(), None);
    }
}

/// `mdp_super_t` for a 2-disk raid1 member in role `role`, with a correct checksum.
fn sb090(role: u32, state_this: u32) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let mut set = |word: usize, v: u32| put(&mut b, 4 * word, &v.to_le_bytes());
    for (w, v) in [
        (0, MD_SB_MAGIC),
        (2, 90),
        (5, 0xdead_beef),
        (6, 1_600_000_000),
        (7, 1),
        (8, 4000),
    ] {
        set(w, v);
    }
    for (w, v) in [
        (10, 2),
        (13, 1),
        (14, 2),
        (15, 0x0a0b_0c0d),
        (33, 1 << 8),
        (39, 7),
        (40, 1),
    ] {
        set(w, v);
    }
    set(65, 65536);
    for d in 0..2u32 {
        let base = 128 + 32 * d as usize;
        set(base, d);
        set(base + 3, d);
        set(base + 4, 0b110);
    }
    set(992, role);
    set(992 + 3, role);
    set(992 + 4, state_this);
    let c = v090::checksum(&b);
    put(&mut b, 4 * 38, &c.to_le_bytes());
    b
}

#[test]
fn reads_a_0_90_member_at_the_end() {
    // 10 MiB + 100 KiB: the last 64 KiB-aligned 64 KiB starts at 10 MiB − 64 KiB + 64 KiB…
    let size = 10 * MIB + 100 * 1024;
    let at = ((size / 512) & !127) - 128;
    let d = device(size, &[(at * 512, &sb090(1, 0b110))]);
    let m = read(&d, size).unwrap().unwrap();
    assert_eq!((m.metadata, m.super_offset_sectors), ("0.90", 20480));
    assert_eq!(m.uuid, "deadbeef:00000001:00000002:0a0b0c0d");
    assert_eq!(
        (m.level.as_str(), m.raid_disks, m.role, m.chunk_kib),
        ("raid1", 2, Some(1), 64)
    );
    assert_eq!(
        (m.events, m.bitmap, m.component_size_sectors),
        ((1 << 32) | 7, true, 8000)
    );
    assert!(!m.degraded());
    let args = m.mdadm_create_args();
    assert_eq!(
        &args[..4],
        [
            "--metadata=0.90",
            "--level=raid1",
            "--raid-devices=2",
            "--uuid=deadbeef:00000001:00000002:0a0b0c0d"
        ]
    );
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--name") || a.starts_with("--data-offset"))
    );
    let mut bad = sb090(1, 0b110);
    bad[4 * 8] ^= 1;
    let d = device(size, &[(at * 512, &bad)]);
    assert!(
        read(&d, size)
            .unwrap_err()
            .to_string()
            .contains("MD 0.90 superblock at sector 20480: checksum")
    );
    let d = device(size, &[(at * 512, &sb090(1, 1))]);
    let m = read(&d, size).unwrap().unwrap();
    assert_eq!((m.role, m.faulty), (None, true));
}

/// A fake /sys/class/block/md0 as md.rst describes it.
#[test]
fn reads_a_running_array_from_sysfs() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("md0/md");
    let write = |p: &str, v: &str| {
        let p = md.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    };
    for (p, v) in [
        ("level", "raid1\n"),
        ("metadata_version", "1.2\n"),
        ("chunk_size", "0\n"),
        ("raid_disks", "2\n"),
        ("array_state", "clean\n"),
        ("degraded", "1\n"),
        ("sync_action", "recover\n"),
        ("uuid", "00010203-0405-0607-0809-0a0b0c0d0e0f\n"),
        ("component_size", "50000\n"),
        ("bitmap/location", "+8\n"),
        ("dev-vdb1/slot", "1\n"),
        ("dev-vdb1/state", "in_sync\n"),
        ("dev-vdb1/offset", "2048\n"),
        ("dev-vda1/slot", "none\n"),
        ("dev-vda1/state", "spare\n"),
        ("dev-vdc1/slot", "0\n"),
        ("dev-vdc1/state", "in_sync,write_mostly\n"),
    ] {
        write(p, v);
    }
    std::fs::create_dir_all(t.path().join("block/vdb/vdb1")).unwrap();
    std::os::unix::fs::symlink(t.path().join("block/vdb/vdb1"), md.join("dev-vdb1/block")).unwrap();
    let s = from_sysfs(&t.path().join("md0")).unwrap();
    assert_eq!(
        (s.level.as_str(), s.metadata_version.as_str(), s.raid_disks),
        ("raid1", "1.2", 2)
    );
    assert_eq!(
        (s.array_state.as_str(), s.degraded, s.sync_action.as_deref()),
        ("clean", 1, Some("recover"))
    );
    assert_eq!(
        s.uuid.as_deref(),
        Some("00010203-0405-0607-0809-0a0b0c0d0e0f")
    );
    assert_eq!(
        (s.component_size_kib, s.bitmap_location.as_deref()),
        (Some(50000), Some("+8"))
    );
    let names: Vec<_> = s
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.slot))
        .collect();
    assert_eq!(
        names,
        [("vdc1", Some(0)), ("vdb1", Some(1)), ("vda1", None)]
    );
    assert_eq!(s.members[0].state, ["in_sync", "write_mostly"]);
    assert_eq!(s.members[1].offset_sectors, Some(2048));
    std::fs::remove_file(md.join("level")).unwrap();
    let e = from_sysfs(&t.path().join("md0")).unwrap_err().to_string();
    assert!(e.contains("md/level"), "{e}");
}

/// `calc_sb_1_csum` by hand: with max_dev 3 the roles end on a half word (262 bytes), added
/// alone; the 64-bit sum 0xa92b4efc + 1 + 3 + 0x56781234 + 0x80000000 + 0x9abc = 0x1_7fa3_fbf0
/// folds to 0x7fa3_fbf0 + 1.
#[test]
fn the_v1_checksum_adds_a_trailing_half_word_and_folds_the_carry() {
    let mut b = vec![0u8; 4096];
    put(&mut b, 0, &MD_SB_MAGIC.to_le_bytes());
    put(&mut b, 4, &1u32.to_le_bytes());
    put(&mut b, 200, &0x8000_0000u64.to_le_bytes());
    put(&mut b, 216, &0xffff_ffffu32.to_le_bytes()); // sb_csum itself counts as 0
    put(&mut b, 220, &3u32.to_le_bytes());
    put(
        &mut b,
        256,
        &[0x34, 0x12, 0x78, 0x56, 0xbc, 0x9a, 0xff, 0xff],
    );
    assert_eq!(v1::checksum(&b), 0x7fa3_fbf1);
    // 0.90 folds the same way over all 1024 words.
    let mut b = vec![0u8; 4096];
    put(&mut b, 0, &0xffff_ffffu32.to_le_bytes());
    put(&mut b, 4092, &2u32.to_le_bytes());
    put(&mut b, 4 * 38, &7u32.to_le_bytes());
    assert_eq!(v090::checksum(&b), 0x0000_0002);
}
