//! One scheduled run (`osimage schedule run NAME …`, what the unit's ExecStart calls):
//! capture a refresh of the previous image into DEST under a temporary name, verify it,
//! rename it to `NAME-YYYYMMDDTHHMMSSZ.EXT`, point `latest.EXT` at it (a symlink replaced
//! atomically), then prune the oldest beyond `--keep`.
//!
//! Which files a schedule created is recorded in DEST/.osimage-NAME.images (one file name a
//! line, oldest first): pruning only ever removes names from that ledger, never a file it did
//! not create, and never the newest.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ScheduleError;
use super::job::{ImageFormat, Job};
use crate::capture::{CaptureOptions, CaptureReport, capture_from};
use crate::payload::reader::PayloadReader;
use crate::progress::Progress;
use crate::scan::ScanOptions;

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    /// The new image.
    pub image: PathBuf,
    /// The image it refreshed, if any.
    pub base: Option<PathBuf>,
    /// Older images removed (beyond `--keep`).
    pub pruned: Vec<PathBuf>,
    pub capture: CaptureReport,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ScheduleError + 'a {
    super::io(what, path)
}

/// Runs `job` once. `log` receives the lines a unit's journal should show.
pub fn run(
    job: &Job,
    progress: &dyn Progress,
    log: &dyn Fn(&str),
) -> Result<RunReport, ScheduleError> {
    super::job::check_name(&job.name).map_err(ScheduleError::Argument)?;
    super::store_run::check_job(job)?;
    let Some(dest) = job.dest.dir() else {
        return Err(ScheduleError::Invalid(format!(
            "internal: {} is a store, not a directory",
            job.dest
        )));
    };
    super::make_dest(dest)?;
    let _lock = lock(job, dest)?;
    let latest = dest.join(job.latest_name());
    if let Ok(md) = latest.symlink_metadata()
        && !md.file_type().is_symlink()
    {
        return Err(ScheduleError::Invalid(format!(
            "{} exists and is not a symbolic link: it was not made by osimage; move it away",
            latest.display()
        )));
    }
    let mut ledger = Ledger::read(job, dest)?;
    let lock = super::keys::lock(job)?;
    if lock.is_some() {
        log("encrypted to --recipient: the previous image cannot be opened here; full capture");
    }
    let previous = ledger.newest_existing(dest).filter(|_| lock.is_none());
    let base = previous.and_then(|b| {
        // A previous image that cannot be read is no base: capture in full and say so.
        match PayloadReader::open(&b, &crate::envelope::Unlock::default()) {
            Ok(_) => Some(b),
            Err(e) => {
                log(&format!(
                    "warning: previous image {} cannot be used as a base ({e}); capturing in full",
                    b.display()
                ));
                None
            }
        }
    });
    let name = new_name(job, dest);
    let output = dest.join(&name);
    match &base {
        Some(b) => log(&format!(
            "schedule {}: capturing {} into {} (refresh of {})",
            job.name,
            job.root.display(),
            output.display(),
            b.display()
        )),
        None => log(&format!(
            "schedule {}: capturing {} into {} (no previous image: full capture)",
            job.name,
            job.root.display(),
            output.display()
        )),
    }
    // capture writes under a temporary name in DEST, verifies every chunk (`verify`), and
    // renames into place only then.
    let capture = capture_from(
        &capture_options(job, dest, &output, lock),
        base.as_deref(),
        progress,
    )?;
    // --keep-going: the image lacks these; a warning in the log and in the run's status
    for s in &capture.skipped {
        log(&format!(
            "warning: skipped {}: {} (not in the image)",
            s.path.display(),
            s.reason
        ));
    }
    if job.verify_boot {
        prove_boot(&output, log)?;
    }

    ledger.names.push(name.clone());
    ledger.write()?;
    point_latest(&latest, &name)?;
    log(&format!("{} → {name}", latest.display()));
    let pruned = prune(job, dest, &mut ledger)?;
    for p in &pruned {
        log(&format!("pruned {}", p.display()));
    }
    Ok(RunReport {
        image: output,
        base,
        pruned,
        capture,
    })
}

/// `verify --boot` of the new image; one that fails is set aside as `*.boot-failed.iso`, never
/// made latest, and the run fails.
fn prove_boot(output: &Path, log: &dyn Fn(&str)) -> Result<(), ScheduleError> {
    log(&format!("verify --boot {}", output.display()));
    let opts = crate::bootcheck::BootCheckOptions::default();
    let outcome = crate::bootcheck::verify_boot(output, &opts, &|l: &str| log(l));
    let why = match outcome {
        Ok(report) if report.passed => {
            log(&report.verdict);
            return Ok(());
        }
        Ok(report) => report.verdict,
        Err(e) => e.to_string(),
    };
    let failed = output.with_extension("boot-failed.iso");
    std::fs::rename(output, &failed).map_err(super::io("setting aside", output))?;
    Err(ScheduleError::Invalid(format!(
        "verify --boot failed: {why}; the image is kept as {}, latest is unchanged",
        failed.display()
    )))
}

/// The capture a scheduled run makes into `output` (a file, or a store's `s3://` series) with
/// the job's options, always verified, leaving out `skip` (DEST, which holds the earlier
/// images; or a store schedule's index cache), the job's key file, and every schedule's
/// credentials file; encrypted for `lock` when given (a directory's `--recipient`s).
pub(super) fn capture_options(
    job: &Job,
    skip: &Path,
    output: &Path,
    lock: Option<crate::envelope::keys::Lock>,
) -> CaptureOptions {
    let mut excludes = job.excludes.clone();
    // Schedules into stores keep their S3 secrets there: not in any image (SCHEDULE.md).
    excludes.push(super::store_run::CREDENTIALS_PATTERN.to_string());
    CaptureOptions {
        root: job.root.clone(),
        output: output.to_path_buf(),
        scan: ScanOptions {
            one_file_system: job.one_file_system,
            excludes,
            exclude_from: job.exclude_from.clone(),
            // DEST holds the earlier images: under ROOT, each capture would hold them all.
            // …and a store's key file never goes into an image (docs/SCHEDULE.md).
            skip_paths: std::iter::once(skip)
                .chain(super::keys::key_file(job).map(|(f, _)| f))
                .map(Path::to_path_buf)
                .collect(),
            keep_going: job.keep_going,
        },
        level: job.level.unwrap_or(3),
        threads: job
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1),
        force: false,
        verify: true,
        kernel: job.kernel.clone(),
        snapshot: job.snapshot,
        // A scheduled image of a system that cannot come back must fail, not succeed.
        files_only: false,
        // a directory's images: encrypted to public keys, no secret kept (SCHEDULE.md)
        lock: lock.map(std::sync::Arc::new),
        unlock: std::sync::Arc::new(crate::envelope::Unlock::default()),
    }
}

/// `NAME-20261125T230000Z.iso`; `-2`, `-3`… when a run in the same second made one already.
fn new_name(job: &Job, dest: &Path) -> String {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let ext = job.format.ext();
    let mut name = format!("{}-{stamp}.{ext}", job.name);
    let mut n = 2;
    while dest.join(&name).symlink_metadata().is_ok() {
        name = format!("{}-{stamp}-{n}.{ext}", job.name);
        n += 1;
    }
    name
}

/// One run per schedule at a time (a slow run overlapping the next timer tick).
fn lock(job: &Job, dest: &Path) -> Result<std::fs::File, ScheduleError> {
    use rustix::fs::{FlockOperation, flock};
    let path = dest.join(format!(".osimage-{}.lock", job.name));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("cannot open the lock file", &path))?;
    flock(&f, FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        ScheduleError::Invalid(format!(
            "another run of schedule {} holds {}; not starting a second one",
            job.name,
            path.display()
        ))
    })?;
    Ok(f)
}

/// Replaces `latest` with a symlink to `name` (relative, so DEST can move) atomically: a
/// reader sees the old link or the new one, never none.
fn point_latest(latest: &Path, name: &str) -> Result<(), ScheduleError> {
    let dir = latest.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(".{}.new", name));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp).map_err(io("cannot create the link", &tmp))?;
    std::fs::rename(&tmp, latest).map_err(io("cannot replace", latest))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes the oldest images beyond `keep`, from the ledger only. The newest is the last
/// ledger entry and `keep ≥ 1`, so it is never a candidate.
fn prune(job: &Job, dest: &Path, ledger: &mut Ledger) -> Result<Vec<PathBuf>, ScheduleError> {
    let excess = ledger.names.len().saturating_sub(job.keep as usize);
    let old: Vec<String> = ledger.names.drain(..excess).collect();
    let mut pruned = Vec::new();
    let mut failed = None;
    for n in old {
        let p = dest.join(&n);
        match std::fs::remove_file(&p) {
            Ok(()) => pruned.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                // Kept in the ledger so the next run tries again.
                failed.get_or_insert(io("cannot prune", &p)(e));
                ledger.names.insert(0, n);
            }
        }
    }
    ledger.write()?;
    sync_dir(dest);
    match failed {
        Some(e) => Err(e),
        None => Ok(pruned),
    }
}

/// DEST/.osimage-NAME.images: the images this schedule created, oldest first.
struct Ledger {
    path: PathBuf,
    names: Vec<String>,
}

impl Ledger {
    fn read(job: &Job, dest: &Path) -> Result<Ledger, ScheduleError> {
        let path = dest.join(format!(".osimage-{}.images", job.name));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io("cannot read", &path)(e)),
        };
        // Only plain names this schedule could have made: a line naming anything else (a
        // path, another schedule's image) is never acted on.
        let prefix = format!("{}-", job.name);
        let names = text
            .lines()
            .filter(|l| {
                !l.contains('/')
                    && l.starts_with(&prefix)
                    && [ImageFormat::Iso, ImageFormat::Oimg]
                        .iter()
                        .any(|f| l.ends_with(&format!(".{}", f.ext())))
            })
            .map(str::to_string)
            .collect();
        Ok(Ledger { path, names })
    }

    fn newest_existing(&self, dest: &Path) -> Option<PathBuf> {
        self.names
            .iter()
            .rev()
            .map(|n| dest.join(n))
            .find(|p| p.is_file())
    }

    fn write(&self) -> Result<(), ScheduleError> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let mut tmp = tempfile::Builder::new()
            .prefix(".osimage-ledger-")
            .tempfile_in(dir)
            .map_err(io("cannot create a file in", dir))?;
        let text: String = self.names.iter().map(|n| format!("{n}\n")).collect();
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io("cannot write", &self.path))?;
        tmp.persist(&self.path)
            .map_err(|e| io("cannot write", &self.path)(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule named `golden` capturing `/` into `dest`.
    fn job(dest: PathBuf, format: ImageFormat, verify_boot: bool) -> Job {
        Job {
            format,
            level: Some(3),
            verify_boot,
            ..super::super::job::test_job(super::super::job::Dest::Dir(dest))
        }
    }

    #[test]
    fn the_ledger_only_ever_names_this_schedules_images_inside_dest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = job(dir.path().to_path_buf(), ImageFormat::Iso, false);
        std::fs::write(
            dir.path().join(".osimage-golden.images"),
            "golden-1.iso\n../golden-2.iso\ngolden-/../../etc/passwd.iso\nother-3.iso\n\
             golden-4.txt\ngolden-5.oimg\n",
        )
        .expect("write ledger");
        let l = Ledger::read(&job, dir.path()).expect("read ledger");
        assert_eq!(l.names, ["golden-1.iso", "golden-5.oimg"]);
    }

    #[test]
    fn verify_boot_is_passed_to_the_unit_and_needs_an_iso() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut job = job(dir.path().join("dest"), ImageFormat::Oimg, true);
        assert!(job.run_args().iter().any(|a| a == "--verify-boot"));
        let e = run(&job, &crate::progress::NoProgress, &|_| {}).expect_err("oimg");
        assert!(e.to_string().contains("needs --format iso"), "{e}");
        assert!(
            !dir.path().join("dest").exists(),
            "nothing made for a refused run"
        );
        job.verify_boot = false;
        assert!(!job.run_args().iter().any(|a| a == "--verify-boot"));
    }
}
