//! Every block device of the machine, probed once: its signature (filesystem, swap, container)
//! and, for whole disks, its partition table. fstab specs are resolved against this.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::fstab::Spec;
use super::probe::{self, Found, HEAD_LEN, TAIL_LEN};
use super::record::PartitionTable;
use super::sysfs::{self, BlockDev, Nodes};
use super::table;

/// The probed devices.
pub struct Devices {
    pub list: Vec<BlockDev>,
    /// Signature per device name.
    pub found: HashMap<String, Found>,
    /// Partition table per whole-disk name.
    pub tables: HashMap<String, PartitionTable>,
    pub nodes: Nodes,
    /// Devices that could not be read, with why (reported only if they matter).
    pub unreadable: HashMap<String, String>,
}

/// Device names never worth probing: RAM-backed or optical.
fn skipped(d: &BlockDev) -> bool {
    d.size_bytes == 0
        || ["ram", "zram", "sr", "fd"].iter().any(|p| {
            d.name
                .strip_prefix(p)
                .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
        })
}

impl Devices {
    /// Lists /sys/class/block under `sys` and probes every device through nodes in `dev`.
    pub fn probe_all(sys: &Path, dev: &Path) -> std::io::Result<Devices> {
        let class = sys.join("class/block");
        let list = sysfs::list(&class)?;
        let mut d = Devices {
            list,
            found: HashMap::new(),
            tables: HashMap::new(),
            nodes: Nodes::new(dev),
            unreadable: HashMap::new(),
        };
        for i in 0..d.list.len() {
            let b = d.list[i].clone();
            if skipped(&b) {
                continue;
            }
            if let Err(e) = d.probe_one(&class, &b) {
                d.unreadable.insert(b.name.clone(), e);
            }
        }
        Ok(d)
    }

    fn probe_one(&mut self, class: &Path, b: &BlockDev) -> Result<(), String> {
        let f = self.nodes.open(b).map_err(|e| e.to_string())?;
        if b.partition.is_none() && !b.is_virtual_stack() {
            let sector = sysfs::disk_facts(class, &b.name).logical_sector;
            match table::read(&mut &f, u64::from(sector)) {
                Ok(Some(t)) => {
                    // A disk with a table holds no filesystem of its own.
                    self.tables.insert(b.name.clone(), t);
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => return Err(format!("partition table: {e}")),
            }
        }
        let head = read_at(&f, 0, HEAD_LEN.min(b.size_bytes as usize))?;
        let tail_len = TAIL_LEN.min(b.size_bytes as usize);
        let tail = read_at(&f, b.size_bytes - tail_len as u64, tail_len)?;
        if let Some(found) = probe::probe(&head, &tail, b.size_bytes) {
            self.found.insert(b.name.clone(), found);
        }
        Ok(())
    }

    /// The device called `name`.
    pub fn get(&self, name: &str) -> Option<&BlockDev> {
        self.list.iter().find(|d| d.name == name)
    }

    /// The table of the disk a partition is on, and its number.
    pub fn table_of(&self, d: &BlockDev) -> Option<(&PartitionTable, u32)> {
        Some((self.tables.get(d.parent.as_ref()?)?, d.partition?))
    }

    /// The devices `spec` names, best first: plain partitions and disks before stacked ones.
    /// A device that carries a container is never a filesystem's device.
    pub fn resolve(&self, spec: &Spec) -> Vec<&BlockDev> {
        let id = |d: &BlockDev| -> (String, String) {
            match self.found.get(&d.name) {
                Some(Found::Fs(s)) => (s.uuid.clone(), s.label.clone()),
                Some(Found::Swap(s)) => (s.uuid.clone(), s.label.clone()),
                _ => Default::default(),
            }
        };
        let mut hits: Vec<&BlockDev> = self
            .list
            .iter()
            .filter(|d| match spec {
                Spec::Uuid(u) => !u.is_empty() && id(d).0.eq_ignore_ascii_case(u),
                Spec::Label(l) => !l.is_empty() && id(d).1 == *l,
                Spec::PartUuid(u) => self
                    .table_of(d)
                    .and_then(|(t, n)| table::part_uuid(t, n))
                    .is_some_and(|p| p.eq_ignore_ascii_case(u)),
                Spec::PartLabel(l) => self
                    .table_of(d)
                    .and_then(|(t, n)| table::part_label(t, n))
                    .is_some_and(|p| p == l),
                Spec::Path(p) => self.path_names(p, d),
                Spec::Other(_) => false,
            })
            .collect();
        if let Spec::Path(p) = spec
            && let Some(inner) = by_path_tag(p)
        {
            return self.resolve(&inner);
        }
        hits.sort_by_key(|d| d.is_virtual_stack());
        hits
    }

    /// `/dev/NAME`, `/dev/mapper/DM`, `/dev/VG/LV` naming device `d`.
    fn path_names(&self, p: &str, d: &BlockDev) -> bool {
        let Some(rest) = p.strip_prefix("/dev/") else {
            return false;
        };
        if rest == d.name {
            return true;
        }
        let Some(dm) = &d.dm_name else {
            return false;
        };
        if let Some(m) = rest.strip_prefix("mapper/") {
            return m == dm;
        }
        // /dev/VG/LV is the dm device "VG-LV", dashes inside names doubled.
        rest.split_once('/').is_some_and(|(vg, lv)| {
            format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--")) == *dm
        })
    }

    /// The whole disks `d` lives on (itself, its parent, or the disks under a stack).
    pub fn disks_under(&self, d: &BlockDev) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_disks(d, &mut out, 0);
        out.sort();
        out.dedup();
        out
    }

    fn collect_disks(&self, d: &BlockDev, out: &mut Vec<String>, depth: u32) {
        if let Some(p) = &d.parent {
            out.push(p.clone());
        } else if d.slaves.is_empty() {
            out.push(d.name.clone());
        } else if depth < 16 {
            for s in &d.slaves {
                if let Some(sd) = self.get(s) {
                    self.collect_disks(sd, out, depth + 1);
                }
            }
        }
    }

    /// Reads `len` bytes at `offset` of device `d`.
    pub fn read(&mut self, d: &BlockDev, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let f = self.nodes.open(d).map_err(|e| e.to_string())?;
        read_at(&f, offset, len)
    }
}

/// `/dev/disk/by-uuid/X` and friends, which udev would have made, as the tag they stand for.
fn by_path_tag(p: &str) -> Option<Spec> {
    let rest = p.strip_prefix("/dev/disk/")?;
    let (kind, value) = rest.split_once('/')?;
    let value = unhex(value);
    match kind {
        "by-uuid" => Some(Spec::Uuid(value)),
        "by-label" => Some(Spec::Label(value)),
        "by-partuuid" => Some(Spec::PartUuid(value)),
        "by-partlabel" => Some(Spec::PartLabel(value)),
        _ => None,
    }
}

/// Undoes udev's `\xHH` escapes in /dev/disk link names.
fn unhex(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], b.get(i + 1), hex) {
            (b'\\', Some(b'x'), Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_at(f: &File, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)
        .map_err(|e| format!("reading {len} bytes at {offset}: {e}"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udev_link_names_become_tags() {
        assert_eq!(
            by_path_tag("/dev/disk/by-label/My\\x20Data"),
            Some(Spec::Label("My Data".into()))
        );
        assert_eq!(
            by_path_tag("/dev/disk/by-uuid/abcd-1234"),
            Some(Spec::Uuid("abcd-1234".into()))
        );
        assert_eq!(by_path_tag("/dev/disk/by-id/ata-X"), None);
        assert_eq!(by_path_tag("/dev/vda1"), None);
        assert_eq!(unhex("a\\xZZ\\x41"), "a\\xZZA");
    }
}
