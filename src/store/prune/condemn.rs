//! Steps 3 and 4 of a prune (docs/STORE.md §5.2): forget by the retention rules, then condemn
//! the forgotten versions and every pack and rescue blob no remaining version uses — in one
//! `prune/<id>`, **then** a LIST of `locks/` for its wait list (the PUT-then-LIST order that
//! protects a capture running meanwhile).

use std::collections::{BTreeMap, HashSet};

use super::state::{Pending, Pins, to_utc};
use super::{Referenced, referenced};
use crate::store::names::{self, PACKS, RESCUE};
use crate::store::objects::{Condemnation, Wait};
use crate::store::retention::{self, Candidate, Decision, Policy};
use crate::store::{ListedVersion, ObjectError, Store, StoreError};

/// The decisions of the retention rules for one series, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesDecisions {
    pub series: String,
    pub decisions: Vec<Decision>,
}

/// Step 3: the rules applied to the versions of `chosen` (every series when `None`) that no
/// unswept condemnation holds. Reads their heads (for `created` and the tags).
pub(super) fn forget(
    store: &Store,
    policy: &Policy,
    chosen: Option<&[String]>,
    listed: &[ListedVersion],
    pending: &Pending,
    pins: &Pins,
) -> Result<Vec<SeriesDecisions>, StoreError> {
    let condemned = pending.versions();
    let mut by_series: BTreeMap<&str, Vec<Candidate>> = BTreeMap::new();
    for v in listed {
        if chosen.is_some_and(|c| !c.contains(&v.series)) {
            continue;
        }
        if condemned.contains_key(v.key().as_str()) {
            continue;
        }
        let head = store.read_head(&v.series, &v.version)?;
        by_series.entry(&v.series).or_default().push(Candidate {
            version: v.version.clone(),
            created: to_utc(head.created),
            tags: head.tags,
            pinned: pins.keeps(&v.dir, &v.version),
        });
    }
    Ok(by_series
        .into_iter()
        .map(|(series, c)| SeriesDecisions {
            series: series.to_string(),
            decisions: retention::apply(policy, &c),
        })
        .collect())
}

/// Step 4's candidates: `forgotten` (version keys), and the packs and blobs that no version
/// outside every condemnation uses (a pinned one counts: a sweep will rescue it), less what
/// unswept condemnations hold already.
pub(super) fn candidates(
    store: &Store,
    forgotten: &[String],
    listed: &[ListedVersion],
    pending: &Pending,
    pins: &Pins,
) -> Result<Condemnation, StoreError> {
    // The LISTs of packs and blobs first: a pack uploaded after them is not a candidate.
    let packs = list_ids(store, PACKS, names::parse_pack_key)?;
    let blobs = list_ids(store, RESCUE, |rel| {
        names::parse_rescue_key(rel).map(|_| ())
    })?;
    let earlier = pending.versions();
    let forgotten_set: HashSet<&str> = forgotten.iter().map(String::as_str).collect();
    let remaining: Vec<ListedVersion> = listed
        .iter()
        .filter(|v| {
            let key = v.key();
            let condemned =
                forgotten_set.contains(key.as_str()) || earlier.contains_key(key.as_str());
            !condemned || pins.keeps(&v.dir, &v.version)
        })
        .cloned()
        .collect();
    let Referenced {
        packs: used_packs,
        blobs: used_blobs,
    } = referenced(store, &remaining)?;
    let held_packs = pending.packs();
    let held_blobs = pending.blobs();
    Ok(Condemnation {
        versions: forgotten.to_vec(),
        packs: packs
            .into_iter()
            .map(|(_, id)| id)
            .filter(|id| !used_packs.contains(id) && !held_packs.contains(id))
            .collect(),
        blobs: blobs
            .into_iter()
            .map(|(rel, ())| rel)
            .filter(|b| !used_blobs.contains(b) && !held_blobs.contains(b))
            .collect(),
        versions_seen: listed.len() as u64,
    })
}

/// PUTs `c`, **then** LISTs the locks and PUTs the wait list with every lock but `own`
/// (this prune's, relative to the store). Returns the condemnation's id.
pub(super) fn condemn(
    store: &Store,
    c: &Condemnation,
    own: Option<&str>,
) -> Result<[u8; 16], StoreError> {
    let id = store.put_condemnation(c)?;
    // Every lock, fresh or stale: a stale one is as stale at the sweep, or gone.
    let listing = store.client.list(&store.root.key(names::LOCKS))?;
    let mut locks = Vec::new();
    for o in listing.objects {
        let rel = store.root.listed_relative(&o.key)?;
        names::parse_lock_key(rel).map_err(|e| ObjectError::new(&store.shown(rel), e))?;
        if Some(rel) != own {
            locks.push(rel.to_string());
        }
    }
    store.put_wait(&id, &Wait { locks })?;
    Ok(id)
}

/// The keys under `prefix` (relative to the store) with what `parse` makes of each; a key
/// it refuses is an error naming the object.
fn list_ids<T>(
    store: &Store,
    prefix: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<(String, T)>, StoreError> {
    let listing = store.client.list(&store.root.key(prefix))?;
    let mut out = Vec::with_capacity(listing.objects.len());
    for o in listing.objects {
        let rel = store.root.listed_relative(&o.key)?;
        let v = parse(rel).map_err(|e| ObjectError::new(&store.shown(rel), e))?;
        out.push((rel.to_string(), v));
    }
    Ok(out)
}
