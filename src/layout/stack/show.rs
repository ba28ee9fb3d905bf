//! The block stack as `osimage info` shows it: one tree per stacked filesystem or swap, from
//! what the system mounts down to the partitions.
//!
//! ```text
//! Block stack:
//!   / (ext4) on /dev/mapper/vg0-root
//!   └─ LV vg0/root: linear, 6.0 GiB (1536 extents), UUID …
//!      └─ VG vg0: 4.0 MiB extents, UUID …
//!         └─ PV vda3: 9.0 GiB, data from 1.0 MiB, UUID …
//! ```

use std::fmt::Write;

use crate::layout::record::*;
use crate::units::human_bytes as size;

/// The trees, or an empty string when nothing is stacked.
pub fn tree(l: &DiskLayout) -> String {
    let st = &l.stack;
    if st.is_empty() {
        return String::new();
    }
    let mut out = String::from("Block stack:\n");
    let tops = l
        .filesystems
        .iter()
        .map(|f| (format!("{} ({})", f.mount_point, f.fstype), &f.device))
        .chain(l.swaps.iter().map(|s| ("swap".to_string(), &s.device)));
    let mut shown = Vec::new();
    for (what, dev) in tops {
        let Some(node) = st.node(&dev.name) else {
            continue;
        };
        // btrfs subvolumes share a device: one tree for all of them.
        if shown.contains(&dev.name) {
            continue;
        }
        shown.push(dev.name.clone());
        let _ = writeln!(out, "  {what} on {}", node.path());
        layer(&mut out, st, dev, 1, 0);
    }
    out
}

/// The line for `r` at `depth`, then the layers under it.
fn layer(out: &mut String, st: &BlockStack, r: &PartRef, depth: usize, guard: u32) {
    if guard > 16 {
        return;
    }
    let pad = "   ".repeat(depth - 1);
    let mut line = |text: String| {
        let _ = writeln!(out, "  {pad}└─ {text}");
    };
    match st.node(&r.name) {
        None => line(format!("{} (partition or disk)", or_dash(&r.name))),
        Some(StackNode::Lv(vg, lv)) => {
            line(format!(
                "LV {}/{}: {}, {} ({} extents), UUID {}",
                vg.name,
                lv.name,
                lv.kind,
                size(lv.extents.saturating_mul(vg.extent_bytes)),
                lv.extents,
                or_dash(&lv.uuid)
            ));
            let pad = "   ".repeat(depth);
            let _ = writeln!(
                out,
                "  {pad}└─ VG {}: {} extents, {} PV(s), UUID {}",
                vg.name,
                size(vg.extent_bytes),
                vg.pvs.len(),
                or_dash(&vg.uuid)
            );
            for pv in &vg.pvs {
                let pad = "   ".repeat(depth + 1);
                let _ = writeln!(
                    out,
                    "  {pad}└─ PV {}: {}, data from {}, UUID {}",
                    or_dash(&pv.device.name),
                    size(pv.size_bytes),
                    size(pv.pe_start_bytes),
                    or_dash(&pv.uuid)
                );
                if st.node(&pv.device.name).is_some() {
                    layer(out, st, &pv.device, depth + 3, guard + 1);
                }
            }
        }
        Some(StackNode::Luks(l)) => {
            line(format!(
                "LUKS{} {} on {}: {}, {}-bit key, {}, UUID {}",
                l.version,
                l.mapping,
                or_dash(&l.device.name),
                l.cipher,
                l.key_bits,
                l.pbkdf,
                or_dash(&l.uuid)
            ));
            if st.node(&l.device.name).is_some() {
                layer(out, st, &l.device, depth + 1, guard + 1);
            }
        }
        Some(StackNode::Md(m)) => {
            let members: Vec<String> = m
                .members
                .iter()
                .map(|x| match x.role {
                    u32::MAX => format!("{} (spare)", x.device.name),
                    r => format!("{}[{r}]", x.device.name),
                })
                .collect();
            line(format!(
                "MD {} {}: metadata {}, {} of {} members: {}{}, UUID {}",
                m.path,
                m.level,
                m.metadata,
                m.members.len(),
                m.raid_disks,
                members.join(" "),
                if m.degraded { ", DEGRADED" } else { "" },
                or_dash(&m.uuid)
            ));
            for x in &m.members {
                if st.node(&x.device.name).is_some() {
                    layer(out, st, &x.device, depth + 1, guard + 1);
                }
            }
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lv_on_luks_on_md_shows_every_layer() {
        let p = |name: &str| PartRef {
            name: name.into(),
            ..Default::default()
        };
        let mut l = DiskLayout::default();
        l.filesystems.push(FsRecord {
            device: p("dm-2"),
            fstype: "ext4".into(),
            mount_point: "/".into(),
            ..Default::default()
        });
        l.stack.md.push(MdArray {
            name: "md0".into(),
            path: "/dev/md0".into(),
            metadata: "1.2".into(),
            level: "raid1".into(),
            raid_disks: 2,
            members: vec![
                MdMember {
                    role: 0,
                    device: p("vda2"),
                },
                MdMember {
                    role: 1,
                    device: p("vdb2"),
                },
            ],
            ..Default::default()
        });
        l.stack.luks.push(LuksVolume {
            name: "dm-0".into(),
            mapping: "md0_crypt".into(),
            device: p("md0"),
            version: 2,
            ..Default::default()
        });
        l.stack.vgs.push(VolumeGroup {
            name: "vg".into(),
            extent_bytes: 4 << 20,
            pvs: vec![PhysicalVolume {
                device: p("dm-0"),
                ..Default::default()
            }],
            lvs: vec![LogicalVolume {
                name: "root".into(),
                kernel_name: "dm-2".into(),
                extents: 10,
                kind: "linear".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let t = tree(&l);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[1], "  / (ext4) on /dev/mapper/vg-root");
        assert!(
            lines[2].starts_with("  └─ LV vg/root: linear, 40.0 MiB (10 extents)"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("     └─ VG vg: 4.0 MiB extents, 1 PV(s)"),
            "{t}"
        );
        assert!(lines[4].starts_with("        └─ PV dm-0:"), "{t}");
        assert!(lines[5].contains("└─ LUKS2 md0_crypt on md0"), "{t}");
        assert!(
            lines[6]
                .contains("└─ MD /dev/md0 raid1: metadata 1.2, 2 of 2 members: vda2[0] vdb2[1]"),
            "{t}"
        );
        assert_eq!(lines.len(), 7, "{t}");
        assert_eq!(tree(&DiskLayout::default()), "");
    }
}
