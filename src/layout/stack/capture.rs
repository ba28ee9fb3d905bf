//! The block stack under the recorded filesystems and swaps, captured bottom up from the
//! devices: each device-mapper or MD device under a record is followed down its `slaves/`,
//! and each layer is read from its own headers (LVM label and metadata area, LUKS header, MD
//! superblock) — never from lvm, cryptsetup or mdadm, which the capturing machine may lack.
//!
//! What a restore cannot recreate (a thin pool, multipath, dm-integrity, bcache, a device
//! whose header cannot be read) is named in `unsupported`, with what it is.

use std::collections::HashSet;
use std::path::Path;

use super::{luks, lvm, md};
use crate::layout::devices::Devices;
use crate::layout::probe::Found;
use crate::layout::record::*;
use crate::layout::sysfs::BlockDev;

/// What the capture of the stack adds to the layout.
pub struct Captured<'a> {
    pub stack: &'a mut BlockStack,
    pub unsupported: &'a mut Vec<String>,
    pub warnings: &'a mut Vec<String>,
}

/// Follows every device in `tops` (kernel names of the recorded filesystems' and swaps'
/// devices) down to its disks, recording each layer met. `class` is /sys/class/block;
/// `crypttab` the captured root's `etc/crypttab`, parsed.
pub fn capture(
    devices: &mut Devices,
    class: &Path,
    crypttab: &[luks::CrypttabEntry],
    tops: &[String],
    out: Captured,
) {
    let mut w = Walker {
        devices,
        class,
        crypttab,
        seen: HashSet::new(),
        out,
    };
    for t in tops {
        w.visit(t, 0);
    }
}

struct Walker<'a> {
    devices: &'a mut Devices,
    class: &'a Path,
    crypttab: &'a [luks::CrypttabEntry],
    seen: HashSet<String>,
    out: Captured<'a>,
}

/// A `PartRef` for `d`; its `disk` index is set once the disk list is known.
pub fn part_ref(d: &BlockDev) -> PartRef {
    PartRef {
        disk: 0,
        partition: d.parent.as_ref().and(d.partition),
        name: d.name.clone(),
        dev: d.dev(),
    }
}

impl Walker<'_> {
    fn visit(&mut self, name: &str, depth: u32) {
        if depth > 16 || !self.seen.insert(name.to_string()) {
            return;
        }
        let Some(d) = self.devices.get(name).cloned() else {
            return;
        };
        if !d.is_virtual_stack() {
            return;
        }
        let dm_uuid = d.dm_uuid.clone().unwrap_or_default();
        let ok = if d.name.starts_with("md") && d.dm_name.is_none() {
            self.md(&d)
        } else if dm_uuid.starts_with("LVM-") {
            self.lv(&d)
        } else if dm_uuid.starts_with("CRYPT-LUKS") {
            self.luks(&d)
        } else {
            let what = d
                .dm_uuid
                .as_deref()
                .and_then(|u| u.split(['-', '_']).next())
                .filter(|k| !k.is_empty())
                .unwrap_or("an unknown device-mapper target");
            Err(format!(
                "{} ({what}) is a block layer osimage cannot recreate (multipath, \
                 dm-integrity, bcache and hand-made device-mapper tables are not supported)",
                self.shown(&d)
            ))
        };
        match ok {
            Ok(()) => {
                for s in &d.slaves {
                    self.visit(s, depth + 1);
                }
            }
            Err(why) => self.out.unsupported.push(why),
        }
    }

    /// `dm-0 (/dev/mapper/vg-root)`.
    fn shown(&self, d: &BlockDev) -> String {
        match &d.dm_name {
            Some(n) => format!("{} (/dev/mapper/{n})", d.name),
            None => format!("/dev/{}", d.name),
        }
    }

    fn open(&mut self, d: &BlockDev) -> Result<std::fs::File, String> {
        self.devices
            .nodes
            .open(d)
            .map_err(|e| format!("cannot open /dev/{}: {e}", d.name))
    }

    /// An LV: its VG (once) from the metadata of the PV under it.
    fn lv(&mut self, d: &BlockDev) -> Result<(), String> {
        if self.out.stack.node(&d.name).is_some() {
            return Ok(());
        }
        let mut last_err = format!("{}: no physical volume under it", self.shown(d));
        for s in &d.slaves {
            let Some(sd) = self.devices.get(s).cloned() else {
                continue;
            };
            match self.vg_from_pv(&sd) {
                Ok(vg) => return self.add_vg(vg, d),
                Err(e) => last_err = format!("{} is on {}: {e}", self.shown(d), sd.name),
            }
        }
        Err(last_err)
    }

    fn vg_from_pv(&mut self, pv: &BlockDev) -> Result<VolumeGroup, String> {
        let f = self.open(pv)?;
        let info = lvm::read_pv(&f, pv.size_bytes)
            .map_err(|e| format!("LVM label: {e}"))?
            .ok_or("no LVM label")?;
        let text = info
            .metadata
            .ok_or("the PV keeps no metadata area (read the VG from another PV)")?;
        let meta = lvm::parse_vg(&text).map_err(|e| format!("LVM metadata: {e}"))?;
        let mut vg = VolumeGroup {
            name: meta.name.clone(),
            uuid: meta.id.clone(),
            extent_bytes: meta.extent_size.saturating_mul(512),
            tags: meta.tags.clone(),
            metadata: text.clone(),
            ..Default::default()
        };
        for p in &meta.pvs {
            let dev = self.pv_device(&p.id);
            vg.pvs.push(PhysicalVolume {
                key: p.key.clone(),
                uuid: p.id.clone(),
                device: dev.as_ref().map(part_ref).unwrap_or_default(),
                pe_start_bytes: p.pe_start.saturating_mul(512),
                pe_count: p.pe_count,
                size_bytes: p.dev_size.saturating_mul(512),
            });
        }
        for lv in &meta.lvs {
            let dm = dm_name(&meta.name, &lv.name);
            let kernel = self
                .devices
                .list
                .iter()
                .find(|x| x.dm_name.as_deref() == Some(dm.as_str()))
                .map(|x| x.name.clone())
                .unwrap_or_default();
            vg.lvs.push(LogicalVolume {
                name: lv.name.clone(),
                uuid: lv.id.clone(),
                kernel_name: kernel,
                extents: lv.extents(),
                kind: lv.kind.name().to_string(),
                recreatable: lv.recreatable(),
                hidden: lv.hidden,
                tags: lv.tags.clone(),
            });
        }
        Ok(vg)
    }

    /// The device holding the PV with UUID `uuid`.
    fn pv_device(&self, uuid: &str) -> Option<BlockDev> {
        self.devices
            .list
            .iter()
            .find(|d| {
                matches!(self.devices.found.get(&d.name),
                    Some(Found::Container { kind: ContainerKind::LvmPv, uuid: u, .. })
                        if u.eq_ignore_ascii_case(uuid))
            })
            .cloned()
    }

    fn add_vg(&mut self, vg: VolumeGroup, d: &BlockDev) -> Result<(), String> {
        if self.out.stack.vgs.iter().any(|v| v.uuid == vg.uuid) {
            return Ok(());
        }
        let mut problems = Vec::new();
        for p in &vg.pvs {
            if p.device.name.is_empty() {
                problems.push(format!(
                    "VG {}: its PV {} is not on this machine",
                    vg.name, p.uuid
                ));
            }
        }
        for lv in vg.lvs.iter().filter(|l| !l.recreatable && !l.hidden) {
            problems.push(format!(
                "VG {}: LV {} is a {} volume, which osimage records but cannot recreate \
                 (linear and striped LVs only)",
                vg.name, lv.name, lv.kind
            ));
        }
        if vg.metadata.len() > 4 << 20 {
            problems.push(format!("VG {}: metadata over 4 MiB", vg.name));
        }
        let pvs: Vec<String> = vg.pvs.iter().map(|p| p.device.name.clone()).collect();
        self.out.stack.vgs.push(vg);
        // The PVs' devices are followed down too (LVM on MD, LVM on LUKS).
        for p in pvs.iter().filter(|p| !p.is_empty()) {
            if !d.slaves.contains(p) {
                self.visit(p, 1);
            }
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems.join("; ")),
        }
    }

    /// An open LUKS mapping: the header of the device under it.
    fn luks(&mut self, d: &BlockDev) -> Result<(), String> {
        let [slave] = d.slaves.as_slice() else {
            return Err(format!(
                "{}: a LUKS mapping over {} devices",
                self.shown(d),
                d.slaves.len()
            ));
        };
        let sd = self
            .devices
            .get(slave)
            .cloned()
            .ok_or_else(|| format!("{}: {slave} is gone", self.shown(d)))?;
        let f = self.open(&sd)?;
        let h = luks::read(&f, sd.size_bytes)
            .map_err(|e| format!("{}: LUKS header on {slave}: {e}", self.shown(d)))?
            .ok_or_else(|| format!("{}: no LUKS header on {slave}", self.shown(d)))?;
        let mapping = d.dm_name.clone().unwrap_or_default();
        let crypttab = self
            .crypttab
            .iter()
            .find(|c| c.name == mapping)
            .map(|c| CrypttabLine {
                line: c.line,
                name: c.name.clone(),
                device: c.device.clone(),
                key: c.key.clone().unwrap_or_else(|| "none".into()),
                options: c.options.clone(),
            });
        if crypttab.is_none() {
            self.out.warnings.push(format!(
                "{}: no etc/crypttab line opens it; the restored system may not unlock it at \
                 boot",
                self.shown(d)
            ));
        }
        self.out.stack.luks.push(LuksVolume {
            name: d.name.clone(),
            mapping,
            device: part_ref(&sd),
            version: h.version,
            format_args: h.luks_format_args(),
            open_args: h.persistent_flag_args(),
            uuid: h.uuid,
            label: h.label,
            subsystem: h.subsystem,
            cipher: h.cipher,
            key_bits: h.key_bits,
            sector_size: h.sector_size,
            pbkdf: h.pbkdf,
            data_offset_bytes: h.data_offset_bytes,
            crypttab,
            size_bytes: d.size_bytes,
        });
        Ok(())
    }

    /// An MD array: its members' superblocks and the running array's state.
    fn md(&mut self, d: &BlockDev) -> Result<(), String> {
        let state = md::from_sysfs(&self.class.join(&d.name)).ok();
        let mut array: Option<MdArray> = None;
        let mut members = Vec::new();
        let mut missing = false;
        for s in &d.slaves {
            let Some(sd) = self.devices.get(s).cloned() else {
                continue;
            };
            let f = self.open(&sd)?;
            let sb = md::read(&f, sd.size_bytes)
                .map_err(|e| format!("/dev/{}: MD superblock on {s}: {e}", d.name))?
                .ok_or_else(|| format!("/dev/{}: no MD superblock on {s}", d.name))?;
            missing |= sb.degraded();
            members.push(MdMember {
                role: sb.role.unwrap_or(u32::MAX),
                device: part_ref(&sd),
            });
            array.get_or_insert_with(|| MdArray {
                name: d.name.clone(),
                path: format!("/dev/{}", d.name),
                metadata: sb.metadata.to_string(),
                uuid: sb.uuid.clone(),
                array_name: sb.name.clone(),
                level: sb.level.clone(),
                layout: sb.layout,
                chunk_kib: sb.chunk_kib,
                raid_disks: sb.raid_disks,
                bitmap: sb.bitmap,
                data_offset_sectors: sb.data_offset_sectors,
                size_bytes: d.size_bytes,
                create_args: sb.mdadm_create_args(),
                ..Default::default()
            });
        }
        let mut a = array.ok_or_else(|| format!("/dev/{}: no members", d.name))?;
        members.sort_by_key(|m| m.role);
        a.degraded = state.as_ref().is_some_and(|s| s.degraded > 0)
            || (members.iter().filter(|m| m.role != u32::MAX).count() as u32) < a.raid_disks
            || missing;
        if a.degraded {
            self.out.warnings.push(format!(
                "/dev/{} (MD {}) is degraded: {} of {} members at capture; a restore \
                 recreates it whole",
                d.name,
                a.level,
                members.len(),
                a.raid_disks
            ));
        }
        a.members = members;
        self.out.stack.md.push(a);
        Ok(())
    }
}
