//! The optional configuration file, `/etc/osimage/osimage.toml` (docs/CONFIG.md, issue #24
//! item 20): capture excludes, the destination, retention and keys for scheduled and fleet
//! use. A flag given on the command line always wins over a key; list-valued keys are added
//! to by their flags. Every value is checked while the file is parsed, so a bad one is
//! reported with the file, the key and the line, as a usage error (exit 2).

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::UsageError;

/// Read when it exists and neither `--config` nor `OSIMAGE_CONFIG` names another file.
pub const DEFAULT_PATH: &str = "/etc/osimage/osimage.toml";
/// The environment variable naming the configuration file (`--config` wins over it).
pub const ENV: &str = "OSIMAGE_CONFIG";
/// capture's zstd level when neither `--level` nor `capture.level` gives one.
pub const DEFAULT_LEVEL: i32 = 3;

/// `--config PATH`, on the commands that read the file (capture, sign, schedule install and
/// run).
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// Read settings from this TOML file instead of the one OSIMAGE_CONFIG names, or else
    /// /etc/osimage/osimage.toml (read only if it exists). Its tables [capture],
    /// [destination], [retention] and [keys] hold the flags' values; a flag given wins over
    /// its key, and list flags (--exclude, --exclude-from, --recipient, --recipient-file) add
    /// to its lists. An unknown key or bad value is a usage error naming the line.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// The whole file. Every table and key is optional; an unknown one is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub capture: CaptureKeys,
    #[serde(default)]
    pub destination: DestinationKeys,
    #[serde(default)]
    pub retention: RetentionKeys,
    #[serde(default)]
    pub keys: KeyKeys,
}

/// `[capture]`: what a capture reads and how (capture's and schedule's flags of the same name).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureKeys {
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub exclude_from: Vec<AbsPath>,
    pub one_file_system: Option<bool>,
    pub keep_going: Option<bool>,
    pub level: Option<Level>,
    pub threads: Option<Count>,
    pub kernel: Option<String>,
    pub snapshot: Option<bool>,
    pub verify: Option<bool>,
}

/// `[destination]`: where images go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationKeys {
    /// capture `-o`.
    pub output: Option<AbsPath>,
    /// schedule `--dest`.
    pub dir: Option<AbsPath>,
    /// schedule `--format`.
    pub format: Option<osimage::ImageFormat>,
}

/// `[retention]`: how many scheduled images are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionKeys {
    /// schedule `--keep`.
    pub keep: Option<Count>,
}

/// `[keys]`: who can open the images capture writes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyKeys {
    pub encrypt: Option<bool>,
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub recipient_files: Vec<AbsPath>,
    pub passphrase_file: Option<AbsPath>,
    /// `sign --key`.
    pub signing_key: Option<AbsPath>,
    /// `sign --key-password-file`.
    pub signing_key_password_file: Option<AbsPath>,
}

/// A path in the file: absolute, since a scheduled run's working directory is `/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct AbsPath(pub PathBuf);

impl TryFrom<String> for AbsPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.starts_with('/') {
            Ok(AbsPath(PathBuf::from(s)))
        } else {
            Err(format!("{s:?} is not an absolute path"))
        }
    }
}

/// A zstd level, 1 to 19 as `--level`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct Level(pub i32);

impl TryFrom<i64> for Level {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match i32::try_from(n) {
            Ok(l @ 1..=19) => Ok(Level(l)),
            _ => Err(format!("{n} is not a zstd level (1 to 19)")),
        }
    }
}

/// A count of at least 1 (`keep`, `threads`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct Count(pub u32);

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match u32::try_from(n) {
            Ok(c) if c >= 1 => Ok(Count(c)),
            _ => Err(format!("{n}: give a whole number of at least 1")),
        }
    }
}

/// A loaded file and where it came from.
#[derive(Debug, Default)]
pub struct Loaded {
    pub config: Config,
    /// None: no file (the default path does not exist).
    pub path: Option<PathBuf>,
}

impl ConfigArgs {
    /// The file to read: `--config`, else `OSIMAGE_CONFIG`, else the default path if it
    /// exists. The first two must exist.
    fn path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.config {
            return Some(p.clone());
        }
        match std::env::var_os(ENV) {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => Some(PathBuf::from(DEFAULT_PATH)).filter(|d| d.exists()),
        }
    }

    /// Reads and checks the configuration file, if there is one.
    pub fn load(&self) -> Result<Loaded, UsageError> {
        let Some(path) = self.path() else {
            return Ok(Loaded::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            UsageError(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?;
        let config = parse(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        // A scheduled run reads the file from another working directory.
        let path = std::path::absolute(&path).unwrap_or(path);
        Ok(Loaded {
            config,
            path: Some(path),
        })
    }
}

/// Parses the file's text; the error names the line and the key (`table.key`).
pub fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().trim_end().to_string();
        match e.span() {
            Some(span) => {
                let (line, key) = locate(text, span.start);
                match key {
                    Some(k) => format!("line {line}: key `{k}`: {msg}"),
                    None => format!("line {line}: {msg}"),
                }
            }
            None => msg,
        }
    })
}

/// The line number (from 1) of byte `at`, and the dotted key whose value or name is there:
/// the nearest `key =` at or above it, inside the nearest `[table]` above that.
fn locate(text: &str, at: usize) -> (usize, Option<String>) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let lines: Vec<&str> = text.lines().take(line).collect();
    let mut key = None;
    let mut table = None;
    for l in lines.iter().rev() {
        let t = l.trim();
        if let Some(h) = t.strip_prefix('[') {
            table = Some(h.trim_end_matches(']').trim().to_string());
            break;
        }
        if key.is_none()
            && let Some((k, _)) = t.split_once('=')
        {
            let k = k.trim();
            if !k.is_empty() && !k.starts_with('#') {
                key = Some(k.to_string());
            }
        }
    }
    let full = match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    };
    (line, full)
}

/// Appends `from` (the file's list) before `flags` (the command line's): flags add.
pub fn with_flags<T: Clone>(from: &[T], flags: Vec<T>) -> Vec<T> {
    let mut v = from.to_vec();
    v.extend(flags);
    v
}

/// The paths of a list of `AbsPath`s.
pub fn paths(v: &[AbsPath]) -> Vec<PathBuf> {
    v.iter().map(|p| p.0.clone()).collect()
}

impl Config {
    /// capture's tuning with the file's `[capture]` keys under the flags.
    pub fn tuning(&self, t: super::args::CaptureTuning) -> super::args::CaptureTuning {
        let c = &self.capture;
        super::args::CaptureTuning {
            kernel: t.kernel.or_else(|| c.kernel.as_ref().map(PathBuf::from)),
            one_file_system: t.one_file_system || c.one_file_system == Some(true),
            exclude: with_flags(&c.exclude, t.exclude),
            exclude_from: with_flags(&paths(&c.exclude_from), t.exclude_from),
            keep_going: t.keep_going || c.keep_going == Some(true),
            level: t.level.or(c.level.map(|l| l.0)).or(Some(DEFAULT_LEVEL)),
            threads: t.threads.or(c.threads.map(|n| n.0 as usize)),
        }
    }

    /// The encryption flags with the file's `[keys]` under them.
    pub fn encrypt(&self, e: super::keys::EncryptArgs) -> super::keys::EncryptArgs {
        let k = &self.keys;
        super::keys::EncryptArgs {
            encrypt: e.encrypt || k.encrypt == Some(true),
            recipient: with_flags(&k.recipients, e.recipient),
            recipient_file: with_flags(&paths(&k.recipient_files), e.recipient_file),
        }
    }

    /// The key flags with the file's `keys.passphrase_file` under `--passphrase-file`.
    pub fn key_args(&self, a: super::keys::KeyArgs) -> super::keys::KeyArgs {
        super::keys::KeyArgs {
            passphrase_file: a
                .passphrase_file
                .or_else(|| self.keys.passphrase_file.as_ref().map(|p| p.0.clone())),
            identity: a.identity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_into_every_table() {
        let c = parse(
            "[capture]\nexclude = [\"/var/cache/*\"]\nlevel = 9\nthreads = 2\n\
             [destination]\noutput = \"/srv/a.iso\"\ndir = \"/srv/images\"\nformat = \"oimg\"\n\
             [retention]\nkeep = 4\n[keys]\nrecipients = [\"age1x\"]\n",
        )
        .expect("parses");
        assert_eq!(c.capture.exclude, ["/var/cache/*"]);
        assert_eq!(c.capture.level.map(|l| l.0), Some(9));
        assert_eq!(c.retention.keep.map(|k| k.0), Some(4));
        assert_eq!(
            c.destination.dir.map(|d| d.0),
            Some(PathBuf::from("/srv/images"))
        );
        assert_eq!(c.destination.format, Some(osimage::ImageFormat::Oimg));
    }

    #[test]
    fn the_example_in_config_md_parses() {
        let doc = include_str!("../../docs/CONFIG.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|r| r.split("```").next())
            .expect("a ```toml block in docs/CONFIG.md");
        let c = parse(example).unwrap_or_else(|e| panic!("{e}\n{example}"));
        assert_eq!(c.retention.keep.map(|k| k.0), Some(4));
        assert!(c.keys.signing_key.is_some() && !c.keys.recipients.is_empty());
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        for (text, says) in [
            (
                "[capture]\nexclud = []\n",
                "line 2: key `capture.exclud`: unknown field",
            ),
            (
                "\n[capture]\nlevel = \"high\"\n",
                "line 3: key `capture.level`: invalid type",
            ),
            (
                "[capture]\nlevel = 25\n",
                "line 2: key `capture.level`: 25 is not a zstd level",
            ),
            (
                "[retention]\nkeep = 0\n",
                "line 2: key `retention.keep`: 0: give",
            ),
            (
                "[destination]\ndir = \"rel\"\n",
                "key `destination.dir`: \"rel\" is not an absolute",
            ),
            (
                "[capture]\nexclude = [\n \"a\",\n 3,\n]\n",
                "line 4: key `capture.exclude`",
            ),
            ("colour = 1\n", "line 1: key `colour`: unknown field"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
