//! Retention by hand (docs/STORE.md §5.6, §9.3): `store forget` condemns named versions — gone
//! for new readers at once, deleted by the next sweep, their data by a later prune — and
//! `store pin`/`unpin` keep a version until a time whatever the rules say. A pin made before
//! the sweep of a condemnation that holds its version rescues it.

use chrono::{DateTime, Utc};

use super::state::Pins;
use crate::format::manifest::Timestamp;
use crate::store::locks::HeldLock;
use crate::store::objects::{Condemnation, Pin};
use crate::store::{Store, StoreError, names};

/// Condemns `versions` (series, version) of `store`, holding `own` (a Prune lock: one prune
/// or forget at a time). Refused, before anything is written, for a version that does not
/// exist, is forgotten already, or is pinned. Returns the condemnation's id.
pub fn forget(
    store: &Store,
    versions: &[(String, String)],
    own: &HeldLock,
    times: &crate::store::StoreTimes,
) -> Result<[u8; 16], StoreError> {
    super::check_one_prune(store, own, times)?;
    let pending = store.pending()?;
    let pins = store.list_pins()?;
    let condemned = pending.versions();
    let mut keys = Vec::new();
    for (series, version) in versions {
        let named = format!("{}/{series}@{version}", store.root);
        let key = store.version_rel(series, version);
        if store.client.head(&store.root.key(&key))?.is_none() {
            return Err(StoreError::Refused(format!("{named}: no such version")));
        }
        if condemned.contains_key(key.as_str()) {
            return Err(StoreError::Refused(format!("{named}: forgotten already")));
        }
        if pins.keeps(&store.series_dir(series), version) {
            return Err(StoreError::Refused(format!(
                "{named}: pinned (osimage store unpin {named} first)"
            )));
        }
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let c = Condemnation {
        versions: keys,
        packs: Vec::new(),
        blobs: Vec::new(),
        versions_seen: versions.len() as u64,
    };
    let own_rel = own
        .shown()
        .strip_prefix(&store.shown(""))
        .map(str::to_string);
    super::condemn::condemn(store, &c, own_rel.as_deref())
}

/// What [`forget_beyond`] decided and wrote.
#[derive(Clone, Debug)]
pub struct ForgotBeyond {
    /// Each version of the series not forgotten before, newest first, with its decision.
    pub decisions: Vec<crate::store::retention::Decision>,
    /// The condemnation holding the forgotten versions; none when nothing was forgotten.
    pub condemnation: Option<[u8; 16]>,
}

/// `--keep-last keep` applied to `series` alone, holding `own` (a Prune lock): its versions
/// beyond the newest `keep` (pinned ones kept, as `store prune` keeps them) are condemned as
/// [`forget`] condemns named versions — versions only; their packs go in a later prune's
/// condemnation. What a scheduled run into a store does after its capture (STORE.md §4.6).
pub fn forget_beyond(
    store: &Store,
    series: &str,
    keep: u32,
    own: &HeldLock,
    times: &crate::store::StoreTimes,
) -> Result<ForgotBeyond, StoreError> {
    if keep == 0 {
        return Err(StoreError::Refused(
            "keeping 0 versions would forget the newest; keep at least 1".into(),
        ));
    }
    super::check_one_prune(store, own, times)?;
    let pending = store.pending()?;
    let pins = store.list_pins()?;
    let listed = store.list_versions(Some(series))?;
    let policy = crate::store::retention::Policy {
        last: Some(keep),
        ..Default::default()
    };
    let chosen = [series.to_string()];
    let decisions =
        super::condemn::forget(store, &policy, Some(&chosen), &listed, &pending, &pins)?
            .into_iter()
            .flat_map(|s| s.decisions)
            .collect::<Vec<_>>();
    let versions: Vec<String> = decisions
        .iter()
        .filter(|d| !d.keep())
        .map(|d| store.version_rel(series, &d.version))
        .collect();
    if versions.is_empty() {
        return Ok(ForgotBeyond {
            decisions,
            condemnation: None,
        });
    }
    let c = Condemnation {
        versions,
        packs: Vec::new(),
        blobs: Vec::new(),
        versions_seen: listed.len() as u64,
    };
    let own_rel = own
        .shown()
        .strip_prefix(&store.shown(""))
        .map(str::to_string);
    let id = super::condemn::condemn(store, &c, own_rel.as_deref())?;
    Ok(ForgotBeyond {
        decisions,
        condemnation: Some(id),
    })
}

/// Pins `series`@`version` until `until` with the reason `why`; the version must exist.
/// Returns the pin's key relative to the store.
pub fn pin(
    store: &Store,
    series: &str,
    version: &str,
    until: DateTime<Utc>,
    why: &str,
) -> Result<String, StoreError> {
    let named = format!("{}/{series}@{version}", store.root);
    let key = store.version_rel(series, version);
    if store.client.head(&store.root.key(&key))?.is_none() {
        return Err(StoreError::Refused(format!("{named}: no such version")));
    }
    let pin = Pin {
        series: series.to_string(),
        version: version.to_string(),
        until: Timestamp {
            sec: until.timestamp(),
            nsec: until.timestamp_subsec_nanos(),
        },
        why: why.to_string(),
    };
    store.put_pin(&pin)
}

/// Deletes every pin of `series`@`version`; returns how many there were.
pub fn unpin(store: &Store, series: &str, version: &str) -> Result<u64, StoreError> {
    let Pins { pins, .. } = store.list_pins()?;
    let mut n = 0;
    for p in pins {
        if p.pin
            .as_ref()
            .is_ok_and(|p| p.series == series && p.version == version)
        {
            store.delete_object(&names::pin_key(&p.id))?;
            n += 1;
        }
    }
    Ok(n)
}
