//! The end-to-end harness (DESIGN.md "Testing layers" 3, issue #5's proof): a real Debian
//! built once by `build-source.sh` and cached, QEMU under TCG driven one VM at a time, and the
//! host-side views of a disk (loop devices, mounts, partition tables, superblocks, the ESP
//! read with mtools) that the test compares between the source and the restored disk.

pub mod captured;
pub mod disk;
pub mod guest_capture;
pub mod iso_entry;
pub mod restored;
pub mod secure_boot;
pub mod source;
pub mod verify;
pub mod vm;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::need;

/// `tests/cache/e2e`: gitignored, kept between local runs (CI starts from a fresh clone).
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cache/e2e")
}

/// Where the console logs and phase times of the last run are kept for a look afterwards.
pub fn logs_dir() -> PathBuf {
    let d = cache_dir().join("logs");
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    d
}

/// The tools the whole e2e run calls, checked up front so a missing one is named at once.
pub fn need_tools() {
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the e2e test needs root (loop devices, mounts, chroot)"
    );
    need(&[
        ("debootstrap", "debootstrap"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("sfdisk", "fdisk"),
        ("losetup", "mount"),
        ("partx", "util-linux"),
        ("blkid", "util-linux"),
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        // the network restore's HTTP server (`httpd -i`, one per connection)
        ("busybox", "busybox-static"),
    ]);
    assert!(
        Path::new(vm::OVMF_CODE).is_file() && Path::new(vm::OVMF_VARS).is_file(),
        "{} / {} missing: install the Debian package ovmf",
        vm::OVMF_CODE,
        vm::OVMF_VARS
    );
}

/// The last `n` lines of a console log.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Records how long one phase took: printed to the test output and appended to
/// `tests/cache/e2e/logs/times.txt` (the per-phase numbers reported; never asserted).
pub fn phase_time(phase: &str, took: Duration) {
    static FILE: Mutex<()> = Mutex::new(());
    let line = format!("e2e phase: {phase}: {:.1} s", took.as_secs_f64());
    eprintln!("{line}");
    let _lock = FILE.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs_dir().join("times.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// How many `*.log` files under `dir` contain `text`.
pub fn logs_containing(dir: &Path, text: &str) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                logs_containing(&p, text)
            } else if p.extension().is_some_and(|x| x == "log") {
                let bytes = std::fs::read(&p).unwrap_or_default();
                usize::from(String::from_utf8_lossy(&bytes).contains(text))
            } else {
                0
            }
        })
        .sum()
}
