//! Issue #19's proof for the Debian installer's "guided - use entire disk and set up encrypted
//! LVM" layout: the source system (`tests/e2e/build-source-stack.sh crypt`: BIOS boot
//! partition, ESP, /boot ext4, partition 4 LUKS2 opened as `vda4_crypt` (crypttab) holding
//! the PV of VG `e2ecvg` with LVs `root` (ext4) and `swap`) is booted with its passphrase
//! typed at its initramfs prompt and captures itself (`osimage capture /` INSIDE the booted
//! system: this host's kernel has no device-mapper); the image records the LUKS container
//! (version, UUID, mapping, crypttab line) under the VG; the ISO, booted beside a blank 4 GiB
//! disk (SeaBIOS), asks over the serial console for the restored container's new
//! passphrase (typed twice by the test), restores by itself and powers off; on the host the
//! restored partition 4 carries a LUKS2 header with the source's UUID; the restored disk boots
//! through its own GRUB, its initramfs asks for the passphrase, the test types the NEW one
//! and the marker shows / on the LV; booted once more (unlocked the same way)
//! it captures itself and that image records the source's LUKS UUID, VG and LV UUIDs (this
//! host cannot open the container to read them).
//! The source's own boot through its GRUB is checked only when the restored disk's fails
//! (`or_blame_the_source`), to say which one is to blame.
//! Phase times are printed (and kept in tests/cache/e2e/logs/times.txt), never asserted.
//!
//! Needs what tests/e2e_restore.rs needs; the source is built in a QEMU guest and cached in
//! tests/cache/e2e/source-crypt-<hash>.

use crate::common;
use crate::common::e2e;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use e2e::guest_capture::{CapturedIso, capture_in_guest_of, captured_once};
use e2e::phase_time;
use e2e::source::{self, BOOT_TIMEOUT, Source};
use e2e::verify::RESTORE_TIMEOUT;
use e2e::vm::{self, Boot, Drive, Firmware, Typed};

/// The restore target: larger than the 3 GiB source.
const TARGET_BYTES: u64 = 4 << 30;
const DONE: &str = "OSIMAGE-RESTORE-DONE";
const FAILED: &str = "OSIMAGE-RESTORE-FAILED";
/// cryptsetup-initramfs' prompt (askpass): "Please unlock disk vda4_crypt: ".
const UNLOCK_PROMPT: &str = "Please unlock disk";
/// The rescue agent's questions (src/agent/unlock.rs).
const ASK_NEW: &str = "osimage: new passphrase for the restored LUKS containers:";
const ASK_AGAIN: &str = "osimage: the same passphrase again:";
/// The restored container's passphrase: not the source's, so the restored system unlocking
/// with it proves the container was made anew under what the restore was given.
const NEW_PASSPHRASE: &str = "e2e restored luks passphrase";

static CAPTURED: OnceLock<Result<CapturedIso, String>> = OnceLock::new();

/// The ISO the encrypted source wrote of itself, made once per test process (its passphrase
/// typed at the initramfs prompt of the capturing boot).
fn captured() -> &'static CapturedIso {
    let s = source::crypt_source();
    let typed = [Typed {
        after: UNLOCK_PROMPT,
        line: s.get("CRYPT_PASSPHRASE"),
    }];
    captured_once(&CAPTURED, "crypt", &[&s.disk], &typed)
}

/// `disk` alone (`snapshot=on`) boots through its own GRUB with `fw`; at the initramfs prompt
/// `passphrase` is typed; the marker shows / on the LV, /boot and the ESP on their partitions.
fn boots_to_marker(s: &Source, what: &str, fw: Firmware, disk: &Path, passphrase: &str) {
    let typed = [Typed {
        after: UNLOCK_PROMPT,
        line: passphrase,
    }];
    let o = vm::boot_typing(
        &Boot {
            name: format!("crypt-{}-{}", what.replace(' ', "-"), fw.name()),
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
        },
        &typed,
    );
    assert_eq!(
        o.typed.len(),
        1,
        "the {what} disk never asked for its passphrase ({}): {}",
        fw.name(),
        o.describe()
    );
    let line = o
        .console
        .lines()
        .find(|l| l.contains(s.marker()))
        .unwrap_or_else(|| {
            panic!(
                "the encrypted {what} disk did not boot with {}: {}",
                fw.name(),
                o.describe()
            )
        });
    for w in [
        vm::marker_word(fw),
        &format!(" /={}", s.get("ROOT_DEV")),
        " /boot=/dev/vda3",
        " /boot/efi=/dev/vda2",
    ] {
        assert!(
            line.contains(w),
            "{}: `{w}` not in the encrypted {what} disk's marker `{}`\n{}",
            fw.name(),
            line.trim(),
            o.describe()
        );
    }
    assert!(
        !o.console.contains(passphrase),
        "the passphrase was echoed: {}",
        o.describe()
    );
    eprintln!("e2e: crypt {what} ({}): {}", fw.name(), line.trim());
    phase_time(
        &format!(
            "crypt: {what} disk boot with the passphrase typed ({})",
            fw.name()
        ),
        o.elapsed,
    );
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

/// The stack an image records of the encrypted system: the LUKS2 container on partition 4
/// with the source's UUID, mapped as `vda4_crypt` by crypttab, holding the VG with the UUIDs
/// lvm gave it. Returns the VG's (VG UUID, [(LV name, LV UUID)]).
fn recorded_stack(s: &Source, info: &serde_json::Value) -> (String, Vec<(String, String)>) {
    let layout = &info["layout"];
    assert_eq!(layout["unsupported"], serde_json::json!([]), "{layout:#}");
    let luks = layout["stack"]["luks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(luks.len(), 1, "{layout:#}");
    let l = &luks[0];
    eprintln!("e2e: crypt recorded LUKS: {l}");
    assert_eq!(l["version"], 2, "{l:#}");
    assert_eq!(l["uuid"], s.get("LUKS_UUID"), "{l:#}");
    assert_eq!(l["mapping"], s.get("CRYPT_NAME"), "{l:#}");
    assert_eq!(l["device"]["partition"], 4, "{l:#}");
    assert_eq!(l["crypttab"]["name"], s.get("CRYPT_NAME"), "{l:#}");
    let vg = &layout["stack"]["vgs"][0];
    assert_eq!(vg["name"], s.get("VG_NAME"), "{layout:#}");
    let lvs = vg["lvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or("?").to_string(),
                l["uuid"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    (vg["uuid"].as_str().unwrap_or("?").to_string(), lvs)
}

/// `capture /` inside the booted encrypted system (unlocked at its initramfs prompt) exits 0;
/// the image reads back with / on the LV and the whole stack: LUKS2 → PV → VG → LVs with the
/// source's UUIDs.
#[test]
fn capture_inside_the_encrypted_system_records_luks_under_the_vg() {
    let _disks = common::loop_devices(module_path!());
    let s = source::crypt_source();
    let c = captured();
    assert_eq!(c.rc, 0, "{}", c.describe());
    assert!(
        c.booted.contains(&format!(" /={}", s.get("ROOT_DEV"))),
        "the capturing guest's marker: `{}`",
        c.booted
    );
    let info = info_json(&c.iso);
    let fs = info["filesystems"].as_array().cloned().unwrap_or_default();
    let root = fs
        .iter()
        .find(|f| f["mount_point"] == "/")
        .unwrap_or_else(|| panic!("no / in info: {info:#}"));
    assert_eq!(root["source"], s.get("ROOT_DEV"), "{root}");
    let (vg, lvs) = recorded_stack(s, &info);
    assert_eq!(vg, s.get("VG_UUID"));
    assert_eq!(
        lvs,
        [
            ("root".to_string(), s.get("ROOT_LV_UUID").to_string()),
            ("swap".to_string(), s.get("SWAP_LV_UUID").to_string())
        ]
    );
}

/// The whole cycle with `fw`: the ISO beside a blank 4 GiB disk asks for the new container's
/// passphrase over the serial console (typed twice), restores and powers off; the restored
/// partition 4 is LUKS2 with the source's UUID (osimage's own reader, on the host); the
/// restored disk boots, unlocked with the NEW passphrase at its initramfs prompt.
/// With `inside`, the restored system then captures itself (`same_stack_inside`).
fn crypt_iso_restores_and_boots(fw: Firmware, inside: bool) {
    let s = source::crypt_source();
    let c = captured();
    assert_eq!(c.rc, 0, "{}", c.describe());
    let work = common::scratch();
    let target = work.path().join("restored.img");
    e2e::disk::sparse(&target, TARGET_BYTES);
    let typed = [
        Typed {
            after: ASK_NEW,
            line: NEW_PASSPHRASE,
        },
        Typed {
            after: ASK_AGAIN,
            line: NEW_PASSPHRASE,
        },
    ];
    let o = vm::boot_typing(
        &Boot {
            name: format!("crypt-restore-{}", fw.name()),
            firmware: fw,
            cdrom: Some(&c.iso),
            disks: vec![Drive {
                file: &target,
                bus: vm::Bus::Virtio,
                snapshot: false,
            }],
            timeout: RESTORE_TIMEOUT,
            stop_on: &[FAILED],
            grace: Duration::from_secs(2),
        },
        &typed,
    );
    assert_eq!(
        o.typed.len(),
        2,
        "the passphrase was not asked twice: {}",
        o.describe()
    );
    assert!(
        o.console.contains(DONE) && !o.console.contains(FAILED),
        "the encrypted-LVM ISO did not restore: {}",
        o.describe()
    );
    assert!(
        o.console
            .contains("OSIMAGE-RESTORE-WAITING luks-passphrase"),
        "{}",
        o.describe()
    );
    assert!(
        !o.console.contains(NEW_PASSPHRASE),
        "the passphrase was echoed: {}",
        o.describe()
    );
    phase_time(
        &format!(
            "crypt: ISO boot -> passphrase typed -> restored -> power-off ({})",
            fw.name()
        ),
        o.elapsed,
    );
    for l in o
        .console
        .lines()
        .filter(|l| l.contains("cryptsetup") || l.contains("lvm ") || l.contains("LUKS"))
    {
        eprintln!("e2e: crypt restore: {}", l.trim());
    }
    {
        use osimage::layout::stack::luks;
        let a = e2e::disk::Attached::new(&target, true);
        let p = a.part(4);
        let mut f = std::fs::File::open(&p).expect("the restored partition 4");
        let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).expect("its size");
        let h = luks::read(&f, size)
            .expect("the restored LUKS header reads")
            .expect("a LUKS header on the restored partition 4");
        eprintln!(
            "e2e: crypt restored LUKS{} uuid {} cipher {} pbkdf {}",
            h.version, h.uuid, h.cipher, h.pbkdf
        );
        assert_eq!((h.version, h.uuid.as_str()), (2, s.get("LUKS_UUID")));
    }
    source::or_blame_the_source(
        || boots_to_marker(s, "restored", fw, &target, NEW_PASSPHRASE),
        || boots_to_marker(s, "source", fw, &s.disk, s.get("CRYPT_PASSPHRASE")),
    );
    if inside {
        same_stack_inside(s, &target, work.path());
    }
}

/// SeaBIOS only (CI time, docs/PERFORMANCE.md): the passphrase dialogue and the LUKS
/// container do not depend on the firmware, and the same LVM stack restored and booted with
/// OVMF is `e2e_lvm::lvm_iso_restores_a_larger_disk_…_with_ovmf`.
#[test]
fn crypt_iso_restores_asking_the_passphrase_and_it_unlocks_and_boots_with_seabios() {
    let _disks = common::loop_devices(module_path!());
    crypt_iso_restores_and_boots(Firmware::Bios, true);
}

/// The VG and LV UUIDs are inside the encrypted container, which this host cannot open: the
/// restored disk (`snapshot=on`) is booted, unlocked with the new passphrase, and captures
/// itself; the stack its image records is the source's (LUKS UUID and mapping, VG and LV
/// UUIDs as the restored system's LVM sees them).
fn same_stack_inside(s: &Source, restored: &Path, work: &Path) {
    // capture_in_guest reads source.env beside the disk: where the kernel is, root=, marker
    std::fs::copy(s.dir.join("source.env"), work.join("source.env")).expect("source.env");
    let typed = [Typed {
        after: UNLOCK_PROMPT,
        line: NEW_PASSPHRASE,
    }];
    let c = capture_in_guest_of(&[restored], &typed, &[], &work.join("recapture"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.rc, 0, "the restored system's capture: {}", c.describe());
    phase_time(
        "crypt: restored system's own capture VM (boot + passphrase + capture + power-off)",
        c.vm_elapsed,
    );
    let (vg, lvs) = recorded_stack(s, &info_json(&c.iso));
    eprintln!("e2e: crypt restored stack: VG {vg}, LVs {lvs:?}");
    assert_eq!(vg, s.get("VG_UUID"), "the restored VG's UUID");
    assert_eq!(
        lvs,
        [
            ("root".to_string(), s.get("ROOT_LV_UUID").to_string()),
            ("swap".to_string(), s.get("SWAP_LV_UUID").to_string())
        ],
        "the restored LVs' UUIDs"
    );
}
