//! The command line's contract: exit codes (0 ok, 1 failure naming what and where, 2 usage),
//! never a panic, and the capture behaviours DESIGN.md promises around the output file.

use crate::common;

use common::osimage;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn small_tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("src");
    std::fs::create_dir_all(root.join("sub")).expect("mkdir");
    std::fs::write(root.join("a.txt"), b"a\n").expect("write");
    std::fs::write(root.join("sub/b.txt"), b"b\n").expect("write");
    root
}

fn listing(image: &Path) -> String {
    osimage([OsStr::new("list"), image.as_os_str()])
        .ok()
        .stdout_str()
}

#[test]
fn usage_errors_exit_2() {
    osimage::<[&str; 0], &str>([]).usage_error();
    osimage(["no-such-subcommand"]).usage_error();
    osimage(["capture"]).usage_error();
    osimage(["capture", "/nonexistent-root"]).usage_error(); // no -o
    osimage(["capture", "/x", "-o", "/y.oimg", "--level", "0"]).usage_error();
    osimage(["capture", "/x", "-o", "/y.oimg", "--no-such-flag"]).usage_error();
    osimage(["extract", "/x.oimg"]).usage_error(); // no -C
    osimage(["list"]).usage_error();
    osimage(["verify"]).usage_error();
}

/// Issue #24 item 8: the values osimage checks itself are usage errors too (exit 2), with
/// the message naming the value.
#[test]
fn values_osimage_checks_itself_exit_2() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let img = dir.path().join("x.oimg");
    common::capture(&root, &img, &[]);
    let (img_s, root_s) = (img.to_str().expect("utf-8"), root.to_str().expect("utf-8"));
    let sys = dir.path().join("system");
    std::fs::create_dir_all(sys.join("run/systemd/system")).expect("mkdir");
    let sys_s = sys.to_str().expect("utf-8");
    let dest = dir.path().join("dest");
    let dest_s = dest.to_str().expect("utf-8");
    let out = dir.path().join("y.oimg");
    let out_s = out.to_str().expect("utf-8");
    let to = dir.path().join("to");
    let to_s = to.to_str().expect("utf-8");
    let schedule = |every: &str, name: &str| {
        osimage([
            "schedule",
            "install",
            "--every",
            every,
            "--name",
            name,
            "--dest",
            dest_s,
            "--keep",
            "1",
            "--system-root",
            sys_s,
        ])
    };
    schedule("fortnightly", "golden")
        .usage_error()
        .mentions(b"fortnightly");
    schedule("daily", "bad.name")
        .usage_error()
        .mentions(b"bad.name");
    osimage(["schedule", "remove", "bad.name", "--system-root", sys_s])
        .usage_error()
        .mentions(b"bad.name");
    osimage(["restore", img_s, "--map", "nonsense"])
        .usage_error()
        .mentions(b"nonsense");
    osimage(["restore", img_s, "--to", to_s, "--hostname", "bad name!"])
        .usage_error()
        .mentions(b"bad name!");
    osimage(["capture", root_s, "-o", out_s, "--exclude", "["])
        .usage_error()
        .mentions(b"invalid exclude pattern");
    assert!(!out.exists(), "no output after a usage error");
    // A failure that is not about a malformed value stays exit 1.
    osimage([
        "restore",
        img_s,
        "--to",
        to_s,
        "--overlay",
        "/nonexistent-overlay",
    ])
    .fails();
}

#[test]
fn help_and_version_exit_0() {
    let help = osimage(["--help"]).ok().stdout_str();
    for sub in ["capture", "extract", "list", "info", "verify"] {
        assert!(help.contains(sub), "--help does not mention {sub}:\n{help}");
    }
    assert!(osimage(["--version"]).ok().stdout_str().contains("osimage"));
    osimage(["capture", "--help"]).ok();
}

#[test]
fn capture_of_a_missing_root_names_it() {
    let dir = common::scratch();
    let root = dir.path().join("no-such-root");
    let out = dir.path().join("x.oimg");
    osimage([
        OsStr::new("capture"),
        root.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
    .fails()
    .mentions(root.as_os_str().as_encoded_bytes());
    assert!(!out.exists(), "no output after a failed capture");
}

#[test]
fn capture_into_a_missing_directory_names_it() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let out = dir.path().join("no-such-dir/x.oimg");
    osimage([
        OsStr::new("capture"),
        root.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
    .fails()
    .mentions(b"no-such-dir");
}

#[test]
fn capture_refuses_to_overwrite_without_force() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let out = dir.path().join("x.oimg");
    std::fs::write(&out, b"precious").expect("write");
    osimage([
        OsStr::new("capture"),
        root.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
    .fails()
    .mentions(out.as_os_str().as_encoded_bytes());
    assert_eq!(
        std::fs::read(&out).expect("read"),
        b"precious",
        "untouched without --force"
    );
    common::capture(&root, &out, &["--force"]);
    osimage([OsStr::new("verify"), out.as_os_str()]).ok();
}

#[test]
fn capture_output_is_private_and_quiet_with_q() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let out = dir.path().join("x.oimg");
    let run = common::capture(&root, &out, &["-q"]);
    assert!(
        run.stdout.is_empty() && run.stderr.is_empty(),
        "-q prints nothing: {run:?}"
    );
    let mode = std::fs::metadata(&out).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o600,
        "the image holds every secret of the system: mode 0600"
    );
}

#[test]
fn capture_leaves_out_its_own_output_inside_root() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let out = root.join("self.oimg");
    common::capture(&root, &out, &[]);
    let list = listing(&out);
    assert!(
        !list.contains("self.oimg"),
        "the output captured itself:\n{list}"
    );
    assert!(list.contains("/sub/b.txt"), "{list}");
    // Capturing again over it (with --force) also leaves out the old image.
    common::capture(&root, &out, &["--force"]);
    assert!(!listing(&out).contains("self.oimg"));
}

/// Issue #24 item 1: an image never holds another. `--base`, an image under any name, and an
/// ISO written by osimage's ISO writer are left out, and the capture says so.
#[test]
fn capture_never_nests_images() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    std::fs::write(root.join("big.txt"), vec![b'x'; 64 * 1024]).expect("write");
    let base = root.join("system.oimg");
    common::capture(&root, &base, &[]);
    std::fs::copy(&base, root.join("sub/renamed.bin")).expect("copy");
    let iso_tree = dir.path().join("iso-tree");
    std::fs::create_dir_all(&iso_tree).expect("mkdir");
    std::fs::write(iso_tree.join("f.txt"), b"f\n").expect("write");
    let spec = common::iso::spec_from_tree(&iso_tree, "NESTED");
    osimage::iso::write_iso(&spec, &root.join("disc.img")).expect("write_iso");

    let next = root.join("next.oimg");
    let base_arg = base.to_str().expect("utf-8");
    let run = common::capture(&root, &next, &["--base", base_arg]);
    let said = run.stdout_str() + &run.stderr;
    let list = listing(&next);
    for name in ["system.oimg", "renamed.bin", "disc.img", "next.oimg"] {
        assert!(!list.contains(name), "{name} was captured:\n{list}");
    }
    for name in ["system.oimg", "renamed.bin", "disc.img"] {
        assert!(
            said.lines()
                .any(|l| l.starts_with("left out") && l.contains(name)),
            "the capture does not say it left out {name}:\n{said}"
        );
    }
    assert!(
        list.contains("/big.txt") && list.contains("/sub/b.txt"),
        "{list}"
    );
    assert!(
        !said.contains(".osimage-partial-"),
        "temporary names are not news:\n{said}"
    );
}

/// Issue #24 item 11: `-o t.ISO` is an ISO like `-o t.iso` (here it needs a kernel the tree
/// lacks, instead of silently writing a payload-only file); `-o -` and `-o DIR --force` are
/// refused up front with a message saying why.
#[test]
fn capture_output_names_are_checked_up_front() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let capture_to = |out: &str, extra: &[&str]| {
        let mut args = vec!["capture", root.to_str().expect("utf-8"), "-o", out];
        args.extend_from_slice(extra);
        common::osimage_with(args, |c| {
            c.current_dir(dir.path());
        })
    };
    capture_to("t.ISO", &[]).fails().mentions(b"kernel");
    assert!(
        !dir.path().join("t.ISO").exists(),
        "t.ISO was written as a payload-only image"
    );
    capture_to("-", &[])
        .usage_error()
        .mentions(b"standard output");
    assert!(!dir.path().join("-").exists(), "a file named - was written");
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    capture_to("existing", &["--force"])
        .fails()
        .mentions(b"is a directory");
    assert!(common::is_empty_dir(&existing), "the directory was touched");
}

#[test]
fn extract_refuses_a_non_empty_directory() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let image = dir.path().join("x.oimg");
    common::capture(&root, &image, &[]);
    let out = dir.path().join("busy");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("already-here"), b"x").expect("write");
    common::extract(&image, &out, &[])
        .fails()
        .mentions(out.as_os_str().as_encoded_bytes());
    let names: Vec<_> = std::fs::read_dir(&out).expect("read_dir").collect();
    assert_eq!(names.len(), 1, "extract wrote into a non-empty directory");
}

#[test]
fn extract_of_a_path_not_in_the_image_names_it() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let image = dir.path().join("x.oimg");
    common::capture(&root, &image, &[]);
    let out = dir.path().join("out");
    common::extract(&image, &out, &[b"sub/nope.txt"])
        .fails()
        .mentions(b"sub/nope.txt");
}

#[test]
fn info_prints_a_table_and_json() {
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let image = dir.path().join("x.oimg");
    common::capture(&root, &image, &[]);
    let table = osimage([OsStr::new("info"), image.as_os_str()])
        .ok()
        .stdout_str();
    assert!(!table.is_empty());
    let info = common::info_json(&image);
    assert_eq!(common::counter(&info, "files"), 2);
    assert_eq!(common::counter(&info, "directories"), 2);
}

#[test]
fn compression_levels_change_size_not_content() {
    let dir = common::scratch();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("text"), common::fixture::text(9, 2 << 20)).expect("write");
    let (fast, small) = (dir.path().join("l1.oimg"), dir.path().join("l19.oimg"));
    common::capture(&root, &fast, &["--level", "1"]);
    common::capture(&root, &small, &["--level", "19"]);
    let stored = |i: &Path| common::counter(&common::info_json(i), "stored_bytes");
    let (s1, s19) = (stored(&fast), stored(&small));
    // Strictly smaller: equal sizes would mean the level was not used at all.
    assert!(s19 < s1, "level 19 stored {s19} bytes, level 1 {s1}");
    for (image, name) in [(&fast, "x1"), (&small, "x19")] {
        let out = dir.path().join(name);
        common::extract(image, &out, &[]).ok();
        let diffs = common::compare::diff_trees(&root, &out, Default::default());
        common::compare::assert_no_differences(&diffs, name);
    }
}

/// A reader that goes away (`osimage completions bash | head -1`, `osimage list IMAGE |
/// less` quit early) stops osimage quietly, as it stops any Unix tool: no panic, no error
/// message. Here the reading end is closed before osimage writes anything.
#[test]
fn a_closed_stdout_pipe_stops_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = common::scratch();
    let root = small_tree(dir.path());
    let image = dir.path().join("small.oimg");
    common::capture(&root, &image, &[]);
    let commands: [Vec<&OsStr>; 2] = [
        vec!["completions".as_ref(), "bash".as_ref()],
        vec!["list".as_ref(), image.as_os_str()],
    ];
    for args in commands {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_osimage"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("osimage starts");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("osimage ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("rror"),
            "{args:?}: stderr: {stderr}"
        );
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

/// An image of a small system tree with a hostname, hosts file and machine id, for
/// `restore --to DIR`.
fn system_image(dir: &Path) -> std::path::PathBuf {
    let root = small_tree(dir);
    std::fs::create_dir(root.join("etc")).expect("mkdir etc");
    std::fs::write(root.join("etc/hostname"), b"golden\n").expect("write");
    std::fs::write(root.join("etc/hosts"), b"127.0.1.1\tgolden\n").expect("write");
    std::fs::write(
        root.join("etc/machine-id"),
        b"0123456789abcdef0123456789abcdef\n",
    )
    .expect("write");
    let image = dir.join("system.oimg");
    common::capture(&root, &image, &[]);
    image
}

fn restore_to(image: &Path, to: &Path, extra: &[&str]) -> common::Run {
    let mut args: Vec<&OsStr> = vec!["restore".as_ref(), image.as_os_str()];
    args.extend(["--to".as_ref(), to.as_os_str()]);
    args.extend(extra.iter().map(OsStr::new));
    osimage(args)
}

#[test]
fn restore_to_dir_applies_hostname() {
    let dir = common::scratch();
    let image = system_image(dir.path());
    let out = dir.path().join("out");
    let run = restore_to(&image, &out, &["--hostname", "web-7"]).ok();
    let read = |p: &str| std::fs::read_to_string(out.join(p)).expect("read");
    assert_eq!(read("etc/hostname"), "web-7\n", "{}", run.describe());
    let hosts = read("etc/hosts");
    assert!(
        hosts.contains("web-7") && !hosts.contains("golden"),
        "{hosts}"
    );
    assert!(
        run.stdout_str().contains("/etc/hostname"),
        "{}",
        run.describe()
    );
    assert_eq!(read("sub/b.txt"), "b\n", "the files are restored too");
    // a bad name is refused before anything is written
    let bad = dir.path().join("bad");
    restore_to(&image, &bad, &["--hostname", "no_such_name"])
        .usage_error()
        .mentions(b"no_such_name");
    assert!(
        !bad.exists(),
        "restore wrote before the hostname was checked"
    );
}

#[test]
fn restore_to_dir_applies_generalize_and_overlay() {
    let dir = common::scratch();
    let image = system_image(dir.path());
    let overlay = dir.path().join("overlay");
    std::fs::create_dir_all(overlay.join("etc/network")).expect("mkdir");
    std::fs::write(overlay.join("etc/network/interfaces"), b"auto eth0\n").expect("write");
    let out = dir.path().join("out");
    let run = restore_to(
        &image,
        &out,
        &[
            "--generalize",
            "--overlay",
            overlay.to_str().expect("utf-8"),
        ],
    )
    .ok();
    let read = |p: &str| std::fs::read_to_string(out.join(p)).expect("read");
    assert_eq!(
        read("etc/machine-id"),
        "uninitialized\n",
        "{}",
        run.describe()
    );
    assert_eq!(
        read("etc/network/interfaces"),
        "auto eth0\n",
        "{}",
        run.describe()
    );
    assert_eq!(read("etc/hostname"), "golden\n", "no --hostname: kept");
    let stdout = run.stdout_str();
    assert!(
        stdout.contains("generalize:"),
        "the plan is shown: {stdout}"
    );
    assert!(stdout.contains("overlay: "), "the plan is shown: {stdout}");
    // an overlay that is not a directory is refused before anything is written
    let bad = dir.path().join("bad");
    let missing = dir.path().join("no-such-overlay");
    restore_to(
        &image,
        &bad,
        &["--overlay", missing.to_str().expect("utf-8")],
    )
    .fails()
    .mentions(b"no-such-overlay: not a directory");
    assert!(
        !bad.exists(),
        "restore wrote before the overlay was checked"
    );
}

#[test]
fn restore_to_dir_prints_json() {
    let dir = common::scratch();
    let image = system_image(dir.path());
    let out = dir.path().join("out");
    let dry = restore_to(&image, &out, &["--dry-run", "--json", "--hostname", "h1"]).ok();
    let doc: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("JSON plan");
    assert_eq!(doc["mode"], "directory", "{doc}");
    assert_eq!(doc["report"], serde_json::Value::Null, "{doc}");
    let plan = &doc["plan"];
    assert_eq!(plan["hostname"], "h1", "{}", dry.describe());
    assert!(plan["entries"].as_u64().is_some_and(|n| n > 0), "{plan}");
    assert!(!out.exists(), "a dry run writes nothing");
    let run = restore_to(&image, &out, &["--json"]).ok();
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON report");
    let report = &doc["report"];
    assert_eq!(report["files"], 5, "{}", run.describe());
    assert_eq!(report["warnings"], 0, "{}", run.describe());
}

#[test]
fn restore_to_dir_refuses_new_uuids() {
    let dir = common::scratch();
    let image = system_image(dir.path());
    let out = dir.path().join("out");
    for (option, extra) in [
        ("--new-uuids", None),
        ("--nvram", None),
        ("--default-layout", None),
        ("--force", None),
        ("--initramfs-driver", Some("nvme")),
    ] {
        let mut args = vec![option];
        args.extend(extra);
        restore_to(&image, &out, &args)
            .usage_error()
            .mentions(option.as_bytes());
        assert!(!out.exists(), "{option}: nothing is written");
    }
}
