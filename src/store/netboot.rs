//! The store's side of `osimage netboot s3://B/P/NAME[@V]` (docs/STORE.md §9.1): the version
//! opened and checked, then a `source.conf` naming its version object and every pack by a
//! presigned URL, so a machine with no credentials reads exactly that version. An encrypted
//! store's version names its objects by their keyed names and gets its key set (§6.1,
//! `version_keys`) wrapped for the lock the caller gives.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::names;
use super::read::{OpenVersion, open_version};
use super::source_conf::{ConfObject, ConfPack, SOURCE_CONF_VERSION, SourceConf};
use super::version_keys::VersionKeys;
use super::{Store, StoreError};
use crate::envelope::keys::Lock;
use crate::format::source::RangeRead as _;

/// A version ready to be served: its `source.conf` and the opened version (for its
/// manifest and the head's rescue blobs).
pub struct NetbootVersion {
    pub conf: SourceConf,
    pub open: OpenVersion,
}

/// Opens VERSION of SERIES and presigns GETs of its version object and packs, valid for
/// `ttl` (until `expires`), naming the server by `endpoint` when given (where the machines
/// reach it). Refuses a version whose head names no rescue blobs: there is nothing to boot.
/// An encrypted store's version gets its key set wrapped for `lock` (§6.1).
#[allow(clippy::too_many_arguments)]
pub fn presigned(
    store: &Store,
    series: &str,
    version: &str,
    ttl: Duration,
    expires: DateTime<Utc>,
    endpoint: Option<&url::Url>,
    lock: Option<&Lock>,
) -> Result<NetbootVersion, StoreError> {
    let sign = |key: &str| Ok(store.client.presign_get(key, ttl, endpoint)?);
    let expires = expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    with_urls(store, series, version, Some(expires), &sign, lock)
}

/// Opens VERSION of SERIES as [`presigned`] does, its objects named by plain URLs (§9.1
/// "Plain URLs"): `base` (checked by [`check_plain_base`]) followed by each object's key in
/// the bucket. Nothing is signed; nothing expires.
pub fn plain(
    store: &Store,
    series: &str,
    version: &str,
    base: &str,
    lock: Option<&Lock>,
) -> Result<NetbootVersion, StoreError> {
    let base = check_plain_base(base).map_err(StoreError::Unsupported)?;
    let url = |key: &str| Ok(plain_url(&base, key));
    with_urls(store, series, version, None, &url, lock)
}

/// `--plain-url BASE` as URLs are made from it: an http:// or https:// URL without a query
/// or fragment, ending in `/`.
pub fn check_plain_base(base: &str) -> Result<String, String> {
    let parsed =
        url::Url::parse(base).map_err(|e| format!("--plain-url {base:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(format!(
            "--plain-url {base:?} is not an http:// or https:// URL"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "--plain-url {base:?} has a query or fragment: give the URL the object keys are \
             appended to"
        ));
    }
    let mut b = base.to_string();
    if !b.ends_with('/') {
        b.push('/');
    }
    Ok(b)
}

/// `base` followed by `key`, every byte outside `A-Za-z0-9-._~/` percent-encoded.
fn plain_url(base: &str, key: &str) -> String {
    let mut u = base.to_string();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            u.push(b as char);
        } else {
            u.push_str(&format!("%{b:02X}"));
        }
    }
    u
}

/// Opens the version and names its version object and packs by `url(bucket key)` (their
/// keyed names in an encrypted store, whose version also gets its key set for `lock`).
fn with_urls(
    store: &Store,
    series: &str,
    version: &str,
    expires: Option<String>,
    url: &dyn Fn(&str) -> Result<String, StoreError>,
    lock: Option<&Lock>,
) -> Result<NetbootVersion, StoreError> {
    let open =
        open_version(store, series, version).map_err(|e| StoreError::Unsupported(e.to_string()))?;
    if open.head.rescue.is_none() {
        return Err(StoreError::Unsupported(format!(
            "{}: the version has no rescue environment stored (it was captured from a root \
             without a kernel, or by an osimage before rescue blobs): nothing to boot",
            open.name.display()
        )));
    }
    let object = ConfObject {
        url: url(&store.root.key(&store.version_rel(series, version)))?,
        len: open.version_object.len(),
        frame_hash: names::hex(&open.head.frame_hash),
    };
    let mut packs = Vec::with_capacity(open.reader.manifest().packs.len());
    for p in &open.reader.manifest().packs {
        packs.push(ConfPack {
            id: names::hex(&p.hash),
            url: url(&store.root.key(&store.pack_rel(&p.hash)))?,
            len: p.len,
        });
    }
    let keys = key_set(store, &open, lock)?;
    let conf = SourceConf {
        version: SOURCE_CONF_VERSION,
        store_id: names::hex(&store.id),
        series: series.to_string(),
        version_name: version.to_string(),
        image_id: names::hex(&open.head.image_id),
        expires,
        object,
        packs,
        keys,
    };
    Ok(NetbootVersion { conf, open })
}

/// An encrypted store's version: its key set (§6.1) wrapped for `lock`, in base64; none for
/// a plain store.
fn key_set(
    store: &Store,
    open: &OpenVersion,
    lock: Option<&Lock>,
) -> Result<Option<String>, StoreError> {
    use base64::Engine as _;
    let (Some(keys), Some(nonce)) = (store.keys(), open.nonce) else {
        return Ok(None);
    };
    let Some(lock) = lock else {
        return Err(StoreError::Unsupported(format!(
            "{}: an encrypted store's version needs a passphrase or age recipients for its \
             keys (docs/STORE.md §6.1)",
            open.name.display()
        )));
    };
    let ids: Vec<[u8; 32]> = open
        .reader
        .manifest()
        .packs
        .iter()
        .map(|p| p.hash)
        .collect();
    let set = VersionKeys::derive(keys, nonce, &ids);
    let wrapped = set
        .wrap(lock)
        .map_err(|e| StoreError::Unsupported(e.to_string()))?;
    Ok(Some(
        base64::engine::general_purpose::STANDARD.encode(wrapped),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_are_the_base_and_the_key() {
        let base = check_plain_base("http://mirror:3900/bucket").expect("base");
        assert_eq!(base, "http://mirror:3900/bucket/");
        assert_eq!(
            plain_url(&base, "site/images/web 01/2026-12-07"),
            "http://mirror:3900/bucket/site/images/web%2001/2026-12-07"
        );
        assert_eq!(
            check_plain_base("https://m/store/").expect("kept"),
            "https://m/store/"
        );
        for bad in ["ftp://m/x/", "m/x", "http://m/x/?a=1", "http://m/x/#f", ""] {
            let e = check_plain_base(bad).expect_err(bad);
            assert!(e.starts_with("--plain-url"), "{e}");
        }
    }
}
