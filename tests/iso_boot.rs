//! The ISO boots under QEMU (TCG): SeaBIOS and OVMF, from the image as a CD-ROM and as a plain
//! disk (the `dd` to USB case). GRUB must start, find the ISO and load a Debian kernel whose
//! initramfs prints a marker on the serial console and powers off. One VM at a time; each
//! waits for the marker up to a generous timeout (no timing assertion).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::iso::*;
use crate::common::{self, need};
use osimage::iso::{IsoFile, IsoSource, IsoSpec, build_grub_boot, write_iso};
use osimage::{Accel, vm};

const MARKER: &str = "OSIMAGE-ISO-BOOT-OK";
const TIMEOUT: Duration = Duration::from_secs(180);

static ISO: OnceLock<PathBuf> = OnceLock::new();
static ISOFS_ISO: OnceLock<PathBuf> = OnceLock::new();
static PAYLOAD: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();

/// Kernel and initramfs, fetched/built once per run.
fn payload() -> (PathBuf, PathBuf) {
    PAYLOAD.get_or_init(boot_payload).clone()
}

fn work_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("iso-boot")
}

/// The boot test ISO (built once per test run): GRUB + kernel + test initramfs + README.
fn iso() -> &'static Path {
    ISO.get_or_init(|| build_iso("boot", TEST_GRUB_CFG, None))
}

/// The same plus the fixture tree under `/fixture`, booting with `osimage.isofs=1`.
fn isofs_iso() -> &'static Path {
    ISOFS_ISO.get_or_init(|| {
        let src = work_dir().join("fixture-src");
        let _ = std::fs::remove_dir_all(&src);
        build_tree(&src);
        build_iso("isofs", &isofs_grub_cfg(), Some(&src))
    })
}

fn build_iso(name: &str, grub_cfg: &str, fixture: Option<&Path>) -> PathBuf {
    need(&[
        ("grub-mkimage", "grub-common"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
    ]);
    let (kernel, initrd) = payload();
    let work = work_dir().join(name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let grub = build_grub_boot(Path::new("/"), grub_cfg, &work.join("grub"), None)
        .expect("building GRUB boot images");
    let file = |path: &str, source| IsoFile {
        path: path.into(),
        source,
        mode: 0o644,
        mtime: 1_700_000_000,
    };
    let mut files = vec![
        file(
            "README.TXT",
            IsoSource::Bytes(b"osimage boot test\n".to_vec()),
        ),
        file("boot/vmlinuz", IsoSource::Path(kernel)),
        file("boot/initrd.gz", IsoSource::Path(initrd)),
    ];
    files.extend(grub.files);
    if let Some(src) = fixture {
        for mut f in spec_from_tree(src, "X").files {
            f.path = format!("fixture/{}", f.path);
            files.push(f);
        }
    }
    let spec = IsoSpec {
        volume_id: "OSIMAGE_BOOT_TEST".into(),
        files,
        boot: Some(grub.boot),
        hybrid: true,
    };
    let iso = work.join(format!("{name}.iso"));
    write_iso(&spec, &iso).expect("write_iso");
    iso
}

#[derive(Clone, Copy, Debug)]
enum Firmware {
    SeaBios,
    Ovmf,
}

#[derive(Clone, Copy, Debug)]
enum Medium {
    Cdrom,
    Disk,
    VirtioDisk,
}

/// A copy of the boot ISO whose El Torito boot record is blanked: EDK2 also boots El Torito
/// from a 512-byte-sector disk, so only this copy proves that the GPT's ESP alone boots (what
/// firmware without El Torito support on disks relies on).
fn iso_without_el_torito() -> PathBuf {
    let copy = work_dir().join("gpt-only.iso");
    std::fs::copy(iso(), &copy).expect("copying the ISO");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&copy)
        .expect("open copy");
    use std::os::unix::fs::FileExt;
    // sector 17, bytes 7..39: boot system identifier "EL TORITO SPECIFICATION"
    f.write_all_at(&[0u8; 32], 17 * 2048 + 7)
        .expect("blanking the boot record");
    copy
}

fn boot(fw: Firmware, medium: Medium) {
    boot_image(fw, medium, iso(), "", MARKER);
}

/// Boots `iso` through the product's QEMU runner (`osimage::vm`, TCG) and waits
/// for a serial line containing `until` (after the boot marker); returns the serial log.
fn boot_image(fw: Firmware, medium: Medium, iso: &Path, variant: &str, until: &str) -> String {
    let name = format!("{fw:?}-{medium:?}{variant}").to_lowercase();
    let (firmware, want) = match fw {
        Firmware::SeaBios => (vm::Firmware::Bios, "firmware=BIOS"),
        Firmware::Ovmf => (vm::Firmware::Uefi, "firmware=UEFI"),
    };
    let drive = |bus| vm::Drive {
        file: iso,
        bus,
        snapshot: true,
    };
    let (cdrom, disks) = match medium {
        Medium::Cdrom => (Some(iso), vec![]),
        Medium::Disk => (None, vec![drive(vm::Bus::Ide)]),
        Medium::VirtioDisk => (None, vec![drive(vm::Bus::Virtio)]),
    };
    let stop_on = [until];
    let _vm = common::vm_lock();
    let o = vm::run(&vm::VmSpec {
        name: name.clone(),
        log_dir: &work_dir(),
        firmware,
        accel: Accel::Tcg,
        memory_mib: 512,
        cdrom,
        kernel: None,
        disks,
        timeout: TIMEOUT,
        stop_on: &stop_on,
        fail_on: &[],
        milestones: &[],
        // the initramfs powers off right after the marker; give it a moment, then stop it
        grace: Duration::from_secs(20),
        stall: None,
        first_output: Some(vm::FIRST_OUTPUT),
        network: None,
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let ok = o
        .console
        .lines()
        .any(|l| l.contains(MARKER) && l.contains(want));
    assert!(
        ok,
        "{name}: no `{MARKER} {want}` on the serial console: {}",
        o.describe()
    );
    assert!(
        o.console.contains(until),
        "{name}: no `{until}` on the serial console: {}",
        o.describe()
    );
    eprintln!("{name}: booted to the marker in {:?}", o.elapsed);
    o.console
}

#[test]
fn boots_with_seabios_from_cdrom() {
    boot(Firmware::SeaBios, Medium::Cdrom);
}

#[test]
fn boots_with_seabios_from_disk() {
    boot(Firmware::SeaBios, Medium::Disk);
}

#[test]
fn boots_with_ovmf_from_cdrom() {
    boot(Firmware::Ovmf, Medium::Cdrom);
}

#[test]
fn boots_with_ovmf_from_disk() {
    boot(Firmware::Ovmf, Medium::Disk);
}

#[test]
fn boots_with_ovmf_from_disk_through_the_gpt_esp_alone() {
    let _ = iso();
    let copy = {
        let _vm = common::vm_lock();
        iso_without_el_torito()
    };
    boot_image(Firmware::Ovmf, Medium::Disk, &copy, "-gpt-only", MARKER);
}

/// The rescue environment will read the ISO with Linux's iso9660 driver: it must see the same
/// names (Rock Ridge), modes, mtimes, contents and symlinks as the source tree.
#[test]
fn linux_isofs_reads_the_tree_back_from_a_virtio_disk() {
    let iso = isofs_iso();
    let log = boot_image(
        Firmware::SeaBios,
        Medium::VirtioDisk,
        iso,
        "-isofs",
        "ISOFS-END",
    );
    let mut seen: Vec<String> = log
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with("ISOFS-") && *l != "ISOFS-END")
        .map(str::to_string)
        .collect();
    seen.sort();
    let want = describe_tree(&work_dir().join("fixture-src"));
    assert!(
        !seen.iter().any(|l| l.starts_with("ISOFS-FAIL")),
        "{seen:#?}"
    );
    assert_eq!(
        seen, want,
        "Linux's view of /fixture differs from the source tree"
    );
}
