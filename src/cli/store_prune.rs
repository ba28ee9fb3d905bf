//! `osimage store prune` (docs/STORE.md §5.2, §5.4): parsing the retention flags, holding the
//! Prune lock (deleted at the end, on failure and on SIGINT/SIGTERM/SIGHUP as a capture's
//! is), and printing each version's decision. The work is `osimage::store::prune`.

use clap::{Args, ValueEnum};
use osimage::Interrupts;
use osimage::store::objects::LockKind;
use osimage::store::prune::{self, PruneOptions, PruneSummary};
use osimage::store::retention::{self, Policy, Zone};
use osimage::store::{Store, StoreTimes, names};

use super::progress::TermProgress;
use super::{Failure, UsageError, show, source};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The store: s3://BUCKET/PREFIX.
    pub store: String,
    /// Keep the N newest versions of each series.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest version of each of the N most recent hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest version of each of the N most recent days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest version of each of the N most recent ISO weeks (Monday to Sunday)
    /// that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest version of each of the N most recent months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest version of each of the N most recent years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every version at most DURATION older than the series' newest (36h, 14d, 2w, 1y).
    #[arg(long, value_name = "DURATION", value_parser = retention::parse_within)]
    pub keep_within: Option<std::time::Duration>,
    /// Keep every version tagged TAG (repeatable).
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Apply the rules to series NAME only (repeatable).
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub series: Vec<String>,
    /// Apply the rules to every series of the store (needed without --series when a rule
    /// is given, so a store-wide forget is deliberate).
    #[arg(long)]
    pub all: bool,
    /// Do not keep a series' newest version for being the newest.
    #[arg(long)]
    pub forget_all: bool,
    /// The calendar of the hourly to yearly rules.
    #[arg(long, value_enum, default_value = "utc", value_name = "ZONE")]
    pub tz: TzChoice,
    /// Print each version's decision and what would be condemned and swept; change nothing
    /// (and take no lock).
    #[arg(long)]
    pub dry_run: bool,
    /// Sweep a condemnation only once it is this old (ms, s, m, h; at most 24h)
    /// [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = osimage::store::parse_window)]
    pub grace: Option<std::time::Duration>,
    /// Wait until this run's condemnation is swept (tried every minute while locks it
    /// waits for are held, or its grace has not passed).
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (For an encrypted store: its passphrase or an age identity, STORE.md §6.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

/// `--tz`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TzChoice {
    Utc,
    Local,
}

impl PruneArgs {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tags.clone(),
            forget_all: self.forget_all,
            zone: match self.tz {
                TzChoice::Utc => Zone::Utc,
                TzChoice::Local => Zone::Local,
            },
        }
    }
}

pub fn prune(a: PruneArgs, p: &TermProgress) -> Result<i32, Failure> {
    let policy = a.policy();
    for s in &a.series {
        names::check_series(s).map_err(|e| UsageError(format!("--series {s}: {e}")))?;
    }
    if policy.has_rules() && a.series.is_empty() && !a.all {
        return Err(UsageError(format!(
            "{}: retention rules forget versions; name the series (--series NAME) or give \
             --all to apply them to every series",
            a.store
        ))
        .into());
    }
    let times = StoreTimes::from_env()?;
    let opts = PruneOptions {
        policy,
        series: (!a.series.is_empty()).then(|| a.series.clone()),
        dry_run: a.dry_run,
        grace: a.grace.unwrap_or(times.grace),
        wait: a.wait,
        times,
    };
    let (client, root) = super::store::client_for(&a.store, &a.net)?;
    let store = Store::open_unlocked(client, root, &a.keys.unlock()?)?;
    let mut say = |line: &str| p.say(line);
    let summary = if a.dry_run {
        prune::prune(&store, &opts, None, &mut say)?
    } else {
        let interrupts = Interrupts::start();
        let lock = store.take_lock(LockKind::Prune, None)?;
        let _unlock = interrupts.on_interrupt(lock.shown().to_string(), lock.releaser());
        let summary = prune::prune(&store, &opts, Some(&lock), &mut say)?;
        lock.release()?;
        summary
    };
    for line in summary_lines(&summary, a.dry_run) {
        println!("{line}");
    }
    Ok(0)
}

/// Each series' versions with their decisions, then what was (or would be) condemned.
pub fn summary_lines(s: &PruneSummary, dry_run: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for series in &s.decisions {
        lines.push(series.series.clone());
        for d in &series.decisions {
            lines.push(format!("  {}  {}", d.version, d.shown()));
        }
    }
    if s.expired_pins > 0 {
        lines.push(format!(
            "{} {}",
            if dry_run { "would delete" } else { "deleted" },
            show::count(s.expired_pins, "expired pin", "expired pins")
        ));
    }
    match &s.condemned {
        None => lines.push("nothing condemned".into()),
        Some((_, c)) => lines.push(format!(
            "{}: {}, {}, {}",
            if dry_run {
                "would condemn"
            } else {
                "condemned"
            },
            show::count(c.versions.len() as u64, "version", "versions"),
            show::count(c.packs.len() as u64, "pack", "packs"),
            show::count(c.blobs.len() as u64, "rescue blob", "rescue blobs"),
        )),
    }
    lines
}
