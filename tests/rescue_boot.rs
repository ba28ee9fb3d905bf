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
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use osimage::rescue::{self, RescueSpec};

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
        std::process::exit(rescue::agent_main_from_proc());
    }
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cache/rescue-kernel")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Debian kernel package, extracted once: `x/boot`, `x/lib/modules/<version>`.
fn kernel_package() -> (PathBuf, String) {
    let cache = cache_dir();
    let x = cache.join("x");
    let find_version = || -> Option<String> {
        std::fs::read_dir(x.join("boot"))
            .ok()?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_prefix("vmlinuz-")
                    .map(str::to_string)
            })
            .next()
    };
    if let Some(v) = find_version() {
        return (x, v);
    }
    std::fs::create_dir_all(&cache).unwrap();
    let deps = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .unwrap();
    let pkg = String::from_utf8_lossy(&deps.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .expect("cannot resolve linux-image-amd64 (apt-get update?)")
        .to_string();
    run(Command::new("apt-get")
        .args(["download", &pkg])
        .current_dir(&cache));
    let deb = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".deb") && p.to_string_lossy().contains(&pkg))
        .expect("downloaded package");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    let version = find_version().expect("vmlinuz in the package");
    (x, version)
}

/// A captured root as an installed merged-/usr Debian looks: the package's kernel and
/// modules (with the indexes depmod makes at install time) and this host's programs and
/// libraries (hard links: same filesystem, no copy).
fn staging_root(x: &Path, version: &str) -> PathBuf {
    let root = cache_dir().join("root");
    if root
        .join(format!("usr/lib/modules/{version}/modules.dep"))
        .exists()
        && root.join("usr/sbin").exists()
    {
        return root;
    }
    let _ = std::fs::remove_dir_all(&root);
    for d in ["usr/lib", "etc", "boot"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    let copy = |src: &Path, dst: &Path| {
        let hard = Command::new("cp")
            .arg("-al")
            .arg(src)
            .arg(dst)
            .status()
            .is_ok_and(|s| s.success());
        if !hard {
            run(Command::new("cp").arg("-a").arg(src).arg(dst));
        }
    };
    for d in [
        "usr/bin",
        "usr/sbin",
        "usr/lib64",
        "usr/lib/x86_64-linux-gnu",
    ] {
        copy(&Path::new("/").join(d), &root.join(d));
    }
    for f in ["etc/ld.so.conf", "etc/ld.so.conf.d", "etc/mke2fs.conf"] {
        if Path::new("/").join(f).exists() {
            copy(&Path::new("/").join(f), &root.join(f));
        }
    }
    for e in std::fs::read_dir(x.join("boot")).unwrap() {
        let p = e.unwrap().path();
        copy(&p, &root.join("boot").join(p.file_name().unwrap()));
    }
    std::fs::create_dir_all(root.join("usr/lib/modules")).unwrap();
    copy(
        &x.join("lib/modules").join(version),
        &root.join("usr/lib/modules").join(version),
    );
    run(Command::new("depmod").arg("-b").arg(&root).arg(version));
    root
}

fn list_initrd(initrd: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | cpio -t --quiet", initrd.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cpio -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rescue_environment_boots_finds_its_medium_and_powers_off() {
    for tool in [
        "qemu-system-x86_64",
        "xorriso",
        "cpio",
        "zstd",
        "depmod",
        "dpkg-deb",
    ] {
        if !have(tool) {
            eprintln!("skipped: {tool} not installed");
            return;
        }
    }
    let (x, version) = kernel_package();
    let root = staging_root(&x, &version);
    let work = tempfile::tempdir_in(cache_dir()).unwrap();

    let id: [u8; 16] = *b"\x0a\x1b\x2c\x3d\x4e\x5f\x60\x71\x82\x93\xa4\xb5\xc6\xd7\xe8\xf9";
    let hex = rescue::image_id_hex(&id);
    let mut spec = RescueSpec::new(&root, id);
    spec.filesystems = vec!["ext4".into(), "vfat".into(), "swap".into()];
    let built = rescue::build_rescue(&spec, &work.path().join("rescue")).expect("build_rescue");
    eprintln!(
        "rescue: kernel {} initrd {} bytes (cpio {} bytes), total {} bytes = {:.1} MiB; {} modules, {} tools, {} libraries",
        built.kernel_version,
        built.initrd_bytes,
        built.uncompressed_bytes,
        built.size_bytes,
        built.size_bytes as f64 / 1048576.0,
        built.modules,
        built.tools,
        built.libraries
    );
    for n in &built.notes {
        eprintln!("note: {n}");
    }
    assert_eq!(built.kernel_version, version);
    assert!(built.size_bytes < 100 << 20, "rescue part over 100 MiB");

    // cpio judges the archive; the essentials are in it.
    let listing = list_initrd(&built.initrd);
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

    // The medium: an ISO holding the id marker only. The target: a blank virtio disk.
    let medium = work.path().join("medium");
    std::fs::create_dir_all(medium.join("osimage")).unwrap();
    std::fs::write(medium.join(rescue::id_marker_path(&hex)), b"").unwrap();
    let iso = work.path().join("medium.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "OSIMAGE_TEST", "-o"])
        .arg(&iso)
        .arg(&medium));
    let disk = work.path().join("blank.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();

    let log = work.path().join("console.log");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc",
            "-m",
            "1024",
            "-smp",
            "1",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&built.kernel)
        .arg("-initrd")
        .arg(&built.initrd)
        .args(["-append", "console=ttyS0,115200 osimage.auto=1"])
        .arg("-drive")
        .arg(format!("file={},media=cdrom,readonly=on", iso.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", disk.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("qemu");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = qemu.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = qemu.kill();
            let _ = qemu.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let console = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    // Kept for a look after the run (the work directory goes away).
    let _ = std::fs::write(cache_dir().join("last-console.log"), &console);
    let tail: String = console
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    let ready = console
        .lines()
        .find(|l| l.contains("OSIMAGE-RESCUE-READY"))
        .unwrap_or_else(|| panic!("no OSIMAGE-RESCUE-READY on the console:\n{tail}"));
    eprintln!("{ready}");
    assert!(ready.contains("medium=/dev/sr0"), "{ready}");
    assert!(ready.contains("/dev/vda:64MiB:blank"), "{ready}");
    assert!(!console.contains("OSIMAGE-RESTORE-FAILED"), "{tail}");
    let status = status.unwrap_or_else(|| panic!("QEMU did not power off by itself:\n{tail}"));
    assert!(status.success(), "QEMU exit {status}:\n{tail}");
}
