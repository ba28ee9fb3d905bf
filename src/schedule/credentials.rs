//! How a scheduled run into a store gets its S3 settings (docs/SCHEDULE.md "Credentials"):
//! `install` resolves them as every store command does (the installer's `AWS_*` variables or
//! profile, STORE.md §1) and writes them to `/etc/osimage/schedule-NAME.env`, mode 0600, owned
//! by root; the unit's command line names that file (`--credentials`), never a secret. Each
//! run reads the file itself, refuses it unless only its owner (the user running) can read
//! it, and takes every S3 setting from it alone (no `~/.aws`, which a system service without
//! `User=` has no `HOME` to find).
//!
//! The file: the schedule's marker line, comments, then `KEY='VALUE'` lines (the subset of
//! systemd's EnvironmentFile= and sh syntax both read the same way), one per setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ScheduleError;
use crate::remote::s3::{ADDRESSING_ENV, S3Settings};

/// The variables a credentials file may hold, in the order install writes them.
pub const KEYS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_ENDPOINT_URL_S3",
    ADDRESSING_ENV,
    "AWS_CA_BUNDLE",
];

/// The one variable whose value is a secret: shown masked by `install --dry-run`.
const SECRET: &str = "AWS_SECRET_ACCESS_KEY";

/// Where schedule NAME's credentials file lives on the system it runs on.
pub fn path(name: &str) -> PathBuf {
    Path::new("/etc/osimage").join(format!("schedule-{name}.env"))
}

/// The S3 settings a schedule's runs will use, as `KEY`, `VALUE` pairs.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreCredentials {
    vars: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for StoreCredentials {
    /// Never shows the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lines(true))
    }
}

impl StoreCredentials {
    /// What `settings` (resolved by the installer, [`S3Settings::from_env`]) and `ca` (a PEM
    /// file trusted besides the bundled roots) become. Temporary credentials are refused: a
    /// session token expires before the timer's first runs.
    pub fn from_settings(
        settings: &S3Settings,
        ca: Option<&Path>,
    ) -> Result<StoreCredentials, ScheduleError> {
        if settings.token.is_some() {
            return Err(ScheduleError::Invalid(
                "the S3 credentials found carry a session token (AWS_SESSION_TOKEN or \
                 aws_session_token): temporary credentials expire before the schedule's runs; \
                 give the schedule a long-lived access key (AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or a profile with them)"
                    .into(),
            ));
        }
        let style = match settings.style {
            rusty_s3::UrlStyle::Path => "path",
            rusty_s3::UrlStyle::VirtualHost => "virtual",
        };
        let mut vars = vec![
            ("AWS_ACCESS_KEY_ID", settings.key_id.clone()),
            (SECRET, settings.secret.clone()),
            ("AWS_REGION", settings.region.clone()),
            (
                "AWS_ENDPOINT_URL_S3",
                settings.endpoint.as_str().trim_end_matches('/').to_string(),
            ),
            (ADDRESSING_ENV, style.to_string()),
        ];
        if let Some(ca) = ca {
            let ca = std::path::absolute(ca)
                .map_err(|e| ScheduleError::Argument(format!("{}: {e}", ca.display())))?;
            let text = ca
                .to_str()
                .ok_or_else(|| ScheduleError::Argument(format!("{}: not UTF-8", ca.display())))?;
            vars.push(("AWS_CA_BUNDLE", text.to_string()));
        }
        for (k, v) in &vars {
            check_value(k, v).map_err(ScheduleError::Invalid)?;
        }
        Ok(StoreCredentials { vars })
    }

    /// The settings lines (`KEY='VALUE'`), the secret replaced by `********` when `masked`.
    pub fn lines(&self, masked: bool) -> String {
        self.vars
            .iter()
            .map(|(k, v)| match (masked, *k == SECRET) {
                (true, true) => format!("{k}='********'\n"),
                _ => format!("{k}='{v}'\n"),
            })
            .collect()
    }

    /// The settings a run uses: these values alone (no environment, no `~/.aws`).
    pub fn settings(&self) -> Result<S3Settings, crate::remote::s3::S3Error> {
        let map: BTreeMap<&str, &str> = self.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        S3Settings::resolve(&|k| map.get(k).map(|v| v.to_string()), None)
    }
}

/// A value the file can hold quoted in single quotes, read the same by systemd and sh.
fn check_value(key: &str, v: &str) -> Result<(), String> {
    if v.contains('\'') || v.contains('\\') || v.chars().any(char::is_control) {
        return Err(format!(
            "the S3 setting {key} holds a quote, a backslash or a control character: a \
             schedule's credentials file cannot hold it"
        ));
    }
    Ok(())
}

/// The whole file: `marker` (the schedule's marker line, with its newline), what it is, the
/// settings.
pub fn file_text(marker: &str, name: &str, c: &StoreCredentials, masked: bool) -> String {
    format!(
        "{marker}# Written by `osimage schedule install`; remove with `osimage schedule remove \
         {name}`.\n# The S3 settings of schedule {name}'s runs (docs/SCHEDULE.md \
         \"Credentials\"): keep it mode 0600. After a key rotation, edit it or install again \
         with --force.\n{}",
        c.lines(masked)
    )
}

/// Reads a credentials file for a run: a regular file (not a symbolic link) owned by the
/// user running, unreadable by group and others, holding only [`KEYS`].
pub fn read(path: &Path) -> Result<StoreCredentials, ScheduleError> {
    let text = super::keys::read_private(
        path,
        "credentials file",
        "; install the schedule again (osimage schedule install --force …) to write it",
    )?;
    parse(&text).map_err(|(line, why)| {
        ScheduleError::Invalid(format!("{}: line {line}: {why}", path.display()))
    })
}

/// The settings lines of a credentials file; an error carries its line number.
fn parse(text: &str) -> Result<StoreCredentials, (usize, String)> {
    let mut vars: Vec<(&'static str, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| (n, "not KEY='VALUE'".to_string()))?;
        let key = KEYS
            .iter()
            .find(|known| **known == k)
            .ok_or_else(|| (n, format!("{k}: not one of {}", KEYS.join(", "))))?;
        let v = match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            Some(q) => q,
            None => v,
        };
        check_value(key, v).map_err(|e| (n, e))?;
        if vars.iter().any(|(seen, _)| seen == key) {
            return Err((n, format!("{key} is set twice")));
        }
        vars.push((key, v.to_string()));
    }
    Ok(StoreCredentials { vars })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> S3Settings {
        let env: BTreeMap<&str, &str> = [
            ("AWS_ACCESS_KEY_ID", "GK0123"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t/+x"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900"),
            ("AWS_REGION", "garage"),
        ]
        .into();
        S3Settings::resolve(&|k| env.get(k).map(|v| v.to_string()), None).unwrap()
    }

    #[test]
    fn the_file_reads_back_as_the_same_settings_and_dry_run_masks_the_secret() {
        let c =
            StoreCredentials::from_settings(&settings(), Some(Path::new("/etc/ca.pem"))).unwrap();
        let text = file_text("# osimage-schedule: {}\n", "web", &c, false);
        assert!(
            text.contains("AWS_SECRET_ACCESS_KEY='s3cr3t/+x'\n"),
            "{text}"
        );
        assert!(text.contains("OSIMAGE_S3_ADDRESSING='path'\n"), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back, c);
        let s = back.settings().unwrap();
        assert_eq!(
            (s.key_id.as_str(), s.secret.as_str(), s.region.as_str()),
            ("GK0123", "s3cr3t/+x", "garage")
        );
        assert_eq!(s.endpoint.as_str(), "http://127.0.0.1:3900/");
        assert_eq!(s.ca_bundle.as_deref(), Some(Path::new("/etc/ca.pem")));
        let shown = file_text("", "web", &c, true);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("AWS_SECRET_ACCESS_KEY='********'"),
            "{shown}"
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn session_tokens_and_unquotable_values_are_refused() {
        let mut s = settings();
        s.token = Some("tok".into());
        let e = StoreCredentials::from_settings(&s, None).unwrap_err();
        assert!(e.to_string().contains("temporary credentials"), "{e}");
        let mut s = settings();
        s.secret = "it's".into();
        assert!(StoreCredentials::from_settings(&s, None).is_err());
        for (bad, line) in [
            ("AWS_ACCESS_KEY_ID='a'\nHOME='/x'\n", 2),
            ("# c\n\nAWS_REGION\n", 3),
            ("AWS_REGION='a'\nAWS_REGION='b'\n", 2),
        ] {
            assert_eq!(parse(bad).unwrap_err().0, line, "{bad}");
        }
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.env");
        let c = StoreCredentials::from_settings(&settings(), None).unwrap();
        std::fs::write(&p, file_text("", "web", &c, false)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 0600") && e.contains("c.env"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&p).unwrap(), c);
        let link = dir.path().join("link.env");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(read(&link).is_err(), "a symbolic link is not followed");
        assert!(read(&dir.path().join("none.env")).is_err());
    }
}
