//! Stage `restore` (docs/DESIGN.md): payload + layout + a chosen disk → a restored, bootable
//! disk (issue #5). Used by `osimage restore` from any Linux and by the rescue agent.
//!
//! The whole restore: read the manifest and its layout → check the target (safety rules in
//! `target`) → `RestorePlan` (printable, serializable; `--dry-run` stops here) → `apply` in
//! phases → report. See docs/RESTORE.md.
//!
//! - `plan`: the plan from (layout, target size, sector size); refusals carry the numbers
//! - `target`: opening a disk or image file, emptiness and in-use checks
//! - `disk`: wipe, partition table (gptman/mbrman), raw boot areas
//! - `mkfs`: mkfs command lines keeping UUID, label and features
//! - `default_layout`: the layout used for an image that recorded none (`--default-layout`)
//! - `btrfs`: subvolumes recreated, default and read-only flags
//! - `tree`: the image's tree split per filesystem
//! - `fstab`: the tree's etc/fstab for the default layout
//! - `grub`: the restored system's own GRUB tools, chrooted
//! - `esp`: ESP removable path, NVRAM entry, vfat through mtools where the kernel lacks vfat
//! - `apply`: the phases; `log`: the restore log
//! - `prepare`: one restore for both front-ends (`osimage restore`, the agent): request →
//!   plans, renew, checks → `Prepared`, printed, then applied
//! - `to_dir`: `--to DIR`, the files and the per-machine changes on a directory

mod apply;
pub mod blockdev;
pub mod btrfs;
pub mod default_layout;
pub mod disk;
pub mod esp;
pub mod fstab;
pub mod generalize;
pub mod grub;
mod holders;
pub mod initramfs;
pub mod log;
pub mod mkfs;
pub mod mounts;
pub mod overlay;
pub mod plan;
mod prepare;
pub mod target;
mod to_dir;
pub mod tree;
mod write_bench;

use std::path::{Path, PathBuf};

pub use apply::{DiskJob, FsReport, RestoreReport, apply, apply_all};
pub use plan::{PlanError, RestorePlan};
pub use prepare::{Prepared, RestoreRequest, Targets, prepare};
pub use target::{Contents, TargetDisk};
pub use to_dir::{DirReport, DirRequest, restore_into_dir};

use crate::extract::{ExtractError, ExtractOptions, ExtractReport, extract};
use crate::format::PayloadError;
use crate::layout::{DiskLayout, LayoutError, from_manifest};
use crate::payload::reader::PayloadReader;
use crate::progress::Progress;

/// How a restore may proceed.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Restore over a disk that holds data (`--force`, `osimage.force=1`).
    pub force: bool,
    /// Threads writing file data.
    pub threads: usize,
    /// Add a UEFI NVRAM boot entry (where efivars exist). True in the rescue environment; from
    /// another Linux it would change *that* machine's firmware settings, so off by default.
    pub nvram: bool,
    /// The NVRAM entry's label (default: the ESP's vendor directory name).
    pub efi_label: Option<String>,
    /// Disks never to write to (kernel names: the boot medium's).
    pub exclude_disks: Vec<String>,
    /// Fill vfat filesystems with mtools even where the kernel could mount them.
    pub mtools: bool,
    /// An image that recorded no disk layout goes onto osimage's default one
    /// (`--default-layout`, `osimage.default-layout=1`; docs/RESTORE.md).
    pub default_layout: bool,
    /// Generalize the restored system (`--generalize`, `--hostname`; docs/GENERALIZE.md).
    pub generalize: generalize::GeneralizeOptions,
    /// Per-machine files copied over the restored tree last (`--overlay DIR`).
    pub overlay: Option<PathBuf>,
    /// Fresh filesystem UUIDs, swap UUIDs, partition GUIDs and disk GUID, with the restored
    /// tree's references rewritten (`--new-uuids`, `osimage.new-uuids=1`; `plan/renew.rs`).
    pub new_uuids: bool,
    /// Kernel modules the restored initramfs must hold besides the target's own drivers
    /// (`--initramfs-driver`): the controller the disk will boot on when it is not the one
    /// restoring it (a disk image for an NVMe machine, a disk restored through a USB dock).
    pub initramfs_drivers: Vec<String>,
    /// The passphrase the LUKS containers of the block stack are made anew under
    /// (`--luks-passphrase-file`, `osimage.luks-keyfile=`); a plan with LUKS needs it.
    pub luks_passphrase: Option<String>,
    /// `--seed N` (`osimage.seed=N`): every identity drawn for `new_uuids` and
    /// `default_layout` derives from N (`plan/draw.rs`), so a dry run shows the values the
    /// restore writes. `None`: the kernel's random bytes.
    pub seed: Option<u64>,
    /// `osimage.bench=dd`: after the unpack, time `dd` writing as many bytes to the same
    /// disk and print both rates (`write_bench`, issue #23).
    pub write_bench: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            force: false,
            threads: 2,
            nvram: false,
            efi_label: None,
            exclude_disks: Vec::new(),
            mtools: false,
            default_layout: false,
            generalize: generalize::GeneralizeOptions::default(),
            overlay: None,
            new_uuids: false,
            initramfs_drivers: Vec::new(),
            luks_passphrase: None,
            seed: None,
            write_bench: false,
        }
    }
}

/// Why a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("target {}: {reason}", path.display())]
    Target { path: PathBuf, reason: String },
    #[error(
        "target {} holds data ({}); nothing was written. Restoring over it destroys it: pass \
         --force (osimage.force=1) to do so, or choose an empty disk",
        path.display(), found.join("; ")
    )]
    NotEmpty { path: PathBuf, found: Vec<String> },
    #[error("{tool} on {}: {msg}", device.display())]
    Tool {
        tool: String,
        device: PathBuf,
        msg: String,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The image's files cannot be unpacked onto the filesystems restored (checked before any
    /// disk is written, and by the dry run).
    #[error("the image's files for {mount_point}: {source}; nothing was written")]
    Tree {
        mount_point: String,
        #[source]
        source: ExtractError,
    },
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(
        "{} has no disk layout record (made by an osimage without layout capture); restore it \
         onto osimage's default layout with --default-layout, or its files with --to DIR",
        .0.display()
    )]
    NoLayout(PathBuf),
    #[error("overlay {}: not a directory", .0.display())]
    Overlay(PathBuf),
    /// `--hostname` gives a name that is not a valid hostname: a usage error.
    #[error("target /etc/hostname: {name:?}: {why}")]
    Hostname { name: String, why: String },
}

impl RestoreError {
    /// Whether this is a usage error (exit 2): a malformed value given on the command line.
    pub fn is_usage(&self) -> bool {
        matches!(self, RestoreError::Hostname { .. })
    }

    pub(crate) fn target(path: &Path, reason: String) -> Self {
        RestoreError::Target {
            path: path.to_path_buf(),
            reason,
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        RestoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The image's layout record.
pub fn layout_of(reader: &PayloadReader) -> Result<DiskLayout, RestoreError> {
    from_manifest(reader.manifest())?.ok_or_else(|| RestoreError::NoLayout(reader.path().into()))
}

/// The plan for restoring `reader`'s image onto `target` (a disk or image file), read-only:
/// nothing is attached or written. `default_layout`: an image without a layout goes onto
/// osimage's default one (its fresh UUIDs from the kernel differ on every call).
pub fn plan_for(
    reader: &PayloadReader,
    target: &Path,
    default_layout: bool,
) -> Result<RestorePlan, RestoreError> {
    let (size, sector) = target::geometry(target)?;
    Ok(plan_with_layout(
        reader,
        &target.display().to_string(),
        size,
        sector,
        default_layout,
    )?
    .0)
}

/// Whether the image recorded no disk layout (a plain directory, or an osimage without
/// layout capture): it restores onto a disk only with the default layout.
pub fn has_no_layout(reader: &PayloadReader) -> Result<bool, RestoreError> {
    Ok(from_manifest(reader.manifest())?.is_none_or(|l| l.none.is_some()))
}

/// The plan and the layout it recreates: the image's, or the default one (`default_layout`
/// and the image recorded none, its identities from the kernel's random bytes).
pub fn plan_with_layout(
    reader: &PayloadReader,
    device: &str,
    size: u64,
    sector: u32,
    default_layout: bool,
) -> Result<(RestorePlan, DiskLayout), RestoreError> {
    let mut kernel = plan::kernel_random;
    plan_drawn(reader, device, size, sector, default_layout, &mut kernel)
}

/// `plan_with_layout` with the default layout's identities drawn from `fresh`.
pub fn plan_drawn(
    reader: &PayloadReader,
    device: &str,
    size: u64,
    sector: u32,
    default_layout: bool,
    fresh: plan::Fresh<'_>,
) -> Result<(RestorePlan, DiskLayout), RestoreError> {
    let recorded = from_manifest(reader.manifest())?;
    let none = recorded.as_ref().is_none_or(|l| l.none.is_some());
    if default_layout && none {
        let data = reader.manifest().stats.file_bytes;
        return Ok(default_layout::plan(
            recorded.as_ref(),
            device,
            size,
            sector,
            data,
            fresh,
        )?);
    }
    let layout = recorded.ok_or_else(|| RestoreError::NoLayout(reader.path().into()))?;
    let plan = RestorePlan::new(&layout, device, size, sector)?;
    Ok((plan, layout))
}

/// `--new-uuids`: the plan gets fresh identities from `fresh` (the kernel's random bytes, or
/// derived from `--seed`). A plan for the default layout has fresh ones already and is left
/// as it is.
pub fn renew(
    plan: &mut RestorePlan,
    layout: &DiskLayout,
    fresh: plan::Fresh<'_>,
) -> Result<(), RestoreError> {
    if !plan.boot.default_layout {
        plan.renew_identities(layout, fresh)?;
    }
    Ok(())
}

/// The read-only safety checks before a disk restore: not an excluded disk (the boot medium),
/// and empty unless `opts.force`. Returns what is on the target.
pub fn check_target(target: &Path, opts: &RestoreOptions) -> Result<Contents, RestoreError> {
    if let Ok(name) = blockdev::kernel_name(target)
        && std::fs::metadata(target)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
        && opts.exclude_disks.contains(&name)
    {
        return Err(RestoreError::target(
            target,
            format!("{name} holds the boot medium; it is never a restore target"),
        ));
    }
    let contents = target::contents_of(target)?;
    if !contents.is_empty() && !opts.force {
        return Err(RestoreError::NotEmpty {
            path: target.to_path_buf(),
            found: contents.found,
        });
    }
    Ok(contents)
}

/// Every check a restore makes before its first write (issue #24 item 4), read-only: the dry
/// run runs it, and so does the restore (`restore_planned_all`) before it releases or writes
/// anything, so the two cannot differ. In order: the image's files fit the planned
/// filesystems; then each target in plan order is not the boot medium, is empty unless
/// `opts.force` (`check_target`), is named once, is a whole disk (a partition only for a plan
/// without a partition table, `--only`) or an image file not attached to a loop device, and
/// nothing on it is mounted, used as swap, or held by dm/MD (with `--force`, what holds it is
/// released first, so only a mounted holder refuses); last, a plan with LUKS containers has
/// a passphrase for them.
pub fn preflight(
    reader: &PayloadReader,
    plans: &[RestorePlan],
    opts: &RestoreOptions,
) -> Result<(), RestoreError> {
    let filesystems: Vec<_> = plans.iter().flat_map(|p| p.filesystems.clone()).collect();
    tree::check_parts(reader, &filesystems)?;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for p in plans {
        let path = Path::new(&p.target.device);
        check_target(path, opts)?;
        let meta = std::fs::metadata(path).map_err(|e| RestoreError::io("reading", path, e))?;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let id = if meta.file_type().is_block_device() {
            (0, meta.rdev())
        } else {
            (meta.dev(), meta.ino())
        };
        if seen.contains(&id) {
            return Err(RestoreError::target(
                path,
                "named twice: each recorded disk needs its own target".into(),
            ));
        }
        seen.push(id);
        let partition_ok = p.table == plan::TablePlan::None;
        target::check_usable(path, partition_ok, opts.force)?;
        if let Some(name) = opts.force.then(|| holders::disk_name(path)).flatten() {
            holders::check_releasable(&name).map_err(|e| released_error(path, e))?;
        }
    }
    check_luks_passphrase(plans, opts)
}

/// A plan that makes LUKS containers needs the passphrase their new keys go under.
fn check_luks_passphrase(plans: &[RestorePlan], opts: &RestoreOptions) -> Result<(), RestoreError> {
    if opts.luks_passphrase.is_some() {
        return Ok(());
    }
    for p in plans {
        for step in &p.stack {
            if let plan::StackStep::Luks(l) = step {
                return Err(RestoreError::target(
                    Path::new(&p.target.device),
                    apply::luks_needs_passphrase(l),
                ));
            }
        }
    }
    Ok(())
}

fn released_error(target: &Path, e: String) -> RestoreError {
    RestoreError::target(target, format!("releasing what is built on it: {e}"))
}

/// With `--force`: whatever block stack is still built on `target` (an interrupted restore's
/// VG, LUKS mapping or array) is released first, so the disk can be wiped; logged.
fn release_forced(
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<(), RestoreError> {
    let Some(name) = opts.force.then(|| holders::disk_name(target)).flatten() else {
        return Ok(());
    };
    let released = holders::release(&name).map_err(|e| released_error(target, e))?;
    if !released.is_empty() {
        progress.note(&format!(
            "--force: released {} built on {name} (an earlier restore's stack?)",
            released.join(", ")
        ));
    }
    Ok(())
}

/// Restores the image onto `target` (a whole disk, or an image file through a loop device):
/// checks, plan, apply. Nothing is written before the checks and the plan succeed.
pub fn restore_to_disk(
    reader: &PayloadReader,
    target_path: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<(RestorePlan, RestoreReport), RestoreError> {
    check_target(target_path, opts)?;
    let (size, sector) = target::geometry(target_path)?;
    let mut draws = plan::Draws::new(plan::IdSource::from_seed(opts.seed));
    let fresh = &mut |label: &str| draws.next(label);
    let (plan, layout) = plan_drawn(
        reader,
        &target_path.display().to_string(),
        size,
        sector,
        opts.default_layout,
        fresh,
    )?;
    let mut plan = plan;
    if opts.new_uuids {
        renew(&mut plan, &layout, fresh)?;
    }
    let report = restore_planned(reader, target_path, &plan, &layout, opts, progress)?;
    Ok((plan, report))
}

/// Applies a plan already shown to the user (from `plan_with_layout`: for the default layout
/// its fresh UUIDs are the ones printed). The safety checks (`preflight`) run again first.
pub fn restore_planned(
    reader: &PayloadReader,
    target_path: &Path,
    plan: &RestorePlan,
    layout: &DiskLayout,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    // Every check before --force releases anything built on the target.
    let mut checked = plan.clone();
    checked.target.device = target_path.display().to_string();
    preflight(reader, std::slice::from_ref(&checked), opts)?;
    release_forced(target_path, opts, progress)?;
    let mut disk = TargetDisk::open(target_path)?;
    apply(plan, layout, reader, &mut disk, opts, progress)
}

/// The plans for restoring onto several disks (`--map`, `osimage.map=`): `targets` pairs a
/// recorded disk's name with a device or image file. Read-only. The system disk's plan is
/// first.
pub fn plan_disks(
    reader: &PayloadReader,
    targets: &[(String, PathBuf)],
) -> Result<(Vec<RestorePlan>, DiskLayout), RestoreError> {
    let layout = layout_of(reader)?;
    if let Some(why) = &layout.none {
        return Err(RestoreError::Plan(PlanError(format!(
            "this image has no disk layout ({why}): --map needs one"
        ))));
    }
    let mut ts = Vec::new();
    for (source, path) in targets {
        let (size_bytes, sector) = target::geometry(path)?;
        ts.push(plan::several::DiskTarget {
            source: source.clone(),
            device: path.display().to_string(),
            size_bytes,
            sector,
        });
    }
    Ok((plan::several::plan_disks(&layout, &ts)?, layout))
}

/// The plan for `--only MOUNTPOINT`: that recorded filesystem alone onto `target` (a
/// partition, disk or image file). Read-only.
pub fn plan_only(
    reader: &PayloadReader,
    mount_point: &str,
    target: &Path,
) -> Result<(RestorePlan, DiskLayout), RestoreError> {
    let layout = layout_of(reader)?;
    let (size, sector) = target::geometry(target)?;
    let plan = RestorePlan::only(
        &layout,
        mount_point,
        &target.display().to_string(),
        size,
        sector,
    )?;
    Ok((plan, layout))
}

/// Applies plans from `plan_disks` (each shown to the user), every target checked again
/// first (`preflight`: no device named twice).
pub fn restore_planned_all(
    reader: &PayloadReader,
    plans: &[RestorePlan],
    layout: &DiskLayout,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    // Every check before --force releases anything built on a target.
    preflight(reader, plans, opts)?;
    let mut disks = Vec::new();
    for p in plans {
        let path = Path::new(&p.target.device);
        // A plan without a partition table (`--only`) may go onto a partition.
        let partition_ok = p.table == plan::TablePlan::None;
        release_forced(path, opts, progress)?;
        disks.push(TargetDisk::open_with(path, partition_ok)?);
    }
    let mut jobs: Vec<DiskJob> = plans
        .iter()
        .zip(disks.iter_mut())
        .map(|(plan, target)| DiskJob { plan, target })
        .collect();
    apply_all(&mut jobs, layout, reader, opts, progress)
}

/// `restore --to DIR`: every file with its metadata, no disks touched.
pub fn restore_to_dir(
    reader: &PayloadReader,
    dir: &Path,
    threads: usize,
    progress: &dyn Progress,
) -> Result<ExtractReport, RestoreError> {
    let opts = ExtractOptions {
        threads: threads.max(1),
        sync: true,
        ..ExtractOptions::default()
    };
    Ok(extract(reader, dir, &opts, progress)?)
}
