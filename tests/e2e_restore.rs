//! Issue #5's proof, end to end (DESIGN.md "Testing layers" 3 and "Unattended restore"): a
//! real Debian on one GPT disk (BIOS boot partition, ESP, ext4 root; `tests/e2e/
//! build-source.sh`) is captured into ONE ISO by `osimage capture ROOT -o system.iso`. The
//! ISO, booted with SeaBIOS and with OVMF with no keyboard and a blank larger disk, restores
//! onto that disk by itself and powers off; the restored disk alone then boots the system to
//! its marker with the same firmware, and holds the source's files, partition table,
//! filesystem UUIDs and labels and boot loader bytes. A disk that already holds data is never
//! written to. Phase times are printed (and kept in tests/cache/e2e/logs/times.txt), never
//! asserted.
//!
//! Needs root, qemu-system-x86, ovmf, debootstrap, fdisk, mtools, dosfstools, e2fsprogs; the
//! source system is built from the apt mirror this machine uses and cached in
//! tests/cache/e2e (a fresh CI clone builds it: a few minutes).

use crate::common;
use crate::common::e2e;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::run;
use e2e::captured::captured;
use e2e::disk::{self, Attached, Mount};
use e2e::phase_time;
use e2e::restored::same_disk;
use e2e::source::{self, BOOT_TIMEOUT};
use e2e::verify::{RESTORE_TIMEOUT, VerifyBoot};
use e2e::vm::{self, Boot, Drive, Firmware};

const DONE: &str = "OSIMAGE-RESTORE-DONE";
const FAILED: &str = "OSIMAGE-RESTORE-FAILED";
/// What the agent prints when it falls back to interactive mode and waits (no empty disk;
/// docs/RESTORE.md "In the rescue environment").
const WAITING: &str = "OSIMAGE-RESTORE-WAITING";
/// The restored disk: larger than the 2 GiB source, so the root partition grows.
const TARGET_BYTES: u64 = 3 << 30;
/// The whole cycle for one firmware, run by `osimage verify --boot` (restore from the ISO onto
/// a blank 3 GiB disk, boot of the restored disk, files against the manifest); then the host's
/// own checks of the kept scratch disk against the source disk.
fn restores_and_boots(fw: Firmware) {
    let s = source::source();
    let iso = &captured().iso;
    let work = common::scratch();
    let target_mib = (TARGET_BYTES >> 20).to_string();
    let v = VerifyBoot::run(iso, fw, work.path(), &["--disk-size", &target_mib]);
    v.assert_passed(s, fw);
    let line = v.first_boot(fw, &["/=/dev/vda3", "/boot/efi=/dev/vda2"]);
    eprintln!("e2e: restored: {line}");
    v.assert_files_equal(5000);

    if fw == Firmware::UefiSecureBoot {
        // the rescue environment's own view (its console log is kept with --keep)
        assert!(
            e2e::logs_containing(work.path(), "osimage: firmware UEFI, Secure Boot on") > 0,
            "the rescue environment did not report Secure Boot on: {}",
            v.pretty()
        );
    }
    if fw != Firmware::Bios {
        // the NVRAM boot entry the restore added, as the firmware lists it back (the restore
        // summary on the rescue console quotes efibootmgr's `BootXXXX* LABEL` line)
        assert!(
            e2e::logs_containing(work.path(), "efibootmgr lists Boot") > 0,
            "{}: no NVRAM boot entry listed after the restore: {}",
            fw.name(),
            v.pretty()
        );
    }

    let started = Instant::now();
    same_disk(s, &v.disk(), work.path());
    phase_time(
        &format!("host comparison ({})", fw.name()),
        started.elapsed(),
    );
}

#[test]
fn iso_restores_a_blank_disk_unattended_and_it_boots_with_seabios() {
    let _disks = common::loop_devices(module_path!());
    restores_and_boots(Firmware::Bios);
}

/// UEFI with Secure Boot on and Microsoft's keys (issue #8): the ISO boots through the
/// captured system's signed shim, GRUB and kernel, the rescue environment sees Secure Boot on,
/// and the restored disk boots with Secure Boot on too.
#[test]
fn iso_restores_a_blank_disk_unattended_and_it_boots_with_ovmf_secure_boot() {
    let _disks = common::loop_devices(module_path!());
    restores_and_boots(Firmware::UefiSecureBoot);
}

/// The proof that the test above would catch a broken chain: the same ISO with its shim's
/// signature cut off is refused by the firmware, and nothing of the rescue environment runs.
#[test]
fn secure_boot_firmware_refuses_the_iso_with_an_unsigned_shim() {
    let _disks = common::loop_devices(module_path!());
    let iso = &captured().iso;
    let work = common::scratch();
    let bad = work.path().join("unsigned-shim.iso");
    e2e::secure_boot::iso_with_unsigned_shim(iso, &bad, work.path());
    let target = work.path().join("target.img");
    disk::sparse(&target, TARGET_BYTES);
    let rescue_started = ["Loading the osimage rescue environment", "osimage: "];
    let stop_on: Vec<&str> = e2e::secure_boot::REFUSED
        .iter()
        .chain(&rescue_started)
        .copied()
        .collect();
    let o = vm::boot(&Boot {
        name: "unsigned-shim-ovmf-secureboot".into(),
        firmware: Firmware::UefiSecureBoot,
        cdrom: Some(&bad),
        disks: vec![Drive {
            file: &target,
            bus: vm::Bus::Virtio,
            snapshot: true,
        }],
        timeout: BOOT_TIMEOUT,
        stop_on: &stop_on,
        grace: Duration::from_secs(2),
    });
    assert!(
        !rescue_started.iter().any(|m| o.console.contains(m)),
        "Secure Boot firmware ran the ISO with an unsigned shim: {}",
        o.describe()
    );
    assert!(
        e2e::secure_boot::REFUSED
            .iter()
            .any(|m| o.console.contains(m)),
        "no refusal ({:?}) on the console for an unsigned shim: {}",
        e2e::secure_boot::REFUSED,
        o.describe()
    );
}

/// Unattended with no empty disk: the agent must not pick the disk that holds data; it says
/// `OSIMAGE-RESTORE-WAITING <reason>` and falls back to interactive mode (docs/RESTORE.md).
/// The test reads the console until it says so (or fails), then stops the VM; the disk's
/// bytes are unchanged. The ISO is booted as a disk with SeaBIOS (the USB-stick case, see
/// `rescue_comes_up_from_the_iso_as_a_disk`): one VM run proves both, the hybrid MBR path
/// and the medium found on a disk by its image id, and the refusal.
#[test]
fn unattended_restore_never_writes_to_a_disk_holding_data() {
    let _disks = common::loop_devices(module_path!());
    let iso = &captured().iso;
    let work = common::scratch();
    let content = work.path().join("content");
    std::fs::create_dir_all(&content).expect("mkdir");
    std::fs::write(
        content.join("precious.txt"),
        b"data the restore must not touch\n",
    )
    .expect("write");
    let target = work.path().join("data.img");
    disk::sparse(&target, TARGET_BYTES);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "e2e-data", "-d"])
        .arg(&content)
        .arg(&target));
    let before = disk::hash(&target);

    let o = boot_iso_as_disk(
        "iso-as-disk-refuse-data-disk",
        Firmware::Bios,
        iso,
        &target,
        &[WAITING, FAILED],
        // a while longer: a write after the WAITING line would still be caught
        Duration::from_secs(20),
    );
    let after = disk::hash(&target);
    assert_eq!(
        before,
        after,
        "the disk holding data was WRITTEN by an unattended boot: {}",
        o.describe()
    );
    assert!(
        !o.console.contains(DONE),
        "the agent restored onto a disk holding data: {}",
        o.describe()
    );
    let ready = o
        .console
        .lines()
        .find(|l| l.contains("OSIMAGE-RESCUE-READY"))
        .unwrap_or_else(|| panic!("the rescue agent never became ready: {}", o.describe()));
    assert!(
        ready.contains("medium=/dev/vda") && !ready.contains("/dev/vda:"),
        "expected the ISO disk as the medium, never a candidate: {ready}"
    );
    assert!(
        ready.contains("/dev/vdb:3072MiB:") && !ready.contains("/dev/vdb:3072MiB:blank"),
        "the disk holding an ext4 is not listed as a non-blank disk: {ready}"
    );
    // RESTORE.md: with no empty disk, auto mode says WAITING and falls back to interactive;
    // a FAILED here would be a refusal for some other reason (the image, the medium).
    let said = o.console.lines().find(|l| l.contains(WAITING));
    assert!(
        said.is_some(),
        "the agent did not say it waits (`{WAITING} <reason>`, the interactive fallback) with \
         no empty disk: {}",
        o.describe()
    );
    eprintln!(
        "e2e: with no empty disk: {}",
        said.unwrap_or_default().trim()
    );
    phase_time(
        "ISO as a disk -> agent refuses/waits (data disk, bios)",
        o.elapsed,
    );
}

/// `verify --boot` catches a damaged payload: one byte flipped in the middle of a stored
/// block of the ISO (the block holding the first chunk of the first file). The rescue
/// environment comes up, the restore fails with the agent's reason, nothing boots; exit 1.
#[test]
fn verify_boot_fails_in_the_restore_phase_on_a_damaged_payload() {
    let _disks = common::loop_devices(module_path!());
    let iso = &captured().iso;
    let work = common::scratch();
    let damaged = work.path().join("damaged.iso");
    std::fs::copy(iso, &damaged).expect("copying the ISO");
    let at = {
        let r =
            osimage::PayloadReader::open(iso, &osimage::Unlock::none()).expect("opening the ISO");
        let m = r.manifest();
        let chunk = m
            .entries
            .iter()
            .find_map(|e| match &e.kind() {
                osimage::format::manifest::EntryKind::File { runs, .. } => {
                    runs.first().and_then(|run| run.chunks.first().copied())
                }
                _ => None,
            })
            .expect("a file with data");
        let block = &m.blocks[m.chunks[chunk as usize].block as usize];
        let span = &r.pack_spans()[block.pack as usize];
        span.offset
            + block.offset
            + osimage::format::records::BLOCK_HEADER_LEN as u64
            + u64::from(block.stored_len) / 2
    };
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&damaged)
            .expect("opening the copy");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).expect("reading");
        f.write_all_at(&[b[0] ^ 0xFF], at).expect("damaging");
    }
    let v = VerifyBoot::run(&damaged, Firmware::Bios, work.path(), &[]);
    assert_eq!(v.code, Some(1), "{}", v.pretty());
    assert_eq!(v.report["passed"], false, "{}", v.pretty());
    assert_eq!(v.phase("rescue-boot")["status"], "passed", "{}", v.pretty());
    let restore = v.phase("restore");
    assert_eq!(restore["status"], "failed", "{}", v.pretty());
    let detail = restore["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(FAILED),
        "the reason is not the agent's: {}",
        v.pretty()
    );
    assert_eq!(v.phase("first-boot")["status"], "skipped", "{}", v.pretty());
    let verdict = v.report["verdict"].as_str().unwrap_or("");
    assert!(verdict.contains("bios phase restore failed"), "{verdict}");
    eprintln!("e2e: damaged payload: {verdict}");
}

/// `verify --boot` catches a system that restores but cannot boot: the captured tree's fstab
/// has a typo in the ESP's mount options (`umsak=0077`), so /boot/efi fails to mount and
/// systemd drops to its emergency shell. Captured as a refresh of the e2e ISO (unchanged
/// files are not read again). The restore passes, the first boot fails naming the emergency
/// shell; exit 1.
#[test]
fn verify_boot_fails_in_the_first_boot_phase_when_fstab_is_broken() {
    let _disks = common::loop_devices(module_path!());
    let s = source::source();
    let base = &captured().iso;
    let work = common::scratch();
    let disk = work.path().join("broken.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&s.disk)
        .arg(&disk));
    let iso = work.path().join("broken.iso");
    let root = work.path().join("root");
    {
        let a = Attached::new(&disk, false);
        let m = Mount::new(&a.part(3), &root, "rw");
        let fstab = m.dir.join("etc/fstab");
        let text = std::fs::read_to_string(&fstab).expect("etc/fstab");
        assert!(text.contains("umask=0077"), "{text}");
        std::fs::write(&fstab, text.replace("umask=0077", "umsak=0077")).expect("writing fstab");
        drop(m);
        let _root = Mount::ext4_ro(&a.part(3), &root);
        let _esp = Mount::bind_ro(&s.esp, &root.join("boot/efi"));
        let started = Instant::now();
        run(Command::new(env!("CARGO_BIN_EXE_osimage"))
            .args(["capture", "-q"])
            .arg(&root)
            .arg("-o")
            .arg(&iso)
            .arg("--base")
            .arg(base));
        phase_time("capture --base (broken fstab)", started.elapsed());
    }
    let v = VerifyBoot::run(&iso, Firmware::Bios, work.path(), &[]);
    assert_eq!(v.code, Some(1), "{}", v.pretty());
    assert_eq!(v.phase("restore")["status"], "passed", "{}", v.pretty());
    let first = v.phase("first-boot");
    assert_eq!(first["status"], "failed", "{}", v.pretty());
    let detail = first["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("OSIMAGE-VERIFY-NOT-BOOTED") || detail.contains("emergency mode"),
        "the reason does not name the emergency shell: {}",
        v.pretty()
    );
    // the restore itself was faithful: the files phase still ran and found nothing
    assert_eq!(v.phase("files")["status"], "passed", "{}", v.pretty());
    let verdict = v.report["verdict"].as_str().unwrap_or("");
    assert!(
        verdict.contains("bios phase first-boot failed"),
        "{verdict}"
    );
    eprintln!("e2e: broken fstab: {verdict}");
}

/// The comparison is not vacuous: a raw copy of the source on a larger disk (backup GPT
/// moved to the end, root partition grown) passes it; the copy with one byte of one file
/// changed (size and mtime kept) fails it, naming the file.
#[test]
fn comparison_passes_a_raw_copy_and_catches_one_changed_byte() {
    let _disks = common::loop_devices(module_path!());
    let s = source::source();
    let work = common::scratch();
    let copy = work.path().join("copy.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&s.disk)
        .arg(&copy));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&copy)
        .and_then(|f| f.set_len(TARGET_BYTES))
        .expect("growing the copy");
    run(Command::new("sfdisk")
        .args(["--quiet", "--relocate", "gpt-bak-std"])
        .arg(&copy));
    let grow = Command::new("sh")
        .arg("-c")
        .arg("echo ', +' | sfdisk --quiet --no-reread --no-tell-kernel -N 3 \"$0\"")
        .arg(&copy)
        .status();
    assert!(grow.is_ok_and(|s| s.success()), "sfdisk -N 3 failed");
    let rw_root = |f: &dyn Fn(&Path)| {
        let a = Attached::new(&copy, false);
        let m = Mount::new(&a.part(3), &work.path().join("rw"), "rw");
        f(&m.dir);
    };
    // A raw copy is the source, the root's own boot/efi under the ESP's mount included (what
    // a restore now makes of it too: the mount-dirs record, FORMAT.md §13).
    same_disk(s, &copy, &work.path().join("first"));

    rw_root(&|root| {
        let f = root.join("etc/hostname");
        let before = std::fs::metadata(&f).expect("etc/hostname");
        let mut bytes = std::fs::read(&f).expect("read");
        bytes[0] ^= 0x20;
        std::fs::write(&f, &bytes).expect("write");
        let t = std::fs::FileTimes::new().set_modified(before.modified().expect("mtime"));
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_times(t))
            .expect("keeping the mtime");
    });
    let caught = std::panic::catch_unwind(|| same_disk(s, &copy, &work.path().join("second")));
    let msg = match caught {
        Ok(()) => panic!("a changed byte in etc/hostname passed the comparison"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    };
    assert!(
        msg.contains("etc/hostname: content"),
        "the comparison failed, but not on etc/hostname's content:\n{msg}"
    );
}

/// Boots `iso` as the first virtio disk (as a USB stick `dd`'d from it; through a snapshot,
/// so the file is never written) and `target` as the second, until a line of `stop_on`, plus
/// `grace`.
fn boot_iso_as_disk(
    name: &str,
    fw: Firmware,
    iso: &Path,
    target: &Path,
    stop_on: &[&str],
    grace: Duration,
) -> vm::Outcome {
    vm::boot(&Boot {
        name: name.to_string(),
        firmware: fw,
        cdrom: None,
        disks: vec![
            Drive {
                file: iso,
                bus: vm::Bus::Virtio,
                snapshot: true,
            },
            Drive {
                file: target,
                bus: vm::Bus::Virtio,
                snapshot: false,
            },
        ],
        timeout: RESTORE_TIMEOUT,
        stop_on,
        grace,
    })
}

/// The USB-stick case: the ISO written to a disk (`dd`) boots with each firmware (the hybrid
/// MBR/GPT path, not El Torito), the rescue environment comes up, finds its medium by the
/// image id on that disk, and lists the blank disk as a target. The VM is stopped at the
/// agent's READY line (the restore itself is proven from the CD above). With SeaBIOS the
/// same boot is `unattended_restore_never_writes_to_a_disk_holding_data` (a disk holding data
/// beside it instead of a blank one).
fn rescue_comes_up_from_the_iso_as_a_disk(fw: Firmware) {
    let iso = &captured().iso;
    let work = common::scratch();
    let target = work.path().join("blank.img");
    disk::sparse(&target, TARGET_BYTES);
    let o = boot_iso_as_disk(
        &format!("iso-as-disk-{}", fw.name()),
        fw,
        iso,
        &target,
        &["OSIMAGE-RESCUE-READY"],
        Duration::from_secs(1),
    );
    let ready = o
        .console
        .lines()
        .find(|l| l.contains("OSIMAGE-RESCUE-READY"))
        .unwrap_or_else(|| panic!("the rescue agent never became ready: {}", o.describe()));
    assert!(
        ready.contains("medium=/dev/vda") && ready.contains("/dev/vdb:3072MiB:blank"),
        "expected the ISO disk as the medium and the blank disk as a target: {ready}"
    );
    assert!(
        !ready.contains("/dev/vda:"),
        "the disk holding the boot medium must never be a candidate: {ready}"
    );
    phase_time(
        &format!("ISO as a disk -> agent ready ({})", fw.name()),
        o.elapsed,
    );
}

#[test]
fn rescue_comes_up_from_the_iso_as_a_disk_with_ovmf() {
    let _disks = common::loop_devices(module_path!());
    rescue_comes_up_from_the_iso_as_a_disk(Firmware::Uefi);
}

/// Issue #23 goal 3, a benchmark (bench/unpack-vm.sh runs it; never a timed test): the e2e
/// system's ISO booted with SeaBIOS and its automatic entry plus `osimage.bench=dd` restores
/// onto a blank virtio disk; after the unpack the agent times `dd` writing as many bytes to
/// the same disk in the same boot and prints one `OSIMAGE-BENCH` line, which this test
/// checks for and writes to `$OSIMAGE_BENCH_OUT` when that is set.
#[test]
#[ignore = "a benchmark: bench/unpack-vm.sh runs it"]
fn bench_agent_unpack_against_dd_in_one_boot() {
    let _disks = common::loop_devices(module_path!());
    let iso = &captured().iso;
    let work = common::scratch();
    let e = e2e::iso_entry::auto_entry(iso, work.path());
    let target = work.path().join("target.img");
    disk::sparse(&target, TARGET_BYTES);
    let cmdline = format!("{} osimage.bench=dd", e.cmdline);
    let o = vm::boot_direct(
        &Boot {
            name: "bench-unpack-against-dd".into(),
            firmware: Firmware::Bios,
            cdrom: Some(iso),
            disks: vec![Drive {
                file: &target,
                bus: vm::Bus::Virtio,
                snapshot: false,
            }],
            timeout: RESTORE_TIMEOUT,
            stop_on: &[DONE, FAILED, WAITING],
            grace: Duration::from_secs(20),
        },
        vm::DirectKernel {
            kernel: &e.kernel,
            initrd: &e.initrd,
            cmdline: &cmdline,
        },
    );
    assert!(
        o.console.contains(DONE) && !o.console.contains(FAILED),
        "the restore did not finish: {}",
        o.describe()
    );
    let line = o
        .console
        .lines()
        .find_map(|l| l.find("OSIMAGE-BENCH ").map(|i| l[i..].trim().to_string()))
        .unwrap_or_else(|| panic!("no OSIMAGE-BENCH line: {}", o.describe()));
    eprintln!("e2e: {line}");
    if let Some(out) = std::env::var_os("OSIMAGE_BENCH_OUT") {
        std::fs::write(&out, format!("{line}\n")).expect("writing OSIMAGE_BENCH_OUT");
    }
}
