//! What a scheduled capture does, as the command line its unit runs: `osimage schedule run
//! NAME --dest DIR --keep N [capture options]`. Install builds a `Job` from the user's
//! arguments; the unit (or cron line) carries it as arguments, so a run needs no state of its
//! own beyond DEST.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The image a scheduled run writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// A bootable ISO (payload + rescue environment); `latest.iso`.
    Iso,
    /// The payload alone; `latest.oimg`.
    Oimg,
}

impl ImageFormat {
    /// The file name extension (without the dot).
    pub fn ext(self) -> &'static str {
        match self {
            ImageFormat::Iso => "iso",
            ImageFormat::Oimg => "oimg",
        }
    }
}

/// One schedule's capture: where from, where to, how many to keep, and the capture options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The schedule's name: `[a-z0-9_-]`, names the units and the images.
    pub name: String,
    /// Directory the images go into (absolute).
    pub dest: PathBuf,
    /// How many images to keep (≥ 1; the newest is never pruned).
    pub keep: u32,
    pub format: ImageFormat,
    /// The root to capture (absolute).
    pub root: PathBuf,
    pub kernel: Option<PathBuf>,
    pub one_file_system: bool,
    pub excludes: Vec<String>,
    pub exclude_from: Vec<PathBuf>,
    pub keep_going: bool,
    /// zstd level; None: the configuration file's, else 3.
    pub level: Option<i32>,
    pub threads: Option<usize>,
    /// Capture from a snapshot of ROOT's filesystem (btrfs or LVM).
    #[serde(default)]
    pub snapshot: bool,
    /// Prove each new image restores (`verify --boot`) before it becomes latest.
    #[serde(default)]
    pub verify_boot: bool,
    /// The configuration file each run reads (docs/CONFIG.md): `--config` on the unit's line.
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// Why a schedule name is refused.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schedule name {name:?}: use 1 to 64 of a-z, 0-9, '-' and '_' (it names the \
             systemd units, the cron file and the images), not starting with '-'"
        ))
    }
}

impl Job {
    /// The arguments after the program name that run this job: `schedule run NAME …`.
    pub fn run_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["schedule".into(), "run".into(), self.name.clone().into()];
        let mut opt = |k: &str, v: OsString| {
            a.push(k.into());
            a.push(v);
        };
        opt("--dest", self.dest.clone().into());
        opt("--keep", self.keep.to_string().into());
        opt("--format", self.format.ext().into());
        opt("--root", self.root.clone().into());
        if let Some(l) = self.level {
            opt("--level", l.to_string().into());
        }
        if let Some(c) = &self.config {
            opt("--config", c.clone().into());
        }
        if let Some(k) = &self.kernel {
            opt("--kernel", k.clone().into());
        }
        if let Some(t) = self.threads {
            opt("--threads", t.to_string().into());
        }
        for e in &self.excludes {
            opt("--exclude", e.into());
        }
        for f in &self.exclude_from {
            opt("--exclude-from", f.clone().into());
        }
        for (on, flag) in [
            (self.one_file_system, "--one-file-system"),
            (self.keep_going, "--keep-going"),
            (self.snapshot, "--snapshot"),
            (self.verify_boot, "--verify-boot"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        a
    }

    /// `latest.iso` or `latest.oimg`.
    pub fn latest_name(&self) -> String {
        format!("latest.{}", self.format.ext())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_a_unit_or_file_name_are_refused() {
        for good in ["golden", "web-01", "a_b", "x9"] {
            check_name(good).unwrap_or_else(|e| panic!("{e}"));
        }
        for bad in [
            "",
            "Golden",
            "a b",
            "a.b",
            "a/b",
            "-x",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
