//! A captured root with a real Debian kernel, for the tests that build a rescue environment
//! or an ISO: the kernel package is fetched once with apt into tests/cache/rescue-kernel (from
//! the apt sources this machine is configured with), and a root is staged from it and this
//! host's programs (hard links, no copy).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use super::run;

/// Where the kernel package and the staged root are cached between runs.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cache/rescue-kernel")
}

/// The cache is filled by tests of several modules (capture_iso, rescue_boot) on their own
/// threads of one process: one at a time, so the second finds it filled.
fn cache_lock() -> MutexGuard<'static, ()> {
    static CACHE: Mutex<()> = Mutex::new(());
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host tools an ISO capture of the staging root calls (xorriso to check, GRUB's images,
/// the ESP image, depmod for the rescue environment's modules).
pub fn need_iso_capture_tools() {
    super::need(&[
        ("xorriso", "xorriso"),
        ("grub-mkimage", "grub-common"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("depmod", "kmod"),
    ]);
}

/// The Debian kernel package, extracted once: `x/boot`, `x/lib/modules/<version>`.
pub fn kernel_package() -> (PathBuf, String) {
    let _cache = cache_lock();
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

/// The staging root's host programs and libraries (`staging_root`), left out of a capture
/// with `--exclude` when a test wants a small payload: the rescue environment is still built
/// from them (it reads the root's tools, not the payload's).
pub const HOST_PROGRAM_DIRS: [&str; 4] = ["/usr/lib", "/usr/bin", "/usr/sbin", "/usr/lib64"];

/// `--exclude D` for each of `HOST_PROGRAM_DIRS`.
pub fn exclude_host_programs() -> Vec<&'static str> {
    HOST_PROGRAM_DIRS
        .iter()
        .flat_map(|d| ["--exclude", *d])
        .collect()
}

/// A captured root as an installed merged-/usr Debian looks: the package's kernel and
/// modules (with the indexes depmod makes at install time) and this host's programs and
/// libraries (hard links: same filesystem, no copy).
pub fn staging_root(x: &Path, version: &str) -> PathBuf {
    let _cache = cache_lock();
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
