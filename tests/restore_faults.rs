//! Faults during a restore (issue #7, docs/RESTORE.md "Faults and interrupted restores"): a
//! target that fills up stops the restore with an error naming where, never a success line;
//! a restore killed half way through unpacking leaves nothing mounted or attached, and the
//! same command with `--force` then restores the image exactly.
//!
//! Needs root, losetup, partx, sfdisk, mkfs.ext4 and mount (loop devices and tmpfs, no VM).

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::compare::{self, Options, Snapshot};
use common::loopdev::{Loop, MIB, Mounted, run, run_stdin, sparse};

const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const DISK_BYTES: u64 = 192 * MIB;
/// Incompressible file data in the image: enough that unpacking it takes a while on any
/// machine, and more than the small filesystems below hold.
const FILES: usize = 48;
const FILE_BYTES: usize = 2 << 20;

struct Source {
    image: PathBuf,
    /// The captured root without /var/log (a restore writes its log there).
    root: Snapshot,
}

fn source() -> &'static Source {
    static S: OnceLock<Source> = OnceLock::new();
    S.get_or_init(build_source)
}

/// One GPT partition holding an ext4 root with `FILES` random files, captured.
fn build_source() -> Source {
    common::require_root();
    common::need_disk_tools(&[("mkfs.ext4", "e2fsprogs")]);
    let dir = common::scratch().keep();
    common::remove_at_exit(&dir);
    let disk = dir.join("source.img");
    sparse(&disk, DISK_BYTES);
    run_stdin(
        "sfdisk",
        &["--no-reread", "--no-tell-kernel", "-q", path_str(&disk)],
        &format!("label: gpt\nstart=2048, type={LINUX_TYPE}, name=root\n"),
    );
    let lo = Loop::attach(&disk);
    let part = lo.part(1);
    run("mkfs.ext4", &["-q", "-F", "-L", "faultroot", &part]);
    let mnt = dir.join("root");
    let m = Mounted::new(&part, &mnt, &[]);
    let mut rng = common::fixture::Rng::new(7);
    for d in ["etc", "srv/data", "var/log"] {
        std::fs::create_dir_all(mnt.join(d)).expect("mkdir");
    }
    std::fs::write(
        mnt.join("etc/fstab"),
        "LABEL=faultroot / ext4 errors=remount-ro 0 1\n",
    )
    .expect("write");
    std::fs::write(mnt.join("etc/hostname"), "faults\n").expect("write");
    for i in 0..FILES {
        std::fs::write(
            mnt.join(format!("srv/data/file-{i:03}.bin")),
            rng.bytes(FILE_BYTES),
        )
        .expect("write");
    }
    let image = dir.join("system.oimg");
    common::capture(&mnt, &image, &[]);
    let root = without_restore_log(&compare::snapshot(&mnt).expect("snapshot"));
    drop(m);
    drop(lo);
    Source { image, root }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn without_restore_log(s: &Snapshot) -> Snapshot {
    s.iter()
        .filter(|(p, _)| !compare::is_under(p, b"var/log"))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect()
}

/// A tmpfs of `size` at `dir`, unmounted on drop.
fn tmpfs(dir: &Path, size: &str) -> Mounted {
    std::fs::create_dir_all(dir).expect("mkdir");
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            path_str(dir),
        ],
    );
    Mounted(dir.to_path_buf())
}

/// The loop devices backed by `file` (from sysfs).
fn loops_backed_by(file: &Path) -> Vec<String> {
    let want = std::fs::canonicalize(file).expect("canonicalize");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
    {
        let b = e.path().join("loop/backing_file");
        if let Ok(text) = std::fs::read_to_string(&b)
            && Path::new(text.trim_end()) == want
        {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// Mount points in the initial mount namespace whose source is a partition of `loops`.
fn mounts_of(loops: &[String]) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| loops.iter().any(|n| l.contains(&format!("/dev/{n}"))))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_full_directory_target_fails_naming_the_path_and_never_claims_success() {
    let _disks = common::loop_devices(module_path!());
    let s = source();
    let dir = common::scratch();
    let to = dir.path().join("small");
    let _m = tmpfs(&to, "16m");
    let r = common::osimage([
        "restore".as_ref(),
        s.image.as_os_str(),
        "--to".as_ref(),
        to.as_os_str(),
    ])
    .fails();
    assert!(
        r.stderr.contains("No space left on device"),
        "{}",
        r.describe()
    );
    assert!(
        r.stderr.contains(&to.display().to_string()),
        "the error names where: {}",
        r.describe()
    );
    assert!(
        !r.stdout_str().contains("written"),
        "no success summary: {}",
        r.describe()
    );
}

#[test]
fn a_disk_image_whose_filesystem_fills_up_fails_and_never_claims_success() {
    let _disks = common::loop_devices(module_path!());
    let s = source();
    let dir = common::scratch();
    let small = dir.path().join("small");
    let _m = tmpfs(&small, "40m");
    let disk = small.join("disk.img");
    sparse(&disk, DISK_BYTES);
    let r = common::osimage([
        "restore".as_ref(),
        s.image.as_os_str(),
        "--target".as_ref(),
        disk.as_os_str(),
    ])
    .fails();
    assert!(
        r.stderr.contains("Input/output error") || r.stderr.contains("No space left on device"),
        "the write error is reported: {}",
        r.describe()
    );
    assert!(
        r.stderr
            .contains(&format!("target {}: writing / (ext4 on ", disk.display())),
        "the error names the target, the filesystem and its device: {}",
        r.describe()
    );
    let out = format!("{}{}", r.stdout_str(), r.stderr);
    assert!(
        !out.contains("restored ") && !out.contains("restore finished"),
        "nothing claims success: {}",
        r.describe()
    );
    assert_eq!(loops_backed_by(&disk), Vec::<String>::new(), "loop left");
}

#[test]
fn a_restore_killed_while_unpacking_reruns_with_force_and_matches_the_image() {
    let _disks = common::loop_devices(module_path!());
    let s = source();
    let dir = common::scratch();
    let disk = dir.path().join("disk.img");
    sparse(&disk, DISK_BYTES);
    let mut child = Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args([
            "-v".as_ref(),
            "restore".as_ref(),
            s.image.as_os_str(),
            "--target".as_ref(),
        ])
        .arg(&disk)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn osimage restore");
    let mut seen = Vec::new();
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        let unpacking = line.contains("phase 6/9");
        seen.push(line);
        if unpacking {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("phase 6/9")),
        "the restore never reached unpacking: {seen:?}"
    );
    child.kill().expect("kill -9");
    let status = child.wait().expect("wait");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed while unpacking, not finished before: {seen:?}"
    );

    // Nothing of the killed restore stays: its mounts were private to it, and its loop device
    // detaches itself once they are gone (the kernel tears the namespace down asynchronously).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !loops_backed_by(&disk).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = loops_backed_by(&disk);
    assert_eq!(left, Vec::<String>::new(), "{:?}", mounts_of(&left));

    // The half-restored disk now holds a table and a filesystem: without --force it is
    // refused, with it the restore starts over and completes.
    let r = common::osimage([
        "restore".as_ref(),
        s.image.as_os_str(),
        "--target".as_ref(),
        disk.as_os_str(),
    ])
    .fails();
    assert!(r.stderr.contains("--force"), "{}", r.describe());
    let r = common::osimage([
        "restore".as_ref(),
        s.image.as_os_str(),
        "--target".as_ref(),
        disk.as_os_str(),
        "--force".as_ref(),
    ])
    .ok();
    assert!(r.stdout_str().contains("restored "), "{}", r.describe());

    let lo = Loop::attach(&disk);
    let mnt = dir.path().join("restored");
    let m = Mounted::new(&lo.part(1), &mnt, &["-o", "ro"]);
    let got = without_restore_log(&compare::snapshot(&mnt).expect("snapshot"));
    let diffs = compare::compare(&s.root, &got, Options::default());
    compare::assert_no_differences(&diffs, "re-run restore vs the captured root");
    let log = std::fs::read_to_string(mnt.join("var/log/osimage-restore.log")).expect("log");
    assert!(log.contains("restored "), "{log}");
    drop(m);
    drop(lo);
}

#[test]
fn a_file_target_still_attached_to_a_loop_device_is_refused() {
    let _disks = common::loop_devices(module_path!());
    let s = source();
    let dir = common::scratch();
    let disk = dir.path().join("disk.img");
    sparse(&disk, DISK_BYTES);
    let lo = Loop::attach(&disk);
    let r = common::osimage([
        "restore".as_ref(),
        s.image.as_os_str(),
        "--target".as_ref(),
        disk.as_os_str(),
        "--force".as_ref(),
    ])
    .fails();
    assert!(
        r.stderr
            .contains(&format!("already attached to {}", lo.dev)),
        "{}",
        r.describe()
    );
    drop(lo);
}
