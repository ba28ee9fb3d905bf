//! The steps of a capture besides where it writes (`staging`) and what (`container`): the base
//! of a refresh, the disk layout, the image's key, the boot side of an ISO, the scan, the
//! payload, and the read-back of `--verify`; `capture_from` runs them in this order.

use std::path::{Path, PathBuf};

use super::iso_output::{self, BootJob, PreviousIso};
use super::snapshot::Snapshot;
use super::staging::Staging;
use super::{CaptureError, CaptureOptions};
use crate::envelope::ImageKey;
use crate::format::PayloadError;
use crate::format::manifest::{CapturedFs, Entries};
use crate::format::sink::PackSink;
use crate::layout::{DiskLayout, OutputFs, Sources};
use crate::payload::reader::PayloadReader;
use crate::payload::writer::{
    BaseImage, PackOwner, PayloadParams, PayloadTables, write_payload_with_base,
};
use crate::progress::Progress;
use crate::refresh::Base;
use crate::scan::{self, ScanOptions, ScanResult};

/// An encrypted image's key and its key record (FORMAT.md §11).
pub(super) type Seal = (ImageKey, Vec<u8>);

/// Opens the image a refresh starts from (`--base`). An encrypted base needs an encrypted
/// refresh: a refresh would otherwise write the base's secrets out in the clear.
pub(super) fn open_base(
    base: Option<&Path>,
    opts: &CaptureOptions,
) -> Result<Option<Base>, CaptureError> {
    let base = base.map(|b| Base::open(b, &opts.unlock)).transpose()?;
    if let Some(b) = &base
        && b.encrypted()
        && opts.lock.is_none()
    {
        return Err(CaptureError::Usage(
            "the base image is encrypted: encrypt its refresh too (--encrypt or --recipient)"
                .into(),
        ));
    }
    Ok(base)
}

/// The disk layout, recorded before the scan: a system that cannot be restored to bare metal
/// is said so up front. The filesystem `output` goes to is left out of it, and said so, when
/// it is mounted under `root` and the system's fstab does not mount it (issue #24); the scan
/// leaves it out too.
pub(super) fn record_layout(
    root: &Path,
    output: &Path,
    opts: &CaptureOptions,
    progress: &dyn Progress,
) -> Result<(DiskLayout, Option<OutputFs>), CaptureError> {
    let dir = output.parent().unwrap_or(Path::new("/"));
    record_layout_beside(root, Some(dir), opts, progress)
}

/// `record_layout` for an output in the folder `dir`, or for one that is no local file (a
/// store, `dir` `None`): nothing is left out then.
pub(super) fn record_layout_beside(
    root: &Path,
    dir: Option<&Path>,
    opts: &CaptureOptions,
    progress: &dyn Progress,
) -> Result<(DiskLayout, Option<OutputFs>), CaptureError> {
    let found = crate::layout::capture_beside_output(root, dir, &Sources::host());
    let (layout, output_fs) = match found {
        Ok(l) => (l.layout, l.output_fs),
        Err(e) => {
            progress.note(&format!("warning: disk layout not recorded: {e}"));
            let none = DiskLayout {
                none: Some(format!("reading the layout failed: {e}")),
                ..Default::default()
            };
            (none, None)
        }
    };
    if let Some(fs) = &output_fs {
        progress.status(&format!("left out {fs}: {OUTPUT_FS_REASON}"));
    }
    if let Some(why) = &layout.none {
        progress.note(&format!(
            "no disk layout recorded ({why}): the image restores files, not disks"
        ));
    }
    // A tree with no filesystem for / (a directory with something mounted under it) is a
    // files capture anyway; a system whose / is recorded must come back whole, or say so.
    let system = layout.filesystems.iter().any(|f| f.mount_point == "/");
    if layout.none.is_none() && system && !layout.unsupported.is_empty() && !opts.files_only {
        return Err(CaptureError::NotRestorable {
            root: opts.root.display().to_string(),
            reasons: layout.unsupported.clone(),
        });
    }
    for why in &layout.unsupported {
        progress.note(&format!(
            "warning: this system is not restorable to bare metal: {why}"
        ));
    }
    Ok((layout, output_fs))
}

/// Why the output's filesystem is left out (`record_layout`).
pub(super) const OUTPUT_FS_REASON: &str = "the output goes there and fstab does not mount it";

/// A new key for the image when it is to be encrypted (`--encrypt`, `--recipient`).
pub(super) fn seal(
    opts: &CaptureOptions,
    image_id: [u8; 16],
) -> Result<Option<Seal>, CaptureError> {
    let Some(lock) = &opts.lock else {
        return Ok(None);
    };
    let (key, record) = crate::envelope::keys::new_key(lock, image_id)?;
    Ok(Some((ImageKey::new(key, image_id), record)))
}

/// Starts building the boot side of an ISO in the work folder, on a thread of its own beside
/// the scan and the payload. A first capture waits for its plan first: a missing kernel, tool
/// or GRUB file fails in about a second, not after the whole payload was written. A refresh,
/// quick itself, goes on. A `.oimg` has no boot side.
pub(super) fn start_boot(
    opts: &CaptureOptions,
    staging: &Staging,
    layout: &DiskLayout,
    image_id: [u8; 16],
    base: Option<&Base>,
    progress: &dyn Progress,
) -> Result<Option<BootJob>, CaptureError> {
    let Some(work) = &staging.work else {
        return Ok(None);
    };
    let mut job = iso_output::start_boot(
        &staging.root,
        opts.kernel.as_deref(),
        layout,
        image_id,
        work.path(),
        base.map(PreviousIso::of),
        progress,
    )?;
    if base.is_none() {
        job.wait_planned(progress)?;
    }
    Ok(Some(job))
}

/// Scans what `staging` says (ROOT or its snapshot; the output, temporary names and the base
/// image at `base_path` left out).
pub(super) fn scan(
    staging: &Staging,
    opts: &ScanOptions,
    base_path: Option<&Path>,
    base: Option<&mut Base>,
    progress: &dyn Progress,
) -> Result<ScanResult, CaptureError> {
    let scan_opts = staging.scan_options(opts, base_path);
    let left_out = staging.left_out_mounts();
    let scan_root = staging.scan_root();
    progress.note(&format!("scanning {}", scan_root.display()));
    let scope = Scope {
        root: scan_root,
        opts: &scan_opts,
        left_out: &left_out,
    };
    scan_against_base(&scope, staging.snap.as_ref(), base)
}

/// What a scan walks: the root, the options, and the filesystems left out whole.
pub(super) struct Scope<'a> {
    pub root: &'a Path,
    pub opts: &'a ScanOptions,
    pub left_out: &'a [PathBuf],
}

/// Scans `root`; with a base, unchanged files' xattrs come from it (docs/REFRESH.md), and the
/// base's files cache is left indexed for the scanned filesystems. Should the filesystems have
/// changed between planning and walking (a mount came or went), the walk is done again
/// without the base, so its answers always refer to the filesystems the image records.
pub(super) fn scan_against_base(
    scope: &Scope,
    snap: Option<&Snapshot>,
    base: Option<&mut Base>,
) -> Result<ScanResult, CaptureError> {
    let Scope {
        root,
        opts,
        left_out,
    } = *scope;
    let identity = |fss: &mut Vec<CapturedFs>| {
        if let Some(s) = snap {
            s.restore_identity(fss);
        }
    };
    let Some(base) = base else {
        let mut scanned = scan::scan_with(root, opts, left_out, None)?;
        identity(&mut scanned.filesystems);
        return Ok(scanned);
    };
    let mut planned = scan::plan_leaving(root, opts, left_out)?;
    identity(&mut planned);
    base.index_files(&planned);
    let mut scanned = scan::scan_with(root, opts, left_out, Some(&*base))?;
    identity(&mut scanned.filesystems);
    if scanned.filesystems != planned {
        scanned = scan::scan_with(root, opts, left_out, None)?;
        identity(&mut scanned.filesystems);
    }
    base.index_files(&scanned.filesystems);
    Ok(scanned)
}

/// How the payload is written: from the files `scanned` found under its root, with `opts`'
/// level, threads and `--keep-going` (and no scratch folder: the caller names one).
pub(super) fn payload_params(
    opts: &CaptureOptions,
    image_id: [u8; 16],
    scanned: &ScanResult,
) -> PayloadParams {
    PayloadParams {
        root: scanned.root.clone(),
        to_read: scanned.to_read,
        level: opts.level,
        threads: opts.threads.max(1),
        keep_going: opts.scan.keep_going,
        image_id,
        packs: PackOwner::Image,
        pack_limit: crate::format::records::MAX_PACK_LEN,
        scratch: None,
    }
}

/// Runs the payload writer into `sink`, through a `SealedSink` when the image is encrypted.
pub(super) fn write_packs(
    entries: &mut Entries,
    sink: &mut dyn PackSink,
    seal: Option<(&ImageKey, &[u8])>,
    params: &PayloadParams,
    base: Option<&dyn BaseImage>,
    progress: &dyn Progress,
) -> Result<PayloadTables, PayloadError> {
    match seal {
        Some((key, _)) => {
            let mut sealed = crate::envelope::SealedSink::new(sink, key);
            write_payload_with_base(entries, &mut sealed, params, base, progress)
        }
        None => write_payload_with_base(entries, sink, params, base, progress),
    }
}

/// `--verify`: reads the image back under its temporary name and checks every chunk. The
/// writer's own key reads it: a recipients-only capture holds no secret.
pub(super) fn verify_output(
    staging: &Staging,
    seal: Option<&Seal>,
    image_id: [u8; 16],
    threads: usize,
    progress: &dyn Progress,
) -> Result<(), CaptureError> {
    let unlock = crate::envelope::Unlock {
        key: seal.map(|(k, _)| (image_id, k.data_key().1.clone())),
        ..Default::default()
    };
    let r = PayloadReader::open(staging.tmp.path(), &unlock)?;
    let report = crate::payload::verify::verify(&r, threads, progress)?;
    if !report.ok() {
        return Err(PayloadError::Image {
            path: staging.output.clone(),
            msg: format!(
                "the image failed its own verification: {}",
                report.problems.join("; ")
            ),
        }
        .into());
    }
    Ok(())
}
