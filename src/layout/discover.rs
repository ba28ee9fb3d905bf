//! Layout capture: the captured root's fstab resolved against the probed block devices, the
//! mount table for what fstab leaves out, then the disks, containers and boot set-up under it.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::LayoutError;
use super::boot;
use super::devices::Devices;
use super::fstab::{self, Spec};
use super::probe::Found;
use super::record::*;
use super::sysfs::{self, BlockDev};
use super::table::{self, BOOT_CODE_LEN, MAX_GAP};
use crate::scan::mountinfo::{self, Mount};

/// Filesystem types a restore can recreate (the supported list).
pub const RESTORABLE_FS: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat"];

/// Where the machine's facts are read from: the real /sys, /dev and mount table, or a test's.
#[derive(Clone, Debug)]
pub struct Sources {
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub mountinfo: PathBuf,
}

impl Sources {
    /// This machine's.
    pub fn host() -> Self {
        Sources {
            sys: "/sys".into(),
            dev: "/dev".into(),
            mountinfo: "/proc/self/mountinfo".into(),
        }
    }
}

/// Captures the layout of the system at `root` from this machine's devices.
pub fn capture_layout(root: &Path) -> Result<DiskLayout, LayoutError> {
    capture_with(root, &Sources::host())
}

/// Captures the layout of the system at `root`, reading machine facts from `src`.
pub fn capture_with(root: &Path, src: &Sources) -> Result<DiskLayout, LayoutError> {
    Ok(capture_beside_output(root, None, src)?.layout)
}

/// A filesystem mounted under the capture root that is not the system's: a capture's output
/// goes there and the root's `etc/fstab` does not mount it (issue #24: a USB disk mounted at
/// /mnt/usb to receive the ISO). Neither scanned nor recorded in the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFs {
    /// Where it is mounted on this machine (absolute).
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The mount's source (`/dev/sdb1`).
    pub source: String,
}

impl std::fmt::Display for OutputFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.mount_point.display();
        write!(f, "{p} ({} on {})", self.fstype, self.source)
    }
}

/// The layout of a capture whose output goes to a directory, and the output's filesystem when
/// it is mounted under the root but is not the system's (then left out of the layout).
#[derive(Clone, Debug)]
pub struct CapturedLayout {
    pub layout: DiskLayout,
    pub output_fs: Option<OutputFs>,
}

/// `capture_with` for a capture writing into `output_dir` (None: no output to consider). The
/// filesystem `output_dir` is on is left out of the layout, together with what is mounted
/// under it, when it is mounted under `root` and `root`'s fstab does not mount it, neither
/// at its mount point nor by its device (UUID=, LABEL=, … as resolved here).
pub fn capture_beside_output(
    root: &Path,
    output_dir: Option<&Path>,
    src: &Sources,
) -> Result<CapturedLayout, LayoutError> {
    let mut b = Builder::start(root, src, output_dir)?;
    b.add_other_mounts();
    let output_fs = b.output_fs();
    if b.out.filesystems.is_empty() && b.out.swaps.is_empty() {
        b.none();
        return Ok(CapturedLayout {
            layout: b.out,
            output_fs,
        });
    }
    if !b.out.filesystems.iter().any(|f| f.mount_point == "/") {
        b.out.unsupported.push(
            "no filesystem for /: etc/fstab has no usable / entry and the capture root is not \
             a mounted block filesystem"
                .into(),
        );
    }
    b.stack();
    b.disks();
    b.containers();
    b.btrfs_subvolumes();
    let mut warnings = std::mem::take(&mut b.out.warnings);
    b.out.boot = boot::capture(&b.root, &src.sys, &b.out, &mut b.devices, &mut warnings);
    b.out.warnings = warnings;
    Ok(CapturedLayout {
        layout: b.out,
        output_fs,
    })
}

/// Only the output's filesystem of `capture_beside_output`, when it is left out: what a
/// capture will leave out, to show before it starts.
pub fn output_fs(
    root: &Path,
    output_dir: &Path,
    src: &Sources,
) -> Result<Option<OutputFs>, LayoutError> {
    Ok(Builder::start(root, src, Some(output_dir))?.output_fs())
}

struct Builder {
    root: PathBuf,
    class: PathBuf,
    devices: Devices,
    mounts: Vec<Mount>,
    out: DiskLayout,
    /// The mount the output goes to when it is not the system's (`capture_beside_output`).
    output_mount: Option<Mount>,
}

impl Builder {
    /// Reads fstab, the block devices and the mount table, records fstab's entries and finds
    /// the output's filesystem when it is not the system's.
    fn start(root: &Path, src: &Sources, output_dir: Option<&Path>) -> Result<Self, LayoutError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| LayoutError::Io { op, path, source }
        };
        let root = std::fs::canonicalize(root).map_err(io("resolve the capture root", root))?;
        let mut out = DiskLayout::default();
        let fstab_path = root.join("etc/fstab");
        match std::fs::read(&fstab_path) {
            Ok(text) => {
                let (entries, bad) = fstab::parse(&String::from_utf8_lossy(&text));
                out.fstab = entries;
                for line in bad {
                    out.warnings.push(format!(
                        "etc/fstab line {line}: fewer than two fields, ignored"
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read", &fstab_path)(e)),
        }
        let class = src.sys.join("class/block");
        let devices =
            Devices::probe_all(&src.sys, &src.dev).map_err(io("list block devices in", &class))?;
        let mounts = match std::fs::read(&src.mountinfo) {
            Ok(text) => mountinfo::parse(&text).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut b = Builder {
            root,
            class,
            devices,
            mounts,
            out,
            output_mount: None,
        };
        b.add_fstab_entries();
        b.output_mount = output_dir.and_then(|d| b.find_output_mount(d));
        Ok(b)
    }

    /// `output_mount` as the capture reports it.
    fn output_fs(&self) -> Option<OutputFs> {
        self.output_mount.as_ref().map(|m| OutputFs {
            mount_point: PathBuf::from(std::ffi::OsStr::from_bytes(&m.mount_point)),
            fstype: m.fstype.clone(),
            source: m.source.clone(),
        })
    }

    /// The mount holding `dir` (the deepest mount point above it, the last listed of several
    /// on one point), when it is a block filesystem mounted under the root, not under a
    /// run-time directory, that fstab mounts neither at its mount point nor by its device.
    /// Called after `add_fstab_entries`, whose records say which devices fstab names.
    fn find_output_mount(&self, dir: &Path) -> Option<Mount> {
        let dir = std::fs::canonicalize(dir).ok()?;
        let dir = dir.as_os_str().as_bytes();
        let m = self
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| crate::scan::filesystems::is_under(dir, &m.mount_point))
            .max_by_key(|(i, m)| (m.mount_point.len(), *i))?
            .1;
        let rel = self.relative(&m.mount_point)?;
        if rel.is_empty() || volatile(&rel) || !mountinfo::is_local_block(&m.fstype) {
            return None;
        }
        let mount_point = format!("/{}", String::from_utf8_lossy(&rel));
        let at_point = self.out.fstab.iter().any(|e| {
            let p = e.mount_point.trim_end_matches('/');
            p == mount_point
        });
        let device = self.device_of(m);
        let by_device = device.is_some_and(|d| {
            let names = |n: &String| *n == d.name;
            self.out
                .filesystems
                .iter()
                .any(|f| f.in_fstab && names(&f.device.name))
                || self.out.swaps.iter().any(|s| names(&s.device.name))
        });
        (!at_point && !by_device).then(|| m.clone())
    }

    /// The block device a mount is on: by its device number, else by its `/dev/` source.
    fn device_of(&self, m: &Mount) -> Option<&BlockDev> {
        let by_dev = self.devices.list.iter().find(|d| d.dev() == m.dev);
        let by_source = || {
            m.source
                .strip_prefix("/dev/")
                .and_then(|n| self.devices.get(n))
        };
        by_dev.or_else(by_source)
    }

    /// One record per fstab entry that names a block device.
    fn add_fstab_entries(&mut self) {
        for e in self.out.fstab.clone() {
            let spec = fstab::spec(&e);
            let named_device = match &spec {
                Spec::Other(_) => false,
                Spec::Path(p) => p.starts_with("/dev/"),
                _ => true,
            };
            if !named_device || fstab::option(&e.options, "bind").is_some() {
                continue;
            }
            let hits = self.devices.resolve(&spec);
            let Some(d) = hits.first().map(|d| (*d).clone()) else {
                self.unresolved(&e);
                continue;
            };
            if hits.iter().filter(|h| !h.is_virtual_stack()).count() > 1 {
                let names: Vec<_> = hits.iter().map(|h| h.name.as_str()).collect();
                self.out.warnings.push(format!(
                    "etc/fstab line {}: {} matches several devices ({}); using {}",
                    e.line,
                    e.spec,
                    names.join(", "),
                    d.name
                ));
            }
            if e.fstype == "swap" {
                self.add_swap(&e, &d);
            } else {
                self.add_fs(&e, &d);
            }
        }
    }

    fn unresolved(&mut self, e: &FstabEntry) {
        let msg = format!(
            "etc/fstab line {}: {} ({}) matches no block device on this machine",
            e.line, e.spec, e.mount_point
        );
        if fstab::optional(e) || e.fstype == "swap" {
            self.out.warnings.push(msg);
        } else {
            self.out.unsupported.push(msg);
        }
    }

    fn part_ref(d: &BlockDev) -> PartRef {
        super::stack::capture::part_ref(d)
    }

    /// The LVM, LUKS and MD layers under the recorded filesystems and swaps.
    fn stack(&mut self) {
        let crypttab = match std::fs::read(self.root.join("etc/crypttab")) {
            Ok(t) => super::stack::luks::parse_crypttab(&String::from_utf8_lossy(&t)),
            Err(_) => Vec::new(),
        };
        let tops: Vec<String> = self
            .out
            .filesystems
            .iter()
            .map(|f| f.device.name.clone())
            .chain(self.out.swaps.iter().map(|s| s.device.name.clone()))
            .collect();
        let out = super::stack::capture::Captured {
            stack: &mut self.out.stack,
            unsupported: &mut self.out.unsupported,
            warnings: &mut self.out.warnings,
        };
        super::stack::capture::capture(&mut self.devices, &self.class, &crypttab, &tops, out);
    }

    fn add_swap(&mut self, e: &FstabEntry, d: &BlockDev) {
        let Some(Found::Swap(s)) = self.devices.found.get(&d.name) else {
            self.out.unsupported.push(format!(
                "etc/fstab line {}: {} is not a swap area",
                e.line, d.name
            ));
            return;
        };
        self.out.swaps.push(SwapRecord {
            device: Self::part_ref(d),
            uuid: s.uuid.clone(),
            label: s.label.clone(),
            size_bytes: s.size_bytes,
            page_size: s.page_size,
            in_fstab: true,
            options: e.options.clone(),
        });
    }

    fn add_fs(&mut self, e: &FstabEntry, d: &BlockDev) {
        let mut rec = FsRecord {
            device: Self::part_ref(d),
            mount_point: e.mount_point.clone(),
            mount_options: e.options.clone(),
            pass: e.pass,
            in_fstab: true,
            size_bytes: d.size_bytes,
            ..Default::default()
        };
        match self.devices.found.get(&d.name) {
            Some(Found::Fs(s)) => {
                rec.fstype = s.fstype.into();
                rec.uuid = s.uuid.clone();
                rec.label = s.label.clone();
                rec.features = s.features.clone();
                rec.size_bytes = s.size_bytes.unwrap_or(d.size_bytes);
                rec.used_bytes = s.used_bytes;
                let both_ext = e.fstype.starts_with("ext") && s.fstype.starts_with("ext");
                if e.fstype != "auto" && e.fstype != s.fstype && !both_ext {
                    self.out.warnings.push(format!(
                        "etc/fstab line {}: says {} but {} holds {}",
                        e.line, e.fstype, d.name, s.fstype
                    ));
                }
            }
            _ => {
                rec.fstype = e.fstype.clone();
                let why = match self.devices.unreadable.get(&d.name) {
                    Some(err) => format!("cannot be read ({err})"),
                    None => "holds no filesystem signature osimage knows".into(),
                };
                self.out.warnings.push(format!(
                    "{} ({}) {why}: its UUID, label and mkfs features are unknown",
                    e.mount_point, d.name
                ));
            }
        }
        if let (FsFeatures::Btrfs(f), Some(sv)) = (
            &mut rec.features,
            fstab::option(&e.options, "subvol").filter(|s| !s.is_empty()),
        ) && !f.subvolumes.iter().any(|x| x == sv)
        {
            f.subvolumes.push(sv.to_string());
        }
        self.finish_fs(rec, d);
    }

    /// The subvolumes of each btrfs filesystem the capture reads (once per UUID). Without
    /// btrfs-progs a warning says only fstab's `subvol=` will be recreated.
    fn btrfs_subvolumes(&mut self) {
        for f in self.out.filesystems.clone() {
            if f.fstype != "btrfs" || self.out.btrfs.iter().any(|v| v.uuid == f.uuid) {
                continue;
            }
            let Some(rel) = &f.mounted_at else { continue };
            let dir = self.root.join(std::ffi::OsStr::from_bytes(rel));
            match super::btrfs::subvolumes(&dir, &f.uuid) {
                Ok(v) => self.out.btrfs.push(v),
                Err(e) => self.out.warnings.push(format!(
                    "{} (btrfs {}): subvolumes not listed ({e}); a restore recreates only \
                     those named by fstab subvol= options",
                    f.mount_point, f.uuid
                )),
            }
        }
    }

    /// Mount facts, restorability checks, then the record joins the layout.
    fn finish_fs(&mut self, mut rec: FsRecord, d: &BlockDev) {
        rec.mounted_at = self.mounted_at(d, &rec.mount_point);
        if rec.used_bytes.is_none() {
            rec.used_bytes = rec.mounted_at.as_ref().and_then(|rel| self.used(d, rel));
        }
        if !RESTORABLE_FS.contains(&rec.fstype.as_str()) {
            self.out.unsupported.push(format!(
                "{} ({}) is {}, which osimage cannot recreate yet",
                rec.mount_point,
                d.name,
                if rec.fstype.is_empty() || rec.fstype == "auto" {
                    "an unrecognised filesystem"
                } else {
                    &rec.fstype
                }
            ));
        }
        self.out.filesystems.push(rec);
    }

    /// The capture root as bytes, without a trailing slash ("" for /).
    fn root_bytes(&self) -> Vec<u8> {
        let r = self.root.as_os_str().as_bytes();
        r.strip_suffix(b"/").unwrap_or(r).to_vec()
    }

    /// `mp` relative to the capture root, if at or under it.
    fn relative(&self, mp: &[u8]) -> Option<Vec<u8>> {
        let root = self.root_bytes();
        let rest = mp.strip_prefix(&root[..])?;
        match rest {
            [] => Some(Vec::new()),
            [b'/', tail @ ..] => Some(tail.to_vec()),
            _ => None,
        }
    }

    /// Where the capture reads this filesystem's files: a mount of the device itself under the
    /// root, else whatever is mounted at its fstab mount point (e.g. a copy of an ESP).
    fn mounted_at(&self, d: &BlockDev, mount_point: &str) -> Option<Vec<u8>> {
        let own = self.mounts.iter().rev().find(|m| {
            (m.dev == d.dev() || m.source == format!("/dev/{}", d.name))
                && self.relative(&m.mount_point).is_some()
        });
        if let Some(m) = own {
            return self.relative(&m.mount_point);
        }
        let mut want = self.root_bytes();
        let mp = mount_point.trim_end_matches('/');
        want.extend_from_slice(mp.as_bytes());
        if want.is_empty() {
            want.push(b'/');
        }
        self.mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == want)
            .and_then(|m| self.relative(&m.mount_point))
    }

    /// Used bytes by statvfs, when `d` itself is mounted at `rel`.
    fn used(&self, d: &BlockDev, rel: &[u8]) -> Option<u64> {
        let path = self.root.join(std::ffi::OsStr::from_bytes(rel));
        if rustix::fs::stat(&path).ok()?.st_dev != d.dev() {
            return None;
        }
        let v = rustix::fs::statvfs(&path).ok()?;
        Some(
            v.f_blocks
                .saturating_sub(v.f_bfree)
                .saturating_mul(v.f_frsize),
        )
    }

    /// Block filesystems mounted at or under the root that fstab did not describe.
    fn add_other_mounts(&mut self) {
        for m in self.mounts.clone() {
            let Some(rel) = self.relative(&m.mount_point) else {
                continue;
            };
            // Under /run, /tmp, /dev... (run-time state the capture skips): a backup disk the
            // image is being written to, a USB stick — not the system's (fstab would say so).
            if volatile(&rel) {
                continue;
            }
            // The output's filesystem, which fstab does not mount, and what is under it.
            let output = self.output_mount.as_ref();
            if output
                .is_some_and(|o| crate::scan::filesystems::is_under(&m.mount_point, &o.mount_point))
            {
                continue;
            }
            // A bind mount of a sub-directory (a container's /etc/hosts) is no filesystem of
            // the system; a btrfs subvolume mount is.
            if m.root != b"/" && m.fstype != "btrfs" {
                continue;
            }
            let Some(d) = self.device_of(&m).cloned() else {
                continue;
            };
            let mount_point = format!("/{}", String::from_utf8_lossy(&rel));
            let known = self.out.filesystems.iter().any(|f| {
                f.mount_point == mount_point || (f.device.name == d.name && m.fstype != "btrfs")
            });
            if known || !mountinfo::is_local_block(&m.fstype) {
                continue;
            }
            let e = FstabEntry {
                spec: format!("/dev/{}", d.name),
                mount_point,
                fstype: m.fstype.clone(),
                options: "defaults".into(),
                ..Default::default()
            };
            self.add_fs(&e, &d);
            if let Some(f) = self.out.filesystems.last_mut() {
                f.in_fstab = false;
            }
        }
    }

    fn none(&mut self) {
        let root = self.root.display();
        self.out.none = Some(if self.out.fstab.is_empty() {
            format!(
                "{root} is a plain directory: it has no etc/fstab and is not a mounted block \
                 filesystem"
            )
        } else {
            format!(
                "{root} is a plain directory: no entry of its etc/fstab names a block device \
                 on this machine and it is not a mounted block filesystem"
            )
        });
        // Without a layout there is nothing to restore half-way: the reasons become notes.
        let reasons = std::mem::take(&mut self.out.unsupported);
        self.out.warnings.extend(reasons);
    }

    /// The disks under every record, their facts and tables; then each record's disk index.
    fn disks(&mut self) {
        let used: Vec<String> = self
            .out
            .filesystems
            .iter()
            .map(|f| &f.device.name)
            .chain(self.out.swaps.iter().map(|s| &s.device.name))
            .cloned()
            .collect();
        let names: BTreeSet<String> = used
            .iter()
            .filter_map(|n| self.devices.get(n))
            .flat_map(|d| self.devices.disks_under(d))
            .collect();
        for name in &names {
            let disk = self.disk(name);
            self.out.disks.push(disk);
        }
        let index = |devices: &Devices, r: &mut PartRef| {
            let first = devices.get(&r.name).map(|d| devices.disks_under(d));
            let pos = first
                .and_then(|v| v.into_iter().next())
                .and_then(|n| names.iter().position(|x| *x == n));
            r.disk = pos.unwrap_or(0) as u32;
        };
        for f in &mut self.out.filesystems {
            index(&self.devices, &mut f.device);
        }
        for s in &mut self.out.swaps {
            index(&self.devices, &mut s.device);
        }
        let st = &mut self.out.stack;
        let refs = st
            .md
            .iter_mut()
            .flat_map(|m| m.members.iter_mut().map(|x| &mut x.device));
        let refs = refs.chain(st.luks.iter_mut().map(|l| &mut l.device));
        let refs = refs.chain(
            st.vgs
                .iter_mut()
                .flat_map(|v| v.pvs.iter_mut().map(|p| &mut p.device)),
        );
        for r in refs {
            index(&self.devices, r);
        }
    }

    fn disk(&mut self, name: &str) -> Disk {
        let facts = sysfs::disk_facts(&self.class, name);
        let size = self.devices.get(name).map(|d| d.size_bytes).unwrap_or(0);
        let table = self.devices.tables.get(name).cloned();
        let mut disk = Disk {
            name: name.into(),
            size_bytes: size,
            logical_sector: facts.logical_sector,
            physical_sector: facts.physical_sector,
            model: facts.model,
            serial: facts.serial,
            wwid: facts.wwid,
            table,
            ..Default::default()
        };
        let Some(dev) = self.devices.get(name).cloned() else {
            return disk;
        };
        if size >= 512 {
            match self.devices.read(&dev, 0, BOOT_CODE_LEN) {
                Ok(b) => disk.mbr_boot_code = b,
                Err(e) => self.out.warnings.push(format!("{name}: boot code: {e}")),
            }
        }
        if let Some(t @ PartitionTable::Mbr(_)) = &disk.table {
            let sector = u64::from(facts.logical_sector);
            let end = table::first_start(t).unwrap_or(1).saturating_mul(sector);
            let len = end.saturating_sub(sector).min(MAX_GAP);
            match self.devices.read(&dev, sector, len as usize) {
                Ok(b) => disk.mbr_gap = b,
                Err(e) => self.out.warnings.push(format!("{name}: MBR gap: {e}")),
            }
        }
        disk
    }

    /// LVM PVs, LUKS containers and MD members on the recorded disks.
    fn containers(&mut self) {
        let disks: Vec<String> = self.out.disks.iter().map(|d| d.name.clone()).collect();
        for d in self.devices.list.clone() {
            let Some(Found::Container { kind, uuid, label }) = self.devices.found.get(&d.name)
            else {
                continue;
            };
            let in_stack = self.out.stack.holds(&d.name);
            let under = self.devices.disks_under(&d);
            let Some(disk) = under
                .first()
                .and_then(|n| disks.iter().position(|x| x == n))
            else {
                continue;
            };
            let mut device = Self::part_ref(&d);
            device.disk = disk as u32;
            self.out.containers.push(Container {
                device,
                kind: kind.clone(),
                uuid: uuid.clone(),
                label: label.clone(),
            });
            if !in_stack {
                self.out.warnings.push(format!(
                    "{} holds {:?} that no recorded filesystem uses; a restore does not \
                     bring it back",
                    d.name, kind
                ));
            }
        }
    }
}

/// Whether `rel` is at or under a directory of run-time state the capture skips (/run, /tmp,
/// /dev…).
fn volatile(rel: &[u8]) -> bool {
    crate::scan::exclude::CONTENTS_SKIPPED.iter().any(|d| {
        rel.strip_prefix(*d)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
    })
}
