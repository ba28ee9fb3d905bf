//! `osimage capture / -o system.iso` run INSIDE a booted source system (issue #19: how users
//! run it, and the only way on this host, whose kernel has no device-mapper, MD or LUKS).
//!
//! The source disk is booted with `snapshot=on` (never changed) by direct kernel boot: its
//! kernel and initrd are read on the host from the partition `KERNEL_PART` of the disk
//! (`source.env` beside it; `KERNEL_DIR` inside that filesystem), the command line is
//! `root=ROOT_ARG ro console=ttyS0,115200 modprobe.blacklist=floppy osimage.e2e.capture=1`
//! (no floppy: the probes of the empty drive cost seconds each under TCG). Beside it: a small
//! ext4 "tools" disk (label `osimage-tools`: the osimage binary under test and `args`, one
//! capture argument a line) and an empty sparse ext4 output disk (label `osimage-out`). The
//! fixture's marker script (tests/e2e/osimage-e2e-booted.sh) sees the flag, copies the binary
//! and its arguments into a tmpfs and unmounts the tools disk, runs
//! `osimage capture / -o /run/osimage-e2e/iso/system.iso ARGS...` (a tmpfs: no disk but the
//! system's own is mounted while capture runs, since a mounted disk is recorded in the layout
//! even under /run), copies capture's standard error to the console
//! (`OSIMAGE-E2E-CAPTURE-STDERR `), then mounts the output disk, copies the ISO and capture's
//! output onto it, unmounts it, prints `OSIMAGE-E2E-CAPTURED rc=N seconds=S` and powers off.
//! The host then reads the output disk (loop device, read-only mount) and copies the ISO out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::disk::{self, Attached, Mount};
use super::vm::{self, Boot, DirectKernel, Drive, Firmware, Typed};
use crate::common::run;

/// The line the guest prints when the capture is over (its output disk unmounted).
pub const CAPTURED: &str = "OSIMAGE-E2E-CAPTURED";
/// The prefix of each line of capture's standard error on the console.
pub const STDERR_PREFIX: &str = "OSIMAGE-E2E-CAPTURE-STDERR ";
/// Boot, capture of a few hundred MB under TCG, power-off: generous, never asserted.
pub const CAPTURE_TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// The output disk: sparse, room for an ISO of the whole source.
const OUT_BYTES: u64 = 4 << 30;

/// What the capture inside the guest left.
pub struct CapturedIso {
    /// `WORK/system.iso`, copied from the output disk; absent when capture wrote none.
    pub iso: PathBuf,
    /// capture's exit code in the guest.
    pub rc: i32,
    /// capture's standard output and standard error, as the output disk holds them.
    pub stdout: String,
    pub stderr: String,
    /// The whole serial console of the run (boot, marker line, capture, power-off).
    pub console: String,
    /// The `OSIMAGE-E2E-BOOTED ...` line the guest printed before capturing.
    pub booted: String,
    /// The capture alone, as the guest timed it (whole seconds).
    pub capture_seconds: u64,
    /// The whole VM run (boot, capture, power-off).
    pub vm_elapsed: Duration,
}

impl CapturedIso {
    /// Everything known about the run, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "capture exited {} in the guest\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- console (last 60 lines) ---\n{}",
            self.rc,
            self.stdout.trim_end(),
            self.stderr.trim_end(),
            super::tail(&self.console, 60)
        )
    }
}

/// The `KEY=VALUE` lines of `source.env` beside `disk`.
fn source_env(disk: &Path) -> Result<BTreeMap<String, String>, String> {
    let env = disk.with_file_name("source.env");
    let text = std::fs::read_to_string(&env).map_err(|e| format!("{}: {e}", env.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Copies the one kernel (`vmlinuz-V`) and its initrd (`initrd.img-V`) in `dir` to `work`.
fn copy_kernel(dir: &Path, work: &Path) -> Result<(PathBuf, PathBuf), String> {
    let versions: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .collect();
    let [v] = versions.as_slice() else {
        return Err(format!(
            "{}: expected exactly one vmlinuz-*, found {versions:?}",
            dir.display()
        ));
    };
    let (kernel, initrd) = (work.join("vmlinuz"), work.join("initrd.img"));
    for (from, to) in [
        (dir.join(format!("vmlinuz-{v}")), &kernel),
        (dir.join(format!("initrd.img-{v}")), &initrd),
    ] {
        std::fs::copy(&from, to).map_err(|e| format!("copying {}: {e}", from.display()))?;
    }
    Ok((kernel, initrd))
}

/// An ext4 image of `bytes` (sparse) labelled `label`, holding the files of `content` if any.
fn ext4_image(path: &Path, bytes: u64, label: &str, content: Option<&Path>) {
    disk::sparse(path, bytes);
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-N", "4096", "-L", label])
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1"]);
    if let Some(dir) = content {
        cmd.arg("-d").arg(dir);
    }
    run(cmd.arg(path));
}

/// Boots `source` (a disk built by tests/e2e/build-source*.sh, `source.env` beside it) with
/// SeaBIOS and direct kernel boot, runs `osimage capture / -o system.iso ARGS` inside it with
/// the osimage binary under test, and copies the ISO to `work/system.iso`. `Err` when the
/// harness itself failed (no kernel, no `OSIMAGE-E2E-CAPTURED` line, an unreadable output
/// disk); a capture that exits non-zero is `Ok` with its `rc` (the caller asserts).
pub fn capture_in_guest(source: &Path, args: &[&str], work: &Path) -> Result<CapturedIso, String> {
    capture_in_guest_of(&[source], &[], args, work)
}

/// `capture_in_guest` of a source on several disks (`sources` in order, `/dev/vda`,
/// `/dev/vdb`, ...; `source.env` beside the first: an MD array's members), typing `typed`
/// into the console as the boot asks (the passphrase of an encrypted root at the initramfs
/// prompt). The kernel is read from `KERNEL_PART` of the first disk, `KERNEL_OFFSET` bytes
/// into it when `source.env` says so (a filesystem on an MD member starts at its data offset).
pub fn capture_in_guest_of(
    sources: &[&Path],
    typed: &[Typed],
    args: &[&str],
    work: &Path,
) -> Result<CapturedIso, String> {
    let source = *sources.first().ok_or("no source disk")?;
    let env = source_env(source)?;
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .ok_or_else(|| format!("{k} not in the source.env beside {}", source.display()))
    };
    let (part, kdir, root) = (get("KERNEL_PART")?, get("KERNEL_DIR")?, get("ROOT_ARG")?);
    let marker = get("MARKER")?;
    let part: u32 = part
        .parse()
        .map_err(|_| format!("KERNEL_PART={part} is not a partition number"))?;
    std::fs::create_dir_all(work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;

    let offset: u64 = match env.get("KERNEL_OFFSET") {
        Some(o) => o
            .parse()
            .map_err(|_| format!("KERNEL_OFFSET={o} is not a byte count"))?,
        None => 0,
    };
    let (kernel, initrd) = {
        let a = Attached::new(source, true);
        let dir = work.join("kernel-fs");
        let m = if offset == 0 {
            Mount::ext4_ro(&a.part(part), &dir)
        } else {
            // a loop device at the offset (mount's `offset=` implies one)
            Mount::new(&a.part(part), &dir, &format!("ro,noload,offset={offset}"))
        };
        copy_kernel(&m.dir.join(&kdir), work)?
    };

    let tools = work.join("tools");
    std::fs::create_dir_all(&tools).map_err(|e| format!("mkdir {}: {e}", tools.display()))?;
    let bin = Path::new(env!("CARGO_BIN_EXE_osimage"));
    std::fs::copy(bin, tools.join("osimage"))
        .map_err(|e| format!("copying {}: {e}", bin.display()))?;
    let mut arg_lines = String::new();
    for a in args {
        if a.contains('\n') {
            return Err(format!("capture argument {a:?} holds a newline"));
        }
        arg_lines.push_str(a);
        arg_lines.push('\n');
    }
    std::fs::write(tools.join("args"), arg_lines).map_err(|e| format!("writing args: {e}"))?;
    let bin_len = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let tools_img = work.join("tools.img");
    ext4_image(
        &tools_img,
        bin_len + (64 << 20),
        "osimage-tools",
        Some(&tools),
    );
    let out_img = work.join("out.img");
    ext4_image(&out_img, OUT_BYTES, "osimage-out", None);

    let cmdline = format!(
        "root={root} ro console=ttyS0,115200 modprobe.blacklist=floppy osimage.e2e.capture=1"
    );
    let name = format!(
        "guest-capture-{}",
        source
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let boot = |attempt: &str| {
        let drive = |file, snapshot| Drive {
            file,
            bus: vm::Bus::Virtio,
            snapshot,
        };
        let mut disks: Vec<Drive> = sources.iter().map(|f| drive(*f, true)).collect();
        disks.extend([drive(&tools_img, true), drive(&out_img, false)]);
        vm::boot_direct_typing(
            &Boot {
                name: format!("{name}{attempt}"),
                firmware: Firmware::Bios,
                cdrom: None,
                disks,
                timeout: CAPTURE_TIMEOUT,
                stop_on: &[CAPTURED],
                // the output disk is unmounted before the line: the power-off is only waited for
                grace: Duration::from_secs(60),
            },
            DirectKernel {
                kernel: &kernel,
                initrd: &initrd,
                cmdline: &cmdline,
            },
            typed,
        )
    };
    let mut o = boot("");
    if let Some(why) = vm_ended_unasked(&o) {
        // The source disks are snapshots: a second boot starts from the same state. Once
        // only, and said: a guest that fails this way twice is the failure reported.
        eprintln!(
            "e2e: {name}: the capture VM ended without the guest asking ({why}); booting it \
             once more. The first run:\n{}",
            o.describe()
        );
        o = boot("-again");
    }
    let done = o.console.lines().find_map(|l| {
        l.split_once(CAPTURED)
            .map(|(_, rest)| rest.trim().to_string())
    });
    let Some(done) = done else {
        return Err(format!(
            "the source system never reported `{CAPTURED}` (booted with {cmdline}): {}",
            o.describe()
        ));
    };
    let field = |k: &str| {
        done.split_whitespace()
            .find_map(|w| w.strip_prefix(k).map(str::to_string))
    };
    let rc: i32 = field("rc=").and_then(|v| v.parse().ok()).ok_or_else(|| {
        format!(
            "the guest's capture harness failed: `{CAPTURED} {done}`\n{}",
            o.describe()
        )
    })?;
    let capture_seconds = field("seconds=").and_then(|v| v.parse().ok()).unwrap_or(0);
    let booted = o
        .console
        .lines()
        .find(|l| l.contains(&marker))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();

    let iso = work.join("system.iso");
    let (stdout, stderr) = {
        let a = Attached::new(&out_img, true);
        let m = Mount::ext4_ro(&a.dev, &work.join("out"));
        let read = |n: &str| std::fs::read_to_string(m.dir.join(n)).unwrap_or_default();
        let written = m.dir.join("system.iso");
        if written.is_file() {
            run(Command::new("cp")
                .arg("--sparse=always")
                .arg(&written)
                .arg(&iso));
        }
        (read("capture.stdout"), read("capture.stderr"))
    };
    let _ = std::fs::remove_file(&out_img);
    Ok(CapturedIso {
        iso,
        rc,
        stdout,
        stderr,
        console: o.console,
        booted,
        capture_seconds,
        vm_elapsed: o.elapsed,
    })
}

/// Why a capture VM that never printed `CAPTURED` ended by no doing of the guest, if so:
/// QEMU's own failure (`Outcome::vm_failure`), or an exit with no power-off by the guest's
/// kernel on the console (a reset under `-no-reboot`). Stop 36's red CI looked like one, but
/// was most likely two capture VMs of one name (the plain and the `--snapshot` capture of the
/// LVM source) reading each other's console log, which `vm::run_unlocked` now keeps apart.
/// `None`: the guest's own doing (a power-off, a stall, the timeout), reported as it is.
fn vm_ended_unasked(o: &vm::Outcome) -> Option<String> {
    if o.console.contains(CAPTURED) {
        return None;
    }
    if let Some(why) = o.vm_failure() {
        return Some(why);
    }
    let powered_off = o.console.contains("reboot: Power down");
    match o.exited() {
        Some(s) if !powered_off => Some(format!(
            "QEMU exited ({s}) with no power-off on the guest's console"
        )),
        _ => None,
    }
}

/// One source's in-guest capture, made once per test process and shared by its tests
/// (`cell` holds it): `capture_in_guest_of(disks, typed, [], …)` in a work directory kept until
/// the process exits; the phase times and capture's standard error printed under `label`.
pub fn captured_once<'a>(
    cell: &'a OnceLock<Result<CapturedIso, String>>,
    label: &str,
    disks: &[&Path],
    typed: &[Typed],
) -> &'a CapturedIso {
    cell.get_or_init(|| {
        let work = crate::common::scratch().keep();
        crate::common::remove_at_exit(&work);
        let c = capture_in_guest_of(disks, typed, &[], &work)?;
        super::phase_time(
            &format!("{label}: capture / -o system.iso inside the source system"),
            Duration::from_secs(c.capture_seconds),
        );
        super::phase_time(
            &format!("{label}: in-guest capture VM (boot + capture + power-off)"),
            c.vm_elapsed,
        );
        for l in c.stderr.lines() {
            eprintln!("e2e: {label} capture stderr: {l}");
        }
        if let Ok(m) = std::fs::metadata(&c.iso) {
            eprintln!(
                "e2e: {label} system.iso {:.1} MiB",
                m.len() as f64 / 1048576.0
            );
        }
        Ok(c)
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("{e}"))
}
