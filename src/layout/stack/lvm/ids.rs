//! A VG's metadata with new identities (`restore --new-uuids`, issue #19): every `id` in the
//! VG's section — the VG's, each PV's, each LV's, historical LVs' — replaced by a fresh one,
//! everything else written back as it was. Segments name PVs by their key (`pv0`) and other
//! LVs by name, never by UUID, so the text stays consistent as long as each PV is then made
//! with `pvcreate --uuid NEW` (the planner takes the new PV ids from the same map).
//!
//! LVM's UUID form (lib/uuid/uuid.c): 32 characters of `0-9a-zA-Z` (`id_create` maps random
//! bytes into the first 62 characters of its alphabet), printed in groups of 6-4-4-4-4-4-6
//! joined by `-` (`id_write_format`).

use super::super::StackError;
use super::config::{self, Node, Section, Value};
use super::vg::vg_section;

/// LVM's alphabet; `id_create` uses its first 62 characters.
const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// The dashed form's group lengths.
const GROUPS: [usize; 7] = [6, 4, 4, 4, 4, 4, 6];

/// An LVM UUID made from 32 random bytes, in its dashed form
/// (`xA1djd-XRLR-hkh0-PakQ-rHit-ifke-2k5rJW`).
pub fn new_id(raw: &[u8; 32]) -> String {
    let chars: Vec<char> = raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let mut out = String::with_capacity(38);
    let mut at = 0;
    for (i, n) in GROUPS.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.extend(&chars[at..at + n]);
        at += n;
    }
    out
}

/// Whether `id` is an LVM UUID in its dashed form.
pub fn is_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == GROUPS.len()
        && groups
            .iter()
            .zip(GROUPS)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Every `id` value in the VG's section of `text`, in file order, each once.
pub fn metadata_ids(text: &str) -> Result<Vec<String>, StackError> {
    let root = config::parse(text)?;
    let (_, vg) = vg_section(&root)?;
    let mut out = Vec::new();
    collect_ids(vg, &mut out);
    Ok(out)
}

fn collect_ids(s: &Section, out: &mut Vec<String>) {
    for (k, n) in &s.entries {
        match n {
            Node::Value(Value::Str(id)) if k == "id" => {
                if !out.contains(id) {
                    out.push(id.clone());
                }
            }
            Node::Section(sub) => collect_ids(sub, out),
            Node::Value(_) => {}
        }
    }
}

/// `text` with every `id` in its VG's section replaced through `new` (old → new pairs).
/// Refuses an `id` that `new` has no value for (the result would mix old and new
/// identities) and a new value that is not an LVM UUID.
pub fn with_new_ids(text: &str, new: &[(String, String)]) -> Result<String, StackError> {
    if let Some((_, bad)) = new.iter().find(|(_, n)| !is_id(n)) {
        return Err(StackError::Bad(format!(
            "{bad:?} is not an LVM UUID (32 letters and digits, dashed 6-4-4-4-4-4-6)"
        )));
    }
    let mut root = config::parse(text)?;
    let name = vg_section(&root)?.0.to_string();
    let vg = root
        .section_mut(&name)
        .ok_or_else(|| StackError::Bad(format!("VG {name}: its section vanished")))?;
    replace_ids(vg, new, &name)?;
    Ok(root.to_text())
}

fn replace_ids(s: &mut Section, new: &[(String, String)], vg: &str) -> Result<(), StackError> {
    for (k, n) in &mut s.entries {
        match n {
            Node::Value(Value::Str(id)) if k == "id" => {
                let Some((_, to)) = new.iter().find(|(old, _)| old == id) else {
                    return Err(StackError::Bad(format!(
                        "VG {vg}: no new identity for id {id:?}"
                    )));
                };
                *id = to.clone();
            }
            Node::Section(sub) => replace_ids(sub, new, vg)?,
            Node::Value(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::vg::parse_vg;
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/lvm/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Fresh ids 1, 2, 3, … in LVM's form, one per old one.
    fn renumbered(old: &[String]) -> Vec<(String, String)> {
        old.iter()
            .enumerate()
            .map(|(i, o)| (o.clone(), new_id(&[i as u8 + 1; 32])))
            .collect()
    }

    #[test]
    fn new_ids_have_lvms_form_and_alphabet() {
        assert_eq!(new_id(&[0; 32]), "000000-0000-0000-0000-0000-0000-000000");
        let mut raw = [0u8; 32];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7).wrapping_add(200);
        }
        let id = new_id(&raw);
        assert!(is_id(&id), "{id}");
        // 200 % 62 = 14 → e, 207 % 62 = 21 → l
        assert!(id.starts_with("el"), "{id}");
        assert!(is_id("xA1djd-XRLR-hkh0-PakQ-rHit-ifke-2k5rJW"));
        assert!(!is_id("xA1djdXRLR-hkh0-PakQ-rHit-ifke-2k5rJW"));
        assert!(!is_id("xA1djd-XRLR-hkh0-PakQ-rHit-ifke-2k5r!W"));
        assert!(!is_id("0b0b0b0b-0000-4000-8000-000000000000"));
    }

    #[test]
    fn every_id_of_a_two_pv_vg_is_replaced_and_nothing_else_changes() {
        let text = fixture("vgdata.vg");
        let before = parse_vg(&text).unwrap();
        let old = metadata_ids(&text).unwrap();
        // the VG, two PVs, one LV
        assert_eq!(old.len(), 4, "{old:?}");
        assert_eq!(old[0], before.id);
        let map = renumbered(&old);
        let out = with_new_ids(&text, &map).unwrap();
        let after = parse_vg(&out).unwrap();
        let new_of = |o: &str| map.iter().find(|(a, _)| a == o).unwrap().1.clone();
        assert_eq!(after.id, new_of(&before.id));
        assert_ne!(after.id, before.id);
        for (a, b) in after.pvs.iter().zip(&before.pvs) {
            assert_eq!(a.id, new_of(&b.id), "{}", b.key);
            assert_eq!(
                (&a.key, a.pe_count, a.pe_start),
                (&b.key, b.pe_count, b.pe_start)
            );
        }
        for (a, b) in after.lvs.iter().zip(&before.lvs) {
            assert_eq!(a.id, new_of(&b.id), "{}", b.name);
            // segments still name the PVs by key: consistent with the new PV ids
            assert_eq!(a.segments, b.segments);
        }
        // nothing but the ids differs
        let mut back = after.clone();
        back.id = before.id.clone();
        for (a, b) in back.pvs.iter_mut().zip(&before.pvs) {
            a.id = b.id.clone();
        }
        for (a, b) in back.lvs.iter_mut().zip(&before.lvs) {
            a.id = b.id.clone();
        }
        assert_eq!(back, before);
        for o in &old {
            assert!(!out.contains(o.as_str()), "{o} is still in the text");
        }
        assert_eq!(metadata_ids(&out).unwrap().len(), 4);
    }

    #[test]
    fn hidden_lvs_are_renewed_too_and_a_missing_id_is_refused() {
        let text = fixture("exotic.vg");
        let old = metadata_ids(&text).unwrap();
        assert_eq!(old.len(), 12, "VG, PV and ten LVs: {old:?}");
        let out = with_new_ids(&text, &renumbered(&old)).unwrap();
        let after = parse_vg(&out).unwrap();
        assert!(after.lvs.iter().all(|l| is_id(&l.id)), "{:?}", after.lvs);
        let e = with_new_ids(&text, &renumbered(&old[..11])).unwrap_err();
        assert!(
            e.to_string().contains("no new identity for id \"10\""),
            "{e}"
        );
        let bad = vec![(old[0].clone(), "not-an-id".to_string())];
        assert!(with_new_ids(&text, &bad).is_err());
    }
}
