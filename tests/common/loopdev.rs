//! Loop-device disks for the restore tests (root only): sparse image files, loop devices with
//! partition nodes (no udev here: `partx -a`, else mknod from sysfs), mounts undone on drop,
//! and tools run with their failures shown.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const MIB: u64 = 1 << 20;

/// Runs `cmd args`, panicking with its stderr when it fails; returns stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd args` with `input` on stdin, panicking when it fails.
pub fn run_stdin(cmd: &str, args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the partition table `script` (sfdisk's input format) into the image file `img`,
/// telling no kernel (no loop device is attached yet).
pub fn sfdisk_script(img: &Path, script: &str) {
    run_stdin(
        "sfdisk",
        &[
            "--no-reread",
            "--no-tell-kernel",
            "-q",
            img.to_str().unwrap(),
        ],
        script,
    );
}

/// A sparse file of `bytes`.
pub fn sparse(path: &Path, bytes: u64) {
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

/// A loop device over an image file, detached (partitions first) even when a test fails.
pub struct Loop {
    pub dev: String,
}

impl Loop {
    pub fn attach(image: &Path) -> Loop {
        let dev = run("losetup", &["-f", "--show", image.to_str().unwrap()])
            .trim()
            .to_string();
        let l = Loop { dev };
        let _ = Command::new("partx").args(["-a", &l.dev]).output();
        l
    }

    /// The kernel name, e.g. `loop3`.
    pub fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }

    /// The node of partition `n`: once the kernel has the partition (sysfs), the devtmpfs node
    /// if it names that partition, else one made from sysfs. A node left by an earlier user of
    /// this loop number is never taken for the partition.
    pub fn part(&self, n: u32) -> String {
        let name = format!("{}p{n}", self.name());
        let node = format!("/dev/{name}");
        let sys = format!("/sys/class/block/{name}/dev");
        let mut dev = String::new();
        for i in 0..250 {
            if let Ok(d) = std::fs::read_to_string(&sys) {
                dev = d.trim().to_string();
                break;
            }
            if i % 50 == 49 {
                let _ = Command::new("partx").args(["-u", &self.dev]).output();
                let _ = Command::new("partx").args(["-a", &self.dev]).output();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !dev.is_empty(),
            "{node}: the kernel shows no such partition"
        );
        let (ma, mi) = dev.split_once(':').unwrap();
        let wanted = rustix::fs::makedev(ma.parse().unwrap(), mi.parse().unwrap());
        match rustix::fs::stat(node.as_str()) {
            Ok(st) if st.st_rdev == wanted => {}
            Ok(_) => {
                std::fs::remove_file(&node).unwrap();
                run("mknod", &[&node, "b", ma, mi]);
            }
            Err(_) => run_mknod(&node, ma, mi),
        }
        node
    }
}

/// mknod, tolerating devtmpfs having made the node in the meantime.
fn run_mknod(node: &str, major: &str, minor: &str) {
    let out = Command::new("mknod")
        .args([node, "b", major, minor])
        .output()
        .unwrap_or_else(|e| panic!("running mknod: {e}"));
    assert!(
        out.status.success() || Path::new(node).exists(),
        "mknod {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Loop {
    /// Partitions first, then the device; and waits until the kernel has really let it go:
    /// `losetup -d` of a device something still holds only marks it for autoclear, and a
    /// filesystem left visible on it would meet its restored copy's UUID (mkfs.btrfs -U:
    /// "non-unique UUID").
    fn drop(&mut self) {
        let _ = Command::new("partx").args(["-d", &self.dev]).output();
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
        let backing = format!("/sys/block/{}/loop/backing_file", self.name());
        for _ in 0..500 {
            if !Path::new(&backing).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!(
            "warning: {} is still attached 10 s after losetup -d: something holds it open",
            self.dev
        );
    }
}

/// A mount, undone on drop.
pub struct Mounted(pub PathBuf);

impl Mounted {
    pub fn new(dev: &str, dir: &Path, options: &[&str]) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let mut args: Vec<&str> = options.to_vec();
        args.extend([dev, dir.to_str().unwrap()]);
        run("mount", &args);
        Mounted(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    /// Unmounts, retrying for up to 5 s while the mount is busy (a child of another test may
    /// hold a file of it for a moment), then detaches it lazily.
    fn drop(&mut self) {
        for _ in 0..50 {
            match Command::new("umount").arg(&self.0).output() {
                Ok(o) if o.status.success() => return,
                Ok(o) if String::from_utf8_lossy(&o.stderr).contains("not mounted") => return,
                _ => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// A fresh XFS (reflink on, as `mkfs.xfs` makes it) on a 1 GiB sparse file in `dir`, mounted
/// at `dir/mnt`; unmounted, then detached, on drop.
pub struct Xfs {
    // Fields drop in order: the mount before the loop device.
    fs: Mounted,
    _disk: Loop,
}

impl Xfs {
    pub fn new(dir: &Path) -> Xfs {
        let img = dir.join("xfs.img");
        sparse(&img, 1 << 30);
        let disk = Loop::attach(&img);
        run("mkfs.xfs", &["-q", "-f", &disk.dev]);
        let fs = Mounted::new(&disk.dev, &dir.join("mnt"), &[]);
        Xfs { fs, _disk: disk }
    }

    /// Where it is mounted.
    pub fn mnt(&self) -> &Path {
        &self.fs.0
    }
}

/// `blkid -p` value of `tag` on `dev` (probing the device, no cache).
pub fn blkid(dev: &str, tag: &str) -> String {
    run("blkid", &["-p", "-s", tag, "-o", "value", dev])
        .trim()
        .to_string()
}

/// `sfdisk -J` of a disk or image file.
pub fn sfdisk_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&run("sfdisk", &["-J", path.to_str().unwrap()])).unwrap()
}
