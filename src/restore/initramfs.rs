//! Does the restored system's initramfs hold the driver of the disk it now lives on (issue #5:
//! "initramfs if the disk type changed and the captured initramfs lacks the driver")?
//!
//! - the target's drivers: the kernel modules bound along `/sys/block/X/device`'s ancestry
//!   (`sd_mod` → `ahci`, `virtio_blk` → `virtio_pci`, `nvme`), each driver's `module` link;
//! - the initramfs's modules: an initramfs is one or more cpio "newc" archives back to back
//!   (Debian puts an uncompressed early archive, microcode, before the compressed main one),
//!   each possibly compressed (zstd here in Rust; gzip, xz, lz4 through their tools);
//! - a module built into the restored kernel (`lib/modules/VER/modules.builtin`) needs nothing.
//!
//! When one is missing, `apply` runs the restored system's `update-initramfs -u -k all` (or
//! `dracut --regenerate-all -f`) chrooted, and logs it.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Largest decompressed initramfs part read (a Debian one is ~100 MiB).
const MAX_PART: u64 = 2 << 30;

/// Module names as the kernel compares them (`-` and `_` are the same).
pub fn module_name(file: &str) -> Option<String> {
    let base = file.rsplit('/').next()?;
    let stem = [".ko.zst", ".ko.xz", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

/// Every path in an initramfs image (all its archives, decompressed).
pub fn list(image: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    walk(image, &mut names, &mut |_| {}, 0)?;
    Ok(names)
}

/// What `find` reports for each decompressed archive of `image` (file names and contents as
/// the cpio holds them), merged, sorted, each once: e.g. the old UUIDs an initramfs names.
pub fn contents_matching(
    image: &[u8],
    find: &dyn Fn(&[u8]) -> Vec<String>,
) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut found = Vec::new();
    walk(
        image,
        &mut names,
        &mut |archive| found.extend(find(archive)),
        0,
    )?;
    found.sort();
    found.dedup();
    Ok(found)
}

fn hex(b: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok()
}

/// Parses archives from `data` until it ends, descending into compressed parts; `visit` sees
/// each archive's bytes.
fn walk(
    mut data: &[u8],
    names: &mut Vec<String>,
    visit: &mut dyn FnMut(&[u8]),
    depth: u32,
) -> Result<(), String> {
    if depth > 4 {
        return Err("initramfs nested too deeply".into());
    }
    loop {
        // Archives are padded with zeros between them.
        let skip = data.iter().take_while(|&&b| b == 0).count();
        data = &data[skip..];
        if data.is_empty() {
            return Ok(());
        }
        if data.starts_with(b"07070") {
            let rest = cpio(data, names)?;
            visit(&data[..data.len() - rest.len()]);
            data = rest;
            continue;
        }
        let inflated = decompress(data)?;
        return walk(&inflated, names, visit, depth + 1);
    }
}

/// One newc archive: its names pushed, the bytes after its trailer returned.
fn cpio<'a>(mut data: &'a [u8], names: &mut Vec<String>) -> Result<&'a [u8], String> {
    let pad4 = |n: usize| n.div_ceil(4) * 4;
    loop {
        if data.len() < 110 || !(data.starts_with(b"070701") || data.starts_with(b"070702")) {
            return Err("truncated or damaged cpio header".into());
        }
        let field = |i: usize| hex(&data[6 + 8 * i..14 + 8 * i]);
        let (Some(filesize), Some(namesize)) = (field(6), field(11)) else {
            return Err("cpio header with a non-hex field".into());
        };
        let (filesize, namesize) = (filesize as usize, namesize as usize);
        let name_end = 110usize.checked_add(namesize).filter(|&e| e <= data.len());
        let Some(name_end) = name_end.filter(|_| namesize > 0) else {
            return Err("cpio name runs past the end".into());
        };
        let name = String::from_utf8_lossy(&data[110..name_end - 1]).into_owned();
        let body = pad4(name_end);
        let next = body
            .checked_add(pad4(filesize))
            .ok_or("cpio entry too large")?;
        if name == "TRAILER!!!" {
            return Ok(&data[body.min(data.len())..]);
        }
        if body + filesize > data.len() {
            return Err(format!("cpio entry {name} runs past the end"));
        }
        names.push(name);
        data = &data[next.min(data.len())..];
    }
}

/// The rest of an initramfs, decompressed by its magic.
fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let tool: &[&str] = if data.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(data)
            .map_err(|e| format!("zstd: {e}"))?
            .take(MAX_PART)
            .read_to_end(&mut out)
            .map_err(|e| format!("zstd: {e}"))?;
        return Ok(out);
    } else if data.starts_with(&[0x1F, 0x8B]) {
        &["gzip", "-dc"]
    } else if data.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        &["xz", "-dc"]
    } else if data.starts_with(&[0x02, 0x21, 0x4C, 0x18]) {
        &["lz4", "-dc"]
    } else {
        return Err(format!(
            "unknown initramfs compression (magic {:02x?})",
            &data[..data.len().min(4)]
        ));
    };
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("running {}: {e}", tool[0]))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = data.to_vec();
    // Fed from a thread: the tool's output must be read while it is written to.
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        // The tool may stop reading at its stream's end (trailing archives): not an error.
        let _ = stdin.write_all(&input);
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .ok_or("no stdout")?
        .take(MAX_PART)
        .read_to_end(&mut out)
        .map_err(|e| format!("{}: {e}", tool[0]))?;
    let _ = child.wait();
    let _ = feeder.join();
    if out.is_empty() {
        return Err(format!("{} produced nothing", tool.join(" ")));
    }
    Ok(out)
}

/// The kernel modules in an initramfs.
pub fn modules_in(image: &[u8]) -> Result<BTreeSet<String>, String> {
    Ok(list(image)?.iter().filter_map(|n| module_name(n)).collect())
}

/// The modules bound to `disk` (a kernel name like `sda`) and its ancestors in sysfs, nearest
/// first; empty for a device without a driver (a loop device).
pub fn disk_modules(sys: &Path, disk: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut dev) = std::fs::canonicalize(sys.join("block").join(disk).join("device")) else {
        return out;
    };
    let devices = sys.join("devices");
    while dev.starts_with(&devices) && dev != devices {
        if let Ok(driver) = std::fs::canonicalize(dev.join("driver"))
            && let Ok(module) = std::fs::read_link(driver.join("module"))
            && let Some(name) = module.file_name()
        {
            let name = name.to_string_lossy().replace('-', "_");
            if !out.contains(&name) {
                out.push(name);
            }
        }
        if !dev.pop() {
            break;
        }
    }
    out
}

/// One initramfs of the restored system and its kernel version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub path: PathBuf,
    pub version: String,
}

/// The initramfs images in `boot` (the restored `/boot`: Debian `initrd.img-VER`, dracut
/// `initramfs-VER.img`), for kernels whose modules are in `root/lib/modules`.
pub fn images(boot: &Path, root: &Path) -> Vec<Image> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(boot) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let version = name.strip_prefix("initrd.img-").or_else(|| {
            name.strip_prefix("initramfs-")
                .and_then(|v| v.strip_suffix(".img"))
        });
        if let Some(v) = version
            && root.join("usr/lib/modules").join(v).is_dir()
                | root.join("lib/modules").join(v).is_dir()
        {
            out.push(Image {
                path: e.path(),
                version: v.to_string(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Modules built into kernel `version` of the tree at `root`.
pub fn builtin(root: &Path, version: &str) -> BTreeSet<String> {
    ["usr/lib/modules", "lib/modules"]
        .iter()
        .find_map(|d| {
            std::fs::read_to_string(root.join(d).join(version).join("modules.builtin")).ok()
        })
        .map(|t| t.lines().filter_map(module_name).collect())
        .unwrap_or_default()
}

/// What one initramfs lacks of the target's drivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub image: Image,
    pub missing: Vec<String>,
}

/// Checks each initramfs in `boot` against the `needed` modules; an image that cannot be read
/// is an `Err` naming it (reported, not fatal: the restore is done, the boot may still work).
pub fn check(boot: &Path, root: &Path, needed: &[String]) -> Vec<Result<Check, String>> {
    images(boot, root)
        .into_iter()
        .map(|image| {
            let missing = recheck(&image, root, needed)?;
            Ok(Check { image, missing })
        })
        .collect()
}

/// What `image` (read again, e.g. after it was regenerated) still lacks of `needed`.
pub fn recheck(image: &Image, root: &Path, needed: &[String]) -> Result<Vec<String>, String> {
    let data =
        std::fs::read(&image.path).map_err(|e| format!("reading {}: {e}", image.path.display()))?;
    let have = modules_in(&data).map_err(|e| format!("{}: {e}", image.path.display()))?;
    Ok(missing(needed, &have, &builtin(root, &image.version)))
}

/// Where the restored system keeps its initramfs generators (Debian, then dracut).
pub const UPDATE_INITRAMFS: &[&str] = &["usr/sbin/update-initramfs", "sbin/update-initramfs"];
pub const DRACUT: &[&str] = &["usr/bin/dracut", "usr/sbin/dracut", "sbin/dracut"];

/// Regenerates the initramfs of kernel `version` with the restored system's own tool,
/// chrooted (`update-initramfs -u -k VER`, else `dracut -f --kver VER`). `Ok(None)`: the
/// tree has neither.
pub fn regenerate(
    c: &super::grub::Chroot,
    version: &str,
    on: &Path,
) -> Result<Option<String>, super::RestoreError> {
    use std::ffi::OsStr;
    if let Some(tool) = c.find(UPDATE_INITRAMFS) {
        c.run(
            &[
                OsStr::new(&tool),
                OsStr::new("-u"),
                OsStr::new("-k"),
                OsStr::new(version),
            ],
            on,
        )?;
        return Ok(Some(format!("update-initramfs -u -k {version}")));
    }
    if let Some(tool) = c.find(DRACUT) {
        c.run(
            &[
                OsStr::new(&tool),
                OsStr::new("-f"),
                OsStr::new("--kver"),
                OsStr::new(version),
            ],
            on,
        )?;
        return Ok(Some(format!("dracut -f --kver {version}")));
    }
    Ok(None)
}

/// The `needed` modules that neither `image` holds nor the kernel has built in.
pub fn missing(
    needed: &[String],
    image: &BTreeSet<String>,
    builtin: &BTreeSet<String>,
) -> Vec<String> {
    needed
        .iter()
        .filter(|m| !image.contains(*m) && !builtin.contains(*m))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newc archive of empty regular files named `names`.
    fn newc(names: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, n) in names.iter().chain(&["TRAILER!!!"]).enumerate() {
            let data: &[u8] = if n.ends_with(".ko") { b"\x7fELF" } else { b"" };
            let h = format!(
                "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
                i,
                0o100644,
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                n.len() + 1,
                0
            );
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(n.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    #[test]
    fn early_archive_then_zstd_main_archive() {
        let mut img = newc(&["kernel/x86/microcode/GenuineIntel.bin"]);
        img.resize(512, 0);
        let main = newc(&[
            "usr/lib/modules/6.1.0/kernel/drivers/block/virtio_blk.ko",
            "usr/lib/modules/6.1.0/kernel/drivers/ata/ahci.ko.xz",
            "usr/lib/modules/6.1.0/kernel/drivers/scsi/sd_mod.ko.zst",
            "etc/fstab",
        ]);
        img.extend(zstd::encode_all(&main[..], 3).unwrap());
        let names = list(&img).unwrap();
        assert_eq!(names.len(), 5, "{names:?}");
        let m = modules_in(&img).unwrap();
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            ["ahci", "sd_mod", "virtio_blk"]
        );
    }

    #[test]
    fn damaged_images_are_errors_not_panics() {
        let img = newc(&["a.ko"]);
        for n in [10, 111, 115, img.len() - 20] {
            assert!(list(&img[..n]).is_err(), "cut at {n}");
        }
        assert!(
            list(b"\x13\x37 not an initramfs")
                .unwrap_err()
                .contains("unknown")
        );
    }

    #[test]
    fn missing_ignores_builtin_and_present_modules() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let needed = vec!["sd_mod".to_string(), "ahci".into(), "libata".into()];
        assert_eq!(
            missing(&needed, &set(&["sd_mod"]), &set(&["libata"])),
            ["ahci"]
        );
        assert_eq!(
            module_name("kernel/drivers/nvme/host/nvme-core.ko.xz").unwrap(),
            "nvme_core"
        );
        assert_eq!(module_name("etc/modules"), None);
    }

    #[test]
    fn disk_modules_walk_the_sysfs_ancestry() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path();
        // /sys/devices/pci0/0000:00:1f.2/ata1/host0/target0/0:0:0:0 with drivers sd → ahci.
        let ctrl = sys.join("devices/pci0/0000:00:1f.2");
        let scsi = ctrl.join("ata1/host0/target0/0:0:0:0");
        std::fs::create_dir_all(&scsi).unwrap();
        for (drv, module, at) in [("sd", "sd_mod", &scsi), ("ahci", "ahci", &ctrl)] {
            let d = sys.join("bus/x/drivers").join(drv);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::create_dir_all(sys.join("module").join(module)).unwrap();
            std::os::unix::fs::symlink(sys.join("module").join(module), d.join("module")).unwrap();
            std::os::unix::fs::symlink(&d, at.join("driver")).unwrap();
        }
        std::fs::create_dir_all(sys.join("block/sda")).unwrap();
        std::os::unix::fs::symlink(&scsi, sys.join("block/sda/device")).unwrap();
        assert_eq!(disk_modules(sys, "sda"), ["sd_mod", "ahci"]);
        assert!(disk_modules(sys, "loop0").is_empty());
    }
}
