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
use super::plan::{Draws, IdSource, PartKind, TablePlan};
use super::{
    Contents, RestoreError, RestoreOptions, RestorePlan, RestoreReport, check_target, layout_of,
    plan, plan_disks, plan_drawn, plan_only, preflight, renew, restore_planned_all, target,
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
    /// Where the plans' fresh identities came from (`options.seed`).
    pub ids: IdSource,
}

/// What a dry run without `--seed` shows in place of each identity drawn at random: the
/// restore draws other values (issue #24 item 4: a dry run prints no value the restore will
/// not write).
pub const DRAWN_AT_RESTORE: &str = "<drawn at restore>";

/// Plans `request` on `reader`'s image, read-only: the plans (with fresh identities for
/// `new_uuids`), the resolved hostname, the overlay checked to be a directory.
pub fn prepare(reader: &PayloadReader, request: &RestoreRequest) -> Result<Prepared, RestoreError> {
    let options = request.options.clone();
    let ids = IdSource::from_seed(options.seed);
    let mut draws = Draws::new(ids);
    let fresh = &mut |label: &str| draws.next(label);
    let (mut plans, layout) = match &request.targets {
        Targets::Disk(device) => {
            let (size, sector) = target::geometry(device)?;
            let (plan, layout) = plan_drawn(
                reader,
                &device.display().to_string(),
                size,
                sector,
                options.default_layout,
                fresh,
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
            renew(plan, &layout, fresh)?;
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
        ids,
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

    /// Every check the restore makes before its first write (`restore::preflight`), for a
    /// dry run: it refuses what the restore would refuse, with the same error.
    pub fn preflight(&self, reader: &PayloadReader) -> Result<(), RestoreError> {
        preflight(reader, &self.plans, &self.options)
    }

    /// The identities the plans drew (`--new-uuids`, the default layout), in every spelling
    /// the plan may print them in, longest first.
    pub fn drawn(&self) -> Vec<String> {
        let mut values = Vec::new();
        for p in &self.plans {
            for r in &p.renamed {
                values.push(r.new.clone());
                values.extend(r.spellings.iter().map(|(_, new)| new.clone()));
            }
            if p.boot.default_layout {
                if let TablePlan::Gpt { disk_guid } = &p.table {
                    values.push(disk_guid.clone());
                }
                for part in &p.partitions {
                    if let PartKind::Gpt { part_guid, .. } = &part.kind {
                        values.push(part_guid.clone());
                    }
                }
                values.extend(p.filesystems.iter().map(|f| f.uuid.clone()));
            }
        }
        let mut out = Vec::new();
        for v in values {
            let v = v.strip_prefix("0x").unwrap_or(&v).to_string();
            let bare: String = v.chars().filter(|c| *c != '-' && *c != ':').collect();
            for s in [&v, &bare] {
                out.push(s.clone());
                out.push(s.to_ascii_uppercase());
                out.push(s.to_ascii_lowercase());
            }
        }
        // Shorter than 8 characters nothing is drawn (an MBR signature is 8 hex digits).
        out.retain(|s| s.len() >= 8);
        out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        out.dedup();
        out
    }

    /// `text` (the plan, as text or JSON) as a dry run shows it: with identities drawn from
    /// the kernel, each is replaced by `DRAWN_AT_RESTORE`; with `--seed` they are the ones the
    /// restore writes and stay.
    pub fn as_dry_run(&self, text: String) -> String {
        if self.ids != IdSource::Kernel {
            return text;
        }
        self.drawn()
            .iter()
            .fold(text, |t, v| t.replace(v.as_str(), DRAWN_AT_RESTORE))
    }

    /// The plan as a dry run prints it (`Display` with `as_dry_run`).
    pub fn dry_run_text(&self) -> String {
        self.as_dry_run(self.to_string())
    }

    /// The plan as JSON as a dry run prints it (`to_json` with `as_dry_run`).
    pub fn dry_run_json(&self) -> serde_json::Result<String> {
        Ok(self.as_dry_run(self.to_json()?))
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
        if !self.drawn().is_empty() {
            match self.ids {
                IdSource::Seed(n) => writeln!(
                    f,
                    "new identities: derived from --seed {n} (the same on every run with it)"
                )?,
                IdSource::Kernel => writeln!(
                    f,
                    "new identities: drawn at random for this restore (a dry run shows them as \
                     {DRAWN_AT_RESTORE}; --seed N makes them the same on every run)"
                )?,
            }
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

    /// A GPT layout's plan with `--new-uuids` drawn from `ids`.
    fn renewed(ids: IdSource) -> Prepared {
        let layout = crate::restore::plan::tests::gpt_layout();
        let mut plan = RestorePlan::new(&layout, "/dev/t", 4 << 30, 512).unwrap();
        let mut draws = Draws::new(ids);
        renew(&mut plan, &layout, &mut |l: &str| draws.next(l)).unwrap();
        Prepared {
            plans: vec![plan],
            layout,
            hostname: None,
            options: RestoreOptions::default(),
            ids,
        }
    }

    #[test]
    fn a_seed_gives_the_plan_the_same_new_identities_every_time() {
        let (a, b) = (renewed(IdSource::Seed(7)), renewed(IdSource::Seed(7)));
        assert!(!a.plans[0].renamed.is_empty());
        assert_eq!(a.plans, b.plans);
        // With a seed the dry run shows the values the restore writes.
        assert_eq!(a.dry_run_text(), b.to_string());
        for r in &a.plans[0].renamed {
            assert!(a.dry_run_text().contains(&r.new), "{} missing", r.new);
        }
        assert!(a.to_string().contains("derived from --seed 7"), "{a}");
        assert_ne!(renewed(IdSource::Seed(8)).plans, a.plans);
    }

    #[test]
    fn without_a_seed_the_dry_run_shows_no_drawn_value() {
        let p = renewed(IdSource::Kernel);
        let text = p.dry_run_text();
        let json = p.dry_run_json().unwrap();
        assert!(text.contains(DRAWN_AT_RESTORE), "{text}");
        assert!(json.contains(DRAWN_AT_RESTORE), "{json}");
        assert!(text.contains("drawn at random for this restore"), "{text}");
        for r in &p.plans[0].renamed {
            assert!(!text.contains(&r.new), "{} shown:\n{text}", r.new);
            assert!(!json.contains(&r.new), "{} in the JSON", r.new);
            // The recorded values it replaces are still shown.
            assert!(text.contains(&r.old), "{} missing:\n{text}", r.old);
        }
        // The real run's plan shows what it draws.
        let real = p.to_string();
        assert!(p.plans[0].renamed.iter().all(|r| real.contains(&r.new)));
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
