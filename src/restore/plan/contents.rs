//! What goes into the partitions: the filesystems on the recorded disk (root first, then by
//! mount-point depth) with their mkfs commands and btrfs subvolumes, its swaps, and notes for
//! what lies on recorded disks this restore leaves out.

use super::build::Builder;
use super::{FsPlan, PlanError, SwapPlan, depth, under, used_of};
use crate::layout::{BtrfsVolume, FsRecord};
use crate::restore::mkfs;

impl Builder<'_> {
    /// Filesystems and swaps on the system disk, with their mkfs commands; the others noted.
    pub(super) fn contents(&mut self) -> Result<(), PlanError> {
        self.filesystems()?;
        self.swaps()?;
        self.note_filesystems_left_out();
        Ok(())
    }

    /// The disk's filesystems; the first entry on a partition makes its filesystem, later ones
    /// (more btrfs subvolumes) only mount it.
    fn filesystems(&mut self) -> Result<(), PlanError> {
        let mut made: Vec<String> = Vec::new();
        let mut fss: Vec<&FsRecord> = self
            .layout
            .filesystems
            .iter()
            .filter(|f| f.device.disk == self.idx)
            .collect();
        fss.sort_by_key(|f| (depth(&f.mount_point), f.mount_point.clone()));
        for f in fss {
            let first = !made.contains(&f.device.name);
            made.push(f.device.name.clone());
            let fs = self.filesystem(f, first)?;
            if fs.volume.is_none() {
                self.describe(fs.partition, format!("{} {}", f.fstype, f.mount_point));
            }
            self.plan.filesystems.push(fs);
        }
        Ok(())
    }

    /// The plan for recorded filesystem `f`; `first`: this entry makes the filesystem.
    fn filesystem(&mut self, f: &FsRecord, first: bool) -> Result<FsPlan, PlanError> {
        let n = f.device.partition;
        let volume = self.volume_of(&f.device)?;
        let size_bytes = match &volume {
            Some((_, bytes)) => *bytes,
            None => self.space(n)?,
        };
        let mkfs = if first {
            Some(mkfs::command(f, size_bytes != f.size_bytes).map_err(PlanError)?)
        } else {
            None
        };
        let vol = self
            .layout
            .btrfs
            .iter()
            .find(|v| f.fstype == "btrfs" && v.uuid == f.uuid && mkfs.is_some());
        if let Some(v) = vol {
            self.unreached_subvolumes(v);
        }
        Ok(FsPlan {
            partition: if volume.is_some() { None } else { n },
            volume: volume.map(|(path, _)| path),
            fstype: f.fstype.clone(),
            uuid: f.uuid.clone(),
            label: f.label.clone(),
            mount_point: f.mount_point.clone(),
            subvol: subvol_of(f),
            subvolumes: vol.map(|v| v.subvolumes.clone()).unwrap_or_default(),
            default_subvol: vol.map(|v| v.default_path.clone()).unwrap_or_default(),
            mkfs,
            size_bytes,
            used_bytes: used_of(f),
        })
    }

    /// The disk's swaps; a swap on a recorded disk this restore leaves out is noted.
    fn swaps(&mut self) -> Result<(), PlanError> {
        for s in &self.layout.swaps {
            if s.device.disk != self.idx {
                if self.restored.contains(&s.device.disk) {
                    continue;
                }
                self.plan.notes.push(format!(
                    "swap {} is on another disk ({}): not recreated",
                    s.uuid, s.device.name
                ));
                continue;
            }
            let volume = self.volume_of(&s.device)?;
            self.plan.swaps.push(SwapPlan {
                partition: if volume.is_some() {
                    None
                } else {
                    s.device.partition
                },
                volume: volume.as_ref().map(|(path, _)| path.clone()),
                uuid: s.uuid.clone(),
                label: s.label.clone(),
                mkswap: mkfs::mkswap(&s.uuid, &s.label),
            });
            if volume.is_none() {
                self.describe(s.device.partition, "swap".into());
            }
        }
        Ok(())
    }

    /// Notes the filesystems on recorded disks this restore leaves out.
    fn note_filesystems_left_out(&mut self) {
        for f in &self.layout.filesystems {
            if f.device.disk != self.idx && !self.restored.contains(&f.device.disk) {
                self.plan.notes.push(format!(
                    "{} ({} on {}) is on another disk: not recreated; its files go into the \
                     filesystem above it",
                    f.mount_point, f.fstype, f.device.name
                ));
            }
        }
    }

    /// Notes the subvolumes of `v` that no mount of the captured system showed: they are
    /// created, but the capture saw none of their files.
    fn unreached_subvolumes(&mut self, v: &BtrfsVolume) {
        let roots: Vec<String> = self
            .layout
            .filesystems
            .iter()
            .filter(|f| f.uuid == v.uuid && f.mounted_at.is_some())
            .map(|f| {
                crate::layout::fstab::option(&f.mount_options, "subvol")
                    .map(|s| s.trim_matches('/').to_string())
                    .unwrap_or_else(|| v.default_path.clone())
            })
            .collect();
        for s in &v.subvolumes {
            let seen = roots.iter().any(|r| {
                r.is_empty() || s.path == *r || under(&format!("/{}", s.path), &format!("/{r}"))
            });
            if !seen {
                self.plan.notes.push(format!(
                    "btrfs subvolume {} was not mounted when captured: it is created empty",
                    s.path
                ));
            }
        }
    }
}

/// The btrfs `subvol=` a mount uses, without its leading slash (`None`: the default one).
fn subvol_of(f: &FsRecord) -> Option<String> {
    (f.fstype == "btrfs")
        .then(|| crate::layout::fstab::option(&f.mount_options, "subvol"))
        .flatten()
        .map(|s| s.trim_start_matches('/').to_string())
        .filter(|s| !s.is_empty())
}
