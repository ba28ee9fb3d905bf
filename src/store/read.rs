//! Reading a version of a store (docs/STORE.md §2.5, §7): the version object's prefix says how
//! long the head and the manifest frame are, the head what the frame hashes to; the frame is
//! read from the same object. The packs the manifest names are opened as **one** HTTP object
//! made of parts (`S3Client::open_many`), so a plan over the whole image shares one budget,
//! one fetcher pool and one read cache however many packs there are (§7.2.1). The payload
//! reader then checks everything it checks of a file: the manifest, each pack's length and
//! header (a store pack of this store), every block's hash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::envelope::stream;
use crate::format::PayloadError;
use crate::format::manifest::PackRecord;
use crate::format::source::RangeRead;
use crate::image::{self, Backing, PackOpener, Span};
use crate::payload::reader::PayloadReader;
use crate::remote::{HttpObject, RetryPolicy, Trust, redact};
use crate::store::Store;
use crate::store::crypt::{StoreKeys, VERSION_MANIFEST};
use crate::store::names;
use crate::store::objects::version::{self, PREFIX_LEN, VersionHead};
use crate::store::source_conf::SourceConf;
use crate::store::version_keys::VersionKeys;

/// An open version: the reader, the head its object starts with, and what reading it costs.
pub struct OpenVersion {
    pub reader: PayloadReader,
    pub head: VersionHead,
    /// How messages name it: `s3://BUCKET/PREFIX/NAME@VERSION`.
    pub name: PathBuf,
    /// The version object (its head and manifest).
    pub version_object: Arc<HttpObject>,
    /// The packs, as one object of parts.
    pub packs: Arc<HttpObject>,
    /// An encrypted store's version: the key its manifest frame is sealed with (§6).
    pub frame_cipher: Option<Arc<stream::StreamCipher>>,
    /// An encrypted store's version: its object's nonce (§6.1).
    pub nonce: Option<[u8; 16]>,
}

/// The keys a sealed version is read with: the store's, or a netboot key set of this version
/// alone (§6.1).
#[derive(Clone)]
enum Keys {
    Store(Arc<StoreKeys>),
    Version(Arc<VersionKeys>),
}

/// Opens VERSION of SERIES in `store` and checks it as `PayloadReader` checks a file, and
/// that its manifest belongs to this store, series and version.
pub fn open_version(
    store: &Store,
    series: &str,
    version: &str,
) -> Result<OpenVersion, PayloadError> {
    let name = PathBuf::from(format!("{}/{series}@{version}", store.root));
    let rel = store.version_rel(series, version);
    let object = store
        .client
        .open(&store.root.key(&rel))
        .map_err(|e| PayloadError::io("cannot open", &name, e))?;
    let wanted = Wanted {
        store_id: store.id,
        series,
        version,
        frame_hash: None,
        keys: store.keys.clone().map(Keys::Store),
    };
    let packs = Arc::new(OnceLock::new());
    let opener = pack_opener(store, &name, packs.clone());
    open_checked(
        name,
        Arc::new(object),
        &store.shown(&rel),
        &wanted,
        opener,
        &packs,
    )
}

/// Opens the version a `source.conf` names (docs/STORE.md §9.1: a network-booted machine,
/// no credentials) through its URLs, and checks it as [`open_version`] does and against the
/// conf: the version object's length and frame hash, and every pack's id and length. An
/// encrypted store's conf holds the version's key set (§6.1), opened with `unlock` and
/// checked against the conf before anything is read.
pub fn open_from_conf(
    conf: &SourceConf,
    policy: RetryPolicy,
    trust: &Trust,
    unlock: &crate::envelope::Unlock,
) -> Result<OpenVersion, PayloadError> {
    let name = PathBuf::from(conf.shown());
    let bad = |msg: String| PayloadError::Image {
        path: name.clone(),
        msg,
    };
    let frame_hash = conf.frame_hash().map_err(bad)?;
    let store_id = conf.store_id().map_err(bad)?;
    let keys = match conf.wrapped_keys().map_err(bad)? {
        Some(wrapped) => {
            let k = VersionKeys::open(&wrapped, unlock, Path::new("source.conf"))?;
            let listed = conf.packs.iter().map(|p| p.id.clone());
            let named = k.pack_ids().map(|id| names::hex(id));
            if k.store_id != store_id || !listed.eq(named) {
                return Err(bad(
                    "source.conf: the key set does not match this version".into()
                ));
            }
            Some(Arc::new(k))
        }
        None => None,
    };
    let object = HttpObject::open(&conf.object.url, policy, trust)
        .map_err(|e| PayloadError::io("cannot open", &name, e))?;
    if object.len() != conf.object.len {
        return Err(bad(format!(
            "the version object has {} bytes, source.conf says {} (replaced in the store?)",
            object.len(),
            conf.object.len
        )));
    }
    let wanted = Wanted {
        store_id,
        series: &conf.series,
        version: &conf.version_name,
        frame_hash: Some(frame_hash),
        keys: keys.clone().map(Keys::Version),
    };
    let packs = Arc::new(OnceLock::new());
    let opener = url_pack_opener(conf, &name, policy, trust, keys, packs.clone());
    let shown = redact(&conf.object.url);
    open_checked(name, Arc::new(object), &shown, &wanted, opener, &packs)
}

/// What an opened version must be.
struct Wanted<'a> {
    store_id: [u8; 16],
    series: &'a str,
    version: &'a str,
    /// The manifest frame's hash, when the caller knows it in advance (`source.conf`).
    frame_hash: Option<[u8; 32]>,
    /// An encrypted store's keys: the head and the frame are sealed (§6).
    keys: Option<Keys>,
}

/// Reads the head of the version object `object`, checks it is `wanted`, and opens the
/// payload reader on its manifest frame with `opener` for the packs (which it keeps in
/// `packs`).
fn open_checked(
    name: PathBuf,
    object: Arc<HttpObject>,
    shown: &str,
    wanted: &Wanted,
    opener: PackOpener,
    packs: &OnceLock<Arc<HttpObject>>,
) -> Result<OpenVersion, PayloadError> {
    let (head, frame_at, frame_len, nonce) =
        read_head(&*object, shown, &name, wanted.keys.as_ref())?;
    if head.series != wanted.series || head.version != wanted.version {
        return Err(PayloadError::Image {
            path: name,
            msg: format!(
                "the object holds {}@{}, not this version (damaged or altered store)",
                head.series, head.version
            ),
        });
    }
    if wanted.frame_hash.is_some_and(|h| h != head.frame_hash) {
        return Err(PayloadError::Image {
            path: name,
            msg: "the version object's manifest is not the one source.conf names (the \
                  version was replaced in the store: make the netboot files again)"
                .into(),
        });
    }
    let source: Arc<dyn RangeRead> = object.clone();
    let manifest = Backing::remote(source).span(frame_at, frame_len);
    let mut c = image::from_parts(&name, manifest, head.frame_hash, head.image_id, opener);
    let frame_cipher = match (&wanted.keys, nonce) {
        (Some(Keys::Store(k)), Some(nonce)) => Some(k.version(&nonce, VERSION_MANIFEST)),
        (Some(Keys::Version(k)), Some(_)) => Some(k.manifest()),
        _ => None,
    };
    if let Some(cipher) = &frame_cipher {
        c = c.with_manifest_cipher(cipher.clone());
    }
    let reader = PayloadReader::from_container(&name, c)?;
    let belongs = crate::format::store_ref::from_manifest(reader.manifest())
        .map_err(|e| e.at(&name))?
        .is_some_and(|r| {
            r.store_id == wanted.store_id
                && r.series == wanted.series
                && r.version == wanted.version
        });
    if !belongs {
        return Err(PayloadError::Image {
            path: name,
            msg: "the manifest names another store, series or version (damaged or altered \
                  store)"
                .into(),
        });
    }
    let packs = packs.get().cloned().ok_or_else(|| PayloadError::Image {
        path: name.clone(),
        msg: "internal: the packs were never opened".into(),
    })?;
    Ok(OpenVersion {
        reader,
        head,
        name,
        version_object: object,
        packs,
        frame_cipher,
        nonce,
    })
}

/// Opens the packs a manifest lists as one object of parts and cuts it into each pack's span;
/// keeps the object in `keep` for its counters. In an encrypted store each pack is found
/// under its keyed name, is its sealed length long, and is read through its own key (§6).
fn pack_opener(store: &Store, name: &Path, keep: Arc<OnceLock<Arc<HttpObject>>>) -> PackOpener {
    let (client, name, store) = (store.client.clone(), name.to_path_buf(), store.clone());
    Arc::new(move |records| {
        let sealed = store.keys.is_some();
        let parts: Vec<(String, u64)> = records
            .iter()
            .map(|p| {
                let len = if sealed {
                    stream::sealed_len(p.len)
                } else {
                    p.len
                };
                (store.root.key(&store.pack_rel(&p.hash)), len)
            })
            .collect();
        let object = client
            .open_many(&parts, format!("{} (packs)", name.display()))
            .map_err(|e| PayloadError::io("cannot open the packs of", &name, e))?;
        let object = Arc::new(object);
        let _ = keep.set(object.clone());
        // Each pack's span is named by its object key, for damage messages (§6.1).
        let keys = store.keys.as_deref();
        let spans = spans_of(object, records, &|_, id| keys.map(|k| k.pack(id)));
        Ok(spans
            .into_iter()
            .zip(&parts)
            .map(|(span, (key, _))| span.named(key))
            .collect())
    })
}

/// The key of pack `i` of id `id`, when the packs are sealed.
pub(super) type PackCipher<'a> = dyn Fn(usize, &[u8; 32]) -> Option<Arc<stream::StreamCipher>> + 'a;

/// Each pack's span in `object`, the packs end to end (sealed where `cipher(i, id)` gives
/// pack i's key: its sealed length, read as its plaintext).
pub(super) fn spans_of(
    object: Arc<HttpObject>,
    records: &[PackRecord],
    cipher: &PackCipher<'_>,
) -> Vec<Span> {
    let source: Arc<dyn RangeRead> = object;
    let backing = Backing::remote(source);
    let mut at = 0u64;
    records
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let span = match cipher(i, &p.hash) {
                Some(c) => backing.sealed_span(at, p.len, c),
                None => backing.span(at, p.len),
            };
            at += span.stored_len();
            span
        })
        .collect()
}

/// The packs of a `source.conf`: the manifest's records must be the conf's list, id for id
/// and length for length, before one byte of them is asked for.
fn url_pack_opener(
    conf: &SourceConf,
    name: &Path,
    policy: RetryPolicy,
    trust: &Trust,
    keys: Option<Arc<VersionKeys>>,
    keep: Arc<OnceLock<Arc<HttpObject>>>,
) -> PackOpener {
    let (listed, name, trust) = (conf.packs.clone(), name.to_path_buf(), trust.clone());
    Arc::new(move |records| {
        let bad = |msg: String| PayloadError::Image {
            path: name.clone(),
            msg,
        };
        if records.len() != listed.len() {
            return Err(bad(format!(
                "its manifest names {} packs, source.conf {}",
                records.len(),
                listed.len()
            )));
        }
        for (i, (r, l)) in records.iter().zip(&listed).enumerate() {
            if names::hex(&r.hash) != l.id || r.len != l.len {
                return Err(bad(format!(
                    "pack {i} of its manifest is {} ({} bytes), source.conf names {} ({} bytes)",
                    names::hex(&r.hash),
                    r.len,
                    l.id,
                    l.len
                )));
            }
        }
        let stored = |len: u64| match keys {
            Some(_) => stream::sealed_len(len),
            None => len,
        };
        let urls: Vec<(String, u64)> = (listed.iter())
            .map(|p| (p.url.clone(), stored(p.len)))
            .collect();
        let object =
            HttpObject::open_urls(&urls, format!("{} (packs)", name.display()), policy, &trust)
                .map_err(|e| PayloadError::io("cannot open the packs of", &name, e))?;
        let object = Arc::new(object);
        let _ = keep.set(object.clone());
        let keys = keys.as_deref();
        let spans = spans_of(object, records, &|i, id| keys.and_then(|k| k.pack(i, id)));
        // Named by the object their URL names, for damage messages (§9.1).
        Ok(spans
            .into_iter()
            .zip(&listed)
            .map(|(span, p)| span.named(&url_object(&p.url)))
            .collect())
    })
}

/// The object a URL names, as a damage message shows it (docs/STORE.md §9.1 "Damage"): the
/// URL's path without its leading `/`, query (a presigned URL's signature) or fragment —
/// `BUCKET/P/packs/ab/<name>` for a path-style URL, `P/packs/ab/<name>` for a virtual-hosted
/// one (the agent cannot tell a bucket from a prefix in a path); the URL without its query
/// when it has no path.
fn url_object(url: &str) -> String {
    let bare = crate::remote::redact(url);
    let path = bare
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at + 1..]))
        .filter(|p| !p.is_empty());
    match path {
        Some(p) => p.to_string(),
        None => bare.clone(),
    }
}

/// What [`read_head`] gives: the head, where the manifest frame lies in the object, its
/// length, and a sealed object's nonce.
type ReadHead = (VersionHead, u64, u64, Option<[u8; 16]>);

/// Reads and checks the head of the version object `object` (`shown` in its own errors):
/// the head, and where the manifest frame lies in the object and its length. An encrypted
/// store's (`keys`) must be sealed, a plain store's must not.
fn read_head(
    object: &dyn RangeRead,
    shown: &str,
    name: &Path,
    keys: Option<&Keys>,
) -> Result<ReadHead, PayloadError> {
    let io = |e| PayloadError::io("cannot read", name, e);
    let bad = |e: crate::store::ObjectError| PayloadError::Image {
        path: name.to_path_buf(),
        msg: e.to_string(),
    };
    let mut first = [0u8; PREFIX_LEN];
    object.read_exact_at(&mut first, 0).map_err(io)?;
    let prefix = version::decode_version_prefix(shown, &first).map_err(bad)?;
    if prefix.total_len() != object.len() {
        return Err(PayloadError::Image {
            path: name.to_path_buf(),
            msg: format!(
                "the version object has {} bytes but its prefix says {} (truncated or altered)",
                object.len(),
                prefix.total_len()
            ),
        });
    }
    let mut head = vec![0u8; prefix.head_len as usize];
    object
        .read_exact_at(&mut head, PREFIX_LEN as u64)
        .map_err(io)?;
    let (head, nonce) = match keys {
        Some(Keys::Store(k)) => {
            let (h, n) = version::decode_head_sealed(shown, &prefix, &head, k).map_err(bad)?;
            (h, Some(n))
        }
        Some(Keys::Version(k)) => {
            let (h, n) = version::decode_head_sealed_with(shown, &prefix, &head, &|n| k.head(n))
                .map_err(bad)?;
            (h, Some(n))
        }
        None => (
            version::decode_head(shown, &prefix, &head).map_err(bad)?,
            None,
        ),
    };
    Ok((
        head,
        PREFIX_LEN as u64 + prefix.head_len,
        prefix.frame_len,
        nonce,
    ))
}

#[cfg(test)]
mod tests {
    use super::url_object;

    #[test]
    fn a_pack_url_names_its_object_without_signature_or_credentials() {
        let id = "ab".repeat(32);
        for (url, want) in [
            (
                format!("http://127.0.0.1:3900/bkt/site/packs/ab/{id}?X-Amz-Signature=f00"),
                format!("bkt/site/packs/ab/{id}"),
            ),
            (
                format!("https://bkt.s3.example.com/site/packs/ab/{id}#x"),
                format!("site/packs/ab/{id}"),
            ),
            (
                format!("http://user:pw@mirror/b/site/packs/ab/{id}"),
                format!("b/site/packs/ab/{id}"),
            ),
            (
                "http://mirror/?k=v".to_string(),
                "http://mirror/".to_string(),
            ),
        ] {
            assert_eq!(url_object(&url), want, "{url}");
        }
    }
}
