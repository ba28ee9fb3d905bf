//! Issue #11's proof in QEMU (TCG): one golden ISO of a two-disk Debian (root, ESP and BIOS
//! boot on the first disk, /home on a second) restored onto two machines, each with two blank
//! disks and no keyboard, with `osimage.generalize=1` and its own `osimage.hostname=` (the
//! second also with `osimage.new-uuids=1`, and its disks attached in the other order so the
//! unattended rule must pair them by size). Both restored systems boot, with /home mounted
//! from their second disk; their machine-ids, SSH host keys and hostnames differ from each
//! other and from the source; the new-UUIDs copy has UUIDs of its own and boots by BIOS and
//! by UEFI.
//!
//! The boot parameters are given as an operator gives them at the ISO's boot menu: the
//! menu's kernel, initramfs and command line, with the parameters added (`-kernel/-append`).
//! Needs what tests/e2e_restore.rs needs, plus xorriso.

use crate::common;
use crate::common::e2e;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::run;
use e2e::disk::{self, Attached, Mount};
use e2e::iso_entry::{Entry, auto_entry};
use e2e::phase_time;
use e2e::source::{self, BOOT_TIMEOUT};
use e2e::vm::{self, Boot, DirectKernel, Drive, Firmware};

const RESTORE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DONE: &str = "OSIMAGE-RESTORE-DONE";
const FAILED: &str = "OSIMAGE-RESTORE-FAILED";
const WAITING: &str = "OSIMAGE-RESTORE-WAITING";
const HOME_UUID: &str = "e2e0f5e5-0000-4000-8000-0000000000a0";
const HOME_BYTES: u64 = 512 << 20;
const SYSTEM_TARGET: u64 = 3 << 30;
const HOME_TARGET: u64 = 1 << 30;
const HOME_FILE: &str = "alice/notes.txt";

/// The golden two-disk system, captured.
struct Golden {
    iso: PathBuf,
    /// The source's machine-id and SSH host key (public half).
    machine_id: String,
    ssh_pub: String,
    root_uuid: String,
}

/// Derives the two-disk system from the e2e source (a copy of its disk, plus a /home disk
/// named in its fstab) and captures it: ROOT is the copy's root, its ESP's files at boot/efi
/// (this kernel has no vfat) and the home disk at home.
fn golden(work: &Path) -> Golden {
    let s = source::source();
    let sys = work.join("golden-system.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&s.disk)
        .arg(&sys));
    let home = work.join("golden-home.img");
    disk::sparse(&home, HOME_BYTES);
    common::loopdev::run_stdin(
        "sfdisk",
        &[
            "--no-reread",
            "--no-tell-kernel",
            "-q",
            home.to_str().expect("utf-8 path"),
        ],
        "label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    );
    let (a, h) = (Attached::new(&sys, false), Attached::new(&home, false));
    run(Command::new("mkfs.ext4").args([
        "-q",
        "-F",
        "-U",
        HOME_UUID,
        "-L",
        "e2e-home",
        &h.part(1),
    ]));
    let root = work.join("root");
    let (machine_id, ssh_pub) = {
        let _r = Mount::new(&a.part(3), &root, "rw");
        let fstab = root.join("etc/fstab");
        let mut text = std::fs::read_to_string(&fstab).expect("fstab");
        text.push_str(&format!("UUID={HOME_UUID}  /home  ext4  defaults  0 2\n"));
        std::fs::write(&fstab, text).expect("fstab");
        let _h = Mount::new(&h.part(1), &root.join("home"), "rw");
        let f = root.join("home").join(HOME_FILE);
        std::fs::create_dir_all(f.parent().expect("dir")).expect("mkdir");
        std::fs::write(&f, "kept on the second disk\n").expect("write");
        (
            read(&root.join("etc/machine-id")),
            read(&root.join("etc/ssh/ssh_host_ed25519_key.pub")),
        )
    };
    assert!(
        !machine_id.trim().is_empty() && ssh_pub.starts_with("ssh-ed25519"),
        "source identity: {machine_id:?} {ssh_pub:?}"
    );
    let iso = work.join("golden.iso");
    let started = Instant::now();
    {
        let _r = Mount::ext4_ro(&a.part(3), &root);
        let _e = Mount::bind_ro(&s.esp, &root.join("boot/efi"));
        let _h = Mount::ext4_ro(&h.part(1), &root.join("home"));
        common::capture(&root, &iso, &[]);
    }
    phase_time("capture of the two-disk golden system", started.elapsed());
    Golden {
        iso,
        machine_id: machine_id.trim().to_string(),
        ssh_pub: ssh_pub.trim().to_string(),
        root_uuid: s.get("ROOT_UUID").to_string(),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// One restored machine: its two disks, in the order [system, home].
struct Machine {
    system: PathBuf,
    home: PathBuf,
}

/// Boots the golden ISO with two blank disks (`system_first`: the order they are attached)
/// and `params` added to the automatic entry; asserts the unattended restore finished.
fn restore(
    name: &str,
    g: &Golden,
    e: &Entry,
    work: &Path,
    params: &str,
    system_first: bool,
    third: Option<&Path>,
) -> Machine {
    let m = Machine {
        system: work.join(format!("{name}-system.img")),
        home: work.join(format!("{name}-home.img")),
    };
    disk::sparse(&m.system, SYSTEM_TARGET);
    disk::sparse(&m.home, HOME_TARGET);
    let drive = |file| Drive {
        file,
        bus: vm::Bus::Virtio,
        snapshot: false,
    };
    let mut disks = if system_first {
        vec![drive(m.system.as_path()), drive(m.home.as_path())]
    } else {
        vec![drive(m.home.as_path()), drive(m.system.as_path())]
    };
    if let Some(t) = third {
        disks.push(Drive {
            file: t,
            bus: vm::Bus::Virtio,
            snapshot: true,
        });
    }
    let cmdline = format!("{} {params}", e.cmdline);
    let o = vm::boot_direct(
        &Boot {
            name: format!("fleet-restore-{name}"),
            firmware: Firmware::Bios,
            cdrom: Some(&g.iso),
            disks,
            timeout: RESTORE_TIMEOUT,
            stop_on: &[DONE, FAILED, WAITING],
            grace: Duration::from_secs(20),
        },
        DirectKernel {
            kernel: &e.kernel,
            initrd: &e.initrd,
            cmdline: &cmdline,
        },
    );
    assert!(
        o.console.contains(DONE) && !o.console.contains(FAILED),
        "{name}: the unattended restore did not finish: {}",
        o.describe()
    );
    assert!(
        o.console.contains("largest onto largest"),
        "{name}: the two recorded disks were not paired by the unattended rule: {}",
        o.describe()
    );
    phase_time(
        &format!("fleet: ISO boot + two-disk restore ({name})"),
        o.elapsed,
    );
    m
}

/// Boots a restored machine (disks in the order [system, home], `snapshot=on`) and returns
/// its marker line.
fn boots(name: &str, m: &Machine, fw: Firmware) -> String {
    let s = source::source();
    let drive = |file| Drive {
        file,
        bus: vm::Bus::Virtio,
        snapshot: true,
    };
    let o = vm::boot(&Boot {
        name: format!("fleet-boot-{name}-{}", fw.name()),
        firmware: fw,
        cdrom: None,
        disks: vec![drive(m.system.as_path()), drive(m.home.as_path())],
        timeout: BOOT_TIMEOUT,
        stop_on: &[],
        grace: Duration::from_secs(5),
    });
    let line = o
        .console
        .lines()
        .find(|l| l.contains(s.marker()))
        .unwrap_or_else(|| panic!("{name} did not boot with {}: {}", fw.name(), o.describe()))
        .to_string();
    phase_time(
        &format!("fleet: restored {name} boots ({})", fw.name()),
        o.elapsed,
    );
    for want in [
        vm::marker_word(fw),
        " /=/dev/vda3",
        " /boot/efi=/dev/vda2",
        " /home=/dev/vdb1",
    ] {
        assert!(
            line.contains(want),
            "{name} ({}): `{want}` not in `{line}`",
            fw.name()
        );
    }
    line
}

/// The value of `key=` in a marker line.
fn word<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// A third disk holding the site's files under `site/` (ext4, no partition table): the
/// overlay `osimage.overlay=/dev/vdc:/site` takes.
fn overlay_disk(work: &Path) -> PathBuf {
    let img = work.join("site-overlay.img");
    disk::sparse(&img, 32 << 20);
    let tree = work.join("site-tree");
    std::fs::create_dir_all(tree.join("site/etc")).expect("mkdir");
    std::fs::write(tree.join("site/etc/fleet-site"), "site-a\n").expect("write");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&img));
    img
}

/// The host's view of a restored machine: its root's UUID, SSH host key, hostname, /home's
/// file and the overlay's file (if any).
fn inspect(m: &Machine, dir: &Path) -> (String, String, String, String, Option<String>) {
    let (a, h) = (Attached::new(&m.system, true), Attached::new(&m.home, true));
    let uuid = disk::blkid(&a.part(3))
        .get("UUID")
        .cloned()
        .unwrap_or_default();
    let root = dir.join("inspect");
    let _r = Mount::ext4_ro(&a.part(3), &root);
    let home = dir.join("inspect-home");
    let _h = Mount::ext4_ro(&h.part(1), &home);
    (
        uuid,
        read(&root.join("etc/ssh/ssh_host_ed25519_key.pub"))
            .trim()
            .to_string(),
        read(&root.join("etc/hostname")).trim().to_string(),
        read(&home.join(HOME_FILE)),
        std::fs::read_to_string(root.join("etc/fleet-site")).ok(),
    )
}

#[test]
fn one_golden_iso_restores_two_distinct_machines_that_boot() {
    let _disks = common::loop_devices(module_path!());
    e2e::need_tools();
    common::need(&[("xorriso", "xorriso")]);
    let work = common::scratch();
    let g = golden(work.path());
    let e = auto_entry(&g.iso, work.path());

    let site = overlay_disk(work.path());
    // The two machines restore, then boot, side by side (two VM slots, `common::vm_lock`), as
    // a fleet's machines would; a panic in either thread fails the test with its message.
    let (alpha, beta) = std::thread::scope(|t| {
        let alpha = t.spawn(|| {
            restore(
                "alpha",
                &g,
                &e,
                work.path(),
                "osimage.generalize=1 osimage.hostname=alpha osimage.overlay=/dev/vdc:/site",
                true,
                Some(&site),
            )
        });
        let beta = restore(
            "beta",
            &g,
            &e,
            work.path(),
            "osimage.generalize=1 osimage.hostname=beta osimage.new-uuids=1",
            false,
            None,
        );
        (alpha.join().expect("alpha's restore"), beta)
    });
    let (a, b, b_uefi) = std::thread::scope(|t| {
        let a = t.spawn(|| boots("alpha", &alpha, Firmware::Bios));
        let b_uefi = t.spawn(|| boots("beta", &beta, Firmware::Uefi));
        let b = boots("beta", &beta, Firmware::Bios);
        (
            a.join().expect("alpha's boot"),
            b,
            b_uefi.join().expect("beta's UEFI boot"),
        )
    });
    eprintln!("fleet: alpha: {a}\nfleet: beta: {b}\nfleet: beta (UEFI): {b_uefi}");

    assert_eq!(word(&a, "hostname"), "alpha");
    assert_eq!(word(&b, "hostname"), "beta");
    let (ida, idb) = (word(&a, "machine-id"), word(&b, "machine-id"));
    assert_eq!(ida.len(), 32, "{a}");
    assert_eq!(idb.len(), 32, "{b}");
    assert_ne!(ida, idb, "two generalized restores share a machine-id");
    assert_ne!(ida, g.machine_id, "alpha kept the golden machine-id");
    assert_ne!(idb, g.machine_id, "beta kept the golden machine-id");
    let (ssha, sshb) = (word(&a, "ssh"), word(&b, "ssh"));
    assert!(
        ssha.starts_with("SHA256:") && sshb.starts_with("SHA256:"),
        "{a}\n{b}"
    );
    assert_ne!(ssha, sshb, "two generalized restores share an SSH host key");

    let (ua, ka, ha, fa, sa) = inspect(&alpha, work.path());
    let (ub, kb, hb, fb, sb) = inspect(&beta, work.path());
    assert_eq!(
        sa.as_deref(),
        Some("site-a\n"),
        "alpha's overlay from the third disk"
    );
    assert_eq!(sb, None, "beta had no overlay");
    assert_eq!((ha.as_str(), hb.as_str()), ("alpha", "beta"));
    assert_ne!(
        ka, g.ssh_pub,
        "alpha's SSH host key was copied from the golden image"
    );
    assert_ne!(
        kb, g.ssh_pub,
        "beta's SSH host key was copied from the golden image"
    );
    assert_ne!(ka, kb);
    assert_eq!(fa, "kept on the second disk\n");
    assert_eq!(fb, "kept on the second disk\n");
    assert_eq!(
        ua, g.root_uuid,
        "without --new-uuids the root keeps its UUID"
    );
    assert_ne!(ub, g.root_uuid, "osimage.new-uuids=1 kept the root's UUID");
    assert_eq!(ub.len(), 36, "{ub}");
}
