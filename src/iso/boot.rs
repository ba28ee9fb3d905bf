//! The ISO's boot loaders, built with GRUB from a GRUB source root (the host "/" today, the
//! captured system's root later): `grub-mkimage` makes a BIOS El Torito image
//! (`i386-pc-eltorito`) and a standalone `BOOTX64.EFI` (`x86_64-efi`), both with the modules
//! they need built in and an early config that finds the ISO by a unique id file and loads
//! `/boot/grub/grub.cfg`; `mkfs.vfat` + `mcopy` put `BOOTX64.EFI` into a small FAT ESP image;
//! `boot_hybrid.img` becomes the hybrid MBR code. With a [`SignedChain`] the ESP image holds the
//! signed shim and GRUB instead of a `grub-mkimage` build, and the ISO a `/.disk/info` for
//! that GRUB's built-in search (docs/ISO.md, docs/SECUREBOOT.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::signed::SignedChain;
use super::{BootImages, IsoError, IsoFile, IsoSource};

/// Modules built into both images: enough to find the ISO (CD or disk, GPT or MBR), read its
/// config and boot a Linux kernel with a compressed initramfs, on the serial console too.
const MODULES: &[&str] = &[
    "iso9660",
    "part_msdos",
    "part_gpt",
    "fat",
    "ext2",
    "normal",
    "configfile",
    "search",
    "search_fs_file",
    "search_fs_uuid",
    "search_label",
    "linux",
    "echo",
    "test",
    "sleep",
    "serial",
    "terminal",
    "halt",
    "reboot",
    "minicmd",
    "ls",
    "cat",
    "gzio",
    "xzio",
    "zstd",
    "loadenv",
];
const BIOS_ONLY: &[&str] = &["biosdisk"];
const EFI_ONLY: &[&str] = &["all_video"];

/// The files of `usr/lib/grub/i386-pc` and `x86_64-efi` the images are built from, besides
/// the modules' `.mod` files.
const PC_FILES: &[&str] = &[
    "cdboot.img",
    "boot_hybrid.img",
    "diskboot.img",
    "kernel.img",
    "lzma_decompress.img",
    "moddep.lst",
];
const EFI_FILES: &[&str] = &["kernel.img", "moddep.lst"];

/// Whether `grub_root`'s `usr/lib/grub/PLATFORM` (`i386-pc` or `x86_64-efi`) holds every
/// file the boot images are built from (what `build_grub_boot` requires).
pub fn has_grub_files(grub_root: &Path, platform: &str) -> bool {
    let (files, extra) = match platform {
        "i386-pc" => (PC_FILES, BIOS_ONLY),
        "x86_64-efi" => (EFI_FILES, EFI_ONLY),
        _ => return false,
    };
    let dir = grub_root.join("usr/lib/grub").join(platform);
    require(&dir, files, MODULES, extra, "GRUB files", "").is_ok()
}

/// ISO paths of the boot files.
pub const BIOS_IMAGE: &str = "boot/grub/i386-pc/eltorito.img";
pub const EFI_IMAGE: &str = "boot/grub/efi.img";
pub const GRUB_CFG: &str = "boot/grub/grub.cfg";
/// The file the vendors' signed CD GRUB searches for to find its medium (Debian's
/// `build-efi-images`): its built-in config then sources `/boot/grub/grub.cfg` on it.
pub const DISK_INFO: &str = ".disk/info";

/// Boot files for an [`IsoSpec`](super::IsoSpec): add `files`, set `boot`.
#[derive(Debug, Clone)]
pub struct GrubBoot {
    /// grub.cfg, the id file, the BIOS image and the ESP image (built in `work_dir`).
    pub files: Vec<IsoFile>,
    pub boot: BootImages,
    /// ISO path (with leading `/`) of the file whose presence identifies this image; the
    /// early config does `search --file` for it, and so can the rescue environment.
    pub search_file: String,
}

/// Builds the BIOS image, the hybrid MBR code and the ESP image from the GRUB files under
/// `grub_root` (`usr/lib/grub/{i386-pc,x86_64-efi}`), with `grub_cfg` as `/boot/grub/grub.cfg`.
/// With `signed`, UEFI boots through that chain and `x86_64-efi` is not needed.
pub fn build_grub_boot(
    grub_root: &Path,
    grub_cfg: &str,
    work_dir: &Path,
    signed: Option<&SignedChain>,
) -> Result<GrubBoot, IsoError> {
    start_grub_boot(grub_root, grub_cfg, work_dir)?.finish(signed)
}

/// A GRUB build under way: the BIOS image is being made by a `grub-mkimage` of its own while
/// the caller works out whether UEFI boots through a signed chain (`finish`).
pub struct PendingGrub {
    grub_root: PathBuf,
    grub_cfg: String,
    work_dir: PathBuf,
    id: String,
    search_file: String,
    early: PathBuf,
    bios_img: PathBuf,
    /// The BIOS `grub-mkimage`, until `finish` waits for it (killed if dropped first).
    bios: Option<std::process::Child>,
}

/// Checks the BIOS GRUB files under `grub_root` and starts making the BIOS image; `finish`
/// makes the ESP image and waits for it.
pub fn start_grub_boot(
    grub_root: &Path,
    grub_cfg: &str,
    work_dir: &Path,
) -> Result<PendingGrub, IsoError> {
    let pc = grub_root.join("usr/lib/grub/i386-pc");
    require(
        &pc,
        PC_FILES,
        MODULES,
        BIOS_ONLY,
        "GRUB BIOS files",
        "grub-pc-bin",
    )?;
    std::fs::create_dir_all(work_dir).map_err(|e| IsoError::io("creating", work_dir, e))?;
    let id = boot_id(grub_cfg);
    let search_file = format!("/boot/grub/osimage-{id}.id");
    let early = work_dir.join("early.cfg");
    write(&early, early_config(&search_file).as_bytes())?;
    let bios_img = work_dir.join("eltorito.img");
    let bios = spawn(
        mkimage(&pc, "i386-pc-eltorito", &early, &bios_img, BIOS_ONLY),
        "grub-mkimage",
        "grub-common",
    )?;
    Ok(PendingGrub {
        grub_root: grub_root.to_path_buf(),
        grub_cfg: grub_cfg.to_string(),
        work_dir: work_dir.to_path_buf(),
        id,
        search_file,
        early,
        bios_img,
        bios: Some(bios),
    })
}

impl Drop for PendingGrub {
    fn drop(&mut self) {
        if let Some(mut c) = self.bios.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl PendingGrub {
    /// Makes the ESP image (from `signed`'s files, or a `grub-mkimage` of `x86_64-efi`) and
    /// waits for the BIOS image: the boot files, complete.
    pub fn finish(mut self, signed: Option<&SignedChain>) -> Result<GrubBoot, IsoError> {
        let efi = self.grub_root.join("usr/lib/grub/x86_64-efi");
        if signed.is_none() {
            require(
                &efi,
                EFI_FILES,
                MODULES,
                EFI_ONLY,
                "GRUB EFI files",
                "grub-efi-amd64-bin",
            )?;
        }
        let esp_files = match signed {
            Some(chain) => {
                let mut files = vec![
                    (chain.shim.clone(), "BOOTX64.EFI"),
                    (chain.grub.clone(), "grubx64.efi"),
                ];
                files.extend(chain.mok_manager.clone().map(|m| (m, "mmx64.efi")));
                files
            }
            None => {
                let bootx64 = self.work_dir.join("BOOTX64.EFI");
                run(
                    mkimage(&efi, "x86_64-efi", &self.early, &bootx64, EFI_ONLY),
                    "grub-mkimage",
                    "grub-common",
                )?;
                vec![(bootx64, "BOOTX64.EFI")]
            }
        };
        let esp = self.work_dir.join("efi.img");
        build_esp(&esp, &esp_files, &self.id)?;
        if let Some(child) = self.bios.take() {
            check(child.wait_with_output(), "grub-mkimage")?;
        }
        let pc = self.grub_root.join("usr/lib/grub/i386-pc");
        let mbr_path = pc.join("boot_hybrid.img");
        let mbr = std::fs::read(&mbr_path).map_err(|e| IsoError::io("reading", &mbr_path, e))?;
        let (id, search_file, grub_cfg) = (&self.id, &self.search_file, &self.grub_cfg);
        let bios_img = self.bios_img.clone();
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let file = |path: &str, source| IsoFile {
            path: path.to_string(),
            source,
            mode: 0o644,
            mtime,
        };
        let mut files = Vec::new();
        if signed.is_some() {
            files.push(file(
                DISK_INFO,
                IsoSource::Bytes(format!("osimage rescue {id}\n").into_bytes()),
            ));
        }
        files.extend([
            file(GRUB_CFG, IsoSource::Bytes(grub_cfg.as_bytes().to_vec())),
            file(
                &search_file[1..],
                IsoSource::Bytes(format!("{id}\n").into_bytes()),
            ),
            file(BIOS_IMAGE, IsoSource::Path(bios_img)),
            file(EFI_IMAGE, IsoSource::Path(esp)),
        ]);
        Ok(GrubBoot {
            files,
            boot: BootImages {
                bios: Some(BIOS_IMAGE.to_string()),
                efi: Some(EFI_IMAGE.to_string()),
                mbr: Some(mbr),
            },
            search_file: search_file.clone(),
        })
    }
}

/// The config built into both images: find this very ISO (CD, or whole disk when dd'd) by
/// its id file, then hand over to the real config on it.
fn early_config(search_file: &str) -> String {
    // runs in GRUB's rescue parser (no `if`): a failed search makes configfile fail, and the
    // echo says why before GRUB falls back to its shell
    format!(
        "search --no-floppy --set=root --file {search_file}\n\
         set prefix=($root)/boot/grub\n\
         configfile ($root)/boot/grub/grub.cfg\n\
         echo \"osimage: no boot medium with {search_file} found\"\n"
    )
}

/// 16 hex digits unique to this build (config, time, process).
fn boot_id(grub_cfg: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(grub_cfg.as_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.finalize().to_hex()[..16].to_string()
}

fn require(
    dir: &Path,
    files: &[&str],
    modules: &[&str],
    extra: &[&str],
    what: &'static str,
    package: &'static str,
) -> Result<(), IsoError> {
    let mods = modules.iter().chain(extra).map(|m| format!("{m}.mod"));
    let missing = files
        .iter()
        .map(|f| f.to_string())
        .chain(mods)
        .any(|f| !dir.join(f).is_file());
    if missing {
        return Err(IsoError::MissingBootFiles {
            what,
            dir: dir.to_path_buf(),
            package,
        });
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), IsoError> {
    std::fs::write(path, bytes).map_err(|e| IsoError::io("writing", path, e))
}

/// The `grub-mkimage` command for one image.
fn mkimage(dir: &Path, format: &str, early: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new("grub-mkimage");
    cmd.arg("-O")
        .arg(format)
        .arg("-d")
        .arg(dir)
        .args(["-p", "/boot/grub", "-c"]);
    cmd.arg(early).arg("-o").arg(out).args(MODULES).args(extra);
    cmd
}

/// Size of the ESP image: the contents plus 1 MiB of FAT overhead and slack, at least 4 MiB,
/// whole MiB. FAT12 up to 16 MiB, FAT16 above (UEFI 13.3.1.1 allows both on removable media).
fn esp_size_kib(contents: u64) -> u64 {
    (contents.div_ceil(1 << 20) + 1).max(4) * 1024
}

/// A FAT image holding `files` (host path, name) in `EFI/BOOT`.
fn build_esp(esp: &Path, files: &[(PathBuf, &str)], id: &str) -> Result<(), IsoError> {
    let mut size = 0;
    for (path, _) in files {
        size += std::fs::metadata(path)
            .map_err(|e| IsoError::io("stat", path, e))?
            .len()
            .next_multiple_of(4096);
    }
    let kib = esp_size_kib(size);
    let fat = if kib <= 16 * 1024 { "12" } else { "16" };
    if esp.exists() {
        std::fs::remove_file(esp).map_err(|e| IsoError::io("removing", esp, e))?;
    }
    let mut mkfs = Command::new("mkfs.vfat");
    mkfs.args(["-C", "-F", fat, "-n", "OSIMAGE_EFI", "-i", &id[..8]])
        .arg(esp)
        .arg(kib.to_string());
    run(mkfs, "mkfs.vfat", "dosfstools")?;
    let mut mmd = Command::new("mmd");
    mmd.arg("-i").arg(esp).args(["::/EFI", "::/EFI/BOOT"]);
    run(mmd, "mmd", "mtools")?;
    for (path, name) in files {
        let mut mcopy = Command::new("mcopy");
        mcopy
            .arg("-i")
            .arg(esp)
            .arg(path)
            .arg(format!("::/EFI/BOOT/{name}"));
        run(mcopy, "mcopy", "mtools")?;
    }
    Ok(())
}

/// Runs a host tool; a missing tool names its Debian package, a failure its stderr.
fn run(cmd: Command, tool: &str, package: &'static str) -> Result<(), IsoError> {
    check(spawn(cmd, tool, package)?.wait_with_output(), tool)
}

/// Starts a host tool, its output captured; a missing tool names its Debian package.
fn spawn(
    mut cmd: Command,
    tool: &str,
    package: &'static str,
) -> Result<std::process::Child, IsoError> {
    use std::process::Stdio;
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IsoError::Tool {
            tool: tool.to_string(),
            detail: format!("not found in PATH: install {package}"),
        },
        _ => IsoError::io("running", &PathBuf::from(tool), e),
    })
}

/// A finished host tool's result: its stderr when it failed.
fn check(out: std::io::Result<std::process::Output>, tool: &str) -> Result<(), IsoError> {
    let out = out.map_err(|e| IsoError::io("running", &PathBuf::from(tool), e))?;
    if !out.status.success() {
        return Err(IsoError::Tool {
            tool: tool.to_string(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_grub_files_name_the_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = build_grub_boot(dir.path(), "", &dir.path().join("w"), None).expect_err("no grub");
        let msg = e.to_string();
        assert!(
            msg.contains("i386-pc") && msg.contains("install grub-pc-bin"),
            "{msg}"
        );
    }

    #[test]
    fn esp_is_sized_to_contents() {
        assert_eq!(esp_size_kib(1), 4096);
        assert_eq!(esp_size_kib(5 << 20), 6 * 1024);
    }
}
