//! `capture`: scan → payload → container, written to a temporary name and renamed into place
//! only when complete and synced (issue #2 "Bad input", issue #7 "Faults").
//!
//! `capture_from` runs the steps in order: `staging` checks ROOT and OUTPUT and makes the
//! temporary names, `steps` opens a refresh's base, records the layout, starts an ISO's boot
//! side, scans and writes the payload into a `container` (`oimg_output` or `iso_output`),
//! `manifest` assembles what it describes, and `staging` renames the result into place.

use std::path::{Path, PathBuf};
use std::time::Instant;

mod commit_watch;
mod container;
pub mod export;
pub mod import;
pub mod interrupt;
pub mod into_store;
mod iso_output;
mod manifest;
mod oimg_output;
mod preflight;
pub mod snapshot;
mod staging;
mod steps;
mod store_rescue;

use crate::format::PayloadError;
use crate::format::manifest::{CaptureStats, CapturedFs};
use crate::payload::writer::BaseImage;
use crate::progress::Progress;
use crate::scan::{self, ScanOptions, Skipped};
use staging::Staging;

/// What to capture and how.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub root: PathBuf,
    pub output: PathBuf,
    pub scan: ScanOptions,
    /// zstd level (1–19; default 3).
    pub level: i32,
    pub threads: usize,
    /// Replace an existing output file.
    pub force: bool,
    /// Read the finished image back and check every chunk before renaming it into place.
    pub verify: bool,
    /// The rescue kernel (`--kernel`): a path or a version in ROOT/boot; default the newest.
    pub kernel: Option<PathBuf>,
    /// Capture ROOT's filesystem from a btrfs or LVM snapshot (`--snapshot`).
    pub snapshot: bool,
    /// Capture a system whose disk layout cannot be recreated anyway, as a files image
    /// (`--files-only`); without it such a capture stops before reading anything.
    pub files_only: bool,
    /// `--encrypt`: who can open the image (FORMAT.md §11).
    pub lock: Option<std::sync::Arc<crate::envelope::keys::Lock>>,
    /// How to open an encrypted `--base`.
    pub unlock: std::sync::Arc<crate::envelope::Unlock>,
}

/// What a capture did.
#[derive(Debug)]
pub struct CaptureReport {
    pub output: PathBuf,
    pub size: u64,
    pub stats: CaptureStats,
    pub skipped: Vec<Skipped>,
    /// What was left out on purpose: the output, a refresh's base, every osimage image under
    /// ROOT (images never nest, issue #24), swap files, and what vanished during the scan.
    pub left_out: Vec<Skipped>,
    /// Filesystems under ROOT left out whole, neither scanned nor in the layout, each as the
    /// line said during the capture (`/mnt/usb (ext4 on /dev/sdb1): why`): the output's, when
    /// the system's fstab does not mount it (issue #24).
    pub left_out_filesystems: Vec<String>,
    pub warnings: Vec<String>,
    /// What went into the rescue environment (ISO output only).
    pub rescue: Option<String>,
    /// Bytes of `size` that are the rescue kernel and initramfs, not file data (0 for a
    /// payload-only image).
    pub rescue_bytes: u64,
}

/// Everything that can stop a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A malformed value given on the command line (such as `-o -`): a usage error.
    #[error("{0}")]
    Argument(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Scan(#[from] scan::ScanError),
    #[error("{0}")]
    Payload(#[from] PayloadError),
    #[error("{0}")]
    Rescue(#[from] crate::rescue::RescueError),
    #[error("{0}")]
    Iso(#[from] crate::iso::IsoError),
    #[error("{0}")]
    Snapshot(#[from] snapshot::SnapshotError),
    /// The layout cannot be recreated and `--files-only` was not given.
    /// Programs or files this capture needs are missing, on the host or in ROOT: all named at
    /// once with their Debian packages, before anything was read (issue #24 item 7).
    #[error("{}", preflight::describe(root, on_host, in_root))]
    MissingTools {
        root: String,
        on_host: Vec<preflight::Missing>,
        in_root: Vec<preflight::Missing>,
    },
    #[error(
        "{root}: this system cannot be restored to bare metal by osimage:\n  - {}\n\
         Nothing was written. An image of its files is still good for `osimage restore \
         IMAGE --to DIR`, `extract` and `--only`; capture one with --files-only.",
        reasons.join("\n  - ")
    )]
    NotRestorable { root: String, reasons: Vec<String> },
}

impl CaptureError {
    /// Whether this is a usage error (exit 2): a malformed value such as an `--exclude`
    /// pattern, as opposed to a failure (a missing root, an existing output: exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            CaptureError::Argument(_) => true,
            CaptureError::Scan(e) => e.is_usage(),
            _ => false,
        }
    }
}

/// The filesystems a capture with `opts` takes, to show before it starts: `plan_filesystems`
/// without the filesystem the output goes to when the system's fstab does not mount it (it is
/// left out, issue #24).
pub fn plan_capture(opts: &CaptureOptions) -> Result<Vec<CapturedFs>, CaptureError> {
    let root = std::fs::canonicalize(&opts.root)
        .map_err(|e| CaptureError::Usage(format!("capture root {}: {e}", opts.root.display())))?;
    let output = std::path::absolute(&opts.output).unwrap_or_else(|_| opts.output.clone());
    let dir = output.parent().unwrap_or(Path::new("/"));
    let sources = crate::layout::Sources::host();
    let left_out: Vec<PathBuf> = crate::layout::output_fs(&root, dir, &sources)
        .ok()
        .flatten()
        .map(|f| f.mount_point)
        .into_iter()
        .collect();
    Ok(scan::plan_leaving(&root, &opts.scan, &left_out)?)
}

/// Captures `opts.root` into `opts.output`.
pub fn capture(
    opts: &CaptureOptions,
    progress: &dyn Progress,
) -> Result<CaptureReport, CaptureError> {
    capture_from(opts, None, progress)
}

/// `capture`, refreshing the image at `base` when given (issue #6, docs/REFRESH.md): its
/// unchanged files are not read and its stored blocks are copied, not compressed again.
pub fn capture_from(
    opts: &CaptureOptions,
    base_path: Option<&Path>,
    progress: &dyn Progress,
) -> Result<CaptureReport, CaptureError> {
    let started = Instant::now();
    let mut base = steps::open_base(base_path, opts)?;
    let checked = staging::Checked::new(opts)?;
    // The layout as the system has it, before --snapshot adds its snapshot volume to a VG
    // (and turns the origin into a snapshot-origin device).
    let (layout, output_fs) = steps::record_layout(&checked.root, &checked.output, opts, progress)?;
    preflight::check(
        opts,
        &checked.root,
        &layout,
        staging::is_iso(&checked.output),
    )?;
    let mut staging = Staging::prepare(checked, opts, progress)?;
    staging.left_out_fs = output_fs.iter().map(|f| f.mount_point.clone()).collect();
    let stale = std::mem::take(&mut staging.removed_stale);
    let image_id = manifest::random_id();
    let seal = steps::seal(opts, image_id)?;
    let seal_ref = seal.as_ref().map(|(k, r)| (k, r.as_slice()));
    // The boot side (ISO) is built beside the scan and the payload.
    let boot_job = steps::start_boot(opts, &staging, &layout, image_id, base.as_ref(), progress)?;
    let mut scanned = steps::scan(&staging, &opts.scan, base_path, base.as_mut(), progress)?;
    let left_out = staging.left_out(std::mem::take(&mut scanned.omitted));
    let unread = std::mem::take(&mut scanned.mount_dirs_unread);

    let mut container = container::open(&staging, image_id, seal_ref)?;
    let mut params = steps::payload_params(opts, image_id, &scanned);
    // The hashes' rests go to a scratch file beside the output only for a plain image: an
    // encrypted image's chunk hashes are never written in the clear (they stay in memory).
    if seal_ref.is_none() {
        params.scratch = staging.tmp.path().parent().map(Path::to_path_buf);
    }
    let tables = steps::write_packs(
        &mut scanned.entries,
        container.sink(),
        seal_ref,
        &params,
        base.as_ref().map(|b| b as &dyn BaseImage),
        progress,
    )?;
    // The rescue kernel and initramfs were built beside the payload: wait for them.
    let boot = boot_job.map(|j| j.finish(progress)).transpose()?;
    let info = manifest::image_info(&staging.root, image_id, opts.level);
    let mut done = manifest::assemble(info, scanned, tables, &layout, boot.as_ref(), base.as_ref());
    done.manifest.stats.duration_ms = started.elapsed().as_millis() as u64;
    container.finish(&done.manifest, boot.as_ref())?;

    staging.release_snapshot()?;
    let file = staging.sync()?;
    if opts.verify {
        steps::verify_output(&staging, seal.as_ref(), image_id, opts.threads, progress)?;
    }
    let (output, size) = staging.persist(&file)?;
    let mut warnings = done.warnings;
    warnings.extend(mount_dirs_warning(&unread));
    warnings.extend(stale.iter().map(|p| {
        format!(
            "removed {}: left by an interrupted capture (its process is gone, no one holds it)",
            p.display()
        )
    }));
    Ok(CaptureReport {
        output,
        size,
        stats: done.manifest.stats,
        skipped: done.skipped,
        left_out,
        left_out_filesystems: output_fs
            .iter()
            .map(|f| format!("{f}: {}", steps::OUTPUT_FS_REASON))
            .collect(),
        warnings,
        rescue_bytes: boot.as_ref().map_or(0, |b| b.rescue_bytes),
        rescue: boot.map(|b| b.summary),
    })
}

/// One warning for the mount points recorded as what is mounted on them (docs/DESIGN.md
/// "Scope of a capture"), naming them and the first reason.
pub(super) fn mount_dirs_warning(unread: &[Skipped]) -> Option<String> {
    let first = unread.first()?;
    let paths: Vec<String> = unread
        .iter()
        .map(|s| s.path.display().to_string())
        .collect();
    Some(format!(
        "mount points recorded with the metadata of the filesystem mounted on them, not their \
         own directory ({}): {}",
        first.reason,
        paths.join(", ")
    ))
}
