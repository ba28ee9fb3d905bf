//! One scheduled run into an image store (`osimage schedule run NAME --dest s3://B/P/SERIES`,
//! docs/SCHEDULE.md "Into an image store", STORE.md §4.6): the capture `osimage capture ROOT
//! -o s3://B/P/SERIES` makes (the same library call: its Capture lock, the store's blocks as
//! the base, the newest version as the files cache, the read-back verification after the
//! commit), then, with `--verify-boot`, the network boot check of the new version, then
//! `--keep N` as a forget of the series' versions beyond the newest N (a condemnation of
//! versions only, under a Prune lock: their space comes back with a later `store prune`).
//!
//! "latest" is the series' newest version: a reader of `s3://B/P/SERIES` gets it from the
//! moment its commit completes. A version that fails `--verify-boot` is forgotten at once, so
//! the series' newest is the previous one again.

use std::path::{Path, PathBuf};

use super::ScheduleError;
use super::job::{Dest, ImageFormat, Job};
use crate::capture::CaptureOptions;
use crate::capture::into_store::{StoreCapture, StoreCaptureChoices, capture_into_store};
use crate::progress::Progress;
use crate::remote::s3::S3Client;
use crate::store::index_cache::CacheChoice;
use crate::store::objects::LockKind;
use crate::store::prune::by_hand;
use crate::store::{ImageAddress, Store, StoreTimes, names};

/// What a run into a store did.
#[derive(Debug)]
pub struct StoreRunReport {
    /// The capture, its new version and what it uploaded.
    pub capture: StoreCapture,
    /// Versions forgotten for `--keep` (full version strings).
    pub forgotten: Vec<String>,
}

/// What every schedule's job must satisfy, checked by install and by each run.
pub fn check_job(job: &Job) -> Result<(), ScheduleError> {
    if job.keep == 0 {
        return Err(ScheduleError::Invalid("--keep must be at least 1".into()));
    }
    if job.verify_boot && job.dest.dir().is_some() && job.format != ImageFormat::Iso {
        return Err(ScheduleError::Invalid(
            "--verify-boot needs --format iso (a payload image has no rescue environment to boot)"
                .into(),
        ));
    }
    super::keys::check(job)
}

/// Opens the store of `job` (a store destination) through `client`, as install and every
/// run do before anything else of it is read: the job's key file checked first (only root
/// may read it, docs/SCHEDULE.md "Encrypted images and encrypted stores"), then `config`,
/// then an encrypted store unlocked with that file. An encrypted store without a key file, a
/// key file for a plain store is refused.
pub fn open_store(job: &Job, client: S3Client) -> Result<Store, ScheduleError> {
    let Dest::Store(address) = &job.dest else {
        return Err(ScheduleError::Invalid(format!(
            "internal: {} is not a store",
            job.dest
        )));
    };
    check_job(job)?;
    let unlock = super::keys::unlock(job)?;
    let mut store = Store::open_config(client, address.root.clone())?;
    let root = &address.root;
    match (store.config.encrypted, super::keys::key_file(job)) {
        (false, None) => {}
        (false, Some((_, opt))) => {
            return Err(ScheduleError::Argument(format!(
                "{opt} unlocks an encrypted store; {root} is a plain store"
            )));
        }
        (true, None) => {
            return Err(ScheduleError::Argument(format!(
                "{root} is an encrypted store: a scheduled run unlocks it with a key file \
                 only root can read, --identity FILE (an age secret key whose public key is \
                 one of the store's keys: `osimage store key add {root} --recipient age1…`) or \
                 --passphrase-file FILE (docs/SCHEDULE.md \"Encrypted images and encrypted \
                 stores\")"
            )));
        }
        (true, Some(_)) => store.unlock_with(&unlock)?,
    }
    Ok(store)
}

/// Where a scheduled run into a store keeps the store's index objects (STORE.md §4.1) and its
/// run lock: `$XDG_CACHE_HOME/osimage` when that is absolute, else `/var/cache/osimage` (a
/// system service has no `HOME`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/var/cache"))
        .join("osimage")
}

/// Runs `job` (a store destination) once into `store`. `log` receives the journal's lines.
pub fn run(
    job: &Job,
    store: &Store,
    progress: &dyn Progress,
    log: &dyn Fn(&str),
) -> Result<StoreRunReport, ScheduleError> {
    super::job::check_name(&job.name).map_err(ScheduleError::Argument)?;
    check_job(job)?;
    let Dest::Store(address) = &job.dest else {
        return Err(ScheduleError::Invalid(format!(
            "internal: {} is not a store",
            job.dest
        )));
    };
    if address.root != store.root {
        return Err(ScheduleError::Invalid(format!(
            "internal: {address} is not in the store {}",
            store.root
        )));
    }
    let cache = cache_dir();
    let _lock = run_lock(job, &cache)?;
    log(&format!(
        "schedule {}: capturing {} into {address} (the store's blocks are the base, its newest \
         version the files cache)",
        job.name,
        job.root.display()
    ));
    let choices = StoreCaptureChoices {
        no_base: false,
        index_cache: CacheChoice::Dir(cache.clone()),
    };
    let opts = capture_options(job, address, &cache);
    let capture = capture_into_store(&opts, store, &address.series, &[], &choices, progress)?;
    for s in &capture.report.skipped {
        log(&format!(
            "warning: skipped {}: {} (not in the image)",
            s.path.display(),
            s.reason
        ));
    }
    log(&committed_line(address, &capture));
    if job.verify_boot {
        prove_boot(job, store, address, &capture.version, log)?;
    }
    // committed already: a failure here says so (the next run applies --keep again)
    let forgotten = keep_newest(store, address, job.keep, log).map_err(|e| {
        ScheduleError::Invalid(format!(
            "{address}@{} was committed, but --keep {} was not applied: {e}; the next run \
             applies it again",
            capture.version, job.keep
        ))
    })?;
    Ok(StoreRunReport { capture, forgotten })
}

/// The journal's line on the commit: which version, how many bytes went up.
fn committed_line(address: &ImageAddress, c: &StoreCapture) -> String {
    format!(
        "committed {address}@{}: uploaded {} bytes ({} new pack{} {} bytes, version object {} \
         bytes); {} pack{} of earlier versions reused; {} files read, {} unchanged",
        c.version,
        c.uploaded.bytes + c.version_bytes,
        c.uploaded.packs,
        if c.uploaded.packs == 1 { "" } else { "s" },
        c.uploaded.bytes,
        c.version_bytes,
        c.referenced_packs,
        if c.referenced_packs == 1 { "" } else { "s" },
        c.files_read,
        c.files_unread
    )
}

/// The capture `osimage capture ROOT -o s3://…` would make with the job's options, always
/// verified, leaving out the index cache and every schedule's credentials file.
fn capture_options(job: &Job, address: &ImageAddress, cache: &Path) -> CaptureOptions {
    // the store's own keys seal a version: no image lock
    super::run::capture_options(job, cache, &PathBuf::from(address.to_string()), None)
}

/// Every schedule's credentials file, as an exclude pattern anchored at the capture root.
pub const CREDENTIALS_PATTERN: &str = "/etc/osimage/schedule-*.env";

/// One run of a schedule at a time on this machine (a slow run overlapping the next tick).
fn run_lock(job: &Job, cache: &Path) -> Result<std::fs::File, ScheduleError> {
    use rustix::fs::{FlockOperation, flock};
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache)
        .map_err(super::io("cannot create the cache directory", cache))?;
    let path = cache.join(format!("schedule-{}.lock", job.name));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(super::io("cannot open the lock file", &path))?;
    flock(&f, FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        ScheduleError::Invalid(format!(
            "another run of schedule {} holds {}; not starting a second one",
            job.name,
            path.display()
        ))
    })?;
    Ok(f)
}

/// `--keep N`: forgets the series' versions beyond the newest N, deciding as `store prune
/// --series NAME --keep-last N` does (pinned versions kept) but only forgetting. Logs each.
fn keep_newest(
    store: &Store,
    address: &ImageAddress,
    keep: u32,
    log: &dyn Fn(&str),
) -> Result<Vec<String>, ScheduleError> {
    let times = StoreTimes::from_env()?;
    let lock = store.take_lock_with(LockKind::Prune, None, times)?;
    let done = by_hand::forget_beyond(store, &address.series, keep, &lock, &times);
    let released = lock.release();
    let done = done?;
    released?;
    for d in &done.decisions {
        if !d.keep() {
            log(&format!(
                "forgot {address}@{} (beyond --keep {keep})",
                d.version
            ));
        }
    }
    let forgotten: Vec<String> = done
        .decisions
        .iter()
        .filter(|d| !d.keep())
        .map(|d| d.version.clone())
        .collect();
    if let Some(id) = done.condemnation {
        log(&format!(
            "{} holds them: gone for readers now; their space comes back through `osimage \
             store prune {}`, which condemns the packs only they use and deletes them after \
             its grace period, once no lock of that time is left (--wait waits for it)",
            store.shown(&names::condemnation_key(&id)),
            store.root
        ));
    }
    Ok(forgotten)
}

/// `--verify-boot` of the new version by the network path (VERIFY-BOOT.md "A version in an
/// image store"), under a Read lock. A version that fails is forgotten, so the series' newest
/// is the previous one again, and the run fails.
fn prove_boot(
    job: &Job,
    store: &Store,
    address: &ImageAddress,
    version: &str,
    log: &dyn Fn(&str),
) -> Result<(), ScheduleError> {
    let shown = format!("{address}@{version}");
    log(&format!("verify --boot {shown}"));
    let why = match super::keys::unlock(job)
        .map_err(|e| e.to_string())
        .and_then(|unlock| boot_check(store, &address.series, version, &unlock, log))
    {
        Ok(report) if report.passed => {
            log(&report.verdict);
            return Ok(());
        }
        Ok(report) => report.verdict,
        Err(e) => e,
    };
    let times = StoreTimes::from_env()?;
    let lock = store.take_lock_with(LockKind::Prune, None, times)?;
    let versions = [(address.series.clone(), version.to_string())];
    let forgot = by_hand::forget(store, &versions, &lock, &times);
    let released = lock.release();
    let id = forgot?;
    released?;
    Err(ScheduleError::Invalid(format!(
        "verify --boot failed: {why}; {shown} is forgotten ({}), the series' newest is the \
         previous version again; `osimage store pin {shown} --until DATE` keeps it for a look \
         before the next prune sweeps it",
        store.shown(&names::condemnation_key(&id))
    )))
}

/// The boot check itself; an error is said as text (the run forgets the version either way).
/// An encrypted store's version: the job's key file is what is typed at the VM's prompt
/// (VERIFY-BOOT.md "Encrypted images").
fn boot_check(
    store: &Store,
    series: &str,
    version: &str,
    unlock: &crate::envelope::Unlock,
    log: &dyn Fn(&str),
) -> Result<crate::bootcheck::BootReport, String> {
    let opts = crate::bootcheck::BootCheckOptions::default();
    let lock = store
        .take_lock(LockKind::Read, Some(series))
        .map_err(|e| e.to_string())?;
    let report = crate::bootcheck::network::verify_store_version_unlocked(
        store,
        series,
        version,
        unlock,
        &opts,
        &|l| log(l),
    )
    .map_err(|e| e.to_string());
    let _ = lock.release();
    report
}

/// What install checks of a store schedule's `--verify-boot` before writing anything: the
/// network boot needs a plain-HTTP endpoint and busybox (VERIFY-BOOT.md).
pub fn check_verify_boot(endpoint: &str) -> Result<(), ScheduleError> {
    let opts = crate::bootcheck::BootCheckOptions::default();
    crate::bootcheck::network::network_preflight(endpoint, &opts)
        .map(|_| ())
        .map_err(|e| ScheduleError::Invalid(format!("--verify-boot: {e}")))
}
