//! `--force` over a disk a block stack still holds (issue #19 "Bad input and faults"): an
//! earlier restore that was interrupted after its VG, LUKS mapping or MD array was made, or
//! an old system's stack assembled on the target. Everything built on the disk is released
//! top down — device-mapper tables removed, arrays stopped — so the disk can be wiped and
//! the new stack made; nothing mounted is ever released (that stays "in use").

use std::path::Path;
use std::process::Command;

/// Releases every dm and md device built on disk `name` or its partitions, holders of
/// holders first. Returns what was released, for the log.
pub fn release(name: &str) -> Result<Vec<String>, String> {
    release_in(Path::new("/sys/class/block"), name)
}

/// What `release` would refuse, read-only (the dry run's check, `restore::preflight`): a
/// holder of disk `name` that is mounted.
pub fn check_releasable(name: &str) -> Result<(), String> {
    let class = Path::new("/sys/class/block");
    top_down(class, name)
        .iter()
        .try_for_each(|h| not_mounted(class, h))
}

fn release_in(class: &Path, name: &str) -> Result<Vec<String>, String> {
    let mut released = Vec::new();
    for h in top_down(class, name) {
        release_one(class, &h)?;
        released.push(h);
    }
    Ok(released)
}

/// Every dm and md device built on disk `name` or its partitions, holders of holders first,
/// each once.
fn top_down(class: &Path, name: &str) -> Vec<String> {
    let mut devs = vec![name.to_string()];
    if let Ok(rd) = std::fs::read_dir(class.join(name)) {
        for e in rd.flatten() {
            if e.path().join("partition").exists() {
                devs.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut order = Vec::new();
    for d in &devs {
        holders_top_down(class, d, &mut order, 0);
    }
    order
}

/// The holders of `dev`, transitively, each after those built on it.
fn holders_top_down(class: &Path, dev: &str, out: &mut Vec<String>, depth: u32) {
    if depth > 16 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(class.join(dev).join("holders")) else {
        return;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for h in names {
        holders_top_down(class, &h, out, depth + 1);
        if !out.contains(&h) {
            out.push(h);
        }
    }
}

/// Nothing mounted is ever released.
fn not_mounted(class: &Path, h: &str) -> Result<(), String> {
    let dev = std::fs::read_to_string(class.join(h).join("dev")).unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !dev.trim().is_empty()
        && mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(dev.trim()))
    {
        return Err(format!("{h} is mounted: unmount it first"));
    }
    Ok(())
}

fn release_one(class: &Path, h: &str) -> Result<(), String> {
    not_mounted(class, h)?;
    let (tool, args): (&str, Vec<String>) = if h.starts_with("md") {
        ("mdadm", vec!["--stop".into(), format!("/dev/{h}")])
    } else {
        let dm = std::fs::read_to_string(class.join(h).join("dm/name"))
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("{h}: not device-mapper or MD ({e})"))?;
        ("dmsetup", vec!["remove".into(), "--retry".into(), dm])
    };
    let out = Command::new(tool)
        .args(&args)
        .env("DM_DISABLE_UDEV", "1")
        .output()
        .map_err(|e| format!("{tool} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The path of disk `target` if it is a block device (an image file has no holders of its
/// own until attached).
pub fn disk_name(target: &Path) -> Option<String> {
    let meta = std::fs::metadata(target).ok()?;
    if !std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
        return None;
    }
    super::blockdev::kernel_name(target).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fake sysfs: vda with vda1 held by dm-0 (held by dm-1) and vda2 held by md0.
    fn sys() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let c = t.path().join("class/block");
        for (dir, holders) in [
            ("vda", vec![]),
            ("vda/vda1", vec!["dm-0"]),
            ("vda/vda2", vec!["md0"]),
            ("dm-0", vec!["dm-1"]),
            ("dm-1", vec![]),
            ("md0", vec![]),
        ] {
            std::fs::create_dir_all(c.join(dir).join("holders")).unwrap();
            for h in holders {
                std::fs::create_dir_all(c.join(dir).join("holders").join(h)).unwrap();
            }
        }
        for p in ["vda1", "vda2"] {
            std::fs::write(c.join("vda").join(p).join("partition"), "1").unwrap();
            std::os::unix::fs::symlink(c.join("vda").join(p), c.join(p)).unwrap();
        }
        (t, c)
    }

    #[test]
    fn holders_come_top_down() {
        let (_t, c) = sys();
        let mut order = Vec::new();
        holders_top_down(&c, "vda1", &mut order, 0);
        holders_top_down(&c, "vda2", &mut order, 0);
        assert_eq!(order, ["dm-1", "dm-0", "md0"]);
        // Nothing held: nothing to release.
        assert_eq!(release_in(&c, "dm-1").unwrap(), Vec::<String>::new());
    }
}
