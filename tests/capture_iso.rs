//! `capture -o NAME.iso` writes one standard, bootable ISO holding the payload, and osimage's
//! own commands work on it in place: tools nobody here wrote read its structure and boot
//! catalog, `verify`/`info`/`list`/`extract` read the payload inside it, and a damaged byte in
//! it is found and named. (Booting it and restoring from it: tests/e2e_*.)

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::compare::{Options, assert_no_differences, diff_trees};
use common::kernel::{kernel_package, staging_root};

/// The staged root (a Debian kernel + this host's tools) and an ISO captured from it. The
/// big program folders are excluded from the payload (the rescue environment still takes its
/// tools from them), so the payload is /etc and /boot: small, yet a real system's.
struct Captured {
    root: PathBuf,
    iso: PathBuf,
    _dir: tempfile::TempDir,
}

static CAPTURED: OnceLock<Captured> = OnceLock::new();

fn captured() -> &'static Captured {
    CAPTURED.get_or_init(|| {
        common::require_root();
        common::kernel::need_iso_capture_tools();
        common::need(&[("7z", "p7zip-full")]);
        let (x, version) = kernel_package();
        let root = staging_root(&x, &version);
        let dir = common::scratch();
        let iso = dir.path().join("system.iso");
        common::capture(
            &root,
            &iso,
            &[
                "--exclude",
                "/usr/lib",
                "--exclude",
                "/usr/bin",
                "--exclude",
                "/usr/sbin",
                "--exclude",
                "/usr/lib64",
                "-q",
            ],
        );
        Captured {
            root,
            iso,
            _dir: dir,
        }
    })
}

fn tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn the_iso_has_bios_and_uefi_boot_entries_and_the_payload() {
    let _disks = common::loop_devices(module_path!());
    let c = captured();
    let report = tool(
        Command::new("xorriso")
            .arg("-indev")
            .arg(&c.iso)
            .args(["-report_el_torito", "plain"]),
    );
    let entries: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .collect();
    assert!(
        entries.len() == 2 && entries[0].contains("BIOS") && entries[1].contains("UEFI"),
        "expected entry 1 BIOS, entry 2 UEFI:\n{report}"
    );
    let listing = tool(Command::new("7z").arg("l").arg(&c.iso));
    for name in [
        "README.TXT",
        "osimage/manifest.osm",
        "osimage/packs/pack-000000.osp",
        "osimage/rescue/vmlinuz",
        "osimage/rescue/initrd.img",
        "boot/grub/grub.cfg",
    ] {
        assert!(
            listing.contains(name),
            "7z does not list {name}:\n{listing}"
        );
    }
}

#[test]
fn verify_info_list_and_extract_work_on_the_iso_in_place() {
    let _disks = common::loop_devices(module_path!());
    let c = captured();
    common::osimage(["verify".as_ref(), c.iso.as_os_str()]).ok();
    let info = common::info_json(&c.iso);
    assert_eq!(info["container"], "iso", "{info}");
    let list = common::osimage(["list".as_ref(), c.iso.as_os_str(), "/boot".as_ref()]).ok();
    assert!(
        list.stdout_str().contains("/boot/vmlinuz-"),
        "{}",
        list.stdout_str()
    );

    let out = common::scratch();
    let dest = out.path().join("x");
    common::extract(&c.iso, &dest, &[b"etc", b"boot"]).ok();
    for sub in ["etc", "boot"] {
        let diffs = diff_trees(&c.root.join(sub), &dest.join(sub), Options { nlink: false });
        assert_no_differences(&diffs, &format!("/{sub} extracted from the ISO"));
    }
}

#[test]
fn a_flipped_byte_in_a_pack_inside_the_iso_is_named() {
    let _disks = common::loop_devices(module_path!());
    let c = captured();
    let iso = osimage::iso::IsoReader::open(&c.iso).expect("our own ISO opens");
    let pack = iso
        .lookup("osimage/packs/pack-000000.osp")
        .expect("readable")
        .expect("pack 0 is there");
    // Past the pack header (64) and the first block's header (16): chunk data.
    let victim = pack.offset + 64 + 16 + 1000;
    let out = common::scratch();
    let damaged = out.path().join("damaged.iso");
    let mut bytes = std::fs::read(&c.iso).expect("read the ISO");
    bytes[victim as usize] ^= 0x55;
    std::fs::write(&damaged, &bytes).expect("write the copy");
    let run = common::osimage(["verify".as_ref(), damaged.as_os_str()]);
    assert_eq!(run.code, 1, "verify must fail: {}", run.describe());
    assert!(
        run.stdout_str().contains("damaged file: /"),
        "verify must name the damaged file: {}",
        run.describe()
    );
}

/// A root with no kernel to boot: `DIR/root`.
fn kernelless_root(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/hostname"), "plain\n").expect("write");
    root
}

/// `run` failed saying a kernel is missing, and left neither `iso` nor temporary files in `dir`.
fn failed_for_want_of_a_kernel(run: &common::Run, iso: &std::path::Path, dir: &std::path::Path) {
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.stderr.contains("kernel"),
        "the error must say what is missing: {}",
        run.describe()
    );
    assert!(!iso.exists(), "no output may be left behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".osimage-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn iso_output_without_a_kernel_fails_before_writing_anything() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    let dir = common::scratch();
    let root = kernelless_root(dir.path());
    let iso = dir.path().join("out.iso");
    let run = common::osimage([
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        iso.as_os_str(),
    ]);
    failed_for_want_of_a_kernel(&run, &iso, dir.path());
}

/// Issue #24 item 12: `--kernel` naming no file says so plainly, and a file merely named
/// `boot/vmlinuz-VERSION` (with modules beside it) is not taken for a kernel: each capture
/// fails naming why, and leaves nothing behind.
#[test]
fn a_missing_kernel_path_and_a_file_named_vmlinuz_are_refused_plainly() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    let dir = common::scratch();
    let root = kernelless_root(dir.path());
    let iso = dir.path().join("out.iso");
    let run = common::osimage([
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        iso.as_os_str(),
        "--kernel".as_ref(),
        "/nonexistent/vmlinuz".as_ref(),
    ]);
    failed_for_want_of_a_kernel(&run, &iso, dir.path());
    assert!(
        run.stderr
            .contains("--kernel /nonexistent/vmlinuz: no such file (on this machine, nor under"),
        "{}",
        run.describe()
    );

    let v = "6.1.0-99-amd64";
    std::fs::create_dir_all(root.join("boot")).expect("mkdir");
    std::fs::write(
        root.join(format!("boot/vmlinuz-{v}")),
        b"#!/bin/sh
echo hi
",
    )
    .expect("w");
    std::fs::create_dir_all(root.join(format!("lib/modules/{v}"))).expect("mkdir");
    std::fs::write(root.join(format!("lib/modules/{v}/modules.dep")), "").expect("write");
    let run = common::osimage([
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        iso.as_os_str(),
    ]);
    failed_for_want_of_a_kernel(&run, &iso, dir.path());
    assert!(
        run.stderr.contains(&format!(
            "vmlinuz-{v} is no x86 kernel image (no boot protocol header \"HdrS\" at 0x202)"
        )),
        "{}",
        run.describe()
    );
}

/// A refresh to an ISO goes on with its payload while the rescue environment is planned on a
/// thread (docs/ISO.md, "Beside the payload"): a missing kernel still fails the capture, with
/// what is missing said, and leaves nothing behind.
#[test]
fn iso_refresh_without_a_kernel_fails_and_leaves_nothing() {
    let _disks = common::loop_devices(module_path!());
    common::require_root();
    let dir = common::scratch();
    let root = kernelless_root(dir.path());
    let base = dir.path().join("base.oimg");
    let first = common::osimage([
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        base.as_os_str(),
    ]);
    assert_eq!(first.code, 0, "{}", first.describe());
    let iso = dir.path().join("out.iso");
    let run = common::osimage([
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        iso.as_os_str(),
        "--base".as_ref(),
        base.as_os_str(),
    ]);
    failed_for_want_of_a_kernel(&run, &iso, dir.path());
}

/// `--encrypt` on an ISO (docs/FORMAT.md §11.5): the key record sits in `/osimage/keys.osk`,
/// the payload opens only with the key, and the readable README names nothing of the system.
#[test]
fn an_encrypted_iso_opens_with_its_key_and_its_readable_files_name_nothing() {
    let _disks = common::loop_devices(module_path!());
    let c = captured();
    let dir = common::scratch();
    let id = age::x25519::Identity::generate();
    let id_file = dir.path().join("id.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&id_file, id.to_string().expose_secret()).expect("write");
    }
    let iso = dir.path().join("enc.iso");
    let public = id.to_public().to_string();
    common::capture(
        &c.root,
        &iso,
        &["--exclude", "/usr", "--recipient", &public, "-q"],
    );
    let reader = osimage::iso::IsoReader::open(&iso).expect("our own ISO opens");
    assert!(
        reader
            .lookup("osimage/keys.osk")
            .expect("readable")
            .is_some()
    );
    let ext = reader
        .lookup("README.TXT")
        .expect("readable")
        .expect("README.TXT is there");
    let bytes = std::fs::read(&iso).expect("read the ISO");
    let readme =
        String::from_utf8_lossy(&bytes[ext.offset as usize..(ext.offset + ext.len) as usize])
            .into_owned();
    assert!(readme.contains("encrypted"), "{readme}");
    let hostname = std::fs::read_to_string(c.root.join("etc/hostname")).unwrap_or_default();
    if !hostname.trim().is_empty() {
        assert!(
            !readme.contains(hostname.trim()),
            "README names the host: {readme}"
        );
    }
    let with_id = [
        "list".as_ref(),
        iso.as_os_str(),
        "/etc".as_ref(),
        "--identity".as_ref(),
        id_file.as_os_str(),
    ];
    let list = common::osimage(with_id).ok();
    assert!(list.stdout_str().contains("/etc/"), "{}", list.describe());
    common::osimage([
        "verify".as_ref(),
        iso.as_os_str(),
        "--identity".as_ref(),
        id_file.as_os_str(),
    ])
    .ok();
    common::osimage_no_tty(["list".as_ref(), iso.as_os_str()])
        .fails()
        .mentions(b"is encrypted");
}

/// The capture options of `captured()`, for refreshes of its ISO.
const EXCLUDES: [&str; 8] = [
    "--exclude",
    "/usr/lib",
    "--exclude",
    "/usr/bin",
    "--exclude",
    "/usr/sbin",
    "--exclude",
    "/usr/lib64",
];

/// The first `len` bytes of an ISO's file, read with xorriso (nobody here wrote it).
fn iso_file_prefix(iso: &std::path::Path, path: &str, out: &std::path::Path, len: u64) -> Vec<u8> {
    tool(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract", path])
            .arg(out),
    );
    let bytes = std::fs::read(out).expect("read extracted file");
    bytes[..len as usize].to_vec()
}

/// `capture -o NEW.iso --base OLD.iso` takes OLD's rescue kernel and initramfs when they were
/// built from the same inputs (kernel, modules, tools, agent, rescue assets: docs/ISO.md,
/// "Refreshes"), says so, and gives the new ISO its own image id; a different kernel, and
/// it builds them again, saying why.
#[test]
fn an_iso_refresh_reuses_the_rescue_environment_only_when_its_inputs_are_the_same() {
    let _disks = common::loop_devices(module_path!());
    let c = captured();
    let dir = common::scratch();
    let base = c.iso.to_str().expect("utf-8");
    let same = dir.path().join("same.iso");
    let mut args = vec!["--base", base];
    args.extend(EXCLUDES);
    let out = common::capture(&c.root, &same, &args).ok();
    let said = out.stderr.clone();
    assert!(
        said.contains("kernel and initramfs reused from"),
        "no reuse reported:\n{said}"
    );
    common::osimage(["verify".as_ref(), same.as_os_str()]).ok();
    let record = |iso: &std::path::Path| {
        let info = common::info_json(iso);
        info["rescue"].clone()
    };
    let (old, new) = (record(&c.iso), record(&same));
    assert!(
        old["core_len"].as_u64().is_some(),
        "no rescue record: {old:#}"
    );
    assert_eq!(old, new, "same inputs, same recorded rescue environment");
    let core_len = new["core_len"].as_u64().expect("core_len");
    let initrd = "/osimage/rescue/initrd.img";
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    assert_eq!(
        iso_file_prefix(&c.iso, initrd, &a, core_len),
        iso_file_prefix(&same, initrd, &b, core_len),
        "the initramfs contents are the base's"
    );
    let id = |iso: &std::path::Path| common::info_json(iso)["id"].as_str().map(str::to_string);
    let tail = std::fs::read(&b).expect("read");
    let new_id = id(&same).expect("id");
    assert!(
        String::from_utf8_lossy(&tail[core_len as usize..]).contains(&new_id),
        "the new initrd's own archive carries the new image id"
    );
    assert_ne!(id(&c.iso), Some(new_id));

    // Another kernel file (the same one with a byte more): built again, and said why.
    // Named like the real one: the version (and so the modules) comes from the file name.
    let version = kernel_package().1;
    let kernel = dir.path().join(format!("vmlinuz-{version}"));
    let mut bytes =
        std::fs::read(c.root.join(format!("boot/vmlinuz-{version}"))).expect("read kernel");
    bytes.push(0);
    std::fs::write(&kernel, bytes).expect("write kernel");
    let other = dir.path().join("other.iso");
    let mut args = vec!["--base", base, "--kernel", kernel.to_str().expect("utf-8")];
    args.extend(EXCLUDES);
    let said = common::capture(&c.root, &other, &args).ok().stderr;
    assert!(
        said.contains("rebuilt, not reused from") && said.contains("the kernel image differs"),
        "no rebuild reported:\n{said}"
    );
    // The kernel image is not in the initramfs: every compressed part is the base's.
    let parts = old["parts"].as_u64().expect("parts");
    assert!(parts > 1, "{old:#}");
    assert!(
        said.contains(&format!(
            "compressed 0 of its {parts} initramfs parts, took the other {parts}"
        )),
        "parts not reused:\n{said}"
    );
    assert_ne!(record(&other)["kernel"], old["kernel"]);
    assert_eq!(record(&other)["contents"], old["contents"]);
    common::osimage(["verify".as_ref(), other.as_os_str()]).ok();
}

/// The 4 KiB blocks (`filefrag`'s logical block numbers) of `file` whose extents are shared.
fn shared_blocks(file: &std::path::Path) -> Vec<(u64, u64)> {
    let out = tool(Command::new("filefrag").arg("-v").arg("-b4096").arg(file));
    // "   0:        0..     255:      12345..     12600:    256:             shared"
    out.lines()
        .filter(|l| l.contains("shared"))
        .filter_map(|l| {
            let logical = l.split(':').nth(1)?;
            let (a, b) = logical.split_once("..")?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

/// ISO files start on 4 KiB boundaries and the packs at a fixed place (docs/ISO.md, "Placed
/// bytes"): on XFS, an unchanged ISO refresh's pack shares every block with its base's.
#[test]
fn an_iso_refresh_on_xfs_shares_its_pack_with_the_base() {
    let _disks = common::loop_devices(module_path!());
    use common::loopdev::Xfs;
    let c = captured();
    common::require_root();
    common::need(&[("mkfs.xfs", "xfsprogs"), ("filefrag", "e2fsprogs")]);
    let dir = common::scratch();
    let fs = Xfs::new(dir.path());
    let (base, new) = (fs.mnt().join("base.iso"), fs.mnt().join("new.iso"));
    std::fs::copy(&c.iso, &base).expect("copy the base onto XFS");
    let excludes = [
        "--exclude",
        "/usr/lib",
        "--exclude",
        "/usr/bin",
        "--exclude",
    ];
    let mut args = excludes.to_vec();
    args.extend(["/usr/sbin", "--exclude", "/usr/lib64", "-q", "--base"]);
    args.push(base.to_str().expect("utf-8"));
    common::capture(&c.root, &new, &args);
    common::osimage(["verify".as_ref(), new.as_os_str()]).ok();

    let iso = osimage::iso::IsoReader::open(&new).expect("reads");
    let pack = iso
        .lookup("osimage/packs/pack-000000.osp")
        .expect("lookup")
        .expect("pack 0");
    assert_eq!(pack.offset, osimage::iso::PLACED_START);
    let (first, last) = (pack.offset / 4096, (pack.offset + pack.len - 1) / 4096);
    // Every block of the pack but its first (the header holds the new image's id) and its
    // last (shared with the bytes after it, which differ) is shared with the base.
    let shared = shared_blocks(&new);
    let mut covered = 0;
    for b in first + 1..last {
        if shared.iter().any(|&(a, z)| a <= b && b <= z) {
            covered += 1;
        }
    }
    assert_eq!(
        covered,
        last - first - 1,
        "pack blocks {first}..={last}, shared extents {shared:?}"
    );
}
