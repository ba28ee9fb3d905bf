//! `store ls --json` (docs/JSON.md): the store, its series and their versions, and with -l
//! what each version's head says. Built from the store's types here, never by serializing
//! them, so a change to the store format cannot change the document unnoticed.

use serde::Serialize;

use osimage::store::objects::VersionHead;
use osimage::store::{ListedVersion, Store, names};

use super::{nanos, rfc3339};

#[derive(Serialize)]
pub struct StoreListing {
    pub store: String,
    pub store_id: String,
    pub created: String,
    pub pack_size: u32,
    pub series: Vec<Series>,
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
    /// With -l: what its head says; `null` without.
    pub head: Option<Head>,
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
/// `heads` beside them (all `None` without -l).
pub fn listing(
    store: &Store,
    versions: &[ListedVersion],
    heads: &[Option<VersionHead>],
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
                head: h.as_ref().map(head),
            });
        }
    }
    StoreListing {
        store: store.root.to_string(),
        store_id: names::hex(&store.id),
        created: rfc3339(store.config.created),
        pack_size: store.config.pack_size,
        series,
    }
}
