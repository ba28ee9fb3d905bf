//! A volume group's metadata as facts: the VG, its PVs, its LVs and their segments, read
//! from the config tree of the VG text (lib/format_text/import_vsn1.c reads the same keys).

use super::super::StackError;
use super::config::{self, Section, Value};

/// A volume group as its metadata text describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgMeta {
    pub name: String,
    /// The VG UUID, dashed as LVM prints it.
    pub id: String,
    /// Metadata sequence number (each change increments it).
    pub seqno: u64,
    /// Extent size in 512-byte sectors.
    pub extent_size: u64,
    /// `metadata_copies` (0: LVM chooses).
    pub metadata_copies: u64,
    pub status: Vec<String>,
    pub tags: Vec<String>,
    pub pvs: Vec<PvMeta>,
    pub lvs: Vec<LvMeta>,
}

/// One `physical_volumes` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvMeta {
    /// The member's name (`pv0`, `pv1`, ...), which segments' `stripes` refer to.
    pub key: String,
    /// The PV UUID, dashed.
    pub id: String,
    /// The device path when the metadata was written (a hint only).
    pub device: Option<String>,
    /// Device size in sectors.
    pub dev_size: u64,
    /// First extent's start in sectors.
    pub pe_start: u64,
    /// Number of extents.
    pub pe_count: u64,
    pub tags: Vec<String>,
}

/// What an LV is, from its segments' types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LvKind {
    Linear,
    Striped,
    ThinPool,
    Thin,
    /// An old-style snapshot: its COW LV, and the hidden `snapshotN` LV whose `snapshot`
    /// segment ties the COW to its origin.
    Snapshot,
    Cache,
    Raid,
    Mirror,
    /// Any other segment type, named.
    Other(String),
}

impl LvKind {
    /// The name `lvs -o segtype` would print (`linear`, `thin-pool`, ...).
    pub fn name(&self) -> &str {
        match self {
            LvKind::Linear => "linear",
            LvKind::Striped => "striped",
            LvKind::ThinPool => "thin-pool",
            LvKind::Thin => "thin",
            LvKind::Snapshot => "snapshot",
            LvKind::Cache => "cache",
            LvKind::Raid => "raid",
            LvKind::Mirror => "mirror",
            LvKind::Other(t) => t,
        }
    }
}

/// One `logical_volumes` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvMeta {
    pub name: String,
    /// The LV UUID, dashed.
    pub id: String,
    pub status: Vec<String>,
    pub tags: Vec<String>,
    pub segments: Vec<Segment>,
    pub kind: LvKind,
    /// Not `VISIBLE`: a sub-LV of another (`_tdata`, `_tmeta`, `_rimage_N`, `_mlog`, ...),
    /// a pool metadata spare, or the `snapshotN` LV of an old-style snapshot.
    pub hidden: bool,
}

/// One `segmentN` of an LV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The segment's `segmentN` name.
    pub key: String,
    pub start_extent: u64,
    pub extent_count: u64,
    /// `type`: "striped" (linear is striped with one stripe), "thin-pool", "thin", ...
    pub seg_type: String,
    /// `stripe_count` (0 when the segment type has none).
    pub stripe_count: u64,
    /// `stripe_size` in sectors, when present.
    pub stripe_size: Option<u64>,
    /// `stripes`: (PV key, start extent on that PV) per stripe.
    pub stripes: Vec<(String, u64)>,
    /// The LVs this segment refers to by name: `thin_pool`, `pool`, `origin`, `cow_store`,
    /// `metadata`, `cache_pool`, `raids`/`mirrors` members...
    pub refs: Vec<(String, String)>,
}

/// A stretch of an LV lying contiguous on one PV, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvRun {
    /// The PV's UUID, dashed.
    pub pv_id: String,
    /// From the PV device's first byte.
    pub offset: u64,
    pub len: u64,
}

impl VgMeta {
    /// Where LV `lv`'s bytes lie, in its order: each linear segment's extents on its PV, runs
    /// that continue one another merged. Refused for segments that are not linear (striped
    /// over several PVs, thin, snapshot, RAID...): their bytes are not a run of a device.
    pub fn lv_runs(&self, lv: &str) -> Result<Vec<PvRun>, StackError> {
        let what = format!("VG {} LV {lv}", self.name);
        let l = self
            .lvs
            .iter()
            .find(|l| l.name == lv)
            .ok_or_else(|| bad(format!("{what}: not in the metadata")))?;
        let extent = self
            .extent_size
            .checked_mul(512)
            .ok_or_else(|| bad(format!("{what}: extent size overflows")))?;
        let mut segs: Vec<&Segment> = l.segments.iter().collect();
        segs.sort_by_key(|s| s.start_extent);
        let mut runs: Vec<PvRun> = Vec::new();
        for s in segs {
            let linear = s.seg_type == "striped" && s.stripe_count == 1 && s.stripes.len() == 1;
            if !linear {
                return Err(bad(format!(
                    "{what}: segment {} is {} over {} stripes, not one linear run",
                    s.key, s.seg_type, s.stripe_count
                )));
            }
            let (key, first) = &s.stripes[0];
            let pv = self
                .pvs
                .iter()
                .find(|p| &p.key == key)
                .ok_or_else(|| bad(format!("{what}: segment {} names no PV {key}", s.key)))?;
            let end = first
                .checked_add(s.extent_count)
                .filter(|&e| e <= pv.pe_count);
            let overflow = || bad(format!("{what}: segment {} lies outside PV {key}", s.key));
            end.ok_or_else(overflow)?;
            let offset = first
                .checked_mul(extent)
                .and_then(|b| b.checked_add(pv.pe_start.checked_mul(512)?))
                .ok_or_else(overflow)?;
            let len = s.extent_count.checked_mul(extent).ok_or_else(overflow)?;
            match runs.last_mut() {
                Some(r) if r.pv_id == pv.id && r.offset + r.len == offset => r.len += len,
                _ => runs.push(PvRun {
                    pv_id: pv.id.clone(),
                    offset,
                    len,
                }),
            }
        }
        Ok(runs)
    }
}

impl LvMeta {
    /// Whether the restore can make this LV again from its segments alone: linear and
    /// striped LVs that are not a hidden part of another LV.
    pub fn recreatable(&self) -> bool {
        matches!(self.kind, LvKind::Linear | LvKind::Striped) && !self.hidden
    }

    /// The LV's size in extents (its segments' sum).
    pub fn extents(&self) -> u64 {
        self.segments.iter().map(|s| s.extent_count).sum()
    }

    /// The role of a hidden sub-LV, from the suffix LVM gives it (`_tdata` → "tdata");
    /// `None` for a visible LV or an unknown suffix.
    pub fn sub_role(&self) -> Option<&'static str> {
        const ROLES: &[&str] = &[
            "tdata", "tmeta", "rimage", "rmeta", "mimage", "mlog", "cdata", "cmeta", "cpool",
            "corig", "wcorig", "vdata", "vorigin", "imeta", "iorig", "pmspare",
        ];
        // `pool_tdata`, `root_rimage_0`, `data_rimage_0_imeta`: the last part that is not
        // an index, after the LV's own name.
        if !self.hidden {
            return None;
        }
        let (_, parts) = self.name.split_once('_')?;
        let tail = parts
            .rsplit('_')
            .find(|p| !p.chars().all(|c| c.is_ascii_digit()))?;
        ROLES.iter().find(|r| **r == tail).copied()
    }
}

fn bad(msg: String) -> StackError {
    StackError::Bad(msg)
}

fn need_u64(s: &Section, key: &str, what: &str) -> Result<u64, StackError> {
    let v = s
        .int(key)
        .ok_or_else(|| bad(format!("LVM metadata: {what} has no integer {key}")))?;
    u64::try_from(v).map_err(|_| bad(format!("LVM metadata: {what} {key} = {v} is negative")))
}

fn need_str(s: &Section, key: &str, what: &str) -> Result<String, StackError> {
    s.str(key)
        .map(str::to_string)
        .ok_or_else(|| bad(format!("LVM metadata: {what} has no string {key}")))
}

fn strings(s: &Section, key: &str, what: &str) -> Result<Vec<String>, StackError> {
    s.strings(key).ok_or_else(|| {
        bad(format!(
            "LVM metadata: {what} {key} is not a list of strings"
        ))
    })
}

/// The single VG section of a metadata text (an area's text or a `vgcfgbackup` file).
pub fn vg_section(root: &Section) -> Result<(&str, &Section), StackError> {
    let mut it = root.sections();
    match (it.next(), it.next()) {
        (Some(vg), None) => Ok(vg),
        (None, _) => Err(bad("LVM metadata: no volume group section".to_string())),
        (Some(_), Some(_)) => Err(bad(
            "LVM metadata: more than one top-level section".to_string()
        )),
    }
}

/// Reads a VG's metadata text into facts.
pub fn parse_vg(text: &str) -> Result<VgMeta, StackError> {
    let root = config::parse(text)?;
    let (name, vg) = vg_section(&root)?;
    let what = format!("VG {name}");
    let extent_size = need_u64(vg, "extent_size", &what)?;
    if extent_size == 0 {
        return Err(bad(format!("LVM metadata: {what} has extent_size 0")));
    }
    let pvs = match vg.section("physical_volumes") {
        Some(s) => s
            .sections()
            .map(|(k, p)| pv_meta(k, p))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let mut lvs: Vec<LvMeta> = match vg.section("logical_volumes") {
        Some(s) => s
            .sections()
            .map(|(k, l)| lv_meta(k, l))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    mark_snapshot_cows(&mut lvs);
    Ok(VgMeta {
        name: name.to_string(),
        id: need_str(vg, "id", &what)?,
        seqno: need_u64(vg, "seqno", &what)?,
        extent_size,
        metadata_copies: vg.int("metadata_copies").unwrap_or(0).max(0) as u64,
        status: strings(vg, "status", &what)?,
        tags: strings(vg, "tags", &what)?,
        pvs,
        lvs,
    })
}

fn pv_meta(key: &str, p: &Section) -> Result<PvMeta, StackError> {
    let what = format!("PV {key}");
    Ok(PvMeta {
        key: key.to_string(),
        id: need_str(p, "id", &what)?,
        device: p.str("device").map(str::to_string),
        dev_size: need_u64(p, "dev_size", &what)?,
        pe_start: need_u64(p, "pe_start", &what)?,
        pe_count: need_u64(p, "pe_count", &what)?,
        tags: strings(p, "tags", &what)?,
    })
}

fn lv_meta(name: &str, l: &Section) -> Result<LvMeta, StackError> {
    let what = format!("LV {name}");
    let status = strings(l, "status", &what)?;
    let segments: Vec<Segment> = l
        .sections()
        .map(|(k, s)| segment(name, k, s))
        .collect::<Result<_, _>>()?;
    let hidden = !status.iter().any(|s| s == "VISIBLE");
    Ok(LvMeta {
        name: name.to_string(),
        id: need_str(l, "id", &what)?,
        tags: strings(l, "tags", &what)?,
        kind: kind_of(&segments),
        status,
        segments,
        hidden,
    })
}

/// Members of a segment that name other LVs (lib/*/\*.c `_text_import` of each type).
const REF_KEYS: &[&str] = &[
    "thin_pool",
    "pool",
    "origin",
    "cow_store",
    "metadata",
    "cache_pool",
    "external_origin",
    "merging_store",
    "writecache",
    "integrity_meta",
    "vdo_pool",
    "data",
];

fn segment(lv: &str, key: &str, s: &Section) -> Result<Segment, StackError> {
    let what = format!("LV {lv} {key}");
    let mut refs: Vec<(String, String)> = REF_KEYS
        .iter()
        .filter_map(|k| s.str(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    let mut stripes = Vec::new();
    for list in ["stripes", "raids", "mirrors"] {
        for (name, at) in pairs(s, list, &what)? {
            match at {
                Some(pe) if list == "stripes" => stripes.push((name, pe)),
                _ => refs.push((list.to_string(), name)),
            }
        }
    }
    Ok(Segment {
        key: key.to_string(),
        start_extent: need_u64(s, "start_extent", &what)?,
        extent_count: need_u64(s, "extent_count", &what)?,
        seg_type: need_str(s, "type", &what)?,
        stripe_count: s.int("stripe_count").unwrap_or(0).max(0) as u64,
        stripe_size: s.int("stripe_size").and_then(|v| u64::try_from(v).ok()),
        stripes,
        refs,
    })
}

/// An array of `"name", extent` pairs (`stripes`, `mirrors`) or of names (`raids`).
fn pairs(s: &Section, key: &str, what: &str) -> Result<Vec<(String, Option<u64>)>, StackError> {
    let Some(v) = s.value(key) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        return Err(bad(format!("LVM metadata: {what} {key} is not a list")));
    };
    let mut out: Vec<(String, Option<u64>)> = Vec::new();
    for item in items {
        match item {
            Value::Str(n) => out.push((n.clone(), None)),
            Value::Int(i) if *i >= 0 && out.last().is_some_and(|p| p.1.is_none()) => {
                if let Some(last) = out.last_mut() {
                    last.1 = Some(*i as u64);
                }
            }
            _ => {
                return Err(bad(format!(
                    "LVM metadata: {what} {key} is not name, extent pairs"
                )));
            }
        }
    }
    if key == "stripes" && out.iter().any(|p| p.1.is_none()) {
        return Err(bad(format!(
            "LVM metadata: {what} stripes has a name without an extent"
        )));
    }
    Ok(out)
}

fn kind_of(segs: &[Segment]) -> LvKind {
    let mut kind = LvKind::Linear;
    for s in segs {
        let k = match s.seg_type.as_str() {
            "striped" | "linear" if s.stripe_count <= 1 => LvKind::Linear,
            "striped" => LvKind::Striped,
            "thin-pool" => LvKind::ThinPool,
            "thin" => LvKind::Thin,
            "snapshot" => LvKind::Snapshot,
            "cache" | "cache-pool" | "writecache" => LvKind::Cache,
            "mirror" => LvKind::Mirror,
            t if t.starts_with("raid") => LvKind::Raid,
            t => LvKind::Other(t.to_string()),
        };
        // One non-linear segment decides the LV's kind.
        if kind == LvKind::Linear {
            kind = k;
        }
    }
    kind
}

/// An old-style snapshot's COW LV looks linear; the hidden `snapshot` segment names it
/// as `cow_store`, which makes it a snapshot.
fn mark_snapshot_cows(lvs: &mut [LvMeta]) {
    let cows: Vec<String> = lvs
        .iter()
        .flat_map(|l| &l.segments)
        .filter(|s| s.seg_type == "snapshot")
        .flat_map(|s| &s.refs)
        .filter(|(k, _)| k == "cow_store")
        .map(|(_, v)| v.clone())
        .collect();
    for lv in lvs.iter_mut().filter(|l| cows.contains(&l.name)) {
        lv.kind = LvKind::Snapshot;
    }
}
