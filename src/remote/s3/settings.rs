//! Where an S3 server is and who we are to it, found the way the AWS tools find it
//! (docs/STORE.md §1): credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
//! (+ `AWS_SESSION_TOKEN`) or a profile of `~/.aws/credentials`; region and endpoint from the
//! environment or the profile of `~/.aws/config`; path-style requests for an explicit
//! endpoint (self-hosted servers), virtual-hosted ones for AWS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusty_s3::UrlStyle;
use url::Url;

use super::S3Error;

/// Chooses path-style or virtual-hosted requests, overriding the default.
pub const ADDRESSING_ENV: &str = "OSIMAGE_S3_ADDRESSING";

/// Everything a request to the server needs besides the bucket and key.
#[derive(Clone)]
pub struct S3Settings {
    /// The server's base URL (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:3900`).
    pub endpoint: Url,
    pub region: String,
    pub style: UrlStyle,
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
    /// `AWS_CA_BUNDLE`: a PEM file of CAs trusted besides the bundled roots.
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for S3Settings {
    /// Never shows the secret or the session token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("style", &self.style)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// The settings of this process: its environment and the current user's `~/.aws/`.
    pub fn from_env() -> Result<S3Settings, S3Error> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        S3Settings::resolve(&|k| std::env::var(k).ok(), home.as_deref())
    }

    /// The settings `var` (an environment) and the `.aws` directory under `home` give.
    pub fn resolve(
        var: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<S3Settings, S3Error> {
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        let file = |env: &str, name: &str| -> Option<PathBuf> {
            var(env)
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".aws").join(name)))
        };
        let config = match file("AWS_CONFIG_FILE", "config") {
            Some(p) => read_ini(&p)?,
            None => Ini::default(),
        };
        let config_section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let from_config = |k: &str| config.get(&config_section, k);

        let (key_id, secret, token) = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        {
            (Some(k), Some(s)) => (k, s, var("AWS_SESSION_TOKEN")),
            (Some(_), None) | (None, Some(_)) => {
                return Err(S3Error::Settings(
                    "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set: set both"
                        .into(),
                ));
            }
            (None, None) => {
                let path = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
                let creds = match &path {
                    Some(p) => read_ini(p)?,
                    None => Ini::default(),
                };
                let get = |k: &str| creds.get(&profile, k).or_else(|| from_config(k));
                match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                    (Some(k), Some(s)) => (k, s, get("aws_session_token")),
                    _ => {
                        let shown = path.map_or_else(
                            || "~/.aws/credentials".to_string(),
                            |p| p.display().to_string(),
                        );
                        return Err(S3Error::Settings(format!(
                            "no S3 credentials: set AWS_ACCESS_KEY_ID and \
                             AWS_SECRET_ACCESS_KEY, or give profile {profile:?} \
                             aws_access_key_id and aws_secret_access_key in {shown}"
                        )));
                    }
                }
            }
        };

        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| from_config("region"))
            .unwrap_or_else(|| "us-east-1".to_string());
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(S3Error::Settings(format!(
                "region {region:?} is not a region name"
            )));
        }
        let explicit = var("AWS_ENDPOINT_URL_S3")
            .map(|v| ("AWS_ENDPOINT_URL_S3", v))
            .or_else(|| var("AWS_ENDPOINT_URL").map(|v| ("AWS_ENDPOINT_URL", v)))
            .or_else(|| from_config("endpoint_url").map(|v| ("endpoint_url", v)));
        let (endpoint, mut style) = match &explicit {
            Some((from, v)) => (parse_endpoint(from, v)?, UrlStyle::Path),
            None => (
                Url::parse(&format!("https://s3.{region}.amazonaws.com"))
                    .map_err(|e| S3Error::Settings(format!("region {region:?}: {e}")))?,
                UrlStyle::VirtualHost,
            ),
        };
        match var(ADDRESSING_ENV).as_deref() {
            None => {}
            Some("path") => style = UrlStyle::Path,
            Some("virtual") => style = UrlStyle::VirtualHost,
            Some(other) => {
                return Err(S3Error::Settings(format!(
                    "{ADDRESSING_ENV}={other:?}: say path or virtual"
                )));
            }
        }
        Ok(S3Settings {
            endpoint,
            region,
            style,
            key_id,
            secret,
            token,
            ca_bundle: var("AWS_CA_BUNDLE").map(PathBuf::from),
        })
    }
}

/// An endpoint URL: http or https, a host, nothing after the path (`from` names where it
/// was given, for the message).
pub fn parse_endpoint(from: &str, v: &str) -> Result<Url, S3Error> {
    let bad = |why: String| S3Error::Settings(format!("{from}={v:?}: {why}"));
    let url = Url::parse(v.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("not an http:// or https:// URL with a host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("an endpoint has no query, fragment or user name".into()));
    }
    Ok(url)
}

/// The sections of an AWS-style INI file: `[name]`, `key = value`, `#`/`;` comments.
#[derive(Default)]
struct Ini {
    sections: HashMap<String, HashMap<String, String>>,
}

impl Ini {
    fn get(&self, section: &str, key: &str) -> Option<String> {
        self.sections
            .get(section)?
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
    }
}

/// Reads `path`; a missing file is an empty one (the AWS tools treat it so).
fn read_ini(path: &Path) -> Result<Ini, S3Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ini::default()),
        Err(e) => {
            return Err(S3Error::Settings(format!(
                "reading {}: {e}",
                path.display()
            )));
        }
    };
    parse_ini(&text)
        .map_err(|(line, why)| S3Error::Settings(format!("{} line {line}: {why}", path.display())))
}

fn parse_ini(text: &str) -> Result<Ini, (usize, String)> {
    let mut ini = Ini::default();
    let mut current: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or((n + 1, "a section header without ']'".to_string()))?;
            // `[profile  x]` and `[profile x]` are the same section to the AWS CLI.
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            current = Some(name.clone());
            ini.sections.entry(name).or_default();
            continue;
        }
        // Indented lines continue a nested setting (`s3 =` then `  addressing_style = …`);
        // they belong to no key this reader knows, so they are passed over.
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or((n + 1, "neither a [section] nor key = value".to_string()))?;
        let Some(section) = &current else {
            return Err((n + 1, "a setting before any [section]".to_string()));
        };
        ini.sections
            .entry(section.clone())
            .or_default()
            .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(ini)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_credentials_and_endpoint_give_path_style() {
        let e = env(&[
            ("AWS_ACCESS_KEY_ID", "GK1"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_REGION", "garage"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900"),
        ]);
        let s = S3Settings::resolve(&e, None).unwrap();
        assert_eq!(s.key_id, "GK1");
        assert_eq!(s.secret, "s3cr3t");
        assert_eq!(s.region, "garage");
        assert_eq!(s.endpoint.as_str(), "http://127.0.0.1:3900/");
        assert!(matches!(s.style, UrlStyle::Path));
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }

    #[test]
    fn aws_defaults_are_virtual_hosted_in_the_region() {
        let e = env(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
        ]);
        let s = S3Settings::resolve(&e, None).unwrap();
        assert_eq!(s.endpoint.as_str(), "https://s3.eu-west-3.amazonaws.com/");
        assert!(matches!(s.style, UrlStyle::VirtualHost));
        let e = env(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            (ADDRESSING_ENV, "path"),
        ]);
        let s = S3Settings::resolve(&e, None).unwrap();
        assert_eq!(s.region, "us-east-1");
        assert!(matches!(s.style, UrlStyle::Path));
    }

    #[test]
    fn profiles_come_from_the_credentials_and_config_files() {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n\
             # the fleet's store\n[fleet]\naws_access_key_id=FLEET\n\
             aws_secret_access_key = fleetsecret\naws_session_token = tok\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-central-1\n[profile  fleet]\nregion = garage\n\
             endpoint_url = https://s3.example.net:3900\ns3 =\n  addressing_style = path\n",
        )
        .unwrap();
        let s = S3Settings::resolve(&env(&[]), Some(home.path())).unwrap();
        assert_eq!(
            (s.key_id.as_str(), s.region.as_str()),
            ("DEF", "eu-central-1")
        );
        assert!(matches!(s.style, UrlStyle::VirtualHost));
        let e = env(&[("AWS_PROFILE", "fleet")]);
        let s = S3Settings::resolve(&e, Some(home.path())).unwrap();
        assert_eq!(s.key_id, "FLEET");
        assert_eq!(s.secret, "fleetsecret");
        assert_eq!(s.token.as_deref(), Some("tok"));
        assert_eq!(s.region, "garage");
        assert_eq!(s.endpoint.as_str(), "https://s3.example.net:3900/");
        assert!(matches!(s.style, UrlStyle::Path));
    }

    #[test]
    fn missing_or_bad_settings_say_what_to_set() {
        let home = tempfile::tempdir().unwrap();
        let e = S3Settings::resolve(&env(&[]), Some(home.path())).unwrap_err();
        assert!(e.to_string().contains("no S3 credentials"), "{e}");
        let e = S3Settings::resolve(&env(&[("AWS_ACCESS_KEY_ID", "x")]), None).unwrap_err();
        assert!(e.to_string().contains("set both"), "{e}");
        let keys = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")];
        for (k, v, why) in [
            ("AWS_ENDPOINT_URL", "ftp://x", "not an http"),
            ("AWS_ENDPOINT_URL", "http://h/?a=b", "no query"),
            ("AWS_REGION", "eu west", "not a region"),
            (ADDRESSING_ENV, "both", "path or virtual"),
        ] {
            let mut pairs = keys.to_vec();
            pairs.push((k, v));
            let e = S3Settings::resolve(&env(&pairs), None).unwrap_err();
            assert!(e.to_string().contains(why), "{k}={v}: {e}");
        }
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(aws.join("config"), "region = x\n").unwrap();
        let e = S3Settings::resolve(&env(&keys), Some(home.path())).unwrap_err();
        assert!(e.to_string().contains("config line 1"), "{e}");
    }
}
