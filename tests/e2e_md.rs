//! Issue #19's proof for MD RAID1 on two disks: the source system
//! (`tests/e2e/build-source-stack.sh md`: two 2 GiB GPT disks, each a BIOS boot partition and
//! a Linux RAID member of `/dev/md0`, metadata 1.2, raid1, name `osimage-e2e:0`; ext4 /
//! directly on md0; GRUB on both disks; `mdadm.conf` with the ARRAY line in the initramfs)
//! captures itself with `osimage capture / -o system.iso` run INSIDE the booted system
//! (tests/common/e2e/guest_capture.rs: this host's kernel has no MD driver); the image
//! records md0 with both members in role order; the ISO, booted by SeaBIOS beside TWO blank
//! 3 GiB disks with no keyboard, restores by itself (as many empty disks as recorded disks;
//! GRUB onto the second disk by the system's own grub-install, chrooted);
//! on the host both restored members carry the source's array UUID, name, level and roles and
//! the root filesystem (read at the data offset) holds the source's files; and each restored
//! disk ALONE boots to the marker with / on md0 (the initramfs starts the array degraded).
//! When one does not, the two source disks are booted the same way and the failure says
//! whether they boot (`or_blame_the_source`): the source's boot is not a test of its own.
//! Phase times are printed (and kept in tests/cache/e2e/logs/times.txt), never asserted.
//!
//! Needs what tests/e2e_restore.rs needs; the source is built in a QEMU guest and cached in
//! tests/cache/e2e/source-md-<hash>.

use crate::common;
use crate::common::e2e;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use e2e::guest_capture::{CapturedIso, captured_once};
use e2e::phase_time;
use e2e::source::{self, BOOT_TIMEOUT, Source};
use e2e::verify::RESTORE_TIMEOUT;
use e2e::vm::{self, Boot, Drive, Firmware};

/// Each restore target: larger than the 2 GiB source disks.
const TARGET_BYTES: u64 = 3 << 30;
const DONE: &str = "OSIMAGE-RESTORE-DONE";
const FAILED: &str = "OSIMAGE-RESTORE-FAILED";
const WAITING: &str = "OSIMAGE-RESTORE-WAITING";

static CAPTURED: OnceLock<Result<CapturedIso, String>> = OnceLock::new();

/// The ISO the MD source wrote of itself, made once per test process.
fn captured() -> &'static CapturedIso {
    let s = source::md_source();
    let disks = s.disks();
    let refs: Vec<&Path> = disks.iter().map(PathBuf::as_path).collect();
    captured_once(&CAPTURED, "md", &refs, &[])
}

/// `disks` (`snapshot=on`: never changed) boot with SeaBIOS through the first one's GRUB,
/// the initramfs assembles md0 (degraded when one member is missing) and the marker shows /
/// on md0. `what` names the boot in messages and phase times.
fn boots_to_marker(s: &Source, what: &str, disks: &[&Path]) {
    let o = vm::boot(&Boot {
        name: format!("md-{}", what.replace(' ', "-")),
        firmware: Firmware::Bios,
        cdrom: None,
        disks: disks
            .iter()
            .map(|file| Drive {
                file,
                bus: vm::Bus::Virtio,
                snapshot: true,
            })
            .collect(),
        timeout: BOOT_TIMEOUT,
        stop_on: &[s.marker()],
        grace: Duration::from_secs(2),
    });
    let line = o
        .console
        .lines()
        .find(|l| l.contains(s.marker()))
        .unwrap_or_else(|| panic!("the MD {what} did not boot: {}", o.describe()));
    for w in [vm::marker_word(Firmware::Bios), " /=/dev/md0"] {
        assert!(
            line.contains(w),
            "`{w}` not in the MD {what}'s marker `{}`\n{}",
            line.trim(),
            o.describe()
        );
    }
    eprintln!("e2e: md {what}: {}", line.trim());
    phase_time(&format!("md: {what} boot (bios)"), o.elapsed);
}

/// A restored disk boots alone (degraded md0); when it does not, the two source disks are
/// booted the same way to say which one is to blame.
fn restored_boots(s: &Source, what: &str, disk: &Path) {
    let d = s.disks();
    assert_eq!(d.len(), 2, "{:?}", d);
    source::or_blame_the_source(
        || boots_to_marker(s, what, &[disk]),
        || boots_to_marker(s, "source disks", &[&d[0], &d[1]]),
    )
}

/// `capture /` inside the booted MD system exits 0 and writes an ISO; `osimage info --json`
/// reads it back: / from md0 (ext4); the stack holds md0 (raid1, metadata 1.2, the source's
/// UUID and name) with partition 2 of each recorded disk in roles 0 and 1.
#[test]
fn capture_inside_the_md_system_records_md0_with_both_members() {
    let _disks = common::loop_devices(module_path!());
    let s = source::md_source();
    let c = captured();
    assert_eq!(c.rc, 0, "{}", c.describe());
    assert!(
        c.booted.contains(" /=/dev/md0"),
        "the capturing guest's marker: `{}`",
        c.booted
    );
    let info = info_json(&c.iso);
    let fs = info["filesystems"].as_array().cloned().unwrap_or_default();
    let root = fs
        .iter()
        .find(|f| f["mount_point"] == "/")
        .unwrap_or_else(|| panic!("no / in info: {info:#}"));
    assert_eq!(root["fstype"], "ext4", "{root}");
    assert_eq!(root["source"], "/dev/md0", "{root}");
    let layout = &info["layout"];
    assert_eq!(layout["unsupported"], serde_json::json!([]), "{layout:#}");
    let disks = layout["disks"].as_array().cloned().unwrap_or_default();
    assert_eq!(disks.len(), 2, "two recorded disks: {layout:#}");
    let md = layout["stack"]["md"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(md.len(), 1, "{layout:#}");
    let md = &md[0];
    eprintln!("e2e: md recorded: {md}");
    assert_eq!(md["name"], "md0", "{md:#}");
    assert_eq!(md["level"], "raid1", "{md:#}");
    assert_eq!(md["metadata"], "1.2", "{md:#}");
    assert_eq!(md["uuid"], s.get("MD_UUID"), "{md:#}");
    assert_eq!(md["array_name"], s.get("MD_NAME"), "{md:#}");
    assert_eq!(md["degraded"], false, "{md:#}");
    let members: Vec<(u64, u64, u64)> = md["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["role"].as_u64().unwrap_or(99),
                m["device"]["disk"].as_u64().unwrap_or(99),
                m["device"]["partition"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(members, [(0, 0, 2), (1, 1, 2)], "{md:#}");
}

fn info_json(iso: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args(["info", "--json"])
        .arg(iso)
        .output()
        .expect("running osimage info");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "osimage info --json {} exited {}: {}",
        iso.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("osimage info --json printed no JSON ({e}): {stdout}"))
}

/// The whole cycle: the ISO, booted by SeaBIOS beside two blank 3 GiB disks with no keyboard,
/// restores by itself and powers off; on the host each restored member carries the source's
/// array identity in its role and the root filesystem holds the source's files; each restored
/// disk alone boots to the marker with / on md0.
#[test]
fn md_iso_restores_two_blank_disks_unattended_and_each_boots_alone() {
    let _disks = common::loop_devices(module_path!());
    let s = source::md_source();
    let c = captured();
    assert_eq!(c.rc, 0, "{}", c.describe());
    let work = common::scratch();
    let targets = [
        work.path().join("restored-a.img"),
        work.path().join("restored-b.img"),
    ];
    for t in &targets {
        e2e::disk::sparse(t, TARGET_BYTES);
    }
    let o = vm::boot(&Boot {
        name: "md-restore-bios".into(),
        firmware: Firmware::Bios,
        cdrom: Some(&c.iso),
        disks: targets
            .iter()
            .map(|file| Drive {
                file,
                bus: vm::Bus::Virtio,
                snapshot: false,
            })
            .collect(),
        timeout: RESTORE_TIMEOUT,
        stop_on: &[FAILED, WAITING],
        grace: Duration::from_secs(2),
    });
    assert!(
        o.console.contains(DONE) && !o.console.contains(FAILED) && !o.console.contains(WAITING),
        "the MD ISO did not restore two blank disks by itself: {}",
        o.describe()
    );
    phase_time("md: ISO boot -> restored -> power-off (bios)", o.elapsed);
    for l in o
        .console
        .lines()
        .filter(|l| l.contains("mdadm") || l.contains("→") || l.contains("grub-install"))
    {
        eprintln!("e2e: md restore: {}", l.trim());
    }
    assert!(
        o.console
            .contains("grub-install --target=i386-pc /dev/vdb ran chrooted"),
        "no GRUB on the second disk: {}",
        o.describe()
    );
    same_array(s, &targets);
    same_root(s, &targets[0], work.path());
    restored_boots(s, "restored disk A alone", &targets[0]);
    restored_boots(s, "restored disk B alone", &targets[1]);
}

/// Partition 2 of each restored disk is an MD member (read with osimage's own reader) of the
/// source's array: same UUID, name, level, metadata and data offset, role 0 on the first disk
/// and 1 on the second, no member missing.
fn same_array(s: &Source, targets: &[PathBuf; 2]) {
    use osimage::layout::stack::md;
    for (role, t) in targets.iter().enumerate() {
        let a = e2e::disk::Attached::new(t, true);
        let p = a.part(2);
        let mut f = std::fs::File::open(&p).expect("the restored member");
        let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).expect("its size");
        let m = md::read(&f, size)
            .expect("the restored member's superblock reads")
            .unwrap_or_else(|| panic!("no MD superblock on {} partition 2", t.display()));
        eprintln!(
            "e2e: md restored member {role}: uuid {} name {} level {} role {:?} data offset {}",
            m.uuid, m.name, m.level, m.role, m.data_offset_sectors
        );
        assert_eq!(m.uuid, s.get("MD_UUID"), "{}", t.display());
        assert_eq!(m.name, s.get("MD_NAME"), "{}", t.display());
        assert_eq!(
            (m.metadata, m.level.as_str(), m.raid_disks),
            ("1.2", "raid1", 2)
        );
        assert_eq!(m.role, Some(role as u32), "{}", t.display());
        assert!(
            !m.degraded(),
            "{}: missing roles {:?}",
            t.display(),
            m.missing_roles
        );
        assert_eq!(
            m.data_offset_sectors.to_string(),
            s.get("MD_DATA_OFFSET"),
            "{}",
            t.display()
        );
    }
}

/// The root filesystem on the restored md0 (read from member A at the data offset: RAID1
/// members hold it whole) against the source's: every file but what the fidelity contract
/// lets differ and what the running system changed between boot and capture (the capture
/// is of the booted system, the source disk image is as built: the times of the run-time
/// directories).
fn same_root(s: &Source, restored: &Path, work: &Path) {
    use common::compare;
    use e2e::restored::{CONTENTS_NOT_CAPTURED, MAY_DIFFER};
    let offset: u64 = s.get("KERNEL_OFFSET").parse().expect("KERNEL_OFFSET");
    let (a, b) = (
        e2e::disk::Attached::new(&s.disk, true),
        e2e::disk::Attached::new(restored, true),
    );
    let opts = format!("ro,noload,offset={offset}");
    let ra = e2e::disk::Mount::new(&a.part(2), &work.join("root-source"), &opts);
    let rb = e2e::disk::Mount::new(&b.part(2), &work.join("root-restored"), &opts);
    // written by the booted system before the capture read it
    const BOOTED_WRITES: &[&[u8]] = &[b"var/lib/systemd"];
    let snap = |dir: &Path| -> compare::Snapshot {
        compare::snapshot(dir)
            .unwrap_or_else(|e| panic!("walking {}: {e}", dir.display()))
            .into_iter()
            .filter(|(p, _)| !MAY_DIFFER.iter().any(|x| compare::is_under(p, x)))
            .filter(|(p, _)| {
                !CONTENTS_NOT_CAPTURED
                    .iter()
                    .any(|x| p.as_slice() != *x && compare::is_under(p, x))
            })
            .collect()
    };
    let (sa, sb) = (snap(&ra.dir), snap(&rb.dir));
    for p in [
        &b"etc/fstab"[..],
        b"etc/mdadm/mdadm.conf",
        b"boot/grub/grub.cfg",
        b"usr/lib/systemd/systemd",
    ] {
        assert!(
            sa.contains_key(p),
            "{} not in the source's root",
            String::from_utf8_lossy(p)
        );
    }
    eprintln!(
        "e2e: md: comparing {} paths of the root filesystem",
        sa.len()
    );
    // The run-time directories' own times are the running system's at capture (mount points
    // of /dev, /proc, /run, /sys; /tmp and /var/tmp written after boot), not the disk's.
    // The restore ran the system's grub-install onto disk B (its BIOS boot partition was not
    // captured): it rewrote /boot/grub's modules and font with the same bytes, new times.
    let (booted, diffs): (Vec<_>, Vec<_>) = compare::compare(&sa, &sb, compare::Options::default())
        .into_iter()
        .filter(|d| !(d.what == "mtime" && CONTENTS_NOT_CAPTURED.contains(&d.path.as_slice())))
        .filter(|d| !(d.what == "mtime" && compare::is_under(&d.path, b"boot/grub")))
        .partition(|d| BOOTED_WRITES.iter().any(|x| compare::is_under(&d.path, x)));
    for d in &booted {
        eprintln!("e2e: md: written by the booted source before its capture: {d}");
    }
    compare::assert_no_differences(&diffs, "the restored md0's root against the source's");
}
