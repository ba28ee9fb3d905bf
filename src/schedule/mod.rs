//! Scheduled golden-image refreshes (issue #6, docs/SCHEDULE.md): `schedule install` writes a
//! systemd service + timer (or an /etc/cron.d file where systemd is not running) that runs
//! `osimage schedule run`; `run` captures a refresh of the previous image into DEST, keeps
//! `latest.*` pointing at it and prunes beyond `--keep`.
//!
//! `calendar` turns `--every` into OnCalendar / cron fields, `job` is what a run does (as the
//! arguments its unit carries), `units` renders the files, `run` is one scheduled run.

pub mod calendar;
pub mod job;
pub mod run;
pub mod units;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use calendar::Calendar;
use job::Job;
use units::Installed;

/// Everything that can stop a schedule command.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A value given on the command line is malformed (`--every`, `--name`): a usage error.
    #[error("{0}")]
    Argument(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Systemctl(String),
    #[error("{0}")]
    Capture(#[from] crate::capture::CaptureError),
}

impl ScheduleError {
    /// Whether this is a usage error (exit 2): a malformed value, not a failure.
    pub fn is_usage(&self) -> bool {
        match self {
            ScheduleError::Argument(_) => true,
            ScheduleError::Capture(e) => e.is_usage(),
            _ => false,
        }
    }
}

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ScheduleError + 'a {
    move |source| ScheduleError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What runs the schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Systemd,
    Cron,
}

/// The system whose schedules are managed: `/` normally; another directory in tests (then
/// systemctl is never called, since it would act on the running system).
#[derive(Clone, Debug)]
pub struct System {
    pub root: PathBuf,
}

impl System {
    fn units_dir(&self) -> PathBuf {
        self.root.join("etc/systemd/system")
    }
    fn wants_dir(&self) -> PathBuf {
        self.units_dir().join("timers.target.wants")
    }
    fn cron_dir(&self) -> PathBuf {
        self.root.join("etc/cron.d")
    }
    /// sd_booted(3): systemd is PID 1 when /run/systemd/system exists.
    fn systemd_running(&self) -> bool {
        self.root.join("run/systemd/system").is_dir()
    }
    fn live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// systemd when it runs, else cron when /etc/cron.d exists.
    pub fn backend(&self) -> Result<Backend, ScheduleError> {
        if self.systemd_running() {
            Ok(Backend::Systemd)
        } else if self.cron_dir().is_dir() {
            Ok(Backend::Cron)
        } else {
            Err(ScheduleError::Invalid(format!(
                "neither systemd is running ({} missing) nor cron installed ({} missing): \
                 nothing could run the schedule (install cron, e.g. the Debian package `cron`)",
                self.root.join("run/systemd/system").display(),
                self.cron_dir().display()
            )))
        }
    }

    fn systemctl(&self, args: &[&str]) -> Result<(), ScheduleError> {
        if !self.live() {
            return Ok(());
        }
        let out = Command::new("systemctl").args(args).output().map_err(|e| {
            ScheduleError::Systemctl(format!("cannot run systemctl {}: {e}", args.join(" ")))
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ScheduleError::Systemctl(format!(
                "systemctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// The files one schedule consists of.
struct Files {
    service: PathBuf,
    timer: PathBuf,
    wants: PathBuf,
    cron: PathBuf,
}

fn files(sys: &System, name: &str) -> Files {
    let base = units::base_name(name);
    Files {
        service: sys.units_dir().join(format!("{base}.service")),
        timer: sys.units_dir().join(format!("{base}.timer")),
        wants: sys.wants_dir().join(format!("{base}.timer")),
        cron: sys.cron_dir().join(&base),
    }
}

/// What `install` did.
#[derive(Debug)]
pub struct InstallReport {
    pub backend: Backend,
    pub written: Vec<PathBuf>,
    /// The OnCalendar value or the cron fields.
    pub when: String,
    /// Whether systemctl was called (not for another system root).
    pub activated: bool,
}

/// Installs (and with systemd enables and starts) a schedule running `job` at `every`.
/// `exe` is the osimage binary the unit runs. An existing schedule of that name is replaced
/// only with `force`.
pub fn install(
    sys: &System,
    every: &str,
    job: Job,
    exe: &Path,
    force: bool,
) -> Result<InstallReport, ScheduleError> {
    job::check_name(&job.name).map_err(ScheduleError::Argument)?;
    let cal = Calendar::parse(every).map_err(|e| ScheduleError::Argument(e.to_string()))?;
    let backend = sys.backend()?;
    for other in list(sys)? {
        let same = other.installed.job.name == job.name;
        if same && !force {
            return Err(ScheduleError::Invalid(format!(
                "a schedule named {} exists (remove it first, or --force to replace it)",
                job.name
            )));
        }
        if !same && other.installed.job.dest == job.dest {
            return Err(ScheduleError::Invalid(format!(
                "schedule {} already writes into {}: two schedules sharing a directory would \
                 fight over {}",
                other.installed.job.name,
                job.dest.display(),
                job.latest_name()
            )));
        }
    }
    if files(sys, &job.name).exists_any() {
        remove(sys, &job.name)?;
    }
    make_dest(&job.dest)?;
    let f = files(sys, &job.name);
    let i = Installed {
        every: every.to_string(),
        job,
    };
    let mut written = Vec::new();
    let when = match backend {
        Backend::Systemd => {
            let dir = sys.units_dir();
            std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
            write_file(
                &f.service,
                &units::service(&i, exe).map_err(ScheduleError::Invalid)?,
            )?;
            write_file(
                &f.timer,
                &units::timer(&i, &cal).map_err(ScheduleError::Invalid)?,
            )?;
            // What `systemctl enable` does for WantedBy=timers.target.
            let wants = sys.wants_dir();
            std::fs::create_dir_all(&wants).map_err(io("cannot create", &wants))?;
            let target =
                Path::new("/etc/systemd/system").join(f.timer.file_name().unwrap_or_default());
            let _ = std::fs::remove_file(&f.wants);
            std::os::unix::fs::symlink(&target, &f.wants).map_err(io("cannot link", &f.wants))?;
            written.extend([f.service.clone(), f.timer.clone(), f.wants.clone()]);
            cal.on_calendar()
        }
        Backend::Cron => {
            let log = Path::new("/var/log").join(format!("{}.log", units::base_name(&i.job.name)));
            write_file(
                &f.cron,
                &units::cron_file(&i, &cal, exe, &log).map_err(ScheduleError::Invalid)?,
            )?;
            written.push(f.cron.clone());
            cal.cron_fields()
        }
    };
    let mut activated = false;
    if backend == Backend::Systemd && sys.live() {
        let timer = format!("{}.timer", units::base_name(&i.job.name));
        sys.systemctl(&["daemon-reload"])?;
        sys.systemctl(&["start", &timer])?;
        activated = true;
    }
    Ok(InstallReport {
        backend,
        written,
        when,
        activated,
    })
}

impl Files {
    fn exists_any(&self) -> bool {
        [&self.service, &self.timer, &self.wants, &self.cron]
            .iter()
            .any(|p| p.symlink_metadata().is_ok())
    }
}

/// DEST holds images of the whole system, secrets included: created mode 0700.
fn make_dest(dest: &Path) -> Result<(), ScheduleError> {
    use std::os::unix::fs::DirBuilderExt;
    if dest.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dest)
        .map_err(io("cannot create the destination", dest))
}

/// Writes `text` to `path` (mode 0644) through a temporary name, so a reader never sees half.
fn write_file(path: &Path, text: &str) -> Result<(), ScheduleError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut tmp = tempfile::Builder::new()
        .prefix(".osimage-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(io("cannot create a file in", dir))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io("cannot write", path))?;
    tmp.persist(path)
        .map_err(|e| io("cannot write", path)(e.error))?;
    Ok(())
}

/// One installed schedule, as `list` shows it.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    pub backend: Backend,
    #[serde(flatten)]
    pub installed: Installed,
    /// OnCalendar value or cron fields.
    pub when: String,
    /// systemd: the timer is wanted by timers.target.
    pub enabled: bool,
    /// Where `latest.*` in DEST points, if anywhere.
    pub latest: Option<PathBuf>,
}

/// The schedules osimage installed (files carrying its marker), sorted by name.
pub fn list(sys: &System) -> Result<Vec<Listed>, ScheduleError> {
    let mut out = Vec::new();
    for (dir, backend, suffix) in [
        (sys.units_dir(), Backend::Systemd, ".timer"),
        (sys.cron_dir(), Backend::Cron, ""),
    ] {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("cannot read", &dir)(e)),
        };
        for ent in rd {
            let ent = ent.map_err(io("cannot read", &dir))?;
            let fname = ent.file_name();
            let Some(n) = fname.to_str() else { continue };
            let Some(name) = n
                .strip_prefix("osimage-")
                .and_then(|r| r.strip_suffix(suffix))
            else {
                continue;
            };
            if name.contains('.') || job::check_name(name).is_err() {
                continue;
            }
            let Some(installed) = read_installed(&ent.path()) else {
                continue;
            };
            let cal = Calendar::parse(&installed.every).ok();
            let when = match (backend, cal) {
                (Backend::Systemd, Some(c)) => c.on_calendar(),
                (Backend::Cron, Some(c)) => c.cron_fields(),
                (_, None) => installed.every.clone(),
            };
            let enabled = match backend {
                Backend::Systemd => files(sys, name).wants.symlink_metadata().is_ok(),
                Backend::Cron => true,
            };
            let latest = std::fs::read_link(installed.job.dest.join(installed.job.latest_name()))
                .ok()
                .map(|t| installed.job.dest.join(t));
            out.push(Listed {
                backend,
                installed,
                when,
                enabled,
                latest,
            });
        }
    }
    out.sort_by(|a, b| a.installed.job.name.cmp(&b.installed.job.name));
    Ok(out)
}

fn read_installed(path: &Path) -> Option<Installed> {
    units::read_marker(&std::fs::read_to_string(path).ok()?)
}

/// Stops and removes schedule `name`: only files that carry osimage's marker (and the timer's
/// wants link). Images in DEST are kept. Returns the files removed.
pub fn remove(sys: &System, name: &str) -> Result<Vec<PathBuf>, ScheduleError> {
    job::check_name(name).map_err(ScheduleError::Argument)?;
    let f = files(sys, name);
    let ours = |p: &Path| read_installed(p).is_some_and(|i| i.job.name == name);
    let mut gone = Vec::new();
    let systemd = ours(&f.timer) || ours(&f.service);
    let present: Vec<&PathBuf> = [&f.timer, &f.service, &f.cron]
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    // Checked before anything is removed: a foreign file stops the whole removal.
    if let Some(p) = present.iter().find(|p| !ours(p)) {
        return Err(ScheduleError::Invalid(format!(
            "{} was not written by osimage schedule install; not removing it",
            p.display()
        )));
    }
    if systemd {
        sys.systemctl(&["stop", &format!("{}.timer", units::base_name(name))])?;
    }
    for p in present {
        std::fs::remove_file(p).map_err(io("cannot remove", p))?;
        gone.push(p.clone());
    }
    if std::fs::read_link(&f.wants).is_ok() {
        std::fs::remove_file(&f.wants).map_err(io("cannot remove", &f.wants))?;
        gone.push(f.wants.clone());
    }
    if gone.is_empty() {
        return Err(ScheduleError::Invalid(format!(
            "no schedule named {name} (see `osimage schedule list`)"
        )));
    }
    if systemd {
        sys.systemctl(&["daemon-reload"])?;
    }
    Ok(gone)
}
