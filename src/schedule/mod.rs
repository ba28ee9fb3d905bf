//! Scheduled golden-image refreshes (issue #6, docs/SCHEDULE.md): `schedule install` writes a
//! systemd service + timer (or an /etc/cron.d file where systemd is not running) that runs
//! `osimage schedule run`; `run` captures a refresh of the previous image into DEST, keeps
//! `latest.*` pointing at it and prunes beyond `--keep`.
//!
//! DEST is a directory of image files, or a series of an image store (`s3://…/NAME`): then
//! each run is a capture into the store and `--keep` forgets older versions (`store_run`),
//! with S3 settings from a credentials file install writes (`credentials`).
//!
//! An encrypted schedule (`keys`): a directory's images encrypted to age public keys, or a
//! run into an encrypted store unlocking it with a key file only root can read.
//!
//! `calendar` turns `--every` into OnCalendar / cron fields, `job` is what a run does (as the
//! arguments its unit carries), `units` renders the files, `run` is one scheduled run.

pub mod calendar;
pub mod credentials;
pub mod job;
pub mod keys;
pub mod run;
pub mod store_run;
pub mod units;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use calendar::Calendar;
use credentials::StoreCredentials;
use job::{Dest, Job};
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
    /// The store of a store destination (missing, refused credentials, a failed request).
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

impl ScheduleError {
    /// Whether this is a usage error (exit 2): a malformed value, not a failure.
    pub fn is_usage(&self) -> bool {
        match self {
            ScheduleError::Argument(_) => true,
            ScheduleError::Capture(e) => e.is_usage(),
            ScheduleError::Store(e) => e.is_usage(),
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
    /// The cron back end's log rotation (logrotate(8)).
    logrotate: PathBuf,
    /// A store destination's S3 settings (mode 0600).
    credentials: PathBuf,
}

fn files(sys: &System, name: &str) -> Files {
    let base = units::base_name(name);
    Files {
        service: sys.units_dir().join(format!("{base}.service")),
        timer: sys.units_dir().join(format!("{base}.timer")),
        wants: sys.wants_dir().join(format!("{base}.timer")),
        cron: sys.cron_dir().join(&base),
        logrotate: sys.root.join("etc/logrotate.d").join(&base),
        credentials: sys.root.join(
            credentials::path(name)
                .strip_prefix("/")
                .unwrap_or(Path::new("")),
        ),
    }
}

/// The man page a unit's `Documentation=` names: `systemd-analyze verify` fails on a page
/// that is not installed (issue #24 item 19), so the line is written only when it is.
fn man_page_installed(sys: &System) -> bool {
    ["usr/share/man/man1", "usr/local/share/man/man1"]
        .iter()
        .flat_map(|d| ["osimage-schedule.1", "osimage-schedule.1.gz"].map(|f| Path::new(d).join(f)))
        .any(|p| sys.root.join(p).is_file())
}

/// A file `install` writes (or, with `--dry-run`, would write).
#[derive(Debug)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub text: String,
    /// Its permission bits.
    pub mode: u32,
    /// The text as `--dry-run` prints it, when it differs: secrets masked.
    pub shown: Option<String>,
}

impl PlannedFile {
    /// A file anyone may read (mode 0644).
    fn public(path: PathBuf, text: String) -> PlannedFile {
        PlannedFile {
            path,
            text,
            mode: 0o644,
            shown: None,
        }
    }

    /// The text to print: never a secret.
    pub fn shown(&self) -> &str {
        self.shown.as_deref().unwrap_or(&self.text)
    }
}

/// What `install` does, computed before anything is touched: `--dry-run` prints it.
#[derive(Debug)]
pub struct InstallPlan {
    pub backend: Backend,
    /// The OnCalendar value or the cron fields.
    pub when: String,
    pub files: Vec<PlannedFile>,
    /// Symbolic links (link, target): the timer's `timers.target.wants` entry.
    pub links: Vec<(PathBuf, PathBuf)>,
    /// An installed schedule of that name is replaced (`--force`).
    pub replaces: bool,
    job: Job,
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

/// Refuses to go on unless running as root: schedule files live in /etc and the job captures
/// the whole system (issue #24 item 19: said before anything is created).
pub fn require_root(what: &str) -> Result<(), ScheduleError> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(ScheduleError::Invalid(format!(
            "{what} must run as root (it writes under /etc and the job reads the whole \
             system); nothing was created. Run it with sudo, or add --dry-run to see the files"
        )))
    }
}

/// Checks an `--every` value (a usage error when malformed), so a front-end can say so before
/// anything else about the install.
pub fn check_every(every: &str) -> Result<(), ScheduleError> {
    Calendar::parse(every)
        .map(|_| ())
        .map_err(|e| ScheduleError::Argument(e.to_string()))
}

/// The files and links installing `job` to run at `every` would write, after every check
/// `install` makes (name, `--every`, back end, existing schedules). Touches nothing. A store
/// destination needs `creds`, the settings its runs use (the caller opened the store with
/// them): they go into the credentials file the unit names.
pub fn plan_install(
    sys: &System,
    every: &str,
    mut job: Job,
    exe: &Path,
    force: bool,
    creds: Option<&StoreCredentials>,
) -> Result<InstallPlan, ScheduleError> {
    job::check_name(&job.name).map_err(ScheduleError::Argument)?;
    store_run::check_job(&job)?;
    let creds = match (&job.dest, creds) {
        (Dest::Store(_), Some(c)) => Some(c),
        (Dest::Store(a), None) => {
            return Err(ScheduleError::Invalid(format!(
                "internal: no S3 settings for the schedule into {a}"
            )));
        }
        (Dest::Dir(_), _) => None,
    };
    job.credentials = creds.map(|_| credentials::path(&job.name));
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
            let what = match &job.dest {
                Dest::Dir(_) => "a directory would fight over",
                Dest::Store(_) => "a series would fight over its retention and",
            };
            return Err(ScheduleError::Invalid(format!(
                "schedule {} already writes into {}: two schedules sharing {what} {}",
                other.installed.job.name,
                job.dest,
                job.latest_name()
            )));
        }
    }
    let f = files(sys, &job.name);
    // Files of that name `list` did not show (half a schedule) are replaced if they are ours.
    let replaces = f.exists_any();
    if replaces {
        f.check_ours(&job.name)?;
    }
    let i = Installed {
        every: every.to_string(),
        job,
    };
    let text = |r: Result<String, String>| r.map_err(ScheduleError::Invalid);
    let (mut files, links, when) = match backend {
        Backend::Systemd => {
            let service = units::service(&i, exe, man_page_installed(sys));
            let target =
                Path::new("/etc/systemd/system").join(f.timer.file_name().unwrap_or_default());
            (
                vec![
                    PlannedFile::public(f.service.clone(), text(service)?),
                    PlannedFile::public(f.timer.clone(), text(units::timer(&i, &cal))?),
                ],
                // What `systemctl enable` does for WantedBy=timers.target.
                vec![(f.wants.clone(), target)],
                cal.on_calendar(),
            )
        }
        Backend::Cron => {
            let log = units::cron_log(&i.job.name);
            (
                vec![
                    PlannedFile::public(
                        f.cron.clone(),
                        text(units::cron_file(&i, &cal, exe, &log))?,
                    ),
                    PlannedFile::public(f.logrotate.clone(), text(units::logrotate(&i, &log))?),
                ],
                Vec::new(),
                cal.cron_fields(),
            )
        }
    };
    if let Some(c) = creds {
        let marker = text(units::marker(&i))?;
        files.push(PlannedFile {
            path: f.credentials.clone(),
            text: credentials::file_text(&marker, &i.job.name, c, false),
            mode: 0o600,
            shown: Some(credentials::file_text(&marker, &i.job.name, c, true)),
        });
    }
    Ok(InstallPlan {
        backend,
        when,
        files,
        links,
        replaces,
        job: i.job,
    })
}

/// Installs (and with systemd enables and starts) a schedule running `job` at `every`.
/// `exe` is the osimage binary the unit runs ([`scheduled_binary`]). An existing schedule of
/// that name is replaced only with `force`. Needs root, checked first.
pub fn install(
    sys: &System,
    every: &str,
    job: Job,
    exe: &Path,
    force: bool,
    creds: Option<&StoreCredentials>,
) -> Result<InstallReport, ScheduleError> {
    require_root("schedule install")?;
    let plan = plan_install(sys, every, job, exe, force, creds)?;
    apply(sys, plan)
}

/// Writes what [`plan_install`] planned.
fn apply(sys: &System, plan: InstallPlan) -> Result<InstallReport, ScheduleError> {
    if plan.replaces {
        remove(sys, &plan.job.name)?;
    }
    if let Dest::Dir(d) = &plan.job.dest {
        make_dest(d)?;
    }
    let mut written = Vec::new();
    for f in &plan.files {
        let dir = f.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        write_file(&f.path, &f.text, f.mode)?;
        written.push(f.path.clone());
    }
    for (link, target) in &plan.links {
        let dir = link.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(target, link).map_err(io("cannot link", link))?;
        written.push(link.clone());
    }
    let mut activated = false;
    if plan.backend == Backend::Systemd && sys.live() {
        let timer = format!("{}.timer", units::base_name(&plan.job.name));
        sys.systemctl(&["daemon-reload"])?;
        sys.systemctl(&["start", &timer])?;
        activated = true;
    }
    Ok(InstallReport {
        backend: plan.backend,
        written,
        when: plan.when,
        activated,
    })
}

/// Directories whose binaries are not a stable installed location: they are emptied, or
/// belong to one boot.
const TEMPORARY: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run"];

/// Whether `exe` lies in a cargo target directory (`.rustc_info.json` or `CACHEDIR.TAG` in an
/// ancestor, or `target/debug|release` in its path): rebuilt, moved and cleaned at will.
fn in_build_tree(exe: &Path) -> bool {
    let marked = exe
        .ancestors()
        .skip(1)
        .any(|d| d.join(".rustc_info.json").is_file() || d.join("CACHEDIR.TAG").is_file());
    let names: Vec<&std::ffi::OsStr> = exe.iter().collect();
    marked
        || names
            .windows(2)
            .any(|w| w[0] == "target" && (w[1] == "debug" || w[1] == "release"))
}

/// The binary a schedule's unit runs (issue #24 item 19). `given` (`--binary`) must be an
/// absolute path to an executable file; without it, `running` (the canonical path of the
/// running binary) is used unless it lies in a build tree or a temporary directory, which is
/// refused with how to install it instead.
pub fn scheduled_binary(given: Option<&Path>, running: &Path) -> Result<PathBuf, ScheduleError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(b) = given {
        if !b.is_absolute() {
            return Err(ScheduleError::Argument(format!(
                "--binary {}: give an absolute path (the unit runs it from /)",
                b.display()
            )));
        }
        let meta = std::fs::metadata(b)
            .map_err(|e| ScheduleError::Argument(format!("--binary {}: {e}", b.display())))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(ScheduleError::Argument(format!(
                "--binary {}: not an executable file",
                b.display()
            )));
        }
        return Ok(b.to_path_buf());
    }
    let unstable = if in_build_tree(running) {
        Some("inside a cargo target directory")
    } else if TEMPORARY.iter().any(|t| running.starts_with(t)) {
        Some("in a temporary directory")
    } else {
        None
    };
    match unstable {
        None => Ok(running.to_path_buf()),
        Some(why) => Err(ScheduleError::Invalid(format!(
            "this osimage runs from {}, {why}: a schedule must not run a binary that the next \
             build or clean-up replaces or removes. Install it first, e.g. `install -m 0755 {} \
             /usr/local/sbin/`, and run /usr/local/sbin/osimage schedule install; or name the \
             installed binary with --binary PATH",
            running.display(),
            running.display()
        ))),
    }
}

impl Files {
    fn all(&self) -> [&PathBuf; 6] {
        [
            &self.service,
            &self.timer,
            &self.wants,
            &self.cron,
            &self.logrotate,
            &self.credentials,
        ]
    }
    fn exists_any(&self) -> bool {
        self.all().iter().any(|p| p.symlink_metadata().is_ok())
    }
    /// The files (not the wants link) that exist.
    fn present(&self) -> Vec<&PathBuf> {
        [
            &self.timer,
            &self.service,
            &self.cron,
            &self.logrotate,
            &self.credentials,
        ]
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
    }
    /// Every present file carries osimage's marker for `name`.
    fn check_ours(&self, name: &str) -> Result<(), ScheduleError> {
        let ours = |p: &Path| read_installed(p).is_some_and(|i| i.job.name == name);
        match self.present().into_iter().find(|p| !ours(p)) {
            Some(p) => Err(ScheduleError::Invalid(format!(
                "{} was not written by osimage schedule install; not removing it",
                p.display()
            ))),
            None => Ok(()),
        }
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

/// Writes `text` to `path` (with `mode`) through a temporary name, so a reader never sees
/// half; the temporary file has that mode from its creation, so a secret is never readable
/// by others.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), ScheduleError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut tmp = tempfile::Builder::new()
        .prefix(".osimage-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
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
    /// Where `latest.*` in DEST points, if anywhere (none for a store: its newest version).
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
            let latest = installed.job.dest.dir().and_then(|d| {
                std::fs::read_link(d.join(installed.job.latest_name()))
                    .ok()
                    .map(|t| d.join(t))
            });
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

/// What `remove` did.
#[derive(Debug)]
pub struct RemoveReport {
    pub removed: Vec<PathBuf>,
    /// Why systemctl was not called although systemd units were removed: systemd is not
    /// running (no /run/systemd/system), or another system root.
    pub systemctl_skipped: Option<String>,
}

/// Stops and removes schedule `name`: only files that carry osimage's marker (and the timer's
/// wants link). Images in DEST are kept. Without a running systemd the files are removed and
/// systemctl is not called (the report says so).
pub fn remove(sys: &System, name: &str) -> Result<RemoveReport, ScheduleError> {
    job::check_name(name).map_err(ScheduleError::Argument)?;
    require_root("schedule remove")?;
    let f = files(sys, name);
    let ours = |p: &Path| read_installed(p).is_some_and(|i| i.job.name == name);
    let systemd = ours(&f.timer) || ours(&f.service);
    // Checked before anything is removed: a foreign file stops the whole removal.
    f.check_ours(name)?;
    let skipped = if !systemd {
        None
    } else if !sys.systemd_running() {
        Some(format!(
            "systemd is not running ({} missing): systemctl not called, the unit files \
             removed",
            sys.root.join("run/systemd/system").display()
        ))
    } else if !sys.live() {
        Some(format!("systemctl not called for {}", sys.root.display()))
    } else {
        None
    };
    let call = systemd && skipped.is_none();
    if call {
        sys.systemctl(&["stop", &format!("{}.timer", units::base_name(name))])?;
    }
    let mut gone = Vec::new();
    for p in f.present() {
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
    if call {
        sys.systemctl(&["daemon-reload"])?;
    }
    Ok(RemoveReport {
        removed: gone,
        systemctl_skipped: skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_never_runs_a_build_tree_or_temporary_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("proj/out");
        std::fs::create_dir_all(tree.join("x86_64/release")).expect("mkdir");
        std::fs::write(tree.join(".rustc_info.json"), "{}").expect("write");
        for (running, refused) in [
            (tree.join("x86_64/release/osimage"), true),
            (
                PathBuf::from("/home/u/src/osimage/target/release/osimage"),
                true,
            ),
            (PathBuf::from("/tmp/osimage"), true),
            (PathBuf::from("/run/user/0/osimage"), true),
            (PathBuf::from("/usr/local/sbin/osimage"), false),
            (PathBuf::from("/usr/bin/osimage"), false),
        ] {
            let r = scheduled_binary(None, &running);
            assert_eq!(r.is_err(), refused, "{}: {r:?}", running.display());
            if let Err(e) = r {
                assert!(!e.is_usage());
                assert!(e.to_string().contains("install -m 0755"), "{e}");
            }
        }
        // --binary is taken as given when it is an absolute path to an executable file.
        let sh = Path::new("/bin/sh");
        assert_eq!(
            scheduled_binary(Some(sh), &tree.join("x86_64/release/osimage")).ok(),
            Some(sh.to_path_buf())
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").expect("write");
        let plain = plain.to_str().expect("utf-8");
        for bad in ["sh", "/nonexistent/osimage", plain, "/bin"] {
            let e = scheduled_binary(Some(Path::new(bad)), Path::new("/usr/bin/osimage"))
                .expect_err(bad);
            assert!(e.is_usage(), "{bad}: {e}");
        }
    }
}
