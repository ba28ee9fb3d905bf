//! A store opened through its `config` (docs/STORE.md §2): what is in it (LISTs of
//! `images/` and `index/`), the heads of its versions (a Range GET of each object's start),
//! and the writes of `store init`, index objects and version objects. Every object read is
//! checked against its name before it is believed.

use chrono::Utc;

use super::names::{self, CONFIG, IMAGES, INDEX};
use super::objects::frame::{HEADER_LEN, Kind};
use super::objects::version::PREFIX_LEN;
use super::objects::{
    StoreConfig, StoreIndex, VersionHead, decode_config, decode_head, decode_index,
    decode_version_prefix, encode_config, encode_version,
};
use super::{StoreError, StoreRoot};
use crate::format::manifest::Timestamp;
use crate::format::source::RangeRead as _;
use crate::remote::s3::{S3Client, S3Error};

/// How much of a version object the first read of its head takes (§2.5): most heads fit,
/// a larger one costs a second read.
pub const HEAD_READ: u64 = 64 << 10;

/// An opened plain store. A clone shares its client.
#[derive(Clone)]
pub struct Store {
    /// Shared with the threads that upload a capture's packs.
    pub client: std::sync::Arc<S3Client>,
    pub root: StoreRoot,
    /// The store id: `config`'s nonce, in every store pack's header (§2.3).
    pub id: [u8; 16],
    pub config: StoreConfig,
}

/// One version object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedVersion {
    pub series: String,
    pub version: String,
    /// The object's length: its head and manifest frame.
    pub size: u64,
}

impl Store {
    /// Creates the store at `root` with `config` and a new random id, unless a `config` is
    /// there already (`store init` never replaces a store). The check and the PUT are not
    /// atomic (S3 has no conditional PUT on every server, §3): two inits racing on one prefix
    /// is the one case it does not cover.
    pub fn init(
        client: S3Client,
        root: StoreRoot,
        config: StoreConfig,
    ) -> Result<Store, StoreError> {
        if config.encrypted {
            return Err(StoreError::Unsupported(format!(
                "{root}: this osimage makes plain stores only"
            )));
        }
        let key = root.key(CONFIG);
        if client.head(&key)?.is_some() {
            return Err(StoreError::Exists(root.to_string()));
        }
        let id = super::random_bytes::<16>()?;
        let bytes = encode_config(&root.shown(CONFIG), &config, &id)?;
        client.put(&key, &bytes)?;
        Ok(Store {
            client: client.into(),
            root,
            id,
            config,
        })
    }

    /// Opens the store at `root`: its `config`, decoded and checked. A prefix without one
    /// is no store (a typo never creates one: only `store init` does).
    pub fn open(client: S3Client, root: StoreRoot) -> Result<Store, StoreError> {
        let max = (HEADER_LEN as u64) + Kind::Config.max_stored();
        let Some(bytes) = client.get(&root.key(CONFIG), max)? else {
            return Err(StoreError::NoStore(root.to_string()));
        };
        let (config, id) = decode_config(&root.shown(CONFIG), &bytes)?;
        if config.encrypted {
            return Err(StoreError::Unsupported(format!(
                "{root} is an encrypted store: this osimage reads plain stores only"
            )));
        }
        Ok(Store {
            client: client.into(),
            root,
            id,
            config,
        })
    }

    /// A config for a new plain store made now (for `store init`).
    pub fn new_config(pack_size: u32, zstd_level: i32) -> StoreConfig {
        let now = Utc::now();
        StoreConfig::new(
            Timestamp {
                sec: now.timestamp(),
                nsec: now.timestamp_subsec_nanos(),
            },
            pack_size,
            zstd_level,
        )
    }

    /// `rel`'s address, as messages name it.
    pub fn shown(&self, rel: &str) -> String {
        self.root.shown(rel)
    }

    /// The store's keys under `rel_prefix`, relative to the store, with their sizes.
    pub(super) fn list(&self, rel_prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let listing = self.client.list(&self.root.key(rel_prefix))?;
        listing
            .objects
            .into_iter()
            .map(|o| Ok((self.root.listed_relative(&o.key)?.to_string(), o.size)))
            .collect()
    }

    /// Every version object, of `series` or of all of them, ordered by series and then
    /// oldest first (the keys' order). A key under `images/` that is not a version's is an
    /// error naming it: nothing but osimage writes there.
    pub fn list_versions(&self, series: Option<&str>) -> Result<Vec<ListedVersion>, StoreError> {
        let prefix = match series {
            Some(s) => {
                names::check_series(s).map_err(|e| StoreError::Address(format!("{s:?}: {e}")))?;
                names::series_prefix(s)
            }
            None => IMAGES.to_string(),
        };
        let mut out = Vec::new();
        for (rel, size) in self.list(&prefix)? {
            let (series, version) = names::parse_version_key(&rel)
                .map_err(|e| StoreError::Object(super::ObjectError::new(&self.shown(&rel), e)))?;
            out.push(ListedVersion {
                series,
                version,
                size,
            });
        }
        out.sort_by(|a, b| (&a.series, &a.version).cmp(&(&b.series, &b.version)));
        Ok(out)
    }

    /// The names of the store's series, in order.
    pub fn series(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .list_versions(None)?
            .into_iter()
            .map(|v| v.series)
            .collect();
        names.dedup();
        Ok(names)
    }

    /// The versions of `series`, oldest first.
    pub fn versions(&self, series: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_versions(Some(series))?
            .into_iter()
            .map(|v| v.version)
            .collect())
    }

    /// The newest version of `series`, if it has any.
    pub fn newest(&self, series: &str) -> Result<Option<String>, StoreError> {
        Ok(self.versions(series)?.pop())
    }

    /// The head of `series`'s `version`: one Range GET of the object's first 64 KiB, a
    /// second only for a longer head; checked against its hash and against the name it
    /// was read under.
    pub fn read_head(&self, series: &str, version: &str) -> Result<VersionHead, StoreError> {
        let rel = names::version_key(series, version);
        let shown = self.shown(&rel);
        let object = self
            .client
            .open(&self.root.key(&rel))
            .map_err(|e| S3Error::Request(e.to_string()))?;
        let read = |at: u64, len: u64| -> Result<Vec<u8>, StoreError> {
            let mut buf = vec![0u8; len as usize];
            object
                .read_exact_at(&mut buf, at)
                .map_err(|e| S3Error::Request(format!("{shown}: {e}")))?;
            Ok(buf)
        };
        let len = object.len();
        let first = read(0, len.min(HEAD_READ))?;
        let prefix = decode_version_prefix(&shown, &first)?;
        if prefix.total_len() != len {
            return Err(super::ObjectError::new(
                &shown,
                format!(
                    "{len} bytes where its prefix says {} (truncated or damaged)",
                    prefix.total_len()
                ),
            )
            .into());
        }
        let head_end = PREFIX_LEN + prefix.head_len as usize;
        let head = if head_end <= first.len() {
            decode_head(&shown, &prefix, &first[PREFIX_LEN..head_end])?
        } else {
            decode_head(&shown, &prefix, &read(PREFIX_LEN as u64, prefix.head_len)?)?
        };
        if head.series != series || head.version != version {
            return Err(super::ObjectError::new(
                &shown,
                format!(
                    "its head is the one of {}@{}, not of its name",
                    head.series, head.version
                ),
            )
            .into());
        }
        Ok(head)
    }

    /// Commits a version: `head` and the manifest `frame` in one PUT under
    /// `images/<head.series>/<head.version>`, refused when that object exists (versions are
    /// written once). Returns the key relative to the store and the object's length.
    pub fn put_version(
        &self,
        head: &VersionHead,
        frame: &[u8],
    ) -> Result<(String, u64), StoreError> {
        let rel = names::version_key(&head.series, &head.version);
        let bytes = encode_version(head, frame).map_err(|mut e| {
            e.object = self.shown(&rel);
            e
        })?;
        let key = self.root.key(&rel);
        if self.client.head(&key)?.is_some() {
            return Err(super::ObjectError::new(
                &self.shown(&rel),
                "exists already: a version is written once",
            )
            .into());
        }
        self.client.put(&key, &bytes)?;
        Ok((rel, bytes.len() as u64))
    }

    /// Writes `index` as a new index object; returns its name (`index/<hex of it>`).
    pub fn put_index(&self, index: &StoreIndex) -> Result<[u8; 32], StoreError> {
        super::checkpoint::put_index(&self.client, &self.root, index)
    }

    /// The names of every index object.
    pub fn list_index(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        self.list(INDEX)?
            .into_iter()
            .map(|(rel, _)| {
                names::parse_index_key(&rel)
                    .map_err(|e| StoreError::Object(super::ObjectError::new(&self.shown(&rel), e)))
            })
            .collect()
    }

    /// The index object `name`, checked against its name before it is decoded.
    pub fn get_index(&self, name: &[u8; 32]) -> Result<StoreIndex, StoreError> {
        let bytes = self.get_index_bytes(name)?;
        Ok(decode_index(
            &self.shown(&names::index_key(name)),
            &bytes,
            Some(name),
        )?)
    }

    /// The bytes of the index object `name` as stored (at most an index object's largest
    /// size), not yet checked: `decode_index` with the name checks them.
    pub fn get_index_bytes(&self, name: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let rel = names::index_key(name);
        let max = (HEADER_LEN as u64) + Kind::Index.max_stored();
        let bytes = self.client.get(&self.root.key(&rel), max)?.ok_or_else(|| {
            super::ObjectError::new(&self.shown(&rel), "missing (listed, then gone?)")
        })?;
        Ok(bytes)
    }
}
