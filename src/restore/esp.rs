//! The EFI System Partition: its files come verbatim from the image (the filesystem was made
//! with the recorded volume id and label); then the removable-media path `EFI/BOOT/BOOTX64.EFI`
//! is made to exist, and an NVRAM boot entry added where the firmware exposes efivars.
//!
//! A vfat filesystem is written either mounted (the rescue kernel has vfat) or, where the
//! kernel lacks vfat (some build hosts), filled from a staging directory with mtools' `mcopy`,
//! which keeps modification times: `VfatWriter`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::RestoreError;
use super::mounts::{have, run, run_env};

/// How a vfat filesystem receives its files.
pub enum VfatWriter {
    /// Mounted at this directory: extract writes straight into it.
    Mounted(PathBuf),
    /// Extract writes into `staging`; `finish` copies it onto `device` with mtools.
    Mtools {
        device: PathBuf,
        staging: tempfile::TempDir,
    },
}

impl VfatWriter {
    /// Where extract writes.
    pub fn dir(&self) -> &Path {
        match self {
            VfatWriter::Mounted(d) => d,
            VfatWriter::Mtools { staging, .. } => staging.path(),
        }
    }

    /// Copies the staged tree onto the filesystem (mtools); nothing to do when mounted.
    pub fn finish(&self) -> Result<(), RestoreError> {
        let VfatWriter::Mtools { device, staging } = self else {
            return Ok(());
        };
        let mut items: Vec<PathBuf> = std::fs::read_dir(staging.path())
            .map_err(|e| RestoreError::io("listing", staging.path(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        items.sort();
        if items.is_empty() {
            return Ok(());
        }
        let img = device.as_os_str();
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("-i"),
            img,
            OsStr::new("-s"),
            OsStr::new("-m"),
            OsStr::new("-Q"),
        ];
        args.extend(items.iter().map(|p| p.as_os_str()));
        args.push(OsStr::new("::/"));
        run_env(
            &["mcopy".to_string()],
            &args,
            device,
            &[("MTOOLS_SKIP_CHECK", "1")],
        )?;
        Ok(())
    }
}

/// The removable-media loader's path on an ESP (UEFI 2.10 §3.5.1.1, x64).
pub const REMOVABLE_LOADER: [&str; 3] = ["EFI", "BOOT", "BOOTX64.EFI"];

/// What the written ESP holds at `EFI/BOOT/BOOTX64.EFI`, read back the way its files were
/// written (through the mount, or with mtools): what the restore's report may claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadBack {
    /// A PE image ("MZ") of this many bytes.
    Loader { bytes: u64 },
    /// No such file.
    Missing,
    /// A file that is no PE image (empty, or another format): firmware will not start it.
    NotPe { bytes: u64 },
}

impl ReadBack {
    fn of(data: &[u8]) -> ReadBack {
        let bytes = data.len() as u64;
        if data.starts_with(b"MZ") {
            ReadBack::Loader { bytes }
        } else {
            ReadBack::NotPe { bytes }
        }
    }
}

impl VfatWriter {
    /// Reads `EFI/BOOT/BOOTX64.EFI` back from the filesystem (after `finish`): through the
    /// mount, or with `mtype` from the device (FAT names are case-insensitive either way).
    pub fn read_back_loader(&self) -> Result<ReadBack, RestoreError> {
        match self {
            VfatWriter::Mounted(dir) => {
                let mut at = dir.clone();
                for name in REMOVABLE_LOADER {
                    match find_ci(&at, name) {
                        Some(p) => at = p,
                        None => return Ok(ReadBack::Missing),
                    }
                }
                if !at.is_file() {
                    return Ok(ReadBack::Missing);
                }
                let data =
                    std::fs::read(&at).map_err(|e| RestoreError::io("reading back", &at, e))?;
                Ok(ReadBack::of(&data))
            }
            VfatWriter::Mtools { device, .. } => {
                let path = format!("::/{}", REMOVABLE_LOADER.join("/"));
                let out = std::process::Command::new("mtype")
                    .args([OsStr::new("-i"), device.as_os_str(), OsStr::new(&path)])
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|e| RestoreError::Tool {
                        tool: "mtype".into(),
                        device: device.clone(),
                        msg: e.to_string(),
                    })?;
                let err = String::from_utf8_lossy(&out.stderr);
                if out.status.success() {
                    Ok(ReadBack::of(&out.stdout))
                } else if err.contains("not found") {
                    Ok(ReadBack::Missing)
                } else {
                    Err(RestoreError::Tool {
                        tool: "mtype".into(),
                        device: device.clone(),
                        msg: format!("{} reading back {path}: {}", out.status, err.trim()),
                    })
                }
            }
        }
    }
}

/// The entry of `dir` named `name`, case-insensitively (FAT is case-insensitive; a staging
/// directory is not).
fn find_ci(dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        e.file_name()
            .to_str()
            .filter(|n| n.eq_ignore_ascii_case(name))
            .map(|_| e.path())
    })
}

/// What `ensure_removable` found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EfiLoader {
    /// `\EFI\debian\shimx64.efi`: what an NVRAM entry should start.
    pub loader: Option<String>,
    /// The vendor directory (`debian`).
    pub vendor: Option<String>,
    /// Files copied into EFI/BOOT (empty: BOOTX64.EFI was there).
    pub copied: Vec<String>,
}

/// Makes `esp/EFI/BOOT/BOOTX64.EFI` exist: when missing, the vendor's shim (with GRUB, MokManager
/// and grub.cfg beside it) or GRUB itself is copied there, as `grub-install --removable` would.
pub fn ensure_removable(esp: &Path) -> Result<EfiLoader, RestoreError> {
    let mut out = EfiLoader::default();
    let Some(efi) = find_ci(esp, "EFI") else {
        return Ok(out);
    };
    // The vendor directory holding a loader.
    let mut vendors: Vec<PathBuf> = std::fs::read_dir(&efi)
        .map_err(|e| RestoreError::io("listing", &efi, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.eq_ignore_ascii_case("BOOT"))
        })
        .collect();
    vendors.sort();
    let pick = vendors.iter().find_map(|v| {
        let shim = find_ci(v, "shimx64.efi");
        let grub = find_ci(v, "grubx64.efi");
        shim.clone()
            .or(grub.clone())
            .map(|l| (v.clone(), l, shim, grub))
    });
    if let Some((v, loader, ..)) = &pick {
        let vname = v.file_name().map(|n| n.to_string_lossy().into_owned());
        let lname = loader.file_name().map(|n| n.to_string_lossy().into_owned());
        if let (Some(vn), Some(ln)) = (vname, lname) {
            out.loader = Some(format!("\\EFI\\{vn}\\{ln}"));
            out.vendor = Some(vn);
        }
    }
    let boot = find_ci(&efi, "BOOT").unwrap_or_else(|| efi.join("BOOT"));
    if find_ci(&boot, "BOOTX64.EFI").is_some() {
        return Ok(out);
    }
    let Some((vendor, _, shim, grub)) = pick else {
        return Ok(out);
    };
    std::fs::create_dir_all(&boot).map_err(|e| RestoreError::io("creating", &boot, e))?;
    let mut copy = |from: &Path, name: &str| -> Result<(), RestoreError> {
        let to = boot.join(name);
        std::fs::copy(from, &to).map_err(|e| RestoreError::io("copying to", &to, e))?;
        if let Ok(m) = std::fs::metadata(from)
            && let Ok(t) = m.modified()
        {
            let _ = std::fs::File::options()
                .write(true)
                .open(&to)
                .and_then(|f| f.set_modified(t));
        }
        out.copied.push(format!("EFI/BOOT/{name}"));
        Ok(())
    };
    match (&shim, &grub) {
        (Some(shim), grub) => {
            copy(shim, "BOOTX64.EFI")?;
            if let Some(g) = grub {
                copy(g, "grubx64.efi")?;
            }
            if let Some(mm) = find_ci(&vendor, "mmx64.efi") {
                copy(&mm, "mmx64.efi")?;
            }
        }
        (None, Some(grub)) => copy(grub, "BOOTX64.EFI")?,
        (None, None) => {}
    }
    if let Some(cfg) = find_ci(&vendor, "grub.cfg") {
        copy(&cfg, "grub.cfg")?;
    }
    Ok(out)
}

/// Adds a UEFI boot entry for `loader` on partition `part` of `disk` with efibootmgr, when
/// this machine booted by UEFI (efivars present) and efibootmgr exists. Returns what was done.
pub fn nvram_entry(
    disk: &Path,
    part: u32,
    loader: &str,
    label: &str,
) -> Result<Option<String>, RestoreError> {
    if !Path::new("/sys/firmware/efi/efivars").is_dir() {
        return Ok(None);
    }
    if !have("efibootmgr") {
        return Ok(Some(
            "efibootmgr not available: no NVRAM entry (the removable path boots)".into(),
        ));
    }
    let part = part.to_string();
    let argv: Vec<String> = ["efibootmgr", "-q", "-c", "-d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let extra: Vec<&OsStr> = vec![
        disk.as_os_str(),
        OsStr::new("-p"),
        OsStr::new(&part),
        OsStr::new("-L"),
        OsStr::new(label),
        OsStr::new("-l"),
        OsStr::new(loader),
    ];
    let mut create = std::process::Command::new(&argv[0]);
    create.args(&argv[1..]).args(&extra);
    if let Some(why) = bounded(create, NVRAM_WAIT) {
        return Ok(Some(format!(
            "no NVRAM entry: efibootmgr {why} (the removable path EFI/BOOT/BOOTX64.EFI boots)"
        )));
    }
    // Read back what the firmware now holds: the entry's line, as efibootmgr lists it.
    let listed = run(&["efibootmgr".to_string()], &[], disk)?;
    Ok(Some(match listed_entry(&listed, label) {
        Some(line) => format!("NVRAM entry {label:?} → {loader}; efibootmgr lists {line}"),
        None => format!(
            "NVRAM entry {label:?} → {loader} created, but efibootmgr does not list it (the \
             removable path still boots)"
        ),
    }))
}

/// How long efibootmgr may take to write a variable. Firmware variable writes go through the
/// firmware's runtime services; under emulation (QEMU TCG with OVMF) one was seen to block
/// for good, and a restore that has written every file must not hang on an optional entry.
const NVRAM_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `cmd` (stdin null, output discarded) for at most `limit`: `None` when it exited 0,
/// else why not (its status, or that it was killed at the limit).
fn bounded(mut cmd: std::process::Command, limit: std::time::Duration) -> Option<String> {
    use std::process::Stdio;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Some(format!("could not start ({e})")),
    };
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return None,
            Ok(Some(st)) => return Some(format!("failed ({st})")),
            Ok(None) if started.elapsed() >= limit => {
                let _ = child.kill();
                return Some(format!("did not finish in {limit:?}"));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(100)),
            Err(e) => return Some(format!("could not be waited for ({e})")),
        }
    }
}

/// The `BootXXXX* LABEL` part of the line efibootmgr lists for `label`.
fn listed_entry(listing: &str, label: &str) -> Option<String> {
    listing.lines().find_map(|l| {
        let (head, rest) = l.split_once(' ')?;
        let is_entry = head.starts_with("Boot")
            && head.len() >= 8
            && head[4..8].chars().all(|c| c.is_ascii_hexdigit());
        let name = rest.split('\t').next()?.trim_end();
        (is_entry && name == label).then(|| format!("{head} {name}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_hangs_is_killed_at_its_limit() {
        use std::process::Command;
        use std::time::{Duration, Instant};
        assert_eq!(bounded(Command::new("true"), Duration::from_secs(5)), None);
        let failed = bounded(Command::new("false"), Duration::from_secs(5)).unwrap();
        assert!(failed.starts_with("failed"), "{failed}");
        let t = Instant::now();
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let hung = bounded(sleep, Duration::from_millis(300)).unwrap();
        assert_eq!(hung, "did not finish in 300ms");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn efibootmgr_listing_is_searched_by_label() {
        let out = "BootCurrent: 0001\nBootOrder: 0004,0001\nBoot0001* UEFI QEMU DVD-ROM\tPciRoot(0x0)\n\
                   Boot0004* debian\tHD(2,GPT,…)/File(\\EFI\\debian\\shimx64.efi)\n";
        assert_eq!(
            listed_entry(out, "debian").as_deref(),
            Some("Boot0004* debian")
        );
        assert_eq!(listed_entry(out, "deb"), None);
        assert_eq!(listed_entry("BootOrder: debian\n", "debian"), None);
    }

    #[test]
    fn removable_path_from_shim() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("EFI/debian");
        std::fs::create_dir_all(&d).unwrap();
        for f in ["shimx64.efi", "grubx64.efi", "mmx64.efi", "grub.cfg"] {
            std::fs::write(d.join(f), f).unwrap();
        }
        let r = ensure_removable(t.path()).unwrap();
        assert_eq!(r.loader.as_deref(), Some("\\EFI\\debian\\shimx64.efi"));
        assert_eq!(r.copied.len(), 4);
        let boot = t.path().join("EFI/BOOT");
        assert_eq!(
            std::fs::read(boot.join("BOOTX64.EFI")).unwrap(),
            b"shimx64.efi"
        );
        assert_eq!(
            std::fs::read(boot.join("grubx64.efi")).unwrap(),
            b"grubx64.efi"
        );
        // Present already: nothing copied.
        assert!(ensure_removable(t.path()).unwrap().copied.is_empty());
    }

    #[test]
    fn existing_removable_path_is_kept() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("efi/boot")).unwrap();
        std::fs::write(t.path().join("efi/boot/bootx64.efi"), b"x").unwrap();
        let r = ensure_removable(t.path()).unwrap();
        assert!(r.copied.is_empty() && r.loader.is_none());
        assert_eq!(
            ensure_removable(&t.path().join("none")).unwrap(),
            EfiLoader::default()
        );
    }
}
