//! `capture ROOT -o s3://BUCKET/PREFIX/NAME`: a capture into a store (docs/STORE.md §4).
//!
//! The steps of a file capture (layout, scan, payload, manifest) with three differences: the
//! base is the store itself (`store::dedup`: every chunk its index holds is referenced where
//! it lies, and the newest version of NAME is the files cache); packs go up as they close
//! (`store::upload`), each a store pack (FORMAT.md §3, version 3) of the store's pack size;
//! and the commit is one PUT of the version object, after the index objects listing the new
//! packs (§4.3: `store::checkpoint`, also written when the capture fails or is interrupted,
//! §4.4). Nothing is visible to readers before that PUT completes.
//!
//! A shared Capture lock (§2.7) is held from before the store is read until after the
//! commit, checked right before it (§4.3 step 4), and deleted on failure and on an interrupt;
//! an interrupt during the commit waits for its answer and says whether the version was
//! committed (`commit_watch`).
//! The rescue environment is built beside the scan as for an ISO and stored as rescue blobs
//! the head names (`store_rescue`, §2.6).

use std::path::PathBuf;
use std::time::Instant;

use super::commit_watch::CommitWatch;
use super::steps::{self, Scope};
use super::{
    CaptureError, CaptureOptions, CaptureReport, manifest, preflight, staging, store_rescue,
};
use crate::format::PayloadError;
use crate::format::frame::encode_manifest;
use crate::format::manifest::Manifest;
use crate::payload::chunker::PARAMS;
use crate::payload::writer::{PackOwner, write_payload_with_base};
use crate::progress::Progress;
use crate::refresh::Base;
use crate::store::dedup::StoreBase;
use crate::store::index_cache::{self, CacheChoice};
use crate::store::objects::LockKind;
use crate::store::objects::RescueBlobs;
use crate::store::objects::version::{VersionHead, VersionSummary};
use crate::store::upload::{PackUploader, Uploaded};
use crate::store::{Store, checkpoint, names};

/// What a capture into a store did besides what every capture reports.
#[derive(Debug)]
pub struct StoreCapture {
    pub report: CaptureReport,
    /// The new version's name (`20261206T101500Z-…`).
    pub version: String,
    /// Packs and bytes uploaded (the version object and the index object not counted).
    pub uploaded: Uploaded,
    /// Packs of earlier captures the version references.
    pub referenced_packs: u64,
    /// The version object's length.
    pub version_bytes: u64,
    /// Index objects read from the store (GETs) and from the local cache (§4.1).
    pub index_fetched: u64,
    pub index_cached: u64,
    /// Files read, and files the files cache vouched for unread.
    pub files_read: u64,
    pub files_unread: u64,
}

/// What a capture into a store may be told besides a file capture's options.
#[derive(Clone, Debug, Default)]
pub struct StoreCaptureChoices {
    /// `--no-base`: no files cache (every file is read); the store's index still deduplicates.
    pub no_base: bool,
    /// Where the index objects read are kept (`--cache-dir`, `--no-cache`; STORE.md §4.1).
    pub index_cache: CacheChoice,
}

/// Captures `opts.root` as a new version of `series` in `store`; `tags` go into its head.
pub fn capture_into_store(
    opts: &CaptureOptions,
    store: &Store,
    series: &str,
    tags: &[String],
    choices: &StoreCaptureChoices,
    progress: &dyn Progress,
) -> Result<StoreCapture, CaptureError> {
    let started = Instant::now();
    check_options(opts, store)?;
    let root = staging::checked_root(opts)?;
    let shown = format!("{}/{series}", store.root);
    let (layout, _) = steps::record_layout_beside(&root, None, opts, progress)?;
    preflight::check_boot(opts, &root, &layout, store_rescue::boot_side(opts, &root))?;

    // §4 step 2: a shared lock before the store is read, deleted on an interrupt too.
    let interrupts = super::interrupt::Interrupts::start();
    let lock = store
        .take_lock(LockKind::Capture, Some(series))
        .map_err(|e| match e.is_usage() {
            true => CaptureError::Argument(e.to_string()),
            false => store_error(&shown, e),
        })?;
    let _unlock = interrupts.on_interrupt(lock.shown().to_string(), lock.releaser());
    // §4 step 3, after the lock: what unswept condemnations hold is left out of the dedup,
    // and a forgotten version is no files cache (§5.2's argument needs this order).
    let pending = store.pending().map_err(|e| store_error(&shown, e))?;
    let pins = store.list_pins().map_err(|e| store_error(&shown, e))?;
    let forgotten = crate::store::prune::Forgotten::new(&pending, &pins);
    let (mut prev, parent, prev_rescue) =
        previous_version(store, series, &forgotten, choices.no_base, progress)?;
    let previous = prev
        .as_ref()
        .map(|b| store_rescue::previous(store, b, prev_rescue.as_ref()));
    let rescue = store_rescue::start(opts, &root, &layout, previous, progress)?;
    let parent_time = parent
        .as_deref()
        .and_then(names::parse_version)
        .map(|(t, _)| t);
    check_clock(&shown, parent.as_deref(), parent_time)?;
    let mut snap = match opts.snapshot {
        true => {
            let s = super::snapshot::Snapshot::take(&root, &opts.scan, progress, &interrupts)?;
            progress.status(&format!("capturing from {}", s.describe()));
            Some(s)
        }
        false => None,
    };
    let scan_root = snap.as_ref().map_or(root.as_path(), |s| s.root());
    progress.note(&format!("scanning {}", scan_root.display()));
    let scope = Scope {
        root: scan_root,
        opts: &opts.scan,
        left_out: &[],
    };
    let mut scanned = steps::scan_against_base(&scope, snap.as_ref(), prev.as_mut())?;

    let cache = index_cache::cache_dir(&choices.index_cache, &store.id);
    let index = load_index(store, cache.as_deref(), &pending, progress)?;
    let base = StoreBase::new(&index.objects, prev)?;
    if let Some(why) = &base.dropped_cache {
        progress.note(&format!("every file is read again: {why}"));
    }
    let image_id = manifest::random_id();
    let every = checkpoint::packs_per_index().map_err(|e| store_error(&shown, e))?;
    let mut uploader = PackUploader::start(store, every, cache);
    let checkpoints = uploader.checkpoints();
    let _listed = interrupts.on_interrupt(String::new(), move || {
        if let Some(said) = checkpoints.flush_interrupted() {
            eprintln!("osimage: {said}");
        }
    });
    let mut params = steps::payload_params(opts, image_id, &scanned);
    params.packs = PackOwner::Store { store_id: store.id };
    params.pack_limit = store.config.pack_size as u64;
    // The hashes' rests go to a scratch file only for a plain store: an encrypted store's
    // chunk hashes are never written in the clear.
    params.scratch = store.keys().is_none().then(std::env::temp_dir);
    let written = write_payload_with_base(
        &mut scanned.entries,
        &mut uploader,
        &params,
        Some(&base),
        progress,
    );
    let uploaded = uploader.finish();
    let tables = written?;
    let uploaded = uploaded?;
    if let Some(s) = snap.take() {
        s.release()?;
    }
    let referenced = tables.reuse.referenced;
    let files = (tables.reuse.files_read, tables.reuse.files_reused);
    let unread = std::mem::take(&mut scanned.mount_dirs_unread);
    let left_out = std::mem::take(&mut scanned.omitted);

    wait_past(parent_time);
    let info = manifest::image_info(&root, image_id, opts.level);
    let created = info.created;
    let rescue = rescue.map(|r| r.finish(progress)).transpose()?;
    let boot = rescue.as_ref().map(|r| &r.boot);
    let mut done = manifest::assemble(info, scanned, tables, &layout, boot, None);
    let version = names::version_name(to_utc(created), &image_id);
    let m = &mut done.manifest;
    m.stats.duration_ms = started.elapsed().as_millis() as u64;
    m.extensions.push(
        crate::format::store_ref::StoreRef {
            store_id: store.id,
            series: series.to_string(),
            version: version.clone(),
        }
        .to_extension()?,
    );
    crate::format::validate::validate(m).map_err(|e| e.at(std::path::Path::new(&shown)))?;
    let blobs = rescue
        .as_ref()
        .map(|r| store_rescue::upload(store, r, &pending.blobs(), &shown, progress))
        .transpose()?;
    // An encrypted store's frame is sealed under the version object's own key (§6).
    let (nonce, frame) = store
        .seal_frame(encode_manifest(m)?)
        .map_err(|e| store_error(&shown, e))?;
    let mut head = version_head(m, series, &version, parent, &frame, &uploaded, tags);
    head.rescue = blobs.as_ref().map(|(b, _)| b.clone());
    let version_bytes = commit_version(
        store, lock, interrupts, &shown, &version, &head, &frame, nonce, progress,
    )?;
    if opts.verify {
        verify_version(store, series, &version, opts.threads, progress)?;
    }
    let mut warnings = done.warnings;
    warnings.extend(super::mount_dirs_warning(&unread));
    Ok(StoreCapture {
        report: CaptureReport {
            output: PathBuf::from(format!("{shown}@{version}")),
            size: uploaded.bytes + version_bytes,
            stats: done.manifest.stats.clone(),
            skipped: done.skipped,
            left_out,
            left_out_filesystems: Vec::new(),
            warnings,
            rescue_bytes: boot.map_or(0, |b| b.rescue_bytes),
            rescue: boot.map(|b| store_rescue::summary(b, blobs.as_ref().map(|(_, n)| *n))),
        },
        version,
        referenced_packs: referenced.packs,
        uploaded,
        version_bytes,
        index_fetched: index.fetched,
        index_cached: index.cached,
        files_read: files.0,
        files_unread: files.1,
    })
}

/// What a store capture cannot do (yet), refused before anything is read.
fn check_options(opts: &CaptureOptions, store: &Store) -> Result<(), CaptureError> {
    if opts.lock.is_some() {
        return Err(CaptureError::Usage(format!(
            "{}: --encrypt and --recipient do not apply to a store (whether a store is \
             encrypted is its own setting: osimage store init --encrypt, docs/STORE.md §6)",
            store.root
        )));
    }
    let c = &store.config.chunking;
    if (c.min, c.avg, c.max) != (PARAMS.min, PARAMS.avg, PARAMS.max) {
        return Err(CaptureError::Usage(format!(
            "{}: the store cuts chunks with min/avg/max {}/{}/{} bytes, this osimage with \
             {}/{}/{}: captures into it would not deduplicate",
            store.root, c.min, c.avg, c.max, PARAMS.min, PARAMS.avg, PARAMS.max
        )));
    }
    Ok(())
}

/// Versions sort by their names, which begin with their time to the second (STORE.md §2.5):
/// a version made now must be later than the newest one, or it would not be the newest.
/// Refused before anything is read when this machine's clock is behind that version's time.
fn check_clock(
    shown: &str,
    parent: Option<&str>,
    parent_time: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), CaptureError> {
    let (Some(parent), Some(t)) = (parent, parent_time) else {
        return Ok(());
    };
    let now = chrono::Utc::now();
    if t > now {
        return Err(CaptureError::Usage(format!(
            "{shown}: the newest version ({parent}) is dated after this machine's clock ({}): \
             a version made now would sort before it; set the clock right (NTP) and capture \
             again",
            now.format("%Y-%m-%dT%H:%M:%SZ")
        )));
    }
    Ok(())
}

/// Waits until the clock's second is past `t`'s, so the new version's name sorts after the
/// version made at `t` (two captures within one second otherwise tie on the time).
fn wait_past(t: Option<chrono::DateTime<chrono::Utc>>) {
    let Some(t) = t else { return };
    loop {
        let now = chrono::Utc::now();
        if now.timestamp() > t.timestamp() {
            return;
        }
        let left = 1_000_000_000 - u64::from(now.timestamp_subsec_nanos() % 1_000_000_000);
        std::thread::sleep(std::time::Duration::from_nanos(left));
    }
}

/// The previous version as the files cache, its name and its head's rescue blobs.
type PreviousVersion = (Option<Base>, Option<String>, Option<RescueBlobs>);

/// §4.3's commit, shared by a capture and an import (§8): the lock checked, the version
/// object PUT (an interrupt from then on waits for its answer and reports it, before the
/// lock is deleted: its cleanup runs first, registered last), the packs checked again when
/// the lock's refreshes failed around it (step 6), then the lock deleted (a failure to delete
/// it only leaves it to go stale) and the interrupt handling ended. Returns the version
/// object's length.
#[allow(clippy::too_many_arguments)]
pub(super) fn commit_version(
    store: &Store,
    lock: crate::store::HeldLock,
    interrupts: super::interrupt::Interrupts,
    shown: &str,
    version: &str,
    head: &VersionHead,
    frame: &[u8],
    nonce: Option<[u8; 16]>,
    progress: &dyn Progress,
) -> Result<u64, CaptureError> {
    lock.check_before_commit()
        .map_err(|e| store_error(shown, e))?;
    let commit = CommitWatch::new(format!("{shown}@{version}"));
    let _commit = interrupts.on_interrupt_status(String::new(), commit.on_interrupt());
    commit.sending();
    let put = store.put_version(head, frame, nonce);
    commit.answered(put.as_ref().map(drop).map_err(|e| e.to_string()));
    let (version_rel, version_bytes) = put.map_err(|e| store_error(shown, e))?;
    if lock.in_trouble() {
        check_packs_after_commit(store, head, &version_rel).map_err(|e| store_error(shown, e))?;
    }
    if let Err(e) = lock.release() {
        progress.note(&format!("the store lock stays until it goes stale: {e}"));
    }
    drop(interrupts);
    Ok(version_bytes)
}

/// Every pack `head` names must still exist after a commit made while the lock's refreshes
/// failed (§4.3 step 6): a missing one means a sweep deleted it meanwhile, so the version
/// object (`rel`) is deleted again and the capture fails naming the pack.
pub(super) fn check_packs_after_commit(
    store: &Store,
    head: &crate::store::objects::VersionHead,
    rel: &str,
) -> Result<(), crate::store::StoreError> {
    for p in &head.packs {
        let key = store.pack_rel(p);
        if store.client.head(&store.root.key(&key))?.is_none() {
            store.delete_object(rel)?;
            return Err(crate::store::StoreError::LockLapsed(format!(
                "the store lock was not refreshed around the commit and the pack {} is gone \
                 (a prune swept it meanwhile); the version was removed again; run the capture \
                 again",
                store.shown(&key)
            )));
        }
    }
    Ok(())
}

/// The newest version of `series` not forgotten, opened as the files cache (not with `no_base`), its name
/// (the new head's parent) and the rescue blobs its head names; none for a new series.
fn previous_version(
    store: &Store,
    series: &str,
    forgotten: &crate::store::prune::Forgotten,
    no_base: bool,
    progress: &dyn Progress,
) -> Result<PreviousVersion, CaptureError> {
    let shown = format!("{}/{series}", store.root);
    let newest = store
        .newest_kept(series, forgotten)
        .map_err(|e| store_error(&shown, e))?;
    let Some(version) = newest else {
        return Ok((None, None, None));
    };
    if no_base {
        return Ok((None, Some(version), None));
    }
    progress.status(&format!("files cache: {shown}@{version}"));
    let open = crate::store::read::open_version(store, series, &version)?;
    Ok((
        Some(Base::from_reader(open.reader, open.name)),
        Some(version),
        open.head.rescue,
    ))
}

/// Every index object of the store, checked against its name: from the cache folder `cache`
/// where it holds a good copy, else fetched.
/// What unswept condemnations (`pending`) hold is left out, so nothing new references it
/// (§4 step 3, after the lock).
pub(super) fn load_index(
    store: &Store,
    cache: Option<&std::path::Path>,
    pending: &crate::store::prune::state::Pending,
    progress: &dyn Progress,
) -> Result<index_cache::LoadedIndex, CaptureError> {
    progress.status("reading the store's index");
    let mut index = index_cache::load_index(store, cache, &mut |said| progress.note(&said))
        .map_err(|e| store_error(&store.root.to_string(), e))?;
    let condemned = pending.packs();
    for (_, i) in &mut index.objects {
        i.packs
            .retain(|p| !condemned.contains(&store.pack_object(&p.id)));
    }
    Ok(index)
}

/// The head of the new version (docs/STORE.md §2.5).
pub(super) fn version_head(
    m: &Manifest,
    series: &str,
    version: &str,
    parent: Option<String>,
    frame: &[u8],
    uploaded: &Uploaded,
    tags: &[String],
) -> VersionHead {
    VersionHead {
        image_id: m.image.id,
        series: series.to_string(),
        version: version.to_string(),
        created: m.image.created,
        hostname: m.image.hostname.clone(),
        os_release: m.image.os_release.clone(),
        tool_version: m.image.tool_version.clone(),
        parent,
        frame_hash: *blake3::hash(frame).as_bytes(),
        packs: m.packs.iter().map(|p| p.hash).collect(),
        rescue: None,
        summary: VersionSummary {
            entries: m.stats.entries,
            files: m.stats.files,
            file_bytes: m.stats.file_bytes,
            stored_bytes: m.stats.stored_bytes,
            new_bytes: uploaded.bytes,
        },
        tags: tags.to_vec(),
    }
}

/// `--verify`: reads the new version back through the store and checks every chunk. The
/// version is committed already: a failure is reported, not undone (STORE.md §4.3).
fn verify_version(
    store: &Store,
    series: &str,
    version: &str,
    threads: usize,
    progress: &dyn Progress,
) -> Result<(), CaptureError> {
    let open = crate::store::read::open_version(store, series, version)?;
    let report = crate::payload::verify::verify(&open.reader, threads, progress)?;
    if !report.ok() {
        return Err(PayloadError::Image {
            path: open.name,
            msg: format!(
                "the new version failed its verification (it is committed: remove it when \
                 prune exists, or capture again): {}",
                report.problems.join("; ")
            ),
        }
        .into());
    }
    Ok(())
}

/// A manifest time as chrono's (version names are made of it).
pub(super) fn to_utc(t: crate::format::manifest::Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.sec, t.nsec).unwrap_or_default()
}

pub(super) fn store_error(shown: &str, e: impl std::fmt::Display) -> CaptureError {
    PayloadError::Image {
        path: shown.into(),
        msg: e.to_string(),
    }
    .into()
}
