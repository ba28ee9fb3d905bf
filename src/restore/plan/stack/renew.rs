//! `--new-uuids` for the block stack (issue #19; docs/GENERALIZE.md "New identities"): every
//! MD array, LUKS container, VG, PV and LV of the plan gets a fresh UUID in the form its tool
//! takes (`mdadm --uuid` 4×8 hex joined by `:`, `cryptsetup luksFormat --uuid` a version 4
//! UUID, LVM's 32 letters and digits dashed 6-4-4-4-4-4-6 in the metadata `vgcfgrestore` is
//! given and in `pvcreate --uuid`). Each change is a `Renamed` with the other spellings the
//! restored tree may use (`/dev/disk/by-id/md-uuid-…`, GRUB's `mduuid/` and `lvmid/`,
//! `dm-uuid-LVM-<vg><lv>`, `dm-uuid-CRYPT-LUKS2-<hex>-…`, LVM's devices file `PVID=`), so
//! `apply/identities.rs` rewrites every reference.

use super::super::renew::{Fresh, Renamed, uuid_v4};
use super::super::{PlanError, RestorePlan};
use super::{LuksPlan, MdPlan, PlanDev, StackStep, VgPlan};
use crate::layout::stack::{StackError, lvm};

impl RestorePlan {
    /// Fresh identities for every step of the stack, listed in `renamed`.
    pub(in super::super) fn renew_stack(
        &mut self,
        fresh: Fresh<'_>,
        renamed: &mut Vec<Renamed>,
    ) -> Result<(), PlanError> {
        // By index: a mapping that moves is moved in the later steps before they are renewed.
        for i in 0..self.stack.len() {
            let moved = match &mut self.stack[i] {
                StackStep::Md(m) => {
                    renamed.push(renew_md(m, fresh)?);
                    None
                }
                StackStep::Luks(l) => {
                    let (r, moved) = renew_luks(l, fresh)?;
                    renamed.push(r);
                    moved
                }
                StackStep::Vg(v) => {
                    renamed.extend(renew_vg(v, fresh)?);
                    None
                }
            };
            if let Some((old, new)) = moved {
                self.move_volume(&old, &new);
            }
        }
        Ok(())
    }

    /// Every use of stack volume `old` (a path) in the plan now says `new`.
    fn move_volume(&mut self, old: &str, new: &str) {
        let fix = |d: &mut PlanDev| {
            if matches!(d, PlanDev::Volume(v) if v == old) {
                *d = PlanDev::Volume(new.to_string());
            }
        };
        for step in &mut self.stack {
            match step {
                StackStep::Md(m) => m.members.iter_mut().for_each(fix),
                StackStep::Luks(l) => fix(&mut l.on),
                StackStep::Vg(v) => {
                    v.pvs.iter_mut().for_each(|(_, d)| fix(d));
                    // The PVs' `device` hints.
                    v.metadata = v
                        .metadata
                        .replace(&format!("\"{old}\""), &format!("\"{new}\""));
                }
            }
        }
        let volumes = self.filesystems.iter_mut().map(|f| &mut f.volume);
        for v in volumes.chain(self.swaps.iter_mut().map(|s| &mut s.volume)) {
            if v.as_deref() == Some(old) {
                *v = Some(new.to_string());
            }
        }
    }
}

/// `args` with its `--uuid=` option (added if missing) set to `uuid`.
fn with_uuid(args: &mut Vec<String>, uuid: &str) {
    let opt = format!("--uuid={uuid}");
    match args.iter_mut().find(|a| a.starts_with("--uuid=")) {
        Some(a) => *a = opt,
        None => args.push(opt),
    }
}

fn undashed(s: &str) -> String {
    s.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// MD's UUID (`xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`) as blkid prints a member's
/// (`8-4-4-4-12`); `None` when it is not 32 hex digits.
fn md_dashed(colons: &str) -> Option<String> {
    let h = undashed(colons);
    (h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    })
}

fn renew_md(m: &mut MdPlan, fresh: Fresh<'_>) -> Result<Renamed, PlanError> {
    let b = fresh(&format!("MD UUID {}", m.uuid))?;
    let new: Vec<String> = b
        .chunks(4)
        .map(|w| w.iter().map(|x| format!("{x:02x}")).collect())
        .collect();
    let new = new.join(":");
    let old = std::mem::replace(&mut m.uuid, new.clone());
    with_uuid(&mut m.args, &new);
    let mut spellings = vec![(undashed(&old), undashed(&new))];
    if let (Some(o), Some(n)) = (md_dashed(&old), md_dashed(&new)) {
        spellings.push((o, n));
    }
    Ok(Renamed {
        what: format!("MD {} UUID", m.path),
        old,
        new,
        referenced: true,
        spellings,
    })
}

/// The container's new UUID, and its mapping's move when its name holds the old UUID
/// (`luks-<UUID>`, as Fedora's installer names it): the restore then opens it under the
/// name the rewritten crypttab gives it.
fn renew_luks(
    l: &mut LuksPlan,
    fresh: Fresh<'_>,
) -> Result<(Renamed, Option<(String, String)>), PlanError> {
    let new = uuid_v4(fresh(&format!("LUKS UUID {}", l.uuid))?);
    let old = std::mem::replace(&mut l.uuid, new.clone());
    with_uuid(&mut l.args, &new);
    let at = l
        .mapping
        .to_ascii_lowercase()
        .find(&old.to_ascii_lowercase())
        .filter(|_| !old.is_empty());
    let moved = at.map(|at| {
        let from = format!("/dev/mapper/{}", l.mapping);
        l.mapping.replace_range(at..at + old.len(), &new);
        (from, format!("/dev/mapper/{}", l.mapping))
    });
    let r = Renamed {
        what: format!("LUKS {} UUID", l.mapping),
        spellings: vec![(undashed(&old), undashed(&new))],
        old,
        new,
        referenced: true,
    };
    Ok((r, moved))
}

/// The VG's, its PVs' and its LVs' (hidden ones too) new UUIDs, in its metadata and its
/// `pvcreate --uuid` arguments alike.
fn renew_vg(v: &mut VgPlan, fresh: Fresh<'_>) -> Result<Vec<Renamed>, PlanError> {
    let verr = |e: StackError| PlanError(format!("VG {}: {e}", v.name));
    let meta = lvm::parse_vg(&v.metadata).map_err(verr)?;
    let mut map = Vec::new();
    for old in lvm::metadata_ids(&v.metadata).map_err(verr)? {
        let label = format!("LVM VG {} id {old}", v.name);
        let (a, b) = (fresh(&label)?, fresh(&label)?);
        let mut raw = [0u8; 32];
        raw[..16].copy_from_slice(&a);
        raw[16..].copy_from_slice(&b);
        map.push((old, lvm::new_id(&raw)));
    }
    let new_of = |old: &str| {
        map.iter()
            .find(|(o, _)| undashed(o) == undashed(old))
            .map(|(_, n)| n.clone())
            .ok_or_else(|| PlanError(format!("VG {}: UUID {old} is not in its metadata", v.name)))
    };
    let renamed = |what: String, old: &str, new: &str| Renamed {
        what,
        old: old.to_string(),
        new: new.to_string(),
        referenced: true,
        spellings: vec![(undashed(old), undashed(new))],
    };
    let mut out = vec![renamed(
        format!("LVM VG {} UUID", v.name),
        &meta.id,
        &new_of(&meta.id)?,
    )];
    v.uuid = new_of(&v.uuid)?;
    for (uuid, dev) in &mut v.pvs {
        let new = new_of(uuid)?;
        out.push(renamed(format!("LVM PV UUID on {dev}"), uuid, &new));
        *uuid = new;
    }
    for lv in &meta.lvs {
        let what = format!("LVM LV {}/{} UUID", v.name, lv.name);
        out.push(renamed(what, &lv.id, &new_of(&lv.id)?));
    }
    v.metadata = lvm::with_new_ids(&v.metadata, &map).map_err(verr)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::super::tests::MIB;
    use super::super::tests::{luks_lvm_layout, raid1_layout, vg_of};
    use super::*;
    use crate::restore::plan::kernel_random;

    fn luks_of(p: &RestorePlan) -> &LuksPlan {
        match &p.stack[0] {
            StackStep::Luks(l) => l,
            other => panic!("{other:?}"),
        }
    }

    fn is_v4(u: &str) -> bool {
        u.len() == 36
            && u.as_bytes()[14] == b'4'
            && u.split('-').map(str::len).eq([8, 4, 4, 4, 12])
            && u.bytes()
                .all(|b| b == b'-' || matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn without_new_uuids_every_layer_keeps_its_recorded_uuid() {
        let l = luks_lvm_layout("vda3_crypt");
        let p = RestorePlan::new(&l, "/dev/sdb", 256 * MIB, 512).unwrap();
        assert_eq!(luks_of(&p).uuid, l.stack.luks[0].uuid);
        let v = vg_of(&p);
        assert_eq!(v.uuid, l.stack.vgs[0].uuid);
        assert_eq!(v.pvs[0].0, l.stack.vgs[0].pvs[0].uuid);
        let ids = lvm::metadata_ids(&v.metadata).unwrap();
        let recorded = lvm::metadata_ids(&l.stack.vgs[0].metadata).unwrap();
        assert_eq!(ids, recorded);
        assert!(p.renamed.is_empty());
    }

    #[test]
    fn new_uuids_renew_the_luks_container_the_vg_its_pv_and_every_lv_consistently() {
        let l = luks_lvm_layout("vda3_crypt");
        let mut p = RestorePlan::new(&l, "/dev/sdb", 256 * MIB, 512).unwrap();
        let before = p.clone();
        p.renew_identities(&l, &mut kernel_random).unwrap();
        // LUKS: a version 4 UUID, in luksFormat's arguments, the old one nowhere.
        let (lk, old_lk) = (luks_of(&p), luks_of(&before));
        assert!(is_v4(&lk.uuid), "{}", lk.uuid);
        assert_ne!(lk.uuid, old_lk.uuid);
        assert!(
            lk.args.contains(&format!("--uuid={}", lk.uuid)),
            "{:?}",
            lk.args
        );
        assert!(!lk.args.join(" ").contains(&old_lk.uuid), "{:?}", lk.args);
        assert_eq!(lk.mapping, "vda3_crypt", "a name without the UUID stays");
        // LVM: the plan's VG and PV UUIDs are the metadata's, all new, in LVM's form.
        let (v, old_v) = (vg_of(&p), vg_of(&before));
        let meta = lvm::parse_vg(&v.metadata).unwrap();
        let old_meta = lvm::parse_vg(&old_v.metadata).unwrap();
        assert_eq!(meta.id, v.uuid);
        assert_ne!(v.uuid, old_v.uuid);
        assert!(lvm::ids::is_id(&v.uuid), "{}", v.uuid);
        assert_eq!(
            meta.pvs[0].id, v.pvs[0].0,
            "pvcreate --uuid matches the metadata"
        );
        assert_ne!(v.pvs[0].0, old_v.pvs[0].0);
        assert_eq!(v.pvs[0].1, old_v.pvs[0].1);
        for (a, b) in meta.lvs.iter().zip(&old_meta.lvs) {
            assert_eq!(a.name, b.name);
            assert_ne!(a.id, b.id, "LV {}", a.name);
            assert!(lvm::ids::is_id(&a.id), "{}", a.id);
            assert_eq!(a.segments, b.segments);
        }
        for old in lvm::metadata_ids(&old_v.metadata).unwrap() {
            assert!(!v.metadata.contains(&old), "{old} still in the metadata");
        }
        assert_eq!(v.lvs, old_v.lvs, "sizes unchanged");
        // Each layer's pair is listed, with its undashed spelling.
        let pair = |what: &str| {
            p.renamed
                .iter()
                .find(|r| r.what == what)
                .unwrap_or_else(|| panic!("no {what:?} in {:#?}", p.renamed))
        };
        let r = pair("LUKS vda3_crypt UUID");
        assert_eq!(
            (r.old.as_str(), r.new.as_str()),
            (old_lk.uuid.as_str(), lk.uuid.as_str())
        );
        assert_eq!(r.spellings, [(undashed(&r.old), undashed(&r.new))]);
        let r = pair("LVM VG vgsys UUID");
        assert_eq!((&r.old, &r.new), (&old_v.uuid, &v.uuid));
        let r = pair("LVM PV UUID on /dev/mapper/vda3_crypt");
        assert_eq!((&r.old, &r.new), (&old_v.pvs[0].0, &v.pvs[0].0));
        for lv in ["root", "swap", "home"] {
            let r = pair(&format!("LVM LV vgsys/{lv} UUID"));
            let now = meta.lvs.iter().find(|x| x.name == lv).unwrap();
            assert_eq!(r.new, now.id);
            assert!(r.referenced);
        }
        // The plan shows them per layer.
        let text = p.to_string();
        assert!(
            text.contains(&format!("LUKS vda3_crypt (UUID {})", lk.uuid)),
            "{text}"
        );
        assert!(
            text.contains(&format!("LVM volume group vgsys (UUID {})", v.uuid)),
            "{text}"
        );
        assert!(text.contains("LVM VG vgsys UUID"), "{text}");
        assert!(text.contains("NEW UUIDs"), "{text}");
    }

    #[test]
    fn a_luks_mapping_named_after_its_uuid_follows_the_new_one() {
        let l = luks_lvm_layout("luks-0b0b0b0b-0000-4000-8000-000000000000");
        let mut p = RestorePlan::new(&l, "/dev/sdb", 256 * MIB, 512).unwrap();
        let old_hint = "\"/dev/mapper/luks-0b0b0b0b-0000-4000-8000-000000000000\"";
        assert!(vg_of(&p).metadata.contains(old_hint));
        p.renew_identities(&l, &mut kernel_random).unwrap();
        let new = luks_of(&p).uuid.clone();
        let path = format!("/dev/mapper/luks-{new}");
        assert_eq!(luks_of(&p).mapping, format!("luks-{new}"));
        let v = vg_of(&p);
        assert_eq!(v.pvs[0].1, PlanDev::Volume(path.clone()));
        assert!(
            v.metadata.contains(&format!("\"{path}\"")),
            "{}",
            v.metadata
        );
        assert!(!v.metadata.contains(old_hint));
        let what = format!("LVM PV UUID on {path}");
        assert!(p.renamed.iter().any(|r| r.what == what), "{:#?}", p.renamed);
    }

    #[test]
    fn new_uuids_give_an_md_array_a_fresh_uuid_in_mdadms_form() {
        use super::super::super::several::{DiskTarget, plan_disks};
        let l = raid1_layout();
        let t = |source: &str, device: &str| DiskTarget {
            source: source.into(),
            device: device.into(),
            size_bytes: 1 << 30,
            sector: 512,
        };
        let mut plans = plan_disks(&l, &[t("vda", "/dev/sdb"), t("vdb", "/dev/sdc")]).unwrap();
        let StackStep::Md(kept) = plans[0].stack[0].clone() else {
            panic!("{:?}", plans[0].stack)
        };
        assert_eq!(kept.uuid, "11111111:22222222:33333333:44444444");
        let mut n = 0u8;
        let mut fresh = |_: &str| {
            n += 1;
            Ok([0xa0 + n; 16])
        };
        plans[0].renew_identities(&l, &mut fresh).unwrap();
        let StackStep::Md(m) = &plans[0].stack[0] else {
            panic!("{:?}", plans[0].stack)
        };
        // the array is the last identity renewed
        let b = format!("{:02x}", 0xa0 + n);
        let word = b.repeat(4);
        assert_eq!(m.uuid, [word.as_str(); 4].join(":"));
        assert_eq!(
            m.args,
            [
                "--metadata=1.2",
                "--level=raid1",
                &format!("--uuid={}", m.uuid)
            ]
        );
        let r = plans[0]
            .renamed
            .iter()
            .find(|r| r.what == "MD /dev/md0 UUID")
            .unwrap();
        assert_eq!(r.old, kept.uuid);
        assert_eq!(
            r.spellings,
            [
                (
                    "11111111222222223333333344444444".to_string(),
                    word.repeat(4)
                ),
                (
                    "11111111-2222-2222-3333-333344444444".to_string(),
                    format!("{word}-{b}{b}-{b}{b}-{b}{b}-{b}{b}{word}")
                )
            ]
        );
        assert_eq!(m.members, kept.members);
    }
}
