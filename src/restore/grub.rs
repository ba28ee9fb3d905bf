//! GRUB installed by the restored system's own tools, in a chroot of the restored tree
//! (docs/DESIGN.md "Boot loader on restore": only when the geometry forces it, or for the
//! default layout, where nothing was captured to write back).
//!
//! The tree is assembled under the staging directory: each restored filesystem bind-mounted at
//! its mount point (by depth), then `/dev`, `/proc` and `/sys` of the running system, so the
//! tree's `grub-install`, `grub-probe` and `grub-mkconfig` see the new disk.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::RestoreError;
use super::mounts::{Mounts, run};
use crate::sys::MountFlags;

/// One restored filesystem, as the chroot needs it.
pub struct Part<'a> {
    pub mount_point: &'a str,
    /// Where its files are now (a mount, or a staging directory).
    pub dir: &'a Path,
}

/// The restored system assembled for chrooting (its mounts live in the caller's `Mounts`).
pub struct Chroot {
    pub root: PathBuf,
}

/// Bind-mounts `parts` (sorted by mount-point depth by the plan) and the running system's
/// `/dev`, `/proc`, `/sys` under `staging/tree`; assembled once, later calls reuse it.
pub fn assemble(
    parts: &[Part],
    staging: &Path,
    mounts: &mut Mounts,
) -> Result<Chroot, RestoreError> {
    let root = staging.join("tree");
    if root.join("proc/self").exists() {
        return Ok(Chroot { root });
    }
    std::fs::create_dir_all(&root).map_err(|e| RestoreError::io("creating", &root, e))?;
    let bind = MountFlags::BIND;
    for p in parts {
        let at = root.join(p.mount_point.trim_start_matches('/'));
        std::fs::create_dir_all(&at).map_err(|e| RestoreError::io("creating", &at, e))?;
        mounts
            .mount(p.dir, &at, "", bind, "")
            .map_err(|e| RestoreError::io("bind-mounting", p.dir, e))?;
    }
    for d in ["dev", "proc", "sys"] {
        let at = root.join(d);
        std::fs::create_dir_all(&at).map_err(|e| RestoreError::io("creating", &at, e))?;
        let from = Path::new("/").join(d);
        mounts
            .mount(&from, &at, "", bind | MountFlags::REC, "")
            .map_err(|e| RestoreError::io("bind-mounting", &from, e))?;
    }
    Ok(Chroot { root })
}

impl Chroot {
    /// Runs `args` (a program of the restored system and its arguments) chrooted.
    pub fn run(&self, args: &[&OsStr], on: &Path) -> Result<String, RestoreError> {
        let mut extra: Vec<&OsStr> = vec![self.root.as_os_str()];
        extra.extend_from_slice(args);
        run(&["chroot".to_string()], &extra, on)
    }

    /// The first of `paths` (relative to the tree's root) that exists in the tree, as the
    /// absolute path inside it.
    pub fn find(&self, paths: &[&str]) -> Option<String> {
        paths
            .iter()
            .find(|p| std::fs::symlink_metadata(self.root.join(p)).is_ok())
            .map(|p| format!("/{p}"))
    }
}

/// Where Debian and others keep `grub-install` and `grub-mkconfig`, and GRUB's platform
/// modules (the platform is installable only when its directory is there).
pub const GRUB_INSTALL: &[&str] = &["usr/sbin/grub-install", "sbin/grub-install"];
pub const GRUB_MKCONFIG: &[&str] = &["usr/sbin/grub-mkconfig", "sbin/grub-mkconfig"];
pub const I386_PC: &[&str] = &["usr/lib/grub/i386-pc"];
pub const X86_64_EFI: &[&str] = &["usr/lib/grub/x86_64-efi"];

/// `grub-install --target=i386-pc DEVICE`: the core image into the BIOS boot partition (GPT)
/// or the MBR gap, the boot code into the MBR.
pub fn install_bios(c: &Chroot, device: &Path) -> Result<(), RestoreError> {
    let gi = c
        .find(GRUB_INSTALL)
        .ok_or_else(|| no_grub_install(device))?;
    c.run(
        &[
            OsStr::new(&gi),
            OsStr::new("--target=i386-pc"),
            device.as_os_str(),
        ],
        device,
    )?;
    Ok(())
}

fn no_grub_install(device: &Path) -> RestoreError {
    RestoreError::Tool {
        tool: "grub-install".into(),
        device: device.to_path_buf(),
        msg: format!(
            "the restored system has none ({}): install grub-pc in it",
            GRUB_INSTALL.join(", ")
        ),
    }
}

/// Whether the restored root filesystem (its files at `root_dir`) has a `grub-install`.
pub fn has_grub_install(root_dir: &Path) -> bool {
    GRUB_INSTALL
        .iter()
        .any(|p| std::fs::symlink_metadata(root_dir.join(p)).is_ok())
}

/// The report line for a tree without a boot loader installer.
pub fn not_bootable() -> String {
    format!(
        "NOT BOOTABLE: the restored tree has no grub-install ({}); the files are restored, but \
         install a boot loader (e.g. grub-pc or grub-efi-amd64 in a chroot) before booting \
         this disk",
        GRUB_INSTALL.join(", ")
    )
}

/// The report line for a disk that got no boot path: no BIOS boot code written or installed,
/// and no EFI loader on the ESP.
pub fn no_boot_path() -> String {
    "NOT BOOTABLE: no boot loader is on the disk: no BIOS boot code was written back or \
     installed, and the ESP has no EFI/BOOT/BOOTX64.EFI; the files are restored, but install a \
     boot loader (grub-install in a chroot) before booting this disk"
        .into()
}

/// What `install_default` did: one report line per step, whether GRUB's BIOS core image was
/// installed, and why the disk cannot boot when the tree has no installer.
#[derive(Debug, Default)]
pub struct Installed {
    pub lines: Vec<String>,
    pub bios: bool,
    pub unbootable: Option<String>,
}

/// For the default layout: GRUB for every platform the tree has modules for (BIOS into the
/// BIOS boot partition; UEFI into the ESP at `esp_mount`, without touching NVRAM: the caller
/// adds the entry and the removable path), then the tree's grub.cfg regenerated for the new
/// UUIDs. `esp_mountable`: the ESP is mounted in the tree (not filled later with mtools, which
/// grub-install could not recognise as an EFI partition). Returns one report line per step;
/// a tree without grub-install is no error, the lines then say the disk will not boot.
pub fn install_default(
    c: &Chroot,
    device: &Path,
    esp_mount: &str,
    esp_mountable: bool,
) -> Result<Installed, RestoreError> {
    let mut done = Vec::new();
    let Some(gi) = c.find(GRUB_INSTALL) else {
        return Ok(Installed {
            unbootable: Some(not_bootable()),
            ..Installed::default()
        });
    };
    let mut bios = false;
    let gi = OsStr::new(&gi);
    if c.find(I386_PC).is_some() {
        c.run(
            &[gi, OsStr::new("--target=i386-pc"), device.as_os_str()],
            device,
        )?;
        done.push("grub-install --target=i386-pc ran chrooted (BIOS boot partition)".into());
        bios = true;
    } else {
        done.push("BIOS: the tree has no GRUB i386-pc modules (grub-pc-bin): skipped".into());
    }
    if c.find(X86_64_EFI).is_none() {
        done.push(
            "UEFI: the tree has no GRUB x86_64-efi modules (grub-efi-amd64-bin): skipped".into(),
        );
    } else if !esp_mountable {
        done.push(format!(
            "UEFI: this kernel cannot mount the ESP (no vfat), so grub-install cannot write \
             {esp_mount}: skipped (restore from the rescue environment to get it)"
        ));
    } else {
        let dir = format!("--efi-directory={esp_mount}");
        c.run(
            &[
                gi,
                OsStr::new("--target=x86_64-efi"),
                OsStr::new(&dir),
                OsStr::new("--no-nvram"),
            ],
            device,
        )?;
        done.push(format!(
            "grub-install --target=x86_64-efi ran chrooted (ESP {esp_mount})"
        ));
    }
    match c.find(GRUB_MKCONFIG) {
        Some(mk) => {
            c.run(
                &[
                    OsStr::new(&mk),
                    OsStr::new("-o"),
                    OsStr::new("/boot/grub/grub.cfg"),
                ],
                device,
            )?;
            done.push("grub-mkconfig wrote /boot/grub/grub.cfg for the new UUIDs".into());
        }
        None => {
            done.push("the tree has no grub-mkconfig: /boot/grub/grub.cfg left as captured".into())
        }
    }
    Ok(Installed {
        lines: done,
        bios,
        unbootable: None,
    })
}
