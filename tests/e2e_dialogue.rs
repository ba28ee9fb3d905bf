//! The restore dialogue over the serial console, an encrypted ISO, and another disk controller,
//! in ONE restore under QEMU (TCG) to save CI time (issues #5 and #7; docs/RESTORE.md "In the
//! rescue environment"). The e2e source system (captured on virtio-blk) is captured with
//! `--encrypt`; the ISO boots with TWO blank disks, a virtio one and an NVMe one, so the
//! unattended rule falls back to the interactive dialogue. The test types into the serial
//! console as a user would: a WRONG passphrase (the agent must say so and ask again), the
//! right one, the NVMe disk's name, and "power off" at the end. Then, on the host: the NVMe
//! disk holds the source system (table, boot bytes, ids, every file) and the virtio disk is
//! still all zeros; and the restored NVMe disk alone boots the system to its marker with / and
//! /boot/efi on nvme0n1 (the captured initramfs already holds the nvme driver: the restore
//! says so; tests/restore_initramfs_regenerate.rs covers the case where it does not).
//!
//! Needs root and what tests/e2e_restore.rs needs. Phase times are printed and kept in
//! tests/cache/e2e/logs/times.txt, never asserted.

use crate::common;
use crate::common::e2e;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::disk::{self, Attached, Mount};
use e2e::source::{self, BOOT_TIMEOUT};
use e2e::vm::{Bus, Drive, Firmware};
use e2e::{phase_time, restored};
use osimage::vm::{self, Ended, Typed, VmSpec};
use osimage::{Accel, console};

/// ISO boot to power-off, restore and typing included, under TCG. Never a timing assertion.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Each blank disk: larger than the 2 GiB source, so both are empty disks the plan fits.
const DISK_BYTES: u64 = 3 << 30;
const PASSPHRASE: &str = "e2e correct horse battery staple";
const WRONG: &str = "e2e wrong horse";

/// The agent's prompts (src/agent/unlock.rs, dialogue.rs, mod.rs).
const ASK_PASSPHRASE: &str = "osimage: passphrase (or age secret key) of the encrypted image:";
const SAID_WRONG: &str = "osimage: wrong passphrase or key; try again";
const UNLOCKED: &str = "osimage: image unlocked";
const ASK_DISK: &str = "osimage: restore onto which disk?";
const ASK_END: &str = "[r]eboot, [p]ower off, or [s]hell?";
/// Asked after the plan is shown (issue #11: the plan before the confirmation).
const ASK_PLAN: &str = "as planned above? [yes/no]";

/// Captures the source like tests/e2e_restore.rs does, encrypted with a passphrase read from
/// a file (`--encrypt --passphrase-file`: no terminal needed).
fn capture_encrypted(work: &Path) -> PathBuf {
    let pass = work.join("passphrase");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).expect("writing the passphrase file");
    let pass = pass.display().to_string();
    capture_encrypted_with(work, &["--encrypt", "--passphrase-file", &pass])
}

/// `capture_encrypted` with the encryption options `how`.
fn capture_encrypted_with(work: &Path, how: &[&str]) -> PathBuf {
    let s = source::source();
    let iso = work.join("encrypted.iso");
    let root = work.join("root");
    let started = Instant::now();
    {
        let attached = Attached::new(&s.disk, true);
        let _root = Mount::ext4_ro(&attached.part(3), &root);
        let _esp = Mount::bind_ro(&s.esp, &root.join("boot/efi"));
        common::run(
            Command::new(env!("CARGO_BIN_EXE_osimage"))
                .args(["capture", "-q"])
                .args(how)
                .arg(&root)
                .arg("-o")
                .arg(&iso),
        );
    }
    phase_time("capture --encrypt ROOT -o encrypted.iso", started.elapsed());
    iso
}

/// Whether every byte of `path` is zero.
fn all_zeros(path: &Path) -> bool {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).expect("reading the disk image");
        if n == 0 {
            return true;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
    }
}

/// How often `needle` is on the console.
fn count(console: &str, needle: &str) -> usize {
    console.matches(needle).count()
}

/// Boots the encrypted ISO with a blank virtio disk and a blank NVMe disk and answers the
/// dialogue; returns the outcome after the guest powered off.
fn restore_interactively(iso: &Path, virtio: &Path, nvme: &Path) -> vm::Outcome {
    let logs = e2e::logs_dir();
    let script = [
        Typed {
            after: ASK_PASSPHRASE,
            line: WRONG,
        },
        Typed {
            after: ASK_PASSPHRASE,
            line: PASSPHRASE,
        },
        Typed {
            after: ASK_DISK,
            line: "nvme0n1",
        },
        Typed {
            after: ASK_PLAN,
            line: "yes",
        },
        Typed {
            after: ASK_END,
            line: "p",
        },
    ];
    let failures = [console::RESTORE_FAILED, console::KERNEL_PANIC];
    let _vm = common::vm_lock();
    vm::run_typing(
        &VmSpec {
            name: "dialogue-encrypted-nvme".into(),
            log_dir: &logs,
            firmware: Firmware::Bios,
            accel: Accel::Tcg,
            memory_mib: 1536,
            cdrom: Some(iso),
            kernel: None,
            disks: vec![
                Drive {
                    file: virtio,
                    bus: Bus::Virtio,
                    snapshot: false,
                },
                Drive {
                    file: nvme,
                    bus: Bus::Nvme,
                    snapshot: false,
                },
            ],
            timeout: RESTORE_TIMEOUT,
            stop_on: &[],
            fail_on: &failures,
            milestones: &[],
            grace: Duration::from_secs(5),
            stall: None,
            first_output: Some(osimage::vm::FIRST_OUTPUT),
            network: None,
        },
        &script,
    )
    .unwrap_or_else(|e| panic!("booting the encrypted ISO: {e}"))
}

/// What the console must show of the dialogue: the passphrase asked twice with the wrong one
/// named wrong (and neither echoed), the fall-back to interactive mode with both disks listed
/// as empty, the NVMe disk restored, its driver found in the captured initramfs.
fn dialogue_as_expected(o: &vm::Outcome) {
    let c = &o.console;
    let why = || o.describe();
    assert!(
        matches!(o.ended, Ended::Exited(_)),
        "the guest did not power off: {}",
        why()
    );
    assert_eq!(o.typed.len(), 5, "not every answer was typed: {}", why());
    // issue #11: the plan is shown before the confirmation, and nothing is written before it
    let (plan_at, asked_at, wiped_at) = (
        c.find("Restore plan"),
        c.find(ASK_PLAN),
        c.find("phase 1/9"),
    );
    assert!(
        plan_at.is_some() && plan_at < asked_at && asked_at < wiped_at,
        "the plan, then the question, then the restore: {}",
        why()
    );
    assert!(
        c.contains("OSIMAGE-RESTORE-WAITING passphrase"),
        "no passphrase wait: {}",
        why()
    );
    assert_eq!(count(c, ASK_PASSPHRASE), 2, "{}", why());
    assert_eq!(count(c, SAID_WRONG), 1, "the wrong passphrase: {}", why());
    assert_eq!(count(c, UNLOCKED), 1, "{}", why());
    let (wrong_at, unlocked_at) = (c.find(SAID_WRONG), c.find(UNLOCKED));
    assert!(
        wrong_at < unlocked_at,
        "unlocked before the retry: {}",
        why()
    );
    for secret in [WRONG, PASSPHRASE] {
        assert!(!c.contains(secret), "a passphrase was echoed: {}", why());
    }
    assert!(
        c.contains("OSIMAGE-RESTORE-WAITING 2 empty disks"),
        "no fall-back to interactive mode with two empty disks: {}",
        why()
    );
    for disk in ["/dev/vda", "/dev/nvme0n1"] {
        assert!(
            c.lines()
                .any(|l| l.trim_start().starts_with(disk) && l.trim_end().ends_with("empty")),
            "{disk} not listed as empty: {}",
            why()
        );
    }
    assert!(c.contains("OSIMAGE-RESTORE-DONE"), "no restore: {}", why());
    assert!(
        c.contains("→ nvme0n1") || c.contains("→ /dev/nvme0n1"),
        "the plan is not for nvme0n1: {}",
        why()
    );
    let drivers = c
        .lines()
        .find(|l| l.contains("initramfs initrd.img-") && l.contains("nvme0n1's drivers"))
        .unwrap_or_else(|| panic!("no initramfs check for nvme0n1: {}", why()));
    assert!(
        drivers.contains("holds nvme0n1's drivers (nvme)"),
        "{drivers}"
    );
    eprintln!("e2e: {}", console::clean(drivers).trim());
}

/// The restored NVMe disk alone, booted with SeaBIOS from its NVMe controller: the marker,
/// with / and /boot/efi mounted from nvme0n1's partitions (fstab names them by UUID).
fn boots_from_nvme(s: &source::Source, nvme: &Path) {
    let o = e2e::vm::boot(&e2e::vm::Boot {
        name: "restored-nvme-seabios".into(),
        firmware: Firmware::Bios,
        cdrom: None,
        disks: vec![Drive {
            file: nvme,
            bus: Bus::Nvme,
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
        .unwrap_or_else(|| panic!("the restored NVMe disk did not boot: {}", o.describe()));
    for want in [
        e2e::vm::marker_word(Firmware::Bios),
        " /=/dev/nvme0n1p3",
        " /boot/efi=/dev/nvme0n1p2",
    ] {
        assert!(line.contains(want), "`{want}` not in `{line}`");
    }
    phase_time("restored disk boot (NVMe, seabios)", o.elapsed);
    eprintln!("e2e: restored on NVMe: {}", line.trim());
}

#[test]
fn encrypted_iso_restores_onto_the_disk_chosen_over_the_serial_console_and_boots_from_nvme() {
    let _disks = common::loop_devices(module_path!());
    let s = source::source();
    let work = common::scratch();
    let iso = capture_encrypted(work.path());
    let virtio = work.path().join("virtio-blank.img");
    let nvme = work.path().join("nvme-target.img");
    disk::sparse(&virtio, DISK_BYTES);
    disk::sparse(&nvme, DISK_BYTES);

    let o = restore_interactively(&iso, &virtio, &nvme);
    phase_time(
        "encrypted ISO boot -> dialogue -> restore onto NVMe -> power-off",
        o.elapsed,
    );
    dialogue_as_expected(&o);

    assert!(
        all_zeros(&virtio),
        "the disk NOT chosen (virtio) was written: {}",
        o.describe()
    );
    let started = Instant::now();
    restored::same_disk(s, &nvme, work.path());
    phase_time("host comparison (NVMe)", started.elapsed());

    boots_from_nvme(s, &nvme);
}

/// `verify --boot` of an encrypted ISO (docs/VERIFY-BOOT.md "Encrypted images"): without a
/// key it is refused on the host before any VM starts; with `--identity` naming a file of two
/// age keys, the second the image's, that key is typed at the rescue agent's prompt in the
/// VM, the restore, first boot and file comparison pass, and no key is in the report or in
/// any kept log.
#[test]
fn verify_boot_of_an_encrypted_iso_types_the_age_key_that_opens_it() {
    use age::secrecy::ExposeSecret;
    let _disks = common::loop_devices(module_path!());
    let s = source::source();
    let work = common::scratch();
    let (foreign, own) = (
        age::x25519::Identity::generate(),
        age::x25519::Identity::generate(),
    );
    let iso = capture_encrypted_with(work.path(), &["--recipient", &own.to_public().to_string()]);
    let secrets = [
        foreign.to_string().expose_secret().to_string(),
        own.to_string().expose_secret().to_string(),
    ];
    let identities = work.path().join("identities.txt");
    std::fs::write(&identities, format!("{}\n{}\n", secrets[0], secrets[1]))
        .expect("writing the identity file");

    let refused = Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args(["verify", "--boot", "--accel", "tcg"])
        .arg(&iso)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running osimage verify --boot");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "without a key: {said}");
    assert!(
        said.contains(&iso.display().to_string()) && said.contains("--identity"),
        "the refusal names neither the image nor how to give its key: {said}"
    );

    let kept = work.path().join("verify");
    std::fs::create_dir_all(&kept).expect("making the work directory");
    let id_arg = identities.display().to_string();
    let v = e2e::verify::VerifyBoot::run(&iso, Firmware::Bios, &kept, &["--identity", &id_arg]);
    v.assert_passed(s, Firmware::Bios);
    let line = v.first_boot(Firmware::Bios, &["/=/dev/vda3", "/boot/efi=/dev/vda2"]);
    eprintln!("e2e: encrypted ISO proved by verify --boot: {line}");
    v.assert_files_equal(5000);
    let restore_log = v.console("restore");
    assert!(
        restore_log.contains("OSIMAGE-RESTORE-WAITING passphrase")
            && restore_log.contains(UNLOCKED),
        "the agent did not ask for the key and open the image with it: {}",
        v.pretty()
    );
    let report = v.pretty();
    for secret in &secrets {
        assert!(!report.contains(secret.as_str()), "a key is in the report");
        assert_eq!(
            e2e::logs_containing(&kept, secret),
            0,
            "a key is in a kept log"
        );
    }
}
