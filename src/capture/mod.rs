//! `capture`: scan → payload → container, written to a temporary name and renamed into place
//! only when complete and synced (issue #2 "Bad input", issue #7 "Faults").

use std::path::{Path, PathBuf};
use std::time::Instant;

mod iso_output;
pub mod snapshot;

use crate::format::PayloadError;
use crate::format::manifest::{CaptureStats, EntryKind, ImageInfo, Manifest, Timestamp};
use crate::image::iso_packs::IsoPackWriter;
use crate::image::oimg::OimgWriter;
use crate::payload::chunker::PARAMS;
use crate::payload::reader::PayloadReader;
use crate::payload::verify::verify;
use crate::payload::writer::{BaseImage, PayloadParams, PayloadTables, write_payload_with_base};
use crate::progress::Progress;
use crate::scan::{self, ScanOptions, ScannedEntry, Skipped};

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
    pub warnings: Vec<String>,
    /// What went into the rescue environment (ISO output only).
    pub rescue: Option<String>,
}

/// Everything that can stop a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
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
    base: Option<&Path>,
    progress: &dyn Progress,
) -> Result<CaptureReport, CaptureError> {
    let started = Instant::now();
    let mut base = base
        .map(|b| crate::refresh::Base::open(b, &opts.unlock))
        .transpose()?;
    if let Some(b) = &base
        && b.encrypted()
        && opts.lock.is_none()
    {
        // A refresh would otherwise write the base's secrets out in the clear.
        return Err(CaptureError::Usage(
            "the base image is encrypted: encrypt its refresh too (--encrypt or --recipient)"
                .into(),
        ));
    }
    let root = std::fs::canonicalize(&opts.root)
        .map_err(|e| CaptureError::Usage(format!("capture root {}: {e}", opts.root.display())))?;
    if !root.is_dir() {
        return Err(CaptureError::Usage(format!(
            "capture root {} is not a directory",
            root.display()
        )));
    }
    let output = absolute(&opts.output)?;
    let iso = output.extension().is_some_and(|e| e == "iso");
    if output.symlink_metadata().is_ok() && !opts.force {
        return Err(CaptureError::Usage(format!(
            "{} already exists (use --force to replace it)",
            output.display()
        )));
    }
    let dir = output.parent().unwrap_or(Path::new("/"));
    // Before the temporary files exist, so the snapshot holds none of them.
    let snap = if opts.snapshot {
        let s = snapshot::Snapshot::take(&root, &opts.scan, progress)?;
        progress.note(&format!("capturing from {}", s.describe()));
        Some(s)
    } else {
        None
    };
    // Everything is written under temporary names beside the output (mode 0600), renamed
    // into place last: an interrupted capture leaves nothing that looks like an image.
    let tmp = tempfile::Builder::new()
        .prefix(".osimage-partial-")
        .tempfile_in(dir)
        .map_err(|e| PayloadError::io("cannot create a temporary file in", dir, e))?;
    let work = if iso {
        Some(
            tempfile::Builder::new()
                .prefix(".osimage-work-")
                .tempdir_in(dir)
                .map_err(|e| PayloadError::io("cannot create a work folder in", dir, e))?,
        )
    } else {
        None
    };

    let layout = record_layout(&root, progress);
    let image_id = random_id();
    let seal = match &opts.lock {
        Some(lock) => {
            let (key, record) = crate::envelope::keys::new_key(lock, image_id)?;
            Some((crate::envelope::ImageKey::new(key, image_id), record))
        }
        None => None,
    };
    let seal_ref = seal.as_ref().map(|(k, r)| (k, r.as_slice()));
    // The boot side is built on a thread of its own, beside the scan and the payload. A first
    // capture waits for its plan first: a missing kernel, tool or GRUB file fails in about a
    // second, not after the whole payload was written. A refresh, quick itself, goes on.
    let mut boot_job = match &work {
        Some(w) => Some(iso_output::start_boot(
            &root,
            opts.kernel.as_deref(),
            &layout,
            image_id,
            w.path(),
            base.as_ref().map(previous_iso),
            progress,
        )?),
        None => None,
    };
    if let Some(job) = boot_job.as_mut()
        && base.is_none()
    {
        job.wait_planned(progress)?;
    }

    let mut scan_opts = opts.scan.clone();
    scan_opts.skip_paths.push(output.clone());
    scan_opts.skip_paths.push(tmp.path().to_path_buf());
    if let Some(w) = &work {
        scan_opts.skip_paths.push(w.path().to_path_buf());
    }
    let scan_root = snap.as_ref().map_or(root.as_path(), |s| s.root());
    if scan_root != root {
        // What is left out of ROOT is left out of its snapshot's view too.
        let inside: Vec<PathBuf> = scan_opts
            .skip_paths
            .iter()
            .filter_map(|p| Some(scan_root.join(p.strip_prefix(&root).ok()?)))
            .collect();
        scan_opts.skip_paths.extend(inside);
    }
    progress.note(&format!("scanning {}", scan_root.display()));
    let scanned = scan_against_base(scan_root, &scan_opts, snap.as_ref(), base.as_mut())?;
    let mut entries = scanned.entries;
    let base_ref = base.as_ref().map(|b| b as &dyn BaseImage);
    let params = PayloadParams {
        level: opts.level,
        threads: opts.threads.max(1),
        keep_going: opts.scan.keep_going,
        image_id,
    };
    let (mut tables, finish): (PayloadTables, Finisher) = match &work {
        None => {
            let file = tmp
                .as_file()
                .try_clone()
                .map_err(|e| PayloadError::io("cannot write", tmp.path(), e))?;
            let mut sink = OimgWriter::new(file, tmp.path(), image_id, seal_ref)?;
            let tables = write_packs(
                &mut entries,
                &mut sink,
                seal_ref,
                &params,
                base_ref,
                progress,
            )?;
            (
                tables,
                Box::new(move |m: &Manifest, _: Option<&iso_output::BootFiles>| {
                    sink.finish(m)?;
                    Ok(())
                }),
            )
        }
        Some(_) => {
            let file = tmp
                .as_file()
                .try_clone()
                .map_err(|e| PayloadError::io("cannot write", tmp.path(), e))?;
            let mut sink = IsoPackWriter::new(file, tmp.path(), seal_ref)?;
            let tables = write_packs(
                &mut entries,
                &mut sink,
                seal_ref,
                &params,
                base_ref,
                progress,
            )?;
            let tmp_path = tmp.path().to_path_buf();
            let root = root.clone();
            let label = iso_output::volume_label(&image_id);
            (
                tables,
                Box::new(move |m: &Manifest, boot: Option<&iso_output::BootFiles>| {
                    let payload = sink.finish(m)?;
                    let boot = boot.ok_or_else(|| {
                        CaptureError::Usage("internal: ISO without boot files".into())
                    })?;
                    iso_output::write(&tmp_path, &label, &root, m, payload, boot)
                }),
            )
        }
    };

    // The rescue kernel and initramfs were built beside the payload: wait for them.
    let boot = boot_job.map(|j| j.finish(progress)).transpose()?;
    let mut skipped = scanned.skipped;
    skipped.extend(tables.skipped.iter().cloned());
    let mut stats = count(&entries, &tables);
    stats.skipped = skipped.len() as u64;
    let warnings = tables.warnings.clone();
    let reuse = std::mem::take(&mut tables.reuse);
    let mut manifest = Manifest {
        image: image_info(&root, image_id, opts.level),
        packs: tables.packs,
        blocks: tables.blocks,
        chunks: tables.chunks,
        entries: entries.into_iter().map(|e| e.entry).collect(),
        users: scanned.users,
        groups: scanned.groups,
        filesystems: scanned.filesystems,
        stats,
        extensions: vec![crate::layout::to_extension(&layout)],
    };
    if let Some(b) = &boot {
        manifest
            .extensions
            .push(crate::rescue::reuse::to_extension(&b.rescue_inputs));
    }
    if let Some(b) = &base {
        let lineage = crate::refresh::lineage::measure(b, &manifest, &reuse);
        manifest
            .extensions
            .push(crate::refresh::lineage::to_extension(&lineage));
    }
    manifest.stats.duration_ms = started.elapsed().as_millis() as u64;
    finish(&manifest, boot.as_ref())?;
    if let Some(s) = snap {
        s.release()?;
    }
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| PayloadError::io("cannot open", tmp.path(), e))?;
    file.sync_all()
        .map_err(|e| PayloadError::io("cannot sync", tmp.path(), e))?;

    if opts.verify {
        // The writer's own key reads the image back: a recipients-only capture holds no secret.
        let unlock = crate::envelope::Unlock {
            key: seal
                .as_ref()
                .map(|(k, _)| (image_id, k.data_key().1.clone())),
            ..Default::default()
        };
        let r = PayloadReader::open(tmp.path(), &unlock)?;
        let report = verify(&r, opts.threads, progress)?;
        if !report.ok() {
            return Err(PayloadError::Image {
                path: output.clone(),
                msg: format!(
                    "the image failed its own verification: {}",
                    report.problems.join("; ")
                ),
            }
            .into());
        }
    }
    let size = file
        .metadata()
        .map_err(|e| PayloadError::io("cannot stat", tmp.path(), e))?
        .len();
    tmp.persist(&output)
        .map_err(|e| PayloadError::io("cannot rename into place", &output, e.error))?;
    sync_dir(dir);
    Ok(CaptureReport {
        output,
        size,
        stats: manifest.stats,
        skipped,
        warnings,
        rescue: boot.map(|b| b.summary),
    })
}

/// The base as a source of a rescue environment: its `rescue` record, or why it has none.
fn previous_iso(b: &crate::refresh::Base) -> iso_output::PreviousIso {
    let inputs = match crate::rescue::reuse::from_manifest(b.manifest()) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => {
            Err("it records no rescue inputs (a .oimg, or made by an older osimage)".into())
        }
        Err(e) => Err(format!("its rescue record is unreadable: {e}")),
    };
    iso_output::PreviousIso {
        path: b.given_path().to_path_buf(),
        inputs,
    }
}

/// Scans `root`; with a base, unchanged files' xattrs come from it (docs/REFRESH.md), and the
/// base's files cache is left indexed for the scanned filesystems. Should the filesystems have
/// changed between planning and walking (a mount came or went), the walk is done again
/// without the base, so its answers always refer to the filesystems the image records.
fn scan_against_base(
    root: &Path,
    opts: &ScanOptions,
    snap: Option<&snapshot::Snapshot>,
    base: Option<&mut crate::refresh::Base>,
) -> Result<scan::ScanResult, CaptureError> {
    let identity = |fss: &mut Vec<crate::format::manifest::CapturedFs>| {
        if let Some(s) = snap {
            s.restore_identity(fss);
        }
    };
    let Some(base) = base else {
        let mut scanned = scan::scan(root, opts)?;
        identity(&mut scanned.filesystems);
        return Ok(scanned);
    };
    let mut planned = scan::plan_filesystems(root, opts)?;
    identity(&mut planned);
    base.index_files(&planned);
    let mut scanned = scan::scan_with(root, opts, Some(&*base))?;
    identity(&mut scanned.filesystems);
    if scanned.filesystems != planned {
        scanned = scan::scan(root, opts)?;
        identity(&mut scanned.filesystems);
    }
    base.index_files(&scanned.filesystems);
    Ok(scanned)
}

/// Runs the payload writer into `sink`, through a `SealedSink` when the image is encrypted.
fn write_packs(
    entries: &mut Vec<ScannedEntry>,
    sink: &mut dyn crate::format::sink::PackSink,
    seal: Option<(&crate::envelope::ImageKey, &[u8])>,
    params: &PayloadParams,
    base: Option<&dyn crate::payload::writer::BaseImage>,
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

/// Writes the manifest and whatever surrounds the payload, once the manifest is known.
type Finisher =
    Box<dyn FnOnce(&Manifest, Option<&iso_output::BootFiles>) -> Result<(), CaptureError>>;

/// The disk layout, recorded before the scan: a system that cannot be restored to bare metal
/// is said so up front.
fn record_layout(root: &Path, progress: &dyn Progress) -> crate::layout::DiskLayout {
    let layout = match crate::layout::capture_layout(root) {
        Ok(l) => l,
        Err(e) => {
            progress.note(&format!("warning: disk layout not recorded: {e}"));
            crate::layout::DiskLayout {
                none: Some(format!("reading the layout failed: {e}")),
                ..Default::default()
            }
        }
    };
    if let Some(why) = &layout.none {
        progress.note(&format!(
            "no disk layout recorded ({why}): the image restores files, not disks"
        ));
    }
    for why in &layout.unsupported {
        progress.note(&format!(
            "warning: this system is not restorable to bare metal yet: {why}"
        ));
    }
    layout
}

fn absolute(p: &Path) -> Result<PathBuf, CaptureError> {
    std::path::absolute(p).map_err(|e| CaptureError::Usage(format!("output {}: {e}", p.display())))
}

/// fsync a directory so a rename in it survives a crash (best effort).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// 16 random bytes from the kernel.
fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let mut filled = 0;
    while filled < id.len() {
        match rustix::rand::getrandom(&mut id[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(_) => break,
        }
    }
    if filled < id.len() {
        // No getrandom: derive from time and pid (ids need uniqueness, not secrecy).
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        id.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
    }
    id
}

/// Who, when and what, for `info`.
fn image_info(root: &Path, id: [u8; 16], level: i32) -> ImageInfo {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    use std::os::unix::ffi::OsStrExt;
    ImageInfo {
        id,
        created: Timestamp {
            sec: now.as_secs() as i64,
            nsec: now.subsec_nanos(),
        },
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: hostname_of(root),
        os_release: os_release(root),
        kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        source_root: root.as_os_str().as_bytes().to_vec(),
        zstd_level: level,
        chunking: PARAMS,
    }
}

/// The captured system's host name: ROOT/etc/hostname, else the running host's.
pub(crate) fn hostname_of(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| sysinfo::System::host_name().ok())
        .unwrap_or_else(|| "system".into())
}

/// PRETTY_NAME from the captured root's os-release.
fn os_release(root: &Path) -> String {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(text) = std::fs::read_to_string(root.join(p)) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("PRETTY_NAME=") {
                    return v.trim_matches('"').to_string();
                }
            }
        }
    }
    String::new()
}

/// The counters `info` shows.
fn count(entries: &[ScannedEntry], t: &PayloadTables) -> CaptureStats {
    let mut s = CaptureStats {
        entries: entries.len() as u64,
        unique_chunks: t.chunks.len() as u64,
        unique_bytes: t.chunks.iter().map(|c| c.len as u64).sum(),
        stored_bytes: t.blocks.iter().map(|b| b.stored_len as u64).sum(),
        data_bytes: t.data_bytes,
        ..Default::default()
    };
    for e in entries {
        match &e.entry.kind {
            EntryKind::Directory => s.directories += 1,
            EntryKind::File { size, runs } => {
                s.files += 1;
                s.file_bytes += size;
                s.chunk_refs += runs.iter().map(|r| r.chunks.len() as u64).sum::<u64>();
            }
            EntryKind::Symlink { .. } => s.symlinks += 1,
            EntryKind::HardLink { .. } => s.hardlinks += 1,
            _ => s.specials += 1,
        }
    }
    s
}
