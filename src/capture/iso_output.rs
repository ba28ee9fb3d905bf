//! ISO output: the payload folder, the rescue environment (kernel + initramfs), GRUB for BIOS
//! and UEFI, the image-id marker and a README.TXT, assembled into one hybrid ISO (docs/ISO.md).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::CaptureError;
use super::container::ContainerWriter;
use crate::envelope::ImageKey;
use crate::format::PayloadError;
use crate::format::manifest::Manifest;
use crate::format::sink::PackSink;
use crate::image::iso::{KEYS_NAME, MANIFEST_NAME, PAYLOAD_DIR, pack_path};
use crate::image::iso_packs::{IsoPackWriter, IsoPayload};
use crate::iso::{
    GrubBoot, IsoFile, IsoSource, IsoSpec, find_signed_chain, start_grub_boot, write_iso,
};
use crate::layout::DiskLayout;
use crate::progress::Progress;
use crate::rescue::reuse::RescueInputs;
use crate::rescue::{
    MenuParams, PlannedRescue, Rescue, RescueSpec, grub_cfg, id_marker_path, image_id_hex,
    plan_rescue,
};

/// The boot side of the ISO, built before the payload.
#[derive(Clone, Debug)]
pub struct BootFiles {
    pub(super) kernel: PathBuf,
    pub(super) initrd: PathBuf,
    pub(super) menu: MenuParams,
    /// GRUB's boot images and files: none for a capture into a store, whose versions keep
    /// only the kernel and the initramfs (docs/STORE.md §2.6).
    pub(super) grub: Option<GrubBoot>,
    pub(super) id_hex: String,
    /// The rescue kernel's version (`uname -r`).
    pub kernel_version: String,
    /// One line for the capture report.
    pub summary: String,
    /// Bytes of the rescue kernel and initramfs (what the ISO holds besides the payload and
    /// GRUB).
    pub rescue_bytes: u64,
    /// What the rescue environment was built from (the manifest's `rescue` record).
    pub rescue_inputs: RescueInputs,
}

/// A refresh's base, whose rescue environment the new ISO may take (docs/ISO.md, "Refreshes");
/// for a capture into a store, the series' previous version (docs/STORE.md §2.6).
pub struct PreviousIso {
    /// How messages name the base.
    pub path: PathBuf,
    /// The base's `rescue` record; `Err` says why there is none to use.
    pub inputs: Result<RescueInputs, String>,
    /// Where the base's initramfs core is read from, on the rescue thread.
    pub core: CoreSource,
}

/// Where a base's initramfs core is.
pub enum CoreSource {
    /// The first `core_len` bytes of the initrd of the ISO at `PreviousIso::path`.
    Iso,
    /// Read by this (a store version's core blob), given the base's `rescue` record; `Err`
    /// says why it cannot be used.
    Read(ReadCore),
}

/// Reads a base's initramfs core given its `rescue` record, on the rescue thread.
pub type ReadCore = Box<dyn FnOnce(&RescueInputs) -> Result<Vec<u8>, String> + Send>;

impl PreviousIso {
    /// The base as a source of a rescue environment: its `rescue` record, or why it has none.
    pub fn of(b: &crate::refresh::Base) -> Self {
        let inputs = match crate::rescue::reuse::from_manifest(b.manifest()) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => {
                Err("it records no rescue inputs (a .oimg, or made by an older osimage)".into())
            }
            Err(e) => Err(format!("its rescue record is unreadable: {e}")),
        };
        PreviousIso {
            path: b.given_path().to_path_buf(),
            inputs,
            core: CoreSource::Iso,
        }
    }
}

/// A volume label from the image id: `OSIMAGE_` and 8 hex digits (ECMA-119 d-characters).
pub(super) fn volume_label(id: &[u8; 16]) -> String {
    format!("OSIMAGE_{}", image_id_hex(id)[..8].to_uppercase())
}

/// The boot side while it is being built, on a thread of its own beside the scan and the
/// payload (docs/ISO.md, "Beside the payload"): first the plan (the kernel, the tools, their
/// libraries and the modules: what can be missing) and GRUB's images, then the initramfs,
/// compressed or taken from the base. A first capture waits for the plan before it reads
/// anything (`wait_planned`), so a missing tool fails in about a second, not after the whole
/// payload; a refresh, quick itself, only waits at the end (`finish`). Dropping the job waits
/// for the thread, so the work folder is never removed under it.
pub struct BootJob {
    thread: Option<std::thread::JoinHandle<Result<BuiltBoot, CaptureError>>>,
    /// The plan's notes, or its error, once: the thread stops after sending an error.
    planned: std::sync::mpsc::Receiver<Result<Vec<String>, CaptureError>>,
    waited: bool,
}

/// What the thread hands back.
struct BuiltBoot {
    rescue: Rescue,
    /// Where the rescue environment came from (a refresh's reuse, or why not).
    origin: String,
    boot: PlannedBoot,
}

/// Starts building the boot side of an ISO of `root` in `work`.
pub fn start_boot(
    root: &Path,
    kernel: Option<&Path>,
    layout: &DiskLayout,
    image_id: [u8; 16],
    work: &Path,
    previous: Option<PreviousIso>,
    progress: &dyn Progress,
) -> Result<BootJob, CaptureError> {
    let rescue = RescueSource {
        root,
        kernel,
        layout,
        image_id,
    };
    spawn(rescue, work, previous, true, progress)
}

/// Starts building the rescue environment alone, without GRUB: what a capture into a store
/// keeps (docs/STORE.md §2.6). The same plan, kernel choice, refusals and initramfs as an
/// ISO's; `BootFiles::grub` is `None`.
pub fn start_rescue(
    rescue: RescueSource,
    work: &Path,
    previous: Option<PreviousIso>,
    progress: &dyn Progress,
) -> Result<BootJob, CaptureError> {
    spawn(rescue, work, previous, false, progress)
}

/// What a rescue environment is built from: the captured root, `--kernel`, the layout (its
/// filesystems decide the required tools and modules) and the image id.
pub struct RescueSource<'a> {
    pub root: &'a Path,
    pub kernel: Option<&'a Path>,
    pub layout: &'a DiskLayout,
    pub image_id: [u8; 16],
}

/// Starts the boot side's thread; with `grub` GRUB's images are built beside the plan.
fn spawn(
    source: RescueSource,
    work: &Path,
    previous: Option<PreviousIso>,
    grub: bool,
    progress: &dyn Progress,
) -> Result<BootJob, CaptureError> {
    let RescueSource {
        root,
        kernel,
        layout,
        image_id,
    } = source;
    progress.note("building the rescue environment");
    let mut spec = RescueSpec::new(root, image_id);
    spec.kernel = kernel.map(Path::to_path_buf);
    spec.filesystems = rescue_filesystems(layout);
    let (tx, planned) = std::sync::mpsc::channel();
    let (root, work) = (root.to_path_buf(), work.to_path_buf());
    let thread = std::thread::Builder::new()
        .name("rescue".into())
        .spawn(move || {
            let (planned, boot) = match plan_boot(&root, &spec, &work, grub) {
                Ok((planned, boot, notes)) => {
                    // The receiver may be gone (the capture failed meanwhile): nothing to tell.
                    let _ = tx.send(Ok(notes));
                    (planned, boot)
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return Err(CaptureError::Usage("the rescue build stopped".into()));
                }
            };
            build_boot(planned, boot, &spec, &work.join("rescue"), previous)
        })
        .map_err(|e| CaptureError::Usage(format!("cannot start the rescue build: {e}")))?;
    Ok(BootJob {
        thread: Some(thread),
        planned,
        waited: false,
    })
}

/// The filesystem types of `layout` and its block layers (`lvm`, `md`, `luks`), sorted: what
/// decides the rescue environment's required tools and modules.
pub(super) fn rescue_filesystems(layout: &DiskLayout) -> Vec<String> {
    let mut out: Vec<String> = layout
        .filesystems
        .iter()
        .map(|f| f.fstype.clone())
        .chain(layout.swaps.iter().map(|_| "swap".to_string()))
        .collect();
    // The block stack's layers count as "filesystems" of the rescue lists: their tools
    // (lvm, mdadm, cryptsetup) and modules become required.
    let st = &layout.stack;
    for (layer, present) in [
        ("lvm", !st.vgs.is_empty()),
        ("md", !st.md.is_empty()),
        ("luks", !st.luks.is_empty()),
    ] {
        if present {
            out.push(layer.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The boot side decided, its initramfs not yet written.
struct PlannedBoot {
    menu: MenuParams,
    grub: Option<GrubBoot>,
    id_hex: String,
    secure_boot: bool,
}

/// Plans the rescue environment and, with `grub`, builds GRUB's boot images, the BIOS one (a
/// `grub-mkimage` of its own) while the plan is made; returns the notes to show.
fn plan_boot(
    root: &Path,
    spec: &RescueSpec,
    work: &Path,
    grub: bool,
) -> Result<(PlannedRescue, PlannedBoot, Vec<String>), CaptureError> {
    let menu = MenuParams {
        title: super::manifest::hostname_of(root),
        ..MenuParams::default()
    };
    let id_hex = image_id_hex(&spec.image_id);
    if !grub {
        let planned = plan_rescue(spec, &work.join("rescue"))?;
        let notes = planned.notes().to_vec();
        let boot = PlannedBoot {
            menu,
            grub: None,
            id_hex,
            secure_boot: false,
        };
        return Ok((planned, boot, notes));
    }
    let cfg = grub_cfg(&id_hex, &menu);
    // GRUB's modules from the host, matching the host's grub-mkimage that assembles them
    // (capturing `/` they are the captured system's own); the captured root's if the host
    // lacks them.
    let from_root = || start_grub_boot(root, &cfg, &work.join("grub-root"));
    let (pending, on_host) = match start_grub_boot(Path::new("/"), &cfg, &work.join("grub")) {
        Ok(p) => (p, true),
        Err(host_err) => (from_root().map_err(|_| host_err)?, false),
    };
    let planned = plan_rescue(spec, &work.join("rescue"))?;
    let mut notes = planned.notes().to_vec();
    // UEFI: the captured system's own signed chain when it has one (docs/SECUREBOOT.md).
    let signed = find_signed_chain(root, planned.kernel_image());
    notes.push(match &signed {
        Ok(chain) => format!(
            "UEFI Secure Boot: supported (signed shim {}, signed GRUB {}, signed kernel)",
            chain.shim.display(),
            chain.grub.display()
        ),
        Err(why) => format!(
            "UEFI Secure Boot: not supported by this ISO ({why}); it boots where Secure Boot \
             is off"
        ),
    });
    let chain = signed.as_ref().ok();
    let grub = match pending.finish(chain) {
        Ok(g) => g,
        // The host has GRUB's BIOS files but not its EFI ones: all from the captured root.
        Err(e) if on_host => from_root().and_then(|p| p.finish(chain)).map_err(|_| e)?,
        Err(e) => return Err(e.into()),
    };
    let boot = PlannedBoot {
        menu,
        grub: Some(grub),
        id_hex,
        secure_boot: chain.is_some(),
    };
    Ok((planned, boot, notes))
}

/// The base's initramfs when it can stand in for `planned`'s; else a build that takes the
/// base's compressed parts whose contents are the same. A refresh says which, and why.
fn build_boot(
    planned: PlannedRescue,
    boot: PlannedBoot,
    spec: &RescueSpec,
    rescue_dir: &Path,
    previous: Option<PreviousIso>,
) -> Result<BuiltBoot, CaptureError> {
    let (rescue, origin) = match previous {
        None => (planned.build(spec, rescue_dir)?, String::new()),
        Some(p) => {
            let rebuilt =
                |why: &str| format!("; rebuilt, not reused from {}: {why}", p.path.display());
            // The base's core is read (a store's blob is downloaded) only when the build
            // would take all of it or some of its parts.
            let usable = p
                .inputs
                .and_then(|inputs| match inputs.differs_from(&planned.inputs) {
                    Some(why) if !inputs.shares_parts_with(&planned.inputs) => Err(why.to_string()),
                    _ => Ok(inputs),
                });
            match previous_core(usable, p.core, &p.path) {
                Ok((inputs, core)) => match inputs.differs_from(&planned.inputs) {
                    None => (
                        planned.reuse(spec, rescue_dir, &inputs, &core)?,
                        format!(
                            "; kernel and initramfs reused from {} (same kernel, agent, rescue \
                             assets and initramfs contents)",
                            p.path.display()
                        ),
                    ),
                    Some(why) => {
                        let parts = inputs.reusable_parts(&planned.inputs, &core);
                        let total = parts.len();
                        let rescue = planned.build_reusing(spec, rescue_dir, &parts)?;
                        let built = total - rescue.reused_parts;
                        let took = match rescue.reused_parts {
                            0 => String::new(),
                            n => format!(
                                "; compressed {built} of its {total} initramfs parts, took the \
                                 other {n} from the base"
                            ),
                        };
                        (rescue, format!("{}{took}", rebuilt(why)))
                    }
                },
                Err(why) => (planned.build(spec, rescue_dir)?, rebuilt(&why)),
            }
        }
    };
    Ok(BuiltBoot {
        rescue,
        origin,
        boot,
    })
}

impl BootJob {
    /// Waits until the rescue environment is planned and GRUB's images are built; an error
    /// there (a missing kernel, tool or GRUB file) is returned here. Once.
    pub fn wait_planned(&mut self, progress: &dyn Progress) -> Result<(), CaptureError> {
        if self.waited {
            return Ok(());
        }
        self.waited = true;
        let notes = match self.planned.recv() {
            Ok(r) => r?,
            Err(_) => return Err(self.join_failure()),
        };
        for n in &notes {
            progress.note(n);
        }
        Ok(())
    }

    /// The thread's own error when it ended without a plan.
    fn join_failure(&mut self) -> CaptureError {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => e,
            _ => CaptureError::Usage("internal: the rescue build ended without a word".into()),
        }
    }

    /// Waits for the rescue kernel and initramfs: the boot files, complete.
    pub fn finish(mut self, progress: &dyn Progress) -> Result<BootFiles, CaptureError> {
        self.wait_planned(progress)?;
        let built = self
            .thread
            .take()
            .ok_or_else(|| CaptureError::Usage("internal: the rescue build was lost".into()))?
            .join()
            .map_err(|_| CaptureError::Usage("internal: the rescue build panicked".into()))??;
        let rescue = built.rescue;
        let secure_boot = match (&built.boot.grub, built.boot.secure_boot) {
            (None, _) => "",
            (Some(_), true) => "; Secure Boot: yes",
            (Some(_), false) => "; Secure Boot: no",
        };
        let summary = format!(
            "rescue environment: kernel {}, {}, {}, {:.1} MiB{secure_boot}",
            rescue.kernel_version,
            crate::units::count(rescue.modules as u64, "module", "modules"),
            crate::units::count(rescue.tools as u64, "tool", "tools"),
            rescue.size_bytes as f64 / (1024.0 * 1024.0),
        ) + &built.origin;
        Ok(BootFiles {
            kernel: rescue.kernel,
            initrd: rescue.initrd,
            menu: built.boot.menu,
            grub: built.boot.grub,
            id_hex: built.boot.id_hex,
            kernel_version: rescue.kernel_version,
            summary,
            rescue_bytes: rescue.size_bytes,
            rescue_inputs: rescue.inputs,
        })
    }
}

impl Drop for BootJob {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The base's rescue record and its initramfs core (from `core`, checked against the
/// record); otherwise why there are none to use.
fn previous_core(
    inputs: Result<RescueInputs, String>,
    core: CoreSource,
    path: &Path,
) -> Result<(RescueInputs, Vec<u8>), String> {
    let inputs = inputs?;
    let core = match core {
        CoreSource::Iso => iso_core(path, &inputs)?,
        CoreSource::Read(read) => read(&inputs)?,
    };
    if !inputs.vouches_for(&core) {
        return Err("its initramfs does not match its rescue record".into());
    }
    Ok((inputs, core))
}

/// The first `core_len` bytes of the initrd of the ISO at `path`.
fn iso_core(path: &Path, inputs: &RescueInputs) -> Result<Vec<u8>, String> {
    let iso = crate::iso::IsoReader::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let initrd_path = MenuParams::default().initrd_path;
    let extent = iso
        .lookup(initrd_path.trim_start_matches('/'))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("it has no {initrd_path}"))?;
    if extent.len < inputs.core_len {
        return Err(format!("its {initrd_path} is shorter than its record says"));
    }
    let mut core = vec![0u8; inputs.core_len as usize];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut core, extent.offset)
        .map_err(|e| format!("cannot read its {initrd_path}: {e}"))?;
    Ok(core)
}

/// An ISO being written: its packs go into place first, the rest around them at the end.
pub(super) struct IsoOutput {
    packs: IsoPackWriter,
    path: PathBuf,
    label: String,
    root: PathBuf,
}

impl IsoOutput {
    /// Starts the ISO of `root` in `file` (named `path` in messages), its packs first.
    pub fn new(
        file: File,
        path: &Path,
        root: &Path,
        image_id: [u8; 16],
        seal: Option<(&ImageKey, &[u8])>,
    ) -> Result<Self, PayloadError> {
        Ok(IsoOutput {
            packs: IsoPackWriter::new(file, path, seal)?,
            path: path.to_path_buf(),
            label: volume_label(&image_id),
            root: root.to_path_buf(),
        })
    }
}

impl ContainerWriter for IsoOutput {
    fn sink(&mut self) -> &mut dyn PackSink {
        &mut self.packs
    }

    /// Writes the ISO around the packs: the boot files, then the manifest.
    fn finish(self: Box<Self>, m: &Manifest, boot: Option<&BootFiles>) -> Result<(), CaptureError> {
        let payload = self.packs.finish(m)?;
        let boot =
            boot.ok_or_else(|| CaptureError::Usage("internal: ISO without boot files".into()))?;
        write(&self.path, &self.label, &self.root, m, payload, boot)
    }
}

/// Writes the ISO to `out`, around the packs already in it (`IsoPackWriter`): the boot files,
/// then the manifest. `root` is the captured root, as the README names it.
pub(super) fn write(
    out: &Path,
    label: &str,
    root: &Path,
    m: &Manifest,
    payload: IsoPayload,
    boot: &BootFiles,
) -> Result<(), CaptureError> {
    let grub = boot
        .grub
        .as_ref()
        .ok_or_else(|| CaptureError::Usage("internal: ISO boot files without GRUB".into()))?;
    let mtime = m.image.created.sec;
    let file = |path: String, source: IsoSource| IsoFile {
        path,
        source,
        mode: 0o444,
        mtime,
    };
    let mut files: Vec<IsoFile> = payload
        .packs
        .iter()
        .enumerate()
        .map(|(i, &(offset, len))| file(pack_path(i), IsoSource::Placed { offset, len }))
        .collect();
    files.extend([
        file(id_marker_path(&boot.id_hex), IsoSource::Bytes(Vec::new())),
        file(
            "README.TXT".into(),
            IsoSource::Bytes(readme(m, root, payload.keys.is_some()).into_bytes()),
        ),
        file(
            boot.menu.kernel_path.trim_start_matches('/').to_string(),
            IsoSource::Path(boot.kernel.clone()),
        ),
        file(
            boot.menu.initrd_path.trim_start_matches('/').to_string(),
            IsoSource::Path(boot.initrd.clone()),
        ),
    ]);
    files.extend(grub.files.iter().cloned());
    files.push(file(
        format!("{PAYLOAD_DIR}/{MANIFEST_NAME}"),
        IsoSource::Bytes(payload.manifest),
    ));
    if let Some(keys) = payload.keys {
        files.push(file(
            format!("{PAYLOAD_DIR}/{KEYS_NAME}"),
            IsoSource::Bytes(keys),
        ));
    }
    let spec = IsoSpec {
        volume_id: label.to_string(),
        files,
        boot: Some(grub.boot.clone()),
        hybrid: true,
    };
    write_iso(&spec, out)?;
    Ok(())
}

/// The plain-text note for someone who opens the ISO in a file manager.
fn readme(m: &Manifest, root: &Path, encrypted: bool) -> String {
    let created = chrono::DateTime::from_timestamp(m.image.created.sec, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    if encrypted {
        // docs/SECURITY.md: the readable part of an encrypted ISO names nothing of the system.
        return "osimage system image (encrypted)\r\n\
                ================================\r\n\
                \r\n\
                This disc holds an encrypted image of a system and a rescue environment that\r\n\
                restores it after asking for the passphrase or key on the console (or reading\r\n\
                it from osimage.keyfile=PATH on a second medium).\r\n\
                \r\n\
                From any Linux: osimage list|info|verify|extract THIS.iso --identity FILE, or\r\n\
                with the passphrase from a prompt, --passphrase-file or OSIMAGE_PASSPHRASE.\r\n"
            .into();
    }
    format!(
        "osimage system image\r\n\
         ====================\r\n\
         \r\n\
         This disc holds a complete image of the system {host} ({os}), captured from\r\n\
         {root} on {created} by osimage {ver}, and a rescue environment that restores it.\r\n\
         \r\n\
         To restore: boot a machine from this disc (or from a USB stick it was written to\r\n\
         with dd). The default menu entry restores, after a short countdown, onto the only\r\n\
         empty disk that is large enough, then powers off; with no such disk, or several,\r\n\
         it asks which disk to use and what to destroy. Kernel parameters for automation:\r\n\
         osimage.auto=1 osimage.target=/dev/sdX osimage.force=1 osimage.poweroff=1|reboot\r\n\
         \r\n\
         From any Linux: osimage list|info|verify|extract THIS.iso, or\r\n\
         osimage restore THIS.iso --target /dev/sdX\r\n\
         \r\n\
         Contents: osimage/ holds the payload (manifest.osm and packs/, format described in\r\n\
         the project's docs/FORMAT.md); osimage/rescue/ the rescue kernel and initramfs;\r\n\
         boot/grub/ the boot loader. The image holds every file of the captured system,\r\n\
         secrets included: keep it as safe as the machine itself.\r\n",
        host = m.image.hostname,
        os = if m.image.os_release.is_empty() {
            "Linux"
        } else {
            &m.image.os_release
        },
        root = root.display(),
        ver = m.image.tool_version,
    )
}
