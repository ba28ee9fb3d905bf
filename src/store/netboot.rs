//! The store's side of `osimage netboot s3://B/P/NAME[@V]` (docs/STORE.md §9.1): the version
//! opened and checked, then a `source.conf` naming its version object and every pack by a
//! presigned URL, so a machine with no credentials reads exactly that version.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::names;
use super::read::{OpenVersion, open_version};
use super::source_conf::{ConfObject, ConfPack, SOURCE_CONF_VERSION, SourceConf};
use super::{Store, StoreError};
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
pub fn presigned(
    store: &Store,
    series: &str,
    version: &str,
    ttl: Duration,
    expires: DateTime<Utc>,
    endpoint: Option<&url::Url>,
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
    let sign = |rel: &str| {
        store
            .client
            .presign_get(&store.root.key(rel), ttl, endpoint)
    };
    let object = ConfObject {
        url: sign(&names::version_key(series, version))?,
        len: open.version_object.len(),
        frame_hash: names::hex(&open.head.frame_hash),
    };
    let mut packs = Vec::with_capacity(open.reader.manifest().packs.len());
    for p in &open.reader.manifest().packs {
        packs.push(ConfPack {
            id: names::hex(&p.hash),
            url: sign(&names::pack_key(&p.hash))?,
            len: p.len,
        });
    }
    let conf = SourceConf {
        version: SOURCE_CONF_VERSION,
        store_id: names::hex(&store.id),
        series: series.to_string(),
        version_name: version.to_string(),
        image_id: names::hex(&open.head.image_id),
        expires: Some(expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        object,
        packs,
    };
    Ok(NetbootVersion { conf, open })
}
