//! Scheduled refreshes (issue #6, docs/SCHEDULE.md): `schedule install` writes units that
//! `systemd-analyze verify` accepts (or a cron.d file without systemd), `list` and `remove`
//! manage them, and `schedule run` refreshes the previous image, moves `latest.*` and prunes
//! only what it made.
//!
//! install/list/remove work on a scratch system root (`--system-root`, which also keeps
//! systemctl from being called); the runs capture a small tree for real.

use crate::common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::osimage;

/// Files written more than this before a base capture are eligible for reuse in the next one
/// (docs/REFRESH.md, racily clean files; 2 s for whole-second timestamps).
const SETTLE: Duration = Duration::from_millis(2100);

fn args<'a>(v: &'a [&'a OsStr]) -> Vec<&'a OsStr> {
    v.to_vec()
}

/// A scratch system root with systemd "running" (`run/systemd/system` exists) or cron only.
fn system(dir: &Path, systemd: bool) -> PathBuf {
    let root = dir.join("sys");
    let marker = if systemd {
        "run/systemd/system"
    } else {
        "etc/cron.d"
    };
    std::fs::create_dir_all(root.join(marker)).expect("mkdir system root");
    root
}

fn install(sys: &Path, name: &str, every: &str, dest: &Path, extra: &[&str]) -> common::Run {
    let mut a: Vec<&OsStr> = vec![
        "schedule".as_ref(),
        "install".as_ref(),
        "--system-root".as_ref(),
        sys.as_os_str(),
        "--name".as_ref(),
        name.as_ref(),
        "--every".as_ref(),
        every.as_ref(),
        "--dest".as_ref(),
        dest.as_os_str(),
        "--keep".as_ref(),
        "3".as_ref(),
        // the test binary lies in a cargo target directory, which install refuses to schedule
        "--binary".as_ref(),
        env!("CARGO_BIN_EXE_osimage").as_ref(),
    ];
    a.extend(extra.iter().map(OsStr::new));
    osimage(a)
}

/// `schedule install --system-root SYS --every EVERY`, for a test to add to.
fn install_args<'a>(sys: &'a Path, every: &'a str) -> Vec<&'a OsStr> {
    vec![
        "schedule".as_ref(),
        "install".as_ref(),
        "--system-root".as_ref(),
        sys.as_os_str(),
        "--every".as_ref(),
        every.as_ref(),
    ]
}

/// `schedule remove` refuses to remove `foreign`, a file of that name osimage did not write,
/// and leaves it.
fn remove_refuses_foreign(sys: &Path, name: &str, foreign: &Path) {
    remove(sys, name)
        .fails()
        .mentions(b"not written by osimage");
    assert!(foreign.exists());
}

fn list(sys: &Path) -> String {
    osimage(args(&[
        "schedule".as_ref(),
        "list".as_ref(),
        "--system-root".as_ref(),
        sys.as_os_str(),
    ]))
    .ok()
    .stdout_str()
}

fn remove(sys: &Path, name: &str) -> common::Run {
    osimage(args(&[
        "schedule".as_ref(),
        "remove".as_ref(),
        name.as_ref(),
        "--system-root".as_ref(),
        sys.as_os_str(),
    ]))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn installed_units_pass_systemd_analyze_verify_and_list_and_remove_cleanly() {
    let scratch = common::scratch();
    let sys = system(scratch.path(), true);
    let dest = scratch.path().join("images dir");
    // Arguments a unit file could mangle: a space, a specifier, a variable, quotes.
    install(
        &sys,
        "web-01",
        "30 2 * * mon-fri",
        &dest,
        &[
            "--exclude",
            "/var/cache/%n $HOME \"q\" it's",
            "--format",
            "oimg",
        ],
    )
    .ok()
    .mentions(b"OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00");
    let units = sys.join("etc/systemd/system");
    let (service, timer) = (
        units.join("osimage-web-01.service"),
        units.join("osimage-web-01.timer"),
    );
    let wants = units.join("timers.target.wants/osimage-web-01.timer");
    assert_eq!(
        std::fs::read_link(&wants).expect("the timer is enabled"),
        Path::new("/etc/systemd/system/osimage-web-01.timer")
    );
    assert!(read(&timer).contains("\nOnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00\n"));
    assert!(
        read(&service).contains(r#""--exclude" "/var/cache/%%n $$HOME \"q\" it's""#),
        "{}",
        read(&service)
    );
    assert_eq!(
        std::fs::metadata(&dest)
            .expect("dest made")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // No man page in this system root: no Documentation= line, which `systemd-analyze verify`
    // (man pages checked, as by default) would fail on (issue #24 item 19).
    assert!(!read(&service).contains("Documentation="));
    assert!(read(&service).contains(&format!(
        "\nExecStart=\"{}\" \"schedule\" \"run\" \"web-01\"",
        env!("CARGO_BIN_EXE_osimage")
    )));
    common::need(&[("systemd-analyze", "systemd")]);
    let out = Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&service)
        .arg(&timer)
        .current_dir(&units)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        read(&service)
    );

    let l = list(&sys);
    assert!(
        l.contains("web-01: every 30 2 * * mon-fri (Systemd: Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00)")
            && l.contains("keep 3; latest: none yet"),
        "{l}"
    );
    // Same name again: refused without --force; another schedule on the same DEST: refused.
    install(&sys, "web-01", "daily", &dest, &[])
        .fails()
        .mentions(b"--force");
    install(&sys, "other", "daily", &dest, &[])
        .fails()
        .mentions(b"already writes into");
    install(&sys, "web-01", "weekly", &dest, &["--force"]).ok();
    assert!(read(&timer).contains("\nOnCalendar=Mon *-*-* 00:00:00\n"));

    remove(&sys, "web-01").ok();
    for p in [&service, &timer, &wants] {
        assert!(p.symlink_metadata().is_err(), "{} left behind", p.display());
    }
    assert_eq!(list(&sys).trim(), "no schedules");
    remove(&sys, "web-01")
        .fails()
        .mentions(b"no schedule named web-01");

    // A unit of that name osimage did not write is never removed or replaced.
    std::fs::write(&timer, "[Timer]\nOnCalendar=daily\n").expect("write foreign unit");
    install(&sys, "web-01", "daily", &dest, &[])
        .fails()
        .mentions(b"not written by osimage");
    remove_refuses_foreign(&sys, "web-01", &timer);
}

#[test]
fn without_systemd_the_schedule_is_a_cron_file_and_bad_times_are_refused() {
    let scratch = common::scratch();
    let sys = system(scratch.path(), false);
    let dest = scratch.path().join("dest");
    install(
        &sys,
        "nightly",
        "*/15 1 * * *",
        &dest,
        &["--exclude", "100%"],
    )
    .ok()
    .mentions(b"cron: 0,15,30,45 1 * * *");
    let cron = read(&sys.join("etc/cron.d/osimage-nightly"));
    let line = cron
        .lines()
        .find(|l| l.starts_with("0,15,30,45 1 * * * root nice -n 10 '"))
        .unwrap_or_else(|| panic!("no cron line:\n{cron}"));
    assert!(
        line.contains("'schedule' 'run' 'nightly' '--dest'")
            && line.contains(r"'--exclude' '100\%'")
            && line.ends_with(">>'/var/log/osimage-nightly.log' 2>&1"),
        "{line}"
    );
    assert!(!sys.join("etc/systemd").exists());
    assert!(list(&sys).contains("nightly: every */15 1 * * * (Cron: 0,15,30,45 1 * * *)"));
    remove(&sys, "nightly").ok();
    assert!(!sys.join("etc/cron.d/osimage-nightly").exists());

    for (every, says) in [
        ("0 3 1 * 1", "either matches"),
        ("61 * * * *", "minute"),
        ("@reboot", "not supported"),
    ] {
        install(&sys, "bad", every, &dest, &[])
            .usage_error()
            .mentions(says.as_bytes());
    }
    install(&sys, "Bad Name", "daily", &dest, &[])
        .usage_error()
        .mentions(b"schedule name");
    // Neither systemd nor cron: nothing could run it.
    let bare = scratch.path().join("bare");
    std::fs::create_dir(&bare).expect("mkdir");
    install(&bare, "x", "daily", &dest, &[])
        .fails()
        .mentions(b"neither systemd is running");
}

/// `osimage schedule run NAME --dest DEST --keep KEEP --format oimg --root ROOT`.
fn run(name: &str, root: &Path, dest: &Path, keep: &str) -> common::Run {
    osimage(args(&[
        "schedule".as_ref(),
        "run".as_ref(),
        name.as_ref(),
        "--dest".as_ref(),
        dest.as_os_str(),
        "--keep".as_ref(),
        keep.as_ref(),
        "--format".as_ref(),
        "oimg".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
    ]))
}

/// The images in DEST, sorted, without the dot files.
fn images(dest: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dest)
        .expect("read dest")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "latest.oimg")
        .collect();
    v.sort();
    v
}

#[test]
fn each_run_refreshes_the_previous_image_moves_latest_and_prunes_only_its_own() {
    let scratch = common::scratch();
    let root = scratch.path().join("tree");
    for (p, body) in [("etc/hostname", "box\n"), ("usr/bin/tool", "#!/bin/sh\n")] {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }
    std::fs::write(root.join("big"), common::fixture::text(7, 300_000)).expect("write");
    let dest = scratch.path().join("dest");
    std::fs::create_dir(&dest).expect("mkdir dest");
    // Someone else's file that looks like one of ours: never pruned.
    let foreign = dest.join("golden-20200101T000000Z.oimg");
    std::fs::write(&foreign, "not osimage's").expect("write");
    std::thread::sleep(SETTLE);

    run("golden", &root, &dest, "1")
        .ok()
        .mentions(b"no previous image: full capture");
    let first = std::fs::read_link(dest.join("latest.oimg")).expect("latest.oimg");
    std::thread::sleep(SETTLE);
    run("golden", &root, &dest, "1")
        .ok()
        .mentions(format!("refresh of {}", dest.join(&first).display()).as_bytes())
        .mentions(format!("pruned {}", dest.join(&first).display()).as_bytes());
    let second = std::fs::read_link(dest.join("latest.oimg")).expect("latest.oimg");
    assert_ne!(first, second);

    // The second image is a refresh of the first: nothing read, nothing compressed again.
    let info = common::info_json(&dest.join("latest.oimg"));
    let l = &info["lineage"];
    assert_eq!(l["files_read"].as_u64(), Some(0), "{info:#}");
    assert_eq!(
        l["files_reused"].as_u64(),
        Some(common::counter(&info, "files")),
        "{info:#}"
    );
    assert_eq!(l["chunks_new"].as_u64(), Some(0), "{info:#}");
    assert_eq!(
        l["base_path"].as_str(),
        dest.join(&first).to_str(),
        "{info:#}"
    );
    // --keep 1: the first image is gone, the foreign look-alike is not.
    assert_eq!(
        images(&dest),
        vec![
            "golden-20200101T000000Z.oimg".to_string(),
            second.to_string_lossy().into_owned()
        ]
    );
    osimage(args(&["verify".as_ref(), dest.join(&second).as_os_str()])).ok();

    // A failed run exits non-zero and leaves the images and latest.oimg as they were.
    run("golden", &scratch.path().join("missing"), &dest, "1")
        .fails()
        .mentions(b"missing");
    assert_eq!(
        std::fs::read_link(dest.join("latest.oimg")).expect("latest"),
        second
    );
    assert_eq!(images(&dest).len(), 2);
    // latest.oimg that is not osimage's link is not replaced.
    std::fs::remove_file(dest.join("latest.oimg")).expect("rm");
    std::fs::write(dest.join("latest.oimg"), "mine").expect("write");
    run("golden", &root, &dest, "1")
        .fails()
        .mentions(b"is not a symbolic link");
    assert_eq!(read(&dest.join("latest.oimg")), "mine");
}

/// Runs osimage as user nobody (setpriv, util-linux).
fn as_nobody(a: &[&OsStr]) -> common::Run {
    common::need(&[("setpriv", "util-linux")]);
    common::osimage_with(a, |cmd| {
        let exe = std::mem::replace(cmd, Command::new("setpriv"));
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(exe.get_program())
            .args(exe.get_args())
            .env("RUST_BACKTRACE", "1");
    })
}

/// Every file and directory under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_prints_the_files_as_any_user_and_install_needs_root_first() {
    let scratch = common::scratch();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch");
    let exe = env!("CARGO_BIN_EXE_osimage");
    for systemd in [true, false] {
        let sys = system(&scratch.path().join(format!("{systemd}")), systemd);
        let dest = scratch.path().join(format!("dest-{systemd}"));
        let before = tree(&sys);
        let words = [
            "schedule",
            "install",
            "--dry-run",
            "--every",
            "daily",
            "--keep",
            "2",
            "--binary",
            exe,
        ];
        let a: Vec<&OsStr> = words
            .iter()
            .map(OsStr::new)
            .chain([
                "--dest".as_ref(),
                dest.as_os_str(),
                "--system-root".as_ref(),
                sys.as_os_str(),
            ])
            .collect();
        let r = as_nobody(&a).ok();
        let out = r.stdout_str();
        let (files, line): (&[&str], String) = if systemd {
            (
                &[
                    "etc/systemd/system/osimage-golden.service",
                    "etc/systemd/system/osimage-golden.timer",
                ],
                format!("ExecStart=\"{exe}\" \"schedule\" \"run\" \"golden\""),
            )
        } else {
            (
                &[
                    "etc/cron.d/osimage-golden",
                    "etc/logrotate.d/osimage-golden",
                ],
                format!("0 0 * * * root nice -n 10 '{exe}' 'schedule' 'run' 'golden'"),
            )
        };
        for f in files {
            assert!(
                out.contains(&format!(
                    "would write {}:\n# osimage-schedule: ",
                    sys.join(f).display()
                )),
                "{f}: {out}"
            );
        }
        assert!(out.contains(&line), "{line}: {out}");
        assert!(out.contains("(dry run: nothing was created)"), "{out}");
        if !systemd {
            assert!(
                out.contains("/var/log/osimage-golden.log {\n\tweekly\n"),
                "{out}"
            );
        }
        assert_eq!(tree(&sys), before, "the dry run created files");
        assert!(!dest.exists());

        // Without --dry-run, as nobody: refused before anything is created.
        let real: Vec<&OsStr> = a.iter().copied().filter(|x| *x != "--dry-run").collect();
        as_nobody(&real).fails().mentions(b"must run as root");
        assert_eq!(tree(&sys), before, "a refused install created files");
        assert!(!dest.exists());
    }
}

#[test]
fn install_refuses_a_build_tree_binary_and_checks_binary() {
    let scratch = common::scratch();
    let sys = system(scratch.path(), true);
    let dest = scratch.path().join("dest");
    let mut base = install_args(&sys, "daily");
    base.extend::<[&OsStr; 4]>([
        "--dest".as_ref(),
        dest.as_os_str(),
        "--keep".as_ref(),
        "1".as_ref(),
    ]);
    // The test binary runs from target/: refused, with how to install it.
    osimage(base.clone())
        .fails()
        .mentions(b"inside a cargo target directory")
        .mentions(b"install -m 0755 ")
        .mentions(b"--binary");
    assert!(!sys.join("etc").exists() && !dest.exists());
    let plain = scratch.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").expect("write");
    for (bin, says) in [
        ("relative/osimage", "absolute path"),
        ("/nonexistent/osimage", "No such file"),
        (plain.to_str().expect("utf-8"), "not an executable file"),
    ] {
        let mut a = base.clone();
        a.extend([OsStr::new("--binary"), OsStr::new(bin)]);
        osimage(a).usage_error().mentions(says.as_bytes());
    }
    assert!(!sys.join("etc").exists() && !dest.exists());
}

#[test]
fn a_man_page_in_the_system_adds_documentation_and_remove_works_without_systemd() {
    let scratch = common::scratch();
    let sys = system(scratch.path(), true);
    let man = sys.join("usr/share/man/man1/osimage-schedule.1.gz");
    std::fs::create_dir_all(man.parent().expect("parent")).expect("mkdir");
    std::fs::write(&man, "").expect("write");
    let dest = scratch.path().join("dest");
    install(&sys, "doc", "daily", &dest, &[]).ok();
    let units = sys.join("etc/systemd/system");
    let service = units.join("osimage-doc.service");
    assert!(read(&service).contains("\nDocumentation=man:osimage-schedule(1)\n"));

    // systemd stopped running (e.g. the system is now booted with another init, or in a
    // container): the files go, systemctl is skipped, and remove says so.
    std::fs::remove_dir(sys.join("run/systemd/system")).expect("rmdir");
    remove(&sys, "doc")
        .ok()
        .mentions(format!("removed {}", service.display()).as_bytes())
        .mentions(b"systemd is not running")
        .mentions(b"systemctl not called");
    for f in [
        "osimage-doc.service",
        "osimage-doc.timer",
        "timers.target.wants/osimage-doc.timer",
    ] {
        assert!(units.join(f).symlink_metadata().is_err(), "{f} left behind");
    }
}

#[test]
fn a_cron_schedule_rotates_its_log_and_remove_takes_the_snippet_too() {
    let scratch = common::scratch();
    let sys = system(scratch.path(), false);
    let dest = scratch.path().join("dest");
    install(&sys, "night", "daily", &dest, &[]).ok();
    let snippet = sys.join("etc/logrotate.d/osimage-night");
    let text = read(&snippet);
    assert!(text.starts_with("# osimage-schedule: {"), "{text}");
    assert!(
        text.contains("\n/var/log/osimage-night.log {\n\tweekly\n\trotate 8\n\tcompress\n"),
        "{text}"
    );
    let cron = read(&sys.join("etc/cron.d/osimage-night"));
    assert!(
        cron.contains(">>'/var/log/osimage-night.log' 2>&1"),
        "{cron}"
    );
    remove(&sys, "night")
        .ok()
        .mentions(format!("removed {}", snippet.display()).as_bytes());
    assert!(!snippet.exists() && !sys.join("etc/cron.d/osimage-night").exists());
    // A foreign snippet of that name is never removed.
    std::fs::write(&snippet, "/var/log/x.log {}\n").expect("write");
    remove_refuses_foreign(&sys, "night", &snippet);
}

#[test]
fn install_takes_dest_and_keep_from_the_config_file_and_the_unit_names_it() {
    let scratch = common::scratch();
    let sys = system(scratch.path(), true);
    let dest = scratch.path().join("from-config");
    let cfg = scratch.path().join("osimage.toml");
    std::fs::write(
        &cfg,
        format!(
            "[destination]\ndir = {:?}\nformat = \"oimg\"\n[retention]\nkeep = 5\n\
             [capture]\nexclude = [\"/srv/cache/*\"]\n",
            dest.to_str().expect("utf-8")
        ),
    )
    .expect("write config");
    let mut a = install_args(&sys, "daily");
    a.extend::<[&OsStr; 4]>([
        "--config".as_ref(),
        cfg.as_os_str(),
        "--binary".as_ref(),
        env!("CARGO_BIN_EXE_osimage").as_ref(),
    ]);
    osimage(a).ok();
    let service = read(&sys.join("etc/systemd/system/osimage-golden.service"));
    let exec = service
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    for part in [
        format!("\"--dest\" \"{}\"", dest.display()),
        "\"--keep\" \"5\"".to_string(),
        "\"--format\" \"oimg\"".to_string(),
        format!("\"--config\" \"{}\"", cfg.display()),
    ] {
        assert!(exec.contains(&part), "{part}: {exec}");
    }
    // The file's excludes are read by each run, not copied into the unit.
    assert!(!exec.contains("--exclude"), "{exec}");
    assert!(list(&sys).contains(&format!("→ {} keep 5", dest.display())));
    // Neither flag nor key: a usage error naming both.
    let empty = scratch.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    osimage(args(&[
        "schedule".as_ref(),
        "install".as_ref(),
        "--dry-run".as_ref(),
        "--every".as_ref(),
        "daily".as_ref(),
        "--config".as_ref(),
        empty.as_os_str(),
        "--system-root".as_ref(),
        sys.as_os_str(),
    ]))
    .usage_error()
    .mentions(b"--dest DIR, or destination.dir");
}

#[test]
fn a_scheduled_run_reads_the_config_file_its_unit_names() {
    let scratch = common::scratch();
    let root = scratch.path().join("tree");
    for p in ["etc/hostname", "srv/cache/big", "srv/data/kept"] {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "x\n").expect("write");
    }
    let dest = scratch.path().join("dest");
    let cfg = scratch.path().join("osimage.toml");
    std::fs::write(&cfg, "[capture]\nexclude = [\"/srv/cache\"]\nlevel = 7\n").expect("write");
    osimage(args(&[
        "schedule".as_ref(),
        "run".as_ref(),
        "cfg".as_ref(),
        "--dest".as_ref(),
        dest.as_os_str(),
        "--keep".as_ref(),
        "1".as_ref(),
        "--format".as_ref(),
        "oimg".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--config".as_ref(),
        cfg.as_os_str(),
    ]))
    .ok();
    let latest = dest.join("latest.oimg");
    let l = osimage(args(&["list".as_ref(), latest.as_os_str()]))
        .ok()
        .stdout_str();
    assert!(l.contains("srv/data/kept"), "{l}");
    assert!(
        !l.contains("srv/cache/big"),
        "the file's exclude was not applied: {l}"
    );
    assert_eq!(common::info_json(&latest)["zstd_level"].as_i64(), Some(7));
}

#[test]
fn a_scheduled_iso_encrypted_to_a_recipient_opens_with_its_identity_only() {
    use age::secrecy::ExposeSecret;
    common::kernel::need_iso_capture_tools();
    let (x, version) = common::kernel::kernel_package();
    let root = common::kernel::staging_root(&x, &version);
    let scratch = common::scratch();
    let dest = scratch.path().join("dest");
    // Only the public key is on the machine: in a recipient file the unit names.
    let identity = age::x25519::Identity::generate();
    let id_file = scratch.path().join("me.key");
    std::fs::write(&id_file, identity.to_string().expose_secret()).expect("write");
    let recipients = scratch.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# ops\n{}\n", identity.to_public())).expect("write");
    let mut a: Vec<&OsStr> = vec![
        "schedule".as_ref(),
        "run".as_ref(),
        "enc".as_ref(),
        "--dest".as_ref(),
        dest.as_os_str(),
        "--keep".as_ref(),
        "2".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--recipient-file".as_ref(),
        recipients.as_os_str(),
    ];
    a.extend(
        common::kernel::exclude_host_programs()
            .into_iter()
            .map(OsStr::new),
    );
    osimage(a).ok().mentions(
        b"encrypted to --recipient: the previous image cannot be opened here; full capture",
    );
    let latest = dest.join("latest.iso");
    // Readable with the identity, refused without it.
    osimage(args(&[
        "verify".as_ref(),
        latest.as_os_str(),
        "--identity".as_ref(),
        id_file.as_os_str(),
    ]))
    .ok();
    osimage(args(&["info".as_ref(), latest.as_os_str()]))
        .fails()
        .mentions(b"--identity");
    // The unit carries the public key and the file's path, and --recipient goes with a
    // directory only.
    let sys = system(scratch.path(), true);
    let public = identity.to_public().to_string();
    install(
        &sys,
        "enc",
        "daily",
        &dest,
        &["--recipient", &public, "--dry-run"],
    )
    .ok()
    .mentions(format!("\"--recipient\" \"{public}\"").as_bytes());
    install(
        &sys,
        "enc",
        "daily",
        &dest,
        &["--recipient", "age1nope", "--dry-run"],
    )
    .usage_error()
    .mentions(b"not an age public key");
    install(
        &sys,
        "enc",
        "daily",
        &dest,
        &["--identity", id_file.to_str().expect("utf-8")],
    )
    .usage_error()
    .mentions(b"--recipient");
}
