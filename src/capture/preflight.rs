//! The check a capture makes before it reads a file or writes anything (issue #24 item 7):
//! every program and file this run needs on the capturing host (`rescue/host-tools.list`:
//! GRUB, mtools, dosfstools, busybox, the snapshot tools) and in ROOT (the rescue tools of
//! `rescue/tools.list` its filesystems require), with all that are missing named in one
//! message with their Debian packages, instead of one failure per missing tool.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{CaptureError, CaptureOptions};
use crate::layout::DiskLayout;
use crate::rescue::tools::{HostKind, HostNeed, parse_host_tools};

/// Where host programs and files are looked for: `PATH` and the host's root (`/`).
pub(super) struct Host {
    pub path: Option<OsString>,
    pub root: PathBuf,
}

impl Host {
    /// This machine: the `PATH` the capture runs its tools with, and `/`.
    pub fn this() -> Self {
        Host {
            path: std::env::var_os("PATH"),
            root: PathBuf::from("/"),
        }
    }
}

/// What one capture needs, from its options, output and layout.
#[derive(Debug, Default)]
pub(super) struct Needs {
    /// The `WHEN`s of `rescue/host-tools.list` that apply.
    pub whens: Vec<&'static str>,
    /// The filesystem types and block layers whose rescue tools ROOT must have (when a
    /// rescue environment is built).
    pub filesystems: Vec<String>,
}

/// The boot side a capture builds, which decides what it needs besides its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BootSide {
    /// A `.oimg`, or a store version of a ROOT without a kernel: none.
    None,
    /// An ISO: the rescue environment and GRUB.
    Iso,
    /// A capture into a store: the rescue environment alone (docs/STORE.md §2.6).
    Rescue,
}

/// Something missing: what, its Debian package, why it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub package: String,
    pub why: String,
}

impl Needs {
    /// What a capture of `root` with `opts` that builds `boot` needs.
    pub fn of(opts: &CaptureOptions, root: &Path, layout: &DiskLayout, boot: BootSide) -> Self {
        let mut needs = Needs::default();
        if boot == BootSide::Iso {
            needs.whens.push("iso");
            if !signed_chain(root, opts.kernel.as_deref()) {
                needs.whens.push("uefi");
            }
        }
        if boot != BootSide::None {
            needs.whens.push("rescue");
            needs.filesystems = super::iso_output::rescue_filesystems(layout);
        }
        if opts.snapshot {
            let root_fs = layout.filesystems.iter().find(|f| f.mount_point == "/");
            if root_fs.is_some_and(|f| f.fstype == "btrfs") {
                needs.whens.push("snapshot:btrfs");
            } else if !layout.stack.vgs.is_empty() {
                needs.whens.push("snapshot:lvm");
            }
        }
        needs
    }
}

/// Does ROOT carry a signed shim and GRUB for its kernel (then UEFI boots through them and
/// GRUB's `x86_64-efi` files are not needed; docs/SECUREBOOT.md)?
fn signed_chain(root: &Path, kernel: Option<&Path>) -> bool {
    let fs = crate::rescue::rootfs::RootFs::new(root);
    crate::rescue::kernel::find_kernel(&fs, kernel)
        .is_ok_and(|k| crate::iso::find_signed_chain(root, &k.image).is_ok())
}

/// Everything `needs` asks for that `host` or ROOT lacks, host first, in the lists' order.
pub(super) fn missing(
    needs: &Needs,
    root: &Path,
    host: &Host,
) -> Result<(Vec<Missing>, Vec<Missing>), CaptureError> {
    let table = parse_host_tools(crate::rescue::HOST_TOOLS_LIST)
        .map_err(|e| CaptureError::Usage(format!("internal: {e}")))?;
    let on_host = table
        .iter()
        .filter(|n| needs.whens.contains(&n.when.as_str()))
        .filter(|n| !present(n, root, host, &needs.whens))
        .map(|n| Missing {
            what: n.name.clone(),
            package: n.package.clone(),
            why: n.why.clone(),
        })
        .collect();
    let in_root = if needs.whens.contains(&"rescue") {
        crate::rescue::missing_rescue_tools(root, &needs.filesystems, &[])?
            .into_iter()
            .map(|(what, package)| Missing {
                what,
                package,
                why: "taken into the rescue environment to recreate the captured filesystems"
                    .into(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok((on_host, in_root))
}

/// Is `n` there? A GRUB platform directory counts where the build takes GRUB from: this
/// host, else ROOT, each with both platforms when UEFI is built too.
fn present(n: &HostNeed, root: &Path, host: &Host, whens: &[&str]) -> bool {
    match n.kind {
        HostKind::Program => host
            .path
            .as_deref()
            .and_then(|p| crate::sys::find_on(p, &n.name))
            .is_some(),
        HostKind::Busybox => crate::rescue::has_busybox(root, &host.root),
        HostKind::GrubDir => {
            let uefi = whens.contains(&"uefi");
            let complete = |r: &Path| {
                crate::iso::has_grub_files(r, "i386-pc")
                    && (!uefi || crate::iso::has_grub_files(r, "x86_64-efi"))
            };
            complete(&host.root)
                || complete(root)
                || (n.name == "i386-pc"
                    && [host.root.as_path(), root]
                        .iter()
                        .any(|r| crate::iso::has_grub_files(r, "i386-pc")))
        }
    }
}

/// Checks what this capture needs, an ISO's (`iso`) or a `.oimg`'s; all that is missing in
/// one error (exit 1).
pub(super) fn check(
    opts: &CaptureOptions,
    root: &Path,
    layout: &DiskLayout,
    iso: bool,
) -> Result<(), CaptureError> {
    let boot = if iso { BootSide::Iso } else { BootSide::None };
    check_boot(opts, root, layout, boot)
}

/// `check` for a capture that builds `boot`.
pub(super) fn check_boot(
    opts: &CaptureOptions,
    root: &Path,
    layout: &DiskLayout,
    boot: BootSide,
) -> Result<(), CaptureError> {
    let needs = Needs::of(opts, root, layout, boot);
    let (on_host, in_root) = missing(&needs, root, &Host::this())?;
    if on_host.is_empty() && in_root.is_empty() {
        return Ok(());
    }
    Err(CaptureError::MissingTools {
        root: root.display().to_string(),
        on_host,
        in_root,
    })
}

/// The message of `CaptureError::MissingTools`.
pub(super) fn describe(root: &str, on_host: &[Missing], in_root: &[Missing]) -> String {
    let mut s = String::from("missing tools; nothing was captured or written:");
    let packages = |list: &[Missing], place: &str, s: &mut String| {
        if list.is_empty() {
            return;
        }
        s.push_str(&format!("\n  {place}:"));
        for m in list {
            s.push_str(&format!(
                "\n    - {} (Debian package {}): {}",
                m.what, m.package, m.why
            ));
        }
        let mut names: Vec<&str> = list.iter().map(|m| m.package.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        s.push_str(&format!(
            "\n    install: apt-get install {}",
            names.join(" ")
        ));
    };
    packages(on_host, "on this host", &mut s);
    packages(
        in_root,
        &format!("in {root} (the rescue environment takes them from the captured system)"),
        &mut s,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(whens: &[&'static str], filesystems: &[&str]) -> Needs {
        Needs {
            whens: whens.to_vec(),
            filesystems: filesystems.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(list: &[Missing]) -> Vec<String> {
        list.iter()
            .map(|m| format!("{} {}", m.what, m.package))
            .collect()
    }

    /// A bare host (empty PATH directory, no GRUB files, no busybox) and a bare ROOT: every
    /// need of an ISO capture of ext4 + vfat is named at once, with its package.
    #[test]
    fn everything_missing_is_named_at_once() {
        let t = tempfile::tempdir().unwrap();
        let (bin, host_root, root) = (t.path().join("bin"), t.path().join("h"), t.path().join("r"));
        for d in [&bin, &host_root, &root] {
            std::fs::create_dir_all(d).unwrap();
        }
        let host = Host {
            path: Some(bin.clone().into_os_string()),
            root: host_root.clone(),
        };
        let (on_host, in_root) = missing(
            &needs(&["iso", "rescue", "uefi"], &["ext4", "vfat"]),
            &root,
            &host,
        )
        .unwrap();
        assert_eq!(
            names(&on_host),
            [
                "grub-mkimage grub-common",
                "i386-pc grub-pc-bin",
                "x86_64-efi grub-efi-amd64-bin",
                "mkfs.vfat dosfstools",
                "mmd mtools",
                "mcopy mtools",
                "busybox busybox-static",
            ]
        );
        let in_root = names(&in_root);
        for t in [
            "mkfs.ext4 e2fsprogs",
            "e2fsck e2fsprogs",
            "mkfs.vfat dosfstools",
        ] {
            assert!(in_root.contains(&t.to_string()), "{t} not in {in_root:?}");
        }
        assert!(!in_root.iter().any(|t| t.contains("xfs")), "{in_root:?}");
        // A capture into a store builds the rescue environment alone: busybox and ROOT's
        // tools, no GRUB, no ESP tools.
        let (store_host, store_root) =
            missing(&needs(&["rescue"], &["ext4", "vfat"]), &root, &host).unwrap();
        assert_eq!(names(&store_host), ["busybox busybox-static"]);
        assert_eq!(names(&store_root), in_root);
        let msg = describe("/r", &on_host, &[]);
        assert!(
            msg.contains("install: apt-get install busybox-static dosfstools grub-common"),
            "{msg}"
        );

        // The programs put in PATH, busybox in ROOT: only GRUB's files are left; a .oimg
        // capture needs none of it, a --snapshot of a btrfs root `btrfs`.
        for p in ["grub-mkimage", "mkfs.vfat", "mmd", "mcopy"] {
            std::fs::write(bin.join(p), "").unwrap();
        }
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), "").unwrap();
        let (on_host, _) = missing(&needs(&["iso", "rescue", "uefi"], &[]), &root, &host).unwrap();
        assert_eq!(
            names(&on_host),
            ["i386-pc grub-pc-bin", "x86_64-efi grub-efi-amd64-bin"]
        );
        let (on_host, in_root) = missing(&needs(&[], &["ext4"]), &root, &host).unwrap();
        assert!(on_host.is_empty() && in_root.is_empty());
        let (on_host, _) = missing(&needs(&["snapshot:btrfs"], &[]), &root, &host).unwrap();
        assert_eq!(names(&on_host), ["btrfs btrfs-progs"]);
    }

    /// `rescue/host-tools.list` parses, and every `WHEN` it uses is one `Needs::of` sets.
    #[test]
    fn the_host_tools_list_parses() {
        let table = parse_host_tools(crate::rescue::HOST_TOOLS_LIST).unwrap();
        assert!(table.len() >= 10);
        assert!(
            table
                .iter()
                .any(|n| n.name == "mcopy" && n.package == "mtools")
        );
        assert!(parse_host_tools("program x y never why").is_err());
        assert!(parse_host_tools("tool x y iso why").is_err());
    }
}
