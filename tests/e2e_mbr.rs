//! Issue #24 item 22's proof for DOS partition tables (`restore::disk::write_mbr`): the plain
//! source's Debian on a DOS disk (`tests/e2e/build-source-mbr.sh`: root on bootable primary
//! p1, an extended p2 holding /home on logical p5 and swap on logical p6, GRUB's core.img in
//! the gap after the MBR, BIOS only) is captured from the host into ONE ISO; `osimage verify
//! --boot` restores the ISO onto a blank, larger disk with SeaBIOS, boots the restored disk to
//! the marker with / and /home mounted from p1 and p5, and compares its files with the
//! manifest; the host then reads the kept disk: the same DOS signature, partition types, boot
//! flag and EBR chain (sfdisk reads the logical partitions through it), the boot code and the
//! post-MBR gap byte for byte, and each filesystem's UUID and label.
//! Phase times are printed (and kept in tests/cache/e2e/logs/times.txt), never asserted.
//!
//! Needs what tests/e2e_restore.rs needs; the source is made from the plain source's disk in
//! seconds and cached in tests/cache/e2e/source-mbr-<hash>.

use crate::common;
use crate::common::e2e;

use std::path::{Path, PathBuf};
use std::time::Instant;

use e2e::disk::{self, Attached, Mount};
use e2e::phase_time;
use e2e::source::{self, Source};
use e2e::verify::VerifyBoot;
use e2e::vm::Firmware;

/// The restored disk: larger than the 2 GiB source.
const TARGET_BYTES: u64 = 3 << 30;

/// `osimage capture ROOT -o system.iso` with the source's root at ROOT and its /home at
/// ROOT/home, both read-only from the source disk; the swap partition is on no mount and is
/// recorded from the disk.
fn capture(s: &Source, work: &Path) -> PathBuf {
    let iso = work.join("system.iso");
    let root = work.join("root");
    let started = Instant::now();
    let out = {
        let attached = Attached::new(&s.disk, true);
        let _root = Mount::ext4_ro(&attached.part(1), &root);
        let _home = Mount::ext4_ro(&attached.part(5), &root.join("home"));
        e2e::captured::capture_cli(&root, &iso).expect("running osimage capture")
    };
    assert!(
        out.status.success(),
        "capture of the MBR source failed ({}):\n{}",
        out.status,
        e2e::tail(&String::from_utf8_lossy(&out.stderr), 60)
    );
    phase_time("capture ROOT -o system.iso (MBR source)", started.elapsed());
    iso
}

/// sfdisk's entry for partition `n` of a table read from an image file (`<image>N`).
fn entry(table: &serde_json::Value, n: u32) -> serde_json::Value {
    let suffix = format!(".img{n}");
    table["partitions"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["node"].as_str().is_some_and(|s| s.ends_with(&suffix)))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no partition {n} in {table:#}"))
}

#[test]
fn dos_disk_with_logical_partitions_restores_and_boots_with_seabios() {
    let _disks = common::loop_devices(module_path!());
    let s = source::mbr_source();
    let work = common::scratch();
    let iso = capture(s, work.path());
    let target_mib = (TARGET_BYTES >> 20).to_string();
    let v = VerifyBoot::run(
        &iso,
        Firmware::Bios,
        work.path(),
        &["--disk-size", &target_mib],
    );
    v.assert_passed(s, Firmware::Bios);
    let line = v.first_boot(Firmware::Bios, &s.boot_mounts());
    eprintln!("e2e: restored MBR disk: {line}");
    v.assert_files_equal(5000);

    // The host's reading of the kept disk against the source disk.
    let restored = v.disk();
    let (src, out) = (disk::table(&s.disk), disk::table(&restored));
    assert_eq!(out["label"], "dos", "{out:#}");
    assert_eq!(
        out["id"],
        s.get("DISK_SIGNATURE"),
        "the DOS disk signature: {out:#}"
    );
    for n in [1, 2, 5, 6] {
        let (a, b) = (entry(&src, n), entry(&out, n));
        assert_eq!(a["type"], b["type"], "partition {n}'s type: {out:#}");
        assert_eq!(
            a["bootable"], b["bootable"],
            "partition {n}'s boot flag: {out:#}"
        );
        assert_eq!(a["start"], b["start"], "partition {n}'s start: {out:#}");
        if n == 1 || n == 5 {
            assert_eq!(a["size"], b["size"], "partition {n}'s size: {out:#}");
        }
    }
    assert_eq!(entry(&out, 1)["bootable"], true, "{out:#}");
    // DESIGN.md: the last partition takes the larger disk (logical p6, and the extended p2
    // that holds it), so no other partition moves
    let end = |t: &serde_json::Value, n| {
        let e = entry(t, n);
        e["start"].as_u64().unwrap_or(0) + e["size"].as_u64().unwrap_or(0)
    };
    assert_eq!(
        end(&out, 6),
        end(&out, 2),
        "p6 ends with the extended p2: {out:#}"
    );
    assert_eq!(
        end(&out, 6),
        TARGET_BYTES / 512,
        "p6 ends at the disk's end: {out:#}"
    );
    assert!(end(&src, 6) < end(&out, 6), "p6 did not grow: {out:#}");
    // GRUB's boot.img in the MBR and its core.img in the gap, as the source has them
    assert_eq!(
        disk::bytes(&restored, 0, 440),
        disk::bytes(&s.disk, 0, 440),
        "MBR boot code"
    );
    assert_eq!(
        disk::bytes(&restored, 512, 2047 * 512),
        disk::bytes(&s.disk, 512, 2047 * 512),
        "the post-MBR gap (GRUB's core.img)"
    );
    let attached = Attached::new(&restored, true);
    for (n, uuid, label, fs) in [
        (1, "ROOT_UUID", "ROOT_LABEL", "ext4"),
        (5, "HOME_UUID", "HOME_LABEL", "ext4"),
        (6, "SWAP_UUID", "SWAP_LABEL", "swap"),
    ] {
        let probe = disk::blkid(&attached.part(n));
        assert_eq!(
            probe.get("TYPE").map(String::as_str),
            Some(fs),
            "p{n}: {probe:?}"
        );
        assert_eq!(
            probe.get("UUID").map(String::as_str),
            Some(s.get(uuid)),
            "p{n}: {probe:?}"
        );
        assert_eq!(
            probe.get("LABEL").map(String::as_str),
            Some(s.get(label)),
            "p{n}: {probe:?}"
        );
    }
}
