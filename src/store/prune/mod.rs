//! `store prune` (docs/STORE.md §5.2): condemn now, sweep later. In order: make sure no other
//! prune runs (the caller holds this prune's lock), sweep earlier condemnations whose grace
//! has passed and whose waited-for locks are gone (`sweep`), forget by the retention rules
//! and condemn what nothing else uses (`condemn`), and with `--wait` sweep this run's
//! condemnation as soon as it may be. What earlier prunes left is read by `state`, which
//! captures and readers use too.
//!
//! Nothing is deleted the moment a rule is applied: a forgotten version is gone for new
//! readers at once (they skip or refuse it) and deleted by a later sweep, when every lock
//! present at its condemnation is gone.

pub mod by_hand;
pub mod condemn;
pub mod consolidate;
pub mod forgotten;
pub mod state;
pub mod sweep;

use std::collections::HashSet;
use std::time::Duration;

use crate::store::locks::HeldLock;
use crate::store::names;
use crate::store::objects::{Condemnation, LockKind};
use crate::store::retention::Policy;
use crate::store::{ListedVersion, Store, StoreError, StoreTimes};

pub use condemn::SeriesDecisions;
pub use forgotten::Forgotten;
pub use state::{ListedCondemnation, ListedPin, Pending, Pins, PruneListing};
pub use sweep::Outcome;

/// Where a prune tells what it does, line by line.
pub type Say<'a> = &'a mut dyn FnMut(&str);

/// Condemnations swept longer ago than this are deleted (§5.2).
pub const KEEP_SWEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What `store prune` was asked.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub policy: Policy,
    /// The series the rules apply to; `None`: every series (`--all`).
    pub series: Option<Vec<String>>,
    pub dry_run: bool,
    /// How old a condemnation must be to be swept.
    pub grace: Duration,
    /// Sweep this run's condemnation before returning.
    pub wait: bool,
    pub times: StoreTimes,
}

/// What a prune did.
#[derive(Clone, Debug, Default)]
pub struct PruneSummary {
    /// Earlier condemnations swept (ids) and their records.
    pub swept: Vec<([u8; 16], Outcome)>,
    pub decisions: Vec<SeriesDecisions>,
    /// This run's condemnation: its id (none in a dry run) and what it holds.
    pub condemned: Option<(Option<[u8; 16]>, Condemnation)>,
    /// This run's condemnation swept (with `--wait`).
    pub swept_own: Option<Outcome>,
    pub expired_pins: u64,
}

/// Stops when another prune holds a fresh lock (§5.1 "one prune at a time"). `own` is this
/// prune's lock; both stop when both see each other, and nothing was changed yet.
pub fn check_one_prune(
    store: &Store,
    own: &HeldLock,
    times: &StoreTimes,
) -> Result<(), StoreError> {
    for l in store.list_locks(times)? {
        if l.stale || store.shown(&names::lock_key(&l.id)) == own.shown() {
            continue;
        }
        let Some(lock) = store.read_lock(&l.id)? else {
            continue;
        };
        if lock.kind == LockKind::Prune {
            return Err(StoreError::Refused(format!(
                "another prune is running: host {}, pid {}, since {} ({})",
                lock.host,
                lock.pid,
                state::to_utc(lock.started).format("%Y-%m-%dT%H:%M:%SZ"),
                store.shown(&names::lock_key(&l.id))
            )));
        }
    }
    Ok(())
}

/// Runs a prune of `store` as `opts` says, holding `own` (its Prune lock; `None` only in a
/// dry run, which changes nothing). `say` hears each step.
pub fn prune(
    store: &Store,
    opts: &PruneOptions,
    own: Option<&HeldLock>,
    say: Say<'_>,
) -> Result<PruneSummary, StoreError> {
    let own_rel = own.map(|l| {
        let shown = l.shown();
        shown
            .strip_prefix(&store.shown(""))
            .unwrap_or(shown)
            .to_string()
    });
    if !opts.dry_run && own.is_none() {
        return Err(StoreError::Unsupported(
            "internal: a prune that changes the store runs under its lock".into(),
        ));
    }
    if let Some(own) = own {
        check_one_prune(store, own, &opts.times)?;
    }
    let mut summary = PruneSummary::default();
    // Step 2: earlier condemnations, oldest first.
    let listing = store.list_condemnations()?;
    for c in listing
        .condemnations
        .iter()
        .filter(|c| c.unswept() && c.wait)
    {
        let out = sweep::try_sweep(
            store,
            c,
            listing.now,
            opts.grace,
            &opts.times,
            opts.dry_run,
            say,
        )?;
        say(&sweep_line(store, &c.id, &out, opts.dry_run));
        summary.swept.push((c.id, out));
    }
    let listing = store.list_condemnations()?;
    let cleaned = sweep::clean_up(store, &listing, KEEP_SWEPT, &opts.times, opts.dry_run)?;
    if cleaned > 0 {
        say(&format!(
            "{} {cleaned} finished or abandoned condemnation(s)",
            if opts.dry_run {
                "would delete"
            } else {
                "deleted"
            }
        ));
    }
    // Step 3: forget.
    let pending = store.pending()?;
    let pins = store.list_pins()?;
    for id in pins.expired() {
        summary.expired_pins += 1;
        if !opts.dry_run {
            store.delete_object(&names::pin_key(&id))?;
        }
    }
    let listed = store.list_versions(None)?;
    summary.decisions = condemn::forget(
        store,
        &opts.policy,
        opts.series.as_deref(),
        &listed,
        &pending,
        &pins,
    )?;
    let forgotten: Vec<String> = summary
        .decisions
        .iter()
        .flat_map(|s| {
            s.decisions
                .iter()
                .filter(|d| !d.keep())
                .map(|d| store.version_rel(&s.series, &d.version))
        })
        .collect();
    // Step 4: condemn.
    let c = condemn::candidates(store, &forgotten, &listed, &pending, &pins)?;
    if c.is_empty() {
        say("nothing to condemn");
        return Ok(summary);
    }
    if opts.dry_run {
        summary.condemned = Some((None, c));
        return Ok(summary);
    }
    let id = condemn::condemn(store, &c, own_rel.as_deref())?;
    say(&format!(
        "condemned {}: {} version(s), {} pack(s), {} rescue blob(s)",
        store.shown(&names::condemnation_key(&id)),
        c.versions.len(),
        c.packs.len(),
        c.blobs.len()
    ));
    summary.condemned = Some((Some(id), c));
    // Step 5.
    if opts.wait {
        summary.swept_own = Some(wait_for_sweep(store, &id, opts, say)?);
    }
    Ok(summary)
}

/// `--wait`: tries this run's sweep every `prune_poll` until it is done.
fn wait_for_sweep(
    store: &Store,
    id: &[u8; 16],
    opts: &PruneOptions,
    say: Say<'_>,
) -> Result<Outcome, StoreError> {
    let mut said = String::new();
    loop {
        let listing = store.list_condemnations()?;
        let Some(c) = listing.condemnations.iter().find(|c| c.id == *id) else {
            return Err(StoreError::Unsupported(format!(
                "{}: gone before it was swept",
                store.shown(&names::condemnation_key(id))
            )));
        };
        let out = sweep::try_sweep(store, c, listing.now, opts.grace, &opts.times, false, say)?;
        let line = sweep_line(store, id, &out, false);
        if let Outcome::Swept { .. } = out {
            say(&line);
            return Ok(out);
        }
        if line != said {
            say(&line);
            said = line;
        }
        std::thread::sleep(opts.times.prune_poll);
    }
}

/// One line on a sweep's outcome.
fn sweep_line(store: &Store, id: &[u8; 16], out: &Outcome, dry_run: bool) -> String {
    let shown = store.shown(&names::condemnation_key(id));
    match out {
        Outcome::Deferred(why) => format!("{shown}: not swept yet ({why})"),
        Outcome::Swept {
            swept,
            replaced_index,
        } => format!(
            "{shown}: {} {} object(s), {} rescued, {replaced_index} index object(s) replaced",
            if dry_run {
                "would delete"
            } else {
                "swept: deleted"
            },
            swept.deleted,
            swept.rescued
        ),
    }
}

/// The packs and rescue blobs some versions use.
#[derive(Clone, Debug, Default)]
pub(crate) struct Referenced {
    pub packs: HashSet<[u8; 32]>,
    pub blobs: HashSet<String>,
}

/// What `versions` use, from their heads (one read each): packs by their object names
/// (`Store::pack_object`, what a LIST of `packs/` and a condemnation hold), blobs by key.
pub(crate) fn referenced(
    store: &Store,
    versions: &[ListedVersion],
) -> Result<Referenced, StoreError> {
    let mut out = Referenced::default();
    for v in versions {
        let head = store.read_head(&v.series, &v.version)?;
        out.packs
            .extend(head.packs.iter().map(|id| store.pack_object(id)));
        if let Some(r) = &head.rescue {
            out.blobs.insert(r.kernel.object.clone());
            out.blobs.insert(r.initrd_core.object.clone());
            if let Some(n) = &r.net_part {
                out.blobs.insert(n.object.clone());
            }
        }
    }
    Ok(out)
}
