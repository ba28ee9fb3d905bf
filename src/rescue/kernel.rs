//! The rescue kernel: the captured system's own, so its drivers match that hardware.
//! `ROOT/boot/vmlinuz-<version>` with its modules in `ROOT/{usr/,}lib/modules/<version>`,
//! and what its `ROOT/boot/config-<version>` says it can decompress.

use std::path::{Path, PathBuf};

use super::RescueError;
use super::rootfs::{Resolved, RootFs};

/// The compression of the initramfs, as the kernel's `CONFIG_RD_*` allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

/// The chosen kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Host path of the kernel image.
    pub image: PathBuf,
    /// `uname -r` of that kernel.
    pub version: String,
    /// Its modules directory inside the root.
    pub modules_dir: Resolved,
    pub compression: Compression,
}

/// Picks the kernel: `choice` is a path to a kernel image (on the host, or inside ROOT) or a
/// version; without it, the newest `boot/vmlinuz-*` that has its modules.
pub fn find_kernel(fs: &RootFs, choice: Option<&Path>) -> Result<Kernel, RescueError> {
    let image = match choice {
        Some(c) => choose(fs, c)?,
        None => newest(fs)?,
    };
    let version = version_of(&image)?;
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .find_map(|d| fs.find(&format!("{d}/{version}")))
        .ok_or_else(|| RescueError::NoModules {
            version: version.clone(),
            root: fs.root().to_path_buf(),
        })?;
    // Read as bytes: a config with a stray non-UTF-8 byte anywhere (a comment, a string
    // option) still says which decompressors the kernel has (issue #22: such a file read as
    // text fell back to gzip -9, rebuilding the whole initramfs in ~15 s).
    let compression = fs
        .find(&format!("boot/config-{version}"))
        .and_then(|r| std::fs::read(fs.host_path(&r.path)).ok())
        .map_or(Compression::Gzip, |c| {
            compression_from_config(&String::from_utf8_lossy(&c))
        });
    Ok(Kernel {
        image,
        version,
        modules_dir,
        compression,
    })
}

/// `--kernel`: a path (it has a `/`: on this machine, else inside ROOT) or a version (ROOT's
/// `boot/vmlinuz-VERSION`); either way a file that is an x86 kernel image (issue #24 item 12).
fn choose(fs: &RootFs, choice: &Path) -> Result<PathBuf, RescueError> {
    let s = choice.to_string_lossy();
    let fail = |detail: String| RescueError::NoKernel {
        root: fs.root().to_path_buf(),
        detail,
    };
    let found = if s.contains('/') {
        let inside = fs
            .find(&s)
            .map(|r| fs.host_path(&r.path))
            .filter(|p| p.is_file());
        if choice.is_file() {
            choice.to_path_buf()
        } else if let Some(p) = inside {
            p
        } else if choice.exists() {
            return Err(fail(format!("--kernel {s}: not a regular file")));
        } else {
            return Err(fail(format!(
                "--kernel {s}: no such file (on this machine, nor under {})",
                fs.root().display()
            )));
        }
    } else {
        match fs
            .find(&format!("boot/vmlinuz-{s}"))
            .map(|r| fs.host_path(&r.path))
            .filter(|p| p.is_file())
        {
            Some(p) => p,
            // a file in the working directory (`--kernel vmlinuz`)
            None if choice.is_file() => choice.to_path_buf(),
            None => {
                let have = installed(fs);
                return Err(fail(format!(
                    "--kernel {s}: no boot/vmlinuz-{s} ({}); give a version or a path to a \
                     kernel image",
                    if have.is_empty() {
                        "boot/ has no vmlinuz-* at all".to_string()
                    } else {
                        format!("boot/ has vmlinuz-{}", have.join(", vmlinuz-"))
                    }
                )));
            }
        }
    };
    check_bzimage(&found).map_err(|why| fail(format!("--kernel {s}: {why}")))?;
    Ok(found)
}

/// The versions of ROOT's `boot/vmlinuz-*`, sorted.
fn installed(fs: &RootFs) -> Vec<String> {
    let Some(boot) = fs.find("boot") else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(fs.host_path(&boot.path)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .collect();
    v.sort_by(|a, b| version_cmp(a, b));
    v
}

/// Whether `path` is an x86 kernel image: the boot protocol's "HdrS" at 0x202
/// (Documentation/arch/x86/boot.rst), as every bzImage since 2.0 has; else why not.
pub fn check_bzimage(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 0x206];
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("cannot read it: {e}")),
        }
    }
    if got == head.len() && &head[0x202..0x206] == b"HdrS" {
        Ok(())
    } else {
        Err(format!(
            "{} is no x86 kernel image (no boot protocol header \"HdrS\" at 0x202)",
            path.display()
        ))
    }
}

fn newest(fs: &RootFs) -> Result<PathBuf, RescueError> {
    let no_kernel = |detail: &str| RescueError::NoKernel {
        root: fs.root().to_path_buf(),
        detail: detail.to_string(),
    };
    let boot = fs.find("boot").ok_or_else(|| no_kernel("no /boot"))?;
    let entries =
        std::fs::read_dir(fs.host_path(&boot.path)).map_err(|e| no_kernel(&e.to_string()))?;
    let mut versions: Vec<String> = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .filter(|v| {
            ["lib/modules", "usr/lib/modules"]
                .iter()
                .any(|d| fs.find(&format!("{d}/{v}/modules.dep")).is_some())
        })
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    // The newest that is a kernel image: a file merely named vmlinuz-X is not one.
    let mut refused = Vec::new();
    while let Some(v) = versions.pop() {
        let Some(r) = fs.find(&format!("boot/vmlinuz-{v}")) else {
            continue;
        };
        let host = fs.host_path(&r.path);
        match check_bzimage(&host) {
            Ok(()) => return Ok(host),
            Err(why) => refused.push(why),
        }
    }
    Err(no_kernel(&if refused.is_empty() {
        "no boot/vmlinuz-VERSION with lib/modules/VERSION/modules.dep".to_string()
    } else {
        refused.join("; ")
    }))
}

/// The version of a kernel image: from its name (`vmlinuz-<version>`), else from the x86 boot
/// protocol header (`kernel_version` at 0x20E points to a string at +0x200).
pub fn version_of(image: &Path) -> Result<String, RescueError> {
    if let Some(v) = image
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
    {
        return Ok(v.to_string());
    }
    let bytes = std::fs::read(image).map_err(|e| RescueError::io("reading", image, e))?;
    bzimage_version(&bytes).ok_or_else(|| RescueError::NoKernel {
        root: image.to_path_buf(),
        detail: "cannot read the kernel version from the image header".into(),
    })
}

/// x86 boot protocol (Documentation/arch/x86/boot.rst): "HdrS" at 0x202, version ≥ 0x0200,
/// `kernel_version` (u16) at 0x20E.
pub fn bzimage_version(bytes: &[u8]) -> Option<String> {
    if bytes.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes(bytes.get(0x20e..0x210)?.try_into().ok()?) as usize + 0x200;
    let s = bytes.get(ptr..ptr.checked_add(256)?.min(bytes.len()))?;
    let end = s.iter().position(|&b| b == 0 || b == b' ')?;
    let v = std::str::from_utf8(&s[..end]).ok()?;
    (!v.is_empty()).then(|| v.to_string())
}

/// zstd when the kernel can unpack it, else gzip, else none (every kernel reads a plain cpio).
pub fn compression_from_config(config: &str) -> Compression {
    let has = |opt: &str| config.lines().any(|l| l.trim() == format!("{opt}=y"));
    if has("CONFIG_RD_ZSTD") {
        Compression::Zstd
    } else if has("CONFIG_RD_GZIP") {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// Orders versions by their numeric parts (`6.10.0` after `6.9.0`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .map(|p| (p.parse().unwrap_or(0), p.to_string()))
            .collect()
    };
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_picks_the_best_supported() {
        assert_eq!(
            compression_from_config("CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n"),
            Compression::Zstd
        );
        assert_eq!(
            compression_from_config("CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n"),
            Compression::Gzip
        );
        assert_eq!(compression_from_config(""), Compression::None);
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["6.10.0-1-amd64", "6.9.0-3-amd64", "6.1.0-56-amd64"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, vec!["6.1.0-56-amd64", "6.9.0-3-amd64", "6.10.0-1-amd64"]);
    }

    #[test]
    fn finds_the_newest_kernel_with_modules() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("boot")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/modules/6.1.0-9-amd64")).unwrap();
        std::fs::write(r.join("usr/lib/modules/6.1.0-9-amd64/modules.dep"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        for v in ["6.1.0-9-amd64", "6.2.0-1-amd64"] {
            std::fs::write(r.join(format!("boot/vmlinuz-{v}")), bzimage()).unwrap();
        }
        // A byte that is not UTF-8 elsewhere in the file does not hide the option.
        let mut config = b"CONFIG_LOCALVERSION=\"\xff\xfe\"\n".to_vec();
        config.extend_from_slice(b"CONFIG_RD_ZSTD=y\n");
        std::fs::write(r.join("boot/config-6.1.0-9-amd64"), config).unwrap();
        let fs = RootFs::new(r);
        let k = find_kernel(&fs, None).unwrap();
        assert_eq!(k.version, "6.1.0-9-amd64"); // 6.2 has no modules
        assert_eq!(k.modules_dir.path, "usr/lib/modules/6.1.0-9-amd64");
        assert_eq!(k.compression, Compression::Zstd);
        assert!(find_kernel(&fs, Some(Path::new("6.2.0-1-amd64"))).is_err());
        assert!(find_kernel(&fs, Some(Path::new("7.0"))).is_err());
    }

    /// The smallest file that passes as a kernel image: the boot protocol's magic.
    fn bzimage() -> Vec<u8> {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img
    }

    /// Issue #24 item 12: a file named like a kernel is not one; a missing --kernel says so.
    #[test]
    fn a_file_named_vmlinuz_is_not_taken_for_a_kernel() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("boot")).unwrap();
        for v in ["6.1.0-9-amd64", "6.2.0-1-amd64"] {
            std::fs::create_dir_all(r.join(format!("lib/modules/{v}"))).unwrap();
            std::fs::write(r.join(format!("lib/modules/{v}/modules.dep")), "").unwrap();
        }
        // the newest is a random file: the older real one is taken
        std::fs::write(r.join("boot/vmlinuz-6.2.0-1-amd64"), vec![7u8; 4096]).unwrap();
        std::fs::write(r.join("boot/vmlinuz-6.1.0-9-amd64"), bzimage()).unwrap();
        let fs = RootFs::new(r);
        assert_eq!(find_kernel(&fs, None).unwrap().version, "6.1.0-9-amd64");
        let e = find_kernel(&fs, Some(Path::new("6.2.0-1-amd64")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is no x86 kernel image"), "{e}");
        // only the random one left: refused, naming it
        std::fs::remove_file(r.join("boot/vmlinuz-6.1.0-9-amd64")).unwrap();
        let e = find_kernel(&fs, None).unwrap_err().to_string();
        assert!(
            e.contains("vmlinuz-6.2.0-1-amd64 is no x86 kernel image"),
            "{e}"
        );
        let e = find_kernel(&fs, Some(Path::new("/nonexistent/vmlinuz")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--kernel /nonexistent/vmlinuz: no such file (on this machine, nor under"),
            "{e}"
        );
        let e = find_kernel(&fs, Some(Path::new("7.0")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--kernel 7.0: no boot/vmlinuz-7.0 (boot/ has vmlinuz-6.2.0-1-amd64)"),
            "{e}"
        );
    }

    #[test]
    fn bzimage_header_version() {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x0300u16.to_le_bytes());
        img[0x500..0x515].copy_from_slice(b"6.1.0-56-amd64 (debia");
        assert_eq!(bzimage_version(&img).as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(bzimage_version(&img[..0x300]), None);
    }
}
