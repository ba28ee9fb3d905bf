//! `osimage schedule install|list|remove` and the hidden `schedule run` their units call
//! (issue #6, docs/SCHEDULE.md). Parsing and printing only; the work is `osimage::schedule`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use osimage::Progress;
use osimage::System;
use osimage::{Dest, Job, StoreCredentials};

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
    ///
    /// With --dest s3://BUCKET/PREFIX/NAME each run captures into that store series instead,
    /// as `osimage capture ROOT -o s3://BUCKET/PREFIX/NAME` does, and then forgets the
    /// series' versions beyond --keep (their space comes back with a later `osimage store
    /// prune`). The S3 settings this install finds (AWS_* variables or a profile) are written
    /// to /etc/osimage/schedule-NAME.env, mode 0600, which the unit names (SCHEDULE.md in
    /// /usr/share/doc/osimage, "Credentials"). An encrypted store is unlocked by each run
    /// with --identity FILE or --passphrase-file FILE, a file only root can read; images in a
    /// directory are encrypted with --recipient, which keeps no secret on the machine
    /// (SCHEDULE.md, "Encrypted images and encrypted stores").
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
    /// Directory for the images (created mode 0700 if missing; left out of the capture), or
    /// a series of an image store, s3://BUCKET/PREFIX/NAME (made by `osimage store init`).
    /// Default: destination.dir of the configuration file.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX/NAME")]
    pub dest: Option<PathBuf>,
    /// How many images to keep; older ones this schedule made are deleted after a run (in a
    /// store: the series' versions beyond the newest N are forgotten, as `store prune --series
    /// NAME --keep-last N` decides, without its deleting; `store prune` frees their space).
    /// Default: retention.keep of the configuration file.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
    /// iso: bootable ISO (latest.iso); oimg: the payload alone (latest.oimg) [default: iso,
    /// or destination.format of the configuration file]. Not with a store (it holds
    /// versions; `osimage export` makes an ISO of one).
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
    /// fails. Needs --format iso, qemu-system-x86 and ovmf; takes minutes per run. Into a
    /// store: the VM boots the new version from the network (plain-HTTP endpoint, busybox);
    /// one that fails is forgotten, so the series' newest is the previous version again.
    #[arg(long)]
    pub verify_boot: bool,
    /// The S3 settings of a run into a store (written by install, mode 0600); without it,
    /// this process's AWS_* variables or profile, as every store command.
    #[arg(long, hide = true, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Into an encrypted store: an age secret key file (age-keygen) whose public key is one
    /// of the store's keys (`osimage store key add s3://B/P --recipient age1…`). Each run
    /// unlocks the store with it; it must be owned by root and readable by root alone (0600
    /// or 0400), checked by install and by every run. The unit keeps the path, never the key.
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_file")]
    pub identity: Option<PathBuf>,
    /// Into an encrypted store: a file whose first line is a passphrase of one of the store's
    /// keys; owned by root and readable by root alone, as --identity.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Into a directory: encrypt each image to this age public key (`age1…`), as `capture
    /// --recipient`; no secret is kept on the machine, so every run is a full capture.
    /// Repeatable.
    #[arg(long, value_name = "AGE_PUBLIC_KEY")]
    pub recipient: Vec<String>,
    /// Into a directory: encrypt each image to the age public keys in FILE (one a line, #
    /// comments), read by every run. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub recipient_file: Vec<PathBuf>,
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
            if let Dest::Store(address) = &job.dest {
                return run_into_store(&job, address, progress);
            }
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

/// A run into a store (docs/SCHEDULE.md "Into an image store"): the S3 settings from the
/// credentials file the unit names, else this process's.
fn run_into_store(
    job: &Job,
    address: &osimage::store::ImageAddress,
    progress: &dyn Progress,
) -> Result<i32, Failure> {
    let settings = match &job.credentials {
        Some(file) => osimage::schedule_credentials(file)?
            .settings()
            .map_err(|e| format!("{}: {e}", file.display()))?,
        None => osimage::s3::S3Settings::from_env()
            .map_err(|e| UsageError(format!("{address}: {e}")))?,
    };
    let client = super::source::NetArgs::default().store_client_with(&settings, &address.root)?;
    // an encrypted store is unlocked with the job's key file, checked first (root's alone)
    let store = osimage::open_schedule_store(job, client)
        .map_err(|e| said(&e, format!("schedule {} into {address}", job.name)))?;
    let log = |l: &str| println!("{l}");
    let r = osimage::run_scheduled_into_store(job, &store, progress, &log)?;
    let skipped = r.capture.report.skipped.len();
    if skipped == 0 {
        return Ok(0);
    }
    println!(
        "warning: finished with {skipped} skipped file{} (listed above): {} lacks {}; exit \
         status {}",
        if skipped == 1 { "" } else { "s" },
        r.capture.report.output.display(),
        if skipped == 1 { "it" } else { "them" },
        super::SKIPPED_FILES
    );
    Ok(super::SKIPPED_FILES)
}

/// A store destination's checks at install time, before any file is planned: the S3
/// settings found here (the installer's AWS_* variables or profile, as every store command)
/// open the store, and `--verify-boot` can boot from it. Returns what the credentials file
/// will hold.
fn store_credentials(job: &Job) -> Result<Option<StoreCredentials>, Failure> {
    let Dest::Store(address) = &job.dest else {
        return Ok(None);
    };
    let settings =
        osimage::s3::S3Settings::from_env().map_err(|e| UsageError(format!("{address}: {e}")))?;
    let ca = std::env::var_os("OSIMAGE_CA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or(settings.ca_bundle.clone());
    let creds = StoreCredentials::from_settings(&settings, ca.as_deref())?;
    // the run reads the file's values alone: open the store with exactly those
    let run_settings = creds.settings().map_err(|e| format!("{address}: {e}"))?;
    let client =
        super::source::NetArgs::default().store_client_with(&run_settings, &address.root)?;
    if job.verify_boot {
        osimage::check_schedule_verify_boot(&client.endpoint())?;
    }
    // the key file (encrypted store) checked and tried now, as every run will
    osimage::open_schedule_store(job, client)
        .map_err(|e| said(&e, format!("schedule into {address}")))?;
    Ok(Some(creds))
}

/// `e` said after `context`, still a usage error when it is one.
fn said(e: &osimage::ScheduleError, context: String) -> Failure {
    let msg = format!("{context}: {e}");
    if e.is_usage() {
        UsageError(msg).into()
    } else {
        msg.into()
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
    // a directory's --recipient keys and files read now, as every run will
    osimage::schedule_lock(&job)?;
    let creds = store_credentials(&job)?;
    let store_note = job.dest.store().map(|address| {
        format!(
            "each run captures into {address} and forgets its versions beyond --keep {}; their \
             space comes back when `osimage store prune {}` runs (it takes a Prune lock and \
             deletes only after its grace period)",
            job.keep, address.root
        )
    });
    if a.dry_run {
        dry_run(&sys, &a.every, job, &exe, a.force, creds.as_ref())?;
        if let Some(n) = store_note {
            println!("{n}");
        }
        return Ok(0);
    }
    let r = osimage::install_schedule(&sys, &a.every, job, &exe, a.force, creds.as_ref())?;
    for p in &r.written {
        println!("wrote {}", p.display());
    }
    if let Some(n) = store_note {
        println!("{n}");
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

/// `install --dry-run`: every file with its path and text (secrets masked); nothing is
/// created.
fn dry_run(
    sys: &System,
    every: &str,
    job: Job,
    exe: &Path,
    force: bool,
    creds: Option<&StoreCredentials>,
) -> Result<i32, Failure> {
    let dest = job.dest.clone();
    let plan = osimage::plan_schedule(sys, every, job, exe, force, creds)?;
    if plan.replaces {
        println!("would replace the installed schedule of that name");
    }
    if let Dest::Dir(d) = &dest
        && !d.is_dir()
    {
        println!("would create {} (mode 0700)", d.display());
    }
    for f in &plan.files {
        // files anyone may read as before; the credentials file says its mode and the mask
        let note = match (f.mode, f.shown.is_some()) {
            (0o644, false) => String::new(),
            (mode, masked) => format!(
                " (mode {mode:04o}{})",
                if masked {
                    "; the secret masked here"
                } else {
                    ""
                }
            ),
        };
        println!("would write {}{note}:\n{}", f.path.display(), f.shown());
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
            j.dest,
            j.keep,
            match (&l.latest, &j.dest) {
                (Some(p), _) => p.display().to_string(),
                (None, Dest::Store(_)) => "the series' newest version".into(),
                (None, Dest::Dir(_)) => "none yet".into(),
            }
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
    let config_path = || {
        loaded
            .path
            .as_deref()
            .unwrap_or(Path::new(super::config::DEFAULT_PATH))
            .display()
            .to_string()
    };
    let missing = |flag: &str, key: &str| {
        UsageError(format!(
            "give {flag}, or {key} in the configuration file ({}; CONFIG.md in /usr/share/doc/osimage)",
            config_path()
        ))
    };
    let dest = a
        .dest
        .or_else(|| cfg.destination.dir.as_ref().map(|d| d.0.clone()))
        .ok_or_else(|| missing("--dest DIR", "destination.dir"))?;
    let dest = Dest::parse(&dest).map_err(UsageError)?;
    if let Dest::Store(address) = &dest {
        // a store holds versions; `export` makes an ISO of one
        let given = match (a.format.is_some(), cfg.destination.format.is_some()) {
            (true, _) => Some("--format".to_string()),
            (false, true) => Some(format!("destination.format of {}", config_path())),
            (false, false) => None,
        };
        if let Some(given) = given {
            return Err(UsageError(format!(
                "{given} does not apply to a store: {address} holds versions, not image files; \
                 `osimage export {address} -o FILE.iso` makes an ISO of its newest version"
            ))
            .into());
        }
    }
    let format: osimage::ImageFormat = match a.format {
        Some(f) => f.into(),
        None => cfg.destination.format.unwrap_or(osimage::ImageFormat::Iso),
    };
    if a.verify_boot && dest.dir().is_some() && format != osimage::ImageFormat::Iso {
        return Err(UsageError(
            "--verify-boot needs --format iso (a payload image has no rescue environment \
             to boot)"
                .into(),
        )
        .into());
    }
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
    let dest = match dest {
        Dest::Dir(d) => Dest::Dir(abs(&d)?),
        store => store,
    };
    if use_ == Use::Install && a.credentials.is_some() {
        return Err(UsageError(
            "--credentials is for the runs: install writes the file from the S3 settings it \
             finds (AWS_* variables or a profile)"
                .into(),
        )
        .into());
    }
    Ok(Job {
        name,
        dest,
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
        credentials: match &a.credentials {
            Some(c) => Some(abs(c)?),
            None => None,
        },
        identity: a.identity.as_deref().map(abs).transpose()?,
        passphrase_file: a.passphrase_file.as_deref().map(abs).transpose()?,
        recipients: a.recipient,
        recipient_files: a
            .recipient_file
            .iter()
            .map(|f| abs(f))
            .collect::<Result<_, _>>()?,
    })
}
