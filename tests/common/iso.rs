//! Helpers shared by the ISO integration tests: a fixture tree with every kind of entry the
//! ISO must carry, the `IsoSpec` built from it, and host tools that judge the result.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{need, run};

use osimage::iso::{IsoFile, IsoSource, IsoSpec};

/// A long UTF-8 name: 200 bytes, beyond ISO 9660 and Joliet, within Rock Ridge.
pub fn long_name() -> String {
    format!("{}-long-name.txt", "ü".repeat(93))
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Builds the fixture tree under `root`: a multi-MiB file, deep directories, a long name, a
/// symlink, an empty file, an empty directory, a README. Returns the relative paths of files.
pub fn build_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data).expect("write");
    };
    w("README.TXT", b"This ISO was written by osimage.\n");
    w(
        "osimage/packs/pack-000000.opk",
        &noise(6 * 1024 * 1024 + 123, 1),
    );
    w("osimage/packs/pack-000001.opk", &noise(70_000, 2));
    w("osimage/manifest.bin", &noise(4096, 3));
    w("deep/1/2/3/4/5/6/7/8/9/10/11/leaf.txt", b"deep leaf\n");
    w(&format!("names/{}", long_name()), b"long\n");
    w("names/Mixed Case & spaces.TXT", b"mixed\n");
    w("names/mixed case & spaces.txt", b"lower\n");
    w("names/empty", b"");
    std::fs::create_dir_all(root.join("emptydir")).expect("mkdir");
    symlink(
        "../osimage/packs/pack-000001.opk",
        root.join("names/link-to-pack"),
    )
    .expect("symlink");
    symlink("/nonexistent/abs", root.join("names/dangling")).expect("symlink");
}

/// Walks `root` into an `IsoSpec` (files by path, symlinks, directories), sorted.
pub fn spec_from_tree(root: &Path, volume_id: &str) -> IsoSpec {
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    IsoSpec {
        volume_id: volume_id.to_string(),
        files,
        boot: None,
        hybrid: true,
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<IsoFile>) {
    use std::os::unix::fs::MetadataExt;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        let rel = p
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let source = if md.file_type().is_symlink() {
            IsoSource::Symlink(
                std::fs::read_link(&p)
                    .expect("readlink")
                    .to_string_lossy()
                    .into(),
            )
        } else if md.is_dir() {
            walk(root, &p, out);
            IsoSource::Dir
        } else {
            IsoSource::Path(p.clone())
        };
        out.push(IsoFile {
            path: rel,
            source,
            mode: md.mode() & 0o7777,
            mtime: md.mtime(),
        });
    }
}

/// Kernel + initramfs for boot tests, fetched/built into `tests/cache/` when absent.
pub fn boot_payload() -> (PathBuf, PathBuf) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = manifest.join("tests/cache/iso-boot");
    std::fs::create_dir_all(&cache).expect("cache dir");
    need(&[("apt-get", "apt"), ("dpkg-deb", "dpkg")]);
    let out = run(Command::new("sh")
        .arg(manifest.join("tests/boot/fetch-kernel.sh"))
        .arg(&cache));
    let kernel = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    // rebuilt every run (a second): it must follow tests/boot/ edits
    let initrd = cache.join("initrd.gz");
    need(&[("busybox", "busybox-static"), ("cpio", "cpio")]);
    run(Command::new("sh")
        .arg(manifest.join("tests/boot/mkinitramfs.sh"))
        .arg(&initrd)
        .arg(cache.join("modules")));
    (kernel, initrd)
}

/// The grub.cfg of the boot test: serial console, no menu delay, boot the test kernel.
pub const TEST_GRUB_CFG: &str = "serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry \"osimage boot test\" {
    linux /boot/vmlinuz console=ttyS0,115200 quiet panic=-1
    initrd /boot/initrd.gz
}
";

/// As [`TEST_GRUB_CFG`], with `osimage.isofs=1`: the initramfs mounts the ISO and describes
/// its `/fixture` with tests/boot/check-tree.sh.
pub fn isofs_grub_cfg() -> String {
    TEST_GRUB_CFG.replace("panic=-1", "panic=-1 osimage.isofs=1")
}

/// tests/boot/check-tree.sh's view of `dir` (lines starting with `ISOFS-`), sorted.
pub fn describe_tree(dir: &Path) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boot/check-tree.sh");
    let out = run(Command::new("sh").arg(script).arg(dir).env("LC_ALL", "C"));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ISOFS-"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}
