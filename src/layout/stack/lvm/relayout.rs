//! A VG's metadata laid out anew on one PV, so the LV holding `/` can take up a change in
//! size even when another LV follows it (the Debian installer puts `swap_1` after `root`).
//! A restore makes every LV empty and fills only the captured filesystems, so where an LV's
//! extents lie carries no data: each LV on the PV becomes one linear segment, in the order
//! of its first extent, packed from extent 0, with `grow.lv` resized. Names, UUIDs, tags,
//! status and every other field stay as they were.

use super::super::StackError;
use super::config::{self, Node, Section, Value};
use super::restore::{Grow, PvTarget};
use super::vg::{VgMeta, parse_vg, vg_section};

fn bad(msg: String) -> StackError {
    StackError::Bad(msg)
}

/// The metadata for `pvs` with every LV on `grow.lv`'s PV packed and `grow.lv` resized by
/// `grow.delta_extents`. Refuses a PV holding anything but linear LVs wholly on it, and a
/// result that does not fit the PV's new extent count.
pub fn relayout_for_restore(
    text: &str,
    pvs: &[PvTarget],
    grow: &Grow,
) -> Result<String, StackError> {
    let vg = parse_vg(text)?;
    let pv = pv_of(&vg, &grow.lv)?;
    let order = packed_order(&vg, &pv)?;
    let mut sizes = Vec::new();
    for name in &order {
        let lv = vg
            .lvs
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| bad(format!("VG {}: no LV {name}", vg.name)))?;
        let mut n = i128::from(lv.extents());
        if *name == grow.lv {
            n += i128::from(grow.delta_extents);
        }
        if n <= 0 {
            return Err(bad(format!(
                "VG {}: LV {name} cannot shrink by {} extents: it has {}",
                vg.name,
                grow.delta_extents.unsigned_abs(),
                lv.extents()
            )));
        }
        sizes.push((name.clone(), n as u64));
    }
    // The PVs' sizes first (the old layout need not fit them: the packed one is checked
    // below), then the packing on top.
    let resized = adapt_pvs_only(text, pvs)?;
    let mut root = config::parse(&resized)?;
    let name = vg_section(&root)?.0.to_string();
    let pe_count = root
        .section(&format!("{name}/physical_volumes/{pv}"))
        .and_then(|s| s.int("pe_count"))
        .ok_or_else(|| bad(format!("VG {name}: {pv} has no pe_count")))?;
    let total: u64 = sizes.iter().map(|(_, n)| n).sum();
    if total > pe_count as u64 {
        return Err(bad(format!(
            "VG {name}: the LVs on {pv} need {total} extents packed, its new device holds \
             {pe_count}"
        )));
    }
    let mut at = 0u64;
    for (lv, n) in &sizes {
        let sec = root
            .section_mut(&format!("{name}/logical_volumes/{lv}"))
            .ok_or_else(|| bad(format!("VG {name}: LV {lv} vanished between two parses")))?;
        one_linear_segment(sec, &pv, at, *n)?;
        at += n;
    }
    Ok(root.to_text())
}

/// Each PV's `device`, `dev_size` and `pe_count` set for its new device (as
/// `adapt_for_restore` does, without its check that the old segments fit).
fn adapt_pvs_only(text: &str, pvs: &[PvTarget]) -> Result<String, StackError> {
    let vg = parse_vg(text)?;
    let mut root = config::parse(text)?;
    let name = vg_section(&root)?.0.to_string();
    for t in pvs {
        let undash = |s: &str| s.replace('-', "");
        let Some(p) = vg.pvs.iter().find(|p| undash(&p.id) == undash(&t.pv_uuid)) else {
            return Err(bad(format!("VG {name}: no PV with UUID {}", t.pv_uuid)));
        };
        let usable = t.dev_size_sectors.saturating_sub(p.pe_start);
        if usable < vg.extent_size.max(1) {
            return Err(bad(format!(
                "VG {name}: PV {} on {} holds no extent after its first {} sectors",
                t.pv_uuid, t.device, p.pe_start
            )));
        }
        let sec = root
            .section_mut(&format!("{name}/physical_volumes/{}", p.key))
            .ok_or_else(|| bad(format!("VG {name}: PV {} vanished", p.key)))?;
        let int = |n: u64| i64::try_from(n).map_err(|_| bad(format!("{n} is too large")));
        sec.set("device", Value::Str(t.device.clone()));
        sec.set("dev_size", Value::Int(int(t.dev_size_sectors)?));
        sec.set("pe_count", Value::Int(int(usable / vg.extent_size.max(1))?));
    }
    Ok(root.to_text())
}

/// The PV `lv` lives on; every segment of it must be linear there.
fn pv_of(vg: &VgMeta, lv: &str) -> Result<String, StackError> {
    let l = vg
        .lvs
        .iter()
        .find(|l| l.name == lv)
        .ok_or_else(|| bad(format!("VG {}: no LV named {lv}", vg.name)))?;
    let mut pv = None;
    for s in &l.segments {
        match s.stripes.as_slice() {
            [(p, _)] if s.seg_type == "striped" || s.seg_type == "linear" => {
                if pv.get_or_insert_with(|| p.clone()) != p {
                    return Err(bad(format!("VG {}: LV {lv} spans several PVs", vg.name)));
                }
            }
            _ => {
                return Err(bad(format!(
                    "VG {}: LV {lv} is not linear ({} over {} stripes)",
                    vg.name,
                    s.seg_type,
                    s.stripes.len()
                )));
            }
        }
    }
    pv.ok_or_else(|| bad(format!("VG {}: LV {lv} has no segment", vg.name)))
}

/// The LVs with extents on `pv`, by their first extent there; each must be linear and wholly
/// on `pv`, and visible (no pool or mirror parts).
fn packed_order(vg: &VgMeta, pv: &str) -> Result<Vec<String>, StackError> {
    let mut on: Vec<(u64, String)> = Vec::new();
    for lv in &vg.lvs {
        let first = lv
            .segments
            .iter()
            .flat_map(|s| s.stripes.iter())
            .filter(|(p, _)| p == pv)
            .map(|(_, start)| *start)
            .min();
        let Some(first) = first else { continue };
        if lv.hidden || pv_of(vg, &lv.name)? != pv {
            return Err(bad(format!(
                "VG {}: LV {} on {pv} cannot be laid out anew (hidden, or on other PVs too)",
                vg.name, lv.name
            )));
        }
        on.push((first, lv.name.clone()));
    }
    on.sort();
    Ok(on.into_iter().map(|(_, n)| n).collect())
}

/// Replaces `lv`'s segments by one linear segment of `n` extents at `start` of `pv`.
fn one_linear_segment(lv: &mut Section, pv: &str, start: u64, n: u64) -> Result<(), StackError> {
    let int = |n: u64| i64::try_from(n).map_err(|_| bad(format!("{n} is too large")));
    let pos = lv
        .entries
        .iter()
        .position(|(k, n)| k.starts_with("segment") && matches!(n, Node::Section(_)));
    lv.entries
        .retain(|(k, n)| !(k.starts_with("segment") && matches!(n, Node::Section(_))));
    let mut seg = Section::default();
    seg.set("start_extent", Value::Int(0));
    seg.set("extent_count", Value::Int(int(n)?));
    seg.set("type", Value::Str("striped".into()));
    seg.set("stripe_count", Value::Int(1));
    seg.set(
        "stripes",
        Value::Array(vec![Value::Str(pv.into()), Value::Int(int(start)?)]),
    );
    let at = pos.unwrap_or(lv.entries.len()).min(lv.entries.len());
    lv.entries
        .insert(at, ("segment1".into(), Node::Section(seg)));
    lv.set("segment_count", Value::Int(1));
    Ok(())
}
