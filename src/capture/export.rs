//! `osimage export s3://B/P/NAME[@VERSION] -o system.iso|system.oimg` (docs/STORE.md §8,
//! byte-copy mode): a store version written out as a file that reads, verifies and boots like
//! a captured one. It lives beside the capture because it writes with the capture's own
//! containers: `image::oimg::OimgWriter`, or `IsoPackWriter` and `iso_output::write` (the ISO
//! writer of docs/ISO.md, unchanged) with the rescue files made from the version's blobs.
//!
//! The manifest frame is the version object's, byte for byte, and so is each pack
//! (`store::export` checks every block and pack hash on the way); with `--compact`, new image
//! packs hold only the blocks the version uses and the manifest is rewritten for them
//! (`store::compact`). The file is written under a temporary name beside OUTPUT, read back
//! whole (`payload::verify`: every chunk) and renamed into place only then: an export that
//! fails leaves nothing that looks like an image.
//!
//! With a `lock` the output is an encrypted image (FORMAT.md §11, STORE.md §6.1): a fresh
//! random image key wrapped for the lock, every pack sealed as it streams into the container
//! (`SealedSink`) and the manifest frame sealed last. An encrypted store hands its packs and
//! frame over in the clear (`store::export`), so the store's own keys never reach the file.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempDir};

use super::CaptureError;
use super::iso_output::{self, BootFiles};
use crate::envelope::keys::{Lock, new_key};
use crate::envelope::{ImageKey, SealedSink, Unlock};
use crate::format::PayloadError;
use crate::format::manifest::Manifest;
use crate::format::sink::PackSink;
use crate::image::iso_packs::IsoPackWriter;
use crate::image::oimg::OimgWriter;
use crate::progress::Progress;
use crate::rescue::{MenuParams, grub_cfg, image_id_hex};
use crate::store::Store;
use crate::store::export::{CopiedPacks, ExportSource};
use crate::store::objects::RescueBlobs;

/// What to export and where.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub series: String,
    pub version: String,
    /// `system.iso` or `system.oimg` (any case).
    pub output: PathBuf,
    /// Replace an existing OUTPUT.
    pub force: bool,
    /// Threads of the read-back.
    pub threads: usize,
    /// `--compact`: new packs of the used blocks only, format version 2 (STORE.md §8).
    pub compact: bool,
    /// Who may open the output: an encrypted image under a fresh key (FORMAT.md §11); none,
    /// a plain image.
    pub lock: Option<Lock>,
}

/// What an export wrote.
#[derive(Debug)]
pub struct ExportReport {
    pub output: PathBuf,
    /// The output's length.
    pub size: u64,
    pub packs: CopiedPacks,
    /// The rescue kernel's version, for an ISO.
    pub kernel_version: Option<String>,
    /// Whether the output is encrypted.
    pub encrypted: bool,
}

/// An encrypted output's key and its key record (FORMAT.md §11.2).
struct Seal {
    key: ImageKey,
    record: Vec<u8>,
}

impl Seal {
    fn parts(&self) -> (&ImageKey, &[u8]) {
        (&self.key, &self.record)
    }
}

/// Exports `opts.version` of `opts.series` from `store` (named `shown` in messages).
pub fn export_version(
    store: &Store,
    opts: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportReport, CaptureError> {
    let shown = format!("{}/{}@{}", store.root, opts.series, opts.version);
    let iso = output_is_iso(&opts.output)?;
    let output = std::path::absolute(&opts.output).unwrap_or_else(|_| opts.output.clone());
    if !opts.force && std::fs::symlink_metadata(&output).is_ok() {
        return Err(CaptureError::Usage(format!(
            "{} exists: give --force to replace it",
            output.display()
        )));
    }
    if output.is_dir() {
        return Err(CaptureError::Usage(format!(
            "{} is a directory: OUTPUT is the image file to write",
            output.display()
        )));
    }
    let dir = output.parent().unwrap_or(Path::new("/"));
    progress.status(&format!("opening {shown}"));
    let src = ExportSource::open(store, &opts.series, &opts.version)?;
    let blobs = match (iso, &src.open.head.rescue) {
        (false, _) => None,
        (true, Some(b)) => Some(b.clone()),
        (true, None) => {
            return Err(CaptureError::Usage(format!(
                "{shown} was captured without a rescue environment: it cannot become a \
                 bootable ISO; export it to a .oimg, or capture the system again with a kernel"
            )));
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".osimage-export-")
        .tempfile_in(dir)
        .map_err(|e| PayloadError::io("cannot create a temporary file in", dir, e))?;
    let file = tmp
        .reopen()
        .map_err(|e| PayloadError::io("cannot open", tmp.path(), e))?;
    let image_id = src.manifest().image.id;
    let seal = match &opts.lock {
        Some(lock) => {
            let (key, record) = new_key(lock, image_id)?;
            Some(Seal {
                key: ImageKey::new(key, image_id),
                record,
            })
        }
        None => None,
    };
    let seal = seal.as_ref();
    let packs = match blobs {
        None => write_oimg(&src, opts.compact, seal, file, tmp.path(), progress)?,
        Some(b) => write_iso(
            store,
            &src,
            &b,
            opts.compact,
            seal,
            file,
            tmp.path(),
            progress,
        )?,
    };
    let unlock = Unlock {
        key: seal.map(|s| (image_id, s.key.data_key().1.clone())),
        ..Unlock::default()
    };
    finish(tmp, &output, opts, &unlock, &shown, progress).map(|size| ExportReport {
        output,
        size,
        packs,
        kernel_version: src
            .open
            .head
            .rescue
            .as_ref()
            .filter(|_| iso)
            .map(|r| r.kernel_version.clone()),
        encrypted: seal.is_some(),
    })
}

/// Whether OUTPUT is an ISO (`.iso`) or a payload (`.oimg`); any other name is refused.
fn output_is_iso(output: &Path) -> Result<bool, CaptureError> {
    let ext = output
        .extension()
        .and_then(OsStr::to_str)
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("iso") => Ok(true),
        Some("oimg") => Ok(false),
        _ => Err(CaptureError::Argument(format!(
            "{}: export writes NAME.iso (bootable) or NAME.oimg (the payload alone)",
            output.display()
        ))),
    }
}

/// Copies the packs into `sink`: byte for byte, or (`compact`) the used blocks into new
/// packs; with `seal`, each pack sealed under the output's key on the way. Returns the
/// counts and the manifest frame to write after them (sealed with `seal`).
fn copy_into(
    src: &ExportSource,
    compact: bool,
    seal: Option<&Seal>,
    sink: &mut dyn PackSink,
    progress: &dyn Progress,
) -> Result<(CopiedPacks, Vec<u8>), CaptureError> {
    let Some(seal) = seal else {
        return copy_plain(src, compact, sink, progress);
    };
    let mut sealed = SealedSink::new(sink, &seal.key);
    let (copied, frame) = copy_plain(src, compact, &mut sealed, progress)?;
    Ok((copied, seal.key.seal_manifest(&frame)))
}

/// [`copy_into`] without sealing: the packs and the plain manifest frame.
fn copy_plain(
    src: &ExportSource,
    compact: bool,
    sink: &mut dyn PackSink,
    progress: &dyn Progress,
) -> Result<(CopiedPacks, Vec<u8>), CaptureError> {
    if compact {
        let c = src.copy_compact(sink, progress)?;
        return Ok((c.packs, c.frame));
    }
    Ok((src.copy_packs(sink, progress)?, src.frame.clone()))
}

/// A `.oimg`: the image header, the packs, the frame, the trailer.
fn write_oimg(
    src: &ExportSource,
    compact: bool,
    seal: Option<&Seal>,
    file: File,
    path: &Path,
    progress: &dyn Progress,
) -> Result<CopiedPacks, CaptureError> {
    let id = src.manifest().image.id;
    let mut w = OimgWriter::new(file, path, id, seal.map(Seal::parts))?;
    let (copied, frame) = copy_into(src, compact, seal, &mut w, progress)?;
    w.finish_frame(&frame)?;
    Ok(copied)
}

/// An ISO: the packs in place, then the rescue files from the blobs, GRUB and the copied
/// frame around them.
#[allow(clippy::too_many_arguments)]
fn write_iso(
    store: &Store,
    src: &ExportSource,
    blobs: &RescueBlobs,
    compact: bool,
    seal: Option<&Seal>,
    file: File,
    path: &Path,
    progress: &dyn Progress,
) -> Result<CopiedPacks, CaptureError> {
    let m = src.manifest();
    let work = tempfile::Builder::new()
        .prefix("osimage-export-")
        .tempdir()
        .map_err(|e| PayloadError::io("cannot make a work folder in", &std::env::temp_dir(), e))?;
    let boot = boot_files(store, m, blobs, &work, &src.open.name, progress)?;
    let mut packs = IsoPackWriter::new(file, path, seal.map(Seal::parts))?;
    let (copied, frame) = copy_into(src, compact, seal, &mut packs, progress)?;
    let payload = packs.finish_frame(frame)?;
    let root = PathBuf::from(OsStr::from_bytes(&m.image.source_root));
    let label = iso_output::volume_label(&m.image.id);
    iso_output::write(path, &label, &root, m, payload, &boot)?;
    Ok(copied)
}

/// The ISO's boot side from the version's blobs: the kernel; the initramfs core followed by
/// this image's own id archive (FORMAT.md §12), as a capture writes it; GRUB from this host
/// (the captured root is not here, so no signed chain: the ISO boots where Secure Boot is
/// off). The blobs must be what the manifest's `rescue` record says.
fn boot_files(
    store: &Store,
    m: &Manifest,
    blobs: &RescueBlobs,
    work: &TempDir,
    name: &Path,
    progress: &dyn Progress,
) -> Result<BootFiles, CaptureError> {
    progress.status("reading the rescue kernel and initramfs");
    let files = store.rescue_files(m, blobs, work.path()).map_err(|msg| {
        CaptureError::Payload(PayloadError::Image {
            path: name.to_path_buf(),
            msg,
        })
    })?;
    let (kernel, initrd, inputs) = (files.kernel, files.initrd, files.inputs);
    let menu = MenuParams {
        title: m.image.hostname.clone(),
        ..MenuParams::default()
    };
    let id_hex = image_id_hex(&m.image.id);
    let cfg = grub_cfg(&id_hex, &menu);
    let grub = crate::iso::start_grub_boot(Path::new("/"), &cfg, &work.path().join("grub"))?
        .finish(None)?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |md| md.len());
    let rescue_bytes = size(&kernel) + size(&initrd);
    Ok(BootFiles {
        kernel,
        initrd,
        menu,
        grub: Some(grub),
        id_hex,
        kernel_version: blobs.kernel_version.clone(),
        summary: format!("rescue environment: kernel {}", blobs.kernel_version),
        rescue_bytes,
        rescue_inputs: inputs,
    })
}

/// Syncs the temporary file, reads it back whole, and renames it to `output`.
fn finish(
    tmp: NamedTempFile,
    output: &Path,
    opts: &ExportOptions,
    unlock: &Unlock,
    shown: &str,
    progress: &dyn Progress,
) -> Result<u64, CaptureError> {
    let path = tmp.path().to_path_buf();
    tmp.as_file()
        .sync_all()
        .map_err(|e| PayloadError::io("cannot sync", &path, e))?;
    progress.status(&format!("checking {}", output.display()));
    let reader = crate::payload::reader::PayloadReader::open(&path, unlock)?;
    let report = crate::payload::verify::verify(&reader, opts.threads.max(1), progress)?;
    if !report.ok() {
        return Err(PayloadError::Image {
            path: output.to_path_buf(),
            msg: format!(
                "the export of {shown} failed its own verification, nothing was written: {}",
                report.problems.join("; ")
            ),
        }
        .into());
    }
    drop(reader);
    let size = std::fs::metadata(&path)
        .map_err(|e| PayloadError::io("cannot read", &path, e))?
        .len();
    let persisted = if opts.force {
        tmp.persist(output).map(|_| ())
    } else {
        tmp.persist_noclobber(output).map(|_| ())
    };
    persisted.map_err(|e| PayloadError::io("cannot rename the export to", output, e.error))?;
    Ok(size)
}
