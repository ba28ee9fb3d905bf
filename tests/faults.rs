//! Faults during capture (docs/SECURITY.md "Output and faults"): a full disk, an unreadable
//! source file and a killed process never leave an output that looks complete, and each
//! failure says what and where.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Run, osimage_with};

/// Names in `dir` (not recursive).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_capture_leaves_no_output_and_says_so() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    let dir = common::scratch();
    let root = dir.path().join("src");
    std::fs::create_dir_all(&root).expect("mkdir");
    // Incompressible, so the image needs about 3 MiB; the output filesystem holds 1 MiB.
    std::fs::write(
        root.join("big.bin"),
        common::fixture::Rng::new(1).bytes(3 << 20),
    )
    .expect("write");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&out)
        .status()
        .expect("mount");
    assert!(st.success(), "mount tmpfs");
    let _m = Mount(out.clone());
    let image = out.join("system.oimg");
    let r = common::osimage([
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
    ])
    .fails();
    assert!(
        r.stderr.contains("No space left on device"),
        "{}",
        r.describe()
    );
    assert!(
        r.stderr.contains(&out.display().to_string()),
        "names where: {}",
        r.describe()
    );
    assert_eq!(names(&out), Vec::<String>::new(), "nothing left behind");
}

#[test]
fn an_unreadable_source_file_is_named_or_skipped_with_keep_going() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    // Under /tmp so the unprivileged user can reach it.
    let dir = tempfile::Builder::new()
        .prefix("osimage-faults-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let root = dir.path().join("src");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(root.join("readable.txt"), b"ok\n").expect("write");
    let secret = root.join("shadow");
    std::fs::write(&secret, b"root:*:\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let as_nobody = |args: &[&std::ffi::OsStr]| -> Run {
        osimage_with(args.iter().copied(), |cmd| {
            cmd.uid(65534).gid(65534);
        })
    };
    let image = dir.path().join("a.oimg");
    let r = as_nobody(&[
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
    ])
    .fails();
    assert!(
        r.stderr.contains(&secret.display().to_string()),
        "{}",
        r.describe()
    );
    assert!(!image.exists());
    let r = as_nobody(&[
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
        "--keep-going".as_ref(),
    ])
    // issue #24: finished with skipped files has its own exit status, 3, never 0
    ;
    assert_eq!(r.code, 3, "{}", r.describe());
    assert!(
        r.stderr
            .contains(&format!("osimage: skipped {}", secret.display())),
        "{}",
        r.describe()
    );
    assert!(
        r.stderr
            .contains("finished with 1 skipped file (listed above)"),
        "{}",
        r.describe()
    );
    assert!(image.exists());

    // A scheduled run logs the skipped file as a warning, still makes the image latest, and
    // exits 3 (the unit shows failed), not a silent success.
    let dest = dir.path().join("dest");
    let r = as_nobody(&[
        "schedule".as_ref(),
        "run".as_ref(),
        "nightly".as_ref(),
        "--dest".as_ref(),
        dest.as_os_str(),
        "--keep".as_ref(),
        "2".as_ref(),
        "--format".as_ref(),
        "oimg".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--keep-going".as_ref(),
    ]);
    assert_eq!(r.code, 3, "{}", r.describe());
    let log = r.stdout_str();
    assert!(
        log.contains(&format!("warning: skipped {}: ", secret.display()))
            && log.contains("warning: finished with 1 skipped file (listed above)"),
        "{}",
        r.describe()
    );
    assert!(dest.join("latest.oimg").exists(), "{}", r.describe());
}

/// `DIR/src`: eight 4 MiB text files, enough for a capture to be caught half-way.
fn slow_tree(dir: &Path) -> PathBuf {
    let root = dir.join("src");
    std::fs::create_dir_all(&root).expect("mkdir");
    for i in 0..8 {
        std::fs::write(
            root.join(format!("t{i}.txt")),
            common::fixture::text(i, 4 << 20),
        )
        .expect("write");
    }
    root
}

#[test]
fn a_killed_capture_leaves_only_a_temporary_name() {
    let _disks = common::loop_devices(module_path!());
    let dir = common::scratch();
    let root = slow_tree(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let image = out.join("system.oimg");
    // Level 19 on one thread: slow enough that the kill lands while the packs are written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args(["capture", "-q", "--level", "19", "--threads", "1"])
        .arg(&root)
        .arg("-o")
        .arg(&image)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut seen = false;
    for _ in 0..6000 {
        if names(&out)
            .iter()
            .any(|n| n.starts_with(".osimage-partial-"))
        {
            seen = true;
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert!(seen, "the capture writes under a temporary name first");
    assert!(
        status.code().is_none(),
        "killed before it finished: {status:?}"
    );
    assert!(!image.exists(), "a killed capture left OUTPUT");
    let left = names(&out);
    assert!(
        left.iter().all(|n| n.starts_with(".osimage-partial-")),
        "only temporary names: {left:?}"
    );

    // The next capture into the same folder removes what the killed one left (its process is
    // gone, nobody holds its lock), and says so; a name whose process is alive (this test's)
    // is not touched.
    let alive = out.join(format!(".osimage-partial-{}-live", std::process::id()));
    std::fs::write(&alive, b"not stale").expect("write");
    let again = common::osimage([
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        out.join("next.oimg").as_os_str(),
    ])
    .ok();
    for stale in &left {
        assert!(
            again.stderr.contains(&format!(
                "removed {}: left by an interrupted capture",
                out.join(stale).display()
            )),
            "{}",
            again.describe()
        );
    }
    let mut expected = vec![alive.file_name().unwrap().to_string_lossy().into_owned()];
    expected.push("next.oimg".into());
    expected.sort();
    assert_eq!(names(&out), expected);
}

/// Issue #24 item 2: SIGINT, SIGTERM and SIGHUP during a capture remove its temporary image
/// (and an ISO's work folder) before it exits with 128 + the signal.
#[test]
fn a_signal_removes_the_temporary_files_and_exits_128_plus_it() {
    let _disks = common::loop_devices(module_path!());
    let dir = common::scratch();
    let root = slow_tree(dir.path());
    interrupt(
        &root,
        &[],
        &dir.path().join("int"),
        "system.oimg",
        libc::SIGINT,
    );
    interrupt(
        &root,
        &[],
        &dir.path().join("hup"),
        "system.oimg",
        libc::SIGHUP,
    );
    // An ISO: the work folder of the boot side too (the payload of a real system's /usr
    // takes long enough at level 19 on one thread).
    common::require_root();
    common::kernel::need_iso_capture_tools();
    let (x, version) = common::kernel::kernel_package();
    let staged = common::kernel::staging_root(&x, &version);
    interrupt(
        &staged,
        &[".osimage-work-"],
        &dir.path().join("term"),
        "system.iso",
        libc::SIGTERM,
    );
}

/// Starts a capture of `root` into `out/name`, waits until its temporary image (and every
/// name starting with one of `also`) exists, sends `sig`, and checks the exit status and that
/// `out` is empty again.
fn interrupt(root: &Path, also: &[&str], out: &Path, name: &str, sig: libc::c_int) {
    std::fs::create_dir_all(out).expect("mkdir");
    let image = out.join(name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args(["capture", "-q", "--level", "19", "--threads", "1"])
        .arg(root)
        .arg("-o")
        .arg(&image)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut seen = false;
    for _ in 0..6000 {
        let now = names(out);
        let has = |p: &str| now.iter().any(|n| n.starts_with(p));
        if has(".osimage-partial-") && also.iter().all(|p| has(p)) {
            seen = true;
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        seen,
        "the capture made its temporary names: {:?}",
        names(out)
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
    let done = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(
        done.status.code(),
        Some(128 + sig),
        "exit status after signal {sig}: {stderr}"
    );
    assert!(
        stderr.contains(&format!("interrupted (signal {sig}): removing")),
        "{stderr}"
    );
    assert_eq!(
        names(out),
        Vec::<String>::new(),
        "left behind after signal {sig}"
    );
}

/// Issue #24 item 2: a capture whose reader goes away mid-way (`osimage capture … 2>&1 |
/// head`) is not killed by SIGPIPE with its temporary files in place: the writes fail quietly,
/// the capture finishes (the ISO complete and sound), removes its temporary names, and then
/// ends as the Unix convention says, by SIGPIPE.
#[test]
fn a_closed_pipe_leaves_no_temporary_files() {
    use std::os::unix::process::ExitStatusExt;
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    common::kernel::need_iso_capture_tools();
    let (x, version) = common::kernel::kernel_package();
    let staged = common::kernel::staging_root(&x, &version);
    let dir = common::scratch();
    let iso = dir.path().join("system.iso");
    let mut child = Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args(["capture", "-v"])
        .arg(&staged)
        .args([
            "--exclude",
            "/usr/lib",
            "--exclude",
            "/usr/bin",
            "--exclude",
            "/usr/sbin",
        ])
        .arg("-o")
        .arg(&iso)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader goes away once the capture has made its temporary names.
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut err, &mut first).expect("first line");
    let mut seen = false;
    for _ in 0..6000 {
        if names(dir.path())
            .iter()
            .any(|n| n.starts_with(".osimage-work-"))
        {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(seen, "the capture made its work folder: {first}");
    drop(err);
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
    let left: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with(".osimage-"))
        .collect();
    assert!(left.is_empty(), "temporary names left: {left:?}");
    common::osimage(["verify".as_ref(), iso.as_os_str()]).ok();
}
