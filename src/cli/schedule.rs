//! `osimage schedule install|list|remove` and the hidden `schedule run` their units call
//! (issue #6, docs/SCHEDULE.md). Parsing and printing only; the work is `osimage::schedule`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use osimage::Job;
use osimage::Progress;
use osimage::System;

use super::UsageError;

/// Refresh a golden image on a schedule (systemd timer, or cron without systemd).
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Install and start a scheduled capture into DEST.
    ///
    /// Writes osimage-NAME.service and osimage-NAME.timer into /etc/systemd/system and
    /// starts the timer; where systemd is not running, writes /etc/cron.d/osimage-NAME
    /// (output appended to /var/log/osimage-NAME.log, rotated by
    /// /etc/logrotate.d/osimage-NAME). Needs root; --dry-run prints the files instead. The
    /// unit runs this osimage binary (refused when it lies in a build tree: install it, or
    /// give --binary) with --config naming the configuration file, if one is used
    /// (/etc/osimage/osimage.toml, CONFIG.md in /usr/share/doc/osimage), which each run reads
    /// again. Each run captures ROOT into
    /// DEST/NAME-YYYYMMDDTHHMMSSZ.iso as a refresh of the previous image (--base), verifies
    /// it before renaming it into place, points DEST/latest.iso at it, and deletes the oldest
    /// images it made beyond --keep. A failed run exits non-zero (the unit shows failed) and
    /// leaves the previous images and latest.iso as they were.
    Install(InstallArgs),
    /// List the installed schedules.
    List(SystemArgs),
    /// Stop and remove schedule NAME (the images in its DEST are kept).
    Remove {
        /// The schedule's name (see `schedule list`).
        name: String,
        #[command(flatten)]
        system: SystemArgs,
    },
    /// One scheduled run (what the unit or cron line calls).
    #[command(hide = true)]
    Run {
        name: String,
        #[command(flatten)]
        job: JobArgs,
    },
}

#[derive(Debug, Args)]
pub struct SystemArgs {
    /// Manage the schedules of the system under DIR instead of this one; systemctl is not
    /// called (for tests).
    #[arg(long, hide = true, default_value = "/", value_name = "DIR")]
    pub system_root: PathBuf,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// When to run: daily (00:00), weekly (Monday 00:00), hourly, monthly, or a cron
    /// expression of five fields (minute hour day-of-month month day-of-week, e.g.
    /// "30 2 * * 1-5"); converted to systemd's OnCalendar.
    #[arg(long, value_name = "WHEN")]
    pub every: String,
    /// The schedule's name: names the units and the images (a-z, 0-9, '-', '_').
    #[arg(long, default_value = "golden")]
    pub name: String,
    /// Replace an installed schedule of the same name.
    #[arg(long)]
    pub force: bool,
    /// Print the files (units, or the cron file and its logrotate snippet) with their paths
    /// and create nothing; works as any user.
    #[arg(long)]
    pub dry_run: bool,
    /// The installed osimage binary the unit runs (absolute, executable). Default: this
    /// binary, unless it lies in a cargo target or temporary directory.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub system: SystemArgs,
}

/// What each run does: the capture options and where the images go.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Directory for the images (created mode 0700 if missing; left out of the capture).
    /// Default: destination.dir of the configuration file.
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// How many images to keep; older ones this schedule made are deleted after a run.
    /// Default: retention.keep of the configuration file.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
    /// iso: bootable ISO (latest.iso); oimg: the payload alone (latest.oimg) [default: iso,
    /// or destination.format of the configuration file].
    #[arg(long, value_enum)]
    pub format: Option<super::choices::Format>,
    /// The root of the tree to capture.
    #[arg(long, default_value = "/", value_name = "ROOT")]
    pub root: PathBuf,
    #[command(flatten)]
    pub tuning: super::args::CaptureTuning,
    /// Capture ROOT's filesystem from a btrfs or LVM snapshot (point in time).
    #[arg(long)]
    pub snapshot: bool,
    /// Prove each new image restores before it becomes latest: `osimage verify --boot` (a
    /// throw-away VM restores it onto a scratch disk and boots the result; VERIFY-BOOT.md in
    /// /usr/share/doc/osimage).
    /// An image that fails is kept as NAME.boot-failed.iso, latest is left alone and the run
    /// fails. Needs --format iso, qemu-system-x86 and ovmf; takes minutes per run.
    #[arg(long)]
    pub verify_boot: bool,
    #[command(flatten)]
    pub config: super::config::ConfigArgs,
}

type Failure = Box<dyn std::error::Error>;

/// Runs `osimage schedule …`.
pub fn run(args: ScheduleArgs, progress: &dyn Progress) -> Result<i32, Failure> {
    match args.command {
        ScheduleCommand::Install(a) => install(a),
        ScheduleCommand::List(s) => list(&s),
        ScheduleCommand::Remove { name, system } => {
            let sys = System {
                root: system.system_root,
            };
            let r = osimage::remove_schedule(&sys, &name)?;
            for p in &r.removed {
                println!("removed {}", p.display());
            }
            if let Some(why) = &r.systemctl_skipped {
                println!("{why}");
            }
            Ok(0)
        }
        ScheduleCommand::Run { name, job } => {
            let job = to_job(name, job, Use::Run)?;
            // Lines for the journal (or the cron log): stdout, unbuffered per line.
            let log = |l: &str| println!("{l}");
            let r = osimage::run_scheduled(&job, progress, &log)?;
            println!("{}", super::show::capture_line(&r.image, &r.capture));
            // the run logged each skipped file; its status says so too (the unit shows failed
            // with status 3, docs/SCHEDULE.md), never a silent success
            if r.capture.skipped.is_empty() {
                return Ok(0);
            }
            let n = r.capture.skipped.len();
            println!(
                "warning: finished with {n} skipped file{} (listed above): {} lacks {}; exit \
                 status {}",
                if n == 1 { "" } else { "s" },
                r.image.display(),
                if n == 1 { "it" } else { "them" },
                super::SKIPPED_FILES
            );
            Ok(super::SKIPPED_FILES)
        }
    }
}

fn install(a: InstallArgs) -> Result<i32, Failure> {
    // issue #24 item 19: said before anything is read or created
    if !a.dry_run {
        osimage::require_root("schedule install")?;
    }
    let sys = System {
        root: a.system.system_root,
    };
    let job = to_job(a.name, a.job, Use::Install)?;
    // the values given (usage errors) before the binary this machine runs from
    osimage::check_every(&a.every)?;
    let running = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("cannot find the osimage binary to schedule: {e}"))?;
    let exe = osimage::scheduled_binary(a.binary.as_deref(), &running)?;
    if a.dry_run {
        return dry_run(&sys, &a.every, job, &exe, a.force);
    }
    let r = osimage::install_schedule(&sys, &a.every, job, &exe, a.force)?;
    for p in &r.written {
        println!("wrote {}", p.display());
    }
    match r.backend {
        osimage::Backend::Systemd if r.activated => {
            println!("timer started: OnCalendar={}", r.when)
        }
        osimage::Backend::Systemd => println!(
            "OnCalendar={} (systemctl not called for {})",
            r.when,
            sys.root.display()
        ),
        osimage::Backend::Cron => println!("cron: {} (systemd is not running)", r.when),
    }
    Ok(0)
}

/// `install --dry-run`: every file with its path and text; nothing is created.
fn dry_run(sys: &System, every: &str, job: Job, exe: &Path, force: bool) -> Result<i32, Failure> {
    let dest = job.dest.clone();
    let plan = osimage::plan_schedule(sys, every, job, exe, force)?;
    if plan.replaces {
        println!("would replace the installed schedule of that name");
    }
    if !dest.is_dir() {
        println!("would create {} (mode 0700)", dest.display());
    }
    for f in &plan.files {
        println!("would write {}:\n{}", f.path.display(), f.text);
    }
    for (link, target) in &plan.links {
        println!("would link {} -> {}", link.display(), target.display());
    }
    let when = match plan.backend {
        osimage::Backend::Systemd => format!("OnCalendar={}", plan.when),
        osimage::Backend::Cron => format!("cron: {}", plan.when),
    };
    println!("{when} (dry run: nothing was created)");
    Ok(0)
}

fn list(s: &SystemArgs) -> Result<i32, Failure> {
    let sys = System {
        root: s.system_root.clone(),
    };
    let all = osimage::list_schedules(&sys)?;
    if all.is_empty() {
        println!("no schedules");
    }
    for l in all {
        let j = &l.installed.job;
        println!(
            "{}: every {} ({:?}: {}{}) {} → {} keep {}; latest: {}",
            j.name,
            l.installed.every,
            l.backend,
            l.when,
            if l.enabled { "" } else { ", not enabled" },
            j.root.display(),
            j.dest.display(),
            j.keep,
            l.latest
                .as_deref()
                .map_or("none yet".into(), |p| p.display().to_string())
        );
    }
    Ok(0)
}

/// What a `Job` is built for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// The unit records the flags as given and `--config`: each run reads the file again, so
    /// only DEST, --keep and --format (which install needs) are taken from it here.
    Install,
    /// One run: the file's keys under the unit's flags.
    Run,
}

/// Absolute paths: the unit runs from another working directory.
fn to_job(name: String, a: JobArgs, use_: Use) -> Result<Job, Failure> {
    osimage::check_schedule_name(&name).map_err(UsageError)?;
    let loaded = a.config.load()?;
    let cfg = &loaded.config;
    let format: osimage::ImageFormat = match a.format {
        Some(f) => f.into(),
        None => cfg.destination.format.unwrap_or(osimage::ImageFormat::Iso),
    };
    if a.verify_boot && format != osimage::ImageFormat::Iso {
        return Err(UsageError(
            "--verify-boot needs --format iso (a payload image has no rescue environment \
             to boot)"
                .into(),
        )
        .into());
    }
    let missing = |flag: &str, key: &str| {
        UsageError(format!(
            "give {flag}, or {key} in the configuration file ({}; CONFIG.md in /usr/share/doc/osimage)",
            loaded
                .path
                .as_deref()
                .unwrap_or(Path::new(super::config::DEFAULT_PATH))
                .display()
        ))
    };
    let dest = a
        .dest
        .or_else(|| cfg.destination.dir.as_ref().map(|d| d.0.clone()))
        .ok_or_else(|| missing("--dest DIR", "destination.dir"))?;
    let keep = a
        .keep
        .or(cfg.retention.keep.map(|k| k.0))
        .ok_or_else(|| missing("--keep N", "retention.keep"))?;
    let (tuning, snapshot) = match use_ {
        Use::Install => (a.tuning, a.snapshot),
        Use::Run => (
            cfg.tuning(a.tuning),
            a.snapshot || cfg.capture.snapshot == Some(true),
        ),
    };
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(Job {
        name,
        dest: abs(&dest)?,
        keep,
        format,
        root: abs(&a.root)?,
        kernel: match tuning.kernel {
            // A path (has a '/') is made absolute; a bare version stays as it is.
            Some(k) if k.as_os_str().as_encoded_bytes().contains(&b'/') => Some(abs(&k)?),
            k => k,
        },
        one_file_system: tuning.one_file_system,
        excludes: tuning.exclude,
        exclude_from: tuning
            .exclude_from
            .iter()
            .map(|f| abs(f))
            .collect::<Result<_, _>>()?,
        keep_going: tuning.keep_going,
        level: tuning.level,
        threads: tuning.threads,
        snapshot,
        verify_boot: a.verify_boot,
        config: loaded.path.clone(),
    })
}
