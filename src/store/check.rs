//! `store check` (docs/STORE.md §5.6): whether a store's objects are what their names say and
//! whether every version can be read. Without reading data: `config` decodes (the store was
//! opened through it), there are no key objects in a plain store, every index object hashes
//! to its name and decodes, every version object's head and manifest frame match their hashes,
//! its manifest passes `format::validate` and belongs to this store, series and version; every
//! pack and rescue blob a version names is listed, each pack with the length the version
//! records; no index object names a pack that is not there or says another length. Packs and
//! blobs no version names are garbage (a prune condemns them), reported but no problem.
//!
//! With `--read-data` every pack a version uses (or a share chosen by a seed: `check_data`) is
//! read through `pack_check`, the checker `export` copies through.
//!
//! Problems are collected, not raised: one object's damage never hides another's. Only a
//! request that fails (the server unreachable) or a store that cannot be opened stops it.

use std::collections::{BTreeMap, BTreeSet};

use super::names::{self, IMAGES, INDEX, PACKS, RESCUE};
use super::objects::frame::{HEADER_LEN, Kind};
use super::objects::version::decode_version_sealed;
use super::objects::version::{PREFIX_LEN, max_frame, max_head};
use super::objects::{decode_index, decode_version};
use super::pack_check::{BlockSpan, block_spans};
use super::{Store, StoreError};
use crate::format::frame::decode_manifest;
use crate::format::validate::validate;
use crate::progress::Progress;

pub use super::check_data::{Subset, random_seed};

/// Where a plain store must hold nothing (an encrypted store's wrapped keys, §2.2).
const KEYS: &str = "keys/";

/// What `store check` is to do besides the checks without data.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CheckOptions {
    /// `--read-data [--subset P%] [--seed N]`.
    pub read_data: Option<Subset>,
}

/// One problem: the object (its key relative to the store), what is wrong, and the versions
/// that use it (`NAME@VERSION`) when it is a pack or a rescue blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub object: String,
    pub problem: String,
    pub versions: Vec<String>,
}

/// An object no version names: a crashed capture's pack, or one left by a forgotten version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Garbage {
    pub object: String,
    pub bytes: u64,
    /// Whether an index object lists it (a capture may still reference it).
    pub indexed: bool,
}

/// What the data reading did (`--read-data`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataReport {
    pub seed: u64,
    pub percent: f64,
    /// Packs versions use, whole and of the right length: what could be read.
    pub packs_in_use: u64,
    pub packs_read: u64,
    pub bytes_read: u64,
    /// The keys of the packs read, in key order.
    pub read: Vec<String>,
}

/// What `store check` found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckReport {
    pub versions: u64,
    pub index_objects: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub rescue_blobs: u64,
    /// In the order found: index objects, versions, packs, rescue blobs, then the data read.
    pub problems: Vec<Problem>,
    pub garbage: Vec<Garbage>,
    pub data: Option<DataReport>,
}

impl CheckReport {
    /// No problem found (garbage is none).
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, object: &str, problem: impl Into<String>) {
        self.problems.push(Problem {
            object: object.to_string(),
            problem: problem.into(),
            versions: Vec::new(),
        });
    }
}

/// A pack as the versions that use it record it.
pub(super) struct UsedPack {
    /// Its id (the pack hash): the object name in a plain store, hidden by a keyed name in
    /// an encrypted one (`Store::pack_object`); its hash and its stream key come from it.
    pub id: [u8; 32],
    /// Its plaintext length, as the manifests record it.
    pub len: u64,
    pub users: Vec<String>,
    /// Its blocks, from the first manifest that names it (every one lists them all: they
    /// tile the pack, §2.3).
    pub blocks: Vec<BlockSpan>,
}

/// What the versions and the index objects say is in the store. Packs are keyed by their
/// object names (`Store::pack_object`: the id in a plain store), what a LIST shows.
#[derive(Default)]
struct Named {
    packs: BTreeMap<[u8; 32], UsedPack>,
    /// Pack object name → its plaintext length and the index objects (keys) that list it.
    indexed: BTreeMap<[u8; 32], (u64, Vec<String>)>,
    /// Rescue blob key → the versions that use it.
    blobs: BTreeMap<String, Vec<String>>,
    /// Packs the (intact) heads of damaged version objects name: not called garbage, since
    /// the version may be repaired, but not checked against a manifest either.
    damaged_heads: BTreeSet<[u8; 32]>,
}

impl Store {
    /// Checks the store as §5.6 says; `progress` shows the data read.
    pub fn check(
        &self,
        opts: &CheckOptions,
        progress: &dyn Progress,
    ) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        let mut named = Named::default();
        if self.keys().is_none() {
            for (rel, _) in self.list(KEYS)? {
                report.problem(
                    &rel,
                    "a key object in a plain store (its config says it is not encrypted)",
                );
            }
        }
        progress.status(&format!("{}: checking the index objects", self.root));
        self.check_index(&mut report, &mut named)?;
        progress.status(&format!("{}: checking the versions", self.root));
        self.check_versions(&mut report, &mut named)?;
        let listed = self.check_packs(&mut report, &named)?;
        self.check_blobs(&mut report, &named)?;
        if let Some(subset) = opts.read_data {
            // only packs that are there whole: the others are reported already
            let readable: BTreeMap<&[u8; 32], &UsedPack> = (named.packs.iter())
                .filter(|(obj, p)| listed.get(*obj) == Some(&self.stored_pack_len(p.len)))
                .collect();
            let data = self.check_data(subset, &readable, &mut report.problems, progress)?;
            report.data = Some(data);
        }
        Ok(report)
    }

    /// Every index object against its name, decoded and checked (§2.4).
    fn check_index(&self, report: &mut CheckReport, named: &mut Named) -> Result<(), StoreError> {
        let max = (HEADER_LEN as u64) + Kind::Index.max_stored();
        for (rel, size) in self.list(INDEX)? {
            let name = match names::parse_index_key(&rel) {
                Ok(n) => n,
                Err(e) => {
                    report.problem(&rel, e);
                    continue;
                }
            };
            report.index_objects += 1;
            if size > max {
                report.problem(
                    &rel,
                    format!("{size} bytes, more than an index object may be"),
                );
                continue;
            }
            let Some(bytes) = self.client.get(&self.root.key(&rel), max)? else {
                report.problem(&rel, "listed, then gone");
                continue;
            };
            match decode_index(&self.shown(&rel), &bytes, Some(&name), self.keys()) {
                Ok(index) => {
                    for p in index.packs {
                        let obj = self.pack_object(&p.id);
                        let e = named.indexed.entry(obj).or_insert((p.len, Vec::new()));
                        if e.0 != p.len {
                            report.problem(
                                &rel,
                                format!(
                                    "says {} has {} bytes, another index object {}",
                                    names::pack_key(&obj),
                                    p.len,
                                    e.0
                                ),
                            );
                        }
                        e.1.push(rel.clone());
                    }
                }
                Err(e) => report.problem(&rel, e.problem),
            }
        }
        Ok(())
    }

    /// Every version object read whole and checked as a reader checks it before it trusts
    /// the manifest (§2.5), and what it names recorded.
    fn check_versions(
        &self,
        report: &mut CheckReport,
        named: &mut Named,
    ) -> Result<(), StoreError> {
        let sealed = self.keys().is_some();
        let max = PREFIX_LEN as u64 + max_head(sealed) + max_frame(sealed);
        for (rel, size) in self.list(IMAGES)? {
            let (dir, version) = match names::parse_version_key(&rel) {
                Ok(sv) => sv,
                Err(e) => {
                    report.problem(&rel, e);
                    continue;
                }
            };
            report.versions += 1;
            if size > max {
                report.problem(
                    &rel,
                    format!("{size} bytes, more than a version object may be"),
                );
                continue;
            }
            let Some(bytes) = self.client.get(&self.root.key(&rel), max)? else {
                report.problem(&rel, "listed, then gone");
                continue;
            };
            if let Err(why) = self.check_version(&dir, &version, &bytes, named) {
                report.problem(&rel, why);
                if let Some(head) = self.intact_head(&bytes) {
                    let packs = head.packs.iter().map(|id| self.pack_object(id));
                    named.damaged_heads.extend(packs);
                }
            }
        }
        Ok(())
    }

    /// One version object's bytes: prefix, head and frame hashes, the head's name (its
    /// series' folder `dir`, a keyed name in an encrypted store), the manifest's validity
    /// and store record, the head's pack list against the manifest's.
    fn check_version(
        &self,
        dir: &str,
        version: &str,
        bytes: &[u8],
        named: &mut Named,
    ) -> Result<(), String> {
        let (head, frame) = match self.keys() {
            Some(k) => decode_version_sealed("", bytes, k).map_err(|e| e.problem)?,
            None => {
                let (head, frame) = decode_version("", bytes).map_err(|e| e.problem)?;
                (head, frame.to_vec())
            }
        };
        if self.series_dir(&head.series) != dir || head.version != version {
            return Err(format!(
                "its head is the one of {}@{}, not of its name",
                head.series, head.version
            ));
        }
        let series = head.series.as_str();
        let (m, _) = decode_manifest(&frame).map_err(|e| format!("its manifest: {e}"))?;
        validate(&m).map_err(|e| format!("its manifest: {e}"))?;
        let r = crate::format::store_ref::from_manifest(&m)
            .map_err(|e| format!("its manifest: {e}"))?;
        let belongs =
            r.is_some_and(|r| r.store_id == self.id && r.series == series && r.version == version);
        if !belongs {
            return Err("its manifest names another store, series or version".into());
        }
        if m.image.id != head.image_id {
            return Err("its manifest's image id is not its head's".into());
        }
        if !head.packs.iter().eq(m.packs.iter().map(|p| &p.hash)) {
            return Err("its head's pack list is not its manifest's".into());
        }
        let user = format!("{series}@{version}");
        for (rec, blocks) in m.packs.iter().zip(block_spans(&m)) {
            let obj = self.pack_object(&rec.hash);
            let p = named.packs.entry(obj).or_insert_with(|| UsedPack {
                id: rec.hash,
                len: rec.len,
                users: Vec::new(),
                blocks,
            });
            if p.len != rec.len {
                return Err(format!(
                    "records {} with {} bytes, another version with {}",
                    names::pack_key(&obj),
                    rec.len,
                    p.len
                ));
            }
            p.users.push(user.clone());
        }
        if let Some(r) = &head.rescue {
            let refs = [Some(&r.kernel), Some(&r.initrd_core), r.net_part.as_ref()];
            for b in refs.into_iter().flatten() {
                named
                    .blobs
                    .entry(b.object.clone())
                    .or_default()
                    .push(user.clone());
            }
        }
        Ok(())
    }

    /// The listed packs against what versions and index objects say (a sealed pack's
    /// object is `sealed_len` of its plaintext); the rest is garbage. Returns the listed
    /// packs and their stored lengths.
    fn check_packs(
        &self,
        report: &mut CheckReport,
        named: &Named,
    ) -> Result<BTreeMap<[u8; 32], u64>, StoreError> {
        let mut listed: BTreeMap<[u8; 32], u64> = BTreeMap::new();
        for (rel, size) in self.list(PACKS)? {
            match names::parse_pack_key(&rel) {
                Ok(id) => {
                    listed.insert(id, size);
                    report.packs += 1;
                    report.pack_bytes += size;
                }
                Err(e) => report.problem(&rel, e),
            }
        }
        for (id, p) in &named.packs {
            let want = self.stored_pack_len(p.len);
            let problem = match listed.get(id) {
                None => "missing".to_string(),
                Some(&size) if size != want => {
                    format!("{size} bytes where the versions record {want}")
                }
                Some(_) => continue,
            };
            report.problems.push(Problem {
                object: names::pack_key(id),
                problem,
                versions: p.users.clone(),
            });
        }
        for (id, (len, indexes)) in &named.indexed {
            let want = self.stored_pack_len(*len);
            let problem = match listed.get(id) {
                None => format!("names {}, which is missing", names::pack_key(id)),
                Some(&size) if size != want => format!(
                    "says {} has {want} bytes; it has {size}",
                    names::pack_key(id)
                ),
                Some(_) => continue,
            };
            for index in indexes {
                report.problem(index, problem.clone());
            }
        }
        for (id, &size) in &listed {
            if !named.packs.contains_key(id) && !named.damaged_heads.contains(id) {
                report.garbage.push(Garbage {
                    object: names::pack_key(id),
                    bytes: size,
                    indexed: named.indexed.contains_key(id),
                });
            }
        }
        Ok(listed)
    }

    /// The rescue blobs versions name must be listed; the others are garbage.
    fn check_blobs(&self, report: &mut CheckReport, named: &Named) -> Result<(), StoreError> {
        let mut listed = BTreeSet::new();
        for (rel, size) in self.list(RESCUE)? {
            if let Err(e) = names::parse_rescue_key(&rel) {
                report.problem(&rel, e);
                continue;
            }
            report.rescue_blobs += 1;
            if !named.blobs.contains_key(&rel) {
                report.garbage.push(Garbage {
                    object: rel.clone(),
                    bytes: size,
                    indexed: false,
                });
            }
            listed.insert(rel);
        }
        for (key, users) in &named.blobs {
            if !listed.contains(key) {
                report.problems.push(Problem {
                    object: key.clone(),
                    problem: "missing".into(),
                    versions: users.clone(),
                });
            }
        }
        Ok(())
    }
}

impl Store {
    /// The head of a version object whose prefix and head are whole (its manifest frame may
    /// be what is damaged).
    fn intact_head(&self, bytes: &[u8]) -> Option<super::objects::VersionHead> {
        let prefix = super::objects::decode_version_prefix("", bytes).ok()?;
        let end = PREFIX_LEN.checked_add(usize::try_from(prefix.head_len).ok()?)?;
        let head = bytes.get(PREFIX_LEN..end)?;
        match self.keys() {
            Some(k) => super::objects::decode_head_sealed("", &prefix, head, k)
                .ok()
                .map(|(h, _)| h),
            None => super::objects::decode_head("", &prefix, head).ok(),
        }
    }
}
