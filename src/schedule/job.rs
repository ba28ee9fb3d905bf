//! What a scheduled capture does, as the command line its unit runs: `osimage schedule run
//! NAME --dest DIR --keep N [capture options]`. Install builds a `Job` from the user's
//! arguments; the unit (or cron line) carries it as arguments, so a run needs no state of its
//! own beyond DEST.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::ImageAddress;

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

/// Where a schedule's runs put their images: a directory of image files, or a series of an
/// image store (docs/SCHEDULE.md "Into an image store"). Recorded as one string (the
/// directory, or `s3://BUCKET/PREFIX/NAME`), so markers written before stores existed read
/// back as directories.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub enum Dest {
    /// A directory (absolute): `NAME-….iso|oimg` files and `latest.*`.
    Dir(PathBuf),
    /// A series of a store: each run adds a version; `latest` is the newest.
    Store(ImageAddress),
}

impl Dest {
    /// `--dest`'s value: an `s3://` address names a store series (without `@VERSION`: a run
    /// makes a new version), anything else a directory.
    pub fn parse(given: &Path) -> Result<Dest, String> {
        let Some(text) = given.to_str().filter(|t| crate::remote::s3::is_s3(t)) else {
            return Ok(Dest::Dir(given.to_path_buf()));
        };
        let lower = text.to_ascii_lowercase();
        if lower.ends_with(".iso") || lower.ends_with(".oimg") {
            return Err(format!(
                "--dest {text}: a schedule writes into a directory or a store series \
                 (s3://BUCKET/PREFIX/NAME), not one S3 object"
            ));
        }
        let a = ImageAddress::parse(text).map_err(|e| format!("--dest {e}"))?;
        if a.version.is_some() {
            return Err(format!(
                "--dest {text}: each run makes a new version; name the series alone (without \
                 @VERSION)"
            ));
        }
        Ok(Dest::Store(a))
    }

    /// The directory, for a directory destination.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Dest::Dir(d) => Some(d),
            Dest::Store(_) => None,
        }
    }

    /// The store series, for a store destination.
    pub fn store(&self) -> Option<&ImageAddress> {
        match self {
            Dest::Dir(_) => None,
            Dest::Store(a) => Some(a),
        }
    }
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Dir(d) => write!(f, "{}", d.display()),
            Dest::Store(a) => write!(f, "{a}"),
        }
    }
}

impl TryFrom<PathBuf> for Dest {
    type Error = String;
    fn try_from(p: PathBuf) -> Result<Dest, String> {
        Dest::parse(&p)
    }
}

impl From<Dest> for PathBuf {
    fn from(d: Dest) -> PathBuf {
        match d {
            Dest::Dir(p) => p,
            Dest::Store(a) => PathBuf::from(a.to_string()),
        }
    }
}

/// One schedule's capture: where from, where to, how many to keep, and the capture options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The schedule's name: `[a-z0-9_-]`, names the units and the images.
    pub name: String,
    /// Where the images go: a directory (absolute) or a store series.
    pub dest: Dest,
    /// How many images to keep (≥ 1; the newest is never pruned). In a store: the versions
    /// of the series beyond the newest `keep` are forgotten after each run.
    pub keep: u32,
    /// The image files' format; a store holds versions (unused there, always `iso`).
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
    /// A store destination's credentials file (mode 0600, written by install), which each
    /// run reads: `--credentials` on the unit's line (docs/SCHEDULE.md "Credentials").
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// Into an encrypted store: the age secret key file that unlocks it (`--identity`),
    /// readable by root alone; the path is kept, never the key (docs/SCHEDULE.md "Encrypted
    /// images and encrypted stores").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// Into an encrypted store: a file whose first line is a passphrase of one of its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// A directory's images are encrypted to these age public keys (`--recipient`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// … and to those of these files (`--recipient-file`, read by each run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_files: Vec<PathBuf>,
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
        opt("--dest", PathBuf::from(self.dest.clone()).into());
        opt("--keep", self.keep.to_string().into());
        // A store holds versions, not files of a format.
        if self.dest.dir().is_some() {
            opt("--format", self.format.ext().into());
        }
        if let Some(c) = &self.credentials {
            opt("--credentials", c.clone().into());
        }
        if let Some(f) = &self.identity {
            opt("--identity", f.clone().into());
        }
        if let Some(f) = &self.passphrase_file {
            opt("--passphrase-file", f.clone().into());
        }
        for r in &self.recipients {
            opt("--recipient", r.into());
        }
        for f in &self.recipient_files {
            opt("--recipient-file", f.clone().into());
        }
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

    /// `latest.iso` or `latest.oimg`; in a store, the series' newest version.
    pub fn latest_name(&self) -> String {
        match &self.dest {
            Dest::Dir(_) => format!("latest.{}", self.format.ext()),
            Dest::Store(a) => format!("{a} (its newest version)"),
        }
    }
}

/// A schedule named `golden` capturing `/` into `dest` as ISOs, every option at its default
/// (the unit tests' job).
#[cfg(test)]
pub(super) fn test_job(dest: Dest) -> Job {
    Job {
        name: "golden".into(),
        dest,
        keep: 1,
        format: ImageFormat::Iso,
        root: "/".into(),
        kernel: None,
        one_file_system: false,
        excludes: Vec::new(),
        exclude_from: Vec::new(),
        keep_going: false,
        level: None,
        threads: None,
        snapshot: false,
        verify_boot: false,
        config: None,
        credentials: None,
        identity: None,
        passphrase_file: None,
        recipients: Vec::new(),
        recipient_files: Vec::new(),
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

    #[test]
    fn a_destination_is_a_directory_or_a_store_series_and_records_as_one_string() {
        let dir = Dest::parse(Path::new("/srv/images")).unwrap();
        assert_eq!(dir, Dest::Dir("/srv/images".into()));
        let store = Dest::parse(Path::new("s3://images/fleet/web01")).unwrap();
        let a = store.store().expect("a store series");
        assert_eq!(
            (a.root.prefix.as_str(), a.series.as_str()),
            ("fleet", "web01")
        );
        for d in [dir, store] {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Dest>(&json).unwrap(), d, "{json}");
        }
        // A marker written before stores existed: a plain path string.
        let old: Dest = serde_json::from_str("\"/srv/old\"").unwrap();
        assert_eq!(old, Dest::Dir("/srv/old".into()));
        for bad in [
            "s3://images/fleet/web01@2026",
            "s3://images/fleet/web01.iso",
            "s3://images",
        ] {
            assert!(Dest::parse(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
