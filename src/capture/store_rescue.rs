//! The boot side of a capture into a store (docs/STORE.md §2.6, §4.3 step 3): the rescue
//! environment an ISO capture builds (`iso_output::start_rescue`: the same kernel choice,
//! `--kernel`, refusals and initramfs), without GRUB, on its own thread beside the scan and
//! the payload; then its kernel and initramfs core become rescue blobs (`store::rescue`),
//! uploaded only when the store lacks them, and the version head names them. The manifest
//! keeps the `rescue` extension an ISO capture writes (FORMAT.md §12), so the core's blob id
//! is its `core` hash.
//!
//! A ROOT without any kernel (a tree of files, no `--kernel`) is captured without a rescue
//! environment, as into a `.oimg`: its version restores files, and `export` to an ISO refuses
//! it by name. A ROOT with a kernel gets every check and refusal of an ISO capture.

use std::path::Path;

use tempfile::TempDir;

use super::iso_output::{BootFiles, BootJob, CoreSource, PreviousIso, RescueSource, start_rescue};
use super::preflight::BootSide;
use super::{CaptureError, CaptureOptions};
use crate::format::PayloadError;
use crate::layout::DiskLayout;
use crate::progress::Progress;
use crate::refresh::Base;
use crate::rescue::RescueError;
use crate::rescue::kernel::find_kernel;
use crate::rescue::reuse::RescueInputs;
use crate::rescue::rootfs::RootFs;
use crate::store::Store;
use crate::store::objects::RescueBlobs;

/// The image id the store's rescue build is made with. The id only goes into the archive
/// appended after the core (`osimage/image-id`), which the store does not keep: export and
/// netboot write each image's own (§2.6).
const NO_IMAGE_ID: [u8; 16] = [0; 16];

/// Whether a capture of `root` with `opts` builds a rescue environment: always with
/// `--kernel`, else when ROOT has a kernel to boot (`find_kernel` tells "none" from a kernel
/// it cannot use, which the build then refuses as an ISO capture does).
pub(super) fn boot_side(opts: &CaptureOptions, root: &Path) -> BootSide {
    if opts.kernel.is_some() {
        return BootSide::Rescue;
    }
    match find_kernel(&RootFs::new(root), None) {
        Err(RescueError::NoKernel { .. }) => BootSide::None,
        _ => BootSide::Rescue,
    }
}

/// The rescue build under way, and its work folder (removed when this is dropped).
pub(super) struct RescueBuild {
    job: BootJob,
    work: TempDir,
}

/// The built rescue environment: its files live in `_work` as long as this does.
pub(super) struct BuiltRescue {
    pub boot: BootFiles,
    _work: TempDir,
}

/// The series' previous version as the source of a rescue environment, as a refresh's base
/// ISO is (`PreviousIso`): its manifest's `rescue` record, and its head's core blob, read on
/// the rescue thread. When the rescue inputs did not change the build takes that core as it
/// is, so a re-capture names the same blobs and uploads none (§2.6).
pub(super) fn previous(store: &Store, base: &Base, blobs: Option<&RescueBlobs>) -> PreviousIso {
    let mut previous = PreviousIso::of(base);
    let Some(blobs) = blobs else {
        previous.inputs = Err("its head names no rescue blobs".into());
        return previous;
    };
    let (store, blob) = (store.clone(), blobs.initrd_core.clone());
    previous.core = CoreSource::Read(Box::new(move |inputs: &RescueInputs| {
        if blob.id != inputs.core {
            return Err(
                "its head's initramfs core blob is not the one its rescue record names".into(),
            );
        }
        let mut core = Vec::new();
        store
            .get_blob(&blob, &mut core, Path::new(&blob.object))
            .map_err(|e| format!("cannot read its initramfs core blob: {e}"))?;
        Ok(core)
    }));
    previous
}

/// Starts the rescue build of `root` when `boot_side` says so, taking what it can of
/// `previous`'s, and waits for its plan (a missing kernel, tool or module fails in about a
/// second, before anything is read); `None` for a ROOT without a kernel, said so.
pub(super) fn start(
    opts: &CaptureOptions,
    root: &Path,
    layout: &DiskLayout,
    previous: Option<PreviousIso>,
    progress: &dyn Progress,
) -> Result<Option<RescueBuild>, CaptureError> {
    if boot_side(opts, root) == BootSide::None {
        progress.status(&format!(
            "no rescue environment: no kernel in {}/boot (the version restores files; export \
             to an ISO and netboot need one: capture with --kernel)",
            root.display()
        ));
        return Ok(None);
    }
    let work = tempfile::Builder::new()
        .prefix("osimage-rescue-")
        .tempdir()
        .map_err(|e| {
            CaptureError::Usage(format!(
                "cannot make a work folder for the rescue environment in {}: {e}",
                std::env::temp_dir().display()
            ))
        })?;
    let source = RescueSource {
        root,
        kernel: opts.kernel.as_deref(),
        layout,
        image_id: NO_IMAGE_ID,
    };
    let mut job = start_rescue(source, work.path(), previous, progress)?;
    job.wait_planned(progress)?;
    Ok(Some(RescueBuild { job, work }))
}

impl RescueBuild {
    /// Waits for the kernel and the initramfs.
    pub fn finish(self, progress: &dyn Progress) -> Result<BuiltRescue, CaptureError> {
        let boot = self.job.finish(progress)?;
        Ok(BuiltRescue {
            boot,
            _work: self.work,
        })
    }
}

/// Names `built`'s kernel and initramfs core as rescue blobs of `store` (`shown` in
/// messages), uploading those it lacks (§4.3 step 3) or has only under a `condemned` name
/// (a sweep may delete it); returns them and the bytes uploaded.
pub(super) fn upload(
    store: &Store,
    built: &BuiltRescue,
    condemned: &std::collections::HashSet<String>,
    shown: &str,
    progress: &dyn Progress,
) -> Result<(RescueBlobs, u64), CaptureError> {
    let fail = |e: crate::store::StoreError| {
        CaptureError::Payload(PayloadError::Image {
            path: shown.into(),
            msg: format!("storing the rescue environment: {e}"),
        })
    };
    let boot = &built.boot;
    let inputs = &boot.rescue_inputs;
    progress.status("storing the rescue kernel and initramfs");
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| PayloadError::io("cannot open", p, e));
    let kernel_file = open(&boot.kernel)?;
    let kernel_len = kernel_file
        .metadata()
        .map_err(|e| PayloadError::io("cannot read", &boot.kernel, e))?
        .len();
    let kernel = store
        .put_blob(
            &inputs.kernel,
            &kernel_file,
            kernel_len,
            &boot.kernel,
            condemned,
        )
        .map_err(fail)?;
    let initrd_file = open(&boot.initrd)?;
    let core = store
        .put_blob(
            &inputs.core,
            &initrd_file,
            inputs.core_len,
            &boot.initrd,
            condemned,
        )
        .map_err(fail)?;
    Ok((
        RescueBlobs {
            kernel: kernel.blob,
            initrd_core: core.blob,
            net_part: None,
            kernel_version: boot.kernel_version.clone(),
        },
        kernel.uploaded + core.uploaded,
    ))
}

/// The report's line on the rescue environment: the build's, and what it cost the store.
pub(super) fn summary(boot: &BootFiles, uploaded: Option<u64>) -> String {
    match uploaded {
        Some(0) => format!(
            "{}; its kernel and initramfs were in the store already",
            boot.summary
        ),
        Some(n) => format!(
            "{}; stored as rescue blobs ({:.1} MiB uploaded)",
            boot.summary,
            n as f64 / (1024.0 * 1024.0)
        ),
        None => boot.summary.clone(),
    }
}
