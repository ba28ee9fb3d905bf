//! The restored disk against the source disk, from the host (issue #5's fidelity proof): the
//! GPT (disk GUID; per partition start, type, GUID, name; sizes but the grown root's), GRUB's
//! boot bytes, each partition's superblock ids, the ESP's files (mtools) and the root's files
//! with the independent comparator (tests/common/compare.rs).

use std::path::Path;

use super::disk::{self, Attached, Mount};
use super::source::Source;
use crate::common::compare::{self, Options, Snapshot};

/// Paths the fidelity contract lets differ, themselves and all below (DESIGN.md "Fidelity";
/// the restore writes its log into /var/log, so the directory's times change too).
pub const MAY_DIFFER: &[&[u8]] = &[b"var/log", b"boot/grub/grubenv"];
/// Directories whose contents a capture never records, the directories themselves compared
/// (docs/EXCLUDES.md §2, run-time directories).
pub const CONTENTS_NOT_CAPTURED: &[&[u8]] = &[b"proc", b"sys", b"dev", b"run", b"tmp", b"var/tmp"];

/// The restored disk against the source: partition table, boot loader bytes, superblock ids,
/// the ESP's files and the root filesystem's files.
pub fn same_disk(s: &Source, restored: &Path, work: &Path) {
    same_table(&s.disk, restored);
    same_boot_bytes(&s.disk, restored);
    let a = Attached::new(&s.disk, true);
    let b = Attached::new(restored, true);
    for n in 1..=3 {
        same_probe(n, &a.part(n), &b.part(n));
    }
    let esp_a = work.join("esp-source");
    let esp_b = work.join("esp-restored");
    disk::read_fat(&s.disk, disk::part_offset(&s.disk, 2), &esp_a);
    disk::read_fat(restored, disk::part_offset(restored, 2), &esp_b);
    // mcopy gives the directories it makes the time of the copy, not the FAT's
    let fat = |p: &Path| compare::snapshot(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let (fa, fb) = (fat(&esp_a), fat(&esp_b));
    let diffs: Vec<_> = compare::compare(&fa, &fb, Options { nlink: false })
        .into_iter()
        .filter(|d| !(d.what == "mtime" && fa.get(&d.path).is_some_and(|n| n.kind == 'd')))
        .collect();
    compare::assert_no_differences(&diffs, "the restored ESP's files against the source's");

    let ra = Mount::ext4_ro(&a.part(3), &work.join("root-source"));
    let rb = Mount::ext4_ro(&b.part(3), &work.join("root-restored"));
    let snap = |m: &Mount| -> Snapshot {
        let all = compare::snapshot(&m.dir)
            .unwrap_or_else(|e| panic!("walking {}: {e}", m.dir.display()));
        all.into_iter()
            .filter(|(p, _)| !MAY_DIFFER.iter().any(|x| compare::is_under(p, x)))
            .filter(|(p, _)| {
                !CONTENTS_NOT_CAPTURED
                    .iter()
                    .any(|x| p.as_slice() != *x && compare::is_under(p, x))
            })
            .collect()
    };
    // The root's own boot/efi, under the ESP's mount at capture, comes back as itself (the
    // mount-dirs record, FORMAT.md §13), not as the ESP's root.
    let (sa, sb) = (snap(&ra), snap(&rb));
    eprintln!("e2e: comparing {} paths of the root filesystem", sa.len());
    // not vacuous: the source's root is really there
    for p in [
        &b"etc/fstab"[..],
        b"boot/grub/grub.cfg",
        b"usr/lib/systemd/systemd",
    ] {
        assert!(
            sa.contains_key(p),
            "{} not in the source's root",
            String::from_utf8_lossy(p)
        );
    }
    let diffs = compare::compare(&sa, &sb, Options::default());
    compare::assert_no_differences(&diffs, "the restored root filesystem against the source's");
    for d in [&b"var/log"[..], b"var/tmp", b"tmp"] {
        let p = rb.dir.join(String::from_utf8_lossy(d).as_ref());
        assert!(p.is_dir(), "{} missing on the restored root", p.display());
    }
}

/// Same GPT: disk GUID, and per partition number, type, GUID, name and start; sizes equal
/// except the root's, which grows into the larger disk (DESIGN.md "Boot loader on restore").
fn same_table(src: &Path, dst: &Path) {
    let (a, b) = (disk::table(src), disk::table(dst));
    let ctx = || format!("source:\n{a:#}\nrestored:\n{b:#}");
    assert_eq!(
        a["label"],
        b["label"],
        "partition table type differs\n{}",
        ctx()
    );
    assert_eq!(a["id"], b["id"], "disk GUID differs\n{}", ctx());
    let (pa, pb) = (
        a["partitions"].as_array().cloned().unwrap_or_default(),
        b["partitions"].as_array().cloned().unwrap_or_default(),
    );
    assert_eq!(pa.len(), pb.len(), "partition count differs\n{}", ctx());
    for (i, (x, y)) in pa.iter().zip(&pb).enumerate() {
        for key in ["start", "type", "uuid", "name", "attrs"] {
            assert_eq!(
                x[key],
                y[key],
                "partition {}: {key} differs\n{}",
                i + 1,
                ctx()
            );
        }
        let (sx, sy) = (x["size"].as_u64(), y["size"].as_u64());
        if i + 1 == pa.len() {
            assert!(sy >= sx, "the root partition shrank\n{}", ctx());
        } else {
            assert_eq!(sx, sy, "partition {}: size differs\n{}", i + 1, ctx());
        }
    }
}

/// GRUB's boot.img (MBR bytes 0-439) and core.img (the BIOS boot partition) come back
/// verbatim: the geometry allows it.
fn same_boot_bytes(src: &Path, dst: &Path) {
    assert!(
        disk::bytes(src, 0, 440) == disk::bytes(dst, 0, 440),
        "MBR boot code (bytes 0-439) differs"
    );
    let t = disk::table(src);
    let p1 = &t["partitions"][0];
    let (start, size) = (
        p1["start"].as_u64().unwrap_or(0) * 512,
        p1["size"].as_u64().unwrap_or(0) as usize * 512,
    );
    assert!(size > 0, "no BIOS boot partition in the source: {t:#}");
    assert!(
        disk::bytes(src, start, size) == disk::bytes(dst, start, size),
        "the BIOS boot partition's bytes (GRUB core.img) differ"
    );
}

/// The same filesystem type, UUID and label, and the same partition entry, per `blkid -p`.
fn same_probe(n: u32, a: &str, b: &str) {
    let (pa, pb) = (disk::blkid(a), disk::blkid(b));
    for key in [
        "TYPE",
        "UUID",
        "LABEL",
        "VERSION",
        "PART_ENTRY_SCHEME",
        "PART_ENTRY_NAME",
        "PART_ENTRY_UUID",
        "PART_ENTRY_TYPE",
        "PART_ENTRY_NUMBER",
        "PART_ENTRY_OFFSET",
    ] {
        assert_eq!(
            pa.get(key),
            pb.get(key),
            "partition {n}: blkid -p {key} differs\nsource {a}: {pa:?}\nrestored {b}: {pb:?}"
        );
    }
}
