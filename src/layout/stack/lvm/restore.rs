//! Rewrites a VG's metadata text for `pvcreate --restorefile` + `vgcfgrestore` onto PVs of
//! other sizes: each PV's `dev_size`, `device` hint and `pe_count` follow its new device,
//! and one LV's last segment may grow or shrink to take up the difference (the restore's
//! rule: the last LV of a VG, or the one holding `/`). Everything else — UUIDs, tags,
//! seqno, creation facts — is written back as it was.

use std::collections::BTreeMap;

use super::super::StackError;
use super::config::{self, Value};
use super::vg::{VgMeta, parse_vg, vg_section};

/// The device a recorded PV is restored onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvTarget {
    /// The PV's UUID (dashed or not).
    pub pv_uuid: String,
    /// The new device's size in 512-byte sectors.
    pub dev_size_sectors: u64,
    /// The new device's path (the metadata's `device` hint).
    pub device: String,
}

/// Grow (positive) or shrink (negative) an LV by changing its last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grow {
    pub lv: String,
    pub delta_extents: i64,
}

/// What lies at the end of one PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvTail {
    /// The PV's key in the metadata (`pv0`).
    pub pv_key: String,
    pub pe_count: u64,
    /// One past the highest extent in use (0 for an empty PV).
    pub used_end: u64,
    /// Extents free after `used_end`.
    pub free_at_end: u64,
    /// The LV whose extents end at `used_end`.
    pub last_lv: Option<String>,
}

/// One run of extents an LV segment holds on a PV.
struct Alloc<'a> {
    lv: &'a str,
    seg: &'a str,
    pv: &'a str,
    start: u64,
    len: u64,
}

fn allocations(vg: &VgMeta) -> Vec<Alloc<'_>> {
    let mut out = Vec::new();
    for lv in &vg.lvs {
        for seg in &lv.segments {
            // A striped segment's extents are split evenly over its stripes (LVM's area_len).
            let n = seg.stripes.len().max(1) as u64;
            for (pv, start) in &seg.stripes {
                out.push(Alloc {
                    lv: &lv.name,
                    seg: &seg.key,
                    pv,
                    start: *start,
                    len: seg.extent_count / n,
                });
            }
        }
    }
    out
}

/// Per PV: how many extents are free at its end and which LV ends last on it.
pub fn pv_tails(vg: &VgMeta) -> Vec<PvTail> {
    let allocs = allocations(vg);
    vg.pvs
        .iter()
        .map(|pv| {
            let last = allocs
                .iter()
                .filter(|a| a.pv == pv.key)
                .max_by_key(|a| a.start + a.len);
            let used_end = last.map_or(0, |a| a.start + a.len);
            PvTail {
                pv_key: pv.key.clone(),
                pe_count: pv.pe_count,
                used_end,
                free_at_end: pv.pe_count.saturating_sub(used_end),
                last_lv: last.map(|a| a.lv.to_string()),
            }
        })
        .collect()
}

fn bad(msg: String) -> StackError {
    StackError::Bad(msg)
}

fn undashed(uuid: &str) -> String {
    uuid.chars().filter(|&c| c != '-').collect()
}

/// Each PV's extent count on its new device (unchanged for PVs without a target).
fn new_pe_counts(vg: &VgMeta, pvs: &[PvTarget]) -> Result<BTreeMap<String, u64>, StackError> {
    let mut out: BTreeMap<String, u64> =
        vg.pvs.iter().map(|p| (p.key.clone(), p.pe_count)).collect();
    for t in pvs {
        let Some(pv) = vg
            .pvs
            .iter()
            .find(|p| undashed(&p.id) == undashed(&t.pv_uuid))
        else {
            return Err(bad(format!(
                "VG {}: no PV with UUID {}",
                vg.name, t.pv_uuid
            )));
        };
        let usable = t.dev_size_sectors.saturating_sub(pv.pe_start);
        if usable < vg.extent_size {
            return Err(bad(format!(
                "VG {}: PV {} on {} of {} sectors holds no extent: its first extent starts at sector {} and an extent is {} sectors",
                vg.name, t.pv_uuid, t.device, t.dev_size_sectors, pv.pe_start, vg.extent_size
            )));
        }
        out.insert(pv.key.clone(), usable / vg.extent_size);
    }
    Ok(out)
}

/// How many extents `lv` must grow (or, negative, shrink) for its last segment to end at
/// the end of its PV on the new devices: the restore's "takes up the difference".
/// Refuses when another LV ends after it on that PV.
pub fn fill_delta(vg: &VgMeta, lv: &str, pvs: &[PvTarget]) -> Result<i64, StackError> {
    let (pv, end) = last_linear_end(vg, lv)?;
    let tail = pv_tails(vg).into_iter().find(|t| t.pv_key == pv);
    if let Some(t) = tail.filter(|t| t.used_end > end) {
        return Err(bad(format!(
            "VG {}: LV {lv} ends at extent {end} of {pv} but LV {} ends after it, at extent {}",
            vg.name,
            t.last_lv.unwrap_or_default(),
            t.used_end
        )));
    }
    let pe = new_pe_counts(vg, pvs)?.get(&pv).copied().unwrap_or(0);
    i64::try_from(i128::from(pe) - i128::from(end)).map_err(|_| {
        bad(format!(
            "VG {}: LV {lv} ends at extent {end}, past any device",
            vg.name
        ))
    })
}

/// The PV key and end extent of an LV's last segment, which must be linear.
fn last_linear_end(vg: &VgMeta, lv: &str) -> Result<(String, u64), StackError> {
    let Some(l) = vg.lvs.iter().find(|l| l.name == lv) else {
        return Err(bad(format!("VG {}: no LV named {lv}", vg.name)));
    };
    let Some(seg) = l.segments.iter().max_by_key(|s| s.start_extent) else {
        return Err(bad(format!("VG {}: LV {lv} has no segment", vg.name)));
    };
    match (seg.seg_type.as_str(), seg.stripes.as_slice()) {
        ("striped" | "linear", [(pv, start)]) => Ok((pv.clone(), start + seg.extent_count)),
        (t, s) => Err(bad(format!(
            "VG {}: LV {lv}'s last segment {} is {t} over {} stripes, not linear: it cannot be resized",
            vg.name,
            seg.key,
            s.len()
        ))),
    }
}

/// The new extent count of `grow.lv`'s last segment, after checking the room on its PV.
fn grown_count(
    vg: &VgMeta,
    grow: &Grow,
    pe: &BTreeMap<String, u64>,
) -> Result<(String, u64), StackError> {
    let (pv, end) = last_linear_end(vg, &grow.lv)?;
    let lv = vg.lvs.iter().find(|l| l.name == grow.lv);
    let seg = lv.and_then(|l| l.segments.iter().max_by_key(|s| s.start_extent));
    let (Some(lv), Some(seg)) = (lv, seg) else {
        return Err(bad(format!("VG {}: no LV named {}", vg.name, grow.lv)));
    };
    let new = i128::from(seg.extent_count) + i128::from(grow.delta_extents);
    if new <= 0 {
        return Err(bad(format!(
            "VG {}: LV {} cannot shrink by {} extents: its last segment has {} ({} in all)",
            vg.name,
            grow.lv,
            grow.delta_extents.unsigned_abs(),
            seg.extent_count,
            lv.extents()
        )));
    }
    let new_end = i128::from(end) + i128::from(grow.delta_extents);
    let pe_count = pe.get(&pv).copied().unwrap_or(0);
    if new_end > i128::from(pe_count) {
        return Err(bad(format!(
            "VG {}: LV {} grown by {} extents would end at extent {new_end} of {pv}, which has {pe_count}",
            vg.name, grow.lv, grow.delta_extents
        )));
    }
    let other = allocations(vg).into_iter().find(|a| {
        a.pv == pv
            && !(a.lv == grow.lv && a.seg == seg.key)
            && a.start < new_end as u64
            && a.start + a.len > end
    });
    if let Some(a) = other {
        return Err(bad(format!(
            "VG {}: LV {} cannot grow to extent {new_end} of {pv}: LV {} uses extents {}..{} there",
            vg.name,
            grow.lv,
            a.lv,
            a.start,
            a.start + a.len
        )));
    }
    Ok((seg.key.clone(), new as u64))
}

/// Every LV's extents must lie within its PV's new extent count.
fn check_fits(
    vg: &VgMeta,
    pe: &BTreeMap<String, u64>,
    grown: Option<(&str, &str, u64)>,
) -> Result<(), StackError> {
    for a in allocations(vg) {
        let len = match grown {
            Some((lv, seg, n)) if lv == a.lv && seg == a.seg => n,
            _ => a.len,
        };
        let count = pe.get(a.pv).copied().unwrap_or(0);
        if a.start + len > count {
            return Err(bad(format!(
                "VG {}: LV {} uses extents {}..{} of {}, but its new device holds {count} extents",
                vg.name,
                a.lv,
                a.start,
                a.start + len,
                a.pv
            )));
        }
    }
    Ok(())
}

/// A count as LVM's config text holds it (a signed 64-bit integer).
fn int(n: u64) -> Result<i64, StackError> {
    i64::try_from(n).map_err(|_| bad(format!("{n} is too large for LVM metadata")))
}

/// The VG metadata `text` rewritten for PVs of the targets' sizes, with `grow` applied.
pub fn adapt_for_restore(
    text: &str,
    pvs: &[PvTarget],
    grow: Option<Grow>,
) -> Result<String, StackError> {
    let vg = parse_vg(text)?;
    let pe = new_pe_counts(&vg, pvs)?;
    let grown = match &grow {
        Some(g) => Some((g.lv.as_str(), grown_count(&vg, g, &pe)?)),
        None => None,
    };
    check_fits(
        &vg,
        &pe,
        grown.as_ref().map(|(lv, (seg, n))| (*lv, seg.as_str(), *n)),
    )?;
    let mut root = config::parse(text)?;
    let name = vg_section(&root)?.0.to_string();
    let missing = |what: &str| bad(format!("VG {name}: {what} vanished between two parses"));
    for t in pvs {
        let pv = vg
            .pvs
            .iter()
            .find(|p| undashed(&p.id) == undashed(&t.pv_uuid))
            .ok_or_else(|| missing("a PV"))?;
        let sec = root
            .section_mut(&format!("{name}/physical_volumes/{}", pv.key))
            .ok_or_else(|| missing("a PV"))?;
        sec.set("device", Value::Str(t.device.clone()));
        sec.set("dev_size", Value::Int(int(t.dev_size_sectors)?));
        sec.set(
            "pe_count",
            Value::Int(int(pe.get(&pv.key).copied().unwrap_or(0))?),
        );
    }
    if let Some((lv, (seg, n))) = grown {
        let sec = root
            .section_mut(&format!("{name}/logical_volumes/{lv}/{seg}"))
            .ok_or_else(|| missing("a segment"))?;
        sec.set("extent_count", Value::Int(int(n)?));
    }
    Ok(root.to_text())
}
