//! Step 2 of a prune (docs/STORE.md §5.2): sweep an earlier condemnation once it is older
//! than the grace and no lock it waits for is fresh. The order is the argument's: LIST the
//! locks, then the pins and versions (so every version or pin a waited-for writer made is
//! seen), rescue what they use, PUT replacement index objects, DELETE the versions, packs and
//! blobs, then the replaced index objects, merge the index objects when there are more than
//! 64 (`consolidate`), and PUT `.swept` last.

use std::collections::HashSet;
use std::time::Duration;

use super::{Referenced, Say, referenced};
use crate::store::locks::shown_duration;
use crate::store::names;
use crate::store::objects::{IndexPack, StoreIndex, Swept};
use crate::store::prune::state::ListedCondemnation;
use crate::store::{Store, StoreError, StoreTimes};

/// What came of trying to sweep one condemnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not yet: why (too young, or the locks it waits for).
    Deferred(String),
    /// Swept (or, in a dry run, what a sweep would do now).
    Swept {
        swept: Swept,
        /// Index objects replaced by ones without the deleted packs.
        replaced_index: u64,
    },
}

/// Sweeps the condemnation `c` (listed at the server time `now`) when it may be swept;
/// `dry_run` decides everything and changes nothing.
pub(super) fn try_sweep(
    store: &Store,
    c: &ListedCondemnation,
    now: chrono::DateTime<chrono::Utc>,
    grace: Duration,
    times: &StoreTimes,
    dry_run: bool,
    say: Say<'_>,
) -> Result<Outcome, StoreError> {
    let shown = store.shown(&names::condemnation_key(&c.id));
    let Some(made) = c.made else {
        return Ok(Outcome::Deferred("its condemnation is gone".into()));
    };
    let age = (now - made).to_std().unwrap_or(Duration::ZERO);
    if age < grace {
        return Ok(Outcome::Deferred(format!(
            "made {} ago, swept after {}",
            shown_duration(age),
            shown_duration(grace)
        )));
    }
    let Some(wait) = store.read_wait(&c.id)? else {
        return Ok(Outcome::Deferred("it has no wait list".into()));
    };
    // (b): none of the locks present at the condemnation is still there and fresh.
    let waited: HashSet<[u8; 16]> = wait.ids().into_iter().collect();
    let fresh: Vec<String> = store
        .list_locks(times)?
        .into_iter()
        .filter(|l| !l.stale && waited.contains(&l.id))
        .map(|l| names::lock_key(&l.id))
        .collect();
    if !fresh.is_empty() {
        return Ok(Outcome::Deferred(format!(
            "waiting for {} still held: {}",
            if fresh.len() == 1 { "a lock" } else { "locks" },
            fresh.join(", ")
        )));
    }
    let Some(condemned) = store.read_condemnation(&c.id)? else {
        return Ok(Outcome::Deferred("its condemnation is gone".into()));
    };
    // After the LIST of locks: pins and versions, and the heads of every version this
    // condemnation does not delete (a version another unswept condemnation holds counts
    // too: a pin may still rescue it, and then it needs its packs).
    let pins = store.list_pins()?;
    let listed = store.list_versions(None)?;
    let mine: HashSet<&str> = condemned.versions.iter().map(String::as_str).collect();
    let mut rescued_versions = HashSet::new();
    let mut keep = Vec::new();
    for v in &listed {
        let key = v.key();
        if mine.contains(key.as_str()) {
            if !pins.keeps(&v.dir, &v.version) {
                continue;
            }
            rescued_versions.insert(key);
        }
        keep.push(v.clone());
    }
    let Referenced { packs, blobs, .. } = referenced(store, &keep)?;
    let doomed_versions: Vec<&String> = condemned
        .versions
        .iter()
        .filter(|v| !rescued_versions.contains(*v))
        .collect();
    let doomed_packs: HashSet<[u8; 32]> = condemned
        .packs
        .iter()
        .filter(|p| !packs.contains(*p))
        .copied()
        .collect();
    let doomed_blobs: Vec<&String> = condemned
        .blobs
        .iter()
        .filter(|b| !blobs.contains(*b))
        .collect();
    let total = condemned.versions.len() + condemned.packs.len() + condemned.blobs.len();
    let deleted = doomed_versions.len() + doomed_packs.len() + doomed_blobs.len();
    let rescued = (total - deleted) as u64;
    let swept = Swept {
        deleted: deleted as u64,
        rescued,
    };
    // Index objects naming a pack about to go: a replacement with their other packs first.
    let mut replaced = Vec::new();
    for name in store.list_index()? {
        let index = store.get_index(&name)?;
        // Condemnations hold the packs' object names (`Store::pack_object`).
        let doomed = |p: &IndexPack| doomed_packs.contains(&store.pack_object(&p.id));
        if !index.packs.iter().any(doomed) {
            continue;
        }
        let rest: Vec<IndexPack> = index.packs.into_iter().filter(|p| !doomed(p)).collect();
        if !dry_run && !rest.is_empty() {
            store.put_index(&StoreIndex { packs: rest })?;
        }
        replaced.push(name);
    }
    if dry_run {
        return Ok(Outcome::Swept {
            swept,
            replaced_index: replaced.len() as u64,
        });
    }
    say(&format!(
        "sweeping {shown}: {} to delete, {rescued} rescued",
        deleted
    ));
    // In §5.2's order, each group by DeleteObjects (1,000 keys per request).
    let key = |rel: &str| store.root.key(rel);
    let versions: Vec<String> = doomed_versions.iter().map(|v| key(v)).collect();
    store.client.delete_many(&versions)?;
    let mut data: Vec<String> = doomed_packs
        .iter()
        .map(|p| key(&names::pack_key(p)))
        .collect();
    data.extend(doomed_blobs.iter().map(|b| key(b)));
    store.client.delete_many(&data)?;
    let indexes: Vec<String> = replaced.iter().map(|n| key(&names::index_key(n))).collect();
    store.client.delete_many(&indexes)?;
    let merged = super::consolidate::consolidate(store)?;
    if merged > 0 {
        say(&format!("{merged} index objects merged (§5.3)"));
    }
    store.put_swept(&c.id, &swept)?;
    Ok(Outcome::Swept {
        swept,
        replaced_index: replaced.len() as u64,
    })
}

/// Housekeeping after the sweeps (§5.2): condemnations swept more than `keep_swept` ago go
/// with their wait list and sweep record; one without a wait list, older than the stale
/// window (its prune died between the two PUTs: its lock would be stale by now), goes as
/// never made; a wait list or sweep record without its condemnation goes too. Returns how
/// many condemnations were removed.
pub(super) fn clean_up(
    store: &Store,
    listing: &super::state::PruneListing,
    keep_swept: Duration,
    times: &StoreTimes,
    dry_run: bool,
) -> Result<u64, StoreError> {
    let old = |t: chrono::DateTime<chrono::Utc>, window: Duration| {
        (listing.now - t).to_std().unwrap_or(Duration::ZERO) > window
    };
    let mut removed = 0;
    for c in &listing.condemnations {
        let gone = match (c.made, c.wait, c.swept) {
            (_, _, Some(swept)) => old(swept, keep_swept),
            (Some(made), false, None) => old(made, times.stale.max(times.grace)),
            (None, _, None) => true,
            _ => false,
        };
        if !gone {
            continue;
        }
        removed += 1;
        if dry_run {
            continue;
        }
        // The condemnation first: once it is gone, the rest is an orphan cleaned up later.
        store.delete_object(&names::condemnation_key(&c.id))?;
        store.delete_object(&names::wait_key(&c.id))?;
        store.delete_object(&names::swept_key(&c.id))?;
    }
    Ok(removed)
}
