//! The rescue environment boots: an initramfs built from a Debian kernel package and this
//! host's tools, booted in QEMU (TCG) with a CD-ROM holding only the image id marker and a
//! blank virtio disk, brings up the agent, which finds the CD by the id, lists the blank disk
//! on the serial console and powers the VM off by itself.
//!
//! The agent here is this test binary: when started as `<exe> rescue-agent` (by rescue/init's
//! `/bin/osimage rescue-agent`), a constructor runs the library's agent before the test harness
//! starts. The real `osimage rescue-agent` subcommand calls the same function.
//!
//! Needs: qemu-system-x86_64, xorriso, cpio, zstd, depmod, apt (the kernel package is fetched
//! once into tests/cache/rescue-kernel, from the apt sources this machine is configured with).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use osimage::RescueSpec;
use osimage::{Accel, vm};

use crate::common;
use common::kernel::{cache_dir, kernel_package, staging_root};
use common::run;

/// glibc calls `.init_array` functions with (argc, argv, envp) before `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static AGENT_HOOK: extern "C" fn(
    i32,
    *const *const std::ffi::c_char,
    *const *const std::ffi::c_char,
) = agent_hook;

extern "C" fn agent_hook(
    argc: i32,
    argv: *const *const std::ffi::c_char,
    _env: *const *const std::ffi::c_char,
) {
    if argc < 2 || argv.is_null() {
        return;
    }
    // SAFETY: the loader passes argc valid C strings in argv.
    let arg1 = unsafe { std::ffi::CStr::from_ptr(*argv.add(1)) };
    if arg1.to_bytes() == b"rescue-agent" {
        std::process::exit(osimage::agent::agent_main_from_proc());
    }
}

/// The paths in the initrd: its compressed contents (the first `core_len` bytes: zstd
/// frames, each a whole archive, and zero padding) and the image's own id archive after them,
/// as the kernel unpacks them one after the other.
fn list_initrd(r: &osimage::Rescue) -> String {
    let bytes = std::fs::read(&r.initrd).unwrap();
    let core_len = r.inputs.core_len as usize;
    assert_eq!(core_len % 4, 0, "the id archive must start 4-byte aligned");
    let mut archives = Vec::new();
    let mut at = 0;
    while at < core_len && bytes[at] != 0 {
        let frame = zstd::zstd_safe::find_frame_compressed_size(&bytes[at..core_len])
            .unwrap_or_else(|e| panic!("no zstd frame at byte {at} of the initrd: {e}"));
        archives.push(zstd::stream::decode_all(&bytes[at..at + frame]).unwrap());
        at += frame;
    }
    assert!(archives.len() > 1, "the initramfs is compressed in parts");
    assert!(
        bytes[at..core_len].iter().all(|&b| b == 0),
        "only zero padding may follow the frames"
    );
    archives.push(bytes[core_len..].to_vec());
    let mut listing = String::new();
    for archive in archives {
        let mut child = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Written from another thread: cpio's listing could fill the stdout pipe meanwhile.
        let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &archive));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "cpio -t: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        listing.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    listing
}

/// One build shared by the boot tests, and one VM at a time (two cores).
struct Built {
    rescue: osimage::Rescue,
    hex: String,
    work: tempfile::TempDir,
}

static BUILT: OnceLock<Option<Built>> = OnceLock::new();

fn built() -> Option<&'static Built> {
    BUILT
        .get_or_init(|| {
            common::need(&[
                ("qemu-system-x86_64", "qemu-system-x86"),
                ("xorriso", "xorriso"),
                ("cpio", "cpio"),
                ("zstd", "zstd"),
                ("depmod", "kmod"),
                ("dpkg-deb", "dpkg"),
                ("mkfs.ext4", "e2fsprogs"),
            ]);
            let (x, version) = kernel_package();
            let root = staging_root(&x, &version);
            let work = tempfile::tempdir_in(cache_dir()).unwrap();
            let id: [u8; 16] = *b"\x0a\x1b\x2c\x3d\x4e\x5f\x60\x71\x82\x93\xa4\xb5\xc6\xd7\xe8\xf9";
            let mut spec = RescueSpec::new(&root, id);
            spec.filesystems = vec!["ext4".into(), "vfat".into(), "swap".into()];
            let first =
                osimage::build_rescue(&spec, &work.path().join("first")).expect("build_rescue");
            // The initrd the VMs boot mixes two builds, as a refresh whose rescue inputs
            // changed makes it (docs/RESCUE.md, "Parts"): every other compressed part is the
            // first build's frame, the rest compressed again.
            let core =
                std::fs::read(&first.initrd).unwrap()[..first.inputs.core_len as usize].to_vec();
            let planned =
                osimage::plan_rescue(&spec, &work.path().join("rescue")).expect("plan_rescue");
            let mut parts = first.inputs.reusable_parts(&planned.inputs, &core);
            assert!(parts.iter().all(Option::is_some), "same inputs, same parts");
            for p in parts.iter_mut().skip(1).step_by(2) {
                *p = None;
            }
            let rescue = planned
                .build_reusing(&spec, &work.path().join("rescue"), &parts)
                .expect("build_reusing");
            assert_eq!(rescue.reused_parts, parts.len().div_ceil(2));
            assert_eq!(rescue.inputs.contents, first.inputs.contents);
            assert_eq!(rescue.kernel_version, version);
            Some(Built {
                rescue,
                hex: osimage::image_id_hex(&id),
                work,
            })
        })
        .as_ref()
}

/// An ISO holding only the id marker, as the real ISO carries it.
fn medium_iso(b: &Built, name: &str) -> PathBuf {
    let medium = b.work.path().join(format!("{name}.d"));
    std::fs::create_dir_all(medium.join("osimage")).unwrap();
    std::fs::write(medium.join(osimage::id_marker_path(&b.hex)), b"").unwrap();
    let iso = b.work.path().join(format!("{name}.iso"));
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "OSIMAGE_TEST", "-o"])
        .arg(&iso)
        .arg(&medium));
    iso
}

fn blank_disk(b: &Built, name: &str, mib: u64) -> PathBuf {
    let disk = b.work.path().join(name);
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    disk
}

/// The blank disks and the optional CD-ROM of one boot.
struct Media<'a> {
    /// The VM's name: its console log is `logs/<name>.log` (two boots may run at once).
    name: &'static str,
    cdrom: Option<&'a Path>,
    disks: Vec<&'a Path>,
}

/// Boots the rescue kernel and initramfs directly (no boot loader) through the product's QEMU
/// runner (`osimage::vm`, TCG); returns the serial console's text and QEMU's exit
/// status (`None`: it did not stop by itself).
fn boot(b: &Built, media: Media) -> (String, Option<std::process::ExitStatus>) {
    let _vm = common::vm_lock();
    let logs = b.work.path().join("logs");
    let o = vm::run(&vm::VmSpec {
        name: media.name.into(),
        log_dir: &logs,
        firmware: vm::Firmware::Bios,
        accel: Accel::Tcg,
        memory_mib: 1024,
        cdrom: media.cdrom,
        kernel: Some(vm::DirectKernel {
            kernel: &b.rescue.kernel,
            initrd: &b.rescue.initrd,
            cmdline: "console=ttyS0,115200 osimage.auto=1",
        }),
        disks: media
            .disks
            .iter()
            .map(|d| vm::Drive {
                file: d,
                bus: vm::Bus::Virtio,
                snapshot: false,
            })
            .collect(),
        // Generous: TCG on a busy two-core machine. Never a timing assertion.
        timeout: Duration::from_secs(600),
        stop_on: &[],
        fail_on: &[],
        milestones: &[],
        grace: Duration::from_secs(1),
        stall: None,
        first_output: Some(vm::FIRST_OUTPUT),
        network: None,
    })
    .unwrap_or_else(|e| panic!("booting the rescue environment: {e}"));
    // Kept for a look after the run (the work directory goes away).
    let _ = std::fs::write(
        cache_dir().join(format!("last-console-{}.log", media.name)),
        &o.console,
    );
    (o.console.clone(), o.exited())
}

fn tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The READY line, asserting the VM powered off by itself without a failure.
fn ready_line(console: &str, status: Option<std::process::ExitStatus>) -> String {
    let t = tail(console);
    let ready = console
        .lines()
        .find(|l| l.contains("OSIMAGE-RESCUE-READY"))
        .unwrap_or_else(|| panic!("no OSIMAGE-RESCUE-READY on the console:\n{t}"))
        .to_string();
    eprintln!("{ready}");
    assert!(!console.contains("OSIMAGE-RESTORE-FAILED"), "{t}");
    let status = status.unwrap_or_else(|| panic!("QEMU did not power off by itself:\n{t}"));
    assert!(status.success(), "QEMU exit {status}:\n{t}");
    ready
}

#[test]
fn initramfs_is_a_valid_cpio_with_what_the_restore_needs() {
    let Some(b) = built() else { return };
    let r = &b.rescue;
    eprintln!(
        "rescue: kernel {} initrd {} bytes (cpio {} bytes), total {} bytes = {:.1} MiB; \
         {} modules, {} tools, {} libraries",
        r.kernel_version,
        r.initrd_bytes,
        r.uncompressed_bytes,
        r.size_bytes,
        r.size_bytes as f64 / 1048576.0,
        r.modules,
        r.tools,
        r.libraries
    );
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    assert!(r.size_bytes < 100 << 20, "rescue part over 100 MiB");
    let listing = list_initrd(r);
    for want in [
        "init",
        "dev/console",
        "dev/null",
        "usr/bin/osimage", // /bin is a link to usr/bin, as in the captured root
        "usr/bin/busybox",
        "usr/sbin/mke2fs",
        "usr/sbin/mkfs.vfat",
        "osimage/image-id",
        "lib64",
    ] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} not in the initramfs"
        );
    }
    for module in [
        "virtio_blk.ko",
        "isofs.ko",
        "sr_mod.ko",
        "ata_piix.ko",
        "ext4.ko",
        "crc32c_generic.ko",
        "loop.ko",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!("/{module}"))),
            "{module} not shipped"
        );
    }
}

#[test]
fn rescue_environment_boots_finds_its_cd_by_id_and_powers_off() {
    let Some(b) = built() else { return };
    let iso = medium_iso(b, "cd");
    let disk = blank_disk(b, "blank-cd.img", 64);
    let (console, status) = boot(
        b,
        Media {
            name: "cd",
            cdrom: Some(&iso),
            disks: vec![&disk],
        },
    );
    let ready = ready_line(&console, status);
    assert!(ready.contains("medium=/dev/sr0"), "{ready}");
    assert!(ready.contains("disks=/dev/vda:64MiB:blank"), "{ready}");
}

/// The ISO as a file on an ext4 disk (no CD): found through a loop device, and the disk
/// holding it is not offered as a target.
#[test]
fn rescue_environment_finds_the_iso_file_on_a_disk() {
    let Some(b) = built() else { return };
    let iso = medium_iso(b, "onfile");
    let content = b.work.path().join("host-fs");
    std::fs::create_dir_all(content.join("images")).unwrap();
    std::fs::copy(&iso, content.join("images/system.iso")).unwrap();
    let host_disk = blank_disk(b, "host-ext4.img", 64);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&host_disk));
    let disk = blank_disk(b, "blank-file.img", 48);
    let (console, status) = boot(
        b,
        Media {
            name: "file-on-disk",
            cdrom: None,
            disks: vec![&host_disk, &disk],
        },
    );
    let ready = ready_line(&console, status);
    assert!(ready.contains("medium=/dev/loop"), "{ready}");
    assert!(
        console.contains("file /images/system.iso on vda"),
        "{}",
        tail(&console)
    );
    assert!(ready.contains("disks=/dev/vdb:48MiB:blank"), "{ready}");
    assert!(
        !ready.contains("/dev/vda"),
        "the medium's disk offered as a target: {ready}"
    );
}
