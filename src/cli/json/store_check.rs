//! `store check --json` (docs/JSON.md): what was checked, each problem with the object it
//! names and the versions that use it, the garbage, and with --read-data what was read and
//! the seed that chose it. Built from the library's report here, never by serializing it.

use serde::Serialize;

use osimage::store::check::CheckReport;

#[derive(Serialize)]
pub struct StoreCheck {
    pub store: String,
    /// No problem found (garbage is none).
    pub ok: bool,
    pub versions: u64,
    pub index_objects: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub rescue_blobs: u64,
    pub problems: Vec<ProblemJson>,
    pub garbage: Vec<GarbageJson>,
    /// With --read-data; `null` without.
    pub read_data: Option<ReadData>,
}

#[derive(Serialize)]
pub struct ProblemJson {
    /// The object's key relative to the store (`packs/ab/…`, `index/…`, `images/NAME/V`).
    pub object: String,
    pub problem: String,
    /// `NAME@VERSION` of each version that uses the object (packs and rescue blobs).
    pub versions: Vec<String>,
}

#[derive(Serialize)]
pub struct GarbageJson {
    pub object: String,
    pub bytes: u64,
    /// Whether an index object lists it.
    pub indexed: bool,
}

#[derive(Serialize)]
pub struct ReadData {
    pub seed: u64,
    pub percent: f64,
    pub packs_in_use: u64,
    pub packs_read: u64,
    pub bytes_read: u64,
    /// The keys of the packs read (relative to the store), in key order.
    pub read: Vec<String>,
}

/// The document of `store check` on the store `store`.
pub fn document(store: &str, r: &CheckReport) -> StoreCheck {
    StoreCheck {
        store: store.to_string(),
        ok: r.ok(),
        versions: r.versions,
        index_objects: r.index_objects,
        packs: r.packs,
        pack_bytes: r.pack_bytes,
        rescue_blobs: r.rescue_blobs,
        problems: (r.problems.iter())
            .map(|p| ProblemJson {
                object: p.object.clone(),
                problem: p.problem.clone(),
                versions: p.versions.clone(),
            })
            .collect(),
        garbage: (r.garbage.iter())
            .map(|g| GarbageJson {
                object: g.object.clone(),
                bytes: g.bytes,
                indexed: g.indexed,
            })
            .collect(),
        read_data: r.data.as_ref().map(|d| ReadData {
            seed: d.seed,
            percent: d.percent,
            packs_in_use: d.packs_in_use,
            packs_read: d.packs_read,
            bytes_read: d.bytes_read,
            read: d.read.clone(),
        }),
    }
}
