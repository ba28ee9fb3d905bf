//! A disk seen from the host: attached to a loop device with its partition nodes (`partx`:
//! there is no udev here), mounted, its GPT read by `sfdisk --json`, its superblocks by
//! `blkid -p`, its ESP's files read with mtools (this host's kernel has no vfat). Everything
//! is undone on drop, so a failing assertion leaves no loop device or mount behind.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{run, run_stdout};

/// A disk image on a loop device, with its partitions as `<dev>pN`.
pub struct Attached {
    pub dev: String,
}

impl Attached {
    /// Attaches `image`; `read_only` for every disk the test only looks at.
    pub fn new(image: &Path, read_only: bool) -> Attached {
        let mut cmd = Command::new("losetup");
        cmd.args(["-f", "--show"]);
        if read_only {
            cmd.arg("-r");
        }
        let dev = run_stdout(cmd.arg(image)).trim().to_string();
        let attached = Attached { dev };
        // partx -a fails when the kernel already added the partitions (some loop drivers
        // scan by themselves); what counts is that the nodes are there afterwards.
        let _ = Command::new("partx").args(["-a", &attached.dev]).output();
        let name = attached.dev.trim_start_matches("/dev/").to_string();
        let sys = PathBuf::from("/sys/block").join(&name);
        for entry in std::fs::read_dir(&sys).into_iter().flatten().flatten() {
            let part = entry.file_name().to_string_lossy().into_owned();
            if !part.starts_with(&name) || !entry.path().join("partition").exists() {
                continue;
            }
            let node = format!("/dev/{part}");
            if !Path::new(&node).exists() {
                // devtmpfs normally makes it; make it if not
                let dev = std::fs::read_to_string(entry.path().join("dev")).unwrap_or_default();
                if let Some((maj, min)) = dev.trim().split_once(':') {
                    run(Command::new("mknod").args([&node, "b", maj, min]));
                }
            }
        }
        attached
    }

    /// The node of partition `n` (1-based).
    pub fn part(&self, n: u32) -> String {
        let p = format!("{}p{n}", self.dev);
        assert!(
            Path::new(&p).exists(),
            "{p} missing: the disk has no partition {n}"
        );
        p
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = Command::new("partx").args(["-d", &self.dev]).output();
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
    }
}

/// A mount, undone on drop (lazily if something still holds it).
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    /// `mount -o OPTIONS SOURCE DIR` (`--bind` is passed as an option word: `bind`).
    pub fn new(source: &str, dir: &Path, options: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        run(Command::new("mount").args(["-o", options, source]).arg(dir));
        Mount {
            dir: dir.to_path_buf(),
        }
    }

    /// A read-only mount of an ext4 that never replays the journal (nothing written).
    pub fn ext4_ro(dev: &str, dir: &Path) -> Mount {
        Mount::new(dev, dir, "ro,noload")
    }

    /// A read-only bind mount of a directory (a bind is made read-only by a remount).
    pub fn bind_ro(source: &Path, dir: &Path) -> Mount {
        let m = Mount::new(&source.to_string_lossy(), dir, "bind");
        run(Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dir));
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The partition table as `sfdisk --json` reads it from the image file.
pub fn table(image: &Path) -> serde_json::Value {
    let text = run_stdout(Command::new("sfdisk").arg("--json").arg(image));
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("sfdisk --json {}: {e}\n{text}", image.display()));
    v["partitiontable"].clone()
}

/// The superblock and partition-entry probe of one device (`blkid -p -o export`).
pub fn blkid(dev: &str) -> BTreeMap<String, String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", dev])
        .output()
        .unwrap_or_else(|e| panic!("blkid: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Copies the files of the FAT at byte `offset` of `image` into `dest` (mtools: names,
/// bytes, FAT times; from the image file, not a device, so mtools asks no geometry).
pub fn read_fat(image: &Path, offset: u64, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap_or_else(|e| panic!("mkdir {}: {e}", dest.display()));
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-m", "-n", "-i"])
        .arg(format!("{}@@{offset}", image.display()))
        .arg("::*")
        .arg(dest));
}

/// Byte offset of partition `n` (1-based) per `sfdisk --json`, 512-byte sectors.
pub fn part_offset(image: &Path, n: usize) -> u64 {
    let t = table(image);
    let start = t["partitions"][n - 1]["start"].as_u64();
    start.unwrap_or_else(|| panic!("{}: no partition {n}: {t:#}", image.display())) * 512
}

/// `len` bytes at `offset` of a file or device.
pub fn bytes(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {} at {offset}: {e}", path.display()));
    buf
}

/// BLAKE3 of a whole file (a disk image: every byte, holes read as zeros).
pub fn hash(path: &Path) -> String {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).expect("reading the disk image");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().to_hex().to_string()
}

/// A sparse file of `bytes` (a blank disk: no partition table, no filesystem signature).
pub fn sparse(path: &Path, bytes: u64) {
    let _ = std::fs::remove_file(path);
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
}
