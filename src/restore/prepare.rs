//! One restore for both front-ends (issue #18): `osimage restore` (`crate::cli`) and the
//! rescue agent (`crate::agent`) say what to restore where in a `RestoreRequest`; `prepare`
//! plans it (the recorded layout or the default one, `--only`, `--map`), gives the plans fresh
//! identities for `--new-uuids`, resolves the hostname rule and checks the overlay, all
//! read-only. The `Prepared` restore prints as the plan (text or JSON), runs the target
//! checks, and `apply` writes it. What stays with the front-ends: choosing the disks,
//! confirming, and printing.

use std::fmt;
use std::path::{Path, PathBuf};

use super::generalize::{GeneralizeOptions, hostname_from_rule};
use super::{
    Contents, RestoreError, RestoreOptions, RestorePlan, RestoreReport, check_target, layout_of,
    plan, plan_disks, plan_only, plan_with_layout, renew, restore_planned_all, target,
};
use crate::layout::DiskLayout;
use crate::payload::reader::PayloadReader;
use crate::progress::Progress;

/// Where network interfaces are listed, for a hostname rule's `{mac}`.
pub(crate) const SYS_CLASS_NET: &str = "/sys/class/net";

/// What to restore where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// The system disk onto one disk or image file (with `default_layout`: an image without a
    /// layout onto osimage's default one).
    Disk(PathBuf),
    /// `--only MOUNTPOINT`: that recorded filesystem alone onto a partition, disk or file.
    Only {
        mount_point: String,
        device: PathBuf,
    },
    /// Several recorded disks (`--map`, `osimage.map=`): `system`, when given, takes the
    /// recorded system disk (the one holding /), then each (recorded disk, device) pair.
    Disks {
        system: Option<PathBuf>,
        map: Vec<(String, PathBuf)>,
    },
}

/// A restore as a front-end asks for it: the targets and how to proceed (force, threads,
/// NVRAM, excluded disks, default layout, generalize and hostname, overlay, new UUIDs,
/// initramfs drivers).
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub targets: Targets,
    pub options: RestoreOptions,
}

impl RestoreRequest {
    /// The restored system's hostname: the rule (`--hostname`) resolved on this machine
    /// (`{mac}`: its first network interface), checked before anything is written. `None`:
    /// the image's hostname is kept.
    pub fn hostname(&self) -> Result<Option<String>, RestoreError> {
        resolve_hostname(&self.options.generalize)
    }
}

/// A restore planned and checked, not yet written: shown to the user (`Display`, `to_json`),
/// then `apply`.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// One plan per target disk, the system disk's first.
    pub plans: Vec<RestorePlan>,
    /// The layout the plans recreate (the image's, or the default one).
    pub layout: DiskLayout,
    /// The hostname rule resolved on this machine (`RestoreRequest::hostname`).
    pub hostname: Option<String>,
    /// How to apply; a front-end sets `force` once the user confirmed.
    pub options: RestoreOptions,
}

/// Plans `request` on `reader`'s image, read-only: the plans (with fresh identities for
/// `new_uuids`), the resolved hostname, the overlay checked to be a directory.
pub fn prepare(reader: &PayloadReader, request: &RestoreRequest) -> Result<Prepared, RestoreError> {
    let options = request.options.clone();
    let (mut plans, layout) = match &request.targets {
        Targets::Disk(device) => {
            let (size, sector) = target::geometry(device)?;
            let (plan, layout) = plan_with_layout(
                reader,
                &device.display().to_string(),
                size,
                sector,
                options.default_layout,
            )?;
            (vec![plan], layout)
        }
        Targets::Only {
            mount_point,
            device,
        } => {
            let (plan, layout) = plan_only(reader, mount_point, device)?;
            (vec![plan], layout)
        }
        Targets::Disks { system, map } => {
            let mut targets = Vec::new();
            if let Some(device) = system {
                let layout = layout_of(reader)?;
                let system = plan::system_disk(&layout)?;
                targets.push((layout.disks[system as usize].name.clone(), device.clone()));
            }
            targets.extend(map.iter().cloned());
            plan_disks(reader, &targets)?
        }
    };
    if options.new_uuids {
        for plan in &mut plans {
            renew(plan, &layout)?;
        }
    }
    let filesystems: Vec<_> = plans.iter().flat_map(|p| p.filesystems.clone()).collect();
    super::tree::check_parts(reader, &filesystems)?;
    let hostname = request.hostname()?;
    check_overlay(options.overlay.as_deref())?;
    Ok(Prepared {
        plans,
        layout,
        hostname,
        options,
    })
}

impl Prepared {
    /// The plan as JSON: the one plan, or the list of them for several disks.
    pub fn to_json(&self) -> serde_json::Result<String> {
        match self.plans.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(all),
        }
    }

    /// The read-only safety checks (`check_target`) on each target in plan order, run as the
    /// iterator is advanced (so a front-end can ask before checking the next).
    pub fn check_targets(
        &self,
    ) -> impl Iterator<Item = (&Path, Result<Contents, RestoreError>)> + '_ {
        self.plans.iter().map(|p| {
            let path = Path::new(&p.target.device);
            (path, check_target(path, &self.options))
        })
    }

    /// Writes the plans (`restore_planned_all`: every target checked again first).
    pub fn apply(
        &self,
        reader: &PayloadReader,
        progress: &dyn Progress,
    ) -> Result<RestoreReport, RestoreError> {
        restore_planned_all(reader, &self.plans, &self.layout, &self.options, progress)
    }
}

/// The plans, then what generalizing will change and the overlay (`osimage restore`'s plan).
impl fmt::Display for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for plan in &self.plans {
            write!(f, "{plan}")?;
        }
        write_per_machine(f, &self.options.generalize, self.options.overlay.as_deref())
    }
}

/// The per-machine part of a plan: `generalize:` and its lines, the overlay.
pub(crate) fn write_per_machine(
    f: &mut dyn fmt::Write,
    generalize: &GeneralizeOptions,
    overlay: Option<&Path>,
) -> fmt::Result {
    let lines = generalize.plan_lines();
    if !lines.is_empty() {
        writeln!(f, "generalize:")?;
        for l in lines {
            writeln!(f, "  {l}")?;
        }
    }
    if let Some(dir) = overlay {
        writeln!(
            f,
            "overlay: {} copied over the restored tree last",
            dir.display()
        )?;
    }
    Ok(())
}

/// The hostname rule of `generalize` resolved on this machine.
pub(crate) fn resolve_hostname(
    generalize: &GeneralizeOptions,
) -> Result<Option<String>, RestoreError> {
    generalize
        .hostname
        .as_deref()
        .map(|rule| hostname_from_rule(rule, Path::new(SYS_CLASS_NET)))
        .transpose()
}

/// The overlay must be a directory (checked before anything is written).
pub(crate) fn check_overlay(overlay: Option<&Path>) -> Result<(), RestoreError> {
    match overlay {
        Some(dir) if !dir.is_dir() => Err(RestoreError::Overlay(dir.to_path_buf())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_machine_lines_are_the_plans_tail() {
        let mut out = String::new();
        write_per_machine(&mut out, &GeneralizeOptions::default(), None).unwrap();
        assert_eq!(out, "", "nothing to say without generalize or overlay");
        let g = GeneralizeOptions {
            identity: false,
            hostname: Some("db7".into()),
        };
        write_per_machine(&mut out, &g, Some(Path::new("/site-a"))).unwrap();
        assert_eq!(
            out,
            "generalize:\n  /etc/hostname set to \"db7\", and the old name replaced in \
             /etc/hosts\noverlay: /site-a copied over the restored tree last\n"
        );
    }

    #[test]
    fn an_overlay_must_be_a_directory() {
        assert!(check_overlay(None).is_ok());
        assert!(check_overlay(Some(Path::new("/"))).is_ok());
        let e = check_overlay(Some(Path::new("/nonexistent-overlay"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "overlay /nonexistent-overlay: not a directory"
        );
    }

    #[test]
    fn a_hostname_rule_is_checked() {
        let name = |h: &str| {
            resolve_hostname(&GeneralizeOptions {
                identity: true,
                hostname: Some(h.into()),
            })
        };
        assert_eq!(name("web-1").unwrap().as_deref(), Some("web-1"));
        assert!(name("not_valid").is_err());
        assert_eq!(
            resolve_hostname(&GeneralizeOptions::default()).unwrap(),
            None
        );
    }
}
