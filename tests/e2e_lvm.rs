//! Issue #19's proof for the Debian installer's "guided - use entire disk and set up LVM"
//! layout: the source system (`tests/e2e/build-source-stack.sh lvm`: BIOS boot partition, ESP,
//! /boot ext4, PV holding VG `e2evg` with LVs `root` (ext4) and `swap`; / mounted as
//! `/dev/mapper/e2evg-root`); `osimage capture / -o system.iso` run
//! INSIDE the booted system (tests/common/e2e/guest_capture.rs: this host's kernel has no
//! device-mapper) writes an ISO that `osimage info` reads with / on the LV; that ISO, booted
//! beside a blank disk (OVMF onto a larger one, SeaBIOS onto a smaller one and, through
//! `osimage verify --boot`, onto one of the same size), restores the stack, and the restored
//! disk boots with / on the LV and holds the source's files.
//! The source disk's own boot is not a test: a restored disk that fails to boot has the source
//! booted the same way, and the failure says whether the source boots (`or_blame_the_source`).
//! Phase times are printed (and kept in tests/cache/e2e/logs/times.txt), never asserted.
//!
//! Needs what tests/e2e_restore.rs needs; the source is built in a QEMU guest and cached in
//! tests/cache/e2e/source-lvm-<hash>.

use crate::common;
use crate::common::e2e;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use e2e::guest_capture::{CapturedIso, capture_in_guest, captured_once};
use e2e::phase_time;
use e2e::source::{self, BOOT_TIMEOUT, Source};
use e2e::verify::{RESTORE_TIMEOUT, VerifyBoot};
use e2e::vm::{self, Boot, Drive, Firmware};

/// The restore target: larger than the 3 GiB source, so the LV holding / takes up the rest.
const TARGET_BYTES: u64 = 4 << 30;
/// The smaller restore target: the VG's free extents go first, then the LV holding / shrinks.
const SMALLER_BYTES: u64 = 5 << 29;
/// The source disk (tests/e2e/build-source-stack.sh lvm).
const SOURCE_BYTES: u64 = 3 << 30;
const DONE: &str = "OSIMAGE-RESTORE-DONE";
const FAILED: &str = "OSIMAGE-RESTORE-FAILED";
const WAITING: &str = "OSIMAGE-RESTORE-WAITING";

static CAPTURED: OnceLock<Result<CapturedIso, String>> = OnceLock::new();

/// The ISO the LVM source wrote of itself, made once per test process.
fn captured() -> &'static CapturedIso {
    let s = source::lvm_source();
    captured_once(&CAPTURED, "lvm", &[&s.disk], &[])
}

/// What the source's marker line must say about its mounts: / on the LV, /boot and the ESP on
/// their partitions.
fn mounts(s: &Source) -> [String; 3] {
    [
        format!(" /={}", s.get("ROOT_DEV")),
        " /boot=/dev/vda3".to_string(),
        " /boot/efi=/dev/vda2".to_string(),
    ]
}

/// `disk` alone (`snapshot=on`: never changed) boots through its own GRUB with `fw`, its
/// initramfs activates the VG, and the marker shows / on the LV, /boot and the ESP on their
/// partitions. `what` names the boot in messages and phase times.
fn boots_to_marker(s: &Source, what: &str, fw: Firmware, disk: &std::path::Path) {
    let o = vm::boot(&Boot {
        name: format!("lvm-{what}-{}", fw.name()),
        firmware: fw,
        cdrom: None,
        disks: vec![Drive {
            file: disk,
            bus: vm::Bus::Virtio,
            snapshot: true,
        }],
        timeout: BOOT_TIMEOUT,
        stop_on: &[s.marker()],
        grace: Duration::from_secs(2),
    });
    let line = o
        .console
        .lines()
        .find(|l| l.contains(s.marker()))
        .unwrap_or_else(|| {
            panic!(
                "the LVM {what} disk did not boot with {}: {}",
                fw.name(),
                o.describe()
            )
        });
    let mut want = vec![vm::marker_word(fw).to_string()];
    want.extend(mounts(s));
    for w in &want {
        assert!(
            line.contains(w.as_str()),
            "{}: `{w}` not in the LVM {what} disk's marker `{}`\n{}",
            fw.name(),
            line.trim(),
            o.describe()
        );
    }
    eprintln!("e2e: lvm {what} ({}): {}", fw.name(), line.trim());
    phase_time(&format!("lvm: {what} disk boot ({})", fw.name()), o.elapsed);
}

/// A restored disk boots with `fw` to its marker with / on the LV; when it does not, the
/// source disk is booted the same way to say which one is to blame.
fn restored_boots(s: &Source, what: &str, fw: Firmware, disk: &std::path::Path) {
    source::or_blame_the_source(
        || boots_to_marker(s, what, fw, disk),
        || boots_to_marker(s, "source", fw, &s.disk),
    )
}

/// `capture /` inside the booted LVM system exits 0 and writes an ISO; `osimage info --json`
/// reads it back: / from the LV (ext4), /boot and /boot/efi from their partitions.
#[test]
fn capture_inside_the_lvm_system_writes_an_iso_with_root_on_the_lv() {
    let _disks = common::loop_devices(module_path!());
    let s = source::lvm_source();
    let c = captured();
    assert_eq!(c.rc, 0, "{}", c.describe());
    for w in mounts(s) {
        assert!(
            c.booted.contains(&w),
            "the capturing guest's marker lacks `{w}`: `{}`",
            c.booted
        );
    }
    assert!(c.iso.is_file(), "no system.iso: {}", c.describe());
    let out = Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args(["info", "--json"])
        .arg(&c.iso)
        .output()
        .expect("running osimage info");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "osimage info --json {} exited {}: {}",
        c.iso.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("osimage info --json printed no JSON ({e}): {stdout}"));
    assert_eq!(info["hostname"], "osimage-e2e", "{info:#}");
    assert_eq!(info["container"], "iso", "{info:#}");
    let fs = info["filesystems"].as_array().cloned().unwrap_or_default();
    let root_dev = s.get("ROOT_DEV");
    for (mp, fstype, dev) in [
        ("/", "ext4", root_dev),
        ("/boot", "ext4", "/dev/vda3"),
        ("/boot/efi", "vfat", "/dev/vda2"),
    ] {
        let f = fs
            .iter()
            .find(|f| f["mount_point"] == mp)
            .unwrap_or_else(|| panic!("no filesystem {mp} in info: {info:#}"));
        assert_eq!(f["fstype"], fstype, "{mp}: {f}");
        assert_eq!(f["source"], dev, "{mp}: {f}");
    }
    // Only the system's own filesystems are in the layout (the harness mounts no other disk
    // while capture runs); each with the device it was on.
    let recorded: Vec<String> = info["layout"]["filesystems"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            format!(
                "{}={}",
                f["mount_point"].as_str().unwrap_or("?"),
                f["device"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    eprintln!(
        "e2e: lvm layout: filesystems {recorded:?}, unsupported {}",
        info["layout"]["unsupported"]
    );
    let points: Vec<&str> = recorded
        .iter()
        .map(|r| r.split('=').next().unwrap_or(""))
        .collect();
    assert_eq!(
        points,
        ["/", "/boot", "/boot/efi"],
        "the layout records other filesystems than the system's: {recorded:?}"
    );
    // The block stack, read from the PV inside the guest: the VG with the UUIDs lvm gave it,
    // its LVs in order, the PV on partition 4; nothing stands in the way of a restore.
    let layout = &info["layout"];
    assert_eq!(layout["unsupported"], serde_json::json!([]), "{layout:#}");
    let vg = &layout["stack"]["vgs"][0];
    assert_eq!(vg["name"], "e2evg", "{layout:#}");
    assert_eq!(vg["uuid"], s.get("VG_UUID"), "{vg:#}");
    let lvs: Vec<(String, String)> = vg["lvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| (l["name"].to_string(), l["uuid"].to_string()))
        .collect();
    let want = |name: &str, key: &str| (format!("{name:?}"), format!("{:?}", s.get(key)));
    assert_eq!(
        lvs,
        [want("root", "ROOT_LV_UUID"), want("swap", "SWAP_LV_UUID")],
        "{vg:#}"
    );
    assert_eq!(vg["pvs"][0]["uuid"], s.get("PV_UUID"), "{vg:#}");
    assert_eq!(vg["pvs"][0]["device"]["partition"], 4, "{vg:#}");
    assert!(
        vg["metadata"].as_str().unwrap_or("").contains("e2evg {"),
        "the VG's metadata text is kept: {vg:#}"
    );
}

/// The whole cycle for one firmware: the ISO, booted beside a blank 4 GiB disk with no
/// keyboard, restores by itself and powers off; the restored disk alone boots through its own
/// GRUB, its initramfs activates the recreated VG and the marker shows / on the LV. Then, on
/// the host (which reads LVM labels without device-mapper): the PV, VG and LVs carry the
/// source's UUIDs, the root LV took up the larger disk (swap after it kept its size), and
/// /boot holds the source's files.
fn lvm_iso_restores_and_boots(fw: Firmware, target_bytes: u64) {
    let s = source::lvm_source();
    let c = captured();
    assert_eq!(c.rc, 0, "{}", c.describe());
    let work = common::scratch();
    let target = work.path().join("restored.img");
    e2e::disk::sparse(&target, target_bytes);
    let size = format!("{} MiB", target_bytes >> 20);
    let o = vm::boot(&Boot {
        name: format!("lvm-restore-{}-{}", fw.name(), target_bytes >> 20),
        firmware: fw,
        cdrom: Some(&c.iso),
        disks: vec![Drive {
            file: &target,
            bus: vm::Bus::Virtio,
            snapshot: false,
        }],
        timeout: RESTORE_TIMEOUT,
        stop_on: &[FAILED, WAITING],
        grace: Duration::from_secs(2),
    });
    assert!(
        o.console.contains(DONE) && !o.console.contains(FAILED) && !o.console.contains(WAITING),
        "{}: the LVM ISO did not restore a {size} disk by itself: {}",
        fw.name(),
        o.describe()
    );
    phase_time(
        &format!(
            "lvm: ISO boot -> restored {size} -> power-off ({})",
            fw.name()
        ),
        o.elapsed,
    );
    for l in o
        .console
        .lines()
        .filter(|l| l.contains("lvm ") || l.contains("LV "))
    {
        eprintln!("e2e: lvm restore ({}): {}", fw.name(), l.trim());
    }
    restored_boots(s, "restored", fw, &target);
    same_stack_and_boot(s, &target, target_bytes, work.path());
}

/// The restored disk's PV label and VG metadata (read with osimage's own LVM reader) carry the
/// source's UUIDs; the root LV grew by the disk's extra extents or, on a smaller disk, shrank
/// by what the VG's free extents could not give; swap kept its size; /boot's files equal the
/// source's.
fn same_stack_and_boot(
    s: &Source,
    restored: &std::path::Path,
    target_bytes: u64,
    work: &std::path::Path,
) {
    use osimage::layout::stack::lvm;
    let dst = e2e::disk::Attached::new(restored, true);
    let pv_dev = dst.part(4);
    let mut f = std::fs::File::open(&pv_dev).expect("the restored PV");
    let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).expect("its size");
    let pv = lvm::read_pv(&f, size)
        .expect("the restored PV's label reads")
        .expect("an LVM label on the restored partition 4");
    assert_eq!(pv.pv_uuid, s.get("PV_UUID"));
    let vg = lvm::parse_vg(pv.metadata.as_deref().expect("metadata on the PV")).unwrap();
    assert_eq!(
        (vg.name.as_str(), vg.id.as_str()),
        ("e2evg", s.get("VG_UUID"))
    );
    let lv = |name: &str| vg.lvs.iter().find(|l| l.name == name).expect(name);
    assert_eq!(lv("root").id, s.get("ROOT_LV_UUID"));
    assert_eq!(lv("swap").id, s.get("SWAP_LV_UUID"));
    let extent = s.get("EXTENT_BYTES").parse::<u64>().expect("EXTENT_BYTES");
    let before = s.get("ROOT_EXTENTS").parse::<u64>().expect("ROOT_EXTENTS");
    let free = s.get("FREE_EXTENTS").parse::<u64>().expect("FREE_EXTENTS");
    let want = if target_bytes >= SOURCE_BYTES {
        before + (target_bytes - SOURCE_BYTES) / extent
    } else {
        before - ((SOURCE_BYTES - target_bytes) / extent - free)
    };
    // partition alignment may cost the PV one extent
    assert!(
        lv("root").extents() + 1 >= want && lv("root").extents() <= want,
        "the root LV on a {} MiB disk: {} extents, recorded {before} with {free} free, \
         {want} expected",
        target_bytes >> 20,
        lv("root").extents()
    );
    assert_eq!(
        lv("swap").extents() * extent,
        128 << 20,
        "swap keeps its size"
    );
    let src = e2e::disk::Attached::new(&s.disk, true);
    let (a, b) = (work.join("src-boot"), work.join("dst-boot"));
    let _ma = e2e::disk::Mount::ext4_ro(&src.part(3), &a);
    let _mb = e2e::disk::Mount::ext4_ro(&dst.part(3), &b);
    // The ESP's mount point holds what the capture saw there, the mounted FAT's root (0700,
    // no mtime), not the directory the mount hides: left out here; the ESP's own files are
    // compared below.
    let snap = |p: &std::path::Path| {
        common::compare::snapshot(p).unwrap_or_else(|e| panic!("walking {}: {e}", p.display()))
    };
    let (mut sa, mut sb) = (snap(&a), snap(&b));
    sa.remove(&b"efi"[..]);
    sb.remove(&b"efi"[..]);
    assert!(
        sa.contains_key(&b"grub/grub.cfg"[..]),
        "the source's /boot is really there"
    );
    let diffs: Vec<_> = common::compare::compare(&sa, &sb, common::compare::Options::default())
        .into_iter()
        .filter(|d| !d.to_string().contains("grub/grubenv"))
        .collect();
    common::compare::assert_no_differences(&diffs, "/boot of the restored LVM disk");
    let (ea, eb) = (work.join("esp-source"), work.join("esp-restored"));
    e2e::disk::read_fat(&s.disk, e2e::disk::part_offset(&s.disk, 2), &ea);
    e2e::disk::read_fat(restored, e2e::disk::part_offset(restored, 2), &eb);
    let (fa, fb) = (snap(&ea), snap(&eb));
    assert!(
        fa.len() > 5,
        "the source's ESP is really there: {}",
        fa.len()
    );
    // mcopy gives the directories it makes the time of the copy, not the FAT's
    let diffs: Vec<_> =
        common::compare::compare(&fa, &fb, common::compare::Options { nlink: false })
            .into_iter()
            .filter(|d| !(d.what == "mtime" && fa.get(&d.path).is_some_and(|n| n.kind == 'd')))
            .collect();
    common::compare::assert_no_differences(&diffs, "the restored ESP's files");
}

/// Firmware × disk size, each value once (CI time, docs/PERFORMANCE.md): OVMF onto a larger
/// disk here, SeaBIOS onto a smaller one below; SeaBIOS onto a same-size disk is
/// `verify_boot_passes_the_lvm_iso_…`, and `new_uuids_…` restores with SeaBIOS too.
#[test]
fn lvm_iso_restores_a_larger_disk_growing_the_root_lv_and_it_boots_with_ovmf() {
    let _disks = common::loop_devices(module_path!());
    lvm_iso_restores_and_boots(Firmware::Uefi, TARGET_BYTES);
}

/// Onto a disk 512 MiB smaller than the source: the VG's 64 MiB of free extents go first,
/// the root LV gives up the rest, and the system still boots (SeaBIOS).
#[test]
fn lvm_iso_restores_a_smaller_disk_shrinking_the_root_lv_and_it_boots() {
    let _disks = common::loop_devices(module_path!());
    lvm_iso_restores_and_boots(Firmware::Bios, SMALLER_BYTES);
}

/// `capture / --snapshot` inside the booted LVM system reads / from a snapshot LV that fits
/// the VG's 64 MiB of free space (less than the 20% of the origin it would take if free), says
/// so, and the image's layout holds the VG as it was before the snapshot: root and swap only.
#[test]
fn capture_with_snapshot_inside_the_lvm_system_reads_a_snapshot_lv() {
    let _disks = common::loop_devices(module_path!());
    let s = source::lvm_source();
    let work = common::scratch();
    let c =
        capture_in_guest(&s.disk, &["--snapshot"], work.path()).unwrap_or_else(|e| panic!("{e}"));
    phase_time(
        "lvm: capture / --snapshot inside the source system",
        Duration::from_secs(c.capture_seconds),
    );
    assert_eq!(c.rc, 0, "{}", c.describe());
    let note = c
        .stderr
        .lines()
        .find(|l| l.contains("capturing from LVM snapshot e2evg/osimage-snap-"))
        .unwrap_or_else(|| panic!("no snapshot note: {}", c.describe()));
    assert!(
        note.contains("of e2evg/root; copy-on-write area 64 MiB"),
        "{note}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args(["info", "--json"])
        .arg(&c.iso)
        .output()
        .expect("running osimage info");
    assert!(out.status.success(), "osimage info: {out:?}");
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("osimage info --json prints JSON");
    let layout = &info["layout"];
    assert_eq!(layout["unsupported"], serde_json::json!([]), "{layout:#}");
    let lvs: Vec<&str> = layout["stack"]["vgs"][0]["lvs"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(lvs, ["root", "swap"], "{layout:#}");
    let root = info["filesystems"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["mount_point"] == "/"))
        .unwrap_or_else(|| panic!("no / in info: {info:#}"));
    assert_eq!(root["source"], s.get("ROOT_DEV"), "{root}");
    assert!(
        info["entries"].as_u64().unwrap_or(0) > 5000,
        "the snapshot's view held the system: {info:#}"
    );
}

/// `osimage verify --boot` proves the LVM ISO by itself: the restore in a VM, the restored
/// disk's first boot with / on the LV, then every file compared from this host, whose kernel
/// has no device-mapper (the LV is read through a loop device over its extents, located from
/// the restored PV's own metadata).
#[test]
fn verify_boot_passes_the_lvm_iso_reading_the_lv_without_device_mapper() {
    let _disks = common::loop_devices(module_path!());
    let c = captured();
    assert_eq!(c.rc, 0, "{}", c.describe());
    let work = common::scratch();
    let v = VerifyBoot::run(&c.iso, Firmware::Bios, work.path(), &[]);
    assert_eq!(
        v.code,
        Some(0),
        "verify --boot of the LVM ISO: {:#}\n{}",
        v.report,
        v.stderr
    );
    let files = v.phase("files");
    assert_eq!(files["status"], "passed", "{files:#}");
    let detail = files["detail"].as_str().unwrap_or("");
    let compared: u64 = detail
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        compared > 5000 && detail.contains(": 0 differences"),
        "the restored root LV's files were compared: {detail}"
    );
    eprintln!("e2e: lvm verify --boot: {detail}");
}

/// `osimage.new-uuids=1` on the ISO's command line (as an admin adds it at the GRUB menu to
/// make a second machine from one image): the restored PV, VG and LVs carry UUIDs other than
/// the source's, /boot's filesystem too, and the restored disk still boots with / on the LV
/// (fstab, GRUB's configuration and the initramfs follow the new values).
#[test]
fn new_uuids_renews_the_pv_vg_and_lv_uuids_and_the_disk_still_boots() {
    use osimage::layout::stack::lvm;
    let _disks = common::loop_devices(module_path!());
    let s = source::lvm_source();
    let c = captured();
    assert_eq!(c.rc, 0, "{}", c.describe());
    let work = common::scratch();
    let e = e2e::iso_entry::auto_entry(&c.iso, work.path());
    let target = work.path().join("renewed.img");
    e2e::disk::sparse(&target, TARGET_BYTES);
    let cmdline = format!("{} osimage.new-uuids=1", e.cmdline);
    let o = vm::boot_direct(
        &Boot {
            name: "lvm-restore-new-uuids".into(),
            firmware: Firmware::Bios,
            cdrom: Some(&c.iso),
            disks: vec![Drive {
                file: &target,
                bus: vm::Bus::Virtio,
                snapshot: false,
            }],
            timeout: RESTORE_TIMEOUT,
            stop_on: &[FAILED, WAITING],
            grace: Duration::from_secs(2),
        },
        vm::DirectKernel {
            kernel: &e.kernel,
            initrd: &e.initrd,
            cmdline: &cmdline,
        },
    );
    assert!(
        o.console.contains(DONE) && !o.console.contains(FAILED) && !o.console.contains(WAITING),
        "the LVM ISO did not restore with osimage.new-uuids=1: {}",
        o.describe()
    );
    phase_time(
        "lvm: ISO boot -> restored with new UUIDs -> power-off (bios)",
        o.elapsed,
    );
    restored_boots(s, "renewed", Firmware::Bios, &target);

    let dst = e2e::disk::Attached::new(&target, true);
    let pv_dev = dst.part(4);
    let mut f = std::fs::File::open(&pv_dev).expect("the restored PV");
    let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).expect("its size");
    let pv = lvm::read_pv(&f, size)
        .expect("the restored PV's label reads")
        .expect("an LVM label on the restored partition 4");
    let vg = lvm::parse_vg(pv.metadata.as_deref().expect("metadata on the PV")).unwrap();
    let lv = |name: &str| vg.lvs.iter().find(|l| l.name == name).expect(name);
    assert_eq!(vg.name, "e2evg", "the VG keeps its name");
    for (what, new, old) in [
        ("PV", pv.pv_uuid.as_str(), s.get("PV_UUID")),
        ("VG", vg.id.as_str(), s.get("VG_UUID")),
        ("root LV", lv("root").id.as_str(), s.get("ROOT_LV_UUID")),
        ("swap LV", lv("swap").id.as_str(), s.get("SWAP_LV_UUID")),
    ] {
        assert!(
            lvm::ids::is_id(new) && new != old,
            "the {what} UUID was not renewed: {new} (the source's {old})"
        );
    }
    assert_eq!(
        vg.pvs[0].id, pv.pv_uuid,
        "the metadata names the PV by its new UUID"
    );
    let out = Command::new("blkid")
        .args(["-o", "value", "-s", "UUID"])
        .arg(dst.part(3))
        .output()
        .expect("blkid");
    let boot_uuid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !boot_uuid.is_empty() && boot_uuid != s.get("BOOT_UUID"),
        "/boot's UUID was not renewed: {boot_uuid:?}"
    );
    eprintln!(
        "e2e: lvm new UUIDs: PV {} VG {} root LV {} /boot {boot_uuid}",
        pv.pv_uuid,
        vg.id,
        lv("root").id
    );
}
