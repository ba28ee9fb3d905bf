//! `store ls --json` (docs/JSON.md): the store, its series and their versions, with -l
//! what each version's head says, and with --stats its counts and locks. Built from the store's types here, never by serializing
//! them, so a change to the store format cannot change the document unnoticed.

use serde::Serialize;

use osimage::store::objects::{Pin, VersionHead};
use osimage::store::prune::{Forgotten, Pins};
use osimage::store::{ListedVersion, LockStatus, Store, StoreStats, names};

use super::{nanos, rfc3339};

#[derive(Serialize)]
pub struct StoreListing {
    pub store: String,
    pub store_id: String,
    pub created: String,
    pub pack_size: u32,
    pub series: Vec<Series>,
    /// With --stats: counts and locks; `null` without.
    pub stats: Option<Stats>,
}

#[derive(Serialize)]
pub struct Stats {
    pub packs: u64,
    pub pack_bytes: u64,
    pub index_objects: u64,
    pub locks: Vec<LockJson>,
    /// Condemnations made and not yet swept (STORE.md §5.2).
    pub condemnations_pending: u64,
}

#[derive(Serialize)]
pub struct LockJson {
    /// The object's key relative to the store: `locks/<32 hex>`.
    pub name: String,
    /// The server's time of its last refresh.
    pub refreshed: String,
    /// Seconds from that refresh to the listing's server time.
    pub age_s: u64,
    pub stale: bool,
    /// `capture`, `import`, `read` or `prune`; `null` when the lock does not decode.
    pub kind: Option<&'static str>,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub started: Option<String>,
    pub series: Option<String>,
    /// Why the lock does not decode; `null` when it does.
    pub problem: Option<String>,
}

/// `--stats`'s part of the document.
pub fn stats(s: &StoreStats) -> Stats {
    Stats {
        packs: s.packs,
        pack_bytes: s.pack_bytes,
        index_objects: s.index_objects,
        locks: s.locks.iter().map(lock).collect(),
        condemnations_pending: 0,
    }
}

fn lock(l: &LockStatus) -> LockJson {
    let h = l.holder.as_ref().ok();
    LockJson {
        name: names::lock_key(&l.listed.id),
        refreshed: l
            .listed
            .last_modified
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        age_s: l.listed.age.as_secs(),
        stale: l.listed.stale,
        kind: h.map(|h| h.kind.name()),
        host: h.map(|h| h.host.clone()),
        pid: h.map(|h| h.pid),
        started: h.map(|h| rfc3339(h.started)),
        series: h.and_then(|h| h.series.clone()),
        problem: l.holder.as_ref().err().cloned(),
    }
}

#[derive(Serialize)]
pub struct Series {
    pub name: String,
    pub versions: Vec<Version>,
}

#[derive(Serialize)]
pub struct Version {
    pub version: String,
    /// The version object's length.
    pub size: u64,
    /// Condemned by a prune and not pinned: gone for readers, deleted by a later sweep.
    pub forgotten: bool,
    /// With -l: what its head says; `null` without.
    pub head: Option<Head>,
    /// The pins that keep it (their time not passed by the server's clock), oldest first.
    pub pins: Vec<PinJson>,
}

/// One pin of a version (STORE.md §2.7, §9.3).
#[derive(Serialize)]
pub struct PinJson {
    /// RFC 3339, UTC.
    pub until: String,
    pub why: String,
}

/// The pins of `series`@`version` whose time has not passed, by `until`.
pub fn pins_of(pins: &Pins, series: &str, version: &str) -> Vec<PinJson> {
    let mut kept: Vec<&Pin> = pins
        .pins
        .iter()
        .filter_map(|p| p.pin.as_ref().ok())
        .filter(|p| p.series == series && p.version == version)
        .filter(|p| {
            (p.until.sec, p.until.nsec) > (pins.now.timestamp(), pins.now.timestamp_subsec_nanos())
        })
        .collect();
    kept.sort_by_key(|p| (p.until.sec, p.until.nsec));
    kept.into_iter()
        .map(|p| PinJson {
            until: rfc3339(p.until),
            why: p.why.clone(),
        })
        .collect()
}

#[derive(Serialize)]
pub struct Head {
    pub image_id: String,
    pub created: String,
    pub created_ns: Option<i64>,
    pub hostname: String,
    pub os_release: String,
    pub tool_version: String,
    pub parent: Option<String>,
    pub entries: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub stored_bytes: u64,
    pub new_bytes: u64,
    pub packs: usize,
    pub kernel_version: Option<String>,
    pub tags: Vec<String>,
}

fn head(h: &VersionHead) -> Head {
    let s = &h.summary;
    Head {
        image_id: names::hex(&h.image_id),
        created: rfc3339(h.created),
        created_ns: nanos(h.created),
        hostname: h.hostname.clone(),
        os_release: h.os_release.clone(),
        tool_version: h.tool_version.clone(),
        parent: h.parent.clone(),
        entries: s.entries,
        files: s.files,
        file_bytes: s.file_bytes,
        stored_bytes: s.stored_bytes,
        new_bytes: s.new_bytes,
        packs: h.packs.len(),
        kernel_version: h.rescue.as_ref().map(|r| r.kernel_version.clone()),
        tags: h.tags.clone(),
    }
}

/// The document of `store ls`: `versions` in listing order (by series, oldest first),
/// `heads` beside them (all `None` without -l), `stats` with --stats.
pub fn listing(
    store: &Store,
    versions: &[ListedVersion],
    heads: &[Option<VersionHead>],
    forgotten: &Forgotten,
    pins: &Pins,
    stats: Option<Stats>,
) -> StoreListing {
    let mut series: Vec<Series> = Vec::new();
    for (v, h) in versions.iter().zip(heads) {
        if series.last().is_none_or(|s| s.name != v.series) {
            series.push(Series {
                name: v.series.clone(),
                versions: Vec::new(),
            });
        }
        if let Some(s) = series.last_mut() {
            s.versions.push(Version {
                version: v.version.clone(),
                size: v.size,
                forgotten: forgotten.when(&v.dir, &v.version).is_some(),
                head: h.as_ref().map(head),
                pins: pins_of(pins, &v.series, &v.version),
            });
        }
    }
    StoreListing {
        store: store.root.to_string(),
        store_id: names::hex(&store.id),
        created: rfc3339(store.config.created),
        pack_size: store.config.pack_size,
        series,
        stats,
    }
}
