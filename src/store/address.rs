//! Store and image addresses (docs/STORE.md §1): `s3://BUCKET/PREFIX` names a store,
//! `s3://BUCKET/PREFIX/NAME[@VERSION]` a series in it and, optionally, one of its versions.
//! Bucket and key rules are `remote::s3`'s, so a store address never passes here and fails
//! there.

use std::fmt;

use super::StoreError;
use super::names;
use crate::remote::s3::{SCHEME, check_bucket, check_key, is_s3};

/// The longest prefix: the longest key of §2 (`images/` + a 128-byte NAME + `/` + a version)
/// must still fit S3's 1024 bytes.
const MAX_PREFIX: usize = 768;

/// Where a store lives: everything under `s3://BUCKET/PREFIX/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRoot {
    pub bucket: String,
    /// The key prefix without a trailing `/`; empty for a store at the bucket's root.
    pub prefix: String,
}

impl StoreRoot {
    /// Parses `s3://BUCKET/PREFIX` (a trailing `/` is dropped). PREFIX may have several `/`
    /// components, or be empty (`s3://BUCKET`): the store then holds the bucket's root.
    pub fn parse(s: &str) -> Result<StoreRoot, StoreError> {
        let bad = |why: &str| StoreError::Address(format!("{s}: {why}"));
        if !is_s3(s) {
            return Err(bad("not an s3://BUCKET/PREFIX address"));
        }
        let rest = &s[SCHEME.len()..];
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|w| bad(&w))?;
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if !prefix.is_empty() {
            check_key(prefix).map_err(|w| bad(&w.replace("object key", "prefix")))?;
        }
        if prefix.len() > MAX_PREFIX {
            return Err(bad(&format!(
                "the prefix is {} bytes (at most {MAX_PREFIX})",
                prefix.len()
            )));
        }
        Ok(StoreRoot {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The bucket key of `rel`, a key relative to the store (`config`, `index/…`).
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// `key`, a bucket key under this store, relative to the store; `None` for a key
    /// outside it.
    pub fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }

    /// A key a LIST of this store returned, relative to the store; a key outside the prefix
    /// (a server answering for another prefix) is an error naming it.
    pub fn listed_relative<'k>(&self, key: &'k str) -> Result<&'k str, StoreError> {
        self.relative(key).ok_or_else(|| {
            StoreError::S3(crate::remote::s3::S3Error::Request(format!(
                "{self}: the listing returned the key {key:?}, outside the prefix"
            )))
        })
    }

    /// `rel`'s address, as messages name an object.
    pub fn shown(&self, rel: &str) -> String {
        format!("{SCHEME}{}/{}", self.bucket, self.key(rel))
    }
}

impl fmt::Display for StoreRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{SCHEME}{}", self.bucket)
        } else {
            write!(f, "{SCHEME}{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A series of a store and, optionally, which of its versions (a unique prefix of a version
/// string or of an image id in hex, resolved against the store's listing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageAddress {
    pub root: StoreRoot,
    pub series: String,
    pub version: Option<String>,
}

impl ImageAddress {
    /// Parses `s3://BUCKET/PREFIX/NAME[@VERSION]`: the last component is NAME (§1's rules:
    /// [`names::check_series`]), what is before it the store's prefix, possibly empty.
    pub fn parse(s: &str) -> Result<ImageAddress, StoreError> {
        let bad = |why: &str| StoreError::Address(format!("{s}: {why}"));
        if !is_s3(s) {
            return Err(bad("not an s3://BUCKET/PREFIX/NAME address"));
        }
        let rest = &s[SCHEME.len()..];
        let Some((store, last)) = rest.rsplit_once('/') else {
            return Err(bad(
                "no image NAME after the bucket (s3://BUCKET/PREFIX/NAME)",
            ));
        };
        if store.ends_with('/') {
            // StoreRoot takes a trailing '/' as the end of the prefix; here it is an empty
            // component before NAME.
            return Err(bad("the address has an empty, '.' or '..' component"));
        }
        let (series, version) = match last.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (last, None),
        };
        names::check_series(series).map_err(|w| bad(&w))?;
        if let Some(v) = version {
            names::check_version_selector(v).map_err(|w| bad(&w))?;
        }
        let root = StoreRoot::parse(&format!("{SCHEME}{store}"))
            .map_err(|e| StoreError::Address(format!("{s}: {}", strip_address(&e, store))))?;
        Ok(ImageAddress {
            root,
            series: series.to_string(),
            version: version.map(str::to_string),
        })
    }
}

/// `e`'s reason without the store address it starts with (the caller names the whole one).
fn strip_address(e: &StoreError, store: &str) -> String {
    let text = e.to_string();
    let lead = format!("{SCHEME}{store}: ");
    text.strip_prefix(&lead).unwrap_or(&text).to_string()
}

impl fmt::Display for ImageAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.root, self.series)?;
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_roots_keep_their_prefix_and_print_back() {
        let r = StoreRoot::parse("s3://images/site-a/fleet").unwrap();
        assert_eq!(
            (r.bucket.as_str(), r.prefix.as_str()),
            ("images", "site-a/fleet")
        );
        assert_eq!(r.to_string(), "s3://images/site-a/fleet");
        assert_eq!(r.key("config"), "site-a/fleet/config");
        assert_eq!(r.relative("site-a/fleet/index/ab"), Some("index/ab"));
        assert_eq!(r.relative("site-a/fleetx/config"), None);
        assert_eq!(r.shown("config"), "s3://images/site-a/fleet/config");
        let slash = StoreRoot::parse("s3://images/site-a/").unwrap();
        assert_eq!(slash.prefix, "site-a");
        for bare in ["s3://images", "s3://images/"] {
            let r = StoreRoot::parse(bare).unwrap();
            assert_eq!(r.prefix, "");
            assert_eq!(r.to_string(), "s3://images");
            assert_eq!(r.key("config"), "config");
            assert_eq!(r.relative("config"), Some("config"));
        }
    }

    #[test]
    fn store_roots_refuse_what_s3_would_misread() {
        for (s, why) in [
            ("http://images/a", "not an s3://"),
            ("s3://Images/a", "not valid"),
            ("s3:///a", "no bucket name"),
            ("s3://images/a//b", "empty, '.' or '..'"),
            ("s3://images/../b", "empty, '.' or '..'"),
            ("s3://images/a\tb", "control character"),
        ] {
            let e = StoreRoot::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
        let long = format!("s3://images/{}", "p".repeat(MAX_PREFIX + 1));
        assert!(
            StoreRoot::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("at most 768")
        );
    }

    #[test]
    fn image_addresses_split_name_version_and_store() {
        let a = ImageAddress::parse("s3://images/site-a/fleet/web01@20261205T1950").unwrap();
        assert_eq!(a.root.to_string(), "s3://images/site-a/fleet");
        assert_eq!(a.series, "web01");
        assert_eq!(a.version.as_deref(), Some("20261205T1950"));
        assert_eq!(
            a.to_string(),
            "s3://images/site-a/fleet/web01@20261205T1950"
        );
        let bare = ImageAddress::parse("s3://images/golden").unwrap();
        assert_eq!(
            (bare.root.prefix.as_str(), bare.series.as_str()),
            ("", "golden")
        );
        assert_eq!(bare.version, None);
        assert_eq!(bare.to_string(), "s3://images/golden");
    }

    #[test]
    fn image_addresses_refuse_bad_names_and_versions() {
        for (s, why) in [
            ("s3://images", "no image NAME"),
            ("s3://images/", "empty"),
            ("s3://images/p/.hidden", "'.'"),
            ("s3://images/p/web 01", "[A-Za-z0-9._-]"),
            ("s3://images/p/web01.iso", ".iso or .oimg"),
            ("s3://images/p/web01.OIMG", ".iso or .oimg"),
            ("s3://images/p/web01@", "empty"),
            ("s3://images/p/web01@a b", "[A-Za-z0-9-]"),
            ("s3://Images/p/web01", "not valid"),
            ("s3://images/a//web01", "empty, '.' or '..'"),
        ] {
            let e = ImageAddress::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.starts_with(s), "{s}: {e}");
        }
        let long = format!("s3://images/p/{}", "n".repeat(129));
        assert!(ImageAddress::parse(&long).is_err());
        let longest = format!("s3://images/p/{}", "n".repeat(128));
        assert!(ImageAddress::parse(&longest).is_ok());
    }
}
